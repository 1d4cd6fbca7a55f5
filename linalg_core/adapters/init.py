"""Per-matrix adapter initialisers.

Conventions follow Hugging Face ``peft`` (``peft/tuners/lora/layer.py``): the adapter adds
``s · B @ A`` to the frozen base weight, with ``s = lora_alpha / r`` (or ``lora_alpha / √r``
with ``use_rslora``); ``fan_in_fan_out=True`` means the stored weight is (in, out) (GPT-2's
Conv1D) and is transposed on the way in and out. Methods that move principal components into
the adapter return the residual base weight, computed in float32 (float64 for float64 W) so
that ``residual + s·B@A`` equals W to rounding before it is cast back to W's dtype.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import scipy.linalg
import torch

from linalg_core import _validate
from linalg_core._arrays import compute_dtype
from linalg_core.lowrank import nystrom, rsvd


@dataclass(frozen=True)
class LoRAInit:
    """``W ≈ residual + scaling · B @ A``.

    Shape:
        A: (r, in);  B: (out, r);  residual: W's shape (None when the base is unchanged)
    """

    A: torch.Tensor
    B: torch.Tensor
    residual: torch.Tensor | None
    scaling: float


@dataclass(frozen=True)
class ThreeFactorInit:
    """``W ≈ residual + scaling · B @ N @ A`` (NLoRA).

    Shape:
        A: (r, in);  N: (r, r);  B: (out, r)
    """

    A: torch.Tensor
    N: torch.Tensor
    B: torch.Tensor
    residual: torch.Tensor | None
    scaling: float


@dataclass(frozen=True)
class SVDInit:
    """``W = residual + U diag(S) Vh`` (SVFit trains S; SORSA trains U, S, Vh).

    Shape:
        U: (out, r);  S: (r,);  Vh: (r, in)
    """

    U: torch.Tensor
    S: torch.Tensor
    Vh: torch.Tensor
    residual: torch.Tensor


def scaling(lora_alpha: float, r: int, use_rslora: bool = False) -> float:
    """peft's adapter scaling: ``lora_alpha / r``, or ``lora_alpha / √r`` for rsLoRA."""
    if isinstance(lora_alpha, bool) or not isinstance(lora_alpha, (int, float)) or lora_alpha <= 0:
        raise ValueError(f"lora_alpha={lora_alpha!r} must be a positive number")
    return float(lora_alpha) / (math.sqrt(r) if use_rslora else r)


def _weight(W, rank, fan_in_fan_out):
    """(float compute copy of W as (out, in), original dtype, boundary, rank)."""
    if not isinstance(W, torch.Tensor) and not isinstance(W, np.ndarray) and not hasattr(W, "__dlpack__"):
        raise TypeError(
            f"W must be a float weight tensor, got {type(W).__name__}; for a quantized weight pass its "
            "dequantized value (or a matrix-free operator to linalg_core.rsvd)"
        )
    from linalg_core._arrays import as_tensor

    t, boundary = as_tensor(W, "W")
    if not t.is_floating_point():
        raise TypeError(
            f"W has dtype {t.dtype}: quantized or integer weights cannot be decomposed directly; "
            "dequantize them first (e.g. bitsandbytes.functional.dequantize_4bit)"
        )
    t, _ = _validate.float_array(t, "W", ndim=2)
    _validate.check_finite(t, "W")
    if fan_in_fan_out:
        t = t.T
    rank = _validate.integer(rank, "rank", low=1)
    if rank > min(t.shape):
        raise ValueError(f"rank={rank} exceeds min(out, in)={min(t.shape)} for W of shape {tuple(t.shape)}")
    return t, t.dtype, boundary, rank


def _residual(W, delta, dtype, fan_in_fan_out):
    """W − delta in the compute precision, cast back to W's dtype and layout."""
    res = (W.to(compute_dtype(dtype)) - delta).to(dtype)
    return res.T.contiguous() if fan_in_fan_out else res


