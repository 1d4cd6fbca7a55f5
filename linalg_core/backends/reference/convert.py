"""Reference dtype conversion: torch's ``copy_`` and an ``isfinite`` count."""

from __future__ import annotations

import torch

from linalg_core import _ops
from linalg_core._arrays import FLOAT_DTYPES
from linalg_core.backends.reference.random import ANY_DEVICE


@_ops.convert.register("reference", devices=ANY_DEVICE, dtypes=FLOAT_DTYPES)
def convert(x, out):
    if out is not None:
        out.view(x.shape).copy_(x)
    return int((~torch.isfinite(x)).sum())
