"""`pkmodel data ...`: split, merge, stats, render, fetch, extract-frames, pseudo-label."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from pkmodel.cli.common import PATH, WEIGHTS_HELP, config_command, key
from pkmodel.config import Config

app = typer.Typer(
    name="data",
    help="Grow and check datasets: split and merge prepared labels, statistics and pictures, "
    "download URL lists, extract video frames, pseudo-label images with a trained model.",
    no_args_is_help=True,
    # click's plain help: whole option names and paragraphs wrapped to the terminal's width
    rich_markup_mode=None,
)

QuietOption = Annotated[bool, typer.Option("--quiet", help="No progress bar.")]


def _labels_arg(help_text: str):
    return typer.Argument(help=help_text, show_default=False, parser=PATH)


@app.command("split")
@config_command
def split_command(
    cfg: Config,
    labels: Annotated[Path, _labels_arg("Prepared label file (DATASET_DIR/NAME.json) to split.")],
    val_ratio: Annotated[
        float, typer.Option("--val-ratio", help="Share of the samples that go to validation.")
    ] = 0.1,
    seed: Annotated[int, typer.Option("--seed", help="Random seed of the split.")] = 0,
    train_name: str | None = key("data.train_split", "--train-name"),
    val_name: str | None = key("data.val_split", "--val-name"),
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help="Folder of the two outputs (default: the input's folder; elsewhere, image "
            "paths are rewritten to point at the same crops).",
            parser=PATH,
        ),
    ] = None,
    force: Annotated[
        bool,
        typer.Option(
            "--force", help="Replace output files even when they are not a split of LABELS."
        ),
    ] = False,
) -> None:
    """Split prepared labels into train and val by source image (crops of one photo stay together).

    Source images are shuffled with the seed and taken until the validation side holds the
    share of samples closest to --val-ratio. Crops are not copied. An earlier split of the
    same labels is replaced; other labels files of those names (prepare-coco's) only with
    --force.
    """
    from pkmodel.datatools.split import split_labels

    summary = split_labels(
        labels, val_ratio, seed, cfg.data.train_split, cfg.data.val_split, out, force=force
    )
    typer.echo(summary.format())


@app.command("merge")
@config_command
def merge_command(
    cfg: Config,
    inputs: Annotated[
        list[Path],
        typer.Argument(
            help="Prepared label files to merge (one file gives a tagged copy).",
            show_default=False,
            parser=PATH,
        ),
    ],
    out: Path | None = key(
        "data.prepared_dir", "--out", help="output dataset folder: OUT/NAME.json, OUT/imgs/NAME/"
    ),
    name: Annotated[str, typer.Option("--name", help="Output name: OUT/NAME.json.")] = "merged",
    tag: Annotated[
        list[str] | None,
        typer.Option(
            "--tag",
            help="Source tag of each input, in order (repeat once per input; default: the "
            "source all of an input's samples share when no other input has it, else the file "
            "name).",
            show_default=False,
        ),
    ] = None,
    link: Annotated[
        str,
        typer.Option(
            "--link",
            help="How crops get into OUT: hardlink (copy when impossible), copy or symlink.",
        ),
    ] = "hardlink",
    force: Annotated[
        bool,
        typer.Option("--force", help="Replace OUT/NAME.json even when no merge wrote it."),
    ] = False,
    quiet: QuietOption = False,
) -> None:
    """Merge prepared label files and their crops into one dataset folder, tagging each source.

    Crops go to OUT/imgs/NAME/<tag>/...; every sample gets "source": <tag>. Inputs must have
    the same schema version, crop size and joints. Rerunning skips crops already in place; an
    earlier merge's OUT/NAME.json is replaced, other labels there only with --force.
    """
    from pkmodel.datatools.merge import merge_labels

    summary = merge_labels(
        inputs, cfg.data.prepared_dir, name, tag, link, progress=not quiet, force=force
    )
    typer.echo(summary.format())


@app.command("stats")
@config_command
def stats_command(
    cfg: Config,
    labels: Annotated[Path, _labels_arg("Prepared label file (DATASET_DIR/NAME.json).")],
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help="Output PNG (default: DATASET_DIR/stats_NAME.png); the JSON goes beside it.",
            parser=PATH,
        ),
    ] = None,
) -> None:
    """Counts, joints labelled per type, person size and position histograms: a PNG and a JSON."""
    from pkmodel.common.errors import PkmodelError
    from pkmodel.datatools.stats import format_stats, write_stats

    png = out or labels.parent / f"stats_{labels.stem}.png"
    if png.suffix.lower() != ".png":
        raise PkmodelError(f"--out {png} must end in .png")
    for written in (png, png.with_suffix(".json")):
        if written.resolve() == labels.resolve():
            raise PkmodelError(
                f"--out {png} would write {written}, the input labels: choose another --out"
            )
    stats = write_stats(labels, png, png.with_suffix(".json"))
    typer.echo(format_stats(stats))
    typer.echo(f"wrote {png} and {png.with_suffix('.json')}")


@app.command("render")
@config_command
def render_command(
    cfg: Config,
    labels: Annotated[Path, _labels_arg("Prepared label file (DATASET_DIR/NAME.json).")],
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help="A .png/.jpg file: one contact sheet; a folder: one picture per sample "
            "(default: DATASET_DIR/render_NAME.jpg).",
            parser=PATH,
        ),
    ] = None,
    count: Annotated[int, typer.Option("--count", help="Samples to draw (0 = all).")] = 36,
    cols: Annotated[int, typer.Option("--cols", help="Pictures per row of the contact sheet.")] = 6,
    random: Annotated[
        bool, typer.Option("--random/--first", help="A seeded random choice, or the first ones.")
    ] = False,
    seed: Annotated[int, typer.Option("--seed", help="Seed of --random.")] = 0,
    source: Annotated[
        str | None,
        typer.Option("--source", help="Only samples with this source tag.", show_default=False),
    ] = None,
    quiet: QuietOption = False,
) -> None:
    """Draw the labels on the crops, to check them by eye (folder of pictures or contact sheet).

    Main person: left blue, right red, middle yellow, center green; other people violet. The
    caption is the sample index, its source tag and 'pseudo' for pseudo-labels.
    """
    from pkmodel.datatools.render import render_labels

    target = out or labels.parent / f"render_{labels.stem}.jpg"
    summary = render_labels(labels, target, count, cols, random, seed, source, progress=not quiet)
    typer.echo(summary.format())


@app.command("fetch")
@config_command
def fetch_command(
    cfg: Config,
    lists: Annotated[
        list[Path],
        typer.Argument(
            help="URL list file(s): one URL per line (optionally after a file name); blank "
            "lines and # comments are skipped.",
            show_default=False,
            parser=PATH,
        ),
    ],
    out: Annotated[Path, typer.Option("--out", help="Download folder.", parser=PATH)] = Path(
        "dataset/downloads"
    ),
    kind: Annotated[
        str,
        typer.Option("--kind", help="Accepted content: image (image/*), video (video/*) or any."),
    ] = "image",
    workers: Annotated[int, typer.Option("--workers", help="Parallel connections.")] = 8,
    retries: Annotated[
        int, typer.Option("--retries", help="Retries of network errors, 5xx and short files.")
    ] = 3,
    backoff: Annotated[
        float, typer.Option("--backoff", help="First retry delay in seconds (doubles each time).")
    ] = 1.0,
    timeout: Annotated[
        float, typer.Option("--timeout", help="Seconds without data before a connection fails.")
    ] = 30.0,
    report: Annotated[
        Path | None,
        typer.Option(
            "--report",
            help="Report JSON (default: OUT/fetch_report.json); failures also go to "
            "<report>.failures.tsv, a list to retry.",
            show_default=False,
            parser=PATH,
        ),
    ] = None,
    quiet: QuietOption = False,
) -> None:
    """Download URL lists (such as the AIST / Yoga-82 lists) in parallel, resumable. Needs internet.

    Complete files are skipped on a rerun; partial ones continue with HTTP Range. Wrong content
    types and HTTP 4xx fail at once; network errors, 5xx and short files are retried with
    exponential backoff. Exits with code 1 when any URL failed.
    """
    from pkmodel.datatools.fetch import fetch_urls

    summary = fetch_urls(
        lists, out, kind, workers, retries, backoff, timeout, report, progress=not quiet
    )
    typer.echo(summary.format())
    if summary.counts.get("failed"):
        raise typer.Exit(1)


@app.command("extract-frames")
@config_command
def extract_frames_command(
    cfg: Config,
    source: Annotated[
        Path,
        typer.Argument(
            help="A video, or a folder of videos (searched recursively).",
            show_default=False,
            parser=PATH,
        ),
    ],
    out: Annotated[
        Path,
        typer.Option("--out", help="Output folder: OUT/<video>/<video>_<frame>.jpg.", parser=PATH),
    ] = Path("dataset/frames"),
    every: Annotated[
        float | None,
        typer.Option("--every", help="One frame every this many seconds.", show_default=False),
    ] = None,
    count: Annotated[
        int | None,
        typer.Option(
            "--count", help="This many evenly spaced frames per video.", show_default=False
        ),
    ] = None,
    jpeg_quality: Annotated[int, typer.Option("--jpeg-quality", help="JPEG quality 1-100.")] = 95,
    rotate: Annotated[
        int,
        typer.Option(
            "--rotate",
            metavar="0|90|180|270",
            help="Store each frame turned clockwise by this many degrees: for a video stored "
            "on its side without a display matrix (a phone's raw capture, e.g. a Stray "
            "Scanner rgb.mp4), so that the frames stand upright for labelling and training.",
        ),
    ] = 0,
    quiet: QuietOption = False,
) -> None:
    """Sample still frames from videos (every N seconds, or K evenly spaced per video).

    Resumable: videos finished earlier (OUT/<video>/frames.json) are skipped, frames already
    written are kept. A video OpenCV cannot read is reported and skipped.
    """
    from pkmodel.common.errors import PkmodelError
    from pkmodel.datatools.frames import extract_frames

    summary = extract_frames(source, out, every, count, jpeg_quality, progress=not quiet, rotate=rotate)  # fmt: skip
    typer.echo(summary.format())
    if summary.failed and len(summary.failed) == summary.videos:
        if summary.videos == 1:
            raise PkmodelError(f"video {summary.failed[0]['video']} cannot be read: {summary.failed[0]['reason']}")  # fmt: skip
        raise PkmodelError(f"none of the {summary.videos} videos under {source} could be read")


@app.command("pseudo-label")
@config_command
def pseudo_label_command(
    cfg: Config,
    images: Annotated[
        Path,
        typer.Argument(
            help="Folder of unlabelled images (searched recursively).",
            show_default=False,
            parser=PATH,
        ),
    ],
    weights: Annotated[
        Path, typer.Option("--weights", help=f"Network: {WEIGHTS_HELP}.", parser=PATH)
    ],
    out: Path | None = key(
        "data.prepared_dir", "--out", help="output dataset folder: OUT/NAME.json, OUT/imgs/NAME/"
    ),
    name: Annotated[str, typer.Option("--name", help="Output name: OUT/NAME.json.")] = "pseudo",
    annotations: Annotated[
        Path | None,
        typer.Option(
            "--annotations",
            help="COCO ground truth of these images (file_name relative to the folder): report "
            "OKS AP of the predictions and of the kept poses.",
            show_default=False,
            parser=PATH,
        ),
    ] = None,
    joint_threshold: float | None = key("pseudo_label.joint_threshold"),
    person_threshold: float | None = key("pseudo_label.person_threshold"),
    min_joints: int | None = key("pseudo_label.min_joints"),
    source: str | None = key("pseudo_label.source"),
    refine_passes: int | None = key("pseudo_label.refine_passes"),
    batch_size: int | None = key("eval.batch_size"),
    device: str | None = key(
        "train.device",
        help="where a checkpoint runs: auto (cuda > mps > cpu), cpu, cuda, cuda:N or mps; an "
        "export runs on the CPU",
    ),
    quiet: QuietOption = False,
) -> None:
    """Label unlabelled images with a trained model; keep confident poses as prepared labels.

    Whole images are letterboxed, inferred and decoded, then inferred again on a crop around
    the pose found (pseudo_label.refine_passes), where the person has the size the network was
    trained on; joints below the joint threshold become unlabelled; poses with too few joints
    or a low mean score are dropped. The kept poses are cropped like prepare-coco crops COCO
    (prepare.*) into OUT/NAME.json, each sample marked "pseudo": true with its source tag,
    ready for `pkmodel data merge`.
    """
    from pkmodel.datatools.pseudo import pseudo_label_weights
    from pkmodel.engine.networks import network_device

    torch_device = network_device(weights, cfg.train.device)
    summary = pseudo_label_weights(
        images, weights, cfg.data.prepared_dir, cfg, name, torch_device, annotations,
        cfg.eval.batch_size, progress=not quiet,
    )  # fmt: skip
    typer.echo(summary.format())


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="data")
