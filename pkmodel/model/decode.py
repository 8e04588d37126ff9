"""The graph-outside decoder (the phone's algorithm), batched NumPy and a torch twin.

For network outputs of N samples (heatmaps N x K x h x w, centers N x 1 x h x w, regs and
offsets N x 2K x h x w), every step is vectorised over samples and joints:

1. Center cell = argmax over ``centers * prior``, ``prior = 1 / (d + prior_offset)``, where d is
   the distance in cells to the grid center ``((w - 1) / 2, (h - 1) / 2)`` (cell-index units).
2. Regs are read at the center cell; regressed cell = center + floor(reg + 0.5) (rounding, also
   for negative regs; never truncation), clipped to the grid.
3. Joint cell = argmax over ``heatmap / (d + prior_offset)``, d = distance in cells to the
   regressed cell.
4. Score = heatmap at the joint cell; position = (cell + offset at that cell) * stride, in input
   pixels; ``found = score >= score_threshold``. Joints below the threshold keep their argmax
   position (so the caller can still draw them) but are flagged not found.

The distance weights are looked up in a table of ``d + prior_offset`` for every cell step
(computed in float64, stored float32) rather than recomputed per joint; numpy and torch use the
same table and the same float32 division, so they pick the same cells.

Every decoder here takes the outputs as one sequence ``(heatmaps, centers, regs, offsets)`` (the
model's output tuple as it is) and a ``DecodeSettings``.

``DecodeSettings.style = "posekit-app"`` instead reproduces the PoseKit app's Swift decoder
exactly, faults included (its constants 1.8 and 0.1 are fixed; ``prior_offset`` is not used):

1. Center cell = argmax over ``centers * weight`` with the app's hard-coded 48 x 48 table
   ``1 / (sqrt((x - 24)^2 + (y - 24)^2) + 1.8)`` (float32, written with 6 decimals), used when
   the grid has 48 * 48 cells (indexed y * w + x); other grids use no weight.
2. Regressed cell = center + ``Int(reg + 0.5)``: the sum in float32, then truncated toward zero
   (the fault: a reg of -2.3 gives -1, not -2). Not clipped to the grid.
3. Joint cell = argmax of ``heatmap / (d + 1.8)`` (float32, as the app computes it) over the
   cells with ``heatmap >= 0.1`` only, d = distance to the regressed cell.
4. A joint with no such cell is missing: position = the middle of the input (the app's
   normalised (0.5, 0.5)), score 0, not found, cell (0, 0). Otherwise score = heatmap at the
   cell, position = (cell + offset) * stride (the app's ``(cell + offset) / w`` times the input
   side) and ``found = score >= score_threshold``.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, NamedTuple, get_args

import numpy as np

from pkmodel.common.geometry import Letterbox, crop_to_image
from pkmodel.config import DecoderConfig
from pkmodel.model.outputs import OUTPUT_STRIDE

if TYPE_CHECKING:  # torch is imported lazily: the NumPy decoder must not need it
    import torch


DecodeStyle = Literal["pkmodel", "posekit-app"]

# The PoseKit app's decoder constants (Swift Float): the heat gate and the distance offset.
APP_HEAT_GATE = np.float32(0.1)
APP_PRIOR_OFFSET = np.float32(1.8)
APP_CENTER_GRID = 48  # the app's center weight table is 48 x 48


@dataclass(frozen=True)
class DecodeSettings:
    """How outputs are decoded: the grid's stride in input pixels, the score below which a
    joint is not found, the offset of the distance weights 1 / (d + prior_offset), and the
    style: ``pkmodel`` (this module's decoder) or ``posekit-app`` (the app's, faults included)."""

    stride: int = OUTPUT_STRIDE
    score_threshold: float = DecoderConfig.score_threshold
    prior_offset: float = DecoderConfig.center_prior_offset
    style: DecodeStyle = DecoderConfig.style

    def __post_init__(self) -> None:
        if self.style not in get_args(DecodeStyle):
            choices = ", ".join(get_args(DecodeStyle))
            raise ValueError(f"decoder style {self.style!r} is not one of {choices}")

    @classmethod
    def from_config(cls, decoder: DecoderConfig, stride: int = OUTPUT_STRIDE) -> DecodeSettings:
        """The ``[decoder]`` values for a grid of ``stride`` input pixels per cell."""
        return cls(stride, decoder.score_threshold, decoder.center_prior_offset, decoder.style)

    @classmethod
    def for_grid(cls, decoder: DecoderConfig, input_size: int, grid: int) -> DecodeSettings:
        """The ``[decoder]`` values for a network of ``input_size`` pixels whose output grid is
        ``grid`` cells wide (any input size works)."""
        return cls.from_config(decoder, input_size // grid)


class Decoded(NamedTuple):
    """Decoded poses: shapes for a batch of N (``decode_single`` drops the N axis)."""

    keypoints: np.ndarray  # N x K x 2 float64, input pixels (x, y)
    scores: np.ndarray  # N x K float64, heatmap value at the chosen cell
    found: np.ndarray  # N x K bool, score >= threshold (and, posekit-app, not missing)
    center: np.ndarray  # N x 2 int64, center cell (x, y)
    cells: np.ndarray  # N x K x 2 int64, chosen joint cell (x, y)


@functools.lru_cache(maxsize=16)
def center_prior(h: int, w: int, prior_offset: float) -> np.ndarray:
    """h x w float32 prior 1 / (distance in cells to ((w-1)/2, (h-1)/2) + prior_offset)."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    d = np.sqrt((x - (w - 1) / 2.0) ** 2 + (y - (h - 1) / 2.0) ** 2)
    prior = (1.0 / (d + prior_offset)).astype(np.float32)
    prior.setflags(write=False)
    return prior


