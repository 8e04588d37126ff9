"""Evaluation: COCO OKS AP with pycocotools on the original annotations, PCK, the oracle, pictures.

The flow for a prepared split (``DATASET_DIR/NAME.json``): every sample is one ground-truth
person cropped from its original image. The network (or, for the oracle, the ground-truth
targets) goes through the decoder; keypoints are mapped input pixels -> crop pixels -> original
pixels and written as COCO keypoint results (one per sample). pycocotools' COCOeval scores them
against the ORIGINAL annotation file, restricted to the image ids of the evaluated samples.

So AP counts every ground-truth person with labelled keypoints on those images, also the ones
prepare-coco dropped (too few joints, too small): they stay as misses, as they would for any
other model scored on the same file. Crowd annotations and people without labelled keypoints
are ignored by COCOeval itself. `pkmodel evaluate --annotations` prepares with filters that keep
every such person, so nothing is missed by construction.

Instance score of a result (COCO ranks results by it): center score x mean score of the found
joints (x mean of all joint scores when none is found). The keypoint "v" slot holds each joint's
score; COCOeval ignores it for OKS.
"""

from __future__ import annotations

import contextlib
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pkmodel.common.errors import PkmodelError, not_there
from pkmodel.common.skeleton import FLIP_INDEX, JOINT_INDEX, JOINT_NAMES, NUM_JOINTS, OKS_SIGMAS
from pkmodel.model.decode import DecodeSettings, decode_poses
from pkmodel.model.outputs import OUTPUT_NAMES

# COCOeval's keypoint summary, in the order of COCOeval.stats (-1 = no ground truth in range).
COCO_STAT_NAMES: tuple[str, ...] = ("AP", "AP50", "AP75", "APm", "APl",
                                    "AR", "AR50", "AR75", "ARm", "ARl")  # fmt: skip
PERSON_CATEGORY = 1
# Torso diagonals for PCK's torso normaliser: left shoulder - right hip, right shoulder - left hip.
TORSO_DIAGONALS: tuple[tuple[int, int], ...] = (
    (JOINT_INDEX["left_shoulder"], JOINT_INDEX["right_hip"]),
    (JOINT_INDEX["right_shoulder"], JOINT_INDEX["left_hip"]),
)


# --------------------------------------------------------------------------------------------
# COCO OKS AP (pycocotools)


def load_coco(annotations: Any):
    """A pycocotools COCO object from a path (or the object itself), without its prints.

    A file that is missing, not JSON, or has no keypoint annotations is a PkmodelError.
    """
    from pycocotools.coco import COCO

    if isinstance(annotations, COCO):
        return annotations
    path = Path(annotations)
    if not path.is_file():
        raise PkmodelError(f"annotation file {path} {not_there(path)}")
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            coco = COCO(str(path))
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
    image_ids: np.ndarray, keypoints: np.ndarray, scores: np.ndarray, instance_scores: np.ndarray
) -> list[dict[str, Any]]:
    """COCO keypoint results: [x, y, score] x K flattened per person, category 1."""
    triples = np.concatenate([keypoints, scores[..., None]], axis=-1).reshape(len(keypoints), -1)
    triples = np.round(triples, 3)
    return [
        {
            "image_id": int(i),
            "category_id": PERSON_CATEGORY,
            "keypoints": row.tolist(),
            "score": round(float(s), 5),
        }
        for i, row, s in zip(image_ids, triples, instance_scores, strict=True)
    ]


def instance_scores(scores: np.ndarray, found: np.ndarray, center_scores: np.ndarray) -> np.ndarray:
    """center score x mean score of the found joints (x mean of all when none is found)."""
    n_found = found.sum(1)
    mean_found = (scores * found).sum(1) / np.maximum(n_found, 1)
    return center_scores * np.where(n_found > 0, mean_found, scores.mean(1))


# --------------------------------------------------------------------------------------------
# PCK


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


# --------------------------------------------------------------------------------------------
# Flip test


