"""Reference dtype conversion: torch's ``copy_`` and an ``isfinite`` count; the low-rank update
as a float32 ``addmm`` rounded once."""

from __future__ import annotations

import torch

from linalg_core import _ops
from linalg_core._arrays import FLOAT_DTYPES
from linalg_core.backends.reference.random import ANY_DEVICE


@_ops.count_nonfinite.register("reference", devices=ANY_DEVICE, dtypes=FLOAT_DTYPES)
def count_nonfinite(x):
    return (~torch.isfinite(x)).sum()


@_ops.convert.register("reference", devices=ANY_DEVICE, dtypes=FLOAT_DTYPES)
def convert(x, dtype):
    return x.to(dtype), count_nonfinite(x)


@_ops.convert_into.register("reference", devices=ANY_DEVICE, dtypes=FLOAT_DTYPES)
def convert_into(x, out):
    out.view(x.shape).copy_(x)
    return count_nonfinite(x)


@_ops.lowrank_update.register("reference", devices=ANY_DEVICE, dtypes=(torch.float32, torch.float16, torch.bfloat16))
def lowrank_update(W, B, A, s, out):
    out.copy_(torch.addmm(W.float(), B, A, alpha=-s))
