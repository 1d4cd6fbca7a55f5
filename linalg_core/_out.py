"""Checks of caller-provided output arrays (``out=``), which compiled kernels write through raw
pointers: torch's own guards (read-only memory, autograd leaves, version counters, overlap) do
not run there, so they run here.

An ``out`` is accepted only when writing into its memory is exactly what the caller asked for:
a torch tensor or a writable, native-byte-order, C-contiguous numpy array (anything else would
be written through a temporary copy, leaving the caller's array untouched).
"""

from __future__ import annotations

import numpy as np
import torch


def writable(out, name: str, *, shape, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """``out`` as a contiguous tensor sharing its memory, after checking it may be written.

    Raises:
        TypeError: ``out`` is not a torch tensor or numpy array.
        ValueError: wrong shape, dtype or device; not contiguous; read-only or byte-swapped
            numpy memory; a tensor that autograd tracks (a leaf that requires grad, or any tensor
            requiring grad while grad mode is on); an inference tensor outside inference mode.
    """
    shape = tuple(shape)
    if isinstance(out, np.ndarray):
        if not out.flags.writeable:
            raise ValueError(f"{name} is a read-only numpy array (e.g. a memory map opened 'r' or np.frombuffer of "
                             "bytes): the result cannot be written into it")
        if not out.dtype.isnative or not out.flags.c_contiguous:
            raise ValueError(f"{name} must be a C-contiguous numpy array in native byte order, got dtype "
                             f"{out.dtype.str} with strides {out.strides}: it would be written through a copy")
        t = torch.from_numpy(out)
    elif isinstance(out, torch.Tensor):
        t = out
    else:
        raise TypeError(f"{name} must be a torch.Tensor or a writable numpy.ndarray, got {type(out).__name__}")
    if tuple(t.shape) != shape or t.dtype != dtype or t.device != device or not t.is_contiguous():
        raise ValueError(f"{name} must be a contiguous {dtype} array of shape {shape} on {device}, got {t.dtype} "
                         f"{tuple(t.shape)} on {t.device}" + ("" if t.is_contiguous() else " (not contiguous)"))
    if t.requires_grad and torch.is_grad_enabled():
        raise ValueError(f"{name} requires grad: writing into it is not differentiable (pass no {name}, or "
                         "write under torch.no_grad())")
    if t.is_inference() and not torch.is_inference_mode_enabled():
        raise ValueError(f"{name} is an inference tensor: it may be written only inside torch.inference_mode()")
    return t


def partially_overlaps(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Whether two contiguous tensors share some memory without being the same memory."""
    if a.device != b.device or a.numel() == 0 or b.numel() == 0:
        return False
    a0, b0 = a.data_ptr(), b.data_ptr()
    a1, b1 = a0 + a.numel() * a.element_size(), b0 + b.numel() * b.element_size()
    return a0 < b1 and b0 < a1 and not (a0 == b0 and a1 == b1)


def check_no_partial_overlap(out: torch.Tensor, x: torch.Tensor, out_name: str = "out", x_name: str = "x") -> None:
    """ValueError when two contiguous tensors share some memory without being the same memory
    (an in-place call passes the same array twice; a shifted view would read what it wrote)."""
    if partially_overlaps(out, x):
        raise ValueError(f"{out_name} partially overlaps {x_name}: pass {x_name} itself for an in-place result, or "
                         "separate memory")


def written(out: torch.Tensor) -> None:
    """Tell autograd that ``out`` was modified in place by a kernel (its version counter), so a
    graph that saved it raises instead of silently using the new values."""
    torch.autograd.graph.increment_version(out)
