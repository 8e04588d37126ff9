#!/usr/bin/env bash
# Set up (first run) and run any pkmodel command: scripts/pkmodel.sh train --set train.epochs=5
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/bootstrap.sh"
cd "$ROOT"
exec pkmodel "$@"
