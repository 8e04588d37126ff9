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


def interleaved_ms(
    fns: dict[str, Callable[[], Any]],
    runs: int,
    warmup: int,
    clock: Callable[[], float] = time.perf_counter,
) -> dict[str, float]:
    """Median milliseconds of each of several functions timed in turns, call by call: after
    ``warmup`` untimed calls of each, ``runs`` rounds that call every function once, in the
    given order on even rounds and reversed on odd ones. A shared machine's slow seconds then
    hit all of them alike, which blocks of calls one function at a time do not ensure."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    names = list(fns)
    times: dict[str, list[float]] = {name: [] for name in names}
    for i in range(runs):
        for name in names if i % 2 == 0 else names[::-1]:
            start = clock()
            fns[name]()
            times[name].append(clock() - start)
    return {name: 1e3 * float(np.median(t)) for name, t in times.items()}


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
