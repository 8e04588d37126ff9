"""The command line's options: an option that sets a config key is declared once, through
``key()`` (its type and help are the key's), and every ``--help`` reads whole at 80 columns."""

from __future__ import annotations

import inspect
import re
import typing
from pathlib import Path
from types import SimpleNamespace

import typer
import typer.main
from typer.testing import CliRunner

from pkmodel.cli import app
from pkmodel.cli.common import PATH, config_command, key
from pkmodel.config import Config, all_keys

runner = CliRunner()
# The suffix key() gives an option's help: "... (section.key)."
KEY_SUFFIX = re.compile(r"\((\w+\.\w+)\)\.$")


def _commands() -> list[tuple[list[str], object]]:
    """(path, click command) of the root, every command and every subcommand."""

    def walk(cmd, path):
        yield path, cmd
        for name, sub in getattr(cmd, "commands", {}).items():
            yield from walk(sub, [*path, name])

    return list(walk(typer.main.get_command(app), []))


def _config_keys(callback) -> dict[str, str]:
    """The ``config_keys`` (parameter -> key) of the function config_command built, found by
    unwrapping the command's callback; {} for a command that is no config_command."""
    if callback is None:
        return {}
    fn = inspect.unwrap(callback, stop=lambda f: hasattr(f, "config_keys"))
    return dict(getattr(fn, "config_keys", {}))


def _options(cmd) -> dict[str, object]:
    return {p.name: p for p in cmd.params if p.param_type_name == "option"}


def test_options_that_name_a_config_key_are_declared_through_key():
    known = set(all_keys())
    through_key = 0
    for path, cmd in _commands():
        keys = _config_keys(cmd.callback)
        options = _options(cmd)
        for name, option in options.items():
            match = KEY_SUFFIX.search((option.help or "").strip())
            if match and match[1] in known:
                assert keys.get(name) == match[1], (
                    f"pkmodel {' '.join(path)} {option.opts[0]}: its help ends with "
                    f"({match[1]}) but it is not declared with key('{match[1]}')"
                )
                through_key += 1
        for name, dotted in keys.items():
            assert dotted in known, (path, name, dotted)
            assert name in options, f"pkmodel {' '.join(path)}: key parameter {name} is no option"
            assert options[name].help.endswith(f"({dotted})."), (path, name, options[name].help)
    # train's 8 and the other commands' 42: a walk that finds none would prove nothing
    assert through_key >= 50, through_key


def test_every_help_fits_80_columns_with_whole_option_names():
    for path, cmd in _commands():
        result = runner.invoke(app, [*path, "--help"], env={"COLUMNS": "80"}, terminal_width=80)
        assert result.exit_code == 0, (path, result.output)
        lines = result.output.splitlines()
        where = f"pkmodel {' '.join(path)} --help"
        assert [line for line in lines if len(line) > 80] == [], where
        # a word or an option name cut at one of its hyphens ("--refine-" / "passes")
        assert [line for line in lines if re.search(r"\w-$", line)] == [], where
        for param in cmd.params:
            for name in [*param.opts, *param.secondary_opts]:
                if name.startswith("--"):
                    whole = rf"(?<![\w-]){re.escape(name)}(?![\w-])"
                    assert re.search(whole, result.output), f"{where} lacks {name}"


def test_every_path_option_and_argument_refuses_an_empty_path(tmp_path, monkeypatch):
    """typer makes '' the Path '.': `--out ""` would write into the current folder and
    `--input ""` read it. Every Path parameter of every command goes through PATH, which
    refuses ''; a '.' the user writes stays the current folder."""
    paths = []
    for path, cmd in _commands():
        for param in cmd.params:
            described = param.type_descriptor
            if described.annotation is Path or typing.get_args(described.annotation) == (Path,):
                paths.append((path, param.name))
                assert described.parameter_info.parser is PATH, (path, param.name)
    assert len(paths) >= 60  # every command's files and folders, --config of each command

    monkeypatch.chdir(tmp_path)
    for args, name in [
        (["lift", "--input", ""], "'--input' / '-i'"),
        (["predict", "", "--weights", "w.pt"], "'source'"),
        (["predict", "a.jpg", "--weights", "w.pt", "--out", ""], "'--out'"),
        (["config", "show", "--config", ""], "'--config' / '-c'"),
        (["data", "merge", "a.json", ""], "'inputs'"),
        (["demo", "--out", ""], "'--out' / '-o'"),
    ]:
        result = runner.invoke(app, args)
        assert result.exit_code == 2, (args, result.output)
        assert (
            f"Invalid value for {name}: an empty path would mean the current folder; write '.' "
            "for that" in result.output
        ), result.output
        assert "Traceback" not in result.output
    assert list(tmp_path.iterdir()) == []  # nothing was written

    assert PATH(".") == Path(".") and PATH("runs/x") == Path("runs/x")


