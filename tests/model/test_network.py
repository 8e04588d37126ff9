"""The network: shapes at 192 / 256, any width, head priors, local ImageNet weights, size figures."""

from __future__ import annotations

import io
import warnings

import pytest
import torch
from typer.testing import CliRunner

from pkmodel.cli import app
from pkmodel.common.errors import PkmodelError
from pkmodel.config import ModelConfig, load_config
from pkmodel.model.network import (
    HEATMAP_BIAS,
    build_model,
    count_macs,
    layer_macs,
    model_summary,
    output_shapes,
)
from pkmodel.model.outputs import OUTPUT_NAMES

K = 17


def _shapes(outputs):
    return [tuple(o.shape) for o in outputs]


def _expected(n, size):
    g = size // 4
    return [(n, K, g, g), (n, 1, g, g), (n, 2 * K, g, g), (n, 2 * K, g, g)]


@pytest.mark.parametrize("batch", [1, 64])
def test_forward_192_width_1_on_cpu(batch):
    model = build_model(ModelConfig(input_size=192, width_mult=1.0), pretrained=False).eval()
    x = torch.rand(batch, 3, 192, 192) * 2 - 1
    with torch.no_grad():
        out = model(x)
    assert len(out) == len(OUTPUT_NAMES) == 4
    assert _shapes(out) == _expected(batch, 192)
    heat, centers = out[0], out[1]
    assert heat.min() >= 0 and heat.max() <= 1 and centers.min() >= 0 and centers.max() <= 1
    assert all(torch.isfinite(o).all() for o in out)


def test_forward_256_and_output_shapes_helper():
    cfg = ModelConfig(input_size=256, width_mult=1.0)
    model = build_model(cfg, pretrained=False).eval()
    with torch.no_grad():
        out = model(torch.zeros(2, 3, 256, 256))
    assert _shapes(out) == _expected(2, 256)
    assert [(2, *s) for s in output_shapes(cfg).values()] == _expected(2, 256)


@pytest.mark.parametrize("width", [0.35, 0.5, 0.75, 1.3])
def test_every_width_builds_and_changes_the_backbone(width):
    model = build_model(ModelConfig(input_size=96, width_mult=width), pretrained=False).eval()
    with torch.no_grad():
        out = model(torch.zeros(1, 3, 96, 96))
    assert _shapes(out) == _expected(1, 96)
    # Channel counts follow the width (read from the modules, not hard-coded).
    ref = build_model(ModelConfig(input_size=96, width_mult=1.0), pretrained=False)
    if width < 1.0:
        assert model.tap_channels[-1] < ref.tap_channels[-1]
    else:
        assert model.tap_channels[-1] > ref.tap_channels[-1]


def test_heads_start_at_the_centernet_prior():
    cfg = ModelConfig(input_size=64, width_mult=0.35, heads="separate")
    model = build_model(cfg, pretrained=False)
    assert abs(HEATMAP_BIAS + 2.1972) < 1e-3
    assert torch.allclose(model.heatmap_head.out.bias, torch.full((K,), HEATMAP_BIAS))
    assert torch.allclose(model.center_head.out.bias, torch.tensor([HEATMAP_BIAS]))
    assert torch.sigmoid(torch.tensor(HEATMAP_BIAS)).item() == pytest.approx(0.1)


@pytest.mark.parametrize("size", [0, 100, 200, 191])
def test_input_size_must_be_a_multiple_of_32(size):
    with pytest.raises(PkmodelError, match="model.input_size"):
        build_model(ModelConfig(input_size=size), pretrained=False)


