"""The A8W4 product of INT8 activations with DGQ weights, and ``DGQLinear``."""

from __future__ import annotations

import torch

from linalg_core import _ops
from linalg_core._trace import traced
from linalg_core.qmatmul.activations import quantize_activations
from linalg_core.qmatmul.weight import K_MAX, DGQWeight, dense, dgq_quantize
from linalg_core.quant.config import DGQConfig


def qmatmul(x_q, x_scale, w: DGQWeight, *, out_dtype=torch.float32, backend: str | None = None) -> torch.Tensor:
    """y = x_scale · s_c · (x_q · w8ᵀ) for INT8 activations and a :class:`DGQWeight` (the A8W4
    product of Dual Grained Quantization, Zhang et al. 2023).

    The integer product x_q · w8ᵀ (32-bit accumulation) is exact on every backend: the compiled
    kernels expand the 4-bit codes to w8 = s_int·(q − z) in registers (CPU: a 16-entry byte lookup
    per group, ``vpshufb``) and feed INT8 dot products (AVX512-VNNI / AVX-VNNI ``vpdpbusd``, AVX2
    ``vpmaddubsw``, AMX ``tdpbssd`` for M ≥ 16; CUDA ``dp4a``; Triton ``tl.dot`` on int8); the float
    result is that integer times the two scales, rounded once to float32.

    32-bit sums are exact for K_pad ≤ ``K_MAX`` = 133 120 (127²·K ≤ 2³¹ − 1). Longer rows are
    split into chunks of at most K_MAX (whole groups) whose exact int32 products are summed in
    int64, then scaled as above (float32 of the exact integer, times x_scale, times s_c).

    Args:
        x_q: int8 (M, K) with values in [−127, 127] (:func:`quantize_activations`), or (…, K).
        x_scale: float scale, shape () or (M, 1) / (…, 1); ``None``: the exact integer product
            x_q · w8ᵀ as int32 (ValueError if an entry does not fit int32).
        w: the weight (K = ``w.in_features``), on x_q's device.
        out_dtype: float dtype of y (ignored for ``x_scale=None``).

    Returns:
        y (M, N) (or (…, N)).

    Shape:
        x_q: (M, K) or (…, K);  x_scale: () or (M, 1);  y: (M, N) or (…, N)

    Example:
        >>> import torch
        >>> from linalg_core.qmatmul import dgq_quantize, qmatmul, quantize_activations
        >>> g = torch.Generator().manual_seed(0)
        >>> W, x = torch.randn(32, 128, generator=g), torch.randn(4, 128, generator=g)
        >>> y = qmatmul(*quantize_activations(x), dgq_quantize(W))
        >>> round(float((y - x @ W.T).norm() / (x @ W.T).norm()), 2)  # INT4 weights, INT8 activations
        0.11
    """
    if not isinstance(w, DGQWeight):
        raise TypeError(f"w must be a DGQWeight (from dgq_quantize), got {type(w).__name__}")
    if not isinstance(x_q, torch.Tensor) or x_q.dtype != torch.int8:
        raise TypeError(f"x_q must be an int8 tensor (quantize_activations gives one), got "
                        f"{getattr(x_q, 'dtype', type(x_q).__name__)}")
    if out_dtype not in (torch.float32, torch.float64, torch.float16, torch.bfloat16):
        raise TypeError(f"out_dtype must be torch.float32, float64, float16 or bfloat16, got {out_dtype!r}")
    if not traced():
        w.ensure_valid()
    K = w.in_features
    if x_q.dim() < 1 or x_q.shape[-1] != K:
        raise ValueError(f"x_q has shape {tuple(x_q.shape)}; its last dimension must be K={K} (w.in_features)")
    if x_q.device != w.device:
        raise ValueError(f"x_q is on {x_q.device}, w on {w.device}")
    return _product(x_q, x_scale, w, out_dtype, backend)


