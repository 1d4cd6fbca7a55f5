"""The dtype conversion kernel (``_arrays.cast``): bit-exact with torch's round-to-nearest-even
conversion on every backend, and the non-finite count it returns."""

import pytest
import torch

from linalg_core import _ops
from linalg_core._arrays import cast
from linalg_core.testing.backends import usable_backends

DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16]


def values(dtype, n=200_003):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(n, generator=g, dtype=torch.float64) * torch.exp2(torch.randint(-30, 30, (n,), generator=g))
    edge = torch.tensor([0.0, -0.0, 1.0 + 2**-8, 1.0 + 3 * 2**-8, 65504.0, 1e-40, -1e-45, 3.4e38], dtype=torch.float64)
    x = torch.cat([edge, x])
    return x.to(dtype)


@pytest.mark.parametrize("backend", usable_backends("convert"))
@pytest.mark.parametrize("src", DTYPES)
@pytest.mark.parametrize("dst", DTYPES)
def test_bit_exact_with_torch(backend, src, dst):
    x = values(src)
    out = torch.empty(x.shape, dtype=dst)
    bad = int(_ops.convert_into(x, out, backend=backend))
    expect = x.to(dst)
    assert bad == int((~torch.isfinite(x)).sum())
    finite = torch.isfinite(expect)
    assert torch.equal(out[finite], expect[finite])
    assert torch.equal(torch.isinf(out), torch.isinf(expect))  # overflow to ±inf, like torch


@pytest.mark.parametrize("backend", usable_backends("convert"))
def test_counts_nan_and_inf(backend):
    x = torch.randn(100_000)
    x[[5, 77, 99_999]] = torch.tensor([float("nan"), float("inf"), -float("inf")])
    out = torch.empty(x.shape, dtype=torch.bfloat16)
    assert int(_ops.convert_into(x, out, backend=backend)) == 3
    assert int(_ops.count_nonfinite(x, backend=backend)) == 3
    y, bad = _ops.convert(x, torch.bfloat16, backend=backend)
    assert int(bad) == 3 and torch.equal(y.view(torch.int16), out.view(torch.int16))
    assert torch.isnan(out[5]) and out[77] == float("inf") and out[99_999] == -float("inf")


def test_cast_falls_back_for_strided_input():
    x = torch.randn(64, 64)[:, ::2]
    y, bad = cast(x, torch.bfloat16)
    assert bad == 0 and torch.equal(y, x.bfloat16())
