"""Options every command shares, options that set config keys, config resolution for
commands, and user-error handling."""

from __future__ import annotations

import dataclasses
import functools
import inspect
import re
import signal
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import typer

from pkmodel.cli import stopping
from pkmodel.common.errors import PkmodelError
from pkmodel.config import SECTIONS, load_config
from pkmodel.config.rules import RuleError

F = TypeVar("F", bound=Callable[..., Any])


def PATH(value: str | Path) -> Path:  # noqa: N802 (click shows the name as the metavar)
    """A path given on the command line (``parser=PATH`` of a ``Path`` option or argument):
    '' is refused, which typer would make the Path '.' and so the current folder, read or
    written without the user having named it."""
    if isinstance(value, Path):
        return value
    if value == "":
        raise typer.BadParameter("an empty path would mean the current folder; write '.' for that")
    return Path(value)


# What every --weights option accepts (pkmodel.engine.networks.load_network).
WEIGHTS_HELP = "checkpoint (.pt), ONNX export (.onnx) or Core ML model (.mlpackage, .mlmodelc)"

ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        help="Config file (TOML). Default: $PKMODEL_CONFIG, else ./config.toml if present, "
        "else built-in defaults.",
        metavar="FILE",
        show_default=False,
        parser=PATH,
    ),
]
SetOption = Annotated[
    list[str] | None,
    typer.Option(
        "--set",
        "-s",
        help="Override one config value, e.g. --set train.lr=0.001 (repeatable).",
        metavar="SECTION.KEY=VALUE",
        show_default=False,
    ),
]


@dataclasses.dataclass(frozen=True)
class Key:
    """A command option that sets the config key ``key`` (``section.name``), declared once: its
    type and documentation are the key's; the option's name is the parameter's (or ``flags``);
    ``help`` replaces the key's documentation where the command has more to say. The key's
    name is added to the help either way (and a Literal key's values, unless the text names
    them), and the config's value stays when the option is not given. Used as a parameter's
    default in a ``config_command``."""

    key: str
    flags: tuple[str, ...] = ()
    help: str | None = None

    def field(self) -> dataclasses.Field:
        section, name = self.key.split(".")
        return {f.name: f for f in dataclasses.fields(SECTIONS[section])}[name]

    def key_type(self) -> Any:
        section, name = self.key.split(".")
        return typing.get_type_hints(SECTIONS[section])[name]

    def option_type(self) -> Any:
        """``T | None`` for the key's type T (a Literal is offered as text; config checks it)."""
        tp = self.key_type()
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if typing.get_origin(tp) is Literal:
            tp = str
        elif args and type(None) in typing.get_args(tp):
            (tp,) = args
        if tp not in (bool, int, float, str, Path):
            raise TypeError(f"config key {self.key} of type {tp} cannot be a command option")
        # a path is taken as text: typer would make '' the Path '.', which the config could
        # then not tell from a folder the user chose
        return (str if tp is Path else tp) | None

    def choices(self) -> tuple[str, ...]:
        """The values of a Literal key (empty for other types)."""
        tp = self.key_type()
        return typing.get_args(tp) if typing.get_origin(tp) is Literal else ()

    def help_text(self) -> str:
        """The key's documentation (or ``help``) and its name; a Literal key's values are
        named too when the text does not already name each of them."""
        text = (self.help or self.field().metadata["help"]).rstrip(".")
        choices = self.choices()
        if choices and not all(re.search(rf"\b{re.escape(c)}\b", text) for c in choices):
            text += ": " + " or ".join([", ".join(choices[:-1]), choices[-1]])
        first = text.split(maxsplit=1)[0].rstrip(",:;") if text else ""
        # "metrics.json, ..." and "exact: ..." (a value) stay as they are written
        if first not in choices and not any(c in first for c in "._/"):
            text = text[:1].upper() + text[1:]
        return f"{text} ({self.key})."

    def annotation(self) -> Any:
        return Annotated[
            self.option_type(),
            typer.Option(
                *self.flags,
                help=self.help_text(),
                show_default=False,
                metavar="PATH"
                if Path in (self.key_type(), *typing.get_args(self.key_type()))
                else None,
            ),
        ]


