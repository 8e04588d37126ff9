"""The config sections: one dataclass per ``[section]`` of config.toml, each with its defaults,
its one-line documentation per key, and its range rules (``rules()``, checked by ``check()``).

The type of a value is checked when it is loaded (pkmodel.config.loader); the rules here catch
what a type cannot: a probability of 1.5, a zero sigma, an input size that is not a multiple of
the backbone's stride. Each command checks the sections it reads before any work starts, and
`pkmodel config check` runs every section's rules at once.
"""

from __future__ import annotations

import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

from pkmodel.common.errors import PkmodelError
from pkmodel.common.skeleton import NUM_JOINTS
from pkmodel.config.rules import (
    Rule,
    at_least,
    check_rules,
    finite,
    in_range,
    is_choice,
    positive,
    positive_odd,
    probability,
)

# The backbone's total stride: the input side must be a multiple of it.
BACKBONE_STRIDE = 32
# Image sides the synthetic generator accepts, in pixels.
SYNTHETIC_MIN_SIZE, SYNTHETIC_MAX_SIZE = 32, 4096
# Bits per weight that Core ML's lookup tables (palettisation) support.
PALETTE_BITS = (1, 2, 3, 4, 6, 8)
# The largest network input side and width multiplier: a network of input 2048 at width 4
# takes 2.5 GB and half a minute for one image on two CPU cores; beyond them memory runs out.
MAX_INPUT_SIZE, MAX_WIDTH_MULT = 2048, 4.0
# The widest depth window (lift.window, lift.face_window) in depth pixels: on a phone's
# 256 x 192 depth map (fx about 213) it spans 0.5 m at 2 m, wider than a body; wider windows
# only add other surfaces (and memory: a chunk holds frames x joints x window^2 samples).
MAX_DEPTH_WINDOW = 51
# The largest surface-to-joint distance (lift.limb_radius_m) in metres: no limb is 1 m thick.
MAX_LIMB_RADIUS_M = 0.5


class Section:
    """A config section: ``check()`` raises one PkmodelError sentence for the first of its
    ``rules()`` that a value breaks (section.key = value, and the rule)."""

    name: ClassVar[str]

    def rules(self) -> list[Rule]:
        return []

    def all_rules(self) -> list[Rule]:
        """What each key's type promises, then the section's ``rules()``."""
        return [*_type_rules(type(self)), *self.rules()]

    def check(self) -> None:
        check_rules(self.name, self, self.all_rules())

    def check_key(self, key: str) -> None:
        """Only the rules of ``key`` (a command that uses one key of a section)."""
        check_rules(self.name, self, [rule for rule in self.all_rules() if rule[0] == key])


# No number setting means anything beyond this; larger values (1e308, a 20-digit count) only
# overflowed or asked for petabytes or a million processes far from where they were set.
LARGEST_SETTING = 1e6
# Random seeds: what every generator pkmodel seeds takes (NumPy's legacy one, OpenCV's, the
# DataLoader workers' at most 2^32 - 1).
LARGEST_SEED = 2**32 - 1
# Worker processes or threads: a count beyond this is a typo, not a machine.
MOST_WORKERS = 1024


def _type_rules(section: type) -> list[Rule]:
    """What a key's type promises beyond what loading checks: a number key holds a finite
    number within +-LARGEST_SETTING (TOML and --set accept inf, nan, 1e308 and 20-digit
    integers), a ``seed`` 0 to LARGEST_SEED, a ``workers`` count 0 to MOST_WORKERS, a Literal
    key one of its choices (loading checks that; a section built in code is checked here)."""
    rules: list[Rule] = []
    for key, tp in typing.get_type_hints(section).items():
        if tp is float:
            rules.append(
                (
                    key,
                    lambda v: finite(v) and abs(v) <= LARGEST_SETTING,
                    "must be a finite number within +-1e6",
                )
            )
        elif tp is int and key == "seed":
            rules.append((key, lambda v: 0 <= v <= LARGEST_SEED, f"must be a whole number from 0 to {LARGEST_SEED}"))  # fmt: skip
        elif tp is int and key == "workers":
            rules.append((key, lambda v: 0 <= v <= MOST_WORKERS, f"must be 0-{MOST_WORKERS} (0 = one per core)"))  # fmt: skip
        elif tp is int:
            rules.append((key, lambda v: abs(v) <= LARGEST_SETTING, "must be a whole number within +-1e6"))  # fmt: skip
        elif typing.get_origin(tp) is Literal:
            choices = typing.get_args(tp)
            text = "must be one of " + ", ".join(map(str, choices))
            rules.append((key, lambda v, choices=choices: is_choice(v, choices), text))
    return rules


