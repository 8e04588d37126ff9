"""The PoseKit iOS app's take format, read and written, and its mapping to pkmodel's takes.

An app take is a folder holding ``meta.json`` (Swift's JSONEncoder, pretty-printed, sorted keys)
and ``frames.bin`` (768-byte little-endian records: a float64 timestamp, then ten float32 per
joint for the 19 joints COCO-17, pelvis, neck: camera x y z, playback x y z, x_norm, y_norm,
score, depthConfidence). The app also exports it as ``.bin`` (frames only), ``.json`` (both,
with display names) and ``.zip`` (stored meta.json, frames.bin, frames.json).

Everything here is written as the app writes it: a take lifted by pkmodel plays back on the
phone like one the phone recorded, including the app's mirror-image (left-handed) playback
pose. Reading a take and writing it again gives the same ``frames.bin`` and ``meta.json``
bytes; the mapping to pkmodel's :class:`~pkmodel.lift.take.Take` keeps every value of the app's
records, so app -> pkmodel -> app is byte-identical too. Formats, mapping and what is lost:
docs/posekit-app.md.
"""

from __future__ import annotations

import math
import os
import re
import shutil
import stat
import tempfile
import time
import uuid as uuid_module
import warnings
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np

from pkmodel import __version__
from pkmodel.common.atomic import (
    atomic_open,
    atomic_replace_dir,
    atomic_write_bytes,
    atomic_write_text,
    default_folder_mode,
)
from pkmodel.common.errors import PkmodelError, cut
from pkmodel.common.jsontext import parse_json
from pkmodel.common.skeleton import EXTENDED_JOINT_NAMES, JOINT_INDEX, NECK, NUM_JOINTS, PELVIS
from pkmodel.lift.take import (
    BINARY_MAGIC,
    Take,
    _checked_members,
    _entry,
    _open_zip,
    measured_fps,
    read_take_binary,
    read_take_zip,
    refuse_lone_surrogates,
    take_from_json,
    write_take,
    write_take_binary,
    write_take_json,
    write_take_zip,
)

JOINT_SCHEMA = "COCO17+2"
UNITS = "meters"
NUM_APP_JOINTS = 19  # COCO-17, pelvis, neck: the same order as EXTENDED_JOINT_NAMES
# The app's display names, written into its JSON export (Joint.displayName).
DISPLAY_NAMES: tuple[str, ...] = (
    "Nose", "L-Eye", "R-Eye", "L-Ear", "R-Ear", "L-Shoulder", "R-Shoulder", "L-Elbow",
    "R-Elbow", "L-Wrist", "R-Wrist", "L-Hip", "R-Hip", "L-Knee", "R-Knee", "L-Ankle",
    "R-Ankle", "Pelvis", "Neck",
)  # fmt: skip
# One frames.bin record: timestamp, then per joint camera xyz, playback xyz, x_norm, y_norm,
# score, depthConfidence.
FRAME_DTYPE = np.dtype([("timestamp", "<f8"), ("joints", "<f4", (NUM_APP_JOINTS, 10))])
RECORD_BYTES = FRAME_DTYPE.itemsize  # 768
CAMERA, PLAYBACK, KEYPOINT, SCORE, DEPTH_CONFIDENCE = (
    slice(0, 3), slice(3, 6), slice(6, 8), 8, 9
)  # fmt: skip
ZIP_MEMBERS = ("meta.json", "frames.bin", "frames.json")
# Swift's Date: seconds since 2001-01-01 00:00:00 UTC.
SWIFT_EPOCH = datetime(2001, 1, 1, tzinfo=timezone.utc)
_SWIFT_EPOCH_UNIX = 978307200.0
DEFAULT_FPS = 30  # the app's default target frame rate
DEFAULT_MIN_SCORE = 0.3  # the app's default minKeypointScore
# pkmodel's canonical frame of a take read from the app: the app's playback with x negated.
POSEKIT_CANONICAL_FRAME = (
    "the PoseKit app's playback frame made right-handed (its x negated): origin at the pelvis; "
    "x toward the subject's left (from the hips, or the shoulders when a hip is missing or "
    "scores low), y up (neck - pelvis), z forward (the way the chest faces)"
)
APP_CAMERA_FRAME = (
    "x right, y down, z forward (metres; ARKit's camera, the un-oriented sensor image)"
)
_FLOAT32_MAX = float(np.finfo(np.float32).max)
# createdAt values that are a date (years 1 to 9999, what Python's datetime holds)
_CREATED_MIN = (datetime(1, 1, 1, tzinfo=timezone.utc) - SWIFT_EPOCH).total_seconds()
_CREATED_MAX = (
    datetime(9999, 12, 31, 23, 59, 59, tzinfo=timezone.utc) - SWIFT_EPOCH
).total_seconds()
# The dates a ZIP entry can hold (MS-DOS time, two-second steps).
_ZIP_FIRST, _ZIP_LAST = (1980, 1, 1, 0, 0, 0), (2107, 12, 31, 23, 59, 58)
_UUID = re.compile(r"[0-9A-Fa-f]{8}-([0-9A-Fa-f]{4}-){3}[0-9A-Fa-f]{12}")
_LH, _RH = JOINT_INDEX["left_hip"], JOINT_INDEX["right_hip"]
_LS, _RS = JOINT_INDEX["left_shoulder"], JOINT_INDEX["right_shoulder"]


# --- Swift's JSONEncoder (pretty-printed, sorted keys) ----------------------------------------


class _Raw(str):
    """Text that goes into the JSON as it is (a number formatted already)."""


def _decompose(text: str) -> tuple[bool, str, int]:
    """Sign, significant digits and decimal exponent E (value = 0.DIGITS x 10^E) of a decimal
    text such as ``-1.5e-07`` or ``123.45``."""
    negative = text.startswith("-")
    mantissa, _, exponent = text.lstrip("+-").partition("e")
    whole, _, fraction = mantissa.partition(".")
    digits = whole + fraction
    point = len(whole) + (int(exponent) if exponent else 0)
    stripped = digits.lstrip("0")
    point -= len(digits) - len(stripped)
    return negative, stripped.rstrip("0"), point


def _swift_number(text: str, limit: float) -> str:
    """What Swift's JSONEncoder writes for a finite float: the type's ``description`` (shortest
    digits; exponential below 1e-4 or above ``limit``: 2^24 for Float, 2^53 for Double) less a
    trailing ``.0``. ``text`` is the shortest decimal text of the value (numpy's or Python's)."""
    negative, digits, e = _decompose(text)
    sign = "-" if negative else ""
    if not digits:
        return sign + "0"
    if e < -3 or abs(float(text)) > limit:
        exponent = e - 1
        mantissa = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        return f"{sign}{mantissa}e{'-' if exponent < 0 else '+'}{abs(exponent):02d}"
    if e <= 0:
        return f"{sign}0.{'0' * -e}{digits}"
    if e < len(digits):
        return f"{sign}{digits[:e]}.{digits[e:]}"
    return sign + digits + "0" * (e - len(digits))


def swift_double(value: float) -> _Raw | None:
    """A Double as Swift's JSONEncoder writes it (None for NaN / infinity)."""
    value = float(value)
    return _Raw(_swift_number(repr(value), 2.0**53)) if math.isfinite(value) else None


def swift_floats(values: np.ndarray) -> np.ndarray:
    """Float (float32) values as Swift's JSONEncoder writes them: an object array of the same
    shape holding texts, None for NaN / infinity."""
    values = np.asarray(values, dtype=np.float32)
    texts, inverse = np.unique(values.astype(str), return_inverse=True)
    swift = np.empty(len(texts), dtype=object)
    swift[:] = [
        None if t in ("nan", "inf", "-inf") else _Raw(_swift_number(t, 2.0**24)) for t in texts
    ]
    return swift[inverse].reshape(values.shape)


