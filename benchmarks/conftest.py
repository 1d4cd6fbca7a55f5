"""The README's headline comparisons as a pytest-benchmark suite: ``pytest --benchmark-only
benchmarks/``.

Each ``benchmarks/test_<family>.py`` times our call and the peer's call as separate tests of one
benchmark group (the headline), on the inputs ``python -m linalg_core bench <family>`` uses (its
sizes, seeds and builders, imported from ``linalg_core.bench.<family>`` where it exposes them) and
with its repeat counts (``benchmark.pedantic``); accuracy goes to each test's ``extra_info``.
``LINALG_CORE_BENCH_QUICK=1`` selects the family's ``--quick`` sizes (a smoke test: the ratios are
not the full run's regime). Not collected by ``make test`` (``testpaths = ["tests"]``).

The fixtures come from the linalg_core pytest plugin (:mod:`linalg_core.testing.pytest_plugin`),
registered here when its pytest11 entry point has not loaded it already.
"""

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

QUICK = os.environ.get("LINALG_CORE_BENCH_QUICK", "") not in ("", "0")


def pytest_configure(config):
    from linalg_core.testing import pytest_plugin

    if not config.pluginmanager.is_registered(pytest_plugin):
        config.pluginmanager.register(pytest_plugin, "linalg_core")


@pytest.fixture(scope="session")
def quick() -> bool:
    """Whether LINALG_CORE_BENCH_QUICK asks for the family modules' --quick sizes."""
    return QUICK


@pytest.fixture
def timed(benchmark):
    """``timed(fn, *, rounds, warmup=1, setup=None, group=None, **extra_info)``: ``fn`` timed
    ``rounds`` times after ``warmup`` untimed calls (the bench's ``measure(repeats, warmup)``),
    ``setup`` returning fresh ``(args, kwargs)`` per round where a call consumes its input;
    returns one result of ``fn``."""

    def run(fn, *, rounds, warmup=1, setup=None, group=None, **extra_info):
        if group is not None:
            benchmark.group = group
        benchmark.extra_info.update(extra_info)
        return benchmark.pedantic(fn, setup=setup, rounds=rounds, warmup_rounds=warmup, iterations=1)

    return run
