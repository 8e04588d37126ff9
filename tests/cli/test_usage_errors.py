"""A usage mistake on the command line (an unknown option or command, a value of the wrong
type, a missing argument) is one ``error:`` line naming the command's help, exit code 2, as
every other error of pkmodel is; help and the commands' own exit codes are click's."""

from __future__ import annotations

import subprocess
import sys

import pytest

from pkmodel.cli import _run, app


def _usage(capsys, args: list[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as stop:
        _run(app, args, "pkmodel")
    out, err = capsys.readouterr()
    return stop.value.code, out, err


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (
            ["train", "--bogus"],
            "error: No such option: --bogus (Possible options: --out) (see 'pkmodel train --help')",
        ),
        (
            ["make-synthetic", "--seed", "abc"],
            "error: Invalid value 'abc' for '--seed': Input should be a valid integer, unable "
            "to parse string as an integer (see 'pkmodel make-synthetic --help')",
        ),
        (
            ["train", "--epochs", "1.5"],
            "error: Invalid value '1.5' for '--epochs': Input should be a valid integer, unable "
            "to parse string as an integer (see 'pkmodel train --help')",
        ),
        (["predict"], "error: Missing argument 'source' (see 'pkmodel predict --help')"),
        (["nosuch"], "error: No such command 'nosuch' (see 'pkmodel --help')"),
        (
            ["data", "split", "--bogus"],
            "error: No such option: --bogus (Possible options: --out) "
            "(see 'pkmodel data split --help')",
        ),
        (["make-synthetic", "--out"], "error: Option '--out' requires an argument"),
    ],
)
def test_a_usage_mistake_is_one_error_line_with_exit_code_2(capsys, args, line):
    code, out, err = _usage(capsys, args)
    assert code == 2
    assert out == ""
    assert err == line + "\n"


def test_a_group_without_its_command_shows_its_help_with_exit_code_2(capsys):
    code, out, err = _usage(capsys, ["data"])
    assert code == 2
    assert err.startswith("Usage: pkmodel data [OPTIONS] COMMAND [ARGS]...\n")
    assert "\n  split " in err and "error:" not in err


def test_help_and_version_exit_0(capsys):
    assert _run(app, ["train", "--help"], "pkmodel") is None
    out, err = capsys.readouterr()
    assert out.startswith("Usage: pkmodel train [OPTIONS]") and err == ""
    assert _run(app, ["--version"], "pkmodel") is None
    assert capsys.readouterr().out.startswith("pkmodel ")


def test_a_commands_own_error_keeps_its_line_and_exit_code(capsys):
    code, out, err = _usage(capsys, ["evaluate"])
    assert code == 2
    assert err == "error: give either --weights (a network) or --oracle (exactly one of them)\n"


def test_a_closed_stdout_ends_quietly_with_exit_code_1():
    # the reader of stdout went away: no traceback, exit code 1 (click's standalone mode)
    script = (
        "import errno\n"
        "from pkmodel.cli import _run\n"
        "def command(**click_options):\n"
        "    raise BrokenPipeError(errno.EPIPE, 'Broken pipe')\n"
        "_run(command)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert (done.returncode, done.stderr) == (1, "")