_ESCAPES = {'"': '\\"', "\\": "\\\\", "/": "\\/", "\b": "\\b", "\f": "\\f", "\n": "\\n",
            "\r": "\\r", "\t": "\\t"}  # fmt: skip


def _swift_string(text: str) -> str:
    """A JSON string as Swift writes it: '/' escaped, other controls as \\u00xx, UTF-8 as is."""
    out = []
    for ch in text:
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif ord(ch) < 0x20:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def swift_json(value: Any) -> str:
    """``value`` as Swift's JSONEncoder with ``[.prettyPrinted, .sortedKeys]`` writes it: two
    spaces per level, ``"key" : value``, keys in byte order, no newline at the end.

    Types: dict, list, str, bool, None (null), int, float (a Swift Double), ``np.float32`` (a
    Swift Float) and :class:`_Raw` text. NaN and infinity are written as null (Swift's encoder
    refuses them; the app's JSON export then fails, see docs/posekit-app.md).
    """
    out: list[str] = []
    _write_json(value, 0, out)
    return "".join(out)


def _write_json(value: Any, level: int, out: list[str]) -> None:
    if isinstance(value, _Raw):
        out.append(value)
    elif isinstance(value, str):
        out.append(_swift_string(value))
    elif value is None:
        out.append("null")
    elif isinstance(value, (bool, np.bool_)):
        out.append("true" if value else "false")
    elif isinstance(value, (int, np.integer)):
        out.append(str(int(value)))
    elif isinstance(value, np.float32):
        out.append(swift_floats(np.array([value]))[0] or "null")
    elif isinstance(value, (float, np.floating)):
        out.append(swift_double(float(value)) or "null")
    elif isinstance(value, (dict, list, tuple)):
        is_dict = isinstance(value, dict)
        items = sorted(value.items()) if is_dict else list(value)
        open_, close = "{}" if is_dict else "[]"
        pad = "  " * (level + 1)
        out.append(open_ + "\n")
        for i, item in enumerate(items):
            out.append(",\n" + pad if i else pad)
            if is_dict:
                out.append(_swift_string(item[0]) + " : ")
                item = item[1]
            _write_json(item, level + 1, out)
        out.append("\n" + "  " * level + close)
    else:
        raise TypeError(f"no JSON form for {type(value).__name__}")


# --- meta.json -------------------------------------------------------------------------------


@dataclass
class PoseKitMeta:
    """The app's ``TakeMeta``: what ``meta.json`` holds."""

    uuid: str  # upper case, 8-4-4-4-12 hex digits
    created_at: float  # seconds since 2001-01-01 00:00:00 UTC (Swift's Date)
    duration: float  # seconds, last timestamp - first
    fps: int  # the target frame rate (a Swift Int), not a measured one
    device_model: str
    ios_version: str
    model_identifier: str
    model_version: str
    min_keypoint_score: float  # a Swift Float: kept as a float32 value
    joint_schema: str = JOINT_SCHEMA
    units: str = UNITS
    frame_count: int = 0
    notes: str | None = None

    # JSON key -> (attribute, kind): kinds "str", "double", "float", "int"
    KEYS = {
        "uuid": ("uuid", "str"),
        "createdAt": ("created_at", "double"),
        "duration": ("duration", "double"),
        "fps": ("fps", "int"),
        "deviceModel": ("device_model", "str"),
        "iosVersion": ("ios_version", "str"),
        "modelIdentifier": ("model_identifier", "str"),
        "modelVersion": ("model_version", "str"),
        "minKeypointScore": ("min_keypoint_score", "float"),
        "jointSchema": ("joint_schema", "str"),
        "units": ("units", "str"),
        "frameCount": ("frame_count", "int"),
        "notes": ("notes", "str"),
    }

    def created_datetime(self) -> datetime:
        return SWIFT_EPOCH + timedelta(seconds=self.created_at)

    def encoder_values(self) -> dict[str, Any]:
        """The keys and values with the types Swift encodes them as (for :func:`swift_json`);
        ``notes`` is left out when nil, as Swift's synthesised Codable does."""
        out: dict[str, Any] = {}
        for key, (attr, kind) in self.KEYS.items():
            value = getattr(self, attr)
            if value is None:
                continue
            if kind == "double":
                value = float(value)
            elif kind == "float":
                value = np.float32(value)
            elif kind == "int":
                value = int(value)
            out[key] = value
        return out

    def to_json(self) -> str:
        """meta.json's text, byte for byte as the app writes it."""
        return swift_json(self.encoder_values())

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON values under the app's key names (the Float as its shortest text's
        value, so that it reads back to the same float32)."""
        out = self.encoder_values()
        if "minKeypointScore" in out:
            out["minKeypointScore"] = float(str(out["minKeypointScore"]))
        return out

    @classmethod
    def from_json(cls, obj: Any, source: str) -> PoseKitMeta:
        """Check and read the app's meta object; every fault is one sentence naming ``source``
        and the key. Unknown keys are ignored, as the app ignores them."""
        if not isinstance(obj, dict):
            raise PkmodelError(f"{source}: the take's meta must be a JSON object")
        values: dict[str, Any] = {}
        for key, (attr, kind) in cls.KEYS.items():
            if key not in obj or (key == "notes" and obj[key] is None):
                if key == "notes":
                    continue
                raise PkmodelError(f"{source}: the take's meta has no '{key}'")
            values[attr] = _meta_value(obj[key], kind, key, source)
        if not _CREATED_MIN <= values["created_at"] <= _CREATED_MAX:
            raise PkmodelError(
                f"{source}: 'createdAt' must be seconds since 2001-01-01 that give a date in "
                f"the years 1 to 9999, got {values['created_at']!r}"
            )
        if not _UUID.fullmatch(values["uuid"]):
            raise PkmodelError(f"{source}: 'uuid' must be a UUID, got {values['uuid']!r}")
        if values["joint_schema"] != JOINT_SCHEMA:
            raise PkmodelError(
                f"{source}: joint schema {values['joint_schema']!r} is not the app's "
                f"{JOINT_SCHEMA!r}, whose 19-joint records pkmodel reads"
            )
        if values["units"] != UNITS:
            raise PkmodelError(
                f"{source}: units {values['units']!r}; the app's takes are in {UNITS!r}"
            )
        return cls(**values)


def _meta_value(value: Any, kind: str, key: str, source: str) -> Any:
    if kind == "str":
        if not isinstance(value, str):
            raise PkmodelError(f"{source}: '{key}' must be a string, got {cut(repr(value))}")
        refuse_lone_surrogates(value, f"{source}: '{key}'")
        return value
    number = type(value) in (int, float) and math.isfinite(value)
    if kind == "int":
        if not number or value != int(value):
            raise PkmodelError(f"{source}: '{key}' must be a whole number, got {cut(repr(value))}")
        return int(value)
    if not number or (kind == "float" and abs(value) > _FLOAT32_MAX):
        raise PkmodelError(f"{source}: '{key}' must be a finite number, got {cut(repr(value))}")
    return float(np.float32(value)) if kind == "float" else float(value)


def swift_now() -> float:
    """The current time as Swift's Date encodes it: seconds since 2001-01-01 UTC."""
    return time.time() - _SWIFT_EPOCH_UNIX


# --- the take --------------------------------------------------------------------------------


