"""Import the PoseKit app's compiled Core ML model into ``PoseKitNet`` (``model.arch posekit``).

The app's ``pkmodel.mlmodelc`` is movenet.pytorch's network converted by coremltools, batch norm
folded into the convolutions. Its ``model.mil`` names each conv's weight after the PyTorch module
(``self_backbone_features1_0_0_weight_fused_bn_to_fp16`` is ``backbone.features1.0.0``); its bias
is the folded one (an anonymous constant where the PyTorch conv had none). Every conv of the
program is matched to PoseKitNet's by that name, and the shapes must agree.

Folding cannot be undone (the batch statistics are gone), so each folded batch norm becomes an
exact identity plus the folded bias: weight 1, running mean 0, running variance ``1 - eps`` (so
``sqrt(var + eps) = 1``), bias = the folded bias where the conv has no bias of its own (movenet's
convs before a batch norm have none, except the stage's first depthwise conv, which gets it in
its own bias and a zero BN bias). The weights are the app's FP16 values, held in float32.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch

from pkmodel.common.errors import PkmodelError
from pkmodel.config import Config
from pkmodel.mlprogram.program import Ref
from pkmodel.mlprogram.run import CoreMLProgram, is_coreml_path
from pkmodel.model.checkpoint import load_checkpoint
from pkmodel.model.posekit import POSEKIT_INPUT_SIZE, PoseKitNet, posekit_config_dict

_WEIGHT_SUFFIXES = ("_weight_fused_bn_to_fp16", "_weight_to_fp16", "_weight_fused_bn", "_weight")


def _module_name(constant: str) -> str:
    """``self_backbone_conv3_weight_to_fp16`` -> ``backbone_conv3`` (dots written as _)."""
    name = constant.removeprefix("self_")
    for suffix in _WEIGHT_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def import_posekit_app(path: str | Path) -> dict[str, torch.Tensor]:
    """A PoseKitNet state dict holding the weights of the app's compiled model at ``path``."""
    program = CoreMLProgram(path)
    p = program.program
    convs = [op for op in p.ops if op.type == "conv"]
    net = PoseKitNet()
    layers = {name.replace(".", "_"): (name, conv, bn) for name, conv, bn in net.conv_layers()}
    if p.image is not None and p.image.width != POSEKIT_INPUT_SIZE:
        raise PkmodelError(
            f"{path} takes {p.image.width} x {p.image.height} images; PoseKit's network is "
            f"imported at {POSEKIT_INPUT_SIZE} x {POSEKIT_INPUT_SIZE}"
        )
    if len(convs) != len(layers):
        raise PkmodelError(
            f"{path} is not PoseKit's network ({len(convs)} convolutions, PoseKit's has "
            f"{len(layers)})"
        )

    def constant(op: Any, key: str) -> torch.Tensor | None:
        arg = op.inputs.get(key)
        if arg is None:
            return None
        name = arg.name if isinstance(arg, Ref) else str(arg)
        value = program.constants.get(name)
        if not isinstance(value, torch.Tensor):
            raise PkmodelError(f"{path}: conv {op.name} has a {key} that is not a constant")
        return value.detach().float().clone()

    seen = set()
    with torch.no_grad():
        for op in convs:
            weight_arg = op.inputs.get("weight")
            key = _module_name(weight_arg.name if isinstance(weight_arg, Ref) else "")
            if key not in layers or key in seen:
                raise PkmodelError(
                    f"{path} is not PoseKit's network (conv {op.name} has weights "
                    f"'{weight_arg.name if isinstance(weight_arg, Ref) else weight_arg}', "
                    "which name no PoseKit layer once)"
                )
            seen.add(key)
            name, conv, bn = layers[key]
            weight, bias = constant(op, "weight"), constant(op, "bias")
            if tuple(weight.shape) != tuple(conv.weight.shape):
                raise PkmodelError(
                    f"{path}: layer {name} has weights of shape {tuple(weight.shape)}, "
                    f"PoseKit's network needs {tuple(conv.weight.shape)}"
                )
            conv.weight.copy_(weight)
            bias = torch.zeros(conv.out_channels) if bias is None else bias.reshape(-1)
            if bn is not None:  # folded: BN is the identity, the folded bias goes in once
                bn.weight.fill_(1.0)
                bn.running_mean.zero_()
                bn.running_var.fill_(1.0 - bn.eps)
                bn.bias.zero_()
                target = conv.bias if conv.bias is not None else bn.bias
                target.copy_(bias)
            elif conv.bias is not None:
                conv.bias.copy_(bias)
            elif bias.abs().max() > 0:
                raise PkmodelError(f"{path}: layer {name} has a bias PoseKit's network lacks")
    return net.state_dict()


