"""Prediction on whole frames: mapping back through the letterbox, images, folders, videos,
checkpoint vs ONNX, and clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from pkmodel.common.errors import PkmodelError
from pkmodel.common.skeleton import NUM_JOINTS
from pkmodel.config import load_config
from pkmodel.engine.predict import Pose, draw_pose, predict_frames, predict_path
from tests.conftest import run_cli, shared_data

SIZE = 64


def _cfg():
    sets = {"model.input_size": SIZE, "model.width_mult": 0.35, "model.neck_channels": 16,
            "model.head_channels": 16, "eval.batch_size": 3}  # fmt: skip
    return load_config(None, [f"{k}={v}" for k, v in sets.items()], {}, env={})


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    from pkmodel.model.checkpoint import save_checkpoint
    from pkmodel.model.network import build_model

    cfg = _cfg()
    torch.manual_seed(0)
    model = build_model(cfg.model, pretrained=False)
    # Random head biases: an untrained model whose maps are not flat, so joints differ.
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    save_checkpoint(path, {"model": model.state_dict(), "ema": None, "config": cfg.to_dict()})
    return path


def _frames(rng, n, h=48, w=80):
    return [rng.integers(0, 255, (h, w, 3), dtype=np.uint8) for _ in range(n)]


class _OracleRunner:
    """Returns decoded ground-truth targets of a known pose per frame (input pixels)."""

    def __init__(self, cfg, poses_input):
        self.cfg, self.input_size, self.poses = cfg, SIZE, poses_input

    def __call__(self, batch):
        from pkmodel.data.targets import encode_targets, target_maps
        from pkmodel.model.decode import DecodeSettings, decode_poses

        targets = [encode_targets(kp, c, None, None, SIZE, self.cfg.targets)
                   for kp, c in self.poses[: len(batch)]]  # fmt: skip
        batch = {k: torch.from_numpy(np.stack([t[k] for t in targets])) for k in targets[0]}
        return decode_poses(target_maps(batch), DecodeSettings.from_config(self.cfg.decoder))


def test_predict_frames_maps_back_through_the_letterbox():
    """A pose placed in a 80 x 48 frame comes back in frame pixels (letterbox undone)."""
    from pkmodel.common.geometry import letterbox_params

    rng = np.random.default_rng(0)
    w, h = 80, 48
    kp = np.zeros((NUM_JOINTS, 3))
    kp[:, 0] = rng.uniform(1, w - 1, NUM_JOINTS)
    kp[:, 1] = rng.uniform(1, h - 1, NUM_JOINTS)
    kp[:, 2] = 2
    lb = letterbox_params(w, h, SIZE)
    assert lb.pad_y > 0  # the frame is letterboxed, not stretched
    cfg = _cfg()
    runner = _OracleRunner(cfg, [(lb.to_input(kp), lb.to_input(np.array([w / 2, h / 2])))])
    (pose,) = predict_frames(runner, _frames(rng, 1, h, w))
    np.testing.assert_allclose(pose.keypoints, kp[:, :2], atol=1e-3)
    assert pose.found.all() and pose.scores.min() == pytest.approx(1.0)
    # The center is the middle of the decoded center cell, in frame pixels.
    cell = lb.to_input(np.array([w / 2, h / 2])) // 4
    np.testing.assert_allclose(pose.center, lb.to_image((cell + 0.5) * 4))


class _BlobRunner:
    """A "network" that sees: it finds the white blob in its input and puts the joints at
    fixed fractions of the blob's box, on the centers of 4-pixel cells (a stride-4 model
    without offsets). Frames with less than ``min_blob`` white pixels get scores of 0."""

    FRACTIONS = np.stack([np.linspace(0.1, 0.9, NUM_JOINTS), np.linspace(0.05, 0.95, NUM_JOINTS)[::-1]], 1)  # fmt: skip

    def __init__(self, input_size=SIZE, min_blob=1):
        self.input_size, self.min_blob, self.calls = input_size, min_blob, []

    def __call__(self, batch):
        n = len(batch)
        self.calls.append(n)
        kp, scores = np.zeros((n, NUM_JOINTS, 2)), np.zeros((n, NUM_JOINTS))
        for i in range(n):
            ys, xs = np.nonzero(batch[i].mean(0) > 0.5)
            if len(xs) < self.min_blob:
                continue
            lo, hi = np.array([xs.min(), ys.min()]), np.array([xs.max(), ys.max()]) + 1.0
            kp[i] = (np.floor((lo + self.FRACTIONS * (hi - lo)) / 4) + 0.5) * 4
            scores[i] = 0.9
        return {"keypoints": kp, "scores": scores, "found": scores > 0.2,
                "center_scores": scores[:, 0], "centers": kp.mean(1)}  # fmt: skip


def _blob_frame(w, h, box):
    frame = np.zeros((h, w, 3), np.uint8)
    x0, y0, x1, y1 = box
    frame[y0:y1, x0:x1] = 255
    truth = np.array([x0, y0]) + _BlobRunner.FRACTIONS * np.array([x1 - x0, y1 - y0])
    return frame, truth


def test_a_second_look_at_the_crop_around_the_pose_is_more_precise():
    """A 40 x 100 person in a 640 x 480 frame is 4 x 10 input pixels whole: the crop around the
    first guess (about 150 pixels) brings it to training size, and the error falls to a
    quarter: from half a cell of 40 frame pixels (20) to half a cell of ~9.4 (4.7)."""
    from pkmodel.engine.predict import predict_frames_refined

    frames, truths = zip(
        _blob_frame(640, 480, (300, 200, 340, 300)),
        _blob_frame(640, 480, (2, 380, 42, 478)),  # at the corner: the crop leaves the frame
        _blob_frame(640, 480, (0, 0, 0, 0)),  # nobody: no box, the whole-frame pose stays
        strict=True,
    )
    runner = _BlobRunner()
    whole = predict_frames(runner, list(frames))
    refined = predict_frames_refined(runner, list(frames), passes=1, margin=0.1, expand_ratio=1.25)
    assert runner.calls == [3, 3, 2]  # the empty frame was not looked at again
    for i in (0, 1):
        before = np.abs(whole[i].keypoints - truths[i]).max()
        after = np.abs(refined[i].keypoints - truths[i]).max()
        assert before > 10.0 and after < 0.3 * before, (i, before, after)
        assert after < 5.0, (i, after)
    assert refined[2] is whole[2] or np.array_equal(refined[2].keypoints, whole[2].keypoints)
    # Two passes: the second crop is cut around a better pose, and stays as precise.
    twice = predict_frames_refined(
        runner, list(frames[:1]), passes=2, margin=0.1, expand_ratio=1.25
    )
    assert np.abs(twice[0].keypoints - truths[0]).max() < 5.0


def test_the_crop_around_a_pose_is_cut_like_prepare_coco():
    from pkmodel.common.geometry import pixel_crop_box
    from pkmodel.engine.predict import pose_crop_box

    kp = np.array([[100.0, 50.0], [120.0, 150.0], [110.0, 100.0]] + [[500.0, 500.0]] * (NUM_JOINTS - 3))  # fmt: skip
    found = np.zeros(NUM_JOINTS, bool)
    found[:3] = True
    found[3] = True  # found, but off the 200 x 200 image: not part of the box
    pose = Pose(kp, np.ones(NUM_JOINTS), found, np.zeros(2), 1.0)
    box = pose_crop_box(pose, 200, 200, margin=0.1, expand_ratio=1.25, min_joints=3)
    # joints' box [100, 50, 20, 100] grown by 10 on every side: [90, 40, 40, 120]
    # square side 120 x 1.25 = 150 about the center (110, 100)
    assert box == pixel_crop_box([90.0, 40.0, 40.0, 120.0], 1.25) == [35, 25, 150]
    assert pose_crop_box(pose, 200, 200, margin=0.1, expand_ratio=1.25, min_joints=4) is None


def test_draw_pose_draws_found_joints_only():
    frame = np.zeros((60, 60, 3), np.uint8)
    kp = np.tile([[30.0, 30.0]], (NUM_JOINTS, 1))
    found = np.zeros(NUM_JOINTS, bool)
    far = Pose(kp, np.zeros(NUM_JOINTS), found, np.array([np.nan, np.nan]), 0.0)
    assert draw_pose(frame, far).max() == 0 and frame.max() == 0
    found[0] = True
    assert (
        draw_pose(frame, Pose(kp, np.ones(NUM_JOINTS), found, np.array([10.0, 10.0]), 1.0)).max()
        > 0
    )


def test_predict_image_and_folder_with_a_checkpoint(tmp_path, checkpoint):
    import cv2

    rng = np.random.default_rng(1)
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(4):
        cv2.imwrite(str(folder / f"f{i}.png"), _frames(rng, 1, 50, 70 + 10 * i)[0])
    (folder / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    (folder / "notes.txt").write_text("ignored")
    out = tmp_path / "out"
    text = run_cli(["predict", folder, "--weights", checkpoint, "--out", out, "--quiet",
                    "--device", "cpu"])  # fmt: skip
    assert "4 image(s)" in text
    data = json.loads((out / "keypoints.json").read_text())
    assert data["schema"] == "pkmodel.predictions" and data["input_size"] == SIZE
    assert len(data["items"]) == 4 and data["skipped"][0]["file"].endswith("broken.jpg")
    for i, item in enumerate(data["items"]):
        kp = np.array(item["keypoints"])
        assert kp.shape == (NUM_JOINTS, 2) and len(item["scores"]) == NUM_JOINTS
        assert item["width"] == 70 + 10 * i and item["height"] == 50
        # Decoded cells lie on the letterboxed frame or its padding: within the frame +- pad.
        assert (kp[:, 0] > -1).all() and (kp[:, 0] < item["width"] + 1).all()
        overlay = cv2.imread(str(out / item["overlay"]))
        assert overlay.shape[:2] == (50, 70 + 10 * i)
    # The same image through the API gives the same numbers (batching does not matter).
    cfg = _cfg()
    single = predict_path(folder / "f2.png", checkpoint, tmp_path / "one", cfg, batch_size=1)
    one = json.loads(single.keypoints_json.read_text())["items"][0]
    np.testing.assert_allclose(one["keypoints"], data["items"][2]["keypoints"], atol=0.01)
    # --refine-passes 1: the pose of the crop around the whole-frame pose.
    from pkmodel.common.images import read_rgb
    from pkmodel.engine.predict import REFINE_MARGIN, load_runner, pose_crop_box, predict_boxes

    cfg.decoder.score_threshold = 0.0  # the untrained model's joints all count as found
    refined = predict_path(folder / "f2.png", checkpoint, tmp_path / "two", cfg, batch_size=1, refine_passes=1)  # fmt: skip
    two = json.loads(refined.keypoints_json.read_text())
    assert two["refine_passes"] == 1
    frame, runner = read_rgb(folder / "f2.png"), load_runner(checkpoint, cfg, "cpu")
    (first,) = predict_frames(runner, [frame])
    box = pose_crop_box(first, 90, 50, REFINE_MARGIN, cfg.prepare.expand_ratio)
    assert box is not None
    (want,) = predict_boxes(runner, [frame], [box])
    np.testing.assert_allclose(two["items"][0]["keypoints"], want.keypoints, atol=0.01)
    assert np.abs(want.keypoints - first.keypoints).max() > 0.5  # the second look moved it


def test_a_rerun_into_the_same_out_leaves_only_its_own_overlays(tmp_path, checkpoint):
    """A folder, then one image into the same --out left the folder's overlays beside a
    keypoints.json of one image: the overlays the earlier keypoints.json lists and the new run
    does not draw go once it is written; a run that fails and files no run wrote stay."""
    import cv2
    from typer.testing import CliRunner

    from pkmodel.cli import app

    rng = np.random.default_rng(2)
    folder, out = tmp_path / "imgs", tmp_path / "good"
    folder.mkdir()
    for i in range(3):
        cv2.imwrite(str(folder / f"f{i}.png"), _frames(rng, 1, 50, 70)[0])
    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (96, 64))
    for frame in _frames(rng, 2, 64, 96):
        writer.write(frame)
    writer.release()
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG not really")
    base = ["--weights", checkpoint, "--out", out, "--quiet", "--device", "cpu"]
    run_cli(["predict", folder, *base])
    (out / "mine_pose.jpg").write_bytes(b"the user's")  # listed by no keypoints.json
    overlays = ["f0_pose.jpg", "f1_pose.jpg", "f2_pose.jpg"]
    assert sorted(p.name for p in out.iterdir()) == sorted([*overlays, "keypoints.json", "mine_pose.jpg"])  # fmt: skip
    result = CliRunner().invoke(app, ["predict", str(broken), *map(str, base)])
    assert result.exit_code == 2 and "cannot be loaded" in result.output
    assert sorted(p.name for p in out.iterdir()) == sorted([*overlays, "keypoints.json", "mine_pose.jpg"])  # fmt: skip
    run_cli(["predict", folder / "f1.png", *base])
    assert sorted(p.name for p in out.iterdir()) == ["f1_pose.jpg", "keypoints.json", "mine_pose.jpg"]  # fmt: skip
    assert [i["overlay"] for i in json.loads((out / "keypoints.json").read_text())["items"]] == ["f1_pose.jpg"]  # fmt: skip
    run_cli(["predict", video, *base])
    assert sorted(p.name for p in out.iterdir()) == ["clip_pose.mp4", "keypoints.json", "mine_pose.jpg"]  # fmt: skip
    run_cli(["predict", folder, *base])
    assert sorted(p.name for p in out.iterdir()) == sorted([*overlays, "keypoints.json", "mine_pose.jpg"])  # fmt: skip


def test_checkpoint_and_onnx_agree(tmp_path, checkpoint):
    import cv2

    from pkmodel.export.onnx import write_onnx
    from pkmodel.model.checkpoint import model_from_checkpoint

    model, cfg, _ = model_from_checkpoint(checkpoint)
    onnx_path = tmp_path / "tiny.onnx"
    write_onnx(model, onnx_path, SIZE, cfg.export.onnx_opset)  # fixed batch 1
    rng = np.random.default_rng(2)
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i, frame in enumerate(_frames(rng, 3, 64, 96)):
        cv2.imwrite(str(folder / f"f{i}.png"), frame)
    a = predict_path(folder, checkpoint, tmp_path / "pt", _cfg(), batch_size=2)
    b = predict_path(folder, onnx_path, tmp_path / "onnx", _cfg(), batch_size=2)
    ia = json.loads(a.keypoints_json.read_text())["items"]
    ib = json.loads(b.keypoints_json.read_text())["items"]
    for x, y in zip(ia, ib, strict=True):
        np.testing.assert_allclose(x["keypoints"], y["keypoints"], atol=0.05)
        np.testing.assert_allclose(x["scores"], y["scores"], atol=1e-3)


def test_predict_video(tmp_path, checkpoint):
    import cv2

    video = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (96, 64))
    rng = np.random.default_rng(3)
    for frame in _frames(rng, 5, 64, 96):
        writer.write(frame)
    writer.release()
    out = tmp_path / "out"
    output = run_cli(["predict", video, "--weights", checkpoint, "--out", out, "--quiet",
                      "--batch-size", 2])  # fmt: skip
    assert "warning" not in output
    data = json.loads((out / "keypoints.json").read_text())
    assert data["kind"] == "video" and data["fps"] == pytest.approx(10.0)
    assert data["frame_count"] == 5
    assert [i["frame"] for i in data["items"]] == list(range(5))
    assert data["items"][3]["time_s"] == pytest.approx(0.3)
    cap = cv2.VideoCapture(str(out / "clip_pose.mp4"))
    count = 0
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        assert frame.shape == (64, 96, 3)
        count += 1
    assert count == 5
    assert not list(out.glob(".*"))  # no temporary file left behind
    # the mode every new file gets (mkstemp's temporary file was 0600)
    from pkmodel.common.atomic import default_file_mode

    assert (out / "clip_pose.mp4").stat().st_mode & 0o777 == default_file_mode()
    assert (out / "keypoints.json").stat().st_mode & 0o777 == default_file_mode()


def test_a_video_cut_short_is_predicted_with_a_warning(tmp_path, checkpoint):
    """An MJPG AVI cut at 60 %: OpenCV still opens it and its header still claims every frame,
    but only the first few decode."""
    import cv2

    whole = tmp_path / "whole.avi"
    writer = cv2.VideoWriter(str(whole), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (96, 64))
    for frame in _frames(np.random.default_rng(4), 20, 64, 96):
        writer.write(frame)
    writer.release()
    video = tmp_path / "cut.avi"
    video.write_bytes(whole.read_bytes()[: int(whole.stat().st_size * 0.6)])
    out = tmp_path / "out"
    output = run_cli(["predict", video, "--weights", checkpoint, "--out", out, "--quiet"])
    data = json.loads((out / "keypoints.json").read_text())
    decoded = len(data["items"])
    assert data["frame_count"] == 20 and 0 < decoded < 18
    assert (
        f"warning: video {video}: its container gives 20 frames but only the first {decoded} "
        "decode (the file is cut short or damaged)" in " ".join(output.split())
    )


def test_short_video_allows_the_containers_rounding():
    from pkmodel.engine.predict import short_video

    assert not short_video(20, 20) and not short_video(20, 19) and short_video(20, 18)
    assert not short_video(1000, 990) and short_video(1000, 989)


def test_bad_inputs_are_one_clear_line(tmp_path, checkpoint):
    from typer.testing import CliRunner

    from pkmodel.cli import app

    def fails(args, message):
        result = CliRunner().invoke(app, ["predict", *map(str, args)])
        assert result.exit_code == 2, result.output
        assert message in result.output and "Traceback" not in result.output

    image = shared_data("mmpose_coco", "000000000785.jpg")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"definitely not a checkpoint")
    fails([image, "--weights", junk], "is not a pkmodel checkpoint")
    bad_onnx = tmp_path / "junk.onnx"
    bad_onnx.write_bytes(b"not onnx either")
    fails([image, "--weights", bad_onnx], "is not a readable ONNX model")
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff truncated")
    fails([broken, "--weights", checkpoint], "cannot be loaded")
    fails([broken, "--weights", checkpoint, "--out", tmp_path / "new"], "cannot be loaded")
    assert not (tmp_path / "new").exists()  # a run that wrote nothing leaves no empty folder
    fails([tmp_path / "missing.png", "--weights", checkpoint], "does not exist")
    text = tmp_path / "a.txt"
    text.write_text("x")
    fails([text, "--weights", checkpoint], "neither an image")
    empty = tmp_path / "empty"
    empty.mkdir()
    fails([empty, "--weights", checkpoint], "holds no image")
    # a Stray Scanner folder: its colour is a video beside depth/ and the CSV files
    scan = tmp_path / "scan"
    (scan / "depth").mkdir(parents=True)
    (scan / "rgb.mp4").write_bytes(b"video")
    (scan / "camera_matrix.csv").write_text("1, 0, 0")
    fails([scan, "--weights", checkpoint], f"holds no image (.bmp, .jpeg, .jpg, .png, .tif, .tiff, .webp); for its video give the file itself ({scan / 'rgb.mp4'})")  # fmt: skip
    fails(
        [image, "--weights", checkpoint, "--refine-passes", -1], "refine passes must be 0 or more"
    )
    with pytest.raises(PkmodelError, match="cannot be opened"):
        fake = tmp_path / "fake.mp4"
        fake.write_bytes(b"nope")
        predict_path(fake, checkpoint, tmp_path / "o", _cfg())


def test_photos_and_videos_are_predicted_as_they_are_shown(tmp_path, checkpoint):
    """A phone's portrait photo is stored on its side with an EXIF orientation, its video with
    a display matrix: predict reads both as a viewer shows them (the keypoints are in the
    shown picture's pixels), where lift reads frames as stored to match the depth maps."""
    import io

    import cv2
    from PIL import Image

    from tests.lift.test_capture_apps import turn_for_display

    stored = np.zeros((40, 80, 3), np.uint8)
    stored[:, :40] = 255  # left half white: shown turned, the top half
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    buffer = io.BytesIO()
    Image.fromarray(stored).save(buffer, "JPEG", exif=exif.tobytes())
    (tmp_path / "photo.jpg").write_bytes(buffer.getvalue())
    video = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (80, 40))
    for _ in range(3):
        writer.write(stored[..., ::-1])
    writer.release()
    turn_for_display(video)
    for source in ("photo.jpg", "clip.mp4"):
        out = tmp_path / f"out-{source}"
        run_cli(["predict", tmp_path / source, "--weights", checkpoint, "--out", out, "--quiet"])
        data = json.loads((out / "keypoints.json").read_text())
        size = data["items"][0] if source == "photo.jpg" else data
        assert (size["width"], size["height"]) == (40, 80), source
    overlay = cv2.imread(str(tmp_path / "out-photo.jpg/photo_pose.jpg"))
    assert overlay.shape[:2] == (80, 40)
    assert overlay[:30].mean() > 200 and overlay[50:].mean() < 60  # turned as shown


