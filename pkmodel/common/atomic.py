"""Atomic file writes: write to a temporary file beside the target, then rename over it.

A reader (or a crash) never sees a half-written file: either the old content or the new one.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import shutil
import stat
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

from pkmodel.common.errors import PkmodelError


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "wb", durable: bool = True) -> Iterator[IO[Any]]:
    """Open a temporary file next to ``path``; on success fsync (unless not ``durable``) and
    rename it onto ``path``."""
    path = Path(path)
    refuse_special(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # The temporary name is the target's, cut short enough that a target name the file system
    # takes (up to 255 bytes) never fails for its temporary twin.
    fd, tmp = tempfile.mkstemp(prefix=f".{_name_head(path.name)}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, default_file_mode())  # mkstemp makes 0600; a normal file follows umask
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            if durable:
                os.fsync(f.fileno())
        refuse_special(path)  # it may have appeared while the file was written
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(e, OSError) and e.filename is None and e.errno is not None:
            # A write or fsync error (a full disk) names no file: name the one being written.
            raise OSError(e.errno, e.strerror, str(path)) from e
        raise


def refuse_special(path: str | Path, folder_too: bool = False) -> None:
    """Refuse to write onto ``path`` when it exists and is not a regular file (nor a folder,
    with ``folder_too``): a rename would replace a device, a FIFO or a socket (/dev/null)."""
    try:
        mode = os.stat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):
        return
    if stat.S_ISREG(mode) or (folder_too and stat.S_ISDIR(mode)):
        return
    if stat.S_ISDIR(mode):
        raise PkmodelError(f"cannot write {path}: it is a folder, not a file")
    what = "a regular file or a folder" if folder_too else "a regular file"
    raise PkmodelError(f"cannot write {path}: it is not {what}")


def _name_head(name: str) -> str:
    """The start of ``name`` that fits a temporary name's prefix (at most 100 bytes)."""
    # surrogateescape: a name with bytes that are not UTF-8 (kept by Python as surrogates)
    return name.encode("utf-8", "surrogateescape")[:100].decode("utf-8", errors="ignore")


