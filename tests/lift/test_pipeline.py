import json
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from pkmodel.cli import app
from pkmodel.common.camera import Intrinsics, project
from pkmodel.common.errors import PkmodelError
from pkmodel.common.skeleton import EXTENDED_JOINT_NAMES, NUM_JOINTS
from pkmodel.config import Config
from pkmodel.lift.pipeline import (
    accelerations,
    build_take,
    depth_windows,
    ground_truth_joints,
    lift_sequence,
    run_lift,
)
from pkmodel.lift.rgbd import find_sequences, read_plain_folder
from pkmodel.lift.take import read_take_binary, read_take_json, read_take_zip
from tests.conftest import run_cli, shared_data

from .test_canonical import standing_body

runner = CliRunner()
INTR = Intrinsics(fx=180.0, fy=180.0, cx=63.5, cy=71.5, width=128, height=144)
# Each joint is a ball of this radius around the joint (a crude body that a ray caster can
# render exactly): face points small, hips large.
RADII = np.array(
    [0.02] * 5 + [0.05, 0.05, 0.04, 0.04, 0.03, 0.03, 0.07, 0.07, 0.05, 0.05, 0.04, 0.04]
)


def render_depth(
    centers: np.ndarray, radii: np.ndarray, intr: Intrinsics, wall: float
) -> np.ndarray:
    """Ray-cast balls in front of a wall at ``wall`` metres: depth (z) at every pixel center."""
    j, i = np.mgrid[0 : intr.height, 0 : intr.width].astype(np.float64)
    rays = np.stack([(i - intr.cx) / intr.fx, (j - intr.cy) / intr.fy, np.ones_like(i)], -1)
    a = (rays * rays).sum(-1)[..., None]
    b = -2 * rays @ centers.T  # (H, W, S)
    c = (centers * centers).sum(-1) - radii**2
    disc = b * b - 4 * a * c
    t = np.where(disc >= 0, (-b - np.sqrt(np.maximum(disc, 0))) / (2 * a), np.inf)
    return np.minimum(t.min(-1), wall)


def body_track(frames: int, fps: float) -> np.ndarray:
    """(T, 17, 3) a body that sways sideways and steps closer, 2.6-2.9 m away."""
    t = np.arange(frames) / fps
    base = standing_body() + np.array([0.0, -0.15, -0.4])
    shift = np.stack([0.15 * np.sin(2 * np.pi * 0.7 * t), 0 * t, -0.3 * t / max(t[-1], 1e-9)], -1)
    return base[None] + shift[:, None, :]


def write_sequence(folder: Path, frames: int = 12, fps: float = 30.0, noise_m: float = 0.0,
                   seed: int = 0, radii: np.ndarray = RADII) -> np.ndarray:  # fmt: skip
    """A sequence in make-synthetic's layout (balls of ``radii``); returns the 3D ground
    truth."""
    import cv2

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    truth = body_track(frames, fps)
    images, anns = [], []
    for f in range(frames):
        depth = render_depth(truth[f], radii, INTR, wall=4.0)
        depth = depth + rng.normal(0, noise_m, depth.shape) if noise_m else depth
        mm = np.clip(np.round(depth * 1000), 0, 65535).astype(np.uint16)
        mm[:3, :3] = 0  # a few holes, as in real sensors
        cv2.imwrite(str(folder / f"{f:04d}_depth.png"), mm)
        shade = np.clip(255 - (depth - 2) * 80, 0, 255).astype(np.uint8)
        cv2.imwrite(str(folder / f"{f:04d}.png"), np.stack([shade] * 3, -1))
        uv = project(truth[f], INTR)
        images.append({
            "id": f + 1, "file_name": f"{f:04d}.png", "width": INTR.width, "height": INTR.height,
            "timestamp": f / fps, "depth_file": f"{f:04d}_depth.png", "depth_unit_m": 0.001,
            "intrinsics": {"fx": INTR.fx, "fy": INTR.fy, "cx": INTR.cx, "cy": INTR.cy},
        })  # fmt: skip
        kp = np.concatenate([uv, np.full((NUM_JOINTS, 1), 2.0)], 1)
        kp[16, 2] = 1  # one joint labelled but not visible
        anns.append({
            "id": f + 1, "image_id": f + 1, "category_id": 1, "area": 5000.0,
            "keypoints": kp.ravel().tolist(), "num_keypoints": NUM_JOINTS,
            "keypoints_3d": truth[f].ravel().tolist(), "limb_radius_m": radii.tolist(),
        })  # fmt: skip
    doc = {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "person"}]}
    (folder / "annotations.json").write_text(json.dumps(doc))
    return truth


def lift_config(**lift) -> Config:
    cfg = Config()
    cfg.lift.limb_radius_m = RADII.tolist()
    cfg.lift.window = 3
    for key, value in lift.items():
        setattr(cfg.lift, key, value)
    return cfg


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("synthetic")
    write_sequence(root / "sequences" / "clean", frames=12)
    write_sequence(root / "sequences" / "noisy", frames=30, noise_m=0.03, seed=1)
    return root


def test_ground_truth_2d_pipeline_recovers_joints(dataset):
    seq = find_sequences(dataset / "sequences" / "clean")[0]
    assert len(seq) == 12 and seq.depth_unit_m == 0.001 and seq.intrinsics == INTR
    joints = ground_truth_joints(seq)
    truth = seq.ground_truth.joints_3d
    on = lift_sequence(seq, joints, lift_config(smoothing="none").lift)
    off = lift_sequence(seq, joints, lift_config(smoothing="none", surface_correction=False).lift)
    vis = seq.ground_truth.keypoints_2d[..., 2] == 2
    err_on = np.linalg.norm(on.joints - truth, axis=-1)[vis] * 1000
    err_off = np.linalg.norm(off.joints - truth, axis=-1)[vis] * 1000
    # Millimetre depth quantisation and a 3x3 median on a curved surface: a few mm at most.
    assert err_on.mean() < 4.0, err_on.mean()
    # Without the correction every joint sits on the ball's surface: off by about its radius.
    assert err_off.mean() == pytest.approx(RADII[None].repeat(12, 0)[vis].mean() * 1000, abs=4)
    assert on.depth_valid.all()
    # the canonical frame of a good lift matches the truth's: its axes within 1 degree (0.07), its
    # origin (the pelvis) within 5 mm (2.7)
    from pkmodel.lift.canonical import canonical_frame

    np.testing.assert_allclose(np.linalg.det(on.rotation), 1.0, atol=1e-9)
    true_origin, true_rotation = canonical_frame(truth)
    cosines = np.einsum("tij,tij->ti", on.rotation, true_rotation)
    assert np.isfinite(cosines).all() and cosines.min() > np.cos(np.radians(1)), cosines.min()
    assert np.linalg.norm(on.origin - true_origin, axis=-1).max() < 0.005
    # 2D smoothing runs on the keypoints before depth: a still joint's 2D position stays put
    cfg = lift_config(smoothing="one_euro", smooth_2d=True).lift
    smooth2d = lift_sequence(seq, joints, cfg)
    step = np.abs(np.diff(joints.keypoints, axis=0)).max(axis=0)
    lagged = np.abs(smooth2d.keypoints_2d - joints.keypoints)
    assert 0 < lagged.max() <= step.max() * 3 and np.isfinite(smooth2d.joints).all()


