"""benchmark --equal-minutes: the demo's network and another trained side by side for the same
minutes, per seed, with the best AP / PCK@0.2 / epochs of each run and their medians."""

from __future__ import annotations

import json

import pytest
import torch

from pkmodel.common.errors import PkmodelError
from pkmodel.config import load_config
from pkmodel.tools.equal_minutes import (
    EARLIER_DEMO_NETWORK,
    equal_minutes_table,
    measure_equal_minutes,
    run_result,
    side_by_side_threads,
    summarise,
)


def _run(ap: float, pck: float, epochs: int, curve: tuple = ()) -> dict:
    points = [{"epoch": e, "AP": a, "PCK": p} for e, a, p in curve] or [
        {"epoch": epochs, "AP": ap, "PCK": pck}
    ]
    return {"AP": ap, "PCK": pck, "epochs": epochs, "curve": points}


def test_summary_takes_medians_per_side_and_compares_them():
    runs = [
        {"default": _run(0.03, 0.50, 30), "against": _run(0.02, 0.55, 20)},
        {"default": _run(0.05, 0.54, 31), "against": _run(0.04, 0.53, 21)},
        {"default": _run(0.04, 0.52, 29), "against": _run(0.03, 0.51, 22)},
    ]
    s = summarise(runs)
    assert s["medians"]["default"] == {"AP": 0.04, "PCK": 0.52, "epochs": 30}
    assert s["medians"]["against"] == {"AP": 0.03, "PCK": 0.53, "epochs": 21}
    assert s["epochs_ratio"] == pytest.approx(30 / 21)
    assert s["not_lower"] is False  # PCK 0.52 < 0.53
    runs[0]["default"]["PCK"] = 0.60
    runs[2]["default"]["PCK"] = 0.56  # medians 0.56 against 0.53
    assert summarise(runs)["not_lower"] is True


def test_equal_epochs_compares_each_pair_at_the_last_epoch_both_validated():
    runs = [
        {  # validated at 1, 12, 24, 36, 50 against 1, 12, 24, 36, 37: epoch 36
            "default": _run(0.06, 0.59, 50, ((1, 0.0, 0.2), (12, 0.01, 0.45), (24, 0.03, 0.52),
                                             (36, 0.05, 0.56), (50, 0.06, 0.59))),
            "against": _run(0.07, 0.60, 37, ((1, 0.0, 0.2), (12, 0.02, 0.50), (24, 0.05, 0.57),
                                             (36, 0.068, 0.598), (37, 0.07, 0.60))),
        },
        {  # only epochs 1 and 12 in common
            "default": _run(0.04, 0.55, 30, ((1, 0.0, 0.21), (12, 0.02, 0.49), (30, 0.04, 0.55))),
            "against": _run(0.03, 0.53, 20, ((1, 0.0, 0.22), (12, 0.015, 0.47), (20, 0.03, 0.53))),
        },
        {  # no epoch in common (another train.val_every on one side)
            "default": _run(0.05, 0.57, 40, ((2, 0.01, 0.3), (40, 0.05, 0.57))),
            "against": _run(0.05, 0.56, 30, ((3, 0.01, 0.3), (30, 0.05, 0.56))),
        },
    ]  # fmt: skip
    same = summarise(runs)["equal_epochs"]
    assert same["runs"][0] == {"epoch": 36, "default": {"AP": 0.05, "PCK": 0.56},
                               "against": {"AP": 0.068, "PCK": 0.598}}  # fmt: skip
    second = same["runs"][1]
    assert second["epoch"] == 12 and second["default"] == {"AP": 0.02, "PCK": 0.49}
    assert same["runs"][2] is None
    # medians over the two pairs that have an epoch in common
    assert same["medians"]["default"] == pytest.approx({"AP": 0.035, "PCK": 0.525})
    assert same["medians"]["against"] == pytest.approx({"AP": 0.0415, "PCK": 0.534})
    assert same["not_lower"] is False
    table = "\n".join(equal_minutes_table({
        "against": ["model.stem=mobilenetv2"], "minutes": 12, "threads_per_run": 1, "runs": runs,
        **summarise(runs)}))  # fmt: skip
    assert "| 0 | 36 | 0.0500 / 0.560 | 0.0680 / 0.598 |" in table
    assert "| 2 | none in common | | |" in table
    assert "| median | | 0.0350 / 0.525 | 0.0415 / 0.534 |" in table
    assert table.endswith("at equal epochs, AP and PCK@0.2 medians lower in at least one than "
                          "the other network's")  # fmt: skip
    for pair in runs:
        pair["default"]["curve"] = [{"epoch": 5, "AP": 0.1, "PCK": 0.6}]
    assert summarise(runs)["equal_epochs"] is None


def test_a_runs_figures_are_its_best_validation_and_its_last_epoch(tmp_path):
    rows = [
        {"epoch": 1, "seconds": 10.0, "val/AP": 0.01, "val/PCK": 0.40},
        {"epoch": 2, "seconds": 20.0},
        {"epoch": 3, "seconds": 30.0, "val/AP": 0.03, "val/PCK": 0.45},
        {"epoch": 4, "seconds": 40.0, "val/AP": 0.02, "val/PCK": 0.50},
    ]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert run_result(tmp_path) == {
        "AP": 0.03, "PCK": 0.45, "best_epoch": 3, "epochs": 4, "seconds": 40.0,
        "curve": [{"epoch": 1, "AP": 0.01, "PCK": 0.40}, {"epoch": 3, "AP": 0.03, "PCK": 0.45},
                  {"epoch": 4, "AP": 0.02, "PCK": 0.50}],
    }  # fmt: skip
    (tmp_path / "metrics.jsonl").write_text(json.dumps(rows[1]) + "\n")
    with pytest.raises(PkmodelError, match="metrics.jsonl holds no validation"):
        run_result(tmp_path)
    with pytest.raises(PkmodelError, match="could not be read"):
        run_result(tmp_path / "missing")


