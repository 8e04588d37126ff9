"""Evaluation: COCOeval wrapper, OKS, PCK, flip test, the oracle on real COCO, the CLI."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from pkmodel.common.errors import PkmodelError
from pkmodel.common.skeleton import FLIP_INDEX, JOINT_INDEX, JOINT_NAMES, NUM_JOINTS
from pkmodel.engine.evaluate import (
    average_flip,
    evaluate_model,
    evaluate_split,
    predict_split,
    unflip_outputs,
)
from pkmodel.engine.metrics import (
    coco_keypoint_eval,
)
from tests.conftest import labels_missing_a_crop, run_cli, shared_data
from tests.engine.coco_files import (
    COCO_MINI,
    coco_file,
    coco_result,
    eval_config,
    prepare_people,
    random_person,
)

# --- flip test -------------------------------------------------------------------------------


def _targets(kp, center, others, size=64):
    from pkmodel.data.targets import encode_targets, target_maps

    cfg = eval_config()
    okp = np.asarray([o[0] for o in others]).reshape(-1, NUM_JOINTS, 3)
    oc = np.asarray([o[1] for o in others]).reshape(-1, 2)
    t = encode_targets(kp, center, okp, oc, size, cfg.targets)
    return target_maps({k: torch.from_numpy(v)[None] for k, v in t.items()})


def _mirror(kp, center, size):
    m = kp.copy()
    m[:, 0] = size - m[:, 0]
    return m[FLIP_INDEX], np.array([size - center[0], center[1]])


def _random_pose(rng, size, main=True):
    """Random joints; the main person's center near the middle (where prepare puts it), another
    person's center off to a side (so the decoder's center prior picks the main one)."""
    kp = np.zeros((NUM_JOINTS, 3))
    kp[:, :2] = rng.uniform(size * 0.1, size * 0.9, (NUM_JOINTS, 2))
    kp[:, 2] = (rng.random(NUM_JOINTS) < 0.85) * 2
    center = rng.uniform(size * 0.45, size * 0.55, 2) if main else rng.uniform(0, size * 0.25, 2)
    return kp, center


def _decode(outputs):
    from pkmodel.model.decode import decode_batch

    return decode_batch(outputs)


def test_unflip_maps_targets_of_the_mirrored_pose_onto_the_pose():
    """encode(mirror(pose)) unflipped == encode(pose): maps, vectors and the decoded joints."""
    rng = np.random.default_rng(0)
    size = 64
    for _ in range(10):
        kp, center = _random_pose(rng, size)
        other = _random_pose(rng, size, main=False)
        mkp, mcenter = _mirror(kp, center, size)
        okp, ocenter = _mirror(*other, size)
        direct = _targets(kp, center, [other])
        back = unflip_outputs(_targets(mkp, mcenter, [(okp, ocenter)]))
        for a, b in zip(direct[:3], back[:3], strict=True):  # heatmaps, centers, regs
            torch.testing.assert_close(a, b, atol=2e-4, rtol=0)
        labelled = kp[:, 2] > 0
        got, want = _decode(back), _decode(direct)
        np.testing.assert_allclose(got.keypoints[0, labelled], kp[labelled, :2], atol=1e-4)
        np.testing.assert_allclose(want.keypoints[0, labelled], kp[labelled, :2], atol=1e-4)
        # Averaging the two keeps every labelled joint exactly where it is.
        avg = _decode(average_flip(direct, _targets(mkp, mcenter, [(okp, ocenter)])))
        np.testing.assert_allclose(avg.keypoints[0, labelled], kp[labelled, :2], atol=1e-4)


class _MirrorAwareModel(torch.nn.Module):
    """Returns the targets of a pose for the plain image and of the mirrored pose for the
    flipped image (told apart by a marker pixel): an exactly flip-equivariant 'network'."""

    def __init__(self, plain, mirrored):
        super().__init__()
        self.plain, self.mirrored = plain, mirrored
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        is_plain = (x[:, 0, 0, 0] > 0).view(-1, 1, 1, 1)
        return tuple(torch.where(is_plain, p, m) for p, m in
                     zip(self.plain, self.mirrored, strict=True))  # fmt: skip


def test_flip_test_of_an_equivariant_model_keeps_its_prediction():
    rng = np.random.default_rng(5)
    size = 64
    kp, center = _random_pose(rng, size)
    kp[:, 2] = 2
    mkp, mcenter = _mirror(kp, center, size)
    plain, mirrored = _targets(kp, center, []), _targets(mkp, mcenter, [])
    # Weaken the plain left-wrist heatmap to 0.6: the flip test averages it with the mirrored
    # output's RIGHT wrist channel (left/right swapped), which is at full height: 0.8.
    wrist = JOINT_INDEX["left_wrist"]
    plain[0][:, wrist] *= 0.6
    image = -torch.ones(2, 3, size, size)
    image[:, 0, 0, 0] = 1.0  # marker: top-left pixel bright in the plain image only
    model = _MirrorAwareModel(plain, mirrored)
    cfg = eval_config(**{"model.input_size": size})
    dataset = [{"image": im, "index": torch.tensor(i)} for i, im in enumerate(image)]
    plain_pred = predict_split(model, dataset, cfg, flip_test=False, workers=0)
    flip_pred = predict_split(model, dataset, cfg, flip_test=True, workers=0)
    assert model.calls == 3  # one batch plain, one batch plain + flipped
    for pred, wrist_score in ((plain_pred, 0.6), (flip_pred, 0.8)):
        np.testing.assert_allclose(pred.keypoints[0], kp[:, :2], atol=1e-4)
        np.testing.assert_allclose(np.delete(pred.scores[0], wrist), 1.0, atol=1e-6)
        assert pred.scores[0, wrist] == pytest.approx(wrist_score, abs=1e-6)
    # Mirroring the maps without swapping joints and fixing the vectors decodes elsewhere.
    wrong = tuple((a + b.flip(3)) / 2 for a, b in zip(plain, mirrored, strict=True))
    assert not np.allclose(_decode(wrong).keypoints[0], kp[:, :2], atol=1.0)


# --- the oracle on real COCO ---------------------------------------------------------------


def test_oracle_on_coco_mini_with_the_training_filters(tmp_path):
    """The default filters keep every person COCOeval counts (86 on 28 images); scored against
    the kept people alone, the oracle is exact too."""
    ann, images = shared_data(*COCO_MINI), shared_data("coco_mini", "train2017")
    cfg = eval_config(**{"train.workers": 0})
    labels = prepare_people(tmp_path, "default", ann, images, cfg, all_people=False)
    m = evaluate_split(labels, cfg).metrics
    assert m["oracle"] and m["samples"] == 86 and m["gt_people_without_prediction"] == 0
    assert m["AP"] >= 0.99
    data = json.loads(ann.read_text())
    kept = {s["ann_id"] for s in json.loads(labels.read_text())["samples"]}
    only_kept = tmp_path / "kept.json"
    only_kept.write_text(json.dumps({**data, "annotations": [a for a in data["annotations"] if a["id"] in kept]}))  # fmt: skip
    m = evaluate_split(labels, cfg, annotations=only_kept).metrics
    assert m["samples"] == 86 and m["gt_people_without_prediction"] == 0
    assert m["AP"] >= 0.99
    assert m["mean_oks"] > 0.999 and m["mean_error_px"] < 0.01


def test_oracle_on_coco_mini_every_person(tmp_path):
    """Every counted person (86 on 28 images): nothing between labels and metric loses accuracy.

    COCO boxes cut some limbs off: 9 labelled joints of 6 people lie outside a 1.25 x box crop.
    prepare.cover_keypoints grows the box about its center to hold them, so every joint is in
    the input and AP is 1; without it those 6 people are the only loss."""
    ann, images = shared_data(*COCO_MINI), shared_data("coco_mini", "train2017")
    cfg = eval_config(**{"train.workers": 0})
    ev = evaluate_split(prepare_people(tmp_path, "all", ann, images, cfg), cfg)
    m = ev.metrics
    assert m["samples"] == 86 and m["images"] == 28 and m["gt_people"] == 86
    assert m["AP"] >= 0.99 and m["AR"] >= 0.99
    assert (ev.oks > 0.9999).all()

    cut = eval_config(**{"train.workers": 0, "prepare.cover_keypoints": "false"})
    ev = evaluate_split(prepare_people(tmp_path, "cut", ann, images, cut), cut)
    assert 0.93 < ev.metrics["AP"] < 0.95
    boxes = np.array([s["crop_box"] for s in ev.samples], float)
    rel = (ev.gt[..., :2] - boxes[:, None, :2]) / boxes[:, None, 2:]
    outside = ((rel < 0) | (rel >= 1)).any(-1) & (ev.gt[..., 2] > 0)
    assert outside.any(1).sum() == 6 and outside.sum() == 9
    assert (ev.oks[~outside.any(1)] > 0.9999).all()


def test_oracle_on_mmpose_coco(tmp_path):
    ann = shared_data("mmpose_coco", "test_coco.json")
    cfg = eval_config(**{"train.workers": 0})
    m = evaluate_split(prepare_people(tmp_path, "mm", ann, ann.parent, cfg), cfg).metrics
    assert m["samples"] == 12 and m["AP"] >= 0.99 and m["PCK"] == pytest.approx(1.0)


def test_oracle_where_the_person_category_is_not_1(tmp_path):
    """A keypoint file whose person category has another id (0 here, as tools that count from
    0 write): results in category 1 met no ground truth and scored AP 0 beside PCK 1."""
    ann = shared_data("mmpose_coco", "test_coco.json")
    data = json.loads(ann.read_text())
    data["categories"] = [{**data["categories"][0], "id": 0}, {"id": 1, "name": "dog"}]
    for a in data["annotations"]:
        a["category_id"] = 0
    # a dog with keypoints on the first image: another category's ground truth, not a person
    dog = {**data["annotations"][0], "id": 999999, "category_id": 1}
    data["annotations"].append(dog)
    moved = tmp_path / "category_0.json"
    moved.write_text(json.dumps(data))
    cfg = eval_config(**{"train.workers": 0})
    ev = evaluate_split(prepare_people(tmp_path, "c0", moved, ann.parent, cfg), cfg)
    m = ev.metrics
    # each result in its own annotation's category; COCOeval scores the two apart
    assert [r["category_id"] for r in ev.results] == [0] * 12 + [1] and m["gt_people"] == 13
    assert m["AP"] >= 0.99 and m["PCK"] == pytest.approx(1.0)
    assert coco_keypoint_eval(moved, ev.results)["AP"] == pytest.approx(m["AP"])


# --- a network, the loss, the CLI -----------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    from pkmodel.model.checkpoint import save_checkpoint
    from pkmodel.model.network import build_model

    cfg = eval_config(**{"model.input_size": 64, "model.width_mult": 0.35, "model.neck_channels": 16,
                  "model.head_channels": 16})  # fmt: skip
    torch.manual_seed(0)
    model = build_model(cfg.model, pretrained=False)
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    save_checkpoint(path, {"model": model.state_dict(), "ema": None, "config": cfg.to_dict()})
    return path


def test_evaluate_model_with_loss_restores_the_mode(tmp_path, tiny_checkpoint):
    from pkmodel.model.checkpoint import model_from_checkpoint
    from pkmodel.model.loss import PoseLoss

    ann = shared_data("mmpose_coco", "test_coco.json")
    model, cfg, _ = model_from_checkpoint(tiny_checkpoint)
    cfg.train.workers = 0
    labels = prepare_people(tmp_path, "mm", ann, ann.parent, cfg)
    model.train()
    m = evaluate_model(model, labels, cfg, loss_fn=PoseLoss(cfg.loss), batch_size=5)
    assert model.training
    assert 0.0 <= m["AP"] < 0.5 and m["samples"] == 12  # an untrained network
    assert m["loss"] > 0 and math.isfinite(m["loss"])
    flipped = evaluate_model(model, labels, cfg, flip_test=True)
    assert flipped["flip_test"] and "loss" not in flipped


def test_cli_oracle_writes_metrics_results_and_pictures(tmp_path):
    ann = shared_data("mmpose_coco", "test_coco.json")
    out = tmp_path / "eval"
    text = run_cli(["evaluate", "--oracle", "--annotations", ann, "--images", ann.parent,
                    "--out", out, "--quiet", "--pictures", 3, "--set", "train.workers=0"])  # fmt: skip
    assert "AP" in text and "1.000" in text
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["AP"] >= 0.99 and metrics["oracle"] is True and metrics["samples"] == 12
    assert list(metrics["PCK_per_joint"]) == list(JOINT_NAMES)
    results = json.loads((out / "results.json").read_text())
    assert len(results) == 12 and all(len(r["keypoints"]) == 3 * NUM_JOINTS for r in results)
    # results.json alone reproduces AP with pycocotools on the original file.
    assert coco_keypoint_eval(ann, results)["AP"] == pytest.approx(metrics["AP"])
    import cv2

    for name in ("best", "worst", "pck_joints"):
        image = cv2.imread(str(out / f"{name}.png"))
        assert image is not None and image.shape[0] > 100 and image.std() > 10

    # Stopped while drawing (Ctrl-C), a second evaluation into the folder leaves the first
    # one's files as they were, not its new metrics beside the old pictures; finished without
    # pictures, it deletes the first one's, which no longer show its metrics.
    import pkmodel.engine.report as report

    before = {p.name: p.read_bytes() for p in out.iterdir()}
    args = ["evaluate", "--oracle", "--annotations", ann, "--images", ann.parent, "--out", out,
            "--quiet", "--set", "train.workers=0", "--set", "eval.pck_threshold=0.1"]  # fmt: skip

    def stopped(*args, **kwargs):
        raise KeyboardInterrupt

    save = report.save_overlays
    report.save_overlays = stopped
    try:
        with pytest.raises(AssertionError):  # run_cli: the command did not finish
            run_cli([*args, "--pictures", 3])
    finally:
        report.save_overlays = save
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # no temporary folder either
    run_cli([*args, "--pictures", 0])
    assert sorted(p.name for p in out.iterdir()) == ["metrics.json", "results.json"]
    assert json.loads((out / "metrics.json").read_text())["pck_threshold"] == 0.1


def test_cli_checkpoint_with_flip_test(tmp_path, tiny_checkpoint):
    ann = shared_data("mmpose_coco", "test_coco.json")
    out = tmp_path / "eval"
    text = run_cli(["evaluate", "--weights", tiny_checkpoint, "--annotations", ann, "--images",
                    ann.parent, "--out", out, "--quiet", "--flip-test", "--pictures", 0,
                    "--set", "train.workers=0", "--device", "cpu", "--error-budget"])  # fmt: skip
    metrics = json.loads((out / "metrics.json").read_text())
    budget = metrics["error_budget"]
    assert "error budget" in text and "every labelled joint exact" in text
    assert budget["rows"]["as predicted"]["AP"] == pytest.approx(metrics["AP"])
    assert budget["rows"]["every labelled joint exact"]["AP"] >= 0.99
    assert metrics["flip_test"] is True and metrics["oracle"] is False
    assert metrics["weights"] == str(tiny_checkpoint) and metrics["input_size"] == 64
    assert not (out / "best.png").exists()


def test_cli_bad_inputs_are_one_clear_line(tmp_path):
    from typer.testing import CliRunner

    from pkmodel.cli import app

    def fails(args, message):
        result = CliRunner().invoke(app, ["evaluate", *map(str, args)])
        assert result.exit_code == 2, result.output
        assert message in result.output and "Traceback" not in result.output

    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint at all")
    fails(["--weights", junk, "--oracle"], "exactly one of them")
    fails(["--weights", junk], "is not a pkmodel checkpoint")
    fails(["--oracle", "--annotations", junk], "go together")
    fails(["--oracle", "--labels", tmp_path / "none.json"], "do not exist")
    instances = tmp_path / "instances.json"
    instances.write_text(json.dumps({"images": [{"id": 1, "file_name": "a.jpg", "width": 9,
                         "height": 9}], "annotations": [{"id": 1, "image_id": 1, "bbox": [0, 0,
                         4, 4], "area": 16, "iscrowd": 0}], "categories": []}))  # fmt: skip
    fails(["--oracle", "--annotations", instances, "--images", tmp_path], "keypoints")


def test_evaluate_refuses_a_folder_missing_most_images(tmp_path):
    """--annotations with a folder holding 1 of mmpose_coco's 4 images: not the AP of those few
    people unless asked; with --allow-missing-images the oracle scores what is there."""
    from typer.testing import CliRunner

    from pkmodel.cli import app

    ann = shared_data("mmpose_coco", "test_coco.json")
    (tmp_path / "few").mkdir()
    os.symlink(ann.parent / "000000197388.jpg", tmp_path / "few" / "000000197388.jpg")
    args = ["evaluate", "--oracle", "--annotations", str(ann), "--images", str(tmp_path / "few"),
            "--out", str(tmp_path / "eval"), "--pictures", "0", "--quiet"]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2
    assert result.output == (
        f"error: 3 of the 4 images with people to crop that {ann} names are missing from "
        f"{tmp_path / 'few'} (e.g. 000000000785.jpg); nothing was evaluated: check --images, or "
        "pass --allow-missing-images to evaluate the 5 people of the images that are there\n"
    )
    assert not (tmp_path / "eval").exists()
    text = run_cli([*args, "--allow-missing-images"])
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["AP"] == pytest.approx(1.0) and metrics["gt_people"] == 5, text


def test_annotations_without_optional_fields_still_evaluate(tmp_path):
    """num_keypoints, iscrowd and area are filled in the COCO way when a file omits them."""
    rng = np.random.default_rng(4)
    kp, bbox, _ = random_person(rng)
    path = coco_file(tmp_path, [(kp, bbox, bbox[2] * bbox[3])])
    data = json.loads(path.read_text())
    for key in ("num_keypoints", "iscrowd", "area"):
        del data["annotations"][0][key]
    path.write_text(json.dumps(data))
    assert coco_keypoint_eval(path, [coco_result(kp)])["AP"] == pytest.approx(1.0)


def test_a_batch_size_below_one_is_one_sentence():
    from pkmodel.config import Config
    from pkmodel.engine.evaluate import evaluate_split

    cfg = Config()
    cfg.set("eval.batch_size", 0, "test")
    with pytest.raises(PkmodelError, match=r"^eval.batch_size = 0 must be at least 1$"):
        evaluate_split("no-labels.json", cfg)  # refused before the labels are read


def _cli(*args) -> subprocess.CompletedProcess:
    """`pkmodel ARGS` in a process of its own (DataLoader workers are real processes)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PKMODEL_")}
    env.update(COLUMNS="200", NO_COLOR="1", NO_ALBUMENTATIONS_UPDATE="1")
    return subprocess.run([sys.executable, "-m", "pkmodel", *map(str, args)], env=env,
                          capture_output=True, text=True, timeout=300)  # fmt: skip


