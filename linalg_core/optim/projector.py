"""The low-rank gradient projector of GaLore (Zhao et al. 2024, "GaLore: Memory-Efficient LLM
Training by Gradient Low-Rank Projection", Algorithm 2), with a warm-started basis update.

GaLore keeps r singular vectors of each weight's gradient G (m × n) on one side and moves the
optimizer's moments into that r-dimensional space: R = GPᵀ (right side, P = Vh[:r], r × n) or
R = QᵀG (left side, Q = U[:, :r], m × r); the update goes back as scale·RP or scale·QR. The basis
is recomputed every T steps; the reference (``galore-torch``) does it with a full
``torch.linalg.svd`` of G, O(mn·min(m, n)), which stalls training on large layers.

Consecutive gradients change their dominant subspace slowly, so :class:`LowRankProjector`
recomputes the basis by randomized subspace iteration *started from the previous basis*
(Halko, Martinsson and Tropp 2011, Algorithm 4.4 with the start block [Q_prev, Ω] instead of a
fresh Gaussian block; Rayleigh–Ritz extraction of the top r vectors from the k = r + p columns,
as in their §5.1), stopping when two consecutive Ritz subspaces agree: one power pass costs two
GEMMs with G (B = QᵀA, Y = ABᵀ), against the O(mn·min(m, n)) of the full SVD.
"""

from __future__ import annotations

import math

import torch

from linalg_core import _validate
from linalg_core.lowrank.orthonormalize import CholQR2
from linalg_core.lowrank.rsvd import rsvd
from linalg_core.lowrank.small_svd import svd_of_wide
from linalg_core.random import normal

# Stream of the Gaussian columns added to the warm start (block u at offset u·dim·p).
OPTIM_STREAM = 24
PROJ_TYPES = ("std", "reverse_std", "right", "left", "full")
METHODS = ("auto", "svd")
DEFAULT_TOL = 1e-2
DEFAULT_MAX_PASSES = 4
# Power iterations of the first basis (rsvd, oversampled): the captured energy settles after
# two; the warm updates refine the subspace from there.
FIRST_NITER = 2


def _side(proj_type: str, m: int, n: int) -> str:
    """galore-torch's rule: ``std`` keeps the basis on the shorter side (right when m ≥ n),
    ``reverse_std`` on the longer one."""
    if proj_type == "std":
        return "right" if m >= n else "left"
    if proj_type == "reverse_std":
        return "left" if m >= n else "right"
    return proj_type


def subspace_sines(Q1: torch.Tensor, Q2: torch.Tensor) -> torch.Tensor:
    """Sines of the principal angles between range(Q1) and range(Q2), largest first.

    Args:
        Q1, Q2: orthonormal bases with the same number of rows.

    Shape:
        Q1: (d, r1);  Q2: (d, r2);  out: (min(r1, r2),)

    Example:
        >>> import torch
        >>> Q = torch.eye(4, dtype=torch.float64)
        >>> subspace_sines(Q[:, :2], Q[:, 1:3]).tolist()
        [1.0, 0.0]
    """
    if Q1.dim() != 2 or Q2.dim() != 2 or Q1.shape[0] != Q2.shape[0]:
        raise ValueError(f"Q1 and Q2 must be 2-D with the same number of rows, got {tuple(Q1.shape)} and "
                         f"{tuple(Q2.shape)}")
    dt = torch.promote_types(torch.promote_types(Q1.dtype, Q2.dtype), torch.float32)
    c = torch.linalg.svdvals(Q1.to(dt).mT @ Q2.to(dt)).clamp(0, 1)
    return (1 - c.flip(-1) ** 2).clamp_min(0).sqrt()


def _rms_sine(Q1: torch.Tensor, Q2: torch.Tensor) -> float:
    """‖sin Θ(Q1, Q2)‖_F / √r = ‖Q1Q1ᵀ − Q2Q2ᵀ‖_F / √(2r) for orthonormal d × r bases, from the
    r × r product only."""
    r = Q1.shape[1]
    c2 = (Q1.mT @ Q2).square().sum().item()
    return math.sqrt(max(0.0, r - c2) / r)


