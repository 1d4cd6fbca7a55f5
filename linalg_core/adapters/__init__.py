"""Adapter initialisers for parameter-efficient fine-tuning, built on :mod:`linalg_core.lowrank`.

Per weight matrix (tensors in, tensors out; W is (out, in) like ``nn.Linear.weight``): PiSSA,
OLoRA, NLoRA, SVFit, SORSA, MiLoRA, LoLDU, LoRA-SB; streaming EVA from activation batches;
rank allocation (WeLore, energy) and the nuclear norm. Whole models: :func:`init_peft_model`
fills a Hugging Face ``peft`` model's LoRA layers in place, :func:`save_as_lora` converts a
trained PiSSA-style adapter to a plain rank-2r LoRA. Each method's options are a frozen config
(:class:`PiSSAConfig`, :class:`OLoRAConfig`, :class:`MiLoRAConfig`, :class:`NLoRAConfig`,
:class:`LoLDUConfig`, :class:`LoRASBConfig`, :class:`EVAConfig`) run through a registry of
handlers (:func:`register_initializer` adds a method). Random-basis adapters: :class:`NOLALinear`
(NOLA: LoRA factors as seeded combinations of random bases regenerated on the fly, never stored).
"""

from linalg_core.adapters.init import (
    LoRAInit,
    SVDInit,
    ThreeFactorInit,
    loldu,
    lora_sb,
    lora_sb_update,
    milora,
    nlora,
    olora,
    pissa,
    scaling,
    sorsa,
    svfit,
)
from linalg_core.adapters.config import (
    EVAConfig,
    InitConfig,
    Initializer,
    LayerUnit,
    LoftQConfig,
    LoLDUConfig,
    LoRASBConfig,
    MiLoRAConfig,
    ModelRun,
    NLoRAConfig,
    OLoRAConfig,
    PiSSAConfig,
    QPiSSAConfig,
    register_initializer,
)
from linalg_core.adapters.eva import EVA, IncrementalSVD
from linalg_core.adapters.nola import (
    NOLAConfig,
    NOLAInit,
    NOLALinear,
    init_nola_model,
    load_nola_state_dict,
    nola_coeff_grad,
    nola_combine,
    nola_state_dict,
)
from linalg_core.adapters.quantized import loftq
from linalg_core.adapters.ranks import RankPlan, allocate_ranks, nuclear_norm
from linalg_core.adapters.whole_model import (
    ModelInit,
    QuantBase,
    adapter_state,
    dequantize_bases,
    delta_as_lora,
    init_peft_model,
    save_as_lora,
)

__all__ = ["LoRAInit", "SVDInit", "ThreeFactorInit", "scaling", "pissa", "olora", "loftq", "nlora", "svfit", "sorsa",
           "milora", "lora_sb", "lora_sb_update", "loldu", "RankPlan", "allocate_ranks", "nuclear_norm", "EVA",
           "IncrementalSVD", "ModelInit", "init_peft_model", "adapter_state", "delta_as_lora", "save_as_lora",
           "InitConfig", "PiSSAConfig", "OLoRAConfig", "MiLoRAConfig", "NLoRAConfig", "LoLDUConfig", "LoRASBConfig",
           "EVAConfig", "LoftQConfig", "QPiSSAConfig", "QuantBase", "dequantize_bases", "register_initializer",
           "Initializer", "LayerUnit", "ModelRun", "NOLALinear", "NOLAConfig", "NOLAInit", "init_nola_model",
           "nola_state_dict", "load_nola_state_dict", "nola_combine", "nola_coeff_grad"]
