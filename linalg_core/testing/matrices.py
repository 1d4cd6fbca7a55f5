"""Test matrices: prescribed singular spectra (polynomial, exponential, flat LLM-like,
low rank + noise), Gaussian and coherent tall matrices. Seeded through torch.Generator only."""

from __future__ import annotations

import math

import torch

from linalg_core import _validate


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(_validate.integer(seed, "seed", low=0))


SPECTRA = ("polynomial", "exponential", "flat", "lowrank_noise", "gapped", "spiked")


def spectrum(kind: str, k: int, *, decay: float | None = None, rank: int | None = None) -> torch.Tensor:
    """k singular values, largest first (float64).

    kinds: ``polynomial`` σ_i = (i+1)^-decay (default 1), ``exponential`` σ_i = decay^i
    (default 0.9), ``flat`` σ_i = (i+1)^-0.3 (the slow decay of LLM weights),
    ``lowrank_noise`` ten values of 1 then 1e-3, ``gapped`` the flat spectrum dropping by a
    factor ``decay`` (default 20) after the first ``rank`` values (a target rank that fits the
    matrix), ``spiked`` a few dominant values on a decaying bulk, σ_i = 10·0.7^i + (i+1)^-0.5
    (``decay``: the bulk's exponent).

    Raises:
        ValueError: an unknown kind; ``gapped`` without ``rank`` in [1, k).
    """
    i = torch.arange(k, dtype=torch.float64)
    if kind == "gapped":
        if rank is None or not 1 <= rank < k:
            raise ValueError(f"kind='gapped' needs rank in [1, {k}), got rank={rank!r}")
        return (i + 1) ** -0.3 / torch.where(i < rank, 1.0, 20.0 if decay is None else decay)
    if kind == "spiked":
        return 10 * 0.7**i + (i + 1) ** -(0.5 if decay is None else decay)
    if kind == "polynomial":
        return (i + 1) ** -(1.0 if decay is None else decay)
    if kind == "exponential":
        return (0.9 if decay is None else decay) ** i
    if kind == "flat":
        return (i + 1) ** -(0.3 if decay is None else decay)
    if kind == "lowrank_noise":
        return torch.where(i < 10, 1.0, 1e-3)
    raise ValueError(f"kind={kind!r} is not one of {', '.join(SPECTRA)}")


def haar(rows: int, cols: int, generator: torch.Generator, *, dtype=torch.float64) -> torch.Tensor:
    """A Haar-distributed orthonormal (rows, cols) matrix, rows ≥ cols: the sign-corrected QR of a
    Gaussian matrix drawn from ``generator`` in ``dtype`` (Mezzadri 2007: the signs of R's
    diagonal moved into Q make its distribution exactly Haar).

    Raises:
        ValueError: cols < 1 or rows < cols.  TypeError: non-integer sizes, a generator that is
            no ``torch.Generator``, a dtype that is not float32 or float64.

    Shape:
        out: (rows, cols)

    Example:
        >>> import torch
        >>> from linalg_core.testing import haar
        >>> Q = haar(6, 3, torch.Generator().manual_seed(0))
        >>> torch.allclose(Q.T @ Q, torch.eye(3, dtype=torch.float64))
        True
    """
    cols = _validate.integer(cols, "cols", low=1)
    rows = _validate.integer(rows, "rows", low=cols)
    if not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator, got {type(generator).__name__}")
    if dtype not in (torch.float32, torch.float64):
        raise TypeError(f"dtype must be torch.float32 or torch.float64, got {dtype!r}")
    q, r = torch.linalg.qr(torch.randn(rows, cols, dtype=dtype, generator=generator))
    return q * torch.sign(torch.diagonal(r))


