"""The weight-file reader (MIL blob storage, NumPy) against coremltools' own C++ reader and
writer (``coremltools.libmilstoragepython``) and bit-packing helpers, and its errors."""

from __future__ import annotations

import shutil
from pathlib import Path

import coremltools.libmilstoragepython as storage  # a dependency: absent, a failure, not a skip
import numpy as np
import pytest

from pkmodel.common.errors import PkmodelError
from pkmodel.mlprogram.blobs import STORED_TYPES, BlobFile, unpack_bits
from pkmodel.mlprogram.program import BlobRef
from pkmodel.mlprogram.run import CoreMLProgram, load_program
from tests.mlprogram.conftest import app_model, one_sentence

# MIL element type -> the suffix of coremltools' read_*/write_* methods and the NumPy type
# they take and give (fp16 travels as its uint16 bits).
CPP = {
    "fp16": ("fp16", np.uint16), "fp32": ("float", np.float32), "int8": ("int8", np.int8),
    "uint8": ("uint8", np.uint8), "int16": ("int16", np.int16), "uint16": ("uint16", np.uint16),
    "int32": ("int32", np.int32), "uint32": ("uint32", np.uint32), "int4": ("int4", np.int8),
    "uint1": ("uint1", np.uint8), "uint2": ("uint2", np.uint8), "uint3": ("uint3", np.uint8),
    "uint4": ("uint4", np.uint8), "uint6": ("uint6", np.uint8),
}  # fmt: skip


def cpp_read(reader, dtype: str, offset: int) -> np.ndarray:
    """coremltools' reading of one blob, as the bits the program's type stores."""
    return np.asarray(getattr(reader, f"read_{CPP[dtype][0]}_data")(offset))


def as_bits(values: np.ndarray, dtype: str) -> np.ndarray:
    """pkmodel's values in the form coremltools' reader returns them (fp16 as uint16 bits)."""
    values = np.asarray(values).reshape(-1)
    return values.view(np.uint16) if dtype == "fp16" else values


def random_values(rng: np.random.Generator, dtype: str, count: int) -> np.ndarray:
    np_type, bits = STORED_TYPES[dtype]
    if dtype == "fp16":
        return rng.normal(0, 3, count).astype(np.float16).view(np.uint16)
    if dtype == "fp32":
        return rng.normal(0, 3, count).astype(np.float32)
    if dtype == "int4":
        return rng.integers(-8, 8, count).astype(np.int8)
    info = np.iinfo(CPP[dtype][1])
    high = (1 << bits) - 1 if bits < 8 else info.max
    return rng.integers(info.min, high, count, endpoint=True).astype(CPP[dtype][1])


def blob_refs(program) -> list[BlobRef]:
    """Every weight-file constant of a program: const values and constexpr ops' attributes."""
    refs = []
    for op in program.ops:
        for value in [op.value, *op.inputs.values()]:
            if isinstance(value, BlobRef):
                refs.append(value)
    return refs


def test_every_element_type_written_by_coremltools_reads_back_bit_for_bit(tmp_path):
    """One file holding each of the 14 storable types at lengths that end mid-byte for the
    sub-byte types; pkmodel and coremltools read the same values as were written."""
    path = tmp_path / "weight.bin"
    writer = storage._BlobStorageWriter(str(path))
    rng = np.random.default_rng(0)
    written = []
    for dtype in STORED_TYPES:
        for count in (1, 5, 13, 64, 1001):
            values = random_values(rng, dtype, count)
            offset = getattr(writer, f"write_{CPP[dtype][0]}_data")(values)
            written.append((dtype, count, int(offset), values))
    del writer  # the C++ writer completes the file when it is destroyed

    ours, theirs = BlobFile(path), storage._BlobStorageReader(str(path))
    assert ours.count == len(written) == 14 * 5
    for dtype, count, offset, values in written:
        got = ours.read(offset, dtype, (count,))
        assert got.dtype == STORED_TYPES[dtype][0], dtype
        np.testing.assert_array_equal(as_bits(got, dtype), values, err_msg=dtype)
        np.testing.assert_array_equal(cpp_read(theirs, dtype, offset), values, err_msg=dtype)


