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
    bias = sd["bias"].clone()
    bad = dict(sd, bias=bias + 1, **{"weight.scale_max": torch.full_like(sd["weight.scale_max"], float("nan"))})
    with pytest.raises(ValueError, match="scale_max"):
        q.load_state_dict(bad)
    assert torch.equal(q.bias, bias)  # the bias was not copied in before the weight failed
    with pytest.raises(ValueError, match="bias"):
        q.load_state_dict(dict(sd, bias=torch.full_like(bias, float("inf"))))
    with pytest.raises(ValueError, match="bias"):
        q.load_state_dict(dict(sd, bias=torch.zeros(3)))
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
    torch.testing.assert_close(q(x), x @ q.quantized.dequantize().T + bias)
    lq = LQLinear.from_linear(_linear(), LQConfig(rank=4, seed=0))
    lsd = lq.state_dict()
    before = lq.L1.clone()
    with pytest.raises(ValueError, match="L1"):
        lq.load_state_dict(dict(lsd, L1=torch.full_like(lsd["L1"], float("nan"))))
    assert torch.equal(lq.L1, before)  # nothing was copied in


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


# --- whole models: quantize_, bits, files ------------------------------------------------------

import json  # noqa: E402
import os  # noqa: E402

from linalg_core.qmatmul import DGQLinear  # noqa: E402
from linalg_core.quant import DGQConfig, load_model, model_bits_per_weight, quantize_, save_model  # noqa: E402
from linalg_core.quant import model as qmodel  # noqa: E402


def _mlp(seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(256, 128), torch.nn.GELU(), torch.nn.Linear(128, 64))


@pytest.fixture(scope="module")
def minilm():
    models = pytest.importorskip("linalg_core.testing.models")
    try:
        models.minilm_model()
    except (FileNotFoundError, ImportError) as e:
        pytest.skip(str(e))
    return models


def _rel(a, b):
    return float((a - b).norm() / b.norm())


@pytest.mark.parametrize("fmt, tol", [("q8_0", 0.05), ("nf4", 0.35)])
def test_quantize_minilm_replaces_only_linear_layers(minilm, fmt, tol):
    ref_model, model = minilm.minilm_model(), minilm.minilm_model()
    inputs = minilm.minilm_inputs()
    linears = {n for n, m in ref_model.named_modules() if isinstance(m, torch.nn.Linear)}
    assert quantize_(model, fmt) is model
    types = {n: type(m) for n, m in model.named_modules()}
    assert {n for n, t in types.items() if t is QuantLinear} == linears
    assert not any(t is torch.nn.Linear for t in types.values())
    for n, m in ref_model.named_modules():  # everything else is the same module type with the same tensors
        if n not in linears and not any(n.startswith(lin + ".") for lin in linears):
            assert types[n] is type(m)
    ref_state, state = ref_model.state_dict(), model.state_dict()
    for k in ref_state:
        if not any(k.startswith(lin + ".") for lin in linears):
            assert torch.equal(state[k], ref_state[k]), k
    with torch.no_grad():
        assert _rel(model(**inputs).last_hidden_state, ref_model(**inputs).last_hidden_state) < tol


def test_filter_fn_is_respected(minilm):
    model = minilm.minilm_model()
    seen = []

    def first_layer(module, fqn):
        seen.append(fqn)
        return isinstance(module, torch.nn.Linear) and fqn.startswith("encoder.layer.0.")

    quantize_(model, "int4", filter_fn=first_layer)
    assert "encoder.layer.0.attention.self.query" in seen and "embeddings.LayerNorm" in seen
    for n, m in model.named_modules():
        if n.startswith("encoder.layer.0.") and n.count(".") >= 4 and n.rsplit(".", 1)[-1] in ("query", "dense"):
            assert isinstance(m, QuantLinear), n
    assert isinstance(model.encoder.layer[1].attention.self.query, torch.nn.Linear)
    assert isinstance(model.pooler.dense, torch.nn.Linear)


