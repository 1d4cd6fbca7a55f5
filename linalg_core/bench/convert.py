"""convert family, same run: the dtype conversions that also count non-finite entries in the
same pass (``convert`` / ``convert_into``, used for the bfloat16 copies of the low-rank
algorithms and the float32 blocks of 16-bit inputs) and the standalone count
(``count_nonfinite``), against what users would otherwise write: ``x.to(dtype)`` plus
``torch.isfinite(x).all()``, and against the copy floor (``copy_`` into a kept buffer of the
output dtype).
"""

from __future__ import annotations

import torch

from linalg_core._arrays import cast, count_nonfinite
from linalg_core.bench.harness import Report, measure

PAIRS = ((torch.float32, torch.bfloat16), (torch.bfloat16, torch.float32), (torch.float32, torch.float16),
         (torch.float16, torch.float32))


def run(report: Report, quick: bool = False):
    n = 1 << (22 if quick else 24)
    for src, dst in PAIRS:
        x = torch.randn(n).to(src)
        out = torch.empty(n, dtype=dst)
        t_ours = measure(lambda: cast(x, dst, out=out), repeats=9)
        t_torch = measure(lambda: (out.copy_(x), bool(torch.isfinite(x).all())), repeats=9)
        t_floor = measure(lambda: out.copy_(x), repeats=9)
        same = torch.equal(cast(x, dst)[0], x.to(dst))
        report.add(case=f"{str(src)[6:]} -> {str(dst)[6:]}, n=2^{n.bit_length() - 1}", ours_ms=t_ours.median * 1e3,
                   spread=t_ours.spread, torch_cast_and_check_ms=t_torch.median * 1e3,
                   x_vs_torch=t_torch.median / t_ours.median, copy_floor_ms=t_floor.median * 1e3,
                   x_floor=t_ours.median / t_floor.median, bit_identical=same)
    x = torch.randn(n)
    t_ours = measure(lambda: count_nonfinite(x), repeats=9)
    t_torch = measure(lambda: int((~torch.isfinite(x)).sum()), repeats=9)
    report.add(case=f"count non-finite float32, n=2^{n.bit_length() - 1}", ours_ms=t_ours.median * 1e3,
               spread=t_ours.spread, torch_cast_and_check_ms=t_torch.median * 1e3,
               x_vs_torch=t_torch.median / t_ours.median)
    report.note("ours: one pass that converts and counts NaN/Inf (into a kept output buffer); torch: copy_ into the same "
                "buffer plus isfinite(x).all(); copy floor: copy_ alone (torch's conversion, no check).")
