"""Adapter initialisers for parameter-efficient fine-tuning, per weight matrix (tensors in,
tensors out; W is (out, in) like ``nn.Linear.weight``): PiSSA, OLoRA, NLoRA, SVFit, SORSA,
MiLoRA. Built on :mod:`linalg_core.lowrank`.

Status: the per-matrix initialisers above. Not yet here (issue 4): LoRA-SB, LoLDU, EVA,
``allocate_ranks`` / ``nuclear_norm`` and the whole-model Hugging Face ``peft`` helper.
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
from linalg_core.adapters.eva import EVA, IncrementalSVD
from linalg_core.adapters.ranks import RankPlan, allocate_ranks, nuclear_norm
from linalg_core.adapters.whole_model import ModelInit, adapter_state, delta_as_lora, init_peft_model, save_as_lora

__all__ = ["LoRAInit", "SVDInit", "ThreeFactorInit", "scaling", "pissa", "olora", "nlora", "svfit", "sorsa",
           "milora", "lora_sb", "lora_sb_update", "loldu", "RankPlan", "allocate_ranks", "nuclear_norm", "EVA", "IncrementalSVD", "ModelInit", "init_peft_model", "adapter_state", "delta_as_lora", "save_as_lora"]
