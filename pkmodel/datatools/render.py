"""`pkmodel data render`: the labels drawn on their crops, one picture each or a contact sheet.

Uses pkmodel.common.draw: the main person with left side blue, right red, middle yellow, its center a
green cross, other people in violet. Each picture is captioned with the sample index, its source
tag and "pseudo" for pseudo-labelled samples, so a check by eye can be traced back to the file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pkmodel.common.draw import (
    OTHER_COLOR,
    draw_center,
    draw_skeleton,
    image_grid,
    put_label,
    save_image,
)
from pkmodel.common.errors import PkmodelError
from pkmodel.common.images import IMAGE_SUFFIXES, read_rgb
from pkmodel.common.skeleton import NUM_JOINTS
from pkmodel.data.labels import checked_relative, load_labels, sample_problem

SHEET_SUFFIXES = (".png", ".jpg", ".jpeg")


@dataclass
class RenderSummary:
    """What `data render` wrote."""

    out: Path
    pictures: int
    sheet: bool

    def format(self) -> str:
        what = "contact sheet" if self.sheet else "folder"
        return f"{self.pictures} samples drawn -> {self.out} ({what})"


def pick_samples(
    samples: list[dict[str, Any]], count: int, random: bool, seed: int, source: str | None
) -> np.ndarray:
    """Indices to draw: the first ``count`` (0 = all) or a seeded random choice, optionally of
    one source tag only; sorted."""
    idx = np.arange(len(samples))
    if source is not None:
        idx = idx[[s.get("source") == source for s in samples]] if len(idx) else idx
    if count > 0 and count < len(idx):
        idx = np.sort(np.random.default_rng(seed).choice(idx, count, replace=False)) if random else idx[:count]  # fmt: skip
    return idx


def draw_sample(crop: np.ndarray, sample: dict[str, Any], caption: str) -> np.ndarray:
    """A copy of the crop with the sample's people, center and caption drawn."""

    picture = np.ascontiguousarray(crop.copy())
    for other in sample.get("others") or []:
        draw_skeleton(picture, np.asarray(other["keypoints"], np.float64), color=OTHER_COLOR)
    draw_skeleton(picture, np.asarray(sample["keypoints"], np.float64))
    if sample.get("center") is not None:
        draw_center(picture, sample["center"])
    return put_label(picture, caption)


def render_labels(
    labels: str | Path,
    out: str | Path,
    count: int = 36,
    cols: int = 6,
    random: bool = False,
    seed: int = 0,
    source: str | None = None,
    progress: bool = True,
) -> RenderSummary:
    """Draw samples of ``labels``: into one contact sheet when ``out`` ends in .png/.jpg, else
    into the folder ``out`` as <index>_<crop name>.jpg."""
    from tqdm import tqdm

    labels, out = Path(labels), Path(out)
    if count < 0 or cols < 1:
        raise PkmodelError("--count must be >= 0 and --cols >= 1")
    if seed < 0:
        raise PkmodelError(f"--seed {seed} must be a whole number >= 0")
    data = load_labels(labels)
    samples = data["samples"]
    chosen = pick_samples(samples, count, random, seed, source)
    if len(chosen) == 0:
        what = f" with source '{source}'" if source is not None else ""
        raise PkmodelError(f"prepared labels {labels} hold no samples{what} to draw")
    for i in chosen:  # what draw_sample reads, before anything is drawn
        problem = sample_problem(int(i), samples[int(i)], {"keypoints": (NUM_JOINTS, 3)})
        if problem is not None:
            raise PkmodelError(f"prepared labels {labels} are malformed ({problem})")
    sheet = out.suffix.lower() in SHEET_SUFFIXES
    if not sheet and out.suffix.lower() in {*IMAGE_SUFFIXES, ".gif"} and not out.is_dir():
        raise PkmodelError(
            f"--out {out}: a contact sheet is written as .png or .jpg, and a name with another "
            "picture suffix would become a folder; give a .png or .jpg file, or a folder"
        )
    if sheet and out.is_file() and "imgs" in out.resolve().parts[:-1]:
        raise PkmodelError(
            f"--out {out} is an existing crop of a prepared dataset (under an 'imgs' folder): "
            "give another --out"
        )
    pictures = []
    for i in tqdm(chosen, unit="img", desc="render", disable=not progress):
        s = samples[int(i)]
        path = labels.parent / checked_relative(s["image"], f"{labels} samples[{i}]")
        try:
            crop = read_rgb(path)
        except ValueError as e:
            raise PkmodelError(
                f"crop {path} of {labels} samples[{i}] cannot be read ({e})"
            ) from None
        caption = " ".join(x for x in (str(i), s.get("source") or "", "pseudo" if s.get("pseudo") else "") if x)  # fmt: skip
        picture = draw_sample(crop, s, caption)
        if sheet:
            pictures.append(picture)
        else:
            save_image(out / f"{int(i):06d}_{Path(s['image']).stem}.jpg", picture)
    if sheet:
        save_image(out, image_grid(pictures, cols))
    return RenderSummary(out, len(chosen), sheet)
