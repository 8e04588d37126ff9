"""The files of two iPhone RGB-D capture apps, Stray Scanner and Record3D, and of pkmodel's
ground-truth side file: their names, and the text and byte codecs that the readers
(``pkmodel.lift.capture_apps``) and make-synthetic's writers
(``pkmodel.data.synthetic.capture_layouts``) share, so that both follow one description.
docs/3d.md ("Capture apps") names the public sources each fact comes from.

Decoders check what they read and raise PkmodelError with one sentence naming ``where``.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np

from pkmodel.common.camera import MAX_COORDINATE, MIN_FOCAL_PX
from pkmodel.common.errors import PkmodelError, cut
from pkmodel.common.jsontext import parse_json
from pkmodel.common.skeleton import JOINT_NAMES, NUM_JOINTS

# --- Stray Scanner: a folder per recording ---------------------------------------------------
STRAY_VIDEO = "rgb.mp4"
STRAY_DEPTH_DIR = "depth"  # NNNNNN.png: uint16 millimetres (.npy: uint16, app versions < 2022)
STRAY_CONFIDENCE_DIR = "confidence"  # NNNNNN.png: uint8 0 / 1 / 2
STRAY_CAMERA_MATRIX = "camera_matrix.csv"
STRAY_ODOMETRY = "odometry.csv"
STRAY_ODOMETRY_COLUMNS = ("timestamp", "frame", "x", "y", "z", "qx", "qy", "qz", "qw")
STRAY_FRAME_NAME = "{:06d}"
STRAY_DEPTH_UNIT_M = 0.001
STRAY_FILES = (STRAY_VIDEO, STRAY_CAMERA_MATRIX, STRAY_ODOMETRY)  # any of them marks a folder

# --- Record3D: one ZIP (.r3d) per recording ------------------------------------------------
R3D_SUFFIX = ".r3d"
R3D_METADATA = "metadata"  # JSON
R3D_FRAME_DIR = "rgbd"  # N.jpg, N.depth (LZFSE float32 metres), N.conf (LZFSE uint8)
R3D_IDENTITY_POSE = (0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0)  # qx, qy, qz, qw, px, py, pz

# --- pkmodel's ground truth beside (Stray) or inside (.r3d) a synthetic recording ------------
GROUND_TRUTH_FILE = "pkmodel_ground_truth.json"
GROUND_TRUTH_FORMAT = "pkmodel-ground-truth"
GROUND_TRUTH_VERSION = 1

CONFIDENCE_LEVELS = (0, 1, 2)  # ARKit's low, medium, high


def is_finite_number(value: Any) -> bool:
    """A finite JSON number: true and false (ints to Python), strings, lists and null are not,
    nor NaN and Infinity (which Python's JSON reader lets through) or an integer too large
    for a float."""
    if type(value) not in (int, float):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


# --- camera_matrix.csv -----------------------------------------------------------------------


def camera_matrix_text(fx: float, fy: float, cx: float, cy: float) -> str:
    """K row by row, ', ' between numbers and no newline at the end, as the app writes it."""
    rows = ((fx, 0.0, cx), (0.0, fy, cy), (0.0, 0.0, 1.0))
    return "\n".join(", ".join(repr(float(v)) for v in row) for row in rows)


def parse_camera_matrix(text: str, where: str) -> tuple[float, float, float, float]:
    """(fx, fy, cx, cy) of a camera_matrix.csv: three lines of three comma-separated numbers,
    the last line 0, 0, 1 (a transposed matrix is refused, not guessed)."""
    lines = [line for line in text.splitlines() if line.strip()]
    try:
        rows = [[float(v) for v in line.split(",")] for line in lines]
    except ValueError:
        rows = []
    if len(rows) != 3 or any(len(r) != 3 for r in rows):
        raise PkmodelError(
            f"{where} must hold a 3 x 3 camera matrix: three lines of three comma-separated numbers"
        )
    k = np.array(rows)
    if not np.isfinite(k).all():
        raise PkmodelError(f"{where} holds a number that is not finite")
    if not np.array_equal(k[2], [0.0, 0.0, 1.0]):
        raise PkmodelError(
            f"{where}: the third row must be 0, 0, 1 (K row by row: fx, 0, cx / 0, fy, cy / "
            f"0, 0, 1), it is {', '.join(f'{v:g}' for v in k[2])}"
        )
    if min(k[0, 0], k[1, 1]) < MIN_FOCAL_PX:
        raise PkmodelError(
            f"{where}: the focal lengths fx and fy must be at least {MIN_FOCAL_PX:g} pixel, "
            f"they are {k[0, 0]:g} and {k[1, 1]:g}"
        )
    return float(k[0, 0]), float(k[1, 1]), float(k[0, 2]), float(k[1, 2])


# --- odometry.csv ----------------------------------------------------------------------------


def quaternion_xyzw(rotation: np.ndarray) -> np.ndarray:
    """The unit quaternion (x, y, z, w; w >= 0) of a 3 x 3 rotation matrix."""
    r = np.asarray(rotation, dtype=np.float64)
    # Shepperd's method: start from the largest of w, x, y, z for accuracy.
    trace = np.trace(r)
    diagonal = np.diag(r)
    big = int(np.argmax([trace, *diagonal]))
    if big == 0:
        w = math.sqrt(max(1.0 + trace, 0.0)) / 2
        q = [(r[2, 1] - r[1, 2]) / (4 * w), (r[0, 2] - r[2, 0]) / (4 * w),
             (r[1, 0] - r[0, 1]) / (4 * w), w]  # fmt: skip
    else:
        i = big - 1
        j, k = (i + 1) % 3, (i + 2) % 3
        v = math.sqrt(max(1.0 + r[i, i] - r[j, j] - r[k, k], 0.0)) / 2
        q = [0.0, 0.0, 0.0, (r[k, j] - r[j, k]) / (4 * v)]
        q[i] = v
        q[j] = (r[j, i] + r[i, j]) / (4 * v)
        q[k] = (r[k, i] + r[i, k]) / (4 * v)
    out = np.array(q)
    out /= np.linalg.norm(out)
    return -out if out[3] < 0 else out


def odometry_text(timestamps: np.ndarray, poses: np.ndarray) -> str:
    """The header line and one line per frame: timestamp, frame number (6 digits), position
    x, y, z and quaternion qx, qy, qz, qw of ``poses`` (T, 7)."""
    lines = [", ".join(STRAY_ODOMETRY_COLUMNS)]
    for i, (t, pose) in enumerate(zip(timestamps, poses, strict=True)):
        values = ", ".join(repr(float(v)) for v in pose)
        lines.append(f"{float(t)!r}, {STRAY_FRAME_NAME.format(i)}, {values}")
    return "\n".join(lines) + "\n"


def quaternion_matrix(q: np.ndarray) -> np.ndarray:
    """The rotations (..., 3, 3) of quaternions ``q`` (..., 4: x, y, z, w), normalised."""
    q = np.asarray(q, dtype=np.float64)
    x, y, z, w = np.moveaxis(q / np.linalg.norm(q, axis=-1, keepdims=True), -1, 0)
    return np.stack([
        np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)], -1),
        np.stack([2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)], -1),
        np.stack([2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)], -1),
    ], -2)  # fmt: skip


def odometry_rotations(text: str) -> np.ndarray | None:
    """The camera-to-world rotations (N, 3, 3) of an odometry.csv's rows (qx, qy, qz, qw: the
    app writes ARKit's camera transform turned to OpenCV's camera axes, in ARKit's world, whose
    y is up), for what they say about which way is down; None when any row's quaternion is not
    four finite numbers of length near 1 (the poses are then not used; the file is still read
    for its timestamps by :func:`parse_odometry`)."""
    rows = []
    for line in text.splitlines()[1:]:
        if not line.strip():
            continue
        fields = line.split(",")
        try:
            rows.append([float(f) for f in fields[-4:]])
        except ValueError:
            return None
    q = np.array(rows, dtype=np.float64).reshape(-1, 4)
    if not len(q) or not np.isfinite(q).all():
        return None
    if (np.abs(np.linalg.norm(q, axis=-1) - 1) > 0.01).any():
        return None
    return quaternion_matrix(q)


def parse_odometry(text: str, where: str) -> tuple[np.ndarray, list[str]]:
    """Timestamps (seconds) and frame numbers (as written) of an odometry.csv; the pose
    columns are counted, not read."""
    lines = text.splitlines()
    header = tuple(h.strip() for h in lines[0].split(",")) if lines else ()
    if header != STRAY_ODOMETRY_COLUMNS:
        raise PkmodelError(
            f"{where} must start with the header line '{', '.join(STRAY_ODOMETRY_COLUMNS)}' "
            f"(Stray Scanner before August 2021 wrote no timestamps; such recordings are not "
            f"read)"
        )
    stamps: list[float] = []
    frames: list[str] = []
    for n, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        fields = [f.strip() for f in line.split(",")]
        if len(fields) != len(STRAY_ODOMETRY_COLUMNS):
            raise PkmodelError(
                f"{where} line {n} must be {len(STRAY_ODOMETRY_COLUMNS)} comma-separated values "
                f"(a timestamp in seconds, a frame number, then the pose), it has {len(fields)}"
            )
        try:
            stamp = float(fields[0])
        except ValueError:
            stamp = math.nan
        if not math.isfinite(stamp):
            raise PkmodelError(
                f"{where} line {n}: the timestamp '{cut(fields[0])}' must be a finite number of seconds"
            )
        if not fields[1].isdigit():
            raise PkmodelError(
                f"{where} line {n}: the frame number '{cut(fields[1])}' must be a whole number from 0"
            )
        stamps.append(stamp)
        frames.append(fields[1])
    return np.array(stamps, dtype=np.float64), frames


# --- Record3D --------------------------------------------------------------------------------


def r3d_k(fx: float, fy: float, cx: float, cy: float) -> list[float]:
    """metadata's 'K': the 3 x 3 matrix column by column (fx, 0, 0, 0, fy, 0, cx, cy, 1)."""
    return [float(fx), 0.0, 0.0, 0.0, float(fy), 0.0, float(cx), float(cy), 1.0]


