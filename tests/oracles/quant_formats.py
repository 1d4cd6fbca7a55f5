"""Float64 NumPy oracles of the quantization formats, written from their definitions
(independent of linalg_core.quant): nearest level of x / scale, ties to the lower level."""

from __future__ import annotations

import numpy as np
from scipy.stats import norm


def normal_float(bits: int, offset: float = 0.9677083) -> np.ndarray:
    half = 2 ** (bits - 1)
    pos = norm.ppf(np.linspace(offset, 0.5, half + 1)[:-1])
    neg = -norm.ppf(np.linspace(offset, 0.5, half)[:-1])
    v = np.sort(np.concatenate([pos, [0.0], neg]))
    return v / v.max()


def nearest(v: np.ndarray, levels: np.ndarray) -> np.ndarray:
    """Index of the nearest level (ties to the lower one)."""
    d = np.abs(v[..., None] - levels)
    return d.argmin(-1)  # argmin takes the first (lower) of equal distances


def blocks(x: np.ndarray, block: int) -> np.ndarray:
    x = np.asarray(x, np.float64).reshape(-1)
    nb = -(-x.size // block)
    out = np.zeros(nb * block)
    out[: x.size] = x
    return out.reshape(nb, block)


def nf_absmax(x: np.ndarray, bits: int, block: int) -> tuple[np.ndarray, np.ndarray]:
    """NF-k with unquantized absmax scales: (dequantized (n,), codes (n,))."""
    xb = blocks(x, block)
    s = np.abs(xb).max(1, keepdims=True)
    lv = normal_float(bits)
    c = nearest(xb / np.where(s > 0, s, 1), lv)
    return (lv[c] * s).reshape(-1)[: x.size], c.reshape(-1)[: x.size]


def int_symmetric(x: np.ndarray, bits: int, group: int, scale_dtype=np.float16) -> np.ndarray:
    xb = blocks(x, group)
    s = (np.abs(xb).max(1, keepdims=True) / (2 ** (bits - 1) - 1)).astype(scale_dtype).astype(np.float64)
    q = np.clip(nearest(xb / np.where(s > 0, s, 1), np.arange(-(2 ** (bits - 1)), 2 ** (bits - 1))) - 2 ** (bits - 1),
                -(2 ** (bits - 1)), 2 ** (bits - 1) - 1)
    return (q * s).reshape(-1)[: x.size]
