"""Depth sampling at 2D joints and their back-projection to 3D camera coordinates (metres).

Pixel, intrinsics and camera-frame conventions are those of pkmodel.common.camera.

Everything here is vectorised over frames and joints: arrays of shape (T, K, ...) go in at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from pkmodel.common.camera import Intrinsics, backproject

# sample_depth widens its band with the noise only where the window spans at most this across
WIDE_WINDOW_M = 0.3


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


def _as_frames(
    depth: np.ndarray, points: np.ndarray, confidence: np.ndarray | None, dtype: type
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, bool]:
    """Depth (T, H, W), joints (T, K, 2) and confidence (T, H, W) or None, from one frame or
    many; and whether one frame came in (its results are returned without the T axis)."""
    depth = np.asarray(depth)
    points = np.asarray(points, dtype=dtype)
    confidence = None if confidence is None else np.asarray(confidence)
    single = depth.ndim == 2
    if single:
        depth, points = depth[None], points[None]
        confidence = None if confidence is None else confidence[None]
    if depth.ndim != 3 or points.ndim != 3 or points.shape[0] != depth.shape[0]:
        raise ValueError(f"depth {depth.shape} and joints {points.shape} do not match")
    if confidence is not None and confidence.shape != depth.shape:
        raise ValueError(f"confidence {confidence.shape} does not match depth {depth.shape}")
    return depth, points, confidence, single


def _windows(
    depth: np.ndarray,
    row: np.ndarray,
    col: np.ndarray,
    finite: np.ndarray,
    half: int,
    confidence: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """The (2 half + 1)^2 pixels around each joint's pixel (``row``, ``col``: (T, K) ints),
    flattened row by row (the joint's own pixel in the middle): depths (float64), whether each
    lies inside the map (and the joint is ``finite``), and the confidence levels (or None)."""
    height, width = depth.shape[1:]
    offsets = np.arange(-half, half + 1)
    rows = row[..., None, None] + offsets[:, None]  # (T, K, w, 1)
    cols = col[..., None, None] + offsets[None, :]  # (T, K, 1, w)
    inside = (rows >= 0) & (rows < height) & (cols >= 0) & (cols < width) & finite[..., None, None]
    t = np.arange(depth.shape[0])[:, None, None, None]
    r, c = np.clip(rows, 0, height - 1), np.clip(cols, 0, width - 1)
    side = 2 * half + 1
    shape = (*row.shape, side * side)
    values = depth[t, r, c].astype(np.float64).reshape(shape)
    inside = np.broadcast_to(inside, (*row.shape, side, side)).reshape(shape)
    levels = None if confidence is None else confidence[t, r, c].astype(np.int64).reshape(shape)
    return values, inside, levels


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
    band_noise: float = 0.0,
    focal: float = 0.0,
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

    ``band_noise`` (metres at 1 m) widens a joint's band to ``band_noise`` times its reference
    depth squared where that is wider: a few sds of a depth noise that grows with the square of
    the range. Where the noise is larger than the band (a phone's LiDAR at several metres), a
    fixed band keeps the joint pixel's own noisy value alone and the window averages nothing.
    With the depth map's ``focal`` length (pixels) it does so only where the window spans at
    most ``WIDE_WINDOW_M`` across: a wider window holds other surfaces as much as the joint's
    (a coarse map far away), and the joint pixel's own value is the lesser evil.

    Of the pixels left, only the best confidence level present is kept, and the median of their
    depths is the joint's depth.
    """
    if window < 1 or window % 2 == 0:
        raise ValueError(f"depth window must be a positive odd number of pixels, got {window}")
    depth, points, confidence, single = _as_frames(depth, points, confidence, np.float64)
    height, width = depth.shape[1:]
    half = window // 2

    # Pixel index holding each point; clip far-away points before the integer cast.
    finite = np.isfinite(points).all(axis=-1)
    safe = np.where(finite[..., None], points, -(window + 1))
    col = np.clip(np.floor(safe[..., 0]), -(window + 1), width + window).astype(np.int64)
    row = np.clip(np.floor(safe[..., 1]), -(window + 1), height + window).astype(np.int64)
    values, inside, levels = _windows(depth, row, col, finite, half, confidence)
    shape = values.shape

    with np.errstate(invalid="ignore"):
        measured = inside & np.isfinite(values) & (values > 0)
        measured &= (values >= min_depth) & (values <= max_depth)
    usable = measured
    if levels is not None:
        usable = measured & (levels >= min_confidence)
    if band > 0:
        # The joint's own pixel says which surface it is on, whatever its confidence: a
        # confident wall beside a less confident wrist must not win the window.
        mid = window * window // 2
        ref = np.where(measured[..., mid], values[..., mid], _masked_median(values, usable))
        width = band_width(ref, window=window, band=band, band_noise=band_noise, focal=focal)
        with np.errstate(invalid="ignore"):
            usable = usable & (np.abs(values - ref[..., None]) <= width[..., None])
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


def band_width(
    ref: np.ndarray,
    *,
    window: int | np.ndarray,
    band: float,
    band_noise: float = 0.0,
    focal: float = 0.0,
) -> np.ndarray:
    """The depth band (metres) :func:`sample_depth` gives a joint whose reference depth is
    ``ref`` (metres, any shape; NaN: none) in a window of side ``window`` (an int, or an array
    that broadcasts against ``ref``): ``band``, widened to ``band_noise * ref^2`` where the
    window spans at most ``WIDE_WINDOW_M`` (with the depth map's ``focal`` length in pixels;
    0: no limit)."""
    ref0 = np.nan_to_num(np.asarray(ref, dtype=np.float64))
    width = np.maximum(band, band_noise * ref0**2)
    if focal > 0:
        width = np.where(np.asarray(window) * ref0 <= WIDE_WINDOW_M * focal, width, band)
    return width


def band_widens(
    band: float, band_noise: float, *, window: int, focal: float, max_depth: float
) -> tuple[float, float] | None:
    """The ranges (metres) over which a window of side ``window`` gets a band wider than
    ``band`` (:func:`band_width`): from where ``band_noise * z^2`` passes ``band`` to where the
    window spans ``WIDE_WINDOW_M`` or to ``max_depth``, whichever is nearer. None when they
    are empty (a fixed band, or a coarse map whose window is too wide before the noise is)."""
    if band <= 0 or band_noise <= 0:
        return None
    start = float(np.sqrt(band / band_noise))
    stop = max_depth if focal <= 0 else min(max_depth, WIDE_WINDOW_M * focal / window)
    return (start, float(stop)) if start < stop else None


def sample_depth_windows(
    depth: np.ndarray, points: np.ndarray, *, windows: np.ndarray | list[int], **options: Any
) -> DepthSample:
    """:func:`sample_depth` with a window per joint: ``windows`` (K,) odd sides for the K
    joints of ``points`` ((K, 2) or (T, K, 2)); the other ``options`` as there. A joint whose
    window is narrower than the widest takes its own window's depth, and the widest window's
    where its own finds none (a small feature keeps its depth when it has one, and still gets
    one when its few pixels are empty).
    """
    windows = np.asarray(windows, dtype=np.int64)
    points = np.asarray(points, dtype=np.float64)
    if windows.ndim != 1 or windows.shape[0] != points.shape[-2]:
        raise ValueError(f"{windows.shape[0]} windows for {points.shape[-2]} joints")
    widest = int(windows.max())
    out = sample_depth(depth, points, window=widest, **options)
    z, level, valid = out.depth.copy(), out.confidence.copy(), out.valid.copy()
    for side in np.unique(windows[windows < widest]):
        joints = np.flatnonzero(windows == side)
        own = sample_depth(depth, points[..., joints, :], window=int(side), **options)
        use = own.valid
        z[..., joints] = np.where(use, own.depth, z[..., joints])
        level[..., joints] = np.where(use, own.confidence, level[..., joints])
        valid[..., joints] |= use
    return DepthSample(depth=z, confidence=level, valid=valid)


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
    window: int | np.ndarray | list[int],
    min_depth: float,
    max_depth: float,
    confidence: np.ndarray | None = None,
    min_confidence: int = 0,
    band: float = 0.0,
    band_noise: float = 0.0,
    limb_radius: np.ndarray | float | None = None,
) -> tuple[np.ndarray, DepthSample]:
    """2D joints (T, K, 2) in image pixels (intrinsics' resolution) -> 3D (T, K, 3) metres.

    Depth maps (T, H, W) may have another resolution than the intrinsics: joints are mapped into
    it for sampling, and back-projection uses intrinsics scaled to it (the same 3D point either
    way). ``window`` is one side for all joints or one per joint (:func:`sample_depth_windows`).
    ``limb_radius`` (scalar or (K,)) turns on the surface-to-joint correction.
    """
    depth = np.asarray(depth)
    d_h, d_w = depth.shape[-2:]
    depth_points = to_depth_pixels(keypoints, (intrinsics.width, intrinsics.height), (d_w, d_h))
    options = dict(
        min_depth=min_depth,
        max_depth=max_depth,
        confidence=confidence,
        min_confidence=min_confidence,
        band=band,
        band_noise=band_noise,
        focal=intrinsics.fx * d_w / intrinsics.width,
    )
    if np.ndim(window) == 0:
        sample = sample_depth(depth, depth_points, window=int(window), **options)
    else:
        sample = sample_depth_windows(depth, depth_points, windows=window, **options)
    points = backproject(depth_points, sample.depth, intrinsics.scaled_to(d_w, d_h))
    if limb_radius is not None:
        points = surface_to_joint(points, limb_radius)
    return points, sample


