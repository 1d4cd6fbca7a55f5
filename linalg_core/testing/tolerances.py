"""Tolerances for comparing results computed in different precisions or orders."""

from __future__ import annotations

import torch

# (rtol, atol) relative to the scale of the compared quantity, per storage dtype.
_TOL = {
    torch.float64: (1e-12, 1e-12),
    torch.float32: (2e-5, 2e-5),
    torch.float16: (2e-3, 2e-3),
    torch.bfloat16: (1.6e-2, 1.6e-2),
}


def tolerance(dtype: torch.dtype, *, growth: float = 1.0) -> dict[str, float]:
    """``dict(rtol=..., atol=...)`` for ``torch.testing.assert_close``; ``growth`` scales both
    for algorithms whose rounding error grows with size (e.g. log₂ N for a transform)."""
    rtol, atol = _TOL[dtype]
    return {"rtol": rtol * growth, "atol": atol * growth}
