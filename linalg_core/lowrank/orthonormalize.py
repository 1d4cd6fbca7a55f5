"""Orthonormalisation of a tall block Y (*, m, k): the stage between passes of a randomized
range finder, and the last step before B = QᴴA.

Each method is a frozen stage object, callable as ``Q = orth(Y)``, that the range finders take
as ``orth=`` (the string names are the shortcuts of :func:`orthonormalize`):

* :class:`Householder` (``"qr"``): Householder QR (LAPACK geqrf/orgqr): always stable, slowest
  (panel factorisation).
* :class:`CholQR2` (``"cholqr2"``): CholeskyQR2 (Fukaya, Nakatsukasa, Yanagisawa and Yamamoto
  2014): two rounds of R = chol(YᴴY), Q = Y R⁻¹, i.e. a GEMM, a k × k Cholesky and a triangular
  solve. Orthogonal to rounding when cond(Y) ≲ u^(-1/2); when the Cholesky breaks down it falls
  back to shifted CholeskyQR3 (Fukaya et al. 2020), and when the result is still not orthonormal
  to Householder.
* :class:`CholQR` (``"cholqr"``): one CholeskyQR round (Householder if it breaks down): enough
  conditioning between power iterations at a third of the cost of CholeskyQR2; not orthonormal
  to rounding.
* :class:`LU` (``"lu"``): the L factor of partial-pivoting LU (fbpca, scikit-learn):
  well-conditioned but not orthonormal; only valid between power iterations, never as a final
  basis.

``orth.final`` is the method for a basis that is returned (CholeskyQR2, or Householder for
Householder); ``orth.orthonormal`` says whether ``orth`` itself returns an orthonormal basis.
:func:`cholqr_round` and :func:`cholqr2_rounds` (given blocked products) are the pieces a
blocked CholeskyQR (a row-partitioned Y, :mod:`linalg_core.distributed`) is built from.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from linalg_core._validate import all_finite

METHODS = ("qr", "cholqr2", "cholqr", "lu")


def _householder(Y):
    return torch.linalg.qr(Y, mode="reduced").Q


def cholqr_round(Y, *, shift: float = 0.0, gram: Callable | None = None, times: Callable | None = None):
    """One CholeskyQR round: Q = Y R⁻¹ with Rᴴ = L = chol(YᴴY + shift·I); None when the Cholesky
    breaks down (or its factor is not finite).

    ``gram(Y)`` (default YᴴY) and ``times(Y, M)`` (default Y @ M) are the two products with the
    tall Y: a Y held in row blocks supplies blocked ones (a reduction of the blocks' Grams and a
    product per block), everything else is the same k × k arithmetic.

    Shape:
        Y: (*, m, k);  out: (*, m, k)
    """
    G = Y.mT.conj() @ Y if gram is None else gram(Y)
    if shift:
        G = G + shift * torch.eye(G.shape[-1], dtype=G.dtype, device=G.device)
    L, info = torch.linalg.cholesky_ex(G)
    if bool(info.any()) or not all_finite(L):  # (the compiled count: a third of isfinite().all() at k = 48)
        return None
    # Q = Y R⁻¹ with R = Lᴴ: the k × k inverse, then one GEMM (a triangular solve with the tall
    # Y is slower: LAPACK's trsm copies Y to column-major). Both err by ~u·cond(R).
    eye = torch.eye(L.shape[-1], dtype=L.dtype, device=L.device).expand_as(L)
    Rinv = torch.linalg.solve_triangular(L, eye, upper=False).mT.conj()
    return Y @ Rinv if times is None else times(Y, Rinv)


def _chol_step(Y, shift=0.0):
    return cholqr_round(Y, shift=shift)


def _near_identity(G: torch.Tensor, tol: float) -> bool:
    """‖G − I‖_F ≤ tol for every batch item (False where G has NaN)."""
    eye = torch.eye(G.shape[-1], dtype=G.dtype, device=G.device)
    return bool((torch.linalg.matrix_norm(G - eye, ord="fro") <= tol).all())


def orthonormal_enough(G: torch.Tensor) -> bool:
    """Whether the basis whose Gram matrix is G = QᴴQ is orthonormal to rounding:
    ‖QᴴQ − I‖_F ≤ 50·k·u for every batch item.

    Shape:
        G: (*, k, k)
    """
    return _near_identity(G, 50 * G.shape[-1] * torch.finfo(G.dtype).eps)


def _orthonormal_enough(Q) -> bool:
    return orthonormal_enough(Q.mT.conj() @ Q)


# ‖G − I‖_F below which the Gram matrix G = Q₁ᴴQ₁ of CholeskyQR2's first round certifies the
# second: cond(Q₁)² ≤ 3 then, and CholeskyQR loses orthogonality in proportion to cond² (Yamamoto,
# Nakatsukasa, Yanagisawa and Fukaya 2015), so the second round's Q is orthonormal to rounding
# without a third Gram matrix to check it (at k = 256 on an AMX CPU that check was a fifth of
# CholeskyQR2's time).
NEAR_ORTHONORMAL = 0.5


def cholqr2_rounds(Y, *, gram: Callable | None = None, times: Callable | None = None):
    """Two CholeskyQR rounds (:func:`cholqr_round`, same ``gram``/``times``): Q orthonormal to
    rounding, or None where a Cholesky breaks down or Q is not orthonormal (the caller falls back).
    The second round is accepted on the certificate of its input's Gram matrix
    (:data:`NEAR_ORTHONORMAL`), else checked with Q's own (:func:`orthonormal_enough`).

    Shape:
        Y: (*, m, k);  out: (*, m, k) or None
    """
    gram = gram or (lambda T: T.mT.conj() @ T)
    Q = cholqr_round(Y, gram=gram, times=times)
    if Q is None:
        return None
    G = gram(Q)
    certified = _near_identity(G, NEAR_ORTHONORMAL)
    Q = cholqr_round(Q, gram=lambda _: G, times=times)
    if Q is None or certified:
        return Q
    return Q if orthonormal_enough(gram(Q)) else None


def cholqr2(Y: torch.Tensor) -> torch.Tensor:
    """Orthonormal basis of range(Y) by CholeskyQR2 (:func:`cholqr2_rounds`), with the
    shifted-CholeskyQR3 and Householder fallbacks described in the module docstring.

    Shape:
        Y: (*, m, k);  out: (*, m, k)
    """
    Q = cholqr2_rounds(Y)
    if Q is not None:
        return Q
    # breakdown, or not orthonormal: Y too ill-conditioned for plain CholeskyQR
    m, k = Y.shape[-2:]
    u = torch.finfo(Y.dtype).eps / 2
    norm2 = torch.linalg.matrix_norm(Y, ord="fro").max() ** 2
    shift = float(11 * (m * k + k * (k + 1)) * u * norm2)
    Q = _chol_step(Y, shift)
    Q = _chol_step(Q) if Q is not None else None
    Q = _chol_step(Q) if Q is not None else None
    if Q is None or not all_finite(Q) or not _orthonormal_enough(Q):
        return _householder(Y)
    return Q


def _row_permutation(pivots, m: int) -> torch.Tensor:
    """LAPACK's sequential row swaps (1-based) as a permutation vector."""
    perm = list(range(m))
    for i, p in enumerate(pivots.tolist()):
        perm[i], perm[p - 1] = perm[p - 1], perm[i]
    return torch.tensor(perm, device=pivots.device)


