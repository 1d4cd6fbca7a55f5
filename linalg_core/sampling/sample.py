"""Row sampling for ℓp subspace embeddings and regression ("Sharper Bounds for ℓp Sensitivity
Sampling", Woodruff and Yasuda 2023): keep row i with probability q_i = min(1, β·s_i) and
reweight it by q_i^{−1/p}, so E‖S A x‖_p^p = ‖Ax‖_p^p for every x.
"""

from __future__ import annotations

import torch

from linalg_core import _validate
from linalg_core.random import uint32
from linalg_core.sampling.scores import _check_p, leverage_scores, lewis_weights, lp_sensitivities, tall_matrix

SCORES = ("sensitivity", "root_leverage", "leverage", "lewis", "uniform", "mixed")
# Stream of the uniforms that decide the Bernoulli draws.
SAMPLE_STREAM = 11


def inclusion_probabilities(s: torch.Tensor, size: float) -> torch.Tensor:
    """q_i = min(1, β s_i) with β found by bisection so that Σ q_i = size (s ≥ 0, not all 0)."""
    s = s.to(torch.float64)
    if float(s.sum()) <= 0:
        raise ValueError("all scores are zero")
    lo, hi = 0.0, size / float(s[s > 0].min())
    for _ in range(200):
        mid = (lo + hi) / 2
        total = float(torch.clamp(mid * s, max=1.0).sum())
        if total < size:
            lo = mid
        else:
            hi = mid
        if hi - lo <= 1e-15 * hi:
            break
    return torch.clamp(hi * s, max=1.0)


# Sampling needs scores only to a constant factor (Cohen and Peng 2015): Lewis weights to 1e-4 in
# log-space take ~13 fixed-point steps for p = 1 instead of ~33 at lewis_weights' default 1e-10.
SCORE_TOL = 1e-4


def row_scores(A: torch.Tensor, p: float, scores: str, seed=None) -> torch.Tensor:
    n, d = A.shape
    if scores == "uniform":
        return torch.ones(n, dtype=torch.float64)
    if scores == "leverage":
        return leverage_scores(A, seed=seed)
    if scores == "root_leverage":
        return leverage_scores(A, seed=seed).clamp_min(0).sqrt()
    if scores == "lewis":
        return lewis_weights(A, p, tol=SCORE_TOL)
    if scores == "sensitivity":
        return lp_sensitivities(A, p, tol=SCORE_TOL)
    w = lewis_weights(A, p, tol=SCORE_TOL)  # mixed: half Lewis weights, half uniform (the same total mass)
    return 0.5 * w / float(w.sum()) + 0.5 / n


def sample_rows(A, p: float, size: int, *, scores: str = "sensitivity", seed=None):
    """Bernoulli row sample for the ℓp norm.

    Args:
        A: (n, d), full column rank (n ≥ d).
        p: ≥ 1.
        size: expected number of rows kept (1 ≤ size ≤ n).
        scores: ``"sensitivity"`` (Lewis-weight bounds on the ℓp sensitivities),
            ``"root_leverage"`` (√τ_i, the p < 2 rate of Woodruff–Yasuda), ``"leverage"``,
            ``"lewis"``, ``"uniform"`` or ``"mixed"`` (half Lewis, half uniform).
        seed: seed of the draws (stream 11; the same seed keeps the same rows).

    Returns:
        (indices (k,) int64 ascending, weights (k,) float64 = q_i^{−1/p}); the rows to keep
        are ``weights[:, None] * A[indices]``.

    Shape:
        A: (n, d);  indices, weights: (k,) with E[k] = size

    Randomness:
        Row i is kept when u_i < q_i, u_i the i-th word of Philox stream 11 of ``seed`` (over
        2^32): the same seed keeps the same rows on every machine; scores from
        ``leverage`` / ``root_leverage`` are exact, so only the draws are random.

    Example:
        >>> import torch, linalg_core as lc
        >>> A = torch.randn(10_000, 5, dtype=torch.float64)
        >>> idx, w = lc.sampling.sample_rows(A, 1.0, 500, scores="lewis", seed=0)
        >>> 400 < len(idx) < 600
        True
    """
    _validate.choice(scores, "scores", SCORES)
    p = _check_p(p)
    A = tall_matrix(A)
    n = A.shape[0]
    size = _validate.integer(size, "size", low=1, high=n)
    q = inclusion_probabilities(row_scores(A, p, scores), size)
    seed = _validate.seed(seed)
    u = (uint32(n, seed=seed, stream=SAMPLE_STREAM).to(torch.float64) + 0.5) / 2.0**32
    keep = torch.nonzero(u < q).flatten()
    return keep, q[keep] ** (-1.0 / p)


__all__ = ["SCORES", "sample_rows", "inclusion_probabilities"]
