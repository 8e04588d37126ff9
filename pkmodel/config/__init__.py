"""The shared, typed configuration of every pkmodel step, and where each value came from.

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

ENV_PREFIX = "PKMODEL_"
CONFIG_ENV = "PKMODEL_CONFIG"
# PKMODEL_* variables that are not config values (the scripts' virtual environment folder).
NON_CONFIG_ENV = frozenset({CONFIG_ENV, "PKMODEL_VENV"})
DEFAULT_CONFIG_NAME = "config.toml"


def _f(default: Any, help: str) -> Any:
    """A config field with its one-line documentation (shown by `pkmodel config show`)."""
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata={"help": help})
    return field(default=default, metadata={"help": help})


@dataclass
class DataConfig:
    """Where datasets live. The defaults point at the built-in synthetic set."""

    synthetic_dir: Path = _f(Path("dataset/synthetic"), "output folder of make-synthetic")
    train_annotations: Path = _f(
        Path("dataset/synthetic/annotations/person_keypoints_train.json"),
        "COCO person-keypoint JSON of the training split",
    )
    train_images: Path = _f(Path("dataset/synthetic/train"), "image folder of the training split")
    val_annotations: Path = _f(
        Path("dataset/synthetic/annotations/person_keypoints_val.json"),
        "COCO person-keypoint JSON of the validation split",
    )
    val_images: Path = _f(Path("dataset/synthetic/val"), "image folder of the validation split")
    prepared_dir: Path = _f(Path("dataset/prepared"), "output of prepare-coco: imgs/ + NAME.json")
    train_split: str = _f("train", "name of the prepared training split (NAME.json)")
    val_split: str = _f("val", "name of the prepared validation split (NAME.json)")


@dataclass
class SyntheticConfig:
    """The built-in synthetic RGB-D people generator (make-synthetic)."""

    num_train: int = _f(2000, "training images")
    num_val: int = _f(300, "validation images")
    width: int = _f(256, "image width in pixels")
    height: int = _f(256, "image height in pixels")
    seed: int = _f(0, "random seed; the same seed gives the same files")
    sequences: int = _f(2, "RGB-D clips of continuous motion for the 3D pipeline")
    frames: int = _f(48, "frames per clip")
    fps: float = _f(30.0, "frame rate of the clips (timestamps)")
    second_person_prob: float = _f(0.3, "probability of a second person in an image")
    max_depth_m: float = _f(10.0, "depth sensor range: farther surfaces are written as 0")
    jpeg_quality: int = _f(92, "JPEG quality of the RGB images")
    workers: int = _f(0, "worker processes (0 = one per core)")
    depth_sensor: Literal["exact", "lidar"] = _f(
        "exact",
        "exact: noise-free, colour resolution; lidar: a phone LiDAR's, with confidence maps",
    )
    depth_scale: float = _f(0.5, "lidar: depth map side / colour image side (ARKit: 0.13)")
    depth_noise_m: float = _f(0.01, "lidar: depth noise sd in metres at 1 m (grows with Z^2)")


@dataclass
class PrepareConfig:
    """prepare-coco: one square crop per usable person."""

    expand_ratio: float = _f(1.25, "crop side = longer box side x this ratio")
    cover_keypoints: bool = _f(
        True,
        "the box is grown to hold every labelled joint before expanding (COCO boxes cut limbs)",
    )
    crop_size: int = _f(256, "saved crop resolution in pixels (square)")
    skip_crowd: bool = _f(True, "drop iscrowd annotations")
    min_keypoints: int = _f(3, "minimum labelled joints (visibility > 0) to keep a person")
    min_area: float = _f(32.0 * 32.0, "minimum annotation area in original pixels")
    max_people: int = _f(6, "drop images with more annotated people than this (0 = no limit)")
    jpeg_quality: int = _f(95, "JPEG quality of saved crops")
    workers: int = _f(0, "worker processes (0 = one per core)")


@dataclass
class ModelConfig:
    """The network: MobileNetV2 backbone, stride-4 neck, four heads."""

    input_size: int = _f(192, "square input side in pixels (multiple of 32); output grid = /4")
    width_mult: float = _f(1.0, "MobileNetV2 width multiplier")
    neck_channels: int = _f(64, "channels of the upsampling neck")
    head_channels: int = _f(64, "hidden channels of each head")
    pretrained: Path | None = _f(None, "local ImageNet MobileNetV2 state_dict ('' = random init)")


@dataclass
class TargetsConfig:
    """Training targets on the stride-4 grid."""

    sigma_scale: float = _f(0.025, "joint Gaussian sigma in cells = this x person size in cells")
    min_sigma: float = _f(1.0, "smallest joint Gaussian sigma in cells")
    max_sigma: float = _f(3.0, "largest joint Gaussian sigma in cells")
    center_sigma_scale: float = _f(0.05, "center Gaussian sigma in cells = this x person size")
    center_max_sigma: float = _f(
        1.0, "largest center sigma in cells (above ~1.06 the decoder's center prior can shift it)"
    )


@dataclass
class LossConfig:
    """Loss weights; every term is reported separately."""

    # Weights balance the terms' gradients on the backbone (docs/model.md, "Loss"): with MSE
    # on sigmoid heatmaps the heatmap gradient was 25x smaller than the offsets' and the
    # heatmaps barely learned; the focal loss with these weights learns them several times faster.
    heatmap_weight: float = _f(1.0, "weight of the joint heatmap loss")
    center_weight: float = _f(0.25, "weight of the center heatmap loss")
    reg_weight: float = _f(0.5, "weight of the center-to-joint L1 (in cells)")
    offset_weight: float = _f(2.0, "weight of the sub-cell offset L1")
    offset_radius: int = _f(1, "offsets are trained on the cells within this many cells of each joint (0 = its cell)")  # fmt: skip
    bone_weight: float = _f(0.0, "weight of the optional bone-length term (0 = off)")
    foreground_weight: float = _f(4.0, "MSE only: extra weight of heatmap pixels near a target (> 0.1)")  # fmt: skip
    heatmap_loss: Literal["mse", "focal"] = _f(
        "focal", "heatmap and center loss: CenterNet's focal loss, or foreground-weighted MSE"
    )


@dataclass
class AugmentConfig:
    """Training augmentation (validation is never augmented)."""

    flip_prob: float = _f(0.5, "horizontal flip (swaps left/right joints)")
    affine_prob: float = _f(0.7, "scale / rotate / shift")
    scale_min: float = _f(0.75, "smallest scale factor")
    scale_max: float = _f(1.25, "largest scale factor")
    rotate_deg: float = _f(30.0, "largest rotation in degrees")
    shift: float = _f(0.1, "largest shift as a fraction of the side")
    crop_pad_prob: float = _f(0.2, "random crop and pad")
    crop_pad_max: float = _f(0.15, "crop and pad: largest cut (or margin) per side, fraction")
    color_prob: float = _f(0.5, "brightness / contrast / hue / saturation")
    blur_prob: float = _f(0.1, "Gaussian or motion blur")
    noise_prob: float = _f(0.1, "Gaussian noise")
    occlusion_prob: float = _f(0.2, "random occluding patches")


@dataclass
class TrainConfig:
    """pkmodel train."""

    out_dir: Path = _f(Path("runs/train"), "run folder: checkpoints, metrics.jsonl, curves")
    epochs: int = _f(60, "training epochs")
    minutes: float = _f(
        0.0,
        "time budget: after epoch 1 (and a validation), train.epochs becomes as many epochs "
        "as fit into this many minutes in all at the measured speed (0 = off)",
    )
    batch_size: int = _f(32, "global batch size (split across DDP processes)")
    workers: int = _f(2, "DataLoader worker processes")
    optimizer: Literal["adamw", "adam", "sgd"] = _f("adamw", "optimizer")
    lr: float = _f(2e-3, "peak learning rate")
    weight_decay: float = _f(1e-4, "weight decay")
    momentum: float = _f(0.9, "SGD momentum")
    scheduler: Literal["cosine", "step", "plateau"] = _f("cosine", "schedule after warmup")
    warmup_epochs: float = _f(1.0, "linear warmup length in epochs")
    step_size: int = _f(20, "step schedule: epochs between decays")
    gamma: float = _f(0.1, "step / plateau decay factor")
    plateau_patience: int = _f(3, "plateau schedule: validations without AP gain before decay")
    grad_clip_norm: float = _f(5.0, "clip the gradient norm to this (0 = off)")
    ema: bool = _f(True, "keep an exponential moving average of the weights")
    ema_decay: float = _f(0.998, "EMA decay per step")
    amp: Literal["off", "bf16", "fp16"] = _f("off", "mixed precision on CUDA")
    channels_last: bool = _f(True, "channels-last memory format (about 1.4x faster on CPU)")
    device: str = _f("auto", "auto (cuda > mps > cpu), cpu, cuda, cuda:N or mps")
    val_every: int = _f(1, "validate every N epochs")
    early_stop_patience: int = _f(0, "stop after N validations without AP gain (0 = off)")
    seed: int = _f(0, "random seed")
    deterministic: bool = _f(False, "deterministic algorithms (exact resume, slower)")
    finetune: Path | None = _f(None, "start from this checkpoint's weights ('' = none)")


@dataclass
class DecoderConfig:
    """The graph-outside decoder (the phone uses the same values)."""

    score_threshold: float = _f(0.2, "joints scoring below this are reported as not found")
    center_prior_offset: float = _f(1.8, "prior = 1 / (distance in cells + this)")


@dataclass
class EvalConfig:
    """pkmodel evaluate."""

    out_dir: Path = _f(Path("runs/eval"), "metrics.json, results and pictures go here")
    batch_size: int = _f(64, "inference batch size")
    flip_test: bool = _f(False, "average with the horizontally flipped image")
    pck_threshold: float = _f(0.2, "PCK threshold as a fraction of the normaliser")
    pck_norm: Literal["torso", "bbox"] = _f("torso", "PCK normaliser")


@dataclass
class PseudoLabelConfig:
    """data pseudo-label: which predicted poses become training labels."""

    joint_threshold: float = _f(0.3, "joints scoring below this become unlabelled (v = 0)")
    person_threshold: float = _f(0.5, "keep a pose when its kept joints' mean score reaches this")
    min_joints: int = _f(8, "keep a pose with at least this many joints above joint_threshold")
    box_margin: float = _f(0.1, "person box = kept joints' box grown by this x its longer side")
    refine_passes: int = _f(2, "after the whole image, run the model this many times more on a crop around the pose it found, cut as prepare-coco cuts people (0 = whole image only)")  # fmt: skip
    source: str = _f("pseudo", "source tag written into every pseudo-labelled sample")


@dataclass
class ExportConfig:
    """export-coreml and export-onnx."""

    out_dir: Path = _f(Path("runs/export"), "default output folder")
    precision: Literal["fp16", "fp32"] = _f("fp16", "Core ML compute precision")
    color_layout: Literal["RGB", "BGR"] = _f("RGB", "Core ML image input channel order")
    minimum_ios: int = _f(17, "minimum iOS deployment target")
    compress: Literal["none", "int8", "palette"] = _f("none", "Core ML weight compression")
    palette_bits: int = _f(6, "bits per weight for palettisation")
    palette_mode: Literal["auto", "kmeans", "uniform"] = _f(
        "auto",
        "palette lookup tables: kmeans (needs scikit-learn), uniform, auto (kmeans if installed)",
    )
    onnx_opset: int = _f(18, "ONNX opset")
    dynamic_batch: bool = _f(False, "ONNX batch dimension dynamic")
    author: str = _f("PoseKit", "model metadata: author")
    license: str = _f("Apache-2.0", "model metadata: license")
    version: str = _f("0.1.0", "model metadata: version")


@dataclass
class LiftConfig:
    """2D -> 3D lifting from depth, smoothing and takes."""

    window: int = _f(5, "depth sampling window side in depth pixels (odd)")
    min_confidence: int = _f(1, "lowest depth confidence level accepted (0-2, ARKit style)")
    depth_band_m: float = _f(
        0.15, "median only over window pixels this close to the joint pixel's depth (0 = all)"
    )
    min_score: float = _f(0.3, "lowest keypoint score that gets a 3D position")
    min_depth_m: float = _f(0.1, "nearest valid depth in metres")
    max_depth_m: float = _f(10.0, "farthest valid depth in metres")
    surface_correction: bool = _f(True, "push the surface sample back by the limb radius")
    smoothing: Literal["none", "ema", "one_euro"] = _f("one_euro", "temporal filter")
    ema_alpha: float = _f(0.55, "EMA weight of the new sample")
    one_euro_min_cutoff: float = _f(6.0, "One-Euro minimum cutoff in Hz (at rest: ~EMA 0.55)")
    one_euro_beta: float = _f(80.0, "One-Euro speed coefficient: cutoff grows by this Hz per m/s")
    one_euro_d_cutoff: float = _f(1.0, "One-Euro derivative cutoff in Hz")
    max_gap_s: float = _f(0.25, "a joint unseen for longer restarts its filter")
    smooth_2d: bool = _f(False, "also smooth the 2D keypoints (same filter, before depth)")
    one_euro_beta_2d: float = _f(0.01, "One-Euro speed coefficient of 2D smoothing: Hz per px/s")
    limb_radius_m: list[float] = _f(
        [0.01, 0.01, 0.01, 0.01, 0.01, 0.055, 0.055, 0.04, 0.04, 0.027, 0.027,
         0.09, 0.09, 0.06, 0.06, 0.04, 0.04],
        "surface-to-joint distance per COCO joint in metres (adult anthropometry)",
    )  # fmt: skip
    hip_prior: bool = _f(
        True, "canonical frame: place a turned person's hidden hip behind the seen one"
    )
    hip_width_m: float = _f(
        0.0,
        "hip width for hip_prior in metres (0 = the widest the recording shows across the view)",
    )
    out_dir: Path = _f(Path("runs/lift"), "takes, overlays, 3D pictures and metrics.json go here")
    batch_size: int = _f(16, "frames per network batch (with --weights)")
    device: str = _f("auto", "auto (cuda > mps > cpu), cpu, cuda, cuda:N or mps")
    intrinsics_key: str = _f(
        "", "which intrinsics set of intrinsics.json to use ('' = the only one)"
    )
    fps: float = _f(30.0, "frame rate of plain folders without timestamps or an fps entry")
    overlays: bool = _f(True, "write the 2D skeleton over every colour frame")
    sheet_frames: int = _f(12, "frames on the canonical 3D contact sheet")


@dataclass
class BenchmarkConfig:
    """pkmodel benchmark: how much work each figure is measured over (--quick: tiny sizes)."""

    out: Path = _f(Path("runs/benchmark.json"), "the JSON of figures (--quick: NAME-quick.json)")
    repeats: int = _f(5, "timed repeats of each figure; the figures are medians")
    batch_size: int = _f(32, "batch of the throughput figures and of the batched decoder")
    latency_runs: int = _f(50, "timed batch-1 inferences per backend (median)")
    train_steps: int = _f(5, "timed optimizer steps after one warm-up step (train.batch_size)")
    images: int = _f(48, "synthetic images generated per repeat; they feed prepare and training")


SECTIONS: dict[str, type] = {
    "data": DataConfig,
    "synthetic": SyntheticConfig,
    "prepare": PrepareConfig,
    "model": ModelConfig,
    "targets": TargetsConfig,
    "loss": LossConfig,
    "augment": AugmentConfig,
    "train": TrainConfig,
    "decoder": DecoderConfig,
    "eval": EvalConfig,
    "pseudo_label": PseudoLabelConfig,
    "export": ExportConfig,
    "lift": LiftConfig,
    "benchmark": BenchmarkConfig,
}


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
        return value in typing.get_args(tp), value
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
) -> Config:
    """Resolve the configuration; every user mistake raises PkmodelError with one sentence.

    ``overrides`` are ``section.key=value`` strings (``--set``); ``options`` maps
    ``section.key`` to values of command options (``None`` = option not given).
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
            cfg.set(dotted, value, "option")
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