def _f(default: Any, help: str) -> Any:
    """A config field with its one-line documentation (shown by `pkmodel config show`)."""
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata={"help": help})
    return field(default=default, metadata={"help": help})


@dataclass
class DataConfig(Section):
    """Where datasets live. The defaults point at the built-in synthetic set."""

    name: ClassVar[str] = "data"

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
class SyntheticConfig(Section):
    """The built-in synthetic RGB-D people generator (make-synthetic)."""

    name: ClassVar[str] = "synthetic"

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
    layout: Literal["pkmodel", "stray", "record3d"] = _f(
        "pkmodel",
        "clip layout: pkmodel (sequences/), stray (Stray Scanner folders) or record3d (.r3d files)",
    )

    def rules(self) -> list[Rule]:
        size = f"must be {SYNTHETIC_MIN_SIZE}-{SYNTHETIC_MAX_SIZE}"
        return [
            at_least("num_train", 0),
            at_least("num_val", 0),
            in_range("width", SYNTHETIC_MIN_SIZE, SYNTHETIC_MAX_SIZE, size),
            in_range("height", SYNTHETIC_MIN_SIZE, SYNTHETIC_MAX_SIZE, size),
            at_least("sequences", 0),
            at_least("frames", 1),
            positive("fps", "must be > 0"),
            probability("second_person_prob"),
            ("max_depth_m", lambda v: finite(v) and 1.0 < v <= 65.0, "must be in (1, 65] metres"),
            in_range("jpeg_quality", 1, 100, "must be 1-100"),
            in_range("depth_scale", 0.05, 1.0, "must be in [0.05, 1]"),
            in_range("depth_noise_m", 0.0, 0.5, "must be in [0, 0.5] metres"),
        ]

    def check(self) -> None:
        super().check()
        if self.num_train == self.num_val == self.sequences == 0:
            raise PkmodelError(
                "synthetic.num_train, num_val and sequences are all 0: nothing to generate"
            )


@dataclass
class PrepareConfig(Section):
    """prepare-coco: one square crop per usable person."""

    name: ClassVar[str] = "prepare"

    expand_ratio: float = _f(1.25, "crop side = longer box side x this ratio")
    cover_keypoints: bool = _f(
        True,
        "the box is grown to hold every labelled joint before expanding (COCO boxes cut limbs)",
    )
    crop_size: int = _f(256, "saved crop resolution in pixels (square)")
    skip_crowd: bool = _f(True, "drop iscrowd annotations")
    min_keypoints: int = _f(1, "minimum labelled joints (visibility > 0) to keep a person")
    min_area: float = _f(32.0 * 32.0, "minimum annotation area in original pixels")
    max_people: int = _f(
        0, "drop a person when more other people have a labelled joint in its crop (0 = no limit)"
    )
    jpeg_quality: int = _f(95, "JPEG quality of saved crops")
    workers: int = _f(0, "worker processes (0 = one per core)")

    def rules(self) -> list[Rule]:
        return [
            at_least("crop_size", 8),
            in_range(
                "expand_ratio",
                1e-9,
                10.0,
                "must be in (0, 10]: a crop 10 times the box is all background",
            ),
            at_least("min_keypoints", 0),
            at_least("min_area", 0),
            at_least("max_people", 0, "must be >= 0 (0 = no limit)"),
            in_range("jpeg_quality", 1, 100, "must be 1-100"),
        ]


@dataclass
class ModelConfig(Section):
    """The network: MobileNetV2 backbone, stride-4 neck, four heads."""

    name: ClassVar[str] = "model"

    arch: Literal["pkmodel", "posekit"] = _f(
        "pkmodel", "network: pkmodel's, or PoseKit's movenet.pytorch (loads PoseKit .pth files)"
    )
    input_size: int = _f(192, "square input side in pixels (multiple of 32); output grid = /4")
    width_mult: float = _f(1.0, "MobileNetV2 width multiplier")
    stem: Literal["fused", "fused-s8", "mobilenetv2"] = _f(
        "fused-s8",
        "backbone stem: fused (two 3x3 stride-2 convs to stride 4), fused-s8 (those, then fused "
        "3x3 blocks to stride 8) or mobilenetv2 (MobileNetV2's own blocks)",
    )
    neck_channels: int = _f(48, "channels of the upsampling neck")
    heads: Literal["separate", "shared"] = _f(
        "shared", "output heads: shared (one body, split) or separate (one body per output)"
    )
    head_channels: int = _f(96, "hidden channels of each head body")
    pretrained: Path | None = _f(None, "local ImageNet MobileNetV2 state_dict ('' = random init)")

    def rules(self) -> list[Rule]:
        multiple = f"must be a positive multiple of {BACKBONE_STRIDE} up to {MAX_INPUT_SIZE}"
        ok_size = lambda v: 0 < v <= MAX_INPUT_SIZE and v % BACKBONE_STRIDE == 0  # noqa: E731
        return [
            ("input_size", ok_size, multiple),
            in_range("width_mult", 1e-9, MAX_WIDTH_MULT, f"must be in (0, {MAX_WIDTH_MULT:g}]"),
            positive("neck_channels"),
            positive("head_channels"),
        ]


