"""`pkmodel take ...`: what a take holds, conversions between pkmodel's and the PoseKit app's
formats (and CSV), and plots. The source's kind is detected from what it holds."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Annotated

import typer

from pkmodel.cli.common import PATH, config_command, key
from pkmodel.config import Config

app = typer.Typer(
    name="take",
    help="Takes of pkmodel and of the PoseKit app: show what one holds, convert between the "
    "formats (and CSV), plot its joints.\n\nFormats: docs/posekit-app.md.",
    no_args_is_help=True,
    # click's plain help: whole option names and paragraphs wrapped to the terminal's width
    rich_markup_mode=None,
)

FORMATS = ("posekit", "pkmodel", "zip", "csv")
# What a take folder may hold for --force to replace it: the app's files and pkmodel's.
TAKE_FILES = {"meta.json", "frames.bin", "take.json", "take.bin", "take.zip"}
# The file suffixes each --format writes; an output ending in another of TAKE_SUFFIXES is
# refused (-f posekit to x.zip would make a folder named x.zip).
OUTPUT_SUFFIXES = {
    "posekit": {".bin", ".json"},
    "pkmodel": {".bin", ".json", ".zip"},
    "zip": {".zip"},
    "csv": {".csv"},
}
TAKE_SUFFIXES = {".bin", ".json", ".zip", ".csv"}

SrcArgument = Annotated[
    Path,
    typer.Argument(
        help="A take: the app's take folder (meta.json + frames.bin) or its .bin, .json or .zip "
        "export; pkmodel's take.bin, take.json or take.zip, or a lift folder holding them.",
        show_default=False,
        parser=PATH,
    ),
]
AllowPartialOption = Annotated[
    bool,
    typer.Option(
        "--allow-partial",
        help="Read the whole frames of a frames.bin whose size is not a multiple of 768 "
        "bytes (a take cut short), with a warning, instead of refusing it.",
    ),
]
ForceOption = Annotated[bool, typer.Option("--force", help="Overwrite an existing output.")]


def _warn(message: str) -> None:
    typer.secho(f"warning: {message}", err=True, fg=typer.colors.YELLOW)


def _image_size(text: str | None) -> tuple[int, int] | None:
    from pkmodel.common.errors import PkmodelError, cut

    if text is None:
        return None
    parts = text.lower().split("x")
    if len(parts) != 2 or not all(p.strip().isdigit() and 0 < int(p) <= 100_000 for p in parts):
        raise PkmodelError(
            f"--image-size must be WIDTHxHEIGHT in pixels, each 1 to 100000 (1920x1440), got "
            f"{cut(text)!r}"
        )
    return int(parts[0]), int(parts[1])


def _refuse_existing(path: Path, force: bool) -> None:
    from pkmodel.common.atomic import check_writable
    from pkmodel.common.errors import PkmodelError

    if path.exists() and not force:
        raise PkmodelError(f"{path} already exists; pass --force to overwrite it")
    if path.is_dir() and any(p.name not in TAKE_FILES for p in path.iterdir()):
        # --force replaces a folder whole: only a take folder, never one holding other files
        raise PkmodelError(f"{path} is a folder holding more than a take; choose another output")
    check_writable(path, "the output")


def _own_input(src: Path, out: Path, holds: bool) -> str | None:
    """How an output clashes with the source take ("is the take X", "is inside the take X",
    with ``holds`` for an output that replaces a folder whole also "holds the take X"), or
    None. The take is SRC, or the app's take folder of its meta.json or frames.bin."""
    if not src.exists():
        return None  # reading it says so
    app_files = ("meta.json", "frames.bin")
    take = src
    if src.name in app_files and all((src.parent / name).is_file() for name in app_files):
        take = src.parent  # the app's take folder is read whole
    root, target = take.resolve(), out.resolve()
    if target == root:
        return f"is the take {take}"
    if target.is_relative_to(root):
        return f"is inside the take {take}"
    if holds and root.is_relative_to(target):
        return f"holds the take {take}"
    return None


