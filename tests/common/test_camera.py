"""The pinhole camera model: projection, back-projection and other resolutions."""

from __future__ import annotations

import numpy as np

from pkmodel.common.camera import Intrinsics, backproject, project

K = Intrinsics(fx=200.0, fy=210.0, cx=63.5, cy=47.5, width=128, height=96)


def test_backproject_inverts_project_at_pixel_centers():
    points = np.array([[0.3, -0.2, 2.0], [-0.5, 0.4, 3.5], [0.0, 0.0, 1.0]])
    px = project(points, K)
    # The optical axis meets the image at the principal point's pixel center (cx + 0.5).
    np.testing.assert_allclose(px[2], [64.0, 48.0], atol=1e-12)
    np.testing.assert_allclose(px[0], [0.3 / 2.0 * 200 + 64.0, -0.2 / 2.0 * 210 + 48.0])
    np.testing.assert_allclose(backproject(px, points[:, 2], K), points, atol=1e-12)
    # NaN in, NaN out: an unknown depth gives an unknown point.
    assert np.isnan(backproject(np.array([10.0, 1.0]), np.nan, K)).all()


def test_scaled_intrinsics_map_the_same_ray_to_scaled_pixels():
    points = np.array([[0.3, -0.2, 2.0], [-0.5, 0.4, 3.5]])
    half = K.scaled_to(64, 48)
    assert (half.fx, half.fy, half.cx, half.cy) == (100.0, 105.0, 31.5, 23.5)
    # Continuous pixel coordinates halve with the resolution; the corner (0, 0) stays put.
    np.testing.assert_allclose(project(points, half), project(points, K) / 2, atol=1e-12)
    assert half.scaled_to(128, 96) == K
    assert half.to_dict() == {"fx": 100.0, "fy": 105.0, "cx": 31.5, "cy": 23.5, "width": 64,
                              "height": 48}  # fmt: skip


def test_intrinsics_scale_each_axis_by_its_own_ratio():
    k = Intrinsics(fx=200.0, fy=210.0, cx=63.5, cy=47.5, width=128, height=96)
    s = k.scaled_to(64, 96)  # half the width, the same height
    assert (s.fx, s.fy, s.cx, s.cy, s.width, s.height) == (100.0, 210.0, 31.5, 47.5, 64, 96)
