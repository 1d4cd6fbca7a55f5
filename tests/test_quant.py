"""The quant family: the blockwise kernels (ops ``block_quantize``, ``block_dequantize``,
``block_dequantize_into``) and the quantization formats built on them.

* formats: oracles, bit-exactness with bitsandbytes and gguf, storage accounting, round trips,
  the matrix-free products, bad input;
* kernels: every backend against the float64 NumPy oracle of ``tests/oracles/quant.py`` (nearest
  level, ties down, MSB-first packing, float32 level·s + o) on random inputs where ties have
  probability zero: only elements within float32 rounding of a midpoint may take either code;
  every backend bit-identical to the torch reference (codes, scales, dequantized bits), for every
  bits / input dtype / output dtype, absmax or given scales, with or without offsets; the count of
  non-finite inputs, which must not disturb the other blocks. Triton runs on CPU tensors under its
  interpreter (tests/conftest.py sets TRITON_INTERPRET=1); the ``gpu`` tests run the ``cuda`` and
  ``triton`` backends on CUDA tensors.
"""

import dataclasses
import json
import math
import warnings

import numpy as np
import pytest
import torch

import linalg_core
from linalg_core import _ops
from linalg_core.quant import (
    GGUF,
    BnbNF4,
    IntGroup,
    NormalFloat,
    QuantizedTensor,
    blockwise,
    codebooks,
    parse,
    quantize,
)
from linalg_core.testing.backends import usable_backends
from tests.oracles import quant as oracle
from tests.oracles import quant_formats as formats


def _w(shape, seed=0, dtype=torch.float32, scale=0.02):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(shape, generator=g, dtype=torch.float64) * scale).to(dtype)


@pytest.mark.parametrize("bits", [2, 3, 4, 8])
def test_normal_float_tables_match_definition(bits):
    lv = codebooks.normal_float(bits)
    assert lv.numel() == 2**bits and lv[0] == -1 and lv[-1] == 1 and (lv == 0).sum() == 1
    np.testing.assert_allclose(lv.numpy(), formats.normal_float(bits), rtol=0, atol=2e-7)


@pytest.mark.parametrize("bits", [2, 3, 4, 8])
def test_nf_codes_are_nearest_levels(bits):
    W = _w((96, 200), seed=bits)
    Q = quantize(W, NormalFloat(bits=bits, block_size=64, scale_bits=None))
    ref, _ = formats.nf_absmax(W.numpy(), bits, 64)
    got = Q.dequantize().numpy().reshape(-1)
    # float32 rounding of x·(1/s) may flip a code only for values within 1e-6 of a midpoint
    xb = formats.blocks(W.numpy(), 64)
    v = (xb / np.abs(xb).max(1, keepdims=True)).reshape(-1)[: W.numel()]
    mids = (formats.normal_float(bits)[1:] + formats.normal_float(bits)[:-1]) / 2
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
    expect = lv[torch.as_tensor(formats.nearest(v.numpy(), lv.numpy()))] * scales.double().repeat_interleave(32)
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
    ref = formats.int_symmetric(W.numpy(), bits, 64)
    got = Q.dequantize().double().numpy().reshape(-1)
    s = np.abs(formats.blocks(W.numpy(), 64)).max(1).repeat(64) / (2 ** (bits - 1) - 1)
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
    g = torch.Generator().manual_seed(8)  # not the global RNG: the float32 products' error depends on X
    X = torch.randn(shape[1], 5, dtype=torch.float64, generator=g)
    Y = torch.randn(shape[0], 3, dtype=torch.float64, generator=g)
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


# --- validation: bounds, layouts, values (regressions: reads past the end, segfaults) ------------

def test_rows_checks_bounds_alignment_and_out():
    Q = quantize(_w((64, 64)), "nf4")
    with pytest.raises(ValueError, match="r1=200 is out of range"):
        Q.rows(0, 200)  # read past the end of the codes
    with pytest.raises(ValueError, match="r0=-8 is out of range"):
        Q.rows(-8, 8)  # segfaulted
    with pytest.raises(ValueError, match="r1=3 is out of range"):
        Q.rows(5, 3)
    with pytest.raises(TypeError, match="r0 must be an integer"):
        Q.rows(1.0, 2)
    R = quantize(_w((64, 40)), "nf4")
    with pytest.raises(ValueError, match="does not start a 64-element block"):
        R.rows(1, 2)
    assert Q.rows(2, 2).shape == (0, 64)
    ref = Q.dequantize()
    assert torch.equal(Q.rows(8, 24), ref[8:24])
    buf = np.zeros((16, 64), np.float32)
    got = Q.rows(8, 24, out=buf)
    assert got is buf and np.array_equal(buf, ref[8:24].numpy())  # NumPy out in, NumPy out back
    frozen = np.zeros((16, 64), np.float32)
    frozen.flags.writeable = False
    bad_outs = [(torch.empty(16, 63), "got shape"), (torch.empty(16, 64, dtype=torch.float16), "float32"),
                (torch.empty(64, 16).T, "not contiguous"), (frozen, "writable"),
                (torch.empty(16, 64, requires_grad=True), "requires grad"), ([0.0] * 16, "must be a torch.Tensor")]
    for out, match in bad_outs:
        with pytest.raises((ValueError, TypeError), match=match):
            Q.rows(8, 24, torch.float32, out=out)
    S = quantize(_w((64, 64)), NormalFloat(scale_bits=None))
    with pytest.raises(ValueError, match="overlaps the stored tensor 'scales'"):
        S.rows(0, 1, out=S.data["scales"][:64].view(1, 64))
    with pytest.raises(ValueError, match="2-D"):
        quantize(_w((64,)), "nf4").rows(0, 1)


