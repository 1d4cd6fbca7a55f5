"""convert family, same run: the dtype conversions that also count non-finite entries in the
same pass (``convert`` / ``convert_into``, used for the bfloat16 copies of the low-rank
algorithms and the float32 blocks of 16-bit inputs) and the standalone count
(``count_nonfinite``), against what users would otherwise write: ``x.to(dtype)`` plus
``torch.isfinite(x).all()``, and against the copy floor (``copy_`` into a kept buffer of the
output dtype). And the low-rank update ``out = W − s·B·A`` of the adapter initialisers'
residuals (``lowrank_update``, one pass) against the GEMM path (float32: ``torch.addmm`` with
``out=``, a copy of W then a GEMM pass over it; bfloat16: ``addmm`` on a float32 copy, then the
conversion back), into a kept buffer and into new memory, with the copy of W into the same
buffer as the floor.
"""

from __future__ import annotations

import torch

from linalg_core import _ops
from linalg_core._arrays import cast, count_nonfinite
from linalg_core.bench.harness import Report, measure

TABLES = {  # kinds of comparison (Report.add sets each row's "table")
    "low-rank update W - s·B·A (adapter residuals)": {"case": "re:^residual"},
    "conversions and finiteness counts": {},
}

PAIRS = ((torch.float32, torch.bfloat16), (torch.bfloat16, torch.float32), (torch.float32, torch.float16),
         (torch.float16, torch.float32), (torch.float16, torch.bfloat16))  # the last: rsvd's copy of a float16 W


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

    _lowrank_update(report, quick)


def _lowrank_update(report: Report, quick: bool):
    """The residual rows: ours (the kernel) against the GEMM path, same buffers, same run."""
    from linalg_core.adapters.init import FUSED_MAX_RANK

    m, n = (2752, 1024) if quick else (11008, 4096)
    g = torch.Generator().manual_seed(0)
    for dtype in (torch.float32, torch.bfloat16, torch.float16):
        W = torch.randn(m, n, generator=g).to(dtype)
        for r in (16, FUSED_MAX_RANK, 64):
            B, A = torch.randn(m, r, generator=g) * 0.05, torch.randn(r, n, generator=g) * 0.05
            kept = torch.empty_like(W)

            def gemm(out):
                if dtype == torch.float32:
                    return torch.addmm(W, B, A, alpha=-1.0, out=out)
                return out.copy_(torch.addmm(W.float(), B, A, alpha=-1.0))

            for where, dest in (("kept buffer", lambda: kept), ("new memory", lambda: torch.empty_like(W))):
                t_ours = measure(lambda: _ops.lowrank_update(W, B, A, 1.0, dest(), backend="cpu"), repeats=7)
                t_gemm = measure(lambda: gemm(dest()), repeats=7)
                t_floor = measure(lambda: dest().copy_(W), repeats=7)
                ref = gemm(torch.empty_like(W)).double()
                _ops.lowrank_update(W, B, A, 1.0, kept, backend="cpu")
                err = float((kept.double() - ref).abs().max() / ref.abs().max())
                report.add(case=f"residual {str(dtype)[6:]} {m}x{n} r={r}, into {where}", ours_ms=t_ours.median * 1e3,
                           spread=t_ours.spread, gemm_path_ms=t_gemm.median * 1e3,
                           x_vs_gemm_path=t_gemm.median / t_ours.median, copy_floor_ms=t_floor.median * 1e3,
                           x_floor=t_ours.median / t_floor.median, max_rel_diff=err)
    report.note(f"residual rows: ours = lowrank_update (one pass: W read, out written once, float32 accumulation, one "
                f"rounding); gemm path = torch.addmm(W, B, A, out=...) for float32 (copies W into out, then a GEMM "
                f"pass reads and writes it), addmm on a float32 copy then conversion for bfloat16 and float16; copy "
                f"floor = out.copy_(W). The adapter initialisers take the kernel up to rank {FUSED_MAX_RANK} "
                f"(linalg_core.adapters.init.FUSED_MAX_RANK) on AVX-512 CPUs.")
    if quick:
        report.note("quick size: the residual rows do not show the full run's regime: an 11 MiB weight stays in "
                    "cache and the allocator hands back the pages it just freed, so 'new memory' is not new and the "
                    "rows time the arithmetic (the full run, 11008x4096, is memory- and page-fault-bound).")