class LowRankProjector:
    """GaLore's gradient projector (galore-torch's ``GaLoreProjector``) with a warm-started
    basis update.

    ``project(G, step)`` recomputes the basis when ``step % update_gap == 0`` (or when there is
    none) and returns the low-rank gradient; ``project_back(R)`` maps a low-rank update back,
    times ``scale``. Sides follow galore-torch: ``proj_type="std"`` keeps the basis on the
    shorter side (right, P = Vh[:r], when m ≥ n; left, Q = U[:, :r], otherwise),
    ``"reverse_std"`` on the longer, ``"left"`` / ``"right"`` always there, ``"full"`` both.

    The basis update (``method="auto"``): the first one is :func:`linalg_core.rsvd` (seeded, two
    power iterations);
    later ones are subspace iteration on A = G (left) or Gᵀ (right) started from
    [Q_prev, Ω] (Ω: p = ``oversample`` seeded Gaussian columns, the same for the same seed and
    update count), orthonormalised by CholeskyQR2, the top r Ritz vectors extracted after every
    pass; it stops once consecutive Ritz subspaces differ by less than ``tol`` (RMS sine of
    their principal angles, ‖P₁ − P₂‖_F/√(2r)) or the gradient energy they capture, ‖QᵀA‖²_F,
    grew by less than tol²·itself in the last pass (on a flat spectrum the vectors near the r-th
    singular value keep rotating among nearly equal values while the captured energy has
    settled), after ``max_passes`` at most. The new basis's
    signs are aligned with the old one's so that the moments kept in the low-rank space stay
    meaningful. ``method="svd"`` (or ``tol=0``, or ``warm_start=False`` with ``method="svd"``)
    is galore-torch's exact update: ``torch.linalg.svd`` of the float32 gradient, truncated
    (galore-torch also rounds a float64 gradient to float32 first; here it stays float64).

    Args:
        rank: r, at most min(m, n) of every gradient projected.
        update_gap: T, steps between basis updates (galore-torch's ``update_proj_gap``).
        scale: factor of :meth:`project_back` (GaLore's α).
        proj_type: ``"std"``, ``"reverse_std"``, ``"left"``, ``"right"`` or ``"full"``.
        warm_start: start each update from the previous basis (False: a fresh rsvd each time).
        tol: stopping threshold of the warm iteration; 0 means the exact SVD.
        max_passes: most power passes of one warm update.
        oversample: p, the Gaussian columns added to the warm start (default max(4, r // 4)).
        method: ``"auto"`` (above) or ``"svd"`` (galore-torch's full SVD).
        seed: seed of the rsvd and of Ω.

    Randomness:
        Deterministic in ``seed`` and the update count: the first basis (and every one with
        ``warm_start=False``) is :func:`linalg_core.rsvd` with seed ``seed + 1000003·u`` for update
        u; the warm updates' Ω is block u of the counter-based stream ``OPTIM_STREAM`` of
        ``seed`` (:func:`linalg_core.random.normal`). No global generator is used, so a projector
        restored from :meth:`state_dict` continues with the same draws. ``method="svd"`` draws
        nothing.

    Shape:
        grad: (m, n);  low-rank gradient: (m, r) (right), (r, n) (left), (r, r) (full)

    Raises:
        ValueError: a bad argument; at an update, a gradient that is not 2-D, not finite, or
            whose min(m, n) is below ``rank``.

    Example:
        >>> import torch
        >>> from linalg_core.optim import LowRankProjector
        >>> proj = LowRankProjector(rank=4, update_gap=10, seed=0)
        >>> G = torch.randn(32, 16)
        >>> R = proj.project(G, step=0)
        >>> R.shape, proj.project_back(R).shape
        (torch.Size([32, 4]), torch.Size([32, 16]))
    """

    def __init__(self, rank: int, update_gap: int = 200, *, scale: float = 1.0, proj_type: str = "std",
                 warm_start: bool = True, tol: float = DEFAULT_TOL, max_passes: int = DEFAULT_MAX_PASSES,
                 oversample: int | None = None, method: str = "auto", seed: int = 0):
        self.rank = _validate.integer(rank, "rank", low=1)
        self.update_gap = _validate.integer(update_gap, "update_gap", low=1)
        if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not math.isfinite(scale):
            raise ValueError(f"scale must be a finite number, got {scale!r}")
        self.scale = float(scale)
        if proj_type not in PROJ_TYPES:
            raise ValueError(f"proj_type={proj_type!r} is not one of {', '.join(map(repr, PROJ_TYPES))}")
        self.proj_type = proj_type
        if not isinstance(warm_start, bool):
            raise TypeError(f"warm_start must be a bool, got {warm_start!r}")
        self.warm_start = warm_start
        if isinstance(tol, bool) or not isinstance(tol, (int, float)) or not 0 <= tol < 1:
            raise ValueError(f"tol must be a number in [0, 1), got {tol!r}")
        self.tol = float(tol)
        self.max_passes = _validate.integer(max_passes, "max_passes", low=1)
        self.oversample = None if oversample is None else _validate.integer(oversample, "oversample", low=0)
        if method not in METHODS:
            raise ValueError(f"method={method!r} is not one of {', '.join(map(repr, METHODS))}")
        self.method = method
        self.seed = _validate.seed(seed)
        self.ortho = None  # galore-torch's ortho_matrix: (r, n), (m, r) or [(m, r), (r, n)]
        self.updates = 0  # basis updates made (the block of Ω the next one uses)
        self.last_passes = 0  # power passes of the last warm update (0: rsvd or SVD)

    # -- public API -------------------------------------------------------------------------
    @property
    def exact(self) -> bool:
        """Whether the basis updates are galore-torch's full SVD."""
        return self.method == "svd" or self.tol == 0

    def project(self, grad: torch.Tensor, step: int) -> torch.Tensor:
        """The low-rank gradient of ``grad``; updates the basis first when ``step`` is a multiple
        of ``update_gap`` or there is no basis yet.

        Args:
            grad: the full gradient G (m, n).
            step: the optimizer step (an int ≥ 0), counted from 0.

        Returns:
            GPᵀ (right side), QᵀG (left) or QᵀGPᵀ (full), in ``grad``'s dtype.

        Shape:
            grad: (m, n);  out: (m, r) (right), (r, n) (left), (r, r) (full)
        """
        if not isinstance(grad, torch.Tensor):
            raise TypeError(f"grad must be a torch.Tensor, got {type(grad).__name__}")
        if grad.dim() != 2:
            raise ValueError(f"grad must be 2-D (m, n), got shape {tuple(grad.shape)}")
        step = _validate.integer(step, "step", low=0)
        side = _side(self.proj_type, *grad.shape)
        if self.ortho is None or step % self.update_gap == 0:
            self.update(grad)
        if side == "right":
            return grad @ self.ortho.mT
        if side == "left":
            return self.ortho.mT @ grad
        return (self.ortho[0].mT @ grad) @ self.ortho[1].mT

    def project_back(self, low_rank_grad: torch.Tensor) -> torch.Tensor:
        """scale · the full-size update of a low-rank one (galore-torch's ``project_back``,
        including its side rule for ``std`` / ``reverse_std``, read off the low-rank shape).

        Args:
            low_rank_grad: a low-rank update R in the current basis (e.g. Adam's step on
                :meth:`project`'s output).

        Raises:
            ValueError: no basis yet (:meth:`project` not called).

        Shape:
            low_rank_grad: (m, r), (r, n) or (r, r);  out: (m, n)
        """
        if self.ortho is None:
            raise ValueError("project_back before project: the projector has no basis yet")
        low = low_rank_grad
        if self.proj_type == "std":
            side = "right" if low.shape[0] >= low.shape[1] else "left"
        elif self.proj_type == "reverse_std":
            side = "left" if low.shape[0] <= low.shape[1] else "right"
        else:
            side = self.proj_type
        if side == "right":
            full = low @ self.ortho
        elif side == "left":
            full = self.ortho @ low
        else:
            full = (self.ortho[0] @ low) @ self.ortho[1]
        return full * self.scale

    def update(self, grad: torch.Tensor) -> None:
        """Recompute the basis from ``grad`` now (what :meth:`project` does every ``update_gap``
        steps).

        Args:
            grad: the gradient G (m, n) whose dominant singular subspace becomes the basis.

        Raises:
            ValueError: ``grad`` not 2-D, not finite, or min(m, n) below ``rank``.

        Shape:
            grad: (m, n)
        """
        if grad.dim() != 2:
            raise ValueError(f"grad must be 2-D (m, n), got shape {tuple(grad.shape)}")
        m, n = grad.shape
        if self.rank > min(m, n):
            raise ValueError(f"rank={self.rank} exceeds min(m, n)={min(m, n)} of the gradient of shape ({m}, {n})")
        if not _validate.all_finite(grad):
            raise ValueError(f"grad of shape ({m}, {n}) has NaN or Inf entries: the projector's basis cannot be "
                             f"updated from it (update {self.updates})")
        side = _side(self.proj_type, m, n)
        dtype = grad.dtype
        work = grad if grad.dtype in (torch.float32, torch.float64) else grad.float()
        if self.exact:  # galore-torch's SVD: of the float32 gradient (float64 kept in float64)
            self.ortho = _exact_basis(work, self.rank, side, dtype)
        elif side == "full":
            U = self._basis(work, self.ortho[0] if self.ortho is not None else None)
            V = self._basis(work.mT, self.ortho[1].mT if self.ortho is not None else None)
            self.ortho = [U.to(dtype), V.mT.to(dtype)]
        elif side == "left":
            self.ortho = self._basis(work, self.ortho).to(dtype)
        else:
            self.ortho = self._basis(work.mT, self.ortho.mT if self.ortho is not None else None).mT.to(dtype)
        self.updates += 1

    # -- state -------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        """Everything needed to continue exactly: settings, the basis and the update count
        (tensors, numbers and strings only: loadable with ``torch.load(weights_only=True)``)."""
        ortho = self.ortho if not isinstance(self.ortho, list) else list(self.ortho)
        return {"rank": self.rank, "update_gap": self.update_gap, "scale": self.scale, "proj_type": self.proj_type,
                "warm_start": self.warm_start, "tol": self.tol, "max_passes": self.max_passes,
                "oversample": self.oversample, "method": self.method, "seed": self.seed, "ortho": ortho,
                "updates": self.updates, "last_passes": self.last_passes}

    def load_state_dict(self, state: dict) -> None:
        """Restore what :meth:`state_dict` returned (settings included)."""
        if not isinstance(state, dict):
            raise TypeError(f"state must be a dict, got {type(state).__name__}")
        missing = {"rank", "update_gap", "scale", "proj_type", "ortho", "updates"} - set(state)
        if missing:
            raise ValueError(f"state is missing {sorted(missing)}")
        fresh = LowRankProjector(state["rank"], state["update_gap"], scale=state["scale"],
                                 proj_type=state["proj_type"], warm_start=state.get("warm_start", True),
                                 tol=state.get("tol", DEFAULT_TOL),
                                 max_passes=state.get("max_passes", DEFAULT_MAX_PASSES),
                                 oversample=state.get("oversample"), method=state.get("method", "auto"),
                                 seed=state.get("seed", 0))
        self.__dict__.update(fresh.__dict__)
        ortho = state["ortho"]
        self.ortho = list(ortho) if isinstance(ortho, (list, tuple)) else ortho
        self.updates = _validate.integer(state["updates"], "updates", low=0)
        self.last_passes = int(state.get("last_passes", 0))

    @classmethod
    def from_state_dict(cls, state: dict) -> "LowRankProjector":
        """A projector restored from :meth:`state_dict`'s output."""
        proj = cls(1)
        proj.load_state_dict(state)
        return proj

    def __repr__(self) -> str:
        return (f"LowRankProjector(rank={self.rank}, update_gap={self.update_gap}, scale={self.scale}, "
                f"proj_type={self.proj_type!r}, method={self.method!r}, tol={self.tol}, seed={self.seed})")

    # -- the basis update --------------------------------------------------------------------
    def _basis(self, A: torch.Tensor, prev: torch.Tensor | None) -> torch.Tensor:
        """Orthonormal d × r basis of A's (d × e) dominant left singular subspace."""
        r = self.rank
        if prev is None or not self.warm_start:
            self.last_passes = 0
            if not bool(A.any()):  # zero gradient: rsvd's basis is arbitrary; keep a deterministic one
                return torch.eye(A.shape[0], r, dtype=A.dtype, device=A.device)
            # a different sketch at every update (the seed's stream, block = update count)
            return rsvd(A, r, niter=FIRST_NITER, seed=(self.seed + 1_000_003 * self.updates) % _validate.SEED_LIMIT).U
        prev = prev.to(A.dtype)
        if not bool(A.any()):  # a zero gradient says nothing about the subspace: keep it
            self.last_passes = 0
            return prev
        d, e = A.shape
        p = min(max(4, r // 4) if self.oversample is None else self.oversample, d - r, e - r)
        if p > 0:
            omega = normal((d, p), seed=self.seed, stream=OPTIM_STREAM, offset=self.updates * d * p,
                           dtype=A.dtype, device=A.device)
            start = torch.cat([prev, omega], dim=1)
        else:
            start = prev
        orth = CholQR2()
        Q = orth(start)
        ritz = energy = None
        passes = 0
        while True:
            B = Q.mT @ A  # k × e
            small = svd_of_wide(B, r)
            new = Q @ small.U[:, :r]  # the top r Ritz vectors of range(Q)
            captured = float(small.S[:r].double().square().sum())  # ‖newᵀA‖²_F, non-decreasing
            if ritz is not None and (captured - energy <= self.tol**2 * captured or _rms_sine(new, ritz) <= self.tol):
                break
            if passes >= self.max_passes:
                break
            ritz, energy = new, captured
            Q = orth(A @ B.mT)
            passes += 1
        self.last_passes = passes
        # align signs with the previous basis (the low-rank moments live in its coordinates)
        sign = torch.sign((new * prev).sum(0))
        sign[sign == 0] = 1
        return new * sign


def _exact_basis(G: torch.Tensor, rank: int, side: str, dtype: torch.dtype):
    """galore-torch's ``get_orthogonal_matrix``: truncated factors of ``torch.linalg.svd``."""
    U, _, Vh = torch.linalg.svd(G, full_matrices=False)
    if side == "right":
        return Vh[:rank, :].to(dtype)
    if side == "left":
        return U[:, :rank].to(dtype)
    return [U[:, :rank].to(dtype), Vh[:rank, :].to(dtype)]


__all__ = ["LowRankProjector", "subspace_sines", "PROJ_TYPES", "OPTIM_STREAM"]