@functools.lru_cache(maxsize=16)
def distance_table(h: int, w: int, prior_offset: float) -> np.ndarray:
    """(2h-1) x (2w-1) float32 of ``sqrt(dx^2 + dy^2) + prior_offset`` for every cell step.

    Entry [h - 1 + dy, w - 1 + dx] belongs to the step (dx, dy), so the weights around a
    regressed cell (rx, ry) are the window starting at [h - 1 - ry, w - 1 - rx].
    """
    dy, dx = np.mgrid[1 - h : h, 1 - w : w].astype(np.float64)
    table = (np.sqrt(dx * dx + dy * dy) + prior_offset).astype(np.float32)
    table.setflags(write=False)
    return table


@functools.lru_cache(maxsize=16)
def _distance_windows(h: int, w: int, prior_offset: float) -> np.ndarray:
    """View (h, w, h, w): [ry, rx] is the h x w denominator map around regressed cell (rx, ry)."""
    table = distance_table(h, w, prior_offset)
    windows = np.lib.stride_tricks.sliding_window_view(table, (h, w))  # (h, w, h, w)
    return windows[::-1, ::-1]


@functools.lru_cache(maxsize=1)
def app_center_weight() -> np.ndarray:
    """The PoseKit app's 48 x 48 float32 center weight table.

    The app hard-codes ``1 / (sqrt((x - 24)^2 + (y - 24)^2) + 1.8)`` (centred on cell (24, 24),
    i.e. (w/2, h/2), not the grid's middle (23.5, 23.5)) as Swift Float literals with six
    decimals: the weight computed in float32 and written with "%.6f", read back as float32.
    """
    y, x = np.mgrid[0:APP_CENTER_GRID, 0:APP_CENTER_GRID]
    half = APP_CENTER_GRID // 2
    d = np.sqrt(((x - half) ** 2 + (y - half) ** 2).astype(np.float32))
    weight = np.float32(1.0) / (d + APP_PRIOR_OFFSET)
    table = np.array([float(f"{v:.6f}") for v in weight.astype(np.float64).ravel()])
    table = table.astype(np.float32).reshape(APP_CENTER_GRID, APP_CENTER_GRID)
    table.setflags(write=False)
    return table


