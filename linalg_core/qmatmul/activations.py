"""INT8 activations for DGQ's A8W4 products: symmetric per-tensor or per-token quantization, and
the percentile clipping of the few outlier input channels (DGQ Section 3.3) with its scale folded
into the preceding weights."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from linalg_core import _validate


def quantize_activations(x, *, granularity: str = "token", clip_percentile: float | None = None):
    """x (…, K) → (x_q int8 (…, K), scale float32) with x ≈ scale · x_q, symmetric, x_q ∈ [−127, 127],
    in the caller's array type (DGQ's dynamic INT8 activations, Zhang et al. 2023).

    Args:
        x: float activations.
        granularity: ``"tensor"`` (one scale, shape ()) or ``"token"`` (one per row, shape (…, 1)).
        clip_percentile: clip |x| at this percentile (per tensor or per token) instead of its
            maximum, e.g. 99.9; None: the maximum (no clipping).

    Shape:
        x, x_q: (…, K);  scale: () for "tensor", (…, 1) for "token"

    Example:
        >>> import torch
        >>> from linalg_core.qmatmul import quantize_activations
        >>> x_q, s = quantize_activations(torch.tensor([[0.5, -1.0, 0.25]]))
        >>> x_q.tolist(), round(float(s), 6)
        ([[64, -127, 32]], 0.007874)
    """
    t, boundary = _validate.float_array(x, "x", min_ndim=1)
    _validate.check_finite(t, "x")
    if granularity not in ("tensor", "token"):
        raise ValueError(f"granularity={granularity!r} must be 'tensor' or 'token'")
    t = t if t.dtype == torch.float32 else t.to(torch.float32)
    a = t.abs()
    if clip_percentile is None:
        amax = a.amax() if granularity == "tensor" else a.amax(-1, keepdim=True)
    else:
        q = _validate.real(clip_percentile, "clip_percentile", low=0, high=100, low_open=True) / 100
        amax = torch.quantile(a.flatten(), q) if granularity == "tensor" else torch.quantile(a, q, dim=-1, keepdim=True)
    scale = amax.clamp_(min=torch.finfo(torch.float32).tiny).div_(127)
    x_q = torch.div(t, scale).round_().clamp_(-127, 127).to(torch.int8)
    return boundary.out((x_q, scale))


@dataclass(frozen=True)
class Smoothing:
    """x' = x · t and W' = W · diag(1/t) for per-input-channel factors t (K,) (1 except on the
    clipped outlier channels), so x' W'ᵀ = x Wᵀ; t is folded into whatever produces x.

    Attributes:
        factors: t, float32 (K,), in (0, 1].
        channels: indices of the scaled (outlier) channels.

    Build it with :func:`smooth_outliers` (DGQ's percentile clipping).

    Shape:
        factors: (K,);  channels: (c,);  x: (…, K);  W: (N, K)

    Example:
        >>> import torch
        >>> from linalg_core.qmatmul import smooth_outliers
        >>> calib = torch.randn(64, 256, generator=torch.Generator().manual_seed(1))
        >>> calib[:, 3] *= 50
        >>> s = smooth_outliers(calib)
        >>> 3 in s.channels.tolist(), tuple(s.factors.shape)
        (True, (256,))
        >>> W, x = torch.randn(8, 256), calib[:2]
        >>> torch.allclose(s.activations(x) @ s.weight(W).T, x @ W.T, rtol=1e-4, atol=1e-3)
        True
    """

    factors: torch.Tensor
    channels: torch.Tensor

    def activations(self, x: torch.Tensor) -> torch.Tensor:
        """x (…, K) → x · t (what the producer of x gives once t is folded into it)."""
        return x * self.factors.to(x.dtype)

    def weight(self, W: torch.Tensor) -> torch.Tensor:
        """W (N, K) → W · diag(1/t) (the layer that consumes x)."""
        return W / self.factors.to(W.dtype)

    def fold_into_previous(self, weight: torch.Tensor, bias: torch.Tensor | None = None):
        """The producer of x scaled by t: a Linear's (K, ·) weight rows and bias, or a LayerNorm's
        (K,) weight and bias. Returns the new (weight, bias); inputs are not modified.

        Args:
            weight: the producer's weight: a Linear's (K, ·) or a LayerNorm's (K,).
            bias: its bias (K,), or None.

        Returns:
            ``(weight · t, bias · t)`` (bias None when it was None).

        Shape:
            weight: (K, ·) or (K,);  bias: (K,)
        """
        t = self.factors.to(weight.dtype)
        w = weight * (t if weight.dim() == 1 else t[:, None])
        return w, (None if bias is None else bias * t.to(bias.dtype))


def smooth_outliers(calib, *, fraction: float = 0.005, percentile: float = 99.5) -> Smoothing:
    """DGQ's percentile clipping: the top ``fraction`` of input channels by calibration maximum
    |x| are scaled down to the ``percentile`` of the channel maxima (t_k = P / max_k |x_k|).

    Args:
        calib: (T, K) calibration activations of the layer's input.
        fraction: share of channels treated as outliers (DGQ: ~0.5 %; at least one).
        percentile: the level outlier channels are brought down to.

    Returns:
        :class:`Smoothing` (apply ``weight`` to the layer and ``fold_into_previous`` to the
        producer of its input; the product is unchanged to rounding).

    Shape:
        calib: (T, K);  factors: (K,)

    Example:
        >>> import torch
        >>> from linalg_core.qmatmul import smooth_outliers
        >>> x = torch.randn(512, 256, generator=torch.Generator().manual_seed(0)); x[:, 7] *= 50
        >>> sm = smooth_outliers(x)
        >>> sm.channels.tolist(), bool(sm.activations(x)[:, 7].abs().max() < x[:, 7].abs().max() / 10)
        ([7, 21], True)
    """
    X, _ = _validate.float_array(calib, "calib", ndim=2)
    _validate.check_finite(X, "calib")
    if not (isinstance(fraction, (int, float)) and 0 < fraction < 1):
        raise ValueError(f"fraction={fraction!r} must be in (0, 1)")
    if not (isinstance(percentile, (int, float)) and 0 < percentile <= 100):
        raise ValueError(f"percentile={percentile!r} must be in (0, 100]")
    cmax = X.to(torch.float32).abs().amax(0)
    K = cmax.numel()
    level = torch.quantile(cmax, percentile / 100)
    k = max(1, math.ceil(fraction * K))
    top = torch.topk(cmax, k).indices
    top = top[cmax[top] > level]
    t = torch.ones(K, dtype=torch.float32, device=X.device)
    t[top] = level / cmax[top]
    return Smoothing(t, top.sort().values)
