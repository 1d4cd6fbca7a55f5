"""Triton kernels of the sketching ops: the Walsh-Hadamard transform, the sparse-sign hash and
its scatter-add.

``fwht`` -- Sylvester order (``scipy.linalg.hadamard``), H_N = H_{N/L} (x) H_L. One kernel
transforms, for every batch item and every ``a < N / (L S)``, the ``L`` rows
``a L S + i S + c`` (``i < L``) of each column ``c K + k`` (``c < S, k < K``): viewed as an
``L x (S K)`` row-major matrix, those rows are contiguous in memory, so a program loads an
``L x BC`` tile of it (coalesced), runs the ``log2 L`` butterfly levels in registers
(``tl.reshape`` / ``tl.permute`` / ``tl.split`` / ``tl.join``) and stores the tile.

* Register path: ``N * min(next_pow2(K), 8) <= MAX_TILE`` (8192 elements in float32, 4096 in
  float64: N <= 8192 for a vector, N <= 1024 for K >= 8 in float32): one pass, ``L = N, S = 1``,
  straight from ``x`` to ``out``.
* Large N: ``log2 N`` is split into passes of at most ``log2(MAX_TILE / 8)`` levels, applied
  from the lowest row bits up (``S = 1`` first) on a buffer in the compute dtype (``out``
  itself when it has that dtype); intermediates are never rounded to 16 bits.

The compute dtype is float64 when ``x`` or ``out_dtype`` is float64, else float32 (the
reference follows ``x`` alone; the two agree whenever ``out_dtype`` is the compute dtype of
``x``, as in the SRHT). Either way the additions happen in the order of the reference (levels
h = 1, 2, 4, ...), so results computed in the same dtype equal the reference. The first pass
applies ``row_mult`` and the zero padding of rows ``>= n_valid``, the last one ``scale`` and
the cast to ``out_dtype`` (16-bit outputs rounded as torch rounds them).

``sparse_hash`` -- one Philox block per nonzero (block ``j s + l`` of the stream for column
``j``, slot ``l``): row ``lo + umulhi(w0, hi - lo)`` in the slot's range
``[l m / s, (l + 1) m / s)``, sign from bit 0 of ``w1``, exactly as the reference.

``sparse_apply`` -- a program loads a tile of A and, for each of the ``s`` slots, scatters
``sign * scale * A`` into a zeroed output with ``tl.atomic_add`` (float32, or float64 for
float64 inputs). Sums are therefore in a nondeterministic order: equal to rounding.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from linalg_core import _ops
from linalg_core._arrays import FLOAT_DTYPES, compute_dtype
from linalg_core.backends.triton import LAUNCH, _check, _on, _pow2
from linalg_core.backends.reference.convert import count_nonfinite
from linalg_core.backends.reference.sketch import fwht_then_select
from linalg_core.backends.triton.random import MASK32, MASK64, philox_block

# Largest L x BC tile held in registers, in elements of the compute dtype (module-level so that
# tests can shrink it to exercise the multi-pass path on small N).
MAX_TILE = {torch.float32: 8192, torch.float64: 4096}
_MIN_BC = 8  # multi-pass tiles keep at least this many columns when the columns allow it


# ----------------------------------------------------------------------------------- fwht


@triton.jit
def _fwht_tile(y, L: tl.constexpr, BC: tl.constexpr, LOG_L: tl.constexpr):
    """H_L @ y for an [L, BC] tile y, Sylvester order, levels h = 1, 2, ..., L / 2."""
    for lvl in tl.static_range(LOG_L):
        # rows i and i + h of each 2h-row block: [L/2h, 2, h*BC] -> split the middle axis
        v = tl.permute(tl.reshape(y, [L >> (lvl + 1), 2, BC << lvl]), [0, 2, 1])
        a, b = tl.split(v)
        y = tl.reshape(tl.permute(tl.join(a + b, a - b), [0, 2, 1]), [L, BC])
    return y


@triton.jit
def _cast_out(y, DT: tl.constexpr):
    """``y`` (float32 / float64) rounded to ``DT`` as torch rounds it.

    16-bit results go through float32 (torch converts float64 to 16 bits that way), and the
    float32 -> bfloat16 rounding is done on the bits (round to nearest even, NaN kept quiet), so
    the interpreter, whose own bfloat16 casts truncate, gives the GPU's results.
    """
    if DT == tl.bfloat16:
        u = y.to(tl.float32).to(tl.uint32, bitcast=True)
        u = (u + 0x7FFF + ((u >> 16) & 1)) >> 16
        u = tl.where(y != y, 0x7FC0, u)
        return u.to(tl.uint16).to(tl.bfloat16, bitcast=True)
    elif DT == tl.float16:
        return y.to(tl.float32).to(tl.float16)
    else:
        return y.to(DT)


@triton.jit(do_not_specialize=["n_valid", "N", "K", "S", "n_cblk", "n_a"])
def _fwht_pass_kernel(src, dst, mult, scale_ptr, n_valid, N, K, S, n_cblk, n_a,
                      L: tl.constexpr, LOG_L: tl.constexpr, BC: tl.constexpr, FIRST: tl.constexpr,
                      LAST: tl.constexpr, HAS_MULT: tl.constexpr, CDT: tl.constexpr):
    pid = tl.program_id(0).to(tl.int64)
    cb = pid % n_cblk
    rest = pid // n_cblk
    a = rest % n_a
    b = rest // n_a
    N = N.to(tl.int64)
    K = K.to(tl.int64)
    S = S.to(tl.int64)
    i = tl.arange(0, L).to(tl.int64)[:, None]
    col = cb * BC + tl.arange(0, BC).to(tl.int64)[None, :]  # column c K + k of the L x (S K) view
    cmask = col < S * K
    if FIRST:  # S == 1: rows a L + i of x (B, n_valid, K), zero beyond n_valid
        r = a * L + i
        rmask = r < n_valid
        y = tl.load(src + (b * n_valid + r) * K + col, mask=cmask & rmask, other=0.0).to(CDT)
        if HAS_MULT:
            y = y * tl.load(mult + r, mask=rmask, other=0).to(CDT)
    else:
        y = tl.load(src + (b * N + a * L * S + i * S) * K + col, mask=cmask & (i < L), other=0.0).to(CDT)
    y = _fwht_tile(y, L, BC, LOG_L)
    if LAST:
        y = y * tl.load(scale_ptr)
    tl.store(dst + (b * N + a * L * S + i * S) * K + col, _cast_out(y, dst.dtype.element_ty), mask=cmask & (i < L))


def _fwht_plan(N: int, K: int, cdt: torch.dtype) -> list[int]:
    """log2 L of each pass, lowest row bits first."""
    log_n = N.bit_length() - 1
    max_tile = MAX_TILE[cdt]
    if N * min(_pow2(K), _MIN_BC) <= max_tile:
        return [log_n]
    lmax = max(1, (max_tile // _MIN_BC).bit_length() - 1)
    npass = -(-log_n // lmax)
    return [log_n // npass + (1 if p < log_n % npass else 0) for p in range(npass)]


@_ops.fwht.register("triton", devices=("cuda", "cpu"), dtypes=FLOAT_DTYPES, check=_check)
def fwht(x, N, row_mult, scale, out_dtype):
    out = _fwht(x, N, row_mult, scale, torch.empty(x.shape[0], N, x.shape[2], dtype=out_dtype, device=x.device))
    return out, count_nonfinite(out)


@_ops.fwht_into.register("triton", devices=("cuda", "cpu"), dtypes=FLOAT_DTYPES, check=_check)
def fwht_into(x, N, row_mult, scale, out):
    return count_nonfinite(_fwht(x, N, row_mult, scale, out))


def _fwht(x, N, row_mult, scale, out):
    B, n_valid, K = x.shape
    out_dtype = out.dtype
    if N < 1 or N & (N - 1) or N < n_valid:
        raise ValueError(f"fwht: N={N} must be a power of two >= n_valid={n_valid}")
    cdt = compute_dtype(x.dtype, out_dtype)
    if out.numel() == 0:
        return out
    x = x.contiguous()
    plan = _fwht_plan(N, K, cdt)
    work = out if (len(plan) == 1 or out_dtype == cdt) else torch.empty(B, N, K, dtype=cdt, device=x.device)
    mult = x if row_mult is None else row_mult.contiguous()  # dummy pointer when absent
    scale_t = torch.full((1,), float(scale), dtype=cdt, device=x.device)
    tl_cdt = tl.float64 if cdt == torch.float64 else tl.float32
    S = 1
    with _on(x.device):
        for p, log_l in enumerate(plan):
            L = 1 << log_l
            first, last = p == 0, p == len(plan) - 1
            bc = min(_pow2(S * K), max(1, MAX_TILE[cdt] // L))
            n_cblk, n_a = triton.cdiv(S * K, bc), N // (L * S)
            num_warps = max(1, min(8, (L * bc) // 256))
            _fwht_pass_kernel[(n_cblk * n_a * B,)](
                x if first else work, out if last else work, mult, scale_t, n_valid, N, K, S, n_cblk, n_a,
                L=L, LOG_L=log_l, BC=bc, FIRST=first, LAST=last, HAS_MULT=first and row_mult is not None,
                CDT=tl_cdt, num_warps=num_warps, **LAUNCH)
            S *= L
    return out


_ops.fwht_select.register("triton", devices=("cuda", "cpu"), dtypes=FLOAT_DTYPES, check=_check)(
    fwht_then_select(fwht))


# ---------------------------------------------------------------------------- sparse_hash


@triton.jit(do_not_specialize=["n", "col0", "m", "s", "s_lo", "s_hi", "k_lo", "k_hi"])
def _sparse_hash_kernel(rows, signs, n, col0, m, s, s_lo, s_hi, k_lo, k_hi, BJ: tl.constexpr, BS: tl.constexpr):
    pid = tl.program_id(0).to(tl.int64)
    s = s.to(tl.int64)
    m = m.to(tl.int64)
    j = pid * BJ + tl.arange(0, BJ).to(tl.int64)[:, None]
    l = tl.arange(0, BS).to(tl.int64)[None, :]
    mask = (j < n) & (l < s)
    w0, w1, _, _ = philox_block((col0.to(tl.int64) + j) * s + l, s_lo.to(tl.uint32), s_hi.to(tl.uint32),
                                k_lo.to(tl.uint32), k_hi.to(tl.uint32))
    lo = (l * m) // s
    hi = ((l + 1) * m) // s
    row = lo + tl.umulhi(w0, (hi - lo).to(tl.uint32)).to(tl.int64)
    sign = 1 - 2 * (w1 & 1).to(tl.int32)
    tl.store(rows + j * s + l, row.to(tl.int32), mask=mask)
    tl.store(signs + j * s + l, sign.to(tl.int8), mask=mask)


@_ops.sparse_hash.register("triton", devices=("cuda", "cpu"), dtypes=[torch.int32], check=_check)
def sparse_hash(n, col0, m, s, stream, seed, device):
    device = torch.device(device)
    rows = torch.empty(n, s, dtype=torch.int32, device=device)
    signs = torch.empty(n, s, dtype=torch.int8, device=device)
    if n == 0 or s == 0:
        return rows, signs
    bs = _pow2(s)
    bj = max(1, min(_pow2(n), 1024 // bs))
    stream, seed = int(stream) & MASK64, int(seed) & MASK64
    with _on(rows.device):
        _sparse_hash_kernel[(triton.cdiv(n, bj),)](rows, signs, n, col0, m, s, stream & MASK32, stream >> 32,
                                                  seed & MASK32, seed >> 32, BJ=bj, BS=bs, num_warps=4, **LAUNCH)
    return rows, signs


# --------------------------------------------------------------------------- sparse_apply


@triton.jit(do_not_specialize=["n", "d", "m", "s", "n_jblk", "n_dblk"])
def _sparse_left_kernel(A, rows, signs, out, scale_ptr, n, d, m, s, n_jblk, n_dblk,
                        BJ: tl.constexpr, BD: tl.constexpr, CDT: tl.constexpr):
    # out[b, rows[j, l], :] += signs[j, l] * scale * A[b, j, :]   (A (B, n, d), out (B, m, d))
    pid = tl.program_id(0).to(tl.int64)
    db = pid % n_dblk
    rest = pid // n_dblk
    jb = rest % n_jblk
    b = rest // n_jblk
    d = d.to(tl.int64)
    s = s.to(tl.int64)
    j = jb * BJ + tl.arange(0, BJ).to(tl.int64)
    c = db * BD + tl.arange(0, BD).to(tl.int64)
    jmask = j < n
    mask = jmask[:, None] & (c < d)[None, :]
    a = tl.load(A + (b * n + j[:, None]) * d + c[None, :], mask=mask, other=0.0).to(CDT)
    scale = tl.load(scale_ptr)
    for l in range(s):
        r = tl.load(rows + j * s + l, mask=jmask, other=0).to(tl.int64)
        v = tl.load(signs + j * s + l, mask=jmask, other=0).to(CDT) * scale
        tl.atomic_add(out + (b * m + r[:, None]) * d + c[None, :], a * v[:, None], mask=mask, sem="relaxed")


@triton.jit(do_not_specialize=["n", "d", "m", "s", "n_jblk", "n_iblk"])
def _sparse_right_kernel(A, rows, signs, out, scale_ptr, n, d, m, s, n_jblk, n_iblk,
                         BI: tl.constexpr, BJ: tl.constexpr, CDT: tl.constexpr):
    # out[b, i, rows[j, l]] += signs[j, l] * scale * A[b, i, j]   (A (B, d, n), out (B, d, m))
    pid = tl.program_id(0).to(tl.int64)
    jb = pid % n_jblk
    rest = pid // n_jblk
    ib = rest % n_iblk
    b = rest // n_iblk
    n = n.to(tl.int64)
    m = m.to(tl.int64)
    s = s.to(tl.int64)
    i = ib * BI + tl.arange(0, BI).to(tl.int64)
    j = jb * BJ + tl.arange(0, BJ).to(tl.int64)
    jmask = j < n
    mask = (i < d)[:, None] & jmask[None, :]
    a = tl.load(A + (b * d + i[:, None]) * n + j[None, :], mask=mask, other=0.0).to(CDT)
    scale = tl.load(scale_ptr)
    for l in range(s):
        r = tl.load(rows + j * s + l, mask=jmask, other=0).to(tl.int64)
        v = tl.load(signs + j * s + l, mask=jmask, other=0).to(CDT) * scale
        tl.atomic_add(out + (b * d + i[:, None]) * m + r[None, :], a * v[None, :], mask=mask, sem="relaxed")


@_ops.sparse_apply.register("triton", devices=("cuda", "cpu"), dtypes=FLOAT_DTYPES, check=_check)
def sparse_apply(A, rows, signs, m, scale, right):
    cdt = compute_dtype(A.dtype)
    tl_cdt = tl.float64 if cdt == torch.float64 else tl.float32
    A, rows, signs = A.contiguous(), rows.contiguous(), signs.contiguous()
    n, s = rows.shape
    if right:
        B, d, _ = A.shape
        out = torch.zeros(B, d, m, dtype=cdt, device=A.device)
    else:
        B, _, d = A.shape
        out = torch.zeros(B, m, d, dtype=cdt, device=A.device)
    if B == 0 or n == 0 or d == 0 or s == 0 or m == 0:
        return out, count_nonfinite(out)
    scale_t = torch.full((1,), float(scale), dtype=cdt, device=A.device)
    with _on(A.device):
        if right:
            bj = min(_pow2(n), 128)
            bi = min(_pow2(d), max(1, 2048 // bj))
            n_jblk, n_iblk = triton.cdiv(n, bj), triton.cdiv(d, bi)
            _sparse_right_kernel[(n_jblk * n_iblk * B,)](A, rows, signs, out, scale_t, n, d, m, s, n_jblk, n_iblk,
                                                         BI=bi, BJ=bj, CDT=tl_cdt, num_warps=4, **LAUNCH)
        else:
            bd = min(_pow2(d), 128)
            bj = min(_pow2(n), max(1, 2048 // bd))
            n_jblk, n_dblk = triton.cdiv(n, bj), triton.cdiv(d, bd)
            _sparse_left_kernel[(n_dblk * n_jblk * B,)](A, rows, signs, out, scale_t, n, d, m, s, n_jblk, n_dblk,
                                                        BJ=bj, BD=bd, CDT=tl_cdt, num_warps=4, **LAUNCH)
    return out, count_nonfinite(out)
