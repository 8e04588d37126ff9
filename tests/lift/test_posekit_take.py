"""The PoseKit app's take format: read from bytes laid out by hand, written as the app writes it
(Swift's JSON text, frames.bin records, stored ZIP), and mapped to pkmodel's takes and back
byte for byte."""

from __future__ import annotations

import json
import struct
import zipfile
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest

from pkmodel.common.errors import PkmodelError
from pkmodel.common.skeleton import EXTENDED_JOINT_NAMES, JOINT_INDEX, NECK, PELVIS
from pkmodel.lift.canonical import to_canonical
from pkmodel.lift.posekit_take import (
    DISPLAY_NAMES,
    POSEKIT_CANONICAL_FRAME,
    PoseKitMeta,
    PoseKitTake,
    export_json_text,
    load_take,
    posekit_playback,
    posekit_to_take,
    read_posekit_bin,
    read_posekit_folder,
    read_posekit_json,
    read_posekit_zip,
    swift_double,
    swift_floats,
    swift_json,
    take_csv_text,
    take_to_posekit,
    write_posekit_folder,
    write_posekit_zip,
)
from pkmodel.lift.take import (
    Take,
    TakeRecorder,
    read_take_binary,
    read_take_json,
    read_take_zip,
    write_take,
)

from .test_canonical import standing_body

# meta.json as the app writes it: Swift's JSONEncoder, [.prettyPrinted, .sortedKeys]: two
# spaces, "key" : value, no newline at the end; createdAt seconds since 2001-01-01 UTC.
META_TEXT = """{
  "createdAt" : 789456123.25,
  "deviceModel" : "iPhone16,1",
  "duration" : 0.09375,
  "fps" : 30,
  "frameCount" : 4,
  "iosVersion" : "17.5.1",
  "jointSchema" : "COCO17+2",
  "minKeypointScore" : 0.3,
  "modelIdentifier" : "PoseKitModel",
  "modelVersion" : "1.0",
  "units" : "meters",
  "uuid" : "6F1C2B0E-8D4A-4C1B-9E2F-3A5B7C9D1E0F"
}"""
TIMESTAMPS = [812.5 + t / 32 for t in range(4)]  # ARKit's clock; exact in binary
NAN = float("nan")
_LH, _RH = JOINT_INDEX["left_hip"], JOINT_INDEX["right_hip"]
_LS, _RS = JOINT_INDEX["left_shoulder"], JOINT_INDEX["right_shoulder"]


def app_joints(frames: int = 4, seed: int = 0) -> np.ndarray:
    """(T, 19, 10) float32 values of an app take's records, shaped as the app writes them:
    2D in [0, 1], a joint not found (0.5, 0.5, score 0, no 3D), pelvis and neck derived, a
    frame without a pelvis depth (playback = camera joints) and one whose canonical frame came
    out NaN."""
    rng = np.random.default_rng(seed)
    j = np.zeros((frames, 19, 10), dtype=np.float32)
    body = np.concatenate([standing_body(), np.zeros((2, 3))])
    j[..., 0:3] = body + rng.normal(0, 0.01, (frames, 19, 3))
    j[..., 3:6] = rng.normal(0, 0.3, (frames, 19, 3))
    j[..., 6:8] = rng.uniform(0.05, 0.95, (frames, 19, 2))
    j[..., 8] = rng.uniform(0.2, 1.0, (frames, 19))
    j[..., 9] = rng.choice([0.0, 0.5, 1.0], (frames, 19))
    j[:, 3, :] = [NAN, NAN, NAN, NAN, NAN, NAN, 0.5, 0.5, 0.0, 0.0]  # left ear not found
    for joint, (a, b) in ((PELVIS, (_LH, _RH)), (NECK, (_LS, _RS))):
        j[:, joint, 6:8] = (j[:, a, 6:8] + j[:, b, 6:8]) * np.float32(0.5)
        j[:, joint, 8] = np.minimum(j[:, a, 8], j[:, b, 8])
        j[:, joint, 0:3] = (j[:, a, 0:3] + j[:, b, 0:3]) / 2
    j[1, PELVIS, 0:3] = NAN
    j[1, :, 3:6] = j[1, :, 0:3]  # no pelvis: the app keeps the camera joints
    j[2, :, 3:6] = NAN  # shoulders' "right" was NaN: every playback joint NaN
    return j


