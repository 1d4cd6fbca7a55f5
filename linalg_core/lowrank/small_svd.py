"""The small SVD of a randomized SVD: the SVD of the short, wide B = QᴴA (*, k, n), k ≤ n."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from linalg_core import _threads, _validate
from linalg_core.lowrank.svd import SVD

# The Gram route is used while the singular values it returns stay above this fraction of σ₁
# (float64 rounding then stays below float32's in Vh's orthogonality).
GRAM_RANGE = 1e-4


def svd_of_wide(B: torch.Tensor, rank: int | None = None, *, gram: bool = True) -> SVD:
    """SVD of a short, wide B (*, k, n), k ≤ n.

    float32 B (and ``gram``): from the eigendecomposition of the k × k Gram matrix BBᴴ formed in
    float64, and Vh = (UΣ⁻¹)ᴴB as a float32 GEMM (error ~u₃₂·σ₁/σᵢ in row i, as for any
    backward-stable SVD). float64 rounding perturbs VhVhᴴ by ~u₆₄·σ₁²/(σᵢσⱼ), below float32's
    while σᵢ ≥ 10⁻⁴·σ₁, so this route is taken when the first ``rank`` (default k) singular
    values stay above that (later rows are only as accurate as their σᵢ allows, and 0 where
    σᵢ = 0). One small eigh replaces a QR of Bᴴ and an SVD, and LAPACK's small factorisations
    have a high fixed cost.

    Otherwise through the QR of Bᴴ: B = Rᴴ Qᴴ, so only the k × k matrix Rᴴ goes to LAPACK's SVD
    (cheaper than the SVD of the wide B when n ≫ k); directly by LAPACK's SVD when 2k > n.
    This is step 3 of the two-stage randomized SVD (Halko, Martinsson and Tropp 2011, §5.1).

    Args:
        B: the short, wide matrix, float32 or float64.
        rank: the singular values the caller will use (default k): the Gram route is taken only
            while they stay accurate; all k are returned either way.
        gram: allow the Gram-matrix route for float32 B.

    Returns:
        An :class:`~linalg_core.lowrank.SVD` ``(U, S, Vh)`` of B, S descending.

    Shape:
        B: (*, k, n);  U: (*, k, k);  S: (*, k);  Vh: (*, k, n)

    Example:
        >>> import torch
        >>> from linalg_core.lowrank import svd_of_wide
        >>> B = torch.randn(4, 30, generator=torch.Generator().manual_seed(0))
        >>> U, S, Vh = svd_of_wide(B)
        >>> tuple(U.shape), tuple(S.shape), tuple(Vh.shape), torch.allclose(U * S @ Vh, B, atol=1e-5)
        ((4, 4), (4,), (4, 30), True)
    """
    k, n = B.shape[-2:]
    small = _threads.sized(k**3 * max(1, B[..., 0, 0].numel()))  # one thread for the k × k LAPACK calls
    if gram and B.dtype == torch.float32 and k > 1:
        B64 = B.double()
        G = B64 @ B64.mT
        with small:
            lam, U = torch.linalg.eigh(G)
        S = lam.flip(-1).clamp_min(0).sqrt()
        used = S[..., (rank or k) - 1]
        if bool((used >= GRAM_RANGE * S[..., 0]).all()) and bool((used > 0).all()):
            U = U.flip(-1)
            inv = torch.where(S > 0, 1 / S, torch.zeros_like(S))  # rows past ``rank`` may be 0
            return SVD(U.to(B.dtype), S.to(B.dtype), (U * inv[..., None, :]).to(B.dtype).mT @ B)
    if 2 * k > n:
        U, S, Vh = torch.linalg.svd(B, full_matrices=False)
        return SVD(U, S, Vh)
    Q, R = torch.linalg.qr(B.mT.conj(), mode="reduced")
    with _threads.sized(k**3 * max(1, B[..., 0, 0].numel())):
        U, S, Wh = torch.linalg.svd(R.mT.conj(), full_matrices=False)
    return SVD(U, S, Wh @ Q.mT.conj())


@dataclass(frozen=True)
class SmallSVD:
    """The small-SVD stage of :func:`~linalg_core.lowrank.rsvd`: :func:`svd_of_wide`, callable as
    ``small_svd(B, rank) -> SVD``.

    Args:
        gram: take the float64 Gram-matrix route for float32 B where it is accurate (the
            default); False always goes through LAPACK's SVD (after a QR of Bᴴ for a wide B),
            the route float64 B always takes.

    Shape:
        B: (*, k, n);  U: (*, k, k);  S: (*, k);  Vh: (*, k, n)

    Example:
        >>> import torch
        >>> from linalg_core.lowrank import SmallSVD
        >>> U, S, Vh = SmallSVD()(torch.randn(4, 30, dtype=torch.float64))
        >>> U.shape, S.shape, Vh.shape
        (torch.Size([4, 4]), torch.Size([4]), torch.Size([4, 30]))
    """

    gram: bool = True

    def __post_init__(self):
        object.__setattr__(self, "gram", _validate.flag(self.gram, "gram"))

    def __call__(self, B: torch.Tensor, rank: int | None = None) -> SVD:
        return svd_of_wide(B, rank, gram=self.gram)


__all__ = ["SmallSVD", "svd_of_wide", "GRAM_RANGE"]