def test_cli_a_missing_crop_with_worker_processes_is_one_sentence(tiny_prepared, tmp_path, tiny_checkpoint):  # fmt: skip
    labels = labels_missing_a_crop(tiny_prepared, tmp_path)
    done = _cli("evaluate", "--weights", tiny_checkpoint, "--labels", labels, "--device", "cpu",
                "--quiet", "--out", tmp_path / "e", "--set", "train.workers=2")  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    assert done.stderr.splitlines() == [
        f"error: crop {tmp_path}/imgs/val/missing.jpg listed in {labels} is missing or "
        "unreadable (run `pkmodel prepare-coco` again)"
    ]


def test_prepared_labels_without_coco_ids_or_crop_size_are_one_sentence(tiny_prepared, tmp_path):
    from typer.testing import CliRunner

    from pkmodel.cli import app

    data = json.loads((tiny_prepared / "val.json").read_text())
    data["samples"][3]["image_id"] = "x"
    (tmp_path / "imgs").symlink_to(tiny_prepared / "imgs")
    labels = tmp_path / "val.json"
    labels.write_text(json.dumps(data))
    cfg = eval_config(**{"model.input_size": 64, "train.workers": 0})
    with pytest.raises(PkmodelError) as info:
        evaluate_split(labels, cfg)
    assert str(info.value) == (
        f"prepared labels {labels}: samples[3].image_id is 'x', not a whole number (the COCO id "
        "evaluation scores against)"
    )
    data["samples"][3]["image_id"] = 1
    data["crop_size"] = "x"
    labels.write_text(json.dumps(data))
    result = CliRunner().invoke(app, ["evaluate", "--oracle", "--labels", str(labels), "--quiet",
                                      "--out", str(tmp_path / "e")])  # fmt: skip
    assert result.exit_code == 2 and "Traceback" not in result.output
    says = f"prepared labels {labels}: 'crop_size' is 'x', not a positive whole number of pixels"
    assert result.output.strip() == f"error: {says}"


