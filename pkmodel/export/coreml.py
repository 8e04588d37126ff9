"""Core ML export: an ML Program with an image input, verified on any OS.

The network is traced (TorchScript), converted to an ML Program with an image input (the app
passes camera pixels 0..255; ``x / 127.5 - 1`` happens inside the model), outputs named as
``pkmodel.model.outputs.OUTPUT_NAMES`` (float32), metadata for the app (input size, stride,
joints, skeleton, decoder settings), optional weight compression (8-bit linear or
palettisation). The saved bundle is reloaded and its spec and MIL program are verified before it
is moved into place. On macOS the model also runs and is compared with PyTorch; elsewhere that
step says why it is skipped.
"""

from __future__ import annotations

import json
import platform
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pkmodel.common.atomic import atomic_replace_dir, give_new_modes
from pkmodel.common.errors import PkmodelError
from pkmodel.config import Config, DecoderConfig, ExportConfig
from pkmodel.export.common import (
    INPUT_NAME,
    PIXEL_BIAS,
    PIXEL_SCALE,
    ExportReport,
    Log,
    app_grid_warning,
    app_input_warning,
    check_images,
    check_input_name,
    check_target,
    export_metadata,
    human_size,
    load_export_model,
    normalise_pixels,
    output_differences,
    output_layout,
    path_size,
    quiet_log,
    sample_input,
    temp_dir_beside,
)
from pkmodel.mlprogram.blobs import STORED_TYPES
from pkmodel.mlprogram.proto import PROTO_TO_MIL, quiet_coremltools
from pkmodel.mlprogram.run import CoreMLProgram
from pkmodel.model.decode import DecodeSettings
from pkmodel.model.outputs import OUTPUT_NAMES

# Tensors with fewer elements than this stay FP16 under compression (biases, small depthwise
# kernels): a few percent of the bytes, and compressing them costs accuracy for nothing.
COMPRESS_MIN_WEIGHTS = 2048


# The exported program, run by pkmodel's Core ML runner on the check images, against the FP32
# PyTorch network. Beyond any of these limits the export fails (docs/export.md, "The numbers
# check"): max abs difference of the sigmoid maps (heatmaps, centers) and of the vector maps
# (regs, offsets, in cells); the least share of the joints PyTorch finds that the program
# decodes to the same cell, and to a cell at most one away in x and y. FP16 rounding flips
# joints between neighbouring cells of nearly equal heat (about 0.2% of joints on synthetic
# pictures); a broken program moves them farther. With compression the converted program is
# held to these before its weights are compressed; the compressed one is reported and priced
# in AP (--check-ap).
@dataclass(frozen=True)
class Tolerance:
    maps: float
    vectors: float
    same_cells: float
    near_cells: float


COREML_TOLERANCE = {
    "fp32": Tolerance(1e-3, 1e-3, 0.99, 1.0),
    "fp16": Tolerance(0.02, 0.1, 0.97, 0.99),
}


def check_differences(diffs: dict[str, float], kind: str, tol: Tolerance) -> list[str]:
    """The limits ``diffs`` (output_differences) break, as phrases; empty when within."""
    broken = []
    for name in OUTPUT_NAMES:
        limit = tol.maps if name in ("heatmaps", "centers") else tol.vectors
        if diffs[name] > limit:
            broken.append(f"{name} max abs diff {diffs[name]:.3g} > {limit:g}")
    for key, limit, what in (
        ("same_cells", tol.same_cells, "on the same cell"),
        ("near_cells", tol.near_cells, "within one cell"),
    ):
        if diffs[key] < limit:
            broken.append(f"{100 * diffs[key]:.1f}% of joints {what} < {100 * limit:g}%")
    return broken


def describe_differences(diffs: dict[str, float]) -> str:
    return (
        ", ".join(f"{n} {diffs[n]:.2e}" for n in OUTPUT_NAMES)
        + f"; of the {diffs['joints_found']:.0f} joints PyTorch finds "
        f"{100 * diffs['same_cells']:.1f}% on the same cell, {100 * diffs['near_cells']:.1f}% "
        f"within one, keypoints within {diffs['keypoints_px']:.2f} px"
    )


# User metadata key of the check's figures in the saved model (JSON).
CHECK_METADATA_KEY = "pkmodel_check"


# Bits per stored element of the MIL blob dtypes that compression produces.
_BLOB_BITS = {
    name: STORED_TYPES[mil][1] for name, mil in PROTO_TO_MIL.items() if mil in STORED_TYPES
}


