"""Writing an evaluation: metrics.json and results.json, the printed table, the best and worst
pictures and the per-joint PCK plot."""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pkmodel.common.atomic import atomic_open, atomic_write_json
from pkmodel.common.draw import draw_skeleton, image_grid, put_label, save_image
from pkmodel.common.geometry import image_to_crop
from pkmodel.common.images import crop_square, opencv_path, read_rgb
from pkmodel.engine.scoring import Evaluation

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


PICTURES = ("best", "worst", "pck_joints")  # the pictures an evaluation draws


def write_evaluation(
    evaluation: Evaluation, out_dir: str | Path, pictures: int = 8, extra: dict | None = None
) -> dict[str, Path]:
    """Write results.json, metrics.json and (pictures > 0) best.png, worst.png, pck_joints.png.

    The files are made in a temporary folder inside ``out_dir`` and moved into place together
    at the end, metrics.json last, so an evaluation stopped part way leaves the earlier one's
    files as they were; an earlier run's pictures that this one does not draw (pictures = 0)
    are deleted once its metrics are in place. Returns the paths written, by name.
    """
    import tempfile

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".evaluate.", dir=out_dir) as tmp:
        made = {"results": Path(tmp) / "results.json"}
        atomic_write_json(made["results"], evaluation.results, indent=None)
        if pictures > 0:
            order = np.argsort(np.where(np.isfinite(evaluation.oks), evaluation.oks, np.inf))
            n = min(pictures, len(order))
            worst = order[:n]
            best = order[np.isfinite(evaluation.oks[order])][::-1][:n]
            for name, picks in (("best", best), ("worst", worst)):
                made[name] = Path(tmp) / f"{name}.png"
                save_overlays(evaluation, picks, made[name])
            made["pck_joints"] = Path(tmp) / "pck_joints.png"
            plot_pck_per_joint(evaluation.metrics, made["pck_joints"])
        made["metrics"] = Path(tmp) / "metrics.json"
        atomic_write_json(made["metrics"], _json_safe({**evaluation.metrics, **(extra or {})}))
        paths = {name: out_dir / path.name for name, path in made.items()}
        for name, path in made.items():  # metrics last
            os.replace(path, paths[name])
    for name in PICTURES:
        if name not in paths:
            with contextlib.suppress(FileNotFoundError):
                (out_dir / f"{name}.png").unlink()
    return paths


def _sample_picture(evaluation: Evaluation, i: int, tile: int) -> np.ndarray:
    """One tile: the sample's crop box cut from the original image (the prepared crop when the
    original cannot be read), ground truth in green, the prediction in left / right colours."""

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

        crop = cv2.imread(opencv_path(Path(evaluation.labels["labels_dir"]) / s["image"]))
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
