"""The optimizer's schedule and the weights' EMA."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from pkmodel.config.loader import Config
from pkmodel.engine.optim import LRSchedule, ModelEMA


def test_schedule_warmup_then_cosine_step_and_plateau():
    cfg = Config()
    cfg.train.epochs, cfg.train.warmup_epochs, cfg.train.lr = 10, 1.0, 1.0
    s = LRSchedule(cfg, steps_per_epoch=10)
    assert s.factor(0) == pytest.approx(0.1) and s.factor(9) == pytest.approx(1.0)
    assert s.factor(10) == pytest.approx(1.0)
    assert s.factor(55) == pytest.approx(0.5 * (1 + math.cos(math.pi * 45 / 90)))
    assert s.factor(100) == pytest.approx(0.0)
    cfg.train.scheduler, cfg.train.step_size, cfg.train.gamma = "step", 3, 0.1
    assert LRSchedule(cfg, 10).factor(35) == pytest.approx(0.1)
    assert LRSchedule(cfg, 10).factor(65) == pytest.approx(0.01)
    cfg.train.scheduler, cfg.train.plateau_patience = "plateau", 1
    p = LRSchedule(cfg, 10)
    for ap in (0.5, 0.6, 0.6, 0.6):
        p.on_validation(ap)
    assert p.factor(50) == pytest.approx(0.1)
    q = LRSchedule(cfg, 10)
    q.load_state_dict(p.state_dict())
    assert q.factor(50) == pytest.approx(0.1)


def test_ema_moves_toward_the_weights():
    model = torch.nn.Linear(2, 1, bias=False)
    torch.nn.init.zeros_(model.weight)
    ema = ModelEMA(model, decay=0.5, updates=10**6)  # ramp finished: decay 0.5
    with torch.no_grad():
        model.weight.fill_(1.0)
    ema.update(model)
    assert torch.allclose(ema.module.weight, torch.full((1, 2), 0.5), atol=1e-6)
    ema.update(model)
    assert torch.allclose(ema.module.weight, torch.full((1, 2), 0.75), atol=1e-6)


def test_ema_averages_batchnorm_statistics_and_copies_its_counter():
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 1), torch.nn.BatchNorm2d(2))
    ema = ModelEMA(model, decay=0.75, updates=10**6)  # ramp finished: decay 0.75
    bn = model[1]
    with torch.no_grad():
        bn.running_mean.fill_(4.0)  # was 0
        bn.running_var.fill_(5.0)  # was 1
        bn.num_batches_tracked.fill_(7)
        model[0].bias.fill_(2.0)
    before = ema.module[0].bias.clone()
    ema.update(model)
    ema_bn = ema.module[1]
    assert torch.allclose(ema_bn.running_mean, torch.full((2,), 1.0))  # 0.75*0 + 0.25*4
    assert torch.allclose(ema_bn.running_var, torch.full((2,), 2.0))  # 0.75*1 + 0.25*5
    assert int(ema_bn.num_batches_tracked) == 7
    assert torch.allclose(ema.module[0].bias, 0.75 * before + 0.5)
    assert not any(p.requires_grad for p in ema.module.parameters())


@pytest.mark.parametrize("name", ["adamw", "adam"])
def test_fused_adam_on_the_cpu_updates_as_the_loop_does(name):
    """build_optimizer picks PyTorch's fused Adam / AdamW on the CPU: after 20 steps with weight
    decay the weights are those of the per-tensor loop within float rounding."""
    from pkmodel.engine.optim import build_optimizer
    from pkmodel.model.network import build_model

    cfg = Config()
    cfg.model.input_size, cfg.model.width_mult = 64, 0.35
    cfg.train.optimizer, cfg.train.lr = name, 1e-2
    torch.manual_seed(0)
    model = build_model(cfg.model, pretrained=False)
    loop = copy.deepcopy(model)
    fused = build_optimizer(model, cfg)
    assert all(g["fused"] for g in fused.param_groups)
    reference = build_optimizer(loop, cfg)
    for g in reference.param_groups:
        g["fused"], g["foreach"] = None, False
    gen = torch.Generator().manual_seed(1)
    for _ in range(20):
        for p, q in zip(model.parameters(), loop.parameters(), strict=True):
            p.grad = torch.randn(p.shape, generator=gen)
            q.grad = p.grad.clone()
        fused.step()
        reference.step()
    pairs = list(zip(model.parameters(), loop.parameters(), strict=True))
    assert max((p - q).abs().max().item() for p, q in pairs) < 1e-6
    torch.manual_seed(0)  # the weights before the 20 steps: they moved by far more
    init = list(build_model(cfg.model, pretrained=False).parameters())
    assert max((p - q).abs().max().item() for p, q in zip(model.parameters(), init, strict=True)) > 0.1  # fmt: skip


def test_the_ema_ramps_its_decay_up_over_its_first_updates():
    """ModelEMA's decay is decay x (1 - exp(-updates / 2000)): the average follows the weights
    closely at first, so a short run's EMA is not stuck near the random start."""
    import math

    from pkmodel.engine.optim import ModelEMA

    m = torch.nn.Linear(1, 1, bias=False)
    torch.nn.init.zeros_(m.weight)
    ema = ModelEMA(m, decay=0.9998)
    with torch.no_grad():
        m.weight.fill_(1.0)
    ema.update(m)
    first = 0.9998 * (1 - math.exp(-1 / 2000))  # 4.9977e-4
    assert ema.current_decay() == pytest.approx(first, rel=1e-9)
    assert ema.module.weight.item() == pytest.approx(1 - first, abs=1e-6)
    ema.updates = 2000
    assert ema.current_decay() == pytest.approx(0.9998 * (1 - math.exp(-1)), rel=1e-9)


def test_no_weight_decay_on_biases_and_norm_weights():
    from pkmodel.config import Config
    from pkmodel.engine.optim import build_optimizer

    cfg = Config()
    cfg.train.weight_decay = 0.05
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.BatchNorm2d(2))
    groups = build_optimizer(model, cfg).param_groups
    assert [p is model[0].weight for p in groups[0]["params"]] == [True]
    assert groups[0]["weight_decay"] == 0.05
    one_d = {id(model[0].bias), id(model[1].weight), id(model[1].bias)}
    assert {id(p) for p in groups[1]["params"]} == one_d and groups[1]["weight_decay"] == 0.0