# How the x component of a vector channel changes under a mirror (see unflip_outputs), from the
# conventions of pkmodel.data.targets: regs are measured from the center of the center cell
# (p / stride - 0.5 - cell), so mirroring only negates them; offsets are measured from the left
# edge of the joint's cell (p / stride - cell, in [0, 1)), so they become 1 - offset.
FLIP_REG_SHIFT = 0.0
FLIP_OFFSET_SHIFT = 1.0


def unflip_outputs(outputs: Sequence[Any]) -> tuple[Any, ...]:
    """Network outputs of a horizontally flipped input, mapped back to the original frame.

    Works on torch tensors (N x C x h x w). Every map is mirrored along x (grid cell i of a
    w-wide grid becomes cell w - 1 - i, exactly the cell of the mirrored point) and joint
    channels are swapped with FLIP_INDEX. The x channel of regs and offsets becomes
    ``shift - value`` (FLIP_REG_SHIFT, FLIP_OFFSET_SHIFT); y channels are unchanged.
    """
    import torch

    heatmaps, centers, regs, offsets = outputs
    device = heatmaps.device
    idx = torch.tensor(FLIP_INDEX.tolist(), device=device)
    pair_idx = torch.stack([2 * idx, 2 * idx + 1], dim=1).reshape(-1)

    def vectors(t: torch.Tensor, shift: float) -> torch.Tensor:
        n, c, h, w = t.shape
        t = t.flip(3)[:, pair_idx].reshape(n, c // 2, 2, h, w)
        x = shift - t[:, :, 0]
        return torch.stack([x, t[:, :, 1]], dim=2).reshape(n, c, h, w)

    return (
        heatmaps.flip(3)[:, idx],
        centers.flip(3),
        vectors(regs, FLIP_REG_SHIFT),
        vectors(offsets, FLIP_OFFSET_SHIFT),
    )


def average_flip(outputs: Sequence[Any], flipped: Sequence[Any]) -> tuple[Any, ...]:
    """Mean of the outputs and the unflipped outputs of the horizontally flipped input."""
    back = unflip_outputs(flipped)
    return tuple((a + b) / 2.0 for a, b in zip(outputs, back, strict=True))


# --------------------------------------------------------------------------------------------
# Inference over a prepared split


@dataclass
class Predictions:
    """Decoded poses of a split, in the order of its samples (network-input pixels)."""

    keypoints: np.ndarray  # (N, K, 2) input pixels
    scores: np.ndarray  # (N, K)
    found: np.ndarray  # (N, K) bool
    center_scores: np.ndarray  # (N,) center map value at the decoded center cell
    loss: dict[str, float] = field(default_factory=dict)  # mean loss terms (with a loss_fn)


def _collect(parts: list[dict[str, np.ndarray]], loss: dict[str, float]) -> Predictions:
    return Predictions(
        keypoints=np.concatenate([p["keypoints"] for p in parts]),
        scores=np.concatenate([p["scores"] for p in parts]),
        found=np.concatenate([p["found"] for p in parts]),
        center_scores=np.concatenate([p["center_scores"] for p in parts]),
        loss=loss,
    )


def _loader(dataset: Any, batch_size: int, workers: int, device: Any):
    from torch.utils.data import DataLoader

    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=False,
        num_workers=workers,
        pin_memory=getattr(device, "type", str(device)) == "cuda",
    )


