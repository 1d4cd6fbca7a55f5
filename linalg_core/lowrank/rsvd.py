"""The randomized SVD driver: rsvd(A, rank, finder=..., small_svd=...) = RandLAPACK's
RSVD(QB(RF(RS, Orth))) with swappable stages, and the bfloat16 policy of its products.

The stages: a range finder (:mod:`.finders`: :class:`SubspaceIteration` by default,
:class:`RowSpace`, :class:`BlockKrylov`, :class:`AdaptiveQB`), which holds its orthonormalizer
(:mod:`.orthonormalize`), and a small-SVD solver (:class:`SmallSVD`). ``oversample``, ``niter``
and ``tol`` are shortcuts: the sketch size k = rank + oversample, the finder's iterations, and
``AdaptiveQB(tol)``. The default sketch size (``oversample="auto"``) comes from
``linalg_core/bench/lowrank.py`` (the "defaults grid" rows of ``benchmarks/RESULTS.md``):
oversampling pays before iterations do (Halko et al. §4.4, scikit-learn). The default number of
iterations (``niter="auto"``) is adaptive: subspace iteration stops once the change of its
Rayleigh–Ritz values says the PEFT-grade target (:data:`~.error.PEFT_GRADE`: rank-r residual
within 0.2 % of the optimal one, top-r singular values within 1 %) is met, at most
``ADAPTIVE_MAX_NITER`` iterations (the "adaptive" rows of ``benchmarks/RESULTS.md``); an
explicit ``niter`` is the fixed iteration count, as before. With every stage at its default, a
CPU matrix whose short side is at most max(128, 4k) gets LAPACK's exact SVD instead, which costs
less there than the adaptive iterations (:data:`EXACT_MAX_DIM`).
"""

from __future__ import annotations

import dataclasses
import math
import warnings

import torch

from linalg_core import _validate
from linalg_core.lowrank.finders import (  # BF16_RANGE: mixed precision only while σ_k/σ_1 stays above it
    BF16_RANGE,
    DEFAULT_NITER,
    AdaptiveQB,
    BlockKrylov,
    Factored,
    RowSpace,
    SubspaceIteration,
    _CallableFinder,
    _batch_items,
    krylov_basis,
    start_width,
    subspace_iteration,
)
from linalg_core.lowrank.operators import Dense, _device, as_operator
from linalg_core.lowrank.orthonormalize import METHODS, ORTHONORMALIZERS
from linalg_core.lowrank.small_svd import SmallSVD, svd_of_wide
from linalg_core.lowrank.svd import SVD, flip_signs

PRECISIONS = ("auto", "full", "bf16")
METHODS_RSVD = ("subspace", "rowspace", "krylov", "auto")

_UNSET = object()  # default of the deprecated keywords (None is a value a caller may pass)
_DEFAULT_SMALL_SVD = SmallSVD()


# bfloat16 products are used from this many multiply-adds per product (m·n·k). Smaller products
# gain little from bfloat16 GEMMs, and a model's small layers then keep float32 products, so
# their batched and looped results agree to float32 rounding rather than bfloat16's
# (benchmarks/RESULTS.md has the crossover measurements).
BF16_MIN_WORK = 1 << 28
# The same threshold for :class:`RowSpace`, whose passes are all bfloat16 once they are (it ends on
# the row space: no full-precision B pass): the copy of A is then one pass against 2·niter + 1
# bfloat16 ones. RowSpace with PiSSA's 3 iterations at rsvd's auto sketch size, bfloat16 against
# float32 products, AMX Xeon, 2 threads: 1536 × 384, r = 8 3.7 vs 4.0 ms, 1024², r = 8 4.2 vs
# 5.7 ms, 2048², r = 16 10.6 vs 19.6 ms; a 384², r = 16 (7·10⁶) 3.16 vs 3.11 ms alone, but four
# of them in a batch 5.9 vs 6.7 ms, and PiSSA's default on MiniLM-L6's 36 weights (three
# batches, k = 2r) 32 vs 49 ms;
# 384², r = 8 (3.5·10⁶: 2.46 vs 2.22 ms) and smaller stay float32 (benchmarks/RESULTS.md,
# "Measurements behind design choices").
ROWSPACE_BF16_MIN_WORK = 1 << 22


