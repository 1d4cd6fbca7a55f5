"""CUDA sketching kernels (csrc/cuda/sketch/): the Walsh–Hadamard transform, the sparse hash and
its scatter-add. The SRHT's row selection is the full transform then a gather."""

from __future__ import annotations

import torch

from linalg_core import _ops
from linalg_core._arrays import FLOAT_DTYPES, compute_dtype
from linalg_core._ext import _C
from linalg_core.backends._c import CODES, buf, u64
from linalg_core.backends.cuda._launch import on, stream
from linalg_core.backends.reference.convert import count_nonfinite

CUDA = ("cuda",)


def _fwht(x, N, row_mult, scale, out):
    B, n_valid, K = x.shape
    with on(x.device):
        nbytes = _C.cuda_fwht_workspace_bytes(CODES[out.dtype], B, N, K)
        ws = torch.empty(nbytes, dtype=torch.uint8, device=x.device) if nbytes else None
        _C.cuda_fwht(buf(x), buf(out), CODES[x.dtype], CODES[out.dtype], B, n_valid, N, K, buf(row_mult), scale,
                     buf(ws), stream(x.device))


@_ops.fwht.register("cuda", devices=CUDA, dtypes=FLOAT_DTYPES)
def fwht(x, N, row_mult, scale, out_dtype):
    out = torch.empty(x.shape[0], N, x.shape[2], dtype=out_dtype, device=x.device)
    _fwht(x, N, row_mult, scale, out)
    return out, count_nonfinite(out)


@_ops.fwht_into.register("cuda", devices=CUDA, dtypes=FLOAT_DTYPES)
def fwht_into(x, N, row_mult, scale, out):
    _fwht(x, N, row_mult, scale, out)
    return count_nonfinite(out)


@_ops.fwht_select.register("cuda", devices=CUDA, dtypes=FLOAT_DTYPES)
def fwht_select(x, N, row_mult, scale, rows, out_dtype):
    y = fwht(x, N, row_mult, scale, compute_dtype(x.dtype, out_dtype))[0].index_select(1, rows).to(out_dtype)
    return y, count_nonfinite(y)


@_ops.sparse_hash.register("cuda", devices=CUDA, dtypes=[torch.int32])
def sparse_hash(n, col0, m, s, stream_id, seed, device):
    device = torch.device(device)
    rows = torch.empty(n, s, dtype=torch.int32, device=device)
    signs = torch.empty(n, s, dtype=torch.int8, device=device)
    with on(device):
        _C.cuda_sparse_hash(buf(rows), buf(signs), n, col0, m, s, u64(stream_id), u64(seed), stream(device))
    return rows, signs


@_ops.sparse_apply.register("cuda", devices=CUDA, dtypes=FLOAT_DTYPES)
def sparse_apply(A, rows, signs, m, scale, right):
    cdt = compute_dtype(A.dtype)
    if right:
        B, d, n = A.shape
        out = torch.empty(B, d, m, dtype=cdt, device=A.device)
    else:
        B, n, d = A.shape
        out = torch.empty(B, m, d, dtype=cdt, device=A.device)
    with on(A.device):
        _C.cuda_sparse_apply(buf(A), buf(out), CODES[A.dtype], CODES[cdt], right, B, n, d, m, rows.shape[1],
                             buf(rows), buf(signs), scale, stream(A.device))
    return out, count_nonfinite(out)
