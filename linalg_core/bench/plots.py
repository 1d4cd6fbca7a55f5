"""Figures of the committed benchmark results: one PNG per family, drawn from its JSON.

``draw(results_json, out_png)`` draws the figure people read first for a family: accuracy
against time (Pareto fronts) for the randomized SVD, least squares, adapter initialisation,
sampling; error against bits for quantization; recall against dimension for VSA; speedup bars
(ours over the peer, log scale, 1x line) with the copy / GEMM floor marked for the kernels.
``draw_all(results_dir, out_dir)`` draws every ``<family>.json`` it finds into
``<out_dir>/<family>.png``. From the command line::

    python -m linalg_core.bench.plots [results_dir] [out_dir]

Rows are read tolerantly: the first results format (``{"machine", "rows", "notes"}``) and
schema 2 (``"schema"``, ``"environment"``, ``"tables"``, the same row keys plus extra fields)
are both accepted, and a row without the keys a panel needs is left out of that panel, never
an error. Needs matplotlib (``pip install 'linalg_core[bench]'``); uses the Agg canvas and no
pyplot state.
"""

from __future__ import annotations

import json
import math
import os
import re
import sys
from pathlib import Path

__all__ = ["draw", "draw_all", "draw_curves", "FAMILIES"]

DPI = 110
FIGSIZE = (12.0, 7.0)
OURS, TORCH, SKLEARN, PEER2, REF = "C0", "C1", "C2", "C4", "0.45"


# ----------------------------------------------------------------------------- reading


def _load(path: Path):
    """(family or None, meta, rows, notes) of a results file, whatever its schema."""
    with open(path) as f:
        data = json.load(f)
    if not isinstance(data, dict):
        return None, {}, [], []
    meta = {}
    for key in ("machine", "environment"):
        if isinstance(data.get(key), dict):
            meta.update({k: v for k, v in data[key].items() if k not in meta})
    rows = data.get("rows")
    rows = list(rows) if isinstance(rows, list) else []
    if not rows:  # schema 2 may keep the rows inside its tables only
        tables = data.get("tables")
        tables = tables.values() if isinstance(tables, dict) else tables if isinstance(tables, list) else []
        for t in tables:
            if isinstance(t, dict) and isinstance(t.get("rows"), list):
                rows.extend(t["rows"])
    rows = [r for r in rows if isinstance(r, dict)]
    notes = [n for n in data["notes"] if isinstance(n, str)] if isinstance(data.get("notes"), list) else []
    family = data.get("family") if isinstance(data.get("family"), str) else None
    return family, meta, rows, notes


def _num(row: dict, key: str, *, positive: bool = False):
    """row[key] as a finite float, or None (missing, text such as 'fails', bool, NaN)."""
    v = row.get(key)
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    v = float(v)
    if not math.isfinite(v) or (positive and v <= 0):
        return None
    return v


def _str(row: dict, key: str):
    v = row.get(key)
    return v if isinstance(v, str) else None


def _title(fig, family: str, what: str, meta: dict) -> None:
    def pick(*keys):
        for k in keys:
            if meta.get(k) not in (None, "", "none"):
                return meta[k]
        return None

    parts = [str(x) for x in (pick("cpu", "cpu_model", "processor"),) if x]
    kernels = pick("cpu_kernels", "isa")
    if kernels and parts:
        parts[0] += f" ({kernels})"
    threads = pick("threads", "torch_threads", "num_threads")
    if threads is not None:
        parts.append(f"{threads} threads")
    gpu = pick("gpu", "device_name")
    if gpu:
        parts.append(str(gpu))
    date = pick("date", "timestamp", "time")
    if date:
        parts.append(str(date))
    commit = pick("commit", "git_commit")
    if commit:
        parts.append(f"commit {commit}")
    fig.suptitle(f"{family}: {what}\n" + ", ".join(parts), fontsize=10.5)


def _figure(nrows=1, ncols=1, **kw):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=FIGSIZE, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False, **kw)
    return fig, [ax for row in axes for ax in row]


def _fmt_tick(v, _pos=None) -> str:
    if v <= 0:
        return ""
    if 1e-3 <= v < 1e5:
        return f"{v:g}"
    e = math.log10(v)
    return f"1e{round(e)}" if abs(e - round(e)) < 1e-9 else f"{v:.0e}"


def _finish(fig) -> None:
    """Plain tick labels on every log axis (1, 2, 5 per decade on short ranges, decades on long ones)."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    for ax in fig.axes:
        if not ax.axison:
            continue
        for axis, lim in ((ax.xaxis, ax.get_xlim()), (ax.yaxis, ax.get_ylim())):
            if axis.get_scale() != "log" or min(lim) <= 0:
                continue
            decades = math.log10(max(lim) / min(lim))
            subs = (1.0, 2.0, 5.0) if decades < 2.2 else (1.0,)
            numticks = 8 if axis is ax.xaxis else 10
            axis.set_major_locator(LogLocator(base=10, subs=subs, numticks=numticks))
            axis.set_major_formatter(FuncFormatter(_fmt_tick))
            axis.set_minor_formatter(NullFormatter())


def _save(fig, out_png: Path) -> None:
    """Write the figure as a 256-colour PNG (a third of the size of the RGBA one, same look)."""
    _finish(fig)
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    try:
        from PIL import Image
    except ImportError:  # matplotlib needs Pillow, but a plain RGBA PNG is fine too
        fig.savefig(out_png, dpi=DPI, metadata={"Software": None})
        return
    fig.set_dpi(DPI)
    fig.canvas.draw()
    w, h = fig.canvas.get_width_height(physical=True)
    im = Image.frombuffer("RGBA", (w, h), bytes(fig.canvas.buffer_rgba()), "raw", "RGBA", 0, 1)
    im.convert("RGB").quantize(colors=256, method=Image.Quantize.FASTOCTREE).save(out_png, format="PNG",
                                                                                  compress_level=9)


def _short(text: str, n: int = 48) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def _front(points):
    """The Pareto front (lower time and lower error) of [(t, e), ...], sorted by time."""
    front, best = [], math.inf
    for t, e in sorted(points):
        if e < best:
            front.append((t, e))
            best = e
    return front


def _legend_axis(ax, handles, labels, title=None):
    ax.axis("off")
    ax.legend(handles, labels, loc="center", fontsize=8, title=title, title_fontsize=8, frameon=False)


def _unique_legend(axes):
    seen = {}
    for ax in axes:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            seen.setdefault(lab, h)
    return list(seen.values()), list(seen.keys())


# ----------------------------------------------------------------------------- speedup bars


def _bars(ax, groups, *, xlabel="speedup (peer time / ours, > 1: ours faster)", floor_label=None):
    """Horizontal bars on a log axis, 1x line.

    groups: [(label, [(series, ratio, ceiling or None), ...]), ...]. ``ceiling`` is the ratio
    the peer's time has over the floor (the speedup ours would show at the copy / GEMM floor),
    drawn as a black tick on the bar's row."""
    series = []
    for _, items in groups:
        for s, _, _ in items:
            if s not in series:
                series.append(s)
    colors = {s: f"C{i}" for i, s in enumerate(series)}
    k = max((len(items) for _, items in groups), default=1)
    height = 0.8 / k
    yticks, ylabels, floor_drawn, labelled = [], [], False, set()
    values = []
    for gi, (label, items) in enumerate(groups):
        y0 = len(groups) - 1 - gi
        yticks.append(y0)
        ylabels.append(label)
        for i, (s, r, ceil) in enumerate(items):
            y = y0 + height * (len(items) / 2 - i - 0.5)
            ax.barh(y, r, height=height * 0.9, color=colors[s], label=s if s not in labelled else None, zorder=2)
            labelled.add(s)
            # the value after the bar, or after the floor tick when that stands just past the bar's end
            at = ceil if ceil is not None and r < ceil < 2.5 * r else r
            ax.annotate(f"{r:.3g}×", (at, y), xytext=(3, 0), textcoords="offset points", va="center",
                        fontsize=6.5, zorder=4)
            values.append(r)
            if ceil is not None:
                ax.plot([ceil, ceil], [y - height * 0.45, y + height * 0.45], color="k", lw=1.4, zorder=3,
                        label=(floor_label or "at the floor") if not floor_drawn else None)
                values.append(ceil)
                floor_drawn = True
    ax.set_xscale("log")
    if values:
        lo, hi = min(values + [1.0]), max(values + [1.0])
        ax.set_xlim(lo / 2.0, hi * 3.0)
    ax.axvline(1.0, color="k", lw=0.8, ls="--", zorder=1)
    ax.set_yticks(yticks)
    ax.set_yticklabels(ylabels, fontsize=7)
    ax.set_ylim(-0.6, len(groups) - 0.4)
    ax.set_xlabel(xlabel, fontsize=8)
    ax.tick_params(axis="x", labelsize=7)
    ax.grid(axis="x", alpha=0.3, which="both")
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.07),
              ncol=2 if len(series) > 2 and max(map(len, series)) < 36 else 1, frameon=False)


