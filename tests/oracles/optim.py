"""Float64 references for the GaLore projector and optimizers: the exact SVD projector (numpy
LAPACK), captured energy, principal angles, one GaLore-AdamW step, the weight-normalisation
chain rule and the blockwise absmax codebook quantizer."""

from __future__ import annotations

import math

import numpy as np


def exact_basis(G, r: int, side: str) -> np.ndarray:
    """Orthonormal d × r basis of G's top-r singular subspace on ``side`` ("left": columns of U,
    "right": rows of Vh, as a column basis)."""
    U, _, Vh = np.linalg.svd(np.asarray(G, dtype=np.float64), full_matrices=False)
    return U[:, :r] if side == "left" else Vh[:r].T


def captured_energy(G, Q, side: str) -> float:
    """‖QᵀG‖²_F (left) or ‖GQ‖²_F (right) for a column basis Q."""
    G, Q = np.asarray(G, np.float64), np.asarray(Q, np.float64)
    return float(np.sum((Q.T @ G) ** 2) if side == "left" else np.sum((G @ Q) ** 2))


def optimal_energy(G, r: int) -> float:
    s = np.linalg.svd(np.asarray(G, dtype=np.float64), compute_uv=False)
    return float(np.sum(s[:r] ** 2))


def sines(Q1, Q2) -> np.ndarray:
    """Sines of the principal angles between two column bases, largest first."""
    c = np.linalg.svd(np.asarray(Q1, np.float64).T @ np.asarray(Q2, np.float64), compute_uv=False)
    return np.sqrt(np.clip(1 - np.clip(c, 0, 1) ** 2, 0, None))[::-1]


def galore_adamw_steps(W0, grads, r: int, gap: int, scale: float, lr: float, betas=(0.9, 0.999), eps=1e-6,
                       weight_decay=0.0):
    """W after GaLore-AdamW steps (std side rule, exact SVD basis every ``gap`` steps), float64."""
    W = np.array(W0, dtype=np.float64)
    m, n = W.shape
    right = m >= n
    P = None
    mom = vel = None
    for t, G in enumerate(grads):
        G = np.asarray(G, np.float64)
        if t % gap == 0:
            U, _, Vh = np.linalg.svd(G, full_matrices=False)
            P = Vh[:r] if right else U[:, :r]
        R = G @ P.T if right else P.T @ G
        if mom is None:
            mom, vel = np.zeros_like(R), np.zeros_like(R)
        mom = betas[0] * mom + (1 - betas[0]) * R
        vel = betas[1] * vel + (1 - betas[1]) * R * R
        k = t + 1
        step = lr * math.sqrt(1 - betas[1] ** k) / (1 - betas[0] ** k)
        N = mom / (np.sqrt(vel) + eps)
        W = W - step * scale * (N @ P if right else P @ N)
        if weight_decay > 0:
            W = W - lr * weight_decay * W
    return W


def weight_norm_grads(V, g, grad_W):
    """(∇g, ∇V) of W = diag(g)·V/‖V‖_row for a loss with gradient ``grad_W`` in W."""
    V, g, G = (np.asarray(x, np.float64) for x in (V, g, grad_W))
    s = np.linalg.norm(V, axis=1)
    U = V / s[:, None]
    dg = np.sum(G * U, axis=1)
    dV = (g / s)[:, None] * (G - dg[:, None] * U)
    return dg, dV


def block_quantize(x, levels, block: int):
    """(codes, scales, dequantized) of blockwise absmax nearest-level quantization."""
    x = np.asarray(x, np.float64).reshape(-1)
    lv = np.asarray(levels, np.float64)
    nb = -(-x.size // block)
    pad = np.zeros(nb * block)
    pad[:x.size] = x
    blocks = pad.reshape(nb, block)
    scales = np.abs(blocks).max(axis=1)
    safe = np.where(scales > 0, scales, 1.0)
    codes = np.abs(blocks[:, :, None] / safe[:, None, None] - lv[None, None, :]).argmin(-1)
    deq = lv[codes] * scales[:, None]
    return codes.reshape(-1)[:x.size], scales, deq.reshape(-1)[:x.size]
