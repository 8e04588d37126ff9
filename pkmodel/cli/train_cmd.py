"""`pkmodel train`: train the network on prepared data (also under torchrun for DDP)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from pkmodel.cli.common import ConfigOption, SetOption, resolve_config, user_errors


@user_errors
def train_command(
    config: ConfigOption = None,
    set_: SetOption = None,
    out: Annotated[
        Path | None, typer.Option("--out", help="Run folder (train.out_dir).", show_default=False)
    ] = None,
    epochs: Annotated[
        int | None, typer.Option(help="Training epochs (train.epochs).", show_default=False)
    ] = None,
    minutes: Annotated[
        float | None,
        typer.Option(
            help="Time budget (train.minutes): after epoch 1 and a validation, the epochs are "
            "set to what fits into this many minutes in all at the measured speed; the schedule "
            "(warmup, cosine) spans them. Resuming keeps the epochs chosen then.",
            show_default=False,
        ),
    ] = None,
    batch_size: Annotated[
        int | None,
        typer.Option(help="Global batch size (train.batch_size).", show_default=False),
    ] = None,
    lr: Annotated[
        float | None, typer.Option(help="Peak learning rate (train.lr).", show_default=False)
    ] = None,
    device: Annotated[
        str | None,
        typer.Option(help="auto, cpu, cuda, cuda:N or mps (train.device).", show_default=False),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(help="DataLoader worker processes (train.workers).", show_default=False),
    ] = None,
    resume: Annotated[
        bool,
        typer.Option(
            "--resume",
            help="Continue exactly from OUT/last.pt (model, EMA, optimizer, schedule, RNG).",
        ),
    ] = False,
    finetune: Annotated[
        Path | None,
        typer.Option(
            help="Start from this checkpoint's weights only (train.finetune).", show_default=False
        ),
    ] = None,
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
    For several GPUs: torchrun --nproc_per_node N $(which pkmodel) train ...
    """
    from pkmodel.common.errors import PkmodelError
    from pkmodel.engine.train import train

    cfg = resolve_config(
        config,
        set_,
        train__out_dir=out,
        train__epochs=epochs,
        train__minutes=minutes,
        train__batch_size=batch_size,
        train__lr=lr,
        train__device=device,
        train__workers=workers,
        train__finetune=finetune,
    )
    if max_steps is not None and max_steps < 1:
        raise PkmodelError(f"--max-steps {max_steps} must be at least 1")
    resume_path = None
    if resume:
        resume_path = Path(cfg.train.out_dir) / "last.pt"
        if not resume_path.is_file():
            raise PkmodelError(f"--resume: {resume_path} does not exist (train.out_dir)")
    result = train(
        cfg, resume=resume_path, progress=not quiet, max_steps=max_steps, overwrite=force
    )
    typer.echo(
        f"done: {result.epochs_run} epoch(s) in {result.seconds:.0f} s; best AP "
        f"{result.best_ap:.4f} at epoch {result.best_epoch}; checkpoints in {result.out_dir}"
    )


def register(app: typer.Typer) -> None:
    app.command("train")(train_command)