def _ratio(row, num_key, den_key, ratio_key=None):
    a, b = _num(row, num_key, positive=True), _num(row, den_key, positive=True)
    if a is not None and b is not None:
        return a / b
    return _num(row, ratio_key, positive=True) if ratio_key else None


def _ceiling(row, peer_key, floor_key):
    a, b = _num(row, peer_key, positive=True), _num(row, floor_key, positive=True)
    return a / b if a is not None and b is not None else None


# ----------------------------------------------------------------------------- families


def _impl_family(impl: str, dtype: str | None):
    s = impl.lower()
    if s.startswith("linalg_core") or s.startswith("rsvd ") or s.startswith("ours"):
        return ("linalg_core (bf16 input)", "C3") if dtype == "bf16" else ("linalg_core", OURS)
    if "svd_lowrank" in s:
        return "torch.svd_lowrank", TORCH
    if "sklearn" in s or "scikit" in s:
        return "scikit-learn randomized_svd", SKLEARN
    if "linalg.svd" in s or "full svd" in s or "eigh" in s:
        return "full SVD (LAPACK)", REF
    return None


def _rank_key(r):
    return (0, r, "") if isinstance(r, (int, float)) else (1, 0, str(r))


def _lowrank(meta, rows, notes, fig_out):
    """σ error vs time, Pareto fronts per implementation, one panel per test matrix."""
    panels = {}
    for r in rows:
        m, impl = _str(r, "matrix"), _str(r, "impl")
        t, e = _num(r, "ms", positive=True), _num(r, "sigma_err")
        rank = r.get("rank") if isinstance(r.get("rank"), (int, float, str)) else None
        if m is None or impl is None or t is None or e is None or e < 0:
            continue
        fam = _impl_family(impl, _str(r, "dtype"))
        if fam is None:
            continue
        key = m
        grid = m.startswith("defaults grid: ")
        if grid:  # our settings grid is drawn on the panel of its matrix
            key = m[len("defaults grid: "):]
            fam = ("linalg_core, other settings (grid)", "#9ecae1")
        panels.setdefault(key, []).append((fam, rank, t, e, impl))
    # panels where ours meets a peer
    keys = [k for k, pts in panels.items()
            if any(p[0][1] == OURS for p in pts) and any(p[0][1] in (TORCH, SKLEARN, REF) for p in pts)]
    if not keys:
        return False
    keys = keys[:5]
    ncols = 3 if len(keys) > 2 else len(keys) + 1
    nrows = math.ceil((len(keys) + 1) / ncols)
    fig, axes = _figure(nrows, ncols)
    markers = {16: "o", 32: "D", 64: "s", 128: "^"}
    ranks_seen = set()
    for ax, key in zip(axes, keys):
        pos = [p[3] for p in panels[key] if p[3] > 0]
        zero = min(pos) / 4 if pos else 1e-9
        pts = [(f, rk, t, e if e > 0 else zero, i) for f, rk, t, e, i in panels[key]]
        by = {}
        for fam, rank, t, e, impl in pts:
            by.setdefault((fam, rank), []).append((t, e))
        for (fam, rank), tes in sorted(by.items(), key=lambda kv: (kv[0][0][0], str(kv[0][1]))):
            name, color = fam
            mk = markers.get(rank, "v")
            ranks_seen.add(rank)
            grid = "grid" in name
            ax.scatter([t for t, _ in tes], [e for _, e in tes], s=14 if grid else 26, marker=mk, color=color,
                       alpha=0.9, zorder=2 if grid else 3, label=name, edgecolors="none")
            fr = _front(tes)
            if len(fr) > 1 and not grid:
                ax.plot([t for t, _ in fr], [e for _, e in fr], "-", color=color, lw=1, alpha=0.8, zorder=1)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(_short(key, 60), fontsize=9)
        ax.set_xlabel("time (ms)", fontsize=8)
        ax.set_ylabel("max rel. error of the top-r σ", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3, which="both")
        if any(e == 0 for _, _, _, e, _ in panels[key]):
            ax.axhline(zero, color="0.75", lw=0.8, ls=":", zorder=0)
            ax.text(0.99, 0.01, "dotted: exact (error 0)", transform=ax.transAxes, fontsize=6.5, color="0.4",
                    ha="right")
    for ax in axes[len(keys):]:
        ax.axis("off")
    from matplotlib.lines import Line2D

    handles, labels = _unique_legend(axes[: len(keys)])
    handles = [Line2D([], [], marker="o", ls="-", color=h.get_facecolor()[0], ms=5) for h in handles]
    handles += [Line2D([], [], marker=markers.get(rk, "v"), ls="", color="0.3", ms=5)
                for rk in sorted(ranks_seen, key=_rank_key)]
    labels += [f"rank r = {rk}" for rk in sorted(ranks_seen, key=_rank_key)]
    _legend_axis(axes[-1], handles, labels, title="lines: each method's Pareto front per rank\n(lower left is better)")
    _title(fig, "lowrank", "accuracy vs time of rank-r SVDs, every setting measured (lower left is better)", meta)
    _save(fig, fig_out)
    return True


