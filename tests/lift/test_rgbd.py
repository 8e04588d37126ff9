"""Plain RGB-D folders (pkmodel.lift.rgbd): every number intrinsics.json gives is checked when
the folder is read, and depth may be 16-bit PNG or float .npy in metres (docs/3d.md)."""

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from pkmodel.cli import app
from pkmodel.common.camera import Intrinsics, project
from pkmodel.common.errors import PkmodelError
from pkmodel.common.skeleton import NUM_JOINTS
from pkmodel.config import Config
from pkmodel.lift.pipeline import Joints2D, lift_sequence
from pkmodel.lift.rgbd import find_sequences, read_plain_folder

from .test_canonical import standing_body

INTR = {"fx": 60.0, "fy": 60.0, "cx": 31.5, "cy": 23.5}


def plain_folder(folder, depth_mm, meta=None, npy=False, flat=True, frames=3):
    """A plain folder of ``frames`` colour + depth pairs (64 x 48): depth as 16-bit PNG in
    millimetres, or as float32 .npy in metres holding the same values."""
    import cv2

    folder.mkdir(parents=True)
    if not flat:
        (folder / "rgb").mkdir()
        (folder / "depth").mkdir()
    for f in range(frames):
        color = folder / (f"{f}_color.png" if flat else f"rgb/{f}.png")
        depth = folder / (f"{f}_depth" if flat else f"depth/{f}")
        cv2.imwrite(str(color), np.full((48, 64, 3), 90, np.uint8))
        mm = (depth_mm + 10 * f).astype(np.uint16)
        if npy:
            np.save(depth.with_suffix(".npy"), mm.astype(np.float32) * np.float32(0.001))
        else:
            cv2.imwrite(str(depth.with_suffix(".png")), mm)
    doc = {**INTR, "depth_scale_per_meter": 1000} if meta is None else meta
    text = json.dumps(doc)  # NaN and Infinity stay in: the file is what a user wrote
    (folder / "intrinsics.json").write_text(text)
    return folder


def body_depth_mm() -> tuple[np.ndarray, np.ndarray]:
    """A depth map with a 'body' at 2.2 m before a wall at 3.5 m, and the body's 2D joints."""
    intr = Intrinsics(**INTR, width=64, height=48)
    body = standing_body() * 0.35 + np.array([0.0, 0.0, 1.5])  # a small body, all in view
    uv = project(body, intr)
    depth = np.full((48, 64), 3500, np.uint16)
    lo, hi = np.floor(uv.min(0)).astype(int) - 2, np.ceil(uv.max(0)).astype(int) + 2
    depth[lo[1] : hi[1], lo[0] : hi[0]] = 2200
    return depth, uv


@pytest.mark.parametrize("flat", [True, False])
def test_float_npy_depth_in_metres_lifts_like_16_bit_png(tmp_path, flat):
    depth, uv = body_depth_mm()
    png = read_plain_folder(plain_folder(tmp_path / "png", depth, flat=flat))
    meta = dict(INTR)  # float depth is in metres: no depth scale needed
    npy = read_plain_folder(plain_folder(tmp_path / "npy", depth, meta, npy=True, flat=flat))
    assert len(npy) == 3 and [p.suffix for p in npy.depth_files] == [".npy"] * 3
    assert npy.depth_unit_m == 1.0 and png.depth_unit_m == 0.001
    np.testing.assert_array_equal(npy.load_depth(2), png.load_depth(2))
    joints = Joints2D(np.repeat(uv[None], 3, 0), np.ones((3, NUM_JOINTS)), "ground-truth-2d")
    lift = Config().lift
    a, b = lift_sequence(png, joints, lift), lift_sequence(npy, joints, lift)
    assert np.isfinite(a.joints).all()
    np.testing.assert_array_equal(a.joints, b.joints)
    np.testing.assert_array_equal(a.canonical, b.canonical)


