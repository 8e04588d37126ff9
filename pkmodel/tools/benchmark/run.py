"""`pkmodel benchmark`: every performance figure of the toolkit, measured on this machine.

One run measures, in data-flow order: the network's size (parameters, MACs), the synthetic
generator (images/s), prepare-coco (crops/s), the training Dataset (samples/s), training
(images/s and the share of a step spent waiting for data), inference at batch 1 (latency) and
at a larger batch (throughput) in PyTorch eager and onnxruntime, and the decoder (microseconds
per frame). Every figure is a median over repeats. The data it needs (a small synthetic set,
prepared) is made in a temporary folder, so the command works on a fresh machine.

The measurements reuse the functions the toolkit itself runs (``pkmodel.export.common``,
``pkmodel.model.decode``, ``pkmodel.data.dataset``, ``pkmodel.data.prepare``, ``pkmodel.data.synthetic``, the
trainer's building blocks); docs/benchmark.md says how each figure is taken.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import math
import os
import platform
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from pkmodel.common.atomic import atomic_write_json, check_writable
from pkmodel.common.devices import DistInfo, seed_everything, select_device
from pkmodel.common.errors import PkmodelError
from pkmodel.common.runtime import usable_cores
from pkmodel.config import BenchmarkConfig
from pkmodel.data.dataset import PoseDataset
from pkmodel.data.prepare import prepare_split
from pkmodel.data.synthetic.generate import generate
from pkmodel.engine.batches import epoch_loader, input_images, set_memory_format, to_device
from pkmodel.engine.optim import ModelEMA, build_optimizer
from pkmodel.export.common import normalise_pixels, sample_input
from pkmodel.export.onnx import check_opset, onnx_session, write_onnx
from pkmodel.model.loss import PoseLoss
from pkmodel.model.network import build_model, count_macs, model_summary, output_shapes
from pkmodel.tools.benchmark.stages import (
    benchmark_cpu_latency,
    benchmark_dataset,
    benchmark_decoder,
    benchmark_prepare,
    benchmark_synthetic,
)
from pkmodel.tools.benchmark.timing import interleaved_ms, median_of, median_seconds

SCHEMA = "pkmodel.benchmark"
VERSION = 1

# --quick: tiny sizes for tests and smoke runs. Values given as command options, with --set
# or in the environment still win (see apply_quick).
QUICK: dict[str, Any] = {
    "model.input_size": 64,
    "model.width_mult": 0.35,
    "benchmark.repeats": 2,
    "benchmark.batch_size": 4,
    "benchmark.latency_runs": 3,
    "benchmark.train_steps": 1,
    "benchmark.images": 6,
    "train.batch_size": 4,
    "synthetic.width": 96,
    "synthetic.height": 96,
    "prepare.crop_size": 96,
}
# Sources of values the user gave (pkmodel.config.loader): a command option (by its flag, or
# "option"), --set, an environment variable; not a config file, not the defaults.
_EXPLICIT_SOURCES = ("option", "--", "env ")


@dataclass(frozen=True)
class Plan:
    """How much work each measurement does: the ``[benchmark]`` section, and the amounts that
    --quick shrinks beyond it."""

    quick: bool
    settings: BenchmarkConfig
    decoder_seconds: float  # per timing inside benchmark_decoder (best of a loop that long)
    dataset_batches: int  # timed batches per Dataset repeat
    prepare_replicate: int  # the annotation file repeated this often per prepare repeat

    @classmethod
    def from_config(cls, cfg: Any, quick: bool) -> Plan:
        return cls(
            quick=quick,
            settings=cfg.benchmark,
            decoder_seconds=0.01 if quick else 0.2,
            dataset_batches=2 if quick else 8,
            prepare_replicate=1 if quick else 10,
        )

    def to_dict(self) -> dict[str, Any]:
        """The plan as the result JSON records it (the section's amounts, not its out path)."""
        amounts = {k: v for k, v in dataclasses.asdict(self.settings).items() if k != "out"}
        derived = {
            k: v for k, v in dataclasses.asdict(self).items() if k not in ("quick", "settings")
        }
        return {"quick": self.quick, **amounts, **derived}


def is_explicit(cfg: Any, key: str) -> bool:
    """Whether ``section.key`` was given as a command option, with --set or in the environment."""
    return cfg.sources.get(key, "default").startswith(_EXPLICIT_SOURCES)


def apply_quick(cfg: Any) -> None:
    """Set the --quick sizes, except values given explicitly (option, --set, environment)."""
    for key, value in QUICK.items():
        if not is_explicit(cfg, key):
            cfg.set(key, value, "--quick")


def quick_out_path(out: Path) -> Path:
    """runs/benchmark.json -> runs/benchmark-quick.json: a smoke run keeps the real figures."""
    return out.with_name(f"{out.stem}-quick{out.suffix}")


# --- timing helpers ----------------------------------------------------------------------------


# --- the machine -------------------------------------------------------------------------------


def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo on Linux, else what platform knows)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith(("model name", "hardware", "cpu model")):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def _version(distribution: str) -> str | None:

    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def describe_machine() -> dict[str, Any]:
    """CPU, cores, threads, accelerator, library versions and OS of this machine."""
    import cv2
    import torch

    usable = usable_cores()
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {
        "cpu": cpu_model(),
        "architecture": platform.machine(),
        "logical_cores": os.cpu_count(),
        "usable_cores": usable,
        "torch_threads": torch.get_num_threads(),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "gomp_spincount": os.environ.get("GOMP_SPINCOUNT"),
        "gpu": gpu,
        "os": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "onnxruntime": _version("onnxruntime"),
        "onnx": _version("onnx"),
        "numpy": np.__version__,
        "opencv": cv2.__version__,
        "coremltools": _version("coremltools"),
        "pkmodel": _version("pkmodel"),
    }