def import_coremltools():
    """Import coremltools without its import-time noise on Linux (it warns that its macOS-only
    runtime library is missing and that this torch is newer than it was tested with; the checks
    after conversion are what establish that the result is right)."""
    return quiet_coremltools()


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
    input_name: str = INPUT_NAME,
):
    """TorchScript network -> Core ML ML Program with an image input and float32 outputs."""
    ct = import_coremltools()
    image = ct.ImageType(
        name=input_name,
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
    mlmodel.input_description[metadata["input_name"]] = (
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


def _stored_values(op) -> list:
    """An operation's attribute values and the values bound inline to its inputs (iOS 18
    constexpr ops bind their data as inputs, iOS 16 ones as attributes)."""
    inline = [
        binding.value
        for argument in op.inputs.values()
        for binding in argument.arguments
        if binding.WhichOneof("binding") == "value"
    ]
    return list(op.attributes.values()) + inline


def coreml_weight_bytes(spec) -> dict[str, int]:
    """Payload bytes of the weights stored in the bundle's weight file, by MIL dtype name.

    Read from the program (every blob-stored constant, including the quantised data, scales and
    lookup tables of compressed weights), so it shows what precision the weights really have.
    """
    from coremltools.proto import MIL_pb2

    totals: dict[str, int] = {}
    for op in _mil_block(spec).operations:
        for value in _stored_values(op):
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
        for value in _stored_values(op):
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

    name = spec.description.input[0].name
    scale_op = next(op for op in ops if op.type == "mul" and arg(op, "x") == name)
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
    want_name = export_cfg.input_name
    if [i.name for i in inputs] != [want_name] or inputs[0].type.WhichOneof("Type") != (
        "imageType"
    ):
        fail(f"inputs are {[i.name for i in inputs]}, expected one image input '{want_name}'")
    image = inputs[0].type.imageType
    space = FeatureTypes_pb2.ImageFeatureType.ColorSpace.Name(image.colorSpace)
    if (image.width, image.height, space) != (input_size, input_size, color_layout):
        fail(f"image input is {image.width}x{image.height} {space}")
    scale, bias = coreml_preprocessing(spec)
    if not (np.isclose(scale, PIXEL_SCALE) and np.allclose(bias, [PIXEL_BIAS] * 3)):
        fail(f"image preprocessing is x * {scale} + {bias}")
    sign = "-" if bias[0] < 0 else "+"
    checks.append(
        f"input '{want_name}': {input_size}x{input_size} {space} image, "
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


def compare_program_with_torch(
    path: Path, model: torch.nn.Module, pixels: np.ndarray, stride: int, decoder: DecoderConfig
) -> dict[str, float]:
    """Run the saved program with pkmodel's Core ML runner on RGB pixels (uint8 N x S x S x 3,
    fed as Core ML would, reordered for a BGR model) and compare with PyTorch
    (``output_differences``)."""
    program = CoreMLProgram(path)
    got = program.run_images(pixels)
    with torch.inference_mode():
        ref = [r.numpy() for r in model(torch.from_numpy(normalise_pixels(pixels)))]
    outputs = [got[name] for name in OUTPUT_NAMES]
    return output_differences(outputs, ref, DecodeSettings.from_config(decoder, stride))


def compare_coreml_runtime_with_torch(
    path: Path, model: torch.nn.Module, pixels: np.ndarray, stride: int, decoder: DecoderConfig
) -> dict[str, float] | None:
    """On macOS, Core ML itself on the first picture (``output_differences``); elsewhere None."""
    if platform.system() != "Darwin":
        return None
    from PIL import Image

    ct = import_coremltools()
    mlmodel = ct.models.MLModel(str(path))
    name = mlmodel.get_spec().description.input[0].name
    got = mlmodel.predict({name: Image.fromarray(pixels[0])})
    with torch.inference_mode():
        ref = [r.numpy() for r in model(torch.from_numpy(normalise_pixels(pixels[:1])))]
    got = [np.asarray(got[n]) for n in OUTPUT_NAMES]
    return output_differences(got, ref, DecodeSettings.from_config(decoder, stride))


def export_coreml(
    weights: Path,
    out: Path,
    cfg: Config,
    force: bool = False,
    log: Log = quiet_log,
) -> ExportReport:
    """Checkpoint -> verified .mlpackage at ``out`` (atomic; refuses to overwrite without force).

    Precision, colour layout, deployment target, compression and metadata come from
    ``cfg.export`` / ``cfg.decoder``; the architecture comes from the checkpoint.
    """
    out = check_target(Path(out), ".mlpackage", force)
    ex = cfg.export
    cfg.check("export", "decoder")  # the decoder's values go into the model's metadata
    check_input_name(ex.input_name)
    ct = import_coremltools()
    ios_target(ct, ex.minimum_ios)  # fail on a bad target before the slow steps
    if ex.compress == "palette":
        palette_mode(ex.palette_mode)

    model, model_cfg, used_ema = load_export_model(weights)
    log(f"[1/5] loaded {weights}")
    size = model_cfg.input_size
    pixels, source = check_images(ex.check_images or None, size, ex.check_count)
    shapes, stride = output_layout(model, size)
    num_joints = shapes["heatmaps"][1]
    log(
        f"      {'EMA' if used_ema else 'model'} weights, input {size}, stride {stride}, "
        f"{num_joints} joints, width {model_cfg.width_mult}"
    )
    log("[2/5] tracing (TorchScript) and checking the trace against eager PyTorch")
    traced = trace_network(model, size, bgr=ex.color_layout == "BGR")
    log(f"[3/5] converting to an ML Program ({ex.precision.upper()}, iOS {ex.minimum_ios}+)")
    mlmodel = convert_coreml(
        traced, size, ex.precision, ex.color_layout, ex.minimum_ios, ex.input_name
    )
    metadata = export_metadata(
        cfg, size, stride, num_joints, weights, used_ema, ex.color_layout, ex.input_name
    )
    metadata["precision"] = ex.precision
    metadata["compression"] = (
        f"palette-{ex.palette_bits}bit" if ex.compress == "palette" else ex.compress
    )
    kind = ex.precision
    tol = COREML_TOLERANCE[kind]

    def run_check(bundle: Path) -> dict[str, float]:
        return compare_program_with_torch(bundle, model, pixels, stride, cfg.decoder)

    with temp_dir_beside(out) as tmp:
        compressed = None
        if ex.compress != "none":
            # The conversion is held to the precision's tolerance before compression changes
            # the weights; what compression then costs is reported (and priced by --check-ap).
            log(f"      running the converted program against PyTorch on {source}")
            plain = tmp / "converted" / out.name
            mlmodel.save(str(plain))
            converted = run_check(plain)
            what = "8-bit linear" if ex.compress == "int8" else f"{ex.palette_bits}-bit palette"
            log(f"      compressing weights: {what}")
            mlmodel = compress_coreml(mlmodel, ex.compress, ex.palette_bits, ex.palette_mode)
        set_coreml_metadata(mlmodel, cfg, metadata, size, stride)
        bundle = tmp / out.name
        log("[4/5] saving and verifying the saved spec")
        mlmodel.save(str(bundle))
        spec = ct.utils.load_spec(str(bundle))
        checks = verify_coreml_spec(
            spec, size, shapes, ex.precision, ex.compress, ex.color_layout, ex.minimum_ios,
            metadata, ex,
        )  # fmt: skip
        weight_bytes = coreml_weight_bytes(spec)
        log(f"[5/5] running the program (pkmodel's Core ML runner) against PyTorch on {source}")
        diffs = run_check(bundle)
        if ex.compress != "none":
            compressed, diffs = diffs, converted
        broken = check_differences(diffs, kind, tol)
        if broken:
            what = "converted" if compressed is not None else "exported"
            raise PkmodelError(
                f"the {what} Core ML program differs from PyTorch beyond the {kind} tolerance "
                f"on {source}: {'; '.join(broken)} (nothing was written)"
            )
        runtime = compare_coreml_runtime_with_torch(bundle, model, pixels, stride, cfg.decoder)
        # The model carries its check: the same program saved again with the figures added.
        record = {"images": source, "tolerance": kind, **{k: round(v, 6) for k, v in diffs.items()}}  # fmt: skip
        if compressed is not None:
            record["compressed"] = {k: round(v, 6) for k, v in compressed.items()}
        mlmodel.user_defined_metadata[CHECK_METADATA_KEY] = json.dumps(record)
        final = tmp / "final" / out.name
        mlmodel.save(str(final))
        give_new_modes(final)  # coremltools writes model.mlmodel 0600
        atomic_replace_dir(final, out)
    skipped = [] if runtime is not None else [
        f"Core ML itself runs only on macOS; on {platform.system()} the program was run by "
        f"pkmodel's Core ML runner (FP16 emulated)"
    ]  # fmt: skip
    report = ExportReport(out, path_size(out), checks, diffs, skipped, weight_bytes, compressed or {})  # fmt: skip
    what = "converted program (before compression)" if compressed is not None else "program"
    report.checks.append(f"Core ML {what} vs PyTorch on {source} ({kind} tolerance): " + describe_differences(diffs))  # fmt: skip
    if compressed is not None:
        report.checks.append(
            f"compressed program ({metadata['compression']}) vs PyTorch, reported, not limited: "
            + describe_differences(compressed)
        )
    if runtime is not None:
        report.checks.append("Core ML runtime vs PyTorch: " + describe_differences(runtime))
    for warning in (app_grid_warning(size, stride), app_input_warning(ex.input_name)):
        if warning:
            report.checks.append(warning)
    if ex.compress == "palette" and palette_mode(ex.palette_mode) == "uniform":
        report.checks.append(
            "WARNING: uniform palette tables (export.palette_mode "
            f"'{ex.palette_mode}'{', scikit-learn not installed' if ex.palette_mode == 'auto' else ''}"
            "): on the demo's network they cost most of the AP where k-means tables cost little "
            "(docs/export.md); check with --check-ap"
        )
    return report
