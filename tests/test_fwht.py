"""Fast Walsh–Hadamard transform against scipy.linalg.hadamard, on every usable backend."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import linalg_core as lc
from linalg_core.testing import tolerance, usable_backends
from tests.oracles.sketch import hadamard_transform

BACKENDS = usable_backends("fwht")
DTYPES = [torch.float64, torch.float32, torch.float16, torch.bfloat16]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,dim", [((1,), 0), ((2,), 0), ((3, 8), -1), ((64, 5), 0), ((2, 16, 3), 1),
                                       ((4, 1024), -1)])
@pytest.mark.parametrize("normalized", [True, False])
def test_matches_hadamard_oracle(backend, dtype, shape, dim, normalized):
    x = torch.randn(shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64).to(dtype)
    got = lc.fwht(x, dim=dim, normalized=normalized, backend=backend)
    want = hadamard_transform(x.to(torch.float64).numpy(), dim, normalized)
    assert got.dtype == dtype and got.shape == x.shape
    scale = 1.0 if normalized else math.sqrt(x.shape[dim])
    tol = tolerance(dtype, growth=scale * max(1, math.log2(x.shape[dim])))
    torch.testing.assert_close(got.to(torch.float64), torch.from_numpy(want), **tol)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("N,K", [(2**15, 4), (2**18, 1), (2**13, 40)])
def test_large_transforms_use_the_blocked_path_correctly(backend, N, K):
    # Sizes beyond one cache block exercise H_N = (H_N1 ⊗ I)(I ⊗ H_N2). Check against the
    # reference on the same input, and the involution H(Hx) = x.
    if backend == "triton":
        pytest.skip("large sizes are too slow under the Triton interpreter (covered in its own tests)")
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
def test_involution_and_norm_preservation(log_n, batch, trailing, dtype):
    x = torch.randn(*batch, 2**log_n, trailing, dtype=dtype)
    y = lc.fwht(x, dim=len(batch))
    tol = tolerance(dtype, growth=10)
    torch.testing.assert_close(torch.linalg.vector_norm(y), torch.linalg.vector_norm(x), **tol)
    torch.testing.assert_close(lc.fwht(y, dim=len(batch)), x, **tol)


def test_numpy_in_numpy_out_and_input_untouched():
    x = np.random.default_rng(0).standard_normal((8, 4))
    before = x.copy()
    y = lc.fwht(x, dim=0)
    assert isinstance(y, np.ndarray) and y.dtype == np.float64
    np.testing.assert_array_equal(x, before)
    np.testing.assert_allclose(y, hadamard_transform(x, 0, True), rtol=1e-12, atol=1e-12)


def test_non_contiguous_input():
    x = torch.randn(16, 6, dtype=torch.float64).T  # (6, 16), not contiguous
    torch.testing.assert_close(lc.fwht(x), torch.from_numpy(hadamard_transform(x.numpy(), 1, True)))


def test_errors_name_the_argument():
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


def test_float16_overflow_is_reported_not_passed_through():
    x = torch.full((64,), 60000.0, dtype=torch.float16)
    with pytest.raises(ValueError, match="overflowed torch.float16"):
        lc.fwht(x, normalized=False)


@pytest.mark.parametrize("backend", BACKENDS)
def test_out_argument_and_in_place(backend):
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


def test_out_argument_validation():
    x = torch.randn(8, 4)
    with pytest.raises(ValueError, match="out must be a contiguous torch.float32 array of shape"):
        lc.fwht(x, out=torch.empty(8, 4, dtype=torch.float64))
    with pytest.raises(ValueError, match="not contiguous"):
        lc.fwht(x, dim=0, out=torch.empty(4, 8).T)


def test_out_numpy_must_be_written_in_place():
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


def test_out_memory_map_read_only_is_refused(tmp_path):
    path = tmp_path / "m.npy"
    np.save(path, np.zeros((8, 4), dtype=np.float32))
    mm = np.load(path, mmap_mode="r")
    with pytest.raises(ValueError, match="read-only"):
        lc.fwht(np.ones((8, 4), dtype=np.float32), dim=0, out=mm)
    assert not np.load(path).any()


def test_out_partial_overlap_and_autograd_are_refused():
    buf = torch.randn(40)
    x = buf[:32].view(8, 4)
    with pytest.raises(ValueError, match="partially overlaps x"):
        lc.fwht(x, dim=0, out=buf[8:40].view(8, 4))
    leaf = torch.zeros(8, 4, requires_grad=True)
    with pytest.raises(ValueError, match="requires grad"):
        lc.fwht(torch.randn(8, 4), dim=0, out=leaf)
    with torch.no_grad():  # allowed there, as torch allows in-place writes into leaves
        lc.fwht(torch.randn(8, 4), dim=0, out=leaf)


def test_out_write_bumps_the_version_counter():
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
