"""Nyström approximations: the shift-stabilised fixed-rank Nyström for PSD matrices and the
generalized Nyström for any matrix, both returned as three factors C · core · R."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from linalg_core import _validate
from linalg_core._arrays import as_tensor
from linalg_core.lowrank.operators import _device, as_operator
from linalg_core.lowrank.orthonormalize import Householder, as_orthonormalizer
from linalg_core.lowrank.svd import SVD, flip_signs
from linalg_core.random import normal

NYSTROM_STREAM = 8


@dataclass(frozen=True)
class Nystrom:
    """A ≈ C @ core @ R with an r × r core (three-matrix adapters such as NLoRA use it as is).

    The factors are in the caller's array type (numpy for numpy or scipy input).

    Attributes:
        C, core, R: the factors.
        seed: the int seed of the random test matrices (the one drawn for ``seed=None``):
            ``nystrom(A, r, seed=ny.seed, ...)`` reproduces the result bit for bit.

    Shape:
        C: (*, m, r);  core: (*, r, r);  R: (*, r, n)

    Example:
        >>> import torch, linalg_core as lc
        >>> g = torch.Generator().manual_seed(0)
        >>> A = torch.randn(60, 6, generator=g, dtype=torch.float64) @ torch.randn(6, 40, generator=g,
        ...                                                                        dtype=torch.float64)
        >>> ny = lc.nystrom(A, 6, seed=0)
        >>> ny.rank, tuple(ny.C.shape), tuple(ny.R.shape)
        (6, (60, 6), (6, 40))
        >>> bool(torch.linalg.norm(ny.dense() - A) < 1e-8 * torch.linalg.norm(A))
        True
    """

    C: object
    core: object
    R: object
    seed: int | None = None

    @property
    def rank(self) -> int:
        """r, the size of the core."""
        return self.core.shape[-1]

    def to_svd(self) -> SVD:
        """The same approximation as a truncated SVD (QR of C and Rᴴ, SVD of an r × r), in the
        factors' array type.

        Shape:
            U: (*, m, r);  S: (*, r);  Vh: (*, r, n)
        """
        return factors_to_svd(self.C, self.core, self.R, seed=self.seed)

    def dense(self):
        """C @ core @ R, in the factors' array type. Shape: (*, m, n)"""
        return self.C @ self.core @ self.R


def factors_to_svd(C, core, R, *, seed=None) -> SVD:
    """The truncated SVD of C · core · R (QR of C and Rᴴ, SVD of the small middle), returned in
    C's array type: what ``Nystrom.to_svd`` and ``CUR.to_svd`` compute."""
    (Ct, boundary), (Mt, _), (Rt, _) = (as_tensor(x, name) for x, name in ((C, "C"), (core, "core"), (R, "R")))
    Qc, Rc = torch.linalg.qr(Ct)
    Qr, Rr = torch.linalg.qr(Rt.mT.conj())
    u, s, vh = torch.linalg.svd(Rc @ Mt @ Rr.mT.conj())
    out = flip_signs(SVD(Qc @ u, s, vh @ Qr.mT.conj()))
    return SVD(*boundary.out(tuple(out)), seed=seed)


def _pow2_scale(Y: torch.Tensor) -> torch.Tensor:
    """Per batch item, the power of two 2^e with max|Y| / 2^e in [0.5, 1) (1 for an all-zero
    item): dividing by it is exact, so the shifted Nyström becomes scale-invariant."""
    peak = Y.abs().amax(dim=(-2, -1), keepdim=True)
    _, exponent = torch.frexp(peak)
    return torch.where(peak > 0, torch.ldexp(torch.ones_like(peak), exponent), torch.ones_like(peak))


