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
from dataclasses import dataclass

import torch

from linalg_core.quant import blockwise, codebooks

SCALE_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
_WIDTH = {"fp32": 32, "bf16": 16, "fp16": 16}


def _positive_multiple_of_8(v, name):
    if isinstance(v, bool) or not isinstance(v, int) or v < 8 or v % 8:
        raise ValueError(f"{name} must be a positive multiple of 8, got {v!r}")


def _choice(v, name, options):
    if v not in options:
        raise ValueError(f"{name} must be one of {sorted(options, key=str)}, got {v!r}")


class Format:
    """Base of the formats: ``quantize`` a flat tensor into named tensors, ``dequantize`` a range."""

    kind: str = ""
    block: int = 0

    def quantize(self, x: torch.Tensor, *, backend=None) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def dequantize(self, data, n, e0, e1, dtype, *, params=None, backend=None, out=None) -> torch.Tensor:
        """Elements [e0, e1) of the flat tensor (e0 a multiple of :attr:`block`), into ``out``
        (contiguous, e1 − e0 elements of ``dtype``) when given."""
        raise NotImplementedError

    def block_params(self, data, n):
        """Per-block float32 (scales, offsets or None) for :meth:`dequantize`; cached by callers."""
        return

    def layout(self, n: int) -> dict[str, tuple[tuple[int, ...], torch.dtype]]:
        """{name: (shape, dtype)} of the tensors :meth:`quantize` stores for n weights."""
        raise NotImplementedError

    def nominal_bits(self) -> float:
        raise NotImplementedError

    def check_shape(self, shape) -> None:
        """Raises ValueError when the format cannot store a matrix of this shape."""

    def to_json(self) -> str:
        return json.dumps({"kind": self.kind, **dataclasses.asdict(self)})

    @staticmethod
    def from_json(text: str) -> Format:
        d = json.loads(text)
        cls = FORMATS.get(d.pop("kind", None))
        if cls is None:
            raise ValueError(f"unknown quantization format in {text!r}")
        return cls(**d)


