"""Ctrl-C and SIGTERM: one line and exit codes 130 / 143, wherever the stop lands (a progress
bar being drawn, a finaliser that swallows exceptions, clean-up that raises another)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from tests.conftest import ROOT

# Ctrl-C as a terminal delivers it: a job started in the background (CI's) ignores SIGINT, and
# a command leaves it ignored
INTERACTIVE = "import signal\nsignal.signal(signal.SIGINT, signal.default_int_handler)\n"


def run_python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", INTERACTIVE + code], capture_output=True,
                          text=True, cwd=ROOT, timeout=120)  # fmt: skip


def before_and_after_a_stop(setup: str, call: str) -> subprocess.CompletedProcess:
    """``setup`` (Python defining ``call``), then ``call`` once before a SIGTERM and once while
    the command is stopping, in a process with the command's stop handling installed."""
    code = (
        "import signal\nfrom pkmodel.cli import stopping\nstopping.install()\n"
        f"{setup}\n{call}\ntry:\n    signal.raise_signal(signal.SIGTERM)\n"
        f"except SystemExit:\n    {call}\n"
    )
    return run_python(code)


def test_terminated_is_a_line_of_its_own_under_a_progress_bar(capsys, monkeypatch):
    """A SIGTERM that lands while a progress bar is drawn: the bar's line is cleared before
    'terminated' (it was appended to the bar: `overlays a:   0%| ... terminated`)."""
    from tqdm import tqdm

    from pkmodel.cli import stopping

    monkeypatch.setattr(stopping, "_MAIN_PID", os.getpid())
    monkeypatch.setattr(stopping, "_STOP", {"signal": None, "said": False})
    chld = signal.getsignal(signal.SIGCHLD)
    bar = tqdm(total=3, desc="overlays a", file=sys.stderr)
    bar.update(0)
    try:
        with pytest.raises(SystemExit) as caught:
            stopping._terminated(signal.SIGTERM, None)
    finally:
        bar.close()
        signal.signal(signal.SIGCHLD, chld)
    assert caught.value.code == 128 + signal.SIGTERM
    assert "terminated" in [line.strip() for line in capsys.readouterr().err.splitlines()]
    assert stopping.requested() == signal.SIGTERM


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_stop_inside_a_finaliser_still_stops(signum):
    """Python prints what a finaliser raises as "Exception ignored" and carries on: a SIGTERM
    that landed in a weakref callback let a training run go on to its last epoch."""
    code = f"""
import os, signal, time
from pkmodel.cli import stopping
stopping.install()

class Finalised:
    def __del__(self):
        signal.raise_signal({int(signum)})
        sum(range(10000))  # the handler runs here, inside the finaliser

try:
    Finalised()
    for _ in range(200):
        time.sleep(0.01)
    print("ran on")
except (SystemExit, KeyboardInterrupt) as e:
    print("stopped", type(e).__name__)
"""
    done = run_python(code)
    want = "SystemExit" if signum == signal.SIGTERM else "KeyboardInterrupt"
    assert done.stdout.split() == ["stopped", want], done.stdout + done.stderr
    assert "Exception ignored" not in done.stderr and "Traceback" not in done.stderr


@pytest.mark.parametrize(("signum", "word"), [(signal.SIGTERM, "terminated"), (signal.SIGINT, "interrupted")])  # fmt: skip
def test_clean_up_that_raises_on_the_way_out_does_not_hide_the_stop(signum, word):
    """A stop in the middle of torch.save: its zip writer's exit raised "unexpected pos" in
    place of the stop, a traceback and exit code 1."""
    code = f"""
import signal
import pkmodel.cli as cli

def app(**click_options):
    try:
        signal.raise_signal({int(signum)})
    finally:
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos")

cli.app = app
cli.main()
"""
    done = run_python(code)
    assert done.returncode == 128 + signum, done.stderr
    assert done.stderr.strip() == word  # the one line, no traceback


