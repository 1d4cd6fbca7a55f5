"""The ``cpu`` backend: C++/OpenMP kernels of ``linalg_core._C`` (SIMD set chosen at run time).

:class:`Launch` marshals tensors into the pointer/shape/dtype-code arguments of ``_C`` and is
shared with the ``cuda`` backend, whose kernels take the same arguments plus a stream.
"""

from __future__ import annotations

import contextlib

import torch

from linalg_core import _ops
from linalg_core._arrays import DTYPE_CODES, FLOAT_DTYPES, compute_dtype
from linalg_core._ext import _C
from linalg_core.backends.reference.qmatmul import check_int8_range, scale_output
from linalg_core.backends.reference.sketch import fwht_then_select

F32_F64 = (torch.float32, torch.float64)


def buf(t: torch.Tensor | None) -> tuple[int, int, int] | None:
    """The (data pointer, bytes, device) triple the bindings of ``_C`` take for a contiguous
    tensor (``None`` for an absent one): the bindings check every size against these bytes."""
    if t is None:
        return None
    if not t.is_contiguous():
        raise ValueError(f"internal: a kernel buffer must be contiguous, got strides {t.stride()}")
    return (t.data_ptr(), t.nbytes, -1 if t.is_cpu else t.get_device())


class Launch:
    """Calls ``_C.<prefix>_<kernel>`` with tensors turned into data pointers."""

    def __init__(self, prefix: str):
        self.prefix = prefix

    def _kernel(self, name):
        return getattr(_C, f"{self.prefix}_{name}")

    def _context(self, device: torch.device):
        return torch.cuda.device(device) if device.type == "cuda" else contextlib.nullcontext()

    def _stream(self, device: torch.device) -> tuple:
        return (torch.cuda.current_stream(device).cuda_stream,) if device.type == "cuda" else ()

    def fwht(self, x, N, row_mult, scale, out_dtype, out=None):
        B, n_valid, K = x.shape
        out = torch.empty(B, N, K, dtype=out_dtype, device=x.device) if out is None else out
        mult = buf(row_mult)
        args = (buf(x), buf(out), DTYPE_CODES[x.dtype], DTYPE_CODES[out_dtype], B, n_valid, N, K, mult,
                float(scale))
        with self._context(x.device):
            if self.prefix == "cuda":
                nbytes = _C.cuda_fwht_workspace_bytes(DTYPE_CODES[out_dtype], B, N, K)
                ws = torch.empty(nbytes, dtype=torch.uint8, device=x.device) if nbytes else None
                args += (buf(ws),)
            self._kernel("fwht")(*args, *self._stream(x.device))
        return out

    def fwht_select(self, x, N, row_mult, scale, rows, out_dtype, work=None):
        B, n_valid, K = x.shape
        cdt = compute_dtype(x.dtype, out_dtype)
        if work is None:
            work = torch.empty(B, N, K, dtype=cdt, device=x.device)
        out = torch.empty(B, rows.numel(), K, dtype=out_dtype, device=x.device)
        mult = buf(row_mult)
        _C.cpu_fwht_select(buf(x), buf(work), buf(out), DTYPE_CODES[x.dtype], DTYPE_CODES[out_dtype],
                           B, n_valid, N, K, mult, float(scale), buf(rows), rows.numel())
        return out

    def sparse_hash(self, n, col0, m, s, stream, seed, device):
        device = torch.device(device)
        rows = torch.empty(n, s, dtype=torch.int32, device=device)
        signs = torch.empty(n, s, dtype=torch.int8, device=device)
        with self._context(device):
            self._kernel("sparse_hash")(buf(rows), buf(signs), n, col0, m, s, stream, seed,
                                        *self._stream(device))
        return rows, signs

    def sparse_apply(self, A, rows, signs, m, scale, right):
        cdt = compute_dtype(A.dtype)
        if right:  # A (B, d, n): rows of A are independent
            B, d, n = A.shape
            out = torch.empty(B, d, m, dtype=cdt, device=A.device)
        else:
            B, n, d = A.shape
            out = torch.empty(B, m, d, dtype=cdt, device=A.device)
        with self._context(A.device):
            self._kernel("sparse_apply")(buf(A), buf(out), DTYPE_CODES[A.dtype], DTYPE_CODES[cdt], right,
                                         B, n, d, m, rows.shape[1], buf(rows), buf(signs), float(scale),
                                         *self._stream(A.device))
        return out

    def random_uint32(self, count, offset, stream, seed, device):
        device = torch.device(device)
        out = torch.empty(count, dtype=torch.int32, device=device)
        with self._context(device):
            self._kernel("random_uint32")(buf(out), count, offset, stream, seed, *self._stream(device))
        return out.to(torch.int64) & 0xFFFFFFFF

    def random_fill(self, nrows, ncols, ld, row0, col0, stream, seed, scale, sign, dtype, device):
        device = torch.device(device)
        out = torch.empty(nrows, ncols, dtype=dtype, device=device)
        with self._context(device):
            self._kernel("random_fill")(buf(out), DTYPE_CODES[dtype], sign, nrows, ncols, ld, row0, col0,
                                        stream, seed, float(scale), *self._stream(device))
        return out

    def convert(self, x, out):
        if out is None:
            return _C.cpu_convert(buf(x), None, DTYPE_CODES[x.dtype], 0, x.numel())
        return _C.cpu_convert(buf(x), buf(out), DTYPE_CODES[x.dtype], DTYPE_CODES[out.dtype], x.numel())

    # Above these widths BLAS-3 (a scaled copy and a GEMM) beats the row-blocked kernels:
    # measured at n = 2^17, float64: d = 64 kernel 2.2x (Gram) / 1.9x (forms) faster, d = 256
    # 1.2x / 0.74x.
    GRAM_MAX_D, FORMS_MAX_D = 256, 128

    def weighted_gram(self, A, v):
        if A.shape[1] > self.GRAM_MAX_D:
            return A.T @ (A * v[:, None])
        G = torch.empty(A.shape[1], A.shape[1], dtype=A.dtype)
        _C.cpu_weighted_gram(buf(A), buf(v), buf(G), DTYPE_CODES[A.dtype], *A.shape)
        return G

    def row_quadratic_forms(self, A, M):
        if A.shape[1] > self.FORMS_MAX_D:
            return ((A @ M) * A).sum(1)
        q = torch.empty(A.shape[0], dtype=A.dtype)
        _C.cpu_row_quadratic_forms(buf(A), buf(M), buf(q), DTYPE_CODES[A.dtype], *A.shape)
        return q

    def block_quantize(self, x, block, mid, bits, scales=None, offsets=None):
        n = x.numel()
        nb = -(-n // block)
        packed = torch.empty(-(-n * bits // 8), dtype=torch.uint8, device=x.device)
        s_out = torch.empty(nb, dtype=torch.float32, device=x.device) if scales is None else scales
        args = (buf(x), DTYPE_CODES[x.dtype], n, block, buf(mid), bits,
                buf(scales), buf(offsets),
                buf(s_out) if scales is None else None, buf(packed))
        with self._context(x.device):
            if self.prefix == "cuda":
                bad = torch.zeros(1, dtype=torch.int64, device=x.device)
                self._kernel("block_quantize")(*args, buf(bad), *self._stream(x.device))
                return packed, s_out, int(bad.item())
            return packed, s_out, self._kernel("block_quantize")(*args)

    def block_dequantize(self, packed, bits, levels, scales, offsets, n, block, out_dtype, out=None):
        out = torch.empty(n, dtype=out_dtype, device=packed.device) if out is None else out
        with self._context(packed.device):
            self._kernel("block_dequantize")(
                buf(packed), bits, buf(levels), buf(scales),
                buf(offsets), n, block, buf(out), DTYPE_CODES[out_dtype],
                *self._stream(packed.device))
        return out

    # Set of CPU paths the DGQ kernel may use (1 AMX, 2 AVX512-VNNI, 4 AVX-VNNI, 8 AVX2; the
    # portable loop always), and the one the last call used; tests narrow it to check each path.
    dgq_paths = 15
    last_dgq_path = ""

    def dgq_matmul(self, x, qweight, zeros, group_scales, weight_sums, group, x_scale=None, channel_scales=None):
        M, K = x.shape
        scaled = x_scale is not None
        y = torch.empty(M, qweight.shape[0], dtype=torch.float32 if scaled else torch.int32, device=x.device)
        args = (buf(x), buf(qweight), buf(zeros), buf(group_scales), buf(weight_sums),
                buf(y), M, qweight.shape[0], K, group)
        if self.prefix == "cuda":
            check_int8_range(x)
            with self._context(x.device):
                acc = y if not scaled else torch.empty(y.shape, dtype=torch.int32, device=x.device)
                self._kernel("dgq_matmul")(*args[:5], buf(acc), *args[6:], *self._stream(x.device))
            return scale_output(acc, x_scale, channel_scales) if scaled else y
        path = _C.cpu_dgq_matmul(*args, Launch.dgq_paths, buf(x_scale) if scaled else None,
                                 buf(channel_scales) if scaled else None)
        Launch.last_dgq_path = path
        return y


QUANT_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def register(backend: str, launch: Launch, devices) -> None:
    """Register the compiled kernels of one backend for every op they implement."""
    _ops.fwht.register(backend, devices=devices, dtypes=FLOAT_DTYPES)(launch.fwht)
    fused = launch.fwht_select if backend == "cpu" else fwht_then_select(launch.fwht)
    _ops.fwht_select.register(backend, devices=devices, dtypes=FLOAT_DTYPES)(fused)
    _ops.sparse_hash.register(backend, devices=devices, dtypes=[torch.int32])(launch.sparse_hash)
    _ops.sparse_apply.register(backend, devices=devices, dtypes=FLOAT_DTYPES)(launch.sparse_apply)
    _ops.random_uint32.register(backend, devices=devices, dtypes=[torch.int64])(launch.random_uint32)
    _ops.random_fill.register(backend, devices=devices, dtypes=F32_F64)(launch.random_fill)
    _ops.block_quantize.register(backend, devices=devices, dtypes=QUANT_DTYPES)(launch.block_quantize)
    _ops.block_dequantize.register(backend, devices=devices, dtypes=QUANT_DTYPES)(launch.block_dequantize)
    _ops.dgq_matmul.register(backend, devices=devices, dtypes=[torch.int8])(launch.dgq_matmul)
    if backend == "cpu":
        _ops.convert.register(backend, devices=devices, dtypes=FLOAT_DTYPES)(launch.convert)
        _ops.weighted_gram.register(backend, devices=devices, dtypes=F32_F64)(launch.weighted_gram)
        _ops.row_quadratic_forms.register(backend, devices=devices, dtypes=F32_F64)(launch.row_quadratic_forms)


register("cpu", Launch("cpu"), ["cpu"])
