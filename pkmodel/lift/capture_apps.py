"""Recordings of two iPhone RGB-D capture apps for `pkmodel lift`: Stray Scanner folders and
Record3D ``.r3d`` files (or an unzipped ``.r3d`` folder). docs/3d.md ("Capture apps") says what
is read from each file and which public sources describe it; the byte codecs are in
:mod:`pkmodel.common.capture_formats`, shared with make-synthetic's writers.

Each recording becomes an :class:`RgbdSequence` whose frames load one at a time. What is
cheap is checked when the recording is read: the camera matrix, the timestamps, the frame
counts, and the first frame's colour, depth and confidence, so a malformed file is one sentence
naming it before anything is lifted; later frames are checked as they load. Streams whose frame
counts differ by at most ``MAX_FRAME_SLACK`` are cut to the frames they all have, with a
warning; a larger gap is refused. A Stray frame is paired by its number, and frames the app
wrote no depth map for are left out.
A synthetic recording carries pkmodel's ground truth in ``pkmodel_ground_truth.json``.
"""

from __future__ import annotations

import dataclasses
import os
import re
import warnings
import zipfile
import zlib
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pkmodel.common.camera import Intrinsics
from pkmodel.common.capture_formats import (
    GROUND_TRUTH_FILE,
    R3D_FRAME_DIR,
    R3D_METADATA,
    STRAY_CAMERA_MATRIX,
    STRAY_CONFIDENCE_DIR,
    STRAY_DEPTH_DIR,
    STRAY_DEPTH_UNIT_M,
    STRAY_FILES,
    STRAY_ODOMETRY,
    STRAY_VIDEO,
    decompress_array,
    is_finite_number,
    odometry_rotations,
    parse_camera_matrix,
    parse_ground_truth,
    parse_odometry,
    parse_r3d_k,
)
from pkmodel.common.errors import PkmodelError, cut
from pkmodel.common.images import opencv_path
from pkmodel.common.jsontext import parse_json
from pkmodel.lift.recording import (
    GroundTruth,
    RgbdSequence,
    check_levels,
    check_timestamps,
    decode_color,
    load_npy,
)

Warn = Callable[[str], None]

MAX_FRAME_SLACK = 2  # frames by which two streams of one recording may differ
VIDEO_CACHE_FRAMES = 4  # decoded video frames kept (lift reads each frame twice, in order)
MAX_R3D_ENTRY_BYTES = 256 << 20  # one entry (a frame's JPEG or blob, the metadata) at most
MAX_R3D_RATIO = 1100  # deflate cannot compress more than about 1032:1: more is a forged size


def _warn_default(message: str) -> None:
    warnings.warn(message, stacklevel=3)


def common_frames(counts: dict[str, int], where: str, warn: Warn) -> int:
    """How many frames every stream of ``counts`` (name -> frames) has: the smallest count when
    they differ by at most MAX_FRAME_SLACK (with a warning), else an error."""
    low, high = min(counts.values()), max(counts.values())
    listing = ", ".join(f"{name} {n}" for name, n in counts.items())
    if low == 0:
        raise PkmodelError(f"{where} holds no complete frame ({listing})")
    if high - low > MAX_FRAME_SLACK:
        raise PkmodelError(
            f"{where}: the frame counts differ by more than {MAX_FRAME_SLACK} ({listing}); "
            f"the streams do not belong together"
        )
    if high != low:
        warn(f"{where}: frame counts differ ({listing}); lifting the first {low} frames")
    return low


def _read_text(path: Path, what: str) -> str:
    if not path.is_file():
        raise PkmodelError(f"{path.parent} has no {path.name} ({what})")
    try:
        return path.read_text(encoding="utf-8-sig")  # a BOM (an editor's) is not text
    except (OSError, UnicodeDecodeError) as e:
        raise PkmodelError(f"{path} cannot be read as text ({e})") from None


def _intrinsics_for(
    k: tuple[float, float, float, float], size: tuple[int, int], frame: tuple[int, int], where: str
) -> Intrinsics:
    """K given for ``size`` (width, height), described at the colour frames' ``frame`` size:
    scaled when the aspect ratio agrees, refused when it does not."""
    intr = Intrinsics(*k, width=size[0], height=size[1])
    if size == frame:
        return intr
    if abs(size[0] * frame[1] - size[1] * frame[0]) > 0.01 * size[0] * frame[1]:
        raise PkmodelError(
            f"{where}: the intrinsics are for {size[0]} x {size[1]} pixels but the colour frames "
            f"are {frame[0]} x {frame[1]}, another aspect ratio"
        )
    return intr.scaled_to(*frame)


