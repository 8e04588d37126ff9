"""`pkmodel make-synthetic`: write the built-in synthetic RGB-D people dataset."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from pkmodel.cli.common import config_command, key
from pkmodel.config import Config


@config_command
def make_synthetic(
    cfg: Config,
    out: Path | None = key("data.synthetic_dir", "--out", "-o"),
    num_train: int | None = key("synthetic.num_train"),
    num_val: int | None = key("synthetic.num_val"),
    # One option for two keys (synthetic.width and synthetic.height): not a key() of its own;
    # applied after the config is resolved, as the options are (they win over --set).
    size: Annotated[
        str | None,
        typer.Option(
            "--size", help="Image size WIDTHxHEIGHT, e.g. 256x256 (synthetic.width/height)."
        ),
    ] = None,
    seed: int | None = key("synthetic.seed"),
    sequences: int | None = key("synthetic.sequences"),
    frames: int | None = key("synthetic.frames"),
    workers: int | None = key("synthetic.workers"),
    depth_sensor: str | None = key("synthetic.depth_sensor"),
    layout: str | None = key("synthetic.layout"),
) -> None:
    """Generate the built-in synthetic RGB-D people: COCO keypoints with exact 3D joints.

    Writes annotations/person_keypoints_{train,val}.json, {train,val}/*.jpg,
    depth/{train,val}/*.png (uint16 millimetres, 0 = no surface) and
    sequences/seq_NNN/ clips for the 3D pipeline. The same seed gives the same files.
    --depth-sensor lidar writes depth as a phone's LiDAR would measure it (lower resolution,
    noise, holes) with confidence/ maps beside it.
    --layout stray or record3d writes each clip as that iPhone app records it instead
    (sequences/seq_NNN/ Stray Scanner folders, or sequences/seq_NNN.r3d files), with the
    ground truth in pkmodel_ground_truth.json; pkmodel lift reads all three layouts.
    Format and fields: docs/synthetic.md and docs/3d.md (Capture apps).
    """
    from pkmodel.data.synthetic.generate import generate, parse_size

    if size is not None:
        width, height = parse_size(size)
        cfg.set("synthetic.width", width, "--size")
        cfg.set("synthetic.height", height, "--size")
    spec, folder = cfg.synthetic, cfg.data.synthetic_dir
    summary = generate(spec, folder)
    splits = ", ".join(
        f"{name}: {summary.images.get(name, 0)} images / {summary.people.get(name, 0)} people"
        for name in ("train", "val")
    )
    typer.echo(
        f"wrote {folder} in {summary.seconds:.1f} s with {summary.workers} workers ({splits}; "
        f"{spec.sequences} sequences x {spec.frames} frames"
        f"{'' if spec.layout == 'pkmodel' else f' in the {spec.layout} layout'})"
    )


def register(app: typer.Typer) -> None:
    app.command("make-synthetic")(make_synthetic)