def test_depth_band_widens_where_the_takes_noise_is_larger(tmp_path, monkeypatch):
    """Depth noise of 0.25 m a pixel (a phone's LiDAR several metres away): the take's noise,
    measured on a first pass, widens the band, and the chunks it concerns are sampled again;
    on clean depth nothing changes."""
    from pkmodel.lift import pipeline
    from pkmodel.lift.pipeline import DEPTH_CHUNK, noise_band, sample_surface

    frames = DEPTH_CHUNK + 8  # two chunks
    truth = write_sequence(tmp_path / "noisy", frames=frames, noise_m=0.25, seed=2)
    seq = find_sequences(tmp_path / "noisy")[0]
    keypoints = ground_truth_joints(seq).keypoints
    fixed, wide = (lift_config(depth_band_noise_sds=n).lift for n in (0.0, 2.0))
    narrow, widened = (sample_surface(seq, keypoints, c) for c in (fixed, wide))
    z = truth[..., 2] - RADII  # the balls' near surface under each joint
    err_narrow = np.nanmean(np.abs(narrow.points[..., 2] - z))
    err_wide = np.nanmean(np.abs(widened.points[..., 2] - z))
    # about 0.25 * 0.8 m alone (the joint's pixel), two thirds of it over the 3 x 3 window
    assert 0.15 < err_narrow < 0.25 and err_wide < 0.7 * err_narrow, (err_narrow, err_wide)
    # the band: 2 sds of the measured noise (0.25 m at 2.7 m: 0.034 at 1 m)
    assert noise_band(narrow.points, wide) == pytest.approx(2 * 0.25 / 2.7**2, rel=0.25)
    assert noise_band(narrow.points, fixed) == 0.0
    assert noise_band(narrow.points, lift_config(skeleton=False).lift) == 0.0  # no bones
    assert widened.band_noise == noise_band(narrow.points, wide) and narrow.band_noise == 0.0
    # wider than 0.15 m beyond 1.5 m (0.15 = 0.069 z^2); never on clean depth
    assert widened.band_span[0] == pytest.approx(1.48, rel=0.15) and narrow.band_span is None
    assert widened.band_span[1] == 10.0  # the 3-pixel window spans 0.3 m only at 18 m
    # A 35-pixel window spans 0.3 m from 1.54 m (focal 180 px): the joints at 2.3-2.9 m keep
    # the fixed band, and their chunks are read once.
    reads = []
    original = pipeline._load_chunk
    monkeypatch.setattr(pipeline, "_load_chunk", lambda s, i: reads.append(i) or original(s, i))
    big = [lift_config(window=35, face_window=35, depth_band_noise_sds=n).lift for n in (0, 2)]
    kept, coarse = (sample_surface(seq, keypoints, c) for c in big)
    assert coarse.band_noise > 0 and len(reads) == 4  # two chunks, twice
    np.testing.assert_array_equal(kept.points, coarse.points)
    assert coarse.band_span[1] == pytest.approx(1.54, abs=0.01)
    result = lift_sequence(seq, ground_truth_joints(seq), wide)
    assert build_take(seq, result, wide, "gt").metadata["lift"][
        "depth_band_noise_m_at_1m"
    ] == round(widened.band_noise, 5)
    # Clean depth: the band stays 0.15 m, the samples are the same.
    write_sequence(tmp_path / "clean", frames=frames)
    seq = find_sequences(tmp_path / "clean")[0]
    keypoints = ground_truth_joints(seq).keypoints
    a, b = (sample_surface(seq, keypoints, c).points for c in (fixed, wide))
    np.testing.assert_array_equal(a, b)


def test_face_points_get_their_own_depth_window():
    cfg = Config()
    assert depth_windows(cfg.lift).tolist() == [3] * 5 + [5] * 12  # nose, eyes, ears: 3 x 3
    cfg.lift.window, cfg.lift.face_window = 1, 3
    assert depth_windows(cfg.lift).tolist() == [1] * 17  # never wider than lift.window
    cfg.lift.window, cfg.lift.face_window = 7, 5
    assert depth_windows(cfg.lift).tolist() == [5] * 5 + [7] * 12


def test_one_euro_reduces_jitter_and_keeps_mpjpe(dataset):
    seq = find_sequences(dataset / "sequences" / "noisy")[0]
    joints = ground_truth_joints(seq)
    truth = seq.ground_truth.joints_3d
    # 3 cm depth noise, no window median: jitter far above the motion's own acceleration
    raw = lift_sequence(seq, joints, lift_config(smoothing="none", window=1).lift)
    smooth = lift_sequence(seq, joints, lift_config(smoothing="one_euro", window=1).lift)
    mpjpe = [np.nanmean(np.linalg.norm(r.joints - truth, axis=-1)) for r in (raw, smooth)]
    jitter = [accelerations(r.joints, seq.timestamps).mean() for r in (raw, smooth)]
    assert jitter[1] < 0.85 * jitter[0], jitter  # the default filter: -24 % here
    assert mpjpe[1] < 1.1 * mpjpe[0], mpjpe
    assert accelerations(truth, seq.timestamps).mean() < jitter[1]


