"""Depth sampling at 2D joints and their back-projection to 3D camera coordinates (metres).

Pixel, intrinsics and camera-frame conventions are those of pkmodel.common.camera.

Everything here is vectorised over frames and joints: arrays of shape (T, K, ...) go in at once.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pkmodel.common.camera import Intrinsics, backproject


def to_depth_pixels(
    points: np.ndarray, image_size: tuple[int, int], depth_size: tuple[int, int]
) -> np.ndarray:
    """Keypoints (..., 2) in image pixels -> the same points in depth-map pixels.

    Sizes are (width, height). With pixel centers at +0.5 this is a plain scale.
    """
    points = np.asarray(points, dtype=np.float64)
    scale = np.array(
        [depth_size[0] / image_size[0], depth_size[1] / image_size[1]], dtype=np.float64
    )
    return points[..., :2] * scale


@dataclass(frozen=True)
class DepthSample:
    """Depth sampled at joints: ``depth`` (T, K) metres (NaN = none), and the window's best
    confidence level used per joint (-1 when no confidence map was given or no depth)."""

    depth: np.ndarray
    confidence: np.ndarray
    valid: np.ndarray  # (T, K) bool: depth is a number


def sample_depth(
    depth: np.ndarray,
    points: np.ndarray,
    *,
    window: int,
    min_depth: float,
    max_depth: float,
    confidence: np.ndarray | None = None,
    min_confidence: int = 0,
    band: float = 0.0,
) -> DepthSample:
    """Median depth in a ``window`` x ``window`` neighbourhood of each joint.

    ``depth`` is (H, W) or (T, H, W) in metres; ``points`` is (K, 2) or (T, K, 2) in depth-map
    pixels (see :func:`to_depth_pixels`); NaN points give NaN depth. A window pixel counts when
    it lies inside the map, is finite, > 0 and within [min_depth, max_depth], and (with a
    ``confidence`` map of the depth's shape, ARKit levels 0 low / 1 medium / 2 high) has
    confidence >= ``min_confidence``.

    With ``band`` > 0 (metres) only pixels within ``band`` of the depth at the joint's own
    pixel count (of the median of the counted pixels when that pixel has no depth in range): a
    thin limb seen in front of a far background then keeps the limb's depth instead of the
    background's. The joint's pixel sets this reference whatever its confidence, and the band
    is applied before the confidence levels are compared; otherwise a confident wall beside a
    less confident limb edge would win the window.

    Of the pixels left, only the best confidence level present is kept, and the median of their
    depths is the joint's depth.
    """
    if window < 1 or window % 2 == 0:
        raise ValueError(f"depth window must be a positive odd number of pixels, got {window}")
    depth = np.asarray(depth)
    points = np.asarray(points, dtype=np.float64)
    single = depth.ndim == 2
    if single:
        depth, points = depth[None], points[None]
        confidence = None if confidence is None else np.asarray(confidence)[None]
    if depth.ndim != 3 or points.ndim != 3 or points.shape[0] != depth.shape[0]:
        raise ValueError(f"depth {depth.shape} and points {points.shape} do not match")
    n_frames, height, width = depth.shape
    half = window // 2
    offsets = np.arange(-half, half + 1)

    # Pixel index holding each point; clip far-away points before the integer cast.
    finite = np.isfinite(points).all(axis=-1)
    safe = np.where(finite[..., None], points, -(window + 1))
    col = np.clip(np.floor(safe[..., 0]), -(window + 1), width + window).astype(np.int64)
    row = np.clip(np.floor(safe[..., 1]), -(window + 1), height + window).astype(np.int64)
    rows = row[..., None, None] + offsets[:, None]  # (T, K, w, 1)
    cols = col[..., None, None] + offsets[None, :]  # (T, K, 1, w)
    inside = (rows >= 0) & (rows < height) & (cols >= 0) & (cols < width) & finite[..., None, None]
    t = np.arange(n_frames)[:, None, None, None]
    r, c = np.clip(rows, 0, height - 1), np.clip(cols, 0, width - 1)
    shape = (*points.shape[:2], window * window)
    values = depth[t, r, c].astype(np.float64).reshape(shape)
    inside = np.broadcast_to(inside, (*points.shape[:2], window, window)).reshape(shape)

    with np.errstate(invalid="ignore"):
        measured = inside & np.isfinite(values) & (values > 0)
        measured &= (values >= min_depth) & (values <= max_depth)
    usable = measured
    if confidence is not None:
        conf = np.asarray(confidence)
        if conf.shape != depth.shape:
            raise ValueError(f"confidence {conf.shape} does not match depth {depth.shape}")
        levels = conf[t, r, c].astype(np.int64).reshape(shape)
        usable = measured & (levels >= min_confidence)
    if band > 0:
        # The joint's own pixel says which surface it is on, whatever its confidence: a
        # confident wall beside a less confident wrist must not win the window.
        mid = window * window // 2
        ref = np.where(measured[..., mid], values[..., mid], _masked_median(values, usable))
        with np.errstate(invalid="ignore"):
            usable = usable & (np.abs(values - ref[..., None]) <= band)
    if confidence is not None:
        best = np.where(usable, levels, -1).max(axis=-1)
        usable = usable & (levels == best[..., None])
    else:
        best = np.full(shape[:2], -1, dtype=np.int64)
    z = _masked_median(values, usable)
    valid = np.isfinite(z)
    best = np.where(valid, best, -1)
    if single:
        z, best, valid = z[0], best[0], valid[0]
    return DepthSample(depth=z, confidence=best, valid=valid)


def _masked_median(values: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """Median over the last axis of the kept values (NaN where none), without Python loops:
    the others sort to the end."""
    count = keep.sum(axis=-1)
    ordered = np.sort(np.where(keep, values, np.inf), axis=-1)
    lo = np.take_along_axis(ordered, np.maximum((count - 1) // 2, 0)[..., None], axis=-1)[..., 0]
    hi = np.take_along_axis(ordered, np.maximum(count // 2, 0)[..., None], axis=-1)[..., 0]
    return np.where(count > 0, (lo + hi) / 2.0, np.nan)


def surface_to_joint(points_3d: np.ndarray, radius: np.ndarray | float) -> np.ndarray:
    """Push surface points (..., K, 3) back along their camera rays by ``radius`` metres.

    Depth at a joint's pixel is the skin facing the camera; the joint sits about one limb radius
    behind it along the same ray. ``radius`` is a scalar or per joint (K,).
    """
    p = np.asarray(points_3d, dtype=np.float64)
    dist = np.linalg.norm(p, axis=-1, keepdims=True)
    radius = np.asarray(radius, dtype=np.float64)[..., None]
    with np.errstate(invalid="ignore", divide="ignore"):
        return p * (1.0 + radius / dist)


def lift_joints(
    keypoints: np.ndarray,
    depth: np.ndarray,
    intrinsics: Intrinsics,
    *,
    window: int,
    min_depth: float,
    max_depth: float,
    confidence: np.ndarray | None = None,
    min_confidence: int = 0,
    band: float = 0.0,
    limb_radius: np.ndarray | float | None = None,
) -> tuple[np.ndarray, DepthSample]:
    """2D joints (T, K, 2) in image pixels (intrinsics' resolution) -> 3D (T, K, 3) metres.

    Depth maps (T, H, W) may have another resolution than the intrinsics: joints are mapped into
    it for sampling, and back-projection uses intrinsics scaled to it (the same 3D point either
    way). ``limb_radius`` (scalar or (K,)) turns on the surface-to-joint correction.
    """
    depth = np.asarray(depth)
    d_h, d_w = depth.shape[-2:]
    depth_points = to_depth_pixels(keypoints, (intrinsics.width, intrinsics.height), (d_w, d_h))
    sample = sample_depth(
        depth,
        depth_points,
        window=window,
        min_depth=min_depth,
        max_depth=max_depth,
        confidence=confidence,
        min_confidence=min_confidence,
        band=band,
    )
    points = backproject(depth_points, sample.depth, intrinsics.scaled_to(d_w, d_h))
    if limb_radius is not None:
        points = surface_to_joint(points, limb_radius)
    return points, sample
