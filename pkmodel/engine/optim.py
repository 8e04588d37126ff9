"""What the training loop steps: the optimizer, the learning-rate schedule and the weights' EMA."""

from __future__ import annotations

import copy
import math

import torch
from torch import nn

from pkmodel.config import Config


class ModelEMA:
    """Exponential moving average of the weights and of the floating-point buffers (BatchNorm
    running statistics); integer buffers (BatchNorm's batch counter) are copied.

    The decay ramps up over the first steps (as in YOLOv5 / timm) so early averages are not
    dominated by the random initialisation.
    """

    def __init__(self, model: nn.Module, decay: float, updates: int = 0) -> None:
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)
        self.decay = decay
        self.updates = updates

    def current_decay(self) -> float:
        return self.decay * (1.0 - math.exp(-self.updates / 2000.0))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """One step towards ``model`` (same architecture as the copy; parameters and buffers are
        paired in registration order, as ``state_dict`` pairs them)."""
        self.updates += 1
        d = self.current_decay()
        ema_floats, floats = [], []
        pairs = zip(
            [*self.module.parameters(), *self.module.buffers()],
            [*model.parameters(), *model.buffers()],
            strict=True,
        )
        for ema_value, value in pairs:
            if ema_value.dtype.is_floating_point:
                ema_floats.append(ema_value)
                floats.append(value.detach().to(ema_value.dtype))
            else:
                ema_value.copy_(value)
        # One fused call for every tensor instead of two small kernels per tensor: the EMA's
        # share of a small network's CPU step (docs/experiments.md).
        torch._foreach_lerp_(ema_floats, floats, 1.0 - d)


# Devices where PyTorch's fused Adam / AdamW kernels run (one kernel for every tensor; on the
# CPU about 3x faster than the per-tensor loop PyTorch picks there by default)
FUSED_ADAM_DEVICES = ("cpu", "cuda")


def build_optimizer(model: nn.Module, cfg: Config) -> torch.optim.Optimizer:
    """AdamW / Adam / SGD; no weight decay on biases and normalisation weights. Adam and AdamW
    use PyTorch's fused implementation where the parameters live on a device that has it (the
    same update within float rounding: tests/engine/test_optim.py)."""
    t = cfg.train
    decay, no_decay = [], []
    for _, p in model.named_parameters():
        if p.requires_grad:
            (no_decay if p.ndim <= 1 else decay).append(p)
    groups = [
        {"params": decay, "weight_decay": t.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    fused = all(p.device.type in FUSED_ADAM_DEVICES for p in decay + no_decay) or None
    if t.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=t.lr, fused=fused)
    if t.optimizer == "adam":
        return torch.optim.Adam(groups, lr=t.lr, fused=fused)
    return torch.optim.SGD(groups, lr=t.lr, momentum=t.momentum, nesterov=t.momentum > 0)


class LRSchedule:
    """Linear warmup, then cosine to zero, step decay, or decay on an AP plateau.

    Computed from the step and epoch counters (plus the plateau state), so resuming restores it
    exactly from ``state_dict``.
    """

    def __init__(self, cfg: Config, steps_per_epoch: int) -> None:
        self.t = cfg.train
        self.steps_per_epoch = max(1, steps_per_epoch)
        self.warmup_steps = int(round(self.t.warmup_epochs * self.steps_per_epoch))
        self.plateau_factor = 1.0
        self.plateau_best = -math.inf
        self.plateau_bad = 0

    @property
    def total_steps(self) -> int:
        """Follows ``train.epochs``, which a time budget (``train.minutes``) may set after epoch 1."""
        return self.steps_per_epoch * self.t.epochs

    def factor(self, step: int) -> float:
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        if self.t.scheduler == "cosine":
            span = max(1, self.total_steps - self.warmup_steps)
            progress = min(1.0, (step - self.warmup_steps) / span)
            return 0.5 * (1.0 + math.cos(math.pi * progress))
        if self.t.scheduler == "step":
            epoch = step // self.steps_per_epoch
            return self.t.gamma ** (epoch // max(1, self.t.step_size))
        return self.plateau_factor

    def apply(self, optimizer: torch.optim.Optimizer, step: int) -> float:
        lr = self.t.lr * self.factor(step)
        for group in optimizer.param_groups:
            group["lr"] = lr
        return lr

    def on_validation(self, ap: float) -> None:
        if self.t.scheduler != "plateau":
            return
        if ap > self.plateau_best + 1e-4:
            self.plateau_best, self.plateau_bad = ap, 0
        else:
            self.plateau_bad += 1
            if self.plateau_bad > self.t.plateau_patience:
                self.plateau_factor *= self.t.gamma
                self.plateau_bad = 0

    def state_dict(self) -> dict[str, float]:
        return {
            "plateau_factor": self.plateau_factor,
            "plateau_best": self.plateau_best,
            "plateau_bad": self.plateau_bad,
        }

    def load_state_dict(self, state: dict[str, float]) -> None:
        self.plateau_factor = float(state["plateau_factor"])
        self.plateau_best = float(state["plateau_best"])
        self.plateau_bad = int(state["plateau_bad"])
