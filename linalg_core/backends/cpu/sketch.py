"""CPU sketching kernels: the fast Walsh–Hadamard transform (plain and row-selecting, the SRHT)
and the sparse sketches' hash and scatter-add (csrc/cpu/sketch.cpp)."""

from __future__ import annotations

import torch

from linalg_core import _ops
from linalg_core._arrays import FLOAT_DTYPES, compute_dtype
from linalg_core._ext import _C
from linalg_core._scratch import borrow
from linalg_core.backends._c import CODES, buf, u64

CPU = ("cpu",)


@_ops.fwht.register("cpu", devices=CPU, dtypes=FLOAT_DTYPES, direct=_C.cpu_fwht_direct)
def fwht(x, N, row_mult, scale, out_dtype):
    B, n_valid, K = x.shape
    out = torch.empty(B, N, K, dtype=out_dtype)
    return out, _C.cpu_fwht(buf(x), buf(out), CODES[x.dtype], CODES[out_dtype], B, n_valid, N, K, buf(row_mult), scale)


@_ops.fwht_into.register("cpu", devices=CPU, dtypes=FLOAT_DTYPES)
def fwht_into(x, N, row_mult, scale, out):
    B, n_valid, K = x.shape
    return _C.cpu_fwht(buf(x), buf(out), CODES[x.dtype], CODES[out.dtype], B, n_valid, N, K, buf(row_mult), scale)


@_ops.fwht_select.register("cpu", devices=CPU, dtypes=FLOAT_DTYPES)
def fwht_select(x, N, row_mult, scale, rows, out_dtype):
    B, n_valid, K = x.shape
    out = torch.empty(B, rows.numel(), K, dtype=out_dtype)
    # the fused kernel transforms into a (B, N, K) scratch in the compute dtype, kept between calls
    with borrow("fwht_select", B * N * K, compute_dtype(x.dtype, out_dtype), x.device) as work:
        count = _C.cpu_fwht_select(buf(x), buf(work), buf(out), CODES[x.dtype], CODES[out_dtype], B, n_valid, N, K,
                                   buf(row_mult), scale, buf(rows), rows.numel())
    return out, count


@_ops.sparse_hash.register("cpu", devices=CPU, dtypes=[torch.int32])
def sparse_hash(n, col0, m, s, stream, seed, device):
    rows = torch.empty(n, s, dtype=torch.int32)
    signs = torch.empty(n, s, dtype=torch.int8)
    _C.cpu_sparse_hash(buf(rows), buf(signs), n, col0, m, s, u64(stream), u64(seed))
    return rows, signs


@_ops.sparse_apply.register("cpu", devices=CPU, dtypes=FLOAT_DTYPES)
def sparse_apply(A, rows, signs, m, scale, right):
    cdt = compute_dtype(A.dtype)
    if right:  # A (B, d, n): rows of A are independent
        B, d, n = A.shape
        out = torch.empty(B, d, m, dtype=cdt)
    else:
        B, n, d = A.shape
        out = torch.empty(B, m, d, dtype=cdt)
    return out, _C.cpu_sparse_apply(buf(A), buf(out), CODES[A.dtype], CODES[cdt], right, B, n, d, m, rows.shape[1],
                                    buf(rows), buf(signs), scale)
