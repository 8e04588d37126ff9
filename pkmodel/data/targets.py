"""Training targets on the stride-4 grid: joint heatmaps, center heatmap, regs, offsets, masks.

Conventions (the decoder in ``pkmodel.model.decode`` inverts them exactly):

- A point ``p`` in input pixels lies in grid cell ``floor(p / stride)`` (clipped to the grid);
  its offset is ``p / stride - cell``, in [0, 1), so ``(cell + offset) * stride == p``.
- Heatmaps: one Gaussian per labelled joint, peak 1.0 exactly AT the joint's cell (CenterNet
  style, so the argmax is that cell), max over all people. Sigma in cells follows the person's
  size: ``clip(sigma_scale * size, min_sigma, max_sigma)``, where ``size`` is the longer side of
  the box around the person's labelled joints, in cells.
- Centers: a Gaussian at every person's center cell, sigma ``clip(center_sigma_scale * size,
  min_sigma, center_max_sigma)``, max over people. The cap keeps the center peak sharp enough
  that the decoder's prior ``1 / (d + 1.8)`` cannot move the argmax to a neighbouring cell: a
  neighbour one cell nearer the grid center gains at most a factor 1 + 1 / 1.8 from the prior,
  and exp(-1 / (2 sigma^2)) * (1 + 1 / 1.8) < 1 needs sigma < 1.06 cells.
- Regs (main person only, written at the main center cell): ``p / stride - 0.5 - center_cell``
  per joint, in cells. The ``- 0.5`` puts positions in cell-index units (cell i spans
  [i - 0.5, i + 0.5)), so the decoder's ``center + floor(reg + 0.5)`` is exactly the joint's
  cell, also for joints left of / above the center (negative regs). (Regs are capped 1e-4 cell
  below the rounding edge so float32 storage cannot round them into the next cell.)
- Offsets (main person only): the sub-cell remainder, written at each joint's own cell.
- A joint with visibility 0, or outside the input, carries no target anywhere and mask 0.

Regs and offsets are kept compact: per joint the values the maps would hold at the one cell
where they are non-zero (``reg_values``, ``offset_values``; the cells are ``center_index`` and
``joint_index``). The loss reads predictions only at those cells, so the (2K, h, w) maps (627 KB
per sample at 192 px, for about 64 numbers) are never built in training; :func:`target_maps`
writes them out for whatever decodes targets as if they were network outputs.
"""

from __future__ import annotations

import numpy as np

from pkmodel.config import TargetsConfig

# Largest reg fraction above the joint's whole-cell step (see encode_targets): 0.5 - 1e-4 cells.
REG_MARGIN = 0.5 - 1e-4


def point_cells(points: np.ndarray, stride: int, grid: int) -> np.ndarray:
    """Grid cell (int64) of points (..., 2) in input pixels: floor(p / stride), clipped."""
    return np.clip(np.floor(np.asarray(points, np.float64) / stride), 0, grid - 1).astype(np.int64)


def point_offsets(points: np.ndarray, stride: int, cells: np.ndarray) -> np.ndarray:
    """Sub-cell remainder p / stride - cell (in [0, 1) for points inside the grid)."""
    return np.asarray(points, np.float64) / stride - cells


def inside_input(points: np.ndarray, input_size: int) -> np.ndarray:
    """Which points (..., 2) lie inside the square input [0, input_size)."""
    p = np.asarray(points, np.float64)
    ok = (p >= 0.0) & (p < input_size)
    return ok[..., 0] & ok[..., 1] & np.isfinite(p).all(axis=-1)


def person_sizes(keypoints: np.ndarray, stride: int) -> np.ndarray:
    """Longer side (cells) of the box around each person's labelled joints; 0 for < 2 joints.

    ``keypoints`` is (P, K, 3) in input pixels; joints with v > 0 count, even outside the input
    (a partly visible person is still large).
    """
    labelled = keypoints[..., 2] > 0
    xy = keypoints[..., :2] / stride
    lo = np.where(labelled[..., None], xy, np.inf).min(axis=1)
    hi = np.where(labelled[..., None], xy, -np.inf).max(axis=1)
    size = (hi - lo).max(axis=-1)
    return np.where(labelled.sum(axis=1) >= 2, size, 0.0)


def gaussian_maps(cells: np.ndarray, sigma: np.ndarray, valid: np.ndarray, grid: int) -> np.ndarray:
    """Gaussians with peak 1 at integer ``cells`` (..., 2) -> maps (..., grid, grid); 0 if invalid.

    ``sigma`` broadcasts against ``cells[..., 0]``.
    """
    coords = np.arange(grid, dtype=np.float64)
    two_s2 = 2.0 * np.square(np.broadcast_to(sigma, cells.shape[:-1]))[..., None]
    gx = np.exp(-np.square(coords - cells[..., 0:1]) / two_s2)  # (..., w)
    gy = np.exp(-np.square(coords - cells[..., 1:2]) / two_s2)  # (..., h)
    maps = gy[..., :, None] * gx[..., None, :]
    return np.where(valid[..., None, None], maps, 0.0)


