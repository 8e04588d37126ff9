"""Scoring the predictions of a prepared split: map them to original pixels, then COCO AP/AR,
PCK and OKS per sample against the original annotations."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pkmodel.common.errors import PkmodelError
from pkmodel.common.skeleton import JOINT_NAMES, NUM_JOINTS
from pkmodel.engine.metrics import (
    PERSON_CATEGORY,
    coco_keypoint_eval,
    coco_results,
    instance_scores,
    load_coco,
    object_keypoint_similarity,
    pck,
    pck_normaliser,
)


@dataclass
class Predictions:
    """Decoded poses of a split, in the order of its samples (network-input pixels)."""

    keypoints: np.ndarray  # (N, K, 2) input pixels
    scores: np.ndarray  # (N, K)
    found: np.ndarray  # (N, K) bool
    center_scores: np.ndarray  # (N,) center map value at the decoded center cell
    loss: dict[str, float] = field(default_factory=dict)  # mean loss terms (with a loss_fn)


@dataclass
class Evaluation:
    """Everything `pkmodel evaluate` writes: metrics, COCO results and per-sample data."""

    metrics: dict[str, Any]
    results: list[dict[str, Any]]  # COCO keypoint results, one per sample
    keypoints: np.ndarray  # (N, K, 2) predictions, original pixels
    scores: np.ndarray  # (N, K)
    found: np.ndarray  # (N, K)
    gt: np.ndarray  # (N, K, 3) ground truth from the original annotations
    oks: np.ndarray  # (N,) OKS of each prediction with its own ground truth
    samples: list[dict[str, Any]]  # the prepared samples (image_id, ann_id, crop_box, ...)
    labels: dict[str, Any]  # the prepared labels header (annotations, images, crop_size)


def _gt_people(coco: Any, image_ids: Sequence[int], category_ids: Sequence[int]) -> set[int]:
    """The annotation ids of the ground-truth people COCOeval counts on these images: the
    people's categories, not crowd, labelled keypoints."""
    ids = coco.getAnnIds(imgIds=list(image_ids), catIds=sorted(set(category_ids)), iscrowd=False)
    anns = coco.loadAnns(ids)
    return {a["id"] for a in anns if a.get("num_keypoints", 0) > 0 and not a.get("iscrowd", 0)}


def annotation_file(labels_path: str | Path, header: dict[str, Any], annotations: Any) -> Any:
    """``annotations`` when given, else the original COCO file the prepared labels name."""
    if annotations is not None:
        return annotations
    source = header.get("annotations")
    if not isinstance(source, str) or not source or not Path(source).is_file():
        raise PkmodelError(
            f"prepared labels {labels_path} name the annotation file {source!r}, which does "
            "not exist; pass the original annotations with --annotations"
        )
    return source


def sample_ids(
    samples: Sequence[dict[str, Any]], labels_path: str | Path
) -> tuple[np.ndarray, list[int]]:
    """The samples' COCO image ids (int64) and annotation ids; a sample whose ``image_id`` or
    ``ann_id`` is not a whole number is one PkmodelError naming it."""
    for i, sample in enumerate(samples):
        for key in ("image_id", "ann_id"):
            value = sample.get(key)
            if not isinstance(value, int) or isinstance(value, bool):
                raise PkmodelError(
                    f"prepared labels {labels_path}: samples[{i}].{key} is {value!r}, not a "
                    "whole number (the COCO id evaluation scores against)"
                )
    return np.array([s["image_id"] for s in samples], np.int64), [s["ann_id"] for s in samples]


def score_predictions(
    dataset: Any, preds: Predictions, cfg: Any, annotations: Any = None
) -> Evaluation:
    """Map predictions to original pixels and compute COCO AP/AR, PCK, OKS per sample.

    ``annotations``: the original COCO file (path or COCO); default: the one named in the
    prepared labels.
    """
    samples = dataset.samples
    labels_path = dataset.labels_path
    header = dataset.header
    annotations = annotation_file(labels_path, header, annotations)
    coco = load_coco(annotations)

    keypoints = dataset.to_image(np.arange(len(samples)), preds.keypoints)
    image_ids, ann_ids = sample_ids(samples, labels_path)
    missing = [a for a in ann_ids if a not in coco.anns]
    if missing:
        raise PkmodelError(
            f"annotation ids {missing[:5]} of {labels_path} are not in {annotations} (the "
            "labels were prepared from another file)"
        )
    anns = coco.loadAnns(ann_ids)
    gt = np.array([a["keypoints"] for a in anns], np.float64).reshape(-1, NUM_JOINTS, 3)
    areas = np.array([a.get("area", a["bbox"][2] * a["bbox"][3]) for a in anns], np.float64)
    bboxes = np.array([a["bbox"] for a in anns], np.float64)
    visible = gt[..., 2] > 0

    inst = instance_scores(preds.scores, preds.found, preds.center_scores)
    # the category of each person's own annotation: a file whose person category is not
    # COCO's 1 scored AP 0 against results of category 1
    categories = [int(a.get("category_id", PERSON_CATEGORY)) for a in anns]
    results = coco_results(image_ids, keypoints, preds.scores, inst, categories)
    evaluated = sorted(set(image_ids.tolist()))
    coco_stats = coco_keypoint_eval(coco, results, evaluated)
    oks = object_keypoint_similarity(keypoints, gt[..., :2], visible, areas)
    norm = pck_normaliser(gt[..., :2], visible, bboxes, cfg.eval.pck_norm)
    p = pck(keypoints, gt[..., :2], visible, norm, cfg.eval.pck_threshold)
    gt_people = _gt_people(coco, evaluated, categories)

    metrics: dict[str, Any] = {
        **coco_stats,
        "PCK": p["PCK"],
        "PCK_per_joint": {
            n: (None if math.isnan(v) else float(v))
            for n, v in zip(JOINT_NAMES, p["PCK_per_joint"], strict=True)
        },
        "mean_error_px": p["mean_error_px"],
        "mean_oks": float(np.nanmean(oks)) if np.isfinite(oks).any() else float("nan"),
        "joint_found_rate": float(preds.found[visible].mean()) if visible.any() else float("nan"),
        "pck_norm": cfg.eval.pck_norm,
        "pck_threshold": float(cfg.eval.pck_threshold),
        "pck_samples": p["pck_samples"],
        "samples": len(samples),
        "images": len(evaluated),
        "gt_people": len(gt_people),
        # counted people no sample predicts (a sample of a person COCOeval does not count,
        # one without labelled keypoints, predicts none of them)
        "gt_people_without_prediction": len(gt_people - set(ann_ids)),
        **{k: float(v) for k, v in preds.loss.items()},
    }
    return Evaluation(
        metrics=metrics,
        results=results,
        keypoints=keypoints,
        scores=preds.scores,
        found=preds.found,
        gt=gt,
        oks=oks,
        samples=samples,
        labels=header,
    )