def nystrom(A, rank: int, *, psd: bool = False, oversample=None, niter: int = 0, seed=None,
            backend: str | None = None, orth=Householder()) -> Nystrom:
    """Rank-``rank`` Nyström approximation A ≈ C · core · R.

    * ``psd=True`` (A symmetric positive semi-definite: a Gram or covariance matrix, dense or
      matrix-free): the fixed-rank Nyström with shift of Tropp, Yurtsever, Udell and Cevher
      (2017, Algorithm 3): Y = AΩ for an orthonormal Gaussian Ω (n × k), shift
      ν = √n·eps(‖Y‖), C = chol(Ωᴴ(Y + νΩ)), E = (Y + νΩ)C⁻ᴴ, E = UΣ…, Λ = max(0, Σ² − ν),
      truncated to ``rank``: C = U_r, core = diag(Λ_r), R = U_rᴴ. Computed on Y scaled by a
      power of two near max|Y|, so the result for tA is t times that for A at any scale (no
      underflow of ν); an all-zero A gives a zero core.
    * otherwise: the generalized Nyström of Nakatsukasa (2020), A ≈ AX (YᴴAX)⁺ YᴴA with
      Gaussian X (n × k) and a wider Y (m × ⌈1.5k⌉), the core pseudo-inverted through its SVD
      with singular values below eps·σ₁ dropped and truncated to ``rank``:
      C = AX V_r, core = Σ_r⁻¹, R = U_rᴴ YᴴA. ``niter`` power iterations on X and Y sharpen
      the subspaces on flat spectra (single-pass otherwise).

    Args:
        A: (*, m, n) array, a 2-D sparse matrix (scipy.sparse or torch COO / CSR / CSC: only
            products with it are formed, never a dense copy), a ``scipy.sparse.linalg``
            ``LinearOperator`` or an operator with ``shape``, ``dtype``, ``matmul``, ``rmatmul``
            (square for ``psd``).
        rank: r, 1 ≤ r ≤ min(m, n).
        psd: A is symmetric positive semi-definite (bool).
        oversample: k = rank + oversample (default max(10, rank // 2)).
        niter: power iterations (PSD: Y ← A·orth(Y)).
        seed: int, ``torch.Generator`` or None (fresh entropy, recorded as ``.seed``).
        backend: backend of the random test matrices.
        orth: the orthonormalizer of Ω and of the power iterations' bases (default
            :class:`~linalg_core.lowrank.Householder`; it must return an orthonormal basis, so
            :class:`~linalg_core.lowrank.CholQR2` or a callable of one's own, not ``CholQR`` or
            ``LU``).

    Returns:
        :class:`Nystrom` (C, core, R, seed) with ``.to_svd()``, in the caller's array type
        (numpy for numpy, scipy.sparse and scipy LinearOperator input).

    Shape:
        A: (*, m, n);  C: (*, m, r);  core: (*, r, r);  R: (*, r, n)

    Raises:
        ValueError: rank outside [1, min(m, n)], psd with a non-square A, NaN/Inf in A, a
            ``psd=True`` A that is clearly indefinite.
        TypeError: non-float A, non-integer rank / oversample / niter, non-bool psd, an
            ``orth`` that is not an orthonormalizer.

    Randomness:
        Ω / X is block 0 and Y block 1 of normal stream 8 of ``seed``.

    Example:
        >>> import torch, linalg_core as lc
        >>> X = torch.randn(300, 40, dtype=torch.float64)
        >>> ny = lc.nystrom(X @ X.T, 10, psd=True, seed=0)
        >>> ny.C.shape, ny.core.shape
        (torch.Size([300, 10]), torch.Size([10, 10]))
    """
    _validate.not_differentiable(A, "A", "nystrom")
    op, boundary, _ = as_operator(A, products_only=True)
    m, n = op.shape[-2:]
    rank = _validate.integer(rank, "rank", low=1)
    if rank > min(m, n):
        raise ValueError(f"rank={rank} exceeds min(m, n)={min(m, n)} for A of shape ({m}, {n})")
    psd = _validate.flag(psd, "psd")
    if psd and m != n:
        raise ValueError(f"psd=True needs a square A, got shape ({m}, {n})")
    oversample = max(10, rank // 2) if oversample is None else _validate.integer(oversample, "oversample", low=0)
    niter = _validate.integer(niter, "niter", low=0)
    orth = as_orthonormalizer(orth, "orth")
    if getattr(orth, "orthonormal", True) is False:
        raise ValueError(f"orth={orth!r} does not return an orthonormal basis; nystrom needs one (Householder(), "
                         "CholQR2())")
    seed = _validate.seed(seed)
    k = min(min(m, n), rank + oversample)
    dev = _device(op)

    def gauss(rows, cols, block):
        return normal((rows, cols), seed=seed, stream=NYSTROM_STREAM, offset=block * (1 << 40), dtype=op.dtype,
                      device=dev, backend=backend)

    if psd:
        Omega = orth(gauss(n, k, 0))
        Y = op.matmul(Omega)
        for _ in range(niter):
            Omega = orth(Y / _pow2_scale(Y))
            Y = op.matmul(Omega)
        # Computed on Y / c for a power of two c ~ max|Y| (exact), and Λ scaled back: the shift
        # ν = √n·eps·‖Y/c‖_F never underflows (‖Y‖_F of a tiny A does: its squares are below
        # the smallest float), so the result for tA is t times the result for A.
        c = _pow2_scale(Y)
        Y = Y / c
        zero = (Y == 0).flatten(-2).all(-1)  # an all-zero AΩ: A is 0 (PSD), and so is Λ
        fro = torch.linalg.matrix_norm(Y, ord="fro", keepdim=True)
        nu = math.sqrt(n) * torch.finfo(Y.dtype).eps * torch.where(fro > 0, fro, torch.ones_like(fro))
        for _ in range(6):  # grow the shift if rounding made Ωᴴ(Y + νΩ) indefinite
            Ynu = Y + nu * Omega
            Bm = Omega.mT.conj() @ Ynu
            L, info = torch.linalg.cholesky_ex((Bm + Bm.mT.conj()) / 2)
            if not bool((info != 0).any()):
                break
            nu = torch.where((info != 0)[..., None, None], nu * 10, nu)
        else:
            raise ValueError("nystrom(psd=True): Ωᴴ A Ω is not positive definite even with a shift of "
                             f"{float(nu.max()):.3g}·max|AΩ|: A is not positive semi-definite")
        E = torch.linalg.solve_triangular(L.mT.conj(), Ynu, upper=True, left=False)
        U, Sig, _ = torch.linalg.svd(E, full_matrices=False)
        lam = torch.clamp(Sig[..., :rank] ** 2 - nu[..., 0], min=0) * c[..., 0]
        lam = torch.where(zero[..., None], torch.zeros_like(lam), lam)
        U = flip_signs(SVD(U[..., :rank], lam, U[..., :rank].mT.conj())).U
        out = Nystrom(U, torch.diag_embed(lam), U.mT.conj())
    else:
        ell = min(m, math.ceil(1.5 * k))
        X, Yt = gauss(n, k, 0), gauss(m, ell, 1)
        for _ in range(niter):
            X = orth(op.rmatmul(op.matmul(orth(X))))
            Yt = orth(op.matmul(op.rmatmul(orth(Yt))))
        AX = op.matmul(X)  # (m, k)
        YA = op.rmatmul(Yt).mT.conj()  # (ℓ, n) = YᴴA
        M = Yt.mT.conj() @ AX  # (ℓ, k)
        Um, Sm, Vmh = torch.linalg.svd(M, full_matrices=False)
        keep = int((Sm > torch.finfo(Sm.dtype).eps * max(M.shape[-2:]) * Sm[..., :1]).sum(-1).min())
        r = min(rank, keep)
        C = AX @ Vmh[..., :r, :].mT.conj()
        R = Um[..., :, :r].mT.conj() @ YA
        out = Nystrom(C, torch.diag_embed(1.0 / Sm[..., :r]), R)
    return Nystrom(*boundary.out((out.C, out.core, out.R)), seed=seed)