def encode_targets(
    keypoints: np.ndarray,
    center: np.ndarray,
    others_keypoints: np.ndarray | None,
    others_centers: np.ndarray | None,
    input_size: int,
    cfg: TargetsConfig,
    stride: int = 4,
) -> dict[str, np.ndarray]:
    """Targets for one sample; every coordinate is in network-input pixels.

    keypoints (K, 3) [x, y, v] and center (2,) of the main person; others_keypoints (M, K, 3) and
    others_centers (M, 2) of the other people in the input (M may be 0, or None for none).

    Returns float32 ``heatmaps`` (K, h, w) and ``centers`` (1, h, w); float32 ``reg_values``
    and ``offset_values`` (K, 2) [x, y], what the regs map holds at the center cell and the
    offsets map at each joint's cell (0 where the mask is 0; :func:`target_maps` builds the
    maps); ``reg_mask`` and ``offset_mask`` (K,); and int64 ``center_index`` (2,) [x, y] and
    ``joint_index`` (K, 2) [x, y] cells (0 where the mask is 0), which the loss uses to read
    predictions at the right cells.
    """
    if input_size % stride:
        raise ValueError(f"input size {input_size} is not a multiple of the stride {stride}")
    grid = input_size // stride
    kps = np.asarray(keypoints, np.float64).reshape(-1, 3)
    k = kps.shape[0]
    if others_keypoints is None or len(others_keypoints) == 0:
        others_kps, others_ctr = np.zeros((0, k, 3)), np.zeros((0, 2))
    else:
        others_kps = np.asarray(others_keypoints, np.float64).reshape(-1, k, 3)
        others_ctr = np.asarray(others_centers, np.float64).reshape(-1, 2)
    people = np.concatenate([kps[None], others_kps], axis=0)  # (P, K, 3), main person first
    centers_xy = np.concatenate([np.asarray(center, np.float64).reshape(1, 2), others_ctr])

    # Joints that carry a target: labelled and inside the input.
    valid = (people[..., 2] > 0) & inside_input(people[..., :2], input_size)  # (P, K)
    cells = point_cells(people[..., :2], stride, grid)  # (P, K, 2)
    size = person_sizes(people, stride)  # (P,)
    sigma = np.clip(cfg.sigma_scale * size, cfg.min_sigma, cfg.max_sigma)
    center_sigma = np.clip(cfg.center_sigma_scale * size, cfg.min_sigma, cfg.center_max_sigma)

    heatmaps = gaussian_maps(cells, sigma[:, None], valid, grid).max(axis=0)  # (K, h, w)
    # The main center is always encoded (clipped to the grid: regs need a cell); other people's
    # centers only when inside the input.
    center_cells = point_cells(centers_xy, stride, grid)  # (P, 2)
    center_valid = inside_input(centers_xy, input_size)
    center_valid[0] = True
    centers = gaussian_maps(center_cells, center_sigma, center_valid, grid).max(axis=0)[None]

    main_valid, main_cells, main_xy = valid[0], cells[0], people[0, :, :2]
    steps = main_cells - center_cells[0]  # whole cells from the center to each joint
    # p / stride - 0.5 - center lies in [steps - 0.5, steps + 0.5); keeping it a hair below the
    # upper end means float32 storage can never round it up into the next cell.
    reg_values = np.clip(main_xy / stride - 0.5 - center_cells[0], steps - 0.5, steps + REG_MARGIN)
    off_values = point_offsets(main_xy, stride, main_cells)
    keep = main_valid[:, None]
    mask = main_valid.astype(np.float32)
    return {
        "heatmaps": heatmaps.astype(np.float32),
        "centers": centers.astype(np.float32),
        "reg_values": np.where(keep, reg_values, 0.0).astype(np.float32),
        "offset_values": np.where(keep, off_values, 0.0).astype(np.float32),
        "reg_mask": mask,
        "offset_mask": mask.copy(),
        "center_index": center_cells[0].astype(np.int64),
        "joint_index": np.where(keep, main_cells, 0).astype(np.int64),
    }


def target_maps(targets: dict) -> tuple:
    """A batch of targets (torch tensors, a leading batch axis) as the network's four outputs
    (heatmaps, centers, regs, offsets: ``OUTPUT_NAMES``' order and shapes): the reg values
    written at each sample's center cell and the offset values at each joint's cell, zeros
    elsewhere, channel 2j = x and 2j + 1 = y of joint j. Decoding them gives the poses a
    perfect network would (the oracle of ``pkmodel.engine.evaluate``)."""
    heatmaps = targets["heatmaps"]
    n, k, h, w = heatmaps.shape
    regs = heatmaps.new_zeros((n, k, 2, h * w))
    offsets = heatmaps.new_zeros((n, k, 2, h * w))
    center = targets["center_index"].long()
    at_center = (center[:, 1] * w + center[:, 0])[:, None, None, None].expand(n, k, 2, 1)
    regs.scatter_(3, at_center, targets["reg_values"][..., None].to(regs.dtype))
    cells = targets["joint_index"].long()
    at_joint = (cells[..., 1] * w + cells[..., 0])[:, :, None, None].expand(n, k, 2, 1)
    # each joint writes its own channels; a masked joint's values are 0 (encode_targets)
    offsets.scatter_(3, at_joint, targets["offset_values"][..., None].to(offsets.dtype))
    shape = (n, 2 * k, h, w)
    return heatmaps, targets["centers"], regs.reshape(shape), offsets.reshape(shape)
