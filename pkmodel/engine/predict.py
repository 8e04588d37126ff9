"""Inference on whole images, folders and videos: letterbox, run, decode, map back, draw.

The single-person network sees the whole frame letterboxed to its input size. Weights are a
pkmodel checkpoint (PyTorch, on any device), an exported ``.onnx`` file (ONNX Runtime, CPU) or a
Core ML model (pkmodel's Core ML runner, CPU); all go through the same batched decoder. Keypoints are reported in original image pixels with
each joint's score and ``found`` flag (score >= decoder.score_threshold); joints that are not
found keep their argmax position and are not drawn.
"""

from __future__ import annotations

import functools
import json
import os
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pkmodel.common.atomic import (
    atomic_write_text,
    check_writable,
    default_file_mode,
    listed_outputs,
    remove_replaced,
)
from pkmodel.common.draw import draw_center, draw_skeleton, save_image
from pkmodel.common.errors import PkmodelError
from pkmodel.common.geometry import (
    QUARTER_TURNS,
    crop_to_image,
    joint_boxes,
    letterbox_image,
    pixel_crop_box,
    turn_image,
    unturn_points,
)
from pkmodel.common.images import IMAGE_SUFFIXES, VIDEO_SUFFIXES, crop_square, opencv_path, read_rgb
from pkmodel.common.skeleton import JOINT_NAMES
from pkmodel.engine.networks import Network, load_network
from pkmodel.model.decode import DecodeSettings, decode_poses

PREDICTIONS_SCHEMA = "pkmodel.predictions"
# The person box around a pose's found joints grows by this x its longer side on every side
# (joints lie inside the body) before the crop is cut: pseudo_label.box_margin's default.
REFINE_MARGIN = 0.1
# --rotate auto (and lift.rotate = "auto" without camera poses): the frames the network looks at
# under each quarter turn, and how many more joints a turn must find than the frames as read
AUTO_TURN_FRAMES = 8
AUTO_TURN_GAIN = 1.25
# predict's vote counts the joints scoring at least this (the score the rule was measured at,
# lift.min_score's default; decoder.score_threshold, 0.2, counts a lying person's joints too)
AUTO_TURN_MIN_SCORE = 0.3
ROTATE_CHOICES = ("auto", "0", "90", "180", "270")


# --------------------------------------------------------------------------------------------
# Runners: one batch of normalised inputs in, decoded poses (input pixels) out


