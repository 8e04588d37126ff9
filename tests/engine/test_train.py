"""The trainer: schedule, EMA, RNG state, loss falling, exact resume after SIGKILL, DDP, NaN stop."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from pkmodel.common.errors import PkmodelError
from pkmodel.engine.train import train
from pkmodel.model.checkpoint import load_checkpoint, model_from_checkpoint
from tests.conftest import ROOT, labels_missing_a_crop, tiny_train_config


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(path)["model"]


@pytest.mark.slow
def test_a_few_dozen_steps_cut_the_loss(tiny_prepared, tmp_path):
    cfg = tiny_train_config(tiny_prepared, tmp_path / "run", epochs=14, lr=1e-2, ema=False)
    for name in ("flip", "affine", "crop_pad", "color", "blur", "noise", "occlusion"):
        setattr(cfg.augment, f"{name}_prob", 0.0)  # the same samples every epoch
    result = train(cfg, progress=False)
    rows = [json.loads(x) for x in (tmp_path / "run/metrics.jsonl").read_text().split("\n") if x]
    assert len(rows) == 14 and result.epochs_run == 14
    first, last = rows[0], rows[-1]
    # 42 steps, measured falls: total 38%, heatmap 35%, center 68%, reg 49%, offset 25% (the
    # window of offsets around each joint learns slower than the single cell did).
    assert last["train/loss"] < 0.7 * first["train/loss"], (first, last)
    # The focal heatmap term has a floor above 0; it still falls by a quarter.
    for term, most in (("heatmap", 0.75), ("center", 0.5), ("reg", 0.7), ("offset", 0.9)):
        assert last[f"train/{term}"] < most * first[f"train/{term}"], (term, first, last)
    assert (tmp_path / "run/last.pt").is_file() and (tmp_path / "run/best.pt").is_file()
    assert (tmp_path / "run/curves.png").stat().st_size > 1000
    assert {"val/AP", "val/loss", "val/PCK"} <= set(rows[-1])  # validated every epoch


def _train_cmd(prepared: Path, out: Path, epochs: int) -> list[str]:
    sets = [
        f"data.prepared_dir={prepared}", "model.input_size=64", "model.width_mult=0.35",
        "model.neck_channels=24", "model.head_channels=24",
        "train.batch_size=2", "train.workers=0", "train.device=cpu", "train.deterministic=true",
        "train.val_every=100", "eval.batch_size=16",
    ]  # fmt: skip
    cmd = [sys.executable, "-m", "pkmodel.cli", "train", "--out", str(out), "--epochs", str(epochs), "--quiet"]  # fmt: skip
    for s in sets:
        cmd += ["--set", s]
    return cmd


@pytest.mark.slow
def test_sigkill_mid_epoch_or_mid_save_then_resume_gives_identical_weights(tiny_prepared, tmp_path):
    import json

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    straight = tmp_path / "straight"
    subprocess.run(_train_cmd(tiny_prepared, straight, 3), check=True, env=env, cwd=ROOT)
    rows = [json.loads(x) for x in (straight / "metrics.jsonl").read_text().splitlines()]
    epoch_seconds = rows[2]["seconds"] - rows[1]["seconds"]

    killed = tmp_path / "killed"
    proc = subprocess.Popen(_train_cmd(tiny_prepared, killed, 3), env=env, cwd=ROOT)
    deadline = time.time() + 120
    # Wait until epoch 1 is saved, then kill in the middle of epoch 2.
    while not (killed / "last.pt").exists() and time.time() < deadline:
        time.sleep(0.01)
    time.sleep(0.4 * epoch_seconds)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    # Whatever the moment of the kill, last.pt is whole and readable.
    assert load_checkpoint(killed / "last.pt")["epoch"] in (1, 2)
    subprocess.run(
        _train_cmd(tiny_prepared, killed, 3) + ["--resume"], check=True, env=env, cwd=ROOT
    )
    a, b = _weights(straight / "last.pt"), _weights(killed / "last.pt")
    assert load_checkpoint(killed / "last.pt")["epoch"] == 3
    for name in a:
        assert torch.equal(a[name], b[name]), name

    # Killed inside a checkpoint save: epoch 2's last.pt is half written when SIGKILL comes.
    in_save = tmp_path / "in_save"
    code = (
        "import io, os, signal, sys, torch\n"
        "real, calls = torch.save, []\n"
        "def dying_save(obj, f, *args, **kwargs):\n"
        "    calls.append(1)\n"
        "    if len(calls) == 2:\n"
        "        buf = io.BytesIO(); real(obj, buf)\n"
        "        f.write(buf.getvalue()[: len(buf.getvalue()) // 2]); f.flush()\n"
        "        os.kill(os.getpid(), signal.SIGKILL)\n"
        "    return real(obj, f, *args, **kwargs)\n"
        "torch.save = dying_save\n"
        "sys.argv = ['pkmodel', *sys.argv[1:]]\n"
        "from pkmodel.cli import main\n"
        "main()\n"
    )
    args = _train_cmd(tiny_prepared, in_save, 3)[3:]  # after "python -m pkmodel.cli"
    done = subprocess.run([sys.executable, "-c", code, *args], env=env, cwd=ROOT)
    assert done.returncode == -signal.SIGKILL
    assert load_checkpoint(in_save / "last.pt")["epoch"] == 1  # the earlier save is whole
    assert len(list(in_save.glob(".last.pt.*.tmp"))) == 1  # the half-written one
    subprocess.run(
        _train_cmd(tiny_prepared, in_save, 3) + ["--resume"], check=True, env=env, cwd=ROOT
    )
    assert list(in_save.glob(".*.tmp")) == []
    c = _weights(in_save / "last.pt")
    for name in a:
        assert torch.equal(a[name], c[name]), name


def test_sigterm_to_the_process_group_with_workers_is_terminated_not_a_traceback(
    tiny_prepared, tmp_path
):
    """`timeout` or a job's end signals the whole process group: the DataLoader workers die
    too, and PyTorch's SIGCHLD handler raised "DataLoader worker ... is killed by signal:
    Terminated" into the clean-up in place of the exit (a traceback, sometimes exit code 1)."""
    out = tmp_path / "run"
    cmd = _train_cmd(tiny_prepared, out, 200)
    cmd[cmd.index("train.workers=0")] = "train.workers=2"
    cmd[1:3] = ["-m", "pkmodel"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stderr=subprocess.PIPE, start_new_session=True)
    deadline = time.time() + 120
    while not (out / "last.pt").exists() and time.time() < deadline:
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    time.sleep(0.5)  # into epoch 2, workers at work
    os.killpg(proc.pid, signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, err.decode()
    assert "Traceback" not in err.decode()
    assert err.decode().strip().splitlines()[-1] == "terminated"
    assert load_checkpoint(out / "last.pt")["epoch"] >= 1  # what was saved stays


def test_a_missing_crop_with_worker_processes_is_one_sentence(tiny_prepared, tmp_path):
    """Read in a DataLoader worker process, a missing crop is the sentence it is without one."""
    data = tmp_path / "data"
    data.mkdir()
    labels = labels_missing_a_crop(tiny_prepared, data, "train")
    (data / "val.json").symlink_to(tiny_prepared / "val.json")
    cmd = _train_cmd(data, tmp_path / "run", 1) + ["--workers", "2"]  # after train.workers=0
    env = {k: v for k, v in os.environ.items() if not k.startswith("PKMODEL_")}
    done = subprocess.run(cmd, env={**env, "COLUMNS": "200", "NO_COLOR": "1"}, cwd=ROOT,
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    assert done.stderr.splitlines() == [
        f"error: crop {data}/imgs/train/missing.jpg listed in {labels} is missing or "
        "unreadable (run `pkmodel prepare-coco` again)"
    ]


def test_resume_refuses_other_files(tmp_path):
    from typer.testing import CliRunner

    from pkmodel.cli import app

    (tmp_path / "run").mkdir()
    (tmp_path / "run/last.pt").write_bytes(b"not a checkpoint")
    result = CliRunner().invoke(app, ["train", "--out", str(tmp_path / "run"), "--resume"])
    assert result.exit_code == 2
    assert "is not a pkmodel checkpoint" in result.output


def test_nan_loss_stops_with_a_clear_message_and_keeps_last(tiny_prepared, tmp_path, monkeypatch):
    cfg = tiny_train_config(tiny_prepared, tmp_path / "run", epochs=2)
    train(cfg, progress=False)
    before = (tmp_path / "run/last.pt").read_bytes()

    import pkmodel.model.loss

    original = pkmodel.model.loss.PoseLoss.forward

    def poisoned(self, outputs, targets):
        total, terms = original(self, outputs, targets)
        return total * float("nan"), terms

    monkeypatch.setattr(pkmodel.model.loss.PoseLoss, "forward", poisoned)
    cfg.train.epochs = 3
    with pytest.raises(PkmodelError, match=r"the loss became nan at epoch 3, step \d+"):
        train(cfg, resume=tmp_path / "run/last.pt", progress=False)
    assert (tmp_path / "run/last.pt").read_bytes() == before


# --- DDP: 2 processes with gloo on CPU take the same step as one process on the whole batch ---


def _ddp_worker(rank: int, world: int, port: int, batch_path: str, out_path: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.distributed.init_process_group("gloo", rank=rank, world_size=world)
    model, loss_fn, batch = torch.load(batch_path, weights_only=False)
    ddp = torch.nn.parallel.DistributedDataParallel(model)
    half = batch["image"].shape[0] // world
    shard = {k: v[rank * half : (rank + 1) * half] for k, v in batch.items()}
    ddp.train()
    _freeze_bn(ddp)
    loss, _ = loss_fn(ddp(shard["image"]), shard)
    loss.backward()
    if rank == 0:
        torch.save({n: p.grad.clone() for n, p in model.named_parameters()}, out_path)
    # Both leave together: a process destroying its group while the other still saves once
    # aborted ("terminate called without an active exception", SIGABRT).
    torch.distributed.barrier()
    torch.distributed.destroy_process_group()


def _freeze_bn(model: torch.nn.Module) -> None:
    # Without SyncBatchNorm (CUDA only), each process normalises its own shard; with frozen
    # statistics the DDP step must equal the single-process step exactly.
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.eval()


@pytest.mark.slow
def test_ddp_gloo_step_equals_single_process_step(tiny_prepared, tmp_path):
    import socket

    import torch.multiprocessing as mp

    from pkmodel.data.dataset import PoseDataset
    from pkmodel.model.loss import PoseLoss
    from pkmodel.model.network import build_model

    cfg = tiny_train_config(tiny_prepared, tmp_path / "run")
    torch.manual_seed(0)
    model = build_model(cfg.model, pretrained=False)
    loss_fn = PoseLoss(cfg.loss, sync_counts=True)
    ds = PoseDataset(tiny_prepared / "train.json", cfg, train=False)
    batch = torch.utils.data.default_collate([ds[i] for i in range(8)])
    batch = {k: v for k, v in batch.items() if torch.is_tensor(v)}
    torch.save((model, loss_fn, batch), tmp_path / "batch.pt")

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_ddp_worker, args=(2, port, str(tmp_path / "batch.pt"), str(tmp_path / "g.pt")), nprocs=2)  # fmt: skip
    ddp_grads = torch.load(tmp_path / "g.pt")

    model.train()
    _freeze_bn(model)
    loss, _ = loss_fn(model(batch["image"]), batch)
    loss.backward()
    for name, p in model.named_parameters():
        assert torch.allclose(p.grad, ddp_grads[name], rtol=1e-4, atol=1e-7), name


@pytest.mark.slow
def test_torchrun_two_processes_train_and_validate(tiny_prepared, tmp_path):
    """The README's torchrun command, on CPU with gloo: both processes train, rank 0 alone
    validates and writes, and nothing waits forever for a collective the other never calls."""
    import json

    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "pkmodel"] + _train_cmd(tiny_prepared, out, 2)[3:]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    # rank 0 speaks for the run (every rank printed "done:")
    lines = proc.stdout.splitlines()
    assert len(lines) == 1 and lines[0].startswith("done: 2 epoch(s) in "), proc.stdout
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2] and "val/AP" in rows[-1]
    assert load_checkpoint(out / "last.pt")["epoch"] == 2
    # Global batch 2 over 2 processes: every sample of tiny_prepared's train split is seen once.
    assert (
        rows[0]["step"]
        == len(json.loads((tiny_prepared / "train.json").read_text())["samples"]) // 2
    )


