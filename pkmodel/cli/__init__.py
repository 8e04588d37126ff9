"""The `pkmodel` command line: a thin layer that parses options and calls the library.

Each command lives in its own module here, exposing ``register(app)``, and imports heavy
libraries (torch, cv2) inside the command body, so `pkmodel --help` stays fast.
"""

from __future__ import annotations

import errno
import importlib
import os
import sys
from typing import Any

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
from pkmodel.cli.common import say_error
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
        _run(app)
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


# The module of the exceptions the command line raises: click's own, or the copy of click that
# newer Typer releases carry inside (typer._click); typer.BadParameter is one of them.
_CLICK_ERRORS = importlib.import_module(typer.BadParameter.__module__)


INVALID_VALUE = "Invalid value for "  # how click begins a value's error (BadParameter)


def _rejected_value(error: BaseException) -> str | None:
    """The text given for an option whose type refused it (``--seed abc``): Typer's check
    (pydantic) keeps it in its ValidationError, the cause of click's error; None where there
    is none."""
    errors = getattr(error.__cause__, "errors", None)
    try:
        given = errors()[0]["input"] if callable(errors) else None
    except (TypeError, LookupError, ValueError):
        return None
    return given if isinstance(given, str) else None


def _run(command: Any, args: list[str] | None = None, prog_name: str | None = None) -> None:
    """``command`` as click's standalone mode runs it (exit codes, a closed pipe), except that
    a usage mistake (an unknown option, a value of the wrong type, a missing argument) is one
    ``error:`` line naming the command's help, as every other error of pkmodel is, not click's
    usage block. ``args``: the command line after the program's name (None: sys.argv's),
    ``prog_name`` the name usage lines give it (None: as it was started)."""
    try:
        code = command(args=args, prog_name=prog_name, standalone_mode=False)
    except _CLICK_ERRORS.UsageError as e:
        if type(e).__name__ == "NoArgsIsHelpError":  # a group without its command: its help
            e.show()
            raise SystemExit(e.exit_code) from None
        help_hint = f" (see '{e.ctx.command_path} --help')" if e.ctx is not None else ""
        sentence = e.format_message().rstrip(".")
        value = _rejected_value(e)
        if value is not None and sentence.startswith(INVALID_VALUE):
            sentence = f"Invalid value {value!r} for {sentence[len(INVALID_VALUE) :]}"
        say_error(f"{sentence}{help_hint}")
        raise SystemExit(e.exit_code) from None
    except _CLICK_ERRORS.ClickException as e:
        say_error(e.format_message())
        raise SystemExit(e.exit_code) from None
    except typer.Abort:
        typer.secho("aborted", err=True, fg=typer.colors.RED)
        raise SystemExit(1) from None
    except OSError as e:
        if e.errno != errno.EPIPE:
            raise
        # the reader of stdout went away (`pkmodel config show | head -1`): quietly, as click
        # does; what is left in stdout's buffer goes nowhere at exit
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise SystemExit(1) from None
    if isinstance(code, int) and code:  # typer.Exit(code) or Ctrl-C (130) inside the command
        raise SystemExit(code)
