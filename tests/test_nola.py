"""The nola family (ops ``nola_combine``, ``nola_coeff_grad``) and the NOLA adapter built on it:
every backend against the float64 oracle of materialised bases (tests/oracles/nola.py; Triton on
CPU tensors under the interpreter, CUDA under the ``gpu`` marker), the adjoint identity, opcheck
and gradcheck, NOLALinear's forward and backward against materialised bases, checkpoints that
hold only coefficients and metadata, torch.compile, and bad input at every layer (public
functions, module, config, binding)."""

import io

import numpy as np
import pytest
import torch

import linalg_core as lc
from linalg_core import _ops
from linalg_core._ext import _C
from linalg_core.adapters.nola import (NOLAConfig, NOLALinear, basis_scale, init_nola_model, load_nola_state_dict,
                                       nola_coeff_grad, nola_combine, nola_state_dict, stream_base)
from linalg_core.backends._c import buf
from linalg_core.testing import usable_backends
from tests.oracles import nola as oracle

BIG_SEED = 2**63 + 0x1234_5678_9ABC
# Crosses a 2^32 boundary of the stream id (the carry into its high word) with k = 5.
BASE = 2**32 - 2
SHAPES = [(3, 101), (1, 1), (8, 37), (2, 300)]


def _tol(dtype, k=5):
    return dict(rtol=1e-12, atol=1e-12) if dtype == torch.float64 else dict(rtol=2e-5 * k ** 0.5, atol=2e-5 * k ** 0.5)


@pytest.mark.parametrize("backend", usable_backends("nola_combine", dtype=torch.float64))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", SHAPES)
def test_combine_matches_oracle(backend, dtype, shape):
    c = torch.tensor([0.5, -1.25, 2.0, 0.0, 0.75], dtype=dtype)
    got = nola_combine(c, shape, seed=BIG_SEED, stream_base=BASE, scale=0.3, backend=backend)
    want = oracle.combine(c.double().numpy(), *shape, BASE, BIG_SEED, 0.3)
    assert got.dtype == dtype and got.shape == shape
    np.testing.assert_allclose(got.double().numpy(), want, **_tol(dtype))


@pytest.mark.parametrize("backend", usable_backends("nola_coeff_grad", dtype=torch.float64))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", SHAPES)
def test_coeff_grad_matches_oracle(backend, dtype, shape):
    g = torch.randn(*shape, generator=torch.Generator().manual_seed(1), dtype=dtype)
    got = nola_coeff_grad(g, 5, seed=BIG_SEED, stream_base=BASE, scale=0.3, backend=backend)
    want = oracle.coeff_grad(g.double().numpy(), 5, BASE, BIG_SEED, 0.3)
    assert got.dtype == dtype and got.shape == (5,)
    tol = _tol(dtype, shape[0] * shape[1])
    np.testing.assert_allclose(got.double().numpy(), want, rtol=tol["rtol"], atol=tol["atol"])


def test_bases_are_random_normal_streams():
    # Basis i is exactly random.normal of stream stream_base + i (one-hot coefficients pick it out).
    for i in range(3):
        c = torch.zeros(3, dtype=torch.float64)
        c[i] = 1.0
        got = nola_combine(c, (4, 9), seed=7, stream_base=100, backend="cpu")
        want = lc.random.normal((4, 9), seed=7, stream=100 + i, dtype=torch.float64)
        torch.testing.assert_close(got, want, rtol=1e-15, atol=1e-15)


@pytest.mark.parametrize("backend", usable_backends("nola_combine", dtype=torch.float64))
def test_adjoint_identity(backend):
    gen = torch.Generator().manual_seed(2)
    c = torch.randn(7, generator=gen, dtype=torch.float64)
    G = torch.randn(6, 11, generator=gen, dtype=torch.float64)
    lhs = (nola_combine(c, (6, 11), seed=3, stream_base=9, scale=0.7, backend=backend) * G).sum()
    rhs = (c * nola_coeff_grad(G, 7, seed=3, stream_base=9, scale=0.7, backend=backend)).sum()
    torch.testing.assert_close(lhs, rhs, rtol=1e-12, atol=1e-12)


