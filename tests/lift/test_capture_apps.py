"""Stray Scanner folders and Record3D .r3d files (pkmodel.lift.capture_apps), read from
recordings built byte by byte from the apps' published description and from make-synthetic's
writers (pkmodel.data.synthetic.capture_layouts), which must agree with the pkmodel layout of the
same seed; malformed files are one sentence naming them (docs/3d.md "Capture apps")."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import cv2
import lzfse
import numpy as np
import pytest

from pkmodel.common.camera import Intrinsics
from pkmodel.common.errors import PkmodelError
from pkmodel.config import SyntheticConfig
from pkmodel.data.synthetic.generate import generate
from pkmodel.lift.capture_apps import R3dRecording, StrayRecording, VideoFrames
from pkmodel.lift.rgbd import find_sequences
from tests.common.test_capture_formats import quaternion_matrix
from tests.conftest import run_cli

W, H, FRAMES, SEED = 96, 64, 5, 7


def spec(layout: str, sensor: str, **kw) -> SyntheticConfig:
    values = dict(num_train=0, num_val=0, width=W, height=H, seed=SEED, sequences=1,
                  frames=FRAMES, workers=1, layout=layout, depth_sensor=sensor)  # fmt: skip
    values.update(kw)
    return SyntheticConfig(**values)


@pytest.fixture(scope="module")
def made(tmp_path_factory) -> dict[tuple[str, str], Path]:
    """The same seed in the three layouts, with exact and with lidar depth."""
    root = tmp_path_factory.mktemp("layouts")
    out = {}
    for layout in ("pkmodel", "stray", "record3d"):
        for sensor in ("exact", "lidar"):
            out[layout, sensor] = root / f"{layout}-{sensor}"
            generate(spec(layout, sensor), out[layout, sensor], progress=False)
    return out


def quiet_find(path: Path, messages: list[str] | None = None):
    return find_sequences(path, warn=(messages.append if messages is not None else print))


# --- make-synthetic's layouts read back like the pkmodel layout ------------------------------


@pytest.mark.parametrize("sensor", ["exact", "lidar"])
@pytest.mark.parametrize("layout", ["stray", "record3d"])
def test_app_layouts_read_like_the_pkmodel_layout(made, layout, sensor):
    (ref,) = quiet_find(made["pkmodel", sensor])
    (seq,) = quiet_find(made[layout, sensor])
    assert isinstance(seq, StrayRecording if layout == "stray" else R3dRecording)
    assert seq.name == "seq_000" and len(seq) == FRAMES
    np.testing.assert_array_equal(seq.timestamps, [0.0, 0.033333, 0.066667, 0.1, 0.133333])
    # the intrinsics make-synthetic writes (6 decimals), at the colour frames' size
    assert seq.intrinsics == ref.intrinsics
    assert (seq.intrinsics.width, seq.intrinsics.height) == (W, H)
    depth_shape = (H, W) if sensor == "exact" else (H // 2, W // 2)  # depth_scale 0.5
    for i in range(FRAMES):
        depth = seq.load_depth(i)
        assert depth.dtype == np.float32 and depth.shape == depth_shape
        np.testing.assert_array_equal(depth, ref.load_depth(i))  # mm PNG / float32: no rounding
        conf, ref_conf = seq.load_confidence(i), ref.load_confidence(i)
        if sensor == "exact":
            assert conf is None and ref_conf is None
        else:
            np.testing.assert_array_equal(conf, ref_conf)
            assert set(np.unique(conf)) <= {0, 1, 2} and (conf == 2).any()
    assert np.count_nonzero(seq.load_depth(0)) > 0.5 * np.prod(depth_shape)
    gt, ref_gt = seq.ground_truth, ref.ground_truth
    for key in ("keypoints_2d", "joints_3d", "limb_radius"):
        np.testing.assert_array_equal(getattr(gt, key), getattr(ref_gt, key))
    assert np.isfinite(gt.joints_3d).any()


def test_record3d_colour_is_the_pkmodel_layouts_jpeg(made):
    (ref,) = quiet_find(made["pkmodel", "lidar"])
    (seq,) = quiet_find(made["record3d", "lidar"])
    for i in range(FRAMES):
        np.testing.assert_array_equal(seq.load_color(i), ref.load_color(i))


def test_stray_video_frames_are_the_clip_in_order(made):
    """mp4v is lossy (and smooths the renderer's per-frame noise): each decoded frame is within
    a few grey levels of the pkmodel layout's JPEG; random access gives the same pixels as
    reading in order. (Frame order itself: test_hand_built_stray_folder_reads_exactly.)"""
    (ref,) = quiet_find(made["pkmodel", "exact"])
    (seq,) = quiet_find(made["stray", "exact"])
    video = [seq.load_color(i) for i in range(FRAMES)]
    for i, frame in enumerate(video):
        assert frame.shape == (H, W, 3)
        assert np.abs(frame - ref.load_color(i).astype(np.float64)).mean() < 5.0
    frames = VideoFrames(seq.color_files[0], FRAMES)
    for i in (3, 1, 4, 0, 2):
        np.testing.assert_array_equal(frames.frame(i), video[i])


def test_stray_odometry_holds_the_camera_pose(made):
    """Each odometry row is the camera's position and orientation in the synthetic world
    (camera-to-world, OpenCV camera axes), as the app writes ARKit's pose."""
    ann = json.loads((made["pkmodel", "exact"] / "sequences/seq_000/annotations.json").read_text())
    w2c = ann["images"][0]["world_to_camera"]
    r, t = np.array(w2c["R"]), np.array(w2c["t"])
    lines = (made["stray", "exact"] / "sequences/seq_000/odometry.csv").read_text().splitlines()
    assert lines[0] == "timestamp, frame, x, y, z, qx, qy, qz, qw" and len(lines) == FRAMES + 1
    row = [float(v) for v in lines[2].split(",")]
    assert row[:2] == [0.033333, 1.0]
    np.testing.assert_allclose(row[2:5], -r.T @ t, atol=1e-12)
    np.testing.assert_allclose(quaternion_matrix(*row[5:]), r.T, atol=1e-7)


def test_the_record3d_layout_is_deterministic(made, tmp_path):
    generate(spec("record3d", "lidar"), tmp_path, progress=False)
    path = "sequences/seq_000.r3d"
    assert (tmp_path / path).read_bytes() == (made["record3d", "lidar"] / path).read_bytes()
    with zipfile.ZipFile(tmp_path / path) as zf:
        meta = json.loads(zf.read("metadata"))
        names = set(zf.namelist())
    assert {k: meta[k] for k in ("w", "h", "dw", "dh", "fps")} == dict(
        w=W, h=H, dw=W // 2, dh=H // 2, fps=30
    )
    assert meta["initPose"] == [0, 0, 0, 1, 0, 0, 0] and len(meta["poses"]) == FRAMES
    assert names == {"metadata", "pkmodel_ground_truth.json"} | {
        f"rgbd/{i}.{kind}" for i in range(FRAMES) for kind in ("jpg", "depth", "conf")
    }


def test_the_record3d_layouts_poses_are_arkits_camera_to_world(made, tmp_path):
    """metadata 'poses' holds per frame a quaternion (qx, qy, qz, qw) then a position
    (Record3D's maintainer, record3d#27): ARKit's camera-to-world transform, whose camera looks
    down -z with y up, so the synthetic camera's rotation (OpenCV axes) times diag(1, -1, -1).
    A frame rate that is not whole stays as it is (12.5 was written 12)."""
    ann = json.loads((made["pkmodel", "exact"] / "sequences/seq_000/annotations.json").read_text())
    with zipfile.ZipFile(made["record3d", "exact"] / "sequences/seq_000.r3d") as zf:
        poses = json.loads(zf.read("metadata"))["poses"]
    assert len(poses) == len(ann["images"]) == FRAMES
    for image, pose in zip(ann["images"], poses, strict=True):
        r, t = (np.array(image["world_to_camera"][k]) for k in ("R", "t"))
        arkit = r.T @ np.diag([1.0, -1.0, -1.0])
        np.testing.assert_allclose(quaternion_matrix(*pose[:4]), arkit, atol=1e-7)
        np.testing.assert_allclose(pose[4:], -r.T @ t, atol=1e-12)
    generate(spec("record3d", "exact", fps=12.5, frames=2), tmp_path, progress=False)
    with zipfile.ZipFile(tmp_path / "sequences/seq_000.r3d") as zf:
        assert json.loads(zf.read("metadata"))["fps"] == 12.5


# --- recordings built from the apps' description, not by pkmodel's writer --------------------


def write_video(path: Path, colours: list[tuple[int, int, int]], size=(64, 48)) -> None:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 30.0, size)
    for colour in colours:
        writer.write(np.full((size[1], size[0], 3), colour[::-1], np.uint8))  # BGR
    writer.release()