def lu_normalize(Y: torch.Tensor) -> torch.Tensor:
    """P·L of Y = P L U: spans range(Y), unit lower trapezoidal, entries bounded by 1.

    Shape:
        Y: (*, m, k);  out: (*, m, k)
    """
    LU, pivots = torch.linalg.lu_factor(Y)
    k = Y.shape[-1]
    L = LU.tril(-1)
    L.diagonal(dim1=-2, dim2=-1).fill_(1)
    flat_L, flat_piv = L.reshape(-1, *L.shape[-2:]), pivots.reshape(-1, k)
    out = torch.empty_like(flat_L)
    for b in range(flat_L.shape[0]):  # row i of P L is row inv[i] of L
        perm = _row_permutation(flat_piv[b], Y.shape[-2])
        out[b].index_copy_(0, perm, flat_L[b])
    return out.reshape(L.shape)


@dataclass(frozen=True)
class Householder:
    """Householder QR (``"qr"``): Q of Y = QR, always stable (LAPACK ``geqrf`` / ``orgqr``; Golub
    and Van Loan, "Matrix Computations", §5.2).

    Shape:
        Y: (*, m, k);  out: (*, m, k)

    Example:
        >>> import torch
        >>> from linalg_core.lowrank import Householder
        >>> Q = Householder()(torch.randn(50, 4, dtype=torch.float64))
        >>> torch.allclose(Q.T @ Q, torch.eye(4, dtype=torch.float64))
        True
    """

    name = "qr"
    orthonormal = True

    @property
    def final(self) -> "Householder":
        """The orthonormalizer of a returned basis: Householder itself."""
        return self

    def __call__(self, Y: torch.Tensor) -> torch.Tensor:
        return _householder(Y)


@dataclass(frozen=True)
class CholQR2:
    """CholeskyQR2 (``"cholqr2"``) with the shifted-CholeskyQR3 and Householder fallbacks: the
    default orthonormalisation of a returned basis. Fukaya, Nakatsukasa, Yanagisawa and
    Yamamoto (2014), "CholeskyQR2: a simple and communication-avoiding algorithm for computing a
    tall-skinny QR factorization"; shifted CholeskyQR3: Fukaya et al. (2020).

    Shape:
        Y: (*, m, k);  out: (*, m, k)

    Example:
        >>> import torch
        >>> from linalg_core.lowrank import CholQR2
        >>> Y = torch.randn(200, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
        >>> Q = CholQR2()(Y)
        >>> bool((Q.T @ Q - torch.eye(6, dtype=Q.dtype)).abs().max() < 1e-12)
        True
    """

    name = "cholqr2"
    orthonormal = True

    @property
    def final(self) -> "CholQR2":
        """The orthonormalizer of a returned basis: CholQR2 itself."""
        return self

    def __call__(self, Y: torch.Tensor) -> torch.Tensor:
        return cholqr2(Y)


