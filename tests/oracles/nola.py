"""float64 NumPy oracle of the nola family: the bases materialised from the NumPy Philox oracle
(tests/oracles/random.py), then NOLA's sums and LoRA forward written out directly."""

from __future__ import annotations

import numpy as np

from tests.oracles import random as philox_oracle


def bases(k: int, rows: int, cols: int, stream_base: int, seed: int) -> np.ndarray:
    """(k, rows, cols) float64: basis i = standard normals 0 .. rows * cols - 1 of stream stream_base + i."""
    idx = np.arange(rows * cols, dtype=np.uint64)
    return np.stack([philox_oracle.normals(idx, stream_base + i, seed).reshape(rows, cols) for i in range(k)])


def combine(coeffs, rows, cols, stream_base, seed, scale) -> np.ndarray:
    Z = bases(len(coeffs), rows, cols, stream_base, seed)
    return scale * np.einsum("k,krc->rc", np.asarray(coeffs, dtype=np.float64), Z)


def coeff_grad(grad, k, stream_base, seed, scale) -> np.ndarray:
    grad = np.asarray(grad, dtype=np.float64)
    Z = bases(k, grad.shape[0], grad.shape[1], stream_base, seed)
    return scale * np.einsum("rc,krc->k", grad, Z)


def nola_linear(x, W, bias, alpha, beta, a0, rank, stream_a, stream_b, seed, scale_a, scale_b, scaling):
    """y = x Wᵀ + bias + scaling · x Aᵀ Bᵀ, A = scale_a (a0 Z₀ + Σ αᵢ Zᵢ₊₁), B = scale_b Σ βⱼ Zⱼ
    (the bases materialised)."""
    x = np.asarray(x, dtype=np.float64)
    n, m = W.shape[1], W.shape[0]
    A = combine(np.concatenate([[a0], alpha]), rank, n, stream_a, seed, scale_a)
    B = combine(beta, m, rank, stream_b, seed, scale_b)
    return x @ np.asarray(W, np.float64).T + np.asarray(bias, np.float64) + scaling * (x @ A.T) @ B.T
