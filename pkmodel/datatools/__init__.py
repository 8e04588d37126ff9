"""`pkmodel data ...`: tools that grow and check datasets beyond prepare-coco.

One module per tool: ``split`` (train/val by source image), ``merge`` (several prepared label
files into one dataset folder), ``stats`` (counts and histograms), ``render`` (labels drawn on
the crops), ``fetch`` (parallel, resumable URL-list downloads), ``frames`` (video frames) and
``pseudo`` (label unlabelled images with a trained model). They read and write the prepared
labels of docs/interfaces.md through pkmodel.data.prepare (``read_labels`` / ``write_labels``).

This module holds what several tools share: the arrays of a label file and the key that says
which samples were cropped from the same source image.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from pkmodel.common.errors import PkmodelError
from pkmodel.common.skeleton import NUM_JOINTS


def load_labels(path: str | Path) -> dict[str, Any]:
    """prepare.read_labels plus a check that every sample has the fields the tools use."""
    from pkmodel.data.prepare import read_labels

    data = read_labels(path)
    if not isinstance(data["samples"], list):
        raise PkmodelError(f"prepared labels {path}: 'samples' is not a list")
    for i, s in enumerate(data["samples"]):
        if not isinstance(s, dict) or not isinstance(s.get("image"), str):
            raise PkmodelError(f"prepared labels {path}: samples[{i}] has no 'image' path")
    return data


def header_of(data: dict[str, Any]) -> dict[str, Any]:
    """A label file's header: everything but the samples."""
    return {k: v for k, v in data.items() if k != "samples"}


def source_image_keys(samples: list[dict[str, Any]]) -> np.ndarray:
    """Per sample, an integer that is equal exactly for crops of the same source image.

    The image is (source tag, image_id), or (source tag, file_name) where a sample has no
    image_id: image ids of different sources (a merged file) may clash, file names of one
    source may not.
    """
    keys = [
        f"{s.get('source', '')}\x00"
        + (f"id:{s['image_id']}" if s.get("image_id") is not None else f"file:{s.get('file_name', s['image'])}")
        for s in samples
    ]  # fmt: skip
    if not keys:
        return np.zeros(0, np.int64)
    return np.unique(np.array(keys), return_inverse=True)[1].astype(np.int64)


def keypoints_array(samples: list[dict[str, Any]], path: str | Path) -> np.ndarray:
    """(N, K, 3) float64 main-person keypoints (crop pixels, COCO v)."""
    try:
        kp = np.array([s["keypoints"] for s in samples], np.float64).reshape(-1, NUM_JOINTS, 3)
    except (KeyError, ValueError, TypeError) as e:
        raise PkmodelError(f"prepared labels {path} have malformed 'keypoints' ({e})") from None
    return kp


def checked_relative(image: str, where: str) -> PurePosixPath:
    """A sample's image path, relative to its label file's folder (may go up with '..', as
    `data split --out` writes them; never absolute)."""
    rel = PurePosixPath(image)
    if rel.is_absolute() or not rel.parts or rel.parts[-1] == "..":
        raise PkmodelError(
            f"{where}: image path {image!r} must be a file path relative to the label file's folder"
        )
    return rel
