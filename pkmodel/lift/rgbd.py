"""Reading RGB-D recordings for `pkmodel lift`: the synthetic ``sequences/`` layout, plain
folders of colour images + depth (16-bit PNG, or float ``.npy`` in metres) with an
``intrinsics.json``, and (through :mod:`pkmodel.lift.capture_apps`) the recordings of the iPhone
apps Stray Scanner and Record3D.

A recording becomes an :class:`RgbdSequence`: file lists, timestamps, intrinsics, the depth
unit, and ground truth when the files carry it. Every number the files give is checked when the
recording is read, so a bad value is one sentence naming the file and key before any frame is
lifted. Frames are loaded one at a time (a long recording never sits in memory whole); depth
comes back in metres (float32, 0 = no depth).
"""

from __future__ import annotations

import re
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np

from pkmodel.common.camera import DEPTH_UNIT_RANGE_M, MAX_COORDINATE, MIN_FOCAL_PX, Intrinsics
from pkmodel.common.capture_formats import R3D_SUFFIX, is_finite_number
from pkmodel.common.errors import PkmodelError, cut, not_there
from pkmodel.common.images import opencv_path
from pkmodel.common.jsontext import parse_json
from pkmodel.common.skeleton import NUM_JOINTS
from pkmodel.lift.capture_apps import (
    Warn,
    is_r3d_folder,
    is_stray_folder,
    read_r3d,
    read_stray_folder,
)
from pkmodel.lift.recording import (
    GroundTruth,
    RgbdSequence,
    check_depth_array,
    check_timestamps,
    load_npy,
)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
DEPTH_SUFFIXES = (*IMAGE_SUFFIXES, ".npy")
INTRINSICS_FIELDS = ("fx", "fy", "cx", "cy")
INTRINSICS_FILE = "intrinsics.json"
SEQUENCE_FILE = "annotations.json"
# an annotation's per-joint radii, by the names make-synthetic's versions gave them
RADIUS_KEYS = ("limb_radius_m", "joint_radius_m", "limb_radius")


def find_sequences(
    root: Path, intrinsics_key: str = "", fps: float = 30.0, warn: Warn | None = None
) -> list[RgbdSequence]:
    """Every recording at ``root``: one recording (a synthetic sequence with
    ``annotations.json``, a plain RGB-D folder with ``intrinsics.json``, a Stray Scanner folder,
    a Record3D ``.r3d`` file or its unzipped folder), or a folder of them (a make-synthetic
    folder's ``sequences/``, or any folder). ``warn`` receives the readers' warnings (default:
    :func:`warnings.warn`)."""
    root = Path(root)
    if root.is_file():
        if root.suffix.lower() not in (R3D_SUFFIX, ".zip"):
            raise PkmodelError(f"input {root} is a file; give a folder or a Record3D .r3d file")
        return [read_r3d(root, warn)]
    if not root.is_dir():
        raise PkmodelError(f"input folder {root} {not_there(root, 'folder')}")
    one = _read_recording(root, intrinsics_key, fps, warn)
    if one is not None:
        return [one]
    parent = root / "sequences" if (root / "sequences").is_dir() else root
    found = [
        seq
        for path in sorted(parent.iterdir())
        if (seq := _read_recording(path, intrinsics_key, fps, warn)) is not None
    ]
    if not found:
        where = f"the folders of {parent}" if parent != root else "its folders"
        raise PkmodelError(
            f"input folder {root} holds no RGB-D recording: no {SEQUENCE_FILE}, "
            f"{INTRINSICS_FILE}, Stray Scanner recording or .r3d file in it or in {where}"
        )
    seen: dict[str, RgbdSequence] = {}
    for seq in found:
        if seq.name in seen:
            raise PkmodelError(
                f"{seen[seq.name].source} and {seq.source} are two recordings named "
                f"'{seq.name}'; lift names its outputs after the recording: keep one"
            )
        seen[seq.name] = seq
    return found