def predict_split(
    model: Any,
    dataset: Any,
    cfg: Any,
    device: Any = "cpu",
    batch_size: int | None = None,
    flip_test: bool = False,
    loss_fn: Any = None,
    progress: bool = False,
    workers: int | None = None,
) -> Predictions:
    """Run the network over every sample of a PoseDataset (in order) and decode on the device.

    With ``flip_test`` the outputs are averaged with the unflipped outputs of the mirrored
    input before decoding. With ``loss_fn`` (``loss, terms = loss_fn(outputs, batch)``), the
    mean of each loss term over all samples is returned too (on the plain outputs).
    """
    import torch
    from tqdm import tqdm

    device = torch.device(device)
    batch_size = cfg.eval.batch_size if batch_size is None else batch_size
    workers = cfg.train.workers if workers is None else workers
    was_training = model.training
    model.eval()
    parts: list[dict[str, np.ndarray]] = []
    sums: dict[str, float] = {}
    try:
        with torch.inference_mode():
            loader = _loader(dataset, batch_size, workers, device)
            for batch in tqdm(loader, desc="evaluate", unit="batch", disable=not progress):
                batch = {
                    k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v
                    for k, v in batch.items()
                }
                outputs = tuple(o.float() for o in model(batch["image"]))
                if loss_fn is not None:
                    loss, terms = loss_fn(outputs, batch)
                    n = batch["image"].shape[0]
                    for key, value in {"loss": loss, **terms}.items():
                        sums[key] = sums.get(key, 0.0) + float(value) * n
                if flip_test:
                    flipped = model(batch["image"].flip(3))
                    outputs = average_flip(outputs, tuple(o.float() for o in flipped))
                settings = DecodeSettings.for_grid(
                    cfg.decoder, cfg.model.input_size, outputs[0].shape[-1]
                )
                parts.append(decode_poses(outputs, settings))
    finally:
        model.train(was_training)
    return _collect(parts, {k: v / len(dataset) for k, v in sums.items()})


def oracle_split(
    dataset: Any, cfg: Any, batch_size: int | None = None, progress: bool = False
) -> Predictions:
    """Decode the ground-truth targets of every sample (the dataset's encode_targets output).

    The ceiling of the representation: what a perfect network would score through the same
    targets, decoder and mapping back to original pixels.
    """
    import torch
    from tqdm import tqdm

    parts = []
    loader = _loader(dataset, cfg.eval.batch_size if batch_size is None else batch_size, cfg.train.workers, "cpu")  # fmt: skip
    with torch.inference_mode():
        for batch in tqdm(loader, desc="oracle", unit="batch", disable=not progress):
            targets = tuple(batch[name] for name in OUTPUT_NAMES)
            settings = DecodeSettings.for_grid(
                cfg.decoder, cfg.model.input_size, targets[0].shape[-1]
            )
            parts.append(decode_poses(targets, settings))
    return _collect(parts, {})


# --------------------------------------------------------------------------------------------
# Scoring


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


def _gt_people(coco: Any, image_ids: Sequence[int]) -> int:
    """Ground-truth people COCOeval counts on these images: not crowd, labelled keypoints."""
    anns = coco.loadAnns(coco.getAnnIds(imgIds=list(image_ids), iscrowd=False))
    return sum(1 for a in anns if a.get("num_keypoints", 0) > 0 and not a.get("iscrowd", 0))


def _labels_header(labels_path: str | Path) -> dict[str, Any]:
    """The prepared labels' header (everything but the samples) and their folder."""
    from pkmodel.data.prepare import read_labels

    header = {k: v for k, v in read_labels(labels_path).items() if k != "samples"}
    header["labels_dir"] = str(Path(labels_path).parent)
    return header


def _annotation_file(labels_path: str | Path, header: dict[str, Any], annotations: Any) -> Any:
    """``annotations`` when given, else the original COCO file the prepared labels name."""
    if annotations is not None:
        return annotations
    source = header.get("annotations")
    if not source or not Path(source).is_file():
        raise PkmodelError(
            f"prepared labels {labels_path} name the annotation file {source!r}, which does "
            "not exist; pass the original annotations with --annotations"
        )
    return source


def score_predictions(
    dataset: Any, preds: Predictions, cfg: Any, annotations: Any = None
) -> Evaluation:
    """Map predictions to original pixels and compute COCO AP/AR, PCK, OKS per sample.

    ``annotations``: the original COCO file (path or COCO); default: the one named in the
    prepared labels.
    """
    samples = dataset.samples
    labels_path = dataset.labels_path
    header = _labels_header(labels_path)
    annotations = _annotation_file(labels_path, header, annotations)
    coco = load_coco(annotations)

    keypoints = dataset.to_image(np.arange(len(samples)), preds.keypoints)
    image_ids = np.array([s["image_id"] for s in samples], np.int64)
    ann_ids = [int(s["ann_id"]) for s in samples]
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
    results = coco_results(image_ids, keypoints, preds.scores, inst)
    evaluated = sorted(set(image_ids.tolist()))
    coco_stats = coco_keypoint_eval(coco, results, evaluated)
    oks = object_keypoint_similarity(keypoints, gt[..., :2], visible, areas)
    norm = pck_normaliser(gt[..., :2], visible, bboxes, cfg.eval.pck_norm)
    p = pck(keypoints, gt[..., :2], visible, norm, cfg.eval.pck_threshold)
    gt_people = _gt_people(coco, evaluated)

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
        "gt_people": gt_people,
        "gt_people_without_prediction": max(0, gt_people - len(set(ann_ids))),
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


