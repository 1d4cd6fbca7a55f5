"""Low-rank approximation: randomized SVD (subspace iteration, block Krylov, rank-adaptive QB),
a-posteriori error estimates, Nyström (PSD and generalized) and CUR.

Every function takes dense (batched) arrays, sparse matrices (scipy.sparse, torch COO / CSR / CSC;
not :func:`cur`, which reads actual columns) or linear operators (:class:`LinearOperator`:
``shape``, ``dtype``, ``matmul``, ``rmatmul``, or a ``scipy.sparse.linalg.LinearOperator``; see
:mod:`.operators`), a ``seed`` (recorded on the result), and is built from frozen, swappable
stage objects (RandLAPACK's RSVD(QB(RF(RS, Orth)))):

* range finders (:mod:`.finders`): :class:`SubspaceIteration`, :class:`RowSpace`,
  :class:`BlockKrylov`, :class:`AdaptiveQB`, or a :class:`RangeFinder` subclass;
* orthonormalizers (:mod:`.orthonormalize`): :class:`CholQR`, :class:`CholQR2`,
  :class:`Householder`, :class:`LU`;
* the small SVD (:mod:`.small_svd`): :class:`SmallSVD`.

``rsvd(A, r, finder=BlockKrylov(niter=2, orth=Householder()), seed=0)``; ``nystrom(..., orth=)``
and ``cur(..., finder=)`` take them too.
"""

from linalg_core.lowrank.cur import CUR, cur
from linalg_core.lowrank.error import PEFT_GRADE, Accuracy, svd_error
from linalg_core.lowrank.finders import (
    AdaptiveQB,
    BlockKrylov,
    RangeFinder,
    RowSpace,
    SubspaceIteration,
    krylov_basis,
    subspace_iteration,
)
from linalg_core.lowrank.many import rsvd_many
from linalg_core.lowrank.nystrom import Nystrom, nystrom
from linalg_core.lowrank.operators import LinearOperator, Operator, as_linear_operator
from linalg_core.lowrank.orthonormalize import LU, CholQR, CholQR2, Householder, orthonormalize
from linalg_core.lowrank.rsvd import rsvd, sketch_size
from linalg_core.lowrank.small_svd import SmallSVD, svd_of_wide
from linalg_core.lowrank.svd import SVD, flip_signs

__all__ = [
    "SVD",
    "rsvd",
    "rsvd_many",
    "svd_error",
    "Accuracy",
    "PEFT_GRADE",
    "nystrom",
    "Nystrom",
    "cur",
    "CUR",
    # stages
    "RangeFinder",
    "SubspaceIteration",
    "RowSpace",
    "BlockKrylov",
    "AdaptiveQB",
    "CholQR",
    "CholQR2",
    "Householder",
    "LU",
    "SmallSVD",
    # function forms of the stages
    "orthonormalize",
    "subspace_iteration",
    "krylov_basis",
    "svd_of_wide",
    "flip_signs",
    "sketch_size",
    # operators
    "LinearOperator",
    "Operator",
    "as_linear_operator",
]
