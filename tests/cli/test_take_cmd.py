"""`pkmodel take info / convert / plot` on every kind of take, and `pkmodel lift --take-format`
writing the PoseKit app's takes."""

from __future__ import annotations

import json
import os
import re
import zipfile

import numpy as np
import pytest
import typer.main
from typer.testing import CliRunner

from pkmodel.cli import app
from pkmodel.lift.posekit_take import load_take, posekit_playback, read_posekit_folder
from pkmodel.lift.take import read_take_binary
from tests.lift.test_pipeline import INTR, RADII, write_sequence
from tests.lift.test_posekit_take import META_TEXT, app_folder

runner = CliRunner()
CSV_HEADER = (
    "frame,timestamp,joint,x_norm,y_norm,score,camera_x,camera_y,camera_z,canonical_x,"
    "canonical_y,canonical_z,depth_confidence"
)


def take(*args) -> object:
    return runner.invoke(app, ["take", *map(str, args)])


def test_info_names_what_a_take_holds(tmp_path):
    result = take("info", app_folder(tmp_path))
    assert result.exit_code == 0, result.output
    text = result.output
    for line in (
        "frames:",
        "duration:",
        "measured fps:",
        "schema:",
        "joints with depth per frame:",
    ):
        assert line in text, text
    assert "(PoseKit app take folder)" in text and "frames:                       4" in text
    assert "duration:                     0.094 s" in text and "measured fps:" in text
    assert "COCO17+2: 19 joints" in text and "uuid:" in text and "2026-01-07 05:22:03 UTC" in text
    # 4 frames: 17 joints with depth, one frame without the pelvis
    assert "joints with depth per frame:  17.8 of 19 (min 17, max 18)" in text


def test_convert_app_to_pkmodel_to_app_is_byte_identical(tmp_path):
    folder = app_folder(tmp_path / "app")
    for i, dst in enumerate(("pk", "pk.bin", "pk.json", "pk.zip")):
        result = take("convert", folder, tmp_path / dst, "--format", "pkmodel")
        assert result.exit_code == 0, result.output
        back = tmp_path / f"back{i}"
        result = take("convert", tmp_path / dst, back, "--format", "posekit")
        assert result.exit_code == 0, result.output
        assert (back / "frames.bin").read_bytes() == (folder / "frames.bin").read_bytes(), dst
        assert (back / "meta.json").read_text() == META_TEXT, dst
    assert sorted(p.name for p in (tmp_path / "pk").iterdir()) == [
        "take.bin",
        "take.json",
        "take.zip",
    ]
    # the app's own exports out of the same take
    assert take("convert", folder, tmp_path / "x.zip", "-f", "zip").exit_code == 0
    with zipfile.ZipFile(tmp_path / "x.zip") as zf:
        assert zf.namelist() == ["meta.json", "frames.bin", "frames.json"]
    assert take("convert", folder, tmp_path / "x.bin", "-f", "posekit").exit_code == 0
    assert (tmp_path / "x.bin").read_bytes() == (folder / "frames.bin").read_bytes()
    assert take("convert", folder, tmp_path / "x.json", "-f", "posekit").exit_code == 0
    assert (
        load_take(tmp_path / "x.json").posekit.frames_bytes()
        == (folder / "frames.bin").read_bytes()
    )


def test_convert_to_csv_has_the_documented_columns(tmp_path):
    folder = app_folder(tmp_path)
    result = take("convert", folder, tmp_path / "take.csv", "--format", "csv")
    assert result.exit_code == 0, result.output
    lines = (tmp_path / "take.csv").read_text().splitlines()
    assert lines[0] == CSV_HEADER and len(lines) == 1 + 4 * 19
    rows = [line.split(",") for line in lines[1:]]
    assert all(len(r) == 13 for r in rows)
    assert [r[2] for r in rows[:19]][-2:] == ["pelvis", "neck"]
    app = read_posekit_folder(folder)
    cells = [[float(v) if v else np.nan for v in r[3:]] for r in rows]
    values = np.array(cells, dtype=np.float32).reshape(4, 19, 10)
    np.testing.assert_array_equal(values[..., 0:2], np.where(
        np.isnan(values[..., 0:2]), np.nan, app.keypoints))  # fmt: skip
    np.testing.assert_array_equal(values[..., 3:6], app.camera)
    np.testing.assert_array_equal(values[..., 9], app.depth_confidence)


