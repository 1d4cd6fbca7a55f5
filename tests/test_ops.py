"""The kernel-level ops as torch custom ops: ``torch.library.opcheck`` on every op (schema, fake
kernel against the real one, autograd registration, AOT dispatch) with sample inputs for every
backend that runs here, and the registry's one-way import structure."""

from __future__ import annotations

import ast
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
    if name == "dgq_matmul":
        x, w = _dgq()
        args = (x, w.qweight, w.zeros, w.group_scales, w.weight_sums, w.group_size)
        return [args + (None, None), args + (torch.rand(3, generator=g), w.channel_scales)]
    if name == "dgq_linear":
        _, w = _dgq()
        args = (_randn(3, 256), w.qweight, w.zeros, w.group_scales, w.weight_sums, w.channel_scales)
        return [args + (None, w.group_size), args + (_randn(8), w.group_size),
                (_randn(2, 256, dtype=torch.bfloat16),) + args[1:] + (None, w.group_size)]
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
