"""CUDA NOLA kernels: random-basis combinations and their adjoint (csrc/cuda/nola/)."""

from __future__ import annotations

import torch

from linalg_core import _ops
from linalg_core._ext import _C
from linalg_core.backends._c import CODES, buf, u64
from linalg_core.backends.cuda._launch import on, stream

CUDA = ("cuda",)
DTYPES = (torch.float32, torch.float64)


@_ops.nola_combine.register("cuda", devices=CUDA, dtypes=DTYPES)
def nola_combine(coeffs, rows, cols, stream_base, seed, scale):
    coeffs = coeffs.detach().contiguous()
    out = torch.empty(rows, cols, dtype=coeffs.dtype, device=coeffs.device)
    with on(coeffs.device):
        _C.cuda_nola_combine(buf(coeffs), buf(out), CODES[coeffs.dtype], coeffs.shape[0], rows, cols,
                             u64(stream_base), u64(seed), scale, stream(coeffs.device))
    return out


@_ops.nola_coeff_grad.register("cuda", devices=CUDA, dtypes=DTYPES)
def nola_coeff_grad(grad, k, stream_base, seed, scale):
    grad = grad.detach().contiguous()
    out = torch.empty(k, dtype=grad.dtype, device=grad.device)
    with on(grad.device):
        _C.cuda_nola_coeff_grad(buf(grad), buf(out), CODES[grad.dtype], k, grad.shape[0], grad.shape[1],
                                u64(stream_base), u64(seed), scale, stream(grad.device))
    return out
