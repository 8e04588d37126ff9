#!/usr/bin/env bash
# Create or reuse the project's virtual environment (.venv) and install pkmodel with its dev
# tools. Sourced by the other scripts; safe to run again (it reinstalls only when
# pyproject.toml changed). Override the interpreter with PYTHON=/path/to/python3.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${PKMODEL_VENV:-$ROOT/.venv}"
PY="${PYTHON:-python3}"

if ! command -v "$PY" >/dev/null 2>&1; then
  echo "error: $PY not found; install Python 3.10-3.13 or set PYTHON=/path/to/python3" >&2
  exit 2
fi
if ! "$PY" -c 'import sys; sys.exit(0 if (3, 10) <= sys.version_info[:2] <= (3, 13) else 1)'; then
  echo "error: pkmodel needs Python 3.10-3.13, $PY is $("$PY" -V 2>&1)" >&2
  exit 2
fi
if [ ! -x "$VENV/bin/python" ]; then
  echo "[bootstrap] creating virtual environment $VENV"
  "$PY" -m venv "$VENV"
fi
stamp="$VENV/.pkmodel-install-stamp"
want="$(cat "$ROOT/pyproject.toml" | sha256sum | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ] || ! "$VENV/bin/python" -c 'import pkmodel' 2>/dev/null; then
  echo "[bootstrap] installing pkmodel and its dependencies into $VENV (first time: a few minutes)"
  "$VENV/bin/python" -m pip install --quiet --upgrade pip
  "$VENV/bin/python" -m pip install --quiet -e "$ROOT[dev]"
  echo "$want" > "$stamp"
fi
export PATH="$VENV/bin:$PATH"
export NO_ALBUMENTATIONS_UPDATE=1
