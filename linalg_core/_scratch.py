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

A third, :func:`lend`, serves a request of :func:`buffer` from memory its caller is about to
overwrite anyway (a fresh output): the scratch then shares the output's pages, which are faulted
in once instead of twice.

The two are kept apart because their costs differ: keeping whole-model buffers after the loop
would pin memory for nothing, and bounding them would reallocate for every large layer.
"""

from __future__ import annotations

import contextlib
import contextvars
import math
import threading

import torch

__all__ = ["MAX_BYTES", "borrow", "release", "reuse_buffers", "buffer", "lend"]

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

    __slots__ = ("owner", "kept", "lent")

    def __init__(self):
        self.owner = threading.get_ident()
        self.kept: dict = {}
        self.lent: dict = {}  # tag -> flat uint8 view of the memory lent to it (see lend)


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
    numel = math.prod(shape)
    lent = scope.lent.get(tag)
    if lent is not None and lent.device == torch.device(device) and numel * dtype.itemsize <= lent.numel():
        return lent[: numel * dtype.itemsize].view(dtype).view(shape)
    key = _key(tag, dtype, device)
    flat = scope.kept.get(key)
    if flat is None or flat.numel() < numel:
        flat = scope.kept[key] = torch.empty(numel, dtype=dtype, device=device)
    return flat[:numel].view(shape)


@contextlib.contextmanager
def lend(tag: str, memory: torch.Tensor):
    """Within the block, a :func:`buffer` request for ``tag`` that fits in ``memory``'s bytes (on
    its device) is a view of ``memory`` instead of the pool's buffer. The caller promises that
    ``memory``'s contents are not needed until the block ends and that it overwrites them after:
    a fresh output lends its not yet written pages to a temporary that is dead before the output
    is computed (a weight's residual destination to rsvd's bfloat16 copy of the weight), and
    those pages are faulted in once, not once for each. Opens a :func:`reuse_buffers` block if
    none is open in this thread; nested lends of one tag restore the outer one on exit.

    Args:
        tag: the :func:`buffer` tag served from ``memory``.
        memory: a contiguous tensor whose bytes may be overwritten.

    Raises:
        ValueError: ``memory`` is not contiguous.

    Example:
        >>> import torch
        >>> from linalg_core._scratch import buffer, lend
        >>> out = torch.empty(4, 4)
        >>> with lend("demo", out):
        ...     tmp = buffer("demo", (8, 4), torch.bfloat16, "cpu")
        >>> tmp.data_ptr() == out.data_ptr()
        True
    """
    if not memory.is_contiguous():
        raise ValueError(f"memory must be contiguous, got a tensor of shape {tuple(memory.shape)} and strides "
                         f"{memory.stride()}")
    with reuse_buffers():
        scope = _SCOPE.get()
        outer = scope.lent.get(tag)
        scope.lent[tag] = memory.detach().reshape(-1).view(torch.uint8)
        try:
            yield
        finally:
            if outer is None:
                del scope.lent[tag]
            else:
                scope.lent[tag] = outer
