#!/usr/bin/env python3
"""Kill a tiny training run with SIGKILL at random moments and resume it, N times; count the
trials whose final weights are bit-identical to an uninterrupted run's.

Half of the trials are killed at a random moment of training after epoch 1's checkpoint, the
other half inside a checkpoint save (the k-th torch.save of the run, with half its bytes
written). Usage (after scripts/bootstrap.sh):

    .venv/bin/python scripts/crash_resume.py --trials 10 [--seed 0] [--epochs 3]

Prints one line per trial and "k/N bit-identical"; exits 1 unless every trial is.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
# A run small enough to take seconds: deterministic, one thread, validation at the end only.
SETS = ["model.input_size=64", "model.width_mult=0.35", "model.neck_channels=24",
        "model.head_channels=24", "train.batch_size=2", "train.workers=0", "train.device=cpu",
        "train.deterministic=true", "train.val_every=100", "eval.batch_size=16"]  # fmt: skip
DYING_SAVE = """import io, os, signal, sys, torch
real, calls, when = torch.save, [], int(os.environ["KILL_AT_SAVE"])
def dying_save(obj, f, *args, **kwargs):
    calls.append(1)
    if len(calls) == when:
        buf = io.BytesIO(); real(obj, buf)
        f.write(buf.getvalue()[: len(buf.getvalue()) // 2]); f.flush()
        os.kill(os.getpid(), signal.SIGKILL)
    return real(obj, f, *args, **kwargs)
torch.save = dying_save
sys.argv = ["pkmodel", *sys.argv[1:]]
from pkmodel.cli import main
main()
"""


def train_args(prepared: Path, out: Path, epochs: int) -> list[str]:
    args = ["train", "--out", str(out), "--epochs", str(epochs), "--quiet",
            "--set", f"data.prepared_dir={prepared}"]  # fmt: skip
    for s in SETS:
        args += ["--set", s]
    return args


def weights(path: Path) -> dict[str, torch.Tensor]:
    state = torch.load(path, map_location="cpu", weights_only=True)
    return {**state["model"], **{f"ema.{k}": v for k, v in (state["ema"] or {}).items()}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=3)
    opts = parser.parse_args()
    rng = random.Random(opts.seed)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "NO_ALBUMENTATIONS_UPDATE": "1"}
    pkmodel = [sys.executable, "-m", "pkmodel"]
    with tempfile.TemporaryDirectory(prefix="pkmodel-crash-") as tmp:
        work = Path(tmp)
        subprocess.run([*pkmodel, "make-synthetic", "--out", str(work / "syn"), "--num-train",
                        "24", "--num-val", "8", "--size", "128x128", "--sequences", "0"],
                       check=True, env=env, capture_output=True)  # fmt: skip
        for split in ("train", "val"):
            subprocess.run([*pkmodel, "prepare-coco", "--split", split, "--images",
                            str(work / "syn" / split), "--annotations",
                            str(work / "syn" / "annotations" / f"person_keypoints_{split}.json"),
                            "--out", str(work / "prep"), "--set", "prepare.crop_size=96"],
                           check=True, env=env, capture_output=True)  # fmt: skip
        prepared = work / "prep"
        subprocess.run([*pkmodel, *train_args(prepared, work / "straight", opts.epochs)],
                       check=True, env=env)  # fmt: skip
        rows = [
            json.loads(r) for r in (work / "straight" / "metrics.jsonl").read_text().splitlines()
        ]
        training_s = rows[-1]["seconds"] - rows[0]["seconds"]  # epochs 2.. (without start-up)
        want = weights(work / "straight" / "last.pt")
        identical = 0
        for trial in range(opts.trials):
            out = work / f"trial{trial}"
            args = train_args(prepared, out, opts.epochs)
            if trial % 2:
                when = rng.randint(1, opts.epochs)  # the k-th save (last.pt of epoch k)
                how = f"inside save {when}"
                proc = subprocess.Popen([sys.executable, "-c", DYING_SAVE, *args],
                                        env={**env, "KILL_AT_SAVE": str(when)})  # fmt: skip
            else:
                delay = rng.uniform(0.0, 0.95) * training_s
                how = f"{delay:.2f} s after epoch 1's checkpoint"
                proc = subprocess.Popen([*pkmodel, *args], env=env)
                while not (out / "last.pt").exists() and proc.poll() is None:
                    time.sleep(0.005)
                time.sleep(delay)
                proc.send_signal(signal.SIGKILL)
            proc.wait()
            resume = ["--resume"] if (out / "last.pt").exists() else []
            epoch = torch.load(out / "last.pt", weights_only=True)["epoch"] if resume else 0
            how += f", last.pt of epoch {epoch}"
            subprocess.run([*pkmodel, *args, *resume], check=True, env=env, capture_output=True)
            got = weights(out / "last.pt")
            same = got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in want)
            identical += same
            left = sorted(p.name for p in out.glob(".*.tmp"))
            print(f"trial {trial}: killed {how} (exit {proc.returncode}), resumed "
                  f"{'from last.pt' if resume else 'from scratch'}: "
                  f"{'bit-identical' if same else 'DIFFERENT'}; temporary files left: {left}")  # fmt: skip
        print(f"{identical}/{opts.trials} bit-identical")
        return 0 if identical == opts.trials else 1


if __name__ == "__main__":
    sys.exit(main())
