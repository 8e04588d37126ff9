"""`pkmodel data ...` on bad input: outputs that would replace inputs, malformed samples,
paths that leave the dataset, seeds and frame intervals out of range; one sentence each, exit 2."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from pkmodel.cli import app
from pkmodel.common.errors import PkmodelError
from pkmodel.common.skeleton import NUM_JOINTS


def _sample(i: int) -> dict:
    kp = np.zeros((NUM_JOINTS, 3))
    kp[:, :2], kp[:, 2] = 10.0 + i, 2
    return {
        "image": f"imgs/train/{i}.jpg", "image_id": i, "ann_id": i, "file_name": f"{i}.jpg",
        "keypoints": kp.tolist(), "center": [16.0, 16.0], "crop_box": [0.0, 0.0, 32.0],
        "bbox": [1.0, 1.0, 20.0, 20.0], "width": 64, "height": 64,
    }  # fmt: skip


@pytest.fixture
def labels(tmp_path) -> Path:
    """Two samples with their 32-pixel crops: tmp/x.json, tmp/imgs/train/{0,1}.jpg."""
    import cv2

    (tmp_path / "imgs/train").mkdir(parents=True)
    for i in range(2):
        cv2.imwrite(str(tmp_path / f"imgs/train/{i}.jpg"), np.full((32, 32, 3), 90, np.uint8))
    data = {"schema": "pkmodel.prepared", "version": 1, "crop_size": 32}
    data["samples"] = [_sample(0), _sample(1)]
    (tmp_path / "x.json").write_text(json.dumps(data))
    return tmp_path / "x.json"


def _run(args: list) -> tuple[int, str]:
    result = CliRunner().invoke(app, [str(a) for a in args])
    return result.exit_code, result.output


def _edited(labels: Path, name: str, **fields) -> Path:
    data = json.loads(labels.read_text())
    data["samples"][0].update(fields)
    (labels.parent / name).write_text(json.dumps(data))
    return labels.parent / name


def test_stats_out_beside_the_input_is_refused_and_the_input_kept(labels):
    before = labels.read_bytes()
    for out in (labels.with_suffix(".png"), labels.parent / "x.PNG"):
        code, output = _run(["data", "stats", labels, "--out", out])
        assert code == 2 and f"would write {out.with_suffix('.json')}, the input labels" in output
    assert labels.read_bytes() == before
    code, output = _run(["data", "stats", labels, "--out", labels.parent / "s.png"])
    assert code == 0 and (labels.parent / "s.json").is_file()


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"keypoints": [[1, 2, 2]]}, "samples[0].keypoints must be 17 x 3 numbers"),
        (
            {"keypoints": [["a", "b", "c"]] * NUM_JOINTS},
            "samples[0].keypoints is missing or not numbers",
        ),  # fmt: skip
        ({"source": 5}, "samples[0].source is 5, not a text tag"),
    ],
)
def test_render_refuses_malformed_samples(labels, fields, message):
    bad = _edited(labels, "bad.json", **fields)
    code, output = _run(["data", "render", bad, "--out", labels.parent / "r.jpg", "--quiet"])
    assert code == 2 and message in output and "Traceback" not in output
    assert not (labels.parent / "r.jpg").exists()


def test_render_refuses_to_replace_a_crop(labels):
    crop = labels.parent / "imgs/train/1.jpg"
    before = crop.read_bytes()
    code, output = _run(["data", "render", labels, "--out", crop, "--quiet"])
    assert code == 2 and "is an existing crop" in output and crop.read_bytes() == before


def test_negative_seeds_are_refused(labels):
    code, output = _run(["data", "split", labels, "--seed", "-1", "--train-name", "a", "--val-name", "b"])  # fmt: skip
    assert code == 2 and "--seed -1 must be a whole number >= 0" in output
    code, output = _run(["data", "render", labels, "--random", "--seed", "-3", "--count", "1"])
    assert code == 2 and "--seed -3 must be" in output


def test_merge_refuses_paths_that_go_up_out_of_the_dataset(labels, tmp_path):
    bad = _edited(labels, "up.json", image="../../../../etc/hostname")
    code, output = _run(["data", "merge", bad, "--out", tmp_path / "m", "--quiet"])
    assert code == 2 and "goes up with '..'" in output and not (tmp_path / "m").exists()
    # `data split --out` writes '../<dataset>/imgs/...': those still merge
    code, output = _run(["data", "split", labels, "--train-name", "a", "--val-name", "b",
                         "--val-ratio", "0.5", "--out", tmp_path / "s"])  # fmt: skip
    assert code == 0, output
    assert json.loads((tmp_path / "s/a.json").read_text())["samples"][0]["image"].startswith("..")
    code, output = _run(["data", "merge", tmp_path / "s/a.json", "--out", tmp_path / "m2", "--quiet"])  # fmt: skip
    assert code == 0, output


def test_split_names_the_labels_file_of_an_absolute_image_path(labels, tmp_path):
    """render and merge named the labels file, split gave only 'samples[0]'."""
    bad = _edited(labels, "abs.json", image="/etc/hostname")
    code, output = _run(["data", "split", bad, "--train-name", "a", "--val-name", "b",
                         "--val-ratio", "0.5", "--out", tmp_path / "s"])  # fmt: skip
    assert code == 2 and output.strip() == (
        f"error: {bad} samples[0]: image path '/etc/hostname' must be a file path relative to "
        "the label file's folder"
    )
    assert not (tmp_path / "s").exists()


def test_a_folder_is_not_a_labels_file(tmp_path):
    (tmp_path / "imgs").mkdir()
    code, output = _run(["data", "merge", tmp_path / "imgs", "--out", tmp_path / "m"])
    assert code == 2 and "is a folder, not a labels file" in output


def test_extract_frames_every_must_be_finite_and_not_tiny(tmp_path):
    from pkmodel.datatools.frames import extract_frames, frames_every

    for every in (1e-9, 0.0, -1.0, float("inf"), float("nan")):
        with pytest.raises(PkmodelError, match="must be a finite number of seconds of at least"):
            extract_frames(tmp_path, tmp_path / "out", every, None, 95, progress=False)
    # shorter than a frame: every frame, without an array of a step per nanosecond
    assert frames_every(25.0, 10, 0.001).tolist() == list(range(10))
    assert frames_every(25.0, 10, 0.2).tolist() == [0, 5]


def test_extract_frames_says_why_a_video_cannot_be_read(tmp_path):
    """One video that cannot be read: the error gives its reason (it said only that no video
    under the path could be read); several: how many."""
    (tmp_path / "v").mkdir()
    (tmp_path / "v/zero.mp4").write_bytes(b"")
    code, output = _run(["data", "extract-frames", tmp_path / "v/zero.mp4", "--count", 2,
                         "--out", tmp_path / "f", "--quiet"])  # fmt: skip
    assert code == 2
    assert output.strip().splitlines()[-1] == (
        f"error: video {tmp_path / 'v/zero.mp4'} cannot be read: the file is empty (0 bytes)"
    )
    (tmp_path / "v/text.mp4").write_text("not a video")
    code, output = _run(["data", "extract-frames", tmp_path / "v", "--count", 2, "--out", tmp_path / "f", "--quiet"])  # fmt: skip
    assert code == 2 and output.strip().splitlines()[-1] == (
        f"error: none of the 2 videos under {tmp_path / 'v'} could be read"
    )
    assert "failed " in output and "OpenCV cannot open it (damaged, or not a video)" in output


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (
            {"keypoints": [[1, 2, 2]] * 16 + [[1, 2]]},
            "samples[0].keypoints is missing or not numbers",
        ),  # fmt: skip
        (
            {"keypoints": [[1, 2, 2]] * 5},
            "samples[0].keypoints must be 17 x 3 numbers, got shape (5, 3)",
        ),  # fmt: skip
        ({"center": None}, "samples[0].center must be 2 numbers, got shape ()"),
        ({"bbox": [1, 2]}, "samples[0].bbox is missing or not 4 numbers"),
        ({"width": "wide"}, "samples[0].width / height is missing or not 2 numbers"),
    ],
)
def test_stats_names_the_malformed_sample(labels, fields, message):
    """data stats said "have malformed 'keypoints' (setting an array element with a
    sequence...)" or "are malformed ('bbox')", naming no sample."""
    bad = _edited(labels, "bad.json", **fields)
    code, output = _run(["data", "stats", bad, "--out", labels.parent / "s.png"])
    assert code == 2 and output.strip() == f"error: prepared labels {bad}: {message}"
