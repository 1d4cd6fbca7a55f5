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


def _capturing(x) -> bool:
    """A CUDA graph is being captured on x's stream: no host synchronisation (a data-dependent
    check) may run; the checks then rest on the caller (quantize_activations never makes -128,
    and the finiteness of x is checked before capture, when the graph's inputs are made)."""
    return x.is_cuda and torch.cuda.is_current_stream_capturing()


def check_int8_range(x):
    if _capturing(x):
        return
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


def quantize_rows(x):
    """(x_q int8, s float32 (M, 1)): symmetric per-row INT8, s = max(max|x|, tiny) / 127 and
    x_q = clamp(round(x / s), ±127), in float32 — ``quantize_activations(x, "token")``."""
    t = x.to(torch.float32)
    s = t.abs().amax(-1, keepdim=True).clamp_(min=torch.finfo(torch.float32).tiny).div_(127)
    return torch.div(t, s).round_().clamp_(-127, 127).to(torch.int8), s


def linear_from(dgq_matmul_impl):
    """dgq_linear as the composition of per-row quantization, an integer product and the
    epilogue (backends without a fused kernel)."""

    def dgq_linear(x, qweight, zeros, group_scales, weight_sums, channel_scales, bias, group):
        bad = 0 if _capturing(x) else int((~torch.isfinite(x)).sum())
        if bad:
            raise ValueError(f"x has {bad} NaN or Inf entries (of {x.numel()})")
        x_q, s = quantize_rows(x)
        y = dgq_matmul_impl(x_q, qweight, zeros, group_scales, weight_sums, group, s.reshape(-1), channel_scales)
        return y if bias is None else y.add_(bias)

    return dgq_linear


_ops.dgq_linear.register("reference", devices=ANY_DEVICE, dtypes=[torch.int8])(linear_from(dgq_matmul))
