"""The per-take skeleton (pkmodel.lift.skeleton): a walking, turning body built from the synthetic
humanoid, measured exactly except where a test hides a joint, drops its depth or lets a side
view's far hip take the near one's depth. The skeleton must leave every good measurement as it
is, put the bad ones back within centimetres and say why it moved each one."""

from __future__ import annotations

import numpy as np
import pytest

from pkmodel.common.camera import Intrinsics
from pkmodel.common.camera import project as camera_project
from pkmodel.common.skeleton import JOINT_INDEX
from pkmodel.config import load_config
from pkmodel.data.synthetic.humanoid import gait_pose, pose_body, rotation_y, sample_body
from pkmodel.lift.canonical import canonical_frame
from pkmodel.lift.pipeline import bone_spread, canonical_pose
from pkmodel.lift.skeleton import (
    BONE_GROUPS,
    SOURCE_CODES,
    TORSO_JOINTS,
    fit_skeleton,
    lengths_between,
    rays,
)

INTR = Intrinsics(fx=300.0, fy=300.0, cx=160.0, cy=120.0, width=320, height=240)
T = 40
LW, RK, LH, RH = (JOINT_INDEX[n] for n in ("left_wrist", "right_knee", "left_hip", "right_hip"))
HIDDEN = range(10, 20)  # the left wrist behind something 0.3 m nearer
NO_DEPTH = range(25, 30)  # the right knee without depth
SIDE = range(32, 40)  # turned away, the far (left) hip measured at the near one's depth


def walk() -> tuple[np.ndarray, np.ndarray]:
    """(T, 17, 3) camera-frame joints of a person walking on the spot 3 m away while turning
    from facing the camera to a side view (90 degrees), and the timestamps."""
    shape = sample_body(np.random.default_rng(3))
    t = np.arange(T) / 30.0
    joints = []
    for i, ti in enumerate(t):
        body = pose_body(shape, gait_pose(2 * np.pi * 0.9 * ti, 25.0, 20.0, 25.0, 4.0)).joints
        yaw = np.radians(90.0 * i / (T - 1))
        p = body @ rotation_y(yaw).T
        joints.append(np.stack([p[:, 0], -p[:, 1], -p[:, 2]], axis=1) + [0.0, 0.1, 3.0])
    return np.array(joints), t


def project(joints: np.ndarray) -> np.ndarray:
    return camera_project(joints, INTR)  # pkmodel's pixel convention, as the pipeline's 2D


@pytest.fixture(scope="module")
def scene():
    truth, t = walk()
    keypoints = project(truth)
    measured = truth.copy()
    for f in HIDDEN:
        ray = measured[f, LW] / np.linalg.norm(measured[f, LW])
        measured[f, LW] -= 0.3 * ray
    measured[list(NO_DEPTH), RK] = np.nan
    for f in SIDE:  # the far hip's pixel shows the near hip's side: its depth
        ray = rays(keypoints[f : f + 1, LH : LH + 1], INTR)[0, 0]
        measured[f, LH] = ray * np.linalg.norm(measured[f, RH])
    fit = fit_skeleton(measured, keypoints, INTR, t)
    return truth, measured, keypoints, t, fit


def test_good_measurements_stay_exactly(scene):
    truth, measured, _, _, fit = scene
    bad = np.zeros(fit.measured.shape, dtype=bool)
    bad[list(HIDDEN), LW] = bad[list(NO_DEPTH), RK] = bad[list(SIDE), LH] = True
    kept = fit.source == SOURCE_CODES["measured"]
    # nothing that was right moved, and what the skeleton kept is bit for bit the input
    assert kept[~bad].all()
    np.testing.assert_array_equal(fit.joints[kept], measured[kept])
    assert fit.measured[~bad].all() and not fit.inferred[~bad].any()


