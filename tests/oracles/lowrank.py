"""Float64 references for low-rank approximation: the exact SVD (numpy LAPACK) and the optimal
rank-r errors (Eckart–Young)."""

from __future__ import annotations

import numpy as np


def svd(A: np.ndarray):
    return np.linalg.svd(np.asarray(A, dtype=np.float64), full_matrices=False)


def optimal_error(A: np.ndarray, r: int, norm: str = "fro") -> float:
    s = np.linalg.svd(np.asarray(A, dtype=np.float64), compute_uv=False)
    return float(np.sqrt(np.sum(s[r:] ** 2))) if norm == "fro" else float(s[r]) if r < s.size else 0.0


def residual(A, U, S, Vh) -> float:
    A = np.asarray(A, dtype=np.float64)
    return float(np.linalg.norm(A - (np.asarray(U, np.float64) * np.asarray(S, np.float64)) @ np.asarray(Vh, np.float64)))


def orthogonality(Q) -> float:
    Q = np.asarray(Q, dtype=np.float64)
    return float(np.linalg.norm(Q.T @ Q - np.eye(Q.shape[1]), ord=2))