def _ground_truth(text: str | None, where: str, frames: int, size: tuple[int, int]):
    if text is None:
        return None
    return GroundTruth(*parse_ground_truth(text, where, frames, *size))


# --- Stray Scanner ---------------------------------------------------------------------------


def is_stray_folder(folder: Path) -> bool:
    """A folder with any of Stray Scanner's own files (rgb.mp4, camera_matrix.csv,
    odometry.csv): the others are then required, so a missing one is named."""
    return any((folder / name).is_file() for name in STRAY_FILES)


class VideoFrames:
    """The frames of one video, decoded in order: reading frame i after frame i - 1 costs one
    decode; an earlier frame re-opens the video and a later one skips ahead. The last few
    decoded frames are kept."""

    def __init__(self, path: Path, count: int):
        self.path = path
        self.count = count
        self._capture: Any = None
        self._next = 0
        self._cache: OrderedDict[int, np.ndarray] = OrderedDict()

    def _open(self) -> None:
        if self._capture is not None:
            self._capture.release()
        self._capture = stored_video(self.path)
        self._next = 0
        if not self._capture.isOpened():
            raise PkmodelError(f"video {self.path} cannot be opened any more")

    def frame(self, i: int) -> np.ndarray:
        """Frame ``i`` as HxWx3 uint8 RGB (a new array each call)."""
        import cv2

        if not 0 <= i < self.count:
            raise IndexError(i)
        if i not in self._cache:
            if self._capture is None or i < self._next:
                self._open()
            while self._next < i:
                if not self._capture.grab():
                    raise PkmodelError(f"video {self.path} ends after {self._next} frames")
                self._next += 1
            ok, bgr = self._capture.read()
            if not ok or bgr is None:
                raise PkmodelError(f"video {self.path}: frame {i} cannot be decoded")
            self._next += 1
            self._cache[i] = bgr
            while len(self._cache) > VIDEO_CACHE_FRAMES:
                self._cache.popitem(last=False)
        return cv2.cvtColor(self._cache[i], cv2.COLOR_BGR2RGB)


# FFmpeg's MP4 reader plays a video as its edit list says; this reads every frame stored.
_FFMPEG_OPTIONS = "OPENCV_FFMPEG_CAPTURE_OPTIONS"
_EVERY_STORED_FRAME = "ignore_editlist;1"


def stored_video(path: Path) -> Any:
    """An OpenCV capture of ``path`` that gives every frame as stored:
    - unturned: OpenCV otherwise turns the frames as the container's display matrix asks,
      while the depth maps and the camera matrix stay in the sensor's orientation;
    - from the first frame written: Stray Scanner stamps its first frame 1/60 s before the
      time its AVAssetWriter session starts at (``DatasetEncoder.swift``: ``currentFrame``
      starts at -1; ``VideoEncoder.swift``: ``startSession(atSourceTime: .zero)``), and such
      a frame is written but left out of playback by the file's edit list. Played back,
      video frame i would be the picture of depth map i + 1 and the last frame would be
      missing, so the edit list is ignored (FFmpeg's ``ignore_editlist``)."""
    import cv2

    before = os.environ.get(_FFMPEG_OPTIONS)
    os.environ[_FFMPEG_OPTIONS] = (
        f"{before}|{_EVERY_STORED_FRAME}" if before else _EVERY_STORED_FRAME
    )
    try:
        capture = cv2.VideoCapture(opencv_path(path))  # OpenCV reads the options here
    finally:
        if before is None:
            del os.environ[_FFMPEG_OPTIONS]
        else:
            os.environ[_FFMPEG_OPTIONS] = before
    capture.set(cv2.CAP_PROP_ORIENTATION_AUTO, 0)
    return capture


