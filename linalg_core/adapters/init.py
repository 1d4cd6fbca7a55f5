"""Per-matrix adapter initialisers.

Conventions follow Hugging Face ``peft`` (``peft/tuners/lora/layer.py``): the adapter adds
``s · B @ A`` to the frozen base weight, with ``s = lora_alpha / r`` (or ``lora_alpha / √r``
with ``use_rslora``); ``fan_in_fan_out=True`` means the stored weight is (in, out) (GPT-2's
Conv1D) and is transposed on the way in and out. Methods that move principal components into
the adapter return the residual base weight, computed in float32 (float64 for float64 W) so
that ``residual + s·B@A`` equals W to rounding before it is cast back to W's dtype.
"""

from __future__ import annotations


import numpy as np
import scipy.linalg
import torch

from linalg_core import _ops, _threads, _validate
from linalg_core._arrays import cast, compute_dtype
from linalg_core._out import partially_overlaps
from linalg_core.adapters.factors import LoRAInit, SVDInit, ThreeFactorInit, scaling
from linalg_core.lowrank import RowSpace, as_linear_operator, nystrom, rsvd
from linalg_core.lowrank.operators import ROW_BLOCK_ELEMS as _BLOCK_ELEMS

# The largest rank whose residual W − s·B·A is written by the one-pass lowrank_update kernel
# (AVX-512 CPUs) instead of the GEMM path: on an 11008 × 4096 weight, 2 threads, it took float32
# into a kept buffer 24 → 16 ms (r = 16) and 26 → 17 ms (r = 32), bfloat16 into new memory
# 42 → 31 ms and 43 → 39 ms, in place 15 → 9 and 14 → 15 ms; at r = 64 bfloat16 in place went
# 14 → 27 ms and at r = 128 every case lost (r FMAs per element: compute-bound there). A float32
# weight written in place takes the kernel too, though addmm_ is one read-modify-write pass as
# well (10.5 ms both at r = 16, 13.2 against 15.8 ms at r = 32): every destination then gets the
# same residual bit for bit (out= or not, in place, an executor's task). The AVX2 kernel set
# (6 × 16 tiles, A packed, rows prefetched) against the GEMM path on a Zen 3 EPYC, same sizes,
# 2 threads: float32 kept buffer 29.4 → 21.3 ms (r = 16) and 37.2 → 23.9 (r = 32), in place
# 14.8 → 11.7 and 31.3 → 24.7; bfloat16 kept 33.2 → 16.8 and 47.8 → 26.7, in place 35.8 → 14.6
# and 45.6 → 24.3; float16 kept 31.0 → 13.6 and 39.0 → 22.5, in place 31.1 → 11.2 and 34.6 → 19.6.
# Both kernel sets now share that packed tile (6 × 32 on AVX-512). On a Zen 4 EPYC it won at
# r = 64 as well (bfloat16 in place 48.4 → 28.8 ms, float32 kept 40.2 → 30.7) and lost at r = 128
# (float32 in place 59.8 → 74.4); r = 64 was not measured on an Intel AVX-512 CPU with this tile
# (the earlier unpacked 4 × 64 one lost there), so the limit stays 32.
FUSED_MAX_RANK = 32


def _weight(W, rank, fan_in_fan_out, check=True):
    """(W as (out, in), original dtype, boundary, rank); ``check=False`` leaves the NaN/Inf check
    to the caller (PiSSA's rsvd folds it into its bfloat16 copy)."""
    if not isinstance(W, torch.Tensor) and not isinstance(W, np.ndarray) and not hasattr(W, "__dlpack__"):
        raise TypeError(
            f"W must be a float weight tensor or (for pissa, olora) a linalg_core.quant.QuantizedTensor, got "
            f"{type(W).__name__}"
        )
    from linalg_core._arrays import as_tensor

    t, boundary = as_tensor(W, "W")
    if not t.is_floating_point():
        raise TypeError(
            f"W has dtype {t.dtype}: integer or packed weights cannot be decomposed directly; pass a "
            "linalg_core.quant.QuantizedTensor (pissa, olora) or the dequantized weight"
        )
    t, _ = _validate.float_array(t, "W", ndim=2)
    if check:
        _validate.check_finite(t, "W")
    if fan_in_fan_out:
        t = t.T
    rank = _validate.integer(rank, "rank", low=1)
    if rank > min(t.shape):
        raise ValueError(f"rank={rank} exceeds min(out, in)={min(t.shape)} for W of shape {tuple(t.shape)}")
    return t, t.dtype, boundary, rank


