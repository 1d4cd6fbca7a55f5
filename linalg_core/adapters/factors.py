"""What the adapter initialisers return: the factor containers and peft's scaling rule."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from linalg_core import _validate


@dataclass(frozen=True)
class LoRAInit:
    """``W ≈ residual + scaling · B @ A``: what the two-factor initialisers return (PiSSA, OLoRA,
    MiLoRA, LoftQ), in peft's convention (``lora_A.weight = A``, ``lora_B.weight = B``).

    Attributes:
        A, B: the adapter's factors.
        residual: the new base weight (a QuantizedTensor for LoftQ), None when unchanged.
        scaling: peft's s = lora_alpha / r (or / √r with rsLoRA).

    Shape:
        A: (r, in);  B: (out, r);  residual: W's shape (None when the base is unchanged)

    Example:
        >>> import torch, linalg_core as lc
        >>> W = torch.randn(64, 48, generator=torch.Generator().manual_seed(0))
        >>> init = lc.adapters.pissa(W, 4, seed=0)
        >>> type(init).__name__, tuple(init.A.shape), tuple(init.B.shape), init.scaling
        ('LoRAInit', (4, 48), (64, 4), 1.0)
    """

    A: torch.Tensor
    B: torch.Tensor
    residual: torch.Tensor | None
    scaling: float


@dataclass(frozen=True)
class ThreeFactorInit:
    """``W ≈ residual + scaling · B @ N @ A`` (NLoRA, LoRA-SB, LoLDU).

    Attributes:
        A, N, B: the three factors (N is the r × r middle one; LoRA-SB and LoLDU train N only).
        residual: the new base weight, None when unchanged.
        scaling: peft's s.

    Shape:
        A: (r, in);  N: (r, r);  B: (out, r)

    Example:
        >>> import torch, linalg_core as lc
        >>> W = torch.randn(64, 48, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
        >>> init = lc.adapters.loldu(W, 4)
        >>> tuple(init.N.shape), torch.allclose(init.residual + init.scaling * init.B @ init.N @ init.A, W)
        ((4, 4), True)
    """

    A: torch.Tensor
    N: torch.Tensor
    B: torch.Tensor
    residual: torch.Tensor | None
    scaling: float


@dataclass(frozen=True)
class SVDInit:
    """``W = residual + U diag(S) Vh`` (SVFit trains S; SORSA trains U, S, Vh).

    Attributes:
        U, S, Vh: the principal singular triplets of W.
        residual: W − U diag(S) Vh, the frozen base.

    Shape:
        U: (out, r);  S: (r,);  Vh: (r, in);  residual: (out, in)

    Example:
        >>> import torch, linalg_core as lc
        >>> W = torch.randn(64, 48, generator=torch.Generator().manual_seed(0))
        >>> init = lc.adapters.svfit(W, 4, seed=0)
        >>> tuple(init.U.shape), torch.allclose(init.residual + init.U * init.S @ init.Vh, W, atol=1e-5)
        ((64, 4), True)
    """

    U: torch.Tensor
    S: torch.Tensor
    Vh: torch.Tensor
    residual: torch.Tensor


def scaling(lora_alpha: float, r: int, use_rslora: bool = False) -> float:
    """peft's adapter scaling: ``lora_alpha / r``, or ``lora_alpha / √r`` for rsLoRA (Kalajdzievski
    2023, "A Rank Stabilization Scaling Factor for Fine-Tuning with LoRA").

    Args:
        lora_alpha: peft's alpha, > 0.
        r: the adapter's rank.
        use_rslora: the rsLoRA rule.

    Returns:
        s as a Python float.

    Example:
        >>> import linalg_core as lc
        >>> lc.adapters.scaling(16, 4), lc.adapters.scaling(16, 4, use_rslora=True)
        (4.0, 8.0)
    """
    lora_alpha = _validate.real(lora_alpha, "lora_alpha", low=0, low_open=True)
    return lora_alpha / (math.sqrt(r) if use_rslora else r)