@dataclass(frozen=True)
class CholQR:
    """One CholeskyQR round (``"cholqr"``; Householder where the Cholesky breaks down): the
    default between the passes of a range finder. Not orthonormal to rounding; ``final`` is
    :class:`CholQR2`.

    Shape:
        Y: (*, m, k);  out: (*, m, k)

    Example:
        >>> import torch
        >>> from linalg_core.lowrank import CholQR
        >>> Y = torch.randn(200, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
        >>> Q = CholQR()(Y)  # one round: R = chol(YᵀY), Q = Y R⁻¹
        >>> tuple(Q.shape), bool(torch.linalg.matrix_rank(Q) == 6), CholQR().final
        ((200, 6), True, CholQR2())
    """

    name = "cholqr"
    orthonormal = False

    @property
    def final(self) -> CholQR2:
        """The orthonormalizer of a returned basis: :class:`CholQR2`."""
        return CholQR2()

    def __call__(self, Y: torch.Tensor, *, gram: torch.Tensor | None = None) -> torch.Tensor:
        """Q (*, m, k); ``gram``: YᴴY (*, k, k) where the caller has it already (not formed
        again)."""
        Q = _chol_step(Y) if gram is None else cholqr_round(Y, gram=lambda _: gram)
        return _householder(Y) if Q is None or not all_finite(Q) else Q


@dataclass(frozen=True)
class LU:
    """The P·L factor of partial-pivoting LU (``"lu"``): well conditioned, not orthonormal; only
    between power iterations (``final`` is :class:`CholQR2`). The normaliser of fbpca and
    scikit-learn's ``randomized_svd`` (``power_iteration_normalizer="LU"``).

    Shape:
        Y: (*, m, k);  out: (*, m, k)

    Example:
        >>> import torch
        >>> from linalg_core.lowrank import LU
        >>> Y = torch.randn(200, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
        >>> L = LU()(Y)
        >>> tuple(L.shape), bool(L.abs().max() <= 1 + 1e-12)  # partial pivoting: |L| ≤ 1
        ((200, 6), True)
    """

    name = "lu"
    orthonormal = False

    @property
    def final(self) -> CholQR2:
        """The orthonormalizer of a returned basis: :class:`CholQR2` (L is not orthonormal)."""
        return CholQR2()

    def __call__(self, Y: torch.Tensor) -> torch.Tensor:
        return lu_normalize(Y)


ORTHONORMALIZERS = {"qr": Householder(), "cholqr2": CholQR2(), "cholqr": CholQR(), "lu": LU()}


def as_orthonormalizer(orth, name: str = "orth"):
    """The stage object for ``orth``: an orthonormalizer object or any callable Y -> Q is
    returned as is, a method name (``"qr"``, ``"cholqr2"``, ``"cholqr"``, ``"lu"``) becomes its
    object.

    Raises:
        ValueError: an unknown name.  TypeError: neither a name nor a callable.
    """
    if isinstance(orth, str):
        if orth not in ORTHONORMALIZERS:
            raise ValueError(f"{name}={orth!r} is not one of {', '.join(map(repr, METHODS))}")
        return ORTHONORMALIZERS[orth]
    if not callable(orth):
        raise TypeError(f"{name} must be an orthonormalizer (Householder(), CholQR2(), CholQR(), LU(), a callable "
                        f"Y -> Q) or one of {', '.join(map(repr, METHODS))}, got {type(orth).__name__}")
    return orth


def final_of(orth):
    """The orthonormalizer of a returned basis for the between-pass ``orth``: ``orth.final``
    (CholeskyQR2, Householder for Householder); a plain callable is its own."""
    return getattr(orth, "final", orth)


def orthonormalize(Y: torch.Tensor, method="cholqr2") -> torch.Tensor:
    """A well-conditioned basis of range(Y).

    Args:
        Y: (*, m, k) with m ≥ k, float32 or float64.
        method: ``"qr"``, ``"cholqr2"``, ``"cholqr"`` or ``"lu"`` (see the module docstring), or
            the stage object itself (:class:`Householder`, :class:`CholQR2`, :class:`CholQR`,
            :class:`LU`).

    Shape:
        Y: (*, m, k);  out: (*, m, k)

    Example:
        >>> import torch
        >>> from linalg_core.lowrank import orthonormalize
        >>> Q = orthonormalize(torch.randn(100, 5, dtype=torch.float64))
        >>> torch.allclose(Q.T @ Q, torch.eye(5, dtype=torch.float64))
        True
    """
    if isinstance(method, str) and method not in ORTHONORMALIZERS:
        raise ValueError(f"method={method!r} is not one of {', '.join(map(repr, METHODS))}")
    return as_orthonormalizer(method, "method")(Y)


__all__ = ["Householder", "CholQR2", "CholQR", "LU", "ORTHONORMALIZERS", "METHODS", "orthonormalize", "cholqr2",
           "lu_normalize", "cholqr_round", "cholqr2_rounds", "orthonormal_enough", "as_orthonormalizer", "final_of"]
