#!/usr/bin/env python3
"""Write tests/assets/decoder_vectors.json: network outputs and what each decoder style
(``pkmodel`` and ``posekit-app``) decodes from them, for a test on the app's side to replay.

Usage (after scripts/bootstrap.sh):

    .venv/bin/python scripts/decoder_vectors.py [--out tests/assets/decoder_vectors.json]

The outputs are random but sparse, so that the file stays small (a dense 48 x 48 set of 17
joints is 198,144 numbers): every output is one ``fill`` value with ``set`` entries
``[channel, y, x, value]`` on top. Values have at most four decimals (a few rounding edges, such
as 0.49999997, have more) and are meant to be read as double and converted to float32, as
Swift's ``Float(Double)`` and NumPy's ``float32`` do. Each case holds:

- centers: a few random peaks (two cases tie (23, 23) with (24, 24), where the two styles' center
  weights disagree; one has a strong center near the edge, so regressed cells leave the grid);
- regs: 34 values at every center peak: random with four decimals, whole numbers, halves and the
  rounding edges where truncation and rounding differ;
- heatmaps: a fill of 0.02 (below the app's 0.1 gate) and per joint either a few random peaks,
  weak cells around the gate (0.0999, 0.1, 0.11), or nothing above the gate (a missing joint);
  some joints get a sub-gate cell on the regressed cell, which pkmodel takes and the app skips;
- offsets: 0.5, with random values at every heatmap cell that was set.

The expectations are decode_batch's results (stride 4, score threshold 0.2, prior offset 1.8):
center and joint cells (x, y), scores, found, keypoints in input pixels and, for posekit-app,
``keypoints_norm`` = keypoints / (grid * stride), the app's ``(cell + offset) / w`` before it
undoes the letterbox (the app computes it in float32: compare within 1e-6).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from pkmodel.model.decode import DecodeSettings, decode_batch

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "tests" / "assets" / "decoder_vectors.json"
SEED = 2026
K = 17
SETTINGS = {"stride": 4, "score_threshold": 0.2, "prior_offset": 1.8}
BELOW_HALF = float(np.nextafter(np.float32(0.5), np.float32(0)))  # 0.49999997
REG_EDGES = [-2.3, -2.0, -1.5, -1.0, -0.7, -0.5, -0.3, 0.0, 0.5, 1.5, 2.0, BELOW_HALF]
# name, grid, kind of case
CASES = [
    ("random-48-a", 48, "random"),
    ("random-48-b", 48, "random"),
    ("random-48-c", 48, "random"),
    ("random-48-d", 48, "random"),
    ("center-tie-48-a", 48, "tie"),
    ("center-tie-48-b", 48, "tie"),
    ("edge-center-48", 48, "edge"),
    ("no-table-32", 32, "random"),
    ("no-table-32-edge", 32, "edge"),
]


class Sparse:
    """An output of shape C x h x w as a fill value and the cells set on top of it."""

    def __init__(self, channels: int, grid: int, fill: float) -> None:
        self.shape, self.fill, self.cells = [channels, grid, grid], fill, {}

    def set(self, c: int, y: int, x: int, value: float) -> None:
        self.cells[(c, y, x)] = float(value)

    def dense(self) -> np.ndarray:
        out = np.full(self.shape, np.float32(self.fill), np.float32)
        for (c, y, x), value in self.cells.items():
            out[c, y, x] = np.float32(value)
        return out

    def as_json(self) -> dict:
        entries = [[c, y, x, value] for (c, y, x), value in sorted(self.cells.items())]
        return {"shape": self.shape, "fill": self.fill, "set": entries}


def _value(rng: np.random.Generator, low: float, high: float) -> float:
    """A random value in [low, high) with four decimals."""
    return round(float(low + (high - low) * rng.random()), 4)


def _reg(rng: np.random.Generator) -> float:
    kind = rng.integers(0, 4)
    if kind == 0:
        return float(rng.choice(REG_EDGES))
    if kind == 1:
        return float(rng.integers(-6, 7))
    return _value(rng, -10.0, 10.0)


def make_case(rng: np.random.Generator, grid: int, kind: str) -> tuple[Sparse, ...]:
    """Sparse random outputs (heatmaps, centers, regs, offsets) of one case."""
    heat, cen = Sparse(K, grid, 0.02), Sparse(1, grid, 0.0)
    regs, offs = Sparse(2 * K, grid, 0.0), Sparse(2 * K, grid, 0.5)
    peaks = [(int(y), int(x)) for y, x in rng.integers(grid // 4, 3 * grid // 4, (4, 2))]
    for y, x in peaks:
        cen.set(0, y, x, _value(rng, 0.2, 0.9))
    if kind == "tie":  # pkmodel's prior ties (23, 23) with (24, 24); the app's table does not
        for y, x in ((23, 23), (24, 24)):
            cen.set(0, y, x, 0.95)
            peaks.append((y, x))
    if kind == "edge":  # a center strong enough to win near the edge
        y, x = int(rng.integers(0, grid)), int(rng.integers(0, 3))
        cen.set(0, y, x, 40.0)
        peaks.append((y, x))
    for y, x in peaks:
        for c in range(2 * K):
            regs.set(c, y, x, _reg(rng))
    for j in range(K):
        kind_j = rng.choice(["peaks", "peaks", "peaks", "weak", "missing"])
        cells = []
        if kind_j == "peaks":
            for _ in range(int(rng.integers(1, 4))):
                y, x = (int(v) for v in rng.integers(0, grid, 2))
                cells.append((y, x, _value(rng, 0.3, 1.0)))
                for dy, dx in ((0, 1), (1, 0), (0, -1), (-1, 0)):
                    if 0 <= y + dy < grid and 0 <= x + dx < grid and rng.random() < 0.5:
                        cells.append((y + dy, x + dx, _value(rng, 0.05, 0.6)))
        elif kind_j == "weak":
            for value in rng.choice([0.0999, 0.1, 0.1, 0.11, 0.12], int(rng.integers(1, 4))):
                cells.append((*(int(v) for v in rng.integers(0, grid, 2)), float(value)))
        else:
            for _ in range(int(rng.integers(0, 3))):
                cells.append((*(int(v) for v in rng.integers(0, grid, 2)), 0.0999))
        for y, x, value in cells:
            heat.set(j, y, x, value)
            offs.set(2 * j, y, x, _value(rng, 0.0, 1.0))
            offs.set(2 * j + 1, y, x, _value(rng, 0.0, 1.0))
    # Sub-gate cells on some joints' regressed cells (either style's): pkmodel may take them,
    # the app skips them.
    outs = tuple(s.dense()[None] for s in (heat, cen, regs, offs))
    for style in ("pkmodel", "posekit-app"):
        cx, cy = decode_batch(outs, DecodeSettings(**SETTINGS, style=style)).center[0]
        for j in (int(j) for j in rng.choice(K, 3, replace=False)):
            reg = outs[2][0, 2 * j : 2 * j + 2, cy, cx]
            if style == "pkmodel":
                step = np.floor(reg.astype(np.float64) + 0.5)
            else:
                step = np.trunc(reg + np.float32(0.5))  # Int(reg + 0.5) in Float
            x, y = int(cx + step[0]), int(cy + step[1])
            if 0 <= x < grid and 0 <= y < grid and (j, y, x) not in heat.cells:
                heat.set(j, y, x, 0.0999)
                offs.set(2 * j, y, x, _value(rng, 0.0, 1.0))
                offs.set(2 * j + 1, y, x, _value(rng, 0.0, 1.0))
    return heat, cen, regs, offs


def expected(outs: tuple[np.ndarray, ...], style: str) -> dict:
    dec = decode_batch(outs, DecodeSettings(**SETTINGS, style=style))
    want = {
        "center": dec.center[0].tolist(),
        "cells": dec.cells[0].tolist(),
        "scores": dec.scores[0].tolist(),
        "found": dec.found[0].tolist(),
        "keypoints": dec.keypoints[0].tolist(),
    }
    if style == "posekit-app":
        _, _, h, w = outs[0].shape
        side = np.array([w, h]) * SETTINGS["stride"]
        want["keypoints_norm"] = (dec.keypoints[0] / side).tolist()
    return want


def build(seed: int = SEED) -> dict:
    rng = np.random.default_rng(seed)
    cases = []
    for name, grid, kind in CASES:
        sparse = make_case(rng, grid, kind)
        outs = tuple(s.dense()[None] for s in sparse)
        cases.append(
            {
                "name": name,
                "grid": [grid, grid],
                "outputs": {
                    n: s.as_json()
                    for n, s in zip(("heatmaps", "centers", "regs", "offsets"), sparse, strict=True)
                },
                "expected": {style: expected(outs, style) for style in ("pkmodel", "posekit-app")},
            }
        )
    return {
        "format": "pkmodel-decoder-vectors/1",
        "about": (
            "Network outputs (batch 1, NCHW: heatmaps 17, centers 1, regs 34 and offsets 34 "
            "channels, regs and offsets x then y per joint) and what pkmodel's decoder styles "
            "give. Each output: 'fill' everywhere, then 'set' [[channel, y, x, value]]; read "
            "numbers as double, convert to float32. Expected: center and cells are (x, y) grid "
            "cells, keypoints input pixels ((cell + offset) * stride), keypoints_norm "
            "(posekit-app) = keypoints / (grid * stride), the app's normalised output with an "
            "identity letterbox (float32 in the app: compare within 1e-6). A missing joint "
            "(posekit-app) is (0.5, 0.5) with score 0. Written by scripts/decoder_vectors.py."
        ),
        "seed": seed,
        "settings": SETTINGS,
        "cases": cases,
    }


def dumps(obj: object, indent: int = 0) -> str:
    """JSON with one level of structure per line and every list of numbers on one line."""
    pad, inner = " " * indent, " " * (indent + 1)
    if isinstance(obj, dict):
        items = [f"{inner}{json.dumps(k)}: {dumps(v, indent + 1)}" for k, v in obj.items()]
        return "{\n" + ",\n".join(items) + f"\n{pad}}}"
    if isinstance(obj, list) and any(isinstance(v, dict) for v in obj):
        return "[\n" + ",\n".join(inner + dumps(v, indent + 1) for v in obj) + f"\n{pad}]"
    return json.dumps(obj, separators=(",", ":"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=OUT, help="the JSON file to write")
    parser.add_argument("--seed", type=int, default=SEED, help="random seed of the cases")
    args = parser.parse_args()
    text = dumps(build(args.seed)) + "\n"
    args.out.write_text(text)
    print(f"wrote {args.out} ({len(text.encode()):,} bytes, {len(CASES)} cases)")


if __name__ == "__main__":
    main()
