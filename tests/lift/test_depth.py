import json

import numpy as np
import pytest

from pkmodel.common.camera import Intrinsics, backproject, project
from pkmodel.lift.depth import (
    band_widens,
    band_width,
    lift_joints,
    sample_depth,
    sample_depth_windows,
    surface_to_joint,
    to_depth_pixels,
)
from tests.conftest import shared_data

INTR = Intrinsics(fx=200.0, fy=210.0, cx=63.5, cy=47.5, width=128, height=96)


def pixel_rays(intr: Intrinsics) -> np.ndarray:
    """Unnormalised camera rays (H, W, 3) through every pixel center (z = 1)."""
    j, i = np.mgrid[0 : intr.height, 0 : intr.width].astype(np.float64)
    return np.stack([(i - intr.cx) / intr.fx, (j - intr.cy) / intr.fy, np.ones_like(i)], -1)


def plane_depth(intr: Intrinsics, normal, offset) -> np.ndarray:
    """Ray-cast depth (z) of the plane normal . p = offset at every pixel center."""
    rays = pixel_rays(intr)
    return offset / (rays @ np.asarray(normal, dtype=np.float64))


def sphere_depth(intr: Intrinsics, center, radius) -> np.ndarray:
    """Ray-cast depth of the near side of a sphere (0 where a ray misses it)."""
    rays = pixel_rays(intr)
    c = np.asarray(center, dtype=np.float64)
    a = (rays * rays).sum(-1)
    b = -2 * rays @ c
    disc = b * b - 4 * a * (c @ c - radius**2)
    t = (-b - np.sqrt(np.maximum(disc, 0))) / (2 * a)
    return np.where(disc >= 0, t, 0.0)


def test_tum_frame_matches_published_intrinsics_and_depth_scale():
    import cv2

    folder = shared_data("rgbd_tum_open3d")
    meta = json.loads((folder / "intrinsics.json").read_text())
    k = meta["freiburg3_color"]
    raw = cv2.imread(str(folder / "TUM_depth.png"), cv2.IMREAD_UNCHANGED)
    assert raw.dtype == np.uint16 and raw.shape == (480, 640)
    intr = Intrinsics(k["fx"], k["fy"], k["cx"], k["cy"], meta["width"], meta["height"])
    depth_m = raw.astype(np.float64) / meta["depth_scale_per_meter"]

    rng = np.random.default_rng(0)
    cols, rows = rng.integers(0, 640, 500), rng.integers(0, 480, 500)
    keypoints = np.stack([cols + 0.5, rows + 0.5], -1)[None]  # pixel centers, pkmodel convention
    points, sample = lift_joints(
        keypoints, depth_m[None], intr, window=1, min_depth=0.1, max_depth=10.0
    )
    # Direct computation: Z = value / 5000, X = (col - cx) / fx * Z, Y = (row - cy) / fy * Z.
    z = raw[rows, cols] / 5000.0
    expected = np.stack([(cols - 320.1) / 535.4 * z, (rows - 247.6) / 539.2 * z, z], -1)
    expected[raw[rows, cols] == 0] = np.nan
    assert np.isnan(expected).any() and np.isfinite(expected).sum() > 300
    np.testing.assert_allclose(points[0], expected, rtol=0, atol=1e-12)
    assert sample.valid[0].tolist() == (raw[rows, cols] > 0).tolist()

    # 5 x 5 window: the median of the non-zero values around each pixel, computed directly.
    _, sample5 = lift_joints(keypoints, depth_m[None], intr, window=5, min_depth=0.1, max_depth=10)
    for n in range(40):
        block = raw[max(rows[n] - 2, 0) : rows[n] + 3, max(cols[n] - 2, 0) : cols[n] + 3]
        good = block[block > 0] / 5000.0
        want = np.median(good) if good.size else np.nan
        np.testing.assert_allclose(sample5.depth[0, n], want, rtol=0, atol=1e-12)


