"""The qmatmul family (ops ``dgq_matmul``, ``dgq_linear``), DGQ A8W4: format round trips and the
±127 guarantee, the quantizer's search, activation quantization and outlier smoothing, the integer
product bit-exact against the int64 NumPy oracle of ``tests/oracles/qmatmul.py`` on every backend
(CUDA under the ``gpu`` marker) and every CPU path, and the fused CPU kernel of ``dgq_linear``."""

import numpy as np
import pytest
import torch

from linalg_core import _ops
from linalg_core._ext import _C
from linalg_core.qmatmul import DGQLinear, DGQWeight, dgq_quantize, qmatmul, quantize_activations, smooth_outliers
from linalg_core.testing.backends import usable_backends
from tests.oracles import qmatmul as oracle

BACKENDS = usable_backends("dgq_matmul", dtype=torch.int8)
SHAPES = [(1, 33, 256), (5, 64, 512), (16, 40, 128), (37, 70, 384), (128, 96, 1024), (3, 1, 128), (1, 1, 256)]


def _w(N, K, seed=0):
    return torch.randn(N, K, generator=torch.Generator().manual_seed(seed)) * 0.02


def _oracle(x_q: torch.Tensor, w: DGQWeight) -> np.ndarray:
    return oracle.int_product(x_q.numpy(), w.qweight.numpy(), w.zeros.numpy(), w.group_scales.numpy(), w.group_size)


def test_format_round_trip_and_guarantee():
    W = _w(48, 384)
    w = dgq_quantize(W)
    w8 = w.int8_weight()
    assert w8.abs().max() <= 127 and (w.group_scales >= 1).all() and (w.zeros <= 15).all()
    q = w.codes().to(torch.int64).view(48, -1, 128)
    span = torch.floor(127 / w.group_scales.to(torch.float64)).to(torch.int64)
    z = w.zeros.to(torch.int64)
    assert ((q >= (z - span).clamp(min=0)[..., None]) & (q <= (z + span).clamp(max=15)[..., None])).all()
    assert torch.equal(w.dequantize(), w8[:, :384].float() * w.channel_scales[:, None])
    assert int(w.weight_sums.sum()) == int(w8.to(torch.int64).sum())
    state = w.state_dict(prefix="l.")
    assert torch.equal(DGQWeight.from_state_dict(state, prefix="l.").dequantize(), w.dequantize())
    with pytest.raises(ValueError, match="lacks"):
        DGQWeight.from_state_dict({k: v for k, v in state.items() if k != "l.zeros"}, prefix="l.")
    assert 4.125 <= w.bits_per_weight <= 4.125 + 64 / 384


@pytest.mark.parametrize("calib", [False, True])
def test_search_never_worse_than_round_to_nearest(calib):
    g = torch.Generator().manual_seed(1)
    W = _w(64, 512, seed=1)
    W[3, :5] *= 30  # an outlier channel makes the channel scale matter
    X = torch.randn(256, 512, generator=g) * torch.linspace(0.1, 3, 512) if calib else None
    h = torch.ones(512) if X is None else X.square().mean(0)
    best, rtn = dgq_quantize(W, calib=X), dgq_quantize(W, calib=X, search="rtn")
    e_best = ((best.dequantize() - W).square() * h).sum(1)
    e_rtn = ((rtn.dequantize() - W).square() * h).sum(1)
    assert (e_best <= e_rtn * (1 + 1e-6) + 1e-12).all()
    assert e_best.sum() < 0.95 * e_rtn.sum()


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("M,N,K", SHAPES)
def test_integer_product_bit_exact(backend, M, N, K):
    w = dgq_quantize(_w(N, K, seed=M), search="rtn")
    x = torch.randint(-127, 128, (M, K), generator=torch.Generator().manual_seed(N), dtype=torch.int8)
    acc = _ops.dgq_matmul(x, w.qweight, w.zeros, w.group_scales, w.weight_sums, w.group_size, None, None,
                          backend=backend)
    assert acc.dtype == torch.int32
    np.testing.assert_array_equal(acc.numpy(), _oracle(x, w))