@pytest.mark.slow
def test_torchrun_a_process_that_fails_says_why_and_the_other_says_one_line(
    tiny_prepared, tmp_path
):
    """A crop only one process reads is missing: that process says so and the other one, whose
    collective lost its peer, says one line (it printed a 70-line gloo traceback)."""
    data = tmp_path / "data"
    data.mkdir()
    labels = labels_missing_a_crop(tiny_prepared, data, "train")
    (data / "val.json").symlink_to(tiny_prepared / "val.json")
    # torchrun looks at its processes every 2 s here: the other process has its say first
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "--monitor-interval", "2", "-m", "pkmodel"] + _train_cmd(data, tmp_path / "run", 1)[3:]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith("PKMODEL_")}
    env.update(OMP_NUM_THREADS="1", COLUMNS="200", NO_COLOR="1")
    proc = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    assert "Connection closed by peer" not in proc.stderr and "[rank" not in proc.stderr
    assert sorted(x for x in proc.stderr.splitlines() if x.startswith("error: ")) == [
        "error: another process of this run failed (see its message)",
        f"error: crop {data}/imgs/train/missing.jpg listed in {labels} is missing or "
        "unreadable (run `pkmodel prepare-coco` again)",
    ], proc.stderr[-3000:]
    assert proc.stdout == ""