def finetune_weights(cfg: Config, path: str | Path) -> dict[str, torch.Tensor]:
    """The weights ``train.finetune`` starts from: a pkmodel checkpoint's (EMA first), a PoseKit
    ``.pth``'s, or the app's Core ML model imported. The last two are PoseKit's network, so they
    set ``model.arch = "posekit"`` (and its fixed ``width_mult`` 1) in ``cfg``; the input size
    stays the configured one (the weights fit any multiple of 32; the app runs 192)."""
    source = f"train.finetune {path}"
    if is_coreml_path(path):
        state = import_posekit_app(path)
        saved = posekit_config_dict()
    else:
        checkpoint = load_checkpoint(path)
        state = checkpoint.get("ema") or checkpoint["model"]
        saved = checkpoint["config"] if checkpoint.get("source") == "posekit" else None
    if saved is not None and cfg.model.arch != "posekit":
        cfg.set("model.arch", "posekit", source)
        cfg.set("model.width_mult", 1.0, source)  # PoseKit's width is fixed
    return state


def calibrate_batch_norms(model: torch.nn.Module, batches: Iterable[torch.Tensor]) -> int:
    """Give every batch norm of ``model`` running statistics measured on ``batches`` (images as
    the network takes them), keeping the eval-mode function exactly.

    An imported app network's batch norms are identities (``import_posekit_app``): in training
    mode they would normalise by the batch's statistics instead and change what the network
    computes from the first step. Re-expressing each ``y = g0 (x - m0) / s0 + b0`` with the
    measured mean ``m`` and deviation ``s = sqrt(var + eps)`` as ``y = g (x - m) / s + b``,
    ``g = g0 s / s0``, ``b = b0 + g0 (m - m0) / s0``, gives the same eval outputs and training-mode
    outputs close to them. Returns the number of images measured."""
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    sums: dict[int, list[torch.Tensor]] = {}

    def record(module: torch.nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
        x = inputs[0].detach().double().transpose(0, 1).flatten(1)
        total = sums.setdefault(id(module), [x.new_zeros(len(x)), x.new_zeros(len(x)), 0])
        total[0] += x.sum(1)
        total[1] += (x * x).sum(1)
        total[2] += x.shape[1]

    hooks = [m.register_forward_pre_hook(record) for m in norms]
    was_training = model.training
    model.eval()
    images = 0
    try:
        with torch.no_grad():
            for batch in batches:
                model(batch)
                images += len(batch)
    finally:
        for hook in hooks:
            hook.remove()
        model.train(was_training)
    if images == 0:
        return 0
    with torch.no_grad():
        for bn in norms:
            total, squares, count = sums[id(bn)]
            mean = total / count
            var = (squares / count - mean * mean).clamp_min(0)
            s0 = (bn.running_var.double() + bn.eps).sqrt()
            s = (var + bn.eps).sqrt()
            g0, b0, m0 = bn.weight.double(), bn.bias.double(), bn.running_mean.double()
            bn.bias.copy_(b0 + g0 * (mean - m0) / s0)
            bn.weight.copy_(g0 * s / s0)
            bn.running_mean.copy_(mean)
            bn.running_var.copy_(var)
    return images