def _rsvd_adaptive(meta, rows, notes, fig_out):
    """The adaptive default at PEFT grade against the cheapest PEFT-grade peer setting."""
    groups = []
    for r in rows:
        m = _str(r, "matrix")
        if m is None or "rank" not in r:
            continue
        items = []
        s = _ratio(r, "torch_ms", "ms", "vs_torch_equal_acc")
        if s is not None:
            items.append(("vs cheapest PEFT-grade torch.svd_lowrank setting (hindsight)", s, None))
        s = _ratio(r, "fixed_ms", "ms", "vs_hindsight_fixed")
        if s is not None:
            items.append(("vs our own best fixed setting (hindsight)", s, None))
        if items:
            grade = "" if r.get("peft_grade") in (True, None) else "  [not PEFT grade]"
            groups.append((f"{m.replace('adaptive: ', '')}, r={r['rank']}{grade}", items))
    if not groups:
        return False
    fig, (ax,) = _figure()
    _bars(ax, groups,
          xlabel="speedup of linalg_core.rsvd(defaults) at equal accuracy (peer time / ours; > 1: ours faster)")
    _title(fig, "rsvd_adaptive", "adaptive default vs the hindsight-best fixed settings, all at PEFT-grade accuracy",
           meta)
    _save(fig, fig_out)
    return True


def _regression(meta, rows, notes, fig_out):
    """Forward error vs time per problem; ℓ∞ error per method on coherent problems."""
    panels, linf = {}, {}
    for r in rows:
        p, impl = _str(r, "problem"), _str(r, "impl")
        if p is None or impl is None:
            continue
        t, e = _num(r, "ms", positive=True), _num(r, "forward_error")
        if t is not None and e is not None and e >= 0:
            panels.setdefault(p, []).append((impl, t, max(e, 1e-17)))
        elif _num(r, "eps_inf") is not None and t is None:
            linf.setdefault(p, []).append((impl, _num(r, "eps_inf"), _num(r, "eps_inf_p95"), _num(r, "eps_inf_max")))
    if not panels and not linf:
        return False
    keys = list(panels)[:4]
    n = len(keys) + (1 if linf else 0)
    ncols = 3 if n + 1 > 4 else max(n + 1, 2)
    nrows = math.ceil((n + 1) / ncols)
    fig, axes = _figure(nrows, ncols)
    impls = []
    for pts in panels.values():
        for impl, *_ in pts:
            if impl not in impls:
                impls.append(impl)
    style = {}
    peers = [i for i in impls if not i.lower().startswith("linalg_core")]
    ours = [i for i in impls if i.lower().startswith("linalg_core")]
    for j, i in enumerate(ours):
        style[i] = (f"C{j}", "o")
    for j, i in enumerate(peers):
        style[i] = (("0.15", "0.45", "0.7", "0.3")[j % 4], ("s", "^", "v", "D")[j % 4])
    for ax, key in zip(axes, keys):
        for impl, t, e in panels[key]:
            c, mk = style[impl]
            ax.scatter([t], [e], color=c, marker=mk, s=34, label=impl, zorder=3)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(key, fontsize=9)
        ax.set_xlabel("time (ms)", fontsize=8)
        ax.set_ylabel("forward error ‖x − x_LAPACK‖ / ‖x_LAPACK‖", fontsize=7.5)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3, which="both")
    handles, labels = _unique_legend(axes[: len(keys)])
    if linf:
        ax = axes[len(keys)]
        names = []
        for pts in linf.values():
            for impl, *_ in pts:
                if impl not in names:
                    names.append(impl)
        probs = list(linf)
        w = 0.8 / max(len(probs), 1)
        for pi, p in enumerate(probs):
            xs, med, lo_err, hi_err = [], [], [], []
            for impl, m, p95, mx in linf[p]:
                xs.append(names.index(impl) + (pi - (len(probs) - 1) / 2) * w)
                med.append(m)
                top = mx if mx is not None else (p95 if p95 is not None else m)
                lo_err.append(0)
                hi_err.append(max(top - m, 0))
            m = re.search(r"\bm=\w+", p)
            lab = m.group(0) if m else re.sub(r"^coherent\s*", "", p)
            ax.bar(xs, med, width=w * 0.9, color=f"C{pi + 5}", label=_short(lab, 30),
                   yerr=[lo_err, hi_err], error_kw=dict(lw=0.8, capsize=2))
        ax.set_yscale("log")
        ax.set_xticks(range(len(names)))
        ax.set_xticklabels([n.replace("sketch_and_solve ", "s&s ") for n in names], rotation=30, ha="right",
                           fontsize=7)
        ax.set_ylabel("ℓ∞ error / bound (median, whisker: max)", fontsize=7.5)
        ax.set_title("ℓ∞ error: " + _short(probs[0].split(", m=")[0], 50) if probs else "",
                     fontsize=9)
        ax.tick_params(labelsize=7)
        ax.grid(axis="y", alpha=0.3, which="both")
        ax.legend(fontsize=7, title="sketch size", title_fontsize=7)
    for ax in axes[n:]:
        ax.axis("off")
    _legend_axis(axes[-1], handles, labels, title="least squares (lower left is better)")
    _title(fig, "regression", "least squares: accuracy vs time, and ℓ∞ error on coherent problems", meta)
    _save(fig, fig_out)
    return True


