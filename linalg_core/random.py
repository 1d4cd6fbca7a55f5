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

__all__ = ["Stream", "uint32", "normal", "rademacher"]


class Stream:
    """Stream ids of linalg_core's own sketches (user streams should use values >= 2**32).

    A stream id is the high half of the Philox counter: different streams of one seed are
    independent sequences.

    Example:
        >>> from linalg_core import random
        >>> a = random.normal(4, seed=0, stream=random.Stream.GAUSSIAN)
        >>> b = random.normal(4, seed=0, stream=random.Stream.RADEMACHER)
        >>> bool((a != b).all())
        True
    """

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

    Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", SC'11) with key
    ``seed`` and counter ``(e // 4, stream)`` for word ``e``.

    Args:
        count: how many words.
        seed: the Philox key, an int in [0, 2^64) (or a ``torch.Generator``, read once).
        stream: stream id, an int in [0, 2^64); see :class:`Stream` for the ids linalg_core uses.
        offset: index of the first number drawn, in [0, 2^62]: any block of a stream is generated
            without the numbers before it.
        device: where to generate them.
        backend: force a backend.

    Returns:
        int64 tensor of the words.

    Shape:
        out: (count,)

    Randomness: bit-identical on every backend and device for the same ``(seed, stream, offset)``.

    Example:
        >>> from linalg_core import random
        >>> random.uint32(4, seed=7).tolist()
        [4099963437, 3221879260, 490388034, 367897730]
        >>> random.uint32(2, seed=7, offset=2).tolist()
        [490388034, 367897730]
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

    Box–Muller on pairs of Philox words (see :mod:`linalg_core.random`).

    Args:
        shape: output shape, an int or a tuple of ints.
        seed: the Philox key, an int in [0, 2^64) (or a ``torch.Generator``, read once).
        stream: stream id, an int in [0, 2^64); see :class:`Stream` for the ids linalg_core uses.
        offset: index of the first number drawn, in [0, 2^62]: any block of a stream is generated
            without the numbers before it.
        dtype: ``torch.float32`` or ``torch.float64``.
        device: where to generate them.
        backend: force a backend.

    Returns:
        Tensor of N(0, 1) numbers.

    Shape:
        out: ``shape``

    Randomness: equal to rounding on every backend for the same ``(seed, stream, offset)``.

    Example:
        >>> import torch
        >>> from linalg_core import random
        >>> random.normal((2, 3), seed=0).round(decimals=2)
        tensor([[ 0.9900, -0.9200, -0.6200],
                [-0.4800, -0.1500,  0.1800]])
        >>> torch.equal(random.normal(6, seed=0)[3:], random.normal(3, seed=0, offset=3))
        True
    """
    return _fill(shape, False, seed, stream, offset, dtype, device, backend)


def rademacher(shape, *, seed, stream: int = 0, offset: int = 0, dtype=torch.float32, device="cpu",
               backend=None) -> torch.Tensor:
    """Random signs +-1, numbers ``offset + i`` (row-major ``i``) of a stream.

    One bit of a Philox word each (see :mod:`linalg_core.random`).

    Args:
        shape: output shape, an int or a tuple of ints.
        seed: the Philox key, an int in [0, 2^64) (or a ``torch.Generator``, read once).
        stream: stream id, an int in [0, 2^64); see :class:`Stream` for the ids linalg_core uses.
        offset: index of the first number drawn, in [0, 2^62]: any block of a stream is generated
            without the numbers before it.
        dtype: ``torch.float32`` or ``torch.float64``.
        device: where to generate them.
        backend: force a backend.

    Returns:
        Tensor of ±1.

    Shape:
        out: ``shape``

    Randomness: bit-identical on every backend for the same ``(seed, stream, offset)``.

    Example:
        >>> from linalg_core import random
        >>> random.rademacher(6, seed=0).tolist()
        [-1.0, 1.0, -1.0, 1.0, -1.0, 1.0]
    """
    return _fill(shape, True, seed, stream, offset, dtype, device, backend)
