"""Row sampling for ℓp subspace embeddings and regression ("Sharper Bounds for ℓp Sensitivity
Sampling", Woodruff and Yasuda 2023): keep row i with probability q_i = min(1, β·s_i) and
reweight it by q_i^{−1/p}, so E‖S A x‖_p^p = ‖Ax‖_p^p for every x.
"""

from __future__ import annotations

import torch

from linalg_core import _validate
from linalg_core.random import uint32
from linalg_core.sampling.scores import _check_p, _leverage, _lewis, _sensitivities, tall_input

SCORES = ("sensitivity", "root_leverage", "leverage", "lewis", "uniform", "mixed")
# Stream of the uniforms that decide the Bernoulli draws.
SAMPLE_STREAM = 11


def inclusion_probabilities(s, size: float):
    """q_i = min(1, β s_i) with Σ q_i = size, solved exactly (water-filling: with the scores in
    decreasing order and the k largest clamped to 1, β = (size − k) / Σ_{i>k} s_(i) for the
    smallest k whose next score stays below 1/β), so scores spanning any range, down to the
    floor of a zero row's Lewis weight, give the right β. When size reaches the number of
    positive scores, every row with a positive score has q = 1.

    Args:
        s: (n,) scores ≥ 0, not all 0 (tensor or numpy; the caller's type comes back).
        size: the expected sample size, > 0.

    Shape:
        s: (n,);  out: (n,) float64

    Returns:
        q, float64, each in [0, 1], summing to ``size`` (or to the number of positive scores).

    Raises:
        ValueError: negative, NaN/Inf or all-zero scores; size ≤ 0.

    Example:
        >>> import torch, linalg_core as lc
        >>> lc.sampling.inclusion_probabilities(torch.tensor([4.0, 1.0, 1.0, 1.0, 1.0]), 3).tolist()
        [1.0, 0.5, 0.5, 0.5, 0.5]
    """
    t, boundary = _validate.float_array(s, "s", ndim=1)
    _validate.check_finite(t, "s")
    size = _validate.real(size, "size", low=0, low_open=True)
    s = t.to(torch.float64)
    if bool((s < 0).any()):
        raise ValueError(f"s has {int((s < 0).sum())} negative scores; scores are >= 0")
    positive = int((s > 0).sum())
    if positive == 0:
        raise ValueError("all scores are zero")
    if size >= positive:
        return boundary.out((s > 0).to(torch.float64))
    ordered = torch.sort(s, descending=True).values
    tail = torch.flip(torch.cumsum(torch.flip(ordered, [0]), 0), [0])  # Σ_{i≥k}, smallest first
    k = torch.arange(s.numel(), dtype=torch.float64)
    beta = (size - k) / tail.clamp_min(torch.finfo(torch.float64).tiny)
    valid = (k < size) & (beta * ordered <= 1)
    first = int(torch.nonzero(valid)[0])
    return boundary.out(torch.clamp(beta[first] * s, max=1.0))


# Sampling needs scores only to a constant factor (Cohen and Peng 2015): Lewis weights to 1e-4 in
# log-space take ~13 fixed-point steps for p = 1 instead of ~33 at lewis_weights' default 1e-10.
SCORE_TOL = 1e-4


def row_scores(A, p: float, scores: str, seed=None) -> torch.Tensor:
    """The scores s (n,) float64 tensor of a prepared A (float64 tensor or SparseMatrix)."""
    n, d = A.shape
    if scores == "uniform":
        return torch.ones(n, dtype=torch.float64)
    if scores == "leverage":
        return _leverage(A, seed=seed)
    if scores == "root_leverage":
        return _leverage(A, seed=seed).clamp_min(0).sqrt()
    if scores == "lewis":
        return _lewis(A, p, SCORE_TOL, 200)
    if scores == "sensitivity":
        return _sensitivities(A, p, "bound", SCORE_TOL)
    w = _lewis(A, p, SCORE_TOL, 200)  # mixed: half Lewis weights, half uniform (the same total mass)
    return 0.5 * w / float(w.sum()) + 0.5 / n


def sample_rows(A, p: float, size: int, *, scores: str = "sensitivity", seed=None):
    """Bernoulli row sample for the ℓp norm: row i kept with probability q_i = min(1, β s_i) and
    weighted q_i^(−1/p), s the chosen scores (sensitivity sampling: Woodruff and Yasuda 2023,
    "Sharper Bounds for ℓp Sensitivity Sampling").

    Args:
        A: (n, d), full column rank (n ≥ d): a dense array, or a sparse matrix (scipy.sparse or
            torch COO / CSR / CSC) whose scores are computed from products with its stored
            entries (see :func:`leverage_scores`, :func:`lewis_weights`); the same seed keeps
            the same rows as for the dense A.
        p: ≥ 1.
        size: expected number of rows kept (1 ≤ size ≤ n).
        scores: ``"sensitivity"`` (Lewis-weight bounds on the ℓp sensitivities),
            ``"root_leverage"`` (√τ_i, the p < 2 rate of Woodruff–Yasuda), ``"leverage"``,
            ``"lewis"``, ``"uniform"`` or ``"mixed"`` (half Lewis, half uniform).
        seed: seed of the draws (stream 11; the same seed keeps the same rows).

    Returns:
        (indices (k,) int64 ascending, weights (k,) float64 = q_i^{−1/p}) in the caller's array
        type (numpy for numpy and scipy.sparse input); the rows to keep are
        ``weights[:, None] * A[indices]``.

    Shape:
        A: (n, d);  indices, weights: (k,) with E[k] = size

    Randomness:
        Row i is kept when u_i < q_i, u_i the i-th word of Philox stream 11 of ``seed`` (over
        2^32): the same seed keeps the same rows on every machine; scores from
        ``leverage`` / ``root_leverage`` are exact, so only the draws are random.

    Raises:
        ValueError: p < 1, size outside [1, n], rank-deficient A, NaN/Inf.
        TypeError: p not a real number, size not an integer, a non-string scores.

    Example:
        >>> import torch, linalg_core as lc
        >>> A = torch.randn(10_000, 5, dtype=torch.float64)
        >>> idx, w = lc.sampling.sample_rows(A, 1.0, 500, scores="lewis", seed=0)
        >>> 400 < len(idx) < 600
        True
    """
    _validate.choice(scores, "scores", SCORES)
    p = _check_p(p)
    M, boundary = tall_input(A)
    n = M.shape[0]
    size = _validate.integer(size, "size", low=1, high=n)
    seed = _validate.seed(seed)
    q = inclusion_probabilities(row_scores(M, p, scores), size)
    u = (uint32(n, seed=seed, stream=SAMPLE_STREAM).to(torch.float64) + 0.5) / 2.0**32
    keep = torch.nonzero(u < q).flatten()
    return boundary.out((keep, q[keep] ** (-1.0 / p)))


__all__ = ["SCORES", "sample_rows", "inclusion_probabilities"]
