"""Timing helpers of the benchmark: medians over repeats, best-of loops per frame."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np


def median_seconds(fn: Callable[[], Any], repeats: int, warmup: int = 1) -> float:
    """Median wall time of ``fn()`` over ``repeats`` calls after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def median_of(runs: list[dict[str, Any]]) -> dict[str, float]:
    """Per key, the median over the repeats' result dicts (numeric values only)."""
    keys = [k for k, v in runs[0].items() if isinstance(v, (int, float))]
    return {k: float(np.median([r[k] for r in runs])) for k in keys}


def median_ms(fn: Callable[[], Any], runs: int, warmup: int) -> float:
    """``median_seconds`` in milliseconds."""
    return 1e3 * median_seconds(fn, runs, warmup)


def time_per_frame(fn: Any, frames: int, min_seconds: float) -> float:
    """Best-of-repeats microseconds per frame of ``fn()`` that decodes ``frames`` frames."""
    fn()  # warm caches
    best, spent = float("inf"), 0.0
    while spent < min_seconds:
        t = time.perf_counter()
        fn()
        dt = time.perf_counter() - t
        spent += dt
        best = min(best, dt)
    return best / frames * 1e6
