"""The GGUF codec kernels (ops ``gguf_quantize``, ``gguf_dequantize``, ``gguf_dequantize_into`` of
the quant family) and ``GGUF("q4_0" / "q8_0")`` built on them.

* every usable backend byte for byte against the NumPy oracle (tests/oracles/quant.py: llama.cpp's
  reference in float32 steps) and the ``gguf`` package (``gguf.quants.quantize`` / ``dequantize``)
  on random weights, edge blocks (zeros and −0, ±m ties in either order, exact halves, d that
  underflows or is subnormal in fp16, the largest finite values) and MiniLM-L6's real weights;
  float16 / bfloat16 input is gguf's quantization of its float32 value;
* dequantization exact (float64 oracle), to float32 / float16 / bfloat16, into ``out=``, of
  ranges that end inside a block;
* bad input: NaN / Inf and fp16 overflow raise the formats' ValueError, the ops and bindings
  check every argument (fuzzed like tests/test_bindings.py, so ``make test-asan`` covers them).
"""

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from linalg_core import _ops
from linalg_core._ext import _C
from linalg_core.quant import GGUF, quantize
from linalg_core.testing.backends import usable_backends
from tests.oracles import quant as oracle
from tests.test_bindings import Buffers, call, dtype_code, fuzz, wild

BITS = {"q4_0": 4, "q8_0": 8}
_F16_TINY = float(torch.finfo(torch.float16).tiny)


def _gguf(kind):
    gguf = pytest.importorskip("gguf")
    return gguf, getattr(gguf.GGMLQuantizationType, kind.upper())


def _random(shape, seed=0, scale=0.02):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g) * scale


def _edge_blocks() -> torch.Tensor:
    """(16, 32) float32 blocks where the rules matter."""
    rows = [torch.zeros(32), -torch.zeros(32)]  # d = ∓0: the sign of the first zero
    r = torch.zeros(32)
    r[1] = -0.0
    rows.append(r)
    t = torch.linspace(-1, 1, 32)
    t[3], t[20] = 2.0, -2.0  # +m first: d = 2/−8
    rows.append(t)
    t = t.clone()
    t[3], t[20] = -2.0, 2.0  # −m first
    rows.append(t)
    rows.append(torch.arange(32) * 0.25 - 4)  # exact halves of x/d
    rows.append(-(torch.arange(32) * 0.25 - 4))
    rows.append(torch.full((32,), 3.0))  # every element the max: q4 codes 0
    rows.append(torch.full((32,), -3.0))
    rows.append(torch.linspace(-1, 1, 32) * 1e-41)  # subnormal float32: d underflows fp16, id = ±Inf
    rows.append(torch.linspace(-1, 1, 32) * 3e-38)  # d subnormal in float32
    rows.append(torch.linspace(-1, 1, 32) * 5e-6)  # d subnormal in fp16 (a few bits kept)
    rows.append(torch.linspace(-1, 1, 32) * 65504 * 7.99)  # q4_0's largest d below fp16 overflow
    rows.append(torch.linspace(-1, 1, 32) * 65504 * 126.9)  # q8_0's, and q4_0 d = Inf
    rows.append(torch.tensor([1.0, -1.0] * 16) * 0.37)
    rows.append(torch.tensor([float(i % 7) - 3 for i in range(32)]) / 3)
    return torch.stack(rows)


def _check_quantize(x, kind, backend):
    """The op's blocks against the oracle and gguf, and its counts."""
    bits = BITS[kind]
    blocks, bad, special = _ops.gguf_quantize(x.reshape(-1).contiguous(), bits, backend=backend)
    ref = oracle.gguf_quantize(x.float().numpy(), bits)
    got = blocks.cpu().numpy()
    assert got.shape == ref.shape and np.array_equal(got, ref), np.argwhere(got != ref)[:5]
    gguf, qtype = _gguf(kind)
    assert np.array_equal(got.reshape(-1), gguf.quants.quantize(x.float().numpy().reshape(-1, 32), qtype).reshape(-1))
    d = torch.from_numpy(ref[:, :2].copy()).view(torch.float16).float().abs()
    assert int(bad) == int((~torch.isfinite(x)).sum())
    assert int(special) == int(((d < _F16_TINY) | ~torch.isfinite(d)).sum())
    return blocks


@pytest.mark.parametrize("backend", usable_backends("gguf_quantize"))
@pytest.mark.parametrize("kind", ["q4_0", "q8_0"])
def test_quantize_bytes_random_and_edges(kind, backend):
    _check_quantize(_random((48, 256)), kind, backend)
    _check_quantize(_random((3, 32), seed=1, scale=30.0), kind, backend)
    with np.errstate(all="ignore"):
        _check_quantize(_edge_blocks(), kind, backend)


