"""rsvd of every matrix of a list (a whole model's weights), equal shapes batched."""

from __future__ import annotations

import math

import torch

from linalg_core import _validate
from linalg_core._arrays import as_tensor
from linalg_core._scratch import buffer
from linalg_core.lowrank.operators import reuse_buffers
from linalg_core.lowrank.progress import ProgressLine
from linalg_core.lowrank.rsvd import rsvd
from linalg_core.lowrank.svd import SVD


def rsvd_many(matrices, rank: int, *, progress: bool | None = None, **options) -> list[SVD]:
    """:func:`rsvd` of every matrix of a list (a whole model's weights), equal shapes and
    dtypes grouped into one batched call each (per matrix: Algorithm 4.4 of Halko, Martinsson and
    Tropp 2011, as :func:`rsvd`).

    Args:
        matrices: sequence of (m_i, n_i) arrays.
        rank: as in :func:`rsvd` (clipped to min(m_i, n_i) per matrix).
        progress: print a progress line per group to stderr (default: when there are more than
            8 groups and stderr is a terminal).
        options: passed to :func:`rsvd` (``seed`` included: every matrix uses the same seed, so
            the result equals ``[rsvd(W, rank, **options) for W in matrices]``; stage objects
            such as ``finder=`` too).

    Returns:
        list of :class:`SVD`, in the order of ``matrices``.

    Shape:
        matrices[i]: (m_i, n_i);  result[i].U: (m_i, r_i);  .S: (r_i,);  .Vh: (r_i, n_i)

    Example:
        >>> import torch, linalg_core as lc
        >>> Ws = [torch.randn(64, 32), torch.randn(64, 32), torch.randn(16, 48)]
        >>> [s.S.shape[0] for s in lc.rsvd_many(Ws, 8, seed=0)]
        [8, 8, 8]
    """
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
    line = ProgressLine("rsvd_many", progress, len(groups))
    results: list[SVD | None] = [None] * len(tensors)
    done_matrices = 0
    with reuse_buffers():
        # one buffer for every group's stack, largest group first: its pages are faulted in once
        for g, ((shape, dtype, device), idx) in enumerate(sorted(groups.items(), key=_stack_bytes, reverse=True)):
            stack = torch.stack([tensors[i][0] for i in idx], out=buffer("rsvd_many", (len(idx), *shape), dtype, device))
            out = rsvd(stack, min(rank, *shape), **options)
            for j, i in enumerate(idx):
                results[i] = SVD(*tensors[i][1].out((out.U[j], out.S[j], out.Vh[j])), seed=out.seed)
            done_matrices += len(idx)
            line.update(f"{g + 1}/{len(groups)} shape groups, {done_matrices}/{len(tensors)} matrices")
    line.close()
    return results


def _stack_bytes(group) -> int:
    (shape, dtype, _), idx = group
    return len(idx) * math.prod(shape) * dtype.itemsize


__all__ = ["rsvd_many"]
