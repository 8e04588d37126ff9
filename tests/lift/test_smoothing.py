import math
from dataclasses import replace

import numpy as np
import pytest

from pkmodel.lift.smoothing import EmaFilter, OneEuroFilter, SmoothingParams, smooth_sequence


def reference_one_euro(xs, ts, min_cutoff, beta, d_cutoff):
    """Scalar One-Euro written from the paper, one sample at a time (the test's oracle)."""

    def alpha(cutoff, dt):
        tau = 1 / (2 * math.pi * cutoff)
        return 1 / (1 + tau / dt)

    out, x_prev, dx_prev, t_prev = [], None, 0.0, None
    for x, t in zip(xs, ts, strict=True):
        if x_prev is None:
            x_hat, dx_hat = x, 0.0
        else:
            dt = t - t_prev
            dx = (x - x_prev) / dt
            dx_hat = alpha(d_cutoff, dt) * dx + (1 - alpha(d_cutoff, dt)) * dx_prev
            cutoff = min_cutoff + beta * abs(dx_hat)
            x_hat = alpha(cutoff, dt) * x + (1 - alpha(cutoff, dt)) * x_prev
        out.append(x_hat)
        x_prev, dx_prev, t_prev = x_hat, dx_hat, t
    return np.array(out)


def test_ema_step_response_is_geometric():
    f = EmaFilter(alpha=0.55, max_gap_s=1.0)
    out = [f(0.0, np.zeros((1, 3)))[0, 0]]
    out += [f(0.033 * n, np.ones((1, 3)))[0, 0] for n in range(1, 6)]
    np.testing.assert_allclose(out, [0.0] + [1 - 0.45**n for n in range(1, 6)], atol=1e-15)
    assert out[1] == pytest.approx(0.55) and out[2] == pytest.approx(0.7975)


def test_one_euro_known_numbers():
    # x: 0 at t = 0, 1 at t = 0.1: speed 10, dx_hat = 3.8587 (alpha_d = 0.38587),
    # cutoff = 1 + 0.05 * 3.8587 = 1.19293 Hz, alpha = 0.428422: x_hat = 0.428422.
    f = OneEuroFilter(min_cutoff=1.0, beta=0.05, d_cutoff=1.0, max_gap_s=1.0)
    assert f(0.0, np.array([[0.0]]))[0, 0] == 0.0
    assert f(0.1, np.array([[1.0]]))[0, 0] == pytest.approx(0.42842217278963, abs=1e-12)


def test_one_euro_matches_scalar_reference_batched_over_joints():
    rng = np.random.default_rng(0)
    ts = np.cumsum(rng.uniform(0.02, 0.05, 60))  # irregular frame times
    xs = np.sin(ts * 3)[:, None, None] + rng.normal(0, 0.05, (60, 17, 3))
    params = SmoothingParams("one_euro", min_cutoff=0.8, beta=0.4, d_cutoff=1.2, max_gap_s=1.0)
    out = smooth_sequence(xs, ts, params)
    for j, d in [(0, 0), (5, 2), (16, 1)]:
        ref = reference_one_euro(xs[:, j, d], ts, 0.8, 0.4, 1.2)
        np.testing.assert_allclose(out[:, j, d], ref, atol=1e-12)
    # it smooths: frame-to-frame acceleration (jitter) drops by more than half
    assert np.abs(np.diff(out, 2, axis=0)).mean() < 0.5 * np.abs(np.diff(xs, 2, axis=0)).mean()


def test_constant_signal_passes_unchanged():
    xs = np.broadcast_to(np.array([1.0, -2.0, 3.5]), (20, 4, 3))
    ts = np.arange(20) / 30
    for method in ("ema", "one_euro", "none"):
        np.testing.assert_allclose(smooth_sequence(xs, ts, SmoothingParams(method)), xs)


@pytest.mark.parametrize(
    "make", [lambda: EmaFilter(0.55, 0.25), lambda: OneEuroFilter(1, 0.05, 1, 0.25)]
)
def test_gap_and_nan_reset_a_joint_only(make):
    f = make()
    f(0.0, np.zeros((2, 3)))
    f(1 / 30, np.zeros((2, 3)))
    # a NaN joint comes out NaN, the other one keeps filtering
    out = f(2 / 30, np.array([[np.nan] * 3, [1.0] * 3]))
    assert np.isnan(out[0]).all() and 0 < out[1, 0] < 1
    # after the NaN, joint 0 restarts from its raw sample; joint 1 keeps its history
    out = f(3 / 30, np.full((2, 3), 5.0))
    assert out[0, 0] == 5.0 and out[1, 0] < 5.0
    # a gap longer than max_gap_s resets every joint
    out = f(3 / 30 + 0.3, np.full((2, 3), -1.0))
    np.testing.assert_array_equal(out, np.full((2, 3), -1.0))
    # a gap just inside the limit does not
    out = f(3 / 30 + 0.3 + 0.2, np.full((2, 3), 1.0))
    assert (out < 1.0).all()


