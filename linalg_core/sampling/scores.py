"""Row importance scores of a tall A (n × d): leverage scores, ℓp Lewis weights and ℓp
sensitivities.

* Leverage τ_i = ‖e_iᵀU‖² for an orthonormal basis U of range(A) (Σ τ_i = d). ``"sketch"``:
  the estimator of Drineas, Magdon-Ismail, Mahoney and Woodruff (2012): R from the QR of an
  SRHT sketch Π₁A (m₁ = 16d rows), then τ_i ≈ ‖e_iᵀ A R⁻¹ Π₂‖² with a d × k Gaussian Π₂
  (k = 64, entries N(0, 1/k)): O(nd log n + ndk) instead of O(nd²), each score within a
  factor (1 ± ε) with ε ≈ √(8/k) typically.
* Lewis weights (Lewis 1978; Cohen and Peng 2015): the w > 0 with
  w_i = (a_iᵀ(AᵀW^{1−2/p}A)⁻¹a_i)^{p/2}, Σ w_i = d. The fixed-point iteration contracts by
  |1 − p/2| (and fails for p ≥ 4); here each step is damped in log-space by α = min(1, 2/p),
  which contracts by 1 − 2/p for p > 2 (the linearised map's eigenvalues lie in [1 − αp/2, 1 − α]).
* ℓp sensitivities σ_i = sup_x |a_iᵀx|^p / ‖Ax‖_p^p = 1 / min{‖Ax‖_p^p : a_iᵀx = 1}. Bounds:
  σ_i ≤ w_i for p ≤ 2 and σ_i ≤ d^{p/2−1}w_i for p ≥ 2 (Lewis weights); exact values by one
  convex program per row (an LP through HiGHS for p = 1), for small problems.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from linalg_core import _ops, _validate
from linalg_core.sketch import srht

SKETCH_COLUMNS = 64
# Stream of the Gaussian Π₂ of the sketched leverage estimator.
LEVERAGE_STREAM = 10


def tall_matrix(A, name: str = "A") -> torch.Tensor:
    """A as a finite float64 (n, d) tensor with n ≥ d."""
    t, _ = _validate.float_array(A, name, ndim=2)
    _validate.check_finite(t, name)
    n, d = t.shape
    if n < d:
        raise ValueError(f"{name} has shape {tuple(t.shape)}: row sampling needs a tall matrix (n >= d)")
    return t.to(torch.float64)


def _r_factor(A: torch.Tensor, what: str) -> torch.Tensor:
    R = torch.linalg.qr(A).R
    rank = _validate.numerical_rank(R, max(A.shape))
    if rank < A.shape[1]:
        raise ValueError(f"A is rank-deficient (numerical rank about {rank} of d={A.shape[1]}): {what} are defined "
                         "for full column rank; drop dependent columns first")
    return R


def _check_p(p) -> float:
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not p >= 1 or not math.isfinite(p):
        raise ValueError(f"p={p!r} must be a finite number >= 1")
    return float(p)


def leverage_scores(A, *, method: str = "exact", seed=None) -> torch.Tensor:
    """Leverage scores τ (n,), float64, Σ τ = d.

    Args:
        A: (n, d), full column rank.
        method: ``"exact"`` (Householder QR) or ``"sketch"`` (DMMW estimator, seeded).

    Shape:
        A: (n, d);  out: (n,)

    Randomness:
        ``"sketch"``: Π₁ is the SRHT of ``seed``, Π₂ normal stream 10 of the same seed.

    Example:
        >>> import torch, linalg_core as lc
        >>> tau = lc.sampling.leverage_scores(torch.randn(1000, 10, dtype=torch.float64))
        >>> round(float(tau.sum()), 6)
        10.0
    """
    _validate.choice(method, "method", ("exact", "sketch"))
    A = tall_matrix(A)
    n, d = A.shape
    if method == "exact":
        Q = torch.linalg.qr(A).Q
        _r_factor(A, "leverage scores")
        return torch.linalg.vector_norm(Q, dim=1) ** 2  # one pass, no n × d temporary
    m = min(n, 16 * d)
    S = srht(m, n, seed=seed)
    R = _r_factor(S.apply(A), "leverage scores")
    from linalg_core.random import normal

    k = SKETCH_COLUMNS
    P = normal((d, k), seed=S.seed, stream=LEVERAGE_STREAM, dtype=torch.float64) / math.sqrt(k)
    return ((A @ torch.linalg.solve_triangular(R, P, upper=True)) ** 2).sum(1)


def lewis_weights(A, p: float, *, tol: float = 1e-10, maxiter: int = 200) -> torch.Tensor:
    """ℓp Lewis weights w (n,), float64, Σ w = d (p = 2: the leverage scores).

    Args:
        A: (n, d), full column rank.
        p: ≥ 1.
        tol: stop when max_i |log w_i^{new} − log w_i| ≤ tol.
        maxiter: iterations (each O(nd²): the weighted Gram UᵀWU and the row quadratic forms
            u_iᵀG⁻¹u_i, compiled row-blocked kernels on the CPU for d ≤ 128/256, one read of
            U each).

    Shape:
        A: (n, d);  out: (n,)

    Raises:
        ValueError: p < 1, rank-deficient A; RuntimeError when not converged in maxiter.

    Example:
        >>> import torch, linalg_core as lc
        >>> w = lc.sampling.lewis_weights(torch.randn(500, 8, dtype=torch.float64), 1.0)
        >>> round(float(w.sum()), 6)
        8.0
    """
    p = _check_p(p)
    A = tall_matrix(A)
    n, d = A.shape
    # Lewis weights are invariant under A -> A T: iterate on the well-conditioned U = A R⁻¹.
    R = _r_factor(A, "Lewis weights")
    U = torch.linalg.solve_triangular(R.mT, A.mT, upper=False).mT.contiguous()
    key = _ops.Key(U.device, U.dtype)
    alpha = min(1.0, 2.0 / p)
    w = torch.full((n,), d / n, dtype=torch.float64)
    for _ in range(maxiter):
        G = _ops.weighted_gram(U, (w ** (1 - 2 / p)).contiguous(), key=key)  # UᵀW^{1−2/p}U
        tau = _ops.row_quadratic_forms(U, torch.cholesky_inverse(torch.linalg.cholesky(G)), key=key)
        new = torch.exp((1 - alpha) * torch.log(w) + alpha * (p / 2) * torch.log(tau.clamp_min(1e-300)))
        step = float((torch.log(new) - torch.log(w)).abs().max())
        w = new
        if step <= tol:
            return w
    raise RuntimeError(f"lewis_weights did not converge in maxiter={maxiter} (last log-step {step:.2e}); raise maxiter")


def lp_sensitivities(A, p: float, *, method: str = "bound", tol: float = 1e-10) -> torch.Tensor:
    """ℓp sensitivities σ (n,), float64: upper bounds from Lewis weights (``"bound"``) or
    exact values (``"exact"``: one LP per row for p = 1 via HiGHS, one smooth convex program
    per row (SLSQP) for p > 1; for small problems). ``tol``: the Lewis weights' tolerance; the
    bound is inflated by e^tol so it stays a bound for weights converged only to tol.

    Example:
        >>> import torch, linalg_core as lc
        >>> A = torch.randn(60, 3, dtype=torch.float64)
        >>> bool((lc.sampling.lp_sensitivities(A, 1, method="exact")
        ...       <= lc.sampling.lp_sensitivities(A, 1) + 1e-9).all())
        True
    """
    _validate.choice(method, "method", ("bound", "exact"))
    p = _check_p(p)
    A = tall_matrix(A)
    n, d = A.shape
    if method == "bound":
        w = lewis_weights(A, p, tol=tol) * math.exp(tol)  # a bound also for the converged-to-tol weights
        return torch.clamp(w * (d ** (p / 2 - 1) if p > 2 else 1.0), max=1.0)
    _r_factor(A, "sensitivities")
    An = A.numpy()
    out = np.empty(n)
    for i in range(n):
        out[i] = 1.0 / _min_lp_norm_with(An, i, p)
    return torch.from_numpy(out)


def _min_lp_norm_with(A: np.ndarray, i: int, p: float) -> float:
    """min ‖Ax‖_p^p subject to a_iᵀx = 1."""
    import scipy.optimize

    n, d = A.shape
    if p == 1:  # variables (x, t): min Σt, −t ≤ Ax ≤ t, a_iᵀx = 1
        c = np.concatenate([np.zeros(d), np.ones(n)])
        eye = np.eye(n)
        A_ub = np.block([[A, -eye], [-A, -eye]])
        A_eq = np.concatenate([A[i], np.zeros(n)])[None]
        res = scipy.optimize.linprog(c, A_ub=A_ub, b_ub=np.zeros(2 * n), A_eq=A_eq, b_eq=[1.0],
                                     bounds=[(None, None)] * d + [(0, None)] * n, method="highs")
        if res.status != 0:
            raise RuntimeError(f"HiGHS failed on row {i}: {res.message}")
        return float(res.fun)
    x0 = A[i] / float(A[i] @ A[i])
    res = scipy.optimize.minimize(lambda x: float(np.sum(np.abs(A @ x) ** p)), x0,
                                  jac=lambda x: A.T @ (p * np.sign(A @ x) * np.abs(A @ x) ** (p - 1)),
                                  constraints=[{"type": "eq", "fun": lambda x: A[i] @ x - 1.0, "jac": lambda x: A[i]}],
                                  method="SLSQP", options={"ftol": 1e-12, "maxiter": 500})
    return float(res.fun)


__all__ = ["leverage_scores", "lewis_weights", "lp_sensitivities"]