def test_hidden_missing_and_side_view_joints_are_placed_and_labelled(scene):
    truth, measured, _, _, fit = scene
    hidden = np.linalg.norm(fit.joints[list(HIDDEN), LW] - truth[list(HIDDEN), LW], axis=-1)
    missing = np.linalg.norm(fit.joints[list(NO_DEPTH), RK] - truth[list(NO_DEPTH), RK], axis=-1)
    side = np.linalg.norm(fit.joints[list(SIDE), LH] - truth[list(SIDE), LH], axis=-1)
    before = np.linalg.norm(measured[list(SIDE), LH] - truth[list(SIDE), LH], axis=-1)
    assert (fit.source[list(HIDDEN), LW] == SOURCE_CODES["hidden"]).all()
    assert (fit.source[list(NO_DEPTH), RK] == SOURCE_CODES["missing"]).all()
    assert (fit.source[list(SIDE), LH] == SOURCE_CODES["hidden"]).all()
    assert hidden.max() < 0.03, hidden  # 0.3 m before
    assert missing.max() < 0.03, missing  # no 3D at all before
    assert side.max() < 0.04 and before.min() > 0.1, (side, before)
    # a pixel's ray is the one projection and back-projection use (pixel centres at +0.5)
    np.testing.assert_allclose(
        rays(project(truth), INTR), truth / np.linalg.norm(truth, axis=-1, keepdims=True),
        atol=1e-12,
    )  # fmt: skip
    # every placed joint lies on its own pixel's ray
    placed = fit.inferred
    u = rays(scene[2], INTR)[placed]
    p = fit.joints[placed]
    np.testing.assert_allclose(np.cross(p, u), 0.0, atol=1e-9)


def test_bone_lengths_are_the_bodys(scene):
    truth, *_, fit = scene
    true = lengths_between(truth, np.ones(truth.shape[:2], dtype=bool))
    for name in ("upper_arm", "forearm", "thigh", "shin", "torso_side"):
        assert fit.lengths[name] == pytest.approx(true[name], rel=0.03), name
    for name in ("shoulders", "hips"):  # from the view across: a turning body shows them
        assert fit.lengths[name] == pytest.approx(true[name], rel=0.08), name
    assert set(fit.lengths) == set(BONE_GROUPS)


def test_spread_drops_and_the_canonical_frame_follows_the_fitted_torso(scene):
    truth, measured, _, _, fit = scene
    lift = load_config(None, [], {"lift.hip_prior": False}, env={}).lift
    before, after = bone_spread(measured), bone_spread(fit.joints)
    assert np.mean(list(after.values())) < 0.3 * np.mean(list(before.values()))
    # the side view's far hip no longer turns the frame (without lift.hip_prior's completion):
    # rotation error against the truth's
    _, r_true = canonical_frame(truth)
    angle = {}
    for name, torso in (("measured", None), ("skeleton", fit.torso)):
        rotation = canonical_pose(fit.joints if torso is not None else measured, lift, torso)[3]
        cos = (np.trace(rotation @ np.swapaxes(r_true, 1, 2), axis1=1, axis2=2) - 1) / 2
        angle[name] = np.degrees(np.arccos(np.clip(cos[list(SIDE)], -1, 1)))
    assert angle["skeleton"].max() < 10.0 < angle["measured"].mean(), angle
    assert np.isfinite(fit.torso[list(SIDE)]).all()
    assert fit.torso.shape == (T, len(TORSO_JOINTS), 3)


def test_without_2d_a_joint_has_no_3d_and_extra_joints_pass_through(scene):
    truth, measured, keypoints, t, _ = scene
    kp = keypoints.copy()
    kp[5, LW] = np.nan
    extra = np.concatenate([measured, measured[:, :2]], axis=1)  # 19 joints
    fit = fit_skeleton(extra, np.concatenate([kp, kp[:, :2]], axis=1), INTR, t)
    assert fit.source[5, LW] == SOURCE_CODES["none"] and np.isnan(fit.joints[5, LW]).all()
    np.testing.assert_array_equal(fit.joints[:, 17:], measured[:, :2])
    with pytest.raises(ValueError, match="expected"):
        fit_skeleton(measured[:, :10], keypoints[:, :10], INTR, t)


