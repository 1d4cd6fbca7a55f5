"""Thread policy: how many threads one call may use, worker pool sizing, and the settings that
``python -m linalg_core info`` reports.

The pools one process can hold: torch's intra-op pool (OpenMP: the ``libgomp`` torch ships;
``linalg_core._C`` links ``libgomp.so.1`` too, and the loader resolves it to torch's copy by its
soname, so the compiled kernels share torch's pool and its per-thread thread count), torch's
inter-op pool, and the OpenBLAS pools (pthreads) of numpy and of scipy. An OpenMP parallel region
ends in a barrier that every thread of the team must reach: when other processes hold the cores,
a descheduled team member holds the whole region for a scheduler time slice (milliseconds), and
the waiting members spin (libgomp's default ``OMP_WAIT_POLICY``). A call made of many short
regions then runs 10-100x slower than on one thread (``linalg_core/bench/threads.py``,
``docs/threads.md``).

The policy, one rule: a call whose work is below :data:`ONE_THREAD_WORK` multiply-adds runs on
one thread (:func:`sized`), because on a quiet machine a second thread saves at most ~5
milliseconds there, while on a shared one it can cost a time slice per region. The choice
depends on the problem size only, never on the load, so a call's result does not depend on what
else runs on the machine. The compiled kernels apply the same rule inside ``_C`` (``if``
clauses on their parallel regions), and their results are bit-identical for every thread count.
"""

from __future__ import annotations

import contextlib
import functools
import os

import torch

from linalg_core._ext import _C

# Multiply-adds below which a call runs on one thread: about 10 ms of float32 GEMM on one core
# (2^28 ≈ 2.7e8), where a second thread saves at most ~5 ms on a quiet machine, while on a shared
# one every parallel region can wait a scheduler time slice (~3 ms) for a descheduled team member
# (EVA's per-layer updates: 15x slower on 2 threads than on 1 with the cores busy;
# benchmarks/RESULTS.md, threads).
ONE_THREAD_WORK = 1 << 28


def cores() -> int:
    """CPUs this process may run on (its affinity mask, else the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - platforms without affinity masks
        return os.cpu_count() or 1


def _set(n: int) -> None:
    torch.set_num_threads(n)
    if _C is not None:  # shares torch's libgomp (then a no-op), unless loaded before torch
        _C.set_num_threads(n)


class limit:
    """torch's intra-op threads and ``_C``'s OpenMP threads capped at ``threads`` inside the
    block, restored after it (the calling thread's setting; nothing changes when it is already at
    most that). A context manager.

    Example:
        >>> import torch
        >>> from linalg_core import _threads
        >>> before = torch.get_num_threads()
        >>> with _threads.limit(1):
        ...     torch.get_num_threads()
        1
        >>> torch.get_num_threads() == before
        True
    """

    __slots__ = ("threads", "before", "c_before")

    def __init__(self, threads: int):
        self.threads = threads

    def __enter__(self):
        self.before = torch.get_num_threads()
        self.c_before = _C.max_threads() if _C is not None else self.threads
        if self.before > self.threads or self.c_before > self.threads:
            _set(self.threads)
        return self

    def __exit__(self, *exc):
        if self.before > self.threads or self.c_before > self.threads:
            torch.set_num_threads(self.before)
            if _C is not None:
                _C.set_num_threads(self.c_before)
        return False


_UNLIMITED = contextlib.nullcontext()


def sized(work: float):
    """The thread limit for a call of ``work`` multiply-adds: one thread below
    :data:`ONE_THREAD_WORK`, the caller's setting otherwise (a context manager).

    Example:
        >>> import torch
        >>> from linalg_core import _threads
        >>> with _threads.sized(384 * 384 * 26 * 10):  # rsvd of one MiniLM 384 x 384 weight
        ...     torch.get_num_threads()
        1
    """
    return limit(1) if work < ONE_THREAD_WORK else _UNLIMITED


@functools.lru_cache(maxsize=1)
def _blas_controller():
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:
        return None
    return ThreadpoolController()


def blas_limit(threads: int):
    """numpy's and scipy's BLAS pools capped at ``threads`` inside the block (threadpoolctl; a
    no-op without it). Taken around a SciPy LAPACK call inside a torch computation, so that one
    call does not run two pools that spin against each other."""
    ctl = _blas_controller()
    if ctl is None:
        return contextlib.nullcontext()
    return ctl.limit(limits=threads, user_api="blas")


def blas_sized(work: float):
    """:func:`blas_limit` to one thread for a SciPy / NumPy BLAS call of ``work`` multiply-adds
    below :data:`ONE_THREAD_WORK` (a context manager; the library's setting otherwise)."""
    return blas_limit(1) if work < ONE_THREAD_WORK else _UNLIMITED


def pool_share(workers: int, threads_per_worker: int = 1, total: int | None = None) -> int:
    """Threads of each worker's compute pools when ``workers`` processes of
    ``threads_per_worker`` task threads share ``total`` cores (default: this process's): the cores
    divided among the task threads, at least one.

    Example:
        >>> from linalg_core._threads import pool_share
        >>> pool_share(2, total=8), pool_share(4, threads_per_worker=2, total=8), pool_share(3, total=2)
        (4, 1, 1)
    """
    return max(1, (cores() if total is None else total) // max(1, workers * threads_per_worker))


def set_pools(threads: int) -> None:
    """Size every pool of this process at ``threads``: torch's intra-op, ``_C``'s OpenMP and
    the BLAS libraries loaded now (threadpoolctl when installed; ``OPENBLAS_NUM_THREADS`` /
    ``MKL_NUM_THREADS`` / ``OMP_NUM_THREADS`` are set for those loaded later). Meant for a worker
    process (a ``ProcessPoolExecutor`` initializer, a Dask worker plugin): it changes the whole
    process."""
    threads = int(threads)
    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(threads)
    _set(threads)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return
    threadpool_limits(limits=threads)


def _parallel_backend() -> str:
    for line in torch.__config__.parallel_info().splitlines():
        if line.startswith("ATen parallel backend:"):
            return line.split(":", 1)[1].strip()
    return "unknown"


def settings() -> dict:
    """The thread settings in force in this process: torch's pools and parallel backend, the
    OpenMP environment and ``_C``'s runtime, and every loaded BLAS pool (threadpoolctl) or, without
    threadpoolctl, the BLAS environment variables."""
    env = ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "OMP_DYNAMIC", "OMP_PROC_BIND",
           "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
    out = {
        "cores": cores(),
        "torch": {"intra_op": torch.get_num_threads(), "inter_op": torch.get_num_interop_threads(),
                  "backend": _parallel_backend()},
        "env": {v: os.environ.get(v) for v in env},
        "openmp": _C.openmp_info() if _C is not None and hasattr(_C, "openmp_info") else None,
        "blas": None,
    }
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return out
    out["blas"] = [{"library": os.path.basename(p["filepath"]), "api": p["user_api"],
                    "threads": p["num_threads"], "layer": p.get("threading_layer", p["internal_api"])}
                   for p in threadpool_info()]
    return out