def test_plane_points_recovered_exactly_at_pixel_centers():
    normal, offset = np.array([0.2, -0.1, 1.0]), 2.0
    depth = plane_depth(INTR, normal, offset)
    rng = np.random.default_rng(1)
    px = np.stack([rng.integers(5, 123, 30), rng.integers(5, 91, 30)], -1) + 0.5
    rays = np.stack([(px[:, 0] - 0.5 - INTR.cx) / INTR.fx, (px[:, 1] - 0.5 - INTR.cy) / INTR.fy,
                     np.ones(30)], -1)  # fmt: skip
    truth = rays * (offset / (rays @ normal))[:, None]
    np.testing.assert_allclose(project(truth, INTR), px, atol=1e-9)
    points, _ = lift_joints(px[None], depth[None], INTR, window=1, min_depth=0.1, max_depth=10)
    np.testing.assert_allclose(points[0], truth, atol=1e-12)
    # A 3 x 3 median on a tilted plane stays within the patch's depth range: millimetres here.
    points3, _ = lift_joints(px[None], depth[None], INTR, window=3, min_depth=0.1, max_depth=10)
    assert np.abs(points3[0] - truth).max() < 2e-3


def test_intrinsics_scaled_to_depth_resolution():
    half = INTR.scaled_to(64, 48)
    assert (half.fx, half.fy, half.cx, half.cy) == (100.0, 105.0, 31.5, 23.5)
    back = half.scaled_to(128, 96)
    assert back == INTR
    # A depth map at half resolution (fronto-parallel plane at 2.5 m); keypoints at full res.
    depth = np.full((1, 48, 64), 2.5)
    keypoints = np.array([[[10.25, 20.75], [100.5, 80.5], [64.0, 48.0]]])
    np.testing.assert_allclose(
        to_depth_pixels(keypoints, (128, 96), (64, 48))[0, 0], [5.125, 10.375]
    )
    points, _ = lift_joints(keypoints, depth, INTR, window=3, min_depth=0.1, max_depth=10)
    direct = backproject(keypoints, np.full((1, 3), 2.5), INTR)  # at the image's resolution
    np.testing.assert_allclose(points, direct, atol=1e-12)
    # A tilted plane ray-cast at the depth resolution: same 3D point as at full resolution.
    normal = np.array([0.0, 0.3, 1.0])
    kp = np.array([[[65.0, 41.0]]])  # the center of low-res pixel (32, 20)
    full = lift_joints(kp, plane_depth(INTR, normal, 2)[None], INTR, window=1, min_depth=0.1,
                       max_depth=10)[0]  # fmt: skip
    low = lift_joints(kp, plane_depth(half, normal, 2)[None], INTR, window=1, min_depth=0.1,
                      max_depth=10)[0]  # fmt: skip
    exact = backproject(kp, 2 / (np.array([(65 - 0.5 - INTR.cx) / INTR.fx,
                                           (41 - 0.5 - INTR.cy) / INTR.fy, 1]) @ normal), INTR)  # fmt: skip
    np.testing.assert_allclose(low, exact, atol=1e-12)  # low-res sample at its pixel center
    assert 0 < np.abs(full - low).max() < 0.01  # full-res pixel center is half a pixel away


def test_confidence_keeps_best_level_present():
    depth = np.full((5, 5), 1.0)
    conf = np.ones((5, 5), dtype=np.uint8)  # medium everywhere ...
    depth[1:4, 1:4] = [[3.0, 2.0, 1.0], [1.0, 2.0, 1.0], [1.0, 1.0, 1.0]]
    conf[1:4, 1:4] = [[2, 2, 0], [1, 2, 1], [1, 1, 1]]  # ... high at three pixels
    pts = np.array([[2.5, 2.5]])
    s = sample_depth(depth, pts, window=3, min_depth=0.1, max_depth=10, confidence=conf,
                     min_confidence=1)  # fmt: skip
    assert s.depth[0] == 2.0 and s.confidence[0] == 2  # median of the high ones: 3, 2, 2
    # Without the high pixels the medium ones win: median of six ones and a 1.0 ...
    conf[conf == 2] = 0
    s = sample_depth(depth, pts, window=3, min_depth=0.1, max_depth=10, confidence=conf,
                     min_confidence=1)  # fmt: skip
    assert s.depth[0] == 1.0 and s.confidence[0] == 1
    # ... and below the minimum confidence nothing is left.
    s = sample_depth(depth, pts, window=3, min_depth=0.1, max_depth=10, confidence=conf * 0,
                     min_confidence=1)  # fmt: skip
    assert np.isnan(s.depth[0]) and not s.valid[0] and s.confidence[0] == -1
    s = sample_depth(depth, pts, window=3, min_depth=0.1, max_depth=10)
    assert s.depth[0] == 1.0 and s.confidence[0] == -1  # no confidence map: every level counts