def _adapters(meta, rows, notes, fig_out):
    """Captured energy vs time, ours vs peft, per model; speedups over peft for every method."""
    panels, times = {}, {}
    for r in rows:
        m, impl = _str(r, "model"), _str(r, "impl")
        t = _num(r, "ms", positive=True)
        if m is None or impl is None or t is None:
            continue
        from_file = "from its file" in m
        base = m.split(", from its file")[0]
        times.setdefault((base, from_file), {})[impl] = t
        e = _num(r, "captured_energy")
        if e is not None:
            panels.setdefault(base, []).append((impl, from_file, t, e))
    # speedups: peft's method over ours, matched by the method's name
    groups = []
    for (base, from_file), d in times.items():
        items = []
        for impl, t in d.items():
            if not impl.startswith("linalg_core"):
                continue
            method = impl.split()[-1]
            peer = [k for k in d if k.startswith("peft") and method in k and "wrap" not in k and "full SVD" not in k]
            if peer:
                pm = min(peer, key=lambda k: ("niter" not in k, k))
                items.append((f"{method} vs {pm}", d[pm] / t, None))
        if items:
            label = _short(re.sub(r"\s*\((r=\d+)[^)]*\)", r" \1", base.replace(" (36 Linear layers)", "")
                                  .replace("-shaped set (4096x4096 x2, 11008x4096)", "-shaped")), 34)
            groups.append((label + (", from file, 1st call" if from_file else ""), items))
    if not panels and not groups:
        return False
    fig, axes = _figure(1, (1 if panels else 0) + (1 if groups else 0),
                        width_ratios=[1, 1.25] if panels and groups else None)
    if panels:
        ax = axes[0]
        models = list(panels)
        colors = {}
        for mi, key in enumerate(models):
            mk = "osD^v"[mi % 5]
            for impl, from_file, t, e in panels[key]:
                c = colors.setdefault(impl, OURS if impl.startswith("linalg_core") else
                                      (TORCH, "0.45", SKLEARN, PEER2)[sum(not k.startswith("linalg_core")
                                                                          for k in colors) % 4])
                ax.scatter([t], [e], s=46, marker=mk, facecolors="none" if from_file else c, edgecolors=c,
                           zorder=3, linewidths=1.3)
        from matplotlib.lines import Line2D

        handles = [Line2D([], [], marker="o", ls="", color=c, ms=6) for c in colors.values()]
        labels = list(colors)
        handles += [Line2D([], [], marker="osD^v"[mi % 5], ls="", color="0.3", ms=6) for mi in range(len(models))]
        labels += [_short(m.replace(" (36 Linear layers)", " (36 Linear)").replace(
            "-shaped set (4096x4096 x2, 11008x4096)", "-shaped set (4096² x2, 11008x4096)"), 60) for m in models]
        handles.append(Line2D([], [], marker="o", ls="", markerfacecolor="none", color="0.3", ms=6))
        labels.append("hollow: from its file, fresh process, first call")
        ax.legend(handles, labels, fontsize=6.8, loc="upper center", bbox_to_anchor=(0.5, -0.09), ncol=2,
                  frameon=False)
        ax.set_xscale("log")
        ax.set_xlabel("wall time of the whole-model initialisation (ms)", fontsize=8)
        ax.set_ylabel("captured energy / optimal (1 = exact top-r SVD)", fontsize=8)
        ax.set_title("PiSSA: captured energy vs time (upper left is better)", fontsize=9)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3, which="both")
    if groups:
        _bars(axes[-1], groups, xlabel="speedup over peft (peft time / ours, > 1: ours faster)")
        axes[-1].set_title("every initialiser: time vs peft's", fontsize=9)
    _title(fig, "adapters", "adapter initialisation, ours vs peft", meta)
    _save(fig, fig_out)
    return True


def _quant(meta, rows, notes, fig_out):
    """Error vs bits: LQ vs LoftQ vs NF, the budget plans vs uniform formats, and the end-to-end
    MiniLM quality of compress_model's plans vs quantize_'s uniform formats."""
    lq, budget, quality = {}, [], []
    for r in rows:
        case = _str(r, "case")
        if case is None:
            continue
        bits = _num(r, "bits", positive=True)
        if bits is not None and _num(r, "lq_rel_err") is not None:
            model = case.split(",")[0]
            lq.setdefault(model, []).append((bits, {k: _num(r, k) for k in
                                                   ("nf_rel_err", "loftq1_rel_err", "loftq5_rel_err", "lq_rel_err")}))
        elif bits is not None and _num(r, "plan_rel_err") is not None:
            budget.append((bits, _num(r, "plan_rel_err"), _num(r, "uniform_bits", positive=True),
                           _num(r, "uniform_rel_err"), _str(r, "uniform")))
        elif case.startswith("quality:") and _num(r, "total_bits", positive=True) is not None:
            mc, he = _num(r, "mean_cos"), _num(r, "hidden_rel_err")
            if mc is None or he is None:
                continue
            if "(uniform)" in case:
                m = re.search(r"quantize_ (\S+) \(uniform\)", case)
                kind, name = "uniform", m.group(1) if m else case
            else:
                m = re.search(r"budget ([\d.]+)", case)
                kind = "plan-weight" if "weight error" in case else "plan"
                name = f"plan {m.group(1)}" if m else case
            quality.append(dict(kind=kind, name=name, bits=_num(r, "total_bits"), mean_cos=mc, hidden_rel_err=he))
    n = (1 if lq else 0) + (1 if budget else 0) + (2 if quality else 0)
    if n == 0:
        return False
    fig, axes = _figure(2 if n > 2 else 1, 2 if n > 1 else 1)
    axes_iter = iter(axes)
    if lq:
        ax = next(axes_iter)
        labels = {"nf_rel_err": ("NF only", "0.5", "x:"), "loftq1_rel_err": ("LoftQ, 1 iteration", TORCH, "v--"),
                  "loftq5_rel_err": ("LoftQ, 5 iterations", SKLEARN, "^--"),
                  "lq_rel_err": ("linalg_core LQ (lq_decompose)", OURS, "o-")}
        from matplotlib.lines import Line2D

        handles, names = [], []
        for mi, (model, pts) in enumerate(lq.items()):
            pts.sort(key=lambda p: p[0])
            for key, (lab, c, fmt) in labels.items():
                xy = [(b, d[key]) for b, d in pts if d.get(key) is not None and d[key] > 0]
                if xy:
                    line, = ax.plot(*zip(*xy), fmt, color=c, alpha=1.0 if mi == 0 else 0.45, ms=5, lw=1)
                    if mi == 0:
                        handles.append(line)
                        names.append(lab)
            if mi < 2:
                handles.append(Line2D([], [], color="0.3", alpha=1.0 if mi == 0 else 0.45, lw=2))
                names.append(("dark: " if mi == 0 else "light: ") + _short(model, 40))
        ax.legend(handles, names, fontsize=6.8)
        ax.set_yscale("log")
        ax.set_xlabel("bits per weight of the quantized part", fontsize=8)
        ax.set_ylabel("‖W − (Q + L1 L2)‖_F / ‖W‖_F", fontsize=8)
        ax.set_title("quantized + low rank: weight error vs bits", fontsize=9)
    if budget:
        ax = next(axes_iter)
        budget.sort(key=lambda b: b[0])
        ax.plot([b[0] for b in budget], [b[1] for b in budget], "o-", color=OURS, label="bit-budget plan (LQ r=32)")
        for b in budget:
            if b[2] is not None and b[3] is not None:
                ax.plot(b[2], b[3], "s", color="0.45")
                ax.annotate(b[4] or "", (b[2], b[3]), xytext=(3, 3), textcoords="offset points", fontsize=6)
        ax.plot([], [], "s", color="0.45", label="best uniform format within the budget")
        ax.set_yscale("log")
        ax.set_xlabel("bits per weight", fontsize=8)
        ax.set_ylabel("weight error (rel. Frobenius)", fontsize=8)
        ax.set_title("MiniLM-L6: per-matrix formats under a bit budget", fontsize=9)
        ax.margins(x=0.15)
        ax.legend(fontsize=7)
    if quality:
        for value, label in ((lambda p: 1 - p["mean_cos"], "1 − mean cosine to fp32 embeddings"),
                             (lambda p: p["hidden_rel_err"], "rel. error of the last hidden state")):
            ax = next(axes_iter)
            plan = sorted((p for p in quality if p["kind"] == "plan"), key=lambda p: p["bits"])
            ax.plot([p["bits"] for p in plan], [value(p) for p in plan], "o-", color=OURS,
                    label="compress_model plan (output error, calibrated)")
            last = None
            for j, p in enumerate(plan):  # one label for budgets closer than 0.05 bits
                near = [q for q in plan[j:] if q["bits"] - p["bits"] < 0.05]
                if last is not None and p["bits"] - last < 0.05:
                    continue
                last = p["bits"]
                ax.annotate("/".join(q["name"][5:] for q in near), (p["bits"], value(p)), textcoords="offset points",
                            xytext=(5, 4), fontsize=6)
            weight = sorted((p for p in quality if p["kind"] == "plan-weight"), key=lambda p: p["bits"])
            ax.plot([p["bits"] for p in weight], [value(p) for p in weight], "x:", color="0.5",
                    label="plan on weight error (no calibration)")
            for i, p in enumerate(p for p in quality if p["kind"] == "uniform"):
                ax.plot(p["bits"], value(p), "s", color=f"C{i + 1}", label=f"quantize_ {p['name']} (uniform)")
            ax.set_xlabel("total bits per weight (everything stored)", fontsize=8)
            ax.set_title(f"MiniLM-L6 end to end: {label}", fontsize=9)
            ax.set_yscale("log")
            ax.legend(fontsize=6.2)
    for ax in axes:
        if ax.axison and ax.has_data():
            ax.grid(alpha=0.3, which="both")
            ax.tick_params(labelsize=7)
        else:
            ax.axis("off")
    _title(fig, "quant", "error vs bits (lower is better)", meta)
    _save(fig, fig_out)
    return True