def _read_recording(
    path: Path, intrinsics_key: str, fps: float, warn: Warn | None
) -> RgbdSequence | None:
    """The recording at ``path`` when it is one (None otherwise); a folder's own files decide
    its kind, checked in this order."""
    if path.is_file():
        return read_r3d(path, warn) if path.suffix.lower() == R3D_SUFFIX else None
    if not path.is_dir():
        return None
    if (path / SEQUENCE_FILE).is_file():
        return read_synthetic_sequence(path)
    if (path / INTRINSICS_FILE).is_file():
        return read_plain_folder(path, intrinsics_key, fps)
    if is_stray_folder(path):
        return read_stray_folder(path, warn)
    if is_r3d_folder(path):
        return read_r3d(path, warn)
    if (path / "metadata.json").is_file() and any((path / "depth").glob("*.exr")):
        raise PkmodelError(
            f"{path} is Record3D's EXR + JPG export (metadata.json, depth/*.exr), which pkmodel "
            f"does not read (it ships no EXR decoder): export the recording from Record3D as "
            f"an .r3d file instead"
        )
    return None


# --- synthetic sequences ---------------------------------------------------------------------


def _load_json(path: Path) -> Any:
    try:
        return parse_json(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise PkmodelError(f"{path} cannot be read as JSON: {e}") from None


def _number(obj: dict, key: str, where: str, kind: str) -> Any:
    """``obj[key]`` checked: ``kind`` is "positive" (a finite number > 0), "focal" (at least
    MIN_FOCAL_PX), "unit" (metres per depth value, in DEPTH_UNIT_RANGE_M), "finite",
    "pixels" (a whole number > 0, returned as an int) or "whole" (an id: a whole number,
    returned as an int). JSON numbers only: true, strings and null are refused, and so are
    NaN and Infinity, which Python's JSON reader lets through."""
    value = _entry(obj, key, where)
    number = is_finite_number(value)
    whole = number and float(value).is_integer()
    low, high = DEPTH_UNIT_RANGE_M
    ok, wanted = {
        "positive": (number and value > 0, "a positive number"),
        "focal": (
            number and value >= MIN_FOCAL_PX,
            f"a focal length of at least {MIN_FOCAL_PX:g} pixel",
        ),
        "unit": (number and low <= value <= high, f"a depth unit from {low:g} to {high:g} m"),
        "scale": (
            number and 1 / high <= value <= 1 / low,
            f"a number of depth units per metre from {1 / high:g} to {1 / low:g}",
        ),
        "finite": (number, "a finite number"),
        "pixels": (whole and value > 0, "a whole number of pixels above 0"),
        "whole": (whole, "a whole number"),
    }[kind]
    if not ok:
        raise PkmodelError(f"{where}: '{key}' must be {wanted}, got {_shown(value)}")
    return int(value) if kind in ("pixels", "whole") else float(value)


def _entry(obj: dict, key: str, where: str) -> Any:
    """``obj[key]``, or one sentence saying that ``where`` has no such key."""
    if key not in obj:
        raise PkmodelError(f"{where} has no '{key}'")
    return obj[key]


def _shown(value: Any) -> str:
    """A JSON value as an error message quotes it: lists and objects by their size."""
    if isinstance(value, list):
        return f"a list of {len(value)} values"
    if isinstance(value, dict):
        return "an object"
    return cut(repr(value))


def _leaves(value: Any) -> list[Any]:
    """The values of a (nested) JSON list, in order."""
    if isinstance(value, list):
        return [leaf for item in value for leaf in _leaves(item)]
    return [value]


def _numbers(obj: dict, key: str, where: str, shape: tuple[int, ...]) -> np.ndarray:
    """``obj[key]``: a list (flat or nested) of finite numbers within +-MAX_COORDINATE, as
    many as ``shape`` holds."""
    value = _entry(obj, key, where)
    size = int(np.prod(shape))
    wanted = f"{where}: '{key}' must be a list of {size} finite numbers within +-{MAX_COORDINATE:g}"
    if not isinstance(value, list):
        raise PkmodelError(f"{wanted}, got {_shown(value)}")
    leaves = _leaves(value)
    if len(leaves) != size:
        raise PkmodelError(f"{wanted}, got {len(leaves)}")
    bad = next(
        (i for i, v in enumerate(leaves) if not is_finite_number(v) or abs(v) > MAX_COORDINATE),
        None,
    )
    if bad is not None:
        raise PkmodelError(f"{wanted}; value {bad} is {_shown(leaves[bad])}")
    return np.array(leaves, dtype=np.float64).reshape(shape)


def _name(obj: dict, key: str, where: str) -> str:
    """``obj[key]``: a file name (a non-empty string)."""
    value = _entry(obj, key, where)
    if not isinstance(value, str) or not value:
        raise PkmodelError(f"{where}: '{key}' must be a file name, got {_shown(value)}")
    return value


def _objects(doc: Any, key: str, path: Path, required: bool = True) -> list[dict]:
    """``doc[key]``: a list of JSON objects (non-empty when ``required``)."""
    if not isinstance(doc, dict):
        raise PkmodelError(f"{path} must hold a JSON object with 'images' and 'annotations'")
    value = doc.get(key) if required else doc.get(key, [])
    if not isinstance(value, list) or (required and not value):
        wanted = "a non-empty list" if required else "a list"
        raise PkmodelError(f"{path}: '{key}' must be {wanted}, got {_shown(value)}")
    bad = next((i for i, v in enumerate(value) if not isinstance(v, dict)), None)
    if bad is not None:
        raise PkmodelError(f"{path}: {key}[{bad}] must be an object, got {_shown(value[bad])}")
    return value


def _intrinsics_from(obj: Any, width: int, height: int, where: str) -> Intrinsics:
    """Intrinsics from a JSON object with fx, fy, cx, cy (and optionally width, height, else
    the given size); ``where`` names the object in error messages."""
    if not isinstance(obj, dict):
        raise PkmodelError(f"{where} must be an object with fx, fy, cx and cy")
    missing = [k for k in INTRINSICS_FIELDS if k not in obj]
    if missing:
        raise PkmodelError(f"{where} has no '{missing[0]}'")
    fx, fy = (_number(obj, k, where, "focal") for k in ("fx", "fy"))
    cx, cy = (_number(obj, k, where, "finite") for k in ("cx", "cy"))
    w = _number(obj, "width", where, "pixels") if "width" in obj else width
    h = _number(obj, "height", where, "pixels") if "height" in obj else height
    for key, value, side in (("cx", cx, w), ("cy", cy, h)):
        if not 0 <= value < side:  # intrinsics of another resolution, or a typo
            raise PkmodelError(
                f"{where}: '{key}' must lie inside the {w} x {h} image the intrinsics are for "
                f"(0 to {side}), got {cut(repr(obj[key]))}"
            )
    return Intrinsics(fx, fy, cx, cy, width=w, height=h)


def read_synthetic_sequence(folder: Path) -> RgbdSequence:
    """A make-synthetic sequence: COCO-style ``annotations.json`` whose images carry
    ``timestamp``, ``depth_file``, ``depth_unit_m`` and ``intrinsics``, and whose annotations
    carry ``keypoints_3d`` (metres, camera frame) and per-joint limb radii. A bad value is one
    sentence naming the key and the image's or annotation's index in the file."""
    folder = Path(folder)
    path = folder / SEQUENCE_FILE
    doc = _load_json(path)
    listed = _objects(doc, "images", path)
    where = [f"{path}: images[{i}]" for i in range(len(listed))]
    stamps = [_number(im, "timestamp", where[i], "finite") for i, im in enumerate(listed)]
    order = sorted(range(len(listed)), key=lambda i: stamps[i])
    first = listed[order[0]]
    widths = [_number(im, "width", where[i], "pixels") for i, im in enumerate(listed)]
    heights = [_number(im, "height", where[i], "pixels") for i, im in enumerate(listed)]
    width, height = widths[order[0]], heights[order[0]]
    for i in order:
        if (widths[i], heights[i]) != (width, height):
            raise PkmodelError(
                f"{where[i]} is {widths[i]} x {heights[i]} but images[{order[0]}], the first "
                f"frame, is {width} x {height}; one sequence has one image size"
            )
    camera = _entry(first, "intrinsics", where[order[0]])
    intr = _intrinsics_from(camera, width, height, f"{where[order[0]]}.intrinsics")
    units = [
        _number(im, "depth_unit_m", where[i], "unit") if "depth_unit_m" in im else 0.001
        for i, im in enumerate(listed)
    ]
    unit = units[order[0]]
    for i in order:
        if units[i] != unit:
            raise PkmodelError(
                f"{where[i]}: 'depth_unit_m' is {units[i]:g} but {unit:g} in images[{order[0]}], "
                f"the first frame; one sequence has one depth unit"
            )
    ids = [_number(im, "id", where[i], "whole") for i, im in enumerate(listed)]
    seen: set[int] = set()
    for i, image_id in enumerate(ids):  # a set: a long take has thousands of frames
        if image_id in seen:
            raise PkmodelError(f"{where[i]}: 'id' {image_id} is another image's id too")
        seen.add(image_id)
    anns: dict[int, list[tuple[int, dict]]] = {}
    for j, ann in enumerate(_objects(doc, "annotations", path, required=False)):
        at = f"{path}: annotations[{j}]"
        if "area" in ann:
            _number(ann, "area", at, "finite")
        anns.setdefault(_number(ann, "image_id", at, "whole"), []).append((j, ann))
    color = [folder / _name(listed[i], "file_name", where[i]) for i in order]
    depth = [folder / _name(listed[i], "depth_file", where[i]) for i in order]
    conf = (
        [folder / _name(listed[i], "confidence_file", where[i]) for i in order]
        if "confidence_file" in first
        else None
    )
    kp2d = np.full((len(order), NUM_JOINTS, 3), np.nan)
    kp3d = np.full((len(order), NUM_JOINTS, 3), np.nan)
    radius = np.full((len(order), NUM_JOINTS), np.nan)
    for t, i in enumerate(order):
        im = listed[i]
        camera = _entry(im, "intrinsics", where[i])
        if _intrinsics_from(camera, width, height, f"{where[i]}.intrinsics") != intr:
            raise PkmodelError(
                f"{where[i]}: 'intrinsics' differ from those of images[{order[0]}], the first "
                "frame; one sequence has one camera"
            )
        people = anns.get(ids[i], [])
        if not people:
            continue
        # The sequence follows one person: the largest one in view.
        j, ann = max(people, key=lambda p: float(p[1].get("area", 0.0)))
        at = f"{path}: annotations[{j}]"
        kp2d[t] = _numbers(ann, "keypoints", at, (NUM_JOINTS, 3))
        if "keypoints_3d" in ann:
            kp3d[t] = _numbers(ann, "keypoints_3d", at, (NUM_JOINTS, 3))
        key = next((k for k in RADIUS_KEYS if k in ann and ann[k] is not None), None)
        if key is not None:
            radius[t] = _numbers(ann, key, at, (NUM_JOINTS,))
            if (radius[t] < 0).any():
                raise PkmodelError(f"{at}: '{key}' holds a negative radius ({radius[t].min():g} m)")
    timestamps = np.array([stamps[i] for i in order])
    check_timestamps(timestamps, str(path))
    gt = GroundTruth(kp2d, kp3d, None if np.isnan(radius).all() else radius)
    return RgbdSequence(
        name=folder.name,
        color_files=color,
        depth_files=depth,
        timestamps=timestamps,
        intrinsics=intr,
        depth_unit_m=unit,
        confidence_files=conf,
        ground_truth=gt,
        source=folder,
    )


# --- plain folders ---------------------------------------------------------------------------


# a run of digits, with decimals where there are some (TUM's 1305031102.175304)
_NUMBER = re.compile(r"(\d+(?:\.\d+)?)")


def frame_order(name: str) -> tuple[tuple[Any, ...], str]:
    """The sort key of a frame's file name: its numbers by value, the text between as text,
    so that 2.png comes before 10.png and 9.900000.png before 10.000000.png (as text they sort
    the other way, and frames numbered without leading zeros came out of time order)."""
    parts = _NUMBER.split(name)  # text, number, text, ...: each place holds one kind
    return tuple(Decimal(x) if i % 2 else x for i, x in enumerate(parts)), name


def _images(folder: Path, suffixes: tuple[str, ...] = IMAGE_SUFFIXES) -> list[Path]:
    """The files of ``folder`` with one of ``suffixes``, in frame order (:func:`frame_order`)."""
    files = [p for p in folder.iterdir() if p.suffix.lower() in suffixes]
    return sorted(files, key=lambda p: frame_order(p.name))


def _pair_flat(folder: Path) -> tuple[list[Path], list[Path], list[Path] | None]:
    """``<stem>_color.png`` + ``<stem>_depth.png`` (or ``.npy``) (+ ``<stem>_confidence.png``)
    in one folder."""
    roles: dict[str, dict[str, Path]] = {"color": {}, "depth": {}, "confidence": {}}
    pattern = re.compile(r"^(.*?)[_-]?(color|colour|rgb|depth|confidence)$", re.IGNORECASE)
    for p in _images(folder, DEPTH_SUFFIXES):
        m = pattern.match(p.stem)
        if m:
            role = {"colour": "color", "rgb": "color"}.get(m.group(2).lower(), m.group(2).lower())
            if p.suffix.lower() == ".npy" and role != "depth":
                continue  # only depth comes as an array
            stem = m.group(1)
            if role == "depth" and stem in roles["depth"]:
                raise PkmodelError(
                    f"{folder}: frame '{stem}' has two depth files, {roles['depth'][stem].name} "
                    f"and {p.name}"
                )
            roles[role][stem] = p
    stems = sorted(roles["color"], key=frame_order)
    missing = [s for s in stems if s not in roles["depth"]]
    if missing:
        raise PkmodelError(f"{folder}: colour image for '{missing[0]}' has no matching depth image")
    conf = (
        [roles["confidence"][s] for s in stems]
        if stems and all(s in roles["confidence"] for s in stems)
        else None
    )
    return [roles["color"][s] for s in stems], [roles["depth"][s] for s in stems], conf


def _pair_subfolders(folder: Path) -> tuple[list[Path], list[Path], list[Path] | None] | None:
    """``color/`` (or ``rgb/``) and ``depth/`` (and ``confidence/``) with matching file stems,
    or the same number of files paired in sorted order."""
    color_dir = next(
        (folder / n for n in ("color", "colour", "rgb") if (folder / n).is_dir()), None
    )
    if color_dir is None or not (folder / "depth").is_dir():
        return None
    color, depth = _images(color_dir), _images(folder / "depth", DEPTH_SUFFIXES)
    conf = _images(folder / "confidence") if (folder / "confidence").is_dir() else None
    if len(color) != len(depth):
        raise PkmodelError(f"{folder}: {len(color)} colour images but {len(depth)} depth images")
    if conf is not None and len(conf) != len(color):
        raise PkmodelError(f"{folder}: {len(conf)} confidence images for {len(color)} frames")
    return color, depth, conf


def _is_float_depth(path: Path) -> bool:
    """Whether a depth file holds floats (metres): a float ``.npy``; image files hold integer
    units. A ``.npy`` is checked from its header alone (memory-mapped, not read)."""
    if path.suffix.lower() != ".npy":
        return False
    array = load_npy(path, mmap=True)
    check_depth_array(path, array.dtype, array.shape)
    return array.dtype.kind == "f"


def _depth_unit(path: Path, meta: dict, depth: list[Path]) -> float:
    """Metres per stored depth value: 1 for float ``.npy`` depth (metres), else 1 /
    depth_scale_per_meter. One folder holds one kind, so one unit fits all its frames."""
    floats = [_is_float_depth(p) for p in depth]
    if any(floats) and not all(floats):
        f, i = depth[floats.index(True)], depth[floats.index(False)]
        raise PkmodelError(
            f"{path.parent}: the depth files mix float .npy ({f.name}) with 16-bit depth "
            f"({i.name}); one recording needs one kind"
        )
    key = next((k for k in ("depth_scale_per_meter", "depth_scale") if k in meta), None)
    scale = _number(meta, key, str(path), "scale") if key else None
    if all(floats):
        if scale is not None and scale != 1:
            raise PkmodelError(
                f"{path}: '{key}' is {meta[key]} but the depth files are float .npy, which hold "
                f"metres (the scale is for 16-bit depth): remove it"
            )
        return 1.0
    if scale is None:
        raise PkmodelError(
            f"{path} needs 'depth_scale_per_meter' (stored depth units per metre, e.g. 5000 for "
            f"TUM, 1000 for millimetres)"
        )
    return 1.0 / scale


def _intrinsics_object(path: Path, meta: dict, intrinsics_key: str) -> tuple[Any, str]:
    """The JSON object holding the intrinsics (the file itself or one named entry), and how
    error messages name it."""
    if all(k in meta for k in INTRINSICS_FIELDS):
        return meta, str(path)
    # named entries: objects with any of the fields (so an incomplete one is named, not missed)
    nested = {
        k: v
        for k, v in meta.items()
        if isinstance(v, dict) and any(f in v for f in INTRINSICS_FIELDS)
    }
    if intrinsics_key:
        if intrinsics_key not in meta:
            raise PkmodelError(
                f"{path} has no intrinsics named '{intrinsics_key}' (lift.intrinsics_key); "
                f"it has: {', '.join(sorted(nested)) or 'none'}"
            )
        name = intrinsics_key
    elif len(nested) == 1:
        name = next(iter(nested))
    elif nested:
        raise PkmodelError(
            f"{path} holds {len(nested)} intrinsics sets ({', '.join(sorted(nested))}); pick one "
            f"with --set lift.intrinsics_key=NAME"
        )
    else:
        return meta, str(path)  # names the first missing field
    return meta[name], f"{path}: intrinsics entry '{name}'"


_SECONDS = re.compile(r"\d+\.\d+")


def read_plain_folder(folder: Path, intrinsics_key: str = "", fps: float = 30.0) -> RgbdSequence:
    """A folder with ``intrinsics.json`` and colour images + depth (16-bit images, or float
    ``.npy`` in metres; registered to the colour image), either in ``color/`` + ``depth/``
    subfolders or as ``*_color.png`` + ``*_depth.png`` (``.npy``) pairs. Timestamps: numeric
    file names (TUM), else ``fps`` from the JSON, else the ``fps`` argument."""
    folder = Path(folder)
    path = folder / INTRINSICS_FILE
    meta = _load_json(path)
    if not isinstance(meta, dict):
        raise PkmodelError(f"{path} must hold a JSON object")
    pairs = _pair_subfolders(folder) or _pair_flat(folder)
    color, depth, conf = pairs
    if not color:
        raise PkmodelError(
            f"{folder} has no colour/depth pairs (expected color/ + depth/ folders or "
            f"*_color.png + *_depth.png (or .npy) files)"
        )
    # every number is checked here, before any frame is read
    unit = _depth_unit(path, meta, depth)
    rate = _number(meta, "fps", str(path), "positive") if "fps" in meta else float(fps)
    obj, where = _intrinsics_object(path, meta, intrinsics_key)
    import cv2

    first = cv2.imread(opencv_path(color[0]), cv2.IMREAD_UNCHANGED)
    if first is None:
        raise PkmodelError(f"colour image {color[0]} cannot be read")
    height, width = first.shape[:2]
    declared = tuple(
        _number(meta, k, str(path), "pixels") if k in meta else default
        for k, default in (("width", width), ("height", height))
    )
    intr = _intrinsics_from(obj, *declared, where)
    if (intr.width, intr.height) != (width, height):
        # Intrinsics of the camera's capture size (ARKit: 1920 x 1440) beside colour images
        # saved smaller: the same camera at the images' size, when the aspect ratio agrees.
        if abs(intr.width * height - intr.height * width) > 0.01 * intr.width * height:
            raise PkmodelError(
                f"{where}: the intrinsics are for {intr.width} x {intr.height} pixels but "
                f"{color[0].name} is {width} x {height}, another aspect ratio (a cropped image "
                f"needs its own intrinsics)"
            )
        intr = intr.scaled_to(width, height)

    # decimal seconds (TUM: 1305031102.175304.png) are timestamps; frame numbers are not
    heads = [p.stem.split("_")[0] for p in color]
    stamps = np.array([float(h) for h in heads]) if all(map(_SECONDS.fullmatch, heads)) else None
    if stamps is None or len(stamps) > 1 and (np.diff(stamps) <= 0).any():
        stamps = np.arange(len(color)) / rate
    check_timestamps(stamps, str(folder))
    return RgbdSequence(
        name=folder.name,
        color_files=color,
        depth_files=depth,
        timestamps=stamps,
        intrinsics=intr,
        depth_unit_m=unit,
        confidence_files=conf,
        source=folder,
    )
