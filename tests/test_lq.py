"""LQ decomposition, LoftQ initialisation and the bit allocator."""

import itertools

import numpy as np
import pytest
import torch

from linalg_core.quant import NormalFloat, allocate_bits, lq_decompose, quantize
from linalg_core.testing.matrices import llm_like


def _llm_like(m=256, n=384, seed=0):
    return llm_like(m, n, seed=seed)


@pytest.mark.parametrize("fmt", ["nf2", "nf3", "nf4"])
def test_lq_beats_quantization_alone_and_loftq(fmt):
    W = _llm_like()
    nf = float((quantize(W, fmt).dequantize() - W).norm() / W.norm())
    lq = lq_decompose(W, 16, fmt, iters=5, seed=0)
    loftq = lq_decompose(W, 16, fmt, iters=5, seed=0, init="quant")
    assert lq.error < nf and loftq.error < nf
    assert lq.error <= loftq.error * 1.02
    # the reported error is the reconstruction's
    got = float((lq.reconstruct() - W).norm() / W.norm())
    assert got == pytest.approx(lq.error, rel=1e-5)
    assert lq.L1.shape == (256, 16) and lq.L2.shape == (16, 384)


def test_lq_returns_the_best_iterate():
    W = _llm_like(seed=1)
    lq = lq_decompose(W, 8, "nf2", iters=8, tol=0.0, seed=0)
    assert lq.error == min(lq.history) and lq.history[lq.best] == lq.error


def test_lq_float64_oracle_of_the_alternation():
    """One iteration from Q = 0 is the exact rank-r SVD of W and the NF quantization of the rest."""
    W = _llm_like(128, 96, seed=2)
    lq = lq_decompose(W, 12, NormalFloat(bits=3, scale_bits=None), iters=1, niter=6, seed=0)
    U, S, Vh = np.linalg.svd(W.double().numpy(), full_matrices=False)
    L = (U[:, :12] * S[:12]) @ Vh[:12]
    np.testing.assert_allclose((lq.L1 @ lq.L2).double().numpy(), L, atol=2e-4 * np.abs(L).max())
    R = quantize(W - lq.L1 @ lq.L2, NormalFloat(bits=3, scale_bits=None)).dequantize()
    assert torch.equal(R, lq.Q.dequantize())


def test_fisher_weighted_variant():
    W = _llm_like(seed=3)
    g = torch.Generator().manual_seed(0)
    r = torch.rand(W.shape[0], generator=g) * 10 + 0.1
    c = torch.rand(W.shape[1], generator=g) + 0.1
    F = r[:, None] * c[None, :]  # rank one: the weighted step is exact
    plain = lq_decompose(W, 16, "nf3", iters=3, seed=0)
    weighted = lq_decompose(W, 16, "nf3", iters=3, seed=0, fisher=F)
    Fs = F.sqrt()
    err = lambda res: float((Fs * (res.reconstruct() - W)).norm() / (Fs * W).norm())
    assert err(weighted) == pytest.approx(weighted.error, rel=1e-5)
    assert err(weighted) < err(plain)


def test_lq_bad_input():
    W = _llm_like(64, 64)
    with pytest.raises(ValueError, match="rank=64 must be below"):
        lq_decompose(W, 64)
    with pytest.raises(ValueError, match="fisher has shape"):
        lq_decompose(W, 4, fisher=torch.ones(3, 3))
    with pytest.raises(ValueError, match="non-negative"):
        lq_decompose(W, 4, fisher=-torch.ones(64, 64))
    with pytest.raises(ValueError, match="init="):
        lq_decompose(W, 4, init="svd")
    bad = W.clone()
    bad[0, 0] = float("inf")
    with pytest.raises(ValueError, match="W"):
        lq_decompose(bad, 4)


# --- allocation ---------------------------------------------------------------------------------

class _Shape:
    def __init__(self, shape):
        self.shape = shape


def _brute_force(sizes, bits, E, budget):
    best, arg = np.inf, None
    for choice in itertools.product(range(len(bits)), repeat=len(sizes)):
        cost = sum(sizes[i] * bits[j] for i, j in enumerate(choice)) / sum(sizes)
        err = sum(E[i, j] for i, j in enumerate(choice))
        if cost <= budget + 1e-12 and err < best:
            best, arg = err, choice
    return best, arg


@pytest.mark.parametrize("seed", range(6))
def test_allocator_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    cands = [NormalFloat(bits=b, block_size=B0) for b in (2, 3, 4, 8) for B0 in (32, 128)]
    shapes = [(64 * int(rng.integers(1, 5)), 64 * int(rng.integers(1, 5))) for _ in range(4)]
    mats = {f"m{i}": _Shape(s) for i, s in enumerate(shapes)}
    sizes = np.array([a * b for a, b in shapes], float)
    bits = np.array([c.nominal_bits() for c in cands])
    E = rng.lognormal(0, 1, (4, 1)) * 2.0 ** (-2 * bits)[None, :] * rng.uniform(0.5, 1.5, (4, len(cands)))
    budget = float(rng.uniform(2.3, 5.0))
    plan = allocate_bits(mats, budget, candidates=cands, errors=E)
    best, _ = _brute_force(sizes, bits, E, budget)
    assert plan.bits_per_param <= budget
    assert plan.predicted_error == pytest.approx(best, rel=1e-9)


def test_allocator_on_real_errors():
    g = torch.Generator().manual_seed(0)
    Ws = {"small": torch.randn(64, 128, generator=g) * 0.1, "large": torch.randn(64, 128, generator=g) * 10}
    plan = allocate_bits(Ws, 3.2, candidates=["nf2", "nf4"], rank=4)
    assert plan.bits_per_param <= 3.2
    assert plan.formats["large"].bits == 4 and plan.formats["small"].bits == 2


def test_allocator_bad_input():
    mats = {"a": _Shape((64, 64))}
    with pytest.raises(ValueError, match="below the cheapest plan"):
        allocate_bits(mats, 1.0, candidates=["nf2"], errors=[[1.0]])
    with pytest.raises(ValueError, match="errors has shape"):
        allocate_bits(mats, 4.0, candidates=["nf2", "nf4"], errors=[[1.0]])
    with pytest.raises(ValueError, match="non-empty"):
        allocate_bits({}, 4.0)
    with pytest.raises(ValueError, match="budget_bits"):
        allocate_bits(mats, float("nan"), candidates=["nf2"], errors=[[1.0]])