def parse_r3d_k(value: Any, where: str) -> tuple[float, float, float, float]:
    """(fx, fy, cx, cy) of metadata's 'K' (nine numbers, column-major: the last of each column
    third is the matrix's last row 0, 0, 1)."""
    if not isinstance(value, list) or len(value) != 9:
        got = f"{len(value)} values" if isinstance(value, list) else type(value).__name__
        raise PkmodelError(f"{where}: 'K' must be 9 numbers (a 3 x 3 matrix), got {got}")
    bad = next((i for i, v in enumerate(value) if not is_finite_number(v)), None)
    if bad is not None:
        raise PkmodelError(
            f"{where}: 'K' must be 9 finite numbers (a 3 x 3 matrix); entry {bad + 1} is "
            f"{cut(repr(value[bad]))}"
        )
    k = np.array(value, dtype=np.float64).reshape(3, 3).T  # stored column by column
    if not np.array_equal(k[2], [0.0, 0.0, 1.0]):
        raise PkmodelError(
            f"{where}: 'K' must be column-major, ending each column with the row 0, 0, 1 "
            f"(fx, 0, 0, 0, fy, 0, cx, cy, 1); its entries 3, 6, 9 are "
            f"{', '.join(f'{v:g}' for v in k[2])}"
        )
    if min(k[0, 0], k[1, 1]) < MIN_FOCAL_PX:
        raise PkmodelError(
            f"{where}: 'K' has the focal lengths {k[0, 0]:g} and {k[1, 1]:g}; each must be at "
            f"least {MIN_FOCAL_PX:g} pixel"
        )
    return float(k[0, 0]), float(k[1, 1]), float(k[0, 2]), float(k[1, 2])


