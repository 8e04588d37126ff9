#!/usr/bin/env bash
# GPU check (docs/benchmark.md, "GPU check"): on a machine with a CUDA GPU, in under 8 minutes,
#   1. the CUDA tests (tests/gpu: AMP bf16/fp16 steps against float32, channels-last, loader
#      workers with pinned memory, pkmodel's trainer on the GPU, torchrun with NCCL),
#   2. training images/s at 192 px, width 1.0, batch 128 (float32, bf16 and fp16 autocast,
#      channels-last; float32 contiguous; float32 fed by the trainer's loader),
#   3. the demo's synthetic data, trained on the GPU for a time budget, and its COCO AP
#      (pkmodel make-synthetic, prepare-coco, train, evaluate with the demo's settings).
# Writes OUT/gpu_check.log, OUT/gpu_check.json (every figure) and each step's log in OUT/logs/.
# Without a CUDA GPU it says so in one line and exits 0.
#
#   bash scripts/gpu_check.sh
#
# Environment: OUT (default /tmp/gpu_check); PYTHON (default python3, with torch); WORK (the
# data and runs, default /tmp/gpu_check_work); GPU_CHECK_MINUTES (training budget, default 4);
# GPU_CHECK_LIMIT_S (the whole run, default 460 s: steps are cut to fit it); GPU_CHECK_SKIP
# (step names to leave out, comma-separated: tests, synthetic, prepare_train, prepare_val,
# throughput, train, evaluate). For development: GPU_CHECK_DEVICE=cpu runs every step on the
# CPU, GPU_CHECK_QUICK=1 with tiny sizes.
# Offline machines: wheels of the packages missing there (pycocotools, albumentations and
# their dependencies) in .whl/ are installed into a temporary folder first.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
PY=${PYTHON:-python3}
DEVICE=${GPU_CHECK_DEVICE:-cuda}
QUICK=${GPU_CHECK_QUICK:-0}
OUT=${OUT:-/tmp/gpu_check}
WORK=${WORK:-/tmp/gpu_check_work}
MINUTES=${GPU_CHECK_MINUTES:-4}
LIMIT=${GPU_CHECK_LIMIT_S:-460}

if [[ $DEVICE == cuda* ]] && ! "$PY" -c 'import torch; assert torch.cuda.is_available()' \
    >/dev/null 2>&1; then
    echo "gpu_check: no CUDA GPU is available here (torch.cuda.is_available() is not True for $PY); nothing to check"
    exit 0
fi

mkdir -p "$OUT/logs" "$WORK"
OUT=$(cd "$OUT" && pwd)
WORK=$(cd "$WORK" && pwd)
STEPS=$OUT/steps.tsv
: >"$STEPS"
export NO_ALBUMENTATIONS_UPDATE=1 PYTHONUNBUFFERED=1 GPU_CHECK_DEVICE=$DEVICE \
    GPU_CHECK_QUICK=$QUICK GPU_CHECK_FIGURES=$OUT/test_figures.json
rm -f "$GPU_CHECK_FIGURES" "$OUT/pytest.xml" "$OUT/info.json" "$OUT/throughput.json"

# run_step NAME CAP_S RESERVE_S COMMAND...: COMMAND with a timeout of CAP_S seconds, or less so
# that RESERVE_S seconds stay for the steps after it within LIMIT; its output goes to
# OUT/logs/NAME.log (the last lines are shown when it fails). A failed step does not stop the run.
run_step() {
    local name=$1 cap=$2 reserve=$3
    shift 3
    local t=$((LIMIT - SECONDS - reserve)) rc=0 start=$SECONDS
    if ((t > cap)); then t=$cap; fi
    if [[ ,${GPU_CHECK_SKIP:-}, == *,$name,* ]]; then
        echo "[$name] skipped (GPU_CHECK_SKIP)"
        printf '%s\tskipped\t0\n' "$name" >>"$STEPS"
        return 0
    fi
    if ((t < 10)); then
        echo "[$name] skipped: $((LIMIT - SECONDS)) s left of the $LIMIT s limit"
        printf '%s\tskipped\t0\n' "$name" >>"$STEPS"
        return 0
    fi
    echo "[$name] (timeout $t s) ${*/#$ROOT\//}"
    timeout -k 10 "$t" "$@" >"$OUT/logs/$name.log" 2>&1 || rc=$?
    local took=$((SECONDS - start))
    if ((rc == 0)); then
        echo "[$name] ok, $took s"
    else
        echo "[$name] FAILED (exit $rc$(if ((rc == 124)); then echo ', timed out'; fi)), $took s; end of logs/$name.log:"
        { tail -n 25 "$OUT/logs/$name.log"; echo; } | sed '/^$/d; s/^/    /'
    fi
    printf '%s\t%s\t%s\n' "$name" "$rc" "$took" >>"$STEPS"
    return 0
}

