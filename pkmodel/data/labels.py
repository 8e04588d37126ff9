"""Prepared labels (``DATASET_DIR/NAME.json``, schema "pkmodel.prepared"): the one reader and
writer of the file that prepare-coco, the Dataset, evaluation and the data tools share, and
what several of them compute from its samples. The layout is in docs/interfaces.md."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from pkmodel.common.atomic import atomic_write_text
from pkmodel.common.errors import PkmodelError
from pkmodel.common.jsontext import parse_json
from pkmodel.common.skeleton import NUM_JOINTS
from pkmodel.common.versioned import FileKind

SCHEMA = "pkmodel.prepared"
SCHEMA_VERSION = 1
LABELS = FileKind(
    "pkmodel prepared-labels file", ("schema", SCHEMA), SCHEMA_VERSION, ("crop_size", "samples")
)


def write_labels(path: Path, header: dict[str, Any], samples: Iterable[dict[str, Any]]) -> None:
    """Atomic JSON with one sample per line (readable and diff-able, ~1 KB per sample)."""
    head = json.dumps(header, indent=2, allow_nan=False)[:-2]  # drop the closing "\n}"
    lines = ["    " + json.dumps(s, separators=(", ", ": "), allow_nan=False) for s in samples]
    body = ("\n" + ",\n".join(lines) + "\n  ") if lines else ""
    atomic_write_text(path, f'{head},\n  "samples": [{body}]\n}}\n')


class _NotANumber(Exception):
    """NaN or Infinity in a labels file (Python's JSON reader would take them)."""


def _no_constant(token: str) -> Any:
    raise _NotANumber(token)


def read_labels(path: str | Path) -> dict[str, Any]:
    """Load prepared labels and check their schema, ``crop_size`` (a whole number of pixels)
    and ``samples`` (a list); mistakes are one PkmodelError."""
    path = Path(path)
    if path.is_dir():
        raise PkmodelError(
            f"prepared labels {path} is a folder, not a labels file (give DATASET_DIR/NAME.json)"
        )
    if not path.is_file():
        raise PkmodelError(f"prepared labels {path} do not exist (run `pkmodel prepare-coco`)")
    try:
        data = parse_json(path.read_bytes(), parse_constant=_no_constant)
    except ValueError as e:
        raise PkmodelError(f"prepared labels {path} are not valid JSON ({e})") from None
    except _NotANumber as e:
        raise PkmodelError(
            f"prepared labels {path} hold {e}, which pkmodel never writes (JSON has no such "
            "number): the file was edited or damaged"
        ) from None
    data = LABELS.check(data, path)
    size = data["crop_size"]
    if not isinstance(size, int) or isinstance(size, bool) or size < 1:
        raise PkmodelError(
            f"prepared labels {path}: 'crop_size' is {size!r}, not a positive whole number of pixels"  # fmt: skip
        )
    if not isinstance(data["samples"], list):
        raise PkmodelError(
            f"prepared labels {path}: 'samples' is a {type(data['samples']).__name__}, not a list"
        )
    return data


def refuse_foreign_labels(
    target: Path, ours: Callable[[dict[str, Any]], bool], what: str, force: bool
) -> None:
    """A data tool writes ``target`` over an earlier output of its own (``ours`` of its
    header) and nothing else unless ``force``: prepared labels of another tool or of
    prepare-coco are a user's results. ``what`` says what ours would be (``a split of X``)."""
    if force or not target.exists():
        return
    try:
        mine = ours(read_labels(target))
    except PkmodelError:
        mine = False
    if not mine:
        raise PkmodelError(
            f"{target} exists and is not {what}: pass --force to replace it, or write elsewhere"
        )


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


# what each person of a sample holds (crop_box: the main person's only; x, y, side)
SAMPLE_SHAPES = {"keypoints": (NUM_JOINTS, 3), "center": (2,), "crop_box": (3,)}


def sample_problem(
    i: int, sample: Any, shapes: dict[str, tuple[int, ...]] = SAMPLE_SHAPES
) -> str | None:
    """``samples[i].field ...``: what in one sample cannot become the arrays of ``shapes``, or
    a ``source`` tag that is not text (None when it is fine)."""
    if not isinstance(sample, dict):
        return f"samples[{i}] is not an object"
    if not isinstance(sample.get("image"), str):
        return f"samples[{i}].image must be a file name"
    if sample.get("source") is not None and not isinstance(sample["source"], str):
        return f"samples[{i}].source is {sample['source']!r}, not a text tag"
    others = sample.get("others") or []
    if not isinstance(others, list):
        return f"samples[{i}].others is a {type(others).__name__}, not a list"
    people = [("", sample)] + [(f".others[{j}]", o) for j, o in enumerate(others)]
    for prefix, item in people:
        for name, shape in shapes.items():
            if prefix and name == "crop_box":
                continue
            try:
                value = np.asarray(item[name], np.float64)
            except (KeyError, TypeError, ValueError, IndexError):
                return f"samples[{i}]{prefix}.{name} is missing or not numbers"
            if value.shape != shape:
                want = " x ".join(map(str, shape))
                return f"samples[{i}]{prefix}.{name} must be {want} numbers, got shape {value.shape}"  # fmt: skip
    return None


def first_bad_sample(
    samples: list[Any], shapes: dict[str, tuple[int, ...]] = SAMPLE_SHAPES
) -> str | None:
    """``sample_problem`` of the first sample that has one (or None)."""
    for i, sample in enumerate(samples):
        problem = sample_problem(i, sample, shapes)
        if problem is not None:
            return problem
    return None


def checked_relative(image: str, where: str) -> PurePosixPath:
    """A sample's image path, relative to its label file's folder (may go up with '..', as
    `data split --out` writes them; never absolute)."""
    rel = PurePosixPath(image)
    if rel.is_absolute() or not rel.parts or rel.parts[-1] == "..":
        raise PkmodelError(
            f"{where}: image path {image!r} must be a file path relative to the label file's folder"
        )
    return rel


def load_labels(path: str | Path) -> dict[str, Any]:
    """``read_labels`` plus a check that every sample has the image path the data tools use."""
    data = read_labels(path)
    for i, s in enumerate(data["samples"]):
        if not isinstance(s, dict) or not isinstance(s.get("image"), str):
            raise PkmodelError(f"prepared labels {path}: samples[{i}] has no 'image' path")
    return data