def _open_video(path: Path) -> tuple[int, np.ndarray]:
    """(frame count the container declares, first frame as RGB, as stored) of a video file."""
    import cv2

    if not path.is_file():
        raise PkmodelError(f"{path.parent} has no {path.name} (the colour video)")
    capture = stored_video(path)
    try:
        count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) if capture.isOpened() else 0
        ok, bgr = capture.read() if count > 0 else (False, None)
    finally:
        capture.release()
    if not ok or bgr is None:
        raise PkmodelError(f"{path} cannot be read as a video (damaged, empty or not a video)")
    return count, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def _numbered(folder: Path, suffixes: tuple[str, ...]) -> list[Path]:
    """Files ``NNNNNN.suffix`` of ``folder`` in frame order (the first suffix found wins)."""
    if not folder.is_dir():
        return []
    for suffix in suffixes:
        files = [p for p in folder.iterdir() if p.suffix.lower() == suffix and p.stem.isdigit()]
        if files:
            return sorted(files, key=lambda p: int(p.stem))
    return []


@dataclass
class StrayRecording(RgbdSequence):
    """A Stray Scanner folder: colour from rgb.mp4, depth / confidence from numbered PNGs.
    Frame i is the app's frame ``frame_numbers[i]``: its video frame, depth map and
    odometry row carry that number (frames without a depth map are not lifted)."""

    video: VideoFrames | None = None
    frame_numbers: list[int] = field(default_factory=list)

    def load_color(self, i: int) -> np.ndarray:
        assert self.video is not None
        return self.video.frame(self.frame_numbers[i])

    def load_depth(self, i: int) -> np.ndarray:
        if self.depth_files[i].suffix.lower() == ".npy":  # every frame, not just the first
            _check_millimetre_npy(self.depth_files[i])
        return super().load_depth(i)


def read_stray_folder(folder: Path, warn: Warn | None = None) -> StrayRecording:
    """A Stray Scanner recording: rgb.mp4, depth/NNNNNN.png (uint16 mm; .npy in app versions
    before 2022), optional confidence/NNNNNN.png, camera_matrix.csv and odometry.csv (frame
    timestamps), plus pkmodel_ground_truth.json when make-synthetic wrote it."""
    folder = Path(folder)
    warn = warn or _warn_default
    matrix_path, odometry_path = folder / STRAY_CAMERA_MATRIX, folder / STRAY_ODOMETRY
    k = parse_camera_matrix(_read_text(matrix_path, "the camera intrinsics"), str(matrix_path))
    odometry = _read_text(odometry_path, "the frame timestamps")
    stamps, written = parse_odometry(odometry, str(odometry_path))
    check_timestamps(stamps, str(odometry_path))
    numbers = [int(n) for n in written]
    for row in range(1, len(numbers)):
        if numbers[row] <= numbers[row - 1]:
            raise PkmodelError(
                f"{odometry_path}: row {row + 1} is frame {written[row]} after frame "
                f"{written[row - 1]}; the app numbers its rows 0, 1, 2, ..."
            )
    depth = _numbered(folder / STRAY_DEPTH_DIR, (".png", ".npy"))
    if not depth:
        raise PkmodelError(f"{folder / STRAY_DEPTH_DIR} holds no depth maps (NNNNNN.png)")
    if depth[0].suffix.lower() == ".npy":
        _check_millimetre_npy(depth[0])
    conf = None
    if (folder / STRAY_CONFIDENCE_DIR).is_dir():
        conf = _numbered(folder / STRAY_CONFIDENCE_DIR, (".png",))
        if len(conf) != len(depth):
            raise PkmodelError(
                f"{folder}: {len(conf)} confidence maps in {STRAY_CONFIDENCE_DIR}/ for "
                f"{len(depth)} depth maps in {STRAY_DEPTH_DIR}/ (one of each per frame)"
            )
        for c, d in zip(conf, depth, strict=True):
            if int(c.stem) != int(d.stem):
                raise PkmodelError(
                    f"{folder}: {d.name} in depth/ has no {d.stem}.png in confidence/"
                )
    rowed = set(numbers)
    for d in depth:
        if int(d.stem) not in rowed:
            raise PkmodelError(
                f"{folder / STRAY_DEPTH_DIR}: depth map {d.name} has no row of frame "
                f"{int(d.stem):06d} in {STRAY_ODOMETRY} (the app writes a row for every frame)"
            )
    video_path = folder / STRAY_VIDEO
    video_count, first = _open_video(video_path)
    # the app writes a video frame and an odometry row for every frame, a depth map (and
    # its confidence) only when ARKit delivered depth: frames are paired by their number
    rows = common_frames(
        {STRAY_VIDEO: video_count, f"{STRAY_ODOMETRY} rows": len(numbers)}, str(folder), warn
    )
    by_number = {int(d.stem): i for i, d in enumerate(depth)}
    kept = [row for row in range(rows) if numbers[row] in by_number and numbers[row] < video_count]
    if not kept:
        raise PkmodelError(
            f"{folder}: none of the {rows} frames of {STRAY_VIDEO} has its depth map in "
            f"{STRAY_DEPTH_DIR}/ (depth maps {depth[0].name} .. {depth[-1].name})"
        )
    if len(kept) < rows:
        warn(
            f"{folder}: {rows - len(kept)} of {rows} frames have no depth map in "
            f"{STRAY_DEPTH_DIR}/ (the app writes none where ARKit gave no depth); lifting the "
            f"{len(kept)} that have one"
        )
    frames = len(kept)
    kept_numbers = [numbers[row] for row in kept]
    timestamps = stamps[kept]
    height, width = first.shape[:2]
    intr = Intrinsics(*k, width=width, height=height)
    if not (0 <= intr.cx < width and 0 <= intr.cy < height):
        raise PkmodelError(
            f"{matrix_path}: the principal point ({intr.cx:g}, {intr.cy:g}) lies outside the "
            f"{width} x {height} video; the matrix must be for the video's resolution"
        )
    gt_path = folder / GROUND_TRUTH_FILE
    gt_text = _read_text(gt_path, "ground truth") if gt_path.is_file() else None
    truth = _ground_truth(gt_text, str(gt_path), kept_numbers[-1] + 1, (width, height))
    if truth is not None:
        truth = GroundTruth(
            *(None if a is None else a[kept_numbers] for a in dataclasses.astuple(truth))
        )
    seq = StrayRecording(
        name=folder.name,
        color_files=[video_path] * frames,
        depth_files=[depth[by_number[n]] for n in kept_numbers],
        timestamps=timestamps,
        intrinsics=intr,
        depth_unit_m=STRAY_DEPTH_UNIT_M,
        confidence_files=None if conf is None else [conf[by_number[n]] for n in kept_numbers],
        ground_truth=truth,
        source=folder,
        extra={"format": "stray"},
        video=VideoFrames(video_path, video_count),
        frame_numbers=kept_numbers,
    )
    rotations = odometry_rotations(odometry)
    if rotations is not None and len(rotations) >= rows:
        seq.camera_rotations = rotations[kept]
    else:
        warn(
            f"{odometry_path}: a row's camera rotation (qx, qy, qz, qw) is not four finite "
            f"numbers of unit length; lift.rotate = auto asks the network which way is up"
        )
    seq.load_depth(0)
    seq.load_confidence(0)
    return seq