def _vsa(meta, rows, notes, fig_out):
    """k-NN recall of JSON records encoded as hypervectors vs D; binding time vs d."""
    knn, bind = {}, []
    raw = None
    for r in rows:
        case = _str(r, "case")
        if case is None:
            continue
        m = re.search(r"\b[dD]=(\d+)", case)
        if _num(r, "knn5_origin_raw") is not None:
            raw = _num(r, "knn5_origin_raw")
        if m is None:
            continue
        d = int(m.group(1))
        for key in r:
            if key.startswith("knn") and _num(r, key) is not None:
                knn.setdefault(key, []).append((d, _num(r, key)))
        times = {k[: -len("_ms")]: _num(r, k, positive=True) for k in r if k.endswith("_ms")}
        times = {k: v for k, v in times.items() if v is not None}
        if times:
            bind.append((d, times, bool(r.get("haar_stand_in"))))
    if not knn and not bind:
        return False
    fig, axes = _figure(1, (1 if knn else 0) + (1 if bind else 0))
    it = iter(axes)
    if knn:
        ax = next(it)
        names = {"knn5_origin_vsa": "VSA encoding of every field", "knn5_origin_vsa_numeric_fields":
                 "VSA encoding of the numeric fields only"}
        for i, (key, pts) in enumerate(knn.items()):
            pts.sort()
            ax.plot(*zip(*pts), "o-", color=f"C{i}", label=names.get(key, key))
        if raw is not None:
            ax.axhline(raw, color="0.3", ls="--", lw=1, label="raw numeric columns, Euclidean")
        maj = next((float(x) for n in notes for x in re.findall(r"majority[^;]*?scores (0\.\d+)", n)), None)
        if maj is not None:
            ax.axhline(maj, color="0.6", ls=":", lw=1, label="always the majority class")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("hypervector dimension D", fontsize=8)
        ax.set_ylabel("5-NN accuracy of the held-out field (recall)", fontsize=8)
        ax.set_title("JSON records → hypervectors: 5-NN recall vs D (cars data set)", fontsize=9)
        ax.legend(fontsize=7)
    if bind:
        ax = next(it)
        bind.sort(key=lambda b: b[0])
        names = []
        for _, times, _ in bind:
            for k in times:
                if k not in names:
                    names.append(k)
        for i, k in enumerate(names):
            pts = [(d, t[k], s) for d, t, s in bind if k in t]
            ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-", color=f"C{i}", label=k.replace("_", " "))
            if k == "haar":
                st = [(d, t) for d, t, s in pts if s]
                if st:
                    ax.scatter(*zip(*st), s=90, facecolors="none", edgecolors="k", zorder=4,
                               label="haar: stand-in timing")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("dimension d", fontsize=8)
        ax.set_ylabel("time to bind 256 vectors (ms)", fontsize=8)
        ax.set_title("MBAT binding by orthogonal matrix kind", fontsize=9)
        ax.legend(fontsize=7)
    for ax in axes:
        ax.grid(alpha=0.3, which="both")
        ax.tick_params(labelsize=7)
    _title(fig, "vsa", "recall vs dimension, binding time vs dimension", meta)
    _save(fig, fig_out)
    return True


def _sampling(meta, rows, notes, fig_out):
    """ℓp regression from a sample: cost gap vs time per score kind, one panel per p."""
    panels = {}
    for r in rows:
        p, s = _str(r, "problem"), _str(r, "scores")
        g, t = _num(r, "median_cost_gap"), _num(r, "ms_per_seed", positive=True)
        if p is None or s is None or g is None or t is None:
            continue
        panels.setdefault(p, []).append((s, r.get("size"), t, max(g, 1e-6), _num(r, "max_cost_gap")))
    if not panels:
        return False
    keys = list(panels)[:3]
    fig, axes = _figure(1, len(keys) + 1, width_ratios=[1] * len(keys) + [0.55])
    kinds = []
    for pts in panels.values():
        for s, *_ in pts:
            if s not in kinds:
                kinds.append(s)
    sizes = sorted({p[1] for pts in panels.values() for p in pts if isinstance(p[1], (int, float))})
    mks = ["o", "s", "^", "D"]
    for ax, key in zip(axes, keys):
        for s, size, t, g, gmax in panels[key]:
            c = "0.5" if s == "uniform" else f"C{kinds.index(s)}"
            mk = mks[sizes.index(size) % 4] if size in sizes else "v"
            ax.scatter([t], [g], color=c, marker=mk, s=32, zorder=3, label=s)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(key, fontsize=9)
        ax.set_xlabel("time per seed (ms)", fontsize=8)
        ax.set_ylabel("median cost gap: cost(x̂)/cost(x*) − 1", fontsize=7.5)
        ax.axhline(1e-6, color="0.8", lw=0.8)
        ax.text(0.01, 0.01, "gap ≤ 1e-6 drawn at 1e-6", transform=ax.transAxes, fontsize=6.5, color="0.4")
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3, which="both")
    from matplotlib.lines import Line2D

    handles, labels = _unique_legend(axes[: len(keys)])
    handles += [Line2D([], [], marker=mks[i % 4], ls="", color="0.3") for i, _ in enumerate(sizes)]
    labels += [f"sample size {s}" for s in sizes]
    _legend_axis(axes[-1], handles, labels, title="scores used to sample")
    _title(fig, "sampling", "ℓp regression from a sample: accuracy vs time (lower left is better)", meta)
    _save(fig, fig_out)
    return True


