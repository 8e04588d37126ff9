"""Loading the configuration: defaults, config file, environment, --set and options, with the
source of every value and a type check of each.

Loading order, later wins: defaults in code < config file (TOML) < environment variables
(``PKMODEL_<SECTION>__<KEY>``) < ``--set section.key=value`` < command options.

Relative paths from the defaults and the config file resolve against the config file's folder
(the current folder when there is no file); relative paths given in the environment or on the
command line resolve against the current folder, as a shell user expects.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import sys
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from pkmodel.common.errors import PkmodelError, not_there
from pkmodel.config.rules import RuleError, is_choice
from pkmodel.config.sections import (
    SECTIONS,
    AugmentConfig,
    BenchmarkConfig,
    DataConfig,
    DecoderConfig,
    EvalConfig,
    ExportConfig,
    LiftConfig,
    LossConfig,
    ModelConfig,
    PrepareConfig,
    PseudoLabelConfig,
    SyntheticConfig,
    TargetsConfig,
    TrainConfig,
)

ENV_PREFIX = "PKMODEL_"
CONFIG_ENV = "PKMODEL_CONFIG"
# PKMODEL_* variables that are not config values (the scripts' virtual environment folder).
NON_CONFIG_ENV = frozenset({CONFIG_ENV, "PKMODEL_VENV"})
DEFAULT_CONFIG_NAME = "config.toml"


@dataclass
class Config:
    """The resolved configuration: one attribute per section, plus provenance."""

    data: DataConfig = field(default_factory=DataConfig)
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)
    prepare: PrepareConfig = field(default_factory=PrepareConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    targets: TargetsConfig = field(default_factory=TargetsConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    decoder: DecoderConfig = field(default_factory=DecoderConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    pseudo_label: PseudoLabelConfig = field(default_factory=PseudoLabelConfig)
    export: ExportConfig = field(default_factory=ExportConfig)
    lift: LiftConfig = field(default_factory=LiftConfig)
    benchmark: BenchmarkConfig = field(default_factory=BenchmarkConfig)
    # Provenance: the file read (if any) and, per "section.key", where its value came from.
    file: Path | None = None
    sources: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, dict[str, Any]]:
        """Plain nested dict (paths as strings): for checkpoints, metadata and JSON."""
        out: dict[str, dict[str, Any]] = {}
        for name in SECTIONS:
            section = getattr(self, name)
            out[name] = {
                f.name: _plain(getattr(section, f.name)) for f in dataclasses.fields(section)
            }
        return out

    def check(self, *names: str) -> None:
        """Check the named sections' rules in order (every section when none is named; a
        ``section.key`` name checks that key's rules alone); the first value that breaks one
        raises PkmodelError."""
        for name in names or tuple(SECTIONS):
            section, _, key = name.partition(".")
            if key:
                getattr(self, section).check_key(key)
            else:
                getattr(self, section).check()

    def explain(self, error: RuleError) -> str:
        """``error``'s sentence with where its keys' values came from when not the defaults
        (a config file, an environment variable, --set or a command option)."""
        given = [
            f"{key} from {self.sources[key]}"
            for key in error.keys
            if self.sources.get(key, "default") != "default"
        ]
        return f"{error} ({'; '.join(given)})" if given else str(error)

    def set(self, dotted: str, value: Any, source: str) -> None:
        """Set one value with type checking (used by loading and by command options)."""
        section_name, key = _split_key(dotted, source)
        section = getattr(self, section_name)
        setattr(section, key, _check_type(section_name, key, value, source))
        self.sources[f"{section_name}.{key}"] = source


def _plain(value: Any) -> Any:
    if value is None:
        return ""  # TOML has no null: an empty string means "not set"
    return str(value) if isinstance(value, Path) else value


def all_keys() -> list[str]:
    return [f"{s}.{f.name}" for s, cls in SECTIONS.items() for f in dataclasses.fields(cls)]


def field_types(section: str) -> dict[str, Any]:
    return typing.get_type_hints(SECTIONS[section])


def _suggest(word: str, choices: Sequence[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _split_key(dotted: str, source: str) -> tuple[str, str]:
    parts = dotted.split(".")
    if len(parts) != 2 or not all(parts):
        raise PkmodelError(f"{source}: '{dotted}' is not a config key of the form section.key")
    section, key = parts
    if section not in SECTIONS:
        raise PkmodelError(
            f"{source}: unknown config section '{section}'{_suggest(section, list(SECTIONS))}"
        )
    keys = [f.name for f in dataclasses.fields(SECTIONS[section])]
    if key not in keys:
        close = difflib.get_close_matches(key, keys, n=1, cutoff=0.6)
        hint = f" (did you mean '{section}.{close[0]}'?)" if close else _suggest(dotted, all_keys())
        raise PkmodelError(f"{source}: unknown config key '{section}.{key}'{hint}")
    return section, key


def _optional_inner(tp: Any) -> Any:
    """X for Optional[X] (written `X | None`), else None."""
    args = typing.get_args(tp)
    if type(None) in args and len(args) == 2:
        return args[0] if args[1] is type(None) else args[1]
    return None


def _is_path(tp: Any) -> bool:
    return tp is Path or _optional_inner(tp) is Path


def _type_name(tp: Any) -> str:
    if _optional_inner(tp) is not None:
        return _type_name(_optional_inner(tp)) + " (or '' for none)"
    if typing.get_origin(tp) is Literal:
        return "one of " + ", ".join(repr(c) for c in typing.get_args(tp))
    if typing.get_origin(tp) is list:
        return f"a list of {_type_name(typing.get_args(tp)[0])}"
    return {bool: "true or false", int: "an integer", float: "a number", str: "a string"}.get(
        tp, "a path" if tp is Path else str(tp)
    )


def _check_type(section: str, key: str, value: Any, source: str) -> Any:
    tp = field_types(section)[key]
    if tp is Path and value == "":  # Path("") is ".": the folder would be chosen silently
        raise PkmodelError(
            f"{source}: {section}.{key} must be a path, got '' (an empty path would mean the "
            "current folder; write '.' for that)"
        )
    ok, converted = _convert(tp, value)
    if not ok:
        raise PkmodelError(f"{source}: {section}.{key} must be {_type_name(tp)}, got {value!r}")
    return converted


def _convert(tp: Any, value: Any) -> tuple[bool, Any]:
    origin = typing.get_origin(tp)
    if _optional_inner(tp) is not None:
        if value is None or value == "":
            return True, None
        return _convert(_optional_inner(tp), value)
    if origin is Literal:
        return is_choice(value, typing.get_args(tp)), value
    if origin is list:
        if not isinstance(value, list):
            return False, value
        (item_tp,) = typing.get_args(tp)
        items = [_convert(item_tp, v) for v in value]
        return all(ok for ok, _ in items), [v for _, v in items]
    if tp is bool:
        return isinstance(value, bool), value
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool), value
    if tp is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        return ok, float(value) if ok else value
    if tp is str:
        return isinstance(value, str), value
    if tp is Path:
        return isinstance(value, (str, Path)), Path(value) if isinstance(
            value, (str, Path)
        ) else value
    raise TypeError(f"unsupported config type {tp}")  # a programming error, not a user error


def _parse_text(section: str, key: str, text: str) -> Any:
    """Parse a value given as text (environment, --set): TOML syntax, bare words as strings."""
    tp = field_types(section)[key]
    if tp is str or _is_path(tp):
        return text
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text  # a bare word: type checking reports it if a string is not allowed


def _resolve_paths(cfg: Config, root: Path, keys: Sequence[str]) -> None:
    for dotted in keys:
        section, key = dotted.split(".")
        if not _is_path(field_types(section)[key]):
            continue
        value: Path | None = getattr(getattr(cfg, section), key)
        if value is not None and not value.is_absolute():
            setattr(getattr(cfg, section), key, (root / value).resolve())


def find_config_file(explicit: Path | None, env: Mapping[str, str]) -> Path | None:
    """--config, else $PKMODEL_CONFIG, else ./config.toml when present, else none."""
    if explicit is not None:
        path, what = Path(explicit), "--config"
    elif env.get(CONFIG_ENV):
        path, what = Path(env[CONFIG_ENV]), CONFIG_ENV
    else:
        default = Path.cwd() / DEFAULT_CONFIG_NAME
        return default if default.is_file() else None
    if not path.is_file():
        raise PkmodelError(f"config file {path} (from {what}) {not_there(path)}")
    return path


def load_config(
    path: Path | None = None,
    overrides: Sequence[str] = (),
    options: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
    option_flags: Mapping[str, str] | None = None,
) -> Config:
    """Resolve the configuration; every user mistake raises PkmodelError with one sentence.

    ``overrides`` are ``section.key=value`` strings (``--set``); ``options`` maps
    ``section.key`` to values of command options (``None`` = option not given), and
    ``option_flags`` to those options' names (the sources errors name; default "option").
    """
    env = os.environ if env is None else env
    cfg = Config()
    for key in all_keys():
        cfg.sources[key] = "default"
    file = find_config_file(path, env)
    root = Path.cwd()
    if file is not None:
        cfg.file = file.resolve()
        root = cfg.file.parent
        try:
            data = tomllib.loads(file.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as e:
            raise PkmodelError(f"config file {file} is not valid TOML: {e}") from None
        except (OSError, UnicodeDecodeError) as e:
            raise PkmodelError(f"config file {file} cannot be read: {e}") from None
        for section, values in data.items():
            if not isinstance(values, dict):
                if section not in SECTIONS:
                    _split_key(f"{section}.?", str(file))  # an unknown section: its suggestion
                raise PkmodelError(
                    f"{file}: '{section} = {values!r}' must be a [{section}] table of keys"
                )
            for key, value in values.items():
                cfg.set(f"{section}.{key}", value, str(file))
    _resolve_paths(cfg, root, all_keys())

    late: list[str] = []
    for name, text in sorted(env.items()):
        if not name.startswith(ENV_PREFIX) or name in NON_CONFIG_ENV:
            continue
        dotted = name[len(ENV_PREFIX) :].lower().replace("__", ".", 1)
        if "." not in dotted:
            raise PkmodelError(
                f"environment variable {name} is not of the form PKMODEL_<SECTION>__<KEY>"
            )
        section, key = _split_key(dotted, f"environment variable {name}")
        cfg.set(dotted, _parse_text(section, key, text), f"env {name}")
        late.append(dotted)

    late += apply_set(cfg, overrides, resolve=False)

    for dotted, value in (options or {}).items():
        if value is not None:
            cfg.set(dotted, value, (option_flags or {}).get(dotted, "option"))
            late.append(dotted)
    _resolve_paths(cfg, Path.cwd(), late)
    return cfg


def apply_set(
    cfg: Config, overrides: Sequence[str], source: str = "--set", resolve: bool = True
) -> list[str]:
    """Apply ``section.key=value`` strings (TOML values, bare words as strings) to ``cfg``.

    Relative paths resolve against the current folder (unless ``resolve`` is False, when the
    caller does it). Returns the keys set.
    """
    keys = []
    for item in overrides:
        if "=" not in item:
            raise PkmodelError(f"--set '{item}' must look like section.key=value")
        dotted, text = (s.strip() for s in item.split("=", 1))
        section, key = _split_key(dotted, f"--set '{item}'")
        cfg.set(dotted, _parse_text(section, key, text), source)
        keys.append(dotted)
    if resolve:
        _resolve_paths(cfg, Path.cwd(), keys)
    return keys


def config_from_dict(data: Mapping[str, Mapping[str, Any]], source: str) -> Config:
    """Rebuild a Config saved with ``to_dict`` (for example inside a checkpoint).

    Keys this version does not know are ignored, so older checkpoints stay readable.
    """
    cfg = Config()
    known = set(all_keys())
    for section, values in data.items():
        for key, value in values.items():
            if f"{section}.{key}" in known:
                cfg.set(f"{section}.{key}", value, source)
    return cfg


def format_config(cfg: Config) -> str:
    """TOML text of the resolved values, each with its source as a comment."""
    lines = []
    if cfg.file:
        lines.append(f"# config file: {cfg.file}")
    else:
        lines.append("# config file: none (built-in defaults)")
    for section, values in cfg.to_dict().items():
        lines.append(f"\n[{section}]")
        for key, value in values.items():
            lines.append(f"{key} = {_toml_value(value)}  # {cfg.sources.get(f'{section}.{key}')}")
    return "\n".join(lines) + "\n"


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def default_config_toml() -> str:
    """The documented default config file (what `pkmodel config init` writes)."""
    lines = [
        "# pkmodel configuration: the defaults of every step, documented.",
        "# Override order: this file < env PKMODEL_<SECTION>__<KEY> < --set section.key=value",
        "# < command options. Relative paths here resolve against this file's folder.",
        "# An empty string for a path means 'none'.",
    ]
    defaults = Config().to_dict()
    for section, cls in SECTIONS.items():
        lines.append("")
        lines.append(f"# {(cls.__doc__ or '').strip()}")
        lines.append(f"[{section}]")
        for f in dataclasses.fields(cls):
            value = _toml_value(defaults[section][f.name])
            lines.append(f"{f.name} = {value}  # {f.metadata.get('help', '')}")
    return "\n".join(lines) + "\n"
