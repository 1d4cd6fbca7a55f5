"""Scratch buffers kept between calls.

A fresh buffer of tens or hundreds of MiB costs as much in page faults as the kernel that fills it
(the SRHT's (B, N, K) transform scratch for a tall A, 2^20 × 64 float64: 383 ms with a new buffer
per call, 114 ms with a kept one). :func:`borrow` hands out one kept buffer per (tag, dtype,
device), grown to the largest request up to a bound; callers that find it busy (another thread)
and larger requests get a fresh buffer. :func:`release` frees them all.
"""

from __future__ import annotations

import contextlib
import threading

import torch

MAX_BYTES = 256 << 20
_KEPT: dict = {}
_LOCK = threading.Lock()


@contextlib.contextmanager
def borrow(tag: str, numel: int, dtype: torch.dtype, device: torch.device):
    """A flat buffer of at least ``numel`` elements, yours until the block exits."""
    mine = _LOCK.acquire(blocking=False)
    try:
        key = (tag, dtype, str(device))
        flat = _KEPT.get(key) if mine else None
        if flat is None or flat.numel() < numel:
            flat = torch.empty(numel, dtype=dtype, device=device)
            if mine and numel * flat.element_size() <= MAX_BYTES:
                _KEPT[key] = flat
        yield flat[:numel]
    finally:
        if mine:
            _LOCK.release()


def release() -> None:
    """Free every kept buffer."""
    with _LOCK:
        _KEPT.clear()