def test_channels_last_changes_speed_not_results(tiny_prepared, tmp_path):
    # The memory format is a layout choice: a step moves the weights the same way in either
    # format, and the checkpoint loads into a plain (contiguous) model. Not bit for bit:
    # PyTorch's channels-last BatchNorm backward on CPU loses precision when a channel's mean
    # is large against its spread (weight gradient error 1e-4 relative at mean/std 300, against
    # 6e-6 contiguous), and BatchNorm's backward cancels most of each early conv's gradient,
    # so the relative error there grows with the batch: 4% and 17% of one SGD step on two
    # batches of this set (0.4% against a float64 reference on random data), still far below
    # the batch-to-batch noise of SGD. One step: from-scratch training at a high rate is
    # chaotic, and after a few steps any two float orders diverge.
    import json

    from pkmodel.common.devices import seed_everything
    from pkmodel.model.network import build_model

    weights, losses = {}, {}
    for fmt in (True, False):
        cfg = tiny_train_config(tiny_prepared, tmp_path / str(fmt), epochs=1, ema=False,
                                channels_last=fmt, val_every=100, optimizer="sgd", lr=0.05)  # fmt: skip
        train(cfg, progress=False, max_steps=1)
        weights[fmt] = _weights(tmp_path / str(fmt) / "last.pt")
        assert load_checkpoint(tmp_path / str(fmt) / "last.pt")["step"] == 1
        first_line = (tmp_path / str(fmt) / "metrics.jsonl").read_text().splitlines()[0]
        losses[fmt] = json.loads(first_line)["train/loss"]
    seed_everything(cfg.train.seed)
    start = build_model(cfg.model, pretrained=False).state_dict()
    names = [n for n, v in start.items() if v.is_floating_point() and "running" not in n]
    moved = torch.cat([(weights[False][n] - start[n]).flatten() for n in names])
    apart = torch.cat([(weights[True][n] - weights[False][n]).flatten() for n in names])
    assert moved.norm() > 0.1  # the steps did move the weights
    assert apart.norm() < 0.3 * moved.norm(), (apart.norm(), moved.norm())
    assert losses[True] == pytest.approx(losses[False], rel=1e-5)  # the same forward pass
    model, _, _ = model_from_checkpoint(tmp_path / "True" / "last.pt")
    assert all(p.is_contiguous() for p in model.parameters())