def test_reading_a_blob_as_another_whole_byte_type_is_refused(tmp_path):
    path = tmp_path / "weight.bin"
    writer = storage._BlobStorageWriter(str(path))
    offset = int(writer.write_float_data(np.arange(8, dtype=np.float32)))
    del writer
    with pytest.raises(PkmodelError) as e:
        BlobFile(path).read(offset, "fp16", (8,))
    one_sentence(e.value, path, f"offset {offset}", "fp16")


def test_the_app_weights_equal_coremltools_reading_bit_for_bit():
    """Every BLOBFILE constant of the app's model.mil (146 FP16 tensors, 3.8 MB): the FP16 bits
    pkmodel reads equal those of coremltools' ``read_fp16_data``."""
    folder = app_model()
    program = load_program(folder)
    refs = blob_refs(program)
    path = folder / "weights" / "weight.bin"
    ours, theirs = BlobFile(path), storage._BlobStorageReader(str(path))
    assert len(refs) == ours.count == 146
    assert {r.type.dtype for r in refs} == {"fp16"}
    total = 0
    for ref in refs:
        assert program.weight_file(ref.file) == path
        got = ours.read(ref.offset, ref.type.dtype, ref.type.shape)
        assert got.shape == ref.type.shape
        np.testing.assert_array_equal(as_bits(got, "fp16"), cpp_read(theirs, "fp16", ref.offset))
        total += got.size
    assert total * 2 > 3_700_000  # the whole file, not a sample of it


# The element types each export's weight file holds (iOS 17: constexpr_affine_dequantize's int8
# data and the iOS 16 LUT's packed uint8 indices; iOS 18: typed sub-byte LUT indices).
EXPORT_TYPES = {
    "fp32": {"fp32"},
    "fp16": {"fp16"},
    "int8": {"fp16", "int8"},
    "pal4": {"fp16", "uint8"},
    "pal6": {"fp16", "uint8"},
    "int8_18": {"fp16", "int8"},
    "pal4_18": {"fp16", "uint4"},
    "pal6_18": {"fp16", "uint6"},
}


@pytest.mark.slow  # the first test to use `programs` makes them all (tens of seconds)
@pytest.mark.parametrize("kind", list(EXPORT_TYPES))
def test_export_weights_equal_coremltools_reading_bit_for_bit(programs, kind):
    program = load_program(programs[kind])
    refs = blob_refs(program)
    files = {program.weight_file(r.file) for r in refs}
    assert len(files) == 1
    (path,) = files
    ours, theirs = BlobFile(path), storage._BlobStorageReader(str(path))
    assert {r.type.dtype for r in refs} == EXPORT_TYPES[kind]
    for ref in refs:
        got = ours.read(ref.offset, ref.type.dtype, ref.type.shape)
        assert got.shape == ref.type.shape
        want = cpp_read(theirs, ref.type.dtype, ref.offset)
        np.testing.assert_array_equal(as_bits(got, ref.type.dtype), want, err_msg=str(ref))


