"""Quantization formats: oracles, bit-exactness with bitsandbytes and gguf, storage accounting,
round trips, the matrix-free products, bad input."""

import numpy as np
import pytest
import torch

import linalg_core
from linalg_core.quant import (
    GGUF,
    BnbNF4,
    IntGroup,
    NormalFloat,
    QuantizedTensor,
    codebooks,
    quantize,
)
from tests.oracles import quant_formats as oracle


def _w(shape, seed=0, dtype=torch.float32, scale=0.02):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(shape, generator=g, dtype=torch.float64) * scale).to(dtype)


@pytest.mark.parametrize("bits", [2, 3, 4, 8])
def test_normal_float_tables_match_definition(bits):
    lv = codebooks.normal_float(bits)
    assert lv.numel() == 2**bits and lv[0] == -1 and lv[-1] == 1 and (lv == 0).sum() == 1
    np.testing.assert_allclose(lv.numpy(), oracle.normal_float(bits), rtol=0, atol=2e-7)


@pytest.mark.parametrize("bits", [2, 3, 4, 8])
def test_nf_codes_are_nearest_levels(bits):
    W = _w((96, 200), seed=bits)
    Q = quantize(W, NormalFloat(bits=bits, block_size=64, scale_bits=None))
    ref, _ = oracle.nf_absmax(W.numpy(), bits, 64)
    got = Q.dequantize().numpy().reshape(-1)
    # float32 rounding of x·(1/s) may flip a code only for values within 1e-6 of a midpoint
    xb = oracle.blocks(W.numpy(), 64)
    v = (xb / np.abs(xb).max(1, keepdims=True)).reshape(-1)[: W.numel()]
    mids = (oracle.normal_float(bits)[1:] + oracle.normal_float(bits)[:-1]) / 2
    near_tie = np.abs(v[:, None] - mids).min(1) < 1e-6
    bad = ~np.isclose(got, ref, rtol=0, atol=1e-6 * np.abs(W.numpy()).max())  # the tables agree to ~1e-7
    assert not (bad & ~near_tie).any()


@pytest.mark.parametrize("bits,b0,B1,sdt", [(4, 8, 256, "fp32"), (3, 4, 16, "bf16"), (2, 2, 64, "fp16"),
                                            (8, 3, 16, "fp32")])
def test_nf_double_quantized_scales(bits, b0, B1, sdt):
    W = _w((128, 384), seed=1)
    fmt = NormalFloat(bits=bits, block_size=32, scale_bits=b0, scale_block_size=B1, scale_dtype=sdt)
    Q = quantize(W, fmt)
    scales, _ = Q._block_params()
    absmax = W.reshape(-1, 32).abs().amax(1)
    smax = Q.data["scale_max"].float()
    step = smax.repeat_interleave(B1)[: absmax.numel()] / (2**b0 - 1)
    # the stored scales are absmax rounded to the b0-bit grid (plus the max's own rounding)
    tol = step / 2 * (1 + 1e-5) + (absmax - absmax.min()) * (2.0**-7 if sdt != "fp32" else 1e-6)
    assert ((scales - absmax).abs() <= tol + 1e-9).all()
    # the codes are the nearest levels for the stored scales
    lv = codebooks.normal_float(bits).double()
    v = (W.reshape(-1, 32).double() / scales.double()[:, None]).reshape(-1)
    expect = lv[torch.as_tensor(oracle.nearest(v.numpy(), lv.numpy()))] * scales.double().repeat_interleave(32)
    got = Q.dequantize(torch.float64).reshape(-1)
    mids = (lv[1:] + lv[:-1]) / 2
    near_tie = (v[:, None] - mids).abs().min(1).values < 1e-5
    assert (((got - expect).abs() <= 1e-6 * scales.double().repeat_interleave(32)) | near_tie).all()


