"""CPU row-wise kernels of the sampling family (csrc/cpu/sampling.cpp): the weighted Gram and the row
quadratic forms of the Lewis-weight iteration."""

from __future__ import annotations

import torch

from linalg_core import _ops
from linalg_core._ext import _C
from linalg_core.backends._c import CODES, buf

CPU = ("cpu",)
REAL = (torch.float32, torch.float64)

# Above these widths BLAS-3 (a scaled copy and a GEMM) beats the row-blocked kernels
# (benchmarks/RESULTS.md, "Measurements behind design choices").
GRAM_MAX_D, FORMS_MAX_D = 256, 128


@_ops.weighted_gram.register("cpu", devices=CPU, dtypes=REAL)
def weighted_gram(A, v):
    if A.shape[1] > GRAM_MAX_D:
        return A.T @ (A * v[:, None])
    G = torch.empty(A.shape[1], A.shape[1], dtype=A.dtype)
    _C.cpu_weighted_gram(buf(A), buf(v), buf(G), CODES[A.dtype], *A.shape)
    return G


@_ops.row_quadratic_forms.register("cpu", devices=CPU, dtypes=REAL)
def row_quadratic_forms(A, M):
    if A.shape[1] > FORMS_MAX_D:
        return ((A @ M) * A).sum(1)
    q = torch.empty(A.shape[0], dtype=A.dtype)
    _C.cpu_row_quadratic_forms(buf(A), buf(M), buf(q), CODES[A.dtype], *A.shape)
    return q
