"""The kernel-level ops as torch custom ops: ``torch.library.opcheck`` on every op (schema, fake
kernel against the real one, autograd registration, AOT dispatch) with sample inputs for every
backend that runs here, and the registry's one-way import structure."""

from __future__ import annotations

import ast
import math
import pathlib

import pytest
import torch

import linalg_core as lc
from linalg_core import _ops
from linalg_core.testing.backends import usable_backends

_ops.load_backends()
g = torch.Generator().manual_seed(0)


def _randn(*shape, dtype=torch.float32):
    return torch.randn(*shape, generator=g, dtype=dtype)


def _mid(bits):
    return lc.quant.codebooks.midpoints(lc.quant.codebooks.normal_float(bits))


def _dgq():
    w = lc.qmatmul.dgq_quantize(_randn(8, 256), search="rtn")
    x = torch.randint(-127, 128, (3, 256), generator=g, dtype=torch.int8)
    return x, w


def samples(name: str):
    """(args, requires_grad variants) for op ``name``."""
    if name == "fwht":
        return [(_randn(2, 8, 3), 8, None, 0.5, torch.float32),
                (_randn(2, 5, 3, dtype=torch.float64), 8, torch.tensor([1, -1, 1, 1, -1], dtype=torch.int8), 0.3,
                 torch.float64)]
    if name == "fwht_into":
        return [(_randn(2, 8, 3), 8, None, 0.5, torch.empty(2, 8, 3))]
    if name == "fwht_select":
        return [(_randn(2, 5, 3), 8, torch.tensor([1, -1, 1, 1, -1], dtype=torch.int8), 0.5,
                 torch.tensor([0, 3, 6]), torch.float32)]
    if name == "sparse_hash":
        return [(10, 3, 7, 2, 5, _ops.as_int64(2**63 + 5), torch.device("cpu"))]
    rows, signs = _ops.sparse_hash(10, 0, 7, 2, 5, 9, torch.device("cpu"))
    if name == "sparse_apply":
        return [(_randn(2, 10, 3), rows, signs, 7, 0.5, False), (_randn(2, 3, 10), rows, signs, 7, 0.5, True)]
    if name == "random_uint32":
        return [(17, 3, 5, _ops.as_int64(2**64 - 1), torch.device("cpu"))]
    if name == "random_fill":
        return [(3, 5, 9, 1, 2, 4, 7, 0.5, False, torch.float32, torch.device("cpu")),
                (3, 5, 9, 1, 2, 4, 7, 1.0, True, torch.float64, torch.device("cpu"))]
    if name == "convert":
        return [(_randn(33), torch.bfloat16)]
    if name == "convert_into":
        return [(_randn(33), torch.empty(33, dtype=torch.float16))]
    if name == "count_nonfinite":
        return [(torch.tensor([1.0, float("nan"), float("inf")]),)]
    if name == "lowrank_update":
        return [(_randn(5, 70), _randn(5, 3), _randn(3, 70), 0.5, torch.empty(5, 70)),
                (_randn(6, 20, dtype=torch.bfloat16), _randn(6, 2), _randn(2, 20), -1.0,
                 torch.empty(6, 20, dtype=torch.bfloat16)),
                (_randn(7, 33, dtype=torch.float16), _randn(7, 4), _randn(4, 33), 0.25,
                 torch.empty(7, 33, dtype=torch.float16))]
    if name == "weighted_gram":
        return [(_randn(20, 3, dtype=torch.float64), torch.rand(20, generator=g, dtype=torch.float64))]
    if name == "row_quadratic_forms":
        return [(_randn(20, 3, dtype=torch.float64), torch.eye(3, dtype=torch.float64))]
    if name == "block_quantize":
        return [(_randn(100), 16, _mid(4), 4, None, None), (_randn(100), 16, torch.zeros(1), 0, None, None),
                (_randn(64), 8, _mid(3), 3, torch.ones(8), torch.zeros(8))]
    if name in ("block_dequantize", "block_dequantize_into"):
        packed = torch.randint(0, 256, (50,), generator=g, dtype=torch.uint8)
        lv = lc.quant.codebooks.normal_float(4)
        last = torch.float16 if name == "block_dequantize" else torch.empty(100, dtype=torch.float16)
        return [(packed, 4, lv, torch.rand(7, generator=g), None, 100, 16, last)]
    if name == "gguf_quantize":
        return [(_randn(64), 4), (_randn(96, dtype=torch.bfloat16), 8)]
    if name in ("gguf_dequantize", "gguf_dequantize_into"):
        blocks = _ops.gguf_quantize(_randn(64), 4, backend="reference")[0]
        last = torch.float16 if name == "gguf_dequantize" else torch.empty(64, dtype=torch.float16)
        return [(blocks, 4, 64, last)]
    if name == "gguf_quantize":
        return [(_randn(96), 4), (_randn(64, dtype=torch.bfloat16), 8)]
    if name in ("gguf_dequantize", "gguf_dequantize_into"):
        blocks = _ops.gguf_quantize(_randn(96), 4)[0]
        return [(blocks, 4, 90, torch.float16 if name == "gguf_dequantize" else torch.empty(90, dtype=torch.float16))]
    if name == "dgq_matmul":
        x, w = _dgq()
        args = (x, w.qweight, w.zeros, w.group_scales, w.weight_sums, w.group_size)
        return [args + (None, None), args + (torch.rand(3, generator=g), w.channel_scales)]
    if name == "dgq_linear":
        _, w = _dgq()
        args = (_randn(3, 256), w.qweight, w.zeros, w.group_scales, w.weight_sums, w.channel_scales)
        return [args + (None, w.group_size), args + (_randn(8), w.group_size),
                (_randn(2, 256, dtype=torch.bfloat16),) + args[1:] + (None, w.group_size)]
    if name == "nola_combine":
        return [(_randn(3), 4, 6, 5, _ops.as_int64(2**63 + 5), 0.5),
                (_randn(2, dtype=torch.float64), 1, 9, 2**32 - 2, 3, 1.0)]
    if name == "nola_coeff_grad":
        return [(_randn(4, 6), 3, 5, _ops.as_int64(2**63 + 5), 0.5),
                (_randn(1, 9, dtype=torch.float64), 2, 2**32 - 2, 3, 1.0)]
    raise AssertionError(f"no samples for {name}")


