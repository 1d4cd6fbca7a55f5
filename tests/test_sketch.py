"""The sketch family: ops ``fwht``, ``fwht_into``, ``fwht_select``, ``sparse_hash``,
``sparse_apply`` and the sketching operators built on them (files named ``sketch`` in every layer).

* the operators: agreement with dense float64 constructions from the definitions, apply /
  apply_right / to_dense consistency on every backend, E[SᵀS] = I, subspace-embedding distortion
  on random and coherent matrices, value semantics and argument validation;
* the fast Walsh–Hadamard transform against scipy.linalg.hadamard on every usable backend, and
  its ``out=`` argument;
* the Triton kernels against the reference, op by op, on small sizes (on CPU tensors under the
  interpreter, which tests/conftest.py turns on; on CUDA tensors when a GPU is there);
* the CUDA backend against the reference (``gpu`` marker).
"""

import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import linalg_core as lc
from linalg_core import _ops
from linalg_core.backends import availability
from linalg_core.testing import coherent, tall_gaussian, tolerance, usable_backends
from linalg_core.testing.backends import against_reference, triton_device
from tests.oracles import sketch as oracle

KINDS = ["gaussian", "rademacher", "srht", "countsketch", "sparse_sign"]
OPS_OF = {"gaussian": "random_fill", "rademacher": "random_fill", "srht": "fwht", "countsketch": "sparse_apply",
          "sparse_sign": "sparse_apply"}
FWHT_BACKENDS = usable_backends("fwht")
FWHT_DTYPES = [torch.float64, torch.float32, torch.float16, torch.bfloat16]
DEVICE = triton_device()  # of the Triton parity tests
BIG_SEED = 2**63 + 0x1234_5678_9ABC


def triton(test):
    """The ``triton`` marker, and a skip where the Triton backend cannot run."""
    reason = availability("triton")
    return pytest.mark.triton(pytest.mark.skipif(reason is not None, reason=f"triton backend: {reason}")(test))


def make(kind, m, n, seed=0, nnz=4):
    return lc.sketch.create(kind, m, n, seed=seed, **({"nnz": nnz} if kind == "sparse_sign" else {}))


# ------------------------------------------------------------------------- sketching operators


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
    from linalg_core.sketch import operators as sk  # where the panel size is read

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
    from linalg_core.sketch import operators as sk  # where the panel size is read

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


# ------------------------------------------------------------------------------------- fwht


@pytest.mark.parametrize("backend", FWHT_BACKENDS)
@pytest.mark.parametrize("dtype", FWHT_DTYPES)
@pytest.mark.parametrize("shape,dim", [((1,), 0), ((2,), 0), ((3, 8), -1), ((64, 5), 0), ((2, 16, 3), 1),
                                       ((4, 1024), -1)])
@pytest.mark.parametrize("normalized", [True, False])
def test_fwht_matches_hadamard_oracle(backend, dtype, shape, dim, normalized):
    x = torch.randn(shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64).to(dtype)
    got = lc.fwht(x, dim=dim, normalized=normalized, backend=backend)
    want = oracle.hadamard_transform(x.to(torch.float64).numpy(), dim, normalized)
    assert got.dtype == dtype and got.shape == x.shape
    scale = 1.0 if normalized else math.sqrt(x.shape[dim])
    tol = tolerance(dtype, growth=scale * max(1, math.log2(x.shape[dim])))
    torch.testing.assert_close(got.to(torch.float64), torch.from_numpy(want), **tol)


