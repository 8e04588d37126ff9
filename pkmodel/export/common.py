"""What the Core ML and ONNX exports share: the input's name and pixel normalisation, output
checks, metadata for the app, the target path and an atomic write through a temporary folder.

Both exports write into a temporary folder beside the target and rename on success, so a failed
export leaves nothing behind, and both refuse to overwrite without ``force``.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from pkmodel import __version__
from pkmodel.common.atomic import check_writable
from pkmodel.common.errors import PkmodelError
from pkmodel.common.skeleton import JOINT_NAMES, LIMBS
from pkmodel.model.checkpoint import model_from_checkpoint
from pkmodel.model.decode import DecodeSettings, decode_batch
from pkmodel.model.outputs import OUTPUT_NAMES

if TYPE_CHECKING:
    from pkmodel.config import Config, ModelConfig

# The image input's default name: the PoseKit app builds its request as {"input": pixelBuffer}
# (export.input_name changes it for other apps).
INPUT_NAME = "input"
# The output grid the PoseKit app's decoder has a center prior for (192-pixel input, stride 4).
APP_GRID = 48
# The network's input normalisation (x / 127.5 - 1) folded into the exported model, so the app
# feeds raw 0..255 pixels. Core ML applies it as input * scale + bias per channel.
PIXEL_SCALE = 1.0 / 127.5
PIXEL_BIAS = -1.0


Log = Callable[[str], None]


@dataclass
class ExportReport:
    """What an export wrote and what it checked (printed by the CLI, asserted by tests)."""

    path: Path
    size_bytes: int
    checks: list[str] = field(default_factory=list)
    max_abs_diff: dict[str, float] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    weight_bytes: dict[str, int] = field(default_factory=dict)  # Core ML: payload by dtype
    compressed_diff: dict[str, float] = field(default_factory=dict)  # Core ML, compressed


# --- shared pieces --------------------------------------------------------------------------


def quiet_log(_: str) -> None:
    pass


def check_target(out: Path, suffix: str, force: bool) -> Path:
    """Validate the output path before any work: right suffix, no silent overwrite."""
    out = Path(out)
    if out.suffix != suffix:
        raise PkmodelError(f"--out {out} must end with {suffix}")
    if out.exists() and not force:
        raise PkmodelError(f"{out} already exists; pass --force to overwrite it")
    bundle = suffix == ".mlpackage"
    # --force replaces a model, never a folder that merely ends in .mlpackage: a bundle has
    # its Manifest.json
    if out.exists() and (
        out.is_dir() != bundle or (bundle and not (out / "Manifest.json").is_file())
    ):
        kind = "bundle folder (it has no Manifest.json)" if bundle else "file"
        raise PkmodelError(f"{out} exists and is not a {suffix} {kind}; remove it first")
    check_writable(out.parent, "--out", folder=True)  # the bundle or file is renamed into it
    return out


def load_export_model(weights: Path) -> tuple[torch.nn.Module, ModelConfig, bool]:
    """The checkpoint's network in eval mode (EMA weights when present), its model config, and
    whether the EMA weights were used."""
    try:
        model, ckpt_cfg, state = model_from_checkpoint(weights, prefer_ema=True)
    except (KeyError, IndexError, TypeError, AttributeError, UnicodeDecodeError) as e:
        # torch.load's unpickler raises these on some non-checkpoint bytes (e.g. a text file).
        raise PkmodelError(f"{weights} is not a pkmodel checkpoint ({type(e).__name__})") from None
    return model, ckpt_cfg.model, bool(state.get("ema"))


def output_layout(model: torch.nn.Module, input_size: int) -> tuple[dict[str, tuple], int]:
    """Output shapes (batch 1) by name from one forward pass, and the output stride."""
    with torch.inference_mode():
        outs = model(torch.zeros(1, 3, input_size, input_size))
    shapes = {name: tuple(o.shape) for name, o in zip(OUTPUT_NAMES, outs, strict=True)}
    grid = shapes[OUTPUT_NAMES[0]][-1]
    return shapes, input_size // grid


def sample_input(input_size: int, batch: int = 1, seed: int = 0) -> np.ndarray:
    """Deterministic camera-like pixels (uint8 N x S x S x 3, RGB): smooth gradients plus noise,
    so the comparison exercises realistic activations rather than pure noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:input_size, 0:input_size] / input_size
    base = np.stack([xx, yy, 1.0 - xx * yy], axis=-1)[None] * 200.0
    noise = rng.normal(0.0, 25.0, size=(batch, input_size, input_size, 3))
    return np.clip(base + noise, 0, 255).astype(np.uint8)


def normalise_pixels(pixels: np.ndarray) -> np.ndarray:
    """uint8 N x S x S x 3 RGB -> float32 N x 3 x S x S in [-1, 1] (the network's input)."""
    x = pixels.astype(np.float32).transpose(0, 3, 1, 2)
    return x * np.float32(PIXEL_SCALE) + np.float32(PIXEL_BIAS)