def test_quantize_lq_and_dgq_configs():
    x = _x(5, 256)
    for config, cls, tol in [(LQConfig(rank=8, format="nf3", iters=3, seed=0), LQLinear, 0.2),
                             (DGQConfig(group_size=128, search="rtn", pad=True), DGQLinear, 0.2),
                             ("bnb-nf4", QuantLinear, 0.2)]:
        ref, model = _mlp(), _mlp()
        quantize_(model, config)
        assert isinstance(model[0], cls) and isinstance(model[2], cls)
        with torch.no_grad():
            assert _rel(model(x), ref(x)) < tol


def test_quantize_is_all_or_nothing_and_names_the_layer():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.Linear(32, 48), torch.nn.Linear(48, 16))
    with pytest.raises(ValueError, match="layer '2'"):  # rows of 48 weights: not whole q4_0 blocks
        quantize_(model, "q4_0")
    assert all(type(m) is torch.nn.Linear for m in model)


def test_shared_layer_is_quantized_once():
    lin = torch.nn.Linear(64, 64)
    model = torch.nn.Sequential(lin, torch.nn.ReLU(), lin)
    quantize_(model, "nf4")
    assert model[0] is model[2] and isinstance(model[0], QuantLinear)


def test_quantize_bad_input():
    with pytest.raises(ValueError, match="no nn.Linear"):
        quantize_(torch.nn.Sequential(torch.nn.ReLU(), torch.nn.LayerNorm(4)), "nf4")
    with pytest.raises(ValueError, match="filter_fn"):
        quantize_(_mlp(), "nf4", filter_fn=lambda m, fqn: False)
    with pytest.raises(ValueError, match="nf5"):
        quantize_(_mlp(), "nf5")
    with pytest.raises(TypeError, match="config"):
        quantize_(_mlp(), 4)
    with pytest.raises(TypeError, match="filter_fn"):
        quantize_(_mlp(), "nf4", filter_fn="0")
    with pytest.raises(TypeError, match="model"):
        quantize_(torch.zeros(3), "nf4")
    with pytest.raises(ValueError, match="from_linear"):
        quantize_(torch.nn.Linear(64, 64), "nf4")
    with pytest.raises(ValueError, match="GELU"):
        quantize_(_mlp(), "nf4", filter_fn=lambda m, fqn: fqn == "1")
    mha = torch.nn.Sequential(torch.nn.MultiheadAttention(64, 4))
    with pytest.raises(ValueError, match="no nn.Linear"):  # out_proj is skipped by default
        quantize_(mha, "nf4")
    with pytest.raises(ValueError, match="out_proj"):
        quantize_(mha, "nf4", filter_fn=lambda m, fqn: isinstance(m, torch.nn.Linear))
    with pytest.raises(ValueError, match="no quantized layers"):
        model_bits_per_weight(_mlp())


