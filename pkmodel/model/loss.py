"""The training loss: every term separately, each with its weight from ``[loss]``.

- heatmap, center: with ``heatmap_loss = "focal"`` (the default), CenterNet's focal loss per
  target peak (``focal_heatmap_loss``); with ``"mse"``, foreground-weighted MSE, the mean over
  every pixel of the batch, where a pixel whose target exceeds ``FOREGROUND_THRESHOLD`` counts
  ``foreground_weight`` times (its gradient through the sigmoid is too weak for the heatmaps to
  learn quickly: docs/model.md, "Loss").
- reg: L1 (cells) of the regs read at each sample's ground-truth center cell against the
  targets' ``reg_values``, averaged over the labelled joints of the batch (x and y each count
  once).
- offset: L1 of the offsets over a (2r + 1) x (2r + 1) window of cells around each labelled
  joint's ground-truth cell (r = ``offset_radius``; r = 0 is that cell alone). At a window cell
  the target is the joint's position in cells minus the cell (``(cell + offset) * stride`` is the
  joint there too), so a decoded peak one cell off still lands on the joint. Averaged over the
  window cells inside the grid, then over labelled joints like the reg term.
- bone: |length - ground-truth length| (cells) of the COCO arm and leg bones
  (``pkmodel.common.skeleton.BONES``), lengths taken from the regs at the ground-truth center, averaged
  over bones whose two joints are labelled. Computed only when ``bone_weight > 0``.

Per-joint terms divide by the number of labelled joints in the batch (not by samples), so a
sample with few labelled joints weighs no more than its joints; an empty batch gives 0. Under
DDP that count is the count over every process's shard (divided by the world size, since DDP
averages gradients), so a distributed step equals a single-process step on the whole batch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from pkmodel.common.errors import PkmodelError
from pkmodel.common.skeleton import BONES
from pkmodel.config import LossConfig

FOREGROUND_THRESHOLD = 0.1


def weighted_mse(
    pred: torch.Tensor, target: torch.Tensor, foreground_weight: float
) -> torch.Tensor:
    """Mean squared error where pixels with target > 0.1 count ``foreground_weight`` times."""
    weight = torch.where(target > FOREGROUND_THRESHOLD, foreground_weight, 1.0)
    return (weight * (pred - target).square()).mean()


def focal_heatmap_loss(
    pred: torch.Tensor, target: torch.Tensor, sync: bool = False
) -> torch.Tensor:
    """CenterNet's penalty-reduced focal loss, per peak: N x C x h x w sigmoid outputs.

    Peaks are the local maxima of the target above 0.5: 1.0 at each joint's cell in
    ``encode_targets`` targets, but any Gaussian peak counts, also one below 1. Unlike MSE on
    sigmoid outputs, whose gradient vanishes once the background has pushed every output
    towards 0, the focal loss keeps pulling the peaks up, so heatmaps learn in far fewer steps.
    Normalised by the number of peaks in the batch (summed over DDP processes like the other
    per-joint terms).
    """
    p = pred.clamp(1e-4, 1.0 - 1e-4)
    peak = (target > 0.5) & (target == F.max_pool2d(target, 3, stride=1, padding=1))
    peak_f = peak.to(p.dtype)
    pos = (1.0 - p).square() * torch.log(p) * peak_f
    neg = (1.0 - target).pow(4) * p.square() * torch.log(1.0 - p) * (1.0 - peak_f)
    count = global_count(peak_f.sum(), sync)
    return -(pos.sum() + neg.sum()) / count.clamp(min=1.0)


def gather_at(maps: torch.Tensor, cells: torch.Tensor) -> torch.Tensor:
    """Read N x C x h x w ``maps`` at integer cells [x, y].

    ``cells`` N x 2 reads every channel at one cell per sample -> N x C. ``cells`` N x K x 2 with
    C = 2K reads channels 2j, 2j + 1 at joint j's cell -> N x K x 2.
    """
    n, c, h, w = maps.shape
    flat = maps.reshape(n, c, h * w)
    index = (cells[..., 1] * w + cells[..., 0]).long()
    if cells.dim() == 2:
        return flat.gather(2, index[:, None, None].expand(n, c, 1))[..., 0]
    k = cells.shape[1]
    pairs = flat.reshape(n, k, 2, h * w)
    return pairs.gather(3, index[:, :, None, None].expand(n, k, 2, 1))[..., 0]


def global_count(count: torch.Tensor, sync: bool) -> torch.Tensor:
    """With ``sync``: a count over the whole distributed batch, per process (sum over ranks /
    world size). Only the training loss syncs: every process must call it in step, which
    validation on rank 0 alone does not."""
    dist = torch.distributed
    if sync and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        count = count.detach().clone()
        dist.all_reduce(count)
        count = count / dist.get_world_size()
    return count


def masked_l1(
    pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, sync: bool = False
) -> torch.Tensor:
    """L1 of N x K x 2 vectors over joints with mask 1, per coordinate; 0 when none."""
    m = mask[..., None].to(pred.dtype)
    count = global_count(2.0 * m.sum(), sync)
    # With no labelled joint the numerator is 0 too, so the clamp only avoids 0 / 0.
    return ((pred - target).abs() * m).sum() / count.clamp(min=1e-6)


def window_offset_l1(
    offsets: torch.Tensor,
    remainders: torch.Tensor,
    joint_cells: torch.Tensor,
    mask: torch.Tensor,
    radius: int,
    sync: bool = False,
) -> torch.Tensor:
    """L1 (cells) of N x 2K x h x w ``offsets`` over the window of ``radius`` cells around
    each joint's cell (N x K x 2 [x, y]); ``remainders`` (N x K x 2) are the joints' sub-cell
    remainders, the offsets' target at their own cell. Each joint with mask 1 counts once (its
    window cells inside the grid averaged), x and y once each, like ``masked_l1``; radius 0
    equals ``masked_l1`` at the joint cells.
    """
    n, c, h, w = offsets.shape
    k = c // 2
    cells = joint_cells.long()
    remainder = remainders.to(offsets.dtype)
    span = torch.arange(-radius, radius + 1, device=cells.device)
    dy, dx = torch.meshgrid(span, span, indexing="ij")
    window = cells[:, :, None, :] + torch.stack([dx, dy], -1).reshape(1, 1, -1, 2)  # N x K x W x 2
    size = torch.tensor([w, h], device=cells.device)
    inside = ((window >= 0) & (window < size)).all(-1)  # N x K x W
    window = torch.minimum(window.clamp(min=0), size - 1)
    index = window[..., 1] * w + window[..., 0]  # N x K x W
    pred = offsets.reshape(n, k, 2, h * w).gather(3, index[:, :, None, :].expand(n, k, 2, -1))
    # The joint's cell minus the window cell is a whole number: exact at the joint's own cell.
    steps = (cells[:, :, None, :] - window).transpose(2, 3).to(offsets.dtype)  # N x K x 2 x W
    target = remainder[..., None] + steps
    cell_weight = inside.to(offsets.dtype)
    cell_weight = cell_weight / cell_weight.sum(-1, keepdim=True).clamp(min=1.0)
    weight = (mask.to(offsets.dtype)[..., None] * cell_weight)[:, :, None, :]  # N x K x 1 x W
    count = global_count(2.0 * mask.to(offsets.dtype).sum(), sync)
    return ((pred - target).abs() * weight).sum() / count.clamp(min=1e-6)


def bone_lengths(joint_xy: torch.Tensor) -> torch.Tensor:
    """N x K x 2 joint positions -> N x B lengths of ``BONES`` (smooth at zero length)."""
    a = torch.tensor([b[0] for b in BONES], device=joint_xy.device)
    b = torch.tensor([b[1] for b in BONES], device=joint_xy.device)
    diff = joint_xy[:, a] - joint_xy[:, b]
    return (diff.square().sum(-1) + 1e-6).sqrt()


class PoseLoss(nn.Module):
    """Weighted sum of the heatmap, center, reg, offset and (optional) bone terms.

    forward(outputs, targets) -> (total, {"heatmap", "center", "reg", "offset", "bone"}) where
    ``outputs`` is the model's tuple and ``targets`` a batch of ``encode_targets`` dicts.
    Reported terms are unweighted and detached.
    """

    def __init__(self, cfg: LossConfig, sync_counts: bool = False) -> None:
        super().__init__()
        if cfg.offset_radius < 0:
            raise PkmodelError(f"loss.offset_radius is {cfg.offset_radius}; it must be 0 or more")
        self.cfg = cfg
        # Under DDP the training loss normalises by counts over every process (see above).
        self.sync = sync_counts

    def forward(
        self, outputs: tuple[torch.Tensor, ...], targets: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        cfg = self.cfg
        heatmaps, centers, regs, offsets = outputs
        n, k = heatmaps.shape[:2]
        if cfg.heatmap_loss == "focal":
            heatmap = focal_heatmap_loss(heatmaps, targets["heatmaps"], self.sync)
            center = focal_heatmap_loss(centers, targets["centers"], self.sync)
        else:
            heatmap = weighted_mse(heatmaps, targets["heatmaps"], cfg.foreground_weight)
            center = weighted_mse(centers, targets["centers"], cfg.foreground_weight)

        center_cell = targets["center_index"]
        reg_pred = gather_at(regs, center_cell).reshape(n, k, 2)
        reg_true = targets["reg_values"].to(reg_pred.dtype)
        reg_mask = targets["reg_mask"]
        reg = masked_l1(reg_pred, reg_true, reg_mask, self.sync)

        joint_cells = targets["joint_index"]
        offset = window_offset_l1(
            offsets,
            targets["offset_values"],
            joint_cells,
            targets["offset_mask"],
            cfg.offset_radius,
            self.sync,
        )

        if cfg.bone_weight > 0:
            # Regs are joint positions relative to the center cell: bone vectors need no center.
            a = torch.tensor([b[0] for b in BONES], device=reg_mask.device)
            b = torch.tensor([b[1] for b in BONES], device=reg_mask.device)
            both = (reg_mask[:, a] * reg_mask[:, b]).to(reg_pred.dtype)
            err = (bone_lengths(reg_pred) - bone_lengths(reg_true)).abs()
            count = global_count(both.sum(), self.sync)
            bone = (err * both).sum() / count.clamp(min=1e-6)
        else:
            bone = heatmap.new_zeros(())

        total = (
            cfg.heatmap_weight * heatmap
            + cfg.center_weight * center
            + cfg.reg_weight * reg
            + cfg.offset_weight * offset
            + cfg.bone_weight * bone
        )
        terms = {"heatmap": heatmap, "center": center, "reg": reg, "offset": offset, "bone": bone}
        return total, {name: value.detach() for name, value in terms.items()}
