"""Writes the synthetic dataset (COCO splits + RGB-D sequences), in parallel, deterministic.

Every picture is a pure function of (seed, split, index): its random generator is seeded from
those three numbers alone, so the files do not depend on the number of worker processes or on
the order they finish in. Files are written atomically (temporary file + rename); each
annotation file is removed first and written last, so an interrupted run never leaves an
annotation file that disagrees with its images. In the capture-app layouts
(``synthetic.layout`` stray or record3d) each clip is one recording written whole by
:mod:`pkmodel.data.synthetic.capture_layouts` from the same pixels and sensor draws.
"""

from __future__ import annotations

import json
import re
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pkmodel.common.atomic import atomic_write_bytes, atomic_write_text
from pkmodel.common.capture_formats import R3D_SUFFIX
from pkmodel.common.errors import PkmodelError
from pkmodel.common.pool import pool_results
from pkmodel.common.runtime import usable_cores
from pkmodel.common.skeleton import coco_category
from pkmodel.config import SyntheticConfig
from pkmodel.config.sections import SYNTHETIC_MAX_SIZE, SYNTHETIC_MIN_SIZE
from pkmodel.data.synthetic.capture_layouts import (
    ClipFrame,
    FrameInfo,
    R3dClipWriter,
    StrayClipWriter,
    check_layout,
    encode_frame,
)
from pkmodel.data.synthetic.scene import (
    DEPTH_UNIT_M,
    VISIBILITY_TOLERANCE_M,
    Frame,
    SceneParams,
    sample_frame,
)
from pkmodel.data.synthetic.sensor import lidar_depth
from pkmodel.data.synthetic.sequence import clip_frame, sample_clip

SPLITS: tuple[str, ...] = ("train", "val")
# Second number of each picture's seed: which stream it belongs to.
_STREAM = {"train": 1, "val": 2, "clip": 3, "clip_frame": 4, "sensor": 5}
FORMAT_VERSION = 1
SPLIT_NAME = "{:012d}"  # COCO-style image file stem: the image id, 12 digits
FRAME_NAME = "{:06d}"  # frame index within a sequence
SEQUENCE_NAME = "seq_{:03d}"
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


def scene_params(spec: SyntheticConfig) -> SceneParams:
    """The scene settings of the ``[synthetic]`` section."""
    return SceneParams(spec.width, spec.height, spec.second_person_prob, spec.max_depth_m)


def parse_size(text: str) -> tuple[int, int]:
    """'256x192' -> (256, 192); anything else raises PkmodelError."""
    match = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", text or "")
    if not match:
        raise PkmodelError(f"--size '{text}' must look like WIDTHxHEIGHT, e.g. 256x256")
    width, height = int(match[1]), int(match[2])
    low, high = SYNTHETIC_MIN_SIZE, SYNTHETIC_MAX_SIZE
    if not (low <= width <= high and low <= height <= high):
        raise PkmodelError(f"--size '{text}': width and height must be {low}-{high} pixels")
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


def _encode_frame(
    spec: SyntheticConfig, frame: Frame, sensor_rng: np.random.Generator
) -> tuple[bytes, np.ndarray, np.ndarray | None]:
    """The colour JPEG, the depth (uint16 mm; with the lidar sensor its lower-resolution
    measurement) and the lidar's confidence (else None) of ``frame``."""
    import cv2

    ok, jpg = cv2.imencode(
        ".jpg", cv2.cvtColor(frame.rgb, cv2.COLOR_RGB2BGR),
        [cv2.IMWRITE_JPEG_QUALITY, spec.jpeg_quality],
    )  # fmt: skip
    if not ok:  # pragma: no cover - OpenCV encoders do not fail on valid arrays
        raise RuntimeError("could not encode a JPEG")
    if spec.depth_sensor == "lidar":
        depth, conf = lidar_depth(frame.depth_mm, spec.depth_scale, spec.depth_noise_m, sensor_rng)
        return jpg.tobytes(), depth, conf
    return jpg.tobytes(), frame.depth_mm, None


def _write_frame(
    spec: SyntheticConfig,
    frame: Frame,
    root: Path,
    names: tuple[str, str, str],
    sensor_rng: np.random.Generator,
) -> str | None:
    """Write the colour, depth (and with the lidar sensor, confidence) files of ``frame`` at
    ``root / name`` for ``names`` = (rgb, depth, confidence); the confidence name written, or
    None."""
    rgb_name, depth_name, conf_name = names
    jpg, depth, conf = _encode_frame(spec, frame, sensor_rng)
    written = None
    if conf is not None:
        atomic_write_bytes(root / conf_name, _png(conf, conf_name))
        written = conf_name
    atomic_write_bytes(root / rgb_name, jpg)
    atomic_write_bytes(root / depth_name, _png(depth, depth_name))
    return written


