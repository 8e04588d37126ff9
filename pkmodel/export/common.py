"""Core ML and ONNX export of the pose network, with every check that can run without a Mac.

Core ML: the network is traced (TorchScript), converted to an ML Program with an image input
(the app passes camera pixels 0..255; ``x / 127.5 - 1`` happens inside the model), outputs named
as ``pkmodel.model.network.OUTPUT_NAMES`` (float32), metadata for the app (input size, stride, joints,
skeleton, decoder settings), optional weight compression (8-bit linear or palettisation). The
saved bundle is reloaded and its spec and MIL program are verified before it is moved into place.
On macOS the model also runs and is compared with PyTorch; elsewhere that step says why it is
skipped.

ONNX: the dynamo exporter (``torch.export``) at the configured opset, one self-contained file,
``onnx.checker`` (full check) and onnxruntime compared with PyTorch on every output.

Both write into a temporary folder beside the target and rename on success, so a failed export
leaves nothing behind, and both refuse to overwrite without ``force``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import platform
import shutil
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from pkmodel import __version__
from pkmodel.common.atomic import check_writable
from pkmodel.common.errors import PkmodelError
from pkmodel.common.skeleton import JOINT_NAMES, LIMBS
from pkmodel.config.rules import check_decoder
from pkmodel.model.network import OUTPUT_NAMES

if TYPE_CHECKING:
    from pkmodel.config import Config, DecoderConfig, ExportConfig, ModelConfig

INPUT_NAME = "image"
# The network's input normalisation (x / 127.5 - 1) folded into the exported model, so the app
# feeds raw 0..255 pixels. Core ML applies it as input * scale + bias per channel.
PIXEL_SCALE = 1.0 / 127.5
PIXEL_BIAS = -1.0
# Tensors with fewer elements than this stay FP16 under compression (biases, small depthwise
# kernels): a few percent of the bytes, and compressing them costs accuracy for nothing.
COMPRESS_MIN_WEIGHTS = 2048
PALETTE_BITS = (1, 2, 3, 4, 6, 8)  # what Core ML's lookup tables support
ONNX_MIN_OPSET = 18  # the dynamo exporter writes 18 natively; older opsets need down-conversion
ONNX_TOLERANCE = 1e-4  # max abs difference onnxruntime vs PyTorch (both FP32 on the CPU)
# On macOS: FP16 Core ML vs FP32 PyTorch. Above this a warning is printed (not an error: FP16
# noise grows with the weights, and the decoded keypoints are what matters).
COREML_WARN_DIFF = {"fp16": 0.05, "fp32": 1e-3}

# Bits per stored element of the MIL blob dtypes that compression produces.
_BLOB_BITS = {"FLOAT32": 32, "FLOAT16": 16, "INT8": 8, "UINT8": 8, "INT4": 4, "UINT4": 4,
              "UINT6": 6, "UINT3": 3, "UINT2": 2, "UINT1": 1, "INT32": 32}  # fmt: skip

Log = Callable[[str], None]


@dataclass
class ExportReport:
    """What an export wrote and what it checked (printed by the CLI, asserted by tests)."""

    path: Path
    size_bytes: int
    checks: list[str] = field(default_factory=list)
    max_abs_diff: dict[str, float] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    weight_bytes: dict[str, int] = field(default_factory=dict)  # Core ML: payload by dtype


# --- shared pieces --------------------------------------------------------------------------


def _quiet_log(_: str) -> None:
    pass


def check_target(out: Path, suffix: str, force: bool) -> Path:
    """Validate the output path before any work: right suffix, no silent overwrite."""
    out = Path(out)
    if out.suffix != suffix:
        raise PkmodelError(f"--out {out} must end with {suffix}")
    if out.exists() and not force:
        raise PkmodelError(f"{out} already exists; pass --force to overwrite it")
    if out.exists() and out.is_dir() != (suffix == ".mlpackage"):
        kind = "bundle folder" if suffix == ".mlpackage" else "file"
        raise PkmodelError(f"{out} exists and is not a {suffix} {kind}; remove it first")
    check_writable(out.parent, "--out")  # the bundle or file is renamed into its folder
    return out


def load_export_model(weights: Path) -> tuple[torch.nn.Module, ModelConfig, bool]:
    """The checkpoint's network in eval mode (EMA weights when present), its model config, and
    whether the EMA weights were used."""
    from pkmodel.model.checkpoint import model_from_checkpoint

    try:
        model, ckpt_cfg, state = model_from_checkpoint(weights, prefer_ema=True)
    except (KeyError, IndexError, TypeError, AttributeError, UnicodeDecodeError) as e:
        # torch.load's unpickler raises these on some non-checkpoint bytes (e.g. a text file).
        raise PkmodelError(f"{weights} is not a pkmodel checkpoint ({type(e).__name__})") from None
    return model, ckpt_cfg.model, bool(state.get("ema"))


def output_layout(model: torch.nn.Module, input_size: int) -> tuple[dict[str, tuple], int]:
    """Output shapes (batch 1) by name from one forward pass, and the output stride."""
    with torch.inference_mode():
        outs = model(torch.zeros(1, 3, input_size, input_size))
    shapes = {name: tuple(o.shape) for name, o in zip(OUTPUT_NAMES, outs, strict=True)}
    grid = shapes[OUTPUT_NAMES[0]][-1]
    return shapes, input_size // grid


def sample_input(input_size: int, batch: int = 1, seed: int = 0) -> np.ndarray:
    """Deterministic camera-like pixels (uint8 N x S x S x 3, RGB): smooth gradients plus noise,
    so the comparison exercises realistic activations rather than pure noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:input_size, 0:input_size] / input_size
    base = np.stack([xx, yy, 1.0 - xx * yy], axis=-1)[None] * 200.0
    noise = rng.normal(0.0, 25.0, size=(batch, input_size, input_size, 3))
    return np.clip(base + noise, 0, 255).astype(np.uint8)


