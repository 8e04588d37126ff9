"""`train --resume` on checkpoints with a broken training state, runs already at their epochs,
--finetune with --resume, validation labels checked before the first epoch; a stop between an
epoch's files (last.pt commits it); settings a resume keeps (a time budget's epochs, an early
stop), refuses (optimizer, batch size, schedule, EMA) or applies and reports."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from pkmodel.cli import app
from pkmodel.common.errors import PkmodelError
from pkmodel.engine.train import train
from pkmodel.model.checkpoint import check_resumable
from tests.conftest import tiny_train_config


@pytest.fixture(scope="module")
def one_epoch(tiny_prepared, tmp_path_factory) -> Path:
    """A finished 1-epoch run's last.pt."""
    out = tmp_path_factory.mktemp("run1")
    train(tiny_train_config(tiny_prepared, out, epochs=1), progress=False)
    return out / "last.pt"


def _broken(state: dict, edit: str) -> dict:
    state = dict(state)
    if edit.startswith("del "):
        del state[edit[4:]]
    else:
        key, value = edit.split("=", 1)
        state[key] = eval(value)  # noqa: S307  (the test's own literals)
    return state


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        *[
            (f"del {k}", f"no '{k}' entry")
            for k in ("optimizer", "scheduler", "rng", "epoch", "best", "step")
        ],  # fmt: skip
        ("optimizer={'state': {}, 'param_groups': []}", "'optimizer' is"),
        ("rng={'torch': 5}", "'rng' has"),
        ("scheduler={'x': 1}", "'scheduler' is {'x': 1}"),
        ("epoch='one'", "'epoch' is 'one' (type str), not a whole number >= 0"),
        ("epoch=-5", "'epoch' is -5"),
        ("best=[]", "'best' is"),
    ],
)
def test_a_broken_training_state_is_one_sentence(one_epoch, edit, message):
    state = torch.load(one_epoch, weights_only=True)
    check_resumable(state, one_epoch)  # the real one is fine
    with pytest.raises(PkmodelError, match="cannot be resumed: ") as e:
        check_resumable(_broken(state, edit), "R/last.pt")
    assert str(e.value).startswith("R/last.pt cannot be resumed") and message in str(e.value)


