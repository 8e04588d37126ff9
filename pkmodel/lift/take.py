"""Takes: recorded sequences of 2D + 3D poses, and their three file formats.

- JSON: strict JSON (NaN written as null), one object per frame, float32 values written with
  the shortest text that reads back to the same float32.
- Binary: little-endian, a self-describing header (magic, version, joint count, frame count,
  record layout table, metadata JSON) followed by fixed-size records, one per frame.
- ZIP: ``metadata.json``, ``take.bin`` and ``take.json`` together.

Readers round-trip exactly: the binary and the ZIP bit for bit, JSON value for value (NaN stays
NaN). Reading a ZIP never extracts anything; :func:`extract_take_zip` writes only inside its
target folder and rejects archives with absolute or ``..`` entries. Byte layouts: docs/3d.md.
"""

from __future__ import annotations

import json
import stat
import struct
import threading
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from pkmodel.common.atomic import atomic_open, atomic_write_bytes, atomic_write_json
from pkmodel.common.errors import PkmodelError

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
MAX_ZIP_MEMBER_BYTES = 1 << 31  # refuse absurd (zip-bomb) sizes before reading


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
    """Rebuild a take from its JSON document (null -> NaN)."""
    if not isinstance(doc, dict) or doc.get("format") != TAKE_FORMAT:
        raise PkmodelError(f"{source} is not a pkmodel take (no 'format': '{TAKE_FORMAT}')")
    if int(doc.get("version", 0)) > TAKE_VERSION:
        raise PkmodelError(
            f"{source} is take version {doc['version']}; this reads up to {TAKE_VERSION}"
        )
    try:
        meta = doc["metadata"]
        j = len(meta["joint_names"])
        arrays = {}
        for name, code, shape in _fields(j):
            values = [frame[name] for frame in doc["frames"]]
            dtype = np.dtype(_TYPE_CODES[code])
            raw = np.array(values, dtype=np.float64 if dtype.kind == "f" else dtype)
            arrays[name] = raw.astype(dtype).reshape(len(values), *shape)
    except (KeyError, TypeError, ValueError) as e:
        raise PkmodelError(
            f"{source} is not a complete pkmodel take ({type(e).__name__}: {e})"
        ) from None
    return Take(metadata=meta, **arrays)


def write_take_json(take: Take, path: str | Path) -> None:
    atomic_write_json(path, take_to_json(take), indent=None)


