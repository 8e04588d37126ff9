"""Writes the synthetic dataset (COCO splits + RGB-D sequences), in parallel, deterministic.

Every picture is a pure function of (seed, split, index): its random generator is seeded from
those three numbers alone, so the files do not depend on the number of worker processes or on
the order they finish in. Files are written atomically (temporary file + rename); each
annotation file is removed first and written last, so an interrupted run never leaves an
annotation file that disagrees with its images.
"""

from __future__ import annotations

import json
import re
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pkmodel.common.atomic import atomic_write_bytes, atomic_write_text
from pkmodel.common.errors import PkmodelError
from pkmodel.common.skeleton import coco_category
from pkmodel.config import SyntheticConfig
from pkmodel.data.synthetic.scene import (
    DEPTH_UNIT_M,
    VISIBILITY_TOLERANCE_M,
    Frame,
    SceneParams,
    sample_frame,
)

SPLITS: tuple[str, ...] = ("train", "val")
# Second number of each picture's seed: which stream it belongs to.
_STREAM = {"train": 1, "val": 2, "clip": 3, "clip_frame": 4, "sensor": 5}
DEPTH_SENSORS: tuple[str, ...] = ("exact", "lidar")
FORMAT_VERSION = 1
SPLIT_NAME = "{:012d}"  # COCO-style image file stem: the image id, 12 digits
FRAME_NAME = "{:06d}"  # frame index within a sequence
SEQUENCE_NAME = "seq_{:03d}"
MIN_SIZE, MAX_SIZE = 32, 4096
CONVENTIONS = {
    "camera_frame": "x right, y down, z forward, metres",
    "intrinsics": "OpenCV: the center of pixel (row i, column j) is at (j, i)",
    "keypoints": "COCO: pixel (row i, column j) covers [j, j+1) x [i, i+1); "
    "keypoint = (fx * X / Z + cx + 0.5, fy * Y / Z + cy + 0.5)",
    "depth": "uint16 PNG, Z (not ray length) in depth_unit_m, 0 = no surface",
    "confidence": "depth_sensor lidar: uint8 PNG of the depth map's size, 0 low, 1 medium, 2 high",
    "visibility": "2 if the depth at the keypoint's pixel lies in "
    "[Z - limb_radius_m - tol, Z + tol], else 1 inside the image, 0 outside",
    "visibility_tolerance_m": VISIBILITY_TOLERANCE_M,
    "world_to_camera": "X_cam = R X_world + t; world y up, floor y = 0",
}


_DEFAULTS = SyntheticConfig()


@dataclass(frozen=True)
class SyntheticSpec:
    """What to generate: the ``[synthetic]`` config section (defaults: the config's) plus the
    output folder."""

    out: Path
    num_train: int = _DEFAULTS.num_train
    num_val: int = _DEFAULTS.num_val
    width: int = _DEFAULTS.width
    height: int = _DEFAULTS.height
    seed: int = _DEFAULTS.seed
    sequences: int = _DEFAULTS.sequences
    frames: int = _DEFAULTS.frames
    fps: float = _DEFAULTS.fps
    second_person_prob: float = _DEFAULTS.second_person_prob
    max_depth_m: float = _DEFAULTS.max_depth_m
    jpeg_quality: int = _DEFAULTS.jpeg_quality
    workers: int = _DEFAULTS.workers
    depth_sensor: str = _DEFAULTS.depth_sensor
    depth_scale: float = _DEFAULTS.depth_scale
    depth_noise_m: float = _DEFAULTS.depth_noise_m

    @classmethod
    def from_config(cls, cfg: Any, out: Path | None = None) -> SyntheticSpec:
        """From a resolved ``Config``; ``out`` defaults to ``data.synthetic_dir``."""
        values = {f: getattr(cfg.synthetic, f) for f in cls.__dataclass_fields__ if f != "out"}
        return cls(out=Path(out if out is not None else cfg.data.synthetic_dir), **values)

    def check(self) -> None:
        """Raise PkmodelError naming the first value that cannot work."""
        from pkmodel.config.rules import at_least, check_rules, in_range, positive, probability

        size = f"must be {MIN_SIZE}-{MAX_SIZE}"
        check_rules(
            "synthetic",
            self,
            [
                at_least("num_train", 0),
                at_least("num_val", 0),
                in_range("width", MIN_SIZE, MAX_SIZE, size),
                in_range("height", MIN_SIZE, MAX_SIZE, size),
                at_least("seed", 0),
                at_least("sequences", 0),
                at_least("frames", 1),
                positive("fps", "must be > 0"),
                probability("second_person_prob"),
                ("max_depth_m", lambda v: 1.0 < v <= 65.0, "must be in (1, 65] metres"),
                in_range("jpeg_quality", 1, 100, "must be 1-100"),
                at_least("workers", 0, "must be >= 0 (0 = one per core)"),
                (
                    "depth_sensor",
                    lambda v: v in DEPTH_SENSORS,
                    f"must be one of {', '.join(DEPTH_SENSORS)}",
                ),
                in_range("depth_scale", 0.05, 1.0, "must be in [0.05, 1]"),
                in_range("depth_noise_m", 0.0, 0.5, "must be in [0, 0.5] metres"),
            ],
        )
        if self.num_train == self.num_val == self.sequences == 0:
            raise PkmodelError(
                "synthetic.num_train, num_val and sequences are all 0: nothing to generate"
            )
        if self.out.exists() and not self.out.is_dir():
            raise PkmodelError(f"output folder {self.out} exists and is not a folder")

    @property
    def scene(self) -> SceneParams:
        return SceneParams(self.width, self.height, self.second_person_prob, self.max_depth_m)


