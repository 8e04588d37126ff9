"""The package's layout keeps its rules: no import cycle, importing changes nothing outside the
package, and the command line loads no heavy library before it has set its process defaults.
(The layers themselves are import-linter's contract in pyproject.toml, run by the test command.)
"""

from __future__ import annotations

import os
import subprocess
import sys

import grimp
import pytest

from tests.conftest import ROOT


def _cycles(graph) -> list[list[str]]:
    """Strongly connected groups of more than one module (or a module importing itself)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(module: str) -> None:  # Tarjan's algorithm
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for imported in graph.find_modules_directly_imported_by(module):
            if imported not in index:
                visit(imported)
                low[module] = min(low[module], low[imported])
            elif imported in on_stack:
                low[module] = min(low[module], index[imported])
        if low[module] == index[module]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == module:
                    break
            if len(group) > 1 or module in graph.find_modules_directly_imported_by(module):
                groups.append(sorted(group))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for module in sorted(graph.modules):
        if module not in index:
            visit(module)
    return groups


def test_no_import_cycle_in_pkmodel_counting_imports_inside_functions():
    graph = grimp.build_graph("pkmodel")  # grimp sees every import statement, nested or not
    assert len(graph.modules) > 60
    assert _cycles(graph) == []
    # The check finds a cycle when there is one.
    graph.add_import(importer="pkmodel.common.errors", imported="pkmodel.cli")
    assert any("pkmodel.common.errors" in group for group in _cycles(graph))


def _run(code: str, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("OPENCV_", "GOMP_", "OMP_"))}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**clean, **env}, cwd=ROOT)  # fmt: skip


def test_importing_every_pkmodel_module_leaves_the_environment_unchanged():
    code = (
        "import importlib, os, pkgutil\n"
        "before = dict(os.environ)\n"
        "import pkmodel\n"
        "names = [m.name for m in pkgutil.walk_packages(pkmodel.__path__, 'pkmodel.')\n"
        "         if not m.name.endswith('__main__')]\n"
        "for name in names:\n"
        "    importlib.import_module(name)\n"
        "changed = sorted(k for k in set(before) | set(os.environ) if before.get(k) != os.environ.get(k))\n"
        "print(len(names), changed)\n"
    )  # fmt: skip
    done = _run(code)
    assert done.returncode == 0, done.stderr
    count, changed = done.stdout.split(" ", 1)
    assert int(count) > 60 and changed.strip() == "[]"


def test_the_command_line_sets_its_defaults_before_torch_or_opencv_load():
    done = _run(
        "import sys, os\n"
        "import pkmodel.cli\n"
        "print(sorted(m for m in ('torch', 'cv2') if m in sys.modules))\n"
        "from pkmodel.common.runtime import set_process_defaults\n"
        "set_process_defaults()\n"
        "print(os.environ.get('OPENCV_LOG_LEVEL'), os.environ.get('GOMP_SPINCOUNT'))\n"
    )
    assert done.returncode == 0, done.stderr
    loaded, values = done.stdout.splitlines()
    assert loaded == "[]"
    assert values.split()[0] == "ERROR"
    assert values.split()[1] == ("3000" if sys.platform.startswith("linux") else "None")
    # The environment wins over the defaults.
    done = _run(
        "import os\nfrom pkmodel.common.runtime import set_process_defaults\n"
        "set_process_defaults()\nprint(os.environ.get('GOMP_SPINCOUNT'), os.environ.get('OPENCV_LOG_LEVEL'))",
        OMP_WAIT_POLICY="PASSIVE", OPENCV_LOG_LEVEL="INFO",
    )  # fmt: skip
    assert done.stdout.split() == ["None", "INFO"]


_FAULTS = (
    "import resource, numpy as np\n"
    "def faults():\n"
    "    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt\n"
    "    for _ in range(10):\n"
    "        a = np.ones(16 << 20, np.float32)  # 64 MiB: glibc maps such blocks afresh\n"
    "        del a\n"
    "    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before\n"
)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc (Linux) only")
def test_the_command_line_keeps_freed_memory_and_the_user_can_say_no():
    """Ten 64 MiB blocks allocated and freed: with glibc's default each is mapped afresh and
    unmapped on free, so its pages fault in again every time (fewer with transparent huge
    pages, never none); after set_process_defaults the blocks reuse the first one's memory. A
    MALLOC_*_ variable in the environment leaves glibc as it is."""
    code = (
        _FAULTS + "import os\nfrom pkmodel.common.runtime import set_process_defaults\n"
        "plain = faults()\nset_process_defaults()\nfaults()\n"
        "print(plain, faults(), os.environ.get('MALLOC_MMAP_MAX_'))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    plain, kept, variable = done.stdout.split()
    assert int(plain) > 1_000 and int(kept) < int(plain) / 20 and variable == "0", done.stdout
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True,
        env={**env, "MALLOC_TRIM_THRESHOLD_": "131072"},
    )  # fmt: skip
    plain, kept, variable = done.stdout.split()
    assert int(kept) > int(plain) / 2 and variable == "None", done.stdout


def test_opencv_and_ffmpeg_lines_do_not_precede_the_commands_errors(tmp_path):
    video = tmp_path / "broken.mp4"
    video.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 8)  # no moov atom
    plain = _run(
        f"import cv2; cv2.VideoCapture({str(video)!r}); cv2.imread({str(tmp_path / 'no.jpg')!r})"
    )
    assert "moov atom not found" in plain.stderr and "WARN" in plain.stderr  # what users saw
    done = subprocess.run(
        [sys.executable, "-m", "pkmodel", "data", "extract-frames", str(video), "--count", "2",
         "--out", str(tmp_path / "frames")],
        capture_output=True, text=True, cwd=ROOT,
        env={k: v for k, v in os.environ.items() if not k.startswith("OPENCV_")},
    )  # fmt: skip
    assert done.returncode == 2
    errors = [line for line in done.stderr.splitlines() if line and "extract-frames:" not in line]
    assert errors == [f"error: video {video} cannot be read: OpenCV cannot open it (damaged, or not a video)"], done.stderr  # fmt: skip