def key(name: str, *flags: str, help: str | None = None) -> Any:
    """``Key(name, flags, help)``: a parameter default of a ``config_command``."""
    return Key(name, flags, help)


def option_flag(name: str, key: Key) -> str:
    """The command-line name of a ``key(...)`` parameter: its first long flag, else the one
    typer makes of the parameter's name."""
    long = [f for f in key.flags if f.startswith("--")]
    return long[0] if long else "--" + name.replace("_", "-")


def config_command(fn: Callable[..., Any]) -> Callable[..., Any]:
    """A command whose first parameter is the resolved ``cfg``: the parameters whose default is
    ``key(...)`` become options that set those keys, ``--config`` and ``--set`` are added, and
    user errors are one line (``user_errors``). The other parameters stay as declared."""
    signature = inspect.signature(fn, eval_str=True)
    params, keys, defaults = [], {}, []
    for p in list(signature.parameters.values())[1:]:  # the first is cfg
        if isinstance(p.default, Key):
            keys[p.name] = p.default.key
            defaults.append((p.name, p.default.key, p.default))
            params.append(p.replace(annotation=p.default.annotation(), default=None))
        else:
            params.append(p)
    keyword = inspect.Parameter.KEYWORD_ONLY
    params += [
        inspect.Parameter("config", keyword, annotation=ConfigOption, default=None),
        inspect.Parameter("set_", keyword, annotation=SetOption, default=None),
    ]
    params = [p.replace(kind=keyword) for p in params]

    flags = {key: option_flag(name, default) for name, key, default in defaults}

    @functools.wraps(fn)
    def command(**kwargs: Any) -> Any:
        config, overrides = kwargs.pop("config"), kwargs.pop("set_")
        options = {keys[name]: kwargs.pop(name) for name in keys}
        cfg = load_config(config, overrides or [], options, option_flags=flags)
        try:
            return fn(cfg, **kwargs)
        except RuleError as e:  # a value that breaks a rule: say where it came from
            raise PkmodelError(cfg.explain(e)) from None

    command.__signature__ = signature.replace(parameters=params)  # type: ignore[attr-defined]
    command.config_keys = keys  # type: ignore[attr-defined]  # parameter -> key, for tests
    command.__annotations__ = {p.name: p.annotation for p in params}
    del command.__wrapped__  # typer reads __signature__, not the wrapped function's
    return user_errors(command)


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
    if isinstance(e, FileExistsError):  # a folder was to be made where a file is
        return f"cannot write into {where}: it is a file, not a folder"
    if isinstance(e, NotADirectoryError):
        return f"cannot write {where}: a folder on that path is a file"
    if isinstance(e, FileNotFoundError):  # read or made: either way the place is missing
        return f"cannot open or create {where}: {reason}"
    return f"cannot write {where}: {reason}"


def say_error(sentence: str) -> None:
    """The one line a command ends with on a user's mistake: ``error: <sentence>``, red, on
    stderr; the caller then exits (code 2, or the code click gives its error)."""
    typer.secho(f"error: {sentence}", err=True, fg=typer.colors.RED)


def user_errors(fn: F) -> F:
    """Turn a PkmodelError or an OSError (a path that cannot be written or read) into one red
    line on stderr and exit code 2 (no traceback)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except PkmodelError as e:
            say_error(str(e))
            raise typer.Exit(2) from None
        except OSError as e:
            # A path the command was given cannot be written (read-only place, a file where a
            # folder must go, a full disk): one sentence naming it, not a traceback.
            say_error(os_error_sentence(e))
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            stopping.say(signal.SIGINT)
            raise typer.Exit(stopping.exit_code(signal.SIGINT)) from None

    return wrapper  # type: ignore[return-value]
