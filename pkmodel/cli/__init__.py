"""The `pkmodel` command line: a thin layer that parses options and calls the library.

Each command lives in its own module here, exposing ``register(app)``, and imports heavy
libraries (torch, cv2) inside the command body, so `pkmodel --help` stays fast.
"""

from __future__ import annotations

import typer

from pkmodel import __version__
from pkmodel.cli import (
    benchmark_cmd,
    config_cmd,
    data_cmd,
    demo_cmd,
    evaluate_cmd,
    export_cmd,
    lift_cmd,
    model_cmd,
    predict_cmd,
    prepare_cmd,
    stopping,
    synthetic_cmd,
    take_cmd,
    train_cmd,
)
from pkmodel.common.runtime import set_process_defaults

app = typer.Typer(
    name="pkmodel",
    help="PoseKit's model toolkit: prepare COCO, train, evaluate, export to Core ML / ONNX, "
    "and lift 2D poses to 3D with depth. Every command reads config.toml (see "
    "`pkmodel config show`).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    # click's plain help: whole option names and paragraphs wrapped to the terminal's width
    rich_markup_mode=None,
)

# Command modules: the config, then the commands in the order of the data flow. Each has
# register(app).
COMMAND_MODULES: tuple = (
    config_cmd,
    synthetic_cmd,
    prepare_cmd,
    model_cmd,
    train_cmd,
    evaluate_cmd,
    predict_cmd,
    export_cmd,
    lift_cmd,
    take_cmd,
    data_cmd,
    demo_cmd,
    benchmark_cmd,
)
for _module in COMMAND_MODULES:
    _module.register(app)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"pkmodel {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """PoseKit's model toolkit."""


def main() -> None:
    """The `pkmodel` command (and `python -m pkmodel`): process defaults, then the command."""
    set_process_defaults()
    stopping.install()
    try:
        app()
    except BaseException as e:
        signum = stopping.requested()
        if signum is None:
            raise
        code = stopping.exit_code(signum)
        if isinstance(e, SystemExit) and e.code == code:
            raise
        # Ctrl-C or SIGTERM, and then the clean-up on the way out raised something else (a
        # checkpoint's zip writer cut off mid-record) or the command ended first: it stopped
        stopping.say(signum)
        raise SystemExit(code) from None
