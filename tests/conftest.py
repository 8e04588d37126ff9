"""Shared test fixtures: the real sample data beside the project, and quiet libraries."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
os.environ.setdefault("OMP_NUM_THREADS", "2")

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"


def shared_data(*parts: str) -> Path:
    """Path under ../shared/data, or skip the test with a reason when it is absent."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real sample data {path} is absent (a user checkout has no ../shared)")
    return path


@pytest.fixture(autouse=True)
def _no_pkmodel_env(monkeypatch):
    """Tests never see the developer's PKMODEL_* variables."""
    for name in list(os.environ):
        if name.startswith("PKMODEL_"):
            monkeypatch.delenv(name)
