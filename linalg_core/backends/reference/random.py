"""Reference implementations of the random ops."""

from __future__ import annotations

import torch

from linalg_core import _ops
from linalg_core._arrays import FLOAT_DTYPES
from linalg_core.backends.reference import philox

ANY_DEVICE = ("cpu", "cuda", "mps", "xpu")


@_ops.random_uint32.register("reference", devices=ANY_DEVICE, dtypes=[torch.int64])
def random_uint32(count, offset, stream, seed, device):
    offset, stream, seed = offset & philox.MASK64, stream & philox.MASK64, seed & philox.MASK64
    index = torch.arange(offset, offset + count, dtype=torch.int64, device=device)
    return philox.words(index, stream, seed)


@_ops.random_fill.register("reference", devices=ANY_DEVICE, dtypes=FLOAT_DTYPES)
def random_fill(nrows, ncols, ld, row0, col0, stream, seed, scale, sign, dtype, device):
    stream, seed = stream & philox.MASK64, seed & philox.MASK64
    rows = torch.arange(row0, row0 + nrows, dtype=torch.int64, device=device)
    cols = torch.arange(col0, col0 + ncols, dtype=torch.int64, device=device)
    index = rows[:, None] * ld + cols[None, :]
    x = philox.signs(index, stream, seed).to(torch.float64) if sign else philox.normals(index, stream, seed)
    return (scale * x).to(dtype)
