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

Sparse A (scipy.sparse, torch COO / CSR / CSC) is read only through products with its stored
entries and blocks of rows: a sparse-sign sketch gives R with κ(AR⁻¹) small and one CholeskyQR
round with a blocked Gram makes A·X orthonormal, so no n × d array is formed. Results come back
in the caller's array type (numpy for numpy and scipy.sparse input).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from linalg_core import _ops, _validate
from linalg_core._arrays import SparseMatrix, as_sparse, is_sparse
from linalg_core.sketch import sparse_sign, srht

SKETCH_COLUMNS = 64
# Stream of the Gaussian Π₂ of the sketched leverage estimator.
LEVERAGE_STREAM = 10


def tall_input(A, name: str = "A", *, sparse: bool = True):
    """(A as float64, boundary): a dense (n, d) tensor, or a :class:`SparseMatrix` for sparse
    input (``sparse=True``), finite, with n ≥ d."""
    sp = as_sparse(A, name) if sparse else None
    if sp is not None:
        M, boundary = sp[0].to(torch.float64), sp[1]
    else:
        t, boundary = _validate.float_array(A, name, ndim=2)
        _validate.check_finite(t, name)
        M = t.to(torch.float64)
    n, d = M.shape
    if n < d:
        raise ValueError(f"{name} has shape {(n, d)}: row sampling needs a tall matrix (n >= d)")
    return M, boundary


def tall_matrix(A, name: str = "A") -> torch.Tensor:
    """A as a finite float64 dense (n, d) tensor with n ≥ d."""
    return tall_input(A, name, sparse=False)[0]


def _check_rank(R: torch.Tensor, rows: int, d: int, what: str) -> None:
    rank = _validate.numerical_rank(R, rows)
    if rank < d:
        raise ValueError(f"A is rank-deficient (numerical rank about {rank} of d={d}): {what} are defined "
                         "for full column rank; drop dependent columns first")


def _r_factor(A: torch.Tensor, what: str) -> torch.Tensor:
    R = torch.linalg.qr(A).R
    _check_rank(R, max(A.shape), A.shape[1], what)
    return R


# Seed of the sparse-sign sketch that preconditions a sparse A for the exact scores (any full-
# rank R gives the same scores to rounding; a fixed one keeps "exact" deterministic).
_PRECONDITION_SEED = 0


def _orthonormalizer(A: SparseMatrix, what: str) -> torch.Tensor:
    """X (d × d) with A X orthonormal, for a sparse A, without an n × d array: R_s from the QR
    of a sparse-sign sketch S A (κ(A R_s⁻¹) is small), then one CholeskyQR round of A R_s⁻¹
    whose Gram is accumulated over blocks of rows: X = R_s⁻¹ L⁻ᵀ."""
    n, d = A.shape
    m = min(n, max(4 * d, d + 8))
    S = sparse_sign(m, n, nnz=min(8, m), seed=_PRECONDITION_SEED)
    R = torch.linalg.qr(S.apply(A.csr)).R
    _check_rank(R, m, d, what)
    eye = torch.eye(d, dtype=A.dtype, device=A.device)
    Rinv = torch.linalg.solve_triangular(R, eye, upper=True)
    G = torch.zeros(d, d, dtype=A.dtype, device=A.device)
    for _, _, rows in A.row_blocks(d):
        Y = rows.matmul(Rinv)
        G += Y.mT @ Y
    L, info = torch.linalg.cholesky_ex(G)
    if bool(info):
        raise ValueError(f"A is numerically rank-deficient: {what} are defined for full column rank")
    return Rinv @ torch.linalg.solve_triangular(L, eye, upper=False).mT


def _check_p(p) -> float:
    return _validate.real(p, "p", low=1)


