"""NumPy oracles of the blockwise codebook kernels (ops ``block_quantize`` / ``block_dequantize``),
written from their definitions and independent of linalg_core: the nearest level of
(x - o_b) / s_b in float64 (ties to the lower level), MSB-first bit packing with ``np.packbits``,
and the dequantized values level·s + o rounded to float32 after each operation."""

from __future__ import annotations

import numpy as np


def block_index(n: int, block: int) -> np.ndarray:
    """Block of each element: (n,) int64."""
    return np.arange(n, dtype=np.int64) // block


def absmax(x, block: int) -> np.ndarray:
    """Per-block max |x| (the last block may be partial): (ceil(n/block),) float64."""
    x = np.abs(np.asarray(x, np.float64).reshape(-1))
    nb = -(-x.size // block)
    xb = np.zeros(nb * block)
    xb[: x.size] = x
    return xb.reshape(nb, block).max(1)


def nearest_codes(x, block: int, levels, scales=None, offsets=None) -> np.ndarray:
    """Index of the level nearest to (x_i - o_b) / max(s_b, 1e-38), i in block b, in float64.

    ``scales`` None: the block absmax; ``offsets`` None: 0. Ties go to the lower level (levels
    sorted ascending; ``argmin`` returns the first of equal distances).
    Shape: x (n,), levels (L,), scales / offsets (ceil(n/block),) -> (n,) int64.
    """
    x = np.asarray(x, np.float64).reshape(-1)
    lv = np.asarray(levels, np.float64)
    b = block_index(x.size, block)
    s = absmax(x, block) if scales is None else np.asarray(scales, np.float64)
    o = np.zeros(s.size) if offsets is None else np.asarray(offsets, np.float64)
    v = (x - o[b]) / np.maximum(s[b], 1e-38)
    return np.abs(v[:, None] - lv[None, :]).argmin(1).astype(np.int64)


def pack_msb(codes, bits: int) -> np.ndarray:
    """codes (n,) < 2^bits -> (ceil(n·bits/8),) uint8: the codes' bits, most significant first,
    concatenated and cut into bytes (the last byte zero-padded)."""
    c = np.asarray(codes, np.int64).reshape(-1)
    if c.size and (c.min() < 0 or c.max() >= 1 << bits):
        raise ValueError(f"codes must lie in [0, {1 << bits}), got [{c.min()}, {c.max()}]")
    bitstream = ((c[:, None] >> np.arange(bits - 1, -1, -1)) & 1).astype(np.uint8).reshape(-1)
    return np.packbits(bitstream)  # bitorder="big"


def unpack_msb(packed, bits: int, n: int) -> np.ndarray:
    """Inverse of :func:`pack_msb`: (n,) int64."""
    bitstream = np.unpackbits(np.asarray(packed, np.uint8))[: n * bits].reshape(n, bits).astype(np.int64)
    return (bitstream << np.arange(bits - 1, -1, -1)).sum(1)


def bf16_bits(v: np.ndarray) -> np.ndarray:
    """float32 -> bfloat16 (round to nearest even, NaN kept quiet) as uint16 bit patterns."""
    u = np.asarray(v, np.float32).view(np.uint32).astype(np.uint64)
    r = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)
    return np.where(np.isnan(v), np.uint16(0x7FC0), r)


def dequantize(codes, block: int, levels, scales, offsets=None) -> np.ndarray:
    """level[c_i]·s_b + o_b in float32, each operation rounded (no FMA): (n,) float32."""
    c = np.asarray(codes, np.int64).reshape(-1)
    b = block_index(c.size, block)
    lv = np.asarray(levels, np.float32)
    out = lv[c] * np.asarray(scales, np.float32)[b]
    if offsets is not None:
        out = out + np.asarray(offsets, np.float32)[b]
    return out


# --- GGUF Q4_0 / Q8_0 (ggml-quants.c's quantize_row_q4_0_ref / q8_0_ref, dequantize_row_*) ----------

def _x86_byte(t) -> np.ndarray:
    """A C float -> uint8 / int8 cast as compiled for x86-64 (through int32, keeping the low byte:
    NaN and values outside int32 give 0), as uint8."""
    t = np.asarray(t, np.float64)
    ok = np.abs(np.nan_to_num(t, nan=np.inf)) < 2.0**31
    return (np.trunc(np.where(ok, t, 0.0)).astype(np.int64) & 0xFF).astype(np.uint8)


def gguf_quantize(x, bits: int) -> np.ndarray:
    """GGUF blocks of x (n,), n a multiple of 32, from llama.cpp's reference in float32 steps:
    bits 4 (Q4_0): m = the first element of largest |x|, d = m / −8, id = 1/d (0 when d = 0),
    q = min(15, byte(x·id + 8.5)), bytes: fp16 d, q[j] | q[j + 16] << 4; bits 8 (Q8_0):
    d = max|x| / 127, q = x·id rounded half away from zero (in float64: floor(|y| + 0.5), exact),
    bytes: fp16 d, int8 q. Shape: (n / 32, 18 | 34) uint8."""
    f32 = np.float32
    xb = np.asarray(x, f32).reshape(-1, 32)
    nb = xb.shape[0]
    with np.errstate(all="ignore"):
        if bits == 4:
            m = xb[np.arange(nb), np.abs(xb).argmax(1)]
            d = (m / f32(-8)).astype(f32)
        else:
            d = (np.abs(xb).max(1) / f32(127)).astype(f32)
        inv = np.where(d == 0, f32(0), f32(1) / d).astype(f32)
        y = (xb * inv[:, None]).astype(f32)
        if bits == 4:
            q = np.minimum(_x86_byte((y + f32(8.5)).astype(f32)), 15)
            qs = q[:, :16] | (q[:, 16:] << 4)
        else:
            y64 = y.astype(np.float64)
            qs = _x86_byte(np.sign(y64) * np.floor(np.abs(y64) + 0.5))
    return np.concatenate([d.astype(np.float16).view(np.uint8).reshape(nb, 2), qs.astype(np.uint8)], 1)


def gguf_dequantize(blocks, bits: int, n: int) -> np.ndarray:
    """The first n weights d·q of GGUF blocks, in float64 (exact): Q4_0 q = nibble − 8 (element j
    in the low nibble of byte j, element j + 16 in its high nibble), Q8_0 q = the int8 code."""
    b = np.asarray(blocks, np.uint8)
    d = b[:, :2].copy().view(np.float16).astype(np.float64)
    if bits == 4:
        q = np.concatenate([b[:, 2:] & 15, b[:, 2:] >> 4], 1).astype(np.float64) - 8
    else:
        q = b[:, 2:].view(np.int8).astype(np.float64)
    return (d * q).reshape(-1)[:n]
