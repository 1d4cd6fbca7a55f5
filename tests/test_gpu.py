"""GPU behaviour that no single family owns (runs only where a GPU is present: ``pytest -m gpu``):
automatic dispatch to the CUDA backend, CUDA-graph capture, torch's current stream, compiled
models. Each family's CUDA and Triton parity with the reference is in tests/test_<family>.py."""

import pytest
import torch

import linalg_core as lc

pytestmark = pytest.mark.gpu
CUDA = "cuda"


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
