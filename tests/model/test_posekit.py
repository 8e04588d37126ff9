"""model.arch posekit: PoseKitNet has movenet.pytorch's state-dict keys and shapes, gives
pkmodel's outputs, and PoseKit .pth files (plain, DataParallel, wrapped) load as checkpoints."""

from __future__ import annotations

import pytest
import torch

from pkmodel.common.errors import PkmodelError
from pkmodel.config import Config, ModelConfig
from pkmodel.model.checkpoint import load_checkpoint, model_from_checkpoint
from pkmodel.model.network import build_model, model_summary
from pkmodel.model.posekit import PoseKitNet, posekit_state_dict

# --- movenet.pytorch's keys, written from lib/models/movenet_mobilenetv2.py (fire717, f739196) ---


def _conv(key, cout, cin, k, bias=False):
    out = {f"{key}.weight": (cout, cin, k, k)}
    return {**out, f"{key}.bias": (cout,)} if bias else out


def _bn(key, c):
    names = ("weight", "bias", "running_mean", "running_var")
    return {**{f"{key}.{n}": (c,) for n in names}, f"{key}.num_batches_tracked": ()}


def _conv_bn(key, cin, cout, k):  # conv_3x3_act / conv_1x1_act / conv_1x1_act2: [conv, bn, relu]
    return {**_conv(f"{key}.0", cout, cin, k), **_bn(f"{key}.1", cout)}


def _dw_conv(key, cin, cout):  # [dw, bn, relu, pw, bn]
    return {**_conv(f"{key}.0", cin, 1, 3), **_bn(f"{key}.1", cin),
            **_conv(f"{key}.3", cout, cin, 1), **_bn(f"{key}.4", cout)}  # fmt: skip


def _dw_conv3(key, cin, cout):  # [dw, bn, pw, bn, relu]
    return {**_conv(f"{key}.0", cin, 1, 3), **_bn(f"{key}.1", cin),
            **_conv(f"{key}.2", cout, cin, 1), **_bn(f"{key}.3", cout)}  # fmt: skip


def _ir_body(key, cin, hidden, cout, dw_bias):  # [pw, bn, relu, dw, bn, relu, pw, bn]
    return {**_conv(f"{key}.0", hidden, cin, 1), **_bn(f"{key}.1", hidden),
            **_conv(f"{key}.3", hidden, 1, 3, dw_bias), **_bn(f"{key}.4", hidden),
            **_conv(f"{key}.6", cout, hidden, 1), **_bn(f"{key}.7", cout)}  # fmt: skip


def _inverted_residual(key, cin, cout, n):  # expand_ratio 6; conv1's dw conv has bias=True
    out = _ir_body(f"{key}.conv1", cin, cin * 6, cout, True)
    for i in range(n):
        out.update(_ir_body(f"{key}.conv2.{i}", cout, cin * 6, cout, False))
    return out


def _upsample(key, cin, cout):  # [dw conv with bias, relu, conv_1x1_act2, Upsample]
    return {**_conv(f"{key}.0", cin, 1, 3, bias=True), **_conv_bn(f"{key}.2", cin, cout, 1)}


def movenet_keys(num_classes=17):
    b, h = "backbone", "header"
    keys = {
        **_conv_bn(f"{b}.features1.0", 3, 32, 3),
        **_dw_conv(f"{b}.features1.1", 32, 16),
        **_inverted_residual(f"{b}.features1.2", 16, 24, 1),
        **_inverted_residual(f"{b}.features2", 24, 32, 2),
        **_inverted_residual(f"{b}.features3", 32, 64, 3),
        **_inverted_residual(f"{b}.features4.0", 64, 96, 2),
        **_inverted_residual(f"{b}.features4.1", 96, 160, 2),
        **_inverted_residual(f"{b}.features4.2", 160, 320, 0),
        **_conv_bn(f"{b}.features4.3", 320, 1280, 1),
        **_conv(f"{b}.features4.4", 64, 1280, 1),
        **_upsample(f"{b}.upsample2", 64, 32),
        **_upsample(f"{b}.upsample1", 32, 24),
        **_conv(f"{b}.conv3", 64, 64, 1, bias=True),
        **_conv(f"{b}.conv2", 32, 32, 1, bias=True),
        **_conv(f"{b}.conv1", 24, 24, 1, bias=True),
        **_dw_conv3(f"{b}.conv4", 24, 24),
    }
    for name, c in (("heatmaps", num_classes), ("centers", 1), ("regs", 2 * num_classes),
                    ("offsets", 2 * num_classes)):  # fmt: skip
        keys.update(_dw_conv3(f"{h}.header_{name}.0", 24, 96))
        keys.update(_conv(f"{h}.header_{name}.1", c, 96, 1, bias=True))
    return keys


