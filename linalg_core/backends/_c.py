"""Marshalling for the bindings of ``linalg_core._C``, shared by the ``cpu`` and ``cuda`` backends:
tensors become (data pointer, bytes, device) triples, dtypes their codes, 64-bit seeds and stream
ids (carried as signed int64 by the op schemas) their unsigned values."""

from __future__ import annotations

import torch

from linalg_core._arrays import DTYPE_CODES

CODES = DTYPE_CODES
U64 = (1 << 64) - 1


def buf(t: torch.Tensor | None) -> tuple[int, int, int] | None:
    """The (data pointer, bytes, device) triple the bindings take for a contiguous tensor (``None``
    for an absent one): the bindings check every size against these bytes."""
    if t is None:
        return None
    if not t.is_contiguous():
        raise ValueError(f"internal: a kernel buffer must be contiguous, got strides {t.stride()}")
    return (t.data_ptr(), t.nbytes, -1 if t.is_cpu else t.get_device())


def u64(v: int) -> int:
    """A seed or stream id back from its int64 schema form."""
    return v & U64
