"""Quantization codecs and low-rank-plus-quantized decomposition.

* Formats (:mod:`.formats`): :class:`NormalFloat` (NF-k with LQ-LoRA's quantized scales),
  :class:`BnbNF4` (bitsandbytes NF4, bit-exact), :class:`IntGroup` (INT-k groups),
  :class:`GGUF` (llama.cpp Q4_0 / Q8_0, byte-exact), all through :func:`quantize` into a
  :class:`QuantizedTensor` (exact bits per parameter, safetensors round trips, matrix-free products).
* Configs (:mod:`.config`): the formats, :class:`DGQConfig` and :class:`LQConfig` are
  :class:`QuantConfig` objects; :func:`quantize_weight` quantizes one weight with any of them through
  a registry of handlers keyed by config type (:func:`register_quantizer` adds a kind).
* The kernels: blockwise nearest-level coding (bucketize against the level midpoints, packed at
  the code width) and dequantization, in C++ (per-ISA SIMD, OpenMP), CUDA and Triton, with a
  torch reference (ops ``block_quantize`` / ``block_dequantize``).
"""

from linalg_core.quant.allocate import AllocationPlan, allocate_bits, default_candidates
from linalg_core.quant.compress import Calibration, builtin_calibration_text, calibrate, compress_model, load_compressed
from linalg_core.quant.config import DGQConfig, LQConfig, QuantConfig, quantize_weight, register_quantizer
from linalg_core.quant.formats import GGUF, BnbNF4, Format, IntGroup, NormalFloat, parse
from linalg_core.quant.lq import LQResult, lq_decompose
from linalg_core.quant.model import load_model, model_bits_per_weight, quantize_, quantized_layers, save_model
from linalg_core.quant.modules import LQLinear, QuantizedWeight, QuantLinear
from linalg_core.quant.tensor import QuantizedTensor, quantize

__all__ = ["Format", "NormalFloat", "BnbNF4", "IntGroup", "GGUF", "parse", "QuantizedTensor", "quantize", "LQResult",
           "lq_decompose", "allocate_bits", "AllocationPlan", "default_candidates",
           "compress_model", "load_compressed", "QuantConfig", "DGQConfig", "LQConfig", "quantize_weight",
           "register_quantizer", "Calibration", "calibrate", "builtin_calibration_text"]
__all__ += ["QuantLinear", "LQLinear", "QuantizedWeight", "quantize_", "quantized_layers", "model_bits_per_weight",
            "save_model", "load_model"]

from linalg_core.quant.export import to_bitsandbytes, to_gguf  # noqa: E402

__all__ += ["to_gguf", "to_bitsandbytes"]
