"""pkmodel's ReLU6 (backward from the output): the same forward and the same gradients as
PyTorch's, bit for bit, including inputs exactly at 0 and 6; PyTorch's own op wherever no
gradient is recorded, so exports do not change."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from pkmodel.config import ModelConfig
from pkmodel.model.activations import ReLU6, use_output_relu6
from pkmodel.model.network import build_model


def _swap_back(module: nn.Module) -> nn.Module:
    for name, child in module.named_children():
        if type(child) is ReLU6:
            setattr(module, name, nn.ReLU6(inplace=child.inplace))
        else:
            _swap_back(child)
    return module


def test_gradients_equal_pytorchs_at_the_edges_too():
    x = torch.tensor([-1.0, 0.0, 1e-7, 3.0, 6.0 - 1e-6, 6.0, 7.5]).repeat(3)
    grad = torch.arange(21, dtype=torch.float32)
    for inplace in (False, True):
        a = x.clone().requires_grad_()
        b = x.clone().requires_grad_()
        ya = nn.ReLU6(inplace=inplace)(a * 1.0)  # a non-leaf, as after a batch norm
        yb = ReLU6(inplace=inplace)(b * 1.0)
        ya.backward(grad)
        yb.backward(grad)
        assert torch.equal(ya, yb) and torch.equal(a.grad, b.grad)
    leaf = x.clone().requires_grad_()  # a leaf cannot be changed in place: the copying path
    ReLU6(inplace=True)(leaf).backward(grad)
    assert torch.equal(leaf.grad, ((x > 0) & (x < 6)).float() * grad)


@pytest.mark.filterwarnings("ignore:.*torch.jit.trace.*:FutureWarning")
@pytest.mark.parametrize("stem, count", [("mobilenetv2", 34), ("fused", 31)])
def test_posenet_trains_the_same_as_with_torchvisions_relu6(stem, count):
    cfg = ModelConfig(input_size=64, width_mult=0.35, neck_channels=16, head_channels=16, stem=stem)
    torch.manual_seed(0)
    ours = build_model(cfg, pretrained=False).train()
    theirs = _swap_back(copy.deepcopy(ours))
    # MobileNetV2's 34 activations; the fused stem has one where its three blocks had four
    assert sum(type(m) is ReLU6 for m in ours.modules()) == count
    assert not any(type(m) is ReLU6 for m in theirs.modules())
    x = torch.randn(4, 3, 64, 64).contiguous(memory_format=torch.channels_last)
    for model in (ours, theirs):
        model.to(memory_format=torch.channels_last)
        sum(o.float().square().mean() for o in model(x)).backward()
    for (name, p), q in zip(ours.named_parameters(), theirs.parameters(), strict=True):
        assert torch.equal(p.grad, q.grad), name
    # evaluation and export: PyTorch's own op, the same outputs
    ours.eval(), theirs.eval()
    with torch.no_grad():
        assert all(torch.equal(a, b) for a, b in zip(ours(x), theirs(x), strict=True))
    kinds = {node.kind() for node in torch.jit.trace(ours, x).inlined_graph.nodes()}
    assert "aten::relu6_" in kinds and not any("PythonOp" in k for k in kinds)


def test_use_output_relu6_keeps_other_modules_and_state():
    net = nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4), nn.ReLU6(inplace=True), nn.ReLU())
    state = copy.deepcopy(net.state_dict())
    use_output_relu6(net)
    assert type(net[2]) is ReLU6 and net[2].inplace and type(net[3]) is nn.ReLU
    assert net.state_dict().keys() == state.keys()
