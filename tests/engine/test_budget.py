"""train.minutes: planning the epochs that fit into a time budget."""

from __future__ import annotations

import pytest

from pkmodel.engine.budget import TimeBudget, epochs_for_budget, steady_epoch_seconds


def test_epochs_for_budget_counts_epochs_and_validations():
    # 90 s left; 10 s an epoch; a 5 s validation after every 2nd epoch and the last one.
    # 7 more (epochs 2..8): 70 s + validations at 2, 4, 6, 8 = 90 s; 8 more: 80 + 5 x 5 = 105.
    assert epochs_for_budget(100, 10, 10, 5, val_every=2, done=1) == 8
    # Validating every epoch: n x (10 + 5) <= 90 -> 6 more.
    assert epochs_for_budget(100, 10, 10, 5, val_every=1, done=1) == 7
    assert epochs_for_budget(100, 10, 10, 0, val_every=1, done=1) == 10
    assert epochs_for_budget(100, 120, 10, 5, val_every=1, done=1) == 1  # budget spent
    assert epochs_for_budget(100, 95, 10, 5, val_every=1, done=1) == 1  # one more does not fit
    # Demo-like: 580 s left; 46 more epochs = 575 s + validations at 12, 24, 36 and 47 = 579 s.
    assert epochs_for_budget(600, 20, 12.5, 1.0, val_every=12, done=1) == 47


def test_steady_epoch_seconds_drops_the_warm_up_of_the_first_steps():
    steps = [5.0, 3.0, 2.0] + [1.0] * 7  # 17 s of steps; the first three cost 7 s extra
    assert steady_epoch_seconds(17.5, steps, steps_per_epoch=10) == pytest.approx(10.5)
    # A run cut short by max_steps: the missing steps are added at the steady rate.
    assert steady_epoch_seconds(17.5, steps, steps_per_epoch=20) == pytest.approx(20.5)
    assert steady_epoch_seconds(4.0, [2.0, 1.0], steps_per_epoch=2) == 4.0  # too few to tell


def test_time_budget_replans_from_the_recent_epochs():
    budget = TimeBudget(minutes=10.0, val_every=12, t0=0.0)  # plans for 0.97 x 600 = 582 s
    assert budget.budget_s == pytest.approx(582.0)
    budget.val_s = 1.0
    # Epoch 1: 13.0 s, of which 0.8 s were the first three steps' warm-up -> 12.2 s.
    first = budget.epoch_seconds(1, 13.0, [0.9, 0.3, 0.2] + [0.2] * 59, steps=62)
    assert first == pytest.approx(12.2)
    budget.finish(1, 20.0, 1.0)
    assert budget.epoch_seconds(2, 12.0, [], steps=62) == 12.0  # no whole later epoch yet
    for e, wall in enumerate([12.0] * 6 + [14.0] * 8, start=2):
        budget.finish(e, wall, None)
    # The machine slowed down: the last ten whole epochs (2 x 12, 8 x 14) -> 13.6 s.
    assert budget.epoch_seconds(16, 14.0, [], steps=62) == pytest.approx(13.6)
    assert budget.plan(16, now=220.0, epoch_s=13.6) == epochs_for_budget(
        582, 220, 13.6, 1.0, 12, 16
    )
    assert budget.plan(16, now=220.0, epoch_s=13.6) < budget.plan(16, now=220.0, epoch_s=12.0)
