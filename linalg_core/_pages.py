"""Fresh CPU tensors on transparent huge pages, for large tensors written once right after they
are made (the residuals :func:`~linalg_core.adapters.init_peft_model` writes for weights that are
memory-mapped from their file).

torch's allocator hands out 4 KiB pages, and the first write to each costs a page fault: 300 MiB
of residuals for a LLaMA-7B-shaped layer set spent 69 ms in faults, more than the residual
GEMMs. An anonymous private mapping advised ``MADV_HUGEPAGE`` faults once per 2 MiB page instead
(Linux with transparent huge pages in ``always`` or ``madvise`` mode): the residual of an
11008 × 4096 bfloat16 weight 40 → 26 ms, float32 54 → 32 ms (2-core Xeon, benchmarks/RESULTS.md,
adapters). The tensor owns its mapping; it is unmapped when the last tensor on it is freed.
Elsewhere (small tensors, other devices, no ``MADV_HUGEPAGE``) :func:`empty` is ``torch.empty``.
"""

from __future__ import annotations

import math
import mmap

import torch

# Below this many bytes a tensor stays with torch's allocator (a huge page is 2 MiB).
HUGE_MIN_BYTES = 1 << 22


def empty(shape, dtype: torch.dtype, device) -> torch.Tensor:
    """An uninitialised tensor like ``torch.empty(shape, dtype=dtype, device=device)``, on
    transparent huge pages where it is a large CPU tensor (see the module docstring).

    Shape:
        out: ``shape``, contiguous

    Example:
        >>> import torch
        >>> from linalg_core import _pages
        >>> t = _pages.empty((2048, 1024), torch.float32, "cpu")
        >>> tuple(t.shape), t.dtype, t.is_contiguous()
        ((2048, 1024), torch.float32, True)
    """
    device = torch.device(device)
    numel = math.prod(shape)
    nbytes = numel * torch.empty((), dtype=dtype).element_size()
    if device.type != "cpu" or nbytes < HUGE_MIN_BYTES or not hasattr(mmap, "MADV_HUGEPAGE"):
        return torch.empty(shape, dtype=dtype, device=device)
    try:
        pages = mmap.mmap(-1, nbytes, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        pages.madvise(mmap.MADV_HUGEPAGE)
    except (OSError, ValueError):  # no mapping, or the kernel does not take the advice
        return torch.empty(shape, dtype=dtype, device=device)
    return torch.frombuffer(pages, dtype=dtype, count=numel).view(shape)
