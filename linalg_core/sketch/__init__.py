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
    distortion,
    fwht,
    gaussian,
    rademacher,
    release_scratch,
    sparse_sign,
    srht,
)

__all__ = [
    "Sketch",
    "GaussianSketch",
    "RademacherSketch",
    "SRHT",
    "SparseSignSketch",
    "release_scratch",
    "CountSketch",
    "gaussian",
    "rademacher",
    "srht",
    "countsketch",
    "sparse_sign",
    "create",
    "KINDS",
    "fwht",
    "distortion",
]
