"""pkmodel train: the training loop, from one CPU to many GPUs (torchrun + DDP).

Shape of the loop (after torchvision's references): resolve device and distributed state, build
data, model, loss, optimizer, schedule, EMA; optionally resume everything from ``last.pt``;
per epoch: reseed from (seed, epoch) so an interrupted run resumed at an epoch boundary repeats
exactly, train with gradient clipping by norm and AMP on CUDA, update the EMA, validate with
COCO OKS AP every ``val_every`` epochs, and write ``best.pt``, the metrics row and then
``last.pt`` atomically: ``last.pt`` is the commit point of an epoch (a resume redoes an epoch whose
``last.pt`` was not written, replacing what it wrote before).
"""

from __future__ import annotations

import time
import uuid
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
    # a resume that trains nothing: why (after "has already trained N epoch(s) and ")
    reason: str = ""
    # a resume: the settings that differ from the checkpoint's ("train.lr 0.002 -> 0.001")
    changed: list[str] = field(default_factory=list)


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
    # which run the checkpoints belong to (kept across resumes): tells an earlier run's best.pt
    # from this run's where a run that started over (--force) stopped right after its first
    # last.pt
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    stopped_early: int = 0  # the epoch the run stopped early at (0: it did not)

    def finished_steps(self) -> bool:
        return self.max_steps is not None and self.step >= self.max_steps

    def eval_model(self) -> nn.Module:
        """The weights validation and checkpoints' users see: the EMA when kept."""
        return self.ema.module if self.ema is not None else _unwrap(self.model)

    def state(
        self, epoch: int, row: dict[str, Any] | None = None, replacing: list[str] | None = None
    ) -> dict[str, Any]:
        """The checkpoint of the run after ``epoch``: enough to resume it exactly. ``row`` is
        the epoch's metrics row (a resume restores it should metrics.jsonl lack it or hold
        another run's); ``replacing`` the earlier run's files a run that starts over replaces
        after its first last.pt (a resume from that last.pt finishes the job)."""
        return {
            "model": _unwrap(self.model).state_dict(),
            "ema": self.ema.module.state_dict() if self.ema is not None else None,
            "ema_updates": self.ema.updates if self.ema is not None else 0,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.schedule.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "epoch": epoch,
            "step": self.step,
            # the schedule's position is the step; a resume on a training split of another
            # size (other steps per epoch) moves it to the same epoch (_rebase_schedule)
            "steps_per_epoch": self.steps_per_epoch,
            "best": self.best,
            "rng": rng_state(),
            "config": self.cfg.to_dict(),
            "run_id": self.run_id,
            "row": row,
            "stopped_early": self.stopped_early,
            "replacing": list(replacing or []),
        }

    def load(self, checkpoint: dict[str, Any], path: Path) -> int:
        """Continue from ``path``'s checkpoint of this run; returns the epoch it ended."""
        from pkmodel.model.checkpoint import load_weights_into

        load_weights_into(self.model, checkpoint["model"], f"{path}: the 'model' weights")
        # The hyperparameters (weight decay, momentum) are the config's, which may have changed
        # since (reported): load_state_dict would bring back the checkpoint's with its state.
        settings = [
            {k: v for k, v in g.items() if k != "params"} for g in self.optimizer.param_groups
        ]
        try:
            self.optimizer.load_state_dict(checkpoint["optimizer"])
        except (ValueError, KeyError, TypeError) as e:
            raise PkmodelError(
                f"{path} cannot be resumed: its 'optimizer' does not fit this model's "
                f"optimizer ({e})"
            ) from None
        for group, setting in zip(self.optimizer.param_groups, settings, strict=True):
            group.update(setting)
        self.schedule.load_state_dict(checkpoint["scheduler"])
        if self.scaler is not None and checkpoint.get("scaler"):
            self.scaler.load_state_dict(checkpoint["scaler"])
        if self.ema is not None and checkpoint.get("ema"):
            load_weights_into(self.ema.module, checkpoint["ema"], f"{path}: the 'ema' weights")
            self.ema.updates = int(checkpoint.get("ema_updates", 0))
        self.step = int(checkpoint["step"])
        self.best = dict(checkpoint["best"])
        self.run_id = str(checkpoint.get("run_id") or self.run_id)
        self.stopped_early = int(checkpoint.get("stopped_early") or 0)
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