def _app_has_center_weight(h: int, w: int) -> bool:
    """The app applies its table when the grid has as many cells as the table (48 * 48)."""
    return h * w == APP_CENTER_GRID * APP_CENTER_GRID


def _check_shapes(heatmaps: Any, centers: Any, regs: Any, offsets: Any) -> None:
    n, k, h, w = heatmaps.shape
    want = {"centers": (n, 1, h, w), "regs": (n, 2 * k, h, w), "offsets": (n, 2 * k, h, w)}
    got = {"centers": centers.shape, "regs": regs.shape, "offsets": offsets.shape}
    for name, shape in want.items():
        if tuple(got[name]) != shape:
            raise ValueError(f"{name} has shape {tuple(got[name])}, expected {shape}")


def _numpy(output: Any) -> np.ndarray:
    """A NumPy array of an output given as an array or a (CPU or GPU) tensor."""
    if hasattr(output, "detach"):
        return output.detach().float().cpu().numpy()
    return np.asarray(output)


def decode_batch(outputs: Sequence[Any], settings: DecodeSettings = DecodeSettings()) -> Decoded:
    """Decode N samples at once (arrays or tensors N x C x h x w); see the module docstring."""
    if settings.style == "posekit-app":
        return _decode_batch_app(outputs, settings)
    heatmaps, centers, regs, offsets = (_numpy(o) for o in outputs)
    heatmaps, centers = (
        heatmaps.astype(np.float32, copy=False),
        centers.astype(np.float32, copy=False),
    )
    prior_offset = float(settings.prior_offset)
    _check_shapes(heatmaps, centers, regs, offsets)
    n, k, h, w = heatmaps.shape
    rows = np.arange(n)

    # 1. Center: prior-weighted argmax.
    weighted = centers[:, 0] * center_prior(h, w, prior_offset)
    flat = weighted.reshape(n, -1).argmax(axis=1)
    cy, cx = flat // w, flat % w

    # 2. Regs at the center, rounded (floor(x + 0.5) in float64: exact for float32 input).
    reg = regs[rows, :, cy, cx].astype(np.float64).reshape(n, k, 2)
    step = np.floor(reg + 0.5).astype(np.int64)
    rx = np.minimum(np.maximum(cx[:, None] + step[..., 0], 0), w - 1)
    ry = np.minimum(np.maximum(cy[:, None] + step[..., 1], 0), h - 1)

    # 3. Distance-weighted refinement around the regressed cells.
    denom = _distance_windows(h, w, prior_offset)[ry, rx]  # (n, k, h, w)
    ratio = np.divide(heatmaps, denom, out=denom)  # in place: one big array less
    jflat = ratio.reshape(n, k, -1).argmax(axis=2)
    jy, jx = jflat // w, jflat % w

    # 4. Score, sub-cell offset, position.
    sample, joint = rows[:, None], np.arange(k)
    scores = heatmaps.reshape(n, k, -1)[sample, joint, jflat].astype(np.float64)
    off = offsets.reshape(n, k, 2, h * w)[sample, joint, :, jflat].astype(np.float64)  # (n, k, 2)
    cells = np.stack([jx, jy], -1)
    return Decoded(
        keypoints=(cells + off) * settings.stride,
        scores=scores,
        found=scores >= settings.score_threshold,
        center=np.stack([cx, cy], -1),
        cells=cells,
    )


