import json
from pathlib import Path

import numpy as np
import pytest
import torch

from pkmodel.common.errors import PkmodelError
from pkmodel.common.skeleton import FLIP_INDEX, JOINT_INDEX, NUM_JOINTS
from pkmodel.config import Config, PrepareConfig
from pkmodel.data.dataset import PoseDataset, input_to_image
from pkmodel.data.labels import write_labels
from pkmodel.data.loader import make_loader
from pkmodel.data.prepare import prepare_split
from tests.conftest import shared_data

LW, RW = JOINT_INDEX["left_wrist"], JOINT_INDEX["right_wrist"]
AUG_PROBS = ("flip_prob", "affine_prob", "crop_pad_prob", "color_prob", "blur_prob",
             "noise_prob", "occlusion_prob")  # fmt: skip


def config(input_size: int = 64, **augment) -> Config:
    cfg = Config()
    cfg.model.input_size = input_size
    for key, value in augment.items():
        setattr(cfg.augment, key, value)
    return cfg


def only(**probs) -> dict[str, float]:
    """Augmentation probabilities: all 0 except the ones given."""
    return {**dict.fromkeys(AUG_PROBS, 0.0), **probs}


@pytest.fixture(scope="module")
def mmpose(tmp_path_factory) -> Path:
    """mmpose_coco prepared at 96 pixels: 12 people, several with others in their crop."""
    out = tmp_path_factory.mktemp("prep")
    prepare_split("val", shared_data("mmpose_coco"), shared_data("mmpose_coco/test_coco.json"),
                  out, PrepareConfig(crop_size=96, workers=1), progress=False)  # fmt: skip
    return out / "val.json"


# --- a hand-made set whose pixels say which joint is where -------------------------------------

SIZE = 128


def code(joint: int, other: bool) -> tuple[int, int, int]:
    """Marker colour of a joint: red 255, green = joint code, blue = which person."""
    return (255, 20 + 12 * joint, 255 if other else 0)


