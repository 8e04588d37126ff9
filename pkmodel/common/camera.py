"""The pinhole camera model the whole toolkit shares: intrinsics, projection, back-projection.

Coordinate conventions:

- Keypoints use pkmodel's continuous pixel coordinates (pixel (i, j) covers [i, i+1) x [j, j+1),
  its center is at (i + 0.5, j + 0.5)), so changing resolution is a multiplication.
- Intrinsics (fx, fy, cx, cy) use the pinhole / OpenCV convention that TUM, ARKit and OpenCV
  publish: the center of pixel (i, j) is at (i, j). A keypoint (u, v) is at pinhole coordinate
  (u - 0.5, v - 0.5).
- Camera frame: x right, y down, z forward (the optical axis), metres.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Offset between pkmodel pixel coordinates (centers at +0.5) and pinhole coordinates.
PIXEL_CENTER = 0.5

# Bounds every reader holds a recording's numbers to (naming the file): a focal length under
# one pixel, a coordinate (pixels or metres) beyond a million or a depth unit outside 1 nm to
# 1 km belongs to no camera or scene, and nothing computed from numbers inside them overflows
# the float32 of a take.
MIN_FOCAL_PX = 1.0
MAX_COORDINATE = 1e6
DEPTH_UNIT_RANGE_M = (1e-9, 1e3)


@dataclass(frozen=True)
class Intrinsics:
    """Pinhole intrinsics for an image of ``width`` x ``height`` pixels (OpenCV convention)."""

    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int

    def scaled_to(self, width: int, height: int) -> Intrinsics:
        """The same camera described at another resolution (e.g. the depth map's).

        Focal lengths scale with the resolution; the principal point scales about the image's
        corner, which in pinhole coordinates is at -0.5: cx' = (cx + 0.5) * s - 0.5.
        """
        sx, sy = width / self.width, height / self.height
        return Intrinsics(
            fx=self.fx * sx,
            fy=self.fy * sy,
            cx=(self.cx + PIXEL_CENTER) * sx - PIXEL_CENTER,
            cy=(self.cy + PIXEL_CENTER) * sy - PIXEL_CENTER,
            width=int(width),
            height=int(height),
        )

    def to_dict(self) -> dict[str, float | int]:
        return {
            "fx": float(self.fx),
            "fy": float(self.fy),
            "cx": float(self.cx),
            "cy": float(self.cy),
            "width": int(self.width),
            "height": int(self.height),
        }


def backproject(points: np.ndarray, z: np.ndarray, intrinsics: Intrinsics) -> np.ndarray:
    """Pixels (..., 2) (pkmodel convention, at the intrinsics' resolution) and depth (...)
    -> camera-frame points (..., 3): X = (u - cx) / fx * Z, Y = (v - cy) / fy * Z.

    NaN in, NaN out.
    """
    points = np.asarray(points, dtype=np.float64)
    z = np.asarray(z, dtype=np.float64)
    x = (points[..., 0] - PIXEL_CENTER - intrinsics.cx) / intrinsics.fx * z
    y = (points[..., 1] - PIXEL_CENTER - intrinsics.cy) / intrinsics.fy * z
    return np.stack(np.broadcast_arrays(x, y, z), axis=-1)


def project(points_3d: np.ndarray, intrinsics: Intrinsics) -> np.ndarray:
    """Camera-frame points (..., 3) -> pixels (..., 2) in pkmodel convention (the inverse)."""
    p = np.asarray(points_3d, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        u = p[..., 0] / p[..., 2] * intrinsics.fx + intrinsics.cx + PIXEL_CENTER
        v = p[..., 1] / p[..., 2] * intrinsics.fy + intrinsics.cy + PIXEL_CENTER
    return np.stack([u, v], axis=-1)