def load_average() -> list[float] | None:
    """1, 5 and 15-minute load averages (other jobs share the cores), None where unknown."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (AttributeError, OSError):  # pragma: no cover - Windows
        return None


# --- the measurements --------------------------------------------------------------------------


def measure_model(cfg: Any) -> dict[str, Any]:
    """Parameters and multiply-adds per image of the configured network."""

    info = model_summary(cfg.model)
    keep = ("input_size", "width_mult", "parameters", "backbone_parameters", "macs", "outputs")
    return {k: info[k] for k in keep}


def make_feed_set(cfg: Any, plan: Plan, folder: Path) -> Path:
    """A synthetic training split of ``plan.settings.images`` images, prepared: the labels JSON."""

    spec = dataclasses.replace(
        cfg.synthetic, num_train=plan.settings.images, num_val=0, sequences=0
    )
    out = folder / "synthetic"
    generate(spec, out, progress=False)
    summary = prepare_split(
        "train",
        out / "train",
        out / "annotations" / "person_keypoints_train.json",
        folder / "prepared",
        cfg.prepare,
        progress=False,
        allow_empty=True,
    )
    if summary.kept == 0:
        raise PkmodelError(
            f"the benchmark's {plan.settings.images} synthetic images gave no usable person "
            "(raise benchmark.images)"
        )
    return summary.labels


def measure_synthetic(cfg: Any, plan: Plan) -> dict[str, Any]:
    """Synthetic images/s (and CPU seconds per image): median over repeats."""

    size = (cfg.synthetic.width, cfg.synthetic.height)
    runs = [
        benchmark_synthetic(plan.settings.images, size, cfg.synthetic.workers, cfg.synthetic.seed)
        for _ in range(plan.settings.repeats)
    ]
    med = median_of(runs)
    return {
        "images": plan.settings.images,
        "size": list(size),
        "workers": int(med["workers"]),
        "images_per_s": med["images_per_s"],
        "cpu_seconds_per_image": med["cpu_seconds"] / plan.settings.images,
    }


def measure_prepare(cfg: Any, plan: Plan, synthetic: Path, folder: Path) -> dict[str, Any]:
    """prepare-coco crops/s, fresh and resumed, on the synthetic split: median over repeats.

    Each repeat writes into its own folder: labels left by an earlier repeat would make
    prepare reuse-check every crop and cut the missing ones in the main process, unpooled.
    """

    params = cfg.prepare
    runs = [
        benchmark_prepare(
            synthetic / "train",
            synthetic / "annotations" / "person_keypoints_train.json",
            folder / f"repeat{r}",
            params,
            repeats=1,
            replicate=plan.prepare_replicate,
        )
        for r in range(plan.settings.repeats)
    ]
    med = median_of(runs)
    return {
        "crops": int(med["crops"]),
        "crop_size": cfg.prepare.crop_size,
        "workers": int(med["workers"]),
        "crops_per_s": med["crops_per_s"],
        "resumed_crops_per_s": med["resumed_crops_per_s"],
    }


def measure_dataset(cfg: Any, plan: Plan, labels: Path) -> dict[str, Any]:
    """Augmented training samples/s through the DataLoader: median over repeats."""

    runs = [
        benchmark_dataset(
            labels,
            cfg,
            workers=cfg.train.workers,
            batch_size=cfg.train.batch_size,
            batches=plan.dataset_batches,
            train=True,
        )  # fmt: skip
        for _ in range(plan.settings.repeats)
    ]
    return {
        "workers": cfg.train.workers,
        "batch_size": cfg.train.batch_size,
        "samples": int(runs[0]["samples"]),
        "samples_per_s": median_of(runs)["samples_per_s"],
    }


def measure_training(cfg: Any, plan: Plan, labels: Path) -> dict[str, Any]:
    """Training images/s: the trainer's step (model, PoseLoss, optimizer, clipping, EMA) on
    augmented batches from its own loader, one warm-up step, then ``train_steps`` timed ones.

    A step's time runs from the end of the previous step to the end of this one, so it holds
    the wait for the next batch; the data share is that wait over the whole time.
    """
    import torch

    t = cfg.train
    device = select_device(t.device)
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
    seed_everything(t.seed)
    model = set_memory_format(build_model(cfg.model, pretrained=False).to(device).train(), cfg)
    loss_fn = PoseLoss(cfg.loss).to(device)
    optimizer = build_optimizer(model, cfg)
    ema = ModelEMA(model, t.ema_decay) if t.ema else None
    dataset = PoseDataset(labels, cfg, train=True)
    warmup = 1
    steps = warmup + plan.settings.train_steps
    # Cycle the small sample set so the loader yields exactly `steps` full batches.
    indices = [i % len(dataset) for i in range(steps * t.batch_size)]
    subset = torch.utils.data.Subset(dataset, indices)
    loader = epoch_loader(subset, cfg, DistInfo(), device, epoch=1)

    waits, totals = [], []
    tick = time.perf_counter()
    for batch in loader:
        batch = to_device(batch, device)
        got = time.perf_counter()
        loss, _ = loss_fn(model(input_images(batch, cfg)), batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if t.grad_clip_norm > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), t.grad_clip_norm)
        optimizer.step()
        if ema is not None:
            ema.update(model)
        if not math.isfinite(loss.item()):  # the trainer checks every step, too (a sync)
            raise PkmodelError(f"the training loss became {loss.item()} in the benchmark")
        sync()
        done = time.perf_counter()
        waits.append(got - tick)
        totals.append(done - tick)
        tick = done
    waits, totals = np.array(waits[warmup:]), np.array(totals[warmup:])
    step_s = float(np.median(totals))
    compute_s = float(np.median(totals - waits))
    return {
        "device": str(device),
        "batch_size": t.batch_size,
        "workers": t.workers,
        "optimizer": t.optimizer,
        "steps": int(len(totals)),
        "step_s": step_s,
        "images_per_s": t.batch_size / step_s,
        "compute_images_per_s": t.batch_size / compute_s,
        "data_wait_share": float(waits.sum() / totals.sum()),
    }


def measure_inference(cfg: Any, plan: Plan, folder: Path) -> dict[str, Any]:
    """Batch-1 latency and batch-N throughput on the CPU, PyTorch eager and onnxruntime.

    One ONNX export with a dynamic batch serves both batch sizes; the same thread count is used
    by both runtimes.
    """
    import torch

    size, batch = cfg.model.input_size, plan.settings.batch_size
    check_opset(cfg.export.onnx_opset)
    model = build_model(cfg.model, pretrained=False).eval()
    path = folder / "model.onnx"
    write_onnx(model, path, size, cfg.export.onnx_opset, dynamic_batch=True)
    threads = torch.get_num_threads()
    latency = benchmark_cpu_latency(
        model, size, cfg.model.width_mult, runs=plan.settings.latency_runs, warmup=5,
        opset=cfg.export.onnx_opset, onnx_path=path, threads=threads,
    )  # fmt: skip

    x = normalise_pixels(sample_input(size, batch=batch))
    xt = torch.from_numpy(x)
    session = onnx_session(path, threads=threads)
    with torch.inference_mode():
        torch_s = median_seconds(lambda: model(xt), plan.settings.repeats)
        reference = [o.numpy() for o in model(xt)]
    onnx_s = median_seconds(
        lambda: session.run(None, {session.get_inputs()[0].name: x}), plan.settings.repeats
    )
    got = session.run(None, {session.get_inputs()[0].name: x})
    # The two runtimes must run the same network, or the comparison means nothing.
    diff = max(float(np.abs(a - b).max()) for a, b in zip(got, reference, strict=True))
    return {
        "device": "cpu",
        "threads": threads,
        "onnx_opset": cfg.export.onnx_opset,
        "latency_runs": plan.settings.latency_runs,
        "batch_size": batch,
        "torch_latency_ms": latency.torch_ms,
        "onnxruntime_latency_ms": latency.onnxruntime_ms,
        "torch_batch_ms": torch_s * 1e3,
        "onnxruntime_batch_ms": onnx_s * 1e3,
        "torch_images_per_s": batch / torch_s,
        "onnxruntime_images_per_s": batch / onnx_s,
        "onnxruntime_max_abs_diff": diff,
    }


# benchmark --compare: pkmodel's configured network against PoseKit's (model.arch posekit)
COMPARE_ARCHS = ("pkmodel", "posekit")


def _arch_config(cfg: Any, arch: str) -> Any:
    """``cfg`` for one side of --compare: the configured network, or PoseKit's at the same
    input size (its width is fixed at 1)."""
    import copy

    out = copy.deepcopy(cfg)
    if arch == "posekit":
        out.set("model.arch", "posekit", "benchmark --compare")
        out.set("model.width_mult", 1.0, "benchmark --compare")
    return out


class _Side:
    """One network of --compare: its training step on a fixed batch, its batch-1 latency in
    PyTorch eager and onnxruntime, and its size."""

    def __init__(self, cfg: Any, arch: str, batch: dict[str, Any], folder: Path) -> None:
        import torch

        self.cfg = _arch_config(cfg, arch)
        size, opset = self.cfg.model.input_size, self.cfg.export.onnx_opset
        seed_everything(self.cfg.train.seed)
        model = build_model(self.cfg.model, pretrained=False)
        self.macs = count_macs(model, size)
        self.parameters = sum(p.numel() for p in model.parameters())
        self.train_model = set_memory_format(model.train(), self.cfg)
        self.loss_fn = PoseLoss(self.cfg.loss)
        self.optimizer = build_optimizer(self.train_model, self.cfg)
        self.batch = batch
        self.images = input_images(batch, self.cfg)
        self.eval_model = build_model(self.cfg.model, pretrained=False).eval()
        path = folder / f"compare-{arch}.onnx"
        write_onnx(self.eval_model, path, size, opset)
        # called in turns with the other network's: threads that sleep between runs
        self.session = onnx_session(path, threads=torch.get_num_threads(), spinning=False)
        self.x = normalise_pixels(sample_input(size))
        self.xt = torch.from_numpy(self.x)
        self.train_step()  # warm-up: allocations, autotuning, the optimizer's state

    def train_step(self) -> float:
        from torch.nn.utils import clip_grad_norm_

        loss, _ = self.loss_fn(self.train_model(self.images), self.batch)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.cfg.train.grad_clip_norm > 0:
            clip_grad_norm_(self.train_model.parameters(), self.cfg.train.grad_clip_norm)
        self.optimizer.step()
        return loss.item()

    def measure(self, plan: Plan) -> dict[str, float]:
        """One repeat: training images/s over ``train_steps`` steps."""
        steps = plan.settings.train_steps
        start = time.perf_counter()
        for _ in range(steps):
            self.train_step()
        step_s = (time.perf_counter() - start) / steps
        return {"train_images_per_s": len(self.images) / step_s}

    def eager(self) -> None:
        """One batch-1 forward pass in eager PyTorch (call under ``inference_mode``)."""
        self.eval_model(self.xt)

    def onnxruntime(self) -> None:
        """One batch-1 run of the ONNX export."""
        self.session.run(None, {self.session.get_inputs()[0].name: self.x})


def measure_compare(cfg: Any, plan: Plan, labels: Path, folder: Path) -> dict[str, Any]:
    """pkmodel's configured network against PoseKit's, in the same run: the trainer's step
    (network, PoseLoss, optimizer; the same augmented batch, the same memory format), batch-1
    latency in PyTorch eager and onnxruntime, MACs and parameters. Training repeats alternate
    between the two (pkmodel, PoseKit, pkmodel, ...) and latencies alternate call by call
    (:func:`interleaved_ms`, ``latency_runs`` x ``repeats`` calls each), so that a machine's
    slow minutes hit both; each figure is a median. Ratios are pkmodel's speed over PoseKit's:
    above 1, pkmodel is faster (for MACs and parameters: lighter)."""
    import torch

    dataset = PoseDataset(labels, cfg, train=True)
    count = cfg.train.batch_size
    batch = torch.utils.data.default_collate([dataset[i % len(dataset)] for i in range(count)])
    sides = {arch: _Side(cfg, arch, batch, folder) for arch in COMPARE_ARCHS}
    runs: dict[str, list[dict[str, float]]] = {arch: [] for arch in COMPARE_ARCHS}
    for _ in range(plan.settings.repeats):
        for arch, side in sides.items():
            runs[arch].append(side.measure(plan))
    calls = plan.settings.latency_runs * plan.settings.repeats
    with torch.inference_mode():
        eager = interleaved_ms({a: s.eager for a, s in sides.items()}, calls, warmup=2)
    onnx = interleaved_ms({a: s.onnxruntime for a, s in sides.items()}, calls, warmup=2)
    out: dict[str, Any] = {}
    for arch, side in sides.items():
        out[arch] = {
            "arch": side.cfg.model.arch,
            "input_size": side.cfg.model.input_size,
            "width_mult": side.cfg.model.width_mult,
            "macs": side.macs,
            "parameters": side.parameters,
            **median_of(runs[arch]),
            "torch_latency_ms": eager[arch],
            "onnxruntime_latency_ms": onnx[arch],
        }
    ours, seed = out["pkmodel"], out["posekit"]
    out["ratios"] = {
        "train_images_per_s": ours["train_images_per_s"] / seed["train_images_per_s"],
        "torch_latency": seed["torch_latency_ms"] / ours["torch_latency_ms"],
        "onnxruntime_latency": seed["onnxruntime_latency_ms"] / ours["onnxruntime_latency_ms"],
        "macs": seed["macs"] / ours["macs"],
        "parameters": seed["parameters"] / ours["parameters"],
    }
    out["batch_size"] = count
    out["channels_last"] = cfg.train.channels_last
    out["repeats"] = plan.settings.repeats
    return out


def measure_decoder(cfg: Any, plan: Plan) -> dict[str, Any]:
    """Decoder microseconds per frame, one frame and a batch: median over repeats."""

    joints, _, grid = output_shapes(cfg.model)["heatmaps"]
    runs = [
        benchmark_decoder(
            grid, joints, batch=plan.settings.batch_size, min_seconds=plan.decoder_seconds
        )
        for _ in range(plan.settings.repeats)
    ]
    med = median_of(runs)
    return {
        "grid": grid,
        "joints": joints,
        "batch_size": plan.settings.batch_size,
        "single_us": med["single_us"],
        "batch_us": med["batch_us"],
        "reference_per_joint_us": med["reference_per_joint_us"],
    }


# --- the whole run -----------------------------------------------------------------------------

# (section, key, label, unit): the headline figures, in the order of the table.
FIGURES: tuple[tuple[str, str, str, str], ...] = (
    ("model", "parameters", "model parameters", ""),
    ("model", "macs", "model multiply-adds per image", "MACs"),
    ("synthetic", "images_per_s", "synthetic images", "images/s"),
    ("prepare", "crops_per_s", "prepare-coco crops", "crops/s"),
    ("prepare", "resumed_crops_per_s", "prepare-coco crops, resumed", "crops/s"),
    ("dataset", "samples_per_s", "Dataset (augmented) samples", "samples/s"),
    ("training", "images_per_s", "training", "images/s"),
    ("training", "compute_images_per_s", "training, compute only", "images/s"),
    ("training", "data_wait_share", "training time waiting for data", "share"),
    ("inference", "torch_latency_ms", "PyTorch eager latency, batch 1", "ms"),
    ("inference", "onnxruntime_latency_ms", "onnxruntime latency, batch 1", "ms"),
    ("inference", "torch_images_per_s", "PyTorch eager throughput, batch {batch}", "images/s"),
    ("inference", "onnxruntime_images_per_s", "onnxruntime throughput, batch {batch}", "images/s"),
    ("decoder", "single_us", "decoder, single frame", "us/frame"),
    ("decoder", "batch_us", "decoder, batch {batch}", "us/frame"),
)


def figures(result: dict[str, Any]) -> dict[str, float]:
    """The headline figures as one flat dict, ``section.key`` -> value."""
    return {f"{s}.{k}": result[s][k] for s, k, _, _ in FIGURES}


@contextmanager
def _stage(bar: Any, name: str, seconds: dict[str, float]) -> Iterator[None]:
    bar.set_description(f"benchmark: {name}")
    start = time.perf_counter()
    yield
    seconds[name] = round(time.perf_counter() - start, 2)
    bar.update(1)


def run_benchmark(
    cfg: Any,
    quick: bool = False,
    progress: bool = True,
    compare: bool = False,
    equal_minutes: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Measure every figure (see the module docstring); returns the JSON-ready result. With
    ``compare``, also pkmodel's network against PoseKit's (:func:`measure_compare`); with
    ``equal_minutes`` (``minutes``, ``seeds``, ``against``, optionally ``keep``: the folder the
    runs stay in instead of the temporary one), the demo's network against another at equal
    training minutes (:func:`pkmodel.tools.equal_minutes.measure_equal_minutes`)."""
    from tqdm import tqdm

    plan = Plan.from_config(cfg, quick)
    cfg.check("benchmark", "model")  # a bad input size fails now, not after minutes of work
    equal_minutes = dict(equal_minutes or {})
    keep = equal_minutes.pop("keep", None)
    if equal_minutes:
        from pkmodel.tools.equal_minutes import EARLIER_DEMO_NETWORK, check_keep, check_settings

        check_settings(cfg, equal_minutes.get("against", EARLIER_DEMO_NETWORK), quick)
        if keep is not None:
            keep = Path(keep).absolute()
            check_keep(keep)
    start = time.perf_counter()
    load_before = load_average()
    result: dict[str, Any] = {
        "schema": SCHEMA,
        "version": VERSION,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "quick": quick,
        "plan": plan.to_dict(),
    }
    seconds: dict[str, float] = {}
    stages = ("model", "synthetic", "prepare", "dataset", "training", "inference", "decoder")
    stages += ("compare",) if compare else ()
    stages += ("equal minutes",) if equal_minutes else ()
    with (
        tempfile.TemporaryDirectory(prefix="pkmodel-benchmark-") as tmp,
        tqdm(total=len(stages), unit="stage", disable=not progress) as bar,
    ):
        folder = Path(tmp)
        with _stage(bar, "model", seconds):
            result["model"] = measure_model(cfg)
        with _stage(bar, "synthetic", seconds):
            result["synthetic"] = measure_synthetic(cfg, plan)
            labels = make_feed_set(cfg, plan, folder)
        with _stage(bar, "prepare", seconds):
            result["prepare"] = measure_prepare(
                cfg, plan, folder / "synthetic", folder / "prepare-bench"
            )
        with _stage(bar, "dataset", seconds):
            result["dataset"] = measure_dataset(cfg, plan, labels)
        with _stage(bar, "training", seconds):
            result["training"] = measure_training(cfg, plan, labels)
        with _stage(bar, "inference", seconds):
            result["inference"] = measure_inference(cfg, plan, folder)
        with _stage(bar, "decoder", seconds):
            result["decoder"] = measure_decoder(cfg, plan)
        if compare:
            with _stage(bar, "compare", seconds):
                result["compare"] = measure_compare(cfg, plan, labels, folder)
        if equal_minutes:
            from pkmodel.tools.equal_minutes import measure_equal_minutes

            with _stage(bar, "equal minutes", seconds):
                result["equal_minutes"] = measure_equal_minutes(
                    cfg, keep or folder / "equal-minutes", quick=quick,
                    echo=bar.write if progress else None, **equal_minutes,
                )  # fmt: skip
                result["equal_minutes"]["kept_in"] = str(keep) if keep else None
    result["figures"] = figures(result)
    result["machine"] = {
        **describe_machine(),
        "load_average_before": load_before,
        "load_average_after": load_average(),
    }
    result["stage_seconds"] = seconds
    result["seconds"] = round(time.perf_counter() - start, 1)
    return _json_ready(result)


