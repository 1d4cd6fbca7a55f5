"""bitsandbytes' own 4-bit (NF4) quantization tests, ported to linalg_core's ``BnbNF4`` codec.

Peer: bitsandbytes-foundation/bitsandbytes at commit 95f9af309d4d5793847169c39288dcd3fcbdf564,
files

* ``tests/test_functional.py``: ``TestQuantize4BitFunctional.test_4bit_quant``,
  ``test_4bit_compressed_stats``, ``test_4bit_quant_large``, ``test_gemv_eye_4bit``,
  ``test_matmul_4bit``, ``test_matmul_4bit_weight_orientation``;
* ``tests/test_ops.py``: ``Test4bitBlockwiseQuantOps.test_quantize_4bit``,
  ``test_quantize_4bit_not_divisible_by_blocksize``, ``test_dequantize_4bit``;
* ``tests/test_parametrize.py``: ``test_replace_parameter_4bit``, ``test_different_blocksizes``.

Their assertions and error bounds are kept (the (mean, std) tables and N_SIGMA = 7, the 0.11 /
0.28 bounds, the 0.115 matmul bound), applied to linalg_core's codec; on top of them each test
checks what linalg_core claims (README, ``BnbNF4``): the codes and scales are bit-exact with the
installed bitsandbytes' ``quantize_4bit(quant_type="nf4")`` on the CPU, ``dequantize`` equals
``dequantize_4bit``, and ``QuantizedTensor.to_bitsandbytes()`` gives a ``(packed, QuantState)``
that bitsandbytes' own functions accept.

Differences from the peer: bitsandbytes' FP4 (``quant_type="fp4"``) and bfloat16 code storage
(``quant_storage``) have no linalg_core equivalent (skipped with that reason); ``opcheck`` of
bitsandbytes' ops and the CUDA-only 2³¹ − 1-element test are not ported. Sizes are the peer's
(1024 × 1024) except where noted; bitsandbytes is called only where a bit-exactness check
needs its output, so the file stays fast.
"""

from __future__ import annotations

import math

import pytest
import torch

from linalg_core.quant import BnbNF4, QuantizedTensor, quantize

F = pytest.importorskip("bitsandbytes.functional")
bnb = pytest.importorskip("bitsandbytes")

DTYPES = [torch.float32, torch.float16, torch.bfloat16]
FP4 = pytest.param("fp4", marks=pytest.mark.skip(
    reason="linalg_core has no FP4 format (bitsandbytes' quant_type='fp4')"))
N_SIGMA = 7

# bitsandbytes' expected (mean, std) of the mean absolute and mean relative error of NF4, per
# blocksize (tests/test_functional.py::test_4bit_quant, "from 200 samples on RTX 4090").
NF4_ERR = {32: (0.067746, 0.000069), 64: (0.072798, 0.000074), 128: (0.076831, 0.000091),
           256: (0.080337, 0.000102), 512: (0.083547, 0.000143), 1024: (0.086610, 0.000187),
           2048: (0.089592, 0.000251), 4096: (0.092547, 0.000360)}
NF4_REL_ERR = {32: (0.189726, 0.000304), 64: (0.203339, 0.000340), 128: (0.215237, 0.000391),
               256: (0.226105, 0.000398), 512: (0.236079, 0.000544), 1024: (0.245370, 0.000600),
               2048: (0.254163, 0.000747), 4096: (0.262473, 0.000999)}
# tests/test_parametrize.py's table (same quantity, a separate 200-sample run).
PARAM_ERR = {64: {"abs": (0.072796, 0.000072), "rel": (0.203353, 0.000326)},
             128: {"abs": (0.076839, 0.000093), "rel": (0.215258, 0.000367)},
             256: {"abs": (0.080322, 0.000100), "rel": (0.226056, 0.000392)}}


def _randn(*shape, dtype=torch.float32, seed=0):
    return torch.randn(*shape, dtype=dtype, generator=torch.Generator().manual_seed(seed))


