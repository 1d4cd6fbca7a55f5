"""Float64 NumPy references of the sampling family from their definitions: the row kernels (ops
``weighted_gram``, ``row_quadratic_forms``), leverage scores from a QR factorization and the
ℓp Lewis-weight fixed point."""

from __future__ import annotations

import numpy as np


def weighted_gram(A, v) -> np.ndarray:
    """AᵀWA = Σ_i v_i a_i a_iᵀ: (d, d)."""
    A, v = np.asarray(A, np.float64), np.asarray(v, np.float64)
    return A.T @ (A * v[:, None])


def row_quadratic_forms(A, M) -> np.ndarray:
    """q_i = a_iᵀ M a_i: (n,)."""
    A, M = np.asarray(A, np.float64), np.asarray(M, np.float64)
    return np.einsum("ij,jk,ik->i", A, M, A)


def leverage_scores(A) -> np.ndarray:
    """τ_i = ‖Q[i, :]‖² for the thin QR factorization A = QR: (n,)."""
    Q = np.linalg.qr(np.asarray(A, np.float64))[0]
    return (Q**2).sum(1)


def lewis_fixed_point(A, w, p: float) -> np.ndarray:
    """The right side of the ℓp Lewis-weight equations, (a_iᵀ (AᵀW^{1−2/p}A)⁻¹ a_i)^{p/2}: equal to
    w itself when w are the Lewis weights of A."""
    A, w = np.asarray(A, np.float64), np.asarray(w, np.float64)
    G = A.T @ (A * w[:, None] ** (1 - 2 / p))
    return np.einsum("ij,ij->i", A, np.linalg.solve(G, A.T).T) ** (p / 2)
