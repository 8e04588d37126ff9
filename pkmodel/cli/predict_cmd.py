"""`pkmodel predict`: keypoints and overlays for an image, a folder of images or a video."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from pkmodel.cli.common import PATH, WEIGHTS_HELP, config_command, key
from pkmodel.config import Config


@config_command
def predict_command(
    cfg: Config,
    source: Annotated[
        Path,
        typer.Argument(
            help="An image, a folder of images, or a video (.mp4, .mov, ...).", parser=PATH
        ),
    ],
    weights: Annotated[Path, typer.Option(help=f"Network: {WEIGHTS_HELP}.", parser=PATH)],
    out: Annotated[
        Path,
        typer.Option(help="Output folder for keypoints.json and the overlays.", parser=PATH),
    ] = Path("runs/predict"),
    batch_size: int | None = key("eval.batch_size"),
    device: str | None = key(
        "train.device",
        help="where a checkpoint runs: auto (cuda > mps > cpu), cpu, cuda, cuda:N or mps; an "
        "export runs on the CPU",
    ),
    refine_passes: Annotated[
        int,
        typer.Option(
            "--refine-passes",
            help="Look again this many times at a crop around the pose found, cut like the "
            "training crops (prepare.expand_ratio): sharper for people small in the frame.",
        ),
    ] = 0,
    rotate: Annotated[
        str,
        typer.Option(
            "--rotate",
            metavar="auto|0|90|180|270",
            help="Degrees each frame turns clockwise before the network sees it, for pictures "
            "stored on their side without an EXIF orientation or display matrix (a phone "
            "holds its raw frames in the sensor's landscape); auto: the turn under which the "
            "network finds clearly more joints on 8 frames spread over the input. The "
            "keypoints stay in the frames' own pixels.",
        ),
    ] = "0",
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress bar.")] = False,
) -> None:
    """Predict the pose in images, a folder or a video, and draw it.

    Each frame is letterboxed whole to the network input (single-person model), inferred in
    batches, decoded, and mapped back to original pixels. Writes OUT/keypoints.json (per frame:
    keypoints in original pixels, scores, found flags, center) and OUT/<name>_pose.jpg per image
    or OUT/<name>_pose.mp4 for a video. Joints below decoder.score_threshold are not drawn.

    With --refine-passes N the network then sees a crop around the pose it found, N times.
    Photos and videos are read as a viewer shows them (EXIF orientation, display matrix);
    --rotate turns frames stored on their side without either.
    """
    from pkmodel.engine.networks import network_device
    from pkmodel.engine.predict import predict_path, rotate_degrees

    torch_device = network_device(weights, cfg.train.device)
    summary = predict_path(
        source, weights, out, cfg, torch_device, cfg.eval.batch_size, not quiet, refine_passes,
        rotate,
    )  # fmt: skip
    for bad in summary.skipped:
        typer.secho(f"warning: skipped {bad['file']}: {bad['reason']}", err=True,
                    fg=typer.colors.YELLOW)  # fmt: skip
    for line in summary.warnings:
        typer.secho(f"warning: {line}", err=True, fg=typer.colors.YELLOW)
    what = "overlay video" if summary.kind == "video" else f"{len(summary.overlays)} overlay(s)"
    auto, turn = rotate_degrees(rotate) is None, ""
    if summary.rotate_deg:
        how = " (--rotate auto)" if auto else ""
        turn = f"; frames turned {summary.rotate_deg} degrees clockwise for the network{how}"
    elif auto:
        turn = "; --rotate auto kept the frames as they are"
    typer.echo(
        f"{summary.frames} {'frame' if summary.kind == 'video' else 'image'}(s): "
        f"{summary.keypoints_json} and {what} in {out}{turn}"
    )


def register(app: typer.Typer) -> None:
    app.command("predict")(predict_command)
