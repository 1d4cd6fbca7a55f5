"""Dense float64 constructions of each sketch from its definition (scipy's Hadamard matrix,
the Philox oracle), to check the fast operators against."""

from __future__ import annotations

import numpy as np
import scipy.linalg

from tests.oracles import random as philox

GAUSSIAN, RADEMACHER, SRHT_SIGNS, SRHT_ROWS, SPARSE = 1, 2, 3, 4, 5


def gaussian(m, n, seed):
    return philox.normals(np.arange(m * n), GAUSSIAN, seed).reshape(m, n) / np.sqrt(m)


def rademacher(m, n, seed):
    return philox.signs(np.arange(m * n), RADEMACHER, seed).reshape(m, n) / np.sqrt(m)


def srht(m, n, seed):
    N = 1 << max(0, (n - 1).bit_length())
    d = philox.signs(np.arange(n), SRHT_SIGNS, seed)
    keys = philox.words(np.arange(N), SRHT_ROWS, seed).astype(np.int64)
    rows = np.sort(np.lexsort((np.arange(N), keys))[:m])
    H = scipy.linalg.hadamard(N).astype(np.float64)
    return np.sqrt(N / m) * (H[rows, :n] / np.sqrt(N)) * d[None, :]


def sparse_sign(m, n, seed, nnz):
    S = np.zeros((m, n))
    for j in range(n):
        for l in range(nnz):
            w = philox.philox([j * nnz + l], SPARSE, seed)[0]
            lo, hi = l * m // nnz, (l + 1) * m // nnz
            row = lo + ((int(w[0]) * (hi - lo)) >> 32)
            S[row, j] = (-1.0 if int(w[1]) & 1 else 1.0) / np.sqrt(nnz)
    return S


def dense(kind, m, n, seed, nnz=None):
    if kind == "gaussian":
        return gaussian(m, n, seed)
    if kind == "rademacher":
        return rademacher(m, n, seed)
    if kind == "srht":
        return srht(m, n, seed)
    if kind == "countsketch":
        return sparse_sign(m, n, seed, 1)
    return sparse_sign(m, n, seed, 8 if nnz is None else nnz)


def hadamard_transform(x: np.ndarray, axis: int, normalized: bool) -> np.ndarray:
    N = x.shape[axis]
    H = scipy.linalg.hadamard(N).astype(np.float64)
    if normalized:
        H /= np.sqrt(N)
    return np.moveaxis(np.tensordot(H, np.moveaxis(x.astype(np.float64), axis, 0), axes=(1, 0)), 0, axis)