@dataclass
class TargetsConfig(Section):
    """Training targets on the stride-4 grid."""

    name: ClassVar[str] = "targets"

    sigma_scale: float = _f(0.025, "joint Gaussian sigma in cells = this x person size in cells")
    min_sigma: float = _f(1.0, "smallest joint Gaussian sigma in cells")
    max_sigma: float = _f(3.0, "largest joint Gaussian sigma in cells")
    center_sigma_scale: float = _f(0.05, "center Gaussian sigma in cells = this x person size")
    center_max_sigma: float = _f(
        1.0, "largest center sigma in cells (above ~1.06 the decoder's center prior can shift it)"
    )

    def rules(self) -> list[Rule]:
        """Gaussian sigmas (cells) are positive, the smallest no larger than the caps."""
        return [
            at_least("sigma_scale", 0.0),
            positive("min_sigma"),
            positive("max_sigma"),
            at_least("center_sigma_scale", 0.0),
            positive("center_max_sigma"),
            at_least(
                "max_sigma", self.min_sigma, f"must be >= targets.min_sigma ({self.min_sigma!r})"
            ),
            at_least(
                "center_max_sigma",
                self.min_sigma,
                f"must be >= targets.min_sigma ({self.min_sigma!r})",
            ),
        ]


@dataclass
class LossConfig(Section):
    """Loss weights; every term is reported separately."""

    name: ClassVar[str] = "loss"

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

    WEIGHTS: ClassVar[tuple[str, ...]] = (
        "heatmap_weight", "center_weight", "reg_weight", "offset_weight", "bone_weight"
    )  # fmt: skip

    def rules(self) -> list[Rule]:
        """Weights are >= 0 and at least one term is on."""
        return [at_least(w, 0.0) for w in self.WEIGHTS] + [
            at_least("foreground_weight", 0.0),
            at_least("offset_radius", 0),
        ]

    def check(self) -> None:
        super().check()
        if all(getattr(self, w) == 0 for w in self.WEIGHTS):
            raise PkmodelError("loss: every weight is 0, so nothing would be learned")


@dataclass
class AugmentConfig(Section):
    """Training augmentation (validation is never augmented)."""

    name: ClassVar[str] = "augment"

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

    def rules(self) -> list[Rule]:
        """Probabilities in [0, 1], magnitudes in range, scale_min <= scale_max."""
        probs = ("flip_prob", "affine_prob", "crop_pad_prob", "color_prob", "blur_prob",
                 "noise_prob", "occlusion_prob")  # fmt: skip
        return [probability(p) for p in probs] + [
            positive("scale_min"),
            positive("scale_max"),
            in_range("rotate_deg", 0, 180, "must be in [0, 180]"),
            ("shift", lambda v: finite(v) and 0 <= v < 1, "must be in [0, 1)"),
            ("crop_pad_max", lambda v: finite(v) and 0 <= v < 0.5, "must be in [0, 0.5)"),
            (
                "scale_min",
                lambda v: v <= self.scale_max,
                f"must be <= augment.scale_max ({self.scale_max!r})",
            ),
        ]