def test_an_evaluation_reads_the_prepared_labels_once(tiny_prepared, monkeypatch):
    """The labels file is read once per evaluation, error budget included (its eight scorings
    each read it again before), and the scores are those of the oracle."""
    from pathlib import Path

    labels = tiny_prepared / "val.json"
    reads = []
    read_bytes = Path.read_bytes

    def counted(path):  # read_labels reads the file's bytes, whoever calls it
        if path == labels:
            reads.append(path)
        return read_bytes(path)

    monkeypatch.setattr(Path, "read_bytes", counted)
    cfg = eval_config(**{"model.input_size": 64, "train.workers": 0})
    m = evaluate_split(labels, cfg, budget=True).metrics
    assert len(reads) == 1 and m["oracle"] is True
    assert m["AP"] > 0.9 and len(m["error_budget"]["rows"]) == 8


# --- scoring: score_predictions on a hand-made split -----------------------------------------


def _scoring_case(tmp_path):
    """One 200 x 200 image: person 10 (the first sample: joints 0-2 visible, 3 and 4 labelled
    but hidden, an area of 2,500 inside a 100 x 100 box), person 11 (the second sample: no
    labelled joint) and a dog (category 2) with joints, which no sample shows."""
    from types import SimpleNamespace

    from pkmodel.engine.scoring import Predictions

    kp = np.zeros((NUM_JOINTS, 3))
    kp[:5, 0], kp[:5, 1], kp[:5, 2] = 40.0 + 10 * np.arange(5), 50.0, [2, 2, 2, 1, 1]
    ann = {"image_id": 1, "category_id": 1, "iscrowd": 0}
    anns = [
        {**ann, "id": 10, "bbox": [20, 20, 100, 100], "area": 2500.0, "num_keypoints": 5,
         "keypoints": kp.ravel().tolist()},
        {**ann, "id": 11, "bbox": [130, 20, 50, 100], "area": 3000.0, "num_keypoints": 0,
         "keypoints": [0.0] * (3 * NUM_JOINTS)},
        {**ann, "id": 12, "category_id": 2, "bbox": [20, 20, 100, 100], "area": 2500.0,
         "num_keypoints": 5, "keypoints": kp.ravel().tolist()},
    ]  # fmt: skip
    path = tmp_path / "ann.json"
    path.write_text(json.dumps({
        "images": [{"id": 1, "file_name": "a.jpg", "width": 200, "height": 200}],
        "annotations": anns,
        "categories": [{"id": 1, "name": "person"}, {"id": 2, "name": "dog"}],
    }))  # fmt: skip
    samples = [{"image_id": 1, "ann_id": 10}, {"image_id": 1, "ann_id": 11}]
    split = SimpleNamespace(
        samples=samples,
        labels_path=tmp_path / "val.json",
        header={"annotations": str(path)},
        to_image=lambda index, points: np.asarray(points, np.float64)[index],  # crop = image
    )
    pred = np.zeros((2, NUM_JOINTS, 2))
    pred[0] = kp[:, :2]
    pred[0, 3] += (6.0, 8.0)  # the hidden left ear 10 px off; every other labelled joint exact
    scores = np.full((2, NUM_JOINTS), 0.2)
    scores[0, :5] = (0.9, 0.8, 0.7, 0.6, 0.1)
    found = np.zeros((2, NUM_JOINTS), bool)
    found[0, :4] = True  # joint 4 is labelled but not found; joints 5+ unlabelled
    preds = Predictions(pred, scores, found, np.array([0.5, 0.4]))
    return split, preds, path


