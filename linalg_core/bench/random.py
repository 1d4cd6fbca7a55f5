"""random family, same run: the counter-based Philox4x32-10 fills (``random_uint32``,
``random_fill``) that generate every sketch and Ω, against the generators users would otherwise
call (``torch.randn`` / ``torch.randint`` with a seeded ``torch.Generator``), and against the
write floor: filling the same bytes with a constant (``Tensor.fill_`` into a kept buffer).

Ours are seekable (any block from (seed, stream, offset) without the rest) and identical on every
backend; torch's are neither, which is why the sketches use ours. The rows say what that costs.
"""

from __future__ import annotations

import torch

from linalg_core import random as lcr
from linalg_core.bench.harness import Report, measure


def run(report: Report, quick: bool = False):
    for n in ([1 << 20] if quick else [1 << 20, 1 << 24]):
        g = torch.Generator().manual_seed(0)
        floor = torch.empty(n)
        t_floor = measure(lambda: floor.fill_(0.5), repeats=9)
        cases = (
            ("normal float32", lambda: lcr.normal((n,), seed=0), lambda: torch.randn(n, generator=g)),
            ("rademacher float32", lambda: lcr.rademacher((n,), seed=0),
             lambda: torch.randint(0, 2, (n,), generator=g, dtype=torch.float32).mul_(2).sub_(1)),
            ("uint32 words", lambda: lcr.uint32(n, seed=0),
             lambda: torch.randint(0, 2**32, (n,), generator=g, dtype=torch.int64)),
        )
        for what, ours, theirs in cases:
            t_ours = measure(ours, repeats=9)
            t_torch = measure(theirs, repeats=9)
            report.add(case=f"{what}, n=2^{n.bit_length() - 1}", ours_ms=t_ours.median * 1e3, spread=t_ours.spread,
                       torch_ms=t_torch.median * 1e3, x_vs_torch=t_torch.median / t_ours.median,
                       floor_ms=t_floor.median * 1e3, x_floor=t_ours.median / t_floor.median)
    report.note("torch's uint32 row draws int64 (torch has no uint32 randint on the CPU). floor: fill_ of the same "
                "float32 bytes into a kept buffer; ours allocate their result (page faults included), as a caller does.")
