"""`pkmodel data ...`: split, merge, stats, render, fetch, extract-frames, pseudo-label."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from pkmodel.cli.common import ConfigOption, SetOption, resolve_config, user_errors

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
    return typer.Argument(help=help_text, show_default=False)


@app.command("split")
@user_errors
def split_command(
    labels: Annotated[Path, _labels_arg("Prepared label file (DATASET_DIR/NAME.json) to split.")],
    val_ratio: Annotated[
        float, typer.Option("--val-ratio", help="Share of the samples that go to validation.")
    ] = 0.1,
    seed: Annotated[int, typer.Option("--seed", help="Random seed of the split.")] = 0,
    train_name: Annotated[
        str | None,
        typer.Option(
            "--train-name", help="Name of the training output (default: data.train_split)."
        ),
    ] = None,
    val_name: Annotated[
        str | None,
        typer.Option("--val-name", help="Name of the validation output (default: data.val_split)."),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help="Folder of the two outputs (default: the input's folder; elsewhere, image "
            "paths are rewritten to point at the same crops).",
        ),
    ] = None,
    config: ConfigOption = None,
    set_: SetOption = None,
) -> None:
    """Split prepared labels into train and val by source image (crops of one photo stay together).

    Source images are shuffled with the seed and taken until the validation side holds the
    share of samples closest to --val-ratio. Crops are not copied.
    """
    from pkmodel.datatools.split import split_labels

    cfg = resolve_config(config, set_)
    summary = split_labels(
        labels, val_ratio, seed, train_name or cfg.data.train_split,
        val_name or cfg.data.val_split, out,
    )  # fmt: skip
    typer.echo(summary.format())


@app.command("merge")
@user_errors
def merge_command(
    inputs: Annotated[
        list[Path],
        typer.Argument(
            help="Prepared label files to merge (one file gives a tagged copy).",
            show_default=False,
        ),
    ],
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Output dataset folder (default: data.prepared_dir)."),
    ] = None,
    name: Annotated[str, typer.Option("--name", help="Output name: OUT/NAME.json.")] = "merged",
    tag: Annotated[
        list[str] | None,
        typer.Option(
            "--tag",
            help="Source tag of each input, in order (repeat once per input; default: the "
            "file names).",
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
    quiet: QuietOption = False,
    config: ConfigOption = None,
    set_: SetOption = None,
) -> None:
    """Merge prepared label files and their crops into one dataset folder, tagging each source.

    Crops go to OUT/imgs/NAME/<tag>/...; every sample gets "source": <tag>. Inputs must have
    the same schema version, crop size and joints. Rerunning skips crops already in place.
    """
    from pkmodel.datatools.merge import merge_labels

    cfg = resolve_config(config, set_, data__prepared_dir=out)
    summary = merge_labels(inputs, cfg.data.prepared_dir, name, tag, link, progress=not quiet)
    typer.echo(summary.format())


@app.command("stats")
@user_errors
def stats_command(
    labels: Annotated[Path, _labels_arg("Prepared label file (DATASET_DIR/NAME.json).")],
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help="Output PNG (default: DATASET_DIR/stats_NAME.png); the JSON goes beside it.",
        ),
    ] = None,
    config: ConfigOption = None,
    set_: SetOption = None,
) -> None:
    """Counts, joints labelled per type, person size and position histograms: a PNG and a JSON."""
    from pkmodel.common.errors import PkmodelError
    from pkmodel.datatools.stats import format_stats, write_stats

    resolve_config(config, set_)
    png = out or labels.parent / f"stats_{labels.stem}.png"
    if png.suffix.lower() != ".png":
        raise PkmodelError(f"--out {png} must end in .png")
    stats = write_stats(labels, png, png.with_suffix(".json"))
    typer.echo(format_stats(stats))
    typer.echo(f"wrote {png} and {png.with_suffix('.json')}")


@app.command("render")
@user_errors
def render_command(
    labels: Annotated[Path, _labels_arg("Prepared label file (DATASET_DIR/NAME.json).")],
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help="A .png/.jpg file: one contact sheet; a folder: one picture per sample "
            "(default: DATASET_DIR/render_NAME.jpg).",
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
    config: ConfigOption = None,
    set_: SetOption = None,
) -> None:
    """Draw the labels on the crops, to check them by eye (folder of pictures or contact sheet).

    Main person: left blue, right red, middle yellow, center green; other people violet. The
    caption is the sample index, its source tag and 'pseudo' for pseudo-labels.
    """
    from pkmodel.datatools.render import render_labels

    resolve_config(config, set_)
    target = out or labels.parent / f"render_{labels.stem}.jpg"
    summary = render_labels(labels, target, count, cols, random, seed, source, progress=not quiet)
    typer.echo(summary.format())


@app.command("fetch")
@user_errors
def fetch_command(
    lists: Annotated[
        list[Path],
        typer.Argument(
            help="URL list file(s): one URL per line (optionally after a file name); blank "
            "lines and # comments are skipped.",
            show_default=False,
        ),
    ],
    out: Annotated[Path, typer.Option("--out", help="Download folder.")] = Path(
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
        ),
    ] = None,
    quiet: QuietOption = False,
    config: ConfigOption = None,
    set_: SetOption = None,
) -> None:
    """Download URL lists (e.g. the AIST / Yoga-82 lists) in parallel, resumable. Needs internet.

    Complete files are skipped on a rerun; partial ones continue with HTTP Range. Wrong content
    types and HTTP 4xx fail at once; network errors, 5xx and short files are retried with
    exponential backoff. Exits with code 1 when any URL failed.
    """
    from pkmodel.datatools.fetch import fetch_urls

    resolve_config(config, set_)
    summary = fetch_urls(
        lists, out, kind, workers, retries, backoff, timeout, report, progress=not quiet
    )
    typer.echo(summary.format())
    if summary.counts.get("failed"):
        raise typer.Exit(1)


@app.command("extract-frames")
@user_errors
def extract_frames_command(
    source: Annotated[
        Path,
        typer.Argument(
            help="A video, or a folder of videos (searched recursively).", show_default=False
        ),
    ],
    out: Annotated[
        Path, typer.Option("--out", help="Output folder: OUT/<video>/<video>_<frame>.jpg.")
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
    quiet: QuietOption = False,
    config: ConfigOption = None,
    set_: SetOption = None,
) -> None:
    """Sample still frames from videos (every N seconds, or K evenly spaced per video).

    Resumable: videos finished earlier (OUT/<video>/frames.json) are skipped, frames already
    written are kept. A video OpenCV cannot read is reported and skipped.
    """
    from pkmodel.common.errors import PkmodelError
    from pkmodel.datatools.frames import extract_frames

    resolve_config(config, set_)
    summary = extract_frames(source, out, every, count, jpeg_quality, progress=not quiet)
    typer.echo(summary.format())
    if summary.failed and len(summary.failed) == summary.videos:
        raise PkmodelError(f"no video under {source} could be read")


@app.command("pseudo-label")
@user_errors
def pseudo_label_command(
    images: Annotated[
        Path,
        typer.Argument(
            help="Folder of unlabelled images (searched recursively).", show_default=False
        ),
    ],
    weights: Annotated[
        Path, typer.Option("--weights", help="pkmodel checkpoint (.pt) or ONNX export (.onnx).")
    ],
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Output dataset folder (default: data.prepared_dir)."),
    ] = None,
    name: Annotated[str, typer.Option("--name", help="Output name: OUT/NAME.json.")] = "pseudo",
    annotations: Annotated[
        Path | None,
        typer.Option(
            "--annotations",
            help="COCO ground truth of these images (file_name relative to the folder): report "
            "OKS AP of the predictions and of the kept poses.",
            show_default=False,
        ),
    ] = None,
    joint_threshold: Annotated[
        float | None,
        typer.Option("--joint-threshold", help="pseudo_label.joint_threshold.", show_default=False),
    ] = None,
    person_threshold: Annotated[
        float | None,
        typer.Option(
            "--person-threshold", help="pseudo_label.person_threshold.", show_default=False
        ),
    ] = None,
    min_joints: Annotated[
        int | None,
        typer.Option("--min-joints", help="pseudo_label.min_joints.", show_default=False),
    ] = None,
    source: Annotated[
        str | None,
        typer.Option(
            "--source", help="pseudo_label.source (the samples' tag).", show_default=False
        ),
    ] = None,
    refine_passes: Annotated[
        int | None,
        typer.Option(
            "--refine-passes",
            help="pseudo_label.refine_passes: looks at a crop around the pose found (0 = off).",
            show_default=False,
        ),
    ] = None,
    batch_size: Annotated[
        int | None,
        typer.Option(
            "--batch-size", help="Images per inference batch (eval.batch_size).", show_default=False
        ),
    ] = None,
    device: Annotated[
        str | None,
        typer.Option(
            "--device",
            help="auto, cpu, cuda, cuda:N or mps (train.device); ONNX runs on the CPU.",
            show_default=False,
        ),
    ] = None,
    quiet: QuietOption = False,
    config: ConfigOption = None,
    set_: SetOption = None,
) -> None:
    """Label unlabelled images with a trained model; keep confident poses as prepared labels.

    Whole images are letterboxed, inferred and decoded, then inferred again on a crop around
    the pose found (pseudo_label.refine_passes), where the person has the size the network was
    trained on; joints below the joint threshold become unlabelled; poses with too few joints
    or a low mean score are dropped. The kept poses are cropped like prepare-coco crops COCO
    (prepare.*) into OUT/NAME.json, each sample marked "pseudo": true with its source tag,
    ready for `pkmodel data merge`.
    """
    from pkmodel.common.devices import select_device
    from pkmodel.datatools.pseudo import pseudo_label_weights

    cfg = resolve_config(
        config, set_, data__prepared_dir=out, eval__batch_size=batch_size, train__device=device,
        pseudo_label__joint_threshold=joint_threshold,
        pseudo_label__person_threshold=person_threshold,
        pseudo_label__min_joints=min_joints, pseudo_label__source=source,
        pseudo_label__refine_passes=refine_passes,
    )  # fmt: skip
    torch_device = "cpu" if weights.suffix.lower() == ".onnx" else select_device(cfg.train.device)
    summary = pseudo_label_weights(
        images, weights, cfg.data.prepared_dir, cfg, name, torch_device, annotations,
        cfg.eval.batch_size, progress=not quiet,
    )  # fmt: skip
    typer.echo(summary.format())


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="data")