# --- Time budget (train.minutes) ---


def test_time_budget_sets_the_epochs_after_epoch_1_and_resume_keeps_them(
    tiny_prepared, tmp_path, monkeypatch
):
    import pkmodel.engine.budget as budget_module

    calls = []

    def fake_budget(budget_s, elapsed_s, epoch_s, val_s, val_every, done):
        calls.append((budget_s, elapsed_s, epoch_s, val_s, val_every, done))
        return 3

    monkeypatch.setattr(budget_module, "epochs_for_budget", fake_budget)
    cfg = tiny_train_config(tiny_prepared, tmp_path / "run", epochs=50, minutes=0.5, val_every=10)
    steps_per_epoch = 2  # 20 crops (tiny_prepared) // batch 8
    result = train(cfg, progress=False, max_steps=2 * steps_per_epoch)  # stop after epoch 2
    assert result.epochs_run == 2 and cfg.train.epochs == 3
    assert [c[5] for c in calls] == [1, 2]  # planned after epoch 1, re-planned after epoch 2
    (budget_s, elapsed_s, epoch_s, val_s, val_every, done) = calls[0]
    assert budget_s == pytest.approx(0.97 * 30.0) and val_every == 10
    assert 0 < epoch_s < elapsed_s and val_s > 0
    rows = [json.loads(line) for line in (tmp_path / "run/metrics.jsonl").read_text().splitlines()]
    assert "val/AP" in rows[0] and rows[0]["budget/epochs"] == 3  # epoch 1 is validated
    assert "val/AP" in rows[1]  # max_steps stop
    saved = load_checkpoint(tmp_path / "run/last.pt")["config"]["train"]
    assert saved["epochs"] == 3 and saved["minutes"] == 0.5

    # Resuming with the same command runs the chosen schedule to its end, not 50 epochs.
    cfg = tiny_train_config(tiny_prepared, tmp_path / "run", epochs=50, minutes=0.5, val_every=10)
    result = train(cfg, resume=tmp_path / "run/last.pt", progress=False)
    assert result.epochs_run == 1 and cfg.train.epochs == 3 and len(calls) == 2  # no re-plan
    assert load_checkpoint(tmp_path / "run/last.pt")["epoch"] == 3


