"""The blockwise quantization kernels (ops ``block_quantize`` / ``block_dequantize``): every
backend bit-identical to the torch reference, the reference checked against a float64 NumPy
oracle (nearest level, ties down, MSB-first packing), non-finite counting."""

import numpy as np
import pytest
import torch

from linalg_core.quant import blockwise, codebooks
from linalg_core.testing.backends import usable_backends

BACKENDS = [b for b in usable_backends("block_quantize") if b != "reference"]
LEVELS = {1: torch.tensor([-1.0, 1.0]), 2: codebooks.normal_float(2), 3: codebooks.normal_float(3),
          4: codebooks.normal_float(4), 8: codebooks.normal_float(8)}
CASES = [(1000, 64), (77, 32), (4096, 128), (8, 8), (1, 8)]


def _x(n, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(n, generator=g) * torch.exp2(torch.randint(-3, 3, (n,), generator=g).float())).to(dtype)


def _oracle_pack(codes: np.ndarray, bits: int) -> np.ndarray:
    bitstr = "".join(format(int(c), f"0{bits}b") for c in codes)
    bitstr += "0" * (-len(bitstr) % 8)
    return np.array([int(bitstr[i:i + 8], 2) for i in range(0, len(bitstr), 8)], dtype=np.uint8)


@pytest.mark.parametrize("bits", sorted(LEVELS))
@pytest.mark.parametrize("n,block", CASES)
def test_reference_matches_float64_oracle(bits, n, block):
    x = _x(n, torch.float32, seed=bits)
    packed, s = blockwise.quantize(x, block, LEVELS[bits], backend="reference")
    xb = np.zeros(-(-n // block) * block)
    xb[:n] = x.double().numpy()
    xb = xb.reshape(-1, block)
    amax = np.abs(xb).max(1)
    np.testing.assert_array_equal(s.numpy(), amax.astype(np.float32))
    v = (xb / np.maximum(amax, 1e-38)[:, None]).reshape(-1)[:n]
    lv = LEVELS[bits].double().numpy()
    codes = np.abs(v[:, None] - lv).argmin(1)
    mids = (lv[1:] + lv[:-1]) / 2
    near_tie = np.abs(v[:, None] - mids).min(1) < 1e-6  # float32 x·(1/s) may fall on the other side
    got = blockwise.dequantize(packed, LEVELS[bits], s, None, n, block, torch.float64, backend="reference").numpy()
    expect = (lv[codes] * np.repeat(amax, block)[:n]).astype(np.float32)
    assert (np.isclose(got, expect, rtol=1e-6, atol=0) | near_tie).all()
    if not near_tie.any():
        np.testing.assert_array_equal(packed.numpy(), _oracle_pack(codes, bits))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("bits", sorted(LEVELS))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("n,block", CASES)
def test_backends_bit_identical(backend, bits, dtype, n, block):
    x = _x(n, dtype, seed=n)
    lv = LEVELS[bits]
    for scales, offsets in ((None, None), ("given", None), ("given", "given")):
        nb = -(-n // block)
        s = None if scales is None else torch.rand(nb) + 0.5
        o = None if offsets is None else torch.randn(nb) * 0.3
        ref = blockwise.quantize(x, block, lv, scales=s, offsets=o, backend="reference")
        got = blockwise.quantize(x, block, lv, scales=s, offsets=o, backend=backend)
        assert torch.equal(got[0], ref[0]) and torch.equal(got[1], ref[1])
        for out_dtype in (torch.float32, torch.bfloat16, torch.float16):
            d_ref = blockwise.dequantize(ref[0], lv, ref[1], o, n, block, out_dtype, backend="reference")
            d_got = blockwise.dequantize(ref[0], lv, ref[1], o, n, block, out_dtype, backend=backend)
            assert torch.equal(d_got, d_ref)


@pytest.mark.parametrize("backend", BACKENDS + ["reference"])
def test_scales_only_and_nonfinite_count(backend):
    x = _x(1000, torch.float32)
    _, s = blockwise.quantize(x, 64, None, backend=backend)
    assert torch.equal(s[:15], x[:960].reshape(15, 64).abs().amax(1)) and s[15] == x[960:].abs().max()
    x[[3, 500, 999]] = torch.tensor([float("nan"), float("inf"), -float("inf")])
    for levels in (None, LEVELS[4]):
        with pytest.raises(ValueError, match="W has 3 non-finite"):
            blockwise.quantize(x, 64, levels, backend=backend)


@pytest.mark.gpu
@pytest.mark.parametrize("backend", ["cuda", "triton"])
@pytest.mark.parametrize("bits", sorted(LEVELS))
def test_gpu_bit_identical(backend, bits):
    x = _x(100_003, torch.bfloat16, seed=bits)
    lv = LEVELS[bits]
    ref = blockwise.quantize(x, 64, lv, backend="reference")
    got = blockwise.quantize(x.cuda(), 64, lv, backend=backend)
    assert torch.equal(got[0].cpu(), ref[0]) and torch.equal(got[1].cpu(), ref[1])
    d = blockwise.dequantize(ref[0].cuda(), lv, ref[1].cuda(), None, x.numel(), 64, torch.float32, backend=backend)
    assert torch.equal(d.cpu(), blockwise.dequantize(ref[0], lv, ref[1], None, x.numel(), 64, torch.float32,
                                                      backend="reference"))