@pytest.mark.parametrize("bits", [1, 2, 3, 4, 5, 6, 7])
@pytest.mark.parametrize("signed", [False, True])
def test_unpack_bits_matches_coremltools_packing(bits, signed):
    """coremltools.optimize's pack_elements_into_bits / restore_elements_from_packed_bits (what
    its compression writes and its decompression reads) against blobs.unpack_bits, at element
    counts that end mid-byte."""
    from coremltools.optimize._utils import (
        pack_elements_into_bits,
        restore_elements_from_packed_bits,
    )

    rng = np.random.default_rng(bits)
    for count in (1, 3, 8, 9, 100, 1001):
        if signed:
            elements = rng.integers(-(1 << (bits - 1)), 1 << (bits - 1), count).astype(np.int8)
        else:
            elements = rng.integers(0, 1 << bits, count).astype(np.uint8)
        packed = pack_elements_into_bits(elements, bits)
        assert packed.size == -(-count * bits // 8)
        got = unpack_bits(packed, bits, count, signed=signed)
        np.testing.assert_array_equal(got, elements)
        assert got.dtype == (np.int8 if signed else np.uint8)
        np.testing.assert_array_equal(
            got, restore_elements_from_packed_bits(packed, bits, count, signed)
        )
    # Arbitrary bytes: both read the same elements out of them.
    raw = rng.integers(0, 256, 37).astype(np.uint8)
    count = 37 * 8 // bits
    np.testing.assert_array_equal(
        unpack_bits(raw, bits, count, signed=signed),
        restore_elements_from_packed_bits(raw, bits, count, signed),
    )


# --- malformed weight files: one sentence each, naming the file --------------------------------


def _copy_of(source: str, request, tmp_path: Path) -> tuple[Path, Path]:
    """A copy of the app's compiled model or of the small FP16 export: (bundle, weight file)."""
    if source == "app":
        original = app_model()
        weights = Path("weights/weight.bin")
    else:
        original = request.getfixturevalue("programs")["fp16"]
        weights = Path("Data/com.apple.CoreML/weights/weight.bin")
    bundle = tmp_path / original.name
    shutil.copytree(original, bundle)
    return bundle, bundle / weights


def _middle_blob(bundle: Path, path: Path) -> tuple[int, int]:
    """(data start, data size) of the blob in the middle of the file."""
    offsets = sorted(r.offset for r in blob_refs(load_program(bundle)))
    record = offsets[len(offsets) // 2]
    size, start = (int(v) for v in np.frombuffer(path.read_bytes()[record + 8 : record + 24], "<u8"))  # fmt: skip
    return start, size


def _truncate_mid_blob(bundle: Path, path: Path) -> None:
    start, size = _middle_blob(bundle, path)
    assert size >= 2
    path.write_bytes(path.read_bytes()[: start + size // 2])


def _bad_sentinel(bundle: Path, path: Path) -> None:
    data = bytearray(path.read_bytes())
    first = min(r.offset for r in blob_refs(load_program(bundle)))
    assert data[first : first + 4] == bytes.fromhex("EFBEADDE")  # 0xDEADBEEF, little-endian
    data[first : first + 4] = b"\0\0\0\0"
    path.write_bytes(bytes(data))


def _short_header(bundle: Path, path: Path) -> None:
    path.write_bytes(path.read_bytes()[:40])


def _wrong_version(bundle: Path, path: Path) -> None:
    data = bytearray(path.read_bytes())
    assert int(np.frombuffer(bytes(data[4:8]), "<u4")[0]) == 2
    data[4:8] = np.array([3], "<u4").tobytes()
    path.write_bytes(bytes(data))


DAMAGE = {
    "truncated mid-blob": (_truncate_mid_blob, "truncated"),
    "missing": (lambda bundle, path: path.unlink(), "does not exist"),
    "wrong sentinel": (_bad_sentinel, "no blob record there (sentinel 0x00000000)"),
    "header under 64 bytes": (_short_header, "is 40 bytes, shorter than its 64-byte header"),
    "storage version 3": (_wrong_version, "has storage version 3, expected 2"),
}


@pytest.mark.parametrize("source", ["app", pytest.param("export", marks=pytest.mark.slow)])
@pytest.mark.parametrize("damage", list(DAMAGE))
def test_a_damaged_weight_file_is_one_sentence_naming_it(source, damage, request, tmp_path):
    bundle, path = _copy_of(source, request, tmp_path)
    CoreMLProgram(bundle)  # the undamaged copy loads
    spoil, words = DAMAGE[damage]
    spoil(bundle, path)
    with pytest.raises(PkmodelError) as e:
        CoreMLProgram(bundle)
    message = one_sentence(e.value, path, words)
    assert message.startswith(f"weight file {path}")
