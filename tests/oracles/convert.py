"""NumPy oracle of the convert family (ops ``convert``, ``convert_into``, ``count_nonfinite``),
written from torch's conversion rules and independent of linalg_core: values are decoded exactly
from their bit patterns, then rounded to nearest even, float64 sources going through float32 first
as torch converts them (c10's half and bfloat16 are built from a float), overflow to ±Inf."""

from __future__ import annotations

import numpy as np

# bit-pattern dtype of each format
BITS = {"float64": np.uint64, "float32": np.uint32, "float16": np.uint16, "bfloat16": np.uint16}


def decode(bits: np.ndarray, fmt: str) -> np.ndarray:
    """The values of bit patterns ``bits`` of format ``fmt``, exactly, as float64."""
    bits = np.asarray(bits).astype(BITS[fmt])
    if fmt == "bfloat16":
        return (bits.astype(np.uint32) << np.uint32(16)).view(np.float32).astype(np.float64)
    return bits.view({"float64": np.float64, "float32": np.float32, "float16": np.float16}[fmt]).astype(np.float64)


def encode(x: np.ndarray, fmt: str) -> np.ndarray:
    """Bit patterns of float64 values ``x`` (the exact values of the source) converted to ``fmt``;
    NaN comes out as a quiet NaN."""
    x = np.asarray(x, np.float64)
    if fmt == "float64":
        return x.view(np.uint64)
    with np.errstate(over="ignore"):
        x32 = x.astype(np.float32)  # exact unless the source is float64: torch's first rounding
        if fmt == "float32":
            return x32.view(np.uint32)
        if fmt == "float16":
            return np.where(np.isnan(x32), np.float16(np.nan), x32.astype(np.float16)).view(np.uint16)
    u = x32.view(np.uint32).astype(np.uint64)
    r = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)  # round to nearest even, carry into the exponent
    return np.where(np.isnan(x32), np.uint16(0x7FC0), r)


def count_nonfinite(bits: np.ndarray, fmt: str) -> int:
    """Number of NaN and ±Inf values among bit patterns ``bits`` of format ``fmt``."""
    return int((~np.isfinite(decode(bits, fmt))).sum())


def lowrank_update(W: np.ndarray, B: np.ndarray, A: np.ndarray, s: float, fmt: str) -> np.ndarray:
    """Bit patterns of W − s·B·A in format ``fmt`` (the ``lowrank_update`` op): W (m, n), B (m, r)
    and A (r, n) the exact float64 values of their elements, the update exact to float64 rounding,
    then rounded once to nearest even."""
    return encode(np.asarray(W, np.float64) - s * (np.asarray(B, np.float64) @ np.asarray(A, np.float64)), fmt)
