"""The take's limb radii from the limb widths in the depth maps (pkmodel.lift.widths)."""

from __future__ import annotations

import numpy as np
import pytest

from pkmodel.common.skeleton import JOINT_INDEX, NUM_JOINTS
from pkmodel.lift.pipeline import ground_truth_joints, lift_sequence
from pkmodel.lift.rgbd import find_sequences
from pkmodel.lift.widths import (
    MAX_FRAMES,
    MIN_SAMPLES,
    SCALE_RANGE,
    SCALED_JOINTS,
    WIDTH_JOINTS,
    limb_scale,
    profile_stride,
    scale_radius,
    width_profiles,
    width_ratios,
)

from .test_pipeline import RADII, lift_config, write_sequence

F = 100.0  # depth pixels per metre at 1 m
Z = 2.0  # the limb's surface, metres
WALL = 4.0


def _bar(width_px: float, *, size: int = 64, mixed: bool = False) -> np.ndarray:
    """A vertical bar ``width_px`` wide at ``Z`` in front of a wall, centred on column 32.0.
    ``mixed``: each pixel's depth is the average of what its footprint covers (a LiDAR's mixed
    pixels); else the surface at the pixel's centre."""
    depth = np.full((size, size), WALL, np.float32)
    left, right = 32.0 - width_px / 2, 32.0 + width_px / 2
    for col in range(size):
        if mixed:
            share = max(0.0, min(col + 1, right) - max(col, left))
        else:
            share = float(left <= col + 0.5 < right)
        depth[:, col] = share * Z + (1 - share) * WALL
    return depth


def _profiles(depth: np.ndarray, thigh_at: float | None = None):
    """Profiles of one frame with the left elbow at (32, 32) and its forearm straight down;
    ``thigh_at``: the right thigh drawn vertically at that column beside it."""
    kp = np.full((1, NUM_JOINTS, 2), np.nan)
    elbow, wrist = JOINT_INDEX["left_elbow"], JOINT_INDEX["left_wrist"]
    kp[0, elbow] = (32.0, 32.0)
    kp[0, wrist] = (32.0, 52.0)
    if thigh_at is not None:
        kp[0, JOINT_INDEX["right_hip"]] = (thigh_at, 10.0)
        kp[0, JOINT_INDEX["right_knee"]] = (thigh_at, 60.0)
    prof = width_profiles(depth[None], kp, np.array([0]), (F, F), np.full(NUM_JOINTS, 0.1))
    row = [p for p, (j, t) in enumerate(WIDTH_JOINTS) if (j, t) == (elbow, wrist)][0]
    return prof, row


def _ratio(
    depth: np.ndarray,
    radius: float,
    surface: float = Z,
    noise: float = 0.0,
    thigh_at: float | None = None,
) -> float:
    prof, row = _profiles(depth, thigh_at)
    z = np.full((1, len(WIDTH_JOINTS)), np.nan)
    z[0, row] = surface
    radii = np.full(len(WIDTH_JOINTS), radius)
    return float(width_ratios(prof, z, radii, noise)[0, row])


def _pixels(depth: np.ndarray, radius: float) -> float:
    """The width the profile measured, back in depth pixels at the joint's depth."""
    return _ratio(depth, radius) * 2 * radius * F / (Z + radius)


def test_a_limb_of_twice_the_radius_measures_one():
    # 10 pixels at 100 px per metre and 1 m: 0.2 m at the joint's depth (Z + r) for r = 0.2 / 1.9
    # (the width is taken at the joint, one radius behind the surface)
    assert _ratio(_bar(10.0), 0.2 / 1.9) == pytest.approx(1.0, abs=1e-9)
    assert _ratio(_bar(10.0), 0.1 / 1.9) == pytest.approx(1.95, abs=1e-9)  # half that radius
    assert _pixels(_bar(7.0), 0.1) == pytest.approx(7.0, abs=1e-9)
    # mixed edge pixels count for the limb's share of their footprint
    for w in (7.3, 9.5, 10.6):
        assert _pixels(_bar(w, mixed=True), 0.1) == pytest.approx(w, abs=0.3), w


def test_profiles_that_measure_nothing():
    width = 10.0
    assert np.isnan(_ratio(_bar(width), 0.1, surface=1.5))  # the joint's pixel is not its surface
    assert np.isnan(_ratio(_bar(40.0), 0.05))  # no edge within four radii (+ 3 px): not a limb
    depth = _bar(width)
    depth[:, 36] = 1.0  # something in front of the limb, next to the joint
    assert np.isnan(_ratio(depth, 0.1))
    depth = _bar(width)
    depth[:, 38:] = 0.0  # a hole beside the limb is an edge like the wall
    assert _ratio(depth, 0.1) == pytest.approx(_ratio(_bar(width), 0.1))
    # the wall within the edge's reach is not an edge: 2 radii + 3 noise sds at the joint
    near_wall = np.where(_bar(width) < WALL, Z, Z + 0.15).astype(np.float32)
    assert np.isnan(_ratio(near_wall, 0.1))  # 0.15 m behind: within 2 x 0.1
    assert _ratio(near_wall, 0.05) == pytest.approx(_ratio(_bar(width), 0.05))  # beyond 2 x 0.05
    assert np.isnan(_ratio(near_wall, 0.05, noise=0.01))  # ... but not beyond 0.1 + 3 x 0.04
    # no bone direction (the wrist's 2D missing): no profile
    kp = np.full((1, NUM_JOINTS, 2), np.nan)
    kp[0, JOINT_INDEX["left_elbow"]] = (32.0, 32.0)
    radii = np.full(NUM_JOINTS, 0.1)
    assert np.isnan(width_profiles(_bar(width)[None], kp, np.array([0]), (F, F), radii).depth).all()
    # another body part beside the limb in the picture (the thigh's outline, 0.1 m = 5 pixels
    # at 2 m around its line): where it begins within the limb's edge, the depth map cannot
    # show where the limb ends
    assert np.isnan(_ratio(_bar(width), 0.1, thigh_at=42.0))  # outline from column 37
    assert _ratio(_bar(width), 0.1, thigh_at=44.0) == pytest.approx(_ratio(_bar(width), 0.1))