def test_run_lift_metrics_and_takes(dataset, tmp_path):
    cfg = lift_config()
    doc = run_lift(find_sequences(dataset), cfg, tmp_path, pictures=False)
    text = (tmp_path / "metrics.json").read_text()
    assert json.loads(text) == json.loads(json.dumps(doc))  # what was returned was written
    overall = doc["overall"]
    assert set(doc["sequences"]) == {"clean", "noisy"} and doc["frames"] == 42
    assert overall["selected"] == "skeleton/one_euro"
    assert overall["depth_validity_rate"] == 1.0
    assert doc["sequences"]["clean"]["variants"]["config_radius/none"]["mpjpe_visible_mm"] < 4
    v = overall["variants"]
    assert v["off/none"]["mpjpe_visible_mm"] > 30 > v["config_radius/none"]["mpjpe_visible_mm"]
    # the balls have the config's radii: the limb widths find them (scale 1 within 2 %), and
    # the run's radii are theirs to a few tenths of a millimetre of error
    assert v["config_radius/none"]["mpjpe_visible_mm"] == pytest.approx(
        v["true_radius/none"]["mpjpe_visible_mm"], abs=0.3
    )
    for name in ("clean", "noisy"):
        seq = doc["sequences"][name]
        assert seq["limb_scale"] == pytest.approx(1.0, abs=0.02) and seq["limb_scale_samples"] >= 70
        assert seq["limb_radius_m"][7] == pytest.approx(RADII[7] * seq["limb_scale"], abs=1e-4)
        assert seq["limb_radius_m"][:5] == RADII[:5].tolist()  # the face keeps its radii
    # the depth band: clean depth never widens it within 10 m; 3 cm of noise at 2.7 m (0.002 m
    # at 1 m, 2 sds) from about 6 m
    assert doc["sequences"]["clean"]["depth_band_widens_from_m"] is None
    noisy = doc["sequences"]["noisy"]
    assert noisy["depth_band_widens_from_m"] == pytest.approx(6.1, rel=0.2)
    assert noisy["depth_band_widens_until_m"] is None  # up to lift.max_depth_m
    assert noisy["depth_band_noise_m_at_1m"] == pytest.approx(0.15 / 6.1**2, rel=0.4)
    assert v["config_radius/one_euro"]["jitter_m_s2"] < v["config_radius/none"]["jitter_m_s2"]
    # the skeleton and the offline smoother are variants like the rest; what needs no truth too
    for name in ("skeleton/none", "skeleton/offline", "config_radius/offline"):
        assert {"bone_spread_mm", "inferred_rate", "coverage_visible"} <= set(v[name])
    assert v["skeleton/offline"]["jitter_m_s2"] < 0.5 * v["skeleton/none"]["jitter_m_s2"]
    assert overall["bone_spread_mm"] == v["skeleton/one_euro"]["bone_spread_mm"] > 0
    assert set(overall["bone_spread_by_bone_mm"]) >= {"upper_arm:5-7", "hips:11-12"}
    take = read_take_binary(tmp_path / "noisy/take.bin")
    assert take.joint_names == list(EXTENDED_JOINT_NAMES) and take.num_frames == 30
    rows = take.metadata["depth_source"]
    assert len(rows) == 30 and all(len(r) == NUM_JOINTS and set(r) <= set("mdoi-") for r in rows)
    assert "d = missing" in take.metadata["depth_source_codes"]
    assert set(take.metadata["lift"]["bone_lengths_m"]) >= {"upper_arm", "hips", "shin"}
    radii = take.metadata["lift"]
    assert radii["limb_radius_config_m"] == RADII.tolist() and radii["limb_widths"] is True
    assert radii["limb_scale"] == doc["sequences"]["noisy"]["limb_scale"]
    assert radii["limb_radius_m"] == doc["sequences"]["noisy"]["limb_radius_m"]
    assert (
        take.metadata["fps"] == pytest.approx(30.0) and take.metadata["model"] == "ground-truth-2d"
    )
    assert (
        take.metadata["intrinsics"]["fx"] == 180.0
        and take.metadata["units"]["joints_camera"] == "m"
    )
    np.testing.assert_allclose(
        take.joints_canonical[:, EXTENDED_JOINT_NAMES.index("pelvis")], 0, atol=1e-6
    )
    assert (
        read_take_zip(tmp_path / "noisy/take.zip").records().tobytes() == take.records().tobytes()
    )
    np.testing.assert_array_equal(
        read_take_json(tmp_path / "noisy/take.json").joints_camera, take.joints_camera
    )


def test_cli_ground_truth_2d_writes_everything(dataset, tmp_path):
    out = tmp_path / "out"
    args = ["lift", "--ground-truth-2d", "--input", str(dataset / "sequences" / "clean"), "--out",
            str(out), "--smoothing", "ema", "--set", f"lift.limb_radius_m={RADII.tolist()}"]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "MPJPE visible joints, camera frame" in result.output
    assert len(list((out / "clean/overlays").glob("*.png"))) == 12
    assert (out / "clean/canonical_3d.png").stat().st_size > 10_000
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["overall"]["selected"] == "skeleton/ema"
    v = metrics["overall"]["variants"]
    assert metrics["overall"]["mpjpe_visible_mm"] == v["skeleton/ema"]["mpjpe_visible_mm"]
    assert v["config_radius/none"]["mpjpe_visible_mm"] < 10  # window 5 (default) on 2 cm balls


def tiny_checkpoint(path: Path) -> Path:
    """An untrained 64-pixel network's checkpoint (seeded): enough to run the --weights path."""
    import torch

    from pkmodel.model.checkpoint import save_checkpoint
    from pkmodel.model.network import build_model

    cfg = Config()
    cfg.model.input_size, cfg.model.width_mult = 64, 0.35
    cfg.model.neck_channels, cfg.model.head_channels = 16, 16
    torch.manual_seed(0)
    model = build_model(cfg.model, pretrained=False)
    save_checkpoint(path, {"model": model.state_dict(), "config": cfg.to_dict()})
    return path


def test_cli_with_weights_runs_the_network(dataset, tmp_path):
    tiny_checkpoint(tmp_path / "tiny.pt")
    out = tmp_path / "out"
    result = runner.invoke(app, ["lift", "-w", str(tmp_path / "tiny.pt"), "-i", str(dataset / "sequences" / "clean"), "-o", str(out), "--no-pictures", "--device", "cpu", "--set", "lift.min_score=0", "--set", "decoder.score_threshold=0"])  # fmt: skip
    assert result.exit_code == 0, result.output
    take = read_take_binary(out / "clean/take.bin")
    assert take.metadata["model"].startswith("tiny.pt sha256:")
    # every stage shows a bar naming the recording, the last two the step under way
    for bar in ("2D clean", "3D clean", "fit clean", "skeleton and smoothing", "canonical frame",
                "write clean", "takes", "metrics clean", "every variant"):  # fmt: skip
        assert bar in result.output, bar
    # an untrained network finds joints somewhere in the image; the take's 2D joints and
    # scores are what `pkmodel predict`'s path (letterbox, network, decoder, back to pixels)
    # gives for the same frames
    from pkmodel.config import load_config
    from pkmodel.engine.predict import load_runner, predict_frames

    kp = take.keypoints_2d[:, :NUM_JOINTS]
    assert np.isfinite(kp).all() and (kp >= -1).all() and (kp[..., 0] <= INTR.width + 1).all()
    (seq,) = find_sequences(dataset / "sequences" / "clean")
    cfg = load_config(None, ["decoder.score_threshold=0"], {}, env={})
    poses = predict_frames(load_runner(tmp_path / "tiny.pt", cfg), [seq.load_color(i) for i in range(len(seq))])  # fmt: skip
    np.testing.assert_allclose(kp, [p.keypoints for p in poses], atol=1e-3)
    # (an untrained network's scores are its heatmap prior, 0.1, +- 5e-5 from joint to joint)
    np.testing.assert_allclose(take.scores[:, :NUM_JOINTS], [p.scores for p in poses], atol=1e-6)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--input", "{data}"], "--weights CKPT is required"),
        (["--input", "{data}", "--ground-truth-2d", "-w", "x.pt"], "not both"),
        (["--input", "{tmp}/nope", "--ground-truth-2d"], "input folder"),
        (["--input", "{data}", "-w", "{tmp}/missing.pt"], "weights file"),
        (["--input", "{data}", "--ground-truth-2d", "--smoothing", "kalman"], "lift.smoothing must be one of"),
        (["--input", "{data}", "--ground-truth-2d", "--set", "lift.window=4"], "lift.window = 4 must be a positive odd"),
        (["--input", "{data}", "--ground-truth-2d", "--set", "lift.face_window=0"], "lift.face_window = 0 must be a positive odd"),
        (["--input", "{data}", "--ground-truth-2d", "--set", "lift.limb_radius_m=[0.1]"], "lift.limb_radius_m = [0.1] must list 17"),
        (["--input", "{data}", "--ground-truth-2d", "--set", "lift.min_confidence=3"], "lift.min_confidence = 3 must be 0, 1 or 2"),
        (["--input", "{data}", "--ground-truth-2d", "--set", "lift.max_depth_m=0.05"], "lift.max_depth_m = 0.05 must be above lift.min_depth_m (0.1)"),
        (["--input", "{data}", "--ground-truth-2d", "--set", "lift.batch_size=0"], "lift.batch_size = 0 must be >= 1"),
        (["--input", "{plain}", "--ground-truth-2d"], "has no ground-truth 2D joints"),
        (["--input", "{tmp}", "--ground-truth-2d"], "holds no RGB-D recording"),
    ],
)  # fmt: skip
def test_cli_errors_are_one_line(dataset, tmp_path, args, message):
    plain = tmp_path / "plain"
    plain.mkdir()
    import cv2

    cv2.imwrite(str(plain / "a_color.png"), np.zeros((8, 8, 3), np.uint8))
    cv2.imwrite(str(plain / "a_depth.png"), np.full((8, 8), 1000, np.uint16))
    (plain / "intrinsics.json").write_text(
        '{"fx": 10, "fy": 10, "cx": 3.5, "cy": 3.5, "depth_scale_per_meter": 1000}'
    )
    subs = {"{data}": str(dataset), "{tmp}": str(tmp_path), "{plain}": str(plain)}
    if args[1] == "{tmp}":
        (tmp_path / "empty").mkdir()
        subs["{tmp}"] = str(tmp_path / "empty")
    args = [subs.get(a, a) for a in args]
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    result = runner.invoke(app, ["lift", "--out", str(tmp_path / "o"), *args])
    assert result.exit_code == 2, result.output
    assert result.output.startswith("error: ") and message in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_colour_frames_are_read_as_stored_whatever_their_exif_orientation(tmp_path):
    """A JPEG whose EXIF says "rotate 90" (a phone's photo): OpenCV's readers turned it, so
    the frames no longer matched the depth maps and intrinsics, which are the sensor's."""
    import io

    import cv2
    from PIL import Image

    folder = tmp_path / "rec"
    (folder / "rgb").mkdir(parents=True)
    (folder / "depth").mkdir()
    rgb = np.zeros((40, 80, 3), np.uint8)
    rgb[:, :40] = 255  # left half white
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
    for stamp in ("100.000", "100.040"):
        buffer = io.BytesIO()
        Image.fromarray(rgb).save(buffer, "JPEG", exif=exif.tobytes())
        (folder / "rgb" / f"{stamp}.jpg").write_bytes(buffer.getvalue())
        cv2.imwrite(str(folder / "depth" / f"{stamp}.png"), np.full((20, 40), 2000, np.uint16))
    (folder / "intrinsics.json").write_text(json.dumps({
        "fx": 80.0, "fy": 80.0, "cx": 39.5, "cy": 19.5, "depth_scale_per_meter": 1000}))  # fmt: skip
    seq = read_plain_folder(folder)
    frame = seq.load_color(1)
    assert frame.shape == (40, 80, 3) == (seq.intrinsics.height, seq.intrinsics.width, 3)
    assert frame[:, :30].mean() > 240 and frame[:, 50:].mean() < 15  # not turned


