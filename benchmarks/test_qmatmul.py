"""DGQ A8W4 headlines (``bench qmatmul``): ``qmatmul`` on INT8 activations with a 4096² weight
(quick: 1024²; N(0, 0.02²) entries, two-phase search, quick: RTN) at M = 1 and M = 128 against
fp32 torch.matmul on the dequantized weight, and ``DGQLinear`` on MiniLM-L6's real layers
(384 → 1536, 384 → 384, with a bias) for one token against fp32 ``nn.Linear``."""

import pytest
import torch

from linalg_core.qmatmul import DGQLinear, dgq_quantize, qmatmul, quantize_activations


def _rel(y, ref):
    return float((y.double() - ref.double()).norm() / ref.double().norm())


@pytest.fixture(scope="module")
def dgq_weight(quick):
    n = 1024 if quick else 4096
    W = torch.randn(n, n, generator=torch.Generator().manual_seed(0)) * 0.02
    return W, dgq_quantize(W, search="rtn" if quick else "two_phase", pad=True)


@pytest.mark.parametrize("impl", ["linalg_core qmatmul", "fp32 torch.matmul"])
@pytest.mark.parametrize("M", [1, 128])
def test_dgq_gemm(benchmark, timed, dgq_weight, M, impl):
    W, w = dgq_weight
    N, K = W.shape
    x = torch.randn(M, K, generator=torch.Generator().manual_seed(M))
    group = f"DGQ A8W4 {N}x{K} M={M}"
    if impl.startswith("linalg_core"):
        x_q, s = quantize_activations(x)
        y = timed(lambda: qmatmul(x_q, s, w), rounds=15, group=group)
    else:
        W_deq = w.dequantize()
        y = timed(lambda: x @ W_deq.T, rounds=15, group=group)
    benchmark.extra_info["rel_err"] = _rel(y, x @ W.T)


LAYERS = {"384->1536": "encoder.layer.0.intermediate.dense.weight",
          "384->384": "encoder.layer.0.attention.self.query.weight"}


@pytest.mark.parametrize("impl", ["DGQLinear", "fp32 nn.Linear"])
@pytest.mark.parametrize("layer", list(LAYERS))
def test_dgq_linear_one_token(benchmark, minilm_weights, quick, layer, impl):
    """Microseconds per call, pytest-benchmark's calibrated loops (the bench: interleaved rounds)."""
    W = minilm_weights[LAYERS[layer]]
    b = torch.randn(W.shape[0], generator=torch.Generator().manual_seed(2)) * 0.02
    lin = torch.nn.Linear(W.shape[1], W.shape[0])
    lin.weight.data, lin.bias.data = W.clone(), b.clone()
    dgq = DGQLinear.from_linear(lin, search="rtn" if quick else "two_phase")
    x = torch.randn(1, W.shape[1], generator=torch.Generator().manual_seed(1))
    benchmark.group = f"MiniLM {layer} M=1 (layer call)"
    with torch.no_grad():
        y = benchmark(dgq if impl == "DGQLinear" else lin, x)
        benchmark.extra_info["rel_err"] = _rel(dgq(x), lin(x))
    assert y.shape == (1, W.shape[0])