def test_every_op_has_samples_and_a_reference():
    for name, op in _ops.OPS.items():
        assert samples(name), name
        assert "reference" in op.impls, name


CASES = [(name, backend, i) for name in _ops.OPS for backend in usable_backends(name)
         for i in range(len(samples(name)))]


@pytest.mark.parametrize("name,backend,i", CASES)
def test_opcheck(name, backend, i):
    args = samples(name)[i]
    utils = ("test_schema", "test_faketensor", "test_aot_dispatch_dynamic")
    torch.library.opcheck(_ops.OPS[name].overload, args, {"backend": backend}, test_utils=utils)


@pytest.mark.parametrize("name", ["fwht", "fwht_select", "sparse_apply"])
def test_opcheck_autograd(name):
    for args in samples(name):
        args = (args[0].double().requires_grad_(),) + tuple(args[1:])
        if name == "fwht":
            args = args[:4] + (torch.float64,)
        if name == "fwht_select":
            args = args[:5] + (torch.float64,)
        torch.library.opcheck(_ops.OPS[name].overload, args, {"backend": "reference"},
                              test_utils=("test_autograd_registration", "test_aot_dispatch_dynamic"))
        torch.autograd.gradcheck(lambda x: _ops.OPS[name].overload(x, *args[1:]), (args[0],))


def test_direct_and_dispatcher_paths_agree():
    # Eager calls skip the dispatcher; calls that need it (grad, tracing) take torch.ops: same result.
    for name in ("fwht", "sparse_apply", "block_quantize", "dgq_matmul", "random_fill"):
        for args in samples(name):
            direct = _ops.OPS[name](*args)
            via = _ops.OPS[name].overload(*args)
            for a, b in zip(direct if isinstance(direct, tuple) else (direct,), via if isinstance(via, tuple) else (via,)):
                torch.testing.assert_close(torch.as_tensor(a), b, rtol=0, atol=0)


# --- the registry is one-way: no import cycles in the package ---------------------------------------

PKG = pathlib.Path(lc.__file__).parent