DEPTH_MM = np.arange(16 * 12, dtype=np.uint16).reshape(12, 16) * 7 + 400  # 400 .. 1737 mm
CONF = (np.arange(16 * 12, dtype=np.uint8).reshape(12, 16) % 3).astype(np.uint8)
COLOURS = [(200, 30, 30), (30, 200, 30), (30, 30, 200), (120, 120, 120)]


def stray_folder(root: Path, video_frames: int = 4, depth_frames: int = 4, **text) -> Path:
    """A Stray Scanner folder as docs/format.md describes it: a 64 x 48 video, 16 x 12 depth
    and confidence PNGs, camera_matrix.csv and odometry.csv written as text."""
    folder = root / "scan"
    (folder / "depth").mkdir(parents=True)
    (folder / "confidence").mkdir()
    write_video(folder / "rgb.mp4", (COLOURS * 3)[:video_frames])
    for i in range(depth_frames):
        cv2.imwrite(str(folder / f"depth/{i:06d}.png"), DEPTH_MM + i)
        cv2.imwrite(str(folder / f"confidence/{i:06d}.png"), CONF)
    matrix = "50.5, 0.0, 31.25\n0.0, 51.0, 23.75\n0.0, 0.0, 1.0"
    odometry = "timestamp, frame, x, y, z, qx, qy, qz, qw\n" + "".join(
        f"{100 + 0.25 * i}, {i:06d}, 0.1, 0.2, 0.3, 0.0, 0.0, 0.0, 1.0\n" for i in range(4)
    )
    (folder / "camera_matrix.csv").write_text(text.get("matrix", matrix))
    (folder / "odometry.csv").write_text(text.get("odometry", odometry))
    return folder


def test_hand_built_stray_folder_reads_exactly(tmp_path):
    folder = stray_folder(tmp_path)
    messages: list[str] = []
    (seq,) = quiet_find(folder, messages)
    assert messages == [] and seq.ground_truth is None and seq.name == "scan"
    assert len(seq) == 4 and seq.depth_unit_m == 0.001  # millimetres, as the take records
    np.testing.assert_array_equal(seq.timestamps, [100.0, 100.25, 100.5, 100.75])
    assert seq.intrinsics == Intrinsics(50.5, 51.0, 31.25, 23.75, width=64, height=48)
    for i in range(4):
        expected = (DEPTH_MM + i).astype(np.float32) * np.float32(0.001)
        np.testing.assert_array_equal(seq.load_depth(i), expected)
        np.testing.assert_array_equal(seq.load_confidence(i), CONF)
        colour = seq.load_color(i).reshape(-1, 3).mean(0)
        np.testing.assert_allclose(colour, COLOURS[i], atol=4)
    assert seq.load_depth(2)[0, 0] == np.float32(402) * np.float32(0.001)


def turn_for_display(video: Path) -> None:
    """Give an MP4's video track the display matrix of a quarter turn, as an edited video may
    carry (Stray Scanner itself wrote one, ``input.transform = CGAffineTransform(rotationAngle:
    .pi/2)``, only before 2021-02-27, before its odometry had timestamps):
    the matrix of the track header box (ISO/IEC 14496-12 'tkhd', version 0: nine big-endian
    32-bit values at byte 40 of the box body) becomes {0, 1, 0; -1, 0, 0; 0, 0, 1}."""
    import struct

    data = bytearray(video.read_bytes())
    box = data.find(b"tkhd") - 4
    assert box > 0 and data[box + 8] == 0  # found, version 0
    one, unit_w = 1 << 16, 1 << 30  # 16.16 fixed point; w is 2.30
    data[box + 48 : box + 84] = struct.pack(">9i", 0, one, 0, -one, 0, 0, 0, 0, unit_w)
    video.write_bytes(bytes(data))


def test_a_stray_video_turned_for_display_is_read_as_stored(tmp_path):
    """The depth maps and the camera matrix are in the sensor's orientation, so the video's
    pixels are read as stored: OpenCV on its own turns such a video to 48 x 64."""
    folder = stray_folder(tmp_path)
    turn_for_display(folder / "rgb.mp4")
    capture = cv2.VideoCapture(str(folder / "rgb.mp4"))
    ok, turned = capture.read()
    capture.release()
    assert ok and turned.shape == (64, 48, 3)  # what the reader must not see
    (seq,) = quiet_find(folder, [])
    assert seq.intrinsics == Intrinsics(50.5, 51.0, 31.25, 23.75, width=64, height=48)
    for i in (0, 3, 1):
        colour = seq.load_color(i)
        assert colour.shape == (48, 64, 3)
        np.testing.assert_allclose(colour.reshape(-1, 3).mean(0), COLOURS[i], atol=4)


def hevc_video(
    frames: list[np.ndarray],
    path: Path,
    pix_fmt: str,
    hidden_first: bool = False,
    bframes: bool = True,
) -> None:
    """Encode RGB frames as the HEVC the app writes (AVAssetWriter, `AVVideoCodecType.hevc`:
    an 'hvc1' sample entry in an MP4), by FFmpeg's libx265 with its default B-frames, so that
    decode order differs from display order. ``hidden_first``: as Stray Scanner writes since
    2022: 60 frames a second on a timescale of 60, the first frame stamped -1/60 s, before the
    session's start at 0, so the file's edit list leaves it out of playback."""
    import subprocess

    import imageio_ffmpeg

    h, w = frames[0].shape[:2]
    timing = (
        ["-output_ts_offset", str(-1 / 60), "-video_track_timescale", "60"] if hidden_first else []
    )
    command = [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y",
               "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}",
               "-r", "60" if hidden_first else "30", "-i", "-",
               "-c:v", "libx265", "-x265-params", "log-level=error" + ("" if bframes else ":bframes=0"),
               "-crf", "16", "-pix_fmt", pix_fmt, "-tag:v", "hvc1", *timing, str(path)]  # fmt: skip
    subprocess.run(command, input=b"".join(f.tobytes() for f in frames), check=True)
    assert b"hvc1" in path.read_bytes()  # the sample entry Apple's players require