@dataclass
class TrainConfig(Section):
    """pkmodel train."""

    name: ClassVar[str] = "train"

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
    device: str = _f("auto", "where it runs: auto (cuda > mps > cpu), cpu, cuda, cuda:N or mps")
    val_every: int = _f(1, "validate every N epochs")
    early_stop_patience: int = _f(0, "stop after N validations without AP gain (0 = off)")
    seed: int = _f(0, "random seed")
    deterministic: bool = _f(False, "deterministic algorithms (exact resume, slower)")
    finetune: Path | None = _f(
        None,
        "start from these weights: a checkpoint, a PoseKit .pth or the app's Core ML model "
        "('' = none)",
    )

    def rules(self) -> list[Rule]:
        return [
            at_least("epochs", 1, "must be at least 1"),
            at_least("minutes", 0, "must be >= 0 (0 = no time budget)"),
            at_least("batch_size", 1, "must be at least 1"),
            positive("lr"),
            at_least("weight_decay", 0),
            ("momentum", lambda v: 0 <= v < 1, "must be in [0, 1)"),
            at_least("warmup_epochs", 0),
            at_least("step_size", 1, "must be at least 1"),
            ("gamma", lambda v: 0 < v <= 1, "must be in (0, 1]"),
            at_least("plateau_patience", 0),
            at_least("grad_clip_norm", 0, "must be >= 0 (0 = off)"),
            ("ema_decay", lambda v: 0 <= v < 1, "must be in [0, 1)"),
            at_least("val_every", 1, "must be at least 1"),
            at_least("early_stop_patience", 0, "must be >= 0 (0 = off)"),
        ]


@dataclass
class DecoderConfig(Section):
    """The graph-outside decoder (style "posekit-app": the app's, with its own fixed values)."""

    name: ClassVar[str] = "decoder"

    score_threshold: float = _f(0.2, "joints scoring below this are reported as not found")
    center_prior_offset: float = _f(1.8, "prior = 1 / (distance in cells + this)")
    style: Literal["pkmodel", "posekit-app"] = _f(
        "pkmodel", "pkmodel, or posekit-app: the PoseKit app's decoder, faults included"
    )

    def rules(self) -> list[Rule]:
        """The score threshold is a probability; the prior offset keeps 1 / (d + c) finite."""
        return [probability("score_threshold"), positive("center_prior_offset")]


@dataclass
class EvalConfig(Section):
    """pkmodel evaluate."""

    name: ClassVar[str] = "eval"

    out_dir: Path = _f(Path("runs/eval"), "metrics.json, results and pictures go here")
    batch_size: int = _f(64, "inference batch size")
    flip_test: bool = _f(False, "average with the horizontally flipped image")
    pck_threshold: float = _f(0.2, "PCK threshold as a fraction of the normaliser")
    pck_norm: Literal["torso", "bbox"] = _f("torso", "PCK normaliser")

    def rules(self) -> list[Rule]:
        return [at_least("batch_size", 1, "must be at least 1"), positive("pck_threshold")]


@dataclass
class PseudoLabelConfig(Section):
    """data pseudo-label: which predicted poses become training labels."""

    name: ClassVar[str] = "pseudo_label"

    joint_threshold: float = _f(0.3, "joints scoring below this become unlabelled (v = 0)")
    person_threshold: float = _f(0.5, "keep a pose when its kept joints' mean score reaches this")
    min_joints: int = _f(8, "keep a pose with at least this many joints above joint_threshold")
    box_margin: float = _f(0.1, "person box = kept joints' box grown by this x its longer side")
    refine_passes: int = _f(2, "after the whole image, run the model this many times more on a crop around the pose it found, cut as prepare-coco cuts people (0 = whole image only)")  # fmt: skip
    source: str = _f("pseudo", "source tag written into every pseudo-labelled sample")

    def rules(self) -> list[Rule]:
        return [
            probability("joint_threshold"),
            probability("person_threshold"),
            in_range("min_joints", 1, NUM_JOINTS, f"must be 1-{NUM_JOINTS}"),
            at_least("box_margin", 0),
            at_least("refine_passes", 0),
            ("source", lambda v: bool(v) and "/" not in v, "must be a plain name"),
        ]