def parse_size(text: str) -> tuple[int, int]:
    """'256x192' -> (256, 192); anything else raises PkmodelError."""
    match = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", text or "")
    if not match:
        raise PkmodelError(f"--size '{text}' must look like WIDTHxHEIGHT, e.g. 256x256")
    width, height = int(match[1]), int(match[2])
    if not (MIN_SIZE <= width <= MAX_SIZE and MIN_SIZE <= height <= MAX_SIZE):
        raise PkmodelError(
            f"--size '{text}': width and height must be {MIN_SIZE}-{MAX_SIZE} pixels"
        )
    return width, height


def picture_rng(seed: int, stream: str, *index: int) -> np.random.Generator:
    """The random generator of one picture (or clip): a function of its identity alone."""
    return np.random.default_rng([seed, _STREAM[stream], *index])


# --- one picture -------------------------------------------------------------------------------


def _round(values: np.ndarray, decimals: int) -> list:
    return np.round(np.asarray(values, dtype=np.float64), decimals).tolist()


def _annotations(frame: Frame) -> list[dict]:
    """COCO annotation dicts (without ids) of a frame's people."""
    out = []
    for person in frame.people:
        kp = person.keypoints
        flat: list[float | int] = []
        for x, y, v in kp.tolist():
            flat += [x, y, int(v)] if v > 0 else [0, 0, 0]
        out.append(
            {
                "category_id": 1,
                "iscrowd": 0,
                "keypoints": flat,
                "num_keypoints": person.num_keypoints,
                "bbox": person.bbox,
                "area": float(person.area),
                "keypoints_3d": _round(person.keypoints_3d, 6),
                "limb_radius_m": _round(person.joint_radius, 4),
            }
        )
    return out


def _image_entry(frame: Frame, file_name: str, depth_file: str, conf_file: str | None) -> dict:
    k = frame.camera.intrinsics
    entry = {
        "file_name": file_name,
        "width": k.width,
        "height": k.height,
        "depth_file": depth_file,
        "depth_unit_m": DEPTH_UNIT_M,
        "intrinsics": {key: round(k.to_dict()[key], 6) for key in ("fx", "fy", "cx", "cy")},
        "world_to_camera": frame.camera.extrinsics(),
    }
    if conf_file is not None:
        entry["confidence_file"] = conf_file
    return entry


def _png(array: np.ndarray, name: str) -> bytes:
    import cv2

    ok, png = cv2.imencode(".png", array, [cv2.IMWRITE_PNG_COMPRESSION, 1])
    if not ok:  # pragma: no cover - OpenCV encoders do not fail on valid arrays
        raise RuntimeError(f"could not encode {name}")
    return png.tobytes()


def _write_frame(
    spec: SyntheticSpec,
    frame: Frame,
    root: Path,
    names: tuple[str, str, str],
    sensor_rng: np.random.Generator,
) -> str | None:
    """Write the colour, depth (and with the lidar sensor, confidence) files of ``frame`` at
    ``root / name`` for ``names`` = (rgb, depth, confidence); the confidence name written, or
    None."""
    import cv2

    rgb_name, depth_name, conf_name = names
    ok, jpg = cv2.imencode(
        ".jpg", cv2.cvtColor(frame.rgb, cv2.COLOR_RGB2BGR),
        [cv2.IMWRITE_JPEG_QUALITY, spec.jpeg_quality],
    )  # fmt: skip
    if not ok:  # pragma: no cover - OpenCV encoders do not fail on valid arrays
        raise RuntimeError(f"could not encode {rgb_name}")
    written = None
    depth = frame.depth_mm
    if spec.depth_sensor == "lidar":
        from pkmodel.data.synthetic.sensor import lidar_depth

        depth, conf = lidar_depth(depth, spec.depth_scale, spec.depth_noise_m, sensor_rng)
        atomic_write_bytes(root / conf_name, _png(conf, conf_name))
        written = conf_name
    atomic_write_bytes(root / rgb_name, jpg.tobytes())
    atomic_write_bytes(root / depth_name, _png(depth, depth_name))
    return written


