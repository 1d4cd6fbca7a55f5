"""ℓp regression min ‖Ax − b‖_p on all rows or a weighted row sample, and the distortion of a
sampled ℓp embedding."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import torch

from linalg_core import _validate
from linalg_core.sampling.scores import _check_p, tall_matrix


@dataclass(frozen=True)
class LpResult:
    """The result of :func:`lp_regression`.

    Attributes:
        x: the minimiser, float64 in b's array type.
        objective: ‖Ax − b‖_p on the rows solved (weighted for a sample).
        iterations: IRLS steps (0 for the LP of p = 1).
        converged: whether IRLS met ``tol`` (always True for the LP).

    Shape:
        x: (d,)

    Example:
        >>> import torch, linalg_core as lc
        >>> A = torch.randn(200, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
        >>> res = lc.sampling.lp_regression(A, A @ torch.ones(3, dtype=torch.float64), 1)
        >>> [round(v, 6) for v in res.x.tolist()], res.iterations, res.converged, res.objective < 1e-9
        ([1.0, 1.0, 1.0], 0, True, True)
    """

    x: object
    objective: float
    iterations: int
    converged: bool


def lp_regression(A, b, p: float, *, sample=None, tol: float = 1e-10, maxiter: int = 200) -> LpResult:
    """min_x ‖Ax − b‖_p (p ≥ 1), on all rows or on a sensitivity sample (:func:`sample_rows`;
    Woodruff and Yasuda 2023).

    p = 1: a linear program (HiGHS through ``scipy.optimize.linprog``). 1 < p < 2: iteratively
    reweighted least squares with weights |r_i|^{p−2} (smoothed at |r| ≤ 1e-12·‖r‖∞), a
    majorise–minimise scheme that decreases the objective every step. p ≥ 2: Newton's method on
    Σ|r_i|^p, i.e. IRLS damped by 1/(p − 1), which keeps it convergent for large p where plain
    IRLS oscillates.

    Args:
        A: (n, d); b: (n,).
        p: ≥ 1.
        sample: ``(indices, weights)`` from :func:`sample_rows`: solve on ``weights·A[indices]``,
            ``weights·b[indices]`` instead of all rows (checked as in
            :func:`embedding_distortion`: indices in [0, n), repeats allowed, weights ≥ 0).
        tol: relative change of the objective that stops IRLS (> 0).
        maxiter: IRLS steps, ≥ 1.

    Returns:
        :class:`LpResult`, x in b's array type.

    Raises:
        ValueError: p < 1, tol ≤ 0, maxiter < 1, shapes, NaN/Inf, a bad sample.
        TypeError: p / tol not real numbers, maxiter not an integer, non-integer indices.

    Shape:
        A: (n, d);  b: (n,);  x: (d,)

    Example:
        >>> import torch, linalg_core as lc
        >>> A = torch.randn(200, 3, dtype=torch.float64); b = A @ torch.ones(3, dtype=torch.float64)
        >>> torch.allclose(lc.sampling.lp_regression(A, b, 1.0).x, torch.ones(3, dtype=torch.float64))
        True
    """
    p = _check_p(p)
    tol = _validate.real(tol, "tol", low=0, low_open=True)
    maxiter = _validate.integer(maxiter, "maxiter", low=1)
    A = tall_matrix(A)
    bt, boundary = _validate.float_array(b, "b", ndim=1)
    _validate.check_finite(bt, "b")
    if bt.shape[0] != A.shape[0]:
        raise ValueError(f"b has {bt.shape[0]} entries, A has {A.shape[0]} rows")
    b = bt.to(torch.float64)
    if sample is not None:
        if not isinstance(sample, (tuple, list)) or len(sample) != 2:
            raise TypeError(f"sample must be an (indices, weights) pair from sample_rows, got {type(sample).__name__}")
        idx, w = sample_arrays(sample[0], sample[1], A.shape[0], ("sample[0]", "sample[1]"))
        A, b = w[:, None] * A[idx], w * b[idx]
        if A.shape[0] < A.shape[1]:
            raise ValueError(f"the sample has {A.shape[0]} rows, fewer than d={A.shape[1]}: sample more rows")
    result = _l1(A, b) if p == 1 else _irls(A, b, p, tol, maxiter)
    return dataclasses.replace(result, x=boundary.out(result.x))


def sample_arrays(indices, weights, n: int, names=("indices", "weights")) -> tuple[torch.Tensor, torch.Tensor]:
    """Check a row sample: indices integers in [0, n) (repeats allowed: a with-replacement
    sample repeats rows, each occurrence counted with its weight), weights finite and ≥ 0, one
    per index. Returns (int64 tensor, float64 tensor).

    Raises:
        TypeError: indices not integers (floats, bools), arrays of the wrong kind.
        ValueError: not 1-D, lengths differ, an index out of range, a negative or NaN/Inf weight.
    """
    iname, wname = names
    if isinstance(indices, torch.Tensor):
        idx = indices
    else:
        try:
            idx = torch.from_numpy(np.asarray(indices))
        except TypeError:
            raise TypeError(f"{iname} must be an integer array, got {type(indices).__name__}") from None
    if idx.dtype == torch.bool or idx.is_floating_point() or idx.is_complex():
        raise TypeError(f"{iname} must be an integer array, got dtype {idx.dtype}")
    if idx.dim() != 1:
        raise ValueError(f"{iname} must be 1-D, got shape {tuple(idx.shape)}")
    idx = idx.to(torch.int64)
    if idx.numel():
        bad = (idx < 0) | (idx >= n)
        if bool(bad.any()):
            first = int(idx[bad][0])
            raise ValueError(f"{iname} has {int(bad.sum())} entries outside [0, {n}) (A's rows), e.g. {first}")
    if isinstance(weights, (list, tuple)):
        weights = np.asarray(weights, dtype=np.float64) if weights else np.zeros(0)
    w, _ = _validate.float_array(weights, wname, ndim=1, allow_empty=True)
    _validate.check_finite(w, wname)
    if w.shape[0] != idx.shape[0]:
        raise ValueError(f"{wname} has {w.shape[0]} entries for {idx.shape[0]} indices")
    if w.numel() and bool((w < 0).any()):
        raise ValueError(f"{wname} has negative entries (e.g. {float(w[w < 0][0])!r}); sampling weights are >= 0")
    return idx, w.to(torch.float64)


def _irls(A, b, p, tol, maxiter):
    x = torch.linalg.lstsq(A, b[:, None]).solution[:, 0]
    obj = float(torch.linalg.vector_norm(A @ x - b, ord=p))
    damping = 1.0 if p <= 2 else 1.0 / (p - 1)
    for it in range(1, maxiter + 1):
        r = A @ x - b
        floor = 1e-12 * float(r.abs().max()) + 1e-300
        wts = r.abs().clamp_min(floor) ** (p - 2)
        Aw = A * wts.sqrt()[:, None]
        target = torch.linalg.lstsq(Aw, (wts.sqrt() * b)[:, None]).solution[:, 0]
        x = x + damping * (target - x)
        new = float(torch.linalg.vector_norm(A @ x - b, ord=p))
        if abs(obj - new) <= tol * max(obj, 1e-300):
            return LpResult(x, new, it, True)
        obj = new
    return LpResult(x, obj, maxiter, False)


def _l1(A, b):
    import scipy.optimize

    n, d = A.shape
    An, bn = A.numpy(), b.numpy()
    eye = np.eye(n)
    res = scipy.optimize.linprog(np.concatenate([np.zeros(d), np.ones(n)]),
                                 A_ub=np.block([[An, -eye], [-An, -eye]]), b_ub=np.concatenate([bn, -bn]),
                                 bounds=[(None, None)] * d + [(0, None)] * n, method="highs")
    if res.status != 0:
        raise RuntimeError(f"HiGHS: {res.message}")
    x = torch.from_numpy(res.x[:d].copy())
    return LpResult(x, float(torch.linalg.vector_norm(A @ x - b, ord=1)), 0, True)


def embedding_distortion(A, indices, weights, p: float, *, trials: int = 64, seed: int = 0) -> float:
    """ε with (1 − ε)‖Ax‖_p ≤ ‖SAx‖_p ≤ (1 + ε)‖Ax‖_p for the sampled, reweighted rows S.

    p = 2: exact (the extreme singular values of SA·R⁻¹, R from A's QR). Other p: a certified
    *lower bound* on ε: the worst ratio found by projected gradient ascent from ``trials``
    random starting directions (every direction tried is a witness, so ε is at least this; the
    true sup may be larger).

    Args:
        A: (n, d) dense array.
        indices: row indices in [0, n); repeats are allowed (a with-replacement sample keeps a
            row once per draw, each with its weight).
        weights: one finite weight ≥ 0 per index (q_i^(−1/p) from :func:`sample_rows`).
        p: ≥ 1.

        trials: random starting directions of the ascent (p ≠ 2).
        seed: the seed of those directions.

    Returns:
        ε as a Python float (exact for p = 2, a lower bound otherwise).

    Shape:
        A: (n, d);  indices, weights: (k,)

    Randomness: the starting directions of p ≠ 2 are drawn from ``seed``; p = 2 uses none.

    Raises:
        ValueError: an index outside [0, n), a negative or NaN/Inf weight, lengths that differ.
        TypeError: non-integer indices (floats, bools).

    Example:
        >>> import torch, linalg_core as lc
        >>> A = torch.randn(1000, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
        >>> idx, w = lc.sampling.sample_rows(A, 2, 200, seed=0)
        >>> 0 < lc.sampling.embedding_distortion(A, idx, w, 2) < 0.5
        True
    """
    p = _check_p(p)
    trials = _validate.integer(trials, "trials", low=1)
    seed = _validate.integer(seed, "seed", low=0, high=_validate.SEED_LIMIT - 1)
    A = tall_matrix(A)
    idx, w = sample_arrays(indices, weights, A.shape[0])
    SA = w[:, None] * A[idx]
    R = torch.linalg.qr(A).R
    if p == 2:
        s = torch.linalg.svdvals(torch.linalg.solve_triangular(R, SA, upper=True, left=False))
        return float(max(s.max() - 1, 1 - s.min()))
    g = torch.Generator().manual_seed(seed)
    X = torch.linalg.solve_triangular(R, torch.randn(A.shape[1], trials, generator=g, dtype=torch.float64),
                                      upper=True)
    best = 0.0
    for sign in (1.0, -1.0):  # maximise, then minimise, the ratio ‖SAx‖/‖Ax‖
        Y = X.clone()
        for _ in range(50):
            Y.requires_grad_(True)
            ratio = torch.linalg.vector_norm(SA @ Y, ord=p, dim=0) / torch.linalg.vector_norm(A @ Y, ord=p, dim=0)
            (grad,) = torch.autograd.grad((sign * ratio).sum(), Y)
            with torch.no_grad():
                Y = Y + 0.1 * grad / grad.norm(dim=0).clamp_min(1e-300) * Y.norm(dim=0)
        with torch.no_grad():
            ratio = torch.linalg.vector_norm(SA @ Y, ord=p, dim=0) / torch.linalg.vector_norm(A @ Y, ord=p, dim=0)
            best = max(best, float((ratio - 1).abs().max()))
    return best


__all__ = ["LpResult", "lp_regression", "embedding_distortion"]