# LZFSE streams are blocks, each opening with a magic and its decoded size (little-endian
# uint32), up to an end-of-stream marker (lzfse/lzfse, src/lzfse_internal.h)
LZFSE_END = b"bvx$"  # end of stream, nothing after the magic
LZFSE_RAW = b"bvx-"  # 8-byte header, then n_raw_bytes stored bytes
LZFSE_LZVN = b"bvxn"  # 12-byte header (n_raw_bytes, n_payload_bytes), then the payload
LZFSE_V1 = b"bvx1"  # 772-byte header (payload sizes at bytes 20 and 24), then the payloads
LZFSE_V2 = b"bvx2"  # header of the size packed into its third 64-bit field, then the payloads
LZFSE_V1_HEADER_BYTES = 772  # sizeof(lzfse_compressed_block_header_v1)
LZFSE_V2_FIXED_BYTES = 32  # magic, n_raw_bytes, three packed 64-bit fields


def _bits(value: int, offset: int, count: int) -> int:
    return (value >> offset) & ((1 << count) - 1)


def lzfse_block_sizes(blob: bytes) -> list[tuple[bytes, int, int]] | None:
    """The blocks of an LZFSE stream as (magic, decoded bytes, stored bytes with the header),
    read from the block headers alone, without decoding anything: so that a blob's decoded
    size can be checked before it is inflated. None when the headers do not chain to the
    end-of-stream marker (a damaged stream, or another format)."""
    out: list[tuple[bytes, int, int]] = []
    pos, end = 0, len(blob)

    def u32(at: int) -> int:
        return int.from_bytes(blob[at : at + 4], "little")

    def u64(at: int) -> int:
        return int.from_bytes(blob[at : at + 8], "little")

    while pos + 4 <= end:
        magic = bytes(blob[pos : pos + 4])
        if magic == LZFSE_END:
            return out
        if pos + 8 > end:
            return None
        raw = u32(pos + 4)
        if magic == LZFSE_RAW:
            size = 8 + raw
        elif magic == LZFSE_LZVN and pos + 12 <= end:
            size = 12 + u32(pos + 8)
        elif magic == LZFSE_V1 and pos + 28 <= end:
            size = LZFSE_V1_HEADER_BYTES + u32(pos + 20) + u32(pos + 24)
        elif magic == LZFSE_V2 and pos + LZFSE_V2_FIXED_BYTES <= end:
            literal, lmd, header = u64(pos + 8), u64(pos + 16), u64(pos + 24)
            header_bytes = _bits(header, 0, 32)
            if header_bytes < LZFSE_V2_FIXED_BYTES:
                return None
            size = header_bytes + _bits(literal, 20, 20) + _bits(lmd, 40, 20)
        else:
            return None
        out.append((magic, raw, size))
        pos += size
    return None


