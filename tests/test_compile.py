"""torch.compile, torch.export, autograd and torch.func over the public API.

``fullgraph=True`` (no graph break) with outputs equal to eager for fwht, every sketch's apply /
apply_right, QuantizedTensor.dequantize / matmul, the activation quantizer and a model of
DGQLinears (also exported and run through inductor); the higher-level algorithms compile with
graph breaks and never raise. Gradients of the linear operators are their adjoints (gradcheck and
the dense S); quantized layers and the randomized factorizations say why they have none.
"""

from __future__ import annotations

import pytest
import torch

import linalg_core as lc
from linalg_core.qmatmul import DGQLinear

KINDS = ["gaussian", "rademacher", "srht", "countsketch", "sparse_sign"]


@pytest.fixture(autouse=True)
def _fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def compiled(fn, backend="aot_eager"):
    return torch.compile(fn, fullgraph=True, backend=backend)


def test_fwht_compiles_without_graph_breaks():
    x = torch.randn(4, 8, 32)
    for dim in (-1, 1):
        torch.testing.assert_close(compiled(lambda t, d=dim: lc.fwht(t, dim=d) * 2)(x), lc.fwht(x, dim=dim) * 2)


@pytest.mark.parametrize("kind", KINDS)
def test_sketch_apply_compiles_without_graph_breaks(kind):
    S = lc.sketch.create(kind, 16, 128, seed=0)
    A = torch.randn(128, 5)
    torch.testing.assert_close(compiled(S.apply)(A), S.apply(A))
    torch.testing.assert_close(compiled(S.apply_right)(A.T.contiguous()), S.apply_right(A.T.contiguous()))


@pytest.mark.parametrize("fmt", ["nf4", "nf3", "bnb-nf4", "int4", "int4-asym", "q4_0", "q8_0"])
def test_quantized_tensor_products_compile(fmt):
    Q = lc.quant.quantize(torch.randn(64, 128, generator=torch.Generator().manual_seed(0)), fmt)
    X = torch.randn(128, 3)
    torch.testing.assert_close(compiled(lambda: Q.dequantize())(), Q.dequantize())
    torch.testing.assert_close(compiled(Q.matmul)(X), Q.matmul(X))


def test_activation_quantizer_compiles():
    x = torch.randn(5, 256)
    got, want = compiled(lc.qmatmul.quantize_activations)(x), lc.qmatmul.quantize_activations(x)
    assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])


def _dgq_model():
    torch.manual_seed(0)
    return torch.nn.Sequential(DGQLinear.from_linear(torch.nn.Linear(256, 128)), torch.nn.GELU(),
                               DGQLinear.from_linear(torch.nn.Linear(128, 64)))


def test_dgq_model_compiles_fullgraph_and_exports():
    model, x = _dgq_model(), torch.randn(7, 256)
    with torch.no_grad():
        want = model(x)
        assert torch.equal(compiled(model)(x), want)
        torch.testing.assert_close(compiled(model, backend="inductor")(x), want)  # inductor fuses the epilogue
        exported = torch.export.export(model, (x,))
        assert "linalg_core.dgq_linear" in str(exported.graph)  # one fused op per layer
        assert torch.equal(exported.module()(x), want)


def test_nan_checks_become_graph_asserts():
    x = torch.randn(4, 32)
    x[1, 3] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        lc.fwht(x)  # eager: counted, ValueError
    with pytest.raises(RuntimeError, match="NaN or Inf"):
        compiled(lc.fwht)(x)  # compiled: the assert in the graph


@pytest.mark.parametrize("fn", [lambda A: lc.rsvd(A, 4, seed=0).S, lambda A: lc.nystrom(A, 4, seed=0).C,
                                lambda A: lc.regression.lstsq(A, A[:, 0] + 1, seed=0).x])
