"""A trained network's Core ML exports, run by pkmodel's Core ML runner against PyTorch.

tests/assets/trained_96.pt is a small trained network (96-pixel input, width 0.5; the demo's
settings; see tests/assets/README.md): its maps have real peaks, so "decodes to the same cell"
means something, unlike an untrained network's near-flat maps. The images are real photos
(COCO, beside the project) when present, else pkmodel's generated pictures of people.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from pkmodel.config import load_config
from pkmodel.export import common, coreml
from pkmodel.mlprogram.run import CoreMLProgram
from pkmodel.model.checkpoint import model_from_checkpoint
from pkmodel.model.decode import DecodeSettings, decode_batch
from pkmodel.model.outputs import OUTPUT_NAMES
from tests.conftest import SHARED_DATA

TRAINED = Path(__file__).resolve().parents[1] / "assets" / "trained_96.pt"
COCO_IMAGES = SHARED_DATA / "coco_mini" / "train2017"
KINDS = {
    "fp16": {},
    "int8": {"compress": "int8"},
    "palette6": {"compress": "palette", "palette_bits": 6},
    "palette4": {"compress": "palette", "palette_bits": 4},
}


def _config(**export):
    sets = {f"export.{k}": v for k, v in export.items()}
    if COCO_IMAGES.is_dir():
        sets["export.check_images"] = str(COCO_IMAGES)
    return load_config(None, [], sets, env={})


@pytest.fixture(scope="module")
def trained_exports(tmp_path_factory) -> dict[str, coreml.ExportReport]:
    out = tmp_path_factory.mktemp("trained")
    return {
        kind: coreml.export_coreml(TRAINED, out / f"{kind}.mlpackage", _config(**keys))
        for kind, keys in KINDS.items()
    }


@pytest.fixture(scope="module")
def pictures() -> np.ndarray:
    folder = COCO_IMAGES if COCO_IMAGES.is_dir() else None
    return common.check_images(folder, 96, 32)[0]


def _compare(path: Path, pictures: np.ndarray):
    model, _, _ = model_from_checkpoint(TRAINED)
    got = CoreMLProgram(path).run_images(pictures)
    with torch.inference_mode():
        ref = [r.numpy() for r in model(torch.from_numpy(common.normalise_pixels(pictures)))]
    return [got[n] for n in OUTPUT_NAMES], ref


@pytest.mark.slow
def test_fp16_export_matches_pytorch_and_decodes_to_the_same_cells(trained_exports, pictures):
    got, ref = _compare(trained_exports["fp16"].path, pictures)
    tol = coreml.COREML_TOLERANCE["fp16"]
    for name, g, r in zip(OUTPUT_NAMES, got, ref, strict=True):
        limit = tol.maps if name in ("heatmaps", "centers") else tol.vectors
        diff = float(np.abs(g - r).max())
        assert 0 < diff < limit, (name, diff)  # FP16 noise: present, and within the tolerance
    settings = DecodeSettings.from_config(load_config(None, [], {}, env={}).decoder, 4)
    a, b = decode_batch(got, settings), decode_batch(ref, settings)
    assert b.found.sum() >= 150  # a trained network: many joints found on these pictures
    same = np.all(a.cells == b.cells, axis=-1)
    assert same[b.found].mean() >= 0.99 and same.mean() >= 0.99
    assert (a.center == b.center).all()
    # What the export itself measured and recorded agrees.
    meta = dict(coreml.import_coremltools().utils.load_spec(str(trained_exports["fp16"].path)).description.metadata.userDefined)  # fmt: skip
    record = json.loads(meta[coreml.CHECK_METADATA_KEY])
    assert record["same_cells"] >= 0.99 and record["joints_found"] >= 150


@pytest.mark.slow
def test_compressed_exports_run_and_cost_more_the_fewer_bits(trained_exports, pictures):
    """Each compression kind runs through the runner; the error grows as the weights shrink,
    and the conversion before compression was held to the FP16 tolerance."""
    settings = DecodeSettings.from_config(load_config(None, [], {}, env={}).decoder, 4)
    worst, same = {}, {}
    for kind in KINDS:
        report = trained_exports[kind]
        got, ref = _compare(report.path, pictures)
        worst[kind] = max(float(np.abs(g - r).max()) for g, r in zip(got[:1], ref[:1], strict=True))
        a, b = decode_batch(got, settings), decode_batch(ref, settings)
        same[kind] = float(np.all(a.cells == b.cells, axis=-1)[b.found].mean())
        if kind != "fp16":
            assert report.compressed_diff["heatmaps"] == pytest.approx(worst[kind], rel=1e-5)
            assert report.max_abs_diff["heatmaps"] < coreml.COREML_TOLERANCE["fp16"].maps
    assert worst["fp16"] < worst["int8"] < worst["palette4"]
    assert worst["palette6"] < worst["palette4"]
    assert same["fp16"] >= 0.99 and same["int8"] >= 0.8 and same["palette4"] < same["fp16"]


@pytest.mark.slow
def test_check_ap_prints_the_exported_models_ap_next_to_the_checkpoints(tiny_prepared, tmp_path):
    import re

    from typer.testing import CliRunner

    from pkmodel.cli import app

    out = tmp_path / "int8.mlpackage"
    labels = tiny_prepared / "val.json"
    result = CliRunner().invoke(app, ["export-coreml", "--weights", str(TRAINED), "--out", str(out),
                                      "--compress", "int8", "--check-ap", str(labels),
                                      "--set", "export.check_count=4"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert f"AP on {labels} (flip test off):" in result.output
    rows = re.findall(r"^  (PyTorch FP32 \(trained_96.pt\)|Core ML int8)\s+AP (\d\.\d{3})  AP50 (\d\.\d{3})  PCK (\d\.\d{3})$", result.output, re.M)  # fmt: skip
    assert [r[0] for r in rows] == ["PyTorch FP32 (trained_96.pt)", "Core ML int8"]
    (_, ap32, _, pck32), (_, ap8, _, pck8) = rows
    assert float(pck32) > 0.2  # the trained network on the synthetic val crops
    assert abs(float(pck8) - float(pck32)) <= 0.05
    change = float(re.search(r"AP change: ([+-]\d\.\d{3})", result.output).group(1))
    assert change == pytest.approx(float(ap8) - float(ap32), abs=0.0015)  # from unrounded APs
    missing = CliRunner().invoke(app, ["export-coreml", "--weights", str(TRAINED), "--out",
                                       str(tmp_path / "x.mlpackage"), "--check-ap", str(tmp_path / "no.json")])  # fmt: skip
    assert missing.exit_code == 2 and "--check-ap labels file" in missing.output
    assert not (tmp_path / "x.mlpackage").exists()
    # Labels that cannot be evaluated fail before the export: the package already there stays.
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    before = sorted((p.relative_to(out), p.read_bytes()) for p in out.rglob("*") if p.is_file())
    again = CliRunner().invoke(app, ["export-coreml", "--weights", str(TRAINED), "--out", str(out),
                                     "--force", "--check-ap", str(bad)])  # fmt: skip
    assert again.exit_code == 2 and str(bad) in again.output and "Traceback" not in again.output
    after = sorted((p.relative_to(out), p.read_bytes()) for p in out.rglob("*") if p.is_file())
    assert after == before and "Core ML model" not in again.output