# [train] settings a resumed run cannot honour: the optimizer state is the optimizer's, the
# schedule's steps and the sampler's batches follow the batch size, the learning-rate curve the
# scheduler and warmup (a change mid-run would jump or never finish), the EMA is kept or not
RESUME_FIXED = ("optimizer", "batch_size", "scheduler", "warmup_epochs", "ema")
# what a run reads besides [train] (a change is applied and reported); data.* only these
RESUME_READ = ("targets", "loss", "augment", "decoder", "eval")
RESUME_DATA = ("prepared_dir", "train_split", "val_split")
# not compared: where the run is (it may move), how it started (kept: see _resume_plan)
RESUME_IGNORED = ("train.out_dir", "train.finetune", "eval.out_dir", "train.minutes")
# the source _resume_plan gives the train.epochs and minutes a time-budgeted run keeps
BUDGET_KEPT = "time budget (checkpoint)"


def _given(cfg: Config, key: str) -> bool:
    """Whether ``key`` was set on the command line (an option or --set)."""
    return cfg.sources.get(key, "default").startswith("--")


def _shown(value: Any) -> str:
    """A config value as the config file writes it (strings quoted, floats short)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return repr(value)
    return f"{value:g}" if isinstance(value, float) else str(value)


def _resume_plan(cfg: Config, saved: dict[str, Any], path: Path) -> None:
    """Check ``cfg`` against the config of the checkpoint ``path`` resumes and adopt what a
    resume keeps. The model must be the checkpoint's (else one PkmodelError). A time-budgeted
    run (train.minutes > 0 in the checkpoint) keeps the train.epochs its budget chose and its
    minutes, unless --minutes 0 drops the budget (then train.epochs is the config's); other
    minutes, or a budget on a run that had none, are refused. train.finetune stays the
    checkpoint's (how the run began)."""
    now = cfg.to_dict()
    if now["model"] != saved.get("model"):
        diff = [k for k in now["model"] if now["model"][k] != saved.get("model", {}).get(k)]
        raise PkmodelError(
            f"cannot resume from {path}: model settings differ from the checkpoint's "
            f"({', '.join('model.' + k for k in diff)})"
        )
    was = saved.get("train", {})
    minutes, saved_minutes = cfg.train.minutes, float(was.get("minutes", 0.0))
    if saved_minutes > 0:
        if minutes in (0, saved_minutes) and not (minutes == 0 and _given(cfg, "train.minutes")):
            cfg.set("train.minutes", saved_minutes, BUDGET_KEPT)
            cfg.set("train.epochs", int(was["epochs"]), BUDGET_KEPT)
        elif minutes > 0:
            raise PkmodelError(
                f"cannot resume from {path} with train.minutes {minutes:g} (the checkpoint has "
                f"{saved_minutes:g}): a resumed run keeps the train.epochs its time budget chose "
                "(--minutes 0 with --epochs trains on without the budget)"
            )
    elif minutes > 0:
        raise PkmodelError(
            f"cannot resume from {path} with train.minutes {minutes:g} (the checkpoint has 0): "
            "a time budget plans a new run's epochs, not a resumed one's (give --epochs)"
        )
    if "finetune" in was:
        cfg.set("train.finetune", was["finetune"], f"{path} (how the run began)")


def _resume_changes(cfg: Config, saved: dict[str, Any], path: Path) -> list[str]:
    """The settings that differ from the checkpoint's, as ``train.lr 0.002 -> 0.001``: those
    in RESUME_FIXED are refused (one PkmodelError naming each), the others are applied as
    given (the optimizer's weight decay and momentum too: ``Run.load``)."""
    now, was = cfg.to_dict(), saved.get("train", {})
    fixed = [
        f"train.{k} {_shown(now['train'][k])} (the checkpoint has {_shown(was[k])})"
        for k in RESUME_FIXED
        if k in was and now["train"][k] != was[k]
    ]
    if fixed:
        raise PkmodelError(
            f"cannot resume from {path} with {' and '.join(fixed)}: a resumed run keeps its "
            "optimizer, batch size, learning-rate schedule and EMA (start over with --force, or "
            "train into another --out)"
        )
    changed = []
    if float(was.get("minutes", 0.0)) > 0 and cfg.train.minutes == 0:
        changed.append(f"train.minutes {float(was['minutes']):g} -> 0 (no time budget)")
    keys = [("train", k) for k in now["train"]] + [("data", k) for k in RESUME_DATA]
    keys += [(section, k) for section in RESUME_READ for k in now[section]]
    for section, k in keys:
        old = saved.get(section, {})
        if f"{section}.{k}" in RESUME_IGNORED or k not in old or old[k] == now[section][k]:
            continue
        changed.append(f"{section}.{k} {_shown(old[k])} -> {_shown(now[section][k])}")
    return changed


def _nothing_to_train(cfg: Config, checkpoint: dict[str, Any], given_epochs: int | None) -> str:
    """Why resuming ``checkpoint`` trains nothing ('' when it trains): the run has trained its
    train.epochs (the time budget's, when it had one and keeps it), or it stopped early and
    neither train.early_stop_patience nor train.epochs has been raised since."""
    t, saved = cfg.train, checkpoint["config"].get("train", {})
    done, best = int(checkpoint["epoch"]), checkpoint["best"]
    if done >= t.epochs:
        if cfg.sources.get("train.epochs") == BUDGET_KEPT:
            asked = f" (not --epochs {given_epochs})" if given_epochs is not None else ""
            return (
                f"train.epochs is {t.epochs}{asked}, as its time budget (train.minutes "
                f"{t.minutes:g}) chose and a resume keeps (--minutes 0 with a larger --epochs "
                "trains on without the budget)"
            )
        return f"train.epochs is {t.epochs} (give a larger --epochs to train on)"
    stopped = int(checkpoint.get("stopped_early") or 0)
    if stopped and not _trains_past_early_stop(cfg, saved):
        return (
            f"stopped early at epoch {stopped} (no AP gain for {int(best['bad'])} validations; "
            "raise train.early_stop_patience or --epochs to train on)"
        )
    return ""


def _trains_past_early_stop(cfg: Config, saved: dict[str, Any]) -> bool:
    """Whether a resume of a run that stopped early trains on: train.early_stop_patience or
    train.epochs has been raised (or early stopping turned off) since."""
    t = cfg.train
    patience = int(saved.get("early_stop_patience", 0))
    return (
        t.early_stop_patience == 0
        or t.early_stop_patience > patience
        or t.epochs > int(saved.get("epochs", t.epochs))
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
        changed: list[str] = []
        if resume is not None:
            checkpoint = load_checkpoint(resume)
            if checkpoint.get("source") == "posekit":  # weights only, no training state
                raise PkmodelError(
                    f"cannot resume from {resume}: it is a PoseKit state dict (weights only); "
                    "start from it with --finetune"
                )
            check_resumable(checkpoint, resume)
            _adopt_finetune_arch(cfg, checkpoint["config"], resume)
            given_epochs = cfg.train.epochs if _given(cfg, "train.epochs") else None
            _resume_plan(cfg, checkpoint["config"], resume)
            reason = _nothing_to_train(cfg, checkpoint, given_epochs)
            if reason:  # nothing to train: nothing is touched, nothing else is checked
                best = checkpoint["best"]
                return TrainResult(
                    out_dir=Path(cfg.train.out_dir),
                    epochs_run=0,
                    best_ap=float(best["ap"]),
                    best_epoch=int(best["epoch"]),
                    last_metrics={},
                    seconds=time.perf_counter() - t0,
                    stopped_early=bool(checkpoint.get("stopped_early")),
                    resumed_from=int(checkpoint["epoch"]),
                    reason=reason,
                )
            changed = _resume_changes(cfg, checkpoint["config"], resume)
            kept = cfg.sources.get("train.epochs") == BUDGET_KEPT
            if kept and given_epochs is not None and given_epochs != cfg.train.epochs:
                changed.append(
                    f"train.epochs stays {cfg.train.epochs} as the time budget chose, not "
                    f"--epochs {given_epochs} (--minutes 0 trains to --epochs without the budget)"
                )
        run, dataset = _build_run(cfg, dist, device, checkpoint, progress, max_steps)
        start_epoch = run.load(checkpoint, resume) if checkpoint and resume else 0
        if checkpoint is not None:
            changed += _rebase_schedule(run, checkpoint, start_epoch, len(dataset))
            if run.stopped_early:  # trains on past an early stop (_nothing_to_train)
                patience = int(checkpoint["config"]["train"].get("early_stop_patience", 0))
                if 0 < cfg.train.early_stop_patience <= patience:  # more epochs: count afresh
                    run.best["bad"] = 0
                run.stopped_early = 0
            if changed and dist.is_main:
                _say(f"resuming from {resume} with changed settings: {', '.join(changed)}")
        if dist.enabled:
            ids = [device.index] if device.type == "cuda" else None
            run.model = nn.parallel.DistributedDataParallel(run.model, device_ids=ids)
        # A time budget plans train.epochs after epoch 1 (timed with a validation) and re-plans
        # every epoch; a resumed run keeps the epochs of its checkpoint.
        t = cfg.train
        budget = (
            TimeBudget(t.minutes, t.val_every, t0) if t.minutes > 0 and resume is None else None
        )
        result = _loop(run, dataset, start_epoch, checkpoint, budget, t0, replaced)
        result.changed = changed
        return result
    except RuntimeError as e:
        if dist.enabled and _peer_failed(e):  # its own message says why; no traceback here
            raise PkmodelError("another process of this run failed (see its message)") from None
        raise
    finally:
        if created and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


def _rebase_schedule(run: Run, checkpoint: dict[str, Any], epoch: int, samples: int) -> list[str]:
    """A resume whose training split has another size (samples added or removed since, or
    another data.train_split) has other steps per epoch than the checkpoint: the learning-rate
    schedule, counted in steps, would jump (a cosine cut short or run past its end). The step
    counter moves to the same point, the end of ``epoch``, at the new steps per epoch; the change
    is reported. A checkpoint that does not record its steps per epoch (written before they were
    kept) is taken as unchanged."""
    before = checkpoint.get("steps_per_epoch")
    if not isinstance(before, int) or before in (0, run.steps_per_epoch):
        return []
    run.step = epoch * run.steps_per_epoch
    return [
        f"steps per epoch {before} -> {run.steps_per_epoch} (the training split holds "
        f"{samples} samples; the learning-rate schedule goes on from the end of epoch {epoch})"
    ]


def _peer_failed(error: RuntimeError) -> bool:
    """Whether ``error`` is a collective that failed because another process left the group
    (gloo: "Connection closed by peer"; NCCL: a remote process exited, the communicator was
    aborted), not a fault of this process."""
    signs = (
        "Connection closed by peer",
        "Connection reset by peer",
        "Broken pipe",
        "remote process exited",
        "communicator was aborted",
    )
    return isinstance(error, torch.distributed.DistNetworkError) or any(
        s in str(error) for s in signs
    )


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
    checkpoint: dict[str, Any] | None,
    budget: TimeBudget | None,
    t0: float,
    replaced: list[str],
) -> TrainResult:
    """Epochs from ``start_epoch`` to ``train.epochs`` (which a time budget may change as it
    goes): train, validate when due, write best.pt (on a new best AP), the metrics row and
    curves, then last.pt; stop early if asked. ``checkpoint`` is the one resumed (None: a new
    run).

    last.pt is written last, so a stop between these files leaves last.pt of the epoch before
    and the resume redoes the epoch (its metrics row is replaced, best.pt rewritten when it
    improves again). ``replaced`` names the checkpoints of an earlier run in the folder
    (starting over): they stay until this run's first last.pt is written, which therefore
    comes first in epoch 1; then any of them it does not rewrite (an earlier best.pt) is
    removed, so no checkpoint of the earlier run stays beside this run's."""
    cfg, dist, t = run.cfg, run.dist, run.cfg.train
    resumed = checkpoint is not None
    out_dir = Path(t.out_dir)
    if dist.is_main:  # only now: a run that cannot start leaves no empty folder behind
        out_dir.mkdir(parents=True, exist_ok=True)
    log = None
    if dist.is_main:
        assert checkpoint is None or start_epoch == int(checkpoint["epoch"])
        committed = checkpoint.get("row") if checkpoint is not None else None
        log = RunLog(out_dir, start_epoch if resumed else None, committed)
        if checkpoint is not None and checkpoint.get("replacing"):
            _finish_replacing(run, log, checkpoint, out_dir)
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
        # decided before the checkpoint, which records it (a resume does not train on)
        stop_early = t.early_stop_patience > 0 and run.best["bad"] >= t.early_stop_patience
        if stop_early:
            run.stopped_early = epoch

        if dist.is_main:
            assert log is not None
            _write_epoch(run, log, out_dir, epoch, row, improved, validate_now, replaced)
            replaced = []
            _print(run.progress, _epoch_line(row))
        if budget is not None:
            budget.finish(epoch, time.perf_counter() - iteration_start, val_s)
        if stop_early:
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


def _write_epoch(
    run: Run, log: RunLog, out_dir: Path, epoch: int, row: dict[str, Any], improved: bool,
    validated: bool, replaced: list[str],
) -> None:  # fmt: skip
    """best.pt (on a new best AP), the metrics row, the curves (after a validation), then
    last.pt, which commits the epoch. The first epoch of a run that starts over in a folder
    holding ``replaced`` (an earlier run's checkpoints) writes its last.pt first instead, and
    only then removes or replaces the earlier run's files; that last.pt names them, so a
    resume from it finishes the job (``_finish_replacing``)."""
    state = run.state(epoch, row, replaced)
    if replaced:
        save_checkpoint(out_dir / "last.pt", state)
        # the earlier run's curves go with its checkpoints, plotted or not
        (out_dir / "curves.png").unlink(missing_ok=True)
        if "best.pt" in replaced and not improved:
            (out_dir / "best.pt").unlink(missing_ok=True)
    if improved:
        save_checkpoint(out_dir / "best.pt", state)
    log.append(row)
    if validated:
        log.plot(out_dir / "curves.png")
    if not replaced:
        save_checkpoint(out_dir / "last.pt", state)


def _finish_replacing(run: Run, log: RunLog, checkpoint: dict[str, Any], out_dir: Path) -> None:
    """A resume from the first last.pt of a run that started over: the earlier run's best.pt
    and curves may still be there (the run stopped before it replaced them). best.pt is this
    run's when it holds this run's id; else it becomes this last.pt when that epoch is the
    run's best so far, or goes. The curves are redrawn from this run's rows (or go)."""
    best = out_dir / "best.pt"
    if "best.pt" in checkpoint["replacing"] and best.exists():
        try:
            ours = load_checkpoint(best).get("run_id") == run.run_id
        except PkmodelError:  # unreadable: not this run's
            ours = False
        if not ours:
            if int(run.best["epoch"]) == int(checkpoint["epoch"]):
                save_checkpoint(best, checkpoint)
            else:
                best.unlink()
    if any("val/AP" in r for r in log.rows):
        log.plot(out_dir / "curves.png")
    else:
        (out_dir / "curves.png").unlink(missing_ok=True)


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
        _say(text)


def _say(text: str) -> None:
    """A line beside the progress bars (printed with --quiet too)."""
    from tqdm import tqdm

    tqdm.write(text)
