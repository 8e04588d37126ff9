"""Core ML's weight file (``weights/weight.bin``): the MIL blob storage format, read with NumPy.

Layout (little-endian; coremltools' ``MILBlob/Blob/StorageFormat.hpp``): a 64-byte header
(uint32 blob count, uint32 version = 2, reserved), then for each blob a 64-byte metadata record
(uint32 sentinel 0xDEADBEEF, uint32 data type, uint64 size in bytes, uint64 data offset,
reserved) followed by the data, each 64-byte aligned. A program's ``BLOBFILE(path, offset)``
points at a metadata record; the element type and shape come from the program, the byte count
from the record. Sub-byte types (uint1..uint6, int4) are packed with the first element in the
lowest bits.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pkmodel.common.errors import PkmodelError

SENTINEL = 0xDEADBEEF
HEADER_BYTES = 64
STORAGE_VERSION = 2

# MIL element type -> (NumPy type of the stored values, bits per element).
STORED_TYPES: dict[str, tuple[type, int]] = {
    "fp16": (np.float16, 16), "fp32": (np.float32, 32), "int8": (np.int8, 8),
    "uint8": (np.uint8, 8), "int16": (np.int16, 16), "uint16": (np.uint16, 16),
    "int32": (np.int32, 32), "uint32": (np.uint32, 32), "int4": (np.int8, 4),
    "uint1": (np.uint8, 1), "uint2": (np.uint8, 2), "uint3": (np.uint8, 3),
    "uint4": (np.uint8, 4), "uint6": (np.uint8, 6),
}  # fmt: skip

# The record's data-type codes of the whole-byte types (the format's first four entries); the
# record of any other type is trusted for its size only.
TYPE_CODES = {"fp16": 1, "fp32": 2, "uint8": 3, "int8": 4}


def unpack_bits(data: np.ndarray, bits: int, count: int, signed: bool = False) -> np.ndarray:
    """``count`` elements of ``bits`` bits each from bytes packed first-element-lowest."""
    flat = np.unpackbits(np.asarray(data, np.uint8), bitorder="little")[: count * bits]
    values = np.packbits(
        np.pad(flat.reshape(count, bits), ((0, 0), (0, 8 - bits))), axis=1, bitorder="little"
    )[:, 0]
    if signed:
        return np.where(values >= 1 << (bits - 1), values.astype(np.int16) - (1 << bits), values).astype(np.int8)  # fmt: skip
    return values


class BlobFile:
    """One weight file, read once; ``read(offset, dtype, shape)`` returns a NumPy array."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        try:
            self.data = self.path.read_bytes()
        except FileNotFoundError:
            raise PkmodelError(f"weight file {self.path} does not exist") from None
        except OSError as e:
            raise PkmodelError(f"weight file {self.path} cannot be read ({e.strerror})") from None
        if len(self.data) < HEADER_BYTES:
            raise PkmodelError(
                f"weight file {self.path} is {len(self.data)} bytes, shorter than its 64-byte "
                f"header (truncated)"
            )
        count, version = np.frombuffer(self.data[:8], "<u4")
        if version != STORAGE_VERSION:
            raise PkmodelError(
                f"weight file {self.path} has storage version {version}, expected "
                f"{STORAGE_VERSION} (not a Core ML blob file)"
            )
        self.count = int(count)

    def read(self, offset: int, dtype: str, shape: tuple[int, ...]) -> np.ndarray:
        start, count = self.locate(offset, dtype, shape)
        np_type, bits = STORED_TYPES[dtype]
        raw = np.frombuffer(self.data, np.uint8, -(-count * bits // 8), start)
        if bits % 8 == 0:
            values = raw.view(np.dtype(np_type).newbyteorder("<")).astype(np_type)
        else:
            values = unpack_bits(raw, bits, count, signed=dtype == "int4")
        return values.reshape(shape)

    def locate(self, offset: int, dtype: str, shape: tuple[int, ...]) -> tuple[int, int]:
        """(data start, element count) of the blob whose record is at ``offset``, checked to be
        there, of the program's type and whole in the file; nothing is read."""
        where = f"weight file {self.path} at offset {offset}"
        if dtype not in STORED_TYPES:
            raise PkmodelError(f"{where}: element type {dtype} cannot be stored in a blob")
        if offset + 64 > len(self.data):
            raise PkmodelError(
                f"{where}: the file is only {len(self.data)} bytes (truncated, or a wrong offset)"
            )
        sentinel, code = np.frombuffer(self.data[offset : offset + 8], "<u4")
        size, start = (int(v) for v in np.frombuffer(self.data[offset + 8 : offset + 24], "<u8"))
        if sentinel != SENTINEL:
            raise PkmodelError(f"{where}: no blob record there (sentinel 0x{int(sentinel):08X})")
        if dtype in TYPE_CODES and code != TYPE_CODES[dtype]:
            raise PkmodelError(
                f"{where}: the blob holds data type {int(code)}, the program says {dtype}"
            )
        bits = STORED_TYPES[dtype][1]
        count = int(np.prod(shape, dtype=np.int64))
        need = -(-count * bits // 8)
        if size < need:
            raise PkmodelError(
                f"{where}: the blob holds {size} bytes, the program's {dtype} "
                f"{list(shape)} needs {need}"
            )
        if start + need > len(self.data):
            raise PkmodelError(
                f"{where}: the data ends at byte {start + need} but the file is "
                f"{len(self.data)} bytes (truncated)"
            )
        return start, count