def test_plain_folder_layouts(tmp_path):
    import cv2

    folder = tmp_path / "rec"
    (folder / "rgb").mkdir(parents=True)
    (folder / "depth").mkdir()
    for k, stamp in enumerate(["100.000", "100.040", "100.070"]):
        cv2.imwrite(str(folder / "rgb" / f"{stamp}.png"), np.zeros((6, 8, 3), np.uint8))
        cv2.imwrite(str(folder / "depth" / f"{stamp}.png"), np.full((3, 4), 2000 + k, np.uint16))
    (folder / "intrinsics.json").write_text(json.dumps({
        "fx": 10.0, "fy": 11.0, "cx": 3.5, "cy": 2.5, "depth_scale_per_meter": 1000}))  # fmt: skip
    seq = read_plain_folder(folder)
    np.testing.assert_allclose(seq.timestamps, [100.0, 100.04, 100.07])  # from the file names
    assert seq.intrinsics == Intrinsics(10.0, 11.0, 3.5, 2.5, 8, 6)
    assert seq.load_depth(2)[0, 0] == pytest.approx(2.002)
    assert seq.load_color(0).shape == (6, 8, 3)
    # a JPEG cut short (cv2.imread can hand back grey rows for it: tests/common/test_images.py)
    ok, jpg = cv2.imencode(".jpg", np.full((6, 8, 3), 90, np.uint8))
    cut = folder / "rgb" / "100.040.png"
    cut.unlink()
    cut.with_suffix(".jpg").write_bytes(jpg.tobytes()[:-20])
    with pytest.raises(PkmodelError, match=r"^colour image .*100.040.jpg is cut short \(its JPEG"):
        read_plain_folder(folder).load_color(1)
    cut.with_suffix(".jpg").write_bytes(jpg.tobytes())
    assert read_plain_folder(folder).load_color(1).mean() == pytest.approx(90, abs=1.5)
    # Intrinsics of a 4x larger capture (as ARKit reports them) beside the smaller images:
    # scaled to the images (pixel corners stay put: c' = (c + 0.5) / 4 - 0.5).
    (folder / "intrinsics.json").write_text(json.dumps({
        "fx": 40.0, "fy": 44.0, "cx": 15.5, "cy": 11.5, "width": 32, "height": 24,
        "depth_scale_per_meter": 1000}))  # fmt: skip
    assert read_plain_folder(folder).intrinsics == Intrinsics(10.0, 11.0, 3.5, 2.5, 8, 6)
    (folder / "intrinsics.json").write_text(json.dumps({
        "fx": 40.0, "fy": 44.0, "cx": 15.5, "cy": 11.5, "width": 32, "height": 32,
        "depth_scale_per_meter": 1000}))  # fmt: skip
    with pytest.raises(PkmodelError, match=r"for 32 x 32 pixels but 100.000.png is 8 x 6"):
        read_plain_folder(folder)


def test_depth_of_another_aspect_ratio_is_refused(tmp_path):
    import cv2

    from pkmodel.lift.pipeline import sample_surface

    folder = tmp_path / "rec"
    (folder / "rgb").mkdir(parents=True)
    (folder / "depth").mkdir()
    cv2.imwrite(str(folder / "rgb" / "0.png"), np.zeros((48, 64, 3), np.uint8))
    cv2.imwrite(str(folder / "depth" / "0.png"), np.full((32, 32), 2000, np.uint16))
    (folder / "intrinsics.json").write_text(json.dumps({
        "fx": 80.0, "fy": 80.0, "cx": 31.5, "cy": 23.5, "depth_scale_per_meter": 1000}))  # fmt: skip
    seq = read_plain_folder(folder)
    with pytest.raises(PkmodelError, match=r"0.png is 32 x 32 but the colour images are 64 x 48"):
        sample_surface(seq, np.full((1, NUM_JOINTS, 2), 30.0), Config().lift)
    cv2.imwrite(str(folder / "depth" / "0.png"), np.full((24, 32), 2000, np.uint16))  # half size
    samples = sample_surface(seq, np.full((1, NUM_JOINTS, 2), 30.0), Config().lift)
    assert samples.valid.all() and samples.points[0, 0, 2] == pytest.approx(2.0)
    assert samples.widths is None  # not asked for


