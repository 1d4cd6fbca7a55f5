"""Float64 NumPy references for the adapter initialisers, from their papers' formulas."""

from __future__ import annotations

import numpy as np


def pissa(W, r, s):
    U, S, Vh = np.linalg.svd(np.asarray(W, np.float64), full_matrices=False)
    root = np.sqrt(S[:r] / s)
    return root[:, None] * Vh[:r], U[:, :r] * root  # A, B


def olora(W, r):
    Q, R = np.linalg.qr(np.asarray(W, np.float64))
    return R[:r], Q[:, :r]  # A, B (peft's full QR)


def milora(W, r, s):
    U, S, Vh = np.linalg.svd(np.asarray(W, np.float64), full_matrices=False)
    root = np.sqrt(S[-r:] / s)
    return root[:, None] * Vh[-r:], U[:, -r:] * root, S[-r:]


def nlora_paper(W, r):
    W = np.asarray(W, np.float64)
    return W[:r, :], W[:r, :r], W[:, :r]  # A, N, B
