"""Thread policy (linalg_core._threads): `info` shows torch's, OpenMP's and BLAS's settings, the
compiled kernels give the same bits for 1 and 2 threads, one call does not run on two OpenMP
runtimes, the small-work limits restore the caller's setting, and Dask / process-pool workers get
pools sized to their share of the cores."""

import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor

import pytest
import torch

import linalg_core as lc
from linalg_core import _ops, _threads, info
from linalg_core._ext import _C

needs_c = pytest.mark.skipif(_C is None, reason="_C not built")


@pytest.fixture
def threads():
    """Restores the thread count a test changes."""
    before = torch.get_num_threads()
    yield
    lc.set_num_threads(before)


def test_info_shows_the_thread_settings(monkeypatch):
    monkeypatch.setenv("OMP_WAIT_POLICY", "passive")
    text = info.report()
    assert "torch: intra-op" in text and "inter-op" in text and "parallel backend" in text
    assert "OMP_WAIT_POLICY=passive" in text and "OMP_NUM_THREADS=" in text
    assert "blas pool" in text or "BLAS:" in text
    with _threads.limit(1):
        st = _threads.settings()
        assert st["torch"]["intra_op"] == 1
        if _C is not None:
            assert st["openmp"]["max_threads"] == 1 and "max threads 1" in info.report()


@needs_c
def test_c_kernels_run_on_torchs_openmp_runtime():
    # _C's OpenMP pool is torch's, so torch.set_num_threads sizes both and the two never spin
    # against each other (other packages may bring their own: scikit-learn vendors a libgomp).
    threadpoolctl = pytest.importorskip("threadpoolctl")
    omp = [p["filepath"] for p in threadpoolctl.threadpool_info() if p["user_api"] == "openmp"]
    torch_omp = [p for p in omp if os.sep + "torch" + os.sep in p]
    assert torch_omp and _C.openmp_info()["library"] in torch_omp
    with _threads.limit(1):
        assert _C.max_threads() == 1


def test_limits_restore_the_callers_setting(threads):
    lc.set_num_threads(2)
    with _threads.sized(_threads.ONE_THREAD_WORK - 1):
        assert torch.get_num_threads() == 1
        with _threads.sized(1):
            assert torch.get_num_threads() == 1
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == 2
    with _threads.sized(_threads.ONE_THREAD_WORK):
        assert torch.get_num_threads() == 2
    with pytest.raises(RuntimeError), _threads.limit(1):
        raise RuntimeError
    assert torch.get_num_threads() == 2
    assert _threads.pool_share(2, total=8) == 4 and _threads.pool_share(3, 2, total=4) == 1


def test_blas_limit_for_small_scipy_calls():
    threadpoolctl = pytest.importorskip("threadpoolctl")
    import scipy.linalg  # noqa: F401 - its OpenBLAS loaded

    with _threads.blas_sized(64 ** 3):
        assert {p["num_threads"] for p in threadpoolctl.threadpool_info() if p["user_api"] == "blas"} == {1}


def _both(fn):
    """fn() with one and with two threads."""
    out = []
    for n in (1, 2):
        lc.set_num_threads(n)
        out.append(fn())
    return out


@needs_c
@pytest.mark.parametrize("n,d,m,B", [(16384, 8, 256, 1), (100_000, 4, 64, 1), (4096, 100, 64, 1), (8192, 8, 128, 3)])
def test_sparse_sketch_bit_identical_for_any_thread_count(threads, n, d, m, B):
    # (16384, 8, 256, 1): one column block, n >> m — the row split that used to follow the thread count
    A = torch.randn(B, n, d, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    S = lc.sketch.create("sparse_sign", m, n, seed=1)
    left = _both(lambda: S.apply(A))
    assert torch.equal(*left)
    torch.testing.assert_close(left[0], S.to_dense().double() @ A, rtol=1e-12, atol=1e-12)
    right = _both(lambda: S.apply_right(A.transpose(-1, -2).contiguous()))
    assert torch.equal(*right)


@needs_c
def test_random_and_fwht_bit_identical_for_any_thread_count(threads):
    for shape in ((3, 50_000), (70_000,), (100, 700)):
        assert torch.equal(*_both(lambda: lc.random.normal(shape, seed=3)))
        assert torch.equal(*_both(lambda: lc.random.rademacher(shape, seed=3)))
    assert torch.equal(*_both(lambda: lc.random.uint32(100_000, seed=3)))
    x = torch.randn(4, 4096, 16, generator=torch.Generator().manual_seed(0))
    assert torch.equal(*_both(lambda: lc.fwht(x, dim=1)))
    S = lc.sketch.create("srht", 512, 4096, seed=2)
    assert torch.equal(*_both(lambda: S.apply(x)))


@needs_c
@pytest.mark.parametrize("M,N,K", [(1, 256, 1024), (64, 256, 512)])
def test_qmatmul_bit_identical_for_any_thread_count(threads, M, N, K):
    from linalg_core.qmatmul import dgq_quantize

    W = torch.randn(N, K, generator=torch.Generator().manual_seed(0))
    w = dgq_quantize(W, search="rtn")
    x = torch.randint(-127, 128, (M, K), generator=torch.Generator().manual_seed(1), dtype=torch.int8)
    assert torch.equal(*_both(lambda: _ops.dgq_matmul(x, w.qweight, w.zeros, w.group_scales, w.weight_sums,
                                                      w.group_size, None, None, backend="cpu")))


def _pools():
    import threadpoolctl

    return torch.get_num_threads(), sorted({p["num_threads"] for p in threadpoolctl.threadpool_info()})


def test_process_pool_workers_get_one_sized_pool():
    pytest.importorskip("threadpoolctl")
    pytest.importorskip("dask")
    from linalg_core.distributed import pool_initializer

    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"), initializer=pool_initializer,
                             initargs=(1,)) as ex:
        assert ex.submit(_pools).result() == (1, [1])


def test_dask_workers_get_their_share_of_the_cores():
    distributed = pytest.importorskip("distributed")
    from linalg_core.distributed import size_worker_pools

    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None,
                                  host="127.0.0.1") as cluster, distributed.Client(cluster) as client:
        assert set(client.run(torch.get_num_threads).values()) == {1}  # the nanny's OMP_NUM_THREADS=1
        cores = set(client.run(_threads.cores).values())
        sized = size_worker_pools(client)
        assert set(sized.values()) == cores  # one worker of one task thread: every core
        assert set(client.run(lambda: _pools()[1][-1]).values()) == cores  # BLAS and OpenMP pools too
        assert set(size_worker_pools(client, threads=1).values()) == {1}
        with pytest.raises(ValueError, match="threads"):
            size_worker_pools(client, threads=0)


def test_small_eva_updates_are_the_one_thread_result(threads):
    # EVA's per-layer updates run on one thread (_threads.sized): the same bits whatever the
    # caller's thread count, and no barrier waits when the cores are busy.
    X = [torch.randn(512, 1536, generator=torch.Generator().manual_seed(i)) for i in range(2)]

    def fit():
        ipca = lc.adapters.IncrementalSVD(8, seed=0)
        for x in X:
            ipca.partial_fit(x)
        return ipca.components

    assert torch.equal(*_both(fit))
