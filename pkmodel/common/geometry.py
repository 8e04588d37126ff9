"""Coordinate frames between original images, square person crops and the network input.

- Crop box ``[x0, y0, side]`` in original pixels: crop pixel (u, v) of a crop saved at
  ``crop_size`` pixels is original pixel (x0 + u * side / crop_size, y0 + v * side / crop_size).
- Letterbox: an image of any shape scaled by ``(scale_x, scale_y)`` (equal up to the rounding of
  the resized size) and padded by ``(pad_x, pad_y)`` onto a square canvas of the input size:
  input = image * scale + pad.

Pixel coordinates are continuous with pixel centers at integer + 0.5 (COCO's convention), so
scaling maps points by multiplication alone.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Letterbox:
    """How an image was placed on the square network input."""

    scale_x: float
    scale_y: float
    pad_x: float
    pad_y: float
    size: int  # input side in pixels

    def to_input(self, points: np.ndarray) -> np.ndarray:
        """Image pixels (..., 2+) -> input pixels (extra columns are kept)."""
        out = np.array(points, dtype=np.float64, copy=True)
        out[..., 0] = out[..., 0] * self.scale_x + self.pad_x
        out[..., 1] = out[..., 1] * self.scale_y + self.pad_y
        return out

    def to_image(self, points: np.ndarray) -> np.ndarray:
        """Input pixels (..., 2+) -> image pixels (extra columns are kept)."""
        out = np.array(points, dtype=np.float64, copy=True)
        out[..., 0] = (out[..., 0] - self.pad_x) / self.scale_x
        out[..., 1] = (out[..., 1] - self.pad_y) / self.scale_y
        return out


def letterbox_params(width: int, height: int, size: int) -> Letterbox:
    """Scale the longer side to ``size`` and center the image (whole-pixel padding)."""
    scale = size / max(width, height)
    new_w, new_h = max(1, round(width * scale)), max(1, round(height * scale))
    return Letterbox(
        scale_x=new_w / width,
        scale_y=new_h / height,
        pad_x=float((size - new_w) // 2),
        pad_y=float((size - new_h) // 2),
        size=size,
    )


def letterbox_image(
    image: np.ndarray, size: int, pad_value: int = 0
) -> tuple[np.ndarray, Letterbox]:
    """Letterbox an HxWxC uint8 image onto a size x size canvas; returns it and the mapping.

    The resized image starts at (pad_x, pad_y); odd padding puts the extra pixel after it.
    """
    import cv2

    h, w = image.shape[:2]
    lb = letterbox_params(w, h, size)
    new_w, new_h = round(w * lb.scale_x), round(h * lb.scale_y)
    interp = cv2.INTER_AREA if lb.scale_x < 1 else cv2.INTER_LINEAR
    resized = cv2.resize(image, (new_w, new_h), interpolation=interp)
    canvas = np.full((size, size, *image.shape[2:]), pad_value, dtype=image.dtype)
    x0, y0 = int(lb.pad_x), int(lb.pad_y)
    canvas[y0 : y0 + new_h, x0 : x0 + new_w] = resized.reshape(new_h, new_w, *image.shape[2:])
    return canvas, lb


def crop_to_image(
    points: np.ndarray, crop_box: np.ndarray | list[float], crop_size: int
) -> np.ndarray:
    """Crop pixels (..., 2+) of a crop saved at ``crop_size`` -> original image pixels."""
    x0, y0, side = (float(v) for v in crop_box)
    out = np.array(points, dtype=np.float64, copy=True)
    s = side / crop_size
    out[..., 0] = x0 + out[..., 0] * s
    out[..., 1] = y0 + out[..., 1] * s
    return out


def image_to_crop(
    points: np.ndarray, crop_box: np.ndarray | list[float], crop_size: int
) -> np.ndarray:
    """Original image pixels (..., 2+) -> crop pixels of a crop saved at ``crop_size``."""
    x0, y0, side = (float(v) for v in crop_box)
    out = np.array(points, dtype=np.float64, copy=True)
    s = crop_size / side
    out[..., 0] = (out[..., 0] - x0) * s
    out[..., 1] = (out[..., 1] - y0) * s
    return out


def square_crop_box(bbox: list[float] | np.ndarray, expand_ratio: float) -> np.ndarray:
    """Square box [x0, y0, side] around a COCO bbox [x, y, w, h], side = max(w, h) x ratio."""
    x, y, w, h = (float(v) for v in bbox)
    side = max(w, h, 1.0) * expand_ratio
    cx, cy = x + w / 2.0, y + h / 2.0
    return np.array([cx - side / 2.0, cy - side / 2.0, side])


def joint_boxes(keypoints: np.ndarray, joint_ok: np.ndarray, margin: float) -> np.ndarray:
    """(N, 4) COCO boxes [x, y, w, h]: the box of the kept joints (N, K, 2 with N x K
    ``joint_ok``) grown by margin x its longer side on every side (joints sit inside the body:
    the head top and the feet stick out). Rows without a kept joint give a zero-size box."""

    big = np.where(joint_ok[..., None], keypoints, np.nan)
    with warnings.catch_warnings():  # all-NaN rows: poses without a kept joint (never kept)
        warnings.simplefilter("ignore", RuntimeWarning)
        lo, hi = np.nanmin(big, axis=1), np.nanmax(big, axis=1)
    size = np.nan_to_num(hi - lo)
    grow = margin * size.max(1, keepdims=True)
    lo = np.nan_to_num(lo) - grow
    return np.concatenate([lo, size + 2 * grow], axis=1)


def pixel_crop_box(bbox: np.ndarray | list[float], expand_ratio: float) -> list[int]:
    """``square_crop_box`` snapped to whole pixels: [x0, y0, side] as integers."""
    x0, y0, side = square_crop_box(bbox, expand_ratio)
    side_px = max(1, math.ceil(side - 1e-6))
    cx, cy = x0 + side / 2.0, y0 + side / 2.0
    return [math.floor(cx - side_px / 2.0 + 0.5), math.floor(cy - side_px / 2.0 + 0.5), side_px]


QUARTER_TURNS = (0, 90, 180, 270)  # clockwise turns of an image, in degrees


def turn_image(image: np.ndarray, degrees: int) -> np.ndarray:
    """An HxW(xC) image turned clockwise by ``degrees`` (a multiple of 90)."""
    if degrees not in QUARTER_TURNS:
        raise ValueError(f"an image turns by one of {QUARTER_TURNS} degrees, not {degrees}")
    return np.ascontiguousarray(np.rot90(image, k=-(degrees // 90)))


def unturn_points(points: np.ndarray, degrees: int, width: int, height: int) -> np.ndarray:
    """Pixels (..., 2+) of an image turned clockwise by ``degrees`` (:func:`turn_image`) ->
    pixels of the image as stored, ``width`` x ``height`` (extra columns are kept). Exact in
    the continuous convention above: the turned image's corners are the stored image's."""
    if degrees not in QUARTER_TURNS:
        raise ValueError(f"an image turns by one of {QUARTER_TURNS} degrees, not {degrees}")
    out = np.array(points, dtype=np.float64, copy=True)
    x, y = out[..., 0].copy(), out[..., 1].copy()
    if degrees == 90:  # stored (x, y) is at (height - y, x) once turned
        out[..., 0], out[..., 1] = y, height - x
    elif degrees == 180:
        out[..., 0], out[..., 1] = width - x, height - y
    elif degrees == 270:
        out[..., 0], out[..., 1] = width - y, x
    return out
