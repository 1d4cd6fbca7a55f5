"""QuantLinear / LQLinear (linalg_core.quant.modules) and whole-model quantization, bits and
files (linalg_core.quant.model).

Modules: forward equals x·dequantize()ᵀ + b for every format (and Q + L1·L2 for LQLinear), a
weight larger than one dequantization block, state_dict round trips (also into a layer of another
format) with validation of corrupt entries, torch.compile(fullgraph=True) equal to eager, dtype
casts keep the stored codes, no gradient (a clear error), extra_repr with the bits.
"""

from __future__ import annotations

import pytest
import torch

from linalg_core.quant import LQConfig, LQLinear, QuantizedTensor, QuantLinear, quantize

FORMATS = ["nf4", "nf3", "bnb-nf4", "q4_0", "int4"]


def _linear(m=64, n=128, bias=True, seed=0):
    torch.manual_seed(seed)
    return torch.nn.Linear(n, m, bias=bias)


def _x(*shape, seed=1):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("fmt", FORMATS)
def test_quant_linear_forward_is_the_dequantized_product(fmt):
    lin = _linear()
    q = QuantLinear.from_linear(lin, fmt)
    x = _x(3, 5, 128)
    W = q.quantized.dequantize(torch.float32)
    with torch.no_grad():
        torch.testing.assert_close(q(x), x @ W.T + lin.bias, rtol=1e-5, atol=1e-5)
    assert q.quantized.format == quantize(lin.weight.detach(), fmt).format
    assert q(x).shape == (3, 5, 64) and q.in_features == 128 and q.out_features == 64


def test_quant_linear_without_bias_and_other_dtypes():
    lin = _linear(bias=False)
    q = QuantLinear.from_linear(lin, "nf4")
    assert q.bias is None
    x = _x(4, 128)
    W = q.quantized.dequantize(torch.float32)
    torch.testing.assert_close(q(x), x @ W.T)
    y16 = q(x.to(torch.bfloat16))
    assert y16.dtype == torch.bfloat16
    y64 = q(x.double())
    assert y64.dtype == torch.float64
    torch.testing.assert_close(y64, x.double() @ q.quantized.dequantize(torch.float64).T)


def test_weight_of_several_dequantization_blocks():
    lin = _linear(600, 4096)  # 2.4M weights: three row blocks of the buffer
    q = QuantLinear.from_linear(lin, "q4_0")
    x = _x(3, 4096)
    with torch.no_grad():
        torch.testing.assert_close(q(x), x @ q.quantized.dequantize().T + lin.bias, rtol=1e-4, atol=1e-4)


def test_lq_linear_is_q_plus_low_rank():
    lin = _linear()
    lq = LQLinear.from_linear(lin, LQConfig(rank=8, format="nf3", seed=0))
    assert lq.L1.shape == (64, 8) and lq.L2.shape == (8, 128) and lq.rank == 8
    x = _x(2, 7, 128)
    W = lq.quantized.dequantize(torch.float32) + lq.L1 @ lq.L2
    with torch.no_grad():
        torch.testing.assert_close(lq(x), x @ W.T + lin.bias, rtol=1e-5, atol=1e-5)
        err = (lq(x) - lin(x)).norm() / lin(x).norm()
        assert err < (QuantLinear.from_linear(lin, "nf3")(x) - lin(x)).norm() / lin(x).norm()


def test_constructors_validate():
    Q = quantize(_x(64, 128), "nf4")
    with pytest.raises(TypeError, match="quantized"):
        QuantLinear(torch.zeros(64, 128))
    with pytest.raises(ValueError, match="bias"):
        QuantLinear(Q, torch.zeros(3))
    with pytest.raises(ValueError, match="bias"):
        QuantLinear(Q, torch.full((64,), float("nan")))
    with pytest.raises(ValueError, match="2-D"):
        QuantLinear(quantize(_x(64 * 128), "nf4"))
    with pytest.raises(ValueError, match="L1"):
        LQLinear(Q, torch.zeros(64, 4), torch.zeros(5, 128))
    with pytest.raises(ValueError, match="L2"):
        LQLinear(Q, torch.zeros(64, 4), torch.full((4, 128), float("inf")))
    with pytest.raises(TypeError, match="nn.Linear"):
        QuantLinear.from_linear(torch.nn.Conv1d(3, 3, 1), "nf4")
    with pytest.raises(TypeError, match="LQLinear"):
        QuantLinear.from_linear(_linear(), LQConfig(rank=4))
    with pytest.raises(TypeError, match="LQConfig"):
        LQLinear.from_linear(_linear(), "nf4")
    with pytest.raises(ValueError, match="format"):
        QuantLinear.from_linear(_linear(), "nf5")
    q = QuantLinear(Q)
    with pytest.raises(ValueError, match="128"):
        q(_x(2, 127))


def test_inputs_not_mutated_and_no_shared_bias():
    lin = _linear()
    b = lin.bias.detach().clone()
    q = QuantLinear.from_linear(lin, "int4")
    with torch.no_grad():
        lin.bias.add_(1)
    assert torch.equal(q.bias, b)


