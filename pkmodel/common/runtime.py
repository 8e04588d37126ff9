"""The process pkmodel runs in: the cores it may use, and the environment defaults its
command line sets."""

from __future__ import annotations

import ctypes
import os
import sys
from collections.abc import MutableMapping

# glibc's mallopt parameters (malloc.h) and the environment variables that set them at start
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD, _M_MMAP_MAX = -1, -3, -4
MALLOC_KEEP_BYTES = 1 << 30  # freed memory kept up to this much (and no block mmapped alone)
MALLOC_ENVIRONMENT = ("MALLOC_MMAP_MAX_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_")


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity on Linux, else all), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - macOS and Windows have no affinity call
        return max(1, os.cpu_count() or 1)


def set_process_defaults(environ: MutableMapping[str, str] = os.environ) -> None:
    """The command line's defaults for the libraries it loads; a value already in the
    environment wins. Called before torch or OpenCV are imported, and inherited by worker
    processes. docs/development.md ("Process defaults") says why each is set.

    - OpenMP waits between parallel regions: a short spin (``GOMP_SPINCOUNT=3000``) with
      Linux's libgomp, passive waits elsewhere. Run several CPU jobs on few cores? Set
      ``OMP_WAIT_POLICY=PASSIVE``.
    - glibc keeps freed memory for reuse instead of mapping every block of 32 MiB or more
      afresh and unmapping it on free (:func:`keep_freed_memory`).
    - OpenCV and FFmpeg log nothing below errors, so their own lines do not precede pkmodel's
      one-sentence error about the same file.
    """
    if "OMP_WAIT_POLICY" not in environ and "GOMP_SPINCOUNT" not in environ:
        if sys.platform.startswith("linux"):
            environ["GOMP_SPINCOUNT"] = "3000"
        else:
            environ["OMP_WAIT_POLICY"] = "PASSIVE"
    keep_freed_memory(environ)
    environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")
    environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # AV_LOG_QUIET


def keep_freed_memory(environ: MutableMapping[str, str] = os.environ) -> bool:
    """With glibc: serve large blocks from the heap and keep freed memory for reuse, in this
    process (``mallopt``) and in the processes it starts (``MALLOC_MMAP_MAX_=0``,
    ``MALLOC_TRIM_THRESHOLD_``). Returns whether it did.

    glibc's default maps every block of 32 MiB or more (a batch's feature maps) with mmap and
    unmaps it on free, so every training step takes hundreds of thousands of page faults to
    zero the same memory again. Kept, the process stays at its peak memory instead of shrinking
    between steps. Nothing is changed when any ``MALLOC_*_`` variable of
    :data:`MALLOC_ENVIRONMENT` is set (the user's choice), or off glibc.
    """
    if any(name in environ for name in MALLOC_ENVIRONMENT):
        return False
    mallopt = _glibc_mallopt()
    if mallopt is None:
        return False
    if not (mallopt(_M_MMAP_MAX, 0) and mallopt(_M_TRIM_THRESHOLD, MALLOC_KEEP_BYTES)):
        return False
    environ["MALLOC_MMAP_MAX_"] = "0"
    environ["MALLOC_TRIM_THRESHOLD_"] = str(MALLOC_KEEP_BYTES)
    return True


def _glibc_mallopt():  # noqa: ANN202 - a ctypes function
    """glibc's ``mallopt``, or None (another C library, or none to load)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version  # noqa: B018 - glibc only (musl's mallopt does nothing)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return None
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    return mallopt