def test_tum_folder_reads_with_published_scale():
    import cv2

    folder = shared_data("rgbd_tum_open3d")
    with pytest.raises(PkmodelError, match="pick one with --set lift.intrinsics_key"):
        read_plain_folder(folder)
    seq = read_plain_folder(folder, "freiburg3_color")
    assert len(seq) == 1 and seq.depth_unit_m == 1 / 5000
    assert (seq.intrinsics.fx, seq.intrinsics.cy, seq.intrinsics.width) == (535.4, 247.6, 640)
    raw = cv2.imread(str(folder / "TUM_depth.png"), cv2.IMREAD_UNCHANGED)
    np.testing.assert_array_equal(seq.load_depth(0), raw.astype(np.float32) * np.float32(1 / 5000))


# --- on make-synthetic's own sequences --------------------------------------------------------


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("made")
    args = ["make-synthetic", "--out", str(root), "--num-train", "0", "--num-val", "0",
            "--sequences", "2", "--frames", "16", "--size", "192x192", "--seed", "3",
            "--workers", "1"]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    return root


def test_make_synthetic_sequences_lift_within_budget(generated, tmp_path):
    seqs = find_sequences(generated)
    assert [s.name for s in seqs] == ["seq_000", "seq_001"] and len(seqs[0]) == 16
    assert seqs[0].ground_truth.limb_radius is not None
    doc = run_lift(seqs, Config(), tmp_path, pictures=False)
    o, v = doc["overall"], doc["overall"]["variants"]
    assert o["depth_validity_rate_visible"] >= 0.95
    # ground-truth 2D, visible joints: the correction removes most of the surface offset
    assert v["config_radius/none"]["mpjpe_visible_mm"] < 30
    assert v["off/none"]["mpjpe_visible_mm"] > 1.5 * v["config_radius/none"]["mpjpe_visible_mm"]
    assert v["true_radius/none"]["mpjpe_visible_mm"] < v["off/none"]["mpjpe_visible_mm"]
    # One-Euro: less jitter for a small price in MPJPE (docs/3d.md has the full-size figures)
    assert v["config_radius/one_euro"]["jitter_m_s2"] < v["config_radius/none"]["jitter_m_s2"]
    ratio = (
        v["config_radius/one_euro"]["mpjpe_visible_mm"]
        / v["config_radius/none"]["mpjpe_visible_mm"]
    )
    assert ratio < 1.6  # 16-frame clips of fast motion: lag weighs more than on 48 frames
    take = read_take_zip(tmp_path / "seq_000/take.zip")
    ok = np.isfinite(take.rotation).all(axis=(1, 2))
    assert ok.any()
    np.testing.assert_allclose(np.linalg.det(take.rotation[ok].astype(np.float64)), 1.0, atol=1e-5)
    assert take.metadata["fps"] == pytest.approx(30.0)


def test_hip_prior_turns_the_canonical_frame_right(generated, tmp_path):
    """Side views hide the far hip; placing it behind the seen one (lift.hip_prior) cuts the
    canonical-frame error and leaves frames with the whole torso in view as they were."""
    seqs = find_sequences(generated)
    on = run_lift(seqs, Config(), tmp_path / "on", pictures=False)["overall"]
    cfg = Config()
    cfg.set("lift.hip_prior", False, "test")
    off = run_lift(seqs, cfg, tmp_path / "off", pictures=False)["overall"]
    v_on, v_off = (
        on["variants"]["config_radius/one_euro"],
        off["variants"]["config_radius/one_euro"],
    )
    assert (
        v_on["mpjpe_canonical_visible_mm"] < 0.5 * v_off["mpjpe_canonical_visible_mm"]
    )  # 52 / 144
    torso = "mpjpe_canonical_torso_visible_mm"
    assert v_on[torso] == pytest.approx(v_off[torso], abs=1.0)
    assert v_on["mpjpe_visible_mm"] == v_off["mpjpe_visible_mm"]  # camera-frame joints unchanged
    take = read_take_json(tmp_path / "on" / "seq_000" / "take.json")
    assert 0.12 < take.metadata["lift"]["hip_width_m"] < 0.25 and take.metadata["lift"]["hip_prior"]


def test_lidar_depth_with_confidence_maps(tmp_path):
    """make-synthetic's phone-LiDAR depth (half resolution, noise, mixed edge pixels,
    confidence maps): the confidence maps keep the mixed pixels out."""
    from pkmodel.config import SyntheticConfig
    from pkmodel.data.synthetic.generate import generate

    root = tmp_path / "lidar"
    spec = SyntheticConfig(num_train=0, num_val=0, sequences=2, frames=16, width=192, height=192,
                           seed=3, workers=1, depth_sensor="lidar")  # fmt: skip
    generate(spec, root, progress=False)
    seqs = find_sequences(root)
    assert seqs[0].confidence_files is not None and seqs[0].load_depth(0).shape == (96, 96)
    doc = run_lift(seqs, Config(), tmp_path / "with", pictures=False)
    o, v = doc["overall"], doc["overall"]["variants"]
    assert 0.8 < o["depth_validity_rate_visible"] < 0.98  # joints on mixed pixels: no depth
    with_conf = v["config_radius/none"]["mpjpe_visible_mm"]
    assert 20 < with_conf < 55  # 9.7 mm with exact depth
    for seq in seqs:
        seq.confidence_files = None
    doc = run_lift(seqs, Config(), tmp_path / "without", pictures=False)
    assert doc["overall"]["depth_validity_rate_visible"] > 0.99
    assert doc["overall"]["variants"]["config_radius/none"]["mpjpe_visible_mm"] > 2 * with_conf


def test_an_unknown_or_absent_lift_device_is_one_sentence(tiny_synthetic, tmp_path):
    """lift --device tpu is one sentence naming lift.device, not torch.device's traceback."""
    import torch

    for device, message in [
        ("tpu", "lift.device (--device) 'tpu' is not one of auto, cpu, cuda, cuda:N, mps"),
        ("cuda:x", "lift.device (--device) 'cuda:x' is not cuda or cuda:N"),
    ]:
        result = CliRunner().invoke(app, ["lift", "--weights", str(tmp_path / "missing.pt"),
                                          "--input", str(tiny_synthetic), "--device", device,
                                          "--out", str(tmp_path / "out")])  # fmt: skip
        if device.startswith("cuda") and not torch.cuda.is_available():
            message = "lift.device (--device) is 'cuda:x' but CUDA is not available here"
        assert result.exit_code == 2 and result.output.strip() == f"error: {message}"
    result = CliRunner().invoke(app, ["lift", "--weights", str(tmp_path / "missing.pt"),
                                      "--input", str(tiny_synthetic), "--out", str(tmp_path / "out"),
                                      "--set", "decoder.score_threshold=-1"])  # fmt: skip
    assert result.exit_code == 2
    assert result.output.strip() == (
        "error: decoder.score_threshold = -1.0 must be in [0, 1] (decoder.score_threshold from --set)"
    )
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_cli_lifts_with_a_core_ml_model(generated, tmp_path):
    """The PoseKit app's compiled model finds the rendered person (run by pkmodel's Core ML
    runner on the CPU, whatever --device says)."""
    model = shared_data("posekit_app", "pkmodel.mlmodelc")
    seq = find_sequences(generated)[0]
    out = tmp_path / "out"
    result = runner.invoke(app, ["lift", "-w", str(model), "-i", str(seq.source), "-o", str(out), "--no-pictures", "--device", "auto", "--set", "decoder.score_threshold=0.1", "--set", "lift.min_score=0.1"])  # fmt: skip
    assert result.exit_code == 0, result.output
    take = read_take_binary(next(out.rglob("take.bin")))
    assert take.metadata["model"].startswith("pkmodel.mlmodelc sha256:")
    kp = take.keypoints_2d[:, :NUM_JOINTS]
    found = np.isfinite(kp).all(axis=-1)
    gt = ground_truth_joints(seq).keypoints[:, :NUM_JOINTS]
    both = found & np.isfinite(gt).all(axis=-1)
    assert found.mean() > 0.6 and both.sum() >= 150  # 79% and 214 of 272 measured
    error = np.linalg.norm(kp - gt, axis=-1)[both]
    assert np.median(error) < 8.0  # pixels of 192 (3.8 measured): near the true joints