@pytest.mark.parametrize("backend", usable_backends("gguf_quantize", dtype=torch.float16))
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("kind", ["q4_0", "q8_0"])
def test_quantize_16_bit_input_is_its_float32_value(kind, dtype, backend):
    x = (_random((8, 128), seed=2) * 50).to(dtype)
    blocks = _check_quantize(x, kind, backend)
    assert torch.equal(blocks, _ops.gguf_quantize(x.float().reshape(-1), BITS[kind], backend=backend)[0])


@pytest.mark.parametrize("backend", usable_backends("gguf_dequantize"))
@pytest.mark.parametrize("kind", ["q4_0", "q8_0"])
def test_dequantize_exact_every_dtype_into_out_and_partial(kind, backend):
    bits = BITS[kind]
    x = torch.cat([_random((16, 64)).reshape(-1, 32), _edge_blocks()[:9]])
    blocks = torch.from_numpy(oracle.gguf_quantize(x.numpy(), bits))
    exact = torch.from_numpy(oracle.gguf_dequantize(blocks.numpy(), bits, x.numel()))
    gguf, qtype = _gguf(kind)
    assert np.array_equal(exact.float().numpy(), gguf.quants.dequantize(blocks.numpy(), qtype).reshape(-1))
    for dtype in (torch.float32, torch.float16, torch.bfloat16):
        for n in (x.numel(), x.numel() - 5, 7):
            want = exact[:n].to(dtype)
            got = _ops.gguf_dequantize(blocks, bits, n, dtype, backend=backend)
            assert got.dtype == dtype and torch.equal(got.view(torch.int16 if dtype != torch.float32 else torch.int32),
                                                      want.view(torch.int16 if dtype != torch.float32 else torch.int32))
            out = torch.full((n,), 7.0, dtype=dtype)
            _ops.gguf_dequantize_into(blocks, bits, n, out, backend=backend)
            assert torch.equal(out, want)


@pytest.mark.parametrize("kind", ["q4_0", "q8_0"])
def test_minilm_weights_byte_for_byte(kind):
    models = pytest.importorskip("linalg_core.testing.models")
    gguf, qtype = _gguf(kind)
    try:
        weights = models.minilm_weights(layers=[0, 5])
    except FileNotFoundError as e:
        pytest.skip(str(e))
    for name, w in weights.items():
        Q = quantize(w, kind)
        ref = gguf.quants.quantize(w.numpy(), qtype)
        assert np.array_equal(Q.data["blocks"].numpy().reshape(ref.shape), ref), name
        assert np.array_equal(Q.dequantize().numpy(), gguf.quants.dequantize(ref, qtype)), name


@pytest.mark.parametrize("kind", ["q4_0", "q8_0"])
def test_format_paths_and_errors(kind):
    fmt = GGUF(kind)
    W = _random((8, 96), seed=4)
    Q = quantize(W, fmt)
    full = Q.dequantize(torch.float64)
    assert full.dtype == torch.float64
    assert torch.equal(full, torch.from_numpy(oracle.gguf_dequantize(Q.data["blocks"].numpy(), BITS[kind],
                                                                     W.numel())).reshape(8, 96))
    out = torch.empty(8, 96, dtype=torch.bfloat16)
    assert Q.dequantize(out=out) is out and torch.equal(out, full.to(torch.bfloat16))
    part = fmt.dequantize(Q.data, W.numel(), 32, 100, torch.float16)
    assert torch.equal(part, full.reshape(-1)[32:100].half())
    assert torch.equal(quantize(W.double(), fmt).data["blocks"], Q.data["blocks"])  # float64: its float32 value
    for bad in (float("nan"), float("inf")):
        V = W.clone()
        V[3, 5] = bad
        with pytest.raises(ValueError, match="1 non-finite value"):
            quantize(V, fmt)
    with pytest.raises(ValueError, match="beyond float32's range"):
        quantize(torch.full((2, 32), 1e300, dtype=torch.float64), fmt)
    with pytest.raises(ValueError, match="overflow fp16"):
        quantize(W * 1e9, fmt)
    with pytest.warns(UserWarning, match="1 of 24 nonzero blocks"):
        V = W.clone()
        V[0, :32] *= 1e-9
        quantize(V, fmt)


