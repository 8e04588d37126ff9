"""Takes: recorded sequences of 2D + 3D poses, and their three file formats.

- JSON: strict JSON (NaN written as null), one object per frame, float32 values written with
  the shortest text that reads back to the same float32.
- Binary: little-endian, a self-describing header (magic, version, joint count, frame count,
  record layout table, metadata JSON) followed by fixed-size records, one per frame.
- ZIP: ``metadata.json``, ``take.bin`` and ``take.json`` together.

Readers round-trip exactly: the binary and the ZIP bit for bit, JSON value for value (NaN stays
NaN). Reading a ZIP never extracts anything; :func:`extract_take_zip` writes only inside its
target folder and rejects archives with absolute or ``..`` entries. Every reader checks what a
file declares (ZIP entry sizes and compression ratios, the binary header) before it reads or
inflates the rest, and reports any fault as one :class:`PkmodelError` sentence naming the file
and the entry or field. Byte layouts: docs/3d.md.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import stat
import struct
import threading
import zipfile
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, NoReturn

import numpy as np

from pkmodel.common.atomic import atomic_open, atomic_write_bytes
from pkmodel.common.errors import PkmodelError, cut
from pkmodel.common.jsontext import parse_json

TAKE_FORMAT = "pkmodel-take"
TAKE_VERSION = 1
BINARY_MAGIC = b"PKTAKE\x00\x00"
# magic, version u16, joint count u16, frame count u32, record size u32, header size u32,
# field count u32, metadata size u32
_HEADER = struct.Struct("<8sHHIIIII")
# one record-layout entry: field name (24 bytes, NUL padded), type code, 3 pad bytes, count u32
_FIELD = struct.Struct("<24sc3xI")
_TYPE_CODES = {b"d": "<f8", b"f": "<f4", b"I": "<u4"}
ZIP_MEMBERS = ("metadata.json", "take.bin", "take.json")
# Limits on what a ZIP's entries declare, checked before anything is inflated (zip bombs). A
# take's JSON is about 2.3 kB per frame: 1 GiB is about two hours at 60 fps.
MAX_ZIP_MEMBER_BYTES = 1 << 30
MAX_ZIP_TOTAL_BYTES = 1 << 31
# A take whose joints are all NaN deflates about 100:1; deflate's own limit is about 1000:1.
MAX_ZIP_RATIO = 500
_MAX_UINT32 = 0xFFFFFFFF
_FLOAT32_MAX = float(np.finfo(np.float32).max)


def _fields(num_joints: int) -> list[tuple[str, bytes, tuple[int, ...]]]:
    """The record layout of version 1: (name, type code, per-record shape)."""
    j = num_joints
    return [
        ("timestamp", b"d", ()),
        ("index", b"I", ()),
        ("keypoints_2d", b"f", (j, 2)),
        ("scores", b"f", (j,)),
        ("joints_camera", b"f", (j, 3)),
        ("joints_canonical", b"f", (j, 3)),
        ("origin", b"f", (3,)),
        ("rotation", b"f", (3, 3)),
    ]


def record_dtype(num_joints: int) -> np.dtype:
    """The packed little-endian record of one frame as a NumPy structured dtype."""
    return np.dtype([(name, _TYPE_CODES[code], shape) for name, code, shape in _fields(num_joints)])


@dataclass
class Take:
    """A recorded take: per-frame arrays (T first) and metadata (with ``joint_names``).

    Dtypes are fixed so that every format stores exactly what is in memory: timestamps float64
    seconds, index uint32, everything else float32. Rotation rows are the canonical axes in
    camera coordinates (see pkmodel.lift.canonical).
    """

    metadata: dict[str, Any]
    timestamp: np.ndarray  # (T,) float64 seconds
    index: np.ndarray  # (T,) uint32 frame number in the source
    keypoints_2d: np.ndarray  # (T, J, 2) image pixels
    scores: np.ndarray  # (T, J)
    joints_camera: np.ndarray  # (T, J, 3) metres, camera frame
    joints_canonical: np.ndarray  # (T, J, 3) metres, canonical frame
    origin: np.ndarray  # (T, 3) pelvis in the camera frame
    rotation: np.ndarray  # (T, 3, 3)

    @property
    def joint_names(self) -> list[str]:
        return list(self.metadata["joint_names"])

    @property
    def num_frames(self) -> int:
        return int(self.timestamp.shape[0])

    def records(self) -> np.ndarray:
        """The take as a structured array of binary records."""
        out = np.zeros(self.num_frames, dtype=record_dtype(len(self.joint_names)))
        for name, _, _ in _fields(len(self.joint_names)):
            out[name] = getattr(self, name)
        return out

    @classmethod
    def from_records(cls, metadata: dict[str, Any], records: np.ndarray) -> Take:
        names = records.dtype.names or ()
        return cls(metadata=metadata, **{n: np.ascontiguousarray(records[n]) for n in names})


def measured_fps(timestamps: np.ndarray) -> float | None:
    """Frames per second from the timestamps themselves (None for fewer than two frames)."""
    t = np.asarray(timestamps, dtype=np.float64)
    if t.size < 2 or t[-1] <= t[0]:
        return None
    return float((t.size - 1) / (t[-1] - t[0]))


class TakeRecorder:
    """Collects frames one at a time, safely: shapes checked, arrays copied, timestamps strictly
    increasing, and appends serialised by a lock (a capture thread may append while another
    reads a snapshot with :meth:`take`)."""

    def __init__(self, joint_names: Sequence[str], metadata: Mapping[str, Any] | None = None):
        self.joint_names = list(joint_names)
        self.metadata = dict(metadata or {})
        self._lock = threading.Lock()
        self._rows: dict[str, list[np.ndarray]] = {n: [] for n, _, _ in _fields(1)}
        self._last_t = -np.inf

    def __len__(self) -> int:
        return len(self._rows["timestamp"])

    def append(
        self,
        timestamp: float,
        keypoints_2d: np.ndarray,
        scores: np.ndarray,
        joints_camera: np.ndarray,
        joints_canonical: np.ndarray | None = None,
        origin: np.ndarray | None = None,
        rotation: np.ndarray | None = None,
        index: int | None = None,
    ) -> None:
        """Add one frame; missing parts (canonical pose, origin, rotation) are stored as NaN."""
        j = len(self.joint_names)
        values = {
            "keypoints_2d": (keypoints_2d, (j, 2)),
            "scores": (scores, (j,)),
            "joints_camera": (joints_camera, (j, 3)),
            "joints_canonical": (joints_canonical, (j, 3)),
            "origin": (origin, (3,)),
            "rotation": (rotation, (3, 3)),
        }
        row: dict[str, np.ndarray] = {}
        for name, (value, shape) in values.items():
            arr = np.full(shape, np.nan) if value is None else np.asarray(value)
            if arr.shape != shape:
                raise ValueError(f"take frame: {name} must have shape {shape}, got {arr.shape}")
            row[name] = arr.astype(np.float32)  # a copy: later changes by the caller don't leak
        timestamp = float(timestamp)
        with self._lock:
            if not np.isfinite(timestamp) or timestamp <= self._last_t:
                raise ValueError(
                    f"take frame: timestamp {timestamp} must be finite and after {self._last_t}"
                )
            self._last_t = timestamp
            row["timestamp"] = np.float64(timestamp)
            row["index"] = np.uint32(len(self) if index is None else index)
            for name, value in row.items():
                self._rows[name].append(value)

    def take(self, metadata: Mapping[str, Any] | None = None) -> Take:
        """A snapshot of the frames so far; metadata gets joint names, frame count and the fps
        measured from the timestamps."""
        j = len(self.joint_names)
        with self._lock:
            arrays = {
                name: np.array(rows, dtype=np.dtype(_TYPE_CODES[code])).reshape(-1, *shape)
                for (name, code, shape), rows in zip(
                    _fields(j), (self._rows[n] for n, _, _ in _fields(j)), strict=True
                )
            }
        meta = {**self.metadata, **(metadata or {})}
        meta["joint_names"] = self.joint_names
        meta["frame_count"] = int(arrays["timestamp"].shape[0])
        meta["fps"] = measured_fps(arrays["timestamp"])
        return Take(metadata=meta, **arrays)


# --- JSON ------------------------------------------------------------------------------------


def _json_values(arr: np.ndarray) -> Any:
    """Nested lists for JSON: NaN -> None, float32 as its shortest exact text, float64 as is."""
    arr = np.asarray(arr)
    if arr.dtype == np.float32:
        flat = [None if s == "nan" else float(s) for s in arr.ravel().astype(str)]
    elif arr.dtype.kind == "f":
        flat = [None if np.isnan(v) else float(v) for v in arr.ravel().tolist()]
    else:
        flat = arr.ravel().tolist()
    if arr.ndim == 0:
        return flat[0]
    return np.array(flat, dtype=object).reshape(arr.shape).tolist()


def take_to_json(take: Take) -> dict[str, Any]:
    """The JSON document of a take (plain Python objects, strict-JSON safe)."""
    names = [n for n, _, _ in _fields(len(take.joint_names))]
    columns = {n: _json_values(getattr(take, n)) for n in names}
    frames = [{n: columns[n][i] for n in names} for i in range(take.num_frames)]
    return {
        "format": TAKE_FORMAT,
        "version": TAKE_VERSION,
        "metadata": take.metadata,
        "frames": frames,
    }


def take_from_json(doc: Any, source: str = "take JSON") -> Take:
    """Rebuild a take from its JSON document (null -> NaN); every field is checked for its type,
    shape and range."""
    if not isinstance(doc, dict) or doc.get("format") != TAKE_FORMAT:
        raise PkmodelError(f"{source} is not a pkmodel take (no 'format': '{TAKE_FORMAT}')")
    for key in ("version", "metadata", "frames"):
        if key not in doc:
            raise PkmodelError(f"{source} has no '{key}'")
    version = doc["version"]
    if type(version) is not int or version < 1:
        raise PkmodelError(
            f"{source}: 'version' must be a whole number from 1, got {cut(repr(version))}"
        )
    if version > TAKE_VERSION:
        raise PkmodelError(f"{source} is take version {version}; this reads up to {TAKE_VERSION}")
    meta = doc.get("metadata")
    names = meta.get("joint_names") if isinstance(meta, dict) else None
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise PkmodelError(
            f"{source}: 'metadata' must be an object whose 'joint_names' lists names"
        )
    _check_metadata(meta, source)
    frames = doc.get("frames")
    if not isinstance(frames, list):
        raise PkmodelError(f"{source}: 'frames' must be a list of frame objects")
    for i, frame in enumerate(frames):
        if not isinstance(frame, dict):
            raise PkmodelError(f"{source}: frame {i} must be an object")
    arrays = {}
    for name, code, shape in _fields(len(names)):
        for i, frame in enumerate(frames):
            if name not in frame:
                raise PkmodelError(f"{source}: frame {i} has no '{name}'")
        values = [frame[name] for frame in frames]
        if code == b"I":
            arrays[name] = _json_indices(values, name, source)
        elif code == b"d":
            arrays[name] = _json_timestamps(values, name, source)
        else:
            arrays[name] = _json_floats(values, name, shape, source)
    return Take(metadata=meta, **arrays)


def refuse_lone_surrogates(text: str, where: str) -> None:
    """JSON's escapes (``\\ud800``) give Python strings that no UTF-8 file can hold, which a
    take's writer would then fail on: one sentence naming ``where`` instead."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise PkmodelError(f"{where} holds a lone UTF-16 surrogate, which is not text") from None


