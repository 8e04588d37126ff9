"""CUDA checks: mixed precision against float32, channels-last, loader workers with pinned
memory, and torchrun with NCCL. Every test skips with a reason where CUDA is absent;
``scripts/gpu_check.sh`` runs them on a machine with a GPU (docs/benchmark.md, "GPU check").

Development switches (environment): ``GPU_CHECK_DEVICE=cpu`` runs the same code on the CPU (a
dry-run of the code paths; the tolerances are the GPU's), ``GPU_CHECK_QUICK=1`` uses a tiny
network, and ``GPU_CHECK_FIGURES=PATH`` collects the measured figures (losses, cosines, speeds)
into a JSON file, passed or failed, for the script's summary.

The step helpers below are the trainer's step (``pkmodel.engine.train.Run._step``) made of the
same pkmodel functions; the script's throughput figures use them too.

Why the gradient of the whole network is not held to one cosine: at random initialisation
this BatchNorm network's gradient is ill-conditioned (gradients explode towards the input, as in
any deep batch-normalised network at initialisation), so its early convolutions' gradients move
with the rounding of every activation. Measured on the CPU (default network, 192 px, batch 8):
the cosine of the whole gradient is 0.9998 between float32 and float64, but 0.09-0.17 between
bf16 autocast and float32 (0.2-0.5 for fp16) with the losses 0.25-0.6 % apart, and it stays
that low with BatchNorm's statistics frozen. The heads' output layers, which take the loss's
gradient directly, agree (cosine 0.999 bf16, 0.9999 fp16), and ten AdamW steps on one batch
lower the loss by about as much in bf16 as in float32 (0.96-1.00 of float32's fall). Those are
the assertions; the whole-gradient cosines are recorded as figures.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from pkmodel.common.devices import DistInfo, seed_everything
from pkmodel.config import Config, load_config
from pkmodel.data.dataset import PoseDataset
from pkmodel.engine.batches import input_images, set_memory_format, to_device, train_loader
from pkmodel.engine.optim import ModelEMA, build_optimizer
from pkmodel.engine.train import train
from pkmodel.model.checkpoint import load_checkpoint
from pkmodel.model.loss import PoseLoss
from pkmodel.model.network import build_model
from tests.conftest import ROOT, tiny_train_config

DEVICE = os.environ.get("GPU_CHECK_DEVICE", "cuda")
QUICK = os.environ.get("GPU_CHECK_QUICK", "") == "1"
ON_CUDA = DEVICE.startswith("cuda")

pytestmark = pytest.mark.skipif(
    ON_CUDA and not torch.cuda.is_available(),
    reason="needs a CUDA GPU (torch.cuda.is_available() is False here); "
    "scripts/gpu_check.sh runs these on a machine with one",
)

AMP_DTYPES = {"off": None, "bf16": torch.bfloat16, "fp16": torch.float16}

# First-step loss, AMP against float32. bf16 keeps 8 significant bits (unit roundoff 2^-9 =
# 2e-3) and fp16 11 (2^-12 = 2.4e-4); every layer rounds its output and the errors add up through
# the forward pass, so the loss moves by one to three units: measured 2.1e-3 to 6.4e-3 (bf16)
# and 1.5e-4 to 1.6e-3 (fp16) on the CPU (default network, 192 px, batch 8, two data sets). The
# bounds leave 3x.
LOSS_RTOL = {"bf16": 2e-2, "fp16": 5e-3}
# The heads' output 1x1 convolutions (their gradient is features x dloss/doutput, the loss in
# float32): cosine of their gradients, measured 0.9987-0.9989 bf16 and 0.9999 fp16.
OUTPUT_LAYERS_MIN_COSINE = 0.99
# Gradient norm AMP / float32: measured 0.83-1.09 (the early layers' rounding-driven part moves
# it). Catches a loss scale left in (x2^16) or applied twice.
NORM_RATIO = (0.5, 2.0)
# Ten AdamW steps on one batch: the loss falls by the same amount (measured bf16 0.958 and
# 0.997 of float32's fall, final losses 1.4 % and 0.24 % apart; the runs part step by step like
# any two float orders, so not tighter).
TRAIN_STEPS = 10
FALL_RATIO = (0.85, 1.15)
FINAL_LOSS_RTOL = 0.05


# --- figures for the script's summary -------------------------------------------------------


def record(name: str, figures: dict[str, Any]) -> None:
    """Add ``figures`` under ``name`` to the JSON file $GPU_CHECK_FIGURES (if set)."""
    path = os.environ.get("GPU_CHECK_FIGURES")
    if not path:
        return
    file = Path(path)
    data = json.loads(file.read_text()) if file.is_file() else {}
    data[name] = figures
    file.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")


def rounded(value: float, digits: int = 6) -> float | None:
    return float(f"{value:.{digits}g}") if math.isfinite(value) else None


# --- the trainer's step, from pkmodel's parts --------------------------------------------------


def device() -> torch.device:
    return torch.device(DEVICE)


def check_config(prepared: Path, **sets: Any) -> Config:
    """The default network (a tiny one with GPU_CHECK_QUICK=1) on ``prepared``'s splits."""
    values: dict[str, Any] = {"data.prepared_dir": prepared, "train.device": DEVICE}
    if QUICK:
        values.update({"model.input_size": 64, "model.width_mult": 0.35,
                       "model.neck_channels": 24, "model.head_channels": 24})  # fmt: skip
    values.update(sets)
    return load_config(None, [], values, env={})


