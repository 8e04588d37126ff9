"""make-synthetic's clips written the way two iPhone capture apps write their recordings
(``synthetic.layout``): a Stray Scanner folder or a Record3D ``.r3d`` file, each with pkmodel's
ground truth beside the app's own files (``pkmodel_ground_truth.json``), so that `pkmodel lift`
can read and evaluate them like the pkmodel layout. The byte formats themselves are in
:mod:`pkmodel.common.capture_formats`, which the readers share.

A clip is written frame by frame, in order, as its frames arrive, and appears whole or not at
all: a Stray folder is built under a temporary name beside its final one and renamed into place;
a ``.r3d`` is written to a temporary file that is renamed over the target.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import stat
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pkmodel.common.atomic import atomic_open, atomic_replace_dir, default_folder_mode
from pkmodel.common.capture_formats import (
    GROUND_TRUTH_FILE,
    R3D_FRAME_DIR,
    R3D_IDENTITY_POSE,
    R3D_METADATA,
    STRAY_CAMERA_MATRIX,
    STRAY_CONFIDENCE_DIR,
    STRAY_DEPTH_DIR,
    STRAY_FRAME_NAME,
    STRAY_ODOMETRY,
    STRAY_VIDEO,
    camera_matrix_text,
    compress_lzfse,
    ground_truth_json,
    odometry_text,
    quaternion_xyzw,
    r3d_k,
)
from pkmodel.common.errors import PkmodelError
from pkmodel.common.images import opencv_path
from pkmodel.data.synthetic.scene import DEPTH_UNIT_M

LAYOUTS = ("pkmodel", "stray", "record3d")
# ARKit's camera looks down -z with y up; pkmodel's (OpenCV's) down +z with y down.
_ARKIT_FROM_OPENCV = np.diag([1.0, -1.0, -1.0])


@dataclass
class ClipFrame:
    """One frame of an app-layout clip, encoded by a worker, in the app's own encodings."""

    rgb: np.ndarray | None  # stray: HxWx3 uint8 RGB, encoded into the video in frame order
    color: bytes | None  # record3d: the JPEG (rgbd/N.jpg)
    depth: bytes  # stray: PNG of uint16 millimetres; record3d: LZFSE of float32 metres
    confidence: bytes | None  # lidar only: PNG (stray) or LZFSE (record3d) of uint8 levels
    depth_shape: tuple[int, int]  # (rows, columns) of the depth map


def _png(array: np.ndarray) -> bytes:
    import cv2

    ok, png = cv2.imencode(".png", array, [cv2.IMWRITE_PNG_COMPRESSION, 1])
    if not ok:  # pragma: no cover - OpenCV encoders do not fail on valid arrays
        raise RuntimeError("could not encode a PNG")
    return png.tobytes()


def encode_frame(
    layout: str,
    rgb: np.ndarray,
    jpeg: bytes,
    depth_mm: np.ndarray,
    confidence: np.ndarray | None,
) -> ClipFrame:
    """A rendered frame (RGB, its JPEG, uint16 millimetre depth with 0 = none, uint8
    confidence or None) in ``layout``'s encodings."""
    shape = (int(depth_mm.shape[0]), int(depth_mm.shape[1]))
    if layout == "stray":
        conf = None if confidence is None else _png(confidence)
        return ClipFrame(rgb, None, _png(depth_mm), conf, shape)
    # The same float32 metres that pkmodel's reader makes of the millimetre PNG.
    metres = depth_mm.astype("<f4") * np.float32(DEPTH_UNIT_M)
    conf = None if confidence is None else compress_lzfse(confidence.astype(np.uint8).tobytes())
    return ClipFrame(None, jpeg, compress_lzfse(metres.tobytes()), conf, shape)