def test_state_dict_keys_and_shapes_are_movenet_pytorchs():
    expected = movenet_keys()
    own = {k: tuple(v.shape) for k, v in PoseKitNet().state_dict().items()}
    assert sorted(own) == sorted(expected)
    assert own == expected
    assert len(own) == 409 and sum(1 for _ in PoseKitNet().conv_layers()) == 74


def test_outputs_are_pkmodels_order_stride_4_sigmoid_on_maps():
    torch.manual_seed(0)
    model = PoseKitNet().eval()
    with torch.no_grad():
        heat, center, regs, offsets = model(torch.rand(2, 3, 192, 192) * 2 - 1)
    assert heat.shape == (2, 17, 48, 48) and center.shape == (2, 1, 48, 48)
    assert regs.shape == (2, 34, 48, 48) and offsets.shape == (2, 34, 48, 48)
    assert heat.min() >= 0 and heat.max() <= 1 and center.min() >= 0 and center.max() <= 1
    assert regs.min() < 0  # no sigmoid on the vector fields
    with torch.no_grad():  # any multiple of 32
        assert model(torch.zeros(1, 3, 256, 256))[0].shape == (1, 17, 64, 64)


def test_build_model_and_summary_for_arch_posekit():
    cfg = ModelConfig(arch="posekit", input_size=256)
    model = build_model(cfg, pretrained=False)
    assert isinstance(model, PoseKitNet) and model.input_size == 256
    info = model_summary(cfg)
    assert info["arch"] == "posekit" and info["outputs"]["heatmaps"] == [1, 17, 64, 64]
    # movenet.pytorch's network at 192: the seed's 228.6 M multiply-adds (issue #25's figure).
    assert model_summary(ModelConfig(arch="posekit"))["macs"] == 228_635_136
    assert info["parameters"] == sum(p.numel() for p in PoseKitNet().parameters())
    with pytest.raises(PkmodelError, match=r"model.width_mult 0.5 .*fixed width 1.0"):
        build_model(ModelConfig(arch="posekit", width_mult=0.5), pretrained=False)
    assert ModelConfig().arch == "pkmodel"


def _posekit_weights(seed: int = 1) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    model = PoseKitNet()
    with torch.no_grad():  # non-trivial batch norms, so a wrong mapping would show
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.1, 0.1)
    return model.state_dict()


@pytest.mark.parametrize("variant", ["plain", "module", "wrapped", "old_torch"])
def test_a_posekit_pth_loads_as_a_checkpoint(tmp_path, variant):
    weights = _posekit_weights()
    saved = dict(weights)
    if variant == "module":  # saved from nn.DataParallel
        saved = {f"module.{k}": v for k, v in weights.items()}
    elif variant == "wrapped":
        saved = {"state_dict": weights, "epoch": torch.tensor(118)}
    elif variant == "old_torch":  # no num_batches_tracked
        saved = {k: v for k, v in weights.items() if not k.endswith("num_batches_tracked")}
    path = tmp_path / "e118_valacc0.79805.pth"
    torch.save(saved, path)

    model, cfg, raw = model_from_checkpoint(path)
    assert isinstance(model, PoseKitNet) and not model.training
    assert cfg.model.arch == "posekit" and cfg.model.input_size == 192
    assert raw["source"] == "posekit" and raw["ema"] is None
    reference = PoseKitNet().eval()
    reference.load_state_dict(weights)
    x = torch.rand(1, 3, 192, 192) * 2 - 1
    with torch.no_grad():
        for a, b in zip(model(x), reference(x), strict=True):
            assert torch.equal(a, b)


def test_other_state_dicts_keep_their_errors(tmp_path):
    weights = _posekit_weights()
    path = tmp_path / "x.pth"
    partial = {k: v for k, v in weights.items() if not k.startswith("header.header_offsets")}
    wrong = {**weights, "header.header_heatmaps.1.weight": torch.zeros(19, 96, 1, 1)}
    for bad in (partial, wrong, {"a": torch.zeros(1)}, {**weights, "extra": torch.zeros(1)}):
        assert posekit_state_dict(bad) is None
        torch.save(bad, path)
        with pytest.raises(PkmodelError, match="is not a pkmodel checkpoint"):
            load_checkpoint(path)
    assert posekit_state_dict({"module.x": weights["backbone.conv1.bias"]}) is None


def test_a_pkmodel_checkpoint_with_arch_posekit_round_trips(tmp_path):
    from pkmodel.model.checkpoint import save_checkpoint

    cfg = Config()
    cfg.set("model.arch", "posekit", "test")
    weights = _posekit_weights(2)
    save_checkpoint(tmp_path / "last.pt", {"model": weights, "ema": None, "config": cfg.to_dict()})
    model, saved, raw = model_from_checkpoint(tmp_path / "last.pt")
    assert isinstance(model, PoseKitNet) and saved.model.arch == "posekit"
    assert "source" not in raw
    assert torch.equal(
        model.state_dict()["header.header_regs.1.bias"], weights["header.header_regs.1.bias"]
    )
