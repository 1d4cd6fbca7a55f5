"""Distributed family, same run on a local ``dask.distributed`` cluster (worker processes,
one thread each, loopback): sketch-and-precondition ``lstsq`` against
``dask.array.linalg.lstsq`` (TSQR) on a tall matrix, and ``rsvd`` against
``dask.array.linalg.svd_compressed`` at equal accuracy, with 1 and 2 workers.

Bytes moved per pass (the scale-out model): every task returns a small result — S A_b (m × d),
a d × d Gram, a d × k or k × d product — so the traffic per pass is (#blocks) × (that size) to
the scheduler, independent of n; dask's TSQR ships each block's R (d × d) up its tree and Q back.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from linalg_core.testing.bench import Report
from linalg_core.testing.matrices import with_spectrum


def _time(fn, repeats=3):
    fn()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def _sent(client) -> int:
    """Bytes all workers have sent to other workers so far."""
    return sum(client.run(lambda dask_worker: dask_worker.transfer_outgoing_bytes_total).values())


def run(report: Report, quick: bool = False):
    try:
        import dask.array as da
        import distributed
    except ImportError:
        report.note("dask / distributed not installed: pip install 'linalg_core[distributed]'")
        return
    from linalg_core import distributed as dist

    n, d = (50_000, 32) if quick else (400_000, 64)
    A = with_spectrum(n, d, torch.logspace(0, -6, d, dtype=torch.float64), seed=0).numpy()
    rng = np.random.default_rng(0)
    b = A @ rng.standard_normal(d) + 1e-3 * rng.standard_normal(n)
    x_ref = np.linalg.lstsq(A, b, rcond=None)[0]
    M = with_spectrum(n // 4, 4 * d, torch.linspace(1, 0.01, 4 * d, dtype=torch.float64) ** 2, seed=1).numpy()
    sv = np.linalg.svd(M, compute_uv=False)
    r = 16
    opt = np.sqrt((sv[r:] ** 2).sum())
    for workers in (1, 2):
        with distributed.LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None,
                                      host="127.0.0.1") as cluster, distributed.Client(cluster) as client:
            chunk = n // 16
            Ad = client.persist(da.from_array(A, chunks=(chunk, d)))
            bd = client.persist(da.from_array(b, chunks=chunk))
            t_ours = _time(lambda Ad=Ad, bd=bd: dist.lstsq(Ad, bd, seed=0))
            sent0 = _sent(client)
            x, passes = dist.lstsq(Ad, bd, seed=0)
            sent_ours = _sent(client) - sent0
            t_dask = _time(lambda Ad=Ad, bd=bd: da.linalg.lstsq(Ad, bd)[0].compute())
            sent0 = _sent(client)
            xd = da.linalg.lstsq(Ad, bd)[0].compute()
            sent_dask = _sent(client) - sent0
            # the scale-out model: each pass returns one small result per block (S A_b: m x (d+1);
            # the Gram and the gradients: d x d and d x 1), so at most blocks x that crosses workers
            blocks, m = 16, 4 * d
            model = blocks * 8 * (m * (d + 1) + d * d + 2 * d)
            rel = lambda y: float(np.linalg.norm(y - x_ref) / np.linalg.norm(x_ref))  # noqa: E731
            report.add(case=f"lstsq {n}x{d} (κ=1e6), {workers} worker(s)", linalg_core_s=t_ours, passes=passes,
                       dask_lstsq_s=t_dask, speedup=t_dask / t_ours, err=rel(x.numpy()), dask_err=rel(xd),
                       MB_between_workers=sent_ours / 1e6, model_MB_bound=model / 1e6,
                       dask_MB_between_workers=sent_dask / 1e6, data_MB=A.nbytes / 1e6)
            Md = client.persist(da.from_array(M, chunks=(M.shape[0] // 16, M.shape[1])))

            def ours(Md=Md):
                U, S, Vh = dist.rsvd(Md, r, oversample=10, niter=2, seed=0)
                return U.compute(), S.numpy(), Vh.numpy()

            def theirs(Md=Md):
                u, s, v = da.linalg.svd_compressed(Md, r, n_power_iter=2, seed=0)
                return u.compute(), s.compute(), v.compute()

            t1, t2 = _time(ours), _time(theirs)
            U, S, Vh = ours()
            u, s, v = theirs()
            report.add(case=f"rsvd {M.shape[0]}x{M.shape[1]} r={r}, {workers} worker(s)", linalg_core_s=t1,
                       dask_svd_compressed_s=t2, speedup=t2 / t1,
                       err=float(np.linalg.norm(M - U @ np.diag(S) @ Vh) / opt),
                       dask_err=float(np.linalg.norm(M - u @ np.diag(s) @ v) / opt))
    report.note("MB_between_workers: bytes the workers sent each other during one solve (the results the client "
                "gathers are not counted); model_MB_bound: blocks x the per-pass results (S A_b, the d x d Gram, "
                "two d-vectors), independent of n; data_MB: the matrix itself, which never moves.")
    report.note("err: lstsq forward error ‖x − x_LAPACK‖/‖x_LAPACK‖; rsvd ‖M − USVᴴ‖_F over the optimal rank-r "
                "error (1 is optimal). Both sides at their defaults (2 power iterations for both rsvds).")
