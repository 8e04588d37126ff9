"""Shared test fixtures: the real sample data beside the project, and quiet libraries."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
os.environ.setdefault("OMP_NUM_THREADS", "2")

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"


def shared_data(*parts: str) -> Path:
    """Path under ../shared/data, or skip the test with a reason when it is absent."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real sample data {path} is absent (a user checkout has no ../shared)")
    return path


@pytest.fixture(autouse=True)
def _no_pkmodel_env(monkeypatch):
    """Tests never see the developer's PKMODEL_* variables."""
    for name in list(os.environ):
        if name.startswith("PKMODEL_"):
            monkeypatch.delenv(name)


def run_cli(args: list[str]) -> str:
    """Run a pkmodel command in-process; fail the test with its output on a non-zero exit."""
    from typer.testing import CliRunner

    from pkmodel.cli import app

    result = CliRunner().invoke(app, [str(a) for a in args])
    if result.exit_code != 0:
        raise AssertionError(f"pkmodel {' '.join(map(str, args))} failed:\n{result.output}")
    return result.output


@pytest.fixture(scope="session")
def tiny_synthetic(tmp_path_factory) -> Path:
    """A small synthetic RGB-D set (train/val/sequences), made once per test session."""
    out = tmp_path_factory.mktemp("synthetic")
    run_cli(["make-synthetic", "--out", out, "--num-train", 48, "--num-val", 16,
             "--size", "128x128", "--seed", 3, "--sequences", 1, "--frames", 8])  # fmt: skip
    return out


@pytest.fixture(scope="session")
def tiny_prepared(tiny_synthetic, tmp_path_factory) -> Path:
    """tiny_synthetic prepared into 96-pixel crops: DIR/train.json, DIR/val.json, DIR/imgs/."""
    out = tmp_path_factory.mktemp("prepared")
    for split in ("train", "val"):
        run_cli(["prepare-coco", "--split", split, "--images", tiny_synthetic / split,
                 "--annotations", tiny_synthetic / f"annotations/person_keypoints_{split}.json",
                 "--out", out, "--set", "prepare.crop_size=96"])  # fmt: skip
    return out


def labels_missing_a_crop(prepared: Path, folder: Path, split: str = "val") -> Path:
    """``prepared``'s labels of ``split`` written into ``folder`` (the crops linked there) with
    the crop of sample 2 missing: ``folder/imgs/SPLIT/missing.jpg``."""
    import json

    data = json.loads((prepared / f"{split}.json").read_text())
    data["samples"][2]["image"] = f"imgs/{split}/missing.jpg"
    (folder / "imgs").symlink_to(prepared / "imgs")
    (folder / f"{split}.json").write_text(json.dumps(data))
    return folder / f"{split}.json"


def tiny_train_config(prepared: Path, out_dir: Path, **train):
    """A config for fast CPU training tests on tiny_prepared (64-pixel input, width 0.35)."""
    from pkmodel.config import load_config

    sets = {
        "data.prepared_dir": prepared,
        "model.input_size": 64,
        "model.width_mult": 0.35,
        "model.neck_channels": 24,
        "model.head_channels": 24,
        "train.out_dir": out_dir,
        "train.batch_size": 8,
        "train.workers": 0,
        "train.epochs": 2,
        "train.device": "cpu",
        "train.warmup_epochs": 0.5,
        "train.ema_decay": 0.9,
        "eval.batch_size": 16,
    }
    sets.update({f"train.{k}": v for k, v in train.items()})
    return load_config(None, [], sets, env={})
