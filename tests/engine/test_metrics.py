"""COCO OKS AP through pycocotools, OKS and PCK on constructed and real people."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from pkmodel.common.errors import PkmodelError
from pkmodel.common.skeleton import JOINT_INDEX, NUM_JOINTS, OKS_SIGMAS
from pkmodel.engine.metrics import (
    COCO_STAT_NAMES,
    coco_keypoint_eval,
    coco_results,
    object_keypoint_similarity,
    pck,
    pck_normaliser,
)
from tests.conftest import shared_data
from tests.engine.coco_files import (
    COCO_MINI,
    coco_file,
    coco_result,
    random_person,
)


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
    path = coco_file(tmp_path, [(kp, [150, 100, 100, 100], area)])
    oks = 0.72
    d = math.sqrt(-math.log(oks) * 2.0 * area * (2.0 * OKS_SIGMAS[j]) ** 2)
    moved = kp.copy()
    moved[j, 0] += d
    stats = coco_keypoint_eval(path, [coco_result(moved)])
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
    a, b = random_person(rng), random_person(rng, x0=200)
    path = coco_file(tmp_path, [a, b])
    stats = coco_keypoint_eval(path, [coco_result(a[0])])
    assert stats["AR"] == pytest.approx(0.5)
    assert stats["AP"] == pytest.approx(51 / 101)  # precision 1 up to recall 0.5 (101 points)
    assert coco_keypoint_eval(path, [])["AP"] == 0.0
    with pytest.raises(PkmodelError, match="image id"):
        coco_keypoint_eval(path, [{**coco_result(a[0]), "image_id": 7}])


def test_oks_matches_cocoeval_on_random_people(tmp_path):
    from pycocotools.cocoeval import COCOeval

    from pkmodel.engine.metrics import load_coco

    rng = np.random.default_rng(2)
    gt, bbox, area = random_person(rng)
    gt[rng.random(NUM_JOINTS) < 0.3, 2] = 0
    path = coco_file(tmp_path, [(gt, bbox, area)])
    preds = gt[None, :, :2] + rng.normal(0, 8, (5, NUM_JOINTS, 2))
    coco = load_coco(path)
    dets = coco.loadRes([coco_result(p, score=1.0 - i / 10) for i, p in enumerate(preds)])
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


def test_a_torso_diagonal_counts_only_with_both_ends_labelled():
    """Left shoulder - right hip labelled (50 px); the right shoulder labelled but the left hip
    not (its stored (0, 80) would make a 100 px diagonal): the normaliser is 50."""
    ls, rs, lh, rh = (JOINT_INDEX[n] for n in ("left_shoulder", "right_shoulder", "left_hip",
                                                "right_hip"))  # fmt: skip
    gt = np.zeros((1, NUM_JOINTS, 2))
    gt[0, ls], gt[0, rh], gt[0, rs], gt[0, lh] = [0, 0], [30, 40], [60, 0], [0, 80]
    visible = np.ones((1, NUM_JOINTS), bool)
    visible[0, lh] = False
    assert pck_normaliser(gt, visible, np.zeros((1, 4)), "torso").tolist() == [50.0]


def test_an_error_of_exactly_the_threshold_is_correct():
    """PCK counts a joint at most threshold x normaliser away: 0.25 x 80 = 20 px, and an
    error of (12, 16) is exactly 20 px (both exact in binary)."""
    gt = np.zeros((1, NUM_JOINTS, 2))
    pred = gt + np.array([12.0, 16.0])
    pred[0, 0] = [12.0, 16.5]  # the nose a little further: a miss
    res = pck(pred, gt, np.ones((1, NUM_JOINTS), bool), np.array([80.0]), 0.25)
    assert res["PCK"] == pytest.approx((NUM_JOINTS - 1) / NUM_JOINTS)


def test_results_keep_three_decimals():
    kp = np.full((1, NUM_JOINTS, 2), 12.3456)
    (result,) = coco_results(
        np.array([7]), kp, np.full((1, NUM_JOINTS), 0.87654), np.array([0.123456])
    )
    assert result["keypoints"][:3] == [12.346, 12.346, 0.877]
    assert result["score"] == 0.12346 and result["image_id"] == 7 and result["category_id"] == 1