def _split_task(
    spec: SyntheticConfig, out: Path, split: str, index: int
) -> tuple[dict, list[dict]]:
    frame = sample_frame(picture_rng(spec.seed, split, index), scene_params(spec))
    stem = SPLIT_NAME.format(index + 1)
    names = (f"{split}/{stem}.jpg", f"depth/{split}/{stem}.png", f"confidence/{split}/{stem}.png")
    sensor_rng = picture_rng(spec.seed, "sensor", _STREAM[split], index)
    conf = _write_frame(spec, frame, out, names, sensor_rng)
    image = {"id": index + 1, **_image_entry(frame, f"{stem}.jpg", names[1], conf)}
    return image, _annotations(frame)


def _clip(spec: SyntheticConfig, clip: int):

    rng = picture_rng(spec.seed, "clip", clip)
    return sample_clip(rng, scene_params(spec), spec.frames, spec.fps)


def _frame_task(
    spec: SyntheticConfig, out: Path, clip: int, index: int
) -> tuple[dict, list[dict], ClipFrame | None]:
    """Frame ``index`` of clip ``clip``: its image entry, annotations and, in the app layouts,
    its encoded pixels for the clip's writer (the pkmodel layout writes its files here)."""
    frame = clip_frame(
        _clip(spec, clip), index, spec.fps, picture_rng(spec.seed, "clip_frame", clip, index),
        spec.max_depth_m,
    )  # fmt: skip
    folder = out / "sequences" / SEQUENCE_NAME.format(clip)
    stem = FRAME_NAME.format(index)
    names = (f"rgb/{stem}.jpg", f"depth/{stem}.png", f"confidence/{stem}.png")
    sensor_rng = picture_rng(spec.seed, "sensor", _STREAM["clip"], clip, index)
    pixels = None
    if spec.layout == "pkmodel":
        conf = _write_frame(spec, frame, folder, names, sensor_rng)
    else:  # the same pixels and sensor draws as the pkmodel layout, encoded for the app
        jpg, depth, confidence = _encode_frame(spec, frame, sensor_rng)
        pixels = encode_frame(spec.layout, frame.rgb, jpg, depth, confidence)
        conf = None if confidence is None else names[2]
    image = {
        "id": index + 1,
        **_image_entry(frame, names[0], names[1], conf),
        "frame_index": index,
        "timestamp": round(index / spec.fps, 6),
    }
    anns = _annotations(frame)
    for ann in anns:
        ann["track_id"] = 0
    return image, anns, pixels


# The settings and output folder of the run, in each worker process (set by _init_worker).
_JOB: tuple[SyntheticConfig, Path] | None = None


def _init_worker(spec: SyntheticConfig, out: Path) -> None:
    import cv2

    global _JOB
    _JOB = (spec, out)
    cv2.setNumThreads(1)  # one process per core already


def _run_task(task: tuple) -> tuple[tuple, dict, list[dict], ClipFrame | None]:
    assert _JOB is not None
    if task[0] == "clip":
        return (task, *_frame_task(*_JOB, task[1], task[2]))
    return (task, *_split_task(*_JOB, task[0], task[1]), None)


# --- the whole dataset ------------------------------------------------------------------------


def _tasks(spec: SyntheticConfig) -> list[tuple]:
    tasks: list[tuple] = [("train", i) for i in range(spec.num_train)]
    tasks += [("val", i) for i in range(spec.num_val)]
    tasks += [("clip", c, i) for c in range(spec.sequences) for i in range(spec.frames)]
    return tasks