def test_a_face_point_out_of_the_heads_reach_is_placed_and_the_rest_of_the_face_kept(scene):
    """The background seen past a small head (a phone's coarse depth) puts a face point metres
    behind the body; it is placed on its ray beside the face's other points. A face point a
    little off (5 cm) keeps its depth, and one without depth gets none."""
    truth, measured, keypoints, t, _ = scene
    nose, left_eye, right_ear = (JOINT_INDEX[n] for n in ("nose", "left_eye", "right_ear"))
    far, off, gone = range(2, 8), range(2, 8), range(20, 24)
    m = measured.copy()
    for f in far:
        m[f, nose] *= 1.0 + 1.5 / np.linalg.norm(m[f, nose])  # 1.5 m farther along its ray
    for f in off:
        m[f, left_eye] *= 1.0 + 0.05 / np.linalg.norm(m[f, left_eye])
    m[list(gone), right_ear] = np.nan
    fit = fit_skeleton(m, keypoints, INTR, t)
    placed = fit.joints[list(far), nose]
    error = np.linalg.norm(placed - truth[list(far), nose], axis=-1)
    assert (fit.source[list(far), nose] == SOURCE_CODES["implausible"]).all()
    assert error.max() < 0.12, error  # 1.5 m before; the face's other points are ~8 cm behind
    np.testing.assert_allclose(
        np.cross(placed, rays(keypoints, INTR)[list(far), nose]), 0.0, atol=1e-9
    )
    assert (fit.source[list(off), left_eye] == SOURCE_CODES["measured"]).all()
    np.testing.assert_array_equal(fit.joints[list(off), left_eye], m[list(off), left_eye])
    assert (fit.source[list(gone), right_ear] == SOURCE_CODES["none"]).all()
    assert np.isnan(fit.joints[list(gone), right_ear]).all()
    # the whole face far from the neck (here 0.8 m nearer, so that the bones' trust keeps the
    # shoulders): the shoulders are as likely to be the wrong ones (a network's 2D on the
    # background), so the face keeps every depth
    whole = measured.copy()
    face = [JOINT_INDEX[n] for n in ("nose", "left_eye", "right_eye", "left_ear", "right_ear")]
    for f in far:
        whole[f, face] *= 1.0 - 0.8 / np.linalg.norm(whole[f, face], axis=-1, keepdims=True)
    kept = fit_skeleton(whole, keypoints, INTR, t)
    cells = np.ix_(list(far), face)
    assert (kept.source[cells] == SOURCE_CODES["measured"]).all()
    np.testing.assert_array_equal(kept.joints[cells], whole[cells])
    # every face point with a depth far behind the neck (the wall seen past a head a depth
    # pixel or two across; the ears without depth): placed where the rays pass nearest the
    # neck, about the head's size off
    wall = measured.copy()
    front = face[:3]
    for f in far:
        wall[f, front] *= 1.0 + 2.5 / np.linalg.norm(wall[f, front], axis=-1, keepdims=True)
        wall[f, face[3:]] = np.nan
    moved = fit_skeleton(wall, keypoints, INTR, t)
    cells = np.ix_(list(far), front)
    assert (moved.source[cells] == SOURCE_CODES["implausible"]).all()
    error = np.linalg.norm(moved.joints[cells] - truth[cells], axis=-1)
    assert error.max() < 0.25, error  # 2.5 m before
    # the same far nose without the shoulders: nothing to judge it by, it keeps its depth
    m[:, list(TORSO_JOINTS[:2])] = np.nan
    kp = keypoints.copy()
    kp[:, list(TORSO_JOINTS[:2])] = np.nan
    alone = fit_skeleton(m, kp, INTR, t)
    assert (alone.source[list(far), nose] == SOURCE_CODES["measured"]).all()


def test_noisy_ends_do_not_lengthen_the_bones():
    """Depth noise along the rays lengthens a bone on average; with the ends' noise and a first
    estimate of the lengths, only pairs with noise under a quarter of the bone count."""
    truth, _ = walk()
    rng = np.random.default_rng(0)
    noisy = truth.copy()
    noisy[8:] *= 1.0 + 0.3 * rng.standard_normal(noisy[8:].shape[:2])[..., None] / 3.0  # 0.3 m
    noise = np.zeros(truth.shape[:2])
    noise[8:] = 0.3
    trusted = np.ones(truth.shape[:2], dtype=bool)
    true = lengths_between(truth, trusted)
    kept = lengths_between(noisy, trusted, noise, true)
    inflated = lengths_between(noisy, trusted)
    for name in ("upper_arm", "forearm", "thigh", "shin"):
        assert kept[name] == pytest.approx(lengths_between(truth[:8], trusted[:8])[name])
        assert inflated[name] > 1.05 * true[name], name  # 0.3 m of noise on 0.25-0.45 m bones


