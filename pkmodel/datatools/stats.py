"""`pkmodel data stats`: what a prepared label file holds, as JSON numbers and one PNG.

Counts (samples, source images, per source tag, pseudo-labelled, other people), joints labelled
per type (v = 2 visible, v = 1 occluded), labelled joints per person, person size (longer bbox
side in original pixels, and bbox height as a share of the image height), person position
(bbox center in the original image, as a share of its width and height) and where the joints
fall in the crops. Every histogram is in the JSON with its bin edges.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np

from pkmodel.common.atomic import atomic_write_bytes, atomic_write_json
from pkmodel.common.errors import PkmodelError
from pkmodel.common.skeleton import JOINT_NAMES, NUM_JOINTS
from pkmodel.data.labels import (
    first_bad_sample,
    header_of,
    keypoints_array,
    load_labels,
    source_image_keys,
)

SIZE_BINS_PX = np.array([0, 32, 64, 96, 128, 192, 256, 384, 512, 768, 1024, 1536, 2048, 4096])
SHARE_BINS = np.linspace(0.0, 1.0, 11)
POSITION_BINS = 8  # per axis, over [0, 1] of the image


def _hist(values: np.ndarray, edges: np.ndarray) -> dict[str, list]:
    """Counts over ``edges``; values past the last edge count in the last bin."""
    v = np.clip(values[np.isfinite(values)], edges[0], edges[-1])
    counts, _ = np.histogram(v, bins=edges)
    return {"edges": np.round(edges, 6).tolist(), "counts": counts.tolist()}


def _numbers(samples: list[dict[str, Any]], keys: tuple[str, ...], n: int, path: Path) -> np.ndarray:  # fmt: skip
    """(N, n) float64 of each sample's ``keys`` (one key of n numbers, or n keys of one);
    the first sample without them is one PkmodelError naming it."""
    out = np.zeros((len(samples), n))
    for i, s in enumerate(samples):
        try:
            value = np.asarray(s[keys[0]] if len(keys) == 1 else [s[k] for k in keys], np.float64)
        except (KeyError, TypeError, ValueError):
            value = None
        if value is None or value.shape != (n,):
            name = " / ".join(keys)
            raise PkmodelError(
                f"prepared labels {path}: samples[{i}].{name} is missing or not {n} numbers"
            )
        out[i] = value
    return out


def _arrays(samples: list[dict[str, Any]], path: Path, crop_size: int) -> dict[str, np.ndarray]:
    boxes = _numbers(samples, ("crop_box",), 3, path)
    bbox = _numbers(samples, ("bbox",), 4, path)
    size = _numbers(samples, ("width", "height"), 2, path)
    scale = boxes[:, 2:3] / crop_size  # original pixels per crop pixel
    bbox_orig = bbox * np.concatenate([scale, scale, scale, scale], axis=1)
    bbox_orig[:, :2] += boxes[:, :2]
    return {"crop_boxes": boxes, "bbox": bbox_orig, "image_size": size}


def label_stats(labels: str | Path) -> dict[str, Any]:
    """The statistics of one prepared label file as a JSON-ready dict."""
    labels = Path(labels)
    data = load_labels(labels)
    samples = data["samples"]
    problem = first_bad_sample(samples)  # keypoints, center, crop_box, as training reads them
    if problem is not None:
        raise PkmodelError(f"prepared labels {labels}: {problem}")
    crop_size = int(data["crop_size"])
    n = len(samples)
    kp = keypoints_array(samples, labels)
    a = _arrays(samples, labels, crop_size)
    v = kp[..., 2]
    labelled = v > 0
    sources, per_source = np.unique([str(s.get("source", "")) for s in samples] or [""], return_counts=True)  # fmt: skip
    others = np.array([len(s.get("others") or []) for s in samples], np.int64)

    longer = a["bbox"][:, 2:].max(axis=1)
    height_share = a["bbox"][:, 3] / a["image_size"][:, 1]
    center = a["bbox"][:, :2] + a["bbox"][:, 2:] / 2.0
    position = center / a["image_size"]  # share of width / height
    pos_hist, _, _ = np.histogram2d(
        np.clip(position[:, 0], 0, 1), np.clip(position[:, 1], 0, 1),
        bins=POSITION_BINS, range=[[0, 1], [0, 1]],
    )  # fmt: skip
    joints_in_crop = kp[labelled][:, :2] / crop_size
    crop_hist, _, _ = np.histogram2d(
        np.clip(joints_in_crop[:, 0], 0, 1), np.clip(joints_in_crop[:, 1], 0, 1),
        bins=POSITION_BINS, range=[[0, 1], [0, 1]],
    )  # fmt: skip
    header = header_of(data)
    return {
        "labels": str(labels.resolve()),
        "split": header.get("split"),
        "crop_size": crop_size,
        "counts": {
            "samples": n,
            "source_images": int(len(np.unique(source_image_keys(samples)))),
            "per_source": {str(t): int(c) for t, c in zip(sources, per_source, strict=True)}
            if n
            else {},
            "pseudo": int(sum(bool(s.get("pseudo")) for s in samples)),
            "others": int(others.sum()),
            "samples_with_others": int((others > 0).sum()),
            "labelled_joints": int(labelled.sum()),
        },
        "joints": {
            name: {
                "labelled": int(labelled[:, j].sum()),
                "visible": int((v[:, j] == 2).sum()),
                "occluded": int((v[:, j] == 1).sum()),
                "share": round(float(labelled[:, j].mean()), 4) if n else 0.0,
            }
            for j, name in enumerate(JOINT_NAMES)
        },
        "labelled_per_person": {
            "edges": list(range(NUM_JOINTS + 2)),
            "counts": np.bincount(labelled.sum(1), minlength=NUM_JOINTS + 1).tolist(),
        },
        "person_size_px": _hist(longer, SIZE_BINS_PX.astype(np.float64)),
        "person_height_share": _hist(height_share, SHARE_BINS),
        "person_size_px_median": round(float(np.median(longer)), 2) if n else None,
        "person_position": {
            "bins": POSITION_BINS,
            "counts_xy": pos_hist.astype(int).tolist(),  # [x bin][y bin]
            "mean": np.round(position.mean(0), 4).tolist() if n else None,
        },
        "joints_in_crop": {"bins": POSITION_BINS, "counts_xy": crop_hist.astype(int).tolist()},
    }


def plot_stats(stats: dict[str, Any], path: str | Path) -> None:
    """Six panels of the statistics as one PNG (matplotlib Agg), written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 3, figsize=(15, 8.5))
    joints = stats["joints"]
    names = list(joints)
    y = np.arange(len(names))
    vis = [joints[j]["visible"] for j in names]
    occ = [joints[j]["occluded"] for j in names]
    ax = axes[0, 0]
    ax.barh(y, vis, color="#2a9df4", label="visible (v=2)")
    ax.barh(y, occ, left=vis, color="#f4a02a", label="occluded (v=1)")
    ax.set_yticks(y, names, fontsize=7)
    ax.invert_yaxis()
    ax.set_title("joints labelled per type")
    ax.legend(fontsize=7)

    def bars(ax, hist, title, xlabel, labels=None):
        counts = hist["counts"]
        ax.bar(np.arange(len(counts)), counts, color="#5a5")
        ticks = labels or [f"{e:g}" for e in hist["edges"][:-1]]
        ax.set_xticks(np.arange(len(counts)), ticks, fontsize=7, rotation=45)
        ax.set_title(title)
        ax.set_xlabel(xlabel)

    bars(axes[0, 1], stats["labelled_per_person"], "labelled joints per person", "joints")
    bars(axes[0, 2], stats["person_size_px"], "person size", "longer bbox side >= px")
    bars(axes[1, 0], stats["person_height_share"], "person height / image height", "share >=")
    for ax, key, title in (
        (axes[1, 1], "person_position", "person center in the image"),
        (axes[1, 2], "joints_in_crop", "labelled joints in the crops"),
    ):
        grid = np.array(stats[key]["counts_xy"]).T  # rows = y
        im = ax.imshow(grid, extent=(0, 1, 1, 0), cmap="viridis")
        ax.set_title(title)
        ax.set_xlabel("x / width")
        ax.set_ylabel("y / height")
        fig.colorbar(im, ax=ax, fraction=0.046)
    c = stats["counts"]
    fig.suptitle(
        f"{stats.get('split')}: {c['samples']} samples, {c['source_images']} images, "
        f"{c['pseudo']} pseudo-labelled, sources {c['per_source']}"
    )
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


def write_stats(labels: str | Path, out_png: str | Path, out_json: str | Path) -> dict[str, Any]:
    """label_stats -> JSON and PNG files; returns the statistics."""

    stats = label_stats(labels)
    if stats["counts"]["samples"] == 0:
        raise PkmodelError(f"prepared labels {labels} hold no samples")
    plot_stats(stats, out_png)
    atomic_write_json(out_json, stats)
    return stats


def format_stats(stats: dict[str, Any]) -> str:
    """A few lines for the terminal."""
    c = stats["counts"]
    least = sorted(stats["joints"].items(), key=lambda kv: kv[1]["labelled"])[:3]
    return "\n".join(
        [
            f"{c['samples']} samples from {c['source_images']} source images "
            f"({', '.join(f'{k} {v}' for k, v in c['per_source'].items())}); "
            f"{c['pseudo']} pseudo-labelled; {c['others']} other people in crops",
            f"labelled joints: {c['labelled_joints']} "
            f"({c['labelled_joints'] / max(c['samples'], 1):.1f} per person); least labelled: "
            + ", ".join(f"{k} {v['labelled']}" for k, v in least),
            f"median person size: {stats['person_size_px_median']} px (longer bbox side)",
        ]
    )
