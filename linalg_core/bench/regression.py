"""Regression family: sketched least squares against the dense solvers users call today
(numpy.linalg.lstsq and scipy.linalg.lstsq with gelsd, scipy's gelsy, torch.linalg.lstsq),
same run, with accuracy next to every time; and the ℓ∞ error table of sketch-and-solve.

Problems: planted b = A x0 + r with r ⟂ range(A) (x* = x0 exactly), Gaussian A, ‖r‖ = ‖Ax0‖,
float64. Accuracy: the forward error ‖x − x*‖/‖x*‖, and for sketch-and-solve ε∞ and ε₂
(:func:`linalg_core.regression.linf_report`).

Floor: one pass over A (n·d·8 bytes at the memory rate measured by a copy in the same run).
sketch-and-precondition with the direct inner solver reads A about 8 times (SRHT 2–3, the
triangular solve for Y = AR⁻¹, YᵀY, two refinement rounds of A·x and Yᵀr).
"""

from __future__ import annotations

import numpy as np
import scipy.linalg
import torch

import linalg_core as lc
from linalg_core.bench.harness import Report, measure
from linalg_core.testing import planted_regression

TABLES = {  # kinds of comparison (Report.add sets each row's "table")
    "ℓ∞ error on coherent problems (many seeds)": {"problem": "re:^coherent"},
    "least squares against LAPACK": {},
}


def _fwd(x, x0):
    x = torch.as_tensor(np.asarray(x)) if not isinstance(x, torch.Tensor) else x
    return float(torch.linalg.vector_norm(x - x0) / torch.linalg.vector_norm(x0))


def run(report: Report, quick: bool = False):
    sizes = [(1 << 14, 64), (1 << 14, 256)] if quick else [(1 << 17, 64), (1 << 17, 256), (1 << 20, 64), (1 << 20, 256)]
    for n, d in sizes:
        A, b, x0 = planted_regression(n, d, scale=1.0, seed=0)
        An, bn = A.numpy(), b.numpy()
        big = n * d >= (1 << 26)
        reps = 1 if big else 3
        copy_t = measure(lambda: A.clone(), repeats=3).median
        rows = [
            ("numpy.linalg.lstsq (gelsd)", lambda: np.linalg.lstsq(An, bn, rcond=None)[0]),
            ("scipy.linalg.lstsq gelsy", lambda: scipy.linalg.lstsq(An, bn, lapack_driver="gelsy", check_finite=False)[0]),
            ("torch.linalg.lstsq (gelsy)", lambda: torch.linalg.lstsq(A, b[:, None]).solution[:, 0]),
            ("linalg_core sketch_and_precondition (srht, direct)", lambda: lc.regression.lstsq(A, b, seed=0).x),
            ("linalg_core sketch_and_precondition (srht, lsqr)",
             lambda: lc.regression.lstsq(A, b, solver="lsqr", seed=0).x),
            ("linalg_core sketch_and_solve (srht, m=16d)",
             lambda: lc.regression.lstsq(A, b, method="sketch_and_solve", seed=0).x),
        ]
        times = {}
        for name, fn in rows:
            t = measure(fn, repeats=reps, warmup=0 if big else 1, budget_s=120)
            times[name] = t.median
            x = fn()
            eps_inf = float("nan")
            if "solve" in name and "precondition" not in name:
                eps_inf = lc.regression.linf_report(A, b, x, x_star=x0).eps_inf
            report.add(problem=f"n=2^{n.bit_length() - 1} d={d}", impl=name, ms=t.median * 1e3,
                       forward_error=_fwd(x, x0), eps_inf=eps_inf, x_copy_floor=t.median / copy_t)
        ref = times["numpy.linalg.lstsq (gelsd)"]
        fastest = min(times[k] for k in times if not k.startswith("linalg_core"))
        report.note(f"n=2^{n.bit_length() - 1}, d={d}: sketch-and-precondition (direct) "
                    f"{ref / times['linalg_core sketch_and_precondition (srht, direct)']:.1f}x faster than numpy lstsq, "
                    f"{fastest / times['linalg_core sketch_and_precondition (srht, direct)']:.1f}x than the fastest dense "
                    f"solver; sketch-and-solve {ref / times['linalg_core sketch_and_solve (srht, m=16d)']:.1f}x; "
                    f"copy of A {copy_t * 1e3:.1f} ms")
    _linf_table(report, quick)


def _linf_table(report, quick):
    """ε∞ over seeds on the coherent family with a residual concentrated on a few rows."""
    n, d = (2048, 16) if quick else (4096, 32)
    seeds = 20 if quick else 100
    A, b, x0 = planted_regression(n, d, kind="coherent", residual="concentrated", seed=1)
    for factor in (4, 16):
        m = factor * d
        for sketch in ("srht", "gaussian", "sparse_sign", "countsketch"):
            eps = [lc.regression.linf_report(A, b, lc.regression.lstsq(A, b, method="sketch_and_solve", sketch=sketch,
                                                                       sketch_rows=m, seed=s).x, x_star=x0).eps_inf
                   for s in range(seeds)]
            report.add(problem=f"coherent n={n} d={d}, m={factor}d, {seeds} seeds", impl=f"sketch_and_solve {sketch}",
                       ms=float("nan"), forward_error=float("nan"), eps_inf=float(np.median(eps)),
                       x_copy_floor=float("nan"), eps_inf_p95=float(np.percentile(eps, 95)), eps_inf_max=float(max(eps)))
        eps = []
        for s in range(seeds):  # leverage-score row sampling (expected m rows, weights q^-1/2)
            idx, w = lc.sampling.sample_rows(A, 2.0, m, scores="leverage", seed=s)
            x = torch.linalg.lstsq(w[:, None] * A[idx], (w * b[idx])[:, None]).solution[:, 0]
            eps.append(lc.regression.linf_report(A, b, x, x_star=x0).eps_inf)
        report.add(problem=f"coherent n={n} d={d}, m={factor}d, {seeds} seeds", impl="leverage-score sampling",
                   ms=float("nan"), forward_error=float("nan"), eps_inf=float(np.median(eps)),
                   x_copy_floor=float("nan"), eps_inf_p95=float(np.percentile(eps, 95)), eps_inf_max=float(max(eps)))
    report.note("ℓ∞ rows: eps_inf is the median over seeds (p95 and max beside it)")
