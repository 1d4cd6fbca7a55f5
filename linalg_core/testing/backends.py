"""Which backends can run an op here, and parity calls against the reference, for the family
tests (tests/test_<family>.py) and benchmarks."""

from __future__ import annotations

import os

import torch

from linalg_core import _ops


def usable_backends(op: str, device="cpu", dtype=torch.float32) -> list[str]:
    """Backends that accept ``op`` for this device and dtype when forced (Triton on CPU tensors
    only under ``TRITON_INTERPRET=1``)."""
    _ops.load_backends()
    key = _ops.Key(torch.device(device), dtype, forced=True)
    out = []
    for name, reason in _ops.OPS[op].explain(key):
        if reason is None:
            out.append(name)
    if device == "cpu" and os.environ.get("TRITON_INTERPRET") != "1" and "triton" in out:
        out.remove("triton")
    return out


def triton_device() -> torch.device:
    """Where the Triton parity tests run: CUDA tensors when a GPU is there (and
    ``TRITON_INTERPRET`` is not 1), else CPU tensors under Triton's interpreter."""
    if torch.cuda.is_available() and os.environ.get("TRITON_INTERPRET") != "1":
        return torch.device("cuda")
    return torch.device("cpu")


def against_reference(op: str, *args, backend: str, **kwargs):
    """``(result on backend, result on the reference backend)`` of one call of kernel op ``op``;
    integer arguments of 2**63 and more (64-bit seeds and stream ids) are passed as the schemas'
    int64 (``_ops.as_int64``)."""
    args = tuple(_ops.as_int64(a) if isinstance(a, int) and not isinstance(a, bool) and a >= 2**63 else a
                 for a in args)
    fn = getattr(_ops, op)
    return fn(*args, backend=backend, **kwargs), fn(*args, backend="reference", **kwargs)