def test_graph_is_static_under_tracing():
    model = build_model(ModelConfig(input_size=64, width_mult=0.35), pretrained=False).eval()
    x = torch.rand(1, 3, 64, 64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # jit.trace is what Core ML converts
        warnings.simplefilter("error", torch.jit.TracerWarning)
        traced = torch.jit.trace(model, x)
    y = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        for a, b in zip(traced(y), model(y), strict=True):
            assert torch.allclose(a, b, atol=1e-6)


def _torchvision_state(width):
    from torchvision.models import mobilenet_v2

    torch.manual_seed(1)
    return mobilenet_v2(weights=None, width_mult=width).state_dict()


def test_local_imagenet_weights_are_loaded_into_the_backbone(tmp_path):
    state = _torchvision_state(0.5)
    path = tmp_path / "mobilenet_v2.pth"
    torch.save(state, path)
    cfg = ModelConfig(input_size=64, width_mult=0.5, pretrained=path, stem="mobilenetv2")
    model = build_model(cfg)
    got = model.backbone.state_dict()
    assert len(got) > 100
    for key, value in got.items():
        assert torch.equal(value, state[f"features.{key}"]), key
    # The fused stem keeps its own weights and takes the file's blocks after the three it
    # replaces: its block 1 is MobileNetV2's block 3.
    torch.manual_seed(0)
    fused = build_model(ModelConfig(input_size=64, width_mult=0.5, pretrained=path, stem="fused"))
    torch.manual_seed(0)
    fused_fresh = build_model(ModelConfig(input_size=64, width_mult=0.5, stem="fused"), False)
    loaded = fused.backbone.state_dict()
    stem_keys = [k for k in loaded if k.startswith("0.")]
    assert len(stem_keys) == 2 + 2 * 5  # two convs, two batch norms (5 tensors each)
    assert len(loaded) - len(stem_keys) == sum(k.split(".")[0] not in ("0", "1", "2") for k in got)
    for key, value in loaded.items():
        block, rest = key.split(".", 1)
        if block == "0":
            assert torch.equal(value, fused_fresh.backbone.state_dict()[key]), key
        else:
            assert torch.equal(value, state[f"features.{int(block) + 2}.{rest}"]), key
    # pretrained=False ignores the file (a checkpoint restores every weight anyway).
    fresh = build_model(cfg, pretrained=False)
    first = next(iter(got))
    assert not torch.equal(fresh.backbone.state_dict()[first], state[f"features.{first}"])
    # A features-only state_dict and a {"state_dict": ...} wrapper work too.
    feats = {k[len("features.") :]: v for k, v in state.items() if k.startswith("features.")}
    torch.save({"state_dict": feats}, path)
    assert torch.equal(build_model(cfg).backbone.state_dict()[first], got[first])


def test_bad_pretrained_files_are_one_sentence_errors(tmp_path):
    cfg = ModelConfig(input_size=64, width_mult=1.0, pretrained=tmp_path / "missing.pth")
    with pytest.raises(PkmodelError, match="model.pretrained.*does not exist"):
        build_model(cfg)
    path = tmp_path / "w.pth"
    torch.save(_torchvision_state(0.5), path)  # another width
    with pytest.raises(PkmodelError, match="model.width_mult"):
        build_model(ModelConfig(input_size=64, width_mult=1.0, pretrained=path))
    path.write_bytes(b"not a torch file")
    with pytest.raises(PkmodelError, match="model.pretrained"):
        build_model(ModelConfig(input_size=64, width_mult=1.0, pretrained=path))
    # a text file starting with "h" (a pickle opcode: torch's unpickler raised KeyError), a
    # Git LFS pointer (torch's error was a paragraph of advice), a pickle cut short
    cut = io.BytesIO()
    torch.save(_torchvision_state(1.0), cut, _use_new_zipfile_serialization=False)
    for data in (b"hello world\n", b"version https://git-lfs.github.com/spec/v1\noid sha256:ab\n",
                 cut.getvalue()[:200]):  # fmt: skip
        path.write_bytes(data)
        with pytest.raises(PkmodelError) as e:
            build_model(ModelConfig(input_size=64, width_mult=1.0, pretrained=path))
        assert str(e.value).startswith(f"model.pretrained: {path} is not a state_dict (")
        assert "\n" not in str(e.value) and len(str(e.value)) < 200
    torch.save({"layer.weight": torch.zeros(1)}, path)
    with pytest.raises(PkmodelError, match="tensors missing"):
        build_model(ModelConfig(input_size=64, width_mult=1.0, pretrained=path))


def test_parameters_and_macs_at_192_width_1():
    info = model_summary(ModelConfig(input_size=192, width_mult=1.0))
    # MobileNetV2 features without the 1280-channel classifier block, with the fused-s8 stem:
    # 1.82 M; neck + heads ~0.05 M.
    assert 1.7e6 < info["parameters"] < 2.2e6
    assert info["backbone_parameters"] == pytest.approx(1.82e6, rel=0.01)
    # under PoseKit's network's 228,635,136 (tests/model/test_posekit.py): the fused-s8 stem,
    # a 48-channel neck and shared heads of 96
    assert info["macs"] == 220_817_664 and (info["stem"], info["heads"]) == ("fused-s8", "shared")
    # the earlier defaults: the fused stem with four heads of 48; MobileNetV2's own stem
    earlier = ModelConfig(stem="fused", heads="separate", head_channels=48)
    assert model_summary(earlier)["macs"] == 228_199_680
    earlier.stem = "mobilenetv2"
    assert model_summary(earlier)["macs"] == 253_046_016
    assert info["outputs"]["regs"] == [1, 34, 48, 48]
    # Convolutions scale with the pixel count: 256 costs (256 / 192)^2 as much.
    model = build_model(ModelConfig(input_size=256), pretrained=False)
    assert count_macs(model, 256) == pytest.approx(info["macs"] * (256 / 192) ** 2, rel=1e-6)
    small = model_summary(ModelConfig(input_size=192, width_mult=0.35))
    assert small["parameters"] < info["parameters"] / 4 and small["macs"] < info["macs"] / 2


def test_model_info_command(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # built-in defaults, not the checkout's config.toml
    runner = CliRunner()
    res = runner.invoke(app, ["model-info", "--input-size", "128", "--width", "0.5"])
    assert res.exit_code == 0, res.output
    assert "output heatmaps: [1, 17, 32, 32]" in res.output
    assert "parameters:" in res.output and "M MACs per image" in res.output
    assert "(fused-s8 stem, taps [16, 16, 48, 160]), neck 48, shared heads 96" in res.output
    res = runner.invoke(app, ["model-info", "--set", "model.arch=posekit"])
    assert res.exit_code == 0, res.output
    assert "model: PoseKit's network" in res.output and "neck 48" not in res.output
    assert "multiply-adds: 228,635,136 (228.6 M MACs per image)" in res.output
    # the cost by layer: PoseKit's fixed stages, and what they add up to
    assert "multiply-adds by layer (M MACs, share):" in res.output
    assert "  backbone.features1" in res.output and "  header.header_heatmaps" in res.output
    res = runner.invoke(app, ["model-info", "--input-size", "100"])
    assert res.exit_code == 2 and "model.input_size" in res.output


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--input-size", "320000"], "model.input_size = 320000 must be a positive multiple of 32 up to 2048 (model.input_size from --input-size)"),
        (["--input-size", "3200000"], "model.input_size = 3200000 must be a whole number within +-1e6 (model.input_size from --input-size)"),
        (["--width", "1e5"], "model.width_mult = 100000.0 must be in (0, 4] (model.width_mult from --width)"),
        (["--width", "1e9"], "model.width_mult = 1000000000.0 must be a finite number within +-1e6 (model.width_mult from --width)"),
        (["--set", "model.width_mult=4.5"], "model.width_mult = 4.5 must be in (0, 4] (model.width_mult from --set)"),
    ],
)  # fmt: skip
def test_model_info_refuses_a_network_too_large_to_run(tmp_path, monkeypatch, args, says):
    """Past the config's bounds model-info ran out of memory building and running the network."""
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(app, ["model-info", *args])
    assert res.exit_code == 2 and res.output.strip().startswith(f"error: {says}"), res.output
    assert len(res.output.strip().splitlines()) == 1


