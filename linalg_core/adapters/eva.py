"""EVA (Paischer et al. 2024, "One initialization to rule them all: fine-tuning via explained
variance adaptation"): LoRA's A is initialised with the top right singular vectors of each
layer's *inputs* (activations), B with zeros, and ranks are redistributed across layers by
explained variance.

Streaming and memory: activations arrive batch by batch; :class:`IncrementalSVD` keeps only the
top-k factors (k × d) and updates them with each batch (the incremental PCA of Ross et al. 2008,
as in scikit-learn's ``IncrementalPCA``): the stacked matrix
[diag(S)·Vh; X − x̄_b; √(n·b/(n+b))·(μ − x̄_b)] has the same centred Gram matrix as all rows
seen so far restricted to the kept subspace, and its SVD gives the new factors. No d × d
covariance is formed. The SVD of the stacked (k + b + 1) × d matrix is LAPACK's when its small
side is below 4k, else :func:`linalg_core.rsvd` (seeded, 4 iterations).

Convergence (the paper's τ): component i has converged when |cos| between its direction before
and after a batch is ≥ τ. Redistribution (ρ): every layer computes up to round(ρ·r) components;
the Σr components with the largest explained-variance ratios across all layers are kept, so a
layer ends with between 0 and ρ·r.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping

import torch

from linalg_core import _threads, _validate
from linalg_core.lowrank import rsvd


class IncrementalSVD:
    """Streaming top-k principal directions of row batches: the incremental SVD of Ross, Lim, Lin
    and Yang 2008 ("Incremental Learning for Robust Visual Tracking"; scikit-learn's
    ``IncrementalPCA``): each update is the SVD of the stacked rows [diag(S)·Vᵀ; the centred
    batch; the mean-correction row].

    Args:
        n_components: k.
        center: subtract the running mean (PCA, as EVA and peft); False: SVD of the raw rows.
        seed: rsvd seed for large batches.

    Attributes (after the first :meth:`partial_fit`):
        components: (k, d) orthonormal rows, deterministic signs.
        singular_values: (k,).
        explained_variance_ratio: (k,) S² over the total (centred) sum of squares.
        converged: (k,) bool, |cos(previous, current)| ≥ ``tau`` of the last :meth:`partial_fit`.
        n_samples: rows seen.

    Randomness:
        Only a large update's randomized SVD (:func:`linalg_core.rsvd` with ``seed``); small
        updates take a full SVD and use none.

    Example:
        >>> import torch, linalg_core as lc
        >>> ipca = lc.adapters.IncrementalSVD(4, seed=0)
        >>> for _ in range(3):
        ...     _ = ipca.partial_fit(torch.randn(100, 32))
        >>> ipca.components.shape, ipca.n_samples
        (torch.Size([4, 32]), 300)
    """

    def __init__(self, n_components: int, *, center: bool = True, seed=None):
        self.k = _validate.integer(n_components, "n_components", low=1)
        self.center = bool(center)
        self.seed = _validate.seed(seed)
        self.components = None
        self.singular_values = None
        self.explained_variance_ratio = None
        self.converged = torch.zeros(self.k, dtype=torch.bool)
        self.n_samples = 0
        self._mean = None
        self._ss = 0.0  # Σ‖x − μ‖² (centred) or Σ‖x‖², float64
        self._steps = 0

    def partial_fit(self, X, *, tau: float = 0.99) -> IncrementalSVD:
        """Fold a batch of rows X (b, d) (float; computed in float32, float64 for float64)."""
        X, _ = _validate.float_array(X, "X", ndim=2)
        _validate.check_finite(X, "X")
        b, d = X.shape
        if self.components is not None and d != self.components.shape[1]:
            raise ValueError(f"X has {d} features, earlier batches had {self.components.shape[1]}")
        if b == 0:
            return self
        # The update's work: the SVD of (~b + k) × d rows (full, or rsvd's ~10 products of k + 10
        # columns). A small update runs on one thread: each of its dozen elementwise ops and
        # factorizations is a parallel region, and on busy cores every region can wait a
        # scheduler time slice for a descheduled thread (docs/threads.md).
        p = b + self.k + 1
        work = p * d * (min(p, d) if min(p, d) <= 4 * self.k else 10 * (self.k + 10))
        with _threads.sized(work):
            return self._fold(X, tau)

    def _fold(self, X, tau: float) -> IncrementalSVD:
        b, d = X.shape
        X = X.to(torch.float64 if X.dtype == torch.float64 else torch.float32)
        X64 = X.to(torch.float64)
        batch_mean = X64.mean(0) if self.center else torch.zeros(d, dtype=torch.float64, device=X.device)
        batch_ss = float(((X64 - batch_mean) ** 2).sum())
        n = self.n_samples
        rows = [X - batch_mean.to(X.dtype)]
        if self.components is not None:
            rows.insert(0, self.singular_values[:, None] * self.components)
            if self.center:
                rows.append((math.sqrt(n * b / (n + b)) * (self._mean - batch_mean)).to(X.dtype)[None])
        if self._mean is None:
            self._mean, self._ss = batch_mean, batch_ss
        else:
            delta = batch_mean - self._mean
            self._ss += batch_ss + float(delta @ delta) * n * b / (n + b)
            self._mean = self._mean + delta * (b / (n + b))
        self.n_samples = n + b
        stacked = torch.cat(rows)
        k = min(self.k, *stacked.shape)
        if min(stacked.shape) <= 4 * k:
            _, S, Vh = torch.linalg.svd(stacked, full_matrices=False)
            S, Vh = S[:k], Vh[:k]
        else:
            _, S, Vh = rsvd(stacked, k, niter=4, seed=self.seed + self._steps)
        idx = Vh.abs().argmax(1)  # deterministic signs: largest entry of each direction positive
        Vh = Vh * torch.sign(Vh.gather(1, idx[:, None]))
        if self.components is not None and self.components.shape[0] == Vh.shape[0]:
            cos = (Vh * self.components).sum(1).abs()
            self.converged = (cos >= tau).cpu()
        else:
            self.converged = torch.zeros(self.k, dtype=torch.bool)
        self.components, self.singular_values = Vh, S
        total = self._ss if self._ss > 0 else 1.0
        self.explained_variance_ratio = (S.double() ** 2 / total).cpu()
        self._steps += 1
        return self


class EVA:
    """EVA's data-driven initialisation over many layers, fed activation batches (Paischer et al.
    2024, "One Initialization to Rule them All: Fine-tuning via Explained Variance Adaptation").

    Args:
        ranks: {layer name: r} (the budget is Σr).
        rho: each layer may end with up to round(ρ·r) components (ρ ≥ 1; 1 = no redistribution).
        tau: cosine threshold of convergence.
        whiten: divide each component by √(its singular value), as peft's ``whiten``.
        center: PCA of the inputs (True, as the paper and peft) or SVD of the raw inputs.
        seed: seed of the randomized SVDs.

    Use :meth:`update` with each layer's inputs (tokens × d; leading dimensions are flattened)
    until :attr:`done`, then :meth:`ranks` and :meth:`components`.

    Shape:
        update's X: (*, d_layer);  components()[layer]: (r_layer, d_layer)

    Randomness:
        Only the randomized SVDs of large stacked batches (normal stream 6 of seed + step);
        with batches of fewer than ~4k rows every step is an exact LAPACK SVD.

    Example:
        >>> import torch, linalg_core as lc
        >>> eva = lc.adapters.EVA({"q": 4, "v": 4}, rho=2, seed=0)
        >>> g = torch.Generator().manual_seed(0)
        >>> mix = {"q": torch.randn(32, 32, generator=g), "v": torch.randn(32, 32, generator=g) * 0.1}
        >>> for _ in range(4):
        ...     for name in ("q", "v"):
        ...         eva.update(name, torch.randn(256, 32, generator=g) @ mix[name])
        >>> sum(eva.ranks().values())
        8
    """

    def __init__(self, ranks: Mapping[str, int], *, rho: float = 2.0, tau: float = 0.99, whiten: bool = False,
                 center: bool = True, seed=None):
        if not isinstance(ranks, Mapping) or not ranks:
            raise ValueError("ranks must be a non-empty mapping {layer name: rank}")
        if isinstance(rho, bool) or not isinstance(rho, (int, float)) or rho < 1:
            raise ValueError(f"rho={rho!r} must be a number >= 1")
        if isinstance(tau, bool) or not isinstance(tau, (int, float)) or not 0 <= tau <= 1:
            raise ValueError(f"tau={tau!r} must be in [0, 1]")
        self.budget = {name: _validate.integer(r, f"ranks[{name!r}]", low=0) for name, r in ranks.items()}
        self.rho, self.tau, self.whiten = float(rho), float(tau), bool(whiten)
        seed = _validate.seed(seed)
        self.max_components = {name: max(1, round(r * self.rho)) for name, r in self.budget.items()}
        self.svds = {name: IncrementalSVD(self.max_components[name], center=center, seed=seed)
                     for name in self.budget}

    def update(self, name: str, X) -> None:
        """Fold a batch of layer ``name``'s inputs (*, d); a layer whose needed components have
        all converged ignores further batches.

        Args:
            name: the layer's name (one of those the EVA was built with).
            X: the layer's inputs, flattened to (tokens, d).

        Shape:
            X: (*, d)
        """
        if name not in self.svds:
            raise ValueError(f"unknown layer {name!r}; layers: {sorted(self.svds)[:5]}...")
        if self.layer_done(name):
            return
        X = X.reshape(-1, X.shape[-1]) if isinstance(X, torch.Tensor) else X
        self.svds[name].partial_fit(X, tau=self.tau)

    def layer_done(self, name: str) -> bool:
        """Whether the components layer ``name`` needs (its share of the redistributed budget
        once every layer has seen a batch) have all converged.

        Args:
            name: the layer's name.
        """
        svd = self.svds[name]
        if svd.components is None:
            return False
        need = self._distribution().get(name, 0) if all(s.components is not None for s in self.svds.values()) \
            else self.max_components[name]
        return bool(svd.converged[:need].all())

    @property
    def done(self) -> bool:
        """Every layer's assigned components have converged."""
        return all(self.layer_done(name) for name in self.svds)

    def _distribution(self) -> dict[str, int]:
        pooled = [(float(v), name) for name, svd in self.svds.items()
                  for v in svd.explained_variance_ratio[: self.max_components[name]]]
        pooled.sort(key=lambda t: -t[0])
        counts = {name: 0 for name in self.svds}
        for _, name in pooled[: sum(self.budget.values())]:
            counts[name] += 1
        return counts

    def ranks(self) -> dict[str, int]:
        """The redistributed ranks (Σ = the budget when every layer has enough components)."""
        missing = [n for n, s in self.svds.items() if s.components is None]
        if missing:
            raise RuntimeError(f"no inputs were seen for layers {missing[:5]}")
        return self._distribution()

    def components(self) -> dict[str, torch.Tensor]:
        """{layer: A (r_layer, d)}: LoRA's A for each layer at its redistributed rank; warns for a
        layer whose components have not converged (more batches would change them)."""
        out = {}
        for name, r in self.ranks().items():
            svd = self.svds[name]
            if not bool(svd.converged[:r].all()):
                warnings.warn(f"EVA: layer {name!r} has not converged (tau={self.tau}) after "
                              f"{svd.n_samples} rows; feed more batches for stable components", stacklevel=2)
            A = svd.components[:r]
            if self.whiten:
                A = A / svd.singular_values[:r].sqrt()[:, None]
            out[name] = A
        return out


__all__ = ["IncrementalSVD", "EVA"]