def frames_bin(timestamps: list[float], joints: np.ndarray) -> bytes:
    """frames.bin laid out by hand from the app's codec: <d timestamp, then 19 x 10 <f."""
    out = bytearray()
    for t, stamp in enumerate(timestamps):
        out += struct.pack("<d", stamp)
        for values in joints[t].tolist():
            out += struct.pack("<10f", *values)
    return bytes(out)


def app_folder(root: Path, joints: np.ndarray | None = None) -> Path:
    joints = app_joints() if joints is None else joints
    folder = root / "6F1C2B0E-8D4A-4C1B-9E2F-3A5B7C9D1E0F"
    folder.mkdir(parents=True)
    (folder / "meta.json").write_text(META_TEXT)
    (folder / "frames.bin").write_bytes(frames_bin(TIMESTAMPS, joints))
    return folder


def test_a_take_laid_out_by_hand_reads_back_exactly(tmp_path):
    joints = app_joints()
    data = frames_bin(TIMESTAMPS, joints)
    assert len(data) == 4 * 768
    (tmp_path / "take.bin").write_bytes(data)
    for app in (read_posekit_bin(tmp_path / "take.bin"), read_posekit_folder(app_folder(tmp_path))):
        assert app.num_frames == 4 and app.timestamps.tolist() == TIMESTAMPS
        for got, want in ((app.camera, joints[..., 0:3]), (app.playback, joints[..., 3:6]),
                          (app.keypoints, joints[..., 6:8]), (app.scores, joints[..., 8]),
                          (app.depth_confidence, joints[..., 9])):  # fmt: skip
            np.testing.assert_array_equal(got, want)
        assert app.frames_bytes() == data
    meta = read_posekit_folder(tmp_path / "6F1C2B0E-8D4A-4C1B-9E2F-3A5B7C9D1E0F").meta
    assert meta.uuid == "6F1C2B0E-8D4A-4C1B-9E2F-3A5B7C9D1E0F" and meta.fps == 30
    unix = datetime.fromtimestamp(978307200 + 789456123.25, timezone.utc)  # 2001-01-01 = 978307200
    assert meta.created_datetime() == unix and unix.isoformat().startswith("2026-01-07T05:22:03")
    assert meta.min_keypoint_score == float(np.float32(0.3)) and meta.notes is None
    assert meta.to_json() == META_TEXT  # and back, byte for byte


def test_app_to_pkmodel_to_app_is_byte_identical(tmp_path):
    folder = app_folder(tmp_path / "app")
    loaded = load_take(folder)
    assert loaded.kind == "PoseKit app take folder"
    take = loaded.take
    # what pkmodel's take holds
    assert take.joint_names == list(EXTENDED_JOINT_NAMES) and take.num_frames == 4
    assert take.metadata["canonical_frame"] == POSEKIT_CANONICAL_FRAME
    assert np.isnan(take.keypoints_2d[:, 3]).all() and (take.scores[:, 3] == 0).all()
    assert take.metadata["posekit"]["playback_is_camera"] == [1]
    assert np.isnan(take.joints_canonical[1]).all() and np.isnan(take.joints_canonical[2]).all()
    playback = loaded.posekit.playback
    np.testing.assert_array_equal(take.joints_canonical[0, :, 0], -playback[0, :, 0])
    np.testing.assert_array_equal(take.joints_canonical[0, :, 1:], playback[0, :, 1:])
    # in memory, and through each of pkmodel's files
    write_take(take, tmp_path / "pk")
    takes = [take, read_take_binary(tmp_path / "pk/take.bin"),
             read_take_zip(tmp_path / "pk/take.zip"), read_take_json(tmp_path / "pk/take.json")]  # fmt: skip
    for i, again in enumerate(takes):
        out = write_posekit_folder(take_to_posekit(again), tmp_path / f"back{i}")
        assert (out / "frames.bin").read_bytes() == (folder / "frames.bin").read_bytes(), i
        assert (out / "meta.json").read_text() == META_TEXT, i