def test_npy_depth_rules(tmp_path):
    depth, _ = body_depth_mm()
    # a depth scale beside float (metre) depth would be ignored: refused instead
    folder = plain_folder(
        tmp_path / "scaled", depth, {**INTR, "depth_scale_per_meter": 1000}, npy=True
    )
    with pytest.raises(
        PkmodelError,
        match=r"scaled/intrinsics.json: 'depth_scale_per_meter' is 1000 but the depth files are float .npy, which hold metres",
    ):
        read_plain_folder(folder)
    # ... while a scale of 1 says the same as the floats: read
    folder = plain_folder(tmp_path / "one", depth, {**INTR, "depth_scale_per_meter": 1}, npy=True)
    assert read_plain_folder(folder).depth_unit_m == 1.0
    # integer .npy is stored units, like a 16-bit PNG
    folder = plain_folder(tmp_path / "int", depth)
    for f in range(3):
        np.save(folder / f"{f}_depth.npy", (depth + 10 * f).astype(np.uint16))
        (folder / f"{f}_depth.png").unlink()
    seq = read_plain_folder(folder)
    assert seq.depth_unit_m == 0.001 and seq.load_depth(0)[0, 0] == pytest.approx(3.5)
    # both kinds in one folder: no single unit fits them
    np.save(folder / "1_depth.npy", depth.astype(np.float32) / 1000)
    with pytest.raises(
        PkmodelError,
        match=r"int: the depth files mix float .npy \(1_depth.npy\) with 16-bit depth \(0_depth.npy\)",
    ):
        read_plain_folder(folder)
    # the same frame's depth twice
    np.save(folder / "1_depth.npy", depth)
    import cv2

    cv2.imwrite(str(folder / "1_depth.png"), depth)
    with pytest.raises(
        PkmodelError, match=r"int: frame '1' has two depth files, 1_depth.npy and 1_depth.png"
    ):
        read_plain_folder(folder)
    (folder / "1_depth.png").unlink()
    for bad, message in [
        (np.zeros((48, 64), np.uint8), "is 8-bit; depth must be 16-bit or float"),
        (np.zeros((48, 64), np.int8), "is 8-bit; depth must be 16-bit or float"),
        (np.zeros((48, 64, 2), np.float32), "must have one channel, it has shape"),
        (np.zeros((48, 64), bool), "holds bool values; depth must be 16-bit or float"),
    ]:
        np.save(folder / "1_depth.npy", bad)
        with pytest.raises(PkmodelError, match=rf"depth file .*1_depth.npy {message}"):
            read_plain_folder(folder)
    (folder / "1_depth.npy").write_bytes(b"not numpy")
    with pytest.raises(
        PkmodelError, match=r"depth file .*1_depth.npy cannot be read as a NumPy array"
    ):
        read_plain_folder(folder)
    np.savez(folder / "1_depth.npz", depth=depth)  # an archive under an .npy name
    (folder / "1_depth.npz").rename(folder / "1_depth.npy")
    with pytest.raises(
        PkmodelError, match=r"depth file .*1_depth.npy is not a single NumPy array \(an .npz"
    ):
        read_plain_folder(folder)
    np.save(folder / "1_depth.npy", np.zeros((0, 0), np.uint16))
    with pytest.raises(PkmodelError, match=r"depth file .*1_depth.npy holds an empty array"):
        read_plain_folder(folder)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"depth_scale_per_meter": float("nan")}, "'depth_scale_per_meter' must be a number of depth units per metre from 0.001 to 1e+09, got nan"),
        ({"depth_scale_per_meter": float("inf")}, "'depth_scale_per_meter' must be a number of depth units per metre from 0.001 to 1e+09, got inf"),
        ({"depth_scale_per_meter": -5}, "'depth_scale_per_meter' must be a number of depth units per metre from 0.001 to 1e+09, got -5"),
        ({"depth_scale_per_meter": "1000"}, "'depth_scale_per_meter' must be a number of depth units per metre from 0.001 to 1e+09, got '1000'"),
        ({"depth_scale_per_meter": None}, "needs 'depth_scale_per_meter' (stored depth units per metre"),
        ({"depth_scale_per_meter": None, "depth_scale": float("nan")}, "'depth_scale' must be a number of depth units per metre from 0.001 to 1e+09, got nan"),
        ({"fx": float("nan")}, "'fx' must be a focal length of at least 1 pixel, got nan"),
        ({"fy": 0}, "'fy' must be a focal length of at least 1 pixel, got 0"),
        ({"fx": True}, "'fx' must be a focal length of at least 1 pixel, got True"),
        ({"cx": float("inf")}, "'cx' must be a finite number, got inf"),
        ({"cy": "23.5"}, "'cy' must be a finite number, got '23.5'"),
        ({"cx": -500}, "'cx' must lie inside the 64 x 48 image the intrinsics are for (0 to 64), got -500"),
        ({"cx": 64.0}, "'cx' must lie inside the 64 x 48 image the intrinsics are for (0 to 64), got 64.0"),
        ({"cy": 1e308}, "'cy' must lie inside the 64 x 48 image the intrinsics are for (0 to 48), got 1e+308"),
        ({"width": 128, "height": 96, "cx": 130.0}, "'cx' must lie inside the 128 x 96 image the intrinsics are for (0 to 128), got 130.0"),
        ({"width": "x"}, "'width' must be a whole number of pixels above 0, got 'x'"),
        ({"width": 63.5}, "'width' must be a whole number of pixels above 0, got 63.5"),
        ({"height": 0}, "'height' must be a whole number of pixels above 0, got 0"),
        ({"height": float("nan")}, "'height' must be a whole number of pixels above 0, got nan"),
        ({"fps": float("nan")}, "'fps' must be a positive number, got nan"),
        ({"fps": 0}, "'fps' must be a positive number, got 0"),
        ({"fps": "x"}, "'fps' must be a positive number, got 'x'"),
        # finite, but no camera: X = (u - cx) / fx * Z would overflow a take's float32
        ({"fx": 1e-300}, "'fx' must be a focal length of at least 1 pixel, got 1e-300"),
        ({"fy": 0.5}, "'fy' must be a focal length of at least 1 pixel, got 0.5"),
        ({"depth_scale_per_meter": 1e-320}, "'depth_scale_per_meter' must be a number of depth units per metre from 0.001 to 1e+09, got 1e-320"),
        ({"depth_scale_per_meter": 1e10}, "'depth_scale_per_meter' must be a number of depth units per metre from 0.001 to 1e+09, got 10000000000.0"),
    ],
)  # fmt: skip
def test_every_number_in_intrinsics_json_is_checked_when_the_folder_is_read(
    tmp_path, change, message
):
    depth, _ = body_depth_mm()
    meta = {**INTR, "depth_scale_per_meter": 1000, **change}
    meta = {k: v for k, v in meta.items() if v is not None}
    folder = plain_folder(tmp_path / "rec", depth, meta)
    with pytest.raises(PkmodelError) as caught:
        read_plain_folder(folder)
    text = str(caught.value)
    assert text.startswith(f"{folder / 'intrinsics.json'}") and message in text, text
    assert "\n" not in text


