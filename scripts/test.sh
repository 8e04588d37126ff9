#!/usr/bin/env bash
# Set up (first run) and run the checks: ruff lint, ruff format check, the import layers
# (import-linter's contract in pyproject.toml), then the test suite.
# Extra arguments go to pytest, e.g. scripts/test.sh -k config -x
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/bootstrap.sh"
cd "$ROOT"
echo "[test] ruff check"
ruff check .
echo "[test] ruff format --check"
ruff format --check .
echo "[test] lint-imports (stages import only downward)"
lint-imports
echo "[test] pytest"
python -m pytest "$@"