TRAINED = Path(__file__).resolve().parents[1] / "assets" / "trained_96.pt"


@pytest.fixture(scope="module")
def upright_frames(tmp_path_factory) -> list[np.ndarray]:
    """Eight frames of a synthetic person standing upright, 256 x 192 (lift's clip)."""
    from pkmodel.lift.rgbd import find_sequences

    root = tmp_path_factory.mktemp("upright")
    run_cli(["make-synthetic", "--out", root, "--num-train", 0, "--num-val", 0, "--sequences", 1,
             "--frames", 8, "--seed", 21, "--size", "256x192", "--workers", 1])  # fmt: skip
    (seq,) = find_sequences(root / "sequences/seq_000")
    return [seq.load_color(i) for i in range(len(seq))]


def _keypoints(out: Path) -> tuple[dict, np.ndarray, np.ndarray]:
    data = json.loads((out / "keypoints.json").read_text())
    items = data["items"]
    kp = np.array([item["keypoints"] for item in items])
    found = np.array([item["found"] for item in items])
    return data, kp, found


def test_predict_turns_pictures_stored_on_their_side(tmp_path, upright_frames):
    """Frames stored on their side with no EXIF orientation or display matrix (a phone's raw
    capture): --rotate 270 (or auto, which finds it) shows the network the upright person and
    gives the joints back in the stored frames' pixels, the upright frames' joints turned.
    Without --rotate the network sees a lying person and misplaces most joints."""
    import cv2

    from pkmodel.engine.predict import AUTO_TURN_GAIN

    upright, side = tmp_path / "upright", tmp_path / "side"
    upright.mkdir()
    side.mkdir()
    for i, frame in enumerate(upright_frames):
        cv2.imwrite(str(upright / f"f{i}.png"), frame[..., ::-1])
        stored = np.ascontiguousarray(np.rot90(frame, k=-1))  # turned 90 degrees clockwise
        cv2.imwrite(str(side / f"f{i}.png"), stored[..., ::-1])
    common = ["--weights", TRAINED, "--quiet", "--device", "cpu", "--refine-passes", 1]
    run_cli(["predict", upright, "--out", tmp_path / "a", *common])
    text = run_cli(["predict", side, "--out", tmp_path / "b", "--rotate", "auto", *common])
    assert "frames turned 270 degrees clockwise for the network (--rotate auto)" in text
    run_cli(["predict", side, "--out", tmp_path / "c", "--rotate", "270", *common])
    run_cli(["predict", side, "--out", tmp_path / "d", *common])

    head_a, kp_a, found_a = _keypoints(tmp_path / "a")
    head_b, kp_b, found_b = _keypoints(tmp_path / "b")
    head_c, kp_c, _ = _keypoints(tmp_path / "c")
    head_d, kp_d, found_d = _keypoints(tmp_path / "d")
    assert head_a["rotate_deg"] == 0 and "rotate_auto" not in head_a
    assert head_b["rotate_deg"] == 270 and head_c["rotate_deg"] == 270
    turns = head_b["rotate_auto"]["turns"]
    assert head_b["rotate_auto"]["frames"] == 8
    # as lift.rotate = "auto" found for these frames (joints scoring 0.3 or more)
    assert turns["270"]["joints"] == 84 and turns["0"]["joints"] == 52
    assert (
        turns["270"]["joints"] >= AUTO_TURN_GAIN * turns["0"]["joints"]
        and max(turns.values(), key=lambda v: v["joints"]) is turns["270"]
    )
    assert found_a.sum() > 0.8 * found_a.size and head_d["rotate_deg"] == 0
    # stored (x, y) of an upright point (u, v) turned clockwise: (h - v, u), h = 192
    x, y = kp_a[..., 0], kp_a[..., 1]
    turned = np.stack([192 - y, x], -1)
    np.testing.assert_allclose(kp_b, turned, atol=0.02)
    lying = np.linalg.norm(kp_d - turned, axis=-1)[found_a & found_d]
    assert np.median(lying) > 20  # 68 px: as stored, the network's joints are elsewhere
    np.testing.assert_array_equal(found_b, found_a)
    np.testing.assert_array_equal(kp_c, kp_b)
    assert all(item["width"] == 192 and item["height"] == 256 for item in head_b["items"])


