"""The fused DGQ A8W4 linear kernel ``_C.cpu_dgq_linear``: per-row activation quantization, the
integer product and the float32 epilogue in one call, bit for bit equal to
``quantize_activations(x)`` (per token), the int64 oracle of the integer product, and
``(float32(acc)·s_m)·s_c[n] + bias[n]`` computed in torch, on every CPU path this machine has."""

import numpy as np
import pytest
import torch

from linalg_core._ext import _C
from linalg_core.qmatmul import DGQLinear, dgq_quantize, quantize_activations
from tests.oracles import dgq

pytestmark = pytest.mark.skipif(_C is None or not hasattr(_C, "cpu_dgq_linear"), reason="_C not built")

DT = {torch.float32: 0, torch.float16: 2, torch.bfloat16: 3}
PATH_BIT = {"amx": 1, "avx512vnni": 2, "avxvnni": 4, "avx2": 8, "generic": 0}
MASKS = [1, 2, 4, 8, 0, 15]


def _b(t):
    """The (data pointer, bytes, device) triple the bindings take (None for an absent buffer)."""
    return None if t is None else (t.data_ptr(), t.nbytes, -1)


def _weight(N, K, group, seed):
    W = torch.randn(N, K, generator=torch.Generator().manual_seed(seed)) * 0.02
    return dgq_quantize(W, group_size=group, search="rtn")


def _expected(x, w, bias):
    """quantize_activations → int64 oracle → (float32(acc)·s_m)·s_c[n] (+ bias[n]) in torch."""
    x_q, s = quantize_activations(x, granularity="token")
    acc = dgq.int_product(x_q.numpy(), w.qweight.numpy(), w.zeros.numpy(), w.group_scales.numpy(), w.group_size)
    assert np.abs(acc).max(initial=0) < 2**31
    y = torch.from_numpy(acc).to(torch.int32).to(torch.float32) * s * w.channel_scales
    return y if bias is None else y + bias


def _linear(x, w, bias, allowed, y=None):
    M, K = x.shape
    N = w.out_features
    y = torch.empty(M, N) if y is None else y
    path = _C.cpu_dgq_linear(_b(x), DT[x.dtype], _b(w.qweight), _b(w.zeros), _b(w.group_scales),
                             _b(w.weight_sums), _b(w.channel_scales), _b(bias), _b(y), M, N, K, w.group_size, allowed)
    return y, path


def _check_path(path, allowed, M):
    assert path in PATH_BIT, path
    bit = PATH_BIT[path]
    assert bit == 0 or bit & allowed, (path, allowed)
    if allowed == 0 or _C.cpu_isa() == "generic":
        assert path == "generic"
    if allowed == 8 and _C.cpu_isa() != "generic":
        assert path == "avx2"  # the AVX2 build and the AVX-512 one both have it
    if path == "amx":
        assert M >= 16


# M = 1 (GEMV tiles of 4 channels, tails), M = 16 / 33 (row tiles, tails), several groups; the last
# three are large enough for the OpenMP split: over channels, and over rows when N is small.
SHAPES = [(1, 33, 256, 128), (1, 384, 384, 128), (1, 7, 1024, 256), (16, 40, 512, 256), (33, 70, 384, 128),
          (5, 9, 1024, 128), (2, 1, 128, 128), (17, 4, 640, 128), (1, 1030, 1024, 256), (27, 131, 384, 128),
          (600, 3, 640, 128)]


@pytest.mark.parametrize("allowed", MASKS)
@pytest.mark.parametrize("M,N,K,group", SHAPES)
def test_bit_exact_against_quantize_activations_and_the_oracle(M, N, K, group, allowed):
    w = _weight(N, K, group, seed=M * 7 + N)
    g = torch.Generator().manual_seed(K + M)
    x32 = torch.randn(M, K, generator=g) * torch.logspace(-3, 2, M)[:, None]  # rows of very different scales
    bias = torch.randn(N, generator=g)
    for dt in DT:
        x = x32.to(dt)
        for b in (bias, None):
            y, path = _linear(x, w, b, allowed)
            _check_path(path, allowed, M)
            expected = _expected(x, w, b)
            assert torch.equal(y, expected), (dt, b is None, path, (y - expected).abs().max())


def test_matches_dgq_linear_module():
    torch.manual_seed(3)
    lin = torch.nn.Linear(384, 96)
    q = DGQLinear.from_linear(lin, search="rtn")
    w = q.weight
    x = torch.randn(5, 384)
    y, _ = _linear(x, w, q.bias, 15)
    with torch.no_grad():
        assert torch.equal(y, q(x))


def test_rounding_ties_and_extremes():
    """Row 0: amax 127 gives s = 1, so x = k + 0.5 are exact ties (half to even, as torch.round);
    row 1: all zeros (s = tiny / 127, x_q = 0); row 2: subnormal floats; row 3: huge values;
    row 4: a single negative extreme (x_q = −127, never −128)."""
    K, N = 256, 24
    w = _weight(N, K, 128, seed=11)
    x = torch.zeros(5, K)
    ties = torch.arange(-20, 20, dtype=torch.float32) + 0.5
    x[0, : ties.numel()] = ties
    x[0, -1] = 127.0
    x[2] = torch.linspace(-1, 1, K) * 1e-39
    x[3] = torch.linspace(-1, 1, K) * 3e38
    x[4] = torch.linspace(0, 1, K)
    x[4, 7] = -5.0
    x_q, _ = quantize_activations(x)
    assert x_q[0, :40].tolist() == [int(round(v)) for v in ties.tolist()]  # Python's round is half to even
    assert int(x_q.min()) == -127 and int(x_q[4, 7]) == -127
    bias = torch.randn(N)
    for allowed in MASKS:
        y, path = _linear(x, w, bias, allowed)
        assert torch.equal(y, _expected(x, w, bias)), path
        assert torch.equal(y[1], bias)  # zero activations: 0·s·s_c + bias


