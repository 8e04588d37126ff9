"""Shared by the export tests: a small checkpoint and its two exports, made once."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from pkmodel.config import Config, load_config
from pkmodel.export import coreml, onnx
from pkmodel.model.checkpoint import save_checkpoint
from pkmodel.model.network import build_model

SIZE = 128  # small and fast; every shape below is derived from it
GRID = SIZE // 4


def small_config(**export_keys) -> Config:
    """Defaults plus a small network, a non-default decoder threshold (to see it travel into
    the metadata) and the given export.* values."""
    sets = {"model.input_size": SIZE, "model.width_mult": 0.35, "decoder.score_threshold": 0.3}
    sets.update({f"export.{k}": v for k, v in export_keys.items()})
    return load_config(None, [], sets, env={})


@pytest.fixture(scope="package")
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


@pytest.fixture(scope="package")
def exports(checkpoint, tmp_path_factory) -> dict[str, Path]:
    """The FP16 Core ML model and the fixed-batch ONNX model, exported once."""
    out = tmp_path_factory.mktemp("exports")
    return {
        "fp16": coreml.export_coreml(checkpoint, out / "fp16.mlpackage", small_config()).path,
        "onnx": onnx.export_onnx(checkpoint, out / "m.onnx", small_config()).path,
    }


def load_spec(path: Path):
    ct = coreml.import_coremltools()
    return ct.utils.load_spec(str(path))
