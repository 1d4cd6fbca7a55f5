"""The fast Walsh–Hadamard transform as a standalone op (the SRHT applies H_N through its own fused kernel)."""

from __future__ import annotations

import math

import torch

from linalg_core import _ops, _out, _validate

_compiling = torch.compiler.is_compiling

__all__ = ["fwht"]


def fwht(x, dim: int = -1, normalized: bool = True, *, out=None, backend: str | None = None):
    """Fast Walsh–Hadamard transform along ``dim`` (Sylvester order, as ``scipy.linalg.hadamard``;
    the butterfly of Fino and Algazi 1976, "Unified matrix treatment of the fast Walsh–Hadamard
    transform").

    Computes ``H_N x`` (divided by √N when ``normalized``, making it orthogonal and its own
    inverse) with N log₂ N additions instead of the N² of a dense product. Batched over every
    other dimension; no copy of ``x`` beyond the output. float16 / bfloat16 inputs are
    transformed in float32 and rounded once.

    Args:
        x: array whose size along ``dim`` is a power of two.
        dim: the axis to transform.
        normalized: scale by 1/√N.
        out: optional preallocated result, written in place: a torch tensor or a writable,
            native-byte-order numpy array, contiguous, of x's shape, dtype and device; it may be
            x itself (an in-place transform) but not partially overlap it, and not a tensor
            autograd tracks. Reusing it avoids the page faults of a fresh allocation.
        backend: force a backend.

    Shape:
        x: (*, N, *);  out: same as x

    Raises:
        ValueError: the size along ``dim`` is not a power of two; x has NaN/Inf; ``out`` is
            read-only, byte-swapped, strided, overlaps x partially or requires grad.

    Example:
        >>> import torch, linalg_core as lc
        >>> lc.fwht(torch.tensor([1.0, 0.0, 0.0, 0.0]), normalized=False)
        tensor([1., 1., 1., 1.])
    """
    # The plain eager call (a contiguous CPU tensor, nothing traced or differentiated) in one
    # compiled call: the checks below, the allocation and the kernel (Op.direct; None: not that
    # case, or a value this function rejects or counts, which the full path below then reports).
    # Tracers never see it: Dynamo folds is_compiling() to True and prunes the branch.
    if out is None and backend is None and not _compiling():
        y = _ops.fwht.direct(x, dim, normalized)
        if y is not None:
            return y
    t, boundary = _validate.float_array(x, "x")
    shape = t.shape
    nd = len(shape)
    if type(dim) is not int or not -nd <= dim < nd:
        dim = _validate.integer(dim, "dim", low=-nd, high=nd - 1)
    dim %= nd
    N = shape[dim]
    if N & (N - 1):
        raise ValueError(f"x.shape[{dim}]={N} is not a power of two; zero-pad it (or use sketch.srht)")
    t = t.contiguous()
    K = 1 if dim == nd - 1 else math.prod(shape[dim + 1:])
    B = t.numel() // (N * K)  # x is not empty
    scale = 1.0 / math.sqrt(N) if normalized else 1.0
    dest = None
    if out is not None:
        dest = _out.writable(out, "out", shape=t.shape, dtype=t.dtype, device=t.device)
        _out.check_no_partial_overlap(dest, t)
        dest = dest.view(B, N, K)
    if dest is None:
        y, bad = _ops.fwht(t.view(B, N, K), N, None, scale, t.dtype, backend=backend)
        y = y.view(*shape)  # unpacked: torch parses separate ints faster than a Size
    else:
        bad = _ops.fwht_into(t.view(B, N, K), N, None, scale, dest, backend=backend)
        _out.written(dest)
        y = dest.view(*shape)
    _validate.check_count(bad, y, {"x": t}, "fwht")
    return boundary.out(y) if out is None else out
