"""Array boundary: torch in/torch out, numpy in/numpy out, DLPack in/caller's type out, no
copies where none are needed."""

import numpy as np
import pytest
import torch

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