def _nf4_definition(Q: QuantizedTensor) -> torch.Tensor:
    """NF4's definition, independent of both implementations: level[code] · absmax of the code's
    block (blocks run over the flattened tensor, across rows), in float32 (one rounding), then
    cast to Q's dtype; codes two per byte, high nibble first."""
    codes = Q.data["codes"].view(torch.uint8).to(torch.int64)
    codes = torch.stack([codes >> 4, codes & 15], -1).reshape(-1)[: math.prod(Q.shape)]
    scales, _ = Q.format.block_params(Q.data, codes.numel())
    block = torch.arange(codes.numel()) // Q.format.blocksize
    return (Q.format.levels.float()[codes] * scales.float()[block]).reshape(Q.shape).to(Q.orig_dtype)


def _assert_equals_bnb_dequantize(theirs: torch.Tensor, Q: QuantizedTensor):
    """bitsandbytes' dequantize of Q's codes equals ours. Where the peer's CPU kernel departs from
    NF4's definition (bitsandbytes 0.50's AVX-512 dequantize_4bit reads the wrong block's absmax
    when blocks do not line up with rows: 128 × 128 at blocksize 256, 300 × 400 at 64; its AVX2
    path is right), ours must equal the definition, and the case is an xfail naming the peer bug."""
    ours = Q.dequantize()
    if torch.equal(theirs, ours):
        return
    assert torch.equal(ours, _nf4_definition(Q)), "linalg_core's dequantize departs from NF4's definition"
    pytest.xfail("bitsandbytes' CPU dequantize_4bit departs from NF4's definition on this machine (wrong block's "
                 "absmax where blocks do not line up with rows; linalg_core's values equal the definition)")


def _assert_bit_exact(Q: QuantizedTensor, qa, SA, double_quant: bool):
    """Q's stored tensors equal bitsandbytes' (packed codes, QuantState) bit for bit."""
    assert torch.equal(Q.data["codes"], qa.view(-1))
    assert torch.equal(Q.data["absmax"], SA.absmax)
    if double_quant:
        assert torch.equal(Q.data["absmax2"], SA.state2.absmax)
        assert torch.equal(Q.data["offset"][0], SA.offset)


def _errors(A1, A2, eps):
    err = (A1 - A2).abs().float()
    relerr = (err / (A1.abs().float() + eps)).mean()
    return err.mean(), relerr


# --- tests/test_functional.py::TestQuantize4BitFunctional ------------------------------------

@pytest.mark.parametrize("blocksize", [32, 64, 128, 256, 512, 1024, 2048, 4096])
@pytest.mark.parametrize("quant_type", ["nf4", FP4])
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_4bit_quant(dtype, quant_type, blocksize):
    A1 = _randn(1024, 1024, dtype=dtype, seed=blocksize)
    Q = quantize(A1, BnbNF4(blocksize=blocksize, double_quant=False))
    # the peer round-trips its QuantState through as_dict / from_dict before dequantizing
    qa, SA = Q.to_bitsandbytes()
    SA = F.QuantState.from_dict(SA.as_dict(), device=torch.device("cpu"))
    A2 = F.dequantize_4bit(qa, SA, blocksize=blocksize, quant_type=quant_type)
    assert A2.dtype == dtype
    D = Q.dequantize()
    assert D.dtype == dtype and torch.equal(D, A2)

    err, relerr = _errors(A1, A2, 1e-8)
    err_mean, err_std = NF4_ERR[blocksize]
    relerr_mean, relerr_std = NF4_REL_ERR[blocksize]
    assert err < err_mean + N_SIGMA * err_std, f"abs error {err:.6f} exceeds {err_mean:.6f} + {N_SIGMA}*{err_std:.6f}"
    assert relerr < relerr_mean + N_SIGMA * relerr_std, (
        f"rel error {relerr:.6f} exceeds {relerr_mean:.6f} + {N_SIGMA}*{relerr_std:.6f}")

    # linalg_core's claim: the same bytes as bitsandbytes' own quantize_4bit
    qb, Sb = F.quantize_4bit(A1, blocksize=blocksize, quant_type="nf4")
    _assert_bit_exact(Q, qb, Sb, double_quant=False)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=str)
