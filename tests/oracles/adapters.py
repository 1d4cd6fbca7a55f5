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


def best_energy_ranks(spectra, shapes, budget):
    """Exhaustive optimum of max Σ_j Σ_{i<r_j} σ_ij² s.t. Σ r_j (m_j + n_j) ≤ budget (tiny cases)."""
    import itertools

    best = (-1.0, None)
    for ranks in itertools.product(*[range(len(s) + 1) for s in spectra]):
        cost = sum(r * (m + n) for r, (m, n) in zip(ranks, shapes))
        if cost <= budget:
            gain = sum(float(np.sum(np.asarray(s[:r]) ** 2)) for r, s in zip(ranks, spectra))
            best = max(best, (gain, ranks))
    return best