def _nf_bytes(n, bits=4, block=64, scale_block=256):
    nb = -(-n // block)
    return -(-n * bits // 8) + nb + 4 * -(-nb // scale_block) + 4  # codes, scale codes, scale_max, offset


def test_model_bits_per_weight_hand_count():
    model = quantize_(_mlp(), "nf4")
    n0, n1 = 128 * 256, 64 * 128
    assert model_bits_per_weight(model) == pytest.approx(8 * (_nf_bytes(n0) + _nf_bytes(n1)) / (n0 + n1))
    lq = quantize_(_mlp(), LQConfig(rank=4, format="nf3", iters=2, seed=0))
    q_bytes = _nf_bytes(n0, 3) + _nf_bytes(n1, 3)
    f_bytes = 4 * 4 * (128 + 256 + 64 + 128)  # float32 L1, L2
    assert model_bits_per_weight(lq) == pytest.approx(8 * (q_bytes + f_bytes) / (n0 + n1))
    assert model_bits_per_weight(lq, factors=False) == pytest.approx(8 * q_bytes / (n0 + n1))
    dgq = quantize_(_mlp(), DGQConfig(search="rtn"))
    # codes N·K/2, zeros and int8 group scales N·K/128 each, float32 channel scales and int32 sums
    d_bytes = sum(N * K // 2 + 2 * N * K // 128 + 8 * N for N, K in ((128, 256), (64, 128)))
    assert model_bits_per_weight(dgq) == pytest.approx(8 * d_bytes / (n0 + n1))
    mixed = _mlp()
    quantize_(mixed, "q4_0", filter_fn=lambda m, fqn: fqn == "0")  # the float layer is not counted
    assert model_bits_per_weight(mixed) == 4.5


def test_save_load_round_trip_transformers(minilm, tmp_path):
    model = quantize_(minilm.minilm_model(), "nf3")
    inputs = minilm.minilm_inputs()
    path = save_model(model, tmp_path / "saved")
    assert sorted(os.listdir(path)) == ["config.json", "model.safetensors", "quantization.json"]
    meta = json.loads((path / "quantization.json").read_text())
    assert meta["only_linalg_core_reads"] == ["nf3-b64-s8x256-fp32"] and "no other tool" in meta["note"]
    info = meta["modules"]["encoder.layer.0.attention.self.query"]
    assert info["class"] == "QuantLinear" and info["format"]["bits"] == 3 and info["readable_by"] == ["linalg_core"]
    assert meta["bits_per_weight"] == pytest.approx(model_bits_per_weight(model))
    loaded = load_model(path)
    assert type(loaded) is type(model) and not loaded.training
    with torch.no_grad():
        assert torch.equal(loaded(**inputs).last_hidden_state, model(**inputs).last_hidden_state)
    assert model_bits_per_weight(loaded) == model_bits_per_weight(model)


class _Tied(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.emb = torch.nn.Embedding(10, 64)
        self.body = torch.nn.Linear(64, 64)
        self.head = torch.nn.Linear(64, 10, bias=False)
        self.head.weight = self.emb.weight

    def forward(self, ids):
        return self.head(torch.relu(self.body(self.emb(ids))))


@pytest.mark.parametrize("config", ["bnb-nf4", LQConfig(rank=4, format="nf4", iters=2, seed=0),
                                    DGQConfig(search="rtn", pad=True)])
def test_save_load_round_trip_plain_module(tmp_path, config):
    model = quantize_(_Tied(), config, filter_fn=lambda m, fqn: fqn == "body")
    ids = torch.tensor([[1, 2, 3], [4, 5, 9]])
    save_model(model, tmp_path / "m")
    with pytest.raises(ValueError, match="model="):
        load_model(tmp_path / "m")
    arch = _Tied()
    loaded = load_model(tmp_path / "m", model=arch)
    assert isinstance(arch.body, torch.nn.Linear)  # the architecture passed is not modified
    assert loaded.head.weight is loaded.emb.weight  # tied tensors stay tied
    with torch.no_grad():
        assert torch.equal(loaded(ids), model(ids))
    with torch.device("meta"):
        meta_arch = _Tied()
    with torch.no_grad():
        assert torch.equal(load_model(tmp_path / "m", model=meta_arch)(ids), model(ids))


def test_save_is_atomic(tmp_path, monkeypatch):
    model = quantize_(_mlp(), "nf4")

    def fail(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(qmodel, "_save_file", fail)
    with pytest.raises(OSError, match="disk full"):
        save_model(model, tmp_path / "out")
    assert list(tmp_path.iterdir()) == []  # no directory, no temporary left behind
    monkeypatch.undo()
    save_model(model, tmp_path / "out")
    with pytest.raises(FileExistsError):
        save_model(model, tmp_path / "out")
    monkeypatch.setattr(qmodel, "_save_file", fail)
    with pytest.raises(OSError):
        save_model(quantize_(_mlp(seed=1), "int4"), tmp_path / "out", overwrite=True)
    monkeypatch.undo()
    assert [p.name for p in tmp_path.iterdir()] == ["out"]
    x = _x(2, 256)
    assert torch.equal(load_model(tmp_path / "out", model=_mlp())(x), model(x))  # the old save is intact
    other = quantize_(_mlp(seed=1), "int4")
    save_model(other, tmp_path / "out", overwrite=True)
    assert torch.equal(load_model(tmp_path / "out", model=_mlp())(x), other(x))
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_save_load_bad_input(tmp_path):
    with pytest.raises(ValueError, match="no quantized layers"):
        save_model(_mlp(), tmp_path / "x")
    with pytest.raises(FileNotFoundError):
        load_model(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="not a model saved"):
        load_model(tmp_path / "empty")
    model = quantize_(_mlp(), "nf4")
    path = save_model(model, tmp_path / "ok")
    with pytest.raises(ValueError, match="no module"):
        load_model(path, model=torch.nn.Sequential(torch.nn.Linear(256, 128)))
    with pytest.raises(ValueError, match="64 x 128"):
        load_model(path, model=torch.nn.Sequential(torch.nn.Linear(256, 128), torch.nn.GELU(),
                                                   torch.nn.Linear(128, 32)))
    with pytest.raises(TypeError, match="model"):
        load_model(path, model="mlp")
    (path / "quantization.json").write_text("{not json")
    with pytest.raises(ValueError, match="JSON"):
        load_model(path, model=_mlp())
    path = save_model(model, tmp_path / "ok2")
    (path / "model.safetensors").write_bytes(b"\x00" * 40)
    with pytest.raises(ValueError, match="safetensors"):
        load_model(path, model=_mlp())
    path = save_model(model, tmp_path / "ok3")
    from safetensors.torch import load_file, save_file

    state = load_file(str(path / "model.safetensors"))
    state["0.weight.scale_max"] = torch.full_like(state["0.weight.scale_max"], float("inf"))
    save_file(state, str(path / "model.safetensors"))
    with pytest.raises(ValueError, match="scale_max"):
        load_model(path, model=_mlp())
    with pytest.raises(ValueError, match="not a directory"):
        save_model(model, path / "model.safetensors")


def test_no_float_copy_of_the_weight_is_kept():
    lq = LQLinear.from_linear(_linear(), LQConfig(rank=4, format="nf4", seed=0))
    lq(_x(3, 128))
    held = list(lq.state_dict().values()) + list(lq.quantized.data.values())
    held += [v for m in lq.modules() for v in vars(m).values() if isinstance(v, torch.Tensor)]
    assert not any(t.is_floating_point() and t.numel() >= 64 * 128 for t in held)
    assert all(any(t is b for b in lq.weight.buffers()) for t in lq.quantized.data.values())


def test_quantized_minilm_compiles_fullgraph_equal_to_eager(minilm):
    torch._dynamo.reset()
    model, inputs = quantize_(minilm.minilm_model(), "nf4"), minilm.minilm_inputs()
    with torch.no_grad():
        want = model(**inputs).last_hidden_state
        assert torch.equal(torch.compile(model, fullgraph=True, backend="aot_eager")(**inputs).last_hidden_state, want)
    torch._dynamo.reset()


def test_exports_with_the_dequantize_ops_and_no_gradient_when_compiled():
    torch._dynamo.reset()
    lq = LQLinear.from_linear(_linear(), LQConfig(rank=4, format="nf4", seed=0))
    x = _x(3, 128)
    exported = torch.export.export(lq, (x,))
    assert "linalg_core.block_dequantize" in str(exported.graph)
    assert torch.equal(exported.module()(x), lq(x))
    y = torch.compile(lq, backend="aot_eager")(x.clone().requires_grad_())
    with pytest.raises(RuntimeError, match="inference-only"):
        y.sum().backward()
    torch._dynamo.reset()


class _WithTransientBuffer(torch.nn.Module):
    """A model with a non-persistent buffer (like BERT's embeddings.position_ids)."""

    def __init__(self):
        super().__init__()
        self.register_buffer("positions", torch.arange(6), persistent=False)
        self.body = _mlp()

    def forward(self, x):
        return self.body(x) + self.positions.sum()


def test_load_model_skips_non_persistent_buffers_a_file_carries(tmp_path):
    """compress copies every tensor of the source file, BERT's non-persistent position_ids
    included: load_model does not read such an entry back (the architecture rebuilds it), but an
    entry of another shape, or one the architecture does not have, is still an error."""
    from safetensors.torch import load_file, save_file

    model = quantize_(_WithTransientBuffer(), "nf4")
    path = save_model(model, tmp_path / "m")
    state = load_file(str(path / "model.safetensors"))
    x = _x(2, 256)
    for extra, ok in (({"positions": torch.arange(6)}, True), ({"positions": torch.arange(7)}, False),
                      ({"elsewhere": torch.arange(6)}, False)):
        save_file({**state, **extra}, str(path / "model.safetensors"))
        if ok:
            with torch.no_grad():
                assert torch.equal(load_model(path, model=_WithTransientBuffer())(x), model(x))
        else:
            with pytest.raises(ValueError, match="unexpected"):
                load_model(path, model=_WithTransientBuffer())