@pytest.mark.parametrize("blocksize", [32, 64, 128])
@pytest.mark.parametrize("quant_type", ["nf4", FP4])
def test_4bit_compressed_stats(quant_type, blocksize, dtype):
    for i in range(10):
        A1 = _randn(1024, 1024, dtype=dtype, seed=100 * blocksize + i)
        Q2 = quantize(A1, BnbNF4(blocksize=blocksize, double_quant=False))
        Q3 = quantize(A1, BnbNF4(blocksize=blocksize, double_quant=True))
        A2, A3 = Q2.dequantize(), Q3.dequantize()

        err, relerr = _errors(A1, A2, 1e-15)
        assert err.item() < 0.11
        assert relerr.item() < 0.28

        err, relerr = _errors(A1, A3, 1e-15)
        assert err.item() < 0.11
        assert relerr.item() < 0.28

        if i == 0:  # bit-exactness once per configuration (bitsandbytes' CPU path is the slow part)
            q3, S3 = F.quantize_4bit(A1, blocksize=blocksize, compress_statistics=True, quant_type="nf4")
            _assert_bit_exact(Q3, q3, S3, double_quant=True)
            assert torch.equal(A3, F.dequantize_4bit(q3, S3, quant_type="nf4"))


@pytest.mark.skip(reason="bitsandbytes runs it on CUDA/XPU only (2**31 - 1 elements, ~10 GiB); "
                         "not part of linalg_core's CPU claim")
def test_4bit_quant_large():
    pass


@pytest.mark.parametrize("dim", [64, 576, 1280])  # the peer draws 4 random multiples of 64 below 8192
@pytest.mark.parametrize("storage_type", ["nf4", FP4])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32], ids=str)
def test_gemv_eye_4bit(storage_type, dtype, dim):
    # The identity has blocks that are all zero (absmax 0) next to blocks holding one 1.
    A = torch.normal(0, 0.1, size=(1, 1, dim), dtype=dtype, generator=torch.Generator().manual_seed(dim))
    B = torch.eye(dim, dtype=dtype)
    Q = quantize(B, BnbNF4(blocksize=64, double_quant=False))
    qB, state = Q.to_bitsandbytes()
    qb, sb = F.quantize_4bit(B, quant_type="nf4", compress_statistics=False)
    _assert_bit_exact(Q, qb, sb, double_quant=False)

    C3 = torch.matmul(A, B.t())
    C2 = bnb.matmul_4bit(A, qB.t(), state)
    A.requires_grad = True
    C1 = bnb.matmul_4bit(A, qB.t(), state)
    torch.testing.assert_close(A, C3)
    torch.testing.assert_close(A, C1)
    torch.testing.assert_close(A, C2)
    # linalg_core's own matrix-free product, A Bᵀ = (B Aᵀ)ᵀ, computed in float32
    C4 = Q.matmul(A.detach().reshape(-1, dim).T.float()).T.reshape(A.shape).to(dtype)
    torch.testing.assert_close(A.detach(), C4)


# The peer's _GEMM_4BIT_SHAPES narrowed as it narrows them on the CPU (K ≤ 128, M ≤ 40,
# N ≤ 8192), and of those the two smallest, to keep this file fast.
_GEMM_SHAPES = [(1, 256, 128), (40, 2048, 128)]