def _decode_batch_app(outputs: Sequence[Any], settings: DecodeSettings) -> Decoded:
    """``decode_batch`` for style posekit-app: the app's Swift decoder (module docstring)."""
    heatmaps, centers, regs, offsets = (_numpy(o) for o in outputs)
    _check_shapes(heatmaps, centers, regs, offsets)
    heatmaps = heatmaps.astype(np.float32, copy=False)
    centers = centers.astype(np.float32, copy=False)
    n, k, h, w = heatmaps.shape
    rows = np.arange(n)

    # 1. Center: argmax of centers * the 48 x 48 table (when the grid has 48 * 48 cells).
    weighted = centers[:, 0]
    if _app_has_center_weight(h, w):
        weighted = weighted * app_center_weight().reshape(h, w)
    flat = weighted.reshape(n, -1).argmax(axis=1)
    cy, cx = flat // w, flat % w

    # 2. Int(reg + 0.5): float32 sum, truncated toward zero; the regressed cell is not clipped.
    reg = regs[rows, :, cy, cx].astype(np.float32).reshape(n, k, 2)
    step = np.trunc(reg + np.float32(0.5)).astype(np.int64)
    rx = cx[:, None] + step[..., 0]  # (n, k)
    ry = cy[:, None] + step[..., 1]

    # 3. heat / (sqrt(dx^2 + dy^2) + 1.8) in float32 over the cells with heat >= 0.1.
    dx = (np.arange(w) - rx[..., None]).astype(np.float32)  # (n, k, w)
    dy = (np.arange(h) - ry[..., None]).astype(np.float32)  # (n, k, h)
    denom = dy[..., :, None] * dy[..., :, None] + dx[..., None, :] * dx[..., None, :]
    np.sqrt(denom, out=denom)
    denom += APP_PRIOR_OFFSET
    ratio = np.divide(heatmaps, denom, out=denom)
    ratio[~(heatmaps >= APP_HEAT_GATE)] = -np.inf  # skipped; no cell left: argmax gives cell 0
    jflat = ratio.reshape(n, k, -1).argmax(axis=2)
    jy, jx = jflat // w, jflat % w

    # 4. Score (max(0, heat) as the app); below the gate the joint is missing.
    sample, joint = rows[:, None], np.arange(k)
    score = np.maximum(heatmaps.reshape(n, k, -1)[sample, joint, jflat], np.float32(0))
    missing = score < APP_HEAT_GATE
    scores = np.where(missing, 0.0, score.astype(np.float64))
    off = offsets.reshape(n, k, 2, h * w)[sample, joint, :, jflat].astype(np.float64)
    cells = np.stack([jx, jy], -1)
    middle = np.array([w * settings.stride / 2.0, h * settings.stride / 2.0])
    keypoints = np.where(missing[..., None], middle, (cells + off) * settings.stride)
    return Decoded(
        keypoints=keypoints,
        scores=scores,
        found=~missing & (scores >= settings.score_threshold),
        center=np.stack([cx, cy], -1),
        cells=cells,
    )


def decode_single(outputs: Sequence[Any], settings: DecodeSettings = DecodeSettings()) -> Decoded:
    """Decode one sample (arrays C x h x w); the result has no batch axis."""
    out = decode_batch([o[None] for o in outputs], settings)
    return Decoded(*(field[0] for field in out))


class DecodedTorch(NamedTuple):
    """``Decoded`` as tensors on the outputs' device (keypoints and scores float32)."""

    keypoints: torch.Tensor
    scores: torch.Tensor
    found: torch.Tensor
    center: torch.Tensor
    cells: torch.Tensor


_TORCH_TABLES: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}
_TORCH_APP_WEIGHT: dict[str, torch.Tensor] = {}  # the app's center weight table per device


def _torch_tables(h: int, w: int, prior_offset: float, device: Any) -> tuple[Any, Any]:
    """The center prior and the distance table as float32 tensors on ``device`` (cached)."""
    import torch

    key = (h, w, prior_offset, str(device))
    if key not in _TORCH_TABLES:
        prior = torch.tensor(center_prior(h, w, prior_offset), device=device)
        table = torch.tensor(distance_table(h, w, prior_offset), device=device)
        _TORCH_TABLES[key] = (prior, table)
    return _TORCH_TABLES[key]


