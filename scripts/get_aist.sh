#!/usr/bin/env bash
# Download AIST Dance DB videos from a URL list and sample frames for pseudo-labelling.
# NEEDS INTERNET ACCESS. The list is yours (e.g. the earlier PoseKit repo's aist/ list): one
# video URL per line, # comments allowed. Videos go to dataset/aist/videos/, frames to
# dataset/aist/frames/<video>/ (one every EVERY seconds, default 1).
#   mise run get-aist -- path/to/aist_urls.txt
#   EVERY=0.5 mise run get-aist -- path/to/aist_urls.txt
# Rerunning resumes downloads (HTTP Range) and skips videos whose frames are done. Then label
# the frames with a trained model and merge them (docs/datatools.md):
#   pkmodel data pseudo-label dataset/aist/frames --weights BEST.pt --name aist --source aist
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/bootstrap.sh"
LIST="${1:-${AIST_URLS:-}}"
if [ -z "$LIST" ] || [ "$LIST" = "-h" ] || [ "$LIST" = "--help" ]; then
  sed -n '2,12p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
  [ -n "$LIST" ] && exit 0 || exit 2
fi
LIST="$(cd "$(dirname "$LIST")" && pwd)/$(basename "$LIST")"  # before cd: relative to the caller
cd "$ROOT"
OUT="${AIST_DIR:-dataset/aist}"
echo "[get-aist] downloading the videos of $LIST into $OUT/videos (needs internet access)"
status=0
pkmodel data fetch "$LIST" --out "$OUT/videos" --kind video --workers 4 --retries 4 || status=$?
if [ "$status" -ne 0 ]; then
  echo "[get-aist] some downloads failed (see $OUT/videos/fetch_report.json); extracting the rest"
fi
pkmodel data extract-frames "$OUT/videos" --out "$OUT/frames" --every "${EVERY:-1}"
echo "[get-aist] frames in $OUT/frames; next: pkmodel data pseudo-label $OUT/frames --weights BEST.pt --name aist --source aist"
exit "$status"