@pytest.mark.parametrize(
    "pix_fmt, turned", [("yuv420p", False), ("yuv420p10le", False), ("yuv420p", True)]
)
def test_a_stray_hevc_video_reads_like_the_clip(made, tmp_path, pix_fmt, turned):
    """The app's rgb.mp4 is HEVC (8-bit Main; Main 10 on phones that record HDR), not the
    mp4v make-synthetic writes: the reader decodes it, with B-frames and with a display matrix,
    to the clip's frames in order, and random access gives the same pixels."""
    import shutil

    (ref,) = quiet_find(made["pkmodel", "exact"])
    folder = tmp_path / "stray"
    shutil.copytree(made["stray", "exact"], folder)
    video = folder / "sequences/seq_000/rgb.mp4"
    clip = [ref.load_color(i) for i in range(FRAMES)]
    for i, frame in enumerate(clip):  # consecutive frames differ little: mark each one
        frame[8:24, 8 + 16 * i : 24 + 16 * i] = 255
    hevc_video(clip, video, pix_fmt)
    if turned:
        turn_for_display(video)
    (seq,) = quiet_find(folder)
    assert isinstance(seq, StrayRecording) and len(seq) == FRAMES
    frames = [seq.load_color(i) for i in range(FRAMES)]
    for i, frame in enumerate(frames):
        assert frame.shape == (H, W, 3)
        errors = [np.abs(frame - c.astype(np.float64)).mean() for c in clip]
        assert errors[i] < 4.0 and int(np.argmin(errors)) == i  # this frame, not a neighbour
        assert frame[12:20, 12 + 16 * i : 20 + 16 * i].min() > 230
    access = VideoFrames(seq.color_files[0], FRAMES)
    for i in (4, 0, 3, 1, 2):
        np.testing.assert_array_equal(access.frame(i), frames[i])


def test_stray_frame_counts_one_or_two_apart_use_the_common_frames(tmp_path):
    messages: list[str] = []
    (seq,) = quiet_find(stray_folder(tmp_path, video_frames=6, depth_frames=4), messages)
    assert len(seq) == 4 and len(seq.timestamps) == 4 and len(seq.depth_files) == 4
    assert messages == [f"{tmp_path / 'scan'}: frame counts differ (rgb.mp4 6, odometry.csv "
                        "rows 4); lifting the first 4 frames"]  # fmt: skip
    (seq,) = quiet_find(stray_folder(tmp_path / "b", video_frames=3, depth_frames=4), messages)
    assert len(seq) == 3 and seq.timestamps[-1] == 100.5
    with pytest.raises(
        PkmodelError,
        match=r"frame counts differ by more than 2 \(rgb.mp4 7, odometry.csv rows 4\)",
    ):
        quiet_find(stray_folder(tmp_path / "c", video_frames=7, depth_frames=4))


def test_stray_frames_without_depth_are_left_out_by_their_number(tmp_path):
    """The app writes a video frame and an odometry row for every frame but a depth map (and
    its confidence) only where ARKit delivered depth (DatasetEncoder.swift: "warning: scene
    depth missing."): frames 0 and 2 without depth leave frames 1 and 3, each with its own
    picture, depth and timestamp. Such a recording was refused, blaming odometry.csv."""
    folder = stray_folder(tmp_path)
    for n in (0, 2):
        (folder / f"depth/{n:06d}.png").unlink()
        (folder / f"confidence/{n:06d}.png").unlink()
    messages: list[str] = []
    (seq,) = quiet_find(folder, messages)
    assert messages == [f"{folder}: 2 of 4 frames have no depth map in depth/ (the app writes "
                        "none where ARKit gave no depth); lifting the 2 that have one"]  # fmt: skip
    assert len(seq) == 2 and seq.frame_numbers == [1, 3]
    np.testing.assert_array_equal(seq.timestamps, [100.25, 100.75])
    for i, n in enumerate((1, 3)):
        np.testing.assert_array_equal(seq.load_depth(i), (DEPTH_MM + n) * np.float32(0.001))
        colour = seq.load_color(i).reshape(-1, 3).mean(0)
        np.testing.assert_allclose(colour, COLOURS[n], atol=4)
    # a depth map whose frame has no odometry row, and rows out of order: one sentence each
    cv2.imwrite(str(folder / "depth/000009.png"), DEPTH_MM)
    cv2.imwrite(str(folder / "confidence/000009.png"), CONF)
    with pytest.raises(PkmodelError) as err:
        quiet_find(folder)
    assert str(err.value) == (
        f"{folder / 'depth'}: depth map 000009.png has no row of frame 000009 in odometry.csv "
        "(the app writes a row for every frame)"
    )
    rows = "".join(
        f"{100 + 0.25 * i}, {n:06d}, 0, 0, 0, 0, 0, 0, 1\n" for i, n in enumerate((0, 2, 1))
    )
    odometry = "timestamp, frame, x, y, z, qx, qy, qz, qw\n" + rows
    with pytest.raises(
        PkmodelError, match=r"odometry.csv: row 3 is frame 000001 after frame 000002"
    ):
        quiet_find(stray_folder(tmp_path / "b", odometry=odometry))


@pytest.mark.parametrize("bframes", [False, True])
def test_a_stray_video_whose_first_frame_is_before_the_session_reads_every_frame(tmp_path, bframes):
    """Stray Scanner stamps its first video frame -1/60 s and starts its AVAssetWriter session
    at 0 (DatasetEncoder.swift: currentFrame starts at -1; VideoEncoder.swift:
    startSession(atSourceTime: .zero), CMTime(value: frameNumber, timescale: 60)). Apple's
    documentation: such a frame is written to the file but not presented, by the track's edit
    list ('elst', ISO/IEC 14496-12 8.6.6: its media_time starts after that frame). Played
    back, the video held one frame fewer and frame i showed frame i + 1."""
    import struct

    folder = stray_folder(tmp_path)
    video = folder / "rgb.mp4"
    clip = [np.full((48, 64, 3), c, np.uint8) for c in COLOURS]
    hevc_video(clip, video, "yuv420p", hidden_first=True, bframes=bframes)
    data = video.read_bytes()
    box = data.find(b"elst") - 4
    version, entries = data[box + 8], struct.unpack(">I", data[box + 12 : box + 16])[0]
    segment, media_time = struct.unpack(">Ii", data[box + 16 : box + 24])
    assert version == 0 and entries == 1
    if not bframes:  # the first frame's tick (timescale 60) is outside the edit
        assert media_time == 1
    capture = cv2.VideoCapture(str(video))  # what the reader must not see
    played = []
    while (got := capture.read())[0]:
        played.append(got[1][..., ::-1].reshape(-1, 3).mean(0))
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 4 and len(played) == 3
    np.testing.assert_allclose(played[0], COLOURS[1], atol=4)
    messages: list[str] = []
    (seq,) = quiet_find(folder, messages)
    assert messages == [] and len(seq) == 4
    for i in (0, 1, 2, 3, 0):
        colour = seq.load_color(i).reshape(-1, 3).mean(0)
        np.testing.assert_allclose(colour, COLOURS[i], atol=4)