def test_timestamps_must_increase():
    f = OneEuroFilter()
    f(1.0, np.zeros((1, 3)))
    with pytest.raises(ValueError, match="timestamps must increase"):
        f(1.0, np.ones((1, 3)))


def test_smoothing_2d_keypoints_works_too():
    ts = np.arange(10) / 30
    xs = np.zeros((10, 17, 2))
    xs[5:] = 10.0
    out = smooth_sequence(xs, ts, SmoothingParams("ema", ema_alpha=0.5))
    assert out[5, 0, 0] == 5.0 and out[6, 0, 1] == 7.5


# --- offline smoothing ------------------------------------------------------------------------


def _offline(x, t, sigma=0.05, gap=0.25, **kw):
    from pkmodel.lift.smoothing import smooth_offline

    return smooth_offline(x, t, sigma, gap, **kw)


def test_offline_is_exact_on_quadratics_even_with_uneven_time_steps():
    """A local quadratic fit reproduces any quadratic trajectory (no lag, no bias) where its
    window is two-sided, and a line everywhere, the take's ends included."""
    rng = np.random.default_rng(0)
    t = np.cumsum(rng.uniform(0.02, 0.045, 60))
    x = np.stack([0.3 + 1.2 * t - 2.5 * t**2, -0.1 * t, 2.0 + 0.4 * t**2], axis=-1)[:, None, :]
    inner = (t > t[0] + 0.1) & (t < t[-1] - 0.1)  # two window sds (0.05 s) from the ends
    np.testing.assert_allclose(_offline(x, t)[inner], x[inner], atol=1e-9)
    line = np.stack([0.3 + 1.2 * t, -0.1 * t, 2.0 + 0.0 * t], axis=-1)[:, None, :]
    np.testing.assert_allclose(_offline(line, t), line, atol=1e-9)


def test_offline_fits_a_line_where_its_window_is_one_sided():
    """At a take's ends the window's weight lies on one side and a quadratic extrapolates the
    noise (on a steady motion its error at the first sample is 1.3 times a line's): a weighted line there, a
    weighted quadratic in the middle (Gaussian weights of sd 0.05 s, cut at 3 sd)."""
    from pkmodel.lift.smoothing import EDGE_LINE

    rng = np.random.default_rng(1)
    t = np.arange(40) / 30.0
    x = (np.sin(3 * t) + 0.1 * rng.standard_normal(40))[:, None, None]
    out = _offline(x, t, robust_passes=0)[:, 0, 0]

    def fit(i, degree):
        dt = t - t[i]
        w = np.exp(-0.5 * (dt / 0.05) ** 2) * (np.abs(dt) <= 0.15)
        return np.polyval(np.polyfit(dt, x[:, 0, 0], degree, w=np.sqrt(w)), 0.0)

    weights = [
        np.exp(-0.5 * ((t - t[i]) / 0.05) ** 2) * (np.abs(t - t[i]) <= 0.15) for i in (0, 1, 20)
    ]
    sides = [
        abs((w * (t - t[i])).sum() / w.sum()) / 0.05
        for w, i in zip(weights, (0, 1, 20), strict=True)
    ]
    assert sides[0] > EDGE_LINE > sides[1] > sides[2] == pytest.approx(0.0, abs=1e-9)
    assert out[0] == pytest.approx(fit(0, 1), abs=1e-9)
    assert out[1] == pytest.approx(fit(1, 2), abs=1e-9)
    assert out[20] == pytest.approx(fit(20, 2), abs=1e-9)
    # over many noisy takes of a steady motion the first sample's error is smaller with the
    # line (a phone's window, 0.225 s: 20 frames on one side); on a curved motion the line's
    # bias costs instead, the price where noise is small against the motion
    errs = []
    for seed in range(200):
        noise = 0.1 * np.random.default_rng(seed).standard_normal(40)
        y = (0.8 * t + noise)[:, None, None]
        first = _offline(y, t, sigma=0.225, robust_passes=0)[0, 0, 0]
        w = np.exp(-0.5 * (t / 0.225) ** 2) * (t <= 0.675)
        quad = np.polyval(np.polyfit(t, y[:, 0, 0], 2, w=np.sqrt(w)), 0.0)
        errs.append((abs(first), abs(quad)))  # the truth is 0 at t = 0
    line_err, quad_err = np.sqrt(np.mean(np.square(errs), axis=0))
    assert line_err < 0.75 * quad_err, (line_err, quad_err)