def _is_quantized(W) -> bool:
    from linalg_core.quant import QuantizedTensor

    return isinstance(W, QuantizedTensor)


def _quantized_args(Q, rank, lora_alpha, use_rslora, fan_in_fan_out, out):
    """(rank, scaling) for a QuantizedTensor base, whose residual is re-quantized (no ``out``)."""
    if len(Q.shape) != 2:
        raise ValueError(f"W must be a 2-D quantized weight, got shape {Q.shape}")
    if fan_in_fan_out or out is not None:
        raise ValueError("a QuantizedTensor W takes neither fan_in_fan_out nor out (its residual is re-quantized)")
    rank = _validate.integer(rank, "rank", low=1)
    if rank > min(Q.shape):
        raise ValueError(f"rank={rank} exceeds min(out, in)={min(Q.shape)} for W of shape {Q.shape}")
    return rank, scaling(rank if lora_alpha is None else lora_alpha, rank, use_rslora)


def _fused(W, B, target) -> bool:
    """Whether the residual goes through the one-pass ``lowrank_update`` kernel: a row-major
    float32 / float16 / bfloat16 CPU weight (and destination), rank ≤ :data:`FUSED_MAX_RANK`, the AVX-512
    or AVX2 kernel set (the portable loop is slower than the GEMM path)."""
    if not (W.is_cpu and W.dtype in (torch.float32, torch.float16, torch.bfloat16) and W.is_contiguous()
            and 0 < B.shape[-1] <= FUSED_MAX_RANK and W.dim() == 2):
        return False
    if target is not None and not (target.is_contiguous() and target.dtype == W.dtype and target.is_cpu
                                   and not partially_overlaps(target, W)):  # W itself or separate memory
        return False
    if _FUSED_OK[0] is None:
        from linalg_core._arrays import _plumbing
        from linalg_core._ext import _C

        _FUSED_OK[0] = _plumbing(W) == "cpu" and _C.cpu_isa() in ("avx512", "avx2")
    return _FUSED_OK[0]


_FUSED_OK: list[bool | None] = [None]


