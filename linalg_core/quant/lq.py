"""Low-rank plus quantized decomposition W ≈ Q + L1·L2 (LQ-LoRA; LoftQ).

Guo, Greengard, Xing and Kim 2024, "LQ-LoRA: Low-rank Plus Quantized Matrix Decomposition for
Efficient Language Model Finetuning", Algorithm 1; Li et al. 2024, "LoftQ" (the same alternation
started from Q = quantize(W)).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from linalg_core import _validate
from linalg_core.lowrank import as_linear_operator, rsvd
from linalg_core.quant.config import LQConfig, register_quantizer
from linalg_core.quant.formats import Format, parse
from linalg_core.quant.tensor import QuantizedTensor, quantize


@dataclass(frozen=True)
class LQResult:
    """``W ≈ Q.dequantize() + L1 @ L2``, the best iterate of the alternation.

    Attributes:
        Q: the quantized part. L1: (m, r), L2: (r, n), float32 (√S on both sides).
        history: relative error ‖√F⊙(W − Q − L1L2)‖_F / ‖√F⊙W‖_F after each iteration
            (F = 1 without Fisher weights); ``best`` indexes the iterate returned.

    Shape:
        L1: (m, r);  L2: (r, n)

    The alternation is LQ-LoRA's (Guo, Greengard, Xing and Kim 2024, "LQ-LoRA: Low-rank plus
    Quantized Matrix Decomposition for Efficient Language Model Finetuning").

    Example:
        >>> import torch
        >>> from linalg_core.quant import lq_decompose
        >>> W = torch.randn(64, 64, generator=torch.Generator().manual_seed(0))
        >>> lq = lq_decompose(W, 4, "nf3", iters=2, seed=0)
        >>> tuple(lq.L1.shape), tuple(lq.L2.shape), lq.error == min(lq.history)
        ((64, 4), (4, 64), True)
        >>> err = (lq.reconstruct() - W).norm() / W.norm()
        >>> bool(abs(float(err) - lq.error) < 1e-5)
        True
    """

    Q: QuantizedTensor
    L1: torch.Tensor
    L2: torch.Tensor
    history: list[float] = field(default_factory=list)
    best: int = 0

    @property
    def error(self) -> float:
        """The relative error of the iterate returned: ``history[best]``."""
        return self.history[self.best]

    def reconstruct(self, dtype=torch.float32) -> torch.Tensor:
        """Q + L1·L2 as a dense (m, n) tensor."""
        return torch.addmm(self.Q.dequantize(torch.float32), self.L1, self.L2).to(dtype)


def _weights(fisher, shape):
    """Row and column weights √(row mean F), √(column mean F) of a positive weight matrix."""
    F, _ = _validate.float_array(fisher, "fisher", ndim=2)
    if tuple(F.shape) != tuple(shape):
        raise ValueError(f"fisher has shape {tuple(F.shape)}, expected W's shape {tuple(shape)}")
    _validate.check_finite(F, "fisher")
    F = F.to(torch.float64)
    if (F < 0).any():
        raise ValueError(f"fisher must be non-negative; its smallest entry is {float(F.min()):.3g}")
    r, c = F.mean(1).sqrt(), F.mean(0).sqrt()
    if (r == 0).any() or (c == 0).any():
        raise ValueError("fisher has an all-zero row or column: the weighted low-rank step needs positive weights")
    return F.float(), r.float(), c.float()


def lq_decompose(W, rank: int | LQConfig, format="nf3", *, iters: int = 10, tol: float | None = 1e-3, fisher=None,
                 init: str = "lowrank", niter: int | str = 2, seed=None, backend: str | None = None) -> LQResult:
    """W ≈ Q + L1·L2 with Q in a quantized ``format`` and L1·L2 of rank ``rank``.

    Alternates (LQ-LoRA, Algorithm 1) L1·L2 = rank-r SVD of W − Q and Q = quantize(W − L1·L2),
    starting from Q = 0 (``init="lowrank"``, LQ-LoRA) or from Q = quantize(W) (``init="quant"``,
    LoftQ). Quantization is not a projection, so the error is not monotone: every iterate's error
    is recorded and the best one is returned (LQ-LoRA's reference code returns the last); the
    loop stops after ``iters`` iterations, when the error rises, or when it improves by less than
    ``tol`` (relative). ``tol=None`` runs all ``iters`` alternations and returns the last iterate,
    as peft's ``loftq_init`` (peft/utils/loftq_utils.py) and LQ-LoRA's reference code do.

    Data-aware variant (LQ-LoRA Section 3.3): with a Fisher (or any non-negative importance)
    matrix F, the low-rank step minimises ‖D_r (W − Q − L) D_c‖_F with D_r = diag(√row-mean F),
    D_c = diag(√column-mean F): an SVD of D_r (W − Q) D_c whose factors are divided back.
    Limits: this is exact only for a rank-one F = r cᵀ (the weighted low-rank problem for a
    general F has no closed form); the quantization step is not weighted; the reported error is
    the exactly F-weighted ‖√F ⊙ (W − Q − L)‖.

    Args:
        W: (m, n) float weight.
        rank: r ≥ 1 (< min(m, n)), or an :class:`~linalg_core.quant.LQConfig` holding every option
            (then pass only ``fisher`` and ``backend``).
        format: a :class:`~linalg_core.quant.formats.Format` or its name (``"nf3"``, ``"nf4"``, ...).
        iters: at most this many alternations (≥ 1).
        tol: stop when an iteration improves the error by less than this fraction; None: run
            all ``iters`` alternations and return the last iterate.
        fisher: optional (m, n) non-negative weights.
        init: ``"lowrank"`` (Q = 0 first) or ``"quant"`` (LoftQ: Q = quantize(W) first).
        niter: power iterations of each randomized SVD (k = 2r columns), or ``"exact"``: the
            full SVD (``torch.linalg.svd``) of each residual, truncated to rank r, as peft's LoftQ.
        seed: seed of the randomized SVDs (the same seed each iteration).

    Returns:
        :class:`LQResult`.

    Shape:
        W, fisher: (m, n);  L1: (m, r);  L2: (r, n);  Q: (m, n) quantized

    Randomness:
        Only the range finder of :func:`linalg_core.rsvd` (stream of ``seed``); same seed, same result.
        None with ``niter="exact"``.

    Example:
        >>> import torch
        >>> from linalg_core.quant import lq_decompose, quantize
        >>> W = torch.randn(128, 128, generator=torch.Generator().manual_seed(0))
        >>> lq = lq_decompose(W, 8, "nf3", iters=3, seed=0)
        >>> nf3 = float((quantize(W, "nf3").dequantize() - W).norm() / W.norm())
        >>> lq.error < nf3
        True
        >>> from linalg_core.quant import LQConfig
        >>> lq_decompose(W, LQConfig(8, "nf3", iters=3, seed=0)).history == lq.history
        True
    """
    if isinstance(rank, LQConfig):
        if (format, iters, tol, init, niter, seed) != ("nf3", 10, 1e-3, "lowrank", 2, None):
            raise TypeError("lq_decompose(W, LQConfig(...)) takes its options from the config; pass only fisher= "
                            "and backend= with it")
        c = rank
        rank, format, iters, tol, init, niter, seed = c.rank, c.format, c.iters, c.tol, c.init, c.niter, c.seed
    fmt: Format = parse(format)
    Wt, _ = _validate.float_array(W, "W", ndim=2)
    _validate.check_finite(Wt, "W")
    rank = _validate.integer(rank, "rank", low=1)
    if rank >= min(Wt.shape):
        raise ValueError(f"rank={rank} must be below min(m, n)={min(Wt.shape)} for W of shape {tuple(Wt.shape)}")
    iters = _validate.integer(iters, "iters", low=1)
    if tol is not None and not (isinstance(tol, (int, float)) and not isinstance(tol, bool) and tol >= 0):
        raise ValueError(f"tol={tol!r} must be a non-negative number or None")
    exact = isinstance(niter, str)
    if exact and niter != "exact":
        raise ValueError(f"niter={niter!r} must be an integer >= 0 or 'exact'")
    if init not in ("lowrank", "quant"):
        raise ValueError(f"init={init!r} must be 'lowrank' or 'quant'")
    fmt.check_shape(Wt.shape)
    W32 = Wt.to(torch.float32)
    F, dr, dc = _weights(fisher, Wt.shape) if fisher is not None else (None, None, None)
    norm = float(W32.norm() if F is None else (F.sqrt() * W32).norm())

    def lowrank(R):
        if dr is not None:
            R = dr[:, None] * R * dc
        if exact:
            U, S, Vh = torch.linalg.svd(R, full_matrices=False)
            U, S, Vh = U[:, :rank], S[:rank], Vh[:rank]
        else:
            U, S, Vh = rsvd(as_linear_operator(R, name="W"), rank, niter=niter, seed=seed)
        root = S.sqrt()
        L1, L2 = U * root, root[:, None] * Vh
        if dr is not None:
            L1, L2 = L1 / dr[:, None], L2 / dc
        return L1.float(), L2.float()

    def error(Q, L1, L2):
        E = torch.addmm(Q.dequantize(torch.float32), L1, L2).sub_(W32).neg_()
        return float((E if F is None else F.sqrt() * E).norm()) / norm

    history, best, best_state = [], 0, None
    Q = L1 = L2 = None
    for t in range(iters):
        if init == "quant":  # LoftQ: Q_t = quant(W − L_{t−1}), L_t = SVD_r(W − Q_t)
            Q = quantize(W32 if L1 is None else torch.addmm(W32, L1, L2, alpha=-1), fmt, backend=backend)
            L1, L2 = lowrank(W32 - Q.dequantize(torch.float32))
        else:  # LQ-LoRA: L_t = SVD_r(W − Q_{t−1}), Q_t = quant(W − L_t)
            L1, L2 = lowrank(W32 if Q is None else W32 - Q.dequantize(torch.float32))
            Q = quantize(torch.addmm(W32, L1, L2, alpha=-1), fmt, backend=backend)
        history.append(error(Q, L1, L2))
        if tol is None or best_state is None or history[-1] < history[best]:
            best, best_state = t, (Q, L1, L2)
        if tol is not None and t > 0 and history[-1] > history[-2] * (1 - tol):
            break
    Q, L1, L2 = best_state
    return LQResult(Q, L1, L2, history, best)


register_quantizer(LQConfig)(lq_decompose)