@dataclass
class ExportConfig(Section):
    """export-coreml and export-onnx."""

    name: ClassVar[str] = "export"

    out_dir: Path = _f(Path("runs/export"), "default output folder")
    precision: Literal["fp16", "fp32"] = _f("fp16", "Core ML compute precision")
    input_name: str = _f("input", "name of the image input (the PoseKit app feeds 'input')")
    color_layout: Literal["RGB", "BGR"] = _f("RGB", "Core ML image input channel order")
    minimum_ios: int = _f(17, "minimum iOS deployment target")
    compress: Literal["none", "int8", "palette"] = _f("none", "Core ML weight compression")
    palette_bits: int = _f(6, "bits per weight for palettisation")
    palette_mode: Literal["auto", "kmeans", "uniform"] = _f(
        "auto",
        "palette lookup tables: kmeans (needs scikit-learn), uniform, auto (kmeans if installed)",
    )
    check_images: str = _f(
        "",
        "folder of images the exported Core ML program is run on against PyTorch (empty: "
        "generated synthetic people)",
    )
    check_count: int = _f(32, "how many check images (the first in name order)")
    onnx_opset: int = _f(18, "ONNX opset")
    dynamic_batch: bool = _f(False, "ONNX batch dimension dynamic")
    author: str = _f("PoseKit", "model metadata: author")
    license: str = _f("Apache-2.0", "model metadata: license")
    version: str = _f("0.1.0", "model metadata: version")

    def rules(self) -> list[Rule]:
        """Core ML values no export can use (the target's upper end is checked against the
        installed coremltools when exporting, the ONNX opset against the installed onnx)."""
        return [
            (
                "minimum_ios",
                lambda v: v >= 15,
                "is not supported (ML Programs need iOS 15 or later)",
            ),
            (
                "palette_bits",
                lambda v: self.compress != "palette" or v in PALETTE_BITS,
                "must be one of " + ", ".join(map(str, PALETTE_BITS)),
            ),
            ("check_count", lambda v: v >= 1, "must be 1 or more"),
            (
                "input_name",
                lambda v: v.isidentifier(),
                "must be a name of letters, digits and underscores (not starting with a digit)",
            ),
            (
                "compress",
                lambda v: v == "none" or self.minimum_ios >= 16,
                f"needs export.minimum_ios >= 16 (got {self.minimum_ios})",
            ),
        ]