@pytest.mark.filterwarnings("ignore:inner dimension:UserWarning")
@pytest.mark.parametrize("MNK", _GEMM_SHAPES, ids=[f"M{m}N{n}K{k}" for m, n, k in _GEMM_SHAPES])
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("blocksize", [32, 64, 128])
@pytest.mark.parametrize("quant_type", ["nf4", FP4])
@pytest.mark.parametrize("compress_statistics", [False, True])
@pytest.mark.parametrize("has_bias", [False, True])
def test_matmul_4bit(MNK, dtype, blocksize, quant_type, compress_statistics, has_bias):
    M, N, K = MNK
    g = torch.Generator().manual_seed(M * N + blocksize)
    B = torch.randn(N, K, dtype=dtype, generator=g) / (K**0.5)
    A = torch.randn(1, M, K, dtype=dtype, generator=g)
    bias = torch.randn(N, dtype=dtype, generator=g) if has_bias else None
    ref = torch.nn.functional.linear(A, B, bias)

    Q = quantize(B, BnbNF4(blocksize=blocksize, double_quant=compress_statistics))
    qB, qs = Q.to_bitsandbytes()
    out = bnb.matmul_4bit(A, qB, qs, bias=bias)

    mean_err = (ref.float() - out.float()).abs().mean().item()
    threshold = 0.115  # the peer's bound for nf4 (any blocksize)
    assert mean_err < threshold

    # the same result as bitsandbytes' own quantization of B
    qB2, qs2 = F.quantize_4bit(B, blocksize=blocksize, quant_type="nf4", compress_statistics=compress_statistics)
    assert torch.equal(out, bnb.matmul_4bit(A, qB2, qs2, bias=bias))
    # and linalg_core's matrix-free product meets the same bound
    ours = Q.matmul(A.reshape(-1, K).T.float()).T.reshape(1, M, N)
    if bias is not None:
        ours = ours + bias.float()
    assert (ref.float() - ours).abs().mean().item() < threshold


def test_matmul_4bit_weight_orientation():
    N, K = 256, 128
    dtype = torch.float16
    g = torch.Generator().manual_seed(0)
    A = torch.randn(1, 4, K, dtype=dtype, generator=g)
    B = torch.randn(N, K, dtype=dtype, generator=g) / (K**0.5)
    ref = torch.nn.functional.linear(A, B)
    qB, qs = quantize(B, BnbNF4(blocksize=64)).to_bitsandbytes()

    # B.t() and canonical B must give identical results.
    out_canonical = bnb.matmul_4bit(A, qB, qs)
    out_transposed = bnb.matmul_4bit(A, qB.t(), qs)
    torch.testing.assert_close(out_canonical, out_transposed)
    assert (ref.float() - out_canonical.float()).abs().mean().item() < 0.115
    # (the peer's [K, N] deprecation check exercises bitsandbytes' own warning path: not ported)


# --- tests/test_ops.py::Test4bitBlockwiseQuantOps -------------------------------------------

@pytest.mark.parametrize("blocksize", [32, 64, 128, 256, 512])
@pytest.mark.parametrize("quant_type", ["nf4", FP4])
@pytest.mark.parametrize("storage_dtype", [torch.uint8, pytest.param(torch.bfloat16, marks=pytest.mark.skip(
    reason="linalg_core stores NF4 codes as uint8 only (no quant_storage)"))], ids=str)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32], ids=str)
def test_quantize_4bit(dtype, storage_dtype, quant_type, blocksize):
    A = _randn(1024, 1024, dtype=dtype, seed=blocksize)
    Q = quantize(A, BnbNF4(blocksize=blocksize, double_quant=False))
    out, absmax = Q.data["codes"], Q.data["absmax"]

    assert out.device == A.device
    assert out.dtype == storage_dtype
    assert absmax.device == A.device
    assert absmax.dtype == torch.float32
    # (the peer's opcheck of its custom op is bitsandbytes-internal: not ported)


