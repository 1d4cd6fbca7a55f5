"""Triton kernels of the NOLA ops: random-basis combinations and their adjoint.

The bases are ``random_fill``'s normals (the Philox4x32-10 and Box-Muller of
:mod:`linalg_core.backends.triton.random`), regenerated in registers and never stored:

* ``nola_combine``: a program owns ``NB`` Philox blocks (``4 NB`` elements of the flattened
  matrix), runs over the k streams ``stream_base + i`` and keeps the four lanes' sums; each
  element sums its k terms in the order i = 0..k-1.
* ``nola_coeff_grad``: program i owns basis i and strides over the matrix in tiles of ``NB``
  blocks, dotting each tile with the gradient; one sum per program, so the result does not
  depend on the launch.

Normals and sums are float64 whatever the dtype (as the Triton ``random_fill``), so results
equal the reference to rounding.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from linalg_core import _ops
from linalg_core.backends.triton import LAUNCH, _check, _on, _pow2
from linalg_core.backends.triton.random import MASK32, MASK64, _box_muller, philox_block

DTYPES = (torch.float32, torch.float64)
_NB = 256  # Philox blocks per tile


@triton.jit
def _stream_words(b_lo, b_hi, i):
    """(lo, hi) uint32 halves of stream_base + i, stream_base = (b_lo, b_hi)."""
    lo = b_lo.to(tl.uint64) + i
    return (lo & 0xFFFFFFFF).to(tl.uint32), (b_hi.to(tl.uint64) + (lo >> 32)).to(tl.uint32)


@triton.jit(do_not_specialize=["k", "n", "b_lo", "b_hi", "k_lo", "k_hi"])
def _combine_kernel(coeffs, out, scale_ptr, k, n, b_lo, b_hi, k_lo, k_hi, NB: tl.constexpr):
    blk = tl.program_id(0).to(tl.int64) * NB + tl.arange(0, NB).to(tl.int64)
    a0 = tl.zeros([NB], tl.float64)
    a1 = tl.zeros([NB], tl.float64)
    a2 = tl.zeros([NB], tl.float64)
    a3 = tl.zeros([NB], tl.float64)
    for i in range(k):
        s_lo, s_hi = _stream_words(b_lo, b_hi, i)
        w0, w1, w2, w3 = philox_block(blk, s_lo, s_hi, k_lo.to(tl.uint32), k_hi.to(tl.uint32))
        n0, n1 = _box_muller(w0, w1)
        n2, n3 = _box_muller(w2, w3)
        c = tl.load(coeffs + i).to(tl.float64)
        a0 += c * n0
        a1 += c * n1
        a2 += c * n2
        a3 += c * n3
    s = tl.load(scale_ptr)
    e = 4 * blk
    ty = out.dtype.element_ty
    tl.store(out + e, (s * a0).to(ty), mask=e < n)
    tl.store(out + e + 1, (s * a1).to(ty), mask=e + 1 < n)
    tl.store(out + e + 2, (s * a2).to(ty), mask=e + 2 < n)
    tl.store(out + e + 3, (s * a3).to(ty), mask=e + 3 < n)


@triton.jit(do_not_specialize=["n", "b_lo", "b_hi", "k_lo", "k_hi"])
def _coeff_grad_kernel(grad, out, scale_ptr, n, b_lo, b_hi, k_lo, k_hi, NB: tl.constexpr):
    i = tl.program_id(0).to(tl.int64)
    s_lo, s_hi = _stream_words(b_lo, b_hi, i)
    acc = tl.zeros([NB], tl.float64)
    nblocks = (n + 3) // 4
    for start in range(0, nblocks, NB):
        blk = start + tl.arange(0, NB).to(tl.int64)
        w0, w1, w2, w3 = philox_block(blk, s_lo, s_hi, k_lo.to(tl.uint32), k_hi.to(tl.uint32))
        n0, n1 = _box_muller(w0, w1)
        n2, n3 = _box_muller(w2, w3)
        e = 4 * blk
        g0 = tl.load(grad + e, mask=e < n, other=0.0).to(tl.float64)
        g1 = tl.load(grad + e + 1, mask=e + 1 < n, other=0.0).to(tl.float64)
        g2 = tl.load(grad + e + 2, mask=e + 2 < n, other=0.0).to(tl.float64)
        g3 = tl.load(grad + e + 3, mask=e + 3 < n, other=0.0).to(tl.float64)
        acc += g0 * n0 + g1 * n1 + g2 * n2 + g3 * n3
    tl.store(out + i, (tl.load(scale_ptr) * tl.sum(acc, axis=0)).to(out.dtype.element_ty))


def _split(stream_base: int, seed: int):
    stream_base, seed = int(stream_base) & MASK64, int(seed) & MASK64
    return stream_base & MASK32, stream_base >> 32, seed & MASK32, seed >> 32


def _nb(n: int) -> int:
    return min(_pow2(triton.cdiv(n, 4)), _NB)


@_ops.nola_combine.register("triton", devices=("cuda", "cpu"), dtypes=DTYPES, check=_check)
def nola_combine(coeffs, rows, cols, stream_base, seed, scale):
    coeffs = coeffs.detach().contiguous()
    out = torch.empty(rows, cols, dtype=coeffs.dtype, device=coeffs.device)
    n = rows * cols
    if n == 0:
        return out
    nb = _nb(n)
    scale_t = torch.full((1,), float(scale), dtype=torch.float64, device=coeffs.device)
    with _on(coeffs.device):
        _combine_kernel[(triton.cdiv(triton.cdiv(n, 4), nb),)](coeffs, out, scale_t, coeffs.shape[0], n,
                                                                *_split(stream_base, seed), NB=nb, num_warps=4,
                                                                **LAUNCH)
    return out


@_ops.nola_coeff_grad.register("triton", devices=("cuda", "cpu"), dtypes=DTYPES, check=_check)
def nola_coeff_grad(grad, k, stream_base, seed, scale):
    grad = grad.detach().contiguous()
    out = torch.empty(k, dtype=grad.dtype, device=grad.device)
    n = grad.numel()
    scale_t = torch.full((1,), float(scale), dtype=torch.float64, device=grad.device)
    with _on(grad.device):
        _coeff_grad_kernel[(k,)](grad, out, scale_t, n, *_split(stream_base, seed), NB=_nb(max(n, 1)), num_warps=4,
                                 **LAUNCH)
    return out
