"""The network's output contract, shared by the targets, the decoder and the exporters without
importing torch: output names in order, the output stride, the channel layout.

Outputs, for an input N x 3 x S x S in [-1, 1]: ``heatmaps`` N x K x h x w and ``centers``
N x 1 x h x w (sigmoid applied), ``regs`` and ``offsets`` N x 2K x h x w (raw, in cells;
channel 2j is x of joint j, 2j + 1 its y), with h = w = S / OUTPUT_STRIDE.
"""

from __future__ import annotations

OUTPUT_NAMES: tuple[str, ...] = ("heatmaps", "centers", "regs", "offsets")
# Input pixels per output cell.
OUTPUT_STRIDE = 4