# --------------------------------------------------------------------------------------------
# Error budget: what limits the AP


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
    from dataclasses import replace

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
    coco = load_coco(_annotation_file(labels, _labels_header(labels), annotations))
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


def prepare_for_evaluation(
    annotations: str | Path,
    images: str | Path,
    out_dir: str | Path,
    cfg: Any,
    progress: bool = False,
    split: str = "eval",
) -> Any:
    """Crop every person COCOeval counts (not crowd, >= 1 labelled joint) with prepare-coco.

    Crop size and expand ratio come from ``cfg.prepare`` (crops must look like the training
    crops); the filters are relaxed so that no counted person is left without a prediction.
    Returns prepare's PrepareSummary (``.labels`` is ``out_dir/<split>.json``; ``.unreadable``
    lists images that could not be read: their people are not evaluated).
    """
    import dataclasses

    from pkmodel.data.prepare import prepare_split

    params = dataclasses.replace(
        cfg.prepare,
        skip_crowd=True,
        min_keypoints=1,
        min_area=0.0,
        max_people=0,
    )
    summary = prepare_split(split, images, annotations, out_dir, params, progress, allow_empty=True)
    if summary.kept == 0:
        raise PkmodelError(
            f"annotation file {annotations} has no person with labelled keypoints whose image "
            f"could be read from {images}"
        )
    return summary


def evaluate_split(
    labels_path: str | Path,
    cfg: Any,
    model: Any = None,
    device: Any = "cpu",
    batch_size: int | None = None,
    flip_test: bool | None = None,
    loss_fn: Any = None,
    progress: bool = False,
    annotations: Any = None,
    budget: bool = False,
) -> Evaluation:
    """Evaluate a network (or, with ``model=None``, the oracle) on a prepared split; with
    ``budget``, metrics["error_budget"] holds ``error_budget`` of the predictions."""
    from pkmodel.data.dataset import PoseDataset

    cfg.check("eval", "decoder")
    dataset = PoseDataset(labels_path, cfg, train=False)
    flip_test = cfg.eval.flip_test if flip_test is None else flip_test
    if model is None:
        preds = oracle_split(dataset, cfg, batch_size, progress)
    else:
        preds = predict_split(model, dataset, cfg, device, batch_size, flip_test, loss_fn, progress)
    evaluation = score_predictions(dataset, preds, cfg, annotations)
    if budget:
        evaluation.metrics["error_budget"] = error_budget(dataset, preds, cfg, annotations)
    evaluation.metrics["flip_test"] = bool(flip_test and model is not None)
    evaluation.metrics["oracle"] = model is None
    return evaluation


def evaluate_model(
    model: Any,
    labels_path: str | Path,
    cfg: Any,
    device: Any = "cpu",
    batch_size: int | None = None,
    flip_test: bool | None = None,
    loss_fn: Any = None,
    progress: bool = False,
) -> dict[str, Any]:
    """The metrics of ``model`` on a prepared split: the one function train and evaluate use.

    Returns AP, AP50, AP75, APm, APl, AR (and the other COCOeval stats), PCK, PCK_per_joint,
    mean_error_px, counts, and the mean loss terms when ``loss_fn`` is given. The model's
    train/eval mode is restored afterwards.
    """
    return evaluate_split(
        labels_path, cfg, model, device, batch_size, flip_test, loss_fn, progress
    ).metrics


# --------------------------------------------------------------------------------------------
# Writing results, the table and the pictures

