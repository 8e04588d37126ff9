"""Atomic writes: all or nothing, and a failure names the file it was writing."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from pkmodel.cli.common import os_error_sentence
from pkmodel.common import atomic
from pkmodel.common.atomic import atomic_write_text, remove_interrupted_writes


def test_a_full_disk_names_the_file_and_keeps_the_old_content(tmp_path, monkeypatch):
    target = tmp_path / "metrics.json"
    target.write_text("old\n")

    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(atomic.os, "fsync", full)
    with pytest.raises(OSError) as err:
        atomic_write_text(target, "new\n")
    assert os_error_sentence(err.value) == f"cannot write {target}: No space left on device"
    assert target.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json"]  # no temporary left


def test_long_names_are_written_and_too_long_ones_name_the_file(tmp_path):
    name = "p" * 250 + ".jpg"  # 254 bytes: the file system takes it
    atomic_write_text(tmp_path / name, "x")
    assert (tmp_path / name).read_text() == "x"
    too_long = tmp_path / ("q" * 252 + ".jpg")  # 256 bytes
    with pytest.raises(OSError) as err:
        atomic_write_text(too_long, "x")
    assert os_error_sentence(err.value) == f"cannot write {too_long}: File name too long"
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]


def test_remove_interrupted_writes_takes_only_the_named_files_leftovers(tmp_path):
    for name in (".last.pt.k2j3.tmp", ".best.pt.x.tmp", ".other.json.y.tmp", "last.pt"):
        (tmp_path / name).write_text("x")
    removed = remove_interrupted_writes(tmp_path, ["last.pt", "best.pt"])
    assert sorted(p.name for p in removed) == [".best.pt.x.tmp", ".last.pt.k2j3.tmp"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [".other.json.y.tmp", "last.pt"]
    assert remove_interrupted_writes(tmp_path / "absent", ["last.pt"]) == []


def test_a_fifo_or_device_is_never_renamed_over(tmp_path):
    from pkmodel.common.atomic import atomic_replace_dir, atomic_write_bytes, check_writable
    from pkmodel.common.errors import PkmodelError

    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(PkmodelError, match=f"^cannot write {fifo}: it is not a regular file$"):
        atomic_write_bytes(fifo, b"data")
    folder = tmp_path / "new"
    folder.mkdir()
    with pytest.raises(PkmodelError, match="it is not a regular file or a folder"):
        atomic_replace_dir(folder, fifo)
    with pytest.raises(PkmodelError, match="it is not a regular file or a folder"):
        check_writable(fifo, "the output")
    assert fifo.is_fifo() and folder.is_dir()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fifo", "new"]  # no temporary left
    # a regular file and a folder are still replaced
    (tmp_path / "file").write_text("old")
    atomic_write_bytes(tmp_path / "file", b"new")
    assert (tmp_path / "file").read_bytes() == b"new"
    atomic_replace_dir(folder, tmp_path / "file")
    assert (tmp_path / "file").is_dir()


def _folder(path, name: str):
    path.mkdir()
    (path / name).write_text(name)
    return path


def _tree(root) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*"))


def test_a_folder_replaces_the_earlier_one_in_one_swap(tmp_path, monkeypatch):
    """Where the system swaps two names in one call (Linux here), the earlier results never
    leave their path: no move aside, no .NAME.old."""
    from pkmodel.common import atomic

    new, target = _folder(tmp_path / "staged", "new"), _folder(tmp_path / "take", "old")

    def no_rename(*args):
        raise AssertionError(f"a two-step move: os.replace{args}")

    monkeypatch.setattr(atomic.os, "replace", no_rename)
    atomic.atomic_replace_dir(new, target)
    assert _tree(tmp_path) == ["take", "take/new"]
    # a file at the target is swapped out the same way
    (tmp_path / "file").write_text("old")
    atomic.atomic_replace_dir(_folder(tmp_path / "staged", "new"), tmp_path / "file")
    assert _tree(tmp_path) == ["file", "file/new", "take", "take/new"]


def test_without_a_swap_a_stop_between_the_moves_puts_the_earlier_folder_back(
    tmp_path, monkeypatch
):
    """The two-step move (a system or file system without the swap): a Ctrl-C after the
    earlier folder was moved aside once left the target empty and the results hidden in
    .NAME.old; it now puts them back. Without a stop the move ends as the swap does."""
    from pkmodel.common import atomic

    monkeypatch.setattr(atomic, "exchange_paths", lambda a, b: False)
    new, target = _folder(tmp_path / "staged", "new"), _folder(tmp_path / "take", "old")
    real = os.replace

    def stopped_second_move(src, dst):
        if Path(src) == new:
            raise KeyboardInterrupt
        real(src, dst)

    monkeypatch.setattr(atomic.os, "replace", stopped_second_move)
    with pytest.raises(KeyboardInterrupt):
        atomic.atomic_replace_dir(new, target)
    assert _tree(tmp_path) == ["staged", "staged/new", "take", "take/old"]
    monkeypatch.setattr(atomic.os, "replace", real)
    atomic.atomic_replace_dir(new, target)
    assert _tree(tmp_path) == ["take", "take/new"]


def test_exchange_paths_swaps_two_names(tmp_path):
    from pkmodel.common.atomic import exchange_paths

    a, b = _folder(tmp_path / "a", "x"), tmp_path / "b"
    b.write_text("file")
    assert exchange_paths(a, b) is True  # Linux's renameat2 (glibc 2.28 and later)
    assert (tmp_path / "a").read_text() == "file" and _tree(tmp_path / "b") == ["x"]
    with pytest.raises(FileNotFoundError):
        exchange_paths(tmp_path / "absent", a)
