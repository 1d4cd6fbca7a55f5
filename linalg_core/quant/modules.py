"""Inference modules for quantized weights: :class:`QuantLinear` (a :class:`~linalg_core.quant.QuantizedTensor`
in any format) and :class:`LQLinear` (Q + L1·L2, LQ-LoRA / LoftQ).

Both are drop-in replacements of ``torch.nn.Linear`` for inference. The quantized weight lives in
a child module ``weight`` whose ``state_dict()`` is exactly ``QuantizedTensor.state_dict()``
(codes, scales, second-level scales as buffers, and the ``__format__`` JSON bytes), so a layer ``fc`` stores
``fc.weight.codes``, ``fc.weight.__format__``, ... and
``QuantizedTensor.from_state_dict(state, prefix="fc.weight.")`` reads them back from any
``state_dict`` or safetensors file. ``forward`` dequantizes blocks of rows into one buffer per
call and multiplies block by block: no float copy of the weight is kept between calls.
"""

from __future__ import annotations

import torch

from linalg_core import _validate
from linalg_core._trace import traced
from linalg_core.quant.config import LQConfig, quantize_weight
from linalg_core.quant.formats import Format
from linalg_core.quant.lq import LQResult
from linalg_core.quant.tensor import _FORMAT_KEY, QuantizedTensor

_FLOAT = (torch.float32, torch.float64, torch.float16, torch.bfloat16)


class _InferenceOnly(torch.autograd.Function):
    """Identity in forward; a backward that says why there is no gradient."""

    @staticmethod
    def forward(ctx, y, x, name):
        ctx.name = name
        return y.view_as(y)

    @staticmethod
    def backward(ctx, g):
        raise RuntimeError(f"{ctx.name} is inference-only: its weight is stored as quantized codes, so it has no "
                           "gradient. Train a float (or LoRA) layer and convert it with from_linear, or run it under "
                           "torch.no_grad() / torch.inference_mode()")


