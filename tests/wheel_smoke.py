"""Smoke test of an installed wheel (``make wheel-check`` runs it in a fresh venv, outside the
source tree; not collected by pytest).

Checks that linalg_core and its compiled ``_C`` are imported from the venv, not from a checkout;
that the metadata, LICENSE and ``py.typed`` were installed; that the compiled kernels compute
the same function as their float64 definitions (rsvd of a planted rank-8 matrix against the
exact SVD, the Walsh-Hadamard transform against the dense Sylvester matrix); that the
command line answers ``--version`` and ``info``; and that the benchmark suite runs from the
installed package (``bench --quick random --out DIR``: a labelled schema-2 results file) and
refuses ``--write`` there; and that a user's pytest-benchmark suite runs on the package's fixtures
(``-p linalg_core.testing.pytest_plugin``).
"""

from __future__ import annotations

import importlib.metadata
import pathlib
import subprocess
import sys
import sysconfig
import tempfile


def main() -> int:
    import torch

    import linalg_core as lc
    from linalg_core import _ext

    site = pathlib.Path(sysconfig.get_path("purelib")).resolve()
    pkg = pathlib.Path(lc.__file__).resolve().parent
    assert pkg.parent == site, f"linalg_core imported from {pkg}, not from this venv's {site}"
    c_file = pathlib.Path(_ext._C.__file__).resolve()
    assert c_file.parent == pkg, f"_C loaded from {c_file}, not from the installed package {pkg}"
    assert (pkg / "py.typed").is_file(), "py.typed missing from the installed package"

    dist = importlib.metadata.distribution("linalg_core")
    assert dist.version == lc.__version__, (dist.version, lc.__version__)
    assert dist.metadata["License-Expression"] == "Apache-2.0", dist.metadata["License-Expression"]
    licenses = [f for f in dist.files if f.name == "LICENSE"]
    assert licenses and "Apache License" in licenses[0].read_text(), "LICENSE missing from the wheel"

    g = torch.Generator().manual_seed(0)
    U, _ = torch.linalg.qr(torch.randn(300, 8, dtype=torch.float64, generator=g))
    V, _ = torch.linalg.qr(torch.randn(200, 8, dtype=torch.float64, generator=g))
    s = torch.logspace(0, -2, 8, dtype=torch.float64)
    A = (U * s) @ V.T
    svd = lc.rsvd(A, 8, seed=0)
    err = torch.linalg.norm(A - (svd.U * svd.S) @ svd.Vh) / torch.linalg.norm(A)
    assert err < 1e-10, f"rsvd of an exactly rank-8 matrix: relative error {err:.2e}"
    assert torch.allclose(svd.S, s, rtol=1e-10), (svd.S, s)

    x = torch.randn(5, 64, dtype=torch.float64, generator=g)
    H = torch.ones(1, 1, dtype=torch.float64)
    while H.shape[0] < 64:
        H = torch.cat([torch.cat([H, H], 1), torch.cat([H, -H], 1)], 0)
    y = lc.fwht(x, normalized=False)
    assert torch.allclose(y, x @ H.T, rtol=1e-12, atol=1e-12), "fwht differs from the Sylvester matrix"

    line = subprocess.run([sys.executable, "-m", "linalg_core", "--version"], check=True, capture_output=True,
                          text=True).stdout.strip()
    assert line == f"linalg_core {lc.__version__} (torch {torch.__version__})", line
    info = subprocess.run([sys.executable, "-m", "linalg_core", "info"], check=True, capture_output=True, text=True)
    assert "linalg_core" in info.stdout, info.stdout
    with tempfile.TemporaryDirectory(prefix="lc-wheel-bench-") as tmp:
        out = subprocess.run([sys.executable, "-m", "linalg_core", "bench", "--quick", "random", "--out", tmp],
                             capture_output=True, text=True, cwd=tmp, timeout=600)
        assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
        from linalg_core.bench.results import load_results

        doc = load_results(pathlib.Path(tmp) / "random.json")
        assert doc["schema"] == 2 and doc["quick"] is True and doc["rows"], doc
        assert all(r.get("quick") is True for r in doc["rows"])
        assert (pathlib.Path(tmp) / "summary.md").is_file()
        refused = subprocess.run([sys.executable, "-m", "linalg_core", "bench", "--write", "random"],
                                 capture_output=True, text=True, cwd=tmp, timeout=300)
        assert refused.returncode == 2 and "installed package" in refused.stderr, refused.stderr[-2000:]
        # a user's pytest-benchmark suite with the package's fixtures (the plugin, loaded with -p)
        suite = pathlib.Path(tmp) / "test_user_suite.py"
        suite.write_text("import linalg_core as lc\n\n"
                         "def test_rsvd_flat(benchmark, lowrank_matrix):\n"
                         "    benchmark(lc.rsvd, lowrank_matrix('flat', 256), 16, seed=0)\n")
        run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "linalg_core.testing.pytest_plugin",
                              "-p", "no:cacheprovider", "--benchmark-max-time=0.05", str(suite)],
                             capture_output=True, text=True, cwd=tmp, timeout=600)
        assert run.returncode == 0 and "test_rsvd_flat" in run.stdout and "1 passed" in run.stdout, \
            run.stdout[-3000:] + run.stderr[-2000:]
    print(f"wheel smoke test passed: {line}; linalg_core from {pkg}; rsvd error {err:.1e}; "
          f"bench --quick random: {len(doc['rows'])} rows")
    return 0


if __name__ == "__main__":
    sys.exit(main())
