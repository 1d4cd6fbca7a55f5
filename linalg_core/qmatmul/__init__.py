"""DGQ A8W4: dual-grained INT4 → INT8 weights, INT8 activations, and the fused quantized matmul.

* :func:`dgq_quantize` → :class:`DGQWeight` (two-phase grid search of DGQ; ±127 guarantee).
* :func:`quantize_activations`, :func:`smooth_outliers` (percentile clipping folded into the
  producer of the activations).
* :func:`qmatmul` and :class:`DGQLinear`; op ``dgq_matmul`` with C++ (AVX512-VNNI, AMX, AVX-VNNI,
  AVX2, portable), CUDA, Triton and torch-reference backends, all bit-exact in the integer part.
"""

from linalg_core.qmatmul.activations import Smoothing, quantize_activations, smooth_outliers
from linalg_core.qmatmul.matmul import DGQLinear, cpu_path, qmatmul
from linalg_core.qmatmul.weight import K_MAX, DGQWeight, dgq_quantize
from linalg_core.quant.config import DGQConfig

__all__ = ["K_MAX", "DGQConfig", "DGQWeight", "dgq_quantize", "quantize_activations", "smooth_outliers", "Smoothing", "qmatmul",
           "DGQLinear", "cpu_path"]
