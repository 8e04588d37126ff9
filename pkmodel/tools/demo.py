"""pkmodel demo: the whole chain on the built-in synthetic data, a newcomer's first command.

Each step runs the real `pkmodel` command in a child process with one config file written to
``OUT/config.toml`` (so every step can be re-run by hand, exactly as the demo ran it):
make-synthetic -> prepare-coco (train, val) -> train -> evaluate -> export-coreml, export-onnx
-> lift (predicted 2D and ground-truth 2D). A summary (AP, MPJPE, model size, latency, every
file written) is printed and saved as ``OUT/summary.json``.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pkmodel.common.atomic import atomic_write_json, atomic_write_text
from pkmodel.common.devices import select_device
from pkmodel.common.errors import PkmodelError
from pkmodel.common.runtime import usable_cores
from pkmodel.config import Config, apply_set, format_config
from pkmodel.config.rules import RuleError
from pkmodel.export.onnx import onnx_session
from pkmodel.tools.benchmark.timing import median_ms

# The demo's settings: a narrow MobileNetV2 at 96 pixels, trained from scratch for 12 minutes
# (see docs/demo.md for what that reaches). Every value can be overridden with --set.
DEMO_SETTINGS: dict[str, Any] = {
    "synthetic.num_train": 2000,
    "synthetic.num_val": 300,
    "synthetic.width": 192,
    "synthetic.height": 192,
    "synthetic.sequences": 2,
    "synthetic.frames": 48,
    "prepare.crop_size": 96,
    "prepare.min_area": 400.0,
    # 96 pixels learn as much per image as 128 (relative to the person) at 1.4x the images/s.
    "model.input_size": 96,
    "model.width_mult": 0.5,
    "model.neck_channels": 48,
    "model.head_channels": 96,
    # Twelve minutes of training on any machine: the trainer sets the epochs that fit, 40-70
    # on the 2-core development VM, more on a faster machine and fewer on a slower one, so the
    # demo stays under 15 minutes. `--set train.minutes=0` trains exactly train.epochs.
    "train.minutes": 12.0,
    "train.epochs": 48,
    "train.batch_size": 32,
    # The fused-s8 network with a shared head learns less per epoch than MobileNetV2's stem
    # and makes it up in epochs at twice the earlier rate (docs/experiments.md, 2026-12-06).
    "train.lr": 2e-2,
    "train.warmup_epochs": 0.5,
    "train.val_every": 12,
    "train.ema_decay": 0.99,
    # train.workers: demo_workers() picks them for the device and the cores.
    # Lighter augmentation suits a schedule this short.
    "augment.affine_prob": 0.4,
    "augment.rotate_deg": 15.0,
    "augment.crop_pad_prob": 0.1,
    "augment.occlusion_prob": 0.1,
    "augment.blur_prob": 0.05,
    "augment.noise_prob": 0.05,
    "lift.batch_size": 16,
}

# --quick: the same chain in about a minute; the numbers mean nothing, the wiring is checked.
QUICK_SETTINGS: dict[str, Any] = {
    "synthetic.num_train": 96,
    "synthetic.num_val": 32,
    "synthetic.width": 128,
    "synthetic.height": 128,
    "synthetic.sequences": 1,
    "synthetic.frames": 12,
    "prepare.crop_size": 96,
    "model.input_size": 64,
    "model.width_mult": 0.35,
    "model.neck_channels": 24,
    "model.head_channels": 24,
    "train.minutes": 0.0,
    "train.epochs": 2,
    "train.batch_size": 16,
    "train.val_every": 1,
    "train.workers": 0,
}


def demo_workers(device: str, cores: int) -> int:
    """DataLoader workers for the demo's training on ``device`` ("cpu", "cuda", "mps").

    On a CPU with 2 cores, loading in the training process beats workers that take a core from
    the network's threads (180 against 150-164 images/s here); with more cores two workers
    load beside the network. On a GPU the CPU only loads: up to 8 workers, one core left over.
    """
    if device == "cpu":
        return 0 if cores <= 2 else 2
    return max(1, min(8, cores - 1))


def demo_config(base: Config, out: Path, quick: bool, overrides: list[str]) -> Config:
    """The demo's settings and output folders on top of ``base``; then the user's --set."""

    cfg = base
    for key, value in {**DEMO_SETTINGS, **(QUICK_SETTINGS if quick else {})}.items():
        cfg.set(key, value, "demo --quick" if quick and key in QUICK_SETTINGS else "demo")
    syn = out / "synthetic"
    paths = {
        "data.synthetic_dir": syn,
        "data.train_annotations": syn / "annotations/person_keypoints_train.json",
        "data.train_images": syn / "train",
        "data.val_annotations": syn / "annotations/person_keypoints_val.json",
        "data.val_images": syn / "val",
        "data.prepared_dir": out / "prepared",
        "train.out_dir": out / "train",
        "eval.out_dir": out / "eval",
        "export.out_dir": out / "export",
        "lift.out_dir": out / "lift",
    }
    for key, value in paths.items():
        cfg.set(key, value, "demo")
    apply_set(cfg, overrides)
    # every section the steps read, and the devices, now: not after data was made and prepared
    try:
        cfg.check()
    except RuleError as e:
        raise PkmodelError(cfg.explain(e)) from None
    device = _demo_device(cfg, "train.device").type
    _demo_device(cfg, "lift.device")
    if not quick and not cfg.sources.get("train.workers", "").startswith("--set"):
        cfg.set("train.workers", demo_workers(device, usable_cores()), "demo")
    return cfg


def _demo_device(cfg: Config, key: str) -> Any:
    """select_device for ``key``; an absent device names where the demo's value came from
    (the demo has no --device option)."""
    where = f"from {cfg.sources.get(key, 'default')}"
    return select_device(getattr(cfg, key.split(".")[0]).device, key=key, where=where)


@dataclass
class StepResult:
    name: str
    command: str
    seconds: float


@dataclass
class DemoRun:
    out: Path
    config_path: Path
    steps: list[StepResult] = field(default_factory=list)


def data_steps(cfg: Config) -> list[tuple[str, list[str]]]:
    """The demo's first steps, which make its data: the synthetic set, prepared (commands and
    their arguments, each read with ``--config``)."""
    return [
        ("synthetic data", ["make-synthetic"]),
        ("prepare train", ["prepare-coco", "--split", cfg.data.train_split]),
        ("prepare val", ["prepare-coco", "--split", cfg.data.val_split]),
    ]


def _steps(cfg: Config) -> list[tuple[str, list[str]]]:
    best = cfg.train.out_dir / "best.pt"
    syn = cfg.data.synthetic_dir
    return [
        *data_steps(cfg),
        ("train", ["train", "--force"]),  # a demo re-run starts over, as its data does
        ("evaluate", ["evaluate", "--weights", str(best), "--error-budget"]),
        ("export Core ML", ["export-coreml", "--weights", str(best), "--force",
                            "--out", str(cfg.export.out_dir / "pkmodel.mlpackage")]),
        ("export ONNX", ["export-onnx", "--weights", str(best), "--force",
                         "--out", str(cfg.export.out_dir / "pkmodel.onnx")]),
        ("lift 3D (network 2D)", ["lift", "--weights", str(best), "--input", str(syn),
                                  "--out", str(cfg.lift.out_dir / "network_2d")]),
        ("lift 3D (ground-truth 2D)", ["lift", "--ground-truth-2d", "--input", str(syn),
                                       "--out", str(cfg.lift.out_dir / "ground_truth_2d")]),
    ]  # fmt: skip


def run_demo(
    base: Config,
    out: Path,
    quick: bool = False,
    overrides: list[str] | None = None,
    echo: Callable[[str], None] = print,
    quiet: bool = False,
) -> dict[str, Any]:
    """Run every step; returns the summary (also written to ``OUT/summary.json``)."""
    out = out.resolve()
    cfg = demo_config(base, out, quick, overrides or [])  # checked before anything is written
    created = not out.exists()
    try:
        return _run_steps(cfg, out, echo, quiet)
    except BaseException:
        if created and out.is_dir() and not any(out.iterdir()):
            out.rmdir()  # made by this run and left empty: nothing of it to keep
        raise


def _run_steps(cfg: Config, out: Path, echo: Callable[[str], None], quiet: bool) -> dict[str, Any]:
    out.mkdir(parents=True, exist_ok=True)
    config_path = out / "config.toml"
    atomic_write_text(config_path, format_config(cfg))
    echo(f"demo: config written to {config_path} (every step below reads it)")
    run = DemoRun(out=out, config_path=config_path)
    t0 = time.perf_counter()
    steps = _steps(cfg)
    for i, (name, args) in enumerate(steps, 1):
        argv = [*args, "--config", str(config_path)]
        if quiet and args[0] in {"train", "evaluate"}:
            argv.append("--quiet")
        shown = "pkmodel " + " ".join(shlex.quote(a) for a in argv)
        echo(f"\n[{i}/{len(steps)}] {name}: {shown}")
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "pkmodel", *argv], cwd=out)
        if proc.returncode != 0:
            raise PkmodelError(
                f"demo step '{name}' failed with exit code {proc.returncode} (its output is "
                f"above); re-run it alone with: {shown}"
            )
        run.steps.append(StepResult(name, shown, time.perf_counter() - start))
    summary = summarise(run, cfg, time.perf_counter() - t0)
    atomic_write_json(out / "summary.json", summary)
    echo("\n" + format_summary(summary))
    return summary


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise PkmodelError(f"demo: {path} could not be read ({e})") from None


def _size(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


def onnx_latency_ms(path: Path, input_size: int, runs: int = 30) -> float:
    """Median batch-1 onnxruntime latency of the exported model on this CPU."""
    import numpy as np

    session = onnx_session(path)
    x = np.random.default_rng(0).uniform(-1, 1, (1, 3, input_size, input_size)).astype(np.float32)
    return median_ms(lambda: session.run(None, {session.get_inputs()[0].name: x}), runs, warmup=3)


def _mpjpe(metrics: dict[str, Any]) -> dict[str, Any]:
    """The headline 3D errors of a lift metrics.json (mm; None when absent)."""
    overall = metrics.get("overall", metrics)
    keys = ("mpjpe_visible_mm", "mpjpe_all_mm", "mpjpe_canonical_visible_mm",
            "depth_validity_rate", "found_rate_visible")  # fmt: skip
    return {k: overall.get(k) for k in keys}


def summarise(run: DemoRun, cfg: Config, seconds: float) -> dict[str, Any]:
    out = run.out
    evaluation = _read_json(cfg.eval.out_dir / "metrics.json")
    lift_net = _read_json(cfg.lift.out_dir / "network_2d" / "metrics.json")
    lift_gt = _read_json(cfg.lift.out_dir / "ground_truth_2d" / "metrics.json")
    train_rows = [
        json.loads(line)
        for line in (cfg.train.out_dir / "metrics.jsonl").read_text().splitlines()
        if line.strip()
    ]
    best = max((r for r in train_rows if "val/AP" in r), key=lambda r: r["val/AP"], default={})
    mlpackage = cfg.export.out_dir / "pkmodel.mlpackage"
    onnx_path = cfg.export.out_dir / "pkmodel.onnx"
    files = sorted(
        str(p.relative_to(out))
        for p in out.rglob("*")
        if p.is_file() and "tensorboard" not in p.parts
    )
    return {
        "out": str(out),
        "config": str(run.config_path),
        "seconds_total": round(seconds, 1),
        "steps": [{"name": s.name, "command": s.command, "seconds": round(s.seconds, 1)} for s in run.steps],
        "train": {
            "epochs": len(train_rows),
            "best_epoch": best.get("epoch"),
            "val_AP_in_train": best.get("val/AP"),
            "images_per_s": train_rows[-1].get("train/images_per_s") if train_rows else None,
        },
        "evaluate": {k: evaluation.get(k) for k in ("AP", "AP50", "AP75", "AR", "PCK", "mean_error_px")},
        # The AP with one kind of error taken away (evaluate --error-budget): what limits it.
        "ap_if": {k: v["AP"] for k, v in evaluation.get("error_budget", {}).get("rows", {}).items()},
        "lift_network_2d": _mpjpe(lift_net),
        "lift_ground_truth_2d": _mpjpe(lift_gt),
        "model": {
            "input_size": cfg.model.input_size,
            "width_mult": cfg.model.width_mult,
            "coreml_mb": round(_size(mlpackage) / 1e6, 3),
            "onnx_mb": round(_size(onnx_path) / 1e6, 3),
            "onnx_cpu_latency_ms_batch1": round(onnx_latency_ms(onnx_path, cfg.model.input_size), 3),
        },
        "files": files,
    }  # fmt: skip


def format_summary(s: dict[str, Any]) -> str:
    def num(v: Any, fmt: str = ".3f") -> str:
        return "n/a" if v is None else format(v, fmt)

    ev, m, t = s["evaluate"], s["model"], s["train"]
    net, gt = s["lift_network_2d"], s["lift_ground_truth_2d"]
    lines = [
        f"pkmodel demo finished in {s['seconds_total'] / 60:.1f} min -> {s['out']}",
        "",
        f"  COCO OKS AP (synthetic val)   {num(ev['AP'])}   AP50 {num(ev['AP50'])}  "
        f"AP75 {num(ev['AP75'])}  AR {num(ev['AR'])}  PCK@0.2 {num(ev['PCK'])}",
        *_ap_if_lines(s.get("ap_if", {})),
        f"  AP inside train (best epoch)  {num(t['val_AP_in_train'])} (epoch {t['best_epoch']}"
        f" of {t['epochs']}, {num(t['images_per_s'], '.0f')} img/s)",
        f"  MPJPE, network 2D             {num(net['mpjpe_visible_mm'], '.1f')} mm visible joints,"
        f" {num(net['mpjpe_all_mm'], '.1f')} mm all labelled",
        f"  MPJPE, ground-truth 2D        {num(gt['mpjpe_visible_mm'], '.1f')} mm visible joints,"
        f" {num(gt['mpjpe_all_mm'], '.1f')} mm all labelled",
        f"  model                         {m['input_size']} px, width {m['width_mult']}: Core ML "
        f"{m['coreml_mb']:.2f} MB, ONNX {m['onnx_mb']:.2f} MB, "
        f"{m['onnx_cpu_latency_ms_batch1']:.2f} ms (onnxruntime, batch 1, this CPU)",
        "",
        "  steps:",
        *(f"    {st['seconds']:7.1f} s  {st['name']}" for st in s["steps"]),
        "",
        f"  files written ({len(s['files'])}, all listed in summary.json):",
        *(f"    {line}" for line in group_files(s["files"])),
    ]
    return "\n".join(lines)


def _ap_if_lines(ap_if: dict[str, float]) -> list[str]:
    """One line of the error budget: the AP if the main kinds of error were taken away."""
    rows = (("left/right swapped where nearer", "left/right fixed"),
            ("exact when within one cell", "joints within a cell exact"),
            ("errors halved", "errors halved"), ("every labelled joint exact", "all exact"))  # fmt: skip
    parts = [f"{label} {ap_if[key]:.3f}" for key, label in rows if key in ap_if]
    return [f"  AP if ...                     {', '.join(parts)}"] if parts else []


def group_files(files: list[str], limit: int = 4) -> list[str]:
    """One line per file, except folders with many files: 'dir/ (N files: *.jpg)'."""

    by_dir: dict[str, list[str]] = defaultdict(list)
    for f in files:
        by_dir[str(Path(f).parent)].append(f)
    lines = []
    for folder in sorted(by_dir):
        names = by_dir[folder]
        if len(names) <= limit:
            lines.extend(names)
        else:
            kinds = sorted({"*" + Path(n).suffix for n in names})
            lines.append(f"{folder}/ ({len(names)} files: {', '.join(kinds)})")
    return lines