def test_nan_depth_scale_stops_the_command_before_anything_is_computed(tmp_path):
    """The folder is read before the network loads (a missing checkpoint is not even looked
    at) and before any frame is lifted: the run never gets to a take it cannot write."""
    depth, _ = body_depth_mm()
    folder = plain_folder(tmp_path / "rec", depth, {**INTR, "depth_scale_per_meter": float("nan")})
    out = tmp_path / "out"
    args = ["lift", "-w", str(tmp_path / "missing.pt"), "-i", str(folder), "-o", str(out)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, result.output
    assert result.output.strip() == (
        f"error: {folder / 'intrinsics.json'}: 'depth_scale_per_meter' must be a number of "
        "depth units per metre from 0.001 to 1e+09, got nan"
    )
    assert not (out / "rec").exists()


def test_a_keyed_intrinsics_entry_names_its_missing_field(tmp_path):
    depth, _ = body_depth_mm()
    entry = {"fy": 60.0, "cx": 31.5, "cy": 23.5}
    meta = {"depth_scale_per_meter": 1000, "cam": entry, "other": INTR}
    folder = plain_folder(tmp_path / "rec", depth, meta)
    path = folder / "intrinsics.json"
    with pytest.raises(PkmodelError) as caught:
        read_plain_folder(folder, "cam")
    assert str(caught.value) == f"{path}: intrinsics entry 'cam' has no 'fx'"
    with pytest.raises(PkmodelError, match=r"holds 2 intrinsics sets \(cam, other\); pick one"):
        read_plain_folder(folder)
    assert read_plain_folder(folder, "other").intrinsics == Intrinsics(**INTR, width=64, height=48)
    path.write_text(json.dumps({"depth_scale_per_meter": 1000, "cam": entry}))
    with pytest.raises(PkmodelError) as caught:
        read_plain_folder(folder)  # the only set: chosen, and its gap named
    assert str(caught.value) == f"{path}: intrinsics entry 'cam' has no 'fx'"
    path.write_text(json.dumps({"depth_scale_per_meter": 1000, "cam": {**INTR, "fx": -1}}))
    with pytest.raises(PkmodelError) as caught:
        read_plain_folder(folder, "cam")
    assert (
        str(caught.value)
        == f"{path}: intrinsics entry 'cam': 'fx' must be a focal length of at least 1 pixel, got -1"
    )
    path.write_text(json.dumps({"depth_scale_per_meter": 1000, "cam": 7}))
    with pytest.raises(PkmodelError) as caught:
        read_plain_folder(folder, "cam")
    assert (
        str(caught.value)
        == f"{path}: intrinsics entry 'cam' must be an object with fx, fy, cx and cy"
    )
    path.write_text(json.dumps({"depth_scale_per_meter": 1000, "fx": 60.0, "fy": 60.0, "cx": 31.5}))
    with pytest.raises(PkmodelError) as caught:
        read_plain_folder(folder)
    assert str(caught.value) == f"{path} has no 'cy'"


@pytest.mark.parametrize("odd", [2, 0])
def test_a_depth_map_of_another_size_than_frame_0s_is_one_sentence(tmp_path, odd):
    """Frames are sampled a chunk at a time as one array: a map of another size is named (its
    size and frame 0's) as it loads, not a NumPy error from stacking the chunk."""
    import cv2

    depth, uv = body_depth_mm()
    folder = plain_folder(tmp_path / "rec", depth)
    path = folder / f"{odd}_depth.png"
    cv2.imwrite(str(path), cv2.resize(depth, (32, 24), interpolation=cv2.INTER_NEAREST))
    seq = read_plain_folder(folder)
    joints = Joints2D(np.repeat(uv[None], 3, 0), np.ones((3, NUM_JOINTS)), "ground-truth-2d")
    with pytest.raises(PkmodelError) as caught:
        lift_sequence(seq, joints, Config().lift)
    named, size, first = (path, "32 x 24", "64 x 48") if odd else (folder / "1_depth.png", "64 x 48", "32 x 24")  # fmt: skip
    assert str(caught.value) == (
        f"depth image {named} is {size} but frame 0's depth map (0_depth.png) is {first}; "
        "every depth and confidence map of a recording has one size"
    )
    with pytest.raises(PkmodelError, match="but frame 0's depth map"):
        read_plain_folder(folder).load_depth(1 if odd == 0 else 2)  # frame 0 read first


@pytest.fixture(scope="module")
def sequence(tmp_path_factory):
    """A make-synthetic sequence (pkmodel layout, 4 frames): its annotations.json to spoil."""
    from pkmodel.config import SyntheticConfig
    from pkmodel.data.synthetic.generate import generate

    root = tmp_path_factory.mktemp("synthetic")
    spec = SyntheticConfig(num_train=0, num_val=0, width=64, height=48, seed=5, sequences=1,
                           frames=4, workers=1)  # fmt: skip
    generate(spec, root, progress=False)
    return root / "sequences" / "seq_000"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d["images"][0].update(width=-5), "images[0]: 'width' must be a whole number of pixels above 0, got -5"),
        (lambda d: d["images"][2].update(height="48"), "images[2]: 'height' must be a whole number of pixels above 0, got '48'"),
        (lambda d: d["images"][1].update(timestamp=None), "images[1]: 'timestamp' must be a finite number, got None"),
        (lambda d: d["images"][3].pop("timestamp"), "images[3] has no 'timestamp'"),
        (lambda d: d["images"][1].update(id="abc"), "images[1]: 'id' must be a whole number, got 'abc'"),
        (lambda d: d["images"][2].update(depth_file=3), "images[2]: 'depth_file' must be a file name, got 3"),
        (lambda d: d["images"][2]["intrinsics"].update(fx=0), "images[2].intrinsics: 'fx' must be a focal length of at least 1 pixel, got 0"),
        (lambda d: d["images"][2]["intrinsics"].update(fx=99.0), "images[2]: 'intrinsics' differ from those of images[0], the first frame"),
        (lambda d: d["annotations"][2].update(image_id="abc"), "annotations[2]: 'image_id' must be a whole number, got 'abc'"),
        (lambda d: d["annotations"][2].update(area=None), "annotations[2]: 'area' must be a finite number, got None"),
        (lambda d: d["annotations"][1].update(keypoints=d["annotations"][1]["keypoints"][:48]),
         "annotations[1]: 'keypoints' must be a list of 51 finite numbers within +-1e+06, got 48"),
        (lambda d: d["annotations"][1]["keypoints_3d"][4].__setitem__(1, "x"),
         "annotations[1]: 'keypoints_3d' must be a list of 51 finite numbers within +-1e+06; value 13 is 'x'"),
        (lambda d: d["annotations"][3].update(limb_radius_m=7), "annotations[3]: 'limb_radius_m' must be a list of 17 finite numbers within +-1e+06, got 7"),
        (lambda d: d.update(images={}), "'images' must be a non-empty list, got an object"),
        (lambda d: d["annotations"].__setitem__(0, []), "annotations[0] must be an object, got a list of 0 values"),
        # finite numbers that no picture or scene has, and a take's float32 cannot hold
        (lambda d: d["annotations"][3]["keypoints"].__setitem__(0, 1e39),
         "annotations[3]: 'keypoints' must be a list of 51 finite numbers within +-1e+06; value 0 is 1e+39"),
        (lambda d: d["annotations"][1]["keypoints_3d"][0].__setitem__(2, -1e300),
         "annotations[1]: 'keypoints_3d' must be a list of 51 finite numbers within +-1e+06; value 2 is -1e+300"),
        (lambda d: d["annotations"][2].update(limb_radius_m=[1e300] * 17),
         "annotations[2]: 'limb_radius_m' must be a list of 17 finite numbers within +-1e+06; value 0 is 1e+300"),
        (lambda d: d["annotations"][2].update(limb_radius_m=[-0.05] * 17),
         "annotations[2]: 'limb_radius_m' holds a negative radius (-0.05 m)"),
        (lambda d: [im["intrinsics"].update(fx=1e-300) for im in d["images"]],
         "images[0].intrinsics: 'fx' must be a focal length of at least 1 pixel, got 1e-300"),
        # one sequence, one camera: what the first frame says is what every frame says
        (lambda d: d["images"][3].update(depth_unit_m=5), "images[3]: 'depth_unit_m' is 5 but 0.001 in images[0], the first frame; one sequence has one depth unit"),
        (lambda d: d["images"][2].update(width=500), "images[2] is 500 x 48 but images[0], the first frame, is 64 x 48; one sequence has one image size"),
        (lambda d: d["images"][3].update(id=d["images"][1]["id"]), "images[3]: 'id' 2 is another image's id too"),
    ],
)  # fmt: skip
def test_a_bad_value_in_annotations_json_names_its_key_and_index(
    sequence, tmp_path, change, message
):
    import shutil

    folder = tmp_path / "seq"
    shutil.copytree(sequence, folder)
    path = folder / "annotations.json"
    doc = json.loads(path.read_text())
    change(doc)
    path.write_text(json.dumps(doc))
    with pytest.raises(PkmodelError) as caught:
        find_sequences(folder)
    assert str(caught.value).startswith(f"{path}: {message}"), str(caught.value)
    assert "\n" not in str(caught.value)


