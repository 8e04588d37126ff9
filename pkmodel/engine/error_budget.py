"""The error budget: what limits the AP. The same predictions re-scored with one kind of error
taken away (left/right swaps, offsets, errors within a cell, errors scaled down)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from pkmodel.common.skeleton import FLIP_INDEX
from pkmodel.engine.metrics import load_coco
from pkmodel.engine.scoring import Predictions, annotation_file, score_predictions

BUDGET_METRICS = ("AP", "AP50", "AR", "PCK", "mean_oks")


def input_ground_truth(dataset: Any) -> np.ndarray:
    """(N, K, 3) ground truth of every sample in network-input pixels (no augmentation; joints
    outside the input have v = 0), the frame the predictions are decoded in."""
    return np.stack([dataset.load_sample(i, augment=False).keypoints for i in range(len(dataset))])


def error_budget(
    dataset: Any, preds: Predictions, cfg: Any, annotations: Any = None, stride: int = 4
) -> dict[str, Any]:
    """The AP with one kind of error taken away at a time, each scored like the real predictions.

    Variants of the predicted joints (network-input pixels, visible = labelled in the input):
    left and right swapped for the people that are nearer the truth swapped; each joint at the
    center of its decoded cell (offsets ignored); joints decoded in the right cell, or within
    one cell of it, moved onto the truth (perfect offsets there); every error halved, or cut to
    0.3; every labelled joint exact (the ceiling: people without a prediction, scores). Also the
    median joint error and the shares of joints in the right cell and within one cell.
    """

    gt = input_ground_truth(dataset)
    vis = gt[..., 2] > 0
    truth, kp = gt[..., :2], np.asarray(preds.keypoints, np.float64)
    err = np.linalg.norm(kp - truth, axis=-1)
    swapped = kp[:, FLIP_INDEX]
    swap_err = np.linalg.norm(swapped - truth, axis=-1)
    swap_better = (swap_err * vis).sum(1) < (err * vis).sum(1)
    cell, true_cell = np.floor(kp / stride), np.floor(truth / stride)
    same = (cell == true_cell).all(-1) & vis
    near = (np.abs(cell - true_cell) <= 1).all(-1) & vis

    def shrink(factor: float) -> np.ndarray:
        return np.where(vis[..., None], truth + factor * (kp - truth), kp)

    variants = {
        "as predicted": kp,
        "left/right swapped where nearer": np.where(swap_better[:, None, None], swapped, kp),
        "cell centers (offsets ignored)": (cell + 0.5) * stride,
        "exact when in the right cell": np.where(same[..., None], truth, kp),
        "exact when within one cell": np.where(near[..., None], truth, kp),
        "errors halved": shrink(0.5),
        "errors x 0.3": shrink(0.3),
        "every labelled joint exact": np.where(vis[..., None], truth, kp),
    }
    # One annotation file for every variant: loaded once, not once per scoring.
    labels = dataset.labels_path
    coco = load_coco(annotation_file(labels, dataset.header, annotations))
    rows = {}
    for name, points in variants.items():
        m = score_predictions(dataset, replace(preds, keypoints=points), cfg, coco).metrics
        rows[name] = {k: float(m[k]) for k in BUDGET_METRICS}
    n = max(int(vis.sum()), 1)
    return {
        "stride": stride,
        "median_error_px": float(np.median(err[vis])) if vis.any() else float("nan"),
        "share_right_cell": float(same.sum() / n),
        "share_within_one_cell": float(near.sum() / n),
        "share_people_nearer_swapped": float(swap_better[vis.any(1)].mean()) if vis.any() else 0.0,
        "rows": rows,
    }


def format_error_budget(budget: dict[str, Any]) -> str:
    """The error budget as a table (stdout of `pkmodel evaluate --error-budget`)."""
    lines = [
        "error budget: the AP with one kind of error taken away (network-input pixels, "
        f"{budget['stride']}-pixel cells)",
        f"  median joint error {budget['median_error_px']:.2f} px; decoded in the right cell "
        f"{100 * budget['share_right_cell']:.1f}%, within one cell "
        f"{100 * budget['share_within_one_cell']:.1f}%; people nearer the truth with left and "
        f"right swapped {100 * budget['share_people_nearer_swapped']:.1f}%",
        f"  {'':34}" + " ".join(f"{k:>8}" for k in ("AP", "AP50", "AR", "PCK", "OKS")),
    ]
    for name, row in budget["rows"].items():
        lines.append(f"  {name:34}" + " ".join(f"{row[k]:8.3f}" for k in BUDGET_METRICS))
    return "\n".join(lines)
