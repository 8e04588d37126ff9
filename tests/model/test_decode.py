"""The decoder: agreement with the loop reference and the torch twin, rounding, prior, speed."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pkmodel.common.geometry import crop_to_image, image_to_crop, letterbox_params
from pkmodel.model.decode import (
    DecodeSettings,
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
