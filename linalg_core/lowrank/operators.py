"""Linear operators for the low-rank algorithms: a dense (batched) matrix, a sparse matrix
(scipy.sparse, torch COO / CSR / CSC: products on the stored entries only), a
``scipy.sparse.linalg.LinearOperator``, or anything with ``shape``, ``dtype``,
``matmul(X) = A @ X`` and ``rmatmul(Y) = Aᴴ @ Y`` (matrix-free: a quantized weight, a Gram
matrix, a sum of terms, row blocks of a Dask array).

All of them implement one protocol, :class:`LinearOperator`, so the drivers (rsvd, nystrom,
svd_error) run on any of them. The library's own operators derive from :class:`Operator` and
are used as they are; other objects are checked and wrapped (:func:`as_linear_operator`).

Low-precision dense inputs (float16, bfloat16) are multiplied block of rows by block of rows
in float32, so no float32 copy of the whole matrix is ever made.
"""

from __future__ import annotations

import sys
from typing import Protocol, runtime_checkable

import numpy as np
import torch

from linalg_core import _validate
from linalg_core._arrays import Boundary, SparseMatrix, as_sparse, cast, compute_dtype
from linalg_core._scratch import buffer as _scratch  # the one pool; _scratch is the name used here and by importers
from linalg_core._scratch import reuse_buffers

# Elements of A converted to float32 at a time for low-precision products (16 MiB), and by the
# other row-blocked loops over a weight (adapters' residual).
ROW_BLOCK_ELEMS = 1 << 22

@runtime_checkable
class LinearOperator(Protocol):
    """What the low-rank algorithms need of A (*, m, n): the protocol every operator implements
    (dense, low-precision, sparse, scipy ``LinearOperator``, quantized weights, Dask row blocks,
    the residual A − U diag(S) Vh). Inputs are recognised by duck typing (:func:`is_operator`),
    not by ``isinstance`` against it.

    Attributes:
        shape: (*, m, n) (user operators: (m, n)).
        dtype: the compute dtype of the products (float32 or float64).
        device: where the products' results live (optional for user operators: CPU).

    Optional methods:
        ``fro_norm_sq()``: ‖A‖_F² per batch item, where the operator knows it (else rsvd's
        AdaptiveQB estimates it, :func:`hutchinson_fro_sq`).
        ``matmul_normal(k, *, seed, stream, offset, backend)``: A Ω for the Gaussian Ω =
        ``linalg_core.random.normal((n, k), seed=seed, stream=stream, offset=offset)``, for an
        operator that generates Ω where its data lives.

    Shape:
        matmul: X (*, n, k) -> (*, m, k);  rmatmul: Y (*, m, k) -> (*, n, k)

    Example:
        >>> import torch, linalg_core as lc
        >>> class Gram:  # A = Xᵀ X without forming it
        ...     def __init__(self, X):
        ...         self.X, self.shape, self.dtype = X, (X.shape[1], X.shape[1]), X.dtype
        ...     def matmul(self, V):
        ...         return self.X.T @ (self.X @ V)
        ...     def rmatmul(self, V):
        ...         return self.X.T @ (self.X @ V)
        >>> X = torch.randn(100, 30, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
        >>> S = lc.rsvd(Gram(X), 3, seed=0).S
        >>> torch.allclose(S, torch.linalg.svdvals(X)[:3] ** 2, rtol=1e-2)
        True
    """

    shape: tuple[int, int]
    dtype: torch.dtype
    device: torch.device

    def matmul(self, X: torch.Tensor) -> torch.Tensor:  # (n, k) -> (m, k)
        """A @ X. Shape: X (*, n, k) -> (*, m, k)"""
        ...

    def rmatmul(self, Y: torch.Tensor) -> torch.Tensor:  # (m, k) -> (n, k)
        """Aᴴ @ Y. Shape: Y (*, m, k) -> (*, n, k)"""
        ...


class Operator:
    """Base of the library's operators (:class:`LinearOperator` implementations that are valid by
    construction): :func:`as_operator` and the drivers take them as they are, without the checks
    and casts of a user operator. Subclasses set ``shape``, ``dtype``, ``device`` and define
    ``matmul`` / ``rmatmul``.

    Shape:
        shape: (*, m, n);  matmul: (*, n, k) -> (*, m, k);  rmatmul: (*, m, k) -> (*, n, k)

    Example:
        >>> import torch, linalg_core as lc
        >>> from linalg_core.lowrank import Operator
        >>> class Diagonal(Operator):
        ...     def __init__(self, d):
        ...         self.d, self.shape, self.dtype, self.device = d, (len(d), len(d)), d.dtype, d.device
        ...     def matmul(self, X):
        ...         return self.d[:, None] * X
        ...     def rmatmul(self, Y):
        ...         return self.d[:, None] * Y
        >>> d = 0.5 ** torch.arange(20, dtype=torch.float64)
        >>> [round(s, 6) for s in lc.rsvd(Diagonal(d), 3, seed=0).S.tolist()]
        [1.0, 0.5, 0.25]
    """

    shape: tuple
    dtype: torch.dtype
    device: torch.device