def _split_task(spec: SyntheticSpec, split: str, index: int) -> tuple[dict, list[dict]]:
    frame = sample_frame(picture_rng(spec.seed, split, index), spec.scene)
    stem = SPLIT_NAME.format(index + 1)
    names = (f"{split}/{stem}.jpg", f"depth/{split}/{stem}.png", f"confidence/{split}/{stem}.png")
    sensor_rng = picture_rng(spec.seed, "sensor", _STREAM[split], index)
    conf = _write_frame(spec, frame, spec.out, names, sensor_rng)
    image = {"id": index + 1, **_image_entry(frame, f"{stem}.jpg", names[1], conf)}
    return image, _annotations(frame)


def _clip(spec: SyntheticSpec, clip: int):
    from pkmodel.data.synthetic.sequence import sample_clip

    return sample_clip(picture_rng(spec.seed, "clip", clip), spec.scene, spec.frames, spec.fps)


def _frame_task(spec: SyntheticSpec, clip: int, index: int) -> tuple[dict, list[dict]]:
    from pkmodel.data.synthetic.sequence import clip_frame

    frame = clip_frame(
        _clip(spec, clip), index, spec.fps, picture_rng(spec.seed, "clip_frame", clip, index),
        spec.max_depth_m,
    )  # fmt: skip
    folder = spec.out / "sequences" / SEQUENCE_NAME.format(clip)
    stem = FRAME_NAME.format(index)
    names = (f"rgb/{stem}.jpg", f"depth/{stem}.png", f"confidence/{stem}.png")
    sensor_rng = picture_rng(spec.seed, "sensor", _STREAM["clip"], clip, index)
    conf = _write_frame(spec, frame, folder, names, sensor_rng)
    image = {
        "id": index + 1,
        **_image_entry(frame, names[0], names[1], conf),
        "frame_index": index,
        "timestamp": round(index / spec.fps, 6),
    }
    anns = _annotations(frame)
    for ann in anns:
        ann["track_id"] = 0
    return image, anns


_SPEC: SyntheticSpec | None = None


def _init_worker(spec: SyntheticSpec) -> None:
    import cv2

    global _SPEC
    _SPEC = spec
    cv2.setNumThreads(1)  # one process per core already


def _run_task(task: tuple) -> tuple[tuple, dict, list[dict]]:
    assert _SPEC is not None
    if task[0] == "clip":
        return (task, *_frame_task(_SPEC, task[1], task[2]))
    return (task, *_split_task(_SPEC, task[0], task[1]))


# --- the whole dataset ------------------------------------------------------------------------


def _tasks(spec: SyntheticSpec) -> list[tuple]:
    tasks: list[tuple] = [("train", i) for i in range(spec.num_train)]
    tasks += [("val", i) for i in range(spec.num_val)]
    tasks += [("clip", c, i) for c in range(spec.sequences) for i in range(spec.frames)]
    return tasks


