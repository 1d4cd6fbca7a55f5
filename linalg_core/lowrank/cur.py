"""CUR decomposition: A ≈ C U R with C = A[:, cols] and R = A[rows, :]."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.linalg
import torch

from linalg_core import _threads, _validate
from linalg_core.lowrank.nystrom import factors_to_svd
from linalg_core.lowrank.operators import Dense, as_operator
from linalg_core.lowrank.rsvd import rsvd
from linalg_core.lowrank.svd import SVD
from linalg_core.random import normal

CUR_STREAM = 9


@dataclass(frozen=True)
class CUR:
    """A ≈ C @ U @ R with actual columns and rows of A, in the caller's array type: the result of
    :func:`cur` (Voronin and Martinsson 2017, "Efficient algorithms for CUR and interpolative
    matrix decompositions").

    Attributes:
        cols, rows: the indices of the columns and rows kept (ascending).
        C, U, R: the factors.
        seed: the int seed of the random sketches / draws that chose them (the one drawn for
            ``seed=None``): ``cur(A, r, seed=d.seed, ...)`` reproduces the result bit for bit.

    Shape:
        cols: (r,);  rows: (r,);  C: (m, r);  U: (r, r);  R: (r, n)

    Example:
        >>> import torch, linalg_core as lc
        >>> g = torch.Generator().manual_seed(0)
        >>> A = torch.randn(50, 4, generator=g, dtype=torch.float64) @ torch.randn(4, 30, generator=g,
        ...                                                                        dtype=torch.float64)
        >>> d = lc.cur(A, 4, seed=0)
        >>> torch.equal(d.C, A[:, d.cols]), torch.equal(d.R, A[d.rows]), tuple(d.U.shape)
        (True, True, (4, 4))
        >>> U, S, Vh = d.to_svd()
        >>> bool(torch.linalg.norm(U * S @ Vh - A) < 1e-8 * torch.linalg.norm(A))
        True
    """

    cols: object
    rows: object
    C: object
    U: object
    R: object
    seed: int | None = None

    def dense(self):
        """C @ U @ R, in the factors' array type. Shape: (m, n)"""
        return self.C @ self.U @ self.R

    def to_svd(self) -> SVD:
        """The same approximation as a truncated SVD, in the factors' array type.

        Shape:
            U: (m, r);  S: (r,);  Vh: (r, n)
        """
        return factors_to_svd(self.C, self.U, self.R, seed=self.seed)


def _pivots(Z: torch.Tensor, r: int) -> torch.Tensor:
    """The first r column pivots of the column-pivoted QR of Z (LAPACK geqp3 via scipy)."""
    with _threads.blas_sized(Z.shape[-2] * Z.shape[-1] * min(Z.shape[-2:])):  # one pool per small call
        _, piv = scipy.linalg.qr(Z.detach().cpu().double().numpy(), mode="r", pivoting=True)
    return torch.from_numpy(np.sort(piv[:r]).astype(np.int64))


def _sample(weights: torch.Tensor, r: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed % 2**63)
    return torch.multinomial(weights.cpu().double(), r, replacement=False, generator=g).sort().values


def cur(A, rank: int, *, method: str = "pivoted_qr", oversample: int = 10, seed=None, finder=None) -> CUR:
    """CUR decomposition with ``rank`` columns and rows.

    * ``method="pivoted_qr"``: columns are the first ``rank`` pivots of the column-pivoted QR of
      a Gaussian sketch GA (k × n, k = rank + oversample), rows likewise from (AG')ᴴ — the
      sketched pivoting of Voronin and Martinsson (2017), deterministic given the seed.
    * ``method="leverage"``: columns and rows sampled without replacement with probabilities
      proportional to their rank-r leverage scores from :func:`rsvd` (Mahoney and Drineas
      2009).

    The core is the optimal U = C⁺ A R⁺, computed through the QR factors of C and Rᴴ with a
    rank-revealing pseudo-inverse (singular values below eps·max(m, n)·σ₁ dropped) — never
    the unstable inverse of the intersection A[rows, cols].

    Args:
        A: (m, n) dense array (sparse matrices and operators are refused: CUR reads actual
            columns and rows).
        rank: r, 1 ≤ r ≤ min(m, n).
        method: ``"pivoted_qr"`` or ``"leverage"``.
        oversample: extra sketch rows / columns for ``"pivoted_qr"``.
        seed: int, ``torch.Generator`` or None (fresh entropy, recorded as ``.seed``).
        finder: for ``"leverage"``, the range finder of its :func:`rsvd` (default
            ``SubspaceIteration()``); ``"pivoted_qr"`` takes none.

    Returns:
        :class:`CUR` (cols, rows, C, U, R, seed), all in the caller's array type.

    Shape:
        A: (m, n);  cols, rows: (r,);  C: (m, r);  U: (r, r);  R: (r, n)

    Randomness:
        ``"pivoted_qr"``: the Gaussian sketches G (k × m) and G' (n × k), normal stream 9 of
        ``seed`` (G' at offset 2^40); ``"leverage"``: rsvd's test matrix and the draws of a
        ``torch.Generator`` seeded with ``seed`` (columns) and ``seed + 1`` (rows). The same seed
        gives the same columns and rows.

    Raises:
        ValueError: rank outside [1, min(m, n)], a batched A, NaN/Inf, a ``finder`` with
            ``method="pivoted_qr"``.
        TypeError: a sparse matrix or operator, non-float A, non-integer rank / oversample.

    Example:
        >>> import torch, linalg_core as lc
        >>> A = torch.randn(60, 8, dtype=torch.float64) @ torch.randn(8, 50, dtype=torch.float64)
        >>> d = lc.cur(A, 8, seed=0)
        >>> torch.allclose(d.dense(), A, atol=1e-8)
        True
    """
    _validate.not_differentiable(A, "A", "cur")
    op, boundary, batch = as_operator(A)
    if not isinstance(op, Dense):
        raise TypeError(f"cur selects actual columns and rows of A: it needs a dense 2-D array, got "
                        f"{type(A).__name__} (for a sparse A use rsvd or nystrom, which only multiply by it)")
    if batch:
        raise ValueError(f"cur needs a single 2-D matrix, got shape {tuple(op.shape)}")
    Ad = op.dense()
    m, n = Ad.shape
    rank = _validate.integer(rank, "rank", low=1)
    if rank > min(m, n):
        raise ValueError(f"rank={rank} exceeds min(m, n)={min(m, n)} for A of shape ({m}, {n})")
    _validate.choice(method, "method", ("pivoted_qr", "leverage"))
    oversample = _validate.integer(oversample, "oversample", low=0)
    seed = _validate.seed(seed)
    if finder is not None and method != "leverage":
        raise ValueError(f"finder={finder!r} is used by method='leverage' only, not method={method!r}")
    if method == "pivoted_qr":
        k = min(min(m, n), rank + oversample)
        G1 = normal((k, m), seed=seed, stream=CUR_STREAM, dtype=Ad.dtype, device=Ad.device)
        G2 = normal((n, k), seed=seed, stream=CUR_STREAM, offset=1 << 40, dtype=Ad.dtype, device=Ad.device)
        cols = _pivots(G1 @ Ad, rank)
        rows = _pivots((Ad @ G2).T, rank)
    else:
        U, _, Vh = rsvd(Ad, rank, seed=seed, finder=finder)
        cols = _sample((Vh**2).sum(0), rank, seed)
        rows = _sample((U**2).sum(1), rank, seed + 1)
    cols, rows = cols.to(Ad.device), rows.to(Ad.device)
    C, R = Ad[:, cols], Ad[rows, :]
    Qc, Rc = torch.linalg.qr(C)
    Qr, Rr = torch.linalg.qr(R.T)
    rtol = torch.finfo(Ad.dtype).eps * max(m, n)
    core = torch.linalg.pinv(Rc, rtol=rtol) @ (Qc.T @ Ad @ Qr) @ torch.linalg.pinv(Rr.T, rtol=rtol)
    return CUR(*boundary.out((cols, rows, C, core, R)), seed=seed)