def test_a_depth_far_behind_the_body_does_not_excuse_itself_with_its_own_noise(scene):
    """On a noisy take (depth sd 0.02 m at 1 m: 0.18 m at 3 m) a wrist whose pixel sees a wall
    10 m behind: its own range's noise (3.4 m at 13 m) made its forearm look consistent enough
    to keep it; the elbow's noise does not, and the wrist is placed at the forearm's length.
    (Nearer walls still keep it: placing a joint in front of the surface its pixel shows costs
    more than a bone a few tolerances off.)"""
    truth, _, keypoints, t, _ = scene
    rng = np.random.default_rng(1)
    sd = 0.02 * np.linalg.norm(truth, axis=-1) ** 2
    m = (
        truth
        * (1.0 + sd * rng.standard_normal(sd.shape) / np.linalg.norm(truth, axis=-1))[..., None]
    )
    wall = range(30, 34)
    nose = JOINT_INDEX["nose"]
    behind = range(20, 24)  # and a nose 1.2 m behind, out of the head's reach
    for f in wall:
        m[f, LW] *= 1.0 + 10.0 / np.linalg.norm(m[f, LW])
    for f in behind:
        m[f, nose] = truth[f, nose] * (1.0 + 1.2 / np.linalg.norm(truth[f, nose]))
    fit = fit_skeleton(m, keypoints, INTR, t)
    # the nose is judged with the neck's noise, not with its own range's (0.35 m at 4.2 m)
    assert (fit.source[list(behind), nose] == SOURCE_CODES["implausible"]).all()
    assert 0.01 < fit.noise_m_at_1m < 0.04
    assert (fit.source[list(wall), LW] == SOURCE_CODES["implausible"]).all()
    error = np.linalg.norm(fit.joints[list(wall), LW] - truth[list(wall), LW], axis=-1)
    assert error.max() < 0.3, error  # 10 m before; the elbow itself is ~0.2 m off


def test_a_torso_joint_far_in_front_of_a_sure_pose_is_hidden_whatever_its_bones_say(
    scene, monkeypatch
):
    """On a phone's depth (sd 4 cm), a far shoulder sampled on the near side's surface, 0.25 m
    in front, whose bones the tolerances let fit: the pose, sure from the other three torso
    joints, places it. It keeps its depth when the pose is not sure (the other pose as good, or
    only one other joint close to it), when its depth is noisier than the band, and on clean
    depth (sd at the 1 cm floor), where bones that fit outrank the coarse template."""
    from pkmodel.lift import skeleton

    truth, _, keypoints, t, _ = scene
    rs = JOINT_INDEX["right_shoulder"]
    f = 12  # turned 27 degrees: all four torso joints in view

    def torso(change=lambda fitter: None, sd=0.04, front=0.25):
        m = truth.copy()
        m[f, rs] -= front * m[f, rs] / np.linalg.norm(m[f, rs])
        fitter = skeleton._Fitter(m, keypoints, INTR, t, None)
        fitter.sigma[f] = sd
        fitter.trusted[f, rs] = True  # its bones vouch for it
        change(fitter)
        fitter.torso(f)
        return fitter.source[f, rs], fitter.out[f, rs], m[f, rs]

    source, point, _ = torso()
    assert source == SOURCE_CODES["hidden"]
    assert np.linalg.norm(point - truth[f, rs]) < 0.03  # 0.25 m before
    source, point, m = torso(sd=skeleton.MIN_NOISE_M)  # clean depth: the bones keep it
    assert source == SOURCE_CODES["measured"] and np.array_equal(point, m)

    def noisy(fitter):  # 0.45 m in front is beyond even this sd's band (0.06 m + 2 sd)
        fitter.sigma[f, rs] = skeleton.TORSO_HIDDEN_M + 0.01

    assert torso(noisy, front=0.45)[0] == SOURCE_CODES["measured"]
    monkeypatch.setattr(skeleton, "POSE_MARGIN", np.inf)  # no pose is ever sure
    assert torso()[0] == SOURCE_CODES["measured"]

    def no_hips(fitter):  # the hips without depth: only the left shoulder vouches
        fitter.p[f, [LH, RH]] = np.nan
        fitter.ranges[f, [LH, RH]] = np.nan

    monkeypatch.setattr(skeleton, "POSE_MARGIN", 0.0)  # (both poses fit one shoulder alike)
    assert torso(no_hips)[0] == SOURCE_CODES["measured"]


