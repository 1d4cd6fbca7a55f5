"""Reference blockwise codebook quantization: ``torch.bucketize`` against the midpoints and
MSB-first bit packing with integer shifts; GGUF Q4_0 / Q8_0 blocks in torch ops, the steps of
``gguf.quants`` (gguf-py's numpy code) one for one."""

from __future__ import annotations

import torch

from linalg_core import _ops
from linalg_core.backends.reference.random import ANY_DEVICE

_IN = (torch.float32, torch.float16, torch.bfloat16)


def pack_bits(codes: torch.Tensor, bits: int) -> torch.Tensor:
    """codes (n,) uint8 < 2^bits -> (ceil(n·bits/8),) uint8, MSB-first (8 codes -> ``bits`` bytes)."""
    n = codes.numel()
    groups = -(-n // 8)
    c = torch.zeros(groups * 8, dtype=torch.int64, device=codes.device)
    c[:n] = codes.to(torch.int64)
    shifts = torch.arange(7, -1, -1, device=codes.device) * bits
    acc = (c.view(groups, 8) << shifts).sum(1)
    byte_shifts = torch.arange(bits - 1, -1, -1, device=codes.device) * 8
    out = ((acc[:, None] >> byte_shifts) & 0xFF).to(torch.uint8).reshape(-1)
    return out[: -(-n * bits // 8)]


def unpack_bits(packed: torch.Tensor, bits: int, n: int) -> torch.Tensor:
    """Inverse of :func:`pack_bits`: (n,) int64 codes."""
    groups = -(-n // 8)
    p = torch.zeros(groups * bits, dtype=torch.int64, device=packed.device)
    p[: packed.numel()] = packed.to(torch.int64)
    byte_shifts = torch.arange(bits - 1, -1, -1, device=packed.device) * 8
    acc = (p.view(groups, bits) << byte_shifts).sum(1)
    shifts = torch.arange(7, -1, -1, device=packed.device) * bits
    return ((acc[:, None] >> shifts) & ((1 << bits) - 1)).reshape(-1)[:n]


def _blocks(x: torch.Tensor, block: int) -> torch.Tensor:
    n = x.numel()
    nb = -(-n // block)
    xb = torch.zeros(nb * block, dtype=torch.float32, device=x.device)
    xb[:n] = x.reshape(-1)
    return xb.view(nb, block)


@_ops.block_quantize.register("reference", devices=ANY_DEVICE, dtypes=_IN)
def block_quantize(x, block, mid, bits, scales, offsets):
    n = x.numel()
    xb = _blocks(x, block)
    s = xb.abs().amax(1) if scales is None else scales.to(torch.float32, copy=True)
    bad = int((~torch.isfinite(x)).sum())
    if bits == 0:
        return torch.empty(0, dtype=torch.uint8, device=x.device), s, bad
    inv = 1.0 / s.clamp(min=1e-38)
    v = xb if offsets is None else xb - offsets.to(torch.float32)[:, None]
    codes = torch.bucketize(v * inv[:, None], mid, right=False).reshape(-1)[:n]
    return pack_bits(codes.to(torch.uint8), bits), s, bad


@_ops.block_dequantize.register("reference", devices=ANY_DEVICE, dtypes=_IN)
def block_dequantize(packed, bits, levels, scales, offsets, n, block, out_dtype):
    codes = unpack_bits(packed, bits, n)
    nb = scales.numel()
    vals = torch.zeros(nb * block, dtype=torch.float32, device=packed.device)
    vals[:n] = levels[codes]
    vals = vals.view(nb, block) * scales[:, None]
    if offsets is not None:
        vals = vals + offsets[:, None]
    return vals.reshape(-1)[:n].to(out_dtype)


@_ops.block_dequantize_into.register("reference", devices=ANY_DEVICE, dtypes=_IN)
def block_dequantize_into(packed, bits, levels, scales, offsets, n, block, out):
    out.view(-1).copy_(block_dequantize(packed, bits, levels, scales, offsets, n, block, out.dtype))


def _np_byte(t: torch.Tensor) -> torch.Tensor:
    """numpy's float32 -> uint8 / int8 cast on x86-64 (through int32, keeping the low byte; NaN and
    values outside int32 give 0), as int32 in [0, 255]."""
    safe = torch.where((t > -2147483648.0) & (t < 2147483648.0), t, torch.zeros_like(t))
    return safe.to(torch.int32) & 0xFF


@_ops.gguf_quantize.register("reference", devices=ANY_DEVICE, dtypes=_IN)
def gguf_quantize(x, bits):
    xb = x.reshape(-1, 32).to(torch.float32)
    nb = xb.shape[0]
    if bits == 4:
        d = torch.gather(xb, 1, xb.abs().argmax(1, keepdim=True)) / -8  # the first element of largest magnitude
        inv = torch.where(d == 0, torch.zeros_like(d), 1 / d)
        q = _np_byte(torch.trunc(xb * inv + 8.5)).clamp(max=15).to(torch.uint8).view(nb, 2, 16)
        qs = q[:, 0] | (q[:, 1] << 4)
    else:
        d = xb.abs().amax(1, keepdim=True) / 127
        inv = torch.where(d == 0, torch.zeros_like(d), 1 / d)
        y = xb * inv
        a = y.abs()
        fl = torch.floor(a)
        r = fl + torch.floor(2 * (a - fl))  # round half away from zero (gguf's np_roundf)
        qs = _np_byte(torch.where(y < 0, -r, r)).to(torch.uint8)
    d16 = d.to(torch.float16)
    a = d16.abs()
    special = int(((a < torch.finfo(torch.float16).tiny) | ~torch.isfinite(a)).sum())  # zero, subnormal, Inf
    bad = int((~torch.isfinite(x)).sum())
    return torch.cat([d16.view(torch.uint8).reshape(nb, 2), qs], 1).contiguous(), bad, special


@_ops.gguf_dequantize.register("reference", devices=ANY_DEVICE, dtypes=_IN)
def gguf_dequantize(blocks, bits, n, out_dtype):
    blocks = blocks[: -(-n // 32)]
    d = blocks[:, :2].contiguous().view(torch.float16).to(torch.float32)
    if bits == 4:
        qs = blocks[:, 2:]
        q = torch.cat([qs & 0x0F, qs >> 4], 1).to(torch.float32) - 8
    else:
        q = blocks[:, 2:].contiguous().view(torch.int8).to(torch.float32)
    return (d * q).reshape(-1)[:n].to(out_dtype)


@_ops.gguf_dequantize_into.register("reference", devices=ANY_DEVICE, dtypes=_IN)
def gguf_dequantize_into(blocks, bits, n, out):
    out.view(-1).copy_(gguf_dequantize(blocks, bits, n, out.dtype))
