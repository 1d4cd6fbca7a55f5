"""Sketching headlines (``bench sketch``): FWHT of a 2¹⁶ × 256 float32 matrix along rows (against
the dense product with H) and along columns (against a numpy butterfly), SRHT / CountSketch /
Gaussian sketches of a 2¹⁷ × 64 Gaussian matrix to 1024 rows (against torch.matmul with a
pre-generated G, torch.randn + matmul and scipy's clarkson_woodruff_transform), and the per-call
cost of fwht on a 1 × 256 vector (against torch's ``x + 1`` and ``x @ H``). Quick: 2¹² × 256 and
2¹³ × 16 → 128, the family's --quick sizes."""

import math

import numpy as np
import pytest
import scipy.linalg
import torch

import linalg_core as lc
from linalg_core.bench.sketch import numpy_fwht


def _hadamard(n):
    return torch.from_numpy(scipy.linalg.hadamard(n).astype(np.float32)) / math.sqrt(n)


@pytest.fixture(scope="module")
def fwht_input(quick):
    rows, cols = (2**12, 256) if quick else (2**16, 256)
    return torch.randn(rows, cols, generator=torch.Generator().manual_seed(0))


FWHT_CASES = [(-1, "linalg_core.fwht out=preallocated"), (-1, "linalg_core.fwht (new output)"), (-1, "dense x @ H"),
              (0, "linalg_core.fwht out=preallocated"), (0, "linalg_core.fwht (new output)"), (0, "numpy butterfly")]


@pytest.mark.parametrize("dim, impl", FWHT_CASES, ids=[f"dim{d}-{i}" for d, i in FWHT_CASES])
def test_fwht(benchmark, timed, fwht_input, dim, impl):
    x = fwht_input
    group = f"fwht {x.shape[0]}x{x.shape[1]} fp32 dim={dim}"
    if impl == "linalg_core.fwht out=preallocated":
        out = torch.empty_like(x)
        y = timed(lambda: lc.fwht(x, dim=dim, out=out), rounds=15, group=group)
    elif impl == "linalg_core.fwht (new output)":
        y = timed(lambda: lc.fwht(x, dim=dim), rounds=15, group=group)
    elif impl == "dense x @ H":
        H = _hadamard(x.shape[1])
        y = timed(lambda: x @ H, rounds=7, group=group)
    else:
        xn = x.numpy()
        y = torch.from_numpy(np.ascontiguousarray(timed(lambda: numpy_fwht(xn, dim), rounds=3, group=group)))
    err = float((y.double() - lc.fwht(x.double(), dim=dim)).abs().max())
    benchmark.extra_info["max_err"] = err
    assert err < 1e-4


SKETCHES = ["linalg_core.srht", "linalg_core.countsketch", "linalg_core.gaussian", "torch.matmul(G, A), G given",
            "torch.randn(m, n) + matmul", "scipy clarkson_woodruff_transform"]


@pytest.mark.parametrize("impl", SKETCHES)
def test_sketch_tall(benchmark, timed, seeded_problem, quick, impl):
    n, d, m = (2**13, 16, 128) if quick else (2**17, 64, 1024)
    A, m, Q = seeded_problem("sketch", n, d, m)
    group = f"sketch gaussian {n}x{d} -> {m}"
    if impl.startswith("linalg_core"):
        S = lc.sketch.create(impl.split(".")[1], m, n, seed=0)
        S.apply(A)  # builds the cached signs / rows / hash, as the bench does
        timed(lambda: S.apply(A), rounds=3 if "gaussian" in impl else 7, group=group)
        benchmark.extra_info["distortion"] = lc.distortion(S, Q)
    elif impl == "torch.matmul(G, A), G given":
        G = torch.randn(m, n, generator=torch.Generator().manual_seed(0))
        timed(lambda: G @ A, rounds=3, group=group)
        sv = torch.linalg.svdvals(G.double() @ Q / math.sqrt(m))
        benchmark.extra_info["distortion"] = float(torch.maximum(sv.max() - 1, 1 - sv.min()))
    elif impl == "torch.randn(m, n) + matmul":
        g = torch.Generator().manual_seed(0)
        timed(lambda: torch.randn(m, n, generator=g) @ A, rounds=3, group=group)
    else:
        An = A.numpy()
        timed(lambda: scipy.linalg.clarkson_woodruff_transform(An, m, seed=0), rounds=3, group=group)


PER_CALL = ["linalg_core.fwht (eager)", "torch x + 1", "x @ H (dense Hadamard)"]


@pytest.mark.parametrize("impl", PER_CALL)
def test_per_call_fwht_1x256(benchmark, impl):
    """Microseconds per call: pytest-benchmark's calibrated loops (the bench: interleaved rounds)."""
    x = torch.randn(1, 256)
    benchmark.group = "per call: 1x256"
    if impl == "linalg_core.fwht (eager)":
        lc.fwht(x)
        benchmark(lc.fwht, x)
    elif impl == "torch x + 1":
        benchmark(torch.add, x, 1)
    else:
        H = _hadamard(256)
        benchmark(torch.matmul, x, H)
