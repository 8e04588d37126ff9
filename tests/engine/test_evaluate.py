"""Evaluation: COCOeval wrapper, OKS, PCK, flip test, the oracle on real COCO, the CLI."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
import torch

from pkmodel.common.errors import PkmodelError
from pkmodel.common.skeleton import FLIP_INDEX, JOINT_INDEX, JOINT_NAMES, NUM_JOINTS, OKS_SIGMAS
from pkmodel.config import load_config
from pkmodel.engine.error_budget import input_ground_truth
from pkmodel.engine.evaluate import (
    Predictions,
    average_flip,
    error_budget,
    evaluate_model,
    evaluate_split,
    predict_split,
    prepare_for_evaluation,
    unflip_outputs,
)
from pkmodel.engine.metrics import (
    COCO_STAT_NAMES,
    coco_keypoint_eval,
    object_keypoint_similarity,
    pck,
    pck_normaliser,
)
from tests.conftest import run_cli, shared_data

COCO_MINI = ("coco_mini", "annotations", "person_keypoints_train2017.json")


def _cfg(**sets):
    return load_config(None, [f"{k}={v}" for k, v in sets.items()], {}, env={})


def _coco_file(tmp_path, people, width=400, height=300):
    """A one-image COCO keypoint file; people = list of (keypoints (K, 3), bbox, area)."""
    anns = [
        {"id": i + 1, "image_id": 1, "category_id": 1, "iscrowd": 0, "bbox": list(bbox),
         "area": float(area), "keypoints": np.asarray(kp, float).reshape(-1).tolist(),
         "num_keypoints": int((np.asarray(kp)[:, 2] > 0).sum())}
        for i, (kp, bbox, area) in enumerate(people)
    ]  # fmt: skip
    data = {
        "images": [{"id": 1, "file_name": "a.jpg", "width": width, "height": height}],
        "annotations": anns,
        "categories": [{"id": 1, "name": "person"}],
    }
    path = tmp_path / "ann.json"
    path.write_text(json.dumps(data))
    return path


def _result(kp, score=1.0):
    triples = np.concatenate([np.asarray(kp, float)[:, :2], np.ones((NUM_JOINTS, 1))], 1)
    return {"image_id": 1, "category_id": 1, "keypoints": triples.reshape(-1).tolist(),
            "score": score}  # fmt: skip


def _random_person(rng, x0=100.0, y0=60.0, size=150.0):
    kp = np.zeros((NUM_JOINTS, 3))
    kp[:, 0] = x0 + rng.uniform(0, size, NUM_JOINTS)
    kp[:, 1] = y0 + rng.uniform(0, size, NUM_JOINTS)
    kp[:, 2] = 2
    return kp, [x0, y0, size, size], size * size * 0.6


# --- COCO AP ---------------------------------------------------------------------------------


def test_ground_truth_as_results_scores_one_on_coco_mini():
    from pycocotools.coco import COCO

    ann = shared_data(*COCO_MINI)
    coco = COCO(str(ann))
    gts = [a for a in coco.dataset["annotations"] if a["num_keypoints"] > 0 and not a["iscrowd"]]
    results = [{"image_id": a["image_id"], "category_id": 1, "keypoints": a["keypoints"],
                "score": 1.0} for a in gts]  # fmt: skip
    stats = coco_keypoint_eval(ann, results)
    assert set(stats) == set(COCO_STAT_NAMES)
    assert stats["AP"] == pytest.approx(1.0) and stats["AR"] == pytest.approx(1.0)
    # The results are not modified (loadRes writes into what it gets; we pass copies).
    assert set(results[0]) == {"image_id", "category_id", "keypoints", "score"}


def test_perturbed_result_gives_the_expected_ap(tmp_path):
    """One labelled joint, moved so that OKS = 0.72: matched at thresholds 0.50..0.70 only."""
    kp = np.zeros((NUM_JOINTS, 3))
    j = JOINT_INDEX["left_hip"]
    kp[j] = [200.0, 150.0, 2]
    area = 5000.0
    path = _coco_file(tmp_path, [(kp, [150, 100, 100, 100], area)])
    oks = 0.72
    d = math.sqrt(-math.log(oks) * 2.0 * area * (2.0 * OKS_SIGMAS[j]) ** 2)
    moved = kp.copy()
    moved[j, 0] += d
    stats = coco_keypoint_eval(path, [_result(moved)])
    assert stats["AP"] == pytest.approx(0.5)  # 5 of the 10 thresholds
    assert stats["AP50"] == pytest.approx(1.0)
    assert stats["AP75"] == pytest.approx(0.0)
    assert stats["AR"] == pytest.approx(0.5)
    # Our per-sample OKS is COCOeval's formula.
    ours = object_keypoint_similarity(moved[None, :, :2], kp[None, :, :2], kp[None, :, 2] > 0,
                                      np.array([area]))  # fmt: skip
    assert ours[0] == pytest.approx(oks, abs=1e-9)


def test_missing_person_halves_recall(tmp_path):
    rng = np.random.default_rng(1)
    a, b = _random_person(rng), _random_person(rng, x0=200)
    path = _coco_file(tmp_path, [a, b])
    stats = coco_keypoint_eval(path, [_result(a[0])])
    assert stats["AR"] == pytest.approx(0.5)
    assert stats["AP"] == pytest.approx(51 / 101)  # precision 1 up to recall 0.5 (101 points)
    assert coco_keypoint_eval(path, [])["AP"] == 0.0
    with pytest.raises(PkmodelError, match="image id"):
        coco_keypoint_eval(path, [{**_result(a[0]), "image_id": 7}])


def test_oks_matches_cocoeval_on_random_people(tmp_path):
    from pycocotools.cocoeval import COCOeval

    from pkmodel.engine.metrics import load_coco

    rng = np.random.default_rng(2)
    gt, bbox, area = _random_person(rng)
    gt[rng.random(NUM_JOINTS) < 0.3, 2] = 0
    path = _coco_file(tmp_path, [(gt, bbox, area)])
    preds = gt[None, :, :2] + rng.normal(0, 8, (5, NUM_JOINTS, 2))
    coco = load_coco(path)
    dets = coco.loadRes([_result(p, score=1.0 - i / 10) for i, p in enumerate(preds)])
    ev = COCOeval(coco, dets, iouType="keypoints")
    ev._prepare()
    reference = ev.computeOks(1, 1)[:, 0]  # detections sorted by score = our order
    ours = object_keypoint_similarity(preds, np.repeat(gt[None, :, :2], 5, 0),
                                      np.repeat(gt[None, :, 2] > 0, 5, 0), np.full(5, area))  # fmt: skip
    np.testing.assert_allclose(ours, reference, rtol=1e-12)


def test_annotation_file_without_keypoints_is_a_clear_error(tmp_path):
    path = tmp_path / "instances.json"
    path.write_text(json.dumps({"images": [{"id": 1, "file_name": "a.jpg", "width": 9,
                    "height": 9}], "annotations": [{"id": 1, "image_id": 1, "category_id": 1,
                    "bbox": [0, 0, 4, 4], "area": 16, "iscrowd": 0}], "categories": []}))  # fmt: skip
    with pytest.raises(PkmodelError, match="no keypoint annotations"):
        coco_keypoint_eval(path, [])
    with pytest.raises(PkmodelError, match="does not exist"):
        coco_keypoint_eval(tmp_path / "nope.json", [])


# --- PCK -------------------------------------------------------------------------------------


def test_pck_torso_and_bbox_on_constructed_people():
    ls, rs, lh, rh = (JOINT_INDEX[n] for n in ("left_shoulder", "right_shoulder", "left_hip",
                                                "right_hip"))  # fmt: skip
    gt = np.zeros((3, NUM_JOINTS, 2))
    visible = np.ones((3, NUM_JOINTS), bool)
    # Person 0: both torso diagonals 100 px. Person 1: only one diagonal (50 px) labelled.
    gt[0, ls], gt[0, rh], gt[0, rs], gt[0, lh] = [0, 0], [60, 80], [60, 0], [0, 80]
    gt[1, ls], gt[1, rh] = [0, 0], [30, 40]
    visible[1, [rs, lh]] = False
    # Person 2: no torso at all -> left out of torso PCK.
    visible[2, [ls, rs, lh, rh]] = False
    bboxes = np.array([[0, 0, 80, 200], [0, 0, 30, 10], [0, 0, 10, 10]], float)
    norm = pck_normaliser(gt, visible, bboxes, "torso")
    np.testing.assert_allclose(norm[:2], [100.0, 50.0])
    assert np.isnan(norm[2])
    np.testing.assert_allclose(pck_normaliser(gt, visible, bboxes, "bbox"), [200.0, 30.0, 10.0])

    pred = gt.copy()
    pred[0, :, 0] += 19.0  # within 0.2 x 100 = 20 px
    pred[0, 0, 0] += 2.0  # the nose at 21 px: a miss
    pred[1, :, 1] += 11.0  # beyond 0.2 x 50 = 10 px: every joint misses
    res = pck(pred, gt, visible, norm, 0.2)
    assert res["pck_samples"] == 2
    assert res["pck_joints"] == NUM_JOINTS + (NUM_JOINTS - 2)
    assert res["PCK"] == pytest.approx((NUM_JOINTS - 1) / (2 * NUM_JOINTS - 2))
    assert res["PCK_per_joint"][0] == 0.0  # nose missed by both
    assert res["PCK_per_joint"][ls] == 0.5
    assert res["PCK_per_joint"][rs] == 1.0  # labelled (and right) on person 0 only
    errors = np.concatenate([[21.0], np.full(NUM_JOINTS - 1, 19.0), np.full(NUM_JOINTS - 2, 11.0),
                             np.zeros(NUM_JOINTS - 4)])  # fmt: skip
    assert res["mean_error_px"] == pytest.approx(errors.mean())
    with pytest.raises(PkmodelError, match="pck_norm"):
        pck_normaliser(gt, visible, bboxes, "head")


# --- flip test -------------------------------------------------------------------------------


def _targets(kp, center, others, size=64):
    from pkmodel.data.targets import encode_targets

    cfg = _cfg()
    okp = np.asarray([o[0] for o in others]).reshape(-1, NUM_JOINTS, 3)
    oc = np.asarray([o[1] for o in others]).reshape(-1, 2)
    t = encode_targets(kp, center, okp, oc, size, cfg.targets)
    return tuple(torch.from_numpy(t[n])[None] for n in ("heatmaps", "centers", "regs", "offsets"))


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
    cfg = _cfg(**{"model.input_size": size})
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


def _prepare(tmp_path, name, annotations, images, cfg, all_people=True):
    from pkmodel.data.prepare import prepare_split

    if all_people:
        return prepare_for_evaluation(annotations, images, tmp_path / name, cfg).labels
    params = dataclasses.replace(cfg.prepare, workers=1)
    return prepare_split("val", images, annotations, tmp_path / name, params, False).labels


def test_oracle_on_coco_mini_with_the_training_filters(tmp_path):
    ann, images = shared_data(*COCO_MINI), shared_data("coco_mini", "train2017")
    cfg = _cfg(**{"train.workers": 0})
    labels = _prepare(tmp_path, "default", ann, images, cfg, all_people=False)
    m = evaluate_split(labels, cfg).metrics
    assert m["oracle"] and m["samples"] == 25 and m["gt_people_without_prediction"] == 0
    assert m["AP"] >= 0.99
    assert m["mean_oks"] > 0.999 and m["mean_error_px"] < 0.01


def test_oracle_on_coco_mini_every_person(tmp_path):
    """Every counted person (86 on 28 images): nothing between labels and metric loses accuracy.

    COCO boxes cut some limbs off: 9 labelled joints of 6 people lie outside a 1.25 x box crop.
    prepare.cover_keypoints grows the box about its center to hold them, so every joint is in
    the input and AP is 1; without it those 6 people are the only loss."""
    ann, images = shared_data(*COCO_MINI), shared_data("coco_mini", "train2017")
    cfg = _cfg(**{"train.workers": 0})
    ev = evaluate_split(_prepare(tmp_path, "all", ann, images, cfg), cfg)
    m = ev.metrics
    assert m["samples"] == 86 and m["images"] == 28 and m["gt_people"] == 86
    assert m["AP"] >= 0.99 and m["AR"] >= 0.99
    assert (ev.oks > 0.9999).all()

    cut = _cfg(**{"train.workers": 0, "prepare.cover_keypoints": "false"})
    ev = evaluate_split(_prepare(tmp_path, "cut", ann, images, cut), cut)
    assert 0.93 < ev.metrics["AP"] < 0.95
    boxes = np.array([s["crop_box"] for s in ev.samples], float)
    rel = (ev.gt[..., :2] - boxes[:, None, :2]) / boxes[:, None, 2:]
    outside = ((rel < 0) | (rel >= 1)).any(-1) & (ev.gt[..., 2] > 0)
    assert outside.any(1).sum() == 6 and outside.sum() == 9
    assert (ev.oks[~outside.any(1)] > 0.9999).all()


def test_oracle_on_mmpose_coco(tmp_path):
    ann = shared_data("mmpose_coco", "test_coco.json")
    cfg = _cfg(**{"train.workers": 0})
    m = evaluate_split(_prepare(tmp_path, "mm", ann, ann.parent, cfg), cfg).metrics
    assert m["samples"] == 12 and m["AP"] >= 0.99 and m["PCK"] == pytest.approx(1.0)


def test_error_budget_takes_each_kind_of_error_away(tmp_path):
    """Predictions built from the ground truth with known errors, on coco_mini's 86 people."""
    from pkmodel.data.dataset import PoseDataset

    ann, images = shared_data(*COCO_MINI), shared_data("coco_mini", "train2017")
    cfg = _cfg(**{"train.workers": 0})
    ds = PoseDataset(_prepare(tmp_path, "all", ann, images, cfg), cfg, train=False)
    gt = input_ground_truth(ds)
    n = len(ds)
    ones = np.ones((n, NUM_JOINTS))

    def preds(kp):
        return Predictions(kp, ones, ones.astype(bool), np.ones(n))

    # Every joint one cell (4 input pixels) to the right: never in its cell, always within one.
    shifted = error_budget(ds, preds(gt[..., :2] + [4.0, 0.0]), cfg)
    rows = shifted["rows"]
    assert len(rows) == 8 and shifted["stride"] == 4
    assert shifted["share_right_cell"] == 0.0 and shifted["share_within_one_cell"] == 1.0
    assert shifted["median_error_px"] == pytest.approx(4.0)
    ceiling = rows["every labelled joint exact"]["AP"]
    assert ceiling >= 0.99 and rows["every labelled joint exact"]["mean_oks"] == pytest.approx(1.0)
    assert rows["exact when within one cell"]["AP"] == pytest.approx(ceiling)
    assert rows["exact when in the right cell"] == rows["as predicted"]
    ap = [rows[k]["AP"] for k in ("as predicted", "errors halved", "errors x 0.3")]
    assert ap[0] < ap[1] < ap[2] <= ceiling and ap[0] < 0.9 * ceiling, ap
    # The whole error is the shift: each joint's error is halved exactly.
    oks = [rows[k]["mean_oks"] for k in ("as predicted", "errors halved")]
    assert oks[0] < oks[1] < 1.0
    # Left and right swapped: swapping back gives every person exactly.
    mirrored = error_budget(ds, preds(gt[:, FLIP_INDEX, :2]), cfg)
    assert mirrored["rows"]["as predicted"]["AP"] < 0.5 * ceiling
    assert mirrored["rows"]["left/right swapped where nearer"]["AP"] == pytest.approx(ceiling)
    assert mirrored["share_people_nearer_swapped"] > 0.9