def with_spectrum(m: int, n: int, sigma: torch.Tensor, *, seed: int = 0, dtype=torch.float64) -> torch.Tensor:
    """A = U diag(σ) Vᵀ with Haar-random U (m × k), V (n × k), k = len(σ) ≤ min(m, n)."""
    k = sigma.numel()
    if k > min(m, n):
        raise ValueError(f"len(sigma)={k} exceeds min(m, n)={min(m, n)}")
    g = _gen(seed)
    U, V = haar(m, k, g), haar(n, k, g)
    return ((U * sigma.to(torch.float64)) @ V.T).to(dtype)


def llm_like(m: int, n: int, *, seed: int = 0, dtype=torch.float32) -> torch.Tensor:
    """A weight-like m × n matrix: a slowly decaying, heavy-headed spectrum σ_i = (1 − 0.9·i/k)³
    with Haar factors, scaled to entry std 0.02 (pretrained LLM weights have a few dominant
    directions on a flat bulk; NF-k alone then errs like on real weights, ~0.09 at 4 bits)."""
    k = min(m, n)
    sigma = torch.linspace(1, 0.1, k, dtype=torch.float64) ** 3
    W = with_spectrum(m, n, sigma, seed=seed)
    return (W / W.std() * 0.02).to(dtype)


def tall_gaussian(n: int, d: int, *, seed: int = 0, dtype=torch.float64) -> torch.Tensor:
    """An n × d matrix with i.i.d. N(0, 1) entries (incoherent: leverage scores ≈ d/n)."""
    return torch.randn(n, d, dtype=torch.float64, generator=_gen(seed)).to(dtype)


def coherent(n: int, d: int, *, seed: int = 0, dtype=torch.float64) -> torch.Tensor:
    """A maximally coherent n × d matrix: d rows carry the subspace (leverage scores 1 there,
    ≈ 0 elsewhere), the rest small noise. Uniform row sampling fails on it; sketches must not."""
    g = _gen(seed)
    A = 1e-3 * torch.randn(n, d, dtype=torch.float64, generator=g)
    rows = torch.randperm(n, generator=g)[:d]
    A[rows] += torch.diag(1.0 + torch.rand(d, dtype=torch.float64, generator=g))
    return A.to(dtype)


def planted_regression(n: int, d: int, *, kind: str = "gaussian", cond: float | None = None,
                       residual: str = "spread", scale: float = 1.0, seed: int = 0, dtype=torch.float64):
    """(A, b, x0) with b = A x0 + r and r ⟂ range(A), so the least-squares solution is x0
    exactly (float64 rounding aside).

    Args:
        kind: ``"gaussian"`` (incoherent) or ``"coherent"`` (a few rows with leverage ≈ 1).
        cond: make κ(A) = cond (singular values log-spaced from 1 to 1/cond) when given.
        residual: ``"spread"`` (Gaussian) or ``"concentrated"`` (on 8 rows, before projection).
        scale: ‖r‖₂ / ‖A x0‖₂.
    """
    g = _gen(seed)
    A = (coherent(n, d, seed=seed) if kind == "coherent" else torch.randn(n, d, dtype=torch.float64, generator=g))
    if cond is not None:
        U, _, Vh = torch.linalg.svd(A, full_matrices=False)
        A = (U * torch.logspace(0, -math.log10(cond), d, dtype=torch.float64)) @ Vh
    x0 = torch.randn(d, dtype=torch.float64, generator=g)
    if residual == "concentrated":
        z = torch.zeros(n, dtype=torch.float64)
        z[torch.randperm(n, generator=g)[:8]] = torch.randn(8, dtype=torch.float64, generator=g)
    else:
        z = torch.randn(n, dtype=torch.float64, generator=g)
    Q = torch.linalg.qr(A).Q
    r = z - Q @ (Q.T @ z)
    r = r - Q @ (Q.T @ r)  # twice is enough
    Ax = A @ x0
    r = r * (scale * torch.linalg.vector_norm(Ax) / torch.linalg.vector_norm(r))
    return A.to(dtype), (Ax + r).to(dtype), x0.to(dtype)