def _product(x_q, x_scale, w, out_dtype, backend):
    """qmatmul after validation; ``w`` is a DGQWeight or the tensors of one (traced calls)."""
    K, N = w.in_features, w.out_features
    lead = x_q.shape[:-1]
    x2 = x_q if x_q.dim() == 2 else x_q.reshape(-1, K)  # a −128 entry is refused by the kernels
    M = x2.shape[0]
    xs = None
    if x_scale is not None:
        scale = torch.as_tensor(x_scale, dtype=torch.float32, device=x_q.device)
        if scale.numel() != 1 and scale.numel() != M:
            raise ValueError(f"x_scale has {scale.numel()} elements; expected 1 or one per row ({M})")
        xs = scale.reshape(-1).expand(M)
        xs = xs.contiguous() if traced() else dense(xs)  # dense: also a copy of misaligned memory
    Kp = w.padded_in_features
    if Kp != K:
        x2 = torch.nn.functional.pad(x2, (0, Kp - K))
    x2 = x2.contiguous()
    if M == 0:
        y = torch.empty(0, N, dtype=torch.int32 if xs is None else torch.float32, device=x2.device)
    elif Kp <= K_MAX:
        y = _ops.dgq_matmul(x2, w.qweight, w.zeros, w.group_scales, w.weight_sums, w.group_size, xs,
                            None if xs is None else w.channel_scales, backend=backend)
    else:
        acc = _chunked_product(x2, w, backend)
        if xs is None:
            big = int(acc.abs().max())
            if big > 2**31 - 1:
                raise ValueError(f"the exact integer product (K={K}) has entries up to {big}, beyond int32: "
                                 f"pass x_scale for the float result")
            y = acc.to(torch.int32)
        else:  # the kernels' epilogue on the exact sum: (float32(acc)·x_scale[m])·s_c[n]
            y = acc.to(torch.float32).mul_(xs[:, None]).mul_(w.channel_scales)
    if xs is not None and out_dtype != torch.float32:
        y = y.to(out_dtype)
    return y if x_q.dim() == 2 else y.reshape(*lead, N)


