"""Adapter family: whole-model initialisation through Hugging Face peft, same run.

peft's own initialisers (``get_peft_model`` with ``init_lora_weights="pissa"`` (full SVD),
``"pissa_niter_4"`` (``torch.svd_lowrank(q=r, niter=4)``), ``"olora"`` (full QR), and
``initialize_lora_eva_weights``) against ``get_peft_model(init_lora_weights=True)`` followed
by :func:`linalg_core.adapters.init_peft_model`. Both timings include wrapping the model; the
model copy is made before the clock starts. Models: the real MiniLM-L6 encoder (36 Linear
layers, 384²/1536×384/384×1536) and a synthetic LLaMA-7B-shaped layer set (two 4096 × 4096 and
one 11008 × 4096, flat spectra σ_i = i^-0.3), in float32 and bfloat16.

Paired rounds (``_paired_ratios``) time both sides back to back on fresh copies, end to end and
on the initialisation alone: peft's own ``pissa_init`` / ``olora_init`` calls timed inside its
``get_peft_model`` against ``init_peft_model`` on the wrapped model (peft's wrap, 35-45 ms on
MiniLM-L6, is the same work on both sides).

From a file, as users run it (``_from_file``): each side in a fresh Python process that loads the
model memory-mapped — MiniLM-L6 with ``transformers.AutoModel.from_pretrained``, the LLaMA-7B-shaped
set saved once to a safetensors file and loaded with ``safetensors.torch.load_file`` (both map the
file copy-on-write), and MiniLM-L6 once more converted to bfloat16 as it loads
(``from_pretrained(dtype=torch.bfloat16)``, as most users load a model to fine-tune: the
weights are then the process's own memory) — and times its first ``get_peft_model`` (+
``init_peft_model``) call;
interleaved rounds, per-round ratios. A third side in the same rounds is the floor of a
straightforward implementation: ours' algorithm and settings in bare torch, no library
(``_bare_init``: the same wrap, stacked bfloat16 subspace iteration or OLoRA's QR of r columns,
``addmm`` residuals into fresh tensors), first call in a fresh process like the others. One more
process profiles ours (wrap, rsvd, residual writes) and measures the floor of writing the
residuals: their bytes copied into fresh pages, against writing them in place into the mapping
(a copy-on-write fault per 4 KiB page).

Accuracy of PiSSA: captured energy ‖s·BA‖_F / ‖W_r‖_F of the optimal rank-r part (1 is the
best possible), and the median / max principal-angle sine between range(B) and the top-r left
singular subspace (float64 SVD).
"""

from __future__ import annotations

import contextlib
import copy

import numpy as np
import torch

import linalg_core as lc
from linalg_core.bench.harness import MINILM_MISSING, Report, measure, minilm_available

TABLES = {  # kinds of comparison (Report.add sets each row's "table")
    "from its file: fresh process, first call": {"model": "re:from its file"},
    "EVA against peft": {"model": "re:EVA"},
    "whole-model initialisation in process, against peft": {},
}

# MiniLM-L6 loaded with from_pretrained(dtype=torch.bfloat16), as most users load a model to fine-tune
MINILM_BF16 = "MiniLM-L6 (36 Linear layers) bfloat16 (from_pretrained(dtype=torch.bfloat16))"

TARGETS = ["query", "key", "value", "attention.output.dense", "intermediate.dense", "output.dense"]


class LayerSet(torch.nn.Module):
    """Linear layers that are never called: a stand-in for a model's weight set."""

    def __init__(self, mats):
        super().__init__()
        self.layers = torch.nn.ModuleList()
        for W in mats:
            lin = torch.nn.Linear(W.shape[1], W.shape[0], bias=False, dtype=W.dtype)
            lin.weight.data = W
            self.layers.append(lin)


def _cast(model, dtype):
    """A copy of ``model`` in ``dtype`` (the weights a from_pretrained(dtype=...) load holds)."""
    return copy.deepcopy(model).to(dtype)


def llama_set(quick, dtype):
    g = torch.Generator().manual_seed(0)
    n, wide = (512, 1376) if quick else (4096, 11008)
    mats = []
    for shape in ((n, n), (n, n), (wide, n)):
        U = torch.linalg.qr(torch.randn(shape[0], n, generator=g))[0]
        V = torch.linalg.qr(torch.randn(shape[1], n, generator=g))[0]
        mats.append(((U * (torch.arange(n) + 1.0) ** -0.3) @ V.T).to(dtype))
    return f"LLaMA-7B-shaped set ({n}x{n} x2, {wide}x{n}) {str(dtype)[6:]}", LayerSet(mats), ["layers.0", "layers.1",
                                                                                               "layers.2"]


