"""CPU Philox streams: raw 32-bit words and normal / Rademacher fills (csrc/cpu/random.cpp)."""

from __future__ import annotations

import torch

from linalg_core import _ops
from linalg_core._ext import _C
from linalg_core.backends._c import CODES, buf, u64

CPU = ("cpu",)


@_ops.random_uint32.register("cpu", devices=CPU, dtypes=[torch.int64])
def random_uint32(count, offset, stream, seed, device):
    out = torch.empty(count, dtype=torch.int32)
    _C.cpu_random_uint32(buf(out), count, u64(offset), u64(stream), u64(seed))
    return out.to(torch.int64) & 0xFFFFFFFF


@_ops.random_fill.register("cpu", devices=CPU, dtypes=(torch.float32, torch.float64))
def random_fill(nrows, ncols, ld, row0, col0, stream, seed, scale, sign, dtype, device):
    out = torch.empty(nrows, ncols, dtype=dtype)
    _C.cpu_random_fill(buf(out), CODES[dtype], sign, nrows, ncols, ld, row0, col0, u64(stream), u64(seed), scale)
    return out
