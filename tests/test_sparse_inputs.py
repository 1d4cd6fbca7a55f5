"""Sparse inputs (scipy.sparse matrices and arrays, torch COO / CSR / CSC) and matrix-free
scipy LinearOperators: every entry point that accepts them gives the dense input's answer for
the same seed (to rounding), in the caller's array family, without forming the dense matrix."""

import numpy as np
import pytest
import scipy.sparse as sp
import scipy.sparse.linalg as sla
import torch

import linalg_core as lc
from tests.oracles import lowrank as lowrank_oracle
from tests.oracles import regression as regression_oracle
from tests.oracles import sketch as sketch_oracle

pytestmark = pytest.mark.filterwarnings("ignore:Sparse CSR tensor support is in beta",
                                        "ignore:Sparse invariant checks are implicitly disabled")

FORMATS = ["csr_matrix", "csc_matrix", "coo_matrix", "csr_array", "csc_array", "coo_array",
           "torch_coo", "torch_csr", "torch_csc"]


def random_sparse(m, n, density, seed=0, dtype=np.float64):
    """A scipy COO matrix with a given density (entries N(0, 1)), rows of very different norms."""
    rng = np.random.default_rng(seed)
    nnz = max(1, int(density * m * n))
    rows, cols = rng.integers(0, m, nnz), rng.integers(0, n, nnz)
    vals = rng.standard_normal(nnz) * rng.choice([0.1, 1.0, 10.0], nnz)
    return sp.coo_matrix((vals.astype(dtype), (rows, cols)), shape=(m, n))


def convert(A: sp.coo_matrix, fmt: str):
    """A (with its duplicate coordinates, for the COO formats) in format ``fmt``."""
    if fmt.startswith("torch"):
        idx = torch.from_numpy(np.vstack([A.row, A.col]).astype(np.int64))
        t = torch.sparse_coo_tensor(idx, torch.from_numpy(A.data), A.shape)  # uncoalesced
        return {"torch_coo": t, "torch_csr": t.coalesce().to_sparse_csr(),
                "torch_csc": t.coalesce().to_sparse_csc()}[fmt]
    return getattr(sp, fmt)(A)


def dense_of(A: sp.coo_matrix, fmt: str):
    D = A.toarray()
    return torch.from_numpy(D) if fmt.startswith("torch") else D


def as_numpy(x):
    return x.numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def assert_family(x, fmt):
    assert isinstance(x, torch.Tensor if fmt.startswith("torch") else np.ndarray), (type(x), fmt)


def close(a, b, rtol=1e-10, atol=1e-12):
    np.testing.assert_allclose(as_numpy(a), as_numpy(b), rtol=rtol, atol=atol)


# --- low rank ----------------------------------------------------------------------------------

@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("finder", [lc.lowrank.SubspaceIteration(), lc.lowrank.RowSpace(), lc.lowrank.BlockKrylov()],
                         ids=["subspace", "rowspace", "krylov"])
def test_rsvd_equals_dense(fmt, finder):
    A = random_sparse(300, 120, 0.05, seed=1)
    svd = lc.rsvd(convert(A, fmt), 6, finder=finder, seed=3)
    ref = lc.rsvd(dense_of(A, fmt), 6, finder=finder, seed=3)
    for x, y in zip(svd, ref):
        assert_family(x, fmt)
        close(x, y)
    assert svd.seed == 3
    # and the factors are as good as the dense ones against LAPACK's optimum
    D = A.toarray()
    ratio = lowrank_oracle.residual(D, *map(as_numpy, svd)) / lowrank_oracle.optimal_error(D, 6)
    assert ratio < 1.1


