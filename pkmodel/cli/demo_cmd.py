"""`pkmodel demo`: the main job on built-in synthetic data, end to end, with a summary."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from pkmodel.cli.common import PATH, ConfigOption, SetOption, user_errors


# Not a config_command: the demo's --set goes on top of the demo's own settings, which go on
# top of the config (tools.demo.demo_config), so it needs the config without --set and the
# --set list itself, where config_command resolves the two together. --config and --set are
# the shared declarations all the same.
@user_errors
def demo_command(
    out: Annotated[
        Path,
        typer.Option("--out", "-o", help="Folder for everything the demo writes.", parser=PATH),
    ] = Path("runs/demo"),
    quick: Annotated[
        bool,
        typer.Option(
            "--quick", help="A one-minute smoke run with tiny sizes (numbers mean nothing)."
        ),
    ] = False,
    quiet: Annotated[
        bool, typer.Option("--quiet", help="No progress bars in the training and evaluation steps.")
    ] = False,
    config: ConfigOption = None,
    set_: SetOption = None,
) -> None:
    """Run the whole toolkit on built-in synthetic data and print a summary.

    Generates synthetic RGB-D people, prepares them, trains, evaluates (COCO AP), exports Core
    ML and ONNX, lifts the synthetic sequences to 3D, and summarises results and files. The
    demo's own settings (a narrow network at 96 px, 12 minutes of training; see docs/demo.md) go
    on top of the config; --set overrides them. Every step is a real pkmodel command reading
    OUT/config.toml, printed before it runs so that you can repeat it by hand.
    """
    from pkmodel.config import load_config
    from pkmodel.tools.demo import run_demo

    base = load_config(config, [])
    run_demo(base, out, quick=quick, overrides=set_ or [], echo=typer.echo, quiet=quiet)


def register(app: typer.Typer) -> None:
    app.command("demo")(demo_command)
