"""Counter-based random streams shared by every backend.

linalg_core draws all its randomness from Philox4x32-10 (Salmon et al., "Parallel random
numbers: as easy as 1, 2, 3", SC'11), defined once in ``csrc/include/linalg_core/philox.h`` and
mirrored bit for bit by the torch reference and the Triton kernels:

* key = the 64-bit ``seed``; counter = (word index / 4, ``stream``), so word ``e`` of a stream
  is computed on its own: any block of a sketch is generated without the rest, on any device
  and in any order (streaming, distributed use).
* normals: Box-Muller on word pairs; Rademacher signs: one bit each; integers in [0, r):
  multiply-shift (Lemire 2019), exact on every backend.

The same ``seed`` and ``stream`` give bit-identical integers and signs on every backend, and
normals equal to rounding. There is no hidden global generator: ``seed=None`` draws fresh
entropy once and the objects that use it record the value.

Example:
    >>> from linalg_core import random
    >>> random.uint32(4, seed=7).tolist() == random.uint32(4, seed=7).tolist()
    True
"""

from __future__ import annotations

import math

import torch

from linalg_core import _ops, _validate
from linalg_core._ops import as_int64


class Stream:
    """Stream ids of linalg_core's own sketches (user streams should use values >= 2**32)."""

    GAUSSIAN = 1
    RADEMACHER = 2
    SRHT_SIGNS = 3
    SRHT_ROWS = 4
    SPARSE = 5


def _flat_shape(shape) -> tuple[tuple[int, ...], int, int]:
    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    for i, s in enumerate(shape):
        _validate.integer(s, f"shape[{i}]", low=0)
    ncols = shape[-1] if shape else 1
    return shape, math.prod(shape[:-1]) if shape else 1, ncols


def _common(seed, stream, offset):
    return (
        _validate.seed(seed),
        _validate.integer(stream, "stream", low=0, high=2**64 - 1),
        _validate.integer(offset, "offset", low=0, high=2**62),
    )


def uint32(count: int, *, seed, stream: int = 0, offset: int = 0, device="cpu", backend=None) -> torch.Tensor:
    """Words ``offset .. offset + count - 1`` of a Philox stream, as int64 values in [0, 2^32).

    Shape:
        out: (count,)
    """
    count = _validate.integer(count, "count", low=0)
    seed, stream, offset = _common(seed, stream, offset)
    return _ops.random_uint32(count, as_int64(offset), as_int64(stream), as_int64(seed), torch.device(device),
                              backend=backend)


def _fill(shape, sign, seed, stream, offset, dtype, device, backend):
    shape, nrows, ncols = _flat_shape(shape)
    seed, stream, offset = _common(seed, stream, offset)
    if dtype not in (torch.float32, torch.float64):
        raise TypeError(f"dtype={dtype} is not supported; use torch.float32 or torch.float64")
    out = _ops.random_fill(nrows, ncols, ncols, 0, offset, as_int64(stream), as_int64(seed), 1.0, sign, dtype,
                           torch.device(device), backend=backend)
    return out.reshape(shape)


def normal(shape, *, seed, stream: int = 0, offset: int = 0, dtype=torch.float32, device="cpu",
           backend=None) -> torch.Tensor:
    """Standard normal numbers ``offset + i`` (row-major ``i``) of a stream.

    Shape:
        out: ``shape``
    """
    return _fill(shape, False, seed, stream, offset, dtype, device, backend)


def rademacher(shape, *, seed, stream: int = 0, offset: int = 0, dtype=torch.float32, device="cpu",
               backend=None) -> torch.Tensor:
    """Random signs +-1, numbers ``offset + i`` (row-major ``i``) of a stream.

    Shape:
        out: ``shape``
    """
    return _fill(shape, True, seed, stream, offset, dtype, device, backend)