@dataclass(frozen=True)
class FrameInfo:
    """What the clip's files say about a frame besides its pixels."""

    timestamp: float  # seconds
    intrinsics: dict[str, float]  # fx, fy, cx, cy at the colour resolution
    world_to_camera: dict[str, list]  # R (3 x 3), t (3): X_cam = R X_world + t
    label: dict | None  # keypoints (51), keypoints_3d (17 x 3), limb_radius_m (17), or None


def camera_to_world(world_to_camera: dict[str, list]) -> tuple[np.ndarray, np.ndarray]:
    """(rotation, position) of the camera in the world from X_cam = R X_world + t."""
    r = np.asarray(world_to_camera["R"], dtype=np.float64)
    t = np.asarray(world_to_camera["t"], dtype=np.float64)
    return r.T, -r.T @ t


def check_layout(layout: str, width: int, height: int) -> None:
    """Refuse what a layout cannot hold before anything is written."""
    if layout not in LAYOUTS:
        raise PkmodelError(f"synthetic.layout '{layout}' is not one of {', '.join(LAYOUTS)}")
    if layout == "stray" and (width % 2 or height % 2):
        raise PkmodelError(
            f"synthetic.layout stray writes an MPEG-4 video, whose width and height must be "
            f"even; the images are {width} x {height}"
        )


class StrayClipWriter:
    """A Stray Scanner folder: rgb.mp4, depth/NNNNNN.png (uint16 mm), confidence/NNNNNN.png
    (lidar only), camera_matrix.csv, odometry.csv and pkmodel_ground_truth.json."""

    def __init__(self, folder: Path, width: int, height: int, fps: float):
        import cv2

        self.folder = Path(folder)
        self.folder.parent.mkdir(parents=True, exist_ok=True)
        self.size = (width, height)
        self._tmp = Path(
            tempfile.mkdtemp(prefix=f".{self.folder.name}.", suffix=".tmp", dir=self.folder.parent)
        )
        os.chmod(self._tmp, default_folder_mode())  # mkdtemp makes 0700
        self._frames: list[FrameInfo] = []
        self._video = cv2.VideoWriter(
            opencv_path(self._tmp / STRAY_VIDEO),
            cv2.VideoWriter_fourcc(*"mp4v"),
            float(fps),
            self.size,
        )
        if not self._video.isOpened():
            self.abort()
            raise PkmodelError(f"OpenCV cannot write an MPEG-4 video ({self.folder / STRAY_VIDEO})")

    def add(self, frame: ClipFrame, info: FrameInfo) -> None:
        import cv2

        assert frame.rgb is not None
        stem = STRAY_FRAME_NAME.format(len(self._frames))
        self._video.write(cv2.cvtColor(frame.rgb, cv2.COLOR_RGB2BGR))
        (self._tmp / STRAY_DEPTH_DIR).mkdir(exist_ok=True)
        (self._tmp / STRAY_DEPTH_DIR / f"{stem}.png").write_bytes(frame.depth)
        if frame.confidence is not None:
            (self._tmp / STRAY_CONFIDENCE_DIR).mkdir(exist_ok=True)
            (self._tmp / STRAY_CONFIDENCE_DIR / f"{stem}.png").write_bytes(frame.confidence)
        self._frames.append(info)

    def finish(self) -> None:
        """Close the video, write the text files and put the folder in place."""
        import cv2

        self._video.release()
        video = cv2.VideoCapture(opencv_path(self._tmp / STRAY_VIDEO))
        count = int(video.get(cv2.CAP_PROP_FRAME_COUNT))
        video.release()
        if count != len(self._frames):
            self.abort()
            raise PkmodelError(
                f"OpenCV wrote {count} of {len(self._frames)} frames into {self.folder / STRAY_VIDEO}"
            )
        k = self._frames[0].intrinsics
        text = camera_matrix_text(k["fx"], k["fy"], k["cx"], k["cy"])
        (self._tmp / STRAY_CAMERA_MATRIX).write_text(text, encoding="utf-8")
        poses = []
        for info in self._frames:
            # The app writes the camera's pose with pkmodel's (OpenCV's) camera axes.
            rotation, position = camera_to_world(info.world_to_camera)
            poses.append([*position, *quaternion_xyzw(rotation)])
        stamps = np.array([info.timestamp for info in self._frames])
        text = odometry_text(stamps, np.array(poses))
        (self._tmp / STRAY_ODOMETRY).write_text(text, encoding="utf-8")
        labels = [info.label for info in self._frames]
        text = ground_truth_json(labels, *self.size)
        (self._tmp / GROUND_TRUTH_FILE).write_text(text, encoding="utf-8")
        atomic_replace_dir(self._tmp, self.folder)

    def abort(self) -> None:
        self._video.release()
        shutil.rmtree(self._tmp, ignore_errors=True)