def models(quick, report=None):
    if not minilm_available():
        if report is not None:
            report.note(MINILM_MISSING)
    elif report is not None and report.peer("transformers", what="the MiniLM-L6 rows") is None:
        pass
    else:
        from linalg_core.testing.models import minilm_model

        yield "MiniLM-L6 (36 Linear layers) float32", minilm_model(), TARGETS
    yield llama_set(quick, torch.float32)
    yield llama_set(quick, torch.bfloat16)


def lora_layers(model):
    return {n: m for n, m in model.named_modules() if hasattr(m, "lora_A") and "default" in m.lora_A}


def adapter_norm(module) -> float:
    """‖s·BA‖_F of a LoRA layer's adapter, from the r × r Grams (BᵀB)(AAᵀ) in float64."""
    A, B = module.lora_A["default"].weight.detach().double(), module.lora_B["default"].weight.detach().double()
    return float(module.scaling["default"] * torch.sqrt(torch.trace((B.T @ B) @ (A @ A.T))))


def _cholqr(Y):
    L = torch.linalg.cholesky(Y.mT @ Y)
    return torch.linalg.solve_triangular(L, Y.mT, upper=False).mT


def bare_pissa(mats, rank: int, k: int, niter: int, seed: int = 0):
    """PiSSA's top-``rank`` triplets of each weight by the same algorithm as ours with nothing
    else (the floor of a straightforward implementation, no library): equal shapes stacked,
    bfloat16 products, subspace iteration ending on the row space with one CholeskyQR round per
    pass (two for the last right basis), the small SVD from the float64 Gram matrix of Y = AZ.
    Returns [(U, S, Vh)] per weight.

    Shape:
        mats: [(m, n)];  U: (m, rank);  S: (rank,);  Vh: (rank, n)
    """
    groups = {}
    for i, W in enumerate(mats):
        groups.setdefault(tuple(W.shape), []).append(i)
    out = [None] * len(mats)
    g = torch.Generator().manual_seed(seed)
    for idx in groups.values():
        A = torch.stack([mats[i] for i in idx]).to(torch.bfloat16)
        Y = (A @ torch.randn(A.shape[-1], k, generator=g).to(torch.bfloat16)).float()
        for it in range(niter):
            Z = _cholqr((_cholqr(Y).to(torch.bfloat16).mT @ A).mT.float())
            Z = _cholqr(Z) if it == niter - 1 else Z
            Y = (A @ Z.to(torch.bfloat16)).float()
        lam, V = torch.linalg.eigh(Y.mT.double() @ Y.double())
        V, S = V.flip(-1)[..., :rank].float(), lam.flip(-1)[..., :rank].clamp_min(0).sqrt().float()
        U, Vh = (Y @ V) / S[..., None, :], (Z @ V).mT
        for j, i in enumerate(idx):
            out[i] = (U[j], S[j], Vh[j])
    return out


def _bare_init(model, method: str, spent: dict) -> None:
    """PiSSA (:func:`bare_pissa`, k = 2r, 3 iterations: ours' settings; B·A = U diag(S) Vh / s) or
    OLoRA (B = Q, A = QᵀW from the QR of W's first r columns) on every LoRA layer of a wrapped peft model, in plain
    torch: the factors into lora_A / lora_B, the residual W − s·BA into a fresh tensor (``addmm``)
    that the base weight is rebound to. ``spent``: seconds of the decompositions and of the
    residuals."""
    import time

    layers = list(lora_layers(model).values())
    mats = [m.get_base_layer().weight.data for m in layers]
    r = layers[0].r["default"]
    start = time.perf_counter()
    factors = []
    if method == "pissa":  # B·A = U diag(S) Vh / s (peft's split)
        for m, (U, S, Vh) in zip(layers, bare_pissa(mats, r, 2 * r, 3)):
            root = (S / m.scaling["default"]).sqrt()
            factors.append((U * root, root[:, None] * Vh))
    else:
        for W in mats:
            Q = torch.linalg.qr(W[:, :r].float())[0]
            factors.append((Q, Q.T @ W.float()))
    spent["decomposition"] = time.perf_counter() - start
    start = time.perf_counter()
    for m, W, (B, A) in zip(layers, mats, factors):
        s = m.scaling["default"]
        m.get_base_layer().weight.data = torch.addmm(W, B.to(W.dtype), A.to(W.dtype), alpha=-s)
        m.lora_A["default"].weight.data.copy_(A)
        m.lora_B["default"].weight.data.copy_(B)
    spent["residuals"] = time.perf_counter() - start