def test_frame_numbers_are_not_timestamps_but_decimal_seconds_are(tmp_path):
    """Zero-padded frame numbers (000000.png) take the JSON's fps; TUM's decimal seconds
    (1305031102.175304.png) are the timestamps themselves."""
    depth, _ = body_depth_mm()
    meta = {**INTR, "depth_scale_per_meter": 1000, "fps": 25}
    folder = plain_folder(tmp_path / "numbers", depth, meta, flat=False)
    for f in range(3):  # 000000.png ..., as many recorders name frames
        (folder / f"rgb/{f}.png").rename(folder / f"rgb/{f:06d}.png")
        (folder / f"depth/{f}.png").rename(folder / f"depth/{f:06d}.png")
    np.testing.assert_allclose(read_plain_folder(folder).timestamps, [0.0, 0.04, 0.08])

    folder = plain_folder(tmp_path / "tum", depth, meta, flat=False)
    stamps = ["1305031102.175304", "1305031102.211214", "1305031102.243211"]
    for f, stamp in enumerate(stamps):
        (folder / f"rgb/{f}.png").rename(folder / f"rgb/{stamp}.png")
    np.testing.assert_allclose(read_plain_folder(folder).timestamps, [float(s) for s in stamps])


@pytest.mark.parametrize("flat", [True, False])
def test_frames_follow_the_numbers_in_their_names_not_the_text(tmp_path, flat):
    """Frames numbered without leading zeros (0 ... 11) were read 0, 1, 10, 11, 2, ...: as text;
    decimal seconds of another number of digits (9.9 s beside 10.0 s) came last, and their
    timestamps, no longer increasing, fell back to frame numbers. Names sort by their numbers'
    values now."""
    depth, _ = body_depth_mm()
    meta = {**INTR, "depth_scale_per_meter": 1000, "fps": 10}
    folder = plain_folder(tmp_path / "numbers", depth, meta, flat=flat, frames=12)
    seq = read_plain_folder(folder)
    assert [p.name for p in seq.color_files] == [
        f"{f}_color.png" if flat else f"{f}.png" for f in range(12)
    ]
    # frame f's depth is 10 f mm further: the pairs follow the same order
    assert [round(float(np.median(seq.load_depth(i)[depth > 0])) * 1000) for i in (2, 10)] == [
        round(float(np.median(depth[depth > 0]))) + 20,
        round(float(np.median(depth[depth > 0]))) + 100,
    ]
    np.testing.assert_allclose(seq.timestamps, np.arange(12) / 10)

    folder = plain_folder(tmp_path / "seconds", depth, meta, flat=flat)
    stamps = ["9.900000", "10.000000", "10.100000"]
    for f, stamp in enumerate(stamps):
        if flat:
            (folder / f"{f}_color.png").rename(folder / f"{stamp}_color.png")
            (folder / f"{f}_depth.png").rename(folder / f"{stamp}_depth.png")
        else:
            (folder / f"rgb/{f}.png").rename(folder / f"rgb/{stamp}.png")
            (folder / f"depth/{f}.png").rename(folder / f"depth/{stamp}.png")
    seq = read_plain_folder(folder)
    np.testing.assert_allclose(seq.timestamps, [9.9, 10.0, 10.1])
    assert [round(float(np.median(seq.load_depth(i)[depth > 0])) * 1000) for i in (0, 2)] == [
        round(float(np.median(depth[depth > 0]))),
        round(float(np.median(depth[depth > 0]))) + 20,
    ]


