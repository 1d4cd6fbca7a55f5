"""The benchmark suite, shipped in the package: ``python -m linalg_core bench [family ...]``.

Each family module ``linalg_core/bench/<family>.py`` defines ``run(report, quick)``, which times
linalg_core next to the tools users would otherwise call, in the same run, and adds rows to the
:class:`~linalg_core.bench.harness.Report`. :func:`run_families` runs them.
"""

from __future__ import annotations

import importlib
import pkgutil

import linalg_core

# Modules of this package that are not benchmark families.
NOT_FAMILIES = {"harness", "plots", "render", "results", "environment"}


def families() -> list[str]:
    """Names of the benchmark families (the modules of this package that define ``run``)."""
    return sorted(m.name for m in pkgutil.iter_modules(__path__)
                  if not m.name.startswith("_") and m.name not in NOT_FAMILIES and not m.ispkg)


def run_families(names, *, quick=False, threads=None, write=True):
    from linalg_core.bench.harness import QUICK_CAVEAT, Report, benchmarks_dir

    available = families()
    names = list(names) or available
    unknown = [n for n in names if n not in available]
    if unknown:
        raise SystemExit(f"unknown benchmark family {unknown}; available: {', '.join(available)}")
    if threads is not None:
        linalg_core.set_num_threads(threads)
    if quick:
        print(QUICK_CAVEAT, flush=True)
    reports = []
    for name in names:
        module = importlib.import_module(f"linalg_core.bench.{name}")
        report = Report(name, quick=quick)
        print(f"== {name} ({report.machine['threads']} threads{', quick' if quick else ''})", flush=True)
        module.run(report, quick=quick)
        if write and not quick:
            report.save(benchmarks_dir() / "results")
            report.update_results_md(benchmarks_dir() / "RESULTS.md")
        reports.append(report)
    if write and not quick:
        from linalg_core.testing.headlines import update_readme

        readme = benchmarks_dir().parent / "README.md"
        try:
            if readme.exists() and update_readme(readme, benchmarks_dir() / "results"):
                print(f"updated the results table of {readme}", flush=True)
        except (LookupError, ValueError) as e:  # a renamed row or column: the results are written regardless
            print(f"README's results table NOT updated ({e}); fix linalg_core/testing/headlines.py", flush=True)
    return reports


__all__ = ["families", "run_families"]