@dataclass
class PoseKitTake:
    """An app take in memory: its meta (None for a ``.bin`` export, which has none) and its
    frames as records of :data:`FRAME_DTYPE` (``frames.bin``'s bytes exactly)."""

    meta: PoseKitMeta | None
    frames: np.ndarray

    @property
    def num_frames(self) -> int:
        return int(self.frames.shape[0])

    @property
    def timestamps(self) -> np.ndarray:
        return self.frames["timestamp"]

    @property
    def camera(self) -> np.ndarray:  # (T, 19, 3) metres, NaN = no depth
        return self.frames["joints"][..., CAMERA]

    @property
    def playback(self) -> np.ndarray:  # (T, 19, 3) the app's canonical ("playback") pose
        return self.frames["joints"][..., PLAYBACK]

    @property
    def keypoints(self) -> np.ndarray:  # (T, 19, 2) normalised 0..1 in the sensor image
        return self.frames["joints"][..., KEYPOINT]

    @property
    def scores(self) -> np.ndarray:  # (T, 19)
        return self.frames["joints"][..., SCORE]

    @property
    def depth_confidence(self) -> np.ndarray:  # (T, 19) 0, 0.5 or 1
        return self.frames["joints"][..., DEPTH_CONFIDENCE]

    def frames_bytes(self) -> bytes:
        return np.ascontiguousarray(self.frames, dtype=FRAME_DTYPE).tobytes()

    def require_meta(self) -> PoseKitMeta:
        if self.meta is None:
            raise ValueError(
                "this take has no meta (a .bin export): convert it with take_to_posekit"
            )
        return self.meta


def frames_from_bytes(
    data: bytes,
    source: str,
    allow_partial: bool = False,
    warn: Callable[[str], None] | None = None,
) -> np.ndarray:
    """frames.bin's records. A size that is not a whole number of 768-byte records is refused
    (one sentence naming ``source`` and the size) or, with ``allow_partial``, its whole records
    are read and ``warn`` (default: :func:`warnings.warn`) gets that sentence."""
    whole = check_frames_size(len(data), source, allow_partial, warn)
    return check_frames(np.frombuffer(data, dtype=FRAME_DTYPE, count=whole).copy(), source)


# the name of each of a joint's ten values in a record, as the app's JSON export names them
_COLUMN_NAMES = ("camera3D",) * 3 + ("playback3D",) * 3 + ("keypoint2D",) * 2 + (
    "score2D", "depthConfidence"
)  # fmt: skip


def check_frames(frames: np.ndarray, source: str) -> np.ndarray:
    """``frames`` when every timestamp is finite (and so is their span) and no joint value is
    infinite (NaN means "none"), as pkmodel's take readers require; else one sentence naming
    ``source``, the frame and the field."""
    t = frames["timestamp"]
    bad = np.flatnonzero(~np.isfinite(t))
    if bad.size:
        i = int(bad[0])
        raise PkmodelError(
            f"{source}: frame {i}: 'timestamp' must be a finite number, got {float(t[i])!r}"
        )
    if t.size and not math.isfinite(float(t.max()) - float(t.min())):
        raise PkmodelError(
            f"{source}: its timestamps span more seconds than a number holds "
            f"({float(t.min())!r} to {float(t.max())!r})"
        )
    joints = frames["joints"]
    bad = np.argwhere(np.isinf(joints))
    if bad.size:
        i, j, k = (int(v) for v in bad[0])
        raise PkmodelError(
            f"{source}: frame {i}: joint {DISPLAY_NAMES[j]}: '{_COLUMN_NAMES[k]}' must be a finite number "
            f"or NaN, got {float(joints[i, j, k])!r}"
        )
    return frames


def check_frames_size(
    size: int, source: str, allow_partial: bool = False, warn: Callable[[str], None] | None = None
) -> int:
    """The number of whole records in a frames.bin of ``size`` bytes; a remainder is one
    sentence naming ``source`` and the size: a PkmodelError, or with ``allow_partial`` a
    warning."""
    whole, extra = divmod(size, RECORD_BYTES)
    if extra:
        sentence = (
            f"{source} is {size} bytes, not a whole number of {RECORD_BYTES}-byte frames "
            f"({whole} frames and {extra} bytes more): it is cut short or not a PoseKit "
            "frames.bin"
        )
        if not allow_partial:
            raise PkmodelError(f"{sentence} (--allow-partial reads its {whole} whole frames)")
        (warn or _warn)(f"{sentence}; reading its {whole} whole frames")
    return whole


def _warn(message: str) -> None:
    warnings.warn(message, stacklevel=3)


