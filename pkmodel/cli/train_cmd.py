"""`pkmodel train`: train the network on prepared data (also under torchrun for DDP)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from pkmodel.cli.common import config_command, key
from pkmodel.config import Config


@config_command
def train_command(
    cfg: Config,
    out: Path | None = key("train.out_dir", "--out"),
    epochs: int | None = key("train.epochs"),
    minutes: float | None = key(
        "train.minutes",
        help="time budget: after epoch 1 and a validation, the epochs are set to what fits "
        "into this many minutes in all at the measured speed; the schedule (warmup, cosine) "
        "spans them. Resuming keeps the epochs chosen then (--minutes 0 drops the budget: "
        "the run trains on to --epochs)",
    ),
    batch_size: int | None = key("train.batch_size"),
    lr: float | None = key("train.lr"),
    device: str | None = key("train.device"),
    workers: int | None = key("train.workers"),
    resume: Annotated[
        bool,
        typer.Option(
            "--resume",
            help="Continue exactly from OUT/last.pt (model, EMA, optimizer, schedule, RNG).",
        ),
    ] = False,
    finetune: Path | None = key(
        "train.finetune",
        help="start from these weights only: a pkmodel checkpoint, a PoseKit .pth, or the "
        "PoseKit app's .mlmodelc / .mlpackage (imported; sets model.arch posekit)",
    ),
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Start over in a run folder that already holds checkpoints (replaces them).",
        ),
    ] = False,
    max_steps: Annotated[
        int | None,
        typer.Option(help="Stop after this many optimizer steps (smoke runs).", show_default=False),
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress bars.")] = False,
) -> None:
    """Train the pose network on the prepared splits (data.prepared_dir).

    Validates with COCO OKS AP every train.val_every epochs, writes last.pt every epoch and
    best.pt on a new best AP, metrics.jsonl and curves.png into the run folder.

    \b
    For several GPUs:
      torchrun --nproc_per_node N $(which pkmodel) train ...
    """
    from pkmodel.common.devices import dist_from_env
    from pkmodel.common.errors import PkmodelError
    from pkmodel.engine.train import train

    if max_steps is not None and max_steps < 1:
        raise PkmodelError(f"--max-steps {max_steps} must be at least 1")
    resume_path = None
    # the parameter itself holds no value: config_command moved it into cfg
    if resume and cfg.sources.get("train.finetune") == "--finetune":
        raise PkmodelError(
            "--finetune starts a run from other weights and --resume continues OUT/last.pt: "
            "give one of them"
        )
    if resume:
        resume_path = Path(cfg.train.out_dir) / "last.pt"
        if not resume_path.is_file():
            raise PkmodelError(f"--resume: {resume_path} does not exist (train.out_dir)")
    result = train(
        cfg, resume=resume_path, progress=not quiet, max_steps=max_steps, overwrite=force
    )
    if not dist_from_env().is_main:  # under torchrun rank 0 speaks for the run
        return
    if resume_path is not None and result.epochs_run == 0:
        typer.echo(
            f"nothing to train: {resume_path} has already trained {result.resumed_from} "
            f"epoch(s) and {result.reason}; best AP {result.best_ap:.4f} at epoch "
            f"{result.best_epoch}"
        )
        return
    typer.echo(
        f"done: {result.epochs_run} epoch(s) in {result.seconds:.0f} s; best AP "
        f"{result.best_ap:.4f} at epoch {result.best_epoch}; checkpoints in {result.out_dir}"
    )


def register(app: typer.Typer) -> None:
    app.command("train")(train_command)
