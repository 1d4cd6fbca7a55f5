"""Helpers shared by tests, benchmarks and the demo (so they never copy each other):
matrix generators with prescribed spectra, the real MiniLM-L6 weights, tolerance tables,
and backend lists (the benchmark harness is ``linalg_core.bench.harness``)."""

from linalg_core.testing.backends import usable_backends
from linalg_core.testing.matrices import (
    coherent,
    haar,
    llm_like,
    planted_regression,
    spectrum,
    tall_gaussian,
    with_spectrum,
)
from linalg_core.testing.models import minilm_weights
from linalg_core.testing.tolerances import tolerance

__all__ = [
    "coherent",
    "haar",
    "llm_like",
    "planted_regression",
    "spectrum",
    "tall_gaussian",
    "with_spectrum",
    "minilm_weights",
    "tolerance",
    "usable_backends",
]