def _check_millimetre_npy(path: Path) -> None:
    """Stray Scanner's .npy depth (app versions before 2022) is uint16 millimetres."""
    array = load_npy(path, mmap=True)
    if array.dtype.kind not in "ui" or array.ndim != 2:
        raise PkmodelError(
            f"depth file {path} holds {array.dtype} values in {array.ndim} dimensions; Stray "
            f"Scanner's .npy depth is one channel of integer millimetres"
        )


# --- Record3D --------------------------------------------------------------------------------

_FRAME_ENTRY = re.compile(rf"{R3D_FRAME_DIR}/(\d+)\.(jpg|depth|conf)")


def is_r3d_folder(folder: Path) -> bool:
    """An unzipped .r3d: a ``metadata`` file beside an ``rgbd/`` folder."""
    return (folder / R3D_METADATA).is_file() and (folder / R3D_FRAME_DIR).is_dir()


# What zipfile raises for a damaged entry: a bad CRC or header (BadZipFile), a broken deflate
# stream (zlib.error, EOFError), an unknown method (NotImplementedError), encryption.
_ENTRY_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError)


class R3dEntries:
    """The entries of a .r3d (a ZIP, opened once and kept open) or of its unzipped folder."""

    def __init__(self, source: Path):
        self.source = source
        self._zip: zipfile.ZipFile | None = None
        if source.is_dir():
            self.names = {
                p.relative_to(source).as_posix() for p in source.rglob("*") if p.is_file()
            }
        else:
            try:
                self._zip = zipfile.ZipFile(source)
            except (OSError, zipfile.BadZipFile) as e:
                raise PkmodelError(
                    f"{source} is not a Record3D recording: not a readable ZIP archive ({e})"
                ) from None
            self.names = set(self._zip.namelist())

    def path(self, name: str) -> Path:
        """How messages name an entry: SOURCE/NAME."""
        return self.source / name

    def read(self, name: str) -> bytes:
        where = self.path(name)
        if self._zip is None:
            try:
                return where.read_bytes()
            except OSError as e:
                raise PkmodelError(f"{where} cannot be read ({e})") from None
        info = self._zip.getinfo(name)
        if info.file_size > MAX_R3D_ENTRY_BYTES or info.file_size > MAX_R3D_RATIO * max(
            info.compress_size, 1
        ):
            raise PkmodelError(
                f"{where} is refused: it declares {info.file_size} bytes from "
                f"{info.compress_size} compressed (at most {MAX_R3D_ENTRY_BYTES} bytes and "
                f"{MAX_R3D_RATIO}:1)"
            )
        try:
            return self._zip.read(info)
        except _ENTRY_ERRORS as e:
            raise PkmodelError(f"{where} is corrupt ({e})") from None