def test_algorithms_compile_with_graph_breaks_and_never_raise(fn):
    A = torch.randn(200, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(torch.compile(fn, backend="eager")(A), fn(A))


# --- autograd ---------------------------------------------------------------------------------------

def test_fwht_gradient_is_the_transform_itself():
    x = torch.randn(3, 16, dtype=torch.float64, requires_grad=True)
    torch.autograd.gradcheck(lambda t: lc.fwht(t, dim=-1), (x,))
    torch.autograd.gradgradcheck(lambda t: lc.fwht(t, dim=-1), (x,))
    g = torch.randn(3, 16, dtype=torch.float64)
    (gx,) = torch.autograd.grad(lc.fwht(x), x, g)
    torch.testing.assert_close(gx, lc.fwht(g))  # orthogonal and symmetric: H^T g = H g


@pytest.mark.parametrize("kind", KINDS)
def test_sketch_gradients_are_the_adjoint(kind):
    S = lc.sketch.create(kind, 12, 40, seed=3)
    Sd = S.to_dense(dtype=torch.float64)
    A = torch.randn(40, 3, dtype=torch.float64, requires_grad=True)
    G = torch.randn(12, 3, dtype=torch.float64)
    (gA,) = torch.autograd.grad(S.apply(A), A, G)
    torch.testing.assert_close(gA, Sd.T @ G)
    B = torch.randn(3, 40, dtype=torch.float64, requires_grad=True)
    (gB,) = torch.autograd.grad(S.apply_right(B), B, G.T)
    torch.testing.assert_close(gB, G.T @ Sd)
    torch.autograd.gradcheck(S.apply, (A,))


def test_sketch_gradient_compiles():
    S = lc.sketch.srht(16, 64, seed=0)
    A = torch.randn(64, 3, requires_grad=True)
    loss = compiled(lambda a: (S.apply(a) ** 2).sum())(A)
    (g,) = torch.autograd.grad(loss, A)
    Sd = S.to_dense(dtype=torch.float32)
    torch.testing.assert_close(g, 2 * Sd.T @ (Sd @ A.detach()), rtol=1e-4, atol=1e-4)


def test_dgq_linear_says_it_is_inference_only():
    layer, x = _dgq_model()[0], torch.randn(2, 256, requires_grad=True)
    y = layer(x)
    with pytest.raises(RuntimeError, match="DGQLinear is inference-only"):
        y.sum().backward()
    with torch.no_grad():
        assert not layer(x).requires_grad


@pytest.mark.parametrize("fn", [lambda A: lc.rsvd(A, 2), lambda A: lc.nystrom(A, 2), lambda A: lc.cur(A, 2),
                                lambda A: lc.regression.lstsq(A, A[:, 0].detach())])
def test_randomized_factorizations_refuse_inputs_that_require_grad(fn):
    A = torch.nn.Linear(8, 30).weight  # a parameter: requires grad
    with pytest.raises(ValueError, match="not differentiable: A requires grad"):
        fn(A)
    with torch.no_grad():
        fn(A)


# --- torch.func ---------------------------------------------------------------------------------------

def test_vmap_over_fwht_and_sketches():
    x = torch.randn(5, 4, 64)
    torch.testing.assert_close(torch.func.vmap(lc.fwht)(x), lc.fwht(x))
    for kind in KINDS:
        S = lc.sketch.create(kind, 8, 64, seed=0)
        got = torch.func.vmap(lambda t: S.apply(t.T))(x)
        torch.testing.assert_close(got, torch.stack([S.apply(t.T) for t in x]))


def test_func_grad_and_jacobian_of_fwht_and_sketches():
    x = torch.randn(16, dtype=torch.float64)
    torch.testing.assert_close(torch.func.grad(lambda t: (lc.fwht(t) ** 2).sum())(x), 2 * x)
    torch.testing.assert_close(torch.func.jacrev(lc.fwht)(x), lc.fwht(torch.eye(16, dtype=torch.float64), dim=0))
    S = lc.sketch.countsketch(6, 16, seed=1)
    torch.testing.assert_close(torch.func.jacrev(S.apply)(x), S.to_dense(dtype=torch.float64))
    g = torch.func.vmap(torch.func.grad(lambda t: (lc.fwht(t) ** 2).sum()))(torch.randn(3, 16))
    assert g.shape == (3, 16)


def test_rsvd_under_vmap_errors_clearly():
    with pytest.raises(ValueError, match="torch.func transforms"):
        torch.func.vmap(lambda A: lc.rsvd(A, 2, seed=0).S)(torch.randn(3, 20, 10))
