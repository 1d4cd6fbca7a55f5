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

MAX_POWER_FLOPS = 1e12
"""Default ``max_flops`` of :meth:`Orthogonal.power`: the estimated cost above which a power is refused."""

_CALL_FLOPS = 2e4  # the fixed cost of one apply call (dispatch, allocation), in multiply-adds
_WIDE = (torch.float32, torch.float64)


class Orthogonal:
    """An orthogonal d × d matrix M applied to rows: ``apply(X) = X Mᵀ`` (each row x ↦ M x),
    ``apply_t(X) = X M`` (x ↦ Mᵀ x, the inverse).

    Results keep the dtype of X: float64 is computed in float64 (orthogonal to float64
    rounding), float32, float16 and bfloat16 in float32. Orthogonal role matrices are what make
    MBAT binding invertible and its sequences stable ("Orthogonal Matrices for MBAT Vector
    Symbolic Architectures"); build one with :func:`orthogonal`.

    Randomness:
        M is a function of ``(d, kind, seed, stream)`` only (see :func:`orthogonal`).

    Shape:
        M: (d, d);  X: (…, d)

    Example:
        >>> import torch
        >>> from linalg_core.vsa import orthogonal
        >>> M = orthogonal(8, seed=0)
        >>> X = torch.randn(3, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
        >>> type(M).__name__, torch.allclose(M.apply_t(M.apply(X)), X), tuple(M.dense().shape)
        ('Hadamard', True, (8, 8))
    """

    kind = ""

    def __init__(self, d: int, seed: int, stream: int):
        self.d, self.seed, self.stream = d, seed, stream

    # subclasses implement _apply / _apply_t for float32 and float64 rows
    def _apply(self, X: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _apply_t(self, X: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _row_flops(self) -> float:
        """Multiply-adds of one application to one row."""
        raise NotImplementedError

    def _dense64(self) -> tuple[torch.Tensor, float]:
        """M in float64 and the multiply-adds it took to form it."""
        return self.dense(torch.float64), self.d * self._row_flops() + _CALL_FLOPS

    @staticmethod
    def _compute(f, X: torch.Tensor) -> torch.Tensor:
        if X.dtype in _WIDE:
            return f(X)
        return f(X.to(torch.float32)).to(X.dtype)

    def apply(self, X: torch.Tensor) -> torch.Tensor:
        """M x for each row x of X.

        Args:
            X: the rows, float64 (computed in float64) or float32/16, bfloat16 (in float32).

        Returns:
            X Mᵀ in X's dtype.

        Shape:
            X: (…, d);  out: (…, d)
        """
        return self._compute(self._apply, X)

    def apply_t(self, X: torch.Tensor) -> torch.Tensor:
        """Mᵀ x (= M⁻¹ x) for each row x of X.

        Args:
            X: the rows, as for :meth:`apply`.

        Returns:
            X M in X's dtype.

        Shape:
            X: (…, d);  out: (…, d)
        """
        return self._compute(self._apply_t, X)

    def power(self, X: torch.Tensor, k: int, *, max_flops: float = MAX_POWER_FLOPS) -> torch.Tensor:
        """Mᵏ x for each row (k < 0: (Mᵀ)^|k|), by the cheaper of |k| applications and repeated
        squaring of the dense matrix in float64 (O(d³ log |k|)); both agree to rounding.

        Args:
            X: rows (…, d).
            k: the exponent, any integer.
            max_flops: refuse (ValueError) when the cheaper plan is estimated to take more
                multiply-adds than this; signed permutations take O(d log |k|) for any k.

        Shape:
            X: (…, d);  out: (…, d)
        """
        from linalg_core import _validate

        k = _validate.integer(k, "k")
        if k == 0:
            return X.clone()
        n, d, dtype = abs(k), self.d, X.dtype
        Xc = X if dtype in _WIDE else X.to(torch.float32)
        rows = Xc.numel() // d
        iterate = n * (rows * self._row_flops() + _CALL_FLOPS)
        square = 4.0 * n.bit_length() * d**3 + 2.0 * rows * d * d + (0 if self.kind == "haar" else
                                                                        d * self._row_flops())
        if min(iterate, square) > max_flops:
            raise ValueError(f"M^k with k={k} for a {self.kind} matrix of dimension {d} would take about "
                             f"{min(iterate, square):.1e} multiply-adds, above max_flops={max_flops:.1e}; "
                             f"use kind='signed_permutation' (any power in O(d log |k|)) or raise max_flops")
        if iterate <= square:
            step = self._apply if k > 0 else self._apply_t
            for _ in range(n):
                Xc = step(Xc)
        else:
            M, _ = self._dense64()
            Mk = torch.linalg.matrix_power(M if k > 0 else M.T, n)
            Xc = Xc @ Mk.T.to(device=Xc.device, dtype=Xc.dtype)
        return Xc if Xc.dtype == dtype else Xc.to(dtype)

    def dense(self, dtype=torch.float64) -> torch.Tensor:
        """M as a d × d tensor (for tests and small d)."""
        return self.apply(torch.eye(self.d, dtype=dtype)).T.contiguous()


class Haar(Orthogonal):
    kind = "haar"

    def __init__(self, d, seed, stream):
        super().__init__(d, seed, stream)
        G = lcrandom.normal((d, d), seed=seed, stream=stream, dtype=torch.float64)
        Q, R = torch.linalg.qr(G)
        self.M64 = Q * torch.sign(torch.diagonal(R))  # float64: x ↦ M x is orthogonal to float64 rounding
        self._M32 = None

    @property
    def M(self) -> torch.Tensor:
        """M in float32 (the matrix float32, float16 and bfloat16 rows are bound with)."""
        if self._M32 is None:
            self._M32 = self.M64.to(torch.float32)
        return self._M32

    @property
    def MT(self) -> torch.Tensor:
        """Mᵀ in float32 (a view)."""
        return self.M.T

    def _mat(self, X):
        return self.M64 if X.dtype == torch.float64 else self.M

    def _apply(self, X):
        return X @ self._mat(X).T

    def _apply_t(self, X):
        return X @ self._mat(X)

    def _row_flops(self):
        return 2.0 * self.d * self.d

    def _dense64(self):
        return self.M64, 0.0


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
        """H diag(signs) on each row (float32 or float64), the signs applied inside the transform kernel."""
        X = X.contiguous()
        n = X.numel() // self.d
        y, _ = _ops.fwht(X.view(n, self.d, 1), self.d, signs8, 1.0 / math.sqrt(self.d), X.dtype)
        return y.view(X.shape)

    def _apply(self, X):  # H D3 H D2 H D1 x
        for i in range(self.ROUNDS):
            X = self._h(X, self.signs8[i])
        return X

    def _apply_t(self, X):  # D1 H D2 H D3 H x
        X = self._h(X, None)
        for i in reversed(range(1, self.ROUNDS)):
            X = self._h(X, self.signs8[i])
        return X * self.signs[0].to(X.dtype)

    def _row_flops(self):
        return self.ROUNDS * self.d * (math.log2(self.d) + 1)


class SignedPermutation(Orthogonal):
    kind = "signed_permutation"

    def __init__(self, d, seed, stream):
        super().__init__(d, seed, stream)
        keys = lcrandom.uint32(2 * d, seed=seed, stream=stream)
        self.perm = torch.argsort(keys[:d] * (1 << 32) + keys[d:], stable=True)  # 64-bit keys: no ties in practice
        self.inv = torch.argsort(self.perm)
        self.signs = lcrandom.rademacher(d, seed=seed, stream=stream, offset=2 * d, dtype=torch.float32)

    # exact in every dtype (a gather and sign flips): no float32 round trip
    def apply(self, X):
        return X[..., self.perm] * self.signs.to(X.dtype)

    def apply_t(self, X):
        return (X * self.signs.to(X.dtype))[..., self.inv]

    _apply, _apply_t = apply, apply_t

    def _row_flops(self):
        return float(self.d)

    def power(self, X, k, *, max_flops: float = MAX_POWER_FLOPS):
        """Mᵏ x for each row, by composing the signed permutation with itself (O(d log |k|) for
        any k, exact: the result equals |k| applications bit for bit). ``max_flops`` is unused.

        Shape:
            X: (…, d);  out: (…, d)
        """
        from linalg_core import _validate

        k = _validate.integer(k, "k")
        if k == 0:
            return X.clone()
        # (p, s) stands for x ↦ s ⊙ x[p]; applying (p1, s1) then (p2, s2) is (p1[p2], s2 ⊙ s1[p2])
        base = (self.perm, self.signs) if k > 0 else (self.inv, self.signs[self.inv])
        acc = None
        n = abs(k)
        while n:
            if n & 1:
                acc = base if acc is None else (acc[0][base[0]], base[1] * acc[1][base[0]])
            n >>= 1
            if n:
                base = (base[0][base[0]], base[1] * base[1][base[0]])
        p, s = acc
        return X[..., p] * s.to(X.dtype)


def orthogonal(d: int, *, kind: str = "hadamard", seed: int = 0, stream: int = 2**40) -> Orthogonal:
    """An orthogonal binding matrix (MBAT: Gallant and Okaywe 2013, "Representing Objects,
    Relations, and Sequences"; orthogonal role matrices: Gallant 2022, "Orthogonal Matrices for
    MBAT Vector Symbolic Architectures, and a 'Soft' VSA Representation for JSON").

    Args:
        d: dimension (a power of two for ``kind="hadamard"``).
        kind: ``"haar"``, ``"hadamard"`` or ``"signed_permutation"``.
        seed, stream: the Philox key and stream it is drawn from.

    Returns:
        :class:`Orthogonal` with ``apply`` (x ↦ M x on rows), ``apply_t`` (x ↦ Mᵀ x), ``power``, ``dense``.

    Shape:
        apply / apply_t: (…, d) -> (…, d);  dense(): (d, d)

    Randomness:
        The matrix is a function of ``(d, kind, seed, stream)`` only (Philox, see
        :mod:`linalg_core.random`): the same on every machine.

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
