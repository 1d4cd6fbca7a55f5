"""Config objects: the adapter initialiser configs and their handler registry
(``init_peft_model(model, PiSSAConfig(...))``), the quantization configs (block formats, DGQConfig,
LQConfig) and ``quantize_weight``: validation of every field, pickling / repr / equality, the
registries (custom handlers included), bit-identity of the config form with the string / keyword
form, and the deprecation of the string form's EVA options."""

import copy
import dataclasses
import pickle
import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch

import linalg_core as lc
from linalg_core.adapters import config as C
from linalg_core.adapters import (EVAConfig, LoftQConfig, LoLDUConfig, LoRASBConfig, MiLoRAConfig, NLoRAConfig,
                                  OLoRAConfig, PiSSAConfig, QPiSSAConfig)
from linalg_core.quant import (GGUF, BnbNF4, DGQConfig, IntGroup, LQConfig, NormalFloat, QuantConfig,
                               quantize_weight, register_quantizer)
from linalg_core.quant import config as Q

# --- validation of every field ---------------------------------------------------------------------

UPD = {"x": torch.zeros(3, 2)}

BAD = [  # (factory, field, value shown in the message, exception)
    (lambda: PiSSAConfig(niter=-1), "PiSSAConfig.niter", "-1", ValueError),
    (lambda: PiSSAConfig(niter="fast"), "PiSSAConfig.niter", "'fast'", ValueError),
    (lambda: PiSSAConfig(niter=1.5), "PiSSAConfig.niter", "1.5", TypeError),
    (lambda: PiSSAConfig(niter=True), "PiSSAConfig.niter", "True", TypeError),
    (lambda: PiSSAConfig(seed=-1), "PiSSAConfig.seed", "-1", ValueError),
    (lambda: PiSSAConfig(seed=2**64), "PiSSAConfig.seed", str(2**64), ValueError),
    (lambda: PiSSAConfig(seed="0"), "PiSSAConfig.seed", "'0'", TypeError),
    (lambda: PiSSAConfig(seed=1.0), "PiSSAConfig.seed", "1.0", TypeError),
    (lambda: NLoRAConfig(mode="svd"), "NLoRAConfig.mode", "'svd'", ValueError),
    (lambda: NLoRAConfig(mode=1), "NLoRAConfig.mode", "1", TypeError),
    (lambda: NLoRAConfig(niter="auto"), "NLoRAConfig.niter", "'auto'", TypeError),
    (lambda: NLoRAConfig(niter=-2), "NLoRAConfig.niter", "-2", ValueError),
    (lambda: NLoRAConfig(seed=-5), "NLoRAConfig.seed", "-5", ValueError),
    (lambda: LoRASBConfig(None), "LoRASBConfig.updates", "None", ValueError),
    (lambda: LoRASBConfig([torch.zeros(2, 2)]), "LoRASBConfig.updates", "list", TypeError),
    (lambda: LoRASBConfig({1: torch.zeros(2, 2)}), "LoRASBConfig.updates", "1", TypeError),
    (lambda: LoRASBConfig({"x": torch.zeros(3)}), "LoRASBConfig.updates['x']", "(3,)", TypeError),
    (lambda: LoRASBConfig({"x": 3.0}), "LoRASBConfig.updates['x']", "float", TypeError),
    (lambda: LoRASBConfig(UPD, niter=-1), "LoRASBConfig.niter", "-1", ValueError),
    (lambda: LoRASBConfig(UPD, niter="x"), "LoRASBConfig.niter", "'x'", ValueError),
    (lambda: LoRASBConfig(UPD, seed=-1), "LoRASBConfig.seed", "-1", ValueError),
    (lambda: EVAConfig(None), "EVAConfig.batches", "None", ValueError),
    (lambda: EVAConfig(5), "EVAConfig.batches", "int", TypeError),
    (lambda: EVAConfig("abc"), "EVAConfig.batches", "str", TypeError),
    (lambda: EVAConfig([], forward=3), "EVAConfig.forward", "int", TypeError),
    (lambda: EVAConfig([], rho=0.5), "EVAConfig.rho", "0.5", ValueError),
    (lambda: EVAConfig([], rho="2"), "EVAConfig.rho", "'2'", TypeError),
    (lambda: EVAConfig([], rho=float("nan")), "EVAConfig.rho", "nan", ValueError),
    (lambda: EVAConfig([], tau=1.5), "EVAConfig.tau", "1.5", ValueError),
    (lambda: EVAConfig([], tau=None), "EVAConfig.tau", "None", TypeError),
    (lambda: EVAConfig([], whiten=1), "EVAConfig.whiten", "1", TypeError),
    (lambda: EVAConfig([], center="yes"), "EVAConfig.center", "'yes'", TypeError),
    (lambda: EVAConfig([], max_batches=0), "EVAConfig.max_batches", "0", ValueError),
    (lambda: EVAConfig([], max_batches=2.0), "EVAConfig.max_batches", "2.0", TypeError),
    (lambda: EVAConfig([], adjust_scaling_factors=None), "EVAConfig.adjust_scaling_factors", "None", TypeError),
    (lambda: EVAConfig([], seed=-1), "EVAConfig.seed", "-1", ValueError),
    (lambda: LQConfig(0), "LQConfig.rank", "0", ValueError),
    (lambda: LQConfig(1.5), "LQConfig.rank", "1.5", TypeError),
    (lambda: LQConfig(4, 3), "LQConfig.format", "int", TypeError),
    (lambda: LQConfig(4, "nf5"), "LQConfig.format", "'nf5'", ValueError),
    (lambda: LQConfig(4, iters=0), "LQConfig.iters", "0", ValueError),
    (lambda: LQConfig(4, tol=-1e-3), "LQConfig.tol", "-0.001", ValueError),
    (lambda: LQConfig(4, tol="small"), "LQConfig.tol", "'small'", TypeError),
    (lambda: LQConfig(4, init="random"), "LQConfig.init", "'random'", ValueError),
    (lambda: LQConfig(4, niter=-1), "LQConfig.niter", "-1", ValueError),
    (lambda: LQConfig(4, seed=-1), "LQConfig.seed", "-1", ValueError),
    (lambda: DGQConfig(group_size=64), "DGQConfig.group_size", "64", ValueError),
    (lambda: DGQConfig(group_size=0), "DGQConfig.group_size", "0", ValueError),
    (lambda: DGQConfig(group_size=128.0), "DGQConfig.group_size", "128.0", TypeError),
    (lambda: DGQConfig(search="grid"), "DGQConfig.search", "'grid'", ValueError),
    (lambda: DGQConfig(pad=1), "DGQConfig.pad", "1", TypeError),
    (lambda: DGQConfig(granularity="row"), "DGQConfig.granularity", "'row'", ValueError),
    (lambda: DGQConfig(clip_percentile=0), "DGQConfig.clip_percentile", "0", ValueError),
    (lambda: DGQConfig(clip_percentile=101), "DGQConfig.clip_percentile", "101", ValueError),
    (lambda: DGQConfig(clip_percentile="99"), "DGQConfig.clip_percentile", "'99'", TypeError),
]


