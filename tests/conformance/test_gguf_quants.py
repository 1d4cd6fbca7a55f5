"""gguf-py's quantization test, ported to linalg_core's ``GGUF`` formats (Q4_0, Q8_0).

Peer: ggml-org/llama.cpp at commit 2309845bffb9a5077cc25dedbddbc2bdf818bc9e, file
``gguf-py/tests/test_quants.py`` (``do_test``). The peer checks ``gguf.quants`` against the C
implementation in ``libggml`` with ``compare_tensors`` (arrays equal, or equal bit for bit);
here the same checks hold linalg_core's ``quantize(W, "q4_0" | "q8_0")`` against the installed
``gguf.quants`` (linalg_core claims byte-exactness with ``gguf``, which the peer holds to the C
reference), on the peer's inputs:

* a standard normal float32 tensor with one all-zero row (the peer's "test zero blocks");
* quantized blocks compared byte for byte, dequantized values compared exactly;
* random float16 data reinterpreted as quantized blocks, dequantized by both;
* the peer's probe of one all-zero block through quantize and dequantize.

Sizes: the peer uses an (8, 1024, 1024) tensor; this port uses (2, 256, 1024) (and
(2, 256, 512) for the random blocks) to stay fast — the same code paths, 16× fewer blocks.
The other GGML types the peer loops over (F16, Q4_1, Q5_*, K-quants, IQ*, ...) have no
linalg_core equivalent and are not ported; linalg_core claims Q4_0 and Q8_0 only.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from linalg_core.quant import GGUF, QuantizedTensor, quantize

gguf = pytest.importorskip("gguf")

TYPES = ["q4_0", "q8_0"]


def _qtype(kind):
    return getattr(gguf.GGMLQuantizationType, kind.upper())


def compare_tensors(t1: np.ndarray, t2: np.ndarray, qtype) -> bool:
    """The peer's comparison: equal arrays, or the same bits (NaNs compare unequal as floats)."""
    if np.array_equal(t1, t2):
        return True
    block_size, type_size = gguf.GGML_QUANT_SIZES[qtype]
    if t1.shape != t2.shape:
        return False
    width = block_size if t1.dtype == np.float32 else type_size
    x = t1.reshape((-1, width)).view(np.uint8) ^ t2.reshape((-1, width)).view(np.uint8)
    return not np.count_nonzero(x)


@pytest.fixture(scope="module")
def r():
    # peer: np.random.randn(8, 1024, 1024); smaller here (see the module docstring)
    r = np.random.default_rng(0).standard_normal((2, 256, 1024)).astype(np.float32, copy=False)
    # test zero blocks
    r[0, 0, :] = 0
    return r


def _ours(data: np.ndarray, kind: str):
    """(linalg_core's quantized bytes in gguf's byte shape, the QuantizedTensor)."""
    Q = quantize(torch.from_numpy(data), kind)
    return Q.data["blocks"].numpy().reshape(gguf.quant_shape_to_byte_shape(data.shape, _qtype(kind))), Q


@pytest.mark.parametrize("kind", TYPES)
def test_probe_single_zero_block(kind):
    """The peer's has_quantize / has_dequantize probes: one block of zeros each way."""
    qtype = _qtype(kind)
    block_size, type_size = gguf.GGML_QUANT_SIZES[qtype]
    zeros = np.zeros((block_size,), dtype=np.float32)
    ours, Q = _ours(zeros, kind)
    assert compare_tensors(ours, gguf.quants.quantize(zeros, qtype), qtype)
    assert Q.dequantize().shape == (block_size,)

    raw = np.zeros((type_size,), dtype=np.uint8)
    Z = QuantizedTensor(GGUF(kind), (block_size,), torch.float32, {"blocks": torch.from_numpy(raw).reshape(1, -1)})
    assert compare_tensors(Z.dequantize().numpy(), gguf.quants.dequantize(raw, qtype), qtype)


@pytest.mark.parametrize("kind", TYPES)
def test_quantize_matches(r, kind):
    qtype = _qtype(kind)
    rc = r.copy(order="C")
    pyq = gguf.quants.quantize(rc, qtype)
    ours, _ = _ours(rc, kind)
    assert ours.shape == pyq.shape and ours.dtype == pyq.dtype
    assert compare_tensors(ours, pyq, qtype), f"Quantization to {kind} does not match"
    assert np.array_equal(rc, r), "the input was modified"


@pytest.mark.parametrize("kind", TYPES)
def test_dequantize_matches(r, kind):
    qtype = _qtype(kind)
    ggq = gguf.quants.quantize(r.copy(order="C"), qtype)  # the peer dequantizes the reference's bytes
    _, Q = _ours(r, kind)
    pydq = gguf.quants.dequantize(ggq, qtype)
    ours = Q.dequantize().numpy()
    assert ours.shape == pydq.shape and ours.dtype == pydq.dtype
    assert compare_tensors(ours, pydq, qtype), f"Dequantization from {kind} does not match"


@pytest.mark.parametrize("kind", TYPES)
def test_dequantize_random_f16_data(kind):
    qtype = _qtype(kind)
    # peer: quant_shape_to_byte_shape((8, 1024, 1024 // 2), qtype); smaller here
    rq_shape = gguf.quants.quant_shape_to_byte_shape((2, 256, 512), qtype)
    rq = np.random.default_rng(1).random(rq_shape).astype(np.float16).view(np.uint8)
    shape = gguf.quants.quant_shape_from_byte_shape(rq.shape, qtype)
    _, type_size = gguf.GGML_QUANT_SIZES[qtype]
    Q = QuantizedTensor(GGUF(kind), shape, torch.float32,
                        {"blocks": torch.from_numpy(rq.reshape(-1, type_size).copy())})
    pydq = gguf.quants.dequantize(rq, qtype)
    assert compare_tensors(Q.dequantize().numpy(), pydq, qtype), (
        f"Dequantization from random f16 data as {kind} does not match")
