"""`pkmodel data pseudo-label`: label unlabelled images with a trained model, keep confident poses.

The flow: every image of a folder (recursively) is letterboxed whole, run in batches and decoded
(pkmodel.engine.predict.predict_frames, checkpoint or ONNX), giving one pose per image in image pixels;
then, ``refine_passes`` times, the model looks again at a square crop around that pose, cut the
way prepare-coco cuts people for training (pkmodel.engine.predict.predict_frames_refined): in the
whole image the person is smaller than the network was trained to see.
A joint is kept when its score reaches ``joint_threshold`` and it lies on the image (else it
becomes v = 0); a pose is kept when at least ``min_joints`` joints are kept and their mean
score reaches ``person_threshold``. The kept poses become a COCO person-keypoint file (bbox = the kept joints'
box grown by ``box_margin`` of its longer side on every side; area = bbox w x h; the joint scores
in "scores", their mean in "score"), which pkmodel.data.prepare crops exactly as it crops COCO
(square_crop_box, prepare.expand_ratio / crop_size): the result is a prepared label file
``OUT/NAME.json`` whose samples carry ``"pseudo": true`` and the source tag, ready for `data merge`.

Predictions are cached in OUT/pseudo/NAME.predictions.json (per image, with the weights' size
and time), so a rerun, e.g. with other thresholds, only runs the model on new images; crops are
reused by prepare's own resume.

With ``annotations`` (a COCO file with ground truth for these images, matched by file_name
relative to the folder) the run is scored: COCO OKS AP of every prediction (pkmodel.engine.evaluate /
pycocotools), AP of the kept poses only, and the "label OKS" of each kept pose: OKS over the
joints it labels, against the best-matching ground-truth person of its image.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pkmodel.common.atomic import atomic_write_json
from pkmodel.common.errors import PkmodelError, not_there
from pkmodel.common.geometry import joint_boxes, turn_image, unturn_points
from pkmodel.common.images import IMAGE_SUFFIXES, read_rgb_turn
from pkmodel.common.skeleton import NUM_JOINTS, coco_category
from pkmodel.config import PrepareConfig, PseudoLabelConfig
from pkmodel.data.labels import read_labels, write_labels
from pkmodel.data.prepare import prepare_split
from pkmodel.engine.metrics import (
    COCO_STAT_NAMES,
    coco_keypoint_eval,
    coco_results,
    instance_scores,
    load_coco,
    object_keypoint_similarity,
)
from pkmodel.engine.predict import load_runner, predict_frames_refined
from pkmodel.mlprogram.run import is_coreml_path

PREDICTIONS_SCHEMA = "pkmodel.pseudo-predictions"
_SNAPSHOT_S = 60.0  # an interrupted run keeps at most this much inference work unsaved


@dataclass
class ImagePredictions:
    """One pose per image, in image pixels (arrays aligned with ``files``)."""

    files: list[str]  # relative to the image folder, posix
    sizes: np.ndarray  # (N, 2) width, height
    keypoints: np.ndarray  # (N, K, 2)
    scores: np.ndarray  # (N, K)
    center_scores: np.ndarray  # (N,)
    unreadable: dict[str, str] = field(default_factory=dict)
    inferred: int = 0  # images run through the model in this call (the rest came from the cache)


@dataclass
class PseudoSummary:
    """What `data pseudo-label` did."""

    labels: Path
    images: int
    predicted: int
    inferred: int
    unreadable: dict[str, str]
    kept: int
    seconds: float
    scores: dict[str, Any] | None = None
    report: Path | None = None

    def format(self) -> str:
        share = self.kept / max(self.predicted, 1)
        lines = [
            f"{self.images} images: {self.predicted} predicted ({self.inferred} run now, "
            f"{self.predicted - self.inferred} from the cache), {len(self.unreadable)} unreadable; "
            f"{self.kept} confident poses kept ({share:.1%}) in {self.seconds:.1f} s",
            f"labels: {self.labels}",
        ]
        s = self.scores
        if s:
            lines.append(
                f"against {s['annotations']} ({s['images_scored']} images with ground truth): "
                f"OKS AP {s['all']['AP']:.3f} (all predictions), {s['kept']['AP']:.3f} (kept poses)"
            )
            lo = s["label_oks"]
            if lo["count"]:
                lines.append(
                    f"label OKS of the kept poses: mean {lo['mean']:.3f}, median {lo['median']:.3f}, "
                    f">= 0.5: {lo['share_0.5']:.1%}, >= 0.75: {lo['share_0.75']:.1%}"
                )
        if self.report is not None:
            lines.append(f"report: {self.report}")
        return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# Selection (pure)


def select_confident(
    scores: np.ndarray, joint_threshold: float, person_threshold: float, min_joints: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(keep (N,), joint_ok (N, K), person_score (N,)) of poses with joint scores (N, K).

    person_score = mean score of the kept joints (0 where none is kept).
    """
    scores = np.asarray(scores, np.float64)
    joint_ok = scores >= joint_threshold
    n = joint_ok.sum(1)
    person = (scores * joint_ok).sum(1) / np.maximum(n, 1)
    keep = (n >= max(min_joints, 1)) & (person >= person_threshold)
    return keep, joint_ok, person


