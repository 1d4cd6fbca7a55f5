"""Low-rank approximation: randomized SVD (subspace iteration, block Krylov, rank-adaptive QB),
a-posteriori error estimates, Nyström (PSD and generalized) and CUR.

Every function takes dense (batched) arrays, sparse matrices (scipy.sparse, torch COO / CSR / CSC;
not :func:`cur`, which reads actual columns) or matrix-free operators (``shape``, ``dtype``,
``matmul``, ``rmatmul``, or a ``scipy.sparse.linalg.LinearOperator``; see :mod:`.operators`), a
``seed`` (recorded on the result), and is built from swappable stages:
:func:`orthonormalize`, :func:`subspace_iteration` / :func:`krylov_basis`, :func:`svd_of_wide`.
"""

from linalg_core.lowrank.cur import CUR, cur
from linalg_core.lowrank.error import svd_error
from linalg_core.lowrank.nystrom import Nystrom, nystrom
from linalg_core.lowrank.operators import LinearOperator
from linalg_core.lowrank.orthonormalize import orthonormalize
from linalg_core.lowrank.rsvd import SVD, flip_signs, krylov_basis, rsvd, rsvd_many, subspace_iteration, svd_of_wide

__all__ = [
    "SVD",
    "rsvd",
    "rsvd_many",
    "svd_error",
    "nystrom",
    "Nystrom",
    "cur",
    "CUR",
    "orthonormalize",
    "subspace_iteration",
    "krylov_basis",
    "svd_of_wide",
    "flip_signs",
    "LinearOperator",
]