def test_layer_macs_add_up_and_show_where_the_cost_is():
    for cfg in (ModelConfig(), ModelConfig(arch="posekit"), ModelConfig(input_size=96, width_mult=0.5)):  # fmt: skip
        model = build_model(cfg, pretrained=False)
        layers = layer_macs(model, cfg.input_size)
        assert sum(layers.values()) == count_macs(model, cfg.input_size), cfg
        assert all(v > 0 for v in layers.values())
    layers = layer_macs(build_model(ModelConfig(), pretrained=False), 192)
    assert list(layers)[:2] == ["backbone.0", "backbone.1"] and list(layers)[-1] == "head.out"
    # the fused stem: 3 x 16 x 9 at 96 x 96, then 16 x 24 x 9 at 48 x 48
    assert layers["backbone.0"] == 3 * 16 * 9 * 96 * 96 + 16 * 24 * 9 * 48 * 48 == 11_943_936
    # the shared head at stride 4: 3x3 depthwise and 1x1 to 96, then 96 -> 17 + 1 + 34 + 34
    assert layers["head.body"] == (48 * 9 + 48 * 96) * 48 * 48 == 11_612_160
    assert layers["head.out"] == 96 * 86 * 48 * 48 == 19_021_824
    assert model_summary(ModelConfig())["layer_macs"] == layers
    # four separate heads of 48: 3x3 + 1x1 bodies, a ninth of that network
    layers = layer_macs(build_model(ModelConfig(heads="separate", head_channels=48), False), 192)
    bodies = sum(v for k, v in layers.items() if k.endswith("_head.body"))
    assert bodies == 4 * 6_303_744 and 0.11 < bodies / sum(layers.values()) < 0.115