# The adaptive default (every default stage) on a dense CPU matrix with min(m, n) up to this, or up
# to four times the sketch size, returns LAPACK's exact SVD instead: there gesdd costs less than
# the adaptive iterations' fixed ~1.5-3 ms of small-matrix work (AMX Xeon, 2 threads, float32,
# flat and spiked spectra: 64² r = 4 0.35 vs 1.5-2.6 ms, 128² r = 16 1.2 vs 3.9-4.5 ms, 192²
# r = 16 2.9 vs 4.4-4.7 ms, 256² r = 32 6.5 vs 7.5-8.0 ms; 256² r = 16 6.5 vs 5.5-6.0 ms and
# 384² r = 16 15 vs 5.4-6.2 ms stay randomized; benchmarks/RESULTS.md, "Measurements behind
# design choices").
EXACT_MAX_DIM = 128


def _adaptive_default(finder, oversample) -> bool:
    """Whether the finder is the adaptive subspace iteration with the auto sketch size."""
    return (oversample is None or _is_auto(oversample)) and type(finder) is SubspaceIteration and finder.niter is None


def _exact_pays(op, finder, small_svd, oversample, k, precision) -> bool:
    """Whether rsvd returns LAPACK's SVD (:func:`_exact_svd`): the adaptive default with its
    default stages, on a CPU matrix (dense, sparse or an operator; not one that makes Ω where its
    data lives) no larger than :data:`EXACT_MAX_DIM` or 4k on its short side (it meets any
    accuracy target the adaptive default has; an operator pays the short side's width in
    columns of products, no more than the adaptive iterations' 2 + 2·max_niter sketches)."""
    m, n = op.shape[-2:]
    device = _device(op)
    return (device.type == "cpu" and precision != "bf16" and not hasattr(op, "matmul_normal")
            and _adaptive_default(finder, oversample) and small_svd == _DEFAULT_SMALL_SVD
            and min(m, n) <= max(EXACT_MAX_DIM, 4 * k))


def _exact_svd(op, rank: int) -> SVD:
    """The top ``rank`` triplets of LAPACK's SVD (gesdd) of A, factored on its tall side (a wide
    float32 128 × 512 took 5.6 ms as it is, 2.3 ms transposed); A is the dense tensor, or, for an
    operator, its products with the identity on the short side (exact: one nonzero term each,
    so a sparse matrix gives the dense matrix's factors bit for bit)."""
    m, n = op.shape[-2:]
    if isinstance(op, Dense):
        name = op.unchecked or "A"
        op.ensure_finite()
        T = op.dense()
        T = T.mT.conj() if m < n else T
    else:
        name = "A"
        eye = torch.eye(min(m, n), dtype=op.dtype, device=_device(op))
        T = op.rmatmul(eye) if m < n else op.matmul(eye)  # Aᴴ on the wide side: (*, n, m)
        _validate.check_finite(T, name)
    U, S, Vh = torch.linalg.svd(T, full_matrices=False)
    if not _validate.all_finite(S):
        raise ValueError(f"{name} is finite but its SVD overflows {S.dtype}: scale it down")
    if m < n:
        U, Vh = Vh.mT.conj(), U.mT.conj()
    return SVD(U[..., :rank], S[..., :rank], Vh[..., :rank, :])


def _bf16_fast(device: torch.device) -> bool:
    """Whether the device has fast bfloat16 GEMMs: a CUDA GPU, or a CPU with AMX / AVX512-BF16.
    Elsewhere (an AVX2 CPU) torch's bfloat16 GEMM is ~35x slower than converting to float32
    (1024² · 128 on a 2-core AVX2 EPYC: 110 ms, rsvd of a bfloat16 1024², r = 64: 2.3 s vs 66 ms)."""
    if device.type == "cuda":
        return True
    from linalg_core._ext import _C

    features = _C.cpu_features() if _C is not None else ""
    return device.type == "cpu" and ("amx" in features or "avx512bf16" in features)


