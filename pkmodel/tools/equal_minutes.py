"""`pkmodel benchmark --equal-minutes M`: what the demo's network learns in M minutes against
another network (by default the demo's network before the lighter default), trained side by
side on the demo's data.

A faster network trains more epochs in the same minutes; whether that makes up for what it
learns less per epoch is only seen by training both for the same minutes on the same machine.
For every seed the two runs start together, each with half of the cores, so that a slow minute
of the host slows both; which one starts first alternates with the seed. Each run is the real
`pkmodel train` (``train.minutes = M``) on the demo's synthetic data, made and prepared once;
the figures are each run's best validation AP, its PCK@0.2 and the epochs it trained, and the
medians over the seeds. Each run's validations are kept too (``curve``), and each pair's at the
last epoch both runs validated (``equal_epochs``): what the two networks learn per epoch, apart
from how many epochs each fits into the minutes.
"""

from __future__ import annotations

import copy
import json
import os
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from pkmodel.common.atomic import atomic_write_text, check_writable
from pkmodel.common.errors import PkmodelError
from pkmodel.common.runtime import usable_cores
from pkmodel.config import Config
from pkmodel.config.loader import format_config

# The demo's network and rate before the lighter default network (docs/model.md): MobileNetV2's
# own stem and four separate heads of 48 channels, at the rate that suited it.
EARLIER_DEMO_NETWORK = (
    "model.stem=mobilenetv2",
    "model.heads=separate",
    "model.head_channels=48",
    "train.lr=1e-2",
)
SIDES = ("default", "against")
LOG_TAIL_LINES = 5


