"""Array boundary: torch in/torch out, numpy in/numpy out, DLPack in/caller's type out, no
copies where none are needed; sparse matrices recognised at the boundary; every public scalar
argument of the low-rank, sketch, regression and sampling families either converted (NumPy
integers and floats, 0-d tensors) to the same answer or refused with ValueError / TypeError."""

import dataclasses
import numbers
import operator

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import linalg_core as lc
from linalg_core._arrays import as_tensor


def test_numpy_is_viewed_without_copy():
    a = np.arange(12, dtype=np.float32).reshape(3, 4)
    t, boundary = as_tensor(a, "A")
    assert t.data_ptr() == a.ctypes.data and boundary.kind == "numpy"


def test_read_only_and_reversed_numpy_arrays():
    a = np.arange(8, dtype=np.float64)
    a.setflags(write=False)
    np.testing.assert_allclose(lc.fwht(a), lc.fwht(a.copy()))
    b = np.arange(8, dtype=np.float64)[::-1]
    np.testing.assert_allclose(lc.fwht(b), lc.fwht(b.copy()))


def test_big_endian_numpy():
    a = np.arange(8, dtype=">f8")
    np.testing.assert_allclose(lc.fwht(a), lc.fwht(a.astype("<f8")))


class DLPackOnly:
    """An array known only through the DLPack protocol (like a CuPy array on the CPU)."""

    __module__ = "numpy"  # results come back through numpy.from_dlpack

    def __init__(self, a):
        self._a = a

    def __dlpack__(self, **kwargs):
        return self._a.__dlpack__(**kwargs)

    def __dlpack_device__(self):
        return self._a.__dlpack_device__()


def test_dlpack_input_returns_the_callers_type():
    a = np.random.default_rng(0).standard_normal((16, 3))
    out = lc.sketch.countsketch(4, 16, seed=0).apply(DLPackOnly(a))
    assert isinstance(out, np.ndarray)
    np.testing.assert_allclose(out, lc.sketch.countsketch(4, 16, seed=0).apply(a))


def test_torch_stays_torch_and_keeps_dtype():
    x = torch.randn(8, dtype=torch.bfloat16)
    y = lc.fwht(x)
    assert isinstance(y, torch.Tensor) and y.dtype == torch.bfloat16


def test_non_numeric_numpy_is_a_type_error():
    with pytest.raises(TypeError, match="not numeric"):
        lc.fwht(np.array(["a", "b"]))


# --- sparse matrices at the boundary -------------------------------------------------------------

def test_dense_only_functions_name_a_sparse_input():
    import scipy.sparse as sp

    for x in (sp.csr_matrix(np.eye(4)), sp.coo_array(np.eye(4)), torch.eye(4).to_sparse()):
        with pytest.raises(TypeError, match="sparse matrix.*needs a dense array"):
            as_tensor(x, "A")


def test_as_sparse_keeps_the_input_and_sums_duplicates():
    import scipy.sparse as sp

    from linalg_core._arrays import as_sparse

    A = sp.coo_matrix(([1.0, 2.0, 5.0], ([0, 0, 2], [1, 1, 0])), shape=(3, 2))
    before = (A.data.copy(), A.row.copy(), A.col.copy())
    M, boundary = as_sparse(A, "A")
    assert boundary.kind == "numpy" and M.shape == (3, 2) and M.nnz == 2
    assert float(M.fro_norm_sq()) == 3.0**2 + 5.0**2
    np.testing.assert_array_equal(M.matmul(torch.eye(2, dtype=torch.float64)).numpy(), A.toarray())
    assert all(np.array_equal(a, b) for a, b in zip(before, (A.data, A.row, A.col)))
    assert as_sparse(np.eye(3), "A") is None


# --- scalar arguments: the right answer, ValueError or TypeError --------------------------------

def _as_int(v):
    """What the library must do with an integer argument: operator.index, never a bool."""
    if isinstance(v, (bool, np.bool_)) or (isinstance(v, torch.Tensor) and v.dtype == torch.bool):
        raise TypeError
    return operator.index(v)


