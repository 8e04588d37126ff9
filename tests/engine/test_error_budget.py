"""The error budget: the AP with one kind of error taken away."""

from __future__ import annotations

import numpy as np
import pytest

from pkmodel.common.skeleton import FLIP_INDEX, NUM_JOINTS
from pkmodel.engine.error_budget import error_budget, input_ground_truth
from pkmodel.engine.scoring import Predictions
from tests.conftest import shared_data
from tests.engine.coco_files import (
    COCO_MINI,
    eval_config,
    prepare_people,
)


def test_error_budget_takes_each_kind_of_error_away(tmp_path):
    """Predictions built from the ground truth with known errors, on coco_mini's 86 people."""
    from pkmodel.data.dataset import PoseDataset

    ann, images = shared_data(*COCO_MINI), shared_data("coco_mini", "train2017")
    cfg = eval_config(**{"train.workers": 0})
    ds = PoseDataset(prepare_people(tmp_path, "all", ann, images, cfg), cfg, train=False)
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
    # The whole error is the shift: each labelled joint's error is halved (cut to 0.3)
    # exactly, so those rows score as the truth shifted by 2 (1.2) pixels; a joint not
    # labelled in the input keeps its prediction. Each joint at its cell's center: the cell
    # one to the right of the truth's.
    from pkmodel.engine.scoring import score_predictions

    vis = gt[..., 2:3] > 0
    for row, shift in (("errors halved", 2.0), ("errors x 0.3", 1.2)):
        points = np.where(vis, gt[..., :2] + [shift, 0.0], gt[..., :2] + [4.0, 0.0])
        want = score_predictions(ds, preds(points), cfg).metrics
        assert rows[row] == {k: pytest.approx(float(want[k])) for k in rows[row]}, row
    centers = (np.floor((gt[..., :2] + [4.0, 0.0]) / 4) + 0.5) * 4
    want = score_predictions(ds, preds(centers), cfg).metrics
    assert rows["cell centers (offsets ignored)"] == {k: pytest.approx(float(want[k])) for k in want if k in rows["as predicted"]}  # fmt: skip
    oks = [rows[k]["mean_oks"] for k in ("as predicted", "errors halved", "cell centers (offsets ignored)")]  # fmt: skip
    assert oks[0] < oks[1] < 1.0 and oks[2] != oks[0]
    # Left and right swapped: swapping back gives every person exactly.
    mirrored = error_budget(ds, preds(gt[:, FLIP_INDEX, :2]), cfg)
    assert mirrored["rows"]["as predicted"]["AP"] < 0.5 * ceiling
    assert mirrored["rows"]["left/right swapped where nearer"]["AP"] == pytest.approx(ceiling)
    assert mirrored["share_people_nearer_swapped"] > 0.9