def test_a_failed_convert_writes_nothing_and_says_one_sentence(tmp_path):
    folder = app_folder(tmp_path)
    data = (folder / "frames.bin").read_bytes()[: 768 * 3] + bytes(100)
    (folder / "frames.bin").write_bytes(data)
    for fmt in ("posekit", "pkmodel", "zip", "csv"):
        dst = tmp_path / f"out_{fmt}"
        result = take("convert", folder, dst, "--format", fmt)
        assert result.exit_code == 2, result.output
        lines = result.output.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: take file ")
        assert str(folder / "frames.bin") in lines[0] and "2404 bytes" in lines[0]
        assert not dst.exists() and not list(tmp_path.glob(".out_*"))
    # --allow-partial reads the whole frames, with a warning
    result = take("convert", folder, tmp_path / "ok", "-f", "posekit", "--allow-partial")
    assert result.exit_code == 0, result.output
    assert "warning: " in result.output and (tmp_path / "ok/frames.bin").stat().st_size == 3 * 768
    # an existing output is kept without --force
    before = (tmp_path / "ok/frames.bin").read_bytes()
    (tmp_path / "ok2").mkdir()
    result = take("convert", tmp_path / "ok", tmp_path / "ok2", "-f", "posekit")
    assert result.exit_code == 2 and "already exists; pass --force" in result.output
    result = take("convert", tmp_path / "ok", tmp_path / "ok2", "-f", "posekit", "--force")
    assert result.exit_code == 0 and (tmp_path / "ok2/frames.bin").read_bytes() == before
    # --force replaces a take folder, never a folder holding anything else
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs/notes.txt").write_text("mine")
    result = take("convert", tmp_path / "ok", tmp_path / "docs", "-f", "posekit", "--force")
    assert result.exit_code == 2 and "holding more than a take" in result.output
    assert (tmp_path / "docs/notes.txt").read_text() == "mine"
    for args, message in ((["-f", "mp4"], "--format must be one of"),
                          (["-f", "pkmodel", "--image-size", "1920"], "--image-size must be"),
                          (["-f", "pkmodel", "--image-size", "9" * 42 + "x5"],
                           "--image-size must be WIDTHxHEIGHT in pixels, each 1 to 100000 "
                           f"(1920x1440), got '{'9' * 37}...'"),
                          (["-f", "pkmodel", "--image-size", "100001x5"], "each 1 to 100000")):  # fmt: skip
        result = take("convert", tmp_path / "ok", tmp_path / "new", *args)
        assert result.exit_code == 2 and message in result.output
        assert not (tmp_path / "new").exists()


