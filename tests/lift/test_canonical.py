import numpy as np
import pytest

from pkmodel.common.skeleton import JOINT_INDEX, NUM_JOINTS, add_derived_joints
from pkmodel.lift.canonical import canonical_frame, hip_width, to_canonical


def standing_body(facing_camera: bool = True) -> np.ndarray:
    """A person 3 m in front of the camera (x right, y down, z forward), 17 joints, metres."""
    p = np.zeros((NUM_JOINTS, 3))
    side = 1.0 if facing_camera else -1.0  # facing the camera: the left side is at image right
    coords = {
        "nose": (0, -0.65, -0.1), "left_eye": (0.03, -0.68, -0.08), "right_eye": (-0.03, -0.68, -0.08),
        "left_ear": (0.07, -0.66, 0), "right_ear": (-0.07, -0.66, 0),
        "left_shoulder": (0.19, -0.45, 0), "right_shoulder": (-0.19, -0.45, 0),
        "left_elbow": (0.22, -0.18, 0.02), "right_elbow": (-0.22, -0.18, 0.02),
        "left_wrist": (0.24, 0.05, -0.05), "right_wrist": (-0.24, 0.05, -0.05),
        "left_hip": (0.1, 0.0, 0), "right_hip": (-0.1, 0.0, 0),
        "left_knee": (0.11, 0.45, -0.02), "right_knee": (-0.11, 0.45, -0.02),
        "left_ankle": (0.12, 0.88, 0.03), "right_ankle": (-0.12, 0.88, 0.03),
    }  # fmt: skip
    for name, (x, y, z) in coords.items():
        p[JOINT_INDEX[name]] = (side * x, y, 3.0 + side * z)
    return p


def random_rotations(n: int, rng) -> np.ndarray:
    q = rng.normal(size=(n, 4))
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    w, x, y, z = q.T
    return np.stack([
        np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)], -1),
        np.stack([2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)], -1),
        np.stack([2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)], -1),
    ], 1)  # fmt: skip


def test_facing_camera_axes():
    origin, rot = canonical_frame(standing_body())
    np.testing.assert_allclose(origin, [0, 0, 3.0])
    np.testing.assert_allclose(rot, np.diag([1.0, -1.0, -1.0]), atol=1e-12)
    local, _, _ = to_canonical(standing_body())
    assert local[JOINT_INDEX["left_hip"], 0] > 0  # x: toward the subject's left
    assert local[JOINT_INDEX["nose"], 1] > 0.6  # y: up
    assert local[JOINT_INDEX["nose"], 2] > 0  # z: forward, the nose is in front
    # Turned away from the camera: forward is now +z of the camera.
    _, rot_back = canonical_frame(standing_body(facing_camera=False))
    np.testing.assert_allclose(rot_back[2], [0, 0, 1.0], atol=1e-12)


def test_random_poses_right_handed_and_invariant():
    rng = np.random.default_rng(0)
    base = standing_body() + rng.normal(0, 0.02, (NUM_JOINTS, 3))
    rots = random_rotations(200, rng)
    shifts = rng.uniform(-2, 2, (200, 1, 3))
    poses = np.einsum("nij,kj->nki", rots, base) + shifts
    local, origin, rot = to_canonical(poses)
    dets = np.linalg.det(rot)
    np.testing.assert_allclose(dets, 1.0, atol=1e-9)
    np.testing.assert_allclose(
        rot @ np.swapaxes(rot, 1, 2), np.broadcast_to(np.eye(3), rot.shape), atol=1e-9
    )
    # the canonical pose does not depend on where the camera was
    np.testing.assert_allclose(local, np.broadcast_to(local[0], local.shape), atol=1e-9)
    # a mirrored input still yields a rotation, never a reflection
    mirrored = poses * np.array([-1.0, 1.0, 1.0])
    np.testing.assert_allclose(np.linalg.det(canonical_frame(mirrored)[1]), 1.0, atol=1e-9)


def test_hips_missing_uses_shoulders():
    rng = np.random.default_rng(1)
    rots = random_rotations(50, rng)
    poses = np.einsum("nij,kj->nki", rots, standing_body())
    one_hip = poses.copy()
    one_hip[:, JOINT_INDEX["right_hip"]] = np.nan
    origin, rot = canonical_frame(one_hip)
    np.testing.assert_allclose(np.linalg.det(rot), 1.0, atol=1e-9)
    assert np.isnan(origin).all()  # the pelvis needs both hips
    # shoulders are parallel to the hips in this body: the same axes as with both hips
    np.testing.assert_allclose(rot, canonical_frame(poses)[1], atol=1e-9)
    no_hips = poses.copy()
    no_hips[:, [JOINT_INDEX["left_hip"], JOINT_INDEX["right_hip"]]] = np.nan
    _, rot = canonical_frame(no_hips)
    ok = np.isfinite(rot).all(axis=(1, 2))
    assert ok.mean() > 0.9  # only shoulders almost parallel to the camera's up fail
    np.testing.assert_allclose(np.linalg.det(rot[ok]), 1.0, atol=1e-9)
    np.testing.assert_allclose(rot[ok, 0], canonical_frame(poses)[1][ok, 0], atol=1e-9)


