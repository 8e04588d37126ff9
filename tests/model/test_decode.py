"""The decoder: agreement with the loop reference and the torch twin, rounding, prior, speed;
the posekit-app style against a transcription of the app's Swift decoder, and its vectors."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from pkmodel.common.errors import PkmodelError
from pkmodel.common.geometry import crop_to_image, image_to_crop, letterbox_params
from pkmodel.config import load_config
from pkmodel.model.decode import (
    DecodeSettings,
    app_center_weight,
    center_prior,
    decode_batch,
    decode_batch_torch,
    decode_poses,
    decode_single,
    keypoints_to_image,
)
from pkmodel.tools.benchmark.stages import decode_per_joint, random_outputs
from pkmodel.tools.benchmark.timing import time_per_frame
from tests.model.decode_reference import decode_reference

K = 17


def _assert_same(a, b, atol=0.0):
    assert np.array_equal(a.center, b.center)
    assert np.array_equal(a.cells, b.cells)
    assert np.array_equal(a.found, b.found)
    assert np.array_equal(a.scores, b.scores)
    assert np.allclose(a.keypoints, b.keypoints, atol=atol, rtol=0)


@pytest.mark.parametrize(("grid", "seed"), [(48, 0), (64, 1), (25, 2), (12, 3)])
def test_vectorised_decoder_agrees_with_loop_reference(grid, seed):
    outs = random_outputs(3, K, grid, seed)
    thr = float(np.median(decode_batch(outs).scores))  # a threshold that splits the joints
    settings = DecodeSettings(stride=4, score_threshold=thr, prior_offset=1.8)
    fast = decode_batch(outs, settings)
    _assert_same(fast, decode_reference(outs, settings))
    _assert_same(fast, decode_per_joint(outs, settings))
    assert 0 < fast.found.sum() < fast.found.size  # the threshold splits the joints


def test_agreement_on_peaky_network_like_outputs():
    # Random maps plus strong peaks: the weighting and the regs really decide the result.
    rng = np.random.default_rng(7)
    heat, cen, regs, offs = random_outputs(4, K, 48, 7)
    heat *= 0.3
    cen *= 0.3
    cen[:, 0, 20:28, 20:28] += rng.random((4, 8, 8)).astype(np.float32)
    heat[:, :, ::7, ::5] += 0.6
    settings = DecodeSettings(prior_offset=2.5)
    fast = decode_batch((heat, cen, regs, offs), settings)
    _assert_same(fast, decode_reference((heat, cen, regs, offs), settings))


@pytest.mark.parametrize("grid", [48, 64])
def test_torch_twin_agrees_with_numpy(grid):
    outs = random_outputs(8, K, grid, seed=grid)
    tensors = [torch.from_numpy(a) for a in outs]
    np_dec = decode_batch(outs)
    t_dec = decode_batch_torch(tensors)
    assert isinstance(t_dec.keypoints, torch.Tensor)
    as_np = type(np_dec)(*(t.cpu().numpy() for t in t_dec))
    _assert_same(np_dec, as_np._replace(scores=as_np.scores.astype(np.float64)), atol=1e-4)
    # decode_batch accepts tensors too.
    _assert_same(np_dec, decode_batch(tensors))
    # decode_poses gives the same poses from tensors (torch twin) and arrays (NumPy decoder).
    on_device, on_cpu = (
        decode_poses(tensors, DecodeSettings()),
        decode_poses(outs, DecodeSettings()),
    )
    assert on_device.keys() == on_cpu.keys()
    for key in ("found", "center_scores", "centers"):
        assert np.array_equal(on_device[key], on_cpu[key]), key
    assert np.allclose(on_device["keypoints"], on_cpu["keypoints"], atol=1e-4, rtol=0)
    assert np.allclose(on_device["scores"], on_cpu["scores"], atol=0, rtol=0)
    rows = np.arange(len(outs[1]))
    want = outs[1][rows, 0, np_dec.center[:, 1], np_dec.center[:, 0]]
    assert np.array_equal(on_cpu["center_scores"], want)
    assert np.array_equal(on_cpu["centers"], (np_dec.center + 0.5) * 4)


def _one_center_outputs(grid, center, regs_xy):
    heat = np.full((1, K, grid, grid), 0.5, np.float32)  # flat: the regressed cell wins
    cen = np.zeros((1, 1, grid, grid), np.float32)
    cen[0, 0, center[1], center[0]] = 1.0
    regs = np.zeros((1, 2 * K, grid, grid), np.float32)
    regs[0, 0::2, center[1], center[0]] = regs_xy[:, 0]
    regs[0, 1::2, center[1], center[0]] = regs_xy[:, 1]
    offs = np.full((1, 2 * K, grid, grid), 0.25, np.float32)
    return heat, cen, regs, offs


def test_negative_regs_round_not_truncate():
    reg_x = np.array([-2.6, -2.5, -2.4, -0.6, -0.4, 0.4, 0.5, 0.6, 2.5, 3.49] + [0.0] * 7)
    reg_y = -reg_x
    outs = _one_center_outputs(24, (10, 12), np.stack([reg_x, reg_y], 1).astype(np.float32))
    for decode in (decode_batch, decode_reference):
        d = decode(outs)
        want_x = 10 + np.floor(reg_x.astype(np.float32) + 0.5)
        want_y = 12 + np.floor(reg_y.astype(np.float32) + 0.5)
        assert d.cells[0, :10, 0].tolist() == want_x[:10].tolist()
        assert d.cells[0, :10, 0].tolist() == [7, 8, 8, 9, 10, 10, 11, 11, 13, 13]
        assert d.cells[0, :10, 1].tolist() == want_y[:10].tolist()
    t = decode_batch_torch([torch.from_numpy(a) for a in outs])
    assert t.cells[0, :10, 0].tolist() == [7, 8, 8, 9, 10, 10, 11, 11, 13, 13]
    # Positions: (cell + offset) * stride.
    d = decode_batch(outs, DecodeSettings(stride=4))
    assert np.allclose(d.keypoints[0, 0], [(7 + 0.25) * 4, (15 + 0.25) * 4])
    # Just below one half: float32 "x + 0.5" would round up to 1.0; both decoders must not.
    below_half = np.nextafter(np.float32(0.5), np.float32(0))
    edge = np.array([[below_half, -below_half - np.float32(1)]] + [[0, 0]] * (K - 1), np.float32)
    outs = _one_center_outputs(24, (10, 12), edge)
    assert decode_batch(outs).cells[0, 0].tolist() == [10, 11]
    assert decode_batch_torch([torch.from_numpy(a) for a in outs]).cells[0, 0].tolist() == [10, 11]


def test_regressed_cell_is_clipped_to_the_grid():
    regs = np.zeros((K, 2), np.float32)
    regs[0] = (-40.0, 40.0)
    d = decode_single([a[0] for a in _one_center_outputs(16, (3, 3), regs)])
    assert d.cells[0].tolist() == [0, 15]
    assert d.keypoints.shape == (K, 2) and d.center.tolist() == [3, 3]


def test_center_prior_prefers_the_middle_and_weights_distance():
    grid = 48
    prior = center_prior(grid, grid, 1.8)
    assert prior[23, 23] == prior[24, 24] == prior.max()  # even grid: four middle cells
    assert prior[0, 0] == pytest.approx(1 / (np.hypot(23.5, 23.5) + 1.8))
    heat, cen, regs, offs = random_outputs(1, K, grid, 0)
    cen[:] = 0
    cen[0, 0, 5, 5] = 1.0  # strong but far
    cen[0, 0, 25, 26] = 0.5  # weaker but central: 0.5 / (2.9 + 1.8) > 1 / (26.2 + 1.8)
    assert decode_batch((heat, cen, regs, offs)).center[0].tolist() == [26, 25]
    cen[0, 0, 5, 5] = 6.5  # strong enough to beat the prior
    assert decode_batch((heat, cen, regs, offs)).center[0].tolist() == [5, 5]


def test_center_prior_offset_is_the_configured_one_in_both_decoders():
    """Guards the center step reading ``prior_offset`` (not a fixed 1.8), and the torch twin's
    table cache keying on it (a stale table of another offset would pick another center)."""
    heat, cen, regs, offs = random_outputs(1, K, 25, 4)
    cen[:] = 0
    cen[0, 0, 12, 12] = 0.5  # the grid center, d = 0: 0.5 / 1.8 = 0.278; 0.5 / 20 = 0.025
    cen[0, 0, 2, 12] = 1.0  # d = 10: 1 / 11.8 = 0.085; 1 / 30 = 0.033
    outs = (heat, cen, regs, offs)
    tensors = [torch.from_numpy(a) for a in outs]
    for offset, want in ((1.8, [12, 12]), (20.0, [12, 2]), (1.8, [12, 12])):
        settings = DecodeSettings(prior_offset=offset)
        assert decode_batch(outs, settings).center[0].tolist() == want, offset
        assert decode_batch_torch(tensors, settings).center[0].tolist() == want, offset
        assert decode_reference(outs, settings).center[0].tolist() == want, offset


def test_non_square_grids_agree_with_the_references():
    """Guards rows and columns kept apart (h vs w) in both styles and both decoders: the argmax
    split (flat // w), the clip of the regressed cell to h - 1 / w - 1, the app's missing-joint
    middle (w/2, h/2) and its 48 * 48-cell rule (a 32 x 72 grid gets the table, row-major)."""
    heat, cen, regs, offs = random_outputs(2, K, 72, 9)
    outs = (heat[..., :12, :20], cen[..., :12, :20], regs[..., :12, :20], offs[..., :12, :20])
    outs = tuple(np.ascontiguousarray(a) for a in outs)
    outs[2][:] *= 3  # regs of +-100 cells: many regressed cells are clipped on both axes
    settings = DecodeSettings(stride=4, score_threshold=0.5)
    dec = decode_batch(outs, settings)
    _assert_same(dec, decode_reference(outs, settings))
    t_dec = decode_batch_torch([torch.from_numpy(a) for a in outs], settings)
    for name in ("center", "cells", "found"):
        assert np.array_equal(getattr(t_dec, name).numpy(), getattr(dec, name)), name
    assert (dec.cells[..., 1] == 11).any() and (dec.cells[..., 0] == 19).any()
    app = DecodeSettings(stride=4, score_threshold=0.3, style=APP)
    for h, w in ((12, 20), (32, 72)):
        sub = tuple(np.ascontiguousarray(a[:1, :, :h, :w]) for a in (heat, cen, regs, offs))
        sub[0][0, 0] *= 0.05  # joint 0 is missing: at the middle of the w x h grid
        dec = decode_batch(sub, app)
        _assert_matches_transcription(sub, dec, app)
        assert dec.keypoints[0, 0].tolist() == [w * 2.0, h * 2.0]
        t_dec = decode_batch_torch([torch.from_numpy(a) for a in sub], app)
        assert np.array_equal(t_dec.center.numpy(), dec.center)
        assert np.array_equal(t_dec.cells.numpy(), dec.cells)
        assert np.allclose(t_dec.keypoints.numpy(), dec.keypoints, atol=1e-4, rtol=0)


def test_refinement_prefers_peaks_near_the_regressed_cell():
    regs = np.zeros((K, 2), np.float32)
    regs[0] = (5.0, 0.0)  # joint 0 regressed to (15, 10)
    heat, cen, r, offs = _one_center_outputs(32, (10, 10), regs)
    heat[:] = 0.0
    heat[0, 0, 10, 17] = 0.6  # near: 0.6 / (2 + 1.8) = 0.158
    heat[0, 0, 10, 30] = 0.9  # far:  0.9 / (15 + 1.8) = 0.054
    d = decode_batch((heat, cen, r, offs), DecodeSettings(score_threshold=0.2))
    assert d.cells[0, 0].tolist() == [17, 10]
    assert d.scores[0, 0] == pytest.approx(0.6)
    # Joints whose chosen cell scores 0 are not found, yet their coordinates are real numbers.
    assert not d.found[0, 1:].any() and np.isfinite(d.keypoints).all()


def test_shape_mismatch_is_reported():
    heat, cen, regs, offs = random_outputs(2, K, 16)
    with pytest.raises(ValueError, match="regs has shape"):
        decode_batch((heat, cen, regs[:, :-1], offs))


def test_keypoints_to_image_undoes_letterbox_and_crop():
    crop_box, crop_size, size = np.array([37.0, -12.0, 300.0]), 256, 192
    original = np.array([[100.0, 50.0], [300.0, 250.0]])
    crop_pts = image_to_crop(original, crop_box, crop_size)
    lb = letterbox_params(crop_size, crop_size, size)
    inputs = lb.to_input(crop_pts)
    back = keypoints_to_image(inputs, lb, crop_box, crop_size)
    assert np.allclose(back, original, atol=1e-9)
    assert np.allclose(keypoints_to_image(crop_pts, None, crop_box, crop_size),
                       crop_to_image(crop_pts, crop_box, crop_size))  # fmt: skip


def test_batch_decoder_is_at_least_20x_faster_than_the_loop_reference():
    outs = random_outputs(64, K, 48)
    few = [a[:2] for a in outs]  # the pure-Python reference is slow: a couple of frames
    batch_us = time_per_frame(lambda: decode_batch(outs), 64, 0.05)
    loop_us = time_per_frame(lambda: decode_reference(few), 2, 0.05)
    per_joint_us = time_per_frame(lambda: decode_per_joint(outs), 64, 0.05)
    assert loop_us / batch_us >= 20.0, (batch_us, loop_us)
    assert batch_us < per_joint_us, (batch_us, per_joint_us)


# --------------------------------------------------------------------------------------------
# decoder.style = "posekit-app": the PoseKit app's Swift decoder, faults included

APP = "posekit-app"
FLT_MAX = float(np.finfo(np.float32).max)
BELOW_HALF = float(np.nextafter(np.float32(0.5), np.float32(0)))  # 0.49999997


def _f32(value: float) -> float:
    """``value`` rounded to float32: Swift's Float arithmetic rounds every result."""
    return float(np.float32(value))


APP_GATE, APP_1_8 = _f32(0.1), _f32(1.8)


def _app_weight_table() -> list[float]:
    """The app's ``centerWeight`` literals (48 x 48, row-major): 1 / (sqrt((x - 24)^2 + (y - 24)^2)
    + 1.8) in Float, written with six decimals; a Swift literal is read as the nearest Float."""
    table = []
    for y in range(48):
        for x in range(48):
            d = _f32(math.sqrt(_f32((x - 24) ** 2 + (y - 24) ** 2)))
            table.append(_f32(float(f"{_f32(1.0 / _f32(d + APP_1_8)):.6f}")))
    return table


_APP_TABLE: list[float] = []


def app_transcription(heat, cen, regs, offs):
    """PoseKitModel.decodeOutput (the app's Swift, PoseKitApp/Sources, commit 99a4ca5) line by
    line for one sample (arrays C x h x w), with the identity letterbox. Returns the center
    (x, y), and per joint (x_norm, y_norm, score, cell x, cell y).

    Two shortcuts that change no result: a denominator is computed once per dx^2 + dy^2, and a
    quotient is rounded to Float only when it may beat the best (rounding is monotone).
    """
    if not _APP_TABLE:
        _APP_TABLE.extend(_app_weight_table())
    hm, cm, rm, om = heat.tolist(), cen[0].tolist(), regs.tolist(), offs.tolist()
    grid_h, grid_w = len(cm), len(cm[0])
    has_center_weight = len(_APP_TABLE) == grid_w * grid_h
    center_x, center_y, best_center = 0, 0, -FLT_MAX
    for y in range(grid_h):
        for x in range(grid_w):
            value = cm[y][x]
            weighted = _f32(value * _APP_TABLE[y * grid_w + x]) if has_center_weight else value
            if weighted > best_center:
                best_center, center_x, center_y = weighted, x, y
    denoms: dict[int, float] = {}
    joints = []
    for joint in range(17):
        reg_x_origin = int(_f32(rm[2 * joint][center_y][center_x] + 0.5))  # Int(): truncates
        reg_y_origin = int(_f32(rm[2 * joint + 1][center_y][center_x] + 0.5))
        reg_x_base, reg_y_base = reg_x_origin + center_x, reg_y_origin + center_y
        best_x, best_y, best_value = 0, 0, -FLT_MAX
        for y, row in enumerate(hm[joint]):
            dy = y - reg_y_base
            for x, heat_value in enumerate(row):
                if heat_value < APP_GATE:
                    continue
                dx = x - reg_x_base
                d2 = dx * dx + dy * dy  # Float(dx) * Float(dx) + ...: exact for these integers
                if d2 not in denoms:
                    denoms[d2] = _f32(_f32(math.sqrt(d2)) + APP_1_8)
                value = heat_value / denoms[d2]
                if value > best_value and _f32(value) > best_value:
                    best_value, best_x, best_y = _f32(value), x, y
        best_x, best_y = min(max(best_x, 0), grid_w - 1), min(max(best_y, 0), grid_h - 1)
        score = max(0.0, hm[joint][best_y][best_x])
        if score < APP_GATE:
            joints.append((0.5, 0.5, 0.0, best_x, best_y))
            continue
        offset_x, offset_y = om[2 * joint][best_y][best_x], om[2 * joint + 1][best_y][best_x]
        x_norm = _f32(_f32(best_x + offset_x) / grid_w)
        y_norm = _f32(_f32(best_y + offset_y) / grid_h)
        joints.append((x_norm, y_norm, score, best_x, best_y))
    return (center_x, center_y), joints


def _app_random_outputs(n, grid, seed):
    """Random outputs for the app's decoder: heatmaps and centers in [0, 1] (some joints scaled
    so that few or no cells pass the 0.1 gate; a third of the samples with a strong center
    spike anywhere, so regressed cells leave the grid), regs in [-10, 10] with fractional parts
    plus rounding edges, offsets in [0, 1)."""
    rng = np.random.default_rng(seed)
    heat = rng.random((n, K, grid, grid), dtype=np.float32)
    scale = rng.choice(np.array([1.0, 1.0, 0.3, 0.11, 0.101, 0.09], np.float32), (n, K))
    at_gate = (rng.random(heat.shape) < 0.002) & (scale > 0.1)[..., None, None]
    heat *= scale[..., None, None]
    heat[at_gate] = np.float32(0.1)  # exactly at the gate; joints scaled by 0.09 are missing
    cen = rng.random((n, 1, grid, grid), dtype=np.float32)
    spiked = np.flatnonzero(rng.random(n) < 1 / 3)
    ys, xs = rng.integers(0, grid, (2, len(spiked)))
    cen[spiked, 0, ys, xs] = 1 + 20 * rng.random(len(spiked), dtype=np.float32)
    regs = ((rng.random((n, 2 * K, grid, grid)) - 0.5) * 20).astype(np.float32)
    edges = np.array([-2.5, -2, -1.5, -1, -0.5, 0, 0.5, 1, 1.5, BELOW_HALF, -2.3], np.float32)
    pick = rng.random(regs.shape) < 0.1
    regs[pick] = rng.choice(edges, pick.sum())
    offs = rng.random((n, 2 * K, grid, grid), dtype=np.float32)
    return heat, cen, regs, offs


def _assert_matches_transcription(outs, dec, settings):
    stride, score_threshold = settings.stride, settings.score_threshold
    n, _, h, w = outs[0].shape
    for i in range(n):
        center, joints = app_transcription(*(o[i] for o in outs))
        assert dec.center[i].tolist() == list(center), i
        got = np.array(joints)
        assert dec.cells[i].tolist() == got[:, 3:].astype(int).tolist(), i
        assert dec.scores[i].tolist() == got[:, 2].tolist(), i
        missing = got[:, 2] == 0
        assert dec.found[i].tolist() == (~missing & (got[:, 2] >= score_threshold)).tolist()
        norm = dec.keypoints[i] / np.array([w * stride, h * stride])
        assert np.allclose(norm, got[:, :2], atol=1e-6, rtol=0), i


@pytest.mark.slow
@pytest.mark.parametrize(("grid", "n", "seed"), [(48, 1000, 11), (24, 200, 12)])
def test_app_style_equals_a_transcription_of_the_app(grid, n, seed):
    settings = DecodeSettings(stride=4, score_threshold=0.3, style=APP)
    missing = gated = 0
    for start in range(0, n, 100):
        outs = _app_random_outputs(100, grid, seed * 1000 + start)
        dec = decode_batch(outs, settings)
        _assert_matches_transcription(outs, dec, settings)
        t_dec = decode_batch_torch([torch.from_numpy(a) for a in outs], settings)
        for name in ("center", "cells", "found"):
            assert np.array_equal(getattr(t_dec, name).numpy(), getattr(dec, name)), name
        assert np.array_equal(t_dec.scores.numpy().astype(np.float64), dec.scores)
        assert np.allclose(t_dec.keypoints.numpy(), dec.keypoints, atol=1e-4, rtol=0)
        missing += int((dec.scores == 0).sum())
        pk = decode_batch(outs, DecodeSettings(stride=4))
        gated += int((pk.scores < 0.1).sum())  # pkmodel picked a cell the app skips
    assert missing > 0 and gated > missing  # the gate and the missing-joint rule were exercised


def test_app_center_weight_is_the_apps_table():
    table = app_center_weight()
    assert table.shape == (48, 48) and table.dtype == np.float32
    assert table.ravel().tolist() == _app_weight_table()
    # Literals of the app's source: corners, the middle (24, 24), and [2][7] where rounding
    # the float64 weight (0.0337805) would give 0.033780 instead of the app's 0.033781.
    for (y, x), literal in {
        (0, 0): 0.027979, (0, 1): 0.028538, (24, 24): 0.555556, (23, 24): 0.357143,
        (47, 47): 0.029132, (24, 0): 0.038760, (2, 7): 0.033781, (46, 41): 0.033781,
    }.items():  # fmt: skip
        assert table[y, x] == np.float32(literal), (y, x)
    assert table.argmax() == 24 * 48 + 24  # centred on (w/2, h/2), not ((w-1)/2, (h-1)/2)


def test_app_style_center_is_on_w_over_2():
    # Equal center values at (23, 23) and (24, 24): pkmodel's prior (centred on 23.5) ties and
    # keeps the first; the app's table (centred on 24) prefers (24, 24).
    heat, cen, regs, offs = random_outputs(1, K, 48, 3)
    cen[:] = 0
    cen[0, 0, 23, 23] = cen[0, 0, 24, 24] = 0.7
    assert decode_batch((heat, cen, regs, offs)).center[0].tolist() == [23, 23]
    assert decode_batch((heat, cen, regs, offs), DecodeSettings(style=APP)).center[0].tolist() == [24, 24]  # fmt: skip
    # Another grid (not 2,304 cells): no weight at all, the plain argmax (a far cell wins).
    heat, cen, regs, offs = random_outputs(1, K, 50, 3)
    cen[:] = 0.1
    cen[0, 0, 1, 2] = 0.2
    assert decode_batch((heat, cen, regs, offs), DecodeSettings(style=APP)).center[0].tolist() == [2, 1]  # fmt: skip
    assert decode_batch((heat, cen, regs, offs)).center[0].tolist() != [2, 1]


def _fault_predicted(reg: np.ndarray) -> np.ndarray:
    """Where Int(reg + 0.5) (float32 sum, truncation) exceeds floor(reg + 0.5) by one: the sum is
    negative and not whole, or reg is 0.49999997, whose float32 sum rounds up to 1.0."""
    s = reg.astype(np.float64) + 0.5
    return ((s < 0) & (s != np.floor(s))) | (reg == np.float32(BELOW_HALF))


def test_styles_differ_exactly_where_the_truncation_fault_predicts():
    # One center cell (so no prior decides), flat heat of 0.5 (so no gate and no peak decides):
    # each style's joint cell is its regressed cell, center + its rounding of the reg.
    differ = [-2.3, -0.7, -1.2, -3.6, -9.9, -0.51, -1.0, -2.0, -7.0]  # app one cell more
    agree = [-0.5, -0.3, -1.5, -2.5, 0.0, 0.3, 0.5, 1.7, 2.0, 3.5, 9.9, 0.49]
    named = differ + agree
    rng = np.random.default_rng(5)
    extra = (rng.random(40 * 2 * K - len(named) - 1) - 0.5) * 20
    scale = 10.0 ** rng.integers(0, 4, extra.size)  # whole numbers and 1 to 3 decimals
    values = np.concatenate([named, [BELOW_HALF], np.round(extra * scale) / scale])
    values = values.astype(np.float32).reshape(-1, K, 2)
    for regs_xy in values:
        outs = _one_center_outputs(48, (24, 24), regs_xy)
        pk = decode_batch(outs).cells[0] - 24
        app = decode_batch(outs, DecodeSettings(style=APP)).cells[0] - 24
        t_app = decode_batch_torch([torch.from_numpy(a) for a in outs], DecodeSettings(style=APP))
        assert np.array_equal(t_app.cells[0].numpy() - 24, app)
        assert np.array_equal(pk, np.floor(regs_xy.astype(np.float64) + 0.5))
        assert np.array_equal(app - pk, _fault_predicted(regs_xy).astype(np.int64))
    first = values[0]  # the named values: -2.3 -> Int(-1.8) = -1 (app), floor(-1.8) = -2
    assert first[0, 0] == np.float32(-2.3)
    flat = values.ravel()
    assert _fault_predicted(flat).sum() > 100 and (~_fault_predicted(flat)).sum() > 100
    want = [1] * len(differ) + [0] * len(agree)
    assert _fault_predicted(np.array(named, np.float32)).astype(int).tolist() == want


def test_app_style_does_not_clip_the_regressed_cell():
    # Center (12, 3) and reg (10, 0): the app's regressed cell (22, 3) lies outside the 16 x 16
    # grid and the distances are measured to it; pkmodel clips it to (15, 3) first.
    regs = np.zeros((K, 2), np.float32)
    regs[0] = (10.0, 0.0)
    heat, cen, r, offs = _one_center_outputs(16, (12, 3), regs)
    heat[:] = 0.0
    heat[0, 0, 3, 15] = 0.5  # app: 0.5 / (7 + 1.8) = 0.057; pkmodel: 0.5 / 1.8 = 0.278
    heat[0, 0, 3, 11] = 0.9  # app: 0.9 / (11 + 1.8) = 0.070; pkmodel: 0.9 / 5.8 = 0.155
    outs = (heat, cen, r, offs)
    assert decode_batch(outs, DecodeSettings(style=APP)).cells[0, 0].tolist() == [11, 3]
    assert decode_batch(outs).cells[0, 0].tolist() == [15, 3]
    heat[0, 0, 3, 11] = 0.7  # app: 0.7 / 12.8 = 0.055 < 0.057
    assert decode_batch(outs, DecodeSettings(style=APP)).cells[0, 0].tolist() == [15, 3]


def test_app_heat_gate_and_missing_joints():
    # Regs 0: every joint is regressed to the center cell (10, 10).
    heat, cen, r, offs = _one_center_outputs(48, (10, 10), np.zeros((K, 2), np.float32))
    heat[:] = 0.0
    # Joint 0: below the gate at the regressed cell, a real peak far away.
    heat[0, 0, 10, 10] = 0.099  # 0.099 / 1.8 = 0.055: pkmodel takes it
    heat[0, 0, 10, 30] = 0.5  # 0.5 / 21.8 = 0.023: the app's only candidate
    # Joint 1: exactly at the gate counts (heat >= 0.1).
    heat[0, 1, 10, 12] = np.float32(0.1)
    heat[0, 1, 10, 40] = 0.12
    # Joint 2: nothing reaches the gate: missing. Joint 3: above the gate but under the
    # score threshold: found False, yet a real position.
    heat[0, 2, 10, 11] = 0.0999
    heat[0, 3, 20, 20] = 0.15
    outs = (heat, cen, r, offs)
    for settings in (DecodeSettings(stride=4, score_threshold=0.2, style=APP),
                     DecodeSettings(stride=4, score_threshold=0.0, style=APP)):  # fmt: skip
        app = decode_batch(outs, settings)
        t_app = decode_batch_torch([torch.from_numpy(a) for a in outs], settings)
        for dec in (app, type(app)(*(t.numpy() for t in t_app))):
            assert dec.cells[0, 0].tolist() == [30, 10] and dec.scores[0, 0] == np.float32(0.5)
            assert dec.cells[0, 1].tolist() == [12, 10] and dec.scores[0, 1] == np.float32(0.1)
            # Missing: the app's normalised (0.5, 0.5) = the middle of the 192-pixel input,
            # score 0, not found (even with a score threshold of 0), cell (0, 0).
            assert dec.keypoints[0, 2].tolist() == [96.0, 96.0]
            assert dec.scores[0, 2] == 0 and not dec.found[0, 2]
            assert dec.cells[0, 2].tolist() == [0, 0]
            assert dec.cells[0, 3].tolist() == [20, 20]
            assert np.allclose(dec.keypoints[0, 3], [(20 + 0.25) * 4] * 2)
            assert dec.found[0, 3] == (settings.score_threshold <= np.float32(0.15))
            assert not dec.found[0, 4:].any() and (dec.scores[0, 4:] == 0).all()
    pk = decode_batch(outs, DecodeSettings(stride=4))
    assert pk.cells[0, 0].tolist() == [10, 10] and pk.scores[0, 0] == np.float32(0.099)
    assert pk.cells[0, 2].tolist() == [11, 10] and pk.keypoints[0, 2].tolist() != [96.0, 96.0]
    # The missing position is the middle of the input, so the middle of a letterboxed image.
    lb = letterbox_params(640, 480, 192)
    assert keypoints_to_image(app.keypoints[0, 2], lb).tolist() == [320.0, 240.0]
    poses = decode_poses(outs, DecodeSettings(style=APP))
    assert poses["keypoints"][0, 2].tolist() == [96.0, 96.0]


def test_decoder_style_setting():
    assert DecodeSettings().style == "pkmodel"
    cfg = load_config(None, ["decoder.style=posekit-app"], env={})
    assert DecodeSettings.from_config(cfg.decoder, 4).style == APP
    assert DecodeSettings.for_grid(cfg.decoder, 192, 48) == DecodeSettings(4, 0.2, 1.8, APP)
    with pytest.raises(PkmodelError, match="decoder.style"):
        load_config(None, ["decoder.style=swift"], env={})
    with pytest.raises(ValueError, match="decoder style 'swift'"):
        DecodeSettings(style="swift")  # type: ignore[arg-type]


# The decoder vectors (tests/assets/decoder_vectors.json, written by scripts/decoder_vectors.py):
# network outputs and what each style decodes from them, for an app-side test to replay.
VECTORS = Path(__file__).resolve().parents[1] / "assets" / "decoder_vectors.json"


def _dense(spec: dict) -> np.ndarray:
    """One output of the vectors file: ``fill`` everywhere, then ``set`` [[c, y, x, value]];
    numbers are read as double and converted to float32 (as Swift's Float(Double))."""
    out = np.full(spec["shape"], np.float32(spec["fill"]), np.float32)
    for c, y, x, value in spec["set"]:
        out[c, y, x] = np.float32(value)
    return out[None]


def test_decoder_vectors_match_both_styles():
    assert VECTORS.stat().st_size < 200_000
    vectors = json.loads(VECTORS.read_text())
    assert vectors["format"] == "pkmodel-decoder-vectors/1"
    names = ("heatmaps", "centers", "regs", "offsets")
    settings = vectors["settings"]
    differ = 0
    for case in vectors["cases"]:
        outs = tuple(_dense(case["outputs"][name]) for name in names)
        decoded = {}
        for style, want in case["expected"].items():
            dec = decode_batch(outs, DecodeSettings(**settings, style=style))
            decoded[style] = dec
            assert dec.center[0].tolist() == want["center"], (case["name"], style)
            assert dec.cells[0].tolist() == want["cells"], (case["name"], style)
            assert dec.scores[0].tolist() == want["scores"], (case["name"], style)
            assert dec.found[0].tolist() == want["found"], (case["name"], style)
            assert dec.keypoints[0].tolist() == want["keypoints"], (case["name"], style)
        app = case["expected"][APP]
        side = np.array([outs[0].shape[3], outs[0].shape[2]]) * settings["stride"]
        assert np.array(app["keypoints_norm"]).tolist() == (np.array(app["keypoints"]) / side).tolist()  # fmt: skip
        # The independent transcription of the app agrees with the stored app expectations.
        center, joints = app_transcription(*(o[0] for o in outs))
        assert list(center) == app["center"]
        assert [list(j[3:]) for j in joints] == app["cells"]
        assert [j[2] for j in joints] == app["scores"]
        assert np.allclose([j[:2] for j in joints], app["keypoints_norm"], atol=1e-6, rtol=0)
        differ += int((decoded[APP].cells != decoded["pkmodel"].cells).any(-1).sum())
    assert differ > 0  # the vectors tell the styles apart