def test_cpu_many_bases_and_large_matrix_match_materialised_streams():
    # k and rows·cols past the CPU kernel's tiles (256 elements), spans (64 tiles) and basis blocks
    # (64), against bases materialised by random.normal (the random family's own kernel).
    k, shape, base = 66, (17, 1031), 2**40
    Z = torch.stack([lc.random.normal(shape, seed=11, stream=base + i, dtype=torch.float64) for i in range(k)])
    gen = torch.Generator().manual_seed(3)
    c, g = torch.randn(k, generator=gen, dtype=torch.float64), torch.randn(*shape, generator=gen, dtype=torch.float64)
    s = basis_scale(k)
    for dtype, tol in ((torch.float64, 1e-12), (torch.float32, 1e-5)):
        got = nola_combine(c.to(dtype), shape, seed=11, stream_base=base, scale=s, backend="cpu")
        torch.testing.assert_close(got.double(), s * torch.einsum("k,krc->rc", c.to(dtype).double(), Z), rtol=tol,
                                   atol=tol)
        got = nola_coeff_grad(g.to(dtype), k, seed=11, stream_base=base, scale=s, backend="cpu")
        torch.testing.assert_close(got.double(), s * torch.einsum("rc,krc->k", g.to(dtype).double(), Z),
                                   rtol=tol * 100, atol=tol * 100)


def test_cpu_result_does_not_depend_on_thread_count():
    gen = torch.Generator().manual_seed(4)
    c, g = torch.randn(70, generator=gen), torch.randn(33, 1000, generator=gen)
    threads = torch.get_num_threads()
    out = []
    try:
        for n in (1, 2):
            lc.set_num_threads(n)
            out.append((nola_combine(c, (33, 1000), seed=1, stream_base=0, backend="cpu"),
                        nola_coeff_grad(g, 70, seed=1, stream_base=0, backend="cpu")))
    finally:
        lc.set_num_threads(threads)
    for a, b in zip(*out):
        assert torch.equal(a, b)


@pytest.mark.parametrize("backend", [b for b in usable_backends("nola_combine", dtype=torch.float64)
                                     if b in ("reference", "cpu")])
def test_gradcheck_both_ops(backend):
    c = torch.randn(4, dtype=torch.float64, requires_grad=True)
    torch.autograd.gradcheck(lambda c: _ops.nola_combine(c, 3, 5, 8, 2, 0.5, backend=backend), (c,))
    torch.autograd.gradgradcheck(lambda c: _ops.nola_combine(c, 3, 5, 8, 2, 0.5, backend=backend), (c,))
    g = torch.randn(3, 5, dtype=torch.float64, requires_grad=True)
    torch.autograd.gradcheck(lambda g: _ops.nola_coeff_grad(g, 4, 8, 2, 0.5, backend=backend), (g,))


def _samples():
    gen = torch.Generator().manual_seed(5)
    return {"nola_combine": [(torch.randn(3, generator=gen), 4, 6, 5, _ops.as_int64(BIG_SEED), 0.5),
                             (torch.randn(2, generator=gen, dtype=torch.float64), 1, 9, BASE, 3, 1.0)],
            "nola_coeff_grad": [(torch.randn(4, 6, generator=gen), 3, 5, _ops.as_int64(BIG_SEED), 0.5),
                                (torch.randn(1, 9, generator=gen, dtype=torch.float64), 2, BASE, 3, 1.0)]}


@pytest.mark.parametrize("name", ["nola_combine", "nola_coeff_grad"])
def test_opcheck(name):
    # every backend on one sample (tests/test_ops.py runs its own samples on every backend too)
    for backend in usable_backends(name):
        torch.library.opcheck(_ops.OPS[name].overload, _samples()[name][0], {"backend": backend},
                              test_utils=("test_schema", "test_faketensor", "test_aot_dispatch_dynamic"))
    for args in _samples()[name]:
        args = (args[0].double().requires_grad_(),) + args[1:]
        torch.library.opcheck(_ops.OPS[name].overload, args, {"backend": "reference"},
                              test_utils=("test_autograd_registration", "test_aot_dispatch_dynamic"))


