"""Triton kernels of the blockwise codebook quantization ops (contracts in ``linalg_core._ops``).

``block_quantize`` -- a program holds a tile of BR quantization blocks x BB (>= block, a power of
two) elements: absmax per row with ``tl.max`` (unless scales are given), v = (x - o)·(1/s), and
the code of each element from the midpoints, compare-and-count for <= 15 midpoints, an 8-step
branch-free binary search (gathers from the 255-entry table) for 8-bit codes: nothing of size
blocks x elements x levels is ever formed. Codes are packed per group of 8 into one integer
(``tl.sum`` of disjoint shifted fields) and written as ``bits`` bytes; the non-finite count is an
``atomic_add`` per program.

``block_dequantize`` -- a program decodes BG groups of 8 codes from their bytes, gathers the
levels and computes level·s + o in float32 (fp fusion off, so two roundings as the reference),
cast to the output dtype as torch rounds.

``gguf_quantize`` -- a program holds BR GGUF blocks of 32 weights as two halves of 16 (Q4_0's
low and high nibbles): the block's absmax, for Q4_0 the first element of that magnitude
(numpy's argmax), d and id with correctly rounded divisions, the codes of
``csrc/include/linalg_core/quant.h`` (numpy's x86 float -> byte cast) and the fp16 d as two
bytes; the non-finite inputs and the blocks whose fp16 d is zero, subnormal or infinite are
counted with one ``atomic_add`` each per program. ``gguf_dequantize`` -- d·q per block in float32.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from linalg_core import _ops
from linalg_core.backends.triton import LAUNCH, _check, _on, _pow2
from linalg_core.backends.triton.sketch import _cast_out

_IN = (torch.float32, torch.float16, torch.bfloat16)
_TILE = 4096  # elements per quantize program


@triton.jit
def _codes(v, mid, NM: tl.constexpr):
    if NM <= 15:
        code = tl.zeros(v.shape, dtype=tl.int32)
        for k in tl.static_range(NM):
            code += (v > tl.load(mid + k)).to(tl.int32)
    else:
        code = tl.zeros(v.shape, dtype=tl.int32)
        step = (NM + 1) // 2
        for _ in tl.static_range(8):
            t = tl.load(mid + code + (step - 1))
            code += tl.where(v > t, step, 0)
            step = step // 2
    return code


@triton.jit(do_not_specialize=["n", "block", "nb"])
def _quantize_kernel(x, mid, scales_in, offsets, scales_out, packed, bad, n, block, nb, BITS: tl.constexpr,
                     NM: tl.constexpr, BR: tl.constexpr, BB: tl.constexpr, BP: tl.constexpr, HAS_SCALES: tl.constexpr,
                     HAS_OFFSETS: tl.constexpr):
    pid = tl.program_id(0).to(tl.int64)
    n = n.to(tl.int64)
    block = block.to(tl.int64)
    rb = pid * BR + tl.arange(0, BR).to(tl.int64)  # block indices
    col = tl.arange(0, BB).to(tl.int64)
    idx = rb[:, None] * block + col[None, :]
    valid = (rb[:, None] < nb) & (col[None, :] < block) & (idx < n)
    xt = tl.load(x + idx, mask=valid, other=0.0).to(tl.float32)
    bits_u = xt.to(tl.uint32, bitcast=True)
    count = tl.sum(tl.sum((((bits_u & 0x7F800000) == 0x7F800000) & valid).to(tl.int32), axis=1), axis=0)
    tl.atomic_add(bad, count.to(tl.int64), sem="relaxed")
    if HAS_SCALES:
        s = tl.load(scales_in + rb, mask=rb < nb, other=1.0)
    else:
        s = tl.max(tl.abs(xt), axis=1)
        tl.store(scales_out + rb, s, mask=rb < nb)
    if BITS > 0:
        inv = 1.0 / tl.maximum(s, 1e-38)
        if HAS_OFFSETS:
            o = tl.load(offsets + rb, mask=rb < nb, other=0.0)
            v = (xt - o[:, None]) * inv[:, None]
        else:
            v = xt * inv[:, None]
        code = tl.where(valid, _codes(v, mid, NM), 0).to(tl.int64)
        # groups of 8 codes -> one integer, MSB first
        g = tl.reshape(code, [BR, BB // 8, 8])
        j = tl.arange(0, 8).to(tl.int64)
        acc = tl.sum(g << ((7 - j) * BITS)[None, None, :], axis=2)  # [BR, BB/8]
        t = tl.arange(0, BP).to(tl.int64)  # BP = pow2(BITS): lanes t >= BITS (BITS = 3) shift by 0, never stored
        byte = (acc[:, :, None] >> tl.where(t < BITS, (BITS - 1 - t) * 8, 0)[None, None, :]) & 0xFF  # [BR, BB/8, BP]
        gi = tl.arange(0, BB // 8).to(tl.int64)
        start = rb[:, None] * block + 8 * gi[None, :]  # first element of each group
        cnt = tl.minimum(tl.minimum(block - 8 * gi[None, :], n - start), 8)  # elements in the group
        nbytes = (cnt * BITS + 7) // 8
        gmask = (rb[:, None] < nb) & (8 * gi[None, :] < block) & (start < n)
        dst = packed + (start // 8 * BITS)[:, :, None] + t[None, None, :]
        tl.store(dst, byte.to(tl.uint8), mask=gmask[:, :, None] & (t[None, None, :] < nbytes[:, :, None]))


@triton.jit(do_not_specialize=["n", "block"])
def _dequantize_kernel(packed, levels, scales, offsets, out, n, block, BITS: tl.constexpr, BG: tl.constexpr,
                       BP: tl.constexpr, HAS_OFFSETS: tl.constexpr):
    pid = tl.program_id(0).to(tl.int64)
    n = n.to(tl.int64)
    block = block.to(tl.int64)
    g = pid * BG + tl.arange(0, BG).to(tl.int64)
    start = 8 * g
    cnt = tl.minimum(n - start, 8)
    nbytes = (cnt * BITS + 7) // 8
    t = tl.arange(0, BP).to(tl.int64)
    bmask = (start[:, None] < n) & (t[None, :] < nbytes[:, None])
    byte = tl.load(packed + (g * BITS)[:, None] + t[None, :], mask=bmask, other=0).to(tl.int64)
    # lanes t >= BITS (BP = 4 for BITS = 3) hold 0 and shift by 0: a negative shift would be poison in LLVM
    acc = tl.sum(byte << tl.where(t < BITS, (BITS - 1 - t) * 8, 0)[None, :], axis=1)
    j = tl.arange(0, 8).to(tl.int64)
    code = (acc[:, None] >> ((7 - j) * BITS)[None, :]) & ((1 << BITS) - 1)
    i = start[:, None] + j[None, :]
    emask = i < n
    b = start // block
    s = tl.load(scales + b, mask=start < n, other=0.0)
    val = tl.load(levels + code, mask=emask, other=0.0) * s[:, None]
    if HAS_OFFSETS:
        val = val + tl.load(offsets + b, mask=start < n, other=0.0)[:, None]
    tl.store(out + i, _cast_out(val, out.dtype.element_ty), mask=emask)


@_ops.block_quantize.register("triton", devices=("cuda", "cpu"), dtypes=_IN, check=_check)
def block_quantize(x, block, mid, bits, scales, offsets):
    n = x.numel()
    nb = -(-n // block)
    packed = torch.empty(-(-n * bits // 8), dtype=torch.uint8, device=x.device)
    s_out = torch.empty(nb, dtype=torch.float32, device=x.device) if scales is None else scales.clone()
    bad = torch.zeros(1, dtype=torch.int64, device=x.device)
    bb = _pow2(block)
    br = max(1, _TILE // bb)
    nm = 0 if bits == 0 else (1 << bits) - 1
    mid_t = mid.contiguous() if nm else torch.zeros(1, dtype=torch.float32, device=x.device)
    with _on(x.device):
        _quantize_kernel[(triton.cdiv(nb, br),)](
            x, mid_t, s_out if scales is not None else x, offsets if offsets is not None else x,
            s_out, packed if bits else bad, bad, n, block, nb, BITS=bits, NM=nm, BR=br, BB=max(bb, 8),
            BP=_pow2(max(bits, 1)), HAS_SCALES=scales is not None, HAS_OFFSETS=offsets is not None, **LAUNCH)
    return packed, s_out, bad[0]


@_ops.block_dequantize.register("triton", devices=("cuda", "cpu"), dtypes=_IN, check=_check)
def block_dequantize(packed, bits, levels, scales, offsets, n, block, out_dtype):
    return _dequantize(packed, bits, levels, scales, offsets, n, block,
                       torch.empty(n, dtype=out_dtype, device=packed.device))


@_ops.block_dequantize_into.register("triton", devices=("cuda", "cpu"), dtypes=_IN, check=_check)
def block_dequantize_into(packed, bits, levels, scales, offsets, n, block, out):
    _dequantize(packed, bits, levels, scales, offsets, n, block, out)


def _dequantize(packed, bits, levels, scales, offsets, n, block, out):
    if n == 0:
        return out
    groups = -(-n // 8)
    bg = 256
    with _on(packed.device):
        _dequantize_kernel[(triton.cdiv(groups, bg),)](
            packed, levels, scales, offsets if offsets is not None else scales, out, n, block, BITS=bits, BG=bg,
            BP=_pow2(bits), HAS_OFFSETS=offsets is not None, **LAUNCH)
    return out


_GGUF_ROWS = 64  # GGUF blocks per program


@triton.jit
def _gguf_byte(y):
    """numpy's float32 -> uint8 / int8 cast on x86-64 (through int32, the low byte; NaN and
    |y| >= 2^31 give 0), as int32."""
    yc = tl.where(tl.abs(y) < 2147483648.0, y, 0.0)
    return yc.to(tl.int32) & 0xFF


@triton.jit
def _q8_code(y):
    yc = tl.where(tl.abs(y) < 2147483648.0, y, 0.0)
    a = tl.abs(yc)
    fl = a.to(tl.int32)
    r = fl + (2.0 * (a - fl.to(tl.float32))).to(tl.int32)  # round half away from zero
    return tl.where(yc < 0, -r, r) & 0xFF


@triton.jit(do_not_specialize=["nb"])
def _gguf_quantize_kernel(x, blocks, bad_count, special_count, nb, BITS: tl.constexpr, BYTES: tl.constexpr,
                          BR: tl.constexpr):
    pid = tl.program_id(0).to(tl.int64)
    rb = pid * BR + tl.arange(0, BR).to(tl.int64)
    rmask = rb < nb
    c = tl.arange(0, 16)
    lo_i = rb[:, None] * 32 + c[None, :]
    xl = tl.load(x + lo_i, mask=rmask[:, None], other=0.0).to(tl.float32)
    xh = tl.load(x + lo_i + 16, mask=rmask[:, None], other=0.0).to(tl.float32)
    finite = (((xl.to(tl.uint32, bitcast=True) & 0x7F800000) != 0x7F800000).to(tl.int32)
              + ((xh.to(tl.uint32, bitcast=True) & 0x7F800000) != 0x7F800000).to(tl.int32))
    bad = tl.sum(tl.sum(tl.where(rmask[:, None], 2 - finite, 0), axis=1), axis=0)
    al, ah = tl.abs(xl), tl.abs(xh)
    amax = tl.maximum(tl.max(al, axis=1), tl.max(ah, axis=1))
    if BITS == 4:
        first = tl.minimum(tl.min(tl.where(al == amax[:, None], c[None, :], 32), axis=1),
                           tl.min(tl.where(ah == amax[:, None], c[None, :] + 16, 32), axis=1))
        m = tl.maximum(tl.max(tl.where(c[None, :] == first[:, None], xl, float("-inf")), axis=1),
                       tl.max(tl.where(c[None, :] + 16 == first[:, None], xh, float("-inf")), axis=1))
        d = m * -0.125  # m / −8, the same correctly rounded value
    else:
        d = tl.math.div_rn(amax, tl.full(amax.shape, 127.0, tl.float32))
    one = tl.full(d.shape, 1.0, tl.float32)
    inv = tl.where(d == 0.0, 0.0, tl.math.div_rn(one, tl.where(d == 0.0, one, d)))
    yl = xl * inv[:, None]
    yh = xh * inv[:, None]
    dst = blocks + rb * BYTES
    if BITS == 4:
        ql = tl.minimum(_gguf_byte(yl + 8.5), 15)
        qh = tl.minimum(_gguf_byte(yh + 8.5), 15)
        tl.store(dst[:, None] + 2 + c[None, :], (ql | (qh << 4)).to(tl.uint8), mask=rmask[:, None])
    else:
        tl.store(dst[:, None] + 2 + c[None, :], _q8_code(yl).to(tl.uint8), mask=rmask[:, None])
        tl.store(dst[:, None] + 18 + c[None, :], _q8_code(yh).to(tl.uint8), mask=rmask[:, None])
    dh = d.to(tl.float16).to(tl.uint16, bitcast=True).to(tl.int32)
    tl.store(dst, (dh & 0xFF).to(tl.uint8), mask=rmask)
    tl.store(dst + 1, (dh >> 8).to(tl.uint8), mask=rmask)
    e = (dh >> 10) & 0x1F
    special = tl.sum(((e == 0) | (e == 0x1F)) & rmask, axis=0)
    tl.atomic_add(bad_count, bad.to(tl.int64), sem="relaxed")
    tl.atomic_add(special_count, special.to(tl.int64), sem="relaxed")


@triton.jit(do_not_specialize=["n"])
def _gguf_dequantize_kernel(blocks, out, n, BITS: tl.constexpr, BYTES: tl.constexpr, BR: tl.constexpr):
    pid = tl.program_id(0).to(tl.int64)
    n = n.to(tl.int64)
    rb = pid * BR + tl.arange(0, BR).to(tl.int64)
    rmask = rb * 32 < n
    src = blocks + rb * BYTES
    dh = tl.load(src, mask=rmask, other=0).to(tl.uint16) | (tl.load(src + 1, mask=rmask, other=0).to(tl.uint16) << 8)
    d = dh.to(tl.float16, bitcast=True).to(tl.float32)
    c = tl.arange(0, 16)
    i = rb[:, None] * 32 + c[None, :]
    if BITS == 4:
        q = tl.load(src[:, None] + 2 + c[None, :], mask=rmask[:, None], other=0).to(tl.int32)
        vl = d[:, None] * ((q & 15) - 8).to(tl.float32)
        vh = d[:, None] * ((q >> 4) - 8).to(tl.float32)
    else:
        ql = tl.load(src[:, None] + 2 + c[None, :], mask=rmask[:, None], other=0).to(tl.int8, bitcast=True)
        qh = tl.load(src[:, None] + 18 + c[None, :], mask=rmask[:, None], other=0).to(tl.int8, bitcast=True)
        vl = d[:, None] * ql.to(tl.float32)
        vh = d[:, None] * qh.to(tl.float32)
    tl.store(out + i, _cast_out(vl, out.dtype.element_ty), mask=i < n)
    tl.store(out + i + 16, _cast_out(vh, out.dtype.element_ty), mask=i + 16 < n)


@_ops.gguf_quantize.register("triton", devices=("cuda", "cpu"), dtypes=_IN, check=_check)
def gguf_quantize(x, bits):
    nb = x.numel() // 32
    nbytes = 18 if bits == 4 else 34
    blocks = torch.empty(nb, nbytes, dtype=torch.uint8, device=x.device)
    bad = torch.zeros((), dtype=torch.int64, device=x.device)
    special = torch.zeros((), dtype=torch.int64, device=x.device)  # blocks whose fp16 d is 0, subnormal or Inf
    if nb:
        with _on(x.device):
            _gguf_quantize_kernel[(triton.cdiv(nb, _GGUF_ROWS),)](x, blocks, bad, special, nb, BITS=bits,
                                                                 BYTES=nbytes, BR=_GGUF_ROWS, **LAUNCH)
    return blocks, bad, special


def _gguf_dequantize(blocks, bits, n, out):
    if n:
        with _on(blocks.device):
            _gguf_dequantize_kernel[(triton.cdiv(-(-n // 32), _GGUF_ROWS),)](
                blocks, out, n, BITS=bits, BYTES=18 if bits == 4 else 34, BR=_GGUF_ROWS, **LAUNCH)
    return out


@_ops.gguf_dequantize.register("triton", devices=("cuda", "cpu"), dtypes=_IN, check=_check)
def gguf_dequantize(blocks, bits, n, out_dtype):
    return _gguf_dequantize(blocks, bits, n, torch.empty(n, dtype=out_dtype, device=blocks.device))


@_ops.gguf_dequantize_into.register("triton", devices=("cuda", "cpu"), dtypes=_IN, check=_check)
def gguf_dequantize_into(blocks, bits, n, out):
    _gguf_dequantize(blocks, bits, n, out)