def r3d_bytes(metadata: dict | None, frames: int = 3, **blobs) -> bytes:
    """A .r3d as Record3D's maintainer describes it: a ZIP with the JSON 'metadata' and per
    frame rgbd/N.jpg, rgbd/N.depth (LZFSE float32, row by row) and rgbd/N.conf (LZFSE uint8)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        if metadata is not None:
            zf.writestr("metadata", json.dumps(metadata))
        for i in range(frames):
            ok, jpg = cv2.imencode(".jpg", np.full((48, 64, 3), 60 * i, np.uint8))
            zf.writestr(f"rgbd/{i}.jpg", blobs.get("jpg", jpg.tobytes()))
            depth = R3D_DEPTH + np.float32(i)
            zf.writestr(f"rgbd/{i}.depth", blobs.get("depth", lzfse.compress(depth.tobytes())))
            zf.writestr(f"rgbd/{i}.conf", blobs.get("conf", lzfse.compress(CONF.tobytes())))
    return buffer.getvalue()


R3D_DEPTH = np.linspace(0.5, 3.0, 16 * 12, dtype=np.float32).reshape(12, 16)
R3D_DEPTH[3, 4] = np.nan  # Record3D's "no depth"
META = {"K": [100.0, 0, 0, 0, 102.0, 0, 63.5, 47.5, 1], "w": 128, "h": 96, "dw": 16, "dh": 12,
        "fps": 60, "frameTimestamps": [5.0, 5.5, 6.25], "poses": [], "initPose": [0, 0, 0, 1, 0, 0, 0]}  # fmt: skip


def test_hand_built_r3d_reads_exactly(tmp_path):
    path = tmp_path / "take1.r3d"
    path.write_bytes(r3d_bytes(META))
    (seq,) = quiet_find(path)
    assert seq.name == "take1" and len(seq) == 3 and seq.ground_truth is None
    np.testing.assert_array_equal(seq.timestamps, [5.0, 5.5, 6.25])
    # K is for w x h = 128 x 96 and column-major; the JPEGs are 64 x 48: half of it, pixel
    # centres kept (cx' = (cx + 0.5) / 2 - 0.5)
    assert seq.intrinsics == Intrinsics(50.0, 51.0, 31.5, 23.5, width=64, height=48)
    for i in range(3):
        depth = seq.load_depth(i)
        expected = R3D_DEPTH + np.float32(i)
        expected[3, 4] = 0.0
        np.testing.assert_array_equal(depth, expected)
        np.testing.assert_array_equal(seq.load_confidence(i), CONF)
        assert abs(float(seq.load_color(i).mean()) - 60 * i) < 1.5
    # the same recording unzipped, and found inside a folder beside a Stray folder
    with zipfile.ZipFile(path) as zf:
        zf.extractall(tmp_path / "unzipped")
    (unzipped,) = quiet_find(tmp_path / "unzipped")
    np.testing.assert_array_equal(unzipped.load_depth(1), seq.load_depth(1))
    stray_folder(tmp_path)
    names = sorted(s.name for s in quiet_find(tmp_path))
    assert names == ["scan", "take1", "unzipped"]
    # given as the input itself, a .r3d renamed .zip reads too (docs/3d.md)
    zipped = tmp_path / "renamed" / "take1.zip"
    zipped.parent.mkdir()
    zipped.write_bytes(path.read_bytes())
    (seq_zip,) = quiet_find(zipped)
    np.testing.assert_array_equal(seq_zip.load_depth(2), seq.load_depth(2))


def test_r3d_without_a_depth_size_holds_its_depth_at_w_x_h(tmp_path):
    """Record3D's files from before its separate depth size have no 'dw' and 'dh': their depth
    map is w x h (Record3D's offline Unity demo reads every file so). Only one of the two is
    still refused."""
    meta = {k: v for k, v in META.items() if k not in ("dw", "dh")}
    meta.update(w=16, h=12, K=[25.0, 0, 0, 0, 25.5, 0, 7.75, 5.75, 1])
    path = tmp_path / "old.r3d"
    path.write_bytes(r3d_bytes(meta))
    (seq,) = quiet_find(path)
    assert seq.depth_shape == (12, 16)
    expected = R3D_DEPTH + np.float32(2)
    expected[3, 4] = 0.0
    np.testing.assert_array_equal(seq.load_depth(2), expected)
    # K for 16 x 12 scaled to the 64 x 48 JPEGs, pixel centres kept
    assert seq.intrinsics == Intrinsics(100.0, 102.0, 32.5, 24.5, width=64, height=48)
    path.write_bytes(r3d_bytes({**meta, "dw": 16}))
    with pytest.raises(PkmodelError, match=r"old.r3d/metadata has no 'dh'$"):
        quiet_find(path)


def test_record3d_exr_export_is_named_not_read(tmp_path):
    """Record3D's "EXR + JPG" export is no .r3d: it was "holds no RGB-D recording"."""
    folder = tmp_path / "export"
    (folder / "depth").mkdir(parents=True)
    (folder / "rgb").mkdir()
    (folder / "metadata.json").write_text(json.dumps(META))
    (folder / "depth/0.exr").write_bytes(b"v/1\x01")  # OpenEXR's magic number
    for root in (folder, tmp_path):  # the export itself, or a folder holding it
        with pytest.raises(PkmodelError) as err:
            quiet_find(root)
        assert str(err.value) == (
            f"{folder} is Record3D's EXR + JPG export (metadata.json, depth/*.exr), which "
            "pkmodel does not read (it ships no EXR decoder): export the recording from "
            "Record3D as an .r3d file instead"
        )


def test_r3d_without_frame_timestamps_uses_fps(tmp_path):
    path = tmp_path / "a.r3d"
    path.write_bytes(r3d_bytes({k: v for k, v in META.items() if k != "frameTimestamps"}))
    (seq,) = quiet_find(path)
    np.testing.assert_array_equal(seq.timestamps, np.arange(3) / 60)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"K": [100.0, 0, 63.5, 0, 102.0, 47.5, 0, 0, 1]},
            r"'K' must be column-major.*63.5, 47.5, 1",
        ),
        ({"K": [1, 2, 3]}, r"'K' must be 9 numbers \(a 3 x 3 matrix\), got 3 values"),
        ({"K": None}, r"'K' must be 9 numbers .*got NoneType"),
        ({"dw": 15.5}, r"'dw' must be a whole number of pixels, got 15.5"),
        ({"dw": 0}, r"'dw' must be a whole number of pixels, got 0$"),
        # 128 x 94 is 2 % off the JPEGs' 4:3 (up to 1 % is taken as rounding)
        (
            {"h": 94},
            r"intrinsics are for 128 x 94 pixels but the colour frames are 64 x 48, another",
        ),
        # cy = 100 lies inside 'w' = 128 but not inside 'h' = 96
        (
            {"K": [100.0, 0, 0, 0, 102.0, 0, 63.5, 100.0, 1]},
            r"principal point \(63.5, 100\) outside",
        ),
        ({"w": 100}, r"intrinsics are for 100 x 96 pixels but the colour frames are 64 x 48"),
        ({"frameTimestamps": [1.0, 1.0, 2.0]}, r"strictly increasing"),
        ({"frameTimestamps": [1.0]}, r"'frameTimestamps' must list a time per frame \(3\), got 1"),
        ({"frameTimestamps": None, "fps": 0}, r"neither 'frameTimestamps' nor a positive 'fps'"),
        ({"frameTimestamps": None, "fps": True}, r"nor a positive 'fps' \(got True\)"),
        ({"frameTimestamps": None, "fps": float("inf")}, r"nor a positive 'fps' \(got inf\)"),
        (
            {"frameTimestamps": [[5.0], [5.5], [6.25]]},
            r"'frameTimestamps' must be finite numbers \(seconds\), one per frame; entry 0 is "
            r"\[5.0\]$",
        ),
        ({"frameTimestamps": [5.0, True, 6.0]}, r"'frameTimestamps' must be .* entry 1 is True$"),
        ({"frameTimestamps": [5.0, "5.5", 6.0]}, r"'frameTimestamps' must .* entry 1 is '5.5'$"),
        ({"frameTimestamps": [5.0, 5.5, float("inf")]}, r"'frameTimestamps' .* entry 2 is inf$"),
        ({"dw": float("inf")}, r"'dw' must be a whole number of pixels, got inf"),
        ({"h": True}, r"'h' must be a whole number of pixels, got True"),
        (
            {"K": [100.0, 0, 0, 0, 102.0, 0, 500.0, 47.5, 1]},
            r"'K' puts the principal point \(500, 47.5\) outside the 128 x 96 frame of 'w' and "
            r"'h' it is for$",
        ),
        ({"K": [100.0, 0, 0, 0, 102.0, 0, 63.5, -1, 1]}, r"principal point \(63.5, -1\) outside"),
        (
            {"K": [float("nan"), 0, 0, 0, 102.0, 0, 63.5, 47.5, 1]},
            r"'K' must be 9 finite numbers \(a 3 x 3 matrix\); entry 1 is nan$",
        ),
        ({"K": [100.0, 0, 0, 0, 102.0, "0", 63.5, 47.5, 1]}, r"; entry 6 is '0'$"),
        (
            {"K": [100.0, 0, 0, 0, 1e-300, 0, 63.5, 47.5, 1]},
            r"'K' has the focal lengths 100 and 1e-300; each must be at least 1 pixel$",
        ),
        # 400-digit integers and long strings: no float holds the first (it overflowed into a
        # traceback), and the sentence quotes 40 characters of each
        ({"K": [10**400, 0, 0, 0, 102.0, 0, 63.5, 47.5, 1]}, r"; entry 1 is 10{36}\.\.\.$"),
        ({"w": 10**400}, r"'w' must be a whole number of pixels, got 10{36}\.\.\.$"),
        ({"fps": "x" * 500, "frameTimestamps": None}, r"a positive 'fps' \(got 'x{36}\.\.\.\)$"),
        ({"frameTimestamps": [5.0, -(10**400), 6.0]}, r"entry 1 is -10{35}\.\.\.$"),
    ],
)
def test_bad_r3d_metadata_is_one_sentence(tmp_path, change, message):
    meta = {k: v for k, v in {**META, **change}.items() if v is not None or k == "K"}
    path = tmp_path / "bad.r3d"
    path.write_bytes(r3d_bytes(meta))
    with pytest.raises(PkmodelError, match=message) as err:
        quiet_find(path)
    assert str(path / "metadata") in str(err.value)


