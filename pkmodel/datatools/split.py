"""`pkmodel data split`: a prepared label file -> train and val files, grouped by source image.

Every crop of one photo lands on the same side (a person's crop often shows the others of the
photo, and COCO evaluation scores whole images), so the split is drawn over source images, not
samples: the images are shuffled with the seed and taken in that order until the validation
side holds the share of samples closest to the ratio. Images are not copied: the outputs point
at the same crop files (relative paths rewritten when the outputs live in another folder).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pkmodel.common.errors import PkmodelError
from pkmodel.data.labels import (
    checked_relative,
    header_of,
    load_labels,
    refuse_foreign_labels,
    source_image_keys,
    write_labels,
)


@dataclass
class SplitSummary:
    """What `data split` wrote."""

    train: Path
    val: Path
    train_samples: int
    val_samples: int
    train_images: int
    val_images: int

    def format(self) -> str:
        total = self.train_samples + self.val_samples
        share = self.val_samples / max(total, 1)
        return (
            f"train: {self.train_samples} samples from {self.train_images} images -> {self.train}\n"
            f"val:   {self.val_samples} samples from {self.val_images} images -> {self.val} "
            f"({share:.1%} of the samples)"
        )


def choose_val_groups(group_sizes: np.ndarray, val_ratio: float, seed: int) -> np.ndarray:
    """Bool per group: on the validation side.

    Groups are shuffled with ``seed`` and taken in that order; the number taken is the one
    whose sample count is closest to ``val_ratio`` of all samples, at least one group and at
    least one left for training.
    """
    sizes = np.asarray(group_sizes, np.int64)
    n_groups = len(sizes)
    if n_groups < 2:
        raise ValueError("need at least two groups to split")
    order = np.random.default_rng(seed).permutation(n_groups)
    cum = np.cumsum(sizes[order])  # samples in the first 1, 2, ... shuffled groups
    target = val_ratio * cum[-1]
    take = int(np.argmin(np.abs(cum - target))) + 1
    take = min(max(take, 1), n_groups - 1)
    val = np.zeros(n_groups, bool)
    val[order[:take]] = True
    return val


def _rebased(samples: list[dict[str, Any]], labels: Path, out_dir: Path) -> list[dict[str, Any]]:
    """Samples of the label file ``labels`` whose image paths are relative to out_dir instead
    of the label file's folder."""
    src_dir = labels.parent
    if src_dir.resolve() == out_dir.resolve():
        return samples
    out = []
    for i, s in enumerate(samples):
        rel = checked_relative(s["image"], f"{labels} samples[{i}]")
        moved = os.path.relpath(src_dir.resolve() / rel, out_dir.resolve())
        out.append({**s, "image": Path(moved).as_posix()})
    return out


def split_labels(
    labels: str | Path,
    val_ratio: float,
    seed: int,
    train_name: str,
    val_name: str,
    out_dir: str | Path | None = None,
    force: bool = False,
) -> SplitSummary:
    """Write OUT/<train_name>.json and OUT/<val_name>.json (OUT: the labels' folder by default),
    replacing an earlier split of the same labels there, and other files only with ``force``."""

    labels = Path(labels)
    if not 0.0 < val_ratio < 1.0:
        raise PkmodelError(f"--val-ratio must be between 0 and 1 (exclusive), got {val_ratio}")
    for name in (train_name, val_name):
        if not name or "/" in name or name.startswith("."):
            raise PkmodelError(f"split name '{name}' must be a plain file name (e.g. train)")
    if seed < 0:
        raise PkmodelError(f"--seed {seed} must be a whole number >= 0")
    if train_name == val_name:
        raise PkmodelError(f"train and val names are both '{train_name}': give two names")
    data = load_labels(labels)
    out_dir = Path(out_dir) if out_dir is not None else labels.parent
    targets = {out_dir / f"{train_name}.json", out_dir / f"{val_name}.json"}
    if labels.resolve() in {t.resolve() for t in targets}:
        raise PkmodelError(
            f"the split would overwrite its input {labels}: choose other names with "
            "--train-name / --val-name"
        )
    this = str(labels.resolve())
    for target in sorted(targets):
        refuse_foreign_labels(
            target,
            lambda d: isinstance(d.get("split_of"), dict) and d["split_of"].get("labels") == this,
            f"a split of {labels}",
            force,
        )
    samples = data["samples"]
    groups = source_image_keys(samples)
    sizes = np.bincount(groups) if len(groups) else np.zeros(0, np.int64)
    if len(sizes) < 2:
        raise PkmodelError(
            f"prepared labels {labels} hold {len(samples)} samples from {len(sizes)} source "
            "image(s): a split needs crops of at least two images"
        )
    on_val = choose_val_groups(sizes, val_ratio, seed)[groups]
    samples = _rebased(samples, labels, out_dir)
    header = header_of(data)
    header.pop("summary", None)  # prepare's counts describe the whole file, not a side
    split_of = {
        "labels": this,
        "samples": len(samples),
        "val_ratio": val_ratio,
        "seed": seed,
        "group_by": "source image (source tag + image_id, else file_name)",
    }
    sides = ((train_name, ~on_val), (val_name, on_val))
    for name, mask in sides:
        chosen = [s for s, m in zip(samples, mask, strict=True) if m]
        write_labels(
            out_dir / f"{name}.json", {**header, "split": name, "split_of": split_of}, chosen
        )
    return SplitSummary(
        train=out_dir / f"{train_name}.json",
        val=out_dir / f"{val_name}.json",
        train_samples=int((~on_val).sum()),
        val_samples=int(on_val.sum()),
        train_images=len(np.unique(groups[~on_val])),
        val_images=len(np.unique(groups[on_val])),
    )
