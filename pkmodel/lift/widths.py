"""The take's limb radii from how wide its limbs look in the depth maps.

The surface-to-joint correction pushes each joint's depth back by a radius per joint
(``lift.limb_radius_m``, an adult's). People differ: a child's elbow is half as thick as that, a
heavy adult's 1.4 times, and a radius off by half is a joint 2-3 cm off along its ray on every
frame. A limb's outline shows its thickness: across the limb at a joint, the depth map holds
the limb's surface for about two radii and then steps back to whatever is behind it.

For every profiled frame and each joint of ``WIDTH_JOINTS`` (elbows across the upper arm and
the forearm, wrists across the forearm, knees across the thigh and the shin; not the ankles,
whose foot widens the outline, nor the shoulders and hips, whose outlines merge with the
torso), :func:`width_profiles` reads the depth map along the line through the joint's pixel
at right angles to the bone, every half depth pixel out to ``MAX_PX`` each way.
:func:`width_ratios` then walks out from the joint to the first sample that lies farther than
the limb (by two radii plus three times the take's depth noise) or has no depth; that edge
must come within four radii. A sample that lies that much nearer than the joint is something in
front of the limb and drops the profile; so does a joint whose own pixel is not on its surface.
Samples between the limb's depth and the background's count for the share of their footprint
the limb covers (a mixed depth pixel, as a phone's LiDAR gives at outlines, is the average of
both). The width in metres over twice the joint's radius is one ratio; the take's scale
(:func:`limb_scale`) is their median, kept within ``SCALE_RANGE``, and 1 when fewer than
``MIN_SAMPLES`` profiles measured. :func:`scale_radius` applies it to the limb joints
(shoulders to ankles); the face keeps its radii (a head varies far less than a build).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pkmodel.common.skeleton import BONES, JOINT_INDEX, NUM_JOINTS
from pkmodel.lift.skeleton import depth_noise

STEP_PX = 0.5  # depth pixels between samples of a profile
MAX_PX = 64.0  # a profile's reach each way from the joint, depth pixels
REACH_RADII = 4.0  # the limb's edge must come within this many radii (plus 3 pixels)
EDGE_RADII = 2.0  # a sample this many radii (plus 3 noise sds) farther is past the edge
EDGE_NOISE = 3.0
MIXED_SAMPLES = 2  # samples per depth pixel: the first ones off the limb may be mixed pixels
MIN_SAMPLES = 20
SCALE_RANGE = (0.5, 1.6)
MAX_FRAMES = 2000  # a longer take is profiled on every n-th frame

WIDTH_JOINTS: tuple[tuple[int, int], ...] = tuple(
    (JOINT_INDEX[f"{side}_{joint}"], JOINT_INDEX[f"{side}_{toward}"])
    for side in ("left", "right")
    for joint, toward in (
        ("elbow", "shoulder"),
        ("elbow", "wrist"),
        ("wrist", "elbow"),
        ("knee", "hip"),
        ("knee", "ankle"),
    )
)
HEAD_RADIUS_M = 0.1
# The body's parts as 2D segments (COCO joint pairs) that can lie beside a limb in the picture:
# the arms' and legs' bones, the torso's edges, and the head between the ears (radius
# ``HEAD_RADIUS_M``).
BODY_PARTS: tuple[tuple[int, int], ...] = (*BONES, (5, 6), (11, 12), (5, 11), (6, 12), (3, 4))
SCALED_JOINTS = tuple(
    JOINT_INDEX[f"{side}_{joint}"]
    for side in ("left", "right")
    for joint in ("shoulder", "elbow", "wrist", "hip", "knee", "ankle")
)
_OFFSETS = np.arange(1, int(MAX_PX / STEP_PX) + 1) * STEP_PX  # (S,) pixels from the joint
_SIDES = np.array([1.0, -1.0])  # a profile's two directions from the joint
_JOINTS = np.array([j for j, _ in WIDTH_JOINTS])  # (P,) the profiles' joints
_TOWARD = np.array([t for _, t in WIDTH_JOINTS])  # (P,) the other ends of their bones


@dataclass(frozen=True)
class WidthProfiles:
    """Depth across the limbs at the joints of ``WIDTH_JOINTS`` in the profiled frames."""

    frames: np.ndarray  # (N,) frame indices
    centre: np.ndarray  # (N, P) metres at the joint's own pixel (0 = none, NaN = no 2D)
    depth: np.ndarray  # (N, P, 2, S) metres along both directions (0 = none, NaN = outside)
    beside: np.ndarray  # (N, P, 2) index of the first sample on another body part (S: none)
    metres_per_px: np.ndarray  # (N, P) metres per depth pixel along the profile at 1 m
    focal: tuple[float, float]  # (fx, fy) in depth pixels


def profile_stride(frames: int) -> int:
    """Profile every n-th frame so that at most ``MAX_FRAMES`` are profiled."""
    return max(1, -(-frames // MAX_FRAMES))


def width_profiles(
    depth: np.ndarray,
    keypoints: np.ndarray,
    frames: np.ndarray,
    focal: tuple[float, float],
    radius: np.ndarray,
) -> WidthProfiles:
    """Profiles of ``depth`` (N, H, W) metres (0 or NaN = none) across the limbs at
    ``keypoints`` (N, K, 2) in depth pixels (pixel centres at +0.5), for frames ``frames``;
    ``focal`` (fx, fy) in depth pixels, ``radius`` (K,) the config's radii (they give the other
    body parts' outlines, :func:`_beside`)."""
    depth = np.nan_to_num(np.asarray(depth, dtype=np.float32), nan=0.0)
    n, height, width = depth.shape
    at = np.asarray(keypoints, dtype=np.float64)[:, _JOINTS, :2]  # (N, P, 2)
    bone = np.asarray(keypoints, dtype=np.float64)[:, _TOWARD, :2] - at
    length = np.linalg.norm(bone, axis=-1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        along = bone / length
    across = np.stack([-along[..., 1], along[..., 0]], axis=-1)  # (N, P, 2)
    across = np.where(length > 1.0, across, np.nan)  # a bone under a pixel has no direction
    centre = _lookup(depth, at[:, :, None, None, :])[:, :, 0, 0]
    centre = np.where(np.isfinite(across).all(axis=-1), centre, np.nan)
    with np.errstate(invalid="ignore"):
        per_px = np.hypot(across[..., 0] / focal[0], across[..., 1] / focal[1])
    # only as far as an edge may lie (:func:`width_ratios`) at the joint's own pixel's depth,
    # and the samples that may be mixed pixels past it
    offsets = _OFFSETS[: _samples_needed(centre, per_px, np.asarray(radius)[_JOINTS])]
    pts = at[:, :, None, None, :] + (
        _SIDES[:, None, None] * offsets[None, :, None] * across[:, :, None, None, :]
    )  # (N, P, 2, S, 2)
    return WidthProfiles(
        frames=np.asarray(frames, dtype=np.int64),
        centre=centre,
        depth=_lookup(depth, pts),
        beside=_beside(at, across, np.asarray(keypoints, dtype=np.float64), centre, focal, radius),
        metres_per_px=per_px,
        focal=focal,
    )


def _samples_needed(centre: np.ndarray, per_px: np.ndarray, radius: np.ndarray) -> int:
    """How many samples each way the profiles of a chunk need: to the farthest edge any may
    have (``REACH_RADII`` radii plus 3 pixels at the joint's pixel's depth), plus the mixed
    samples past it."""
    with np.errstate(invalid="ignore", divide="ignore"):
        reach = REACH_RADII * radius[None, :] / (centre * per_px) + 3.0
    reach = reach[np.isfinite(reach) & (centre > 0)]
    if not reach.size:
        return 1
    needed = int(np.ceil(min(float(reach.max()), MAX_PX) / STEP_PX)) + MIXED_SAMPLES + 1
    return min(needed, len(_OFFSETS))


def _beside(
    at: np.ndarray,
    across: np.ndarray,
    keypoints: np.ndarray,
    centre: np.ndarray,
    focal: tuple[float, float],
    radius: np.ndarray,
) -> np.ndarray:
    """(N, P, 2) the index of each profile's first sample within another body part's outline
    in the picture (a ``BODY_PARTS`` segment not at the profile's joint, widened by the larger
    of its ends' radii at the joint's depth: a capsule); ``len(_OFFSETS)`` where none is. Legs
    side by side, an arm against the torso: there the depth map cannot show where the limb
    ends. ``at`` (N, P, 2) the joints, ``across`` (N, P, 2) the profiles' unit directions."""
    px_per_m = 0.5 * (focal[0] + focal[1]) / np.where(centre > 0, centre, np.nan)  # (N, P)
    direction = _SIDES[None, None, :, None] * across[:, :, None, :]
    origin = np.broadcast_to(at[:, :, None, :], direction.shape)  # (N, P, 2, 2)
    entry = np.full(direction.shape[:-1], np.inf)
    for a, b in BODY_PARTS:
        own = np.isin(_JOINTS, (a, b))  # (P,) the part is the profile's own bone
        r = HEAD_RADIUS_M if (a, b) == (3, 4) else max(radius[a], radius[b])
        reach = (r * px_per_m)[:, :, None]  # (N, P, 1) the outline's radius in pixels
        start = keypoints[:, None, None, a, :2]
        end = keypoints[:, None, None, b, :2]
        with np.errstate(invalid="ignore", divide="ignore"):
            hit = np.minimum(
                _ray_disc(origin, direction, start, reach),
                _ray_disc(origin, direction, end, reach),
            )
            hit = np.minimum(hit, _ray_band(origin, direction, start, end, reach))
        entry = np.where(own[None, :, None], entry, np.fmin(entry, hit))
    index = np.floor(entry / STEP_PX)
    return np.where(np.isfinite(index), np.minimum(index, len(_OFFSETS)), len(_OFFSETS)).astype(
        np.int64
    )


def _ray_disc(origin, direction, centre, reach) -> np.ndarray:
    """Where rays (origin + s direction, s >= 0, unit directions) enter discs: s (0 inside;
    inf when they miss)."""
    to = centre - origin
    b = (to * direction).sum(-1)
    c = (to * to).sum(-1) - reach**2
    disc = b * b - c
    root = np.sqrt(np.where(disc >= 0, disc, np.nan))
    first, last = b - root, b + root
    s = np.where(c < 0, 0.0, np.where(last >= 0, np.maximum(first, 0.0), np.inf))
    return np.where(np.isfinite(s), s, np.inf)


def _ray_band(origin, direction, start, end, reach) -> np.ndarray:
    """Where rays enter the rectangles of half-width ``reach`` along segments start-end (the
    middle of a capsule): s, inf when they miss."""
    seg = end - start
    length = np.sqrt((seg * seg).sum(-1))
    u = seg / length[..., None]
    v = np.stack([-u[..., 1], u[..., 0]], axis=-1)
    rel = origin - start
    pu, pv = (rel * u).sum(-1), (rel * v).sum(-1)
    du, dv = (direction * u).sum(-1), (direction * v).sum(-1)
    lo = np.full(pu.shape, 0.0)
    hi = np.full(pu.shape, np.inf)
    for p, d, low, high in ((pu, du, 0.0, length), (pv, dv, -reach, reach)):
        t1, t2 = (low - p) / d, (high - p) / d
        parallel = np.abs(d) < 1e-12
        inside = (p >= low) & (p <= high)
        t_in = np.where(parallel, np.where(inside, -np.inf, np.inf), np.minimum(t1, t2))
        t_out = np.where(parallel, np.where(inside, np.inf, -np.inf), np.maximum(t1, t2))
        lo, hi = np.maximum(lo, t_in), np.minimum(hi, t_out)
    return np.where((lo <= hi) & np.isfinite(lo), lo, np.inf)


def concat_profiles(parts: list[WidthProfiles]) -> WidthProfiles:
    """The profiles of consecutive chunks of a take as one (shorter ones padded with NaN,
    outside the map: no edge there)."""
    longest = max(p.depth.shape[-1] for p in parts)
    pad = [((0, 0), (0, 0), (0, 0), (0, longest - p.depth.shape[-1])) for p in parts]
    return WidthProfiles(
        frames=np.concatenate([p.frames for p in parts]),
        centre=np.concatenate([p.centre for p in parts]),
        depth=np.concatenate(
            [np.pad(p.depth, w, constant_values=np.nan) for p, w in zip(parts, pad, strict=True)]
        ),
        beside=np.concatenate([p.beside for p in parts]),
        metres_per_px=np.concatenate([p.metres_per_px for p in parts]),
        focal=parts[0].focal,
    )


def _lookup(depth: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Depth at ``points`` (N, ..., 2) depth pixels, frame by frame (the pixel containing the
    point); NaN outside the map or where a point is NaN."""
    n, height, width = depth.shape
    with np.errstate(invalid="ignore"):
        col = np.floor(points[..., 0])
        row = np.floor(points[..., 1])
    inside = np.isfinite(col) & np.isfinite(row)
    inside &= (col >= 0) & (col < width) & (row >= 0) & (row < height)
    frame = np.arange(n).reshape((n,) + (1,) * (points.ndim - 2))
    frame = np.broadcast_to(frame, inside.shape)
    c = np.where(inside, col, 0).astype(np.int64)
    r = np.where(inside, row, 0).astype(np.int64)
    return np.where(inside, depth[frame, r, c], np.nan).astype(np.float32)


def width_ratios(
    profiles: WidthProfiles, surface_z: np.ndarray, radius: np.ndarray, noise_at_1m: float
) -> np.ndarray:
    """(N, P) each profile's limb width over twice the joint's radius (NaN: not measured).
    ``surface_z`` (N, P) the joint's sampled surface depth in metres (NaN = none), ``radius``
    (P,) the joints' radii, ``noise_at_1m`` the take's depth noise (sd at 1 m)."""
    d = profiles.depth.astype(np.float64)
    z = np.asarray(surface_z, dtype=np.float64)[:, :, None, None]
    r = np.asarray(radius, dtype=np.float64)[None, :, None, None]
    edge = EDGE_RADII * r + EDGE_NOISE * noise_at_1m * z**2
    with np.errstate(invalid="ignore", divide="ignore"):
        reach_px = np.minimum(REACH_RADII * r / (z * profiles.metres_per_px[:, :, None, None]) + 3.0, MAX_PX)  # fmt: skip
        past = (d <= 0) | (d - z > edge)
        nearer = (d > 0) & (z - d > edge)
    outside = ~np.isfinite(d)
    beyond = reach_px < _OFFSETS[: d.shape[-1]]  # (N, P, 1, S)
    stop = past | nearer | outside | beyond
    first = np.argmax(stop, axis=-1)  # (N, P, 2): the first sample off the limb
    stopped = np.take_along_axis(stop, first[..., None], axis=-1)[..., 0]
    at_edge = np.take_along_axis(past & ~nearer & ~outside & ~beyond, first[..., None], -1)[..., 0]
    # Every sample counts for the share of its footprint the limb covers, from its depth
    # between the joint's surface and the background's: one depth pixel past the first sample
    # off the limb (that sample, and the next, may be mixed pixels, part limb, part background).
    index = np.arange(d.shape[-1])
    past_first = np.minimum(first + MIXED_SAMPLES, d.shape[-1] - 1)[..., None]
    behind = np.take_along_axis(d, past_first, axis=-1)
    first_d = np.take_along_axis(d, first[..., None], axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        far = np.where(behind > first_d, behind, first_d)  # (N, P, 2, 1)
        share = np.nan_to_num(np.clip((far - d) / (far - z), 0.0, 1.0), nan=0.0)
    counted = (index < first[..., None] + MIXED_SAMPLES) & (d > 0) & (far > 0)
    cover = np.where(counted, share, 0.0)
    cover = np.where((index < first[..., None]) & ~(far > 0), 1.0, cover)  # a hole behind
    half_px = STEP_PX / 2 + STEP_PX * cover.sum(axis=-1)  # (N, P, 2)
    centre = profiles.centre.astype(np.float64)
    zc = z[:, :, 0, 0]
    with np.errstate(invalid="ignore"):
        on_surface = (centre > 0) & (np.abs(centre - zc) <= edge[:, :, 0, 0])
    clear = (profiles.beside >= first + MIXED_SAMPLES).all(axis=-1)  # nothing else beside it
    ok = (stopped & at_edge).all(axis=-1) & clear & on_surface & np.isfinite(zc) & (zc > 0)
    rad = r[:, :, 0, 0]
    width_m = half_px.sum(axis=-1) * (zc + rad) * profiles.metres_per_px
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(ok, width_m / (2.0 * rad), np.nan)


@dataclass(frozen=True)
class LimbScale:
    """The take's limb-radius scale and how many profiles measured it."""

    scale: float
    samples: int


def limb_scale(ratios: np.ndarray) -> LimbScale:
    """The median of the measured ``ratios`` within ``SCALE_RANGE``; 1 with too few."""
    values = np.asarray(ratios, dtype=np.float64)
    values = values[np.isfinite(values)]
    if values.size < MIN_SAMPLES:
        return LimbScale(1.0, int(values.size))
    return LimbScale(float(np.clip(np.median(values), *SCALE_RANGE)), int(values.size))


def scale_radius(radius: np.ndarray, scale: float) -> np.ndarray:
    """``radius`` (K,) with the limb joints' (``SCALED_JOINTS``) multiplied by ``scale``."""
    out = np.array(radius, dtype=np.float64)
    if out.shape[0] < NUM_JOINTS:
        raise ValueError(f"expected {NUM_JOINTS} radii, got {out.shape}")
    out[list(SCALED_JOINTS)] *= scale
    return out


def measure_limb_scale(
    surface: np.ndarray, profiles: WidthProfiles, radius: np.ndarray
) -> LimbScale:
    """The take's limb scale from its sampled surface points (T, K, 3) (camera frame, metres,
    before the correction), the width profiles of its frames and the config's radii (K,)."""
    noise = depth_noise(np.linalg.norm(surface[:, :NUM_JOINTS], axis=-1))
    surface_z = surface[profiles.frames][:, _JOINTS, 2]
    ratios = width_ratios(profiles, surface_z, np.asarray(radius)[_JOINTS], noise)
    return limb_scale(ratios)