def test_bad_r3d_files_are_one_sentence(tmp_path):
    cases = {
        "notzip.r3d": (b"PK? not really", r"is not a Record3D recording: not a readable ZIP"),
        "nometa.r3d": (r3d_bytes(None), r"has no 'metadata' entry"),
        "nok.r3d": (r3d_bytes({k: v for k, v in META.items() if k != "K"}), r"has no 'K'"),
        "junk.r3d": (
            r3d_bytes(META, depth=b"\x00garbage"),
            r"rgbd/0.depth does not decompress as LZFSE",
        ),
        "size.r3d": (
            r3d_bytes(META, depth=lzfse.compress(bytes(100))),
            r"rgbd/0.depth holds 100 bytes once decompressed; 16 x 12 float32 values .* need 768",
        ),
        "conf.r3d": (r3d_bytes(META, conf=lzfse.compress(bytes(5))), r"rgbd/0.conf holds 5 bytes"),
        "levels.r3d": (
            r3d_bytes(META, conf=lzfse.compress(np.full(192, 7, np.uint8).tobytes())),
            r"rgbd/0.conf holds the value 7; confidence levels are 0",
        ),
    }
    for name, (data, message) in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(PkmodelError, match=message) as err:
            find_sequences(tmp_path / name)
        assert str(tmp_path / name) in str(err.value) and "\n" not in str(err.value)


