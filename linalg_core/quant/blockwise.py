"""Validated calls of the blockwise codebook kernels (ops ``block_quantize`` / ``block_dequantize``)."""

from __future__ import annotations

import math

import torch

from linalg_core import _ops
from linalg_core.quant.codebooks import midpoints

_KERNEL_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def _flat(x: torch.Tensor) -> torch.Tensor:
    x = x.reshape(-1)
    if x.dtype not in _KERNEL_DTYPES:
        x = x.to(torch.float32)
    return x.contiguous()


def bits_of(levels: torch.Tensor) -> int:
    return int(math.log2(levels.numel()))


def quantize(x: torch.Tensor, block: int, levels: torch.Tensor | None, *, scales=None, offsets=None, name="W",
             backend=None) -> tuple[torch.Tensor, torch.Tensor]:
    """(packed codes, float32 block scales) of ``x`` flattened; ``levels=None``: scales only.

    Raises ValueError naming ``name`` when ``x`` has NaN or Inf (nothing is quantized silently).
    """
    xf = _flat(x)
    dev = xf.device
    if levels is None:
        bits, mid = 0, torch.zeros(1, dtype=torch.float32, device=dev)
    else:
        bits, mid = bits_of(levels), midpoints(levels).to(dev)
    s = None if scales is None else scales.to(device=dev, dtype=torch.float32).contiguous()
    o = None if offsets is None else offsets.to(device=dev, dtype=torch.float32).contiguous()
    packed, s_out, bad = _ops.block_quantize(xf, block, mid, bits, s, o, backend=backend)
    bad = int(bad)
    if bad:
        if xf.dtype != x.dtype and x.dtype == torch.float64 and bool(torch.isfinite(x).all()):
            raise ValueError(f"{name} has {bad} value(s) beyond float32's range (the largest |{name}| is "
                             f"{float(x.abs().max()):.6g}, float32 holds up to {torch.finfo(torch.float32).max:.6g}): "
                             f"the quantizers compute in float32; scale {name} down")
        raise ValueError(f"{name} has {bad} non-finite value(s) (NaN or Inf); quantization needs finite input")
    return packed, s_out


def dequantize(packed: torch.Tensor, levels: torch.Tensor, scales: torch.Tensor, offsets, n: int, block: int,
               dtype: torch.dtype, backend=None, out=None) -> torch.Tensor:
    """(n,) values levels[code]·scale + offset of ``n`` packed codes, in ``dtype`` (into ``out``,
    a contiguous tensor of n elements of a kernel dtype, when given)."""
    out_dtype = dtype if dtype in _KERNEL_DTYPES else torch.float32
    if out is not None and (out.dtype != dtype or out_dtype != dtype or not out.is_contiguous() or out.numel() != n
                            or out.device != packed.device):
        raise ValueError(f"out must be a contiguous tensor of {n} elements of {dtype} (float32, float16 or bfloat16) "
                         f"on {packed.device}, got {tuple(out.shape)} {out.dtype} on {out.device}")
    dev = packed.device
    lv = levels.to(device=dev, dtype=torch.float32).contiguous()
    s = scales.to(device=dev, dtype=torch.float32).contiguous()
    o = None if offsets is None else offsets.to(device=dev, dtype=torch.float32).contiguous()
    if out is not None:
        _ops.block_dequantize_into(packed.contiguous(), bits_of(levels), lv, s, o, n, block, out, backend=backend)
        return out
    res = _ops.block_dequantize(packed.contiguous(), bits_of(levels), lv, s, o, n, block, out_dtype, backend=backend)
    return res if out_dtype == dtype else res.to(dtype)