@pytest.mark.parametrize("blocksize", [64, 128, 256])
@pytest.mark.parametrize("quant_type", ["nf4", FP4])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32], ids=str)
def test_quantize_4bit_not_divisible_by_blocksize(dtype, quant_type, blocksize):
    """Quantize/dequantize round trip when n_elements is not divisible by blocksize."""
    shape = (7, blocksize - 1)  # odd number of elements too: the last byte holds one code
    A = _randn(*shape, dtype=dtype, seed=blocksize)

    Q = quantize(A, BnbNF4(blocksize=blocksize, double_quant=False))  # should not raise
    packed, absmax = Q.data["codes"], Q.data["absmax"]
    assert packed.device == A.device
    assert absmax.device == A.device

    out = Q.dequantize()
    assert out.shape == shape
    assert out.dtype == dtype
    assert torch.isfinite(out).all(), "Dequantized output contains NaN or Inf"

    ref_packed, ref_absmax = torch.ops.bitsandbytes.quantize_4bit(A, blocksize, "nf4", torch.uint8)
    assert torch.equal(packed, ref_packed.view(-1)) and torch.equal(absmax, ref_absmax)
    # decoded as bitsandbytes defines it (code[nibble] * absmax of the block, high nibble first);
    # its own dequantize op compiles a kernel per odd shape on the CPU (seconds), so the
    # definition stands in for it here (test_dequantize_4bit compares with the op itself)
    nibbles = torch.stack([ref_packed.view(-1) >> 4, ref_packed.view(-1) & 15], 1).view(-1)[: A.numel()]
    scale = ref_absmax.repeat_interleave(blocksize)[: A.numel()]
    ref = (F.get_4bit_type("nf4", device="cpu")[nibbles.long()] * scale).to(dtype).view(shape)
    assert torch.equal(out, ref)


@pytest.mark.parametrize("double_quant", [False, True])
@pytest.mark.parametrize("blocksize", [64, 128, 256])
def test_quantize_4bit_not_divisible_by_blocksize_zero_tail(blocksize, double_quant):
    """Edge case of the peer's not-divisible test: the partial last block all zeros (padding,
    pruned weights). Bit-exactness is linalg_core's claim; the peer only asserts finiteness."""
    shape = (7, blocksize - 1)
    A = torch.zeros(shape)
    Q = quantize(A, BnbNF4(blocksize=blocksize, double_quant=double_quant))
    assert torch.isfinite(Q.dequantize()).all()
    qa, SA = F.quantize_4bit(A, blocksize=blocksize, quant_type="nf4", compress_statistics=double_quant)
    assert torch.equal(Q.dequantize(), F.dequantize_4bit(qa, SA))
    _assert_bit_exact(Q, qa, SA, double_quant)