def fixed_batch(labels: Path, cfg: Config, size: int, dev: torch.device) -> dict[str, Any]:
    """``size`` unaugmented samples of a prepared split (cycled), as tensors on ``dev``."""
    dataset = PoseDataset(labels, cfg, train=False)
    batch = torch.utils.data.default_collate([dataset[i % len(dataset)] for i in range(size)])
    return to_device({k: v for k, v in batch.items() if torch.is_tensor(v)}, dev)


@dataclass
class Parts:
    """What the trainer's Run holds for one process: model, loss, optimizer, EMA, AMP."""

    cfg: Config
    device: torch.device
    model: nn.Module
    loss_fn: PoseLoss
    optimizer: torch.optim.Optimizer
    ema: ModelEMA | None
    amp_dtype: torch.dtype | None
    scaler: torch.amp.GradScaler | None


def build_parts(cfg: Config, dev: torch.device, amp: str) -> Parts:
    """As ``pkmodel.engine.train._build_run`` builds them (random weights from train.seed; an
    fp16 run has a GradScaler). Unlike the trainer, AMP is applied on the CPU too (dry-runs)."""
    seed_everything(cfg.train.seed)
    model = set_memory_format(build_model(cfg.model, pretrained=False).to(dev), cfg).train()
    return Parts(
        cfg=cfg,
        device=dev,
        model=model,
        loss_fn=PoseLoss(cfg.loss).to(dev),
        optimizer=build_optimizer(model, cfg),
        ema=ModelEMA(model, cfg.train.ema_decay) if cfg.train.ema else None,
        amp_dtype=AMP_DTYPES[amp],
        scaler=torch.amp.GradScaler(dev.type) if amp == "fp16" else None,
    )


def forward_loss(parts: Parts, batch: dict[str, Any]) -> torch.Tensor:
    """The trainer's forward: the network under autocast, the loss on float32 outputs."""
    with torch.autocast(
        parts.device.type,
        dtype=parts.amp_dtype or torch.float16,
        enabled=parts.amp_dtype is not None,
    ):
        outputs = parts.model(input_images(batch, parts.cfg))
    loss, _ = parts.loss_fn(tuple(o.float() for o in outputs), batch)
    return loss


def backward(parts: Parts, loss: torch.Tensor) -> None:
    """Gradients of ``loss`` (unscaled under a GradScaler)."""
    parts.optimizer.zero_grad(set_to_none=True)
    if parts.scaler is not None:
        parts.scaler.scale(loss).backward()
        parts.scaler.unscale_(parts.optimizer)
    else:
        loss.backward()


def finite_gradients(model: nn.Module) -> bool:
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    return bool(torch.stack([torch.isfinite(g).all() for g in grads]).all())


