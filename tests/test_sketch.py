"""Sketching operators: agreement with dense float64 constructions from the definitions,
apply / apply_right / to_dense consistency on every backend, E[SᵀS] = I, subspace-embedding
distortion on random and coherent matrices, value semantics and argument validation."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import linalg_core as lc
from linalg_core.testing import coherent, tall_gaussian, tolerance, usable_backends
from tests.oracles import sketch as oracle

KINDS = ["gaussian", "rademacher", "srht", "countsketch", "sparse_sign"]
OPS_OF = {"gaussian": "random_fill", "rademacher": "random_fill", "srht": "fwht", "countsketch": "sparse_apply",
          "sparse_sign": "sparse_apply"}


def make(kind, m, n, seed=0, nnz=4):
    return lc.sketch.create(kind, m, n, seed=seed, **({"nnz": nnz} if kind == "sparse_sign" else {}))


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("m,n", [(4, 1), (5, 13), (16, 64), (24, 100)])
def test_to_dense_equals_definition(kind, m, n):
    if kind == "srht" and m > (1 << max(0, (n - 1).bit_length())):
        pytest.skip("m > N is rejected for an SRHT")
    if kind == "sparse_sign" and m < 4:
        pytest.skip("nnz > m")
    S = make(kind, m, n, seed=11)
    want = oracle.dense(kind, m, n, 11, nnz=4)
    np.testing.assert_allclose(S.to_dense().numpy(), want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("kind", KINDS)
def test_column_blocks_are_generated_alone(kind):
    S = make(kind, 12, 50, seed=3)
    full = S.to_dense()
    torch.testing.assert_close(S.to_dense(cols=(17, 41)), full[:, 17:41], rtol=0, atol=0)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16, torch.float16])
def test_apply_and_apply_right_match_dense_on_every_backend(kind, dtype):
    m, n, d = 32, 300, 5
    S = make(kind, m, n, seed=7)
    Sd = S.to_dense()
    g = torch.Generator().manual_seed(0)
    A = torch.randn(n, d, generator=g, dtype=torch.float64).to(dtype)
    At = torch.randn(3, d, n, generator=g, dtype=torch.float64).to(dtype)  # batched, right
    tol = tolerance(dtype, growth=math.sqrt(n))
    for backend in usable_backends(OPS_OF[kind], dtype=dtype):
        if backend == "triton" and kind in ("gaussian", "rademacher") and dtype != torch.float32:
            continue
        left = S.apply(A, backend=backend)
        assert left.dtype == dtype and left.shape == (m, d)
        torch.testing.assert_close(left.double(), Sd @ A.double(), **tol)
        right = S.apply_right(At, backend=backend)
        assert right.shape == (3, d, m)
        torch.testing.assert_close(right.double(), At.double() @ Sd.T, **tol)


@pytest.mark.parametrize("kind", KINDS)
def test_vectors_batches_and_numpy(kind):
    S = make(kind, 8, 20, seed=1)
    Sd = S.to_dense().numpy()
    x = np.random.default_rng(0).standard_normal(20)
    y = S.apply(x)
    assert isinstance(y, np.ndarray) and y.shape == (8,)
    np.testing.assert_allclose(y, Sd @ x, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(S.apply_right(x), Sd @ x, rtol=1e-12, atol=1e-12)
    A = np.random.default_rng(1).standard_normal((2, 3, 20, 4))
    np.testing.assert_allclose(S.apply(A), np.einsum("mn,bcnd->bcmd", Sd, A), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("kind", KINDS)
def test_expected_gram_is_identity(kind):
    # E[SᵀS] = I: the mean of SᵀS over T independent seeds is I up to O(1/√T) per entry.
    m, n, T = 4, 8, 600
    mean = sum(make(kind, m, n, seed=s).to_dense().T @ make(kind, m, n, seed=s).to_dense() for s in range(T)) / T
    # Per seed, an entry of SᵀS has standard deviation at most sqrt(2/m) (the Gaussian diagonal,
    # Var = m·Var(g²)/m² = 2/m); the mean of T has sqrt(2/(mT)). Allow 6 of those.
    assert torch.max(torch.abs(mean - torch.eye(n, dtype=torch.float64))) < 6 * math.sqrt(2.0 / (m * T))


def davidson_szarek_bound(m, d, fail_prob=1e-6):
    """Gaussian m × d / √m has all singular values in 1 ± (√(d/m) + t) with probability
    ≥ 1 − 2exp(−m t²/2) (Davidson and Szarek 2001)."""
    t = math.sqrt(2 * math.log(2 / fail_prob) / m)
    return math.sqrt(d / m) + t


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("matrix", ["gaussian", "coherent"])
def test_subspace_embedding_distortion(kind, matrix):
    # m = 64d rows embed a d-dimensional subspace. Gaussian / Rademacher: the Davidson–Szarek
    # bound (≈ 0.60 here). SRHT, CountSketch, SJLT have looser worst-case constants; they must
    # stay below 0.5 for this m on both an incoherent and a maximally coherent basis, over 5 seeds.
    n, d = 3000, 4
    m = 64 * d
    A = tall_gaussian(n, d, seed=2) if matrix == "gaussian" else coherent(n, d, seed=2)
    bound = davidson_szarek_bound(m, d) if kind in ("gaussian", "rademacher") else 0.5
    for seed in range(5):
        eps = lc.distortion(make(kind, m, n, seed=seed, nnz=8), A)
        assert 0 <= eps < bound, (kind, matrix, seed, eps, bound)


def test_sketches_are_values():
    a, b = lc.sketch.srht(8, 100, seed=5), lc.sketch.srht(8, 100, seed=5)
    assert a == b and hash(a) == hash(b)
    assert a != lc.sketch.srht(8, 100, seed=6)
    assert a != lc.sketch.gaussian(8, 100, seed=5)
    a.apply(torch.ones(100, 1))  # the cache does not take part in equality
    assert a == b


def test_inputs_are_not_mutated():
    A = torch.randn(64, 3)
    before = A.clone()
    for kind in KINDS:
        make(kind, 16, 64).apply(A)
        make(kind, 16, 64).apply_right(A.T)
    assert torch.equal(A, before)


@pytest.mark.parametrize(
    "call,exc,match",
    [
        (lambda: lc.sketch.srht(0, 10), ValueError, "m=0"),
        (lambda: lc.sketch.srht(40, 30), ValueError, "m=40 exceeds N=32"),
        (lambda: lc.sketch.gaussian(4, 0), ValueError, "n=0"),
        (lambda: lc.sketch.sparse_sign(4, 10, nnz=5), ValueError, "nnz=5 exceeds"),
        (lambda: lc.sketch.sparse_sign(4, 10, nnz=0), ValueError, "nnz=0"),
        (lambda: lc.sketch.gaussian(4.0, 10), TypeError, "m must be an integer"),
        (lambda: lc.sketch.gaussian(4, 10, seed=-3), ValueError, "seed=-3"),
        (lambda: lc.sketch.create("fourier", 4, 10), ValueError, "kind='fourier'"),
        (lambda: lc.sketch.gaussian(4, 10).apply(torch.zeros(9, 2)), ValueError, "A has 9 rows"),
        (lambda: lc.sketch.gaussian(4, 10).apply_right(torch.zeros(2, 9)), ValueError, "A has 9 columns"),
        (lambda: lc.sketch.srht(4, 10).apply(torch.zeros(10, 0)), ValueError, "A is empty"),
        (lambda: lc.sketch.srht(4, 10).apply(torch.zeros(10, 2, dtype=torch.int32)), TypeError, "int32"),
        (lambda: lc.sketch.srht(4, 10).to_dense(cols=(5, 3)), ValueError, "cols"),
    ],
)
def test_bad_arguments(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


@pytest.mark.parametrize("kind", KINDS)
def test_nan_and_inf_are_reported_with_counts(kind):
    A = torch.randn(50, 3)
    A[4, 1] = float("nan")
    A[7, 0] = float("inf")
    A[9, 2] = float("-inf")
    with pytest.raises(ValueError, match="A has 1 NaN and 2 Inf entries"):
        make(kind, 8, 50).apply(A)


@given(
    kind=st.sampled_from(KINDS),
    n=st.integers(1, 70),
    m=st.integers(1, 20),
    d=st.integers(1, 3),
    seed=st.integers(0, 2**64 - 1),
)
def test_hypothesis_shapes_and_seeds(kind, n, m, d, seed):
    N = 1 << max(0, (n - 1).bit_length())
    if kind == "srht" and m > N:
        with pytest.raises(ValueError):
            lc.sketch.create(kind, m, n, seed=seed)
        return
    options = {"nnz": min(3, m)} if kind == "sparse_sign" else {}
    S = lc.sketch.create(kind, m, n, seed=seed, **options)
    A = torch.randn(n, d, dtype=torch.float64)
    torch.testing.assert_close(S.apply(A), S.to_dense() @ A, rtol=1e-11, atol=1e-11)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16])
@pytest.mark.parametrize("n,d,m", [(2**15 + 3, 4, 700), (2**17, 1, 64), (40_000, 33, 2048)])
def test_large_srht_fused_selection_matches_reference(dtype, n, d, m):
    # Sizes past one cache block take the fused path that writes only the selected rows.
    S = lc.sketch.srht(m, n, seed=8)
    A = torch.randn(n, d, generator=torch.Generator().manual_seed(3), dtype=torch.float64).to(dtype)
    want = S.apply(A, backend="reference")
    for backend in usable_backends("fwht_select", dtype=dtype):
        if backend == "triton":
            continue  # too large for the interpreter; the composite is covered above
        got = S.apply(A, backend=backend)
        torch.testing.assert_close(got.double(), want.double(), **tolerance(dtype, growth=4))
    torch.testing.assert_close(S.apply_right(A.T.contiguous()).double(), want.T.double(), **tolerance(dtype, growth=4))


def test_srht_column_panels_equal_one_transform(monkeypatch):
    from linalg_core import sketch as sk

    A = torch.randn(3000, 37, dtype=torch.float64)
    whole = lc.sketch.srht(256, 3000, seed=4).apply(A)
    monkeypatch.setattr(sk, "_PANEL_BYTES", 4096 * 8 * 8)  # panels of 8 columns
    lc.sketch.release_scratch()
    paneled = lc.sketch.srht(256, 3000, seed=4).apply(A)
    assert torch.equal(paneled, whole)
    from linalg_core import _scratch

    assert _scratch._KEPT[("fwht_select", torch.float64, "cpu")].numel() == 4096 * 8  # one bounded scratch, reused
    lc.sketch.release_scratch()
    assert not _scratch._KEPT


@pytest.mark.parametrize("kind", ["srht", "gaussian", "countsketch"])
def test_apply_many_equals_separate_applies(kind, monkeypatch):
    from linalg_core import sketch as sk

    monkeypatch.setattr(sk, "_PANEL_BYTES", 4096 * 8 * 8)  # SRHT: panels of 8 columns, b rides along
    A = torch.randn(3000, 21, dtype=torch.float64)
    b = torch.randn(3000, dtype=torch.float64)
    B = torch.randn(3000, 3, dtype=torch.float64)
    S = lc.sketch.create(kind, 128, 3000, seed=2)
    SA, Sb, SB = S.apply_many(A, b, B)
    assert torch.equal(SA, S.apply(A)) and torch.equal(Sb, S.apply(b)) and torch.equal(SB, S.apply(B))
    bad = A.clone()
    bad[5, 2] = float("nan")
    with pytest.raises(ValueError, match=r"arrays\[1\] has 1 NaN"):
        S.apply_many(b, bad)
    with pytest.raises(ValueError, match="rows but the sketch has n=3000"):
        S.apply_many(A[:10])


def test_sparse_sketches_refuse_more_rows_than_int32_row_ids_index():
    # countsketch(2**32 - 1, n).hash() used to give negative row ids (int32 wrap), which
    # sparse_apply would have written out of bounds.
    with pytest.raises(ValueError, match="m=4294967295 exceeds the 2147483647 rows"):
        lc.sketch.countsketch(2**32 - 1, 64)
    with pytest.raises(ValueError, match="exceeds the 2147483647 rows"):
        lc.sketch.sparse_sign(2**31, 64, nnz=2)
    rows, _ = lc.sketch.countsketch(2**31 - 1, 64, seed=0).hash()
    assert int(rows.min()) >= 0


@pytest.mark.parametrize("kind", KINDS)
def test_sizes_from_numpy_and_tensors_are_plain_ints(kind):
    # srht(8, np.int64(64)) raised AttributeError (np.int64 has no bit_length)
    ref = make(kind, 8, 64, seed=3)
    for m, n, seed in ((np.int64(8), np.int64(64), np.uint64(3)), (torch.tensor(8), torch.tensor(64), torch.tensor(3))):
        S = lc.sketch.create(kind, m, n, seed=seed, **({"nnz": np.int32(4)} if kind == "sparse_sign" else {}))
        assert type(S.m) is int and type(S.n) is int and type(S.seed) is int and S == ref
        A = torch.randn(64, 3, dtype=torch.float64)
        assert torch.equal(S.apply(A), ref.apply(A))
    assert lc.sketch.srht(8, np.int64(64)).N == 64


@pytest.mark.parametrize("call,exc,match", [
    (lambda: lc.sketch.srht(8, 64.0), TypeError, "n must be an integer"),
    (lambda: lc.sketch.srht(True, 64), TypeError, "m must be an integer, got bool"),
    (lambda: lc.sketch.srht(8, 64, seed=np.float64(1)), TypeError, "seed must be an integer"),
    (lambda: lc.sketch.srht(8, 64, seed=torch.tensor(1.0)), TypeError, "seed must be an integer"),
    (lambda: lc.sketch.sparse_sign(8, 64, nnz="4"), TypeError, "nnz must be an integer"),
    (lambda: lc.sketch.create(None, 8, 64), TypeError, "kind must be one of"),
    (lambda: lc.sketch.distortion(torch.eye(3), torch.eye(3)), TypeError, "S must be"),
])
def test_bad_scalar_arguments(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


def test_distortion_of_a_sparse_matrix():
    import scipy.sparse as sp

    A = sp.random(400, 5, density=0.3, format="csr", random_state=0)
    S = lc.sketch.sparse_sign(60, 400, nnz=4, seed=1)
    assert lc.distortion(S, A) == pytest.approx(lc.distortion(S, A.toarray()), abs=1e-12)