def test_predict_turns_a_video_stored_on_its_side(tmp_path, upright_frames):
    """The same for a video: --rotate auto looks at frames spread over it and keeps the turn
    for every frame; the joints match the upright video's turned, within the codec's loss."""
    import cv2

    def write(path: Path, frames: list[np.ndarray]) -> None:
        h, w = frames[0].shape[:2]
        writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (w, h))
        for frame in frames * 2:
            writer.write(frame[..., ::-1])
        writer.release()

    write(tmp_path / "upright.mp4", upright_frames)
    write(tmp_path / "side.mp4", [np.ascontiguousarray(np.rot90(f)) for f in upright_frames])
    common = ["--weights", TRAINED, "--quiet", "--device", "cpu"]
    run_cli(["predict", tmp_path / "upright.mp4", "--out", tmp_path / "a", *common])
    run_cli(["predict", tmp_path / "side.mp4", "--out", tmp_path / "b", "--rotate", "auto", *common])  # fmt: skip
    head_a, kp_a, found_a = _keypoints(tmp_path / "a")
    head_b, kp_b, found_b = _keypoints(tmp_path / "b")
    assert head_b["rotate_deg"] == 90 and head_b["rotate_auto"]["frames"] == 8
    assert (head_b["width"], head_b["height"]) == (192, 256) and len(head_b["items"]) == 16
    # stored (x, y) of an upright point (u, v) turned counter-clockwise: (v, w - u), w = 256
    x, y = kp_a[..., 0], kp_a[..., 1]
    both = found_a & found_b
    assert both.sum() > 0.6 * both.size
    error = np.linalg.norm(kp_b - np.stack([y, 256 - x], -1), axis=-1)[both]
    assert np.median(error) < 2.0


