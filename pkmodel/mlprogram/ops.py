"""The MIL operations the runner knows, on PyTorch CPU tensors (NCHW).

Each function takes the operation's resolved arguments (tensors for computed values, NumPy
arrays or Python scalars for constants) and returns its output. Semantics follow coremltools'
op definitions (``coremltools.converters.mil.mil.ops.defs``), including their defaults.
Precision is handled by the caller (run.py): every value is held as float32 and a value the
program types as fp16 is rounded to fp16 after the operation that makes it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F


def as_tensor(value: Any) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value
    array = np.asarray(value)
    if array.dtype.kind == "f":
        return torch.from_numpy(np.ascontiguousarray(array, np.float32))
    if array.dtype == np.bool_:
        return torch.from_numpy(np.ascontiguousarray(array))
    return torch.from_numpy(np.ascontiguousarray(array, np.int64))


def as_list(value: Any) -> list[int]:
    return [int(v) for v in np.asarray(value).reshape(-1)]


def _conv_padding(x: torch.Tensor, weight: torch.Tensor, strides, dilations, pad_type, pad):
    """[top, bottom, left, right] for MIL's pad_type (valid, custom, same, same_lower)."""
    if pad_type == "valid":
        return [0, 0, 0, 0]
    if pad_type == "custom":
        return as_list(pad) if pad is not None else [0, 0, 0, 0]
    if pad_type in ("same", "same_lower"):
        out = []
        for size, k, s, d in zip(x.shape[2:], weight.shape[2:], strides, dilations, strict=True):
            total = max((-(-size // s) - 1) * s + (k - 1) * d + 1 - size, 0)
            small, large = total // 2, total - total // 2
            out += [large, small] if pad_type == "same_lower" else [small, large]
        return out
    raise ValueError(f"pad_type {pad_type!r}")


def conv(x, weight, bias=None, strides=None, pad_type="valid", pad=None, dilations=None, groups=1):
    x, weight = as_tensor(x), as_tensor(weight)
    if x.dim() != 4:
        raise ValueError(f"only 2-D convolutions are supported (input rank {x.dim()})")
    strides = as_list(strides) if strides is not None else [1, 1]
    dilations = as_list(dilations) if dilations is not None else [1, 1]
    top, bottom, left, right = _conv_padding(x, weight, strides, dilations, str(pad_type), pad)
    if top == bottom and left == right:
        padding = (top, left)
    else:
        x = F.pad(x, (left, right, top, bottom))
        padding = (0, 0)
    b = as_tensor(bias) if bias is not None else None
    return F.conv2d(x, weight, b, strides, padding, dilations, int(groups))


def _binary(fn: Callable[[Any, Any], Any]) -> Callable[..., torch.Tensor]:
    def op(x, y):
        return fn(as_tensor(x), as_tensor(y))

    return op


def clip(x, alpha, beta):
    return torch.clamp(as_tensor(x), float(alpha), float(beta))


def cast(x, dtype):
    x = as_tensor(x)
    dtype = str(dtype)
    if dtype in ("fp16", "fp32", "fp64"):
        return x.float()
    if dtype.startswith(("int", "uint")):
        # Toward zero, as coremltools' cast (NumPy astype) and Core ML do: -3.6 -> -3, 6.7 -> 6.
        return x.trunc().long() if x.is_floating_point() else x.long()
    if dtype == "bool":
        return x != 0
    raise ValueError(f"cast to {dtype}")


def _out_size(x: torch.Tensor, sh, sw) -> tuple[int, int]:
    return int(np.floor(x.shape[-2] * float(sh))), int(np.floor(x.shape[-1] * float(sw)))


def upsample_nearest_neighbor(x, scale_factor_height=1, scale_factor_width=1):
    x = as_tensor(x)
    return F.interpolate(x, size=_out_size(x, scale_factor_height, scale_factor_width), mode="nearest")  # fmt: skip


def _grid(size_in: int, size_out: int, align_corners: bool, half_pixel: bool) -> torch.Tensor:
    """Sample positions of MIL's upsample_bilinear / resize_bilinear along one axis."""
    i = torch.arange(size_out, dtype=torch.float64)
    if align_corners:
        spacing = (size_in - 1) / (size_out - 1) if size_out > 1 else 0.0
        grid = i * spacing
    elif half_pixel:
        spacing = size_in / size_out
        grid = i * spacing + 0.5 * spacing - 0.5
    else:
        grid = i * (size_in / size_out)
    return grid.clamp(0, size_in - 1)


def _lerp_axis(x: torch.Tensor, grid: torch.Tensor, axis: int) -> torch.Tensor:
    lo = grid.floor().long()
    hi = (lo + 1).clamp(max=x.shape[axis] - 1)
    frac = (grid - lo).float()
    shape = [1] * x.dim()
    shape[axis] = -1
    frac = frac.reshape(shape)
    return x.index_select(axis, lo) * (1 - frac) + x.index_select(axis, hi) * frac


def upsample_bilinear(x, scale_factor_height=1, scale_factor_width=1, align_corners=True,
                      half_pixel_centers=None):  # fmt: skip
    x = as_tensor(x)
    h, w = _out_size(x, scale_factor_height, scale_factor_width)
    ac = bool(align_corners)
    half = (not ac) if half_pixel_centers is None else bool(half_pixel_centers)
    y = _lerp_axis(x, _grid(x.shape[-2], h, ac, half), x.dim() - 2)
    return _lerp_axis(y, _grid(x.shape[-1], w, ac, half), x.dim() - 1)


def concat(values, axis, interleave=False):
    if bool(interleave):
        raise ValueError("interleave = true")
    return torch.cat([as_tensor(v) for v in values], int(axis))


def split(x, axis, num_splits=None, split_sizes=None):
    """A tuple of tensors along ``axis``: ``split_sizes`` when given, else ``num_splits`` equal
    parts (the size along ``axis`` must divide evenly)."""
    x, axis = as_tensor(x), int(axis)
    if split_sizes is not None:
        sizes = as_list(split_sizes)
        if sum(sizes) != x.shape[axis]:
            raise ValueError(f"split_sizes {sizes} do not add up to {x.shape[axis]}")
    elif num_splits is not None:
        count = int(num_splits)
        if count <= 0 or x.shape[axis] % count:
            raise ValueError(f"{x.shape[axis]} does not split into {count} equal parts")
        sizes = [x.shape[axis] // count] * count
    else:
        raise ValueError("split needs num_splits or split_sizes")
    return torch.split(x, sizes, axis)


def reverse(x, axes=None):
    x = as_tensor(x)
    return torch.flip(x, as_list(axes) if axes is not None else list(range(x.dim())))


def reshape(x, shape):
    return as_tensor(x).reshape(as_list(shape))


def transpose(x, perm):
    return as_tensor(x).permute(as_list(perm))


def batch_norm(x, mean, variance, gamma=None, beta=None, epsilon=1e-5):
    x = as_tensor(x)
    shape = [1, -1] + [1] * (x.dim() - 2)
    scale = 1 / torch.sqrt(as_tensor(variance) + float(epsilon))
    if gamma is not None:
        scale = scale * as_tensor(gamma)
    out = (x - as_tensor(mean).reshape(shape)) * scale.reshape(shape)
    return out + as_tensor(beta).reshape(shape) if beta is not None else out


def _pool(fn):
    def op(x, kernel_sizes, strides, pad_type="valid", pad=None, ceil_mode=False, **_):
        x = as_tensor(x)
        kernel = as_list(kernel_sizes)
        weight = torch.empty(1, 1, *kernel)
        top, bottom, left, right = _conv_padding(x, weight, as_list(strides), [1, 1], str(pad_type), pad)  # fmt: skip
        if (top, bottom, left, right) != (0, 0, 0, 0):
            x = F.pad(x, (left, right, top, bottom), value=-float("inf") if fn is F.max_pool2d else 0.0)  # fmt: skip
        return fn(x, kernel, as_list(strides), ceil_mode=bool(ceil_mode))

    return op


OPS: dict[str, Callable[..., torch.Tensor]] = {
    "conv": conv,
    "add": _binary(torch.add),
    "sub": _binary(torch.sub),
    "mul": _binary(torch.mul),
    "real_div": _binary(torch.div),
    "maximum": _binary(torch.maximum),
    "minimum": _binary(torch.minimum),
    "relu": lambda x: torch.relu(as_tensor(x)),
    "relu6": lambda x: torch.clamp(as_tensor(x), 0.0, 6.0),
    "sigmoid": lambda x: torch.sigmoid(as_tensor(x)),
    "tanh": lambda x: torch.tanh(as_tensor(x)),
    "silu": lambda x: F.silu(as_tensor(x)),
    "clip": clip,
    "cast": cast,
    "identity": lambda x: as_tensor(x),
    "upsample_nearest_neighbor": upsample_nearest_neighbor,
    "upsample_bilinear": upsample_bilinear,
    "concat": concat,
    "split": split,
    "reshape": reshape,
    "reverse": reverse,
    "transpose": transpose,
    "batch_norm": batch_norm,
    "max_pool": _pool(F.max_pool2d),
    "avg_pool": _pool(F.avg_pool2d),
}


# --------------------------------------------------------------------------------------------
# Compressed weights: constexpr ops, evaluated once when the program is loaded (NumPy)


def _along(values: np.ndarray, rank: int, axis: int) -> np.ndarray:
    """A per-channel vector shaped to broadcast along ``axis`` of a rank-``rank`` tensor."""
    values = np.asarray(values)
    if values.ndim == 0:
        return values
    shape = [1] * rank
    shape[axis % rank] = -1
    return values.reshape(shape)


def affine_dequantize(quantized_data, zero_point, scale, axis):
    """iOS 16: ``(quantized - zero_point) * scale``, per channel along ``axis``."""
    q = np.asarray(quantized_data)
    zp = _along(zero_point, q.ndim, int(axis)).astype(np.float32)
    s = _along(scale, q.ndim, int(axis)).astype(np.float32)
    return (q.astype(np.float32) - zp) * s


def lut_to_dense(indices, lut, shape=None):
    """iOS 16: one table of 2^n values per tensor, n-bit indices packed into bytes
    (first index in the lowest bits); iOS 18: typed sub-byte indices of the dense shape and a
    table per block (lut: [*blocks, 2^n, vector_size])."""
    from pkmodel.mlprogram.blobs import unpack_bits

    lut = np.asarray(lut)
    if shape is not None:  # iOS 16 form
        dense = as_list(shape)
        count = int(np.prod(dense))
        bits = int(np.log2(lut.size))
        if 1 << bits != lut.size:
            raise ValueError(f"a lookup table of {lut.size} entries is not 2^n")
        idx = unpack_bits(np.asarray(indices, np.uint8), bits, count)
        return lut.reshape(-1)[idx].reshape(dense)
    idx = np.asarray(indices).astype(np.int64)
    if lut.shape[-1] != 1:
        raise ValueError("vector palettisation (lut vector size > 1)")
    rank = idx.ndim
    blocks = lut.shape[:rank]
    out = np.empty(idx.shape, lut.dtype)
    step = [s // b for s, b in zip(idx.shape, blocks, strict=True)]
    for block in np.ndindex(*blocks):
        sl = tuple(slice(b * st, (b + 1) * st) for b, st in zip(block, step, strict=True))
        out[sl] = lut[block][idx[sl], 0]
    return out


def blockwise_shift_scale(data, scale, offset=None):
    """iOS 18: ``(data - offset) * scale`` with scale / offset per block (each of their axes
    divides the data's)."""
    data = np.asarray(data).astype(np.float32)
    scale = np.asarray(scale).astype(np.float32)

    def expand(v: np.ndarray) -> np.ndarray:
        for axis, (n, b) in enumerate(zip(data.shape, v.shape, strict=True)):
            v = np.repeat(v, n // b, axis=axis)
        return v

    if offset is not None:
        data = data - expand(np.asarray(offset).astype(np.float32))
    return data * expand(scale)


CONSTEXPR_OPS: dict[str, Callable[..., np.ndarray]] = {
    "constexpr_affine_dequantize": affine_dequantize,
    "constexpr_lut_to_dense": lut_to_dense,
    "constexpr_blockwise_shift_scale": blockwise_shift_scale,
}