def test_without_shoulders_up_is_the_cameras_up():
    """Both hips but no shoulder (or no hip but both shoulders): "up" is the camera's up, -y.
    Upright facing the camera that is the frame of the whole body, diag(1, -1, -1)."""
    for missing in (("left_shoulder", "right_shoulder"), ("left_hip", "right_hip")):
        pose = standing_body()
        pose[[JOINT_INDEX[n] for n in missing]] = np.nan
        _, rot = canonical_frame(pose)
        np.testing.assert_allclose(rot, np.diag([1.0, -1.0, -1.0]), atol=1e-12)
        assert np.linalg.det(rot) == pytest.approx(1.0)


def test_impossible_frames_are_nan_and_extended_joints_work():
    pose = standing_body()
    pose[[JOINT_INDEX[n] for n in ("left_hip", "right_hip", "left_shoulder")]] = np.nan
    origin, rot = canonical_frame(pose)
    assert np.isnan(origin).all() and np.isnan(rot).all()
    local, _, _ = to_canonical(pose)
    assert np.isnan(local).all()
    ext = add_derived_joints(standing_body())  # 19 joints: pelvis maps to the origin
    local, _, _ = to_canonical(ext)
    np.testing.assert_allclose(local[17], 0.0, atol=1e-12)


def turned(body: np.ndarray, yaw_deg: float) -> np.ndarray:
    """``body`` turned by ``yaw_deg`` about the vertical axis through its pelvis."""
    a = np.radians(yaw_deg)
    rot = np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])
    pelvis = np.array([0.0, 0.0, 3.0])
    return (body - pelvis) @ rot.T + pelvis


def hide_far_hip(body: np.ndarray) -> np.ndarray:
    """What depth gives for a hidden far hip: its pixel, at the near hip's depth (the surface
    in front of it)."""
    p = body.copy()
    lh, rh = JOINT_INDEX["left_hip"], JOINT_INDEX["right_hip"]
    far, near = (lh, rh) if p[lh, 2] > p[rh, 2] else (rh, lh)
    p[far] *= p[near, 2] / p[far, 2]  # along its ray
    return p


def rotation_angle_deg(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    trace = np.trace(a @ np.swapaxes(b, -1, -2), axis1=-2, axis2=-1)
    return np.degrees(np.arccos(np.clip((trace - 1) / 2, -1, 1)))


def test_hip_prior_recovers_the_turn_of_a_hidden_hip():
    yaws = np.arange(-170, 171, 10.0)
    truth = np.stack([turned(standing_body(), y) for y in yaws])
    side = (np.abs(yaws) >= 40) & (np.abs(yaws) <= 140)  # the far hip is hidden
    seen = np.stack([hide_far_hip(b) if s else b for b, s in zip(truth, side, strict=True)])
    seen[np.abs(yaws) > 90, JOINT_INDEX["nose"]] = np.nan  # the face is not seen from behind
    true_rot = canonical_frame(truth)[1]
    plain = rotation_angle_deg(canonical_frame(seen)[1], true_rot)
    prior = rotation_angle_deg(canonical_frame(seen, hip_width=0.2)[1], true_rot)
    # The hidden hip turns "right" toward the image plane; at 90 degrees both hips are one
    # point and there is no frame at all.
    assert np.nanmin(plain[side]) > 25 and np.isnan(plain[np.abs(yaws) == 90]).all()
    # With the true width: exact once the hips span under half of it (60-120 degrees, facing
    # the camera or turned away), closer between, untouched where both hips are in view.
    turned_far = (np.abs(yaws) >= 60) & (np.abs(yaws) <= 120)
    assert prior[turned_far].max() < 1e-6
    assert (prior[side] < np.nan_to_num(plain[side], nan=180) - 5).all()
    np.testing.assert_allclose(prior[~side], plain[~side], atol=1e-9)
    # A width 10% off leaves the turned views within 9 degrees.
    assert (
        rotation_angle_deg(canonical_frame(seen, hip_width=0.18)[1], true_rot)[turned_far].max() < 9
    )
    assert np.allclose(np.linalg.det(canonical_frame(seen, hip_width=0.2)[1]), 1.0)
    # The pelvis comes from the completed hips too.
    origin = canonical_frame(seen, hip_width=0.2)[0]
    np.testing.assert_allclose(
        origin[turned_far], np.broadcast_to([0, 0, 3.0], origin[turned_far].shape), atol=1e-9
    )


def test_hip_width_is_the_widest_span_across_the_view():
    yaws = np.linspace(-80, 80, 33)
    frames = np.stack([hide_far_hip(turned(standing_body(), y)) for y in yaws])
    assert abs(hip_width(frames) - 0.2) < 0.002  # facing the camera shows the whole width
    frames[:, JOINT_INDEX["left_hip"]] = np.nan
    assert np.isnan(hip_width(frames))
