"""One RGB-D recording as `pkmodel lift` sees it, whatever wrote it: aligned colour / depth
frames, timestamps, the camera, and ground truth when the files carry it.

Readers (``rgbd`` for pkmodel's and plain folders, ``capture_apps`` for the iPhone apps) build
an :class:`RgbdSequence`; frames are loaded one at a time (a long recording never sits in
memory whole) and depth comes back in metres (float32, 0 = no depth).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pkmodel.common.camera import Intrinsics
from pkmodel.common.capture_formats import CONFIDENCE_LEVELS
from pkmodel.common.errors import PkmodelError
from pkmodel.common.images import jpeg_cut_short, opencv_path


@dataclass
class GroundTruth:
    """Per-frame labels of a synthetic sequence (NaN where a frame has no person)."""

    keypoints_2d: np.ndarray  # (T, K, 3) image pixels + COCO visibility 0/1/2
    joints_3d: np.ndarray  # (T, K, 3) metres, camera frame (x right, y down, z forward)
    limb_radius: np.ndarray | None = None  # (T, K) metres, surface-to-joint distance


@dataclass
class RgbdSequence:
    """One recording: aligned colour / depth files, timestamps and the camera."""

    name: str
    color_files: list[Path]
    depth_files: list[Path]
    timestamps: np.ndarray  # (T,) seconds, strictly increasing
    intrinsics: Intrinsics  # for the colour image's resolution
    depth_unit_m: float  # metres per stored depth unit (1 / depth scale)
    confidence_files: list[Path] | None = None
    ground_truth: GroundTruth | None = None
    source: Path | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    # (T, 3, 3) camera (OpenCV axes) to a world whose y is up, where the recording has poses
    camera_rotations: np.ndarray | None = None
    # frame 0's depth map size (rows, cols), once a map has loaded: every map must have it
    _map_shape: tuple[int, ...] | None = field(default=None, init=False, repr=False, compare=False)

    def __len__(self) -> int:
        return len(self.color_files)

    def load_color(self, i: int) -> np.ndarray:
        """Frame ``i`` as an HxWx3 uint8 RGB array."""
        path = self.color_files[i]
        try:
            data = path.read_bytes()
        except OSError as e:
            raise PkmodelError(f"colour image {path} cannot be read ({e.strerror})") from None
        return decode_color(data, f"colour image {path}")

    def load_depth(self, i: int) -> np.ndarray:
        """Depth of frame ``i`` in metres (float32, HxW; 0 or NaN = no measurement)."""
        path = self.depth_files[i]
        if path.suffix.lower() == ".npy":
            raw = load_npy(path)
        else:
            import cv2

            raw = cv2.imread(opencv_path(path), cv2.IMREAD_UNCHANGED)
            if raw is None:
                raise PkmodelError(f"depth image {path} cannot be read")
        check_depth_array(path, raw.dtype, raw.shape)
        what = "depth file" if path.suffix.lower() == ".npy" else "depth image"
        if i == 0:  # frame 0's size is the recording's
            self._map_shape = tuple(raw.shape)
        self._check_map_size(raw.shape, f"{what} {path}")
        return raw.astype(np.float32) * np.float32(self.depth_unit_m)

    def load_confidence(self, i: int) -> np.ndarray | None:
        if self.confidence_files is None:
            return None
        import cv2

        path = self.confidence_files[i]
        conf = cv2.imread(opencv_path(path), cv2.IMREAD_UNCHANGED)
        if conf is None:
            what = "cannot be read" if path.is_file() else "is missing"
            raise PkmodelError(f"confidence image {path} {what}")
        if conf.ndim != 2:
            raise PkmodelError(
                f"confidence image {path} must be one channel, it has shape {conf.shape}"
            )
        self._check_map_size(conf.shape, f"confidence image {path}")
        return check_levels(conf, f"confidence image {path}")

    def _check_map_size(self, shape: tuple[int, ...], what: str) -> None:
        """A take's depth and confidence maps all have frame 0's depth size (a chunk of frames
        is sampled as one array): checked as each map loads, against frame 0's, which is read
        first when another map comes before it."""
        if self._map_shape is None:
            self.load_depth(0)
        assert self._map_shape is not None
        if tuple(shape) != self._map_shape:
            (h, w), (h0, w0) = shape, self._map_shape
            raise PkmodelError(
                f"{what} is {w} x {h} but frame 0's depth map ({self.depth_files[0].name}) is "
                f"{w0} x {h0}; every depth and confidence map of a recording has one size"
            )


def decode_color(data: bytes, what: str) -> np.ndarray:
    """An encoded colour frame (JPEG, PNG, ...) -> HxWx3 uint8 RGB as stored (an EXIF
    orientation is not applied); ``what`` names it in the error sentence. A JPEG cut short is
    refused: OpenCV would fill its missing rows with grey and the network would see a person
    half gone."""
    import cv2

    if jpeg_cut_short(data):
        raise PkmodelError(f"{what} is cut short (its JPEG data ends before the end of the image)")
    # the pixels as stored: depth and intrinsics are the sensor's, and an EXIF orientation
    # (a phone's photo) would turn the picture against them
    flags = cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION
    bgr = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), flags) if data else None
    if bgr is None:
        raise PkmodelError(f"{what} cannot be decoded (empty, damaged or not an image)")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def check_timestamps(t: np.ndarray, where: str) -> None:
    if t.size == 0:
        raise PkmodelError(f"{where} lists no frames")
    if not np.isfinite(t).all() or (np.diff(t) <= 0).any():
        raise PkmodelError(f"{where}: frame timestamps must be finite and strictly increasing")


def check_levels(conf: np.ndarray, where: str) -> np.ndarray:
    """A confidence map: one channel of ARKit's 8-bit levels 0 (low), 1 and 2 (high)."""
    if conf.dtype != np.uint8 or conf.ndim != 2:
        raise PkmodelError(f"{where} must be one channel of 8-bit confidence levels")
    top = int(conf.max(initial=0))
    if top > max(CONFIDENCE_LEVELS):
        raise PkmodelError(
            f"{where} holds the value {top}; confidence levels are 0 (low), 1 and 2 (high)"
        )
    return conf


def load_npy(path: Path, mmap: bool = False) -> np.ndarray:
    """One NumPy array from a ``.npy`` file (memory-mapped with ``mmap``: the header alone is
    read); a file that holds something else is one sentence."""
    try:
        array = np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except (OSError, ValueError, EOFError) as e:
        raise PkmodelError(f"depth file {path} cannot be read as a NumPy array ({e})") from None
    if not isinstance(array, np.ndarray):  # an .npz archive under an .npy name
        raise PkmodelError(f"depth file {path} is not a single NumPy array (an .npz archive?)")
    return array


def check_depth_array(path: Path, dtype: np.dtype, shape: tuple[int, ...]) -> None:
    """Depth is one channel of 16-bit (or wider) integers or floats."""
    if len(shape) != 2:
        raise PkmodelError(f"depth file {path} must have one channel, it has shape {shape}")
    if 0 in shape:
        raise PkmodelError(f"depth file {path} holds an empty array ({shape[1]} x {shape[0]})")
    if dtype.kind not in "uif":
        raise PkmodelError(f"depth file {path} holds {dtype} values; depth must be 16-bit or float")
    if dtype.kind in "ui" and dtype.itemsize < 2:
        raise PkmodelError(f"depth file {path} is 8-bit; depth must be 16-bit or float")