def _check_metadata(meta: Any, source: str, at: str = "metadata") -> None:
    """A take's metadata is JSON that writes back: no NaN or Infinity (which Python's JSON
    reader lets through) and no string that is not text (a lone UTF-16 surrogate); the first
    fault is named by its key path."""
    if isinstance(meta, dict):
        for key, value in meta.items():
            _check_metadata(value, source, f"{at}.{key}")
    elif isinstance(meta, list):
        for i, value in enumerate(meta):
            _check_metadata(value, source, f"{at}[{i}]")
    elif isinstance(meta, float) and not math.isfinite(meta):
        raise PkmodelError(f"{source}: '{at}' is {meta!r}; a take's metadata holds finite numbers")
    elif isinstance(meta, str):
        refuse_lone_surrogates(meta, f"{source}: '{at}'")


def _json_indices(values: list[Any], name: str, source: str) -> np.ndarray:
    for i, v in enumerate(values):
        if type(v) is not int or not 0 <= v <= _MAX_UINT32:
            raise PkmodelError(
                f"{source}: frame {i}: '{name}' must be a whole number from 0 to {_MAX_UINT32}, "
                f"got {cut(repr(v))}"
            )
    return np.array(values, dtype=np.uint32)


def _json_timestamps(values: list[Any], name: str, source: str) -> np.ndarray:
    for i, v in enumerate(values):
        if type(v) not in (int, float) or not math.isfinite(v):
            raise PkmodelError(
                f"{source}: frame {i}: '{name}' must be a finite number, got {cut(repr(v))}"
            )
    return np.array(values, dtype=np.float64)


