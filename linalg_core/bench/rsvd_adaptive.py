"""rsvd's adaptive default (issue 20), a family of its own so that it runs in minutes:
``python -m linalg_core bench rsvd_adaptive``.

On flat, gapped, spiked and steeply decaying spectra (Haar U, V; sizes 1024–4096, r = 16–128) the
default ``lc.rsvd(A, r)`` against the cheapest ``torch.svd_lowrank`` setting and the best fixed
setting of our own (chosen with hindsight) that reach PEFT grade (residual within 0.2 % of the
optimal rank-r residual, each top-r σ within 1 %): ``linalg_core.bench.lowrank.bench_adaptive``.
"""

from __future__ import annotations

from linalg_core.bench import lowrank
from linalg_core.bench.harness import Report


def run(report: Report, quick: bool = False):
    lowrank.bench_adaptive(report, quick)