def remove_interrupted_writes(folder: str | Path, names: Iterable[str]) -> list[Path]:
    """Delete the temporary files that a killed process left behind while atomically writing
    one of ``names`` into ``folder`` (``.NAME.xxxx.tmp``); the removed paths."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed = []
    for name in names:
        for tmp in folder.glob(f".{glob.escape(_name_head(name))}.*.tmp"):
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
                removed.append(tmp)
    return removed


def listed_outputs(names: Iterable[Any], suffixes: tuple[str, ...]) -> set[str]:
    """Of the names an earlier run's manifest lists, those that can be its own outputs in the
    manifest's folder: plain file names (no folder part) ending in one of ``suffixes``; anything
    else (an edited or damaged manifest) is never taken for a file to remove."""
    return {n for n in names if isinstance(n, str) and n == Path(n).name and n.endswith(suffixes)}


def remove_replaced(folder: str | Path, names: Iterable[str]) -> None:
    """Delete the files ``names`` of ``folder``: an earlier run's outputs that a new run, once
    its own are written, does not list again (one already gone is no fault)."""
    for name in names:
        with contextlib.suppress(OSError):
            (Path(folder) / name).unlink()


def default_file_mode() -> int:
    """The mode ``open()`` would give a new file: 0666 minus the process umask.

    Reading the umask means setting it for an instant; that is done only on the first call (at
    start-up, before worker threads exist), so threads never see a changed umask.
    """
    global _FILE_MODE
    if _FILE_MODE is None:
        mask = os.umask(0o022)
        os.umask(mask)
        _FILE_MODE = 0o666 & ~mask
    return _FILE_MODE


_FILE_MODE: int | None = None


def default_folder_mode() -> int:
    """The mode ``mkdir`` would give a new folder (``mkdtemp`` makes 0700)."""
    return 0o777 & ~(0o666 & ~default_file_mode())


def give_new_modes(root: str | Path) -> None:
    """Every folder and file under ``root`` (and ``root``) the mode a new one gets: for a tree
    that a library wrote through temporary files of mode 0600 before it is published."""
    root = Path(root)
    for path in [root, *root.rglob("*")]:
        if path.is_symlink():
            continue
        os.chmod(path, default_folder_mode() if path.is_dir() else default_file_mode())


def check_writable(path: str | Path, what: str, folder: bool = False) -> None:
    """Fail before any work when ``path`` (a file or folder a command will write; a folder
    with ``folder``) cannot be written: the folder it goes into (or, when it is an existing
    folder, itself) must be a writable folder, or not exist yet under one. ``what`` names it
    for the user (``--out``)."""

    path = Path(path).absolute()
    refuse_special(path, folder_too=True)
    if folder and path.exists() and not path.is_dir():
        raise PkmodelError(f"cannot write {what} {path}: it is a file, not a folder")
    anchor = path if path.is_dir() else path.parent
    while not anchor.exists() and anchor != anchor.parent:
        anchor = anchor.parent
    if not anchor.is_dir():
        raise PkmodelError(f"cannot write {what} {path}: {anchor} is a file, not a folder")
    if not os.access(anchor, os.W_OK | os.X_OK):
        raise PkmodelError(f"cannot write {what} {path}: the folder {anchor} is not writable")


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_open(path, "wb") as f:
        f.write(data)


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, obj: Any, indent: int | None = 2) -> None:
    """Write strict JSON (NaN/inf are refused: convert them to null before calling)."""
    atomic_write_text(path, json.dumps(obj, indent=indent, allow_nan=False) + "\n")


def atomic_replace_dir(tmp_dir: str | Path, target: str | Path) -> None:
    """Move a fully written directory onto ``target`` (a .mlpackage bundle, a take's folder).

    An existing ``target`` is swapped with ``tmp_dir`` in one step where the system can
    (:func:`exchange_paths`), and then removed from where ``tmp_dir`` was: there is no moment
    without one of them at ``target``. Elsewhere it is first moved aside to ``.NAME.old``; a
    stop (Ctrl-C, SIGTERM) between the two moves puts it back."""
    tmp_dir, target = Path(tmp_dir), Path(target)
    refuse_special(target, folder_too=True)
    if not os.path.lexists(target):
        os.replace(tmp_dir, target)
    elif exchange_paths(tmp_dir, target):
        remove_path(tmp_dir)  # what was at target
    else:
        old = target.with_name(f".{target.name}.old")
        remove_path(old)
        moved = False
        try:
            os.replace(target, old)
            moved = True
            os.replace(tmp_dir, target)
        except BaseException:
            if moved and not os.path.lexists(target):
                os.replace(old, target)
            raise
        remove_path(old)


# renameat2's and renamex_np's flag for swapping two names (Linux, macOS)
_AT_FDCWD, _RENAME_EXCHANGE, _RENAME_SWAP = -100, 2, 2


def exchange_paths(a: str | Path, b: str | Path) -> bool:
    """Swap the two existing paths ``a`` and ``b`` in one step (Linux ``renameat2`` with
    RENAME_EXCHANGE, macOS ``renamex_np`` with RENAME_SWAP). False, with nothing changed,
    where the system or the file system has no such call."""
    import ctypes
    import errno
    import sys

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if sys.platform.startswith("linux"):
            call = libc.renameat2
            call.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]  # fmt: skip
            args: tuple = (_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
        elif sys.platform == "darwin":
            call = libc.renamex_np
            call.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_uint]
            args = (os.fsencode(a), os.fsencode(b), _RENAME_SWAP)
        else:
            return False
    except (AttributeError, OSError):  # an older C library
        return False
    if call(*args) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EOPNOTSUPP):
        return False  # a file system without it (some network ones, FAT)
    raise OSError(code, os.strerror(code), str(a), None, str(b))


def remove_path(path: str | Path) -> None:
    """Remove a file, a link (never what it points to) or a folder with all it holds; nothing
    when ``path`` does not exist."""
    path = Path(path)
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()
