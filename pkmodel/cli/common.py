"""Options every command shares, config resolution for commands, and user-error handling."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from pkmodel.errors import PkmodelError

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


def user_errors(fn: F) -> F:
    """Turn a PkmodelError into one red line on stderr and exit code 2 (no traceback)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except PkmodelError as e:
            typer.secho(f"error: {e}", err=True, fg=typer.colors.RED)
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            typer.secho("interrupted", err=True, fg=typer.colors.RED)
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]
