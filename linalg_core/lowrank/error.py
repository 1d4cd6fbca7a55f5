"""A-posteriori error of a low-rank approximation A ≈ U diag(S) Vh, and the accuracy target
(:class:`Accuracy`, :data:`PEFT_GRADE`) that rsvd's adaptive default stops at."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from linalg_core import _validate
from linalg_core.lowrank.operators import Dense, Operator, _device, as_operator, hutchinson_fro_sq
from linalg_core.random import normal

ERROR_STREAM = 7


@dataclass(frozen=True)
class Accuracy:
    """An accuracy target of a rank-r truncated SVD A ≈ U diag(S) Vh, relative to the optimal one
    (σ_i the singular values of A, A_r its best rank-r approximation):

    * ``resid``: ‖A − U diag(S) Vh‖_F ≤ (1 + resid)·‖A − A_r‖_F;
    * ``sigma``: |S_i − σ_i| ≤ sigma·σ_i for every i ≤ r.

    :data:`PEFT_GRADE` (resid 0.2 %, sigma 1 %) is what the adaptive
    :class:`~linalg_core.lowrank.SubspaceIteration` (rsvd's default) stops at.

    Example:
        >>> from linalg_core.lowrank import PEFT_GRADE
        >>> PEFT_GRADE.met(1.001, 0.004), PEFT_GRADE.met(1.003, 0.004)
        (True, False)
    """

    resid: float = 2e-3
    sigma: float = 1e-2

    def __post_init__(self):
        for name in ("resid", "sigma"):
            object.__setattr__(self, name, _validate.real(getattr(self, name), name, low=0, high=1, low_open=True,
                                                          high_open=True))

    def met(self, resid_ratio: float, sigma_err: float) -> bool:
        """Whether a result with ‖A − USVᴴ‖_F / ‖A − A_r‖_F = ``resid_ratio`` and
        max_i |S_i − σ_i| / σ_i = ``sigma_err`` meets the target.

        Args:
            resid_ratio: the residual over the optimal rank-r residual (≥ 1).
            sigma_err: the largest relative error of the r singular values.

        Returns:
            True when ``resid_ratio ≤ 1 + resid`` and ``sigma_err ≤ sigma``.
        """
        return float(resid_ratio) <= 1 + self.resid and float(sigma_err) <= self.sigma


# PEFT-grade: what adapter initialisation needs (issue 20): the captured energy within 0.2 % of
# the optimal residual, each principal singular value within 1 %.
PEFT_GRADE = Accuracy()


class _Residual(Operator):
    """E = A − U diag(S) Vh as an operator (the :class:`~.operators.LinearOperator` protocol)."""

    def __init__(self, op, U, S, Vh):
        self.op, self.U, self.S, self.Vh = op, U, S, Vh
        self.shape, self.dtype = op.shape, op.dtype
        self.device = _device(op)

    def matmul(self, X):
        return self.op.matmul(X) - self.U @ (self.S[..., :, None] * (self.Vh @ X))

    def rmatmul(self, Y):
        return self.op.rmatmul(Y) - self.Vh.mT.conj() @ (self.S[..., :, None] * (self.U.mT.conj() @ Y))


def svd_error(A, U, S, Vh, *, norm: str = "fro", iters: int = 20, probes: int = 32, seed: int = 0):
    """‖A − U diag(S) Vh‖ in the Frobenius or spectral norm.

    * ``norm="fro"``: exact for dense A, computed one block of rows at a time (one GEMM of the
      cost of one rsvd pass, no m × n temporary); for a sparse or matrix-free A, the Gaussian trace
      estimate E‖Eg‖² over ``probes`` vectors (relative standard deviation √(2/probes)).
    * ``norm="spectral"``: ``iters`` power iterations on EᴴE from a seeded Gaussian start
      (the a-posteriori certificate of fbpca's ``diffsnorm``; Halko et al. 2011 §4.3). It
      converges from below: each iteration's value is a lower bound.

    Args:
        A: (*, m, n) array, sparse matrix or matrix-free operator.
        U, S, Vh: the factors, (*, m, r), (*, r), (*, r, n): S is the vector of singular values
            (not diag(S)), the batch dimensions those of A.

    Shape:
        A: (*, m, n);  U: (*, m, r);  S: (*, r);  Vh: (*, r, n)

    Randomness:
        ``"spectral"``'s Gaussian start vector and the Hutchinson probes of a matrix-free A are
        normal stream 7 of ``seed``; a dense A's Frobenius error is exact and uses none.

    Raises:
        ValueError: factor shapes that do not fit A (a 2-D S included), NaN/Inf in A.

    Returns:
        float, or a tensor of per-item errors for batched A.

    Example:
        >>> import torch, linalg_core as lc
        >>> from linalg_core.testing import with_spectrum
        >>> A = with_spectrum(200, 100, 2.0 ** -torch.arange(100.0), seed=0)  # σ_i = 2^-i
        >>> U, S, Vh = torch.linalg.svd(A, full_matrices=False)
        >>> abs(lc.svd_error(A, U[:, :5], S[:5], Vh[:5], norm="spectral") - 2.0**-5) < 1e-6
        True
    """
    op, _, _ = as_operator(A)
    _validate.choice(norm, "norm", ("fro", "spectral"))
    iters = _validate.integer(iters, "iters", low=1)
    probes = _validate.integer(probes, "probes", low=1)
    batch = tuple(op.shape[:-2])
    factors = {}
    for name, x, dims in (("U", U, 2), ("S", S, 1), ("Vh", Vh, 2)):
        t, _ = _validate.float_array(x, name, allow_empty=True)
        factors[name] = t.to(op.dtype)
    U, S, Vh = factors["U"], factors["S"], factors["Vh"]
    m, n = op.shape[-2:]
    k = S.shape[-1]
    if (U.dim() != len(batch) + 2 or S.dim() != len(batch) + 1 or U.shape[:-2] != batch
            or S.shape[:-1] != batch or Vh.shape[:-2] != batch or U.shape[-2:] != (m, k)
            or Vh.shape[-2:] != (k, n)):
        raise ValueError(f"factor shapes U {tuple(U.shape)}, S {tuple(S.shape)}, Vh {tuple(Vh.shape)} do not fit "
                         f"A of shape {tuple(op.shape)}: expected U {batch + (m, k)}, S {batch + (k,)} (the "
                         f"singular values as a vector, not diag(S)), Vh {batch + (k, n)}")
    E = _Residual(op, U, S, Vh)
    if norm == "fro":
        if isinstance(op, Dense):
            total = None
            for i0, i1 in op._rows():
                blk = op.A[..., i0:i1, :].to(op.dtype) - U[..., i0:i1, :] @ (S[..., :, None] * Vh)
                part = torch.linalg.vector_norm(blk, dim=(-2, -1)) ** 2
                total = part if total is None else total + part
            value = torch.sqrt(total)
        else:
            value = torch.sqrt(hutchinson_fro_sq(E, probes=probes, seed=seed, stream=ERROR_STREAM))
    else:
        x = normal((n, 1), seed=seed, stream=ERROR_STREAM, dtype=op.dtype, device=E.device)
        value = None
        for _ in range(iters):
            x = x / torch.linalg.vector_norm(x, dim=(-2, -1), keepdim=True).clamp_min(torch.finfo(op.dtype).tiny)
            y = E.matmul(x)
            value = torch.linalg.vector_norm(y, dim=(-2, -1))
            x = E.rmatmul(y)
    return float(value) if value.dim() == 0 else value


__all__ = ["svd_error", "Accuracy", "PEFT_GRADE", "ERROR_STREAM"]