def test_offline_has_no_lag_where_one_euro_does():
    t = np.arange(60) / 30.0
    x = (0.8 * t)[:, None, None] * np.ones((1, 1, 3))  # a steady 0.8 m/s walk
    causal = smooth_sequence(x, t, SmoothingParams("one_euro", min_cutoff=1.0, beta=0.0))
    offline = _offline(x, t)
    assert np.abs(causal - x)[10:].mean() > 0.05  # One-Euro at 1 Hz trails by ~13 cm
    np.testing.assert_allclose(offline, x, atol=1e-9)


def test_offline_halves_jitter_of_noisy_motion_and_lowers_the_error():
    from pkmodel.lift.pipeline import accelerations

    rng = np.random.default_rng(1)
    t = np.arange(90) / 30.0
    truth = np.stack([0.3 * np.sin(2 * np.pi * 0.8 * t), 0.1 * np.cos(2 * np.pi * 0.5 * t), 2.5 + 0 * t], -1)[:, None, :]  # fmt: skip
    noisy = truth + rng.normal(0, 0.01, truth.shape)
    smooth = _offline(noisy, t)
    jitter = [accelerations(a, t).mean() for a in (noisy, smooth)]
    error = [np.linalg.norm(a - truth, axis=-1).mean() for a in (noisy, smooth)]
    assert jitter[1] < 0.25 * jitter[0], jitter
    assert error[1] < 0.7 * error[0], error


def test_offline_keeps_gaps_and_missing_samples():
    t = np.arange(40) / 30.0
    x = np.zeros((40, 2, 3))
    x[20:] = 1.0  # a jump across a gap
    x[12:20] = np.nan  # 8 frames (0.27 s) missing: longer than max_gap_s 0.25
    x[5, 1] = np.nan  # one sample of the second joint
    out = _offline(x, t)
    assert np.isnan(out[12:20]).all() and np.isnan(out[5, 1]).all()
    # the sides of a long gap are not blended: each stays exactly what it was
    np.testing.assert_allclose(out[:12, 0], 0.0, atol=1e-12)
    np.testing.assert_allclose(out[20:], 1.0, atol=1e-12)
    # a short gap (0.1 s) joins them: the step is smoothed across
    y = np.zeros((40, 1, 3))
    y[20:] = 1.0
    y[17:20] = np.nan
    joined = _offline(y, t, robust_passes=0)
    assert 0.01 < joined[16, 0, 0] < 0.5 and 0.5 < joined[20, 0, 0] < 0.99


def test_a_gap_splits_the_take_even_where_the_window_reaches_across_it():
    """At phone LiDAR's window (sd 0.225 s, cut at 0.675 s) the Gaussian alone reaches across
    a 0.3 s gap: only the split at gaps longer than max_gap_s keeps the two sides apart
    (with sd 0.05 s, as above, the window's cut did it on its own)."""
    t = np.arange(60) / 30.0
    x = np.zeros((60, 1, 3))
    x[25:34] = np.nan  # 9 frames missing: 0.3 s between the samples on each side
    before = _offline(x, t, sigma=0.225)
    moved = x.copy()
    moved[34:] += 3.0  # everything after the gap, 3 m away
    after = _offline(moved, t, sigma=0.225)
    np.testing.assert_array_equal(after[:25], before[:25])  # not one bit of it crosses
    np.testing.assert_allclose(after[34:], 3.0, atol=1e-12)
    # a gap of 0.2 s (under max_gap_s) is smoothed across: the step reaches the other side
    short = np.zeros((60, 1, 3))
    short[34:] = 3.0
    short[28:34] = np.nan
    joined = _offline(short, t, sigma=0.225, robust_passes=0)
    assert 0.05 < joined[27, 0, 0] < 1.5


