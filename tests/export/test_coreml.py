"""Core ML export: the spec, metadata, weight precision, compression ratios, colour order, atomic writes."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from pkmodel.cli import app
from pkmodel.common.skeleton import JOINT_NAMES, LIMBS
from pkmodel.config import Config
from pkmodel.export import common, coreml
from pkmodel.model.checkpoint import model_from_checkpoint
from pkmodel.model.outputs import OUTPUT_NAMES
from tests.export.conftest import GRID, SIZE, load_spec, small_config

runner = CliRunner()


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
    scale, bias = coreml.coreml_preprocessing(spec)
    assert scale == pytest.approx(1 / 127.5) and bias == pytest.approx([-1.0, -1.0, -1.0])

    k = len(JOINT_NAMES)
    want = {"heatmaps": [1, k, GRID, GRID], "centers": [1, 1, GRID, GRID],
            "regs": [1, 2 * k, GRID, GRID], "offsets": [1, 2 * k, GRID, GRID]}  # fmt: skip
    outputs = {o.name: o.type.multiArrayType for o in spec.description.output}
    assert list(outputs) == list(OUTPUT_NAMES)
    for name, array in outputs.items():
        assert list(array.shape) == want[name]
        assert array.dataType == FeatureTypes_pb2.ArrayFeatureType.FLOAT32

    weights = coreml.coreml_weight_bytes(spec)
    assert set(weights) == {"FLOAT16"}


def test_coreml_weights_are_the_folded_network_in_fp16(exports, checkpoint):
    model, _, _ = model_from_checkpoint(checkpoint)
    # Stored values: conv weights and (folded BN / conv) biases; BN statistics disappear.
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    expected = sum(c.weight.numel() + c.out_channels for c in convs)
    stored = coreml.coreml_weight_bytes(load_spec(exports["fp16"]))["FLOAT16"]
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
    fp32 = coreml.export_coreml(checkpoint, tmp_path / "fp32.mlpackage", small_config(precision="fp32"))  # fmt: skip
    w32 = coreml.coreml_weight_bytes(load_spec(fp32.path))
    w16 = coreml.coreml_weight_bytes(load_spec(exports["fp16"]))
    assert set(w32) == {"FLOAT32"}
    assert w32["FLOAT32"] == 2 * w16["FLOAT16"]
    ratio = fp32.size_bytes / common.path_size(exports["fp16"])
    assert 1.8 < ratio < 2.05  # the bundle: weights plus a small program and manifest


@pytest.mark.slow
@pytest.mark.parametrize(
    ("method", "stored", "low", "high"),
    [("int8", "INT8", 0.50, 0.53), ("palette", "UINT8", 6 / 16, 6 / 16 + 0.015)],
)
def test_coreml_compression_shrinks_weights_by_the_expected_ratio(
    exports, checkpoint, tmp_path, method, stored, low, high
):
    report = coreml.export_coreml(
        checkpoint, tmp_path / f"{method}.mlpackage", small_config(compress=method)
    )
    spec16, spec = load_spec(exports["fp16"]), load_spec(report.path)
    weights = coreml.coreml_weight_bytes(spec)
    assert stored in weights
    # int8: 1 byte per FP16 weight (+ a scale and zero point per channel); palette: 6-bit
    # packed indices per FP16 weight (+ a 64-entry table per tensor).
    assert low <= coreml.coreml_compression_ratio(spec) <= high
    assert coreml.coreml_compression_ratio(spec16) is None
    # Whole weight payload: the small tensors stay FP16, so somewhat above the pure ratio.
    total16 = coreml.coreml_weight_bytes(spec16)["FLOAT16"]
    assert sum(weights.values()) / total16 < high + 0.15
    # The bundle on disk shrinks by (at least nearly) the payload saved.
    saved = common.path_size(exports["fp16"]) - report.size_bytes
    assert saved > 0.95 * (total16 - sum(weights.values()))
    assert dict(spec.description.metadata.userDefined)["compression"] == (
        "int8" if method == "int8" else "palette-6bit"
    )


@pytest.mark.slow
def test_bgr_model_reorders_channels_and_says_bgr(checkpoint, tmp_path):
    from coremltools.proto import FeatureTypes_pb2

    report = coreml.export_coreml(checkpoint, tmp_path / "bgr.mlpackage", small_config(color_layout="BGR"))  # fmt: skip
    spec = load_spec(report.path)
    it = spec.description.input[0].type.imageType
    assert it.colorSpace == FeatureTypes_pb2.ImageFeatureType.BGR
    assert dict(spec.description.metadata.userDefined)["input_color_layout"] == "BGR"
    # What was converted: the BGR wrapper gives the RGB network's outputs for BGR pixels.
    model, _, _ = model_from_checkpoint(checkpoint)
    rgb = torch.from_numpy(common.normalise_pixels(common.sample_input(SIZE, seed=4)))
    with torch.inference_mode():
        want, got = model(rgb), coreml.BgrToRgb(model)(rgb[:, [2, 1, 0]])
    assert max(float((a - b).abs().max()) for a, b in zip(want, got, strict=True)) < 1e-6


def test_coreml_prediction_is_skipped_off_macos_with_a_reason(checkpoint, tmp_path):
    diffs, reason = coreml.compare_coreml_with_torch(
        tmp_path / "x.mlpackage", None, SIZE, 4, Config().decoder
    )
    if os.uname().sysname == "Darwin":  # pragma: no cover - Linux CI
        pytest.skip("runs the comparison on macOS instead")
    assert diffs == {} and "needs macOS" in reason


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


def test_failed_coreml_export_leaves_the_old_bundle_and_no_temp(checkpoint, exports, tmp_path, monkeypatch):  # fmt: skip
    out = tmp_path / "m.mlpackage"
    (out / "Data").mkdir(parents=True)
    (out / "Data" / "old.txt").write_text("previous export")

    def save_then_crash(self, path):  # a half-written bundle, then a failure
        Path(path, "Data").mkdir(parents=True)
        Path(path, "Data", "partial.bin").write_bytes(b"x" * 10)
        raise RuntimeError("disk full")

    ct = coreml.import_coremltools()
    # Conversion itself is tested elsewhere: reuse the converted model to save time.
    converted = ct.models.MLModel(str(exports["fp16"]), skip_model_load=True)
    monkeypatch.setattr(coreml, "convert_coreml", lambda *a, **k: converted)
    monkeypatch.setattr(ct.models.MLModel, "save", save_then_crash)
    with pytest.raises(RuntimeError, match="disk full"):
        coreml.export_coreml(checkpoint, out, small_config(), force=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.mlpackage"]
    assert [p.name for p in out.rglob("*") if p.is_file()] == ["old.txt"]

    def convert_fails(*args, **kwargs):
        raise RuntimeError("unsupported op")

    monkeypatch.setattr(coreml, "convert_coreml", convert_fails)
    with pytest.raises(RuntimeError, match="unsupported op"):
        coreml.export_coreml(checkpoint, tmp_path / "new.mlpackage", small_config())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.mlpackage"]