def test_a_record3d_jpeg_cut_short_is_one_sentence(tmp_path):
    ok, jpg = cv2.imencode(".jpg", np.full((48, 64, 3), 60, np.uint8))
    path = tmp_path / "cut.r3d"
    path.write_bytes(r3d_bytes(META, jpg=jpg.tobytes()[: len(jpg) // 2]))
    with pytest.raises(PkmodelError, match=r"rgbd/0.jpg is cut short \(its JPEG data ends") as e:
        quiet_find(path)[0].load_color(0)  # read for its size when the recording is found
    assert str(path) in str(e.value)
    path.write_bytes(r3d_bytes(META, jpg=b"not an image"))
    with pytest.raises(PkmodelError, match=r"rgbd/0.jpg cannot be decoded \(empty, damaged"):
        quiet_find(path)[0].load_color(0)


def test_r3d_frames_must_be_numbered_from_zero(tmp_path):
    data = r3d_bytes(META, frames=2)
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        entries = {n: zf.read(n) for n in zf.namelist() if not n.startswith("rgbd/0.")}
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for name, blob in entries.items():
            zf.writestr(name, blob)
    (tmp_path / "gap.r3d").write_bytes(buffer.getvalue())
    with pytest.raises(PkmodelError, match=r"has rgbd/1.jpg but no rgbd/0.jpg"):
        find_sequences(tmp_path / "gap.r3d")


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("no-matrix", r"scan has no camera_matrix.csv \(the camera intrinsics\)"),
        ("matrix-2x2", r"camera_matrix.csv must hold a 3 x 3 camera matrix"),
        (
            "matrix-transposed",
            r"camera_matrix.csv: the third row must be 0, 0, 1 .* it is 31.25, 23.75, 1",
        ),
        ("matrix-elsewhere", r"principal point \(331.25, 23.75\) lies outside the 64 x 48 video"),
        # cy = 48 is on the edge of the 64 x 48 video, not inside it (cy < 64 = width is no test)
        ("matrix-edge", r"principal point \(31.25, 48\) lies outside the 64 x 48 video"),
        ("odometry-repeat", r"odometry.csv: row 2 is frame 000000 after frame 000000; the app"),
        ("confidence-stem", r"scan: 000003.png in depth/ has no 000003.png in confidence/$"),
        (
            "odometry-short",
            r"depth: depth map 000003.png has no row of frame 000003 in odometry.csv",
        ),
        ("odometry-header", r"odometry.csv must start with the header line 'timestamp, frame, x"),
        ("odometry-row", r"odometry.csv line 3 must be 9 comma-separated values .*, it has 4$"),
        (
            "odometry-frame-sign",
            r"odometry.csv line 4: the frame number '-1' must be a whole "
            r"number from 0$",
        ),
        (
            "odometry-time-inf",
            r"odometry.csv line 3: the timestamp 'inf' must be a finite number "
            r"of seconds$",
        ),
        (
            "odometry-time-long",
            r"odometry.csv line 3: the timestamp 'x{37}\.\.\.' must be a finite number of seconds$",
        ),
        ("odometry-frames", r"odometry.csv: row 3 is frame 000002 after frame 000005; the app"),
        ("odometry-time", r"odometry.csv: frame timestamps must be finite and strictly increasing"),
        ("confidence-count", r"3 confidence maps in confidence/ for 4 depth maps in depth/"),
        ("confidence-level", r"confidence image .*000000.png holds the value 9"),
        (
            "matrix-tiny-focal",
            r"camera_matrix.csv: the focal lengths fx and fy must be at least 1 pixel, they are "
            r"1e-300 and 51$",
        ),
        ("video", r"rgb.mp4 cannot be read as a video"),
        ("no-video", r"scan has no rgb.mp4 \(the colour video\)"),
        ("no-depth", r"depth holds no depth maps"),
        ("depth-8-bit", r"depth file .*000000.png is 8-bit"),
    ],
)
def test_bad_stray_folders_are_one_sentence(tmp_path, kind, message):
    rows = [f"{100 + 0.25 * i}, {i:06d}, 0, 0, 0, 0, 0, 0, 1" for i in range(4)]
    header = "timestamp, frame, x, y, z, qx, qy, qz, qw\n"
    text = {
        "matrix-2x2": {"matrix": "1, 2\n3, 4\n"},
        "matrix-transposed": {"matrix": "50.5, 0, 0\n0, 51, 0\n31.25, 23.75, 1"},
        "matrix-elsewhere": {"matrix": "50.5, 0, 331.25\n0, 51, 23.75\n0, 0, 1"},
        "matrix-tiny-focal": {"matrix": "1e-300, 0, 31.25\n0, 51, 23.75\n0, 0, 1"},
        "matrix-edge": {"matrix": "50.5, 0, 31.25\n0, 51, 48.0\n0, 0, 1"},
        "odometry-repeat": {"odometry": header + "\n".join([rows[0], rows[1].replace("000001", "000000"), *rows[2:]])},
        "odometry-short": {"odometry": header + "\n".join(rows[:3])},
        "odometry-header": {"odometry": "\n".join(rows)},
        "odometry-row": {"odometry": header + rows[0] + "\n1.0, 000001, 0, 0\n"},
        "odometry-frame-sign": {"odometry": header + "\n".join([*rows[:2], rows[2].replace("000002", "-1"), rows[3]])},
        "odometry-time-inf": {"odometry": header + "\n".join([rows[0], "inf" + rows[1][rows[1].index(","):], *rows[2:]])},
        "odometry-time-long": {"odometry": header + "\n".join([rows[0], "x" * 500 + rows[1][rows[1].index(","):], *rows[2:]])},
        "odometry-frames": {"odometry": header + "\n".join([rows[0], rows[1].replace("000001", "000005"), *rows[2:]])},
        "odometry-time": {"odometry": header + "\n".join([rows[0], rows[0].replace("000000", "000001"), *rows[2:]])},
    }.get(kind, {})  # fmt: skip
    folder = stray_folder(tmp_path, **text)
    if kind == "no-matrix":
        (folder / "camera_matrix.csv").unlink()
    if kind == "confidence-count":
        (folder / "confidence/000003.png").unlink()
    if kind == "confidence-stem":
        (folder / "confidence/000003.png").rename(folder / "confidence/000007.png")
    if kind == "confidence-level":
        cv2.imwrite(str(folder / "confidence/000000.png"), np.full((12, 16), 9, np.uint8))
    if kind == "video":
        (folder / "rgb.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 not a video")
    if kind == "no-video":
        (folder / "rgb.mp4").unlink()
    if kind == "no-depth":
        for p in (folder / "depth").iterdir():
            p.unlink()
    if kind == "depth-8-bit":
        cv2.imwrite(str(folder / "depth/000000.png"), np.full((12, 16), 9, np.uint8))
    with pytest.raises(PkmodelError, match=message) as err:
        quiet_find(folder)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    ("odd", "frame", "message"),
    [
        ("depth", 2, r"depth image .*depth/000002.png is 8 x 6 but frame 0's depth map "
         r"\(000000.png\) is 16 x 12; every depth and confidence map of a recording has one size$"),
        ("confidence", 1, r"confidence image .*confidence/000001.png is 8 x 6 but frame 0's depth "
         r"map \(000000.png\) is 16 x 12"),
        ("depth", 0, r"confidence image .*confidence/000000.png is 16 x 12 but frame 0's depth map "
         r"\(000000.png\) is 8 x 6"),
    ],
)  # fmt: skip
def test_a_stray_map_of_another_size_is_one_sentence(tmp_path, odd, frame, message):
    """Every depth and confidence map has frame 0's depth size: checked as each loads (frame 0's
    when the folder is read), not a NumPy error when a chunk of frames is stacked."""
    from pkmodel.config import Config
    from pkmodel.lift.pipeline import sample_surface

    folder = stray_folder(tmp_path)
    path = folder / f"{odd}/{frame:06d}.png"
    small = cv2.resize(cv2.imread(str(path), cv2.IMREAD_UNCHANGED), (8, 6))
    cv2.imwrite(str(path), small)
    with pytest.raises(PkmodelError, match=message) as err:
        (seq,) = quiet_find(folder)
        sample_surface(seq, np.full((len(seq), 17, 2), 5.0), Config().lift)
    assert "\n" not in str(err.value)


def test_inputs_that_are_not_recordings(tmp_path):
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(PkmodelError, match=r"notes.txt is a file; give a folder or a Record3D"):
        find_sequences(tmp_path / "notes.txt")
    (tmp_path / "empty").mkdir()
    with pytest.raises(PkmodelError) as err:
        find_sequences(tmp_path / "empty")
    assert str(err.value) == (
        f"input folder {tmp_path / 'empty'} holds no RGB-D recording: no annotations.json, "
        "intrinsics.json, Stray Scanner recording or .r3d file in it or in its folders"
    )
    folder = tmp_path / "both"
    stray_folder(folder)
    (folder / "scan.r3d").write_bytes(r3d_bytes(META))
    with pytest.raises(PkmodelError, match=r"are two recordings named 'scan'"):
        quiet_find(folder)


