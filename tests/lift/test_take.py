import contextlib
import json
import struct
import threading
import zipfile

import numpy as np
import pytest

from pkmodel.common.errors import PkmodelError
from pkmodel.common.skeleton import EXTENDED_JOINT_NAMES
from pkmodel.lift.take import (
    BINARY_MAGIC,
    TakeRecorder,
    extract_take_zip,
    read_take_binary,
    read_take_json,
    read_take_zip,
    record_dtype,
    take_from_json,
    take_to_bytes,
    take_to_json,
    write_take,
)

J = len(EXTENDED_JOINT_NAMES)


def make_take(frames: int = 12, seed: int = 0):
    rng = np.random.default_rng(seed)
    rec = TakeRecorder(EXTENDED_JOINT_NAMES, {"units": {"joints_camera": "m"}, "model": "test"})
    for i in range(frames):
        cam = rng.normal(0, 1, (J, 3))
        cam[i % J] = np.nan  # a missing joint in every frame
        rec.append(
            timestamp=i / 30 + rng.uniform(0, 1e-3),
            keypoints_2d=rng.uniform(0, 256, (J, 2)),
            scores=rng.uniform(0, 1, J),
            joints_camera=cam,
            joints_canonical=cam - 1,
            origin=rng.normal(0, 1, 3),
            rotation=np.eye(3) if i else None,  # first frame: no canonical frame
            index=i + 100,
        )
    return rec.take()


def assert_same(a, b, bit_exact: bool):
    assert a.metadata == b.metadata
    if bit_exact:
        assert a.records().tobytes() == b.records().tobytes()
    for name in record_dtype(J).names:
        x, y = getattr(a, name), getattr(b, name)
        assert x.dtype == y.dtype and x.shape == y.shape
        np.testing.assert_array_equal(x, y)  # NaN == NaN here


def test_json_with_missing_joints_is_strict_json_with_nulls(tmp_path):
    take = make_take()
    paths = write_take(take, tmp_path)
    text = paths["json"].read_text()

    def refuse(name):
        raise AssertionError(f"non-standard JSON constant {name}")

    doc = json.loads(text, parse_constant=refuse)
    frame = doc["frames"][0]
    assert frame["joints_camera"][0] == [None, None, None]
    assert frame["rotation"] == [[None] * 3] * 3
    assert doc["metadata"]["joint_names"] == list(EXTENDED_JOINT_NAMES)
    assert doc["metadata"]["fps"] == pytest.approx(30, rel=0.05)
    assert_same(read_take_json(paths["json"]), take, bit_exact=False)
    # float32 values are written shortest-exact: 0.1f is "0.1", not 0.10000000149011612
    rec = TakeRecorder(["a"] * J)
    rec.append(0.0, np.full((J, 2), 0.1), np.ones(J), np.zeros((J, 3)))
    write_take(rec.take(), tmp_path / "small")
    assert "0.10000000149" not in (tmp_path / "small/take.json").read_text()


def test_binary_and_zip_round_trip_bit_exactly(tmp_path):
    take = make_take()
    paths = write_take(take, tmp_path)
    data = paths["bin"].read_bytes()
    assert data == take_to_bytes(read_take_binary(paths["bin"]))
    assert_same(read_take_binary(paths["bin"]), take, bit_exact=True)
    assert_same(read_take_zip(paths["zip"]), take, bit_exact=True)
    # the header as documented: magic, version, joints, frames, record size, header size
    magic, version, joints, frames, rec_size, header_size = struct.unpack_from("<8sHHIII", data)
    assert (magic, version, joints, frames) == (BINARY_MAGIC, 1, J, 12)
    assert rec_size == 8 + 4 + 4 * (J * 9 + 12) and header_size % 8 == 0
    offsets = {name: f[1] for name, f in record_dtype(J).fields.items()}
    assert offsets == {"timestamp": 0, "index": 8, "keypoints_2d": 12, "scores": 12 + 8 * J,
                       "joints_camera": 12 + 12 * J, "joints_canonical": 12 + 24 * J,
                       "origin": 12 + 36 * J, "rotation": 24 + 36 * J}  # docs/3d.md  # fmt: skip
    assert rec_size == 60 + 36 * J == 744
    assert len(data) == header_size + frames * rec_size
    ts = struct.unpack_from("<d", data, header_size + rec_size)[0]
    assert ts == take.timestamp[1]
    # same take, same bytes (fixed ZIP timestamps)
    write_take(take, tmp_path / "again")
    assert (tmp_path / "again/take.zip").read_bytes() == paths["zip"].read_bytes()
    with zipfile.ZipFile(paths["zip"]) as zf:
        assert zf.namelist() == ["metadata.json", "take.bin", "take.json"]
        assert zf.read("take.bin") == data


