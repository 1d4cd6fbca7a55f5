"""``python -m linalg_core info``: versions, CPU features, the thread settings of torch, OpenMP and
BLAS, and which backends are available here and why the others are not."""

from __future__ import annotations

import importlib.metadata
import os
import platform

import torch

import linalg_core
from linalg_core import _ops, _threads
from linalg_core._ext import C_IMPORT_ERROR, _C


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def report() -> str:
    lines = [
        f"linalg_core {linalg_core.__version__}",
        f"  python {platform.python_version()} ({platform.machine()}), torch {torch.__version__}, "
        f"numpy {_version('numpy')}, scipy {_version('scipy')}, triton {_version('triton')}",
    ]
    if _C is None:
        lines.append(f"  _C: not available: {C_IMPORT_ERROR}")
    else:
        b = _C.build_info()
        cuda = f"yes (architectures {b['cuda_architectures']})" if b["cuda"] else "no"
        lines += [
            f"  _C: {_C.__file__}",
            f"      compiler {b['compiler']}, OpenMP {b['openmp']}, CUDA kernels built: {cuda}",
            f"  CPU kernel set: {_C.cpu_isa()} (threads {_C.max_threads()}; "
            f"LINALG_CORE_CPU_ISA={os.environ.get('LINALG_CORE_CPU_ISA', 'auto')})",
            f"  CPU features: {_C.cpu_features()}",
        ]
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none visible to torch"
    lines.append(f"  GPU: {gpu}")
    lines += _thread_lines(_threads.settings())
    forced = os.environ.get("LINALG_CORE_BACKEND")
    lines.append("backends (priority order)" + (f", forced by LINALG_CORE_BACKEND={forced}" if forced else "") + ":")
    for name in _ops.BACKEND_ORDER:
        reason = _ops.availability(name)
        lines.append(f"  {name:<10} {'available' if reason is None else 'unavailable: ' + reason}")
    lines.append("ops (torch.ops.linalg_core.<op>; backends implementing each):")
    _ops.load_backends()  # every family (dispatch imports one family at its first call)
    for op in _ops.OPS.values():
        impls = [b for b in _ops.BACKEND_ORDER if b in op.impls]
        lines.append(f"  {op.name:<22} {', '.join(impls)}")
    return "\n".join(lines)


def _thread_lines(st: dict) -> list[str]:
    """The thread settings (``_threads.settings()``), one pool a line; docs/threads.md says what
    to set on a shared machine."""
    t, env = st["torch"], st["env"]
    lines = [f"threads ({st['cores']} cores available; settings for shared machines: docs/threads.md):",
             f"  torch: intra-op {t['intra_op']}, inter-op {t['inter_op']}, parallel backend {t['backend']}"]
    omp = st["openmp"]
    shown = ", ".join(f"{v}={env[v] if env[v] is not None else 'unset'}"
                      for v in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT"))
    if omp is None:
        lines.append(f"  OpenMP: {shown} (_C not available)")
    else:
        lines.append(f"  OpenMP (_C): max threads {omp['max_threads']}, dynamic {omp['dynamic']}, {shown}; "
                     f"runtime {omp['library']}")
    if st["blas"] is None:
        lines.append("  BLAS: threadpoolctl not installed; " + ", ".join(
            f"{v}={env[v] if env[v] is not None else 'unset'}" for v in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")))
    else:
        for p in st["blas"]:
            lines.append(f"  {p['api']} pool: {p['library']} ({p['layer']}), {p['threads']} threads")
    lines.append(f"  one thread below {_threads.ONE_THREAD_WORK:.2e} multiply-adds per call")
    return lines