def _bf16_pays(op, k: int, finder) -> bool:
    """bfloat16 power iterations pay when ``finder`` iterates, A is dense, and the device has
    fast bfloat16 GEMMs (:func:`_bf16_fast`): always then for a bfloat16 A (no conversion), for
    a float32/16 A when it is large (:data:`BF16_MIN_WORK`, :data:`ROWSPACE_BF16_MIN_WORK`)."""
    niter = getattr(finder, "niter", 0)
    if (niter is not None and niter < 1) or not isinstance(op, Dense) or not _bf16_fast(op.device):
        return False  # (niter None: adaptive, >= 1 iteration)
    if op.A.dtype == torch.bfloat16:
        return True
    least = ROWSPACE_BF16_MIN_WORK if isinstance(finder, RowSpace) else BF16_MIN_WORK
    if math.prod(op.shape[-2:]) * k < least:  # per matrix: a batch must equal the loop over it
        return False
    return op.A.dtype != torch.float64


def _is_auto(value) -> bool:
    return isinstance(value, str) and value == "auto"


def sketch_size(rank: int, m: int, n: int, oversample="auto") -> tuple[int, int]:
    """(rank, k): the validated rank and the sketch size k = min(m, n, rank + oversample) of
    :func:`rsvd` for an (m, n) A.

    ``oversample="auto"``: max(10, r, min(2r, 48 − r)), i.e. k = 2r, and k = 3r while that stays
    ≤ 48 columns: at small k the GEMMs are bound by reading A, so the extra columns are nearly
    free (the "defaults grid" of benchmarks/RESULTS.md). Oversampling before iterating follows
    Halko, Martinsson and Tropp (2011), §4.2.

    Args:
        rank: r, the target rank.
        m, n: A's shape.
        oversample: p, extra columns of the sketch, or ``"auto"``.

    Returns:
        ``(rank, k)`` as Python ints.

    Raises:
        ValueError: rank < 1 or > min(m, n), oversample < 0.  TypeError: non-integers.

    Example:
        >>> from linalg_core.lowrank import sketch_size
        >>> sketch_size(8, 1000, 500), sketch_size(8, 1000, 500, oversample=4), sketch_size(30, 1000, 500)
        ((8, 24), (8, 12), (30, 60))
    """
    r_max = min(m, n)
    rank = _validate.integer(rank, "rank", low=1)
    if rank > r_max:
        raise ValueError(f"rank={rank} exceeds min(m, n)={r_max} for A of shape ({m}, {n})")
    if oversample is None or _is_auto(oversample):
        oversample = max(10, rank, min(2 * rank, 48 - rank))
    oversample = _validate.integer(oversample, "oversample", low=0)
    return rank, min(r_max, rank + oversample)


def _legacy_finder(method, normalizer, range_finder, niter, tol):
    """The finder of rsvd's deprecated keywords (``method=``, ``normalizer=``, ``range_finder=``),
    with ``niter`` and ``tol`` as they were given: the same computation as before the stages."""
    auto = niter is None or _is_auto(niter)
    niter = DEFAULT_NITER if auto else _validate.integer(niter, "niter", low=0)
    normalizer = "cholqr" if normalizer in (None, _UNSET) or _is_auto(normalizer) else _validate.choice(
        normalizer, "normalizer", METHODS)
    method = "subspace" if method is _UNSET else _validate.choice(method, "method", METHODS_RSVD)
    orth = ORTHONORMALIZERS[normalizer]
    if tol is not None:
        return AdaptiveQB(tol, niter=niter, orth=orth)
    if range_finder is not None:
        if not callable(range_finder):
            raise TypeError(f"range_finder must be callable, got {type(range_finder).__name__}")
        return _CallableFinder(range_finder, niter, normalizer)
    if method == "krylov":
        return BlockKrylov(niter, orth)
    if method in ("rowspace", "auto"):
        return RowSpace(niter, orth, bf16_only=method == "auto")
    return SubspaceIteration(None if auto else niter, orth)


