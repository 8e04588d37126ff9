"""Front end for Core ML model specs (``.mlpackage`` bundles and ``.mlmodel`` files).

The spec is protobuf (coremltools ships its classes, which read it on any OS). Its ML Program
holds the same operations as a compiled model's text, as ``Operation`` messages: arguments bind
names or immediate values, constants carry a ``val`` attribute that is either an immediate
tensor or a ``blobFileValue`` (file name and offset into the bundle's weight file).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from pkmodel.common.errors import PkmodelError
from pkmodel.mlprogram.program import BlobRef, ImageInput, Op, Program, Ref, TensorType

# MIL proto element types -> MIL text names.
PROTO_TO_MIL = {
    "FLOAT16": "fp16", "FLOAT32": "fp32", "FLOAT64": "fp64", "BFLOAT16": "bf16",
    "INT8": "int8", "INT16": "int16", "INT32": "int32", "INT64": "int64", "UINT8": "uint8",
    "UINT16": "uint16", "UINT32": "uint32", "UINT64": "uint64", "BOOL": "bool",
    "STRING": "string", "INT4": "int4", "UINT1": "uint1", "UINT2": "uint2", "UINT3": "uint3",
    "UINT4": "uint4", "UINT6": "uint6",
}  # fmt: skip
_NUMPY = {"fp16": np.float16, "fp32": np.float32, "fp64": np.float64, "int8": np.int8,
          "uint8": np.uint8, "int16": np.int16, "uint16": np.uint16, "int32": np.int32,
          "uint32": np.uint32, "int64": np.int64, "uint64": np.uint64, "bool": np.bool_}  # fmt: skip


def quiet_coremltools():
    """Import coremltools without its import-time warnings on Linux (no macOS runtime, a torch
    newer than it was tested with)."""
    logger = logging.getLogger("coremltools")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        import coremltools as ct
    finally:
        logger.setLevel(level)
    return ct


def _tensor_type(value_type, where: str) -> TensorType:
    from coremltools.proto import MIL_pb2

    kind = value_type.WhichOneof("type")
    if kind != "tensorType":
        raise PkmodelError(f"{where}: values of type {kind} are not supported (only tensors)")
    tensor = value_type.tensorType
    name = MIL_pb2.DataType.Name(tensor.dataType)
    dims = tuple(
        int(d.constant.size) if d.WhichOneof("dimension") == "constant" else None
        for d in tensor.dimensions
    )
    return TensorType(PROTO_TO_MIL.get(name, name.lower()), dims)


def _immediate(value, ttype: TensorType, where: str) -> Any:
    kind = value.immediateValue.WhichOneof("value")
    if kind != "tensor":
        raise PkmodelError(f"{where}: immediate values of kind {kind} are not supported")
    tensor = value.immediateValue.tensor
    field = tensor.WhichOneof("value")
    if field is None:
        values: Any = []
    else:
        values = getattr(tensor, field).values
    if ttype.dtype == "string":
        strings = list(values)
        return strings[0] if not ttype.shape else strings
    np_type = _NUMPY.get(ttype.dtype)
    if np_type is None:
        raise PkmodelError(f"{where}: immediate {ttype.dtype} values are not supported")
    if field == "bytes":
        array = np.frombuffer(bytes(values), dtype=np_type)
    else:
        array = np.array(list(values), dtype=np_type)
    shape = tuple(d or 0 for d in ttype.shape)
    if array.size != int(np.prod(shape)):
        raise PkmodelError(
            f"{where}: the immediate value has {array.size} elements, its type "
            f"{ttype.describe()} needs {int(np.prod(shape))}"
        )
    array = array.reshape(shape)
    return array[()] if array.ndim == 0 else array


def _value(value, where: str) -> Any:
    ttype = _tensor_type(value.type, where)
    if value.HasField("blobFileValue"):
        blob = value.blobFileValue
        return BlobRef(blob.fileName, int(blob.offset), ttype)
    return _immediate(value, ttype, where)


def program_from_spec(spec, source: Path, weights_dir: Path, fmt: str) -> Program:
    """The ``main`` function of a spec's ML Program -> Program."""
    from coremltools.proto import FeatureTypes_pb2

    kind = spec.WhichOneof("Type")
    if kind is None:
        raise PkmodelError(
            f"{source} holds no Core ML model (its model spec is empty: a file cut short or "
            "written over)"
        )
    if kind != "mlProgram":
        raise PkmodelError(
            f"{source} is a Core ML {kind} model, not an ML Program (re-export it with pkmodel "
            f"export-coreml, which writes ML Programs)"
        )
    functions = spec.mlProgram.functions
    if "main" not in functions:
        raise PkmodelError(f"{source}: the ML Program has no 'main' function")
    function = functions["main"]
    opset = function.opset
    block = function.block_specializations[opset]
    where = f"{source}"
    inputs = [(v.name, _tensor_type(v.type, where)) for v in function.inputs]
    ops: list[Op] = []
    for operation in block.operations:
        op_where = f"{where}: operation {operation.type}"
        arguments: dict[str, Any] = {}
        for key, argument in operation.inputs.items():
            bound = []
            for binding in argument.arguments:
                if binding.WhichOneof("binding") == "name":
                    bound.append(Ref(binding.name))
                else:
                    bound.append(_value(binding.value, f"{op_where}, argument {key}"))
            arguments[key] = bound[0] if len(bound) == 1 else tuple(bound)
        outputs = [(o.name, _tensor_type(o.type, op_where)) for o in operation.outputs]
        name_attr = operation.attributes.get("name")
        name = (
            _value(name_attr, op_where)
            if name_attr is not None
            else (outputs[0][0] if outputs else "")
        )
        # constexpr ops keep their data as attributes; treat them like arguments.
        for key, attribute in operation.attributes.items():
            if key not in ("name", "val"):
                arguments[key] = _value(attribute, f"{op_where}, attribute {key}")
        value = (
            _value(operation.attributes["val"], f"{op_where} {name}")
            if "val" in operation.attributes
            else None
        )
        ops.append(Op(operation.type, str(name), arguments, outputs, value))

    image = None
    for feature in spec.description.input:
        if feature.type.WhichOneof("Type") == "imageType":
            img = feature.type.imageType
            space = FeatureTypes_pb2.ImageFeatureType.ColorSpace.Name(img.colorSpace)
            image = ImageInput(feature.name, int(img.width), int(img.height), space)
    output_types = {}
    for feature in spec.description.output:
        if feature.type.WhichOneof("Type") == "multiArrayType":
            array = feature.type.multiArrayType
            dtype = FeatureTypes_pb2.ArrayFeatureType.ArrayDataType.Name(array.dataType)
            names = {"FLOAT32": "fp32", "FLOAT16": "fp16", "INT32": "int32", "DOUBLE": "fp64"}
            output_types[feature.name] = TensorType(
                names.get(dtype, dtype.lower()), tuple(int(d) for d in array.shape)
            )
    return Program(
        source=source,
        format=fmt,
        opset=opset,
        inputs=inputs,
        outputs=list(block.outputs),
        ops=ops,
        weights_dir=weights_dir,
        image=image,
        output_types=output_types,
        metadata=dict(spec.description.metadata.userDefined),
        spec_version=int(spec.specificationVersion),
    )