@pytest.mark.gpu
@pytest.mark.parametrize("backend", ["cuda", "triton"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_gpu_backends_match_reference(backend, dtype):
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU")
    gen = torch.Generator().manual_seed(6)
    c = torch.randn(300, generator=gen, dtype=dtype)
    g = torch.randn(37, 129, generator=gen, dtype=dtype)
    for shape in [(37, 129), (1, 3), (8, 384)]:
        got = nola_combine(c.cuda(), shape, seed=BIG_SEED, stream_base=BASE, scale=basis_scale(300), backend=backend)
        want = nola_combine(c, shape, seed=BIG_SEED, stream_base=BASE, scale=basis_scale(300), backend="reference")
        torch.testing.assert_close(got.cpu(), want, **_tol(dtype, 300))
    got = nola_coeff_grad(g.cuda(), 300, seed=BIG_SEED, stream_base=BASE, backend=backend)
    want = nola_coeff_grad(g, 300, seed=BIG_SEED, stream_base=BASE, backend="reference")
    torch.testing.assert_close(got.cpu(), want, **_tol(dtype, 37 * 129))


# --- NOLALinear ------------------------------------------------------------------------------------

def _layer(dtype=torch.float64, seed=BIG_SEED, layer_index=3, **kw):
    torch.manual_seed(0)
    base = torch.nn.Linear(20, 12, dtype=dtype)
    layer = NOLALinear(base, 4, 9, 7, seed=seed, layer_index=layer_index, lora_alpha=6.0, **kw)
    gen = torch.Generator().manual_seed(8)
    with torch.no_grad():
        layer.nola_alpha.copy_(torch.randn(9, generator=gen, dtype=dtype))
        layer.nola_beta.copy_(torch.randn(7, generator=gen, dtype=dtype))
    return layer


def _oracle_forward(layer, x):
    return oracle.nola_linear(x.detach().numpy(), layer.base.weight.detach().numpy(), layer.base.bias.detach().numpy(),
                              layer.nola_alpha.detach().numpy(), layer.nola_beta.detach().numpy(),
                              layer.a0_coefficient, layer.rank, stream_base(layer.layer_index, 0),
                              stream_base(layer.layer_index, 1), layer.seed, basis_scale(layer.k_a + 1),
                              basis_scale(layer.k_b), layer.scaling)


def test_nola_linear_forward_and_backward_against_materialised_bases():
    layer = _layer()
    x = torch.randn(5, 20, dtype=torch.float64, generator=torch.Generator().manual_seed(9))
    y = layer(x)
    np.testing.assert_allclose(y.detach().numpy(), _oracle_forward(layer, x), rtol=1e-11, atol=1e-11)
    # Backward: the same loss through factors built from materialised bases with torch's einsum.
    w = torch.randn(5, 12, dtype=torch.float64, generator=torch.Generator().manual_seed(10))
    (y * w).sum().backward()
    Za = torch.from_numpy(oracle.bases(10, 4, 20, stream_base(3, 0), BIG_SEED)) * basis_scale(10)
    Zb = torch.from_numpy(oracle.bases(7, 12, 4, stream_base(3, 1), BIG_SEED)) * basis_scale(7)
    alpha = layer.nola_alpha.detach().clone().requires_grad_()
    beta = layer.nola_beta.detach().clone().requires_grad_()
    A = torch.einsum("k,krc->rc", torch.cat([alpha.new_tensor([layer.a0_coefficient]), alpha]), Za)
    B = torch.einsum("k,krc->rc", beta, Zb)
    y_ref = layer.base(x) + layer.scaling * (x @ A.T) @ B.T
    (y_ref * w).sum().backward()
    torch.testing.assert_close(layer.nola_alpha.grad, alpha.grad, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(layer.nola_beta.grad, beta.grad, rtol=1e-10, atol=1e-10)
    assert layer.base.weight.grad is None  # the base is frozen


def test_nola_linear_starts_at_the_base_and_learns():
    torch.manual_seed(0)
    base = torch.nn.Linear(16, 8)
    layer = NOLALinear(base, 2, 32, 32, seed=1)
    x = torch.randn(64, 16)
    torch.testing.assert_close(layer(x), base(x))  # α = β = 0: ΔW = 0
    target = base(x) + 0.5 * x[:, :8]
    opt = torch.optim.Adam([layer.nola_alpha, layer.nola_beta], lr=0.05)
    losses = []
    for _ in range(30):
        opt.zero_grad()
        loss = ((layer(x) - target) ** 2).mean()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0]  # β's gradient is not zero at the start (A₀ ≠ 0)


def test_layers_use_distinct_bases():
    a = _layer(layer_index=0).factors()[0]
    b = _layer(layer_index=1).factors()[0]
    assert not torch.allclose(a, b)


def test_eval_mode_caches_factors_until_coefficients_change():
    layer = _layer().eval()
    x = torch.randn(2, 20, dtype=torch.float64)
    with torch.no_grad():
        y0 = layer(x)
        assert layer._cache is not None
        layer.nola_beta.add_(1.0)
        y1 = layer(x)
    assert not torch.allclose(y0, y1)
    np.testing.assert_allclose(y1.numpy(), _oracle_forward(layer, x), rtol=1e-11, atol=1e-11)


def test_delta_weight_is_the_adapter_product():
    layer = _layer()
    x = torch.randn(3, 20, dtype=torch.float64)
    torch.testing.assert_close(layer(x), layer.base(x) + x @ layer.delta_weight().T)


def test_state_dict_round_trip_holds_only_coefficients_and_metadata():
    layer = _layer(seed=12345, layer_index=2)
    x = torch.randn(4, 20, dtype=torch.float64)
    model = torch.nn.Sequential(layer)
    sd = nola_state_dict(model)
    assert sorted(sd) == ["0._extra_state", "0.nola_alpha", "0.nola_beta"]
    assert sd["0._extra_state"]["seed"] == 12345 and sd["0._extra_state"]["layer_index"] == 2
    f = io.BytesIO()
    torch.save(sd, f)
    f.seek(0)
    loaded = torch.load(f, weights_only=True)
    other = torch.nn.Sequential(NOLALinear(layer.base, 4, 9, 7, seed=999, layer_index=0, lora_alpha=6.0))
    load_nola_state_dict(other, loaded)
    assert other[0].seed == 12345 and other[0].layer_index == 2
    torch.testing.assert_close(other(x), model(x), rtol=0, atol=0)
    # The module's full state_dict round-trips too (base weights + coefficients + metadata).
    again = NOLALinear(torch.nn.Linear(20, 12, dtype=torch.float64), 4, 9, 7, seed=1, lora_alpha=6.0)
    again.load_state_dict(layer.state_dict())
    torch.testing.assert_close(again(x), layer(x), rtol=0, atol=0)


def test_checkpoint_of_another_shape_is_refused():
    layer = _layer()
    other = NOLALinear(torch.nn.Linear(20, 12, dtype=torch.float64), 4, 9, 8, seed=1)
    with pytest.raises(ValueError, match="k_b=7"):
        other.load_state_dict(layer.state_dict())
    with pytest.raises(ValueError, match="missing"):
        load_nola_state_dict(torch.nn.Sequential(layer), {})


def test_torch_compile_fullgraph_forward_and_backward():
    layer = _layer(dtype=torch.float32)
    x = torch.randn(3, 20)
    compiled = torch.compile(layer, fullgraph=True, backend="aot_eager")
    y = compiled(x)
    torch.testing.assert_close(y, layer(x))
    y.sum().backward()
    assert layer.nola_alpha.grad is not None and torch.isfinite(layer.nola_alpha.grad).all()


def test_init_nola_model_wraps_targets_and_freezes_the_rest():
    torch.manual_seed(0)
    model = torch.nn.ModuleDict({"enc": torch.nn.ModuleDict({"query": torch.nn.Linear(16, 16),
                                                             "value": torch.nn.Linear(16, 16),
                                                             "key": torch.nn.Linear(16, 16)}),
                                 "head": torch.nn.Linear(16, 3)})
    info = init_nola_model(model, NOLAConfig(target_modules=("query", "value"), rank=4, k_a=10, k_b=12, seed=5))
    assert info.layers == ("enc.query", "enc.value") and info.seed == 5
    assert info.trainable == 2 * 22 and info.lora_equivalent == 2 * 4 * 32
    assert [m.layer_index for m in (model["enc"]["query"], model["enc"]["value"])] == [0, 1]
    trainable = sorted(n for n, p in model.named_parameters() if p.requires_grad)
    assert trainable == ["enc.query.nola_alpha", "enc.query.nola_beta", "enc.value.nola_alpha", "enc.value.nola_beta"]
    assert isinstance(model["enc"]["key"], torch.nn.Linear)
    regex = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.Linear(8, 8))
    assert init_nola_model(regex, NOLAConfig(target_modules=r"1", rank=2, k_a=4, k_b=4, seed=0)).layers == ("1",)


# --- bad input ------------------------------------------------------------------------------------

def test_public_functions_reject_bad_input():
    c = torch.ones(3)
    with pytest.raises(ValueError, match="coeffs is empty"):
        nola_combine(torch.ones(0), (2, 2), seed=0, stream_base=0)
    with pytest.raises(TypeError, match="coeffs has dtype torch.int64"):
        nola_combine(torch.ones(3, dtype=torch.int64), (2, 2), seed=0, stream_base=0)
    with pytest.raises(TypeError, match="coeffs has dtype torch.float16"):
        nola_combine(torch.ones(3, dtype=torch.float16), (2, 2), seed=0, stream_base=0)
    with pytest.raises(ValueError, match="coeffs must be 1-D"):
        nola_combine(torch.ones(3, 1), (2, 2), seed=0, stream_base=0)
    with pytest.raises(TypeError, match="coeffs must be a torch.Tensor"):
        nola_combine([1.0], (2, 2), seed=0, stream_base=0)
    with pytest.raises(TypeError, match="shape must be a"):
        nola_combine(c, (2, 2, 2), seed=0, stream_base=0)
    with pytest.raises(ValueError, match=r"shape\[1\]=-1"):
        nola_combine(c, (2, -1), seed=0, stream_base=0)
    with pytest.raises(ValueError, match="seed=-1"):
        nola_combine(c, (2, 2), seed=-1, stream_base=0)
    with pytest.raises(ValueError, match="passes 2"):
        nola_combine(c, (2, 2), seed=0, stream_base=2**64 - 2)
    with pytest.raises(ValueError, match="scale=nan"):
        nola_combine(c, (2, 2), seed=0, stream_base=0, scale=float("nan"))
    with pytest.raises(ValueError, match="grad must be 2-D"):
        nola_coeff_grad(torch.ones(4), 3, seed=0, stream_base=0)
    with pytest.raises(ValueError, match="k=0"):
        nola_coeff_grad(torch.ones(2, 2), 0, seed=0, stream_base=0)
    with pytest.raises(TypeError, match="k must be an integer"):
        nola_coeff_grad(torch.ones(2, 2), 2.0, seed=0, stream_base=0)
    with pytest.raises(TypeError, match="grad has dtype torch.bfloat16"):
        nola_coeff_grad(torch.ones(2, 2, dtype=torch.bfloat16), 2, seed=0, stream_base=0)


def test_module_and_config_reject_bad_input():
    lin = torch.nn.Linear(6, 4)
    with pytest.raises(TypeError, match="base must be a torch.nn.Linear"):
        NOLALinear(torch.nn.Conv1d(1, 1, 1), 2, 4, 4, seed=0)
    with pytest.raises(ValueError, match="rank=5"):
        NOLALinear(lin, 5, 4, 4, seed=0)
    with pytest.raises(ValueError, match="k_a=0"):
        NOLALinear(lin, 2, 0, 4, seed=0)
    with pytest.raises(ValueError, match="layer_index=32768"):
        NOLALinear(lin, 2, 4, 4, seed=0, layer_index=2**15)
    with pytest.raises(ValueError, match="NOLAConfig.k_b=0"):
        NOLAConfig(target_modules=("q",), k_b=0)
    with pytest.raises(ValueError, match="NOLAConfig.target_modules is empty"):
        NOLAConfig(target_modules=())
    with pytest.raises(ValueError, match="NOLAConfig.dropout=2.0"):
        NOLAConfig(target_modules=("q",), dropout=2.0)
    with pytest.raises(ValueError, match="no nn.Linear module"):
        init_nola_model(torch.nn.Sequential(lin), NOLAConfig(target_modules=("query",)))
    with pytest.raises(ValueError, match="NOLAConfig.rank=8 exceeds"):
        init_nola_model(torch.nn.Sequential(lin), NOLAConfig(target_modules=("0",), rank=8))
    with pytest.raises(TypeError, match="config must be a NOLAConfig"):
        init_nola_model(torch.nn.Sequential(lin), {"rank": 2})


@pytest.mark.skipif(_C is None, reason="linalg_core._C is not built")
def test_binding_checks_its_arguments():
    c, out = torch.ones(3), torch.empty(4, 5)
    ok = (buf(c), buf(out), 0, 3, 4, 5, 0, 0, 1.0)
    _C.cpu_nola_combine(*ok)
    bad = {
        "k=0": (buf(c), buf(out), 0, 0, 4, 5, 0, 0, 1.0),
        "coeffs holds 12 bytes": (buf(c), buf(out), 0, 4, 4, 5, 0, 0, 1.0),
        "out holds 80 bytes": (buf(c), buf(out), 0, 3, 5, 5, 0, 0, 1.0),
        "dt must be float32 or float64": (buf(c), buf(out), 2, 3, 4, 5, 0, 0, 1.0),
        "dt=7": (buf(c), buf(out), 7, 3, 4, 5, 0, 0, 1.0),
        "rows=-1": (buf(c), buf(out), 0, 3, -1, 5, 0, 0, 1.0),
        "passes 2\\^64": (buf(c), buf(out), 0, 3, 4, 5, 2**64 - 2, 0, 1.0),
        "more elements than int64": (buf(c), buf(out), 0, 3, 2**40, 2**40, 0, 0, 1.0),
        "out overlaps coeffs": (buf(c), buf(c), 0, 3, 1, 3, 0, 0, 1.0),
        "coeffs is a null buffer": (None, buf(out), 0, 3, 4, 5, 0, 0, 1.0),
    }
    for what, args in bad.items():
        with pytest.raises(ValueError, match=what):
            _C.cpu_nola_combine(*args)
    g = torch.ones(4, 5)
    with pytest.raises(ValueError, match="grad holds 80 bytes"):
        _C.cpu_nola_coeff_grad(buf(g), buf(torch.empty(3)), 0, 3, 5, 5, 0, 0, 1.0)
    with pytest.raises(ValueError, match="out holds 12 bytes"):
        _C.cpu_nola_coeff_grad(buf(g), buf(torch.empty(3)), 0, 4, 4, 5, 0, 0, 1.0)
    with pytest.raises(ValueError):  # the CUDA binding checks the device before anything runs
        _C.cuda_nola_combine(*ok, 0)


@pytest.mark.skipif(_C is None, reason="linalg_core._C is not built")
def test_binding_fuzz_inconsistent_scalars():
    # The fuzz of tests/test_bindings.py (honest buffers, independently drawn scalars) on this
    # family's bindings: every call runs inside its buffers or raises ValueError (under make
    # test-asan an out-of-bounds access aborts).
    from hypothesis import given
    from hypothesis import strategies as st

    from tests.test_bindings import Buffers, call, dim, dtype_code, esize, fuzz, prod, u64

    @fuzz
    @given(st.data())
    def run(data):
        d = data.draw
        b = Buffers(d)
        dt, k, rows, cols = d(dtype_code), d(dim), d(dim), d(dim)
        call(_C.cpu_nola_combine, b(prod(k) * esize(dt)), b(prod(rows, cols) * esize(dt)), dt, k, rows, cols, d(u64),
             d(u64), 0.5)
        call(_C.cpu_nola_coeff_grad, b(prod(rows, cols) * esize(dt)), b(prod(k) * esize(dt)), dt, k, rows, cols,
             d(u64), d(u64), 0.5)

    run()
