"""Quantization family, same run: the NF4 quantizer against bitsandbytes' CPU path (bit-exact
output checked), dequantization against the copy bandwidth and bitsandbytes, GGUF Q4_0/Q8_0
against the ``gguf`` package's numpy reference, relative errors of NF-k alone (QLoRA), LoftQ and
LQ at 2–4 bits on MiniLM-L6 and LLM-like matrices, budgets 2.5–4.25 bits with the MILP plan
against uniform formats, the allocator on a LLaMA-7B-sized instance, and the quality of
MiniLM-L6 on real English sentences (scikit-learn's dataset descriptions) compressed by
``compress_model`` and loaded, against ``quantize_`` with uniform formats (Pareto plots in
``quant.png``, drawn from the rows by :mod:`linalg_core.bench.plots` when matplotlib is installed).
"""

from __future__ import annotations

import time

import numpy as np
import torch

from linalg_core._ext import _C
from linalg_core.bench.harness import MINILM_MISSING, Report, measure, minilm_available, per_call, ratio
from linalg_core.quant import NormalFloat, allocate_bits, lq_decompose, quantize
from linalg_core.testing import llm_like, minilm_weights

TABLES = {  # kinds of comparison (Report.add sets each row's "table")
    "NF4 against bitsandbytes": {"case": "re:^NF4 "},
    "GGUF against gguf": {"case": "re:^GGUF "},
    "other formats: speed and error": {"case": "re:quantize / dequantize"},
    "LQ against LoftQ and plain NF": {"case": r"re:^(LLM-like|MiniLM-L6 \(\d+ of)"},
    "bit allocation": {"case": "re:^(MiniLM-L6 budget|allocator)"},
    "compressed-model quality": {"case": "re:^quality:"},
}


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
    gguf_codecs(report, quick)


