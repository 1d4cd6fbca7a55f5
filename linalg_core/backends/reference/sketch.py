"""Reference implementations of the sketching kernels: the Walsh-Hadamard butterfly and the
sparse scatter-add, in plain torch."""

from __future__ import annotations

import torch

from linalg_core import _ops
from linalg_core._arrays import FLOAT_DTYPES, compute_dtype
from linalg_core.backends.reference import philox
from linalg_core.backends.reference.convert import count_nonfinite
from linalg_core.backends.reference.random import ANY_DEVICE


@_ops.fwht.register("reference", devices=ANY_DEVICE, dtypes=FLOAT_DTYPES)
def fwht(x, N, row_mult, scale, out_dtype):
    B, n_valid, K = x.shape
    y = x.to(compute_dtype(x.dtype, out_dtype))
    if row_mult is not None:
        y = y * row_mult.to(y.dtype)[:, None]
    if N > n_valid:
        y = torch.cat([y, y.new_zeros(B, N - n_valid, K)], dim=1)
    h = 1
    while h < N:  # level h: rows i and i + h of each 2h block -> (a + b, a - b)
        v = y.view(B, N // (2 * h), 2, h, K)
        y = torch.stack((v[:, :, 0] + v[:, :, 1], v[:, :, 0] - v[:, :, 1]), dim=2).view(B, N, K)
        h *= 2
    y = (y * scale).to(out_dtype)
    return y, count_nonfinite(y)


@_ops.fwht_into.register("reference", devices=ANY_DEVICE, dtypes=FLOAT_DTYPES)
def fwht_into(x, N, row_mult, scale, out):
    out.copy_(fwht(x, N, row_mult, scale, out.dtype)[0])
    return count_nonfinite(out)


def fwht_then_select(fwht_impl):
    """fwht_select as the full transform followed by a row gather (backends without a fused
    kernel)."""

    def fwht_select(x, N, row_mult, scale, rows, out_dtype):
        y = fwht_impl(x, N, row_mult, scale, compute_dtype(x.dtype, out_dtype))[0]
        y = y.index_select(1, rows).to(out_dtype)
        return y, count_nonfinite(y)

    return fwht_select


_ops.fwht_select.register("reference", devices=ANY_DEVICE, dtypes=FLOAT_DTYPES)(fwht_then_select(fwht))


@_ops.sparse_hash.register("reference", devices=ANY_DEVICE, dtypes=[torch.int32])
def sparse_hash(n, col0, m, s, stream, seed, device):
    stream, seed = stream & philox.MASK64, seed & philox.MASK64
    j = torch.arange(col0, col0 + n, dtype=torch.int64, device=device)
    l = torch.arange(s, dtype=torch.int64, device=device)
    lanes = philox.philox4x32_10(j[:, None] * s + l[None, :], stream, seed)
    lo, hi = (l * m) // s, ((l + 1) * m) // s
    rows = lo + ((lanes[..., 0] * (hi - lo)) >> 32)
    signs = 1 - 2 * (lanes[..., 1] & 1)
    return rows.to(torch.int32), signs.to(torch.int8)


@_ops.sparse_apply.register("reference", devices=ANY_DEVICE, dtypes=FLOAT_DTYPES)
def sparse_apply(A, rows, signs, m, scale, right):
    cdt = compute_dtype(A.dtype)
    n, s = rows.shape
    idx = rows.to(torch.int64).reshape(-1)  # entry (j, l) -> row of S
    vals = (signs.to(cdt) * scale).reshape(-1)
    src = A.to(cdt)
    if right:  # A (B, d, n) -> (B, d, m)
        contrib = src.repeat_interleave(s, dim=-1) * vals
        out = src.new_zeros(*A.shape[:-1], m).index_add_(-1, idx, contrib)
        return out, count_nonfinite(out)
    contrib = src.repeat_interleave(s, dim=1) * vals[:, None]  # A (B, n, d) -> (B, m, d)
    out = src.new_zeros(A.shape[0], m, A.shape[2]).index_add_(1, idx, contrib)
    return out, count_nonfinite(out)
