"""MBAT (Matrix Binding of Additive Terms; Gallant and Okaywe 2013) with orthogonal role
matrices: a structure is one vector, Σ_roles M_role · value, decoded by Mᵀ_role and a nearest
neighbour search among candidate values."""

from __future__ import annotations

import hashlib

import torch

from linalg_core import _validate
from linalg_core import random as lcrandom
from linalg_core.vsa.orthogonal import KINDS, Orthogonal, orthogonal


def stable_hash(text: str) -> int:
    """64-bit BLAKE2b of the UTF-8 text: the same in every process and on every machine (never
    Python's salted ``hash()``). Role and atom names become random streams through it.

    Args:
        text: any string.

    Returns:
        An int in [0, 2^64).

    Example:
        >>> from linalg_core.vsa import stable_hash
        >>> stable_hash("color")
        12646839303467376742
    """
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "little")


def _stream(prefix: str, name: str) -> int:
    return (1 << 63) | (stable_hash(prefix + "\x00" + name) >> 1)  # user stream range, >= 2^32


class MBAT:
    """A codebook of role matrices and atom vectors derived from names, and the MBAT algebra
    (Gallant and Okaywe 2013, "Representing Objects, Relations, and Sequences"; orthogonal role
    matrices: Gallant 2022, "Orthogonal Matrices for MBAT Vector Symbolic Architectures, and a
    'Soft' VSA Representation for JSON").

    Args:
        dim: vector dimension D (a power of two for ``kind="hadamard"``).
        kind: role matrices, ``"hadamard"`` (default, O(D log D)), ``"signed_permutation"``
            (O(D)) or ``"haar"`` (dense, O(D²)).
        seed: the codebook's key: roles and atoms are functions of (seed, kind, name) only.

    Atoms are unit vectors with i.i.d. Gaussian directions; two different names are nearly
    orthogonal (|cos| ≈ 1/√D).

    Randomness:
        A role's matrix and an atom's vector come from the Philox stream named by
        :func:`stable_hash` of the name, keyed by ``seed``: the same codebook in every process.

    Example:
        >>> from linalg_core.vsa import MBAT
        >>> m = MBAT(1024, seed=0)
        >>> v = m.bundle([m.bind("color", m.atom("red")), m.bind("shape", m.atom("square"))])
        >>> m.cleanup(m.unbind("color", v), ["red", "green", "blue"])[0]
        'red'
    """

    def __init__(self, dim: int, *, kind: str = "hadamard", seed: int = 0):
        self.dim = _validate.integer(dim, "dim", low=2)
        if kind not in KINDS:
            raise ValueError(f"kind={kind!r} must be one of {KINDS}")
        self.kind, self.seed = kind, _validate.seed(seed)
        self._roles: dict[str, Orthogonal] = {}
        self._atoms: dict[str, torch.Tensor] = {}
        orthogonal(self.dim, kind=kind, seed=self.seed)  # dimension check up front

    # --- codebook ------------------------------------------------------------------------------
    def role(self, name: str) -> Orthogonal:
        """The orthogonal matrix of a role name."""
        M = self._roles.get(name)
        if M is None:
            M = self._roles[name] = orthogonal(self.dim, kind=self.kind, seed=self.seed, stream=_stream("role", name))
        return M

    def atom(self, name: str) -> torch.Tensor:
        """The unit vector (D,) of an atom name."""
        v = self._atoms.get(name)
        if v is None:
            g = lcrandom.normal(self.dim, seed=self.seed, stream=_stream("atom", name))
            v = self._atoms[name] = g / g.norm()
        return v

    def atoms(self, names) -> torch.Tensor:
        """(len(names), D) stacked atoms."""
        return torch.stack([self.atom(n) for n in names])

    # --- algebra -------------------------------------------------------------------------------
    def _vectors(self, x, name):
        t, boundary = _validate.float_array(x, name, min_ndim=1)
        if t.shape[-1] != self.dim:
            raise ValueError(f"{name} has last dimension {t.shape[-1]}, expected dim={self.dim}")
        _validate.check_finite(t, name)
        return t, boundary

    def bind(self, role: str | Orthogonal, x):
        """M_role x for x (D,) or a batch (…, D).

        The result has the type and dtype of x (float64 bound in float64; float32, float16 and
        bfloat16 in float32).

        Args:
            role: a role name (its matrix from :meth:`role`) or an :class:`Orthogonal` matrix.
            x: the vector or batch of vectors to bind.

        Returns:
            M_role x, in x's array type and dtype.

        Shape:
            x: (…, D);  out: (…, D)

        Example:
            >>> import torch
            >>> from linalg_core.vsa import MBAT
            >>> m = MBAT(64, seed=0)
            >>> y = m.bind("color", m.atom("red"))
            >>> round(float(y.norm()), 6), abs(float(m.similarity(y, m.atom("red")))) < 0.5
            (1.0, True)
        """
        M = self.role(role) if isinstance(role, str) else role
        t, boundary = self._vectors(x, "x")
        return boundary.out(M.apply(t))

    def unbind(self, role: str | Orthogonal, y):
        """Mᵀ_role y: the exact inverse of :meth:`bind` (orthogonal M), same types and dtypes.

        Args:
            role: a role name or an :class:`Orthogonal` matrix.
            y: the vector or batch of vectors to unbind.

        Returns:
            Mᵀ_role y, in y's array type and dtype.

        Shape:
            y: (…, D);  out: (…, D)

        Example:
            >>> import torch
            >>> from linalg_core.vsa import MBAT
            >>> m = MBAT(64, seed=0)
            >>> torch.allclose(m.unbind("color", m.bind("color", m.atom("red"))), m.atom("red"), atol=1e-6)
            True
        """
        M = self.role(role) if isinstance(role, str) else role
        t, boundary = self._vectors(y, "y")
        return boundary.out(M.apply_t(t))

    @staticmethod
    def bundle(vectors, weights=None, *, normalize: bool = True) -> torch.Tensor:
        """Σ_i w_i v_i over a list or a (n, D) stack, scaled to unit norm by default."""
        V = torch.stack(list(vectors)) if not isinstance(vectors, torch.Tensor) else vectors
        if V.dim() == 1:
            V = V[None]
        s = V.sum(0) if weights is None else (torch.as_tensor(weights, dtype=V.dtype)[:, None] * V).sum(0)
        if normalize:
            n = s.norm()
            s = s / n if n > 0 else s
        return s

    @staticmethod
    def similarity(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """Cosine similarity of the last axis (broadcasting)."""
        return torch.nn.functional.cosine_similarity(a, b, dim=-1)

    def cleanup(self, v: torch.Tensor, candidates) -> tuple:
        """(best candidate, its cosine) for a vector; for a batch (n, D), lists of both.

        Args:
            v: a vector (D,) or a batch (n, D).
            candidates: atom names, or a (C, D) tensor (then the index is returned).

        Returns:
            ``(label, cosine)`` for a vector; ``(labels, cosines)`` lists for a batch.

        Shape:
            v: (D,) or (n, D);  candidates: (C, D) when a tensor
        """
        C = self.atoms(candidates) if not isinstance(candidates, torch.Tensor) else candidates
        V = v[None] if v.dim() == 1 else v
        sims = torch.nn.functional.normalize(V, dim=-1) @ torch.nn.functional.normalize(C, dim=-1).T
        best = sims.argmax(1)
        labels = best.tolist() if isinstance(candidates, torch.Tensor) else [candidates[i] for i in best.tolist()]
        vals = sims[torch.arange(len(best)), best].tolist()
        return (labels[0], vals[0]) if v.dim() == 1 else (labels, vals)
