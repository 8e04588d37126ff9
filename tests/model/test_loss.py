"""The loss: each term's value on hand-made cases, where it reads, averaging, and a short fit."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pkmodel.common.errors import PkmodelError
from pkmodel.common.skeleton import BONES
from pkmodel.config import LossConfig, ModelConfig, TargetsConfig
from pkmodel.data.targets import encode_targets, target_maps
from pkmodel.model.loss import PoseLoss, gather_at, masked_l1, weighted_mse, window_offset_l1
from pkmodel.model.network import build_model

K = 17
TERMS = ("heatmap", "center", "reg", "offset", "bone")


def _batch(n, size=64, seed=0, hidden=()):
    rng = np.random.default_rng(seed)
    samples = []
    for _ in range(n):
        kps = np.concatenate([rng.uniform(4, size - 4, (K, 2)), np.full((K, 1), 2.0)], 1)
        kps[list(hidden), 2] = 0
        center = rng.uniform(0.4 * size, 0.6 * size, 2)
        samples.append(encode_targets(kps, center, None, None, size, TargetsConfig()))
    return {k: torch.from_numpy(np.stack([s[k] for s in samples])) for k in samples[0]}


def _offset_field(batch, size=64, stride=4):
    """Dense offsets that point every cell at its joint: (cell + offset) * stride = joint."""
    grid = size // stride
    pos = batch["joint_index"].double() + batch["offset_values"].double()
    cells = torch.arange(grid, dtype=torch.float64)
    field = torch.empty(target_maps(batch)[3].shape, dtype=torch.float64)
    field[:, 0::2] = pos[..., 0, None, None] - cells[None, None, None, :]
    field[:, 1::2] = pos[..., 1, None, None] - cells[None, None, :, None]
    return field.float()


def _perfect(batch):
    """Outputs equal to the targets, with offsets pointing at the joints from every cell."""
    return (*(m.clone() for m in target_maps(batch)[:3]), _offset_field(batch))


def test_perfect_outputs_give_zero_for_every_term():
    batch = _batch(3)
    total, terms = PoseLoss(LossConfig(bone_weight=1.0, heatmap_loss="mse"))(_perfect(batch), batch)
    assert set(terms) == set(TERMS)
    assert total.item() == pytest.approx(0.0, abs=1e-6)
    assert all(v.item() == pytest.approx(0.0, abs=1e-3) for v in terms.values())


def test_foreground_weighted_mse_value():
    target = torch.tensor([[[[0.0, 0.05], [0.5, 1.0]]]])
    pred = torch.tensor([[[[0.1, 0.15], [0.3, 0.5]]]])
    # Background errors 0.1, 0.1 count once; foreground 0.2, 0.5 count 4 times.
    want = (0.01 + 0.01 + 4 * 0.04 + 4 * 0.25) / 4
    assert weighted_mse(pred, target, 4.0).item() == pytest.approx(want)


def test_gather_reads_the_given_cells():
    maps = torch.arange(2 * 4 * 3 * 5, dtype=torch.float32).reshape(2, 4, 3, 5)
    at = gather_at(maps, torch.tensor([[1, 2], [4, 0]]))
    assert at.tolist() == [maps[0, :, 2, 1].tolist(), maps[1, :, 0, 4].tolist()]
    pairs = gather_at(maps, torch.tensor([[[0, 0], [3, 1]], [[4, 2], [2, 2]]]))
    assert pairs.shape == (2, 2, 2)
    assert pairs[0, 1].tolist() == maps[0, 2:4, 1, 3].tolist()
    assert pairs[1, 0].tolist() == maps[1, 0:2, 2, 4].tolist()


def test_reg_term_reads_only_the_ground_truth_center_and_labelled_joints():
    batch = _batch(2, hidden=(4,))
    loss = PoseLoss(LossConfig())
    heat, cen, regs, offs = _perfect(batch)
    cx, cy = batch["center_index"][0].tolist()
    regs[0, :, (cy + 3) % 16, cx] += 5.0  # another cell: ignored
    regs[0, 2 * 4, cy, cx] += 5.0  # an unlabelled joint: ignored
    assert loss((heat, cen, regs, offs), batch)[1]["reg"].item() == 0.0
    regs[0, 2 * 7 + 1, cy, cx] += 1.0  # one labelled coordinate off by one cell
    labelled = int(batch["reg_mask"].sum())  # 2 x 16 joints
    assert loss((heat, cen, regs, offs), batch)[1]["reg"].item() == pytest.approx(
        1.0 / (2 * labelled)
    )


def test_offset_term_reads_each_joint_cell():
    batch = _batch(2)
    heat, cen, regs, offs = _perfect(batch)
    jx, jy = batch["joint_index"][1, 3].tolist()
    offs[1, 2 * 3, jy, jx] -= 0.5
    cfg = LossConfig(offset_weight=3.0, offset_radius=0, heatmap_loss="mse")
    total, terms = PoseLoss(cfg)((heat, cen, regs, offs), batch)
    assert terms["offset"].item() == pytest.approx(0.5 / (2 * 2 * K))
    assert total.item() == pytest.approx(3.0 * terms["offset"].item(), rel=1e-5)


def test_offset_window_trains_the_cells_around_each_joint():
    batch = _batch(2, hidden=(4,))
    heat, cen, regs, offs = _perfect(batch)
    ones = LossConfig(offset_radius=1, heatmap_loss="mse")
    assert PoseLoss(ones)((heat, cen, regs, offs), batch)[1]["offset"].item() == pytest.approx(
        0.0, abs=1e-5
    )
    # Radius 0 is the old term: only the joint's own cell counts.
    mask, cells = batch["offset_mask"], batch["joint_index"]
    far = offs.clone()
    jx, jy = cells[1, 3].tolist()
    far[1, 2 * 3, jy, (jx + 2) % 16] += 7.0  # two cells away: outside a radius-1 window
    assert window_offset_l1(far, batch["offset_values"], cells, mask, 1).item() == pytest.approx(
        0.0, abs=1e-5
    )
    near = offs.clone()
    nx = jx + 1 if jx < 15 else jx - 1
    near[1, 2 * 3 + 1, jy, nx] += 0.9  # a neighbour cell, y of joint 3 of sample 1
    inside = sum(0 <= jx + dx < 16 and 0 <= jy + dy < 16 for dx in (-1, 0, 1) for dy in (-1, 0, 1))
    labelled = int(mask.sum())  # 2 x 17 - 1 joints
    got = window_offset_l1(near, batch["offset_values"], cells, mask, 1).item()
    assert got == pytest.approx(0.9 / inside / (2 * labelled), rel=1e-3)
    assert window_offset_l1(near, batch["offset_values"], cells, mask, 0).item() == pytest.approx(
        0.0, abs=1e-5
    )
    # An unlabelled joint's window carries no loss.
    hidden = offs.clone()
    hx, hy = batch["joint_index"][0, 4].tolist()
    hidden[0, 8:10] += 3.0
    assert batch["offset_mask"][0, 4] == 0 and (hx, hy) == (0, 0)
    hidden_loss = window_offset_l1(hidden, batch["offset_values"], cells, mask, 2).item()
    assert hidden_loss == pytest.approx(0.0, abs=1e-5)


def test_offset_window_of_radius_zero_equals_the_joint_cell_l1():
    batch = _batch(3, seed=5, hidden=(0, 9))
    rng = torch.Generator().manual_seed(1)
    offs = torch.rand(target_maps(batch)[3].shape, generator=rng) * 2 - 0.5
    cells, mask = batch["joint_index"], batch["offset_mask"]
    want = masked_l1(gather_at(offs, cells), batch["offset_values"], mask).item()
    assert window_offset_l1(offs, batch["offset_values"], cells, mask, 0).item() == pytest.approx(
        want, rel=1e-6
    )


def test_offset_window_at_the_grid_edge_averages_the_cells_inside():
    # A joint in the corner cell: of a 3 x 3 window only 4 cells are on the grid.
    kps = np.concatenate([np.full((K, 2), 40.0), np.full((K, 1), 2.0)], 1)
    kps[0, :2] = (1.0, 2.5)  # nose in cell (0, 0), offsets (0.25, 0.625)
    t = encode_targets(kps, np.array([32.0, 32.0]), None, None, 64, TargetsConfig())
    batch = {k: torch.from_numpy(v[None]) for k, v in t.items()}
    offs = _offset_field(batch)
    offs[0, 0, 1, 1] += 1.0  # x at cell (1, 1), a window cell of the nose
    got = window_offset_l1(
        offs, batch["offset_values"], batch["joint_index"], batch["offset_mask"], 1
    )
    assert got.item() == pytest.approx(1.0 / 4 / (2 * K), rel=1e-3)


def test_negative_offset_radius_is_one_clear_error():
    with pytest.raises(PkmodelError, match="loss.offset_radius is -1"):
        PoseLoss(LossConfig(offset_radius=-1))


def test_bone_term_compares_bone_lengths_from_regs():
    batch = _batch(2)
    heat, cen, regs, offs = _perfect(batch)
    # Scale every reg by 2 at the center cell: every bone doubles in length.
    for i in range(2):
        cx, cy = batch["center_index"][i].tolist()
        regs[i, :, cy, cx] *= 2.0
    reg_true = batch["reg_values"]
    a, b = zip(*BONES, strict=True)
    mean_length = (reg_true[:, list(a)] - reg_true[:, list(b)]).norm(dim=-1).mean().item()
    on = PoseLoss(LossConfig(bone_weight=0.5))((heat, cen, regs, offs), batch)[1]
    assert on["bone"].item() == pytest.approx(mean_length, rel=1e-4)
    cfg = LossConfig(bone_weight=0.0, heatmap_loss="mse")
    total, off = PoseLoss(cfg)((heat, cen, regs, offs), batch)
    assert off["bone"].item() == 0.0
    want = cfg.reg_weight * off["reg"].item() + off["heatmap"].item()
    assert total.item() == pytest.approx(want, rel=1e-5)


def test_averaging_does_not_depend_on_batch_composition():
    one = _batch(1, seed=3)
    twice = {k: torch.cat([v, v]) for k, v in one.items()}
    rng = torch.Generator().manual_seed(0)
    outs = tuple(torch.rand(t.shape, generator=rng) for t in _perfect(one))
    outs2 = tuple(torch.cat([o, o]) for o in outs)
    loss = PoseLoss(LossConfig(bone_weight=1.0))
    t1, a = loss(outs, one)
    t2, b = loss(outs2, twice)
    assert t1.item() == pytest.approx(t2.item(), rel=1e-6)
    assert all(a[k].item() == pytest.approx(b[k].item(), rel=1e-6) for k in TERMS)


def test_an_empty_mask_gives_zero_not_nan():
    batch = _batch(1, hidden=range(K))
    outs = tuple(torch.rand(t.shape) for t in _perfect(batch))
    total, terms = PoseLoss(LossConfig(bone_weight=1.0))(outs, batch)
    assert torch.isfinite(total)
    assert terms["reg"].item() == terms["offset"].item() == terms["bone"].item() == 0.0


@pytest.fixture
def one_thread():
    # Small convolutions: one thread is fastest, and immune to OpenMP spinning on a busy machine.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_the_loss_falls_when_fitting_a_few_synthetic_samples(one_thread):
    torch.manual_seed(0)
    size, n = 96, 4
    batch = _batch(n, size=size, seed=5)
    images = torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(1)) * 2 - 1
    model = build_model(ModelConfig(input_size=size, width_mult=0.35), pretrained=False)
    loss_fn = PoseLoss(LossConfig(bone_weight=0.1))
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    history = []
    for _ in range(30):
        loss, terms = loss_fn(model(images), batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        history.append({"total": loss.item(), **{k: v.item() for k, v in terms.items()}})
    first, last = history[0], history[-1]
    assert last["total"] < 0.5 * first["total"], (first, last)
    for term in ("heatmap", "center", "reg", "offset", "bone"):
        assert last[term] < first[term], (term, first, last)


def test_bone_term_counts_only_bones_with_both_ends_labelled():
    """A bone to a hidden joint (the left wrist here) is left out of the bone term: its reg is
    no target at all."""
    batch = _batch(2, hidden=(9,))
    heat, cen, regs, offs = _perfect(batch)
    for i in range(2):
        cx, cy = batch["center_index"][i].tolist()
        regs[i, :, cy, cx] *= 2.0
    reg_true = batch["reg_values"]
    kept = [(a, b) for a, b in BONES if 9 not in (a, b)]
    assert len(kept) == len(BONES) - 1
    a, b = zip(*kept, strict=True)
    mean_length = (reg_true[:, list(a)] - reg_true[:, list(b)]).norm(dim=-1).mean().item()
    on = PoseLoss(LossConfig(bone_weight=0.5))((heat, cen, regs, offs), batch)[1]
    assert on["bone"].item() == pytest.approx(mean_length, rel=1e-4)


def test_focal_heatmap_loss_by_hand():
    import math

    from pkmodel.model.loss import focal_heatmap_loss

    target = torch.zeros(1, 1, 3, 3)
    target[0, 0, 1, 1] = 1.0
    pred = torch.full((1, 1, 3, 3), 0.5)
    # One peak: (1 - 0.5)^2 log 0.5; eight background cells: (1 - 0)^4 0.5^2 log 0.5 each.
    expected = -(0.25 * math.log(0.5) * 9)
    assert focal_heatmap_loss(pred, target).item() == pytest.approx(expected, rel=1e-6)
    # A sub-cell Gaussian peaks below 1 and is still one peak; its neighbours are not peaks.
    target[0, 0, 1, 1], target[0, 0, 1, 2] = 0.8, 0.6
    near = (1 - 0.6) ** 4 * 0.25 * math.log(0.5)
    expected = -(0.25 * math.log(0.5) + near + 7 * 0.25 * math.log(0.5))
    assert focal_heatmap_loss(pred, target).item() == pytest.approx(expected, rel=1e-6)
    # The loss falls as the prediction approaches the target.
    assert focal_heatmap_loss(target.clamp(1e-3, 0.999), target) < 0.1 * expected
    # Normalised by the peaks, not the samples: two peaks in one map, and over a batch of two
    two = torch.zeros(1, 1, 5, 5)
    two[0, 0, 1, 1] = two[0, 0, 3, 3] = 1.0
    pred = torch.full((1, 1, 5, 5), 0.5)
    expected = -(25 * 0.25 * math.log(0.5)) / 2
    assert focal_heatmap_loss(pred, two).item() == pytest.approx(expected, rel=1e-6)
    batch = torch.cat([two, torch.zeros(1, 1, 5, 5)])  # 2 peaks in 2 samples, 50 cells
    expected = -(50 * 0.25 * math.log(0.5)) / 2
    assert focal_heatmap_loss(pred.expand(2, 1, 5, 5), batch).item() == pytest.approx(
        expected, rel=1e-6
    )


def test_focal_option_selects_the_heatmap_loss():
    from pkmodel.model.loss import focal_heatmap_loss

    rng = np.random.default_rng(0)
    kp = np.zeros((17, 3))
    kp[:, :2] = rng.uniform(20, 44, (17, 2))
    kp[:, 2] = 2
    t = encode_targets(
        kp, np.array([32.0, 32.0]), np.zeros((0, 17, 3)), np.zeros((0, 2)), 64, TargetsConfig()
    )
    batch = {k: torch.as_tensor(v)[None] for k, v in t.items()}
    outputs = (torch.full((1, 17, 16, 16), 0.2), torch.full((1, 1, 16, 16), 0.3),
               torch.zeros(1, 34, 16, 16), torch.zeros(1, 34, 16, 16))  # fmt: skip
    _, focal = PoseLoss(LossConfig(heatmap_loss="focal"))(outputs, batch)
    _, mse = PoseLoss(LossConfig(heatmap_loss="mse"))(outputs, batch)
    assert LossConfig().heatmap_loss == "focal"  # the default
    assert focal["heatmap"] == pytest.approx(
        focal_heatmap_loss(outputs[0], batch["heatmaps"]).item()
    )
    assert focal["center"] == pytest.approx(focal_heatmap_loss(outputs[1], batch["centers"]).item())
    assert mse["heatmap"] == pytest.approx(weighted_mse(outputs[0], batch["heatmaps"], 4.0).item())
    assert focal["reg"] == mse["reg"] and focal["offset"] == mse["offset"]


def _backbone_gradient_norms(cfg: LossConfig, stem: str) -> dict[str, float]:
    """Norm of each weighted term's gradient on the backbone of a fresh model."""
    torch.manual_seed(0)
    size, n = 64, 4
    batch = _batch(n, size=size, seed=2)
    images = torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(3)) * 2 - 1
    model_cfg = ModelConfig(input_size=size, width_mult=0.35, stem=stem)
    model = build_model(model_cfg, pretrained=False)
    weights = {"heatmap": cfg.heatmap_weight, "offset": cfg.offset_weight}
    params = list(model.backbone.parameters())
    norms = {}
    for term, weight in weights.items():
        # The reported terms are detached: the loss with only this term's weight gives its gradient.
        only = LossConfig(
            heatmap_loss=cfg.heatmap_loss,
            heatmap_weight=weight if term == "heatmap" else 0.0,
            center_weight=0.0,
            reg_weight=0.0,
            offset_weight=weight if term == "offset" else 0.0,
        )
        total, _ = PoseLoss(only)(model(images), batch)
        grads = torch.autograd.grad(total, params)
        norms[term] = float(torch.sqrt(sum(g.square().sum() for g in grads)))
    return norms