def test_band_picks_the_joints_surface_before_confidence_levels_compete():
    # A wrist 2 m away, one pixel wide and of medium confidence, in front of a wall at 5 m
    # that the sensor sees with high confidence: the wall must not win the window.
    depth = np.full((5, 5), 5.0)
    conf = np.full((5, 5), 2, dtype=np.uint8)
    depth[:, 2], conf[:, 2] = [2.00, 2.02, 2.04, 2.06, 2.08], 1
    conf[0, 2] = 0  # one wrist pixel too uncertain to count at min_confidence 1
    kw = dict(window=5, min_depth=0.1, max_depth=10, confidence=conf, min_confidence=1)
    s = sample_depth(depth, np.array([[2.5, 2.5]]), band=0.15, **kw)
    assert s.depth[0] == pytest.approx(2.05) and s.confidence[0] == 1  # 2.02 .. 2.08
    # Without a band the best level present wins (the rule as such), here the wall.
    s = sample_depth(depth, np.array([[2.5, 2.5]]), band=0.0, **kw)
    assert s.depth[0] == 5.0 and s.confidence[0] == 2
    # A mixed pixel at the joint (low confidence, between wrist and wall): the band holds
    # nothing confident at its depth, so the joint gets no depth rather than the wall's.
    depth[2, 2], conf[2, 2] = 3.5, 0
    s = sample_depth(depth, np.array([[2.5, 2.5]]), band=0.15, **kw)
    assert np.isnan(s.depth[0]) and s.confidence[0] == -1
    # The joint's pixel without any depth: the band is around the median of what counts.
    depth[2, 2] = 0.0
    s = sample_depth(depth, np.array([[2.5, 2.5]]), band=0.15, **kw)
    assert s.depth[0] == 5.0 and s.confidence[0] == 2


def test_band_widens_with_the_depth_noise_at_the_joints_range():
    # A torso 5 m away seen through depth noise of 0.3 m a pixel (a phone's LiDAR that far),
    # a wall 9 m away in the window's last column. A 0.15 m band keeps the joint pixel's own
    # noisy value alone; two noise sds (0.012 m at 1 m: 0.3 m at 5 m) average the torso's
    # pixels and still leave the wall out.
    rng = np.random.default_rng(3)
    depth = 5.0 + 0.3 * rng.standard_normal((5, 5))
    depth[2, 2] = 5.4  # the joint's own pixel, 1.3 sds far
    depth[:, 4] = 9.0
    kw = dict(window=5, min_depth=0.1, max_depth=10, band=0.15)
    point = np.array([[2.5, 2.5]])
    narrow = sample_depth(depth, point, **kw)
    near = np.abs(depth - 5.4) <= 0.15
    assert near.sum() < 5 and narrow.depth[0] == pytest.approx(np.median(depth[near]))
    wide = sample_depth(depth, point, band_noise=2 * 0.012, **kw)
    band = 2 * 0.012 * 5.4**2  # 0.70 m around the joint's pixel
    kept = np.abs(depth - 5.4) <= band
    assert not kept[:, 4].any() and kept.sum() > 15
    assert wide.depth[0] == pytest.approx(np.median(depth[kept]))
    assert abs(wide.depth[0] - 5.0) < abs(narrow.depth[0] - 5.0) - 0.2
    # With the map's focal length: the 5-pixel window spans 0.14 m at 5.4 m (focal 200 px)
    # and widens; at focal 80 px it spans 0.34 m, more than a torso, and keeps the band.
    assert sample_depth(depth, point, band_noise=0.024, focal=200, **kw).depth[0] == wide.depth[0]
    assert sample_depth(depth, point, band_noise=0.024, focal=80, **kw).depth[0] == narrow.depth[0]
    # Near the camera the same noise band is narrower than the fixed one, which holds.
    close = depth - 4.0  # the torso at 1 m, the wall at 5 m
    assert sample_depth(close, point, band_noise=2 * 0.012, **kw).depth[0] == pytest.approx(
        sample_depth(close, point, **kw).depth[0]
    )