def _json_floats(values: list[Any], name: str, shape: tuple[int, ...], source: str) -> np.ndarray:
    """(T, *shape) float32 from per-frame nested lists of numbers and nulls (null -> NaN)."""
    size = math.prod(shape)
    if not values:
        return np.zeros((0, *shape), dtype=np.float32)
    wanted = f"{' x '.join(map(str, shape))} numbers or nulls"
    arr = np.array(values, dtype=object)  # ragged input gives another shape, checked next
    if arr.shape != (len(values), *shape):
        i = next((i for i, v in enumerate(values) if np.array(v, dtype=object).shape != shape), 0)
        raise PkmodelError(f"{source}: frame {i}: '{name}' must be {wanted}")
    flat = arr.reshape(len(values), size)
    # bool is an int in Python but not a number in a take
    if not set(map(type, flat.ravel().tolist())) <= {int, float, type(None)}:
        i, v = next(
            (i, v)
            for i, row in enumerate(flat.tolist())
            for v in row
            if type(v) not in (int, float, type(None))
        )
        raise PkmodelError(f"{source}: frame {i}: '{name}' must be {wanted}, got {cut(repr(v))}")
    try:
        raw = np.where(np.equal(flat, None), np.nan, flat).astype(np.float64)
    except OverflowError:  # an integer too large even for float64
        _beyond_float32(flat, name, source)
    if (np.abs(raw) > _FLOAT32_MAX).any():  # inf too; NaN compares False
        _beyond_float32(flat, name, source)
    return raw.astype(np.float32).reshape(len(values), *shape)