def test_fused_s8_stem_replaces_mobilenetv2_to_stride_8():
    from pkmodel.model.network import FusedResidual

    model = build_model(ModelConfig(stem="fused-s8"), pretrained=False)
    default = build_model(ModelConfig(stem="fused"), pretrained=False)
    # the same taps (strides 4, 8, 16, 32, their blocks and channels)
    assert model.tap_channels == default.tap_channels == (24, 32, 96, 320)
    assert model.taps == default.taps == (1, 4, 11, 15)
    assert isinstance(model.backbone[1], FusedResidual)
    layers = layer_macs(model, 192)
    # stride 4: a 3x3 and a 1x1 conv, 24 channels, at 48 x 48 (MobileNetV2's inverted
    # residual there expands to 144 channels: 19.1 M)
    assert layers["backbone.1"] == (24 * 24 * 9 + 24 * 24) * 48 * 48 == 13_271_040
    # to stride 8: a 3x3 stride-2 conv to 96 channels, then 96 -> 32, at 24 x 24
    assert layers["backbone.2"] == (24 * 96 * 9 + 96 * 32) * 24 * 24 == 13_713_408
    # 3.3 M fewer than the fused stem (four separate heads of 48: 224.9 M against 228.2 M)
    separate = ModelConfig(stem="fused-s8", heads="separate", head_channels=48)
    assert count_macs(build_model(separate, pretrained=False), 192) == 224_909_568
    x = torch.rand(2, 3, 96, 96)
    assert _shapes(model.eval()(x)) == _expected(2, 96)
    # the residual adds its input: with the body's last batch norm at zero, the block is identity
    block = FusedResidual(8).eval()
    torch.nn.init.zeros_(block.conv[4].weight)
    y = torch.rand(1, 8, 5, 5)
    assert torch.equal(block(y), y)


def test_fused_s8_stem_takes_imagenet_weights_after_the_five_blocks_it_replaces(tmp_path):
    state = _torchvision_state(0.5)
    path = tmp_path / "mobilenet_v2.pth"
    torch.save(state, path)
    torch.manual_seed(0)
    model = build_model(
        ModelConfig(input_size=64, width_mult=0.5, pretrained=path, stem="fused-s8")
    )
    torch.manual_seed(0)
    fresh = build_model(ModelConfig(input_size=64, width_mult=0.5, stem="fused-s8"), False)
    loaded, own = model.backbone.state_dict(), fresh.backbone.state_dict()
    for key, value in loaded.items():
        block, rest = key.split(".", 1)
        if int(block) < 3:  # the stem's three blocks keep their own weights
            assert torch.equal(value, own[key]), key
        else:  # backbone block 3 is MobileNetV2's block 5
            assert torch.equal(value, state[f"features.{int(block) + 2}.{rest}"]), key
    assert sum(int(k.split(".")[0]) >= 3 for k in loaded) == sum(
        5 <= int(k.split(".")[1]) <= 17 for k in state if k.startswith("features.")
    )


def test_shared_heads_are_one_body_and_one_conv_split_into_the_four_outputs():
    torch.manual_seed(0)
    cfg = ModelConfig(input_size=64, width_mult=0.35, heads="shared", head_channels=40)
    model = build_model(cfg, pretrained=False).eval()
    assert not hasattr(model, "heatmap_head") and model.head.out.out_channels == K + 1 + 4 * K
    # heatmaps and centers start at the CenterNet prior, regs and offsets at 0
    bias = model.head.out.bias
    assert (
        torch.allclose(bias[: K + 1], torch.full((K + 1,), HEATMAP_BIAS))
        and not bias[K + 1 :].any()
    )
    seen = {}
    model.fuse[0].register_forward_hook(lambda m, i, o: seen.setdefault("neck", o))
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        heat, centers, regs, offsets = model(x)
        full = model.head.out(model.head.body(seen["neck"]))
    assert _shapes((heat, centers, regs, offsets)) == _expected(2, 64)
    assert torch.equal(heat, torch.sigmoid(full[:, :K]))
    assert torch.equal(centers, torch.sigmoid(full[:, K : K + 1]))
    assert torch.equal(regs, full[:, K + 1 : 3 * K + 1])
    assert torch.equal(offsets, full[:, 3 * K + 1 :])
    # one body at stride 4 instead of four: 3 x (3x3 depthwise + 1x1) of the neck's width fewer
    separate = count_macs(build_model(ModelConfig(heads="separate", head_channels=48), False), 192)
    shared = count_macs(build_model(ModelConfig(heads="shared", head_channels=48), False), 192)
    assert separate - shared == 3 * (48 * 9 + 48 * 48) * 48 * 48 == 18_911_232
    with pytest.raises(PkmodelError, match="model.heads"):
        load_config(None, ["model.heads=one"], env={})