def test_resume_refuses_before_training(tiny_prepared, one_epoch, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    state = torch.load(one_epoch, weights_only=True)
    groups = state["optimizer"]["param_groups"]
    state["optimizer"]["param_groups"] = [*groups, dict(groups[0])]
    torch.save(state, run / "last.pt")
    cfg = tiny_train_config(tiny_prepared, run, epochs=3)
    with pytest.raises(PkmodelError, match="its 'optimizer' does not fit"):
        train(cfg, resume=run / "last.pt", progress=False)
    for entry in ("model", "ema"):  # weights missing a tensor: torch's RuntimeError before
        state = torch.load(one_epoch, weights_only=True)
        state[entry] = {k: v for k, v in state[entry].items() if not k.endswith("running_mean")}
        torch.save(state, run / "last.pt")
        with pytest.raises(PkmodelError) as e:
            train(cfg, resume=run / "last.pt", progress=False)
        assert str(e.value).startswith(
            f"{run / 'last.pt'}: the '{entry}' weights do not fit this model (no tensor for the "
            "model's '"
        ) and str(e.value).endswith("more missing)")
    shutil.copy(one_epoch, run / "last.pt")
    # a finished run resumed: nothing to train, nothing touched, exit 0 (a "resume until done"
    # loop stays idempotent), and the CLI says why
    done = train(tiny_train_config(tiny_prepared, run, epochs=1), resume=run / "last.pt")
    assert done.epochs_run == 0 and done.resumed_from == 1
    assert (run / "last.pt").read_bytes() == one_epoch.read_bytes()
    assert not (run / "metrics.jsonl").exists()
    result = CliRunner().invoke(app, ["train", "--out", str(run), "--resume", "--epochs", "1",
                                      "--set", f"data.prepared_dir={tiny_prepared}",
                                      "--set", "model.input_size=64", "--set", "model.width_mult=0.35",
                                      "--set", "model.neck_channels=24", "--set", "model.head_channels=24",
                                      "--set", "train.batch_size=8",
                                      "--device", "cpu", "--workers", "0"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert (
        "nothing to train: " in result.output and "has already trained 1 epoch(s)" in result.output
    )


def test_finetune_with_resume_is_refused(one_epoch, tmp_path):
    result = CliRunner().invoke(
        app, ["train", "--out", str(one_epoch.parent), "--resume", "--finetune", str(one_epoch)]
    )
    assert result.exit_code == 2 and "give one of them" in result.output


def test_bad_validation_labels_stop_the_run_before_it_trains(tiny_prepared, tmp_path):
    prepared = tmp_path / "prep"
    prepared.mkdir()
    (prepared / "imgs").symlink_to(tiny_prepared / "imgs")
    shutil.copy(tiny_prepared / "train.json", prepared / "train.json")
    val = json.loads((tiny_prepared / "val.json").read_text())
    val["samples"][0]["image_id"] = "x"
    (prepared / "val.json").write_text(json.dumps(val))
    cfg = tiny_train_config(prepared, tmp_path / "run", epochs=1)
    with pytest.raises(PkmodelError, match=r"val.json: samples\[0\].image_id is 'x'"):
        train(cfg, progress=False)
    assert not (tmp_path / "run").exists()  # refused before the run folder was made


# --- last.pt commits an epoch: a stop between its files, and a resume --------------------------


def _rows(run: Path) -> list[dict]:
    return [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]


def _stop_at(monkeypatch, name: str, epoch: int, after: bool) -> None:
    """A stop (as Ctrl-C raises it) just before or just after the save of ``name`` at ``epoch``."""
    import pkmodel.engine.train as train_module

    real = train_module.save_checkpoint

    def save(path, state):
        if Path(path).name == name and state["epoch"] == epoch and not after:
            raise KeyboardInterrupt
        real(path, state)
        if Path(path).name == name and state["epoch"] == epoch:
            raise KeyboardInterrupt

    monkeypatch.setattr(train_module, "save_checkpoint", save)


@pytest.mark.parametrize("after", [False, True])
def test_a_stop_between_an_epochs_files_loses_no_metrics_row_and_no_best(
    tiny_prepared, tmp_path, monkeypatch, after
):
    """best.pt and the metrics row come before last.pt: a stop after last.pt loses neither (it
    lost both: the resume began after the epoch), a stop before it makes the resume redo the
    epoch, whose row replaces the one written (not a second row 2)."""
    run = tmp_path / "run"
    cfg = tiny_train_config(tiny_prepared, run, epochs=3, val_every=2)  # validates 2 and 3
    with monkeypatch.context() as m:
        _stop_at(m, "last.pt", 2, after)
        with pytest.raises(KeyboardInterrupt):
            train(cfg, progress=False)
    assert torch.load(run / "last.pt", weights_only=True)["epoch"] == (2 if after else 1)
    assert torch.load(run / "best.pt", weights_only=True)["epoch"] == 2  # no validation in 1
    assert [r["epoch"] for r in _rows(run)] == [1, 2]
    again = tiny_train_config(tiny_prepared, run, epochs=3, val_every=2)
    result = train(again, resume=run / "last.pt", progress=False)
    assert result.epochs_run == (1 if after else 2)
    last = torch.load(run / "last.pt", weights_only=True)
    assert [r["epoch"] for r in _rows(run)] == [1, 2, 3]
    assert _rows(run)[2] == last["row"] and "val/AP" in _rows(run)[1]
    best = torch.load(run / "best.pt", weights_only=True)
    assert best["epoch"] == last["best"]["epoch"] and best["run_id"] == last["run_id"]


def _tensorboard(run: Path, tag: str = "train/loss") -> dict[int, float]:
    """{epoch: value} of ``tag`` as TensorBoard shows the run's folder (a repeated epoch
    fails)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    steps = [e.step for e in events.Scalars(tag)]
    assert len(set(steps)) == len(steps), f"epochs shown twice: {steps}"
    return {e.step: e.value for e in events.Scalars(tag)}


def _losses(run: Path) -> dict[int, float]:
    return {r["epoch"]: r["train/loss"] for r in _rows(run)}


def test_tensorboard_shows_a_redone_epoch_once_and_a_run_started_over_alone(
    tiny_prepared, tmp_path, monkeypatch
):
    """A resume redoes an epoch whose last.pt was not written: TensorBoard showed both of its
    points (its own file and the resumed run's). Each writer now opens with a restart marker at
    its first epoch, so TensorBoard shows the curves of metrics.jsonl; a run that starts over
    hides the earlier run's points, and one stopped before its first row leaves them."""
    run = tmp_path / "run"
    with monkeypatch.context() as m:
        _stop_at(m, "last.pt", 2, after=False)
        with pytest.raises(KeyboardInterrupt):
            train(tiny_train_config(tiny_prepared, run, epochs=2), progress=False)
    stopped = _losses(run)
    assert _tensorboard(run) == pytest.approx(stopped, rel=1e-6) and len(stopped) == 2
    train(tiny_train_config(tiny_prepared, run, epochs=3), resume=run / "last.pt")
    rows = _losses(run)
    assert sorted(rows) == [1, 2, 3] and rows[2] != stopped[2]
    assert _tensorboard(run) == pytest.approx(rows, rel=1e-6)
    with monkeypatch.context() as m:  # starting over, stopped before its first row
        m.setattr("pkmodel.engine.train.Run.train_epoch", _interrupt)
        with pytest.raises(KeyboardInterrupt):
            train(tiny_train_config(tiny_prepared, run, epochs=1), overwrite=True)
    assert _tensorboard(run) == pytest.approx(rows, rel=1e-6)
    train(tiny_train_config(tiny_prepared, run, epochs=1, seed=5), overwrite=True)
    again = _losses(run)
    assert sorted(again) == [1] and again[1] != rows[1]
    assert _tensorboard(run) == pytest.approx(again, rel=1e-6)


def _interrupt(*args, **kwargs):
    raise KeyboardInterrupt


def test_force_stopped_right_after_its_first_last_pt_resumes_without_the_earlier_runs_files(
    tiny_prepared, tmp_path, monkeypatch
):
    """A run that starts over writes its first last.pt before it replaces the earlier run's
    best.pt and metrics; stopped in between, its resume drops the earlier run's metrics rows
    (they were kept as this run's) and best.pt, and restores this run's row 1."""
    run = tmp_path / "run"
    train(tiny_train_config(tiny_prepared, run, epochs=1), progress=False)
    earlier = _rows(run)
    again = tiny_train_config(tiny_prepared, run, epochs=2, seed=5)
    with monkeypatch.context() as m:
        _stop_at(m, "last.pt", 1, after=True)
        with pytest.raises(KeyboardInterrupt):
            train(again, progress=False, overwrite=True)
    assert _rows(run) == earlier  # the earlier run's, as the stop left them
    result = train(tiny_train_config(tiny_prepared, run, epochs=2, seed=5), resume=run / "last.pt")
    assert result.epochs_run == 1
    rows, last = _rows(run), torch.load(run / "last.pt", weights_only=True)
    assert [r["epoch"] for r in rows] == [1, 2] and rows[0] != earlier[0] and rows[1] == last["row"]
    best = torch.load(run / "best.pt", weights_only=True)
    assert best["run_id"] == last["run_id"] and best["config"]["train"]["seed"] == 5


# --- what a resume keeps, refuses and reports --------------------------------------------------


def _cli(run: Path, prepared: Path, *more: str) -> list[str]:
    return ["train", "--out", str(run), "--quiet", "--resume", "--device", "cpu", "--workers", "0",
            "--set", f"data.prepared_dir={prepared}", "--set", "model.input_size=64",
            "--set", "model.width_mult=0.35", "--set", "model.neck_channels=24",
            "--set", "model.head_channels=24", "--set", "train.batch_size=8",
            "--set", "train.warmup_epochs=0.5", "--set", "train.ema_decay=0.9",
            "--set", "eval.batch_size=16", *more]  # fmt: skip


def test_a_time_budgeted_run_resumes_to_its_planned_epochs_without_minutes(
    tiny_prepared, tmp_path, monkeypatch
):
    """Without --minutes the resume trained to the config's train.epochs (here 50) and wrote
    minutes 0 into last.pt; an explicit --epochs on resume is not used while the budget stands
    (the message says so), --minutes 0 drops the budget and other minutes are refused."""
    import pkmodel.engine.budget as budget_module

    monkeypatch.setattr(budget_module, "epochs_for_budget", lambda *args: 3)
    run = tmp_path / "run"
    cfg = tiny_train_config(tiny_prepared, run, epochs=50, minutes=0.5)
    assert train(cfg, progress=False, max_steps=2 * 2).epochs_run == 2  # 2 steps per epoch
    cfg = tiny_train_config(tiny_prepared, run, epochs=50)  # no minutes: as config.toml says
    result = train(cfg, resume=run / "last.pt", progress=False, max_steps=4 * 2 + 1)
    assert result.epochs_run == 1 and cfg.train.epochs == 3 and cfg.train.minutes == 0.5
    saved = torch.load(run / "last.pt", weights_only=True)
    assert saved["epoch"] == 3 and saved["config"]["train"]["minutes"] == 0.5
    assert saved["config"]["train"]["epochs"] == 3

    result = CliRunner().invoke(app, _cli(run, tiny_prepared, "--minutes", "0.5", "--epochs", "30"))
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [
        f"nothing to train: {run}/last.pt has already trained 3 epoch(s) and train.epochs is 3 "
        "(not --epochs 30), as its time budget (train.minutes 0.5) chose and a resume keeps "
        "(--minutes 0 with a larger --epochs trains on without the budget); best AP "
        f"{saved['best']['ap']:.4f} at epoch {saved['best']['epoch']}"
    ]
    result = CliRunner().invoke(app, _cli(run, tiny_prepared, "--minutes", "0.25"))
    assert result.exit_code == 2 and result.output.splitlines() == [
        f"error: cannot resume from {run}/last.pt with train.minutes 0.25 (the checkpoint has "
        "0.5): a resumed run keeps the train.epochs its time budget chose (--minutes 0 with "
        "--epochs trains on without the budget)"
    ]
    result = CliRunner().invoke(app, _cli(run, tiny_prepared, "--minutes", "0", "--epochs", "4"))
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[0] == (
        f"resuming from {run}/last.pt with changed settings: train.minutes 0.5 -> 0 (no time "
        "budget), train.epochs 3 -> 4"
    )
    saved = torch.load(run / "last.pt", weights_only=True)
    assert saved["epoch"] == 4 and saved["config"]["train"]["minutes"] == 0.0


@pytest.mark.parametrize(
    ("key", "value", "shown"),
    [
        ("optimizer", "sgd", "train.optimizer 'sgd' (the checkpoint has 'adamw')"),
        ("batch_size", 4, "train.batch_size 4 (the checkpoint has 8)"),
        ("scheduler", "step", "train.scheduler 'step' (the checkpoint has 'cosine')"),
        ("warmup_epochs", 2.0, "train.warmup_epochs 2 (the checkpoint has 0.5)"),
        ("ema", False, "train.ema false (the checkpoint has true)"),
    ],
)
def test_resume_refuses_settings_it_cannot_honour(
    tiny_prepared, one_epoch, tmp_path, key, value, shown
):
    """sgd on an adamw run was a 66-line traceback (KeyError 'momentum'); another batch size
    left the cosine unfinished: refused before anything runs, naming both values."""
    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(one_epoch, run / "last.pt")
    cfg = tiny_train_config(tiny_prepared, run, epochs=2, **{key: value})
    with pytest.raises(PkmodelError) as e:
        train(cfg, resume=run / "last.pt", progress=False)
    assert str(e.value) == (
        f"cannot resume from {run}/last.pt with {shown}: a resumed run keeps its optimizer, "
        "batch size, learning-rate schedule and EMA (start over with --force, or train into "
        "another --out)"
    )
    assert (run / "last.pt").read_bytes() == one_epoch.read_bytes()


def test_resume_applies_and_reports_other_changed_settings(tiny_prepared, one_epoch, tmp_path):
    """The weight decay given on resume was recorded but not used (the optimizer state brought
    back 1e-4); now the optimizer takes it, and each change is reported in one line."""
    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(one_epoch, run / "last.pt")
    cfg = tiny_train_config(tiny_prepared, run, epochs=2, weight_decay=0.5, lr=1e-3)
    cfg.set("loss.offset_weight", 3.0, "--set")
    result = train(cfg, resume=run / "last.pt", progress=False)
    assert result.epochs_run == 1
    assert result.changed == [
        "train.epochs 1 -> 2", "train.lr 0.002 -> 0.001", "train.weight_decay 0.0001 -> 0.5",
        "loss.offset_weight 2 -> 3",
    ]  # fmt: skip
    saved = torch.load(run / "last.pt", weights_only=True)
    assert [g["weight_decay"] for g in saved["optimizer"]["param_groups"]] == [0.5, 0.0]
    assert saved["config"]["train"]["weight_decay"] == 0.5


def test_an_early_stopped_run_resumes_to_nothing_unless_patience_or_epochs_are_raised(
    tiny_prepared, tmp_path, monkeypatch
):
    """The resume trained one more epoch and stopped again, every time."""
    import pkmodel.engine.train as train_module

    monkeypatch.setattr(train_module, "validate", lambda *args, **kwargs: {"AP": 0.5})
    run = tmp_path / "run"
    cfg = tiny_train_config(tiny_prepared, run, epochs=6, early_stop_patience=1)
    result = train(cfg, progress=False)
    assert result.stopped_early and result.epochs_run == 2  # AP 0.5 at 1, no gain at 2
    assert torch.load(run / "last.pt", weights_only=True)["stopped_early"] == 2
    before = (run / "last.pt").read_bytes()
    cfg = tiny_train_config(tiny_prepared, run, epochs=6, early_stop_patience=1)
    result = train(cfg, resume=run / "last.pt", progress=False)
    assert result.epochs_run == 0 and result.stopped_early and result.resumed_from == 2
    assert result.reason == (
        "stopped early at epoch 2 (no AP gain for 1 validations; raise "
        "train.early_stop_patience or --epochs to train on)"
    )
    assert (run / "last.pt").read_bytes() == before
    # a larger patience: the count goes on (1 of 2), so one more epoch without gain stops it
    cfg = tiny_train_config(tiny_prepared, run, epochs=6, early_stop_patience=2)
    result = train(cfg, resume=run / "last.pt", progress=False)
    assert result.epochs_run == 1 and result.stopped_early
    # more epochs at the same patience: the count starts again (2 epochs, then the stop)
    cfg = tiny_train_config(tiny_prepared, run, epochs=7, early_stop_patience=2)
    result = train(cfg, resume=run / "last.pt", progress=False)
    assert result.epochs_run == 2 and result.stopped_early
    assert torch.load(run / "last.pt", weights_only=True)["stopped_early"] == 5
    assert [r["epoch"] for r in _rows(run)] == [1, 2, 3, 4, 5]


def test_a_resume_on_a_training_split_of_another_size_keeps_the_schedule_by_epochs(
    tiny_prepared, one_epoch, tmp_path
):
    """The schedule is counted in steps: resumed on a split of twice the samples, epoch 2
    would have begun at epoch 1's step count, half-way along its cosine rather than at the
    half of the run it has reached. It goes on from the end of epoch 1 at the new steps per
    epoch, and says so."""
    import math

    bigger = tmp_path / "bigger"
    bigger.mkdir()
    (bigger / "imgs").symlink_to(tiny_prepared / "imgs")
    shutil.copy(tiny_prepared / "val.json", bigger / "val.json")
    labels = json.loads((tiny_prepared / "train.json").read_text())
    labels["samples"] = labels["samples"] * 2  # each crop twice
    (bigger / "train.json").write_text(json.dumps(labels))
    samples = len(labels["samples"])
    before = torch.load(one_epoch, weights_only=True)
    old = before["steps_per_epoch"]
    assert before["step"] == old == samples // 2 // 8 == 3
    new = samples // 8
    assert new in (6, 7)
    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(one_epoch, run / "last.pt")
    cfg = tiny_train_config(tiny_prepared, run, epochs=2)
    cfg.set("data.prepared_dir", bigger, "--set")
    result = train(cfg, resume=run / "last.pt", progress=False)
    assert result.changed[-1] == (
        f"steps per epoch 3 -> {new} (the training split holds {samples} samples; the "
        "learning-rate schedule goes on from the end of epoch 1)"
    )
    saved = torch.load(run / "last.pt", weights_only=True)
    assert (saved["steps_per_epoch"], saved["step"]) == (new, 2 * new)
    # epoch 2's last step is step 2 * new - 1 of a cosine over 2 * new steps after a warmup
    # of half an epoch; counted on from step 3 it would have been step new + 2 (0.41-0.5 of
    # the peak rate in place of 0.02-0.03)
    warmup = round(0.5 * new)
    last_lr = 2e-3 * 0.5 * (1 + math.cos(math.pi * (2 * new - 1 - warmup) / (2 * new - warmup)))
    assert saved["row"]["lr"] == pytest.approx(last_lr, rel=1e-6)
    assert last_lr < 1e-4
