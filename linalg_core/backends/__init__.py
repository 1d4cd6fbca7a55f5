"""Backends, in priority order: cuda (linalg_core._C built with nvcc), triton, cpu
(linalg_core._C), reference (pure torch, always present).

Importing this package registers every backend's implementations in ``linalg_core._ops``;
it happens at the first dispatch, never at ``import linalg_core``. Nothing here initialises
CUDA until a CUDA tensor is actually dispatched.
"""

from __future__ import annotations

import functools
import importlib.util
import os

import torch

from linalg_core._ext import C_IMPORT_ERROR, _C


@functools.lru_cache(maxsize=None)
def _cuda_gpu() -> str | None:
    if not torch.cuda.is_available():
        return "no CUDA GPU is visible to torch"
    return None


def availability(name: str) -> str | None:
    """``None`` when backend ``name`` can run here, else the reason it cannot."""
    if name == "reference":
        return None
    if name == "cpu":
        return C_IMPORT_ERROR
    if name == "cuda":
        if _C is None:
            return C_IMPORT_ERROR
        if not _C.build_info()["cuda"]:
            return "linalg_core._C was built without CUDA (no nvcc at build time, or LINALG_CORE_CUDA=OFF)"
        return _cuda_gpu()
    if name == "triton":
        if importlib.util.find_spec("triton") is None:
            return "triton is not installed (pip install triton)"
        if os.environ.get("TRITON_INTERPRET") == "1" or _cuda_gpu() is None:
            return None
        return "no CUDA GPU for Triton (TRITON_INTERPRET=1 runs its kernels on the CPU interpreter)"
    raise ValueError(f"unknown backend {name!r}")


def _register_all() -> None:
    from linalg_core.backends import reference  # noqa: F401  (always)

    if _C is not None:  # availability of the GPU itself is checked per call
        from linalg_core.backends import cpu, cuda  # noqa: F401
    if availability("triton") is None:
        from linalg_core.backends import triton  # noqa: F401


_register_all()
