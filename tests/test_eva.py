"""EVA: the streaming incremental SVD against the float64 PCA of all rows, convergence, and the
rank redistribution against its definition."""

import numpy as np
import pytest
import torch

import linalg_core as lc


def activations(n, d, rank, seed, noise=1e-3):
    g = np.random.default_rng(seed)
    basis = np.linalg.qr(g.standard_normal((d, rank)))[0]
    scales = 2.0 ** -np.arange(rank)
    return (g.standard_normal((n, rank)) * scales) @ basis.T + noise * g.standard_normal((n, d)) + 3.0


def pca(X, k, center=True):
    X = X - X.mean(0) if center else X
    _, S, Vh = np.linalg.svd(X, full_matrices=False)
    return S[:k], Vh[:k], S**2 / np.sum(X**2)


@pytest.mark.parametrize("center", [True, False])
@pytest.mark.parametrize("batch", [64, 250])  # LAPACK path and rsvd path
def test_incremental_svd_equals_pca_of_all_rows(center, batch):
    X = activations(1000, 60, 6, seed=1)
    ipca = lc.adapters.IncrementalSVD(6, center=center, seed=0)
    for i in range(0, 1000, batch):
        ipca.partial_fit(torch.from_numpy(X[i:i + batch]))
    S, Vh, ratio = pca(X, 6, center)
    assert ipca.n_samples == 1000
    np.testing.assert_allclose(ipca.singular_values.numpy(), S, rtol=1e-3)
    cos = np.abs(np.sum(ipca.components.numpy() * Vh, axis=1))
    assert cos.min() > 1 - 1e-4
    np.testing.assert_allclose(ipca.explained_variance_ratio.numpy(), ratio[:6], rtol=2e-3)


def test_rank_covering_data_is_exact_and_converges():
    X = activations(600, 40, 4, seed=2, noise=0.0)
    ipca = lc.adapters.IncrementalSVD(4, seed=0)
    for i in range(0, 600, 100):
        ipca.partial_fit(torch.from_numpy(X[i:i + 100]))
    S, Vh, _ = pca(X, 4)
    np.testing.assert_allclose(ipca.singular_values.numpy(), S, rtol=1e-9)
    assert bool(ipca.converged.all())


def test_eva_redistributes_by_explained_variance():
    g = torch.Generator().manual_seed(0)
    d = 48
    # layer "steep" has 2 dominant directions, "flat" spreads its variance over many
    mixes = {"steep": torch.diag(torch.cat([torch.tensor([10.0, 8.0]), torch.full((d - 2,), 0.1)])).double(),
             "flat": torch.eye(d, dtype=torch.float64)}
    eva = lc.adapters.EVA({"steep": 4, "flat": 4}, rho=2, tau=0.9, seed=0)
    for _ in range(30):
        for name, M in mixes.items():
            eva.update(name, torch.randn(4, 64, d, generator=g, dtype=torch.float64) @ M)
        if eva.done:
            break
    ranks = eva.ranks()
    assert sum(ranks.values()) == 8
    # the definition: the 8 largest ratios among each layer's first round(ρ·r) = 8 components
    pooled = sorted([(float(v), n) for n, s in eva.svds.items() for v in s.explained_variance_ratio[:8]],
                    reverse=True)[:8]
    assert ranks == {n: sum(1 for _, m in pooled if m == n) for n in ("steep", "flat")}
    assert ranks["steep"] == 2  # its other directions explain ~nothing
    comps = eva.components()
    assert comps["steep"].shape == (2, d) and comps["flat"].shape == (6, d)
    # they span the two dominant input directions (within them, sampling noise mixes 10 and 8)
    np.testing.assert_allclose(np.linalg.svd(comps["steep"].numpy()[:, :2], compute_uv=False), 1, atol=1e-3)


def test_eva_bad_input():
    with pytest.raises(ValueError, match="rho=0.5"):
        lc.adapters.EVA({"a": 2}, rho=0.5)
    with pytest.raises(ValueError, match="tau=2"):
        lc.adapters.EVA({"a": 2}, tau=2)
    eva = lc.adapters.EVA({"a": 2})
    with pytest.raises(ValueError, match="unknown layer 'b'"):
        eva.update("b", torch.randn(10, 4))
    with pytest.raises(RuntimeError, match="no inputs"):
        eva.ranks()
    eva.update("a", torch.randn(10, 4))
    with pytest.raises(ValueError, match="5 features"):
        eva.update("a", torch.randn(10, 5))
    with pytest.raises(ValueError, match="NaN|finite"):
        eva.update("a", torch.full((10, 4), float("nan")))