def test_offline_robust_passes_ignore_a_lone_jump():
    t = np.arange(30) / 30.0
    x = np.zeros((30, 1, 3))
    x[15] = 0.3  # a hidden joint's depth for one frame
    plain, robust = _offline(x, t, robust_passes=0), _offline(x, t)
    assert np.abs(plain[14, 0]).max() > 0.05  # the plain fit drags the neighbours
    assert np.abs(robust[[13, 14, 16, 17], 0]).max() < 1e-3


def test_smooth_sequence_offline_and_weights():
    t = np.arange(20) / 30.0
    x = np.zeros((20, 1, 3))
    out = smooth_sequence(x, t, SmoothingParams("offline", offline_sigma_s=0.05))
    np.testing.assert_array_equal(out, x)
    # a zero-weight sample has no say in its neighbours' fits, but keeps its own estimate
    x[10] = 1.0
    w = np.ones((20, 1))
    w[10] = 0.0
    out = _offline(x, t, weights=w, robust_passes=0)
    np.testing.assert_allclose(out[[8, 9, 11, 12], 0], 0.0, atol=1e-12)
    np.testing.assert_allclose(out[10, 0], 0.0, atol=1e-12)


def test_offline_window_follows_the_takes_depth_noise():
    from dataclasses import replace

    from pkmodel.lift.pipeline import offline_window
    from pkmodel.lift.smoothing import offline_sigma_for

    assert offline_sigma_for(0.0003) == 0.075  # the synthetic exact sensor
    assert offline_sigma_for(0.004) == pytest.approx(0.12)
    assert (
        offline_sigma_for(0.0075) == pytest.approx(0.225)
        and offline_sigma_for(float("nan")) == 0.075
    )
    rng = np.random.default_rng(0)
    t = np.arange(60) / 30.0
    joints = np.stack([0 * t, 0 * t, 3.0 + 0.1 * t], -1)[:, None, :].repeat(17, 1)
    noisy = joints * (1 + rng.normal(0, 0.03, joints.shape[:2]))[..., None]  # 9 cm at 3 m
    auto = SmoothingParams("offline")
    assert offline_window(auto, joints).offline_sigma_s == 0.075
    assert offline_window(auto, noisy).offline_sigma_s == pytest.approx(0.225)
    assert offline_window(auto, joints).depth_noise_m < 1e-9
    assert offline_window(auto, noisy).depth_noise_m == pytest.approx(0.01, rel=0.2)  # at 1 m
    fixed = replace(auto, offline_sigma_s=0.02)
    assert offline_window(fixed, noisy).offline_sigma_s == 0.02  # a set window stays
    assert offline_window(SmoothingParams("one_euro"), noisy).offline_sigma_s == 0.0


def _ray_walk(exact_noise: float = 0.0):
    """Three joints walking toward the camera (z 3 -> 2 m) across the image, depth noise 3 cm;
    with ``exact_noise`` > 0, pixel noise of that many pixels too."""
    from pkmodel.common.camera import Intrinsics, backproject, project

    intr = Intrinsics(200.0, 200.0, 128.0, 128.0, 256, 256)
    rng = np.random.default_rng(3)
    t = np.arange(90) / 30.0
    pixels = np.stack([60 + 40 * t, 100 + 10 * t], -1)[:, None, :] + np.array([[0, 0], [30, 5], [60, -5]])  # fmt: skip
    depth = (3.0 - t / 3.0)[:, None].repeat(3, 1)
    truth = backproject(pixels, depth, intr)
    noisy_px = pixels + rng.normal(0, exact_noise, pixels.shape) if exact_noise else pixels
    noisy = backproject(noisy_px, depth + rng.normal(0, 0.03, depth.shape), intr)
    return intr, t, truth, noisy, pixels, project


def test_offline_smoothing_along_rays_keeps_exact_2d_and_smooths_depth():
    from pkmodel.lift.smoothing import smooth_along_rays

    intr, t, truth, noisy, pixels, project = _ray_walk()
    params = SmoothingParams("offline", offline_sigma_s=0.1)
    out = smooth_along_rays(noisy, t, params, intr, True)
    # every joint stays on the ray of its exact pixel
    np.testing.assert_allclose(project(out, intr), pixels, atol=1e-9)
    err_raw = np.linalg.norm(noisy - truth, axis=-1).mean()
    err = np.linalg.norm(out - truth, axis=-1).mean()
    assert err_raw > 0.02 and err < 0.4 * err_raw