# --- a network, the loss, the CLI -----------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    from pkmodel.model.checkpoint import save_checkpoint
    from pkmodel.model.network import build_model

    cfg = _cfg(**{"model.input_size": 64, "model.width_mult": 0.35, "model.neck_channels": 16,
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
    labels = _prepare(tmp_path, "mm", ann, ann.parent, cfg)
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


def test_annotations_without_optional_fields_still_evaluate(tmp_path):
    """num_keypoints, iscrowd and area are filled in the COCO way when a file omits them."""
    rng = np.random.default_rng(4)
    kp, bbox, _ = _random_person(rng)
    path = _coco_file(tmp_path, [(kp, bbox, bbox[2] * bbox[3])])
    data = json.loads(path.read_text())
    for key in ("num_keypoints", "iscrowd", "area"):
        del data["annotations"][0][key]
    path.write_text(json.dumps(data))
    assert coco_keypoint_eval(path, [_result(kp)])["AP"] == pytest.approx(1.0)


def test_a_batch_size_below_one_is_one_sentence():
    from pkmodel.config import Config
    from pkmodel.engine.evaluate import evaluate_split

    cfg = Config()
    cfg.set("eval.batch_size", 0, "test")
    with pytest.raises(PkmodelError, match=r"^eval.batch_size = 0 must be at least 1$"):
        evaluate_split("no-labels.json", cfg)  # refused before the labels are read
