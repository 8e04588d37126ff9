"""The PoseKit app's compiled model imported into PoseKitNet: every conv mapped by name, the same
outputs as pkmodel's Core ML runner (FP16 tolerance) on real COCO photos, the same COCO AP,
and ``train --finetune app.mlmodelc`` starting from it."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch

from pkmodel.common.errors import PkmodelError
from pkmodel.engine.networks import load_network
from pkmodel.engine.posekit_import import (
    calibrate_batch_norms,
    finetune_weights,
    import_posekit_app,
)
from pkmodel.engine.predict import normalise
from pkmodel.export.common import check_images, output_differences
from pkmodel.export.coreml import COREML_TOLERANCE
from pkmodel.model.decode import DecodeSettings
from pkmodel.model.posekit import PoseKitNet
from tests.conftest import run_cli, shared_data, tiny_train_config

APP = ("posekit_app", "pkmodel.mlmodelc")


@pytest.fixture(scope="module")
def app_model():
    return shared_data(*APP)


@pytest.fixture(scope="module")
def imported(app_model):
    model = PoseKitNet().eval()
    model.load_state_dict(import_posekit_app(app_model))
    return model


def test_every_conv_of_the_app_maps_to_a_posekit_layer_by_name(app_model):
    mil = (app_model / "model.mil").read_text()
    weights = re.findall(r"= conv\(.*?weight = (\w+),", mil)
    assert len(weights) == 74
    names = {n.replace(".", "_") for n, _, _ in PoseKitNet().conv_layers()}
    stripped = {re.sub(r"^self_|_weight(_fused_bn)?_to_fp16$", "", w) for w in weights}
    assert stripped == names
    # shapes as the program declares them
    declared = {
        name: shape for shape, name in re.findall(r"tensor<fp16, \[([\d, ]+)\]> (\w+) = const", mil)
    }
    own = {n.replace(".", "_"): tuple(c.weight.shape) for n, c, _ in PoseKitNet().conv_layers()}
    for w in weights:
        shape = tuple(int(d) for d in declared[w].split(","))
        assert shape == own[re.sub(r"^self_|_weight(_fused_bn)?_to_fp16$", "", w)], w


def test_imported_batch_norms_are_identities_with_the_folded_bias(app_model):
    state = import_posekit_app(app_model)
    assert torch.equal(state["backbone.features1.0.1.weight"], torch.ones(32))
    assert torch.equal(state["backbone.features1.0.1.running_mean"], torch.zeros(32))
    assert torch.allclose(state["backbone.features1.0.1.running_var"] + 1e-5, torch.ones(32))
    assert state["backbone.features1.0.1.bias"].abs().max() > 0  # the folded bias
    # a conv with its own bias before a BN: the folded bias in the conv, none in the BN
    assert torch.equal(state["backbone.features2.conv1.4.bias"], torch.zeros(144))
    assert state["backbone.features2.conv1.3.bias"].abs().max() > 0
    # FP16 values held in float32
    w = state["header.header_heatmaps.1.weight"]
    assert w.dtype == torch.float32 and torch.equal(w, w.half().float())


def test_imported_network_matches_the_core_ml_runner_on_coco_photos(app_model, imported):
    pictures, _ = check_images(shared_data("coco_mini", "train2017"), 192, 16)
    x = torch.from_numpy(normalise(pictures))
    with torch.no_grad():
        ours = [o.numpy() for o in imported(x)]
        runner = [o.numpy() for o in load_network(app_model).module(x)]
    settings = DecodeSettings(score_threshold=0.1)  # the app's threshold: more joints compared
    diffs = output_differences(ours, runner, settings)
    tol = COREML_TOLERANCE["fp16"]
    assert diffs["heatmaps"] <= tol.maps and diffs["centers"] <= tol.maps
    assert diffs["regs"] <= tol.vectors and diffs["offsets"] <= tol.vectors
    assert diffs["joints_found"] >= 50
    assert diffs["same_cells"] >= 0.99, diffs


def test_calibrated_batch_norms_keep_eval_outputs_and_fit_training_mode(app_model, imported):
    """The imported batch norms are identities; in training mode they would normalise by the
    batch's statistics. Calibrated on photos, eval outputs stay and training-mode outputs (on
    other photos) come close to them."""
    pictures, _ = check_images(shared_data("coco_mini", "train2017"), 192, 24)
    x = torch.from_numpy(normalise(pictures))
    fit, held = x[:16], x[16:]
    model = PoseKitNet()
    model.load_state_dict(imported.state_dict())

    def heat(net, train):
        net.train(train)
        with torch.no_grad():
            return net(held)[0]

    before_eval, before_train = heat(model, False), heat(model, True)
    model.load_state_dict(imported.state_dict())  # training mode moved the running statistics
    assert (
        calibrate_batch_norms(model, [fit[:8], fit[8:]]) == 16 and model.training
    )  # mode restored
    after_eval, after_train = heat(model, False), heat(model, True)
    assert (after_eval - before_eval).abs().max() < 1e-4
    gap_before = (before_train - before_eval).abs().max().item()
    gap_after = (after_train - after_eval).abs().max().item()
    assert gap_before > 0.5 and gap_after < 0.35 * gap_before, (gap_before, gap_after)
    bn = model.backbone.features1[0][1]
    assert bn.running_var.min() > 0 and not torch.allclose(bn.running_mean, torch.zeros(1))


@pytest.mark.slow
def test_a_checkpoint_of_the_import_evaluates_to_the_apps_ap(app_model, imported, tmp_path):
    from pkmodel.model.checkpoint import save_checkpoint
    from pkmodel.model.posekit import posekit_config_dict

    ckpt = tmp_path / "app.pt"
    config = posekit_config_dict()
    save_checkpoint(ckpt, {"model": imported.state_dict(), "ema": None, "config": config})
    pth = tmp_path / "app.pth"  # and as a PoseKit .pth
    torch.save(imported.state_dict(), pth)
    coco = shared_data("coco_mini")
    ap = {}
    for name, weights in (("coreml", app_model), ("checkpoint", ckpt), ("pth", pth)):
        out = tmp_path / name
        run_cli(["evaluate", "--weights", weights, "--annotations",
                 coco / "annotations" / "person_keypoints_train2017.json",
                 "--images", coco / "train2017", "--out", out, "--quiet", "--pictures", 0,
                 "--device", "cpu", "--set", "train.workers=0"])  # fmt: skip
        ap[name] = json.loads((out / "metrics.json").read_text())["AP"]
    assert ap["coreml"] == pytest.approx(0.108, abs=0.002)
    assert ap["checkpoint"] == pytest.approx(ap["coreml"], abs=0.005)
    assert ap["pth"] == ap["checkpoint"]


def test_finetune_weights_set_arch_posekit(app_model, tiny_prepared, tmp_path):
    cfg = tiny_train_config(tiny_prepared, tmp_path)
    state = finetune_weights(cfg, app_model)
    assert cfg.model.arch == "posekit" and cfg.model.width_mult == 1.0
    assert cfg.sources["model.arch"] == f"train.finetune {app_model}"
    assert cfg.model.input_size == 64  # the configured size stays
    assert set(state) == set(PoseKitNet().state_dict())


def test_one_epoch_of_finetune_from_the_app_model(app_model, tiny_prepared, tmp_path):
    from pkmodel.engine.train import train
    from pkmodel.model.checkpoint import model_from_checkpoint

    cfg = tiny_train_config(
        tiny_prepared, tmp_path / "run", finetune=app_model, epochs=1, ema=False
    )
    result = train(cfg, progress=False, max_steps=2)
    model, saved, _ = model_from_checkpoint(tmp_path / "run" / "last.pt")
    assert isinstance(model, PoseKitNet) and saved.model.arch == "posekit"
    assert saved.model.input_size == 64 and result.epochs_run == 1
    metrics = result.last_metrics
    assert np.isfinite(metrics["val/AP"]) and np.isfinite(metrics["train/loss"])
    # it started from the app's weights: a late layer the two steps barely move
    start = import_posekit_app(app_model)["backbone.features4.3.0.weight"]
    now = model.state_dict()["backbone.features4.3.0.weight"]
    assert (now - start).abs().max() < 0.05 * start.abs().max()
    # its batch norms were calibrated first (imported ones are weight 1; two steps barely move them)
    gamma = model.state_dict()["backbone.features1.0.1.weight"]
    assert (gamma - 1).abs().max() > 0.5
    # resuming needs neither --finetune nor --set model.arch: the checkpoint says it was PoseKit's
    cfg = tiny_train_config(tiny_prepared, tmp_path / "run", epochs=2, ema=False)
    assert cfg.model.arch == "pkmodel"
    result = train(cfg, resume=tmp_path / "run" / "last.pt", progress=False, max_steps=4)
    assert cfg.model.arch == "posekit" and "train.finetune" in cfg.sources["model.arch"]
    assert result.epochs_run == 1 and torch.load(tmp_path / "run" / "last.pt")["epoch"] == 2
    assert model_from_checkpoint(tmp_path / "run" / "last.pt")[1].model.arch == "posekit"


def test_a_missing_program_is_one_sentence(tmp_path):
    with pytest.raises(PkmodelError, match=r"Core ML model .*missing.mlmodelc does not exist"):
        import_posekit_app(tmp_path / "missing.mlmodelc")


def test_resuming_from_a_posekit_pth_is_one_sentence(tiny_prepared, tmp_path):
    from pkmodel.engine.train import train

    pth = tmp_path / "posekit.pth"
    torch.save(PoseKitNet().state_dict(), pth)
    cfg = tiny_train_config(tiny_prepared, tmp_path / "run")
    with pytest.raises(PkmodelError, match=r"cannot resume from .*posekit.pth: it is a PoseKit"):
        train(cfg, resume=pth, progress=False)


def test_finetune_weights_from_a_posekit_pth_and_a_pkmodel_checkpoint(tiny_prepared, tmp_path):
    from pkmodel.model.checkpoint import save_checkpoint

    weights = PoseKitNet().state_dict()
    torch.save({f"module.{k}": v for k, v in weights.items()}, tmp_path / "posekit.pth")
    cfg = tiny_train_config(tiny_prepared, tmp_path)
    state = finetune_weights(cfg, tmp_path / "posekit.pth")
    assert cfg.model.arch == "posekit" and torch.equal(state["header.header_regs.1.weight"], weights["header.header_regs.1.weight"])  # fmt: skip
    cfg = tiny_train_config(tiny_prepared, tmp_path)  # a pkmodel checkpoint: arch unchanged
    save_checkpoint(tmp_path / "last.pt", {"model": {"x": torch.ones(1)}, "ema": None, "config": cfg.to_dict()})  # fmt: skip
    assert set(finetune_weights(cfg, tmp_path / "last.pt")) == {"x"}
    assert cfg.model.arch == "pkmodel" and cfg.model.width_mult == 0.35


def test_finetune_from_a_checkpoint_without_ema(tmp_path):
    """A checkpoint may carry no 'ema' entry (only 'model' and 'config' are required):
    finetuning starts from its model weights (it was a KeyError)."""
    from pkmodel.config import Config
    from pkmodel.model.checkpoint import save_checkpoint
    from pkmodel.model.network import build_model

    cfg = Config()
    cfg.model.input_size, cfg.model.width_mult = 64, 0.35
    weights = build_model(cfg.model, pretrained=False).state_dict()
    save_checkpoint(tmp_path / "no_ema.pt", {"model": weights, "config": cfg.to_dict()})
    state = finetune_weights(Config(), tmp_path / "no_ema.pt")
    assert set(state) == set(weights)
    assert all(torch.equal(state[k], weights[k]) for k in weights)
