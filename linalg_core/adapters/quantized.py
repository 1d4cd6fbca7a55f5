"""Adapter initialisers on quantized base weights (no bitsandbytes needed).

* :func:`loftq` — LoftQ (Li et al. 2024): the base becomes Q = quantize(W − L) and the adapter
  takes the rank-r part L of W − Q, alternated ``iters`` times (:func:`linalg_core.quant.lq_decompose`
  with ``init="quant"``), so that Q + s·BA ≈ W at a fraction of NF4's error.
* :func:`pissa` / :func:`olora` of :mod:`linalg_core.adapters` accept a
  :class:`~linalg_core.quant.QuantizedTensor`: the factors come from its matrix-free products
  (no dense copy of W for the decomposition) and the residual base is re-quantized in the same
  format (QPiSSA).
"""

from __future__ import annotations

import torch

from linalg_core.adapters.factors import LoRAInit, scaling
from linalg_core.lowrank import as_linear_operator, rsvd


def loftq(W, rank: int, *, format="bnb-nf4", iters: int = 1, lora_alpha: float | None = None,
          use_rslora: bool = False, niter: int | str = 2, seed=None) -> LoRAInit:
    """LoftQ initialisation: ``W ≈ residual.dequantize() + scaling · B @ A`` with a quantized base.

    peft's ``LoftQConfig(loftq_bits=4, loftq_iter=T)`` quantizes with bitsandbytes NF4 (without
    double quantization), takes a full SVD of each residual and keeps the last of T alternations
    (``loftq_init`` in peft/utils/loftq_utils.py). Here any :mod:`format <linalg_core.quant.formats>`
    (default bitsandbytes-exact NF4, so the base loads into a ``bnb.nn.Linear4bit`` through
    :meth:`~linalg_core.quant.QuantizedTensor.to_bitsandbytes`), by default a seeded randomized
    SVD and the best of at most ``iters`` alternations (stopping when the error stops falling).
    ``niter="exact"`` is peft's procedure step for step: the full SVD (``torch.linalg.svd``), all
    ``iters`` alternations, the last iterate; with ``format=BnbNF4(double_quant=False)`` it gives
    peft's Q, A and B to rounding (tests/conformance/test_peft_loftq.py). peft's 2/8-bit LoftQ
    path builds a blocks × size × 2^k argmin tensor (peft #1708); the quantizers here never do.

    Args:
        W: (out, in) float weight.
        rank: r.
        format: quantization format of the base.
        iters: LoftQ alternations T (at most T unless ``niter="exact"``).
        lora_alpha / use_rslora: peft's scaling s (A and B are divided by √s).
        niter: power iterations of each rank-r randomized SVD, or ``"exact"`` (peft's LoftQ:
            full SVD, exactly ``iters`` alternations, the last kept; ``seed`` is then unused).
        seed: seed of the randomized SVDs.

    Returns:
        :class:`~linalg_core.adapters.LoRAInit` whose ``residual`` is a
        :class:`~linalg_core.quant.QuantizedTensor`.

    Shape:
        W: (out, in);  A: (r, in);  B: (out, r);  residual: a QuantizedTensor of shape (out, in)

    Randomness:
        The randomized SVDs' test matrices from ``seed`` (none with ``niter="exact"``).

    Example:
        >>> import torch
        >>> from linalg_core.adapters import loftq
        >>> W = torch.randn(128, 64, generator=torch.Generator().manual_seed(0))
        >>> init = loftq(W, 8, seed=0)
        >>> err = (init.residual.dequantize() + init.scaling * init.B @ init.A - W).norm() / W.norm()
        >>> bool(err < 0.09)
        True
    """
    from linalg_core.quant import lq_decompose

    exact = isinstance(niter, str) and niter == "exact"
    lq = lq_decompose(W, rank, format, iters=iters, init="quant", niter=niter, seed=seed,
                      **({"tol": None} if exact else {}))
    s = scaling(rank if lora_alpha is None else lora_alpha, rank, use_rslora)
    root = 1.0 / s ** 0.5
    return LoRAInit(lq.L2 * root, lq.L1 * root, lq.Q, s)


def principal_of_quantized(Q, rank: int, s: float, oversample: int, niter: int, seed) -> LoRAInit:
    """PiSSA on a quantized base: rsvd of the matrix-free Q (PiSSA's sketch size and
    iterations), residual re-quantized."""
    U, S, Vh = rsvd(_operator(Q), rank, oversample=oversample, niter=niter, seed=seed)
    root = torch.sqrt(S / s)
    A, B = root[:, None] * Vh, U * root
    return LoRAInit(A, B, _requantize(Q, B, A, s), s)


def orthonormal_of_quantized(Q, rank: int, s: float) -> LoRAInit:
    """OLoRA on a quantized base: QR of the first r columns (Q·E_r) and A = Q_rᵀ W (matrix-free)."""
    E = torch.zeros(Q.shape[1], rank, dtype=torch.float32, device=Q.device)
    E[torch.arange(rank), torch.arange(rank)] = 1
    Qr, _ = torch.linalg.qr(Q.matmul(E))
    A = Q.rmatmul(Qr).T.contiguous()
    return LoRAInit(A, Qr, _requantize(Q, Qr, A, s), s)


def _operator(Q):
    return as_linear_operator(Q, name="W")


def _requantize(Q, B, A, s):
    from linalg_core.quant import quantize

    return quantize(torch.addmm(Q.dequantize(torch.float32), B, A, alpha=-s), Q.format)
