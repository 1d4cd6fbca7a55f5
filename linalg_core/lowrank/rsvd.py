"""Randomized SVD: range finder, subspace and block Krylov iterations, rank-adaptive QB.

Algorithms:

* ``method="subspace"``: Algorithm 4.4 of Halko, Martinsson and Tropp (2011) (randomized
  subspace iteration): Y = AΩ with k = rank + oversample Gaussian columns, ``niter`` rounds of
  Y ← A(AᴴQ) with the basis re-orthonormalised after every product, then B = QᴴA and the SVD of
  the small B.
* ``method="rowspace"``: the same iterations ending on the row space: after the last
  Z = orth(AᴴQ), Y = AZ and A ≈ YZᴴ, whose SVD comes from Y alone, without the B = QᴴA pass.
  AZZᴴ is the best approximation with rows in range(Z), which holds the rows of the previous
  iterate's QQᴴA, and "subspace"'s final QQᴴA is the best with columns in range(AZ): the error
  lies between "subspace" with niter − 1 and with niter iterations, for one pass fewer than the
  latter (measured, captured rank-16 energy, k = 48: rowspace at niter = 2 0.9930 against
  subspace's 0.9975 at niter = 2 and 0.9767 at niter = 1 on a flat 4096² spectrum σᵢ = i^-0.3;
  0.9866 against 0.9933 and 0.9712 on MiniLM-L6's 36 weights; the same in bfloat16 products).
* ``method="krylov"``: randomized block Krylov iteration (Musco and Musco 2015, Algorithm 2):
  the basis of [AΩ, (AAᴴ)AΩ, …, (AAᴴ)^q AΩ] with block size k; better singular values than
  subspace iteration for the same number of products when the spectrum is flat.
* ``tol=``: the blocked, rank-adaptive QB of Martinsson and Voronin (2016) (``randQB_EI``, as in
  RandLAPACK): blocks of Q and B are added until the error ‖A − QB‖_F, known exactly as
  √(‖A‖²_F − ‖B‖²_F), drops below tol·‖A‖_F; the rank returned is the smallest whose error
  meets the tolerance.

Defaults (``oversample="auto"``, ``niter="auto"``) come from ``benchmarks/bench_lowrank.py``
(the "defaults grid" rows of ``benchmarks/RESULTS.md``). On a flat LLM-like spectrum
(σ_i = (i+1)^-0.3, 4096², r = 64, 2 threads): k = r + 10 with 4 iterations gives a top-r
singular value error of 4.0e-2 (85 ms), 6 iterations 2.3e-2 (96 ms); k = 2r with 4 iterations
4.4e-3 (103 ms); PEFT's ``svd_lowrank(q=r, niter=4)`` 9.0e-2 (150 ms) and ``niter=16``
2.7e-2 (517 ms). Oversampling pays before iterations do (Halko et al. §4.4, scikit-learn).
"""

from __future__ import annotations

import math
import sys
import time
import warnings
from typing import NamedTuple

import torch

from linalg_core import _validate
from linalg_core.lowrank.operators import Dense, as_operator, fro_norm_sq, reuse_buffers
from linalg_core.lowrank.orthonormalize import METHODS, orthonormalize
from linalg_core.random import normal

PRECISIONS = ("auto", "full", "bf16")
METHODS_RSVD = ("subspace", "rowspace", "krylov", "auto")

