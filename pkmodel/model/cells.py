"""Training reads the regs and offsets at a few cells only: the sample's center cell and the
cells around each labelled joint (pkmodel.model.loss), about 150 of a 48 x 48 grid at 192 px.
Their maps end in a 1x1 conv, so the network can hand the loss that conv's input and weights
(a :class:`CellMap`) in place of the map, and the conv is computed at the cells read: the same
loss and gradients, without the two 2K-channel maps at every cell and their backward (about 7 %
of a training step's multiply-adds, in either network). The network does this only when asked
(:func:`use_cell_maps`, the trainer's and the benchmark's steps) and only in training mode:
evaluation, export and a library user's calls get the maps.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn


class CellMap(NamedTuple):
    """An N x C x h x w map as the N x F x h x w ``features`` of its last 1x1 conv, with that
    conv's ``weight`` (C x F) and ``bias`` (C)."""

    features: torch.Tensor
    weight: torch.Tensor
    bias: torch.Tensor

    @staticmethod
    def of(features: torch.Tensor, conv: nn.Conv2d, channels: slice = slice(None)) -> CellMap:
        """``conv``'s output channels ``channels`` over ``features``, left unconvolved."""
        bias = conv.bias if conv.bias is not None else conv.weight.new_zeros(conv.out_channels)
        return CellMap(features, conv.weight[channels, :, 0, 0], bias[channels])

    def float(self) -> CellMap:
        """As ``Tensor.float`` for the trainer's outputs under autocast: the features are cast
        where they are read (:func:`read_cells`), not all of them here."""
        return CellMap(self.features, self.weight.float(), self.bias.float())


def map_shape(maps: torch.Tensor | CellMap) -> tuple[int, int, int, int]:
    """N, C, h, w of ``maps``, a tensor or a :class:`CellMap`."""
    if isinstance(maps, CellMap):
        n, _, h, w = maps.features.shape
        return n, maps.weight.shape[0], h, w
    n, c, h, w = maps.shape
    return n, c, h, w


def read_cells(maps: torch.Tensor | CellMap, index: torch.Tensor) -> torch.Tensor:
    """N x C x h x w ``maps`` (a tensor or a :class:`CellMap`) at flat cell indices
    (y * w + x): ``index`` N x G x M, the C channels taken as G groups of C / G, group g read at
    its own M cells -> N x G x (C / G) x M."""
    n, g, m = index.shape
    if isinstance(maps, CellMap):
        f, h, w = maps.features.shape[1:]
        # one row of features per cell: a view of channels-last features (the trainer's), whose
        # gradient then comes back channels-last too (gathered along h * w, it came back NCHW,
        # and the head's backward ran in the slower layout)
        rows = maps.features.permute(0, 2, 3, 1).reshape(n * h * w, f)
        first = torch.arange(n, device=index.device).reshape(n, 1, 1) * (h * w)
        picked = rows[(first + index).reshape(-1)].reshape(n, g, m, f).to(maps.weight.dtype)
        weight = maps.weight.reshape(g, -1, f)
        return torch.einsum("ngmf,gcf->ngcm", picked, weight) + maps.bias.reshape(g, -1, 1)
    c, h, w = maps.shape[1:]
    flat = maps.reshape(n, g, c // g, h * w)
    return flat.gather(3, index[:, :, None, :].expand(n, g, c // g, m))


def use_cell_maps(model: nn.Module, on: bool = True) -> nn.Module:
    """``model`` (pkmodel's network or PoseKit's) returns its regs and offsets as
    :class:`CellMap` in training mode; in place."""
    model.cell_maps = on
    return model