def test_the_app_canonical_frame_is_a_mirror_and_pkmodel_reads_it_right_handed():
    body = np.concatenate([standing_body(), np.zeros((2, 3))])[None].astype(np.float32)
    body[0, PELVIS] = (body[0, _LH] + body[0, _RH]) / 2
    body[0, NECK] = (body[0, _LS] + body[0, _RS]) / 2
    scores = np.ones((1, 19), dtype=np.float32)
    playback, built = posekit_playback(body, scores, 0.3)
    assert built.all()
    # the app's x points to the subject's right hip: a mirror image (its fault)
    assert playback[0, _RH, 0] > 0 > playback[0, _LH, 0] and playback[0, NECK, 1] > 0
    np.testing.assert_allclose(playback[0, PELVIS], 0, atol=1e-7)
    # read back: pkmodel's right-handed canonical frame, the same as pkmodel's own here
    frames = np.zeros(1, dtype=[("timestamp", "<f8"), ("joints", "<f4", (19, 10))])
    frames["joints"][..., 0:3], frames["joints"][..., 3:6] = body, playback
    frames["joints"][..., 6:9] = 0.5, 0.5, 1.0
    from pkmodel.lift.posekit_take import PoseKitTake

    take = posekit_to_take(PoseKitTake(None, frames))
    own = to_canonical(body[0].astype(np.float64))[0]
    np.testing.assert_allclose(take.joints_canonical[0], own, atol=1e-6)
    assert np.linalg.det(take.rotation[0]) == pytest.approx(1.0, abs=1e-6)
    np.testing.assert_allclose(take.rotation[0] @ (body[0, 5] - body[0, PELVIS]),
                               take.joints_canonical[0, 5], atol=1e-6)  # fmt: skip
    # no hips scoring above the minimum: the shoulders give "right", as in the app
    low = scores.copy()
    low[0, _LH] = 0.1
    assert posekit_playback(body, low, 0.3)[1].all()
    # no pelvis: the camera-frame joints are the playback pose
    body[0, PELVIS] = np.nan
    again, built = posekit_playback(body, scores, 0.3)
    assert not built.any() and (again.view(np.uint32) == body.view(np.uint32)).all()


def lifted_take(frames: int = 3, fps: float = 29.97) -> Take:
    """A pkmodel take as lift writes it (pixels of a 128 x 144 image, NaN where unknown)."""
    body = np.concatenate([standing_body(), np.zeros((2, 3))])
    body[PELVIS], body[NECK] = (body[_LH] + body[_RH]) / 2, (body[_LS] + body[_RS]) / 2
    recorder = TakeRecorder(EXTENDED_JOINT_NAMES, {
        "model": "best.pt sha256:0123456789ab", "created_by": "pkmodel 9.9",
        "intrinsics": {"fx": 180.0, "fy": 180.0, "cx": 63.5, "cy": 71.5, "width": 128,
                       "height": 144},
        "lift": {"min_score": 0.25},
    })  # fmt: skip
    for t in range(frames):
        kp = np.linspace([10, 20], [118, 130], 19)
        kp[2] = np.nan  # right eye not found
        kp[16] = (140, 150)  # outside the image: clamped as the app clamps
        scores = np.linspace(0.3, 0.9, 19)
        scores[17:] = np.nan  # pkmodel leaves derived scores unknown
        camera = body.copy()
        camera[4] = np.nan  # no depth at the right ear
        canonical, origin, rotation = to_canonical(camera)
        recorder.append(t / fps, kp, scores, camera, canonical, origin, rotation)
    return recorder.take()


