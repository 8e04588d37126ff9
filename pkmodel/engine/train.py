"""pkmodel train: the training loop, from one CPU to many GPUs (torchrun + DDP).

Shape of the loop (after torchvision's references): resolve device and distributed state, build
data, model, loss, optimizer, schedule, EMA; optionally resume everything from ``last.pt``;
per epoch: reseed from (seed, epoch) so an interrupted run resumed at an epoch boundary repeats
exactly, train with gradient clipping by norm and AMP on CUDA, update the EMA, validate with
COCO OKS AP every ``val_every`` epochs, and write ``last.pt`` / ``best.pt`` atomically.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from pkmodel.common.atomic import check_writable, remove_interrupted_writes
from pkmodel.common.devices import (
    DistInfo,
    broadcast_float,
    dist_from_env,
    epoch_seed,
    init_distributed,
    rng_state,
    seed_everything,
    select_device,
    set_rng_state,
)
from pkmodel.common.errors import PkmodelError
from pkmodel.config import Config
from pkmodel.data.dataset import PoseDataset
from pkmodel.engine.batches import (
    input_images,
    labels_path,
    per_process_batch,
    set_memory_format,
    to_device,
    train_loader,
)
from pkmodel.engine.budget import TimeBudget
from pkmodel.engine.evaluate import evaluate_model
from pkmodel.engine.optim import LRSchedule, ModelEMA, build_optimizer
from pkmodel.engine.posekit_import import calibrate_batch_norms, finetune_weights
from pkmodel.engine.runlog import RunLog
from pkmodel.engine.scoring import annotation_file, sample_ids
from pkmodel.mlprogram.run import is_coreml_path
from pkmodel.model.checkpoint import check_resumable, load_checkpoint, save_checkpoint
from pkmodel.model.loss import PoseLoss
from pkmodel.model.network import build_model

# What a run writes into its folder (an interrupted atomic write of one leaves .NAME.*.tmp).
RUN_FILES = ("last.pt", "best.pt", "metrics.jsonl", "curves.png")
# training images whose statistics replace the folded batch norms of a Core ML finetune source
BN_CALIBRATION_IMAGES = 256


@dataclass
class TrainResult:
    out_dir: Path
    epochs_run: int
    best_ap: float
    best_epoch: int
    last_metrics: dict[str, Any]
    seconds: float
    stopped_early: bool
    resumed_from: int = 0  # the epochs the resumed checkpoint had already trained


def _unwrap(model: nn.Module) -> nn.Module:
    return model.module if hasattr(model, "module") else model


@dataclass
class Run:
    """What one training run carries from step to step: the model (DDP-wrapped under torchrun)
    and everything that updates it, where it runs, and the counters a checkpoint saves."""

    cfg: Config
    dist: DistInfo
    device: torch.device
    model: nn.Module
    ema: ModelEMA | None
    loss_fn: PoseLoss
    optimizer: torch.optim.Optimizer
    schedule: LRSchedule
    scaler: torch.amp.GradScaler | None  # fp16 AMP only
    amp_dtype: torch.dtype | None  # None: no mixed precision
    steps_per_epoch: int
    progress: bool = True
    max_steps: int | None = None
    step: int = 0
    best: dict[str, Any] = field(default_factory=lambda: {"ap": -1.0, "epoch": 0, "bad": 0})

    def finished_steps(self) -> bool:
        return self.max_steps is not None and self.step >= self.max_steps

    def eval_model(self) -> nn.Module:
        """The weights validation and checkpoints' users see: the EMA when kept."""
        return self.ema.module if self.ema is not None else _unwrap(self.model)

    def state(self, epoch: int) -> dict[str, Any]:
        """The checkpoint of the run after ``epoch``: enough to resume it exactly."""
        return {
            "model": _unwrap(self.model).state_dict(),
            "ema": self.ema.module.state_dict() if self.ema is not None else None,
            "ema_updates": self.ema.updates if self.ema is not None else 0,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.schedule.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "epoch": epoch,
            "step": self.step,
            "best": self.best,
            "rng": rng_state(),
            "config": self.cfg.to_dict(),
        }

    def load(self, checkpoint: dict[str, Any], path: Path) -> int:
        """Continue from ``path``'s checkpoint of this run; returns the epoch it ended."""
        from pkmodel.model.checkpoint import load_weights_into

        load_weights_into(self.model, checkpoint["model"], f"{path}: the 'model' weights")
        try:
            self.optimizer.load_state_dict(checkpoint["optimizer"])
        except (ValueError, KeyError, TypeError) as e:
            raise PkmodelError(
                f"{path} cannot be resumed: its 'optimizer' does not fit this model's "
                f"optimizer ({e})"
            ) from None
        self.schedule.load_state_dict(checkpoint["scheduler"])
        if self.scaler is not None and checkpoint.get("scaler"):
            self.scaler.load_state_dict(checkpoint["scaler"])
        if self.ema is not None and checkpoint.get("ema"):
            load_weights_into(self.ema.module, checkpoint["ema"], f"{path}: the 'ema' weights")
            self.ema.updates = int(checkpoint.get("ema_updates", 0))
        self.step = int(checkpoint["step"])
        self.best = dict(checkpoint["best"])
        set_rng_state(checkpoint["rng"])
        return int(checkpoint["epoch"])

    def train_epoch(self, loader: Any, epoch: int) -> dict[str, Any]:
        """One pass over ``loader``: the epoch's mean loss terms over every process, speed,
        and the seconds of each step (the time budget's estimate)."""
        from tqdm import tqdm

        t = self.cfg.train
        device, dist = self.device, self.dist
        sums: dict[str, torch.Tensor] = {}
        count = torch.zeros((), device=device)
        data_time = compute_time = 0.0
        bar = tqdm(
            total=len(loader),
            desc=f"epoch {epoch}/{t.epochs}",
            disable=not (self.progress and dist.is_main),
            leave=False,
            dynamic_ncols=True,
        )
        tick = time.perf_counter()
        images = 0
        step_seconds: list[float] = []  # data + compute per step
        self.model.train()
        for batch in loader:
            batch = to_device(batch, device)
            got = time.perf_counter()
            data_time += got - tick
            lr = self.schedule.apply(self.optimizer, self.step)
            loss, terms = self._step(batch, epoch, bar)
            self.step += 1
            n = batch["image"].shape[0]
            images += n
            count += n
            for key, value in {"loss": loss, **terms}.items():
                sums[key] = sums.get(key, torch.zeros((), device=device)) + value.detach() * n
            now = time.perf_counter()
            step_seconds.append(now - tick)
            compute_time += now - got
            tick = now
            bar.set_postfix(loss=f"{loss.item():.4f}", lr=f"{lr:.2e}")
            bar.update(1)
            if self.finished_steps():
                break
        bar.close()
        # Epoch means over every sample of every process.
        keys = sorted(sums)
        packed = torch.stack([sums[k] for k in keys] + [count])
        if dist.enabled:
            torch.distributed.all_reduce(packed)
        total = max(packed[-1].item(), 1.0)
        out: dict[str, Any] = {f"train/{k}": packed[i].item() / total for i, k in enumerate(keys)}
        elapsed = max(data_time + compute_time, 1e-9)
        out.update(
            {
                "step_seconds": step_seconds,
                "lr": self.optimizer.param_groups[0]["lr"],
                "train/images_per_s": images * dist.world_size / elapsed,
                "train/data_time_share": data_time / elapsed,
            }
        )
        return out

    def _step(self, batch: dict[str, Any], epoch: int, bar: Any) -> tuple[torch.Tensor, dict]:
        """Forward, loss, backward (clipped by norm), optimizer and EMA on one batch."""
        t = self.cfg.train
        with torch.autocast(
            self.device.type,
            dtype=self.amp_dtype or torch.float16,
            enabled=self.amp_dtype is not None,
        ):
            outputs = self.model(input_images(batch, self.cfg))
        outputs = tuple(o.float() for o in outputs)
        loss, terms = self.loss_fn(outputs, batch)
        bad = torch.tensor(0.0 if torch.isfinite(loss) else 1.0, device=self.device)
        if self.dist.enabled:
            torch.distributed.all_reduce(bad)
        if bad.item() > 0:
            bar.close()
            raise PkmodelError(
                f"the loss became {loss.item()} at epoch {epoch}, step {self.step + 1}; training "
                "stopped and last.pt from the previous epoch is kept (try a lower train.lr "
                "or train.grad_clip_norm)"
            )
        self.optimizer.zero_grad(set_to_none=True)
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.unscale_(self.optimizer)
        else:
            loss.backward()
        if t.grad_clip_norm > 0:
            nn.utils.clip_grad_norm_(self.model.parameters(), t.grad_clip_norm)
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        if self.ema is not None:
            self.ema.update(_unwrap(self.model))
        return loss, terms

    def validate(self, epoch: int) -> tuple[dict[str, float], bool]:
        """Rank 0 validates (its loss must not wait for the other processes); every process
        gets the AP, steps the plateau schedule and keeps the best AP of ``epoch`` or counts a
        validation without gain. Returns the row entries (rank 0) and whether the AP improved."""
        row: dict[str, float] = {}
        if self.dist.is_main:
            val = validate(
                self.eval_model(), PoseLoss(self.cfg.loss), self.cfg, self.device, self.progress
            )
            row = {f"val/{k}": v for k, v in val.items()}
        ap = broadcast_float(row.get("val/AP", 0.0), self.dist, self.device)
        self.schedule.on_validation(ap)
        if ap > self.best["ap"] + 1e-6:
            self.best.update(ap=ap, epoch=epoch, bad=0)
            return row, True
        self.best["bad"] += 1
        return row, False