def _json_ready(value: Any) -> Any:
    """Plain JSON values: floats to 5 significant digits, numpy scalars to Python numbers."""
    if isinstance(value, dict):
        return {k: _json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(v) for v in value]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(f"{float(value):.5g}") if math.isfinite(value) else None
    if isinstance(value, Path):
        return str(value)
    return value


def _format_value(value: float, unit: str) -> str:
    if unit == "share":
        return f"{value:.1%}"
    if unit == "MACs":
        return f"{value / 1e6:,.1f} M"
    if isinstance(value, int) or (float(value).is_integer() and abs(value) >= 1000):
        return f"{int(value):,}"
    return f"{value:,.3g}" if abs(value) < 100 else f"{value:,.1f}"


def format_table(result: dict[str, Any]) -> str:
    """The readable table printed after a run (a Markdown table, so docs can quote it)."""
    m, machine = result["model"], result["machine"]
    batch = result["plan"]["batch_size"]
    load = machine.get("load_average_before")
    lines = [
        f"pkmodel benchmark{' --quick' if result['quick'] else ''}: input {m['input_size']}, "
        f"width {m['width_mult']}, medians of {result['plan']['repeats']} repeats, "
        f"{result['seconds']:.0f} s",
        f"machine: {machine['cpu']}, {machine['usable_cores']} usable / "
        f"{machine['logical_cores']} logical cores, torch {machine['torch_threads']} threads"
        + (f", GPU {machine['gpu']}" if machine.get("gpu") else "")
        + (
            f", load {load[0]:.2f} before, {machine['load_average_after'][0]:.2f} after"
            if load
            else ""
        ),  # fmt: skip
        f"versions: Python {machine['python']}, torch {machine['torch']}, onnxruntime "
        f"{machine['onnxruntime']}, numpy {machine['numpy']}, coremltools "
        f"{machine['coremltools']}; {machine['os']}",
        "",
        "| figure | value | unit |",
        "|---|---:|---|",
    ]
    for section, key, label, unit in FIGURES:
        value = result[section][key]
        lines.append(
            f"| {label.format(batch=batch)} | {_format_value(value, unit)} | "
            f"{'' if unit == 'share' else unit} |"
        )
    t = result["training"]
    lines.append("")
    lines.append(
        f"training: {t['device']}, batch {t['batch_size']}, {t['workers']} loader workers, "
        f"{t['steps']} timed steps; Dataset: {result['dataset']['workers']} workers; "
        f"prepare: {result['prepare']['workers']} workers; synthetic: "
        f"{result['synthetic']['workers']} workers, {result['synthetic']['size'][0]}x"
        f"{result['synthetic']['size'][1]}"
    )
    if "compare" in result:
        lines.extend(["", *_compare_table(result["compare"])])
    if "equal_minutes" in result:
        from pkmodel.tools.equal_minutes import equal_minutes_table

        lines.extend(["", *equal_minutes_table(result["equal_minutes"])])
    return "\n".join(lines)


