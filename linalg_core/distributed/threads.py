"""One compute pool per worker, sized to the worker's share of its machine's cores.

A worker process that runs linalg_core tasks holds torch's OpenMP pool (shared with
``linalg_core._C``) and the OpenBLAS pools of numpy and scipy. Left at their defaults each pool
takes every core, so W workers of T task threads on C cores run up to W·T·C threads that
spin against each other at every barrier (``docs/threads.md``). Dask's nanny starts its worker
processes with ``OMP_NUM_THREADS=1`` (and MKL / OpenBLAS): no oversubscription, but a single
worker then uses one core of many. Here each worker's pools get C // (task threads on its host),
at least one: all cores busy, none shared by two pools.

* :func:`size_worker_pools` — a ``dask.distributed`` client: a worker plugin sizes every worker,
  those that join later included.
* :func:`pool_initializer` — the ``initializer=`` of a ``concurrent.futures.ProcessPoolExecutor``
  (``map_layers``, ``init_peft_model(executor=)``, ``compress_model(executor=)``), with
  ``initargs=(linalg_core._threads.pool_share(workers),)``.

Results of seeded functions equal the single-process run when every process uses the same thread
count (GEMM reductions round differently with different counts).
"""

from __future__ import annotations

from linalg_core import _threads, _validate


def pool_initializer(threads: int) -> None:
    """Size torch's, ``_C``'s and the BLAS pools of this (worker) process at ``threads``: the
    ``initializer`` of a process pool.

    Args:
        threads: the pool size, ≥ 1 (``linalg_core._threads.pool_share`` divides the cores).

    Example:
        >>> import multiprocessing
        >>> from concurrent.futures import ProcessPoolExecutor
        >>> from linalg_core._threads import pool_share
        >>> from linalg_core.distributed import pool_initializer
        >>> ex = ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn"),
        ...                          initializer=pool_initializer, initargs=(pool_share(2),))
        >>> ex.shutdown()
    """
    _threads.set_pools(threads)


def _host(address: str) -> str:
    from distributed.comm import get_address_host

    return get_address_host(address)


def size_worker_pools(client, threads: int | None = None) -> dict[str, int]:
    """Size the pools of every worker of a ``dask.distributed`` client, now and for workers that
    join later: ``threads`` each, or by default the cores of the worker's host divided among the
    task threads of all workers on that host (at least one), counted now: call it again after
    the cluster scales.

    Args:
        client: a ``distributed.Client``.
        threads: threads per worker, or None for the host's share.

    Returns:
        {worker address: threads} of the workers present now.

    Example:
        A cluster of its own (worker processes), so not run as a doctest; ``tests/test_threads.py``
        runs it:

        >>> from distributed import Client, LocalCluster                      # doctest: +SKIP
        >>> from linalg_core.distributed import size_worker_pools               # doctest: +SKIP
        >>> with LocalCluster(n_workers=1, threads_per_worker=1) as cluster, Client(cluster) as client:
        ...     size_worker_pools(client)  # {address: the host's cores}         # doctest: +SKIP
    """
    try:
        from distributed.diagnostics.plugin import WorkerPlugin
    except ImportError as e:  # pragma: no cover - exercised only without distributed
        raise ImportError("size_worker_pools needs dask.distributed: pip install distributed") from e
    if threads is not None:
        threads = _validate.integer(threads, "threads", low=1)
    workers = client.scheduler_info(n_workers=-1)["workers"]
    cores = client.run(_threads.cores)
    per_host: dict[str, int] = {}
    for address, info in workers.items():
        per_host[_host(address)] = per_host.get(_host(address), 0) + info["nthreads"]
    share = {host: _threads.pool_share(1, total_threads, total=min(cores[a] for a in workers if _host(a) == host))
             for host, total_threads in per_host.items()}

    class _Pools(WorkerPlugin):
        name = "linalg_core-thread-pools"

        def setup(self, worker):
            n = threads or share.get(_host(worker.address)) or _threads.pool_share(1, worker.state.nthreads)
            _threads.set_pools(n)

    client.register_plugin(_Pools(), name=_Pools.name)
    return client.run(lambda: __import__("torch").get_num_threads())


__all__ = ["pool_initializer", "size_worker_pools"]
