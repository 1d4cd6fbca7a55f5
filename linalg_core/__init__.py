"""linalg_core: seeded, compiled-kernel randomized numerical linear algebra for PyTorch users.

Families (see README.md): ``sketch`` (Gaussian, Rademacher, SRHT, CountSketch, sparse sign,
``fwht``), ``lowrank`` (``rsvd``, ``rsvd_many``, ``svd_error``, ``nystrom``, ``cur``), ``adapters``
(PEFT initialisers), ``regression`` (sketched least squares, ℓ∞ reports), ``sampling`` (ℓp row sampling),
``quant`` (NF-k / bitsandbytes NF4 / INT-k / GGUF codecs, LQ decomposition, bit allocation),
``qmatmul`` (DGQ A8W4 quantized matmul), ``vsa`` (orthogonal MBAT, JSON → vector), ``distributed``
(Dask inputs; imported on first use) and the
counter-based ``random`` streams every randomized op draws from. Backends
(``cuda``, ``triton``, ``cpu``, ``reference``) are chosen per call by ``linalg_core._ops``;
``linalg_core.explain(op)`` says which one serves a call and why the others do not.

``import linalg_core`` never fails and never initialises CUDA.
"""

import importlib as _importlib

from linalg_core import _ops

# The package wires the backends into the registry: a family's backend modules are imported at the
# first dispatch of one of its ops (never here; _ops itself imports no backend).
_ops.set_loader(lambda families: _importlib.import_module("linalg_core.backends").load(families))

from linalg_core import adapters, lowrank, optim, qmatmul, quant, random, regression, sampling, sketch, vsa  # noqa: E402
from linalg_core._ops import BackendError, explain  # noqa: E402
from linalg_core.lowrank import SVD, cur, nystrom, rsvd, rsvd_many, svd_error  # noqa: E402
from linalg_core.sketch import distortion, fwht  # noqa: E402

__version__ = "0.1.0"

__all__ = [
    "random",
    "sketch",
    "lowrank",
    "adapters",
    "regression",
    "sampling",
    "quant",
    "qmatmul",
    "vsa",
    "optim",
    "fwht",
    "distortion",
    "SVD",
    "rsvd",
    "rsvd_many",
    "svd_error",
    "nystrom",
    "cur",
    "explain",
    "BackendError",
    "set_num_threads",
    "__version__",
]


def set_num_threads(n: int) -> None:
    """Threads for both torch and linalg_core's OpenMP kernels.

    Args:
        n: the number of threads, ≥ 1 (``torch.set_num_threads(n)``, and the compiled kernels'
            OpenMP pool when ``_C`` is built).

    Raises:
        ValueError: n < 1.  TypeError: n is not an integer.

    Example:
        >>> import torch, linalg_core as lc
        >>> before = torch.get_num_threads()
        >>> lc.set_num_threads(1)
        >>> torch.get_num_threads()
        1
        >>> lc.set_num_threads(before)
    """
    import torch

    from linalg_core._ext import _C
    from linalg_core._validate import integer

    n = integer(n, "n", low=1)
    torch.set_num_threads(n)
    if _C is not None:
        _C.set_num_threads(n)


def __getattr__(name):
    if name == "distributed":  # needs dask: imported on first use, never by ``import linalg_core``
        import importlib

        return importlib.import_module("linalg_core.distributed")
    raise AttributeError(f"module 'linalg_core' has no attribute {name!r}")
