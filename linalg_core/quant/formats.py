"""Quantization formats: frozen, validated configurations that quantize a weight into named
tensors and dequantize any block-aligned range of it.

* :class:`NormalFloat` — NF-k with blockwise absmax and LQ-LoRA's second-level quantization of
  the scales (Guo et al. 2024, "LQ-LoRA", Section 3.1: bits b, scale bits b0, scale-of-scale dtype
  b1, block sizes B0, B1).
* :class:`BnbNF4` — bitsandbytes' ``quantize_4bit(quant_type="nf4")``, bit-exact, with its double
  quantization (8-bit dynamic map of the absmax minus its mean, blocks of 256).
* :class:`IntGroup` — INT-k group quantization, symmetric (scale = absmax / (2^(k-1) - 1)) or
  asymmetric (scale = (max - min) / (2^k - 1), integer zero point).
* :class:`GGUF` — llama.cpp's Q4_0 and Q8_0 blocks, byte for byte as ``gguf.quants.quantize``.

Every format stores codes packed at their width; :attr:`QuantizedTensor.bits_per_param
<linalg_core.quant.QuantizedTensor.bits_per_param>` counts the bytes actually stored, and
:meth:`Format.nominal_bits` gives the paper's formula.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import numbers
import warnings
from collections.abc import Mapping
from dataclasses import dataclass

import torch

from linalg_core import _ops, _validate
from linalg_core._arrays import FLOAT_DTYPES
from linalg_core.quant import blockwise, codebooks

SCALE_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
_WIDTH = {"fp32": 32, "bf16": 16, "fp16": 16}
# Largest block / group size: the reference kernels pad to whole blocks, so a block far larger
# than any weight row would only allocate padding.
MAX_BLOCK = 1 << 16
_F32_MAX = torch.finfo(torch.float32).max
# The kernels code x·(1/max(s, 1e-38)): a nonzero block with a smaller scale is coded against
# 1e-38 instead of s and loses its values.
_KERNEL_TINY = 1e-38


def _integral_tensor(v):
    """A 0-d integer tensor as int (the scalar convention: 0-d tensors count as numbers)."""
    if isinstance(v, torch.Tensor) and v.dim() == 0 and not v.is_floating_point() and v.dtype != torch.bool:
        return int(v)
    return v


def _positive_multiple_of_8(obj, name):
    v = _integral_tensor(getattr(obj, name))
    if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 8 or v % 8 or v > MAX_BLOCK:
        raise ValueError(f"{name} must be a positive multiple of 8 up to {MAX_BLOCK}, got {v!r}")
    object.__setattr__(obj, name, int(v))


def _choice(obj, name, options):
    """``obj.name`` must equal one of ``options`` with the option's type (True is not 1, 4.0 is
    not 4; any integral type counts as int and is stored as int)."""
    v = _integral_tensor(getattr(obj, name))
    for o in options:
        if type(v) is type(o) and v == o:
            return
    if isinstance(v, numbers.Integral) and not isinstance(v, bool):
        for o in options:
            if type(o) is int and v == o:
                object.__setattr__(obj, name, int(v))
                return
    raise ValueError(f"{name} must be one of {sorted(options, key=str)}, got {v!r}")


def dense(t: torch.Tensor) -> torch.Tensor:
    """``t`` if contiguous and aligned to its element size (what the kernels read), else a copy."""
    if t.is_contiguous() and t.data_ptr() % t.element_size() == 0:
        return t
    return t.contiguous() if not t.is_contiguous() else t.clone()


def finite(t: torch.Tensor) -> bool:
    """Whether every entry of ``t`` is finite: its min and max (NaN propagates through them) for
    the small per-block tensors, one compiled pass for large ones."""
    if t.numel() == 0:
        return True
    if t.numel() > 1 << 16:
        return _validate.all_finite(t)
    lo, hi = torch.aminmax(t)
    return math.isfinite(lo.item()) and math.isfinite(hi.item())


def _dtype_name(dt: torch.dtype) -> str:
    return {torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16"}.get(dt, str(dt))


def _scale_hint(fmt) -> str:
    sdt = getattr(fmt, "scale_dtype", None)
    if sdt is None:
        return ""
    return '; scale_dtype="fp32" stores it' if sdt != "fp32" else ""


def check_scales(fmt, exact, stored, span, *, limit: float, what: str = "block scales", hint: str | None = None,
                 all_lost_raises: bool = True, stacklevel: int = 5) -> None:
    """Report scales that do not survive storage, for finite input.

    ``exact``: the scales before rounding to the stored dtype (float32, or a callable giving
    them); ``stored``: as stored;
    ``span``: the block magnitude they encode (absmax or range; 0 for all-zero blocks), for
    the messages and to tell empty blocks from lost ones (a callable giving it: only called when
    something is reported); ``limit``: the largest magnitude the stored dtype represents in this
    format.

    * A stored scale that overflows (Inf) raises ValueError naming the format, the largest
      block magnitude and ``limit``.
    * A nonzero block whose stored scale rounds to 0, is below the kernels' 1e-38 floor, or is
      off by more than 1/16 of itself (deep in the subnormal range) loses its values: a
      UserWarning counts such blocks; when every nonzero block is lost (W would quantize to
      zeros) it is a ValueError instead, unless ``all_lost_raises`` is False (formats that
      must give a peer's bytes, which are zeros there).
    """
    lo, hi = (v.item() for v in torch.aminmax(stored))
    if lo < 0:  # signed scales (GGUF's d)
        lo, hi = (v.item() for v in torch.aminmax(stored.abs()))
    if hi <= _F32_MAX and lo >= torch.finfo(stored.dtype).tiny:  # all finite and normal (NaN fails both)
        return
    sf = stored.float().abs()
    hint = _scale_hint(fmt) if hint is None else hint
    span = span() if callable(span) else span
    sdt = _dtype_name(stored.dtype)
    over = ~torch.isfinite(sf)
    if bool(over.any()):
        raise ValueError(f"{fmt}: {int(over.sum())} of {sf.numel()} {what} overflow {sdt}: the largest block "
                         f"magnitude is {float(span.max()):.6g}, {fmt} represents up to about {limit:.6g}{hint}")
    ex = (exact() if callable(exact) else exact).float().abs()
    nonzero = span > 0
    lost = nonzero & ((sf < _KERNEL_TINY) | ((sf - ex).abs() > ex / 16))
    k = int(lost.sum())
    if not k:
        return
    total = int(nonzero.sum())
    msg = (f"{fmt}: {k} of {total} nonzero blocks have {what} that underflow {sdt} (block magnitudes up to "
           f"{float(span[lost].max()):.3g}): their values are lost or keep only a few bits{hint}")
    if k == total and all_lost_raises:
        raise ValueError(msg + "; W would quantize to zeros")
    warnings.warn(msg, UserWarning, stacklevel=stacklevel)


class Format:
    """Base of the formats: ``quantize`` a tensor into named tensors, ``dequantize`` a range.

    Subclasses implement ``_quantize`` / ``_dequantize`` (no argument checks) and
    ``_float_tensors`` (the stored tensors that must be finite); the public methods validate.
    The formats: :class:`NormalFloat` (LQ-LoRA's NF-k), :class:`BnbNF4` (QLoRA / bitsandbytes),
    :class:`IntGroup` (INT-k groups), :class:`GGUF` (llama.cpp Q4_0 / Q8_0); :func:`parse` builds
    one from a short name. Most callers use :func:`~linalg_core.quant.quantize`, which wraps the
    stored tensors in a :class:`~linalg_core.quant.QuantizedTensor`.

    Shape:
        x: any shape, flattened to n weights;  stored tensors: :meth:`layout`\\ (n)

    Example:
        >>> import torch
        >>> from linalg_core.quant import Format, parse
        >>> fmt = parse("int4")
        >>> x = torch.randn(4, 128, generator=torch.Generator().manual_seed(0))
        >>> data = fmt.quantize(x)
        >>> {k: tuple(v.shape) for k, v in data.items()}
        {'codes': (256,), 'scales': (4,)}
        >>> y = fmt.dequantize(data, x.numel(), 0, x.numel(), torch.float32)
        >>> bool((y - x.flatten()).norm() / x.norm() < 0.15), Format.from_json(fmt.to_json()) == fmt
        (True, True)
    """

    kind: str = ""
    block: int = 0

    def quantize(self, x: torch.Tensor, *, backend=None) -> dict[str, torch.Tensor]:
        """The stored tensors (:meth:`layout`) of a non-empty float tensor ``x`` (flattened).

        Raises ValueError for NaN/Inf in ``x`` and for scales the stored dtype cannot hold
        (see :func:`check_scales`; a warning for blocks whose scales underflow).

        Args:
            x: float32, float64, float16 or bfloat16 tensor; quantized in row-major order.
            backend: force a backend for the kernels.

        Returns:
            ``{name: tensor}`` as :meth:`layout` describes for ``x.numel()`` weights.

        Shape:
            x: any (n elements);  out: :meth:`layout`\\ (n)
        """
        if not isinstance(x, torch.Tensor) or x.dtype not in FLOAT_DTYPES:
            raise TypeError(f"x must be a float32/float64/float16/bfloat16 tensor, got "
                            f"{getattr(x, 'dtype', type(x).__name__)}")
        if x.numel() == 0:
            raise ValueError(f"x is empty (shape {tuple(x.shape)})")
        self.check_shape(tuple(x.shape))
        return self._quantize(x, backend=backend)[0]

    def dequantize(self, data, n, e0, e1, dtype, *, params=None, backend=None, out=None) -> torch.Tensor:
        """Elements [e0, e1) of the flat tensor of ``n`` weights stored in ``data``, in ``dtype``.

        ``e0`` must start a block (a multiple of :attr:`block`); ``params`` is
        :meth:`block_params`'s result (computed when None); ``out`` (a contiguous tensor of
        e1 − e0 elements of ``dtype`` on the data's device) receives the values when given.
        The layout of ``data`` is checked (names, shapes, dtypes, one device); its values are
        the caller's (:class:`~linalg_core.quant.QuantizedTensor` validates them once). A
        float16 / bfloat16 result that would overflow raises ValueError.

        Args:
            data: the stored tensors, as :meth:`quantize` returns them.
            n: the number of weights stored.
            e0, e1: the element range, 0 ≤ e0 ≤ e1 ≤ n, e0 at a block start.
            dtype: the result's dtype (float32, float64, float16 or bfloat16).
            params: :meth:`block_params`\\ (data, n), or None to compute it.
            backend: force a backend for the kernels.
            out: an optional contiguous (e1 − e0,) tensor of ``dtype`` to write into.

        Returns:
            The values (``out`` when given).

        Shape:
            data: :meth:`layout`\\ (n);  result: (e1 − e0,)
        """
        n = _validate.integer(n, "n", low=1)
        data = self.check_layout(data, n, what="data")
        e0 = _validate.integer(e0, "e0", low=0, high=n)
        e1 = _validate.integer(e1, "e1", low=e0, high=n)
        if e0 % self.block:
            raise ValueError(f"e0={e0} does not start a {self.block}-element block of {self}")
        device = next(iter(data.values())).device
        if params is not None:
            params = self._check_params(params, n, device)
        if out is None:
            dtype = check_dtype(dtype, "dtype")
        else:
            out, dtype = check_out(out, (e1 - e0,), dtype, device, data, flat=True)
        params = self.block_params(data, n) if params is None else params
        return self.checked_dequantize(data, n, e0, e1, dtype, params, backend, out, self._max_abs(data, params))

    def checked_dequantize(self, data, n, e0, e1, dtype, params, backend, out, bound):
        """:meth:`_dequantize` of validated arguments; a 16-bit result is computed in float32 first
        and checked when ``bound`` (an upper bound of the values' magnitude) exceeds its range.

        Args:
            data, n, e0, e1, dtype, params, backend, out: as for :meth:`dequantize`, already
                validated (``params`` not None).
            bound: an upper bound of the magnitude of the values.

        Returns:
            The values (``out`` when given).

        Shape:
            result: (e1 − e0,)
        """
        if e1 == e0:
            res = torch.empty(0, dtype=dtype, device=next(iter(data.values())).device)
            return res if out is None else out.view(-1)
        if dtype not in (torch.float16, torch.bfloat16) or not bound * (1 + 2.0**-20) >= torch.finfo(dtype).max:
            return self._dequantize(data, n, e0, e1, dtype, params=params, backend=backend, out=out)
        res = self._dequantize(data, n, e0, e1, torch.float32, params=params, backend=backend).to(dtype)
        if not _validate.all_finite(res):
            bad = int((~torch.isfinite(res)).sum())
            raise ValueError(f"{bad} dequantized value(s) of {self} overflow {dtype} (its largest finite value is "
                             f"{torch.finfo(dtype).max:.6g}; the values reach {bound:.6g}): dequantize to float32")
        return res if out is None else out.view(-1).copy_(res)

    def _quantize(self, x, *, backend=None) -> tuple[dict[str, torch.Tensor], tuple | None]:
        """(stored tensors, their :meth:`block_params` when computed on the way, else None). The
        stored tensors meet :meth:`check_values` (scales that do not survive storage raise, through
        :func:`check_scales`): :func:`~linalg_core.quant.tensor.quantize` does not check them again."""
        raise NotImplementedError

    def _dequantize(self, data, n, e0, e1, dtype, *, params=None, backend=None, out=None) -> torch.Tensor:
        raise NotImplementedError

    def block_params(self, data, n):
        """Per-block float32 (scales, offsets or None) for :meth:`dequantize` (None for formats
        that keep their scales inside the blocks); cached by callers.

        Args:
            data: the stored tensors.
            n: the number of weights stored.

        Returns:
            ``(scales, offsets)`` of shape (number of blocks,) each (offsets None where the
            format has none), or None.
        """
        return

    def _check_params(self, params, n, device):
        return params

    def _max_abs(self, data, params) -> float:
        """An upper bound of the magnitude of the dequantized values."""
        raise NotImplementedError

    def _float_tensors(self, data) -> dict[str, torch.Tensor]:
        """The stored float values (scales, offsets) that must be finite, by name."""
        return {}

    def layout(self, n: int) -> dict[str, tuple[tuple[int, ...], torch.dtype]]:
        """{name: (shape, dtype)} of the tensors :meth:`quantize` stores for n weights."""
        raise NotImplementedError

    def nominal_bits(self) -> float:
        """Stored bits per weight, codes and scales included, for a large tensor (blocks full)."""
        raise NotImplementedError

    def check_shape(self, shape) -> None:
        """Raises ValueError when the format cannot store a tensor of this shape."""

    def check_layout(self, data, n: int, *, what: str = "data", prefix: str = "") -> dict[str, torch.Tensor]:
        """``data`` as a new dict holding exactly the tensors of :meth:`layout`\\ (n), each with
        its exact shape and dtype, strided, on one device; non-contiguous or misaligned ones (a
        safetensors file may place a float32 tensor at an odd offset) are copied (``data`` itself
        is never modified). Missing, unexpected, mis-shaped or
        mistyped tensors raise ValueError (TypeError for non-tensors) naming ``prefix + name``.

        Args:
            data: a mapping of names to tensors.
            n: the number of weights stored.
            what: what ``data`` is called in error messages.
            prefix: prepended to the tensor names in error messages (a state-dict prefix).

        Returns:
            The checked tensors, dense, in a new dict.
        """
        if not isinstance(data, Mapping):
            raise TypeError(f"{what} must be a dict of tensors by name, got {type(data).__name__}")
        expected = self.layout(n)
        missing = [prefix + k for k in expected if k not in data]
        if missing:
            raise ValueError(f"{what}: {', '.join(map(repr, missing))} missing: {self} of {n} weights stores "
                             f"{', '.join(map(repr, (prefix + k for k in expected)))}")
        extra = [prefix + str(k) for k in data if k not in expected]
        if extra:
            raise ValueError(f"{what}: unexpected tensor(s) {', '.join(map(repr, extra))}: {self} of {n} weights "
                             f"stores only {', '.join(map(repr, (prefix + k for k in expected)))}")
        out, device = {}, None
        for name, (shape, dt) in expected.items():
            t = data[name]
            if not isinstance(t, torch.Tensor):
                raise TypeError(f"{what}: {prefix + name!r} must be a torch.Tensor, got {type(t).__name__}")
            if t.layout != torch.strided:
                raise TypeError(f"{what}: {prefix + name!r} is a {t.layout} tensor; a dense (strided) one is needed")
            if tuple(t.shape) != shape or t.dtype != dt:
                raise ValueError(f"{what}: {prefix + name!r} is {t.dtype} {tuple(t.shape)}, expected {dt} {shape} "
                                 f"for {self} of {n} weights")
            if t.device.type == "meta":
                raise ValueError(f"{what}: {prefix + name!r} is on the meta device (it holds no data)")
            if device is None:
                device = t.device
            elif t.device != device:
                raise ValueError(f"{what}: {prefix + name!r} is on {t.device}, the other tensors on {device}")
            out[name] = dense(t)
        return out

    def check_values(self, data, n: int, *, what: str = "data", prefix: str = "") -> None:
        """The value invariants of a :meth:`check_layout`-checked ``data``: stored scales and
        offsets finite (ValueError naming the tensor and counting NaN / Inf); format-specific
        ranges (zero points).

        Args:
            data: tensors checked by :meth:`check_layout`.
            n: the number of weights stored.
            what, prefix: as for :meth:`check_layout`.
        """
        for name, t in self._float_tensors(data).items():
            if not finite(t):
                msg = _validate.nonfinite_message(t, repr(prefix + name))
                raise ValueError(f"{what}: {msg}; {self} needs finite scales")

    def to_json(self) -> str:
        """The format as JSON, ``{"kind": ..., <fields>}``; :meth:`from_json` reads it back."""
        return json.dumps({"kind": self.kind, **dataclasses.asdict(self)})

    @staticmethod
    def from_json(text: str) -> Format:
        """Inverse of :meth:`to_json`; ValueError for anything that is not a valid format."""
        try:
            d = json.loads(text)
        except (TypeError, ValueError) as e:
            raise ValueError(f"format is not valid JSON: {e}") from None
        kind = d.pop("kind", None) if isinstance(d, dict) else None
        cls = FORMATS.get(kind) if isinstance(kind, str) else None
        if cls is None:
            raise ValueError(f"unknown quantization format in {str(text)[:200]!r}")
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(map(str, set(d) - fields))
        if unknown:
            raise ValueError(f"{cls.__name__} has no field(s) {', '.join(unknown)} (format {str(text)[:200]!r})")
        return cls(**d)


def check_dtype(dtype, name: str) -> torch.dtype:
    if dtype not in FLOAT_DTYPES:
        raise TypeError(f"{name} must be torch.float32, float64, float16 or bfloat16, got {dtype!r}")
    return dtype


def check_out(out, shape, dtype, device, data, *, flat: bool = False) -> tuple[torch.Tensor, torch.dtype]:
    """(``out`` as a tensor (a NumPy array is viewed, not copied), the result dtype) after checking
    ``out`` is a writable, contiguous array of ``shape`` (or, with ``flat``, of that many
    elements) and ``dtype`` (None: ``out``'s own) on ``device`` that shares no memory with the
    stored tensors ``data``."""
    import numpy as np

    if isinstance(out, np.ndarray):
        if not out.flags.writeable or not out.flags.c_contiguous or not out.dtype.isnative:
            raise ValueError(f"out must be a writable, C-contiguous NumPy array in native byte order, got "
                             f"writeable={out.flags.writeable}, c_contiguous={out.flags.c_contiguous}, "
                             f"dtype {out.dtype}")
        t = torch.from_numpy(out)
    elif isinstance(out, torch.Tensor):
        t = out
    elif hasattr(out, "__dlpack__"):
        t = torch.from_dlpack(out)
    else:
        raise TypeError(f"out must be a torch.Tensor, NumPy array or DLPack array, got {type(out).__name__}")
    dtype = check_dtype(t.dtype if dtype is None else dtype, "dtype")
    n = 1
    for s in shape:
        n *= s
    ok_shape = t.numel() == n if flat else tuple(t.shape) == tuple(shape)
    if not ok_shape or t.dtype != dtype or t.device != device or not t.is_contiguous():
        raise ValueError(f"out must be a contiguous {tuple(shape)} tensor of {dtype} on {device}, got shape "
                         f"{tuple(t.shape)}, {t.dtype} on {t.device}{'' if t.is_contiguous() else ', not contiguous'}")
    if t.data_ptr() % t.element_size():
        raise ValueError(f"out is not aligned to its {t.element_size()}-byte elements (address {t.data_ptr():#x})")
    if t.requires_grad:
        raise ValueError("out requires grad: the dequantized values are written into it in place")
    if t.numel():
        lo, hi = t.data_ptr(), t.data_ptr() + t.numel() * t.element_size()
        for name, d in data.items():
            a = d.data_ptr()
            if d.numel() and d.device == t.device and a < hi and lo < a + d.numel() * d.element_size():
                raise ValueError(f"out overlaps the stored tensor {name!r}")
    return t, dtype


class _Codebook(Format):
    """Formats whose codes index a fixed table: value = level[code]·scale_b + offset_b."""

    bits: int

    @property
    def levels(self) -> torch.Tensor:
        """The code table: value = levels[code]·scale + offset (float32, 2^bits entries)."""
        raise NotImplementedError

    def _dequantize(self, data, n, e0, e1, dtype, *, params=None, backend=None, out=None):
        scales, offsets = params if params is not None else self.block_params(data, n)
        b0, b1 = e0 // self.block, -(-e1 // self.block)
        codes = data["codes"][e0 * self.bits // 8: -(-e1 * self.bits // 8)]
        return blockwise.dequantize(codes, self.levels, scales[b0:b1], None if offsets is None else offsets[b0:b1],
                                    e1 - e0, self.block, dtype, backend=backend, out=out)

    def _check_params(self, params, n, device):
        nb = -(-n // self.block)
        if not isinstance(params, (tuple, list)) or len(params) != 2:
            raise TypeError(f"params must be (scales, offsets or None) from block_params, got {type(params).__name__}")
        for name, p in zip(("scales", "offsets"), params):
            if p is None and name == "offsets":
                continue
            if (not isinstance(p, torch.Tensor) or p.dtype != torch.float32 or tuple(p.shape) != (nb,)
                    or p.device != device):
                raise ValueError(f"params {name} must be a float32 ({nb},) tensor on {device} (block_params), got "
                                 f"{getattr(p, 'dtype', type(p).__name__)} {tuple(getattr(p, 'shape', ()))}")
        return tuple(p if p is None else dense(p) for p in params)

    def _max_abs(self, data, params):
        scales, offsets = params
        bound = float(self.levels.abs().max()) * float(scales.abs().max())
        return bound + (float(offsets.abs().max()) if offsets is not None else 0.0)


@dataclass(frozen=True)
class NormalFloat(_Codebook):
    """NF-k codes with blockwise absmax scales, the scales themselves quantized (LQ-LoRA: Guo,
    Greengard, Xing and Kim 2024; NF4 itself: Dettmers et al. 2023, "QLoRA").

    Storage: codes at ``bits`` per weight; one scale per ``block_size`` weights, stored as
    ``scale_bits``-bit unsigned codes of (absmax − min absmax) with one ``scale_dtype`` maximum per
    ``scale_block_size`` scales, plus one float32 offset; ``scale_bits=None`` keeps the scales in
    ``scale_dtype``. Nominal bits per weight: b + b0/B0 + b1/(B0·B1). Weights are coded against
    the dequantized scales, so the stored scales are exactly the ones the codes were chosen for.

    Scales the ``scale_dtype`` cannot hold raise ValueError (fp16: block absmax above about
    6.55e4); blocks whose scale underflows give a warning (:func:`check_scales`).

    Example:
        >>> from linalg_core.quant import NormalFloat
        >>> NormalFloat(bits=3, block_size=64, scale_bits=8, scale_block_size=256).nominal_bits()
        3.126953125
    """

    bits: int = 4
    block_size: int = 64
    scale_bits: int | None = 8
    scale_block_size: int = 256
    scale_dtype: str = "fp32"
    kind = "nf"

    def __post_init__(self):
        _choice(self, "bits", {2, 3, 4, 8})
        _positive_multiple_of_8(self, "block_size")
        _choice(self, "scale_bits", {None, 2, 3, 4, 8})
        _positive_multiple_of_8(self, "scale_block_size")
        _choice(self, "scale_dtype", set(SCALE_DTYPES))

    @property
    def block(self):
        """Weights per scale (``block_size``)."""
        return self.block_size

    @property
    def levels(self):
        return codebooks.normal_float(self.bits)

    def nominal_bits(self) -> float:
        if self.scale_bits is None:
            return self.bits + _WIDTH[self.scale_dtype] / self.block_size
        return (self.bits + self.scale_bits / self.block_size
                + _WIDTH[self.scale_dtype] / (self.block_size * self.scale_block_size))

    def __str__(self):
        s = "" if self.scale_bits is None else f"-s{self.scale_bits}x{self.scale_block_size}"
        return f"nf{self.bits}-b{self.block_size}{s}-{self.scale_dtype}"

    def _quantize(self, x, *, backend=None):
        sdt = SCALE_DTYPES[self.scale_dtype]
        smax_limit = torch.finfo(sdt).max
        if self.scale_bits is None and self.scale_dtype == "fp32":
            codes, scales = blockwise.quantize(x, self.block_size, self.levels, backend=backend)
            check_scales(self, scales, scales, scales, limit=smax_limit, what="block absmax")
            return {"codes": codes, "scales": scales}, (scales, None)
        _, absmax = blockwise.quantize(x, self.block_size, None, backend=backend)
        if self.scale_bits is None:
            stored = absmax.to(sdt)
            check_scales(self, absmax, stored, absmax, limit=smax_limit, what="block absmax")
            s = stored.float()
            codes, _ = blockwise.quantize(x, self.block_size, self.levels, scales=s, backend=backend)
            return {"codes": codes, "scales": stored}, (s, None)
        offset = absmax.min().reshape(1)
        shifted = absmax - offset
        _, smax = blockwise.quantize(shifted, self.scale_block_size, None, backend=backend)
        stored = smax.to(sdt)
        check_scales(self, smax, stored, smax, limit=smax_limit, what="scale_max values (block absmax minus their "
                     f"minimum {float(offset):.6g})")
        smax = stored
        scodes, _ = blockwise.quantize(shifted, self.scale_block_size, codebooks.uniform(self.scale_bits),
                                       scales=smax.float(), backend=backend)
        data = {"codes": None, "scale_codes": scodes, "scale_max": smax, "scale_offset": offset}
        scales, _ = self.block_params(data, x.numel())
        if not finite(scales):
            raise ValueError(f"{self}: {int((~torch.isfinite(scales)).sum())} block scales (scale_offset "
                             f"{float(offset):.6g} plus the coded scale_max) overflow float32: the block absmax "
                             f"reach {float(absmax.max()):.6g}; scale W down")
        data["codes"], _ = blockwise.quantize(x, self.block_size, self.levels, scales=scales, backend=backend)
        return data, (scales, None)

    def layout(self, n):
        nb, sdt = -(-n // self.block_size), SCALE_DTYPES[self.scale_dtype]
        out = {"codes": ((-(-n * self.bits // 8),), torch.uint8)}
        if self.scale_bits is None:
            return {**out, "scales": ((nb,), sdt)}
        return {**out, "scale_codes": ((-(-nb * self.scale_bits // 8),), torch.uint8),
                "scale_max": ((-(-nb // self.scale_block_size),), sdt), "scale_offset": ((1,), torch.float32)}

    def _float_tensors(self, data):
        names = ("scales",) if self.scale_bits is None else ("scale_max", "scale_offset")
        return {k: data[k] for k in names}

    def block_params(self, data, n):
        if "scales" in data:
            return data["scales"].float(), None
        nb = -(-n // self.block_size)
        smax = data["scale_max"].float()
        offsets = data["scale_offset"].expand(smax.numel())
        scales = blockwise.dequantize(data["scale_codes"], codebooks.uniform(self.scale_bits), smax, offsets, nb,
                                      self.scale_block_size, torch.float32)
        return scales, None


@dataclass(frozen=True)
class BnbNF4(_Codebook):
    """bitsandbytes' NF4 (``quantize_4bit(A, blocksize, quant_type="nf4",
    compress_statistics=double_quant)``), bit-exact with bitsandbytes ≥ 0.45 on the CPU.

    Codes: NF4 of x·(1/absmax) per ``blocksize`` block, two per byte, first element in the high
    nibble. Double quantization: the absmax minus its mean, 8-bit dynamic-map codes per 256, with
    bitsandbytes' CPU rounding (a 65 536-entry lookup table over [-1, 1]; its CUDA kernel rounds
    to the nearest code instead, which differs on ~0.2 % of the scale codes).
    :meth:`QuantizedTensor.to_bitsandbytes` gives bitsandbytes' own (packed, QuantState).

    Edge cases follow bitsandbytes where it returns finite values (blocks whose absmax is below
    float32's normal range code as it codes them, with a warning that their values are lost);
    where it writes Inf (double quantization of weights whose absmax mean or scales overflow
    float32) ValueError is raised instead.

    Dettmers, Pagnoni, Holtzman and Zettlemoyer (2023), "QLoRA: Efficient Finetuning of
    Quantized LLMs" (NF4 and double quantization).

    Example:
        >>> import torch
        >>> from linalg_core.quant import BnbNF4
        >>> fmt = BnbNF4()
        >>> fmt.nominal_bits(), str(fmt)
        (4.126953125, 'bnb-nf4-b64-dq')
        >>> data = fmt.quantize(torch.randn(4, 64, generator=torch.Generator().manual_seed(0)))
        >>> sorted(data), data["codes"].dtype
        (['absmax', 'absmax2', 'codes', 'offset'], torch.uint8)
    """

    blocksize: int = 64
    double_quant: bool = True
    kind = "bnb_nf4"
    bits = 4

    def __post_init__(self):
        _choice(self, "blocksize", {32, 64, 128, 256, 512, 1024, 2048, 4096})
        _choice(self, "double_quant", {True, False})

    @property
    def block(self):
        """Weights per absmax (``blocksize``)."""
        return self.blocksize

    @property
    def levels(self):
        return codebooks.normal_float(4)

    def nominal_bits(self) -> float:
        if not self.double_quant:
            return 4 + 32 / self.blocksize
        return 4 + 8 / self.blocksize + 32 / (self.blocksize * 256)

    def __str__(self):
        return f"bnb-nf4-b{self.blocksize}" + ("-dq" if self.double_quant else "")

    def _quantize(self, x, *, backend=None):
        codes, absmax = blockwise.quantize(x, self.blocksize, self.levels, backend=backend)
        if x.numel() % self.blocksize and absmax[-1] < _KERNEL_TINY:
            # bitsandbytes' CPU kernel stores a partial last block's absmax as max(absmax, 1e-38), the
            # scale its codes were chosen for (ours too: the kernels code against max(s, 1e-38))
            absmax[-1] = _KERNEL_TINY
        check_scales(self, absmax, absmax, absmax, limit=_F32_MAX, what="block absmax", all_lost_raises=False,
                     hint=" (bitsandbytes codes them as zeros too)")
        if x.numel() % 2:  # bitsandbytes pads with one zero, whose NF4 code is 7
            codes[-1] |= 7
        if not self.double_quant:
            return {"codes": codes, "absmax": absmax}, (absmax, None)
        offset = absmax.mean().reshape(1)
        if not math.isfinite(offset.item()):
            raise ValueError(f"{self}: the mean of the block absmax overflows float32 (the largest is "
                             f"{float(absmax.max()):.6g}); bitsandbytes' double quantization writes inf here: "
                             f"use BnbNF4(double_quant=False) or scale W down")
        qabs, absmax2 = _lut_quantize(absmax - offset, 256)
        data = {"codes": codes, "absmax": qabs, "offset": offset, "absmax2": absmax2}
        scales, _ = self.block_params(data, x.numel())
        if not finite(scales):
            raise ValueError(f"{self}: {int((~torch.isfinite(scales)).sum())} double-quantized block scales overflow "
                             f"float32 (the block absmax reach {float(absmax.max()):.6g}); bitsandbytes writes inf "
                             f"here: use BnbNF4(double_quant=False) or scale W down")
        return data, (scales, None)

    def layout(self, n):
        nb = -(-n // self.blocksize)
        out = {"codes": ((-(-n // 2),), torch.uint8)}
        if not self.double_quant:
            return {**out, "absmax": ((nb,), torch.float32)}
        return {**out, "absmax": ((nb,), torch.uint8), "offset": ((1,), torch.float32),
                "absmax2": ((-(-nb // 256),), torch.float32)}

    def _float_tensors(self, data):
        names = ("offset", "absmax2") if self.double_quant else ("absmax",)
        return {k: data[k] for k in names}

    def block_params(self, data, n):
        if not self.double_quant:
            return data["absmax"], None
        a2 = data["absmax2"]
        scales = blockwise.dequantize(data["absmax"], codebooks.dynamic_map(), a2, data["offset"].expand(a2.numel()),
                                      data["absmax"].numel(), 256, torch.float32)
        return scales, None


_LUT_SIZE = 65536


@functools.cache
def _dynamic_lut() -> torch.Tensor:
    """Index of the nearest dynamic-map code at -1 + 2i/65535, i < 65536 (float32 arithmetic)."""
    code = codebooks.dynamic_map()
    val = -1.0 + (2.0 * torch.arange(_LUT_SIZE, dtype=torch.float32)) / (_LUT_SIZE - 1)
    mid = 0.5 * (code[:-1] + code[1:])
    return torch.searchsorted(mid, val, right=False).to(torch.uint8)


def _lut_quantize(a: torch.Tensor, block: int):
    """bitsandbytes' CPU blockwise 8-bit quantization: index (v + 1)·0.5·65535 + 0.5 (truncated)
    into a table of the nearest code at 65 536 points of [-1, 1], v = a·(1/absmax) clamped to
    [-1, 1] with NaN taken as -1 (bitsandbytes' fmax(NaN, -1)): an absmax of 0 or below float32's
    normal range makes 1/absmax infinite, x·inf = ±inf → ±1 and 0·inf = NaN → -1 (code 0)."""
    n = a.numel()
    nb = -(-n // block)
    ab = torch.zeros(nb * block, dtype=torch.float32, device=a.device)
    ab[:n] = a
    ab = ab.view(nb, block)
    amax = ab.abs().amax(1)
    if not finite(amax):
        raise ValueError("the values to double-quantize are not finite")
    v = (ab * (1.0 / amax)[:, None]).nan_to_num_(nan=-1.0, posinf=1.0, neginf=-1.0).clamp_(-1.0, 1.0)
    idx = ((v + 1.0) * 0.5 * (_LUT_SIZE - 1) + 0.5).to(torch.int64)
    q = _dynamic_lut().to(a.device)[idx]
    return q.reshape(-1)[:n].contiguous(), amax


@dataclass(frozen=True)
class IntGroup(_Codebook):
    """INT-k group quantization along the flattened rows, ``group_size`` weights per scale.

    symmetric: s = absmax / (2^(k-1) − 1) stored in ``scale_dtype``, q = round(x / s) ∈
    [−2^(k-1), 2^(k-1) − 1], w = q·s. asymmetric: s = (max − min) / (2^k − 1), integer zero
    z = round(−min / s) ∈ [0, 2^k − 1] stored as uint8, q ∈ [0, 2^k − 1], w = q·s − z·s. Codes
    are rounded against the stored (rounded) scale; ties go to the lower level.

    Scales the ``scale_dtype`` cannot hold raise ValueError (fp16, the default: |W| above about
    4.59e5 for INT4, 8.32e6 for INT8; ``scale_dtype="fp32"`` stores them); groups whose scale
    underflows (fp16: a group absmax below about 1e-6 for INT4) give a warning, or ValueError
    when every nonzero group would be lost (:func:`check_scales`).

    Example:
        >>> import torch
        >>> from linalg_core.quant import IntGroup
        >>> fmt = IntGroup(bits=4, group_size=64, symmetric=False)
        >>> fmt.nominal_bits(), fmt.levels.tolist()[:3]
        (4.375, [0.0, 1.0, 2.0])
        >>> x = torch.randn(2, 64, generator=torch.Generator().manual_seed(0))
        >>> y = fmt.dequantize(fmt.quantize(x), 128, 0, 128, torch.float32)
        >>> bool((y - x.flatten()).norm() / x.norm() < 0.15)
        True
    """

    bits: int = 4
    group_size: int = 128
    symmetric: bool = True
    scale_dtype: str = "fp16"
    kind = "int"

    def __post_init__(self):
        _choice(self, "bits", {2, 3, 4, 8})
        _positive_multiple_of_8(self, "group_size")
        _choice(self, "symmetric", {True, False})
        _choice(self, "scale_dtype", set(SCALE_DTYPES))

    @property
    def block(self):
        """Weights per scale (``group_size``)."""
        return self.group_size

    @property
    def levels(self):
        return codebooks.integers(self.bits, self.symmetric)

    def nominal_bits(self) -> float:
        return self.bits + (_WIDTH[self.scale_dtype] + (0 if self.symmetric else 8)) / self.group_size

    def __str__(self):
        return f"int{self.bits}-g{self.group_size}-{'sym' if self.symmetric else 'asym'}-{self.scale_dtype}"

    def _quantize(self, x, *, backend=None):
        sdt = SCALE_DTYPES[self.scale_dtype]
        top = 2 ** self.bits - 1
        if self.symmetric:
            _, absmax = blockwise.quantize(x, self.group_size, None, backend=backend)
            div = 2 ** (self.bits - 1) - 1
            exact = absmax / div
            stored = exact.to(sdt)
            check_scales(self, exact, stored, absmax, limit=min(torch.finfo(sdt).max * div, _F32_MAX))
            s = stored.float()
            codes, _ = blockwise.quantize(x, self.group_size, self.levels, scales=s, backend=backend)
            return {"codes": codes, "scales": stored}, (s, None)
        blockwise.quantize(x, self.group_size, None, backend=backend)  # the finiteness check, one pass
        n, g = x.numel(), self.group_size
        flat = x.reshape(-1)
        if n % g:
            flat = torch.cat([flat, flat.new_zeros(g - n % g)])
        lo, hi = torch.aminmax(flat.view(-1, g), dim=1)  # one pass, in x's dtype (exact)
        lo, hi = lo.float().clamp(max=0), hi.float().clamp(min=0)  # the range holds 0, so z is a code
        stored = ((hi - lo).clamp(min=torch.finfo(torch.float32).tiny) / top).to(sdt)
        check_scales(self, lambda: (hi - lo) / top, stored, lambda: hi.double() - lo.double(),
                     what="group scales (max − min)",
                     limit=min(torch.finfo(sdt).max * top, _F32_MAX),
                     hint=None if self.scale_dtype != "fp32" else "; scale W down")
        s = stored.float()
        zeros = torch.round(-lo / s).nan_to_num_(nan=0.0).clamp_(0, top).to(torch.uint8)  # 0/0: an all-zero group
        offsets = -zeros.float() * s
        codes, _ = blockwise.quantize(x, g, self.levels, scales=s, offsets=offsets, backend=backend)
        return {"codes": codes, "scales": stored, "zeros": zeros}, (s, offsets)

    def layout(self, n):
        ng = -(-n // self.group_size)
        out = {"codes": ((-(-n * self.bits // 8),), torch.uint8), "scales": ((ng,), SCALE_DTYPES[self.scale_dtype])}
        return out if self.symmetric else {**out, "zeros": ((ng,), torch.uint8)}

    def _float_tensors(self, data):
        return {"scales": data["scales"]}

    def check_values(self, data, n, *, what="data", prefix=""):
        super().check_values(data, n, what=what, prefix=prefix)
        if not self.symmetric:
            top = 2 ** self.bits - 1
            z = data["zeros"]
            if z.numel() and int(z.max()) > top:
                raise ValueError(f"{what}: {prefix + 'zeros'!r} has {int((z > top).sum())} zero point(s) above "
                                 f"{top} (the largest is {int(z.max())}); {self} codes are in [0, {top}]")

    def block_params(self, data, n):
        s = data["scales"].float()
        return s, (None if self.symmetric else -data["zeros"].float() * s)


@dataclass(frozen=True)
class GGUF(Format):
    """llama.cpp blocks of 32 weights, byte for byte as ``gguf.quants.quantize``.

    ``"q4_0"``: fp16 d = (the value of largest magnitude) / −8, q = min(15, trunc(x/d + 8.5)),
    w = d·(q − 8); element j of a block in the low nibble of byte j, element j + 16 in its high
    nibble; 18 bytes = 4.5 bits per weight. ``"q8_0"``: d = absmax / 127, q = x/d rounded half
    away from zero, int8; 34 bytes = 8.5 bits per weight. Rows must hold a multiple of 32 weights.

    d is fp16: weights above about 5.24e5 (q4_0) or 8.32e6 (q8_0) in magnitude raise ValueError
    (``gguf.quants`` writes inf there); blocks whose d underflows give a warning.

    Example:
        >>> import torch
        >>> from linalg_core.quant import GGUF
        >>> fmt = GGUF("q4_0")
        >>> data = fmt.quantize(torch.randn(2, 64, generator=torch.Generator().manual_seed(0)))
        >>> tuple(data["blocks"].shape), fmt.nominal_bits()
        ((4, 18), 4.5)
    """

    type: str = "q4_0"
    kind = "gguf"
    block = 32

    def __post_init__(self):
        _choice(self, "type", {"q4_0", "q8_0"})

    def nominal_bits(self) -> float:
        return 4.5 if self.type == "q4_0" else 8.5

    def __str__(self):
        return self.type

    def check_shape(self, shape):
        if shape[-1] % 32:
            raise ValueError(f"GGUF {self.type} needs rows of a multiple of 32 weights, got shape {tuple(shape)}")

    @property
    def _bits(self):
        return 4 if self.type == "q4_0" else 8

    def _quantize(self, x, *, backend=None):
        flat = x.reshape(-1)
        xf = (flat if flat.dtype in _GGUF_DTYPES else flat.to(torch.float32)).contiguous()
        # one pass; it also counts the NaN / Inf in x and the blocks whose fp16 d is zero, subnormal or Inf
        blocks, bad, special = _ops.gguf_quantize(xf, self._bits, backend=backend)
        if int(bad):
            blockwise.quantize(x, 32, None, backend=backend)  # raises the ValueError that names them
        if int(special):  # all-zero blocks, or d underflowed / overflowed fp16: report as the other formats
            div = 8 if self.type == "q4_0" else 127
            absmax = blockwise.quantize(xf, 32, None, backend=backend)[1]
            check_scales(self, absmax / div, _gguf_d(blocks).view(-1), absmax,
                         limit=torch.finfo(torch.float16).max * div, what="block scales d",
                         hint="; GGUF stores d in fp16 (gguf.quants writes inf or 0 there)")
        return {"blocks": blocks}, None

    def layout(self, n):
        return {"blocks": ((n // 32, 18 if self.type == "q4_0" else 34), torch.uint8)}

    def _float_tensors(self, data):
        return {"blocks[:, :2] (the fp16 block scales d)": _gguf_d(data["blocks"])}

    def _max_abs(self, data, params):
        d = _gguf_d(data["blocks"])
        return float(d.float().abs().max()) * (8 if self.type == "q4_0" else 128) if d.numel() else 0.0

    def _dequantize(self, data, n, e0, e1, dtype, *, params=None, backend=None, out=None):
        blocks = data["blocks"][e0 // 32: -(-e1 // 32)]  # whole rows: contiguous
        if dtype not in _GGUF_DTYPES:  # float64: the float32 values d·q are exact
            res = _ops.gguf_dequantize(blocks, self._bits, e1 - e0, torch.float32, backend=backend).to(dtype)
            return res if out is None else out.view(-1).copy_(res)
        if out is None:
            return _ops.gguf_dequantize(blocks, self._bits, e1 - e0, dtype, backend=backend)
        flat = out.view(-1)
        _ops.gguf_dequantize_into(blocks, self._bits, e1 - e0, flat, backend=backend)
        return flat


_GGUF_DTYPES = (torch.float32, torch.float16, torch.bfloat16)  # the kernels' input and output dtypes


def _gguf_d(blocks: torch.Tensor) -> torch.Tensor:
    """The fp16 scales d (nb, 1) of GGUF blocks (nb, bytes): their first two bytes."""
    return blocks[:, :2].contiguous().view(torch.float16)


FORMATS = {"nf": NormalFloat, "bnb_nf4": BnbNF4, "int": IntGroup, "gguf": GGUF}


def parse(spec) -> Format:
    """A format from a :class:`Format`, or a short name: ``"nf4"``, ``"nf3"``, ``"nf2"`` (LQ-LoRA
    defaults), ``"bnb-nf4"``, ``"int4"``, ``"int4-asym"``, ``"q4_0"``, ``"q8_0"``.

    Args:
        spec: a :class:`Format` (returned as is) or one of the names above (also ``"nf8"``,
            ``"int8"``).

    Returns:
        The :class:`Format`.

    Raises:
        ValueError: an unknown name.

    Example:
        >>> from linalg_core.quant.formats import parse
        >>> str(parse("nf3"))
        'nf3-b64-s8x256-fp32'
    """
    if isinstance(spec, Format):
        return spec
    names = _named_formats()
    if not isinstance(spec, str) or spec not in names:
        raise ValueError(f"format must be a Format or one of {sorted(names)}, got {spec!r}")
    return names[spec]


@functools.cache
def _named_formats() -> dict[str, Format]:
    return {
        "nf2": NormalFloat(bits=2), "nf3": NormalFloat(bits=3), "nf4": NormalFloat(bits=4), "nf8": NormalFloat(bits=8),
        "bnb-nf4": BnbNF4(), "int4": IntGroup(), "int4-asym": IntGroup(symmetric=False),
        "int8": IntGroup(bits=8), "q4_0": GGUF("q4_0"), "q8_0": GGUF("q8_0"),
    }
