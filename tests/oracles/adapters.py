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


def loldu(W, r):
    """The LoLDU paper code's factors from SciPy's full LU: W = P L U, D = diag(U),
    A = U[:r]/D, z = D[:r], B = (P L)[:, :r]."""
    import scipy.linalg

    P, L, U = scipy.linalg.lu(np.asarray(W, np.float64))
    D = np.diag(U)[:r]
    return U[:r] / D[:, None], D, (P @ L)[:, :r]


def truncated(M, r):
    U, S, Vh = np.linalg.svd(np.asarray(M, np.float64), full_matrices=False)
    return (U[:, :r] * S[:r]) @ Vh[:r]
