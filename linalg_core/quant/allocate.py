"""Per-matrix quantization formats under a total storage budget (LQ-LoRA Section 3.2).

Choosing one configuration per matrix to minimise the summed error under a bit budget is a
multiple-choice knapsack. A configuration is a format, or with ``ranks=`` a (format, rank)
pair whose cost counts everything stored: the quantized part's tensors and the rank-r factors
L1 (m, r), L2 (r, n). Each matrix's candidates are first reduced to its Pareto front (a
configuration that costs at least as much as another and errs at least as much can never be in
an optimal plan); the rest is an integer program solved exactly by HiGHS through
``scipy.optimize.milp`` (the reference code needs a Gurobi licence).
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from linalg_core.quant.formats import Format, NormalFloat, parse


def default_candidates() -> list[Format]:
    """NF-k configurations spanning ~2.1 to ~8.6 bits per weight: b ∈ {2, 3, 4, 8},
    B0 ∈ {16, 32, 64, 128}, scales at 8 bits per 256 (LQ-LoRA's grid, its scale-of-scale
    and B1 options fixed at the values that dominate on LLM weights).

    Returns:
        16 :class:`~linalg_core.quant.NormalFloat` formats, the candidates of
        :func:`allocate_bits`.

    Example:
        >>> from linalg_core.quant import default_candidates
        >>> c = default_candidates()
        >>> len(c), str(c[0]), round(min(f.nominal_bits() for f in c), 3)
        (16, 'nf2-b16-s8x256-fp32', 2.063)
    """
    return [NormalFloat(bits=b, block_size=B0, scale_bits=8, scale_block_size=256)
            for b in (2, 3, 4, 8) for B0 in (16, 32, 64, 128)]


@dataclass(frozen=True)
class AllocationPlan:
    """The chosen format per matrix and what it costs.

    Attributes:
        formats: {name: Format}.
        bits_per_param: storage of the quantized parts over all weights: each format's nominal
            formula without ``ranks=`` (then never above the budget), the exact stored tensors
            (:func:`stored_bits`) with it.
        budget: the requested bits per parameter (on ``bits_per_param`` without ``ranks=``, on
            ``bits_total`` with it).
        predicted_error: Σ of the chosen configurations' squared errors.
        errors: {name: squared error of the chosen configuration}.
        candidates_kept: configurations left after the dominance pruning (all matrices).
        solve_seconds: time of the MILP.
        ranks: {name: rank of the low-rank part} (``rank`` for every matrix without ``ranks=``).
        bits_total: ``bits_per_param`` plus the factors L1, L2 at ``factor_bits`` per entry.

    The allocation is LQ-LoRA's multiple-choice knapsack (Guo et al. 2024), solved as a MILP by
    HiGHS (``scipy.optimize.milp``).

    Example:
        >>> import torch
        >>> from linalg_core.quant import allocate_bits
        >>> g = torch.Generator().manual_seed(0)
        >>> Ws = {"a": torch.randn(32, 64, generator=g), "b": torch.randn(32, 64, generator=g) * 5}
        >>> plan = allocate_bits(Ws, 3.5, candidates=["nf2", "nf3", "nf4"])
        >>> plan.bits_per_param <= plan.budget, {k: str(f) for k, f in plan.formats.items()}
        (True, {'a': 'nf2-b64-s8x256-fp32', 'b': 'nf4-b64-s8x256-fp32'})
    """

    formats: dict
    bits_per_param: float
    budget: float
    predicted_error: float
    errors: dict
    candidates_kept: int
    solve_seconds: float
    ranks: dict = field(default_factory=dict)
    bits_total: float = math.nan


def stored_bits(fmt, shape) -> int:
    """Bits a format stores for a tensor of ``shape``: every tensor of its layout (codes,
    scales, scales of scales, offsets, padding), what :attr:`QuantizedTensor.nbytes` counts.

    Example:
        >>> from linalg_core.quant.allocate import stored_bits
        >>> stored_bits("q4_0", (64, 128)) / (64 * 128)
        4.5
    """
    fmt = parse(fmt)
    n = math.prod(tuple(shape))
    return 8 * sum(math.prod(s) * torch.empty((), dtype=dt).element_size() for s, dt in fmt.layout(n).values())


def _ranks(ranks) -> list[int]:
    if isinstance(ranks, (str, bytes)) or not hasattr(ranks, "__iter__"):
        raise TypeError(f"ranks must be a sequence of integers >= 0, got {ranks!r}")
    out = []
    for r in ranks:
        if isinstance(r, bool) or not isinstance(r, (int, np.integer)) or r < 0:
            raise ValueError(f"ranks must be a sequence of integers >= 0, got {list(ranks)!r}")
        if int(r) in out:
            raise ValueError(f"ranks has {int(r)} twice: {list(ranks)!r}")
        out.append(int(r))
    if not out:
        raise ValueError("ranks is empty")
    return out


def pair_errors(W, candidates, ranks, *, iters: int = 1, seed=0, metric=None) -> np.ndarray:
    """(ranks × candidates) squared errors ‖W − Q − L1L2‖² of one matrix: plain quantization at
    rank 0, :func:`~linalg_core.quant.lq_decompose` with ``iters`` alternations otherwise; +inf
    where a rank is not below min(m, n) (the pair cannot be used).

    ``metric``: optional callable E (m, n) float32 → float, the squared error of the difference
    E = Q + L1L2 − W in place of ‖E‖²_F (e.g. a calibration's output error, see
    :class:`~linalg_core.quant.compress.Calibration`); the decompositions are the same.

    Shape:
        W: (m, n);  result: (len(ranks), len(candidates))
    """
    W32 = torch.as_tensor(W).to(torch.float32)
    cands = [parse(c) for c in candidates]
    if metric is None:
        def metric(E):
            return float(E.square().sum())
    E = np.full((len(ranks), len(cands)), np.inf)
    for k, r in enumerate(ranks):
        if r < min(W32.shape):
            E[k] = [metric(A.sub_(W32)) for A in _approximations(W32, r, cands, iters, seed)]
    return E


def _approximations(W32, r, cands, iters, seed):
    """Q + L1·L2 (m, n) of each candidate format at rank r, one at a time."""
    from linalg_core.quant.lq import lq_decompose
    from linalg_core.quant.tensor import quantize

    if r == 0:
        for fmt in cands:
            yield quantize(W32, fmt).dequantize(torch.float32)
    elif iters == 1:
        # one alternation from Q = 0: L1·L2 = SVD_r(W) whatever the format, so one SVD serves every
        # candidate; the same operations as lq_decompose(W, r, fmt, iters=1), so the same errors
        lq = lq_decompose(W32, r, cands[0], iters=1, seed=seed)
        yield lq.reconstruct()
        residual = torch.addmm(W32, lq.L1, lq.L2, alpha=-1)
        for fmt in cands[1:]:
            yield torch.addmm(quantize(residual, fmt).dequantize(torch.float32), lq.L1, lq.L2)
    else:
        for fmt in cands:
            yield lq_decompose(W32, r, fmt, iters=iters, seed=seed).reconstruct()


def _pareto(cost: np.ndarray, err: np.ndarray) -> np.ndarray:
    """Indices of the non-dominated (cost, error) pairs."""
    order = np.lexsort((err, cost))
    keep, best = [], math.inf
    for j in order:
        if math.isfinite(cost[j]) and err[j] < best:
            keep.append(j)
            best = err[j]
    return np.array(keep, dtype=int)


def candidate_errors(matrices: dict, candidates, *, rank: int = 0, iters: int = 2, seed=0, progress=None) -> np.ndarray:
    """(matrices × candidates) squared Frobenius errors ‖W − Q − L1L2‖² of each configuration
    (:func:`pair_errors` at the one rank: :func:`~linalg_core.quant.lq_decompose` with ``iters``
    alternations; plain quantization when ``rank=0``)."""
    E = np.empty((len(matrices), len(candidates)))
    bar = _bar(progress, len(matrices) * len(candidates), "errors")
    for i, W in enumerate(matrices.values()):
        if rank >= min(W.shape):
            raise ValueError(f"rank={rank} must be below min(m, n)={min(W.shape)} for W of shape {tuple(W.shape)}")
        E[i] = pair_errors(W, candidates, [rank], iters=iters, seed=seed)[0]
        bar.update(len(candidates))
    bar.close()
    return E


def _bar(progress, total, desc):
    if progress is False or (progress is None and total < 50):
        return _NoBar()
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return _NoBar()
    return tqdm(total=total, desc=desc, leave=False)


class _NoBar:
    def update(self, n):
        pass

    def close(self):
        pass


def allocate_bits(matrices, budget_bits: float, *, candidates=None, rank: int = 0, errors=None, iters: int = 2,
                  seed=0, progress=None, ranks=None, factor_bits: int = 16) -> AllocationPlan:
    """One quantization format per matrix minimising the total squared error under an average
    storage budget in bits per weight: LQ-LoRA's mixed-configuration allocation (Guo, Greengard,
    Xing and Kim 2024), a multiple-choice knapsack solved exactly as a MILP (HiGHS).

    Without ``ranks``: the budget is on the quantized parts' nominal bits only (a rank-r
    low-rank part adds ``factor_bits``·r·(m + n) bits per matrix on top, the same for every plan;
    ``bits_total`` reports it). With ``ranks``: one (format, rank) pair per matrix and the budget
    is on everything stored (:func:`stored_bits` of the format plus ``factor_bits``·r·(m + n));
    with 0 among the ranks the plan is never worse than any single (format, rank) choice applied
    to every matrix that fits the budget (the knapsack is solved exactly).

    Args:
        matrices: {name: (m, n) weight} (or a list, named by position). Only shapes are needed
            when ``errors`` is given.
        budget_bits: average stored bits per weight, at least the cheapest plan's.
        candidates: formats (or names) to choose from; default :func:`default_candidates`.
        rank: low-rank part of each matrix when measuring the errors (LQ); 0: quantization only.
        errors: optional precomputed squared errors: (matrices × candidates), or with ``ranks``
            (matrices × ranks × candidates) (entries of ranks not below min(m, n) are ignored).
        iters: LQ alternations per error measurement.
        ranks: ranks (integers >= 0, 0: no low-rank part) to choose from per matrix; a rank
            not below a matrix's min(m, n) is no candidate for that matrix.
        factor_bits: bits per stored entry of L1 and L2 (16: bfloat16).

    Returns:
        :class:`AllocationPlan` (``bits_per_param`` without ``ranks``, ``bits_total`` with it,
        never above ``budget_bits``).

    Shape:
        matrices: each (m, n);  errors: (len(matrices), len(candidates)) or
        (len(matrices), len(ranks), len(candidates))

    Randomness:
        Only the randomized SVDs of the LQ measurements (``seed``, the same for every matrix);
        the MILP is deterministic.

    Example:
        >>> import torch
        >>> from linalg_core.quant import allocate_bits
        >>> g = torch.Generator().manual_seed(0)
        >>> Ws = {"a": torch.randn(128, 256, generator=g), "b": torch.randn(128, 256, generator=g) * 5}
        >>> plan = allocate_bits(Ws, 3.5, candidates=["nf2", "nf3", "nf4"])
        >>> plan.bits_per_param <= 3.5, str(plan.formats["b"])
        (True, 'nf4-b64-s8x256-fp32')
    """
    if isinstance(matrices, (list, tuple)):
        matrices = {str(i): W for i, W in enumerate(matrices)}
    if not isinstance(matrices, dict) or not matrices:
        raise ValueError("matrices must be a non-empty dict {name: weight} or list of weights")
    cands = [parse(c) for c in (default_candidates() if candidates is None else candidates)]
    if not cands:
        raise ValueError("candidates is empty")
    if isinstance(budget_bits, bool) or not isinstance(budget_bits, (int, float)) or not math.isfinite(budget_bits):
        raise ValueError(f"budget_bits={budget_bits!r} must be a finite number")
    names = list(matrices)
    shapes = [tuple(getattr(W, "shape", ())) for W in matrices.values()]
    sizes = np.array([math.prod(s) for s in shapes], dtype=float)
    if (sizes <= 0).any():
        raise ValueError("every matrix needs a non-empty shape")
    if ranks is not None and any(len(s) != 2 for s in shapes):
        raise ValueError(f"with ranks=, every matrix must be 2-D; got shapes {sorted(set(shapes))}")
    for W in matrices.values():
        for fmt in cands:
            fmt.check_shape(tuple(W.shape))
    if isinstance(factor_bits, bool) or not isinstance(factor_bits, int) or factor_bits < 1:
        raise ValueError(f"factor_bits={factor_bits!r} must be a positive integer")
    total = sizes.sum()
    if ranks is None:
        if errors is None:
            errors = candidate_errors(matrices, cands, rank=rank, iters=iters, seed=seed, progress=progress)
        errors = np.asarray(errors, dtype=float)
        if errors.shape != (len(names), len(cands)):
            raise ValueError(f"errors has shape {errors.shape}, expected {(len(names), len(cands))}")
        if not np.isfinite(errors).all():
            raise ValueError("errors has non-finite entries")
        bits = np.array([c.nominal_bits() for c in cands])
        cost = sizes[:, None] * bits[None, :]
        pairs = [(rank, c) for c in cands]
        factors = factor_bits * rank * sum(s[0] + s[-1] for s in shapes) / total if rank else 0.0
        what = "bits per weight of the quantized parts"
    else:
        rks = _ranks(ranks)
        R, C = len(rks), len(cands)
        if errors is None:
            bar = _bar(progress, len(names), "errors")
            errors = []
            for W in matrices.values():
                errors.append(pair_errors(W, cands, rks, iters=iters, seed=seed))
                bar.update(1)
            bar.close()
        errors = np.asarray(errors, dtype=float)
        if errors.shape != (len(names), R, C):
            raise ValueError(f"errors has shape {errors.shape}, expected {(len(names), R, C)} (matrices × ranks × "
                             "candidates)")
        usable = np.array([[r < min(s) for r in rks] for s in shapes])[:, :, None].repeat(C, 2)
        if not np.isfinite(errors[usable]).all():
            raise ValueError("errors has non-finite entries")
        if not usable.any(axis=(1, 2)).all():
            i = int(np.flatnonzero(~usable.any(axis=(1, 2)))[0])
            raise ValueError(f"no rank in ranks={rks} is below min(shape)={min(shapes[i])} of {names[i]!r}")
        qbits = np.array([[stored_bits(c, s) for c in cands] for s in shapes], dtype=float)
        fbits = np.array([[factor_bits * r * (s[0] + s[1]) for r in rks] for s in shapes], dtype=float)
        cost = (fbits[:, :, None] + qbits[:, None, :]).reshape(len(names), R * C)
        errors = np.where(usable, errors, np.inf).reshape(len(names), R * C)
        cost = np.where(usable.reshape(len(names), R * C), cost, np.inf)
        pairs = [(r, c) for r in rks for c in cands]
        what = "total bits per weight"
    cheapest = cost.min(1).sum() / total
    if budget_bits < cheapest - 1e-12:
        raise ValueError(f"budget_bits={budget_bits} is below the cheapest plan ({cheapest:.4f} {what} "
                         f"with these candidates)")

    keep = [_pareto(cost[i], errors[i]) for i in range(len(names))]
    t0 = time.perf_counter()
    capacity = limit = budget_bits * total
    for _ in range(4):  # HiGHS's feasibility tolerance may admit a hair over: tighten by the excess
        choice = _solve(keep, cost, errors, capacity)
        over = sum(cost[i, j] for i, j in enumerate(choice)) - limit
        if over <= 0:
            break
        capacity -= over
    else:
        raise RuntimeError("bit allocation: the MILP solution stays above the budget")
    dt = time.perf_counter() - t0
    chosen = {names[i]: pairs[j][1] for i, j in enumerate(choice)}
    chosen_ranks = {names[i]: pairs[j][0] for i, j in enumerate(choice)}
    used = sum(cost[i, j] for i, j in enumerate(choice)) / total
    errs = {names[i]: float(errors[i, j]) for i, j in enumerate(choice)}
    if ranks is None:
        quantized, used_total = used, used + factors
    else:
        quantized = sum(qbits[i, j % len(cands)] for i, j in enumerate(choice)) / total
        used_total = used
    return AllocationPlan(chosen, float(quantized), float(budget_bits), float(sum(errs.values())), errs,
                          int(sum(len(k) for k in keep)), dt, chosen_ranks, float(used_total))


@contextlib.contextmanager
def _quiet_stdout():
    """HiGHS prints progress lines from C++ straight to file descriptor 1; silence them."""
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 1)
            yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)


def _solve(keep, cost, errors, capacity) -> list[int]:
    """Multiple-choice knapsack over the kept candidates, exactly, with HiGHS."""
    from scipy.optimize import Bounds, LinearConstraint, milp
    from scipy.sparse import coo_matrix

    cols = [(i, j) for i, k in enumerate(keep) for j in k]
    nvar = len(cols)
    c = np.array([errors[i, j] for i, j in cols])
    w = np.array([cost[i, j] for i, j in cols])
    scale = max(float(np.abs(c).max()), 1e-300)
    rows = np.array([i for i, _ in cols])
    one_each = coo_matrix((np.ones(nvar), (rows, np.arange(nvar))), shape=(len(keep), nvar))
    cons = [LinearConstraint(one_each, 1, 1), LinearConstraint(w[None, :] / capacity, -np.inf, 1)]
    with _quiet_stdout():
        res = milp(c / scale, constraints=cons, integrality=np.ones(nvar), bounds=Bounds(0, 1),
                   options={"mip_rel_gap": 0})
    if res.x is None:
        raise RuntimeError(f"bit allocation MILP failed: {res.message}")
    picked = [j for (i, j), on in zip(cols, res.x > 0.5) if on]
    if len(picked) != len(keep):
        raise RuntimeError("bit allocation MILP returned an infeasible choice")
    return picked


__all__ = ["allocate_bits", "AllocationPlan", "default_candidates", "candidate_errors", "pair_errors",
           "stored_bits"]