def _beyond_float32(flat: np.ndarray, name: str, source: str) -> NoReturn:
    """Name the first value of ``flat`` (frames x values) that float32 cannot hold."""
    i, v = next(
        (i, v)
        for i, row in enumerate(flat.tolist())
        for v in row
        if v is not None and abs(v) > _FLOAT32_MAX
    )
    raise PkmodelError(
        f"{source}: frame {i}: '{name}' holds {v!r}, which a float32 take cannot hold"
    )


def take_json_text(take: Take) -> str:
    """take.json's text: strict JSON on one line, and a newline."""
    return json.dumps(take_to_json(take), allow_nan=False) + "\n"


def write_take_json(take: Take, path: str | Path, text: str | None = None) -> None:
    """take.json (``text``: :func:`take_json_text` of ``take``, when made already)."""
    atomic_write_bytes(path, (take_json_text(take) if text is None else text).encode())


def read_take_json(path: str | Path) -> Take:
    path = Path(path)
    try:
        doc = parse_json(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise PkmodelError(f"take file {path} cannot be read as JSON: {e}") from None
    return take_from_json(doc, f"take file {path}")


# --- binary ----------------------------------------------------------------------------------


def take_to_bytes(take: Take) -> bytes:
    """The little-endian binary form: header, record layout, metadata JSON, records."""
    j = len(take.joint_names)
    fields = _fields(j)
    table = b"".join(
        _FIELD.pack(name.encode("ascii"), code, int(np.prod(shape, dtype=np.int64)))
        for name, code, shape in fields
    )
    meta = json.dumps(take.metadata, allow_nan=False, separators=(",", ":")).encode("utf-8")
    used = _HEADER.size + len(table) + len(meta)
    header_size = (used + 7) // 8 * 8
    dtype = record_dtype(j)
    header = _HEADER.pack(
        BINARY_MAGIC,
        TAKE_VERSION,
        j,
        take.num_frames,
        dtype.itemsize,
        header_size,
        len(fields),
        len(meta),
    )
    padding = b"\x00" * (header_size - used)
    return header + table + meta + padding + take.records().tobytes()


def take_from_bytes(data: bytes, source: str = "take binary") -> Take:
    """Parse :func:`take_to_bytes` output; any inconsistency is a PkmodelError."""
    stream = io.BytesIO(data)
    return _read_binary(stream.read, len(data), source)


def _read_binary(read: Callable[[int], bytes], size: int, source: str) -> Take:
    """A take binary of ``size`` bytes from a stream: the fixed header first, checked against
    ``size`` (magic, version, record size, frame count), and only then the rest."""
    head = read(_HEADER.size)
    if head[:8] != BINARY_MAGIC[: len(head)] or not head:
        raise PkmodelError(f"{source} is not a pkmodel take binary (bad magic)")
    if len(head) < _HEADER.size:
        raise PkmodelError(
            f"{source} is truncated: {len(head)} bytes, shorter than the {_HEADER.size}-byte "
            "header of a pkmodel take binary"
        )
    _, version, j, frames, rec_size, header_size, n_fields, meta_size = _HEADER.unpack(head)
    if version > TAKE_VERSION:
        raise PkmodelError(f"{source} is take version {version}; this reads up to {TAKE_VERSION}")
    if version < 1:
        raise PkmodelError(f"{source} says it is take version {version}; versions start at 1")
    table_end = _HEADER.size + n_fields * _FIELD.size
    if table_end + meta_size > header_size:
        raise PkmodelError(f"{source} is truncated or corrupt (sizes in its header do not add up)")
    if header_size + frames * rec_size != size:
        raise PkmodelError(
            f"{source} is truncated or corrupt (its header declares {frames} records of "
            f"{rec_size} bytes after {header_size} header bytes, but it has {size} bytes)"
        )
    dtype = record_dtype(j)
    if dtype.itemsize != rec_size:
        raise PkmodelError(f"{source} says records are {rec_size} bytes, expected {dtype.itemsize}")
    rest = read(header_size - _HEADER.size)
    records = read(frames * rec_size)
    if len(rest) + len(records) != size - _HEADER.size:
        raise PkmodelError(f"{source} is truncated or corrupt (it ends early)")
    layout = [_FIELD.unpack_from(rest, i * _FIELD.size) for i in range(n_fields)]
    expected = [(n.encode("ascii"), c, int(np.prod(s, dtype=np.int64))) for n, c, s in _fields(j)]
    if [(n.rstrip(b"\x00"), c, k) for n, c, k in layout] != expected:
        raise PkmodelError(f"{source} has a record layout this version does not know")
    meta_start = table_end - _HEADER.size
    try:
        meta = parse_json(rest[meta_start : meta_start + meta_size].decode("utf-8"))
    except ValueError as e:
        raise PkmodelError(f"{source} has unreadable metadata ({e})") from None
    names = meta.get("joint_names") if isinstance(meta, dict) else None
    if not isinstance(names, list) or len(names) != j or not all(isinstance(n, str) for n in names):
        raise PkmodelError(
            f"{source}: its metadata must be an object whose 'joint_names' lists {j} names"
        )
    _check_metadata(meta, source)
    values = np.frombuffer(records, dtype=dtype, count=frames)
    _refuse_infinite(values, source)
    return Take.from_records(meta, values)


def _refuse_infinite(records: np.ndarray, source: str) -> None:
    """The binary twin of the JSON reader's checks: timestamps finite, other values finite or
    NaN (a missing value); the first fault is named by frame and field."""
    for name in records.dtype.names or ():
        column = records[name].reshape(len(records), math.prod(records.dtype[name].shape))
        if column.dtype.kind != "f":
            continue
        bad = ~np.isfinite(column) if name == "timestamp" else np.isinf(column)
        rows = np.flatnonzero(bad.any(axis=1))
        if rows.size:
            i = int(rows[0])
            v = float(column[i][bad[i]][0])
            wanted = "a finite number" if name == "timestamp" else "finite numbers or NaN (missing)"
            raise PkmodelError(f"{source}: frame {i}: '{name}' holds {v!r}; it must hold {wanted}")


def write_take_binary(take: Take, path: str | Path, data: bytes | None = None) -> None:
    """take.bin (``data``: :func:`take_to_bytes` of ``take``, when made already)."""
    atomic_write_bytes(path, take_to_bytes(take) if data is None else data)


def read_take_binary(path: str | Path) -> Take:
    path = Path(path)
    try:
        with open(path, "rb") as f:
            return _read_binary(f.read, os.fstat(f.fileno()).st_size, f"take file {path}")
    except OSError as e:
        raise PkmodelError(f"take file {path} cannot be read: {e}") from None


# --- ZIP -------------------------------------------------------------------------------------


def write_take_zip(
    take: Take, path: str | Path, text: str | None = None, data: bytes | None = None
) -> None:
    """metadata.json, take.bin and take.json in one ZIP (fixed timestamps: same take, same
    bytes); ``text`` and ``data``: take.json's text and take.bin's bytes, when made already."""
    contents = {
        "metadata.json": (json.dumps(take.metadata, indent=2, allow_nan=False) + "\n").encode(),
        "take.bin": take_to_bytes(take) if data is None else data,
        "take.json": (take_json_text(take) if text is None else text).encode(),
    }
    with atomic_open(path, "wb") as f, zipfile.ZipFile(f, "w") as zf:
        for name in ZIP_MEMBERS:
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = (stat.S_IFREG | 0o644) << 16
            zf.writestr(info, contents[name])


def _unsafe_member(info: zipfile.ZipInfo) -> str | None:
    """Why a ZIP entry may not be read or extracted (None when it is fine), from what the
    archive declares: nothing is inflated."""
    name = info.filename
    parts = PurePosixPath(name.replace("\\", "/")).parts
    if not name or name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        return "has an absolute path"
    if ".." in parts:
        return "has a '..' component"
    if stat.S_ISLNK(info.external_attr >> 16):
        return "is a symbolic link"
    if info.file_size > MAX_ZIP_MEMBER_BYTES:
        return f"declares {info.file_size} bytes, more than the {MAX_ZIP_MEMBER_BYTES} allowed"
    if info.file_size > MAX_ZIP_RATIO * max(info.compress_size, 1):
        ratio = info.file_size / max(info.compress_size, 1)
        return (
            f"has a compression ratio of {ratio:.0f}:1 ({info.compress_size} bytes inflating "
            f"to {info.file_size}; takes stay under {MAX_ZIP_RATIO}:1)"
        )
    return None


def _checked_members(zf: zipfile.ZipFile, source: str) -> list[zipfile.ZipInfo]:
    """The archive's entries, refused as a whole (before anything is inflated) if one is unsafe
    or all of them together declare more than MAX_ZIP_TOTAL_BYTES."""
    infos = zf.infolist()
    for info in infos:
        why = _unsafe_member(info)
        if why is not None:
            raise PkmodelError(f"{source} is refused: entry '{info.filename}' {why}")
    total = sum(info.file_size for info in infos)
    if total > MAX_ZIP_TOTAL_BYTES:
        raise PkmodelError(
            f"{source} is refused: its entries declare {total} bytes in all, more than the "
            f"{MAX_ZIP_TOTAL_BYTES} allowed"
        )
    return infos


def _open_zip(path: Path) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(path)
    except (OSError, zipfile.BadZipFile) as e:
        raise PkmodelError(f"take file {path} is not a readable ZIP ({e})") from None


# What zipfile raises for a damaged or unreadable entry: a bad CRC or local header
# (BadZipFile), a broken deflate stream (zlib.error, EOFError), an unknown compression method
# (NotImplementedError), encryption (RuntimeError).
_ENTRY_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError)


