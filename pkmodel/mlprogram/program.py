"""A Core ML ML Program as plain data: its interface, its operations in order, its constants.

Two front ends build it (``text.py``: a compiled ``.mlmodelc`` folder's ``model.mil`` and
``metadata.json``; ``proto.py``: an ``.mlpackage`` / ``.mlmodel`` spec), one interpreter runs it
(``run.py``). Constants stay where they are stored until the program is run: a ``BlobRef``
names a weight file and the byte offset of the blob's record in it.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class TensorType:
    """Element type (MIL's names: fp16, fp32, int32, bool, string, uint8, ...) and shape
    (None for a dimension the program leaves open)."""

    dtype: str
    shape: tuple[int | None, ...]

    def describe(self) -> str:
        dims = " x ".join("?" if d is None else str(d) for d in self.shape)
        return f"{self.dtype} {dims}" if dims else f"{self.dtype} scalar"


@dataclass(frozen=True)
class Ref:
    """An operation argument that names a value computed earlier (or the function input)."""

    name: str


@dataclass(frozen=True)
class BlobRef:
    """A constant stored in a weight file: the file as the program names it
    (``@model_path/weights/weight.bin``) and the offset of the blob's metadata record."""

    file: str
    offset: int
    type: TensorType | None = None  # element type and shape, as the program declares them


@dataclass
class Op:
    """One operation: MIL type, its ``name`` attribute, arguments, typed outputs; for ``const``
    ops, ``value`` is a NumPy array, a Python scalar / string, or a BlobRef."""

    type: str
    name: str
    inputs: dict[str, Any]
    outputs: list[tuple[str, TensorType]]
    value: Any = None


@dataclass(frozen=True)
class ImageInput:
    """The image feature Core ML turns into the program's input tensor (pixels 0..255 in the
    given colour order; the program's own first ops scale them)."""

    name: str
    width: int
    height: int
    colorspace: str  # RGB, BGR or GRAYSCALE


@dataclass
class Program:
    """A whole ML Program and the interface its bundle declares."""

    source: Path
    format: str  # "mlmodelc" or "mlpackage"
    opset: str  # e.g. CoreML7 or ios15
    inputs: list[tuple[str, TensorType]]
    outputs: list[str]
    ops: list[Op]
    weights_dir: Path  # what "@model_path" means in BLOBFILE paths
    image: ImageInput | None = None
    output_types: dict[str, TensorType] = field(default_factory=dict)
    metadata: dict[str, str] = field(default_factory=dict)
    spec_version: int | None = None

    def histogram(self) -> dict[str, int]:
        """Operation counts by MIL type, most frequent first."""
        return dict(Counter(op.type for op in self.ops).most_common())

    def weight_file(self, name: str) -> Path:
        """The file a BLOBFILE path names (``@model_path/...`` relative to the bundle)."""
        prefix = "@model_path/"
        relative = name[len(prefix) :] if name.startswith(prefix) else name
        return self.weights_dir / relative