def _as_real(v):
    if isinstance(v, (bool, np.bool_)):
        raise TypeError
    if isinstance(v, torch.Tensor):
        if v.dim() != 0 or v.dtype == torch.bool or v.is_complex():
            raise TypeError
        return float(v.item())
    if isinstance(v, numbers.Real):
        return float(v)
    raise TypeError


def _same(a, b):
    # Equal up to run-to-run rounding: threaded LAPACK least squares (lp_regression's IRLS) need
    # not return the same bits twice for the same input.
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and a.shape == b.shape
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12, equal_nan=True)
    elif isinstance(a, np.ndarray):
        assert isinstance(b, np.ndarray) and a.dtype == b.dtype
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)
    elif isinstance(a, tuple):
        assert type(a) is type(b) and len(a) == len(b)
        for x, y in zip(a, b):
            _same(x, y)
    elif dataclasses.is_dataclass(a) and not isinstance(a, lc.sketch.Sketch):
        for f in dataclasses.fields(a):
            if not f.name.startswith("_"):
                _same(getattr(a, f.name), getattr(b, f.name))
    elif isinstance(a, float):
        assert a == pytest.approx(b, rel=1e-9, abs=1e-12, nan_ok=True)
    else:
        assert a == b, (a, b)


_A = torch.randn(40, 30, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
_T = torch.randn(60, 4, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
_b = _T @ torch.ones(4, dtype=torch.float64) + 0.1 * torch.randn(60, generator=torch.Generator().manual_seed(2),
                                                                   dtype=torch.float64)
_L = torch.randn(2000, 5, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
_S = lc.sampling

# (argument, kind: int / real / seed, None accepted (a default), call)
SCALAR_ARGS = [
    ("rsvd.rank", "int", False, lambda v: lc.rsvd(_A, v, seed=0)),
    ("rsvd.oversample", "int", True, lambda v: lc.rsvd(_A, 3, oversample=v, seed=0)),
    ("rsvd.niter", "int", True, lambda v: lc.rsvd(_A, 3, niter=v, seed=0)),
    ("rsvd.tol", "real", True, lambda v: lc.rsvd(_A, 12, tol=v, seed=0)),
    ("rsvd.seed", "seed", False, lambda v: lc.rsvd(_A, 3, niter=1, seed=v)),
    ("nystrom.rank", "int", False, lambda v: lc.nystrom(_A, v, seed=0)),
    ("nystrom.oversample", "int", True, lambda v: lc.nystrom(_A, 3, oversample=v, seed=0)),
    ("nystrom.niter", "int", False, lambda v: lc.nystrom(_A @ _A.T, 3, psd=True, niter=v, seed=0)),
    ("nystrom.seed", "seed", False, lambda v: lc.nystrom(_A, 3, seed=v)),
    ("cur.rank", "int", False, lambda v: lc.cur(_A, v, seed=0)),
    ("cur.oversample", "int", False, lambda v: lc.cur(_A, 3, oversample=v, seed=0)),
    ("cur.seed", "seed", False, lambda v: lc.cur(_A, 3, method="leverage", seed=v)),
    ("gaussian.m", "int", False, lambda v: lc.sketch.gaussian(v, 50, seed=0)),
    ("srht.n", "int", False, lambda v: lc.sketch.srht(8, v, seed=0)),
    ("sparse_sign.nnz", "int", False, lambda v: lc.sketch.sparse_sign(40, 50, nnz=v, seed=0)),
    ("countsketch.seed", "seed", False, lambda v: lc.sketch.countsketch(8, 50, seed=v)),
    ("lstsq.sketch_rows", "int", True, lambda v: lc.regression.lstsq(_T, _b, sketch_rows=v, seed=0)),
    ("lstsq.tol", "real", True, lambda v: lc.regression.lstsq(_T, _b, solver="lsqr", tol=v, seed=0)),
    ("lstsq.maxiter", "int", True, lambda v: lc.regression.lstsq(_T, _b, maxiter=v, seed=0)),
    ("lstsq.seed", "seed", False, lambda v: lc.regression.lstsq(_T, _b, method="sketch_and_solve", seed=v)),
    ("leverage_scores.seed", "seed", False, lambda v: _S.leverage_scores(_L, method="sketch", seed=v)),
    ("lewis_weights.p", "real", False, lambda v: _S.lewis_weights(_T, v, maxiter=100)),
    ("lewis_weights.tol", "real", False, lambda v: _S.lewis_weights(_T, 1.0, tol=v)),
    ("lewis_weights.maxiter", "int", False, lambda v: _S.lewis_weights(_T, 1.0, tol=1e-4, maxiter=v)),
    ("lp_sensitivities.p", "real", False, lambda v: _S.lp_sensitivities(_T, v)),
    ("lp_sensitivities.tol", "real", False, lambda v: _S.lp_sensitivities(_T, 1.0, tol=v)),
    ("sample_rows.p", "real", False, lambda v: _S.sample_rows(_T, v, 20, scores="lewis", seed=0)),
    ("sample_rows.size", "int", False, lambda v: _S.sample_rows(_T, 1.0, v, scores="uniform", seed=0)),
    ("sample_rows.seed", "seed", False, lambda v: _S.sample_rows(_T, 1.0, 20, scores="uniform", seed=v)),
    ("lp_regression.p", "real", False, lambda v: _S.lp_regression(_T, _b, v, maxiter=20)),
    ("lp_regression.tol", "real", False, lambda v: _S.lp_regression(_T, _b, 1.5, tol=v, maxiter=20)),
    ("lp_regression.maxiter", "int", False, lambda v: _S.lp_regression(_T, _b, 1.5, maxiter=v)),
]

_ints = st.integers(-3, 45)
_floats = st.one_of(st.floats(allow_nan=True, allow_infinity=True),
                    st.sampled_from([0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 1e-9, 0.3, 0.99]))
SCALARS = st.one_of(
    _ints, _ints.map(np.int64), _ints.map(np.int32), _ints.map(torch.tensor),
    _ints.map(lambda v: torch.tensor(v, dtype=torch.int16)), _ints.map(np.array),  # 0-d array
    _floats, _floats.map(np.float64), _floats.map(np.float32),
    _floats.map(lambda v: torch.tensor(v, dtype=torch.float64)),
    _floats.map(torch.tensor),
    st.booleans(), st.booleans().map(np.bool_), st.booleans().map(torch.tensor),
    st.text(max_size=3), st.none(),
    st.sampled_from([torch.tensor([2, 3]), np.array([3]), 2 + 1j, torch.tensor(2 + 0j), [3], (4,)]),
)


@pytest.mark.filterwarnings("ignore::UserWarning")  # rsvd: "tol not reached at the maximum rank"
@pytest.mark.filterwarnings("ignore:overflow encountered in cast:RuntimeWarning")  # np.float32(1e300)
@pytest.mark.parametrize("name,kind,none_ok,call", SCALAR_ARGS, ids=[a[0] for a in SCALAR_ARGS])
@given(value=SCALARS)
def test_scalar_arguments_give_the_answer_a_value_error_or_a_type_error(name, kind, none_ok, call, value):
    if value is None and kind == "seed":
        return  # fresh entropy, recorded: tested in each family
    if value is None and none_ok:
        canonical = None
    else:
        try:
            canonical = _as_real(value) if kind == "real" else _as_int(value)
        except TypeError:
            with pytest.raises(TypeError, match=name.split(".")[1]):
                call(value)
            return
    try:
        expected = call(canonical)
    except (ValueError, RuntimeError) as e:  # RuntimeError: documented non-convergence in maxiter
        with pytest.raises(type(e)):
            call(value)
        return
    _same(call(value), expected)


def test_misaligned_inputs_are_copied_before_any_kernel_sees_them():
    # An unpickled or memory-mapped array at an odd offset is valid input; the compiled kernels
    # refuse misaligned buffers, so the boundary copies it (values and the caller's array kept).
    raw = np.zeros(8 * 64 + 1, dtype=np.uint8)
    x = raw[1:].view(np.float64).reshape(8, 8)
    x[:] = np.arange(64, dtype=np.float64).reshape(8, 8)
    assert not x.flags.aligned
    before = x.copy()
    y = lc.fwht(x, dim=0)
    np.testing.assert_allclose(y, lc.fwht(before, dim=0))
    np.testing.assert_array_equal(x, before)
    S = lc.sketch.countsketch(4, 8, seed=0)
    np.testing.assert_allclose(S.apply(x), S.apply(before))