def _adopt_finetune_arch(cfg: Config, saved: dict[str, Any], path: Path) -> None:
    """A run started from PoseKit's weights (``train.finetune`` set ``model.arch = "posekit"``)
    resumes as PoseKit's network without the user repeating --finetune or --set model.arch."""
    finetune = saved.get("train", {}).get("finetune")
    model = saved.get("model", {})
    if finetune and model.get("arch") == "posekit" and cfg.model.arch != "posekit":
        source = f"{path} (started from train.finetune {finetune})"
        cfg.set("model.arch", "posekit", source)
        cfg.set("model.width_mult", float(model.get("width_mult", 1.0)), source)


def _check_resume_config(cfg: Config, saved: dict[str, Any], path: Path) -> None:
    """The model must be the one in the checkpoint; other differences are reported."""
    now = cfg.to_dict()
    if now["model"] != saved.get("model"):
        diff = [k for k in now["model"] if now["model"][k] != saved.get("model", {}).get(k)]
        raise PkmodelError(
            f"cannot resume from {path}: model settings differ from the checkpoint's "
            f"({', '.join('model.' + k for k in diff)})"
        )


def train(
    cfg: Config,
    resume: Path | None = None,
    progress: bool = True,
    max_steps: int | None = None,
    overwrite: bool = False,
) -> TrainResult:
    """Run training as configured; ``resume`` is a ``last.pt`` to continue from.

    A run folder that already holds checkpoints is refused (nothing written is lost) unless
    ``resume`` continues them or ``overwrite`` starts over in it.

    ``max_steps`` stops after that many optimizer steps in total (for tests and benchmarks).
    Under torchrun the process group is joined here and left at the end (also on an error), so
    no process exits while another still talks to it.
    """
    t0 = time.perf_counter()
    # [train] and what a run also reads (validation decodes and scores), before anything starts
    cfg.check("train", "targets", "loss", "augment", "decoder", "eval")
    dist = dist_from_env()
    device = select_device(cfg.train.device, dist.local_rank)
    out_dir = Path(cfg.train.out_dir)
    check_writable(out_dir, "--out (train.out_dir)", folder=True)
    earlier = [f for f in ("last.pt", "best.pt") if (out_dir / f).exists()]
    if resume is None and earlier and not overwrite:
        raise PkmodelError(
            f"{out_dir} already holds {' and '.join(earlier)} of an earlier run: --resume "
            "continues it, --force starts over (its checkpoints and metrics are replaced), or "
            "choose another --out (train.out_dir)"
        )
    # Starting over (--force): the earlier run's checkpoints stay until this run has written its
    # first last.pt (_loop), so a run that fails or is interrupted before that loses nothing.
    replaced = earlier if resume is None else []
    if dist.is_main:
        remove_interrupted_writes(out_dir, RUN_FILES)
    created = init_distributed(dist, device)
    try:
        checkpoint = None
        if resume is not None:
            checkpoint = load_checkpoint(resume)
            if checkpoint.get("source") == "posekit":  # weights only, no training state
                raise PkmodelError(
                    f"cannot resume from {resume}: it is a PoseKit state dict (weights only); "
                    "start from it with --finetune"
                )
            check_resumable(checkpoint, resume)
            _adopt_finetune_arch(cfg, checkpoint["config"], resume)
            _check_resume_config(cfg, checkpoint["config"], resume)
        run, dataset = _build_run(cfg, dist, device, checkpoint, progress, max_steps)
        start_epoch = run.load(checkpoint, resume) if checkpoint and resume else 0
        if checkpoint is not None:
            saved_train = checkpoint["config"].get("train", {})
            if cfg.train.minutes > 0 and float(saved_train.get("minutes", 0.0)) > 0:
                # The budget chose the epochs after epoch 1; the resumed run keeps them.
                cfg.set("train.epochs", int(saved_train["epochs"]), "time budget (checkpoint)")
            if start_epoch >= cfg.train.epochs:  # nothing to train: nothing is touched
                return TrainResult(
                    out_dir=Path(cfg.train.out_dir),
                    epochs_run=0,
                    best_ap=float(run.best["ap"]),
                    best_epoch=int(run.best["epoch"]),
                    last_metrics={},
                    seconds=time.perf_counter() - t0,
                    stopped_early=False,
                    resumed_from=start_epoch,
                )
        if dist.enabled:
            ids = [device.index] if device.type == "cuda" else None
            run.model = nn.parallel.DistributedDataParallel(run.model, device_ids=ids)
        # A time budget plans train.epochs after epoch 1 (timed with a validation) and re-plans
        # every epoch; a resumed run keeps the epochs of its checkpoint.
        t = cfg.train
        budget = (
            TimeBudget(t.minutes, t.val_every, t0) if t.minutes > 0 and resume is None else None
        )
        return _loop(run, dataset, start_epoch, resume is not None, budget, t0, replaced)
    finally:
        if created and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