def test_a_threads_error_once_stopping_is_not_printed():
    """multiprocessing's resource sharer thread printed ConnectionResetError when the
    DataLoader workers died with the stop; before a stop, a thread's error is printed."""
    setup = """
import sys, threading

def fails():
    raise ConnectionResetError(104, "Connection reset by peer")

def serve():  # as multiprocessing.resource_sharer's thread reports its errors
    try:
        fails()
    except Exception:
        sys.excepthook(*sys.exc_info())

def both():
    for target in (fails, serve):
        thread = threading.Thread(target=target)
        thread.start(); thread.join()
"""
    done = before_and_after_a_stop(setup, "both()")
    assert done.stderr.count("ConnectionResetError") == 2, done.stderr
    assert done.stderr.rstrip().endswith("terminated")


def test_a_queue_feeders_error_once_stopping_is_not_printed():
    """The DataLoader's shutdown sends each worker a stop through a multiprocessing queue; once
    the workers died with the process group, the feeder thread finds the pipe closed and
    printed the traceback itself, which the interpreter's exit cut off after "Traceback (most
    recent call last):". Before a stop a feeder's error is printed as multiprocessing prints
    it. The error here: an object the feeder cannot pickle."""
    setup = """
import multiprocessing, threading

def feed():
    queue = multiprocessing.Queue()
    queue.put(threading.Lock())  # pickled in the feeder thread, which fails
    queue.close(); queue.join_thread()
"""
    done = before_and_after_a_stop(setup, "feed()")
    assert done.stderr.count("Traceback (most recent call last)") == 1, done.stderr
    assert done.stderr.count("cannot pickle '_thread.lock' object") == 1, done.stderr
    assert done.stderr.rstrip().endswith("terminated")


def test_a_finalisers_other_error_once_stopping_is_not_printed():
    """Removing PyTorch's SIGCHLD handler while a SIGCHLD is pending makes Python report
    "Signal 17 ignored due to race condition" as unraisable; before a stop, a finaliser's
    error is printed as Python prints it."""
    setup = """
class Fails:
    def __del__(self):
        raise OSError("Signal 17 ignored due to race condition")
"""
    done = before_and_after_a_stop(setup, "Fails()")
    assert done.stderr.count("Signal 17 ignored") == 1, done.stderr
    assert "Exception ignored" in done.stderr and done.stderr.rstrip().endswith("terminated")


def test_without_a_stop_errors_are_unchanged():
    code = """
import pkmodel.cli as cli

def app(**click_options):
    raise RuntimeError("a bug")

cli.app = app
cli.main()
"""
    done = run_python(code)
    assert done.returncode == 1 and "RuntimeError: a bug" in done.stderr


@pytest.mark.parametrize("forked", [True, False])
def test_a_workers_resource_sharer_that_loses_the_command_prints_nothing(forked):
    """A DataLoader worker hands the command its batches' shared memory through
    multiprocessing's resource sharer. The command, stopped by a SIGTERM to the process group,
    hung up in the middle of that handshake, and the worker, whose own SIGTERM waited for its
    busy main thread, printed the sharer's traceback (a CI failure). Here the real sharer, in a
    forked child, and a peer that connects and hangs up: nothing printed. In the command's own
    process the same error is printed (not stopping, it is not the stop's doing)."""
    code = f"""
import os, socket, threading, time
from multiprocessing import resource_sharer
from pkmodel.cli import stopping
stopping.install()

def share_and_wait(w):
    os.write(w, repr(resource_sharer.DupFd(0)._id[0]).encode())
    os.close(w)
    time.sleep(1.0)  # the sharer thread meets the hang-up meanwhile

r, w = os.pipe()
child = os.fork() if {forked} else None
if child == 0:
    share_and_wait(w)
    os._exit(0)
if child is None:
    sharer = threading.Thread(target=share_and_wait, args=(w,))
    sharer.start()
address = eval(os.read(r, 4096))
peer = socket.socket(socket.AF_UNIX)
peer.connect(address)
peer.close()  # as the stopping command: gone in the middle of the handshake
if child is None:
    sharer.join()
else:
    os.waitpid(child, 0)
print("done")
"""
    done = run_python(code)
    assert done.returncode == 0 and done.stdout == "done\n", done.stderr
    if forked:
        assert done.stderr == ""
    else:
        assert "resource_sharer.py" in done.stderr, done.stderr
        lost = ("EOFError", "BrokenPipeError", "ConnectionResetError")  # as the timing falls
        assert any(f"\n{name}: " in done.stderr for name in lost), done.stderr
