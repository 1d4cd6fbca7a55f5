"""The blockwise quantization kernels (ops ``block_quantize`` / ``block_dequantize``).

* every backend against the float64 NumPy oracle of ``tests/oracles/quant.py`` (nearest level,
  ties down, MSB-first packing, float32 level·s + o) on random inputs where ties have
  probability zero: only elements within float32 rounding of a midpoint may take either code;
* every backend bit-identical to the torch reference (codes, scales, dequantized bits), for
  every bits / input dtype / output dtype, absmax or given scales, with or without offsets;
* the count of non-finite inputs, which must not disturb the other blocks.

Triton runs on CPU tensors under its interpreter (tests/conftest.py sets TRITON_INTERPRET=1);
the ``gpu`` tests run the ``cuda`` and ``triton`` backends on CUDA tensors.
"""

import math

import numpy as np
import pytest
import torch

from linalg_core import _ops
from linalg_core.quant import blockwise, codebooks
from linalg_core.testing.backends import usable_backends
from tests.oracles import quant as oracle

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
def test_dequantize_into_out(backend, bits):
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