def _optim(meta, rows, notes, fig_out):
    """GaLore's basis update: subspace quality vs time, ours vs the peer's full SVD; speedups of
    the update and of the fine-tune."""
    upd, bars, fine = [], [], {}
    for r in rows:
        case = _str(r, "case")
        if case is None:
            continue
        t, tp = _num(r, "ours_ms", positive=True), _num(r, "galore_svd_ms", positive=True)
        q = _num(r, "energy_vs_exact")
        shape = f" {r['shape']}" if _str(r, "shape") and r["shape"] not in case else ""
        label = _short(case.replace(".weight", ""), 46 - len(shape)) + shape
        if t is not None and tp is not None:
            if q is not None:
                upd.append((label, t, tp, q))
            bars.append((label, [("basis update vs galore-torch's torch.linalg.svd", tp / t, None)]))
        m = re.search(r"^(fine-tune .*?) \((.+)\)$", case)
        if m and _num(r, "wall_s", positive=True) is not None:
            fine.setdefault(m.group(1), {})[m.group(2)] = r
    for what, impls in fine.items():
        ours = next((v for k, v in impls.items() if k.startswith("linalg_core")), None)
        peer = next((v for k, v in impls.items() if not k.startswith("linalg_core")), None)
        if ours is None or peer is None:
            continue
        items = [("fine-tune wall time vs galore-torch", _num(peer, "wall_s") / _num(ours, "wall_s"), None)]
        a, b = _num(ours, "optimizer_s", positive=True), _num(peer, "optimizer_s", positive=True)
        if a and b:
            items.append(("optimizer steps vs galore-torch", b / a, None))
        la, lb = _num(ours, "loss_last10"), _num(peer, "loss_last10")
        loss = f" (final loss {la:.3g} vs {lb:.3g})" if la is not None and lb is not None else ""
        bars.append((_short(what, 40) + loss, items))
    if not upd and not bars:
        return False
    fig, axes = _figure(1, (1 if upd else 0) + (1 if bars else 0))
    if upd:
        ax = axes[0]
        for i, (label, t, tp, q) in enumerate(upd):
            ax.plot([t, tp], [q, 1.0], "-", color="0.8", lw=0.8, zorder=1)
            ax.scatter([t], [q], color=f"C{i % 10}", marker="o", s=40, zorder=3, label=label)
            ax.scatter([tp], [1.0], color=f"C{i % 10}", marker="s", s=40, zorder=3, facecolors="none")
        ax.set_xscale("log")
        ax.set_xlabel("time of one basis update (ms)", fontsize=8)
        ax.set_ylabel("gradient energy captured / exact top-r SVD's", fontsize=8)
        ax.set_title("basis update: quality vs time", fontsize=9)
        ax.scatter([], [], color="0.3", marker="o", s=30, label="● ours (warm-started subspace iteration)")
        ax.scatter([], [], color="0.3", marker="s", s=30, facecolors="none", label="□ galore-torch (full SVD)")
        ax.legend(fontsize=6.5, loc="upper center", bbox_to_anchor=(0.5, -0.09), ncol=2, frameon=False)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3, which="both")
    if bars:
        _bars(axes[-1], bars, xlabel="speedup (galore-torch time / ours, > 1: ours faster)")
    _title(fig, "optim", "GaLore projector and optimizer, linalg_core vs galore-torch", meta)
    _save(fig, fig_out)
    return True


def draw_curves(curves: dict, out_png, *, title: str = "", xlabel: str = "step", ylabel: str = "loss",
                smooth: int = 10) -> None:
    """Loss (or any per-step) curves, one line per label, as a PNG like the family figures.

    Args:
        curves: ``{label: [value per step, ...]}``.
        out_png: the PNG to write (a ``.png`` path).
        title, xlabel, ylabel: the axes' texts.
        smooth: a running mean over this many steps (1: raw values).

    Raises:
        TypeError: ``curves`` is not a dict of sequences of numbers, or ``out_png`` not a path.
        ValueError: ``out_png`` does not end in ``.png``, or ``smooth`` < 1.

    Example:
        >>> draw_curves({"ours": [3.0, 2.0, 1.5]}, "loss.png", title="fine-tune")  # doctest: +SKIP
    """
    out_png = _as_path("out_png", out_png)
    if out_png.suffix.lower() != ".png":
        raise ValueError(f"out_png must be a .png path, got {str(out_png)!r}")
    if not isinstance(curves, dict) or not all(
            isinstance(v, (list, tuple)) and all(isinstance(x, (int, float)) for x in v) for v in curves.values()):
        raise TypeError(f"curves must be a dict of lists of numbers, got {type(curves).__name__}")
    if isinstance(smooth, bool) or not isinstance(smooth, int) or smooth < 1:
        raise ValueError(f"smooth must be an integer >= 1, got {smooth!r}")
    fig, (ax,) = _figure()
    for i, (label, ys) in enumerate(curves.items()):
        ys = [float(y) for y in ys]
        sm = [sum(ys[max(0, j - smooth + 1): j + 1]) / len(ys[max(0, j - smooth + 1): j + 1])
              for j in range(len(ys))]
        ax.plot(range(len(sm)), sm, color=OURS if str(label).startswith("linalg_core") else f"C{i + 1}",
                label=f"{label}" + (f" ({smooth}-step mean)" if smooth > 1 else ""))
    ax.set_xlabel(xlabel, fontsize=9)
    ax.set_ylabel(ylabel, fontsize=9)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    if curves:
        ax.legend(fontsize=8)
    _save(fig, out_png)


