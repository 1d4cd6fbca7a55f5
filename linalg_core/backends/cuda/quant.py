"""CUDA blockwise codebook quantization and dequantization, and GGUF Q4_0 / Q8_0 blocks (csrc/cuda/quant/)."""

from __future__ import annotations

import torch

from linalg_core import _ops
from linalg_core._ext import _C
from linalg_core.backends._c import CODES, buf
from linalg_core.backends.cuda._launch import on, stream

CUDA = ("cuda",)
QUANT_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


@_ops.block_quantize.register("cuda", devices=CUDA, dtypes=QUANT_DTYPES)
def block_quantize(x, block, mid, bits, scales, offsets):
    n = x.numel()
    packed = torch.empty(-(-n * bits // 8), dtype=torch.uint8, device=x.device)
    s_out = torch.empty(-(-n // block), dtype=torch.float32, device=x.device) if scales is None else scales.clone()
    bad = torch.zeros((), dtype=torch.int64, device=x.device)  # the non-finite count, kept on the device
    with on(x.device):
        _C.cuda_block_quantize(buf(x), CODES[x.dtype], n, block, buf(mid), bits, buf(scales), buf(offsets),
                               buf(s_out) if scales is None else None, buf(packed), buf(bad), stream(x.device))
    return packed, s_out, bad


def _dequantize(packed, bits, levels, scales, offsets, n, block, out):
    with on(packed.device):
        _C.cuda_block_dequantize(buf(packed), bits, buf(levels), buf(scales), buf(offsets), n, block, buf(out),
                                 CODES[out.dtype], stream(packed.device))


@_ops.block_dequantize.register("cuda", devices=CUDA, dtypes=QUANT_DTYPES)
def block_dequantize(packed, bits, levels, scales, offsets, n, block, out_dtype):
    out = torch.empty(n, dtype=out_dtype, device=packed.device)
    _dequantize(packed, bits, levels, scales, offsets, n, block, out)
    return out


@_ops.block_dequantize_into.register("cuda", devices=CUDA, dtypes=QUANT_DTYPES)
def block_dequantize_into(packed, bits, levels, scales, offsets, n, block, out):
    _dequantize(packed, bits, levels, scales, offsets, n, block, out)


@_ops.gguf_quantize.register("cuda", devices=CUDA, dtypes=QUANT_DTYPES)
def gguf_quantize(x, bits):
    n = x.numel()
    blocks = torch.empty(n // 32, 18 if bits == 4 else 34, dtype=torch.uint8, device=x.device)
    counts = torch.zeros(2, dtype=torch.int64, device=x.device)  # non-finite x, blocks with a special d
    with on(x.device):
        _C.cuda_gguf_quantize(buf(x), CODES[x.dtype], n, bits, buf(blocks), buf(counts), stream(x.device))
    return blocks, counts[0].clone(), counts[1].clone()  # outputs that alias no other


def _gguf_dequantize(blocks, bits, n, out):
    with on(blocks.device):
        _C.cuda_gguf_dequantize(buf(blocks), bits, n, buf(out), CODES[out.dtype], stream(blocks.device))


@_ops.gguf_dequantize.register("cuda", devices=CUDA, dtypes=QUANT_DTYPES)
def gguf_dequantize(blocks, bits, n, out_dtype):
    out = torch.empty(n, dtype=out_dtype, device=blocks.device)
    _gguf_dequantize(blocks, bits, n, out)
    return out


@_ops.gguf_dequantize_into.register("cuda", devices=CUDA, dtypes=QUANT_DTYPES)
def gguf_dequantize_into(blocks, bits, n, out):
    _gguf_dequantize(blocks, bits, n, out)
