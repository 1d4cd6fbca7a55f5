"""Quantization headlines (``bench quant``): NF4 with double quantization of a 4096² float32
N(0, 1) matrix (quick: 2048²) against bitsandbytes' quantize_4bit / dequantize_4bit (identical
bytes checked), and GGUF Q4_0 / Q8_0 of a 2048 × 4096 float32 matrix (entry std 0.02, also at
--quick) against ``gguf.quants`` (numpy)."""

import numpy as np
import pytest
import torch

from linalg_core.quant import quantize


@pytest.fixture(scope="module")
def nf4_input(quick):
    n = 2048 if quick else 4096
    return torch.randn(n, n, generator=torch.Generator().manual_seed(0))


@pytest.fixture(scope="module")
def gguf_input():
    return torch.randn(2048, 4096, generator=torch.Generator().manual_seed(0)) * 0.02


@pytest.mark.parametrize("impl", ["linalg_core", "bitsandbytes"])
def test_nf4_quantize(benchmark, timed, peer, nf4_input, impl):
    F = peer("bitsandbytes").functional
    W = nf4_input
    group = f"NF4 quantize {W.shape[0]}x{W.shape[1]} float32 (double quant)"
    if impl == "linalg_core":
        timed(lambda: quantize(W, "bnb-nf4"), rounds=9, group=group)
    else:
        timed(lambda: F.quantize_4bit(W, quant_type="nf4", blocksize=64, compress_statistics=True), rounds=5,
              group=group)
    q, st = F.quantize_4bit(W, quant_type="nf4", blocksize=64, compress_statistics=True)
    Q = quantize(W, "bnb-nf4")
    benchmark.extra_info["bit_exact"] = torch.equal(Q.data["codes"], q.view(-1)) and torch.equal(Q.data["absmax"],
                                                                                                   st.absmax)


@pytest.mark.parametrize("impl", ["linalg_core", "linalg_core out=", "bitsandbytes"])
def test_nf4_dequantize(benchmark, timed, peer, nf4_input, impl):
    F = peer("bitsandbytes").functional
    W = nf4_input
    Q = quantize(W, "bnb-nf4")
    q, st = Q.to_bitsandbytes()
    group = f"NF4 dequantize {W.shape[0]}x{W.shape[1]} -> float32"
    if impl == "linalg_core":
        timed(lambda: Q.dequantize(torch.float32), rounds=9, group=group)
    elif impl == "linalg_core out=":
        buf = torch.empty_like(W)
        timed(lambda: Q.dequantize(out=buf), rounds=9, group=group)
    else:
        timed(lambda: F.dequantize_4bit(q, st), rounds=9, group=group)
    benchmark.extra_info["bit_exact"] = torch.equal(F.dequantize_4bit(q, st), Q.dequantize())


GGUF = [(kind, op, impl) for kind in ("q4_0", "q8_0") for op in ("quantize", "dequantize")
        for impl in ("linalg_core", "gguf.quants (numpy)")]


@pytest.mark.parametrize("kind, op, impl", GGUF, ids=[f"{k}-{o}-{i}" for k, o, i in GGUF])
def test_gguf(benchmark, timed, peer, gguf_input, kind, op, impl):
    gguf = peer("gguf")
    W = gguf_input
    Wn = W.numpy()
    qt = getattr(gguf.GGMLQuantizationType, kind.upper())
    ref = gguf.quants.quantize(Wn, qt)
    Q = quantize(W, kind)
    group = f"GGUF {kind} {op} 2048x4096 fp32"
    if op == "quantize":
        fn = (lambda: quantize(W, kind)) if impl == "linalg_core" else (lambda: gguf.quants.quantize(Wn, qt))
        exact = np.array_equal(Q.data["blocks"].numpy().reshape(ref.shape), ref)
    else:
        fn = ((lambda: Q.dequantize(torch.float32)) if impl == "linalg_core"
              else (lambda: gguf.quants.dequantize(ref, qt)))
        exact = np.array_equal(Q.dequantize().numpy(), gguf.quants.dequantize(ref, qt))
    timed(fn, rounds=5, group=group)  # bench: 9 interleaved rounds (5 at --quick)
    benchmark.extra_info["bit_exact"] = bool(exact)