@pytest.mark.parametrize("factory, field, value, exc", BAD, ids=[f"{b[1]}={b[2]}" for b in BAD])
def test_every_field_is_validated_naming_field_and_value(factory, field, value, exc):
    with pytest.raises(exc) as info:
        factory()
    msg = str(info.value)
    assert field in msg and value in msg, msg


def test_accepted_values_are_normalised():
    assert PiSSAConfig(niter=np.int64(3), seed=torch.tensor(7)) == PiSSAConfig(niter=3, seed=7)
    assert type(PiSSAConfig(seed=np.uint64(2**64 - 1)).seed) is int
    e = EVAConfig((b for b in []), rho=2, tau=1, whiten=np.bool_(True), max_batches=np.int32(3))
    assert (e.rho, e.tau, e.whiten, e.max_batches) == (2.0, 1.0, True, 3)
    assert LQConfig(4, "nf3") == LQConfig(4, NormalFloat(bits=3)) and isinstance(LQConfig(4).format, NormalFloat)
    assert DGQConfig(group_size=np.int64(256), clip_percentile=99).group_size == 256
    g = torch.Generator().manual_seed(0)
    assert PiSSAConfig(seed=g).seed is g  # drawn once per run


def test_configs_are_frozen_and_keyword_only():
    with pytest.raises(dataclasses.FrozenInstanceError):
        PiSSAConfig().niter = 3
    with pytest.raises(dataclasses.FrozenInstanceError):
        LQConfig(4).rank = 5
    with pytest.raises(TypeError):
        PiSSAConfig(2)  # options are keyword-only
    with pytest.raises(TypeError):
        OLoRAConfig(seed=0)  # a deterministic method has no seed
    with pytest.raises(TypeError):
        EVAConfig([], 2.0)


