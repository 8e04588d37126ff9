"""The capture apps' text and byte codecs (pkmodel.common.capture_formats): what the writers
write, the readers read back exactly; what the apps' files may not hold is one sentence."""

from __future__ import annotations

import json

import lzfse
import numpy as np
import pytest

from pkmodel.common.capture_formats import (
    camera_matrix_text,
    decompress_array,
    ground_truth_json,
    odometry_text,
    parse_camera_matrix,
    parse_ground_truth,
    parse_odometry,
    parse_r3d_k,
    quaternion_xyzw,
    r3d_k,
)
from pkmodel.common.errors import PkmodelError


def quaternion_matrix(x: float, y: float, z: float, w: float) -> np.ndarray:
    """The rotation of a unit quaternion (x, y, z, w), written out independently."""
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ])  # fmt: skip


def test_quaternion_of_known_rotations():
    c = np.sqrt(0.5)
    np.testing.assert_allclose(quaternion_xyzw(np.eye(3)), [0, 0, 0, 1])
    z90 = np.array([[0.0, -1, 0], [1, 0, 0], [0, 0, 1]])
    np.testing.assert_allclose(quaternion_xyzw(z90), [0, 0, c, c], atol=1e-15)
    np.testing.assert_allclose(quaternion_xyzw(np.diag([1.0, -1, -1])), [1, 0, 0, 0])
    rng = np.random.default_rng(0)
    for _ in range(20):
        q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
        q *= np.sign(np.linalg.det(q))
        np.testing.assert_allclose(quaternion_matrix(*quaternion_xyzw(q)), q, atol=1e-12)


def test_camera_matrix_round_trip_is_exact():
    text = camera_matrix_text(1402.123456, 1401.5, 959.871, 719.25)
    assert text == "1402.123456, 0.0, 959.871\n0.0, 1401.5, 719.25\n0.0, 0.0, 1.0"
    assert parse_camera_matrix(text, "k.csv") == (1402.123456, 1401.5, 959.871, 719.25)
    with pytest.raises(PkmodelError, match=r"k.csv: the focal lengths fx and fy must be positive"):
        parse_camera_matrix("0, 0, 1\n0, 5, 1\n0, 0, 1", "k.csv")
    with pytest.raises(PkmodelError, match=r"k.csv holds a number that is not finite"):
        parse_camera_matrix("nan, 0, 1\n0, 5, 1\n0, 0, 1", "k.csv")


def test_odometry_round_trip_and_the_app_s_own_spacing():
    poses = np.array([[0.1, 0.2, 0.3, 0.0, 0.0, 0.0, 1.0], [0.4, 0.5, 0.6, 1.0, 0.0, 0.0, 0.0]])
    text = odometry_text(np.array([0.0, 0.033333]), poses)
    assert text.splitlines()[1] == "0.0, 000000, 0.1, 0.2, 0.3, 0.0, 0.0, 0.0, 1.0"
    stamps, frames = parse_odometry(text, "o.csv")
    np.testing.assert_array_equal(stamps, [0.0, 0.033333])
    assert frames == ["000000", "000001"]
    # the app's rows: ARFrame.timestamp (seconds since boot), a 6-digit frame, float32 values
    app = ("timestamp, frame, x, y, z, qx, qy, qz, qw\n"
           "23713.402145875, 000000, -0.0049, 0.0128, -0.0313, 0.9998, 0.0040, -0.0188, 0.0018\n")  # fmt: skip
    stamps, frames = parse_odometry(app, "o.csv")
    assert stamps.tolist() == [23713.402145875] and frames == ["000000"]


def test_r3d_k_is_column_major():
    assert r3d_k(1.5, 2.5, 3.5, 4.5) == [1.5, 0.0, 0.0, 0.0, 2.5, 0.0, 3.5, 4.5, 1.0]
    assert parse_r3d_k([1.5, 0, 0, 0, 2.5, 0, 3.5, 4.5, 1], "m") == (1.5, 2.5, 3.5, 4.5)
    with pytest.raises(
        PkmodelError, match=r"m: 'K' must be 9 numbers \(a 3 x 3 matrix\), got 9 values"
    ):
        parse_r3d_k([1, 0, 0, 0, 1, 0, 0, 0, True], "m")
    with pytest.raises(PkmodelError, match=r"'K' has a focal length that is not positive"):
        parse_r3d_k([-1.0, 0, 0, 0, 2, 0, 3, 4, 1], "m")


def test_decompress_array_checks_the_byte_count():
    depth = np.arange(6, dtype="<f4").reshape(2, 3)
    blob = lzfse.compress(depth.tobytes())
    np.testing.assert_array_equal(decompress_array(blob, "<f4", (2, 3), "x.depth"), depth)
    # (rows, columns) = (3, 4): metadata's dw x dh is 4 x 3
    message = r"x.depth holds 24 bytes once decompressed; 4 x 3 float32 values .* need 48$"
    with pytest.raises(PkmodelError, match=message):
        decompress_array(blob, "<f4", (3, 4), "x.depth")
    with pytest.raises(PkmodelError, match=r"x.conf does not decompress as LZFSE"):
        decompress_array(blob[:-8], "u1", (2, 3), "x.conf")


def test_ground_truth_round_trip_keeps_every_number():
    keypoints = [0.1 * i for i in range(51)]
    joints = [[0.001 * i, -0.002 * i, 2.0 + i / 7] for i in range(17)]
    radii = [0.05 + i / 1000 for i in range(17)]
    label = {"keypoints": keypoints, "keypoints_3d": joints, "limb_radius_m": radii}
    text = ground_truth_json([None, label], 64, 48)
    assert json.loads(text)["joint_names"][0] == "nose"
    kp2d, kp3d, radius = parse_ground_truth(text, "gt.json", 2, 64, 48)
    assert np.isnan(kp2d[0]).all() and np.isnan(kp3d[0]).all() and np.isnan(radius[0]).all()
    assert kp2d[1].ravel().tolist() == keypoints
    assert kp3d[1].tolist() == joints and radius[1].tolist() == radii
    with pytest.raises(
        PkmodelError,
        match=r"gt.json labels \[64, 48\] pixel images but the colour frames are 32 x 24",
    ):
        parse_ground_truth(text, "gt.json", 2, 32, 24)
    with pytest.raises(PkmodelError, match=r"gt.json labels 2 frames; the recording has 3"):
        parse_ground_truth(text, "gt.json", 3, 64, 48)
    bad = text.replace('"keypoints_3d":[[0.0', '"keypoints_3d":[["x"')
    with pytest.raises(
        PkmodelError, match=r"gt.json \(frame 1\): 'keypoints_3d' must be 51 finite numbers"
    ):
        parse_ground_truth(bad, "gt.json", 2, 64, 48)
    with pytest.raises(PkmodelError, match=r"gt.json is not a pkmodel ground-truth file"):
        parse_ground_truth('{"frames": []}', "gt.json", 0, 64, 48)