def test_lift_joints_measures_the_window_with_the_depth_maps_focal_length():
    """The window's span in metres needs the focal length in depth-map pixels: with the image
    at 4 times the map's resolution, fx 320 is 80 map pixels (the band stays fixed, as above)
    and fx 800 is 200 (it widens). The image's own fx would widen it in both."""
    rng = np.random.default_rng(3)
    depth = 5.0 + 0.3 * rng.standard_normal((5, 5))  # the same map as above
    depth[2, 2] = 5.4
    depth[:, 4] = 9.0
    kw = dict(window=5, min_depth=0.1, max_depth=10, band=0.15)
    point = np.array([[2.5, 2.5]])
    narrow = sample_depth(depth, point, band_noise=0.024, focal=80, **kw).depth[0]
    wide = sample_depth(depth, point, band_noise=0.024, focal=200, **kw).depth[0]
    assert abs(narrow - wide) > 0.2
    for fx, expected in ((320.0, narrow), (800.0, wide)):
        intr = Intrinsics(fx, fx, 9.5, 9.5, width=20, height=20)
        points, _ = lift_joints(
            np.array([[[10.0, 10.0]]]), depth[None], intr, band_noise=0.024, **kw
        )
        assert points[0, 0, 2] == pytest.approx(expected, abs=1e-9)


def test_band_widens_says_where_sample_depth_widens_the_band():
    # Every window pixel but the joint's own 5.1 mm nearer: a band just wider than the fixed
    # 5 mm takes them in and the median moves. The band grows by 0.002 m at 1 m (past 5 mm
    # from 1.58 m); the 5-pixel window spans 0.3 m from 0.3 * 40 / 5 = 2.4 m (focal 40 px:
    # a coarse map), where the band is fixed again.
    kw = dict(band=0.005, band_noise=0.002, focal=40.0)
    span = band_widens(0.005, 0.002, window=5, focal=40.0, max_depth=10)
    assert span == pytest.approx((np.sqrt(2.5), 2.4))
    point = np.array([[2.5, 2.5]])
    for z in np.arange(1.025, 3.0, 0.05):
        depth = np.full((5, 5), z - 0.0051)
        depth[2, 2] = z
        widened = sample_depth(depth, point, window=5, min_depth=0.1, max_depth=10, **kw)
        assert (widened.depth[0] != z) == (span[0] < z < span[1]), z
        assert (band_width(np.array(z), window=5, **kw) > 0.005) == (span[0] < z < span[1]), z
    # Without the focal length there is no upper limit but the depth range; at focal 20 px the
    # window is too wide before the noise passes the band: never.
    assert band_widens(0.005, 0.002, window=5, focal=0, max_depth=10) == pytest.approx(
        (np.sqrt(2.5), 10)
    )
    assert band_widens(0.005, 0.002, window=5, focal=20.0, max_depth=10) is None
    assert band_widens(0.005, 0.0, window=5, focal=40.0, max_depth=10) is None


def test_a_window_per_joint_keeps_a_small_feature_and_falls_back_to_the_widest():
    # An ear 2.00 m away covering the 3 x 3 pixels around joint 0, on a cheek at 1.90 m; a
    # hole of 3 x 3 pixels around joint 1 (an ear the sensor got no return from).
    depth = np.full((9, 9), 1.90)
    depth[2:5, 2:5] = 2.00
    depth[5:8, 5:8] = 0.0
    pts = np.array([[3.5, 3.5], [6.5, 6.5], [3.5, 3.5]])
    kw = dict(min_depth=0.1, max_depth=10, band=0.15)
    wide = sample_depth(depth, pts, window=5, **kw)
    assert wide.depth == pytest.approx([1.90, 1.90, 1.90])  # 15 cheek pixels outvote 9 ear ones
    s = sample_depth_windows(depth, pts, windows=[3, 3, 5], **kw)
    # joint 0 keeps the ear; joint 1 finds nothing in its 3 x 3 and takes the 5 x 5 median;
    # joint 2 has the wide window itself
    assert s.depth == pytest.approx([2.00, 1.90, 1.90]) and s.valid.all()
    assert s.confidence.tolist() == [-1, -1, -1]  # no confidence map
    # frames (T, K, 2) alike, and lift_joints takes the same per-joint windows
    frames = sample_depth_windows(np.stack([depth, depth]), np.stack([pts, pts]), windows=[3, 3, 5], **kw)  # fmt: skip
    assert frames.depth == pytest.approx(np.stack([s.depth, s.depth]))
    intr = Intrinsics(fx=10.0, fy=10.0, cx=4.5, cy=4.5, width=9, height=9)
    points, sample = lift_joints(pts[None], depth[None], intr, window=np.array([3, 3, 5]), **kw)
    assert sample.depth[0] == pytest.approx([2.00, 1.90, 1.90])
    assert points[0, :, 2] == pytest.approx([2.00, 1.90, 1.90])
    with pytest.raises(ValueError, match="2 windows for 3 joints"):
        sample_depth_windows(depth, pts, windows=[3, 5], **kw)