def _module(path: pathlib.Path) -> str:
    rel = path.relative_to(PKG.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _imports(path: pathlib.Path, modules: set[str]) -> set[str]:
    """Modules of the package this file imports, at any level (function-level imports count)."""
    tree = ast.parse(path.read_text())
    me = _module(path)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            names = [base] + [f"{base}.{a.name}" for a in node.names]
        else:
            continue
        for n in names:
            while n and n not in modules:
                n = n.rpartition(".")[0]
            if n and n != me:
                out.add(n)
    return out


def test_import_graph_has_no_cycles():
    files = [p for p in PKG.rglob("*.py") if "__pycache__" not in p.parts]
    modules = {_module(p) for p in files}
    graph = {_module(p): _imports(p, modules) for p in files}
    # a package's __init__ importing its own submodules is how a package is wired, not a cycle
    for m, deps in graph.items():
        graph[m] = {d for d in deps if not (d.startswith(m + ".") and PKG.joinpath(*m.split(".")[1:]).is_dir())}
    seen, stack, cycles = set(), [], []

    def visit(m):
        if m in stack:
            cycles.append(stack[stack.index(m):] + [m])
            return
        if m in seen:
            return
        seen.add(m)
        stack.append(m)
        for d in sorted(graph.get(m, ())):
            visit(d)
        stack.pop()

    for m in sorted(graph):
        visit(m)
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles[:10])


def test_ops_module_imports_no_backend():
    deps = _imports(PKG / "_ops.py", {_module(p) for p in PKG.rglob("*.py")})
    assert not any(d.startswith("linalg_core.backends") for d in deps), deps


# --- the direct (one-call) path of fwht: the same function as the full path, or None ---------------

_direct = getattr(lc._ext._C, "cpu_fwht_direct", None) if lc._ext._C is not None else None
needs_direct = pytest.mark.skipif(_direct is None, reason="linalg_core._C is not built")


@needs_direct
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
def test_fwht_direct_path_is_the_full_path_bit_for_bit(dtype):
    for shape, dim in [((1, 256), -1), ((3, 8, 5), 1), ((16,), 0), ((4, 2, 3), -3), ((2, 1, 1), 1), ((5, 64), 1)]:
        x = _randn(*shape, dtype=dtype)
        before = x.clone()
        for normalized in (True, False):
            y = _direct(x, dim, normalized)
            assert y is not None, (shape, dim)  # the plain case: taken (the test below checks the declines)
            full = lc.fwht(x, dim=dim, normalized=normalized, backend="cpu")  # forced: the full path
            assert y.dtype == dtype and y.shape == x.shape and y.is_contiguous()
            assert torch.equal(y, full), (shape, dim, normalized)
            assert torch.equal(lc.fwht(x, dim=dim, normalized=normalized), full)  # the public function takes it
        assert torch.equal(x, before)


@needs_direct
def test_fwht_direct_path_declines_everything_but_the_plain_case():
    import numpy as np

    x = _randn(4, 8)
    nan = x.clone()
    nan[1, 2] = float("nan")
    declined = {
        "non-contiguous": (x.t(), -1, True), "integer dtype": (torch.ones(4, 8, dtype=torch.int32), -1, True),
        "complex": (torch.ones(4, 8, dtype=torch.complex64), -1, True),
        "not a power of two": (_randn(4, 6), -1, True), "empty": (torch.empty(0, 8), -1, True),
        "0-d": (torch.tensor(1.0), 0, True), "dim out of range": (x, 2, True), "dim too low": (x, -3, True),
        "dim a bool": (x, True, True), "dim a numpy int": (x, np.int64(1), True), "dim a float": (x, 1.0, True),
        "dim huge": (x, 2**70, True), "normalized not a bool": (x, -1, 1), "numpy input": (x.numpy(), -1, True),
        "a list": ([1.0, 2.0], -1, True), "None": (None, -1, True), "a Parameter": (torch.nn.Parameter(x), -1, True),
        "requires grad": (x.clone().requires_grad_(), -1, True), "meta": (torch.empty(4, 8, device="meta"), -1, True),
        "sparse": (x.to_sparse(), -1, True), "NaN in x": (nan, -1, True),
        "misaligned": (torch.frombuffer(bytearray(40), dtype=torch.float32, offset=1, count=8), -1, True),
    }
    for what, args in declined.items():
        assert _direct(*args) is None, what
    # what the public function says about the rejected ones comes from its full path (the direct one declined)
    with pytest.raises(ValueError, match="not a power of two"):
        lc.fwht(_randn(4, 6))
    with pytest.raises(ValueError, match="NaN"):
        lc.fwht(nan)
    with pytest.raises(TypeError, match="dim must be an integer, got bool"):
        lc.fwht(x, dim=True)
    with pytest.raises(TypeError):
        _direct(x, -1)  # a wrong argument count is a programming error, not a decline
    torch.testing.assert_close(lc.fwht(x, dim=np.int64(1), normalized=1), lc.fwht(x))