@pytest.mark.parametrize("backend", FWHT_BACKENDS)
@pytest.mark.parametrize("N,K", [(2**15, 4), (2**18, 1), (2**13, 40)])
def test_fwht_large_transforms_use_the_blocked_path_correctly(backend, N, K):
    # Sizes beyond one cache block exercise H_N = (H_N1 ⊗ I)(I ⊗ H_N2). Check against the
    # reference on the same input, and the involution H(Hx) = x.
    if backend == "triton":
        pytest.skip("too large for the Triton interpreter (test_triton_fwht_multi_pass_path covers its passes)")
    x = torch.randn(N, K, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    y = lc.fwht(x, dim=0, backend=backend)
    torch.testing.assert_close(y, lc.fwht(x, dim=0, backend="reference"), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(lc.fwht(y, dim=0, backend=backend), x, rtol=1e-12, atol=1e-12)


@given(
    log_n=st.integers(0, 9),
    batch=st.lists(st.integers(1, 3), max_size=2),
    trailing=st.integers(1, 4),
    dtype=st.sampled_from([torch.float32, torch.float64]),
)
def test_fwht_involution_and_norm_preservation(log_n, batch, trailing, dtype):
    x = torch.randn(*batch, 2**log_n, trailing, dtype=dtype)
    y = lc.fwht(x, dim=len(batch))
    tol = tolerance(dtype, growth=10)
    torch.testing.assert_close(torch.linalg.vector_norm(y), torch.linalg.vector_norm(x), **tol)
    torch.testing.assert_close(lc.fwht(y, dim=len(batch)), x, **tol)


def test_fwht_numpy_in_numpy_out_and_input_untouched():
    x = np.random.default_rng(0).standard_normal((8, 4))
    before = x.copy()
    y = lc.fwht(x, dim=0)
    assert isinstance(y, np.ndarray) and y.dtype == np.float64
    np.testing.assert_array_equal(x, before)
    np.testing.assert_allclose(y, oracle.hadamard_transform(x, 0, True), rtol=1e-12, atol=1e-12)


def test_fwht_non_contiguous_input():
    x = torch.randn(16, 6, dtype=torch.float64).T  # (6, 16), not contiguous
    torch.testing.assert_close(lc.fwht(x), torch.from_numpy(oracle.hadamard_transform(x.numpy(), 1, True)))


def test_fwht_errors_name_the_argument():
    with pytest.raises(ValueError, match=r"x.shape\[1\]=6 is not a power of two"):
        lc.fwht(torch.zeros(3, 6))
    with pytest.raises(ValueError, match="x is empty"):
        lc.fwht(torch.zeros(0, 4))
    with pytest.raises(TypeError, match="int64"):
        lc.fwht(torch.zeros(4, dtype=torch.int64))
    with pytest.raises(ValueError, match="dim=2"):
        lc.fwht(torch.zeros(4, 4), dim=2)
    x = torch.zeros(4, 8)
    x[1, 2], x[3, 3] = float("nan"), float("inf")
    with pytest.raises(ValueError, match="x has 1 NaN and 1 Inf"):
        lc.fwht(x)
    with pytest.raises(ValueError, match="x has 1 NaN and 0 Inf"):
        lc.fwht(np.array([1.0, float("nan"), 0.0, 2.0]))  # numpy input is counted too
    with pytest.raises(TypeError, match="list"):
        lc.fwht([1.0, 2.0])


def test_fwht_float16_overflow_is_reported_not_passed_through():
    x = torch.full((64,), 60000.0, dtype=torch.float16)
    with pytest.raises(ValueError, match="overflowed torch.float16"):
        lc.fwht(x, normalized=False)


@pytest.mark.parametrize("backend", FWHT_BACKENDS)
def test_fwht_out_argument_and_in_place(backend):
    x = torch.randn(32, 16, dtype=torch.float64)
    want = lc.fwht(x, dim=0, backend="reference")
    out = torch.empty_like(x)
    assert lc.fwht(x, dim=0, out=out, backend=backend) is out
    torch.testing.assert_close(out, want)
    y = x.clone()
    lc.fwht(y, dim=0, out=y, backend=backend)  # in place
    torch.testing.assert_close(y, want)
    xt = x.T  # non-contiguous input, out aliasing nothing
    outt = torch.empty(16, 32, dtype=torch.float64)
    lc.fwht(xt, dim=1, out=outt, backend=backend)
    torch.testing.assert_close(outt, want.T)


def test_fwht_out_argument_validation():
    x = torch.randn(8, 4)
    with pytest.raises(ValueError, match="out must be a contiguous torch.float32 array of shape"):
        lc.fwht(x, out=torch.empty(8, 4, dtype=torch.float64))
    with pytest.raises(ValueError, match="not contiguous"):
        lc.fwht(x, dim=0, out=torch.empty(4, 8).T)


def test_fwht_out_numpy_must_be_written_in_place():
    # Each of these used to be written through a raw pointer (read-only memory: a crash) or
    # through a temporary copy (the caller's array left untouched).
    x = np.random.default_rng(0).standard_normal((8, 4)).astype(np.float32)
    ro = np.zeros_like(x)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="read-only numpy array"):
        lc.fwht(x, dim=0, out=ro)
    with pytest.raises(ValueError, match="read-only numpy array"):
        lc.fwht(x, dim=0, out=np.frombuffer(bytes(x.nbytes), dtype=np.float32).reshape(8, 4))
    with pytest.raises(ValueError, match="native byte order"):
        lc.fwht(x, dim=0, out=np.zeros((8, 4), dtype=">f4"))
    with pytest.raises(ValueError, match="C-contiguous"):
        lc.fwht(x, dim=0, out=np.zeros((8, 4), dtype=np.float32)[::-1])
    with pytest.raises(TypeError, match="out must be a torch.Tensor or a writable numpy.ndarray"):
        lc.fwht(x, dim=0, out=[0.0] * 32)
    out = np.zeros_like(x)
    assert lc.fwht(x, dim=0, out=out) is out
    np.testing.assert_allclose(out, lc.fwht(x, dim=0), rtol=1e-6)


def test_fwht_out_memory_map_read_only_is_refused(tmp_path):
    path = tmp_path / "m.npy"
    np.save(path, np.zeros((8, 4), dtype=np.float32))
    mm = np.load(path, mmap_mode="r")
    with pytest.raises(ValueError, match="read-only"):
        lc.fwht(np.ones((8, 4), dtype=np.float32), dim=0, out=mm)
    assert not np.load(path).any()


def test_fwht_out_partial_overlap_and_autograd_are_refused():
    buf = torch.randn(40)
    x = buf[:32].view(8, 4)
    with pytest.raises(ValueError, match="partially overlaps x"):
        lc.fwht(x, dim=0, out=buf[8:40].view(8, 4))
    leaf = torch.zeros(8, 4, requires_grad=True)
    with pytest.raises(ValueError, match="requires grad"):
        lc.fwht(torch.randn(8, 4), dim=0, out=leaf)
    with torch.no_grad():  # allowed there, as torch allows in-place writes into leaves
        lc.fwht(torch.randn(8, 4), dim=0, out=leaf)


def test_fwht_out_write_bumps_the_version_counter():
    # A graph that saved `out` must notice the kernel's write (torch raises at backward)
    # instead of silently computing gradients from the new values.
    w = torch.randn(8, 4, requires_grad=True)
    out = torch.randn(8, 4)
    loss = (w * out).sum()  # saves `out` for the gradient of w
    v0 = out._version
    lc.fwht(torch.randn(8, 4), dim=0, out=out)
    assert out._version > v0
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        loss.backward()


# ------------------------------------------------------------------- Triton against the reference


def _fwht_case(B, n_valid, N, K, dtype, out_dtype, mult):
    g = torch.Generator().manual_seed(N * 31 + K)
    x = torch.randn(B, n_valid, K, generator=g, dtype=torch.float64).to(dtype).to(DEVICE)
    row_mult = None
    if mult:
        row_mult = (torch.randint(0, 2, (n_valid,), generator=g) * 2 - 1).to(torch.int8).to(DEVICE)
    (got, bad), (want, _) = against_reference("fwht", x, N, row_mult, N**-0.5, out_dtype, backend="triton")
    assert got.dtype == out_dtype and got.shape == (B, N, K) and int(bad) == 0
    if torch.bfloat16 in (dtype, out_dtype):  # 16-bit: allow one rounding step either way
        torch.testing.assert_close(got.cpu().float(), want.cpu().float(), rtol=1e-2, atol=1e-2)
    elif dtype != out_dtype:  # float32 x -> float64 out: the reference computes in float32
        torch.testing.assert_close(got.cpu(), want.cpu(), rtol=1e-6, atol=1e-6)
    else:
        torch.testing.assert_close(got.cpu(), want.cpu())


@triton
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
@pytest.mark.parametrize("N", [1, 2, 8, 64, 1024])
def test_triton_fwht_register_path(N, dtype):
    from linalg_core.backends.triton import sketch

    assert len(sketch._fwht_plan(N, 3, torch.float32)) == 1
    _fwht_case(1, N, N, 1, dtype, dtype, False)
    _fwht_case(2, max(1, N - 3), N, 3, dtype, dtype, True)


@triton
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
@pytest.mark.parametrize("N", [64, 1024])
def test_triton_fwht_multi_pass_path(N, dtype, monkeypatch):
    from linalg_core.backends.triton import sketch

    monkeypatch.setattr(sketch, "MAX_TILE", {torch.float32: 128, torch.float64: 128})
    assert len(sketch._fwht_plan(N, 3, torch.float32)) == (2 if N == 64 else 3)
    _fwht_case(2, N - 5, N, 3, dtype, dtype, True)
    _fwht_case(1, N // 2, N, 1, dtype, dtype, False)


@triton
@pytest.mark.parametrize("dtype,out_dtype", [(torch.float16, torch.float32), (torch.float64, torch.bfloat16),
                                             (torch.float32, torch.float64)])
def test_triton_fwht_mixed_dtypes(dtype, out_dtype):
    _fwht_case(2, 6, 8, 3, dtype, out_dtype, True)
    _fwht_case(1, 0, 4, 2, dtype, out_dtype, False)  # all padding


@triton
@pytest.mark.parametrize("s", [1, 3, 8])
def test_triton_sparse_hash_bit_identical(s):
    for n, col0, m in [(1, 0, s), (100, 2**33 + 7, 1000)]:
        (rows, signs), (rows_ref, signs_ref) = against_reference("sparse_hash", n, col0, m, s, 11, BIG_SEED, DEVICE,
                                                                 backend="triton")
        assert rows.dtype == torch.int32 and signs.dtype == torch.int8 and rows.shape == (n, s)
        torch.testing.assert_close(rows.cpu(), rows_ref.cpu(), rtol=0, atol=0)
        torch.testing.assert_close(signs.cpu(), signs_ref.cpu(), rtol=0, atol=0)


@triton
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
@pytest.mark.parametrize("right", [False, True])
def test_triton_sparse_apply(dtype, right):
    n, m, s, d, B = 70, 13, 3, 5, 2
    rows, signs = _ops.sparse_hash(n, 0, m, s, 1, 2, DEVICE, backend="reference")
    g = torch.Generator().manual_seed(0)
    A = torch.randn((B, d, n) if right else (B, n, d), generator=g, dtype=torch.float64).to(dtype).to(DEVICE)
    (got, bad), (want, _) = against_reference("sparse_apply", A, rows, signs, m, 0.3, right, backend="triton")
    assert int(bad) == 0
    assert got.dtype == (torch.float64 if dtype == torch.float64 else torch.float32)
    assert got.shape == ((B, d, m) if right else (B, m, d))
    torch.testing.assert_close(got.cpu(), want.cpu())  # atomics: sums in any order


# ----------------------------------------------------------------------- CUDA against the reference


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("shape,dim", [((3, 8), -1), ((1000, 256), -1), ((2**14, 7), 0), ((2, 2**17, 3), 1),
                                       ((1, 2**20), -1)])
def test_fwht_cuda_matches_reference(dtype, shape, dim):
    x = torch.randn(shape, dtype=torch.float64).to(dtype)
    want = lc.fwht(x, dim=dim, backend="reference").double()
    got = lc.fwht(x.to("cuda"), dim=dim, backend="cuda")
    assert got.dtype == dtype
    torch.testing.assert_close(got.cpu().double(), want, **tolerance(dtype, growth=20))


@pytest.mark.gpu
@pytest.mark.parametrize("kind", ["gaussian", "rademacher", "srht", "countsketch", "sparse_sign"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16])
def test_sketches_on_gpu_equal_cpu(kind, dtype):
    n, d, m = 5000, 24, 300
    S = lc.sketch.create(kind, m, n, seed=5)
    A = torch.randn(n, d, dtype=torch.float64).to(dtype)
    want = S.apply(A, backend="reference").double()
    got = S.apply(A.to("cuda"), backend="cuda").cpu().double()
    torch.testing.assert_close(got, want, **tolerance(dtype, growth=30))
    want_r = S.apply_right(A.T.contiguous(), backend="reference").double()
    got_r = S.apply_right(A.T.contiguous().to("cuda"), backend="cuda").cpu().double()
    torch.testing.assert_close(got_r, want_r, **tolerance(dtype, growth=30))
