"""Range finders: the stage of a randomized SVD that finds an (approximate) basis Q of A's
dominant range, so that A ≈ Q B with B = QᴴA (RandLAPACK's RF and QB stages).

Every finder is a frozen stage object. Called as ``finder(op, k, seed=...)`` it returns an
orthonormal Q (*, m, k'); :func:`~linalg_core.lowrank.rsvd` calls its ``factor`` method, which
also produces the small SVD (a finder that ends on the row space or picks its own rank does
more than B = QᴴA). The orthonormalisation between passes is a stage of its own (``orth=``,
:mod:`.orthonormalize`); a returned basis gets ``orth.final``.

* :class:`SubspaceIteration`: Algorithm 4.4 of Halko, Martinsson and Tropp (2011) (randomized
  subspace iteration): Y = AΩ with k Gaussian columns, ``niter`` rounds of Y ← A(AᴴQ) with the
  basis re-orthonormalised after every product. Its default (``niter=None``) is adaptive: every
  Aᴴ-product W = AᴴQ is B = QᴴA of the current basis, so the Rayleigh–Ritz values σ(B) come
  with each iteration at the cost of a k × k eigensolve (the Gram matrix WᴴW is the one the
  CholeskyQR of W computes anyway), and the iteration stops once their
  change, extrapolated geometrically, says the :class:`~.error.Accuracy` target is met; the last
  W is then the B of the result (no extra pass).
* :class:`RowSpace`: the same iterations ending on the row space: after the last Z = orth(AᴴQ),
  Y = AZ and A ≈ YZᴴ, whose SVD comes from Y alone, without the B = QᴴA pass. AZZᴴ is the best
  approximation with rows in range(Z), which holds the rows of the previous iterate's QQᴴA, and
  subspace iteration's final QQᴴA is the best with columns in range(AZ): the error lies between
  subspace iteration's with niter − 1 and with niter iterations, for one pass fewer than the
  latter (benchmarks/RESULTS.md compares them).
* :class:`BlockKrylov`: randomized block Krylov iteration (Musco and Musco 2015, Algorithm 2):
  the basis of [AΩ, (AAᴴ)AΩ, …, (AAᴴ)^q AΩ] with block size k; better singular values than
  subspace iteration for the same number of products when the spectrum is flat.
* :class:`AdaptiveQB`: the blocked, rank-adaptive QB of Martinsson and Voronin (2016)
  (``randQB_EI``, as in RandLAPACK): blocks of Q and B are added until the error ‖A − QB‖_F,
  known exactly as √(‖A‖²_F − ‖B‖²_F), drops below tol·‖A‖_F; the rank returned is the smallest
  whose error meets the tolerance.

A finder of one's own subclasses :class:`RangeFinder` and defines ``__call__(op, k, *, seed,
backend) -> Q``.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Callable, NamedTuple

import torch

from linalg_core import _threads, _validate
from linalg_core.lowrank.error import PEFT_GRADE, Accuracy
from linalg_core.lowrank.operators import Dense, LowPrecision, _device, fro_norm_sq, known_fro_norm_sq
from linalg_core.lowrank.orthonormalize import CholQR, as_orthonormalizer, final_of
from linalg_core.lowrank.small_svd import svd_of_wide
from linalg_core.lowrank.svd import SVD
from linalg_core.random import normal

# Stream of the Gaussian test matrices of the low-rank algorithms (block i at offset i·n·k).
RSVD_STREAM = 6
# Power (or Krylov) iterations of the finders unless told otherwise (benchmarks/RESULTS.md,
# "defaults grid": oversampling pays before iterations do, Halko et al. §4.4).
DEFAULT_NITER = 4
# The most iterations the adaptive SubspaceIteration (niter=None) spends before it returns what
# it has, without a warning: the flat spectra of the "adaptive" rows of benchmarks/RESULTS.md
# reach the PEFT-grade target in 3-4 at the default sketch size; a spectrum with no decay (noise)
# never does, and then costs 1.4x the fixed 4 iterations, not more.
ADAPTIVE_MAX_NITER = 6
# bfloat16 products resolve singular values down to about this fraction of σ₁ (≈ 13 bfloat16
# ulps); rsvd redoes the work in full precision below it.
BF16_RANGE = 0.05
# The least contraction per iteration ritz_converged assumes for the singular values before it
# has seen one, unless the Ritz values show a clear gap (see there).
FIRST_RATE = 0.1
# How far below FIRST_RATE the first comparison's assumed contraction may go: to this multiple of
# the rate (σ_k/σ_r)⁴ read off the Ritz values (a clear gap after the sketch: PEFT accuracy after
# one iteration, as the hindsight-best settings of the "adaptive" rows show).
FIRST_RATE_MARGIN = 10.0
# The factor by which ritz_converged multiplies the geometric tail of each σ_i²'s changes: with
# 2 (and σ_k read off its Ritz value alone) the default missed PEFT grade on 11 of 2,208 stress
# matrices, with 2.5 on none, for 3 % more product columns (benchmarks/RESULTS.md, "Measurements
# behind design choices"). Clustered values exchange Ritz approximations, so one value's changes
# need not contract geometrically even where the cluster's do.
SAFETY = 2.5
# The span σ₁²/σ_k² of W = AᴴQ up to which the adaptive iteration multiplies A by W itself
# instead of an orthonormal basis of its range (cond(W) ≤ 10): a CholeskyQR round fewer per
# iteration (a Cholesky factor, its inverse and an n × k² GEMM; flat spectra 5–12 % faster at
# 1024²–2048²; benchmarks/RESULTS.md, "Measurements behind design choices").
WELL_CONDITIONED = 100.0
# The rate (σ_k1/σ_r)⁴ read off the first sketch's Ritz values below which the adaptive default
# keeps its first, narrow sketch (:func:`choose_width`): a gap as clear as the "gapped" rows'
# (σ_k1/σ_r ≤ 0.1), across which one iteration converges.
ONE_ITERATION_RATE = 1e-4
# A decaying spectrum's sketch ((σ_k1/σ_r)⁴ ≤ DECAYING_RATE in its Ritz values) widens only until
# that rate, extrapolated geometrically past σ_k1, reaches WIDTH_RATE (:func:`choose_width`). The
# sketch's Ritz values understate the rate 2–10× (exponential 0.96 at r = 64: 0.018 against 0.073;
# at r = 128: 5.5e-4 against 5.4e-3), hence the small target; flat, spiked and slowly decaying
# spectra (Ritz rates 0.08–0.68) widen to k as before.
DECAYING_RATE = 0.1
WIDTH_RATE = 1e-4


class Factored(NamedTuple):
    """What a finder's ``factor`` returns: A ≈ Q · U diag(S) Vh (``svd`` the small SVD of B), or,
    with Q None, A ≈ U diag(S) Vh directly; ``rank`` triplets are kept (a rank-adaptive finder
    may lower it). ``W``: Aᴴ·Q in full precision where a finder formed it from bfloat16
    products' Q (B = Wᴴ; the adaptive iteration continues from it in full precision), else None.
    ``full``: True (or a (*) bool tensor, per batch item) where the finder was given bfloat16
    products and chose full-precision ones (:func:`bf16_continues`): rsvd does not redo those.

    Shape:
        Q: (*, m, k') or None;  svd.U: (*, k', k'') (or (*, m, ·) when Q is None);  W: (*, n, k')
    """

    Q: object
    svd: SVD
    rank: int
    W: object = None
    full: object = False

    def triplets(self):
        """(U, S, Vh), ``rank`` triplets of A's SVD: U = Q·U (U itself where Q is None).

        Shape:
            U: (*, m, rank);  S: (*, rank);  Vh: (*, rank, n)

        Example:
            >>> import torch
            >>> from linalg_core.lowrank import SVD
            >>> from linalg_core.lowrank.finders import Factored
            >>> f = Factored(torch.eye(5, 3), SVD(torch.eye(3), torch.ones(3), torch.eye(3, 4)), 2)
            >>> [tuple(x.shape) for x in f.triplets()]
            [(5, 2), (2,), (2, 4)]
        """
        U = self.svd.U[..., :self.rank]
        return U if self.Q is None else self.Q @ U, self.svd.S[..., :self.rank], self.svd.Vh[..., :self.rank, :]


def sketch(op, k: int, seed: int, block: int = 0, backend=None, *, offset: int | None = None):
    """Y = AΩ for block ``block`` of the Gaussian test matrix Ω (n × k) of ``seed`` (normal stream
    6 at offset block·n·k, or at ``offset`` when given). An operator that can generate Ω where its
    data lives (row blocks on a cluster) does so through its ``matmul_normal``; the result is the
    same.

    Shape:
        Y: (*, m, k)
    """
    n = op.shape[-1]
    offset = block * n * k if offset is None else offset
    if hasattr(op, "matmul_normal"):
        return op.matmul_normal(k, seed=seed, stream=RSVD_STREAM, offset=offset, backend=backend)
    dev = _device(op)
    return op.matmul(normal((n, k), seed=seed, stream=RSVD_STREAM, offset=offset, dtype=op.dtype, device=dev,
                            backend=backend))


def _right_basis(op, Y, orth, last=None):
    """Z = orth(Aᴴ·orth(Y)), the outer orthonormalisation by ``last`` (default ``orth``)."""
    return (last or orth)(op.rmatmul(orth(Y)))


def _power_step(op, Y, orth):
    """One subspace iteration Y ← A·orth(Aᴴ·orth(Y))."""
    return op.matmul(_right_basis(op, Y, orth))


def _iterate(op, k, niter, orth, seed, backend, last):
    """(Y, Z): Y = AΩ, then ``niter`` rounds of Z = orth(Aᴴorth(Y)), Y = AZ; the last Z
    orthonormalised by ``last`` (None when niter = 0)."""
    Y = sketch(op, k, seed, 0, backend)
    Z = None
    for i in range(niter):
        Z = _right_basis(op, Y, orth, last if i == niter - 1 else None)
        Y = op.matmul(Z)
    return Y, Z


def _project_out(Y, blocks):
    for P in blocks:
        Y = Y - P @ (P.mT.conj() @ Y)
    return Y


def _orthonormal_complement(Y, blocks, orth):
    """Orthonormal basis of Y's part orthogonal to the orthonormal ``blocks``: block
    Gram-Schmidt with re-orthogonalisation, normalising after each sweep ("twice is enough",
    Giraud et al. 2005), so that directions Y had only to rounding stay orthogonal too."""
    for _ in range(2 if blocks else 1):
        Y = final_of(orth)(_project_out(Y, blocks))
    return Y


class RangeFinder:
    """Base of the range-finder stages (see the module docstring).

    Subclasses are frozen dataclasses with a ``niter`` field (the number of passes pays for
    bfloat16 products, see rsvd's ``precision``) and define ``__call__``; ``factor`` and
    ``full_precision`` have defaults that fit any finder returning a basis.

    Shape:
        Q = finder(op, k): (*, m, k') for A (*, m, n)

    Example:
        >>> import torch, linalg_core as lc
        >>> from dataclasses import dataclass
        >>> from linalg_core.lowrank import RangeFinder
        >>> @dataclass(frozen=True)
        ... class OnePass(RangeFinder):  # Algorithm 4.1 of Halko, Martinsson and Tropp 2011
        ...     niter: int = 0
        ...     def __call__(self, op, k, *, seed=0, backend=None):
        ...         Omega = lc.random.normal((op.shape[-1], k), seed=seed, dtype=op.dtype)
        ...         return torch.linalg.qr(op.matmul(Omega)).Q
        >>> A = torch.randn(50, 40, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
        >>> tuple(lc.rsvd(A, 3, finder=OnePass(), seed=0).U.shape)
        (50, 3)
    """

    def __call__(self, op, k: int, *, seed: int = 0, backend=None) -> torch.Tensor:
        """Orthonormal Q (*, m, k') with range(Q) ≈ A's dominant range, from the products of
        ``op``. Shape: Q (*, m, k')"""
        raise NotImplementedError(f"{type(self).__name__} must define __call__(op, k, *, seed, backend)")

    def factor(self, op, power, rank: int, k: int, *, seed: int, backend=None, small_svd=svd_of_wide) -> Factored:
        """A ≈ Q · SVD(B): the basis from the products of ``power`` (A itself, or A in bfloat16),
        B = QᴴA through ``op``, the small SVD of B by ``small_svd``.

        Args:
            op: the operator A (*, m, n) (:class:`~linalg_core.lowrank.LinearOperator`).
            power: the operator the range-finding products go through: ``op`` itself, or A in
                bfloat16 (rsvd's ``precision``).
            rank: r, the rank returned.
            k: the sketch size (r ≤ k).
            seed: the seed of the Gaussian test matrix Ω.
            backend: force a backend for the generation of Ω.
            small_svd: the small-SVD stage (default :func:`~linalg_core.lowrank.svd_of_wide`).

        Returns:
            A ``Factored(Q, svd, rank)``: A ≈ Q · U diag(S) Vh of the small SVD (Q is None when
            the SVD's U already spans A's columns).
        """
        Q = self(power, k, seed=seed, backend=backend)
        return Factored(Q, small_svd(op.rmatmul(Q).mT.conj(), rank), rank)  # B = QᴴA

    def full_precision(self, op, factored: Factored, rank: int, k: int, *, seed: int, backend=None,
                       small_svd=svd_of_wide) -> Factored:
        """The factorisation again in full precision, after bfloat16 products could not resolve
        the range found in ``factored`` (default: start over).

        Args:
            op: the operator A in full precision.
            factored: the result of :meth:`factor` on the bfloat16 products.
            rank, k, seed, backend, small_svd: as for :meth:`factor`.

        Returns:
            A ``Factored`` as :meth:`factor` returns.
        """
        return self.factor(op, op, rank, k, seed=seed, backend=backend, small_svd=small_svd)


def _check(stage, *, niter=True):
    if niter:
        object.__setattr__(stage, "niter", _validate.integer(stage.niter, "niter", low=0))
    object.__setattr__(stage, "orth", as_orthonormalizer(stage.orth, "orth"))


def _ritz_sq(W, G):
    """σ(W)² in float64, descending, from the k × k Gram matrix G = WᴴW formed in W's precision
    (in float64 where that overflowed): the squared Rayleigh–Ritz values of A on range(Q) when
    W = AᴴQ for an orthonormal Q. G is also the Gram matrix of W's CholeskyQR round
    (:func:`_row_basis`), so the values cost one k × k eigensolve; float32 rounding of G moves
    σ_i² by ~u·σ₁², far below what :func:`ritz_converged` resolves for the top-r values."""
    wide = torch.complex128 if G.is_complex() else torch.float64
    if _validate.all_finite(G):
        G = G.to(wide)
    else:
        W64 = W.to(wide)
        G = W64.mT.conj() @ W64
    with _threads.sized(G.shape[-1] ** 3 * max(1, G[..., 0, 0].numel())):  # one thread for a small eigensolve
        return torch.linalg.eigvalsh(G).flip(-1).clamp_min(0)


def _row_basis(W, G, orth, ritz_sq=None):
    """orth(W), the basis of the next product; a :class:`CholQR` round is given the Gram matrix
    G = WᴴW the Ritz values came from instead of forming it again, and is skipped (W/σ₁(W))
    where W's squared singular values ``ritz_sq`` span at most :data:`WELL_CONDITIONED`: the
    next product needs range(W) only, and the CholeskyQR2 of that product copes with the
    conditioning it inherits (cond(AW) ≤ 10·cond(AZ) for an orthonormal Z); the scaling keeps
    the product in A's range of magnitudes. Per batch item."""
    if not isinstance(orth, CholQR):
        return orth(W)
    well = None if ritz_sq is None else (ritz_sq[..., 0] > 0) & (ritz_sq[..., -1] * WELL_CONDITIONED >= ritz_sq[..., 0])
    if well is None or not bool(well.any()):
        return orth(W, gram=G)
    scaled = W / ritz_sq[..., 0].sqrt().clamp_min(torch.finfo(ritz_sq.dtype).tiny).to(W.dtype)[..., None, None]
    if bool(well.all()):
        return scaled
    return torch.where(well[..., None, None], scaled, orth(W, gram=G))  # each batch item as alone


def ritz_converged(prev, cur, prev_step, total, rank: int, accuracy: Accuracy):
    """Whether the Ritz values of subspace iteration meet ``accuracy``, judged from their
    change between two iterations (per batch item).

    ``prev``, ``cur``: squared Ritz values (*, k) of two consecutive iterations (descending,
    non-decreasing from one iteration to the next: each basis's B = QᴴA is a projection of A);
    ``prev_step``: the change before (None at the first comparison); ``total``: ‖A‖_F², or None
    where the operator does not know it (a Hutchinson estimate is too coarse when the tail is
    small): then the optimal residual is bounded from below by the Ritz values past ``rank``.

    The remaining error of each σ_i² is extrapolated geometrically from its last change d_i:
    e_i = c·d_i·ρ/(1 − ρ) (a safety factor c = :data:`SAFETY`), with ρ the larger of the observed
    contraction of the changes (from the third iteration on) and the subspace-iteration rate
    (σ_k/σ_i)⁴ read off the Ritz values (Halko, Martinsson and Tropp 2011, §4.5 and Thm. 9.2;
    Musco and Musco 2015 for per-vector convergence), capped at 0.95. σ_k² there is its Ritz value
    plus its own last change: the last Ritz value lags its singular value most (0.84–0.91 of it
    where the rule used to stop early), and a rate read off it alone is too small. Converged when
    every √(σ_i² + e_i) − σ_i ≤ sigma·σ_i and Σ e_i ≤ 2·resid·(‖A‖_F² − Σ_{i≤r} σ_i² − Σ e_i), the
    estimated excess of the rank-r residual over the optimal one (‖A − QB_r‖²_F =
    ‖A‖²_F − Σ_{i≤r} σ_i(B)² exactly). At the first comparison, before any contraction is seen,
    the rate read off the Ritz values may be too small (the trailing Ritz values converge last),
    so the singular-value test takes ρ ≥ 0.1 then (a change of ≲ 4.5 % in σ_i may pass, not the
    20 % a spiked spectrum's bulk shows after one iteration), or ρ ≥ 10·(σ_k/σ_r)⁴ where that
    is smaller: a clear gap after σ_r (σ_k/σ_r ≲ 0.32), across which one iteration converges
    (a margin of 1 instead of 10 stopped a spiked spectrum at a 0.79 % σ error in a trial). The
    residual test also passes once the increases Σ d_i are no larger than twice the decreases
    (which only rounding makes): the products' rounding floor, below which more iterations
    change nothing.

    Shape:
        prev, cur: (*, k);  total: (*);  returns (converged (*) bool, the change (*, k))
    """
    step = (cur - prev).clamp_min(0)
    top, d = cur[..., :rank], step[..., :rank]
    noise = (prev - cur)[..., :rank].clamp_min(0).sum(-1)  # decreases: rounding, never exact arithmetic
    tail = cur[..., -1:] + step[..., -1:]  # σ_k², its Ritz value's lag allowed for
    rate = (tail / top.clamp_min(torch.finfo(cur.dtype).tiny)).clamp(max=1) ** 2  # (σ_k/σ_i)^4
    if prev_step is not None:
        seen = d.sum(-1, keepdim=True) / prev_step[..., :rank].sum(-1, keepdim=True).clamp_min(
            torch.finfo(cur.dtype).tiny)
        rate = torch.maximum(rate, seen)
    rate = rate.clamp(max=0.95)
    e = SAFETY * d * rate / (1 - rate)
    if prev_step is None:  # no contraction seen yet: for the singular values, a rate of at least FIRST_RATE,
        # or FIRST_RATE_MARGIN times the rate at σ_r where the Ritz values show a clear gap after σ_r
        first = torch.maximum(rate, (FIRST_RATE_MARGIN * rate[..., rank - 1:rank]).clamp(max=FIRST_RATE))
        e_sig = SAFETY * d * first / (1 - first)
    else:
        e_sig = e
    sig_ok = ((top + e_sig).sqrt() - top.sqrt() <= accuracy.sigma * top.sqrt()).all(-1)
    excess = e.sum(-1)
    if total is None:  # ‖A − A_r‖²_F ≥ Σ_{r<i≤k} σ_i² ≥ the Ritz values' (a rigorous lower bound)
        opt = cur[..., rank:].sum(-1)
    else:
        opt = total.to(cur.dtype) - top.sum(-1) - excess
    res_ok = (excess <= 2 * accuracy.resid * opt.clamp_min(0)) | (d.sum(-1) <= 2 * noise)
    return sig_ok & res_ok, step


def _select(done, new, old):
    """Per batch item: ``new`` where ``done`` (a (*) mask), else ``old``."""
    if old is None:
        return new
    return torch.where(done.reshape(done.shape + (1,) * (new.dim() - done.dim())), new, old)


class _MixedChoices(Exception):
    """The items of a batch chose different sketch widths (:func:`choose_width`) or precisions
    (:func:`bf16_continues`): ``choices``, a (width, bfloat16) pair per item."""

    def __init__(self, choices):
        super().__init__(choices)
        self.choices = choices


def start_width(rank: int, k: int) -> int:
    """The first sketch width of the adaptive default: r + max(10, r/4) columns (at most k), widened
    to what :func:`choose_width` picks once the sketch's Ritz values show the spectrum."""
    return min(k, rank + max(10, rank // 4))


def choose_width(ritz_sq, rank: int, k1: int, k: int) -> int:
    """The sketch width, k1 ≤ w ≤ k, from the Ritz values of a k1-column sketch: k1 across a clear
    gap after σ_r, (σ_k1/σ_r)⁴ ≤ :data:`ONE_ITERATION_RATE` for every batch item (one iteration then
    converges, and :func:`ritz_converged` accepts it after one); on a steeply decaying spectrum
    ((σ_k1/σ_r)⁴ ≤ :data:`DECAYING_RATE`) the width where that decay, extrapolated geometrically,
    reaches (σ_w/σ_r)⁴ = :data:`WIDTH_RATE` (a multiple of 8, and only where it saves half the
    widening or more: just short of k one iteration may not be accepted where k's is); else k, the
    auto width (Halko et al. 2011, §4.5: oversampling converges faster than iterating). The widest
    item's width serves a batch.

    A narrow basis elsewhere was tried and dropped: the Ritz value σ_k1 lags the true σ_k1 most on a
    narrow basis, so the stopping rule's rate is least safe there (a steeply decaying spectrum at
    k1 = 1.5r stopped at a 0.47 % residual excess, over the 0.2 % target), and the iterations it
    saves are few. Narrower widened sketches for every spectrum were tried too and dropped for the
    same reason: faster on spiked and steep spectra, they missed PEFT grade more often; the
    decay-dependent width missed it on none of 2,802 stress matrices and cut the steep rows of
    ``bench rsvd_adaptive`` 10–40 % (benchmarks/RESULTS.md, "Measurements behind design choices").

    Shape:
        ritz_sq: (*, k1) squared Ritz values, descending
    """
    if k <= k1 or k1 <= rank:
        return k1
    rates = (ritz_sq[..., k1 - 1] / ritz_sq[..., rank - 1].clamp_min(torch.finfo(ritz_sq.dtype).tiny)) ** 2
    rate = float(rates.max())
    if rate <= ONE_ITERATION_RATE:
        return k1
    if not rate <= DECAYING_RATE:
        return k
    w = rank + math.ceil((k1 - rank) * math.log(WIDTH_RATE) / math.log(rate))
    w = max(k1, 8 * math.ceil(w / 8))
    return w if 2 * w <= k1 + k else k


def bf16_continues(ritz_sq, rank: int) -> bool:
    """Whether the adaptive iteration goes on in bfloat16 products after a sketch whose squared
    Ritz values are ``ritz_sq``: not where they span more than bfloat16 products resolve
    (σ_k < :data:`BF16_RANGE`·σ₁, so rsvd would redo the result in full precision) and predict
    fast convergence, (σ_k/σ_r)⁴ ≤ :data:`FIRST_RATE` (two iterations or fewer: a gapped or steep
    spectrum). Then the bfloat16 iterations would buy a warm start for a full-precision
    iteration, its B pass and rsvd's check, and cost more than they save: A/B on the
    "adaptive" rows (AMX Xeon, 2 threads), gapped 2048², r = 64 24.4 → 16.6 ms, r = 128
    44.5 → 29.3 ms, steep 2048², r = 64 36.5 → 26.2 ms, 4096², r = 64 gapped 76 → 65 ms, steep
    112 → 100 ms. Where the sketch predicts slow convergence (spiked, (σ_k/σ_r)⁴ ≈ 0.3–0.4) the
    bfloat16 iterations pay even when redone (spiked 4096², r = 64: 125 ms, against 152 ms
    with full precision after the sketch; benchmarks/RESULTS.md, "Measurements behind design
    choices").

    Shape:
        ritz_sq: (*, k) squared Ritz values, descending (a single item)
    """
    k = ritz_sq.shape[-1]
    top, last, at_r = ritz_sq[..., 0], ritz_sq[..., k - 1], ritz_sq[..., rank - 1]
    wide = last < BF16_RANGE**2 * top
    fast = (last / at_r.clamp_min(torch.finfo(ritz_sq.dtype).tiny)) ** 2 <= FIRST_RATE
    return not bool((wide & fast).all())


def _adaptive_subspace(op, power, rank, k, orth, accuracy, max_niter, seed, backend, *, start=None, k1=None,
                       auto_precision=False):
    """Subspace iteration with the stopping rule of :func:`ritz_converged`: (Q, W, low) with
    W = AᴴQ of the iteration each batch item converged at (or the last), through ``power``
    where ``low`` (bfloat16 products to the end), else through ``op``. ‖A‖_F² comes from ``op``
    where it knows it (dense: one read of A), else the rule's lower bound is used.
    ``auto_precision`` (bfloat16 ``power``, a fresh start): after the sketch, the iteration goes
    on in full precision (AᴴQ formed again) where :func:`bf16_continues` says bfloat16 products
    would not pay; a dense batch whose items decide differently raises :class:`_MixedChoices`.

    Every basis Q is orthonormalised by ``orth.final`` (the Ritz values and the returned factors
    need an orthonormal Q), the n-side between by ``orth``; the Gram matrix WᴴW gives both the
    Ritz values and (with CholQR) that round's Cholesky factor. A batch item that has converged
    keeps its Q and W while the others iterate (a batch equals the loop over its items), and
    once half a (1-D, dense) batch or more has converged, the others go on as a batch of their
    own (8 × 1024², r = 32, 7 items converged after one iteration and one after four: 104 →
    56 ms);
    ``start``: the first Y (default AΩ, the sketch of ``seed``), or a pair (Q, W = AᴴQ) with an
    orthonormal Q to continue from. On bfloat16 products (``power`` not ``op``) whose Ritz values
    span more than :data:`BF16_RANGE` (rsvd's ``precision="auto"`` then continues in full
    precision), an item also stops once its top-r values change no less than in the iteration
    before: rounding, not the iteration, moves them then. (Stopping there at once instead, as
    before, left the cheap bfloat16 iterations to full-precision ones: the spiked 2048², r = 128
    of the "adaptive" rows ran 5 full-precision iterations for 1 on an AMX CPU.) ``k1`` < k (a
    fresh start only): sketch k1 columns first, then widen to :func:`choose_width`'s pick (the
    new columns are the next columns of Ω's stream, orthonormalised against the first basis; the
    first W is kept, so widening costs the products of the new columns only, though as two more
    reads of A).
    Widening inside the first iteration's products instead (A·[Z, Ω₂], no extra read) was tried:
    the new columns then lag an iteration, their Ritz values understate σ_k, and the stopping
    rule stopped early (a flat spectrum at a 1.8 % σ error) or, judged on the first k1 values
    only, late (6 iterations for 4)."""
    final = final_of(orth)
    k1 = k if k1 is None or start is not None else k1
    if isinstance(start, tuple):
        Q, W = start
    else:  # the first product checks A's values (overflowing products included) before ‖A‖_F² does
        Q = final(sketch(power, k1, seed, 0, backend) if start is None else start)
        W = power.rmatmul(Q)
    total = known_fro_norm_sq(op)
    G = W.mT.conj() @ W
    cur, step = _ritz_sq(W, G), None
    w = k1
    if start is None and (k1 < k or power is not op):
        items = cur.reshape(-1, cur.shape[-1]).split(1)
        choices = [(choose_width(c, rank, k1, k), power is not op and (not auto_precision or bf16_continues(c, rank)))
                   for c in items]
        if len(set(choices)) > 1 and isinstance(op, Dense):
            raise _MixedChoices(choices)  # the caller runs each choice's items as a batch of their own
        w = max(c[0] for c in choices)
        if power is not op and not any(c[1] for c in choices):  # full precision from here: W again
            power, W = op, op.rmatmul(Q)
            cur = None
    if w > k1:
        Q2 = _orthonormal_complement(sketch(power, w - k1, seed, backend=backend, offset=power.shape[-1] * k1),
                                     [Q], orth)
        Q, W = torch.cat([Q, Q2], -1), torch.cat([W, power.rmatmul(Q2)], -1)
        cur = None
    if cur is None:  # W changed: its Gram matrix and Ritz values once, after the switch and the widening
        G = W.mT.conj() @ W
        cur = _ritz_sq(W, G)
    done = torch.zeros(cur.shape[:-1], dtype=torch.bool, device=cur.device)
    Q_out = W_out = None  # the converged items' Q and W (a batch)
    low = power is not op  # bfloat16 products
    out = _Finished()
    for _ in range(max_niter):
        Q = final(power.matmul(_row_basis(W, G, orth, cur)))
        W = power.rmatmul(Q)
        G = W.mT.conj() @ W
        prev, cur = cur, _ritz_sq(W, G)
        ok, last = ritz_converged(prev, cur, step, total, rank, accuracy)
        if low and step is not None:  # bfloat16 products over a range they cannot resolve
            wide = cur[..., -1] < BF16_RANGE**2 * cur[..., 0]
            ok = ok | (wide & (last[..., :rank].sum(-1) >= step[..., :rank].sum(-1)))
        step = last
        if done.dim() == 0:
            if bool(ok):
                break
            continue
        new = ok & ~done
        if bool(new.any()):  # (else there is nothing new to keep)
            Q_out, W_out = _select(new, Q, Q_out), _select(new, W, W_out)
        done = done | ok
        if bool(done.all()):
            return (*out.result(Q_out, W_out), low)
        if done.dim() == 1 and 2 * int(done.sum()) >= done.numel():
            # half the items or more have converged: drop them from the batch (their products
            # would be spent for nothing), at the cost of a copy of the others' A
            keep = ~done
            sub = _batch_items(power, keep)
            if sub is not None:
                out.store(done, Q_out, W_out)
                power = sub
                Q, W, G, cur, step = Q[keep], W[keep], G[keep], cur[keep], step[keep]
                total = None if total is None else total[keep]
                done, Q_out, W_out = done[keep], Q_out[keep], W_out[keep]
    if Q_out is None:
        return (*out.result(Q, W), low)
    return (*out.result(_select(done, Q_out, Q), _select(done, W_out, W)), low)


def _batch_items(op, sel):
    """A dense operator (*, m, n), or its bfloat16 copy, restricted to the batch items ``sel``
    (a mask over the batch, or indices into the flattened batch): (len, m, n) of the same kind;
    None for other operators."""
    if not isinstance(op, (Dense, LowPrecision)):
        return None
    A = op.A.reshape(-1, *op.shape[-2:])[sel.reshape(-1) if sel.dtype == torch.bool else sel]
    return Dense(A, unchecked=op.unchecked) if isinstance(op, Dense) else LowPrecision(A, op.dtype)


class _Finished:
    """The adaptive iteration's results by original batch item, once converged items have been
    dropped from the batch (``idx``: the original index of each item still iterating)."""

    def __init__(self):
        self.idx = self.Q = self.W = None

    def store(self, done, Q, W):
        """Keep the items ``done`` of the current batch (their final Q and W); the rest stay."""
        idx = torch.arange(done.numel(), device=done.device) if self.idx is None else self.idx
        if self.Q is None:
            self.Q = Q.new_empty((idx.numel(), *Q.shape[1:]))
            self.W = W.new_empty((idx.numel(), *W.shape[1:]))
        self.Q[idx[done]], self.W[idx[done]] = Q[done], W[done]
        self.idx = idx[~done]

    def result(self, Q, W):
        """Q and W of the whole original batch, given those of the current one."""
        if self.Q is None:
            return Q, W
        self.Q[self.idx], self.W[self.idx] = Q, W
        return self.Q, self.W


@dataclass(frozen=True)
class SubspaceIteration(RangeFinder):
    """Randomized subspace iteration (Halko et al. 2011, Algorithm 4.4): the default finder.

    Args:
        niter: power iterations q (each one pass with A and one with Aᴴ); None (the default):
            adaptive, 1 to ``max_niter`` iterations, stopping once the Ritz values say
            ``accuracy`` is met (:func:`ritz_converged`). A given niter is the fixed iteration.
        orth: orthonormalisation between passes (default one CholeskyQR round; ``orth.final``,
            CholeskyQR2 or Householder, for the returned basis, and with ``niter=None`` for
            every column basis).
        accuracy: the target of ``niter=None`` (default :data:`~.error.PEFT_GRADE`: the rank-r
            residual within 0.2 % of the optimal one, each top-r singular value within 1 %).
        max_niter: the most iterations of ``niter=None``.

    Shape:
        Q = finder(op, k): (*, m, k)

    Randomness:
        Ω (n × k) is normal stream 6 of ``seed``.

    Example:
        >>> import torch, linalg_core as lc
        >>> from linalg_core.lowrank import SubspaceIteration, Householder
        >>> A = torch.randn(80, 60, dtype=torch.float64)
        >>> svd = lc.rsvd(A, 5, finder=SubspaceIteration(niter=2, orth=Householder()), seed=0)
        >>> svd.U.shape
        torch.Size([80, 5])
    """

    niter: int | None = None
    orth: Callable = CholQR()
    accuracy: Accuracy = PEFT_GRADE
    max_niter: int = ADAPTIVE_MAX_NITER

    def __post_init__(self):
        _check(self, niter=self.niter is not None)
        if not isinstance(self.accuracy, Accuracy):
            raise TypeError(f"accuracy must be an Accuracy (e.g. Accuracy(resid=2e-3, sigma=1e-2)), got "
                            f"{type(self.accuracy).__name__}")
        object.__setattr__(self, "max_niter", _validate.integer(self.max_niter, "max_niter", low=1))

    def __call__(self, op, k: int, *, seed: int = 0, backend=None) -> torch.Tensor:
        if self.niter is None:
            return self._adaptive(op, op, k, k, seed, backend)[0]
        return final_of(self.orth)(_iterate(op, k, self.niter, self.orth, seed, backend, self.orth)[0])

    def _adaptive(self, op, power, rank, k, seed, backend, start=None, k1=None, auto_precision=False):
        return _adaptive_subspace(op, power, rank, k, self.orth, self.accuracy, self.max_niter, seed, backend,
                                  start=start, k1=k1, auto_precision=auto_precision)

    def factor(self, op, power, rank, k, *, seed, backend=None, small_svd=svd_of_wide, k1=None,
               auto_precision=False):
        """Fixed ``niter``: the basis, then B = QᴴA. Adaptive: the last W = AᴴQ is Bᴴ (through
        ``op`` again only when the iteration ran on bfloat16 products).

        Args:
            op, power, rank, k, seed, backend, small_svd: as for :meth:`RangeFinder.factor`.
            k1: adaptive only: sketch k1 ≤ k columns first and widen up to k as the first Ritz
                values predict (:func:`choose_width`; rsvd's ``oversample="auto"``); None: k.
            auto_precision: adaptive, bfloat16 ``power`` only: go on in full precision after the
                sketch where :func:`bf16_continues` says bfloat16 products do not pay (rsvd's
                ``precision="auto"``); the result's ``full`` says where.

        Returns:
            A ``Factored(Q, svd, rank)``.
        """
        if self.niter is not None:
            return super().factor(op, power, rank, k, seed=seed, backend=backend, small_svd=small_svd)
        try:
            Q, W, low = self._adaptive(op, power, rank, k, seed, backend, k1=k1, auto_precision=auto_precision)
        except _MixedChoices as mixed:
            return self._by_choice(op, power, rank, k, mixed.choices, seed=seed, backend=backend,
                                   small_svd=small_svd, k1=k1, auto_precision=auto_precision)
        if low:
            W = op.rmatmul(Q)  # B = Wᴴ in full precision; full_precision continues from it
        return Factored(Q, small_svd(W.mT.conj(), rank), rank, W if low else None, full=power is not op and not low)

    def _by_choice(self, op, power, rank, k, choices, *, seed, backend, small_svd, k1, auto_precision):
        """A dense batch whose items chose different widths or precisions: each choice's items
        as a batch of their own (so the batch equals the loop over its items), the factors put
        back in order (Q multiplied in: the widths differ), ``full`` per item."""
        n = op.shape[-1]
        items = len(choices)
        U = S = Vh = None
        full = torch.zeros(items, dtype=torch.bool, device=op.device)
        for c in sorted(set(choices)):
            idx = torch.tensor([i for i, x in enumerate(choices) if x == c], device=op.device)
            sub = _batch_items(op, idx)
            # bfloat16 products: the items of the copy rsvd already made, not a second conversion
            low = sub if power is op else _batch_items(power, idx)
            f = self.factor(sub, low, rank, k, seed=seed, backend=backend, small_svd=small_svd, k1=k1,
                            auto_precision=auto_precision)
            u, s, vh = f.triplets()
            if U is None:
                U = u.new_empty(items, *u.shape[1:])
                S = s.new_empty(items, rank)
                Vh = vh.new_empty(items, rank, n)
            U[idx], S[idx], Vh[idx] = u, s, vh
            full[idx] = bool(f.full)
        batch = op.shape[:-2]
        return Factored(None, SVD(U.reshape(*batch, *U.shape[1:]), S.reshape(*batch, rank),
                                  Vh.reshape(*batch, rank, n)), rank, full=full.reshape(batch))

    def full_precision(self, op, factored, rank, k, *, seed, backend=None, small_svd=svd_of_wide):
        """Continue from the bfloat16 basis with ⌈niter/2⌉ (at least one) full-precision
        iterations (adaptive: the adaptive iteration, started from it).

        Args:
            op, factored, rank, k, seed, backend, small_svd: as for
                :meth:`RangeFinder.full_precision`.

        Returns:
            A ``Factored(Q, svd, rank)``.
        """
        if self.niter is None:
            start = factored.Q if factored.W is None else (factored.Q, factored.W)
            Q, W, _ = self._adaptive(op, op, rank, k, seed, backend, start=start)
            return Factored(Q, small_svd(W.mT.conj(), rank), rank)
        Y = factored.Q
        for _ in range(max(1, self.niter // 2)):
            Y = _power_step(op, Y, self.orth)
        Q = final_of(self.orth)(Y)
        return Factored(Q, small_svd(op.rmatmul(Q).mT.conj(), rank), rank)


@dataclass(frozen=True)
class RowSpace(RangeFinder):
    """Subspace iteration ending on the row space: A ≈ (AZ)Zᴴ with Z = orth(AᴴQ) of the last
    iteration, its SVD from the SVD of the wide (AZ)ᴴ; no B = QᴴA pass (see the module docstring).

    Args:
        niter: power iterations (with 0 there is no row space to end on: subspace iteration).
        orth: orthonormalisation between passes (Z itself gets ``orth.final``).
        bf16_only: end on the row space only where the products run in bfloat16 (the pass it
            saves is then the one full-precision pass; rsvd's ``precision``); in full precision
            it is :class:`SubspaceIteration`. PiSSA's default.

    Shape:
        Q = finder(op, k): (*, m, k)

    Randomness:
        Ω (n × k) is normal stream 6 of ``seed``, as for :class:`SubspaceIteration`.

    Example:
        >>> import torch, linalg_core as lc
        >>> from linalg_core.lowrank import RowSpace
        >>> A = torch.randn(80, 60, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
        >>> tuple(lc.rsvd(A, 5, finder=RowSpace(niter=2), seed=0).Vh.shape)
        (5, 60)
    """

    niter: int = DEFAULT_NITER
    orth: Callable = CholQR()
    bf16_only: bool = False

    def __post_init__(self):
        _check(self)
        object.__setattr__(self, "bf16_only", _validate.flag(self.bf16_only, "bf16_only"))

    def _subspace(self) -> SubspaceIteration:
        return SubspaceIteration(self.niter, self.orth)

    def __call__(self, op, k: int, *, seed: int = 0, backend=None) -> torch.Tensor:
        return self._subspace()(op, k, seed=seed, backend=backend)

    def factor(self, op, power, rank, k, *, seed, backend=None, small_svd=svd_of_wide):
        """``power is op`` means full-precision products."""
        if self.niter < 1 or (self.bf16_only and power is op):
            return self._subspace().factor(op, power, rank, k, seed=seed, backend=backend, small_svd=small_svd)
        Y, Z = _iterate(power, k, self.niter, self.orth, seed, backend, final_of(self.orth))
        # Yᴴ = U' Σ V'ᴴ (the SVD of the wide Yᴴ), so A ≈ YZᴴ = V' Σ (ZU')ᴴ.
        Ut, S, Vt = small_svd(Y.mT.conj(), rank)
        return Factored(None, SVD(Vt.mT.conj(), S, (Z @ Ut).mT.conj()), rank)

    def full_precision(self, op, factored, rank, k, *, seed, backend=None, small_svd=svd_of_wide):
        """Start over in full precision (``bf16_only``: as subspace iteration)."""
        stage = self._subspace() if self.bf16_only else self
        return stage.factor(op, op, rank, k, seed=seed, backend=backend, small_svd=small_svd)


@dataclass(frozen=True)
class BlockKrylov(RangeFinder):
    """Randomized block Krylov iteration (Musco and Musco 2015, Algorithm 2): the orthonormal basis
    (*, m, (niter+1)·k) of [AΩ, (AAᴴ)AΩ, …, (AAᴴ)^niter AΩ], each block orthonormalised against
    the previous ones (block Gram-Schmidt, twice).

    Args:
        niter: Krylov iterations q (the basis has (q + 1)·k columns).
        orth: its ``final`` orthonormalises each block.

    Shape:
        Q = finder(op, k): (*, m, (niter + 1)·k)

    Randomness:
        Ω (n × k) is normal stream 6 of ``seed``.

    Example:
        >>> import torch, linalg_core as lc
        >>> from linalg_core.lowrank import BlockKrylov, Householder
        >>> A = torch.randn(80, 60, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
        >>> finder = BlockKrylov(niter=2, orth=Householder())
        >>> tuple(finder(lc.lowrank.as_linear_operator(A), 4, seed=0).shape)
        (80, 12)
        >>> tuple(lc.rsvd(A, 4, finder=finder, seed=0).U.shape)
        (80, 4)
    """

    niter: int = DEFAULT_NITER
    orth: Callable = CholQR()

    def __post_init__(self):
        _check(self)

    def __call__(self, op, k: int, *, seed: int = 0, backend=None) -> torch.Tensor:
        blocks = []
        Y = sketch(op, k, seed, 0, backend)
        for i in range(self.niter + 1):
            Q = _orthonormal_complement(Y, blocks, self.orth)
            blocks.append(Q)
            if i < self.niter:
                Y = op.matmul(op.rmatmul(Q))
        return torch.cat(blocks, dim=-1)


def _adaptive_qb(op, power, max_rank, block, tol, niter, orth, seed, backend):
    """Blocked QB with exact error tracking (Martinsson and Voronin 2016, Algorithm 2); the
    range-finding products go through ``power``, B = QᴴA through ``op``."""
    total = fro_norm_sq(op)
    Qs, Bs = [], []
    err2 = total.clone()
    i = 0
    while sum(q.shape[-1] for q in Qs) < max_rank:
        b = min(block, max_rank - sum(q.shape[-1] for q in Qs))
        # Power iterations on the deflated (I − QQᴴ)A: projecting each A-product off the basis
        # found so far is enough (for Y ⟂ Q, ((I − QQᴴ)A)ᴴY = AᴴY). Without it the iterates
        # converge back to the directions already captured.
        Y = _project_out(sketch(power, b, seed, i, backend), Qs)
        for _ in range(niter):
            Y = _project_out(_power_step(power, Y, orth), Qs)
        Q = _orthonormal_complement(Y, Qs, orth)
        B = op.rmatmul(Q).mT.conj()  # QᴴA without forming Aᴴ
        Qs.append(Q)
        Bs.append(B)
        err2 = err2 - torch.linalg.vector_norm(B, dim=(-2, -1)) ** 2
        i += 1
        if bool((err2 <= (tol**2) * total).all()):
            break
    return torch.cat(Qs, dim=-1), torch.cat(Bs, dim=-2), total


@dataclass(frozen=True)
class AdaptiveQB(RangeFinder):
    """Blocked, rank-adaptive QB (Martinsson and Voronin 2016, ``randQB_EI``): blocks of Q and B
    are added until ‖A − QB‖_F ≤ tol·‖A‖_F (known exactly from ‖A‖_F² − ‖B‖_F²; for a
    matrix-free A, ‖A‖_F² is Hutchinson's estimate unless the operator has ``fro_norm_sq``), and
    rsvd returns the smallest rank ≤ its ``rank`` that meets the tolerance (a warning when even
    that rank does not).

    Args:
        tol: relative Frobenius tolerance in (0, 1).
        block: columns added per step (default max(8, min(64, rank // 4))).
        niter: power iterations per block, on the deflated A.
        orth: orthonormalisation between passes (each block gets ``orth.final``).

    Shape:
        Q = finder(op, k): (*, m, k') with k' ≤ k

    Randomness:
        Block i of Ω is normal stream 6 of ``seed`` at offset i·n·block.

    Example:
        >>> import torch, linalg_core as lc
        >>> from linalg_core.lowrank import AdaptiveQB
        >>> g = torch.Generator().manual_seed(0)
        >>> A = torch.randn(60, 4, dtype=torch.float64, generator=g) @ torch.randn(4, 50, dtype=torch.float64,
        ...                                                                        generator=g)
        >>> svd = lc.rsvd(A, 10, finder=AdaptiveQB(tol=1e-6, block=2), seed=0)  # rank 4 meets tol
        >>> tuple(svd.U.shape)
        (60, 4)
    """

    tol: float
    block: int | None = None
    niter: int = DEFAULT_NITER
    orth: Callable = CholQR()

    def __post_init__(self):
        _check(self)
        object.__setattr__(self, "tol", _validate.real(self.tol, "tol", low=0, high=1, low_open=True,
                                                        high_open=True))
        if self.block is not None:
            object.__setattr__(self, "block", _validate.integer(self.block, "block", low=1))

    def _block(self, rank: int) -> int:
        return self.block if self.block is not None else max(8, min(64, rank // 4))

    def __call__(self, op, k: int, *, seed: int = 0, backend=None) -> torch.Tensor:
        return _adaptive_qb(op, op, k, self._block(k), self.tol, self.niter, self.orth, seed, backend)[0]

    def factor(self, op, power, rank, k, *, seed, backend=None, small_svd=svd_of_wide):
        """Blocks of Q and B until ‖A − QB‖_F ≤ tol·‖A‖_F, then the smallest rank ≤ ``rank``
        whose truncation still meets the tolerance (a warning when none does).

        Args:
            op, power, rank, k, seed, backend, small_svd: as for :meth:`RangeFinder.factor`
                (``rank`` is the largest rank; ``k`` is not used).

        Returns:
            A ``Factored(Q, svd, rank')`` with rank' ≤ rank.
        """
        tol = self.tol
        Q, B, total = _adaptive_qb(op, power, rank, self._block(rank), tol, self.niter, self.orth, seed, backend)
        svd = small_svd(B)
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
                          f"is {achieved:.3g}. Raise rank to reach tol.", stacklevel=4)
        return Factored(Q, svd, rank)


@dataclass(frozen=True)
class _CallableFinder(RangeFinder):
    """rsvd's deprecated ``range_finder=f``: ``f(op, k, niter=, normalizer=, seed=, backend=)``."""

    fn: Callable
    niter: int
    normalizer: str

    def __call__(self, op, k: int, *, seed: int = 0, backend=None) -> torch.Tensor:
        return self.fn(op, k, niter=self.niter, normalizer=self.normalizer, seed=seed, backend=backend)


def subspace_iteration(op, k: int, *, niter: int, normalizer="cholqr", seed: int = 0, backend=None):
    """Orthonormal Q (*, m, k) with range(Q) ≈ the dominant k-dimensional range of A:
    ``SubspaceIteration(niter, orth=normalizer)(op, k, seed=seed)`` (the function form):
    Algorithm 4.4 of Halko, Martinsson and Tropp (2011).

    Args:
        op: the operator A (*, m, n): a :class:`~linalg_core.lowrank.LinearOperator`, e.g. from
            :func:`~linalg_core.lowrank.as_linear_operator`.
        k: the block size (columns of the Gaussian test matrix Ω).
        niter: iterations q.
        normalizer: the orthonormalisation between passes: a name (``"cholqr"``, ``"cholqr2"``,
            ``"householder"``, ``"lu"``) or a stage object.
        seed: the seed of Ω (normal stream 6).
        backend: force a backend for the generation of Ω.

    Returns:
        The orthonormal basis Q.

    Shape:
        A: (*, m, n);  Q: (*, m, k)

    Randomness: Ω (n × k) is normal stream 6 of ``seed``.

    Example:
        >>> import torch
        >>> from linalg_core.lowrank import as_linear_operator, subspace_iteration
        >>> A = torch.randn(50, 40, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
        >>> Q = subspace_iteration(as_linear_operator(A), 8, niter=2, seed=0)
        >>> tuple(Q.shape), torch.allclose(Q.T @ Q, torch.eye(8, dtype=Q.dtype))
        ((50, 8), True)
    """
    return SubspaceIteration(niter, normalizer)(op, k, seed=seed, backend=backend)


def krylov_basis(op, k: int, *, niter: int, normalizer="cholqr", seed: int = 0, backend=None):
    """Orthonormal basis (*, m, (niter+1)·k) of the block Krylov space:
    ``BlockKrylov(niter, orth=normalizer)(op, k, seed=seed)`` (the function form): Algorithm 2 of
    Musco and Musco (2015).

    Args:
        op: the operator A (*, m, n): a :class:`~linalg_core.lowrank.LinearOperator`, e.g. from
            :func:`~linalg_core.lowrank.as_linear_operator`.
        k: the block size (columns of the Gaussian test matrix Ω).
        niter: iterations q.
        normalizer: the orthonormalisation between passes: a name (``"cholqr"``, ``"cholqr2"``,
            ``"householder"``, ``"lu"``) or a stage object.
        seed: the seed of Ω (normal stream 6).
        backend: force a backend for the generation of Ω.

    Returns:
        The orthonormal basis Q of [AΩ, (AAᴴ)AΩ, …, (AAᴴ)^niter AΩ].

    Shape:
        A: (*, m, n);  Q: (*, m, (niter + 1)·k)

    Randomness: Ω (n × k) is normal stream 6 of ``seed``.

    Example:
        >>> import torch
        >>> from linalg_core.lowrank import as_linear_operator, krylov_basis
        >>> A = torch.randn(50, 40, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
        >>> Q = krylov_basis(as_linear_operator(A), 4, niter=2, seed=0)
        >>> tuple(Q.shape), torch.allclose(Q.T @ Q, torch.eye(12, dtype=Q.dtype))
        ((50, 12), True)
    """
    return BlockKrylov(niter, normalizer)(op, k, seed=seed, backend=backend)


__all__ = ["RangeFinder", "SubspaceIteration", "RowSpace", "BlockKrylov", "AdaptiveQB", "Factored", "sketch",
           "subspace_iteration", "krylov_basis", "ritz_converged", "RSVD_STREAM", "DEFAULT_NITER", "ADAPTIVE_MAX_NITER"]