def finish_step(parts: Parts) -> None:
    """Clip, step (a GradScaler skips a step whose gradients overflowed), update the EMA."""
    t = parts.cfg.train
    if t.grad_clip_norm > 0:
        nn.utils.clip_grad_norm_(parts.model.parameters(), t.grad_clip_norm)
    if parts.scaler is not None:
        parts.scaler.step(parts.optimizer)
        parts.scaler.update()
    else:
        parts.optimizer.step()
    if parts.ema is not None:
        parts.ema.update(parts.model)


def train_step(parts: Parts, batch: dict[str, Any]) -> torch.Tensor:
    """One whole training step as the trainer takes it; returns the (detached) loss."""
    loss = forward_loss(parts, batch)
    backward(parts, loss)
    finish_step(parts)
    return loss.detach()


def gradients(model: nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.grad.detach().double().flatten().clone() for n, p in model.named_parameters()}


def first_step(parts: Parts, batch: dict[str, Any], tries: int = 40) -> tuple[float, dict, int]:
    """Loss and gradients of the first step the optimizer takes, and the steps skipped before
    it: a GradScaler starts at 2^16 and halves its scale after each step whose scaled
    gradients overflowed fp16 (the trainer's first fp16 steps are skipped the same way)."""
    for skipped in range(tries):
        loss = forward_loss(parts, batch)
        backward(parts, loss)
        if finite_gradients(parts.model):
            return loss.item(), gradients(parts.model), skipped
        assert parts.scaler is not None, f"non-finite gradients without a GradScaler: {loss}"
        parts.scaler.update()
    raise AssertionError(f"no finite gradients after {tries} halvings of the GradScaler's scale")


def taken_steps_losses(parts: Parts, batch: dict[str, Any], steps: int) -> list[float]:
    """Losses of ``steps`` optimizer steps on one batch (steps a GradScaler skips not counted),
    and the loss after them."""
    losses: list[float] = []
    for _ in range(4 * steps):
        scale = parts.scaler.get_scale() if parts.scaler is not None else None
        loss = train_step(parts, batch).item()
        skipped = parts.scaler is not None and parts.scaler.get_scale() < scale
        if not skipped:
            losses.append(loss)
        if len(losses) == steps:
            break
    with torch.no_grad():
        losses.append(forward_loss(parts, batch).item())
    return losses


@contextmanager
def float32_precision(ieee: bool = True) -> Iterator[None]:
    """Full float32 convolutions and matrix products on CUDA (``ieee``), or TF32 (cuDNN's
    default for convolutions, so what a float32 training run uses)."""
    if not ON_CUDA:
        yield
        return
    saved = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = not ieee
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def cosine(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], part: str = "") -> float:
    """Cosine similarity of two gradients, over the parameters whose names contain ``part``."""
    names = [n for n in a if part in n]
    va, vb = torch.cat([a[n] for n in names]), torch.cat([b[n] for n in names])
    return float(nn.functional.cosine_similarity(va, vb, dim=0))