@needs_direct
def test_fwht_direct_path_declines_in_every_traced_or_mode_context(monkeypatch):
    from torch._subclasses.fake_tensor import FakeTensorMode

    x = _randn(4, 8)
    with torch.device("meta"):  # a torch function mode: factory functions would not give CPU memory
        assert _direct(x, -1, True) is None
    with FakeTensorMode():
        assert _direct(x, -1, True) is None
    seen = []  # under a torch.func transform
    torch.func.vmap(lambda t: seen.append(_direct(t, -1, True)) or t)(x)
    assert seen == [None]
    with torch.no_grad():  # grad mode off: a requires-grad tensor is just a tensor
        assert _direct(x.clone().requires_grad_(), -1, True) is not None
    monkeypatch.setenv("LINALG_CORE_BACKEND", "reference")
    assert _direct(x, -1, True) is None
    monkeypatch.setenv("LINALG_CORE_BACKEND", "")
    assert _direct(x, -1, True) is not None


@needs_direct
def test_fwht_direct_path_follows_the_registry():
    """Used only while dispatch picks the backend that registered it: a change of the registry
    (here the cpu backend made unavailable) turns it off until dispatch picks it again."""
    x = _randn(2, 16)
    lc.fwht(x)
    assert _ops.fwht.direct is _direct
    cpu = _ops._AVAILABILITY["cpu"]
    try:
        _ops.declare_backend("cpu", lambda: "switched off by the test")
        assert torch.equal(lc.fwht(x), lc.fwht(x, backend="reference"))
        assert _ops.fwht.direct is _ops._no_direct
    finally:
        _ops.declare_backend("cpu", cpu)
    lc.fwht(x)
    assert _ops.fwht.direct is _direct


def _tensor(shape, dtype, transposed):
    t = torch.arange(math.prod(shape), dtype=torch.float64).reshape(shape).to(dtype)
    return t.transpose(0, -1) if transposed and t.dim() else t


