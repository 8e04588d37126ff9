"""poetry.lock: one version of every package per platform, torch/torchvision as pinned.

Poetry can lock two versions of a package that both apply on one platform (nvidia-cublas and
nvidia-cuda-nvrtc, through torch's CUDA libraries); `poetry install` then writes both into one
site-packages folder and one overwrites the other's files. These checks read the committed lock
the way an installer would.
"""

from __future__ import annotations

import re
import sys
from collections import Counter
from pathlib import Path

import pytest
from packaging.markers import Marker
from packaging.requirements import Requirement

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]

# What `packaging` needs to evaluate a marker, for the platforms torch publishes wheels for.
PLATFORMS = {
    "linux-x86_64": {"sys_platform": "linux", "platform_system": "Linux", "platform_machine": "x86_64", "os_name": "posix"},
    "linux-aarch64": {"sys_platform": "linux", "platform_system": "Linux", "platform_machine": "aarch64", "os_name": "posix"},
    "macos-arm64": {"sys_platform": "darwin", "platform_system": "Darwin", "platform_machine": "arm64", "os_name": "posix"},
    "windows-amd64": {"sys_platform": "win32", "platform_system": "Windows", "platform_machine": "AMD64", "os_name": "nt"},
}  # fmt: skip
PYTHONS = ["3.10", "3.11", "3.12", "3.13"]


def _environment(platform: str, python: str) -> dict[str, str]:
    return {
        **PLATFORMS[platform],
        "python_version": python,
        "python_full_version": f"{python}.0",
        "implementation_name": "cpython",
        "platform_python_implementation": "CPython",
        "extra": "",
    }


@pytest.fixture(scope="module")
def lock() -> dict:
    return tomllib.loads((ROOT / "poetry.lock").read_text())


@pytest.fixture(scope="module")
def requirements() -> dict[str, Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = [Requirement(r) for r in project["dependencies"]]
    return {r.name: r for r in reqs}


def installed_by_poetry(lock: dict, platform: str, python: str) -> Counter:
    """How many locked versions of each package apply on ``platform`` with ``python``."""
    env = _environment(platform, python)
    count: Counter = Counter()
    for package in lock["package"]:
        markers = package.get("markers")
        if isinstance(markers, dict):  # per dependency group; pkmodel has only "main"
            markers = markers.get("main")
        if not markers or Marker(markers).evaluate(env):
            count[package["name"]] += 1
    return count


@pytest.mark.parametrize("platform", sorted(PLATFORMS))
def test_lock_holds_one_version_of_each_package_per_platform(lock, platform):
    for python in PYTHONS:
        count = installed_by_poetry(lock, platform, python)
        twice = {name: n for name, n in count.items() if n > 1}
        assert twice == {}, f"{platform}, Python {python}: several versions of {twice}"
        assert count["torch"] == 1 and count["numpy"] == 1


def test_torch_and_torchvision_locked_at_the_pinned_pair(lock, requirements):
    locked = {p["name"]: p["version"] for p in lock["package"]}
    for name in ("torch", "torchvision"):
        pins = [s for s in requirements[name].specifier if s.operator == "=="]
        assert len(pins) == 1, f"pyproject.toml must pin {name} exactly"
        assert locked[name] == pins[0].version


def test_cuda_pins_equal_what_torchs_cuda_toolkit_pins(lock, requirements):
    """The nvidia-* pins in pyproject.toml only exist to steer Poetry; they must be exactly the
    versions torch's cuda-toolkit asks for, or pip would have to pick between the two."""
    toolkit = next(p for p in lock["package"] if p["name"] == "cuda-toolkit")
    wanted = {}
    for name in ("nvidia-cublas", "nvidia-cuda-nvrtc"):
        spec = toolkit["dependencies"][name]["version"]  # e.g. "==13.1.1.3.*"
        wanted[name] = re.fullmatch(r"==([\d.]+?)(\.\*)?", spec).group(1)
        pin = [s.version for s in requirements[name].specifier if s.operator == "=="]
        assert pin == [wanted[name]], f"{name}: pyproject pins {pin}, cuda-toolkit wants {spec}"
        assert requirements[name].marker.evaluate(_environment("linux-x86_64", "3.11"))
        assert not requirements[name].marker.evaluate(_environment("macos-arm64", "3.11"))
    locked = {p["name"]: p["version"] for p in lock["package"]}
    assert {name: locked[name] for name in wanted} == wanted