@pytest.fixture(scope="module")
def markers(tmp_path_factory) -> Path:
    """Crops with a 9x9 coloured block at every joint of a main person and of one other."""
    import cv2

    out = tmp_path_factory.mktemp("markers")
    (out / "imgs").mkdir()
    rng = np.random.default_rng(0)
    samples = []
    for n in range(6):
        img = np.zeros((SIZE, SIZE, 3), np.uint8)
        people = []
        for _ in range(2):
            cells = rng.choice(100, NUM_JOINTS, replace=False)  # distinct spots on a 10x10 grid
            xy = np.stack([14 + (cells % 10) * 11, 14 + (cells // 10) * 11], 1) + 0.5
            kp = np.concatenate([xy, np.full((NUM_JOINTS, 1), 2.0)], 1)
            people.append(kp)
        # Other person's blocks may not overlap the main ones: drop overlapping other joints.
        taken = {tuple(p) for p in people[0][:, :2]}
        for j, (x, y, _) in enumerate(people[1]):
            if (x, y) in taken:
                people[1][j] = 0.0
        for other, kp in zip((False, True), people, strict=True):
            for j, (x, y, v) in enumerate(kp):
                if v > 0:
                    cx, cy = int(x), int(y)
                    img[cy - 4 : cy + 5, cx - 4 : cx + 5] = code(j, other)
        cv2.imwrite(str(out / "imgs" / f"{n}.png"), img[:, :, ::-1])
        samples.append({
            "image": f"imgs/{n}.png", "image_id": n, "ann_id": n, "file_name": f"{n}.png",
            "width": SIZE, "height": SIZE, "crop_box": [0, 0, SIZE],
            "keypoints": people[0].tolist(), "center": [64.0, 64.0],
            "bbox": [10.0, 10.0, 108.0, 108.0], "area": 1e4,
            "others": [{"keypoints": people[1].tolist(), "center": [60.0, 60.0]}],
        })  # fmt: skip
    header = {"schema": "pkmodel.prepared", "version": 1, "split": "m", "crop_size": SIZE}
    write_labels(out / "m.json", header, samples)
    return out / "m.json"


def _marker_errors(sample) -> list[tuple[float, float]]:
    """Per visible joint: distance to the centroid of its own marker colour (pixels), and the
    marker's weight (smaller when a crop or the frame cut it, which moves its centroid)."""
    img = sample.image.astype(int)
    ys, xs = np.mgrid[: img.shape[0], : img.shape[1]]
    out = []
    people = [(sample.keypoints, False)] + [(o, True) for o in sample.others]
    for kp, other in people:
        for j in np.flatnonzero(kp[:, 2] > 0):
            want = code(FLIP_INDEX[j] if sample.flipped else j, other)
            # Pixels of this marker: green / red and blue / red ratios of its code (interpolation
            # with the black background keeps the ratios), weighted by red.
            red = img[..., 0]
            hit = np.abs(img[..., 1] * 255 - want[1] * red) <= 6 * red
            hit &= np.abs(img[..., 2] * 255 - want[2] * red) <= 40 * red
            w = np.where(hit & (red > 60), red, 0).astype(float)
            x, y = kp[j, :2].astype(int)
            # The joint's own pixel (or a neighbour, at a blurred rim) shows its own marker.
            assert w[max(0, y - 1) : y + 2, max(0, x - 1) : x + 2].sum() > 0, (j, other, want)
            c = np.array([(xs * w).sum(), (ys * w).sum()]) / w.sum() + 0.5
            out.append((float(np.hypot(*(c - kp[j, :2]))), w.sum()))
    return out


def test_augmented_joints_stay_on_their_pixels_and_flip_swaps_sides(markers):
    # Geometric augmentation always on, flips half the time; no colour change to fool the check.
    cfg = config(SIZE, **only(flip_prob=0.5, affine_prob=1.0, crop_pad_prob=0.5))
    ds = PoseDataset(markers, cfg, train=True)
    checked = flips = dropped = whole_count = 0
    worst = 0.0
    for epoch in range(8):
        ds.set_epoch(epoch)
        for i in range(len(ds)):
            sample = ds.load_sample(i)
            errors = np.array(_marker_errors(sample))
            checked += len(errors)
            # Whole markers (not cut by a crop edge, whose centroid moves) have full weight.
            whole = errors[:, 1] > 0.95 * np.median(errors[:, 1])
            whole_count += whole.sum()
            worst = max(worst, errors[whole, 0].max())
            flips += sample.flipped
            # Joints pushed out of the image lose their target and their coordinates.
            gone = sample.keypoints[:, 2] == 0
            dropped += gone.sum()
            assert np.all(sample.keypoints[gone, :2] == 0)
            assert np.all((sample.keypoints[~gone, :2] >= 0) & (sample.keypoints[~gone, :2] < SIZE))
    assert checked > 8 * 6 * NUM_JOINTS  # main and other people together
    assert whole_count > 0.9 * checked
    assert 10 < flips < 38 and dropped > 0
    assert worst < 0.4  # pixels and labels move together, to sub-pixel accuracy


def test_flip_swaps_left_and_right_for_the_main_person_and_the_others(mmpose):
    plain = PoseDataset(mmpose, config(64), train=False)
    flipped = PoseDataset(mmpose, config(64, **only(flip_prob=1.0)), train=True)
    s = 64
    seen_others = 0
    for i in range(len(plain)):
        a, b = plain.load_sample(i), flipped.load_sample(i)
        assert b.flipped and not a.flipped
        assert np.array_equal(b.image, a.image[:, ::-1])
        # The flipped sample's left wrist is the original right wrist, mirrored.
        for p, q in [(a.keypoints, b.keypoints)] + list(zip(a.others, b.others, strict=True)):
            assert q[LW, 2] == p[RW, 2] and q[RW, 2] == p[LW, 2]
            if p[RW, 2] > 0:
                assert q[LW, 0] == pytest.approx(s - p[RW, 0]) and q[LW, 1] == pytest.approx(
                    p[RW, 1]
                )
            if p[LW, 2] > 0:
                assert q[RW, 0] == pytest.approx(s - p[LW, 0])
            vis = p[:, 2] > 0
            assert np.allclose(q[FLIP_INDEX][vis, 0], s - p[vis, 0])
        assert len(a.others) == len(b.others)
        seen_others += len(a.others)
        assert b.center[0] == pytest.approx(s - a.center[0])
    assert seen_others >= 4


def test_validation_is_deterministic_and_unaugmented(mmpose):
    cfg = config(64)
    a, b = PoseDataset(mmpose, cfg, train=False), PoseDataset(mmpose, cfg, train=False)
    b.set_epoch(5)
    for i in range(len(a)):
        x, y = a[i], b[i]
        assert x.keys() == y.keys()
        for key in x:
            assert torch.equal(x[key], y[key]), key
        assert not a.load_sample(i).flipped


def test_training_augmentation_depends_on_seed_epoch_and_index_only(mmpose):
    cfg = config(64)
    a, b = PoseDataset(mmpose, cfg, train=True), PoseDataset(mmpose, cfg, train=True)
    a.set_epoch(3)
    b.set_epoch(3)
    order = list(range(len(a)))
    first = [a[i]["image"] for i in order]
    second = [b[i]["image"] for i in reversed(order)][::-1]  # another order, same result
    assert all(torch.equal(x, y) for x, y in zip(first, second, strict=True))
    b.set_epoch(4)
    assert sum(not torch.equal(first[i], b[i]["image"]) for i in order) >= len(order) - 1


def test_validation_keypoints_map_back_to_the_coco_annotation(mmpose):
    raw = {a["id"]: a for a in json.loads(shared_data("mmpose_coco/test_coco.json").read_text())["annotations"]}  # fmt: skip
    ds = PoseDataset(mmpose, config(64), train=False)
    batch = np.stack([ds.load_sample(i).keypoints for i in range(len(ds))])  # (N, K, 3)
    back = ds.to_image(np.arange(len(ds)), batch[..., :2])
    for i, s in enumerate(ds.samples):
        orig = np.array(raw[s["ann_id"]]["keypoints"], float).reshape(NUM_JOINTS, 3)
        vis = orig[:, 2] > 0
        assert np.array_equal(batch[i, :, 2], orig[:, 2])
        assert np.abs(back[i, vis] - orig[vis, :2]).max() < 0.5
    one = ds.to_image(3, batch[3, :, :2])
    assert np.allclose(one, back[3])
    # input_to_image keeps extra columns and agrees with the per-sample method.
    full = input_to_image(batch, ds.crop_boxes, ds.crop_size, ds.input_size)
    assert np.allclose(full[..., :2], back) and np.array_equal(full[..., 2], batch[..., 2])


def test_item_tensors_and_targets(mmpose):
    cfg = config(64)
    ds = PoseDataset(mmpose, cfg, train=False)
    item = ds[0]
    grid = 64 // 4
    assert item["image"].shape == (3, 64, 64) and item["image"].dtype == torch.float32
    assert item["image"].min() >= -1.0 and item["image"].max() <= 1.0
    assert item["heatmaps"].shape == (NUM_JOINTS, grid, grid)
    assert item["centers"].shape == (1, grid, grid)
    assert item["reg_values"].shape == item["offset_values"].shape == (NUM_JOINTS, 2)
    assert int(item["index"]) == 0
    vis = item["keypoints"][:, 2] > 0
    assert torch.equal(item["reg_mask"] > 0, vis)
    # Each labelled joint's heatmap peaks (1.0) at the cell of the joint.
    for j in torch.nonzero(vis).flatten():
        cx, cy = (item["keypoints"][j, :2] // 4).long().clamp(0, grid - 1)
        assert item["heatmaps"][j, cy, cx] == pytest.approx(1.0)
    # The image is the crop, RGB, scaled to [-1, 1].
    rgb = ds.load_sample(0).image
    assert torch.allclose(item["image"], torch.from_numpy(rgb).permute(2, 0, 1) / 127.5 - 1)


def test_loader_with_workers_gives_the_same_batches(mmpose):
    cfg = config(64)
    ds = PoseDataset(mmpose, cfg, train=True)
    a = list(make_loader(ds, 4, shuffle=True, workers=0, seed=1, epoch=2))
    b = list(make_loader(ds, 4, shuffle=True, workers=2, seed=1, epoch=2))
    assert len(a) == len(b) == 3
    for x, y in zip(a, b, strict=True):
        assert torch.equal(x["index"], y["index"]) and torch.equal(x["image"], y["image"])
        assert torch.equal(x["heatmaps"], y["heatmaps"])
    assert sorted(torch.cat([x["index"] for x in a]).tolist()) == list(range(12))


def test_one_persistent_train_loader_serves_every_epoch_like_a_fresh_one(tiny_prepared):
    """Workers start once per run; each epoch's order and augmentation are still a function
    of (seed, epoch) alone: the same batches as a new single-process loader for that epoch."""
    from pkmodel.data.loader import TrainLoader

    cfg = config(64)
    labels = tiny_prepared / "train.json"
    run = TrainLoader(PoseDataset(labels, cfg, train=True), 8, workers=2, pin_memory=False,
                      distributed=False, seed=1)  # fmt: skip
    epochs, pids = {}, []
    for epoch in (1, 2):
        epochs[epoch] = list(run.epoch(epoch))
        pids.append(sorted(w.pid for w in run.loader._iterator._workers))
        fresh = TrainLoader(PoseDataset(labels, cfg, train=True), 8, workers=0, pin_memory=False,
                            distributed=False, seed=1).epoch(epoch)  # fmt: skip
        assert len(epochs[epoch]) == len(fresh) == len(run.sampler.inner) // 8 >= 2
        for x, y in zip(epochs[epoch], fresh, strict=True):
            assert torch.equal(x["index"], y["index"]) and torch.equal(x["image"], y["image"])
            assert torch.equal(x["heatmaps"], y["heatmaps"])
    assert pids[0] == pids[1] and len(pids[0]) == 2  # the same two worker processes
    one, two = (torch.cat([b["index"] for b in epochs[e]]) for e in (1, 2))
    assert not torch.equal(one, two)  # another order in epoch 2
    first = {int(i): img for b in epochs[1] for i, img in zip(b["index"], b["image"], strict=True)}
    again = [(first[int(i)], img) for b in epochs[2]
             for i, img in zip(b["index"], b["image"], strict=True) if int(i) in first]  # fmt: skip
    assert sum(not torch.equal(a, b) for a, b in again) >= len(again) - 1  # other augmentation


def test_bad_prepared_data_is_one_clear_error(mmpose, tmp_path):
    data = json.loads(mmpose.read_text())
    data["samples"][0]["image"] = "imgs/val/missing.jpg"
    bad = mmpose.parent / "broken.json"
    bad.write_text(json.dumps(data))
    ds = PoseDataset(bad, config(64), train=False)
    with pytest.raises(PkmodelError, match=r"crop .*missing\.jpg listed in .*broken\.json"):
        ds[0]
    data["samples"] = []
    bad.write_text(json.dumps(data))
    with pytest.raises(PkmodelError, match="hold no samples"):
        PoseDataset(bad, config(64), train=False)
    with pytest.raises(PkmodelError, match="do not exist"):
        PoseDataset(tmp_path / "none.json", config(64), train=False)


def test_a_missing_crop_read_in_a_worker_process_is_its_one_sentence(tiny_prepared, tmp_path):
    """torch re-raises a worker's PkmodelError with the worker's traceback as its message; the
    loaders give the worker's sentence instead, as without workers."""
    from pkmodel.data.loader import TrainLoader
    from tests.conftest import labels_missing_a_crop

    labels = labels_missing_a_crop(tiny_prepared, tmp_path)
    sentence = (
        f"crop {tmp_path}/imgs/val/missing.jpg listed in {labels} is missing or unreadable "
        "(run `pkmodel prepare-coco` again)"
    )
    ds = PoseDataset(labels, config(64), train=False)
    for workers in (0, 2):
        with pytest.raises(PkmodelError) as info:
            list(make_loader(ds, 4, shuffle=False, workers=workers))
        assert str(info.value) == sentence, workers
    train_ds = PoseDataset(labels, config(64), train=True)
    with pytest.raises(PkmodelError) as info:
        list(TrainLoader(train_ds, 4, 2, False, False, seed=0).epoch(0))
    assert str(info.value) == sentence


def _damaged_crop(mmpose: Path, folder: Path, how: str, records: bool = True) -> tuple[Path, str]:
    """mmpose's labels and crops copied into ``folder`` with the crop of sample 0 cut to half
    its bytes ("cut") or with 32 bytes in its middle overwritten ("damaged"); ``records``: the
    labels keep each crop's crop_bytes and crop_sha1. Returns the labels and the sentence."""
    import shutil

    data = json.loads(mmpose.read_text())
    if not records:
        for s in data["samples"]:
            del s["crop_bytes"], s["crop_sha1"]
    shutil.copytree(mmpose.parent / "imgs", folder / "imgs")
    labels = folder / "val.json"
    labels.write_text(json.dumps(data))
    crop = folder / data["samples"][0]["image"]
    pixels = crop.read_bytes()
    n = len(pixels)
    if how == "cut":
        crop.write_bytes(pixels[: n // 2])
    else:
        crop.write_bytes(pixels[: n // 2] + bytes(range(32)) + pixels[n // 2 + 32 :])
    problem = {
        "cut": f"is {n // 2} bytes, not the {n} the labels record: cut short or changed since "
        "prepare-coco wrote it",
        "damaged": "does not have the SHA-1 the labels record: damaged or changed since "
        "prepare-coco wrote it",
        "unrecorded": "is cut short: its JPEG data ends before the end of the image",
    }[how if records else "unrecorded"]
    return labels, f"crop {crop} listed in {labels} {problem} (run `pkmodel prepare-coco` again)"


@pytest.mark.parametrize(("how", "records"), [("cut", True), ("damaged", True), ("cut", False)])
def test_a_crop_cut_short_or_damaged_is_one_sentence_before_it_is_decoded(
    mmpose, tmp_path, capfd, how, records
):
    """OpenCV decodes a JPEG cut short with grey rows and only libjpeg's "Premature end of JPEG
    file" on stderr: train, evaluate and show-samples used such crops. The crop's size and
    SHA-1 the labels record (a JPEG's end of image where they record none) refuse it first,
    in a worker process too, with nothing on stderr."""
    labels, sentence = _damaged_crop(mmpose, tmp_path, how, records)
    ds = PoseDataset(labels, config(64), train=False)
    ds[1]  # the other crops are read as before
    for workers in (0, 2) if how == "cut" and records else (0,):
        with pytest.raises(PkmodelError) as info:
            list(make_loader(ds, 4, shuffle=False, workers=workers))
        assert str(info.value) == sentence, workers
    assert "JPEG" not in capfd.readouterr().err


def test_worker_error_keeps_the_sentence_and_leaves_other_errors_alone():
    from pkmodel.data.loader import worker_error

    wrapped = PkmodelError(
        "Caught PkmodelError in DataLoader worker process 1.\nOriginal Traceback (most recent "
        'call last):\n  File "x.py", line 3, in f\n    raise PkmodelError(\n'
        "pkmodel.common.errors.PkmodelError: crop a.jpg listed in b.json is missing\n"
    )
    assert str(worker_error(wrapped)) == "crop a.jpg listed in b.json is missing"
    plain = PkmodelError("Caught in the act: a sentence of its own")
    assert worker_error(plain) is plain


class _FailingReads(torch.utils.data.Dataset):
    def __len__(self) -> int:
        return 4

    def __getitem__(self, i: int):
        raise FileNotFoundError(2, "No such file or directory", f"/nowhere/{i}.jpg")


def test_an_os_error_in_a_worker_process_is_its_one_line():
    """torch re-raises a worker's FileNotFoundError as FileNotFoundError(its traceback text),
    which the CLI would print whole; the loader keeps the worker's own line."""
    from pkmodel.data.loader import PoseDataLoader

    for workers in (0, 1):
        with pytest.raises(FileNotFoundError) as info:
            list(PoseDataLoader(_FailingReads(), batch_size=2, num_workers=workers))
        assert str(info.value) == "[Errno 2] No such file or directory: '/nowhere/0.jpg'", workers
        assert "\n" not in str(info.value)


_FORK_AFTER_OPENCV_THREADS = """
import cv2, numpy as np, torch
from pkmodel.data.dataset import _one_thread_per_worker
from pkmodel.data.loader import PoseDataLoader

class Crops(torch.utils.data.Dataset):
    def __len__(self):
        return 8

    def __getitem__(self, i):
        _one_thread_per_worker()  # what PoseDataset does first in a worker
        return torch.tensor([cv2.getNumThreads()])

cv2.setNumThreads(4)
for _ in range(3):  # OpenCV's pool threads at work in the parent before the workers fork
    cv2.GaussianBlur(np.zeros((1200, 1200, 3), np.uint8), (31, 31), 5)
threads = torch.cat(list(PoseDataLoader(Crops(), batch_size=2, num_workers=2)))
print(threads.flatten().tolist(), cv2.getNumThreads())
"""


def test_workers_forked_after_opencv_ran_on_threads_start_and_take_one_thread():
    """A worker's cv2.setNumThreads(1) waited forever for the pool threads of the parent,
    which a fork does not copy (`export-coreml --check-ap` hung after the export's checks)."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", _FORK_AFTER_OPENCV_THREADS], capture_output=True,
                          text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["[1,", "1,", "1,", "1,", "1,", "1,", "1,", "1]", "4"]


def test_sample_grid_draws_every_sample(mmpose):
    from pkmodel.data.dataset import sample_grid

    grid, n = sample_grid(mmpose, config(64), count=5, cols=3)
    assert n == 5 and grid.shape == (2 * 64 + 4, 3 * 64 + 2 * 4, 3)
    assert grid[64 + 4 :, 2 * 68 :].max() == 0  # the sixth cell stays empty


def test_cli_show_samples(mmpose, tmp_path):
    import cv2
    from typer.testing import CliRunner

    from pkmodel.cli import app
    from tests.conftest import run_cli

    out = tmp_path / "grid.png"
    text = run_cli(["show-samples", "--dataset", mmpose.parent, "--split", "val", "--out", out,
                    "--count", 6, "--cols", 3, "--set", "model.input_size=64"])  # fmt: skip
    assert "6 samples" in text
    assert cv2.imread(str(out)).shape == (2 * 64 + 4, 3 * 64 + 2 * 4, 3)
    result = CliRunner().invoke(app, ["show-samples", "--dataset", str(mmpose.parent),
                                      "--split", "val", "--out", str(tmp_path / "g.gif")])  # fmt: skip
    assert result.exit_code == 2 and "must end in .png or .jpg" in result.output
    result = CliRunner().invoke(app, ["show-samples", "--dataset", str(tmp_path), "--split", "x"])
    assert result.exit_code == 2 and "run `pkmodel prepare-coco`" in result.output
    # the settings train refuses, show-samples refuses too (a negative seed or epoch was a
    # NumPy traceback; a flip probability of 1.5 drew a grid)
    for extra, message in [
        (["--epoch", "-5"], "error: --epoch must be 0 or more, got -5"),
        (["--set", "train.seed=-1"], "error: train.seed = -1 must be a whole number from 0 to"),
        (["--set", "augment.flip_prob=1.5"], "error: augment.flip_prob = 1.5 must be in [0, 1]"),
        (
            ["--set", "augment.scale_min=2"],
            "error: augment.scale_min = 2.0 must be <= augment.scale_max",
        ),  # fmt: skip
        (
            ["--split", "../x/val"],
            "error: --split '../x/val' must be the name of a prepared split",
        ),  # fmt: skip
    ]:
        args = ["show-samples", "--dataset", str(mmpose.parent), "--split", "val", *extra]
        result = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "bad.png")])
        assert result.exit_code == 2 and result.output.startswith(message), result.output
        assert len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "bad.png").exists()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda s: s.update(keypoints=s["keypoints"][:5]), r"samples\[3\].keypoints must be 17 x 3 numbers, got shape \(5, 3\)"),
        (lambda s: s.update(keypoints="abc"), r"samples\[3\].keypoints is missing or not numbers"),
        (lambda s: s.pop("center"), r"samples\[3\].center is missing or not numbers"),
        (lambda s: s.update(crop_box=[1, 2]), r"samples\[3\].crop_box must be 3 numbers"),
    ],
)  # fmt: skip
def test_a_malformed_sample_is_named(tiny_prepared, tmp_path, change, message):
    from pkmodel.config import Config

    data = json.loads((tiny_prepared / "val.json").read_text())
    change(data["samples"][3])
    (tmp_path / "val.json").write_text(json.dumps(data))
    with pytest.raises(PkmodelError, match=message):
        PoseDataset(tmp_path / "val.json", Config(), train=False)


def test_finish_drops_joints_off_the_input_and_others_out_of_view():
    """Faults guarded in PoseDataset._finish: a joint on the right edge line (x = S) or past it
    keeping its target, and the others' rule (kept when a joint is in view OR the whole center
    is): an other with joints in view but its center outside dropped, one with its center half
    outside and no joint in view kept."""
    from types import SimpleNamespace

    s, k = 64, NUM_JOINTS
    points = np.full((4 * k + 4, 2), 10.0)
    vis = np.full(4 * k, 2.0)
    points[0], points[1], points[2] = [64.0, 10.0], [70.0, 10.0], [63.9, 63.9]
    vis[k : 2 * k] = 0  # other 1: no joint, center (30, 30) in view: kept
    vis[2 * k + 1 :] = 0  # other 2: one joint in view, center (-5, 10) outside: kept
    vis[3 * k : 4 * k] = 0  # other 3: no joint, center (30, 70) half outside: dropped
    points[4 * k :] = [[32.0, 32.0], [30.0, 30.0], [-5.0, 10.0], [30.0, 70.0]]
    out = PoseDataset._finish(SimpleNamespace(input_size=s), np.zeros((s, s, 3), np.uint8),
                              points, vis, 3, False)  # fmt: skip
    assert out.keypoints[:3].tolist() == [[0, 0, 0], [0, 0, 0], [63.9, 63.9, 2]]
    assert out.other_centers.tolist() == [[30.0, 30.0], [-5.0, 10.0]]
    assert [int(o[:, 2].sum()) for o in out.others] == [0, 2]