@needs_direct
def test_fwht_direct_binding_takes_any_object():
    """Fuzzed: any arguments give a tensor or None, never an error or a crash (the sanitizer run
    of the suite covers it too)."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    objects = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(), st.text(max_size=3),
                        st.sampled_from([torch.float32, torch.strided, object(), [1, 2], (4,)]),
                        st.builds(_tensor, st.lists(st.integers(0, 5), max_size=3), st.sampled_from(
                                      [torch.float32, torch.float64, torch.float16, torch.bfloat16, torch.int8]),
                                  st.booleans()))

    @settings(max_examples=150, deadline=None, derandomize=True)
    @given(objects, objects, objects)
    def check(x, dim, normalized):
        y = _direct(x, dim, normalized)
        assert y is None or isinstance(y, torch.Tensor)

    check()


# --- the direct path of DGQLinear.forward -------------------------------------------------------------

_dgq_direct = getattr(lc._ext._C, "cpu_dgq_linear_direct", None) if lc._ext._C is not None else None


def _dgq_layer(K=256, N=8, bias=True):
    lin = torch.nn.Linear(K, N, bias=bias)
    with torch.no_grad():
        lin.weight.copy_(_randn(N, K))
        if bias:
            lin.bias.copy_(_randn(N))
    return lc.qmatmul.DGQLinear.from_linear(lin, search="rtn")


_dgq_plan = getattr(lc._ext._C, "cpu_dgq_linear_plan", None) if lc._ext._C is not None else None
needs_dgq_direct = pytest.mark.skipif(_dgq_direct is None, reason="linalg_core._C is not built")


def _plan(layer, **changes):
    """The direct path's plan of a layer's buffers (with some entries replaced)."""
    return _dgq_plan({**layer._buffers, **changes}, layer.group_size)


@needs_dgq_direct
def test_dgq_linear_direct_path_is_the_full_path_bit_for_bit(monkeypatch):
    for bias in (True, False):
        layer = _dgq_layer(bias=bias)
        plan = _plan(layer)
        assert plan is not None
        for shape in [(1, 256), (3, 256), (2, 5, 256), (256,)]:
            x = _randn(*shape)
            y = _dgq_direct(x, plan)
            assert y is not None and y.shape == (*shape[:-1], 8) and y.dtype == torch.float32
            with torch.no_grad():
                assert torch.equal(layer(x), y)
            monkeypatch.setenv("LINALG_CORE_DGQ_PATHS", "15")  # the direct binding declines: the full path
            assert _dgq_direct(x, plan) is None
            with torch.no_grad():
                assert torch.equal(layer(x), y), (bias, shape)
            monkeypatch.delenv("LINALG_CORE_DGQ_PATHS")


@needs_dgq_direct
def test_dgq_linear_direct_path_declines_everything_but_the_plain_case():
    layer = _dgq_layer()
    plan, x = _plan(layer), _randn(3, 256)
    nan = x.clone()
    nan[1, 7] = float("inf")
    declined = {"float16 x": x.half(), "float64 x": x.double(), "non-contiguous x": _randn(256, 3).t(),
                "Inf in x": nan, "x requires grad": x.clone().requires_grad_(),
                "K not 2 * qweight columns": _randn(3, 128), "numpy x": x.numpy(), "empty x": torch.empty(0, 256),
                "0-d x": torch.tensor(1.0), "a Parameter x": torch.nn.Parameter(x, requires_grad=False),
                "meta x": torch.empty(3, 256, device="meta")}
    for what, arg in declined.items():
        assert _dgq_direct(arg, plan) is None, what
    for what, bad in {"not a plan": object(), "a capsule of another name": torch.utils.dlpack.to_dlpack(x),
                      "None": None}.items():
        assert _dgq_direct(x, bad) is None, what
    q, z, gs, ws, b = (layer._buffers[k] for k in ("qweight", "zeros", "group_scales", "weight_sums", "bias"))
    refused = {"zeros of another shape": dict(zeros=z[:, :1]), "int8 zeros": dict(zeros=gs),
               "short weight_sums": dict(weight_sums=ws[:4]), "bias of another length": dict(bias=b[:3]),
               "float64 bias": dict(bias=b.double()), "non-contiguous qweight": dict(qweight=q.t()),
               "a missing entry": dict(qweight=None), "a numpy zeros": dict(zeros=z.numpy()),
               "meta qweight": dict(qweight=torch.empty(q.shape, dtype=torch.uint8, device="meta"))}
    for what, change in refused.items():
        assert _plan(layer, **change) is None, what
    for group in (64, 128.0, 384, 2**80, "128"):
        assert _dgq_plan(dict(layer._buffers), group) is None, group
    assert _dgq_plan(list(layer._buffers.values()), 128) is None
    with pytest.raises(ValueError, match="non-finite"), torch.no_grad():
        layer(nan)  # said by the full path
    with pytest.raises(TypeError):
        _dgq_direct(x)
    with pytest.raises(TypeError):
        _dgq_plan(layer._buffers)


@needs_dgq_direct
def test_dgq_linear_direct_plan_goes_stale_when_the_weights_change():
    """The plan answers False once a buffer is replaced, modified in place, given new data through
    `.data` (which keeps its version) or its storage is resized; the layer then validates its
    weights again and computes with the weights it now has."""
    x = _randn(2, 256)

    def fresh():
        layer = _dgq_layer()
        with torch.no_grad():
            layer(x), layer(x)
        return layer, layer.__dict__["_direct"]

    layer, plan = fresh()
    assert isinstance(_dgq_direct(x, plan), torch.Tensor)
    weights = ("qweight", "zeros", "group_scales", "weight_sums", "channel_scales")
    lin = torch.nn.Linear(256, 8)
    with torch.no_grad():
        lin.weight.copy_(_randn(8, 256) * 3)
        lin.bias.copy_(_randn(8) + 1)
    other = lc.qmatmul.DGQLinear.from_linear(lin, search="rtn")
    changes = {
        "bias replaced": lambda: setattr(layer, "bias", other.bias.clone()),
        "bias copied into": lambda: layer.bias.copy_(other.bias),
        "weights copied into": lambda: [layer._buffers[k].copy_(other._buffers[k]) for k in weights],
        "weights given new data": lambda: [setattr(layer._buffers[k], "data", other._buffers[k].clone())
                                           for k in weights],
        "bias removed": lambda: setattr(layer, "bias", None),
    }
    for what, change in changes.items():
        layer, plan = fresh()
        with torch.no_grad():
            change()
            assert _dgq_direct(x, plan) is False, what
            y = layer(x)  # validated again, a new plan
            assert layer.__dict__["_direct"] is not plan, what
            assert _dgq_direct(x, layer.__dict__["_direct"]) is not False, what
            ref = lc.qmatmul.DGQLinear(layer.weight, layer.bias)
            torch.testing.assert_close(y, ref(x), rtol=0, atol=0, msg=what)
    layer, plan = fresh()
    layer.zeros.untyped_storage().resize_(0)
    assert _dgq_direct(x, plan) is False
    with pytest.raises((ValueError, RuntimeError)), torch.no_grad():  # (torch's own: data not allocated)
        layer(x)
    for name, bad in {"zeros": lambda t: torch.full_like(t, 200), "weight_sums": lambda t: t + 1}.items():
        layer, plan = fresh()  # new data that fails validation is refused, not computed with
        with torch.no_grad():
            layer._buffers[name].data = bad(layer._buffers[name])
            with pytest.raises(ValueError, match=name):
                layer(x)


@needs_dgq_direct
def test_dgq_linear_plan_follows_the_registry():
    """Op.prepare, like Op.direct, is the cpu backend's while dispatch picks it; with the cpu backend
    switched off a layer makes no plan and takes the full path."""
    import copy

    x = _randn(2, 256)
    with torch.no_grad():
        layer = _dgq_layer()
        y = layer(x)
        assert _ops.dgq_linear.prepare is _dgq_plan and layer.__dict__["_direct"] is not None
        cpu, other = _ops._AVAILABILITY["cpu"], _dgq_layer()
        y_other = copy.deepcopy(other)(x)
        try:
            _ops.declare_backend("cpu", lambda: "switched off by the test")
            assert torch.equal(other(x), y_other) and torch.equal(other(x), y_other)
            assert other.__dict__["_direct"] is None and _ops.dgq_linear.prepare is _ops._no_direct
            assert torch.equal(layer(x), y)  # its plan from before: direct answers None, the full path runs
        finally:
            _ops.declare_backend("cpu", cpu)
        assert torch.equal(layer(x), y)
        assert _ops.dgq_linear.prepare(dict(layer._buffers), 128) is not None


@needs_dgq_direct
def test_dgq_linear_plan_releases_its_tensors():
    """The plan holds the buffers, their aliases and the buffer dict only while the layer (or
    whoever keeps the plan) lives: no reference leaks from the binding."""
    import gc
    import weakref

    layer, x = _dgq_layer(), _randn(2, 256)
    with torch.no_grad():
        for _ in range(3):
            layer(x)
    assert layer.__dict__.get("_direct") is not None
    refs = [weakref.ref(t) for t in layer._buffers.values() if t is not None]
    del layer
    gc.collect()
    assert all(r() is None for r in refs)
    for _ in range(100):  # plans made and dropped, stale ones included
        lay = _dgq_layer()
        plan = _dgq_plan(lay._buffers, lay.group_size)
        lay.bias = None
        assert _dgq_direct(x, plan) is False
    del lay, plan
    gc.collect()


@needs_dgq_direct
def test_dgq_linear_with_a_plan_copies_and_pickles():
    import copy
    import io
    import pickle

    layer, x = _dgq_layer(), _randn(2, 256)
    with torch.no_grad():
        y = layer(x)
        assert layer.__dict__.get("_direct") is not None
        for twin in (copy.deepcopy(layer), pickle.loads(pickle.dumps(layer))):
            assert torch.equal(twin(x), y) and torch.equal(twin(x), y)
        buf = io.BytesIO()
        torch.save(layer, buf)
        buf.seek(0)
        assert torch.equal(torch.load(buf, weights_only=False)(x), y)


@needs_dgq_direct
def test_dgq_linear_direct_binding_takes_any_object():
    from hypothesis import given, settings
    from hypothesis import strategies as st

    layer = _dgq_layer()
    names = ("qweight", "zeros", "group_scales", "weight_sums", "channel_scales", "bias")
    real = [_randn(2, 256), *(layer._buffers[k] for k in names), 128]
    junk = st.one_of(st.none(), st.integers(-2**70, 2**70), st.floats(), st.sampled_from([torch.int8, "x", (1,)]),
                     st.builds(_tensor, st.lists(st.integers(0, 4), max_size=3), st.sampled_from(
                         [torch.float32, torch.uint8, torch.int8, torch.int32]), st.booleans()))

    @settings(max_examples=150, deadline=None, derandomize=True)
    @given(st.lists(st.tuples(st.integers(0, 7), junk), max_size=3))
    def check(changes):
        args = list(real)
        for i, v in changes:
            args[i] = v
        plan = _dgq_plan(dict(zip(names, args[1:7])), args[7])
        assert plan is None or type(plan).__name__ == "PyCapsule"
        y = _dgq_direct(args[0], plan if plan is not None else args[1])
        assert y is None or isinstance(y, torch.Tensor)

    check()
