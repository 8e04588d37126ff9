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


def test_epochs_for_budget_counts_from_done_and_validates_the_last_epoch():
    """Guards the validation count: validations follow epochs that are multiples of val_every
    counted from epoch 1 (not from ``done``), and the last epoch is always validated."""
    # 5 done; 10 s an epoch; a 20 s validation after epochs 8, 12, ... and the last one.
    # Epochs 6..10: 50 s + validations after 8 and 10 = 90 s; epochs 6..11: 60 + 40 = 100 s.
    assert epochs_for_budget(100, 10, 10, 20, val_every=4, done=5) == 10
    # 100 s left: epochs 6..11 = 100 s fit; 6..12: 70 s + validations after 8 and 12 = 110 s.
    assert epochs_for_budget(100, 0, 10, 20, val_every=4, done=5) == 11
    assert epochs_for_budget(109, 0, 10, 20, val_every=4, done=5) == 11


def test_steady_epoch_seconds_at_the_edges():
    """Guards the six-step minimum (three warm-up steps and three to time them) and a warm-up
    that was faster than the steady rate (nothing is added back)."""
    # Six steps: the first three cost 6 s, 3 s more than at the steady 1 s a step.
    assert steady_epoch_seconds(9.5, [4.0, 1.0, 1.0, 1.0, 1.0, 1.0], 6) == pytest.approx(6.5)
    assert steady_epoch_seconds(9.5, [4.0, 1.0, 1.0, 1.0, 1.0], 5) == 9.5  # five: too few
    # A fast start (3 s for three steps at a steady 2 s a step) is no warm-up to remove.
    assert steady_epoch_seconds(9.5, [1.0, 1.0, 1.0, 2.0, 2.0, 2.0], 6) == pytest.approx(9.5)


def test_time_budget_keeps_the_validation_apart_and_counts_from_t0():
    """Guards the re-plan: an epoch's cost excludes its validation, the latest validation time
    is kept through epochs without one, and the time spent is counted from t0."""
    budget = TimeBudget(minutes=1.0, val_every=2, t0=1000.0)  # 0.97 x 60 = 58.2 s
    budget.finish(1, 12.0, 2.0)
    budget.finish(2, 13.0, 3.0)  # 10 s of training and a 3 s validation
    budget.finish(3, 10.0, None)
    assert budget.epoch_seconds(4, 10.0, [], steps=10) == pytest.approx(10.0)
    assert budget.val_s == 3.0
    # 35 s spent, 23.2 s left: epoch 4 and its validation (13 s) fit; epoch 5, validated as
    # the last, needs 26 s.
    assert budget.plan(3, now=1035.0, epoch_s=10.0) == 4
