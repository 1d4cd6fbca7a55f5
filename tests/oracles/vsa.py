"""Float64 oracles of the structured orthogonal matrices, built densely from their definitions
(scipy's Sylvester Hadamard matrix, explicit permutation matrices)."""

from __future__ import annotations

import numpy as np
import scipy.linalg


def hadamard_rounds(signs: np.ndarray) -> np.ndarray:
    """M = H D_R … H D_2 H D_1 with H = hadamard(d)/√d and D_i = diag(signs[i])."""
    d = signs.shape[1]
    H = scipy.linalg.hadamard(d).astype(np.float64) / np.sqrt(d)
    M = np.eye(d)
    for s in signs:
        M = H @ np.diag(s) @ M
    return M


def signed_permutation(perm: np.ndarray, signs: np.ndarray) -> np.ndarray:
    """M with (M x)_i = signs_i · x_perm(i)."""
    d = perm.size
    M = np.zeros((d, d))
    M[np.arange(d), perm] = signs
    return M
