"""The pose network: MobileNetV2 backbone, a light FPN-style neck to stride 4, four conv heads.

Its outputs are the contract of pkmodel.model.outputs (``OUTPUT_NAMES``, stride 4). The graph
is static (no data-dependent ops), so it exports to ONNX and Core ML.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from pkmodel.common.errors import PkmodelError, not_there
from pkmodel.common.skeleton import NUM_JOINTS
from pkmodel.config import ModelConfig
from pkmodel.model.activations import ReLU6, use_output_relu6
from pkmodel.model.outputs import OUTPUT_NAMES, OUTPUT_STRIDE
from pkmodel.model.torchfile import load_torch_file

# Heatmap and center heads start at sigmoid(bias) = 0.1, as CenterNet does, so the first
# steps are not spent pushing every pixel of a 0.5-initialised map down to the background.
HEATMAP_PRIOR = 0.1
HEATMAP_BIAS = -math.log((1.0 - HEATMAP_PRIOR) / HEATMAP_PRIOR)  # about -2.197


def conv_bn_relu(
    cin: int, cout: int, kernel: int = 1, stride: int = 1, groups: int = 1
) -> nn.Sequential:
    """Conv (no bias) + BatchNorm + ReLU, the basic unit of neck and heads."""
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


def depthwise_separable(cin: int, cout: int) -> nn.Sequential:
    """3x3 depthwise + 1x1 pointwise, each with BatchNorm and ReLU (MobileNet's cheap conv)."""
    return nn.Sequential(conv_bn_relu(cin, cin, 3, groups=cin), conv_bn_relu(cin, cout, 1))


class Head(nn.Module):
    """One output head: depthwise-separable 3x3 then a 1x1 projection to the output channels."""

    def __init__(self, cin: int, hidden: int, cout: int, bias: float = 0.0) -> None:
        super().__init__()
        self.body = depthwise_separable(cin, hidden)
        self.out = nn.Conv2d(hidden, cout, 1)
        nn.init.constant_(self.out.bias, bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.body(x))


def _block_stride_and_channels(block: nn.Module) -> tuple[int, int]:
    """Spatial stride and output channels of one MobileNetV2 feature block, read from its convs."""
    convs = [m for m in block.modules() if isinstance(m, nn.Conv2d)]
    return math.prod(c.stride[0] for c in convs), convs[-1].out_channels


def backbone_taps(features: nn.Sequential) -> tuple[list[int], list[int]]:
    """Indices of the last block at strides 4, 8, 16, 32 and their channel counts.

    Read from the built modules, so every width multiplier works. MobileNetV2's last block (the
    1x1 expansion to ``last_channel`` that feeds the classifier) is not used.
    """
    stride, taps, channels = 1, {}, {}
    for i, block in enumerate(list(features)[:-1]):
        s, c = _block_stride_and_channels(block)
        stride *= s
        taps[stride], channels[stride] = i, c
    wanted = (4, 8, 16, 32)
    missing = [s for s in wanted if s not in taps]
    if missing:  # pragma: no cover - torchvision's MobileNetV2 always has them
        raise RuntimeError(f"backbone has no feature map at stride {missing}")
    return [taps[s] for s in wanted], [channels[s] for s in wanted]


# The stems: how the backbone reaches stride 4 (``fused``) or 8 (``fused-s8``) before
# MobileNetV2's inverted residuals take over, and how many of MobileNetV2's blocks (torchvision
# ``features.0`` ..) each replaces.
STEM_REPLACES = {"mobilenetv2": 0, "fused": 3, "fused-s8": 5}
STEMS = tuple(STEM_REPLACES)


def fused_stem(features: nn.Sequential) -> nn.Sequential:
    """Two plain 3x3 stride-2 convs to stride 4, in place of MobileNetV2's first three blocks
    (a stride-2 conv, a depthwise-separable block, an inverted residual whose depthwise conv
    strides 2): the same stride and output channels (read from ``features``), at least 16
    channels between. At 192 px those blocks hold 176 channels of 96 x 96 maps that training
    writes, normalises and reads back; this stem 16. Like EfficientNetV2's fused early stages,
    a full 3x3 conv does better than depthwise ones where maps are large and channels few.
    The output is linear, as MobileNetV2's bottleneck is."""
    mid = max(16, _block_stride_and_channels(features[1])[1])
    out = _block_stride_and_channels(features[2])[1]
    return nn.Sequential(
        nn.Conv2d(3, mid, 3, 2, 1, bias=False),
        nn.BatchNorm2d(mid),
        ReLU6(inplace=True),
        nn.Conv2d(mid, out, 3, 2, 1, bias=False),
        nn.BatchNorm2d(out),
    )


class FusedResidual(nn.Module):
    """x + (3x3 conv -> BN -> ReLU6 -> 1x1 conv -> BN): EfficientNetV2's fused-MBConv with
    expansion 1, in place of MobileNetV2's stride-1 inverted residual at stride 4 (whose six-fold
    expansion writes 144 channels of 48 x 48 maps at 192 px, twice)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = fused_mbconv(channels, channels, expand=1, stride=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x)


def fused_mbconv(cin: int, cout: int, expand: int = 4, stride: int = 2) -> nn.Sequential:
    """3x3 conv (``stride``) to ``expand`` x ``cin`` -> BN -> ReLU6 -> 1x1 linear projection ->
    BN: EfficientNetV2's fused-MBConv. With stride 2 it stands in place of MobileNetV2's first
    stride-8 block (whose expansion runs at the finer stride 4)."""
    hidden = cin * expand
    return nn.Sequential(
        nn.Conv2d(cin, hidden, 3, stride, 1, bias=False),
        nn.BatchNorm2d(hidden),
        ReLU6(inplace=True),
        nn.Conv2d(hidden, cout, 1, bias=False),
        nn.BatchNorm2d(cout),
    )


def stem_blocks(features: nn.Sequential, stem: str) -> list[nn.Module]:
    """The blocks that stand for MobileNetV2's first ``STEM_REPLACES[stem]`` blocks."""
    if stem == "mobilenetv2":
        return []
    blocks: list[nn.Module] = [fused_stem(features)]
    if stem == "fused-s8":
        c4 = _block_stride_and_channels(features[3])[1]
        c8 = _block_stride_and_channels(features[4])[1]
        blocks += [FusedResidual(c4), fused_mbconv(c4, c8)]
    return blocks


class SharedHeads(nn.Module):
    """The four outputs from one head body: depthwise-separable 3x3 to ``hidden`` channels, then
    one 1x1 conv to every output's channels, split. Four separate bodies each write and
    normalise their own stride-4 maps; this one body does it once for all four."""

    def __init__(self, cin: int, hidden: int, channels: tuple[int, ...], biases: tuple) -> None:
        super().__init__()
        self.channels = channels
        self.body = depthwise_separable(cin, hidden)
        self.out = nn.Conv2d(hidden, sum(channels), 1)
        with torch.no_grad():
            start = 0
            for count, bias in zip(channels, biases, strict=True):
                self.out.bias[start : start + count] = bias
                start += count

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return torch.split(self.out(self.body(x)), list(self.channels), dim=1)


HEADS = ("separate", "shared")


class PoseNet(nn.Module):
    """MobileNetV2 features -> top-down neck to stride 4 -> heatmaps, centers, regs, offsets.

    Built by :func:`build_model` from ``model.*``, whose defaults are the only ones."""

    def __init__(
        self,
        *,
        width_mult: float,
        neck_channels: int,
        head_channels: int,
        input_size: int,
        stem: str,
        heads: str,
        num_joints: int = NUM_JOINTS,
    ) -> None:
        super().__init__()
        from torchvision.models import mobilenet_v2

        if stem not in STEMS:
            raise ValueError(f"unknown stem {stem!r}; choose one of {', '.join(STEMS)}")
        if heads not in HEADS:
            raise ValueError(f"unknown heads {heads!r}; choose one of {', '.join(HEADS)}")
        self.num_joints = num_joints
        self.input_size = input_size
        self.stride = OUTPUT_STRIDE
        self.output_names = OUTPUT_NAMES
        self.stem = stem
        self.heads = heads
        # torchvision's in-place ReLU6 makes autograd copy every activation; ours reads the
        # output in backward instead (pkmodel.model.activations): the same gradients, no copies
        features = use_output_relu6(mobilenet_v2(weights=None, width_mult=width_mult).features)
        stem_part = stem_blocks(features, stem)
        self.stem_blocks = len(stem_part)
        features = nn.Sequential(*stem_part, *list(features)[STEM_REPLACES[stem] :])
        taps, tap_channels = backbone_taps(features)
        self.taps = tuple(taps)
        # Blocks after the stride-32 tap are not needed.
        self.backbone = nn.Sequential(*list(features)[: taps[-1] + 1])
        self.tap_channels = tuple(tap_channels)

        # Lateral 1x1 convs bring every tap to the neck width; fuse convs smooth each sum.
        self.laterals = nn.ModuleList(conv_bn_relu(c, neck_channels) for c in tap_channels)
        self.fuse = nn.ModuleList(
            depthwise_separable(neck_channels, neck_channels) for _ in tap_channels[:-1]
        )
        k = num_joints
        channels, biases = (k, 1, 2 * k, 2 * k), (HEATMAP_BIAS, HEATMAP_BIAS, 0.0, 0.0)
        if heads == "shared":
            self.head = SharedHeads(neck_channels, head_channels, channels, biases)
        else:
            self.heatmap_head, self.center_head, self.reg_head, self.offset_head = (
                Head(neck_channels, head_channels, c, bias=b)
                for c, b in zip(channels, biases, strict=True)
            )

    def forward(
        self, x: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        feats = []
        for i, block in enumerate(self.backbone):
            x = block(x)
            if i in self.taps:
                feats.append(x)
        # Top-down: start at stride 32, upsample x2, add the lateral of the finer tap, fuse.
        y = self.laterals[-1](feats[-1])
        for level in range(len(feats) - 2, -1, -1):
            y = F.interpolate(y, scale_factor=2.0, mode="nearest")
            y = self.fuse[level](y + self.laterals[level](feats[level]))
        if self.heads == "shared":
            heatmaps, centers, regs, offsets = self.head(y)
        else:
            heatmaps, centers = self.heatmap_head(y), self.center_head(y)
            regs, offsets = self.reg_head(y), self.offset_head(y)
        return torch.sigmoid(heatmaps), torch.sigmoid(centers), regs, offsets

    def load_backbone_weights(self, path: Path) -> None:
        """Load an ImageNet MobileNetV2 state_dict (torchvision names) into the backbone; with
        a fused stem, every block after the ones it replaces (the stem starts from scratch)."""
        load_backbone_state(self.backbone, path, STEM_REPLACES[self.stem], self.stem_blocks)


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:

    if not path.is_file():
        raise PkmodelError(f"model.pretrained: backbone weights file {path} {not_there(path)}")
    state = load_torch_file(path, f"model.pretrained: {path} is not a state_dict")
    for key in ("state_dict", "model"):  # common wrappers
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise PkmodelError(f"model.pretrained: {path} does not hold a state_dict of tensors")
    return state


def load_backbone_state(
    backbone: nn.Sequential, path: Path, replaced: int = 0, own: int = 1
) -> None:
    """Copy ``features.*`` (or bare ``N.*``) weights of a MobileNetV2 state_dict into ``backbone``.

    Every backbone tensor must be present with the right shape (a file for another width
    multiplier fails here); the classifier and unused last block are ignored. With
    ``replaced`` = n, the backbone's first ``own`` blocks stand for MobileNetV2's first n blocks
    (a fused stem): they keep their own weights, and the file's block i fills the backbone's
    i - n + own.
    """
    state = _read_state_dict(Path(path))
    if any(k.startswith("features.") for k in state):
        state = {k[len("features.") :]: v for k, v in state.items() if k.startswith("features.")}
    if replaced:
        shifted = {}
        for key, value in state.items():
            block, _, rest = key.partition(".")
            if block.isdigit() and int(block) >= replaced:
                shifted[f"{int(block) - replaced + own}.{rest}"] = value
        stem = {k: v for k, v in backbone.state_dict().items() if int(k.partition(".")[0]) < own}
        state = {**shifted, **stem}
    own = backbone.state_dict()
    missing = [k for k in own if k not in state]
    if missing:
        raise PkmodelError(
            f"model.pretrained: {path} is not a MobileNetV2 state_dict for this backbone "
            f"({len(missing)} tensors missing, e.g. '{missing[0]}')"
        )
    wrong = [k for k in own if tuple(state[k].shape) != tuple(own[k].shape)]
    if wrong:
        k = wrong[0]
        raise PkmodelError(
            f"model.pretrained: {path} does not match model.width_mult ('{k}' has shape "
            f"{tuple(state[k].shape)}, the backbone needs {tuple(own[k].shape)})"
        )
    backbone.load_state_dict({k: state[k] for k in own}, strict=True)


def check_model_config(model_cfg: ModelConfig) -> None:
    """What ``build_model`` refuses, checked without building: the model section's rules and
    what the chosen arch allows (one PkmodelError)."""
    model_cfg.check()
    if model_cfg.arch == "posekit":
        from pkmodel.model.posekit import check_posekit_config

        check_posekit_config(model_cfg)


def build_model(
    model_cfg: ModelConfig, pretrained: bool = True, num_joints: int = NUM_JOINTS
) -> nn.Module:
    """Build the network the config describes (PoseNet, or PoseKitNet for arch posekit).

    With ``pretrained`` and ``model_cfg.pretrained`` set to a file, the backbone gets those local
    ImageNet weights (never downloaded); otherwise it is randomly initialised.
    """
    check_model_config(model_cfg)
    if model_cfg.arch == "posekit":
        from pkmodel.model.posekit import build_posekit

        return build_posekit(model_cfg, num_joints)
    model = PoseNet(
        width_mult=model_cfg.width_mult,
        neck_channels=model_cfg.neck_channels,
        head_channels=model_cfg.head_channels,
        num_joints=num_joints,
        input_size=model_cfg.input_size,
        stem=model_cfg.stem,
        heads=model_cfg.heads,
    )
    if pretrained and model_cfg.pretrained is not None and str(model_cfg.pretrained) != "":
        model.load_backbone_weights(Path(model_cfg.pretrained))
    return model


def output_shapes(model_cfg: ModelConfig, num_joints: int = NUM_JOINTS) -> dict[str, tuple]:
    """Per-sample output shapes (C, h, w) by name, derived from the config (no forward pass)."""
    model_cfg.check()
    g = model_cfg.input_size // OUTPUT_STRIDE
    channels = (num_joints, 1, 2 * num_joints, 2 * num_joints)
    return {name: (c, g, g) for name, c in zip(OUTPUT_NAMES, channels, strict=True)}


def count_macs(model: nn.Module, input_size: int, batch: int = 1) -> int:
    """Multiply-adds of one forward pass (conv and linear layers; FLOPs / 2 as torch counts them)."""
    from torch.utils.flop_counter import FlopCounterMode

    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(torch.zeros(batch, 3, input_size, input_size))
    finally:
        model.train(was_training)
    return int(counter.get_total_flops()) // 2


def layer_macs(model: nn.Module, input_size: int) -> dict[str, int]:
    """Multiply-adds of one batch-1 forward pass by layer: each top-level module's children
    (``backbone.3``, ``laterals.0``, ``heatmap_head.body``, ...), or the module itself when it
    has none; in forward order, layers without multiply-adds left out. They add up to
    :func:`count_macs`."""
    from torch.utils.flop_counter import FlopCounterMode

    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(torch.zeros(1, 3, input_size, input_size))
    finally:
        model.train(was_training)
    flops = {name: sum(ops.values()) for name, ops in counter.get_flop_counts().items()}
    root = type(model).__name__
    out: dict[str, int] = {}
    for name, child in model.named_children():
        parts = [(f"{name}.{n}", c) for n, c in child.named_children()] or [(name, child)]
        for part, _ in parts:
            macs = int(flops.get(f"{root}.{part}", 0)) // 2
            if macs:
                out[part] = macs
    return out


def model_summary(
    model_cfg: ModelConfig, num_joints: int = NUM_JOINTS, model: nn.Module | None = None
) -> dict:
    """Parameters, multiply-adds per image, input and output shapes of the configured network
    (``model``: that network already built, e.g. with a checkpoint's weights)."""
    if model is None:
        model = build_model(model_cfg, pretrained=False, num_joints=num_joints)
    size = model_cfg.input_size
    with torch.no_grad():
        outputs = model.eval()(torch.zeros(1, 3, size, size))
    return {
        "arch": model_cfg.arch,
        "input_size": size,
        "width_mult": model_cfg.width_mult,
        "stem": model_cfg.stem,
        "heads": model_cfg.heads,
        "neck_channels": model_cfg.neck_channels,
        "head_channels": model_cfg.head_channels,
        "backbone_channels": list(model.tap_channels),
        "parameters": sum(p.numel() for p in model.parameters()),
        "backbone_parameters": sum(p.numel() for p in model.backbone.parameters()),
        "macs": count_macs(model, size),
        "layer_macs": layer_macs(model, size),
        "input_shape": [1, 3, size, size],
        "outputs": {name: list(o.shape) for name, o in zip(OUTPUT_NAMES, outputs, strict=True)},
    }
