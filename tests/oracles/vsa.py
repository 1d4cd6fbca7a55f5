"""Float64 oracles of the structured orthogonal matrices, built densely from their definitions
(scipy's Sylvester Hadamard matrix, explicit permutation matrices)."""

from __future__ import annotations

import numpy as np
import scipy.linalg


def hadamard_rounds(signs: np.ndarray) -> np.ndarray:
    """M = H D_R … H D_2 H D_1 with H = hadamard(d)/√d and D_i = diag(signs[i])."""
    d = signs.shape[1]
    H = scipy.linalg.hadamard(d).astype(np.float64) / np.sqrt(d)
    M = np.eye(d)
    for s in signs:
        M = H @ np.diag(s) @ M
    return M


def signed_permutation(perm: np.ndarray, signs: np.ndarray) -> np.ndarray:
    """M with (M x)_i = signs_i · x_perm(i)."""
    d = perm.size
    M = np.zeros((d, d))
    M[np.arange(d), perm] = signs
    return M


def _leaf_paths(obj, path=()):
    """(path, kind, payload) of every leaf of a parsed JSON value, by plain recursion."""
    if isinstance(obj, dict):
        if not obj:
            yield path, "atom", "{}"
        for k, v in obj.items():
            yield from _leaf_paths(v, path + (k,))
    elif isinstance(obj, (list, tuple)):
        if not obj:
            yield path, "atom", "[]"
        for i, v in enumerate(obj):
            yield from _leaf_paths(v, path + (i,))
    elif isinstance(obj, bool):
        yield path, "atom", "true" if obj else "false"
    elif obj is None:
        yield path, "atom", "null"
    elif isinstance(obj, str):
        yield path, "string", obj
    else:
        yield path, "number", obj


def encode_by_definition(obj, leaf, bind, seq_apply):
    """The JSON encoding by its definition: Σ over leaves of M_k1 P^i1 M_k2 … leaf, each power
    P^i applied as i separate products (the original O(n²) encoder), then normalised.

    ``leaf(path, kind, payload)`` gives a leaf vector (D,), ``bind(key, V)`` applies the role
    matrix of an object key to the rows of V, ``seq_apply(V)`` applies the sequence matrix P once.
    Everything is computed in float64.
    """
    total = None
    for path, kind, payload in _leaf_paths(obj):
        v = np.asarray(leaf(path, kind, payload), dtype=np.float64)[None]
        for step in reversed(path):
            if isinstance(step, int):
                for _ in range(step):
                    v = np.asarray(seq_apply(v), dtype=np.float64)
            else:
                v = np.asarray(bind(step, v), dtype=np.float64)
        total = v[0] if total is None else total + v[0]
    return total / np.linalg.norm(total)
