"""The benchmark suite, shipped in the package: ``python -m linalg_core bench [family ...]``.

Each family module ``linalg_core/bench/<family>.py`` defines ``run(report, quick)``, which times
linalg_core next to the tools users would otherwise call, in the same run, and adds rows to the
:class:`~linalg_core.bench.harness.Report`. :func:`run_families` runs them and writes the results
(:mod:`linalg_core.bench.results`) into a folder of results (``./linalg_core-bench/`` by default);
only ``write=True`` (``--write``, from a source checkout) updates the committed
``benchmarks/results/``, ``benchmarks/RESULTS.md`` and README's generated tables.

Example::

    python -m linalg_core bench --quick sketch --out /tmp/bench   # a labelled smoke run
    python -m linalg_core bench sketch --write                    # the committed results (checkout)
"""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path

import linalg_core

# Modules of this package that are not benchmark families.
NOT_FAMILIES = {"harness", "plots", "results"}
DEFAULT_OUT = "linalg_core-bench"


class UsageError(ValueError):
    """A request the suite refuses before running anything (unknown family, --write outside a
    source checkout or with --quick)."""


def families() -> list[str]:
    """Names of the benchmark families (the modules of this package but the harness's)."""
    return sorted(m.name for m in pkgutil.iter_modules(__path__)
                  if not m.name.startswith("_") and m.name not in NOT_FAMILIES and not m.ispkg)


def checkout_benchmarks() -> Path:
    """``benchmarks/`` of the source checkout this package runs from.

    Raises:
        UsageError: the package is installed (not an editable install of a checkout).
    """
    from linalg_core.bench.harness import checkout_root

    root = checkout_root()
    if root is None:
        raise UsageError(
            "--write updates the committed benchmarks/results/, benchmarks/RESULTS.md and README.md of a source "
            "checkout, but linalg_core runs from an installed package "
            f"({Path(linalg_core.__file__).parent}); run it from a checkout (pip install -e .) or drop --write "
            f"(results go to ./{DEFAULT_OUT}/ or --out DIR)")
    return root / "benchmarks"


def _plot(json_path: Path, png: Path, report) -> bool:
    """``plots.draw(json_path, png)`` when the plots module and matplotlib are there."""
    try:
        from linalg_core.bench import plots
    except ImportError:
        return False
    try:
        plots.draw(json_path, png)
    except Exception as e:  # noqa: BLE001  (matplotlib missing, rows it cannot draw: the results stand)
        print(f"  plot of {report.family} skipped ({type(e).__name__}: {e})", flush=True)
        return False
    return png.is_file()


def run_families(names=(), *, quick=False, threads=None, out=None, write=False):
    """Run benchmark families and write their results.

    Args:
        names: families to run (default: all, :func:`families`).
        quick: smaller sizes and fewer repeats; rows are labelled ``quick`` (a smoke run).
        threads: threads for torch and linalg_core (default: as set).
        out: folder of this run's results (``<family>.json``/``.csv``, ``summary.md``, plots);
            default ``./linalg_core-bench/``. Ignored with ``write``.
        write: update ``benchmarks/results/``, ``benchmarks/RESULTS.md`` (and its plots) and
            README's generated tables of the source checkout instead.

    Returns:
        The reports, one per family.

    Raises:
        UsageError: ``write`` outside a source checkout or with ``quick``, or an unknown family.
    """
    from linalg_core.bench import results
    from linalg_core.bench.harness import QUICK_CAVEAT, Report

    available = families()
    names = list(names) or available
    unknown = [n for n in names if n not in available]
    if unknown:
        raise UsageError(f"unknown benchmark family {unknown}; available: {', '.join(available)}")
    if write and quick:
        raise UsageError("--write updates the committed results: it cannot be combined with --quick")
    bench_dir = checkout_benchmarks() if write else None
    target = bench_dir / "results" if write else Path(out or DEFAULT_OUT)
    if threads is not None:
        linalg_core.set_num_threads(threads)
    if quick:
        print(QUICK_CAVEAT, flush=True)
    reports = []
    for name in names:
        module = importlib.import_module(f"linalg_core.bench.{name}")
        report = Report(name, quick=quick, out_dir=bench_dir if write else target,
                        tables=getattr(module, "TABLES", None))
        print(f"== {name} ({report.environment['threads']} threads{', quick' if quick else ''})", flush=True)
        target.mkdir(parents=True, exist_ok=True)
        module.run(report, quick=quick)
        path = results.save(results.document(report), target)
        png = (bench_dir if write else target) / f"{name}.png"
        _plot(path, png, report)
        if write:
            results.update_results_md(results.document(report), bench_dir / "RESULTS.md")
        reports.append(report)
    if write:
        from linalg_core.testing.headlines import update_readme

        readme = bench_dir.parent / "README.md"
        try:
            if readme.exists() and update_readme(readme, bench_dir / "results"):
                print(f"updated the results table of {readme}", flush=True)
        except (LookupError, ValueError) as e:  # a renamed row or column: the results are written regardless
            print(f"README's results table NOT updated ({e}); fix linalg_core/testing/headlines.py", flush=True)
        print(f"wrote {', '.join(names)} into {bench_dir / 'results'} and {bench_dir / 'RESULTS.md'}", flush=True)
    else:
        summary = target / "summary.md"
        docs = [results.load_results(p) for p in sorted(target.glob("*.json"))]
        summary.write_text(results.summary(docs))
        print(f"wrote {', '.join(names)} into {target}/ (<family>.json, .csv; summary.md); the committed "
              "results change only with --write", flush=True)
    return reports


def render(*, readme: bool = True) -> list[str]:
    """Rewrite ``benchmarks/RESULTS.md``'s sections (and README's generated tables) from the
    committed ``benchmarks/results/*.json`` without running a benchmark; returns the families."""
    from linalg_core.bench import results

    bench_dir = checkout_benchmarks()
    done = results.render(bench_dir / "results", bench_dir / "RESULTS.md")
    if readme and (bench_dir.parent / "README.md").exists():
        from linalg_core.testing.headlines import update_readme

        update_readme(bench_dir.parent / "README.md", bench_dir / "results")
    return done


__all__ = ["families", "run_families", "render", "checkout_benchmarks", "DEFAULT_OUT", "UsageError"]
