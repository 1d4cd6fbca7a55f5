"""Philox4x32-10 in torch int64 arithmetic, bit-identical to csrc/include/linalg_core/philox.h.

32-bit words are held in int64 tensors; 32 x 32 -> 64-bit products are split into 16-bit
halves so that no intermediate exceeds 2^49 (torch has no unsigned 64-bit multiply).
"""

from __future__ import annotations

import math

import torch

M0, M1 = 0xD2511F53, 0xCD9E8D57
W0, W1 = 0x9E3779B9, 0xBB67AE85
MASK32 = 0xFFFFFFFF
MASK64 = (1 << 64) - 1
TWO_M32 = 2.0**-32


def _mulhilo(a: int, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    ah, al = a >> 16, a & 0xFFFF
    lo_part = al * b
    mid = ah * b + (lo_part >> 16)
    return mid >> 16, ((mid & 0xFFFF) << 16) | (lo_part & 0xFFFF)


def philox4x32_10(block: torch.Tensor, stream: int, seed: int) -> torch.Tensor:
    """The four 32-bit words (as int64, shape ``block.shape + (4,)``) of Philox blocks."""
    block = block.to(torch.int64)
    c0 = block & MASK32
    c1 = (block >> 32) & MASK32
    c2 = torch.full_like(block, stream & MASK32)
    c3 = torch.full_like(block, (stream >> 32) & MASK32)
    k0, k1 = seed & MASK32, (seed >> 32) & MASK32
    for _ in range(10):
        hi0, lo0 = _mulhilo(M0, c0)
        hi1, lo1 = _mulhilo(M1, c2)
        c0, c1, c2, c3 = hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0
        k0, k1 = (k0 + W0) & MASK32, (k1 + W1) & MASK32
    return torch.stack((c0, c1, c2, c3), dim=-1)


def words(index: torch.Tensor, stream: int, seed: int) -> torch.Tensor:
    """Word ``e`` of a stream for every ``e`` in ``index``."""
    lanes = philox4x32_10(index >> 2, stream, seed)
    return lanes.gather(-1, (index & 3).unsqueeze(-1)).squeeze(-1)


def normals(index: torch.Tensor, stream: int, seed: int) -> torch.Tensor:
    """Standard normals (float64) number ``e``: Box-Muller on word pairs (0,1), (2,3)."""
    lanes = philox4x32_10(index >> 2, stream, seed)
    lane = index & 3
    pair = lane & 2
    wa = lanes.gather(-1, pair.unsqueeze(-1)).squeeze(-1).to(torch.float64)
    wb = lanes.gather(-1, (pair + 1).unsqueeze(-1)).squeeze(-1).to(torch.float64)
    u1 = (wa + 1.0) * TWO_M32
    theta = (2 * math.pi) * (wb * TWO_M32)
    r = torch.sqrt(-2.0 * torch.log(u1))
    return torch.where((lane & 1) == 1, r * torch.sin(theta), r * torch.cos(theta))


def signs(index: torch.Tensor, stream: int, seed: int) -> torch.Tensor:
    """Rademacher signs (int64 +-1) number ``e``: bit e % 32 of word e / 32."""
    w = words(index >> 5, stream, seed)
    return 1 - 2 * ((w >> (index & 31)) & 1)
