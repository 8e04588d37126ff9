"""pkmodel train: the training loop, from one CPU to many GPUs (torchrun + DDP).

Shape of the loop (after torchvision's references): resolve device and distributed state, build
data, model, loss, optimizer, schedule, EMA; optionally resume everything from ``last.pt``;
per epoch: reseed from (seed, epoch) so an interrupted run resumed at an epoch boundary repeats
exactly, train with gradient clipping by norm and AMP on CUDA, update the EMA, validate with
COCO OKS AP every ``val_every`` epochs, and write ``last.pt`` / ``best.pt`` atomically.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from pkmodel.common.atomic import check_writable
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
from pkmodel.data.dataset import PoseDataset, TrainLoader, make_loader
from pkmodel.engine.budget import TimeBudget
from pkmodel.engine.evaluate import evaluate_model
from pkmodel.engine.optim import LRSchedule, ModelEMA, build_optimizer
from pkmodel.engine.runlog import RunLog
from pkmodel.model.checkpoint import load_checkpoint, save_checkpoint
from pkmodel.model.loss import PoseLoss
from pkmodel.model.network import build_model

# --------------------------------------------------------------------------------------------
# Data


def labels_path(cfg: Config, split: str) -> Path:
    path = cfg.data.prepared_dir / f"{split}.json"
    if not path.is_file():
        raise PkmodelError(
            f"prepared labels {path} do not exist; run `pkmodel prepare-coco --split {split}` "
            "first (data.prepared_dir)"
        )
    return path


def per_process_batch(cfg: Config, dist: DistInfo) -> int:
    per_process = cfg.train.batch_size // dist.world_size
    if per_process < 1:
        raise PkmodelError(
            f"train.batch_size {cfg.train.batch_size} is smaller than the number of processes "
            f"({dist.world_size})"
        )
    return per_process


def train_loader(dataset, cfg: Config, dist: DistInfo, device: torch.device):
    """The run's loader (``.epoch(e)`` per epoch): order and augmentation are a function of
    (seed, epoch) only; DataLoader workers start once and persist across epochs."""

    return TrainLoader(
        dataset,
        per_process_batch(cfg, dist),
        workers=cfg.train.workers,
        pin_memory=device.type == "cuda",
        distributed=dist.enabled,
        seed=cfg.train.seed,
    )


def epoch_loader(dataset, cfg: Config, dist: DistInfo, device: torch.device, epoch: int,
                 shuffle: bool = True):  # fmt: skip
    """A one-epoch loader with the training settings, for any dataset (also a Subset: the
    benchmark's training figure); order and augmentation are a function of (seed, epoch)."""

    return make_loader(
        dataset,
        per_process_batch(cfg, dist),
        shuffle,
        workers=cfg.train.workers,
        pin_memory=device.type == "cuda",
        distributed=dist.enabled,
        seed=cfg.train.seed,
        epoch=epoch,
    )


def set_memory_format(model: nn.Module, cfg: Config) -> nn.Module:
    """The model in the training memory format (``train.channels_last``), in place."""
    if cfg.train.channels_last:
        model.to(memory_format=torch.channels_last)
    return model


def input_images(batch: dict[str, Any], cfg: Config) -> torch.Tensor:
    """The batch's images in the training memory format (a no-op copy when already in it)."""
    images = batch["image"]
    if cfg.train.channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    return images


def to_device(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    non_blocking = device.type == "cuda"
    return {
        k: v.to(device, non_blocking=non_blocking) if torch.is_tensor(v) else v
        for k, v in batch.items()
    }


# --------------------------------------------------------------------------------------------
# The loop


@dataclass
class TrainResult:
    out_dir: Path
    epochs_run: int
    best_ap: float
    best_epoch: int
    last_metrics: dict[str, Any]
    seconds: float
    stopped_early: bool


def _unwrap(model: nn.Module) -> nn.Module:
    return model.module if hasattr(model, "module") else model


def _checkpoint_state(
    model: nn.Module,
    ema: ModelEMA | None,
    optimizer: torch.optim.Optimizer,
    schedule: LRSchedule,
    scaler: Any,
    cfg: Config,
    epoch: int,
    step: int,
    best: dict[str, Any],
) -> dict[str, Any]:
    return {
        "model": _unwrap(model).state_dict(),
        "ema": ema.module.state_dict() if ema is not None else None,
        "ema_updates": ema.updates if ema is not None else 0,
        "optimizer": optimizer.state_dict(),
        "scheduler": schedule.state_dict(),
        "scaler": scaler.state_dict() if scaler is not None else None,
        "epoch": epoch,
        "step": step,
        "best": best,
        "rng": rng_state(),
        "config": cfg.to_dict(),
    }


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
    check_writable(out_dir, "--out (train.out_dir)")
    earlier = [f for f in ("last.pt", "best.pt") if (out_dir / f).exists()]
    if resume is None and earlier and not overwrite:
        raise PkmodelError(
            f"{out_dir} already holds {' and '.join(earlier)} of an earlier run: --resume "
            "continues it, --force starts over (its checkpoints and metrics are replaced), or "
            "choose another --out (train.out_dir)"
        )
    if resume is None and earlier and dist.is_main:
        for name in earlier:  # starting over: never leave the earlier run's best.pt beside ours
            (out_dir / name).unlink(missing_ok=True)
    created = init_distributed(dist, device)
    try:
        return _train(cfg, resume, progress, max_steps, dist, device, t0)
    finally:
        if created and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


def _train(
    cfg: Config,
    resume: Path | None,
    progress: bool,
    max_steps: int | None,
    dist: DistInfo,
    device: torch.device,
    t0: float,
) -> TrainResult:

    t = cfg.train
    out_dir = Path(t.out_dir)
    if t.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
    elif device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    seed_everything(t.seed)  # the initial weights depend on the seed only

    checkpoint = None
    if resume is not None:
        checkpoint = load_checkpoint(resume)
        _check_resume_config(cfg, checkpoint["config"], resume)

    model = build_model(cfg.model, pretrained=checkpoint is None and t.finetune is None)
    if t.finetune is not None and checkpoint is None:
        source = load_checkpoint(t.finetune)
        weights = source["ema"] or source["model"]
        try:
            model.load_state_dict(weights)
        except RuntimeError as e:
            raise PkmodelError(
                f"train.finetune {t.finetune}: weights do not fit this model "
                f"({str(e).splitlines()[0]})"
            ) from None
    set_memory_format(model.to(device), cfg)
    if dist.enabled and device.type == "cuda":
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    loss_fn = PoseLoss(cfg.loss, sync_counts=dist.enabled).to(device)

    dataset = PoseDataset(labels_path(cfg, cfg.data.train_split), cfg, train=True)
    steps_per_epoch = (len(dataset) // dist.world_size) // per_process_batch(cfg, dist)
    if steps_per_epoch == 0:
        raise PkmodelError(
            f"the training split has fewer samples than one batch (train.batch_size "
            f"{t.batch_size}); lower the batch size or prepare more data"
        )
    optimizer = build_optimizer(model, cfg)
    schedule = LRSchedule(cfg, steps_per_epoch)
    use_amp = device.type == "cuda" and t.amp != "off"
    amp_dtype = torch.bfloat16 if t.amp == "bf16" else torch.float16
    scaler = torch.amp.GradScaler("cuda") if use_amp and t.amp == "fp16" else None
    ema = ModelEMA(_unwrap(model), t.ema_decay) if t.ema else None

    start_epoch, step = 0, 0
    best = {"ap": -1.0, "epoch": 0, "bad": 0}
    if checkpoint is not None:
        model.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        schedule.load_state_dict(checkpoint["scheduler"])
        if scaler is not None and checkpoint.get("scaler"):
            scaler.load_state_dict(checkpoint["scaler"])
        if ema is not None and checkpoint.get("ema"):
            ema.module.load_state_dict(checkpoint["ema"])
            ema.updates = int(checkpoint.get("ema_updates", 0))
        start_epoch, step = int(checkpoint["epoch"]), int(checkpoint["step"])
        best = dict(checkpoint["best"])
        set_rng_state(checkpoint["rng"])
        saved_train = checkpoint["config"].get("train", {})
        if t.minutes > 0 and float(saved_train.get("minutes", 0.0)) > 0:
            # The budget chose the epochs after epoch 1; the resumed run keeps that schedule.
            cfg.set("train.epochs", int(saved_train["epochs"]), "time budget (checkpoint)")
    # A time budget plans train.epochs after epoch 1 (timed with a validation) and re-plans
    # every epoch; a resumed run keeps the epochs of its checkpoint.
    budget = (
        TimeBudget(t.minutes, t.val_every, t0) if t.minutes > 0 and checkpoint is None else None
    )
    if dist.enabled:
        ids = [device.index] if device.type == "cuda" else None
        model = nn.parallel.DistributedDataParallel(model, device_ids=ids)

    if dist.is_main:  # only now: a run that cannot start leaves no empty folder behind
        out_dir.mkdir(parents=True, exist_ok=True)
    log = RunLog(out_dir, start_epoch if checkpoint is not None else 0) if dist.is_main else None
    if dist.is_main:
        _print(
            progress,
            f"training on {device} x{dist.world_size}: {steps_per_epoch} steps/epoch, "
            + (
                f"time budget {t.minutes:g} min (epochs set after epoch 1)"
                if budget is not None
                else f"epochs {start_epoch + 1}..{t.epochs}"
            )
            + f", out {out_dir}",
        )

    last_metrics: dict[str, Any] = {}
    stopped_early = False
    loaders = train_loader(dataset, cfg, dist, device)
    epoch = start_epoch
    while epoch < t.epochs:  # a time budget may change t.epochs as it goes
        epoch += 1
        iteration_start = time.perf_counter()
        seed_everything(epoch_seed(t.seed, epoch, dist.rank))
        loader = loaders.epoch(epoch)
        model.train()
        stats = _train_one_epoch(
            model, ema, loader, loss_fn, optimizer, schedule, scaler, use_amp, amp_dtype,
            device, dist, cfg, epoch, step, progress, max_steps,
        )  # fmt: skip
        train_s = time.perf_counter() - iteration_start
        step_s = stats.pop("step_seconds")
        step = stats.pop("step")
        row: dict[str, Any] = {"epoch": epoch, "step": step, **stats}

        plan = (budget, cfg, row, epoch, train_s, step_s, steps_per_epoch, dist, device, progress)
        if budget is not None and budget.val_s is not None:
            _replan(*plan)  # before deciding on validation: this may now be the last epoch
        validate_now = epoch % t.val_every == 0 or epoch == t.epochs
        if budget is not None and budget.val_s is None:
            validate_now = True  # the first plan needs a validation's time
        if max_steps is not None and step >= max_steps:
            validate_now = True
        improved = False
        val_start = time.perf_counter()
        if validate_now:
            eval_model = ema.module if ema is not None else _unwrap(model)
            if dist.is_main:  # rank 0 alone: its loss must not wait for the other processes
                val = validate(eval_model, PoseLoss(cfg.loss), cfg, device, progress)
                row.update({f"val/{k}": v for k, v in val.items()})
            ap = broadcast_float(row.get("val/AP", 0.0), dist, device)
            schedule.on_validation(ap)
            if ap > best["ap"] + 1e-6:
                best.update(ap=ap, epoch=epoch, bad=0)
                improved = True
            else:
                best["bad"] += 1
        val_s = time.perf_counter() - val_start if validate_now else None
        if budget is not None and budget.val_s is None:
            budget.val_s = val_s
            _replan(*plan)
        row["seconds"] = round(time.perf_counter() - t0, 2)
        last_metrics = row

        if dist.is_main:
            state = _checkpoint_state(
                model, ema, optimizer, schedule, scaler, cfg, epoch, step, best
            )
            save_checkpoint(out_dir / "last.pt", state)
            if improved:
                save_checkpoint(out_dir / "best.pt", state)
            assert log is not None
            log.append(row)
            if validate_now:
                log.plot(out_dir / "curves.png")
            _print(progress, _epoch_line(row))
        if budget is not None:
            budget.finish(epoch, time.perf_counter() - iteration_start, val_s)
        if t.early_stop_patience > 0 and best["bad"] >= t.early_stop_patience:
            if dist.is_main:
                _print(
                    progress,
                    f"early stop: no AP gain for {best['bad']} validations "
                    f"(best AP {best['ap']:.4f} at epoch {best['epoch']})",
                )
            stopped_early = True
            break
        if max_steps is not None and step >= max_steps:
            break

    if log is not None:
        log.close()
    if dist.enabled:
        torch.distributed.barrier()
    return TrainResult(
        out_dir=out_dir,
        epochs_run=epoch - start_epoch,
        best_ap=float(best["ap"]),
        best_epoch=int(best["epoch"]),
        last_metrics=last_metrics,
        seconds=time.perf_counter() - t0,
        stopped_early=stopped_early,
    )


def _replan(
    budget, cfg, row, epoch, train_s, step_s, steps_per_epoch, dist, device, progress
) -> None:  # fmt: skip
    """Set train.epochs from the time budget (rank 0's plan for every process)."""
    t = cfg.train
    epoch_s = budget.epoch_seconds(epoch, train_s, step_s, steps_per_epoch)
    chosen = int(broadcast_float(budget.plan(epoch, time.perf_counter(), epoch_s), dist, device))
    row["budget/epochs"] = chosen
    if chosen != t.epochs or epoch == 1:
        cfg.set("train.epochs", chosen, f"time budget ({t.minutes:g} min)")
        if dist.is_main:
            _print(
                progress,
                f"time budget {t.minutes:g} min: epochs of {epoch_s:.1f} s, validations of "
                f"{budget.val_s or 0.0:.1f} s -> train.epochs = {chosen}",
            )


def _train_one_epoch(
    model, ema, loader, loss_fn, optimizer, schedule, scaler, use_amp, amp_dtype,
    device, dist, cfg, epoch, step, progress, max_steps,
) -> dict[str, Any]:  # fmt: skip
    from tqdm import tqdm

    t = cfg.train
    sums: dict[str, torch.Tensor] = {}
    count = torch.zeros((), device=device)
    data_time = compute_time = 0.0
    bar = tqdm(
        total=len(loader),
        desc=f"epoch {epoch}/{t.epochs}",
        disable=not (progress and dist.is_main),
        leave=False,
        dynamic_ncols=True,
    )
    tick = time.perf_counter()
    images = 0
    step_seconds: list[float] = []  # data + compute per step (the time budget's estimate)
    for batch in loader:
        batch = to_device(batch, device)
        got = time.perf_counter()
        data_time += got - tick
        lr = schedule.apply(optimizer, step)
        with torch.autocast(device.type, dtype=amp_dtype, enabled=use_amp):
            outputs = model(input_images(batch, cfg))
        outputs = tuple(o.float() for o in outputs)
        loss, terms = loss_fn(outputs, batch)
        bad = torch.tensor(0.0 if torch.isfinite(loss) else 1.0, device=device)
        if dist.enabled:
            torch.distributed.all_reduce(bad)
        if bad.item() > 0:
            bar.close()
            raise PkmodelError(
                f"the loss became {loss.item()} at epoch {epoch}, step {step + 1}; training "
                "stopped and last.pt from the previous epoch is kept (try a lower train.lr "
                "or train.grad_clip_norm)"
            )
        optimizer.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)
        else:
            loss.backward()
        if t.grad_clip_norm > 0:
            nn.utils.clip_grad_norm_(model.parameters(), t.grad_clip_norm)
        if scaler is not None:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()
        if ema is not None:
            ema.update(_unwrap(model))
        step += 1
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
        if max_steps is not None and step >= max_steps:
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
            "step": step,
            "step_seconds": step_seconds,
            "lr": optimizer.param_groups[0]["lr"],
            "train/images_per_s": images * dist.world_size / elapsed,
            "train/data_time_share": data_time / elapsed,
        }
    )
    return out


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
