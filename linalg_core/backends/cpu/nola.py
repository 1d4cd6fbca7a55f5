"""CPU NOLA kernels: random-basis combinations and their adjoint (csrc/cpu/nola.cpp)."""

from __future__ import annotations

import torch

from linalg_core import _ops
from linalg_core._ext import _C
from linalg_core.backends._c import CODES, buf, u64

CPU = ("cpu",)
DTYPES = (torch.float32, torch.float64)


@_ops.nola_combine.register("cpu", devices=CPU, dtypes=DTYPES)
def nola_combine(coeffs, rows, cols, stream_base, seed, scale):
    coeffs = coeffs.detach().contiguous()
    out = torch.empty(rows, cols, dtype=coeffs.dtype)
    _C.cpu_nola_combine(buf(coeffs), buf(out), CODES[coeffs.dtype], coeffs.shape[0], rows, cols, u64(stream_base),
                        u64(seed), scale)
    return out


@_ops.nola_coeff_grad.register("cpu", devices=CPU, dtypes=DTYPES)
def nola_coeff_grad(grad, k, stream_base, seed, scale):
    grad = grad.detach().contiguous()
    out = torch.empty(k, dtype=grad.dtype)
    _C.cpu_nola_coeff_grad(buf(grad), buf(out), CODES[grad.dtype], k, grad.shape[0], grad.shape[1], u64(stream_base),
                           u64(seed), scale)
    return out