def load_spec_program(path: Path) -> Program:
    """An ``.mlpackage`` folder or ``.mlmodel`` file -> Program."""
    path = Path(path)
    quiet_coremltools()
    from coremltools.proto import Model_pb2

    if path.is_dir():
        manifest = path / "Manifest.json"
        if not manifest.is_file():
            raise PkmodelError(f"{path} has no Manifest.json: not an .mlpackage bundle")
        data = path / "Data" / "com.apple.CoreML"
        specs = [data / "model.mlmodel"] if (data / "model.mlmodel").is_file() else sorted(
            data.glob("*.mlmodel")
        )  # fmt: skip
        if not specs:
            raise PkmodelError(f"{path} holds no model spec under Data/com.apple.CoreML")
        spec_path, weights_dir, fmt = specs[0], data, "mlpackage"
    else:
        spec_path, weights_dir, fmt = path, path.parent, "mlmodel"
    spec = Model_pb2.Model()
    try:
        spec.ParseFromString(spec_path.read_bytes())
    except OSError as e:
        raise PkmodelError(f"{spec_path} cannot be read ({e.strerror})") from None
    except Exception as e:  # protobuf's DecodeError
        raise PkmodelError(f"{spec_path} is not a Core ML model spec ({e})") from None
    return program_from_spec(spec, path, weights_dir, fmt)