def test_time_budget_that_is_spent_by_epoch_1_stops_there(tiny_prepared, tmp_path):
    cfg = tiny_train_config(tiny_prepared, tmp_path / "run", epochs=50, minutes=0.0001)
    result = train(cfg, progress=False)
    assert result.epochs_run == 1 and cfg.train.epochs == 1
    assert result.last_metrics["budget/epochs"] == 1 and "val/AP" in result.last_metrics


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("epochs", 0, "train.epochs = 0 must be at least 1"),
        ("minutes", -1.0, "train.minutes = -1.0 must be >= 0"),
        ("val_every", 0, "train.val_every = 0 must be at least 1"),
        ("lr", 0.0, "train.lr = 0.0 must be positive"),
        ("ema_decay", 1.0, r"train.ema_decay = 1.0 must be in \[0, 1\)"),
    ],
)
def test_unusable_train_values_stop_with_one_sentence(tmp_path, key, value, message):
    cfg = tiny_train_config(tmp_path / "none", tmp_path / "run", **{key: value})
    with pytest.raises(PkmodelError, match=message):
        train(cfg, progress=False)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("targets.min_sigma", 0.0, "targets.min_sigma = 0.0 must be positive"),
        ("targets.max_sigma", 0.5, r"targets.max_sigma = 0.5 must be >= targets.min_sigma \(1.0\)"),
        ("loss.offset_weight", -1.0, "loss.offset_weight = -1.0 must be >= 0"),
        ("augment.flip_prob", 1.5, r"augment.flip_prob = 1.5 must be in \[0, 1\]"),
        (
            "augment.scale_min",
            2.0,
            r"augment.scale_min = 2.0 must be <= augment.scale_max \(1.25\)",
        ),
        ("decoder.score_threshold", -0.1, r"decoder.score_threshold = -0.1 must be in \[0, 1\]"),
        ("eval.batch_size", 0, "eval.batch_size = 0 must be at least 1"),
    ],
)
def test_unusable_values_of_the_sections_training_reads_stop_it_first(
    tmp_path, key, value, message
):
    cfg = tiny_train_config(tmp_path / "none", tmp_path / "run")
    cfg.set(key, value, "test")
    with pytest.raises(PkmodelError, match=message):
        train(cfg, progress=False)
    assert not (tmp_path / "run").exists()


def test_all_zero_loss_weights_are_refused(tmp_path):
    cfg = tiny_train_config(tmp_path / "none", tmp_path / "run")
    for term in ("heatmap", "center", "reg", "offset", "bone"):
        cfg.set(f"loss.{term}_weight", 0.0, "test")
    with pytest.raises(PkmodelError, match="every weight is 0"):
        train(cfg, progress=False)


def test_a_run_folder_with_checkpoints_is_not_overwritten_without_force(tiny_prepared, tmp_path):
    from typer.testing import CliRunner

    from pkmodel.cli import app

    cfg = tiny_train_config(tiny_prepared, tmp_path / "run", epochs=1)
    train(cfg, progress=False)
    before = {n: (tmp_path / "run" / n).read_bytes() for n in ("last.pt", "best.pt")}
    with pytest.raises(
        PkmodelError, match=r"already holds last.pt and best.pt .* --force starts over"
    ):
        train(tiny_train_config(tiny_prepared, tmp_path / "run", epochs=1), progress=False)
    assert {n: (tmp_path / "run" / n).read_bytes() for n in before} == before
    # The command line: one sentence, exit 2; --force starts over.
    args = ["train", "--out", str(tmp_path / "run"), "--quiet", "--max-steps", "1",
            "--set", f"data.prepared_dir={tiny_prepared}", "--set", "model.input_size=64",
            "--set", "model.width_mult=0.35", "--set", "train.device=cpu",
            "--set", "train.batch_size=8", "--set", "train.workers=0"]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2 and result.output.startswith("error: ")
    assert len(result.output.strip().splitlines()) == 1
    result = CliRunner().invoke(app, [*args, "--force"])
    assert result.exit_code == 0, result.output
    after = load_checkpoint(tmp_path / "run/last.pt")
    assert after["step"] == 1 and after["config"]["model"]["input_size"] == 64