def test_zip_with_parent_or_absolute_entries_is_rejected(tmp_path):
    take = make_take(3)
    good = write_take(take, tmp_path)["zip"]
    for evil_name in ("../evil.txt", "sub/../../evil.txt", "/tmp/evil_abs.txt", "..\\evil.txt"):
        evil = tmp_path / "evil.zip"
        with zipfile.ZipFile(evil, "w") as zf:
            for info in zipfile.ZipFile(good).infolist():
                zf.writestr(info.filename, zipfile.ZipFile(good).read(info))
            info = zipfile.ZipInfo("x")
            info.filename = evil_name  # ZipInfo() would sanitise it; attackers don't
            zf.writestr(info, b"pwned")
        target = tmp_path / "out"
        with pytest.raises(PkmodelError, match="refused"):
            read_take_zip(evil)
        with pytest.raises(PkmodelError, match="refused"):
            extract_take_zip(evil, target)
        assert not (tmp_path / "evil.txt").exists() and not target.exists()
    written = extract_take_zip(good, tmp_path / "ok")
    assert sorted(p.name for p in written) == ["metadata.json", "take.bin", "take.json"]
    assert_same(read_take_binary(tmp_path / "ok/take.bin"), take, bit_exact=True)


def test_corrupt_files_are_clear_errors(tmp_path):
    paths = write_take(make_take(3), tmp_path)
    data = paths["bin"].read_bytes()
    (tmp_path / "cut.bin").write_bytes(data[:-5])
    with pytest.raises(PkmodelError, match="cut.bin is truncated or corrupt"):
        read_take_binary(tmp_path / "cut.bin")
    (tmp_path / "magic.bin").write_bytes(b"XX" + data[2:])
    with pytest.raises(PkmodelError, match="bad magic"):
        read_take_binary(tmp_path / "magic.bin")
    (tmp_path / "notzip.zip").write_bytes(b"hello")
    with pytest.raises(PkmodelError, match="not a readable ZIP"):
        read_take_zip(tmp_path / "notzip.zip")
    (tmp_path / "x.json").write_text('{"format": "other"}')
    with pytest.raises(PkmodelError, match="is not a pkmodel take"):
        read_take_json(tmp_path / "x.json")


def test_recorder_checks_copies_and_is_thread_safe():
    rec = TakeRecorder(EXTENDED_JOINT_NAMES)
    kp = np.zeros((J, 2))
    rec.append(0.0, kp, np.ones(J), np.zeros((J, 3)))
    kp[:] = 7  # the caller reuses its buffer
    assert rec.take().keypoints_2d[0].max() == 0
    with pytest.raises(ValueError, match="timestamp"):
        rec.append(0.0, kp, np.ones(J), np.zeros((J, 3)))
    with pytest.raises(ValueError, match=r"joints_camera must have shape \(19, 3\)"):
        rec.append(1.0, kp, np.ones(J), np.zeros((17, 3)))
    assert len(rec) == 1

    rec = TakeRecorder(EXTENDED_JOINT_NAMES)
    lock = threading.Lock()
    clock = iter(range(1, 10_000))

    def worker():
        for _ in range(50):
            with lock:  # hand out increasing timestamps; appends race with each other
                t = next(clock)
            # a later timestamp may win the race: refused, never corrupted
            with contextlib.suppress(ValueError):
                rec.append(t / 30, np.zeros((J, 2)), np.ones(J), np.zeros((J, 3)))

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    take = rec.take()
    assert 50 <= take.num_frames <= 200
    assert (np.diff(take.timestamp) > 0).all()
    assert take.joints_camera.shape == (take.num_frames, J, 3)


# --- hostile files: every fault is one sentence naming the file and what is wrong ------------


def zip_with(path, members, compress_type=zipfile.ZIP_DEFLATED):
    """A ZIP holding ``members`` ({name: bytes}) under the given compression."""
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(zipfile.ZipInfo(name), data, compress_type=compress_type)
    return path


