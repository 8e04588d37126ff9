"""prepare-coco: one square crop per usable COCO person, and versioned labels in crop pixels.

Reads a COCO person-keypoint file, applies the filters of the ``[prepare]`` config section,
crops each kept person (square box around its bbox, zero padding outside the image) at
``crop_size`` and writes ``DATASET_DIR/imgs/<split>/<image_id>_<ann_id>.jpg`` plus the labels
``DATASET_DIR/<split>.json`` (schema "pkmodel.prepared", see docs/interfaces.md). A crop that
the existing ``<split>.json`` lists is never overwritten with other pixels: the new one goes to
``<image_id>_<ann_id>.b.jpg`` (or back), so labels and crops agree whenever a rerun stops; crops
that the new labels do not list are deleted once those labels are written.

Crop boxes are snapped to whole pixels, so a crop is an exact integer-aligned region resized
with cv2.resize (INTER_AREA when shrinking): crop pixel (u, v) is original pixel
(x0 + u * side / crop_size, y0 + v * side / crop_size) in the continuous convention of
pkmodel.common.geometry, with no half-pixel error.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pkmodel.common.atomic import atomic_open
from pkmodel.common.errors import PkmodelError, cut, not_there
from pkmodel.common.geometry import image_to_crop, pixel_crop_box
from pkmodel.common.images import crop_square, read_rgb
from pkmodel.common.jsontext import parse_json
from pkmodel.common.pool import pool_results
from pkmodel.common.runtime import usable_cores
from pkmodel.common.skeleton import JOINT_NAMES, NUM_JOINTS
from pkmodel.config import PrepareConfig
from pkmodel.data.labels import SCHEMA, SCHEMA_VERSION, write_labels

# Each dropped annotation counts under the FIRST reason that applies, in this order.
DROP_REASONS: tuple[str, ...] = (
    "crowd",  # iscrowd = 1 and prepare.skip_crowd
    "bad_coordinates",  # a non-finite number, or a joint / the bbox far off the image
    "few_keypoints",  # fewer labelled joints (v > 0) than prepare.min_keypoints
    "small_area",  # COCO area below prepare.min_area
    "too_many_people",  # more other people have a labelled joint in its crop than max_people
    "missing_image",  # the image file does not exist
    "unreadable_image",  # the image is corrupt, truncated or not the size the JSON says
)
# Fields of standard COCO; any other field of an image entry (e.g. the synthetic set's
# intrinsics / depth_file) or of an annotation (keypoints_3d) is copied into the sample's "extra".
_COCO_IMAGE_KEYS = frozenset(
    {"id", "file_name", "width", "height", "license", "coco_url", "flickr_url", "date_captured"}
)
_COCO_ANNOTATION_KEYS = frozenset(
    {"id", "image_id", "category_id", "iscrowd", "keypoints", "num_keypoints", "bbox", "area",
     "segmentation"}
)  # fmt: skip
_DECIMALS = 3  # crop-pixel precision in the labels (1e-3 px: far below any label noise)


@dataclass
class CocoPeople:
    """The validated content of a COCO person-keypoint file, as arrays (one row per annotation)."""

    path: Path
    images: dict[int, dict[str, Any]]  # image id -> image entry
    ann_ids: np.ndarray  # (N,) int64
    image_ids: np.ndarray  # (N,) int64
    keypoints: np.ndarray  # (N, K, 3) float64, original pixels, COCO visibility
    bboxes: np.ndarray  # (N, 4) float64 [x, y, w, h]
    areas: np.ndarray  # (N,) float64
    iscrowd: np.ndarray  # (N,) bool
    extras: list[dict[str, Any]]  # (N,) non-COCO fields of each annotation (mostly empty)


@dataclass
class PrepareSummary:
    """What prepare-coco did: counts per drop reason, unreadable images, reuse."""

    split: str
    labels: Path
    annotations: int
    kept: int
    dropped: dict[str, int]
    unreadable: list[dict[str, str]] = field(default_factory=list)
    images_decoded: int = 0  # images whose crops were (re)made; every image is read and hashed
    crops_written: int = 0
    crops_reused: int = 0
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "annotations": self.annotations,
            "kept": self.kept,
            "dropped": self.dropped,
            "unreadable_images": self.unreadable,
        }

    def format(self) -> str:
        crops = "crop" if self.crops_written == 1 else "crops"
        lines = [
            f"split '{self.split}': {self.annotations} annotations -> {self.kept} samples "
            f"({self.crops_written} {crops} written, {self.crops_reused} reused, "
            f"{self.seconds:.1f} s)",
            "dropped: " + (", ".join(f"{k} {v}" for k, v in self.dropped.items() if v) or "none"),
        ]
        if self.unreadable:
            lines.append(f"unreadable images ({len(self.unreadable)}):")
            lines += [f"  {u['file']}: {u['reason']}" for u in self.unreadable]
        lines.append(f"labels: {self.labels}")
        return "\n".join(lines)


# --- reading and validating the annotation file ---------------------------------------------


def _need(entry: Any, key: str, where: str, path: Path) -> Any:
    if not isinstance(entry, dict):
        raise PkmodelError(f"{path}: {where} is not a JSON object")
    if key not in entry:
        raise PkmodelError(f"{path}: {where} has no '{key}'")
    return entry[key]


def _number_list(value: Any, length: int | None, key: str, where: str, path: Path) -> list:
    if not isinstance(value, list) or (length is not None and len(value) != length):
        want = f"{length} numbers" if length else "a list of numbers"
        got = f"{len(value)} values" if isinstance(value, list) else type(value).__name__
        raise PkmodelError(f"{path}: {where} '{key}' must be {want}, got {got}")
    for j, v in enumerate(value):  # the count is right: name the value that is not a number
        if not isinstance(v, (int, float)) or isinstance(v, bool):
            raise PkmodelError(f"{path}: {where} '{key}' entry {j} is {cut(repr(v))}, not a number")
    return value


def _coco_id(value: Any, key: str, where: str, path: Path) -> int:
    """An id of a COCO file: an integer (not true / false, which JSON keeps apart) that fits
    the signed 64 bits the annotation arrays hold it in (and pycocotools' NumPy arrays)."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise PkmodelError(f"{path}: {where} '{key}' must be an integer, got {cut(repr(value))}")
    if not -(2**63) <= value < 2**63:
        raise PkmodelError(
            f"{path}: {where} '{key}' must be an integer from -2**63 to 2**63 - 1 (64 bits), "
            f"got {cut(repr(value))}"
        )
    return value


def load_coco_people(path: str | Path) -> CocoPeople:
    """Read and validate a COCO person-keypoint file; any defect is one PkmodelError."""
    return coco_people(read_coco_json(path), Path(path))


def read_coco_json(path: str | Path) -> dict[str, Any]:
    """A COCO file's JSON: an object with 'images' and 'annotations' lists (else one
    PkmodelError); what they hold is checked by :func:`coco_people`."""
    path = Path(path)
    if not path.is_file():
        raise PkmodelError(f"annotation file {path} {not_there(path)}")
    try:
        data = parse_json(path.read_bytes())
    except (OSError, UnicodeDecodeError) as e:
        raise PkmodelError(f"annotation file {path} cannot be read ({e})") from None
    except ValueError as e:
        raise PkmodelError(f"annotation file {path} is not valid JSON ({e})") from None
    if not isinstance(data, dict):
        raise PkmodelError(
            f"annotation file {path} is not a COCO file (its top level is a "
            f"{type(data).__name__}, not an object with 'images' and 'annotations')"
        )
    for key in ("images", "annotations"):
        if not isinstance(data.get(key), list):
            what = f"has no '{key}' list" if key not in data else f"'{key}' is not a list"
            raise PkmodelError(f"annotation file {path} {what} (not a COCO file)")
    return data


def _category_ids(data: dict[str, Any], path: Path) -> set[int]:
    """The ids of a COCO file's 'categories' (pycocotools scores people by them), checked."""
    categories = data.get("categories")
    if not isinstance(categories, list) or not categories:
        what = "has no 'categories' list" if categories is None else "has no categories"
        if categories is not None and not isinstance(categories, list):
            what = "has a 'categories' that is not a list"
        raise PkmodelError(
            f"annotation file {path} {what} (a COCO keypoint file names its person category, "
            '[{"id": 1, "name": "person", ...}], and COCO scoring needs it)'
        )
    ids = set()
    for i, category in enumerate(categories):
        where = f"categories[{i}]"
        ids.add(_coco_id(_need(category, "id", where, path), "id", where, path))
    return ids


def coco_people(data: dict[str, Any], path: Path) -> CocoPeople:
    """The people of a COCO file's JSON (:func:`read_coco_json`), every field checked."""
    if data["annotations"] and not any(
        isinstance(a, dict) and "keypoints" in a for a in data["annotations"]
    ):  # instances_*.json: boxes and masks, no joints
        raise PkmodelError(
            f"annotation file {path} has no keypoint annotations (a COCO person_keypoints "
            "file is needed)"
        )
    categories = _category_ids(data, path)
    images: dict[int, dict[str, Any]] = {}
    for i, img in enumerate(data["images"]):
        where = f"images[{i}]"
        image_id = _need(img, "id", where, path)
        for key in ("file_name", "width", "height"):
            _need(img, key, where, path)
        _coco_id(image_id, "id", where, path)
        if image_id in images:
            raise PkmodelError(f"{path}: {where} repeats image id {image_id}")
        if not isinstance(img["file_name"], str) or not img["file_name"]:
            raise PkmodelError(f"{path}: {where} 'file_name' must be a non-empty string")
        name = Path(img["file_name"])
        if name.is_absolute() or ".." in name.parts:
            raise PkmodelError(
                f"{path}: {where} 'file_name' {img['file_name']!r} must be a path inside the "
                "images folder (relative, without '..')"
            )
        for key in ("width", "height"):
            if not isinstance(img[key], int) or isinstance(img[key], bool) or img[key] <= 0:
                raise PkmodelError(f"{path}: {where} '{key}' must be a positive integer")
        images[image_id] = img

    anns = data["annotations"]
    n = len(anns)
    ann_ids = np.zeros(n, np.int64)
    image_ids = np.zeros(n, np.int64)
    kps = np.zeros((n, NUM_JOINTS * 3), np.float64)
    bboxes = np.zeros((n, 4), np.float64)
    areas = np.zeros(n, np.float64)
    crowd = np.zeros(n, bool)
    extras: list[dict[str, Any]] = []
    seen: set[int] = set()
    for i, ann in enumerate(anns):
        where = f"annotations[{i}]"
        ann_id = _coco_id(_need(ann, "id", where, path), "id", where, path)
        if ann_id in seen:
            raise PkmodelError(f"{path}: {where} repeats annotation id {ann_id}")
        seen.add(ann_id)
        where = f"annotations[{i}] (id {ann_id})"
        category = _coco_id(_need(ann, "category_id", where, path), "category_id", where, path)
        if category not in categories:
            raise PkmodelError(
                f"{path}: {where} has category_id {category!r}, which 'categories' does not "
                f"list (its ids: {sorted(categories)[:5]}); COCO scoring would leave it out"
            )
        image_id = _coco_id(_need(ann, "image_id", where, path), "image_id", where, path)
        if image_id not in images:
            raise PkmodelError(
                f"{path}: {where} refers to image_id {image_id!r}, which is not in 'images'"
            )
        kp = _number_list(_need(ann, "keypoints", where, path), None, "keypoints", where, path)
        if len(kp) != NUM_JOINTS * 3:
            raise PkmodelError(
                f"{path}: {where} 'keypoints' has {len(kp)} values, expected "
                f"{NUM_JOINTS * 3} ({NUM_JOINTS} joints x 3)"
            )
        flags = np.asarray(kp[2::3], np.float64)
        odd = np.isfinite(flags) & ~np.isin(flags, (0, 1, 2))
        if odd.any():
            k = int(np.flatnonzero(odd)[0])
            raise PkmodelError(
                f"{path}: {where} 'keypoints' gives joint {k} the visibility {kp[3 * k + 2]!r}; "
                "COCO's are 0 (not labelled), 1 (labelled, hidden) and 2 (visible)"
            )
        box = _number_list(_need(ann, "bbox", where, path), 4, "bbox", where, path)
        if box[2] < 0 or box[3] < 0:
            raise PkmodelError(f"{path}: {where} 'bbox' has a negative width or height")
        area = ann.get("area", box[2] * box[3])  # COCO always has it; derived sets may not
        if not isinstance(area, (int, float)) or isinstance(area, bool):
            raise PkmodelError(f"{path}: {where} 'area' must be a number, got {cut(repr(area))}")
        ann_ids[i], image_ids[i], kps[i], bboxes[i], areas[i] = ann_id, image_id, kp, box, area
        iscrowd = ann.get("iscrowd", 0)
        if iscrowd not in (0, 1) or not isinstance(iscrowd, (int, bool)):
            raise PkmodelError(
                f"{path}: {where} 'iscrowd' must be 0 or 1, got {cut(repr(iscrowd))}"
            )
        count = ann.get("num_keypoints", 0)  # COCOeval compares it with 0
        if not isinstance(count, int) or isinstance(count, bool) or count < 0:
            raise PkmodelError(
                f"{path}: {where} 'num_keypoints' must be a whole number from 0, got {cut(repr(count))}"
            )
        crowd[i] = bool(iscrowd)
        extras.append({k: v for k, v in ann.items() if k not in _COCO_ANNOTATION_KEYS})
    return CocoPeople(
        path=path,
        images=images,
        ann_ids=ann_ids,
        image_ids=image_ids,
        keypoints=kps.reshape(n, NUM_JOINTS, 3),
        bboxes=bboxes,
        areas=areas,
        iscrowd=crowd,
        extras=extras,
    )


# --- filters ---------------------------------------------------------------------------------


def bad_coordinates(people: CocoPeople) -> np.ndarray:
    """Per annotation: True when a keypoint, bbox or area value is not a finite number, or a
    labelled joint or the bbox lies more than the image's width (height) left or right of
    (above or below) the image.

    Such values are annotation faults, not people: the crop box around them is undefined (NaN)
    or absurd (a joint at 1e9 would ask for petabytes of pixels). COCO's own joints and boxes
    lie on the image; the margin of one image size only catches nonsense.
    """
    n = len(people.ann_ids)
    size = np.array(
        [
            (people.images[i]["width"], people.images[i]["height"])
            for i in people.image_ids.tolist()
        ],
        np.float64,
    ).reshape(n, 2)
    finite = (
        np.isfinite(people.keypoints).all(axis=(1, 2))
        & np.isfinite(people.bboxes).all(axis=1)
        & np.isfinite(people.areas)
    )
    with np.errstate(invalid="ignore"):  # inf - inf: those rows are not finite anyway
        xy = people.keypoints[:, :, :2]
        off = ((xy < -size[:, None]) | (xy > 2.0 * size[:, None])).any(axis=2)
        far_joint = (off & (people.keypoints[:, :, 2] > 0)).any(axis=1)
        b = people.bboxes
        far_box = ((b[:, :2] < -size) | (b[:, :2] + b[:, 2:] > 2.0 * size)).any(axis=1)
    return ~finite | far_joint | far_box


def person_box(bbox: np.ndarray, keypoints: np.ndarray, cover_keypoints: bool) -> np.ndarray:
    """The COCO box [x, y, w, h], grown about its own center to hold every labelled joint.

    COCO boxes sometimes cut a hand or a foot off; a crop from such a box would lose the joint
    (no target for training, an impossible prediction for evaluation). The box grows
    symmetrically so the person's center (the box center) stays in the middle of the crop,
    where the decoder's center prior expects it.
    """
    bbox = np.asarray(bbox, dtype=np.float64)
    labelled = keypoints[keypoints[:, 2] > 0, :2]
    if not cover_keypoints or len(labelled) == 0:
        return bbox
    center = bbox[:2] + bbox[2:] / 2.0
    half = np.maximum(bbox[2:] / 2.0, np.abs(labelled - center).max(axis=0))
    return np.concatenate([center - half, 2.0 * half])


def others_in_crops(
    boxes: np.ndarray, ann_ids: np.ndarray, other_ids: np.ndarray, other_keypoints: np.ndarray
) -> np.ndarray:
    """Per crop box [x0, y0, side] (C, 3) of the people ``ann_ids`` (C,): how many of the other
    people (``other_ids`` (O,), ``other_keypoints`` (O, K, 3), original pixels) have a labelled
    joint inside it. A person is never counted in its own crop."""
    boxes = np.asarray(boxes, np.float64).reshape(-1, 1, 1, 3)
    kp = np.asarray(other_keypoints, np.float64)[None]  # (1, O, K, 3)
    lo, hi = boxes[..., :2], boxes[..., :2] + boxes[..., 2:]
    inside = ((kp[..., :2] >= lo) & (kp[..., :2] < hi)).all(-1) & (kp[..., 2] > 0)  # (C, O, K)
    other = np.asarray(other_ids)[None, :] != np.asarray(ann_ids)[:, None]
    return (inside.any(-1) & other).sum(axis=1)


def _by_image(people: CocoPeople) -> list[np.ndarray]:
    """Annotation rows grouped by image (file order within an image)."""
    order = np.argsort(people.image_ids, kind="stable")
    return np.split(order, np.flatnonzero(np.diff(people.image_ids[order])) + 1)


def _filter(
    people: CocoPeople, params: PrepareConfig
) -> tuple[np.ndarray, np.ndarray, dict[int, list[int]]]:
    """Per annotation the reason code (-1 = kept) and whether it can be another person in a
    crop; the pixel crop box of every kept annotation row."""
    labelled = (people.keypoints[:, :, 2] > 0).sum(axis=1)
    bad = bad_coordinates(people)
    checks = [
        people.iscrowd & params.skip_crowd,
        bad,
        labelled < params.min_keypoints,
        people.areas < params.min_area,
    ]
    reasons = np.full(len(people.ann_ids), -1, np.int64)
    for code, hit in enumerate(checks):
        reasons[(reasons < 0) & hit] = code
    # Every non-crowd person with a labelled joint is in the picture, kept or not.
    visible = ~people.iscrowd & ~bad & (labelled > 0)
    crowded = DROP_REASONS.index("too_many_people")
    boxes: dict[int, list[int]] = {}
    for group in _by_image(people):
        candidates = group[reasons[group] < 0]
        if len(candidates) == 0:
            continue
        found = [
            pixel_crop_box(
                person_box(people.bboxes[r], people.keypoints[r], params.cover_keypoints),
                params.expand_ratio,
            )
            for r in candidates
        ]
        if params.max_people > 0:
            # Crowding is what the crop shows: people far away on a big image do not matter.
            others = group[visible[group]]
            count = others_in_crops(
                np.array(found), people.ann_ids[candidates], people.ann_ids[others],
                people.keypoints[others],
            )  # fmt: skip
            reasons[candidates[count > params.max_people]] = crowded
        boxes.update((int(r), b) for r, b in zip(candidates, found, strict=True) if reasons[r] < 0)
    return reasons, visible, boxes


def filter_reasons(people: CocoPeople, params: PrepareConfig) -> np.ndarray:
    """Per annotation: index into DROP_REASONS of why it is dropped, or -1 when it is kept.

    Image-level reasons (missing / unreadable image) are only known after reading the images.
    """
    return _filter(people, params)[0]


# --- the per-image work (runs in worker processes) ------------------------------------------


@dataclass
class _ImageTask:
    image_id: int
    file_name: str
    path: str
    width: int
    height: int
    crop_dir: str
    rel_dir: str
    params: PrepareConfig
    # Kept people: annotation row, id, bbox, keypoints (K, 3), area, crop box, and the record
    # of an earlier run's crop with the same box and settings (None: there is none).
    rows: list[int]
    ann_ids: list[int]
    bboxes: np.ndarray
    keypoints: np.ndarray
    areas: list[float]
    crop_boxes: list[list[int]]
    previous: list[dict[str, Any] | None]
    # per kept person, the crop the existing <split>.json lists (name, crop_bytes, crop_sha1),
    # which must keep its pixels until new labels replace it (None: it lists none)
    listed: list[dict[str, Any] | None]
    # Every non-crowd person of the image with a labelled joint (the candidates for "others").
    all_ids: list[int]
    all_bboxes: np.ndarray
    all_keypoints: np.ndarray
    extra: list[dict[str, Any]]  # per kept person: non-COCO image and annotation fields


@dataclass
class _ImageResult:
    image_id: int
    file_name: str
    status: str  # "ok", "missing_image" or "unreadable_image"
    message: str
    people: int  # kept people on the image (all dropped when the image is bad)
    samples: list[tuple[int, dict[str, Any]]]  # (annotation row, sample)
    written: int = 0
    reused: int = 0
    decoded: bool = False


def _worker_init() -> None:
    import cv2

    cv2.setNumThreads(1)  # the pool already uses every core


def _write_crop(path: Path, rgb: np.ndarray, quality: int) -> tuple[int, str]:
    """JPEG-encode and write via temp file + rename: a crop on disk is never partial.

    Returns the file's byte size and SHA-1. No fsync per crop (thousands of them would dominate
    the run); instead the labels record each crop's size and hash and a rerun rewrites any
    crop that does not match them.
    """
    import cv2

    ok, buf = cv2.imencode(".jpg", rgb[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:  # pragma: no cover - cv2 encodes any uint8 image
        raise RuntimeError(f"JPEG encoding failed for {path}")
    data = buf.tobytes()
    with atomic_open(path, "wb", durable=False) as f:
        f.write(data)
    return len(data), hashlib.sha1(data).hexdigest()


def _same_crop(path: Path, previous: dict[str, Any] | None, source: dict[str, Any]) -> bool:
    """Whether the crop file at ``path`` is the one ``previous`` records, cut from the same
    source bytes (size and SHA-1; the modification time alone proves nothing)."""
    if previous is None:
        return False
    old = previous["source_image"]
    if old.get("bytes") != source["bytes"] or old.get("sha1") != source["sha1"]:
        return False
    return _holds_crop(path, previous)


def _holds_crop(path: Path, record: dict[str, Any]) -> bool:
    """Whether the file at ``path`` is the crop ``record`` names (its size and SHA-1)."""
    try:
        data = path.read_bytes()
    except OSError:
        return False
    return len(data) == record["crop_bytes"] and hashlib.sha1(data).hexdigest() == record["crop_sha1"]  # fmt: skip


def _round(a: np.ndarray) -> list:
    return np.round(a, _DECIMALS).tolist()


def _labels_in_crop(task: _ImageTask, j: int) -> dict[str, Any]:
    """The sample of kept person j: everything mapped into crop pixels (vectorised)."""

    cs = task.params.crop_size
    box = task.crop_boxes[j]
    kp = image_to_crop(task.keypoints[j], box, cs)
    kp[kp[:, 2] <= 0] = 0.0  # v=0 joints carry no position
    x, y, w, h = task.bboxes[j]
    scale = cs / box[2]
    center = image_to_crop(np.array([x + w / 2.0, y + h / 2.0]), box, cs)
    bbox_crop = [*image_to_crop(np.array([x, y]), box, cs), w * scale, h * scale]

    others = []
    mask = np.asarray(task.all_ids) != task.ann_ids[j]
    if mask.any():
        okp = image_to_crop(task.all_keypoints[mask], box, cs)  # (M, K, 3)
        ob = task.all_bboxes[mask]
        ocenter = image_to_crop(ob[:, :2] + ob[:, 2:] / 2.0, box, cs)  # (M, 2)
        inside = (okp[..., :2] >= 0).all(-1) & (okp[..., :2] < cs).all(-1) & (okp[..., 2] > 0)
        okp[~inside] = 0.0  # joints outside the crop cannot be seen in it
        center_in = ((ocenter >= 0) & (ocenter < cs)).all(-1)
        for m in np.flatnonzero(inside.any(-1) | center_in):
            others.append({"keypoints": _round(okp[m]), "center": _round(ocenter[m])})
    sample = {
        "image": f"{task.rel_dir}/{task.image_id}_{task.ann_ids[j]}.jpg",
        "image_id": task.image_id,
        "ann_id": task.ann_ids[j],
        "file_name": task.file_name,
        "width": task.width,
        "height": task.height,
        "crop_box": list(box),
        "keypoints": _round(kp),
        "center": _round(center),
        "bbox": _round(np.array(bbox_crop)),
        "area": float(task.areas[j]),
        "others": others,
        "source": "coco",
    }
    if task.extra[j]:
        sample["extra"] = task.extra[j]
    return sample


def _process_image(task: _ImageTask) -> _ImageResult:
    """Crop (or reuse) every kept person of one image and compute its labels.

    The image file is always read and hashed: an earlier crop is reused only when it was cut
    from these very bytes (a replaced, resized or deleted image is never served from old
    crops). Decoding, cropping and encoding, the expensive part, happen only for the rest.
    """
    result = _ImageResult(task.image_id, task.file_name, "ok", "", len(task.rows), [])
    if not os.path.isfile(task.path):
        result.status, result.message = "missing_image", "file does not exist"
        return result
    try:
        with open(task.path, "rb") as f:
            mtime_ns = os.fstat(f.fileno()).st_mtime_ns
            data = f.read()
    except OSError as e:
        result.status, result.message = "unreadable_image", f"cannot read ({e.strerror or e})"
        return result
    source = {"bytes": len(data), "mtime_ns": mtime_ns, "sha1": hashlib.sha1(data).hexdigest()}
    crop_dir = Path(task.crop_dir)
    olds = [crop_dir / old["name"] if old else None for old in task.previous]
    same = [p is not None and _same_crop(p, old, source) for p, old in zip(olds, task.previous, strict=True)]  # fmt: skip
    paths = [
        old if ok else crop_dir / _new_crop_name(crop_dir, task.image_id, a, listed)
        for old, ok, a, listed in zip(olds, same, task.ann_ids, task.listed, strict=True)
    ]
    rgb = None
    if not all(same):
        try:
            # Decoded from the bytes just hashed, so the recorded hash is the crop's source.
            rgb = read_rgb(io.BytesIO(data), task.width, task.height)
        except ValueError as e:
            result.status, result.message = "unreadable_image", str(e)
            return result
        result.decoded = True
    for j, (row, p) in enumerate(zip(task.rows, paths, strict=True)):
        sample = _labels_in_crop(task, j)
        sample["image"] = f"{task.rel_dir}/{p.name}"
        previous = task.previous[j]
        if same[j] and previous is not None:
            crop_bytes, crop_sha1 = previous["crop_bytes"], previous["crop_sha1"]
            result.reused += 1
        else:
            crop = crop_square(rgb, task.crop_boxes[j], task.params.crop_size)
            crop_bytes, crop_sha1 = _write_crop(p, crop, task.params.jpeg_quality)
            result.written += 1
        sample["crop_bytes"], sample["crop_sha1"] = crop_bytes, crop_sha1
        sample["source_image"] = source
        result.samples.append((row, sample))
    return result


# --- labels file -----------------------------------------------------------------------------


def _labels_header(
    split: str, people: CocoPeople, images_dir: Path, params: PrepareConfig
) -> dict[str, Any]:
    return {
        "schema": SCHEMA,
        "version": SCHEMA_VERSION,
        "split": split,
        "crop_size": params.crop_size,
        "annotations": str(people.path.resolve()),
        "images": str(images_dir.resolve()),
        "expand_ratio": params.expand_ratio,
        "cover_keypoints": params.cover_keypoints,
        "jpeg_quality": params.jpeg_quality,
        "joint_names": list(JOINT_NAMES),
        "filters": {
            "skip_crowd": params.skip_crowd,
            "min_keypoints": params.min_keypoints,
            "min_area": params.min_area,
            "max_people": params.max_people,
        },
    }


def _old_labels(path: Path) -> dict[str, Any] | None:
    """An earlier run's labels file (complete or partial) as JSON; None when there is none or
    it cannot be read (that only means nothing of it is reused)."""
    try:
        old = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return None
    return old if isinstance(old, dict) else None


def _previous_crops(
    olds: Iterable[dict[str, Any] | None], header: dict[str, Any]
) -> dict[tuple[int, int], dict[str, Any]]:
    """(image id, ann id) -> the record of a crop an earlier run finished: its crop box, the
    crop file's size and SHA-1 and the identity of the source image it was cut from.

    Only runs with the same crop size, expand ratio, JPEG quality and image folder count; a
    sample without a complete record (labels of an older prepare) is not reused.
    """
    same = ("crop_size", "expand_ratio", "jpeg_quality", "images")
    found: dict[tuple[int, int], dict[str, Any]] = {}
    for old in olds:
        if old is None or any(old.get(k) != header[k] for k in same):
            continue
        samples = old.get("samples")
        for s in samples if isinstance(samples, list) else []:
            with contextlib.suppress(KeyError, TypeError, AttributeError):
                record = {
                    "name": _crop_name(s["image"]),
                    "crop_box": list(s["crop_box"]),
                    "crop_bytes": int(s["crop_bytes"]),
                    "crop_sha1": str(s["crop_sha1"]),
                    "source_image": {k: s["source_image"][k] for k in ("bytes", "mtime_ns", "sha1")},
                }  # fmt: skip
                found[(s["image_id"], s["ann_id"])] = record
    return found


CROP_NAME = re.compile(r"-?\d+_-?\d+(\.b)?\.jpg")  # <image_id>_<ann_id>[.b].jpg


def _crop_name(image: Any) -> str:
    """The file name of a sample's crop (its ``image``, relative to the dataset folder); a
    name that is not prepare's own is an error here (the record is then not reused)."""
    name = str(image).rsplit("/", 1)[-1]
    if not CROP_NAME.fullmatch(name):
        raise KeyError(name)
    return name


def _listed_crops(old: dict[str, Any] | None) -> dict[tuple[int, int], dict[str, Any]]:
    """(image id, ann id) -> the crop the existing complete labels ``old`` list: its file
    name, size and SHA-1."""
    samples = old.get("samples") if old is not None else None
    listed = {}
    for s in samples if isinstance(samples, list) else []:
        with contextlib.suppress(KeyError, TypeError, AttributeError):
            listed[(s["image_id"], s["ann_id"])] = {
                "name": _crop_name(s["image"]),
                "crop_bytes": int(s["crop_bytes"]),
                "crop_sha1": str(s["crop_sha1"]),
            }
    return listed


def _new_crop_name(crop_dir: Path, image_id: int, ann_id: int, listed: dict | None) -> str:
    """Where a crop with new pixels goes: ``<image_id>_<ann_id>.jpg``, or ``....b.jpg`` when the
    existing labels list the first name and that file still holds the crop they record (it
    keeps its pixels until they are replaced; a crop already damaged or gone is made again in
    its place)."""
    plain = f"{image_id}_{ann_id}.jpg"
    if listed is None or listed["name"] != plain or not _holds_crop(crop_dir / plain, listed):
        return plain
    return f"{image_id}_{ann_id}.b.jpg"


def _remove_unlisted_crops(crop_dir: Path, samples: Iterable[dict[str, Any]]) -> None:
    """Delete the crops of ``crop_dir`` (prepare's own names only) that ``samples``, the labels
    just written, do not list: the earlier run's, now replaced."""
    keep = {_crop_name(s["image"]) for s in samples}
    with contextlib.suppress(OSError):
        for path in crop_dir.iterdir():
            if CROP_NAME.fullmatch(path.name) and path.name not in keep:
                with contextlib.suppress(OSError):
                    path.unlink()


def _looks_reusable(task: _ImageTask) -> bool:
    """Whether every crop of the task was recorded and the image file still has the recorded
    size and modification time (one stat; the hash check follows in _process_image)."""
    try:
        st = os.stat(task.path)
    except OSError:
        return False
    now = {"bytes": st.st_size, "mtime_ns": st.st_mtime_ns}
    return all(
        old is not None and all(old["source_image"][k] == v for k, v in now.items())
        for old in task.previous
    )


# --- the whole split -------------------------------------------------------------------------


def worker_count(requested: int) -> int:

    return requested if requested > 0 else usable_cores()


def prepare_split(
    split: str,
    images_dir: str | Path,
    annotations: str | Path,
    out_dir: str | Path,
    params: PrepareConfig,
    progress: bool = True,
    checkpoint_every_s: float = 60.0,
    allow_empty: bool = False,
    allow_missing: bool = False,
) -> PrepareSummary:
    """Crop every kept person of a COCO split and write ``out_dir/<split>.json``.

    Resumable: a crop that the labels of an earlier (complete or interrupted) run with the same
    settings record, with the same box, whose file still has the recorded size and SHA-1 and
    whose source image still has the recorded size and SHA-1, is reused without decoding the
    image. An interrupted run (Ctrl-C, or any error) first saves the finished samples as
    ``out_dir/.<split>.partial.json``. A split that keeps nobody is an error (an existing
    ``<split>.json`` is left as it was) unless ``allow_empty`` (callers that handle an empty
    result themselves). So is a split where more than half of the images with people to crop
    are missing from ``images_dir`` (a wrong folder would otherwise replace good labels with a
    few people), unless ``allow_missing``; this is checked before anything is cropped.
    """
    from tqdm import tqdm

    start = time.perf_counter()
    params.check()
    if not split or "/" in split or split.startswith("."):
        raise PkmodelError(f"split name '{split}' must be a plain file name (e.g. train)")
    images_dir, out_dir = Path(images_dir), Path(out_dir)
    people = load_coco_people(annotations)
    if not images_dir.is_dir():
        raise PkmodelError(f"image folder {images_dir} {not_there(images_dir, 'folder')}")
    crop_dir = out_dir / "imgs" / split
    labels_path = out_dir / f"{split}.json"
    partial_path = out_dir / f".{split}.partial.json"
    header = _labels_header(split, people, images_dir, params)
    old_labels = _old_labels(labels_path)  # read once: for reuse and for the crops it lists
    previous = _previous_crops([old_labels, _old_labels(partial_path)], header)
    listed = _listed_crops(old_labels)

    reasons, visible, boxes = _filter(people, params)
    tasks = []
    for group in _by_image(people):
        kept = group[reasons[group] < 0]
        if len(kept) == 0:
            continue  # images without a usable person are never read
        image_id = int(people.image_ids[kept[0]])
        img = people.images[image_id]
        ann_ids = people.ann_ids[kept].tolist()
        crop_boxes = [boxes[int(r)] for r in kept]
        records = []
        for a, box in zip(ann_ids, crop_boxes, strict=True):
            old = previous.get((image_id, a))
            records.append(old if old is not None and old["crop_box"] == box else None)
        every = group[visible[group]]
        image_extra = {k: v for k, v in img.items() if k not in _COCO_IMAGE_KEYS}
        tasks.append(
            _ImageTask(
                image_id=image_id,
                file_name=img["file_name"],
                path=str(images_dir / img["file_name"]),
                width=img["width"],
                height=img["height"],
                crop_dir=str(crop_dir),
                rel_dir=f"imgs/{split}",
                params=params,
                rows=kept.tolist(),
                ann_ids=ann_ids,
                bboxes=people.bboxes[kept],
                keypoints=people.keypoints[kept],
                areas=people.areas[kept].tolist(),
                crop_boxes=crop_boxes,
                previous=records,
                listed=[listed.get((image_id, a)) for a in ann_ids],
                all_ids=people.ann_ids[every].tolist(),
                all_bboxes=people.bboxes[every],
                all_keypoints=people.keypoints[every],
                extra=[{**image_extra, **people.extras[r]} for r in kept],
            )
        )

    if not allow_missing:
        _refuse_mostly_missing(tasks, split, images_dir, annotations, labels_path)
    try:
        crop_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise PkmodelError(f"cannot create the output folder {crop_dir} ({e})") from None
    summary = PrepareSummary(
        split=split,
        labels=labels_path,
        annotations=len(people.ann_ids),
        kept=0,
        dropped={r: int((reasons == i).sum()) for i, r in enumerate(DROP_REASONS)},
    )
    samples: dict[int, dict[str, Any]] = {}
    workers = worker_count(params.workers)
    bar = tqdm(total=len(tasks), unit="img", desc=f"prepare {split}", disable=not progress)
    next_save = time.monotonic() + checkpoint_every_s
    try:
        for res in _run_tasks(tasks, workers):
            bar.update(1)
            if res.status != "ok":
                summary.dropped[res.status] += res.people
                summary.unreadable.append({"file": res.file_name, "reason": res.message})
                continue
            summary.images_decoded += int(res.decoded)
            summary.crops_written += res.written
            summary.crops_reused += res.reused
            samples.update(res.samples)
            bar.set_postfix(kept=len(samples), refresh=False)
            if time.monotonic() >= next_save:
                # A run killed outright resumes from here: its crops are listed with their hashes.
                began = time.monotonic()
                write_labels(partial_path, {**header, "complete": False}, samples.values())
                # Big splits: never spend more than ~10 % of the time on these snapshots.
                spent = time.monotonic() - began
                next_save = time.monotonic() + max(checkpoint_every_s, 10 * spent)
    except BaseException:
        # Ctrl-C or an error: what is finished is kept for the rerun (when the partial labels
        # cannot be written either, the original error is the one to report).
        if samples:
            with contextlib.suppress(Exception):
                write_labels(partial_path, {**header, "complete": False}, samples.values())
        raise
    finally:
        bar.close()
    summary.kept = len(samples)
    summary.unreadable.sort(key=lambda u: u["file"])
    if not samples and not allow_empty:
        raise PkmodelError(_nobody_kept(summary, annotations, images_dir))
    write_labels(
        labels_path,
        {**header, "summary": summary.to_dict()},
        (samples[r] for r in sorted(samples)),  # annotation-file order
    )
    with contextlib.suppress(FileNotFoundError):
        partial_path.unlink()
    _remove_unlisted_crops(crop_dir, samples.values())
    summary.seconds = time.perf_counter() - start
    return summary


def people_of(count: int) -> str:
    """'the 1 person' or 'the 5 people', for a sentence about those of the images found."""
    return f"the {count} {'person' if count == 1 else 'people'}"


class MissingImagesError(PkmodelError):
    """More than half of the images with people to crop are missing from the image folder.
    ``found`` says so and ``people`` counts those of the images that are there, so that a caller
    can say what it did not do in its own words."""

    def __init__(self, split: str, labels: Path, found: str, people: int):
        self.found, self.people = found, people
        super().__init__(
            f"split '{split}': {found}; {labels} was not written: check --images, or pass "
            f"--allow-missing-images to prepare {people_of(people)} of the images that are there"
        )


def _refuse_mostly_missing(
    tasks: list[_ImageTask], split: str, images_dir: Path, annotations: str | Path, labels: Path
) -> None:
    there = [os.path.isfile(t.path) for t in tasks]
    missing = [t for t, ok in zip(tasks, there, strict=True) if not ok]
    if len(missing) * 2 <= len(tasks):
        return
    found = (
        f"{len(missing)} of the {len(tasks)} images with people to crop that {annotations} "
        f"names are missing from {images_dir} (e.g. {missing[0].file_name})"
    )
    people = sum(len(t.rows) for t, ok in zip(tasks, there, strict=True) if ok)
    raise MissingImagesError(split, labels, found, people)


def _nobody_kept(summary: PrepareSummary, annotations: str | Path, images_dir: Path) -> str:
    why = [f"{n} {reason}" for reason, n in summary.dropped.items() if n]
    if summary.unreadable:
        first = summary.unreadable[0]
        why.append(f"e.g. {images_dir / first['file']}: {first['reason']}")
    return (
        f"split '{summary.split}': no person was kept from {annotations} "
        f"({summary.annotations} annotations; dropped: {', '.join(why) or 'none'}); "
        f"{summary.labels} was not written"
    )


def _run_tasks(tasks: list[_ImageTask], workers: int) -> Iterable[_ImageResult]:
    """Results in completion order: images whose crops all look reusable inline (a stat, then
    a read and hash of the image and its crops), the rest inline for one worker, else in a
    spawn pool, chunked."""
    _worker_init()
    looks = [_looks_reusable(t) for t in tasks]
    yield from map(_process_image, [t for t, ok in zip(tasks, looks, strict=True) if ok])
    work = [t for t, ok in zip(tasks, looks, strict=True) if not ok]
    workers = min(workers, len(work))
    if workers <= 1:
        yield from map(_process_image, work)
        return

    chunk = max(1, min(32, len(work) // (workers * 8)))
    yield from pool_results(_process_image, work, workers, chunk, ordered=False,
                            initializer=_worker_init)  # fmt: skip