@app.command("info")
@config_command
def info_command(cfg: Config, src: SrcArgument, allow_partial: AllowPartialOption = False) -> None:
    """What a take holds: frames, duration, measured frame rate, joint schema, joints with 2D and
    with depth per frame, where it came from (and the app's meta for its takes)."""
    from pkmodel.lift.posekit_take import describe_take, load_take

    loaded = load_take(src, allow_partial=allow_partial, warn=_warn)
    lines = describe_take(loaded)
    width = max(len(label) for label, _ in lines)
    for label, value in lines:
        typer.echo(f"{label + ':':{width + 1}s} {value}")


@app.command("convert")
@config_command
def convert_command(
    cfg: Config,
    src: SrcArgument,
    dst: Annotated[
        Path,
        typer.Argument(
            help="Where the converted take goes (a folder or a file; see --format).",
            show_default=False,
            parser=PATH,
        ),
    ],
    format_: Annotated[
        str,
        typer.Option(
            "--format",
            "-f",
            help="posekit: the app's take folder (meta.json + frames.bin; DST.bin or DST.json: "
            "its .bin or .json export); zip: the app's ZIP export; pkmodel: pkmodel's take "
            "(DST.json, DST.bin or DST.zip, else a folder with all three); csv: one row per "
            "frame and joint.",
            show_default=False,
        ),
    ],
    image_size: Annotated[
        str | None,
        typer.Option(
            "--image-size",
            metavar="WxH",
            help="Sensor image size in pixels: an app take (which records none) gets pkmodel "
            "2D in pixels of it (else normalised 0..1); a pkmodel take is normalised by it "
            "instead of by the size its metadata gives.",
            show_default=False,
        ),
    ] = None,
    min_score: float | None = key(
        "lift.min_score",
        "--min-score",
        help="lowest hip score for the app's canonical frame, written as minKeypointScore, "
        "when an app take is made from a pkmodel take (default: that take's lift.min_score, "
        "else 0.3)",
    ),
    allow_partial: AllowPartialOption = False,
    force: ForceOption = False,
) -> None:
    """Convert a take between pkmodel's and the PoseKit app's formats, or to CSV.

    A take written for the app is what the app would have written: 19 joints, normalised 2D,
    pelvis and neck as the app derives them, the app's playback pose (its mirror image
    included), meta.json as Swift encodes it. An app take read and written again is the same
    bytes. CSV columns: frame, timestamp, joint, x_norm, y_norm, score, camera_x, camera_y,
    camera_z, canonical_x, canonical_y, canonical_z, depth_confidence (empty cells: unknown).
    Nothing is written when the source cannot be read.

    Mapping and losses: docs/posekit-app.md.
    """
    from pkmodel.common.errors import PkmodelError
    from pkmodel.lift.posekit_take import (
        load_take,
        take_to_posekit,
        write_pkmodel_take,
        write_posekit,
        write_posekit_zip,
        write_take_csv,
    )

    if format_ not in FORMATS:
        raise PkmodelError(f"--format must be one of {', '.join(FORMATS)}, got {format_!r}")
    cfg.check("lift.min_score")  # --min-score in [0, 1]; the other lift keys are not used
    suffix = dst.suffix.lower()
    if suffix in TAKE_SUFFIXES and suffix not in OUTPUT_SUFFIXES[format_]:
        writes = sorted(OUTPUT_SUFFIXES[format_])
        if format_ in ("posekit", "pkmodel"):
            writes.append("a folder")
        raise PkmodelError(
            f"output {dst} ends in {suffix}, which --format {format_} does not write "
            f"(it writes {', '.join(writes)})"
        )
    size = _image_size(image_size)
    clash = _own_input(src, dst, holds=True)
    if clash:  # --force or not: the take would be destroyed (as data split and merge refuse)
        raise PkmodelError(
            f"output {dst} {clash} being converted, which it would overwrite or alter: choose "
            "another output"
        )
    _refuse_existing(dst, force)
    # An app take keeps its normalised 2D exactly unless pixels are asked for (pkmodel output).
    loaded = load_take(
        src, allow_partial, size if format_ == "pkmodel" else None, warn=_warn
    )  # fmt: skip
    pkmodel_size = size if loaded.posekit is None else None
    take = loaded.take
    if format_ != "pkmodel" and loaded.posekit is None:  # normalised 2D needs the image size
        from pkmodel.lift.posekit_take import image_size_of

        try:
            image_size_of(take, pkmodel_size)
        except PkmodelError as e:  # it names the recording; say which file is converted
            raise PkmodelError(f"{src}: {e}") from None
    if format_ == "pkmodel":
        write_pkmodel_take(take, dst)
    elif format_ == "csv":
        write_take_csv(take, dst, pkmodel_size)
    else:
        # a minKeypointScore given here wins over the take's own (its lift.min_score)
        given = cfg.sources.get("lift.min_score", "default") != "default"
        try:
            posekit = take_to_posekit(take, pkmodel_size, cfg.lift.min_score if given else None)
        except PkmodelError as e:  # it speaks of "the take": say which file that is
            raise PkmodelError(f"{src}: {e}") from None
        if format_ == "zip":
            write_posekit_zip(posekit, dst)
        else:
            write_posekit(posekit, dst)
    typer.echo(f"wrote {dst} ({take.num_frames} frames, {format_}) from {loaded.kind}")