def test_a_pkmodel_take_is_written_as_the_app_would_have_written_it(tmp_path):
    take = lifted_take()
    app = take_to_posekit(take, uuid="0a1b2c3d-4e5f-6071-8293-a4b5c6d7e8f9", created_at=1.5e8)
    norm, scores = app.keypoints, app.scores
    np.testing.assert_allclose(norm[0, 0], [10 / 128, 20 / 144], rtol=1e-7)
    assert norm[0, 2].tolist() == [0.5, 0.5] and scores[0, 2] == 0  # not found
    assert norm[0, 16].tolist() == [1.0, 1.0]  # clamped
    np.testing.assert_array_equal(norm[:, PELVIS], (norm[:, _LH] + norm[:, _RH]) * np.float32(0.5))
    np.testing.assert_array_equal(scores[:, NECK], np.minimum(scores[:, _LS], scores[:, _RS]))
    np.testing.assert_array_equal(app.camera, take.joints_camera)
    assert app.depth_confidence[0].tolist() == [1.0] * 4 + [0.0] + [1.0] * 14
    want, _ = posekit_playback(app.camera, scores, 0.25)
    np.testing.assert_array_equal(app.playback, want)
    meta = app.meta
    assert meta.fps == 30 and meta.frame_count == 3 and meta.min_keypoint_score == np.float32(0.25)
    assert meta.uuid == "0A1B2C3D-4E5F-6071-8293-A4B5C6D7E8F9"
    assert meta.duration == pytest.approx(2 / 29.97) and meta.model_version == "pkmodel 9.9"
    assert meta.model_identifier == "best.pt sha256:0123456789ab"
    # the app reads it: its folder, and the canonical frame it plays back is the mirror image
    folder = write_posekit_folder(app, tmp_path / "take")
    back = load_take(folder).take
    np.testing.assert_allclose(back.joints_canonical, take.joints_canonical, atol=2e-6)
    assert (folder / "frames.bin").stat().st_size == 3 * 768
    # a take that gives no image size cannot be normalised
    del take.metadata["intrinsics"]
    with pytest.raises(PkmodelError, match="--image-size"):
        take_to_posekit(take)
    assert take_to_posekit(take, image_size=(256, 288)).keypoints[0, 0].tolist() == pytest.approx(
        [10 / 256, 20 / 288]
    )


def test_skeleton_placed_joints_get_no_depth_confidence(tmp_path):
    """A take lifted with the skeleton says which joints kept their depth: the app's
    depthConfidence is 0 for the placed ones, and the CSV says the same."""
    take = lifted_take()
    rows = ["m" * 17, "mmmmmmmmmommmmmmm", "mmmmmmmmmmmdmmmmm"]  # wrist hidden, left hip missing
    take.metadata["depth_source"] = rows
    app = take_to_posekit(take, uuid="0a1b2c3d-4e5f-6071-8293-a4b5c6d7e8f9", created_at=1.5e8)
    conf = app.depth_confidence
    assert conf[0].tolist() == [1.0] * 4 + [0.0] + [1.0] * 14  # the ear without 3D stays 0
    assert conf[1, JOINT_INDEX["left_wrist"]] == 0 and conf[1, PELVIS] == 1
    assert conf[2, JOINT_INDEX["left_hip"]] == 0 and conf[2, PELVIS] == 0 and conf[2, NECK] == 1
    assert conf.sum() == 19 * 3 - 1 - 2 - 3
    rows_csv = take_csv_text(take).splitlines()[1:]
    hip = [r for r in rows_csv if r.startswith("2,") and ",left_hip," in r][0]
    assert hip.endswith(",0.0")
    # a depth_source that does not fit the take is ignored
    take.metadata["depth_source"] = rows[:2]
    assert take_to_posekit(take, uuid="0a1b2c3d-4e5f-6071-8293-a4b5c6d7e8f9", created_at=1.5e8).depth_confidence.sum() == 19 * 3 - 3  # fmt: skip