def pissa(W, rank: int, *, lora_alpha: float | None = None, use_rslora: bool = False, fan_in_fan_out: bool = False,
          niter="auto", seed=None, exact: bool = False) -> LoRAInit:
    """PiSSA (Meng, Wang and Zhang 2024): the adapter takes the principal singular triplets,
    A = diag(√(S_r/s))·Vh_r, B = U_r·diag(√(S_r/s)), residual W − s·BA.

    The triplets come from :func:`linalg_core.rsvd` (seeded, oversampled; ``exact=True`` uses
    LAPACK's full SVD like peft's ``init_lora_weights="pissa"``).

    Args:
        W: (out, in) weight (float32/16, bfloat16, float64); (in, out) with ``fan_in_fan_out``.
        rank: r.
        lora_alpha: peft's alpha (default r, i.e. scaling 1).
        niter: rsvd iterations.

    Returns:
        :class:`LoRAInit`.

    Example:
        >>> import torch, linalg_core as lc
        >>> W = torch.randn(64, 32)
        >>> init = lc.adapters.pissa(W, 8, seed=0)
        >>> torch.allclose(init.residual + init.scaling * init.B @ init.A, W, atol=1e-5)
        True
    """
    Wt, dtype, boundary, rank = _weight(W, rank, fan_in_fan_out)
    s = scaling(rank if lora_alpha is None else lora_alpha, rank, use_rslora)
    if exact:
        U, S, Vh = torch.linalg.svd(Wt.to(compute_dtype(dtype)), full_matrices=False)
        U, S, Vh = U[:, :rank], S[:rank], Vh[:rank]
    else:
        U, S, Vh = rsvd(Wt, rank, niter=niter, seed=seed)
    root = torch.sqrt(S / s)
    A, B = root[:, None] * Vh, U * root
    residual = _residual(Wt, s * (B @ A), dtype, fan_in_fan_out)
    return LoRAInit(*boundary.out((A, B, residual)), s)


def olora(W, rank: int, *, lora_alpha: float | None = None, use_rslora: bool = False,
          fan_in_fan_out: bool = False) -> LoRAInit:
    """OLoRA (Büyükakyüz 2024): B = Q[:, :r], A = R[:r, :] of W = QR, residual W − s·BA.

    peft computes the full QR of W (O(out·in·min(out, in))) and keeps r columns; the same Q[:, :r]
    and R[:r, :r] come from the Householder QR of W[:, :r] alone (the first r reflectors only
    see those columns), and R[:r, r:] = Q[:, :r]ᵀ W[:, r:]: O(out·in·r).

    Example:
        >>> import torch, linalg_core as lc
        >>> init = lc.adapters.olora(torch.randn(64, 32), 4)
        >>> init.A.shape, init.B.shape
        (torch.Size([4, 32]), torch.Size([64, 4]))
    """
    Wt, dtype, boundary, rank = _weight(W, rank, fan_in_fan_out)
    s = scaling(rank if lora_alpha is None else lora_alpha, rank, use_rslora)
    Wc = Wt.to(compute_dtype(dtype))
    Q, R11 = torch.linalg.qr(Wc[:, :rank])
    A = torch.cat([R11, Q.T @ Wc[:, rank:]], dim=1)
    residual = _residual(Wt, s * (Q @ A), dtype, fan_in_fan_out)
    return LoRAInit(*boundary.out((A, Q, residual)), s)


def nlora(W, rank: int, *, mode: str = "nystrom", lora_alpha: float | None = None, use_rslora: bool = False,
          fan_in_fan_out: bool = False, niter: int = 2, seed=None) -> ThreeFactorInit:
    """NLoRA's three-matrix adapter B·N·A.

    * ``mode="paper"``: the published initialisation exactly: A = W[:r, :], N = W[:r, :r],
      B = W[:, :r], base unchanged (no pseudo-inverse, no randomness; BNA is not an
      approximation of W, and the model's function changes at init, as in the paper's code).
    * ``mode="nystrom"``: the generalized Nyström approximation of :func:`linalg_core.nystrom`
      (randomized, ε-truncated r × r core, ``niter`` power iterations): B = C, N = core/s,
      A = R, and the base becomes W − s·BNA so the function is unchanged at init.
    """
    _validate.choice(mode, "mode", ("paper", "nystrom"))
    Wt, dtype, boundary, rank = _weight(W, rank, fan_in_fan_out)
    s = scaling(rank if lora_alpha is None else lora_alpha, rank, use_rslora)
    if mode == "paper":
        Wc = Wt.to(compute_dtype(dtype))
        out = (Wc[:rank, :], Wc[:rank, :rank], Wc[:, :rank], None)
        return ThreeFactorInit(*boundary.out(out), s)
    ny = nystrom(Wt, rank, niter=niter, seed=seed)
    N = ny.core / s
    residual = _residual(Wt, s * (ny.C @ N @ ny.R), dtype, fan_in_fan_out)
    return ThreeFactorInit(*boundary.out((ny.R, N, ny.C, residual)), s)


