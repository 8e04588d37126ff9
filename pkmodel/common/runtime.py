"""The process pkmodel runs in: the cores it may use, and the environment defaults its
command line sets."""

from __future__ import annotations

import os
import sys
from collections.abc import MutableMapping


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
    - OpenCV and FFmpeg log nothing below errors, so their own lines do not precede pkmodel's
      one-sentence error about the same file.
    """
    if "OMP_WAIT_POLICY" not in environ and "GOMP_SPINCOUNT" not in environ:
        if sys.platform.startswith("linux"):
            environ["GOMP_SPINCOUNT"] = "3000"
        else:
            environ["OMP_WAIT_POLICY"] = "PASSIVE"
    environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")
    environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # AV_LOG_QUIET