def minilm_from_pretrained(folder, dtype: str | None = None):
    """MiniLM-L6 as users load it: ``transformers.AutoModel.from_pretrained`` of its folder,
    offline: as stored (float32 safetensors, memory-mapped), or converted to ``dtype`` as it
    loads (``dtype="bfloat16"``: the weights are then this process's own memory)."""
    import transformers
    from transformers.utils import logging

    logging.disable_progress_bar()
    kwargs = {} if dtype is None else {"dtype": getattr(torch, dtype)}
    return transformers.AutoModel.from_pretrained(folder, local_files_only=True, **kwargs)


def quality(base_svds, model):
    caps, sines = [], []
    for name, m in lora_layers(model).items():
        U, S = base_svds[name.replace("base_model.model.", "")]
        r = m.r["default"]
        caps.append(adapter_norm(m) / float(torch.linalg.vector_norm(S[:r])))
        qb = torch.linalg.qr(m.lora_B["default"].weight.detach().double())[0]
        sines.append(float(torch.linalg.matrix_norm(U[:, :r] - qb @ (qb.T @ U[:, :r]), ord=2)))
    return float(np.mean(caps)), float(np.median(sines)), float(np.max(sines))


def run(report: Report, quick: bool = False):
    peft = report.peer("peft", what="the adapters family (every row wraps the model with peft)")
    if peft is None:
        return
    r = 16
    for label, base, targets in models(quick, report):
        base_svds = {}
        for name, mod in base.named_modules():
            if any(name.endswith(t) for t in targets) and isinstance(mod, torch.nn.Linear):
                U, S, _ = torch.linalg.svd(mod.weight.detach().double(), full_matrices=False)
                base_svds[name] = (U, S)
        big = max(p.numel() for p in base.parameters()) > 1 << 24

        def wrapped(init):
            return peft.get_peft_model(copy.deepcopy(base), peft.LoraConfig(r=r, lora_alpha=r, target_modules=targets,
                                                                             init_lora_weights=init))

        def peft_init(init):
            return lambda model: peft.get_peft_model(model, peft.LoraConfig(
                r=r, lora_alpha=r, target_modules=targets, init_lora_weights=init))

        def ours(method):
            def fn(model):
                m = peft.get_peft_model(model, peft.LoraConfig(r=r, lora_alpha=r, target_modules=targets))
                lc.adapters.init_peft_model(m, method, seed=0, progress=False)
                return m
            return fn

        rows = [("peft wrap only (get_peft_model, default init)", peft_init(True)),
                ("peft pissa_niter_4", peft_init("pissa_niter_4")), ("linalg_core pissa", ours("pissa")),
                ("peft olora (full QR)", peft_init("olora")), ("linalg_core olora", ours("olora"))]
        if not big:
            rows.insert(0, ("peft pissa (full SVD)", peft_init("pissa")))
        times = {}
        for name, fn in rows:
            copies = []

            def timed():
                fn(copies.pop())

            repeats = 3
            copies.extend(copy.deepcopy(base) for _ in range(repeats + 1))
            t = measure(timed, repeats=repeats, warmup=1, budget_s=120)
            times[name] = t.median
            torch.manual_seed(0)
            model = fn(copy.deepcopy(base))
            cap, med, worst = quality(base_svds, model) if "pissa" in name else (float("nan"),) * 3
            report.add(model=label, rank=r, impl=name, ms=t.median * 1e3, captured_energy=cap,
                       median_sin_angle=med, max_sin_angle=worst)
        wrap = times["peft wrap only (get_peft_model, default init)"]

        def ratio(theirs, mine, minus=0.0):
            return (times[theirs] - minus) / max(times[mine] - minus, 1e-9)

        report.note(f"{label}: linalg_core pissa {ratio('peft pissa_niter_4', 'linalg_core pissa'):.2f}x faster than peft "
                    f"pissa_niter_4 end to end ({ratio('peft pissa_niter_4', 'linalg_core pissa', wrap):.2f}x on the "
                    f"initialisation alone, wrap time {wrap * 1e3:.0f} ms subtracted); olora "
                    f"{ratio('peft olora (full QR)', 'linalg_core olora'):.1f}x "
                    f"({ratio('peft olora (full QR)', 'linalg_core olora', wrap):.1f}x)")
        for theirs, mine in (("pissa_niter_4", "pissa"), ("olora", "olora")):
            whole, init = _paired_ratios(base, targets, r, theirs, mine, rounds=3 if quick else 7)
            report.note(f"{label}: paired, interleaved rounds (peft {theirs} then linalg_core {mine} on fresh copies, "
                        f"{len(whole)} rounds): end to end median {np.median(whole):.2f}x (range "
                        f"{min(whole):.2f}-{max(whole):.2f}x); initialisation alone (peft's own {mine}_init calls "
                        f"timed inside get_peft_model vs init_peft_model) median {np.median(init):.2f}x (range "
                        f"{min(init):.2f}-{max(init):.2f}x)")
        _from_file(report, label, base, targets, r, rounds=1 if quick else 5)
        if label.startswith("MiniLM"):
            _from_file(report, MINILM_BF16, _cast(base, torch.bfloat16), targets, r, rounds=1 if quick else 5,
                       dtype="bfloat16")
            _eva(report, base, targets, quick)