def test_rsvd_tol_and_float32_sparse():
    A = random_sparse(200, 90, 0.1, seed=2).astype(np.float32)
    a = lc.rsvd(A.tocsr(), 40, tol=0.5, seed=0)
    b = lc.rsvd(A.toarray(), 40, tol=0.5, seed=0)
    assert a.S.dtype == np.float32 and a.S.shape == b.S.shape
    close(a.S, b.S, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_scipy_linear_operator_equals_dense(dtype):
    A = random_sparse(150, 100, 0.1, seed=4, dtype=dtype)
    D = A.toarray()
    op = sla.aslinearoperator(A.tocsr())
    def near(x, y):  # float32: scipy's and torch's GEMMs round differently
        scale = np.abs(as_numpy(y)).max()
        close(x, y, **(dict(rtol=0, atol=1e-3 * scale) if dtype == np.float32 else dict(atol=1e-12 * scale)))

    for x, y in zip(lc.rsvd(op, 5, seed=1), lc.rsvd(D, 5, seed=1)):
        assert isinstance(x, np.ndarray) and x.dtype == dtype
        near(x, y)
    # a LinearOperator defined by its products alone (no matrix behind it)
    fn = sla.LinearOperator(D.shape, matvec=lambda v: D @ v, rmatvec=lambda v: D.T @ v,
                            matmat=lambda X: D @ X, rmatmat=lambda Y: D.T @ Y, dtype=dtype)
    near(lc.nystrom(fn, 5, seed=2).dense(), lc.nystrom(D, 5, seed=2).dense())
    G = D @ D.T
    psd = sla.LinearOperator(G.shape, matvec=lambda v: G @ v, rmatvec=lambda v: G @ v, dtype=dtype)
    near(lc.nystrom(psd, 5, psd=True, seed=2).dense(), lc.nystrom(G, 5, psd=True, seed=2).dense())


def test_scipy_linear_operator_with_a_complex_dtype_is_a_type_error():
    op = sla.LinearOperator((4, 4), matvec=lambda v: v, rmatvec=lambda v: v, dtype=np.complex128)
    with pytest.raises(TypeError, match="complex128"):
        lc.rsvd(op, 2)


@pytest.mark.parametrize("fmt", FORMATS)
def test_nystrom_equals_dense(fmt):
    A = random_sparse(200, 200, 0.03, seed=5).tocsr()
    G = (A @ A.T).tocoo()  # PSD
    for psd, M in ((True, G), (False, A.tocoo())):
        ny = lc.nystrom(convert(M, fmt), 8, psd=psd, niter=1, seed=7)
        ref = lc.nystrom(dense_of(M, fmt), 8, psd=psd, niter=1, seed=7)
        for x, y in ((ny.C, ref.C), (ny.core, ref.core), (ny.R, ref.R)):
            assert_family(x, fmt)
            close(x, y, rtol=1e-9, atol=1e-10)
        assert ny.seed == 7
        assert_family(ny.to_svd().S, fmt)


def test_svd_error_of_a_sparse_matrix():
    A = random_sparse(200, 80, 0.05, seed=6)
    svd = lc.rsvd(A.toarray(), 5, seed=0)
    exact = lc.svd_error(A.toarray(), *svd)
    estimate = lc.svd_error(A.tocsr(), *svd, probes=256)  # Gaussian trace estimate
    assert abs(estimate / exact - 1) < 0.3
    spectral = lc.svd_error(A.tocsr(), *svd, norm="spectral", iters=50)
    assert abs(spectral - lc.svd_error(A.toarray(), *svd, norm="spectral", iters=50)) < 1e-9


def test_cur_refuses_sparse_input():
    with pytest.raises(TypeError, match="dense 2-D array"):
        lc.cur(random_sparse(30, 20, 0.2).tocsr(), 3)


# --- sketches ----------------------------------------------------------------------------------

@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("kind", list(lc.sketch.KINDS))
def test_sketch_apply_equals_dense_and_oracle(kind, fmt):
    A = random_sparse(700, 25, 0.05, seed=8)
    nnz = 4 if kind == "sparse_sign" else None
    S = lc.sketch.create(kind, 48, 700, seed=9, **({"nnz": nnz} if nnz else {}))
    out = S.apply(convert(A, fmt))
    assert_family(out, fmt)
    close(out, S.apply(dense_of(A, fmt)), rtol=1e-12, atol=1e-12)
    close(out, sketch_oracle.dense(kind, 48, 700, 9, nnz) @ A.toarray(), rtol=1e-12, atol=1e-12)
    # apply_right on Aᵀ (25 × 700): A Sᵀ
    right = S.apply_right(convert(A.T.tocoo(), fmt))
    assert_family(right, fmt)
    close(right, S.apply_right(dense_of(A.T.tocoo(), fmt)), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("kind", list(lc.sketch.KINDS))
def test_sketch_of_sparse_keeps_the_dtype(kind):
    A = random_sparse(300, 10, 0.05, seed=10, dtype=np.float32)
    S = lc.sketch.create(kind, 32, 300, seed=1)
    out = S.apply(A.tocsr())
    assert out.dtype == np.float32
    close(out, S.apply(A.toarray()), rtol=1e-5, atol=1e-5)
    t = torch.from_numpy(A.toarray()).to(torch.bfloat16).to_sparse_csr()
    assert S.apply(t).dtype == torch.bfloat16
    SA, Sb = S.apply_many(A.tocsr(), np.ones(300, dtype=np.float32))  # mixed sparse / dense
    close(SA, out)
    close(Sb, S.apply(np.ones(300, dtype=np.float32)))


def test_sparse_sign_scatter_add_sums_duplicates_and_empty_rows():
    # duplicate COO coordinates add up; rows and whole blocks of rows without entries are skipped
    A = sp.coo_matrix(([1.0, 2.0, -4.0], ([3, 3, 9000], [1, 1, 0])), shape=(10000, 2))
    for kind in ("countsketch", "sparse_sign", "gaussian", "srht"):
        S = lc.sketch.create(kind, 16, 10000, seed=2)
        close(S.apply(A), S.apply(A.toarray()), rtol=1e-12, atol=1e-12)


def test_sparse_input_errors():
    S = lc.sketch.countsketch(8, 100, seed=0)
    with pytest.raises(ValueError, match="rows"):
        S.apply(random_sparse(99, 3, 0.1).tocsr())
    bad = random_sparse(100, 3, 0.1).tocsr()
    bad.data[2] = np.nan
    with pytest.raises(ValueError, match="1 NaN"):
        S.apply(bad)
    assert np.isnan(bad.data[2])  # input untouched
    with pytest.raises(TypeError, match="int64"):
        S.apply(sp.csr_matrix(np.ones((100, 2), dtype=np.int64)))
    with pytest.raises(ValueError, match="2-D"):
        S.apply(torch.ones(2, 100, 3).to_sparse())
    with pytest.raises(TypeError, match="sparse matrix"):
        lc.fwht(sp.csr_matrix(np.ones((4, 4))))  # a dense-only function says so


# --- regression --------------------------------------------------------------------------------

@pytest.mark.parametrize("fmt", ["csr_matrix", "coo_array", "torch_csr", "torch_coo"])
@pytest.mark.parametrize("method,solver", [("sketch_and_solve", "direct"), ("sketch_and_precondition", "direct"),
                                           ("sketch_and_precondition", "lsqr")])
@pytest.mark.parametrize("sketch", ["srht", "gaussian", "countsketch", "sparse_sign"])
def test_lstsq_equals_dense(fmt, method, solver, sketch):
    A = random_sparse(2500, 15, 0.1, seed=11)
    rng = np.random.default_rng(0)
    b = rng.standard_normal(2500)
    bb = torch.from_numpy(b) if fmt.startswith("torch") else b
    res = lc.regression.lstsq(convert(A, fmt), bb, method=method, solver=solver, sketch=sketch, seed=4)
    ref = lc.regression.lstsq(dense_of(A, fmt), bb, method=method, solver=solver, sketch=sketch, seed=4)
    assert_family(res.x, fmt)
    close(res.x, ref.x, rtol=1e-9, atol=1e-12)
    assert res.seed == ref.seed == 4 and res.sketch_rows == ref.sketch_rows
    assert res.residual_norm == pytest.approx(ref.residual_norm, rel=1e-12)
    if method == "sketch_and_precondition":
        x_star = regression_oracle.lstsq(A.toarray(), b)
        close(res.x, x_star, rtol=1e-9, atol=1e-12)


def test_lstsq_exact_refuses_sparse_and_several_right_hand_sides_work():
    A = random_sparse(1000, 8, 0.2, seed=12).tocsr()
    with pytest.raises(TypeError, match="method='exact'"):
        lc.regression.lstsq(A, np.ones(1000), method="exact")
    B = np.random.default_rng(1).standard_normal((1000, 3))
    res = lc.regression.lstsq(A, B, seed=0)
    close(res.x, regression_oracle.lstsq(A.toarray(), B), rtol=1e-9, atol=1e-12)
    # float32 A with float64 b computes in float64, as for dense A
    res32 = lc.regression.lstsq(A.astype(np.float32), B, seed=0)
    assert res32.x.dtype == np.float64


# --- sampling ----------------------------------------------------------------------------------

SCORE_CALLS = {
    "leverage_exact": lambda A: lc.sampling.leverage_scores(A),
    "leverage_sketch": lambda A: lc.sampling.leverage_scores(A, method="sketch", seed=3),
    "lewis_1": lambda A: lc.sampling.lewis_weights(A, 1.0),
    "lewis_1.5": lambda A: lc.sampling.lewis_weights(A, 1.5),
    "lewis_3": lambda A: lc.sampling.lewis_weights(A, 3.0),
    "sensitivity_1": lambda A: lc.sampling.lp_sensitivities(A, 1.0),
    "sensitivity_4": lambda A: lc.sampling.lp_sensitivities(A, 4.0),
}


@pytest.mark.parametrize("fmt", ["csr_matrix", "csc_array", "coo_matrix", "torch_csr", "torch_coo"])
@pytest.mark.parametrize("name", list(SCORE_CALLS))
def test_scores_equal_dense(name, fmt):
    A = random_sparse(1500, 10, 0.08, seed=13)  # has rows without entries
    assert (np.diff(A.tocsr().indptr) == 0).any()
    got = SCORE_CALLS[name](convert(A, fmt))
    ref = SCORE_CALLS[name](dense_of(A, fmt))
    assert_family(got, fmt)
    close(got, ref, rtol=1e-8, atol=1e-14)
    if name == "leverage_exact":  # against numpy's QR
        Q = np.linalg.qr(A.toarray())[0]
        close(got, (Q**2).sum(1), rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("fmt", ["csr_matrix", "coo_array", "torch_csr"])
@pytest.mark.parametrize("scores", lc.sampling.SCORES)
def test_sample_rows_keeps_the_same_rows(scores, fmt):
    A = random_sparse(3000, 8, 0.1, seed=14)
    idx, w = lc.sampling.sample_rows(convert(A, fmt), 1.0, 400, scores=scores, seed=5)
    ref_idx, ref_w = lc.sampling.sample_rows(dense_of(A, fmt), 1.0, 400, scores=scores, seed=5)
    assert_family(idx, fmt)
    assert_family(w, fmt)
    np.testing.assert_array_equal(as_numpy(idx), as_numpy(ref_idx))
    close(w, ref_w, rtol=1e-8)


def test_exact_sensitivities_refuse_sparse():
    with pytest.raises(TypeError, match="method='bound'"):
        lc.sampling.lp_sensitivities(random_sparse(50, 3, 0.3).tocsr(), 1.0, method="exact")


def test_zero_rows_get_no_samples():
    # A sparse A has rows without entries; their Lewis weights (0) are held at a floor instead of
    # underflowing to log(0) (a NaN step for p > 2), and the inclusion probabilities solved for
    # the expected size whatever the scores' range (the bisection stopped ~10^240 too high).
    A = random_sparse(4000, 6, 0.02, seed=16).tocsr()
    empty = np.diff(A.indptr) == 0
    assert empty.sum() > 1000
    for p in (1.0, 3.0, 6.0):
        w = lc.sampling.lewis_weights(A, p)
        assert np.isfinite(w).all() and abs(w.sum() - 6) < 1e-6 and w[empty].max() < 1e-100
        np.testing.assert_allclose(w, lc.sampling.lewis_weights(A.toarray(), p), rtol=1e-8, atol=1e-300)
        idx, _ = lc.sampling.sample_rows(A, p, 100, scores="lewis", seed=1)
        assert 60 < len(idx) < 140 and not empty[idx].any()


def test_rank_deficient_sparse_is_reported():
    A = random_sparse(500, 4, 0.2, seed=15).tocsc()
    A = sp.hstack([A, A[:, :1]]).tocsr()  # a repeated column
    for call in (lambda: lc.sampling.leverage_scores(A), lambda: lc.sampling.lewis_weights(A, 1.0)):
        with pytest.raises(ValueError, match="rank-deficient"):
            call()


# --- never densified ---------------------------------------------------------------------------

@pytest.fixture
def no_densify(monkeypatch):
    """Every way to densify a scipy or torch sparse matrix raises."""
    def refuse(*args, **kwargs):
        raise AssertionError("a sparse input was densified")

    from scipy.sparse import _base

    classes, stack = set(), [_base._spbase]
    while stack:  # csr, coo, ... override toarray: patch every class that defines one
        cls = stack.pop()
        classes.add(cls)
        stack.extend(cls.__subclasses__())
    for cls in classes:
        for name in ("toarray", "todense", "__array__"):
            if name in cls.__dict__:
                monkeypatch.setattr(cls, name, refuse)
    monkeypatch.setattr(torch.Tensor, "to_dense", refuse)


def test_huge_sparse_matrix_is_never_densified(no_densify):
    # 200 000 × 50 000 with 1e5 entries: dense, 1e10 float64 (80 GB). Every entry point that takes
    # a sparse A runs on it; the results are small.
    m, n, nnz = 200_000, 50_000, 100_000
    rng = np.random.default_rng(0)
    A = sp.coo_array((rng.standard_normal(nnz), (rng.integers(0, m, nnz), rng.integers(0, n, nnz))), shape=(m, n))
    A = A.tocsr()
    for densify in (A.toarray, A.todense, A.tocoo().toarray, torch.ones(2, 2).to_sparse().to_dense):
        with pytest.raises(AssertionError, match="densified"):
            densify()
    svd = lc.rsvd(A, 4, niter=2, seed=0)
    assert svd.U.shape == (m, 4) and svd.Vh.shape == (4, n) and isinstance(svd.S, np.ndarray)
    # the factors diagonalise A on their subspaces: Uᵀ A Vhᵀ = diag(S) (B = QᵀA's exact SVD)
    np.testing.assert_allclose(svd.U.T @ (A @ svd.Vh.T), np.diag(svd.S), atol=1e-10)
    ny = lc.nystrom(A, 3, seed=0)
    assert ny.C.shape == (m, 3) and ny.R.shape == (3, n)
    for kind in lc.sketch.KINDS:
        out = lc.sketch.create(kind, 16, m, seed=1).apply(A)
        assert out.shape == (16, n)
        right = lc.sketch.create(kind, 16, n, seed=1).apply_right(torch.sparse_csr_tensor(
            torch.from_numpy(A.indptr), torch.from_numpy(A.indices), torch.from_numpy(A.data), size=(m, n)))
        assert right.shape == (m, 16)
    # a tall sparse matrix for regression and sampling (its dense form is also refused)
    T = sp.random_array((m, 30), density=nnz / (m * 30), format="csr", rng=1)
    b = rng.standard_normal(m)
    res = lc.regression.lstsq(T, b, seed=0)
    assert res.x.shape == (30,) and res.converged
    normal_residual = T.T @ (b - T @ res.x)
    assert np.linalg.norm(normal_residual) <= 1e-8 * np.linalg.norm(T.T @ b)
    tau = lc.sampling.leverage_scores(T)
    assert tau.shape == (m,) and abs(tau.sum() - 30) < 1e-8
    w = lc.sampling.lewis_weights(T, 1.5, tol=1e-6)
    assert abs(w.sum() - 30) < 1e-4
    idx, wts = lc.sampling.sample_rows(T, 2.0, 500, scores="leverage", seed=0)
    assert 400 < len(idx) < 600 and (np.diff(T.indptr)[idx] > 0).all()  # rows without entries never kept