@pytest.mark.skipif("cpu" not in BACKENDS, reason="_C not built")
@pytest.mark.parametrize("paths", [1, 2, 4, 8, 0])
@pytest.mark.parametrize("M,N,K", [(1, 33, 256), (16, 40, 128), (37, 70, 384), (200, 17, 1152)])
def test_every_cpu_path_bit_exact(paths, M, N, K, monkeypatch):
    w = dgq_quantize(_w(N, K, seed=2), search="rtn")
    x = torch.randint(-127, 128, (M, K), generator=torch.Generator().manual_seed(3), dtype=torch.int8)
    monkeypatch.setenv("LINALG_CORE_DGQ_PATHS", str(paths))
    acc = _ops.dgq_matmul(x, w.qweight, w.zeros, w.group_scales, w.weight_sums, w.group_size, None, None,
                          backend="cpu")
    np.testing.assert_array_equal(acc.numpy(), _oracle(x, w))


def test_qmatmul_float_result_and_odd_k():
    g = torch.Generator().manual_seed(4)
    W, x = _w(24, 200, seed=4), torch.randn(7, 200, generator=g)
    w = dgq_quantize(W, pad=True)  # K = 200 is not a multiple of 128
    x_q, s = quantize_activations(x)
    y = qmatmul(x_q, s, w)
    exact = (x_q.double() * s.double()) @ w.dequantize(torch.float64).T
    torch.testing.assert_close(y.double(), exact, rtol=2e-6, atol=1e-7)
    assert qmatmul(x_q[0], s[0], w).shape == (24,)


def test_activations_and_smoothing():
    g = torch.Generator().manual_seed(5)
    x = torch.randn(64, 256, generator=g)
    for gran in ("tensor", "token"):
        x_q, s = quantize_activations(x, granularity=gran)
        assert x_q.dtype == torch.int8 and x_q.abs().max() == 127
        assert ((x_q.float() * s - x).abs() <= s / 2 * (1 + 1e-6)).all()
    x_c, s_c = quantize_activations(x, clip_percentile=99.0)
    assert (s_c < quantize_activations(x)[1]).all()
    x[:, 9] *= 40
    sm = smooth_outliers(x, fraction=0.01)
    assert 9 in sm.channels.tolist() and sm.factors[9] < 0.1 and (sm.factors <= 1).all()
    W = _w(32, 256)
    torch.testing.assert_close(sm.activations(x) @ sm.weight(W).T, x @ W.T, rtol=1e-4, atol=1e-5)
    ln_w, ln_b = torch.ones(256), torch.zeros(256)
    w2, b2 = sm.fold_into_previous(ln_w, ln_b)
    assert torch.equal(w2, sm.factors) and torch.equal(ln_w, torch.ones(256))


def test_dgq_linear_drop_in():
    torch.manual_seed(0)
    lin = torch.nn.Linear(384, 96)
    q = DGQLinear.from_linear(lin)
    x = torch.randn(2, 5, 384)
    y = q(x)
    assert y.shape == (2, 5, 96) and y.dtype == x.dtype
    assert ((y - lin(x)).norm() / lin(x).norm()) < 0.1  # INT4 weights, INT8 activations
    assert "bits/weight" in repr(q)
    assert torch.equal(q.state_dict()["qweight"], q.weight.qweight)


