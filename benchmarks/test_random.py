"""random and convert headlines (``bench random``, ``bench convert``): Philox4x32 normal and
Rademacher fills of 2²⁴ float32 against torch.randn / torch.randint with a seeded generator, and
float32 → bfloat16 with the non-finite count in the same pass against ``x.to`` plus
``isfinite().all()`` (quick: 2²⁰ and 2²² entries), 9 rounds after one warm-up."""

import pytest
import torch

from linalg_core import random as lcr
from linalg_core._arrays import cast


@pytest.mark.parametrize("impl", ["linalg_core", "torch"])
@pytest.mark.parametrize("what", ["normal float32", "rademacher float32"])
def test_fill(timed, quick, what, impl):
    n = 1 << (20 if quick else 24)
    g = torch.Generator().manual_seed(0)
    if what == "normal float32":
        fn = (lambda: lcr.normal((n,), seed=0)) if impl == "linalg_core" else (lambda: torch.randn(n, generator=g))
    elif impl == "linalg_core":
        fn = lambda: lcr.rademacher((n,), seed=0)  # noqa: E731
    else:
        fn = lambda: torch.randint(0, 2, (n,), generator=g, dtype=torch.float32).mul_(2).sub_(1)  # noqa: E731
    out = timed(fn, rounds=9, group=f"{what}, n=2^{n.bit_length() - 1}")
    assert out.shape == (n,) and out.dtype == torch.float32


@pytest.mark.parametrize("impl", ["linalg_core cast + count", "torch copy_ + isfinite().all()"])
def test_convert_float32_to_bfloat16(benchmark, timed, quick, impl):
    n = 1 << (22 if quick else 24)
    x = torch.randn(n)
    out = torch.empty(n, dtype=torch.bfloat16)
    if impl.startswith("linalg_core"):
        fn = lambda: cast(x, torch.bfloat16, out=out)  # noqa: E731
    else:
        fn = lambda: (out.copy_(x), int(not bool(torch.isfinite(x).all())))  # noqa: E731
    _, bad = timed(fn, rounds=9, group=f"float32 -> bfloat16, n=2^{n.bit_length() - 1}")
    benchmark.extra_info["bit_identical"] = torch.equal(out, x.to(torch.bfloat16))
    assert bad == 0 and benchmark.extra_info["bit_identical"]
