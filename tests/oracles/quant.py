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