def test_bad_input():
    w = dgq_quantize(_w(16, 256))
    x_q = torch.zeros(2, 256, dtype=torch.int8)
    with pytest.raises(ValueError, match="group_size=128 does not divide K=200"):
        dgq_quantize(_w(16, 200))
    with pytest.raises(ValueError, match="multiple of 128"):
        dgq_quantize(_w(16, 256), group_size=96)
    with pytest.raises(TypeError, match="int8"):
        qmatmul(x_q.float(), 1.0, w)
    with pytest.raises(ValueError, match="K=256"):
        qmatmul(torch.zeros(2, 128, dtype=torch.int8), 1.0, w)
    with pytest.raises(ValueError, match="x contains -128"):
        qmatmul(torch.full((2, 256), -128, dtype=torch.int8), 1.0, w)
    with pytest.raises(ValueError, match="x_scale has 3"):
        qmatmul(x_q, torch.ones(3), w)
    with pytest.raises(TypeError, match="DGQWeight"):
        qmatmul(x_q, 1.0, _w(16, 256))
    with pytest.raises(ValueError, match="granularity"):
        quantize_activations(torch.ones(2, 2), granularity="channel")
    bad = _w(16, 256)
    bad[0, 0] = float("nan")
    with pytest.raises(ValueError, match="W"):
        dgq_quantize(bad)
    huge = _w(16, 256).sign() * 3.3e38  # finite, but max − min overflows float32 (was a misleading s_int error)
    with pytest.raises(ValueError, match="W's largest"):
        dgq_quantize(huge)


@pytest.mark.gpu
@pytest.mark.parametrize("backend", ["cuda", "triton"])
@pytest.mark.parametrize("M,N,K", [(1, 4096, 4096), (16, 33, 384), (128, 96, 1024)])
def test_gpu_bit_exact(backend, M, N, K):
    w = dgq_quantize(_w(N, K, seed=5), search="rtn")
    x = torch.randint(-127, 128, (M, K), generator=torch.Generator().manual_seed(6), dtype=torch.int8)
    acc = _ops.dgq_matmul(x.cuda(), w.qweight.cuda(), w.zeros.cuda(), w.group_scales.cuda(), w.weight_sums.cuda(),
                          w.group_size, None, None, backend=backend)
    np.testing.assert_array_equal(acc.cpu().numpy(), _oracle(x, w))


@pytest.mark.parametrize("backend", BACKENDS)
def test_float_epilogue_identical_on_every_backend(backend):
    g = torch.Generator().manual_seed(7)
    w = dgq_quantize(_w(40, 384, seed=7), search="rtn")
    x_q, s = quantize_activations(torch.randn(19, 384, generator=g))
    assert torch.equal(qmatmul(x_q, s, w, backend=backend), qmatmul(x_q, s, w, backend="reference"))


@pytest.mark.parametrize("backend", BACKENDS)
def test_minus_128_refused_by_every_backend(backend):
    w = dgq_quantize(_w(8, 256))
    x = torch.zeros(3, 256, dtype=torch.int8)
    x[2, 77] = -128
    with pytest.raises(ValueError, match="x contains -128"):
        qmatmul(x, 1.0, w, backend=backend)


# --- DGQWeight validation (regressions: heap overflows, silently wrong or path-dependent results) --

def _fields(w):
    return dict(qweight=w.qweight, zeros=w.zeros, group_scales=w.group_scales, channel_scales=w.channel_scales,
                weight_sums=w.weight_sums, in_features=w.in_features, group_size=w.group_size)