def test_updates_mapping_is_copied_not_its_arrays():
    u = {"a": torch.zeros(2, 3)}
    c = LoRASBConfig(u)
    u["b"] = torch.zeros(1, 1)
    assert list(c.updates) == ["a"] and c.updates["a"] is u["a"]


# --- pickling, repr, equality --------------------------------------------------------------------

CONFIGS = [PiSSAConfig(), PiSSAConfig(niter=3, seed=11), OLoRAConfig(), MiLoRAConfig(),
           NLoRAConfig(mode="paper", niter=1),
           LoLDUConfig(), LoRASBConfig({"x": torch.ones(3, 2)}, seed=1), EVAConfig([torch.ones(2, 4)] * 3, rho=1.5),
           LQConfig(8, "int4", iters=3, init="quant", seed=2), LQConfig(4, GGUF("q4_0")),
           DGQConfig(group_size=256, search="rtn", pad=True, granularity="tensor", clip_percentile=99.5),
           NormalFloat(bits=3), BnbNF4(double_quant=False), IntGroup(bits=8, symmetric=False)]


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: type(c).__name__)
def test_pickle_round_trip_and_repr(config):
    back = pickle.loads(pickle.dumps(config))
    assert type(back) is type(config) and back == config and repr(back) == repr(config)
    assert hash(back) == hash(config)
    assert copy.deepcopy(config) == config


@pytest.mark.parametrize("config", [c for c in CONFIGS if not isinstance(c, (LoRASBConfig, EVAConfig))],
                         ids=lambda c: type(c).__name__)
def test_repr_evaluates_to_an_equal_config(config):
    namespace = {c.__name__: c for c in (PiSSAConfig, OLoRAConfig, MiLoRAConfig, NLoRAConfig, LoLDUConfig, LQConfig,
                                         DGQConfig, NormalFloat, BnbNF4, IntGroup, GGUF)}
    assert eval(repr(config), namespace) == config


def test_data_fields_are_summarised_in_repr_and_ignored_by_equality():
    u1, u2 = {"a": torch.zeros(2, 2), "b": torch.zeros(2, 2)}, {"a": torch.ones(5, 5)}
    assert repr(LoRASBConfig(u1, seed=3)) == "LoRASBConfig(updates=<dict of 2 entries>, niter='auto', seed=3)"
    assert LoRASBConfig(u1) == LoRASBConfig(u2) and hash(LoRASBConfig(u1)) == hash(LoRASBConfig(u2))
    assert repr(EVAConfig(iter([]))).startswith("EVAConfig(batches=<list_iterator>, forward=None, rho=2.0")
    assert PiSSAConfig(seed=1) != PiSSAConfig(seed=2) and EVAConfig([], tau=0.5) != EVAConfig([], tau=0.6)


