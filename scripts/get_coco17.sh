#!/usr/bin/env bash
# Download COCO 2017 (images + person keypoint annotations) into dataset/coco/ and prepare it
# into dataset/coco_prepared/ (train.json, val.json, imgs/). NEEDS INTERNET ACCESS: about
# 19 GB of archives for train + val (1 GB with --val-only), plus the same again unpacked.
#
# No download address is written in this repository. Give the archives one of two ways:
#   COCO_BASE_URL=<COCO's download server, as on its download page> mise run get-coco17
#       (the server's layout: zips/train2017.zip, zips/val2017.zip,
#        annotations/annotations_trainval2017.zip)
#   mise run get-coco17 -- my_coco_urls.txt
#       (a URL list: one archive URL per line; any mirror holding the same archive names)
# Options: --val-only (val2017 + annotations), --no-prepare (download and unpack only).
# Rerunning resumes: complete archives are skipped, partial ones continue (HTTP Range), unpacked
# archives are not unpacked again, prepare-coco reuses finished crops.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/bootstrap.sh"

OUT="${COCO_DIR:-dataset/coco}"
PREPARED="${COCO_PREPARED_DIR:-dataset/coco_prepared}"
LIST=""
VAL_ONLY=0
PREPARE=1
for arg in "$@"; do
  case "$arg" in
    --val-only) VAL_ONLY=1 ;;
    --no-prepare) PREPARE=0 ;;
    -h|--help) sed -n '2,16p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "error: unknown option $arg (use --val-only, --no-prepare)" >&2; exit 2 ;;
    *) LIST="$arg" ;;
  esac
done

[ -z "$LIST" ] || LIST="$(cd "$(dirname "$LIST")" && pwd)/$(basename "$LIST")"  # caller-relative
cd "$ROOT"

archives=(annotations_trainval2017.zip val2017.zip)
[ "$VAL_ONLY" = 1 ] || archives+=(train2017.zip)
mkdir -p "$OUT/archives"
if [ -z "$LIST" ]; then
  if [ -z "${COCO_BASE_URL:-}" ]; then
    echo "error: give a URL list of the COCO 2017 archives, or set COCO_BASE_URL to COCO's" >&2
    echo "download server (see docs/datatools.md); this step needs internet access" >&2
    exit 2
  fi
  LIST="$OUT/archives/urls.txt"
  {
    echo "# written by scripts/get_coco17.sh from COCO_BASE_URL"
    for a in "${archives[@]}"; do
      case "$a" in
        annotations_*) echo "${COCO_BASE_URL%/}/annotations/$a" ;;
        *) echo "${COCO_BASE_URL%/}/zips/$a" ;;
      esac
    done
  } > "$LIST"
fi

echo "[get-coco17] downloading into $OUT/archives (needs internet access; large files resume)"
pkmodel data fetch "$LIST" --out "$OUT/archives" --kind any --workers 3 --retries 5 --timeout 60

for a in "${archives[@]}"; do
  stamp="$OUT/.unpacked_${a%.zip}"
  if [ ! -f "$OUT/archives/$a" ]; then
    echo "error: $OUT/archives/$a is missing (not in the URL list?)" >&2
    exit 1
  fi
  if [ ! -f "$stamp" ]; then
    echo "[get-coco17] unpacking $a into $OUT"
    python -m zipfile -e "$OUT/archives/$a" "$OUT"
    touch "$stamp"
  fi
done

if [ "$PREPARE" = 1 ]; then
  splits=(val)
  [ "$VAL_ONLY" = 1 ] || splits=(train val)
  for s in "${splits[@]}"; do
    pkmodel prepare-coco --split "$s" --images "$OUT/${s}2017" \
      --annotations "$OUT/annotations/person_keypoints_${s}2017.json" --out "$PREPARED"
  done
  echo "[get-coco17] done. Train on it with: pkmodel train --set data.prepared_dir=$PREPARED"
else
  echo "[get-coco17] done: $OUT/{train2017,val2017,annotations}"
fi
