"""rsvd's adaptive default (issue 20), a family of its own so that it runs in minutes:
``python -m linalg_core bench rsvd_adaptive``.

On flat, gapped, spiked and steeply decaying spectra (Haar U, V; sizes 1024–4096, r = 16–128) the
default ``lc.rsvd(A, r)`` against the cheapest ``torch.svd_lowrank`` setting and the best fixed
setting of our own (chosen with hindsight) that reach PEFT grade (residual within 0.2 % of the
optimal rank-r residual, each top-r σ within 1 %): ``bench_lowrank.bench_adaptive``.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from linalg_core.testing.bench import Report


def _lowrank():
    path = Path(__file__).with_name("bench_lowrank.py")
    spec = importlib.util.spec_from_file_location("linalg_core_bench_lowrank", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run(report: Report, quick: bool = False):
    _lowrank().bench_adaptive(report, quick)