def r3d_without(data: bytes, *names: str) -> bytes:
    """The .r3d ``data`` with the entries ``names`` left out."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as src, zipfile.ZipFile(buffer, "w") as zf:
        for name in src.namelist():
            if name not in names:
                zf.writestr(name, src.read(name))
    return buffer.getvalue()


def test_r3d_streams_of_other_lengths(tmp_path):
    """frameTimestamps may list more times than the frames kept (a .jpg without its .depth at
    the end of an interrupted recording: the first two frames, with a warning); a .conf missing
    where its .depth is there is one sentence (it was a KeyError when that frame was lifted); a
    .r3d holding no frame at all says so."""
    path = tmp_path / "a.r3d"
    data = r3d_bytes({**META, "frameTimestamps": [5.0, 5.5, 6.25, 7.0]})
    path.write_bytes(r3d_without(data, "rgbd/2.depth", "rgbd/2.conf"))
    messages: list[str] = []
    (seq,) = quiet_find(path, messages)
    assert messages == [f"{path}: frame counts differ (rgbd/*.jpg 3, rgbd/*.depth 2); lifting "
                        "the first 2 frames"]  # fmt: skip
    assert len(seq) == 2 and seq.depth_unit_m == 1.0  # float32 metres, as the take records
    np.testing.assert_array_equal(seq.timestamps, [5.0, 5.5])
    path.write_bytes(r3d_without(r3d_bytes(META), "rgbd/2.conf"))
    with pytest.raises(PkmodelError) as err:
        quiet_find(path)
    assert str(err.value) == (
        f"{path}: 2 confidence maps (.conf) for 3 depth maps (.depth); one of each per frame"
    )
    path.write_bytes(r3d_bytes(META, frames=0))
    with pytest.raises(PkmodelError) as err:
        quiet_find(path)
    assert str(err.value) == f"{path} holds no complete frame (rgbd/*.jpg 0, rgbd/*.depth 0)"


def test_r3d_depth_that_is_not_a_distance_is_no_depth(tmp_path):
    """Record3D marks missing depth with NaN or 0; a negative or infinite float is no distance
    either: each is 0, pkmodel's "no depth"."""
    depth = R3D_DEPTH.copy()
    depth[0, :3] = [-1.5, np.inf, -np.inf]
    path = tmp_path / "a.r3d"
    path.write_bytes(r3d_bytes(META, depth=lzfse.compress(depth.tobytes())))
    (seq,) = quiet_find(path)
    got = seq.load_depth(0)
    assert got[0, :4].tolist() == [0.0, 0.0, 0.0, float(R3D_DEPTH[0, 3])] and got[3, 4] == 0.0


def declare_size(data: bytes, name: str, size: int) -> bytes:
    """A ZIP whose entry ``name`` declares ``size`` uncompressed bytes, in its local header
    (byte 22) and its central directory header (byte 24), as a forged archive does (PKWARE's
    APPNOTE.TXT 4.3.7, 4.3.12)."""
    out, raw = bytearray(data), name.encode()
    for signature, name_at, size_at in ((b"PK\x03\x04", 30, 22), (b"PK\x01\x02", 46, 24)):
        at = out.find(signature)
        while out[at + name_at : at + name_at + len(raw)] != raw:
            at = out.find(signature, at + 1)
            assert at >= 0
        out[at + size_at : at + size_at + 4] = size.to_bytes(4, "little")
    return bytes(out)


def test_r3d_entries_declaring_too_many_bytes_are_refused_before_inflating(tmp_path):
    """docs/3d.md: an entry declaring more than 256 MiB, or more than 1100 times its
    compressed size (deflate reaches about 1032:1; more is a forged size), is refused before
    it is read."""
    blob = np.random.default_rng(0).bytes(300_000)  # stored: 300 MiB from it is 1049:1
    for data, declared in ((r3d_bytes(META), None), (r3d_bytes(META, depth=blob), 300 << 20)):
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            stored = zf.getinfo("rgbd/0.depth").compress_size
        size = declared or 5000 * stored  # 5000:1
        path = tmp_path / "bomb.r3d"
        path.write_bytes(declare_size(data, "rgbd/0.depth", size))
        with pytest.raises(PkmodelError) as err:
            quiet_find(path)
        assert str(err.value) == (
            f"{path / 'rgbd/0.depth'} is refused: it declares {size} bytes from {stored} "
            "compressed (at most 268435456 bytes and 1100:1)"
        )


def test_stray_rotations_follow_the_frames_kept(tmp_path):
    """Each kept frame gets its own odometry row's rotation (frames 1 and 3 when 0 and 2 have
    no depth map), not the first rows'."""
    angles = [0.1, 0.4, 0.9, 1.6]  # radians about y, one per row
    quats = [(0.0, float(np.sin(a / 2)), 0.0, float(np.cos(a / 2))) for a in angles]
    odometry = "timestamp, frame, x, y, z, qx, qy, qz, qw\n" + "".join(
        f"{100 + 0.25 * i}, {i:06d}, 0.1, 0.2, 0.3, {', '.join(map(repr, q))}\n"
        for i, q in enumerate(quats)
    )
    folder = stray_folder(tmp_path, odometry=odometry)
    for n in (0, 2):
        (folder / f"depth/{n:06d}.png").unlink()
        (folder / f"confidence/{n:06d}.png").unlink()
    (seq,) = quiet_find(folder, [])
    assert seq.frame_numbers == [1, 3] and seq.camera_rotations.shape == (2, 3, 3)
    for rotation, n in zip(seq.camera_rotations, (1, 3), strict=True):
        np.testing.assert_allclose(rotation, quaternion_matrix(*quats[n]), atol=1e-12)


def test_stray_frames_one_without_depth_and_a_row_past_the_video(tmp_path):
    """One frame without its depth map is left out with the same warning as several; a row
    numbered past the video's last frame (rows 0, 1, 2, 4 for a video of 4 frames) has no
    picture and is left out too (it was kept, and lifting it raised IndexError)."""
    folder = stray_folder(tmp_path)
    (folder / "depth/000001.png").unlink()
    (folder / "confidence/000001.png").unlink()
    messages: list[str] = []
    (seq,) = quiet_find(folder, messages)
    assert len(seq) == 3 and seq.frame_numbers == [0, 2, 3]
    assert messages == [f"{folder}: 1 of 4 frames have no depth map in depth/ (the app writes "
                        "none where ARKit gave no depth); lifting the 3 that have one"]  # fmt: skip
    numbers = (0, 1, 2, 4)
    odometry = "timestamp, frame, x, y, z, qx, qy, qz, qw\n" + "".join(
        f"{100 + 0.25 * i}, {n:06d}, 0, 0, 0, 0, 0, 0, 1\n" for i, n in enumerate(numbers)
    )
    folder = stray_folder(tmp_path / "b", odometry=odometry)
    for kind in ("depth", "confidence"):
        (folder / f"{kind}/000003.png").rename(folder / f"{kind}/000004.png")
    messages = []
    (seq,) = quiet_find(folder, messages)
    assert len(seq) == 3 and seq.frame_numbers == [0, 1, 2] and len(messages) == 1
    np.testing.assert_allclose(seq.load_color(2).reshape(-1, 3).mean(0), COLOURS[2], atol=4)


def test_synthetic_stray_ground_truth_follows_the_frames_kept(made, tmp_path):
    """The ground truth of the frames kept, by their number: frame 1 without depth leaves
    frames 0, 2, 3, 4 and their labels (the side file was read for 4 frames and indexed
    with frame 4: IndexError)."""
    import shutil

    (ref,) = quiet_find(made["pkmodel", "lidar"])
    folder = tmp_path / "stray"
    shutil.copytree(made["stray", "lidar"] / "sequences/seq_000", folder)
    (folder / "depth/000001.png").unlink()
    (folder / "confidence/000001.png").unlink()
    (seq,) = quiet_find(folder, [])
    assert seq.frame_numbers == [0, 2, 3, 4]
    for key in ("keypoints_2d", "joints_3d", "limb_radius"):
        got, want = getattr(seq.ground_truth, key), getattr(ref.ground_truth, key)
        np.testing.assert_array_equal(got, want[[0, 2, 3, 4]])


