"""`pkmodel config ...`: show the resolved configuration, check it, write the documented defaults."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from pkmodel.cli.common import PATH, config_command, user_errors
from pkmodel.common.errors import PkmodelError
from pkmodel.config import Config

app = typer.Typer(
    help="Inspect and create pkmodel configuration files.",
    no_args_is_help=True,
    rich_markup_mode=None,
)


@app.command("show")
@config_command
def show(
    cfg: Config,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of TOML.")] = False,
) -> None:
    """Print the resolved configuration and where each value came from."""
    import json

    from pkmodel.config import format_config

    if as_json:
        typer.echo(json.dumps({"values": cfg.to_dict(), "sources": cfg.sources}, indent=2))
    else:
        typer.echo(format_config(cfg), nl=False)


@app.command("check")
@config_command
def check(cfg: Config) -> None:
    """Check every section with the rules the commands apply, before a long run finds out.

    Prints one line per section with a problem and exits with code 2, or says the config is
    usable (file paths are checked by the commands that read them).
    """
    problems = config_problems(cfg)
    if problems:
        for problem in problems:
            typer.echo(f"error: {problem}", err=True)
        raise typer.Exit(2)
    typer.echo("config OK: every section passes the checks the commands apply")


def config_problems(cfg: Any) -> list[str]:
    """Every section's first problem, one sentence each (empty when the config is usable),
    in the order of config.toml; the devices are checked against this machine (an absent GPU
    is a problem here) and the ONNX opset against the installed onnx."""
    from pkmodel.common.devices import select_device
    from pkmodel.config import SECTIONS
    from pkmodel.config.rules import RuleError
    from pkmodel.export.onnx import check_opset

    machine: dict[str, list[Callable[[], object]]] = {
        "train": [lambda: select_device(cfg.train.device)],
        "export": [lambda: check_opset(cfg.export.onnx_opset)],
        "lift": [lambda: select_device(cfg.lift.device, key="lift.device")],
    }
    problems = []
    for name in SECTIONS:
        for check in [getattr(cfg, name).check, *machine.get(name, [])]:
            try:
                check()
            except PkmodelError as e:
                problems.append(cfg.explain(e) if isinstance(e, RuleError) else str(e))
    return problems


@app.command("init")
@user_errors
def init(
    out: Annotated[
        Path, typer.Argument(help="Where to write the config file.", parser=PATH)
    ] = Path("config.toml"),
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing file.")] = False,
) -> None:
    """Write a config file with every default value, documented."""
    from pkmodel.common.atomic import atomic_write_text, refuse_special
    from pkmodel.config import default_config_toml

    refuse_special(out)  # a folder or a FIFO is never overwritten: say so before --force
    if out.exists() and not force:
        raise PkmodelError(f"{out} already exists; pass --force to overwrite it")
    atomic_write_text(out, default_config_toml())
    typer.echo(f"wrote {out}")


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="config")
