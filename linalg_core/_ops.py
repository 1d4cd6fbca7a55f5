"""The op registry: every kernel-level op, its backends in priority order, and dispatch.

An op (``fwht``, ``sparse_apply``, ...) has one implementation per backend. Backends are tried
in the fixed order ``cuda, triton, cpu, reference``; each states whether it is available at
all (``Backend.unavailable``) and whether it accepts a given call (``Impl.declines``), always
with a reason. ``backend="name"`` or the environment variable ``LINALG_CORE_BACKEND`` forces
one; forcing a backend that is unavailable or declines raises :class:`BackendError` with the
reason. The ``reference`` backend is pure torch and always present.

Backend implementations register themselves with ``OPS[name].register(...)`` when
``linalg_core.backends`` is imported (on first dispatch, never at ``import linalg_core``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Callable

import torch

BACKEND_ORDER = ("cuda", "triton", "cpu", "reference")


class BackendError(RuntimeError):
    """A forced backend is unavailable or does not support the call (the message says why)."""


@dataclass(frozen=True)
class Key:
    """What a backend sees when deciding whether to take a call."""

    device: torch.device
    dtype: torch.dtype
    forced: bool = False


def _reason_unavailable(name: str) -> str | None:
    from linalg_core.backends import availability

    return availability(name)


@dataclass(frozen=True)
class Impl:
    backend: str
    fn: Callable
    devices: frozenset[str]
    dtypes: frozenset[torch.dtype]
    # Extra condition: returns a reason to decline, or None. Gets the Key.
    check: Callable[[Key], str | None] | None = None

    def declines(self, key: Key) -> str | None:
        if key.device.type not in self.devices:
            return f"does not run on {key.device.type} tensors"
        if key.dtype not in self.dtypes:
            return f"does not support {key.dtype}"
        return self.check(key) if self.check else None


@dataclass
class Op:
    name: str
    doc: str
    impls: dict[str, Impl] = field(default_factory=dict)
    # successful selections by (key, backend, LINALG_CORE_BACKEND, TRITON_INTERPRET): dispatch is
    # a dictionary lookup after the first call (it is ~20 µs otherwise, as much as a small kernel)
    chosen: dict = field(default_factory=dict, repr=False)

    def register(self, backend: str, *, devices, dtypes, check=None):
        if backend not in BACKEND_ORDER:
            raise ValueError(f"unknown backend {backend!r}")

        def deco(fn):
            self.impls[backend] = Impl(backend, fn, frozenset(devices), frozenset(dtypes), check)
            self.chosen.clear()
            return fn

        return deco

    def explain(self, key: Key) -> list[tuple[str, str | None]]:
        """[(backend, reason it would not be used or None)] in priority order."""
        out = []
        for name in BACKEND_ORDER:
            impl = self.impls.get(name)
            reason = "has no implementation of this op" if impl is None else _reason_unavailable(name)
            if reason is None:
                reason = impl.declines(key)
            out.append((name, reason))
        return out

    def select(self, key: Key, backend: str | None = None) -> Impl:
        env = os.environ.get("LINALG_CORE_BACKEND")
        ck = (key, backend, env, os.environ.get("TRITON_INTERPRET"))
        impl = self.chosen.get(ck)
        if impl is None:
            impl = self.chosen[ck] = self._select(key, backend, env)
        return impl

    def _select(self, key: Key, backend: str | None, env: str | None) -> Impl:
        _load_backends()
        forced = backend or env or None
        if forced is not None:
            if forced not in BACKEND_ORDER:
                raise ValueError(f"backend={forced!r} is not one of {', '.join(BACKEND_ORDER)}")
            key = Key(key.device, key.dtype, forced=True)
            reason = dict(self.explain(key))[forced]
            if reason is not None:
                raise BackendError(f"{self.name}: backend {forced!r} {reason}")
            return self.impls[forced]
        tried = []
        for name, reason in self.explain(key):
            if reason is None:
                return self.impls[name]
            tried.append(f"{name}: {reason}")
        raise BackendError(f"{self.name}: no backend accepts {key}: " + "; ".join(tried))

    def __call__(self, *args, key: Key, backend: str | None = None, **kwargs):
        return self.select(key, backend).fn(*args, **kwargs)


OPS: dict[str, Op] = {}


def define(name: str, doc: str) -> Op:
    op = OPS.setdefault(name, Op(name, doc))
    return op


def _load_backends() -> None:
    import linalg_core.backends  # noqa: F401  (registers every backend once)


# Kernel-level ops. Contracts (all tensors contiguous, validated by the public layer):
fwht = define(
    "fwht",
    "fwht(x (B, n_valid, K), N, row_mult int8 (n_valid,) | None, scale, out_dtype, out=None) -> (B, N, K):"
    " scale * H_N (rows of x times row_mult, zero-padded to N) along the middle axis, computed in"
    " float64 when x or out_dtype is float64, else float32. ``out`` (contiguous, may be x itself)"
    " receives the result when given.",
)
fwht_select = define(
    "fwht_select",
    "fwht_select(x (B, n_valid, K), N, row_mult, scale, rows int64 (m,), out_dtype, work=None) -> (B, m, K):"
    " rows of fwht(x, N, row_mult, scale) (the SRHT), in out_dtype. ``work`` is an optional reusable"
    " scratch of shape (B, N, K) in the compute dtype; backends without a fused kernel ignore it.",
)
sparse_hash = define(
    "sparse_hash",
    "sparse_hash(n, col0, m, s, stream, seed, device) -> rows int32 (n, s), signs int8 (n, s).",
)
sparse_apply = define(
    "sparse_apply",
    "sparse_apply(A, rows, signs, m, scale, right) -> left: (B, m, d) = scale S A for A (B, n, d);"
    " right: (B, d, m) = scale A S^T for A (B, d, n); in the compute dtype of A.",
)
random_uint32 = define(
    "random_uint32",
    "random_uint32(count, offset, stream, seed, device) -> int64 words offset .. offset+count-1.",
)
random_fill = define(
    "random_fill",
    "random_fill(nrows, ncols, ld, row0, col0, stream, seed, scale, sign, dtype, device) ->"
    " (nrows, ncols): scale * X[(row0 + i) * ld + col0 + j], X normal or Rademacher.",
)

convert = define(
    "convert",
    "convert(x, out) -> int: out (contiguous, x's numel) = x cast to out's dtype, rounding to nearest"
    " even; returns the number of non-finite elements of x (converted, never dropped). out=None: only"
    " the count.",
)

weighted_gram = define(
    "weighted_gram",
    "weighted_gram(A (n, d), v (n,)) -> G (d, d) = A^T diag(v) A, in A's dtype (float32/64).",
)
row_quadratic_forms = define(
    "row_quadratic_forms",
    "row_quadratic_forms(A (n, d), M (d, d) symmetric) -> q (n,) with q_i = a_i^T M a_i.",
)

block_quantize = define(
    "block_quantize",
    "block_quantize(x (n,), block, mid float32 (2^bits - 1,) sorted, bits, scales=None, offsets=None) ->"
    " (packed uint8 (ceil(n·bits/8),), scales float32 (ceil(n/block),), nonfinite count): code_i ="
    " #{k : mid[k] < (x_i - o_b)·(1/max(s_b, 1e-38))} for i in block b (s_b = the block's absmax when"
    " scales is None, o_b = 0 when offsets is None), packed MSB-first (8 codes fill `bits` bytes;"
    " 4-bit codes are (c0 << 4) | c1). bits in {1, 2, 3, 4, 8}, or 0: no codes (an empty packed), only the"
    " absmaxes and the count; block a multiple of 8.",
)
block_dequantize = define(
    "block_dequantize",
    "block_dequantize(packed, bits, levels float32 (2^bits,), scales (nb,), offsets (nb,) | None, n, block,"
    " out_dtype, out=None) -> (n,): levels[code_i]·s_b + o_b in float32 (two roundings, no FMA), then cast;"
    " written into ``out`` (contiguous, n elements of out_dtype) when given.",
)

dgq_matmul = define(
    "dgq_matmul",
    "dgq_matmul(x int8 (M, K), qweight uint8 (N, K/2), zeros uint8 (N, G), group_scales int8 (N, G), weight_sums"
    " int32 (N,), group, x_scale=None, channel_scales=None) -> int32 (M, N) = x · w8ᵀ exactly, w8[n, k] ="
    " s_int[n, g]·(q[n, k] − z[n, g]) with q the high-then-low nibbles of qweight; x in [−127, 127] (ValueError"
    " for −128); K a multiple"
    " of group, group a multiple of 128. With x_scale (M,) and channel_scales (N,) float32: the float32"
    " (float(acc)·x_scale[m])·channel_scales[n] instead.",
)


def explain(op: str, device="cpu", dtype=torch.float32) -> list[tuple[str, str | None]]:
    """Which backends would serve ``op`` for tensors of this device and dtype, and why not.

    Example:
        >>> import linalg_core, torch
        >>> linalg_core.explain("fwht", "cpu", torch.float32)[-1]
        ('reference', None)
    """
    _load_backends()
    if op not in OPS:
        raise ValueError(f"op={op!r} is not one of {', '.join(sorted(OPS))}")
    return OPS[op].explain(Key(torch.device(device), dtype))