def _tampered(w):
    """(changes, exception, message) that the constructor and from_state_dict must refuse."""
    N, G = w.zeros.shape
    zeros, gs, big, sums = w.zeros.clone(), w.group_scales.clone(), w.group_scales.clone(), w.weight_sums.clone()
    zeros[1, 1] = 16
    gs[2, 0] = 0
    big[0, 0] = 127  # |s_int·(q − z)| far above 127: VNNI, AVX2 and reference disagreed by thousands
    sums[3] += 1  # changed only the AVX512-VNNI result
    nan = w.channel_scales.clone()
    nan[4] = float("nan")
    return [
        (dict(group_size=2), ValueError, "multiple of 128"),  # overflowed the heap in dgq_matmul
        (dict(group_size=96), ValueError, "multiple of 128"),
        (dict(group_size=256), ValueError, "zeros is"),
        (dict(group_size=True), TypeError, "group_size"),
        (dict(group_size=128.0), TypeError, "group_size"),
        (dict(in_features=1000), ValueError, "shapes disagree"),
        (dict(in_features=100), ValueError, "shapes disagree"),  # more than a group of padding
        (dict(in_features=0), ValueError, "in_features"),
        (dict(qweight=w.qweight[:, :-1]), ValueError, "shapes disagree"),
        (dict(qweight=w.qweight.to(torch.int8)), ValueError, "qweight must be"),
        (dict(qweight=w.qweight[:0]), ValueError, "qweight must be"),
        (dict(zeros=w.zeros[:, :1]), ValueError, "zeros is"),
        (dict(zeros=w.zeros.to(torch.int8)), ValueError, "zeros is"),
        (dict(group_scales=w.group_scales.to(torch.uint8)), ValueError, "group_scales is"),
        (dict(channel_scales=w.channel_scales.double()), ValueError, "channel_scales is"),
        (dict(channel_scales=w.channel_scales[:-1]), ValueError, "channel_scales is"),
        (dict(weight_sums=w.weight_sums.to(torch.int64)), ValueError, "weight_sums is"),
        (dict(zeros=zeros), ValueError, "zeros has 1 zero point"),
        (dict(group_scales=gs), ValueError, "below 1"),
        (dict(group_scales=big), ValueError, r"\|s_int·\(q − z\)\| > 127 in 1 group"),
        (dict(weight_sums=sums), ValueError, "weight_sums disagree with the codes in 1 of"),
        (dict(channel_scales=nan), ValueError, "channel_scales has 1 NaN"),
        (dict(qweight=w.qweight.numpy()), TypeError, "qweight must be a torch.Tensor"),
        (dict(zeros=torch.empty_like(w.zeros, device="meta")), ValueError, "holding data"),
    ]


def test_dgq_weight_validates_every_invariant():
    w = dgq_quantize(_w(16, 256))
    for change, exc, match in _tampered(w):
        with pytest.raises(exc, match=match):
            DGQWeight(**{**_fields(w), **change})
        state = {**w.state_dict(), **{k: v for k, v in change.items() if k not in ('group_size', 'in_features')}}
        if "group_size" in change or "in_features" in change:
            if not isinstance(change.get("group_size", 0), int) or isinstance(change.get("group_size"), bool):
                continue  # the state's int64 [K, group_size] cannot hold them
            state["shape"] = torch.tensor([change.get("in_features", 256), change.get("group_size", 128)])
        with pytest.raises(exc, match=match):
            DGQWeight.from_state_dict(state)
    # weight_sums=None computes them; a valid weight passes unchanged
    assert torch.equal(DGQWeight(**{**_fields(w), "weight_sums": None}).weight_sums, w.weight_sums)
    for bad in (torch.tensor([256.0, 128.0]), torch.tensor([256]), torch.tensor([[256, 128]])):
        with pytest.raises(ValueError, match="int64 tensor"):
            DGQWeight.from_state_dict({**w.state_dict(), "shape": bad})


@pytest.mark.parametrize("backend", BACKENDS)
def test_expanded_and_transposed_tensors_are_copied_not_misread(backend):
    g = torch.Generator().manual_seed(9)
    w = dgq_quantize(_w(24, 384, seed=9))
    N, G = w.zeros.shape
    sc = w.channel_scales[:1]
    odd = dict(qweight=w.qweight.T.contiguous().T, zeros=w.zeros.T.contiguous().T,
               group_scales=w.group_scales.repeat_interleave(2, dim=1)[:, ::2], channel_scales=sc.expand(N),
               weight_sums=torch.stack([w.weight_sums, w.weight_sums], 1)[:, 0])
    plain = {k: v.contiguous() for k, v in odd.items()}
    assert not any(v.is_contiguous() for v in odd.values())
    before = {k: v.clone() for k, v in odd.items()}
    a = DGQWeight(**{**_fields(w), **odd})
    b = DGQWeight(**{**_fields(w), **plain})
    x_q, s = quantize_activations(torch.randn(5, 384, generator=g))
    assert torch.equal(qmatmul(x_q, s, a, backend=backend), qmatmul(x_q, s, b, backend=backend))
    assert all(getattr(a, k).is_contiguous() for k in odd)
    assert all(torch.equal(odd[k], before[k]) for k in before)  # inputs untouched
    # an expanded (stride-0) per-row x_scale is read as M values
    s_exp = s[:1].expand(5, 1)
    assert torch.equal(qmatmul(x_q, s_exp, b, backend=backend), qmatmul(x_q, s_exp.contiguous(), b, backend=backend))


