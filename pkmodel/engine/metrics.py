"""The metrics: COCO OKS AP/AR with pycocotools on the original annotations (never a
look-alike), OKS itself for one pose, and PCK with a torso or box normaliser."""

from __future__ import annotations

import contextlib
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pkmodel.common.errors import PkmodelError
from pkmodel.common.skeleton import JOINT_INDEX, OKS_SIGMAS

# COCOeval's keypoint summary, in the order of COCOeval.stats (-1 = no ground truth in range).
COCO_STAT_NAMES: tuple[str, ...] = ("AP", "AP50", "AP75", "APm", "APl",
                                    "AR", "AR50", "AR75", "ARm", "ARl")  # fmt: skip


PERSON_CATEGORY = 1


# Torso diagonals for PCK's torso normaliser: left shoulder - right hip, right shoulder - left hip.
TORSO_DIAGONALS: tuple[tuple[int, int], ...] = (
    (JOINT_INDEX["left_shoulder"], JOINT_INDEX["right_hip"]),
    (JOINT_INDEX["right_shoulder"], JOINT_INDEX["left_hip"]),
)


def load_coco(annotations: Any):
    """A pycocotools COCO object from a path (or the object itself), without its prints.

    A file that is missing, not JSON, or has no keypoint annotations is a PkmodelError.
    """
    from pycocotools.coco import COCO

    if isinstance(annotations, COCO):
        return annotations
    from pkmodel.data.prepare import coco_people, read_coco_json

    path = Path(annotations)
    data = read_coco_json(path)  # read once: checked here, then indexed by pycocotools
    coco_people(data, path)  # every field COCOeval reads: one sentence, not a traceback
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            coco = COCO()
            coco.dataset = data
            coco.createIndex()
    except (ValueError, OSError, UnicodeDecodeError, KeyError, TypeError, AssertionError) as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise PkmodelError(f"annotation file {path} is not a COCO file ({first[:160]})") from None
    anns = coco.dataset.get("annotations", [])
    if not any(isinstance(a.get("keypoints"), list) and a.get("keypoints") for a in anns):
        raise PkmodelError(
            f"annotation file {path} has no keypoint annotations (a COCO person_keypoints "
            "file is needed)"
        )
    # COCOeval reads these fields unconditionally; files written by other tools may omit them
    # (COCO's own definitions fill them in).
    for a in anns:
        kp = a.get("keypoints") or []
        a.setdefault("num_keypoints", sum(1 for v in kp[2::3] if v > 0))
        a.setdefault("iscrowd", 0)
        if "area" not in a and len(a.get("bbox", ())) == 4:
            a["area"] = float(a["bbox"][2] * a["bbox"][3])
    return coco


def coco_keypoint_eval(
    annotations: Any, results: Sequence[dict[str, Any]], image_ids: Sequence[int] | None = None
) -> dict[str, float]:
    """COCOeval(iouType="keypoints") of ``results`` against ``annotations`` (path or COCO).

    ``image_ids`` restricts the evaluation (default: every image of the annotation file).
    Returns AP, AP50, AP75, APm, APl, AR, AR50, AR75, ARm, ARl (pycocotools' -1 where an area
    range has no ground truth). No results at all score 0.
    """
    from pycocotools.cocoeval import COCOeval

    coco = load_coco(annotations)
    if not results:
        return dict.fromkeys(COCO_STAT_NAMES, 0.0)
    # loadRes writes into the dicts it gets (area, bbox, id): give it copies.
    copies = [
        {
            "image_id": int(r["image_id"]),
            "category_id": int(r.get("category_id", PERSON_CATEGORY)),
            "keypoints": [float(v) for v in r["keypoints"]],
            "score": float(r["score"]),
        }
        for r in results
    ]
    unknown = {r["image_id"] for r in copies} - set(coco.getImgIds())
    if unknown:
        raise PkmodelError(
            f"results name image id(s) {sorted(unknown)[:5]} that the annotation file does "
            "not have (prepared from another file?)"
        )
    with contextlib.redirect_stdout(io.StringIO()):
        dets = coco.loadRes(copies)
        ev = COCOeval(coco, dets, iouType="keypoints")
        if image_ids is not None:
            ev.params.imgIds = sorted({int(i) for i in image_ids})
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return {name: float(v) for name, v in zip(COCO_STAT_NAMES, ev.stats, strict=True)}