def output_layers_cosine(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    """The heads' output 1x1 convolutions (``*_head.out.*``)."""
    return cosine(a, b, "_head.out.")


def norm(g: dict[str, torch.Tensor]) -> float:
    return float(torch.cat(list(g.values())).norm())


# --- (a) mixed precision against float32 -------------------------------------------------------

BATCH = 4 if QUICK else 8


@pytest.fixture(scope="module")
def float32_reference(tiny_prepared) -> dict[str, Any]:
    """float32 (no TF32) first-step loss and gradients and the ten-step losses; TF32's too."""
    dev = device()
    cfg = check_config(tiny_prepared)
    batch = fixed_batch(tiny_prepared / "train.json", cfg, BATCH, dev)
    with float32_precision(ieee=True):
        loss, grads, _ = first_step(build_parts(cfg, dev, "off"), batch)
        losses = taken_steps_losses(build_parts(cfg, dev, "off"), batch, TRAIN_STEPS)
    with float32_precision(ieee=False):
        tf32_loss, tf32_grads, _ = first_step(build_parts(cfg, dev, "off"), batch)
    record(
        "float32",
        {
            "batch": BATCH,
            "input_size": cfg.model.input_size,
            "width_mult": cfg.model.width_mult,
            "loss": rounded(loss),
            "gradient_norm": rounded(norm(grads)),
            "train_losses": [rounded(x) for x in losses],
            "tf32_loss_rel_diff": rounded(abs(tf32_loss - loss) / loss, 3),
            "tf32_gradient_cosine": rounded(cosine(grads, tf32_grads), 4),
            "tf32_output_layers_cosine": rounded(output_layers_cosine(grads, tf32_grads), 5),
        },
    )
    return {"cfg": cfg, "batch": batch, "loss": loss, "grads": grads, "losses": losses}


@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_amp_first_step_matches_float32(float32_reference, amp):
    ref = float32_reference
    parts = build_parts(ref["cfg"], device(), amp)
    with float32_precision(ieee=True):
        loss, grads, skipped = first_step(parts, ref["batch"])
    rel = abs(loss - ref["loss"]) / ref["loss"]
    ratio = norm(grads) / norm(ref["grads"])
    out_cos = output_layers_cosine(ref["grads"], grads)
    figures = {
        "loss": rounded(loss),
        "loss_rel_diff": rounded(rel, 3),
        "gradient_norm_ratio": rounded(ratio, 4),
        "output_layers_cosine": rounded(out_cos, 5),
        "gradient_cosine": rounded(cosine(ref["grads"], grads), 4),
        "gradient_cosine_backbone": rounded(cosine(ref["grads"], grads, "backbone."), 4),
        "gradient_cosine_heads": rounded(cosine(ref["grads"], grads, "_head."), 4),
        "skipped_steps": skipped,
    }
    if parts.scaler is not None:
        figures["grad_scale"] = parts.scaler.get_scale()
    record(f"amp_{amp}_first_step", figures)
    assert rel < LOSS_RTOL[amp], figures
    assert NORM_RATIO[0] < ratio < NORM_RATIO[1], figures
    assert out_cos > OUTPUT_LAYERS_MIN_COSINE, figures


@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_amp_training_steps_lower_the_loss_as_float32_does(float32_reference, amp):
    ref = float32_reference
    with float32_precision(ieee=True):
        losses = taken_steps_losses(
            build_parts(ref["cfg"], device(), amp), ref["batch"], TRAIN_STEPS
        )
    fell, ref_fell = losses[0] - losses[-1], ref["losses"][0] - ref["losses"][-1]
    final_rel = abs(losses[-1] - ref["losses"][-1]) / ref["losses"][-1]
    figures = {
        "train_losses": [rounded(x) for x in losses],
        "fall_ratio": rounded(fell / ref_fell, 4),
        "final_loss_rel_diff": rounded(final_rel, 3),
    }
    record(f"amp_{amp}_{TRAIN_STEPS}_steps", figures)
    assert all(math.isfinite(x) for x in losses), figures
    assert len(losses) == TRAIN_STEPS + 1, figures
    assert ref_fell > 0, ref["losses"]
    assert FALL_RATIO[0] < fell / ref_fell < FALL_RATIO[1], figures
    assert final_rel < FINAL_LOSS_RTOL, figures


# --- (b) channels-last ---------------------------------------------------------------------------


def test_channels_last_gives_the_outputs_of_contiguous(tiny_prepared):
    """float32 without TF32, training mode (batch statistics), the same weights and batch."""
    dev = device()
    results = {}
    for channels_last in (True, False):
        cfg = check_config(tiny_prepared, **{"train.channels_last": channels_last})
        batch = fixed_batch(tiny_prepared / "train.json", cfg, BATCH, dev)
        parts = build_parts(cfg, dev, "off")
        with float32_precision(ieee=True):
            outputs = parts.model(input_images(batch, cfg))
            loss, _ = parts.loss_fn(outputs, batch)
            parts.optimizer.zero_grad(set_to_none=True)
            loss.backward()
        results[channels_last] = (outputs, loss.item(), gradients(parts.model))
    (cl_out, cl_loss, cl_grads), (out, loss, grads) = results[True], results[False]
    pairs = list(zip(cl_out, out, strict=True))
    diffs = [float((a - b).norm() / b.norm()) for a, b in pairs]  # relative, per output
    figures = {
        "output_rel_diff": rounded(max(diffs), 3),
        "output_max_abs_diff_over_max": rounded(
            max(float((a - b).abs().max() / b.abs().max()) for a, b in pairs), 3
        ),
        "loss_rel_diff": rounded(abs(cl_loss - loss) / loss, 3),
        "gradient_cosine": rounded(cosine(grads, cl_grads), 5),
        "outputs_channels_last": all(
            o.is_contiguous(memory_format=torch.channels_last) for o in cl_out
        ),
    }
    record("channels_last", figures)
    # float32 rounding through ~60 layers: 3e-5 to 1e-4 of each output against float64 on the
    # CPU (contiguous); a layout error would be of order 1. (The CPU's channels-last BatchNorm
    # sums variances in one pass and loses digits: 1.7e-3 to 5e-3 there, the loss 1.3e-5.)
    assert max(diffs) < 2e-3, figures
    assert abs(cl_loss - loss) / loss < 1e-4, figures
    assert figures["gradient_cosine"] > 0.95, figures  # see the module docstring


# --- (c) DataLoader workers and pinned memory feeding CUDA steps ---------------------------------


def test_loader_workers_with_pinned_memory_feed_training_steps(tiny_prepared):
    dev = device()
    cfg = check_config(tiny_prepared, **{"train.workers": 2, "train.batch_size": BATCH})
    dataset = PoseDataset(tiny_prepared / "train.json", cfg, train=True)
    loaders = train_loader(dataset, cfg, DistInfo(), dev)  # the trainer's loader
    parts = build_parts(cfg, dev, "off")
    losses, pinned = [], []
    for epoch in (1, 2):
        for batch in loaders.epoch(epoch):
            pinned.append(batch["image"].is_pinned())
            losses.append(train_step(parts, to_device(batch, dev)).item())
    if dev.type == "cuda":
        torch.cuda.synchronize()
    figures = {"steps": len(losses), "pinned": all(pinned), "losses": [rounded(x) for x in losses]}
    record("loader_workers_pin_memory", figures)
    assert len(losses) == 2 * (len(dataset) // BATCH) >= 2, figures
    assert all(math.isfinite(x) for x in losses), figures
    assert all(pinned) == (dev.type == "cuda"), figures


@pytest.mark.parametrize("amp", ["off", "bf16", "fp16"])
def test_trainer_runs_on_the_gpu_with_loader_workers(tiny_prepared, tmp_path, amp):
    """pkmodel's trainer itself: 2 workers (pinned memory on CUDA), train.amp, 2 epochs with a
    validation each, checkpoints; the loss stays finite (an fp16 run may skip its first steps)."""
    cfg = tiny_train_config(tiny_prepared, tmp_path / "run", device=DEVICE, workers=2, amp=amp,
                            val_every=1)  # fmt: skip
    result = train(cfg, progress=False)
    rows = [json.loads(x) for x in (tmp_path / "run/metrics.jsonl").read_text().splitlines()]
    figures = {
        "train_losses": [rounded(r["train/loss"]) for r in rows],
        "val_AP": [rounded(r.get("val/AP", float("nan")), 4) for r in rows],
        "images_per_s": [rounded(r["train/images_per_s"], 4) for r in rows],
    }
    record(f"trainer_amp_{amp}", figures)
    assert result.epochs_run == 2 and len(rows) == 2, figures
    assert all(math.isfinite(r["train/loss"]) for r in rows), figures
    assert all(0.0 <= r["val/AP"] <= 1.0 for r in rows), figures
    assert load_checkpoint(tmp_path / "run/last.pt")["epoch"] == 2


# --- (d) torchrun, one process, NCCL ---------------------------------------------------------


def _torchrun(args: list[str], timeout: float = 240) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=1",
           *args]  # fmt: skip
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    env = {**os.environ, "OMP_NUM_THREADS": "2", "PYTHONPATH": path}
    return subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def test_torchrun_one_process_trains_on_the_gpu(tiny_prepared, tmp_path):
    """The README's torchrun command with one process. With WORLD_SIZE 1 pkmodel trains as a
    single process (DDP and the process group start only for 2 or more), so the run log says
    'x1'; the NCCL test below checks the process group itself."""
    out = tmp_path / "run"
    sets = [f"data.prepared_dir={tiny_prepared}", "model.input_size=64", "model.width_mult=0.35",
            "model.neck_channels=24", "model.head_channels=24", "train.batch_size=8",
            "train.workers=2", f"train.device={DEVICE}", "eval.batch_size=16"]  # fmt: skip
    args = ["-m", "pkmodel", "train", "--out", str(out), "--epochs", "2"]
    for s in sets:
        args += ["--set", s]
    proc = _torchrun(args)
    log = proc.stdout[-3000:] + proc.stderr[-3000:]
    expected = f"training on {torch.device(DEVICE, 0) if ON_CUDA else 'cpu'} x1"
    record("torchrun_train", {"returncode": proc.returncode,
                              "run_log": [x for x in proc.stdout.splitlines() if "training on" in x]})  # fmt: skip
    assert proc.returncode == 0, log
    assert expected in proc.stdout, log
    assert load_checkpoint(out / "last.pt")["epoch"] == 2
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2] and "val/AP" in rows[-1]