def side_by_side_threads(cores: int) -> int:
    """Threads of each of the two runs: half of the cores, at least one."""
    return max(1, cores // 2)


def _train_argv(config: Path, out: Path, seed: int, minutes: float, sets: tuple[str, ...]) -> list[str]:  # fmt: skip
    argv = ["train", "--config", str(config), "--out", str(out), "--force", "--quiet",
            "--set", f"train.seed={seed}", "--set", f"train.minutes={minutes:g}"]  # fmt: skip
    for s in sets:
        argv += ["--set", s]
    return argv


def run_result(folder: Path) -> dict[str, Any]:
    """One run's figures from its metrics.jsonl: the best validation AP, the PCK@0.2 of that
    validation, its epoch, the epochs trained, the training seconds and every validation
    (``curve``: epoch, AP, PCK@0.2)."""
    path = folder / "metrics.jsonl"
    try:
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    except (OSError, ValueError) as e:
        raise PkmodelError(f"benchmark --equal-minutes: {path} could not be read ({e})") from None
    validated = [r for r in rows if "val/AP" in r]
    if not validated:
        raise PkmodelError(f"benchmark --equal-minutes: {path} holds no validation")
    best = max(validated, key=lambda r: r["val/AP"])  # the first of equal APs, as train keeps
    return {
        "AP": best["val/AP"],
        "PCK": best["val/PCK"],
        "best_epoch": best["epoch"],
        "epochs": rows[-1]["epoch"],
        "seconds": rows[-1]["seconds"],
        "curve": [{"epoch": r["epoch"], "AP": r["val/AP"], "PCK": r["val/PCK"]} for r in validated],
    }


def equal_epochs(pair: dict[str, dict[str, Any]]) -> dict[str, Any] | None:
    """The two runs of a seed at the last epoch both validated: that epoch and each side's AP
    and PCK@0.2 there; None when they validated no epoch in common."""
    at = {side: {p["epoch"]: p for p in pair[side]["curve"]} for side in SIDES}
    common = set(at["default"]) & set(at["against"])
    if not common:
        return None
    epoch = max(common)
    return {"epoch": epoch, **{
        side: {"AP": at[side][epoch]["AP"], "PCK": at[side][epoch]["PCK"]} for side in SIDES
    }}  # fmt: skip


def summarise(runs: list[dict[str, dict[str, Any]]]) -> dict[str, Any]:
    """Medians over the seeds for each side, and the default network's over the other's:
    ``epochs_ratio`` (> 1: more epochs in the same minutes), and whether neither its AP nor
    its PCK@0.2 median is lower (``not_lower``). ``equal_epochs``: each seed's pair at the last
    epoch both validated (:func:`equal_epochs`), the medians there and the same comparison;
    None when no pair validated an epoch in common."""
    medians = _side_medians(runs, ("AP", "PCK", "epochs"))
    ours, other = medians["default"], medians["against"]
    return {
        "medians": medians,
        "epochs_ratio": ours["epochs"] / max(other["epochs"], 1e-9),
        "not_lower": _not_lower(medians),
        "equal_epochs": _equal_epochs_summary([equal_epochs(r) for r in runs]),
    }


def _side_medians(pairs: list[dict[str, Any]], keys: tuple[str, ...]) -> dict[str, dict]:
    """Each side's median of each of ``keys`` over the seeds' pairs."""
    return {side: {k: statistics.median(p[side][k] for p in pairs) for k in keys} for side in SIDES}


def _not_lower(medians: dict[str, dict[str, float]]) -> bool:
    ours, other = medians["default"], medians["against"]
    return ours["AP"] >= other["AP"] and ours["PCK"] >= other["PCK"]


def _equal_epochs_summary(pairs: list[dict[str, Any] | None]) -> dict[str, Any] | None:
    found = [p for p in pairs if p is not None]
    if not found:
        return None
    medians = _side_medians(found, ("AP", "PCK"))
    return {"runs": pairs, "medians": medians, "not_lower": _not_lower(medians)}


def _tail(path: Path) -> str:
    try:
        lines = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return " | ".join(lines[-LOG_TAIL_LINES:])


def _train_pair(
    config: Path, folder: Path, seed: int, minutes: float, against: tuple[str, ...], threads: int
) -> dict[str, dict[str, Any]]:
    """The two runs of ``seed``, started together (the first of them alternating by seed)."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    sides = SIDES if seed % 2 == 0 else SIDES[::-1]
    procs: dict[str, tuple[subprocess.Popen, Path, list[str]]] = {}
    try:
        for side in sides:
            out = folder / f"{side}-seed{seed}"
            argv = _train_argv(config, out, seed, minutes, against if side == "against" else ())
            with out.with_suffix(".log").open("wb") as f:
                proc = subprocess.Popen([sys.executable, "-m", "pkmodel", *argv], env=env,
                                        stdout=f, stderr=subprocess.STDOUT, cwd=folder)  # fmt: skip
            procs[side] = (proc, out, argv)
        for side, (proc, out, argv) in procs.items():
            if proc.wait() != 0:
                shown = "pkmodel " + " ".join(shlex.quote(a) for a in argv)
                raise PkmodelError(
                    f"benchmark --equal-minutes: the {side} run of seed {seed} failed with exit "
                    f"code {proc.returncode} ({_tail(out.with_suffix('.log'))}); run it alone "
                    f"with: {shown}"
                )
    finally:
        for proc, _, _ in procs.values():
            if proc.poll() is None:
                proc.terminate()
                proc.wait()
    return {side: run_result(out) for side, (_, out, _) in procs.items()}


def check_keep(folder: Path) -> None:
    """``--keep``'s folder, before any work: a new or empty folder that can be written. The
    data, the config and every run go straight into it, so a folder holding anything (an
    earlier run's included) is refused rather than mixed with or written over."""
    check_writable(folder, "--keep", folder=True)
    count = sum(1 for _ in folder.iterdir()) if folder.is_dir() else 0
    if count:
        raise PkmodelError(
            f"--keep {folder}: the folder holds {count} entr{'y' if count == 1 else 'ies'}; "
            "give a new or empty folder (the demo's data, the config and both networks' runs "
            "go into it)"
        )


def check_settings(
    base: Config,
    against: tuple[str, ...],
    quick: bool = False,
    folder: Path = Path("equal-minutes"),
) -> Config:
    """Both sides' settings checked, as the demo checks its own, before any work is done;
    returns the demo's side (its data and runs in ``folder``). ``base`` is left as it was."""
    from pkmodel.tools.demo import demo_config

    demo_config(copy.deepcopy(base), folder, quick, list(against))
    return demo_config(copy.deepcopy(base), folder, quick, [])


def measure_equal_minutes(
    base: Config,
    folder: Path,
    minutes: float,
    seeds: int,
    against: tuple[str, ...] = EARLIER_DEMO_NETWORK,
    quick: bool = False,
    echo: Any = None,
) -> dict[str, Any]:
    """The demo's data made and prepared in ``folder``, then per seed the demo's network and
    the one ``against`` sets (``KEY=VALUE`` on top of the demo's settings) trained side by side
    for ``minutes`` each. ``quick``: the demo's --quick sizes (for tests)."""
    from pkmodel.tools.demo import data_steps

    folder = folder.resolve()  # the runs' config names its data by absolute paths
    cfg = check_settings(base, against, quick, folder)  # before minutes of data and training
    folder.mkdir(parents=True, exist_ok=True)
    config = folder / "config.toml"
    atomic_write_text(config, format_config(cfg))
    for _, args in data_steps(cfg):
        argv = [*args, "--config", str(config)]
        proc = subprocess.run([sys.executable, "-m", "pkmodel", *argv], cwd=folder,
                              capture_output=True, text=True)  # fmt: skip
        if proc.returncode != 0:
            last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            raise PkmodelError(f"benchmark --equal-minutes: pkmodel {' '.join(argv)} failed: {last}")  # fmt: skip
    threads = side_by_side_threads(usable_cores())
    runs = []
    start = time.perf_counter()
    for seed in range(seeds):
        if echo is not None:
            echo(f"equal minutes: seed {seed + 1} of {seeds}, two runs of {minutes:g} min")
        runs.append(_train_pair(config, folder, seed, minutes, against, threads))
    return {
        "minutes": minutes,
        "seeds": seeds,
        "threads_per_run": threads,
        "against": list(against),
        "runs": runs,
        **summarise(runs),
        "seconds": time.perf_counter() - start,
    }


def equal_minutes_table(e: dict[str, Any]) -> list[str]:
    """--equal-minutes' rows: each seed's best AP / PCK@0.2 (epochs), then the medians."""
    lines = [
        f"--equal-minutes: the demo's network against {' '.join(e['against']) or 'itself'}, "
        f"{e['minutes']:g} minutes each, side by side ({e['threads_per_run']} "
        f"thread{'s' if e['threads_per_run'] > 1 else ''} each); "
        "best validation AP / PCK@0.2 (epochs)",
        "",
        "| seed | demo's network | against |",
        "|---|---|---|",
    ]

    def cell(r: dict[str, Any]) -> str:
        return f"{_short(r)} ({r['epochs']:g})"

    for seed, run in enumerate(e["runs"]):
        lines.append(f"| {seed} | {cell(run['default'])} | {cell(run['against'])} |")
    m = e["medians"]
    lines.append(f"| median | {cell(m['default'])} | {cell(m['against'])} |")
    lines += [
        "",
        f"epochs in the same minutes: {e['epochs_ratio']:.2f}x; AP and PCK@0.2 medians "
        + _verdict(e["not_lower"]),
    ]
    same = e.get("equal_epochs")
    if same:
        lines += [
            "",
            "at the last epoch both runs of a seed validated: AP / PCK@0.2",
            "",
            "| seed | epoch | demo's network | against |",
            "|---|---|---|---|",
        ]
        for seed, pair in enumerate(same["runs"]):
            if pair is None:
                lines.append(f"| {seed} | none in common | | |")
            else:
                lines.append(f"| {seed} | {pair['epoch']:g} | {_short(pair['default'])} | "
                             f"{_short(pair['against'])} |")  # fmt: skip
        m = same["medians"]
        lines += [
            f"| median | | {_short(m['default'])} | {_short(m['against'])} |",
            "",
            "at equal epochs, AP and PCK@0.2 medians " + _verdict(same["not_lower"]),
        ]
    return lines


def _short(r: dict[str, Any]) -> str:
    return f"{r['AP']:.4f} / {r['PCK']:.3f}"


def _verdict(not_lower: bool) -> str:
    return ("not lower" if not_lower else "lower in at least one") + " than the other network's"