def test_depth_levels_give_the_apps_depth_confidence(tmp_path):
    """A lifted take's depth_level (the depth pixels' confidence level per joint) becomes the
    app's depthConfidence = level / 2, 0 where the skeleton placed the joint; pelvis and neck
    take the smaller of their joints'. A depth_level that does not fit the take is ignored."""
    take = lifted_take()
    take.metadata["depth_source"] = ["m" * 17, "mmmmmmmmmommmmmmm", "m" * 17]
    take.metadata["depth_level"] = ["2" * 17, "1" * 9 + "2" * 8, "2" * 11 + "1" + "0" * 5]
    conf = take_to_posekit(take, uuid="0a1b2c3d-4e5f-6071-8293-a4b5c6d7e8f9", created_at=1.5e8).depth_confidence  # fmt: skip
    assert conf[0].tolist() == [1.0] * 4 + [0.0] + [1.0] * 14  # the ear without 3D stays 0
    # the ear has no 3D; frame 1: the wrist placed, the shoulders' level 1 gives the neck 0.5
    assert conf[1].tolist() == [0.5] * 4 + [0.0] + [0.5] * 4 + [0.0] + [1.0] * 7 + [1.0, 0.5]
    # frame 2: left hip level 1, right hip level 0: the pelvis takes the smaller
    assert conf[2].tolist() == [1.0] * 4 + [0.0] + [1.0] * 6 + [0.5] + [0.0] * 5 + [0.0, 1.0]
    hip = [r for r in take_csv_text(take).splitlines() if r.startswith("2,") and ",left_hip," in r]
    assert hip[0].endswith(",0.5")
    for bad in (["2" * 17] * 2, ["2" * 16] * 3, ["2" * 16 + "3"] * 3):
        take.metadata["depth_level"] = bad
        ignored = take_to_posekit(take, uuid="0a1b2c3d-4e5f-6071-8293-a4b5c6d7e8f9", created_at=1.5e8)  # fmt: skip
        assert ignored.depth_confidence.sum() == 19 * 3 - 1 - 3


def test_an_app_take_in_pixels_is_normalised_back_within_a_float32_step(tmp_path):
    app = read_posekit_folder(app_folder(tmp_path))
    take = posekit_to_take(app, image_size=(1920, 1440))
    assert take.metadata["image_size"] == [1920, 1440]
    np.testing.assert_allclose(take.keypoints_2d[0, 0], app.keypoints[0, 0] * [1920, 1440])
    back = take_to_posekit(take)
    np.testing.assert_allclose(back.keypoints, app.keypoints, rtol=1.2e-7, atol=0)
    np.testing.assert_array_equal(back.playback, app.playback)
    # a 2D point far outside the app's 0 to 1 overflows a float32 in pixels: one sentence
    app.frames["joints"][2, 4, 6] = np.float32(3e38)
    with pytest.raises(PkmodelError) as err:
        posekit_to_take(app, image_size=(10000, 10000), source="take X")
    assert str(err.value) == (
        f"take X: frame 2: joint {DISPLAY_NAMES[4]}'s keypoint2D 3e+38 times the image size "
        "10000 x 10000 is beyond what a float32 take holds (the app writes 0 to 1)"
    )