def test_offline_smoothing_along_rays_smooths_network_2d_too():
    from pkmodel.lift.smoothing import smooth_along_rays

    intr, t, truth, noisy, pixels, project = _ray_walk(exact_noise=2.0)
    params = SmoothingParams("offline", offline_sigma_s=0.1)
    smoothed = smooth_along_rays(noisy, t, params, intr, False)
    kept = smooth_along_rays(noisy, t, params, intr, True)
    px_err = np.linalg.norm(project(smoothed, intr) - pixels, axis=-1).mean()
    px_kept = np.linalg.norm(project(kept, intr) - pixels, axis=-1).mean()
    assert px_kept > 2.0 and px_err < 0.6 * px_kept


def _on_ray(depth: np.ndarray):
    """One joint at one pixel, at ``depth`` (T,) metres: (camera-frame joints (T, 1, 3),
    intrinsics)."""
    from pkmodel.common.camera import Intrinsics, backproject

    intr = Intrinsics(200.0, 200.0, 128.0, 128.0, 256, 256)
    pixels = np.tile([[100.0, 120.0]], (len(depth), 1))[:, None, :]
    return backproject(pixels, np.asarray(depth)[:, None], intr), intr


def _walking_joint(*hidden: slice):
    """A joint walking away over 40 frames at 30 fps (z = 2 + 0.1 t, one pixel), measured 1.6 m
    deep in the ``hidden`` frames (something in front of it): (t, true z, joints, intrinsics)."""
    t = np.arange(40) / 30.0
    truth = 2.0 + 0.1 * t
    measured = truth.copy()
    for frames in hidden:
        measured[frames] = 1.6
    return t, truth, *_on_ray(measured)


def test_depth_jumps_find_what_passed_in_front():
    from pkmodel.lift.smoothing import OCCLUDED_WEIGHT, depth_jumps

    t = np.arange(40) / 30.0
    z = np.full((40, 5), 2.0)
    z[15:20, 0], z[30, 0] = 1.6, 5.0  # something in front for 5 frames; the wall for one
    z[0:5, 1] = 1.6  # nearer at the start: one side only, nothing says which is right
    z[15:, 2] = 1.6  # a step: nearer after it for the rest of the take
    z[15:20, 3], z[20:30, 3] = 1.6, np.nan  # nearer, then a gap longer than max_gap_s
    z[:, 4] += np.random.default_rng(0).normal(0, 0.02, 40)  # noise within the threshold
    w = depth_jumps(z, t, 0.0, 0.25).weights  # no noise: a jump is more than JUMP_M, 0.1 m
    assert np.flatnonzero(w[:, 0] < 1).tolist() == [15, 16, 17, 18, 19, 30]
    assert (w[:, 1:] == 1).all() and set(np.unique(w)) == {OCCLUDED_WEIGHT, 1.0}
    # the noise may be per sample (it grows with the joint's range): 0.1 m of noise makes the
    # threshold 0.5 m, so 0.4 m is no jump for that joint; the wall (3 m) still is
    noise = np.zeros(z.shape)
    noise[:, 0] = 0.1
    assert np.flatnonzero(depth_jumps(z, t, noise, 0.25).weights[:, 0] < 1).tolist() == [30]


def test_depth_jumps_find_what_hides_a_joint_again_until_the_end():
    """Hidden, seen, hidden again at the same level to the end of the take (or the mirror at
    the start): the end stretch weighs OCCLUDED_WEIGHT too; not at another level, not when the
    hidden stretch is longer than the end one or shorter than HIDDEN_AGAIN_SAMPLES, and not
    where the skeleton placed the joint."""
    from pkmodel.lift.smoothing import HIDDEN_AGAIN_SAMPLES, OCCLUDED_WEIGHT, depth_jumps

    assert HIDDEN_AGAIN_SAMPLES == 3
    t = np.arange(40) / 30.0
    z = np.full((40, 7), 2.0)
    z[15:18, 0], z[20:, 0] = 1.6, 1.6  # hidden 15-17, seen 18-19, hidden again from 20
    z[:20, 1], z[22:25, 1] = 1.6, 1.6  # the mirror: hidden to 19, seen 20-21, hidden 22-24
    z[15:18, 2], z[20:, 2] = 1.6, 1.8  # the end 0.2 m off the hidden level: something else
    z[10:30, 3], z[32:, 3] = 1.6, 1.6  # hidden for 20 frames, the end only 8
    z[15:18, 4], z[20:, 4] = 1.6, 1.6  # as column 0, but the skeleton placed the end
    z[15:17, 5], z[19:, 5] = 1.6, 1.6  # hidden for 2 frames only
    z[15:18, 6], z[20:, 6] = 1.6, 1.6  # as column 0, the same depths in 0.05 m of noise
    measured = np.ones(z.shape, dtype=bool)
    measured[20:, 4] = False
    noise = np.zeros(z.shape)
    noise[:, 6] = 0.05  # the jump threshold 0.3 m: 0.4 m still jumps, but not "well nearer"
    w = depth_jumps(z, t, noise, 0.25, measured).weights
    down = [np.flatnonzero(w[:, n] < 1).tolist() for n in range(7)]
    assert down[0] == [15, 16, 17, *range(20, 40)]
    assert down[1] == [*range(20), 22, 23, 24]
    assert down[2] == down[4] == down[6] == [15, 16, 17]
    assert down[3] == list(range(10, 30))
    assert down[5] == [15, 16]
    assert set(np.unique(w)) == {OCCLUDED_WEIGHT, 1.0}