PICTURE_TILE = 256  # pixels per sample in the best / worst overlays
GT_COLOR = (0, 230, 120)  # green: ground truth; predictions use the left / right colours
LOW_SCORE_COLOR = (150, 150, 150)  # grey: predicted joints the decoder reports as not found


def _json_safe(value: Any) -> Any:
    """NaN / inf -> None, NumPy scalars -> Python, recursively (strict JSON)."""
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, (np.floating, float)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    return value


def write_evaluation(
    evaluation: Evaluation, out_dir: str | Path, pictures: int = 8, extra: dict | None = None
) -> dict[str, Path]:
    """Write results.json, metrics.json and (pictures > 0) best.png, worst.png, pck_joints.png.

    Every file is written atomically. Returns the paths written, by name.
    """
    from pkmodel.common.atomic import atomic_write_json

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"results": out_dir / "results.json", "metrics": out_dir / "metrics.json"}
    atomic_write_json(paths["results"], evaluation.results, indent=None)
    atomic_write_json(paths["metrics"], _json_safe({**evaluation.metrics, **(extra or {})}))
    if pictures > 0:
        order = np.argsort(np.where(np.isfinite(evaluation.oks), evaluation.oks, np.inf))
        n = min(pictures, len(order))
        worst = order[:n]
        best = order[np.isfinite(evaluation.oks[order])][::-1][:n]
        for name, picks in (("best", best), ("worst", worst)):
            paths[name] = out_dir / f"{name}.png"
            save_overlays(evaluation, picks, paths[name])
        paths["pck_joints"] = out_dir / "pck_joints.png"
        plot_pck_per_joint(evaluation.metrics, paths["pck_joints"])
    return paths


def _sample_picture(evaluation: Evaluation, i: int, tile: int) -> np.ndarray:
    """One tile: the sample's crop box cut from the original image (the prepared crop when the
    original cannot be read), ground truth in green, the prediction in left / right colours."""
    from pkmodel.common.draw import draw_skeleton, put_label
    from pkmodel.common.geometry import image_to_crop
    from pkmodel.common.images import crop_square, read_rgb

    s = evaluation.samples[i]
    box = [int(v) for v in s["crop_box"]]
    picture = None
    images = evaluation.labels.get("images")
    if images:
        try:
            picture = crop_square(read_rgb(Path(images) / s["file_name"]), box, tile)
        except (ValueError, OSError):
            picture = None
    if picture is None:  # the prepared crop (same region) next to the labels
        import cv2

        crop = cv2.imread(str(Path(evaluation.labels["labels_dir"]) / s["image"]))
        if crop is None:
            picture = np.zeros((tile, tile, 3), np.uint8)
        else:
            picture = cv2.resize(crop[:, :, ::-1], (tile, tile), interpolation=cv2.INTER_AREA)
    picture = np.ascontiguousarray(picture)
    gt = image_to_crop(evaluation.gt[i], box, tile)
    pred = image_to_crop(evaluation.keypoints[i], box, tile)
    # Ground truth wide underneath, the prediction thin on top: both stay visible where equal.
    draw_skeleton(picture, gt, visible=gt[:, 2] > 0, color=GT_COLOR, thickness=5)
    # AP scores every predicted position: joints below the score threshold are drawn in grey.
    draw_skeleton(picture, pred, visible=np.ones(len(pred), bool), color=LOW_SCORE_COLOR,
                  thickness=1)  # fmt: skip
    draw_skeleton(picture, pred, visible=evaluation.found[i], thickness=2)
    put_label(picture, f"OKS {evaluation.oks[i]:.2f}  img {s['image_id']} ann {s['ann_id']}")
    return picture


def save_overlays(evaluation: Evaluation, indices: Sequence[int], path: str | Path) -> None:
    """A grid of sample tiles (see _sample_picture), written atomically as PNG."""
    from pkmodel.common.draw import image_grid, put_label, save_image

    tiles = [_sample_picture(evaluation, int(i), PICTURE_TILE) for i in indices]
    if not tiles:
        tiles = [np.zeros((PICTURE_TILE, PICTURE_TILE, 3), np.uint8)]
    grid = image_grid(tiles, cols=4)
    legend = np.zeros((26, grid.shape[1], 3), np.uint8)
    put_label(
        legend,
        "wide green: ground truth | thin: prediction (blue left, red right, grey: not found)",
    )
    save_image(path, np.concatenate([legend, grid]))