def read_take_json(path: str | Path) -> Take:
    path = Path(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
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
    if len(data) < _HEADER.size or data[:8] != BINARY_MAGIC:
        raise PkmodelError(f"{source} is not a pkmodel take binary (bad magic)")
    _, version, j, frames, rec_size, header_size, n_fields, meta_size = _HEADER.unpack_from(data)
    if version > TAKE_VERSION:
        raise PkmodelError(f"{source} is take version {version}; this reads up to {TAKE_VERSION}")
    table_end = _HEADER.size + n_fields * _FIELD.size
    if table_end + meta_size > header_size or len(data) != header_size + frames * rec_size:
        raise PkmodelError(f"{source} is truncated or corrupt (sizes in its header do not add up)")
    layout = [_FIELD.unpack_from(data, _HEADER.size + i * _FIELD.size) for i in range(n_fields)]
    expected = [(n.encode("ascii"), c, int(np.prod(s, dtype=np.int64))) for n, c, s in _fields(j)]
    if [(n.rstrip(b"\x00"), c, k) for n, c, k in layout] != expected:
        raise PkmodelError(f"{source} has a record layout this version does not know")
    dtype = record_dtype(j)
    if dtype.itemsize != rec_size:
        raise PkmodelError(f"{source} says records are {rec_size} bytes, expected {dtype.itemsize}")
    try:
        meta = json.loads(data[table_end : table_end + meta_size].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise PkmodelError(f"{source} has unreadable metadata ({e})") from None
    records = np.frombuffer(data, dtype=dtype, count=frames, offset=header_size)
    return Take.from_records(meta, records)


def write_take_binary(take: Take, path: str | Path) -> None:
    atomic_write_bytes(path, take_to_bytes(take))


def read_take_binary(path: str | Path) -> Take:
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise PkmodelError(f"take file {path} cannot be read: {e}") from None
    return take_from_bytes(data, f"take file {path}")


# --- ZIP -------------------------------------------------------------------------------------


def write_take_zip(take: Take, path: str | Path) -> None:
    """metadata.json, take.bin and take.json in one ZIP (fixed timestamps: same take, same
    bytes)."""
    contents = {
        "metadata.json": (json.dumps(take.metadata, indent=2, allow_nan=False) + "\n").encode(),
        "take.bin": take_to_bytes(take),
        "take.json": json.dumps(take_to_json(take), allow_nan=False).encode() + b"\n",
    }
    with atomic_open(path, "wb") as f, zipfile.ZipFile(f, "w") as zf:
        for name in ZIP_MEMBERS:
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = (stat.S_IFREG | 0o644) << 16
            zf.writestr(info, contents[name])


def _unsafe_member(info: zipfile.ZipInfo) -> str | None:
    """Why a ZIP entry may not be read or extracted (None when it is fine)."""
    name = info.filename
    parts = PurePosixPath(name.replace("\\", "/")).parts
    if not name or name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        return "an absolute path"
    if ".." in parts:
        return "a '..' component"
    if stat.S_ISLNK(info.external_attr >> 16):
        return "a symbolic link"
    if info.file_size > MAX_ZIP_MEMBER_BYTES:
        return f"a size of {info.file_size} bytes"
    return None


def _checked_members(zf: zipfile.ZipFile, source: str) -> list[zipfile.ZipInfo]:
    infos = zf.infolist()
    for info in infos:
        why = _unsafe_member(info)
        if why is not None:
            raise PkmodelError(f"{source} is refused: entry '{info.filename}' has {why}")
    return infos


def _open_zip(path: Path) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(path)
    except (OSError, zipfile.BadZipFile) as e:
        raise PkmodelError(f"take file {path} is not a readable ZIP ({e})") from None


def read_take_zip(path: str | Path) -> Take:
    """Read the take from a ZIP in memory (nothing is extracted); unsafe archives are refused."""
    path = Path(path)
    source = f"take file {path}"
    with _open_zip(path) as zf:
        names = {i.filename for i in _checked_members(zf, source)}
        if "take.bin" not in names:
            raise PkmodelError(f"{source} has no take.bin entry")
        data = zf.read("take.bin")
    return take_from_bytes(data, f"{source} (take.bin)")


def extract_take_zip(path: str | Path, folder: str | Path) -> list[Path]:
    """Extract a take ZIP into ``folder``; every entry must land inside it (checked before
    anything is written). Returns the written files."""
    path, folder = Path(path), Path(folder)
    root = folder.resolve()
    written = []
    with _open_zip(path) as zf:
        infos = _checked_members(zf, f"take file {path}")
        targets = []
        for info in infos:
            target = (root / info.filename).resolve()
            if not target.is_relative_to(root):
                raise PkmodelError(
                    f"take file {path} is refused: '{info.filename}' leaves {folder}"
                )
            targets.append((info, target))
        for info, target in targets:
            if info.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            atomic_write_bytes(target, zf.read(info))
            written.append(target)
    return written


def write_take(take: Take, folder: str | Path, stem: str = "take") -> dict[str, Path]:
    """Write the three formats into ``folder``: STEM.json, STEM.bin, STEM.zip."""
    folder = Path(folder)
    paths = {ext: folder / f"{stem}.{ext}" for ext in ("json", "bin", "zip")}
    write_take_json(take, paths["json"])
    write_take_binary(take, paths["bin"])
    write_take_zip(take, paths["zip"])
    return paths