def _finder(finder, niter, tol, method, normalizer, range_finder):
    legacy = [name for name, value in (("method", method), ("normalizer", normalizer)) if value is not _UNSET]
    legacy += ["range_finder"] if range_finder is not None else []
    if finder is not None:
        if legacy:
            raise ValueError(f"finder= and the older {', '.join(n + '=' for n in legacy)} describe the same stage: "
                             "give the finder only (its orth= holds the orthonormalizer)")
        if tol is not None:
            raise ValueError(f"tol={tol!r} selects AdaptiveQB(tol): give finder=AdaptiveQB(tol={tol!r}, ...) instead "
                             f"of finder={finder!r}")
        if not hasattr(finder, "factor"):
            raise TypeError(f"finder must be a range-finder stage (SubspaceIteration(), RowSpace(), BlockKrylov(), "
                            f"AdaptiveQB(tol), or a RangeFinder subclass), got {type(finder).__name__}")
        if niter is None or _is_auto(niter):
            return finder
        fields = {f.name for f in dataclasses.fields(finder)} if dataclasses.is_dataclass(finder) else set()
        if "niter" not in fields:
            raise ValueError(f"niter={niter!r} is given but finder={finder!r} has no niter to set")
        return dataclasses.replace(finder, niter=niter)
    if legacy:
        warnings.warn(f"rsvd({', '.join(n + '=' for n in legacy)}...) is deprecated: pass a stage object, e.g. "
                      "finder=SubspaceIteration(orth=Householder()), RowSpace(), BlockKrylov() or a RangeFinder "
                      "subclass (linalg_core.lowrank); the results are the same", DeprecationWarning, stacklevel=3)
    return _legacy_finder(method, normalizer, range_finder, niter, tol)


