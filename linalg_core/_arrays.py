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

_compiling = torch.compiler.is_compiling


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
        if self.kind == "torch":
            return t
        if isinstance(t, (tuple, list)):
            return type(t)(self.out(x) for x in t)
        if not isinstance(t, torch.Tensor):
            return t
        if self.kind == "numpy":
            return t.detach().cpu().numpy()
        mod = sys.modules.get(self.module) or importlib.import_module(self.module)
        for owner in (mod, getattr(mod, "numpy", None)):
            if owner is not None and hasattr(owner, "from_dlpack"):
                return owner.from_dlpack(t.detach())
        return t


_TORCH = Boundary("torch")


def as_tensor(x, name: str) -> tuple[torch.Tensor, Boundary]:
    """View ``x`` as a torch tensor (no copy where possible) and remember its type.

    Raises:
        TypeError: ``x`` is none of the accepted array types (a sparse matrix included: the
            functions that take one call :func:`as_sparse` first).
    """
    if isinstance(x, torch.Tensor) and x.layout == torch.strided:
        if _compiling():  # Dynamo: no data to look at
            return x, _TORCH
        try:
            aligned = x.data_ptr() % x.element_size() == 0
        except RuntimeError:  # no storage (fake tensors, torch.func's wrappers): nothing to copy
            return x, _TORCH
        return (x, _TORCH) if aligned else (x.clone(), _TORCH)  # the kernels need aligned data
    if isinstance(x, np.ndarray):
        if x.dtype.kind not in "fiub":
            raise TypeError(f"{name} has numpy dtype {x.dtype}, which is not numeric")
        if not x.dtype.isnative:
            x = x.astype(x.dtype.newbyteorder("="))
        elif not x.flags.aligned:  # unpickled or memory-mapped at an odd offset: the kernels need aligned data
            x = x.copy()
        with warnings.catch_warnings():  # read-only arrays: we never write to inputs
            warnings.simplefilter("ignore", UserWarning)
            try:
                t = torch.from_numpy(x)
            except ValueError:  # negative strides
                t = torch.from_numpy(np.ascontiguousarray(x))
        return t, Boundary("numpy")
    if is_sparse(x):
        raise TypeError(f"{name} is a sparse matrix ({_sparse_kind(x)}); this function needs a dense array "
                        "(pass A.toarray() / A.to_dense() if it fits in memory)")
    if hasattr(x, "__dlpack__"):
        return torch.from_dlpack(x), Boundary("dlpack", type(x).__module__.split(".")[0])
    raise TypeError(
        f"{name} must be a torch.Tensor, numpy.ndarray or DLPack array, got {type(x).__name__}"
    )



def _plumbing(x: torch.Tensor) -> str:
    """Backend of the conversion ops when the library calls them for its own bookkeeping (casts,
    finiteness checks): the compiled CPU kernel where it runs, torch otherwise — whatever
    ``LINALG_CORE_BACKEND`` forces for the user's ops."""
    if _CPU_OK[0] is None:
        from linalg_core import _ops

        _CPU_OK[0] = _ops.availability("cpu") is None
    return "cpu" if x.is_cpu and _CPU_OK[0] else "reference"


_CPU_OK: list[bool | None] = [None]


def _kernel_input(x: torch.Tensor) -> bool:
    return x.dtype in FLOAT_DTYPES and x.is_contiguous()


def cast(x: torch.Tensor, dtype: torch.dtype, out: torch.Tensor | None = None) -> tuple[torch.Tensor, int]:
    """(x converted to ``dtype``, number of non-finite entries of x) in one pass: the compiled
    kernel for contiguous CPU tensors (vectorised, threaded), else torch. ``out`` (contiguous,
    x's shape) receives the result when given."""
    from linalg_core import _ops

    if out is None:
        out = torch.empty(x.shape, dtype=dtype, device=x.device)
    if _kernel_input(x) and out.is_contiguous() and dtype in FLOAT_DTYPES:
        return out, int(_ops.convert_into(x, out, backend=_plumbing(x)))
    out.copy_(x)
    return out, count_nonfinite(x) if x.is_floating_point() else 0


