"""LSQR (Paige and Saunders 1982) for several right-hand sides at once.

Each column of b runs its own LSQR recurrence; the columns share the products with A, so k
right-hand sides cost k-column GEMMs instead of k GEMVs. A converged column is frozen (its
updates are masked) while the others continue.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import torch


class LSQRResult(NamedTuple):
    """The result of :func:`lsqr` (Paige and Saunders 1982).

    Attributes:
        x: the solutions, one column per right-hand side.
        iterations: the iterations run.
        converged: which columns met ``tol``.
        residual_norm, normal_residual: LSQR's estimates of ‖b − Ax‖ and ‖Aᵀ(b − Ax)‖.

    Shape:
        x: (d, k);  converged, residual_norm, normal_residual: (k,)

    Example:
        >>> import torch, linalg_core as lc
        >>> A = torch.randn(200, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
        >>> res = lc.regression.lsqr(lambda X: A @ X, lambda U: A.T @ U, A @ torch.ones(6, 1, dtype=A.dtype), 6,
        ...                          tol=1e-12, maxiter=50)
        >>> tuple(res.x.shape), res.converged.tolist(), bool(torch.allclose(res.x, torch.ones(6, 1, dtype=A.dtype)))
        ((6, 1), [True], True)
    """

    x: torch.Tensor
    iterations: int
    converged: torch.Tensor
    residual_norm: torch.Tensor
    normal_residual: torch.Tensor


def _safe(x):
    return torch.where(x > 0, x, torch.ones_like(x))


def _norms(u) -> torch.Tensor:
    """Column norms (k,) of an n-side vector: a tensor, or any type with ``column_norms()``."""
    return u.column_norms() if hasattr(u, "column_norms") else torch.linalg.vector_norm(u, dim=0)


def lsqr(matvec: Callable, rmatvec: Callable, b: torch.Tensor, d: int, *, tol: float, maxiter: int) -> LSQRResult:
    """min ‖Ax − b‖₂ for each column of b (n, k), from x = 0, by LSQR (Paige and Saunders 1982,
    "LSQR: An algorithm for sparse linear equations and sparse least squares", ACM TOMS 8(1)).

    Stops a column when ‖Aᵀr‖ ≤ tol·‖A‖·‖r‖ (the least-squares test, ‖A‖ estimated from the
    bidiagonalisation) or ‖r‖ ≤ tol·‖b‖ (a consistent system).

    The n-side vectors (b, A X, the u of the bidiagonalisation) are only subtracted, scaled by
    (k,) tensors and measured: besides a tensor they may be any type that supports that and
    ``column_norms()`` (``linalg_core.distributed`` passes row-partitioned dask arrays).

    Args:
        matvec: X (d, k) ↦ A X (n, k).
        rmatvec: U (n, k) ↦ Aᵀ U (d, k).
        b: (n, k) tensor (or an n-side type as above; then ``b.dtype`` is a torch dtype).
        d: columns of A.

    Shape:
        b: (n, k);  x: (d, k);  converged, residual_norm, normal_residual: (k,)

    Example:
        >>> import torch, linalg_core as lc
        >>> A = torch.randn(300, 8, dtype=torch.float64); b = torch.randn(300, 2, dtype=torch.float64)
        >>> res = lc.regression.lsqr(lambda X: A @ X, lambda U: A.T @ U, b, 8, tol=1e-14, maxiter=100)
        >>> torch.allclose(res.x, torch.linalg.lstsq(A, b).solution)
        True
    """
    k = b.shape[1]
    x = torch.zeros(d, k, dtype=b.dtype, device=getattr(b, "device", None))
    beta = _norms(b)
    bnorm = beta.clone()
    u = b / _safe(beta)
    v = rmatvec(u)
    alpha = torch.linalg.vector_norm(v, dim=0)
    v = v / _safe(alpha)
    w = v.clone()
    phibar, rhobar = beta.clone(), alpha.clone()
    anorm_sq = alpha**2
    done = (beta == 0) | (alpha == 0)  # b = 0, or b ⟂ range(A): x = 0 is the solution
    arnorm = alpha * beta
    it = 0
    for it in range(1, maxiter + 1):
        if bool(done.all()):
            it -= 1
            break
        u = matvec(v) - alpha * u
        beta = _norms(u)
        u = u / _safe(beta)
        v = rmatvec(u) - beta * v
        alpha = torch.linalg.vector_norm(v, dim=0)
        v = v / _safe(alpha)
        anorm_sq = anorm_sq + alpha**2 + beta**2
        rho = torch.hypot(rhobar, beta)
        c, s = rhobar / _safe(rho), beta / _safe(rho)
        theta = s * alpha
        rhobar_new = -c * alpha
        phi = c * phibar
        phibar_new = s * phibar
        live = ~done
        step = torch.where(live, phi / _safe(rho), torch.zeros_like(phi))
        x = x + step * w
        w = torch.where(live, v - (theta / _safe(rho)) * w, w)
        rhobar = torch.where(live, rhobar_new, rhobar)
        phibar = torch.where(live, phibar_new, phibar)
        arnorm = torch.where(live, phibar * alpha * c.abs(), arnorm)
        test_ls = arnorm <= tol * torch.sqrt(anorm_sq) * phibar
        test_consistent = phibar <= tol * bnorm
        done = done | test_ls | test_consistent | (alpha == 0) | (beta == 0)
    return LSQRResult(x, it, done, phibar, arnorm)


__all__ = ["LSQRResult", "lsqr"]
