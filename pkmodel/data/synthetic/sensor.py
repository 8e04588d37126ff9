"""What a phone's depth sensor would have measured of a rendered frame (``depth_sensor = "lidar"``).

The renderer's depth is exact: every pixel holds the true Z of its surface, at the colour image's
resolution. A phone's LiDAR depth (ARKit ``sceneDepth``) is not, and the 3D pipeline must cope
with what it is instead. ``lidar_depth`` turns the exact map into one with the faults that
matter for sampling depth at joints:

- **Lower resolution.** The map is ``scale`` times the colour image's side (ARKit: 256x192 beside
  1920x1440, 0.13). Each depth pixel averages the surfaces in its footprint, so a pixel on the
  edge of an arm in front of a wall holds a depth between the two that belongs to neither (a
  "flying pixel").
- **Noise growing with distance.** Gaussian, standard deviation ``noise_m`` at 1 m times Z
  squared, half per pixel and half smooth over about eight depth pixels (blotches that a small
  median window cannot average away); doubled at medium confidence, tripled at low.
- **Holes.** No depth (0) where less than half of the footprint has a surface, and on a random
  0.5 % of pixels (dark or shiny surfaces that return no light).
- **A confidence map**, ARKit's levels: 0 low where the footprint spans a depth step of more
  than 10 % of its depth (the mixed pixels) or is a hole, 1 medium where it spans more than 3 %,
  is partly empty, or is farther than 4 m, 2 high elsewhere.

The map is a pure function of the exact depth and the random generator passed in.
"""

from __future__ import annotations

import numpy as np

from pkmodel.data.synthetic.scene import DEPTH_UNIT_M

DROPOUT = 0.005  # fraction of pixels with no return
STEP_LOW, STEP_MEDIUM = 0.10, 0.03  # depth step within a footprint, as a fraction of its depth
FAR_MEDIUM_M = 4.0  # beyond this the confidence is at most medium
SMOOTH_CELL = 8  # depth pixels per cell of the smooth noise field
NOISE_FACTOR = np.array([3.0, 2.0, 1.0])  # noise multiplier at confidence 0, 1, 2


def depth_map_size(width: int, height: int, scale: float) -> tuple[int, int]:
    """(width, height) of the depth map beside a ``width`` x ``height`` colour image."""
    return max(1, round(width * scale)), max(1, round(height * scale))


def _footprint_range(z: np.ndarray, valid: np.ndarray, scale: float, size: tuple[int, int]):
    """Per depth pixel: the spread (max - min) of the valid true depths in its footprint."""
    import cv2

    side = max(1, int(np.ceil(1.0 / scale)))
    kernel = np.ones((side + 1, side + 1), np.uint8)  # a footprint and its rounding margin
    big = np.float32(1e6)
    high = cv2.dilate(np.where(valid, z, -big).astype(np.float32), kernel)
    low = cv2.erode(np.where(valid, z, big).astype(np.float32), kernel)
    spread = np.where((high > -big) & (low < big), high - low, 0.0).astype(np.float32)
    return cv2.resize(spread, size, interpolation=cv2.INTER_AREA)


def _smooth_field(rng: np.random.Generator, size: tuple[int, int]) -> np.ndarray:
    """Unit-variance Gaussian noise varying smoothly over ``SMOOTH_CELL`` depth pixels."""
    import cv2

    width, height = size
    cells = (max(2, width // SMOOTH_CELL + 2), max(2, height // SMOOTH_CELL + 2))
    coarse = rng.standard_normal((cells[1], cells[0])).astype(np.float32)
    field = cv2.resize(coarse, size, interpolation=cv2.INTER_CUBIC)
    return field / max(float(field.std()), 1e-6)


def lidar_depth(
    depth_mm: np.ndarray, scale: float, noise_m: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Exact depth (H, W) uint16 millimetres (0 = no surface) -> what the sensor returns:
    depth (h, w) uint16 millimetres (0 = none) and confidence (h, w) uint8 0 / 1 / 2, with
    (w, h) = :func:`depth_map_size`."""
    import cv2

    height, width = depth_mm.shape
    size = depth_map_size(width, height, scale)
    z = depth_mm.astype(np.float32) * np.float32(DEPTH_UNIT_M)
    valid = depth_mm > 0
    filled = cv2.resize(valid.astype(np.float32), size, interpolation=cv2.INTER_AREA)
    total = cv2.resize(np.where(valid, z, 0).astype(np.float32), size, interpolation=cv2.INTER_AREA)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(filled > 0, total / filled, 0.0)
    step = _footprint_range(z, valid, scale, size)
    with np.errstate(invalid="ignore", divide="ignore"):
        relative = np.where(mean > 0, step / mean, np.inf)

    hole = (filled < 0.5) | (rng.random(mean.shape) < DROPOUT)
    conf = np.full(mean.shape, 2, np.uint8)
    conf[(relative > STEP_MEDIUM) | (filled < 1.0) | (mean > FAR_MEDIUM_M)] = 1
    conf[(relative > STEP_LOW) | hole] = 0

    white = rng.standard_normal(mean.shape).astype(np.float32)
    smooth = _smooth_field(rng, size)
    unit_noise = (white + smooth) / np.float32(np.sqrt(2.0))
    sd = noise_m * mean * mean * NOISE_FACTOR[conf]
    measured = np.where(hole, 0.0, np.maximum(mean + sd * unit_noise, 0.0))
    out = np.round(measured / DEPTH_UNIT_M)
    out = np.clip(out, 0, np.iinfo(np.uint16).max).astype(np.uint16)
    conf[out == 0] = 0
    return out, conf
