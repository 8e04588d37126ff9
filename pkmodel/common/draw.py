"""Pictures of poses: skeletons with left / right / middle colours, other people, grids, labels.

Images are HxWx3 uint8 RGB arrays of any size. Keypoints use the continuous pixel convention of
pkmodel.common.geometry (pixel centers at integer + 0.5) and are drawn with sub-pixel precision; joints
that are not visible, not found or NaN are skipped together with their limbs.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from pkmodel.common.atomic import atomic_write_bytes
from pkmodel.common.skeleton import JOINT_NAMES, LIMBS

Color = tuple[int, int, int]
LEFT_COLOR: Color = (40, 160, 255)  # blue: the person's left side
RIGHT_COLOR: Color = (255, 70, 50)  # red: the person's right side
MIDDLE_COLOR: Color = (255, 210, 0)  # yellow: nose, shoulder and hip lines
OTHER_COLOR: Color = (200, 80, 255)  # violet: other people in the image
CENTER_COLOR: Color = (0, 230, 120)  # green: person centers

_SHIFT = 4  # cv2 drawing with 4 fractional bits: 1/16-pixel positions
_SIDE_COLORS = (MIDDLE_COLOR, LEFT_COLOR, RIGHT_COLOR)


def joint_sides(names: Sequence[str] = JOINT_NAMES) -> np.ndarray:
    """Per joint: 0 middle, 1 left, 2 right (from the joint names)."""
    return np.array([1 if n.startswith("left_") else 2 if n.startswith("right_") else 0
                     for n in names])  # fmt: skip


def limb_sides(limbs: Sequence[tuple[int, int]] = LIMBS) -> np.ndarray:
    """Per limb: left or right when both ends are on that side, else middle."""
    sides = joint_sides()
    pairs = np.asarray(limbs)
    a, b = sides[pairs[:, 0]], sides[pairs[:, 1]]
    return np.where(a == b, a, 0)


def line_width(image: np.ndarray) -> int:
    """Line thickness that reads well at any image size (1 px at 160 px, 4 px at 640 px)."""
    return max(1, round(min(image.shape[:2]) / 160))


def _fixed(points: np.ndarray, image: np.ndarray) -> np.ndarray:
    """Continuous pixel coordinates -> cv2 fixed-point integer coordinates (clipped)."""
    h, w = image.shape[:2]
    limit = 4 * max(h, w)  # far outside points still draw their limb's visible part
    return np.round((np.clip(points, -limit, limit) - 0.5) * (1 << _SHIFT)).astype(np.int64)


def draw_skeleton(
    image: np.ndarray,
    keypoints: np.ndarray,
    visible: np.ndarray | None = None,
    color: Color | None = None,
    thickness: int | None = None,
    limbs: Sequence[tuple[int, int]] = LIMBS,
) -> np.ndarray:
    """Draw one person's joints and limbs onto ``image`` (in place) and return it.

    keypoints: (K, 2) or (K, 3); with a third column and no ``visible``, v > 0 means visible.
    visible: (K,) bool (e.g. the decoder's ``found``); NaN coordinates are never drawn.
    color: None for the left / right / middle scheme, or one RGB colour for the whole person.
    """
    import cv2

    kp = np.asarray(keypoints, dtype=np.float64)
    if visible is None:
        visible = kp[:, 2] > 0 if kp.shape[1] > 2 else np.ones(len(kp), bool)
    show = np.asarray(visible, bool) & np.isfinite(kp[:, :2]).all(axis=1)
    t = thickness or line_width(image)
    pts = _fixed(np.where(show[:, None], kp[:, :2], 0.0), image)
    joint_colors = [color] * len(kp) if color else [_SIDE_COLORS[s] for s in joint_sides()]
    limb_colors = [color] * len(limbs) if color else [_SIDE_COLORS[s] for s in limb_sides(limbs)]
    for (a, b), c in zip(limbs, limb_colors, strict=True):
        if show[a] and show[b]:
            cv2.line(image, tuple(pts[a]), tuple(pts[b]), c, t, cv2.LINE_AA, _SHIFT)
    for j in np.flatnonzero(show):
        cv2.circle(
            image, tuple(pts[j]), (t + 1) << _SHIFT, joint_colors[j], -1, cv2.LINE_AA, _SHIFT
        )
    return image


def draw_center(
    image: np.ndarray, center: np.ndarray | Sequence[float], color: Color = CENTER_COLOR
) -> np.ndarray:
    """Mark a person center with a cross (in place); NaN centers are skipped."""
    import cv2

    c = np.asarray(center, dtype=np.float64)[:2]
    if np.isfinite(c).all():
        t = line_width(image)
        size = 3 * (t + 1)
        x, y = _fixed(c, image)
        r = size << _SHIFT
        cv2.line(image, (x - r, y), (x + r, y), color, t, cv2.LINE_AA, _SHIFT)
        cv2.line(image, (x, y - r), (x, y + r), color, t, cv2.LINE_AA, _SHIFT)
    return image


def put_label(image: np.ndarray, text: str, color: Color = (255, 255, 255)) -> np.ndarray:
    """Write a short caption in the top-left corner on a dark band (in place)."""
    import cv2

    scale = max(0.35, min(image.shape[:2]) / 500)
    t = max(1, round(scale * 1.5))
    (w, h), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, t)
    cv2.rectangle(image, (0, 0), (w + 6, h + base + 6), (0, 0, 0), -1)
    cv2.putText(image, text, (3, h + 3), cv2.FONT_HERSHEY_SIMPLEX, scale, color, t, cv2.LINE_AA)
    return image


def image_grid(images: Sequence[np.ndarray], cols: int, gap: int = 4) -> np.ndarray:
    """Tile same-typed HxWx3 images (any sizes: each cell is the largest size) into one image."""
    if not images:
        raise ValueError("image_grid needs at least one image")
    cols = max(1, min(cols, len(images)))
    rows = -(-len(images) // cols)
    ch = max(im.shape[0] for im in images)
    cw = max(im.shape[1] for im in images)
    grid = np.zeros((rows * ch + (rows - 1) * gap, cols * cw + (cols - 1) * gap, 3), np.uint8)
    for i, im in enumerate(images):
        r, c = divmod(i, cols)
        y, x = r * (ch + gap), c * (cw + gap)
        grid[y : y + im.shape[0], x : x + im.shape[1]] = im
    return grid


def save_image(path, image: np.ndarray) -> None:
    """Write an RGB image (PNG or JPEG by extension) atomically."""

    import cv2

    ext = Path(path).suffix.lower() or ".png"
    ok, buf = cv2.imencode(ext, np.ascontiguousarray(image[:, :, ::-1]))
    if not ok:
        raise ValueError(f"cannot encode an image as {ext}")
    atomic_write_bytes(path, buf.tobytes())