def _pixels(meta: dict, key: str, where: str) -> int:
    if key not in meta:
        raise PkmodelError(f"{where} has no '{key}'")
    value = meta[key]
    if not is_finite_number(value) or not float(value).is_integer() or value <= 0:
        raise PkmodelError(
            f"{where}: '{key}' must be a whole number of pixels, got {cut(repr(value))}"
        )
    return int(value)


def _frame_count(indices: set[int], kind: str, where: str) -> int:
    """Frames 0 .. n-1 must all be there."""
    missing = next((i for i in range(len(indices)) if i not in indices), None)
    if missing is not None:
        raise PkmodelError(
            f"{where} has {R3D_FRAME_DIR}/{max(indices)}.{kind} but no "
            f"{R3D_FRAME_DIR}/{missing}.{kind} (frames are numbered from 0)"
        )
    return len(indices)


def _r3d_timestamps(meta: dict, frames: int, where: str) -> np.ndarray:
    """metadata's frameTimestamps (seconds) when present, else frame / fps."""
    stamps = meta.get("frameTimestamps")
    if stamps is not None:
        if not isinstance(stamps, list) or len(stamps) < frames:
            count = len(stamps) if isinstance(stamps, list) else type(stamps).__name__
            raise PkmodelError(
                f"{where}: 'frameTimestamps' must list a time per frame ({frames}), got {count}"
            )
        bad = next((i for i, v in enumerate(stamps) if not is_finite_number(v)), None)
        if bad is not None:
            raise PkmodelError(
                f"{where}: 'frameTimestamps' must be finite numbers (seconds), one per frame; "
                f"entry {bad} is {cut(repr(stamps[bad]))}"
            )
        t = np.array(stamps[:frames], dtype=np.float64)
    else:
        fps = meta.get("fps")
        if not is_finite_number(fps) or fps <= 0:
            raise PkmodelError(
                f"{where} has neither 'frameTimestamps' nor a positive 'fps' (got {cut(repr(fps))})"
            )
        t = np.arange(frames) / float(fps)
    check_timestamps(t, where)
    return t


@dataclass
class R3dRecording(RgbdSequence):
    """A Record3D recording: per frame rgbd/N.jpg, rgbd/N.depth (LZFSE float32 metres) and
    rgbd/N.conf (LZFSE uint8 levels) inside the .r3d, depth of ``depth_shape`` (rows, cols)."""

    entries: R3dEntries | None = None
    depth_shape: tuple[int, int] = (0, 0)

    def _read(self, path: Path) -> bytes:
        assert self.entries is not None
        return self.entries.read(path.relative_to(self.entries.source).as_posix())

    def load_color(self, i: int) -> np.ndarray:
        return decode_color(self._read(self.color_files[i]), f"colour image {self.color_files[i]}")

    def load_depth(self, i: int) -> np.ndarray:
        path = self.depth_files[i]
        depth = decompress_array(self._read(path), "<f4", self.depth_shape, str(path))
        # Record3D marks missing depth with NaN or 0; pkmodel's "no depth" is 0.
        return np.where(np.isfinite(depth) & (depth > 0), depth, 0).astype(np.float32)

    def load_confidence(self, i: int) -> np.ndarray | None:
        if self.confidence_files is None:
            return None
        path = self.confidence_files[i]
        conf = decompress_array(self._read(path), "u1", self.depth_shape, str(path))
        return check_levels(conf.copy(), str(path))


