"""Any trained network behind one interface: a checkpoint, an ONNX export or a Core ML model.

``load_network(weights)`` returns a ``Network``: a torch module that maps a batch of
normalised RGB inputs (N x 3 x S x S, ``x / 127.5 - 1``) to the four output maps in
``OUTPUT_NAMES`` order, plus what callers need to feed it (input size, where it runs). So
evaluate, predict, lift and pseudo-label score a checkpoint, an ``.onnx`` file (ONNX Runtime)
and an ``.mlpackage`` / ``.mlmodel`` / compiled ``.mlmodelc`` (pkmodel's Core ML runner, which
gets the camera pixels the app would give Core ML) through the same code.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pkmodel.common.errors import PkmodelError, not_there
from pkmodel.mlprogram.run import CoreMLProgram, is_coreml_path
from pkmodel.model.checkpoint import model_from_checkpoint
from pkmodel.model.outputs import OUTPUT_NAMES


def weights_kind(path: str | Path) -> str:
    """'coreml', 'onnx' or 'checkpoint', by the file's suffix."""
    if is_coreml_path(path):
        return "coreml"
    return "onnx" if Path(path).suffix.lower() == ".onnx" else "checkpoint"


@dataclass
class Network:
    """A loaded network: ``module(x)`` -> (heatmaps, centers, regs, offsets)."""

    module: torch.nn.Module
    kind: str  # checkpoint, onnx or coreml
    input_size: int
    device: torch.device  # where inputs go (exports run on the CPU)
    config: Any = None  # the checkpoint's saved Config; None for exports
    description: str = ""

    def configure(self, cfg: Any) -> None:
        """Make ``cfg.model`` describe this network: the checkpoint's model section, or for an
        export its input size (the size crops and letterboxes are cut at)."""
        if self.config is not None:
            cfg.model = self.config.model
        else:
            cfg.model.input_size = self.input_size


def check_onnx_interface(path: Path, shape: Sequence[Any] | None, outputs: list[str]) -> None:
    """A PkmodelError unless an ONNX model has pkmodel's interface: one input of ``shape``
    N x 3 x S x S (None: not exactly one input; a dimension not fixed is not an int) and the
    outputs of OUTPUT_NAMES. What onnxruntime runs and what model-info describes are checked
    alike."""
    if shape is None or len(shape) != 4 or shape[1] != 3 or not isinstance(shape[2], int):
        raise PkmodelError(
            f"{path} is not a pkmodel ONNX export (expected one N x 3 x S x S input)"
        )
    if sorted(outputs) != sorted(OUTPUT_NAMES):
        raise PkmodelError(
            f"{path} is not a pkmodel ONNX export (outputs {outputs}, expected "
            f"{list(OUTPUT_NAMES)})"
        )


class OnnxNetwork(torch.nn.Module):
    """An exported .onnx model under ONNX Runtime (CPU)."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        import onnxruntime as ort

        if not path.is_file():
            raise PkmodelError(f"weights file {path} {not_there(path)}")
        options = ort.SessionOptions()
        options.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(
                str(path), options, providers=["CPUExecutionProvider"]
            )
        except Exception as e:  # onnxruntime raises its own untyped errors for bad files
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise PkmodelError(f"{path} is not a readable ONNX model ({first[:160]})") from None
        inputs = self.session.get_inputs()
        shape = inputs[0].shape if len(inputs) == 1 else None
        check_onnx_interface(path, shape, [o.name for o in self.session.get_outputs()])
        self.path = path
        self.input_name = inputs[0].name
        self.input_size = int(shape[2])
        self.fixed_batch = shape[0] if isinstance(shape[0], int) else None

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        batch = x.detach().float().cpu().numpy()
        n = len(batch)
        step = self.fixed_batch or n
        if n % step:  # a fixed-batch export: pad the last chunk, drop the padding after
            pad = np.zeros((step - n % step, *batch.shape[1:]), batch.dtype)
            batch = np.concatenate([batch, pad])
        runs = [
            self.session.run(list(OUTPUT_NAMES), {self.input_name: batch[i : i + step]})
            for i in range(0, len(batch), step)
        ]
        return _finite(
            tuple(
                torch.from_numpy(np.concatenate(parts)[:n]).to(x.device)
                for parts in zip(*runs, strict=True)
            ),
            self.path,
        )


class CoreMLNetwork(torch.nn.Module):
    """A Core ML ML Program run by pkmodel's runner: normalised RGB inputs go back to the
    0..255 pixels Core ML would hand the program (in its colour order); the program scales them.
    """

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.program = CoreMLProgram(path)
        p = self.program.program
        if p.image is None:
            raise PkmodelError(f"{path} has no image input; pkmodel's models take an image")
        if p.image.colorspace not in ("RGB", "BGR"):
            raise PkmodelError(f"{path} takes {p.image.colorspace} images, not RGB or BGR")
        if p.image.width != p.image.height:
            raise PkmodelError(
                f"{path} takes {p.image.width} x {p.image.height} images; pkmodel feeds square "
                f"letterboxed inputs"
            )
        missing = [n for n in OUTPUT_NAMES if n not in p.outputs]
        if missing:
            raise PkmodelError(
                f"{path} does not have the outputs {list(OUTPUT_NAMES)} (it has {p.outputs})"
            )
        self.path = path
        self.input_size = p.image.width
        self.bgr = p.image.colorspace == "BGR"

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        pixels = (x.detach().float().cpu() + 1.0) * 127.5
        if self.bgr:
            pixels = pixels.flip(1)
        name = self.program.input_name
        out = self.program.run({name: pixels.numpy()})
        return _finite(
            tuple(torch.from_numpy(out[n]).to(x.device) for n in OUTPUT_NAMES), self.path
        )


def _finite(outputs: tuple[torch.Tensor, ...], path: Path) -> tuple[torch.Tensor, ...]:
    """An export's outputs, refused when they hold NaN or Inf (weights that do: the exported
    checkpoint's own check could not see them)."""
    for name, value in zip(OUTPUT_NAMES, outputs, strict=True):
        if not bool(torch.isfinite(value).all()):
            raise PkmodelError(
                f"{path} gave NaN or Inf in its '{name}' output: its weights hold NaN or Inf, or "
                "the file is damaged"
            )
    return outputs


def load_network(weights: str | Path, device: Any = "cpu") -> Network:
    """A checkpoint on ``device`` (its EMA weights when saved), or an export on the CPU."""
    weights = Path(weights)
    kind = weights_kind(weights)
    cpu = torch.device("cpu")
    if kind == "coreml":
        module: Any = CoreMLNetwork(weights)
        p = module.program.program
        what = f"Core ML {p.format} ({p.spec_version and f'spec {p.spec_version}, '}{p.opset})"
        return Network(module.eval(), kind, module.input_size, cpu, None, what)
    if kind == "onnx":
        module = OnnxNetwork(weights)
        return Network(module.eval(), kind, module.input_size, cpu, None, "ONNX Runtime (CPU)")
    model, saved, _ = model_from_checkpoint(weights)
    device = torch.device(device)
    return Network(
        model.to(device).eval(), kind, int(saved.model.input_size), device, saved,
        f"pkmodel checkpoint on {device}",
    )  # fmt: skip


def network_device(weights: str | Path, setting: str, key: str = "train.device") -> torch.device:
    """Where a network runs: the configured device for a checkpoint, the CPU for exports."""
    from pkmodel.common.devices import select_device

    if weights_kind(weights) != "checkpoint":
        return torch.device("cpu")
    return select_device(setting, key=key)