def test_frame_order_compares_numbers_by_value():
    from pkmodel.lift.rgbd import frame_order

    names = ["b10.png", "a2.png", "b9.png", "a10.png", "1305031102.211214.png",
             "1305031102.2.png", "b09.png"]  # fmt: skip
    assert sorted(names, key=frame_order) == [
        "1305031102.2.png", "1305031102.211214.png", "a2.png", "a10.png", "b09.png", "b9.png",
        "b10.png",
    ]  # fmt: skip


def test_a_plain_folders_confidence_maps_hold_the_three_levels(tmp_path):
    import cv2

    depth, _ = body_depth_mm()
    folder = plain_folder(tmp_path / "rec", depth)
    for f in range(3):
        cv2.imwrite(str(folder / f"{f}_confidence.png"), np.full((48, 64), 2, np.uint8))
    seq = read_plain_folder(folder)
    assert seq.load_confidence(1).max() == 2
    for bad, message in [
        (np.full((48, 64), 2, np.uint16), "must be one channel of 8-bit confidence levels"),
        (np.full((48, 64), 200, np.uint8), "holds the value 200; confidence levels are 0 (low), 1 and 2 (high)"),
        (np.full((48, 64, 3), 2, np.uint8), "must be one channel, it has shape (48, 64, 3)"),
    ]:  # fmt: skip
        cv2.imwrite(str(folder / "1_confidence.png"), bad)
        with pytest.raises(PkmodelError) as caught:
            seq.load_confidence(1)
        assert str(caught.value) == f"confidence image {folder / '1_confidence.png'} {message}"


