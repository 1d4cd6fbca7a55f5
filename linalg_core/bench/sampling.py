"""Sampling family: ℓp regression on sampled rows, per score type against uniform sampling, and
the cost of the scores (Lewis weights vs exact sensitivities, one convex program per row).

Problem: coherent A (n × d, a few rows carry the subspace), b = A·1 + heavy-tailed (Student-t₂)
noise. Cost gap: ‖A x̂ − b‖_p / ‖A x* − b‖_p − 1 with x̂ solved on the sample, x* on all rows;
median over seeds.
"""

from __future__ import annotations

import time

import numpy as np
import torch

import linalg_core as lc
from linalg_core.bench.harness import Report
from linalg_core.testing import coherent


def run(report: Report, quick: bool = False):
    n, d = (2000, 6) if quick else (8192, 8)
    seeds = 3 if quick else 7
    A = coherent(n, d, seed=0)
    g = np.random.default_rng(0)
    b = A @ torch.ones(d, dtype=torch.float64) + torch.from_numpy(0.01 * g.standard_t(2, n))
    for p in (1.0, 1.5, 3.0):
        opt = lc.sampling.lp_regression(A, b, p).objective
        for size in (10 * d, 40 * d):
            for scores in ("sensitivity", "lewis", "root_leverage", "leverage", "mixed", "uniform"):
                gaps = []
                start = time.perf_counter()
                for seed in range(seeds):
                    sample = lc.sampling.sample_rows(A, p, size, scores=scores, seed=seed)
                    if len(sample[0]) < d:
                        gaps.append(float("inf"))
                        continue
                    try:
                        x = lc.sampling.lp_regression(A, b, p, sample=sample).x
                        gaps.append(float(torch.linalg.vector_norm(A @ x - b, ord=p)) / opt - 1)
                    except (ValueError, RuntimeError, torch.linalg.LinAlgError):
                        gaps.append(float("inf"))
                report.add(problem=f"coherent {n}x{d}, p={p}", size=size, scores=scores,
                           median_cost_gap=float(np.median(gaps)), max_cost_gap=float(np.max(gaps)),
                           ms_per_seed=(time.perf_counter() - start) / seeds * 1e3)
    small = coherent(400 if not quick else 150, 4, seed=1)
    for p in (1.0, 1.5):
        t0 = time.perf_counter()
        bound = lc.sampling.lp_sensitivities(small, p)
        t1 = time.perf_counter()
        exact = lc.sampling.lp_sensitivities(small, p, method="exact")
        t2 = time.perf_counter()
        report.note(f"sensitivities of a {small.shape[0]}x{small.shape[1]} coherent matrix, p={p}: Lewis-weight bounds "
                    f"{(t1 - t0) * 1e3:.1f} ms, exact (one convex program per row) {(t2 - t1) * 1e3:.0f} ms "
                    f"({(t2 - t1) / (t1 - t0):.0f}x); total bound / total exact = {float(bound.sum() / exact.sum()):.2f}, "
                    f"exact <= bound on every row: {bool((exact <= bound * (1 + 1e-6) + 1e-9).all())}")