def export_metadata(
    cfg: Config,
    input_size: int,
    stride: int,
    num_joints: int,
    weights: Path,
    used_ema: bool,
    color_layout: str = "RGB",
    input_name: str = INPUT_NAME,
) -> dict[str, str]:
    """Key/value metadata for the app (Core ML user_defined_metadata, ONNX metadata_props).

    Values are strings; lists and dicts are JSON.
    """
    return {
        "input_name": input_name,
        "input_size": str(input_size),
        "input_color_layout": color_layout,
        "input_normalization": "pixel / 127.5 - 1, inside the model: pass pixels 0..255",
        "stride": str(stride),
        "grid_size": str(input_size // stride),
        "num_joints": str(num_joints),
        "joint_names": json.dumps(list(JOINT_NAMES[:num_joints])),
        "skeleton": json.dumps([list(limb) for limb in LIMBS]),
        "output_names": json.dumps(list(OUTPUT_NAMES)),
        "output_layout": "regs and offsets: channel 2j = x, 2j + 1 = y of joint j, in cells; "
        "heatmaps and centers: sigmoid applied",
        "decoder_score_threshold": repr(float(cfg.decoder.score_threshold)),
        "decoder_center_prior_offset": repr(float(cfg.decoder.center_prior_offset)),
        "weights": "ema" if used_ema else "model",
        "source_checkpoint": Path(weights).name,
        "pkmodel_version": __version__,
    }


@contextlib.contextmanager
def temp_dir_beside(target: Path) -> Iterator[Path]:
    """A temporary folder in the target's folder (same filesystem, so the final rename is
    atomic), removed with whatever is left in it."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def path_size(path: Path) -> int:
    """Bytes of a file, or of every file in a bundle folder."""
    path = Path(path)
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def human_size(n: int) -> str:
    return f"{n / 1e6:.2f} MB" if n >= 1e5 else f"{n / 1e3:.1f} kB"


def app_grid_warning(input_size: int, stride: int) -> str | None:
    """A warning when the output grid is not the one the PoseKit app's decoder expects."""
    grid = input_size // stride
    if grid == APP_GRID:
        return None
    return (
        f"WARNING: the output grid is {grid} x {grid}; the PoseKit app's decoder has a center "
        f"prior only for {APP_GRID} x {APP_GRID} (input {APP_GRID * stride}) and picks the "
        f"center without it on this grid"
    )


def check_input_name(input_name: str) -> None:
    """An input named like an output makes a model with two tensors of one name (ONNX's
    checker refuses it, Core ML mixes them up): one PkmodelError instead."""
    if input_name in OUTPUT_NAMES:
        raise PkmodelError(
            f"export.input_name {input_name!r} is the name of an output "
            f"({', '.join(OUTPUT_NAMES)}); choose another"
        )


def app_input_warning(input_name: str) -> str | None:
    """A warning when the image input is not named the way the PoseKit app asks for it."""
    if input_name == INPUT_NAME:
        return None
    return (
        f"WARNING: the image input is named {input_name!r} (export.input_name); the PoseKit app "
        f"builds its request as {{'{INPUT_NAME}': pixels}}, so this model fails there at "
        "prediction time"
    )


def output_differences(
    got: list[np.ndarray], ref: list[np.ndarray], settings: DecodeSettings
) -> dict[str, float]:
    """Max abs difference per output, plus what the app would see: ``same_cells``, the share
    of the joints ``ref`` finds (score >= the threshold; 1.0 when it finds none, counted in
    ``joints_found``) that ``got`` decodes to the same grid cell, ``near_cells`` to a cell at
    most one away in x and y, and ``keypoints_px``, the largest distance in input pixels
    between the found keypoints decoded from the two."""
    diffs = {
        name: float(np.abs(np.asarray(g, np.float32) - np.asarray(r, np.float32)).max())
        for name, g, r in zip(OUTPUT_NAMES, got, ref, strict=True)
    }
    a, b = decode_batch(got, settings), decode_batch(ref, settings)
    found = b.found
    same = np.all(a.cells == b.cells, axis=-1)[found]
    near = (np.abs(a.cells - b.cells).max(axis=-1) <= 1)[found]
    distance = np.linalg.norm(a.keypoints - b.keypoints, axis=-1)[found]
    diffs["joints_found"] = float(found.sum())
    diffs["same_cells"] = float(same.mean()) if same.size else 1.0
    diffs["near_cells"] = float(near.mean()) if near.size else 1.0
    diffs["keypoints_px"] = float(distance.max()) if distance.size else 0.0
    return diffs


def check_images(folder: Path | None, input_size: int, count: int) -> tuple[np.ndarray, str]:
    """Up to ``count`` pictures letterboxed to the input (uint8 N x S x S x 3 RGB) and where they
    came from: the images of ``folder`` in name order, or without one, generated synthetic
    people (pkmodel's renderer, fixed seed)."""
    from pkmodel.common.geometry import letterbox_image
    from pkmodel.common.images import IMAGE_SUFFIXES, read_rgb

    if folder is not None and str(folder) not in ("", "."):
        folder = Path(folder)
        if not folder.is_dir():
            raise PkmodelError(f"export.check_images {folder} is not a folder")
        files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)[:count]
        if not files:
            raise PkmodelError(f"export.check_images {folder} holds no image")
        source = f"{len(files)} image(s) from {folder}"
    else:
        from pkmodel.config import SyntheticConfig
        from pkmodel.data.synthetic.generate import generate

        tmp = Path(tempfile.mkdtemp(prefix="pkmodel-check-"))
        try:
            spec = SyntheticConfig(num_train=0, num_val=count, sequences=0, workers=1, seed=7)
            generate(spec, tmp, progress=False)
            files = sorted((tmp / "val").glob("*.jpg"))
            pictures = [letterbox_image(read_rgb(f), input_size)[0] for f in files]
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return np.stack(pictures), f"{len(pictures)} generated synthetic picture(s)"
    pictures = []
    for f in files:
        try:
            pictures.append(letterbox_image(read_rgb(f), input_size)[0])
        except ValueError as e:
            raise PkmodelError(f"check image {f} cannot be read ({e})") from None
    return np.stack(pictures), source


# --- Core ML --------------------------------------------------------------------------------


# --- ONNX -----------------------------------------------------------------------------------


# --- latency --------------------------------------------------------------------------------