@pytest.mark.parametrize("fmt", ["nf3", "bnb-nf4", "int4-asym", "q8_0"])
def test_format_dequantize_checks_its_range_and_data(fmt):
    Q = quantize(_w((32, 64)), fmt)
    f, data, n = Q.format, dict(Q.data), Q.numel
    b = f.block
    torch.testing.assert_close(f.dequantize(data, n, b, 2048, torch.float32), Q.dequantize().reshape(-1)[b:],
                               rtol=0, atol=0)
    for e0, e1, exc, match in [(0, n + 64, ValueError, "e1=2112 is out of range"), (-b, b, ValueError, f"e0=-{b}"),
                               (b, 0, ValueError, "e1=0 is out of range"), (8, b, ValueError, "does not start"),
                               (0.0, b, TypeError, "e0 must be an integer")]:
        with pytest.raises(exc, match=match):
            f.dequantize(data, n, e0, e1, torch.float32)
    name = next(iter(data))
    with pytest.raises(ValueError, match=f"'{name}' is"):
        f.dequantize({**data, name: data[name][:-1]}, n, 0, n, torch.float32)
    with pytest.raises(ValueError, match="out must be"):
        f.dequantize(data, n, 0, n, torch.float32, out=torch.empty(n - 1))
    with pytest.raises(TypeError, match="dtype must be"):
        f.dequantize(data, n, 0, n, torch.int32)
    if fmt != "q8_0":
        with pytest.raises(ValueError, match="params scales"):
            f.dequantize(data, n, 0, n, torch.float32, params=(torch.ones(3), None))


LAYOUT_FORMATS = ["nf4", NormalFloat(bits=3, scale_bits=None, scale_dtype="fp16"), "bnb-nf4",
                  BnbNF4(double_quant=False), "int4", "int4-asym", "q4_0", "q8_0"]


