"""How a command stops on Ctrl-C (SIGINT) and on SIGTERM (a job's time limit, ``kill``,
``timeout``): one line, ``interrupted`` (exit code 130) or ``terminated`` (143), and the work
under way unwound on the way out, so that staging folders and temporary files are removed.

A stop is an exception raised wherever the main thread is, and three places there would lose
it:

- a finaliser (a weakref callback, a ``__del__``): Python prints what it raises as "Exception
  ignored" and carries on, so the command ran to its end. The stop is asked for again
  (:func:`_unraisable`), to be raised where it counts;
- clean-up code that raises something else on the way out (PyTorch's zip writer cut off in
  the middle of a checkpoint's record): the stop still stands, without that traceback
  (:func:`exit_code`);
- PyTorch's SIGCHLD handler, which raises "DataLoader worker ... is killed by signal" once
  the workers, signalled with their process group, die: it is removed at the stop; and the
  threads that serve the workers, whose errors are then the stop's doing (not printed). One
  of them prints its own: a multiprocessing queue's feeder thread, which sends the workers
  their "stop" as the DataLoader shuts down, finds their pipe closed once they are dead and
  calls ``traceback.print_exc()``; the interpreter's exit then cut that traceback off after its
  first line (:func:`_feeder_error`). And a worker's own resource sharer thread, which hands
  the command its batches' shared memory: the command's stop cuts its connection, and the
  worker, signalled too, may print that before it dies (:func:`_uncaught`).
"""

from __future__ import annotations

import multiprocessing.queues
import multiprocessing.resource_sharer
import os
import signal
import sys
import threading
from typing import Any

import typer

# The signal that asked this process to stop, once one has; and whether its line was printed.
_STOP: dict[str, Any] = {"signal": None, "said": False}
_MAIN_PID = os.getpid()
WORDS = {signal.SIGINT: "interrupted", signal.SIGTERM: "terminated"}
REPEAT_S = 0.01  # a stop a finaliser swallowed is asked for again after this long
_QUEUE_FEEDER_ERROR = multiprocessing.queues.Queue._on_queue_feeder_error


def install() -> None:
    """The handlers, in the process that runs the command (forked workers inherit them and
    act as without them)."""
    global _MAIN_PID
    _MAIN_PID = os.getpid()
    _STOP.update(signal=None, said=False)
    signal.signal(signal.SIGTERM, _terminated)
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:  # not ignored by a shell
        signal.signal(signal.SIGINT, _interrupted)
    sys.unraisablehook = _unraisable
    threading.excepthook = _thread_error
    sys.excepthook = _uncaught
    multiprocessing.queues.Queue._on_queue_feeder_error = staticmethod(_feeder_error)


def requested() -> int | None:
    """The signal that asked the command to stop, or None."""
    return _STOP["signal"]


def say(signum: int) -> None:
    """The stop's one line, once, on a line of its own: a progress bar being drawn is cleared
    first (and redrawn after)."""
    if _STOP["said"]:
        return
    _STOP["said"] = True
    from tqdm import tqdm

    with tqdm.external_write_mode(file=sys.stderr):
        typer.secho(WORDS.get(signum, "stopped"), err=True, fg=typer.colors.RED)


def exit_code(signum: int) -> int:
    return 128 + signum


def _stopping(signum: int) -> None:
    _STOP["signal"] = _STOP["signal"] or signum
    # The workers got the signal too (a process group's: Ctrl-C, `timeout`, a job's end), and
    # PyTorch's SIGCHLD handler would raise "DataLoader worker ... is killed by signal" into
    # the clean-up, in place of the stop.
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)


def _terminated(signum: int, frame: object) -> None:
    """SIGTERM: leave the way an interrupt does. A forked child (a DataLoader worker) dies as it
    would have without the handler."""
    if os.getpid() != _MAIN_PID:
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)
        return
    _stopping(signum)
    say(signum)
    raise SystemExit(exit_code(signum))


def _interrupted(signum: int, frame: object) -> None:
    """SIGINT: Python's KeyboardInterrupt, remembered (a forked child: Python's default)."""
    if os.getpid() == _MAIN_PID:
        _stopping(signum)
    signal.default_int_handler(signum, frame)


def _thread_error(args: Any) -> None:
    """Once the command is stopping, a thread's error is the stop's doing (a thread serving
    the DataLoader workers as they die): not printed."""
    if _STOP["signal"] is None:
        threading.__excepthook__(args)


def _uncaught(kind: type, value: BaseException, traceback: Any) -> None:
    """multiprocessing's resource sharer thread reports its errors through sys.excepthook
    itself: once stopping, not printed either. Nor, in a forked child (a DataLoader worker),
    its connection's loss: the command it serves hung up, which a command does only as it
    stops or fails (and says so itself), and the worker may not know it yet (its own signal
    waits for its main thread, busy in a C call)."""
    hung_up = os.getpid() != _MAIN_PID and issubclass(kind, (EOFError, OSError))
    if _STOP["signal"] is None and not (hung_up and _in_resource_sharer(traceback)):
        sys.__excepthook__(kind, value, traceback)


def _in_resource_sharer(traceback: Any) -> bool:
    while traceback is not None:
        if traceback.tb_frame.f_code.co_filename == multiprocessing.resource_sharer.__file__:
            return True
        traceback = traceback.tb_next
    return False


def _feeder_error(e: BaseException, obj: object) -> None:
    """A multiprocessing queue's feeder thread could not send ``obj``: once stopping, a pipe
    that a dead worker left closed (not printed); else multiprocessing's own report, the
    traceback. The hook is the one multiprocessing keeps for this (concurrent.futures sets
    it on its own queues), called inside the feeder's ``except``."""
    if _STOP["signal"] is None:
        _QUEUE_FEEDER_ERROR(e, obj)


def _unraisable(args: Any) -> None:
    """A stop raised inside a finaliser is swallowed there: ask for it again, from another
    thread a moment later, so that the handler runs after this hook (inside it, what it
    raises would be swallowed too). Once stopping, a finaliser's other errors are the stop's
    doing (a SIGCHLD that arrived as its handler was being removed: "Signal 17 ignored due
    to race condition"): not printed."""
    signum = _STOP["signal"]
    stop = args.exc_type in (SystemExit, KeyboardInterrupt)
    if stop and os.getpid() != _MAIN_PID:
        return  # a worker's Ctrl-C as it was being forked: the command ends it
    if signum is None:
        sys.__unraisablehook__(args)
    elif stop:
        again = threading.Timer(REPEAT_S, os.kill, (os.getpid(), signum))
        again.daemon = True
        again.start()
