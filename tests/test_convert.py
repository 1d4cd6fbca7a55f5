"""The convert family (ops ``convert``, ``convert_into``, ``count_nonfinite``; ``_arrays.cast``):
bit-exact with torch's round-to-nearest-even conversion and with the NumPy oracle of
``tests/oracles/convert.py`` on every backend (CUDA tensors under the ``gpu`` marker), and the
non-finite count it returns."""

import numpy as np
import pytest
import torch

from linalg_core import _ops
from linalg_core._arrays import cast
from linalg_core.testing.backends import usable_backends
from tests.oracles import convert as oracle

DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16]
_FMT = {torch.float64: "float64", torch.float32: "float32", torch.float16: "float16", torch.bfloat16: "bfloat16"}
_INT = {torch.float64: torch.int64, torch.float32: torch.int32, torch.float16: torch.int16, torch.bfloat16: torch.int16}


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


def _bits(t: torch.Tensor) -> np.ndarray:
    return t.cpu().view(_INT[t.dtype]).numpy().view(oracle.BITS[_FMT[t.dtype]])


@pytest.mark.parametrize("backend", usable_backends("convert"))
@pytest.mark.parametrize("src", DTYPES)
@pytest.mark.parametrize("dst", DTYPES)
def test_matches_numpy_oracle(backend, src, dst):
    # 1 + 2^-11 + 2^-40 lies above a float16 / bfloat16 midpoint in float64 but on it in float32:
    # torch (and so the kernel) rounds float64 through float32.
    extra = torch.tensor([1 + 2**-11 + 2**-40, 1 + 2**-8 + 2**-40, float("nan"), float("inf"), -float("inf"), 7e4],
                         dtype=torch.float64)
    x = torch.cat([values(src, n=20_003), extra.to(src)])
    y, bad = _ops.convert(x, dst, backend=backend)
    xb = _bits(x)
    assert int(bad) == oracle.count_nonfinite(xb, _FMT[src]) >= 3
    want = oracle.encode(oracle.decode(xb, _FMT[src]), _FMT[dst])
    got = _bits(y)
    nan = np.isnan(oracle.decode(want, _FMT[dst]))
    np.testing.assert_array_equal(got[~nan], want[~nan])
    assert np.isnan(oracle.decode(got, _FMT[dst])[nan]).all()


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


@pytest.mark.gpu
@pytest.mark.parametrize("backend", usable_backends("convert", device="cuda"))
@pytest.mark.parametrize("src", DTYPES)
@pytest.mark.parametrize("dst", DTYPES)
def test_cuda_tensors_bit_exact_with_torch(backend, src, dst):
    # No CUDA kernel in this family: CUDA tensors take the reference (torch's own conversion).
    x = values(src).cuda()
    x[[3, 99]] = torch.tensor([float("nan"), float("inf")], dtype=src, device="cuda")
    out = torch.empty(x.shape, dtype=dst, device="cuda")
    assert int(_ops.convert_into(x, out, backend=backend)) == 2
    assert int(_ops.count_nonfinite(x, backend=backend)) == 2
    y, bad = _ops.convert(x, dst, backend=backend)
    assert int(bad) == 2 and y.device.type == "cuda"
    expect = x.to(dst)
    for got in (out, y):
        finite = torch.isfinite(expect)
        assert torch.equal(got[finite], expect[finite])
        assert torch.equal(torch.isinf(got), torch.isinf(expect)) and torch.equal(torch.isnan(got), torch.isnan(expect))


@pytest.mark.parametrize("backend", usable_backends("convert"))
def test_float16_every_half_and_a_sweep_of_float32_bit_patterns(backend):
    # every binary16 value to float32 and back, and ~1M float32 bit patterns spread over all
    # exponents (normals, subnormals, overflow, inf, nan) to float16: torch's bits (nan: a nan)
    h = torch.arange(-(2**15), 2**15, dtype=torch.int32).to(torch.int16).view(torch.float16)
    f, _ = _ops.convert(h, torch.float32, backend=backend)
    finite = ~torch.isnan(h)
    assert torch.equal(f[finite].view(torch.int32), h[finite].to(torch.float32).view(torch.int32))
    assert torch.isnan(f[~finite]).all()
    pats = torch.arange(0, 2**32, 4093, dtype=torch.int64)
    x = (pats - (pats >= 2**31).long() * 2**32).to(torch.int32).view(torch.float32)
    y, _ = _ops.convert(x, torch.float16, backend=backend)
    want = x.to(torch.float16)
    nan = torch.isnan(want)
    assert torch.equal(y[~nan].view(torch.int16), want[~nan].view(torch.int16))
    assert torch.isnan(y[nan]).all()


