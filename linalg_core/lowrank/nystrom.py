"""Nyström approximations: the shift-stabilised fixed-rank Nyström for PSD matrices and the
generalized Nyström for any matrix, both returned as three factors C · core · R."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from linalg_core import _validate
from linalg_core.lowrank.operators import as_operator
from linalg_core.lowrank.orthonormalize import orthonormalize
from linalg_core.lowrank.rsvd import SVD, flip_signs
from linalg_core.random import normal

NYSTROM_STREAM = 8


@dataclass(frozen=True)
class Nystrom:
    """A ≈ C @ core @ R with an r × r core (three-matrix adapters such as NLoRA use it as is).

    Shape:
        C: (*, m, r);  core: (*, r, r);  R: (*, r, n)
    """

    C: torch.Tensor
    core: torch.Tensor
    R: torch.Tensor

    @property
    def rank(self) -> int:
        return self.core.shape[-1]

    def to_svd(self) -> SVD:
        """The same approximation as a truncated SVD (QR of C and Rᴴ, SVD of an r × r)."""
        Qc, Rc = torch.linalg.qr(self.C)
        Qr, Rr = torch.linalg.qr(self.R.mT.conj())
        u, s, vh = torch.linalg.svd(Rc @ self.core @ Rr.mT.conj())
        return flip_signs(SVD(Qc @ u, s, vh @ Qr.mT.conj()))

    def dense(self) -> torch.Tensor:
        return self.C @ self.core @ self.R


def _eps_spacing(x: torch.Tensor) -> torch.Tensor:
    return torch.finfo(x.dtype).eps * x


def nystrom(A, rank: int, *, psd: bool = False, oversample=None, niter: int = 0, seed=None,
            backend: str | None = None) -> Nystrom:
    """Rank-``rank`` Nyström approximation A ≈ C · core · R.

    * ``psd=True`` (A symmetric positive semi-definite: a Gram or covariance matrix, dense or
      matrix-free): the fixed-rank Nyström with shift of Tropp, Yurtsever, Udell and Cevher
      (2017, Algorithm 3): Y = AΩ for an orthonormal Gaussian Ω (n × k), shift
      ν = √n·eps(‖Y‖), C = chol(Ωᴴ(Y + νΩ)), E = (Y + νΩ)C⁻ᴴ, E = UΣ…, Λ = max(0, Σ² − ν),
      truncated to ``rank``: C = U_r, core = diag(Λ_r), R = U_rᴴ.
    * otherwise: the generalized Nyström of Nakatsukasa (2020), A ≈ AX (YᴴAX)⁺ YᴴA with
      Gaussian X (n × k) and a wider Y (m × ⌈1.5k⌉), the core pseudo-inverted through its SVD
      with singular values below eps·σ₁ dropped and truncated to ``rank``:
      C = AX V_r, core = Σ_r⁻¹, R = U_rᴴ YᴴA. ``niter`` power iterations on X and Y sharpen
      the subspaces on flat spectra (single-pass otherwise).

    Args:
        A: (*, m, n) array or operator (square for ``psd``).
        rank: r, 1 ≤ r ≤ min(m, n).
        oversample: k = rank + oversample (default max(10, rank // 2)).
        niter: power iterations (PSD: Y ← A·orth(Y)).
        seed: int, ``torch.Generator`` or None.

    Returns:
        :class:`Nystrom` (C, core, R) with ``.to_svd()``.

    Randomness:
        Ω / X is block 0 and Y block 1 of normal stream 8 of ``seed``.

    Example:
        >>> import torch, linalg_core as lc
        >>> X = torch.randn(300, 40, dtype=torch.float64)
        >>> ny = lc.nystrom(X @ X.T, 10, psd=True, seed=0)
        >>> ny.C.shape, ny.core.shape
        (torch.Size([300, 10]), torch.Size([10, 10]))
    """
    op, boundary, _ = as_operator(A, products_only=True)
    m, n = op.shape[-2:]
    rank = _validate.integer(rank, "rank", low=1)
    if rank > min(m, n):
        raise ValueError(f"rank={rank} exceeds min(m, n)={min(m, n)} for A of shape ({m}, {n})")
    if psd and m != n:
        raise ValueError(f"psd=True needs a square A, got shape ({m}, {n})")
    oversample = max(10, rank // 2) if oversample is None else _validate.integer(oversample, "oversample", low=0)
    niter = _validate.integer(niter, "niter", low=0)
    seed = _validate.seed(seed)
    k = min(min(m, n), rank + oversample)
    dev = getattr(op, "device", None) or torch.device("cpu")

    def gauss(rows, cols, block):
        return normal((rows, cols), seed=seed, stream=NYSTROM_STREAM, offset=block * (1 << 40), dtype=op.dtype,
                      device=dev, backend=backend)

    if psd:
        Omega = orthonormalize(gauss(n, k, 0), "qr")
        Y = op.matmul(Omega)
        for _ in range(niter):
            Omega = orthonormalize(Y, "qr")
            Y = op.matmul(Omega)
        nu = math.sqrt(n) * _eps_spacing(torch.linalg.matrix_norm(Y, ord="fro").amax())
        for _ in range(6):  # grow the shift if rounding made Ωᴴ(Y + νΩ) indefinite
            Ynu = Y + nu * Omega
            Bm = Omega.mT.conj() @ Ynu
            L, info = torch.linalg.cholesky_ex((Bm + Bm.mT.conj()) / 2)
            if not bool((info != 0).any()):
                break
            nu = nu * 10
        E = torch.linalg.solve_triangular(L.mT.conj(), Ynu, upper=True, left=False)
        U, Sig, _ = torch.linalg.svd(E, full_matrices=False)
        lam = torch.clamp(Sig[..., :rank] ** 2 - nu, min=0)
        U = flip_signs(SVD(U[..., :rank], lam, U[..., :rank].mT.conj())).U
        out = Nystrom(U, torch.diag_embed(lam), U.mT.conj())
    else:
        ell = min(m, math.ceil(1.5 * k))
        X, Yt = gauss(n, k, 0), gauss(m, ell, 1)
        for _ in range(niter):
            X = orthonormalize(op.rmatmul(op.matmul(orthonormalize(X, "qr"))), "qr")
            Yt = orthonormalize(op.matmul(op.rmatmul(orthonormalize(Yt, "qr"))), "qr")
        AX = op.matmul(X)  # (m, k)
        YA = op.rmatmul(Yt).mT.conj()  # (ℓ, n) = YᴴA
        M = Yt.mT.conj() @ AX  # (ℓ, k)
        Um, Sm, Vmh = torch.linalg.svd(M, full_matrices=False)
        keep = int((Sm > torch.finfo(Sm.dtype).eps * max(M.shape[-2:]) * Sm[..., :1]).sum(-1).min())
        r = min(rank, keep)
        C = AX @ Vmh[..., :r, :].mT.conj()
        R = Um[..., :, :r].mT.conj() @ YA
        out = Nystrom(C, torch.diag_embed(1.0 / Sm[..., :r]), R)
    return Nystrom(*boundary.out((out.C, out.core, out.R)))