@pytest.mark.parametrize("blocksize", [32, 64, 128, 256, 512])
@pytest.mark.parametrize("quant_type", ["nf4", FP4])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32], ids=str)
def test_dequantize_4bit(dtype, quant_type, blocksize):
    """Arbitrary codes and (signed) block scales decode as bitsandbytes decodes them."""
    shape = (128, 128)
    n = math.prod(shape)
    blocks = -(n // -blocksize)
    g = torch.Generator().manual_seed(blocksize)
    A = torch.randint(0, 255, ((n + 1) // 2,), dtype=torch.uint8, generator=g)
    absmax = torch.randn((blocks,), dtype=torch.float32, generator=g)

    Q = QuantizedTensor(BnbNF4(blocksize=blocksize, double_quant=False), shape, dtype, {"codes": A, "absmax": absmax})
    out = Q.dequantize()
    assert out.device == A.device
    assert out.shape == shape

    ref = torch.ops.bitsandbytes.dequantize_4bit(A.reshape(-1, 1), absmax, blocksize, "nf4", shape, dtype)
    _assert_equals_bnb_dequantize(ref, Q)


# --- tests/test_parametrize.py ----------------------------------------------------------------

@pytest.mark.parametrize("blocksize", [64, 128, 256])
@pytest.mark.parametrize("compress_statistics", [False, True])
@pytest.mark.parametrize("quant_type", ["nf4", FP4])
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_replace_parameter_4bit(dtype, quant_type, compress_statistics, blocksize):
    """The peer's weight_2d (1024 × 1024) through the codec: shape, dtype and error bounds."""
    original_param = _randn(1024, 1024, dtype=dtype, seed=7 * blocksize + compress_statistics)
    reconstructed = quantize(original_param, BnbNF4(blocksize=blocksize, double_quant=compress_statistics)).dequantize()
    assert reconstructed.shape == original_param.shape, "Shape should be preserved"
    assert reconstructed.dtype == dtype, "dtype should match original"
    assert reconstructed.device == original_param.device, "Device should match target"

    err_mean, relerr = _errors(original_param, reconstructed, 1e-8)
    abs_mean, abs_std = PARAM_ERR[blocksize]["abs"]
    rel_mean, rel_std = PARAM_ERR[blocksize]["rel"]
    assert err_mean < abs_mean + N_SIGMA * abs_std, (
        f"Mean abs error {err_mean:.6f} exceeds {abs_mean:.6f} + {N_SIGMA}*{abs_std:.6f}")
    assert relerr < rel_mean + N_SIGMA * rel_std, (
        f"Mean rel error {relerr:.6f} exceeds {rel_mean:.6f} + {N_SIGMA}*{rel_std:.6f}")


@pytest.mark.parametrize("blocksize", [64, 128, 256])
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_different_blocksizes(dtype, blocksize):
    """The peer's 3-D MoE expert weights (8, 512, 256), NF4 without double quantization (the
    default of replace_parameter_4bit)."""
    original_param = _randn(8, 512, 256, dtype=dtype, seed=blocksize)
    Q = quantize(original_param, BnbNF4(blocksize=blocksize, double_quant=False))
    reconstructed = Q.dequantize()
    assert reconstructed.shape == original_param.shape, "Shape should be preserved"
    assert reconstructed.device == original_param.device, "Device should match"

    err_mean, relerr = _errors(original_param, reconstructed, 1e-8)
    abs_mean, abs_std = PARAM_ERR[blocksize]["abs"]
    rel_mean, rel_std = PARAM_ERR[blocksize]["rel"]
    assert err_mean < abs_mean + N_SIGMA * abs_std, (
        f"Mean abs error {err_mean:.6f} exceeds {abs_mean:.6f} + {N_SIGMA}*{abs_std:.6f} for blocksize {blocksize}")
    assert relerr < rel_mean + N_SIGMA * rel_std, (
        f"Mean rel error {relerr:.6f} exceeds {rel_mean:.6f} + {N_SIGMA}*{rel_std:.6f} for blocksize {blocksize}")

    q, s = F.quantize_4bit(original_param, blocksize=blocksize, quant_type="nf4")
    _assert_bit_exact(Q, q, s, double_quant=False)
    assert torch.equal(reconstructed, F.dequantize_4bit(q, s))


@pytest.mark.parametrize("blocksize", [64, 128, 256])
@pytest.mark.parametrize("quant_type", ["nf4", FP4])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32], ids=str)
def test_quantize_4bit_non_contiguous(dtype, quant_type, blocksize):
    """The peer's issue #1342 (a non-contiguous slice), which bitsandbytes skips on the CPU
    ("not implemented for this backend"); linalg_core takes any strides."""
    A_full = _randn(3, 4, 6, 256, dtype=dtype, seed=blocksize)
    A_noncontig = A_full[:, ::2, :, :]
    assert not A_noncontig.is_contiguous()
    A_contig = A_noncontig.contiguous()

    Q_nc = quantize(A_noncontig, BnbNF4(blocksize=blocksize, double_quant=False))
    Q_c = quantize(A_contig, BnbNF4(blocksize=blocksize, double_quant=False))
    torch.testing.assert_close(Q_nc.data["absmax"], Q_c.data["absmax"])
    torch.testing.assert_close(Q_nc.data["codes"], Q_c.data["codes"])
    # test_quantize_4bit_roundtrip_non_contiguous
    torch.testing.assert_close(Q_nc.dequantize(), Q_c.dequantize())
    assert torch.equal(A_full[:, ::2], A_contig), "the input was modified"


# --- tests/test_linear4bit.py -------------------------------------------------------------------

@pytest.mark.parametrize("compress_statistics", [False, True])
@pytest.mark.parametrize("blocksize", [32, 64, 128])
@pytest.mark.parametrize("quant_type", ["nf4", FP4])
def test_params4bit_real_serialization(quant_type, blocksize, compress_statistics):
    """The peer pickles a quantized Params4bit; here a QuantizedTensor is pickled, its
    QuantState compared (QuantState.__eq__) with bitsandbytes' own for the same tensor, and
    loaded the way transformers loads a pre-quantized checkpoint (as_dict(packed=True) →
    Params4bit.from_prequantized)."""
    import pickle

    original_tensor = _randn(300, 400, seed=blocksize + compress_statistics)
    Q = quantize(original_tensor, BnbNF4(blocksize=blocksize, double_quant=compress_statistics))
    data_before = {k: v.clone() for k, v in Q.data.items()}

    deserialized = pickle.loads(pickle.dumps(Q))
    assert deserialized.format == Q.format and deserialized.shape == Q.shape
    assert deserialized.orig_dtype == Q.orig_dtype
    assert Q.data.keys() == deserialized.data.keys()
    assert all(torch.equal(Q.data[k], deserialized.data[k]) for k in Q.data)
    assert all(torch.equal(Q.data[k], data_before[k]) for k in Q.data), "pickling modified the original"

    packed, state = Q.to_bitsandbytes()
    _, ref_state = F.quantize_4bit(original_tensor, blocksize=blocksize, quant_type="nf4",
                                   compress_statistics=compress_statistics)
    assert state == ref_state

    param = bnb.nn.Params4bit.from_prequantized(packed, state.as_dict(packed=True), device="cpu")
    assert param.quant_state == ref_state
    _assert_equals_bnb_dequantize(F.dequantize_4bit(param.data, param.quant_state), Q)


@pytest.mark.parametrize("compress_statistics", [False, True])
@pytest.mark.parametrize("blocksize", [32, 64, 128])
@pytest.mark.parametrize("quant_type", ["nf4", FP4])
def test_deepcopy_param(quant_type, blocksize, compress_statistics):
    import copy

    Q = quantize(_randn(300, 400, seed=blocksize), BnbNF4(blocksize=blocksize, double_quant=compress_statistics))
    dict_keys_before = set(Q.__dict__.keys())
    copy_Q = copy.deepcopy(Q)
    dict_keys_after = set(Q.__dict__.keys())
    dict_keys_copy = set(copy_Q.__dict__.keys())

    assert all(Q.data[k].data_ptr() != copy_Q.data[k].data_ptr() for k in Q.data)
    assert all(torch.equal(Q.data[k], copy_Q.data[k]) for k in Q.data)
    # there was a bug where deepcopy would modify the original object
    assert dict_keys_before == dict_keys_after
    assert dict_keys_before == dict_keys_copy


@pytest.mark.parametrize("shape, blocksize, dq", [((128, 128), 64, False), ((128, 128), 256, True),
                                                  ((300, 400), 64, True)])
def test_nf4_definition_is_the_reference_of_the_xfails(shape, blocksize, dq):
    """The definition the peer-bug xfails fall back on equals linalg_core's dequantize (aligned and
    misaligned blocks, both scale layouts) and differs once a code is changed."""
    Q = quantize(_randn(*shape, seed=blocksize), BnbNF4(blocksize=blocksize, double_quant=dq))
    assert torch.equal(_nf4_definition(Q), Q.dequantize())
    data = dict(Q.data)
    data["codes"] = data["codes"].clone()
    data["codes"][0] ^= 0x10
    assert not torch.equal(_nf4_definition(QuantizedTensor(Q.format, Q.shape, Q.orig_dtype, data)), Q.dequantize())
