"""linalg_core.distributed on Dask: equality with the single-machine results for several
chunkings and every sketch kind, least squares to LAPACK accuracy, exact leverage scores,
mergeable streaming sketches, a real two-process LocalCluster, bad input."""

import numpy as np
import pytest
import torch

import linalg_core as lc

da = pytest.importorskip("dask.array")
dist = pytest.importorskip("linalg_core.distributed")

N, D = 6000, 8


def _problem(cond=1e6, seed=0):
    from linalg_core.testing.matrices import with_spectrum

    A = with_spectrum(N, D, torch.logspace(0, -np.log10(cond), D, dtype=torch.float64), seed=seed).numpy()
    rng = np.random.default_rng(seed)
    b = A @ rng.standard_normal(D) + 1e-3 * rng.standard_normal(N)
    return A, b


@pytest.mark.parametrize("chunks", [(N, D), (1500, D), (977, 3)])
@pytest.mark.parametrize("kind", ["gaussian", "rademacher", "srht", "countsketch", "sparse_sign"])
def test_sketch_equals_single_machine(chunks, kind):
    A, _ = _problem()
    S = lc.sketch.create(kind, 40, N, seed=11)
    got = dist.sketch_apply(S, da.from_array(A, chunks=chunks))
    torch.testing.assert_close(got, S.apply(torch.from_numpy(A)), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("chunks", [(N, D), (1100, D)])
def test_lstsq(chunks):
    A, b = _problem(cond=1e8)
    Ad, bd = da.from_array(A, chunks=chunks), da.from_array(b, chunks=chunks[0])
    x_ref = np.linalg.lstsq(A, b, rcond=None)[0]
    x, passes = dist.lstsq(Ad, bd, seed=0)
    assert np.linalg.norm(x.numpy() - x_ref) <= 1e-7 * np.linalg.norm(x_ref)  # LAPACK-level at κ = 1e8
    assert passes <= 7
    S = lc.sketch.create("sparse_sign", 16 * D, N, seed=0)
    xs, _ = dist.lstsq(Ad, bd, method="sketch_and_solve", seed=0)
    expect = torch.linalg.lstsq(S.apply(torch.from_numpy(A)), S.apply(torch.from_numpy(b))[:, None]).solution[:, 0]
    torch.testing.assert_close(xs, expect, rtol=1e-6, atol=0)  # the block sums' order, amplified by κ = 1e8
    B = np.stack([b, 2 * b], 1)
    xk, _ = dist.lstsq(Ad, da.from_array(B, chunks=(chunks[0], 2)), seed=0)
    np.testing.assert_allclose(xk.numpy()[:, 1], 2 * x.numpy(), rtol=1e-8)


@pytest.mark.parametrize("chunks", [(1500, D), (977, 3)])
def test_lstsq_with_lsqr_inside(chunks):
    A, b = _problem(cond=1e8)
    Ad, bd = da.from_array(A, chunks=chunks), da.from_array(b, chunks=chunks[0])
    x_ref = np.linalg.lstsq(A, b, rcond=None)[0]
    x, passes = dist.lstsq(Ad, bd, seed=0, solver="lsqr")
    assert np.linalg.norm(x.numpy() - x_ref) <= 1e-7 * np.linalg.norm(x_ref)
    assert 6 < passes < 120  # two passes per LSQR iteration
    B = np.stack([b, 2 * b], 1)
    xk, _ = dist.lstsq(Ad, da.from_array(B, chunks=(chunks[0], 2)), seed=0, solver="lsqr")
    np.testing.assert_allclose(xk.numpy()[:, 1], 2 * x_ref, rtol=1e-6)
    with pytest.raises(ValueError, match="solver='qr'"):
        dist.lstsq(Ad, bd, solver="qr")


def test_leverage_scores_exact():
    A, _ = _problem(cond=1e6)
    lev = dist.leverage_scores(da.from_array(A, chunks=(1300, 4))).compute()
    Q = np.linalg.qr(A)[0]
    np.testing.assert_allclose(lev, (Q**2).sum(1), rtol=1e-8, atol=1e-12)  # κ = 1e6


@pytest.mark.parametrize("kind", ["covariance", "sum"])
def test_streaming_merge_equals_whole(kind):
    g = torch.Generator().manual_seed(0)
    X = torch.randn(400, 32, dtype=torch.float64, generator=g)
    parts = [dist.StreamingSketch(32, 6, seed=4, kind=kind) for _ in range(3)]
    if kind == "covariance":
        for p, blk in zip(parts, (X[:100], X[100:150], X[150:])):
            p.update(blk)
        whole = dist.StreamingSketch(32, 6, seed=4).update(X)
    else:
        terms = [torch.randn(10, 32, dtype=torch.float64, generator=g) for _ in range(3)]
        for p, t in zip(parts, terms):
            p.update(t)
        whole = dist.StreamingSketch(32, 6, seed=4, kind="sum").update(sum(terms))
    merged = parts[0].merge(parts[1]).merge(parts[2])
    torch.testing.assert_close(merged.Y, whole.Y, rtol=1e-12, atol=1e-10)
    assert merged.batches == 3 and parts[0].batches == 1


def test_streaming_nystrom_of_a_low_rank_covariance():
    g = torch.Generator().manual_seed(1)
    X = torch.randn(500, 5, dtype=torch.float64, generator=g) @ torch.randn(5, 40, dtype=torch.float64, generator=g)
    sk = dist.StreamingSketch(40, 8, seed=0)
    for blk in X.split(128):
        sk.update(blk)
    U, lam = sk.nystrom()
    C = X.T @ X
    torch.testing.assert_close(U @ torch.diag(lam) @ U.T, C, rtol=1e-8, atol=1e-6 * float(C.norm()))


def test_on_a_local_cluster_of_two_processes():
    distributed = pytest.importorskip("distributed")
    A, b = _problem()
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                                  host="127.0.0.1") as cluster, distributed.Client(cluster):
        S = lc.sketch.create("srht", 40, N, seed=5)
        got = dist.sketch_apply(S, da.from_array(A, chunks=(800, D)))
        x, _ = dist.lstsq(da.from_array(A, chunks=(800, D)), da.from_array(b, chunks=800), seed=0)
    torch.testing.assert_close(got, S.apply(torch.from_numpy(A)), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(x.numpy(), np.linalg.lstsq(A, b, rcond=None)[0], rtol=1e-9)


def test_bad_input():
    A, b = _problem()
    with pytest.raises(TypeError, match="dask.array"):
        dist.sketch_apply(lc.sketch.gaussian(10, N, seed=0), A)
    with pytest.raises(ValueError, match="sketches n=5"):
        dist.sketch_apply(lc.sketch.gaussian(10, 5, seed=0), da.from_array(A, chunks=(1000, D)))
    with pytest.raises(TypeError, match="float dtype"):
        dist.lstsq(da.from_array(A.astype(np.int64), chunks=(1000, D)), da.from_array(b, chunks=1000))
    with pytest.raises(ValueError, match="method="):
        dist.lstsq(da.from_array(A, chunks=(1000, D)), da.from_array(b, chunks=1000), method="qr")
    with pytest.raises(ValueError, match="same d, k, seed"):
        dist.StreamingSketch(8, 2, seed=0).merge(dist.StreamingSketch(8, 2, seed=1))
    with pytest.raises(ValueError, match="columns"):
        dist.StreamingSketch(8, 2).update(torch.ones(3, 9))


@pytest.mark.parametrize("chunks", [(2000, 60), (733, 20)])
def test_rsvd_near_optimal(chunks):
    from linalg_core.testing.matrices import with_spectrum

    A = with_spectrum(5000, 60, torch.logspace(0, -3, 60, dtype=torch.float64), seed=2).numpy()
    U, S, Vh = dist.rsvd(da.from_array(A, chunks=chunks), 8, seed=0, niter=4)  # fixed: σ to 1e-6
    s = np.linalg.svd(A, compute_uv=False)
    np.testing.assert_allclose(S.numpy(), s[:8], rtol=1e-6)
    adaptive = dist.rsvd(da.from_array(A, chunks=chunks), 8, seed=0)  # the default: PEFT grade
    np.testing.assert_allclose(adaptive[1].numpy(), s[:8], rtol=1e-2)
    Uc = U.compute()
    np.testing.assert_allclose(Uc.T @ Uc, np.eye(8), atol=1e-10)
    err = np.linalg.norm(A - Uc @ np.diag(S.numpy()) @ Vh.numpy())
    assert err <= 1.001 * np.sqrt((s[8:] ** 2).sum())


@pytest.mark.parametrize("chunks", [(5000, 60), (733, 20), (100, 60)])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_rsvd_equals_the_single_machine_rsvd(chunks, dtype):
    from linalg_core.testing.matrices import with_spectrum

    A = with_spectrum(5000, 60, torch.logspace(0, -3, 60, dtype=torch.float64), seed=2).to(dtype)
    auto = lc.lowrank.sketch_size(8, 5000, 60)[1] - 8  # the row blocks sketch the auto width from the start
    ref = lc.rsvd(A, 8, seed=4, precision="full", oversample=auto)
    U, S, Vh = dist.rsvd(da.from_array(A.numpy(), chunks=chunks), 8, seed=4)
    tol = 1e-12 if dtype == torch.float64 else 2e-6
    torch.testing.assert_close(torch.from_numpy(U.compute()), ref.U, rtol=0, atol=tol)
    torch.testing.assert_close(S, ref.S, rtol=tol, atol=0)
    torch.testing.assert_close(Vh, ref.Vh, rtol=0, atol=tol)
    # Without oversampling and iterations the result is Ω's: the same Ω as the single machine's,
    # another one for another seed.
    Ad = da.from_array(A.numpy(), chunks=chunks)
    raw = dist.rsvd(Ad, 8, oversample=0, niter=0, seed=4)[1]
    torch.testing.assert_close(raw, lc.rsvd(A, 8, oversample=0, niter=0, seed=4, precision="full").S, rtol=tol, atol=0)
    assert float((dist.rsvd(Ad, 8, oversample=0, niter=0, seed=5)[1] - raw).abs().max()) > 1e-3 * float(raw[0])


def test_sample_rows_is_the_single_machine_sample():
    A, _ = _problem(cond=1e3)
    idx, w = dist.sample_rows(da.from_array(A, chunks=(1234, D)), 300, seed=3)
    ref_idx, ref_w = lc.sampling.sample_rows(torch.from_numpy(A), 2, 300, scores="leverage", seed=3)
    assert torch.equal(idx, torch.as_tensor(ref_idx))
    torch.testing.assert_close(w, torch.as_tensor(ref_w, dtype=torch.float64), rtol=1e-8, atol=0)


def test_map_layers_equals_the_single_process_run(tmp_path):
    import functools
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from safetensors.torch import save_file

    from linalg_core.quant import lq_decompose
    from linalg_core.testing.matrices import llm_like

    shard1, shard2 = tmp_path / "model-1.safetensors", tmp_path / "model-2.safetensors"
    save_file({"l0.weight": llm_like(128, 256, seed=0), "norm": torch.ones(4)}, str(shard1))
    save_file({"l1.weight": llm_like(256, 128, seed=1)}, str(shard2))
    fn = functools.partial(lq_decompose, rank=8, format="nf3", iters=2, seed=0)
    threads = torch.get_num_threads()
    try:  # the same BLAS thread count in every process: its reductions then round the same way
        torch.set_num_threads(1)
        serial = dist.map_layers(fn, tmp_path)
    finally:
        torch.set_num_threads(threads)
    assert list(serial) == ["l0.weight", "l1.weight"]
    # spawn: forked children of a process with running OpenMP threads can hang
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn"), initializer=torch.set_num_threads,
                             initargs=(1,)) as ex:
        parallel = dist.map_layers(fn, tmp_path, executor=ex)
    for name in serial:
        assert torch.equal(serial[name].Q.dequantize(), parallel[name].Q.dequantize())
        assert torch.equal(serial[name].L1, parallel[name].L1)
    with pytest.raises(ValueError, match="not in the model"):
        dist.map_layers(fn, tmp_path, names=["nope"])


