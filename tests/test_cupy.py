"""CuPy in, CuPy out: public functions take CuPy arrays through DLPack (a zero-copy view as a CUDA
tensor) and hand results back as CuPy arrays on the same device (``_arrays.Boundary``), with the
values of the torch path on the same data. Runs with ``pytest -m gpu`` (``make gpu-check``) where
CuPy and a GPU are present; skipped otherwise."""

import numpy as np
import pytest
import torch

import linalg_core as lc

import sys
import types

gpu = pytest.mark.gpu
cp = None


@pytest.fixture(autouse=True)
def _needs_cupy_and_a_gpu(request):
    global cp
    if request.node.get_closest_marker("gpu") is None:
        return
    cp = pytest.importorskip("cupy")
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    try:
        cp.cuda.runtime.getDeviceCount()
    except Exception as e:  # noqa: BLE001 (CuPy installed without a usable CUDA runtime)
        pytest.skip(f"CuPy cannot reach the GPU: {type(e).__name__}: {e}")


class _FakeCupyArray:
    """A host array known only through DLPack whose type lives in a module named ``cupy``."""

    __module__ = "cupy"

    def __init__(self, a):
        self.a = a

    def __dlpack__(self, **kwargs):
        return self.a.__dlpack__(**kwargs)

    def __dlpack_device__(self):
        return self.a.__dlpack_device__()


def test_results_go_back_through_the_callers_module(monkeypatch):
    """On the CPU: an array type from module ``cupy`` gets its results from ``cupy.from_dlpack``
    (the route CuPy arrays take on a GPU, through a stand-in module)."""
    fake = types.ModuleType("cupy")
    fake.from_dlpack = lambda t: _FakeCupyArray(np.from_dlpack(t))
    monkeypatch.setitem(sys.modules, "cupy", fake)
    a = _data(64, 16)
    y = lc.fwht(_FakeCupyArray(a), dim=0)
    assert isinstance(y, _FakeCupyArray)
    np.testing.assert_allclose(y.a, lc.fwht(a, dim=0), rtol=1e-6, atol=1e-6)
    U, S, Vh = lc.rsvd(_FakeCupyArray(a), 4, seed=0)
    assert all(isinstance(x, _FakeCupyArray) for x in (U, S, Vh))
    np.testing.assert_allclose(S.a, lc.rsvd(a, 4, seed=0).S, rtol=1e-6)


def _data(*shape, dtype=np.float32, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def _pair(a: np.ndarray):
    """The same values as a CuPy array and as a CUDA tensor."""
    return cp.asarray(a), torch.from_numpy(a).cuda()


def _same(got, want, rtol=1e-5, atol=1e-5):
    """``got`` is a CuPy array on the current device whose values are the tensor ``want``'s."""
    assert isinstance(got, cp.ndarray), type(got)
    assert got.device.id == torch.cuda.current_device()
    assert str(got.dtype) == str(want.dtype).removeprefix("torch."), (got.dtype, want.dtype)
    np.testing.assert_allclose(cp.asnumpy(got), want.detach().cpu().numpy(), rtol=rtol, atol=atol)


@gpu
def test_input_is_viewed_without_a_copy():
    from linalg_core._arrays import as_tensor

    x = cp.asarray(_data(8, 16))
    t, boundary = as_tensor(x, "x")
    assert t.is_cuda and t.data_ptr() == x.data.ptr and boundary.kind == "dlpack" and boundary.module == "cupy"


@gpu
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16])
def test_fwht(dtype):
    x, xt = _pair(_data(64, 256, dtype=dtype))
    tol = 2e-3 if dtype == np.float16 else 1e-5
    _same(lc.fwht(x), lc.fwht(xt), rtol=tol, atol=tol)
    _same(lc.fwht(x, dim=0), lc.fwht(xt, dim=0), rtol=tol, atol=tol)


@gpu
@pytest.mark.parametrize("kind", ["gaussian", "srht", "countsketch", "sparse_sign"])
def test_sketch_apply(kind):
    A, At = _pair(_data(4096, 8))
    S = lc.sketch.create(kind, 128, 4096, seed=1)
    _same(S.apply(A), S.apply(At), rtol=1e-4, atol=1e-4)


@gpu
def test_rsvd():
    A, At = _pair(_data(512, 256))
    got, want = lc.rsvd(A, 16, seed=0), lc.rsvd(At, 16, seed=0)
    for g, w in zip(got, want):
        _same(g, w, rtol=1e-4, atol=1e-4)


@gpu
def test_lstsq():
    A, At = _pair(_data(4096, 16, dtype=np.float64))
    b, bt = _pair(_data(4096, dtype=np.float64, seed=1))
    got = lc.regression.lstsq(A, b, seed=0)
    _same(got.x, lc.regression.lstsq(At, bt, seed=0).x, rtol=1e-10, atol=1e-10)
    _same(got.x, torch.linalg.lstsq(At, bt[:, None]).solution[:, 0], rtol=1e-8, atol=1e-8)


@gpu
def test_leverage_scores():
    A, At = _pair(_data(2048, 8, dtype=np.float64))
    _same(lc.sampling.leverage_scores(A), lc.sampling.leverage_scores(At), rtol=1e-10, atol=1e-12)


@gpu
def test_quantize_activations():
    x, xt = _pair(_data(4, 384))
    (q, s), (qt, st) = lc.qmatmul.quantize_activations(x), lc.qmatmul.quantize_activations(xt)
    _same(q, qt, rtol=0, atol=0)
    _same(s, st)


@gpu
def test_vsa_bind_and_unbind():
    m = lc.vsa.MBAT(1024, kind="hadamard", seed=0)
    x, xt = _pair(_data(3, 1024))
    y = m.bind("color", x)
    _same(y, m.bind("color", xt))
    _same(m.unbind("color", y), xt, rtol=1e-4, atol=1e-4)


@gpu
def test_quantized_matmul_operand():
    W = torch.from_numpy(_data(256, 512)).cuda()
    Q = lc.quant.quantize(W, "nf4")
    X, Xt = _pair(_data(512, 3, seed=2))
    _same(Q.matmul(X), Q.matmul(Xt), rtol=1e-5, atol=1e-5)