@pytest.mark.parametrize("stem", ["fused", "mobilenetv2"])
def test_default_loss_does_not_starve_the_heatmaps(one_thread, stem):
    # With MSE on sigmoid heatmaps the heatmap term's gradient on the backbone is a few percent
    # of the offsets' on a fresh model (0.7% with MobileNetV2's stem, 2.4% with the fused one;
    # the heatmaps then barely learn, docs/model.md). The default focal loss and weights give
    # it the same order as the offsets'.
    default = _backbone_gradient_norms(LossConfig(), stem)
    old = _backbone_gradient_norms(LossConfig(heatmap_loss="mse", center_weight=1.0, reg_weight=0.1, offset_weight=1.0), stem)  # fmt: skip
    assert default["heatmap"] > 0.25 * default["offset"], default
    assert old["heatmap"] < 0.05 * old["offset"], old


def test_compact_targets_give_the_loss_of_the_dense_maps():
    """The reg and offset terms read the compact values where they once gathered the dense
    target maps at the same cells: the same numbers (the maps of ``target_maps``)."""
    batch = _batch(4, seed=3, hidden=(2, 11))
    _, _, reg_maps, off_maps = target_maps(batch)
    center, cells, mask = batch["center_index"], batch["joint_index"], batch["offset_mask"]
    assert torch.equal(gather_at(reg_maps, center).reshape(4, K, 2), batch["reg_values"])
    assert torch.equal(gather_at(off_maps, cells), batch["offset_values"])
    rng = torch.Generator().manual_seed(2)
    outputs = tuple(torch.rand(m.shape, generator=rng) for m in target_maps(batch))
    _, terms = PoseLoss(LossConfig(offset_radius=1))(outputs, batch)
    reg_pred = gather_at(outputs[2], center).reshape(4, K, 2)
    want_reg = masked_l1(reg_pred, gather_at(reg_maps, center).reshape(4, K, 2), mask)
    want_off = window_offset_l1(outputs[3], gather_at(off_maps, cells), cells, mask, 1)
    assert terms["reg"].item() == pytest.approx(want_reg.item(), rel=1e-6)
    assert terms["offset"].item() == pytest.approx(want_off.item(), rel=1e-6)
    assert terms["reg"].item() > 0.1 and terms["offset"].item() > 0.1