# Stream of the Gaussian test matrices of the low-rank algorithms (block i at offset i·n·k).
RSVD_STREAM = 6
AUTO_NITER = 4


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
    """

    seed: int | None = None  # read when an instance was built without one (``_make``, pytrees)

    def __new__(cls, U, S, Vh, seed: int | None = None):
        self = super().__new__(cls, U, S, Vh)
        if seed is not None:
            self.seed = seed
        return self

    def __repr__(self) -> str:
        return f"SVD(U={self.U!r}, S={self.S!r}, Vh={self.Vh!r}, seed={self.seed!r})"


def _gaussian(op, n, k, seed, block, backend):
    dev = getattr(op, "device", None) or torch.device("cpu")
    return normal((n, k), seed=seed, stream=RSVD_STREAM, offset=block * n * k, dtype=op.dtype, device=dev,
                  backend=backend)


def _final(normalizer: str) -> str:
    """The orthonormalisation of a returned basis: Householder for ``qr``, else CholeskyQR2."""
    return "qr" if normalizer == "qr" else "cholqr2"


def _right_basis(op, Y, normalizer, last=None):
    """Z = orth(Aᴴ·orth(Y)), the outer orthonormalisation by ``last`` (default ``normalizer``)."""
    return orthonormalize(op.rmatmul(orthonormalize(Y, normalizer)), last or normalizer)


def _power_step(op, Y, normalizer):
    """One subspace iteration Y ← A·orth(Aᴴ·orth(Y))."""
    return op.matmul(_right_basis(op, Y, normalizer))


def _iterate(op, k, niter, normalizer, seed, backend, last):
    """(Y, Z): Y = AΩ, then ``niter`` rounds of Z = orth(Aᴴorth(Y)), Y = AZ; the last Z
    orthonormalised by ``last`` (None when niter = 0)."""
    Y = op.matmul(_gaussian(op, op.shape[-1], k, seed, 0, backend))
    Z = None
    for i in range(niter):
        Z = _right_basis(op, Y, normalizer, last if i == niter - 1 else None)
        Y = op.matmul(Z)
    return Y, Z


def subspace_iteration(op, k: int, *, niter: int, normalizer: str = "cholqr", seed: int = 0, backend=None):
    """Orthonormal Q (*, m, k) with range(Q) ≈ the dominant k-dimensional range of A.

    Randomized subspace iteration (Halko et al. 2011, Algorithm 4.4) from a Gaussian Ω of
    seed ``seed``; ``normalizer`` re-conditions the block after every product (one CholeskyQR
    round or LU is enough between passes); the returned basis is orthonormalised by
    CholeskyQR2 (Householder QR when ``normalizer="qr"``).
    """
    return orthonormalize(_iterate(op, k, niter, normalizer, seed, backend, normalizer)[0], _final(normalizer))


def _project_out(Y, blocks):
    for P in blocks:
        Y = Y - P @ (P.mT.conj() @ Y)
    return Y


def _orthonormal_complement(Y, blocks, normalizer):
    """Orthonormal basis of Y's part orthogonal to the orthonormal ``blocks``: block
    Gram-Schmidt with re-orthogonalisation, normalising after each sweep ("twice is enough",
    Giraud et al. 2005), so that directions Y had only to rounding stay orthogonal too."""
    for _ in range(2 if blocks else 1):
        Y = orthonormalize(_project_out(Y, blocks), _final(normalizer))
    return Y


def krylov_basis(op, k: int, *, niter: int, normalizer: str = "cholqr", seed: int = 0, backend=None):
    """Orthonormal basis (*, m, (niter+1)·k) of the block Krylov space
    [AΩ, (AAᴴ)AΩ, …, (AAᴴ)^niter AΩ] (Musco and Musco 2015), each block orthonormalised
    against the previous ones (block Gram-Schmidt, twice)."""
    n = op.shape[-1]
    blocks = []
    Y = op.matmul(_gaussian(op, n, k, seed, 0, backend))
    for i in range(niter + 1):
        Q = _orthonormal_complement(Y, blocks, normalizer)
        blocks.append(Q)
        if i < niter:
            Y = op.matmul(op.rmatmul(Q))
    return torch.cat(blocks, dim=-1)


def svd_of_wide(B: torch.Tensor, rank: int | None = None) -> SVD:
    """SVD of a short, wide B (*, k, n), k ≤ n.

    float32 B: from the eigendecomposition of the k × k Gram matrix BBᴴ formed in float64, and
    Vh = (UΣ⁻¹)ᴴB as a float32 GEMM (error ~u₃₂·σ₁/σᵢ in row i, as for any backward-stable SVD).
    float64 rounding perturbs VhVhᴴ by ~u₆₄·σ₁²/(σᵢσⱼ), below float32's while σᵢ ≥ 10⁻⁴·σ₁, so
    this route is taken when the first ``rank`` (default k) singular values stay above that
    (later rows are only as accurate as their σᵢ allows, and 0 where σᵢ = 0). One small eigh
    replaces a QR of Bᴴ and an SVD: 2-3x faster at k = 48 (LAPACK's small factorisations cost
    0.1-0.2 ms each here).

    Otherwise through the QR of Bᴴ: B = Rᴴ Qᴴ, so only the k × k matrix Rᴴ goes to LAPACK's SVD
    (4× faster than gesdd on B for k = 256, n = 4096).
    """
    k, n = B.shape[-2:]
    if B.dtype == torch.float32 and k > 1:
        B64 = B.double()
        lam, U = torch.linalg.eigh(B64 @ B64.mT)
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
    U, S, Wh = torch.linalg.svd(R.mT.conj(), full_matrices=False)
    return SVD(U, S, Wh @ Q.mT.conj())


# svd_of_wide's Gram route is used while the singular values it returns stay above this
# fraction of σ₁ (float64 rounding then stays below float32's in Vh's orthogonality).
GRAM_RANGE = 1e-4


def flip_signs(svd: SVD, *, seed: int | None = None) -> SVD:
    """Deterministic signs: the entry of largest magnitude of each column of U is positive
    (scikit-learn's ``svd_flip``), Vh's rows flipped to match; makes results comparable across
    backends and runs. ``seed`` is recorded on the result (default: ``svd``'s)."""
    U, S, Vh = svd
    idx = U.abs().argmax(dim=-2, keepdim=True)
    sign = torch.sgn(torch.gather(U, -2, idx))
    sign = torch.where(sign == 0, torch.ones_like(sign), sign)
    return SVD(U * sign, S, Vh * sign.mT.conj(), seed=getattr(svd, "seed", None) if seed is None else seed)


def _resolve(rank, m, n, oversample, niter, normalizer, method, tol, precision):
    r_max = min(m, n)
    rank = _validate.integer(rank, "rank", low=1)
    if rank > r_max:
        raise ValueError(f"rank={rank} exceeds min(m, n)={r_max} for A of shape ({m}, {n})")
    if oversample is None or _is_auto(oversample):
        # k = 2r, and k = 3r while that stays ≤ 48 columns: at small k the GEMMs are bound by
        # reading A, so the extra columns are nearly free (4096², r = 16, β = 0.3: p = 16 gives
        # σ error 4.5e-3..7.6e-3 in 54 ms, p = 32 gives 6.4e-4..8.1e-4 in 64 ms).
        oversample = max(10, rank, min(2 * rank, 48 - rank))
    oversample = _validate.integer(oversample, "oversample", low=0)
    k = min(r_max, rank + oversample)
    if niter is None or _is_auto(niter):
        niter = AUTO_NITER
    niter = _validate.integer(niter, "niter", low=0)
    normalizer = "cholqr" if normalizer is None or _is_auto(normalizer) else _validate.choice(
        normalizer, "normalizer", METHODS)
    _validate.choice(precision, "precision", PRECISIONS)
    _validate.choice(method, "method", METHODS_RSVD)
    return rank, k, niter, normalizer


def _is_auto(value) -> bool:
    return isinstance(value, str) and value == "auto"


def _tol(tol) -> float | None:
    return None if tol is None else _validate.real(tol, "tol", low=0, high=1, low_open=True, high_open=True)


def _adaptive_qb(op, power, max_rank, block, tol, niter, normalizer, seed, backend):
    """Blocked QB with exact error tracking (Martinsson and Voronin 2016, Algorithm 2); the
    range-finding products go through ``power``, B = QᴴA through ``op``."""
    n = op.shape[-1]
    total = fro_norm_sq(op)
    Qs, Bs = [], []
    err2 = total.clone()
    i = 0
    while sum(q.shape[-1] for q in Qs) < max_rank:
        b = min(block, max_rank - sum(q.shape[-1] for q in Qs))
        # Power iterations on the deflated (I − QQᴴ)A: projecting each A-product off the basis
        # found so far is enough (for Y ⟂ Q, ((I − QQᴴ)A)ᴴY = AᴴY). Without it the iterates
        # converge back to the directions already captured.
        Y = _project_out(power.matmul(_gaussian(op, n, b, seed, i, backend)), Qs)
        for _ in range(niter):
            Y = _project_out(_power_step(power, Y, normalizer), Qs)
        Q = _orthonormal_complement(Y, Qs, normalizer)
        B = op.rmatmul(Q).mT.conj()  # QᴴA without forming Aᴴ
        Qs.append(Q)
        Bs.append(B)
        err2 = err2 - torch.linalg.vector_norm(B, dim=(-2, -1)) ** 2
        i += 1
        if bool((err2 <= (tol**2) * total).all()):
            break
    return torch.cat(Qs, dim=-1), torch.cat(Bs, dim=-2), total


def rsvd(
    A,
    rank: int,
    *,
    oversample="auto",
    niter="auto",
    normalizer="auto",
    method: str = "subspace",
    tol: float | None = None,
    seed=None,
    backend: str | None = None,
    range_finder=None,
    precision: str = "auto",
) -> SVD:
    """Randomized truncated SVD A ≈ U diag(S) Vh with exactly ``rank`` triplets (or, with
    ``tol``, the smallest rank ≤ ``rank`` meeting it).

    Args:
        A: (*, m, n) dense matrix or batch (torch / numpy / DLPack; float32/64, float16 and
            bfloat16 computed in float32 one block of rows at a time), a 2-D sparse matrix
            (scipy.sparse csr/csc/coo matrices and arrays, torch COO / CSR / CSC: only products
            with its stored entries, never a dense copy; the same seed gives the same factors as
            the dense matrix, to rounding), a ``scipy.sparse.linalg.LinearOperator`` (through
            ``matmat`` / ``rmatmat``), or a matrix-free operator with ``shape``, ``dtype``,
            ``matmul(X) = A @ X`` and ``rmatmul(Y) = Aᴴ @ Y``.
        rank: number of singular triplets (the maximum rank when ``tol`` is given).
        oversample: extra sketch columns p, k = rank + p (``"auto"``: max(10, r, min(2r, 48 − r)),
            i.e. k = 2r, or 3r for small ranks).
        niter: power (subspace) or Krylov iterations q (``"auto"``: 4).
        normalizer: between passes: ``"cholqr"`` (``"auto"``: one CholeskyQR round), ``"cholqr2"``,
            ``"qr"`` or ``"lu"``; the final basis always gets CholeskyQR2 (QR for ``"qr"``).
        method: ``"subspace"`` (Halko et al. 2011, Alg. 4.4), ``"rowspace"`` (the same ending on
            the row space, one pass fewer; see the module docstring; with niter = 0, ``tol`` or a
            ``range_finder`` it is ``"subspace"``), ``"auto"`` (``"rowspace"``
            where the products run in bfloat16 — the pass it saves is then the one full-precision
            pass —, else ``"subspace"``) or ``"krylov"`` (Musco and Musco
            2015).
        tol: relative Frobenius tolerance: blocked adaptive QB (Martinsson and Voronin 2016)
            stopping when ‖A − QB‖_F ≤ tol·‖A‖_F.
        seed: int, ``torch.Generator`` or None (fresh entropy); the int used is recorded as
            the result's ``seed``.
        backend: backend of the random test matrix (the products run on torch's BLAS).
        range_finder: replace the range-finder stage (default :func:`subspace_iteration`, or
            :func:`krylov_basis` for ``method="krylov"``): ``f(op, k, niter=, normalizer=,
            seed=, backend=) -> Q`` with Q (*, m, k') orthonormal.
        precision: ``"full"``: every product in A's compute precision. ``"bf16"``: the range
            finder's products (AΩ and the power / Krylov iterations) as bfloat16 GEMMs, B = QᴴA
            in full precision: an error of 2^-9 in the basis changes the captured energy only
            to second order (measured: same residual ratio to 1e-4, singular values to ~1e-5
            on flat spectra), at 2x the speed. ``"auto"``: bf16 for dense bfloat16 A, and for
            float32/16 A where bfloat16 GEMMs are fast (CUDA, CPUs with AMX or AVX512-BF16;
            float32 A then costs a bfloat16 copy), falling back to ``"full"`` when σ_k/σ_1 of
            the result is below 0.05 (a range bfloat16 cannot resolve; subspace iteration then
            continues from the bfloat16 basis with ⌈niter/2⌉ full-precision iterations).
            With ``method="rowspace"`` the factors come from the last bfloat16 product AZ
            itself: they carry A's bfloat16 rounding (singular values ~1e-4 relative on flat
            spectra), at one full-precision pass less.

    Returns:
        :class:`SVD` (U, S, Vh) in the caller's array type (numpy for numpy, scipy.sparse and
        scipy LinearOperator input); float32 for 16-bit inputs, float64 for float64. Signs are
        deterministic (:func:`flip_signs`). ``.seed`` is the int seed used:
        ``rsvd(A, rank, seed=svd.seed, ...)`` reproduces the factors bit for bit.

    Shape:
        A: (*, m, n);  U: (*, m, rank);  S: (*, rank);  Vh: (*, rank, n)

    Randomness:
        Ω is normal stream 6 of ``seed`` (block i of the adaptive QB at offset i·n·k): the same
        seed gives the same factors on every backend (to rounding) and run. A batch shares Ω,
        so a batched call equals the loop over its items.

    Raises:
        ValueError: rank < 1 or > min(m, n), NaN/Inf or empty A, tol outside (0, 1).
        TypeError: integer or other non-float A; rank / oversample / niter not integers (NumPy
            integers and 0-d integer tensors are), tol not a real number, a non-string method.

    Tuning: raise ``oversample`` first (cheapest accuracy), then ``niter``; for flat spectra
    ``method="krylov"`` gets more from each product.

    Example:
        >>> import torch, linalg_core as lc
        >>> A = torch.randn(500, 300, dtype=torch.float64)
        >>> U, S, Vh = lc.rsvd(A, 10, seed=0)
        >>> U.shape, S.shape, Vh.shape
        (torch.Size([500, 10]), torch.Size([10]), torch.Size([10, 300]))
    """
    _validate.not_differentiable(A, "A", "rsvd")
    op, boundary, _ = as_operator(A, products_only=True)
    out = _rsvd(op, rank, oversample=oversample, niter=niter, normalizer=normalizer, method=method, tol=tol, seed=seed,
                backend=backend, range_finder=range_finder, precision=precision)
    return SVD(*boundary.out(tuple(out)), seed=out.seed)


def _rsvd(op, rank, *, oversample="auto", niter="auto", normalizer="auto", method="subspace", tol=None, seed=None,
          backend=None, range_finder=None, precision="auto") -> SVD:
    """:func:`rsvd` of an operator already validated (torch tensors in and out)."""
    m, n = op.shape[-2:]
    rank, k, niter, normalizer = _resolve(rank, m, n, oversample, niter, normalizer, method, tol, precision)
    tol = _tol(tol)
    seed = _validate.seed(seed)
    mixed = precision == "bf16" or (precision == "auto" and _bf16_pays(op, k, niter))
    if mixed and not isinstance(op, Dense):
        raise ValueError(f"precision={precision!r} needs a dense A (an operator supplies its own products)")
    requested, method = method, ("rowspace" if mixed else "subspace") if method == "auto" else method
    svd, Q, rank = _factor(op, op.bf16() if mixed else op, rank, k, niter, normalizer, method, tol, seed, backend,
                           range_finder)
    if mixed and precision == "auto" and bool((svd.S[..., -1] < BF16_RANGE * svd.S[..., 0]).any()):
        # The top k singular values span more than bfloat16 products resolve: directions below
        # ~2^-8·σ₁ may be lost in rounding. Subspace iteration restarts from the bfloat16 basis
        # with half the iterations in full precision; the other methods start over.
        if tol is None and method == "subspace" and range_finder is None:
            Y = Q
            for _ in range(max(1, niter // 2)):
                Y = _power_step(op, Y, normalizer)
            Q = orthonormalize(Y, _final(normalizer))
            svd = svd_of_wide(op.rmatmul(Q).mT.conj(), rank)
        else:
            method = "subspace" if requested == "auto" else method
            svd, Q, rank = _factor(op, op, rank, k, niter, normalizer, method, tol, seed, backend, range_finder)
    U = svd.U[..., :rank] if Q is None else Q @ svd.U[..., :rank]
    return flip_signs(SVD(U, svd.S[..., :rank], svd.Vh[..., :rank, :]), seed=seed)


# Mixed precision is used only when the computed σ_k / σ_1 stays above this (≈ 13 bfloat16 ulps).
BF16_RANGE = 0.05


# bfloat16 products are used from this many multiply-adds per product (m·n·k). They pay from
# ~2^24 (rsvd, r = 16, niter = 2, 2 threads, AMX: 256² and 384² equal or slower; 384 × 1536
# (batch of 6) 12.0 vs 15.1 ms, 512 × 1376 4.0 vs 5.0 ms, 2048² 11.0 vs 15.3 ms), but below 2^28
# a model's small layers keep float32 products: their batched and looped results then agree to
# float32 rounding rather than bfloat16's, for ~10% of MiniLM-L6's PiSSA time.
BF16_MIN_WORK = 1 << 28


def _bf16_pays(op, k: int, niter: int) -> bool:
    """bfloat16 power iterations pay when there are iterations, A is dense and large, and the
    device has fast bfloat16 GEMMs (a CUDA GPU, or a CPU with AMX / AVX512-BF16); always for a
    bfloat16 A (no conversion then)."""
    if niter < 1 or not isinstance(op, Dense):
        return False
    if op.A.dtype == torch.bfloat16:
        return True
    if math.prod(op.shape[-2:]) * k < BF16_MIN_WORK:  # per matrix: a batch must equal the loop over it
        return False
    if op.A.dtype == torch.float64:
        return False
    if op.device.type == "cuda":
        return True
    from linalg_core._ext import _C

    features = _C.cpu_features() if _C is not None else ""
    return op.device.type == "cpu" and ("amx" in features or "avx512bf16" in features)


def _factor(op, power, rank, k, niter, normalizer, method, tol, seed, backend, range_finder):
    """(SVD of B, Q, rank) with A ≈ Q B; range finding through ``power``, B = QᴴA through ``op``.
    ``method="rowspace"`` (niter ≥ 1): the SVD of A ≈ (AZ)Zᴴ itself, and Q None."""
    if tol is not None:
        block = max(8, min(64, rank // 4))
        Q, B, total = _adaptive_qb(op, power, rank, block, tol, niter, normalizer, seed, backend)
        svd = svd_of_wide(B)
        # Smallest r with (‖A‖² − ‖B‖²) + Σ_{i>r} σ_i² ≤ tol²‖A‖² (the worst item of a batch).
        resid = torch.clamp(total - torch.linalg.vector_norm(B, dim=(-2, -1)) ** 2, min=0)
        tail = torch.flip(torch.cumsum(torch.flip(svd.S**2, [-1]), -1), [-1])  # Σ_{i≥j} σ_i²
        after = torch.cat([tail[..., 1:], torch.zeros_like(tail[..., :1])], -1)
        ok = (resid[..., None] + after) <= tol**2 * total[..., None]
        reach = ok.flatten(0, -2).all(0) if ok.dim() > 1 else ok
        if bool(reach.any()):
            rank = min(rank, int(reach.nonzero()[0]) + 1)
        else:
            achieved = float(torch.sqrt(resid / total).max())
            warnings.warn(f"rsvd: tol={tol} not reached at the maximum rank={rank}; the relative error there "
                          f"is {achieved:.3g}. Raise rank to reach tol.", stacklevel=3)
        return svd, Q, rank
    if method == "rowspace" and niter >= 1 and range_finder is None:
        Y, Z = _iterate(power, k, niter, normalizer, seed, backend, _final(normalizer))
        # Yᴴ = U' Σ V'ᴴ (svd_of_wide of the wide Yᴴ), so A ≈ YZᴴ = V' Σ (ZU')ᴴ.
        Ut, S, Vt = svd_of_wide(Y.mT.conj(), rank)
        return SVD(Vt.mT.conj(), S, (Z @ Ut).mT.conj()), None, rank
    finder = range_finder or (krylov_basis if method == "krylov" else subspace_iteration)
    Q = finder(power, k, niter=niter, normalizer=normalizer, seed=seed, backend=backend)
    return svd_of_wide(op.rmatmul(Q).mT.conj(), rank), Q, rank  # B = QᴴA


def rsvd_many(matrices, rank: int, *, progress: bool | None = None, **options) -> list[SVD]:
    """:func:`rsvd` of every matrix of a list (a whole model's weights), equal shapes and
    dtypes grouped into one batched call each.

    Args:
        matrices: sequence of (m_i, n_i) arrays.
        rank: as in :func:`rsvd` (clipped to min(m_i, n_i) per matrix).
        progress: print a progress line per group to stderr (default: when there are more than
            8 groups and stderr is a terminal).
        options: passed to :func:`rsvd` (``seed`` included: every matrix uses the same seed, so
            the result equals ``[rsvd(W, rank, **options) for W in matrices]``).

    Returns:
        list of :class:`SVD`, in the order of ``matrices``.

    Example:
        >>> import torch, linalg_core as lc
        >>> Ws = [torch.randn(64, 32), torch.randn(64, 32), torch.randn(16, 48)]
        >>> [s.S.shape[0] for s in lc.rsvd_many(Ws, 8, seed=0)]
        [8, 8, 8]
    """
    from linalg_core._arrays import as_tensor

    tensors = []
    for i, W in enumerate(matrices):
        t, boundary = as_tensor(W, f"matrices[{i}]")
        if t.dim() != 2:
            raise ValueError(f"matrices[{i}] must be 2-D, got shape {tuple(t.shape)}")
        tensors.append((t, boundary))
    groups: dict[tuple, list[int]] = {}
    for i, (t, _) in enumerate(tensors):
        groups.setdefault((tuple(t.shape), t.dtype, t.device), []).append(i)
    if options.get("seed") is None or isinstance(options.get("seed"), torch.Generator):
        options["seed"] = _validate.seed(options.get("seed"))
    show = progress if progress is not None else (len(groups) > 8 and sys.stderr.isatty())
    results: list[SVD | None] = [None] * len(tensors)
    start = time.perf_counter()
    with reuse_buffers():
        for g, ((shape, _, _), idx) in enumerate(groups.items()):
            stack = torch.stack([tensors[i][0] for i in idx])
            out = rsvd(stack, min(rank, *shape), **options)
            for j, i in enumerate(idx):
                results[i] = SVD(*tensors[i][1].out((out.U[j], out.S[j], out.Vh[j])), seed=out.seed)
            if show:
                done = g + 1
                print(f"\rrsvd_many: {done}/{len(groups)} shape groups, {sum(len(v) for v in list(groups.values())[:done])}"
                      f"/{len(tensors)} matrices, {time.perf_counter() - start:.1f} s", end="", file=sys.stderr)
    if show:
        print(file=sys.stderr)
    return results


__all__ = ["SVD", "rsvd", "rsvd_many", "subspace_iteration", "krylov_basis", "svd_of_wide", "flip_signs"]
