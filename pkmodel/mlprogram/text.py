"""Front end for compiled Core ML models (``.mlmodelc`` folders): ``model.mil`` as text.

The compiler writes the ML Program in MIL's text form::

    program(1.0)
    [buildInfo = dict<...>({{"k", "v"}, ...})]
    {
        func main<ios15>(tensor<fp32, [1, 3, 192, 192]> input) {
            tensor<fp16, [32]> b = const()[name = tensor<string, []>("b"),
                val = tensor<fp16, [32]>(BLOBFILE(path = tensor<string, []>("@model_path/weights/weight.bin"),
                                                   offset = tensor<uint64, []>(1856)))];
            tensor<fp16, [1, 32, 96, 96]> y = conv(x = x, weight = w, bias = b, ...)[name = ...];
        } -> (heatmaps, centers);
    }

Numbers may be C99 hex floats (``0x1.010102p-7``). The interface (input image size and colour
space, output types, user metadata) comes from the folder's ``metadata.json``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from pkmodel.common.errors import PkmodelError
from pkmodel.mlprogram.program import BlobRef, ImageInput, Op, Program, Ref, TensorType

_TOKEN = re.compile(
    r"""\s*(?:
      (?P<hex>[-+]?0[xX][0-9a-fA-F]*\.?[0-9a-fA-F]*[pP][-+]?\d+)
    | (?P<num>[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?)
    | (?P<str>"(?:[^"\\]|\\.)*")
    | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
    | (?P<arrow>->)
    | (?P<punct>[<>\[\](){},=;:?-])
    )""",
    re.VERBOSE,
)

# MIL text element types -> NumPy types of immediate values.
_NUMPY = {
    "fp16": np.float16, "fp32": np.float32, "fp64": np.float64, "int8": np.int8,
    "uint8": np.uint8, "int16": np.int16, "uint16": np.uint16, "int32": np.int32,
    "uint32": np.uint32, "int64": np.int64, "uint64": np.uint64, "bool": np.bool_,
}  # fmt: skip


class _Parser:
    def __init__(self, text: str, path: Path) -> None:
        self.path = path
        self.tokens: list[tuple[str, str, int]] = []
        pos, end = 0, len(text.rstrip())
        while pos < end:
            m = _TOKEN.match(text, pos)
            if m is None or m.end() == pos:
                self._fail_at(text, pos, f"unexpected character {text[pos:].strip()[:1]!r}")
            kind = m.lastgroup or ""
            self.tokens.append((kind, m.group(kind), m.start(kind)))
            pos = m.end()
        self.text = text
        self.i = 0

    def _fail_at(self, text: str, pos: int, what: str) -> None:
        line = text.count("\n", 0, pos) + 1
        raise PkmodelError(f"{self.path}: line {line}: {what} (not a MIL program this reads)")

    def fail(self, what: str) -> None:
        pos = self.tokens[min(self.i, len(self.tokens) - 1)][2] if self.tokens else 0
        self._fail_at(self.text, pos, what)

    def peek(self, offset: int = 0) -> str:
        j = self.i + offset
        return self.tokens[j][1] if j < len(self.tokens) else ""

    def kind(self) -> str:
        return self.tokens[self.i][0] if self.i < len(self.tokens) else ""

    def take(self, want: str | None = None) -> str:
        if self.i >= len(self.tokens):
            self.fail(f"the file ends where {want or 'more'} was expected")
        value = self.tokens[self.i][1]
        if want is not None and value != want:
            self.fail(f"expected {want!r}, found {value!r}")
        self.i += 1
        return value

    def items(self, close: str, parse: Callable[[], Any]) -> list[Any]:
        """``parse()`` repeated, comma-separated, up to and including the ``close`` token."""
        found = []
        while self.peek() != close:
            found.append(parse())
            if self.peek() == ",":
                self.take(",")
        self.take(close)
        return found

    def keyed(self, close: str, parse: Callable[[], Any]) -> dict[str, Any]:
        """``key = parse()`` pairs, comma-separated, up to and including ``close``."""

        def pair() -> tuple[str, Any]:
            key = self.name()
            self.take("=")
            return key, parse()

        return dict(self.items(close, pair))

    def typed_name(self) -> tuple[str, TensorType]:
        """``tensor<...> name`` (a function input): (name, type)."""
        ttype = self.tensor_type()
        return self.name(), ttype

    def name(self) -> str:
        if self.kind() != "name":
            self.fail(f"expected a name, found {self.peek()!r}")
        return self.take()

    # ---- types and literals

    def tensor_type(self) -> TensorType:
        kind = self.name()
        if kind != "tensor":
            self.fail(f"values of type {kind}<...> are not supported (only tensors)")
        self.take("<")
        dtype = self.name()
        self.take(",")
        self.take("[")
        dims: list[int | None] = []
        while self.peek() != "]":
            token = self.take()
            if token.isdigit():
                dims.append(int(token))
            elif self.tokens[self.i - 1][0] == "name" or token == "?":  # an open dimension
                dims.append(None)
            else:  # not a dimension: say so here, not wherever the next "]" happens to be
                self.i -= 1
                self.fail(f"expected a dimension, found {token!r}")
            if self.peek() == ",":
                self.take(",")
        self.take("]")
        self.take(">")
        return TensorType(dtype, tuple(dims))

    def literal(self) -> Any:
        kind, token = self.kind(), self.peek()
        if token == "[":
            self.take("[")
            return self.items("]", self.literal)
        self.take()
        if kind == "hex":
            return float.fromhex(token)
        if kind == "num":
            return float(token) if any(c in token for c in ".eE") else int(token)
        if kind == "str":
            return json.loads(token)
        if token in ("true", "false"):
            return token == "true"
        if token in ("inf", "nan"):
            return float(token)
        if token == "-" and self.peek() == "inf":
            self.take()
            return float("-inf")
        self.fail(f"expected a value, found {token!r}")
        return None

    def typed_value(self) -> Any:
        """``tensor<T, [dims]>(literal or BLOBFILE(...))`` -> ndarray / scalar / BlobRef."""
        ttype = self.tensor_type()
        self.take("(")
        if self.peek() == "BLOBFILE":
            self.take()
            self.take("(")
            args = self.keyed(")", self.typed_value)
            self.take(")")
            if "path" not in args or "offset" not in args:
                self.fail("BLOBFILE needs a path and an offset")
            return BlobRef(str(args["path"]), int(args["offset"]), ttype)
        value = self.literal()
        self.take(")")
        if ttype.dtype == "string":
            return value
        array = np.array(value, dtype=_NUMPY.get(ttype.dtype, np.float64))
        want = tuple(d for d in ttype.shape)
        if array.shape != want and array.size == int(np.prod(want or (1,))):
            array = array.reshape(want)
        return array[()] if array.ndim == 0 else array

    # ---- program structure

    def skip_group(self, open_: str, close: str) -> None:
        depth = 0
        while True:
            token = self.take()
            if token == open_:
                depth += 1
            elif token == close:
                depth -= 1
                if depth == 0:
                    return

    def argument(self) -> Any:
        if self.peek() == "(":
            self.take("(")
            return tuple(self.items(")", self.argument))
        if self.kind() == "name" and self.peek() == "tensor" and self.peek(1) == "<":
            return self.typed_value()
        if self.kind() == "name" and self.peek() not in ("true", "false"):
            return Ref(self.take())
        return self.literal()

    def operation(self) -> Op:
        outputs = []
        while True:
            ttype = self.tensor_type()
            outputs.append((self.name(), ttype))
            if self.peek() != ",":
                break
            self.take(",")
        self.take("=")
        op_type = self.name()
        self.take("(")
        inputs = self.keyed(")", self.argument)
        attributes: dict[str, Any] = {}
        if self.peek() == "[":
            self.take("[")
            attributes = self.keyed("]", self.typed_value)
        self.take(";")
        name = str(attributes.get("name", outputs[0][0]))
        # constexpr ops (compressed weights) keep their data as attributes: treat them as inputs.
        for key, value in attributes.items():
            if key not in ("name", "val"):
                inputs[key] = value
        return Op(op_type, name, inputs, outputs, attributes.get("val"))

    def program(self) -> tuple[str, list[tuple[str, TensorType]], list[Op], list[str]]:
        self.take("program")
        self.skip_group("(", ")")
        if self.peek() == "[":
            self.skip_group("[", "]")
        self.take("{")
        self.take("func")
        function = self.name()
        if function != "main":
            self.fail(f"the first function is {function!r}, expected 'main'")
        opset = ""
        if self.peek() == "<":
            self.take("<")
            opset = self.name()
            self.take(">")
        self.take("(")
        inputs = self.items(")", self.typed_name)
        self.take("{")
        ops = []
        while self.peek() != "}":
            ops.append(self.operation())
        self.take("}")
        self.take("->")
        self.take("(")
        outputs = self.items(")", self.name)
        if self.peek() == ";":
            self.take(";")
        return opset, inputs, ops, outputs


def parse_mil(text: str, path: Path) -> tuple[str, list[tuple[str, TensorType]], list[Op], list[str]]:  # fmt: skip
    """(opset, inputs, operations, output names) of the ``main`` function of MIL text."""
    return _Parser(text, path).program()


def _shape(text: str) -> tuple[int, ...]:
    return tuple(int(v) for v in json.loads(text))


def load_compiled(folder: Path) -> Program:
    """A ``.mlmodelc`` folder -> Program (its model.mil, metadata.json and weights/)."""
    folder = Path(folder)
    mil = folder / "model.mil"
    if not mil.is_file():
        raise PkmodelError(
            f"{folder} has no model.mil: not a compiled ML Program (a neural-network-type "
            f"model, or not a Core ML model at all)"
        )
    try:
        text = mil.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise PkmodelError(f"{mil} cannot be read as text ({e})") from None
    opset, inputs, ops, outputs = parse_mil(text, mil)

    meta_path = folder / "metadata.json"
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        meta = meta[0] if isinstance(meta, list) else meta
        if not isinstance(meta, dict):
            raise ValueError("not a JSON object")
    except FileNotFoundError:
        raise PkmodelError(
            f"{folder} has no metadata.json (the compiled model's interface)"
        ) from None
    except (OSError, ValueError) as e:
        raise PkmodelError(f"{meta_path} is not readable JSON ({e})") from None
    image = None
    schema = meta.get("inputSchema") or []
    for entry in schema:
        if entry.get("type") == "Image":
            try:
                image = ImageInput(
                    str(entry["name"]),
                    int(entry["width"]),
                    int(entry["height"]),
                    str(entry.get("colorspace", "RGB")).upper(),
                )
            except (KeyError, ValueError) as e:
                raise PkmodelError(
                    f"{meta_path}: inputSchema entry {entry.get('name')!r} lacks a usable {e}"
                ) from None
    output_types = {}
    for entry in meta.get("outputSchema") or []:
        try:
            dtype = {"Float32": "fp32", "Float16": "fp16", "Int32": "int32", "Double": "fp64"}[
                entry.get("dataType", "Float32")
            ]
            output_types[str(entry["name"])] = TensorType(dtype, _shape(entry["shape"]))
        except (KeyError, ValueError) as e:
            raise PkmodelError(
                f"{meta_path}: outputSchema entry {entry.get('name')!r} lacks a usable {e}"
            ) from None
    metadata = {str(k): str(v) for k, v in (meta.get("userDefinedMetadata") or {}).items()}
    version = meta.get("specificationVersion")
    return Program(
        source=folder,
        format="mlmodelc",
        opset=opset,
        inputs=inputs,
        outputs=outputs,
        ops=ops,
        weights_dir=folder,
        image=image,
        output_types=output_types,
        metadata=metadata,
        spec_version=int(version) if version is not None else None,
    )