def test_convert_and_plot_refuse_an_output_that_is_or_holds_their_take(tmp_path):
    """`take convert tk/app tk/app/meta.json -f posekit --force` wrote the .json export over
    the take's own meta.json: the take was lost. An output that is the take, lies inside its
    folder or holds it is refused, --force or not (as data split and merge refuse), before
    anything is read or written."""
    folder = app_folder(tmp_path)
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    clashes = [
        (folder, folder / "meta.json", "posekit", "is inside the take {folder}"),
        (folder, folder, "posekit", "is the take {folder}"),
        (folder, folder, "pkmodel", "is the take {folder}"),
        (folder / "frames.bin", folder / "frames.bin", "posekit", "is inside the take {folder}"),
        (folder / "meta.json", folder, "posekit", "is the take {folder}"),
        (folder / "meta.json", tmp_path, "pkmodel", "holds the take {folder}"),
        (folder, folder / "rows.csv", "csv", "is inside the take {folder}"),
    ]
    for src, dst, fmt, how in clashes:
        for force in ([], ["--force"]):
            result = take("convert", src, dst, "-f", fmt, *force)
            assert (result.exit_code, result.output) == (
                2,
                f"error: output {dst} {how.format(folder=folder)} being converted, which it "
                "would overwrite or alter: choose another output\n",
            ), (src, dst, fmt)
    # a file take is its own: converting it onto itself is refused too
    assert take("convert", folder, tmp_path / "t.zip", "-f", "zip").exit_code == 0
    zipped = (tmp_path / "t.zip").read_bytes()
    result = take("convert", tmp_path / "t.zip", tmp_path / "t.zip", "-f", "zip", "--force")
    assert (result.exit_code, result.output) == (
        2,
        f"error: output {tmp_path / 't.zip'} is the take {tmp_path / 't.zip'} being converted, "
        "which it would overwrite or alter: choose another output\n",
    )
    # plot's --out may not be the take or lie in it (it may hold it: two pictures are added)
    for src, out in ((folder, folder), (folder, folder / "plots"), (tmp_path / "t.zip", tmp_path / "t.zip")):  # fmt: skip
        result = take("plot", src, "--out", out, "--force")
        take_path = folder if src == folder else src
        how = "is" if out == take_path else "is inside"
        assert (result.exit_code, result.output) == (
            2,
            f"error: --out {out} {how} the take {take_path} being plotted, which it would "
            "alter: choose another folder\n",
        )
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before  # nothing lost
    assert (tmp_path / "t.zip").read_bytes() == zipped
    assert sorted(p.name for p in tmp_path.iterdir()) == [folder.name, "t.zip"]


def test_convert_with_an_image_size_gives_pixels(tmp_path):
    folder = app_folder(tmp_path)
    args = ("--format", "pkmodel", "--image-size", "1920x1440")
    assert take("convert", folder, tmp_path / "px.bin", *args).exit_code == 0
    px = read_take_binary(tmp_path / "px.bin")
    app = read_posekit_folder(folder)
    np.testing.assert_allclose(px.keypoints_2d[0, 0], app.keypoints[0, 0] * [1920, 1440], rtol=1e-7)
    assert px.metadata["image_size"] == [1920, 1440]


