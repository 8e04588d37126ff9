"""`pkmodel model-info --weights X`: what a checkpoint, an ONNX file or a Core ML model is.

One description for every kind of weights: the operations (a histogram by type), the precision
of the stored weights and of the computation, the input and outputs, the size on disk and, for
exports, the metadata pkmodel wrote (including the check an export ran on itself).
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from pkmodel.common.errors import PkmodelError, not_there
from pkmodel.engine.networks import check_onnx_interface, weights_kind
from pkmodel.export.common import human_size, path_size
from pkmodel.mlprogram.blobs import STORED_TYPES, BlobFile
from pkmodel.mlprogram.program import BlobRef, Program, TensorType

_TEXT_TYPES = {"string", "bool"}


def _shape_text(shape: Any) -> str:
    return " x ".join("?" if d is None or isinstance(d, str) else str(d) for d in shape)


def describe_checkpoint(path: Path) -> dict[str, Any]:
    from pkmodel.model.checkpoint import model_from_checkpoint
    from pkmodel.model.network import model_summary

    model, cfg, state = model_from_checkpoint(path)  # the weights must fit the network described
    info = model_summary(cfg.model, model=model)
    weights = state.get("ema") or state["model"]
    dtypes: Counter = Counter()
    for value in weights.values():
        dtypes[str(value.dtype).replace("torch.", "")] += value.numel()
    return {
        "kind": "checkpoint",
        "format": "pkmodel checkpoint (PyTorch)",
        "size_bytes": path.stat().st_size,
        "weights": "EMA" if state.get("ema") else "model",
        "epoch": state.get("epoch"),
        "input": f"image 1 x 3 x {info['input_shape'][-1]} x {info['input_shape'][-1]} RGB, x / 127.5 - 1",  # fmt: skip
        "outputs": {k: _shape_text(v) for k, v in info["outputs"].items()},
        "precision": "fp32 weights, fp32 compute (AMP only in training)",
        "tensor_dtypes": dict(dtypes),
        "parameters": info["parameters"],
        "macs": info["macs"],
        "ops": {},
        "metadata": {"width_mult": str(info["width_mult"])},
    }


def describe_onnx(path: Path) -> dict[str, Any]:
    import onnx

    if not path.is_file():
        raise PkmodelError(f"weights file {path} {not_there(path)}")
    try:
        model = onnx.load(str(path))
    except Exception as e:  # onnx raises DecodeError and others for files that are not ONNX
        raise PkmodelError(f"{path} is not a readable ONNX model ({type(e).__name__})") from None
    # Empty or foreign bytes may parse as a model without a graph: refused, as ONNX Runtime
    # (predict, evaluate) refuses them, and so is a graph pkmodel cannot run.
    if not model.HasField("graph"):
        why = "the file is empty" if path.stat().st_size == 0 else "it holds no graph"
        raise PkmodelError(f"{path} is not a readable ONNX model ({why})")
    graph = model.graph
    weights = {init.name for init in graph.initializer}
    feeds = [i for i in graph.input if i.name not in weights]
    fed = feeds[0].type.tensor_type.shape.dim if len(feeds) == 1 else None
    # as onnxruntime gives it: a dimension not fixed (dim_value 0) is no int
    shape = None if fed is None else [d.dim_value or None for d in fed]
    check_onnx_interface(path, shape, [o.name for o in graph.output])

    def dims(value) -> str:
        shape = value.type.tensor_type.shape.dim
        return _shape_text([d.dim_value if d.HasField("dim_value") else None for d in shape])

    dtypes: Counter = Counter()
    for init in model.graph.initializer:
        name = onnx.TensorProto.DataType.Name(init.data_type).lower()
        dtypes[name] += int(np.prod(init.dims)) if len(init.dims) else 1
    ops = Counter(node.op_type for node in model.graph.node)
    inputs = [f"{i.name} {dims(i)} float32, x / 127.5 - 1" for i in feeds]
    return {
        "kind": "onnx",
        "format": f"ONNX opset {max((o.version for o in model.opset_import if o.domain in ('', 'ai.onnx')), default=0)}",  # fmt: skip
        "size_bytes": path.stat().st_size,
        "input": "; ".join(inputs),
        "outputs": {o.name: dims(o) for o in model.graph.output},
        "precision": ", ".join(f"{k} weights" for k in dtypes) + ", run by ONNX Runtime",
        "tensor_dtypes": {k: int(v) for k, v in dtypes.items()},
        "ops": dict(ops.most_common()),
        "metadata": {p.key: p.value for p in model.metadata_props},
    }


def _blob_refs(program: Program) -> list[tuple[BlobRef, TensorType]]:
    """Every blob-held constant of a program with its type: const values and the quantised
    data, scales and lookup tables of compressed weights."""
    return [
        (ref, ref.type)
        for op in program.ops
        for ref in [op.value, *op.inputs.values()]
        if isinstance(ref, BlobRef) and ref.type is not None
    ]


def _blob_bytes(program: Program) -> dict[str, int]:
    """Bytes of the stored weights by element type (every blob-held constant)."""
    totals: dict[str, int] = {}
    for _, ttype in _blob_refs(program):
        count = int(np.prod([d or 0 for d in ttype.shape]))
        bits = STORED_TYPES.get(ttype.dtype, (None, 32))[1]
        totals[ttype.dtype] = totals.get(ttype.dtype, 0) + -(-count * bits // 8)
    return totals


def _check_blobs(program: Program) -> None:
    """Refuse a weight file that is missing, damaged or short of a blob the program references
    (each record's type and size, and its data within the file), as the runner does when
    predict or evaluate load the model; nothing is decoded."""
    files: dict[Path, BlobFile] = {}
    for ref, ttype in _blob_refs(program):
        path = program.weight_file(ref.file)
        if path not in files:
            files[path] = BlobFile(path)
        if any(d is None for d in ttype.shape):
            raise PkmodelError(f"{program.source}: a constant in {path} has an open shape")
        files[path].locate(ref.offset, ttype.dtype, tuple(int(d) for d in ttype.shape))  # type: ignore[arg-type]  # fmt: skip


def describe_coreml(path: Path) -> dict[str, Any]:
    from pkmodel.mlprogram.run import load_program

    program = load_program(path)
    _check_blobs(program)
    compute = Counter(
        ttype.dtype
        for op in program.ops
        if op.type not in ("const",) and not op.type.startswith("constexpr_")
        for _, ttype in op.outputs
        if ttype.dtype not in _TEXT_TYPES
    )
    compressed = Counter(op.type for op in program.ops if op.type.startswith("constexpr_"))
    image = program.image
    name, ttype = program.inputs[0]
    input_text = (
        f"image '{image.name}' {image.width} x {image.height} {image.colorspace}, pixels 0..255"
        if image is not None
        else f"'{name}' {ttype.describe()}"
    )
    outputs = {
        n: (program.output_types[n].describe() if n in program.output_types else "?")
        for n in program.outputs
    }
    storage = _blob_bytes(program)
    precision = ", ".join(f"{k} {v}" for k, v in compute.most_common()) + " operations"
    if compressed:
        precision += "; compressed weights: " + ", ".join(
            f"{v} {k.removeprefix('constexpr_')}" for k, v in compressed.items()
        )
    return {
        "kind": "coreml",
        "format": f"Core ML ML Program ({program.format}, "
        + (f"spec version {program.spec_version}, " if program.spec_version else "")
        + f"opset {program.opset})",
        "size_bytes": path_size(path),
        "input": input_text,
        "outputs": outputs,
        "precision": precision,
        "tensor_dtypes": storage,
        "ops": program.histogram(),
        "metadata": dict(program.metadata),
    }


def describe_weights(path: str | Path) -> dict[str, Any]:
    """A dict describing any weights pkmodel runs (see the module docstring)."""
    path = Path(path)
    kind = weights_kind(path)
    info = {"coreml": describe_coreml, "onnx": describe_onnx}.get(kind, describe_checkpoint)(path)
    return {"path": str(path), **info}


def format_description(info: dict[str, Any]) -> list[str]:
    """The lines `pkmodel model-info --weights` prints."""
    lines = [
        f"{info['path']}: {info['format']}, {human_size(info['size_bytes'])} on disk",
        f"input: {info['input']}",
    ]
    lines += [f"output {name}: {shape}" for name, shape in info["outputs"].items()]
    lines.append(f"precision: {info['precision']}")
    if info["tensor_dtypes"]:
        unit = "bytes" if info["kind"] == "coreml" else "values"
        lines.append(
            f"stored weights ({unit}): "
            + ", ".join(f"{k} {v:,}" for k, v in info["tensor_dtypes"].items())
        )
    if "parameters" in info:
        lines.append(f"parameters: {info['parameters']:,}; multiply-adds: {info['macs']:,} per image")  # fmt: skip
    if info["ops"]:
        total = sum(info["ops"].values())
        lines.append(
            f"operations ({total}): " + ", ".join(f"{k} {v}" for k, v in info["ops"].items())
        )
    check = info["metadata"].get("pkmodel_check")
    if check:
        figures = json.loads(check)
        lines.append(
            f"export check on {figures.get('images')}: "
            + ", ".join(
                f"{k} {figures[k]:.2e}" for k in ("heatmaps", "centers", "regs", "offsets") if k in figures
            )
            + f"; same cell {100 * figures.get('same_cells', 0):.1f}%"
        )  # fmt: skip
    shown = {k: v for k, v in sorted(info["metadata"].items()) if k != "pkmodel_check"}
    for key, value in shown.items():
        lines.append(f"metadata {key}: {value if len(value) <= 100 else value[:97] + '...'}")
    return lines
