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

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pkmodel.common.errors import PkmodelError
from pkmodel.common.skeleton import FLIP_INDEX
from pkmodel.data.dataset import PoseDataset
from pkmodel.data.loader import PoseDataLoader
from pkmodel.data.prepare import MissingImagesError, people_of, prepare_split
from pkmodel.data.targets import target_maps
from pkmodel.engine.error_budget import error_budget
from pkmodel.engine.scoring import Evaluation, Predictions, sample_ids, score_predictions
from pkmodel.model.decode import DecodeSettings, decode_poses

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


def _collect(parts: list[dict[str, np.ndarray]], loss: dict[str, float]) -> Predictions:
    return Predictions(
        keypoints=np.concatenate([p["keypoints"] for p in parts]),
        scores=np.concatenate([p["scores"] for p in parts]),
        found=np.concatenate([p["found"] for p in parts]),
        center_scores=np.concatenate([p["center_scores"] for p in parts]),
        loss=loss,
    )


def _loader(dataset: Any, batch_size: int, workers: int, device: Any):
    return PoseDataLoader(
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
            targets = target_maps(batch)
            settings = DecodeSettings.for_grid(
                cfg.decoder, cfg.model.input_size, targets[0].shape[-1]
            )
            parts.append(decode_poses(targets, settings))
    return _collect(parts, {})


# --------------------------------------------------------------------------------------------
# Evaluating a split or a model


def prepare_for_evaluation(
    annotations: str | Path,
    images: str | Path,
    out_dir: str | Path,
    cfg: Any,
    progress: bool = False,
    split: str = "eval",
    allow_missing: bool = False,
) -> Any:
    """Crop every person COCOeval counts (not crowd, >= 1 labelled joint) with prepare-coco.

    Crop size and expand ratio come from ``cfg.prepare`` (crops must look like the training
    crops); the filters are relaxed so that no counted person is left without a prediction.
    Returns prepare's PrepareSummary (``.labels`` is ``out_dir/<split>.json``; ``.unreadable``
    lists images that could not be read: their people are not evaluated). More than half of
    the images missing from ``images`` is refused unless ``allow_missing`` (a wrong folder would
    give the AP of a few people).
    """

    params = dataclasses.replace(
        cfg.prepare,
        skip_crowd=True,
        min_keypoints=1,
        min_area=0.0,
        max_people=0,
    )
    try:
        summary = prepare_split(
            split,
            images,
            annotations,
            out_dir,
            params,
            progress,
            allow_empty=True,
            allow_missing=allow_missing,
        )
    except MissingImagesError as e:
        raise PkmodelError(
            f"{e.found}; nothing was evaluated: check --images, or pass "
            f"--allow-missing-images to evaluate {people_of(e.people)} of the images that are there"
        ) from None
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

    cfg.check("eval", "decoder")
    dataset = PoseDataset(labels_path, cfg, train=False)
    sample_ids(dataset.samples, labels_path)  # scoring needs them: refused before inference
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


def evaluate_weights(
    weights: str | Path,
    labels_path: str | Path,
    cfg: Any,
    device: Any = "cpu",
    progress: bool = False,
    annotations: Any = None,
) -> dict[str, Any]:
    """The metrics of any weights (checkpoint, ONNX, Core ML; engine.networks) on a prepared
    split, with ``cfg``'s decoder and flip setting, scored against ``annotations`` (default:
    the split's own source file); ``cfg`` itself is left unchanged."""
    import copy

    from pkmodel.engine.networks import load_network

    cfg = copy.deepcopy(cfg)
    network = load_network(weights, device)
    network.configure(cfg)
    return evaluate_split(
        labels_path, cfg, network.module, network.device, progress=progress,
        annotations=annotations,
    ).metrics  # fmt: skip
