"""Least squares min ‖Ax − b‖₂ for tall A through random sketches.

* ``method="sketch_and_solve"``: x = argmin ‖S(Ax − b)‖₂ with an m × n sketch S (SRHT by
  default, O(nd log n)); the QR of the small SA solves it. The error is a parameter of m: the
  ℓ∞ analysis of "A Nearly-Optimal Bound for Fast Regression with ℓ∞ Guarantee" states
  ‖x − x*‖∞ ≤ (ε/√d)·‖Ax* − b‖₂·‖A⁺‖₂ for m = ε⁻²d·log³(n/δ), a bound whose proof is disputed
  for the SRHT; nothing here relies on it. :func:`linf_report` measures ε∞ and
  ``benchmarks/RESULTS.md`` records it per sketch and m.
* ``method="sketch_and_precondition"``: R from the QR of SA preconditions A (κ(AR⁻¹) ≈
  (1 + √(d/m))/(1 − √(d/m)) for a subspace embedding). Plain sketch-and-precondition with LSQR
  from x = 0 is not backward stable on ill-conditioned problems (Meier, Nakatsukasa, Townsend
  and Webb 2023); here it starts from the sketch-and-solve solution and runs iterative
  refinement (SPIR: each round solves for the correction of the current float64 residual), which
  reaches the accuracy of a dense QR solver. Inner solver ``"lsqr"`` (Blendenpik, Avron,
  Maymounkov and Toledo 2010; LSRN, Meng, Saunders and Mahoney 2014): LSQR on AR⁻¹, two passes
  over A per iteration. ``"direct"`` (default): Y = AR⁻¹ formed once and its small Gram YᵀY
  (κ ≈ κ(AR⁻¹)², about 10) factored by Cholesky, so each refinement round costs two passes over
  A instead of two per LSQR iteration (the corrected semi-normal equations of Björck, with the
  sketch's R: two or three rounds reach rounding level). Costs one extra n × d array (Y).
* ``method="exact"``: LAPACK ``gelsd`` (minimum-norm, also for rank-deficient A).

Sketch sizes: ``sketch_rows=None`` gives m = 16d for sketch-and-solve (the smallest multiple of d
at which the ℓ∞ error on the coherent family with a concentrated residual stays below 1; at 4d it
does not) and m = 2d for the preconditioner (a well-conditioned AR⁻¹, so LSQR converges in a few
iterations); both are capped by n. The measurements: benchmarks/RESULTS.md, "Measurements behind
design choices".
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field

import torch

from linalg_core import _validate
from linalg_core._arrays import Boundary, as_sparse, as_tensor
from linalg_core.regression.lsqr import lsqr
from linalg_core.sketch import create

METHODS = ("sketch_and_solve", "sketch_and_precondition", "exact")
SKETCHES = ("srht", "gaussian", "countsketch", "sparse_sign")
SOLVERS = ("direct", "lsqr")


@dataclass(frozen=True)
class LstsqResult:
    """Solution of min ‖Ax − b‖₂.

    Attributes:
        x: (d,) or (d, k), in b's array type; float64 when A or b is float64, else float32.
        residual_norm: ‖Ax − b‖₂ per right-hand side (float or (k,) tensor), computed exactly on
            first access (one pass over A; the result keeps references to A and b until then).
        iterations: LSQR iterations (``solver="lsqr"``) or refinement rounds (``"direct"``); 0
            for the other methods.
        converged: every right-hand side met ``tol`` (always True for the direct methods).
        method, sketch, sketch_rows, seed: what ran (seed: the sketch's, None for ``exact``).

    Shape:
        x: (d,) or (d, k);  residual_norm: float or (k,)

    Example:
        >>> import torch, linalg_core as lc
        >>> g = torch.Generator().manual_seed(0)
        >>> A = torch.randn(2000, 10, dtype=torch.float64, generator=g)
        >>> b = torch.randn(2000, dtype=torch.float64, generator=g)
        >>> res = lc.regression.lstsq(A, b, seed=0)
        >>> tuple(res.x.shape), res.converged, res.method, res.sketch, res.seed
        ((10,), True, 'sketch_and_precondition', 'srht', 0)
        >>> x_star = torch.linalg.lstsq(A, b).solution
        >>> bool(abs(res.residual_norm - float(torch.linalg.norm(A @ x_star - b))) < 1e-9)
        True
    """

    x: object
    iterations: int
    converged: bool
    method: str
    sketch: str | None
    sketch_rows: int | None
    seed: int | None
    _problem: tuple = field(repr=False, compare=False)

    @functools.cached_property
    def residual_norm(self):
        """‖Ax − b‖₂ per right-hand side (a float for a vector b), computed on first access."""
        A, B, x, vector = self._problem
        rnorm = torch.linalg.vector_norm(A @ x - B, dim=0)
        object.__setattr__(self, "_problem", ())  # release A and b
        return float(rnorm[0]) if vector else rnorm


def _rank_check(R: torch.Tensor, d: int) -> None:
    rank = _validate.numerical_rank(R, max(R.shape))
    if rank < d:
        raise ValueError(f"A is rank-deficient (numerical rank about {rank} of d={d} columns, judged from the "
                         "sketched R): the least-squares solution is not unique; use method='exact' for the "
                         "minimum-norm solution")


def lstsq(A, b, *, method: str = "sketch_and_precondition", sketch: str = "srht", sketch_rows: int | None = None,
          solver: str = "direct", tol: float | None = None, maxiter: int | None = None, seed=None) -> LstsqResult:
    """Least squares min ‖Ax − b‖₂ for a tall A (n ≥ d), by sketching: sketch-and-solve (Sarlós
    2006), or sketch-and-precondition (Rokhlin and Tygert 2008; Blendenpik, Avron, Maymounkov and
    Toledo 2010) with iterative refinement (Meier, Nakatsukasa, Townsend and Webb 2023); see the
    module docstring.

    Args:
        A: (n, d) float array (torch / numpy / DLPack), full column rank for the sketched
            methods; or a sparse (n, d) matrix (scipy.sparse csr/csc/coo, torch COO / CSR /
            CSC), used only through products with its stored entries (never densified; the
            ``"direct"`` solver accumulates the Gram of AR⁻¹ over blocks of rows, and
            ``method="exact"`` refuses it with a TypeError). The same seed gives the same x as
            the dense A, to rounding.
        b: (n,) or (n, k).
        method: ``"sketch_and_precondition"`` (dense-solver accuracy), ``"sketch_and_solve"``
            (one sketch, error set by ``sketch_rows``) or ``"exact"`` (LAPACK).
        sketch: ``"srht"``, ``"gaussian"``, ``"countsketch"`` or ``"sparse_sign"``.
        sketch_rows: m (default 16d for sketch-and-solve, 2d for the preconditioner; ≤ n).
        solver: the preconditioned inner solver: ``"direct"`` or ``"lsqr"`` (module docstring).
        tol: LSQR's stopping tolerance (default 10·eps of the compute dtype); the refinement
            rounds stop when the correction is below eps·‖x‖.
        maxiter: LSQR iterations per round (default 100 + 2·log2(1/eps)) or refinement rounds
            for ``"direct"`` (default 4).
        seed: the sketch's seed.

    Returns:
        :class:`LstsqResult`.

    Computed in float64 for float64 input, float32 otherwise.

    Shape:
        A: (n, d);  b: (n,) or (n, k);  x: (d,) or (d, k)

    Randomness:
        S is the sketch ``sketch`` of ``seed`` (its own streams, see :mod:`linalg_core.sketch`):
        the same seed gives the same x on every backend, to rounding.

    Tuning: sketch-and-solve's error falls like √(d/m) (raise ``sketch_rows``); the
    preconditioned solvers reach full accuracy whatever m ≥ d + 1, faster with m = 2d–4d.

    Raises:
        ValueError: n < d, b's length is not n, NaN/Inf, rank-deficient A (sketched methods),
            sketch_rows outside [d + 1, n], tol outside (0, 1), maxiter < 1.
        TypeError: non-float A or b; a sparse A with ``method="exact"``; sketch_rows or maxiter
            not integers, tol not a real number.

    Example:
        >>> import torch, linalg_core as lc
        >>> A = torch.randn(4096, 20, dtype=torch.float64)
        >>> x0 = torch.randn(20, dtype=torch.float64)
        >>> res = lc.regression.lstsq(A, A @ x0, seed=0)
        >>> torch.allclose(res.x, x0)
        True
    """
    _validate.choice(method, "method", METHODS)
    _validate.choice(sketch, "sketch", SKETCHES)
    _validate.choice(solver, "solver", SOLVERS)
    tol = None if tol is None else _validate.real(tol, "tol", low=0, high=1, low_open=True, high_open=True)
    maxiter = None if maxiter is None else _validate.integer(maxiter, "maxiter", low=1)
    _validate.not_differentiable(A, "A", "lstsq")
    _validate.not_differentiable(b, "b", "lstsq")
    sparse = as_sparse(A, "A")
    if sparse is not None:
        if method == "exact":
            raise TypeError("method='exact' (LAPACK gelsd) needs a dense A; for a sparse A use "
                            "'sketch_and_precondition' or 'sketch_and_solve', which only multiply by it")
        Asp = sparse[0]
        n, d = Asp.shape
        a_dtype = Asp.input_dtype
    else:
        At, _ = _validate.float_array(A, "A", ndim=2)
        n, d = At.shape
        a_dtype = At.dtype
    bt, boundary = as_tensor(b, "b")
    bt, _ = _validate.float_array(bt, "b", min_ndim=1)
    if n < d:
        raise ValueError(f"A has shape {(n, d)}: least squares here needs n >= d (a tall A)")
    if bt.dim() > 2 or bt.shape[0] != n:
        raise ValueError(f"b has shape {tuple(bt.shape)}; expected ({n},) or ({n}, k) to match A's {n} rows")
    if method == "exact":
        _validate.check_finite(At, "A")  # the sketches check their (small) results instead: every
    _validate.check_finite(bt, "b")  # entry of A reaches SA, so a NaN/Inf in A is reported by name
    cdt = torch.float64 if torch.float64 in (a_dtype, bt.dtype) else torch.float32
    vector = bt.dim() == 1
    B = (bt[:, None] if vector else bt).to(cdt)
    if sparse is not None:  # products on the stored entries only (as_sparse checked them finite)
        Asp = Asp.to(cdt)
        A64, mul, rmul = Asp.csr, Asp.matmul, Asp.rmatmul
    else:
        A64 = At.to(cdt)
        mul, rmul = A64.__matmul__, (lambda U: A64.mT @ U)
    eps = torch.finfo(cdt).eps
    if method == "exact":
        driver = "gelsd" if A64.device.type == "cpu" else None
        x = torch.linalg.lstsq(A64, B, driver=driver).solution
        return _result(A64, B, x, 0, True, method, None, None, None, vector, boundary)
    m = sketch_rows if sketch_rows is not None else min(n, (16 if method == "sketch_and_solve" else 2) * d)
    m = _validate.integer(m, "sketch_rows", low=d + 1 if n > d else d, high=n)
    S = create(sketch, m, n, seed=seed)
    SA, SB = S.apply_many(A64, B, names=("A", "b"))
    Q, R = torch.linalg.qr(SA)
    _rank_check(R, d)
    x = torch.linalg.solve_triangular(R, Q.mT @ SB, upper=True)
    if method == "sketch_and_solve":
        return _result(A64, B, x, 0, True, method, sketch, m, S.seed, vector, boundary)
    tol = 10 * eps if tol is None else tol
    if solver == "direct":
        rounds = 4 if maxiter is None else maxiter
        if sparse is not None:
            # The Gram of Y = A R⁻¹ accumulated over blocks of rows (no n × d array): Y's rows
            # are sparse rows times R⁻¹, formed explicitly (d × d); the same preconditioner M =
            # R⁻¹ is used in every product, so the refinement solves for exactly this M.
            Rinv = torch.linalg.solve_triangular(R, torch.eye(d, dtype=cdt, device=R.device), upper=True)
            G = torch.zeros(d, d, dtype=cdt, device=R.device)
            for _, _, rows in Asp.row_blocks(d):
                Yb = rows.matmul(Rinv)
                G += Yb.mT @ Yb
            precondition = lambda V: Rinv @ V  # noqa: E731
            adjoint = lambda U: Rinv.mT @ rmul(U)  # noqa: E731  (AR⁻¹)ᵀU
        else:
            # Y = A R⁻¹ (well conditioned), solved as Yᵀ = R⁻ᵀAᵀ: A's transpose is a column-major
            # view LAPACK takes without the transposing copy that left=False makes.
            Y = torch.linalg.solve_triangular(R.mT, A64.mT, upper=False).mT
            G = Y.mT @ Y
            precondition = lambda V: torch.linalg.solve_triangular(R, V, upper=True)  # noqa: E731
            adjoint = lambda U: Y.mT @ U  # noqa: E731
        L, info = torch.linalg.cholesky_ex(G)
        if bool(info.any()):
            raise ValueError("A is too ill-conditioned for the sketched preconditioner (Cholesky of (AR⁻¹)ᵀAR⁻¹ "
                             "failed); use method='exact'")
        used = 0
        for used in range(1, rounds + 1):
            delta = precondition(torch.cholesky_solve(adjoint(B - mul(x)), L))
            x = x + delta
            if _negligible(delta, x, eps):
                break
        return _result(A64, B, x, used, True, method, sketch, m, S.seed, vector, boundary)
    iters = 100 + 2 * int(math.log2(1 / eps)) if maxiter is None else maxiter

    def matvec(V):
        return mul(torch.linalg.solve_triangular(R, V, upper=True))

    def rmatvec(U):
        return torch.linalg.solve_triangular(R.mT, rmul(U), upper=False)

    total, converged = 0, False
    for _ in range(3):  # refinement rounds: LSQR on the correction of the current residual
        res = lsqr(matvec, rmatvec, B - mul(x), d, tol=tol, maxiter=iters)
        delta = torch.linalg.solve_triangular(R, res.x, upper=True)
        x = x + delta
        total += res.iterations
        converged = bool(res.converged.all())
        if _negligible(delta, x, eps):
            break
    return _result(A64, B, x, total, converged, method, sketch, m, S.seed, vector, boundary)


def _negligible(delta, x, eps) -> bool:
    """The refinement has converged: every column's correction is below 2·eps·‖x‖."""
    return bool((torch.linalg.vector_norm(delta, dim=0) <= 2 * eps * torch.linalg.vector_norm(x, dim=0)).all())


def _result(A, B, x, iterations, converged, method, sketch, m, seed, vector, boundary: Boundary):
    xo = x[:, 0] if vector else x
    return LstsqResult(boundary.out(xo), iterations, converged, method, sketch, m, seed, (A, B, x, vector))


__all__ = ["LstsqResult", "lstsq", "METHODS", "SKETCHES"]
