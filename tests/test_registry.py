"""Dispatch registry: priority order, forcing, reasons, environment override."""

import subprocess
import sys

import pytest
import torch

import linalg_core as lc
from linalg_core import _ops
from linalg_core._ext import _C

CPU_F32 = _ops.Key(torch.device("cpu"), torch.float32)


def test_every_op_has_a_reference_and_a_cpu_implementation():
    _ops.load_backends()
    assert set(_ops.OPS) >= {"fwht", "sparse_hash", "sparse_apply", "random_uint32", "random_fill"}
    for op in _ops.OPS.values():
        assert "reference" in op.impls
        if _C is not None:
            assert "cpu" in op.impls


@pytest.mark.skipif(_C is None, reason="_C not built")
def test_cpu_tensors_go_to_the_compiled_cpu_backend():
    assert _ops.fwht.select(CPU_F32).backend == "cpu"
    reasons = dict(lc.explain("fwht", "cpu", torch.float32))
    assert reasons["cpu"] is None and reasons["reference"] is None
    assert "cuda" in reasons["cuda"].lower() or "gpu" in reasons["cuda"].lower()
    assert reasons["triton"]  # never picked automatically for CPU tensors


def test_forcing_reference_and_unknown_backend():
    assert _ops.fwht.select(CPU_F32, backend="reference").backend == "reference"
    with pytest.raises(ValueError, match="backend='tpu'"):
        lc.fwht(torch.ones(4), backend="tpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU message")
def test_forcing_an_unavailable_backend_says_why():
    with pytest.raises(lc.BackendError, match="backend 'cuda'"):
        lc.fwht(torch.ones(4), backend="cuda")


def test_environment_variable_forces_a_backend(monkeypatch):
    monkeypatch.setenv("LINALG_CORE_BACKEND", "reference")
    assert _ops.fwht.select(CPU_F32).backend == "reference"
    monkeypatch.setenv("LINALG_CORE_BACKEND", "nonsense")
    with pytest.raises(ValueError, match="nonsense"):
        _ops.fwht.select(CPU_F32)


def test_explain_rejects_unknown_ops():
    with pytest.raises(ValueError, match="op='svd9'"):
        lc.explain("svd9")


def test_import_does_not_load_backends_or_initialise_cuda():
    code = (
        "import sys, linalg_core, torch; "
        "assert 'linalg_core.backends' not in sys.modules; "
        "assert 'triton' not in sys.modules; "
        "assert not torch.cuda.is_initialized(); print('ok')"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "ok", out.stderr


def test_first_dispatch_imports_only_its_family():
    # an rsvd dispatches random_fill (family random) and count_nonfinite (convert): the quant,
    # qmatmul, sketch and sampling kernels stay unimported until an op of theirs runs (or is
    # explained), and linalg_core.backends.availability() loads every family
    code = (
        "import sys, torch, linalg_core as lc; from linalg_core import _ops; "
        "lc.rsvd(torch.randn(64, 32), 4, seed=0); "
        "mods = {m.rsplit('.', 1)[-1] for m in sys.modules if m.startswith('linalg_core.backends.reference.')}; "
        "assert {'random', 'convert'} <= mods and not mods & {'quant', 'qmatmul', 'sketch', 'sampling'}, mods; "
        "assert 'reference' in _ops.fwht.explain(_ops.Key(torch.device('cpu'), torch.float32))[-1][0]; "
        "assert 'linalg_core.backends.reference.sketch' in sys.modules; "
        "assert 'linalg_core.backends.reference.quant' not in sys.modules; "
        "from linalg_core import backends; backends.availability('cpu'); "
        "assert 'linalg_core.backends.reference.quant' in sys.modules; print('ok')"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "ok", out.stderr


def test_info_command_reports_backends_and_cpu_features():
    out = subprocess.run([sys.executable, "-m", "linalg_core", "info"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    for word in ("linalg_core", "torch", "backends", "reference", "cpu", "cuda", "triton"):
        assert word in out.stdout
