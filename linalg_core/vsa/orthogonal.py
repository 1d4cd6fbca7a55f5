"""Orthogonal binding matrices for MBAT (Tissera and Manchester 2023, "Orthogonal Matrices for
MBAT Vector Symbolic Architectures"): dense Haar-random, and structured ones applied without
forming the d × d matrix.

* ``"haar"``: Q of the QR of a Gaussian matrix with the signs of diag(R) moved into Q
  (Mezzadri 2007), so Q is Haar-distributed; O(d²) per vector.
* ``"hadamard"``: M = H D₃ H D₂ H D₁ with normalised Walsh–Hadamard transforms H and random
  sign diagonals Dᵢ (three rounds, as in fast Johnson–Lindenstrauss and structured random
  rotations); O(d log d) through :func:`linalg_core.fwht`; d a power of two.
* ``"signed_permutation"``: M x = s ⊙ x[π]; O(d).

Every matrix is a deterministic function of (d, kind, seed, stream) through the Philox streams.
"""

from __future__ import annotations

import math

import torch

from linalg_core import _ops
from linalg_core import random as lcrandom

KINDS = ("haar", "hadamard", "signed_permutation")


class Orthogonal:
    """An orthogonal d × d matrix M applied to rows: ``apply(X) = X Mᵀ`` (each row x ↦ M x),
    ``apply_t(X) = X M`` (x ↦ Mᵀ x, the inverse)."""

    kind = ""

    def __init__(self, d: int, seed: int, stream: int):
        self.d, self.seed, self.stream = d, seed, stream

    def apply(self, X: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def apply_t(self, X: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def power(self, X: torch.Tensor, k: int) -> torch.Tensor:
        """Mᵏ x for each row (k < 0: (Mᵀ)^|k|)."""
        for _ in range(abs(k)):
            X = self.apply(X) if k > 0 else self.apply_t(X)
        return X

    def dense(self, dtype=torch.float64) -> torch.Tensor:
        """M as a d × d tensor (for tests and small d)."""
        return self.apply(torch.eye(self.d, dtype=dtype)).T.contiguous()


class Haar(Orthogonal):
    kind = "haar"

    def __init__(self, d, seed, stream):
        super().__init__(d, seed, stream)
        G = lcrandom.normal((d, d), seed=seed, stream=stream, dtype=torch.float64)
        Q, R = torch.linalg.qr(G)
        self.M = (Q * torch.sign(torch.diagonal(R))).to(torch.float32)
        self.MT = self.M.T.contiguous()

    def apply(self, X):
        return X @ (self.MT if X.dtype == torch.float32 else self.MT.to(X.dtype))

    def apply_t(self, X):
        return X @ (self.M if X.dtype == torch.float32 else self.M.to(X.dtype))


class Hadamard(Orthogonal):
    kind = "hadamard"
    ROUNDS = 3

    def __init__(self, d, seed, stream):
        if d < 2 or d & (d - 1):
            raise ValueError(f"dim={d} is not supported by kind='hadamard' (needs a power of two >= 2); "
                             f"use kind='haar' or 'signed_permutation'")
        super().__init__(d, seed, stream)
        self.signs = lcrandom.rademacher((self.ROUNDS, d), seed=seed, stream=stream, dtype=torch.float32)
        self.signs8 = self.signs.to(torch.int8)

    def _h(self, X, signs8):
        """H diag(signs) on each row, the signs applied inside the transform kernel."""
        X = X.contiguous() if X.dtype in (torch.float32, torch.float64) else X.to(torch.float32).contiguous()
        n = X.numel() // self.d
        y = _ops.fwht(X.view(n, self.d, 1), self.d, signs8, 1.0 / math.sqrt(self.d), X.dtype,
                      key=_ops.Key(X.device, X.dtype))
        return y.view(X.shape)

    def apply(self, X):  # H D3 H D2 H D1 x
        for i in range(self.ROUNDS):
            X = self._h(X, self.signs8[i])
        return X

    def apply_t(self, X):  # D1 H D2 H D3 H x
        X = self._h(X, None)
        for i in reversed(range(1, self.ROUNDS)):
            X = self._h(X, self.signs8[i])
        return X * self.signs[0].to(X.dtype)


class SignedPermutation(Orthogonal):
    kind = "signed_permutation"

    def __init__(self, d, seed, stream):
        super().__init__(d, seed, stream)
        keys = lcrandom.uint32(2 * d, seed=seed, stream=stream)
        self.perm = torch.argsort(keys[:d] * (1 << 32) + keys[d:], stable=True)  # 64-bit keys: no ties in practice
        self.inv = torch.argsort(self.perm)
        self.signs = lcrandom.rademacher(d, seed=seed, stream=stream, offset=2 * d, dtype=torch.float32)

    def apply(self, X):
        return X[..., self.perm] * self.signs.to(X.dtype)

    def apply_t(self, X):
        return (X * self.signs.to(X.dtype))[..., self.inv]


def orthogonal(d: int, *, kind: str = "hadamard", seed: int = 0, stream: int = 2**40) -> Orthogonal:
    """An orthogonal binding matrix.

    Args:
        d: dimension (a power of two for ``kind="hadamard"``).
        kind: ``"haar"``, ``"hadamard"`` or ``"signed_permutation"``.
        seed, stream: the Philox key and stream it is drawn from.

    Returns:
        :class:`Orthogonal` with ``apply`` (x ↦ M x on rows), ``apply_t`` (x ↦ Mᵀ x), ``power``, ``dense``.

    Shape:
        apply / apply_t: (…, d) -> (…, d);  dense(): (d, d)

    Example:
        >>> import torch
        >>> from linalg_core.vsa import orthogonal
        >>> M = orthogonal(256, kind="hadamard", seed=1)
        >>> x = torch.randn(3, 256)
        >>> bool(torch.allclose(M.apply_t(M.apply(x)), x, atol=1e-5))
        True
    """
    from linalg_core import _validate

    d = _validate.integer(d, "dim", low=1)
    if kind not in KINDS:
        raise ValueError(f"kind={kind!r} must be one of {KINDS}")
    return {"haar": Haar, "hadamard": Hadamard, "signed_permutation": SignedPermutation}[kind](d, seed, stream)
