"""Quantization family, same run: the NF4 quantizer against bitsandbytes' CPU path (bit-exact
output checked), dequantization against the copy bandwidth and bitsandbytes, GGUF Q4_0/Q8_0
against the ``gguf`` package's numpy reference, relative errors of NF-k alone (QLoRA), LoftQ and
LQ at 2–4 bits on MiniLM-L6 and LLM-like matrices, budgets 2.5–4.25 bits with the MILP plan
against uniform formats, and the allocator on a LLaMA-7B-sized instance.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from linalg_core.quant import NormalFloat, allocate_bits, lq_decompose, quantize
from linalg_core.testing import llm_like, minilm_weights
from linalg_core.testing.bench import Report, measure


def _bnb():
    import logging

    logging.getLogger("bitsandbytes").setLevel(logging.ERROR)  # its optional-kernel notice
    try:
        import bitsandbytes.functional as F
    except Exception:
        return None
    return F


def _gguf():
    try:
        import gguf
    except ImportError:
        return None
    return gguf


def _rel(A, W):
    return float((A.double() - W.double()).norm() / W.double().norm())


def codecs(report: Report, quick: bool):
    F = _bnb()
    n = 2048 if quick else 4096
    W = torch.randn(n, n, generator=torch.Generator().manual_seed(0))
    for dtype in (torch.float32, torch.bfloat16):
        Wd = W.to(dtype)
        ours = measure(lambda Wd=Wd: quantize(Wd, "bnb-nf4"), repeats=9)
        row = dict(case=f"NF4 quantize {n}x{n} {str(dtype)[6:]} (double quant)", linalg_core_ms=ours.median * 1e3)
        if F is not None:
            theirs = measure(lambda Wd=Wd: F.quantize_4bit(Wd, quant_type="nf4", blocksize=64, compress_statistics=True),
                             repeats=5)
            q, st = F.quantize_4bit(Wd, quant_type="nf4", blocksize=64, compress_statistics=True)
            Q = quantize(Wd, "bnb-nf4")
            exact = torch.equal(Q.data["codes"], q.view(-1)) and torch.equal(Q.data["absmax"], st.absmax)
            row.update(baseline="bitsandbytes quantize_4bit", baseline_ms=theirs.median * 1e3,
                       speedup=theirs.median / ours.median, bit_exact=exact)
        report.add(**row)
    # dequantize: bytes moved / time, into a fresh tensor (like bitsandbytes) and into a kept buffer,
    # against float32 copies made the same two ways
    Q = quantize(W, "bnb-nf4")
    buf = torch.empty_like(W)
    ours = measure(lambda: Q.dequantize(torch.float32), repeats=9)
    kept = measure(lambda: Q.dequantize(out=buf), repeats=9)
    copy = measure(lambda: W.clone(), repeats=9)
    copy_kept = measure(lambda: buf.copy_(W), repeats=9)
    moved = W.numel() * 4 + Q.nbytes
    row = dict(case=f"NF4 dequantize {n}x{n} -> float32", linalg_core_ms=ours.median * 1e3,
               GB_s=moved / ours.median / 1e9, copy_GB_s=2 * W.numel() * 4 / copy.median / 1e9,
               out_ms=kept.median * 1e3, out_GB_s=moved / kept.median / 1e9,
               copy_out_GB_s=2 * W.numel() * 4 / copy_kept.median / 1e9)
    if F is not None:
        q, st = Q.to_bitsandbytes()
        theirs = measure(lambda: F.dequantize_4bit(q, st), repeats=9)
        row.update(baseline="bitsandbytes dequantize_4bit", baseline_ms=theirs.median * 1e3,
                   speedup=theirs.median / ours.median, bit_exact=torch.equal(F.dequantize_4bit(q, st), Q.dequantize()))
    report.add(**row)
    for fmt in ("nf3", "nf2", "int4", "int4-asym"):
        t = measure(lambda fmt=fmt: quantize(W, fmt), repeats=5)
        Qf = quantize(W, fmt)
        d = measure(lambda Qf=Qf: Qf.dequantize(torch.float32), repeats=5)
        report.add(case=f"{Qf.format} quantize / dequantize {n}x{n}", linalg_core_ms=t.median * 1e3,
                   dequant_ms=d.median * 1e3, bits=Qf.bits_per_param, rel_err=_rel(Qf.dequantize(), W))
    gguf = _gguf()
    Wn = W[: n // 4].numpy()
    for kind in ("q4_0", "q8_0"):
        ours = measure(lambda kind=kind: quantize(W[: n // 4], kind), repeats=5)
        row = dict(case=f"GGUF {kind} quantize {n // 4}x{n}", linalg_core_ms=ours.median * 1e3)
        if gguf is not None:
            qt = getattr(gguf.GGMLQuantizationType, kind.upper())
            theirs = measure(lambda qt=qt: gguf.quants.quantize(Wn, qt), repeats=3)
            ref = gguf.quants.quantize(Wn, qt)
            exact = np.array_equal(quantize(W[: n // 4], kind).data["blocks"].numpy().reshape(ref.shape), ref)
            row.update(baseline="gguf.quants.quantize (numpy)", baseline_ms=theirs.median * 1e3,
                       speedup=theirs.median / ours.median, bit_exact=exact)
        report.add(**row)


def errors(report: Report, quick: bool):
    """Relative error ‖W − Ŵ‖/‖W‖ at 2, 3, 4 bits: NF-k alone (QLoRA), LoftQ (1 and 5 iterations,
    same format) and LQ (5 iterations), low-rank parts of the same rank."""
    sets = [("LLM-like 2048x2048, r=64", [llm_like(2048, 2048, seed=0)], 64)]
    if quick:
        sets = [("LLM-like 512x512, r=16", [llm_like(512, 512, seed=0)], 16)]
    mini = minilm_weights()
    names = sorted(mini)[:: (12 if quick else 3)]
    sets.append((f"MiniLM-L6 ({len(names)} of {len(mini)} matrices), r=32", [mini[k] for k in names], 32))
    for label, mats, r in sets:
        for bits in (2, 3, 4):
            fmt = NormalFloat(bits=bits)
            acc = {"nf": [0.0, 0.0], "loftq1": [0.0, 0.0], "loftq5": [0.0, 0.0], "lq": [0.0, 0.0]}
            norm2 = sum(float(W.double().square().sum()) for W in mats)
            for W in mats:
                t0 = time.perf_counter()
                e = float((quantize(W, fmt).dequantize(torch.float64) - W.double()).square().sum())
                acc["nf"][0] += e
                acc["nf"][1] += time.perf_counter() - t0
                for key, kw in (("loftq1", dict(init="quant", iters=1)), ("loftq5", dict(init="quant", iters=5)),
                                ("lq", dict(iters=5))):
                    t0 = time.perf_counter()
                    res = lq_decompose(W, r, fmt, seed=0, tol=0.0, **kw)
                    acc[key][1] += time.perf_counter() - t0
                    acc[key][0] += res.error**2 * float(W.double().square().sum())
            report.add(case=f"{label}, {fmt}", bits=fmt.nominal_bits(),
                       nf_rel_err=(acc["nf"][0] / norm2) ** 0.5, loftq1_rel_err=(acc["loftq1"][0] / norm2) ** 0.5,
                       loftq5_rel_err=(acc["loftq5"][0] / norm2) ** 0.5, lq_rel_err=(acc["lq"][0] / norm2) ** 0.5,
                       lq_s=acc["lq"][1], loftq5_s=acc["loftq5"][1])


def budgets(report: Report, quick: bool):
    """Whole MiniLM-L6 (36 encoder matrices), r = 32: the MILP plan at each budget against the
    best uniform NF-k configuration that fits the same budget (both with LQ, 2 iterations)."""
    mini = minilm_weights()
    if quick:
        mini = dict(list(mini.items())[:6])
    cands = [NormalFloat(bits=b, block_size=B0) for b in (2, 3, 4, 8) for B0 in (16, 32, 64, 128)]
    t0 = time.perf_counter()
    from linalg_core.quant.allocate import candidate_errors

    E = candidate_errors(mini, cands, rank=32, iters=2, progress=False)
    t_err = time.perf_counter() - t0
    sizes = np.array([W.numel() for W in mini.values()], float)
    norm2 = sum(float(W.double().square().sum()) for W in mini.values())
    bits = np.array([c.nominal_bits() for c in cands])
    for budget in (2.5, 3.0, 3.5, 4.25):
        plan = allocate_bits(mini, budget, candidates=cands, errors=E)
        fits = [j for j in range(len(cands)) if bits[j] <= budget]
        j = min(fits, key=lambda j: E[:, j].sum())
        report.add(case=f"MiniLM-L6 budget {budget} bits, LQ r=32", bits=plan.bits_per_param,
                   plan_rel_err=(plan.predicted_error / norm2) ** 0.5, uniform=str(cands[j]),
                   uniform_bits=float(bits[j]), uniform_rel_err=(E[:, j].sum() / norm2) ** 0.5,
                   solve_ms=plan.solve_seconds * 1e3)
    report.note(f"candidate errors for the budget rows: {len(mini)} matrices x {len(cands)} formats, LQ r=32 with 2 "
                f"iterations each, {t_err:.1f} s; sizes {sorted(set(sizes.astype(int).tolist()))}")
    # LLaMA-7B-sized allocation: 224 matrices x LQ-LoRA's 432 configurations, synthetic error table
    rng = np.random.default_rng(0)
    grid = [NormalFloat(bits=b, block_size=B0, scale_bits=b0, scale_block_size=B1, scale_dtype=d)
            for b in (2, 3, 4, 8) for b0 in (2, 3, 4, 8) for d in ("fp32", "bf16", "fp16") for B0 in (16, 32, 64)
            for B1 in (16, 64, 256)]

    class _Shape:
        def __init__(self, shape):
            self.shape = shape

    shapes = [(4096, 4096)] * (4 * 32) + [(11008, 4096)] * (3 * 32)
    mats = {f"m{i}": _Shape(s) for i, s in enumerate(shapes)}
    gb = np.array([c.nominal_bits() for c in grid])
    E7 = rng.lognormal(0, 1, (len(shapes), 1)) * 2.0 ** (-2 * gb)[None, :] * rng.uniform(0.8, 1.2, (len(shapes), len(grid)))
    t0 = time.perf_counter()
    plan = allocate_bits(mats, 3.0, candidates=grid, errors=E7)
    report.add(case="allocator, LLaMA-7B-sized: 224 matrices x 432 configs, budget 3.0",
               bits=plan.bits_per_param, kept_configs=plan.candidates_kept, solve_ms=plan.solve_seconds * 1e3,
               total_ms=(time.perf_counter() - t0) * 1e3)


def run(report: Report, quick: bool = False):
    codecs(report, quick)
    errors(report, quick)
    budgets(report, quick)
    report.note("NF4 speed target: >= 20x bitsandbytes' CPU quantize_4bit (a torch fallback: bucketize over the "
                "whole tensor plus temporaries) at 4096^2 fp32, with bit-exact output in the same run.")
    report.note("Dequantize floor: bytes moved (packed codes + scales read, float32 written) at the copy rate of the "
                "same run: copy_GB_s for a fresh clone (new pages, as the default dequantize() returns), copy_out_GB_s "
                "for a copy into a kept buffer (dequantize(out=...)).")
