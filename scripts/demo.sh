#!/usr/bin/env bash
# Set up (first run) and run the main job on the built-in synthetic data: generate, prepare,
# train, evaluate, export and lift to 3D. Extra arguments go to `pkmodel demo` (e.g. --quick).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/bootstrap.sh"
cd "$ROOT"
pkmodel demo --out runs/demo "$@"