def test_json_export_reads_null_nan_strings_and_nan_tokens(tmp_path):
    joints = app_joints()
    meta = json.loads(META_TEXT)
    spellings = [None, "nan", "NaN"]  # null, a string, and (below) a bare NaN token

    def number(v: float, k: int):
        return spellings[k % 3] if np.isnan(v) else float(v)

    frames = []
    for t, stamp in enumerate(TIMESTAMPS):
        frames.append({"timestamp": stamp, "joints": [
            {"joint": DISPLAY_NAMES[j],
             "camera3D": [number(v, j + t) for v in joints[t, j, 0:3]],
             "playback3D": [number(v, j + t + 1) for v in joints[t, j, 3:6]],
             "keypoint2D": [float(v) for v in joints[t, j, 6:8]],
             "score2D": float(joints[t, j, 8]), "depthConfidence": float(joints[t, j, 9])}
            for j in reversed(range(19))  # any order: joints are found by name
        ]})  # fmt: skip
    text = json.dumps({"meta": meta, "frames": frames}).replace('"NaN"', "NaN")
    assert "NaN" in text and '"nan"' in text and "null" in text
    (tmp_path / "PoseTake_2026-01-06T052203Z.json").write_text(text)
    loaded = load_take(tmp_path / "PoseTake_2026-01-06T052203Z.json")
    assert loaded.kind == "PoseKit app JSON export"
    assert loaded.posekit.frames_bytes() == frames_bin(TIMESTAMPS, joints)
    assert loaded.posekit.meta.to_json() == META_TEXT
    # faults name the file, the frame and the field
    frames[1]["joints"][0]["camera3D"] = [1.0, "x", 2.0]
    (tmp_path / "bad.json").write_text(json.dumps({"meta": meta, "frames": frames}))
    with pytest.raises(PkmodelError, match=r"bad.json: frame 1: joint Neck: 'camera3D'"):
        read_posekit_json(tmp_path / "bad.json")
    for name in (["Nose"], {}, 7):  # a 'joint' that is no name at all
        frames[1]["joints"][0]["joint"] = name
        (tmp_path / "bad.json").write_text(json.dumps({"meta": meta, "frames": frames}))
        with pytest.raises(PkmodelError) as err:
            read_posekit_json(tmp_path / "bad.json")
        assert str(err.value).startswith(
            f"take file {tmp_path / 'bad.json'}: frame 1: every joint must be an object whose "
            "'joint' is one of the app's names"
        ) and str(err.value).endswith(f"each once; got {name!r}")


def test_zip_export_written_stored_and_read(tmp_path):
    app = read_posekit_folder(app_folder(tmp_path))
    path = write_posekit_zip(app, tmp_path / "PoseTake.zip")
    with zipfile.ZipFile(path) as zf:
        assert zf.namelist() == ["meta.json", "frames.bin", "frames.json"]
        assert {i.compress_type for i in zf.infolist()} == {zipfile.ZIP_STORED}
        assert zf.read("meta.json").decode() == META_TEXT
        assert zf.read("frames.bin") == app.frames_bytes()
        doc = json.loads(zf.read("frames.json"))  # strict JSON: NaN as null
        assert zf.getinfo("meta.json").date_time == (2026, 1, 7, 5, 22, 2)
    assert doc["frames"][0]["joints"][3] == {
        "joint": "L-Ear", "camera3D": [None] * 3, "playback3D": [None] * 3,
        "keypoint2D": [0.5, 0.5], "score2D": 0, "depthConfidence": 0,
    }  # fmt: skip
    assert read_posekit_zip(path).frames_bytes() == app.frames_bytes()
    assert load_take(path).kind == "PoseKit app ZIP export"
    # a ZIP the app made (its own stored writer) without frames.bin: frames.json is read
    with zipfile.ZipFile(tmp_path / "json_only.zip", "w") as zf:
        zf.writestr("meta.json", META_TEXT)
        zf.writestr("frames.json", export_json_text(app))
    assert read_posekit_zip(tmp_path / "json_only.zip").frames_bytes() == app.frames_bytes()


def test_export_json_text_is_swifts_pretty_printing():
    app = read_posekit_bin_from(app_joints()[:1])
    app.meta = PoseKitMeta.from_json(json.loads(META_TEXT), "meta")
    text = export_json_text(app)
    assert text.startswith('{\n  "frames" : [\n    {\n      "joints" : [\n        {\n')
    assert '\n          "joint" : "L-Ear",\n          "keypoint2D" : [\n            0.5,\n' in text
    assert '\n          "camera3D" : [\n            null,\n            null,\n' in text
    assert text.endswith('\n    "uuid" : "6F1C2B0E-8D4A-4C1B-9E2F-3A5B7C9D1E0F"\n  }\n}')


def read_posekit_bin_from(joints: np.ndarray):
    from pkmodel.lift.posekit_take import PoseKitTake, frames_from_bytes

    return PoseKitTake(None, frames_from_bytes(frames_bin(TIMESTAMPS[: len(joints)], joints), "x"))