def test_offline_smoothing_keeps_the_frames_seen_between_two_occlusions():
    """A joint walking away (z = 2 + 0.1 t), hidden 0.4 m nearer in frames 15-17 and from
    frame 20 to the end, seen in 18-19: the seen frames keep their depth within 3 cm; fitted
    with the end stretch at full weight the one next to it is pulled more than 15 cm toward
    the hider."""
    from pkmodel.lift import smoothing

    t, truth, joints, intr = _walking_joint(slice(15, 18), slice(20, None))
    params = SmoothingParams("offline", offline_sigma_s=0.075)
    out = smoothing.smooth_along_rays(joints, t, params, intr, True)[:, 0, 2]
    assert np.abs(out[18:20] - truth[18:20]).max() < 0.03
    assert np.abs(out[:15] - truth[:15]).max() < 1e-6
    weights = np.ones((40, 1))
    weights[15:18] = smoothing.OCCLUDED_WEIGHT  # the interior stretch only, as before
    pulled = smoothing.smooth_offline(joints[..., 2:3], t, 0.075, 0.25, weights, 1)[:, 0, 0]
    assert np.abs(pulled[18:20] - truth[18:20]).max() > 0.15


def test_depth_jumps_break_where_the_depth_stays_at_another_level():
    """A one-sided step of at least SPLIT_SAMPLES samples on each side breaks the smoothing;
    a hidden stretch, a short excursion, a placed joint and a step within the noise do not."""
    from pkmodel.lift.smoothing import SPLIT_SAMPLES, depth_jumps

    assert SPLIT_SAMPLES == 5
    t = np.arange(40) / 30.0
    z = np.full((40, 7), 2.0)
    z[15:20, 0] = 1.6  # hidden for 5 frames: weighed down, bridged, no break
    z[0:5, 1] = 1.6  # nearer for the first 5 frames: a break where it ends
    z[15:, 2] = 1.6  # nearer from frame 15 to the end: a break there
    z[15:20, 3], z[20:30, 3] = 1.6, np.nan  # 5 nearer frames, then a gap: a break at 15
    z[36:, 4] = 1.6  # the last 4 frames only: too short to say the joint stays there
    z[15:, 5] = 1.6  # as column 2, but the skeleton placed the joint after the step
    z[15:, 6] = 1.7  # 0.3 m, over the jump threshold (0.22 m) but under the break's (0.34)
    measured = np.ones(z.shape, dtype=bool)
    measured[15:, 5] = False
    noise = np.zeros(z.shape)
    noise[:, 6] = 0.03
    jumps = depth_jumps(z, t, noise, 0.25, measured)
    breaks = [np.flatnonzero(jumps.breaks[:, n]).tolist() for n in range(7)]
    assert breaks == [[], [5], [15], [15], [], [], []]
    assert (jumps.weights[:, 1:] == 1).all()


def test_offline_smoothing_keeps_each_side_of_a_step():
    """A joint walking away (z = 2 + 0.1 t) that something hides from frame 20 to the end of
    the take (its depth 0.4 m nearer there): the visible frames before the step keep their
    depth exactly; one fit across the step pulls those next to it by centimetres."""
    from pkmodel.lift import smoothing

    t, truth, joints, intr = _walking_joint(slice(20, None))
    params = SmoothingParams("offline", offline_sigma_s=0.075)
    out = smoothing.smooth_along_rays(joints, t, params, intr, True)[:, 0, 2]
    assert np.abs(out[:20] - truth[:20]).max() < 1e-6
    assert np.abs(out[20:] - 1.6).max() < 1e-6
    # the skeleton placed the joint after the step: one fit, and the robust refit, across it
    placed = np.ones((40, 1), dtype=bool)
    placed[20:] = False
    across = smoothing.smooth_along_rays(joints, t, params, intr, True, placed)[:, 0, 2]
    assert np.abs(across[15:20] - truth[15:20]).max() > 0.02


