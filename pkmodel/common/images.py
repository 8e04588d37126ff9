"""Image files: which suffixes are images or videos, decoding to RGB, square crops."""

from __future__ import annotations

from pathlib import Path

import numpy as np

# What predict, pseudo-label and extract-frames take as an image or a video (by suffix).
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})
VIDEO_SUFFIXES = frozenset({".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v"})


def read_rgb(path: str | Path, width: int | None = None, height: int | None = None) -> np.ndarray:
    """Decode an image to HxWx3 uint8 RGB; raises ValueError with the reason when it is bad.

    Pillow, unlike cv2.imread, refuses truncated JPEGs instead of returning grey rows.
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im.load()
            rgb = np.asarray(im.convert("RGB"))
    except UnidentifiedImageError:  # its message names Pillow's file object, not the file
        raise ValueError("cannot decode (not an image format Pillow reads)") from None
    except (Image.DecompressionBombError, OSError, SyntaxError, ValueError) as e:
        raise ValueError(
            f"cannot decode ({str(e).splitlines()[0] if str(e) else type(e).__name__})"
        ) from None
    if width is not None and (rgb.shape[1], rgb.shape[0]) != (width, height):
        raise ValueError(
            f"image is {rgb.shape[1]}x{rgb.shape[0]}, the annotations say {width}x{height}"
        )
    return rgb


def crop_square(image: np.ndarray, box: list[int], crop_size: int) -> np.ndarray:
    """The integer box [x0, y0, side] of ``image`` (zeros outside it), resized to crop_size."""
    import cv2

    x0, y0, side = box
    h, w = image.shape[:2]
    ax0, ay0, ax1, ay1 = max(x0, 0), max(y0, 0), min(x0 + side, w), min(y0 + side, h)
    if ax0 == x0 and ay0 == y0 and ax1 == x0 + side and ay1 == y0 + side:
        region = image[ay0:ay1, ax0:ax1]
    else:
        region = np.zeros((side, side, image.shape[2]), image.dtype)
        if ax1 > ax0 and ay1 > ay0:
            region[ay0 - y0 : ay1 - y0, ax0 - x0 : ax1 - x0] = image[ay0:ay1, ax0:ax1]
    interp = cv2.INTER_AREA if side > crop_size else cv2.INTER_LINEAR
    return cv2.resize(region, (crop_size, crop_size), interpolation=interp)