def test_swift_number_text():
    floats = [0.3, 1.0, 1e-5, 1e-4, 16777216.0, 16777218.0, -0.0, 1.5e-7, 123.45, 0.5, -2.0,
              3.4028235e38, np.nan]  # fmt: skip
    assert swift_floats(np.array(floats, dtype=np.float32)).tolist() == [
        "0.3", "1", "1e-05", "0.0001", "16777216", "1.6777218e+07", "-0", "1.5e-07", "123.45",
        "0.5", "-2", "3.4028235e+38", None,
    ]  # fmt: skip
    doubles = [788918400.5, 0.1 + 0.2, 1e16, 2.0**53, 1e-5, 0.0, 12345678.0]
    assert [swift_double(d) for d in doubles] == [
        "788918400.5", "0.30000000000000004", "1e+16", "9007199254740992", "1e-05", "0",
        "12345678",
    ]  # fmt: skip
    text = swift_json({"notes": "a/b\n\u00e9\x01", "empty": [], "obj": {}, "f": np.float32(0.1)})
    assert text == (
        '{\n  "empty" : [\n\n  ],\n  "f" : 0.1,\n  "notes" : "a\\/b\\n\u00e9\\u0001",\n'
        '  "obj" : {\n\n  }\n}'
    )


def test_meta_with_notes_and_its_faults(tmp_path):
    meta = PoseKitMeta.from_json(json.loads(META_TEXT), "meta")
    meta.notes, meta.min_keypoint_score, meta.duration = "left/right test", 0.5, 0.0
    assert meta.to_json().splitlines()[3:5] == ['  "duration" : 0,', '  "fps" : 30,']
    assert '\n  "notes" : "left\\/right test",\n  "units"' in meta.to_json()
    bad = {
        "fps": ("30", "'fps' must be a whole number"),
        "uuid": ("not-a-uuid", "'uuid' must be a UUID"),
        "jointSchema": ("COCO17", "joint schema 'COCO17' is not the app's"),
        "createdAt": (None, "'createdAt' must be a finite number"),
        # valid JSON (an escaped lone surrogate) that no UTF-8 file can hold
        "notes": ("a\ud800b", "'notes' holds a lone UTF-16 surrogate, which is not text"),
    }
    for key, (value, message) in bad.items():
        doc = {**json.loads(META_TEXT), key: value}
        with pytest.raises(PkmodelError, match=message) as e:
            PoseKitMeta.from_json(doc, "take file X/meta.json")
        assert str(e.value).startswith("take file X/meta.json: ") and "\n" not in str(e.value)
    doc = json.loads(META_TEXT)
    del doc["frameCount"]
    with pytest.raises(PkmodelError, match="has no 'frameCount'"):
        PoseKitMeta.from_json(doc, "meta")
    doc = {**json.loads(META_TEXT), "extra": 1, "fps": 30.0}  # unknown keys are ignored
    assert PoseKitMeta.from_json(doc, "meta").to_json() == META_TEXT


def test_a_frames_bin_of_a_partial_record_is_one_sentence(tmp_path):
    data = frames_bin(TIMESTAMPS[:3], app_joints(3)) + bytes(100)
    assert len(data) == 768 * 3 + 100
    folder = app_folder(tmp_path)
    (folder / "frames.bin").write_bytes(data)
    with pytest.raises(PkmodelError) as e:
        load_take(folder)
    message = str(e.value)
    assert str(folder / "frames.bin") in message and "2404 bytes" in message
    assert "\n" not in message and message.count(". ") == 0 and "--allow-partial" in message
    warned: list[str] = []
    loaded = load_take(folder, allow_partial=True, warn=warned.append)
    assert loaded.take.num_frames == 3 and len(warned) == 1 and "2404 bytes" in warned[0]
    # the same in a ZIP: the archive and the entry are named
    with zipfile.ZipFile(tmp_path / "cut.zip", "w") as zf:
        zf.writestr("meta.json", META_TEXT)
        zf.writestr("frames.bin", data)
    with pytest.raises(PkmodelError, match=r"cut.zip \(frames.bin\) is 2404 bytes"):
        load_take(tmp_path / "cut.zip")
    assert read_posekit_zip(tmp_path / "cut.zip", True, warned.append).num_frames == 3