def test_offline_smoothing_follows_the_joint_around_an_occlusion():
    """A joint walking away (z = 2 + 0.1 t) that something hides for five frames (its depth
    0.4 m nearer there): the frames around them stay on the joint, and the hidden ones follow
    it too; blending the two depths would pull the visible frames 16 cm off."""
    from pkmodel.lift import smoothing

    t, truth, joints, intr = _walking_joint(slice(15, 20))
    params = SmoothingParams("offline", offline_sigma_s=0.075)
    out = smoothing.smooth_along_rays(joints, t, params, intr, True)[:, 0, 2]
    around = np.r_[10:15, 20:25]
    assert np.abs(out[around] - truth[around]).max() < 1e-6
    assert np.abs(out[15:20] - truth[15:20]).max() < 1e-6
    blended = smoothing.smooth_offline(joints[..., 2:3], t, 0.075, 0.25, robust_passes=1)[:, 0, 0]
    assert np.abs(blended[around] - truth[around]).max() > 0.1


def test_motion_share_and_keep_motion_numbers():
    """All of a clean take's residual beyond the noise where the sample lies farther than the
    fit, none from twice NOISE_FOR_MIN_SIGMA, in proportion between; nearer samples, samples
    not kept and missing ones keep the fit."""
    from pkmodel.lift.smoothing import NOISE_FOR_MIN_SIGMA, keep_motion, motion_share

    n0 = NOISE_FOR_MIN_SIGMA
    noises = (1e-4, n0, 1.25 * n0, 1.5 * n0, 2 * n0, 4 * n0, np.nan, 0.0)
    shares = [motion_share(x) for x in noises]  # 0: not measured
    assert shares == pytest.approx([1.0, 1.0, 0.75, 0.5, 0.0, 0.0, 0.0, 0.0])
    raw = np.array([3.05, 2.95, 3.05, 3.005, np.nan])
    fit = np.full(5, 3.0)
    keep = np.array([True, True, False, True, True])
    out = keep_motion(raw, fit, np.full(5, 0.01), keep, 0.5)
    # 5 cm farther, 1 cm of noise: half of the 4 cm beyond it; within the noise: the fit
    np.testing.assert_allclose(out, [3.02, 3.0, 3.0, 3.0, 3.0], atol=1e-12)


def test_offline_smoothing_keeps_a_seen_joint_where_its_motion_turns():
    """A joint walking away (z = 2 + 0.5 t) that stops at frame 20, a shallow hider (6 cm nearer,
    under the jump threshold) in frames 30-32, the wall in frame 10. The local quadratic cuts
    the corner, 6.7 mm nearer than the joint at frame 20; with exact 2D on clean depth (noise
    measured, 0.1 mm at 1 m: 0.5 mm at 2.3 m) the frames around the corner keep their depth
    within two noises, and nothing else moves except farther (toward the measured depth), the
    hidden frames and the wall still smoothed toward the joint. A network's 2D, a sensor's
    noise, no noise measured, or depths the skeleton placed: the corner is cut as before."""
    from pkmodel.lift import smoothing

    t = np.arange(40) / 30.0
    truth = 2.0 + 0.5 * np.minimum(t, t[20])
    z = truth.copy()
    z[30:33] -= 0.06
    z[10] = 5.0  # the wall through a gap: weighed down, and not put back
    joints, intr = _on_ray(z)
    clean = SmoothingParams("offline", offline_sigma_s=0.075, depth_noise_m=1e-4)
    unknown = replace(clean, depth_noise_m=0.0)
    out = smoothing.smooth_along_rays(joints, t, clean, intr, True)[:, 0, 2]
    cut = smoothing.smooth_along_rays(joints, t, unknown, intr, True)[:, 0, 2]
    assert truth[20] - cut[20] == pytest.approx(0.0067, abs=2e-4)
    assert smoothing.KEEP_NOISES == 2.0
    assert np.abs(out[19:22] - truth[19:22]).max() < 2 * 1e-4 * 2.34**2
    assert truth[20] - out[20] == pytest.approx(2 * 1e-4 * truth[20] ** 2, abs=1e-9)
    assert (out >= cut - 1e-12).all() and (out[30:33] > z[30:33] + 0.01).all()
    assert abs(out[10] - truth[10]) < 1e-3
    sensor = replace(clean, depth_noise_m=2 * smoothing.NOISE_FOR_MIN_SIGMA)
    placed = np.ones((40, 1), dtype=bool)
    placed[19:22] = False  # the skeleton's depths are no measurement to keep
    cases = [(clean, False, None), (sensor, True, None), (clean, True, placed)]
    for params, exact, measured in cases:
        corner = smoothing.smooth_along_rays(joints, t, params, intr, exact, measured)[:, 0, 2]
        np.testing.assert_allclose(corner[19:22], cut[19:22], atol=1e-12)


