"""Float64 references for least squares: numpy's SVD-based lstsq and the ℓ∞ report's formula."""

from __future__ import annotations

import numpy as np


def lstsq(A, b):
    return np.linalg.lstsq(np.asarray(A, np.float64), np.asarray(b, np.float64), rcond=None)[0]


def eps_inf(A, b, x, x_star):
    A, b, x, xs = (np.asarray(t, np.float64) for t in (A, b, x, x_star))
    smin = np.linalg.svd(A, compute_uv=False)[-1]
    return np.sqrt(A.shape[1]) * np.max(np.abs(x - xs)) * smin / np.linalg.norm(A @ xs - b)