_DDP_STEP = """
import json, os, sys
import torch
from torch import nn
from pkmodel.common.devices import seed_everything
from pkmodel.model.loss import PoseLoss
from pkmodel.model.network import build_model
from pkmodel.engine.batches import input_images
from tests.gpu.test_cuda import check_config, fixed_batch

prepared, device_name = sys.argv[1], sys.argv[2]
local = int(os.environ["LOCAL_RANK"])
device = torch.device(device_name, local) if device_name == "cuda" else torch.device("cpu")
if device.type == "cuda":
    torch.cuda.set_device(device)
    torch.backends.cudnn.allow_tf32 = False  # float32 noise only between the two steps
backend = "nccl" if device.type == "cuda" else "gloo"  # as pkmodel's init_distributed
torch.distributed.init_process_group(backend=backend)
cfg = check_config(prepared)
batch = fixed_batch(os.path.join(prepared, "train.json"), cfg, 4, device)
results = {}
for wrapped in (True, False):
    seed_everything(0)
    model = build_model(cfg.model, pretrained=False).to(device).train()
    if wrapped:  # as pkmodel's trainer under torchrun
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model) if device.type == "cuda" else model
        model = nn.parallel.DistributedDataParallel(
            model, device_ids=[local] if device.type == "cuda" else None)
    loss, _ = PoseLoss(cfg.loss, sync_counts=wrapped)(model(input_images(batch, cfg)), batch)
    loss.backward()
    grads = torch.cat([p.grad.flatten() for p in model.parameters()])
    results[wrapped] = (loss.item(), grads)
total = torch.ones(1, device=device)
torch.distributed.all_reduce(total)
(ddp_loss, ddp_grads), (loss, grads) = results[True], results[False]
print(json.dumps({
    "backend": torch.distributed.get_backend(),
    "world_size": torch.distributed.get_world_size(),
    "all_reduce": total.item(),
    "nccl_version": ".".join(map(str, torch.cuda.nccl.version())) if backend == "nccl" else None,
    "loss_rel_diff": abs(ddp_loss - loss) / loss,
    "gradient_cosine": nn.functional.cosine_similarity(ddp_grads.double(), grads.double(), dim=0).item(),
}))
torch.distributed.destroy_process_group()
"""


def test_torchrun_one_process_nccl_ddp_step(tiny_prepared, tmp_path):
    """A process group under torchrun (NCCL on the GPU, as pkmodel's init_distributed picks),
    DDP with SyncBatchNorm around the network, the loss's counts reduced across processes: one
    step equals the plain step."""
    script = tmp_path / "ddp_step.py"
    script.write_text(_DDP_STEP)
    proc = _torchrun([str(script), str(tiny_prepared), "cuda" if ON_CUDA else "cpu"])
    log = proc.stdout[-3000:] + proc.stderr[-3000:]
    assert proc.returncode == 0, log
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    record("torchrun_ddp_step", result)
    assert result["backend"] == ("nccl" if ON_CUDA else "gloo"), result
    assert result["world_size"] == 1 and result["all_reduce"] == 1.0, result
    assert result["loss_rel_diff"] < 1e-4, result
    assert result["gradient_cosine"] > 0.95, result
