"""Array boundary: torch tensors inside, the caller's array type outside.

Public functions accept ``torch.Tensor``, ``numpy.ndarray`` and any object implementing the
DLPack protocol (CuPy, JAX, ...). They are viewed as tensors without a copy where possible and
results are handed back in the caller's type.
"""

from __future__ import annotations

import importlib
import sys
import warnings
from dataclasses import dataclass

import numpy as np
import torch

FLOAT_DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)

# dtype codes understood by linalg_core._C (csrc/include/linalg_core/dtype.h).
DTYPE_CODES = {torch.float32: 0, torch.float64: 1, torch.float16: 2, torch.bfloat16: 3}


def compute_dtype(*dtypes: torch.dtype) -> torch.dtype:
    """The precision a kernel accumulates in: float64 when any of ``dtypes`` is float64 (an
    input or an output), else float32."""
    return torch.float64 if torch.float64 in dtypes else torch.float32


@dataclass(frozen=True)
class Boundary:
    """Remembers the caller's array type so results can be returned in it."""

    kind: str  # "torch" | "numpy" | "dlpack"
    module: str = ""

    def out(self, t):
        """Convert a result (tensor, or tuple / list of tensors) back to the caller's type."""
        if isinstance(t, (tuple, list)):
            return type(t)(self.out(x) for x in t)
        if not isinstance(t, torch.Tensor) or self.kind == "torch":
            return t
        if self.kind == "numpy":
            return t.detach().cpu().numpy()
        mod = sys.modules.get(self.module) or importlib.import_module(self.module)
        for owner in (mod, getattr(mod, "numpy", None)):
            if owner is not None and hasattr(owner, "from_dlpack"):
                return owner.from_dlpack(t.detach())
        return t


def as_tensor(x, name: str) -> tuple[torch.Tensor, Boundary]:
    """View ``x`` as a torch tensor (no copy where possible) and remember its type.

    Raises:
        TypeError: ``x`` is none of the accepted array types.
    """
    if isinstance(x, torch.Tensor):
        return x, Boundary("torch")
    if isinstance(x, np.ndarray):
        if x.dtype.kind not in "fiub":
            raise TypeError(f"{name} has numpy dtype {x.dtype}, which is not numeric")
        if not x.dtype.isnative:
            x = x.astype(x.dtype.newbyteorder("="))
        with warnings.catch_warnings():  # read-only arrays: we never write to inputs
            warnings.simplefilter("ignore", UserWarning)
            try:
                t = torch.from_numpy(x)
            except ValueError:  # negative strides
                t = torch.from_numpy(np.ascontiguousarray(x))
        return t, Boundary("numpy")
    if hasattr(x, "__dlpack__"):
        return torch.from_dlpack(x), Boundary("dlpack", type(x).__module__.split(".")[0])
    raise TypeError(
        f"{name} must be a torch.Tensor, numpy.ndarray or DLPack array, got {type(x).__name__}"
    )



def _cpu_convert(x: torch.Tensor):
    """The compiled conversion kernel when it can take x (a contiguous float CPU tensor and a
    built ``_C``), else None. Internal plumbing: not subject to ``LINALG_CORE_BACKEND``."""
    if x.device.type != "cpu" or not x.is_contiguous() or x.dtype not in FLOAT_DTYPES:
        return None
    from linalg_core import _ops
    from linalg_core.backends import availability

    _ops._load_backends()
    impl = _ops.convert.impls.get("cpu")
    return impl.fn if impl is not None and availability("cpu") is None else None


def cast(x: torch.Tensor, dtype: torch.dtype, out: torch.Tensor | None = None) -> tuple[torch.Tensor, int]:
    """(x converted to ``dtype``, number of non-finite entries of x) in one pass: the compiled
    kernel for contiguous CPU tensors (vectorised, threaded), else torch. ``out`` (contiguous,
    x's shape) receives the result when given."""
    if out is None:
        out = torch.empty(x.shape, dtype=dtype, device=x.device)
    kernel = _cpu_convert(x) if out.is_contiguous() and dtype in FLOAT_DTYPES else None
    if kernel is None:
        out.copy_(x)
        return out, count_nonfinite(x) if x.is_floating_point() else 0
    return out, kernel(x, out)


def count_nonfinite(x: torch.Tensor) -> int:
    """Number of NaN/±Inf entries of a float tensor: one read pass through the compiled kernel
    for contiguous CPU tensors (no temporaries: a 16-bit ``sum`` first converts the whole
    tensor), else torch."""
    kernel = _cpu_convert(x)
    return kernel(x, None) if kernel is not None else int((~torch.isfinite(x)).sum())
