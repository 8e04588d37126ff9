"""The PoseKit app's depth sampler and EMA (lift.depth_sampler / lift.smoothing = "posekit-app")
against plain-loop transcriptions of the app's algorithm written here."""

import json
import math

import numpy as np
import pytest
from typer.testing import CliRunner

from pkmodel.cli import app
from pkmodel.lift.depth import APP_DEPTH_MODES, sample_depth_app
from pkmodel.lift.smoothing import AppEmaFilter, SmoothingParams, smooth_sequence

from .test_pipeline import RADII, write_sequence

runner = CliRunner()


def swift_round(x: float) -> int:
    """Float.rounded(): halves away from zero."""
    return int(math.copysign(math.floor(abs(x) + 0.5), x))


def app_sample(u, v, depth, conf, mode):
    """The app's DepthSampler.sample, loop by loop: (depth, depthConfidence) or None."""
    min_level, radius = {"strict": (2, 2), "balanced": (1, 3), "lenient": (0, 3)}[mode]
    h, w = depth.shape
    x = swift_round(float(np.float32(w - 1) * np.float32(u)))
    y = swift_round(float(np.float32(h - 1) * np.float32(v)))

    def depth_at(px, py):
        if not (0 <= px < w and 0 <= py < h):
            return None
        d = float(depth[py, px])
        return None if math.isnan(d) or d <= 0 else d

    def conf_at(px, py):
        return 2 if conf is None else int(conf[py, px])

    d = depth_at(x, y)
    if d is not None and conf_at(x, y) >= min_level:
        return d, conf_at(x, y) / 2
    best, samples = 0, []
    for dy in range(-radius, radius + 1):
        for dx in range(-radius, radius + 1):
            d = depth_at(x + dx, y + dy)
            if d is None:
                continue
            c = conf_at(x + dx, y + dy)
            if c < min_level:
                continue
            if c > best:
                best, samples = c, []
            if c == best:
                samples.append(d)
    if not samples:
        return None
    samples.sort()
    return samples[len(samples) // 2], best / 2


@pytest.mark.parametrize("mode", sorted(APP_DEPTH_MODES))
def test_sampler_matches_the_app_on_random_maps(mode):
    rng = np.random.default_rng({"strict": 0, "balanced": 1, "lenient": 2}[mode])
    frames, h, w, k = 4, 24, 32, 60
    depth = rng.uniform(0.5, 4.0, (frames, h, w)).astype(np.float32)
    depth[rng.random(depth.shape) < 0.25] = 0.0  # holes
    depth[rng.random(depth.shape) < 0.05] = np.nan
    conf = rng.integers(0, 3, (frames, h, w)).astype(np.uint8)
    uv = rng.uniform(-0.1, 1.1, (frames, k, 2))
    uv[:, :5] = rng.integers(0, 9, (frames, 5, 2)) / 8  # exact halves after scaling
    uv[0, 5] = np.nan
    for confidence in (conf, None):
        out = sample_depth_app(uv, depth, confidence, mode)
        for t in range(frames):
            for j in range(k):
                if not np.isfinite(uv[t, j]).all():
                    want = None
                else:
                    m = None if confidence is None else confidence[t]
                    want = app_sample(*uv[t, j], depth[t], m, mode)
                if want is None:
                    assert not out.valid[t, j] and np.isnan(out.depth[t, j])
                    assert out.confidence[t, j] == 0
                else:
                    assert out.valid[t, j]
                    assert out.depth[t, j] == want[0] and out.confidence[t, j] == want[1]
    # a single frame (H, W) with (K, 2) joints works the same way
    single = sample_depth_app(uv[1], depth[1], conf[1], mode)
    np.testing.assert_array_equal(single.depth, sample_depth_app(uv, depth, conf, mode).depth[1])


def test_centre_pixel_rule_and_rounding():
    depth = np.full((5, 9), 2.0, dtype=np.float32)
    conf = np.full((5, 9), 2, dtype=np.uint8)
    depth[2, 4] = 1.0  # the centre pixel of u = v = 0.5: round(8 * 0.5), round(4 * 0.5)
    conf[2, 4] = 1
    out = sample_depth_app(np.array([[0.5, 0.5]]), depth, conf, "balanced")
    assert out.depth[0] == 1.0 and out.confidence[0] == 0.5  # used although neighbours beat it
    # strict needs level 2 at the centre: falls back to the (level 2) neighbours
    out = sample_depth_app(np.array([[0.5, 0.5]]), depth, conf, "strict")
    assert out.depth[0] == 2.0 and out.confidence[0] == 1.0
    # halves round away from zero: u = 1/16 -> 8 * 0.0625 = 0.5 -> column 1, not 0
    depth[0, 1], depth[0, 0] = 3.0, 4.0
    out = sample_depth_app(np.array([[1 / 16, 0.0]]), depth, None, "lenient")
    assert out.depth[0] == 3.0 and out.confidence[0] == 1.0  # no confidence map: level 2


def test_fallback_to_the_highest_level_present_and_upper_median():
    depth = np.zeros((7, 7), dtype=np.float32)
    conf = np.zeros((7, 7), dtype=np.uint8)
    # centre (3, 3) has no depth; level 1 pixels 1..4 m, level 0 pixels far away
    for (r, c), d in zip([(0, 0), (0, 6), (6, 0), (6, 6)], [4.0, 1.0, 3.0, 2.0], strict=True):
        depth[r, c], conf[r, c] = d, 1
    depth[1, 1], depth[5, 5] = 9.0, 9.0  # level 0
    uv = np.array([[0.5, 0.5]])
    out = sample_depth_app(uv, depth, conf, "balanced")
    assert out.depth[0] == 3.0  # sorted [1, 2, 3, 4]: upper median s[4 // 2] = 3, not 2.5
    assert out.confidence[0] == 0.5
    out = sample_depth_app(uv, depth, conf, "strict")  # radius 2 and level 2: nothing
    assert not out.valid[0] and out.confidence[0] == 0
    conf[0, 6] = 2  # one level-2 pixel beats all level-1 ones
    out = sample_depth_app(uv, depth, conf, "lenient")
    assert out.depth[0] == 1.0 and out.confidence[0] == 1.0
    conf[:] = 0  # only level 0 left: lenient takes it (level 0 -> confidence 0), balanced not
    out = sample_depth_app(uv, depth, conf, "lenient")
    assert out.valid[0] and out.confidence[0] == 0.0
    assert out.depth[0] == 4.0  # [1, 2, 3, 4, 9, 9]: s[6 // 2] = 4
    assert not sample_depth_app(uv, depth, conf, "balanced").valid[0]


def test_app_ema_against_a_hand_computed_sequence():
    nan = np.nan
    xs = [1.0, 2.0, 4.0, nan, 10.0, 0.0]
    # out = prev * 0.55 + new * 0.45; NaN passes through; the next valid value restarts
    want = [1.0, 1.45, 0.55 * 1.45 + 0.45 * 4.0, nan, 10.0, 5.5]
    samples = np.array(xs)[:, None, None].repeat(3, axis=2)  # (T, 1 joint, 3)
    samples[:, 0, 1] *= 2
    timestamps = np.array([0.0, 0.033, 5.0, 5.1, 9.0, 9.001])  # a gap does not reset it
    out = smooth_sequence(samples, timestamps, SmoothingParams(method="posekit-app"))
    np.testing.assert_allclose(out[:, 0, 0], want, rtol=1e-12)
    np.testing.assert_allclose(out[:, 0, 1], 2 * np.array(want), rtol=1e-12)
    # a joint with one NaN coordinate is passed through as it is
    f = AppEmaFilter()
    f(0.0, np.array([[1.0, 1.0, 1.0]]))
    part = f(0.0, np.array([[nan, 3.0, 3.0]]))
    np.testing.assert_array_equal(part, [[nan, 3.0, 3.0]])
    np.testing.assert_array_equal(f(0.0, np.array([[5.0, 5.0, 5.0]])), [[5.0, 5.0, 5.0]])


def test_cli_lifts_with_the_app_sampler_and_ema(tmp_path):
    data = tmp_path / "data"
    write_sequence(data / "clean", frames=6)
    out = tmp_path / "out"
    args = ["lift", "--ground-truth-2d", "--input", str(data / "clean"), "--out", str(out),
            "--set", "lift.depth_sampler=posekit-app", "--set", "lift.smoothing=posekit-app",
            "--set", "lift.app_depth_mode=strict", "--set", f"lift.limb_radius_m={RADII.tolist()}",
            "--set", "lift.overlays=false"]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    overall = json.loads((out / "metrics.json").read_text())["overall"]
    assert overall["selected"] == "off/posekit-app"  # the app has no surface correction
    assert overall["depth_validity_rate_visible"] > 0.9
    assert overall["mpjpe_visible_mm"] < 60  # joints on the balls' surfaces, lagged by the EMA


def _frames_bin_confidence(path):
    """(T, 19) depthConfidence and (T, 19, 2) x_norm, y_norm of an app frames.bin, read with
    struct from the record layout alone (float64 timestamp, then ten float32 per joint)."""
    import struct

    data = path.read_bytes()
    assert len(data) % 768 == 0
    conf, norm = [], []
    for start in range(0, len(data), 768):
        values = struct.unpack("<190f", data[start + 8 : start + 768])
        conf.append(values[9::10])
        norm.append(list(zip(values[6::10], values[7::10], strict=True)))
    return np.array(conf), np.array(norm)


def test_lifted_takes_give_the_app_the_depth_pixels_confidence_level(tmp_path):
    """depthConfidence is the level of the depth pixels / 2, as the app computes it: with the
    app's sampler, what the transcription above gives at the take's own 2D on the recording's
    depth and confidence maps; with pkmodel's sampler, level / 2 where the joint kept its
    measured depth (medium-confidence samples give 0.5) and 0 where the skeleton placed it."""
    from pkmodel.lift.rgbd import find_sequences
    from tests.conftest import run_cli

    run_cli(["make-synthetic", "--out", tmp_path / "syn", "--num-train", 0, "--num-val", 0,
             "--sequences", 1, "--frames", 6, "--seed", 4, "--depth-sensor", "lidar"])  # fmt: skip
    recording = tmp_path / "syn/sequences/seq_000"
    lift = ["lift", "--ground-truth-2d", "--input", recording, "--no-pictures", "--quiet",
            "--take-format", "both"]  # fmt: skip
    run_cli([*lift, "--out", tmp_path / "app", "--set", "lift.depth_sampler=posekit-app"])
    conf, norm = _frames_bin_confidence(tmp_path / "app/seq_000/posekit_take/frames.bin")
    (seq,) = find_sequences(recording)
    labelled = seq.ground_truth.keypoints_2d[..., 2] > 0
    want = np.zeros((len(seq), 17))
    for t in range(len(seq)):
        depth, levels = seq.load_depth(t), seq.load_confidence(t)
        for j in np.flatnonzero(labelled[t]):
            got = app_sample(*norm[t, j], depth, levels, "balanced")
            want[t, j] = 0.0 if got is None else got[1]
    np.testing.assert_array_equal(conf[:, :17], want)
    assert {0.5, 1.0} <= set(np.unique(want))  # the maps hold levels 1 and 2 here

    run_cli([*lift, "--out", tmp_path / "pk"])
    conf, _ = _frames_bin_confidence(tmp_path / "pk/seq_000/posekit_take/frames.bin")
    take = json.loads((tmp_path / "pk/seq_000/take.json").read_text())["metadata"]
    level = np.array([[{"0": 0, "1": 0.5, "2": 1, "-": 0}[c] for c in row] for row in take["depth_level"]])  # fmt: skip
    measured = np.array([[c == "m" for c in row] for row in take["depth_source"]])
    np.testing.assert_array_equal(conf[:, :17], np.where(measured, level, 0))
    assert (conf[:, :17] == 0.5).any() and (conf[:, :17] == 1).any()


@pytest.mark.parametrize("style", ["pkmodel", "posekit-app"])
def test_lift_clamps_the_app_styles_points_to_the_frame(style):
    """lift's detector in the app's decoder style clamps each joint to the frame, as the app
    does before it samples depth; pkmodel's style keeps where the joint was decoded."""
    from pkmodel.config import load_config
    from pkmodel.lift.pipeline import ModelJoints
    from tests.engine.test_predict import app_edge_outputs

    cfg = load_config(overrides=[f"decoder.style={style}", "decoder.score_threshold=0.1"])
    joints = ModelJoints.__new__(ModelJoints)  # the network: fixed outputs
    joints.device, joints.input_size, joints.min_score = "cpu", 192, 0.3
    joints.decoder, joints.model = cfg.decoder, lambda x: app_edge_outputs()
    keypoints, scores = joints([np.zeros((480, 640, 3), np.uint8)])
    assert np.allclose(scores, 0.9)
    expected_y = 0.0 if style == "posekit-app" else (8.0 - 24.0) / 0.3
    np.testing.assert_allclose(keypoints[0, :, 1], expected_y, atol=1e-6)
    np.testing.assert_allclose(keypoints[0, :, 0], 320.0, atol=1e-6)