def _principal(W, rank, fan_in_fan_out, niter, seed):
    Wt, dtype, boundary, rank = _weight(W, rank, fan_in_fan_out)
    U, S, Vh = rsvd(Wt, rank, niter=niter, seed=seed)
    residual = _residual(Wt, (U * S) @ Vh, dtype, fan_in_fan_out)
    return SVDInit(*boundary.out((U, S, Vh, residual)))


def svfit(W, rank: int, *, fan_in_fan_out: bool = False, niter="auto", seed=None) -> SVDInit:
    """SVFit: frozen principal singular vectors U_r, Vh_r and trainable singular values S_r
    (initialised to W's); the residual W − U_r diag(S_r) Vh_r stays frozen."""
    return _principal(W, rank, fan_in_fan_out, niter, seed)


def sorsa(W, rank: int, *, fan_in_fan_out: bool = False, niter="auto", seed=None) -> SVDInit:
    """SORSA (Cao 2024): trainable principal U_p, S_p, Vh_p (kept near-orthonormal by its
    regulariser during training) over the frozen residual W − U_p diag(S_p) Vh_p."""
    return _principal(W, rank, fan_in_fan_out, niter, seed)


def milora(W, rank: int, *, lora_alpha: float | None = None, use_rslora: bool = False,
           fan_in_fan_out: bool = False) -> LoRAInit:
    """MiLoRA (Wang et al. 2024): the adapter takes the r *smallest* singular triplets,
    A = diag(√(S/s))·Vh_min, B = U_min·diag(√(S/s)), residual W − s·BA.

    Randomized range finders only see large singular values, so the minor ones come from the
    float64 Gram matrix G = WᵀW (or WWᵀ, the smaller) and LAPACK's ``syevr`` asked for its r
    smallest eigenpairs only (``scipy.linalg.eigh(subset_by_index=...)``): tridiagonalisation
    O(d³) but no full SVD (measured 4096 × 4096: ~1/5 of ``torch.linalg.svd``). σ_i = √λ_i; the
    relative accuracy of σ_min is about eps64·(σ_max/σ_min)², ample for weight matrices.
    """
    Wt, dtype, boundary, rank = _weight(W, rank, fan_in_fan_out)
    s = scaling(rank if lora_alpha is None else lora_alpha, rank, use_rslora)
    W64 = Wt.to(torch.float64)
    right = W64.shape[1] <= W64.shape[0]  # eigenvectors of WᵀW are right singular vectors
    G = (W64.T @ W64 if right else W64 @ W64.T).cpu().numpy()
    lam, vec = scipy.linalg.eigh(G, subset_by_index=[0, rank - 1], driver="evr")
    order = np.argsort(lam)[::-1]  # largest of the small ones first, like an SVD
    S = torch.from_numpy(np.sqrt(np.clip(lam[order], 0, None))).to(W64.device)
    V = torch.from_numpy(vec[:, order]).to(W64.device)
    safe = torch.where(S > 0, S, torch.ones_like(S))
    if right:
        U, Vh = (W64 @ V) / safe, V.T
    else:
        U, Vh = V, (W64.T @ V).T / safe[:, None]
    cdt = compute_dtype(dtype)
    root = torch.sqrt(S / s)
    A, B = (root[:, None] * Vh).to(cdt), (U * root).to(cdt)
    residual = _residual(Wt, s * (B @ A), dtype, fan_in_fan_out)
    return LoRAInit(*boundary.out((A, B, residual)), s)