def normalise_pixels(pixels: np.ndarray) -> np.ndarray:
    """uint8 N x S x S x 3 RGB -> float32 N x 3 x S x S in [-1, 1] (the network's input)."""
    x = pixels.astype(np.float32).transpose(0, 3, 1, 2)
    return x * np.float32(PIXEL_SCALE) + np.float32(PIXEL_BIAS)


def export_metadata(
    cfg: Config,
    input_size: int,
    stride: int,
    num_joints: int,
    weights: Path,
    used_ema: bool,
    color_layout: str = "RGB",
) -> dict[str, str]:
    """Key/value metadata for the app (Core ML user_defined_metadata, ONNX metadata_props).

    Values are strings; lists and dicts are JSON.
    """
    return {
        "input_name": INPUT_NAME,
        "input_size": str(input_size),
        "input_color_layout": color_layout,
        "input_normalization": "pixel / 127.5 - 1, inside the model: pass pixels 0..255",
        "stride": str(stride),
        "grid_size": str(input_size // stride),
        "num_joints": str(num_joints),
        "joint_names": json.dumps(list(JOINT_NAMES[:num_joints])),
        "skeleton": json.dumps([list(limb) for limb in LIMBS]),
        "output_names": json.dumps(list(OUTPUT_NAMES)),
        "output_layout": "regs and offsets: channel 2j = x, 2j + 1 = y of joint j, in cells; "
        "heatmaps and centers: sigmoid applied",
        "decoder_score_threshold": repr(float(cfg.decoder.score_threshold)),
        "decoder_center_prior_offset": repr(float(cfg.decoder.center_prior_offset)),
        "weights": "ema" if used_ema else "model",
        "source_checkpoint": Path(weights).name,
        "pkmodel_version": __version__,
    }


@contextlib.contextmanager
def _temp_dir_beside(target: Path) -> Iterator[Path]:
    """A temporary folder in the target's folder (same filesystem, so the final rename is
    atomic), removed with whatever is left in it."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def path_size(path: Path) -> int:
    """Bytes of a file, or of every file in a bundle folder."""
    path = Path(path)
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def human_size(n: int) -> str:
    return f"{n / 1e6:.2f} MB" if n >= 1e5 else f"{n / 1e3:.1f} kB"


def output_differences(
    got: list[np.ndarray], ref: list[np.ndarray], stride: int, score_threshold: float,
    prior_offset: float,
) -> dict[str, float]:  # fmt: skip
    """Max abs difference per output, plus ``keypoints_px``: the largest distance in input
    pixels between the keypoints decoded from the two (what the app would see)."""
    from pkmodel.model.decode import decode_batch

    diffs = {
        name: float(np.abs(np.asarray(g, np.float32) - np.asarray(r, np.float32)).max())
        for name, g, r in zip(OUTPUT_NAMES, got, ref, strict=True)
    }
    a = decode_batch(
        *got, stride=stride, score_threshold=score_threshold, prior_offset=prior_offset
    )
    b = decode_batch(
        *ref, stride=stride, score_threshold=score_threshold, prior_offset=prior_offset
    )
    diffs["keypoints_px"] = float(np.linalg.norm(a.keypoints - b.keypoints, axis=-1).max())
    return diffs


# --- Core ML --------------------------------------------------------------------------------


def import_coremltools():
    """Import coremltools without its import-time noise on Linux (it warns that its macOS-only
    runtime library is missing and that this torch is newer than it was tested with; the checks
    after conversion are what establish that the result is right)."""
    logger = logging.getLogger("coremltools")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        import coremltools as ct
    finally:
        logger.setLevel(level)
    return ct


class BgrToRgb(torch.nn.Module):
    """Wrap the network so that a BGR-ordered input gives the outputs of the RGB input."""

    def __init__(self, net: torch.nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return self.net(x.flip(1))


def trace_network(model: torch.nn.Module, input_size: int, bgr: bool = False):
    """TorchScript trace for coremltools (its most tested PyTorch frontend), checked against
    eager execution on a realistic input."""
    net = BgrToRgb(model).eval() if bgr else model
    rgb = torch.from_numpy(normalise_pixels(sample_input(input_size)))
    x = rgb.flip(1) if bgr else rgb
    with torch.inference_mode(), warnings.catch_warnings():
        # torch 2.14 flags jit.trace as deprecated; coremltools still converts TorchScript best.
        warnings.simplefilter("ignore", FutureWarning)
        traced = torch.jit.trace(net, x, check_trace=False)
        expected, got = model(rgb), traced(x)
    worst = max(float((a - b).abs().max()) for a, b in zip(expected, got, strict=True))
    if worst > 1e-5:
        raise PkmodelError(f"the traced network differs from the eager one by {worst:.2e}")
    return traced


def ios_target(ct, minimum_ios: int):
    """coremltools deployment target for export.minimum_ios (ML Programs need iOS 15+)."""
    target = getattr(ct.target, f"iOS{minimum_ios}", None)
    if target is None or minimum_ios < 15:
        known = sorted(int(t.name[3:]) for t in ct.target if t.name[3:].isdigit())
        ok = ", ".join(str(v) for v in known if v >= 15)
        raise PkmodelError(f"export.minimum_ios = {minimum_ios} is not supported (use one of {ok})")
    return target


def convert_coreml(
    traced: Any,
    input_size: int,
    precision: str = "fp16",
    color_layout: str = "RGB",
    minimum_ios: int = 17,
):
    """TorchScript network -> Core ML ML Program with an image input and float32 outputs."""
    ct = import_coremltools()
    image = ct.ImageType(
        name=INPUT_NAME,
        shape=(1, 3, input_size, input_size),
        scale=PIXEL_SCALE,
        bias=[PIXEL_BIAS] * 3,
        color_layout=ct.colorlayout.BGR if color_layout == "BGR" else ct.colorlayout.RGB,
    )
    # Float32 outputs: the app reads them as Float without FP16 handling; the cast is negligible.
    outputs = [ct.TensorType(name=name, dtype=np.float32) for name in OUTPUT_NAMES]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", (FutureWarning, DeprecationWarning))
        return ct.convert(
            traced,
            inputs=[image],
            outputs=outputs,
            convert_to="mlprogram",
            compute_precision=ct.precision.FLOAT16 if precision == "fp16" else ct.precision.FLOAT32,
            minimum_deployment_target=ios_target(ct, minimum_ios),
        )


def palette_mode(requested: str) -> str:
    """k-means needs scikit-learn; 'auto' uses it when installed, else uniform lookup tables."""
    try:
        import sklearn  # noqa: F401

        has_sklearn = True
    except ImportError:
        has_sklearn = False
    if requested == "kmeans" and not has_sklearn:
        raise PkmodelError(
            "export.palette_mode = 'kmeans' needs scikit-learn (pip install scikit-learn); "
            "use 'uniform' or 'auto'"
        )
    if requested == "auto":
        return "kmeans" if has_sklearn else "uniform"
    return requested


def compress_coreml(mlmodel, method: str, palette_bits: int = 6, mode: str = "auto"):
    """Weight compression with coremltools.optimize.coreml (weights only: compute stays float).

    int8: symmetric per-channel linear quantisation. palette: a lookup table of 2^bits values
    per tensor (k-means or uniform). Tensors under COMPRESS_MIN_WEIGHTS elements are left alone.
    """
    if method == "none":
        return mlmodel
    import_coremltools()
    import coremltools.optimize.coreml as cto

    if method == "int8":
        op = cto.OpLinearQuantizerConfig(
            mode="linear_symmetric", dtype="int8", weight_threshold=COMPRESS_MIN_WEIGHTS
        )
        return cto.linear_quantize_weights(mlmodel, cto.OptimizationConfig(global_config=op))
    if method == "palette":
        check_palette_bits(palette_bits)
        op = cto.OpPalettizerConfig(
            mode=palette_mode(mode), nbits=palette_bits, weight_threshold=COMPRESS_MIN_WEIGHTS
        )
        return cto.palettize_weights(mlmodel, cto.OptimizationConfig(global_config=op))
    raise PkmodelError(f"export.compress = {method!r} must be one of 'none', 'int8', 'palette'")


def set_coreml_metadata(
    mlmodel, cfg: Config, metadata: dict[str, str], input_size: int, stride: int
) -> None:
    """Model description fields Xcode shows, plus the app's key/value metadata."""
    mlmodel.short_description = (
        f"PoseKit single-person 2D pose network (COCO-{metadata['num_joints']}, MoveNet-style), "
        f"{input_size}x{input_size} {metadata['input_color_layout']} image input, "
        f"outputs on a stride-{stride} grid; decode outside the model."
    )
    mlmodel.author = cfg.export.author
    mlmodel.license = cfg.export.license
    mlmodel.version = cfg.export.version
    mlmodel.user_defined_metadata.update(metadata)
    mlmodel.input_description[INPUT_NAME] = (
        f"{input_size}x{input_size} letterboxed camera image, pixels 0..255 (normalised inside)"
    )
    k = metadata["num_joints"]
    descriptions = {
        "heatmaps": f"joint heatmaps, 1 x {k} x h x w, sigmoid applied",
        "centers": "person center heatmap, 1 x 1 x h x w, sigmoid applied",
        "regs": f"center-to-joint vectors in cells, 1 x 2*{k} x h x w (x, y per joint)",
        "offsets": f"sub-cell joint offsets in cells, 1 x 2*{k} x h x w (x, y per joint)",
    }
    for name, text in descriptions.items():
        mlmodel.output_description[name] = text


def _mil_block(spec):
    function = spec.mlProgram.functions["main"]
    return function.block_specializations[function.opset]


def coreml_weight_bytes(spec) -> dict[str, int]:
    """Payload bytes of the weights stored in the bundle's weight file, by MIL dtype name.

    Read from the program (every blob-stored constant, including the quantised data, scales and
    lookup tables of compressed weights), so it shows what precision the weights really have.
    """
    from coremltools.proto import MIL_pb2

    totals: dict[str, int] = {}
    for op in _mil_block(spec).operations:
        for value in op.attributes.values():
            if not value.HasField("blobFileValue"):
                continue
            tensor = value.type.tensorType
            dtype = MIL_pb2.DataType.Name(tensor.dataType)
            count = int(np.prod([d.constant.size for d in tensor.dimensions]))
            nbytes = -(-count * _BLOB_BITS.get(dtype, 32) // 8)
            totals[dtype] = totals.get(dtype, 0) + nbytes
    return totals


def coreml_compression_ratio(spec) -> float | None:
    """Stored bytes of the compressed weights (indices, lookup tables, scales) over the bytes
    the same weights take uncompressed (at their dense dtype); None without compressed weights.
    """
    from coremltools.proto import MIL_pb2

    stored = dense = 0
    for op in _mil_block(spec).operations:
        if not op.type.startswith("constexpr_"):
            continue
        for value in op.attributes.values():
            if value.HasField("blobFileValue"):
                tensor = value.type.tensorType
                count = int(np.prod([d.constant.size for d in tensor.dimensions]))
                bits = _BLOB_BITS.get(MIL_pb2.DataType.Name(tensor.dataType), 32)
                stored += -(-count * bits // 8)
        out = op.outputs[0].type.tensorType
        bits = _BLOB_BITS.get(MIL_pb2.DataType.Name(out.dataType), 32)
        dense += int(np.prod([d.constant.size for d in out.dimensions])) * bits // 8
    return stored / dense if dense else None


def coreml_preprocessing(spec) -> tuple[float, list[float]]:
    """(scale, per-channel bias) the ML Program applies to the image input, read from its ops."""
    ops = list(_mil_block(spec).operations)
    consts = {op.outputs[0].name: op.attributes["val"] for op in ops if op.type == "const"}

    def arg(op, name: str) -> str:
        return op.inputs[name].arguments[0].name

    def const_values(name: str) -> list[float]:
        value = consts[name].immediateValue.tensor
        return list(value.floats.values) or [float(v) for v in value.halfs.values]

    scale_op = next(op for op in ops if op.type == "mul" and arg(op, "x") == INPUT_NAME)
    bias_op = next(
        op for op in ops if op.type == "add" and arg(op, "x") == scale_op.outputs[0].name
    )
    return const_values(arg(scale_op, "y"))[0], const_values(arg(bias_op, "y"))


def verify_coreml_spec(
    spec,
    input_size: int,
    output_shapes: dict[str, tuple],
    precision: str,
    compress: str,
    color_layout: str,
    minimum_ios: int,
    metadata: dict[str, str],
    export_cfg: ExportConfig,
) -> list[str]:
    """Check a saved model's spec on any OS; returns the checks passed, raises on a mismatch."""
    ct = import_coremltools()
    from coremltools.proto import FeatureTypes_pb2

    checks = []

    def fail(what: str) -> None:
        raise PkmodelError(f"the exported Core ML model failed a check: {what}")

    if spec.WhichOneof("Type") != "mlProgram":
        fail(f"it is a {spec.WhichOneof('Type')}, not an mlProgram")
    want_version = ios_target(ct, minimum_ios).value
    if spec.specificationVersion != want_version:
        fail(f"spec version {spec.specificationVersion}, expected {want_version}")
    checks.append(f"ML Program, spec version {want_version} (iOS {minimum_ios}+)")

    inputs = list(spec.description.input)
    if [i.name for i in inputs] != [INPUT_NAME] or inputs[0].type.WhichOneof("Type") != (
        "imageType"
    ):
        fail(f"inputs are {[i.name for i in inputs]}, expected one image input '{INPUT_NAME}'")
    image = inputs[0].type.imageType
    space = FeatureTypes_pb2.ImageFeatureType.ColorSpace.Name(image.colorSpace)
    if (image.width, image.height, space) != (input_size, input_size, color_layout):
        fail(f"image input is {image.width}x{image.height} {space}")
    scale, bias = coreml_preprocessing(spec)
    if not (np.isclose(scale, PIXEL_SCALE) and np.allclose(bias, [PIXEL_BIAS] * 3)):
        fail(f"image preprocessing is x * {scale} + {bias}")
    sign = "-" if bias[0] < 0 else "+"
    checks.append(
        f"input '{INPUT_NAME}': {input_size}x{input_size} {space} image, "
        f"x * {scale:.6f} {sign} {abs(bias[0]):g} (x / 127.5 - 1)"
    )

    outputs = list(spec.description.output)
    if [o.name for o in outputs] != list(OUTPUT_NAMES):
        fail(f"outputs are {[o.name for o in outputs]}, expected {list(OUTPUT_NAMES)}")
    for o in outputs:
        array = o.type.multiArrayType
        shape = tuple(array.shape)
        dtype = FeatureTypes_pb2.ArrayFeatureType.ArrayDataType.Name(array.dataType)
        if shape != tuple(output_shapes[o.name]) or dtype != "FLOAT32":
            fail(f"output '{o.name}' is {dtype} {shape}, expected FLOAT32 {output_shapes[o.name]}")
    checks.append(
        "outputs: " + ", ".join(f"{n} {'x'.join(map(str, s))}" for n, s in output_shapes.items())
        + " (float32)"
    )  # fmt: skip

    weights = coreml_weight_bytes(spec)
    float_type = "FLOAT16" if precision == "fp16" else "FLOAT32"
    wrong = sorted(set(weights) - {float_type, "INT8", "UINT8", "INT4", "UINT4", "UINT6",
                                   "UINT3", "UINT2", "UINT1"})  # fmt: skip
    if wrong or float_type not in weights:
        fail(f"weights are stored as {weights}, expected {float_type}")
    if compress == "int8" and "INT8" not in weights:
        fail("int8 compression requested but no INT8 weights are stored")
    if compress == "palette" and not any(k.startswith("UINT") for k in weights):
        fail("palettisation requested but no lookup-table indices are stored")
    ratio = coreml_compression_ratio(spec)
    if compress != "none" and ratio is None:
        fail(f"{compress} compression requested but no weight is compressed")
    checks.append(
        "weights: "
        + ", ".join(f"{k} {human_size(v)}" for k, v in sorted(weights.items()))
        + (f"; compressed tensors at {ratio:.3f} of their uncompressed size" if ratio else "")
    )

    meta = spec.description.metadata
    missing = [k for k, v in metadata.items() if meta.userDefined.get(k) != v]
    if missing:
        fail(f"metadata keys missing or different: {missing}")
    fields = (meta.author, meta.license, meta.versionString)
    want = (export_cfg.author, export_cfg.license, export_cfg.version)
    if fields != want or not meta.shortDescription:
        fail(f"author/license/version are {fields}, expected {want}")
    checks.append(
        f"metadata: author '{meta.author}', license '{meta.license}', version "
        f"'{meta.versionString}', {len(metadata)} app keys"
    )
    return checks


def compare_coreml_with_torch(
    path: Path, model: torch.nn.Module, input_size: int, stride: int, decoder: DecoderConfig
) -> tuple[dict[str, float], str | None]:
    """On macOS: run the saved model on a sample image and return its differences to PyTorch
    (``output_differences``). Elsewhere: ({}, the reason it is skipped)."""
    if platform.system() != "Darwin":
        return {}, (
            f"running the Core ML model needs macOS (Core ML runtime); this is "
            f"{platform.system()}, so the output comparison is skipped"
        )
    from PIL import Image

    ct = import_coremltools()
    pixels = sample_input(input_size)
    mlmodel = ct.models.MLModel(str(path))
    # PIL gives RGB; Core ML reorders it to the model's colour layout (BGR models flip back).
    got = mlmodel.predict({INPUT_NAME: Image.fromarray(pixels[0])})
    with torch.inference_mode():
        ref = [r.numpy() for r in model(torch.from_numpy(normalise_pixels(pixels)))]
    got = [np.asarray(got[name]) for name in OUTPUT_NAMES]
    return output_differences(
        got, ref, stride, decoder.score_threshold, decoder.center_prior_offset
    ), None


def export_coreml(
    weights: Path,
    out: Path,
    cfg: Config,
    force: bool = False,
    log: Log = _quiet_log,
) -> ExportReport:
    """Checkpoint -> verified .mlpackage at ``out`` (atomic; refuses to overwrite without force).

    Precision, colour layout, deployment target, compression and metadata come from
    ``cfg.export`` / ``cfg.decoder``; the architecture comes from the checkpoint.
    """
    out = check_target(Path(out), ".mlpackage", force)
    ex = cfg.export
    check_export_config(ex)
    check_decoder(cfg.decoder)  # its values go into the model's metadata
    ct = import_coremltools()
    ios_target(ct, ex.minimum_ios)  # fail on a bad target before the slow steps
    if ex.compress == "palette":
        palette_mode(ex.palette_mode)

    model, model_cfg, used_ema = load_export_model(weights)
    log(f"[1/5] loaded {weights}")
    size = model_cfg.input_size
    shapes, stride = output_layout(model, size)
    num_joints = shapes["heatmaps"][1]
    log(
        f"      {'EMA' if used_ema else 'model'} weights, input {size}, stride {stride}, "
        f"{num_joints} joints, width {model_cfg.width_mult}"
    )
    log("[2/5] tracing (TorchScript) and checking the trace against eager PyTorch")
    traced = trace_network(model, size, bgr=ex.color_layout == "BGR")
    log(f"[3/5] converting to an ML Program ({ex.precision.upper()}, iOS {ex.minimum_ios}+)")
    mlmodel = convert_coreml(traced, size, ex.precision, ex.color_layout, ex.minimum_ios)
    if ex.compress != "none":
        what = "8-bit linear" if ex.compress == "int8" else f"{ex.palette_bits}-bit palette"
        log(f"      compressing weights: {what}")
        mlmodel = compress_coreml(mlmodel, ex.compress, ex.palette_bits, ex.palette_mode)
    metadata = export_metadata(cfg, size, stride, num_joints, weights, used_ema, ex.color_layout)
    metadata["precision"] = ex.precision
    metadata["compression"] = (
        f"palette-{ex.palette_bits}bit" if ex.compress == "palette" else ex.compress
    )
    set_coreml_metadata(mlmodel, cfg, metadata, size, stride)

    with _temp_dir_beside(out) as tmp:
        bundle = tmp / out.name
        log("[4/5] saving and verifying the saved spec")
        mlmodel.save(str(bundle))
        spec = ct.utils.load_spec(str(bundle))
        checks = verify_coreml_spec(
            spec, size, shapes, ex.precision, ex.compress, ex.color_layout, ex.minimum_ios,
            metadata, ex,
        )  # fmt: skip
        weight_bytes = coreml_weight_bytes(spec)
        log("[5/5] comparing with PyTorch")
        diffs, reason = compare_coreml_with_torch(bundle, model, size, stride, cfg.decoder)
        from pkmodel.common.atomic import atomic_replace_dir

        atomic_replace_dir(bundle, out)
    report = ExportReport(out, path_size(out), checks, diffs, [reason] if reason else [],
                          weight_bytes)  # fmt: skip
    limit = COREML_WARN_DIFF[ex.precision]
    for name, diff in diffs.items():
        if name == "keypoints_px":
            report.checks.append(f"Core ML vs PyTorch decoded keypoints: max {diff:.3f} px")
            continue
        flag = "" if diff <= limit else f"  WARNING: above {limit}"
        report.checks.append(f"Core ML vs PyTorch max abs diff {name}: {diff:.2e}{flag}")
    return report


# --- ONNX -----------------------------------------------------------------------------------


def check_palette_bits(bits: int) -> None:
    if bits not in PALETTE_BITS:
        raise PkmodelError(
            f"export.palette_bits = {bits} must be one of " + ", ".join(map(str, PALETTE_BITS))
        )


def check_export_config(ex: Any) -> None:
    """[export] Core ML values no export can use, one sentence each (the target's upper end is
    checked against the installed coremltools when exporting; the ONNX opset by check_opset)."""
    if ex.minimum_ios < 15:
        raise PkmodelError(
            f"export.minimum_ios = {ex.minimum_ios} is not supported (ML Programs need iOS 15 "
            "or later)"
        )
    if ex.compress == "palette":
        check_palette_bits(ex.palette_bits)
    if ex.compress != "none" and ex.minimum_ios < 16:
        raise PkmodelError(
            f"export.compress = '{ex.compress}' needs export.minimum_ios >= 16 "
            f"(got {ex.minimum_ios})"
        )


def check_opset(opset: int) -> None:
    import onnx

    newest = onnx.defs.onnx_opset_version()
    if not ONNX_MIN_OPSET <= opset <= newest:
        raise PkmodelError(
            f"export.onnx_opset = {opset} is not supported (use {ONNX_MIN_OPSET} to {newest})"
        )


def write_onnx(
    model: torch.nn.Module,
    path: Path,
    input_size: int,
    opset: int,
    dynamic_batch: bool = False,
    metadata: dict[str, str] | None = None,
) -> None:
    """torch.export-based ONNX export to one self-contained file, with metadata_props.

    The dynamo exporter gives a clean graph (BatchNorm folded, no Identity/Constant clutter) and
    is the exporter torch maintains; the TorchScript one is deprecated in torch 2.9+.
    """
    import onnx

    # With a dynamic batch the example has batch 2: torch.export specialises a size-1 dimension.
    example = torch.zeros(2 if dynamic_batch else 1, 3, input_size, input_size)
    dynamic = ({0: torch.export.Dim("batch")},) if dynamic_batch else None
    with warnings.catch_warnings(), contextlib.redirect_stdout(open(os.devnull, "w")):  # noqa: SIM115
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (example,),
            str(path),
            input_names=[INPUT_NAME],
            output_names=list(OUTPUT_NAMES),
            opset_version=opset,
            dynamo=True,
            dynamic_shapes=dynamic,
            external_data=False,
            optimize=True,
            verbose=False,
        )
    proto = onnx.load(str(path))
    proto.doc_string = "PoseKit single-person 2D pose network (pkmodel); decode outside."
    for key, value in (metadata or {}).items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(proto, str(path))


def verify_onnx(
    path: Path, input_size: int, output_shapes: dict[str, tuple], opset: int, dynamic_batch: bool
) -> list[str]:
    """onnx.checker (full) plus names, shapes and opset of the saved file."""
    import onnx

    def fail(what: str) -> None:
        raise PkmodelError(f"the exported ONNX model failed a check: {what}")

    try:
        onnx.checker.check_model(str(path), full_check=True)
    except onnx.checker.ValidationError as e:
        fail(f"onnx.checker: {str(e).splitlines()[0]}")
    proto = onnx.load(str(path), load_external_data=False)
    version = next(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx"))
    if version != opset:
        fail(f"opset {version}, expected {opset}")

    def dims(value) -> tuple:
        return tuple(d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim)

    batch = "batch" if dynamic_batch else 1
    inputs = [(i.name, dims(i)) for i in proto.graph.input]
    if inputs != [(INPUT_NAME, (batch, 3, input_size, input_size))]:
        fail(f"inputs are {inputs}")
    outputs = [(o.name, dims(o)) for o in proto.graph.output]
    want = [(n, (batch, *output_shapes[n][1:])) for n in OUTPUT_NAMES]
    if outputs != want:
        fail(f"outputs are {outputs}, expected {want}")
    return [
        f"onnx.checker (full) passed, opset {opset}",
        f"input '{INPUT_NAME}': {'x'.join(map(str, inputs[0][1]))} float32, x / 127.5 - 1 "
        "applied by the caller",
        "outputs: " + ", ".join(f"{n} {'x'.join(map(str, s))}" for n, s in outputs),
    ]


def onnx_session(path: Path, threads: int = 0):
    """An onnxruntime CPU session (threads 0 = onnxruntime's default)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def compare_onnx_with_torch(
    path: Path, model: torch.nn.Module, x: np.ndarray, stride: int, decoder: DecoderConfig
) -> dict[str, float]:
    """onnxruntime vs PyTorch on float32 input ``x`` (``output_differences``)."""
    got = onnx_session(path).run(list(OUTPUT_NAMES), {INPUT_NAME: x})
    with torch.inference_mode():
        ref = [r.numpy() for r in model(torch.from_numpy(x))]
    return output_differences(
        got, ref, stride, decoder.score_threshold, decoder.center_prior_offset
    )


def export_onnx(
    weights: Path,
    out: Path,
    cfg: Config,
    force: bool = False,
    log: Log = _quiet_log,
) -> ExportReport:
    """Checkpoint -> verified .onnx at ``out`` (atomic; refuses to overwrite without force)."""
    out = check_target(Path(out), ".onnx", force)
    ex = cfg.export
    check_opset(ex.onnx_opset)
    check_decoder(cfg.decoder)
    model, model_cfg, used_ema = load_export_model(weights)
    log(f"[1/4] loaded {weights}")
    size = model_cfg.input_size
    shapes, stride = output_layout(model, size)
    log(
        f"      {'EMA' if used_ema else 'model'} weights, input {size}, stride {stride}, "
        f"{shapes['heatmaps'][1]} joints, width {model_cfg.width_mult}"
    )
    metadata = export_metadata(cfg, size, stride, shapes["heatmaps"][1], weights, used_ema)
    metadata["input_normalization"] = "pixel / 127.5 - 1, by the caller: the input is float32"
    with _temp_dir_beside(out) as tmp:
        tmp_file = tmp / out.name
        batch = "dynamic" if ex.dynamic_batch else "1"
        log(f"[2/4] exporting (torch.export, opset {ex.onnx_opset}, batch {batch})")
        write_onnx(model, tmp_file, size, ex.onnx_opset, ex.dynamic_batch, metadata)
        log("[3/4] onnx.checker and input/output check")
        checks = verify_onnx(tmp_file, size, shapes, ex.onnx_opset, ex.dynamic_batch)
        log("[4/4] comparing onnxruntime with PyTorch")
        x = normalise_pixels(sample_input(size, batch=2 if ex.dynamic_batch else 1))
        diffs = compare_onnx_with_torch(tmp_file, model, x, stride, cfg.decoder)
        worst = max(OUTPUT_NAMES, key=diffs.__getitem__)
        if diffs[worst] > ONNX_TOLERANCE:
            raise PkmodelError(
                f"onnxruntime output '{worst}' differs from PyTorch by {diffs[worst]:.2e} "
                f"(tolerance {ONNX_TOLERANCE:g}); nothing was written"
            )
        os.replace(tmp_file, out)
    report = ExportReport(out, path_size(out), checks, diffs)
    batch_note = f" (batch {x.shape[0]})"
    for name in OUTPUT_NAMES:
        report.checks.append(
            f"onnxruntime vs PyTorch max abs diff {name}: {diffs[name]:.2e}{batch_note}"
        )
    report.checks.append(
        f"onnxruntime vs PyTorch decoded keypoints: max {diffs['keypoints_px']:.3f} px"
    )
    return report


# --- latency --------------------------------------------------------------------------------


@dataclass
class LatencyReport:
    """Median CPU latency at batch 1, PyTorch eager vs onnxruntime (milliseconds)."""

    input_size: int
    width_mult: float
    torch_ms: float
    onnxruntime_ms: float
    torch_threads: int
    runs: int

    def summary(self) -> str:
        return (
            f"input {self.input_size}, width {self.width_mult}, batch 1, {self.runs} runs, "
            f"{self.torch_threads} threads: PyTorch eager {self.torch_ms:.2f} ms, "
            f"onnxruntime {self.onnxruntime_ms:.2f} ms (median)"
        )


def median_ms(fn: Callable[[], Any], runs: int, warmup: int) -> float:
    """Median wall time of ``fn`` in milliseconds over ``runs`` calls, after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    return float(np.median(times))


def benchmark_cpu_latency(
    model: torch.nn.Module,
    input_size: int,
    width_mult: float,
    runs: int = 50,
    warmup: int = 5,
    opset: int = ONNX_MIN_OPSET,
    onnx_path: Path | None = None,
    threads: int | None = None,
) -> LatencyReport:
    """Batch-1 CPU latency of the network in PyTorch eager mode and in onnxruntime.

    Both use ``threads`` CPU threads (default: torch's current setting). The ONNX model is
    ``onnx_path`` (an export of the same network) or a temporary export.
    """
    model = model.eval()
    previous = torch.get_num_threads()
    threads = threads or previous
    x = normalise_pixels(sample_input(input_size))
    xt = torch.from_numpy(x)
    torch.set_num_threads(threads)
    try:
        with torch.inference_mode():
            torch_ms = median_ms(lambda: model(xt), runs, warmup)
    finally:
        torch.set_num_threads(previous)
    with tempfile.TemporaryDirectory(prefix="pkmodel-bench-") as tmp:
        path = Path(onnx_path) if onnx_path else Path(tmp) / "model.onnx"
        if onnx_path is None:
            write_onnx(model, path, input_size, opset)
        session = onnx_session(path, threads=threads)
        onnx_ms = median_ms(lambda: session.run(None, {INPUT_NAME: x}), runs, warmup)
    return LatencyReport(input_size, width_mult, torch_ms, onnx_ms, threads, runs)
