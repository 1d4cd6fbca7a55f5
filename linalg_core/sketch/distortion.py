"""Subspace-embedding distortion: how far a sketch is from an isometry on a given subspace."""

from __future__ import annotations

import torch

from linalg_core import _validate
from linalg_core._arrays import as_sparse
from linalg_core.sketch.operators import Sketch

__all__ = ["distortion"]


def distortion(S: Sketch, A, *, backend: str | None = None) -> float:
    """Subspace-embedding distortion of S on range(A): the smallest ε with
    (1 − ε)‖Ax‖ ≤ ‖SAx‖ ≤ (1 + ε)‖Ax‖ for all x, i.e. max(σ_max(SQ) − 1, 1 − σ_min(SQ)) for an
    orthonormal basis Q of range(A) (computed in float64).

    A sparse A (scipy.sparse, torch sparse) is densified: the orthonormal basis Q of its range
    is an (n, d) dense array anyway.

    Args:
        S: the sketch, an (m, n) :class:`~linalg_core.sketch.Sketch`.
        A: (n, d) dense or sparse matrix whose range is tested.
        backend: force a backend for ``S.apply``.

    Returns:
        ε ≥ 0 as a Python float (ε < 1 means S embeds range(A)).

    Shape:
        A: (n, d)

    Example:
        >>> import torch, linalg_core as lc
        >>> A = torch.randn(2000, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
        >>> eps = lc.distortion(lc.sketch.gaussian(400, 2000, seed=0), A)
        >>> 0 < eps < 0.5
        True
    """
    if not isinstance(S, Sketch):
        raise TypeError(f"S must be a linalg_core.sketch.Sketch, got {type(S).__name__}")
    sparse = as_sparse(A, "A")
    t = sparse[0].csr.to_dense() if sparse is not None else _validate.float_array(A, "A", ndim=2)[0]
    _validate.check_finite(t, "A")
    U, s, _ = torch.linalg.svd(t.to(torch.float64), full_matrices=False)
    Q = U[:, s > s[0] * max(t.shape) * torch.finfo(torch.float64).eps]
    sv = torch.linalg.svdvals(S.apply(Q, backend=backend))
    return float(torch.maximum(sv.max() - 1, 1 - sv.min()))
