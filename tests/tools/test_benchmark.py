"""pkmodel benchmark: a --quick run writes every figure, positive, with the machine described."""

from __future__ import annotations

import json

import pytest

from pkmodel.common.errors import PkmodelError
from pkmodel.config import load_config
from pkmodel.tools.benchmark.run import FIGURES, apply_quick, format_table, quick_out_path
from tests.conftest import run_cli


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "sub" / "bench.json"
    text = run_cli(["benchmark", "--quick", "--quiet", "--compare", "--out", out, "--repeats", 2])
    return json.loads(out.read_text()), text, out


def test_quick_run_has_every_figure_positive(quick_run):
    result, _, _ = quick_run
    assert result["schema"] == "pkmodel.benchmark" and result["quick"] is True
    assert set(result["figures"]) == {f"{s}.{k}" for s, k, _, _ in FIGURES}
    for name, value in result["figures"].items():
        assert isinstance(value, (int, float)) and value > 0, (name, value)
        section, key = name.split(".")
        assert result[section][key] == value
    assert 0 < result["figures"]["training.data_wait_share"] < 1
    # The quick sizes were applied, and the explicit --repeats won over --quick's own value.
    assert result["model"]["input_size"] == 64 and result["model"]["width_mult"] == 0.35
    assert result["plan"]["repeats"] == 2 and result["plan"]["batch_size"] == 4
    # Parameters and MACs are the model module's own figures for that network.
    from pkmodel.model.network import model_summary

    cfg = load_config(None, [], {"model.input_size": 64, "model.width_mult": 0.35}, env={})
    summary = model_summary(cfg.model)
    assert result["model"]["parameters"] == summary["parameters"]
    assert result["model"]["macs"] == summary["macs"]
    # Both runtimes ran the same network; grid and joints follow the config.
    assert result["inference"]["onnxruntime_max_abs_diff"] < 1e-3
    assert result["decoder"]["grid"] == 16 and result["decoder"]["joints"] == 17
    # The batched decoder is cheaper per frame than one frame at a time.
    assert result["decoder"]["batch_us"] < result["decoder"]["single_us"]
    assert result["training"]["steps"] == 1 and result["training"]["batch_size"] == 4


def test_compare_times_both_networks_and_gives_ratios(quick_run):
    """--compare: pkmodel's configured network against PoseKit's at the same input size; the
    ratios are pkmodel's speed over PoseKit's, computed from the two medians."""
    result, text, _ = quick_run
    c = result["compare"]
    ours, seed, ratio = c["pkmodel"], c["posekit"], c["ratios"]
    assert ours["arch"] == "pkmodel" and ours["width_mult"] == 0.35
    assert seed["arch"] == "posekit" and seed["width_mult"] == 1.0
    assert ours["input_size"] == seed["input_size"] == 64 and c["batch_size"] == 4
    assert seed["macs"] == 228_635_136 // 9  # PoseKit's 228.6 M at 192, (64 / 192)^2 of it
    assert ours["macs"] == result["model"]["macs"] and ours["parameters"] == result["model"]["parameters"]  # fmt: skip
    for key in ("train_images_per_s", "torch_latency_ms", "onnxruntime_latency_ms"):
        assert ours[key] > 0 and seed[key] > 0, key
    assert ratio["train_images_per_s"] == pytest.approx(ours["train_images_per_s"] / seed["train_images_per_s"], rel=1e-3)  # fmt: skip
    assert ratio["onnxruntime_latency"] == pytest.approx(seed["onnxruntime_latency_ms"] / ours["onnxruntime_latency_ms"], rel=1e-3)  # fmt: skip
    assert ratio["macs"] == pytest.approx(seed["macs"] / ours["macs"], rel=1e-3)
    assert "| multiply-adds (MACs) | 8.0 M | 25.4 M | 3.19 |" in text
    assert "--compare: pkmodel (width 0.35) against PoseKit's network, input 64" in text


def test_quick_run_describes_the_machine(quick_run):
    machine = quick_run[0]["machine"]
    for key in ("cpu", "os", "python", "torch", "onnxruntime", "numpy", "coremltools"):
        assert isinstance(machine[key], str) and machine[key], key
    assert machine["logical_cores"] >= machine["usable_cores"] >= 1
    assert machine["torch_threads"] >= 1
    assert len(machine["load_average_before"]) == 3


def test_quick_run_prints_the_table(quick_run):
    result, text, out = quick_run
    assert f"wrote {out}" in text
    assert format_table(result) in text
    assert "| onnxruntime throughput, batch 4 |" in text
    assert not list(out.parent.glob(".*.tmp"))  # written atomically: no temp file left


def test_quick_keeps_explicit_values_and_its_own_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = load_config(None, ["model.input_size=96"], {"benchmark.repeats": 3}, env={})
    apply_quick(cfg)
    assert cfg.model.input_size == 96 and cfg.benchmark.repeats == 3  # explicit: kept
    assert cfg.model.width_mult == 0.35 and cfg.benchmark.latency_runs == 3  # quick
    assert quick_out_path(cfg.benchmark.out).name == "benchmark-quick.json"