def test_in_place_changes_are_revalidated():
    w = dgq_quantize(_w(16, 256))
    x_q = torch.ones(2, 256, dtype=torch.int8)
    qmatmul(x_q, 1.0, w)
    w.zeros[0, 0] = 200  # after validation
    with pytest.raises(ValueError, match="zeros has 1 zero point"):
        qmatmul(x_q, 1.0, w)
    lin = DGQLinear(dgq_quantize(_w(16, 256)))
    x = torch.randn(3, 256)
    y = lin(x)
    state = lin.state_dict()
    state["group_scales"] = state["group_scales"].clone()
    state["group_scales"][0, 0] = 127
    lin.load_state_dict(state)  # copies into the buffers in place
    with pytest.raises(ValueError, match="> 127"):
        lin(x)
    lin.load_state_dict(DGQLinear(dgq_quantize(_w(16, 256))).state_dict())
    assert torch.equal(lin(x), y)


def test_k_max_is_the_int32_exact_limit():
    from linalg_core.qmatmul import K_MAX

    assert K_MAX % 128 == 0 and 127 * 127 * K_MAX <= 2**31 - 1 < 127 * 127 * (K_MAX + 128)


def _long_k_weight(N=3, extra=256):
    """A weight with K = K_MAX + extra whose integer products exceed int32 for x = ±127."""
    from linalg_core.qmatmul import K_MAX

    K = K_MAX + extra
    g = torch.Generator().manual_seed(10)
    qw = torch.randint(0, 256, (N, K // 2), dtype=torch.uint8, generator=g)
    qw[0] = 0x11  # row 0: q = 1, z = 0, s_int = 127 -> w8 = 127 everywhere
    zeros = torch.randint(4, 12, (N, K // 128), dtype=torch.uint8, generator=g)
    zeros[0] = 0
    gs = torch.ones(N, K // 128, dtype=torch.int8)
    gs[0] = 127
    return DGQWeight(qw, zeros, gs, torch.rand(N, generator=g) + 0.5, None, K, 128)


# Triton is left out: its interpreter takes ~25 s on 133 376-wide rows, and each chunk it would see
# is a product of K ≤ K_MAX that test_integer_product_bit_exact already checks on it.
@pytest.mark.parametrize("backend", [b for b in BACKENDS if b != "triton"])
def test_long_k_is_split_and_exact(backend):
    w = _long_k_weight()
    K = w.in_features
    g = torch.Generator().manual_seed(11)
    x = torch.randint(-127, 128, (4, K), dtype=torch.int8, generator=g)
    x[0] = 127
    exact = _oracle(x, w)  # int64
    assert np.abs(exact).max() > 2**31 - 1  # the int32 accumulation overflowed (CPU and reference disagreed)
    scale = torch.rand(4, 1, generator=g) + 0.5
    y = qmatmul(x, scale, w, backend=backend)
    ref = (torch.from_numpy(exact).to(torch.float32) * scale) * w.channel_scales  # the epilogue, exact integer
    assert torch.equal(y, ref)
    with pytest.raises(ValueError, match="beyond int32"):
        qmatmul(x, None, w, backend=backend)
    small = x[1:].clone()
    small[:, : K // 2] = 0
    np.testing.assert_array_equal(qmatmul(small, None, w, backend=backend).numpy(), _oracle(small, w))
    lin = DGQLinear(w)
    xf = torch.randn(2, K, generator=g)
    x_q, s = quantize_activations(xf)
    assert torch.equal(lin(xf), qmatmul(x_q, s, w))


def test_integer_product_of_a_short_k():
    w = dgq_quantize(_w(8, 256))
    x = torch.randint(-127, 128, (3, 256), dtype=torch.int8, generator=torch.Generator().manual_seed(12))
    y = qmatmul(x, None, w)
    assert y.dtype == torch.int32
    np.testing.assert_array_equal(y.numpy(), _oracle(x, w))
    assert qmatmul(x[:0], 1.0, w).shape == (0, 8)
    with pytest.raises(ValueError, match="on meta"):
        qmatmul(x.to("meta"), 1.0, w)


@pytest.mark.parametrize("group_size", [128, 2176, 2304])  # int16 / int32 code sums per group
def test_recomputed_weight_sums_match_the_oracle(group_size):
    g = torch.Generator().manual_seed(13)
    N, G = 5, 2
    qw = torch.randint(0, 256, (N, G * group_size // 2), dtype=torch.uint8, generator=g)
    qw[0] = 0xFF  # the largest code sums
    zeros = torch.randint(6, 10, (N, G), dtype=torch.uint8, generator=g)
    gs = torch.full((N, G), 14, dtype=torch.int8)
    w = DGQWeight(qw, zeros, gs, torch.ones(N), None, G * group_size, group_size)
    ones = np.ones((1, G * group_size), np.int64)
    np.testing.assert_array_equal(w.weight_sums.numpy(), oracle.int_product(ones, qw.numpy(), zeros.numpy(), gs.numpy(),
                                                                         group_size)[0])


def _misaligned(t: torch.Tensor) -> torch.Tensor:
    """A copy of ``t`` one byte past an aligned address (how a safetensors file may place it)."""
    raw = np.zeros(t.numel() * t.element_size() + 1, np.uint8)
    a = raw[1:].view(t.numpy().dtype).reshape(t.shape)
    a[...] = t.numpy()
    return torch.from_numpy(a)


def test_misaligned_tensors_are_copied():
    w = dgq_quantize(_w(8, 256))
    odd = DGQWeight(w.qweight, w.zeros, w.group_scales, _misaligned(w.channel_scales), _misaligned(w.weight_sums),
                    256, 128)
    x_q, s = quantize_activations(torch.randn(3, 256, generator=torch.Generator().manual_seed(14)))
    assert torch.equal(qmatmul(x_q, _misaligned(s), odd), qmatmul(x_q, s, w))


def test_dgq_quantize_group_size_scalar_convention():
    W = torch.randn(8, 256, generator=torch.Generator().manual_seed(0))
    ref = dgq_quantize(W, group_size=128)
    for g in (np.int64(128), torch.tensor(128)):
        torch.testing.assert_close(dgq_quantize(W, group_size=g).dequantize(), ref.dequantize())
    with pytest.raises(TypeError, match="group_size must be an integer, got bool"):
        dgq_quantize(W, group_size=True)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64])
def test_dgq_linear_forward_is_quantize_then_qmatmul_bit_for_bit(backend, dtype, monkeypatch):
    # DGQLinear's fused op (per-token quantization, integer product, epilogue, bias) computes
    # exactly the composition of the public pieces, on every backend.
    g = torch.Generator().manual_seed(21)
    lin = torch.nn.Linear(200, 24)  # K = 200: padded to 256 inside
    layer = DGQLinear.from_linear(lin)
    x = torch.randn(3, 5, 200, generator=g).to(dtype)
    x_q, s = quantize_activations(x)
    want = (qmatmul(x_q, s, layer.weight) + layer.bias).to(dtype)
    monkeypatch.setenv("LINALG_CORE_BACKEND", backend)
    with torch.no_grad():
        got = layer(x)
    assert got.dtype == dtype and torch.equal(got, want)


def test_cpu_path_names_the_kernel_path(monkeypatch):
    from linalg_core.qmatmul import cpu_path

    assert cpu_path(1) in {"amx", "avx512vnni", "avxvnni", "avx2", "generic"}
    monkeypatch.setenv("LINALG_CORE_DGQ_PATHS", "0")
    assert cpu_path(64) == "generic"


# ================================================== the fused CPU kernel (_C.cpu_dgq_linear)
# Per-row activation quantization, the integer product and the float32 epilogue in one call, bit
# for bit equal to quantize_activations(x) (per token), the int64 oracle of the integer product,
# and (float32(acc)·s_m)·s_c[n] + bias[n] computed in torch, on every CPU path this machine has.

needs_fused = pytest.mark.skipif(_C is None or not hasattr(_C, "cpu_dgq_linear"), reason="_C not built")

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
    acc = oracle.int_product(x_q.numpy(), w.qweight.numpy(), w.zeros.numpy(), w.group_scales.numpy(), w.group_size)
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
FUSED_SHAPES = [(1, 33, 256, 128), (1, 384, 384, 128), (1, 7, 1024, 256), (16, 40, 512, 256), (33, 70, 384, 128),
          (5, 9, 1024, 128), (2, 1, 128, 128), (17, 4, 640, 128), (1, 1030, 1024, 256), (27, 131, 384, 128),
          (600, 3, 640, 128)]


@needs_fused
@pytest.mark.parametrize("allowed", MASKS)
@pytest.mark.parametrize("M,N,K,group", FUSED_SHAPES)
def test_fused_bit_exact_against_quantize_activations_and_the_oracle(M, N, K, group, allowed):
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


@needs_fused
def test_fused_matches_dgq_linear_module():
    torch.manual_seed(3)
    lin = torch.nn.Linear(384, 96)
    q = DGQLinear.from_linear(lin, search="rtn")
    w = q.weight
    x = torch.randn(5, 384)
    y, _ = _linear(x, w, q.bias, 15)
    with torch.no_grad():
        assert torch.equal(y, q(x))


@needs_fused
def test_fused_rounding_ties_and_extremes():
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


@needs_fused
@pytest.mark.parametrize("dt", list(DT))
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_fused_non_finite_x_is_refused_and_nothing_is_written(dt, bad):
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


@needs_fused
def test_fused_empty_calls():
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


@needs_fused
@pytest.mark.parametrize("allowed", [8, 0, 15])
def test_fused_k_at_the_int32_limit_and_beyond(allowed):
    K, N, group = _C.DGQ_MAX_K, 2, 128
    qweight, zeros, scales, sums, sign = _extreme_weight(N, K, group)
    x = sign[0].to(torch.float32)[None] * 0.5  # x_q = 127·sign of channel 0: acc[0] = 127²·K
    sc = torch.tensor([1.0, 0.5])
    y = torch.empty(1, N)
    args = (_b(qweight), _b(zeros), _b(scales), _b(sums), _b(sc), None, _b(y))
    _C.cpu_dgq_linear(_b(x), 0, *args, 1, N, K, group, allowed)
    x_q, s = quantize_activations(x)
    acc = oracle.int_product(x_q.numpy(), qweight.numpy(), zeros.numpy(), scales.numpy(), group)
    assert int(acc[0, 0]) == 127 * 127 * K < 2**31
    expected = torch.from_numpy(acc).to(torch.int32).to(torch.float32) * s * sc
    assert torch.equal(y, expected)
    big = K + group
    xb = torch.zeros(1, big)
    with pytest.raises(ValueError, match=f"K={big} is out of range"):
        _C.cpu_dgq_linear(_b(xb), 0, *args, 1, N, big, group, allowed)


@needs_fused
def test_fused_argument_checks():
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


def test_from_linear_takes_a_dgq_config():
    from linalg_core.qmatmul import DGQConfig, DGQLinear

    torch.manual_seed(0)
    lin = torch.nn.Linear(256, 64)
    a = DGQLinear.from_linear(lin, DGQConfig(group_size=128, pad=True, granularity="tensor"))
    b = DGQLinear.from_linear(lin, group_size=128, pad=True, granularity="tensor")
    assert a.granularity == "tensor"
    for name, t in b.state_dict().items():
        assert torch.equal(a.state_dict()[name], t), name
    x = torch.randn(3, 256)
    assert torch.equal(a(x), b(x))
    with pytest.raises(TypeError, match="DGQConfig"):
        DGQLinear.from_linear(lin, "dgq")
    with pytest.raises(TypeError, match="not as keywords"):
        DGQLinear.from_linear(lin, DGQConfig(), group_size=256)