class QuantizedWeight(torch.nn.Module):
    """The stored tensors of one :class:`~linalg_core.quant.QuantizedTensor` as buffers, the child
    module ``weight`` of :class:`QuantLinear` / :class:`LQLinear`. Its ``state_dict()`` is the
    QuantizedTensor's (the ``__format__`` header is written there, not held as a buffer).

    :attr:`quantized` is the validated QuantizedTensor over the buffers (rebuilt, and validated,
    when a buffer was replaced by ``.to()`` or changed in place). ``load_state_dict`` validates the
    entries like :meth:`QuantizedTensor.from_state_dict` (ValueError for missing, unknown,
    mis-shaped or corrupt ones, or another weight shape) and may change the format. Dtype casts of
    the model (``.half()``, ``.to(torch.bfloat16)``) leave the stored codes and scales as they are;
    device moves apply.

    Shape:
        quantized: (out_features, in_features)

    Example:
        >>> import torch
        >>> from linalg_core.quant import QuantizedWeight, quantize
        >>> Q = quantize(torch.randn(32, 64, generator=torch.Generator().manual_seed(0)), "int4")
        >>> w = QuantizedWeight(Q)
        >>> w
        QuantizedWeight(int4-g128-sym-fp16, shape=(32, 64), 4.125 bits/weight)
        >>> torch.equal(w.quantized.dequantize(), Q.dequantize()), sorted(w.state_dict())
        (True, ['__format__', 'codes', 'scales'])
    """

    def __init__(self, quantized: QuantizedTensor):
        super().__init__()
        if not isinstance(quantized, QuantizedTensor):
            raise TypeError(f"quantized must be a linalg_core.quant.QuantizedTensor, got {type(quantized).__name__}")
        if len(quantized.shape) != 2:
            raise ValueError(f"quantized must be a 2-D QuantizedTensor (out_features, in_features), got shape "
                             f"{quantized.shape}")
        self._install(quantized, copy=False)

    def _install(self, Q: QuantizedTensor, *, copy: bool, device=None) -> None:
        for k in list(self._buffers):
            del self._buffers[k]
        state = Q.state_dict()
        # The format header is state_dict-only (_save_to_state_dict), not a buffer: "__format__" is
        # also object.__format__ (torch.export re-registers buffers by name) and it has no device.
        self.__dict__["_header"] = state.pop(_FORMAT_KEY)
        for k, v in state.items():
            if device is not None and v.device != device:
                v = v.to(device)
            elif copy:
                v = v.clone()
            self.register_buffer(k, v)
        self.format, self.shape, self.orig_dtype = Q.format, Q.shape, Q.orig_dtype
        self.__dict__["_cache"] = None if copy or device is not None else (self._key(), Q)

    def _key(self):
        bufs = tuple(self._buffers.values())
        return (tuple(self._buffers), tuple(map(id, bufs)), tuple(t._version for t in bufs), bufs)

    @property
    def quantized(self) -> QuantizedTensor:
        """The QuantizedTensor of the buffers (validated when they were built or changed)."""
        key = self._key()
        cached = self.__dict__.get("_cache")
        if cached is not None and cached[0][:3] == key[:3]:  # key[3] keeps the buffers alive: ids are not reused
            return cached[1]
        Q = QuantizedTensor.from_state_dict({**self._buffers, _FORMAT_KEY: self._header})
        if Q.shape != self.shape:
            raise ValueError(f"the stored weight now has shape {Q.shape}, this layer {self.shape}")
        self.format, self.orig_dtype = Q.format, Q.orig_dtype
        self.__dict__["_cache"] = (key, Q)
        return Q

    def data(self) -> dict[str, torch.Tensor]:
        """The stored tensors by name (no ``__format__``), unvalidated (the traced path)."""
        return dict(self._buffers)

    def _apply(self, fn, recurse=True):
        # Keep every stored tensor's dtype: only the device of fn's result is taken.
        for k, t in list(self._buffers.items()):
            if t is not None:
                target = fn(torch.empty(0, dtype=t.dtype, device=t.device)).device
                self._buffers[k] = t if t.device == target else t.to(target)
        return self

    def _checked_state(self, state_dict, prefix: str) -> QuantizedTensor | None:
        """The QuantizedTensor of the entries under ``prefix`` (None without a ``__format__``
        entry), validated, of this layer's shape; ValueError / TypeError naming the entry."""
        if prefix + _FORMAT_KEY not in state_dict:
            return None
        entries = {k: v for k, v in state_dict.items() if k.startswith(prefix) and "." not in k[len(prefix):]}
        pending = self.__dict__.pop("_pending", None)
        if pending is not None and pending[0] == prefix and pending[1].keys() == entries.keys() and all(
                entries[k] is v for k, v in pending[1].items()):
            return pending[2]  # validated by the parent layer a moment ago
        Q = QuantizedTensor.from_state_dict(entries, prefix)
        if Q.shape != self.shape:
            raise ValueError(f"state_dict entries {prefix + '*'!r} hold a weight of shape {Q.shape}; this layer's "
                             f"is {self.shape}")
        return Q

    def _prevalidate(self, state_dict, prefix: str) -> None:
        """Validate the entries before the parent layer copies anything in (its bias, factors)."""
        Q = self._checked_state(state_dict, prefix)
        if Q is not None:
            entries = {k: v for k, v in state_dict.items() if k.startswith(prefix) and "." not in k[len(prefix):]}
            self.__dict__["_pending"] = (prefix, entries, Q)

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                              error_msgs):
        Q = self._checked_state(state_dict, prefix)
        if Q is None:
            missing_keys.extend(prefix + k for k in (*self._buffers, _FORMAT_KEY))
            return
        for k in state_dict:
            if k.startswith(prefix) and "." in k[len(prefix):]:
                unexpected_keys.append(k)
        device = next(iter(self._buffers.values())).device
        self._install(Q, copy=True, device=device)

    def bits(self) -> int:
        """Bits stored: codes, scales, second-level scales, offsets (not the ``__format__`` header)."""
        return sum(8 * t.numel() * t.element_size() for t in self._buffers.values())

    def _save_to_state_dict(self, destination, prefix, keep_vars):
        super()._save_to_state_dict(destination, prefix, keep_vars)
        destination[prefix + _FORMAT_KEY] = self._header.clone()

    def extra_repr(self) -> str:
        """The format, the shape and the stored bits per weight."""
        return f"{self.format}, shape={self.shape}, {self.bits() / (self.shape[0] * self.shape[1]):.3f} bits/weight"