def test_each_of_the_two_runs_gets_half_of_the_cores():
    assert [side_by_side_threads(c) for c in (1, 2, 3, 16)] == [1, 1, 1, 8]


@pytest.mark.slow
def test_both_networks_train_on_the_demos_data_with_their_own_settings(tmp_path):
    cfg = load_config(None, [], env={})
    folder = tmp_path / "em"
    e = measure_equal_minutes(cfg, folder, minutes=0.05, seeds=2, quick=True)
    assert e["seeds"] == 2 and len(e["runs"]) == 2 and e["against"] == list(EARLIER_DEMO_NETWORK)
    assert cfg.model.stem == "fused-s8" and cfg.model.input_size == 192  # the caller's config
    for seed, run in enumerate(e["runs"]):
        for side in ("default", "against"):
            r = run[side]
            assert 0 <= r["AP"] <= 1 and 0 < r["PCK"] <= 1 and r["epochs"] >= 1, (seed, side, r)
            saved = torch.load(folder / f"{side}-seed{seed}" / "last.pt", weights_only=False)
            c = saved["config"]
            assert c["train"]["seed"] == seed and c["train"]["minutes"] == 0.05
            # the demo's --quick sizes, the same data for both
            assert c["model"]["input_size"] == 64 and c["prepare"]["crop_size"] == 96
            assert c["data"]["prepared_dir"] == str(folder / "prepared")
            want = ("mobilenetv2", "separate", 48, 1e-2) if side == "against" else (
                "fused-s8", "shared", 24, c["train"]["lr"])  # fmt: skip
            got = (c["model"]["stem"], c["model"]["heads"], c["model"]["head_channels"],
                   c["train"]["lr"])  # fmt: skip
            assert got == want, (side, got)
    for side in ("default", "against"):
        pcks = [r[side]["PCK"] for r in e["runs"]]
        assert e["medians"][side]["PCK"] == pytest.approx(sum(pcks) / 2)
    table = "\n".join(equal_minutes_table(e))
    assert "| median |" in table and "model.stem=mobilenetv2" in table
    # both runs validate their first epoch: every pair has an epoch in common
    assert all(pair["epoch"] >= 1 for pair in e["equal_epochs"]["runs"])
    assert "at equal epochs" in table


def test_bad_equal_minutes_options_are_one_sentence(tmp_path):
    from typer.testing import CliRunner

    from pkmodel.cli import app

    out = str(tmp_path / "b.json")
    full = tmp_path / "earlier"
    full.mkdir()
    (full / "notes.txt").write_text("mine\n")
    runner = CliRunner()
    for args, words in (
        (["--equal-minutes", "-1"], "--equal-minutes must be >= 0 (0 = off), got -1"),
        (["--equal-minutes", "1", "--seeds", "0"], "--seeds must be at least 1, got 0"),
        (["--against", "train.lr=1e-3"], "--against sets the other network of --equal-minutes"),
        (["--quick", "--equal-minutes", "0.01", "--against", "model.stem=vgg"], "model.stem"),
        (["--keep", str(tmp_path / "k")], "--keep keeps the runs of --equal-minutes"),
        (
            ["--quick", "--equal-minutes", "0.01", "--keep", str(full)],
            f"--keep {full}: the folder holds 1 entry; give a new or empty folder",
        ),
        (
            ["--quick", "--equal-minutes", "0.01", "--keep", str(full / "notes.txt")],
            "is a file, not a folder",
        ),
    ):
        result = runner.invoke(app, ["benchmark", "--out", out, "--quiet", *args])
        assert result.exit_code == 2, (args, result.output)
        assert words in result.output and "Traceback" not in result.output, result.output
    assert not (tmp_path / "b.json").exists()
    assert sorted(p.name for p in full.iterdir()) == ["notes.txt"]  # refused before any work
    assert (full / "notes.txt").read_text() == "mine\n" and not (tmp_path / "k").exists()


@pytest.mark.slow
def test_keep_leaves_the_runs_their_config_and_data_in_a_new_folder(tmp_path):
    from pkmodel.tools.benchmark.run import run_benchmark

    cfg = load_config(None, [], env={})
    keep = tmp_path / "kept"
    plan = {"minutes": 0.03, "seeds": 1, "against": EARLIER_DEMO_NETWORK, "keep": keep}
    result = run_benchmark(cfg, quick=True, progress=False, equal_minutes=plan)
    e = result["equal_minutes"]
    assert e["kept_in"] == str(keep.absolute()) and e["seeds"] == 1
    for side in ("default", "against"):
        run = keep / f"{side}-seed0"
        saved = torch.load(run / "last.pt", weights_only=False)
        assert saved["config"]["data"]["prepared_dir"] == str(keep / "prepared")
        rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        assert rows[-1]["epoch"] == e["runs"][0][side]["epochs"]
        assert (keep / f"{side}-seed0.log").is_file()
    assert (keep / "config.toml").is_file() and (keep / "prepared" / "train.json").is_file()