def _residual(W, B, A, s, fan_in_fan_out, out=None):
    """W − s·B@A in the compute precision, cast back to W's dtype and stored layout; written
    into ``out`` when given (``out`` may be the stored weight itself).

    float32 / float16 / bfloat16 row-major W of rank ≤ :data:`FUSED_MAX_RANK` on an AVX-512 or AVX2 CPU: one pass
    of the ``lowrank_update`` kernel (W read once, the result written once, rounded once).
    Otherwise float32/64 W: one fused ``addmm`` pass (in place when ``out`` is W); 16-bit W:
    block of rows by block of rows through one reused float32 buffer (convert, ``addmm_``,
    convert back), so no float32 copy of the whole weight is made."""
    cdt = compute_dtype(W.dtype)
    B, A = B.to(cdt), A.to(cdt)
    target = None
    if out is not None:
        target = out.T if fan_in_fan_out else out
        if tuple(target.shape) != tuple(W.shape):
            raise ValueError(f"out has shape {tuple(out.shape)}, expected the stored weight's shape")
    if _fused(W, B, target):
        if target is None:
            target = torch.empty(W.shape, dtype=W.dtype, device=W.device)
        _ops.lowrank_update(W, B.contiguous(), A.contiguous(), float(s), target, backend="cpu")
        return out if out is not None else target
    if W.dtype == cdt and (target is None or target.dtype == cdt):
        if target is None:
            res = torch.addmm(W, B, A, alpha=-s)
            return res.T.contiguous() if fan_in_fan_out else res
        if target.data_ptr() == W.data_ptr() and target.stride() == W.stride():
            target.addmm_(B, A, alpha=-s)  # in place: one read-modify-write pass
        else:
            torch.addmm(W, B, A, alpha=-s, out=target)
        return out
    if target is None:
        target = torch.empty(W.shape, dtype=W.dtype, device=W.device)
        out = None
    step = max(1, _BLOCK_ELEMS // max(1, W.shape[1]))
    buf = torch.empty(min(step, W.shape[0]), W.shape[1], dtype=cdt, device=W.device)
    for i0 in range(0, W.shape[0], step):
        i1 = min(W.shape[0], i0 + step)
        blk = buf[: i1 - i0]
        cast(W[i0:i1], cdt, out=blk) if W.is_contiguous() else blk.copy_(W[i0:i1])
        blk.addmm_(B[i0:i1], A, alpha=-s)
        if target.is_contiguous():
            cast(blk, target.dtype, out=target[i0:i1])
        else:
            target[i0:i1].copy_(blk)
    if out is not None:
        return out
    return target.T.contiguous() if fan_in_fan_out else target


# PiSSA's default: k = 2r sketch columns (at least r + 10) and 3 iterations ending on the row space
# (seven passes over W, bfloat16 where those GEMMs pay: :data:`~linalg_core.lowrank.rsvd.
# ROWSPACE_BF16_MIN_WORK`; else eight float32 passes). Captured energy (mean / worst layer)
# against peft's svd_lowrank(q=r, niter=4) (benchmarks/RESULTS.md, "Measurements behind design
# choices"): LLaMA-7B-shaped flat spectra (σ_i = i^-0.3), r = 16, 0.9957-0.9968 against
# 0.992-0.9927 in 131 ms (the earlier k = 3r, 2 iterations: 0.9916-0.993, below peft on the
# 11008 × 4096, in 142 ms); r = 64, k = 128: 0.997 against 0.9916 (2 iterations: 0.9857);
# MiniLM-L6, r = 16: 0.9903 / 0.9755 against 0.9825 / 0.9710 in 32 ms for its 36 weights (the
# earlier 0.9933 / 0.9822 in 53 ms; k = 48 and 3 iterations: 0.9965 / 0.9895 in 47 ms).
PISSA_NITER = 3


def _pissa_oversample(rank: int) -> int:
    """PiSSA's sketch columns beyond r: max(10, r), i.e. k = 2r (at least r + 10)."""
    return max(10, rank)


def _check_out(out):
    if out is not None and not isinstance(out, torch.Tensor):
        raise TypeError(f"out must be a torch.Tensor (the residual's destination), got {type(out).__name__}")


def pissa(W, rank: int, *, lora_alpha: float | None = None, use_rslora: bool = False, fan_in_fan_out: bool = False,
          niter="auto", seed=None, exact: bool = False, out=None) -> LoRAInit:
    """PiSSA (Meng, Wang and Zhang 2024): the adapter takes the principal singular triplets,
    A = diag(√(S_r/s))·Vh_r, B = U_r·diag(√(S_r/s)), residual W − s·BA.

    The triplets come from :func:`linalg_core.rsvd` (seeded, k = 2r sketch columns, at least
    r + 10, ``niter="auto"`` = 3 iterations; ``RowSpace(bf16_only=True)``: ending on the row
    space, seven bfloat16 passes over W where bfloat16 GEMMs pay, else eight float32 passes);
    ``exact=True`` uses
    LAPACK's full SVD like peft's
    ``init_lora_weights="pissa"``. The residual is one fused GEMM (``addmm``) in float32 (float64
    for float64 W), exact to rounding before the cast back to W's dtype.

    Args:
        W: (out, in) weight (float32/16, bfloat16, float64); (in, out) with ``fan_in_fan_out``.
        rank: r.
        lora_alpha: peft's alpha (default r, i.e. scaling 1).
        use_rslora: peft's rsLoRA scaling lora_alpha / √r.
        fan_in_fan_out: W is stored (in, out) (GPT-2's Conv1D).
        niter: rsvd iterations (``"auto"``: 3).
        seed: the seed of rsvd's test matrix.
        exact: LAPACK's full SVD instead of rsvd.
        out: tensor of W's stored shape to receive the residual (may be W itself: the in-place
            update of a model's weight that :func:`init_peft_model` does); default a new tensor.

    Returns:
        :class:`LoRAInit`.

    Shape:
        W: (out, in);  A: (r, in);  B: (out, r);  residual: W's shape

    Randomness:
        rsvd's Gaussian test matrix from ``seed`` (none with ``exact=True``).

    Example:
        >>> import torch, linalg_core as lc
        >>> W = torch.randn(64, 32)
        >>> init = lc.adapters.pissa(W, 8, seed=0)
        >>> torch.allclose(init.residual + init.scaling * init.B @ init.A, W, atol=1e-5)
        True
    """
    _check_out(out)
    if _is_quantized(W):
        from linalg_core.adapters.quantized import principal_of_quantized

        rank, s = _quantized_args(W, rank, lora_alpha, use_rslora, fan_in_fan_out, out)
        return principal_of_quantized(W, rank, s, _pissa_oversample(rank), PISSA_NITER if niter == "auto" else niter,
                                      seed)
    Wt, dtype, boundary, rank = _weight(W, rank, fan_in_fan_out, check=exact)
    s = scaling(rank if lora_alpha is None else lora_alpha, rank, use_rslora)
    if exact:
        U, S, Vh = torch.linalg.svd(Wt.to(compute_dtype(dtype)), full_matrices=False)
        U, S, Vh = U[:, :rank], S[:rank], Vh[:rank]
    else:
        U, S, Vh = _pissa_triplets(Wt, rank, niter, seed)
    return _from_svd(Wt, U, S, Vh, s, boundary, fan_in_fan_out, out)


def _pissa_triplets(W: torch.Tensor, rank: int, niter="auto", seed=None):
    """PiSSA's top-``rank`` triplets of W (*, m, n) (a batch equals the loop over it): rsvd with
    ``RowSpace(bf16_only=True)``: where bfloat16 products pay, ending on the row space (no
    full-precision B = QᴴW pass; singular values then carry bfloat16 rounding), else subspace
    iteration; the residual is formed from W exactly afterwards."""
    return rsvd(as_linear_operator(W, name="W"), rank, finder=RowSpace(bf16_only=True),
                oversample=_pissa_oversample(rank), niter=PISSA_NITER if niter == "auto" else niter, seed=seed)


def _from_svd(Wt, U, S, Vh, s, boundary, fan_in_fan_out, out):
    root = torch.sqrt(S / s)
    A, B = root[:, None] * Vh, U * root
    residual = _residual(Wt, B, A, s, fan_in_fan_out, out)
    return LoRAInit(*boundary.out((A, B, residual)), s)


def olora(W, rank: int, *, lora_alpha: float | None = None, use_rslora: bool = False,
          fan_in_fan_out: bool = False, out=None) -> LoRAInit:
    """OLoRA (Büyükakyüz 2024): B = Q[:, :r], A = R[:r, :] of W = QR, residual W − s·BA.

    peft computes the full QR of W (O(out·in·min(out, in))) and keeps r columns; the same Q[:, :r]
    and R[:r, :r] come from the Householder QR of W[:, :r] alone (the first r reflectors only
    see those columns), and R[:r, r:] = Q[:, :r]ᵀ W[:, r:]: O(out·in·r).

    Args:
        W: (out, in) weight (float32/16, bfloat16, float64); (in, out) with ``fan_in_fan_out``.
        rank: r.
        lora_alpha: peft's alpha (default r, i.e. scaling 1).
        use_rslora: peft's rsLoRA scaling lora_alpha / √r.
        fan_in_fan_out: W is stored (in, out) (GPT-2's Conv1D).
        out: tensor of W's stored shape to receive the residual (may be W itself); default a new
            tensor.

    Returns:
        :class:`LoRAInit` (deterministic: no randomness).

    Shape:
        W: (out, in);  A: (r, in);  B: (out, r);  residual: W's shape

    Example:
        >>> import torch, linalg_core as lc
        >>> init = lc.adapters.olora(torch.randn(64, 32), 4)
        >>> init.A.shape, init.B.shape
        (torch.Size([4, 32]), torch.Size([64, 4]))
    """
    _check_out(out)
    if _is_quantized(W):
        from linalg_core.adapters.quantized import orthonormal_of_quantized

        return orthonormal_of_quantized(W, *_quantized_args(W, rank, lora_alpha, use_rslora, fan_in_fan_out, out))
    Wt, dtype, boundary, rank = _weight(W, rank, fan_in_fan_out, check=False)
    s = scaling(rank if lora_alpha is None else lora_alpha, rank, use_rslora)
    Wc = Wt.to(compute_dtype(dtype))
    Q, R11 = torch.linalg.qr(Wc[:, :rank])
    A = torch.cat([R11, Q.T @ Wc[:, rank:]], dim=1)
    # Every entry of W reaches Q, R11 (its first r columns) or a column of QᵀW (NaN·0 is NaN), so
    # checking the small factors replaces a pass over W.
    _validate.check_finite_through([A, Q], Wt, "W", "its QR factors")
    residual = _residual(Wt, Q, A, s, fan_in_fan_out, out)
    return LoRAInit(*boundary.out((A, Q, residual)), s)


def nlora(W, rank: int, *, mode: str = "nystrom", lora_alpha: float | None = None, use_rslora: bool = False,
          fan_in_fan_out: bool = False, niter: int = 2, seed=None, out=None) -> ThreeFactorInit:
    """NLoRA's three-matrix adapter B·N·A.

    * ``mode="paper"``: the published initialisation exactly: A = W[:r, :], N = W[:r, :r],
      B = W[:, :r], base unchanged (no pseudo-inverse, no randomness; BNA is not an
      approximation of W, and the model's function changes at init, as in the paper's code).
    * ``mode="nystrom"``: the generalized Nyström approximation of :func:`linalg_core.nystrom`
      (randomized, ε-truncated r × r core, ``niter`` power iterations): B = C, N = core/s,
      A = R, and the base becomes W − s·BNA so the function is unchanged at init.

    Args:
        W: (out, in) weight (float32/16, bfloat16, float64); (in, out) with ``fan_in_fan_out``.
        rank: r.
        lora_alpha: peft's alpha (default r, i.e. scaling 1).
        use_rslora: peft's rsLoRA scaling lora_alpha / √r.
        fan_in_fan_out: W is stored (in, out) (GPT-2's Conv1D).
        mode: ``"nystrom"`` or ``"paper"``.
        niter: power iterations of the Nyström sketch.
        seed: the seed of the Nyström test matrices.
        out: tensor of W's stored shape to receive the residual (may be W itself); default a new
            tensor.

    Returns:
        :class:`ThreeFactorInit` (residual None for ``"paper"``).

    Shape:
        W: (out, in);  A: (r, in);  N: (r, r);  B: (out, r)

    Randomness:
        ``"nystrom"``: the Gaussian test matrices of :func:`linalg_core.nystrom` from ``seed``;
        ``"paper"``: none.

    Example:
        >>> import torch, linalg_core as lc
        >>> init = lc.adapters.nlora(torch.randn(64, 32), 4, seed=0)
        >>> init.B.shape, init.N.shape, init.A.shape
        (torch.Size([64, 4]), torch.Size([4, 4]), torch.Size([4, 32]))
    """
    _check_out(out)
    _validate.choice(mode, "mode", ("paper", "nystrom"))
    Wt, dtype, boundary, rank = _weight(W, rank, fan_in_fan_out)
    s = scaling(rank if lora_alpha is None else lora_alpha, rank, use_rslora)
    if mode == "paper":
        Wc = Wt.to(compute_dtype(dtype))
        return ThreeFactorInit(*boundary.out((Wc[:rank, :], Wc[:rank, :rank], Wc[:, :rank], None)), s)
    ny = nystrom(Wt, rank, niter=niter, seed=seed)
    N = ny.core / s
    residual = _residual(Wt, ny.C @ N, ny.R, s, fan_in_fan_out, out)
    return ThreeFactorInit(*boundary.out((ny.R, N, ny.C, residual)), s)


def _principal(W, rank, fan_in_fan_out, niter, seed, out):
    _check_out(out)
    Wt, dtype, boundary, rank = _weight(W, rank, fan_in_fan_out)
    U, S, Vh = rsvd(Wt, rank, niter=niter, seed=seed)
    residual = _residual(Wt, U * S, Vh, 1.0, fan_in_fan_out, out)
    return SVDInit(*boundary.out((U, S, Vh, residual)))


def svfit(W, rank: int, *, fan_in_fan_out: bool = False, niter="auto", seed=None, out=None) -> SVDInit:
    """SVFit: frozen principal singular vectors U_r, Vh_r and trainable singular values S_r
    (initialised to W's); the residual W − U_r diag(S_r) Vh_r stays frozen (Sun et al. 2024,
    "SVFit: Parameter-Efficient Fine-Tuning of Large Pre-Trained Models Using Singular Values").

    Args:
        W: (out, in) weight; (in, out) with ``fan_in_fan_out``.
        rank: r.
        fan_in_fan_out: W is stored (in, out).
        niter: rsvd iterations (``"auto"``: rsvd's adaptive default).
        seed: the seed of rsvd's test matrix.
        out: tensor of W's stored shape to receive the residual (may be W itself); default a new
            tensor.

    Returns:
        :class:`SVDInit`.

    Shape:
        W: (out, in);  U: (out, r);  S: (r,);  Vh: (r, in)

    Randomness:
        rsvd's Gaussian test matrix from ``seed``.

    Example:
        >>> import torch, linalg_core as lc
        >>> lc.adapters.svfit(torch.randn(64, 32), 4, seed=0).S.shape
        torch.Size([4])
    """
    return _principal(W, rank, fan_in_fan_out, niter, seed, out)


def sorsa(W, rank: int, *, fan_in_fan_out: bool = False, niter="auto", seed=None, out=None) -> SVDInit:
    """SORSA (Cao 2024): trainable principal U_p, S_p, Vh_p (kept near-orthonormal by its
    regulariser during training) over the frozen residual W − U_p diag(S_p) Vh_p.

    Args:
        W: (out, in) weight; (in, out) with ``fan_in_fan_out``.
        rank: r.
        fan_in_fan_out: W is stored (in, out).
        niter: rsvd iterations (``"auto"``: rsvd's adaptive default).
        seed: the seed of rsvd's test matrix.
        out: tensor of W's stored shape to receive the residual (may be W itself); default a new
            tensor.

    Returns:
        :class:`SVDInit`.

    Shape:
        W: (out, in);  U: (out, r);  S: (r,);  Vh: (r, in)

    Randomness:
        rsvd's Gaussian test matrix from ``seed``.

    Example:
        >>> import torch, linalg_core as lc
        >>> lc.adapters.sorsa(torch.randn(64, 32), 4, seed=0).U.shape
        torch.Size([64, 4])
    """
    return _principal(W, rank, fan_in_fan_out, niter, seed, out)


def milora(W, rank: int, *, lora_alpha: float | None = None, use_rslora: bool = False,
           fan_in_fan_out: bool = False, out=None) -> LoRAInit:
    """MiLoRA (Wang et al. 2024): the adapter takes the r *smallest* singular triplets,
    A = diag(√(S/s))·Vh_min, B = U_min·diag(√(S/s)), residual W − s·BA.

    Randomized range finders only see large singular values, so the minor ones come from the
    float64 Gram matrix G = WᵀW (or WWᵀ, the smaller) and LAPACK's ``syevr`` asked for its r
    smallest eigenpairs only (``scipy.linalg.eigh(subset_by_index=...)``): tridiagonalisation
    O(d³) but no full SVD (a fraction of ``torch.linalg.svd``'s time, benchmarks/RESULTS.md). σ_i = √λ_i; the
    relative accuracy of σ_min is about eps64·(σ_max/σ_min)², ample for weight matrices.

    Args:
        W: (out, in) weight (float32/16, bfloat16, float64); (in, out) with ``fan_in_fan_out``.
        rank: r.
        lora_alpha: peft's alpha (default r, i.e. scaling 1).
        use_rslora: peft's rsLoRA scaling lora_alpha / √r.
        fan_in_fan_out: W is stored (in, out) (GPT-2's Conv1D).
        out: tensor of W's stored shape to receive the residual (may be W itself); default a new
            tensor.

    Returns:
        :class:`LoRAInit` (deterministic).

    Shape:
        W: (out, in);  A: (r, in);  B: (out, r);  residual: W's shape

    Example:
        >>> import torch, linalg_core as lc
        >>> lc.adapters.milora(torch.randn(64, 32), 4).A.shape
        torch.Size([4, 32])
    """
    _check_out(out)
    Wt, dtype, boundary, rank = _weight(W, rank, fan_in_fan_out)
    s = scaling(rank if lora_alpha is None else lora_alpha, rank, use_rslora)
    W64 = Wt.to(torch.float64)
    right = W64.shape[1] <= W64.shape[0]  # eigenvectors of WᵀW are right singular vectors
    G = (W64.T @ W64 if right else W64 @ W64.T).cpu().numpy()
    with _threads.blas_sized(G.shape[0] ** 3):  # one pool per small call: torch's made G
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
    return _from_svd(Wt, U.to(cdt), S.to(cdt), Vh.to(cdt), s, boundary, fan_in_fan_out, out)


def lora_sb(update, rank: int, *, lora_alpha: float | None = None, use_rslora: bool = False,
            fan_in_fan_out: bool = False, niter="auto", seed=None) -> ThreeFactorInit:
    """LoRA-SB (Ponkshe et al. 2024, "Initialization using update approximation is a silver
    bullet"): the LoRA-XS architecture s·B·R·A with B, A frozen and only the r × r R trained,
    initialised from the truncated SVD U_r S_r V_rᵀ of an estimate of the first full fine-tuning
    update ΔW (see :func:`lora_sb_update`): B = U_r, R = S_r/s, A = V_rᵀ, so s·BRA is the best
    rank-r approximation of ΔW. The base weight is unchanged (the adapter *is* the first step).

    Args:
        update: (out, in) estimated update ΔW ((in, out) with ``fan_in_fan_out``).
        rank: r.

        lora_alpha, use_rslora, fan_in_fan_out: as for :func:`pissa`.
        niter: rsvd iterations.
        seed: the seed of rsvd's test matrix.

    Returns:
        :class:`ThreeFactorInit` with N = R (diagonal at init), residual None.

    Shape:
        update: (out, in);  A: (r, in);  N: (r, r);  B: (out, r)

    Randomness:
        rsvd's Gaussian test matrix from ``seed``.

    Example:
        >>> import torch, linalg_core as lc
        >>> grad = torch.randn(64, 32)
        >>> init = lc.adapters.lora_sb(lc.adapters.lora_sb_update(grad, lr=1e-3), 4, seed=0)
        >>> init.N.shape
        torch.Size([4, 4])
    """
    Wt, dtype, boundary, rank = _weight(update, rank, fan_in_fan_out)
    s = scaling(rank if lora_alpha is None else lora_alpha, rank, use_rslora)
    U, S, Vh = rsvd(Wt, rank, niter=niter, seed=seed)
    return ThreeFactorInit(*boundary.out((Vh, torch.diag(S / s), U, None)), s)


def lora_sb_update(grad_sum, *, lr: float, optimizer: str = "adam"):
    """LoRA-SB's estimate of the first full fine-tuning update from the gradient summed over a
    few hundred samples: −lr·sign(g) for Adam (its first step, bias-corrected, up to ε), −lr·g
    for SGD. Returns a new float32 tensor (float64 for float64 g).

    Args:
        grad_sum: the summed gradient of the weight.
        lr: the learning rate, > 0.
        optimizer: ``"adam"`` or ``"sgd"``.

    Returns:
        The estimated update ΔW.

    Shape:
        grad_sum: (out, in);  out: (out, in)

    Example:
        >>> import torch, linalg_core as lc
        >>> lc.adapters.lora_sb_update(torch.tensor([[2.0, -3.0]]), lr=0.1)
        tensor([[-0.1000,  0.1000]])
    """
    _validate.choice(optimizer, "optimizer", ("adam", "sgd"))
    lr = _validate.real(lr, "lr", low=0, low_open=True)
    g, _ = _validate.float_array(grad_sum, "grad_sum", ndim=2)
    _validate.check_finite(g, "grad_sum")
    g = g.to(compute_dtype(g.dtype))
    return -lr * (torch.sign(g) if optimizer == "adam" else g)


def loldu(W, rank: int, *, lora_alpha: float | None = None, use_rslora: bool = False,
          fan_in_fan_out: bool = False, out=None) -> ThreeFactorInit:
    """LoLDU (Shi et al. 2024): from the LDU decomposition with partial pivoting W = P·L·D·U
    (L unit lower, D diagonal, U unit upper), the adapter s·(P·L_r)·diag(z)·U_r with
    z = D[:r] the only trainable factor, and the residual W − s·(P·L_r)·diag(z)·U_r (as the
    authors' code). The permutation is folded into B = P·L_r (out × r), so no out × out P is
    stored.

    Only the first r elimination steps are needed, and their pivots depend only on W's first r
    columns: the LU of W[:, :r] gives P, L_r and U_11, and U_12 = L_11⁻¹ (PᵀW)[:r, r:]: O(out·in·r)
    instead of the full LU's O(out·in·min(out, in)), and the same factors to rounding.

    Args:
        W: (out, in) weight (float32/16, bfloat16, float64); (in, out) with ``fan_in_fan_out``.
        rank: r.
        lora_alpha: peft's alpha (default r, i.e. scaling 1).
        use_rslora: peft's rsLoRA scaling lora_alpha / √r.
        fan_in_fan_out: W is stored (in, out) (GPT-2's Conv1D).
        out: tensor of W's stored shape to receive the residual (may be W itself); default a new
            tensor.

    Returns:
        :class:`ThreeFactorInit` with B = P·L_r, N = diag(z), A = U_r (deterministic).

    Shape:
        W: (out, in);  A: (r, in);  N: (r, r);  B: (out, r);  residual: W's shape

    Example:
        >>> import torch, linalg_core as lc
        >>> W = torch.randn(64, 32, dtype=torch.float64)
        >>> init = lc.adapters.loldu(W, 4)
        >>> torch.allclose(init.residual + init.scaling * init.B @ init.N @ init.A, W)
        True
    """
    _check_out(out)
    Wt, dtype, boundary, rank = _weight(W, rank, fan_in_fan_out)
    s = scaling(rank if lora_alpha is None else lora_alpha, rank, use_rslora)
    Wc = Wt.to(compute_dtype(dtype))
    LU, pivots = torch.linalg.lu_factor(Wc[:, :rank])
    perm = np.arange(Wc.shape[0])
    for i, p in enumerate(pivots.cpu().numpy() - 1):  # LAPACK's row interchanges, in order
        perm[[i, p]] = perm[[p, i]]
    perm = torch.from_numpy(perm).to(Wc.device)
    L = torch.tril(LU, -1)
    L[:rank].diagonal().fill_(1)
    U11 = torch.triu(LU[:rank])
    U12 = torch.linalg.solve_triangular(L[:rank], Wc[perm[:rank], rank:], upper=False, unitriangular=True)
    Ur = torch.cat([U11, U12], dim=1)
    d = U11.diagonal()
    safe = torch.where(d != 0, d, torch.ones_like(d))  # a zero pivot: that row stays unnormalised, z = 0
    A, z = Ur / safe[:, None], torch.where(d != 0, d, torch.zeros_like(d))
    B = torch.empty_like(L)
    B[perm] = L
    residual = _residual(Wt, B * z, A, s, fan_in_fan_out, out)
    return ThreeFactorInit(*boundary.out((A, torch.diag(z), B, residual)), s)