def test_r3d_ground_truth_is_in_the_colour_frames_pixels(tmp_path):
    """pkmodel_ground_truth.json labels the JPEGs' pixels (64 x 48 here), whatever size 'w' x
    'h' K is for (128 x 96)."""
    label = {"keypoints": [10.0] * 51, "keypoints_3d": [[0.0, 0.0, 2.0]] * 17}
    doc = {"format": "pkmodel-ground-truth", "version": 1, "image_size": [64, 48],
           "joint_names": [], "frames": [None, label, None]}  # fmt: skip
    buffer = io.BytesIO(r3d_bytes(META))
    with zipfile.ZipFile(buffer, "a") as zf:
        zf.writestr("pkmodel_ground_truth.json", json.dumps(doc))
    path = tmp_path / "gt.r3d"
    path.write_bytes(buffer.getvalue())
    (seq,) = quiet_find(path)
    assert seq.ground_truth.keypoints_2d.shape == (3, 17, 3)
    assert seq.ground_truth.keypoints_2d[1, 0].tolist() == [10.0, 10.0, 10.0]


# --- make-synthetic: switching layouts, atomic clips, the CLI ---------------------------------


def test_a_run_replaces_the_other_layouts_clips(tmp_path):
    seqs = tmp_path / "sequences"
    generate(spec("stray", "exact"), tmp_path, progress=False)
    assert (seqs / "seq_000/rgb.mp4").is_file() and not (seqs / "seq_000.r3d").exists()
    generate(spec("record3d", "exact"), tmp_path, progress=False)
    assert (seqs / "seq_000.r3d").is_file() and not (seqs / "seq_000").exists()
    generate(spec("pkmodel", "exact", sequences=2), tmp_path, progress=False)
    assert sorted(p.name for p in seqs.iterdir()) == ["seq_000", "seq_001"]
    assert (seqs / "seq_000/annotations.json").is_file()
    generate(spec("stray", "exact", sequences=1), tmp_path, progress=False)
    assert sorted(p.name for p in seqs.iterdir()) == ["seq_000"]
    # the folder gets the mode any new folder gets (not mkdtemp's 0700)
    assert (seqs / "seq_000").stat().st_mode & 0o777 == seqs.stat().st_mode & 0o777
    assert sorted(p.name for p in (seqs / "seq_000").iterdir()) == [
        "camera_matrix.csv", "depth", "odometry.csv", "pkmodel_ground_truth.json", "rgb.mp4"
    ]  # fmt: skip
    generate(spec("pkmodel", "exact"), tmp_path, progress=False)
    assert sorted(p.name for p in (seqs / "seq_000").iterdir()) == [
        "annotations.json",
        "depth",
        "rgb",
    ]


@pytest.mark.parametrize("layout", ["stray", "record3d"])
def test_an_interrupted_clip_leaves_the_old_one_whole(tmp_path, monkeypatch, layout):
    from pkmodel.data.synthetic import capture_layouts

    generate(spec(layout, "exact"), tmp_path, progress=False)
    seqs = tmp_path / "sequences"
    before = {p: p.read_bytes() for p in seqs.rglob("*") if p.is_file()}
    cls = capture_layouts.StrayClipWriter if layout == "stray" else capture_layouts.R3dClipWriter
    original, calls = cls.add, []

    def fail_on_third(self, frame, info):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return original(self, frame, info)

    monkeypatch.setattr(cls, "add", fail_on_third)
    with pytest.raises(KeyboardInterrupt):
        generate(spec(layout, "exact", seed=SEED + 1), tmp_path, progress=False)
    assert len(calls) == 3
    # no temporary folder or file is left and the old clip is untouched
    assert sorted(seqs.rglob("*")) == sorted(
        {*before, *(p.parent for p in before if p.parent != seqs)}
    )
    assert {p: p.read_bytes() for p in before} == before


def test_stray_layout_needs_an_even_size(tmp_path):
    with pytest.raises(
        PkmodelError, match=r"width and height must be even; the images are 97 x 64"
    ):
        generate(spec("stray", "exact", width=97), tmp_path, progress=False)
    assert not tmp_path.joinpath("sequences").exists()
    with pytest.raises(PkmodelError, match=r"must be even; the images are 96 x 63$"):
        generate(spec("stray", "exact", height=63), tmp_path, progress=False)


def test_lift_gives_the_same_metrics_in_every_layout(tmp_path):
    """End to end through the CLI: make-synthetic --layout X, then lift --ground-truth-2d. The
    app layouts hold the pkmodel layout's depth exactly (mm PNG; float32 of the same metres),
    so every metric is equal: tolerance 0."""
    docs = {}
    for layout in ("pkmodel", "stray", "record3d"):
        data = tmp_path / f"data-{layout}"
        run_cli(["make-synthetic", "--out", data, "--num-train", 0, "--num-val", 0, "--size",
                 "128x96", "--seed", 11, "--sequences", 1, "--frames", 6, "--workers", 1,
                 "--depth-sensor", "lidar", "--layout", layout])  # fmt: skip
        out = tmp_path / f"lift-{layout}"
        run_cli(["lift", "--ground-truth-2d", "--input", data, "--out", out, "--no-pictures"])
        docs[layout] = json.loads((out / "metrics.json").read_text())
    assert (tmp_path / "data-record3d/sequences/seq_000.r3d").is_file()
    assert (tmp_path / "data-stray/sequences/seq_000/rgb.mp4").is_file()

    def numbers(doc: dict) -> dict:
        seq = doc["sequences"]["seq_000"]
        timing = ("processing_fps", "take")
        return {"overall": doc["overall"], "seq": {k: v for k, v in seq.items() if k not in timing}}

    ref = numbers(docs["pkmodel"])
    assert ref["overall"]["mpjpe_visible_mm"] > 0 and ref["seq"]["frames"] == 6
    assert numbers(docs["stray"]) == ref
    assert numbers(docs["record3d"]) == ref


def test_stray_reads_an_editors_byte_order_mark_and_checks_every_npy_frame(tmp_path):
    """odometry.csv saved by an editor that writes a UTF-8 byte order mark reads as the app's;
    the .npy depth of older app versions must be integer millimetres in every frame, not just
    the first (a float frame of metres would be read as millimetres, 1000 times too near)."""
    folder = stray_folder(tmp_path)
    odometry = folder / "odometry.csv"
    odometry.write_bytes(b"\xef\xbb\xbf" + odometry.read_bytes())
    (seq,) = quiet_find(folder)
    np.testing.assert_array_equal(seq.timestamps, [100.0, 100.25, 100.5, 100.75])

    for i in range(4):
        np.save(folder / f"depth/{i:06d}.npy", (DEPTH_MM + i).astype(np.uint16))
        (folder / f"depth/{i:06d}.png").unlink()
    (seq,) = quiet_find(folder)
    assert seq.load_depth(3)[0, 0] == np.float32(403) * np.float32(0.001)
    np.save(folder / "depth/000003.npy", (DEPTH_MM + 3).astype(np.float32) / 1000)
    (seq,) = quiet_find(folder)  # frame 0 is checked when the folder is read
    with pytest.raises(PkmodelError) as err:
        seq.load_depth(3)
    assert str(err.value) == (
        f"depth file {folder / 'depth/000003.npy'} holds float32 values in 2 dimensions; Stray "
        "Scanner's .npy depth is one channel of integer millimetres"
    )
