"""Core ML and ONNX export: specs, metadata, weight precision, compression ratios, ONNX vs
PyTorch on real images, atomic writes and user errors."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from pkmodel.cli import app
from pkmodel.common.errors import PkmodelError
from pkmodel.common.skeleton import JOINT_NAMES, LIMBS
from pkmodel.config import Config, load_config
from pkmodel.export import common as export
from pkmodel.model.checkpoint import model_from_checkpoint, save_checkpoint
from pkmodel.model.network import OUTPUT_NAMES, build_model
from tests.conftest import shared_data

SIZE = 128  # small and fast; every shape below is derived from it
GRID = SIZE // 4
runner = CliRunner()


def small_config(**export_keys) -> Config:
    """Defaults plus a small network, a non-default decoder threshold (to see it travel into
    the metadata) and the given export.* values."""
    sets = {"model.input_size": SIZE, "model.width_mult": 0.35, "decoder.score_threshold": 0.3}
    sets.update({f"export.{k}": v for k, v in export_keys.items()})
    return load_config(None, [], sets, env={})


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """A small checkpoint whose EMA weights differ from its model weights."""
    torch.manual_seed(0)
    cfg = small_config()
    model = build_model(cfg.model, pretrained=False)
    ema = {k: v + 0.01 * torch.randn_like(v) if v.is_floating_point() else v
           for k, v in model.state_dict().items()}  # fmt: skip
    path = tmp_path_factory.mktemp("ckpt") / "small.pt"
    save_checkpoint(path, {"model": model.state_dict(), "ema": ema, "config": cfg.to_dict()})
    return path


@pytest.fixture(scope="module")
def exports(checkpoint, tmp_path_factory) -> dict[str, Path]:
    """The FP16 Core ML model and the fixed-batch ONNX model, exported once."""
    out = tmp_path_factory.mktemp("exports")
    return {
        "fp16": export.export_coreml(checkpoint, out / "fp16.mlpackage", small_config()).path,
        "onnx": export.export_onnx(checkpoint, out / "m.onnx", small_config()).path,
    }


def load_spec(path: Path):
    ct = export.import_coremltools()
    return ct.utils.load_spec(str(path))


# --- Core ML ----------------------------------------------------------------------------


def test_coreml_spec_has_image_input_named_outputs_and_fp16_weights(exports):
    from coremltools.proto import FeatureTypes_pb2

    spec = load_spec(exports["fp16"])
    assert spec.WhichOneof("Type") == "mlProgram"
    assert spec.specificationVersion == 8  # iOS 17 (export.minimum_ios default)
    (image,) = spec.description.input
    assert image.name == "image" and image.type.WhichOneof("Type") == "imageType"
    it = image.type.imageType
    assert (it.width, it.height) == (SIZE, SIZE)
    assert it.colorSpace == FeatureTypes_pb2.ImageFeatureType.RGB
    scale, bias = export.coreml_preprocessing(spec)
    assert scale == pytest.approx(1 / 127.5) and bias == pytest.approx([-1.0, -1.0, -1.0])

    k = len(JOINT_NAMES)
    want = {"heatmaps": [1, k, GRID, GRID], "centers": [1, 1, GRID, GRID],
            "regs": [1, 2 * k, GRID, GRID], "offsets": [1, 2 * k, GRID, GRID]}  # fmt: skip
    outputs = {o.name: o.type.multiArrayType for o in spec.description.output}
    assert list(outputs) == list(OUTPUT_NAMES)
    for name, array in outputs.items():
        assert list(array.shape) == want[name]
        assert array.dataType == FeatureTypes_pb2.ArrayFeatureType.FLOAT32

    weights = export.coreml_weight_bytes(spec)
    assert set(weights) == {"FLOAT16"}


def test_coreml_weights_are_the_folded_network_in_fp16(exports, checkpoint):
    model, _, _ = model_from_checkpoint(checkpoint)
    # Stored values: conv weights and (folded BN / conv) biases; BN statistics disappear.
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    expected = sum(c.weight.numel() + c.out_channels for c in convs)
    stored = export.coreml_weight_bytes(load_spec(exports["fp16"]))["FLOAT16"]
    assert stored == pytest.approx(2 * expected, rel=0.01)


def test_coreml_metadata_as_documented(exports):
    meta = load_spec(exports["fp16"]).description.metadata
    assert meta.author == "PoseKit" and meta.license == "Apache-2.0"
    assert meta.versionString == "0.1.0"
    assert "pose" in meta.shortDescription and f"{SIZE}x{SIZE}" in meta.shortDescription
    user = dict(meta.userDefined)
    assert user["input_size"] == str(SIZE) and user["stride"] == "4"
    assert user["grid_size"] == str(GRID) and user["num_joints"] == "17"
    assert json.loads(user["joint_names"]) == list(JOINT_NAMES)
    assert [tuple(p) for p in json.loads(user["skeleton"])] == list(LIMBS)
    assert float(user["decoder_score_threshold"]) == 0.3  # from the config, not the default
    assert float(user["decoder_center_prior_offset"]) == 1.8
    assert user["input_color_layout"] == "RGB" and "127.5" in user["input_normalization"]
    assert user["weights"] == "ema" and user["source_checkpoint"] == "small.pt"
    assert user["precision"] == "fp16" and user["compression"] == "none"


@pytest.mark.slow
def test_coreml_fp32_option_doubles_the_weights(exports, checkpoint, tmp_path):
    fp32 = export.export_coreml(checkpoint, tmp_path / "fp32.mlpackage", small_config(precision="fp32"))  # fmt: skip
    w32 = export.coreml_weight_bytes(load_spec(fp32.path))
    w16 = export.coreml_weight_bytes(load_spec(exports["fp16"]))
    assert set(w32) == {"FLOAT32"}
    assert w32["FLOAT32"] == 2 * w16["FLOAT16"]
    ratio = fp32.size_bytes / export.path_size(exports["fp16"])
    assert 1.8 < ratio < 2.05  # the bundle: weights plus a small program and manifest


@pytest.mark.slow
@pytest.mark.parametrize(
    ("method", "stored", "low", "high"),
    [("int8", "INT8", 0.50, 0.53), ("palette", "UINT8", 6 / 16, 6 / 16 + 0.015)],
)
def test_coreml_compression_shrinks_weights_by_the_expected_ratio(
    exports, checkpoint, tmp_path, method, stored, low, high
):
    report = export.export_coreml(
        checkpoint, tmp_path / f"{method}.mlpackage", small_config(compress=method)
    )
    spec16, spec = load_spec(exports["fp16"]), load_spec(report.path)
    weights = export.coreml_weight_bytes(spec)
    assert stored in weights
    # int8: 1 byte per FP16 weight (+ a scale and zero point per channel); palette: 6-bit
    # packed indices per FP16 weight (+ a 64-entry table per tensor).
    assert low <= export.coreml_compression_ratio(spec) <= high
    assert export.coreml_compression_ratio(spec16) is None
    # Whole weight payload: the small tensors stay FP16, so somewhat above the pure ratio.
    total16 = export.coreml_weight_bytes(spec16)["FLOAT16"]
    assert sum(weights.values()) / total16 < high + 0.15
    # The bundle on disk shrinks by (at least nearly) the payload saved.
    saved = export.path_size(exports["fp16"]) - report.size_bytes
    assert saved > 0.95 * (total16 - sum(weights.values()))
    assert dict(spec.description.metadata.userDefined)["compression"] == (
        "int8" if method == "int8" else "palette-6bit"
    )


@pytest.mark.slow
def test_bgr_model_reorders_channels_and_says_bgr(checkpoint, tmp_path):
    from coremltools.proto import FeatureTypes_pb2

    report = export.export_coreml(checkpoint, tmp_path / "bgr.mlpackage", small_config(color_layout="BGR"))  # fmt: skip
    spec = load_spec(report.path)
    it = spec.description.input[0].type.imageType
    assert it.colorSpace == FeatureTypes_pb2.ImageFeatureType.BGR
    assert dict(spec.description.metadata.userDefined)["input_color_layout"] == "BGR"
    # What was converted: the BGR wrapper gives the RGB network's outputs for BGR pixels.
    model, _, _ = model_from_checkpoint(checkpoint)
    rgb = torch.from_numpy(export.normalise_pixels(export.sample_input(SIZE, seed=4)))
    with torch.inference_mode():
        want, got = model(rgb), export.BgrToRgb(model)(rgb[:, [2, 1, 0]])
    assert max(float((a - b).abs().max()) for a, b in zip(want, got, strict=True)) < 1e-6


def test_coreml_prediction_is_skipped_off_macos_with_a_reason(checkpoint, tmp_path):
    diffs, reason = export.compare_coreml_with_torch(
        tmp_path / "x.mlpackage", None, SIZE, 4, Config().decoder
    )
    if os.uname().sysname == "Darwin":  # pragma: no cover - Linux CI
        pytest.skip("runs the comparison on macOS instead")
    assert diffs == {} and "needs macOS" in reason


# --- ONNX ---------------------------------------------------------------------------------


def real_images(size: int) -> np.ndarray:
    """Four COCO images with people, letterboxed to the input size (RGB uint8, N x S x S x 3)."""
    import cv2

    from pkmodel.common.geometry import letterbox_image

    folder = shared_data("coco_mini", "train2017")
    names = ["000000227000.jpg", "000000129648.jpg", "000000211325.jpg", "000000370162.jpg"]
    out = []
    for name in names:
        bgr = cv2.imread(str(folder / name))
        out.append(letterbox_image(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), size)[0])
    return np.stack(out)


def test_onnx_matches_pytorch_and_decodes_the_same_keypoints_on_real_images(exports, checkpoint):
    from pkmodel.model.decode import decode_batch

    model, _, _ = model_from_checkpoint(checkpoint)  # EMA weights, as exported
    session = export.onnx_session(exports["onnx"])
    x = export.normalise_pixels(real_images(SIZE))
    onnx_out = [session.run(None, {"image": x[i : i + 1]}) for i in range(len(x))]  # batch 1
    onnx_out = [np.concatenate([o[j] for o in onnx_out]) for j in range(4)]
    with torch.inference_mode():
        torch_out = [t.numpy() for t in model(torch.from_numpy(x))]
    for name, a, b in zip(OUTPUT_NAMES, onnx_out, torch_out, strict=True):
        assert np.abs(a - b).max() < 1e-4, name
    da = decode_batch(*onnx_out, stride=4, score_threshold=0.3, prior_offset=1.8)
    db = decode_batch(*torch_out, stride=4, score_threshold=0.3, prior_offset=1.8)
    assert np.abs(da.keypoints - db.keypoints).max() < 0.01
    assert np.array_equal(da.found, db.found)
    # The EMA weights were exported, not the raw model weights.
    raw, _, _ = model_from_checkpoint(checkpoint, prefer_ema=False)
    with torch.inference_mode():
        raw_heat = raw(torch.from_numpy(x[:1]))[0].numpy()
    assert np.abs(raw_heat - onnx_out[0][:1]).max() > 1e-3


def test_onnx_file_is_checked_named_and_carries_metadata(exports):
    import onnx

    proto = onnx.load(str(exports["onnx"]))
    onnx.checker.check_model(proto, full_check=True)
    assert [o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")] == [18]
    assert [i.name for i in proto.graph.input] == ["image"]
    assert [o.name for o in proto.graph.output] == list(OUTPUT_NAMES)
    dims = [d.dim_value for d in proto.graph.output[2].type.tensor_type.shape.dim]
    assert dims == [1, 34, GRID, GRID]
    meta = {p.key: p.value for p in proto.metadata_props}
    assert meta["stride"] == "4" and json.loads(meta["joint_names"]) == list(JOINT_NAMES)
    assert not list(Path(exports["onnx"]).parent.glob("*.data"))  # one self-contained file


@pytest.mark.slow
def test_onnx_dynamic_batch_runs_any_batch(checkpoint, tmp_path):
    report = export.export_onnx(checkpoint, tmp_path / "dyn.onnx", small_config(dynamic_batch=True))
    assert max(report.max_abs_diff.values()) < 1e-4
    x = export.normalise_pixels(export.sample_input(SIZE, batch=3, seed=1))
    heat = export.onnx_session(report.path).run(["heatmaps"], {"image": x})[0]
    assert heat.shape == (3, 17, GRID, GRID)


# --- CLI, overwrite, atomicity, errors ----------------------------------------------------


def test_cli_export_coreml_prints_checks_and_refuses_to_overwrite(checkpoint, tmp_path):
    out = tmp_path / "m.mlpackage"
    args = ["export-coreml", "--weights", str(checkpoint), "--out", str(out),
            "--set", "decoder.score_threshold=0.25"]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "ok  input 'image': 128x128 RGB image" in result.output
    assert "skipped: running the Core ML model needs macOS" in result.output
    assert f"wrote Core ML model {out}" in result.output
    before = sorted(p.stat().st_mtime_ns for p in out.rglob("*"))
    again = runner.invoke(app, args)
    assert again.exit_code == 2 and "already exists; pass --force" in again.output
    assert sorted(p.stat().st_mtime_ns for p in out.rglob("*")) == before


def test_cli_export_onnx_default_out_and_force(checkpoint, exports, tmp_path, monkeypatch):
    import shutil

    monkeypatch.chdir(tmp_path)
    args = ["export-onnx", "-w", str(checkpoint), "--set", "export.out_dir=exp"]
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    out = tmp_path / "exp" / "model.onnx"
    assert out.is_file() and "onnxruntime vs PyTorch max abs diff regs" in first.output
    assert "onnxruntime vs PyTorch decoded keypoints: max 0.000 px" in first.output
    assert runner.invoke(app, args).exit_code == 2
    out.write_bytes(b"old")
    # The second export is the same file: copy it rather than export again (time).
    monkeypatch.setattr(
        export, "write_onnx", lambda m, path, *a: shutil.copy(exports["onnx"], path)
    )
    forced = runner.invoke(app, [*args, "--force"])
    assert forced.exit_code == 0, forced.output
    assert out.stat().st_size > 100_000
    assert sorted(p.name for p in out.parent.iterdir()) == ["model.onnx"]  # no temp leftovers


@pytest.mark.parametrize("command", ["export-coreml", "export-onnx"])
def test_bad_weights_file_is_one_clear_error(command, tmp_path):
    bad, text = tmp_path / "bad.pt", tmp_path / "text.pt"
    bad.write_bytes(b"not a checkpoint")
    text.write_text("junk\n")  # torch.load raises KeyError on this one
    suffix = ".mlpackage" if command == "export-coreml" else ".onnx"
    cases = [(bad, "is not a pkmodel checkpoint"), (text, "is not a pkmodel checkpoint"),
             (tmp_path / "no.pt", "does not exist")]  # fmt: skip
    for weights, message in cases:
        result = runner.invoke(
            app, [command, "-w", str(weights), "-o", str(tmp_path / f"m{suffix}")]
        )
        assert result.exit_code == 2
        assert result.output.startswith("error: ") and message in result.output
        assert "Traceback" not in result.output
        assert len(result.output.strip().splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.pt", "text.pt"]


@pytest.mark.parametrize(
    ("keys", "out", "message"),
    [
        ({"minimum_ios": 14}, "m.mlpackage", "export.minimum_ios = 14 is not supported"),
        ({"compress": "palette", "palette_bits": 5}, "m.mlpackage", "export.palette_bits = 5"),
        ({"compress": "int8", "minimum_ios": 15}, "m.mlpackage", "needs export.minimum_ios >= 16"),
        ({}, "m.mlmodel", "must end with .mlpackage"),
        ({"onnx_opset": 11}, "m.onnx", "export.onnx_opset = 11 is not supported"),
        ({}, "m.onx", "must end with .onnx"),
    ],
)
def test_bad_export_settings_are_refused_before_any_work(checkpoint, tmp_path, keys, out, message):
    run = export.export_onnx if out.endswith(("onnx", ".onx")) else export.export_coreml
    with pytest.raises(PkmodelError, match=message.replace(".", r"\.")):
        run(checkpoint, tmp_path / out, small_config(**keys))
    assert list(tmp_path.iterdir()) == []


def test_failed_coreml_export_leaves_the_old_bundle_and_no_temp(checkpoint, exports, tmp_path, monkeypatch):  # fmt: skip
    out = tmp_path / "m.mlpackage"
    (out / "Data").mkdir(parents=True)
    (out / "Data" / "old.txt").write_text("previous export")

    def save_then_crash(self, path):  # a half-written bundle, then a failure
        Path(path, "Data").mkdir(parents=True)
        Path(path, "Data", "partial.bin").write_bytes(b"x" * 10)
        raise RuntimeError("disk full")

    ct = export.import_coremltools()
    # Conversion itself is tested elsewhere: reuse the converted model to save time.
    converted = ct.models.MLModel(str(exports["fp16"]), skip_model_load=True)
    monkeypatch.setattr(export, "convert_coreml", lambda *a, **k: converted)
    monkeypatch.setattr(ct.models.MLModel, "save", save_then_crash)
    with pytest.raises(RuntimeError, match="disk full"):
        export.export_coreml(checkpoint, out, small_config(), force=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.mlpackage"]
    assert [p.name for p in out.rglob("*") if p.is_file()] == ["old.txt"]

    def convert_fails(*args, **kwargs):
        raise RuntimeError("unsupported op")

    monkeypatch.setattr(export, "convert_coreml", convert_fails)
    with pytest.raises(RuntimeError, match="unsupported op"):
        export.export_coreml(checkpoint, tmp_path / "new.mlpackage", small_config())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.mlpackage"]


def test_onnx_that_disagrees_with_pytorch_is_not_written(
    checkpoint, exports, tmp_path, monkeypatch
):
    import shutil

    monkeypatch.setattr(
        export, "write_onnx", lambda m, path, *a: shutil.copy(exports["onnx"], path)
    )
    monkeypatch.setattr(export, "compare_onnx_with_torch",
                        lambda *a: {"keypoints_px": 0.0, **{n: 0.0 if n != "regs" else 0.5 for n in OUTPUT_NAMES}})  # fmt: skip
    with pytest.raises(PkmodelError, match="'regs' differs from PyTorch by 5.00e-01"):
        export.export_onnx(checkpoint, tmp_path / "m.onnx", small_config())
    assert list(tmp_path.iterdir()) == []


def test_latency_benchmark_reports_both_runtimes(checkpoint, exports):
    model, cfg, _ = model_from_checkpoint(checkpoint)
    report = export.benchmark_cpu_latency(
        model, SIZE, 0.35, runs=3, warmup=1, onnx_path=exports["onnx"]
    )
    assert report.torch_ms > 0 and report.onnxruntime_ms > 0
    assert "onnxruntime" in report.summary() and report.runs == 3
