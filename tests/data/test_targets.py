"""Training targets: conventions, masks, other people, and the exact round trip through the decoder."""

from __future__ import annotations

import json
from collections import defaultdict

import numpy as np
import pytest
import torch

from pkmodel.common.geometry import square_crop_box
from pkmodel.config import TargetsConfig
from pkmodel.data.targets import (
    encode_targets,
    person_sizes,
    point_cells,
    point_offsets,
    target_maps,
)
from pkmodel.model.decode import decode_single
from pkmodel.model.outputs import OUTPUT_NAMES
from tests.conftest import shared_data

K = 17


def _person(rng, size, lo=0.1, hi=0.9, vis=2.0):
    xy = rng.uniform(lo * size, hi * size, (K, 2))
    return np.concatenate([xy, np.full((K, 1), vis)], axis=1)


def _maps(t):
    """One sample's targets as the four output maps (``target_maps``), by name."""
    batch = {k: torch.from_numpy(np.asarray(v)[None]) for k, v in t.items()}
    return {name: m[0].numpy() for name, m in zip(OUTPUT_NAMES, target_maps(batch), strict=True)}


def _decode(t):
    maps = _maps(t)
    return decode_single([maps[name] for name in OUTPUT_NAMES])


def test_cell_and_offset_convention_round_trips_exactly():
    pts = np.array([[0.0, 0.0], [3.999, 4.0], [191.9, 100.5], [-3.0, 500.0]])
    cells = point_cells(pts, 4, 48)
    assert cells.tolist() == [[0, 0], [0, 1], [47, 25], [0, 47]]  # clipped at the grid edges
    off = point_offsets(pts[:3], 4, cells[:3])
    assert np.all((off >= 0) & (off < 1))
    assert np.allclose((cells[:3] + off) * 4, pts[:3], atol=1e-12)