def inside_image(keypoints: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """(N, K) bool: the joint lies on the image (not in the letterbox padding around it)."""
    wh = np.asarray(sizes, np.float64)[:, None, :]
    return ((keypoints >= 0) & (keypoints < wh)).all(-1)


# --------------------------------------------------------------------------------------------
# Inference with a cache


def list_images(folder: Path, exclude: Path | None = None) -> list[str]:
    """Image files under ``folder`` (recursively; hidden ones and those under ``exclude``, the
    output folder, skipped), as sorted posix paths relative to ``folder``."""

    if not folder.is_dir():
        raise PkmodelError(f"image folder {folder} {not_there(folder, 'folder')}")
    skip = exclude.resolve() if exclude is not None else None
    files = sorted(
        p.relative_to(folder).as_posix()
        for p in folder.rglob("*")
        if p.suffix.lower() in IMAGE_SUFFIXES
        and not any(part.startswith(".") for part in p.relative_to(folder).parts)
        and not (skip is not None and p.resolve().is_relative_to(skip))
        and p.is_file()
    )
    if not files:
        raise PkmodelError(f"image folder {folder} holds no image")
    return files


def _load_cache(path: Path, identity: dict[str, Any]) -> dict[str, Any]:
    try:
        old = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return {"images": {}, "unreadable": {}}
    if not isinstance(old, dict) or old.get("identity") != identity:
        return {"images": {}, "unreadable": {}}  # other weights or settings: predict again
    return {"images": old.get("images", {}), "unreadable": old.get("unreadable", {})}


def _save_cache(path: Path, identity: dict[str, Any], cache: dict[str, Any]) -> None:

    atomic_write_json(
        path, {"schema": PREDICTIONS_SCHEMA, "identity": identity, **cache}, indent=None
    )


def predict_folder(
    predict: Any,
    folder: Path,
    files: list[str],
    cache_path: Path,
    identity: dict[str, Any],
    batch_size: int,
    progress: bool = True,
) -> ImagePredictions:
    """One pose per image (``predict(frames) -> [pkmodel.engine.predict.Pose]``), cached in
    ``cache_path`` under ``identity`` (what makes a cached pose valid)."""
    from tqdm import tqdm

    cache = _load_cache(cache_path, identity)
    done = cache["images"]
    todo = [f for f in files if f not in done and f not in cache["unreadable"]]
    bar = tqdm(total=len(todo), unit="img", desc="pseudo-label", disable=not progress or not todo)
    next_save = time.monotonic() + _SNAPSHOT_S
    inferred = 0
    try:
        for start in range(0, len(todo), batch_size):
            frames, names, turns = [], [], []
            for f in todo[start : start + batch_size]:
                try:
                    frame, turn = read_rgb_turn(folder / f)
                    frames.append(frame)
                    names.append(f)
                    turns.append(turn)
                except ValueError as e:
                    cache["unreadable"][f] = str(e)
            if frames:
                # the network sees a photo as it is shown (a phone's upright photo is stored on
                # its side); the labels stay in the stored pixels, as prepare-coco reads them
                shown = [turn_image(frame, turn) for frame, turn in zip(frames, turns, strict=True)]
                for f, frame, turn, pose in zip(names, frames, turns, predict(shown), strict=True):
                    height, width = frame.shape[:2]
                    done[f] = {
                        "size": [width, height],
                        "keypoints": np.round(
                            unturn_points(pose.keypoints, turn, width, height), 3
                        ).tolist(),
                        "scores": np.round(pose.scores, 5).tolist(),
                        "center_score": round(float(pose.center_score), 5),
                    }
                inferred += len(frames)
            bar.update(len(todo[start : start + batch_size]))
            if time.monotonic() >= next_save:
                _save_cache(cache_path, identity, cache)
                next_save = time.monotonic() + _SNAPSHOT_S
    finally:
        bar.close()
        if inferred:
            _save_cache(cache_path, identity, cache)
    ok = [f for f in files if f in done]
    rows = [done[f] for f in ok]
    n = len(rows)
    return ImagePredictions(
        files=ok,
        sizes=np.array([r["size"] for r in rows], np.int64).reshape(n, 2),
        keypoints=np.array([r["keypoints"] for r in rows], np.float64).reshape(n, NUM_JOINTS, 2),
        scores=np.array([r["scores"] for r in rows], np.float64).reshape(n, NUM_JOINTS),
        center_scores=np.array([r["center_score"] for r in rows], np.float64).reshape(n),
        unreadable={f: cache["unreadable"][f] for f in files if f in cache["unreadable"]},
        inferred=inferred,
    )


# --------------------------------------------------------------------------------------------
# COCO file of the kept poses -> prepared labels


def image_ids_for(files: list[str], annotations: Any = None) -> np.ndarray:
    """COCO image ids: the ground truth's for file names it has, new ids after its largest for
    the others (1, 2, ... in file order without ground truth)."""
    known: dict[str, int] = {}
    if annotations is not None:
        known = {img["file_name"]: int(i) for i, img in annotations.imgs.items()}
    next_id = max(known.values(), default=0) + 1
    ids = np.zeros(len(files), np.int64)
    for i, f in enumerate(files):
        if f in known:
            ids[i] = known[f]
        else:
            ids[i], next_id = next_id, next_id + 1
    return ids


def pseudo_coco(
    preds: ImagePredictions, ids: np.ndarray, keep: np.ndarray, joint_ok: np.ndarray,
    person: np.ndarray, margin: float,
) -> dict[str, Any]:  # fmt: skip
    """A COCO person-keypoint dict of the kept poses (one annotation per image, id = image id)."""

    sel = np.flatnonzero(keep)
    kp = np.concatenate([preds.keypoints, np.full((*joint_ok.shape, 1), 2.0)], axis=-1)
    kp[~joint_ok] = 0.0  # not confident: unlabelled (v = 0), as COCO writes them
    boxes = joint_boxes(preds.keypoints, joint_ok, margin)
    images = [
        {"id": int(ids[i]), "file_name": preds.files[i], "width": int(preds.sizes[i, 0]),
         "height": int(preds.sizes[i, 1])}
        for i in sel
    ]  # fmt: skip
    annotations = [
        {
            "id": int(ids[i]),
            "image_id": int(ids[i]),
            "category_id": 1,
            "iscrowd": 0,
            "keypoints": np.round(kp[i], 3).reshape(-1).tolist(),
            "num_keypoints": int(joint_ok[i].sum()),
            "bbox": np.round(boxes[i], 3).tolist(),
            "area": round(float(boxes[i, 2] * boxes[i, 3]), 3),
            "scores": np.round(preds.scores[i], 4).tolist(),
            "score": round(float(person[i]), 4),
        }
        for i in sel
    ]
    return {
        "info": {"description": "pkmodel pseudo-labels (one confident pose per image)"},
        "images": images,
        "annotations": annotations,
        "categories": [coco_category()],
    }


# --------------------------------------------------------------------------------------------
# Scores against ground truth


def label_oks(
    coco: Any, ids: np.ndarray, keypoints: np.ndarray, joint_ok: np.ndarray
) -> np.ndarray:
    """Per pose: OKS over the joints it labels AND the ground truth labels, against the best
    ground-truth person (not crowd) of its image; NaN where no joint is shared."""

    n = len(ids)
    people = [
        [a for a in coco.imgToAnns.get(int(i), []) if not a.get("iscrowd") and any(a["keypoints"][2::3])]
        for i in ids
    ]  # fmt: skip
    m = max((len(p) for p in people), default=0)
    if n == 0 or m == 0:
        return np.full(n, np.nan)
    gt = np.zeros((n, m, NUM_JOINTS, 3))
    area = np.ones((n, m))
    for i, anns in enumerate(people):  # padding only; the OKS below is one array expression
        for j, a in enumerate(anns):
            gt[i, j] = np.reshape(a["keypoints"], (NUM_JOINTS, 3))
            area[i, j] = a.get("area", a["bbox"][2] * a["bbox"][3])
    visible = (gt[..., 2] > 0) & joint_ok[:, None, :]
    pred = np.broadcast_to(keypoints[:, None], (n, m, NUM_JOINTS, 2))
    oks = object_keypoint_similarity(
        pred.reshape(-1, NUM_JOINTS, 2), gt[..., :2].reshape(-1, NUM_JOINTS, 2),
        visible.reshape(-1, NUM_JOINTS), area.reshape(-1),
    ).reshape(n, m)  # fmt: skip
    with warnings.catch_warnings():  # all-NaN rows: no shared joint
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmax(oks, axis=1)


def score_pseudo_labels(
    annotations: Any, preds: ImagePredictions, ids: np.ndarray, keep: np.ndarray,
    joint_ok: np.ndarray,
) -> dict[str, Any]:  # fmt: skip
    """COCO OKS AP of all predictions and of the kept ones, and the label OKS of the kept ones,
    over the images the annotation file (path or pycocotools COCO) has."""

    coco = load_coco(annotations)
    in_gt = np.isin(ids, np.array(coco.getImgIds(), np.int64))
    inst = instance_scores(preds.scores, joint_ok, preds.center_scores)

    def ap(sel: np.ndarray) -> dict[str, float]:
        if not sel.any():  # nothing to score: no AP, as for a model without results
            return dict.fromkeys(COCO_STAT_NAMES, 0.0)
        results = coco_results(ids[sel], preds.keypoints[sel], preds.scores[sel], inst[sel])
        return coco_keypoint_eval(coco, results, ids[sel].tolist())

    kept = in_gt & keep
    oks = label_oks(coco, ids[kept], preds.keypoints[kept], joint_ok[kept])
    finite = oks[np.isfinite(oks)]
    return {
        "annotations": str(annotations) if isinstance(annotations, (str, Path)) else None,
        "images_scored": int(in_gt.sum()),
        "images_without_ground_truth": int((~in_gt).sum()),
        "kept_scored": int(kept.sum()),
        "all": ap(in_gt),
        "kept": ap(kept),
        "label_oks": {
            "count": int(len(finite)),
            "mean": float(finite.mean()) if len(finite) else None,
            "median": float(np.median(finite)) if len(finite) else None,
            "share_0.5": float((finite >= 0.5).mean()) if len(finite) else None,
            "share_0.75": float((finite >= 0.75).mean()) if len(finite) else None,
        },
    }


# --------------------------------------------------------------------------------------------
# The whole run


def pseudo_label(
    images_dir: str | Path,
    runner: Any,
    out_dir: str | Path,
    name: str,
    params: PseudoLabelConfig,
    prepare: PrepareConfig,
    identity: dict[str, Any],
    annotations: str | Path | None = None,
    batch_size: int = 16,
    progress: bool = True,
) -> PseudoSummary:
    """Predict, select, write OUT/pseudo/NAME.coco.json, crop with prepare into OUT/NAME.json
    (samples marked pseudo with the source tag), and score against ``annotations`` if given.

    ``runner``: anything with ``input_size`` and ``__call__(batch)`` like pkmodel.engine.predict's
    runners; ``identity``: what makes cached predictions valid (weights file, input size).
    A folder none of whose images can be read is a PkmodelError before anything is written (an
    earlier run's labels and crops stay); images predicted with no confident pose give an
    empty label file, as their thresholds choose.
    """

    t0 = time.perf_counter()
    params.check()
    prepare.check()
    if batch_size < 1:
        raise PkmodelError(f"batch size must be at least 1, got {batch_size}")
    if not name or "/" in name or name.startswith("."):
        raise PkmodelError(f"output name '{name}' must be a plain file name (e.g. pseudo)")
    images_dir, out_dir = Path(images_dir), Path(out_dir)
    target = out_dir / f"{name}.json"
    if target.is_file() and "pseudo_label" not in read_labels(target):
        raise PkmodelError(f"{target} exists and is not a pseudo-label file: choose another --name")
    files = list_images(images_dir, exclude=out_dir)
    coco_gt = load_coco(annotations) if annotations is not None else None
    work = out_dir / "pseudo"
    created = [p for p in (out_dir, work) if not p.exists()]
    work.mkdir(parents=True, exist_ok=True)
    identity = {**identity, "input_size": int(runner.input_size), "images": str(images_dir.resolve()),
                "refine_passes": params.refine_passes, "photos_as_shown": True}  # fmt: skip
    if params.refine_passes:
        identity["refine_box"] = {"box_margin": params.box_margin, "expand_ratio": prepare.expand_ratio}  # fmt: skip

    def predict(frames: list[np.ndarray]) -> list[Any]:
        return predict_frames_refined(runner, frames, params.refine_passes, params.box_margin, prepare.expand_ratio)  # fmt: skip

    preds = predict_folder(
        predict,
        images_dir,
        files,
        work / f"{name}.predictions.json",
        identity,
        batch_size,
        progress,
    )
    if not preds.files:  # nothing to label: an earlier run's labels and crops stay as they are
        for folder in reversed(created):
            with contextlib.suppress(OSError):
                folder.rmdir()  # only when empty: a run that wrote nothing leaves no folder
        first, why = next(iter(preds.unreadable.items()))
        raise PkmodelError(
            f"none of the {len(files)} image(s) in {images_dir} could be loaded (e.g. "
            f"{images_dir / first}: {why}); {target} was not written"
        )
    # A joint placed in the letterbox padding is off the image: never a label.
    on_image = np.where(inside_image(preds.keypoints, preds.sizes), preds.scores, 0.0)
    keep, joint_ok, person = select_confident(
        on_image, params.joint_threshold, params.person_threshold, params.min_joints
    )
    ids = image_ids_for(preds.files, coco_gt)
    coco_path = work / f"{name}.coco.json"
    atomic_write_json(coco_path, pseudo_coco(preds, ids, keep, joint_ok, person, params.box_margin), indent=None)  # fmt: skip
    crop_params = dataclasses.replace(prepare, skip_crowd=True, min_keypoints=1, min_area=0.0, max_people=0)  # fmt: skip
    prepared = prepare_split(name, images_dir, coco_path, out_dir, crop_params, progress=progress, allow_empty=True, allow_missing=True)  # fmt: skip
    data = read_labels(prepared.labels)
    samples = [{**s, "source": params.source, "pseudo": True} for s in data.pop("samples")]
    settings = {
        "weights": identity.get("weights"),
        "joint_threshold": params.joint_threshold,
        "person_threshold": params.person_threshold,
        "min_joints": params.min_joints,
        "box_margin": params.box_margin,
        "refine_passes": params.refine_passes,
        "images": len(files),
        "predicted": len(preds.files),
        "kept": int(keep.sum()),
    }
    write_labels(prepared.labels, {**data, "pseudo_label": settings}, samples)
    summary = PseudoSummary(
        labels=prepared.labels,
        images=len(files),
        predicted=len(preds.files),
        inferred=preds.inferred,
        unreadable=preds.unreadable,
        kept=len(samples),
        seconds=0.0,
    )
    if coco_gt is not None:
        summary.scores = score_pseudo_labels(coco_gt, preds, ids, keep, joint_ok)
        summary.scores["annotations"] = str(annotations)
    summary.seconds = time.perf_counter() - t0
    summary.report = work / f"{name}.report.json"
    atomic_write_json(
        summary.report,
        {**settings, "labels": str(summary.labels), "inferred": preds.inferred,
         "unreadable": preds.unreadable,
         "scores": summary.scores, "seconds": round(summary.seconds, 3)},
    )  # fmt: skip
    return summary


def weights_identity(weights: str | Path) -> dict[str, Any]:
    """What ties cached predictions to a weights file or bundle (a Core ML folder): its path,
    size and (newest) modification time."""
    p = Path(weights)
    if p.is_dir() and is_coreml_path(p):
        files = [f.stat() for f in p.rglob("*") if f.is_file()]
        size = sum(st.st_size for st in files)
        mtime = max((st.st_mtime_ns for st in files), default=p.stat().st_mtime_ns)
        return {"weights": str(p.resolve()), "bytes": size, "mtime_ns": mtime}
    if not p.is_file():
        raise PkmodelError(f"weights file {p} {not_there(p)}")
    st = p.stat()
    return {"weights": str(p.resolve()), "bytes": st.st_size, "mtime_ns": st.st_mtime_ns}


def pseudo_label_weights(
    images_dir: str | Path,
    weights: str | Path,
    out_dir: str | Path,
    cfg: Any,
    name: str = "pseudo",
    device: Any = "cpu",
    annotations: str | Path | None = None,
    batch_size: int = 16,
    progress: bool = True,
) -> PseudoSummary:
    """`pkmodel data pseudo-label` with a checkpoint, ONNX file or Core ML model and the
    config's thresholds.

    The demo figure: ``pseudo_label_weights("dataset/synthetic/val", "runs/demo/best.pt",
    "dataset/pseudo_demo", cfg, annotations="dataset/synthetic/annotations/
    person_keypoints_val.json").scores`` (docs/datatools.md).
    """

    identity = weights_identity(weights)
    runner = load_runner(weights, cfg, device)
    return pseudo_label(
        images_dir, runner, out_dir, name,
        cfg.pseudo_label, cfg.prepare,
        identity, annotations, batch_size, progress,
    )  # fmt: skip