def test_block_formats_dgq_and_lq_are_configs_of_one_kind():
    for c in (NormalFloat(), BnbNF4(), IntGroup(), GGUF(), LQConfig(2), DGQConfig()):
        assert isinstance(c, QuantConfig) and dataclasses.is_dataclass(c)
    assert issubclass(NormalFloat, QuantConfig) and not isinstance(PiSSAConfig(), QuantConfig)


# --- a tiny peft model: Linear layers (two of equal shape: a batched PiSSA group) and GPT-2
# Conv1D layers (fan_in_fan_out) --------------------------------------------------------------------

peft = pytest.importorskip("peft")


class Net(torch.nn.Module):
    def __init__(self):
        from transformers.pytorch_utils import Conv1D

        super().__init__()
        self.a, self.b, self.c = torch.nn.Linear(32, 48), torch.nn.Linear(32, 48), torch.nn.Linear(48, 40)
        self.d, self.e = Conv1D(24, 40), Conv1D(24, 24)

    def forward(self, x):
        return self.e(self.d(self.c(self.a(x) + self.b(x))))


LAYERS = [f"base_model.model.{n}" for n in "abcde"]


def tiny(dtype=torch.float32, r=4, rslora=False):
    pytest.importorskip("transformers")
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # peft: fan_in_fan_out set for Conv1D
        return peft.get_peft_model(Net().to(dtype), peft.LoraConfig(r=r, lora_alpha=7, use_rslora=rslora,
                                                                     target_modules=list("abcde")))