@pytest.mark.parametrize("fmt", LAYOUT_FORMATS, ids=str)
def test_constructor_validates_like_from_state_dict(fmt):
    Q = quantize(_w((64, 128)), fmt)
    f, data = Q.format, dict(Q.data)
    before = {k: v.clone() for k, v in data.items()}
    for name, t in data.items():  # undersized tensors segfaulted or read out of bounds in dequantize / matmul
        flat = t.reshape(-1)
        for bad in (flat[: flat.numel() // 2].view(-1, *t.shape[1:]) if t.dim() > 1 else flat[:-1],
                    t.to(torch.float64), t.unsqueeze(0)):
            with pytest.raises(ValueError, match=f"QuantizedTensor data: '{name}' is"):
                QuantizedTensor(f, Q.shape, torch.float32, {**data, name: bad})
            state = {**Q.state_dict(), name: bad}
            with pytest.raises(ValueError, match=f"corrupt QuantizedTensor state: '{name}' is"):
                QuantizedTensor.from_state_dict(state)
        with pytest.raises(ValueError, match=f"'{name}' missing"):
            QuantizedTensor(f, Q.shape, torch.float32, {k: v for k, v in data.items() if k != name})
        with pytest.raises(TypeError, match=f"'{name}' must be a torch.Tensor"):
            QuantizedTensor(f, Q.shape, torch.float32, {**data, name: t.numpy()})
        with pytest.raises(ValueError, match="meta device"):
            QuantizedTensor(f, Q.shape, torch.float32, {**data, name: torch.empty_like(t, device="meta")})
    # unknown extra tensors are rejected (they would be counted and saved without meaning)
    with pytest.raises(ValueError, match="unexpected tensor.*'bias'"):
        QuantizedTensor(f, Q.shape, torch.float32, {**data, "bias": torch.zeros(3)})
    with pytest.raises(ValueError, match="unexpected tensor.*'bias'"):
        QuantizedTensor.from_state_dict({**Q.state_dict(), "bias": torch.zeros(3)})
    for shape, exc, match in [((64, 64), ValueError, "is torch.uint8"), ((64, -128), ValueError, "shape"),
                              ((64, 128.0), TypeError, "shape"), ((), ValueError, "shape"),
                              ("64x128", TypeError, "shape"), ((True, 8192), TypeError, "shape")]:
        with pytest.raises(exc, match=match):
            QuantizedTensor(f, shape, torch.float32, data)
    with pytest.raises(TypeError, match="dtype must be"):
        QuantizedTensor(f, Q.shape, torch.int8, data)
    with pytest.raises(TypeError, match="format must be"):
        QuantizedTensor(str(f), Q.shape, torch.float32, data)
    # expanded / transposed (non-contiguous) stored tensors are copied, never read as contiguous
    odd = {k: (v.reshape(-1)[None, :].expand(2, -1)[1].view(v.shape) if v.dim() == 1 else v.T.contiguous().T)
           for k, v in data.items()}
    assert not any(v.is_contiguous() for v in odd.values() if v.dim() > 1)
    R = QuantizedTensor(f, Q.shape, torch.float32, odd)
    assert torch.equal(R.dequantize(), Q.dequantize()) and all(v.is_contiguous() for v in R.data.values())
    assert all(torch.equal(data[k], before[k]) for k in data)  # nothing modified
    with pytest.raises(TypeError):
        Q.data["codes" if "codes" in data else "blocks"] = torch.zeros(1)  # read-only mapping
    with pytest.raises(AttributeError):
        Q.shape = (128, 128)


@pytest.mark.parametrize("fmt", LAYOUT_FORMATS + [NormalFloat(scale_dtype="bf16"),
                                                   IntGroup(bits=8, scale_dtype="bf16")], ids=str)
@pytest.mark.parametrize("scale", [1.0, 1e-3, 1e-30, 3e4, 2e6, 1e12, 3e38])
def test_quantizer_output_meets_check_values(fmt, scale):
    """quantize() does not re-check its quantizer's stored values (Format._quantize's contract):
    at every magnitude, from subnormal stored scales to overflowing ones, with all-zero and
    mixed-magnitude blocks, a quantizer either raises ValueError or returns values that meet
    check_values. (A GGUF quantizer without its fp16-d check stores Inf d here and fails.)"""
    W = _w((64, 256), scale=scale)
    W[3] = 0.0  # all-zero blocks
    W[5, :32] *= 1e-30  # a block far below the rest
    f = parse(fmt)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # blocks whose scales underflow are counted in a UserWarning
        try:
            Q = quantize(W, f)
        except ValueError:
            return
    f.check_values(dict(Q.data), W.numel(), what="quantizer output")  # raises on a violation


@pytest.mark.parametrize("fmt,name", [("int4", "scales"), ("int4-asym", "scales"), ("nf4", "scale_max"),
                                      ("nf4", "scale_offset"), (NormalFloat(scale_bits=None), "scales"),
                                      ("bnb-nf4", "absmax2"), ("bnb-nf4", "offset"),
                                      (BnbNF4(double_quant=False), "absmax")], ids=str)
@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_nonfinite_scales_are_refused(fmt, name, value):
    Q = quantize(_w((64, 512)), fmt)
    bad = Q.data[name].clone()
    bad[0] = value
    what = "NaN" if value != value else "Inf"
    with pytest.raises(ValueError, match=rf"'{name}' has .*1 {what}"):
        QuantizedTensor.from_state_dict({**Q.state_dict(), name: bad})  # was accepted
    with pytest.raises(ValueError, match=rf"'{name}' has .*1 {what}"):
        QuantizedTensor(Q.format, Q.shape, Q.orig_dtype, {**Q.data, name: bad})


def test_zero_points_gguf_scales_and_derived_scales_are_checked():
    Q = quantize(_w((64, 256)), "int4-asym")
    zeros = Q.data["zeros"].clone()
    zeros[3] = 16
    with pytest.raises(ValueError, match="'zeros' has 1 zero point.*above 15"):
        QuantizedTensor(Q.format, Q.shape, torch.float32, {**Q.data, "zeros": zeros})
    G = quantize(_w((64, 256)), "q4_0")
    blocks = G.data["blocks"].clone()
    blocks[5, :2] = torch.tensor([0x00, 0x7E], dtype=torch.uint8)  # fp16 NaN as d
    with pytest.raises(ValueError, match="fp16 block scales d.*1 NaN"):
        QuantizedTensor.from_state_dict({**G.state_dict(), "blocks": blocks})
    B = quantize(_w((64, 256)), "bnb-nf4")  # finite stored values whose derived scales overflow
    big = {"absmax": torch.full_like(B.data["absmax"], 255), "absmax2": torch.full((1,), 3e38),
           "offset": torch.full((1,), 3e38)}
    with pytest.raises(ValueError, match="block scales .* derives .* overflow float32"):
        QuantizedTensor(B.format, B.shape, torch.float32, {**B.data, **big})


def test_from_state_dict_metadata_is_checked():
    Q = quantize(_w((64, 128)), "nf4")
    state = Q.state_dict()

    def meta(**kw):
        d = {"format": Q.format.to_json(), "shape": [64, 128], "dtype": "float32", **kw}
        return torch.frombuffer(bytearray(json.dumps(d).encode()), dtype=torch.uint8)

    for bad, match in [(meta(shape=[64, 64]), "'codes' is"), (meta(shape=[2**62, 2**62]), "'codes' is"),
                       (meta(shape=[-64, -128]), "positive integers"), (meta(shape=[64.0, 128]), "positive integers"),
                       (meta(shape="64x128"), "positive integers"), (meta(dtype="int32"), "dtype 'int32'"),
                       (meta(dtype="nn"), "dtype 'nn'"),
                       (meta(format=json.dumps({"kind": "nf", "bits": 31})), "bits must be one of"),
                       (meta(format=json.dumps({"kind": "nf", "block_size": 0})), "block_size"),
                       (meta(format=json.dumps({"kind": "nf", "block_size": 2**40})), "block_size"),
                       (meta(format=json.dumps({"kind": "nf", "bits": 4.0})), "bits must be one of"),
                       (meta(format=json.dumps({"kind": "nf", "evil": 1})), "no field"),
                       (meta(format=json.dumps({"kind": "gguf2"})), "unknown quantization format"),
                       (meta(format=json.dumps({"kind": ["nf"]})), "unknown quantization format"),
                       (meta(format="{"), "not valid JSON"),
                       (torch.tensor([0xFF, 0xFE, 0x7B], dtype=torch.uint8), "corrupt"),  # not UTF-8
                       (torch.tensor([1.0, 2.0]), "1-D uint8"), (torch.zeros(2, 2, dtype=torch.uint8), "1-D uint8")]:
        with pytest.raises(ValueError, match=match):
            QuantizedTensor.from_state_dict({**state, "__format__": bad})
    with pytest.raises(TypeError, match="prefix"):
        QuantizedTensor.from_state_dict(state, prefix=1)


# --- scales that do not survive storage (regressions: finite weights quantized to Inf / zeros) ----

@pytest.mark.parametrize("fmt,limit,fp32_hint", [
    (IntGroup(), 65504 * 7, True), (IntGroup(symmetric=False), 65504 * 15 / 2, True),
    (IntGroup(bits=8), 65504 * 127, True), (GGUF("q4_0"), 65504 * 8, False), (GGUF("q8_0"), 65504 * 127, False),
    (NormalFloat(scale_bits=None, scale_dtype="fp16"), 65504, True), (NormalFloat(scale_dtype="fp16"), 65504, True),
    (NormalFloat(scale_bits=None, scale_dtype="bf16"), 3.38e38, True)], ids=str)
def test_scale_overflow_is_reported_not_returned_as_inf(fmt, limit, fp32_hint):
    g = torch.Generator().manual_seed(0)
    W = torch.randn(32, 256, generator=g, dtype=torch.float64)
    W = (W / W.abs().max()).float()
    W[:, 0] = 1.0  # every block reaches the peak
    W[0] *= 1e-3  # and the block absmax vary (NF's double-quantized scales store them minus their minimum)
    ok = quantize(W * (limit * 0.99), fmt)
    assert torch.isfinite(ok.dequantize()).all()
    with pytest.raises(ValueError, match="overflow") as e:
        quantize(W * min(limit * 1.02, 3.4e38), fmt)  # Inf scales (NaN / Inf weights) before
    assert ('scale_dtype="fp32"' in str(e.value)) == fp32_hint and str(fmt) in str(e.value)
    if fp32_hint and fmt.scale_dtype != "bf16":
        wide = dataclasses.replace(fmt, scale_dtype="fp32")
        assert torch.isfinite(quantize(W * limit * 1.02, wide).dequantize()).all()


@pytest.mark.parametrize("fmt", ["int4", "int4-asym", "int8", "q4_0", "q8_0"])
def test_scale_underflow_is_reported(fmt):
    W = _w((16, 256), seed=3) * 1e-6  # |W| ~ 1e-8: fp16 scales round to zero (W became all zeros)
    with pytest.raises(ValueError, match="underflow fp16.*W would quantize to zeros"):
        quantize(W, fmt)
    W2 = _w((16, 256), seed=3)
    W2[0] *= 1e-6  # the first row's blocks only: a warning counting them
    with pytest.warns(UserWarning, match=r"(2|8) of (32|128) nonzero blocks .* underflow fp16"):
        Q = quantize(W2, fmt)
    torch.testing.assert_close(Q.dequantize()[1:], quantize(W2[1:], fmt).dequantize(), rtol=0, atol=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        quantize(_w((16, 256), seed=3), fmt)  # ordinary weights: no warning
        if fmt.startswith("int"):
            quantize(W, dataclasses.replace(parse(fmt), scale_dtype="fp32"))


def test_float64_beyond_float32_is_named():
    W = torch.full((4, 64), 1e300, dtype=torch.float64)
    with pytest.raises(ValueError, match="beyond float32's range"):
        quantize(W, "nf4")


def test_float16_dequantize_overflow_is_reported():
    Q = quantize(_w((64, 64)) * 1e7, NormalFloat(scale_bits=None))
    with pytest.raises(ValueError, match="overflow torch.float16"):
        Q.dequantize(torch.float16)
    out = torch.zeros(64, 64, dtype=torch.float16)
    with pytest.raises(ValueError, match="overflow torch.float16"):
        Q.dequantize(out=out)
    assert (out == 0).all()  # nothing written
    assert torch.isfinite(Q.dequantize(torch.bfloat16)).all()
    assert torch.isfinite(quantize(_w((64, 64)), "nf4").dequantize(torch.float16)).all()


# --- bitsandbytes' edge cases (regression: IndexError in the double quantization) --------------

def _bnb_blocks():
    g = torch.Generator().manual_seed(0)
    return {"subnormal pair": torch.randn(2, 64, generator=g) * 1e-40,
            "subnormal many": torch.randn(1000, 64, generator=g) * 1e-39,
            "one subnormal block": torch.cat([torch.randn(3, 64, generator=g),
                                              torch.randn(1, 64, generator=g) * 1e-40]),
            "all equal subnormal": torch.full((4, 64), 1e-40),
            "zero partial last block": torch.zeros(7, 63),
            "tiny partial last block": torch.cat([torch.zeros(64), torch.full((10,), 1e-39)]),
            "near float32 max": torch.cat([torch.randn(3, 64, generator=g), torch.full((1, 64), 3.0e38)]),
            "near -float32 max": torch.cat([torch.randn(3, 64, generator=g), torch.full((1, 64), -3.0e38)])}


@pytest.mark.parametrize("case", list(_bnb_blocks()))
@pytest.mark.parametrize("double_quant", [True, False])
def test_bnb_nf4_edge_blocks_match_bitsandbytes(case, double_quant):
    F = pytest.importorskip("bitsandbytes.functional")
    W = _bnb_blocks()[case]
    q, st = F.quantize_4bit(W, quant_type="nf4", blocksize=64, compress_statistics=double_quant)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # subnormal blocks are reported as lost (bitsandbytes gives zeros)
        Q = quantize(W, BnbNF4(double_quant=double_quant))
    assert torch.equal(Q.data["codes"], q.view(-1)) and torch.equal(Q.data["absmax"], st.absmax)
    if double_quant:
        assert torch.equal(Q.data["absmax2"], st.state2.absmax) and torch.equal(Q.data["offset"][0], st.offset)
    assert torch.equal(Q.dequantize().reshape(-1), F.dequantize_4bit(q, st).reshape(-1))


def test_bnb_nf4_where_bitsandbytes_writes_inf_raises():
    F = pytest.importorskip("bitsandbytes.functional")
    W = torch.randn(4, 64, generator=torch.Generator().manual_seed(1)) * 7.5e37  # the absmax mean overflows
    _, st = F.quantize_4bit(W, quant_type="nf4", blocksize=64, compress_statistics=True)
    assert not torch.isfinite(st.offset)  # bitsandbytes' result is Inf / NaN
    with pytest.raises(ValueError, match="mean of the block absmax overflows float32.*double_quant=False"):
        quantize(W, "bnb-nf4")
    Q = quantize(W, BnbNF4(double_quant=False))
    assert torch.isfinite(Q.dequantize()).all()
    with pytest.warns(UserWarning, match="1 of 4 nonzero blocks"):
        quantize(_bnb_blocks()["one subnormal block"], "bnb-nf4")


def test_lut_quantize_infinite_reciprocal_follows_bitsandbytes():
    from linalg_core.quant.formats import _lut_quantize

    q, amax = _lut_quantize(torch.tensor([1e-40, -1e-40, 0.0, 5e-41]), 256)  # 1/amax = inf: x·inf, 0·inf = NaN
    assert q.tolist() == [255, 0, 0, 255] and amax.tolist() == [pytest.approx(1e-40, rel=1e-3)]
    with pytest.raises(ValueError, match="not finite"):
        _lut_quantize(torch.tensor([float("inf"), 1.0]), 256)


def test_format_fields_are_type_strict():
    for bad in (dict(bits=4.0), dict(bits=True), dict(block_size=0), dict(block_size=2**20), dict(scale_dtype=1)):
        with pytest.raises(ValueError):
            NormalFloat(**bad)
    with pytest.raises(ValueError, match="double_quant"):
        BnbNF4(double_quant=1)
    assert NormalFloat(bits=np.int64(3)).to_json() == NormalFloat(bits=3).to_json()  # stored as int


def _misaligned(t: torch.Tensor) -> torch.Tensor:
    """A copy of ``t`` one byte past an aligned address (how a safetensors file may place it)."""
    raw = np.zeros(t.numel() * t.element_size() + 1, np.uint8)
    a = raw[1:].view(t.numpy().dtype).reshape(t.shape)
    a[...] = t.numpy()
    return torch.from_numpy(a)


def test_misaligned_stored_tensors_are_copied_and_misaligned_out_refused():
    Q = quantize(_w((64, 96)), NormalFloat(scale_bits=None))
    odd = _misaligned(Q.data["scales"])
    assert odd.data_ptr() % 4  # the bindings refuse such a buffer
    R = QuantizedTensor(Q.format, Q.shape, torch.float32, {**Q.data, "scales": odd})
    assert torch.equal(R.dequantize(), Q.dequantize()) and R.data["scales"].data_ptr() % 4 == 0
    with pytest.raises(ValueError, match="not aligned"):
        Q.dequantize(out=_misaligned(torch.zeros(64, 96)))


def test_format_fields_accept_numpy_and_0d_tensor_integers():
    # The scalar convention: NumPy integers and 0-d integer tensors count as integers.
    assert NormalFloat(bits=torch.tensor(3), block_size=np.int64(64)) == NormalFloat(bits=3, block_size=64)
    assert IntGroup(group_size=torch.tensor(128)).group_size == 128
    with pytest.raises(ValueError, match="bits must be one of"):
        NormalFloat(bits=torch.tensor(3.0))


# ============================================================ the blockwise kernels (ops)

BACKENDS = [b for b in usable_backends("block_quantize") if b != "reference"]
LEVELS = {1: torch.tensor([-1.0, 1.0]), 2: codebooks.normal_float(2), 3: codebooks.normal_float(3),
          4: codebooks.normal_float(4), 8: codebooks.normal_float(8)}
# (n, block): n not a multiple of 8 nor of the block, a block that is not a power of two, one
# element, and enough blocks for several Triton programs.
CASES = [(1000, 64), (1003, 64), (77, 32), (203, 24), (4096, 128), (8, 8), (1, 8), (20_003, 32)]
DTYPES = [torch.float32, torch.float16, torch.bfloat16]
MODES = ["absmax", "scales", "scales+offsets"]
_INT_VIEW = {torch.float32: torch.int32, torch.float16: torch.int16, torch.bfloat16: torch.int16,
             torch.float64: torch.int64}


def _x(n, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(n, generator=g) * torch.exp2(torch.randint(-3, 3, (n,), generator=g).float())).to(dtype)


def _scales_offsets(mode, nb, seed=0):
    g = torch.Generator().manual_seed(1000 + seed)
    s = None if mode == "absmax" else torch.rand(nb, generator=g) + 0.5
    o = torch.randn(nb, generator=g) * 0.3 if mode == "scales+offsets" else None
    return s, o


def _op_quantize(x, block, levels, scales=None, offsets=None, backend=None):
    """(packed, scales, non-finite count) straight from the op (blockwise.quantize raises on a count)."""
    bits = 0 if levels is None else int(math.log2(levels.numel()))
    mid = torch.zeros(1) if levels is None else codebooks.midpoints(levels)
    packed, s, bad = _ops.block_quantize(x, block, mid.to(x.device), bits, scales, offsets, backend=backend)
    return packed, s, int(bad)


def _assert_same_bits(got, want):
    got, want = got.cpu(), want.cpu()
    assert got.dtype == want.dtype and got.shape == want.shape, (got.dtype, got.shape, want.dtype, want.shape)
    if got.dtype in _INT_VIEW:
        got, want = got.view(_INT_VIEW[got.dtype]), want.view(_INT_VIEW[want.dtype])
    mismatch = (got != want).nonzero().reshape(-1)
    assert mismatch.numel() == 0, f"{mismatch.numel()} of {got.numel()} differ, first at {mismatch[:5].tolist()}"


def _dequantized_bits(v32: np.ndarray, dtype) -> np.ndarray:
    """Oracle float32 values rounded to ``dtype``, as integer bit patterns."""
    if dtype == torch.float32:
        return v32.view(np.int32)
    if dtype == torch.float16:
        return v32.astype(np.float16).view(np.int16)
    return oracle.bf16_bits(v32).view(np.int16)


# ------------------------------------------------------------------------- the oracle itself


def test_oracle_packing_by_hand():
    np.testing.assert_array_equal(oracle.pack_msb([1, 2, 15], 4), [0x12, 0xF0])
    np.testing.assert_array_equal(oracle.pack_msb([1] * 8, 3), [0b00100100, 0b10010010, 0b01001001])
    np.testing.assert_array_equal(oracle.pack_msb([3, 0, 1], 2), [0b11000100])
    np.testing.assert_array_equal(oracle.pack_msb([1, 0, 1], 1), [0b10100000])
    np.testing.assert_array_equal(oracle.pack_msb([200, 7], 8), [200, 7])
    c = np.random.default_rng(0).integers(0, 8, 77)
    np.testing.assert_array_equal(oracle.unpack_msb(oracle.pack_msb(c, 3), 3, 77), c)
    assert oracle.nearest_codes([0.5, -0.5, 0.25, 0.75], 4, [-1.0, 0.0, 1.0], scales=[1.0]).tolist() == [1, 0, 1, 2]


# ------------------------------------------------------------- every backend against the oracle


@pytest.mark.parametrize("backend", ["reference"] + BACKENDS)
@pytest.mark.parametrize("bits", sorted(LEVELS))
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("n,block", [(1003, 64), (203, 24), (8, 8)])
def test_matches_float64_oracle(backend, bits, dtype, mode, n, block):
    x = _x(n, dtype, seed=bits + n)
    lv = LEVELS[bits]
    nb = -(-n // block)
    s, o = _scales_offsets(mode, nb, seed=bits)
    packed, s_got = blockwise.quantize(x, block, lv, scales=s, offsets=o, backend=backend)

    x64 = x.double().numpy()
    s64 = oracle.absmax(x64, block) if s is None else s.double().numpy()
    np.testing.assert_array_equal(s_got.numpy(), s64.astype(np.float32))  # an absmax of floats is exact
    want = oracle.nearest_codes(x64, block, lv.double().numpy(), s64, None if o is None else o.double().numpy())
    got = oracle.unpack_msb(packed.numpy(), bits, n)
    # Only an element within float32 rounding of a midpoint, (x - o)·(1/s) against a float32 midpoint,
    # may take the other code.
    b = oracle.block_index(n, block)
    v = (x64 - (0.0 if o is None else o.double().numpy()[b])) / s64[b]
    lv64 = lv.double().numpy()
    near = np.abs(v[:, None] - (lv64[1:] + lv64[:-1]) / 2).min(1) <= 1e-6 * np.maximum(np.abs(v), 1.0)
    assert near.mean() < 0.01
    assert (np.abs(got - want)[near] <= 1).all() and (got == want)[~near].all(), np.flatnonzero((got != want) & ~near)
    want = np.where(near, got, want)
    np.testing.assert_array_equal(packed.numpy(), oracle.pack_msb(want, bits))  # bytes, zero padding included

    ref_val = oracle.dequantize(want, block, lv.numpy(), s_got.numpy(), None if o is None else o.numpy())
    for out_dtype in DTYPES:
        d = blockwise.dequantize(packed, lv, s_got, o, n, block, out_dtype, backend=backend)
        assert d.dtype == out_dtype and d.shape == (n,)
        np.testing.assert_array_equal(d.view(_INT_VIEW[out_dtype]).numpy(), _dequantized_bits(ref_val, out_dtype))


# ---------------------------------------------------------- every backend against the reference


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("bits", sorted(LEVELS))
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n,block", CASES)
def test_backends_bit_identical(backend, bits, dtype, n, block):
    x = _x(n, dtype, seed=n)
    lv = LEVELS[bits]
    for mode in MODES:
        s, o = _scales_offsets(mode, -(-n // block), seed=n)
        ref = blockwise.quantize(x, block, lv, scales=s, offsets=o, backend="reference")
        got = blockwise.quantize(x, block, lv, scales=s, offsets=o, backend=backend)
        assert got[0].numel() == -(-n * bits // 8)
        _assert_same_bits(got[0], ref[0])
        _assert_same_bits(got[1], ref[1])
        for out_dtype in DTYPES:
            d_ref = blockwise.dequantize(ref[0], lv, ref[1], o, n, block, out_dtype, backend="reference")
            d_got = blockwise.dequantize(ref[0], lv, ref[1], o, n, block, out_dtype, backend=backend)
            _assert_same_bits(d_got, d_ref)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("bits", [3, 4])
def test_block_dequantize_into_out(backend, bits):
    n, block, lv = 203, 24, LEVELS[bits]
    packed, s = blockwise.quantize(_x(n, torch.float32), block, lv, backend="reference")
    for out_dtype in DTYPES:
        want = blockwise.dequantize(packed, lv, s, None, n, block, out_dtype, backend="reference")
        out = torch.full((n,), 7.0, dtype=out_dtype)
        res = blockwise.dequantize(packed, lv, s, None, n, block, out_dtype, backend=backend, out=out)
        assert res.data_ptr() == out.data_ptr()
        _assert_same_bits(out, want)


# ------------------------------------------------------------------------ non-finite inputs


@pytest.mark.parametrize("backend", BACKENDS + ["reference"])
def test_scales_only_and_nonfinite_raises(backend):
    x = _x(1000, torch.float32)
    _, s = blockwise.quantize(x, 64, None, backend=backend)
    assert torch.equal(s[:15], x[:960].reshape(15, 64).abs().amax(1)) and s[15] == x[960:].abs().max()
    x[[3, 500, 999]] = torch.tensor([float("nan"), float("inf"), -float("inf")])
    for levels in (None, LEVELS[4]):
        with pytest.raises(ValueError, match="W has 3 non-finite"):
            blockwise.quantize(x, 64, levels, backend=backend)


@pytest.mark.parametrize("backend", BACKENDS + ["reference"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("bits", [0] + sorted(LEVELS))
@pytest.mark.parametrize("mode", MODES)
def test_nonfinite_count_spares_other_blocks(backend, dtype, bits, mode):
    n, block = 203, 24  # blocks 0, 1 and the partial block 8 (11 elements) hold the non-finite values
    x = _x(n, dtype, seed=5)
    x[[0, 23, 24, 202]] = torch.tensor([float("nan"), float("inf"), -float("inf"), float("nan")], dtype=dtype)
    lv = LEVELS.get(bits)
    s, o = _scales_offsets(mode, -(-n // block))
    packed, s_got, bad = _op_quantize(x, block, lv, s, o, backend=backend)
    assert bad == 4
    clean = _x(n, dtype, seed=5)
    packed_c, s_c, bad_c = _op_quantize(clean, block, lv, s, o, backend="reference")
    assert bad_c == 0
    _assert_same_bits(s_got[2:8], s_c[2:8])
    per_block = block * bits // 8
    _assert_same_bits(packed[2 * per_block:8 * per_block], packed_c[2 * per_block:8 * per_block])


# ------------------------------------------------------------------------------------- GPU


@pytest.mark.gpu
@pytest.mark.parametrize("backend", ["cuda", "triton"])
@pytest.mark.parametrize("bits", sorted(LEVELS))
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n,block", [(100_003, 64), (1003, 64), (203, 24), (77, 32), (1, 8), (70_001, 4096)])
def test_gpu_bit_identical(backend, bits, dtype, n, block):
    x = _x(n, dtype, seed=bits)
    lv = LEVELS[bits]
    for mode in MODES:
        s, o = _scales_offsets(mode, -(-n // block), seed=bits)
        ref = blockwise.quantize(x, block, lv, scales=s, offsets=o, backend="reference")
        got = blockwise.quantize(x.cuda(), block, lv, scales=None if s is None else s.cuda(),
                                 offsets=None if o is None else o.cuda(), backend=backend)
        _assert_same_bits(got[0], ref[0])
        _assert_same_bits(got[1], ref[1])
        for out_dtype in DTYPES:
            d = blockwise.dequantize(ref[0].cuda(), lv, ref[1].cuda(), None if o is None else o.cuda(), n, block,
                                     out_dtype, backend=backend)
            _assert_same_bits(d, blockwise.dequantize(ref[0], lv, ref[1], o, n, block, out_dtype, backend="reference"))


@pytest.mark.gpu
@pytest.mark.parametrize("backend", ["cuda", "triton"])
@pytest.mark.parametrize("bits", [0] + sorted(LEVELS))
def test_gpu_nonfinite_count(backend, bits):
    n, block = 100_003, 64
    x = _x(n, torch.bfloat16)
    idx = torch.tensor([0, 63, 64, 5000, n - 1])
    x[idx] = torch.tensor([float("nan"), float("inf"), -float("inf"), float("nan"), float("inf")], dtype=x.dtype)
    _, _, bad = _op_quantize(x.cuda(), block, LEVELS.get(bits), backend=backend)
    assert bad == 5
