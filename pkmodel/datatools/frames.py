"""`pkmodel data extract-frames`: sample still frames from videos with OpenCV.

Two ways to choose frames: ``every_s`` (one frame every N seconds from the start: frame
round(t x fps) for t = 0, N, 2N, ...) or ``count`` (K frames evenly spaced over the video: the
middle frame of each of K equal parts, floor((i + 0.5) x frames / K)). Frames are decoded with
grab() and only the chosen ones retrieved, and written as OUT/<video>/<video>_<frame>.jpg
(frame number, 6 digits) through a temporary name. Each finished video gets
OUT/<video>/frames.json (its frames with their times); a rerun skips videos whose manifest
matches the video file and the settings, and within an interrupted video keeps the frames
already written; a rerun with other settings, once its manifest is written, removes the frames
the earlier manifest lists and the new one does not (nothing else). Before its first frame a run
lists the frames it will write in OUT/<video>/.frames-pending.json, so that the frames of a run
interrupted before its manifest count as the earlier run's too (removed by the next run that
finishes, or that finds the video complete, where it does not list them). With ``rotate`` (90, 180,
270 degrees clockwise) each frame is stored turned, for a video stored on its side without a
display matrix (a Stray Scanner ``rgb.mp4``), and its name ends in ``_r<degrees>`` so that a
rerun with another turn keeps none of them.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pkmodel.common.atomic import (
    atomic_write_bytes,
    atomic_write_json,
    check_writable,
    listed_outputs,
    remove_replaced,
)
from pkmodel.common.errors import PkmodelError
from pkmodel.common.geometry import QUARTER_TURNS, turn_image
from pkmodel.common.images import VIDEO_SUFFIXES, opencv_path

MANIFEST = "frames.json"
# the frames a run is writing, until its manifest is written (an interrupted run's outputs)
PENDING = ".frames-pending.json"
# --every below this (1000 frames a second) is a mistake, not a sampling rate
MIN_EVERY_S = 0.001


@dataclass
class FramesSummary:
    """What `data extract-frames` did."""

    videos: int
    skipped_videos: int  # complete from an earlier run
    frames_written: int
    frames_kept: int  # already on disk from an interrupted run
    failed: list[dict[str, str]] = field(default_factory=list)
    out_dir: Path | None = None
    short: list[str] = field(default_factory=list)  # videos that decode fewer frames than claimed

    def format(self) -> str:
        lines = [
            f"{self.videos} video(s): {self.frames_written} frames written, {self.frames_kept} "
            f"kept from an earlier run, {self.skipped_videos} video(s) already complete -> "
            f"{self.out_dir}"
        ]
        lines += [f"  failed {f['video']}: {f['reason']}" for f in self.failed]
        lines += [f"  short {line}" for line in self.short]
        return "\n".join(lines)


def frames_every(fps: float, frame_count: int, every_s: float) -> np.ndarray:
    """Frame numbers of t = 0, every_s, 2 every_s, ... within the video (unique, sorted)."""
    if fps <= 0 or frame_count <= 0:
        return np.zeros(0, np.int64)
    duration = frame_count / fps
    # a step shorter than one frame would only repeat frames (and make a huge array first)
    times = np.arange(0.0, duration, max(every_s, 1.0 / fps))
    idx = np.floor(times * fps + 0.5).astype(np.int64)
    return np.unique(idx[idx < frame_count])


def frames_evenly(frame_count: int, count: int) -> np.ndarray:
    """The middle frame of each of ``count`` equal parts of the video (unique, sorted)."""
    if frame_count <= 0:
        return np.zeros(0, np.int64)
    k = min(count, frame_count)
    return np.unique(np.floor((np.arange(k) + 0.5) * frame_count / k).astype(np.int64))


def list_videos(source: Path) -> list[Path]:
    """A video file, or every video in a folder (recursively), sorted."""

    if source.is_file():
        if source.suffix.lower() not in VIDEO_SUFFIXES:
            raise PkmodelError(f"{source} is not a video ({', '.join(sorted(VIDEO_SUFFIXES))})")
        return [source]
    if not source.is_dir():
        raise PkmodelError(f"input {source} does not exist")
    videos = sorted(
        p for p in source.rglob("*") if p.suffix.lower() in VIDEO_SUFFIXES and p.is_file()
    )
    if not videos:
        raise PkmodelError(f"folder {source} holds no video ({', '.join(sorted(VIDEO_SUFFIXES))})")
    return videos


def _folder_names(videos: list[Path]) -> list[str]:
    """Output folder per video: its stem, with the suffix kept where two videos share one."""
    stems = [v.stem for v in videos]
    names = [f"{v.stem}_{v.suffix[1:]}" if stems.count(v.stem) > 1 else v.stem for v in videos]
    seen: dict[str, int] = {}
    out = []
    for n in names:  # same stem and suffix in different subfolders
        seen[n] = seen.get(n, 0) + 1
        out.append(n if seen[n] == 1 else f"{n}_{seen[n]}")
    return out


def _settings(
    video: Path, every_s: float | None, count: int | None, rotate: int = 0
) -> dict[str, Any]:
    st = video.stat()
    return {
        "video": str(video.resolve()),
        "bytes": st.st_size,
        "mtime_ns": st.st_mtime_ns,
        "every_s": every_s,
        "count": count,
        "rotate_deg": rotate,
    }


def _manifest(folder: Path, name: str = MANIFEST) -> dict[str, Any] | None:
    """The manifest ``name`` an earlier run left in ``folder``; None without a readable one."""
    try:
        old = json.loads((folder / name).read_bytes())
    except (OSError, ValueError):
        return None
    return old if isinstance(old, dict) else None


def _done_before(folder: Path, settings: dict[str, Any]) -> bool:
    old = _manifest(folder)
    return old is not None and all(old.get(k) == v for k, v in settings.items())


def _listed_frames(folder: Path, name: str = MANIFEST) -> set[str]:
    """The frames the manifest ``name`` in ``folder`` lists (an earlier run's own files: plain
    .jpg names in that folder, not hidden); none without a readable manifest. ``PENDING``: the
    frames of a run that did not finish."""
    frames = (_manifest(folder, name) or {}).get("frames")
    names = [f.get("file") for f in frames if isinstance(f, dict)] if isinstance(frames, list) else []  # fmt: skip
    return {n for n in listed_outputs(names, (".jpg",)) if not n.startswith(".")}


def _drop_pending(folder: Path, kept: set[str]) -> None:
    """Remove the frames of unfinished runs (``PENDING``) that ``kept`` (the frames of the
    manifest now in ``folder``) does not list, then the list itself."""
    remove_replaced(folder, _listed_frames(folder, PENDING) - kept)
    (folder / PENDING).unlink(missing_ok=True)


def extract_video(
    video: Path,
    folder: Path,
    every_s: float | None,
    count: int | None,
    jpeg_quality: int,
    rotate: int = 0,
) -> tuple[int, int, str | None]:
    """Frames of one video into ``folder`` and its manifest; returns (written, kept, why it is
    short: None when every frame wanted decoded)."""
    import cv2

    source = opencv_path(video)
    if os.path.getsize(source) == 0:
        raise ValueError("the file is empty (0 bytes)")
    cap = cv2.VideoCapture(source)
    if not cap.isOpened():
        raise ValueError("OpenCV cannot open it (damaged, or not a video)")
    try:
        fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        if fps <= 0 or not math.isfinite(fps):
            raise ValueError("it reports no frame rate")
        if total <= 0:  # some containers do not say: count by decoding
            while cap.grab():
                total += 1
            cap.release()
            cap = cv2.VideoCapture(source)
        wanted = frames_every(fps, total, every_s) if every_s else frames_evenly(total, count or 0)
        earlier = _listed_frames(folder)  # read before the new manifest replaces it
        want = set(wanted.tolist())
        last = int(wanted[-1]) if len(wanted) else -1
        names = {i: f"{folder.name}_{i:06d}{f'_r{rotate}' if rotate else ''}.jpg" for i in want}
        folder.mkdir(parents=True, exist_ok=True)  # only for a video that opens
        pending = _listed_frames(folder, PENDING) | set(names.values())
        atomic_write_json(folder / PENDING, {"frames": [{"file": n} for n in sorted(pending)]})
        frames, written, kept = [], 0, 0
        index = 0
        while index <= last and cap.grab():
            if index in want:
                name = names[index]
                path = folder / name
                if path.is_file():
                    kept += 1
                else:
                    ok, bgr = cap.retrieve()
                    if not ok:
                        raise ValueError(f"frame {index} cannot be decoded")
                    bgr = turn_image(bgr, rotate)
                    ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality])
                    if not ok:
                        raise ValueError(f"frame {index} cannot be encoded as JPEG")
                    atomic_write_bytes(path, buf.tobytes())
                    written += 1
                frames.append({"file": name, "frame": index, "time_s": round(index / fps, 6)})
            index += 1
    finally:
        cap.release()
    if not frames:
        raise ValueError("no frame could be decoded")
    manifest = {
        **_settings(video, every_s, count, rotate),
        "fps": fps,
        "frame_count": total,
        "frames_missing": len(wanted) - len(frames),  # the container claimed more frames
        "frames": frames,
    }
    atomic_write_json(folder / MANIFEST, manifest)
    # an earlier run's frames (other settings) that this one does not list: replaced by it
    mine = {f["file"] for f in frames}
    remove_replaced(folder, earlier - mine)
    _drop_pending(folder, mine)
    short = None
    if manifest["frames_missing"]:
        short = (
            f"{video}: {manifest['frames_missing']} of the {len(wanted)} frames wanted lie past "
            f"the last frame that decodes (its container gives {total}; the file may be cut short)"
        )
    return written, kept, short


def extract_frames(
    source: str | Path,
    out_dir: str | Path,
    every_s: float | None = None,
    count: int | None = None,
    jpeg_quality: int = 95,
    progress: bool = True,
    rotate: int = 0,
) -> FramesSummary:
    """Frames of a video or a folder of videos into OUT/<video>/ (see the module docstring).

    A video OpenCV cannot read is listed in the summary, not fatal.
    """
    from tqdm import tqdm

    if (every_s is None) == (count is None):
        raise PkmodelError("give exactly one of --every SECONDS or --count K")
    if every_s is not None and not (MIN_EVERY_S <= every_s < math.inf):
        raise PkmodelError(
            f"--every {every_s} must be a finite number of seconds of at least {MIN_EVERY_S:g} "
            "(shorter than a frame takes every frame)"
        )
    if count is not None and count < 1:
        raise PkmodelError(f"--count must be at least 1, got {count}")
    if not 1 <= jpeg_quality <= 100:
        raise PkmodelError(f"--jpeg-quality must be 1-100, got {jpeg_quality}")
    if rotate not in QUARTER_TURNS:
        raise PkmodelError(f"--rotate must be 0, 90, 180 or 270 (degrees clockwise), not {rotate}")
    source, out_dir = Path(source), Path(out_dir)
    videos = list_videos(source)
    check_writable(out_dir, "--out", folder=True)  # a video's fault is listed; this is not
    summary = FramesSummary(len(videos), 0, 0, 0, out_dir=out_dir)
    for video, name in tqdm(
        list(zip(videos, _folder_names(videos), strict=True)), unit="video", desc="extract-frames",
        disable=not progress,
    ):  # fmt: skip
        folder = out_dir / name
        if _done_before(folder, _settings(video, every_s, count, rotate)):
            # complete; a later run with other settings that was interrupted left frames
            _drop_pending(folder, _listed_frames(folder))
            summary.skipped_videos += 1
            continue
        try:  # a ValueError is the video's; an OSError (writing) stops the command
            written, kept, short = extract_video(video, folder, every_s, count, jpeg_quality, rotate)  # fmt: skip
        except ValueError as e:
            summary.failed.append({"video": str(video), "reason": str(e)})
            continue
        summary.frames_written += written
        summary.frames_kept += kept
        if short:
            summary.short.append(short)
    return summary