def _kernel_groups(family, rows, notes):
    """Speedup bars per kernel family: [(panel title, groups, floor label)]."""
    out = []
    if family == "convert" or family == "random":
        peer = "torch_cast_and_check_ms" if family == "convert" else "torch_ms"
        floor = "copy_floor_ms" if family == "convert" else "floor_ms"
        groups = []
        for r in rows:
            case = _str(r, "case")
            s = _ratio(r, peer, "ours_ms", "x_vs_torch") if case else None
            if s is not None:
                groups.append((case, [("vs torch" + (" copy_ + isfinite check" if family == "convert" else ""), s,
                                       _ceiling(r, peer, floor))]))
        out.append(("", groups, "torch's time / the floor (" + ("copy_" if family == "convert" else "fill_")
                    + " of the same bytes)"))
    elif family == "sketch":
        big, small = [], []
        by = {}
        for r in rows:
            key = (_str(r, "op"), _str(r, "shape"))
            if None in key or _str(r, "impl") is None:
                continue
            by.setdefault(key, []).append(r)
        for (op, shape), rs in by.items():
            if op == "fwht":
                ours = [r for r in rs if r["impl"].startswith("linalg_core") and _num(r, "ms", positive=True)]
                if not ours:
                    continue
                best = min(ours, key=lambda r: r["ms"])
                xf = _num(best, "x_floor", positive=True)
                fl = _num(best, "ms") / xf if xf else None
                items = []
                for r in rs:
                    if r["impl"].startswith("linalg_core") or _num(r, "ms", positive=True) is None:
                        continue
                    items.append((f"fwht vs {_short(r['impl'].split(' (')[0], 30)}", r["ms"] / best["ms"],
                                  r["ms"] / fl if fl else None))
                if items:
                    big.append((f"fwht {shape}", items))
            elif op == "sketch":
                times = {r["impl"]: _num(r, "ms", positive=True) for r in rs}
                items = []
                for ours, peer, lab in (("linalg_core.srht", "torch.matmul(G, A) (G pre-generated)",
                                         "srht vs torch.matmul(G, A)"),
                                        ("linalg_core.srht", "torch.randn(m, n) + matmul",
                                         "srht vs torch.randn + matmul"),
                                        ("linalg_core.countsketch", "scipy clarkson_woodruff_transform",
                                         "countsketch vs scipy CWT")):
                    if times.get(ours) and times.get(peer):
                        items.append((lab, times[peer] / times[ours], None))
                if items:
                    big.append((_short(f"sketch {shape}", 50), items))
            elif op == "per call":
                floor = next((_num(r, "us_per_call", positive=True) for r in rs if r["impl"].startswith("floor")), None)
                for r in rs:
                    us = _num(r, "us_per_call", positive=True)
                    if us is None or "full Python path" in r["impl"]:
                        continue
                    items = []
                    for key, lab in (("vs_x_plus_1", "vs torch x + 1 (the cheapest torch op)"),
                                     ("vs_dense_matmul", "vs x @ H (dense Hadamard)")):
                        v = _num(r, key, positive=True)
                        if v is not None:
                            items.append((lab, 1.0 / v, (us / v) / floor if floor else None))
                    if items:
                        small.append((_short(f"{shape}: {r['impl']}", 52), items))
        if big:
            out.append(("large inputs", big, "peer time / the floor (one read + write of the data)"))
        if small:
            out.append(("per call, small inputs", small,
                        "peer time / floor (empty_like + transform)"))
    elif family == "qmatmul":
        kern, layer = [], []
        for r in rows:
            shape = _str(r, "shape")
            if shape is None:
                continue
            if _num(r, "qmatmul_ms", positive=True) is not None:
                items = []
                for peer, key, lab in (("fp32_ms", "x_vs_fp32", "vs fp32 matmul"),
                                       ("int_mm_ms", "x_vs_int_mm", "vs torch._int_mm (INT8)"),
                                       ("bnb_4bit_ms", "x_vs_bnb", "vs bitsandbytes 4-bit")):
                    s = _ratio(r, peer, "qmatmul_ms", key)
                    if s is not None:
                        items.append((lab, s, _ceiling(r, peer, "floor_ms")))
                if items:
                    path = f" [{r['path']}]" if _str(r, "path") else ""
                    kern.append((_short(shape.replace("MiniLM ", ""), 40) + path, items))
            elif "(layer call)" in shape:
                items = []
                for key, lab in (("x_vs_fp32_linear", "DGQLinear vs nn.Linear, eager"),
                                 ("x_vs_fp32_compiled", "DGQLinear vs nn.Linear, torch.compile")):
                    if _num(r, key, positive=True) is not None:
                        items.append((lab, _num(r, key), None))
                if items:
                    layer.append((shape.replace(" (layer call)", ""), items))
        if kern:
            out.append(("A8W4 kernel (INT8 activations)", kern, "peer time / the weight-read floor (M = 1)"))
        if layer:
            out.append(("layer call, M = 1", layer, None))
    elif family == "distributed":
        sp = []
        for r in rows:
            case = _str(r, "case")
            if case is None:
                continue
            s = _num(r, "speedup", positive=True)
            if s is not None:
                peer = "dask svd_compressed" if "rsvd" in case else "dask lstsq"
                sp.append((_short(case, 50), [(f"vs {peer}", s, None)]))
        if sp:
            out.append(("time vs dask (dask's own distributed solvers)", sp, None))
    elif family == "threads":
        groups = []
        for r in rows:
            w, s = _str(r, "workload"), _str(r, "setting")
            if w is None or s is None:
                continue
            items = []
            for key, lab in (("peer/ours quiet", "vs peer, quiet"), ("peer/ours contended", "vs peer, contended")):
                if _num(r, key, positive=True) is not None:
                    items.append((lab, _num(r, key), None))
            if _num(r, "contended: default/this", positive=True) is not None and s != "default":
                items.append(("contended: default setting / this setting", _num(r, "contended: default/this"), None))
            if items:
                groups.append((_short(f"{w} — {s}", 50), items))
        if groups:
            out.append(("", groups, None))
    return out


def _distributed_comm(ax, rows):
    pts = []
    for r in rows:
        case = _str(r, "case")
        mb = _num(r, "MB_between_workers", positive=True)
        if case is None or mb is None:
            continue
        pts.append((_short(case.replace(", 16 blocks", "").replace("scale-out ", ""), 40), mb,
                    _num(r, "model_MB_low", positive=True), _num(r, "model_MB_bound", positive=True),
                    _num(r, "dask_MB_between_workers", positive=True), _num(r, "data_MB", positive=True)))
    if not pts:
        return False
    ys = list(range(len(pts)))[::-1]
    done = set()

    def once(label):
        if label in done:
            return None
        done.add(label)
        return label

    for y, (lab, mb, lo, hi, dmb, data) in zip(ys, pts):
        ax.barh(y, mb, height=0.6, color=OURS, label=once("linalg_core: MB the workers sent"))
        if lo is not None and hi is not None:
            ax.plot([lo, hi], [y, y], "-", color="k", lw=3, alpha=0.45, label=once("model: [low, bound]"))
        elif hi is not None:
            ax.plot([hi], [y], "|", color="k", ms=12, label=once("model: bound (blocks x per-block results)"))
        if dmb is not None:
            ax.plot([dmb], [y], "D", color=TORCH, ms=5, label=once("dask: MB the workers sent"))
        if data is not None:
            ax.plot([data], [y], "x", color="0.3", ms=6, label=once("the matrix itself (never moves)"))
    ax.set_yticks(ys)
    ax.set_yticklabels([p[0] for p in pts], fontsize=7)
    ax.set_xscale("log")
    ax.set_xlabel("MB between workers in one call", fontsize=8)
    ax.set_title("traffic vs the model's bound", fontsize=9)
    ax.grid(axis="x", alpha=0.3, which="both")
    ax.tick_params(axis="x", labelsize=7)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.07), ncol=1, frameon=False)
    return True


