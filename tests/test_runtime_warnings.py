"""Our code emits no RuntimeWarning on the inputs it is built to handle (issue 21).

The Triton kernels run on the CPU under Triton's interpreter as NumPy operations, where a
non-finite input the kernel counts (inf scaled by 1/inf = 0) raised NumPy's "invalid value"
warning; the GPU's IEEE arithmetic is silent, and so is the interpreter's launch now
(``backends.triton._on``).
"""

from __future__ import annotations

import os
import warnings

import pytest
import torch

from linalg_core import _ops
from linalg_core.quant import codebooks

pytestmark = pytest.mark.triton


def test_triton_quantize_of_non_finite_input_warns_nothing():
    pytest.importorskip("triton")
    if os.environ.get("TRITON_INTERPRET") != "1":
        pytest.skip("needs Triton's CPU interpreter (TRITON_INTERPRET=1)")
    x = torch.linspace(-1, 1, 96)
    x[[3, 40, 50]] = torch.tensor([float("inf"), -float("inf"), float("nan")])
    mid = codebooks.midpoints(torch.linspace(-1, 1, 16))  # 4-bit codes: the kernel scales x by 1/absmax
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        _, scales, bad = _ops.block_quantize(x, 32, mid, 4, None, None, backend="triton")
    assert int(bad) == 3
    assert torch.isinf(scales[0]) and scales[2] == x[64:].abs().max()  # the clean block is untouched