@pytest.mark.parametrize("fmt", FORMATS)
def test_state_dict_round_trip(fmt):
    q = QuantLinear.from_linear(_linear(seed=0), fmt)
    sd = q.state_dict()
    assert {"bias", "weight.__format__"} <= set(sd)
    assert QuantizedTensor.from_state_dict(sd, "weight.").format == q.quantized.format
    other = QuantLinear.from_linear(_linear(seed=5), "nf2")  # another format: the layout follows the state
    other.load_state_dict(sd)
    x = _x(3, 128)
    assert torch.equal(other(x), q(x))
    assert other.quantized.format == q.quantized.format
    assert set(other.state_dict()) == set(sd)


def test_lq_state_dict_round_trip():
    lq = LQLinear.from_linear(_linear(), LQConfig(rank=4, format="nf3", seed=0))
    other = LQLinear.from_linear(_linear(seed=3), LQConfig(rank=4, format="nf4", seed=0))
    other.load_state_dict(lq.state_dict())
    x = _x(3, 128)
    assert torch.equal(other(x), lq(x))


def test_load_state_dict_validates():
    q = QuantLinear.from_linear(_linear(), "nf4")
    sd = q.state_dict()
    bad = dict(sd, **{"weight.scale_max": torch.full_like(sd["weight.scale_max"], float("nan"))})
    with pytest.raises(ValueError, match="scale_max"):
        q.load_state_dict(bad)
    bad = {k: v for k, v in sd.items() if k != "weight.codes"}
    with pytest.raises(ValueError, match="codes"):
        q.load_state_dict(bad)
    bad = dict(sd, **{"weight.extra": torch.zeros(3)})
    with pytest.raises(ValueError, match="extra"):
        q.load_state_dict(bad)
    small = QuantLinear.from_linear(_linear(32, 128), "nf4").state_dict()
    with pytest.raises(ValueError, match="shape"):
        q.load_state_dict(small)
    no_weight = {"bias": sd["bias"]}
    with pytest.raises(RuntimeError, match="Missing"):
        q.load_state_dict(no_weight)
    x = _x(2, 128)  # the failed loads left the layer as it was
    torch.testing.assert_close(q(x), x @ q.quantized.dequantize().T + sd["bias"])
    lq = LQLinear.from_linear(_linear(), LQConfig(rank=4, seed=0))
    lsd = lq.state_dict()
    with pytest.raises(ValueError, match="L1"):
        lq.load_state_dict(dict(lsd, L1=torch.full_like(lsd["L1"], float("nan"))))


def test_dtype_casts_keep_the_stored_codes():
    lq = LQLinear.from_linear(_linear(), LQConfig(rank=4, format="nf4", seed=0))
    stored = {k: v.clone() for k, v in lq.weight.state_dict().items()}
    lq.to(torch.bfloat16)
    for k, v in lq.weight.state_dict().items():
        assert v.dtype == stored[k].dtype and torch.equal(v, stored[k])
    assert lq.L1.dtype == torch.bfloat16
    assert lq(_x(2, 128).to(torch.bfloat16)).dtype == torch.bfloat16


def test_no_gradient_with_a_clear_error():
    q = QuantLinear.from_linear(_linear(), "nf4")
    x = _x(2, 128).requires_grad_()
    with pytest.raises(RuntimeError, match="inference-only"):
        q(x).sum().backward()
    with torch.no_grad():
        assert not q(x).requires_grad


def test_extra_repr_prints_format_and_bits():
    q = QuantLinear.from_linear(_linear(), "q4_0")
    assert "format=q4_0" in repr(q) and "4.500 bits/weight" in repr(q)
    lq = LQLinear.from_linear(_linear(), LQConfig(rank=4, format="nf3", seed=0))
    assert "rank=4" in repr(lq) and f"{lq.bits_per_weight:.3f} bits/weight" in repr(lq)
    assert lq.bits_per_weight == pytest.approx((lq.quantized.nbytes * 8 + 32 * 4 * (64 + 128)) / (64 * 128))


@pytest.mark.parametrize("fmt", ["nf4", "nf3", "bnb-nf4", "q4_0", "int4", "int4-asym", "q8_0"])
def test_compiles_fullgraph_equal_to_eager(fmt):
    torch._dynamo.reset()
    q = QuantLinear.from_linear(_linear(), fmt)
    x = _x(3, 5, 128)
    with torch.no_grad():
        assert torch.equal(torch.compile(q, fullgraph=True, backend="aot_eager")(x), q(x))
    torch._dynamo.reset()


def test_lq_compiles_with_inductor():
    torch._dynamo.reset()
    lq = LQLinear.from_linear(_linear(), LQConfig(rank=4, format="nf3", seed=0))
    x = _x(6, 128)
    with torch.no_grad():
        assert torch.equal(torch.compile(lq, fullgraph=True, backend="aot_eager")(x), lq(x))
        torch.testing.assert_close(torch.compile(lq, fullgraph=True)(x), lq(x))
    torch._dynamo.reset()