@contextlib.contextmanager
def _timing(cls, method):
    """Sum of the wall time spent in ``cls.method`` (peft's per-layer initialiser) in the block."""
    import time

    spent = [0.0]
    inner = getattr(cls, method)

    def timed(*args, **kwargs):
        start = time.perf_counter()
        try:
            return inner(*args, **kwargs)
        finally:
            spent[0] += time.perf_counter() - start

    setattr(cls, method, timed)
    try:
        yield spent
    finally:
        setattr(cls, method, inner)


def _paired_ratios(base, targets, r, theirs, mine, rounds):
    """Per-round ratios peft / linalg_core, the two run back to back on fresh model copies (made
    outside the clock), so that a disturbance of this 2-core VM hits one round, not one side:
    end to end (wrap + init on both sides), and the initialisation alone — peft's own
    ``pissa_init`` / ``olora_init`` calls timed inside ``get_peft_model``, against
    ``init_peft_model`` on the wrapped model."""
    import time

    import peft
    from peft.tuners.lora.layer import LoraLayer

    def config(init):
        return peft.LoraConfig(r=r, lora_alpha=r, target_modules=targets, init_lora_weights=init)

    whole, init = [], []
    for i in range(rounds + 1):
        model = copy.deepcopy(base)
        with _timing(LoraLayer, f"{mine}_init") as peft_init:
            start = time.perf_counter()
            peft.get_peft_model(model, config(theirs))
            peft_whole = time.perf_counter() - start
        model = copy.deepcopy(base)
        start = time.perf_counter()
        wrapped = peft.get_peft_model(model, config(True))
        middle = time.perf_counter()
        lc.adapters.init_peft_model(wrapped, mine, seed=0, progress=False)
        end = time.perf_counter()
        del model, wrapped
        if i:  # the first round warms up
            whole.append(peft_whole / (end - start))
            init.append(peft_init[0] / (end - middle))
    return whole, init


