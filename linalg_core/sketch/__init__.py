"""Random sketching operators: Gaussian, Rademacher, SRHT, CountSketch and sparse sign (SJLT).

A sketch ``S`` is an (m × n) random matrix that maps n-vectors to m-vectors (m ≪ n) while
approximately preserving the geometry of any fixed low-dimensional subspace (a *subspace
embedding*, Woodruff 2014, "Sketching as a Tool for Numerical Linear Algebra"). Each operator
is a frozen value ``(distribution, shape, seed)``: two equal values are the same matrix on every
backend. ``apply(A)`` computes ``S @ A``, ``apply_right(A)`` computes ``A @ Sᵀ``; the dense ``S``
is never formed unless ``to_dense()`` is called, and any block of columns of ``S`` can be
generated alone (``to_dense(cols=(c0, c1))``).

All operators are scaled so that E[SᵀS] = I.

=============  =======================================================  ===================
kind           construction                                             apply cost (A: n×d)
=============  =======================================================  ===================
gaussian       i.i.d. N(0, 1/m), generated block by block               O(mnd) (GEMM)
rademacher     i.i.d. ±1/√m                                             O(mnd) (GEMM)
srht           √(N/m)·P·(H_N/√N)·D·J (Tropp 2011; Ailon–Chazelle 2009)   O(Nd log N)
countsketch    one ±1 per column (Clarkson–Woodruff 2013)               O(nd)
sparse_sign    nnz ±1/√nnz per column, distinct rows (Kane–Nelson 2014)  O(nnz·nd)
=============  =======================================================  ===================

Modules: :mod:`linalg_core.sketch.operators` (the sketches), :mod:`linalg_core.sketch.fwht` (the
fast Walsh–Hadamard transform), :mod:`linalg_core.sketch.distortion` (subspace-embedding
distortion). Their names are re-exported here; note that ``linalg_core.sketch.fwht`` and
``linalg_core.sketch.distortion`` are the functions (reach the modules through ``sys.modules`` or
``importlib.import_module``).
"""

from linalg_core.sketch.operators import (
    KINDS,
    SRHT,
    CountSketch,
    GaussianSketch,
    RademacherSketch,
    Sketch,
    SparseSignSketch,
    countsketch,
    create,
    gaussian,
    rademacher,
    release_scratch,
    sparse_sign,
    srht,
)
from linalg_core.sketch.distortion import distortion
from linalg_core.sketch.fwht import fwht

from linalg_core.sketch import operators as _operators

__all__ = [*_operators.__all__, "fwht", "distortion"]

# Names that were reachable as ``linalg_core.sketch.X`` only because the single-module sketch
# imported them; they keep working, with a warning that names their own home.
_INCIDENTAL = {
    "Stream": "linalg_core.random",
    "SparseMatrix": "linalg_core._arrays",
    "as_sparse": "linalg_core._arrays",
    "compute_dtype": "linalg_core._arrays",
    "is_sparse": "linalg_core._arrays",
    "as_int64": "linalg_core._ops",
    "ClassVar": "typing",
    "dataclass": "dataclasses",
    "field": "dataclasses",
    "math": "math",
    "torch": "torch",
    "annotations": "__future__",
}


def __getattr__(name):
    if name in _INCIDENTAL:
        import importlib
        import warnings

        home = _INCIDENTAL[name]
        warnings.warn(f"linalg_core.sketch.{name} is deprecated: import it from {home}", DeprecationWarning,
                      stacklevel=2)
        module = importlib.import_module(home)
        return module if home == name else getattr(module, name)
    raise AttributeError(f"module 'linalg_core.sketch' has no attribute {name!r}")