def test_a_key_option_sets_its_key_over_set_and_leaves_the_config_otherwise(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    seen: dict[str, Config] = {}
    probe = typer.Typer(rich_markup_mode=None)

    @probe.command()
    @config_command
    def show(
        cfg: Config,
        lr: float | None = key("train.lr"),
        out: Path | None = key("train.out_dir", "--out", "-o"),
        flip: bool | None = key("eval.flip_test", "--flip/--no-flip"),
        norm: str | None = key("eval.pck_norm"),
        quiet: bool = typer.Option(False, "--quiet", help="Not a key."),
    ) -> None:
        seen["cfg"] = cfg

    assert show.config_keys == {
        "lr": "train.lr", "out": "train.out_dir", "flip": "eval.flip_test", "norm": "eval.pck_norm"
    }  # fmt: skip

    result = runner.invoke(probe, ["--lr", "0.5", "--set", "train.lr=0.1", "-o", "run", "--flip"])
    assert result.exit_code == 0, result.output
    cfg = seen.pop("cfg")
    assert cfg.train.lr == 0.5 and cfg.sources["train.lr"] == "--lr"
    assert cfg.train.out_dir == tmp_path / "run"  # an option's path: from the current folder
    assert cfg.eval.flip_test is True and cfg.eval.pck_norm == "torso"
    assert cfg.sources["eval.pck_norm"] == "default"

    result = runner.invoke(probe, ["--set", "train.lr=0.1", "--no-flip"])
    assert result.exit_code == 0, result.output
    cfg = seen.pop("cfg")
    assert cfg.train.lr == 0.1 and cfg.sources["train.lr"] == "--set"
    assert cfg.eval.flip_test is False and cfg.sources["eval.flip_test"] == "--flip/--no-flip"

    result = runner.invoke(probe, ["--norm", "box"])  # a Literal key: the config checks it
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert result.output.startswith("error: ") and "eval.pck_norm" in result.output
    assert "cfg" not in seen

    result = runner.invoke(probe, ["-o", ""])  # typer made '' the Path '.', the current folder
    assert result.exit_code == 2 and "cfg" not in seen
    assert result.output == (
        "error: --out: train.out_dir must be a path, got '' (an empty path would mean the current "
        "folder; write '.' for that)\n"
    )

    text = runner.invoke(probe, ["--help"], terminal_width=200).output
    assert re.search(r"-o, --out\s+PATH\s", text)  # a path key's option says PATH, as typer's do
    assert "Peak learning rate (train.lr)." in text
    assert "PCK normaliser: torso or bbox (eval.pck_norm)." in text  # a Literal's values
    assert "--flip / --no-flip" in text and "-c, --config" in text and "-s, --set" in text


def test_options_for_a_value_of_a_key_set_it_after_the_config(tmp_path, monkeypatch):
    """make-synthetic --size (two keys) and export-coreml --fp32 / --bgr (a value each) are
    hand-written: they still win over --set, and leave the config alone when not given."""
    import pkmodel.data.synthetic.generate as generate_module
    import pkmodel.export.coreml as coreml_module

    monkeypatch.chdir(tmp_path)
    seen: dict[str, object] = {}

    def fake_generate(spec, out, progress=True):
        seen.update(spec=spec, out=out)
        return SimpleNamespace(images={}, people={}, seconds=0.0, workers=1)

    def fake_export(weights, out, cfg, force=False, log=print):
        seen.update(cfg=cfg, out=out)
        return SimpleNamespace(checks=[], skipped=[], path=out, size_bytes=0)

    monkeypatch.setattr(generate_module, "generate", fake_generate)
    monkeypatch.setattr(coreml_module, "export_coreml", fake_export)

    args = ["make-synthetic", "--size", "64x48", "--set", "synthetic.width=128", "-o", "syn",
            "--seed", "3"]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert (seen["spec"].width, seen["spec"].height, seen["spec"].seed) == (64, 48, 3)
    assert seen["out"] == tmp_path / "syn"
    result = runner.invoke(app, ["make-synthetic", "--set", "synthetic.width=128"])
    assert result.exit_code == 0, result.output
    assert (seen["spec"].width, seen["spec"].height) == (128, 256)

    args = ["export-coreml", "-w", "m.pt", "--fp32", "--bgr", "--compress", "int8",
            "--set", "export.precision=fp16"]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    export = seen["cfg"].export
    assert (export.precision, export.color_layout, export.compress) == ("fp32", "BGR", "int8")
    result = runner.invoke(app, ["export-coreml", "-w", "m.pt", "--set", "export.precision=fp32"])
    assert result.exit_code == 0, result.output
    export = seen["cfg"].export
    assert (export.precision, export.color_layout, export.compress) == ("fp32", "RGB", "none")
    assert seen["out"] == export.out_dir / "pkmodel.mlpackage"