def test_op_arguments_are_checked():
    x = torch.randn(64)
    with pytest.raises(ValueError, match="n=48 is not a multiple of 32"):
        _C.cpu_gguf_quantize((x.data_ptr(), 192, -1), 0, 48, 4, (torch.empty(36, dtype=torch.uint8).data_ptr(), 36, -1))
    blocks = torch.empty(2, 18, dtype=torch.uint8)
    with pytest.raises(ValueError, match="bits=5 is not 4"):
        _C.cpu_gguf_quantize((x.data_ptr(), 256, -1), 0, 64, 5, (blocks.data_ptr(), 36, -1))
    with pytest.raises(ValueError, match="dt=float64 is not supported"):
        _C.cpu_gguf_quantize((x.data_ptr(), 256, -1), 1, 32, 4, (blocks.data_ptr(), 36, -1))
    with pytest.raises(ValueError, match="blocks holds 36 bytes, the arguments need 68"):
        _C.cpu_gguf_quantize((x.data_ptr(), 256, -1), 0, 64, 8, (blocks.data_ptr(), 36, -1))
    with pytest.raises(ValueError, match="blocks overlaps x"):
        _C.cpu_gguf_quantize((x.data_ptr(), 256, -1), 0, 64, 4, (x.data_ptr() + 4, 36, -1))
    with pytest.raises(ValueError, match="out holds 128 bytes, the arguments need 256"):
        _C.cpu_gguf_dequantize((blocks.data_ptr(), 36, -1), 4, 64, (x.data_ptr(), 128, -1), 0)
    with pytest.raises(ValueError, match="blocks holds 36 bytes, the arguments need 54"):
        _C.cpu_gguf_dequantize((blocks.data_ptr(), 36, -1), 4, 65, (x.data_ptr(), 256, -1), 2)
    with pytest.raises(ValueError, match="out_dt=float64 is not supported"):
        _C.cpu_gguf_dequantize((blocks.data_ptr(), 36, -1), 4, 32, (x.data_ptr(), 256, -1), 1)
    with pytest.raises(ValueError, match="n=-1 is out of range"):
        _C.cpu_gguf_dequantize((blocks.data_ptr(), 36, -1), 8, -1, (x.data_ptr(), 256, -1), 0)


@fuzz
@given(st.data())
def test_bindings_fuzzed(data):
    d = data.draw
    buf = Buffers(d)
    dt, bits = d(dtype_code), d(st.sampled_from([4, 4, 8, 8, -1, 0, 5, 32, 2**31 - 1]))
    n = d(st.one_of(st.sampled_from([0, 32, 64, 96, 320]), st.integers(0, 300), wild))
    nc = max(0, min(n, 1 << 16))
    per = 18 if bits == 4 else 34
    x = buf(nc * (4 if dt in (0, 99) else 2), fill=d(st.sampled_from(["random", "zeros"])))
    blocks = buf(-(-nc // 32) * per)
    call(_C.cpu_gguf_quantize, x, dt, n, bits, blocks)
    call(_C.cpu_gguf_dequantize, blocks, bits, n, buf(nc * 4), d(dtype_code))


@pytest.mark.gpu
@pytest.mark.parametrize("kind", ["q4_0", "q8_0"])
def test_cuda_and_triton_on_the_gpu(kind):
    bits = BITS[kind]
    x = torch.cat([_random((64, 256)).reshape(-1, 32), _edge_blocks()])
    with np.errstate(all="ignore"):
        ref = oracle.gguf_quantize(x.numpy(), bits)
    exact = torch.from_numpy(oracle.gguf_dequantize(ref, bits, x.numel()))
    for backend in usable_backends("gguf_quantize", device="cuda"):
        for dtype in (torch.float32, torch.float16, torch.bfloat16):
            xd = x.to(dtype)
            with np.errstate(all="ignore"):
                want = oracle.gguf_quantize(xd.float().numpy(), bits)
            blocks, bad, special = _ops.gguf_quantize(xd.reshape(-1).cuda(), bits, backend=backend)
            assert np.array_equal(blocks.cpu().numpy(), want), (backend, dtype)
            assert int(bad) == 0 and int(special) == int(_ops.gguf_quantize(xd.reshape(-1), bits)[2])
        blocks = torch.from_numpy(ref).cuda()
        for dtype in (torch.float32, torch.float16, torch.bfloat16):
            for n in (x.numel(), x.numel() - 3):
                got = _ops.gguf_dequantize(blocks, bits, n, dtype, backend=backend)
                assert torch.equal(got.cpu(), exact[:n].to(dtype)), (backend, dtype, n)
                out = torch.empty(n, dtype=dtype, device="cuda")
                _ops.gguf_dequantize_into(blocks, bits, n, out, backend=backend)
                assert torch.equal(out.cpu(), exact[:n].to(dtype))
        V = x.reshape(-1).clone().cuda()
        V[7] = float("nan")
        assert int(_ops.gguf_quantize(V, bits, backend=backend)[1]) == 1
