"""ONNX export: the dynamo exporter (``torch.export``) at the configured opset, one
self-contained file, ``onnx.checker`` (full check) and onnxruntime compared with PyTorch on every
output."""

from __future__ import annotations

import contextlib
import copy
import os
import warnings
from pathlib import Path

import numpy as np
import torch

from pkmodel.common.errors import PkmodelError
from pkmodel.config import Config, DecoderConfig
from pkmodel.export.common import (
    INPUT_NAME,
    ExportReport,
    Log,
    app_grid_warning,
    check_input_name,
    check_target,
    export_metadata,
    load_export_model,
    normalise_pixels,
    output_differences,
    output_layout,
    path_size,
    quiet_log,
    sample_input,
    temp_dir_beside,
)
from pkmodel.model.decode import DecodeSettings
from pkmodel.model.outputs import OUTPUT_NAMES

ONNX_MIN_OPSET = 18  # the dynamo exporter writes 18 natively; older opsets need down-conversion


# max abs difference onnxruntime vs PyTorch (both FP32 on the CPU), plus ROUNDING_FACTOR times
# PyTorch's own float32 rounding of that output (onnx_limits)
ONNX_TOLERANCE = 1e-4
ROUNDING_FACTOR = 10


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
    input_name: str = INPUT_NAME,
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
            input_names=[input_name],
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
    path: Path,
    input_size: int,
    output_shapes: dict[str, tuple],
    opset: int,
    dynamic_batch: bool,
    input_name: str = INPUT_NAME,
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
    if inputs != [(input_name, (batch, 3, input_size, input_size))]:
        fail(f"inputs are {inputs}")
    outputs = [(o.name, dims(o)) for o in proto.graph.output]
    want = [(n, (batch, *output_shapes[n][1:])) for n in OUTPUT_NAMES]
    if outputs != want:
        fail(f"outputs are {outputs}, expected {want}")
    return [
        f"onnx.checker (full) passed, opset {opset}",
        f"input '{input_name}': {'x'.join(map(str, inputs[0][1]))} float32, x / 127.5 - 1 "
        "applied by the caller",
        "outputs: " + ", ".join(f"{n} {'x'.join(map(str, s))}" for n, s in outputs),
    ]


def onnx_session(path: Path, threads: int = 0, spinning: bool = True):
    """An onnxruntime CPU session (threads 0 = onnxruntime's default). ``spinning`` False: its
    threads sleep between runs instead of spinning (onnxruntime's default), so that two
    sessions called in turns do not compete for the cores."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.log_severity_level = 3
    if not spinning:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def compare_onnx_with_torch(
    path: Path, model: torch.nn.Module, x: np.ndarray, stride: int, decoder: DecoderConfig
) -> tuple[dict[str, float], dict[str, float]]:
    """onnxruntime vs PyTorch on float32 input ``x``: the differences
    (``output_differences``), and PyTorch's own float32 rounding per output (its largest
    difference from the same network in float64)."""
    session = onnx_session(path)
    got = session.run(list(OUTPUT_NAMES), {session.get_inputs()[0].name: x})
    with torch.inference_mode():
        ref = [r.numpy() for r in model(torch.from_numpy(x))]
        exact = copy.deepcopy(model).double()(torch.from_numpy(x).double())
    rounding = {
        name: float(np.abs(r - e.numpy()).max())
        for name, r, e in zip(OUTPUT_NAMES, ref, exact, strict=True)
    }
    return output_differences(got, ref, DecodeSettings.from_config(decoder, stride)), rounding


def onnx_limits(rounding: dict[str, float]) -> dict[str, float]:
    """The largest difference each output may show: ``ONNX_TOLERANCE`` plus
    ``ROUNDING_FACTOR`` times PyTorch's own float32 rounding there. A trained network rounds
    by about 1e-7 and gets about 1e-4; an untrained one, whose activations reach thousands,
    rounds its regs by about 1e-3, and the two runtimes differ by as much (summed in another
    order) while both are right. Rounding that is not finite (PyTorch's float32 overflowed)
    allows nothing beyond ``ONNX_TOLERANCE``."""
    return {
        name: ONNX_TOLERANCE + ROUNDING_FACTOR * (r if np.isfinite(r) else 0.0)
        for name, r in rounding.items()
    }


def export_onnx(
    weights: Path,
    out: Path,
    cfg: Config,
    force: bool = False,
    log: Log = quiet_log,
) -> ExportReport:
    """Checkpoint -> verified .onnx at ``out`` (atomic; refuses to overwrite without force)."""
    out = check_target(Path(out), ".onnx", force)
    ex = cfg.export
    check_opset(ex.onnx_opset)
    cfg.check("export.input_name", "decoder")
    check_input_name(ex.input_name)
    model, model_cfg, used_ema = load_export_model(weights)
    log(f"[1/4] loaded {weights}")
    size = model_cfg.input_size
    shapes, stride = output_layout(model, size)
    log(
        f"      {'EMA' if used_ema else 'model'} weights, input {size}, stride {stride}, "
        f"{shapes['heatmaps'][1]} joints, width {model_cfg.width_mult}"
    )
    metadata = export_metadata(
        cfg, size, stride, shapes["heatmaps"][1], weights, used_ema, input_name=ex.input_name
    )
    metadata["input_normalization"] = "pixel / 127.5 - 1, by the caller: the input is float32"
    with temp_dir_beside(out) as tmp:
        tmp_file = tmp / out.name
        batch = "dynamic" if ex.dynamic_batch else "1"
        log(f"[2/4] exporting (torch.export, opset {ex.onnx_opset}, batch {batch})")
        write_onnx(model, tmp_file, size, ex.onnx_opset, ex.dynamic_batch, metadata, ex.input_name)
        log("[3/4] onnx.checker and input/output check")
        checks = verify_onnx(tmp_file, size, shapes, ex.onnx_opset, ex.dynamic_batch, ex.input_name)
        log("[4/4] comparing onnxruntime with PyTorch")
        x = normalise_pixels(sample_input(size, batch=2 if ex.dynamic_batch else 1))
        diffs, rounding = compare_onnx_with_torch(tmp_file, model, x, stride, cfg.decoder)
        limits = onnx_limits(rounding)
        # NaN is the worst difference of all (a comparison with NaN is never above anything)
        worst = max(
            OUTPUT_NAMES, key=lambda n: np.inf if np.isnan(diffs[n]) else diffs[n] / limits[n]
        )
        if not diffs[worst] <= limits[worst]:
            raise PkmodelError(
                f"onnxruntime output '{worst}' differs from PyTorch by {diffs[worst]:.2e}, more "
                f"than {limits[worst]:.2e} ({ONNX_TOLERANCE:.0e} plus {ROUNDING_FACTOR} times "
                f"PyTorch's own float32 rounding there, {rounding[worst]:.1e}); nothing was "
                "written"
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
    warning = app_grid_warning(size, stride)
    if warning:
        report.checks.append(warning)
    return report