def _slow(block):
    import time

    time.sleep(0.15)
    return block


def test_a_killed_worker_changes_nothing():
    """A worker process killed while the sketch's tasks run: its tasks are recomputed elsewhere
    (the nanny restarts it) and S A is the single-machine result."""
    import os
    import signal
    import threading
    import time

    distributed = pytest.importorskip("distributed")
    A, _ = _problem()
    S = lc.sketch.create("sparse_sign", 40, N, seed=6)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                                  host="127.0.0.1") as cluster, distributed.Client(cluster) as client:
        before = client.run(os.getpid)
        Ad = da.from_array(A, chunks=(N // 24, D)).map_blocks(_slow, dtype=A.dtype)  # 24 tasks of 0.15 s
        victim = next(iter(before.values()))
        killer = threading.Timer(0.8, lambda: os.kill(victim, signal.SIGKILL))
        killer.start()
        t0 = time.perf_counter()
        got = dist.sketch_apply(S, Ad)
        killer.join()
        assert time.perf_counter() - t0 > 0.8  # the kill happened while the tasks were running
        deadline = time.time() + 30
        while time.time() < deadline:  # the nanny brings the worker back under a new pid
            after = client.run(os.getpid)
            if len(after) == 2 and victim not in after.values():
                break
            time.sleep(0.2)
        assert victim not in client.run(os.getpid).values()
    torch.testing.assert_close(got, S.apply(torch.from_numpy(A)), rtol=1e-12, atol=1e-12)


def test_dask_knows_the_size_of_tensor_results():
    # The scheduler's placement and the transfer counters use dask.sizeof; its fallback for an
    # unknown type is sys.getsizeof (~80 bytes for any tensor).
    from dask.sizeof import sizeof

    assert sizeof(torch.zeros(1000, dtype=torch.float64)) >= 8000
    assert sizeof(torch.zeros(10, 100).T) >= 4000  # a view pickles its whole storage


def test_blockwise_cholqr_falls_back_on_an_ill_conditioned_basis():
    from linalg_core.distributed.linalg import RowBlockCholQR, _gram, _Tall, _times
    from linalg_core.lowrank.orthonormalize import cholqr_round

    g = torch.Generator().manual_seed(0)
    Y = torch.randn(3000, 10, generator=g, dtype=torch.float64)
    Y[:, 9] = Y[:, 8] * (1 + 1e-16)  # numerically rank deficient
    Yd = _Tall(da.from_array(Y.numpy(), chunks=(700, 10)), torch.float64)
    Q1 = cholqr_round(Yd, gram=lambda T: _gram(T.a, torch.float64),  # plain CholeskyQR: no orthonormal basis here
                      times=lambda T, M: _Tall(_times(T.a, M, torch.float64), torch.float64))
    assert Q1 is None or not np.allclose(Q1.a.compute().T @ Q1.a.compute(), np.eye(10), atol=1e-6)
    Q = RowBlockCholQR(2)(Yd).a.compute()
    np.testing.assert_allclose(Q.T @ Q, np.eye(10), atol=1e-10)
    np.testing.assert_allclose(Q @ (Q.T @ Y.numpy()), Y.numpy(), atol=1e-10)
    # in memory (the n-side of the iterations) it is the single machine's CholeskyQR
    assert torch.equal(RowBlockCholQR()(Y[:50]), lc.lowrank.CholQR()(Y[:50]))
    with pytest.raises(ValueError, match="rounds=3"):
        RowBlockCholQR(3)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_rsvd_is_the_single_machine_driver_on_row_blocks(dtype):
    # The docstring's claim, exactly: with one row block the products are the single machine's,
    # so the factors are bit for bit lc.rsvd's; with several only the order of the block sums
    # differs. The operator and the blocked orthonormalizer plug into the shared driver.
    from linalg_core.distributed.linalg import RowBlockCholQR, RowBlocks
    from linalg_core.testing.matrices import with_spectrum

    A = with_spectrum(500, 60, torch.logspace(0, -3, 60, dtype=torch.float64), seed=2).to(dtype)
    ref = lc.rsvd(A, 8, seed=4, precision="full", oversample=lc.lowrank.sketch_size(8, 500, 60)[1] - 8)
    U, S, Vh = dist.rsvd(da.from_array(A.numpy(), chunks=(500, 60)), 8, seed=4)
    assert torch.equal(torch.from_numpy(U.compute()), ref.U) and torch.equal(S, ref.S) and torch.equal(Vh, ref.Vh)
    ref2 = lc.rsvd(A, 8, seed=4, precision="full", niter=1, oversample=3)
    Ad = da.from_array(A.numpy(), chunks=(77, 60))
    U, S, Vh = dist.rsvd(Ad, 8, seed=4, niter=1, oversample=3)
    tol = 1e-12 if dtype == torch.float64 else 2e-6
    torch.testing.assert_close(torch.from_numpy(U.compute()), ref2.U, rtol=0, atol=tol)
    torch.testing.assert_close(S, ref2.S, rtol=tol, atol=0)
    # the same driver called directly on the operator, with another finder
    op = RowBlocks(Ad)
    assert op.shape == (500, 60) and op.dtype == dtype
    torch.testing.assert_close(op.fro_norm_sq(), (A.double() ** 2).sum().to(dtype), rtol=1e-6, atol=0)
    got = lc.rsvd(op, 8, finder=lc.lowrank.SubspaceIteration(niter=2, orth=RowBlockCholQR()), seed=1, precision="full")
    want = lc.rsvd(A, 8, finder=lc.lowrank.SubspaceIteration(niter=2), seed=1, precision="full")
    torch.testing.assert_close(torch.from_numpy(got.U.a.compute()), want.U, rtol=0, atol=tol)
    with pytest.raises(ValueError, match="needs a dense A"):
        lc.rsvd(op, 8, precision="bf16", seed=0)