def _eva(report, base, targets, quick):
    """EVA: peft's initialize_lora_eva_weights (cycles the data until τ) and ours (one pass at
    most, stops at τ) on the same batches of random token ids; both rank 8, ρ = 2, τ = 0.99."""
    import time

    import peft
    from linalg_core.testing.models import minilm_inputs

    batches = [minilm_inputs(batch=8, length=64, seed=s) for s in range(8 if quick else 24)]
    config = dict(r=8, lora_alpha=8, target_modules=targets)
    m_peft = peft.get_peft_model(copy.deepcopy(base), peft.LoraConfig(
        **config, init_lora_weights="eva", eva_config=peft.EvaConfig(rho=2.0, tau=0.99)))
    start = time.perf_counter()
    peft.initialize_lora_eva_weights(m_peft, batches, show_progress_bar=False)
    t_peft = time.perf_counter() - start
    m_ours = peft.get_peft_model(copy.deepcopy(base), peft.LoraConfig(**config))
    start = time.perf_counter()
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = lc.adapters.init_peft_model(m_ours, lc.adapters.EVAConfig(batches, rho=2.0, tau=0.99, seed=0), progress=False)
    t_ours = time.perf_counter() - start
    a_peft, a_ours = lora_layers(m_peft), lora_layers(m_ours)
    sines = []
    for name, m in a_ours.items():
        if name not in a_peft:
            continue
        k = min(m.r["default"], a_peft[name].r["default"], 4)
        X = m.lora_A["default"].weight.detach().double()[:k].T
        Y = a_peft[name].lora_A["default"].weight.detach().double()[:k].T
        qx, qy = torch.linalg.qr(X)[0], torch.linalg.qr(Y)[0]
        sines.append(float(torch.linalg.matrix_norm(qy - qx @ (qx.T @ qy), ord=2)))
    unconverged = sum("has not converged" in str(w.message) for w in caught)
    report.add(model="MiniLM-L6 EVA (r=8, rho=2, tau=0.99)", rank=8, impl="peft initialize_lora_eva_weights",
               ms=t_peft * 1e3, captured_energy=float("nan"), median_sin_angle=float("nan"), max_sin_angle=float("nan"))
    report.add(model="MiniLM-L6 EVA (r=8, rho=2, tau=0.99)", rank=8, impl="linalg_core eva",
               ms=t_ours * 1e3, captured_energy=float("nan"), median_sin_angle=float(np.median(sines)),
               max_sin_angle=float(np.max(sines)))
    report.note(f"EVA on MiniLM-L6, {len(batches)} batches of 8 x 64 tokens: linalg_core {t_peft / t_ours:.2f}x faster "
                f"than peft; sines are between the two methods' top-4 components per layer (agreement); "
                f"{unconverged} layers of ours had not met tau at the end of the batches; ranks "
                f"{min(res.layers.values())}..{max(res.layers.values())}")


def _worker(args: dict) -> dict:
    """One fresh-process measurement (``python -m linalg_core.bench.adapters --worker JSON``): load the model
    memory-mapped, time the first wrap (+ init) call; return seconds and, for PiSSA, each layer's
    ‖s·BA‖_F (``profile``: ours' time by section and the residual-write floors instead)."""
    import time

    import peft
    import safetensors.torch

    lc.set_num_threads(args["threads"])
    start = time.perf_counter()
    if args["kind"] == "minilm":
        model = minilm_from_pretrained(args["path"], args.get("dtype"))
    else:
        state = safetensors.torch.load_file(args["path"])
        with torch.device("meta"):
            model = LayerSet([torch.empty(state[f"layers.{i}.weight"].shape, dtype=state[f"layers.{i}.weight"].dtype)
                              for i in range(len(state))])
        model.load_state_dict(state, assign=True)
    load = time.perf_counter() - start
    r, method, targets = args["r"], args["method"], args["targets"]
    sections = _sections() if args.get("profile") else contextlib.nullcontext({})
    torch.manual_seed(0)
    with sections as spent:
        start = time.perf_counter()
        if args["side"] == "peft":
            init = {"pissa": "pissa_niter_4", "olora": "olora"}[method]
            model = peft.get_peft_model(model, peft.LoraConfig(r=r, lora_alpha=r, target_modules=targets,
                                                               init_lora_weights=init))
        else:
            model = peft.get_peft_model(model, peft.LoraConfig(r=r, lora_alpha=r, target_modules=targets))
            spent["wrap (get_peft_model)"] = time.perf_counter() - start
            if args["side"] == "bare":
                with torch.no_grad():
                    _bare_init(model, method, spent)
            else:
                lc.adapters.init_peft_model(model, method, seed=0, progress=False)
        seconds = time.perf_counter() - start
    out = {"seconds": seconds, "load": load, "sections": dict(spent)}
    layers = lora_layers(model)
    if method == "pissa":
        out["energy"] = {name.replace("base_model.model.", ""): adapter_norm(m) for name, m in layers.items()}
    if args.get("profile"):
        out["floors"] = _write_floors(args["file"], [n.replace("base_model.model.", "") + ".weight" for n in layers])
    return out