@pytest.mark.parametrize("dt", list(DT))
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_x_is_refused_and_nothing_is_written(dt, bad):
    w = _weight(8, 256, 128, seed=1)
    x = torch.randn(3, 256).to(dt)
    x[1, 77] = bad
    y = torch.full((3, 8), 42.0)
    for allowed in MASKS:
        with pytest.raises(ValueError, match="cpu_dgq_linear: x has non-finite values"):
            _linear(x, w, None, allowed, y=y)
        assert torch.equal(y, torch.full((3, 8), 42.0))
    # also where the output is empty (quantize_activations refuses such x whatever the weight)
    empty = torch.empty(3, 0)
    with pytest.raises(ValueError, match="non-finite"):
        _C.cpu_dgq_linear(_b(x), DT[dt], None, None, None, None, None, None, _b(empty), 3, 0, 256, 128, 15)


def test_empty_calls():
    w = _weight(8, 256, 128, seed=2)
    x = torch.empty(0, 256)
    y, path = _linear(x, w, None, 15)
    assert path == "empty" and y.shape == (0, 8)
    x = torch.randn(2, 256)
    y = torch.empty(2, 0)
    assert _C.cpu_dgq_linear(_b(x), 0, None, None, None, None, None, None, _b(y), 2, 0, 256, 128, 15) == "empty"


def _extreme_weight(N, K, group):
    """w8 = ±127 everywhere (s_int = 127, q − z = ±1), the largest |acc| the format allows."""
    g = torch.Generator().manual_seed(K)
    sign = torch.randint(0, 2, (N, K), generator=g) * 2 - 1
    q = (8 + sign).to(torch.uint8)
    qweight = (q[:, 0::2] << 4) | q[:, 1::2]
    G = K // group
    zeros = torch.full((N, G), 8, dtype=torch.uint8)
    scales = torch.full((N, G), 127, dtype=torch.int8)
    sums = (127 * sign).sum(1).to(torch.int32)
    return qweight, zeros, scales, sums, sign


@pytest.mark.parametrize("allowed", [8, 0, 15])
def test_k_at_the_int32_limit_and_beyond(allowed):
    K, N, group = _C.DGQ_MAX_K, 2, 128
    qweight, zeros, scales, sums, sign = _extreme_weight(N, K, group)
    x = sign[0].to(torch.float32)[None] * 0.5  # x_q = 127·sign of channel 0: acc[0] = 127²·K
    sc = torch.tensor([1.0, 0.5])
    y = torch.empty(1, N)
    args = (_b(qweight), _b(zeros), _b(scales), _b(sums), _b(sc), None, _b(y))
    _C.cpu_dgq_linear(_b(x), 0, *args, 1, N, K, group, allowed)
    x_q, s = quantize_activations(x)
    acc = dgq.int_product(x_q.numpy(), qweight.numpy(), zeros.numpy(), scales.numpy(), group)
    assert int(acc[0, 0]) == 127 * 127 * K < 2**31
    expected = torch.from_numpy(acc).to(torch.int32).to(torch.float32) * s * sc
    assert torch.equal(y, expected)
    big = K + group
    xb = torch.zeros(1, big)
    with pytest.raises(ValueError, match=f"K={big} is out of range"):
        _C.cpu_dgq_linear(_b(xb), 0, *args, 1, N, big, group, allowed)


def test_argument_checks():
    w = _weight(8, 256, 128, seed=4)
    x, y = torch.randn(2, 256), torch.empty(2, 8)
    wargs = (_b(w.qweight), _b(w.zeros), _b(w.group_scales), _b(w.weight_sums), _b(w.channel_scales))

    def call(x=_b(x), dt=0, bias=None, y=_b(y), M=2, N=8, K=256, group=128, wargs=wargs):
        return _C.cpu_dgq_linear(x, dt, *wargs, bias, y, M, N, K, group, 15)

    assert call() in PATH_BIT
    with pytest.raises(ValueError, match="dt=float64 is not supported"):
        call(x=_b(x.double()), dt=1)
    with pytest.raises(ValueError, match="dt=7 is not a dtype code"):
        call(dt=7)
    with pytest.raises(ValueError, match="x holds 1024 bytes, the arguments need 2048"):
        call(x=_b(x.half()), dt=0)  # float16 data declared float32
    with pytest.raises(ValueError, match="group=64 is out of range"):
        call(group=64)
    with pytest.raises(ValueError, match="K=200 is not a multiple"):
        call(K=200)
    with pytest.raises(ValueError, match="channel_scales is a null buffer"):
        call(wargs=wargs[:4] + (None,))
    with pytest.raises(ValueError, match="bias holds 16 bytes"):
        call(bias=_b(torch.zeros(4)))
    with pytest.raises(ValueError, match="y overlaps x"):
        call(y=(x.data_ptr() + 64, 64, -1))
    with pytest.raises(ValueError, match="y overlaps bias"):
        call(y=_b(y), bias=(y.data_ptr(), 32, -1))
    with pytest.raises(ValueError, match="y is not aligned"):
        big = torch.empty(17)
        call(y=(big.data_ptr() + 2, 64, -1))
    with pytest.raises(ValueError, match="expected host memory"):
        call(x=(x.data_ptr(), x.nbytes, 0))
    assert torch.equal(x, x.clone())  # inputs untouched by the refused calls