@contextlib.contextmanager
def _entry(
    zf: zipfile.ZipFile, info: zipfile.ZipInfo, source: str
) -> Iterator[Callable[[int], bytes]]:
    """A ``read(n)`` of one entry whose faults are one sentence naming the archive and entry."""

    def fault(e: BaseException) -> PkmodelError:
        return PkmodelError(f"{source}: entry '{info.filename}' is corrupt ({e})")

    try:
        stream = zf.open(info)
    except _ENTRY_ERRORS as e:
        raise fault(e) from None

    def read(n: int) -> bytes:
        try:
            return stream.read(n)
        except _ENTRY_ERRORS as e:
            raise fault(e) from None

    with stream:
        yield read
        read(1)  # zipfile checks the CRC when a read reaches the entry's declared end


def read_take_zip(path: str | Path) -> Take:
    """Read the take from a ZIP in memory (nothing is extracted); unsafe archives are refused.
    take.bin's header is read and checked against the entry's declared size before the rest."""
    path = Path(path)
    source = f"take file {path}"
    with _open_zip(path) as zf:
        info = next((i for i in _checked_members(zf, source) if i.filename == "take.bin"), None)
        if info is None:
            raise PkmodelError(f"{source} has no take.bin entry")
        with _entry(zf, info, source) as read:
            return _read_binary(read, info.file_size, f"{source} (take.bin)")