@contextlib.contextmanager
def _sections():
    """Wall time of ours by section: rsvd (PiSSA's triplets), the residual GEMMs and writes,
    stacking a batched group, loading the factors into lora_A / lora_B."""
    import time

    from linalg_core.adapters import init as init_mod
    from linalg_core.adapters import whole_model

    spent = {}
    patches = [(init_mod, "_pissa_triplets", "rsvd (PiSSA's triplets)"),
               (init_mod, "_residual", "residual GEMM + write"),
               (whole_model, "_unit", "stack / destinations"), (whole_model, "_set_factors", "set lora_A, lora_B")]
    saved = [(mod, name, getattr(mod, name)) for mod, name, _ in patches]

    def timed(fn, label):
        def call(*args, **kwargs):
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                spent[label] = spent.get(label, 0.0) + time.perf_counter() - start
        return call

    for mod, name, label in patches:
        setattr(mod, name, timed(getattr(mod, name), label))
    try:
        yield spent
    finally:
        for mod, name, fn in saved:
            setattr(mod, name, fn)


def _write_floors(path, names) -> dict:
    """Seconds to read the targets once from a fresh mapping of the file (``read``: their pages
    mapped in, as the initialisation's first pass does), then to write their bytes (a) as fresh
    pages (``empty`` + ``copy_``: what the residuals cost at best) and (b) in place into the
    copy-on-write mapping (what writing the residuals into the mapped weights costs)."""
    import time

    import safetensors.torch

    state = safetensors.torch.load_file(path)
    mats = [state[n] for n in names if n in state]
    start = time.perf_counter()
    for m in mats:
        m.sum()
    t_read = time.perf_counter() - start
    start = time.perf_counter()
    fresh = [torch.empty_like(m).copy_(m) for m in mats]
    t_fresh = time.perf_counter() - start
    start = time.perf_counter()
    for m in mats:
        m.mul_(1)
    t_cow = time.perf_counter() - start
    del fresh
    return {"bytes": sum(m.numel() * m.element_size() for m in mats), "read": t_read, "fresh": t_fresh,
            "in_place_mapped": t_cow}