def read_r3d(source: Path, warn: Warn | None = None) -> R3dRecording:
    """A Record3D recording: a .r3d ZIP (or its unzipped folder) holding the JSON ``metadata``
    (K column-major, w, h, dw, dh, fps, frameTimestamps) and per frame rgbd/N.jpg, N.depth and
    N.conf, plus pkmodel_ground_truth.json when make-synthetic wrote it."""
    source = Path(source)
    warn = warn or _warn_default
    entries = R3dEntries(source)
    meta_where = f"{entries.path(R3D_METADATA)}"
    if R3D_METADATA not in entries.names:
        raise PkmodelError(
            f"{source} has no '{R3D_METADATA}' entry (Record3D's JSON with K, w, h, dw, dh)"
        )
    try:
        meta = parse_json(entries.read(R3D_METADATA).decode("utf-8"))
    except ValueError as e:
        raise PkmodelError(f"{meta_where} is not valid JSON ({e})") from None
    if not isinstance(meta, dict):
        raise PkmodelError(f"{meta_where} must hold a JSON object")
    if "K" not in meta:
        raise PkmodelError(f"{meta_where} has no 'K' (the intrinsic matrix)")
    k = parse_r3d_k(meta["K"], meta_where)
    size = (_pixels(meta, "w", meta_where), _pixels(meta, "h", meta_where))
    if "dw" not in meta and "dh" not in meta:
        # Record3D's files from before its separate depth size held the depth map at w x h
        # (how Record3D's own offline Unity demo reads every file: depth and colour w x h)
        depth_shape = (size[1], size[0])
    else:
        depth_shape = (_pixels(meta, "dh", meta_where), _pixels(meta, "dw", meta_where))
    if not (0 <= k[2] < size[0] and 0 <= k[3] < size[1]):
        raise PkmodelError(
            f"{meta_where}: 'K' puts the principal point ({k[2]:g}, {k[3]:g}) outside the "
            f"{size[0]} x {size[1]} frame of 'w' and 'h' it is for"
        )

    found: dict[str, set[int]] = {"jpg": set(), "depth": set(), "conf": set()}
    for name in entries.names:
        m = _FRAME_ENTRY.fullmatch(name)
        if m:
            found[m[2]].add(int(m[1]))
    counts = {kind: _frame_count(found[kind], kind, str(source)) for kind in found}
    if counts["conf"] and counts["conf"] != counts["depth"]:
        raise PkmodelError(
            f"{source}: {counts['conf']} confidence maps (.conf) for {counts['depth']} depth "
            f"maps (.depth); one of each per frame"
        )
    frames = common_frames(
        {f"{R3D_FRAME_DIR}/*.jpg": counts["jpg"], f"{R3D_FRAME_DIR}/*.depth": counts["depth"]},
        str(source),
        warn,
    )
    timestamps = _r3d_timestamps(meta, frames, meta_where)

    def names(kind: str) -> list[Path]:
        return [entries.path(f"{R3D_FRAME_DIR}/{i}.{kind}") for i in range(frames)]

    seq = R3dRecording(
        name=source.stem if source.is_file() else source.name,
        color_files=names("jpg"),
        depth_files=names("depth"),
        timestamps=timestamps,
        intrinsics=Intrinsics(*k, width=size[0], height=size[1]),
        depth_unit_m=1.0,
        confidence_files=names("conf") if counts["conf"] else None,
        source=source,
        extra={"format": "record3d"},
        entries=entries,
        depth_shape=depth_shape,
    )
    first = seq.load_color(0)
    frame = (first.shape[1], first.shape[0])
    seq.intrinsics = _intrinsics_for(k, size, frame, meta_where)
    seq.load_depth(0)
    seq.load_confidence(0)
    if GROUND_TRUTH_FILE in entries.names:
        text = entries.read(GROUND_TRUTH_FILE).decode("utf-8", errors="replace")
        seq.ground_truth = _ground_truth(text, str(entries.path(GROUND_TRUTH_FILE)), frames, frame)
    return seq
