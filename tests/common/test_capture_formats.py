"""The capture apps' text and byte codecs (pkmodel.common.capture_formats): what the writers
write, the readers read back exactly; what the apps' files may not hold is one sentence."""

from __future__ import annotations

import json

import lzfse
import numpy as np
import pytest

from pkmodel.common.capture_formats import (
    LZFSE_V1_HEADER_BYTES,
    camera_matrix_text,
    decompress_array,
    ground_truth_json,
    lzfse_block_sizes,
    odometry_rotations,
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
        assert quaternion_xyzw(q)[3] >= 0  # the sign the docstring promises: w >= 0


def test_camera_matrix_round_trip_is_exact():
    text = camera_matrix_text(1402.123456, 1401.5, 959.871, 719.25)
    assert text == "1402.123456, 0.0, 959.871\n0.0, 1401.5, 719.25\n0.0, 0.0, 1.0"
    assert parse_camera_matrix(text, "k.csv") == (1402.123456, 1401.5, 959.871, 719.25)
    with pytest.raises(
        PkmodelError,
        match=r"k.csv: the focal lengths fx and fy must be at least 1 pixel, they are 0 and 5",
    ):
        parse_camera_matrix("0, 0, 1\n0, 5, 1\n0, 0, 1", "k.csv")
    with pytest.raises(PkmodelError, match=r"they are 50.5 and 0.5$"):  # fy is checked too
        parse_camera_matrix("50.5, 0, 31\n0, 0.5, 23\n0, 0, 1", "k.csv")
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


def test_odometry_of_another_column_layout_is_refused():
    """A row of ten values, or a header naming the quaternion's parts in another order (w
    first, as some tools write it), is not the app's layout: refused, not read with the pose
    taken from the wrong columns."""
    header = "timestamp, frame, x, y, z, qx, qy, qz, qw\n"
    with pytest.raises(PkmodelError) as err:
        parse_odometry(header + "0.5, 000000, 0, 0, 0, 0, 0, 0, 1, 7\n", "o.csv")
    assert str(err.value) == (
        "o.csv line 2 must be 9 comma-separated values (a timestamp in seconds, a frame number, "
        "then the pose), it has 10"
    )
    reordered = "timestamp, frame, x, y, z, qw, qx, qy, qz\n0.5, 000000, 0, 0, 0, 1, 0, 0, 0\n"
    with pytest.raises(PkmodelError, match=r"^o.csv must start with the header line 'timestamp, "):
        parse_odometry(reordered, "o.csv")


def test_r3d_k_is_column_major():
    assert r3d_k(1.5, 2.5, 3.5, 4.5) == [1.5, 0.0, 0.0, 0.0, 2.5, 0.0, 3.5, 4.5, 1.0]
    assert parse_r3d_k([1.5, 0, 0, 0, 2.5, 0, 3.5, 4.5, 1], "m") == (1.5, 2.5, 3.5, 4.5)
    with pytest.raises(
        PkmodelError, match=r"m: 'K' must be 9 finite numbers \(a 3 x 3 matrix\); entry 9 is True$"
    ):
        parse_r3d_k([1, 0, 0, 0, 1, 0, 0, 0, True], "m")
    with pytest.raises(
        PkmodelError, match=r"m: 'K' has the focal lengths -1 and 2; each must be at least 1 pixel$"
    ):
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


def test_lzfse_block_headers_match_the_reference_encoder_and_decoder():
    """The block walker against the lzfse package (the reference C implementation, which
    Record3D's iOS Compression framework output also decodes with): every block kind its
    encoder writes, the decoded size summed from the headers, and the stored sizes adding up
    to the stream's length with its 4-byte end marker."""
    rng = np.random.default_rng(0)
    cases = {
        "bvx-": [b"", b"abc", rng.bytes(10_000)],  # tiny or incompressible: stored
        "bvxn": [bytes(4095)],  # below 4096 bytes: LZVN
        "bvx2": [bytes(4096), (rng.random((192, 256)) * 3).astype("<f4").tobytes()],
    }
    for kind, datas in cases.items():
        for data in datas:
            blob = lzfse.compress(data)
            blocks = lzfse_block_sizes(blob)
            assert blocks is not None and {m.decode() for m, _, _ in blocks} == {kind}
            assert sum(raw for _, raw, _ in blocks) == len(data)
            assert sum(size for _, _, size in blocks) + 4 == len(blob)
    # a 192 x 256 float32 depth map spans several bvx2 blocks
    assert len(lzfse_block_sizes(lzfse.compress(cases["bvx2"][1]))) > 1
    # a stream written by hand from the format's description, which the reference decoder reads
    hand = b"bvx-" + (3).to_bytes(4, "little") + b"hel" + b"bvx-" + (2).to_bytes(4, "little")
    assert lzfse.decompress(hand + b"lobvx$") == b"hello"
    assert lzfse_block_sizes(hand + b"lobvx$") == [(b"bvx-", 3, 11), (b"bvx-", 2, 10)]
    # a v1 header is the reference's lzfse_compressed_block_header_v1: 7 uint32 fields, two
    # int32 and 4 + 3 uint16 states, 20 + 20 + 64 + 256 uint16 frequencies, padded to 4 bytes
    assert LZFSE_V1_HEADER_BYTES == -(-(7 * 4 + 4 + 4 * 2 + 4 + 3 * 2 + 360 * 2) // 4) * 4
    v1 = b"bvx1" + (7).to_bytes(4, "little") + bytes(12) + (3).to_bytes(4, "little")
    v1 += (2).to_bytes(4, "little") + bytes(LZFSE_V1_HEADER_BYTES - 28) + bytes(5)
    assert lzfse_block_sizes(v1 + b"bvx$") == [(b"bvx1", 7, LZFSE_V1_HEADER_BYTES + 5)]
    # a bvx2 header declaring fewer bytes than its own 32 fixed ones is damaged: the walk
    # would step back into the header (with 0, forever), here onto an end marker at byte 28
    v2 = b"bvx2" + (6).to_bytes(4, "little") + bytes(16) + (28).to_bytes(4, "little")
    assert lzfse_block_sizes(v2 + b"bvx$") is None
    # truncated, unknown magic, no end marker: not a stream
    good = lzfse.compress(bytes(4096))
    for bad in (good[:-4], good[:20], b"PK\x03\x04" + good, good[:-4] + b"bvx?"):
        assert lzfse_block_sizes(bad) is None


def test_a_blob_declaring_more_bytes_than_the_map_is_refused_before_it_is_inflated(
    monkeypatch,
):
    blob = lzfse.compress(bytes(16 << 20))  # 16 MiB of zeros in about 10 kB
    assert len(blob) < 20_000

    def inflate(_: bytes) -> bytes:
        raise AssertionError("decompressed")

    monkeypatch.setattr(lzfse, "decompress", inflate)
    message = r"x.depth holds 16777216 bytes once decompressed; 256 x 192 float32 .* need 196608$"
    with pytest.raises(PkmodelError, match=message):
        decompress_array(blob, "<f4", (192, 256), "x.depth")


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
    # finite, but beyond any picture or scene (and a take's float32)
    big = ground_truth_json([None, {**label, "keypoints": [1e39, *keypoints[1:]]}], 64, 48)
    with pytest.raises(PkmodelError) as err:
        parse_ground_truth(big, "gt.json", 2, 64, 48)
    assert str(err.value) == (
        "gt.json (frame 1): 'keypoints' must be 51 finite numbers within +-1e+06"
    )
    negative = ground_truth_json([None, {**label, "limb_radius_m": [-0.1] * 17}], 64, 48)
    with pytest.raises(PkmodelError, match=r"\(frame 1\): 'limb_radius_m' holds a negative"):
        parse_ground_truth(negative, "gt.json", 2, 64, 48)


def test_ground_truth_of_more_frames_a_zero_radius_and_another_version():
    """A recording cut to fewer frames than its side file labels (streams whose counts differ
    are cut to the common frames) reads the first ones; a radius of 0 (the joint on the skin,
    which lift.limb_radius_m allows) is no negative radius; a version other than 1 is refused,
    not read as version 1."""
    label = {"keypoints": [1.0] * 51, "keypoints_3d": [[0.0, 0.0, 2.0]] * 17,
             "limb_radius_m": [0.0] * 17}  # fmt: skip
    text = ground_truth_json([label, None, label], 64, 48)
    kp2d, kp3d, radius = parse_ground_truth(text, "gt.json", 2, 64, 48)
    assert kp2d.shape == kp3d.shape == (2, 17, 3) and radius.shape == (2, 17)
    assert radius[0].tolist() == [0.0] * 17 and np.isnan(radius[1]).all()
    doc = json.loads(text)
    doc["version"] = 2
    with pytest.raises(PkmodelError) as err:
        parse_ground_truth(json.dumps(doc), "gt.json", 2, 64, 48)
    assert str(err.value) == "gt.json has version 2; this pkmodel reads 1"


def test_odometry_rotations_are_the_rows_quaternions_or_nothing():
    """The rotations of the rows' quaternions, checked against the formula written out above;
    a row whose quaternion is not four finite numbers of unit length gives no rotations (the
    timestamps are still read), so that an odd pose never stops a recording."""
    rng = np.random.default_rng(3)
    q = rng.normal(size=(5, 4))
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    poses = np.concatenate([rng.normal(size=(5, 3)), q], axis=1)
    text = odometry_text(np.arange(5) / 30, poses)
    rotations = odometry_rotations(text)
    for r, row in zip(rotations, q, strict=True):
        np.testing.assert_allclose(r, quaternion_matrix(*row), atol=1e-12)
    lines = text.splitlines()
    for bad in ("nan", "2.0", "x", "1.05"):  # 1.05: a length 5 % off 1 is no rotation either
        changed = "\n".join([*lines[:3], lines[3].rsplit(",", 1)[0] + f", {bad}", *lines[4:]])
        assert odometry_rotations(changed) is None
        assert len(parse_odometry(changed, "o.csv")[0]) == 5  # the timestamps are still read
