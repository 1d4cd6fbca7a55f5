"""8-bit optimizer moments: blockwise absmax quantization with log-spaced codebooks (the block-wise
dynamic quantization of Dettmers, Lewis, Shleifer and Zettlemoyer 2022, "8-bit Optimizers via
Block-wise Quantization", with a plain log-spaced map instead of their dynamic tree map), on
linalg_core's blockwise codebook kernels (:mod:`linalg_core.quant.blockwise`).

A moment x (any shape) is stored as one uint8 code per entry plus one float32 scale per block of
:data:`BLOCK` entries: x ≈ levels[code] · absmax(block). The first moment (signed) uses 0 and
±10^t for 127/128 log-spaced t in [−6, 0]; the second moment (non-negative) 0 and 255 log-spaced
values in [10^-8, 1]: relative rounding error ≤ ~6 % / ~4 % down to 10^-6 / 10^-8 of the block's
largest entry, where a linear int8 map would round the small second moments of a block to 0.
"""

from __future__ import annotations

import torch

from linalg_core.quant import blockwise

BLOCK = 256


def signed_levels() -> torch.Tensor:
    """The 256 sorted levels of the signed map: −10^t (127 values), 0, +10^t (128 values).

    Shape:
        out: (256,)
    """
    pos = torch.logspace(-6, 0, 128, dtype=torch.float64)
    neg = -torch.logspace(-6, 0, 127, dtype=torch.float64).flip(0)
    return torch.cat([neg, torch.zeros(1, dtype=torch.float64), pos]).float()


def unsigned_levels() -> torch.Tensor:
    """The 256 sorted levels of the non-negative map: 0 and 10^t for 255 values t in [−8, 0].

    Shape:
        out: (256,)
    """
    return torch.cat([torch.zeros(1, dtype=torch.float64), torch.logspace(-8, 0, 255, dtype=torch.float64)]).float()


_LEVELS: dict[bool, torch.Tensor] = {}


def levels(signed: bool) -> torch.Tensor:
    if signed not in _LEVELS:
        _LEVELS[signed] = signed_levels() if signed else unsigned_levels()
    return _LEVELS[signed]


def quantize_state(x: torch.Tensor, *, signed: bool) -> dict:
    """A moment tensor as {"codes": uint8 (numel,), "scales": float32 (blocks,), "shape", "signed"}.

    Args:
        x: the moment (float32/16, bf16; float64 is computed in float32); finite.
        signed: the signed map (first moments) or the non-negative one (second moments; x ≥ 0).

    Shape:
        x: any;  codes: (x.numel(),);  scales: (ceil(numel / 256),)

    Raises:
        ValueError: x has NaN or Inf; ``signed=False`` with a negative entry.

    Example:
        >>> import torch
        >>> q = quantize_state(torch.tensor([0.5, -1.0, 1e-3]), signed=True)
        >>> dequantize_state(q)
        tensor([ 5.2064e-01, -1.0000e+00,  9.4706e-04])
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
    if not signed and x.numel() and bool((x < 0).any()):
        raise ValueError(f"signed=False needs x >= 0, got a minimum of {float(x.min()):.6g}")
    codes, scales = blockwise.quantize(x, BLOCK, levels(signed), name="optimizer state")
    return {"codes": codes, "scales": scales, "shape": tuple(x.shape), "signed": bool(signed)}


def dequantize_state(q: dict, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The moment tensor of :func:`quantize_state`'s output: levels[code] · absmax of its block.

    Args:
        q: the dict :func:`quantize_state` returned.
        dtype: the result's dtype.

    Returns:
        The moment, within the codebook's rounding of the quantized one.

    Shape:
        codes: (numel,);  scales: (ceil(numel / 256),);  out: q["shape"]

    Example:
        >>> import torch
        >>> q = quantize_state(torch.tensor([[0.0, 0.25], [1.0, 4.0]]), signed=False)
        >>> v = dequantize_state(q, torch.float64)
        >>> v.shape, v.dtype, float(v[1, 1])
        (torch.Size([2, 2]), torch.float64, 4.0)
        >>> bool(((v - torch.tensor([[0.0, 0.25], [1.0, 4.0]], dtype=torch.float64)).abs() <= 0.04 * v).all())
        True
    """
    n = 1
    for s in q["shape"]:
        n *= s
    lv = levels(q["signed"])
    return blockwise.dequantize(q["codes"], lv, q["scales"], None, n, BLOCK, dtype).reshape(q["shape"])


def state_bytes(q) -> int:
    """Bytes held by a moment: a tensor's, or a quantized one's codes + scales."""
    if isinstance(q, torch.Tensor):
        return q.numel() * q.element_size()
    return q["codes"].numel() * q["codes"].element_size() + q["scales"].numel() * q["scales"].element_size()


__all__ = ["BLOCK", "quantize_state", "dequantize_state", "signed_levels", "unsigned_levels", "state_bytes"]