main() {
    echo "gpu_check: $(date -u +%FT%TZ), device $DEVICE, quick $QUICK, out $OUT, limit $LIMIT s"

    # --- setup: packages the machine lacks, from wheels in .whl/ (no network needed) ---------
    local site=${GPU_CHECK_SITE:-/tmp/site}
    if compgen -G ".whl/*.whl" >/dev/null &&
        ! "$PY" -c 'import pycocotools, albumentations' >/dev/null 2>&1; then
        echo "[setup] installing $(ls .whl/*.whl | wc -l) wheels from .whl/ into $site"
        "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
            --disable-pip-version-check --target "$site" .whl/*.whl
        export PYTHONPATH="$site:$ROOT${PYTHONPATH:+:$PYTHONPATH}"
    else
        export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
    fi
    if ! "$PY" -c 'import pkmodel.cli, pkmodel.engine.train, pycocotools.coco, albumentations'; then
        echo "gpu_check: pkmodel or its dependencies do not import with $PY (see above); stopping"
        return 1
    fi

    # --- the machine --------------------------------------------------------------------------
    if command -v nvidia-smi >/dev/null; then
        nvidia-smi -L || true
        nvidia-smi --query-gpu=name,driver_version,memory.total,power.limit,clocks.max.sm \
            --format=csv,noheader || true
    fi
    "$PY" - "$OUT/info.json" "$DEVICE" <<'EOF' || echo "gpu_check: describing the machine failed"
import json, os, platform, sys
import torch
out, device = sys.argv[1], sys.argv[2]
cuda = device.startswith("cuda") and torch.cuda.is_available()
info = {
    "python": platform.python_version(),
    "torch": torch.__version__,
    "cuda": torch.version.cuda,
    "cudnn": torch.backends.cudnn.version() if cuda else None,
    "nccl": ".".join(map(str, torch.cuda.nccl.version())) if cuda else None,
    "device": torch.cuda.get_device_name(0) if cuda else "cpu",
    "capability": ".".join(map(str, torch.cuda.get_device_capability(0))) if cuda else None,
    "gpu_memory_gb": round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1) if cuda else None,
    "bf16_supported": torch.cuda.is_bf16_supported() if cuda else None,
    "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,
    "cores": len(os.sched_getaffinity(0)),
    "cpu_threads_torch": torch.get_num_threads(),
}
json.dump(info, open(out, "w"), indent=1)
print("  ".join(f"{k} {v}" for k, v in info.items()))
EOF

    # --- 1. the CUDA tests --------------------------------------------------------------------
    local tests_s=200  # about 70 s on a GPU; the CPU dry-run (development) is slower
    if [[ $DEVICE != cuda* ]]; then tests_s=900; fi
    run_step tests "$tests_s" 260 "$PY" -m pytest -q tests/gpu -p no:cacheprovider \
        --junitxml="$OUT/pytest.xml"
    if [[ -f $OUT/logs/tests.log ]]; then
        grep -E "passed|failed|skipped|error" "$OUT/logs/tests.log" | tail -n 1 | sed 's/^/  /' || true
    fi

    # --- 2. data: the demo's synthetic set and settings (pkmodel.tools.demo) -----------------
    local cfg=$WORK/config.toml
    rm -rf "$WORK/synthetic" "$WORK/prepared" "$WORK/train" "$WORK/eval"
    "$PY" - "$WORK" "$QUICK" "$DEVICE" <<'EOF'
import sys
from pathlib import Path
from pkmodel.common.runtime import usable_cores
from pkmodel.config import format_config, load_config
from pkmodel.tools.demo import demo_config
work, quick, device = Path(sys.argv[1]), sys.argv[2] == "1", sys.argv[3]
overrides = ["synthetic.sequences=0", f"train.device={device}"]  # no 3D step here
if device.startswith("cuda") and not quick:  # a GPU waits for data: more loader workers
    overrides.append(f"train.workers={max(1, min(12, usable_cores() - 2))}")
cfg = demo_config(load_config(None, [], {}, env={}), work, quick, overrides)
(work / "config.toml").write_text(format_config(cfg))
s, m, t = cfg.synthetic, cfg.model, cfg.train
print(f"  demo settings: {s.num_train}+{s.num_val} images {s.width}x{s.height}; model "
      f"{m.input_size} px, width {m.width_mult}; batch {t.batch_size}, lr {t.lr}, "
      f"{t.workers} workers, validation every {t.val_every} epochs, device {t.device}")
EOF
    run_step synthetic 90 200 "$PY" -m pkmodel make-synthetic --config "$cfg"
    run_step prepare_train 60 190 "$PY" -m pkmodel prepare-coco --split train --config "$cfg"
    run_step prepare_val 60 180 "$PY" -m pkmodel prepare-coco --split val --config "$cfg"

    # --- 3. training images/s at 192 px, width 1.0, batch 128 ---------------------------------
    run_step throughput 120 150 "$PY" - "$OUT/throughput.json" "$WORK/prepared/train.json" \
        "$DEVICE" "$QUICK" <<'EOF'
import json, os, statistics, sys, time
from pathlib import Path
from pkmodel.common.runtime import set_process_defaults, usable_cores
set_process_defaults()  # as the command line does, before torch loads
import torch
from pkmodel.config import load_config
from pkmodel.tools.benchmark.run import Plan, measure_training
from tests.gpu.test_cuda import build_parts, fixed_batch, train_step

out, labels, device_name, quick = sys.argv[1], Path(sys.argv[2]), sys.argv[3], sys.argv[4] == "1"
dev = torch.device(device_name)
cuda = dev.type == "cuda"
size, width, batch_size = (64, 0.35, 8) if quick else (192, 1.0, 128)
warmup, steps, repeats = (1, 2, 1) if quick else (8, 10, 3)
workers = 0 if quick else max(1, min(12, usable_cores() - 2))
if cuda:
    torch.backends.cudnn.benchmark = True  # as the trainer sets it on CUDA


def sync():
    if cuda:
        torch.cuda.synchronize()


def config(**sets):
    values = {"model.input_size": size, "model.width_mult": width, "train.batch_size": batch_size,
              "train.device": device_name, "train.workers": workers,
              "data.prepared_dir": labels.parent, **sets}
    return load_config(None, [], values, env={})


result = {"input_size": size, "width_mult": width, "batch_size": batch_size, "warmup": warmup,
          "steps": steps, "repeats": repeats, "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,
          "note": "the trainer's step (forward, loss, backward, clipping, AdamW, EMA) on one "
                  "batch kept on the device; images/s = batch x steps / time, median of repeats"}
def measure(amp, channels_last):
    cfg = config(**{"train.channels_last": channels_last, "train.amp": amp})
    parts = build_parts(cfg, dev, amp)
    batch = fixed_batch(labels, cfg, batch_size, dev)
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    for _ in range(warmup):
        train_step(parts, batch)
    sync()
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(steps):
            loss = train_step(parts, batch)
        sync()
        rates.append(steps * batch_size / (time.perf_counter() - start))
    rate = statistics.median(rates)
    return {"images_per_s": round(rate, 1), "step_ms": round(1000 * batch_size / rate, 2),
            "channels_last": channels_last, "amp": amp, "loss": round(loss.item(), 4),
            "grad_scale": parts.scaler.get_scale() if parts.scaler is not None else None,
            "peak_memory_gb": round(torch.cuda.max_memory_allocated() / 2**30, 2) if cuda else None}


failed = False
for name, amp, channels_last in (("float32", "off", True), ("bf16", "bf16", True),
                                 ("fp16", "fp16", True), ("float32_contiguous", "off", False)):
    try:
        result[name] = measure(amp, channels_last)
    except Exception as e:  # one failed figure does not cost the others
        result[name] = {"error": f"{type(e).__name__}: {e}"[:500]}
        failed = True
    print(name, result[name], flush=True)
    Path(out).write_text(json.dumps(result, indent=1))
    if cuda:
        torch.cuda.empty_cache()

# The benchmark's training figure (pkmodel.tools.benchmark): the same step fed by the trainer's
# loader (augmentation on, `workers` processes), float32, channels-last.
try:
    cfg = config(**{"benchmark.train_steps": steps})
    loader = measure_training(cfg, Plan.from_config(cfg, quick), labels)
    result["float32_loader"] = {k: round(v, 4) if isinstance(v, float) else v for k, v in loader.items()}
except Exception as e:
    result["float32_loader"] = {"error": f"{type(e).__name__}: {e}"[:500]}
    failed = True
print("float32_loader", result["float32_loader"], flush=True)
Path(out).write_text(json.dumps(result, indent=1))
sys.exit(1 if failed else 0)
EOF

    # --- 4. synthetic training on a time budget, then COCO AP -----------------------------------
    # The budget: GPU_CHECK_MINUTES, or what the limit leaves after 70 s for starting the
    # process, the last validation and saving, evaluating and the summary.
    local minutes
    minutes=$("$PY" -c 'import sys
quick, most, left = sys.argv[1] == "1", float(sys.argv[2]), float(sys.argv[3]) / 60
m = min(most, left, 0.3 if quick else most)
print(round(m, 2) if m >= (0.05 if quick else 0.5) else 0)' "$QUICK" "$MINUTES" "$((LIMIT - SECONDS - 70))")
    if [[ $minutes != 0 ]]; then
        echo "  training budget: $minutes min ($((LIMIT - SECONDS)) s of the $LIMIT s limit left)"
        run_step train "$("$PY" -c "print(int($minutes * 60 + 60))")" 35 \
            "$PY" -m pkmodel train --config "$cfg" --force --quiet --minutes "$minutes"
    else
        echo "[train] skipped: $((LIMIT - SECONDS)) s left of the $LIMIT s limit"
        printf 'train\tskipped\t0\n' >>"$STEPS"
    fi
    if [[ -f $WORK/train/best.pt ]]; then
        run_step evaluate 90 5 "$PY" -m pkmodel evaluate --config "$cfg" \
            --weights "$WORK/train/best.pt" --quiet --error-budget
    else
        echo "[evaluate] skipped: no $WORK/train/best.pt"
        printf 'evaluate\tskipped\t0\n' >>"$STEPS"
    fi
    mkdir -p "$OUT/run"
    for f in config.toml train/metrics.jsonl train/curves.png eval/metrics.json eval/best.png \
        eval/worst.png eval/pck_joints.png; do
        if [[ -f $WORK/$f ]]; then cp "$WORK/$f" "$OUT/run/${f//\//_}"; fi
    done

    # --- summary ------------------------------------------------------------------------------
    "$PY" - "$OUT" "$WORK" "$SECONDS" "$QUICK" "$DEVICE" <<'EOF'
import datetime, json, math, statistics, sys
import xml.etree.ElementTree as ET
from pathlib import Path

out, work, seconds, quick, device = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == "1", sys.argv[5]


def read(path):
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


steps = []
for line in (out / "steps.tsv").read_text().splitlines():
    name, status, took = line.split("\t")
    steps.append({"name": name, "status": "ok" if status == "0" else
                  ("skipped" if status == "skipped" else f"failed (exit {status})"),
                  "seconds": int(took)})
tests = {"passed": 0, "failed": 0, "skipped": 0, "errors": 0, "not_passed": []}
try:
    for case in ET.parse(out / "pytest.xml").getroot().iter("testcase"):
        kinds = {c.tag for c in case}
        key = "failed" if "failure" in kinds else "errors" if "error" in kinds else \
            "skipped" if "skipped" in kinds else "passed"
        tests[key] += 1
        if key != "passed":
            tests["not_passed"].append(f"{case.get('name')}: {key}")
except (OSError, ET.ParseError):
    tests["note"] = "no pytest.xml (the test step did not finish)"
tests["figures"] = read(out / "test_figures.json")

rows = []
metrics = work / "train" / "metrics.jsonl"
if metrics.is_file():
    rows = [json.loads(x) for x in metrics.read_text().splitlines() if x.strip()]
validated = [r for r in rows if "val/AP" in r]
best = max(validated, key=lambda r: r["val/AP"], default={})
ev = read(work / "eval" / "metrics.json") or {}
cfg_text = (work / "config.toml").read_text() if (work / "config.toml").is_file() else ""
speeds = [r["train/images_per_s"] for r in rows[1:]] or [r["train/images_per_s"] for r in rows]
training = {
    "epochs": len(rows),
    "planned_epochs": rows[-1].get("budget/epochs") if rows else None,
    "seconds": rows[-1]["seconds"] if rows else None,
    "best_epoch": best.get("epoch"),
    "val_AP_in_train": best.get("val/AP"),
    "images_per_s_median": round(statistics.median(speeds), 1) if speeds else None,
    "data_time_share_median": round(statistics.median(r["train/data_time_share"] for r in rows), 3) if rows else None,
    "final_train_loss": rows[-1]["train/loss"] if rows else None,
    "evaluate": {k: ev.get(k) for k in ("AP", "AP50", "AP75", "AR", "PCK", "mean_error_px")},
    "ap_if": {k: v.get("AP") for k, v in ev.get("error_budget", {}).get("rows", {}).items()},
    "config": "run/config.toml",
}
result = {
    "schema": "pkmodel.gpu_check", "version": 1,
    "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    "quick": quick, "device": device, "seconds": seconds,
    "machine": read(out / "info.json"), "steps": steps, "tests": tests,
    "throughput": read(out / "throughput.json"), "synthetic_training": training,
}
(out / "gpu_check.json").write_text(json.dumps(result, indent=1) + "\n")


def num(v, fmt=".3f"):
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, fmt)


m = result["machine"] or {}
tp = result["throughput"] or {}
lines = [
    "", f"gpu_check summary ({seconds} s{', QUICK sizes: numbers mean nothing' if quick else ''})",
    f"  machine      {m.get('device')}, torch {m.get('torch')}, CUDA {m.get('cuda')}, cuDNN {m.get('cudnn')}, NCCL {m.get('nccl')}, {m.get('cores')} cores",
    "  steps        " + ", ".join(f"{s['name']} {s['status']} {s['seconds']} s" for s in steps),
    f"  tests        {tests['passed']} passed, {tests['failed']} failed, {tests['errors']} errors, {tests['skipped']} skipped"
    + (f" ({'; '.join(tests['not_passed'])})" if tests["not_passed"] else "")
    + (f" ({tests['note']})" if "note" in tests else ""),
]
fig = tests["figures"] or {}
for amp in ("bf16", "fp16"):
    a, b = fig.get(f"amp_{amp}_first_step", {}), fig.get(f"amp_{amp}_10_steps", {})
    if a or b:
        lines.append(f"  {amp:12s} loss vs fp32 {num(a.get('loss_rel_diff'), '.1e')}, output-layer grad cos {num(a.get('output_layers_cosine'), '.4f')}, "
                     f"whole-grad cos {num(a.get('gradient_cosine'), '.3f')}, skipped {a.get('skipped_steps')}, 10-step fall ratio {num(b.get('fall_ratio'), '.3f')}")
if fig.get("channels_last"):
    c = fig["channels_last"]
    lines.append(f"  channels-last output rel diff {num(c.get('output_rel_diff'), '.1e')}, loss {num(c.get('loss_rel_diff'), '.1e')}, grad cos {num(c.get('gradient_cosine'), '.4f')}")
if fig.get("torchrun_ddp_step"):
    d = fig["torchrun_ddp_step"]
    lines.append(f"  torchrun     backend {d.get('backend')}, world size {d.get('world_size')}, NCCL {d.get('nccl_version')}")
if tp:
    lines.append(f"  train img/s  input {tp.get('input_size')}, width {tp.get('width_mult')}, batch {tp.get('batch_size')}: "
                 + ", ".join(f"{k} {num(tp[k].get('images_per_s'), '.0f')}" for k in ("float32", "bf16", "fp16", "float32_contiguous") if k in tp)
                 + (f"; loader-fed float32 {num(tp['float32_loader'].get('images_per_s'), '.0f')} ({tp['float32_loader'].get('workers')} workers, data wait {num(tp['float32_loader'].get('data_wait_share'), '.1%')})" if "float32_loader" in tp else ""))
e = training["evaluate"]
lines.append(f"  synthetic    {training['epochs']} epochs in {num(training['seconds'], '.0f')} s at {num(training['images_per_s_median'], '.0f')} img/s "
             f"(data wait {num(training['data_time_share_median'], '.1%')}); AP in train {num(training['val_AP_in_train'])} (epoch {training['best_epoch']})")
lines.append(f"  evaluate     AP {num(e['AP'])}  AP50 {num(e['AP50'])}  AP75 {num(e['AP75'])}  AR {num(e['AR'])}  PCK@0.2 {num(e['PCK'])}")
lines.append(f"  written      {out / 'gpu_check.json'}, {out / 'gpu_check.log'}, {out / 'logs'}/")
print("\n".join(lines))
EOF
    # The exit status: 1 when a step failed or was skipped.
    awk -F '\t' '$2 != "0" { bad = 1 } END { exit bad }' "$STEPS"
}

{ # one compound command, read whole before it runs: editing this file meanwhile is safe
    rc=0
    main 2>&1 | tee "$OUT/gpu_check.log" || rc=$?
    exit "$rc"
}
