"""A pool of spawned worker processes that stops without killing a worker mid-message.

``multiprocessing.Pool.terminate()`` (what ``with Pool(...)`` does on the way out of an
exception, Ctrl-C included) sends SIGTERM to the workers and then joins the thread that reads
their results. A worker killed while it was writing a result leaves half a message in that
pipe; the thread waits for the rest for ever, and so does the command (a Ctrl-C during
`prepare-coco --workers 2` hung this way). SIGTERM or Ctrl-C sent to the process group (a
terminal, ``timeout``, a job's end) kills the workers at the same random moment.

Here the workers ignore SIGINT and SIGTERM and nothing kills them: on the way out of an
exception the parent raises a shared flag, each worker skips the tasks it has not started, the
pool is closed and joined as after a normal run, and the exception goes on. A worker finishes
the task it is on (one image), so a stop takes about one task's time. Only a second interrupt
during that wait kills the workers (SIGKILL).
"""

from __future__ import annotations

import functools
import multiprocessing
import signal
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

# In a worker: the parent's "stop" flag (a multiprocessing Event).
_STOP: Any = None


@contextmanager
def _sigint_ignored() -> Iterator[None]:
    """SIGINT ignored while the pool starts: spawned workers inherit the ignored signal, so a
    Ctrl-C while they are still importing prints no traceback either (their initializer
    ignores it for good)."""
    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread may set handlers; it also gets every Ctrl-C
        return
    before = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, before)


def _init_worker(stop: Any, initializer: Callable[..., None] | None, initargs: Sequence) -> None:
    global _STOP
    _STOP = stop
    # The parent alone handles a stop, and ends the workers when they are between tasks.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if initializer is not None:
        initializer(*initargs)


def _unless_stopping(func: Callable[[Any], Any], task: Any) -> Any:
    """``func(task)``, or None once the parent has asked the workers to stop."""
    if _STOP is not None and _STOP.is_set():
        return None
    return func(task)


def pool_results(
    func: Callable[[Any], Any],
    tasks: Iterable[Any],
    workers: int,
    chunksize: int = 1,
    ordered: bool = True,
    initializer: Callable[..., None] | None = None,
    initargs: Sequence = (),
) -> Iterator[Any]:
    """``func`` over ``tasks`` in ``workers`` spawned processes (safe whatever the parent has
    loaded: torch, OpenCV), in task order or (``ordered=False``) in completion order. An
    exception in the consumer, in a task, or a stop (Ctrl-C, SIGTERM) ends the pool cleanly
    before it goes on (see the module docstring). ``func`` and ``initializer`` must be
    module-level functions."""
    ctx = multiprocessing.get_context("spawn")
    stop = ctx.Event()
    with _sigint_ignored():
        pool = ctx.Pool(workers, initializer=_init_worker, initargs=(stop, initializer, initargs))
    run = functools.partial(_unless_stopping, func)
    imap = pool.imap if ordered else pool.imap_unordered
    try:
        yield from imap(run, tasks, chunksize=chunksize)
    except BaseException:
        stop.set()
        raise
    finally:
        pool.close()
        try:
            pool.join()
        except BaseException:  # a second interrupt while the workers finish their tasks
            for process in getattr(pool, "_pool", []):
                process.kill()
            raise
        pool.terminate()  # every worker has exited: only the pool's own threads are left