def leverage_scores(A, *, method: str = "exact", seed=None):
    """Leverage scores τ (n,), float64, Σ τ = d: τ_i = ‖Q_i‖² for an orthonormal basis Q of
    range(A) (``"sketch"``: the estimator of Drineas, Magdon-Ismail, Mahoney and Woodruff 2012,
    "Fast approximation of matrix coherence and statistical leverage").

    Args:
        A: (n, d), full column rank: a dense array, or a sparse matrix (scipy.sparse or torch
            COO / CSR / CSC) read only through products with its stored entries (``"exact"``:
            a sparse-sign sketch preconditions A, then one CholeskyQR round of A R⁻¹ with its
            Gram accumulated over blocks of rows; the same scores as the dense A to rounding).
        method: ``"exact"`` (Householder QR) or ``"sketch"`` (DMMW estimator, seeded).
        seed: the sketch's seed (``"sketch"`` only).

    Returns:
        τ in the caller's array type (numpy for numpy and scipy.sparse input).

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
    M, boundary = tall_input(A)
    return boundary.out(_leverage(M, method, seed))


def _leverage(A, method: str = "exact", seed=None) -> torch.Tensor:
    n, d = A.shape
    sparse = isinstance(A, SparseMatrix)
    if method == "exact":
        if sparse:
            X = _orthonormalizer(A, "leverage scores")
            return torch.cat([(rows.matmul(X) ** 2).sum(1) for _, _, rows in A.row_blocks(d)])
        Q = torch.linalg.qr(A).Q
        _r_factor(A, "leverage scores")
        return torch.linalg.vector_norm(Q, dim=1) ** 2  # one pass, no n × d temporary
    m = min(n, 16 * d)
    S = srht(m, n, seed=seed)
    R = _r_factor(S.apply(A.csr if sparse else A), "leverage scores")
    from linalg_core.random import normal

    k = SKETCH_COLUMNS
    P = normal((d, k), seed=S.seed, stream=LEVERAGE_STREAM, dtype=torch.float64) / math.sqrt(k)
    Z = torch.linalg.solve_triangular(R, P, upper=True)
    return ((A.matmul(Z) if sparse else A @ Z) ** 2).sum(1)


def lewis_weights(A, p: float, *, tol: float = 1e-10, maxiter: int = 200):
    """ℓp Lewis weights w (n,), float64, Σ w = d (p = 2: the leverage scores), by the fixed-point
    iteration of Cohen and Peng 2015 ("ℓp Row Sampling by Lewis Weights"),
    w_i ← (a_iᵀ(AᵀW^{1−2/p}A)⁻¹a_i)^{p/2}.

    Args:
        A: (n, d), full column rank: a dense array or a sparse matrix (scipy.sparse or torch
            COO / CSR / CSC; only products with its stored entries, one pass of blocks of rows
            per iteration, no n × d array; the same weights as the dense A to rounding).
        p: ≥ 1.
        tol: stop when max_i |log w_i^{new} − log w_i| ≤ tol, in (0, 1].
        maxiter: iterations, ≥ 1 (each O(nd²): the weighted Gram UᵀWU and the row quadratic
            forms u_iᵀG⁻¹u_i, compiled row-blocked kernels on the CPU for d ≤ 128/256, one read
            of U each).

    Returns:
        w in the caller's array type (numpy for numpy and scipy.sparse input).

    Shape:
        A: (n, d);  out: (n,)

    Raises:
        ValueError: p < 1, tol outside (0, 1], maxiter < 1, rank-deficient A; RuntimeError
            when not converged in maxiter.
        TypeError: p / tol not real numbers, maxiter not an integer.

    Example:
        >>> import torch, linalg_core as lc
        >>> w = lc.sampling.lewis_weights(torch.randn(500, 8, dtype=torch.float64), 1.0)
        >>> round(float(w.sum()), 6)
        8.0
    """
    p = _check_p(p)
    tol = _validate.real(tol, "tol", low=0, high=1, low_open=True)
    maxiter = _validate.integer(maxiter, "maxiter", low=1)
    M, boundary = tall_input(A)
    return boundary.out(_lewis(M, p, tol, maxiter))


def _lewis(A, p: float, tol: float, maxiter: int) -> torch.Tensor:
    n, d = A.shape
    alpha = min(1.0, 2.0 / p)
    w = torch.full((n,), d / n, dtype=torch.float64)
    if isinstance(A, SparseMatrix):
        return _lewis_sparse(A, p, tol, maxiter, alpha, w)
    # Lewis weights are invariant under A -> A T: iterate on the well-conditioned U = A R⁻¹.
    R = _r_factor(A, "Lewis weights")
    U = torch.linalg.solve_triangular(R.mT, A.mT, upper=False).mT.contiguous()
    for _ in range(maxiter):
        G = _ops.weighted_gram(U, (w ** (1 - 2 / p)).contiguous())  # UᵀW^{1−2/p}U
        tau = _ops.row_quadratic_forms(U, torch.cholesky_inverse(torch.linalg.cholesky(G)).contiguous())
        new = _damped(w, tau, alpha, p)
        step = float((torch.log(new) - torch.log(w)).abs().max())
        w = new
        if step <= tol:
            return w
    raise RuntimeError(f"lewis_weights did not converge in maxiter={maxiter} (last log-step {step:.2e}); raise maxiter")


# Floor of the Lewis weights: a zero row (τ_i = 0, common in sparse A) has weight 0, which for
# p > 2 the damped update approaches geometrically until it underflows (log 0 = −inf, a NaN
# step); held here instead, it is a fixed point, its error far below rounding of Σ w = d.
_W_FLOOR = 1e-300


def _damped(w, tau, alpha, p):
    """One damped fixed-point step in log-space: w^(1−α)·(τ^(p/2))^α, floored."""
    log_new = (1 - alpha) * torch.log(w) + alpha * (p / 2) * torch.log(tau.clamp_min(_W_FLOOR))
    return torch.exp(log_new).clamp_min(_W_FLOOR)


def _lewis_sparse(A: SparseMatrix, p, tol, maxiter, alpha, w):
    """The fixed point of :func:`_lewis` for a sparse A: U = A X (X from
    :func:`_orthonormalizer`) one block of rows at a time, each block used twice per pass (the
    row forms u_iᵀG⁻¹u_i of this iteration and its share of the next weighted Gram)."""
    d = A.shape[1]
    X = _orthonormalizer(A, "Lewis weights")

    def gram(weights):
        G = torch.zeros(d, d, dtype=torch.float64, device=A.device)
        for i0, i1, rows in A.row_blocks(d):
            U = rows.matmul(X)
            G += U.mT @ (weights[i0:i1, None] ** (1 - 2 / p) * U)
        return G

    G = gram(w)
    for _ in range(maxiter):
        Linv = torch.linalg.solve_triangular(torch.linalg.cholesky(G), torch.eye(d, dtype=torch.float64), upper=False)
        new = torch.empty_like(w)
        G_next = torch.zeros_like(G)
        for i0, i1, rows in A.row_blocks(d):
            U = rows.matmul(X)
            tau = ((U @ Linv.mT) ** 2).sum(1)  # u_iᵀG⁻¹u_i = ‖L⁻¹u_i‖²
            new[i0:i1] = _damped(w[i0:i1], tau, alpha, p)
            G_next += U.mT @ (new[i0:i1, None] ** (1 - 2 / p) * U)
        step = float((torch.log(new) - torch.log(w)).abs().max())
        w, G = new, G_next
        if step <= tol:
            return w
    raise RuntimeError(f"lewis_weights did not converge in maxiter={maxiter} (last log-step {step:.2e}); raise maxiter")


def lp_sensitivities(A, p: float, *, method: str = "bound", tol: float = 1e-10):
    """ℓp sensitivities σ (n,), float64: upper bounds from Lewis weights (``"bound"``) or
    exact values (``"exact"``: one LP per row for p = 1 via HiGHS, one smooth convex program
    per row (SLSQP) for p > 1; for small problems). ``tol`` (in (0, 1]): the Lewis weights'
    tolerance; the bound is inflated by e^tol so it stays a bound for weights converged only to
    tol.

    A may be sparse (scipy.sparse, torch COO / CSR / CSC) for ``"bound"`` (the Lewis weights'
    sparse path); ``"exact"`` builds a dense LP per row and refuses a sparse A (TypeError).
    The result comes back in the caller's array type (numpy for numpy and scipy.sparse input).

    The bounds are those of "Sharper Bounds for ℓp Sensitivity Sampling" (Woodruff and Yasuda
    2023): σ_i ≤ w_i for p ≤ 2 and σ_i ≤ d^{p/2−1}·w_i for p ≥ 2, with w the ℓp Lewis weights.

    Args:
        A: (n, d) full-column-rank array, dense or (for ``"bound"``) sparse.
        p: ≥ 1.
        method: ``"bound"`` or ``"exact"``.
        tol: the Lewis weights' tolerance, in (0, 1].

    Returns:
        The sensitivities (or their upper bounds), each in (0, 1].

    Shape:
        A: (n, d);  out: (n,)

    Example:
        >>> import torch, linalg_core as lc
        >>> A = torch.randn(60, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
        >>> bool((lc.sampling.lp_sensitivities(A, 1, method="exact")
        ...       <= lc.sampling.lp_sensitivities(A, 1) + 1e-9).all())
        True
    """
    _validate.choice(method, "method", ("bound", "exact"))
    p = _check_p(p)
    tol = _validate.real(tol, "tol", low=0, high=1, low_open=True)
    if method == "exact" and is_sparse(A):
        raise TypeError("lp_sensitivities(method='exact') solves a dense convex program per row and needs a dense "
                        "A; use method='bound' for a sparse A (or pass A.toarray() if it is small)")
    M, boundary = tall_input(A)
    return boundary.out(_sensitivities(M, p, method, tol))


def _sensitivities(A, p: float, method: str, tol: float) -> torch.Tensor:
    n, d = A.shape
    if method == "bound":
        w = _lewis(A, p, tol, 200) * math.exp(tol)  # a bound also for the converged-to-tol weights
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
