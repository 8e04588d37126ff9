#!/usr/bin/env bash
# Download the Yoga-82 images from their link files, for pseudo-labelling. NEEDS INTERNET ACCESS.
# Give a link file or a folder of them (Yoga-82's yoga_dataset_links/*.txt, or the earlier
# PoseKit repo's yoga82/ lists): lines "Class_Name/12.jpg<TAB>URL" or just "URL". Images go to
# dataset/yoga82/images/<Class_Name>/ (only image/* answers are kept: many links are dead or
# now serve HTML pages, which the report lists).
#   mise run get-yoga82 -- path/to/yoga_dataset_links
# Rerunning skips finished images and resumes partial ones. Then (docs/datatools.md):
#   pkmodel data pseudo-label dataset/yoga82/images --weights BEST.pt --name yoga82 --source yoga82
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/bootstrap.sh"
SRC="${1:-${YOGA82_LINKS:-}}"
if [ -z "$SRC" ] || [ "$SRC" = "-h" ] || [ "$SRC" = "--help" ]; then
  sed -n '2,10p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
  [ -n "$SRC" ] && exit 0 || exit 2
fi
if [ -d "$SRC" ]; then
  mapfile -t lists < <(find "$(cd "$SRC" && pwd)" -maxdepth 1 -name '*.txt' | sort)
else
  lists=("$(cd "$(dirname "$SRC")" && pwd)/$(basename "$SRC")")
fi
if [ "${#lists[@]}" -eq 0 ]; then
  echo "error: $SRC holds no .txt link file" >&2
  exit 2
fi
cd "$ROOT"
OUT="${YOGA82_DIR:-dataset/yoga82}"
echo "[get-yoga82] downloading ${#lists[@]} link file(s) into $OUT/images (needs internet access)"
status=0
pkmodel data fetch "${lists[@]}" --out "$OUT/images" --kind image --workers 16 --retries 2 --timeout 20 || status=$?
echo "[get-yoga82] images in $OUT/images; next: pkmodel data pseudo-label $OUT/images --weights BEST.pt --name yoga82 --source yoga82"
exit "$status"