def _build_run(
    cfg: Config,
    dist: DistInfo,
    device: torch.device,
    checkpoint: dict[str, Any] | None,
    progress: bool,
    max_steps: int | None,
) -> tuple[Run, PoseDataset]:
    """The model (random, ImageNet backbone, or train.finetune's weights), loss, optimizer,
    schedule, AMP and EMA for ``cfg``, and the training split; nothing is loaded from
    ``checkpoint`` yet (``Run.load`` does that)."""
    t = cfg.train
    if t.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
    elif device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    weights = None
    if t.finetune is not None and checkpoint is None:  # may set model.arch (PoseKit's files)
        weights = finetune_weights(cfg, t.finetune)
    seed_everything(t.seed)  # the initial weights depend on the seed only

    model = build_model(cfg.model, pretrained=checkpoint is None and t.finetune is None)
    if weights is not None:
        from pkmodel.model.checkpoint import load_weights_into

        load_weights_into(model, weights, f"train.finetune {t.finetune}: the weights")
    set_memory_format(model.to(device), cfg)
    if dist.enabled and device.type == "cuda":
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    loss_fn = PoseLoss(cfg.loss, sync_counts=dist.enabled).to(device)

    dataset = PoseDataset(labels_path(cfg, cfg.data.train_split), cfg, train=True)
    # the validation labels too, now: a mistake in them must not wait for the first epoch's end
    val_labels = labels_path(cfg, cfg.data.val_split)
    val = PoseDataset(val_labels, cfg, train=False)
    sample_ids(val.samples, val_labels)
    annotation_file(val_labels, val.header, None)
    steps_per_epoch = (len(dataset) // dist.world_size) // per_process_batch(cfg, dist)
    if steps_per_epoch == 0:
        raise PkmodelError(
            f"the training split has fewer samples than one batch (train.batch_size "
            f"{t.batch_size}); lower the batch size or prepare more data"
        )
    if weights is not None and is_coreml_path(t.finetune):
        # the app's batch norms are folded (identities): measure real statistics first
        n = min(len(dataset), BN_CALIBRATION_IMAGES)
        calibrate_batch_norms(
            model,
            (
                input_images(
                    {"image": torch.stack([dataset[i]["image"] for i in c.tolist()])}, cfg
                ).to(device)
                for c in torch.arange(n).split(t.batch_size)
            ),
        )
    amp = device.type == "cuda" and t.amp != "off"
    run = Run(
        cfg=cfg,
        dist=dist,
        device=device,
        model=model,
        ema=ModelEMA(model, t.ema_decay) if t.ema else None,
        loss_fn=loss_fn,
        optimizer=build_optimizer(model, cfg),
        schedule=LRSchedule(cfg, steps_per_epoch),
        scaler=torch.amp.GradScaler("cuda") if amp and t.amp == "fp16" else None,
        amp_dtype=(torch.bfloat16 if t.amp == "bf16" else torch.float16) if amp else None,
        steps_per_epoch=steps_per_epoch,
        progress=progress,
        max_steps=max_steps,
    )
    return run, dataset


def _loop(
    run: Run,
    dataset: PoseDataset,
    start_epoch: int,
    resumed: bool,
    budget: TimeBudget | None,
    t0: float,
    replaced: list[str],
) -> TrainResult:
    """Epochs from ``start_epoch`` to ``train.epochs`` (which a time budget may change as it
    goes): train, validate when due, write last.pt (and best.pt), log, stop early if asked.

    ``replaced`` names the checkpoints of an earlier run in the folder (starting over): once
    this run's first last.pt is written, any of them it did not rewrite (an earlier best.pt) is
    removed, so no checkpoint of the earlier run stays beside this run's."""
    cfg, dist, t = run.cfg, run.dist, run.cfg.train
    out_dir = Path(t.out_dir)
    if dist.is_main:  # only now: a run that cannot start leaves no empty folder behind
        out_dir.mkdir(parents=True, exist_ok=True)
    log = RunLog(out_dir, start_epoch if resumed else 0) if dist.is_main else None
    if dist.is_main:
        _print(
            run.progress,
            f"training on {run.device} x{dist.world_size}: {run.steps_per_epoch} steps/epoch, "
            + (
                f"time budget {t.minutes:g} min (epochs set after epoch 1)"
                if budget is not None
                else f"epochs {start_epoch + 1}..{t.epochs}"
            )
            + f", out {out_dir}",
        )

    last_metrics: dict[str, Any] = {}
    stopped_early = False
    loaders = train_loader(dataset, cfg, dist, run.device)
    epoch = start_epoch
    while epoch < t.epochs:  # a time budget may change t.epochs as it goes
        epoch += 1
        iteration_start = time.perf_counter()
        seed_everything(epoch_seed(t.seed, epoch, dist.rank))
        stats = run.train_epoch(loaders.epoch(epoch), epoch)
        train_s = time.perf_counter() - iteration_start
        step_s = stats.pop("step_seconds")
        row: dict[str, Any] = {"epoch": epoch, "step": run.step, **stats}

        if budget is not None and budget.val_s is not None:
            # before deciding on validation: this may now be the last epoch
            _replan(run, budget, row, epoch, train_s, step_s)
        validate_now = epoch % t.val_every == 0 or epoch == t.epochs
        if budget is not None and budget.val_s is None:
            validate_now = True  # the first plan needs a validation's time
        if run.finished_steps():
            validate_now = True
        improved = False
        val_start = time.perf_counter()
        if validate_now:
            val_row, improved = run.validate(epoch)
            row.update(val_row)
        val_s = time.perf_counter() - val_start if validate_now else None
        if budget is not None and budget.val_s is None:
            budget.val_s = val_s
            _replan(run, budget, row, epoch, train_s, step_s)
        row["seconds"] = round(time.perf_counter() - t0, 2)
        last_metrics = row

        if dist.is_main:
            state = run.state(epoch)
            save_checkpoint(out_dir / "last.pt", state)
            if improved:
                save_checkpoint(out_dir / "best.pt", state)
            if replaced:  # the earlier run's curves go with its checkpoints, plotted or not
                (out_dir / "curves.png").unlink(missing_ok=True)
            for name in replaced:
                if name == "best.pt" and not improved:
                    (out_dir / name).unlink(missing_ok=True)
            replaced = []
            assert log is not None
            log.append(row)
            if validate_now:
                log.plot(out_dir / "curves.png")
            _print(run.progress, _epoch_line(row))
        if budget is not None:
            budget.finish(epoch, time.perf_counter() - iteration_start, val_s)
        if t.early_stop_patience > 0 and run.best["bad"] >= t.early_stop_patience:
            if dist.is_main:
                _print(
                    run.progress,
                    f"early stop: no AP gain for {run.best['bad']} validations "
                    f"(best AP {run.best['ap']:.4f} at epoch {run.best['epoch']})",
                )
            stopped_early = True
            break
        if run.finished_steps():
            break

    if log is not None:
        log.close()
    if dist.enabled:
        torch.distributed.barrier()
    return TrainResult(
        out_dir=out_dir,
        epochs_run=epoch - start_epoch,
        best_ap=float(run.best["ap"]),
        best_epoch=int(run.best["epoch"]),
        last_metrics=last_metrics,
        seconds=time.perf_counter() - t0,
        stopped_early=stopped_early,
        resumed_from=start_epoch if resumed else 0,
    )


def _replan(
    run: Run, budget: TimeBudget, row: dict[str, Any], epoch: int, train_s: float,
    step_s: list[float],
) -> None:  # fmt: skip
    """Set train.epochs from the time budget (rank 0's plan for every process)."""
    t = run.cfg.train
    epoch_s = budget.epoch_seconds(epoch, train_s, step_s, run.steps_per_epoch)
    plan = budget.plan(epoch, time.perf_counter(), epoch_s)
    chosen = int(broadcast_float(plan, run.dist, run.device))
    row["budget/epochs"] = chosen
    if chosen != t.epochs or epoch == 1:
        run.cfg.set("train.epochs", chosen, f"time budget ({t.minutes:g} min)")
        if run.dist.is_main:
            _print(
                run.progress,
                f"time budget {t.minutes:g} min: epochs of {epoch_s:.1f} s, validations of "
                f"{budget.val_s or 0.0:.1f} s -> train.epochs = {chosen}",
            )


def validate(model: nn.Module, loss_fn: nn.Module, cfg: Config, device: torch.device,
             progress: bool = True) -> dict[str, float]:  # fmt: skip
    """COCO OKS AP (and PCK) on the validation split plus the loss terms over the whole split."""
    metrics = evaluate_model(
        model,
        labels_path(cfg, cfg.data.val_split),
        cfg,
        device=device,
        loss_fn=loss_fn,
        progress=progress,
    )
    return {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float))}


def _epoch_line(row: dict[str, Any]) -> str:
    parts = [f"epoch {row['epoch']}", f"loss {row['train/loss']:.4f}"]
    if "val/AP" in row:
        parts.append(f"val loss {row.get('val/loss', float('nan')):.4f}")
        parts.append(f"AP {row['val/AP']:.4f}")
    parts.append(f"{row['train/images_per_s']:.1f} img/s")
    parts.append(f"data {100 * row['train/data_time_share']:.0f}%")
    return " | ".join(parts)


def _print(enabled: bool, text: str) -> None:
    if enabled:
        from tqdm import tqdm

        tqdm.write(text)
