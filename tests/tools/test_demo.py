"""pkmodel demo: settings and their precedence, and the whole chain with --quick."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from pkmodel.common.errors import PkmodelError
from pkmodel.config import load_config
from pkmodel.tools.demo import DEMO_SETTINGS, QUICK_SETTINGS, demo_config, group_files
from tests.conftest import ROOT


def test_demo_settings_sit_between_the_config_and_set(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "c.toml").write_text("[train]\nepochs = 99\nseed = 7\n")
    base = load_config(tmp_path / "c.toml", [], env={})
    cfg = demo_config(base, tmp_path / "out", quick=False, overrides=["train.lr=0.01"])
    assert (
        cfg.train.epochs == DEMO_SETTINGS["train.epochs"] and cfg.sources["train.epochs"] == "demo"
    )
    assert cfg.train.seed == 7  # not a demo setting: the config file's value stays
    assert cfg.train.lr == 0.01 and cfg.sources["train.lr"] == "--set"
    assert cfg.train.out_dir == tmp_path / "out" / "train"
    assert cfg.data.val_images == tmp_path / "out" / "synthetic" / "val"
    quick = demo_config(load_config(None, [], env={}), tmp_path / "q", quick=True, overrides=[])
    assert quick.model.input_size == QUICK_SETTINGS["model.input_size"]
    assert quick.sources["model.input_size"] == "demo --quick"


def test_demo_workers_follow_the_device_and_the_cores(tmp_path, monkeypatch):
    from pkmodel.tools import demo

    assert [demo.demo_workers("cpu", c) for c in (1, 2, 4, 64)] == [0, 0, 2, 2]
    assert [demo.demo_workers("cuda", c) for c in (1, 2, 4, 16)] == [1, 1, 3, 8]
    assert demo.demo_workers("mps", 10) == 8
    base = load_config(None, [], env={})
    monkeypatch.setattr(demo, "usable_cores", lambda: 16)
    cfg = demo_config(base, tmp_path / "o", quick=False, overrides=[])
    assert cfg.train.workers == 2 and cfg.sources["train.workers"] == "demo"  # CPU here
    cfg = demo_config(load_config(None, [], env={}), tmp_path / "o", False, ["train.workers=5"])
    assert cfg.train.workers == 5  # --set wins
    with pytest.raises(PkmodelError, match="CUDA is not available"):
        demo_config(load_config(None, [], env={}), tmp_path / "o", False, ["train.device=cuda"])


def test_group_files_collapses_big_folders():
    files = ["a.json", *(f"imgs/{i}.jpg" for i in range(6)), "imgs/x.png", "b/c.txt"]
    assert group_files(files) == ["a.json", "b/c.txt", "imgs/ (7 files: *.jpg, *.png)"]


@pytest.mark.slow
def test_quick_demo_runs_the_whole_chain(tmp_path):
    out = tmp_path / "demo"
    proc = subprocess.run(
        [sys.executable, "-m", "pkmodel", "demo", "--quick", "--quiet", "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "pkmodel demo finished" in proc.stdout
    summary = json.loads((out / "summary.json").read_text())
    assert [s["name"] for s in summary["steps"]] == [
        "synthetic data", "prepare train", "prepare val", "train", "evaluate", "export Core ML",
        "export ONNX", "lift 3D (network 2D)", "lift 3D (ground-truth 2D)",
    ]  # fmt: skip
    assert 0.0 <= summary["evaluate"]["AP"] <= 1.0
    # The error budget: its "as predicted" row is the AP itself; exact joints reach far higher.
    ap_if = summary["ap_if"]
    assert ap_if["as predicted"] == pytest.approx(summary["evaluate"]["AP"])
    assert ap_if["every labelled joint exact"] > 0.8 and "AP if ..." in proc.stdout
    # The untrained quick model may find nothing, but the depth path with true 2D is exact-ish.
    assert summary["lift_ground_truth_2d"]["mpjpe_visible_mm"] < 30.0
    assert summary["model"]["coreml_mb"] > 0.1 and summary["model"]["onnx_mb"] > 0.1
    assert summary["model"]["onnx_cpu_latency_ms_batch1"] > 0
    for f in ("train/best.pt", "eval/metrics.json", "export/pkmodel.onnx", "config.toml",
              "lift/network_2d/seq_000/take.zip", "lift/ground_truth_2d/metrics.json"):  # fmt: skip
        assert f in summary["files"] and (out / f).is_file(), f
    # The written config re-runs any step as the demo ran it.
    assert load_config(out / "config.toml", [], env={}).train.out_dir == out / "train"


def test_demo_checks_its_config_before_writing_anything(tmp_path):
    from typer.testing import CliRunner

    from pkmodel.cli import app

    runner = CliRunner()
    out = tmp_path / "demo"
    result = runner.invoke(app, ["demo", "--quick", "--out", str(out), "--set", "model.input_size=65"])  # fmt: skip
    assert result.exit_code == 2 and "model.input_size from --set" in result.output
    assert "make-synthetic" not in result.output and not out.exists()
    if not torch_cuda_available():
        result = runner.invoke(app, ["demo", "--quick", "--out", str(out), "--set", "train.device=cuda"])  # fmt: skip
        assert result.exit_code == 2 and "train.device (from --set)" in result.output
        assert "--device" not in result.output and not out.exists()


def torch_cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()