def gguf_codecs(report: Report, quick: bool):
    """GGUF Q4_0 / Q8_0 of a 2048 x 4096 float32 matrix (also at --quick: the regime is the size),
    quantize and dequantize, against gguf.quants (numpy) and the copy floor, interleaved: each round
    times every function once, and the ratios are medians of same-round ratios."""
    gguf = _gguf()
    W = torch.randn(2048, 4096, generator=torch.Generator().manual_seed(0)) * 0.02
    Wn = W.numpy()
    rounds = 5 if quick else 9
    threads = f"{torch.get_num_threads()} torch / {_C.max_threads()} OpenMP"
    for kind in ("q4_0", "q8_0"):
        Q = quantize(W, kind)
        blocks = Q.data["blocks"]
        in_q, out_q = W.numel() * 4, blocks.numel()  # bytes read / written by quantize (dequantize: reversed)
        # the copy floor: torch copy_ moving the same bytes (reads (in + out)/2, writes (in + out)/2)
        # into a kept buffer; for dequantize() returning a new tensor, the new float32 tensor filled
        # (its page faults and writes, without reading the blocks)
        src = torch.randint(0, 255, ((in_q + out_q) // 2,), dtype=torch.uint8)
        dst = torch.empty_like(src)
        buf = torch.empty_like(W)
        fns = {"quantize": lambda kind=kind: quantize(W, kind),
               "dequantize": lambda Q=Q: Q.dequantize(torch.float32),
               "dequantize_out": lambda Q=Q: Q.dequantize(out=buf),
               "copy_kept": lambda: dst.copy_(src), "new_filled": lambda: torch.empty_like(W).fill_(1.0)}
        if gguf is not None:
            qt = getattr(gguf.GGMLQuantizationType, kind.upper())
            ref = gguf.quants.quantize(Wn, qt)
            fns["gguf_quantize"] = lambda qt=qt: gguf.quants.quantize(Wn, qt)
            fns["gguf_dequantize"] = lambda qt=qt, ref=ref: gguf.quants.dequantize(ref, qt)
        t = per_call(fns, number=1, rounds=rounds)
        r = t["rounds"]
        q_row = dict(case=f"GGUF {kind} quantize 2048x4096 fp32", linalg_core_ms=t["quantize"] / 1e3,
                     copy_ms=t["copy_kept"] / 1e3, vs_copy=ratio(r, "quantize", "copy_kept"), threads=threads)
        d_row = dict(case=f"GGUF {kind} dequantize 2048x4096 -> fp32", linalg_core_ms=t["dequantize"] / 1e3,
                     copy_ms=t["new_filled"] / 1e3, vs_copy=ratio(r, "dequantize", "new_filled"),
                     out_ms=t["dequantize_out"] / 1e3, out_copy_ms=t["copy_kept"] / 1e3,
                     out_vs_copy=ratio(r, "dequantize_out", "copy_kept"), threads=threads)
        if gguf is not None:
            q_row.update(baseline="gguf.quants.quantize (numpy)", baseline_ms=t["gguf_quantize"] / 1e3,
                         speedup=ratio(r, "gguf_quantize", "quantize"),
                         bit_exact=np.array_equal(blocks.numpy().reshape(ref.shape), ref))
            d_row.update(baseline="gguf.quants.dequantize (numpy)", baseline_ms=t["gguf_dequantize"] / 1e3,
                         speedup=ratio(r, "gguf_dequantize", "dequantize"),
                         bit_exact=np.array_equal(Q.dequantize().numpy(), gguf.quants.dequantize(ref, qt)))
        report.add(**q_row)
        report.add(**d_row)
    report.note("GGUF targets: >= 10x gguf.quants (numpy) both ways, within 3x of the copy floor (vs_copy) in the "
                "same rounds: torch copy_ moving the codec's bytes (input + output) into a kept buffer for quantize "
                "and dequantize(out=...) (out_vs_copy); for dequantize() returning a new float32 tensor, that "
                "tensor allocated and filled (its page faults and writes).")


def errors(report: Report, quick: bool):
    """Relative error ‖W − Ŵ‖/‖W‖ at 2, 3, 4 bits: NF-k alone (QLoRA), LoftQ (1 and 5 iterations,
    same format) and LQ (5 iterations), low-rank parts of the same rank."""
    sets = [("LLM-like 2048x2048, r=64", [llm_like(2048, 2048, seed=0)], 64)]
    if quick:
        sets = [("LLM-like 512x512, r=16", [llm_like(512, 512, seed=0)], 16)]
    if minilm_available():
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
    if _bnb() is None:
        report.note("bitsandbytes not available (pip install bitsandbytes): its NF4 columns are skipped")
    if _gguf() is None:
        report.note("gguf not installed (pip install gguf): its GGUF columns are skipped")
    codecs(report, quick)
    errors(report, quick)
    if not minilm_available():
        report.note(MINILM_MISSING + " (its LQ, bit allocation and quality rows)")
        return
    budgets(report, quick)
    missing = [m for m in ("sklearn", "transformers") if report.peer(m, what="the compressed-model quality rows")
               is None]
    if not missing:
        quality(report, quick)
    report.note("NF4 speed target: >= 20x bitsandbytes' CPU quantize_4bit (a torch fallback: bucketize over the "
                "whole tensor plus temporaries) at 4096^2 fp32, with bit-exact output in the same run.")
    report.note("Dequantize floor: bytes moved (packed codes + scales read, float32 written) at the copy rate of the "
                "same run: copy_GB_s for a fresh clone (new pages, as the default dequantize() returns), copy_out_GB_s "
                "for a copy into a kept buffer (dequantize(out=...)).")


# --- quality on real text ----------------------------------------------------------------------

_ENCODER = r"^encoder\.layer\.\d+\..*\.weight$"  # the 36 encoder matrices (no pooler, no embeddings)


def _sentences(count: int) -> list[str]:
    """Sentences of scikit-learn's bundled dataset descriptions (``sklearn/datasets/descr/*.rst``):
    prose lines only (no directives, field lists, tables, bullets, URLs), 6–40 words, every k-th
    of them so that all files contribute."""
    import pathlib
    import re

    import sklearn

    from linalg_core.quant.compress import prose_sentences

    descr = pathlib.Path(sklearn.__file__).parent / "datasets" / "descr"
    def prose(line: str) -> bool:
        s = line.strip()
        return bool(s and not s.startswith(("..", ":", "-", "*", "=", "|", "+", "#", "(", "http"))
                    and not re.fullmatch(r"[-=~^`'\"]+", s) and not line.startswith((" ", "\t")))

    def clean(p: str) -> str:  # roles (:ref:`x <y>`) and literals down to their text
        p = re.sub(r":[a-z]+:(?=`)", "", p)
        return re.sub(r"`+([^`<]*?)(?:\s*<[^>]*>)?`+_*", r"\1", p).replace("**", "")

    found = [s for path in sorted(descr.glob("*.rst"))
             for s in prose_sentences(path.read_text(encoding="utf-8"), prose, clean)
             if "http" not in s and "@" not in s]
    if len(found) < count:
        return found
    step = len(found) / count
    return [found[int(i * step)] for i in range(count)]


def _encode(model, batch):
    """(mean-pooled sentence embeddings (b, d), last hidden state with padding zeroed (b, t, d))."""
    with torch.no_grad():
        H = model(**batch).last_hidden_state.double()
    mask = batch["attention_mask"].unsqueeze(-1).double()
    H = H * mask
    return H.sum(1) / mask.sum(1), H


def _quality(model, batch, ref):
    E, H = _encode(model, batch)
    E0, H0 = ref
    cos = torch.nn.functional.cosine_similarity(E, E0, dim=1)
    return float(cos.mean()), float(cos.min()), float((H - H0).norm() / H0.norm())


def _from_compressed(out_dir, base):
    """The runnable model of a compress folder: ``quant.load_model`` when compress writes that
    layout (``quantization.json``), else ``base``'s copy with each weight replaced by
    Q.dequantize() + L1·L2 from ``load_compressed``. Returns (model, how)."""
    import copy
    import os

    from linalg_core import quant

    if os.path.exists(os.path.join(out_dir, "quantization.json")):
        return quant.load_model(out_dir).eval(), "quant.load_model"
    layers, _ = quant.load_compressed(out_dir)
    model = copy.deepcopy(base)
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, (Q, L1, L2) in layers.items():
            params[name].copy_(Q.dequantize(torch.float32) + L1.float() @ L2.float())
    return model, "load_compressed (dequantized + L1·L2 into a float copy)"


def _dominates(a, b) -> bool:
    """a at no more total bits than b, with at least b's mean cosine and at most its hidden-state error."""
    return (a["bits"] <= b["bits"] + 1e-9 and a["mean_cos"] >= b["mean_cos"]
            and a["hidden_rel_err"] <= b["hidden_rel_err"])


def quality(report: Report, quick: bool):
    """MiniLM-L6 on real English sentences (scikit-learn's dataset descriptions, MiniLM's own
    tokenizer): ``compress_model`` plans at 2.5–4.25 total bits and at each uniform format's own
    total, planned on the output error measured on other real text (``calibration``: the Python
    Language Reference's sentences), compressed, loaded and run, against ``quantize_`` with
    uniform formats (and, at the uniform totals, the plan on the weight error); quality of the
    mean-pooled embeddings and of the last hidden state against the float32 model, all in the
    same run."""
    import copy
    import os
    import tempfile

    from transformers import AutoTokenizer

    from linalg_core import quant
    from linalg_core.quant.compress import builtin_calibration_text, calibrate
    from linalg_core.testing.models import minilm_model, minilm_path

    sentences = _sentences(32 if quick else 96)
    folder = os.path.dirname(minilm_path())
    tok = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    batch = tok(sentences, padding=True, truncation=True, max_length=128, return_tensors="pt")
    batch = {k: v for k, v in batch.items() if k in ("input_ids", "attention_mask", "token_type_ids")}
    base = minilm_model()
    ref = _encode(base, batch)
    ntok = int(batch["attention_mask"].sum())
    include = r"^encoder\.layer\.0\..*\.weight$" if quick else _ENCODER
    layer_filter = ((lambda m, fqn: isinstance(m, torch.nn.Linear) and fqn.startswith("encoder.layer.0."))
                    if quick else (lambda m, fqn: isinstance(m, torch.nn.Linear) and fqn.startswith("encoder.")))
    rank = 16 if quick else 32
    cands = ["nf2", "nf3", "nf4"] if quick else None
    points, loaded_by = [], set()
    t0 = time.perf_counter()
    cal_text = builtin_calibration_text(32 if quick else 128)
    cal = calibrate(text=cal_text, probes=2)
    t_cal = time.perf_counter() - t0
    overlap = set(cal_text) & set(sentences)
    with tempfile.TemporaryDirectory(prefix="bench-quant-quality-") as tmp:
        for fmt in ("nf3", "nf4", "bnb-nf4", "q4_0", "int4"):
            model = copy.deepcopy(base)
            t0 = time.perf_counter()
            quant.quantize_(model, fmt, filter_fn=layer_filter)
            t_q = time.perf_counter() - t0
            mean_cos, min_cos, herr = _quality(model, batch, ref)
            points.append(dict(kind="uniform", name=fmt, bits=quant.model_bits_per_weight(model), mean_cos=mean_cos,
                               min_cos=min_cos, hidden_rel_err=herr, compress_s=t_q))

        def compress_at(budget, tag="", calibrated=True):
            out = os.path.join(tmp, f"b{budget}-{calibrated}")
            t0 = time.perf_counter()
            rep = quant.compress_model(budget=budget, rank=rank, out=out, include=include, candidates=cands,
                                       iters=2 if quick else 5, progress=False, calibration=cal if calibrated else None)
            t_compress = time.perf_counter() - t0
            t0 = time.perf_counter()
            model, how = _from_compressed(out, base)
            t_load = time.perf_counter() - t0
            loaded_by.add(how)
            bits = quant.model_bits_per_weight(model) if how == "quant.load_model" else rep.bits_per_weight_total
            mean_cos, min_cos, herr = _quality(model, batch, ref)
            points.append(dict(kind="plan" if calibrated else "plan-weight", name=f"plan {budget:.4g}", budget=budget,
                               tag=tag if calibrated else tag + " [weight error, no calibration]", bits=bits,
                               mean_cos=mean_cos, min_cos=min_cos, hidden_rel_err=herr, compress_s=t_compress,
                               load_s=t_load, formats=len({r.format for r in rep.layers}),
                               ranks="/".join(map(str, sorted({r.rank for r in rep.layers}))),
                               quantized_bits=rep.bits_per_weight))

        for budget in (2.5, 3.0, 3.5, 4.25):  # the issue's budgets
            compress_at(budget)
        # then, for each uniform format no plan point dominates yet, the plan at exactly that
        # format's own total (formats with the same total share one run), and the plan on the
        # weight error at the same budget for comparison
        matched = {}
        for u in [p for p in points if p["kind"] == "uniform"]:
            if not any(_dominates(p, u) for p in points if p["kind"] == "plan"):
                matched.setdefault(u["bits"], []).append(u["name"])
        for budget, names in sorted(matched.items()):
            tag = f" (= {'/'.join(names)}'s total)"
            compress_at(budget, tag)
            compress_at(budget, tag, calibrated=False)
    plan = [p for p in points if p["kind"] == "plan"]
    uniform = [p for p in points if p["kind"] == "uniform"]

    for p in plan + [p for p in points if p["kind"] == "plan-weight"]:
        report.add(case=f"quality: MiniLM-L6 compress, budget {p['budget']:.4g} bits total{p['tag']}",
                   total_bits=p["bits"], quantized_bits=p["quantized_bits"], formats=p["formats"], ranks=p["ranks"],
                   mean_cos=p["mean_cos"], min_cos=p["min_cos"], hidden_rel_err=p["hidden_rel_err"],
                   compress_s=p["compress_s"], load_s=p["load_s"],
                   beats_uniform=",".join(u["name"] for u in uniform if _dominates(p, u)) or "none")
    misses = []
    for u in uniform:
        by = [p["name"] for p in plan if _dominates(p, u)]
        if not by:
            fits = [p for p in plan if p["bits"] <= u["bits"] + 1e-9]
            best = max(fits, key=lambda p: p["mean_cos"]) if fits else None
            misses.append(f"{u['name']} ({u['bits']:.3f} bits: mean_cos {u['mean_cos']:.4f}, hidden_rel_err "
                          f"{u['hidden_rel_err']:.4f}; best plan at <= bits: " +
                          (f"{best['name']} at {best['bits']:.3f} bits, {best['mean_cos']:.4f} / "
                           f"{best['hidden_rel_err']:.4f})" if best else "none)"))
        report.add(case=f"quality: MiniLM-L6 quantize_ {u['name']} (uniform)", total_bits=u["bits"],
                   mean_cos=u["mean_cos"], min_cos=u["min_cos"], hidden_rel_err=u["hidden_rel_err"],
                   compress_s=u["compress_s"], dominated_by=",".join(by) or "none")
    from linalg_core.quant.compress import default_ranks

    scope = "encoder layer 0 (6 matrices)" if quick else "the 36 encoder matrices"
    report.note(f"quality rows, planner: compress_model(calibration=...) with statistics gathered in this run "
                f"({t_cal:.1f} s) on {cal.tokens} tokens of {cal.text} - "
                f"{'no' if not overlap else len(overlap)} sentence(s) shared with the evaluation sentences; 2 Gaussian "
                "probes of the last hidden state per batch. Each (format, rank) candidate's error is "
                "tr(diag(G) E A E^T): A = X^T X / tokens the layer's input Gram (GPTQ's layer objective, Frantar "
                "et al. 2022; AWQ, Lin et al. 2023), diag(G) its output-gradient second moment (K-FAC's output "
                "factor, Martens & Grosse 2015). "
                "Rows marked [weight error, no calibration] are the previous planner (squared weight error) at the "
                "same budgets.")
    report.note(f"quality rows: {len(sentences)} sentences of scikit-learn's dataset descriptions "
                f"(sklearn/datasets/descr/*.rst), {ntok} tokens with MiniLM-L6's own tokenizer; {scope} compressed "
                f"(compress_model, ranks {'/'.join(map(str, default_ranks(rank)))}, "
                f"{'nf2/nf3/nf4' if quick else 'default'} candidates, then loaded by {'; '.join(sorted(loaded_by))}) "
                "or quantized in place (quantize_), all in this run. Budgets 2.5 / 3 / 3.5 / 4.25, then one at exactly "
                "the total of each uniform format that none of those dominates. total_bits counts everything stored "
                "(codes, scales, scales of scales, bfloat16 factors); mean_cos / min_cos: cosine of the mean-pooled "
                "embeddings to the float32 model's; hidden_rel_err: ‖H − H_fp32‖_F / ‖H_fp32‖_F of the last hidden "
                "state over the non-padding positions. compress_s: compress_model's wall time (plan measurements, "
                "decompositions, write); for uniform rows quantize_'s. A plan point dominates a uniform row when it "
                "has <= total bits, >= mean_cos and <= hidden_rel_err (beats_uniform / dominated_by).")
    if misses:
        report.note("target (the plan dominates every uniform format at equal or fewer total bits): NOT met for "
                    + "; ".join(misses) + ". The planner minimises a sum of per-layer error estimates (second-order, "
                    "on calibration text); the embeddings' error is not exactly additive over layers.")
    else:
        report.note("target (the plan dominates every uniform format at equal or fewer total bits): met - every "
                    "uniform row has a plan point at <= total bits with >= mean cosine and <= hidden-state error.")
    report.note("Pareto plots (1 − mean cosine and hidden-state error vs total bits, plan points and uniform "
                "formats): quant.png, drawn from these rows by linalg_core.bench.plots.")