def _read_bytes(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as e:
        raise PkmodelError(f"{what} {path} cannot be read: {e.strerror or e}") from None


def _read_meta_bytes(data: bytes, source: str) -> PoseKitMeta:
    try:
        obj = parse_json(data.decode("utf-8"))
    except ValueError as e:
        raise PkmodelError(f"{source} cannot be read as JSON ({e})") from None
    return PoseKitMeta.from_json(obj, source)


def read_posekit_folder(
    folder: str | Path, allow_partial: bool = False, warn: Callable[[str], None] | None = None
) -> PoseKitTake:
    """A take folder as the app stores it: ``meta.json`` and ``frames.bin``."""
    folder = Path(folder)
    for name in ("meta.json", "frames.bin"):
        if not (folder / name).is_file():
            raise PkmodelError(f"PoseKit take folder {folder} has no {name}")
    meta_path = folder / "meta.json"
    meta = _read_meta_bytes(_read_bytes(meta_path, "take file"), f"take file {meta_path}")
    frames_path = folder / "frames.bin"
    data = _read_bytes(frames_path, "take file")
    return PoseKitTake(
        meta, frames_from_bytes(data, f"take file {frames_path}", allow_partial, warn)
    )


def read_posekit_bin(
    path: str | Path, allow_partial: bool = False, warn: Callable[[str], None] | None = None
) -> PoseKitTake:
    """The app's ``.bin`` export (a copy of frames.bin: frames, no meta)."""
    path = Path(path)
    data = _read_bytes(path, "take file")
    return PoseKitTake(None, frames_from_bytes(data, f"take file {path}", allow_partial, warn))


def _json_value(value: Any) -> float:
    """A number of the app's JSON export: NaN written as null, "nan" or NaN is NaN."""
    if value is None or (isinstance(value, str) and value.strip().lower() in ("nan", "-nan")):
        return math.nan
    if type(value) not in (int, float) or math.isinf(value) or abs(value) > _FLOAT32_MAX:
        raise ValueError(value)
    return float(value)


def posekit_from_json(doc: Any, source: str) -> PoseKitTake:
    """The app's JSON export (``{"meta": ..., "frames": [...]}``) as a take: joints found by
    their display names, numbers or null / "nan" / NaN (NaN) in every numeric field."""
    if not isinstance(doc, dict) or ("frames" not in doc and "meta" not in doc):
        raise PkmodelError(f"{source} is not a PoseKit JSON export (no 'meta' and 'frames')")
    for key in ("meta", "frames"):
        if key not in doc:
            raise PkmodelError(f"{source}: the PoseKit JSON export has no '{key}'")
    meta = PoseKitMeta.from_json(doc["meta"], source)
    frames_in = doc["frames"]
    if not isinstance(frames_in, list):
        raise PkmodelError(f"{source}: 'frames' must be a list")
    frames = np.zeros(len(frames_in), dtype=FRAME_DTYPE)
    where = {name: i for i, name in enumerate(DISPLAY_NAMES)}
    fields = (("camera3D", CAMERA, 3), ("playback3D", PLAYBACK, 3), ("keypoint2D", KEYPOINT, 2),
              ("score2D", SCORE, 0), ("depthConfidence", DEPTH_CONFIDENCE, 0))  # fmt: skip
    for t, frame in enumerate(frames_in):
        at = f"{source}: frame {t}"
        if not isinstance(frame, dict) or not isinstance(frame.get("joints"), list):
            raise PkmodelError(f"{at} must be an object with a 'joints' list")
        ts = frame.get("timestamp")
        if type(ts) not in (int, float) or not math.isfinite(ts):
            raise PkmodelError(f"{at}: 'timestamp' must be a finite number, got {cut(repr(ts))}")
        frames["timestamp"][t] = ts
        seen = set()
        for joint in frame["joints"]:
            name = joint.get("joint") if isinstance(joint, dict) else None
            if not isinstance(name, str) or name not in where or name in seen:
                raise PkmodelError(
                    f"{at}: every joint must be an object whose 'joint' is one of the app's "
                    f"names ({', '.join(DISPLAY_NAMES)}), each once; got {cut(repr(name))}"
                )
            seen.add(name)
            row = frames["joints"][t, where[name]]
            for key, index, count in fields:
                if key not in joint:
                    raise PkmodelError(f"{at}: joint {name} has no '{key}'")
                value = joint[key]
                try:
                    if count:
                        if not isinstance(value, list) or len(value) != count:
                            raise ValueError(value)
                        row[index] = [_json_value(v) for v in value]
                    else:
                        row[index] = _json_value(value)
                except ValueError:
                    wanted = f"a list of {count} numbers" if count else "a number"
                    raise PkmodelError(
                        f"{at}: joint {name}: '{key}' must be {wanted} (null, \"nan\" or NaN "
                        f"for none), got {cut(repr(value))}"
                    ) from None
        if len(seen) != NUM_APP_JOINTS:
            missing = [n for n in DISPLAY_NAMES if n not in seen]
            raise PkmodelError(f"{at} lacks joints {', '.join(missing)}")
    return PoseKitTake(meta, frames)


def read_posekit_json(path: str | Path) -> PoseKitTake:
    path = Path(path)
    try:
        doc = parse_json(_read_bytes(path, "take file").decode("utf-8"))
    except ValueError as e:
        raise PkmodelError(f"take file {path} cannot be read as JSON ({e})") from None
    return posekit_from_json(doc, f"take file {path}")


def read_posekit_zip(
    path: str | Path, allow_partial: bool = False, warn: Callable[[str], None] | None = None
) -> PoseKitTake:
    """The app's ZIP export, read in memory (nothing is extracted): meta.json and frames.bin
    (frames.json when frames.bin is absent). Unsafe archives are refused as in
    :func:`pkmodel.lift.take.read_take_zip`; frames.bin's declared size is checked first."""
    path = Path(path)
    source = f"take file {path}"
    with _open_zip(path) as zf:
        infos = {i.filename: i for i in _checked_members(zf, source)}
        if "meta.json" not in infos or not {"frames.bin", "frames.json"} & set(infos):
            raise PkmodelError(f"{source} is not a PoseKit ZIP (no meta.json and frames.bin)")

        def read(name: str) -> bytes:
            with _entry(zf, infos[name], source) as read_entry:
                return read_entry(infos[name].file_size)

        if "frames.bin" not in infos:
            try:
                doc = parse_json(read("frames.json").decode("utf-8"))
            except ValueError as e:
                raise PkmodelError(f"{source}: frames.json is not JSON ({e})") from None
            return posekit_from_json(doc, f"{source} (frames.json)")
        meta = _read_meta_bytes(read("meta.json"), f"{source} (meta.json)")
        frames_source = f"{source} (frames.bin)"
        frames = frames_from_bytes(read("frames.bin"), frames_source, allow_partial, warn)
        return PoseKitTake(meta, frames)


# --- writing ---------------------------------------------------------------------------------


TEXT_CHUNK_FRAMES = 64  # frames whose numbers the JSON export and the CSV turn into text at once


def export_json_text(take: PoseKitTake) -> str:
    """The app's JSON export of ``take`` (frames.json in its ZIP): Swift's pretty-printed,
    sorted-keys JSON with display names; NaN written as null (the app itself fails there)."""
    joints = take.frames["joints"]
    frames = []  # each frame's text as it sits in the "frames" list (level 2): a frame's
    # dicts and texts live only while it is written (all of them at once took ~130 kB a frame)
    for start in range(0, take.num_frames, TEXT_CHUNK_FRAMES):
        texts = swift_floats(joints[start : start + TEXT_CHUNK_FRAMES])
        for t, row in enumerate(texts, start):
            frame = {
                "timestamp": swift_double(take.frames["timestamp"][t]),
                "joints": [
                    {"joint": name, "camera3D": list(row[j, CAMERA]),
                     "playback3D": list(row[j, PLAYBACK]), "keypoint2D": list(row[j, KEYPOINT]),
                     "score2D": row[j, SCORE], "depthConfidence": row[j, DEPTH_CONFIDENCE]}
                    for j, name in enumerate(DISPLAY_NAMES)
                ],
            }  # fmt: skip
            out: list[str] = []
            _write_json(frame, 2, out)
            frames.append(_Raw("".join(out)))
    return swift_json({"meta": take.require_meta().encoder_values(), "frames": frames})


def write_posekit_folder(take: PoseKitTake, folder: str | Path) -> Path:
    """A take folder the app opens (``meta.json`` + ``frames.bin``), written into a temporary
    folder beside ``folder`` and renamed into place whole (an existing one is replaced)."""
    folder = Path(folder)
    meta = take.require_meta().to_json().encode("utf-8")
    tmp = _temporary_folder(folder)
    try:
        atomic_write_bytes(tmp / "meta.json", meta)
        atomic_write_bytes(tmp / "frames.bin", take.frames_bytes())
        atomic_replace_dir(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder


def _temporary_folder(target: Path) -> Path:
    """An empty folder beside ``target`` to write into before renaming it onto ``target``,
    with the mode a new folder gets (mkdtemp makes 0700)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{target.name[:100]}.", suffix=".tmp", dir=target.parent)
    os.chmod(tmp, default_folder_mode())
    return Path(tmp)


def write_posekit_zip(take: PoseKitTake, path: str | Path) -> Path:
    """The app's ZIP export: stored (uncompressed) meta.json, frames.bin, frames.json, dated
    with the take's createdAt (UTC; clamped to 1980-2107, the dates a ZIP holds): the same take
    gives the same bytes."""
    meta = take.require_meta()
    contents = {
        "meta.json": meta.to_json().encode("utf-8"),
        "frames.bin": take.frames_bytes(),
        "frames.json": export_json_text(take).encode("utf-8"),
    }
    when = meta.created_datetime()
    # ZIP dates run from 1980 to 2107: a take made outside them gets the nearest one
    date_time = min(max((when.year, when.month, when.day, when.hour, when.minute, when.second),
                        _ZIP_FIRST), _ZIP_LAST)  # fmt: skip
    path = Path(path)
    with atomic_open(path, "wb") as f, zipfile.ZipFile(f, "w", zipfile.ZIP_STORED) as zf:
        for name in ZIP_MEMBERS:
            info = zipfile.ZipInfo(name, date_time=date_time)
            info.compress_type = zipfile.ZIP_STORED
            info.external_attr = (stat.S_IFREG | 0o644) << 16
            zf.writestr(info, contents[name])
    return path


def write_posekit_bin(take: PoseKitTake, path: str | Path) -> Path:
    """The app's ``.bin`` export: frames.bin's bytes."""
    atomic_write_bytes(path, take.frames_bytes())
    return Path(path)


def write_posekit_json(take: PoseKitTake, path: str | Path) -> Path:
    """The app's ``.json`` export (:func:`export_json_text`)."""
    atomic_write_text(path, export_json_text(take))
    return Path(path)


# --- what the app computes -------------------------------------------------------------------


def derive_pelvis_neck(keypoints: np.ndarray, scores: np.ndarray) -> None:
    """Set pelvis and neck of normalised (T, 19, 2) keypoints and (T, 19) scores in place, in
    float32 as the app does: the midpoint of the hips / shoulders, the smaller of their
    scores."""
    half = np.float32(0.5)
    for joint, (a, b) in ((PELVIS, (_LH, _RH)), (NECK, (_LS, _RS))):
        keypoints[:, joint] = (keypoints[:, a] + keypoints[:, b]) * half
        scores[:, joint] = np.minimum(scores[:, a], scores[:, b])


def _norm(v: np.ndarray) -> np.ndarray:
    return np.sqrt((v * v).sum(axis=-1, dtype=np.float32))


def _unit(v: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return v / _norm(v)[..., None]


def _valid(p: np.ndarray) -> np.ndarray:
    return ~np.isnan(p).any(axis=-1)


def _app_axes(camera: np.ndarray, use_hips: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The app's canonicaliser in float32 (PoseCanonicalizer): its axes (T, 3, 3) as rows
    right, up, forward, and where it builds them (T,). ``use_hips`` (T,) says where the hips
    give "right" (else the shoulders). Failing comparisons with NaN pass, as in Swift: a frame
    whose "right" is NaN is built, with NaN axes."""
    eps = np.float32(1e-4)
    pelvis, neck = camera[:, PELVIS], camera[:, NECK]
    with np.errstate(invalid="ignore"):
        up = neck - pelvis
        built = _valid(pelvis) & _valid(neck) & ~(_norm(up) < eps)
        up = _unit(up)
        hips = camera[:, _RH] - camera[:, _LH]
        right = np.where(use_hips[:, None], hips, camera[:, _RS] - camera[:, _LS])
        built &= ~(_norm(right) < eps)
        right = _unit(right)
        forward = np.cross(up, right).astype(np.float32)
        built &= ~(_norm(forward) < eps)
        forward = _unit(forward)
        right = _unit(np.cross(forward, up).astype(np.float32))
    return np.stack([right, up, forward], axis=1), built


def _hips_give_right(camera: np.ndarray, scores: np.ndarray, min_score: float) -> np.ndarray:
    lh, rh = camera[:, _LH], camera[:, _RH]
    ok = _valid(lh) & _valid(rh)
    with np.errstate(invalid="ignore"):
        ok &= ~(_norm(rh - lh) < np.float32(1e-4))
    low = np.float32(min_score)
    return ok & (scores[:, _LH] >= low) & (scores[:, _RH] >= low)


def posekit_playback(
    camera: np.ndarray, scores: np.ndarray, min_score: float
) -> tuple[np.ndarray, np.ndarray]:
    """The app's playback pose (T, 19, 3) of camera-frame joints and 2D scores, in float32, and
    where its frame was built (T,). Its fault is kept: the axes right (toward the subject's
    right hip), up, forward = up x right are left-handed, a mirror image. Where no frame is
    built the camera-frame joints are the playback pose, as in the app."""
    camera = np.asarray(camera, dtype=np.float32)
    axes, built = _app_axes(camera, _hips_give_right(camera, scores, min_score))
    with np.errstate(invalid="ignore"):
        rel = camera - camera[:, PELVIS : PELVIS + 1]
        posed = np.einsum("tij,tkj->tki", axes, rel, dtype=np.float32)
    keep = built[:, None, None] & _valid(camera)[..., None]
    return np.where(keep, posed, camera).astype(np.float32), built


def _mirror_x(points: np.ndarray) -> np.ndarray:
    """x negated, NaN left as it is (bit for bit): playback <-> pkmodel's canonical frame."""
    out = np.array(points, dtype=np.float32)
    x = out[..., 0]
    out[..., 0] = np.where(np.isnan(x), x, -x)
    return out


# --- pkmodel's take <-> the app's take ----------------------------------------------------------


def posekit_to_take(
    app: PoseKitTake,
    image_size: tuple[int, int] | None = None,
    source: str | None = None,
) -> Take:
    """pkmodel's take of an app take; every value of the app's records is kept.

    - timestamps as they are; ``index`` 0..T-1;
    - 2D: x_norm, y_norm times ``image_size`` (W, H) in pixels; without it (the app records no
      image size) W = H = 1, i.e. still normalised, exactly; the app's "not found" (0.5, 0.5,
      score 0) becomes NaN with score 0; scores as they are, pelvis and neck included;
    - camera-frame joints as they are (NaN = no depth);
    - canonical = the app's playback with x negated (right-handed); frames where the app kept
      the camera-frame joints as playback (no frame built) are NaN, listed in the metadata;
      origin = the camera-frame pelvis, rotation = the app's axes (rows -right, up, forward);
    - depthConfidence and the app's meta go into ``metadata["posekit"]``.
    """
    width, height = image_size or (1, 1)
    joints = app.frames["joints"]
    n = app.num_frames
    camera = joints[..., CAMERA].copy()
    playback = joints[..., PLAYBACK]
    norm = joints[..., KEYPOINT]
    scores = joints[..., SCORE].copy()
    missing = (norm[..., 0] == 0.5) & (norm[..., 1] == 0.5) & (scores == 0)
    with np.errstate(over="ignore"):
        pixels = (norm.astype(np.float64) * np.array([width, height], dtype=np.float64)).astype(
            np.float32
        )
    pixels[missing] = np.nan
    over = np.isinf(pixels) & ~np.isinf(norm)
    if over.any():
        t, k, axis = (int(i[0]) for i in np.nonzero(over))
        raise PkmodelError(
            f"{source or 'the take'}: frame {t}: joint {DISPLAY_NAMES[k]}'s keypoint2D "
            f"{float(norm[t, k, axis]):g} times the image size {width} x {height} is beyond "
            f"what a float32 take holds (the app writes 0 to 1)"
        )
    same = (playback.view(np.uint32) == camera.view(np.uint32)).all(axis=(1, 2))
    canonical = _mirror_x(playback)
    canonical[same] = np.nan
    # the app's axes: from the hips or the shoulders, whichever reproduces its playback
    rotation = np.full((n, 3, 3), np.nan, dtype=np.float32)
    best = np.full(n, np.inf)
    rel = camera - camera[:, PELVIS : PELVIS + 1]
    for use_hips in (True, False):
        axes, built = _app_axes(camera, np.full(n, use_hips))
        with np.errstate(invalid="ignore"):
            err = np.abs(np.einsum("tij,tkj->tki", axes, rel) - playback)
        err = np.where(np.isfinite(err), err, 0.0).max(axis=(1, 2), initial=0.0)
        err = np.where(np.isfinite(axes).all(axis=(1, 2)), err, np.inf)
        better = built & ~same & (err < best)
        best = np.where(better, err, best)
        rotation[better] = axes[better] * np.array([[-1], [1], [1]], dtype=np.float32)
    origin = np.where(same[:, None], np.float32(np.nan), camera[:, PELVIS]).astype(np.float32)
    meta = app.meta
    conf = joints[..., DEPTH_CONFIDENCE]
    conf_text = conf.astype(str)
    conf_list = np.where(np.isfinite(conf), conf_text, None).tolist()  # JSON holds no NaN, inf
    metadata = {
        "format": "pkmodel-take",
        "created_by": f"pkmodel {__version__} (read from a PoseKit app take)",
        "sequence": meta.uuid if meta else None,
        "source": source,
        "model": f"{meta.model_identifier} {meta.model_version}" if meta else None,
        "units": {
            "timestamp": "s (the app's frame clock)",
            "keypoints_2d": (
                "normalised 0..1 of the sensor image (the app's take records no image size)"
                if (width, height) == (1, 1)
                else f"px of a {width} x {height} sensor image (the app's x_norm, y_norm times it)"
            ),
            "scores": "keypoint score 0..1",
            "joints_camera": "m",
            "joints_canonical": "m",
            "origin": "m",
        },
        "camera_frame": APP_CAMERA_FRAME,
        "canonical_frame": POSEKIT_CANONICAL_FRAME,
        "intrinsics": None,
        "image_size": [int(width), int(height)],
        "joint_names": list(EXTENDED_JOINT_NAMES),
        "frame_count": n,
        "fps": measured_fps(app.timestamps),
        "posekit": {
            "meta": meta.to_dict() if meta else None,
            "depth_confidence": [
                [None if v is None else float(v) for v in row] for row in conf_list
            ],
            "playback_is_camera": np.flatnonzero(same).tolist(),
        },
    }
    return Take(
        metadata=metadata,
        timestamp=app.timestamps.astype(np.float64),
        index=np.arange(n, dtype=np.uint32),
        keypoints_2d=pixels,
        scores=scores,
        joints_camera=camera,
        joints_canonical=canonical,
        origin=origin,
        rotation=rotation,
    )


def image_size_of(take: Take, image_size: tuple[int, int] | None = None) -> tuple[int, int]:
    """The image size (W, H) the take's 2D pixels are in: ``image_size`` when given, else the
    metadata's intrinsics or image_size."""
    if image_size is not None:
        return image_size
    meta = take.metadata
    intrinsics = meta.get("intrinsics")
    candidates = [meta.get("image_size")]
    if isinstance(intrinsics, dict):
        candidates.insert(0, [intrinsics.get("width"), intrinsics.get("height")])
    for size in candidates:
        valid = isinstance(size, list) and len(size) == 2
        if valid and all(type(v) in (int, float) and v > 0 for v in size):
            return size[0], size[1]
    name = meta.get("source") or meta.get("sequence") or ""
    if isinstance(intrinsics, dict):
        key = next((k for k in ("width", "height") if k not in intrinsics), None)
        if key is not None and meta.get("image_size") is None:
            raise PkmodelError(
                f"take {name}: its metadata's 'intrinsics' has no '{key}', and normalised 2D "
                "needs the image size: give it (--image-size WxH)"
            )
    raise PkmodelError(
        f"take {name} does not say the size of its image, which normalised 2D needs: give it "
        "(--image-size WxH)"
    )


def normalised_2d(take: Take, image_size: tuple[int, int] | None = None) -> np.ndarray:
    """(T, J, 2) float32: the 2D pixels divided by the image size (NaN stays NaN)."""
    width, height = image_size_of(take, image_size)
    size = np.array([width, height], dtype=np.float64)
    return (take.keypoints_2d.astype(np.float64) / size).astype(np.float32)


def stored_depth_confidence(take: Take) -> np.ndarray | None:
    """The app's depthConfidence (T, 19) kept in the metadata of a take read from the app;
    None when it is absent or does not fit the take."""
    posekit = take.metadata.get("posekit")
    rows = posekit.get("depth_confidence") if isinstance(posekit, dict) else None
    if not isinstance(rows, list) or len(rows) != take.num_frames:
        return None
    try:
        arr = np.array(
            [[np.nan if v is None else v for v in row] for row in rows], dtype=np.float64
        )
    except (TypeError, ValueError):
        return None
    if arr.shape != (take.num_frames, NUM_APP_JOINTS) and take.num_frames:
        return None
    return arr.reshape(take.num_frames, NUM_APP_JOINTS).astype(np.float32)


def _joint_rows(
    take: Take, key: str, values: dict[str, float], other: float | None
) -> np.ndarray | None:
    """(T, 19) float32 of a lifted take's metadata ``key``: one string per frame, one character
    per COCO joint, each worth ``values[character]`` (``other`` for any other character; with
    ``other`` None such a character means the rows do not fit); pelvis and neck the smaller of
    their two joints'. None when the take has no such rows that fit it."""
    rows = take.metadata.get(key)
    n = take.num_frames
    if not isinstance(rows, list) or len(rows) != n:
        return None
    if not all(isinstance(r, str) and len(r) == NUM_JOINTS for r in rows):
        return None
    if other is None and not all(set(r) <= values.keys() for r in rows):
        return None
    joints = np.array([[values.get(c, other) for c in r] for r in rows], dtype=np.float32)
    joints = joints.reshape(n, NUM_JOINTS)
    pelvis = np.minimum(joints[:, _LH], joints[:, _RH])
    neck = np.minimum(joints[:, _LS], joints[:, _RS])
    return np.concatenate([joints, pelvis[:, None], neck[:, None]], axis=1)


def skeleton_depth_confidence(take: Take) -> np.ndarray | None:
    """(T, 19) depthConfidence from a lifted take's ``depth_source`` (pkmodel.lift.skeleton):
    1 where a joint kept its measured depth, 0 where the skeleton placed it or it has no 3D;
    pelvis and neck 1 when both of their joints are measured. None when the take has no
    ``depth_source`` that fits it."""
    return _joint_rows(take, "depth_source", {"m": 1.0}, 0.0)


def level_depth_confidence(take: Take) -> np.ndarray | None:
    """(T, 19) depthConfidence from a lifted take's ``depth_level`` (pkmodel.lift.pipeline):
    the level of the depth pixels / 2, as the app computes it, 0 where a joint has no sample;
    pelvis and neck the smaller of their two joints'. None when the take has no
    ``depth_level`` that fits it."""
    return _joint_rows(take, "depth_level", {"0": 0.0, "1": 0.5, "2": 1.0, "-": 0.0}, None)


def lifted_depth_confidence(take: Take) -> np.ndarray | None:
    """(T, 19) the app's depthConfidence of a take `pkmodel lift` wrote: the depth pixels'
    level / 2 (:func:`level_depth_confidence`), and 0 where the skeleton placed the joint
    (:func:`skeleton_depth_confidence`), from whichever of the two the take records; None when
    it records neither."""
    known = [c for c in (skeleton_depth_confidence(take), level_depth_confidence(take)) if c is not None]  # fmt: skip
    return np.minimum.reduce(known) if known else None


def take_to_posekit(
    take: Take,
    image_size: tuple[int, int] | None = None,
    min_keypoint_score: float | None = None,
    uuid: str | None = None,
    created_at: float | None = None,
    notes: str | None = None,
) -> PoseKitTake:
    """The app's take of a pkmodel take, written as the app would have written it.

    - 2D: pixels / image size (``image_size_of``), clamped to [0, 1] as the app clamps; a
      joint without 2D is (0.5, 0.5) with score 0; pelvis and neck derived as the app derives
      them (:func:`derive_pelvis_neck`); a take read from the app keeps its values, derived
      joints included;
    - camera-frame joints as they are (pkmodel's pelvis and neck: midpoints in 3D);
    - playback: a take read from the app gives its playback back exactly; any other take gets
      the app's playback pose of its camera-frame joints (:func:`posekit_playback`, the app's
      left-handed mirror included, so that it plays back like the app's own takes);
    - depthConfidence: the app's, when the take was read from the app; for a take `pkmodel
      lift` wrote, the level of the depth pixels / 2 as the app computes it (1 without
      confidence maps) where a joint kept its measured depth, 0 where the skeleton placed it
      (:func:`lifted_depth_confidence`); else 1 where a joint has 3D (what the app writes
      without a confidence map), 0 elsewhere;
    - meta: the app's when the take was read from the app (frameCount and duration counted
      again); else new: a random upper-case UUID, created now, fps = the measured rate rounded
      (30 for fewer than two frames), minKeypointScore = ``min_keypoint_score`` or the lift's
      min_score (0.3 when neither is known).
    """
    names, want = list(take.joint_names), list(EXTENDED_JOINT_NAMES)
    if names != want:
        if len(names) != len(want):
            got = f"has {len(names)} joints"
        else:
            i = next(i for i, (a, b) in enumerate(zip(names, want, strict=True)) if a != b)
            got = f"names joint {i} {cut(repr(names[i]))}, not {want[i]!r}"
        raise PkmodelError(
            f"the take {got}; the app's takes hold the {NUM_APP_JOINTS} joints COCO-17, "
            "pelvis, neck, in that order"
        )
    n = take.num_frames
    posekit = take.metadata.get("posekit")
    posekit = posekit if isinstance(posekit, dict) else {}
    stored = None
    if isinstance(posekit.get("meta"), dict):
        stored = PoseKitMeta.from_json(posekit["meta"], "the take's metadata 'posekit.meta'")
    if min_keypoint_score is None:
        lift = take.metadata.get("lift")
        if stored is not None:
            min_keypoint_score = stored.min_keypoint_score
        elif isinstance(lift, dict) and type(lift.get("min_score")) in (int, float):
            min_keypoint_score = float(lift["min_score"])
        else:
            min_keypoint_score = DEFAULT_MIN_SCORE

    # A take read from the app gives back the app's values as they were; any other take is
    # written as the app would have written it.
    from_app = take.metadata.get("canonical_frame") == POSEKIT_CANONICAL_FRAME
    norm = normalised_2d(take, image_size)
    scores = np.array(take.scores, dtype=np.float32)
    missing = ~np.isfinite(norm).all(axis=-1)
    norm[missing] = 0.5
    if not from_app:
        scores[np.isnan(scores) | missing] = 0
        with np.errstate(invalid="ignore"):
            norm = np.where(norm < 0, np.float32(0), np.where(norm > 1, np.float32(1), norm))
        derive_pelvis_neck(norm, scores)

    camera = np.asarray(take.joints_camera, dtype=np.float32)
    if from_app:
        playback = _mirror_x(take.joints_canonical)
        same = posekit.get("playback_is_camera")
        for t in same if isinstance(same, list) else []:  # pkmodel's note; ignored when damaged
            if type(t) is int and 0 <= t < n:
                playback[t] = camera[t]
    else:
        playback = posekit_playback(camera, scores, min_keypoint_score)[0]
    conf = stored_depth_confidence(take)
    if conf is None:
        conf = np.isfinite(camera).all(axis=-1).astype(np.float32)
        lifted = lifted_depth_confidence(take)
        if lifted is not None:
            conf = np.minimum(conf, lifted)

    frames = np.zeros(n, dtype=FRAME_DTYPE)
    frames["timestamp"] = take.timestamp
    joints = frames["joints"]
    joints[..., CAMERA] = camera
    joints[..., PLAYBACK] = playback
    joints[..., KEYPOINT] = norm
    joints[..., SCORE] = scores
    joints[..., DEPTH_CONFIDENCE] = conf

    t = np.asarray(take.timestamp, dtype=np.float64)
    duration = max(0.0, float(t[-1] - t[0])) if n else 0.0
    if stored is not None:
        stored.frame_count, stored.duration = n, duration
        return PoseKitTake(stored, frames)
    fps = measured_fps(t)
    meta = PoseKitMeta(
        uuid=(uuid or str(uuid_module.uuid4())).upper(),
        created_at=swift_now() if created_at is None else float(created_at),
        duration=duration,
        fps=max(1, round(fps)) if fps else DEFAULT_FPS,
        device_model="pkmodel",
        ios_version="",
        model_identifier=str(take.metadata.get("model") or "pkmodel"),
        model_version=str(take.metadata.get("created_by") or f"pkmodel {__version__}"),
        min_keypoint_score=float(np.float32(min_keypoint_score)),
        frame_count=n,
        notes=notes,
    )
    return PoseKitTake(meta, frames)


# --- any take, detected ----------------------------------------------------------------------


@dataclass
class LoadedTake:
    """A take of any kind, as pkmodel's :class:`Take`; ``posekit`` is the app's take when the
    source was one; ``kind`` says what the source was."""

    take: Take
    kind: str
    source: Path
    posekit: PoseKitTake | None = None


def load_take(
    path: str | Path,
    allow_partial: bool = False,
    image_size: tuple[int, int] | None = None,
    warn: Callable[[str], None] | None = None,
) -> LoadedTake:
    """Read a take of any kind, detected from what ``path`` holds: the app's take folder,
    ``.bin`` / ``.json`` / ``.zip`` exports; pkmodel's take.bin / take.json / take.zip or a
    folder holding them (a lift output). ``image_size`` gives an app take's 2D in pixels."""
    path = Path(path)
    loaded = _load_any_take(path, allow_partial, image_size, warn)
    if loaded.take.num_frames == 0:
        raise PkmodelError(f"take {loaded.source} holds no frames")
    return loaded


# keys by which a JSON document is recognisably pkmodel's take rather than the app's export
_PKMODEL_JSON_KEYS = ("format", "version", "metadata")
# entries by which a ZIP is recognisably pkmodel's take
_PKMODEL_ZIP_ENTRIES = {"take.bin", "take.json", "metadata.json"}


def _load_any_take(
    path: Path,
    allow_partial: bool,
    image_size: tuple[int, int] | None,
    warn: Callable[[str], None] | None,
) -> LoadedTake:
    def app(posekit: PoseKitTake, kind: str) -> LoadedTake:
        return LoadedTake(posekit_to_take(posekit, image_size, str(path)), kind, path, posekit)

    if not path.exists():
        raise PkmodelError(f"take {path} does not exist")
    if path.is_file() and path.stat().st_size == 0:
        raise PkmodelError(f"take file {path} is empty (0 bytes): it holds no frames")
    if path.is_dir():
        if (path / "meta.json").exists() or (path / "frames.bin").exists():
            return app(read_posekit_folder(path, allow_partial, warn), "PoseKit app take folder")
        for name in ("take.bin", "take.zip", "take.json"):
            if (path / name).is_file():
                inner = load_take(path / name)
                return LoadedTake(inner.take, f"{inner.kind} in a lift folder", path / name)
        raise PkmodelError(
            f"take folder {path} holds no take (the app's meta.json + frames.bin, or pkmodel's "
            "take.bin, take.zip or take.json)"
        )
    suffix = path.suffix.lower()
    if suffix == ".zip":
        with _open_zip(path) as zf:
            names = set(zf.namelist())
        if "take.bin" in names:
            return LoadedTake(read_take_zip(path), "pkmodel take ZIP", path)
        if names & _PKMODEL_ZIP_ENTRIES and not {"meta.json", "frames.bin"} <= names:
            raise PkmodelError(
                f"take file {path} is a pkmodel take ZIP without its take.bin entry (it holds "
                f"{', '.join(sorted(names)) or 'nothing'})"
            )
        return app(read_posekit_zip(path, allow_partial, warn), "PoseKit app ZIP export")
    if suffix == ".bin":
        try:
            with open(path, "rb") as f:
                head = f.read(len(BINARY_MAGIC))
        except OSError as e:
            raise PkmodelError(f"take file {path} cannot be read: {e.strerror or e}") from None
        if head == BINARY_MAGIC:
            return LoadedTake(read_take_binary(path), "pkmodel take binary", path)
        if path.name == "frames.bin" and (path.parent / "meta.json").is_file():
            return app(
                read_posekit_folder(path.parent, allow_partial, warn), "PoseKit app take folder"
            )
        return app(read_posekit_bin(path, allow_partial, warn), "PoseKit app .bin export (no meta)")
    if suffix == ".json":
        if path.name == "meta.json" and (path.parent / "frames.bin").is_file():
            return app(
                read_posekit_folder(path.parent, allow_partial, warn), "PoseKit app take folder"
            )
        try:
            doc = parse_json(_read_bytes(path, "take file").decode("utf-8"))
        except ValueError as e:
            raise PkmodelError(f"take file {path} cannot be read as JSON ({e})") from None
        if (
            isinstance(doc, dict)
            and "meta" not in doc
            and any(k in doc for k in _PKMODEL_JSON_KEYS)
        ):
            return LoadedTake(take_from_json(doc, f"take file {path}"), "pkmodel take JSON", path)
        return app(posekit_from_json(doc, f"take file {path}"), "PoseKit app JSON export")
    raise PkmodelError(
        f"take file {path} is not a take: give a take folder or a .bin, .json or .zip file"
    )


def describe_take(loaded: LoadedTake) -> list[tuple[str, str]]:
    """(label, value) lines for ``pkmodel take info``."""
    take = loaded.take
    n = take.num_frames
    t = take.timestamp
    fps = measured_fps(t)
    names = take.joint_names
    schema = (
        f"{JOINT_SCHEMA}: {len(names)} joints (COCO-17, pelvis, neck)"
        if names == list(EXTENDED_JOINT_NAMES)
        else f"{len(names)} joints: {', '.join(names)}"
    )

    def per_frame(known: np.ndarray) -> str:
        if not n:
            return "-"
        count = known.sum(axis=1)
        return f"{count.mean():.1f} of {len(names)} (min {count.min()}, max {count.max()})"

    lines = [
        ("source", f"{loaded.source} ({loaded.kind})"),
        ("frames", str(n)),
        ("duration", f"{float(t[-1] - t[0]):.3f} s" if n else "-"),
        ("measured fps", f"{fps:.2f}" if fps else "-"),
        ("schema", schema),
        ("joints with 2D per frame", per_frame(np.isfinite(take.keypoints_2d).all(-1))),
        ("joints with depth per frame", per_frame(np.isfinite(take.joints_camera).all(-1))),
        (
            "frames with a canonical pose",
            str(int(np.isfinite(take.joints_canonical).any((1, 2)).sum())),
        ),
    ]
    meta = loaded.posekit.meta if loaded.posekit is not None else None
    if meta is not None:
        lines += [
            ("uuid", meta.uuid),
            ("recorded", meta.created_datetime().strftime("%Y-%m-%d %H:%M:%S UTC")),
            ("device", f"{meta.device_model}, iOS {meta.ios_version}"),
            ("model", f"{meta.model_identifier} {meta.model_version}"),
            ("target fps", str(meta.fps)),
            ("minKeypointScore", str(np.float32(meta.min_keypoint_score))),
        ]
        if meta.notes:
            lines.append(("notes", meta.notes))
    elif loaded.posekit is None:
        m = take.metadata
        lines += [(k, str(m[k])) for k in ("model", "sequence", "created_by") if m.get(k)]
    size = take.metadata.get("image_size")
    intr = take.metadata.get("intrinsics")
    if isinstance(intr, dict) and "width" in intr and "height" in intr:
        lines.append(("image size", f"{intr['width']} x {intr['height']} px"))
    elif isinstance(size, list) and size != [1, 1]:
        lines.append(("image size", f"{size[0]} x {size[1]} px"))
    return lines


# --- CSV -------------------------------------------------------------------------------------

CSV_COLUMNS = (
    "frame", "timestamp", "joint", "x_norm", "y_norm", "score", "camera_x", "camera_y",
    "camera_z", "canonical_x", "canonical_y", "canonical_z", "depth_confidence",
)  # fmt: skip


def _texts(values: np.ndarray) -> np.ndarray:
    """float32 values as their shortest text; NaN as an empty cell."""
    values = np.asarray(values, dtype=np.float32)
    return np.where(np.isnan(values), "", values.astype(str))


def take_csv_text(take: Take, image_size: tuple[int, int] | None = None) -> str:
    """One row per frame and joint (:data:`CSV_COLUMNS`): normalised 2D, score, camera-frame
    and canonical 3D (metres; pkmodel's right-handed canonical frame), the app's depth
    confidence (empty where the take does not record it). Missing values are empty cells."""
    n, j = take.num_frames, len(take.joint_names)
    norm = normalised_2d(take, image_size)
    conf = None
    if j == NUM_APP_JOINTS:
        conf = stored_depth_confidence(take)
        conf = lifted_depth_confidence(take) if conf is None else conf
    no_conf = np.full((TEXT_CHUNK_FRAMES, j), "", dtype=object)
    parts = [",".join(CSV_COLUMNS)]
    # a chunk of frames at a time: the texts of a whole take took ~40 kB a frame
    for start in range(0, n, TEXT_CHUNK_FRAMES):
        rows = slice(start, min(start + TEXT_CHUNK_FRAMES, n))
        norm_text, score = _texts(norm[rows]), _texts(take.scores[rows])
        camera, canonical = _texts(take.joints_camera[rows]), _texts(take.joints_canonical[rows])
        conf_text = _texts(conf[rows]) if conf is not None else no_conf
        lines = []
        for i, t in enumerate(range(rows.start, rows.stop)):
            stamp = repr(float(take.timestamp[t]))
            for k, name in enumerate(take.joint_names):
                lines.append(",".join((str(t), stamp, name, *norm_text[i, k], score[i, k],
                                       *camera[i, k], *canonical[i, k], conf_text[i, k])))  # fmt: skip
        parts.append("\n".join(lines))
    return "\n".join(parts) + "\n"


def write_take_csv(take: Take, path: str | Path, image_size: tuple[int, int] | None = None) -> Path:
    atomic_write_text(path, take_csv_text(take, image_size))
    return Path(path)


# --- writing any kind ------------------------------------------------------------------------


def write_pkmodel_take(take: Take, dst: str | Path) -> Path:
    """pkmodel's take: one file by ``dst``'s suffix (.json, .bin, .zip), else a folder with all
    three (written beside it and renamed into place whole)."""
    dst = Path(dst)
    writers = {".json": write_take_json, ".bin": write_take_binary, ".zip": write_take_zip}
    if dst.suffix.lower() in writers:
        writers[dst.suffix.lower()](take, dst)
        return dst
    tmp = _temporary_folder(dst)
    try:
        write_take(take, tmp)
        atomic_replace_dir(tmp, dst)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dst


def write_posekit(app: PoseKitTake, dst: str | Path) -> Path:
    """The app's take by ``dst``'s suffix: ``.bin`` / ``.json`` exports, else a take folder."""
    dst = Path(dst)
    suffix = dst.suffix.lower()
    if suffix == ".bin":
        return write_posekit_bin(app, dst)
    if suffix == ".json":
        return write_posekit_json(app, dst)
    return write_posekit_folder(app, dst)


def write_posekit_takes(take_bin: Path, folder: Path, name: str) -> dict[str, Path]:
    """Recording ``name``'s take in the app's format, from pkmodel's binary take ``take_bin``:
    FOLDER/posekit_take/ (meta.json, frames.bin) and FOLDER/posekit_take.zip."""
    app = take_to_posekit(
        read_take_binary(take_bin), notes=f"lifted by pkmodel {__version__} from {name}"
    )
    return {
        "posekit": write_posekit_folder(app, folder / "posekit_take"),
        "posekit_zip": write_posekit_zip(app, folder / "posekit_take.zip"),
    }