def state(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def assert_same_model(m1, m2):
    s1, s2 = state(m1), state(m2)
    assert s1.keys() == s2.keys()
    for k in s1:
        assert torch.equal(s1[k], s2[k]), k


def stored_shapes():
    return {n: tuple(tiny().get_submodule(n).get_base_layer().weight.shape) for n in LAYERS}


def updates(dtype=torch.float32):
    g = torch.Generator().manual_seed(1)
    return {n: torch.randn(s, generator=g).to(dtype) for n, s in stored_shapes().items()}


def batches(dtype=torch.float32):
    g = torch.Generator().manual_seed(2)
    return [torch.randn(8, 32, generator=g).to(dtype) for _ in range(6)]


def forms(method, dtype):
    """(string-form options, the equivalent config) of every built-in method."""
    if method == "pissa":
        return dict(seed=5, niter=1), PiSSAConfig(seed=5, niter=1)
    if method == "olora":
        return dict(seed=0), OLoRAConfig()
    if method == "milora":
        return {}, MiLoRAConfig()
    if method == "nlora":
        return dict(seed=9), NLoRAConfig(seed=9)
    if method == "loldu":
        return {}, LoLDUConfig()
    if method == "lora_sb":
        u = updates(dtype)
        return dict(seed=2, updates=u), LoRASBConfig(u, seed=2)
    if method == "loftq":
        return dict(seed=3, iters=2), LoftQConfig(seed=3, iters=2)
    if method == "qpissa":
        return dict(seed=6, format="nf4"), QPiSSAConfig(format="nf4", seed=6)
    b = batches(dtype)
    return dict(seed=4, batches=b, rho=2, tau=0.9), EVAConfig(b, rho=2, tau=0.9, seed=4)


@pytest.mark.filterwarnings("ignore:EVA. layer")
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("method", lc.adapters.whole_model.METHODS)
def test_config_form_is_bit_identical_to_the_string_form(method, dtype):
    options, config = forms(method, dtype)
    by_name, by_config = tiny(dtype, rslora=True), tiny(dtype, rslora=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # EVA's options in the string form
        r1 = lc.adapters.init_peft_model(by_name, method, progress=False, **options)
    r2 = lc.adapters.init_peft_model(by_config, config, progress=False)
    assert (r1.method, r1.layers, r1.removed) == (r2.method, r2.layers, r2.removed) == (method, r2.layers, [])
    assert r1.config == r2.config == config  # the seeds were ints already
    assert_same_model(by_name, by_config)
    if method != "eva":
        assert set(r2.layers) == set(LAYERS)
    fresh = state(tiny(dtype, rslora=True))
    changed = [k for k, v in state(by_config).items() if k not in fresh or not torch.equal(v, fresh[k])]
    assert any("lora_B" in k for k in changed) or method == "eva"


@pytest.mark.parametrize("method", ["pissa", "olora", "nlora", "loldu", "lora_sb"])
def test_executor_tasks_equal_the_serial_run(method):
    # regression: a task's residual of an (in, out)-stored Conv1D weight (layers d, e) was a GEMM
    # into another layout than the serial run's in-place one, and rounded differently
    _, config = forms(method, torch.float32)
    serial, parallel = tiny(), tiny()
    lc.adapters.init_peft_model(serial, config, progress=False)
    with ThreadPoolExecutor(2) as pool:
        lc.adapters.init_peft_model(parallel, config, progress=False, executor=pool)
    assert_same_model(serial, parallel)


def test_lora_sb_tasks_get_only_their_layers_updates():
    config = LoRASBConfig(updates(), seed=0)
    part = config.for_layers((LAYERS[1],))
    assert list(part.updates) == [LAYERS[1]] and part.updates[LAYERS[1]] is config.updates[LAYERS[1]]
    assert part == config and PiSSAConfig().for_layers(("x",)) == PiSSAConfig()


def test_a_mis_shaped_update_is_refused_before_any_layer_changes():
    # regression: the shape was checked layer by layer while filling, after earlier layers had
    # received their factors
    u = updates()
    u[LAYERS[-1]] = torch.zeros(3, 3)
    model = tiny()
    before = state(model)
    with pytest.raises(ValueError, match=r"updates\['base_model.model.e'\] has shape \(3, 3\)"):
        lc.adapters.init_peft_model(model, LoRASBConfig(u), progress=False)
    after = state(model)
    assert all(torch.equal(before[k], after[k]) for k in before)
    del u[LAYERS[0]]
    with pytest.raises(ValueError, match="updates has no entry for layers"):
        lc.adapters.init_peft_model(model, LoRASBConfig(u), progress=False)


def test_nlora_paper_mode_keeps_the_base_weights():
    model, ref = tiny(), tiny()
    lc.adapters.init_peft_model(model, NLoRAConfig(mode="paper"), progress=False)
    for name in LAYERS:
        m = model.get_submodule(name)
        W = m.get_base_layer().weight
        assert torch.equal(W, ref.get_submodule(name).get_base_layer().weight)
        Wt = W.T if m.fan_in_fan_out else W
        torch.testing.assert_close(m.lora_B["default"].weight, Wt[:, :4] @ Wt[:4, :4])
        torch.testing.assert_close(m.lora_A["default"].weight, Wt[:4, :])


def test_a_fresh_seed_is_drawn_once_and_recorded():
    first, again = tiny(), tiny()
    report = lc.adapters.init_peft_model(first, PiSSAConfig(), progress=False)
    assert type(report.config.seed) is int and report.config == PiSSAConfig(seed=report.config.seed)
    lc.adapters.init_peft_model(again, report.config, progress=False)
    assert_same_model(first, again)
    g = torch.Generator().manual_seed(3)
    r = lc.adapters.init_peft_model(tiny(), NLoRAConfig(seed=g), progress=False)
    assert type(r.config.seed) is int
    assert lc.adapters.init_peft_model(tiny(), OLoRAConfig(), progress=False).config == OLoRAConfig()


# --- the string form: a shortcut; EVA's options deprecated ------------------------------------------

@pytest.mark.filterwarnings("ignore:EVA. layer")
def test_string_form_eva_options_warn_and_point_to_evaconfig():
    with pytest.warns(DeprecationWarning, match=r"EVAConfig") as rec:
        lc.adapters.init_peft_model(tiny(), "eva", batches=batches(), rho=2, tau=0.9, seed=4, progress=False)
    assert "batches=..." in str(rec[0].message) and "rho=..." in str(rec[0].message)
    assert rec[0].filename == __file__  # the warning points at the caller
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        lc.adapters.init_peft_model(tiny(), EVAConfig(batches(), rho=2, tau=0.9, seed=4), progress=False)


def test_string_form_shortcuts_and_mistakes():
    with warnings.catch_warnings():
        # seed is accepted by every method, niter / updates / mode where they apply
        warnings.simplefilter("error", DeprecationWarning)
        for method in ("olora", "milora", "loldu"):
            lc.adapters.init_peft_model(tiny(), method, seed=0, progress=False)
        lc.adapters.init_peft_model(tiny(), "pissa", niter=2, seed=0, progress=False)
        lc.adapters.init_peft_model(tiny(), "nlora", niter=1, mode="paper", progress=False)
    with pytest.warns(DeprecationWarning, match=r"'olora' takes no niter= \(options of OLoRAConfig: none\): ignored"):
        lc.adapters.init_peft_model(tiny(), "olora", niter=2, progress=False)
    with pytest.warns(DeprecationWarning, match="method="):
        r = lc.adapters.init_peft_model(tiny(), method="olora", progress=False)
    assert r.method == "olora"
    with pytest.raises(TypeError, match="unexpected keyword argument"):
        lc.adapters.init_peft_model(tiny(), "pissa", nitre=2)
    with pytest.raises(TypeError, match=r"takes the options in the config, got seed="):
        lc.adapters.init_peft_model(tiny(), PiSSAConfig(), seed=0)
    with pytest.raises(TypeError, match="InitConfig"):
        lc.adapters.init_peft_model(tiny(), 3)
    with pytest.raises(ValueError, match="method='svd' is not one of"):
        lc.adapters.init_peft_model(tiny(), "svd")
    with pytest.raises(ValueError, match=r"PiSSAConfig.niter=-1"):
        lc.adapters.init_peft_model(tiny(), "pissa", niter=-1)
    with pytest.raises(ValueError, match="no executor"):
        lc.adapters.init_peft_model(tiny(), EVAConfig(batches()), executor=object())
    with pytest.raises(ValueError, match=r"EVAConfig.batches=None: EVA needs batches="):
        lc.adapters.init_peft_model(tiny(), "eva")
    with pytest.raises(ValueError, match=r"LoRASBConfig.updates=None: LoRA-SB needs updates="):
        lc.adapters.init_peft_model(tiny(), "lora_sb", seed=0)


# --- the initializer registry --------------------------------------------------------------------

@pytest.fixture
def registry(monkeypatch):
    """A copy of the registry for the test to add to."""
    monkeypatch.setattr(C, "_REGISTRY", C._REGISTRY.copy())
    return C


@dataclasses.dataclass(frozen=True, kw_only=True)
class ZerosConfig(lc.adapters.InitConfig):
    """A test method: A = scale (constant), B = 0, the base unchanged."""

    method = "zeros"
    scale: float = 1.0


def _zeros(config, unit):
    (m, n), r = unit.W.shape, unit.rank
    return lc.adapters.LoRAInit(torch.full((r, n), config.scale), torch.zeros(m, r), None, unit.scaling)


def test_builtin_registry():
    assert set(C.methods()) >= set(lc.adapters.whole_model.METHODS)
    for method in lc.adapters.whole_model.METHODS:
        cls = C.config_type(method)
        assert cls.method == method and C.initializer_for(cls.__new__(cls)).config_type is cls
    assert C.initializer_for(PiSSAConfig()).batch and C.initializer_for(EVAConfig([])).scope == "model"


def test_a_custom_handler_registered_by_a_test(registry):
    registry.register_initializer(ZerosConfig)(_zeros)
    ref = tiny()
    for form in (ZerosConfig(scale=0.5), "zeros"):
        model = tiny()
        kw = {"scale": 0.5} if form == "zeros" else {}
        report = lc.adapters.init_peft_model(model, form, progress=False, **kw)
        assert report.method == "zeros" and report.layers == dict.fromkeys(LAYERS, 4)
        for name in LAYERS:
            m = model.get_submodule(name)
            assert torch.equal(m.lora_A["default"].weight, torch.full_like(m.lora_A["default"].weight, 0.5))
            assert torch.equal(m.get_base_layer().weight, ref.get_submodule(name).get_base_layer().weight)
    with ThreadPoolExecutor(2) as pool:
        model = tiny()
        lc.adapters.init_peft_model(model, ZerosConfig(scale=0.5), progress=False, executor=pool)
        assert float(model.get_submodule(LAYERS[0]).lora_A["default"].weight.detach()[0, 0]) == 0.5


def test_a_subclass_uses_its_base_handler_and_bad_results_are_refused(registry):
    @dataclasses.dataclass(frozen=True, kw_only=True)
    class MyPiSSA(PiSSAConfig):
        method = ""

    a, b = tiny(), tiny()
    lc.adapters.init_peft_model(a, MyPiSSA(seed=1), progress=False)
    lc.adapters.init_peft_model(b, PiSSAConfig(seed=1), progress=False)
    assert_same_model(a, b)

    @dataclasses.dataclass(frozen=True)
    class Broken(lc.adapters.InitConfig):
        pass

    with pytest.raises(TypeError, match="no initializer is registered for Broken"):
        lc.adapters.init_peft_model(tiny(), Broken())
    registry.register_initializer(Broken)(lambda config, unit: torch.zeros(2))
    with pytest.raises(TypeError, match="expected a LoRAInit, a ThreeFactorInit or singular triplets"):
        lc.adapters.init_peft_model(tiny(), Broken(), progress=False)


def test_a_custom_model_scope_handler(registry):
    @dataclasses.dataclass(frozen=True)
    class DropLast(lc.adapters.InitConfig):
        method = "drop_last"

    @registry.register_initializer(DropLast, scope="model")
    def _drop(config, run):
        run.removed.append(LAYERS[-1])
        return {n: run.layers[n].r[run.adapter] for n in LAYERS[:-1]}

    report = lc.adapters.init_peft_model(tiny(), "drop_last", progress=False)
    assert report.removed == [LAYERS[-1]] and list(report.layers) == LAYERS[:-1]
    with pytest.raises(ValueError, match="no executor"):
        lc.adapters.init_peft_model(tiny(), DropLast(), executor=object())


def test_registration_mistakes(registry):
    registry.register_initializer(ZerosConfig)(_zeros)
    with pytest.raises(ValueError, match="already has a handler"):
        registry.register_initializer(ZerosConfig)(_zeros)
    registry.register_initializer(ZerosConfig, replace=True)(_zeros)

    @dataclasses.dataclass(frozen=True)
    class Other(lc.adapters.InitConfig):
        method = "zeros"

    with pytest.raises(ValueError, match="'zeros' of Other is already ZerosConfig's"):
        registry.register_initializer(Other)
    with pytest.raises(TypeError, match="subclass of InitConfig"):
        registry.register_initializer(DGQConfig)
    with pytest.raises(ValueError, match="batch=True needs scope='layer'"):
        registry.register_initializer(Other, scope="model", batch=True)
    with pytest.raises(ValueError, match="scope='all'"):
        registry.register_initializer(Other, scope="all")
    with pytest.raises(TypeError, match="callable"):
        registry.register_initializer(ZerosConfig, replace=True)(3)


# --- quantization configs: the entry points take them, bit-identically -------------------------------

def weight(m=64, n=256, seed=0):
    return torch.randn(m, n, generator=torch.Generator().manual_seed(seed))


def assert_same_quantized(q1, q2):
    s1, s2 = q1.state_dict(), q2.state_dict()
    assert s1.keys() == s2.keys() and all(torch.equal(s1[k], s2[k]) for k in s1)


@pytest.mark.parametrize("name", ["nf2", "nf3", "nf4", "nf8", "bnb-nf4", "int4", "int4-asym", "int8", "q4_0", "q8_0"])
def test_quantize_weight_of_a_format_equals_quantize(name):
    W = weight()
    ref = lc.quant.quantize(W, name)
    fmt = lc.quant.parse(name)
    assert isinstance(fmt, QuantConfig)
    for q in (quantize_weight(W, name), quantize_weight(W, fmt), lc.quant.quantize(W, fmt)):
        assert q.format == fmt
        assert_same_quantized(q, ref)


@pytest.mark.parametrize("init", ["lowrank", "quant"])
def test_lq_decompose_takes_an_lqconfig(init):
    W, F = weight(), weight(seed=1).abs() + 0.1
    kw = dict(iters=3, tol=0.0, init=init, niter=1, seed=4)
    config = LQConfig(8, IntGroup(bits=3, group_size=64), **kw)
    for fisher in (None, F):
        ref = lc.quant.lq_decompose(W, 8, IntGroup(bits=3, group_size=64), fisher=fisher, **kw)
        for res in (lc.quant.lq_decompose(W, config, fisher=fisher), quantize_weight(W, config, fisher=fisher)):
            assert res.history == ref.history and res.best == ref.best
            assert torch.equal(res.L1, ref.L1) and torch.equal(res.L2, ref.L2)
            assert_same_quantized(res.Q, ref.Q)
    with pytest.raises(TypeError, match="takes its options from the config"):
        lc.quant.lq_decompose(W, config, iters=2)


@pytest.mark.parametrize("search, pad, K", [("two_phase", False, 256), ("rtn", True, 200)])
def test_dgq_quantize_takes_a_dgqconfig(search, pad, K):
    W, X = weight(32, K), weight(16, K, seed=3)
    config = DGQConfig(group_size=128, search=search, pad=pad)
    ref = lc.qmatmul.dgq_quantize(W, group_size=128, search=search, pad=pad, calib=X)
    for w in (lc.qmatmul.dgq_quantize(W, config, calib=X), quantize_weight(W, config, calib=X)):
        s1, s2 = w.state_dict(), ref.state_dict()
        assert all(torch.equal(s1[k], s2[k]) for k in s1)
    with pytest.raises(TypeError, match="takes group_size, search and pad from the config"):
        lc.qmatmul.dgq_quantize(W, config, group_size=256)
    with pytest.raises(TypeError, match="DGQConfig, got LQConfig"):
        lc.qmatmul.dgq_quantize(W, LQConfig(4))
    if not pad:
        with pytest.raises(ValueError, match="pad=True"):
            quantize_weight(weight(32, 200), config)


def test_quantizer_registry(monkeypatch):
    monkeypatch.setattr(Q, "_QUANTIZERS", Q._QUANTIZERS.copy())

    @dataclasses.dataclass(frozen=True)
    class Sign(QuantConfig):
        pass

    with pytest.raises(TypeError, match="no quantizer is registered for Sign"):
        quantize_weight(weight(), Sign())
    register_quantizer(Sign)(lambda W, config: torch.sign(W))
    assert torch.equal(quantize_weight(weight(), Sign()), torch.sign(weight()))
    with pytest.raises(ValueError, match="already has a handler"):
        register_quantizer(Sign)(torch.sign)
    with pytest.raises(TypeError, match="subclass of QuantConfig"):
        register_quantizer(PiSSAConfig)
    with pytest.raises(TypeError, match="must be a QuantConfig"):
        quantize_weight(weight(), 4)
    with pytest.raises(ValueError, match="format must be a Format or one of"):
        quantize_weight(weight(), "nf5")
    assert Q.quantizer_for(NormalFloat()) is lc.quant.quantize
    assert Q.quantizer_for(LQConfig(2)) is lc.quant.lq_decompose
    assert Q.quantizer_for(DGQConfig()) is lc.qmatmul.dgq_quantize