class TorchRunner:
    """A loaded network (checkpoint, ONNX or Core ML; see engine.networks) and the decoder,
    decoding on the network's device."""

    def __init__(self, network: Network, cfg: Any) -> None:
        network.configure(cfg)  # crops and letterboxes at the network's input size
        self.network = network
        self.cfg = cfg
        self.device = network.device
        self.model = network.module
        self.input_size = int(network.input_size)

    def __call__(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        import torch

        with torch.inference_mode():
            x = torch.from_numpy(batch).to(self.device)
            outputs = tuple(o.float() for o in self.model(x))
            grid = outputs[0].shape[-1]
            return decode_poses(
                outputs, DecodeSettings.for_grid(self.cfg.decoder, self.input_size, grid)
            )


def load_runner(weights: str | Path, cfg: Any, device: Any = "cpu") -> TorchRunner:
    """A checkpoint on ``device``, or an ``.onnx`` / Core ML export on the CPU."""

    cfg.decoder.check()
    return TorchRunner(load_network(weights, device), cfg)


# --------------------------------------------------------------------------------------------
# Frames -> poses


@dataclass
class Pose:
    """One frame's pose in original image pixels."""

    keypoints: np.ndarray  # (K, 2)
    scores: np.ndarray  # (K,)
    found: np.ndarray  # (K,) bool
    center: np.ndarray  # (2,) decoded person center
    center_score: float

    def to_json(self) -> dict[str, Any]:
        return {
            "keypoints": np.round(self.keypoints, 2).tolist(),
            "scores": np.round(self.scores, 4).tolist(),
            "found": self.found.astype(bool).tolist(),
            "center": np.round(self.center, 2).tolist(),
            "center_score": round(float(self.center_score), 4),
        }


def normalise(images: np.ndarray) -> np.ndarray:
    """uint8 N x S x S x 3 RGB -> float32 N x 3 x S x S, x / 127.5 - 1 (the network's input)."""
    return images.astype(np.float32).transpose(0, 3, 1, 2) / np.float32(127.5) - np.float32(1.0)


def predict_frames(runner: Any, frames: Sequence[np.ndarray]) -> list[Pose]:
    """Letterbox each HxWx3 uint8 RGB frame (whole frame), run one batch, map back to pixels."""

    boxed = [letterbox_image(f, runner.input_size) for f in frames]
    out = runner(normalise(np.stack([b[0] for b in boxed])))
    return _poses(out, [lb.to_image for _, lb in boxed], _app_bounds(runner, frames))


def _app_bounds(runner: Any, frames: Sequence[np.ndarray]) -> list[tuple[int, int]] | None:
    """Each frame's (width, height) where the runner decodes as the PoseKit app does (which
    clamps every point to the frame, [0, 1] of its size); None otherwise."""
    decoder = getattr(getattr(runner, "cfg", None), "decoder", None)
    if getattr(decoder, "style", None) != "posekit-app":
        return None
    return [(f.shape[1], f.shape[0]) for f in frames]


def _poses(
    out: dict[str, np.ndarray],
    to_image: Sequence[Any],
    bounds: Sequence[tuple[int, int]] | None = None,
) -> list[Pose]:
    """A runner's decoded batch as Poses, input pixels mapped by each frame's ``to_image``;
    with ``bounds`` (each frame's width, height), points clamped to the frame as the app does."""

    def back(i: int, points: np.ndarray) -> np.ndarray:
        xy = to_image[i](points)
        return xy if bounds is None else np.clip(xy, 0.0, np.asarray(bounds[i], np.float64))

    return [
        Pose(
            keypoints=back(i, out["keypoints"][i]),
            scores=np.asarray(out["scores"][i], np.float64),
            found=np.asarray(out["found"][i], bool),
            center=back(i, out["centers"][i]),
            center_score=float(out["center_scores"][i]),
        )
        for i in range(len(to_image))
    ]


def predict_boxes(runner: Any, frames: Sequence[np.ndarray], boxes: Sequence[Sequence[int]]) -> list[Pose]:  # fmt: skip
    """Run one batch on square crops: box ``[x0, y0, side]`` (whole pixels, zeros outside the
    frame) of each frame, resized to the input as prepare-coco crops people; image pixels out."""

    size = runner.input_size
    batch = normalise(np.stack([crop_square(f, list(b), size) for f, b in zip(frames, boxes, strict=True)]))  # fmt: skip
    return _poses(runner(batch), [functools.partial(crop_to_image, crop_box=b, crop_size=size) for b in boxes], _app_bounds(runner, frames))  # fmt: skip


def pose_crop_box(
    pose: Pose, width: int, height: int, margin: float, expand_ratio: float, min_joints: int = 4
) -> list[int] | None:
    """The square crop around a pose that prepare-coco would cut around the person, or None.

    The person box is the box of the found joints on the image, grown by ``margin`` x its
    longer side on every side (joints sit inside the body); the crop is that box's square
    grown by ``expand_ratio`` (prepare.expand_ratio), in whole pixels. None when fewer than
    ``min_joints`` joints qualify: too little to place a crop on.
    """

    kp = np.asarray(pose.keypoints, np.float64)
    ok = np.asarray(pose.found, bool) & (kp >= 0).all(1) & (kp < [width, height]).all(1)
    if ok.sum() < max(min_joints, 2):
        return None
    return pixel_crop_box(joint_boxes(kp[None], ok[None], margin)[0], expand_ratio)


def predict_frames_refined(
    runner: Any, frames: Sequence[np.ndarray], passes: int, margin: float, expand_ratio: float
) -> list[Pose]:
    """predict_frames, then ``passes`` more runs on a crop around each pose found (pose_crop_box).

    The whole frame shrinks a person below the size the network was trained on (prepare-coco's
    crops); a second look at the crop around the first guess sees the person at training size.
    A frame whose pose has too few found joints for a box keeps its previous pose.
    """
    poses = predict_frames(runner, frames)
    for _ in range(passes):
        boxes = [
            pose_crop_box(p, f.shape[1], f.shape[0], margin, expand_ratio)
            for p, f in zip(poses, frames, strict=True)
        ]
        todo = [i for i, b in enumerate(boxes) if b is not None]
        if not todo:
            break
        again = predict_boxes(runner, [frames[i] for i in todo], [boxes[i] for i in todo])
        for i, pose in zip(todo, again, strict=True):
            poses[i] = pose
    return poses


def upright_turn(found: Mapping[int, int], mean: Mapping[int, float], images: int) -> int:
    """The clockwise turn (degrees) that stands a person upright, from the joints a network
    found in ``images`` frames under each quarter turn (``found``) and their mean score
    (``mean``): the turn with the most joints, but only when it finds AUTO_TURN_GAIN times the
    joints of the frames as they are, at least one more per frame, and scores higher on
    average. A network sees an upside-down person nearly as surely as an upright one, and a
    wrong turn would spoil every frame of an input that was upright already, so 0 otherwise."""
    best = max(QUARTER_TURNS, key=lambda turn: (found[turn], mean[turn], turn == 0))
    convincing = (
        found[best] >= AUTO_TURN_GAIN * found[0]
        and found[best] - found[0] >= images
        and mean[best] > mean[0]
    )
    return best if convincing else 0


def unturn_pose(pose: Pose, degrees: int, width: int, height: int) -> Pose:
    """A pose found in a frame turned clockwise by ``degrees``, in the ``width`` x ``height``
    frame's own pixels."""
    return Pose(
        keypoints=unturn_points(pose.keypoints, degrees, width, height),
        scores=pose.scores,
        found=pose.found,
        center=unturn_points(pose.center, degrees, width, height),
        center_score=pose.center_score,
    )


def turned(predict: Any, degrees: int) -> Any:
    """``predict(frames) -> [Pose]`` with the network seeing each frame turned clockwise by
    ``degrees``; the poses come back in the frames' own pixels."""
    if degrees == 0:
        return predict

    def run(frames: Sequence[np.ndarray]) -> list[Pose]:
        poses = predict([turn_image(f, degrees) for f in frames])
        return [
            unturn_pose(p, degrees, f.shape[1], f.shape[0])
            for p, f in zip(poses, frames, strict=True)
        ]

    return run


def spread_indices(count: int) -> list[int]:
    """AUTO_TURN_FRAMES indices spread evenly over ``count`` items (all of them when fewer):
    the frames an "auto" turn is chosen from."""
    picks = np.linspace(0, count - 1, min(AUTO_TURN_FRAMES, count)).round()
    return [int(i) for i in np.unique(picks)]


def vote_turn(
    count: Callable[[int], tuple[int, float]], images: int
) -> tuple[int, dict[int, dict[str, float]]]:
    """The turn :func:`upright_turn` picks, from ``count(degrees) -> (joints found, mean
    score)`` of ``images`` frames seen under each quarter turn, and per turn what was counted
    (``joints``, ``mean_score``)."""
    found, mean = {}, {}
    for degrees in QUARTER_TURNS:
        found[degrees], mean[degrees] = count(degrees)
    seen = {t: {"joints": found[t], "mean_score": round(mean[t], 4)} for t in QUARTER_TURNS}
    return upright_turn(found, mean, images), seen


def turn_votes(
    runner: Any, frames: Sequence[np.ndarray]
) -> tuple[int, dict[int, dict[str, float]]]:
    """--rotate auto: :func:`vote_turn` for ``frames``, counting the joints found with a score
    of at least AUTO_TURN_MIN_SCORE."""

    def count(degrees: int) -> tuple[int, float]:
        poses = predict_frames(runner, [turn_image(f, degrees) for f in frames])
        found = sum(int((p.found & (p.scores >= AUTO_TURN_MIN_SCORE)).sum()) for p in poses)
        return found, float(np.mean([p.scores for p in poses]))

    return vote_turn(count, len(frames))


def rotate_degrees(rotate: str | int) -> int | None:
    """--rotate's value as degrees, None for auto; anything else is a PkmodelError."""
    text = str(rotate).strip().lower()
    if text not in ROTATE_CHOICES:
        raise PkmodelError(
            f"--rotate must be {', '.join(ROTATE_CHOICES[:-1])} or {ROTATE_CHOICES[-1]} "
            f"(degrees clockwise), not {rotate!r}"
        )
    return None if text == "auto" else int(text)


def draw_pose(frame: np.ndarray, pose: Pose) -> np.ndarray:
    """A copy of the frame with the found joints, their limbs and the person center."""

    picture = np.ascontiguousarray(frame.copy())
    draw_skeleton(picture, pose.keypoints, visible=pose.found)
    draw_center(picture, pose.center)
    return picture


# --------------------------------------------------------------------------------------------
# Inputs and outputs


@dataclass
class PredictSummary:
    """What `pkmodel predict` did."""

    kind: str  # "image", "folder" or "video"
    frames: int
    keypoints_json: Path
    overlays: list[Path] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # one sentence each
    rotate_deg: int = 0  # the clockwise turn the network saw the frames with


def input_kind(path: Path) -> str:
    """'folder', 'video' or 'image' by what the path is; anything else is a PkmodelError."""
    if path.is_dir():
        return "folder"
    if not path.exists():
        raise PkmodelError(f"input {path} does not exist")
    suffix = path.suffix.lower()
    if suffix in VIDEO_SUFFIXES:
        return "video"
    if suffix in IMAGE_SUFFIXES:
        return "image"
    raise PkmodelError(
        f"input {path} is neither an image ({', '.join(sorted(IMAGE_SUFFIXES))}), a video "
        f"({', '.join(sorted(VIDEO_SUFFIXES))}) nor a folder"
    )


def _header(runner: Any, weights: Path, kind: str, source: Path) -> dict[str, Any]:
    return {
        "schema": PREDICTIONS_SCHEMA,
        "version": 1,
        "weights": str(weights),
        "input": str(source),
        "kind": kind,
        "input_size": runner.input_size,
        "score_threshold": runner.cfg.decoder.score_threshold,
        "joint_names": list(JOINT_NAMES),
        "coordinates": "original image pixels, pixel centers at integer + 0.5",
    }


def write_predictions(path: Path, header: dict[str, Any], items: list[dict[str, Any]]) -> None:
    """keypoints.json: the header, then ``items`` with one frame per line (atomic, strict JSON)."""

    head = json.dumps(header, indent=2, allow_nan=False)[:-2]  # without the closing "\n}"
    lines = ",\n".join("    " + json.dumps(item, allow_nan=False) for item in items)
    atomic_write_text(path, f'{head},\n  "items": [\n{lines}\n  ]\n}}\n')


def _overlay_names(paths: Sequence[Path]) -> list[str]:
    """<stem>_pose.jpg, with the suffix kept where two inputs share a stem."""
    from collections import Counter

    stems = Counter(p.stem for p in paths)  # a count per path was quadratic in the folder
    return [f"{p.stem}{'_' + p.suffix[1:] if stems[p.stem] > 1 else ''}_pose.jpg" for p in paths]


def _batches(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def predict_images(
    predict: Any,
    paths: Sequence[Path],
    out_dir: Path,
    batch_size: int,
    header: dict[str, Any],
    progress: bool = False,
    strict: bool = True,
) -> PredictSummary:
    """Poses of image files (``predict(frames) -> [Pose]``): OUT/keypoints.json and
    OUT/<stem>_pose.jpg per image.

    ``strict``: an unreadable image is a PkmodelError; otherwise it is skipped and listed.
    """
    from tqdm import tqdm

    names = _overlay_names(paths)
    items, overlays, skipped = [], [], []
    # closed on an error too, so that an error message starts on a line of its own
    with tqdm(total=len(paths), unit="img", desc="predict", disable=not progress) as bar:
        for chunk in _batches(list(zip(paths, names, strict=True)), batch_size):
            frames, kept = [], []
            for path, name in chunk:
                try:
                    frames.append(read_rgb(path, shown=True))  # as a video's frames
                    kept.append((path, name))
                except ValueError as e:
                    if strict:
                        raise PkmodelError(f"image {path} cannot be loaded ({e})") from None
                    skipped.append({"file": str(path), "reason": str(e)})
            if frames:
                for (path, name), frame, pose in zip(kept, frames, predict(frames), strict=True):
                    out = out_dir / name
                    save_image(out, draw_pose(frame, pose))
                    overlays.append(out)
                    item = {"file": str(path), "width": frame.shape[1], "height": frame.shape[0]}
                    items.append({**item, **pose.to_json(), "overlay": name})
            bar.update(len(chunk))
    if not items:
        raise PkmodelError(
            f"none of the {len(paths)} image(s) in {header['input']} could be loaded"
        )
    json_path = out_dir / "keypoints.json"
    write_predictions(json_path, {**header, "skipped": skipped}, items)
    return PredictSummary(header["kind"], len(items), json_path, overlays, skipped)


def predict_video(
    predict: Any,
    path: Path,
    out_dir: Path,
    batch_size: int,
    header: dict[str, Any],
    progress: bool = False,
) -> PredictSummary:
    """Poses of every frame (``predict(frames) -> [Pose]``): OUT/keypoints.json (frame, time)
    and OUT/<stem>_pose.mp4 (mp4v).

    The video is written to a temporary file beside the target and renamed when complete.
    """

    import cv2
    from tqdm import tqdm

    cap = cv2.VideoCapture(opencv_path(path))
    if not cap.isOpened():
        raise PkmodelError(f"video {path} cannot be opened (not a video OpenCV can read)")
    fps = cap.get(cv2.CAP_PROP_FPS) or 30.0
    total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) or None
    out_path = out_dir / f"{path.stem}_pose.mp4"
    fd, tmp = tempfile.mkstemp(prefix=f".{out_path.stem}.", suffix=".mp4", dir=out_dir)
    os.fchmod(fd, default_file_mode())  # mkstemp's 0600: the video gets a new file's mode
    os.close(fd)
    writer = None
    w = h = 0
    items: list[dict[str, Any]] = []
    bar = tqdm(total=total, unit="frame", desc="predict", disable=not progress)
    try:
        done = False
        while not done:
            frames = []
            while len(frames) < batch_size:
                ok, bgr = cap.read()
                if not ok:
                    done = True
                    break
                frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
            if not frames:
                break
            if writer is None:
                h, w = frames[0].shape[:2]
                writer = cv2.VideoWriter(
                    opencv_path(tmp), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h)
                )
                if not writer.isOpened():
                    raise PkmodelError(f"cannot write the overlay video {out_path} (mp4v codec)")
            for frame, pose in zip(frames, predict(frames), strict=True):
                writer.write(cv2.cvtColor(draw_pose(frame, pose), cv2.COLOR_RGB2BGR))
                n = len(items)
                items.append({"frame": n, "time_s": round(n / fps, 6), **pose.to_json()})
            bar.update(len(frames))
        if writer is None:
            raise PkmodelError(f"video {path} has no frame that OpenCV can decode")
        writer.release()
        writer = None
        os.replace(tmp, out_path)
    finally:
        bar.close()
        cap.release()
        if writer is not None:
            writer.release()
        if os.path.exists(tmp):
            os.unlink(tmp)
    json_path = out_dir / "keypoints.json"
    meta = {"fps": fps, "width": w, "height": h, "overlay": out_path.name}
    warnings = []
    if total is not None:
        meta["frame_count"] = total  # what the container claims
        if short_video(total, len(items)):
            warnings.append(
                f"video {path}: its container gives {total} frames but only the first "
                f"{len(items)} decode (the file is cut short or damaged)"
            )
    write_predictions(json_path, {**header, **meta}, items)
    return PredictSummary("video", len(items), json_path, [out_path], warnings=warnings)