def test_the_torso_poses_are_chosen_over_the_take(scene, monkeypatch):
    """Each frame has two torso poses; the take's choice weighs their costs against moving
    between them (SWITCH_M): frames where the poses cost nearly the same (most torso joints
    hidden) follow the frames where one is clearly right, a clear change of pose is taken, and
    a frame without poses starts afresh."""
    from pkmodel.lift import skeleton

    truth, _, keypoints, t, _ = scene
    quad = truth[0, list(TORSO_JOINTS)]
    mirrored = quad + [0.0, 0.0, 0.25]  # the other pose, 25 cm off
    clear, unsure, other = [(0.0, 5.0)], [(4.0, 3.7)], [(9.0, 0.0)]
    costs = clear * 5 + unsure * 5 + clear * 3 + other * 5 + [None] + [(1.0, 0.0)] * 2

    def candidates(self, f):
        if f >= len(costs) or costs[f] is None:
            return [], []
        return [(costs[f][0], quad), (costs[f][1], mirrored)], list(costs[f])

    monkeypatch.setattr(skeleton._Fitter, "_torso_candidates", candidates)
    fitter = skeleton._Fitter(truth, keypoints, INTR, t, None)
    fitter.plan_torso()
    plan = fitter.plan
    # frame by frame, 5-9 would take the mirrored pose (3.7 < 4.0); moving there and back costs
    # 2 x 0.25 / 0.1 = 5 against 5 x 0.3 saved
    assert plan[:13] == [0] * 13
    assert plan[13:18] == [1] * 5  # 9 per frame outweighs one move of 2.5
    assert plan[18] == -1 and plan[19:21] == [1, 1] and plan[21:] == [-1] * (T - 21)
    # the frame's fit takes the planned pose, where on its own it takes the cheaper, mirrored
    # one (which the measured depths do not vouch for: it falls back to the side view's rule)
    fitter.torso(6)
    np.testing.assert_array_equal(fitter.torso_pose[6], quad)
    fitter.plan = fitter.candidates = None
    fitter.torso(7)
    assert np.abs(fitter.torso_pose[7] - quad).max() > 0.02
    # fit_skeleton plans the take first
    fit = skeleton.fit_skeleton(truth, keypoints, INTR, t)
    np.testing.assert_array_equal(fit.torso[5:10], np.broadcast_to(quad, (5, 4, 3)))
    monkeypatch.setattr(skeleton, "SWITCH_M", 1.0)  # moving 25 cm costs 0.25: now it pays
    fitter.plan_torso()
    assert fitter.plan[:13] == [0] * 5 + [1] * 5 + [0] * 3


def test_joints_without_depth_on_a_take_too_short_for_its_noise_raise_no_warning(scene):
    """A take too short to measure its depth noise (noise 0) with joints that have no depth (a
    recording without labels lifted with ground-truth 2D, a joint the network missed): no
    0 x inf in the noise of the bone lengths, so no RuntimeWarning on ordinary runs."""
    import warnings

    truth, _, keypoints, t, _ = scene
    short, kp = truth[:2].copy(), keypoints[:2].copy()
    short[1, LW] = np.nan  # a joint without depth
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fit = fit_skeleton(short, kp, INTR, t[:2])
        assert fit.noise_m_at_1m == 0.0
        np.testing.assert_array_equal(fit.joints[0], short[0])
        empty = fit_skeleton(np.full_like(short, np.nan), np.full_like(kp, np.nan), INTR, t[:2])
    assert np.isnan(empty.joints).all() and (empty.source == SOURCE_CODES["none"]).all()


def test_a_hidden_joint_takes_the_crossing_the_evidence_points_to():
    """Of a ray's two crossings with a bone's sphere: never one in front of the surface the
    pixel shows (by more than 2 sds), then the one nearest the joint's range in nearby frames,
    else the farther one (a hidden joint is behind what hides it)."""
    from pkmodel.lift.skeleton import _choose_crossing

    nan = float("nan")
    assert _choose_crossing([1.0, 2.0], nan, 0.01, nan) == 2.0
    assert _choose_crossing([1.0, 2.0], nan, 0.01, 1.1) == 1.0
    assert _choose_crossing([1.0, 2.0], 1.5, 0.01, 1.1) == 2.0  # 1.0 is in front of the surface
    assert _choose_crossing([1.0, 1.9], 1.95, 0.05, nan) == 1.9  # within 2 sds of it
    assert _choose_crossing([1.0, 1.2], 1.5, 0.01, nan) is None


def test_bone_lengths_leave_out_frames_where_either_end_is_noisy():
    """Frames 5-9 measure the upper arm 0.45 m long with a noisy elbow (0.3 m): only the
    frames where both ends are quiet count, 0.30 m."""
    from pkmodel.lift.skeleton import lengths_between

    pts = np.zeros((10, 17, 3))
    pts[..., 2] = 2.0
    le, ls = JOINT_INDEX["left_elbow"], JOINT_INDEX["left_shoulder"]
    pts[:, le, 1] = 0.30
    pts[5:, le, 1] = 0.45
    trusted = np.zeros((10, 17), bool)
    trusted[:, [le, ls]] = True
    noise = np.zeros((10, 17))
    noise[5:, le] = 0.3
    from pkmodel.lift.skeleton import BONE_GROUPS

    lengths = lengths_between(pts, trusted, noise, dict.fromkeys(BONE_GROUPS, 0.3))
    assert lengths["upper_arm"] == pytest.approx(0.30)
