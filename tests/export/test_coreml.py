"""Core ML export: the spec, metadata, weight precision, compression ratios, colour order, atomic writes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from pkmodel.cli import app
from pkmodel.common.errors import PkmodelError
from pkmodel.common.skeleton import JOINT_NAMES, LIMBS
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
    assert image.name == "input" and image.type.WhichOneof("Type") == "imageType"
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


def test_a_bundles_files_get_the_mode_of_new_files(exports):
    """coremltools wrote model.mlmodel 0600 (a temporary file of its own): another user of a
    shared models folder could not read the exported model."""
    from pkmodel.common.atomic import default_file_mode, default_folder_mode

    bundle = exports["fp16"]
    files = [p for p in bundle.rglob("*") if p.is_file()]
    assert any(p.name == "model.mlmodel" for p in files)
    assert {p.stat().st_mode & 0o777 for p in files} == {default_file_mode()}
    folders = [bundle, *(p for p in bundle.rglob("*") if p.is_dir())]
    assert {p.stat().st_mode & 0o777 for p in folders} == {default_folder_mode()}


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
    uniform = [line for line in report.checks if line.startswith("WARNING: uniform palette")]
    assert len(uniform) == (method == "palette" and coreml.palette_mode("auto") == "uniform")
    assert dict(spec.description.metadata.userDefined)["compression"] == (
        "int8" if method == "int8" else "palette-6bit"
    )


@pytest.mark.slow
def test_bgr_model_reorders_channels_and_says_bgr(checkpoint, tmp_path):
    from coremltools.proto import FeatureTypes_pb2

    config = small_config(color_layout="BGR", input_name="image")
    report = coreml.export_coreml(checkpoint, tmp_path / "bgr.mlpackage", config)
    spec = load_spec(report.path)
    it = spec.description.input[0].type.imageType
    assert it.colorSpace == FeatureTypes_pb2.ImageFeatureType.BGR
    # another input name is the user's to choose, but the PoseKit app asks for 'input'
    assert spec.description.input[0].name == "image"
    assert report.checks[-1] == (
        "WARNING: the image input is named 'image' (export.input_name); the PoseKit app builds "
        "its request as {'input': pixels}, so this model fails there at prediction time"
    )
    assert dict(spec.description.metadata.userDefined)["input_color_layout"] == "BGR"
    # What was converted: the BGR wrapper gives the RGB network's outputs for BGR pixels.
    model, _, _ = model_from_checkpoint(checkpoint)
    rgb = torch.from_numpy(common.normalise_pixels(common.sample_input(SIZE, seed=4)))
    with torch.inference_mode():
        want, got = model(rgb), coreml.BgrToRgb(model)(rgb[:, [2, 1, 0]])
    assert max(float((a - b).abs().max()) for a, b in zip(want, got, strict=True)) < 1e-6


def test_export_runs_its_program_against_pytorch_and_records_the_figures(exports):
    """The FP16 export ran its own program (pkmodel's Core ML runner) on generated pictures;
    the figures are within the FP16 tolerance and saved in the model's metadata."""
    meta = dict(load_spec(exports["fp16"]).description.metadata.userDefined)
    check = json.loads(meta[coreml.CHECK_METADATA_KEY])
    tol = coreml.COREML_TOLERANCE["fp16"]
    assert check["images"] == "32 generated synthetic picture(s)" and check["tolerance"] == "fp16"
    assert 0 < check["heatmaps"] <= tol.maps and 0 < check["centers"] <= tol.maps
    assert 0 < check["regs"] <= tol.vectors and 0 < check["offsets"] <= tol.vectors
    assert check["same_cells"] >= tol.same_cells and check["near_cells"] >= tol.near_cells


def test_a_program_beyond_its_tolerance_fails_the_export_and_writes_nothing(checkpoint, exports, tmp_path, monkeypatch):  # fmt: skip
    ct = coreml.import_coremltools()
    converted = ct.models.MLModel(str(exports["fp16"]), skip_model_load=True)
    monkeypatch.setattr(coreml, "convert_coreml", lambda *a, **k: converted)
    bad = {"heatmaps": 0.03, "centers": 0.001, "regs": 0.01, "offsets": 0.01, "same_cells": 0.95,
           "near_cells": 0.995, "joints_found": 40.0, "keypoints_px": 4.0}  # fmt: skip
    monkeypatch.setattr(coreml, "compare_program_with_torch", lambda *a, **k: bad)
    out = tmp_path / "m.mlpackage"
    with pytest.raises(PkmodelError) as err:
        coreml.export_coreml(checkpoint, out, small_config())
    message = str(err.value)
    assert "beyond the fp16 tolerance" in message and "\n" not in message
    assert "heatmaps max abs diff 0.03 > 0.02" in message
    assert "95.0% of joints on the same cell < 97%" in message and "within one" not in message
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_check_images_come_from_a_folder_in_name_order(tmp_path):
    from PIL import Image

    for i, colour in enumerate([(255, 0, 0), (0, 255, 0), (0, 0, 255)]):
        Image.new("RGB", (40, 20), colour).save(tmp_path / f"{2 - i}.png")
    (tmp_path / "notes.txt").write_text("not an image")
    pixels, source = common.check_images(tmp_path, 32, 2)
    assert pixels.shape == (2, 32, 32, 3) and source == f"2 image(s) from {tmp_path}"
    # 0.png is the blue one; letterboxed 40x20 -> 32x16 in the middle rows.
    assert tuple(pixels[0, 16, 16]) == (0, 0, 255) and tuple(pixels[1, 16, 16]) == (0, 255, 0)
    assert pixels[0, 0].max() == 0  # padding
    (tmp_path / "empty").mkdir()
    with pytest.raises(PkmodelError, match="holds no image"):
        common.check_images(tmp_path / "empty", 32, 2)
    with pytest.raises(PkmodelError, match="is not a folder"):
        common.check_images(tmp_path / "missing", 32, 2)


def test_cli_export_coreml_prints_checks_and_refuses_to_overwrite(checkpoint, tmp_path):
    out = tmp_path / "m.mlpackage"
    args = ["export-coreml", "--weights", str(checkpoint), "--out", str(out),
            "--set", "decoder.score_threshold=0.25"]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "ok  input 'input': 128x128 RGB image" in result.output
    assert "image input is named" not in result.output  # the app's name
    assert "!!  WARNING: the output grid is 32 x 32; the PoseKit app's decoder has a center prior only for 48 x 48" in result.output  # fmt: skip
    assert "skipped: Core ML itself runs only on macOS" in result.output
    assert "ok  Core ML program vs PyTorch on 32 generated synthetic picture(s)" in result.output
    assert f"wrote Core ML model {out}" in result.output
    before = sorted(p.stat().st_mtime_ns for p in out.rglob("*"))
    again = runner.invoke(app, args)
    assert again.exit_code == 2 and "already exists; pass --force" in again.output
    assert sorted(p.stat().st_mtime_ns for p in out.rglob("*")) == before


def test_failed_coreml_export_leaves_the_old_bundle_and_no_temp(checkpoint, exports, tmp_path, monkeypatch):  # fmt: skip
    out = tmp_path / "m.mlpackage"
    (out / "Data").mkdir(parents=True)
    (out / "Data" / "old.txt").write_text("previous export")
    (out / "Manifest.json").write_text("{}")  # a bundle (--force replaces nothing else)

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
    assert sorted(p.name for p in out.rglob("*") if p.is_file()) == ["Manifest.json", "old.txt"]

    def convert_fails(*args, **kwargs):
        raise RuntimeError("unsupported op")

    monkeypatch.setattr(coreml, "convert_coreml", convert_fails)
    with pytest.raises(RuntimeError, match="unsupported op"):
        coreml.export_coreml(checkpoint, tmp_path / "new.mlpackage", small_config())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.mlpackage"]


@pytest.mark.slow
def test_a_default_export_has_the_app_models_interface(tmp_path):
    """The contract with the PoseKit app: a default export's input (name, image type, size,
    colour space) and outputs (names, shapes, types) equal the app's bundled model's, as its
    compiled metadata.json states them; no grid warning at 192."""
    from pkmodel.config import load_config
    from pkmodel.model.checkpoint import save_checkpoint
    from pkmodel.model.network import build_model
    from tests.conftest import shared_data

    app_meta = json.loads(shared_data("posekit_app", "pkmodel.mlmodelc", "metadata.json").read_text())[0]  # fmt: skip
    cfg = load_config(None, [], {"model.width_mult": 0.35, "export.check_count": 2}, env={})
    assert cfg.model.input_size == 192 and cfg.export.input_name == "input"  # the defaults
    torch.manual_seed(0)
    ckpt = tmp_path / "default.pt"
    save_checkpoint(ckpt, {"model": build_model(cfg.model, pretrained=False).state_dict(), "config": cfg.to_dict()})  # fmt: skip
    report = coreml.export_coreml(ckpt, tmp_path / "m.mlpackage", cfg)
    assert not any("WARNING" in line for line in report.checks)
    spec = load_spec(report.path)
    from coremltools.proto import FeatureTypes_pb2

    (want_in,) = app_meta["inputSchema"]
    (got_in,) = spec.description.input
    image = got_in.type.imageType
    space = FeatureTypes_pb2.ImageFeatureType.ColorSpace.Name(image.colorSpace)
    assert (got_in.name, "Image", str(image.width), str(image.height), space) == (
        want_in["name"], want_in["type"], want_in["width"], want_in["height"], want_in["colorspace"]
    )  # fmt: skip
    dtypes = {"FLOAT32": "Float32", "FLOAT16": "Float16"}
    got_out = [
        (o.name, str(list(o.type.multiArrayType.shape)),
         dtypes[FeatureTypes_pb2.ArrayFeatureType.ArrayDataType.Name(o.type.multiArrayType.dataType)])
        for o in spec.description.output
    ]  # fmt: skip
    want_out = [(o["name"], o["shape"].replace(" ", ""), o["dataType"]) for o in app_meta["outputSchema"]]  # fmt: skip
    assert [(n, s.replace(" ", ""), t) for n, s, t in got_out] == want_out