def test_predict_rotate_takes_quarter_turns_only(tmp_path, checkpoint):
    import cv2
    from typer.testing import CliRunner

    from pkmodel.cli import app

    image = tmp_path / "f.png"
    cv2.imwrite(str(image), np.zeros((20, 30, 3), np.uint8))
    result = CliRunner().invoke(app, ["predict", str(image), "--weights", str(checkpoint),
                                      "--out", str(tmp_path / "out"), "--rotate", "45"])  # fmt: skip
    assert result.exit_code != 0
    assert result.output.strip().splitlines()[-1] == (
        "error: --rotate must be auto, 0, 90, 180 or 270 (degrees clockwise), not '45'"
    )
    assert not (tmp_path / "out").exists()


def test_a_folder_with_an_image_name_that_is_not_utf8(tmp_path, checkpoint):
    """Pillow reads an image whose name has a byte that is not UTF-8 (Python keeps it as a
    surrogate); writing its overlay atomically raised UnicodeEncodeError in the temporary
    name. Both images are predicted, the overlay keeps the name's bytes."""
    import os

    from PIL import Image

    folder = tmp_path / "imgs"
    folder.mkdir()
    for name in ("plain.png", os.fsdecode(b"x\xff.png")):
        Image.fromarray(np.full((30, 40, 3), 90, np.uint8)).save(folder / name)
    summary = predict_path(folder, checkpoint, tmp_path / "out", _cfg(), batch_size=2)
    assert summary.frames == 2
    names = sorted(os.listdir(os.fsencode(tmp_path / "out")))
    assert names == [b"keypoints.json", b"plain_pose.jpg", b"x\xff_pose.jpg"]