# --- lowrank_update: out = W − s·B·A in one pass (the adapter initialisers' residuals) -------------

# (mantissa bits, smallest normal) of the 16-bit formats: an ulp is 2^(exponent - bits)
_MANTISSA = {torch.float16: (10, 2.0**-14), torch.bfloat16: (7, 2.0**-126)}


def _update_case(m, n, r, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    W = torch.randn(m, n, generator=g).to(dtype)
    B, A = torch.randn(m, r, generator=g), torch.randn(r, n, generator=g)
    return W, B, A


@pytest.mark.parametrize("backend", usable_backends("lowrank_update"))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("shape", [(37, 1030, 5), (4, 64, 1), (1, 7, 3), (9, 129, 16), (6, 200, 80), (7, 4113, 3),
                                   (5, 8209, 2)])
def test_lowrank_update_matches_numpy_oracle(backend, dtype, shape):
    """The tile's tails (rows mod 6, columns mod 16 and 32: the AVX2 and AVX-512 strips), n below
    one strip, r above the kernel's on-stack 64, several column panels (n = 4113 on AVX2, 8209 on
    both; a panel is 4096 columns): the float32 result within the rounding of r + 2 float32
    operations of the exact value; float16 / bfloat16 rounded once from it (at most one ulp from
    the exact value's rounding)."""
    m, n, r = shape
    W, B, A = _update_case(m, n, r, dtype)
    s = 0.75
    out = torch.empty_like(W)
    _ops.lowrank_update(W, B, A, s, out, backend=backend)
    fmt = _FMT[dtype]
    exact = oracle.decode(_bits(W), fmt) - s * (B.double().numpy() @ A.double().numpy())
    want = oracle.decode(oracle.lowrank_update(oracle.decode(_bits(W), fmt), B.double().numpy(), A.double().numpy(),
                                               s, fmt), fmt)
    got = oracle.decode(_bits(out), fmt)
    scale = np.abs(oracle.decode(_bits(W), fmt)) + s * (np.abs(B.double().numpy()) @ np.abs(A.double().numpy()))
    f32_err = (r + 2) * 2.0**-24 * scale
    if dtype == torch.float32:
        assert np.all(np.abs(got - exact) <= f32_err)
    else:
        bits, tiny = _MANTISSA[dtype]
        ulp = np.exp2(np.floor(np.log2(np.maximum(np.abs(want), tiny))) - bits)
        assert np.all(np.abs(got - want) <= ulp)
        assert np.all(np.abs(got - exact) <= ulp / 2 + f32_err)  # rounded once from a float32 value
        assert (got != want).mean() < 0.01


@pytest.mark.parametrize("backend", usable_backends("lowrank_update"))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_lowrank_update_in_place_equals_out_of_place_and_keeps_nan(backend, dtype):
    W, B, A = _update_case(11, 300, 7, dtype, seed=2)
    W[3, 17] = float("nan")
    W[5, 250] = float("inf")
    before = W.clone()
    out = torch.empty_like(W)
    _ops.lowrank_update(W, B, A, -1.5, out, backend=backend)
    assert torch.equal(W.view(_INT[dtype]), before.view(_INT[dtype]))  # W is an input only
    _ops.lowrank_update(W, B, A, -1.5, W, backend=backend)
    assert torch.equal(W.view(_INT[dtype]), out.view(_INT[dtype]))
    assert torch.isnan(out[3, 17]) and torch.isinf(out[5, 250])
    assert int(torch.isfinite(out).sum()) == out.numel() - 2
