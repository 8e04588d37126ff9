"""pool_results: spawned workers in order or as they finish, and a stop (an exception, Ctrl-C,
SIGTERM to the process group) that ends them between tasks instead of killing them mid-write."""

from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from pkmodel.common.pool import pool_results
from tests.conftest import ROOT

_OFFSET = 0  # set in each worker by _set_offset


def _set_offset(offset: int) -> None:
    global _OFFSET
    _OFFSET = offset


def _square_plus_offset(x: int) -> int:
    return x * x + _OFFSET


def _slow_marker(task: tuple[str, int]) -> int:
    """Leaves a file per task it runs, a task taking 20 ms."""
    folder, i = task
    time.sleep(0.02)
    Path(folder, f"{i}.done").touch()
    return i


def big_result(i: int) -> bytes:
    """4 MiB: a worker writes it to the result pipe in many pieces, blocking while the
    parent is slow to read, so a worker killed then leaves half a message there."""
    return bytes([i % 256]) * (4 << 20)


def test_results_come_in_task_order_with_the_initializer_run_in_every_worker():
    got = list(pool_results(_square_plus_offset, range(40), 2, chunksize=3,
                            initializer=_set_offset, initargs=(1000,)))  # fmt: skip
    assert got == [x * x + 1000 for x in range(40)]
    unordered = pool_results(_square_plus_offset, range(40), 2, ordered=False)
    assert sorted(unordered) == [x * x for x in range(40)]
    assert multiprocessing.active_children() == []


def test_an_exception_in_the_consumer_stops_the_workers_between_tasks(tmp_path):
    tasks = [(str(tmp_path), i) for i in range(400)]  # 8 s of work on two workers
    start = time.monotonic()
    try:
        for _ in pool_results(_slow_marker, tasks, 2):
            raise KeyError("the consumer fails")
    except KeyError:
        pass
    seconds = time.monotonic() - start
    done = len(list(tmp_path.glob("*.done")))
    # the workers skipped what they had not started: a few tasks ran, not 400
    assert 1 <= done < 100 and seconds < 6, (done, seconds)
    assert multiprocessing.active_children() == []


def test_sigterm_to_the_group_while_workers_write_large_results_does_not_hang():
    """The parent reads slowly, so the workers are blocked writing 4 MiB results when the
    process group gets SIGTERM. multiprocessing.Pool's terminate() killed them there and then
    waited for the rest of a half-written result for ever."""
    code = (
        "import signal, sys, time\n"
        "from pkmodel.cli import stopping\n"
        "from pkmodel.common.pool import pool_results\n"
        "from tests.common.test_pool import big_result\n"
        "stopping.install()\n"
        "signal.signal(signal.SIGINT, signal.SIG_IGN)\n"
        "for i, r in enumerate(pool_results(big_result, range(200), 2)):\n"
        "    print(i, flush=True)\n"
        "    time.sleep(0.2)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)  # fmt: skip
    assert proc.stdout.readline().strip() == "0", proc.communicate()
    time.sleep(0.3)  # both workers blocked in the middle of a write
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        _, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        raise AssertionError("the command hung after SIGTERM") from None
    assert proc.returncode == 143, err
    assert err.strip() == "terminated", err