def rsvd(
    A,
    rank: int,
    *,
    finder=None,
    small_svd=None,
    oversample="auto",
    niter="auto",
    tol: float | None = None,
    seed=None,
    backend: str | None = None,
    precision: str = "auto",
    method=_UNSET,
    normalizer=_UNSET,
    range_finder=None,
) -> SVD:
    """Randomized truncated SVD A ≈ U diag(S) Vh with exactly ``rank`` triplets (or, with an
    :class:`AdaptiveQB` finder / ``tol``, the smallest rank ≤ ``rank`` meeting its tolerance).

    RandLAPACK's RSVD(QB(RF(RS, Orth))): the range finder ``finder`` (with its orthonormalizer)
    gives A ≈ QB, ``small_svd`` the SVD of the small B, and U = Q·U_B with deterministic signs.

    Args:
        A: (*, m, n) dense matrix or batch (torch / numpy / DLPack; float32/64, float16 and
            bfloat16 computed in float32 one block of rows at a time), a 2-D sparse matrix
            (scipy.sparse csr/csc/coo matrices and arrays, torch COO / CSR / CSC: only products
            with its stored entries, never a dense copy but for the exact path's A·I where the short
            side is ≤ max(128, 4k); the same seed gives the same factors as
            the dense matrix, to rounding), a ``scipy.sparse.linalg.LinearOperator`` (through
            ``matmat`` / ``rmatmat``), or a linear operator (:class:`LinearOperator`: ``shape``,
            ``dtype``, ``matmul(X) = A @ X``, ``rmatmul(Y) = Aᴴ @ Y``; the library's own, e.g.
            :func:`as_linear_operator`, are used as they are).
        rank: number of singular triplets (the maximum rank for :class:`AdaptiveQB`).
        finder: the range-finder stage (default ``SubspaceIteration()``, Halko et al. 2011,
            Alg. 4.4; :class:`RowSpace`, :class:`BlockKrylov`, :class:`AdaptiveQB`, or a
            :class:`RangeFinder` subclass).
        small_svd: the SVD of B = QᴴA (default :class:`SmallSVD`); any ``f(B, rank) -> SVD``.
        oversample: extra sketch columns p, k = rank + p (``"auto"``: max(10, r, min(2r, 48 − r)),
            i.e. k = 2r, or 3r for small ranks; with the adaptive default finder the sketch
            starts with r + max(10, r/4) columns and widens to that unless its Ritz values show
            a clear gap after σ_r, or, on a steeply decaying spectrum, only as far as their decay
            needs: :func:`~linalg_core.lowrank.finders.choose_width`).
        niter: shortcut for the finder's power (subspace) or Krylov iterations q (``"auto"``: the
            finder's own: adaptive for :class:`SubspaceIteration`, i.e. 1 to 6 iterations,
            stopping when the change of the Ritz values says its ``accuracy``, PEFT-grade by
            default, is met; 4 for the other finders; with every stage at its default, a CPU
            matrix whose short side is at most max(128, 4k) gets LAPACK's exact SVD, cheaper
            there than the iterations: :data:`EXACT_MAX_DIM`). An integer fixes the count. Float32
            arithmetic resolves a residual down to ~10⁻⁶·‖A‖_F: where the optimal rank-r
            residual is that small (σ_i = 0.9^i at r = 128 on 2048²), no float32 method meets the
            0.2 % residual target (there rsvd, torch.svd_lowrank and even LAPACK's exact SVD of
            the float32 A leave 1.5× the optimum); pass float64 A for such a target.
        tol: shortcut for ``finder=AdaptiveQB(tol)``: blocked adaptive QB (Martinsson and
            Voronin 2016) stopping when ‖A − QB‖_F ≤ tol·‖A‖_F.
        seed: int, ``torch.Generator`` or None (fresh entropy); the int used is recorded as
            the result's ``seed``.
        backend: backend of the random test matrix (the products run on torch's BLAS).
        precision: ``"full"``: every product in A's compute precision. ``"bf16"``: the range
            finder's products (AΩ and the power / Krylov iterations) as bfloat16 GEMMs, B = QᴴA
            in full precision: an error of 2^-9 in the basis changes the captured energy only
            to second order, at up to twice the speed. ``"auto"``: bf16 where bfloat16 GEMMs
            are fast (CUDA, CPUs with AMX or AVX512-BF16): for dense bfloat16 A, and for large
            float32/16 A (which then costs a bfloat16 copy); elsewhere full precision (a
            bfloat16 A computed in float32), falling back to ``"full"`` when
            σ_k/σ_1 of the result is below 0.05 (a range bfloat16 cannot resolve; subspace
            iteration then continues from the bfloat16 basis with ⌈niter/2⌉ full-precision
            iterations, or, adaptive, iterates on bfloat16 products while they converge and
            continues from the full-precision AᴴQ formed for B, or, where the sketch already
            shows that range and predicts convergence within two iterations, iterates in full
            precision from the sketch on; the other finders start over),
            per batch item (the others keep their bfloat16-product result, as alone). With
            :class:`RowSpace` the factors come from the last bfloat16 product AZ itself: they
            carry A's bfloat16 rounding, at one full-precision pass less.
        method, normalizer, range_finder: deprecated (DeprecationWarning; same results):
            ``method="subspace" | "rowspace" | "krylov" | "auto"`` is ``finder=SubspaceIteration()
            | RowSpace() | BlockKrylov() | RowSpace(bf16_only=True)``; ``normalizer="cholqr" |
            "cholqr2" | "qr" | "lu"`` is the finder's ``orth=CholQR() | CholQR2() | Householder()
            | LU()``; ``range_finder=f`` (``f(op, k, niter=, normalizer=, seed=, backend=) -> Q``)
            is a :class:`RangeFinder` subclass.

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
        so a batched call equals the loop over its items. The small-matrix exact path uses no
        Ω (the factors do not depend on ``seed``, which is still recorded).

    Raises:
        ValueError: rank < 1 or > min(m, n), NaN/Inf or empty A, tol outside (0, 1), ``finder``
            given together with ``tol`` or a deprecated keyword.
        TypeError: integer or other non-float A; rank / oversample / niter not integers (NumPy
            integers and 0-d integer tensors are), tol not a real number, a finder that is no
            range-finder stage, a non-string method.

    Tuning: raise ``oversample`` first (cheapest accuracy), then ``niter``; for flat spectra
    :class:`BlockKrylov` gets more from each product.

    Example:
        >>> import torch, linalg_core as lc
        >>> from linalg_core.lowrank import BlockKrylov
        >>> A = torch.randn(500, 300, dtype=torch.float64)
        >>> U, S, Vh = lc.rsvd(A, 10, seed=0)
        >>> U.shape, S.shape, Vh.shape
        (torch.Size([500, 10]), torch.Size([10]), torch.Size([10, 300]))
        >>> lc.rsvd(A, 10, finder=BlockKrylov(niter=2), seed=0).S.shape
        torch.Size([10])
    """
    _validate.not_differentiable(A, "A", "rsvd")
    op, boundary, _ = as_operator(A, products_only=True)
    out = _rsvd(op, rank, finder=_finder(finder, niter, tol, method, normalizer, range_finder),
                small_svd=_DEFAULT_SMALL_SVD if small_svd is None else small_svd, oversample=oversample, seed=seed,
                backend=backend, precision=precision)
    return SVD(*boundary.out(tuple(out)), seed=out.seed)


