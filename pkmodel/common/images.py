"""Image files: which suffixes are images or videos, decoding to RGB, square crops."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from pkmodel.common.errors import PkmodelError

# What predict, pseudo-label and extract-frames take as an image or a video (by suffix).
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})
VIDEO_SUFFIXES = frozenset({".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v"})


def opencv_path(path: str | Path) -> str:
    """``path`` as the str OpenCV's readers and writers take. A name holding bytes that are
    not UTF-8 (which Python keeps as surrogates) crashes the whole process inside OpenCV, so
    it is one PkmodelError here instead."""
    text = str(path)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        shown = os.fsencode(text).decode("utf-8", "backslashreplace")
        raise PkmodelError(
            f"cannot open {shown}: its name is not UTF-8 text, which OpenCV cannot open "
            "(rename the file or folder)"
        ) from None
    return text


def read_rgb(
    path: str | Path, width: int | None = None, height: int | None = None, shown: bool = False
) -> np.ndarray:
    """Decode an image to HxWx3 uint8 RGB; raises ValueError with the reason when it is bad.

    Pillow, unlike cv2.imread, refuses truncated JPEGs instead of returning grey rows. The
    pixels are as stored (a dataset's labels are in those), or with ``shown`` as a viewer
    shows them: turned as the EXIF orientation says (a phone's photo held upright).
    """
    rgb, _ = _decode(path, shown)
    if width is not None and (rgb.shape[1], rgb.shape[0]) != (width, height):
        raise ValueError(
            f"image is {rgb.shape[1]}x{rgb.shape[0]}, the annotations say {width}x{height}"
        )
    return rgb


def read_rgb_turn(path: str | Path) -> tuple[np.ndarray, int]:
    """:func:`read_rgb`'s stored pixels and the degrees they turn clockwise to stand upright,
    from the EXIF orientation (a phone's photo is stored in the sensor's orientation and tagged
    with the turn that shows it, e.g. 6 'rotate 90'); 0 without a tag. A mirroring orientation
    (2, 4, 5, 7) gets the turn that shows the picture upright but mirrored, so that the stored
    pixels need no mirror: a mirrored person is still a person, and their joints keep the
    sides they have in the stored pixels."""
    rgb, orientation = _decode(path, False)
    return rgb, EXIF_TURNS.get(orientation, 0)


# EXIF orientation -> degrees the stored image turns clockwise to be shown (1, 3, 6, 8) or to be
# shown mirrored left to right (2, 4, 5, 7: the shown picture's mirror image is upright too)
EXIF_TURNS = {1: 0, 2: 0, 3: 180, 4: 180, 5: 90, 6: 90, 7: 270, 8: 270}

# EXIF orientation -> the Pillow transpose that shows the stored image
SHOWN_TRANSPOSE = {2: "FLIP_LEFT_RIGHT", 3: "ROTATE_180", 4: "FLIP_TOP_BOTTOM", 5: "TRANSPOSE",
                   6: "ROTATE_270", 7: "TRANSVERSE", 8: "ROTATE_90"}  # fmt: skip


def _decode(path: str | Path, shown: bool) -> tuple[np.ndarray, int]:
    """The RGB pixels of one image file (as stored, or with ``shown`` as a viewer shows them)
    and its EXIF orientation, from one opening of the file; ValueError with the reason."""
    import warnings

    from PIL import Image, UnidentifiedImageError

    try:
        # Pillow warns about odd EXIF blocks ("Corrupt EXIF data", "Truncated File Read"):
        # the pixels are what is read here, and damage in them still raises
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            with Image.open(path) as im:
                im.load()
                orientation = _exif_orientation(im)
                how = SHOWN_TRANSPOSE.get(orientation) if shown else None
                rgb = np.asarray((im.transpose(Image.Transpose[how]) if how else im).convert("RGB"))
    except UnidentifiedImageError:  # its message names Pillow's file object, not the file
        raise ValueError("cannot decode (not an image format Pillow reads)") from None
    except (Image.DecompressionBombError, OSError, SyntaxError, ValueError) as e:
        raise ValueError(
            f"cannot decode ({str(e).splitlines()[0] if str(e) else type(e).__name__})"
        ) from None
    return rgb, orientation


def _exif_orientation(im: Any) -> int:
    """An open image's EXIF orientation (1 when it has none or its EXIF cannot be read: a
    phone's odd tags must not stop a folder). Pillow's own ``exif_transpose`` writes the EXIF
    back and raises on some real phones' tags, so only the orientation is read here."""
    try:
        orientation = im.getexif().get(0x0112, 1)
    except Exception:  # noqa: BLE001 - any damage in the EXIF block leaves the image as stored
        return 1
    return orientation if isinstance(orientation, int) else 1


def jpeg_cut_short(data: bytes) -> bool:
    """Whether ``data`` is a JPEG stream that ends before its end-of-image marker (a file cut
    short in copying or recording). OpenCV decodes such a file with grey rows and only a
    warning on stderr; Pillow refuses it. Not a JPEG (no start-of-image marker): False.

    Walks the stream's segments from the start: a marker segment is skipped by its length,
    entropy-coded data after a start-of-scan up to the next marker (0xFF not followed by 0x00
    or a restart marker, which cannot occur inside it). The first end-of-image marker ends the
    image; what follows it (a second image of a multi-picture file, padding) does not count.
    """
    if not data.startswith(b"\xff\xd8"):
        return False
    n, i = len(data), 2
    while True:
        i = data.find(b"\xff", i)  # skips entropy-coded data (after a start of scan)
        if i < 0:
            return True
        while i < n and data[i] == 0xFF:  # a marker, with any fill bytes before it
            i += 1
        if i >= n:
            return True
        marker = data[i]
        i += 1
        if marker == 0xD9:  # end of image
            return False
        if marker == 0x00 or 0xD0 <= marker <= 0xD7 or marker == 0x01:  # no length
            continue
        if i + 2 > n:
            return True
        length = int.from_bytes(data[i : i + 2], "big")
        if length < 2:
            return True  # a damaged length: treat as cut short rather than loop
        i += length
        if i > n:
            return True


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
