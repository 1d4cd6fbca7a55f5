"""README's results table, generated from ``benchmarks/results/<family>.json`` so it cannot drift
(read with :func:`linalg_core.bench.results.load_results`: schema 2, or schema 1 migrated).

Each :class:`Headline` names one of our rows and the peer's figure in the same run (a row of its
own, or a column of ours) and renders a line: our time, the peer's, their ratio (peer time over
ours, measured in the same run) and a verdict: *faster* from 1.25×, *parity* between 0.8× and
1.25×, *slower* below. ``python -m linalg_core bench --write`` rewrites the block between
``<!-- results:begin -->`` and ``<!-- results:end -->`` of README.md after each full run (and the
compressed-model quality table between the ``quality`` markers), and
``tests/test_readme_results.py`` checks that the blocks equal what the committed results give.

Example::

    >>> from linalg_core.testing.headlines import readme_table
    >>> print(readme_table("benchmarks/results"))  # doctest: +SKIP
    | family | what | linalg_core | what users call today | ratio | verdict | accuracy | run |
    ...
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

FASTER, SLOWER = 1.25, 0.8  # ratio bounds of the verdicts


@dataclass(frozen=True)
class Headline:
    """One README line.

    Args:
        family: the results file (``benchmarks/results/<family>.json``).
        what: the line's label.
        ours: ``{column: value}`` selecting our row (a value starting with ``re:`` is a regex).
        time: our row's time column (ms or µs; ``unit`` says which).
        peer: the peer's name, as users know it.
        peer_row: ``{column: value}`` selecting the peer's row, whose ``peer_time`` (default
            ``time``) column is its time; None when the peer's time is a column of our row.
        peer_time: the peer's time column (in ``peer_row``, else in our row).
        accuracy: a template rendered with ``o`` (our row) and ``p`` (the peer row, or ours).
        unit: ``"ms"``, ``"s"`` or ``"us"``.
        ratio: a column (of our row, else the peer's) holding the same-run ratio of paired
            rounds, used instead of peer time / our time where the bench measured one.
    """

    family: str
    what: str
    ours: dict
    time: str
    peer: str
    peer_time: str
    peer_row: dict | None = None
    accuracy: str = ""
    unit: str = "ms"
    ratio: str | None = None


def _match(row: dict, sel: dict) -> bool:
    for k, v in sel.items():
        got = row.get(k)
        if isinstance(v, str) and v.startswith("re:"):
            if not isinstance(got, str) or not re.search(v[3:], got):
                return False
        elif got != v:
            return False
    return True


def _find(rows: list[dict], sel: dict, what: str) -> dict:
    found = [r for r in rows if _match(r, sel)]
    if len(found) != 1:
        raise LookupError(f"headline {what!r}: {len(found)} rows match {sel} (need exactly one)")
    return found[0]


def _num(v) -> float:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else math.nan


def _time(t: float, unit: str) -> str:
    if not math.isfinite(t):
        return "n/a"
    if unit == "us":
        return f"{t:.1f} µs"
    ms = t * 1e3 if unit == "s" else t
    return f"{ms / 1e3:.2f} s" if ms >= 1000 else f"{ms:.3g} ms" if ms < 100 else f"{ms:.0f} ms"


def verdict(ratio: float) -> str:
    """*faster* from 1.25×, *parity* in [0.8, 1.25), *slower* below 0.8 (peer time / ours)."""
    if not math.isfinite(ratio):
        return "n/a"
    return "faster" if ratio >= FASTER else "parity" if ratio >= SLOWER else "slower"


def _cpu_name(model: str) -> str:
    """The processor's name without trademarks and the trailing "Processor" / "CPU @ …":
    ``Intel(R) Xeon(R) Processor`` → ``Intel Xeon``."""
    name = re.sub(r"\((?:R|TM)\)", "", str(model))
    name = re.sub(r"\s+(?:\d+-Core\s+)?(?:Processor|CPU)\b.*$", "", name)
    return " ".join(name.split()) or "?"


def _fmt_row(h: Headline, o: dict, p: dict, machine: dict) -> str:
    t, tp = _num(o.get(h.time)), _num(p.get(h.peer_time))
    ratio = tp / t if t > 0 else math.nan
    if h.ratio is not None:
        ratio = _num(o[h.ratio] if h.ratio in o else p.get(h.ratio))
    try:
        acc = h.accuracy.format(o=o, p=p) if h.accuracy else ""
    except KeyError as e:
        raise LookupError(f"headline {h.what!r}: its accuracy template reads column {e} that the row lacks") from None
    run = f"{_cpu_name(machine.get('cpu', '?'))}, {machine.get('cpu_kernels', '?')}, {str(machine.get('date', '?'))[:10]}"
    return (f"| {h.family} | {h.what} | {_time(t, h.unit)} | {h.peer} {_time(tp, h.unit)} | "
            f"{ratio:.2f}× | {verdict(ratio)} | {acc} | {run} |")


def load(results_dir) -> dict[str, dict]:
    """{family: the results document (schema 2)} of every ``<family>.json`` in ``results_dir``."""
    from linalg_core.bench.results import load_all

    return load_all(results_dir)


def readme_table(results_dir, headlines=None) -> str:
    """The README block (markdown) rendered from the results files in ``results_dir``.

    Raises:
        LookupError: a headline's row is missing or ambiguous (a bench renamed its rows: update
            :data:`HEADLINES` with it).
    """
    results = load(results_dir)
    lines = ["| family | what | linalg_core | what users call today | ratio | verdict | accuracy "
             "| run (CPU, kernels, date) |",
             "|---|---|---|---|---|---|---|---|"]
    counts = {"faster": 0, "parity": 0, "slower": 0, "n/a": 0}
    for h in headlines or HEADLINES:
        if h.family not in results:
            continue
        data = results[h.family]
        o = _find(data["rows"], h.ours, h.what)
        p = _find(data["rows"], h.peer_row, h.what) if h.peer_row is not None else o
        line = _fmt_row(h, o, p, data.get("environment", {}))
        counts[line.split(" | ")[5]] += 1
        lines.append(line)
    summary = (f"{counts['faster']} lines faster than the peer, {counts['parity']} at parity "
               f"(0.8–1.25×), {counts['slower']} slower.")
    return "\n".join(lines + ["", summary])


def quality_table(results_dir) -> str:
    """The compressed-model quality table (``bench quant``'s "quality:" rows): total bits, mean
    cosine of the embeddings to fp32's, hidden-state error, and which uniform formats a plan
    point dominates (<= total bits, >= mean cosine, <= error)."""
    quant = load(results_dir).get("quant", {}).get("rows", [])
    rows = [r for r in quant if str(r.get("case", "")).startswith("quality:")]
    lines = ["| model | total bits / weight | mean cosine to fp32 | hidden-state rel. error | dominates |",
             "|---|---|---|---|---|"]
    for r in rows:
        name = r["case"][len("quality: MiniLM-L6 "):] if r["case"].startswith("quality: MiniLM-L6 ") else r["case"]
        beats = r.get("beats_uniform", "")
        lines.append(f"| {name} | {_num(r.get('total_bits')):.3f} | {_num(r.get('mean_cos')):.4f} | "
                     f"{_num(r.get('hidden_rel_err')):.4f} | {'' if beats in ('', 'none') else beats} |")
    return "\n".join(lines)


BLOCKS = {"results": readme_table, "quality": quality_table}


def _markers(name: str) -> tuple[str, str]:
    return f"<!-- {name}:begin -->", f"<!-- {name}:end -->"


def update_readme(readme, results_dir) -> bool:
    """Rewrite README's generated blocks (:data:`BLOCKS`) from ``results_dir``; True when it changed."""
    path = Path(readme)
    text = new = path.read_text()
    for name, render in BLOCKS.items():
        begin, end = _markers(name)
        if begin in new and end in new:
            block = f"{begin}\n{render(results_dir)}\n{end}"
            new = re.sub(re.escape(begin) + r".*?" + re.escape(end), lambda _: block, new, flags=re.S)
    if new != text:
        path.write_text(new)
    return new != text


def readme_block(readme, name: str = "results") -> str:
    """The current generated block ``name`` of README (between its markers), without the markers."""
    begin, end = _markers(name)
    text = Path(readme).read_text()
    return text.split(begin, 1)[1].split(end, 1)[0].strip("\n")


_PEFT = "peft pissa_niter_4"

HEADLINES: list[Headline] = [
    # sketch
    Headline("sketch", "FWHT 2¹⁶ × 256 fp32 along rows, `out=`",
             {"op": "fwht", "shape": "re:dim=-1", "impl": "linalg_core.fwht(out=preallocated)"}, "ms",
             "dense `x @ H`", "ms", {"op": "fwht", "shape": "re:dim=-1", "impl": "re:dense Hadamard"},
             accuracy="{o[x_floor]:.1f}× the copy floor"),
    Headline("sketch", "FWHT 2¹⁶ × 256 fp32 along columns (N = 2¹⁶), `out=`",
             {"op": "fwht", "shape": "re:dim=0", "impl": "linalg_core.fwht(out=preallocated)"}, "ms",
             "numpy butterfly", "ms", {"op": "fwht", "shape": "re:dim=0", "impl": "numpy butterfly"},
             accuracy="{o[x_floor]:.1f}× the copy floor"),
    Headline("sketch", "SRHT of a 2¹⁷ × 64 matrix to 1024 rows",
             {"op": "sketch", "shape": "re:^gaussian 131072", "impl": "linalg_core.srht"}, "ms",
             "`torch.matmul(G, A)`, G given", "ms",
             {"op": "sketch", "shape": "re:^gaussian 131072", "impl": "re:G pre-generated"},
             accuracy="distortion {o[distortion]:.3f} vs {p[distortion]:.3f}"),
    Headline("sketch", "CountSketch of the same matrix",
             {"op": "sketch", "shape": "re:^gaussian 131072", "impl": "linalg_core.countsketch"}, "ms",
             "scipy `clarkson_woodruff_transform`", "ms",
             {"op": "sketch", "shape": "re:^gaussian 131072", "impl": "re:clarkson"},
             accuracy="distortion {o[distortion]:.3f} vs {p[distortion]:.3f}"),
    Headline("sketch", "Gaussian sketch of the same matrix (Ω never stored)",
             {"op": "sketch", "shape": "re:^gaussian 131072", "impl": "linalg_core.gaussian"}, "ms",
             "`torch.randn` + matmul", "ms",
             {"op": "sketch", "shape": "re:^gaussian 131072", "impl": "torch.randn(m, n) + matmul"},
             accuracy="distortion {o[distortion]:.3f}"),
    Headline("sketch", "per call: `fwht` of a 1 × 256 vector (eager), vs torch's `x + 1`",
             {"op": "per call", "shape": "fwht 1x256", "impl": "linalg_core.fwht (eager)"}, "us_per_call",
             "torch's `x + 1` (not a transform: the cost of any op call)", "us_per_call",
             {"op": "per call", "shape": "1x256", "impl": "torch x + 1"}, unit="us"),
    Headline("sketch", "per call: `fwht` of a 1 × 256 vector (eager)",
             {"op": "per call", "shape": "fwht 1x256", "impl": "linalg_core.fwht (eager)"}, "us_per_call",
             "dense `x @ H`", "us_per_call", {"op": "per call", "shape": "1x256", "impl": "x @ H (dense Hadamard)"},
             unit="us"),
    # rsvd's adaptive default against the cheapest torch.svd_lowrank setting reaching the same (PEFT) grade
    *[Headline("rsvd_adaptive", f"rsvd default (adaptive), {fam} spectrum 4096², r = 64",
               {"matrix": f"adaptive: {fam} 4096x4096", "rank": 64}, "ms",
               "cheapest PEFT-grade `torch.svd_lowrank`", "torch_ms", ratio="vs_torch_equal_acc",
               accuracy="resid ratio {o[resid_ratio]:.4f}, σ error {o[sigma_err]:.1e}; {o[vs_hindsight_fixed]:.2f}× "
                        "our hindsight-best fixed setting")
      for fam in ("flat", "gapped", "spiked", "steep")],
    # random / convert
    Headline("random", "Rademacher fill, 2²⁴ float32", {"case": "rademacher float32, n=2^24"}, "ours_ms",
             "`torch.randint` → ±1", "torch_ms", accuracy="{o[x_floor]:.1f}× the write floor"),
    Headline("random", "normal fill, 2²⁴ float32", {"case": "normal float32, n=2^24"}, "ours_ms",
             "`torch.randn`", "torch_ms", accuracy="{o[x_floor]:.0f}× the write floor"),
    Headline("convert", "float32 → bfloat16 with a non-finite check, 2²⁴", {"case": "float32 -> bfloat16, n=2^24"},
             "ours_ms", "torch cast + `isfinite().all()`", "torch_cast_and_check_ms",
             accuracy="bit-identical: {o[bit_identical]}"),
    # adapters
    Headline("adapters", "PiSSA, LLaMA-7B-shaped set fp32 (r = 16)",
             {"model": "re:^LLaMA.*float32$", "impl": "linalg_core pissa"}, "ms", _PEFT, "ms",
             {"model": "re:^LLaMA.*float32$", "impl": _PEFT},
             accuracy="energy {o[captured_energy]:.4f} vs {p[captured_energy]:.4f}"),
    Headline("adapters", "PiSSA, LLaMA-7B-shaped set bf16 (r = 16)",
             {"model": "re:^LLaMA.*bfloat16$", "impl": "linalg_core pissa"}, "ms", _PEFT, "ms",
             {"model": "re:^LLaMA.*bfloat16$", "impl": _PEFT},
             accuracy="energy {o[captured_energy]:.4f} vs {p[captured_energy]:.4f}"),
    Headline("adapters", "OLoRA, LLaMA-7B-shaped set fp32",
             {"model": "re:^LLaMA.*float32$", "impl": "linalg_core olora"},
             "ms", "peft `olora`", "ms", {"model": "re:^LLaMA.*float32$", "impl": "re:^peft olora"}),
    Headline("adapters", "PiSSA, MiniLM-L6 (36 layers, r = 16)",
             {"model": "re:^MiniLM-L6 \\(36.*float32$", "impl": "linalg_core pissa"}, "ms", _PEFT, "ms",
             {"model": "re:^MiniLM-L6 \\(36.*float32$", "impl": _PEFT},
             accuracy="energy {o[captured_energy]:.4f} vs {p[captured_energy]:.4f}"),
    *[Headline("adapters", f"PiSSA, {label} from its file (fresh process, first call)",
               {"model": f"re:^{model}.*from its file", "impl": "linalg_core pissa"}, "ms", _PEFT, "ms",
               {"model": f"re:^{model}.*from its file", "impl": _PEFT}, ratio="vs_peft",
               accuracy="energy {o[captured_energy]:.4f} vs {p[captured_energy]:.4f}")
      for label, model in (("MiniLM-L6 `from_pretrained`", "MiniLM-L6 \\(36 Linear layers\\) float32,"),
                           ("MiniLM-L6 `from_pretrained(dtype=torch.bfloat16)`", "MiniLM-L6 .*bfloat16"),
                           ("LLaMA-7B-shaped set fp32", "LLaMA.*float32,"),
                           ("LLaMA-7B-shaped set bf16", "LLaMA.*bfloat16,"))],
    Headline("adapters", "OLoRA, LLaMA-7B-shaped set fp32 from its file (fresh process, first call)",
             {"model": "re:^LLaMA.*float32, from its file", "impl": "linalg_core olora"}, "ms", "peft `olora`", "ms",
             {"model": "re:^LLaMA.*float32, from its file", "impl": "re:^peft olora"}, ratio="vs_peft"),
    Headline("adapters", "EVA, MiniLM-L6 (r = 8)", {"model": "re:EVA", "impl": "linalg_core eva"}, "ms",
             "peft `initialize_lora_eva_weights`", "ms", {"model": "re:EVA", "impl": "re:^peft"}),
    # regression / distributed
    Headline("regression", "least squares 2²⁰ × 256, sketch-and-precondition",
             {"problem": "n=2^20 d=256", "impl": "linalg_core sketch_and_precondition (srht, direct)"}, "ms",
             "`numpy.linalg.lstsq`", "ms", {"problem": "n=2^20 d=256", "impl": "numpy.linalg.lstsq (gelsd)"},
             accuracy="forward error {o[forward_error]:.0e} vs {p[forward_error]:.0e}"),
    Headline("regression", "least squares 2¹⁷ × 64, sketch-and-precondition",
             {"problem": "n=2^17 d=64", "impl": "linalg_core sketch_and_precondition (srht, direct)"}, "ms",
             "`torch.linalg.lstsq` (gelsy)", "ms", {"problem": "n=2^17 d=64", "impl": "torch.linalg.lstsq (gelsy)"},
             accuracy="forward error {o[forward_error]:.0e} vs {p[forward_error]:.0e}"),
    Headline("distributed", "Dask lstsq 400000 × 64 (κ = 10⁶), 2 workers",
             {"case": "lstsq 400000x64 (κ=1e6), 2 worker(s)"}, "linalg_core_s", "`dask.array.linalg.lstsq`",
             "dask_lstsq_s", unit="s", accuracy="error {o[err]:.0e} vs {o[dask_err]:.0e}"),
    Headline("distributed", "Dask rsvd 100000 × 256, r = 16, 2 workers", {"case": "rsvd 100000x256 r=16, 2 worker(s)"},
             "linalg_core_s", "`dask.array.linalg.svd_compressed`", "dask_svd_compressed_s", unit="s",
             accuracy="residual ratio {o[err]:.3f} vs {o[dask_err]:.3f}"),
    # quant
    Headline("quant", "NF4 quantize 4096² fp32 (double quant)",
             {"case": "NF4 quantize 4096x4096 float32 (double quant)"}, "linalg_core_ms",
             "bitsandbytes `quantize_4bit`", "baseline_ms", accuracy="identical bytes: {o[bit_exact]}"),
    Headline("quant", "NF4 dequantize 4096² → fp32, fresh output", {"case": "NF4 dequantize 4096x4096 -> float32"},
             "linalg_core_ms", "bitsandbytes `dequantize_4bit`", "baseline_ms",
             accuracy="identical values: {o[bit_exact]}"),
    Headline("quant", "GGUF Q4_0 quantize 2048 × 4096 fp32", {"case": "re:^GGUF q4_0 quantize"}, "linalg_core_ms",
             "`gguf.quants.quantize` (numpy)", "baseline_ms",
             accuracy="identical bytes: {o[bit_exact]}; {o[vs_copy]:.1f}× the copy floor"),
    Headline("quant", "GGUF Q8_0 quantize 2048 × 4096 fp32", {"case": "re:^GGUF q8_0 quantize"}, "linalg_core_ms",
             "`gguf.quants.quantize` (numpy)", "baseline_ms",
             accuracy="identical bytes: {o[bit_exact]}; {o[vs_copy]:.1f}× the copy floor"),
    Headline("quant", "GGUF Q4_0 dequantize → fp32, fresh output", {"case": "re:^GGUF q4_0 dequantize"},
             "linalg_core_ms", "`gguf.quants.dequantize` (numpy)", "baseline_ms",
             accuracy="identical: {o[bit_exact]}; {o[vs_copy]:.2f}× a fresh tensor's fill; `out=` {o[out_ms]:.1f} ms"),
    Headline("quant", "GGUF Q8_0 dequantize → fp32, fresh output", {"case": "re:^GGUF q8_0 dequantize"},
             "linalg_core_ms", "`gguf.quants.dequantize` (numpy)", "baseline_ms",
             accuracy="identical: {o[bit_exact]}; {o[vs_copy]:.2f}× a fresh tensor's fill; `out=` {o[out_ms]:.1f} ms"),
    # qmatmul
    Headline("qmatmul", "DGQ A8W4 GEMV, 4096² weight, M = 1", {"shape": "4096x4096 M=1"}, "qmatmul_ms",
             "fp32 `torch.matmul`", "fp32_ms", accuracy="rel. error {o[rel_err]:.3f} (4-bit weights)"),
    Headline("qmatmul", "DGQ A8W4, 4096² weight, M = 128", {"shape": "4096x4096 M=128"}, "qmatmul_ms",
             "fp32 `torch.matmul`", "fp32_ms", accuracy="rel. error {o[rel_err]:.3f}"),
    Headline("qmatmul", "DGQLinear 384 → 1536, one token",
             {"shape": "MiniLM intermediate 384->1536 M=1 (layer call)"},
             "layer_us", "fp32 `nn.Linear`", "fp32_linear_us", unit="us", ratio="x_vs_fp32_linear",
             accuracy="rel. error {o[rel_err]:.3f}"),
    Headline("qmatmul", "DGQLinear 384 → 384, one token", {"shape": "MiniLM query 384->384 M=1 (layer call)"},
             "layer_us", "fp32 `nn.Linear`", "fp32_linear_us", unit="us", ratio="x_vs_fp32_linear",
             accuracy="rel. error {o[rel_err]:.3f}"),
    # threads: one busy neighbouring process on the 2 cores, ours and the peer in the same child
    Headline("threads", "rsvd 2048 × 512, r = 32, one busy neighbour, default settings",
             {"workload": "rsvd 2048x512 r=32", "setting": "default"}, "ours contended ms",
             "`torch.svd_lowrank`", "peer contended ms", ratio="peer/ours contended",
             accuracy="{o[ours slowdown]:.1f}× its quiet time (peer {o[peer slowdown]:.1f}×)"),
    Headline("threads", "the same with `OMP_WAIT_POLICY=PASSIVE`",
             {"workload": "rsvd 2048x512 r=32", "setting": "passive"}, "ours contended ms",
             "`torch.svd_lowrank`", "peer contended ms", ratio="peer/ours contended",
             accuracy="{o[ours slowdown]:.1f}× its quiet time (peer {o[peer slowdown]:.1f}×)"),
    Headline("threads", "PiSSA on MiniLM-L6, one busy neighbour, `OMP_WAIT_POLICY=PASSIVE`",
             {"workload": "PiSSA MiniLM-L6 r=16", "setting": "passive"}, "ours contended ms",
             _PEFT, "peer contended ms", ratio="peer/ours contended",
             accuracy="{o[ours slowdown]:.1f}× its quiet time (peer {o[peer slowdown]:.1f}×)"),
    Headline("qmatmul", "per call: DGQLinear 384 → 384, M = 1, vs its full Python path",
             {"shape": "MiniLM query 384->384 M=1 (per call)", "impl": "DGQLinear(x)"}, "layer_us",
             "the same layer through the full Python path", "layer_us",
             {"shape": "MiniLM query 384->384 M=1 (per call)", "impl": "DGQLinear(x), full Python path"}, unit="us",
             ratio="x_vs_full_path"),
    # optim: one GaLore basis update at equal captured gradient energy
    Headline("optim", "GaLore basis update, 4096 × 11008 gradient, r = 128 (warm-started)",
             {"case": "synthetic drifting gradient (σ_i = 1/i)", "shape": "4096x11008"}, "ours_ms",
             "galore-torch (full SVD)", "galore_svd_ms", ratio="speedup",
             accuracy="captured energy {o[energy_vs_exact]:.6f} of exact"),
    Headline("optim", "GaLoreAdamW, MiniLM-L6 fine-tune, 300 steps: time in optimizer steps",
             {"case": "fine-tune MiniLM-L6 300 steps (linalg_core GaLoreAdamW)"}, "optimizer_s",
             "galore-torch GaLoreAdamW", "optimizer_s",
             {"case": "fine-tune MiniLM-L6 300 steps (galore-torch GaLoreAdamW)"}, unit="s",
             accuracy="held-out loss {o[held_out_after]:.3f} vs {p[held_out_after]:.3f}"),
    # nola: a training step of the adapter, against LoRA's (the target is within 1.5x of LoRA)
    Headline("nola", "NOLA step (fwd + bwd), 384 → 1536, r = 8, k = 1024, 4096 tokens",
             {"case": "intermediate 384x1536 r=8 k=1024 tokens=4096"}, "nola_ms", "peft LoRA (stores A, B)",
             "lora_ms", accuracy="2k trained coefficients vs LoRA's r·(in + out); bases never stored"),
    # vsa
    Headline("vsa", "MBAT binding, 256 vectors, d = 4096, Hadamard rounds", {"case": "bind 256 vectors, d=4096"},
             "hadamard_ms", "dense Haar matmul", "haar_ms"),
]

__all__ = ["Headline", "HEADLINES", "readme_table", "quality_table", "update_readme", "readme_block", "verdict", "load"]
