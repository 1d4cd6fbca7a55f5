"""Training-time low-rank gradient projection: GaLore's projector with a warm-started basis
update (:class:`LowRankProjector`), drop-in replacements for galore-torch's optimizers
(:class:`GaLoreAdamW`, :class:`GaLoreAdafactor`: the same param-group keys ``rank``,
``update_proj_gap``, ``scale``, ``proj_type``) and the GradNormLoRP variant
(:class:`GradNormLoRPAdamW`: weight-normalised parameters, projected direction gradients,
optional 8-bit moments)."""

from linalg_core.optim.adafactor import GaLoreAdafactor
from linalg_core.optim.adamw import GaLoreAdamW, GradNormLoRPAdamW
from linalg_core.optim.projector import LowRankProjector, subspace_sines
from linalg_core.optim.state8bit import dequantize_state, quantize_state

__all__ = ["LowRankProjector", "subspace_sines", "GaLoreAdamW", "GaLoreAdafactor", "GradNormLoRPAdamW",
           "quantize_state", "dequantize_state"]
