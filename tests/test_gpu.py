"""CUDA backend parity with the reference (runs only where a GPU is present: ``pytest -m gpu``).
Triton on GPU tensors is covered by tests/test_triton_backend.py, which uses CUDA tensors when
a GPU is there."""

import numpy as np
import pytest
import torch

import linalg_core as lc
from linalg_core.testing import tolerance
from tests.oracles import philox as oracle

pytestmark = pytest.mark.gpu
CUDA = "cuda"


def test_random_streams_bit_identical_on_gpu():
    for seed, stream, offset in [(0, 0, 0), (2**64 - 1, 9, 2**40 + 3)]:
        w = lc.random.uint32(1001, seed=seed, stream=stream, offset=offset, device=CUDA, backend="cuda")
        want = oracle.words(np.arange(offset, offset + 1001, dtype=np.uint64), stream, seed)
        np.testing.assert_array_equal(w.cpu().numpy(), want.astype(np.int64))
    idx = np.arange(7, 7 + 5 * 333, dtype=np.uint64)
    for dtype, tol in ((torch.float64, 1e-12), (torch.float32, 1e-5)):
        z = lc.random.normal((5, 333), seed=3, offset=7, dtype=dtype, device=CUDA, backend="cuda")
        np.testing.assert_allclose(z.cpu().numpy().ravel(), oracle.normals(idx, 0, 3), rtol=tol, atol=tol)
        s = lc.random.rademacher((5, 333), seed=3, offset=7, dtype=dtype, device=CUDA, backend="cuda")
        np.testing.assert_array_equal(s.cpu().numpy().ravel(), oracle.signs(idx, 0, 3))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("shape,dim", [((3, 8), -1), ((1000, 256), -1), ((2**14, 7), 0), ((2, 2**17, 3), 1),
                                       ((1, 2**20), -1)])
def test_fwht_cuda_matches_reference(dtype, shape, dim):
    x = torch.randn(shape, dtype=torch.float64).to(dtype)
    want = lc.fwht(x, dim=dim, backend="reference").double()
    got = lc.fwht(x.to(CUDA), dim=dim, backend="cuda")
    assert got.dtype == dtype
    torch.testing.assert_close(got.cpu().double(), want, **tolerance(dtype, growth=20))


@pytest.mark.parametrize("kind", ["gaussian", "rademacher", "srht", "countsketch", "sparse_sign"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16])
def test_sketches_on_gpu_equal_cpu(kind, dtype):
    n, d, m = 5000, 24, 300
    S = lc.sketch.create(kind, m, n, seed=5)
    A = torch.randn(n, d, dtype=torch.float64).to(dtype)
    want = S.apply(A, backend="reference").double()
    got = S.apply(A.to(CUDA), backend="cuda").cpu().double()
    torch.testing.assert_close(got, want, **tolerance(dtype, growth=30))
    want_r = S.apply_right(A.T.contiguous(), backend="reference").double()
    got_r = S.apply_right(A.T.contiguous().to(CUDA), backend="cuda").cpu().double()
    torch.testing.assert_close(got_r, want_r, **tolerance(dtype, growth=30))


def test_automatic_dispatch_picks_cuda_for_gpu_tensors():
    from linalg_core import _ops

    key = _ops.Key(torch.device(CUDA), torch.float32)
    assert _ops.fwht.select(key).backend == "cuda"


# --- CUDA graphs: the custom ops run on torch's current stream and capture --------------------------

def _replays(fn, *inputs):
    """fn captured in a CUDA graph, replayed on new values of the same inputs: equals eager."""
    static = [x.clone() for x in inputs]
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        for _ in range(2):
            fn(*static)  # warm-up outside the capture (allocations, Triton/kernel caches)
    torch.cuda.current_stream().wait_stream(s)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = fn(*static)
    for trial in range(2):
        fresh = [torch.randn_like(x) if x.is_floating_point() else x for x in inputs]
        for dst, src in zip(static, fresh):
            dst.copy_(src)
        graph.replay()
        torch.cuda.synchronize()
        torch.testing.assert_close(out, fn(*fresh))


def test_fwht_and_sketches_capture_in_cuda_graphs():
    _replays(lambda x: lc.fwht(x, dim=-1), torch.randn(64, 1024, device=CUDA))
    for kind in ["gaussian", "srht", "countsketch", "sparse_sign"]:
        S = lc.sketch.create(kind, 128, 4096, seed=1)
        S.apply(torch.randn(4096, 8, device=CUDA))  # hash / signs / rows cached before the capture
        _replays(S.apply, torch.randn(4096, 8, device=CUDA))


def test_dgq_linear_and_dequantize_capture_in_cuda_graphs():
    from linalg_core.qmatmul import DGQLinear

    layer = DGQLinear.from_linear(torch.nn.Linear(512, 256)).to(CUDA)
    with torch.no_grad():
        _replays(layer, torch.randn(4, 512, device=CUDA))
    Q = lc.quant.quantize(torch.randn(256, 512, device=CUDA), "nf4")
    _replays(lambda x: Q.matmul(x), torch.randn(512, 3, device=CUDA))


def test_custom_ops_run_on_the_current_stream():
    s = torch.cuda.Stream()
    x = torch.randn(1 << 20, device=CUDA)
    with torch.cuda.stream(s):
        y = lc.fwht(x)
    s.synchronize()
    torch.testing.assert_close(y.cpu(), lc.fwht(x.cpu()), rtol=1e-4, atol=1e-4)


def test_dgq_model_compiles_on_gpu():
    from linalg_core.qmatmul import DGQLinear

    model = torch.nn.Sequential(DGQLinear.from_linear(torch.nn.Linear(512, 256)), torch.nn.ReLU(),
                                DGQLinear.from_linear(torch.nn.Linear(256, 128))).to(CUDA)
    x = torch.randn(16, 512, device=CUDA)
    with torch.no_grad():
        torch.testing.assert_close(torch.compile(model, fullgraph=True)(x), model(x))
