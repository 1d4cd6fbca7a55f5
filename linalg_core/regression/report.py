"""The error measures in which the ℓ∞ regression guarantee is stated."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from linalg_core import _validate


@dataclass(frozen=True)
class LinfReport:
    """Errors of an approximate least-squares solution x against the exact x*.

    Attributes:
        eps_inf: ε∞ = √d·‖x − x*‖∞·σ_min(A) / ‖Ax* − b‖₂ (the paper's guarantee is ε∞ ≤ ε).
        eps_2: ε₂ = ‖Ax − b‖₂ / ‖Ax* − b‖₂ − 1 (the classical (1 + ε) residual guarantee).
        forward_error: ‖x − x*‖₂ / ‖x*‖₂.
        residual_norm, optimal_residual_norm: ‖Ax − b‖₂ and ‖Ax* − b‖₂.
        sigma_min: σ_min(A).

    The ℓ∞ guarantee it measures is that of "A Nearly-Optimal Bound for Fast Regression with ℓ∞
    Guarantee" (ICML 2023): ‖x − x*‖∞ ≤ (ε/√d)·‖Ax* − b‖₂·‖A†‖₂.

    Example:
        >>> import torch, linalg_core as lc
        >>> g = torch.Generator().manual_seed(0)
        >>> A = torch.randn(500, 5, dtype=torch.float64, generator=g)
        >>> b = torch.randn(500, dtype=torch.float64, generator=g)
        >>> x = lc.regression.lstsq(A, b, method="sketch_and_solve", sketch_rows=200, seed=0).x
        >>> rep = lc.regression.linf_report(A, b, x)
        >>> rep.eps_2 >= 0, rep.eps_inf > 0, rep.eps_2 < 1
        (True, True, True)
    """

    eps_inf: float
    eps_2: float
    forward_error: float
    residual_norm: float
    optimal_residual_norm: float
    sigma_min: float


def linf_report(A, b, x, *, x_star=None) -> LinfReport:
    """ε∞ and ε₂ of x for min ‖Ax − b‖₂, all in float64 (x* by LAPACK ``gelsd`` when not given).

    ε∞ is the quantity of the ℓ∞ guarantee of "A Nearly-Optimal Bound for Fast Regression with ℓ∞
    Guarantee" (ICML 2023), measured rather than assumed.

    Args:
        A: (n, d); b: (n,); x: (d,) approximate solution; x_star: (d,) exact solution.

    Shape:
        A: (n, d);  b: (n,);  x, x_star: (d,)

    Returns:
        :class:`LinfReport`. ε∞ is undefined (inf) when b is in range(A) exactly (zero optimal
        residual) and x ≠ x*.

    Example:
        >>> import torch, linalg_core as lc
        >>> A, b = torch.randn(500, 5, dtype=torch.float64), torch.randn(500, dtype=torch.float64)
        >>> x = lc.regression.lstsq(A, b, method="sketch_and_solve", seed=0).x
        >>> r = lc.regression.linf_report(A, b, x)
        >>> 0 <= r.eps_2 < 1
        True
    """
    At, _ = _validate.float_array(A, "A", ndim=2)
    bt, _ = _validate.float_array(b, "b", ndim=1)
    xt, _ = _validate.float_array(x, "x", ndim=1)
    n, d = At.shape
    if bt.shape[0] != n or xt.shape[0] != d:
        raise ValueError(f"shapes A {tuple(At.shape)}, b {tuple(bt.shape)}, x {tuple(xt.shape)} do not match")
    for t, name in ((At, "A"), (bt, "b"), (xt, "x")):
        _validate.check_finite(t, name)
    A64, b64, x64 = At.double(), bt.double(), xt.double()
    if x_star is None:
        driver = "gelsd" if A64.device.type == "cpu" else None
        xs = torch.linalg.lstsq(A64, b64[:, None], driver=driver).solution[:, 0]
    else:
        xs, _ = _validate.float_array(x_star, "x_star", ndim=1)
        xs = xs.double()
    sigma_min = float(torch.linalg.svdvals(torch.linalg.qr(A64).R)[-1])
    opt = float(torch.linalg.vector_norm(A64 @ xs - b64))
    res = float(torch.linalg.vector_norm(A64 @ x64 - b64))
    diff_inf = float((x64 - xs).abs().max())
    eps_inf = (d**0.5 * diff_inf * sigma_min / opt) if opt > 0 else (0.0 if diff_inf == 0 else float("inf"))
    eps_2 = (res / opt - 1) if opt > 0 else (0.0 if res == 0 else float("inf"))
    fwd = float(torch.linalg.vector_norm(x64 - xs) / torch.linalg.vector_norm(xs).clamp_min(1e-300))
    return LinfReport(eps_inf, eps_2, fwd, res, opt, sigma_min)


__all__ = ["LinfReport", "linf_report"]