def _check_bias(bias, out_features: int, device) -> torch.Tensor | None:
    if bias is None:
        return None
    if not isinstance(bias, torch.Tensor):
        raise TypeError(f"bias must be a torch.Tensor or None, got {type(bias).__name__}")
    if bias.dtype not in _FLOAT or tuple(bias.shape) != (out_features,):
        raise ValueError(f"bias must be a float ({out_features},) tensor, got {bias.dtype} {tuple(bias.shape)}")
    if bias.device != device:
        raise ValueError(f"bias is on {bias.device}, the quantized weight on {device}")
    _validate.check_finite(bias, "bias")
    return bias.detach().clone()


def _check_linear(linear) -> torch.Tensor:
    if not isinstance(linear, torch.nn.Linear):
        raise TypeError(f"linear must be a torch.nn.Linear, got {type(linear).__name__}")
    return linear.weight.detach()


class _QuantizedLinearBase(torch.nn.Module):
    """x Qᵀ (+ a low-rank term) + bias, Q dequantized block by block."""

    def _init_weight(self, quantized, bias):
        self.weight = QuantizedWeight(quantized)
        self.out_features, self.in_features = quantized.shape
        self.register_buffer("bias", _check_bias(bias, self.out_features, quantized.device))

    @property
    def quantized(self) -> QuantizedTensor:
        """The quantized weight Q, (out_features, in_features)."""
        return self.weight.quantized

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # Everything is checked before anything is copied in: a failed load leaves the layer as it was.
        for name, cur in self._buffers.items():
            t = state_dict.get(prefix + name)
            if cur is None or not isinstance(t, torch.Tensor):
                continue
            if tuple(t.shape) != tuple(cur.shape):
                raise ValueError(f"state_dict entry {prefix + name!r} has shape {tuple(t.shape)}, this layer's "
                                 f"{name} {tuple(cur.shape)}")
            if t.is_floating_point():
                _validate.check_finite(t, prefix + name)
        self.weight._prevalidate(state_dict, prefix + "weight.")
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def _check_x(self, x):
        if not isinstance(x, torch.Tensor) or x.dim() < 1 or x.shape[-1] != self.in_features:
            raise ValueError(f"x must be a tensor (…, {self.in_features}), got "
                             f"{tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__}")
        if x.dtype not in _FLOAT:
            raise TypeError(f"x must be float32, float64, float16 or bfloat16, got {x.dtype}")

    def _quantized_product(self, x2: torch.Tensor, cdt: torch.dtype) -> torch.Tensor:
        """x2 Qᵀ (M, out) in ``cdt``: rows of Q dequantized a block at a time."""
        out_f, in_f = self.out_features, self.in_features
        if traced():  # the buffers as they are (validated when built or loaded); no data-dependent checks
            fmt, data = self.weight.format, self.weight.data()
            n = out_f * in_f
            params = fmt.block_params(data, n)
            blocks = _row_blocks(fmt, out_f, in_f)
            parts = [x2 @ fmt._dequantize(data, n, r0 * in_f, r1 * in_f, cdt, params=params).view(r1 - r0, in_f).T
                     for r0, r1 in blocks]
            return parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)
        Q = self.quantized
        blocks = list(Q._row_blocks())
        # one float32 buffer for every block (the float64 path dequantizes each block afresh: the
        # codebook kernels write float32 / float16 / bfloat16 in place)
        buf = (torch.empty(max(r1 - r0 for r0, r1 in blocks) * in_f, dtype=cdt, device=x2.device)
               if cdt == torch.float32 else None)

        def rows(r0, r1):
            out = None if buf is None else buf[: (r1 - r0) * in_f]
            return Q._range(r0 * in_f, r1 * in_f, cdt, out=out).view(r1 - r0, in_f)

        if len(blocks) == 1:
            return x2 @ rows(0, out_f).T
        y = torch.empty(x2.shape[0], out_f, dtype=cdt, device=x2.device)
        for r0, r1 in blocks:
            y[:, r0:r1] = x2 @ rows(r0, r1).T
        return y

    def _finish(self, y, x):
        if self.bias is not None:
            y = y + self.bias.to(y.dtype)
        y = y.to(x.dtype).reshape(*x.shape[:-1], self.out_features)
        if x.requires_grad and torch.is_grad_enabled():
            y = _InferenceOnly.apply(y, x, type(self).__name__)
        return y

    def _prepare(self, x):
        self._check_x(x)
        cdt = torch.float64 if x.dtype == torch.float64 else torch.float32
        x2 = x.detach().reshape(-1, self.in_features).to(cdt)
        dev = next(iter(self.weight._buffers.values())).device
        if x2.device != dev:
            raise ValueError(f"x is on {x2.device}, the layer on {dev}")
        return x2, cdt

    def stored_bits(self) -> int:
        """Bits of everything this layer stores for its weight (not the bias)."""
        return self.weight.bits()

    @property
    def bits_per_weight(self) -> float:
        """:meth:`stored_bits` over out_features · in_features."""
        return self.stored_bits() / (self.out_features * self.in_features)


