"""What the adapter initialisers return: the factor containers and peft's scaling rule."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from linalg_core import _validate


@dataclass(frozen=True)
class LoRAInit:
    """``W ≈ residual + scaling · B @ A``.

    Shape:
        A: (r, in);  B: (out, r);  residual: W's shape (None when the base is unchanged)
    """

    A: torch.Tensor
    B: torch.Tensor
    residual: torch.Tensor | None
    scaling: float


@dataclass(frozen=True)
class ThreeFactorInit:
    """``W ≈ residual + scaling · B @ N @ A`` (NLoRA).

    Shape:
        A: (r, in);  N: (r, r);  B: (out, r)
    """

    A: torch.Tensor
    N: torch.Tensor
    B: torch.Tensor
    residual: torch.Tensor | None
    scaling: float


@dataclass(frozen=True)
class SVDInit:
    """``W = residual + U diag(S) Vh`` (SVFit trains S; SORSA trains U, S, Vh).

    Shape:
        U: (out, r);  S: (r,);  Vh: (r, in)
    """

    U: torch.Tensor
    S: torch.Tensor
    Vh: torch.Tensor
    residual: torch.Tensor


def scaling(lora_alpha: float, r: int, use_rslora: bool = False) -> float:
    """peft's adapter scaling: ``lora_alpha / r``, or ``lora_alpha / √r`` for rsLoRA."""
    lora_alpha = _validate.real(lora_alpha, "lora_alpha", low=0, low_open=True)
    return lora_alpha / (math.sqrt(r) if use_rslora else r)
