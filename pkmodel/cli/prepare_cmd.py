"""`pkmodel prepare-coco` (person crops + labels) and `pkmodel show-samples` (label pictures)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from pkmodel.cli.common import PATH, config_command, key
from pkmodel.config import Config


@config_command
def prepare_coco(
    cfg: Config,
    split: Annotated[
        str,
        typer.Option(
            "--split",
            help="Split name: writes DATASET_DIR/NAME.json and DATASET_DIR/imgs/NAME/. For the "
            "names of data.train_split / data.val_split, --images and --annotations default "
            "to data.train_* / data.val_*.",
        ),
    ] = "train",
    # --images and --annotations are not key()s: which keys they default to (data.train_* or
    # data.val_*) depends on --split, and they set neither.
    images: Annotated[
        Path | None,
        typer.Option(
            "--images", help="Folder of the images the annotation file names.", parser=PATH
        ),
    ] = None,
    annotations: Annotated[
        Path | None,
        typer.Option(
            "--annotations",
            help="COCO person-keypoint JSON (e.g. person_keypoints_train2017.json).",
            parser=PATH,
        ),
    ] = None,
    out: Path | None = key("data.prepared_dir", "--out"),
    workers: int | None = key("prepare.workers"),
    allow_missing_images: Annotated[
        bool,
        typer.Option(
            "--allow-missing-images",
            help="Prepare the people of the images that are there even when more than half of "
            "the images the annotation file names are missing from --images (refused otherwise: "
            "a wrong folder would replace good labels with a few people).",
        ),
    ] = False,
) -> None:
    """Crop every usable COCO person into a square image and write versioned labels.

    One crop per person (the bbox's longer side x prepare.expand_ratio, zero padding outside
    the image), resized to prepare.crop_size. Filters (prepare.*): crowd annotations, too few
    labelled joints, coordinates that are not numbers or far off the image, small area, too many
    other people inside the crop. Rerunning reuses finished crops whose source image is unchanged.
    """
    from pkmodel.common.errors import PkmodelError
    from pkmodel.data.prepare import prepare_split

    defaults = {
        cfg.data.train_split: (cfg.data.train_images, cfg.data.train_annotations),
        cfg.data.val_split: (cfg.data.val_images, cfg.data.val_annotations),
    }
    if split in defaults:
        images = images or defaults[split][0]
        annotations = annotations or defaults[split][1]
    elif images is None or annotations is None:
        raise PkmodelError(
            f"split '{split}' has no default data: pass --images and --annotations "
            f"(defaults exist for '{cfg.data.train_split}' and '{cfg.data.val_split}')"
        )
    summary = prepare_split(
        split,
        images,
        annotations,
        cfg.data.prepared_dir,
        cfg.prepare,
        allow_missing=allow_missing_images,
    )
    typer.echo(summary.format())


@config_command
def show_samples(
    cfg: Config,
    # Not key("data.train_split"): it picks the split to show (any prepared split) and sets
    # no key; data.train_split is only its default.
    split: Annotated[
        str | None,
        typer.Option("--split", help="Prepared split to show (default: data.train_split)."),
    ] = None,
    dataset_dir: Path | None = key("data.prepared_dir", "--dataset"),
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help="Output picture (.png or .jpg) (default: DATASET_DIR/samples_NAME.png).",
            parser=PATH,
        ),
    ] = None,
    count: Annotated[int, typer.Option("--count", help="Number of samples in the grid.")] = 16,
    cols: Annotated[int, typer.Option("--cols", help="Samples per row.")] = 4,
    epoch: Annotated[
        int, typer.Option("--epoch", help="Draw the augmentation of this epoch (with train.seed).")
    ] = 0,
    augment: Annotated[
        bool,
        typer.Option(
            "--augment/--no-augment",
            help="Show training augmentation, or the plain validation view.",
        ),
    ] = True,
) -> None:
    """Draw a grid of (augmented) training samples with their skeletons, to check the labels.

    Main person: left side blue, right side red, middle yellow; other people violet; centers
    green. A caption gives the sample index and 'flip' when it was mirrored (left and right
    must then still be blue and red on the person's own left and right).
    """
    from pkmodel.common.draw import save_image
    from pkmodel.common.errors import PkmodelError
    from pkmodel.data.dataset import sample_grid

    # what sample_grid reads, checked as train checks it
    cfg.check("data", "model", "targets", "augment", "train.seed")
    name = split or cfg.data.train_split
    if not name or "/" in name or "\\" in name or name.startswith("."):
        raise PkmodelError(f"--split '{name}' must be the name of a prepared split (e.g. train)")
    if epoch < 0:
        raise PkmodelError(f"--epoch must be 0 or more, got {epoch}")
    labels = cfg.data.prepared_dir / f"{name}.json"
    target = out or cfg.data.prepared_dir / f"samples_{name}.png"
    if target.suffix.lower() not in (".png", ".jpg", ".jpeg"):
        raise PkmodelError(f"--out {target} must end in .png or .jpg")
    if count < 1 or cols < 1:
        raise PkmodelError("--count and --cols must be at least 1")
    grid, shown = sample_grid(labels, cfg, count=count, cols=cols, epoch=epoch, augment=augment)
    save_image(target, grid)
    typer.echo(f"wrote {target} ({shown} samples of {labels})")


def register(app: typer.Typer) -> None:
    app.command("prepare-coco")(prepare_coco)
    app.command("show-samples")(show_samples)