@dataclass
class LiftConfig(Section):
    """2D -> 3D lifting from depth, smoothing and takes."""

    name: ClassVar[str] = "lift"

    window: int = _f(
        5, f"depth sampling window side in depth pixels (odd, at most {MAX_DEPTH_WINDOW})"
    )
    face_window: int = _f(
        3,
        "depth window of the nose, eyes and ears (odd, at most lift.window): small features on a "
        "round head; where it finds no depth, lift.window's",
    )
    min_confidence: int = _f(1, "lowest depth confidence level accepted (0-2, ARKit style)")
    depth_band_m: float = _f(
        0.15, "median only over window pixels this close to the joint pixel's depth (0 = all)"
    )
    depth_band_noise_sds: float = _f(
        2.0,
        "widen the depth band to this many sds of the take's depth noise where that is wider "
        "(a phone's LiDAR far away; with lift.skeleton; 0 = never)",
    )
    min_score: float = _f(0.3, "lowest keypoint score that gets a 3D position")
    min_depth_m: float = _f(0.1, "nearest valid depth in metres")
    max_depth_m: float = _f(10.0, "farthest valid depth in metres")
    surface_correction: bool = _f(True, "push the surface sample back by the limb radius")
    depth_sampler: Literal["pkmodel", "posekit-app"] = _f(
        "pkmodel",
        "pkmodel (window, band, depth range, correction) or posekit-app (the phone's sampler)",
    )
    app_depth_mode: Literal["strict", "balanced", "lenient"] = _f(
        "balanced", "posekit-app sampler mode: strict (level 2, r 2), balanced (1, r 3), lenient"
    )
    skeleton: bool = _f(
        True,
        "one skeleton per take: joints with missing, hidden or implausible depth are placed on "
        "their ray at the bone's length",
    )
    smoothing: Literal["none", "ema", "one_euro", "posekit-app", "offline"] = _f(
        "one_euro",
        "temporal filter: causal (ema, one_euro, posekit-app: the phone's EMA) or offline "
        "(zero lag, the whole take at once)",
    )
    offline_sigma_s: float = _f(
        0.0,
        "offline smoothing: the depth's Gaussian time window sd in seconds (0 = from the "
        "take's depth noise: 0.075 for clean depth up to 0.225 for a phone's)",
    )
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
    limb_widths: bool = _f(True, "scale the limb radii to the take's limb widths in the depth maps")
    hip_prior: bool = _f(
        True, "canonical frame: place a turned person's hidden hip behind the seen one"
    )
    hip_width_m: float = _f(
        0.0,
        "hip width for hip_prior in metres (0 = the widest the recording shows across the view)",
    )
    out_dir: Path = _f(Path("runs/lift"), "takes, overlays, 3D pictures and metrics.json go here")
    batch_size: int = _f(16, "frames per network batch (with --weights)")
    device: str = _f(
        "auto",
        "where the network runs (--weights): auto (cuda > mps > cpu), cpu, cuda, cuda:N or mps",
    )
    rotate: Literal["auto", 0, 90, 180, 270] = _f(
        "auto",
        "degrees the colour frames turn clockwise before the network (--weights) sees them, so "
        "that the person stands upright (a phone held upright stores its frames on their "
        "side); auto: by the camera poses (Stray Scanner), else the turn under which the "
        "network finds clearly more joints on 8 frames",
    )
    intrinsics_key: str = _f(
        "", "which intrinsics set of intrinsics.json to use ('' = the only one)"
    )
    fps: float = _f(30.0, "frame rate of plain folders without timestamps or an fps entry")
    overlays: bool = _f(True, "write the 2D skeleton over every colour frame")
    sheet_frames: int = _f(12, "frames on the canonical 3D contact sheet")
    take_format: Literal["pkmodel", "posekit", "both"] = _f(
        "pkmodel", "takes: pkmodel (its own), posekit (the PoseKit app's folder + ZIP) or both"
    )

    def rules(self) -> list[Rule]:
        window = (
            f"must be at most {MAX_DEPTH_WINDOW} depth pixels: a window samples one joint's "
            f"surface, and {MAX_DEPTH_WINDOW} pixels of a phone's depth map already span 0.5 m "
            "at 2 m, wider than a body"
        )
        return [
            positive_odd("window"),
            positive_odd("face_window"),
            *((key, lambda v: v <= MAX_DEPTH_WINDOW, window) for key in ("window", "face_window")),
            in_range("min_confidence", 0, 2, "must be 0, 1 or 2 (ARKit's levels)"),
            at_least("depth_band_m", 0, "must be >= 0 (0 = off)"),
            at_least("depth_band_noise_sds", 0, "must be >= 0 (0 = never)"),
            probability("min_score"),
            at_least("min_depth_m", 0),
            (
                "max_depth_m",
                lambda v: finite(v) and v > self.min_depth_m,
                f"must be above lift.min_depth_m ({self.min_depth_m!r})",
            ),
            (
                "limb_radius_m",
                lambda v: (
                    len(v) == NUM_JOINTS
                    and all(finite(r) and 0 <= r <= MAX_LIMB_RADIUS_M for r in v)
                ),
                f"must list {NUM_JOINTS} radii in metres (one per COCO joint), each in "
                f"[0, {MAX_LIMB_RADIUS_M:g}]: the distance from the skin to the joint",
            ),
            ("ema_alpha", lambda v: finite(v) and 0 < v <= 1, "must be in (0, 1]"),
            positive("one_euro_min_cutoff"),
            positive("one_euro_d_cutoff"),
            at_least("one_euro_beta", 0),
            at_least("one_euro_beta_2d", 0),
            positive("max_gap_s"),
            (
                "offline_sigma_s",
                lambda v: finite(v) and 0 <= v <= 2,
                "must be in [0, 2] seconds (0 = from the depth noise)",
            ),
            at_least("batch_size", 1),
            positive("fps"),
            at_least("sheet_frames", 1),
            in_range("hip_width_m", 0, 1, "must be in [0, 1] metres (0 = estimate)"),
        ]


@dataclass
class BenchmarkConfig(Section):
    """pkmodel benchmark: how much work each figure is measured over (--quick: tiny sizes)."""

    name: ClassVar[str] = "benchmark"

    out: Path = _f(Path("runs/benchmark.json"), "the JSON of figures (--quick: NAME-quick.json)")
    repeats: int = _f(5, "timed repeats of each figure; the figures are medians")
    batch_size: int = _f(32, "batch of the throughput figures and of the batched decoder")
    latency_runs: int = _f(50, "timed batch-1 inferences per backend (median)")
    train_steps: int = _f(5, "timed optimizer steps after one warm-up step (train.batch_size)")
    images: int = _f(48, "synthetic images generated per repeat; they feed prepare and training")

    def rules(self) -> list[Rule]:
        keys = ("repeats", "batch_size", "latency_runs", "train_steps", "images")
        return [at_least(key, 1) for key in keys]


# Every section, in the order of config.toml and of the data flow, by its [name].
SECTIONS: dict[str, type[Section]] = {
    cls.name: cls
    for cls in (
        DataConfig,
        SyntheticConfig,
        PrepareConfig,
        ModelConfig,
        TargetsConfig,
        LossConfig,
        AugmentConfig,
        TrainConfig,
        DecoderConfig,
        EvalConfig,
        PseudoLabelConfig,
        ExportConfig,
        LiftConfig,
        BenchmarkConfig,
    )
}