def test_plot_writes_trajectories_and_a_contact_sheet(tmp_path):
    folder = app_folder(tmp_path)
    result = take("plot", folder, "--out", tmp_path / "plots", "--frames", 4)
    assert result.exit_code == 0, result.output
    for name in ("trajectories.png", "canonical_3d.png"):
        assert (tmp_path / "plots" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert (tmp_path / "plots" / name).stat().st_size > 10_000
    result = take("plot", folder, "--out", tmp_path / "plots")
    assert result.exit_code == 2 and "pass --force" in result.output


def test_take_helps_fit_80_columns():
    group = typer.main.get_command(app).commands["take"]
    for name in ["", *group.commands]:
        args = ["take", name, "--help"] if name else ["take", "--help"]
        result = runner.invoke(app, args, env={"COLUMNS": "80"}, terminal_width=80)
        assert result.exit_code == 0, result.output
        assert max(len(line) for line in result.output.splitlines()) <= 80, name
        assert not [line for line in result.output.splitlines() if re.search(r"\w-$", line)]


@pytest.fixture(scope="module")
def sequence(tmp_path_factory):
    root = tmp_path_factory.mktemp("seq")
    write_sequence(root / "walk", frames=6)
    return root / "walk"


def lift(sequence, out, *extra):
    args = ["lift", "--ground-truth-2d", "--input", str(sequence), "--out", str(out),
            "--no-pictures", "--set", f"lift.limb_radius_m={RADII.tolist()}", *extra]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    return json.loads((out / "metrics.json").read_text())


def test_lift_writes_the_apps_take(sequence, tmp_path):
    metrics = lift(sequence, tmp_path / "both", "--take-format", "both")
    folder = tmp_path / "both/walk"
    assert set(metrics["sequences"]["walk"]["take"]) == {
        "json",
        "bin",
        "zip",
        "posekit",
        "posekit_zip",
    }
    pk = read_take_binary(folder / "take.bin")
    app_take = read_posekit_folder(folder / "posekit_take")
    meta = app_take.meta
    assert app_take.num_frames == 6 and meta.fps == 30 and meta.frame_count == 6
    assert meta.model_identifier == "ground-truth-2d" and meta.notes.endswith("from walk")
    assert meta.min_keypoint_score == np.float32(0.3) and meta.uuid == meta.uuid.upper()
    np.testing.assert_array_equal(app_take.timestamps, pk.timestamp)
    np.testing.assert_array_equal(app_take.camera, pk.joints_camera)
    want = (pk.keypoints_2d[:, :17] / np.array([INTR.width, INTR.height])).astype(np.float32)
    np.testing.assert_array_equal(app_take.keypoints[:, :17], np.clip(want, 0, 1))
    playback, built = posekit_playback(app_take.camera, app_take.scores, 0.3)
    assert built.all() and (app_take.playback == playback).all()
    # the app's playback is the mirror of pkmodel's canonical frame: x flips, y and z agree
    canon = pk.joints_canonical
    assert np.sign(app_take.playback[:, 12, 0]).tolist() == (-np.sign(canon[:, 12, 0])).tolist()
    np.testing.assert_allclose(app_take.playback[..., 1], canon[..., 1], atol=0.05)
    with zipfile.ZipFile(folder / "posekit_take.zip") as zf:
        assert zf.read("frames.bin") == (folder / "posekit_take/frames.bin").read_bytes()
    # posekit alone: only the app's take is left
    metrics = lift(sequence, tmp_path / "app", "--take-format", "posekit")
    folder = tmp_path / "app/walk"
    assert not list(folder.glob("take.*")) and (folder / "posekit_take/meta.json").is_file()
    assert set(metrics["sequences"]["walk"]["take"]) == {"posekit", "posekit_zip"}
    assert (
        read_posekit_folder(folder / "posekit_take").frames_bytes()[8:]
        == app_take.frames_bytes()[8:]
    )
    result = take("info", folder / "posekit_take")
    assert result.exit_code == 0 and "frames:" in result.output


def test_convert_refuses_to_rename_over_a_fifo(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    result = take("convert", app_folder(tmp_path), fifo, "-f", "csv", "--force")
    assert result.exit_code == 2 and "it is not a regular file" in result.output, result.output
    assert fifo.is_fifo()


@pytest.mark.parametrize(
    "option", [("--frames", "0"), ("--frames", "-3"), ("--set", "lift.sheet_frames=-1")]
)
def test_plot_checks_frames_before_writing_anything(tmp_path, option):
    result = take("plot", app_folder(tmp_path), "-o", tmp_path / "pf", *option)
    assert result.exit_code == 2 and "lift.sheet_frames" in result.output, result.output
    assert "must be >= 1" in result.output and not (tmp_path / "pf").exists()


def test_a_failed_plot_keeps_the_earlier_pictures(tmp_path, monkeypatch):
    folder = app_folder(tmp_path)
    assert take("plot", folder, "-o", tmp_path / "pf", "--frames", 2).exit_code == 0
    before = {p.name: p.read_bytes() for p in (tmp_path / "pf").iterdir()}

    def fail(*args, **kwargs):
        raise RuntimeError("drawing failed")

    monkeypatch.setattr("pkmodel.lift.pipeline.plot_canonical_sheet", fail)
    result = take("plot", folder, "-o", tmp_path / "pf", "--force", "--frames", 3)
    assert result.exit_code != 0
    assert {p.name: p.read_bytes() for p in (tmp_path / "pf").iterdir()} == before


def with_meta(tmp_path, **values) -> object:
    folder = app_folder(tmp_path)
    meta = json.loads((folder / "meta.json").read_text())
    meta.update(values)
    (folder / "meta.json").write_text(json.dumps(meta))
    return folder


@pytest.mark.parametrize("created", [1e12, -1e11, 1e300])
def test_a_created_at_that_is_no_date_is_refused(tmp_path, created):
    folder = with_meta(tmp_path, createdAt=created)
    for args in (("info", folder), ("convert", folder, tmp_path / "o.zip", "-f", "zip")):
        result = take(*args)
        assert result.exit_code == 2, result.output
        assert "'createdAt' must be seconds since 2001-01-01" in result.output
    assert not (tmp_path / "o.zip").exists()


@pytest.mark.parametrize(("created", "date"), [(1e10, (2107, 12, 31, 23, 59, 58)),
                                               (-1e10, (1980, 1, 1, 0, 0, 0))])  # fmt: skip
def test_the_zip_dates_a_take_outside_1980_2107_at_the_nearest_end(tmp_path, created, date):
    folder = with_meta(tmp_path, createdAt=created)
    result = take("convert", folder, tmp_path / "o.zip", "-f", "zip")
    assert result.exit_code == 0, result.output
    with zipfile.ZipFile(tmp_path / "o.zip") as zf:
        assert {i.date_time for i in zf.infolist()} == {date}


@pytest.mark.parametrize(
    ("field", "value", "sentence"),
    [
        ("timestamp", np.inf, "frame 1: 'timestamp' must be a finite number, got inf"),
        ("score", -np.inf, "frame 1: joint L-Ear: 'score2D' must be a finite number or NaN"),
        ("camera", np.inf, "frame 1: joint L-Ear: 'camera3D' must be a finite number or NaN"),
    ],
)
def test_infinite_values_in_frames_bin_are_refused(tmp_path, field, value, sentence):
    from pkmodel.lift.posekit_take import FRAME_DTYPE

    folder = app_folder(tmp_path / "app")
    frames = np.fromfile(folder / "frames.bin", dtype=FRAME_DTYPE)
    if field == "timestamp":
        frames["timestamp"][1] = value
    else:
        frames["joints"][1, 3, 8 if field == "score" else 2] = value
    frames.tofile(folder / "frames.bin")
    for kind in ("pkmodel", "zip"):
        src = folder if kind == "pkmodel" else tmp_path / "app.zip"
        if kind == "zip":
            with zipfile.ZipFile(src, "w") as zf:
                zf.write(folder / "meta.json", "meta.json")
                zf.write(folder / "frames.bin", "frames.bin")
        result = take("convert", src, tmp_path / f"out_{kind}", "-f", "pkmodel")
        assert result.exit_code == 2 and sentence in result.output, result.output
        assert not (tmp_path / f"out_{kind}").exists()


@pytest.mark.parametrize("score", ["5", "-1", "nan", "inf"])
def test_min_score_must_be_in_0_1(tmp_path, score):
    result = take("convert", app_folder(tmp_path), tmp_path / "o", "-f", "posekit",
                  "--min-score", score)  # fmt: skip
    assert result.exit_code == 2 and "lift.min_score" in result.output, result.output
    assert not (tmp_path / "o").exists()


def test_an_empty_or_frameless_take_is_refused(tmp_path):
    from pkmodel.lift.take import Take, take_to_bytes

    (tmp_path / "e.bin").write_bytes(b"")
    for args in (("info", tmp_path / "e.bin"), ("convert", tmp_path / "e.bin", tmp_path / "o",
                                                 "-f", "posekit")):  # fmt: skip
        result = take(*args)
        assert result.exit_code == 2 and "is empty (0 bytes)" in result.output, result.output
    assert not (tmp_path / "o").exists()
    loaded = load_take(app_folder(tmp_path / "app")).take
    empty = Take(loaded.metadata, *(getattr(loaded, n)[:0] for n in (
        "timestamp", "index", "keypoints_2d", "scores", "joints_camera", "joints_canonical",
        "origin", "rotation")))  # fmt: skip
    (tmp_path / "z.bin").write_bytes(take_to_bytes(empty))
    result = take("info", tmp_path / "z.bin")
    assert result.exit_code == 2 and "holds no frames" in result.output, result.output


def test_messages_name_what_a_pkmodel_take_lacks(tmp_path):
    folder = app_folder(tmp_path / "app")
    assert take("convert", folder, tmp_path / "pk.json", "-f", "pkmodel").exit_code == 0
    assert take("convert", folder, tmp_path / "pk.zip", "-f", "pkmodel").exit_code == 0
    doc = json.loads((tmp_path / "pk.json").read_text())
    del doc["format"]
    (tmp_path / "nofmt.json").write_text(json.dumps(doc))
    result = take("info", tmp_path / "nofmt.json")
    assert "is not a pkmodel take (no 'format'" in result.output, result.output
    with zipfile.ZipFile(tmp_path / "pk.zip") as zf, zipfile.ZipFile(tmp_path / "nb.zip", "w") as o:
        for name in ("metadata.json", "take.json"):
            o.writestr(name, zf.read(name))
    result = take("info", tmp_path / "nb.zip")
    assert result.exit_code == 2 and "pkmodel take ZIP without its take.bin" in result.output
    binary = load_take(tmp_path / "pk.json")
    from pkmodel.lift.take import take_to_bytes

    (tmp_path / "cut.bin").write_bytes(take_to_bytes(binary.take)[:30])
    result = take("info", tmp_path / "cut.bin")
    assert result.exit_code == 2 and "is truncated: 30 bytes" in result.output, result.output


@pytest.mark.parametrize(
    ("fmt", "name"),
    [("posekit", "x.zip"), ("pkmodel", "x.csv"), ("zip", "x.bin"), ("csv", "x.json")],  # fmt: skip
)
def test_an_output_suffix_that_contradicts_the_format_is_refused(tmp_path, fmt, name):
    result = take("convert", app_folder(tmp_path / "app"), tmp_path / name, "-f", fmt)
    assert result.exit_code == 2 and f"which --format {fmt} does not write" in result.output
    assert not (tmp_path / name).exists()


def test_take_commands_check_only_the_lift_keys_they_use(tmp_path):
    """An unrelated bad [lift] value (a window of 4) does not stop take convert / plot; their own
    keys are still checked."""
    folder = app_folder(tmp_path)
    other = ("--set", "lift.window=4")
    assert take("convert", folder, tmp_path / "t.bin", "-f", "pkmodel", *other).exit_code == 0
    assert take("plot", folder, "-o", tmp_path / "pf", "--frames", 2, *other).exit_code == 0
    result = take(
        "convert", folder, tmp_path / "u.bin", "-f", "posekit", "--min-score", "5", *other
    )
    assert result.exit_code == 2 and "lift.min_score = 5.0 must be in [0, 1]" in result.output


def test_convert_names_the_file_whose_take_lacks_an_image_size(tmp_path):
    """A take without intrinsics or image_size cannot be normalised for the app: the error
    named the recording from the metadata, not the file the user gave."""
    from pkmodel.lift.take import write_take_binary
    from tests.lift.test_take import make_take

    src = tmp_path / "t.bin"
    write_take_binary(make_take(3), src)
    result = take("convert", src, tmp_path / "app", "-f", "posekit")
    assert result.exit_code == 2
    assert result.output.startswith(f"error: {src}: take ")
    assert "does not say the size of its image" in result.output and "--image-size" in result.output
    assert not (tmp_path / "app").exists()


def test_integers_too_long_for_a_float_are_one_sentence(tmp_path):
    """A 400-digit integer broke the finite-number checks (OverflowError), one of 5,000 digits
    Python's JSON reader (ValueError): both tracebacks, exit code 1."""
    for digits in (400, 5000):
        folder = app_folder(tmp_path / f"app{digits}")
        meta = folder / "meta.json"
        meta.write_text(META_TEXT.replace('"fps" : 30', '"fps" : 1' + "0" * digits))
        result = take("info", folder)
        assert result.exit_code == 2, result.output
        assert (
            result.output.strip()
            == f"error: take file {meta}: 'fps' must be a whole number, got 1{'0' * 36}..."
        )
        # the app's JSON export and pkmodel's take.json: a timestamp
        export = tmp_path / f"export{digits}.json"
        result = take("convert", app_folder(tmp_path / f"ok{digits}"), export, "-f", "posekit")
        assert result.exit_code == 0, result.output
        text = re.sub(r'"timestamp" : [0-9.]+', '"timestamp" : 1' + "0" * digits, export.read_text(), count=1)  # fmt: skip
        export.write_text(text)
        result = take("info", export)
        assert result.exit_code == 2, result.output
        assert f"frame 0: 'timestamp' must be a finite number, got 1{'0' * 36}..." in result.output
        assert len(result.output.strip().splitlines()) == 1
        pk = tmp_path / f"pk{digits}"
        result = take("convert", app_folder(tmp_path / f"again{digits}"), pk, "-f", "pkmodel")
        assert result.exit_code == 0, result.output
        doc = json.loads((pk / "take.json").read_text())
        doc["frames"][0]["timestamp"] = 10**digits if digits < 4300 else 10**4000
        (pk / "take.json").write_text(json.dumps(doc))
        result = take("info", pk / "take.json")
        assert result.exit_code == 2 and len(result.output.strip().splitlines()) == 1, result.output


def test_a_joint_of_the_json_export_without_a_field_is_refused(tmp_path):
    """The export writes every field of every joint; one left out was read as NaN."""
    export = tmp_path / "export.json"
    assert take("convert", app_folder(tmp_path), export, "-f", "posekit").exit_code == 0
    for key in ("score2D", "depthConfidence", "camera3D"):
        doc = json.loads(export.read_text())
        del doc["frames"][2]["joints"][5][key]
        name = doc["frames"][2]["joints"][5]["joint"]
        (tmp_path / "bad.json").write_text(json.dumps(doc))
        result = take("convert", tmp_path / "bad.json", tmp_path / "out", "-f", "posekit")
        assert result.exit_code == 2
        assert result.output.strip() == (
            f"error: take file {tmp_path / 'bad.json'}: frame 2: joint {name} has no '{key}'"
        )
        assert not (tmp_path / "out").exists()


def test_converting_a_pkmodel_take_names_the_file_and_the_field(tmp_path):
    pk = tmp_path / "pk"
    assert take("convert", app_folder(tmp_path), pk, "-f", "pkmodel").exit_code == 0
    original = json.loads((pk / "take.json").read_text())

    def convert(change) -> object:
        doc = json.loads(json.dumps(original))
        change(doc)
        (pk / "take.json").write_text(json.dumps(doc))
        return take("convert", pk / "take.json", tmp_path / "app.zip", "-f", "zip", "--force")

    # pkmodel's own note of which frames play back as the camera: damaged, it is left out
    result = convert(lambda d: d["metadata"]["posekit"].update(playback_is_camera=5))
    assert result.exit_code == 0, result.output
    result = convert(lambda d: d["metadata"]["posekit"]["meta"].update(fps="x"))
    assert result.exit_code == 2
    assert result.output.strip() == (
        f"error: {pk / 'take.json'}: the take's metadata 'posekit.meta': 'fps' must be a whole "
        "number, got 'x'"
    )
    result = convert(lambda d: d["metadata"]["joint_names"].__setitem__(7, "left_wrist"))
    assert result.exit_code == 2
    assert result.output.strip() == (
        f"error: {pk / 'take.json'}: the take names joint 7 'left_wrist', not 'left_elbow'; the "
        "app's takes hold the 19 joints COCO-17, pelvis, neck, in that order"
    )