def _run_worker(args: dict) -> dict:
    import json
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "linalg_core.bench.adapters", "--worker", json.dumps(args)], capture_output=True, text=True,
                          timeout=900)
    if proc.returncode:
        raise RuntimeError(f"benchmark worker failed ({args['side']} {args['method']}):\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _reference_energy(mats: dict, r: int) -> dict:
    """{name: ‖W_r‖_F} (the norm of the top-r singular values) from the float64 Gram matrix's r
    largest eigenvalues (LAPACK syevr asked for those only)."""
    import scipy.linalg

    out = {}
    for name, W in mats.items():
        W64 = W.detach().double()
        G = (W64.T @ W64 if W64.shape[1] <= W64.shape[0] else W64 @ W64.T).numpy()
        lam = scipy.linalg.eigh(G, eigvals_only=True, subset_by_index=[G.shape[0] - r, G.shape[0] - 1], driver="evr")
        out[name] = float(np.sqrt(np.clip(lam, 0, None).sum()))
    return out


def _from_file(report, label, base, targets, r, rounds, dtype=None):
    """Rows of the user's path: a fresh process loads the model memory-mapped from its file and
    runs the first wrap (+ init); peft's pissa_niter_4 / olora against ours, interleaved rounds.
    ``dtype`` (MiniLM-L6 only): ``from_pretrained(dtype=...)`` converts the weights as it loads
    (``base`` then holds them in that dtype, for the reference energies); no profile process
    then (its floors are those of the mapped file)."""
    import os
    import tempfile

    from linalg_core.models import minilm_path

    mats = {n: m.weight for n, m in base.named_modules()
            if isinstance(m, torch.nn.Linear) and any(n.endswith(t) for t in targets)}
    ref = _reference_energy(mats, r)
    tmp = None
    if label.startswith("MiniLM"):
        args = {"kind": "minilm", "path": os.path.dirname(minilm_path()), "dtype": dtype}
        floor_path = minilm_path()
    else:
        import safetensors.torch

        tmp = tempfile.TemporaryDirectory(prefix="lc-bench-adapters-")
        floor_path = os.path.join(tmp.name, "model.safetensors")
        safetensors.torch.save_file({k: v.contiguous() for k, v in base.state_dict().items()}, floor_path)
        args = {"kind": "layers", "path": floor_path}
    args.update(file=floor_path, r=r, targets=targets, threads=torch.get_num_threads())
    try:
        sides = ("peft", "ours", "bare")
        times = {(side, m): [] for side in sides for m in ("pissa", "olora")}
        parts = {(side, m): [] for side in sides for m in ("pissa", "olora")}
        energy = {}
        for _ in range(rounds):
            for method in ("pissa", "olora"):
                for side in sides:
                    res = _run_worker({**args, "side": side, "method": method})
                    times[side, method].append(res["seconds"])
                    parts[side, method].append(res["sections"])
                    if "energy" in res:
                        energy[side] = float(np.mean([res["energy"][n] / ref[n] for n in ref]))
        prof = None if dtype else _run_worker({**args, "side": "ours", "method": "pissa", "profile": True})
    finally:
        if tmp is not None:
            tmp.cleanup()
    where = f"{label}, from its file (fresh process, first call)"
    for method, theirs in (("pissa", "peft pissa_niter_4"), ("olora", "peft olora (full QR)")):
        ratios = {side: [a / b for a, b in zip(times["peft", method], times[side, method])] for side in sides}
        for side, impl in (("peft", theirs), ("ours", f"linalg_core {method}"),
                           ("bare", f"floor: bare torch {method} (no library)")):
            report.add(model=where, rank=r, impl=impl, ms=float(np.median(times[side, method])) * 1e3,
                       samples_s={"ms": times[side, method]},
                       captured_energy=energy.get(side, float("nan")) if method == "pissa" else float("nan"),
                       vs_peft=float(np.median(ratios[side])) if side != "peft" else float("nan"))
        report.note(f"{where}: linalg_core {method} {np.median(ratios['ours']):.2f}x faster than {theirs} end to end "
                    f"(wrap + init, per-round ratios of {len(ratios['ours'])} interleaved rounds: "
                    f"{', '.join(f'{x:.2f}' for x in ratios['ours'])})")
        bare = {k: np.median([p[k] for p in parts["bare", method]]) * 1e3 for k in parts["bare", method][0]}
        report.note(f"{where}: the floor of a straightforward implementation: the same algorithm in bare torch, no "
                    f"library (bench.adapters._bare_init), first call in a fresh process, "
                    f"{np.median(ratios['bare']):.2f}x peft {theirs} (rounds "
                    f"{', '.join(f'{x:.2f}' for x in ratios['bare'])}): "
                    + ", ".join(f"{k} {v:.0f} ms" for k, v in bare.items()))
    if prof is None:
        return
    fl = prof["floors"]
    parts = ", ".join(f"{k} {v * 1e3:.0f} ms" for k, v in prof["sections"].items())
    report.note(f"{where}: profile of linalg_core pissa ({prof['seconds'] * 1e3:.0f} ms): {parts}. Floors of the "
                f"residual writes ({fl['bytes'] / 2**20:.0f} MiB): into fresh pages {fl['fresh'] * 1e3:.0f} ms "
                f"({fl['bytes'] / fl['fresh'] / 1e9:.1f} GB/s, the way taken), in place into the mapped file "
                f"{fl['in_place_mapped'] * 1e3:.0f} ms ({fl['bytes'] / fl['in_place_mapped'] / 1e9:.2f} GB/s: a "
                f"copy-on-write fault per 4 KiB page); model load {prof['load'] * 1e3:.0f} ms (not timed)")


if __name__ == "__main__":
    import json
    import sys

    if sys.argv[1:2] == ["--worker"]:
        print(json.dumps(_worker(json.loads(sys.argv[2]))))
    elif sys.argv[1:2] == ["--from-file"]:
        # one model's from-file rows alone: minilm | minilm-bfloat16 | llama-float32 | llama-bfloat16 [quick]
        which, quick = sys.argv[2], "quick" in sys.argv[3:]
        lc.set_num_threads(2)
        dtype = None
        if which.startswith("minilm"):
            from linalg_core.testing.models import minilm_model

            label, base, targets = "MiniLM-L6 (36 Linear layers) float32", minilm_model(), TARGETS
            if which == "minilm-bfloat16":
                label, base, dtype = MINILM_BF16, _cast(base, torch.bfloat16), "bfloat16"
        else:
            label, base, targets = llama_set(quick, getattr(torch, which.split("-")[1]))
        _from_file(Report("adapters"), label, base, targets, 16, rounds=1 if quick else 3, dtype=dtype)
