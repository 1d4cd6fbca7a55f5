"""DGQ weights: fine-grained INT4 groups whose integer group scales expand them to a
coarse-grained (per output channel) INT8 matrix (Zhang et al. 2024, "Dual Grained Quantization:
Efficient Fine-Grained Quantization for LLM", Section 3)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import torch

from linalg_core import _validate
from linalg_core.quant.config import DGQConfig, register_quantizer

PHASE1_RATIOS = torch.linspace(1.0, 0.80, 20)  # group clipping: max and min scaled by r
PHASE2_RATIOS = torch.linspace(1.0, 0.20, 80)  # channel scale: s_c = r · max_g(s_g) / 8


# Largest K (a multiple of 128) whose int32 sums of int8·int8 products cannot overflow:
# 127² · K_MAX ≤ 2³¹ − 1. Longer rows are split into chunks of at most K_MAX (qmatmul).
K_MAX = 133_120
_W_LIMIT = 1e38


def dense(t: torch.Tensor) -> torch.Tensor:
    """``t`` if contiguous and aligned to its element size (what the kernels read), else a copy."""
    if t.is_contiguous() and t.data_ptr() % t.element_size() == 0:
        return t
    return t.contiguous() if not t.is_contiguous() else t.clone()


_WEIGHT_FIELDS = ("qweight", "zeros", "group_scales", "channel_scales", "weight_sums")


@dataclass(frozen=True)
class DGQWeight:
    """w[n, k] ≈ s_c[n] · s_int[n, g] · (q[n, k] − z[n, g]) for k in group g = k // group_size.

    The integer part w8 = s_int · (q − z) is an INT8 matrix: q is clipped so that |w8| ≤ 127
    (q ∈ [z − ⌊127/s_int⌋, z + ⌊127/s_int⌋] ∩ [0, 15]), so the product with INT8 activations runs on
    INT8 units with 32-bit accumulation and one float scale per output channel.

    Construction (also :meth:`from_state_dict`) validates every invariant the kernels rely on,
    raising TypeError / ValueError naming the field: ``group_size`` a positive multiple of 128,
    K_pad a multiple of it with K_pad − group_size < K ≤ K_pad; the shapes and dtypes below; one
    device; zeros in [0, 15], group scales in [1, 127], |s_int·(q − z)| ≤ 127 for every weight
    (from each group's smallest and largest code); finite channel scales; ``weight_sums``
    equal to the sums recomputed from the codes (``None``: computed). Non-contiguous tensors
    (expanded, transposed) are copied to contiguous ones; the caller's are never modified.

    Attributes:
        qweight: uint8 (N, K_pad / 2), two 4-bit codes per byte, high nibble first.
        zeros: uint8 (N, G), zero points in [0, 15].
        group_scales: int8 (N, G), s_int in [1, 127].
        channel_scales: float32 (N,), s_c, finite.
        weight_sums: int32 (N,), Σ_k w8[n, k] (the offset correction of unsigned-by-signed kernels).
        in_features: K (the input width; K_pad = G · group_size ≥ K, padded with zero weights).
        group_size: weights per group (a multiple of 128).

    Shape:
        qweight: (N, K_pad / 2);  zeros, group_scales: (N, G);  channel_scales, weight_sums: (N,)

    The format is Dual Grained Quantization's A8W4 weight (Zhang et al. 2023, "Dual Grained
    Quantization: Efficient Fine-Grained Quantization for LLM"); build one with
    :func:`dgq_quantize`.

    Example:
        >>> import torch
        >>> from linalg_core.qmatmul import DGQWeight, dgq_quantize
        >>> W = torch.randn(16, 256, generator=torch.Generator().manual_seed(0))
        >>> w = dgq_quantize(W)
        >>> w.out_features, w.in_features, w.padded_in_features, tuple(w.int8_weight().shape)
        (16, 256, 256, (16, 256))
        >>> bool((w.dequantize() - W).norm() / W.norm() < 0.2)
        True
        >>> torch.equal(DGQWeight.from_state_dict(w.state_dict()).dequantize(), w.dequantize())
        True
    """

    qweight: torch.Tensor
    zeros: torch.Tensor
    group_scales: torch.Tensor
    channel_scales: torch.Tensor
    weight_sums: torch.Tensor | None
    in_features: int
    group_size: int

    def __post_init__(self):
        self._validate()

    @property
    def out_features(self) -> int:
        """N, the rows of the weight (output channels)."""
        return self.qweight.shape[0]

    @property
    def padded_in_features(self) -> int:
        """K_pad = G · group_size ≥ K: the row length the codes are stored with."""
        return self.qweight.shape[1] * 2

    @property
    def device(self) -> torch.device:
        """Where the tensors live."""
        return self.qweight.device

    @property
    def bits_per_weight(self) -> float:
        """Stored bits per weight: codes, zeros, group scales, channel scales and sums."""
        stored = sum(t.numel() * t.element_size() for t in (self.qweight, self.zeros, self.group_scales,
                                                           self.channel_scales, self.weight_sums))
        return 8 * stored / (self.out_features * self.in_features)

    def codes(self) -> torch.Tensor:
        """q as uint8 (N, K_pad)."""
        self.ensure_valid()
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
        if dtype not in (torch.float32, torch.float64, torch.float16, torch.bfloat16):
            raise TypeError(f"dtype must be torch.float32, float64, float16 or bfloat16, got {dtype!r}")
        w = self.int8_weight()[:, : self.in_features].to(torch.float32) * self.channel_scales[:, None]
        if dtype in (torch.float16, torch.bfloat16) and not _validate.all_finite(w.to(dtype)):
            raise ValueError(f"the dequantized weight overflows {dtype}: dequantize to float32")
        return w.to(dtype)

    def state_dict(self, prefix: str = "") -> dict[str, torch.Tensor]:
        """The tensors by name (``qweight``, ``zeros``, ``group_scales``, ``channel_scales``,
        ``weight_sums`` and ``shape`` = int64 [K, group_size]), for ``safetensors`` or
        ``torch.save``; :meth:`from_state_dict` reads them back.

        Args:
            prefix: prepended to every name (a module's ``"layer."``).

        Returns:
            A dict of the weight's own tensors (not copies) and the ``shape`` entry.
        """
        meta = torch.tensor([self.in_features, self.group_size], dtype=torch.int64)
        return {prefix + "qweight": self.qweight, prefix + "zeros": self.zeros,
                prefix + "group_scales": self.group_scales, prefix + "channel_scales": self.channel_scales,
                prefix + "weight_sums": self.weight_sums, prefix + "shape": meta}

    @classmethod
    def from_state_dict(cls, state, prefix: str = "") -> DGQWeight:
        """Inverse of :meth:`state_dict`, validated like the constructor. Other entries of
        ``state`` (a ``DGQLinear``'s bias) are ignored; missing ones, a ``shape`` entry that is
        not int64 [K, group_size], and every inconsistency of the tensors raise ValueError.

        Args:
            state: a mapping of names to tensors, as :meth:`state_dict` writes it.
            prefix: the prefix the names were written with.

        Returns:
            The validated :class:`DGQWeight`.
        """
        if not isinstance(prefix, str):
            raise TypeError(f"prefix must be a str, got {type(prefix).__name__}")
        if not isinstance(state, Mapping):
            raise TypeError(f"state must be a mapping of names to tensors, got {type(state).__name__}")
        missing = [prefix + k for k in (*_WEIGHT_FIELDS, "shape") if prefix + k not in state]
        if missing:
            raise ValueError(f"DGQ state lacks {', '.join(map(repr, missing))}")
        meta = state[prefix + "shape"]
        if not isinstance(meta, torch.Tensor) or meta.dtype != torch.int64 or tuple(meta.shape) != (2,):
            raise ValueError(f"DGQ state {prefix + 'shape'!r} must be an int64 tensor [in_features, group_size], got "
                             f"{getattr(meta, 'dtype', type(meta).__name__)} {tuple(getattr(meta, 'shape', ()))}")
        K, g = (int(v) for v in meta.tolist())
        try:
            return cls(*(state[prefix + k] for k in _WEIGHT_FIELDS), K, g)
        except (TypeError, ValueError) as e:
            raise type(e)(f"corrupt DGQ state{f' at prefix {prefix!r}' if prefix else ''}: {e}") from None

    # --- validation ----------------------------------------------------------------------
    def _stamp(self):
        # in-place changes, resize_ and set_ all bump a tensor's version counter
        return (self.qweight._version, self.zeros._version, self.group_scales._version, self.channel_scales._version,
                self.weight_sums._version)

    def ensure_valid(self) -> None:
        """Re-validates when a tensor was modified in place since the last validation (a
        ``DGQLinear``'s buffers after ``load_state_dict``); a few attribute reads otherwise."""
        if self.__dict__.get("_checked") != self._stamp():
            self._validate()

    def _validate(self) -> None:
        for name in _WEIGHT_FIELDS:
            t = getattr(self, name)
            if t is None and name == "weight_sums":
                continue
            if not isinstance(t, torch.Tensor):
                raise TypeError(f"DGQ {name} must be a torch.Tensor, got {type(t).__name__}")
            if t.layout != torch.strided or t.device.type == "meta":
                raise ValueError(f"DGQ {name} must be a dense tensor holding data, got a {t.layout} tensor on "
                                 f"{t.device}")
        g = _validate.integer(self.group_size, "group_size")
        if g < 128 or g % 128:
            raise ValueError(f"group_size must be a positive multiple of 128 (the kernels work on 128-weight blocks), "
                             f"got {g}")
        K = _validate.integer(self.in_features, "in_features", low=1)
        qw = self.qweight
        if qw.dtype != torch.uint8 or qw.dim() != 2 or qw.shape[0] < 1 or qw.shape[1] < 1:
            raise ValueError(f"DGQ qweight must be a non-empty uint8 (N, K_pad / 2) tensor, got {qw.dtype} "
                             f"{tuple(qw.shape)}")
        N, Kp = qw.shape[0], 2 * qw.shape[1]
        if Kp % g or not (Kp - g < K <= Kp):
            raise ValueError(f"DGQ shapes disagree: K={K}, group_size={g}, qweight {tuple(qw.shape)} (K_pad={Kp} "
                             f"must be a multiple of group_size with K_pad - group_size < K <= K_pad)")
        G = Kp // g
        expect = {"zeros": (torch.uint8, (N, G)), "group_scales": (torch.int8, (N, G)),
                  "channel_scales": (torch.float32, (N,)), "weight_sums": (torch.int32, (N,))}
        for name, (dt, shape) in expect.items():
            t = getattr(self, name)
            if t is not None and (t.dtype != dt or tuple(t.shape) != shape):
                raise ValueError(f"DGQ {name} is {t.dtype} {tuple(t.shape)}, expected {dt} {shape}")
        for name in _WEIGHT_FIELDS:
            t = getattr(self, name)
            if t is not None and t.device != qw.device:
                raise ValueError(f"DGQ {name} is on {t.device}, qweight on {qw.device}")
            if t is not None:  # never read a stride-0, transposed or misaligned tensor as a contiguous array
                object.__setattr__(self, name, dense(t))
        object.__setattr__(self, "in_features", K)
        object.__setattr__(self, "group_size", g)
        self._check_values(N, G, g)
        object.__setattr__(self, "_checked", self._stamp())

    def _check_values(self, N, G, g) -> None:
        z, s = self.zeros, self.group_scales
        if int(z.max()) > 15:
            raise ValueError(f"DGQ zeros has {int((z > 15).sum())} zero point(s) above 15 (the largest is "
                             f"{int(z.max())}); codes are 4-bit")
        lo, hi = torch.aminmax(s)
        if int(lo) < 1:
            raise ValueError(f"DGQ group_scales has {int((s < 1).sum())} value(s) below 1 (the smallest is {int(lo)}); "
                             f"s_int is in [1, 127]")
        msg = _validate.nonfinite_message(self.channel_scales, "DGQ channel_scales")
        if msg:
            raise ValueError(msg)
        # each group's smallest and largest code bound w8 = s_int·(q − z) (s_int ≥ 1); torch reduces
        # int16 much faster than uint8, and int16 holds a group's code sum up to g = 2184
        hi4, lo4 = self.qweight >> 4, self.qweight & 15
        qmin = torch.minimum(hi4, lo4).view(N, G, g // 2).to(torch.int16).amin(2).to(torch.int32)
        qmax = torch.maximum(hi4, lo4).view(N, G, g // 2).to(torch.int16).amax(2).to(torch.int32)
        zi, si = z.to(torch.int32), s.to(torch.int32)
        wmin, wmax = si * (qmin - zi), si * (qmax - zi)
        bad = (wmin < -127) | (wmax > 127)
        if bool(bad.any()):
            n, gi = (int(v) for v in bad.nonzero()[0])
            raise ValueError(f"DGQ group_scales and zeros give |s_int·(q − z)| > 127 in {int(bad.sum())} group(s) "
                             f"(e.g. row {n}, group {gi}: s_int={int(si[n, gi])}, z={int(zi[n, gi])}, codes in "
                             f"[{int(qmin[n, gi])}, {int(qmax[n, gi])}]): the INT8 kernels need w8 in [-127, 127]")
        pair = (hi4 + lo4).view(N, G, g // 2)  # ≤ 30 per byte
        qsum = pair.sum(2, dtype=torch.int16 if 15 * g <= 32767 else torch.int32).to(torch.int32)
        group_sums = si * (qsum - g * zi)  # (N, G), |.| ≤ 127·g
        sums = group_sums.sum(1, dtype=torch.int64)
        if int(sums.abs().max()) > 2**31 - 1:
            raise ValueError(f"DGQ weight sums exceed int32 (K_pad={G * g} is too long for this format)")
        object.__setattr__(self, "_group_sums", group_sums)
        if self.weight_sums is None:
            object.__setattr__(self, "weight_sums", sums.to(torch.int32))
        elif not torch.equal(self.weight_sums.to(torch.int64), sums):
            wrong = int((self.weight_sums.to(torch.int64) != sums).sum())
            raise ValueError(f"DGQ weight_sums disagree with the codes in {wrong} of {N} rows (they must equal "
                             f"Σ_k s_int·(q − z); pass weight_sums=None to compute them)")

    def chunk_sums(self, g0: int, g1: int) -> torch.Tensor:
        """int32 (N,) Σ over groups g0 .. g1 − 1 of s_int·(q − z): the weight sums of a K chunk."""
        return self.__dict__["_group_sums"][:, g0:g1].sum(1, dtype=torch.int32)


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


def dgq_quantize(W, config: DGQConfig | None = None, *, group_size: int = 128, calib=None, search: str = "two_phase",
                 pad: bool = False) -> DGQWeight:
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
        config: a :class:`~linalg_core.quant.DGQConfig` holding ``group_size``, ``search`` and
            ``pad`` (then pass only ``calib`` with it); its activation options are DGQLinear's.
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
        >>> from linalg_core.quant import DGQConfig
        >>> torch.equal(dgq_quantize(W, DGQConfig(search="rtn")).qweight, dgq_quantize(W, search="rtn").qweight)
        True
    """
    if config is not None:
        if not isinstance(config, DGQConfig):
            raise TypeError(f"config must be a linalg_core.quant.DGQConfig, got {type(config).__name__}")
        if (group_size, search, pad) != (128, "two_phase", False):
            raise TypeError("dgq_quantize(W, DGQConfig(...)) takes group_size, search and pad from the config; pass "
                            "only calib= with it")
        group_size, search, pad = config.group_size, config.search, config.pad
    Wt, _ = _validate.float_array(W, "W", ndim=2)
    _validate.check_finite(Wt, "W")
    N, K = Wt.shape
    peak = float(Wt.abs().max())
    if peak > _W_LIMIT:  # group ranges max − min and their scales must stay finite in float32
        raise ValueError(f"W's largest |value| is {peak:.6g}; DGQ's float32 search handles |W| up to {_W_LIMIT:.0e}: "
                         f"scale W down")
    group_size = _validate.integer(group_size, "group_size")
    if group_size < 128 or group_size % 128:
        raise ValueError(f"group_size must be a positive multiple of 128 (the kernels work on 128-weight blocks), "
                         f"got {group_size!r}")
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
    return DGQWeight(packed.contiguous(), zeros.contiguous(), gs.contiguous(), sc.to(torch.float32).contiguous(),
                     None, K, group_size)  # weight_sums computed by the validation


register_quantizer(DGQConfig)(dgq_quantize)