def compress_lzfse(data: bytes) -> bytes:
    import lzfse

    return lzfse.compress(data)


def decompress_array(blob: bytes, dtype: str, shape: tuple[int, int], where: str) -> np.ndarray:
    """An LZFSE blob -> a (height, width) array of ``dtype`` stored row by row; the byte count
    must be the shape's. The size its blocks declare is checked before anything is decoded, so
    a blob that would inflate to gigabytes is refused without being inflated."""
    import lzfse

    damaged = PkmodelError(f"{where} does not decompress as LZFSE (damaged or another format)")
    want = int(np.prod(shape)) * np.dtype(dtype).itemsize

    def wrong_size(count: int) -> PkmodelError:
        return PkmodelError(
            f"{where} holds {count} bytes once decompressed; {shape[1]} x {shape[0]} "
            f"{np.dtype(dtype).name} values (metadata's size) need {want}"
        )

    blocks = lzfse_block_sizes(blob)
    if blocks is None:
        raise damaged
    declared = sum(raw for _, raw, _ in blocks)
    if declared != want:
        raise wrong_size(declared)
    try:
        raw = lzfse.decompress(blob)
    except lzfse.error:
        raise damaged from None
    if len(raw) != want:
        raise wrong_size(len(raw))
    return np.frombuffer(raw, dtype=dtype).reshape(shape)


