"""Mergeable streaming sketches: Y = (Σ_j A_j) Ω or Y = (Σ_j X_jᵀ X_j) Ω accumulated batch by
batch on any number of workers and summed with :meth:`StreamingSketch.merge`; Ω (d × k) is
regenerated from (seed, stream) wherever it is needed, so only the k-column Y travels."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from linalg_core import _validate
from linalg_core import random as lcrandom

STREAM = 2**32 + 77  # the stream of Ω (user range)


@dataclass
class StreamingSketch:
    """Y = M Ω for M = Σ_j A_j (``kind="sum"``, each A_j (m, d)) or M = Σ_j X_jᵀ X_j
    (``kind="covariance"``, each X_j (rows, d): activation statistics never form a d × d matrix).
    The sketch is linear in M, so sketches of disjoint parts merge by addition; ``nystrom()`` is
    the stable PSD Nyström of Tropp, Yurtsever, Udell and Cevher 2017 ("Fixed-rank approximation
    of a positive-semidefinite matrix from streaming data").

    Randomness:
        Ω is a Gaussian stream of ``seed``: sketches built with the same (d, k, seed) on different
        workers share Ω and merge.

    Example:
        >>> import torch
        >>> from linalg_core.distributed import StreamingSketch
        >>> X = torch.randn(300, 64, dtype=torch.float64)
        >>> a, b = StreamingSketch(64, 8, seed=0), StreamingSketch(64, 8, seed=0)
        >>> _ = a.update(X[:100]), b.update(X[100:])
        >>> whole = StreamingSketch(64, 8, seed=0).update(X)
        >>> bool(torch.allclose(a.merge(b).Y, whole.Y))
        True
    """

    d: int
    k: int
    seed: int = 0
    kind: str = "covariance"
    Y: torch.Tensor | None = None
    batches: int = 0
    _omega: torch.Tensor | None = field(default=None, repr=False)

    def __post_init__(self):
        self.d = _validate.integer(self.d, "d", low=1)
        self.k = _validate.integer(self.k, "k", low=1, high=self.d)
        self.seed = _validate.seed(self.seed)
        if self.kind not in ("covariance", "sum"):
            raise ValueError(f"kind={self.kind!r} must be 'covariance' or 'sum'")

    @property
    def omega(self) -> torch.Tensor:
        """Ω (d, k), Gaussian, from (seed, STREAM)."""
        if self._omega is None:
            self._omega = lcrandom.normal((self.d, self.k), seed=self.seed, stream=STREAM, dtype=torch.float64)
        return self._omega

    def update(self, batch) -> "StreamingSketch":
        """Add one batch: X_jᵀ (X_j Ω) for covariance, A_j Ω for sum."""
        t, _ = _validate.float_array(batch, "batch", ndim=2)
        _validate.check_finite(t, "batch")
        if t.shape[1] != self.d:
            raise ValueError(f"batch has {t.shape[1]} columns, the sketch has d={self.d}")
        t = t.to(torch.float64)
        part = t.T @ (t @ self.omega) if self.kind == "covariance" else t @ self.omega
        if self.Y is not None and part.shape != self.Y.shape:
            raise ValueError(f"batch gives a ({part.shape[0]}, {self.k}) term, the sketch holds {tuple(self.Y.shape)}")
        self.Y = part if self.Y is None else self.Y + part
        self.batches += 1
        return self

    def merge(self, other: "StreamingSketch") -> "StreamingSketch":
        """The sketch of both streams (same d, k, seed, kind); neither input is modified."""
        if (self.d, self.k, self.seed, self.kind) != (other.d, other.k, other.seed, other.kind):
            raise ValueError("only sketches with the same d, k, seed and kind merge")
        Ys = [y for y in (self.Y, other.Y) if y is not None]
        out = StreamingSketch(self.d, self.k, self.seed, self.kind, None, self.batches + other.batches)
        out.Y = sum(Ys[1:], Ys[0].clone()) if Ys else None
        return out

    def nystrom(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(U (d, k), λ (k,)) with XᵀX ≈ U diag(λ) Uᵀ: the stable fixed-rank PSD Nyström
        approximation of Tropp, Yurtsever, Udell and Cevher 2017 (Algorithm 3: shift ν, Cholesky
        of Ωᵀ(Y + νΩ), SVD); covariance sketches only."""
        if self.kind != "covariance" or self.Y is None:
            raise ValueError("nystrom() needs a covariance sketch with at least one batch")
        Om, Y = self.omega, self.Y
        nu = torch.finfo(torch.float64).eps * float(torch.linalg.matrix_norm(Y)) * self.d
        Yn = Y + nu * Om
        C = torch.linalg.cholesky((Om.T @ Yn + Yn.T @ Om) / 2)  # symmetrised against rounding
        B = torch.linalg.solve_triangular(C, Yn.T, upper=False).T
        U, s, _ = torch.linalg.svd(B, full_matrices=False)
        return U, (s**2 - nu).clamp(min=0)
