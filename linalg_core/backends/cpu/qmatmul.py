"""CPU DGQ A8W4 integer product (csrc/cpu/qmatmul.cpp): AMX, AVX512-VNNI, AVX-VNNI, AVX2 or the
portable loop, chosen by CPUID within the set ``LINALG_CORE_DGQ_PATHS`` allows."""

from __future__ import annotations

import torch

from linalg_core import _ops
from linalg_core._ext import _C
from linalg_core.backends._c import CODES, buf

CPU = ("cpu",)
# Bit set of the CPU paths the kernel may use: 1 AMX, 2 AVX512-VNNI, 4 AVX-VNNI, 8 AVX2 (the
# portable loop always). Tests narrow it to check each path.
ENV_PATHS = "LINALG_CORE_DGQ_PATHS"
_read_paths = _ops.env_reader(ENV_PATHS)


def allowed_paths() -> int:
    v = _read_paths()
    return 15 if v is None else int(v, 0)


def path(M: int) -> str:
    """The kernel path a call with M rows takes here (``"amx"``, ``"avx512vnni"``, ``"avxvnni"``,
    ``"avx2"`` or ``"generic"``), within :func:`allowed_paths`."""
    return _C.cpu_dgq_path(M, allowed_paths())


@_ops.dgq_matmul.register("cpu", devices=CPU, dtypes=[torch.int8])
def dgq_matmul(x, qweight, zeros, group_scales, weight_sums, group, x_scale, channel_scales):
    M, K = x.shape
    scaled = x_scale is not None
    y = torch.empty(M, qweight.shape[0], dtype=torch.float32 if scaled else torch.int32)
    _C.cpu_dgq_matmul(buf(x), buf(qweight), buf(zeros), buf(group_scales), buf(weight_sums), buf(y), M,
                      qweight.shape[0], K, group, allowed_paths(), buf(x_scale), buf(channel_scales))
    return y


@_ops.dgq_linear.register("cpu", devices=CPU, dtypes=[torch.int8], direct=_C.cpu_dgq_linear_direct,
                         prepare=_C.cpu_dgq_linear_plan)
def dgq_linear(x, qweight, zeros, group_scales, weight_sums, channel_scales, bias, group):
    if x.dtype not in CODES or x.dtype == torch.float64:
        x = x.to(torch.float32)
    M, K = x.shape
    y = torch.empty(M, qweight.shape[0], dtype=torch.float32)
    _C.cpu_dgq_linear(buf(x), CODES[x.dtype], buf(qweight), buf(zeros), buf(group_scales), buf(weight_sums),
                      buf(channel_scales), buf(bias), buf(y), M, qweight.shape[0], K, group, allowed_paths())
    return y
