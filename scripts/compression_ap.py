#!/usr/bin/env python3
"""The AP price of export precision and weight compression: one checkpoint evaluated as PyTorch
FP32, ONNX, Core ML FP16, Core ML int8 and Core ML palettised (6 and 4 bits), every export run
through the same evaluation (the Core ML programs by pkmodel's Core ML runner).

Usage (after scripts/bootstrap.sh):

    .venv/bin/python scripts/compression_ap.py --weights CKPT --labels PREPARED/val.json \
        [--coco ANNOTATIONS.json IMAGES_DIR]... [--out DIR]

Prints a Markdown table (size on disk; AP, AP50 and PCK@0.2 per data set) and writes it with
the raw metrics to OUT/compression_ap.json. Palettes are made both ways: k-means tables (these
rows need scikit-learn, and are left out without it) and uniform ones.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

from pkmodel.common.atomic import atomic_write_json  # noqa: E402
from pkmodel.config import load_config  # noqa: E402
from pkmodel.engine.evaluate import evaluate_weights, prepare_for_evaluation  # noqa: E402
from pkmodel.export.common import path_size  # noqa: E402
from pkmodel.export.coreml import export_coreml, palette_mode  # noqa: E402
from pkmodel.export.onnx import export_onnx  # noqa: E402

VARIANTS = [
    ("PyTorch FP32 (checkpoint)", None, {}),
    ("ONNX FP32", ".onnx", {}),
    ("Core ML FP16", ".mlpackage", {}),
    ("Core ML int8", ".mlpackage", {"export.compress": "int8"}),
]
for _bits in (6, 4):
    for _mode in ("kmeans", "uniform"):
        VARIANTS.append((
            f"Core ML palette {_bits}-bit, {'k-means' if _mode == 'kmeans' else 'uniform'}",
            ".mlpackage",
            {"export.compress": "palette", "export.palette_bits": _bits, "export.palette_mode": _mode},
        ))  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--weights", type=Path, required=True)
    parser.add_argument("--labels", type=Path, required=True, help="a prepared split (JSON)")
    parser.add_argument("--coco", nargs=2, action="append", default=[], metavar=("ANN", "IMAGES"))
    parser.add_argument("--out", type=Path, default=Path("runs/compression_ap"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    base = load_config(None, [], {}, env={})
    base.eval.flip_test = False
    base.train.workers = 0
    start = time.perf_counter()

    with tempfile.TemporaryDirectory(prefix="pkmodel-compression-") as tmp:
        tmp = Path(tmp)
        sets = [(args.labels.parent.name + "/" + args.labels.name, args.labels, None)]
        for i, (ann, images) in enumerate(args.coco):
            summary = prepare_for_evaluation(ann, images, tmp / f"coco{i}", base)
            sets.append((Path(ann).name, summary.labels, ann))
        rows = []
        for name, suffix, sets_ in VARIANTS:
            if sets_.get("export.palette_mode") == "kmeans" and palette_mode("auto") != "kmeans":
                print(f"{name}: left out (k-means needs scikit-learn)", file=sys.stderr)
                continue
            cfg = load_config(None, [], {**sets_}, env={})
            if suffix is None:
                path = args.weights
            elif suffix == ".onnx":
                path = export_onnx(args.weights, tmp / "model.onnx", cfg).path
            else:
                path = export_coreml(args.weights, tmp / f"m{len(rows)}.mlpackage", cfg).path
            metrics = {}
            for set_name, labels, annotations in sets:
                m = evaluate_weights(path, labels, base, annotations=annotations)
                metrics[set_name] = {k: m[k] for k in ("AP", "AP50", "PCK")}
            rows.append({"variant": name, "size_bytes": path_size(path), "metrics": metrics})
            print(f"{name}: " + "; ".join(
                f"{s} AP {m['AP']:.3f} PCK {m['PCK']:.3f}" for s, m in metrics.items()),
                file=sys.stderr)  # fmt: skip

    names = [s for s, _, _ in sets]
    head = "| variant | size | " + " | ".join(f"{n}: AP / AP50 / PCK" for n in names) + " |"
    lines = [head, "|---|---|" + "---|" * len(names)]
    for row in rows:
        cells = [
            f"{m['AP']:.3f} / {m['AP50']:.3f} / {m['PCK']:.3f}"
            for m in (row["metrics"][n] for n in names)
        ]
        lines.append(f"| {row['variant']} | {row['size_bytes'] / 1e6:.2f} MB | " + " | ".join(cells) + " |")  # fmt: skip
    table = "\n".join(lines)
    print(table)
    print(f"{time.perf_counter() - start:.0f} s")
    atomic_write_json(
        args.out / "compression_ap.json",
        {"weights": str(args.weights), "rows": rows, "table": table},
    )  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