def peak_bytes(fn):
    """(the exception ``fn`` raised or None, the peak of Python memory while it ran)."""
    import tracemalloc

    tracemalloc.start()
    try:
        fn()
        raised = None
    except Exception as e:  # noqa: BLE001 - the test inspects it
        raised = e
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return raised, peak


def test_zip_bomb_is_refused_before_anything_is_inflated(tmp_path):
    """8 MB of zeros deflate to 8 kB: the ratio alone refuses it, with almost no memory."""
    bomb = zip_with(tmp_path / "bomb.zip", {"take.bin": bytes(8 << 20)})
    for fn in (lambda: read_take_zip(bomb), lambda: extract_take_zip(bomb, tmp_path / "out")):
        raised, peak = peak_bytes(fn)
        assert isinstance(raised, PkmodelError), raised
        assert "bomb.zip" in str(raised) and "'take.bin'" in str(raised)
        assert "compression ratio" in str(raised)
        assert peak < 1 << 20, peak  # nothing of the 8 MB was inflated
    assert not (tmp_path / "out").exists()


def test_zip_member_and_total_caps_are_checked_on_declared_sizes(tmp_path, monkeypatch):
    from pkmodel.lift import take as take_module

    path = write_take(make_take(40), tmp_path)["zip"]
    sizes = {i.filename: i.file_size for i in zipfile.ZipFile(path).infolist()}
    biggest = max(sizes.values())
    monkeypatch.setattr(take_module, "MAX_ZIP_TOTAL_BYTES", sum(sizes.values()) - 1)
    with pytest.raises(PkmodelError, match=r"take.zip is refused: its entries declare \d+ bytes"):
        read_take_zip(path)
    monkeypatch.setattr(take_module, "MAX_ZIP_TOTAL_BYTES", 1 << 40)
    monkeypatch.setattr(take_module, "MAX_ZIP_MEMBER_BYTES", biggest - 1)
    with pytest.raises(PkmodelError, match=rf"entry 'take.json' declares {biggest} bytes"):
        extract_take_zip(path, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_take_bin_in_a_zip_is_checked_by_its_header_before_the_rest_is_read(tmp_path):
    """A big take.bin with a wrong magic, or whose header does not match the entry's declared
    size, is refused after its first bytes (random bytes: no compression ratio to trip on)."""
    noise = np.random.default_rng(0).bytes(6 << 20)
    bad_magic = zip_with(tmp_path / "magic.zip", {"take.bin": noise})
    raised, peak = peak_bytes(lambda: read_take_zip(bad_magic))
    assert isinstance(raised, PkmodelError) and "bad magic" in str(raised), raised
    assert "magic.zip" in str(raised) and peak < 1 << 20, peak
    good = take_to_bytes(make_take(3))
    lying = zip_with(tmp_path / "lying.zip", {"take.bin": good[:32] + noise})
    raised, peak = peak_bytes(lambda: read_take_zip(lying))
    assert isinstance(raised, PkmodelError), raised
    assert "lying.zip" in str(raised) and "truncated or corrupt" in str(raised)
    assert peak < 1 << 20, peak


@pytest.mark.parametrize("compress_type", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED])
def test_zip_with_a_bad_crc_is_one_sentence_and_extracts_nothing(tmp_path, compress_type):
    paths = write_take(make_take(5), tmp_path / "take")
    members = {n: zipfile.ZipFile(paths["zip"]).read(n) for n in ("metadata.json", "take.bin")}
    path = zip_with(tmp_path / "crc.zip", members, compress_type)
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo("take.bin")
    raw = bytearray(path.read_bytes())
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    raw[start + info.compress_size // 2] ^= 0xFF  # one byte inside take.bin's data
    path.write_bytes(bytes(raw))
    with pytest.raises(PkmodelError, match=r"crc.zip: entry 'take.bin' is corrupt") as caught:
        read_take_zip(path)
    assert "\n" not in str(caught.value)
    out = tmp_path / "out"
    out.mkdir()
    (out / "metadata.json").write_text("kept")  # an earlier extraction's file
    with pytest.raises(PkmodelError, match=r"crc.zip: entry 'take.bin' is corrupt"):
        extract_take_zip(path, out)
    assert [p.name for p in out.iterdir()] == ["metadata.json"]  # no temporary left behind
    assert (out / "metadata.json").read_text() == "kept"


def _set(doc, path, value):
    *parents, last = path
    for key in parents:
        doc = doc[key]
    doc[last] = value


@pytest.mark.parametrize(
    ("where", "value", "message"),
    [
        (("version",), "x", "'version' must be a whole number from 1, got 'x'"),
        (("version",), 0, "'version' must be a whole number from 1, got 0"),
        (("version",), True, "'version' must be a whole number from 1, got True"),
        (("frames", 1, "index"), -1, "frame 1: 'index' must be a whole number from 0 to 4294967295, got -1"),
        (("frames", 2, "index"), 1 << 40, "frame 2: 'index' must be a whole number from 0 to 4294967295, got 1099511627776"),
        (("frames", 0, "index"), 1.5, "frame 0: 'index' must be a whole number from 0 to 4294967295, got 1.5"),
        (("frames", 1, "timestamp"), "x", "frame 1: 'timestamp' must be a finite number, got 'x'"),
        (("frames", 1, "timestamp"), None, "frame 1: 'timestamp' must be a finite number, got None"),
        (("frames", 2, "scores"), [1.0], "frame 2: 'scores' must be 19 numbers or nulls"),
        (("frames", 0, "keypoints_2d", 3, 1), "7", "frame 0: 'keypoints_2d' must be 19 x 2 numbers or nulls, got '7'"),
        (("frames", 0, "origin", 2), float("inf"), "frame 0: 'origin' holds inf, which a float32 take cannot hold"),
        (("frames", 0, "rotation", 0, 0), 1e39, "frame 0: 'rotation' holds 1e+39, which a float32 take cannot hold"),
        (("frames", 1), [], "frame 1 must be an object"),
        (("frames", 1, "origin"), "x", "frame 1: 'origin' must be 3 numbers or nulls"),
        (("frames",), {}, "'frames' must be a list of frame objects"),
        (("metadata", "joint_names"), "abc", "'metadata' must be an object whose 'joint_names' lists names"),
        (("metadata",), [], "'metadata' must be an object whose 'joint_names' lists names"),
    ],
)  # fmt: skip
def test_take_json_fields_are_checked_by_type_and_range(tmp_path, where, value, message):
    path = write_take(make_take(3), tmp_path)["json"]
    doc = json.loads(path.read_text())
    _set(doc, where, value)
    path.write_text(json.dumps(doc))
    with pytest.raises(PkmodelError) as caught:
        read_take_json(path)
    assert str(caught.value) == f"take file {path}: {message}"


def test_take_json_without_a_field_names_the_frame_and_field(tmp_path):
    path = write_take(make_take(3), tmp_path)["json"]
    doc = json.loads(path.read_text())
    del doc["frames"][2]["scores"]
    path.write_text(json.dumps(doc))
    with pytest.raises(PkmodelError, match=r"take.json: frame 2 has no 'scores'$"):
        read_take_json(path)
    del doc["version"]
    path.write_text(json.dumps(doc))
    with pytest.raises(PkmodelError, match=r"take.json has no 'version'$"):
        read_take_json(path)


def test_binary_metadata_must_name_every_joint(tmp_path):
    data = take_to_bytes(make_take(2))
    (tmp_path / "names.bin").write_bytes(data.replace(b'"joint_names"', b'"joint_namez"', 1))
    with pytest.raises(
        PkmodelError,
        match=r"names.bin: its metadata must be an object whose 'joint_names' lists 19 names$",
    ):
        read_take_binary(tmp_path / "names.bin")


def test_a_cut_take_binary_is_truncated_not_bad_magic(tmp_path):
    data = take_to_bytes(make_take(3))
    for size in (5, 10, 30):
        (tmp_path / "t.bin").write_bytes(data[:size])
        with pytest.raises(PkmodelError, match=f"is truncated: {size} bytes, shorter than"):
            read_take_binary(tmp_path / "t.bin")
    (tmp_path / "t.bin").write_bytes(b"NOTATAKE" + data[8:])
    with pytest.raises(PkmodelError, match="bad magic"):
        read_take_binary(tmp_path / "t.bin")


def test_take_json_without_metadata_names_it():
    doc = take_to_json(make_take(2))
    del doc["metadata"]
    with pytest.raises(PkmodelError, match="^take JSON has no 'metadata'$"):
        take_from_json(doc)


@pytest.mark.parametrize(
    ("field", "frame", "value", "message"),
    [
        ("joints_camera", 2, np.inf, r"frame 2: 'joints_camera' holds inf; it must hold finite numbers or NaN \(missing\)$"),
        ("scores", 0, -np.inf, r"frame 0: 'scores' holds -inf; it must hold finite numbers or NaN"),
        ("timestamp", 1, np.nan, r"frame 1: 'timestamp' holds nan; it must hold a finite number$"),
        ("timestamp", 3, np.inf, r"frame 3: 'timestamp' holds inf; it must hold a finite number$"),
    ],
)  # fmt: skip
def test_binary_with_infinite_values_is_refused_like_the_json(
    tmp_path, field, frame, value, message
):
    """The records are patched in the bytes (they end the file): inf, which the JSON reader
    refuses, is refused here too; NaN stays a missing value except in a timestamp."""
    take = make_take(4)
    data = bytearray(take_to_bytes(take))
    dtype = record_dtype(J)
    start = len(data) - take.num_frames * dtype.itemsize
    records = np.frombuffer(data, dtype=dtype, count=take.num_frames, offset=start).copy()
    first = (frame,) + (0,) * (records[field].ndim - 1)  # the frame's first value of the field
    records[field][first] = value
    data[start:] = records.tobytes()
    (tmp_path / "t.bin").write_bytes(bytes(data))
    with pytest.raises(PkmodelError, match=message):
        read_take_binary(tmp_path / "t.bin")
    records[field][first] = np.nan if field != "timestamp" else 0.5
    data[start:] = records.tobytes()
    (tmp_path / "t.bin").write_bytes(bytes(data))
    assert np.isnan(read_take_binary(tmp_path / "t.bin").joints_camera).sum() >= 1


def test_metadata_that_would_not_write_back_is_refused_naming_its_key(tmp_path):
    """Python's JSON reader lets NaN, Infinity and escaped lone surrogates through; a take
    holding them would fail only when converted. Both readers name the key instead."""
    take = make_take(2)
    for value, message in [
        ("NaN", "'metadata.fps' is nan; a take's metadata holds finite numbers"),
        ("-Infinity", "'metadata.fps' is -inf; a take's metadata holds finite numbers"),
        ('"a\\ud800"', "'metadata.fps' holds a lone UTF-16 surrogate, which is not text"),
    ]:
        doc = take_to_json(take)
        doc["metadata"]["fps"] = "@"
        text = json.dumps(doc).replace('"@"', value)
        (tmp_path / "t.json").write_text(text)
        with pytest.raises(PkmodelError) as err:
            read_take_json(tmp_path / "t.json")
        assert str(err.value) == f"take file {tmp_path / 't.json'}: {message}"
    # the binary's metadata, patched in its bytes: the same sentence
    data = take_to_bytes(make_take(2))
    data = data.replace(b'"model":"test"', b'"model":NaN   ', 1)
    (tmp_path / "t.bin").write_bytes(data)
    with pytest.raises(PkmodelError) as err:
        read_take_binary(tmp_path / "t.bin")
    assert str(err.value) == (
        f"take file {tmp_path / 't.bin'}: 'metadata.model' is nan; a take's metadata holds "
        "finite numbers"
    )
    nested = take_to_json(take)
    nested["metadata"]["lift"] = {"min_score": [0.5, float("nan")]}
    with pytest.raises(PkmodelError, match=r"'metadata.lift.min_score\[1\]' is nan"):
        take_from_json(nested)


def test_the_binary_layout_table_and_version_by_their_bytes():
    """docs/3d.md: after the 32-byte header, one 32-byte entry per field, little-endian
    (name NUL-padded to 24 bytes, a type code, 3 zero bytes, a uint32 count); a version above
    1 is refused."""
    from pkmodel.lift.take import take_from_bytes

    data = take_to_bytes(make_take())
    assert struct.unpack_from("<24sc3xI", data, 32) == (b"timestamp".ljust(24, b"\0"), b"d", 1)
    entry = struct.unpack_from("<24sc3xI", data, 32 + 2 * 32)
    assert entry == (b"keypoints_2d".ljust(24, b"\0"), b"f", 2 * J)
    bad = bytearray(data)
    struct.pack_into("<H", bad, 8, 2)
    with pytest.raises(PkmodelError, match="take version 2; this reads up to 1"):
        take_from_bytes(bytes(bad))
