"""Scratch buffers reused between calls: the one pool of the library.

A fresh buffer of tens or hundreds of MiB costs as much in page faults as the kernel that fills
it, so large temporaries are taken from here instead of ``torch.empty``. Every buffer is one flat
allocation per key ``(tag, dtype, device)``, grown to the largest request and handed out as a
view of its first elements, so its pages are faulted in once for all the shapes that share it.
Two lifetimes, one policy each:

* :func:`borrow` (kernels called on their own, e.g. the SRHT's transform scratch): the buffer is
  kept by the process between calls, up to :data:`MAX_BYTES` per key (a larger request gets a
  fresh buffer that is not kept), and it is *exclusive* while the ``with`` block runs: a second
  borrower at the same time (another thread, or a nested ``borrow`` in the same thread) gets a
  fresh buffer, never the busy one. :func:`release` frees the kept buffers.
* :func:`reuse_buffers` and :func:`buffer` (whole-model loops: one buffer per tag for all the
  layers of a model): buffers live only while the outermost ``reuse_buffers`` block runs, with no
  size bound (the block bounds their lifetime instead), so nothing is pinned after the loop.
  :func:`buffer` returns a view that is valid until the next :func:`buffer` call with the same tag
  in the same block: a tag has one user at a time by construction (the code that asks for it
  again is done with the previous view). Outside a block, and in threads other than the one that
  opened it, :func:`buffer` returns a fresh tensor.

The two are kept apart because their costs differ: keeping whole-model buffers after the loop
would pin memory for nothing, and bounding them would reallocate for every large layer.
"""

from __future__ import annotations

import contextlib
import contextvars
import math
import threading

import torch

__all__ = ["MAX_BYTES", "borrow", "release", "reuse_buffers", "buffer"]

# Largest buffer :func:`borrow` keeps per key; larger requests are allocated per call.
MAX_BYTES = 256 << 20

# borrow's kept buffers, (tag, dtype, str(device)) -> flat tensor; guarded by _LOCK, which a
# borrower holds for the whole ``with`` block (that is what makes a kept buffer exclusive).
_KEPT: dict = {}
_LOCK = threading.Lock()


def _key(tag: str, dtype: torch.dtype, device) -> tuple:
    return (tag, dtype, str(device))


@contextlib.contextmanager
def borrow(tag: str, numel: int, dtype: torch.dtype, device):
    """A flat buffer of at least ``numel`` elements, yours alone until the block exits.

    Args:
        tag: what the buffer is for (one kept buffer per tag, dtype and device).
        numel: elements needed.
        dtype: element type.
        device: where the buffer lives.

    Yields:
        An uninitialised flat tensor of exactly ``numel`` elements: a view of the kept buffer, or
        a fresh tensor when the kept one is busy or the request exceeds :data:`MAX_BYTES`.

    Shape:
        out: (numel,)
    """
    mine = _LOCK.acquire(blocking=False)  # busy (another user right now): never wait, never share
    try:
        key = _key(tag, dtype, device)
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
    """Free every buffer kept by :func:`borrow` (a ``reuse_buffers`` block frees its own on exit)."""
    with _LOCK:
        _KEPT.clear()


class _Scope:
    """The buffers of one outermost :func:`reuse_buffers` block, usable by its own thread only."""

    __slots__ = ("owner", "kept")

    def __init__(self):
        self.owner = threading.get_ident()
        self.kept: dict = {}


_SCOPE: contextvars.ContextVar[_Scope | None] = contextvars.ContextVar("linalg_core_scratch", default=None)


@contextlib.contextmanager
def reuse_buffers():
    """Within the block, :func:`buffer` keeps one buffer per (tag, dtype, device) and reuses it
    instead of allocating per call (the bfloat16 copy of a float32 A in the low-rank algorithms,
    the stacked weights of a whole-model initialisation). Nested blocks share the outermost
    block's buffers; they are freed when the outermost block exits.

    Example:
        >>> import torch
        >>> from linalg_core._scratch import buffer, reuse_buffers
        >>> with reuse_buffers():
        ...     a = buffer("demo", (4, 4), torch.float32, "cpu")
        ...     b = buffer("demo", (2, 3), torch.float32, "cpu")
        >>> a.data_ptr() == b.data_ptr()
        True
    """
    scope = _SCOPE.get()
    token = _SCOPE.set(_Scope()) if scope is None or scope.owner != threading.get_ident() else None
    try:
        yield
    finally:
        if token is not None:
            _SCOPE.reset(token)


def buffer(tag: str, shape, dtype: torch.dtype, device) -> torch.Tensor:
    """An uninitialised buffer of ``shape`` for use ``tag``.

    Inside :func:`reuse_buffers` it is a view of the block's buffer for (tag, dtype, device),
    grown to the largest request, valid until the next ``buffer`` call with the same tag;
    elsewhere (no block, or another thread than the block's) a fresh tensor.

    Shape:
        out: shape
    """
    scope = _SCOPE.get()
    if scope is None or scope.owner != threading.get_ident():
        return torch.empty(shape, dtype=dtype, device=device)
    key = _key(tag, dtype, device)
    numel = math.prod(shape)
    flat = scope.kept.get(key)
    if flat is None or flat.numel() < numel:
        flat = scope.kept[key] = torch.empty(numel, dtype=dtype, device=device)
    return flat[:numel].view(shape)
