"""`pkmodel evaluate`: COCO OKS AP (pycocotools), PCK and pictures for a checkpoint or the oracle."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from pkmodel.cli.common import PATH, config_command, key
from pkmodel.config import Config


@config_command
def evaluate_command(
    cfg: Config,
    weights: Annotated[
        Path | None,
        typer.Option(
            help="Network to evaluate: checkpoint (.pt), ONNX export (.onnx) or Core ML model "
            "(.mlpackage, .mlmodelc; run by pkmodel's Core ML runner).",
            show_default=False,
            parser=PATH,
        ),
    ] = None,
    oracle: Annotated[
        bool,
        typer.Option(
            "--oracle",
            help="No network: decode the ground-truth targets (the ceiling of the "
            "representation; checks that nothing between labels and metric loses accuracy).",
        ),
    ] = False,
    labels: Annotated[
        Path | None,
        typer.Option(
            help="Prepared labels NAME.json (default: data.prepared_dir / data.val_split.json).",
            show_default=False,
            parser=PATH,
        ),
    ] = None,
    annotations: Annotated[
        Path | None,
        typer.Option(
            help="Evaluate a COCO person-keypoint file directly (with --images): every person "
            "with labelled keypoints is cropped from its ground-truth box as prepare-coco does.",
            show_default=False,
            parser=PATH,
        ),
    ] = None,
    images: Annotated[
        Path | None,
        typer.Option(help="Image folder of --annotations.", show_default=False, parser=PATH),
    ] = None,
    out: Path | None = key("eval.out_dir"),
    flip_test: bool | None = key("eval.flip_test"),
    batch_size: int | None = key("eval.batch_size"),
    device: str | None = key("train.device"),
    pck_norm: str | None = key("eval.pck_norm"),
    pictures: Annotated[
        int,
        typer.Option(help="Samples in best.png and worst.png (0 = no pictures)."),
    ] = 8,
    error_budget: Annotated[
        bool,
        typer.Option(
            "--error-budget",
            help="Also score the predictions with one kind of error taken away at a time "
            "(left/right swaps, offsets, cell misses, all errors scaled): what limits the AP.",
        ),
    ] = False,
    allow_missing_images: Annotated[
        bool,
        typer.Option(
            "--allow-missing-images",
            help="With --annotations: evaluate the people of the images that are there even "
            "when more than half of the images are missing from --images (refused otherwise).",
        ),
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress bars.")] = False,
) -> None:
    """Evaluate a checkpoint (or the oracle) with COCO OKS AP, PCK and pictures.

    Predictions are mapped back to original image pixels, written as a COCO results file and
    scored by pycocotools' COCOeval against the ORIGINAL annotation file, on the images of the
    evaluated people: every ground-truth person with labelled keypoints on those images counts.
    Writes OUT/metrics.json, OUT/results.json, OUT/best.png, OUT/worst.png, OUT/pck_joints.png.
    """
    import tempfile

    from pkmodel.common.atomic import check_writable
    from pkmodel.common.errors import PkmodelError
    from pkmodel.engine.error_budget import format_error_budget
    from pkmodel.engine.evaluate import evaluate_split, prepare_for_evaluation
    from pkmodel.engine.report import format_metrics, write_evaluation

    if (weights is None) == (not oracle):
        raise PkmodelError("give either --weights (a network) or --oracle (exactly one of them)")
    check_writable(cfg.eval.out_dir, "--out (eval.out_dir)", folder=True)  # before the model runs
    if (annotations is None) != (images is None):
        raise PkmodelError("--annotations and --images go together (a COCO file and its images)")
    if labels is not None and annotations is not None:
        raise PkmodelError("give either --labels (a prepared split) or --annotations, not both")
    if pictures < 0:
        raise PkmodelError(f"--pictures must be 0 or more, got {pictures}")

    model = None
    from pkmodel.engine.networks import load_network, network_device

    torch_device = network_device(weights, cfg.train.device) if weights else None
    if weights is not None:
        network = load_network(weights, torch_device)
        network.configure(cfg)  # the network is what the checkpoint or export says it is
        model = network.module
        saved = network.config
        if saved is not None and saved.prepare.expand_ratio != cfg.prepare.expand_ratio:
            typer.secho(
                f"note: {weights} was trained on crops with prepare.expand_ratio "
                f"{saved.prepare.expand_ratio}, this evaluation uses {cfg.prepare.expand_ratio}",
                err=True,
                fg=typer.colors.YELLOW,
            )
    if torch_device is None:
        from pkmodel.common.devices import select_device

        torch_device = select_device(cfg.train.device)

    with tempfile.TemporaryDirectory(prefix="pkmodel-eval-") as tmp:
        if annotations is not None:
            summary = prepare_for_evaluation(
                annotations,
                images,
                tmp,
                cfg,
                progress=not quiet,
                allow_missing=allow_missing_images,
            )
            for bad in summary.unreadable:
                typer.secho(
                    f"warning: {bad['file']}: {bad['reason']}; its people are not evaluated",
                    err=True,
                    fg=typer.colors.YELLOW,
                )
            labels_path = summary.labels
        else:
            labels_path = labels or cfg.data.prepared_dir / f"{cfg.data.val_split}.json"
        evaluation = evaluate_split(
            labels_path,
            cfg,
            model,
            torch_device,
            flip_test=cfg.eval.flip_test,
            progress=not quiet,
            annotations=annotations,
            budget=error_budget,
        )
        extra = {
            "weights": str(weights) if weights else None,
            "labels": None if annotations else str(labels_path),
            "annotations": str(annotations or evaluation.labels.get("annotations")),
            "input_size": cfg.model.input_size,
            "expand_ratio": evaluation.labels.get("expand_ratio"),
        }
        paths = write_evaluation(evaluation, cfg.eval.out_dir, pictures, extra)
    typer.echo(format_metrics(evaluation.metrics))
    if error_budget:
        typer.echo(format_error_budget(evaluation.metrics["error_budget"]))
    typer.echo("wrote " + ", ".join(str(p) for p in paths.values()))


def register(app: typer.Typer) -> None:
    app.command("evaluate")(evaluate_command)