def _results(spec: SyntheticConfig, out: Path, tasks: list[tuple], workers: int) -> Iterator[tuple]:
    global _JOB
    if workers <= 1 or len(tasks) < 4:
        previous, _JOB = _JOB, (spec, out)
        try:
            yield from map(_run_task, tasks)
        finally:
            _JOB = previous
        return

    chunk = max(1, min(16, len(tasks) // (workers * 8)))
    yield from pool_results(_run_task, tasks, workers, chunk, initializer=_init_worker,
                            initargs=(spec, out))  # fmt: skip


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


def _label(people: list[dict]) -> dict | None:
    """The ground truth of a clip frame: the largest person's labels, as pkmodel's reader picks
    them from annotations.json (None when nobody is in view)."""
    if not people:
        return None
    ann = max(people, key=lambda a: float(a.get("area", 0.0)))
    return {key: ann[key] for key in ("keypoints", "keypoints_3d", "limb_radius_m")}


class _AppClips:
    """The clips of an app layout being written: one writer per clip, fed in frame order (the
    tasks run clip by clip and results come back in task order), finished at its last frame."""

    def __init__(self, spec: SyntheticConfig, seq_root: Path):
        self.spec = spec
        self.seq_root = seq_root
        self.open: dict[int, StrayClipWriter | R3dClipWriter] = {}

    def add(self, clip: int, image: dict, people: list[dict], pixels: ClipFrame) -> None:
        spec, name = self.spec, SEQUENCE_NAME.format(clip)
        writer = self.open.get(clip)
        if writer is None:
            if spec.layout == "stray":
                writer = StrayClipWriter(self.seq_root / name, spec.width, spec.height, spec.fps)
            else:
                path = self.seq_root / f"{name}{R3D_SUFFIX}"
                writer = R3dClipWriter(path, spec.width, spec.height, spec.fps)
            self.open[clip] = writer
        info = FrameInfo(image["timestamp"], image["intrinsics"], image["world_to_camera"],
                         _label(people))  # fmt: skip
        writer.add(pixels, info)
        if image["frame_index"] == spec.frames - 1:
            writer.finish()
            del self.open[clip]  # after finishing: a failed finish is aborted with the rest

    def abort(self) -> None:
        for writer in self.open.values():
            writer.abort()
        self.open.clear()


@dataclass(frozen=True)
class Summary:
    """What a run wrote."""

    images: dict[str, int]  # split / sequence name -> images
    people: dict[str, int]  # split / sequence name -> annotations
    seconds: float
    workers: int


def default_workers() -> int:

    return usable_cores()


# The folders of OUT that make-synthetic writes; a run writes them into STAGING_DIR first and
# moves them into OUT (an earlier run's aside, then deleted) once all of them are complete.
OWNED_DIRS = ("annotations", *SPLITS, "depth", "confidence", "sequences")
STAGING_DIR = ".make-synthetic.partial"
REPLACED_DIR = ".make-synthetic.replaced"


def generate(spec: SyntheticConfig, out: Path, progress: bool = True) -> Summary:
    """Write the dataset described by the ``[synthetic]`` section ``spec`` under ``out``.

    The run writes into ``out/.make-synthetic.partial`` and moves its folders (OWNED_DIRS)
    into ``out`` when everything is written, so an earlier dataset in ``out`` stays whole until
    then, however the run stops (Ctrl-C, an error, a kill)."""
    spec.check()
    check_layout(spec.layout, spec.width, spec.height)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise PkmodelError(f"output folder {out} exists and is not a folder")
    stage, replaced = out / STAGING_DIR, out / REPLACED_DIR
    if stage.is_dir():  # what a killed run left
        shutil.rmtree(stage)
    if replaced.is_dir():
        _restore(replaced, out)
    try:
        stage.mkdir(parents=True)
    except OSError as e:
        raise PkmodelError(f"cannot create the output folder {stage} ({e})") from None
    try:
        summary = _generate(spec, stage, progress)
        _swap_in(stage, out, replaced)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return summary


def _swap_in(stage: Path, out: Path, replaced: Path) -> None:
    """Move the complete run's folders from ``stage`` into ``out``: the earlier run's aside into
    ``replaced`` first, deleted once every new folder is in place."""
    replaced.mkdir()
    for name in OWNED_DIRS:
        if (out / name).exists():
            (out / name).rename(replaced / name)
    for name in OWNED_DIRS:
        if (stage / name).exists():
            (stage / name).rename(out / name)
    shutil.rmtree(replaced)


def _restore(replaced: Path, out: Path) -> None:
    """A run killed while it swapped its folders in: the earlier run's folders that are not
    replaced yet go back (a folder already replaced stays the new run's)."""
    for path in replaced.iterdir():
        if not (out / path.name).exists():
            path.rename(out / path.name)
    shutil.rmtree(replaced)


def _generate(spec: SyntheticConfig, out: Path, progress: bool) -> Summary:
    """Write the dataset into the empty folder ``out``."""
    from tqdm import tqdm

    start = time.perf_counter()
    workers = spec.workers or default_workers()
    ann_dir = out / "annotations"
    seq_root = out / "sequences"

    tasks = _tasks(spec)
    images: dict[str, list[dict]] = {}
    anns: dict[str, list[dict]] = {}
    motions: dict[str, str] = {}
    clips = _AppClips(spec, seq_root)
    try:
        with tqdm(total=len(tasks), desc="make-synthetic", unit="img", disable=not progress) as bar:
            for task, image, people, pixels in _results(spec, out, tasks, workers):
                name = task[0] if task[0] != "clip" else SEQUENCE_NAME.format(task[1])
                ann_list = anns.setdefault(name, [])
                for person in people:
                    ann_list.append({"id": len(ann_list) + 1, "image_id": image["id"], **person})
                images.setdefault(name, []).append(image)
                if pixels is not None:
                    clips.add(task[1], image, people, pixels)
                bar.update()
    except BaseException:
        clips.abort()
        raise

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

    for split in SPLITS:
        text = _coco(images.get(split, []), anns.get(split, []), {**base_info, "split": split})
        atomic_write_text(ann_dir / f"person_keypoints_{split}.json", text)
    for clip in range(spec.sequences if spec.layout == "pkmodel" else 0):
        name = SEQUENCE_NAME.format(clip)
        folder = seq_root / name
        motions[name] = _clip(spec, clip).motion.kind
        info = {**base_info, "sequence": name, "fps": spec.fps, "num_frames": spec.frames,
                "motion": motions[name]}  # fmt: skip
        text = _coco(images.get(name, []), anns.get(name, []), info)
        atomic_write_text(folder / "annotations.json", text)
    return Summary(
        images={k: len(v) for k, v in images.items()},
        people={k: len(v) for k, v in anns.items()},
        seconds=time.perf_counter() - start,
        workers=workers,
    )
