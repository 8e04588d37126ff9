"""The REFERENCE decoder of the tests: deliberately simple loops, slow.

``decode_reference`` spells out the decoder of ``pkmodel.model.decode`` with plain Python loops
over samples, joints and cells, so that it can be checked by reading.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from pkmodel.model.decode import Decoded, DecodeSettings


def decode_reference(
    outputs: Sequence[np.ndarray], settings: DecodeSettings = DecodeSettings()
) -> Decoded:
    """Loop over every sample, joint and cell; ties go to the first cell in row-major order.

    Weights are rounded to float32 and divided in float32, as in the vectorised decoder.
    """
    heatmaps, centers, regs, offsets = outputs
    stride, score_threshold, prior_offset = (
        settings.stride, settings.score_threshold, settings.prior_offset
    )  # fmt: skip
    f32 = np.float32
    n, k, h, w = heatmaps.shape
    keypoints = np.zeros((n, k, 2))
    scores = np.zeros((n, k))
    found = np.zeros((n, k), bool)
    center = np.zeros((n, 2), np.int64)
    cells = np.zeros((n, k, 2), np.int64)
    gx, gy = (w - 1) / 2.0, (h - 1) / 2.0
    for i in range(n):
        best, cx, cy = -math.inf, 0, 0
        for y in range(h):
            for x in range(w):
                prior = f32(1.0 / (math.sqrt((x - gx) ** 2 + (y - gy) ** 2) + prior_offset))
                value = f32(centers[i, 0, y, x]) * prior
                if value > best:
                    best, cx, cy = value, x, y
        center[i] = (cx, cy)
        for j in range(k):
            reg_x = float(regs[i, 2 * j, cy, cx])
            reg_y = float(regs[i, 2 * j + 1, cy, cx])
            rx = min(max(cx + math.floor(reg_x + 0.5), 0), w - 1)
            ry = min(max(cy + math.floor(reg_y + 0.5), 0), h - 1)
            best, jx, jy = -math.inf, 0, 0
            for y in range(h):
                for x in range(w):
                    denom = f32(math.sqrt((x - rx) ** 2 + (y - ry) ** 2) + prior_offset)
                    value = f32(heatmaps[i, j, y, x]) / denom
                    if value > best:
                        best, jx, jy = value, x, y
            score = float(heatmaps[i, j, jy, jx])
            keypoints[i, j, 0] = (jx + float(offsets[i, 2 * j, jy, jx])) * stride
            keypoints[i, j, 1] = (jy + float(offsets[i, 2 * j + 1, jy, jx])) * stride
            scores[i, j] = score
            found[i, j] = score >= score_threshold
            cells[i, j] = (jx, jy)
    return Decoded(keypoints, scores, found, center, cells)
