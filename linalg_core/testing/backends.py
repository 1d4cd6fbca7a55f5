"""Which backends can run an op here, for parity tests and benchmarks."""

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