def _results(spec: SyntheticSpec, tasks: list[tuple], workers: int) -> Iterator[tuple]:
    global _SPEC
    if workers <= 1 or len(tasks) < 4:
        previous, _SPEC = _SPEC, spec
        try:
            yield from map(_run_task, tasks)
        finally:
            _SPEC = previous
        return
    import multiprocessing

    # spawn: a fresh interpreter per worker, safe whatever the parent has loaded (torch, ...).
    ctx = multiprocessing.get_context("spawn")
    chunk = max(1, min(16, len(tasks) // (workers * 8)))
    with ctx.Pool(workers, initializer=_init_worker, initargs=(spec,)) as pool:
        yield from pool.imap(_run_task, tasks, chunksize=chunk)


def _coco(images: list[dict], annotations: list[dict], info: dict) -> str:
    """COCO JSON text with one image / annotation per line (readable, diffable, compact)."""

    def block(items: list[dict]) -> str:
        if not items:
            return "[]"
        lines = [json.dumps(x, separators=(",", ":"), allow_nan=False) for x in items]
        return "[\n" + ",\n".join(lines) + "\n]"

    head = json.dumps(info, indent=1, allow_nan=False)
    return (
        f'{{"info": {head},\n"licenses": [],\n'
        f'"categories": {json.dumps([coco_category()])},\n'
        f'"images": {block(images)},\n"annotations": {block(annotations)}}}\n'
    )


def _remove_stale(folder: Path, pattern: str, keep: set[str]) -> None:
    """Delete files of ours (names matching ``pattern``) that this run did not write."""
    if folder.is_dir():
        for path in folder.iterdir():
            if re.fullmatch(pattern, path.name) and path.name not in keep:
                path.unlink()


@dataclass(frozen=True)
class Summary:
    """What a run wrote."""

    images: dict[str, int]  # split / sequence name -> images
    people: dict[str, int]  # split / sequence name -> annotations
    seconds: float
    workers: int


def default_workers() -> int:
    from pkmodel.common.runtime import usable_cores

    return usable_cores()


def generate(spec: SyntheticSpec, progress: bool = True) -> Summary:
    """Write the dataset described by ``spec`` under ``spec.out``."""
    from tqdm import tqdm

    spec.check()
    start = time.perf_counter()
    out = spec.out
    workers = spec.workers or default_workers()
    ann_dir = out / "annotations"
    for split in SPLITS:
        (ann_dir / f"person_keypoints_{split}.json").unlink(missing_ok=True)
    seq_root = out / "sequences"
    for clip in range(spec.sequences):
        (seq_root / SEQUENCE_NAME.format(clip) / "annotations.json").unlink(missing_ok=True)

    tasks = _tasks(spec)
    images: dict[str, list[dict]] = {}
    anns: dict[str, list[dict]] = {}
    motions: dict[str, str] = {}
    with tqdm(total=len(tasks), desc="make-synthetic", unit="img", disable=not progress) as bar:
        for task, image, people in _results(spec, tasks, workers):
            name = task[0] if task[0] != "clip" else SEQUENCE_NAME.format(task[1])
            ann_list = anns.setdefault(name, [])
            for person in people:
                ann_list.append({"id": len(ann_list) + 1, "image_id": image["id"], **person})
            images.setdefault(name, []).append(image)
            bar.update()

    base_info = {
        "description": "pkmodel synthetic RGB-D people",
        "format_version": FORMAT_VERSION,
        "generator": "pkmodel make-synthetic",
        "seed": spec.seed,
        "width": spec.width,
        "height": spec.height,
        "depth_unit_m": DEPTH_UNIT_M,
        "max_depth_m": spec.max_depth_m,
        "depth_sensor": spec.depth_sensor,
        **(
            {"depth_scale": spec.depth_scale, "depth_noise_m": spec.depth_noise_m}
            if spec.depth_sensor == "lidar"
            else {}
        ),
        "conventions": CONVENTIONS,
    }

    def conf_keep(names: set[str]) -> set[str]:  # exact depth has no confidence files
        return names if spec.depth_sensor == "lidar" else set()

    for split in SPLITS:
        count = spec.num_train if split == "train" else spec.num_val
        keep = {SPLIT_NAME.format(i + 1) for i in range(count)}
        _remove_stale(out / split, r"\d{12}\.jpg", {k + ".jpg" for k in keep})
        _remove_stale(out / "depth" / split, r"\d{12}\.png", {k + ".png" for k in keep})
        _remove_stale(
            out / "confidence" / split, r"\d{12}\.png", conf_keep({k + ".png" for k in keep})
        )
        text = _coco(images.get(split, []), anns.get(split, []), {**base_info, "split": split})
        atomic_write_text(ann_dir / f"person_keypoints_{split}.json", text)
    for clip in range(spec.sequences):
        name = SEQUENCE_NAME.format(clip)
        folder = seq_root / name
        frames = {FRAME_NAME.format(i) for i in range(spec.frames)}
        _remove_stale(folder / "rgb", r"\d{6}\.jpg", {f + ".jpg" for f in frames})
        _remove_stale(folder / "depth", r"\d{6}\.png", {f + ".png" for f in frames})
        _remove_stale(folder / "confidence", r"\d{6}\.png", conf_keep({f + ".png" for f in frames}))
        motions[name] = _clip(spec, clip).motion.kind
        info = {**base_info, "sequence": name, "fps": spec.fps, "num_frames": spec.frames,
                "motion": motions[name]}  # fmt: skip
        text = _coco(images.get(name, []), anns.get(name, []), info)
        atomic_write_text(folder / "annotations.json", text)
    if seq_root.is_dir():  # clips of an earlier, longer run
        for path in seq_root.iterdir():
            match = re.fullmatch(r"seq_(\d{3})", path.name)
            if match and int(match[1]) >= spec.sequences and path.is_dir():
                shutil.rmtree(path)
    return Summary(
        images={k: len(v) for k, v in images.items()},
        people={k: len(v) for k, v in anns.items()},
        seconds=time.perf_counter() - start,
        workers=workers,
    )
