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
from pkmodel.common.errors import PkmodelError


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

    def __len__(self) -> int:
        return len(self.color_files)

    def load_color(self, i: int) -> np.ndarray:
        """Frame ``i`` as an HxWx3 uint8 RGB array."""
        import cv2

        image = cv2.imread(str(self.color_files[i]), cv2.IMREAD_COLOR)
        if image is None:
            raise PkmodelError(f"colour image {self.color_files[i]} cannot be read")
        return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)

    def load_depth(self, i: int) -> np.ndarray:
        """Depth of frame ``i`` in metres (float32, HxW; 0 or NaN = no measurement)."""
        path = self.depth_files[i]
        if path.suffix.lower() == ".npy":
            try:
                raw = np.load(path, allow_pickle=False)
            except (OSError, ValueError, EOFError) as e:
                raise PkmodelError(
                    f"depth file {path} cannot be read as a NumPy array ({e})"
                ) from None
        else:
            import cv2

            raw = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
            if raw is None:
                raise PkmodelError(f"depth image {path} cannot be read")
        check_depth_array(path, raw.dtype, raw.shape)
        return raw.astype(np.float32) * np.float32(self.depth_unit_m)

    def load_confidence(self, i: int) -> np.ndarray | None:
        if self.confidence_files is None:
            return None
        import cv2

        path = self.confidence_files[i]
        conf = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if conf is None:
            what = "cannot be read" if path.is_file() else "is missing"
            raise PkmodelError(f"confidence image {path} {what}")
        if conf.ndim != 2:
            raise PkmodelError(
                f"confidence image {path} must be one channel, it has shape {conf.shape}"
            )
        return conf


def check_timestamps(t: np.ndarray, where: str) -> None:
    if t.size == 0:
        raise PkmodelError(f"{where} lists no frames")
    if not np.isfinite(t).all() or (np.diff(t) <= 0).any():
        raise PkmodelError(f"{where}: frame timestamps must be finite and strictly increasing")


def check_depth_array(path: Path, dtype: np.dtype, shape: tuple[int, ...]) -> None:
    """Depth is one channel of 16-bit (or wider) integers or floats."""
    if len(shape) != 2:
        raise PkmodelError(f"depth file {path} must have one channel, it has shape {shape}")
    if dtype.kind not in "uif":
        raise PkmodelError(f"depth file {path} holds {dtype} values; depth must be 16-bit or float")
    if dtype.kind in "ui" and dtype.itemsize < 2:
        raise PkmodelError(f"depth file {path} is 8-bit; depth must be 16-bit or float")
