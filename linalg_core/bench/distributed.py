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

from linalg_core.bench.harness import Report
from linalg_core.testing.matrices import with_spectrum

TABLES = {  # kinds of comparison (Report.add sets each row's "table")
    "lstsq against dask": {"case": "re:^lstsq"},
    "rsvd against dask svd_compressed": {"case": "re:^rsvd"},
    "scale-out: bytes between workers": {"case": "re:^scale-out"},
}


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
        report.note("dask / distributed not installed (pip install 'linalg_core[distributed]'): the family's rows "
                    "are skipped")
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
            t0 = time.perf_counter()  # one solve (~80 passes; the cluster is warm from the direct solves)
            x_lsqr, passes_lsqr = dist.lstsq(Ad, bd, seed=0, solver="lsqr")
            t_lsqr = time.perf_counter() - t0
            t_dask = _time(lambda Ad=Ad, bd=bd: da.linalg.lstsq(Ad, bd)[0].compute())
            sent0 = _sent(client)
            xd = da.linalg.lstsq(Ad, bd)[0].compute()
            sent_dask = _sent(client) - sent0
            model = 16 * _lstsq_result_bytes(d, passes)  # the scale-out model's bound (16 blocks)
            rel = lambda y: float(np.linalg.norm(y - x_ref) / np.linalg.norm(x_ref))  # noqa: E731
            report.add(case=f"lstsq {n}x{d} (κ=1e6), {workers} worker(s)", linalg_core_s=t_ours, passes=passes,
                       dask_lstsq_s=t_dask, speedup=t_dask / t_ours, err=rel(x.numpy()), dask_err=rel(xd),
                       MB_between_workers=sent_ours / 1e6, model_MB_bound=model / 1e6,
                       dask_MB_between_workers=sent_dask / 1e6, data_MB=A.nbytes / 1e6)
            report.add(case=f"lstsq {n}x{d} (κ=1e6) solver=lsqr, {workers} worker(s)", linalg_core_s=t_lsqr,
                       passes=passes_lsqr, dask_lstsq_s=t_dask, speedup=t_dask / t_lsqr, err=rel(x_lsqr.numpy()),
                       dask_err=rel(xd))
            Md = client.persist(da.from_array(M, chunks=(M.shape[0] // 16, M.shape[1])))

            def ours(Md=Md):
                U, S, Vh = dist.rsvd(Md, r, oversample=10, niter=2, seed=0)
                return U.compute(), S.numpy(), Vh.numpy()

            def theirs(Md=Md):
                u, s, v = da.linalg.svd_compressed(Md, r, n_power_iter=2, seed=0)
                return u.compute(), s.compute(), v.compute()

            t1, t2 = _time(ours), _time(theirs)
            sent0 = _sent(client)
            dist.rsvd(Md, r, oversample=10, niter=2, seed=0)
            sent_rsvd = _sent(client) - sent0
            sent0 = _sent(client)
            da.linalg.svd_compressed(Md, r, n_power_iter=2, seed=0)[1].compute()
            sent_svdc = _sent(client) - sent0
            U, S, Vh = ours()
            u, s, v = theirs()
            report.add(case=f"rsvd {M.shape[0]}x{M.shape[1]} r={r}, {workers} worker(s)", linalg_core_s=t1,
                       dask_svd_compressed_s=t2, speedup=t2 / t1,
                       err=float(np.linalg.norm(M - U @ np.diag(S) @ Vh) / opt),
                       dask_err=float(np.linalg.norm(M - u @ np.diag(s) @ v) / opt),
                       MB_between_workers=sent_rsvd / 1e6,
                       model_MB_bound=16 * _rsvd_result_bytes(M.shape[1], r + 10, r, 2) / 1e6,
                       dask_MB_between_workers=sent_svdc / 1e6, data_MB=M.nbytes / 1e6)
    _scale_out(report, quick)
    report.note("MB_between_workers: bytes the workers sent during one call (to each other and the final results "
                "to the client; counted by dask, which is told the real size of torch tensors — before that fix "
                "these rows read ~0); model_MB_bound: blocks x the per-block results, independent of n; data_MB: "
                "the matrix itself, which never moves. dask's svd_compressed row: S only is gathered.")
    report.note("err: lstsq forward error ‖x − x_LAPACK‖/‖x_LAPACK‖; rsvd ‖M − USVᴴ‖_F over the optimal rank-r "
                "error (1 is optimal). Both sides at their defaults (2 power iterations for both rsvds).")


def _rsvd_result_bytes(cols: int, k: int, rank: int, niter: int) -> int:
    """Bytes of rsvd's per-block results: per iteration a k × k Gram and Aᵀ_b Q_b (cols × k),
    then two Grams, Q_bᵀ A_b (k × cols) and the sign reduction's 2 × rank (float64)."""
    return 8 * (niter * (k * k + cols * k) + 2 * k * k + k * cols + 2 * rank)


def _lstsq_result_bytes(d: int, passes: int) -> int:
    """Bytes of the per-block results of one lstsq: S [A_b | b_b] (4d × (d + 1)), the d × d
    Gram of A_b R⁻¹, and one d-vector per refinement pass (float64)."""
    return 8 * (4 * d * (d + 1) + d * d + (passes - 2) * d)


def _scale_out(report, quick):
    """The scale-out model against the cluster: each reduction combines one result per block in a
    binary tree, so the bytes crossing between workers lie between (workers − 1) and
    (blocks − 1) times the per-block results (blocks on contiguous workers vs interleaved), plus
    one result set gathered by the client: [workers, blocks] × R, whatever n is; A (and b,
    persisted with it) never moves."""
    import dask.array as da
    import distributed

    from linalg_core import distributed as dist

    blocks = 16
    grid = {1: [(100_000, 64)], 2: [(50_000, 64), (100_000, 64), (200_000, 64), (100_000, 32), (100_000, 128)],
            4: [(100_000, 64)]}
    if quick:
        grid = {1: [(20_000, 16)], 2: [(20_000, 16), (40_000, 16)]}
    for workers, sizes in grid.items():
        with distributed.LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None,
                                      host="127.0.0.1") as cluster, distributed.Client(cluster) as client:
            for n, d in sizes:
                A = with_spectrum(n, d, torch.logspace(0, -6, d, dtype=torch.float64), seed=0).numpy()
                b = A @ np.ones(d) + 1e-3 * np.random.default_rng(0).standard_normal(n)
                Ab = client.persist(da.from_array(np.hstack([A, b[:, None]]), chunks=(n // blocks, d + 1)))
                distributed.wait(Ab)
                client.rebalance()
                Ad, bd = Ab[:, :d], Ab[:, d]  # slices of the same blocks: A_b and b_b live together
                dist.lstsq(Ad, bd, seed=0)
                sent0 = _sent(client)
                t0 = time.perf_counter()
                _, passes = dist.lstsq(Ad, bd, seed=0)
                elapsed = time.perf_counter() - t0
                moved = _sent(client) - sent0
                per = _lstsq_result_bytes(d, passes)
                report.add(case=f"scale-out lstsq {n}x{d}, {workers} worker(s), {blocks} blocks", linalg_core_s=elapsed,
                           passes=passes, MB_between_workers=moved / 1e6,
                           model_MB_low=workers * per / 1e6, model_MB_bound=blocks * per / 1e6,
                           data_MB=A.nbytes / 1e6)
                del Ab, Ad, bd
    report.note("scale-out rows: the bytes the workers send stay within the model's [model_MB_low, model_MB_bound] = "
                "[workers, blocks] × the per-block results R = 8·(4d(d+1) + d² + (passes−2)·d) bytes as n "
                "grows 4x (constant), as d doubles (~4x) and with the worker count; the matrix never moves. A and b "
                "are persisted as one array so that b_b sits with A_b; persisted apart, b's blocks (and, if the "
                "scheduler so decides, A's) move too, up to 8n(d+1) bytes.")
