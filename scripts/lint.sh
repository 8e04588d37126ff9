#!/usr/bin/env bash
# Set up (first run) and lint; with --fix, apply ruff's fixes and formatting.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/bootstrap.sh"
cd "$ROOT"
if [ "${1:-}" = "--fix" ]; then
  ruff check --fix .
  ruff format .
else
  ruff check .
  ruff format --check .
fi