def _entry(name: str, data: bytes, zf: zipfile.ZipFile, compress: bool) -> None:
    """One ZIP entry with a fixed date (same seed, same bytes)."""
    info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
    info.compress_type = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    info.external_attr = (stat.S_IFREG | 0o644) << 16
    zf.writestr(info, data)


class R3dClipWriter:
    """A Record3D .r3d: rgbd/N.jpg, rgbd/N.depth (LZFSE float32 metres), rgbd/N.conf (LZFSE
    uint8, lidar only), the JSON metadata and pkmodel_ground_truth.json, in one ZIP."""

    def __init__(self, path: Path, width: int, height: int, fps: float):
        self.path = Path(path)
        self.size = (width, height)
        self.fps = fps
        self._frames: list[FrameInfo] = []
        self._depth_shape: tuple[int, int] | None = None
        self._stack = contextlib.ExitStack()
        self._zip = zipfile.ZipFile(self._stack.enter_context(atomic_open(self.path, "wb")), "w")
        self._stack.enter_context(self._zip)

    def add(self, frame: ClipFrame, info: FrameInfo) -> None:
        assert frame.color is not None
        i = len(self._frames)
        self._depth_shape = self._depth_shape or frame.depth_shape
        _entry(f"{R3D_FRAME_DIR}/{i}.jpg", frame.color, self._zip, compress=False)
        _entry(f"{R3D_FRAME_DIR}/{i}.depth", frame.depth, self._zip, compress=False)
        if frame.confidence is not None:
            _entry(f"{R3D_FRAME_DIR}/{i}.conf", frame.confidence, self._zip, compress=False)
        self._frames.append(info)

    def finish(self) -> None:
        """Write the metadata and ground truth and put the file in place."""
        assert self._depth_shape is not None
        k = self._frames[0].intrinsics
        poses = []
        for info in self._frames:
            rotation, position = camera_to_world(info.world_to_camera)
            poses.append([*quaternion_xyzw(rotation @ _ARKIT_FROM_OPENCV), *position])
        fps = int(self.fps) if float(self.fps).is_integer() else float(self.fps)
        meta = {
            "w": self.size[0],
            "h": self.size[1],
            "dw": int(self._depth_shape[1]),
            "dh": int(self._depth_shape[0]),
            "fps": fps,
            "K": r3d_k(k["fx"], k["fy"], k["cx"], k["cy"]),
            "initPose": list(R3D_IDENTITY_POSE),
            "poses": np.asarray(poses).tolist(),
            "frameTimestamps": [info.timestamp for info in self._frames],
        }
        text = json.dumps(meta, separators=(",", ":"), allow_nan=False)
        _entry(R3D_METADATA, text.encode(), self._zip, compress=True)
        gt = ground_truth_json([info.label for info in self._frames], *self.size)
        _entry(GROUND_TRUTH_FILE, gt.encode(), self._zip, compress=True)
        self._stack.close()

    def abort(self) -> None:
        stop = RuntimeError("make-synthetic stopped")
        with contextlib.suppress(RuntimeError):
            self._stack.__exit__(RuntimeError, stop, None)
