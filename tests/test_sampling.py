"""The sampling family (ops ``weighted_gram``, ``row_quadratic_forms``) and ℓp sampling against
float64 oracles: the row kernels on every backend (CUDA tensors under the ``gpu`` marker),
leverage scores from numpy's QR, the Lewis fixed point, exact sensitivities (HiGHS LPs) above
their bounds, Bernoulli inclusion frequencies (χ²), ℓp regression optima from scipy, and bad
input."""

import numpy as np
import pytest
import scipy.optimize
import scipy.stats
import torch

import linalg_core as lc
from linalg_core import _ops
from linalg_core.testing import coherent, usable_backends
from tests.oracles import sampling as oracle


def tall(n=400, d=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    A = torch.randn(n, d, generator=g, dtype=torch.float64)
    A[:5] *= 20  # a few heavy rows, so scores differ from uniform
    return A


def test_leverage_scores_exact_and_sketched():
    A = coherent(2000, 8, seed=1)
    tau = lc.sampling.leverage_scores(A)
    np.testing.assert_allclose(tau.numpy(), oracle.leverage_scores(A.numpy()), atol=1e-12)
    est = lc.sampling.leverage_scores(A, method="sketch", seed=0)
    heavy = tau > 0.5  # the coherent rows (leverage ≈ 1) must be found by the estimator
    assert bool((est[heavy] > 0.4).all()) and float(est.sum()) == pytest.approx(8, rel=0.3)
    big = tau > 1e-3
    assert float(torch.median((est[big] / tau[big] - 1).abs())) < 0.3


@pytest.mark.parametrize("p", [1.0, 1.5, 2.0, 3.0, 4.0, 6.0])
def test_lewis_weights_fixed_point(p):
    A = tall()
    w = lc.sampling.lewis_weights(A, p)
    assert float(w.sum()) == pytest.approx(A.shape[1], rel=1e-8)
    wn = w.numpy()
    np.testing.assert_allclose(wn, oracle.lewis_fixed_point(A.numpy(), wn, p), rtol=1e-7)
    if p == 2:
        np.testing.assert_allclose(wn, lc.sampling.leverage_scores(A).numpy(), rtol=1e-9)


@pytest.mark.parametrize("p", [1.0, 1.5, 3.0])
def test_sensitivity_bounds_dominate_exact_values(p):
    A = tall(40, 3, seed=2)
    exact = lc.sampling.lp_sensitivities(A, p, method="exact")
    bound = lc.sampling.lp_sensitivities(A, p)
    assert bool((exact <= bound * (1 + 1e-6) + 1e-9).all())
    assert bool((exact > 0).all() & (exact <= 1 + 1e-9).all())
    if p == 1:  # σ_i ≥ |a_iᵀx|/‖Ax‖₁ for any x: check with x = a_i
        An = A.numpy()
        lower = np.abs(np.einsum("ij,ij->i", An, An)) / np.abs(An @ An.T).sum(0)
        assert bool((exact.numpy() >= lower - 1e-9).all())


def test_inclusion_frequencies_chi_square():
    A = tall(60, 3, seed=3)
    from linalg_core.sampling.sample import SCORE_TOL

    q = lc.sampling.inclusion_probabilities(lc.sampling.lewis_weights(A, 1.0, tol=SCORE_TOL), 20)
    assert float(q.sum()) == pytest.approx(20, rel=1e-9)
    trials = 400
    counts = np.zeros(60)
    for seed in range(trials):
        idx, w = lc.sampling.sample_rows(A, 1.0, 20, scores="lewis", seed=seed)
        counts[idx.numpy()] += 1
        np.testing.assert_allclose(w.numpy(), q[idx].numpy() ** -1.0)
    qn = q.numpy()
    live = qn < 1
    assert bool((counts[~live] == trials).all())  # certain rows always kept
    # per row a binomial(trials, q_i); the standardised squares sum to ~ χ²(#rows)
    stat = np.sum((counts[live] - trials * qn[live]) ** 2 / (trials * qn[live] * (1 - qn[live])))
    assert scipy.stats.chi2.sf(stat, live.sum()) > 1e-3


@pytest.mark.parametrize("scores", lc.sampling.SCORES)
def test_sample_rows_every_score_type(scores):
    A = tall(3000, 5, seed=4)
    idx, w = lc.sampling.sample_rows(A, 1.5, 300, scores=scores, seed=0)
    assert 200 < len(idx) < 400 and bool((idx[1:] > idx[:-1]).all()) and bool((w >= 1).all())
    again, _ = lc.sampling.sample_rows(A, 1.5, 300, scores=scores, seed=0)
    assert torch.equal(idx, again)


def _scipy_lp_opt(A, b, p):
    x0 = np.linalg.lstsq(A, b, rcond=None)[0]
    res = scipy.optimize.minimize(lambda x: np.sum(np.abs(A @ x - b) ** p), x0, method="BFGS",
                                  options={"gtol": 1e-12, "maxiter": 5000})
    return res.fun ** (1 / p)


@pytest.mark.parametrize("p", [1.0, 1.5, 3.0, 6.0])
def test_lp_regression_reaches_the_optimum(p):
    A = tall(300, 4, seed=5)
    g = np.random.default_rng(0)
    b = A.numpy() @ np.ones(4) + g.standard_t(2, 300)  # heavy-tailed noise
    res = lc.sampling.lp_regression(A, torch.from_numpy(b), p)
    assert res.converged
    if p == 1:
        lp = scipy.optimize.linprog(np.r_[np.zeros(4), np.ones(300)],
                                    A_ub=np.block([[A.numpy(), -np.eye(300)], [-A.numpy(), -np.eye(300)]]),
                                    b_ub=np.r_[b, -b], bounds=[(None, None)] * 4 + [(0, None)] * 300, method="highs")
        assert res.objective == pytest.approx(lp.fun, rel=1e-8)
    else:
        assert res.objective <= _scipy_lp_opt(A.numpy(), b, p) * (1 + 1e-7)


def test_sampled_l1_regression_beats_uniform_on_coherent_rows():
    A = coherent(4000, 6, seed=6)
    x0 = torch.ones(6, dtype=torch.float64)
    g = torch.Generator().manual_seed(0)
    b = A @ x0 + 1e-3 * torch.randn(4000, generator=g, dtype=torch.float64)
    opt = lc.sampling.lp_regression(A, b, 1.0).objective
    gap = {}
    for scores in ("lewis", "uniform"):
        costs = []
        for seed in range(5):
            sample = lc.sampling.sample_rows(A, 1.0, 200, scores=scores, seed=seed)
            if len(sample[0]) < 6:
                costs.append(np.inf)
                continue
            try:
                x = lc.sampling.lp_regression(A, b, 1.0, sample=sample).x
                costs.append(float(torch.linalg.vector_norm(A @ x - b, ord=1)) / opt - 1)
            except (ValueError, RuntimeError):
                costs.append(np.inf)
        gap[scores] = np.median(costs)
    assert gap["lewis"] < 0.5 and gap["lewis"] < gap["uniform"]


def test_embedding_distortion():
    A = tall(2000, 5, seed=7)
    idx, w = lc.sampling.sample_rows(A, 2.0, 400, scores="leverage", seed=0)
    eps2 = lc.sampling.embedding_distortion(A, idx, w, 2)
    SA = (w[:, None] * A[idx]).numpy()
    R = np.linalg.qr(A.numpy())[1]
    s = np.linalg.svd(SA @ np.linalg.inv(R), compute_uv=False)
    assert eps2 == pytest.approx(max(s.max() - 1, 1 - s.min()), rel=1e-9)
    everything = lc.sampling.embedding_distortion(A, torch.arange(2000), torch.ones(2000), 1.5)
    assert everything < 1e-12  # all rows, weight 1: no distortion
    assert 0 < lc.sampling.embedding_distortion(A, idx, w, 1.5) < 1


def test_bad_input():
    A = tall(50, 4)
    with pytest.raises(ValueError, match="p=0.5"):
        lc.sampling.lewis_weights(A, 0.5)
    with pytest.raises(ValueError, match="size=51"):
        lc.sampling.sample_rows(A, 1.0, 51)
    with pytest.raises(ValueError, match="n >= d"):
        lc.sampling.leverage_scores(A[:3])
    deficient = A.clone()
    deficient[:, 3] = deficient[:, 2]
    with pytest.raises(ValueError, match="rank-deficient"):
        lc.sampling.lewis_weights(deficient, 1.0)
    bad = A.clone()
    bad[0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        lc.sampling.sample_rows(bad, 1.0, 10)
    with pytest.raises(ValueError, match="scores='best'"):
        lc.sampling.sample_rows(A, 1.0, 10, scores="best")


def _check_row_kernels(backend, dtype, n, d, device="cpu"):
    g = torch.Generator().manual_seed(n + d)
    A = torch.randn(n, d, generator=g, dtype=torch.float64)
    v = torch.rand(n, generator=g, dtype=torch.float64)
    M = torch.randn(d, d, generator=g, dtype=torch.float64)
    M = M + M.T
    G = _ops.weighted_gram(A.to(device, dtype), v.to(device, dtype), backend=backend)
    q = _ops.row_quadratic_forms(A.to(device, dtype), M.to(device, dtype), backend=backend)
    assert G.device.type == device and q.device.type == device
    An, vn, Mn = A.numpy(), v.numpy(), M.numpy()
    tol = 1e-12 if dtype == torch.float64 else 2e-5
    np.testing.assert_allclose(G.double().cpu().numpy(), oracle.weighted_gram(An, vn), rtol=tol, atol=tol * n * d)
    np.testing.assert_allclose(q.double().cpu().numpy(), oracle.row_quadratic_forms(An, Mn), rtol=tol,
                               atol=tol * d * d * 10)


@pytest.mark.parametrize("backend", usable_backends("weighted_gram"))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("n,d", [(1, 1), (13, 3), (1000, 64), (77, 130), (300, 260)])
def test_row_kernels_match_float64(backend, dtype, n, d):
    if backend not in usable_backends("weighted_gram", dtype=dtype):
        pytest.skip(f"{backend} does not take {dtype}")
    _check_row_kernels(backend, dtype, n, d)


@pytest.mark.gpu
@pytest.mark.parametrize("backend", usable_backends("weighted_gram", device="cuda"))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_row_kernels_on_cuda_tensors(backend, dtype):
    # No CUDA kernel in this family: CUDA tensors take the reference (torch's GEMM).
    for n, d in [(13, 3), (1000, 64), (300, 260)]:
        _check_row_kernels(backend, dtype, n, d, device="cuda")


# --- the caller's type, sample checks, exact inclusion probabilities, scalar arguments ---------

def test_numpy_in_numpy_out():
    A = tall(300, 4)
    An = A.numpy()
    calls = [
        lambda X: lc.sampling.leverage_scores(X),
        lambda X: lc.sampling.leverage_scores(X, method="sketch", seed=1),
        lambda X: lc.sampling.lewis_weights(X, 1.0),
        lambda X: lc.sampling.lp_sensitivities(X, 3.0),
        lambda X: lc.sampling.lp_sensitivities(X[:40], 1.0, method="exact"),
    ]
    for call in calls:
        out = call(An)
        assert isinstance(out, np.ndarray) and out.dtype == np.float64
        np.testing.assert_allclose(out, call(A).numpy(), rtol=1e-12)  # BLAS may round by alignment
        assert isinstance(call(A), torch.Tensor)
    idx, w = lc.sampling.sample_rows(An, 1.0, 50, seed=0)
    assert isinstance(idx, np.ndarray) and idx.dtype == np.int64 and isinstance(w, np.ndarray)
    ref_idx, ref_w = lc.sampling.sample_rows(A, 1.0, 50, seed=0)
    np.testing.assert_array_equal(idx, ref_idx.numpy())
    b = An @ np.ones(4)
    res = lc.sampling.lp_regression(An, b, 1.5, sample=(idx, w))
    assert isinstance(res.x, np.ndarray)
    np.testing.assert_allclose(res.x, lc.sampling.lp_regression(A, torch.from_numpy(b), 1.5,
                                                                sample=(ref_idx, ref_w)).x.numpy(), rtol=1e-12)


@pytest.mark.parametrize("indices,weights,exc,match", [
    ([-1, 3], [1.0, 1.0], ValueError, "indices has 1 entries outside \\[0, 50\\).*-1"),
    ([0, 50], [1.0, 1.0], ValueError, "outside \\[0, 50\\).*50"),
    ([0, 3], [1.0, -2.0], ValueError, "weights has negative entries.*-2.0"),
    ([0, 3], [1.0, float("nan")], ValueError, "weights has 1 NaN"),
    ([0.0, 3.0], [1.0, 1.0], TypeError, "indices must be an integer array"),
    ([True, False], [1.0, 1.0], TypeError, "indices must be an integer array"),
    ([0, 3], [1.0], ValueError, "weights has 1 entries for 2 indices"),
    ([[0, 3]], [1.0, 1.0], ValueError, "indices must be 1-D"),
])
def test_embedding_distortion_checks_the_sample(indices, weights, exc, match):
    A = tall(50, 4)
    with pytest.raises(exc, match=match):
        lc.sampling.embedding_distortion(A, indices, weights, 2.0)
    if match.startswith("indices"):  # the same checks name lp_regression's argument
        with pytest.raises(exc, match=match.replace("indices", "sample\\[0\\]")):
            lc.sampling.lp_regression(A, A @ torch.ones(4, dtype=torch.float64), 2.0, sample=(indices, weights))


def test_repeated_indices_count_once_per_draw():
    # With-replacement samples repeat rows: each occurrence counts with its weight, so a row
    # drawn twice with weight w is the row once with weight 2^(1/p)·w.
    A = tall(60, 3)
    idx, w = [0, 5, 5, 9, 20, 31], torch.tensor([1.0, 0.7, 0.7, 2.0, 1.5, 1.1], dtype=torch.float64)
    merged_w = torch.tensor([1.0, 0.7 * 2**0.5, 2.0, 1.5, 1.1], dtype=torch.float64)
    a = lc.sampling.embedding_distortion(A, idx, w, 2.0)
    b = lc.sampling.embedding_distortion(A, [0, 5, 9, 20, 31], merged_w, 2.0)
    assert a == pytest.approx(b, rel=1e-12)


def test_inclusion_probabilities_are_exact():
    g = torch.Generator().manual_seed(3)
    s = torch.rand(500, generator=g, dtype=torch.float64) ** 6
    s[:100] = 1e-300  # zero rows' floored Lewis weights: the old bisection stopped ~1e240 too high
    s[100:110] = 0.0
    for size in (1, 7.5, 30, 200, 389.5, 390, 489.5, 490, 500):  # 490 positive scores
        q = lc.sampling.inclusion_probabilities(s, size)
        assert float(q.sum()) == pytest.approx(min(size, 490), rel=1e-12)
        assert torch.all(q[100:110] == 0) and torch.all(q <= 1)
        if size < 390:
            assert float(q[:100].max()) < 1e-250  # the tiny scores stay (almost) never drawn
        if size < 490:  # q = min(1, β s) for one β: the unclamped ratios q/s agree
            free = (q < 1) & (s > 0)
            ratio = q[free] / s[free]
            assert float(ratio.max() / ratio.min() - 1) < 1e-12
            assert torch.all(s[q == 1] >= 1 / float(ratio.max()) * (1 - 1e-12))
    assert isinstance(lc.sampling.inclusion_probabilities(s.numpy(), 10), np.ndarray)
    with pytest.raises(ValueError, match="negative"):
        lc.sampling.inclusion_probabilities(-s, 10)
    with pytest.raises(ValueError, match="all scores are zero"):
        lc.sampling.inclusion_probabilities(torch.zeros(5, dtype=torch.float64), 1)


@pytest.mark.parametrize("call,exc,match", [
    (lambda A: lc.sampling.lewis_weights(A, 1, maxiter=0), ValueError, "maxiter=0"),
    (lambda A: lc.sampling.lewis_weights(A, 1, tol=0), ValueError, "tol=0"),
    (lambda A: lc.sampling.lewis_weights(A, "1"), TypeError, "p must be a real number"),
    (lambda A: lc.sampling.lewis_weights(A, True), TypeError, "p must be a real number, got bool"),
    (lambda A: lc.sampling.lewis_weights(A, float("inf")), ValueError, "p=inf"),
    (lambda A: lc.sampling.lp_sensitivities(A, 1, tol=None), TypeError, "tol must be a real number"),
    (lambda A: lc.sampling.sample_rows(A, 1, 10.0), TypeError, "size must be an integer"),
    (lambda A: lc.sampling.sample_rows(A, 1, 10, seed=1.5), TypeError, "seed must be an integer"),
    (lambda A: lc.sampling.lp_regression(A, A[:, 0], 1.5, maxiter=np.float64(3)), TypeError, "maxiter"),
    (lambda A: lc.sampling.lp_regression(A, A[:, 0], 1.5, sample=[1, 2, 3]), TypeError, "sample must be"),
    (lambda A: lc.sampling.leverage_scores(A, method=1), TypeError, "method must be one of"),
])
def test_scalar_arguments_are_checked(call, exc, match):
    with pytest.raises(exc, match=match):
        call(tall(50, 4))


def test_scalar_arguments_from_numpy_and_tensors():
    A = tall(200, 4)
    ref = lc.sampling.lewis_weights(A, 1.5, tol=1e-9, maxiter=100)
    got = lc.sampling.lewis_weights(A, torch.tensor(1.5), tol=np.float32(1e-9), maxiter=torch.tensor(100))
    torch.testing.assert_close(got, ref, rtol=1e-8, atol=0)  # tol: float32(1e-9) is not 1e-9 exactly
    a = lc.sampling.sample_rows(A, np.float64(1.0), np.int64(40), seed=torch.tensor(2))
    b = lc.sampling.sample_rows(A, 1.0, 40, seed=2)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
