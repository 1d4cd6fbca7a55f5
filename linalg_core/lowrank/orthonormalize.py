"""Orthonormalisation of a tall block Y (*, m, k): the stage between passes of a randomized
range finder, and the last step before B = QᴴA.

* ``qr``: Householder QR (LAPACK geqrf/orgqr): always stable, slowest (panel factorisation).
* ``cholqr2``: CholeskyQR2 (Fukaya, Nakatsukasa, Yanagisawa and Yamamoto 2014): two rounds of
  R = chol(YᴴY), Q = Y R⁻¹, i.e. a GEMM, a k × k Cholesky and a triangular solve. Orthogonal to
  rounding when cond(Y) ≲ u^(-1/2); when the Cholesky breaks down it falls back to shifted
  CholeskyQR3 (Fukaya et al. 2020), and when the result is still not orthonormal to Householder.
* ``cholqr``: one CholeskyQR round (Householder if it breaks down): enough conditioning between
  power iterations at a third of the cost of ``cholqr2``; not orthonormal to rounding.
* ``lu``: the L factor of partial-pivoting LU (fbpca, scikit-learn): well-conditioned but not
  orthonormal; only valid between power iterations, never as a final basis.
"""

from __future__ import annotations

import torch

from linalg_core._validate import all_finite

METHODS = ("qr", "cholqr2", "cholqr", "lu")


def _householder(Y):
    return torch.linalg.qr(Y, mode="reduced").Q


def _chol_step(Y, shift=0.0):
    G = Y.mT.conj() @ Y
    if shift:
        G = G + shift * torch.eye(G.shape[-1], dtype=G.dtype, device=G.device)
    L, info = torch.linalg.cholesky_ex(G)
    if bool((info != 0).any()):
        return None
    # Q = Y R⁻¹ with R = Lᴴ: the k × k inverse, then one GEMM (a triangular solve with the tall
    # Y costs 1.5-2x more here: LAPACK's trsm copies Y to column-major). Both err by ~u·cond(R).
    eye = torch.eye(L.shape[-1], dtype=L.dtype, device=L.device).expand_as(L)
    return Y @ torch.linalg.solve_triangular(L, eye, upper=False).mT.conj()


def _orthonormal_enough(Q) -> bool:
    k = Q.shape[-1]
    eye = torch.eye(k, dtype=Q.dtype, device=Q.device)
    err = torch.linalg.matrix_norm(Q.mT.conj() @ Q - eye, ord="fro")
    return bool((err <= 50 * k * torch.finfo(Q.dtype).eps).all())


def cholqr2(Y: torch.Tensor) -> torch.Tensor:
    """Orthonormal basis of range(Y) by CholeskyQR2, with the shifted-CholeskyQR3 and
    Householder fallbacks described in the module docstring."""
    Q = _chol_step(Y)
    if Q is not None:
        Q = _chol_step(Q)
    if Q is None:  # breakdown: Y too ill-conditioned for plain CholeskyQR
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
    """P·L of Y = P L U: spans range(Y), unit lower trapezoidal, entries bounded by 1."""
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


def orthonormalize(Y: torch.Tensor, method: str = "cholqr2") -> torch.Tensor:
    """A well-conditioned basis of range(Y).

    Args:
        Y: (*, m, k) with m ≥ k, float32 or float64.
        method: ``"qr"``, ``"cholqr2"``, ``"cholqr"`` or ``"lu"`` (see the module docstring).

    Shape:
        Y: (*, m, k);  out: (*, m, k)

    Example:
        >>> import torch
        >>> from linalg_core.lowrank import orthonormalize
        >>> Q = orthonormalize(torch.randn(100, 5, dtype=torch.float64))
        >>> torch.allclose(Q.T @ Q, torch.eye(5, dtype=torch.float64))
        True
    """
    if method == "qr":
        return _householder(Y)
    if method == "cholqr2":
        return cholqr2(Y)
    if method == "lu":
        return lu_normalize(Y)
    if method == "cholqr":
        Q = _chol_step(Y)
        return _householder(Y) if Q is None or not all_finite(Q) else Q
    raise ValueError(f"method={method!r} is not one of {', '.join(map(repr, METHODS))}")