def count_nonfinite(x: torch.Tensor) -> int:
    """Number of NaN/±Inf entries of a float tensor: one read pass through the compiled kernel
    for contiguous CPU tensors (no temporaries: a 16-bit ``sum`` first converts the whole
    tensor), else torch."""
    from linalg_core import _ops

    if _kernel_input(x):
        return int(_ops.count_nonfinite(x, backend=_plumbing(x)))
    return int((~torch.isfinite(x)).sum())


# --------------------------------------------------------------------------- sparse matrices

_TORCH_SPARSE = (torch.sparse_coo, torch.sparse_csr, torch.sparse_csc)


def _scipy_sparse(x) -> bool:
    mod = sys.modules.get("scipy.sparse")  # a scipy matrix means scipy.sparse is imported already
    return mod is not None and mod.issparse(x)


def is_sparse(x) -> bool:
    """Whether ``x`` is a scipy.sparse matrix / array or a torch sparse tensor (any layout)."""
    return (isinstance(x, torch.Tensor) and x.layout != torch.strided) or _scipy_sparse(x)


def _sparse_kind(x) -> str:
    if isinstance(x, torch.Tensor):
        return f"torch {x.layout}"
    return f"scipy.sparse {type(x).__name__}"


class SparseMatrix:
    """A 2-D sparse matrix held as a torch CSR tensor in its compute dtype (float32, or float64
    for float64 input): products with dense blocks, row blocks and its transpose, never a dense
    copy of the whole matrix. Built by :func:`as_sparse`.

    Attributes:
        csr: the (m, n) torch sparse CSR tensor (values in ``dtype``).
        shape: (m, n).
        dtype: the compute dtype; ``input_dtype`` the dtype of the caller's values.
    """

    def __init__(self, csr: torch.Tensor, input_dtype: torch.dtype):
        self.csr = csr
        self.shape = tuple(csr.shape)
        self.dtype = csr.dtype
        self.input_dtype = input_dtype
        self.device = csr.device
        self._transpose: SparseMatrix | None = None

    def to(self, dtype: torch.dtype) -> "SparseMatrix":
        """The same matrix with values in ``dtype`` (self when they are already)."""
        if dtype == self.dtype:
            return self
        c = self.csr
        return SparseMatrix(_csr(c.crow_indices(), c.col_indices(), c.values().to(dtype), self.shape),
                            self.input_dtype)

    @property
    def nnz(self) -> int:
        return int(self.csr.values().numel())

    def matmul(self, X: torch.Tensor) -> torch.Tensor:
        """A X for a dense (n, k) X. Shape: X (n, k) -> (m, k)"""
        return torch.sparse.mm(self.csr, X.to(self.dtype).contiguous())

    def rmatmul(self, Y: torch.Tensor) -> torch.Tensor:
        """Aᵀ Y for a dense (m, k) Y, through the CSR of Aᵀ (built once). Shape: Y (m, k) -> (n, k)"""
        return self.T.matmul(Y)

    @property
    def T(self) -> "SparseMatrix":
        """Aᵀ as a SparseMatrix (the CSC arrays of A read as the CSR arrays of Aᵀ)."""
        if self._transpose is None:
            csc = self.csr.to_sparse_csc()
            t = SparseMatrix(_csr(csc.ccol_indices(), csc.row_indices(), csc.values(), self.shape[::-1]),
                             self.input_dtype)
            t._transpose = self
            self._transpose = t
        return self._transpose

    def fro_norm_sq(self) -> torch.Tensor:
        """‖A‖_F² (exact: the stored entries are distinct)."""
        return torch.linalg.vector_norm(self.csr.values()) ** 2

    def coo(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(row indices int64, column indices int64, values) of the stored entries, row-major."""
        crow = self.csr.crow_indices().to(torch.int64)
        rows = torch.repeat_interleave(torch.arange(self.shape[0], device=self.device), crow.diff())
        return rows, self.csr.col_indices().to(torch.int64), self.csr.values()

    def rows(self, i0: int, i1: int) -> "SparseMatrix":
        """Rows i0:i1 as a SparseMatrix (views of A's arrays, offsets shifted)."""
        crow = self.csr.crow_indices()
        p0, p1 = int(crow[i0]), int(crow[i1])
        return SparseMatrix(_csr(crow[i0:i1 + 1] - p0, self.csr.col_indices()[p0:p1], self.csr.values()[p0:p1],
                                 (i1 - i0, self.shape[1])), self.input_dtype)

    def row_blocks(self, width: int):
        """(i0, i1, rows i0:i1) for blocks of rows whose dense products with a (n, width) or
        (width, ·) operand stay near 16 MiB."""
        step = max(1, (1 << 22) // max(1, width))
        for i0 in range(0, self.shape[0], step):
            i1 = min(self.shape[0], i0 + step)
            yield i0, i1, self.rows(i0, i1)

    def row_norms_sq(self) -> torch.Tensor:
        """‖a_i‖² of every row. Shape: (m,)"""
        rows, _, vals = self.coo()
        out = torch.zeros(self.shape[0], dtype=self.dtype, device=self.device)
        return out.index_add_(0, rows, vals * vals)


def _csr(crow, col, values, shape) -> torch.Tensor:
    if crow.dtype != col.dtype:
        crow, col = crow.to(torch.int64), col.to(torch.int64)
    with warnings.catch_warnings():  # torch's "CSR support is in beta" notice, not the caller's concern
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        return torch.sparse_csr_tensor(crow, col, values, size=tuple(shape), check_invariants=False)


def as_sparse(x, name: str) -> tuple[SparseMatrix, Boundary] | None:
    """``x`` as a :class:`SparseMatrix` when it is a 2-D scipy.sparse matrix / array or a torch
    sparse COO / CSR / CSC tensor, else None. The values are checked: float dtype (TypeError),
    finite (ValueError counting NaN / Inf); duplicates of COO input are summed. scipy input
    comes back as numpy (:class:`Boundary`), torch input as torch.

    Raises:
        TypeError: non-float values, or a torch sparse layout other than COO / CSR / CSC.
        ValueError: not 2-D, empty, NaN/Inf values.
    """
    if isinstance(x, torch.Tensor) and x.layout != torch.strided:
        if x.layout not in _TORCH_SPARSE:
            raise TypeError(f"{name} has sparse layout {x.layout}; supported: sparse_coo, sparse_csr, sparse_csc")
        if x.dim() != 2 or x.dense_dim() != 0:
            raise ValueError(f"{name} must be a 2-D sparse matrix, got shape {tuple(x.shape)}"
                             + (f" with {x.dense_dim()} dense dimension(s)" if x.dense_dim() else ""))
        _check_sparse_dtype(x.dtype, name)
        if x.layout == torch.sparse_coo:
            x = x.coalesce().to_sparse_csr()
        elif x.layout == torch.sparse_csc:
            x = x.to_sparse_csr()
        crow, col, vals, shape, dtype, boundary = x.crow_indices(), x.col_indices(), x.values(), x.shape, x.dtype, \
            Boundary("torch")
    elif _scipy_sparse(x):
        if len(x.shape) != 2:
            raise ValueError(f"{name} must be a 2-D sparse matrix, got shape {tuple(x.shape)}")
        if x.dtype.kind != "f":
            raise TypeError(f"{name} has dtype {x.dtype}; supported: float32, float64, float16")
        csr = x.tocsr()
        if not csr.has_canonical_format:  # duplicates summed, on a copy: inputs are never mutated
            csr = csr.copy()
            csr.sum_duplicates()
        data = csr.data if csr.data.dtype.isnative else csr.data.astype(csr.data.dtype.newbyteorder("="))
        crow, col = torch.from_numpy(csr.indptr), torch.from_numpy(csr.indices)
        vals, shape, boundary = torch.from_numpy(data), csr.shape, Boundary("numpy")
        dtype = vals.dtype
    else:
        return None
    if min(shape) < 1:
        raise ValueError(f"{name} is empty (shape {tuple(shape)})")
    bad = count_nonfinite(vals.contiguous()) if vals.numel() else 0
    if bad:
        nan = int(torch.isnan(vals).sum())
        raise ValueError(f"{name} has {nan} NaN and {bad - nan} Inf entries (of {vals.numel()} stored)")
    cdt = compute_dtype(dtype)
    return SparseMatrix(_csr(crow, col, vals.to(cdt), shape), dtype), boundary


def _check_sparse_dtype(dtype, name):
    if dtype not in FLOAT_DTYPES:
        raise TypeError(f"{name} has dtype {dtype}; supported: float32, float64, float16, bfloat16")