def test_bad_values_are_one_sentence(tmp_path):
    from typer.testing import CliRunner

    from pkmodel.cli import app

    runner = CliRunner()
    result = runner.invoke(app, ["benchmark", "--repeats", "0", "--out", str(tmp_path / "b.json")])
    assert result.exit_code == 2 and "benchmark.repeats = 0 must be >= 1" in result.output
    result = runner.invoke(app, ["benchmark", "--out", str(tmp_path)])
    assert result.exit_code == 2 and "is a folder" in result.output
    result = runner.invoke(app, ["benchmark", "--quick", "--input-size", "100",
                                 "--out", str(tmp_path / "b.json")])  # fmt: skip
    assert result.exit_code == 2 and "model.input_size" in result.output
    assert not (tmp_path / "b.json").exists()


def test_plan_check_names_the_key():
    cfg = load_config(None, ["benchmark.train_steps=0"], env={})
    with pytest.raises(PkmodelError, match="benchmark.train_steps = 0 must be >= 1"):
        cfg.benchmark.check()


def test_latency_benchmark_reports_both_runtimes():
    from pkmodel.config import ModelConfig
    from pkmodel.model.network import build_model
    from pkmodel.tools.benchmark.stages import benchmark_cpu_latency

    model = build_model(ModelConfig(input_size=64, width_mult=0.35), pretrained=False)
    report = benchmark_cpu_latency(model, 64, 0.35, runs=3, warmup=1)
    assert report.torch_ms > 0 and report.onnxruntime_ms > 0
    assert "onnxruntime" in report.summary() and report.runs == 3


def test_fetch_benchmark_downloads_every_file(tmp_path):
    from pkmodel.tools.benchmark.stages import benchmark_fetch

    seconds = benchmark_fetch(tmp_path, files=6, size=3000, latency_s=0.0, workers=(1, 3))
    assert sorted(seconds) == [1, 3] and all(s > 0 for s in seconds.values())
    for n in (1, 3):
        got = sorted((tmp_path / f"out_{n}").glob("*.jpg"))
        assert [p.name for p in got] == [f"{i}.jpg" for i in range(6)]
        assert all(p.stat().st_size == 3000 for p in got)


def test_interleaved_timing_alternates_call_by_call_and_takes_medians():
    """--compare's latencies: every round calls each function once, the order reversed on odd
    rounds; each figure is the median of its own calls' times (a fake clock: each call of "a"
    takes 2 ms, of "b" 3 ms, except a slow third round where both take 40 ms more)."""
    from pkmodel.tools.benchmark.timing import interleaved_ms

    now, calls = [0.0], []

    def fn(name: str, ms: float):
        def call() -> None:
            slow = 0.040 if len(calls) in range(8, 12) else 0.0  # round 2 (after 2 + 2 warm-ups)
            calls.append(name)
            now[0] += ms / 1e3 + slow

        return call

    got = interleaved_ms({"a": fn("a", 2.0), "b": fn("b", 3.0)}, 5, warmup=2, clock=lambda: now[0])
    assert calls == ["a", "a", "b", "b"] + ["a", "b", "b", "a"] * 2 + ["a", "b"]
    assert got["a"] == pytest.approx(2.0) and got["b"] == pytest.approx(3.0)


def test_sessions_timed_in_turns_do_not_spin(tmp_path):
    """Two onnxruntime sessions called in turns: with spinning off their threads sleep between
    runs; the default session keeps onnxruntime's own setting."""
    from pkmodel.export.onnx import onnx_session, write_onnx
    from pkmodel.model.network import build_model

    cfg = load_config(None, [], {"model.input_size": 64, "model.width_mult": 0.35}, env={})
    path = tmp_path / "m.onnx"
    write_onnx(build_model(cfg.model, pretrained=False).eval(), path, 64, cfg.export.onnx_opset)
    quiet = onnx_session(path, threads=2, spinning=False).get_session_options()
    default = onnx_session(path, threads=2).get_session_options()
    key = "session.intra_op.allow_spinning"
    assert quiet.get_session_config_entry(key) == "0"
    with pytest.raises(RuntimeError, match="does not have configuration"):
        default.get_session_config_entry(key)  # unset: onnxruntime's default (spinning)


def test_out_that_is_another_kind_of_file_is_refused(tmp_path):
    from pkmodel.tools.benchmark.run import SCHEMA, check_out_path

    labels = tmp_path / "val.json"
    labels.write_text('{"schema": "pkmodel.prepared", "samples": []}')
    with pytest.raises(PkmodelError, match="not a benchmark result"):
        check_out_path(labels)
    (tmp_path / "b.json").write_text(json.dumps({"schema": SCHEMA}))
    assert check_out_path(tmp_path / "b.json") == tmp_path / "b.json"  # a rerun replaces it