def test_depth_jumps_keep_the_joint_seen_for_one_frame_between_two_occlusions():
    """A lone far sample between two hidden stretches at the depth of the seen samples beyond
    one of them (LEVEL_SAMPLES of them, past at least SPLIT_SAMPLES hidden ones) is the joint
    itself: full weight, and both hidden stretches weigh down. The background through a gap
    (far behind the joint too), a level of one sample only, or hidden stretches of 4 samples,
    leave it an outlier."""
    from pkmodel.lift.smoothing import LEVEL_SAMPLES, OCCLUDED_WEIGHT, SPLIT_SAMPLES, depth_jumps

    assert (LEVEL_SAMPLES, SPLIT_SAMPLES) == (2, 5)
    t = np.arange(40) / 30.0
    z = np.full((40, 4), 3.0)
    z[15:25, 0], z[25, 0], z[26:30, 0] = 2.6, 3.02, 2.7  # seen, hidden, seen once, hidden
    z[15:30, 1], z[25, 1] = 2.6, 4.5  # the wall through a gap in what hides the joint
    z[:, 2] = z[:, 0]
    z[:14, 2] = 2.6  # hidden from the start: one sample (14) at the level before frame 15
    z[21:25, 3], z[25, 3], z[26:30, 3] = 2.6, 3.02, 2.7  # hidden for 4 frames on each side
    w = depth_jumps(z, t, 0.0, 0.25).weights
    down = [np.flatnonzero(w[:, n] < 1).tolist() for n in range(4)]
    assert down[0] == [*range(15, 25), *range(26, 30)]
    assert down[1] == [*range(15, 30)]
    assert 25 in down[2] and 25 in down[3]
    assert set(np.unique(w)) == {OCCLUDED_WEIGHT, 1.0}


def test_offline_fits_a_line_at_the_take_end_too():
    """At the last frame the window is one-sided: a weighted line, not a quadratic (which
    swings out at an end), as at the first frame."""
    from pkmodel.lift.smoothing import smooth_offline

    rng = np.random.default_rng(1)
    t = np.arange(40) / 30.0
    x = (np.sin(3 * t) + 0.1 * rng.standard_normal(40))[:, None, None]
    out = smooth_offline(x, t, 0.05, 0.25, robust_passes=0)[:, 0, 0]
    dt = t - t[39]
    w = np.exp(-0.5 * (dt / 0.05) ** 2) * (np.abs(dt) <= 0.15)
    line = np.polyval(np.polyfit(dt, x[:, 0, 0], 1, w=np.sqrt(w)), 0.0)
    quad = np.polyval(np.polyfit(dt, x[:, 0, 0], 2, w=np.sqrt(w)), 0.0)
    assert abs(line - quad) > 0.005
    assert out[39] == pytest.approx(line, abs=1e-9)


def test_one_euro_restarts_its_speed_after_a_gap():
    """After a gap the filter starts afresh, its speed estimate included: the same outputs as
    a new filter."""
    from pkmodel.lift.smoothing import OneEuroFilter

    def run(samples):
        f = OneEuroFilter(min_cutoff=1.0, beta=1.0, d_cutoff=1.0, max_gap_s=0.25)
        return [f(t, np.array([[v]]))[0, 0] for t, v in samples]

    after_gap = run([(0.0, 0.0), (0.1, 10.0), (1.0, 0.0), (1.1, 1.0)])[-1]
    fresh = run([(1.0, 0.0), (1.1, 1.0)])[-1]
    assert after_gap == fresh