def test_rejects_zero_nan_and_out_of_range_depth():
    depth = np.array([[0.0, np.nan, 20.0], [0.05, 1.5, 1.7], [1.6, -1.0, np.inf]])
    s = sample_depth(depth, np.array([[1.5, 1.5]]), window=3, min_depth=0.1, max_depth=10)
    assert s.depth[0] == 1.6  # median of 1.5, 1.6, 1.7 only
    bad = np.array([[0.0, np.nan], [20.0, 0.05]])
    s = sample_depth(bad, np.array([[0.5, 0.5], [1.2, 1.7]]), window=3, min_depth=0.1,
                     max_depth=10)  # fmt: skip
    assert np.isnan(s.depth).all() and not s.valid.any()
    # Even number of usable values: the mean of the middle two.
    s = sample_depth(np.array([[1.0, 2.0], [4.0, 0.0]]), np.array([[0.5, 0.5]]), window=3,
                     min_depth=0.1, max_depth=10)  # fmt: skip
    assert s.depth[0] == 2.0
    with pytest.raises(ValueError, match="odd"):
        sample_depth(depth, np.array([[1.5, 1.5]]), window=4, min_depth=0.1, max_depth=10)


def test_window_at_border_nan_and_outside_points():
    depth = np.arange(1, 26, dtype=np.float64).reshape(5, 5) / 10
    pts = np.array([[0.2, 0.2], [np.nan, 1.0], [-3.0, 2.0], [1e30, 1.0], [4.9, 4.9]])
    s = sample_depth(depth, pts, window=3, min_depth=0.0, max_depth=10)
    assert s.depth[0] == np.median([0.1, 0.2, 0.6, 0.7])  # only the inside part of the window
    assert np.isnan(s.depth[1:4]).all()
    assert s.depth[4] == np.median([1.9, 2.0, 2.4, 2.5])


def test_surface_correction_recovers_a_sphere_center():
    # A limb modelled as a sphere: depth at the center's pixel is the near surface; pushing it
    # back by the radius along the ray gives the center exactly.
    center_px = np.array([70.5, 40.5])
    z = 2.3
    center = backproject(center_px, z, INTR)
    radius = 0.06
    depth = sphere_depth(INTR, center, radius)
    surface, _ = lift_joints(center_px[None, None], depth[None], INTR, window=1, min_depth=0.1,
                             max_depth=10)  # fmt: skip
    assert np.linalg.norm(surface[0, 0] - center) == pytest.approx(radius, abs=1e-9)
    corrected = surface_to_joint(surface, np.array([radius]))
    np.testing.assert_allclose(corrected[0, 0], center, atol=1e-9)
    assert np.isnan(surface_to_joint(np.full((1, 3), np.nan), 0.05)).all()


def test_vectorised_over_frames_matches_per_frame():
    rng = np.random.default_rng(2)
    depth = rng.uniform(0.5, 4, (6, 24, 32))
    depth[rng.random(depth.shape) < 0.2] = 0
    conf = rng.integers(0, 3, depth.shape)
    pts = rng.uniform(-2, 34, (6, 17, 2))
    pts[0, 3] = np.nan
    batch = sample_depth(depth, pts, window=5, min_depth=0.1, max_depth=10, confidence=conf,
                         min_confidence=1)  # fmt: skip
    for t in range(6):
        one = sample_depth(depth[t], pts[t], window=5, min_depth=0.1, max_depth=10,
                           confidence=conf[t], min_confidence=1)  # fmt: skip
        np.testing.assert_array_equal(batch.depth[t], one.depth)
        np.testing.assert_array_equal(batch.confidence[t], one.confidence)
    assert np.isnan(batch.depth[0, 3])
