"""Triton kernel of the DGQ A8W4 integer product (op ``dgq_matmul``).

A program computes a BM × BN tile of y. For each 128-weight block of K it loads the x tile
(int8), the 64 packed bytes of each of its BN channels, splits them into high (even k) and low
(odd k) nibbles, interleaves them back to natural order (``tl.join`` + ``tl.reshape``), expands
w8 = s_int·(q − z) with the block's group scale and zero, and accumulates ``tl.dot`` of the two
int8 tiles in int32: the INT8 weight exists only in registers.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from linalg_core import _ops
from linalg_core.backends.reference.qmatmul import check_int8_range, linear_from, scale_output
from linalg_core.backends.triton import LAUNCH, _check, _on

BK = 128


@triton.jit(do_not_specialize=["M", "N", "K", "group"])
def _dgq_kernel(x, qw, zeros, gs, y, M, N, K, group, BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr):
    pm = tl.program_id(0).to(tl.int64)
    pn = tl.program_id(1).to(tl.int64)
    M = M.to(tl.int64)
    N = N.to(tl.int64)
    K = K.to(tl.int64)
    group = group.to(tl.int64)
    G = K // group
    rm = pm * BM + tl.arange(0, BM).to(tl.int64)
    rn = pn * BN + tl.arange(0, BN).to(tl.int64)
    rk = tl.arange(0, BK).to(tl.int64)
    rb = tl.arange(0, BK // 2).to(tl.int64)
    mmask, nmask = rm < M, rn < N
    acc = tl.zeros((BM, BN), dtype=tl.int32)
    for k0 in range(0, K, BK):
        xt = tl.load(x + rm[:, None] * K + k0 + rk[None, :], mask=mmask[:, None], other=0)
        b = tl.load(qw + rn[:, None] * (K // 2) + k0 // 2 + rb[None, :], mask=nmask[:, None], other=0).to(tl.int32)
        q = tl.reshape(tl.join(b >> 4, b & 15), (BN, BK))  # natural order: high nibble = even k
        g = k0 // group
        z = tl.load(zeros + rn * G + g, mask=nmask, other=0).to(tl.int32)
        s = tl.load(gs + rn * G + g, mask=nmask, other=0).to(tl.int32)
        w8 = ((q - z[:, None]) * s[:, None]).to(tl.int8)
        acc += tl.dot(xt, tl.trans(w8), out_dtype=tl.int32)
    tl.store(y + rm[:, None] * N + rn[None, :], acc, mask=mmask[:, None] & nmask[None, :])


@_ops.dgq_matmul.register("triton", devices=("cuda", "cpu"), dtypes=[torch.int8], check=_check)
def dgq_matmul(x, qweight, zeros, group_scales, weight_sums, group, x_scale=None, channel_scales=None):
    check_int8_range(x)
    M, K = x.shape
    N = qweight.shape[0]
    y = torch.empty(M, N, dtype=torch.int32, device=x.device)
    if M == 0 or N == 0:
        return y
    bm = 16 if M <= 16 else 64
    bn = 64
    with _on(x.device):
        _dgq_kernel[(triton.cdiv(M, bm), triton.cdiv(N, bn))](x, qweight, zeros, group_scales, y, M, N, K, group,
                                                              BM=bm, BN=bn, BK=BK, **LAUNCH)
    return y if x_scale is None else scale_output(y, x_scale, channel_scales)


_ops.dgq_linear.register("triton", devices=("cuda", "cpu"), dtypes=[torch.int8], check=_check)(linear_from(dgq_matmul))
