"""Activations whose backward reads their output, so that training keeps no copy of the input.

torchvision's MobileNetV2 uses ``nn.ReLU6(inplace=True)``. Its backward needs the input (the
gradient passes where ``0 < x < 6``), so autograd copies every activation before clamping it in
place: 34 copies of a batch's feature maps per step. The gradient is the same read from the
output (``0 < y < 6`` exactly where ``0 < x < 6``: clamping maps the rest to 0 or 6), which
:class:`ReLU6` saves instead. In evaluation mode, and wherever no gradient is recorded, it is
PyTorch's own ReLU6, so traced and exported graphs do not change.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _backward(grad: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """PyTorch's own fused ReLU6 backward (grad where 0 < input < 6), given the output: the
    same values, since the output equals the input exactly where it is inside (0, 6)."""
    return torch.ops.aten.hardtanh_backward(grad, y, 0.0, 6.0)


class _ReLU6(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, inplace: bool) -> torch.Tensor:  # type: ignore[override]
        if inplace:
            y = x.clamp_(0.0, 6.0)
            ctx.mark_dirty(x)
        else:
            y = x.clamp(0.0, 6.0)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:  # type: ignore[override]
        (y,) = ctx.saved_tensors
        return _backward(grad, y), None


class ReLU6(nn.ReLU6):
    """``nn.ReLU6`` (same name, same state) whose training backward reads its output."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and torch.is_grad_enabled() and x.requires_grad):
            return F.relu6(x, inplace=self.inplace)
        # in place where autograd allows it (not a leaf, not a view)
        return _ReLU6.apply(x, self.inplace and not x.is_leaf and x._base is None)


def use_output_relu6(module: nn.Module) -> nn.Module:
    """Replace every ``nn.ReLU6`` in ``module`` by :class:`ReLU6` (in place); returns it."""
    for name, child in module.named_children():
        if type(child) is nn.ReLU6:
            setattr(module, name, ReLU6(inplace=child.inplace))
        else:
            use_output_relu6(child)
    return module