def test_score_predictions_numbers_on_a_hand_made_split(tmp_path):
    """Guards what score_predictions feeds the metrics: labelled = v > 0 (hidden joints count),
    each person's own COCO area (not its box), the PCK threshold of the config, the found rate
    over labelled joints only, the mean OKS over samples that have one (NaN skipped), instance
    scores (center x mean found score), and the people COCOeval counts (its category only, a
    sample without labelled joints never making the count negative)."""
    from pkmodel.engine.scoring import score_predictions

    split, preds, _ = _scoring_case(tmp_path)
    cfg = eval_config(**{"eval.pck_norm": "bbox", "eval.pck_threshold": 0.05})
    ev = score_predictions(split, preds, cfg)
    m = ev.metrics
    # OKS: COCO's left-ear sigma 0.035; e = d^2 / (2 sigma)^2 / area / 2 with d = 10, area 2500.
    ear = math.exp(-(10.0**2) / (2 * 0.035) ** 2 / 2500.0 / 2)
    assert ev.oks[0] == pytest.approx((4 + ear) / 5, rel=1e-9) and math.isnan(ev.oks[1])
    assert m["mean_oks"] == pytest.approx((4 + ear) / 5, rel=1e-9)
    # PCK@0.05 of the 100 px box: 5 px; the ear's 10 px error misses.
    assert m["PCK"] == pytest.approx(0.8) and m["mean_error_px"] == pytest.approx(2.0)
    assert m["joint_found_rate"] == pytest.approx(0.8)  # 4 of the 5 labelled joints
    assert [r["score"] for r in ev.results] == [0.375, 0.08]  # 0.5 x 0.75; 0.4 x 0.2
    assert [r["category_id"] for r in ev.results] == [1, 1]
    assert m["gt_people"] == 1 and m["gt_people_without_prediction"] == 0
    assert m["samples"] == 2 and m["images"] == 1


