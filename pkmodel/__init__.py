"""pkmodel: PoseKit's model toolkit (data, training, evaluation, export, 3D lifting)."""

import os
import sys

# How PyTorch's OpenMP threads wait between parallel regions (set before torch loads its runtime;
# OMP_WAIT_POLICY or GOMP_SPINCOUNT in the environment wins). Measured on 2 cores, demo training:
# - libgomp's default spins for about a millisecond: 180 images/s alone, but 33 + 33 when two
#   such jobs share the cores (each thread spins on a core the other job needs);
# - sleeping at once (OMP_WAIT_POLICY=PASSIVE): 89 + 89 when shared, but only 128 alone, since
#   every one of the thousands of small ops per step must wake a sleeping thread;
# - a short spin (GOMP_SPINCOUNT=3000, a few microseconds): 182 alone, 56 + 56 when shared.
# Linux wheels of torch use libgomp; elsewhere (libomp, Intel OpenMP) waits stay passive.
# Run several CPU jobs at once on few cores? Set OMP_WAIT_POLICY=PASSIVE.
if "OMP_WAIT_POLICY" not in os.environ and "GOMP_SPINCOUNT" not in os.environ:
    if sys.platform.startswith("linux"):
        os.environ["GOMP_SPINCOUNT"] = "3000"
    else:
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"

# OpenCV's own warnings ("[ WARN:0] findDecoder ...") and FFmpeg's log lines ("moov atom not
# found") would precede pkmodel's one-sentence error about the same file; the environment wins.
os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # AV_LOG_QUIET

__version__ = "0.1.0"
