"""Backends, in priority order: cuda (linalg_core._C built with nvcc), triton, cpu
(linalg_core._C), reference (pure torch, always present).

Each backend is a folder with one module per op family it implements, named for the family
(``_ops.FAMILIES``: ``sketch``, ``random``, ``convert``, ``sampling``, ``quant``, ``qmatmul``),
whose implementations register themselves with :mod:`linalg_core._ops` when imported. This package declares each backend's availability and
imports a family's modules (:func:`load`); ``linalg_core`` installs it as the registry's loader,
so it runs at the first dispatch of each family, never at ``import linalg_core``. Nothing here initialises CUDA until a CUDA
tensor is actually dispatched.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import os

import torch

from linalg_core import _ops
from linalg_core._ext import C_IMPORT_ERROR, _C


@functools.lru_cache(maxsize=None)
def _cuda_gpu() -> str | None:
    if not torch.cuda.is_available():
        return "no CUDA GPU is visible to torch"
    return None


def _cpu() -> str | None:
    return C_IMPORT_ERROR


def _cuda() -> str | None:
    if _C is None:
        return C_IMPORT_ERROR
    if not _C.build_info()["cuda"]:
        return "linalg_core._C was built without CUDA (no nvcc at build time, or LINALG_CORE_CUDA=OFF)"
    return _cuda_gpu()


def _triton() -> str | None:
    if importlib.util.find_spec("triton") is None:
        return "triton is not installed (pip install triton)"
    if os.environ.get("TRITON_INTERPRET") == "1" or _cuda_gpu() is None:
        return None
    return "no CUDA GPU for Triton (TRITON_INTERPRET=1 runs its kernels on the CPU interpreter)"


def availability(name: str) -> str | None:
    """``None`` when backend ``name`` can run here, else the reason it cannot; imports every
    family first, so that each op's ``impls`` then lists all its implementations."""
    _ops.load_backends()
    return _ops.availability(name)


_ops.declare_backend("cpu", _cpu)
_ops.declare_backend("cuda", _cuda)
_ops.declare_backend("triton", _triton)



def load(families) -> None:
    """Import (and so register) the modules of ``families`` of every backend that can be present:
    ``reference`` always, ``cpu`` and ``cuda`` when ``linalg_core._C`` loaded (the GPU itself is
    checked per call), ``triton`` only when it can run here (a CUDA GPU, or
    ``TRITON_INTERPRET=1``: importing triton costs ~0.1 s). The registry's loader, run at the first
    dispatch of each family (:func:`linalg_core._ops.load_backends`)."""
    backends = ["reference"] + (["cpu", "cuda"] if _C is not None else [])
    if families and _triton() is None:
        backends.append("triton")
    for backend in backends:
        for family in families:
            name = f"linalg_core.backends.{backend}.{family}"
            if importlib.util.find_spec(name) is not None:  # (a backend implements some families)
                importlib.import_module(name)