def _row_blocks(fmt: Format, m: int, n: int):
    """The row blocks of QuantizedTensor._row_blocks, from the format and shape alone (traced)."""
    import math

    from linalg_core.quant.tensor import _ROW_BLOCK_ELEMS

    step = fmt.block // math.gcd(fmt.block, n)
    rows = max(step, (_ROW_BLOCK_ELEMS // n) // step * step)
    return [(r0, min(m, r0 + rows)) for r0 in range(0, m, rows)]


class QuantLinear(_QuantizedLinearBase):
    """A drop-in ``torch.nn.Linear`` (inference) whose weight is a :class:`~linalg_core.quant.QuantizedTensor`
    in any format (NF-k, bitsandbytes NF4, INT-k groups, GGUF Q4_0 / Q8_0).

    ``forward(x) = x Wᵀ + b`` with W = Q.dequantize(): rows of Q are dequantized a block at a
    time (about a million weights) into one buffer per call and multiplied, in float32 (float64
    for float64 x); the result has x's dtype. No float copy of W is kept between calls.
    Under ``torch.compile`` the dequantization is the library's custom ops (``fullgraph=True``
    works). Inference-only: a backward through it raises RuntimeError saying so.

    Args:
        quantized: the (out_features, in_features) QuantizedTensor; the layer holds its tensors.
        bias: optional float (out_features,) tensor on the same device (copied, kept in its dtype).

    Attributes:
        weight: the :class:`QuantizedWeight` holding Q's tensors; ``quantized``: Q; ``bias``;
        ``in_features``, ``out_features``; ``bits_per_weight``: stored bits per weight.

    Shape:
        x: (…, in_features);  result: (…, out_features)

    Example:
        >>> import torch
        >>> from linalg_core.quant import QuantLinear
        >>> lin = torch.nn.Linear(128, 64)
        >>> q = QuantLinear.from_linear(lin, "nf4")
        >>> q
        QuantLinear(
          in_features=128, out_features=64, bias=True, format=nf4-b64-s8x256-fp32, 4.133 bits/weight
          (weight): QuantizedWeight(nf4-b64-s8x256-fp32, shape=(64, 128), 4.133 bits/weight)
        )
        >>> x = torch.randn(3, 128)
        >>> torch.allclose(q(x), x @ q.quantized.dequantize().T + lin.bias, atol=1e-5)
        True
    """

    def __init__(self, quantized: QuantizedTensor, bias: torch.Tensor | None = None):
        super().__init__()
        self._init_weight(quantized, bias)

    @classmethod
    def from_linear(cls, linear: torch.nn.Linear, config="nf4", **kwargs) -> QuantLinear:
        """Quantize ``linear.weight`` with a block format (a :class:`~linalg_core.quant.formats.Format`
        or its name, e.g. ``"nf3"``, ``"bnb-nf4"``, ``"int4"``, ``"q4_0"``) through
        :func:`~linalg_core.quant.quantize_weight` (``kwargs``: ``backend=``); the bias is copied.

        Args:
            linear: the ``torch.nn.Linear`` to quantize (not modified).
            config: a block format or its name (not an :class:`~linalg_core.quant.LQConfig`:
                that builds an :class:`LQLinear`).
            **kwargs: passed to :func:`~linalg_core.quant.quantize_weight`.

        Returns:
            The :class:`QuantLinear`.
        """
        W = _check_linear(linear)
        if isinstance(config, LQConfig):
            raise TypeError("QuantLinear.from_linear takes a block format; an LQConfig builds an LQLinear "
                            "(LQLinear.from_linear)")
        Q = quantize_weight(W, config, **kwargs)
        if not isinstance(Q, QuantizedTensor):
            raise TypeError(f"config {config!r} does not give a QuantizedTensor (got {type(Q).__name__}): "
                            "QuantLinear takes a block format")
        return cls(Q, linear.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x Wᵀ + b with W dequantized block of rows by block of rows (inference only).

        Args:
            x: float activations.

        Returns:
            The output in x's dtype.

        Shape:
            x: (…, in_features);  result: (…, out_features)
        """
        x2, cdt = self._prepare(x)
        return self._finish(self._quantized_product(x2, cdt), x)

    def extra_repr(self) -> str:
        """The sizes, whether there is a bias, the format and the stored bits per weight."""
        return (f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}, "
                f"format={self.weight.format}, {self.bits_per_weight:.3f} bits/weight")


class LQLinear(_QuantizedLinearBase):
    """A drop-in ``torch.nn.Linear`` (inference) with the weight W ≈ Q + L1·L2 of
    :func:`~linalg_core.quant.lq_decompose` (LQ-LoRA; LoftQ with ``init="quant"``).

    ``forward(x) = x Qᵀ + (x L2ᵀ) L1ᵀ + b``: Q as in :class:`QuantLinear`, the low-rank term as two
    thin GEMMs (never the dense L1·L2). L1, L2 are buffers (float32 from ``lq_decompose``; they
    follow the model's dtype casts). Inference-only.

    Args:
        quantized: Q, (out_features, in_features).
        L1: (out_features, r) and L2: (r, in_features) float tensors on Q's device, finite (copied).
        bias: optional float (out_features,) tensor (copied).

    Shape:
        L1: (out_features, r);  L2: (r, in_features);  x: (…, in_features);  result: (…, out_features)

    Example:
        >>> import torch
        >>> from linalg_core.quant import LQConfig, LQLinear
        >>> lin = torch.nn.Linear(128, 64)
        >>> lq = LQLinear.from_linear(lin, LQConfig(rank=8, format="nf3", iters=2, seed=0))
        >>> lq.rank, lq.L1.shape, lq.L2.shape
        (8, torch.Size([64, 8]), torch.Size([8, 128]))
    """

    def __init__(self, quantized: QuantizedTensor, L1: torch.Tensor, L2: torch.Tensor,
                 bias: torch.Tensor | None = None):
        super().__init__()
        self._init_weight(quantized, bias)
        L1, L2 = self._check_factors(L1, L2, quantized.device)
        self.register_buffer("L1", L1.detach().clone())
        self.register_buffer("L2", L2.detach().clone())

    def _check_factors(self, L1, L2, device):
        for name, t in (("L1", L1), ("L2", L2)):
            if not isinstance(t, torch.Tensor):
                raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
            if t.dtype not in _FLOAT or t.dim() != 2:
                raise ValueError(f"{name} must be a 2-D float tensor, got {t.dtype} {tuple(t.shape)}")
            if t.device != device:
                raise ValueError(f"{name} is on {t.device}, the quantized weight on {device}")
            _validate.check_finite(t, name)
        if L1.shape[0] != self.out_features or L2.shape[1] != self.in_features or L1.shape[1] != L2.shape[0]:
            raise ValueError(f"L1 {tuple(L1.shape)} and L2 {tuple(L2.shape)} must be (out_features, r) and "
                             f"(r, in_features) with out_features={self.out_features}, in_features={self.in_features}")
        if L1.shape[1] < 1:
            raise ValueError("L1 and L2 must have rank r >= 1 (use QuantLinear for Q alone)")
        return L1, L2

    @classmethod
    def from_linear(cls, linear: torch.nn.Linear, config: LQConfig, **kwargs) -> LQLinear:
        """Decompose ``linear.weight`` with an :class:`~linalg_core.quant.LQConfig` through
        :func:`~linalg_core.quant.quantize_weight` (``kwargs``: ``fisher=``, ``backend=``).

        Args:
            linear: the ``torch.nn.Linear`` to decompose (not modified).
            config: the :class:`~linalg_core.quant.LQConfig`.
            **kwargs: passed to :func:`~linalg_core.quant.quantize_weight`.

        Returns:
            The :class:`LQLinear`.
        """
        W = _check_linear(linear)
        if not isinstance(config, LQConfig):
            raise TypeError(f"config must be a linalg_core.quant.LQConfig, got {type(config).__name__}")
        res = quantize_weight(W, config, **kwargs)
        return cls.from_result(res, linear.bias)

    @classmethod
    def from_result(cls, result: LQResult, bias: torch.Tensor | None = None) -> LQLinear:
        """The layer of an :class:`~linalg_core.quant.LQResult` (Q, L1, L2)."""
        if not isinstance(result, LQResult):
            raise TypeError(f"result must be an LQResult (lq_decompose), got {type(result).__name__}")
        return cls(result.Q, result.L1, result.L2, bias)

    @property
    def rank(self) -> int:
        """r, the rank of the low-rank term L1·L2."""
        return self.L1.shape[1]


    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x Qᵀ + (x L2ᵀ) L1ᵀ + b (inference only).

        Args:
            x: float activations.

        Returns:
            The output in x's dtype.

        Shape:
            x: (…, in_features);  result: (…, out_features)
        """
        x2, cdt = self._prepare(x)
        y = self._quantized_product(x2, cdt)
        y = y + (x2 @ self.L2.to(cdt).T) @ self.L1.to(cdt).T
        return self._finish(y, x)

    def stored_bits(self) -> int:
        """Bits of Q's tensors plus the factors L1, L2 (not the bias)."""
        return self.weight.bits() + sum(8 * t.numel() * t.element_size() for t in (self.L1, self.L2))

    def extra_repr(self) -> str:
        """The sizes, the format, the rank and the stored bits per weight (Q and factors)."""
        q = self.weight.bits() / (self.out_features * self.in_features)
        return (f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}, "
                f"format={self.weight.format}, rank={self.rank}, {self.bits_per_weight:.3f} bits/weight "
                f"(Q {q:.3f} + factors {self.bits_per_weight - q:.3f})")


__all__ = ["QuantLinear", "LQLinear", "QuantizedWeight"]