# --- the ground-truth side file --------------------------------------------------------------


def ground_truth_json(frames: list[dict | None], width: int, height: int) -> str:
    """The side file of one recording: per frame the annotated person's ``keypoints`` (17 x
    (x, y, visibility), COCO pixels of the colour frames), ``keypoints_3d`` (17 x 3 metres,
    camera frame) and ``limb_radius_m`` (17), or null when nobody is in view."""
    doc = {
        "format": GROUND_TRUTH_FORMAT,
        "version": GROUND_TRUTH_VERSION,
        "image_size": [int(width), int(height)],
        "joint_names": list(JOINT_NAMES),
        "frames": frames,
    }
    return json.dumps(doc, separators=(",", ":"), allow_nan=False) + "\n"


def _array(entry: dict, key: str, shape: tuple[int, ...], where: str) -> np.ndarray:
    try:
        a = np.array(entry[key], dtype=np.float64)
    except (KeyError, TypeError, ValueError):
        a = None
    size = int(np.prod(shape))
    if a is None or a.size != size or not (np.abs(a) <= MAX_COORDINATE).all():
        raise PkmodelError(
            f"{where}: '{key}' must be {size} finite numbers within +-{MAX_COORDINATE:g}"
        )
    return a.reshape(shape)


def parse_ground_truth(
    text: str, where: str, frames: int, width: int, height: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(keypoints_2d (T, 17, 3), joints_3d (T, 17, 3), limb radius (T, 17) or None) of the
    first ``frames`` frames, NaN where a frame has no person."""
    try:
        doc = parse_json(text)
    except ValueError as e:
        raise PkmodelError(f"{where} is not valid JSON ({e})") from None
    if not isinstance(doc, dict) or doc.get("format") != GROUND_TRUTH_FORMAT:
        raise PkmodelError(f"{where} is not a pkmodel ground-truth file")
    if doc.get("version") != GROUND_TRUTH_VERSION:
        raise PkmodelError(
            f"{where} has version {cut(repr(doc.get('version')))}; this pkmodel reads 1"
        )
    if doc.get("image_size") != [width, height]:
        raise PkmodelError(
            f"{where} labels {cut(str(doc.get('image_size')))} pixel images but the colour frames are "
            f"{width} x {height}"
        )
    entries = doc.get("frames")
    if not isinstance(entries, list) or len(entries) < frames:
        count = len(entries) if isinstance(entries, list) else 0
        raise PkmodelError(f"{where} labels {count} frames; the recording has {frames}")
    kp2d = np.full((frames, NUM_JOINTS, 3), np.nan)
    kp3d = np.full((frames, NUM_JOINTS, 3), np.nan)
    radius = np.full((frames, NUM_JOINTS), np.nan)
    for t, entry in enumerate(entries[:frames]):
        if entry is None:
            continue
        at = f"{where} (frame {t})"
        if not isinstance(entry, dict):
            raise PkmodelError(f"{at} must be an object or null")
        kp2d[t] = _array(entry, "keypoints", (NUM_JOINTS, 3), at)
        kp3d[t] = _array(entry, "keypoints_3d", (NUM_JOINTS, 3), at)
        if "limb_radius_m" in entry:
            radius[t] = _array(entry, "limb_radius_m", (NUM_JOINTS,), at)
            if (radius[t] < 0).any():
                raise PkmodelError(f"{at}: 'limb_radius_m' holds a negative radius")
    return kp2d, kp3d, None if np.isnan(radius).all() else radius