def _torch_outputs(outputs: Sequence[torch.Tensor]) -> tuple:
    """The four maps checked, detached and float32, and their device."""
    heatmaps, centers, regs, offsets = outputs
    _check_shapes(heatmaps, centers, regs, offsets)
    maps = tuple(o.detach().float() for o in (heatmaps, centers, regs, offsets))
    return (*maps, heatmaps.device)


def decode_batch_torch(
    outputs: Sequence[torch.Tensor], settings: DecodeSettings = DecodeSettings()
) -> DecodedTorch:
    """The torch twin of ``decode_batch``: same algorithm on the tensors' device, no sync."""
    import torch

    if settings.style == "posekit-app":
        return _decode_batch_torch_app(outputs, settings)
    heatmaps, centers, regs, offsets, dev = _torch_outputs(outputs)
    n, k, h, w = heatmaps.shape
    rows = torch.arange(n, device=dev)

    prior, table = _torch_tables(h, w, float(settings.prior_offset), dev)
    weighted = centers[:, 0] * prior
    flat = weighted.reshape(n, -1).argmax(dim=1)
    cy, cx = flat // w, flat % w

    reg = regs[rows, :, cy, cx].reshape(n, k, 2)
    # floor(reg + 0.5) without the float32 rounding of "+ 0.5" (0.49999997 + 0.5 rounds to 1):
    # floor(reg), plus one when the exact fraction reg - floor(reg) is at least one half.
    whole = torch.floor(reg)
    step = whole.long() + (reg - whole >= 0.5).long()
    rx = (cx[:, None] + step[..., 0]).clamp(0, w - 1)
    ry = (cy[:, None] + step[..., 1]).clamp(0, h - 1)

    # View (h, w, h, w) of the table: [a, b] is the h x w window starting at row a, column b.
    windows = table.as_strided((h, w, h, w), (2 * w - 1, 1, 2 * w - 1, 1))
    denom = windows[h - 1 - ry, w - 1 - rx]  # (n, k, h, w)
    jflat = torch.div(heatmaps, denom, out=denom).reshape(n, k, -1).argmax(dim=2)
    jy, jx = jflat // w, jflat % w

    scores = heatmaps.reshape(n, k, -1).gather(2, jflat[..., None])[..., 0]
    off = offsets.reshape(n, k, 2, h * w)
    off_x = off[:, :, 0].gather(2, jflat[..., None])[..., 0]
    off_y = off[:, :, 1].gather(2, jflat[..., None])[..., 0]
    keypoints = torch.stack([jx + off_x, jy + off_y], -1) * settings.stride
    return DecodedTorch(
        keypoints=keypoints,
        scores=scores,
        found=scores >= settings.score_threshold,
        center=torch.stack([cx, cy], -1),
        cells=torch.stack([jx, jy], -1),
    )