def test_people_without_a_prediction_are_counted_by_id(tmp_path):
    """A person COCOeval counts that no sample shows (13) beside a sample of a person it does
    not count (11, no labelled joint): the count was the people counted minus the samples'
    people, 2 - 2 = 0, and the report said every person had a prediction."""
    from pkmodel.engine.scoring import score_predictions

    split, preds, path = _scoring_case(tmp_path)
    coco = json.loads(path.read_text())
    other = {**coco["annotations"][0], "id": 13, "bbox": [130, 20, 50, 100]}
    coco["annotations"].append(other)
    path.write_text(json.dumps(coco))
    m = score_predictions(split, preds, eval_config()).metrics
    assert m["gt_people"] == 2 and m["gt_people_without_prediction"] == 1


def test_score_predictions_refuses_bad_ids_and_a_missing_annotation_file(tmp_path):
    """Guards the one-sentence errors of scoring: a sample id that is true/false, an annotation
    id the file lacks, and prepared labels naming an annotation file that is gone."""
    from pkmodel.engine.scoring import score_predictions

    split, preds, path = _scoring_case(tmp_path)
    cfg = eval_config()
    split.samples[0]["image_id"] = True
    with pytest.raises(PkmodelError, match=r"samples\[0\]\.image_id is True, not a whole number"):
        score_predictions(split, preds, cfg)
    split.samples[0]["image_id"] = 1
    split.samples[1]["ann_id"] = 99
    with pytest.raises(PkmodelError, match=r"annotation ids \[99\] of .* are not in"):
        score_predictions(split, preds, cfg)
    split.samples[1]["ann_id"] = 11
    split.header["annotations"] = str(tmp_path / "gone.json")
    with pytest.raises(PkmodelError, match="pass the original annotations with --annotations"):
        score_predictions(split, preds, cfg)
    assert score_predictions(split, preds, cfg, annotations=path).metrics["samples"] == 2
