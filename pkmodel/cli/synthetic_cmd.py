"""`pkmodel make-synthetic`: write the built-in synthetic RGB-D people dataset."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from pkmodel.cli.common import ConfigOption, SetOption, resolve_config, user_errors


@user_errors
def make_synthetic(
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="Output folder. Default: data.synthetic_dir."),
    ] = None,
    num_train: Annotated[
        int | None, typer.Option("--num-train", help="Training images (synthetic.num_train).")
    ] = None,
    num_val: Annotated[
        int | None, typer.Option("--num-val", help="Validation images (synthetic.num_val).")
    ] = None,
    size: Annotated[
        str | None,
        typer.Option(
            "--size", help="Image size WIDTHxHEIGHT, e.g. 256x256 (synthetic.width/height)."
        ),
    ] = None,
    seed: Annotated[
        int | None, typer.Option("--seed", help="Random seed; same seed, same files.")
    ] = None,
    sequences: Annotated[
        int | None,
        typer.Option("--sequences", help="RGB-D clips of continuous motion (synthetic.sequences)."),
    ] = None,
    frames: Annotated[
        int | None, typer.Option("--frames", help="Frames per clip (synthetic.frames).")
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option("--workers", help="Worker processes, 0 = one per core (synthetic.workers)."),
    ] = None,
    depth_sensor: Annotated[
        str | None,
        typer.Option(
            "--depth-sensor",
            help="exact (noise-free, colour resolution) or lidar (a phone LiDAR's depth with "
            "confidence maps) (synthetic.depth_sensor).",
        ),
    ] = None,
    config: ConfigOption = None,
    set_: SetOption = None,
) -> None:
    """Generate the built-in synthetic RGB-D people: COCO keypoints with exact 3D joints.

    Writes annotations/person_keypoints_{train,val}.json, {train,val}/*.jpg,
    depth/{train,val}/*.png (uint16 millimetres, 0 = no surface) and
    sequences/seq_NNN/ clips for the 3D pipeline. The same seed gives the same files.
    --depth-sensor lidar writes depth as a phone's LiDAR would measure it (lower resolution,
    noise, holes) with confidence/ maps beside it.
    Format and fields: docs/synthetic.md.
    """
    from pkmodel.data.synthetic.generate import generate, parse_size

    width, height = parse_size(size) if size is not None else (None, None)
    cfg = resolve_config(
        config,
        set_,
        data__synthetic_dir=out,
        synthetic__num_train=num_train,
        synthetic__num_val=num_val,
        synthetic__width=width,
        synthetic__height=height,
        synthetic__seed=seed,
        synthetic__sequences=sequences,
        synthetic__frames=frames,
        synthetic__workers=workers,
        synthetic__depth_sensor=depth_sensor,
    )
    spec, out = cfg.synthetic, cfg.data.synthetic_dir
    summary = generate(spec, out)
    splits = ", ".join(
        f"{name}: {summary.images.get(name, 0)} images / {summary.people.get(name, 0)} people"
        for name in ("train", "val")
    )
    typer.echo(
        f"wrote {out} in {summary.seconds:.1f} s with {summary.workers} workers ({splits}; "
        f"{spec.sequences} sequences x {spec.frames} frames)"
    )


def register(app: typer.Typer) -> None:
    app.command("make-synthetic")(make_synthetic)