def object_keypoint_similarity(
    pred: np.ndarray, gt: np.ndarray, visible: np.ndarray, area: np.ndarray
) -> np.ndarray:
    """Per-sample OKS of a prediction with its own ground truth (COCOeval's formula).

    pred, gt: (N, K, 2) pixels; visible: (N, K) bool (v > 0); area: (N,) COCO area.
    NaN for a sample without labelled joints.
    """
    var = (2.0 * np.asarray(OKS_SIGMAS)) ** 2
    d2 = ((np.asarray(pred, np.float64) - np.asarray(gt, np.float64)) ** 2).sum(-1)
    e = d2 / var / (np.asarray(area, np.float64)[:, None] + np.spacing(1)) / 2.0
    n = visible.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, (np.exp(-e) * visible).sum(1) / n, np.nan)


def coco_results(
    image_ids: np.ndarray,
    keypoints: np.ndarray,
    scores: np.ndarray,
    instance_scores: np.ndarray,
    category_ids: Sequence[int] | None = None,
) -> list[dict[str, Any]]:
    """COCO keypoint results: [x, y, score] x K flattened per person. ``category_ids``: each
    person's category, that of its ground truth (COCOeval pairs results with ground truth of
    the same category only); default: COCO's person category, 1."""
    triples = np.concatenate([keypoints, scores[..., None]], axis=-1).reshape(len(keypoints), -1)
    triples = np.round(triples, 3)
    if category_ids is None:
        category_ids = [PERSON_CATEGORY] * len(triples)
    return [
        {
            "image_id": int(i),
            "category_id": int(c),
            "keypoints": row.tolist(),
            "score": round(float(s), 5),
        }
        for i, c, row, s in zip(image_ids, category_ids, triples, instance_scores, strict=True)
    ]


def instance_scores(scores: np.ndarray, found: np.ndarray, center_scores: np.ndarray) -> np.ndarray:
    """center score x mean score of the found joints (x mean of all when none is found)."""
    n_found = found.sum(1)
    mean_found = (scores * found).sum(1) / np.maximum(n_found, 1)
    return center_scores * np.where(n_found > 0, mean_found, scores.mean(1))


def pck_normaliser(
    gt: np.ndarray, visible: np.ndarray, bboxes: np.ndarray, mode: str
) -> np.ndarray:
    """Per-sample PCK length in pixels: torso or bbox size; NaN where it cannot be measured.

    torso: mean length of the labelled torso diagonals (left shoulder - right hip, right
    shoulder - left hip); NaN when neither diagonal has both ends labelled.
    bbox: the longer side of the ground-truth box [x, y, w, h].
    """
    if mode == "bbox":
        side = np.maximum(bboxes[:, 2], bboxes[:, 3]).astype(np.float64)
        return np.where(side > 0, side, np.nan)
    if mode != "torso":
        raise PkmodelError(f"eval.pck_norm must be 'torso' or 'bbox', got {mode!r}")
    a, b = np.array(TORSO_DIAGONALS).T
    lengths = np.linalg.norm(gt[:, a] - gt[:, b], axis=-1)  # (N, 2)
    ok = visible[:, a] & visible[:, b] & (lengths > 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(ok.any(1), (lengths * ok).sum(1) / ok.sum(1), np.nan)


def pck(
    pred: np.ndarray,
    gt: np.ndarray,
    visible: np.ndarray,
    normaliser: np.ndarray,
    threshold: float = 0.2,
) -> dict[str, Any]:
    """PCK@threshold, per-joint PCK and mean pixel error over labelled joints.

    A joint counts as correct when its error is at most ``threshold x normaliser`` of its
    sample. Samples with a NaN normaliser are left out of PCK (``pck_samples`` says how many
    count) but not of the pixel error. Per-joint PCK is NaN for a joint never labelled.
    """
    err = np.linalg.norm(np.asarray(pred, np.float64) - np.asarray(gt, np.float64), axis=-1)
    visible = np.asarray(visible, bool)
    usable = np.isfinite(normaliser)
    counted = visible & usable[:, None]
    with np.errstate(invalid="ignore"):
        correct = counted & (err <= threshold * normaliser[:, None])
    per_joint_n = counted.sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        per_joint = np.where(per_joint_n > 0, correct.sum(0) / per_joint_n, np.nan)
    n_vis = int(visible.sum())
    return {
        "PCK": float(correct.sum() / counted.sum()) if counted.any() else float("nan"),
        "PCK_per_joint": per_joint,
        "mean_error_px": float(err[visible].mean()) if n_vis else float("nan"),
        "pck_samples": int(usable.sum()),
        "pck_joints": int(counted.sum()),
    }
