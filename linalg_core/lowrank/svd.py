"""The result type of the low-rank SVDs and the rule that fixes their signs."""

from __future__ import annotations

from typing import NamedTuple

import torch


class _Factors(NamedTuple):
    U: torch.Tensor
    S: torch.Tensor
    Vh: torch.Tensor


class SVD(_Factors):
    """A truncated SVD A ≈ U diag(S) Vh: a named triple (``U, S, Vh = rsvd(A, r)``) that also
    records the seed.

    Attributes:
        U, S, Vh: the factors.
        seed: the int seed of the random test matrices that produced them (the one drawn for
            ``seed=None`` or from a ``torch.Generator``, so ``rsvd(A, r, seed=svd.seed)``
            reproduces the result bit for bit); None for deterministic results (``to_svd``).

    Shape:
        U: (*, m, r);  S: (*, r) descending;  Vh: (*, r, n)

    Example:
        >>> import torch, linalg_core as lc
        >>> A = torch.randn(40, 30, generator=torch.Generator().manual_seed(0))
        >>> svd = lc.rsvd(A, 5, seed=3)
        >>> U, S, Vh = svd
        >>> tuple(U.shape), tuple(S.shape), tuple(Vh.shape), svd.seed
        ((40, 5), (5,), (5, 30), 3)
    """

    seed: int | None = None  # read when an instance was built without one (``_make``, pytrees)

    def __new__(cls, U, S, Vh, seed: int | None = None):
        self = super().__new__(cls, U, S, Vh)
        if seed is not None:
            self.seed = seed
        return self

    def __repr__(self) -> str:
        return f"SVD(U={self.U!r}, S={self.S!r}, Vh={self.Vh!r}, seed={self.seed!r})"


def column_peaks(U: torch.Tensor) -> torch.Tensor:
    """Per column, the entry of largest magnitude (the first such row on ties).

    The peaks of a stack of row blocks' peaks are the peaks of the whole matrix, so a matrix held
    in row blocks gets its peaks block by block (see :func:`peak_signs`).

    Shape:
        U: (*, m, k);  out: (*, 1, k)
    """
    return torch.gather(U, -2, U.abs().argmax(dim=-2, keepdim=True))


def peak_signs(U) -> torch.Tensor:
    """The sign of each column's entry of largest magnitude (+1 for a zero column): the signs
    :func:`flip_signs` multiplies by.

    ``U`` is a tensor, or a matrix held elsewhere (row blocks on a cluster) that offers
    ``column_peaks()``: the :func:`column_peaks` of each of its row blocks, stacked in row order.

    Shape:
        U: (*, m, k);  out: (*, 1, k)
    """
    sign = torch.sgn(column_peaks(U.column_peaks() if hasattr(U, "column_peaks") else U))
    return torch.where(sign == 0, torch.ones_like(sign), sign)


def flip_signs(svd: SVD, *, seed: int | None = None) -> SVD:
    """Deterministic signs: the entry of largest magnitude of each column of U is positive
    (scikit-learn's ``svd_flip``), Vh's rows flipped to match; makes results comparable across
    backends and runs. ``seed`` is recorded on the result (default: ``svd``'s).

    Args:
        svd: a factorisation ``(U, S, Vh)``: an :class:`SVD` or any triple of tensors.
        seed: the seed to record on the result (default: ``svd.seed`` when it has one).

    Returns:
        An :class:`SVD` with the same product U diag(S) Vh.

    Shape:
        U: (*, m, r);  S: (*, r);  Vh: (*, r, n), returned with the same shapes

    Example:
        >>> import torch
        >>> from linalg_core.lowrank import flip_signs
        >>> U, S, Vh = torch.linalg.svd(torch.tensor([[1.0, 2.0], [3.0, -4.0]]))
        >>> F = flip_signs((-U, S, -Vh))
        >>> (F.U.abs().amax(0) == F.U.amax(0)).tolist(), torch.allclose(F.U * F.S @ F.Vh, U * S @ Vh)
        ([True, True], True)
    """
    U, S, Vh = svd
    sign = peak_signs(U)
    return SVD(U * sign, S, Vh * sign.mT.conj(), seed=getattr(svd, "seed", None) if seed is None else seed)


__all__ = ["SVD", "flip_signs", "peak_signs", "column_peaks"]