@app.command("plot")
@config_command
def plot_command(
    cfg: Config,
    src: SrcArgument,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            "-o",
            help="Folder of the two pictures (default: SRC's name + _plots, beside it).",
            show_default=False,
            parser=PATH,
        ),
    ] = None,
    frames: int | None = key("lift.sheet_frames", "--frames"),
    allow_partial: AllowPartialOption = False,
    force: ForceOption = False,
) -> None:
    """Plot a take: OUT/trajectories.png (every joint's 2D position, depth and canonical height
    over time) and OUT/canonical_3d.png (a contact sheet of the canonical 3D pose)."""
    import tempfile

    from pkmodel.common.atomic import atomic_write_bytes
    from pkmodel.common.errors import PkmodelError
    from pkmodel.lift.pipeline import plot_canonical_sheet
    from pkmodel.lift.posekit_take import load_take

    cfg.check("lift.sheet_frames")  # --frames >= 1, before anything is read or written
    out = (
        out if out is not None else src.parent / f"{src.stem if src.is_file() else src.name}_plots"
    )
    clash = _own_input(src, out, holds=False)
    if clash:
        raise PkmodelError(
            f"--out {out} {clash} being plotted, which it would alter: choose another folder"
        )
    targets = [out / "trajectories.png", out / "canonical_3d.png"]
    for target in targets:
        _refuse_existing(target, force)
    loaded = load_take(src, allow_partial=allow_partial, warn=_warn)
    take = loaded.take  # load_take refuses a take of no frames
    # Both pictures are drawn before either is written: a failure leaves the earlier pair.
    trajectories = _plot_trajectories(take, f"{src.name}: joints over time")
    with tempfile.TemporaryDirectory(prefix="pkmodel-plot-") as tmp:
        sheet = Path(tmp) / "canonical_3d.png"
        plot_canonical_sheet(
            take.joints_canonical, take.timestamp, sheet, cfg.lift.sheet_frames,
            title=f"{src.name}: canonical 3D pose ({loaded.kind})",
        )  # fmt: skip
        canonical = sheet.read_bytes()
    for target, data in zip(targets, (trajectories, canonical), strict=True):
        atomic_write_bytes(target, data)
        typer.echo(f"wrote {target}")


def _plot_trajectories(take, title: str) -> bytes:
    """A PNG of four panels over time, one line per joint: 2D x and y, camera depth z and
    canonical height y (NaN leaves gaps)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    unit = "normalised" if take.metadata.get("image_size") == [1, 1] else "px"
    t = take.timestamp - take.timestamp[0]
    panels = [
        (take.keypoints_2d[..., 0], f"2D x ({unit})"),
        (take.keypoints_2d[..., 1], f"2D y ({unit}, down)"),
        (take.joints_camera[..., 2], "depth: camera z (m)"),
        (take.joints_canonical[..., 1], "canonical y: up from the pelvis (m)"),
    ]
    fig, axes = plt.subplots(2, 2, figsize=(12, 7), sharex=True)
    colors = plt.get_cmap("tab20")
    for ax, (values, label) in zip(axes.ravel(), panels, strict=True):
        for j, name in enumerate(take.joint_names):
            ax.plot(t, values[:, j], color=colors(j % 20), lw=1.0, marker=".", ms=3, label=name)
        ax.set_ylabel(label, fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    for ax in axes[1]:
        ax.set_xlabel("time from the first frame (s)", fontsize=8)
    axes[0, 1].legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return buf.getvalue()


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="take")
