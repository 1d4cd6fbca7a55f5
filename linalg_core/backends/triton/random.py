"""Triton kernels of the Philox4x32-10 streams: raw words, normal and Rademacher blocks.

The generator is the one of ``csrc/include/linalg_core/philox.h`` in uint32 arithmetic
(``tl.umulhi`` gives the high word of the 32 x 32-bit products, a plain uint32 multiply the low
word): key = ``seed`` (lo, hi), counter = (block lo, block hi, ``stream`` lo, ``stream`` hi) and
word ``e`` of a stream is lane ``e % 4`` of block ``e // 4``. The 64-bit seed and stream are
split into 32-bit halves on the host.

One kernel serves the three ops. A program owns a tile of ``BR`` output rows; in each row it
runs Philox on ``NB`` consecutive blocks and expands every block into its 4 words, 4 normals
(Box-Muller on the word pairs (0, 1) and (2, 3)) or 128 signs (the 32 bits of each word), so
every Philox evaluation is used in full. Tiles start on a block boundary of the row's first
stream index ``(row0 + i) * ld + col0`` and the stores are masked to the row's columns.

Normals are computed in float64 whatever the output dtype (like the ``cpu`` backend), so
they equal the reference to rounding; words and signs are bit-identical.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from linalg_core import _ops
from linalg_core.backends.triton import LAUNCH, _check, _on, _pow2

MASK32 = 0xFFFFFFFF
MASK64 = (1 << 64) - 1  # seeds and stream ids arrive as int64 (the op schemas' int)
WORDS, NORMAL, SIGN = 0, 1, 2
# Outputs per program (BR * NB * per-block outputs) and stream indices per Philox block.
_TILE = {WORDS: 2048, NORMAL: 1024, SIGN: 4096}
_PER_BLOCK = {WORDS: 4, NORMAL: 4, SIGN: 128}


@triton.jit
def philox4x32_10(c0, c1, c2, c3, k0, k1):
    """Ten Philox4x32 rounds on uint32 tensors (counter c0..c3, key k0, k1)."""
    for _ in tl.static_range(10):
        a0 = c0
        a2 = c2
        c0 = tl.umulhi(a2, 0xCD9E8D57) ^ c1 ^ k0
        c2 = tl.umulhi(a0, 0xD2511F53) ^ c3 ^ k1
        c1 = a2 * 0xCD9E8D57
        c3 = a0 * 0xD2511F53
        k0 = k0 + 0x9E3779B9
        k1 = k1 + 0xBB67AE85
    return c0, c1, c2, c3


@triton.jit
def philox_block(blk, s_lo, s_hi, k_lo, k_hi):
    """The 4 uint32 words of Philox blocks ``blk`` (int64 tensor, >= 0) of a stream.

    ``s_lo, s_hi`` (stream) and ``k_lo, k_hi`` (seed) are uint32 scalars.
    """
    z = tl.zeros(blk.shape, tl.uint32)
    return philox4x32_10(blk.to(tl.uint32), (blk >> 32).to(tl.uint32), z + s_lo, z + s_hi, z + k_lo, z + k_hi)


@triton.jit
def _box_muller(wa, wb):
    """Normals (cos, sin) of a word pair, in float64: u1 = (wa + 1) 2^-32, theta = 2 pi wb 2^-32."""
    two_m32 = 2.3283064365386963e-10  # 2^-32, exact in any float type
    u1 = (wa.to(tl.float64) + 1.0) * two_m32
    two_pi = tl.full([1], 6.283185307179586, tl.float64)  # a float64 constant (not rounded to fp32)
    theta = two_pi * (wb.to(tl.float64) * two_m32)
    r = tl.sqrt(-2.0 * tl.log(u1))
    return r * tl.cos(theta), r * tl.sin(theta)


@triton.jit
def _lanes(x0, x1, x2, x3, BR: tl.constexpr, NB: tl.constexpr):
    """[BR, NB] x 4 -> [BR, 4 NB] with x0..x3 of block b at columns 4b .. 4b + 3."""
    return tl.reshape(tl.join(tl.join(x0, x2), tl.join(x1, x3)), [BR, NB * 4])


@triton.jit(do_not_specialize=["nrows", "ncols", "ld", "row0", "col0", "s_lo", "s_hi", "k_lo", "k_hi", "n_cblk"])
def _philox_fill_kernel(out, scale_ptr, nrows, ncols, ld, row0, col0, s_lo, s_hi, k_lo, k_hi, n_cblk,
                        MODE: tl.constexpr, BR: tl.constexpr, NB: tl.constexpr, LOG_PER: tl.constexpr):
    # out[i, j] = f(number (row0 + i) * ld + col0 + j of the stream), i < nrows, j < ncols.
    pid = tl.program_id(0).to(tl.int64)
    cb = pid % n_cblk
    rb = pid // n_cblk
    TC: tl.constexpr = NB << LOG_PER  # stream numbers per row of the tile
    i = rb * BR + tl.arange(0, BR).to(tl.int64)
    start = (row0.to(tl.int64) + i) * ld.to(tl.int64) + col0.to(tl.int64)
    blk0 = (start >> LOG_PER) + cb * NB  # first Philox block of each row of the tile
    blk = blk0[:, None] + tl.arange(0, NB).to(tl.int64)[None, :]
    w0, w1, w2, w3 = philox_block(blk, s_lo.to(tl.uint32), s_hi.to(tl.uint32), k_lo.to(tl.uint32),
                                  k_hi.to(tl.uint32))
    if MODE == 0:
        v = _lanes(w0, w1, w2, w3, BR, NB).to(tl.int32, bitcast=True)
    elif MODE == 1:
        n0, n1 = _box_muller(w0, w1)
        n2, n3 = _box_muller(w2, w3)
        v = _lanes(n0, n1, n2, n3, BR, NB) * tl.load(scale_ptr)
    else:
        words = _lanes(w0, w1, w2, w3, BR, NB)
        bits = (words[:, :, None] >> tl.arange(0, 32).to(tl.uint32)[None, None, :]) & 1
        bits = tl.reshape(bits, [BR, TC])
        sc = tl.load(scale_ptr).to(out.dtype.element_ty)
        v = tl.where(bits != 0, -sc, sc)
    j = ((blk0 << LOG_PER) - start)[:, None] + tl.arange(0, TC)[None, :]
    mask = (i < nrows)[:, None] & (j >= 0) & (j < ncols)
    tl.store(out + i[:, None] * ncols + j, v.to(out.dtype.element_ty), mask=mask)


def _fill(out: torch.Tensor, mode: int, ld: int, row0: int, col0: int, stream: int, seed: int, scale: float):
    """Launch the kernel on a contiguous 2-D ``out`` (int32 for WORDS, float32/float64 else)."""
    nrows, ncols = out.shape
    if out.numel() == 0:
        return out
    per = _PER_BLOCK[mode]
    nb = min(_pow2(triton.cdiv(ncols + per - 1, per)), _TILE[mode] // per)
    br = min(_pow2(nrows), max(1, _TILE[mode] // (nb * per)))
    n_cblk = triton.cdiv(ncols + per - 1, nb * per)  # a row's tiles start up to per - 1 early
    grid = (n_cblk * triton.cdiv(nrows, br),)
    scale_t = torch.full((1,), float(scale), dtype=torch.float64, device=out.device)
    stream, seed = int(stream) & MASK64, int(seed) & MASK64
    with _on(out.device):
        _philox_fill_kernel[grid](out, scale_t, nrows, ncols, ld, row0, col0, stream & MASK32, stream >> 32,
                                  seed & MASK32, seed >> 32, n_cblk, MODE=mode, BR=br, NB=nb,
                                  LOG_PER=per.bit_length() - 1, num_warps=4, **LAUNCH)
    return out


@_ops.random_uint32.register("triton", devices=("cuda", "cpu"), dtypes=[torch.int64], check=_check)
def random_uint32(count, offset, stream, seed, device):
    out = torch.empty(1, count, dtype=torch.int32, device=torch.device(device))
    _fill(out, WORDS, count, 0, offset, stream, seed, 1.0)
    return out.view(count).to(torch.int64) & MASK32


@_ops.random_fill.register("triton", devices=("cuda", "cpu"), dtypes=(torch.float32, torch.float64),
                           check=_check)
def random_fill(nrows, ncols, ld, row0, col0, stream, seed, scale, sign, dtype, device):
    out = torch.empty(nrows, ncols, dtype=dtype, device=torch.device(device))
    return _fill(out, SIGN if sign else NORMAL, ld, row0, col0, stream, seed, scale)