def test_metrics_of_a_recording_without_ground_truth(dataset):
    """A real recording has no 3D truth: depth validity, jitter, bone-length spread and the
    skeleton's share are still measured; errors are left out, not reported as None."""
    from dataclasses import replace

    from pkmodel.lift.pipeline import evaluation_parts, summarise

    seq = find_sequences(dataset / "sequences" / "noisy")[0]
    joints = ground_truth_joints(seq)
    lift = lift_config().lift
    result = lift_sequence(seq, joints, lift)
    bare = replace(seq, ground_truth=None)
    with_truth = summarise([evaluation_parts(seq, joints, result, lift)], lift)
    without = summarise([evaluation_parts(bare, joints, result, lift)], lift)
    assert not any(k.startswith(("mpjpe", "gt_", "coverage")) for k in without)
    for key in ("bone_spread_mm", "jitter_m_s2", "inferred_rate", "depth_validity_rate"):
        assert without[key] == with_truth[key] and without[key] is not None, key
    assert not any("mpjpe_visible_mm" in v for v in without["variants"].values())
    # one recording with truth and one without pool what both have
    mixed = summarise(
        [evaluation_parts(seq, joints, result, lift), evaluation_parts(bare, joints, result, lift)],
        lift,
    )
    assert "mpjpe_visible_mm" not in mixed and mixed["bone_spread_mm"] == without["bone_spread_mm"]


def test_cli_prints_what_a_recording_without_truth_has(tmp_path):
    """`pkmodel lift -w` on a plain RGB-D folder: no MPJPE rows, the skeleton's figures."""
    import shutil

    source = tmp_path / "synthetic"
    write_sequence(source, frames=6)
    plain = tmp_path / "plain"
    plain.mkdir()
    for f in range(6):
        shutil.copy(source / f"{f:04d}.png", plain / f"{f:04d}_color.png")
        shutil.copy(source / f"{f:04d}_depth.png", plain / f"{f:04d}_depth.png")
    (plain / "intrinsics.json").write_text(json.dumps(
        {"fx": INTR.fx, "fy": INTR.fy, "cx": INTR.cx, "cy": INTR.cy, "depth_scale_per_meter": 1000}
    ))  # fmt: skip
    out = tmp_path / "out"
    args = ["lift", "-w", str(tiny_checkpoint(tmp_path / "tiny.pt")), "-i", str(plain), "-o", str(out),
            "--no-pictures", "--device", "cpu", "--set", "lift.min_score=0",
            "--set", "decoder.score_threshold=0"]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "MPJPE" not in result.output and "bone-length spread (sd over the take)" in result.output
    overall = json.loads((out / "metrics.json").read_text())["overall"]
    assert overall["selected"] == "skeleton/one_euro" and "mpjpe_all_mm" not in overall
    assert overall["bone_spread_mm"] > 0 and 0 <= overall["inferred_rate"] <= 1


def test_cli_says_where_the_depth_band_widens(tmp_path):
    """`pkmodel lift`'s line per recording names the ranges of the wider band: from where the
    noise passes the band to where the window spans 0.3 m (a 35-pixel window at focal 180 px:
    1.54 m)."""
    write_sequence(tmp_path / "in" / "noisy", frames=12, noise_m=0.25, seed=2)
    out = tmp_path / "out"
    args = ["lift", "--ground-truth-2d", "-i", str(tmp_path / "in"), "-o", str(out),
            "--no-pictures", "--set", "lift.window=35"]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    m = json.loads((out / "metrics.json").read_text())["sequences"]["noisy"]
    assert 1.0 < m["depth_band_widens_from_m"] < 1.54 == m["depth_band_widens_until_m"]
    assert (
        f"depth band wider for the noise beyond {m['depth_band_widens_from_m']} m up to 1.54 m"
        in " ".join(result.output.split())
    )


def test_a_failed_run_leaves_the_earlier_results_as_they_were(tmp_path):
    """Outputs are staged and moved into place only when every recording is done: a second
    recording that cannot be read leaves the first one's earlier take and metrics.json."""
    write_sequence(tmp_path / "in" / "a", frames=6)
    write_sequence(tmp_path / "in" / "b", frames=6, seed=1)
    out = tmp_path / "out"
    run_lift(find_sequences(tmp_path / "in"), lift_config(), out, pictures=False)
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert {p.relative_to(out).as_posix() for p in before} == {
        "metrics.json",
        *(f"{n}/take.{e}" for n in "ab" for e in ("json", "bin", "zip")),
    }
    (tmp_path / "in" / "b" / "0003_depth.png").write_bytes(b"x")
    with pytest.raises(PkmodelError, match="0003_depth.png"):
        run_lift(
            find_sequences(tmp_path / "in"), lift_config(smoothing="none"), out, pictures=False
        )
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert sorted(p.name for p in out.iterdir()) == ["a", "b", "metrics.json"]  # nothing staged
    # metrics.json is written before any take is published: a metrics.json that cannot be
    # replaced (a folder there) leaves the takes as they were too
    import shutil

    shutil.rmtree(tmp_path / "in" / "b")
    write_sequence(tmp_path / "in" / "b", frames=6, seed=1)
    (out / "metrics.json").unlink()
    (out / "metrics.json").mkdir()
    before.pop(out / "metrics.json")
    with pytest.raises(PkmodelError, match="metrics.json: it is a folder, not a file"):
        run_lift(
            find_sequences(tmp_path / "in"), lift_config(smoothing="none"), out, pictures=False
        )
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert sorted(p.name for p in out.iterdir()) == ["a", "b", "metrics.json"]


def test_lift_refuses_an_output_that_is_a_file_before_reading_any_frame(tmp_path):
    write_sequence(tmp_path / "in" / "a", frames=3)
    (tmp_path / "out").write_text("mine")
    args = ["lift", "--ground-truth-2d", "-i", str(tmp_path / "in"), "-o", str(tmp_path / "out")]
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert result.output == (
        f"error: cannot write --out (lift.out_dir) {tmp_path / 'out'}: it is a file, not a folder\n"
    )
    assert (tmp_path / "out").read_text() == "mine"