class Dense(Operator):
    """A dense (*, m, n) tensor seen as an operator, computing in float32 (float64 for float64)."""

    def __init__(self, A: torch.Tensor, *, unchecked: str | None = None):
        """``unchecked``: the argument name of an A not yet checked for NaN/Inf; the check then
        rides on the first full pass: the bfloat16 copy, or the first product, whose result is
        nonfinite wherever A is (every entry of A meets the operand in some product, and
        NaN·0 = Inf·0 = NaN), so the small result is checked instead of A (A is counted only on
        failure), or :meth:`ensure_finite`."""
        self.A = A
        self.shape = tuple(A.shape)
        self.dtype = compute_dtype(A.dtype)
        self.device = A.device
        self.direct = A.dtype == self.dtype
        self.unchecked = unchecked

    def ensure_finite(self) -> None:
        if self.unchecked is not None:
            _validate.check_finite(self.A, self.unchecked)
            self.unchecked = None

    def _checked(self, Y):
        """Y, a product with A, after the NaN/Inf check that was pending on A (see __init__)."""
        if self.unchecked is not None:
            _validate.check_finite_through([Y], self.A, self.unchecked)
            self.unchecked = None
        return Y

    def _rows(self):
        m, n = self.shape[-2:]
        step = max(1, ROW_BLOCK_ELEMS // max(1, n))
        for i in range(0, m, step):
            yield i, min(m, i + step)

    def matmul(self, X):
        if self.direct:
            return self._checked(torch.matmul(self.A, X))
        out = torch.empty(*self.shape[:-1], X.shape[-1], dtype=self.dtype, device=self.device)
        for i0, i1 in self._rows():
            torch.matmul(self._block(i0, i1), X, out=out[..., i0:i1, :])
        return self._checked(out)

    def _block(self, i0, i1):
        """Rows i0:i1 of A in the compute dtype, through one reused buffer for a 2-D A."""
        part = self.A[..., i0:i1, :]
        if part.dim() != 2:
            return part.to(self.dtype)
        buf = _scratch("rows", (min(self.shape[0], max(1, ROW_BLOCK_ELEMS // max(1, self.shape[1]))), self.shape[1]),
                       self.dtype, self.device)
        return cast(part, self.dtype, out=buf[: i1 - i0])[0]

    def rmatmul(self, Y):
        if self.direct:  # (Yᴴ A)ᴴ: A read in its stored order (faster than Aᴴ @ Y on CPU)
            return self._checked(torch.matmul(Y.mT.conj(), self.A).mT.conj())
        out = None
        for i0, i1 in self._rows():
            part = torch.matmul(Y[..., i0:i1, :].mT.conj(), self._block(i0, i1)).mT.conj()
            out = part if out is None else out.add_(part)
        return self._checked(out)

    def bf16(self) -> "LowPrecision":
        """The same matrix for bfloat16 GEMMs (a copy only when A is not bfloat16 already)."""
        if self.A.dtype == torch.bfloat16:
            self.ensure_finite()
            return LowPrecision(self.A, self.dtype)
        copy, bad = cast(self.A, torch.bfloat16, out=_scratch("bf16", self.A.shape, torch.bfloat16, self.device))
        if bad and self.unchecked is not None:
            raise ValueError(_validate.nonfinite_message(self.A, self.unchecked))
        self.unchecked = None
        return LowPrecision(copy, self.dtype)

    def fro_norm_sq(self) -> torch.Tensor:
        """‖A‖_F², per batch item."""
        total = None
        for i0, i1 in self._rows():
            part = torch.linalg.vector_norm(self._block(i0, i1), dim=(-2, -1)) ** 2
            total = part if total is None else total + part
        return self._checked(total)

    def dense(self) -> torch.Tensor:
        return self.A.to(self.dtype)


class LowPrecision(Operator):
    """Products with a bfloat16 A: bfloat16 GEMMs (fp32 accumulation inside the GEMM, the
    result rounded to bfloat16), returned in ``dtype``. Used only for the power iterations of
    the range finder, where an error of 2^-9 in each product changes the captured energy to
    second order (see rsvd's ``precision``)."""

    def __init__(self, A: torch.Tensor, dtype: torch.dtype):
        self.A, self.dtype, self.device = A, dtype, A.device
        self.shape = tuple(A.shape)

    # The small operand is made contiguous in the layout the GEMM reads: oneDNN's bfloat16
    # kernels are markedly slower with a transposed one.
    def matmul(self, X):
        return torch.matmul(self.A, X.to(torch.bfloat16).contiguous()).to(self.dtype)

    def rmatmul(self, Y):
        return torch.matmul(Y.mT.to(torch.bfloat16).contiguous(), self.A).mT.to(self.dtype)


def hutchinson_fro_sq(op, *, probes: int = 32, seed: int = 0, stream: int = 2**32 + 1) -> torch.Tensor:
    """‖A‖_F² ≈ E‖Ag‖² over ``probes`` Gaussian vectors g (Hutchinson's trace estimator of AᴴA;
    relative standard deviation √(2/probes)): the only way to know it for a matrix-free A."""
    from linalg_core.random import normal

    G = normal((op.shape[-1], probes), seed=seed, stream=stream, dtype=op.dtype, device=_device(op))
    return torch.linalg.vector_norm(op.matmul(G), dim=(-2, -1)) ** 2 / probes


def fro_norm_sq(op) -> torch.Tensor:
    """‖A‖_F²: exact when the operator knows it (dense), else :func:`hutchinson_fro_sq`."""
    return op.fro_norm_sq() if hasattr(op, "fro_norm_sq") else hutchinson_fro_sq(op)


def known_fro_norm_sq(op):
    """‖A‖_F² in float64 where the operator knows it (dense: one read of A, the norms of its rows
    in A's precision summed in float64, a relative error of a few units of A's rounding; a
    wrapped operator with its own ``fro_norm_sq``), else None (no products spent on an
    estimate). Per batch item.

    The row norms keep the reduction in vectorised float32 (far cheaper than a float64 reduction
    of the whole A); the float64 reduction is the fallback where a row norm overflows."""
    if isinstance(op, Dense) and op.direct:
        total = (torch.linalg.vector_norm(op.A, dim=-1).to(torch.float64) ** 2).sum(-1)
        if not bool(torch.isfinite(total).all()):  # a row norm past float32's range
            total = torch.linalg.vector_norm(op.A, dim=(-2, -1), dtype=torch.float64) ** 2
        return op._checked(total)
    inner = op.op if isinstance(op, _Wrapped) else op
    return op.fro_norm_sq().to(torch.float64) if hasattr(inner, "fro_norm_sq") else None


def _device(op):
    return getattr(op, "device", None) or torch.device("cpu")


def is_operator(A) -> bool:
    """Whether A is a matrix-free operator in the sense of :class:`LinearOperator`: duck-typed
    (``shape``, ``dtype``, ``matmul``, ``rmatmul``) rather than an ``isinstance`` check against
    the runtime-checkable Protocol, which torch.compile cannot trace."""
    if isinstance(A, (torch.Tensor, np.ndarray)):
        return False
    return all(hasattr(A, attr) for attr in ("shape", "dtype", "matmul", "rmatmul"))


def _scipy_operator(A) -> bool:
    mod = sys.modules.get("scipy.sparse.linalg")
    return mod is not None and isinstance(A, mod.LinearOperator)


def as_operator(A, name: str = "A", *, products_only: bool = False):
    """(operator, boundary, batch shape). Dense arrays are validated (float dtype, finite,
    non-empty, at least 2-D); sparse matrices (scipy.sparse, torch COO / CSR / CSC) become a
    :class:`~linalg_core._arrays.SparseMatrix` (products on the stored entries, never densified;
    scipy's results in numpy); a ``scipy.sparse.linalg.LinearOperator`` is used through
    ``matmat`` / ``rmatmat`` (results in numpy); other operators must have shape, dtype, matmul
    and rmatmul. ``products_only``: the caller reads a dense A only through ``matmul`` /
    ``rmatmul`` / ``bf16`` / ``fro_norm_sq``, so the NaN/Inf check rides on the first of them
    instead of a pass of its own. The library's operators (:class:`Operator`, ``SparseMatrix``)
    are returned as they are, with torch results."""
    if isinstance(A, (Operator, SparseMatrix)):
        if not products_only and hasattr(A, "ensure_finite"):
            A.ensure_finite()
        return A, Boundary("torch"), tuple(A.shape[:-2])
    sparse = as_sparse(A, name)
    if sparse is not None:
        return sparse[0], sparse[1], ()
    if _scipy_operator(A):
        inner = getattr(A, "A", None)  # aslinearoperator(matrix): the matrix itself (its norm known, same answer)
        if type(A).__name__ == "MatrixLinearOperator" and inner is not None:
            op, _, batch = as_operator(inner, name, products_only=products_only)
            return op, Boundary("numpy"), batch
        return _Wrapped(_ScipyOperator(A, name), name), Boundary("numpy"), ()
    if is_operator(A):
        return _Wrapped(A, name), Boundary("torch"), ()
    t, boundary = _validate.float_array(A, name, min_ndim=2)
    if not products_only:
        _validate.check_finite(t, name)
    return Dense(t, unchecked=name if products_only else None), boundary, tuple(t.shape[:-2])


_NUMPY_FLOATS = {np.dtype(np.float32): torch.float32, np.dtype(np.float64): torch.float64,
                 np.dtype(np.float16): torch.float16}


class _ScipyOperator(Operator):
    """A ``scipy.sparse.linalg.LinearOperator`` seen through torch tensors (on the CPU)."""

    def __init__(self, op, name):
        dtype = getattr(op, "dtype", None)
        if dtype is None or np.dtype(dtype) not in _NUMPY_FLOATS:
            raise TypeError(f"{name} is a scipy LinearOperator with dtype {dtype}; supported: float32, float64, "
                            "float16")
        self.op, self.shape, self.dtype = op, tuple(op.shape), _NUMPY_FLOATS[np.dtype(dtype)]
        self.device = torch.device("cpu")

    def matmul(self, X):
        return torch.from_numpy(np.asarray(self.op.matmat(X.detach().cpu().numpy())))

    def rmatmul(self, Y):
        return torch.from_numpy(np.asarray(self.op.rmatmat(Y.detach().cpu().numpy())))


class _Wrapped(Operator):
    """A user operator, checked (2-D, non-empty, float dtype), with products cast to its
    compute dtype."""

    def __init__(self, op, name: str = "A"):
        shape = tuple(op.shape)
        if len(shape) != 2:
            raise ValueError(f"{name} operator must have a 2-D shape, got {op.shape}")
        if min(shape) < 1:
            raise ValueError(f"{name} is empty (shape {shape})")
        if op.dtype not in (torch.float32, torch.float64, torch.float16, torch.bfloat16):
            raise TypeError(f"{name} operator has dtype {op.dtype}; supported: float32, float64, float16, bfloat16")
        self.op = op
        self.shape = tuple(int(x) for x in shape)
        self.dtype = compute_dtype(op.dtype)
        self.device = _device(op)

    def matmul(self, X):
        return self.op.matmul(X).to(self.dtype)

    def rmatmul(self, Y):
        return self.op.rmatmul(Y).to(self.dtype)

    def fro_norm_sq(self):
        if hasattr(self.op, "fro_norm_sq"):
            return torch.as_tensor(self.op.fro_norm_sq(), dtype=self.dtype)
        return hutchinson_fro_sq(self)


def as_linear_operator(A, *, name: str = "A") -> LinearOperator:
    """A as one of the library's linear operators, for the drivers (rsvd, nystrom, svd_error) to
    use as it is: a dense (batched) array becomes a float32 / float64 operator (16-bit inputs
    multiplied block of rows by block of rows, NaN/Inf checked on the first product and reported
    under ``name``), a sparse matrix a CSR operator, a ``scipy.sparse.linalg.LinearOperator`` or
    any object with ``shape``, ``dtype``, ``matmul`` and ``rmatmul`` a checked wrapper whose
    products come back in its compute dtype; the library's operators are returned as they are.

    The drivers return torch tensors for an operator (they cannot know the caller's array type).

    Args:
        A: (*, m, n) array, sparse matrix or operator.
        name: the argument name used in error messages.

    Shape:
        A: (*, m, n)

    Raises:
        ValueError / TypeError: as the drivers do for ``A`` (empty, non-float, a user operator
            that is not 2-D).

    Example:
        >>> import torch, linalg_core as lc
        >>> from linalg_core.lowrank import as_linear_operator
        >>> op = as_linear_operator(torch.randn(40, 30), name="W")
        >>> op.shape, lc.rsvd(op, 3, seed=0).S.shape
        ((40, 30), torch.Size([3]))
    """
    return as_operator(A, name, products_only=True)[0]


__all__ = ["LinearOperator", "Operator", "Dense", "LowPrecision", "SparseMatrix", "as_operator", "as_linear_operator",
           "is_operator", "fro_norm_sq", "hutchinson_fro_sq", "reuse_buffers", "ROW_BLOCK_ELEMS"]
