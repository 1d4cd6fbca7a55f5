"""Reference DGQ integer product: expand w8 = s_int·(q − z) and multiply exactly (float64 sums of
integers below 2^53 are exact)."""

from __future__ import annotations

import torch

from linalg_core import _ops
from linalg_core.backends.reference.random import ANY_DEVICE


def expand_int8(qweight, zeros, group_scales, group):
    N = qweight.shape[0]
    q = torch.stack([qweight >> 4, qweight & 15], dim=2).reshape(N, -1, group).to(torch.int32)
    w8 = (q - zeros.to(torch.int32)[:, :, None]) * group_scales.to(torch.int32)[:, :, None]
    return w8.reshape(N, -1)


def check_int8_range(x):
    if x.numel() and int(x.min()) == -128:
        raise ValueError("x contains -128: symmetric INT8 activations are in [-127, 127] (quantize_activations)")


@_ops.dgq_matmul.register("reference", devices=ANY_DEVICE, dtypes=[torch.int8])
def dgq_matmul(x, qweight, zeros, group_scales, weight_sums, group, x_scale, channel_scales):
    check_int8_range(x)
    w8 = expand_int8(qweight, zeros, group_scales, group)
    acc = torch.round(x.to(torch.float64) @ w8.to(torch.float64).T).to(torch.int32)
    return acc if x_scale is None else scale_output(acc, x_scale, channel_scales)


def scale_output(acc, x_scale, channel_scales):
    """(float(acc)·x_scale[m])·channel_scales[n] in float32, the kernels' epilogue."""
    return acc.to(torch.float32).mul_(x_scale[:, None]).mul_(channel_scales)
