"""Philox4x32-10 in numpy uint64 arithmetic (independent of linalg_core's torch reference),
and the stream layout of linalg_core's random numbers built on it."""

from __future__ import annotations

import numpy as np

M0, M1 = np.uint64(0xD2511F53), np.uint64(0xCD9E8D57)
W0, W1 = 0x9E3779B9, 0xBB67AE85
MASK = np.uint64(0xFFFFFFFF)
S32 = np.uint64(32)


def philox(block, stream: int, seed: int) -> np.ndarray:
    """(len(block), 4) uint64 array of the Philox4x32-10 output words."""
    block = np.asarray(block, dtype=np.uint64)
    c = [block & MASK, block >> S32, np.full_like(block, stream & 0xFFFFFFFF),
         np.full_like(block, stream >> 32)]
    k0, k1 = seed & 0xFFFFFFFF, seed >> 32
    for _ in range(10):
        p0, p1 = M0 * c[0], M1 * c[2]
        c = [(p1 >> S32) ^ c[1] ^ np.uint64(k0), p1 & MASK, (p0 >> S32) ^ c[3] ^ np.uint64(k1), p0 & MASK]
        k0, k1 = (k0 + W0) & 0xFFFFFFFF, (k1 + W1) & 0xFFFFFFFF
    return np.stack(c, axis=-1)


def words(index, stream, seed):
    index = np.asarray(index, dtype=np.uint64)
    lanes = philox(index >> np.uint64(2), stream, seed)
    return lanes[np.arange(index.size), (index & np.uint64(3)).astype(np.int64)]


def normals(index, stream, seed):
    index = np.asarray(index, dtype=np.uint64)
    lanes = philox(index >> np.uint64(2), stream, seed).astype(np.float64)
    lane = (index & np.uint64(3)).astype(np.int64)
    pair = lane & 2
    i = np.arange(index.size)
    u1 = (lanes[i, pair] + 1.0) * 2.0**-32
    theta = 2 * np.pi * lanes[i, pair + 1] * 2.0**-32
    r = np.sqrt(-2 * np.log(u1))
    return np.where(lane & 1, r * np.sin(theta), r * np.cos(theta))


def signs(index, stream, seed):
    index = np.asarray(index, dtype=np.uint64)
    w = words(index >> np.uint64(5), stream, seed)
    return 1 - 2 * ((w >> (index & np.uint64(31))) & np.uint64(1)).astype(np.int64)