def test_force_keeps_the_earlier_checkpoints_until_the_new_run_has_written_one(
    tiny_prepared, tmp_path, monkeypatch
):
    """A --force run that fails before its first epoch (a bad value, no prepared data, an
    interruption) leaves the earlier run's files as they were; once its first last.pt exists,
    the earlier best.pt goes (no validation in epoch 1 here, so it is not rewritten)."""
    run = tmp_path / "run"
    train(tiny_train_config(tiny_prepared, run, epochs=1), progress=False)
    (run / ".last.pt.abc123.tmp").write_bytes(b"left by a killed save")
    names = ("last.pt", "best.pt", "metrics.jsonl", "curves.png")
    before = {n: (run / n).read_bytes() for n in names}
    bad = tiny_train_config(tiny_prepared, run, epochs=1)
    bad.set("model.input_size", 100, "test")
    with pytest.raises(PkmodelError, match="model.input_size = 100"):
        train(bad, progress=False, overwrite=True)
    missing = tiny_train_config(tmp_path / "no_such_folder", run, epochs=1)
    with pytest.raises(PkmodelError, match="prepared labels .* do not exist"):
        train(missing, progress=False, overwrite=True)
    assert {n: (run / n).read_bytes() for n in names} == before
    assert not (run / ".last.pt.abc123.tmp").exists()  # a killed save's leftover is cleaned

    # Epoch 1 trains without validating and is saved; the run is interrupted in epoch 2's
    # validation: this run's last.pt and metrics, and no best.pt of the earlier run beside them.
    import pkmodel.engine.train as train_module

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(train_module, "validate", interrupt)
    again = tiny_train_config(tiny_prepared, run, epochs=2, val_every=2)
    again.set("train.seed", 5, "test")
    with pytest.raises(KeyboardInterrupt):
        train(again, progress=False, overwrite=True)
    assert load_checkpoint(run / "last.pt")["config"]["train"]["seed"] == 5
    assert not (run / "best.pt").exists()
    assert not (run / "curves.png").exists()  # the earlier run's curves went with its files
    rows = (run / "metrics.jsonl").read_text().splitlines()
    assert len(rows) == 1 and json.loads(rows[0])["epoch"] == 1 and "val/AP" not in rows[0]


def test_max_steps_below_one_is_refused(tmp_path):
    from typer.testing import CliRunner

    from pkmodel.cli import app

    result = CliRunner().invoke(app, ["train", "--out", str(tmp_path / "r"), "--max-steps", "0"])
    assert (
        result.exit_code == 2 and result.output.strip() == "error: --max-steps 0 must be at least 1"
    )
    assert not (tmp_path / "r").exists()


def test_a_run_that_cannot_start_leaves_no_folder(tmp_path):
    cfg = tiny_train_config(tmp_path / "no_prepared_data", tmp_path / "run")
    with pytest.raises(PkmodelError, match="prepared labels .*train.json do not exist"):
        train(cfg, progress=False)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    ("batch", "processes", "message"),
    [
        (
            5,
            2,
            "train.batch_size 5 does not split evenly over 2 processes (it is the global "
            "batch): give a multiple of 2, e.g. 4 or 6",
        ),
        (3, 4, "train.batch_size 3 is smaller than the number of processes (4)"),
        (6, 4, "give a multiple of 4, e.g. 4 or 8"),
    ],
)
def test_a_global_batch_that_does_not_split_evenly_is_refused(batch, processes, message):
    """Under torchrun each process loads batch_size / processes samples: 5 over 2 was 2 each,
    a global batch of 4, without a word."""
    from pkmodel.common.devices import DistInfo
    from pkmodel.config import load_config
    from pkmodel.engine.batches import per_process_batch

    cfg = load_config(overrides=[f"train.batch_size={batch}"])
    with pytest.raises(PkmodelError, match=message.replace("(", r"\(").replace(")", r"\)")):
        per_process_batch(cfg, DistInfo(world_size=processes))
    cfg = load_config(overrides=[f"train.batch_size={2 * processes}"])
    assert per_process_batch(cfg, DistInfo(world_size=processes)) == 2
