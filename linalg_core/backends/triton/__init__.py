"""The ``triton`` backend: Triton kernels for the random streams and the sketching kernels.

Modules (each registers its ops in :mod:`linalg_core._ops` when imported):

* :mod:`.random` -- Philox4x32-10 in uint32 arithmetic (``random_uint32``, ``random_fill``),
  bit-identical to ``csrc/include/linalg_core/philox.h`` and the torch reference.
* :mod:`.sketch` -- the Walsh-Hadamard transform (``fwht``), the sparse-sign hash
  (``sparse_hash``) and its scatter-add (``sparse_apply``).
* :mod:`.quant` -- blockwise codebook quantization and dequantization (``block_quantize``,
  ``block_dequantize``).
* :mod:`.qmatmul` -- the DGQ A8W4 integer product (``dgq_matmul``), int8 ``tl.dot`` with the
  INT4 codes expanded in registers.

The kernels are written for CUDA GPUs. On CPU tensors they run only under Triton's interpreter
(``TRITON_INTERPRET=1``, set before ``triton`` is first imported) and only when the backend is
forced (``backend="triton"`` or ``LINALG_CORE_BACKEND=triton``): the interpreter is far slower
than the ``cpu`` and ``reference`` backends, so automatic dispatch never picks it for CPU
tensors. That is how the test suite checks these kernels on machines without a GPU.
"""

from __future__ import annotations

import os

import numpy as np
import torch

from linalg_core._ops import Key


def _check(key: Key) -> str | None:
    """Why the triton backend declines a call, or ``None`` (shared by every triton op)."""
    if key.device.type == "cuda":
        return None
    if key.forced and os.environ.get("TRITON_INTERPRET") == "1":
        return None
    return (f"runs on {key.device.type} tensors only under TRITON_INTERPRET=1 and when forced with "
            "backend='triton'")


def _on(device: torch.device):
    """Launch context: Triton launches on the current CUDA device, so make it ``device``'s. On the
    CPU the interpreter runs the kernel as NumPy operations: their floating-point warnings (inf * 0
    on a non-finite input the kernel counts, ...) are ignored, as the GPU's IEEE arithmetic is silent."""
    return torch.cuda.device(device) if device.type == "cuda" else np.errstate(all="ignore")


def _pow2(x: int) -> int:
    """Smallest power of two >= max(x, 1)."""
    return 1 << max(int(x) - 1, 0).bit_length()


# Launch options shared by every kernel: no FMA contraction, so results follow the reference's
# operation order (the interpreter ignores launch options).
LAUNCH = {"enable_fp_fusion": False}