def _rsvd(op, rank, *, finder, small_svd, oversample, seed, backend, precision) -> SVD:
    """The driver on a validated operator: QB through ``finder``, the small SVD, U = Q·U_B."""
    m, n = op.shape[-2:]
    rank, k = sketch_size(rank, m, n, oversample)
    _validate.choice(precision, "precision", PRECISIONS)
    if not callable(small_svd):
        raise TypeError(f"small_svd must be callable as small_svd(B, rank), got {type(small_svd).__name__}")
    seed = _validate.seed(seed)
    if _exact_pays(op, finder, small_svd, oversample, k, precision):
        return flip_signs(_exact_svd(op, rank), seed=seed)
    mixed = precision == "bf16" or (precision == "auto" and _bf16_pays(op, k, finder))
    if mixed and not isinstance(op, Dense):
        raise ValueError(f"precision={precision!r} needs a dense A (an operator supplies its own products)")
    widen = {}
    if _adaptive_default(finder, oversample) and not hasattr(op, "matmul_normal"):
        # the adaptive default: its width too (not on an operator that makes Ω where its data lives, a
        # cluster's row blocks: widening needs column operations on the tall basis they do not offer)
        widen = {"k1": start_width(rank, k), "auto_precision": precision == "auto"}
    f = finder.factor(op, op.bf16() if mixed else op, rank, k, seed=seed, backend=backend, small_svd=small_svd,
                      **widen)
    fixed = None
    if mixed and precision == "auto":
        # Items whose top k singular values span more than bfloat16 products resolve (directions
        # below ~2^-8·σ₁ may be lost in rounding) are done again in full precision, each as it
        # would be alone: the others keep their bfloat16-product result (a batch equals the loop).
        wide = (f.svd.S[..., -1] < BF16_RANGE * f.svd.S[..., 0]) & ~torch.as_tensor(f.full, device=f.svd.S.device)
        if bool(wide.all()):
            f = finder.full_precision(op, f, rank, k, seed=seed, backend=backend, small_svd=small_svd)
        elif bool(wide.any()):
            part = Factored(None if f.Q is None else f.Q[wide], SVD(f.svd.U[wide], f.svd.S[wide], f.svd.Vh[wide]),
                            f.rank, None if f.W is None else f.W[wide])
            fixed = finder.full_precision(_batch_items(op, wide), part, rank, k, seed=seed, backend=backend,
                                          small_svd=small_svd).triplets()
    U, S, Vh = f.triplets()
    if fixed is not None:
        U, S, Vh = (x.clone() for x in (U, S, Vh))
        for x, y in zip((U, S, Vh), fixed):
            x[wide] = y
    return flip_signs(SVD(U, S, Vh), seed=seed)


__all__ = ["SVD", "rsvd", "sketch_size", "subspace_iteration", "krylov_basis", "svd_of_wide", "flip_signs"]