def test_annotations_json_in_any_order_follows_the_largest_person(sequence, tmp_path):
    """COCO lists images in any order: the frames are ordered by 'timestamp', each with its
    own files and labels. A frame showing two people follows the larger ('area', docs/3d.md),
    whichever is listed last; a radius key that is null counts as absent."""
    import shutil

    folder = tmp_path / "seq"
    shutil.copytree(sequence, folder)
    (ref,) = find_sequences(folder)
    path = folder / "annotations.json"
    doc = json.loads(path.read_text())
    doc["images"].reverse()
    big = next(a for a in doc["annotations"] if a["image_id"] == 3)
    doc["annotations"].append({**big, "id": 99, "area": big["area"] / 2, "keypoints": [1.0] * 51})
    next(a for a in doc["annotations"] if a["image_id"] == 2)["limb_radius_m"] = None
    path.write_text(json.dumps(doc))
    (seq,) = find_sequences(folder)
    np.testing.assert_array_equal(seq.timestamps, [0.0, 0.033333, 0.066667, 0.1])
    assert seq.color_files == ref.color_files and seq.depth_files == ref.depth_files
    gt, want = seq.ground_truth, ref.ground_truth
    np.testing.assert_array_equal(gt.keypoints_2d, want.keypoints_2d)  # frame 2: the larger
    np.testing.assert_array_equal(gt.joints_3d, want.joints_3d)
    assert np.isnan(gt.limb_radius[1]).all()
    np.testing.assert_array_equal(gt.limb_radius[[0, 2, 3]], want.limb_radius[[0, 2, 3]])