@pytest.mark.parametrize("fmt", [NormalFloat(), NormalFloat(bits=3, scale_bits=None, scale_dtype="bf16"),
                                 NormalFloat(bits=2, block_size=16, scale_bits=4, scale_block_size=16),
                                 BnbNF4(), BnbNF4(double_quant=False), IntGroup(), IntGroup(symmetric=False),
                                 IntGroup(bits=8, group_size=32, scale_dtype="fp32"), GGUF("q4_0"), GGUF("q8_0")],
                         ids=str)
def test_storage_accounting(fmt):
    W = _w((256, 1024))
    Q = quantize(W, fmt)
    assert {k: (tuple(v.shape), v.dtype) for k, v in Q.data.items()} == fmt.layout(W.numel())
    odd = quantize(_w((33, 96)), fmt)
    assert {k: (tuple(v.shape), v.dtype) for k, v in odd.data.items()} == fmt.layout(33 * 96)
    assert Q.nbytes == sum(t.numel() * t.element_size() for t in Q.data.values())
    # the stored bits per weight exceed the nominal formula by at most the global offsets
    assert fmt.nominal_bits() <= Q.bits_per_param <= fmt.nominal_bits() + 64 / W.numel()


def test_nominal_bits_match_lq_lora_formula():
    assert NormalFloat(bits=3, block_size=64, scale_bits=8, scale_block_size=256, scale_dtype="fp32").nominal_bits() \
        == 3 + 8 / 64 + 32 / (64 * 256)
    assert BnbNF4().nominal_bits() == pytest.approx(4.127, abs=1e-3)
    assert GGUF("q4_0").nominal_bits() == 4.5 and GGUF("q8_0").nominal_bits() == 8.5


@pytest.mark.parametrize("bits", [2, 3, 4, 8])
def test_int_symmetric_matches_oracle(bits):
    W = _w((64, 256), seed=bits)
    Q = quantize(W, IntGroup(bits=bits, group_size=64))
    ref = oracle.int_symmetric(W.numpy(), bits, 64)
    got = Q.dequantize().double().numpy().reshape(-1)
    s = np.abs(oracle.blocks(W.numpy(), 64)).max(1).repeat(64) / (2 ** (bits - 1) - 1)
    bad = ~np.isclose(got, ref, rtol=1e-6, atol=1e-9)
    assert bad.mean() < 1e-3  # only float32-vs-float64 midpoint flips
    assert (np.abs(got - W.numpy().reshape(-1)) <= s * 0.5 * 1.01 + 1e-7).all()


def test_int_asymmetric_error_bound_and_constant_groups():
    W = _w((32, 256), seed=3) + 0.05  # off-centre groups
    W[0, :128] = 0.7  # constant groups and zeros are exact
    W[1, :128] = -0.3
    W[2, 5] = 0.0
    Q = quantize(W, IntGroup(symmetric=False, group_size=128, scale_dtype="fp32"))
    D = Q.dequantize()
    torch.testing.assert_close(D[:2, :128], W[:2, :128], rtol=1e-6, atol=0)
    assert D[2, 5] == 0
    Wb = W.reshape(-1, 128)
    span = (Wb.amax(1).clamp(min=0) - Wb.amin(1).clamp(max=0)).repeat_interleave(128).reshape(W.shape)
    # the integer zero point moves the grid by up to s/2, so the end values may be off by up to s
    assert ((D - W).abs() <= span / 15 * 1.001 + 1e-6).all()
    assert (D - W).abs().mean() < (span / 15).mean() / 3


# --- bitsandbytes, bit for bit -----------------------------------------------------------------

