"""Where to spend a rank budget across a model's matrices, and the nuclear norm.

* :func:`allocate_ranks`: non-uniform ranks from the singular-value spectra. ``"welore"``
  follows WeLore (Jaiswal et al. 2024, "From GaLore to WeLore"): the spectra of LLM weights are
  heavy-tailed and differ per matrix, so one global threshold on the normalised singular values
  σ_i/σ_1 keeps many components where the spectrum is steep and few where it is flat; the
  threshold is found by bisection so the factors fill the parameter budget. ``"energy"``
  maximises the total captured energy Σ σ_i² per parameter instead: a knapsack whose gains
  σ_i²/(m + n) decrease along each spectrum, so the greedy choice is optimal up to one item.
* :func:`nuclear_norm`: exact (Σσ_i), or the L1,2 approximation of the Matrix Nuclear-Norm LLM
  metric (Li et al. 2024), the sum of the min(m, n) largest column ℓ2 norms: O(mn) instead of
  an SVD's O(mn·min(m, n)). It is exact when the columns are orthogonal and a heuristic
  otherwise (no inequality holds in general); the tests report its error on real weights.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass

import torch

from linalg_core import _validate
from linalg_core._arrays import as_tensor


@dataclass(frozen=True)
class RankPlan:
    """Ranks chosen by :func:`allocate_ranks`.

    Attributes:
        ranks: one rank per matrix, in input order.
        params: Σ r_j (m_j + n_j), the parameters of the rank-r_j factors (≤ the budget).
        relative_error: per matrix, ‖W − W_r‖_F / ‖W‖_F of its truncated SVD.

    Example:
        >>> import torch, linalg_core as lc
        >>> g = torch.Generator().manual_seed(0)
        >>> Ws = [torch.randn(32, 32, generator=g), torch.randn(32, 4, generator=g) @ torch.randn(4, 32, generator=g)]
        >>> plan = lc.adapters.allocate_ranks(Ws, 0.25)
        >>> len(plan.ranks), plan.params <= 0.25 * 2 * 32 * 32
        (2, True)
    """

    ranks: list[int]
    params: int
    relative_error: list[float]


def _spectra(matrices):
    out = []
    for i, W in enumerate(matrices):
        t, _ = as_tensor(W, f"matrices[{i}]")
        t, _ = _validate.float_array(t, f"matrices[{i}]", ndim=2)
        _validate.check_finite(t, f"matrices[{i}]")
        out.append((tuple(t.shape), torch.linalg.svdvals(t.to(torch.float64)).cpu()))
    return out


def allocate_ranks(matrices, budget, *, method: str = "welore", min_rank: int = 0, max_rank: int | None = None,
                   spectra=None) -> RankPlan:
    """Per-matrix ranks under a total parameter budget (``"welore"``: Jaiswal et al. 2024, "From
    GaLore to WeLore: How Low-Rank Weights Non-uniformly Emerge from Low-Rank Gradients").

    Args:
        matrices: sequence of (m_j, n_j) weights (only their singular values are used).
        budget: parameters of all factors together, Σ r_j (m_j + n_j): an int, or a float in
            (0, 1] as a fraction of the matrices' own parameter count Σ m_j n_j.
        method: ``"welore"`` (global threshold on σ_i/σ_1) or ``"energy"`` (most Σσ_i² per
            parameter).
        min_rank, max_rank: bounds per matrix (the minimum is granted first).
        spectra: the singular values per matrix when already known (skips the SVDs).

    Returns:
        :class:`RankPlan`.

    Cost: one ``svdvals`` per matrix (float64), unless ``spectra`` is given.

    Example:
        >>> import torch, linalg_core as lc
        >>> Ws = [torch.randn(64, 64) @ torch.diag(torch.logspace(0, -3, 64)), torch.randn(64, 64)]
        >>> plan = lc.adapters.allocate_ranks(Ws, 0.25, method="energy")
        >>> plan.params <= 0.25 * 2 * 64 * 64, plan.ranks[0] < plan.ranks[1]
        (True, True)
    """
    _validate.choice(method, "method", ("welore", "energy"))
    if spectra is None:
        specs = _spectra(matrices)
    else:
        specs = [(tuple(W.shape), torch.as_tensor(s, dtype=torch.float64).sort(descending=True).values)
                 for W, s in zip(matrices, spectra, strict=True)]
    if not specs:
        raise ValueError("matrices is empty")
    total = sum(m * n for (m, n), _ in specs)
    if isinstance(budget, bool) or not isinstance(budget, (int, float)) or budget <= 0:
        raise ValueError(f"budget={budget!r} must be a positive int (parameters) or a fraction in (0, 1]")
    if isinstance(budget, float):
        if budget > 1:
            raise ValueError(f"budget={budget!r}: a float budget is a fraction of the parameters, in (0, 1]")
        budget = int(budget * total)
    min_rank = _validate.integer(min_rank, "min_rank", low=0)
    cap = [min(m, n) if max_rank is None else min(m, n, _validate.integer(max_rank, "max_rank", low=0))
           for (m, n), _ in specs]
    ranks = [min(min_rank, c) for c in cap]
    used = sum(r * (m + n) for r, ((m, n), _) in zip(ranks, specs))
    if used > budget:
        raise ValueError(f"budget={budget} is below the {used} parameters that min_rank={min_rank} needs")
    if method == "energy":
        heap = [(-float(s[r]) ** 2 / (m + n), j) for j, (((m, n), s), r, c) in enumerate(zip(specs, ranks, cap))
                if r < c]
        heapq.heapify(heap)
        while heap:
            _, j = heapq.heappop(heap)
            (m, n), s = specs[j]
            if used + m + n > budget:
                continue  # others may still fit
            ranks[j] += 1
            used += m + n
            if ranks[j] < cap[j]:
                heapq.heappush(heap, (-float(s[ranks[j]]) ** 2 / (m + n), j))
    else:
        def fill(tau):
            rs = [max(r0, min(c, int((s / s[0] >= tau).sum()) if s[0] > 0 else 0))
                  for ((_, s), r0, c) in zip(specs, ranks, cap)]
            return rs, sum(r * (m + n) for r, ((m, n), _) in zip(rs, specs))

        lo, hi = 0.0, 1.0 + 1e-12  # fill(hi) fits (only min ranks); find the smallest τ that fits
        if fill(lo)[1] <= budget:
            hi = lo
        for _ in range(60):
            if hi - lo < 1e-15:
                break
            mid = (lo + hi) / 2
            if fill(mid)[1] <= budget:
                hi = mid
            else:
                lo = mid
        ranks, used = fill(hi)
    errors = []
    for ((_, s), r) in zip(specs, ranks):
        tot = float((s**2).sum())
        errors.append(float((s[r:] ** 2).sum() / tot) ** 0.5 if tot > 0 else 0.0)
    return RankPlan(ranks, int(used), errors)


def nuclear_norm(X, *, approx: str = "exact"):
    """‖X‖_* = Σσ_i of the last two dimensions.

    Args:
        X: (*, m, n) float array.
        approx: ``"exact"`` (singular values in float64) or ``"l12"``: the sum of the
            min(m, n) largest column ℓ2 norms (the Matrix Nuclear-Norm metric's approximation;
            exact for orthogonal columns, a heuristic otherwise).

    Returns:
        float64 tensor of shape (*), or a Python float for a single matrix.

    Shape:
        X: (*, m, n);  out: (*) (a float for a single matrix)

    Example:
        >>> import torch, linalg_core as lc
        >>> lc.adapters.nuclear_norm(torch.eye(3) * 2)
        6.0
    """
    _validate.choice(approx, "approx", ("exact", "l12"))
    t, _ = as_tensor(X, "X")
    t, _ = _validate.float_array(t, "X", min_ndim=2)
    _validate.check_finite(t, "X")
    t = t.to(torch.float64)
    if approx == "exact":
        out = torch.linalg.svdvals(t).sum(-1)
    else:
        norms = torch.linalg.vector_norm(t, dim=-2)
        out = norms.topk(min(t.shape[-2:]), dim=-1).values.sum(-1)
    return float(out) if out.dim() == 0 else out


__all__ = ["RankPlan", "allocate_ranks", "nuclear_norm"]