def _chunked_product(x2, w: DGQWeight, backend) -> torch.Tensor:
    """int64 (M, N) x2 · w8ᵀ for K_pad > K_MAX: exact int32 products of chunks of whole groups."""
    g = w.group_size
    chunk = (K_MAX // g) * g
    if chunk == 0:
        raise ValueError(f"group_size={g} exceeds K_MAX={K_MAX}: a single group's int32 sum could overflow")
    acc = torch.zeros(x2.shape[0], w.out_features, dtype=torch.int64, device=x2.device)
    for k0 in range(0, w.padded_in_features, chunk):
        k1 = min(w.padded_in_features, k0 + chunk)
        g0, g1 = k0 // g, k1 // g
        acc += _ops.dgq_matmul(x2[:, k0:k1].contiguous(), w.qweight[:, k0 // 2:k1 // 2].contiguous(),
                               w.zeros[:, g0:g1].contiguous(), w.group_scales[:, g0:g1].contiguous(),
                               w.chunk_sums(g0, g1), g, None, None, backend=backend)
    return acc


def cpu_path(M: int) -> str:
    """The CPU kernel path :func:`qmatmul` and :class:`DGQLinear` take for M rows on this machine:
    ``"amx"`` (M ≥ 16), ``"avx512vnni"``, ``"avxvnni"``, ``"avx2"`` or ``"generic"``, within the set
    the environment variable ``LINALG_CORE_DGQ_PATHS`` allows (bit set: 1 AMX, 2 AVX512-VNNI,
    4 AVX-VNNI, 8 AVX2); ``"none"`` without the compiled module.

    Args:
        M: the rows of the activation (tokens in the batch).

    Returns:
        The path's name.

    Example:
        >>> from linalg_core.qmatmul import cpu_path
        >>> cpu_path(1) in ("amx", "avx512vnni", "avxvnni", "avx2", "generic", "none")
        True
    """
    import os

    from linalg_core._ext import _C

    if _C is None:
        return "none"
    return _C.cpu_dgq_path(M, int(os.environ.get("LINALG_CORE_DGQ_PATHS", "15"), 0))


_FUSED_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


class _InferenceOnly(torch.autograd.Function):
    """Identity in forward; a backward that says why there is no gradient (instead of torch's
    "element 0 of tensors does not require grad" at some later, unrelated line)."""

    @staticmethod
    def forward(ctx, y, x):
        return y.view_as(y)

    @staticmethod
    def backward(ctx, g):
        raise RuntimeError("DGQLinear is inference-only: its activations are rounded to INT8 and its weights are "
                           "INT4 codes, so it has no gradient. Train a float (or LoRA) layer and convert it with "
                           "DGQLinear.from_linear, or run it under torch.no_grad() / torch.inference_mode()")


class _Buffers:
    """A DGQLinear's weight tensors under DGQWeight's attribute names, without validation."""

    def __init__(self, m):
        b = m._buffers
        self.qweight, self.zeros, self.group_scales = b["qweight"], b["zeros"], b["group_scales"]
        self.channel_scales, self.weight_sums = b["channel_scales"], b["weight_sums"]
        self.in_features, self.out_features, self.group_size = m.in_features, m.out_features, m.group_size
        self.padded_in_features = self.qweight.shape[1] * 2


class DGQLinear(torch.nn.Module):
    """A drop-in ``torch.nn.Linear`` (inference) with DGQ weights and dynamic INT8 activations
    (Zhang et al. 2023, "Dual Grained Quantization: Efficient Fine-Grained Quantization for LLM").

    Build it with :meth:`from_linear`; ``forward(x)`` quantizes x per token (or per tensor),
    runs :func:`qmatmul` and adds the bias, returning x's dtype.

    Example:
        >>> import torch
        >>> from linalg_core.qmatmul import DGQLinear
        >>> lin = torch.nn.Linear(256, 64)
        >>> q = DGQLinear.from_linear(lin)
        >>> x = torch.randn(3, 256)
        >>> bool(((q(x) - lin(x)).norm() / lin(x).norm()) < 0.1)
        True
    """

    def __init__(self, weight: DGQWeight, bias: torch.Tensor | None = None, *, granularity: str = "token",
                 clip_percentile: float | None = None):
        super().__init__()
        if not isinstance(weight, DGQWeight):
            raise TypeError(f"weight must be a DGQWeight (from dgq_quantize), got {type(weight).__name__}")
        self.in_features, self.out_features = weight.in_features, weight.out_features
        self.group_size, self.granularity, self.clip_percentile = weight.group_size, granularity, clip_percentile
        for name, t in weight.state_dict().items():
            self.register_buffer(name, t)
        b = self._buffers  # the weight's own (validated) tensors: cached without a second validation
        bufs = (b["qweight"], b["zeros"], b["group_scales"], b["channel_scales"], b["weight_sums"])
        plan = (weight, (weight.qweight, weight.zeros, weight.group_scales, weight.weight_sums, weight.channel_scales))
        self.__dict__["_dgq"] = (bufs, tuple(t._version for t in bufs), plan)
        self.register_buffer("bias", None if bias is None else bias.detach().to(torch.float32).clone())

    @classmethod
    def from_linear(cls, linear: torch.nn.Linear, config=None, *, group_size: int = 128, calib=None,
                    search: str = "two_phase", granularity: str = "token", clip_percentile: float | None = None,
                    pad: bool = True):
        """Quantize ``linear``: with a :class:`linalg_core.quant.DGQConfig` as ``config`` (its
        options, not the keyword ones, then apply), or with the keyword options.

        Args:
            linear: the ``torch.nn.Linear`` to quantize (not modified).
            config: a :class:`~linalg_core.quant.DGQConfig`, or None for the keyword options.
            group_size, calib, search: as for :func:`dgq_quantize` (``calib``: calibration
                activations, also with a config).
            granularity: activation scales per ``"token"`` or per ``"tensor"``.
            clip_percentile: clip activations at this percentile before quantizing, or None.
            pad: pad K up to a multiple of ``group_size`` (as :func:`dgq_quantize`).

        Returns:
            A :class:`DGQLinear` with the linear's bias.
        """
        if not isinstance(linear, torch.nn.Linear):
            raise TypeError(f"linear must be a torch.nn.Linear, got {type(linear).__name__}")
        if config is not None:
            if not isinstance(config, DGQConfig):
                raise TypeError(f"config must be a linalg_core.quant.DGQConfig, got {type(config).__name__}")
            if (group_size, search, granularity, clip_percentile, pad) != (128, "two_phase", "token", None, True):
                raise TypeError("pass the options in the DGQConfig, not as keywords next to it")
            w = dgq_quantize(linear.weight.detach(), config, calib=calib)
            return cls(w, linear.bias, granularity=config.granularity, clip_percentile=config.clip_percentile)
        w = dgq_quantize(linear.weight.detach(), group_size=group_size, calib=calib, search=search, pad=pad)
        return cls(w, linear.bias, granularity=granularity, clip_percentile=clip_percentile)

    @property
    def weight(self) -> DGQWeight:
        """The :class:`DGQWeight` of the buffers, validated when built and built again when a
        buffer is replaced (``.to()``) or modified in place (``load_state_dict``)."""
        return self._plan()[0]

    def _plan(self):
        """(validated DGQWeight, its tensors in dgq_linear's argument order), rebuilt when a buffer
        was replaced or modified in place: the per-call check compares five buffers by identity and
        their five version counters (written out: this runs on every call)."""
        b = self._buffers
        cached = self.__dict__.get("_dgq")
        if cached is not None:
            (q, z, g, c, s), versions, plan = cached
            if (b["qweight"] is q and b["zeros"] is z and b["group_scales"] is g and b["channel_scales"] is c
                    and b["weight_sums"] is s
                    and (q._version, z._version, g._version, c._version, s._version) == versions):
                return plan
        bufs = (b["qweight"], b["zeros"], b["group_scales"], b["channel_scales"], b["weight_sums"])
        w = DGQWeight(*bufs, self.in_features, self.group_size)
        plan = (w, (w.qweight, w.zeros, w.group_scales, w.weight_sums, w.channel_scales))
        self.__dict__["_dgq"] = (bufs, tuple(t._version for t in bufs), plan)
        self.__dict__.pop("_direct", None)  # the direct path's plan: made again from the new weights
        return plan

    def __getstate__(self):
        """The module's state without the direct path's plan (a binding object, made again at
        the next call)."""
        state = super().__getstate__()
        state.pop("_direct", None)
        return state

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """y = x Wᵀ + b: x quantized to INT8 (per token or per tensor), the INT8 product with the
        DGQ weight (:func:`qmatmul`), the bias added; inference only (no gradient to x).

        Args:
            x: activations, float32, float16 or bfloat16.

        Returns:
            y in x's dtype.

        Shape:
            x: (…, in_features);  out: (…, out_features)
        """
        if not torch.compiler.is_compiling():
            # The plain eager call (float32 x on the CPU, no padding, no autograd, per-token scales) in
            # one compiled call: the dgq_linear op below, its allocation and the output's shape, with
            # the weights checked when the plan was made and only re-identified here. None: not that
            # case (or NaN / Inf in x, which the full path reports); False: the weights changed since
            # the plan (also through `.data`, which leaves their versions): validated again below.
            direct = self.__dict__.get("_direct")
            if direct is not None and self.granularity == "token" and self.clip_percentile is None:
                y = _ops.dgq_linear.direct(x, direct)
                if y is not None:
                    if y is not False:
                        return y
                    self.__dict__.pop("_dgq", None)
                    self.__dict__.pop("_direct", None)
        if not isinstance(x, torch.Tensor) or x.dim() < 1 or x.shape[-1] != self.in_features:
            raise ValueError(f"x must be a tensor (…, {self.in_features}), got "
                             f"{tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__}")
        # Traced (torch.compile / export): the buffers as they are, validated when they were built
        # or loaded; the Python-side re-validation of in-place changes is eager-only.
        tracing = traced()
        if tracing:
            w = _Buffers(self)
            tensors = (w.qweight, w.zeros, w.group_scales, w.weight_sums, w.channel_scales)
        else:
            w, tensors = self._plan()
            if "_direct" not in self.__dict__:
                self.__dict__["_direct"] = _ops.dgq_linear.prepare(self._buffers, self.group_size)
        if self.granularity == "token" and self.clip_percentile is None and w.padded_in_features <= K_MAX:
            y = self._fused(x, w, tensors, tracing)  # quantization, integer product and epilogue in one op
        else:
            if tracing and w.padded_in_features > K_MAX:
                raise ValueError(f"a traced DGQLinear needs in_features <= {K_MAX} (got {self.in_features}): longer "
                                 "rows are split into int32-exact chunks in eager mode only")
            x_q, scale = quantize_activations(x, granularity=self.granularity, clip_percentile=self.clip_percentile)
            y = _product(x_q, scale, w, torch.float32, None)
            if self.bias is not None:
                y = y + self.bias
        if y.dtype != x.dtype:
            y = y.to(x.dtype)
        if x.requires_grad and torch.is_grad_enabled():
            y = _InferenceOnly.apply(y, x)
        return y

    def _fused(self, x: torch.Tensor, w, tensors, tracing: bool) -> torch.Tensor:
        """The dgq_linear op on x (…, K): per-token INT8 quantization bit for bit as
        :func:`quantize_activations`, the exact integer product and the epilogue with the bias."""
        K, Kp = self.in_features, w.padded_in_features
        x2 = x if x.dim() == 2 else x.reshape(-1, K)
        if x2.dtype not in _FUSED_DTYPES:
            x2 = x2.to(torch.float32)
        if Kp != K:
            x2 = torch.nn.functional.pad(x2, (0, Kp - K))  # zeros: the row maxima are unchanged
        x2 = x2.contiguous() if tracing else dense(x2)
        y = _ops.dgq_linear(x2, *tensors, self._buffers["bias"], self.group_size)
        return y if x.dim() == 2 else y.reshape(*x.shape[:-1], w.out_features)

    def extra_repr(self) -> str:
        """The sizes, group size, activation granularity and stored bits per weight."""
        return (f"in_features={self.in_features}, out_features={self.out_features}, group_size={self.group_size}, "
                f"activations={self.granularity}, {self.weight.bits_per_weight:.3f} bits/weight")
