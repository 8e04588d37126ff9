"""Pinhole camera of the synthetic set: intrinsics, projection, per-pixel rays, look-at.

Conventions (those of ``pkmodel.common.camera``):

- Camera frame: x right, y down, z forward (the optical axis), metres.
- Intrinsics ``fx, fy, cx, cy`` follow OpenCV / ARKit: the center of pixel (row i, column j)
  is at pinhole coordinate (j, i), i.e. u_pinhole = fx * X / Z + cx.
- Keypoints use COCO's continuous pixel coordinates: pixel (i, j) covers [j, j + 1) x [i, i + 1)
  and its center is (j + 0.5, i + 0.5). So a 3D point projects to the keypoint
  (fx * X / Z + cx + 0.5, fy * Y / Z + cy + 0.5).
- The renderer casts one ray per pixel, through its center: direction ((j - cx) / fx,
  (i - cy) / fy, 1). A ray point at parameter t has Z = t, so the depth map holds Z directly.

World frame (for placing people and the floor): y up, the floor is y = 0.
"""

from __future__ import annotations

import numpy as np

# One camera model for the whole toolkit: the generator writes exactly what the 3D stage reads.
from pkmodel.common.camera import Intrinsics


def sample_intrinsics(rng: np.random.Generator, width: int, height: int) -> Intrinsics:
    """A phone-like camera: 50-75 degrees across the longer side, principal point jittered."""
    fov = np.radians(rng.uniform(50.0, 75.0))
    f = max(width, height) / 2.0 / np.tan(fov / 2.0)
    aspect = 1.0 + rng.normal(0.0, 0.003)  # near-square pixels, as real calibrations give
    return Intrinsics(
        fx=round(float(f), 4),
        fy=round(float(f * aspect), 4),
        cx=round(float((width - 1) / 2.0 + rng.normal(0.0, 0.01 * width)), 4),
        cy=round(float((height - 1) / 2.0 + rng.normal(0.0, 0.01 * height)), 4),
        width=width,
        height=height,
    )


def pixel_rays(intrinsics: Intrinsics) -> tuple[np.ndarray, np.ndarray]:
    """Ray directions through the pixel centers, z = 1: x per column (W,), y per row (H,)."""
    cols = np.arange(intrinsics.width, dtype=np.float64)
    rows = np.arange(intrinsics.height, dtype=np.float64)
    dx = (cols - intrinsics.cx) / intrinsics.fx
    dy = (rows - intrinsics.cy) / intrinsics.fy
    return dx.astype(np.float32), dy.astype(np.float32)


def look_at(eye: np.ndarray, target: np.ndarray, roll: float = 0.0) -> np.ndarray:
    """World -> camera rotation (rows: right, down, forward) of a camera at ``eye``.

    The world's up is +y; ``roll`` (radians) turns the image clockwise about the optical axis.
    X_cam = R @ (X_world - eye).
    """
    forward = np.asarray(target, dtype=np.float64) - np.asarray(eye, dtype=np.float64)
    forward /= np.linalg.norm(forward)
    right = np.cross(forward, [0.0, 1.0, 0.0])
    right /= np.linalg.norm(right)
    down = np.cross(forward, right)
    rotation = np.stack([right, down, forward])
    c, s = np.cos(roll), np.sin(roll)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]]) @ rotation