def test_a_rerun_replaces_pictures_whole_and_takes_of_another_format(tmp_path):
    """A shorter take's overlays replace a longer one's (no frames left over), and a take
    written in the app's format replaces pkmodel's earlier take files."""
    write_sequence(tmp_path / "long" / "seq", frames=8)
    write_sequence(tmp_path / "short" / "seq", frames=5)
    out = tmp_path / "out"
    cfg = lift_config()
    run_lift(find_sequences(tmp_path / "long"), cfg, out)
    assert len(list((out / "seq" / "overlays").iterdir())) == 8
    cfg.lift.take_format = "posekit"
    doc = run_lift(find_sequences(tmp_path / "short"), cfg, out)
    assert sorted(p.name for p in (out / "seq" / "overlays").iterdir()) == [
        f"{t:06d}.png" for t in range(5)
    ]
    assert sorted(p.name for p in (out / "seq").iterdir()) == [
        "canonical_3d.png", "overlays", "posekit_take", "posekit_take.zip"
    ]  # fmt: skip
    assert doc["sequences"]["seq"]["take"] == {
        "posekit": str(out / "seq" / "posekit_take"),
        "posekit_zip": str(out / "seq" / "posekit_take.zip"),
    }


def test_sigterm_leaves_like_an_interrupt_removing_the_staging_folder(tmp_path):
    """A job's time limit (SIGTERM) stops `pkmodel lift` the way Ctrl-C does: the staging
    folder is removed on the way out, the earlier results stay, and the exit code says so."""
    import os
    import signal
    import subprocess
    import time

    write_sequence(tmp_path / "in" / "a", frames=3)
    out = tmp_path / "out"
    args = [sys.executable, "-m", "pkmodel", "lift", "--ground-truth-2d", "-i", str(tmp_path / "in"),
            "-o", str(out)]  # fmt: skip
    assert subprocess.run(args, capture_output=True, timeout=300).returncode == 0
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    write_sequence(tmp_path / "in" / "b", frames=400)  # long enough to be caught at work
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 240
    while not list(out.glob(".pkmodel-lift-*")) and time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    assert list(out.glob(".pkmodel-lift-*")), "lift never staged anything"
    os.kill(proc.pid, signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, err.decode()
    # its own line (a progress bar may still redraw after it as the command unwinds)
    assert "terminated" in [line.strip() for line in err.decode().splitlines()], err.decode()
    assert sorted(p.name for p in out.iterdir()) == ["a", "metrics.json"]  # nothing staged
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before


TRAINED = Path(__file__).resolve().parents[1] / "assets" / "trained_96.pt"


def write_turned(seq, folder: Path, degrees: int) -> None:
    """``seq`` as a plain folder turned clockwise by ``degrees``, as a phone held otherwise would
    have stored it: colour, depth and the camera matrix (x' = height - y, y' = x a quarter
    turn) all turned together."""
    import cv2

    from pkmodel.common.geometry import turn_image

    (folder / "color").mkdir(parents=True)
    (folder / "depth").mkdir()
    for i in range(len(seq)):
        cv2.imwrite(str(folder / f"color/{i:06d}.png"), turn_image(seq.load_color(i), degrees)[..., ::-1])  # fmt: skip
        depth = np.round(turn_image(seq.load_depth(i), degrees) * 1000).astype(np.uint16)
        cv2.imwrite(str(folder / f"depth/{i:06d}.png"), depth)
    keys = ("width", "height", "fx", "fy", "cx", "cy")
    doc = dict(zip(keys, turned_intrinsics(seq.intrinsics, degrees), strict=True))
    (folder / "intrinsics.json").write_text(json.dumps({**doc, "depth_scale_per_meter": 1000, "fps": 30}))  # fmt: skip


def turned_intrinsics(k: Intrinsics, degrees: int) -> tuple[float, ...]:
    """(width, height, fx, fy, cx, cy) of the camera whose frames are ``k``'s turned clockwise
    by ``degrees``: a quarter turn swaps the sides and the focal lengths."""
    w, h, fx, fy, cx, cy = k.width, k.height, k.fx, k.fy, k.cx, k.cy
    return {
        0: (w, h, fx, fy, cx, cy),
        90: (h, w, fy, fx, h - cy, cx),
        180: (w, h, fx, fy, w - cx, h - cy),
        270: (h, w, fy, fx, cy, w - cx),
    }[degrees]


def test_lift_turns_frames_stored_on_their_side_upright_for_the_network(tmp_path):
    """A phone held upright stores its frames on their side. lift.rotate = "auto" finds the
    quarter turn that stands the person up (the network finds the most joints there), runs the
    network on the upright frames and gives the joints back in the stored frames' pixels: the
    same joints as the upright recording's, turned. Upside down, the trained network finds
    nearly as many joints as upright (79 against 84 here), so "auto" keeps such a recording as
    it is; lift.rotate = 180 turns it."""
    from pkmodel.common.geometry import QUARTER_TURNS
    from pkmodel.engine.predict import AUTO_TURN_GAIN

    run_cli(["make-synthetic", "--out", tmp_path / "syn", "--num-train", 0, "--num-val", 0,
             "--sequences", 1, "--frames", 8, "--seed", 21, "--size", "256x192"])  # fmt: skip
    (seq,) = find_sequences(tmp_path / "syn/sequences/seq_000")
    for degrees in QUARTER_TURNS:
        write_turned(seq, tmp_path / "rec" / f"turn{degrees}", degrees)
    lift = ["lift", "-w", TRAINED, "--no-pictures", "--device", "cpu", "--quiet"]
    run_cli([*lift, "-i", tmp_path / "rec", "-o", tmp_path / "auto"])
    metrics = json.loads((tmp_path / "auto/metrics.json").read_text())["sequences"]
    chosen = {name: m["rotate_deg"] for name, m in metrics.items()}
    assert chosen == {"turn0": 0, "turn90": 270, "turn180": 0, "turn270": 90}
    assert {m["rotate_auto"]["source"] for m in metrics.values()} == {"network"}  # no poses
    seen = {turn: v["joints"] for turn, v in metrics["turn90"]["rotate_auto"]["turns"].items()}
    assert seen["270"] == max(seen.values()) >= AUTO_TURN_GAIN * seen["0"]  # 84 against 52
    assert metrics["turn0"]["rotate_auto"]["turns"]["0"]["joints"] == seen["270"]
    upside_down = metrics["turn180"]["rotate_auto"]["turns"]
    assert upside_down["180"]["joints"] < AUTO_TURN_GAIN * upside_down["0"]["joints"]

    def joints(run: str, name: str) -> np.ndarray:
        return read_take_binary(tmp_path / run / name / "take.bin").keypoints_2d[:, :NUM_JOINTS]

    upright = joints("auto", "turn0")
    x, y = upright[..., 0], upright[..., 1]
    w, h = 256, 192
    assert np.isfinite(x).sum() > 0.5 * x.size
    np.testing.assert_allclose(joints("auto", "turn90"), np.stack([h - y, x], -1), atol=1e-3)
    np.testing.assert_allclose(joints("auto", "turn270"), np.stack([y, w - x], -1), atol=1e-3)
    assert not np.allclose(joints("auto", "turn180"), np.stack([w - x, h - y], -1), atol=1, equal_nan=True)  # fmt: skip

    run_cli([*lift, "-i", tmp_path / "rec/turn180", "-o", tmp_path / "set", "--set", "lift.rotate=180"])  # fmt: skip
    metrics = json.loads((tmp_path / "set/metrics.json").read_text())["sequences"]["turn180"]
    assert metrics["rotate_deg"] == 180 and "rotate_auto" not in metrics
    np.testing.assert_allclose(joints("set", "turn180"), np.stack([w - x, h - y], -1), atol=1e-3)


# the camera's axes, as columns in the stored frame's camera, of a frame turned clockwise:
# stored (x, y) is at (height - y, x) a quarter turn on, so its x axis is the upright y's opposite
TURNED_AXES = {
    0: np.eye(3),
    90: np.array([[0.0, 1, 0], [-1, 0, 0], [0, 0, 1]]),
    180: np.diag([-1.0, -1, 1]),
    270: np.array([[0.0, -1, 0], [1, 0, 0], [0, 0, 1]]),
}


def test_the_turn_that_puts_gravity_down():
    """Camera-to-world rotations (OpenCV axes, y up): a camera held level wants no turn; one
    rolled so that its stored frame is the upright one turned 90 degrees clockwise wants 270
    (a phone held upright stores its frames turned one way or the other by the side its top
    points to); one looking straight down has no say."""
    from pkmodel.lift.pipeline import turn_from_poses

    level = np.column_stack([[1.0, 0, 0], [0, -1, 0], [0, 0, -1]])  # x right, y down, z ahead
    pitch = np.radians(30)  # looking down a little: gravity still mostly along the image's y
    down_a_bit = level @ np.array([[1, 0, 0], [0, np.cos(pitch), -np.sin(pitch)],
                                   [0, np.sin(pitch), np.cos(pitch)]])  # fmt: skip
    for stored, undo in ((0, 0), (90, 270), (180, 180), (270, 90)):
        for camera in (level, down_a_bit):
            turned = np.repeat((camera @ TURNED_AXES[stored])[None], 4, axis=0)
            turn, frames = turn_from_poses(turned)
            assert turn == undo and frames[undo] == 4
    straight_down = np.column_stack([[1.0, 0, 0], [0, 0, -1], [0, -1, 0]])
    assert turn_from_poses(straight_down[None]) is None


def turned_stray(source: Path, folder: Path, degrees: int) -> None:
    """The Stray Scanner recording ``source`` as the app would have stored it with the phone
    turned so that its frames are the upright ones turned clockwise by ``degrees``: video,
    depth maps, camera matrix and the odometry's rotations turned together."""
    import cv2

    from pkmodel.common.capture_formats import odometry_text, quaternion_xyzw
    from pkmodel.common.geometry import turn_image
    from tests.common.test_capture_formats import quaternion_matrix  # written out independently

    (seq,) = find_sequences(source)
    (folder / "depth").mkdir(parents=True)
    first = turn_image(seq.load_color(0), degrees)
    size = (first.shape[1], first.shape[0])
    writer = cv2.VideoWriter(str(folder / "rgb.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 30.0, size)
    for i in range(len(seq)):
        writer.write(turn_image(seq.load_color(i), degrees)[..., ::-1].copy())
        depth = np.round(turn_image(seq.load_depth(i), degrees) * 1000).astype(np.uint16)
        cv2.imwrite(str(folder / f"depth/{i:06d}.png"), depth)
    writer.release()
    fx, fy, cx, cy = turned_intrinsics(seq.intrinsics, degrees)[2:]
    (folder / "camera_matrix.csv").write_text(f"{fx}, 0.0, {cx}\n0.0, {fy}, {cy}\n0.0, 0.0, 1.0\n")
    rows = [line.split(",") for line in (source / "odometry.csv").read_text().splitlines()[1:]]
    poses = []
    for row in rows:
        x, y, z, w_ = (float(v) for v in row[5:9])
        rotation = quaternion_matrix(x, y, z, w_) @ TURNED_AXES[degrees]
        poses.append([*(float(v) for v in row[2:5]), *quaternion_xyzw(rotation)])
    (folder / "odometry.csv").write_text(odometry_text(seq.timestamps, np.array(poses)))


def test_auto_turns_a_stray_recording_by_its_camera_poses(tmp_path):
    """Stray Scanner's odometry gives the camera's rotation in ARKit's world (y up): gravity
    in the frame says which way is down, for every turn, upside down included, whatever the
    network sees. The network's 2D comes back in the stored frames' pixels: the upright
    recording's, turned (within the re-encoded video's blur)."""
    from pkmodel.common.geometry import QUARTER_TURNS

    run_cli(["make-synthetic", "--out", tmp_path / "syn", "--num-train", 0, "--num-val", 0,
             "--sequences", 1, "--frames", 6, "--seed", 21, "--size", "256x192",
             "--layout", "stray"])  # fmt: skip
    for degrees in QUARTER_TURNS:
        turned_stray(tmp_path / "syn/sequences/seq_000", tmp_path / "rec" / f"turn{degrees}", degrees)  # fmt: skip
    out = tmp_path / "out"
    result = runner.invoke(app, ["lift", "-w", str(TRAINED), "-i", str(tmp_path / "rec"), "-o",
                                 str(out), "--no-pictures", "--device", "cpu", "--quiet"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "turn90: 6 frames" in result.output
    assert "frames turned 270 degrees clockwise for the network (lift.rotate auto, from the camera poses)" in result.output  # fmt: skip
    metrics = json.loads((out / "metrics.json").read_text())["sequences"]
    for degrees, undo in ((0, 0), (90, 270), (180, 180), (270, 90)):
        m = metrics[f"turn{degrees}"]
        assert m["rotate_deg"] == undo
        take = json.loads((out / f"turn{degrees}/take.json").read_text())["metadata"]["lift"]
        assert take["rotate_deg"] == undo
        assert m["rotate_auto"] == {"source": "camera poses", "frames": {str(t): 6 * (t == undo) for t in QUARTER_TURNS}}  # fmt: skip

    def joints(name: str) -> np.ndarray:
        return read_take_binary(out / name / "take.bin").keypoints_2d[:, :NUM_JOINTS]

    x, y = joints("turn0")[..., 0], joints("turn0")[..., 1]
    w, h = 256, 192
    for name, want in (
        ("turn90", [h - y, x]),
        ("turn180", [w - x, h - y]),
        ("turn270", [y, w - x]),
    ):
        error = np.linalg.norm(joints(name) - np.stack(want, -1), axis=-1)
        both = np.isfinite(error)
        assert both.mean() > 0.5 and np.median(error[both]) < 2.0, (name, np.median(error[both]))


def test_a_step_that_fails_ends_its_bar_before_the_error(tmp_path, monkeypatch):
    """Writing the take fails (a value beyond float32, a full disk): the error is a line of its
    own, not drawn onto the step's bar."""
    import pkmodel.lift.pipeline as pipeline

    write_sequence(tmp_path / "in" / "a", frames=3)

    def full_disk(*args, **kwargs):
        raise PkmodelError("no space left on the disk")

    monkeypatch.setattr(pipeline, "write_take", full_disk)
    result = runner.invoke(app, ["lift", "--ground-truth-2d", "-i", str(tmp_path / "in"), "-o",
                                 str(tmp_path / "out"), "--no-pictures"])  # fmt: skip
    assert result.exit_code == 2
    lines = [line.strip() for line in result.output.replace("\r", "\n").splitlines()]
    assert "error: no space left on the disk" in lines, result.output
    assert "write a:   0%|          | 0/1 [00:00<?, ?step/s, takes]" in lines