def plot_pck_per_joint(metrics: dict[str, Any], path: str | Path) -> None:
    """Bar chart of per-joint PCK with the overall PCK as a line (matplotlib, Agg)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from pkmodel.common.atomic import atomic_open

    names = list(metrics["PCK_per_joint"])
    values = [np.nan if v is None else v for v in metrics["PCK_per_joint"].values()]
    fig, ax = plt.subplots(figsize=(10, 4), dpi=100)
    bars = ax.bar(range(len(names)), np.nan_to_num(values), color="#3a7bd5")
    for bar, v in zip(bars, values, strict=True):
        label = "n/a" if np.isnan(v) else f"{v:.2f}"
        ax.text(bar.get_x() + bar.get_width() / 2, bar.get_height() + 0.01, label,
                ha="center", va="bottom", fontsize=7)  # fmt: skip
    overall = metrics.get("PCK", float("nan"))
    if overall is not None and np.isfinite(overall):
        ax.axhline(overall, color="#d53a3a", lw=1, ls="--", label=f"all joints {overall:.3f}")
        ax.legend(loc="lower right", fontsize=8)
    ax.set_xticks(range(len(names)), [n.replace("_", " ") for n in names], rotation=45,
                  ha="right", fontsize=8)  # fmt: skip
    ax.set_ylim(0, 1.1)
    ax.set_ylabel(f"PCK@{metrics.get('pck_threshold', 0.2)} ({metrics.get('pck_norm', '')})")
    title = f"per-joint PCK, {metrics.get('pck_samples', '?')} of {metrics.get('samples')} people"
    ax.set_title(title + (" (oracle)" if metrics.get("oracle") else ""))
    fig.tight_layout()
    with atomic_open(path, "wb") as f:
        fig.savefig(f, format="png")
    plt.close(fig)


def format_metrics(metrics: dict[str, Any]) -> str:
    """The readable table printed by `pkmodel evaluate`."""

    def num(v: Any, width: int = 6) -> str:
        ok = isinstance(v, (int, float)) and v is not None and math.isfinite(v) and v >= 0
        return f"{v:{width}.3f}" if ok else f"{'-':>{width}}"

    what = "oracle (ground-truth targets)" if metrics.get("oracle") else "model"
    if metrics.get("flip_test"):
        what += ", flip test"
    lines = [
        f"COCO keypoint AP (OKS), {what}: {metrics['samples']} people on "
        f"{metrics['images']} images; {metrics['gt_people']} ground-truth people counted"
        + (
            f" ({metrics['gt_people_without_prediction']} without a prediction: dropped by "
            "prepare's filters)"
            if metrics.get("gt_people_without_prediction")
            else ""
        ),
        "  " + " ".join(f"{k:>6}" for k in ("AP", "AP50", "AP75", "APm", "APl", "AR")),
        "  " + " ".join(num(metrics.get(k)) for k in ("AP", "AP50", "AP75", "APm", "APl", "AR")),
        f"PCK@{metrics['pck_threshold']:g} ({metrics['pck_norm']}): {num(metrics['PCK'], 0)} "
        f"over {metrics['pck_samples']} people | mean error "
        f"{metrics['mean_error_px']:.2f} px | mean OKS {num(metrics['mean_oks'], 0)} | "
        f"joints found {100 * metrics['joint_found_rate']:.1f}%",
        "per-joint PCK:",
    ]
    items = list(metrics["PCK_per_joint"].items())
    for start in range(0, len(items), 4):
        row = items[start : start + 4]
        lines.append("  " + "  ".join(f"{n:>14} {num(v, 5)}" for n, v in row))
    if "loss" in metrics:
        lines.append(f"loss {metrics['loss']:.4f}")
    return "\n".join(lines)
