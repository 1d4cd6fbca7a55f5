"""DGQ weights: fine-grained INT4 groups whose integer group scales expand them to a
coarse-grained (per output channel) INT8 matrix (Zhang et al. 2024, "Dual Grained Quantization:
Efficient Fine-Grained Quantization for LLM", Section 3)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from linalg_core import _validate

PHASE1_RATIOS = torch.linspace(1.0, 0.80, 20)  # group clipping: max and min scaled by r
PHASE2_RATIOS = torch.linspace(1.0, 0.20, 80)  # channel scale: s_c = r · max_g(s_g) / 8


@dataclass(frozen=True)
class DGQWeight:
    """w[n, k] ≈ s_c[n] · s_int[n, g] · (q[n, k] − z[n, g]) for k in group g = k // group_size.

    The integer part w8 = s_int · (q − z) is an INT8 matrix: q is clipped so that |w8| ≤ 127
    (q ∈ [z − ⌊127/s_int⌋, z + ⌊127/s_int⌋] ∩ [0, 15]), so the product with INT8 activations runs on
    INT8 units with 32-bit accumulation and one float scale per output channel.

    Attributes:
        qweight: uint8 (N, K_pad / 2), two 4-bit codes per byte, high nibble first.
        zeros: uint8 (N, G), zero points in [0, 15].
        group_scales: int8 (N, G), s_int ≥ 1.
        channel_scales: float32 (N,), s_c.
        weight_sums: int32 (N,), Σ_k w8[n, k] (the offset correction of unsigned-by-signed kernels).
        in_features: K (the input width; K_pad = G · group_size ≥ K, padded with zero weights).
        group_size: weights per group (a multiple of 128).

    Shape:
        qweight: (N, K_pad / 2);  zeros, group_scales: (N, G);  channel_scales, weight_sums: (N,)
    """

    qweight: torch.Tensor
    zeros: torch.Tensor
    group_scales: torch.Tensor
    channel_scales: torch.Tensor
    weight_sums: torch.Tensor
    in_features: int
    group_size: int

    @property
    def out_features(self) -> int:
        return self.qweight.shape[0]

    @property
    def padded_in_features(self) -> int:
        return self.qweight.shape[1] * 2

    @property
    def bits_per_weight(self) -> float:
        """Stored bits per weight: codes, zeros, group scales, channel scales and sums."""
        stored = sum(t.numel() * t.element_size() for t in (self.qweight, self.zeros, self.group_scales,
                                                           self.channel_scales, self.weight_sums))
        return 8 * stored / (self.out_features * self.in_features)

    def codes(self) -> torch.Tensor:
        """q as uint8 (N, K_pad)."""
        q = torch.empty(self.out_features, self.padded_in_features, dtype=torch.uint8, device=self.qweight.device)
        q[:, 0::2] = self.qweight >> 4
        q[:, 1::2] = self.qweight & 15
        return q

    def int8_weight(self) -> torch.Tensor:
        """w8 = s_int · (q − z) as int8 (N, K_pad): the coarse-grained INT8 matrix."""
        g = self.group_size
        q = self.codes().to(torch.int16).view(self.out_features, -1, g)
        w8 = (q - self.zeros.to(torch.int16)[:, :, None]) * self.group_scales.to(torch.int16)[:, :, None]
        return w8.view(self.out_features, -1).to(torch.int8)

    def dequantize(self, dtype=torch.float32) -> torch.Tensor:
        """(N, K) float weight s_c · w8."""
        w = self.int8_weight()[:, : self.in_features].to(torch.float32) * self.channel_scales[:, None]
        return w.to(dtype)

    def state_dict(self, prefix: str = "") -> dict[str, torch.Tensor]:
        meta = torch.tensor([self.in_features, self.group_size], dtype=torch.int64)
        return {prefix + "qweight": self.qweight, prefix + "zeros": self.zeros, prefix + "group_scales": self.group_scales,
                prefix + "channel_scales": self.channel_scales, prefix + "weight_sums": self.weight_sums,
                prefix + "shape": meta}

    @classmethod
    def from_state_dict(cls, state, prefix: str = "") -> "DGQWeight":
        try:
            K, g = (int(v) for v in state[prefix + "shape"].tolist())
            w = cls(state[prefix + "qweight"], state[prefix + "zeros"], state[prefix + "group_scales"],
                    state[prefix + "channel_scales"], state[prefix + "weight_sums"], K, g)
        except KeyError as e:
            raise ValueError(f"DGQ state lacks {e.args[0]!r}") from None
        w._check()
        return w

    def _check(self) -> None:
        N, half = self.qweight.shape
        G = (2 * half) // self.group_size
        expect = {"qweight": (torch.uint8, (N, half)), "zeros": (torch.uint8, (N, G)),
                  "group_scales": (torch.int8, (N, G)), "channel_scales": (torch.float32, (N,)),
                  "weight_sums": (torch.int32, (N,))}
        for name, (dt, shape) in expect.items():
            t = getattr(self, name)
            if t.dtype != dt or tuple(t.shape) != shape:
                raise ValueError(f"DGQ {name} is {t.dtype} {tuple(t.shape)}, expected {dt} {shape}")
        if G * self.group_size != 2 * half or not (0 < self.in_features <= 2 * half):
            raise ValueError(f"DGQ shapes disagree: K={self.in_features}, group_size={self.group_size}, "
                             f"qweight {tuple(self.qweight.shape)}")


def _int4_groups(Wg, ratio):
    """Asymmetric INT4 of groups Wg (N, G, g) with min/max scaled by ratio (N, G) or scalar:
    (scale (N, G), zero (N, G))."""
    lo = (Wg.amin(2) * ratio).clamp(max=0)
    hi = (Wg.amax(2) * ratio).clamp(min=0)
    s = ((hi - lo) / 15).clamp(min=torch.finfo(torch.float32).tiny)
    z = torch.round(-lo / s).clamp(0, 15)
    return s, z


def _codes(Wg, S, z, s_int=None):
    """q for effective group scales S, zeros z, clipped to [0, 15] (and to ±127 when s_int given)."""
    q = torch.round(Wg / S[..., None]) + z[..., None]
    lo, hi = torch.zeros_like(z), torch.full_like(z, 15.0)
    if s_int is not None:
        span = torch.floor(127 / s_int)
        lo, hi = torch.maximum(lo, z - span), torch.minimum(hi, z + span)
    return torch.minimum(torch.maximum(q, lo[..., None]), hi[..., None])


def _err(Wg, S, z, q, h):
    d = Wg - S[..., None] * (q - z[..., None])
    return (d * d * h).sum(2)


def _channel_step(Wg, s_g, z, sc, h):
    """(error (N,), s_int (N, G), q (N, G, g)) for channel scales sc (N,)."""
    s_int = torch.round(s_g / sc[:, None]).clamp(1, 127)
    S = sc[:, None] * s_int
    q = _codes(Wg, S, z, s_int)
    return _err(Wg, S, z, q, h).sum(1), s_int, q


def dgq_quantize(W, *, group_size: int = 128, calib=None, search: str = "two_phase", pad: bool = False) -> DGQWeight:
    """Quantize a weight W (N, K) to DGQ's dual-grained INT4/INT8 format.

    ``search="two_phase"`` (DGQ Section 3.2): phase 1 chooses each group's INT4 scale and zero by
    a grid over 20 clipping ratios (1.0 → 0.8 of its min and max); phase 2 chooses each channel's
    float scale s_c by a grid over 80 ratios (1.0 → 0.2 of max_g s_g / 8), with
    s_int = round(s_g / s_c) ∈ [1, 127] and the codes re-rounded and clipped to keep |s_int(q − z)| ≤ 127.
    The objective is the weight error, or with ``calib`` activations (T, K) the output error
    ‖X(W − Ŵ)ᵀ‖² in its diagonal approximation Σ_k E[x_k²](w_k − ŵ_k)². Per channel the result is
    never worse than plain round-to-nearest in the same format (``search="rtn"``), which is also
    evaluated and kept where it wins.

    Args:
        W: (N, K) float weight (an ``nn.Linear.weight``).
        group_size: weights per INT4 group, a positive multiple of 128 (DGQ: 128).
        calib: optional (T, K) calibration activations.
        search: ``"two_phase"`` or ``"rtn"`` (ratio 1 in both phases).
        pad: allow K not divisible by ``group_size`` (zero weights pad the last group).

    Returns:
        :class:`DGQWeight`.

    Shape:
        W: (N, K);  calib: (T, K)

    Example:
        >>> import torch
        >>> from linalg_core.qmatmul import dgq_quantize
        >>> W = torch.randn(64, 256, generator=torch.Generator().manual_seed(0))
        >>> w = dgq_quantize(W)
        >>> round(w.bits_per_weight, 3), bool(w.int8_weight().abs().max() <= 127)
        (4.375, True)
    """
    Wt, _ = _validate.float_array(W, "W", ndim=2)
    _validate.check_finite(Wt, "W")
    N, K = Wt.shape
    if isinstance(group_size, bool) or not isinstance(group_size, int) or group_size < 128 or group_size % 128:
        raise ValueError(f"group_size must be a positive multiple of 128 (the kernels work on 128-weight blocks), got {group_size!r}")
    if K % group_size and not pad:
        raise ValueError(f"group_size={group_size} does not divide K={K} (the in_features of W {tuple(Wt.shape)}); "
                         f"choose a divisor of K or pass pad=True")
    if search not in ("two_phase", "rtn"):
        raise ValueError(f"search={search!r} must be 'two_phase' or 'rtn'")
    G = -(-K // group_size)
    Kp = G * group_size
    Wp = torch.zeros(N, Kp, dtype=torch.float32, device=Wt.device)
    Wp[:, :K] = Wt
    h = torch.ones(Kp, dtype=torch.float32, device=Wt.device)
    if calib is not None:
        X, _ = _validate.float_array(calib, "calib", ndim=2)
        if X.shape[1] != K:
            raise ValueError(f"calib has {X.shape[1]} features, W has K={K}")
        _validate.check_finite(X, "calib")
        h[:K] = X.to(torch.float32).square().mean(0).clamp(min=1e-12)
    h[K:] = 0
    hg = h.view(1, G, group_size)
    # rows are independent: search blocks of channels whose temporaries stay in cache
    rows = max(1, (1 << 20) // Kp)
    parts = [_search(Wp[r0:r0 + rows].view(-1, G, group_size), hg, search) for r0 in range(0, N, rows)]
    q, z, s_int, sc = (torch.cat(t) for t in zip(*parts))
    return _pack(q, z, s_int, sc, K, group_size)


def _search(Wg, hg, search):
    """(q, z, s_int, s_c) of the channels Wg (n, G, g)."""
    n, G, _ = Wg.shape
    # plain round-to-nearest: ratio 1 in both phases
    s_g, z = _int4_groups(Wg, 1.0)
    rtn_sc = s_g.amax(1) / 8
    best_err, best_sint, best_q = _channel_step(Wg, s_g, z, rtn_sc, hg)
    best_sc, best_z = rtn_sc, z
    if search == "two_phase":
        # phase 1: per-group clipping ratio
        g_err = torch.full((n, G), math.inf, device=Wg.device)
        g_s, g_z = s_g.clone(), z.clone()
        for r in PHASE1_RATIOS.tolist():
            s, zz = _int4_groups(Wg, r)
            e = _err(Wg, s, zz, _codes(Wg, s, zz), hg)
            better = e < g_err
            g_err = torch.where(better, e, g_err)
            g_s, g_z = torch.where(better, s, g_s), torch.where(better, zz, g_z)
        # phase 2: per-channel scale
        base = g_s.amax(1) / 8
        for r in PHASE2_RATIOS.tolist():
            err, s_int, q = _channel_step(Wg, g_s, g_z, base * r, hg)
            better = err < best_err
            if better.any():
                best_err = torch.where(better, err, best_err)
                best_sc = torch.where(better, base * r, best_sc)
                best_z = torch.where(better[:, None], g_z, best_z)
                best_sint = torch.where(better[:, None], s_int, best_sint)
                best_q = torch.where(better[:, None, None], q, best_q)
    return best_q, best_z, best_sint, best_sc


def _pack(q, z, s_int, sc, K, group_size) -> DGQWeight:
    N = q.shape[0]
    q8 = q.reshape(N, -1).to(torch.uint8)
    packed = (q8[:, 0::2] << 4) | q8[:, 1::2]
    zeros, gs = z.to(torch.uint8), s_int.to(torch.int8)
    w8 = (q.reshape(N, -1, group_size) - z[..., None]) * s_int[..., None]
    sums = w8.reshape(N, -1).sum(1).to(torch.int32)
    return DGQWeight(packed.contiguous(), zeros.contiguous(), gs.contiguous(), sc.to(torch.float32).contiguous(),
                     sums.contiguous(), K, group_size)