def _compare_table(c: dict[str, Any]) -> list[str]:
    """--compare's rows: both networks and pkmodel's speed over PoseKit's."""
    ours, seed, ratio = c["pkmodel"], c["posekit"], c["ratios"]
    rows = [
        ("training step, batch " + str(c["batch_size"]), "train_images_per_s", "images/s",
         "train_images_per_s"),
        ("PyTorch eager latency, batch 1", "torch_latency_ms", "ms", "torch_latency"),
        ("onnxruntime latency, batch 1", "onnxruntime_latency_ms", "ms", "onnxruntime_latency"),
        ("multiply-adds (MACs)", "macs", "MACs", "macs"),
        ("parameters", "parameters", "", "parameters"),
    ]  # fmt: skip
    lines = [
        f"--compare: pkmodel (width {ours['width_mult']}) against PoseKit's network, input "
        f"{ours['input_size']}, {'channels-last' if c['channels_last'] else 'NCHW'}, "
        f"alternating repeats; ratio = pkmodel's speed over PoseKit's (> 1: pkmodel faster or "
        "lighter)",
        "",
        "| figure | pkmodel | PoseKit | ratio | unit |",
        "|---|---:|---:|---:|---|",
    ]
    for label, key, unit, r in rows:
        lines.append(
            f"| {label} | {_format_value(ours[key], unit)} | {_format_value(seed[key], unit)} | "
            f"{ratio[r]:.2f} | {'' if unit == 'MACs' else unit} |"
        )
    return lines


def write_result(path: Path, result: dict[str, Any]) -> None:
    """Write the result JSON atomically."""

    atomic_write_json(path, result)


def _is_benchmark_json(path: Path) -> bool:
    """Whether ``path`` holds a JSON object an earlier benchmark wrote (rerunning replaces it)."""
    try:
        data = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and data.get("schema") == SCHEMA


def check_out_path(path: Path) -> Path:
    """Fail before a long run when the JSON cannot be written there."""

    path = Path(path)
    if path.is_dir():
        raise PkmodelError(f"--out {path} is a folder; give a file name such as benchmark.json")
    if path.is_file() and not _is_benchmark_json(path):
        raise PkmodelError(
            f"--out {path} is an existing file that is not a benchmark result; give another name"
        )
    check_writable(path, "--out")
    return path