def short_video(claimed: int, decoded: int) -> bool:
    """Whether a video decoded fewer frames than its container ``claimed`` by more than the
    container's own rounding (some compute the count from the duration): more than one frame
    or 1 % of them."""
    return claimed - decoded > max(1, claimed // 100)


def predict_path(
    source: str | Path,
    weights: str | Path,
    out_dir: str | Path,
    cfg: Any,
    device: Any = "cpu",
    batch_size: int = 16,
    progress: bool = False,
    refine_passes: int = 0,
    rotate: str | int = 0,
) -> PredictSummary:
    """`pkmodel predict`: an image, a folder of images or a video, with a checkpoint or ONNX.

    ``refine_passes``: looks again at a crop around each pose found (predict_frames_refined,
    crops cut with prepare.expand_ratio like the training crops); 0 = the whole frame only.
    ``rotate``: degrees (0, 90, 180, 270) each frame turns clockwise before the network sees
    it, or "auto" (:func:`turn_votes` on AUTO_TURN_FRAMES frames spread over the input); the
    keypoints stay in the frames' own pixels. Into an ``out_dir`` that holds an earlier
    prediction, the overlays its keypoints.json lists and this one does not draw are deleted
    once the new keypoints.json is in place (other files are left alone).
    """
    source, out_dir = Path(source), Path(out_dir)
    kind = input_kind(source)
    if batch_size < 1:
        raise PkmodelError(f"batch size must be at least 1, got {batch_size}")
    if refine_passes < 0:
        raise PkmodelError(f"refine passes must be 0 or more, got {refine_passes}")
    degrees = rotate_degrees(rotate)
    check_writable(out_dir, "--out", folder=True)
    runner = load_runner(weights, cfg, device)
    created = not out_dir.exists()
    out_dir.mkdir(parents=True, exist_ok=True)
    earlier = _listed_overlays(out_dir)  # read before the new keypoints.json replaces it
    try:
        summary = _predict_into(runner, source, kind, weights, out_dir, cfg, batch_size, progress, refine_passes, degrees)  # fmt: skip
    except PkmodelError:
        if created and not any(out_dir.iterdir()):
            out_dir.rmdir()  # a run that wrote nothing leaves no empty folder behind
        raise
    # an earlier prediction's overlays that this one did not draw again: replaced by it
    remove_replaced(out_dir, earlier - {p.name for p in summary.overlays})
    return summary


def _listed_overlays(out_dir: Path) -> set[str]:
    """The overlays an earlier prediction's OUT/keypoints.json lists (its own files: plain
    ``*_pose.jpg`` / ``*_pose.mp4`` names in OUT); none without a readable one."""
    try:
        old = json.loads((out_dir / "keypoints.json").read_bytes())
    except (OSError, ValueError):
        return set()
    if not isinstance(old, dict) or old.get("schema") != PREDICTIONS_SCHEMA:
        return set()
    items = old.get("items") if isinstance(old.get("items"), list) else []
    names = [old.get("overlay"), *(i.get("overlay") for i in items if isinstance(i, dict))]
    return listed_outputs(names, ("_pose.jpg", "_pose.mp4"))


def _predict_into(
    runner, source, kind, weights, out_dir, cfg, batch_size, progress, refine_passes, degrees
) -> PredictSummary:  # fmt: skip
    header = {**_header(runner, Path(weights), kind, source), "refine_passes": refine_passes}
    paths: list[Path] = []
    if kind == "image":
        paths = [source]
    elif kind == "folder":
        paths = sorted(p for p in source.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not paths:
            videos = sorted(p.name for p in source.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES)  # fmt: skip
            hint = f"; for its video give the file itself ({source / videos[0]})" if videos else ""
            raise PkmodelError(
                f"folder {source} holds no image ({', '.join(sorted(IMAGE_SUFFIXES))}){hint}"
            )
    if degrees is None:  # --rotate auto
        samples = _video_samples(source) if kind == "video" else _image_samples(paths)
        degrees, seen = turn_votes(runner, samples) if samples else (0, {})
        header["rotate_auto"] = {"frames": len(samples), "turns": {str(t): v for t, v in seen.items()}}  # fmt: skip
    header["rotate_deg"] = degrees

    def predict(frames: Sequence[np.ndarray]) -> list[Pose]:
        return predict_frames_refined(
            runner, frames, refine_passes, REFINE_MARGIN, cfg.prepare.expand_ratio
        )

    if kind == "video":
        summary = predict_video(turned(predict, degrees), source, out_dir, batch_size, header, progress)  # fmt: skip
    else:
        summary = predict_images(turned(predict, degrees), paths, out_dir, batch_size, header, progress, kind == "image")  # fmt: skip
    summary.rotate_deg = degrees
    return summary


def _image_samples(paths: Sequence[Path]) -> list[np.ndarray]:
    """The images --rotate auto looks at, as shown (an unreadable one is left out here; the
    prediction itself reports it)."""
    frames = []
    for i in spread_indices(len(paths)):
        try:
            frames.append(read_rgb(paths[i], shown=True))
        except ValueError:
            continue
    return frames


def _video_samples(path: Path) -> list[np.ndarray]:
    """The frames --rotate auto looks at, spread over the video (the first ones where the
    container gives no frame count), as shown; none when it cannot be read (the prediction
    itself then says why)."""
    import cv2

    capture = cv2.VideoCapture(opencv_path(path))
    try:
        if not capture.isOpened():
            return []
        total = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
        frames = []
        for i in spread_indices(total) if total > 0 else range(AUTO_TURN_FRAMES):
            if total > 0:
                capture.set(cv2.CAP_PROP_POS_FRAMES, i)
            ok, bgr = capture.read()
            if ok and bgr is not None:
                frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
        return frames
    finally:
        capture.release()