class _Codebook(Format):
    """Formats whose codes index a fixed table: value = level[code]·scale_b + offset_b."""

    bits: int

    @property
    def levels(self) -> torch.Tensor:
        raise NotImplementedError

    def dequantize(self, data, n, e0, e1, dtype, *, params=None, backend=None, out=None):
        scales, offsets = params if params is not None else self.block_params(data, n)
        b0, b1 = e0 // self.block, -(-e1 // self.block)
        codes = data["codes"][e0 * self.bits // 8: -(-e1 * self.bits // 8)]
        return blockwise.dequantize(codes, self.levels, scales[b0:b1], None if offsets is None else offsets[b0:b1],
                                    e1 - e0, self.block, dtype, backend=backend, out=out)


@dataclass(frozen=True)
class NormalFloat(_Codebook):
    """NF-k codes with blockwise absmax scales, the scales themselves quantized (LQ-LoRA).

    Storage: codes at ``bits`` per weight; one scale per ``block_size`` weights, stored as
    ``scale_bits``-bit unsigned codes of (absmax − min absmax) with one ``scale_dtype`` maximum per
    ``scale_block_size`` scales, plus one float32 offset; ``scale_bits=None`` keeps the scales in
    ``scale_dtype``. Nominal bits per weight: b + b0/B0 + b1/(B0·B1). Weights are coded against
    the dequantized scales, so the stored scales are exactly the ones the codes were chosen for.

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
        _choice(self.bits, "bits", {2, 3, 4, 8})
        _positive_multiple_of_8(self.block_size, "block_size")
        _choice(self.scale_bits, "scale_bits", {None, 2, 3, 4, 8})
        _positive_multiple_of_8(self.scale_block_size, "scale_block_size")
        _choice(self.scale_dtype, "scale_dtype", set(SCALE_DTYPES))

    @property
    def block(self):
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

    def quantize(self, x, *, backend=None):
        sdt = SCALE_DTYPES[self.scale_dtype]
        if self.scale_bits is None and self.scale_dtype == "fp32":
            codes, scales = blockwise.quantize(x, self.block_size, self.levels, backend=backend)
            return {"codes": codes, "scales": scales}
        _, absmax = blockwise.quantize(x, self.block_size, None, backend=backend)
        if self.scale_bits is None:
            stored = absmax.to(sdt)
            codes, _ = blockwise.quantize(x, self.block_size, self.levels, scales=stored.float(), backend=backend)
            return {"codes": codes, "scales": stored}
        offset = absmax.min().reshape(1)
        shifted = absmax - offset
        _, smax = blockwise.quantize(shifted, self.scale_block_size, None, backend=backend)
        smax = smax.to(sdt)
        scodes, _ = blockwise.quantize(shifted, self.scale_block_size, codebooks.uniform(self.scale_bits),
                                       scales=smax.float(), backend=backend)
        data = {"codes": None, "scale_codes": scodes, "scale_max": smax, "scale_offset": offset}
        scales, _ = self.block_params(data, x.numel())
        data["codes"], _ = blockwise.quantize(x, self.block_size, self.levels, scales=scales, backend=backend)
        return data

    def layout(self, n):
        nb, sdt = -(-n // self.block_size), SCALE_DTYPES[self.scale_dtype]
        out = {"codes": ((-(-n * self.bits // 8),), torch.uint8)}
        if self.scale_bits is None:
            return {**out, "scales": ((nb,), sdt)}
        return {**out, "scale_codes": ((-(-nb * self.scale_bits // 8),), torch.uint8),
                "scale_max": ((-(-nb // self.scale_block_size),), sdt), "scale_offset": ((1,), torch.float32)}

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
    """

    blocksize: int = 64
    double_quant: bool = True
    kind = "bnb_nf4"
    bits = 4

    def __post_init__(self):
        _choice(self.blocksize, "blocksize", {32, 64, 128, 256, 512, 1024, 2048, 4096})
        _choice(self.double_quant, "double_quant", {True, False})

    @property
    def block(self):
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

    def quantize(self, x, *, backend=None):
        codes, absmax = blockwise.quantize(x, self.blocksize, self.levels, backend=backend)
        if x.numel() % 2:  # bitsandbytes pads with one zero, whose NF4 code is 7
            codes[-1] |= 7
        if not self.double_quant:
            return {"codes": codes, "absmax": absmax}
        offset = absmax.mean().reshape(1)
        qabs, absmax2 = _lut_quantize(absmax - offset, 256)
        return {"codes": codes, "absmax": qabs, "offset": offset, "absmax2": absmax2}

    def layout(self, n):
        nb = -(-n // self.blocksize)
        out = {"codes": ((-(-n // 2),), torch.uint8)}
        if not self.double_quant:
            return {**out, "absmax": ((nb,), torch.float32)}
        return {**out, "absmax": ((nb,), torch.uint8), "offset": ((1,), torch.float32),
                "absmax2": ((-(-nb // 256),), torch.float32)}

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
    into a table of the nearest code at 65 536 points of [-1, 1]; blocks with absmax 0 give 0."""
    n = a.numel()
    nb = -(-n // block)
    ab = torch.zeros(nb * block, dtype=torch.float32, device=a.device)
    ab[:n] = a
    ab = ab.view(nb, block)
    amax = ab.abs().amax(1)
    inv = torch.where(amax > 0, 1.0 / amax, torch.zeros_like(amax))
    v = (ab * inv[:, None]).clamp(-1.0, 1.0)
    idx = ((v + 1.0) * 0.5 * (_LUT_SIZE - 1) + 0.5).to(torch.int64)
    q = _dynamic_lut().to(a.device)[idx]
    q[amax == 0] = 0
    return q.reshape(-1)[:n].contiguous(), amax


@dataclass(frozen=True)
class IntGroup(_Codebook):
    """INT-k group quantization along the flattened rows, ``group_size`` weights per scale.

    symmetric: s = absmax / (2^(k-1) − 1) stored in ``scale_dtype``, q = round(x / s) ∈
    [−2^(k-1), 2^(k-1) − 1], w = q·s. asymmetric: s = (max − min) / (2^k − 1), integer zero
    z = round(−min / s) ∈ [0, 2^k − 1] stored as uint8, q ∈ [0, 2^k − 1], w = q·s − z·s. Codes
    are rounded against the stored (rounded) scale; ties go to the lower level.
    """

    bits: int = 4
    group_size: int = 128
    symmetric: bool = True
    scale_dtype: str = "fp16"
    kind = "int"

    def __post_init__(self):
        _choice(self.bits, "bits", {2, 3, 4, 8})
        _positive_multiple_of_8(self.group_size, "group_size")
        _choice(self.symmetric, "symmetric", {True, False})
        _choice(self.scale_dtype, "scale_dtype", set(SCALE_DTYPES))

    @property
    def block(self):
        return self.group_size

    @property
    def levels(self):
        return codebooks.integers(self.bits, self.symmetric)

    def nominal_bits(self) -> float:
        return self.bits + (_WIDTH[self.scale_dtype] + (0 if self.symmetric else 8)) / self.group_size

    def __str__(self):
        return f"int{self.bits}-g{self.group_size}-{'sym' if self.symmetric else 'asym'}-{self.scale_dtype}"

    def quantize(self, x, *, backend=None):
        sdt = SCALE_DTYPES[self.scale_dtype]
        top = 2 ** self.bits - 1
        if self.symmetric:
            _, absmax = blockwise.quantize(x, self.group_size, None, backend=backend)
            stored = (absmax / (2 ** (self.bits - 1) - 1)).to(sdt)
            codes, _ = blockwise.quantize(x, self.group_size, self.levels, scales=stored.float(), backend=backend)
            return {"codes": codes, "scales": stored}
        blockwise.quantize(x, self.group_size, None, backend=backend)  # the finiteness check, one pass
        n, g = x.numel(), self.group_size
        flat = x.reshape(-1)
        if n % g:
            flat = torch.cat([flat, flat.new_zeros(g - n % g)])
        lo, hi = torch.aminmax(flat.view(-1, g), dim=1)  # one pass, in x's dtype (exact)
        lo, hi = lo.float().clamp(max=0), hi.float().clamp(min=0)  # the range holds 0, so z is a code
        span = (hi - lo).clamp(min=torch.finfo(torch.float32).tiny)
        stored = (span / top).to(sdt)
        s = stored.float()
        zeros = torch.round(-lo / s).clamp(0, top).to(torch.uint8)
        codes, _ = blockwise.quantize(x, g, self.levels, scales=s, offsets=-zeros.float() * s, backend=backend)
        return {"codes": codes, "scales": stored, "zeros": zeros}

    def layout(self, n):
        ng = -(-n // self.group_size)
        out = {"codes": ((-(-n * self.bits // 8),), torch.uint8), "scales": ((ng,), SCALE_DTYPES[self.scale_dtype])}
        return out if self.symmetric else {**out, "zeros": ((ng,), torch.uint8)}

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
    """

    type: str = "q4_0"
    kind = "gguf"
    block = 32

    def __post_init__(self):
        _choice(self.type, "type", {"q4_0", "q8_0"})

    def nominal_bits(self) -> float:
        return 4.5 if self.type == "q4_0" else 8.5

    def __str__(self):
        return self.type

    def check_shape(self, shape):
        if shape[-1] % 32:
            raise ValueError(f"GGUF {self.type} needs rows of a multiple of 32 weights, got shape {tuple(shape)}")

    def quantize(self, x, *, backend=None):
        blockwise.quantize(x, 32, None, backend=backend)  # the finiteness check
        xb = x.reshape(-1, 32).to(torch.float32)
        nb = xb.shape[0]
        if self.type == "q4_0":
            imax = xb.abs().argmax(1, keepdim=True)
            d = torch.gather(xb, 1, imax) / -8
            inv = torch.where(d == 0, torch.zeros_like(d), 1 / d)
            q = torch.trunc(xb * inv + 8.5).clamp(0, 15).to(torch.uint8).view(nb, 2, 16)
            qs = q[:, 0] | (q[:, 1] << 4)
        else:
            d = xb.abs().amax(1, keepdim=True) / 127
            inv = torch.where(d == 0, torch.zeros_like(d), 1 / d)
            v = xb * inv
            a = v.abs()
            fl = torch.floor(a)
            qs = (torch.sign(v) * (fl + torch.floor(2 * (a - fl)))).to(torch.int8).view(torch.uint8)
        dbytes = d.to(torch.float16).view(torch.uint8).reshape(nb, 2)
        return {"blocks": torch.cat([dbytes, qs], 1).contiguous()}

    def layout(self, n):
        return {"blocks": ((n // 32, 18 if self.type == "q4_0" else 34), torch.uint8)}

    def dequantize(self, data, n, e0, e1, dtype, *, params=None, backend=None, out=None):
        blocks = data["blocks"][e0 // 32: -(-e1 // 32)]
        d = blocks[:, :2].contiguous().view(torch.float16).to(torch.float32)
        if self.type == "q4_0":
            qs = blocks[:, 2:]
            q = torch.cat([qs & 0x0F, qs >> 4], 1).to(torch.float32) - 8
        else:
            q = blocks[:, 2:].contiguous().view(torch.int8).to(torch.float32)
        res = (d * q).reshape(-1)[: e1 - e0].to(dtype)
        return res if out is None else out.view(-1).copy_(res)


FORMATS = {"nf": NormalFloat, "bnb_nf4": BnbNF4, "int": IntGroup, "gguf": GGUF}


def parse(spec) -> Format:
    """A format from a :class:`Format`, or a short name: ``"nf4"``, ``"nf3"``, ``"nf2"`` (LQ-LoRA
    defaults), ``"bnb-nf4"``, ``"int4"``, ``"int4-asym"``, ``"q4_0"``, ``"q8_0"``.

    Example:
        >>> from linalg_core.quant.formats import parse
        >>> str(parse("nf3"))
        'nf3-b64-s8x256-fp32'
    """
    if isinstance(spec, Format):
        return spec
    names = {
        "nf2": NormalFloat(bits=2), "nf3": NormalFloat(bits=3), "nf4": NormalFloat(bits=4), "nf8": NormalFloat(bits=8),
        "bnb-nf4": BnbNF4(), "int4": IntGroup(), "int4-asym": IntGroup(symmetric=False),
        "int8": IntGroup(bits=8), "q4_0": GGUF("q4_0"), "q8_0": GGUF("q8_0"),
    }
    if spec not in names:
        raise ValueError(f"format must be a Format or one of {sorted(names)}, got {spec!r}")
    return names[spec]