def extract_take_zip(path: str | Path, folder: str | Path) -> list[Path]:
    """Extract a take ZIP into ``folder``; every entry must land inside it (checked before
    anything is written). Entries are inflated into temporary files and renamed into place only
    when all of them have been read whole (CRC checked): a damaged archive replaces nothing.
    Returns the written files."""
    path, folder = Path(path), Path(folder)
    source = f"take file {path}"
    root = folder.resolve()
    with _open_zip(path) as zf:
        infos = _checked_members(zf, source)
        targets = []
        for info in infos:
            target = (root / info.filename).resolve()
            if not target.is_relative_to(root):
                raise PkmodelError(f"{source} is refused: '{info.filename}' leaves {folder}")
            targets.append((info, target))
        written = []
        try:
            # Each atomic_open renames its file into place when the stack closes without an
            # error, and deletes it otherwise.
            with contextlib.ExitStack() as stack:
                for info, target in targets:
                    if info.is_dir():
                        target.mkdir(parents=True, exist_ok=True)
                        continue
                    out = stack.enter_context(atomic_open(target, "wb"))
                    with _entry(zf, info, source) as read:
                        while block := read(1 << 20):
                            out.write(block)
                    written.append(target)
        except OSError as e:
            raise PkmodelError(f"{source} cannot be extracted into {folder}: {e}") from None
    return written


def write_take(take: Take, folder: str | Path, stem: str = "take") -> dict[str, Path]:
    """Write the three formats into ``folder``: STEM.json, STEM.bin, STEM.zip."""
    folder = Path(folder)
    paths = {ext: folder / f"{stem}.{ext}" for ext in ("json", "bin", "zip")}
    text, data = take_json_text(take), take_to_bytes(take)  # each made once for two files
    write_take_json(take, paths["json"], text)
    write_take_binary(take, paths["bin"], data)
    write_take_zip(take, paths["zip"], text, data)
    return paths