@pytest.mark.parametrize("size", [96, 100, 192, 256])
def test_shapes_dtypes_and_peaks_on_any_grid(size):
    rng = np.random.default_rng(size)
    kps = _person(rng, size)
    t = encode_targets(kps, np.array([size / 2, size / 2]), None, None, size, TargetsConfig())
    g = size // 4
    assert t["heatmaps"].shape == (K, g, g) and t["centers"].shape == (1, g, g)
    assert t["reg_values"].shape == t["offset_values"].shape == (K, 2)
    assert "regs" not in t and "offsets" not in t  # no dense maps in training samples
    for name in ("heatmaps", "centers", "reg_values", "offset_values", "reg_mask", "offset_mask"):
        assert t[name].dtype == np.float32, name
    maps = _maps(t)
    assert maps["regs"].shape == maps["offsets"].shape == (2 * K, g, g)
    assert maps["regs"].dtype == np.float32
    assert t["center_index"].dtype == np.int64 and t["joint_index"].shape == (K, 2)
    cells = point_cells(kps[:, :2], 4, g)
    # Peak exactly 1.0 at each joint's cell, and that cell is the channel's maximum.
    assert np.all(t["heatmaps"][np.arange(K), cells[:, 1], cells[:, 0]] == 1.0)
    assert np.all(t["heatmaps"].reshape(K, -1).max(1) == 1.0)
    assert t["centers"][0, g // 2, g // 2] == 1.0
    assert np.array_equal(t["joint_index"], cells)
    assert t["reg_mask"].sum() == K


def test_invisible_and_outside_joints_carry_no_target():
    size, rng = 192, np.random.default_rng(1)
    kps = _person(rng, size)
    kps[3, 2] = 0  # not labelled
    kps[5, :2] = (-6.0, 50.0)  # labelled, left of the input
    kps[6, :2] = (50.0, 192.0)  # labelled, exactly on the far edge (outside [0, 192))
    t = encode_targets(kps, np.array([96.0, 96.0]), None, None, size, TargetsConfig())
    maps = _maps(t)
    for j in (3, 5, 6):
        assert t["reg_mask"][j] == 0 and t["offset_mask"][j] == 0
        assert t["heatmaps"][j].max() == 0.0
        assert not t["reg_values"][j].any() and not t["offset_values"][j].any()
        assert not maps["regs"][2 * j : 2 * j + 2].any()
        assert not maps["offsets"][2 * j : 2 * j + 2].any()
    assert t["reg_mask"].sum() == K - 3
    # Each labelled joint's offsets sit at its own cell, its sub-cell position (offset_values)
    # there, and nowhere else: the non-zero locations are those cells.
    kept = [j for j in range(K) if j not in (3, 5, 6)]
    cells = point_cells(kps[kept, :2], 4, size // 4)
    for j, (cx, cy) in zip(kept, cells, strict=True):
        np.testing.assert_array_equal(maps["offsets"][2 * j : 2 * j + 2, cy, cx], t["offset_values"][j])  # fmt: skip
        np.testing.assert_allclose(t["offset_values"][j], kps[j, :2] / 4 - (cx, cy), atol=1e-6)
    nonzero = {(int(x), int(y)) for y, x in zip(*np.nonzero(maps["offsets"].any(axis=0)), strict=True)}  # fmt: skip
    assert nonzero == {(int(x), int(y)) for x, y in cells}


def test_regs_round_correctly_for_joints_left_of_and_above_the_center():
    size = 192
    center = np.array([100.0, 100.0])  # cell (25, 25)
    xs = np.array([3.7, 10.1, 42.0, 57.3, 99.9, 100.0, 163.2, 190.0, 1.0, 60.5])
    kps = np.zeros((K, 3))
    kps[: len(xs), 0] = xs
    kps[: len(xs), 1] = xs[::-1]
    kps[: len(xs), 2] = 2
    t = encode_targets(kps, center, None, None, size, TargetsConfig())
    cx, cy = t["center_index"]
    assert (cx, cy) == (25, 25)
    reg = _maps(t)["regs"][:, cy, cx].reshape(K, 2)[: len(xs)]
    assert np.array_equal(reg, t["reg_values"][: len(xs)])
    cells = point_cells(kps[: len(xs), :2], 4, 48)
    assert (reg < 0).any()
    assert np.array_equal(cx + np.floor(reg + 0.5).astype(int), cells)
    # Truncation (the old fault) would be one cell off for some of these negative regs.
    assert not np.array_equal(cx + (reg + 0.5).astype(int), cells)


def test_other_people_in_heatmaps_and_centers_but_not_in_regs_or_offsets():
    size, rng = 192, np.random.default_rng(2)
    main = _person(rng, size, 0.4, 0.6)
    other = _person(rng, size, 0.05, 0.3)
    other[0, 2] = 0  # an unlabelled joint of the other person adds nothing
    other_center = np.array([[20.0, 20.0]])
    t = encode_targets(
        main, np.array([96.0, 96.0]), other[None], other_center, size, TargetsConfig()
    )
    ocells = point_cells(other[:, :2], 4, 48)
    assert np.all(t["heatmaps"][np.arange(1, K), ocells[1:, 1], ocells[1:, 0]] == 1.0)
    assert t["centers"][0, 5, 5] == 1.0
    main_cells = point_cells(main[:, :2], 4, 48)
    # Offsets only at the main person's cells.
    maps = _maps(t)
    written = np.argwhere(maps["offsets"].any(axis=0))
    assert {tuple(c) for c in written} <= {(y, x) for x, y in main_cells}
    # Regs only at the main center cell.
    assert np.argwhere(maps["regs"].any(axis=0)).tolist() == [[24, 24]]
    # Other centers outside the input add nothing.
    t2 = encode_targets(main, np.array([96.0, 96.0]), other[None], np.array([[-50.0, 20.0]]),
                        size, TargetsConfig())  # fmt: skip
    assert t2["centers"][0].sum() < t["centers"][0].sum()


def test_sigma_follows_person_size_within_bounds():
    cfg = TargetsConfig(sigma_scale=0.05, min_sigma=1.0, max_sigma=3.0)
    kps = np.zeros((K, 3))
    kps[:, 2] = 2
    values = []
    for extent in (8.0, 160.0, 190.0):  # person size 2, 40 and 47.5 cells
        kps[1:, 0] = np.linspace(96 - extent / 2, 96 + extent / 2, K - 1)
        kps[:, 1] = 96.0
        kps[0, :2] = (96.5, 96.5)  # joint 0 sits at cell (24, 24)
        t = encode_targets(kps, np.array([96.0, 96.0]), None, None, 192, cfg)
        values.append(float(t["heatmaps"][0, 24, 26]))  # two cells to the right
    sigmas = [np.sqrt(-4.0 / (2 * np.log(v))) for v in values]
    assert sigmas == pytest.approx([1.0, 2.0, 2.375], abs=1e-4)  # min clip, 0.05 x 40, 0.05 x 47.5
    assert person_sizes(kps[None], 4) == pytest.approx([47.5])


def test_person_size_and_sigma_count_labelled_joints_only():
    """COCO stores an unlabelled joint as (0, 0, 0): counted in the box, it would stretch a
    person of 8 cells to 28 and push sigma to its upper bound."""
    cfg = TargetsConfig(sigma_scale=0.05, min_sigma=0.1, max_sigma=3.0)
    kps = np.zeros((K, 3))
    kps[1:, 0] = np.linspace(80.0, 112.0, K - 1)  # 32 pixels: 8 cells
    kps[1:, 1] = 96.0
    kps[1:, 2] = 2
    kps[0] = (0.0, 0.0, 0.0)  # the nose, unlabelled
    assert person_sizes(kps[None], 4) == pytest.approx([8.0])
    t = encode_targets(kps, np.array([96.0, 96.0]), None, None, 192, cfg)
    # joint 1 at (80, 96): cell (20, 24); two cells to its right
    sigma = np.sqrt(-4.0 / (2 * np.log(float(t["heatmaps"][1, 24, 22]))))
    assert sigma == pytest.approx(0.4, abs=1e-6)  # 0.05 x 8 cells


def test_two_people_overlapping_keep_the_higher_gaussian_not_the_sum():
    """Where two people's same joint lie close, the heatmap is the larger of the two Gaussians
    (CenterNet's element-wise maximum), not their sum clipped to 1."""
    cfg = TargetsConfig(sigma_scale=1.0, min_sigma=2.0, max_sigma=2.0)
    main, other = np.zeros((K, 3)), np.zeros((K, 3))
    main[0], other[0] = (96.5, 96.5, 2), (104.5, 96.5, 2)  # cells (24, 24) and (26, 24)
    t = encode_targets(
        main, np.array([96.0, 96.0]), other[None], np.array([[60.0, 60.0]]), 192, cfg
    )
    assert t["heatmaps"][0, 24, 25] == pytest.approx(np.exp(-1 / 8), abs=1e-6)  # 0.8825, not 1
    assert t["heatmaps"][0, 24, 24] == 1.0 and t["heatmaps"][0, 24, 26] == 1.0


def test_the_main_center_outside_the_input_is_encoded_at_the_nearest_cell():
    """Regs need a center cell: a main center pushed off the input (by augmentation) is still
    encoded, clipped to the grid; another person's center off the input is not."""
    kps = np.zeros((K, 3))
    kps[0] = (20.5, 50.5, 2)
    t = encode_targets(kps, np.array([-10.0, 50.0]), None, None, 192, TargetsConfig())
    assert t["center_index"].tolist() == [0, 12]
    assert t["centers"].max() == 1.0 and t["centers"][0, 12, 0] == 1.0
    assert t["reg_values"][0].tolist() == pytest.approx([20.5 / 4 - 0.5 - 0, 50.5 / 4 - 0.5 - 12])


def _assert_round_trip(t, kps, tol=0.5):
    d = _decode(t)
    labelled = t["reg_mask"] > 0
    assert np.array_equal(d.center, t["center_index"])
    assert d.found[labelled].all()
    err = np.abs(d.keypoints[labelled] - kps[labelled, :2])
    assert err.max(initial=0.0) < tol
    return err


@pytest.mark.parametrize("size", [192, 256])
def test_round_trip_random_keypoints(size):
    rng = np.random.default_rng(size)
    cfg = TargetsConfig(max_sigma=3.0)
    negative = 0
    worst = 0.0
    for _ in range(150):
        kps = _person(rng, size, -0.05, 1.05)  # some joints fall outside the input
        kps[:, 2] = rng.integers(0, 3, K)
        center = rng.uniform(0.45 * size, 0.55 * size, 2)
        n_others = int(rng.integers(0, 3))
        others = np.array([_person(rng, size) for _ in range(n_others)]).reshape(-1, K, 3)
        # Other people's centers farther from the middle than the main person's.
        ocenters = rng.choice([0.1, 0.9], (n_others, 2)) * size
        t = encode_targets(kps, center, others, ocenters, size, cfg)
        err = _assert_round_trip(t, kps)
        worst = max(worst, float(err.max(initial=0.0)))
        reg = t["reg_values"]
        negative += int((reg < -0.5).sum())
    assert negative > 100  # many joints left of / above the center were checked
    assert worst < 1e-3  # float32 storage only


def _coco_people(path):
    data = json.loads(path.read_text())
    by_image = defaultdict(list)
    for ann in data["annotations"]:
        if not ann.get("iscrowd", 0):
            by_image[ann["image_id"]].append(ann)
    return by_image


@pytest.mark.parametrize("size", [192, 256])
def test_round_trip_real_coco_keypoints(size):
    sources = [
        shared_data("coco_mini", "annotations", "person_keypoints_train2017.json"),
        shared_data("mmpose_coco", "test_coco.json"),
    ]
    cfg = TargetsConfig()
    people = joints = left_or_above = 0
    for path in sources:
        for anns in _coco_people(path).values():
            for main in anns:
                if main["num_keypoints"] == 0:
                    continue
                x0, y0, side = square_crop_box(main["bbox"], 1.25)
                scale = size / side

                def to_input(ann, x0=x0, y0=y0, scale=scale):
                    k = np.array(ann["keypoints"], np.float64).reshape(K, 3)
                    k[:, :2] = (k[:, :2] - (x0, y0)) * scale
                    bx, by, bw, bh = ann["bbox"]
                    c = (np.array([bx + bw / 2, by + bh / 2]) - (x0, y0)) * scale
                    return k, c

                kps, center = to_input(main)
                others = [to_input(a) for a in anns if a is not main]
                oks = np.array([o[0] for o in others]).reshape(-1, K, 3)
                ocs = np.array([o[1] for o in others]).reshape(-1, 2)
                t = encode_targets(kps, center, oks, ocs, size, cfg)
                _assert_round_trip(t, kps)
                labelled = t["reg_mask"] > 0
                people += 1
                joints += int(labelled.sum())
                cell = t["center_index"]
                left_or_above += int((t["joint_index"][labelled] < cell).any(axis=1).sum())
    assert people >= 90 and joints >= 900
    assert left_or_above > joints // 3
