"""PoseKit's network (movenet.pytorch's MobileNetV2 MoveNet) in pkmodel, and its .pth files.

``model.arch = "posekit"`` builds ``PoseKitNet``: the network PoseKitModel trains and the PoseKit
app ships, with movenet.pytorch's module names, so its state-dict keys are PoseKit's and a PoseKit
``.pth`` loads as it is. Only the conventions are pkmodel's:

- the input is already normalised (``x / 127.5 - 1``, pkmodel's input); movenet.pytorch's
  backbone does that division itself on 0..255 pixels, so the weights are the same;
- the outputs are the tuple (heatmaps, centers, regs, offsets) of ``OUTPUT_NAMES``, sigmoid on
  heatmaps and centers (inside the heads, as in movenet.pytorch), stride 4 (48 x 48 at 192).

Fixed by the design (movenet.pytorch accepts ``width_mult`` but ignores it): width 1.0, a
64-channel neck narrowing to 24 at stride 4, 96-channel heads. ``input_size`` is free (a multiple
of 32), ``num_joints`` too; PoseKit's files are 17 joints at 192.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import torch
from torch import nn

from pkmodel.common.errors import PkmodelError
from pkmodel.common.skeleton import NUM_JOINTS
from pkmodel.config import ModelConfig
from pkmodel.model.outputs import OUTPUT_NAMES, OUTPUT_STRIDE

POSEKIT_INPUT_SIZE = 192  # what PoseKitModel trains and the app runs
_FIRST_CHANNELS = 32  # MobileNetV2's stem
_EXPAND = 6  # MobileNetV2's expansion ratio in every inverted residual


# Small blocks, named after the movenet.pytorch helpers they mirror. The Sequential indices
# are part of the state-dict keys, so each keeps movenet.pytorch's layer order exactly.


def conv_bn_act(cin: int, cout: int, kernel: int, stride: int = 1) -> nn.Sequential:
    """Conv (no bias) -> BN -> ReLU (movenet.pytorch's conv_3x3_act / conv_1x1_act)."""
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel, stride, kernel // 2, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


def dw_pw_linear(cin: int, cout: int) -> nn.Sequential:
    """Depthwise 3x3 -> BN -> ReLU -> pointwise -> BN, no final ReLU (dw_conv, the stem's)."""
    return nn.Sequential(
        nn.Conv2d(cin, cin, 3, 1, 1, groups=cin, bias=False),
        nn.BatchNorm2d(cin),
        nn.ReLU(inplace=True),
        nn.Conv2d(cin, cout, 1, bias=False),
        nn.BatchNorm2d(cout),
    )


def dw_pw_act(cin: int, cout: int) -> nn.Sequential:
    """Depthwise 3x3 -> BN -> pointwise -> BN -> ReLU, no ReLU between (dw_conv3: neck, heads)."""
    return nn.Sequential(
        nn.Conv2d(cin, cin, 3, 1, 1, groups=cin, bias=False),
        nn.BatchNorm2d(cin),
        nn.Conv2d(cin, cout, 1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


def expand_dw_project(
    cin: int, hidden: int, cout: int, stride: int, dw_bias: bool
) -> nn.Sequential:
    """MobileNetV2's inverted residual body: 1x1 expand, 3x3 depthwise, 1x1 linear projection."""
    return nn.Sequential(
        nn.Conv2d(cin, hidden, 1, bias=False),
        nn.BatchNorm2d(hidden),
        nn.ReLU(inplace=True),
        nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=dw_bias),
        nn.BatchNorm2d(hidden),
        nn.ReLU(inplace=True),
        nn.Conv2d(hidden, cout, 1, bias=False),
        nn.BatchNorm2d(cout),
    )


class InvertedResidual(nn.Module):
    """movenet.pytorch's stage: ``conv1`` changes channels / stride (no skip; its depthwise conv
    has a bias), then ``n`` residual blocks ``conv2[i]`` at the output width."""

    def __init__(self, cin: int, cout: int, stride: int, repeats: int) -> None:
        super().__init__()
        hidden = cin * _EXPAND
        self.conv1 = expand_dw_project(cin, hidden, cout, stride, dw_bias=True)
        self.conv2 = nn.ModuleList(
            expand_dw_project(cout, hidden, cout, 1, dw_bias=False) for _ in range(repeats)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(x)
        for block in self.conv2:
            x = x + block(x)
        return x


def upsample_block(cin: int, cout: int) -> nn.Sequential:
    """Depthwise 3x3 (with bias, no BN) -> ReLU -> 1x1 conv-BN-ReLU -> bilinear x2."""
    return nn.Sequential(
        nn.Conv2d(cin, cin, 3, 1, 1, groups=cin),
        nn.ReLU(inplace=True),
        conv_bn_act(cin, cout, 1),
        nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
    )


class Backbone(nn.Module):
    """MobileNetV2 to stride 32, then a top-down neck back to 24 channels at stride 4."""

    def __init__(self) -> None:
        super().__init__()
        self.features1 = nn.Sequential(  # stride 4, 24 channels
            conv_bn_act(3, _FIRST_CHANNELS, 3, stride=2),
            dw_pw_linear(_FIRST_CHANNELS, 16),
            InvertedResidual(16, 24, 2, 1),
        )
        self.features2 = InvertedResidual(24, 32, 2, 2)  # stride 8
        self.features3 = InvertedResidual(32, 64, 2, 3)  # stride 16
        self.features4 = nn.Sequential(  # stride 32, back to 64 channels at stride 16
            InvertedResidual(64, 96, 1, 2),
            InvertedResidual(96, 160, 2, 2),
            InvertedResidual(160, 320, 1, 0),
            conv_bn_act(320, 1280, 1),
            nn.Conv2d(1280, 64, 1, bias=False),
            nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
        )
        self.upsample2 = upsample_block(64, 32)
        self.upsample1 = upsample_block(32, 24)
        # Lateral 1x1 convs (with bias) on the skip connections at strides 16, 8, 4.
        self.conv3 = nn.Conv2d(64, 64, 1)
        self.conv2 = nn.Conv2d(32, 32, 1)
        self.conv1 = nn.Conv2d(24, 24, 1)
        self.conv4 = dw_pw_act(24, 24)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f1 = self.features1(x)
        f2 = self.features2(f1)
        f3 = self.features3(f2)
        y = self.features4(f3) + self.conv3(f3)
        y = self.upsample2(y) + self.conv2(f2)
        y = self.upsample1(y) + self.conv1(f1)
        return self.conv4(y)


def head(cout: int, sigmoid: bool) -> nn.Sequential:
    """dw_conv3 to 96 channels, a 1x1 projection with bias, sigmoid for the heat maps."""
    layers = [dw_pw_act(24, 96), nn.Conv2d(96, cout, 1)]
    return nn.Sequential(*layers, *([nn.Sigmoid()] if sigmoid else []))


class Header(nn.Module):
    """The four heads, in movenet.pytorch's (and pkmodel's) output order."""

    def __init__(self, num_joints: int) -> None:
        super().__init__()
        self.header_heatmaps = head(num_joints, sigmoid=True)
        self.header_centers = head(1, sigmoid=True)
        self.header_regs = head(2 * num_joints, sigmoid=False)
        self.header_offsets = head(2 * num_joints, sigmoid=False)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return (
            self.header_heatmaps(x),
            self.header_centers(x),
            self.header_regs(x),
            self.header_offsets(x),
        )


class PoseKitNet(nn.Module):
    """PoseKit's MoveNet: ``backbone`` then ``header``; inputs ``x / 127.5 - 1``."""

    def __init__(self, num_joints: int = NUM_JOINTS, input_size: int = POSEKIT_INPUT_SIZE) -> None:
        super().__init__()
        self.num_joints = num_joints
        self.input_size = input_size
        self.stride = OUTPUT_STRIDE
        self.output_names = OUTPUT_NAMES
        self.tap_channels = (24, 32, 64, 320)  # backbone channels at strides 4, 8, 16, 32
        self.backbone = Backbone()
        self.header = Header(num_joints)
        for m in self.modules():  # movenet.pytorch's initialisation
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(
        self, x: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        heatmaps, centers, regs, offsets = self.header(self.backbone(x))
        return heatmaps, centers, regs, offsets

    def conv_layers(self) -> Iterator[tuple[str, nn.Conv2d, nn.BatchNorm2d | None]]:
        """Every conv by module name, with the batch norm that directly follows it (or None)."""
        modules = dict(self.named_modules())
        for name, conv in modules.items():
            if not isinstance(conv, nn.Conv2d):
                continue
            parent, _, index = name.rpartition(".")
            after = f"{parent}.{int(index) + 1}" if index.isdigit() else ""
            bn = modules.get(after) if isinstance(modules[parent], nn.Sequential) else None
            yield name, conv, bn if isinstance(bn, nn.BatchNorm2d) else None


# --- PoseKit .pth files -------------------------------------------------------------------

_WRAPPERS = ("state_dict", "model_state_dict", "model", "net")


def posekit_state_dict(state: Any, num_joints: int = NUM_JOINTS) -> dict[str, torch.Tensor] | None:
    """The PoseKitNet weights in a loaded ``.pth`` object, or None when it is not one.

    PoseKitModel's train.py saves ``model.state_dict()`` as it is; a file saved from a
    ``DataParallel`` model has ``module.`` before every key, and a dict wrapping the weights
    under ``state_dict`` / ``model`` is accepted too. The keys and shapes must be exactly
    PoseKitNet's (extra or missing tensors: not a PoseKit file).
    """
    for key in _WRAPPERS:
        if isinstance(state, Mapping) and isinstance(state.get(key), Mapping):
            state = state[key]
            break
    if not isinstance(state, Mapping) or not state:
        return None
    if not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
        return None
    if all(k.startswith("module.") for k in state):
        state = {k[len("module.") :]: v for k, v in state.items()}
    expected = {k: tuple(v.shape) for k, v in PoseKitNet(num_joints).state_dict().items()}
    # num_batches_tracked is optional: older PyTorch did not save it.
    required = {k for k in expected if not k.endswith("num_batches_tracked")}
    if not required <= set(state) or not set(state) <= set(expected):
        return None
    if any(tuple(state[k].shape) != expected[k] for k in state):
        return None
    missing = {k: torch.tensor(0) for k in expected if k not in state}
    return {**state, **missing}


def posekit_config_dict() -> dict[str, dict[str, Any]]:
    """The saved-config of a PoseKit file: pkmodel's defaults, arch posekit, input 192."""
    from pkmodel.config import Config

    cfg = Config()
    cfg.set("model.arch", "posekit", "PoseKit file")
    cfg.set("model.input_size", POSEKIT_INPUT_SIZE, "PoseKit file")
    return cfg.to_dict()


def check_posekit_config(model_cfg: ModelConfig) -> None:
    """PoseKit's widths are fixed: a ``width_mult`` other than 1 is one PkmodelError (neck /
    head channels and ``pretrained`` do not apply)."""
    if model_cfg.width_mult != 1.0:
        raise PkmodelError(
            f"model.width_mult {model_cfg.width_mult:g} is not available for model.arch "
            "'posekit' (PoseKit's network has a fixed width 1.0)"
        )


def build_posekit(model_cfg: ModelConfig, num_joints: int = NUM_JOINTS) -> PoseKitNet:
    """PoseKitNet for ``model.arch = "posekit"``: input size and joints from the config
    (``check_posekit_config`` says what else it refuses)."""
    check_posekit_config(model_cfg)
    return PoseKitNet(num_joints=num_joints, input_size=model_cfg.input_size)
