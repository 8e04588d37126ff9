"""The shared, typed configuration of every pkmodel step, and where each value came from.

``sections`` defines each ``[section]`` (defaults, documentation, range rules), ``loader``
resolves a Config from defaults, the config file, the environment, --set and command options,
and ``rules`` has the rule builders the sections use.
"""

from pkmodel.config.loader import (
    Config,
    all_keys,
    apply_set,
    config_from_dict,
    default_config_toml,
    field_types,
    find_config_file,
    format_config,
    load_config,
)
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

__all__ = [
    "SECTIONS",
    "AugmentConfig",
    "BenchmarkConfig",
    "Config",
    "DataConfig",
    "DecoderConfig",
    "EvalConfig",
    "ExportConfig",
    "LiftConfig",
    "LossConfig",
    "ModelConfig",
    "PrepareConfig",
    "PseudoLabelConfig",
    "SyntheticConfig",
    "TargetsConfig",
    "TrainConfig",
    "all_keys",
    "apply_set",
    "config_from_dict",
    "default_config_toml",
    "field_types",
    "find_config_file",
    "format_config",
    "load_config",
]
