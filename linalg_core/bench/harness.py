"""The benchmark harness shared by every family module ``linalg_core/bench/<family>.py``.

A family module defines ``run(report: Report, quick: bool)``, which times linalg_core next to
the tool users would otherwise call *in the same run* (:func:`measure`) and adds rows with
time and accuracy. :func:`run_families` prints each table, saves JSON and CSV under
``benchmarks/results/`` and replaces the family's section of ``benchmarks/RESULTS.md``, with
the machine, thread count, commit and date.
"""

from __future__ import annotations

import csv
import datetime
import json
import os
import platform
import re
import statistics
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

import linalg_core


@dataclass(frozen=True)
class Stats:
    """Wall-clock statistics of repeated calls, in seconds."""

    median: float
    q1: float
    q3: float
    best: float
    repeats: int

    @property
    def spread(self) -> float:
        """Interquartile range relative to the median."""
        return (self.q3 - self.q1) / self.median if self.median > 0 else 0.0


def _sync():
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


def measure(fn, *, repeats: int = 7, warmup: int = 1, budget_s: float = 20.0) -> Stats:
    """Time ``fn()``: ``warmup`` untimed calls, then up to ``repeats`` timed ones (fewer when
    the calls exceed ``budget_s`` in total, at least 3)."""
    for _ in range(warmup):
        fn()
    _sync()
    times = []
    start = time.perf_counter()
    while len(times) < repeats and (len(times) < 3 or time.perf_counter() - start < budget_s):
        t0 = time.perf_counter()
        fn()
        _sync()
        times.append(time.perf_counter() - t0)
    q = statistics.quantiles(times, n=4) if len(times) > 1 else [times[0]] * 3
    return Stats(statistics.median(times), q[0], q[2], min(times), len(times))


def per_call(fns: dict, *, number: int = 2000, rounds: int = 15) -> dict:
    """Per-call time of small calls, in µs: ``rounds`` rounds in which every function runs
    ``number`` times back to back, interleaved, so that a disturbance of the machine hits one
    round of every function rather than one function. Returns {name: median µs} and, under
    ``"rounds"``, {name: [µs per round]} for same-round ratios."""
    for f in fns.values():
        for _ in range(3):
            f()
    per = {k: [] for k in fns}
    for _ in range(rounds):
        for k, f in fns.items():
            _sync()
            t0 = time.perf_counter()
            for _ in range(number):
                f()
            _sync()
            per[k].append((time.perf_counter() - t0) / number * 1e6)
    out = {k: statistics.median(v) for k, v in per.items()}
    out["rounds"] = per
    return out


def ratio(rounds: dict, num: str, den: str) -> float:
    """Median over rounds of rounds[num] / rounds[den] (same-round ratios)."""
    return statistics.median(a / b for a, b in zip(rounds[num], rounds[den]))


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _commit() -> str:
    root = Path(__file__).resolve().parents[2]
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True,
                             timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return (rev or "unknown") + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def machine() -> dict:
    from linalg_core._ext import _C

    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "cpu_kernels": _C.cpu_isa() if _C is not None else "none",
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none",
        "torch": torch.__version__,
        "linalg_core": linalg_core.__version__,
        "commit": _commit(),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }


@dataclass
class Report:
    """Rows of one family's results plus free-text notes (floors, targets, caveats)."""

    family: str
    rows: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    machine: dict = field(default_factory=machine)
    quick: bool = False  # a --quick run: rows are printed marked as not the full run's regime

    def add(self, **row) -> dict:
        self.rows.append(row)
        print(("  [quick size] " if self.quick else "  ") + "  ".join(f"{k}={_fmt(v)}" for k, v in row.items()), flush=True)
        return row

    def note(self, text: str) -> None:
        self.notes.append(text)
        print("  note: " + text, flush=True)

    def markdown(self) -> str:
        m = self.machine
        head = (f"Machine: {m['cpu']}, {m['cores']} cores, {m['threads']} threads, linalg_core CPU kernels "
                f"{m['cpu_kernels']}, GPU {m['gpu']}; torch {m['torch']}; commit {m['commit']}; {m['date']}.")
        cols = list(dict.fromkeys(k for r in self.rows for k in r))
        lines = [head, "", "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
        lines += ["| " + " | ".join(_fmt(r.get(c, "")) for c in cols) + " |" for r in self.rows]
        if self.notes:
            lines += [""] + [f"- {n}" for n in self.notes]
        return "\n".join(lines)

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        (directory / f"{self.family}.json").write_text(
            json.dumps({"machine": self.machine, "rows": self.rows, "notes": self.notes}, indent=1, default=str))
        cols = list(dict.fromkeys(k for r in self.rows for k in r))
        with open(directory / f"{self.family}.csv", "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=cols)
            w.writeheader()
            w.writerows(self.rows)

    def update_results_md(self, path: Path) -> None:
        begin, end = f"<!-- bench:{self.family}:begin -->", f"<!-- bench:{self.family}:end -->"
        section = f"{begin}\n{self.markdown()}\n{end}"
        text = path.read_text() if path.exists() else "# Benchmark results\n"
        if begin in text:
            text = re.sub(re.escape(begin) + r".*?" + re.escape(end), lambda _: section, text, flags=re.S)
        else:
            text = text.rstrip() + f"\n\n## {self.family}\n\n{section}\n"
        path.write_text(text)


def _fmt(v) -> str:
    if isinstance(v, float):
        if v == 0 or 1e-3 <= abs(v) < 1e5:
            return f"{v:.4g}"
        return f"{v:.3e}"
    return str(v)


def checkout_root() -> Path | None:
    """The source checkout holding this package (an editable install), or None (an installed wheel)."""
    root = Path(__file__).resolve().parents[2]
    return root if (root / "benchmarks").is_dir() and (root / "pyproject.toml").is_file() else None


def benchmarks_dir() -> Path:
    """``benchmarks/`` of the source checkout (editable install), else of the current directory."""
    for root in (checkout_root(), Path.cwd()):
        if root is not None and (root / "benchmarks").is_dir():
            return root / "benchmarks"
    raise FileNotFoundError("benchmarks/ not found: run from a source checkout of linalg_core")


QUICK_CAVEAT = (
    "quick run: smaller sizes and fewer repeats, a smoke test of the benchmarks. At these sizes fixed "
    "per-call costs (dispatch, allocation, thread start-up) dominate, so the ratios below are NOT the "
    "regime of the full run and can show linalg_core many times slower than its peers; nothing is "
    "written. Run without --quick for the figures of benchmarks/RESULTS.md.")


__all__ = ["Stats", "measure", "per_call", "ratio", "machine", "Report", "QUICK_CAVEAT"]