# The PoseKit app's depth sampler (PoseKitApp DepthSampler.swift), reproduced for
# ``lift.depth_sampler = "posekit-app"``: mode -> (lowest confidence level, search radius).
APP_DEPTH_MODES: dict[str, tuple[int, int]] = {
    "strict": (2, 2),
    "balanced": (1, 3),
    "lenient": (0, 3),
}


@dataclass(frozen=True)
class AppDepthSample:
    """The app's depth at joints: ``depth`` (T, K) metres (NaN = none), ``confidence`` (T, K) the
    app's depthConfidence = level / 2 (0 where there is no depth, as the app leaves it)."""

    depth: np.ndarray
    confidence: np.ndarray
    valid: np.ndarray  # (T, K) bool: depth is a number


def _round_app(x: np.ndarray) -> np.ndarray:
    """Swift's ``Float.rounded()``: to nearest, halves away from zero (not NumPy's to-even)."""
    return np.sign(x) * np.floor(np.abs(x) + 0.5)


def sample_depth_app(
    uv_norm: np.ndarray,
    depth: np.ndarray,
    confidence: np.ndarray | None = None,
    mode: str = "balanced",
) -> AppDepthSample:
    """Depth at normalised joints (..., 2) exactly as the PoseKit app samples it.

    ``depth`` is (H, W) or (T, H, W) metres, ``confidence`` the same shape (levels 0/1/2; None:
    every pixel counts as level 2, as in the app). The joint's pixel is
    ``round((W - 1) * u), round((H - 1) * v)`` (float32 product, halves away from zero). A pixel
    has depth when it is inside the map, not NaN and > 0 (no depth range: the app has none). If
    the joint's pixel has depth and level >= the mode's minimum, that is the depth. Otherwise,
    in the square of the mode's radius around it, the pixels with depth whose level is the
    highest present (and >= the minimum) are sorted and the upper median ``s[n // 2]`` taken.
    NaN joints give no depth.
    """
    if mode not in APP_DEPTH_MODES:
        raise ValueError(f"unknown app depth mode {mode!r}; one of {sorted(APP_DEPTH_MODES)}")
    min_level, radius = APP_DEPTH_MODES[mode]
    depth, uv, confidence, single = _as_frames(depth, uv_norm, confidence, np.float32)
    height, width = depth.shape[1:]

    finite = np.isfinite(uv).all(axis=-1)
    safe = np.where(finite[..., None], uv, np.float32(0))
    # float32 product as in Swift, then rounded exactly in float64; far points are clipped
    # where they can no longer reach the map.
    far = radius + 1
    col = _round_app((np.float32(width - 1) * safe[..., 0]).astype(np.float64))
    row = _round_app((np.float32(height - 1) * safe[..., 1]).astype(np.float64))
    col = np.clip(col, -far, width + far).astype(np.int64)
    row = np.clip(row, -far, height + far).astype(np.int64)

    values, inside, levels = _windows(depth, row, col, finite, radius, confidence)
    if levels is None:
        levels = np.full(values.shape, 2, dtype=np.int64)
    with np.errstate(invalid="ignore"):
        has_depth = inside & ~np.isnan(values) & (values > 0)
    usable = has_depth & (levels >= min_level)

    mid = values.shape[-1] // 2  # the joint's own pixel
    centre_ok = usable[..., mid]
    best = np.where(usable, levels, -1).max(axis=-1)
    keep = usable & (levels == best[..., None])
    count = keep.sum(axis=-1)
    ordered = np.sort(np.where(keep, values, np.nan), axis=-1)  # NaN sorts last
    upper = np.take_along_axis(ordered, (count // 2)[..., None], axis=-1)[..., 0]
    fallback = np.where(count > 0, upper, np.nan)

    z = np.where(centre_ok, values[..., mid], fallback)
    level = np.where(centre_ok, levels[..., mid], best)
    valid = ~np.isnan(z)
    conf = np.where(valid, level / 2.0, 0.0)
    if single:
        z, conf, valid = z[0], conf[0], valid[0]
    return AppDepthSample(depth=z, confidence=conf, valid=valid)


def lift_joints_app(
    keypoints: np.ndarray,
    depth: np.ndarray,
    intrinsics: Intrinsics,
    *,
    confidence: np.ndarray | None = None,
    mode: str = "balanced",
) -> tuple[np.ndarray, AppDepthSample]:
    """2D joints (T, K, 2) in image pixels -> 3D (T, K, 3) metres with the app's sampler.

    Joints are normalised by the intrinsics' image size (u = x / W, v = y / H) and sampled with
    :func:`sample_depth_app`; back-projection is pkmodel's (:func:`backproject`). No
    surface-to-joint correction: the app has none.
    """
    keypoints = np.asarray(keypoints, dtype=np.float64)
    size = np.array([intrinsics.width, intrinsics.height], dtype=np.float64)
    sample = sample_depth_app(keypoints[..., :2] / size, depth, confidence, mode)
    points = backproject(keypoints[..., :2], sample.depth, intrinsics)
    return points, sample
