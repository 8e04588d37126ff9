#!/usr/bin/env bash
# Regenerate or check poetry.lock with Poetry 2.x. Arguments go to poetry (default: lock), e.g.
#   scripts/lock.sh                # re-resolve and write poetry.lock
#   scripts/lock.sh check --lock   # is poetry.lock in sync with pyproject.toml?
#   scripts/lock.sh show --tree
# Poetry lives in its own virtual environment outside the repo (POETRY_VENV, default
# ~/.cache/pkmodel-poetry), never in .venv: the project's .venv is installed by pip
# (scripts/bootstrap.sh), and Poetry must not reinstall torch there.
#
# Why not plain `poetry lock`: Poetry asks PyPI's per-release JSON API
# (/pypi/NAME/VERSION/json) for each candidate's metadata. Some mirrors and proxies serve only
# the simple index (PEP 503/691) and answer that endpoint with 404, and Poetry then reports
# "Package X (V) not found". Where that happens, the small shim below makes Poetry read the same
# release from PyPI's simple index instead, exactly as it does for any other index: file names
# and sha256 hashes from the index page, dependencies from the wheel's own METADATA (fetched by
# HTTP range request). The packages still come from the default PyPI source, so the lock names no
# index URL. Where the JSON API answers, the shim does nothing.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
POETRY_VENV="${POETRY_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/pkmodel-poetry}"
PY="${PYTHON:-python3}"

if [ ! -x "$POETRY_VENV/bin/poetry" ]; then
  echo "[lock] installing Poetry 2.x into $POETRY_VENV"
  "$PY" -m venv "$POETRY_VENV"
  "$POETRY_VENV/bin/python" -m pip install --quiet "poetry>=2.0,<3"
fi
[ "$#" -gt 0 ] || set -- lock
cd "$ROOT"
exec "$POETRY_VENV/bin/python" - "$@" <<'PY'
"""Run Poetry, reading release metadata from PyPI's simple index where its JSON API is missing."""

import sys

from poetry.console.application import main
from poetry.inspection.info import PackageInfo
from poetry.repositories.exceptions import PackageNotFoundError
from poetry.repositories.pypi_repository import PyPiRepository

_json_release_info = PyPiRepository._get_release_info
_json_links = PyPiRepository.find_links_for_package


def _release_info(self, name, version):
    try:
        return _json_release_info(self, name, version)
    except PackageNotFoundError:
        # Same steps as Poetry's LegacyRepository._get_release_info, on PyPI's own simple page.
        page = self.get_page(name)
        links = list(page.links_for_version(name, version))
        info = PackageInfo(
            name=name,
            version=version.text,
            summary="",
            requires_dist=[],
            requires_python=None,
            files=[],
            yanked=page.yanked(name, version),
            cache_version=str(self.CACHE_VERSION),
        )
        return self._links_to_data(links, info)


def _links(self, package):
    links = _json_links(self, package)
    if links:
        return links
    page = self.get_page(package.name)
    return list(page.links_for_version(package.name, package.version))


PyPiRepository._get_release_info = _release_info
PyPiRepository.find_links_for_package = _links
sys.argv = ["poetry", *sys.argv[1:]]
sys.exit(main())
PY