def test_the_take_scale_is_a_median_within_range():
    assert limb_scale(np.full(MIN_SAMPLES - 1, 0.7)).scale == 1.0  # too few profiles
    ratios = np.concatenate([np.full(MIN_SAMPLES, 0.7), [np.nan] * 50, [5.0] * 5])
    scale = limb_scale(ratios)
    assert scale.scale == pytest.approx(0.7) and scale.samples == MIN_SAMPLES + 5
    assert limb_scale(np.full(MIN_SAMPLES, 0.1)).scale == SCALE_RANGE[0]
    assert limb_scale(np.full(MIN_SAMPLES, 3.0)).scale == SCALE_RANGE[1]
    radius = scale_radius(RADII, 0.5)
    np.testing.assert_allclose(radius[list(SCALED_JOINTS)], RADII[list(SCALED_JOINTS)] * 0.5)
    np.testing.assert_array_equal(radius[:5], RADII[:5])  # the face keeps its radii
    assert profile_stride(MAX_FRAMES) == 1 and profile_stride(MAX_FRAMES + 1) == 2


@pytest.mark.parametrize("build", [0.6, 1.4])
def test_a_thinner_or_heavier_body_gets_its_radii(build, tmp_path):
    # Ray-cast balls around the joints, the limbs' 0.6 / 1.4 times the config's radii.
    radii = RADII.copy()
    radii[5:] *= build
    write_sequence(tmp_path / "seq", frames=12, radii=radii)
    seq = find_sequences(tmp_path / "seq")[0]
    joints = ground_truth_joints(seq)
    vis = seq.ground_truth.keypoints_2d[..., 2] == 2
    errors = {}
    for widths in (True, False):
        result = lift_sequence(seq, joints, lift_config(smoothing="none", limb_widths=widths).lift)
        err = np.linalg.norm(result.joints - seq.ground_truth.joints_3d, axis=-1)[vis]
        errors[widths] = float(np.nanmean(err)) * 1000
        if widths:
            assert result.limb_scale.scale == pytest.approx(build, abs=0.04)
            # the arms hang beside the torso (the elbows within the hip's radius of the
            # shoulder-hip line): wrists and knees measure, 6 profiles x 12 frames
            assert result.limb_scale.samples == 72
            np.testing.assert_allclose(result.limb_radius, scale_radius(RADII, result.limb_scale.scale))  # fmt: skip
        else:
            assert result.limb_scale is None
            np.testing.assert_array_equal(result.limb_radius, RADII)
    # the config's radii leave the limbs 13-18 mm off; the measured ones a few mm
    assert errors[False] > 12 and errors[True] < 4.5 and errors[True] < 0.35 * errors[False]


def test_other_parts_are_found_where_sampling_finds_them():
    """The first sample inside another part's outline, found analytically (ray and capsule),
    is the one that testing every sample finds, or earlier: where the ray only grazes an
    outline between two samples (or leaves it before the first), sampling misses it."""
    from pkmodel.lift import widths

    rng = np.random.default_rng(0)
    n = 200
    kp = rng.uniform(0, 60, (n, NUM_JOINTS, 2))
    centre = rng.uniform(1.0, 4.0, (n, len(WIDTH_JOINTS)))
    radius = rng.uniform(0.02, 0.1, NUM_JOINTS)
    joints = np.array([j for j, _ in WIDTH_JOINTS])
    toward = np.array([t for _, t in WIDTH_JOINTS])
    bone = kp[:, toward] - kp[:, joints]
    along = bone / np.linalg.norm(bone, axis=-1, keepdims=True)
    across = np.stack([-along[..., 1], along[..., 0]], axis=-1)
    found = widths._beside(kp[:, joints], across, kp, centre, (F, F), radius)
    # every sample against every other part's capsule
    offsets = widths._OFFSETS
    pts = kp[:, joints, None, None, :] + (
        np.array([1.0, -1.0])[:, None, None] * offsets[None, :, None] * across[:, :, None, None, :]
    )
    near = np.zeros(pts.shape[:-1], dtype=bool)
    for a, b in widths.BODY_PARTS:
        r = widths.HEAD_RADIUS_M if (a, b) == (3, 4) else max(radius[a], radius[b])
        seg = (kp[:, b] - kp[:, a])[:, None, None, None, :]
        rel = pts - kp[:, a][:, None, None, None, :]
        t = np.clip((rel * seg).sum(-1) / (seg * seg).sum(-1), 0, 1)
        dist = np.linalg.norm(rel - t[..., None] * seg, axis=-1)
        own = (joints == a) | (joints == b)
        near |= (dist < (r * F / centre)[:, :, None, None]) & ~own[None, :, None, None]
    brute = np.where(near.any(-1), np.argmax(near, -1), len(offsets))
    assert (found <= brute).all() and (found == brute).mean() > 0.98
    assert (found < len(offsets)).mean() > 0.3  # the random parts do lie beside many profiles