def test_every_kind_of_take_is_detected(tmp_path):
    folder = app_folder(tmp_path / "app")
    app = read_posekit_folder(folder)
    (tmp_path / "PoseTake.bin").write_bytes(app.frames_bytes())
    take = load_take(folder).take
    write_take(take, tmp_path / "lift")
    kinds = {
        folder: "PoseKit app take folder",
        folder / "frames.bin": "PoseKit app take folder",
        folder / "meta.json": "PoseKit app take folder",
        tmp_path / "PoseTake.bin": "PoseKit app .bin export (no meta)",
        tmp_path / "lift/take.bin": "pkmodel take binary",
        tmp_path / "lift/take.json": "pkmodel take JSON",
        tmp_path / "lift/take.zip": "pkmodel take ZIP",
        tmp_path / "lift": "pkmodel take binary in a lift folder",
    }
    for path, kind in kinds.items():
        loaded = load_take(path)
        assert loaded.kind == kind, path
        np.testing.assert_array_equal(loaded.take.joints_camera, take.joints_camera)
    # a .bin export has no meta: one is made, and the frames stay the same bytes
    again = take_to_posekit(load_take(tmp_path / "PoseTake.bin").take)
    assert again.frames_bytes() == app.frames_bytes() and again.meta.frame_count == 4
    for bad, message in ((tmp_path / "none", "does not exist"), (tmp_path / "x.txt", "not a take")):
        if bad.suffix:
            bad.write_text("x")
        with pytest.raises(PkmodelError, match=message):
            load_take(bad)
    (tmp_path / "empty").mkdir()
    with pytest.raises(PkmodelError, match="holds no take"):
        load_take(tmp_path / "empty")


def test_csv_rows_hold_the_documented_columns(tmp_path):
    loaded = load_take(app_folder(tmp_path))
    lines = take_csv_text(loaded.take).splitlines()
    header = ("frame,timestamp,joint,x_norm,y_norm,score,camera_x,camera_y,camera_z,"
              "canonical_x,canonical_y,canonical_z,depth_confidence")  # fmt: skip
    assert lines[0] == header and len(lines) == 1 + 4 * 19
    row = lines[1 + 19 + 3].split(",")  # frame 1, left ear: not found, no 3D
    assert row[:6] == ["1", "812.53125", "left_ear", "", "", "0.0"] and row[6:12] == [""] * 6
    row = lines[1 + 5].split(",")  # frame 0, left shoulder
    app = loaded.posekit
    assert float(row[3]) == app.keypoints[0, 5, 0] and float(row[8]) == app.camera[0, 5, 2]
    assert float(row[9]) == -app.playback[0, 5, 0] and float(row[12]) == app.depth_confidence[0, 5]
    # a pkmodel take: normalised by its image size, no depth confidence recorded
    lines = take_csv_text(lifted_take()).splitlines()
    row = lines[1].split(",")
    assert float(row[3]) == np.float32(10 / 128) and row[12] == ""


def test_long_takes_are_written_in_memory_that_follows_their_text(tmp_path):
    """The app's JSON export and the CSV of a 640-frame take: their text is ~8 and ~2.6 kB a
    frame; all of a take's numbers as Python objects at once took ~100 and ~33 kB a frame,
    now a chunk of frames does (Python's allocations, traced: ~20 and ~11 kB a frame)."""
    import tracemalloc

    app = read_posekit_folder(app_folder(tmp_path))
    n = 640
    frames = np.resize(app.frames, n)
    rng = np.random.default_rng(0)
    frames["joints"] = rng.normal(0, 1, frames["joints"].shape).astype(np.float32)
    frames["timestamp"] = 100 + np.arange(n) / 30
    long = PoseKitTake(app.meta, frames)
    take = posekit_to_take(long, image_size=(1920, 1440))
    for write, most_kb in ((export_json_text, 25), (take_csv_text, 16)):
        source = long if write is export_json_text else take
        tracemalloc.start()
        try:
            text = write(source)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert len(text) > 2000 * n and peak / n < most_kb * 1000, (write.__name__, peak / n)
