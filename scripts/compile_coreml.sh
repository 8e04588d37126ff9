#!/usr/bin/env bash
# Compile an exported Core ML model (.mlpackage) into the .mlmodelc an app loads at run time:
#   scripts/compile_coreml.sh [MODEL.mlpackage] [OUTDIR]
# Defaults: export.out_dir/pkmodel.mlpackage from the config, compiled into export.out_dir.
# Needs macOS with the Xcode command line tools (xcrun coremlc); elsewhere it explains and
# exits with code 2. (Xcode also compiles .mlpackage files added to an app target by itself.)
set -euo pipefail

if [ "$(uname -s)" != "Darwin" ]; then
  echo "error: compile-coreml needs macOS: 'xcrun coremlc' ships with Xcode's command line tools," >&2
  echo "       which exist only on macOS ($(uname -s) here). The .mlpackage written by" >&2
  echo "       export-coreml is already verified on this machine; copy it to a Mac and run" >&2
  echo "       'mise run compile-coreml -- MODEL.mlpackage OUTDIR' there, or add it to an Xcode" >&2
  echo "       project, which compiles it when the app is built." >&2
  exit 2
fi
if ! xcrun --find coremlc >/dev/null 2>&1; then
  echo "error: 'xcrun coremlc' was not found; install Xcode or its command line tools" >&2
  echo "       (xcode-select --install) and try again" >&2
  exit 2
fi

source "$(dirname "${BASH_SOURCE[0]}")/bootstrap.sh"
out_dir="$(python -c 'from pkmodel.config import load_config; print(load_config().export.out_dir)')"
model="${1:-$out_dir/pkmodel.mlpackage}"
dest="${2:-$out_dir}"
if [ ! -d "$model" ]; then
  echo "error: Core ML model $model does not exist; run 'mise run generate-coreml -- --weights CKPT' first" >&2
  exit 2
fi
mkdir -p "$dest"
xcrun coremlc compile "$model" "$dest"
echo "wrote $dest/$(basename "${model%.mlpackage}").mlmodelc"