def _decode_batch_torch_app(
    outputs: Sequence[torch.Tensor], settings: DecodeSettings
) -> DecodedTorch:
    """The torch twin of ``_decode_batch_app`` (the same float32 operations)."""
    import torch

    heatmaps, centers, regs, offsets, dev = _torch_outputs(outputs)
    n, k, h, w = heatmaps.shape
    rows = torch.arange(n, device=dev)
    f32 = functools.partial(torch.tensor, dtype=torch.float32, device=dev)

    weighted = centers[:, 0]
    if _app_has_center_weight(h, w):
        if str(dev) not in _TORCH_APP_WEIGHT:
            _TORCH_APP_WEIGHT[str(dev)] = f32(app_center_weight())
        weighted = weighted * _TORCH_APP_WEIGHT[str(dev)].reshape(h, w)
    flat = weighted.reshape(n, -1).argmax(dim=1)
    cy, cx = flat // w, flat % w

    reg = regs[rows, :, cy, cx].reshape(n, k, 2)
    step = torch.trunc(reg + f32(0.5)).long()
    rx = cx[:, None] + step[..., 0]
    ry = cy[:, None] + step[..., 1]

    dx = (torch.arange(w, device=dev) - rx[..., None]).float()
    dy = (torch.arange(h, device=dev) - ry[..., None]).float()
    denom = dy[..., :, None] * dy[..., :, None] + dx[..., None, :] * dx[..., None, :]
    denom = denom.sqrt_().add_(f32(float(APP_PRIOR_OFFSET)))
    ratio = torch.div(heatmaps, denom, out=denom)
    ratio.masked_fill_(~(heatmaps >= f32(float(APP_HEAT_GATE))), float("-inf"))
    jflat = ratio.reshape(n, k, -1).argmax(dim=2)
    jy, jx = jflat // w, jflat % w

    score = heatmaps.reshape(n, k, -1).gather(2, jflat[..., None])[..., 0].clamp(min=0)
    missing = score < f32(float(APP_HEAT_GATE))
    scores = score.masked_fill(missing, 0.0)
    off = offsets.reshape(n, k, 2, h * w)
    off_x = off[:, :, 0].gather(2, jflat[..., None])[..., 0]
    off_y = off[:, :, 1].gather(2, jflat[..., None])[..., 0]
    keypoints = torch.stack([jx + off_x, jy + off_y], -1) * settings.stride
    middle = f32([w * settings.stride / 2.0, h * settings.stride / 2.0])
    keypoints = torch.where(missing[..., None], middle, keypoints)
    return DecodedTorch(
        keypoints=keypoints,
        scores=scores,
        found=~missing & (scores >= settings.score_threshold),
        center=torch.stack([cx, cy], -1),
        cells=torch.stack([jx, jy], -1),
    )


def decode_poses(outputs: Sequence[Any], settings: DecodeSettings) -> dict[str, np.ndarray]:
    """Decode and return small NumPy arrays: ``keypoints`` (N x K x 2 input pixels), ``scores``,
    ``found``, ``center_scores`` (the center map at the chosen cell) and ``centers`` (the center
    cell's middle in input pixels). Tensors are decoded on their device (``decode_batch_torch``),
    arrays with ``decode_batch``."""
    centers = outputs[1]
    n = centers.shape[0]
    if hasattr(centers, "detach"):
        import torch

        dec = decode_batch_torch(outputs, settings)
        rows = torch.arange(n, device=centers.device)
        center_scores = centers[rows, 0, dec.center[:, 1], dec.center[:, 0]]
        return {
            "keypoints": dec.keypoints.double().cpu().numpy(),
            "scores": dec.scores.double().cpu().numpy(),
            "found": dec.found.cpu().numpy(),
            "center_scores": center_scores.double().cpu().numpy(),
            "centers": ((dec.center.double() + 0.5) * settings.stride).cpu().numpy(),
        }
    found = decode_batch(outputs, settings)
    center_scores = np.asarray(centers)[np.arange(n), 0, found.center[:, 1], found.center[:, 0]]
    return {
        "keypoints": found.keypoints,
        "scores": found.scores,
        "found": found.found,
        "center_scores": center_scores.astype(np.float64),
        "centers": (found.center + 0.5) * settings.stride,
    }


def keypoints_to_image(
    keypoints: np.ndarray,
    letterbox: Letterbox | None = None,
    crop_box: np.ndarray | list[float] | None = None,
    crop_size: int | None = None,
) -> np.ndarray:
    """Input pixels (..., 2+) -> image pixels: undo the letterbox, then the crop when given.

    With a crop, the letterboxed "image" is the crop saved at ``crop_size`` pixels and the
    result is in the original image's pixels.
    """
    out = np.asarray(keypoints, np.float64)
    if letterbox is not None:
        out = letterbox.to_image(out)
    if crop_box is not None:
        if crop_size is None:
            raise ValueError("crop_size is required with crop_box")
        out = crop_to_image(out, crop_box, crop_size)
    return out
