"""mise.toml: every task runs a script of the project, every pkmodel command it names exists,
and every command (and every `data` subcommand) has a task. Read with tomllib; mise itself is
not needed (the file is what mise reads: tasks under [tasks.NAME] with a `run` line)."""

from __future__ import annotations

import shlex

import pytest
import tomllib
import typer

from tests.conftest import ROOT

TASKS = tomllib.loads((ROOT / "mise.toml").read_text())["tasks"]


def _group():
    """The command tree (Typer's groups keep their subcommands in ``commands``)."""
    from pkmodel.cli import app

    return typer.main.get_command(app)


def _is_group(command) -> bool:
    return isinstance(getattr(command, "commands", None), dict)


def _pkmodel_args(run: str) -> list[str] | None:
    """The pkmodel words of a `bash scripts/pkmodel.sh CMD [SUB]` task, else None."""
    words = shlex.split(run)
    if words[:2] != ["bash", "scripts/pkmodel.sh"]:
        return None
    return words[2:]


@pytest.mark.parametrize("name", sorted(TASKS))
def test_every_task_runs_a_script_of_the_project_with_a_description(name):
    task = TASKS[name]
    assert set(task) <= {"description", "run"}, (name, task)
    assert len(task["description"]) > 20, name
    words = shlex.split(task["run"])
    assert words[0] == "bash" and len(words) >= 2, (name, task["run"])
    script = ROOT / words[1]
    assert script.is_file() and script.parent == ROOT / "scripts", (name, script)
    assert script.read_text().startswith("#!/usr/bin/env bash\n"), script


@pytest.mark.parametrize("name", sorted(n for n in TASKS if _pkmodel_args(TASKS[n]["run"])))
def test_a_pkmodel_task_names_a_command_that_exists(name):
    command = _group()
    for word in _pkmodel_args(TASKS[name]["run"]):
        assert _is_group(command), (name, word)
        assert word in command.commands, f"task {name}: pkmodel has no command {word!r}"
        command = command.commands[word]
    assert not _is_group(command) or name == "take", name  # take's subcommands follow --


def test_every_command_and_data_subcommand_has_a_task():
    group = _group()
    covered = {tuple(a) for t in TASKS.values() if (a := _pkmodel_args(t["run"]))}
    covered_top = {a[0] for a in covered}
    assert set(group.commands) - {"demo"} <= covered_top, set(group.commands) - covered_top
    data = group.commands["data"]
    assert _is_group(data) and len(data.commands) >= 7
    assert {("data", sub) for sub in data.commands} <= covered
    # the demo and the test suite run through their own scripts (they set up more)
    assert TASKS["demo"]["run"] == "bash scripts/demo.sh"
    assert TASKS["test"]["run"] == "bash scripts/test.sh"


def test_pkmodel_sh_passes_every_argument_on():
    text = (ROOT / "scripts/pkmodel.sh").read_text()
    assert 'exec pkmodel "$@"' in text and "bootstrap.sh" in text
