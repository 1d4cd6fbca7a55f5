"""Reference row-wise kernels of the sampling family: torch GEMMs."""

from __future__ import annotations

import torch

from linalg_core import _ops
from linalg_core.backends.reference.random import ANY_DEVICE


@_ops.weighted_gram.register("reference", devices=ANY_DEVICE, dtypes=[torch.float32, torch.float64])
def weighted_gram(A, v):
    return A.T @ (A * v[:, None])


@_ops.row_quadratic_forms.register("reference", devices=ANY_DEVICE, dtypes=[torch.float32, torch.float64])
def row_quadratic_forms(A, M):
    return ((A @ M) * A).sum(1)
