"""``train.minutes``: how many epochs fit into a time budget, planned from measured times."""

from __future__ import annotations


def epochs_for_budget(
    budget_s: float, elapsed_s: float, epoch_s: float, val_s: float, val_every: int, done: int = 1
) -> int:
    """Epochs in all (``done`` already run) that fit into ``budget_s`` seconds from the start.

    Each further epoch costs ``epoch_s``; a validation (``val_s``) follows every ``val_every``-th
    epoch and the last one. At least ``done`` (the budget may already be spent).
    """
    remaining = budget_s - elapsed_s
    every = max(1, val_every)

    def cost(n: int) -> float:  # n more epochs
        if n <= 0:
            return 0.0
        last = done + n
        validations = last // every - done // every + (1 if last % every else 0)
        return n * epoch_s + validations * val_s

    if remaining <= 0 or epoch_s <= 0:
        return done
    n = int(remaining // (epoch_s + val_s / every)) + 1
    while n > 0 and cost(n) > remaining:
        n -= 1
    while cost(n + 1) <= remaining and n < 1_000_000:
        n += 1
    return done + n


def steady_epoch_seconds(epoch_s: float, step_s: list[float], steps_per_epoch: int) -> float:
    """Epoch 1's time without the one-off warm-up of its first steps (allocations, kernel
    selection): those steps are counted at the mean rate of the later ones."""
    warm = 3
    if len(step_s) < 2 * warm:
        return epoch_s
    steady = sum(step_s[warm:]) / len(step_s[warm:])
    excess = max(0.0, sum(step_s[:warm]) - warm * steady)
    # A shortened epoch (max_steps) is scaled to a whole one.
    return (epoch_s - excess) + steady * max(0, steps_per_epoch - len(step_s))


class TimeBudget:
    """``train.minutes``: plans ``train.epochs`` from measured times, and re-plans every epoch.

    Epoch 1 is validated to time a validation, then the first plan is made from epoch 1's
    steady rate. Each later epoch re-plans from the mean cost (everything but the validation)
    of the last ten whole epochs, so a machine that slows down or speeds up mid-run still
    lands near the budget; the cosine schedule follows (a change of one epoch moves the rate
    by about 1%).
    """

    MARGIN = 0.97  # kept back for checkpoints, curves and the machine's drift
    RECENT = 10

    def __init__(self, minutes: float, val_every: int, t0: float) -> None:
        self.budget_s = self.MARGIN * minutes * 60.0
        self.val_every = val_every
        self.t0 = t0
        self.val_s: float | None = None  # the latest validation's seconds
        self.costs: list[tuple[int, float]] = []  # (epoch, seconds without validation)

    def finish(self, epoch: int, wall_s: float, val_s: float | None) -> None:
        """An epoch's whole iteration took ``wall_s`` (with ``val_s`` of validation, if any)."""
        if val_s is not None:
            self.val_s = val_s
        self.costs.append((epoch, wall_s - (val_s or 0.0)))

    def epoch_seconds(self, epoch: int, train_s: float, step_s: list[float], steps: int) -> float:
        later = [c for e, c in self.costs if e > 1][-self.RECENT :]
        if later:
            return sum(later) / len(later)
        if epoch == 1:
            return steady_epoch_seconds(train_s, step_s, steps)
        return train_s

    def plan(self, epoch: int, now: float, epoch_s: float) -> int:
        return epochs_for_budget(
            self.budget_s, now - self.t0, epoch_s, self.val_s or 0.0, self.val_every, epoch
        )
