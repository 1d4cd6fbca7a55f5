"""CUDA DGQ A8W4 integer product (csrc/cuda/qmatmul/, dp4a); the float epilogue in torch."""

from __future__ import annotations

import torch

from linalg_core import _ops
from linalg_core._ext import _C
from linalg_core.backends._c import buf
from linalg_core.backends.cuda._launch import on, stream
from linalg_core.backends.reference.qmatmul import check_int8_range, linear_from, scale_output

CUDA = ("cuda",)


@_ops.dgq_matmul.register("cuda", devices=CUDA, dtypes=[torch.int8])
def dgq_matmul(x, qweight, zeros, group_scales, weight_sums, group, x_scale, channel_scales):
    check_int8_range(x)
    M, K = x.shape
    acc = torch.empty(M, qweight.shape[0], dtype=torch.int32, device=x.device)
    with on(x.device):
        _C.cuda_dgq_matmul(buf(x), buf(qweight), buf(zeros), buf(group_scales), buf(weight_sums), buf(acc), M,
                           qweight.shape[0], K, group, stream(x.device))
    return acc if x_scale is None else scale_output(acc, x_scale, channel_scales)


_ops.dgq_linear.register("cuda", devices=CUDA, dtypes=[torch.int8])(linear_from(dgq_matmul))
