"""CPU blockwise codebook quantization and dequantization, and GGUF Q4_0 / Q8_0 blocks (csrc/cpu/quant.cpp)."""

from __future__ import annotations

import torch

from linalg_core import _ops
from linalg_core._ext import _C
from linalg_core.backends._c import CODES, buf

CPU = ("cpu",)
QUANT_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


@_ops.block_quantize.register("cpu", devices=CPU, dtypes=QUANT_DTYPES)
def block_quantize(x, block, mid, bits, scales, offsets):
    n = x.numel()
    packed = torch.empty(-(-n * bits // 8), dtype=torch.uint8)
    s_out = torch.empty(-(-n // block), dtype=torch.float32) if scales is None else scales.clone()  # an output never aliases an input
    bad = _C.cpu_block_quantize(buf(x), CODES[x.dtype], n, block, buf(mid), bits, buf(scales), buf(offsets),
                                buf(s_out) if scales is None else None, buf(packed))
    return packed, s_out, bad


def _dequantize(packed, bits, levels, scales, offsets, n, block, out):
    _C.cpu_block_dequantize(buf(packed), bits, buf(levels), buf(scales), buf(offsets), n, block, buf(out),
                            CODES[out.dtype])


@_ops.block_dequantize.register("cpu", devices=CPU, dtypes=QUANT_DTYPES)
def block_dequantize(packed, bits, levels, scales, offsets, n, block, out_dtype):
    out = torch.empty(n, dtype=out_dtype)
    _dequantize(packed, bits, levels, scales, offsets, n, block, out)
    return out


@_ops.block_dequantize_into.register("cpu", devices=CPU, dtypes=QUANT_DTYPES)
def block_dequantize_into(packed, bits, levels, scales, offsets, n, block, out):
    _dequantize(packed, bits, levels, scales, offsets, n, block, out)


@_ops.gguf_quantize.register("cpu", devices=CPU, dtypes=QUANT_DTYPES)
def gguf_quantize(x, bits):
    n = x.numel()
    blocks = torch.empty(n // 32, 18 if bits == 4 else 34, dtype=torch.uint8)
    bad, special = _C.cpu_gguf_quantize(buf(x), CODES[x.dtype], n, bits, buf(blocks))
    return blocks, bad, special


@_ops.gguf_dequantize.register("cpu", devices=CPU, dtypes=QUANT_DTYPES)
def gguf_dequantize(blocks, bits, n, out_dtype):
    out = torch.empty(n, dtype=out_dtype)
    _C.cpu_gguf_dequantize(buf(blocks), bits, n, buf(out), CODES[out_dtype])
    return out


@_ops.gguf_dequantize_into.register("cpu", devices=CPU, dtypes=QUANT_DTYPES)
def gguf_dequantize_into(blocks, bits, n, out):
    _C.cpu_gguf_dequantize(buf(blocks), bits, n, buf(out), CODES[out.dtype])
