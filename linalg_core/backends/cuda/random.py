"""CUDA Philox streams (csrc/cuda/random/)."""

from __future__ import annotations

import torch

from linalg_core import _ops
from linalg_core._ext import _C
from linalg_core.backends._c import CODES, buf, u64
from linalg_core.backends.cuda._launch import on, stream

CUDA = ("cuda",)


@_ops.random_uint32.register("cuda", devices=CUDA, dtypes=[torch.int64])
def random_uint32(count, offset, stream_id, seed, device):
    device = torch.device(device)
    out = torch.empty(count, dtype=torch.int32, device=device)
    with on(device):
        _C.cuda_random_uint32(buf(out), count, u64(offset), u64(stream_id), u64(seed), stream(device))
    return out.to(torch.int64) & 0xFFFFFFFF


@_ops.random_fill.register("cuda", devices=CUDA, dtypes=(torch.float32, torch.float64))
def random_fill(nrows, ncols, ld, row0, col0, stream_id, seed, scale, sign, dtype, device):
    device = torch.device(device)
    out = torch.empty(nrows, ncols, dtype=dtype, device=device)
    with on(device):
        _C.cuda_random_fill(buf(out), CODES[dtype], sign, nrows, ncols, ld, row0, col0, u64(stream_id), u64(seed),
                            scale, stream(device))
    return out