@pytest.mark.parametrize("shape", [(384, 1536), (1000, 37), (3, 5), (7,)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("double_quant", [True, False])
def test_bnb_nf4_bit_exact(shape, dtype, double_quant):
    F = pytest.importorskip("bitsandbytes.functional")
    W = _w(shape, seed=len(shape), dtype=dtype)
    q, st = F.quantize_4bit(W, quant_type="nf4", blocksize=64, compress_statistics=double_quant)
    Q = quantize(W, BnbNF4(double_quant=double_quant))
    assert torch.equal(Q.data["codes"], q.view(-1))
    assert torch.equal(Q.data["absmax"], st.absmax)
    if double_quant:
        assert torch.equal(Q.data["absmax2"], st.state2.absmax) and torch.equal(Q.data["offset"][0], st.offset)
    D = Q.dequantize()
    assert D.dtype == dtype and torch.equal(D, F.dequantize_4bit(q, st))
    q2, st2 = Q.to_bitsandbytes()
    assert torch.equal(F.dequantize_4bit(q2, st2), D)


@pytest.mark.parametrize("blocksize", [32, 128, 256])
def test_bnb_nf4_other_blocksizes(blocksize):
    F = pytest.importorskip("bitsandbytes.functional")
    W = _w((128, 512), seed=blocksize)
    q, st = F.quantize_4bit(W, quant_type="nf4", blocksize=blocksize, compress_statistics=True)
    Q = quantize(W, BnbNF4(blocksize=blocksize))
    assert torch.equal(Q.data["codes"], q.view(-1)) and torch.equal(Q.data["absmax"], st.absmax)


def test_bnb_tables():
    F = pytest.importorskip("bitsandbytes.functional")
    assert torch.equal(codebooks.normal_float(4), F.get_4bit_type("nf4", device="cpu"))
    assert torch.equal(codebooks.dynamic_map(), F.create_dynamic_map(signed=True))


# --- gguf, byte for byte -------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["q4_0", "q8_0"])
def test_gguf_byte_exact(kind):
    gguf = pytest.importorskip("gguf")
    qtype = getattr(gguf.GGMLQuantizationType, kind.upper())
    rng = np.random.default_rng(0)
    W = rng.standard_normal((48, 256)).astype(np.float32)
    W[0, :32] = 0  # an all-zero block
    W[1, :32] = np.arange(32) * 0.25 - 4  # exact halves: the rounding rules matter
    W[2, :32] = -W[1, :32]
    ref = gguf.quants.quantize(W, qtype)
    Q = quantize(torch.from_numpy(W), kind)
    assert np.array_equal(Q.data["blocks"].numpy().reshape(ref.shape), ref)
    assert np.array_equal(Q.dequantize().numpy(), gguf.quants.dequantize(ref, qtype))


# --- round trips ---------------------------------------------------------------------------------

@pytest.mark.parametrize("fmt", ["nf3", "bnb-nf4", "int4-asym", "q4_0"])
def test_state_dict_round_trip_through_safetensors(fmt, tmp_path):
    W = _w((64, 128), dtype=torch.bfloat16)
    Q = quantize(W, fmt)
    path = tmp_path / "q.safetensors"
    Q.save(path)
    R = QuantizedTensor.load(path)
    assert R.format == Q.format and R.shape == Q.shape and R.orig_dtype == torch.bfloat16
    assert torch.equal(R.dequantize(), Q.dequantize())
    state = Q.state_dict(prefix="layer.")
    assert all(k.startswith("layer.") for k in state)
    assert torch.equal(QuantizedTensor.from_state_dict(state, prefix="layer.").dequantize(), Q.dequantize())


def test_corrupt_state_is_refused():
    Q = quantize(_w((64, 128)), "nf4")
    state = Q.state_dict()
    with pytest.raises(ValueError, match="__format__"):
        QuantizedTensor.from_state_dict({k: v for k, v in state.items() if k != "__format__"})
    broken = dict(state, codes=state["codes"][:-1])
    with pytest.raises(ValueError, match="corrupt QuantizedTensor state: 'codes'"):
        QuantizedTensor.from_state_dict(broken)
    with pytest.raises(ValueError, match="corrupt"):
        QuantizedTensor.from_state_dict(dict(state, __format__=torch.tensor([123, 34], dtype=torch.uint8)))


# --- the operator -------------------------------------------------------------------------------

@pytest.mark.parametrize("shape,fmt", [((300, 72), "nf4"), ((64, 1536), "q4_0"), ((130, 200), "int4-asym"),
                                       ((33, 64), "bnb-nf4")])
def test_matrix_free_products(shape, fmt):
    W = _w(shape, seed=7)
    Q = quantize(W, fmt)
    D = Q.dequantize(torch.float64)
    X = torch.randn(shape[1], 5, dtype=torch.float64)
    Y = torch.randn(shape[0], 3, dtype=torch.float64)
    torch.testing.assert_close(Q.matmul(X).double(), D @ X, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(Q.rmatmul(Y).double(), D.T @ Y, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(float(Q.fro_norm_sq()), float(D.square().sum()), rtol=1e-5, atol=0)


def test_rsvd_runs_on_a_quantized_weight():
    from linalg_core.testing.matrices import spectrum, with_spectrum

    W = with_spectrum(256, 192, spectrum("exponential", 192, decay=0.9), seed=2, dtype=torch.float32)
    Q = quantize(W, "nf4")
    got = linalg_core.rsvd(Q, 8, seed=0)
    ref = torch.linalg.svdvals(Q.dequantize(torch.float64))[:8]
    torch.testing.assert_close(got.S.double(), ref, rtol=1e-4, atol=1e-6)


# --- bad input ----------------------------------------------------------------------------------

def test_bad_input():
    W = _w((64, 64))
    bad = W.clone()
    bad[3, 4] = float("nan")
    with pytest.raises(ValueError, match="W has 1 non-finite"):
        quantize(bad, "nf4")
    with pytest.raises(ValueError, match="format must be"):
        quantize(W, "nf5")
    with pytest.raises(ValueError, match="bits must be one of"):
        NormalFloat(bits=5)
    with pytest.raises(ValueError, match="block_size must be a positive multiple of 8"):
        NormalFloat(block_size=12)
    with pytest.raises(ValueError, match="multiple of 32"):
        quantize(torch.zeros(4, 48), "q4_0")
    with pytest.raises(ValueError, match="empty"):
        quantize(torch.zeros(0, 8), "nf4")
    with pytest.raises(TypeError):
        quantize(torch.zeros(8, 8, dtype=torch.int32), "nf4")
    with pytest.raises(ValueError, match="to_bitsandbytes needs a BnbNF4"):
        quantize(W, "nf4").to_bitsandbytes()


def test_input_not_mutated():
    W = _w((64, 128))
    before = W.clone()
    for fmt in ("nf4", "bnb-nf4", "int4-asym", "q8_0"):
        quantize(W, fmt)
    assert torch.equal(W, before)


@pytest.mark.parametrize("fmt", ["nf3", "bnb-nf4", "q8_0"])
def test_dequantize_into_out(fmt):
    Q = quantize(_w((64, 96)), fmt)
    buf = torch.full((64, 96), float("nan"))
    got = Q.dequantize(out=buf)
    assert got.data_ptr() == buf.data_ptr() and torch.equal(buf, Q.dequantize())
    with pytest.raises(ValueError, match="got shape"):
        Q.dequantize(out=torch.empty(64, 95))
    with pytest.raises(ValueError, match="not contiguous"):
        Q.dequantize(out=torch.empty(96, 64).T)


@pytest.mark.parametrize("backend", ["cpu", "reference"])
def test_dequantize_keeps_the_sign_of_zero(backend):
    from linalg_core.quant import blockwise

    lv = codebooks.normal_float(4)
    codes = torch.tensor([0x07, 0x00], dtype=torch.uint8)  # levels 0 and -1 (and 0, 0)
    out = blockwise.dequantize(codes, lv, torch.zeros(1), None, 4, 8, torch.float32, backend=backend)
    ref = lv[[0, 7, 0, 0]] * 0.0  # -1 * 0 = -0.0
    assert torch.equal(out.view(torch.int32), ref.view(torch.int32))