def app_edge_outputs() -> tuple[torch.Tensor, ...]:
    """Network outputs (48 x 48 grid) whose every joint decodes 16 cells above the center, at
    row 8 of the 192-pixel input: inside the input, above a 640 x 480 frame letterboxed into it
    (its image starts at row 24)."""
    heat = torch.zeros(1, NUM_JOINTS, 48, 48)
    heat[0, :, 2, 24] = 0.9
    centers = torch.zeros(1, 1, 48, 48)
    centers[0, 0, 24, 24] = 1.0
    regs = torch.zeros(1, 2 * NUM_JOINTS, 48, 48)
    regs[0, 1::2, 24, 24] = -22.0  # y: the app truncates -21.5 to -21 (cell 3); pkmodel -22
    return heat, centers, regs, torch.zeros(1, 2 * NUM_JOINTS, 48, 48)


@pytest.mark.parametrize("style", ["pkmodel", "posekit-app"])
def test_the_app_style_clamps_points_to_the_frame(style):
    """POSEKIT_APP's decoder maps each point back to the sensor image "clamped to [0, 1]": a
    joint decoded in the letterbox's padding above the frame is at y = 0 in the app's style,
    and where it was decoded (y < 0, off the frame) in pkmodel's."""
    from pkmodel.model.decode import DecodeSettings, decode_poses

    cfg = load_config(overrides=[f"decoder.style={style}", "decoder.score_threshold=0.1"])

    class Runner:
        input_size = 192

        def __init__(self) -> None:
            self.cfg = cfg

        def __call__(self, batch):
            return decode_poses(app_edge_outputs(), DecodeSettings.for_grid(cfg.decoder, 192, 48))

    (pose,) = predict_frames(Runner(), [np.zeros((480, 640, 3), np.uint8)])
    assert pose.found.all()
    # refined cell (24, 2), input pixels (96, 8); the frame's image starts at row 24 of the
    # input and is scaled by 0.3: (320, (8 - 24) / 0.3 = -53.3)
    expected_y = 0.0 if style == "posekit-app" else (8.0 - 24.0) / 0.3
    np.testing.assert_allclose(pose.keypoints[:, 1], expected_y, atol=1e-6)
    np.testing.assert_allclose(pose.keypoints[:, 0], 320.0, atol=1e-6)
