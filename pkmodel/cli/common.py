"""Options every command shares, config resolution for commands, and user-error handling."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from pkmodel.common.errors import PkmodelError

F = TypeVar("F", bound=Callable[..., Any])

ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        help="Config file (TOML). Default: $PKMODEL_CONFIG, else ./config.toml if present, "
        "else built-in defaults.",
        show_default=False,
    ),
]
SetOption = Annotated[
    list[str] | None,
    typer.Option(
        "--set",
        "-s",
        help="Override one config value, e.g. --set train.lr=0.001 (repeatable).",
        show_default=False,
    ),
]


def resolve_config(config: Path | None, overrides: list[str] | None, **options: Any):
    """Load the config with ``--set`` overrides and command options (``section__key=value``)."""
    from pkmodel.config import load_config

    opts = {k.replace("__", "."): v for k, v in options.items()}
    return load_config(config, overrides or [], opts)


def os_error_sentence(e: OSError) -> str:
    """``cannot write /x/y: Read-only file system`` from an OSError.

    For a rename (an atomic write's last step) the target is named; for the hidden temporary file
    of an atomic write (``.NAME.xxxx.tmp``), the folder it was to be written into."""
    reason = e.strerror or str(e) or type(e).__name__
    if e.filename is None:
        return reason
    if getattr(e, "filename2", None):
        return f"cannot write {e.filename2}: {reason}"
    where = Path(str(e.filename))
    if where.name.startswith(".") and where.name.endswith(".tmp"):
        return f"cannot write into the folder {where.parent}: {reason}"
    verb = "read" if isinstance(e, FileNotFoundError) else "write"
    return f"cannot {verb} {where}: {reason}"


def user_errors(fn: F) -> F:
    """Turn a PkmodelError or an OSError (a path that cannot be written or read) into one red
    line on stderr and exit code 2 (no traceback)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except PkmodelError as e:
            typer.secho(f"error: {e}", err=True, fg=typer.colors.RED)
            raise typer.Exit(2) from None
        except OSError as e:
            # A path the command was given cannot be written (read-only place, a file where a
            # folder must go, a full disk): one sentence naming it, not a traceback.
            typer.secho(f"error: {os_error_sentence(e)}", err=True, fg=typer.colors.RED)
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            typer.secho("interrupted", err=True, fg=typer.colors.RED)
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]