def test_a_plain_folders_files_must_pair_up(tmp_path):
    """color/ and depth/ (and confidence/) hold one file per frame: counts that differ are one
    sentence (they were paired short and failed when a frame was lifted); *_confidence.png for
    some frames only is not used (confidence for every frame or none)."""
    import cv2

    depth, _ = body_depth_mm()
    folder = plain_folder(tmp_path / "sub", depth, flat=False)
    (folder / "depth/2.png").rename(tmp_path / "2.png")
    with pytest.raises(PkmodelError) as caught:
        read_plain_folder(folder)
    assert str(caught.value) == f"{folder}: 3 colour images but 2 depth images"
    (tmp_path / "2.png").rename(folder / "depth/2.png")
    (folder / "confidence").mkdir()
    for f in range(2):
        cv2.imwrite(str(folder / f"confidence/{f}.png"), np.full((48, 64), 2, np.uint8))
    with pytest.raises(PkmodelError) as caught:
        read_plain_folder(folder)
    assert str(caught.value) == f"{folder}: 2 confidence images for 3 frames"
    flat = plain_folder(tmp_path / "flat", depth)
    for f in range(2):
        cv2.imwrite(str(flat / f"{f}_confidence.png"), np.full((48, 64), 2, np.uint8))
    seq = read_plain_folder(flat)
    assert len(seq) == 3 and seq.confidence_files is None


def test_a_keyed_entry_is_for_the_size_given_beside_it(tmp_path):
    """A top-level width x height is the size of the named intrinsics entry: 128 x 96 scales
    to the 64 x 48 images (pixel centres kept: c' = (c + 0.5) / 2 - 0.5); 128 x 94 is another
    aspect ratio (2 % off; up to 1 % is taken as rounding), refused."""
    depth, _ = body_depth_mm()
    cam = {"fx": 120.0, "fy": 124.0, "cx": 63.5, "cy": 47.5}
    meta = {"depth_scale_per_meter": 1000, "width": 128, "height": 96, "cam": cam}
    folder = plain_folder(tmp_path / "rec", depth, meta)
    assert read_plain_folder(folder).intrinsics == Intrinsics(60.0, 62.0, 31.5, 23.5, 64, 48)
    (folder / "intrinsics.json").write_text(json.dumps({**meta, "height": 94}))
    with pytest.raises(PkmodelError) as caught:
        read_plain_folder(folder)
    assert str(caught.value) == (
        f"{folder / 'intrinsics.json'}: intrinsics entry 'cam': the intrinsics are for 128 x 94 "
        "pixels but 0_color.png is 64 x 48, another aspect ratio (a cropped image needs its own "
        "intrinsics)"
    )