_KERNEL_TITLES = {
    "convert": "dtype conversion with a NaN/Inf count in one pass vs torch (tick: speedup at the copy floor)",
    "random": "counter-based random numbers vs torch's generator (tick: speedup at the fill floor)",
    "sketch": "FWHT and sketches vs dense / SciPy peers (tick: speedup at the copy floor)",
    "qmatmul": "DGQ A8W4 quantized matmul vs fp32, INT8 and bitsandbytes (tick: speedup at the weight-read floor)",
    "distributed": "distributed least squares and rSVD over dask",
    "threads": "thread policy: speedup over the peer, quiet and with a competing process",
}


def _kernels(family):
    def draw_family(meta, rows, notes, fig_out):
        panels = [p for p in _kernel_groups(family, rows, notes) if p[1]]
        comm = family == "distributed" and any(_num(r, "MB_between_workers") is not None for r in rows)
        n = len(panels) + (1 if comm else 0)
        if n == 0:
            return False
        sizes = [len(p[1]) * max(len(p[1][0][1]), 1) for p in panels] + ([8] if comm else [])
        fig, axes = _figure(1, n, width_ratios=[max(s, 4) ** 0.5 for s in sizes] if n > 1 else None)
        for ax, (title, groups, floor_label) in zip(axes, panels):
            _bars(ax, groups, floor_label=floor_label)
            if title:
                ax.set_title(title, fontsize=9)
        if comm:
            _distributed_comm(axes[-1], rows)
        _title(fig, family, _KERNEL_TITLES.get(family, "speedups"), meta)
        _save(fig, fig_out)
        return True

    return draw_family


def _generic(family):
    """Families without a figure of their own: bars of every speedup-like column."""

    def draw_family(meta, rows, notes, fig_out):
        groups = []
        for r in rows:
            label = next((v for k, v in r.items() if isinstance(v, str) and k != "table"), None)
            items = [(k, _num(r, k), None) for k in r
                     if (k == "speedup" or k.startswith(("x_vs_", "vs_")) or k.endswith("_speedup"))
                     and _num(r, k, positive=True) is not None]
            if label and items:
                groups.append((_short(label, 50), items))
        if not groups:
            return False
        fig, (ax,) = _figure()
        _bars(ax, groups[:40])
        _title(fig, family, "speedups", meta)
        _save(fig, fig_out)
        return True

    return draw_family


FAMILIES = {
    "lowrank": _lowrank,
    "rsvd_adaptive": _rsvd_adaptive,
    "regression": _regression,
    "adapters": _adapters,
    "quant": _quant,
    "vsa": _vsa,
    "sampling": _sampling,
    "optim": _optim,
    **{f: _kernels(f) for f in ("convert", "random", "sketch", "qmatmul", "distributed", "threads")},
}


def _as_path(name: str, value) -> Path:
    if not isinstance(value, (str, os.PathLike)):
        raise TypeError(f"{name} must be a path (str or os.PathLike), got {type(value).__name__}: {value!r}")
    return Path(value)


def draw(results_json, out_png) -> bool:
    """Draw the figure of one family's results file.

    Which figure is the family's (``FAMILIES``; other families get bars of their speedup-like
    columns). Rows are read with :mod:`json` and looked at by key, so both results formats work
    (``{"machine", "rows", "notes"}`` and schema 2), and a row without what a panel needs is left
    out of that panel.

    Args:
        results_json: ``benchmarks/results/<family>.json`` (the family is the file's
            ``"family"`` field, else its stem).
        out_png: the PNG to write (a ``.png`` path; its folder is created).

    Returns:
        True when the figure was written; False when the file has no rows the family's figure
        can use (nothing is written then).

    Raises:
        TypeError: an argument is not a path.
        ValueError: ``out_png`` does not end in ``.png``.
        FileNotFoundError: ``results_json`` is not a file.
        ImportError: matplotlib is not installed (``pip install 'linalg_core[bench]'``).
        json.JSONDecodeError: the file is not JSON.

    Example:
        >>> from linalg_core.bench.plots import draw
        >>> draw("benchmarks/results/lowrank.json", "benchmarks/lowrank.png")  # doctest: +SKIP
        True
    """
    results_json, out_png = _as_path("results_json", results_json), _as_path("out_png", out_png)
    if out_png.suffix.lower() != ".png":
        raise ValueError(f"out_png must be a .png path, got {str(out_png)!r}")
    if not results_json.is_file():
        raise FileNotFoundError(f"results_json {str(results_json)!r} is not a file")
    import matplotlib  # noqa: F401  (fail here, before reading, when it is missing)

    family, meta, rows, notes = _load(results_json)
    family = family or results_json.stem
    if not rows:
        return False
    fn = FAMILIES.get(family, _generic(family))
    return bool(fn(meta, rows, notes, out_png))


def draw_all(results_dir, out_dir) -> list[Path]:
    """Draw ``<out_dir>/<family>.png`` for every ``<results_dir>/<family>.json``.

    Args:
        results_dir: the folder of results files (``benchmarks/results``).
        out_dir: where the PNGs go (``benchmarks``, next to RESULTS.md; created if missing).

    Returns:
        The PNGs written, in the order of the family names (families with nothing to plot are
        left out).

    Raises:
        TypeError: an argument is not a path.
        ValueError: ``results_dir`` is not a folder.

    Example:
        >>> from linalg_core.bench.plots import draw_all
        >>> [p.name for p in draw_all("benchmarks/results", "benchmarks")]  # doctest: +SKIP
        ['adapters.png', 'convert.png', ...]
    """
    results_dir, out_dir = _as_path("results_dir", results_dir), _as_path("out_dir", out_dir)
    if not results_dir.is_dir():
        raise ValueError(f"results_dir {str(results_dir)!r} is not a folder")
    written = []
    for js in sorted(results_dir.glob("*.json")):
        png = out_dir / f"{js.stem}.png"
        if draw(js, png):
            written.append(png)
    return written


def _default_dirs():
    for root in (Path.cwd(), Path(__file__).resolve().parents[2]):
        if (root / "benchmarks" / "results").is_dir():
            return root / "benchmarks" / "results", root / "benchmarks"
    return None, None


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if any(a in ("-h", "--help") for a in argv) or len(argv) > 2:
        print(__doc__.strip().splitlines()[0] + "\n\nusage: python -m linalg_core.bench.plots [results_dir] [out_dir]")
        return 0 if len(argv) <= 2 else 2
    res, out = _default_dirs()
    res = Path(argv[0]) if argv else res
    out = Path(argv[1]) if len(argv) > 1 else (out if not argv else res.parent)
    if res is None or not Path(res).is_dir():
        print("plots: no results folder (give one: python -m linalg_core.bench.plots RESULTS_DIR [OUT_DIR])",
              file=sys.stderr)
        return 2
    for png in draw_all(res, out):
        print(png)
    return 0


if __name__ == "__main__":
    sys.exit(main())
