"""Least-squares headlines (``bench regression``): sketch-and-precondition (SRHT, direct inner
solve) against numpy.linalg.lstsq (gelsd) and torch.linalg.lstsq (gelsy) on planted float64
problems b = A x* + r, r ⟂ range(A), ‖r‖ = ‖A x*‖: 2²⁰ × 256 and 2¹⁷ × 64 (quick: 2¹⁴ × 256 and
2¹⁴ × 64). One round without warm-up where n·d ≥ 2²⁶ (a 2 GiB matrix), else 3 after one, as the
bench does."""

import numpy as np
import pytest
import torch

import linalg_core as lc

IMPLS = ["linalg_core sketch_and_precondition (srht, direct)", "numpy.linalg.lstsq (gelsd)",
         "torch.linalg.lstsq (gelsy)"]


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("size", ["2^20x256", "2^17x64"])
def test_lstsq(benchmark, timed, seeded_problem, quick, size, impl):
    log_n, d = {"2^20x256": (20, 256), "2^17x64": (17, 64)}[size]
    n = 1 << (14 if quick else log_n)
    A, b, x_star = seeded_problem("lstsq", n, d)
    big = n * d >= (1 << 26)
    if impl.startswith("linalg_core"):
        fn = lambda: lc.regression.lstsq(A, b, seed=0).x  # noqa: E731
    elif impl.startswith("numpy"):
        An, bn = A.numpy(), b.numpy()
        fn = lambda: torch.from_numpy(np.linalg.lstsq(An, bn, rcond=None)[0])  # noqa: E731
    else:
        fn = lambda: torch.linalg.lstsq(A, b[:, None]).solution[:, 0]  # noqa: E731
    x = timed(fn, rounds=1 if big else 3, warmup=0 if big else 1, group=f"lstsq n=2^{n.bit_length() - 1} d={d}")
    err = float(torch.linalg.vector_norm(x - x_star) / torch.linalg.vector_norm(x_star))
    benchmark.extra_info["forward_error"] = err
    assert err < 1e-6
