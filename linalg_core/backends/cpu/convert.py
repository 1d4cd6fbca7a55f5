"""CPU dtype conversion with a non-finite count, one read pass (csrc/cpu/convert.cpp): the bfloat16
copies and the finiteness checks of the public layer; and the one-pass low-rank update W − s·B·A
of the adapter initialisers' residuals."""

from __future__ import annotations

import torch

from linalg_core import _ops
from linalg_core._arrays import FLOAT_DTYPES
from linalg_core._ext import _C
from linalg_core.backends._c import CODES, buf

CPU = ("cpu",)


@_ops.convert.register("cpu", devices=CPU, dtypes=FLOAT_DTYPES)
def convert(x, dtype):
    if dtype not in CODES:
        out = x.to(dtype)
        return out, count_nonfinite(x)
    out = torch.empty(x.shape, dtype=dtype)
    return out, _C.cpu_convert(buf(x), buf(out), CODES[x.dtype], CODES[dtype], x.numel())


@_ops.convert_into.register("cpu", devices=CPU, dtypes=FLOAT_DTYPES)
def convert_into(x, out):
    return _C.cpu_convert(buf(x), buf(out), CODES[x.dtype], CODES[out.dtype], x.numel())


@_ops.count_nonfinite.register("cpu", devices=CPU, dtypes=FLOAT_DTYPES)
def count_nonfinite(x):
    return _C.cpu_convert(buf(x), None, CODES[x.dtype], 0, x.numel())


@_ops.lowrank_update.register("cpu", devices=CPU, dtypes=(torch.float32, torch.float16, torch.bfloat16))
def lowrank_update(W, B, A, s, out):
    m, n = W.shape
    _C.cpu_lowrank_update(buf(W), buf(out), CODES[W.dtype], buf(B), buf(A), float(s), m, n, B.shape[1])
