"""The op registry: every kernel-level op as a torch custom op, its backends in priority order,
and dispatch.

Each op (``fwht``, ``sparse_apply``, ``dgq_matmul``, ...) is defined here once, as
``torch.ops.linalg_core.<name>`` with a schema and a fake (meta) kernel, so ``torch.compile``
(``fullgraph=True``), ``torch.export`` and CUDA graphs see it as one opaque node with known
output shapes. Its device kernels (CPU, CUDA, and a composite fallback for other devices) choose
among the backend implementations registered for it, tried in the fixed order ``cuda, triton,
cpu, reference``; each backend states whether it is available at all and whether it accepts a
given call (:meth:`Impl.declines`), always with a reason. ``backend="name"`` or the environment
variable ``LINALG_CORE_BACKEND`` forces one; forcing a backend that is unavailable or declines
raises :class:`BackendError` with the reason. The ``reference`` backend is pure torch and always
present.

Each op belongs to one family (:data:`FAMILIES`), whose name its files share in every layer:
``linalg_core/backends/<backend>/<family>.py``, ``csrc/cpu/<family>.cpp``,
``csrc/include/linalg_core/<family>.h``, ``csrc/cuda/<family>/``, ``python/bind_<family>.cpp``,
``tests/oracles/<family>.py``, ``tests/test_<family>.py`` and ``linalg_core/bench/<family>.py``
(``tests/test_families.py`` checks them).

The registry is one-way: this module imports no backend. Backends register their
implementations (:meth:`Op.register`) and their availability (:func:`declare_backend`); the
package installs the loader (:func:`set_loader`) that imports a family's backend modules at the
first dispatch of one of its ops (:func:`load_backends`), never at ``import linalg_core``.

Calling an op (:meth:`Op.__call__`): in plain eager mode (real tensors, no gradient needed, no
``torch.compile`` / ``torch.func`` / fake-tensor tracing) the chosen implementation runs directly,
without the dispatcher; otherwise the call goes through ``torch.ops.linalg_core.<name>`` (the
fake kernel, the autograd formula, the vmap rule). Both run the same implementation.

A public function whose per-call cost matters (``fwht``) first offers its arguments to
:attr:`Op.direct`: a compiled function a backend registered with its implementation, which does
the public checks, the allocation and the kernel call in one binding call for the plain eager
case and returns None for anything else (the public function then takes its full path). It is
used only while dispatch would choose that backend anyway. A layer's direct form (``DGQLinear``)
takes, instead of its weight tensors, a plan :attr:`Op.prepare` made from them: the weights are
checked once, and each call only re-identifies them (same tensors, versions and data pointers;
a stale plan answers False and the layer validates its weights again).
"""

from __future__ import annotations

import os
import sys
import threading
from dataclasses import dataclass, field
from typing import Callable

import torch

from linalg_core._trace import traced

NAMESPACE = "linalg_core"
BACKEND_ORDER = ("cuda", "triton", "cpu", "reference")
# The op families, each the name of the files that implement its ops in every layer.
FAMILIES = ("sketch", "random", "convert", "sampling", "quant", "qmatmul", "nola")
ENV_BACKEND = "LINALG_CORE_BACKEND"


class BackendError(RuntimeError):
    """A forced backend is unavailable or does not support the call (the message says why).

    Example:
        >>> import torch, linalg_core as lc
        >>> try:
        ...     lc.fwht(torch.ones(4), backend="cuda")
        ... except lc.BackendError as e:
        ...     print(type(e).__name__, str(e).startswith("fwht: backend"))
        BackendError True
    """


@dataclass(frozen=True)
class Key:
    """What a backend sees when deciding whether to take a call."""

    device: torch.device
    dtype: torch.dtype
    forced: bool = False


# --- backends: declared by the backend packages, loaded by the package's loader ------------------

def env_reader(key: str):
    """A fast reader of environment variable ``key``, for settings read on every call (so that
    setting them at run time takes effect): CPython's environment mapping keeps the encoded
    strings in ``_data``; elsewhere ``os.environ.get``."""
    data = getattr(os.environ, "_data", None)
    if isinstance(data, dict):
        encoded = os.environ.encodekey(key)

        def read():
            v = data.get(encoded)
            return None if v is None else os.environ.decodevalue(v)

        return read
    return lambda: os.environ.get(key)


_env_backend = env_reader(ENV_BACKEND)

_AVAILABILITY: dict[str, Callable[[], str | None]] = {"reference": lambda: None}
_LOADER: list[Callable[[list[str]], None]] = []
# families whose backend modules the loader has imported; "" once the backends are declared
_LOADED: set[str] = set()
_LOADING: set[str] = set()  # families whose modules this thread's loader is importing now
_LOAD_LOCK = threading.RLock()


def set_loader(loader: Callable[[list[str]], None]) -> None:
    """Install the function that declares the backends and imports (and so registers) their
    modules of the given families, run at the first dispatch of an op of each family. Set by
    ``linalg_core/__init__.py``."""
    _LOADER[:] = [loader]


def load_backends(families=None) -> None:
    """Declare the backends and import their modules of ``families`` (default: every family of
    :data:`FAMILIES`; ``()``: declare only), each once: a first call imports only the family it
    dispatches (an rsvd imports ``random`` and ``convert``, not the quantization kernels)."""
    todo = {""}.union(FAMILIES if families is None else families) - _LOADED
    if not todo or not _LOADER:
        return
    with _LOAD_LOCK:  # another thread (a Dask worker thread) waits here until the modules are registered
        todo -= _LOADED | _LOADING
        if todo:
            _LOADING.update(todo)  # the loader's own imports may dispatch: no recursion into the same families
            try:
                _LOADER[0](sorted(todo - {""}))
                _LOADED.update(todo)
            finally:
                _LOADING.difference_update(todo)


def declare_backend(name: str, availability: Callable[[], str | None]) -> None:
    """Called by a backend package: ``availability()`` gives None when the backend can run here,
    else the reason it cannot."""
    if name not in BACKEND_ORDER:
        raise ValueError(f"unknown backend {name!r}")
    _AVAILABILITY[name] = availability
    for op in OPS.values():
        op.changed()


def availability(name: str) -> str | None:
    """``None`` when backend ``name`` can run here, else the reason it cannot (declares the
    backends; imports none of their families: :func:`load_backends` does)."""
    if name not in BACKEND_ORDER:
        raise ValueError(f"backend={name!r} is not one of {', '.join(BACKEND_ORDER)}")
    load_backends(())
    check = _AVAILABILITY.get(name)
    return "is not installed in this build" if check is None else check()


# --- implementations and ops -----------------------------------------------------------------------

@dataclass(frozen=True)
class Impl:
    backend: str
    fn: Callable
    devices: frozenset[str]
    dtypes: frozenset[torch.dtype]
    # Extra condition: returns a reason to decline, or None. Gets the Key.
    check: Callable[[Key], str | None] | None = None
    # the module that registered it (linalg_core.backends.<backend>.<family>)
    module: str = ""
    # the backend's one-call form of the op's public function for plain eager calls (see Op.direct)
    direct: Callable | None = None
    # what that form takes as its prepared argument, made once per change of it (see Op.prepare)
    prepare: Callable | None = None

    def declines(self, key: Key) -> str | None:
        if key.device.type not in self.devices:
            return f"does not run on {key.device.type} tensors"
        if key.dtype not in self.dtypes:
            return f"does not support {key.dtype}"
        return self.check(key) if self.check else None


_interpreters = torch._C._functorch.peek_interpreter_stack
_VMAP = torch._C._functorch.TransformType.Vmap


def _plain(args, tensors: tuple[int, ...]) -> bool:
    """Whether a call may skip the dispatcher: eager mode, no dispatch mode (fake tensors,
    tracing), no ``torch.func`` transform, and every tensor argument (at positions ``tensors``) a
    plain tensor that autograd does not need to track."""
    if traced():
        return False
    grad = _grad_enabled()
    for i in tensors:
        a = args[i]
        if type(a) is _Tensor:
            if grad and a.requires_grad:
                return False
        elif a is not None:  # a subclass: FakeTensor, FunctionalTensor, Parameter, ...
            return False
    return True


_grad_enabled = torch.is_grad_enabled
_Tensor = torch.Tensor


@dataclass
class Op:
    """A kernel-level op: ``torch.ops.linalg_core.<name>`` and its backend implementations.

    ``key(*args)`` gives the (device, dtype) a call is dispatched on.
    """

    name: str
    schema: str
    doc: str
    key: Callable[..., tuple[torch.device, torch.dtype]]
    # the op family (one of FAMILIES): the name of its files in every layer
    family: str = ""
    # positions of outputs that implementations may return as Python ints (element counts, read
    # by eager callers without a tensor round trip); the dispatcher path makes them 0-d tensors
    counts: tuple[int, ...] = ()
    # positions of the Tensor / Tensor? arguments in the schema
    tensors: tuple[int, ...] = ()
    impls: dict[str, Impl] = field(default_factory=dict)
    # the autograd.Function of a differentiable op, for calls under torch.func transforms
    function: type | None = field(default=None, repr=False)
    # successful selections by (device, dtype, backend, LINALG_CORE_BACKEND): dispatch is a
    # dictionary lookup after the first call
    chosen: dict = field(default_factory=dict, repr=False)
    # direct(*public args) -> result | None: the one-call form of the public function for plain
    # eager calls, registered by the backend that dispatch chooses for every device and dtype it
    # covers (returns None, "take the full path", for anything else, and always when no backend
    # supplies one or another backend would be chosen). Resolved at the first call after a change
    # of the registry, like `chosen`.
    direct: Callable = field(default=None, repr=False)
    # prepare(*args) -> object | None: the prepared argument the direct form of a layer takes (its
    # weights checked once, then re-identified per call: DGQLinear), from the same backend as
    # `direct`; None when no backend supplies one. Resolved like `direct`.
    prepare: Callable = field(default=None, repr=False)

    def __post_init__(self):
        self.changed()

    def changed(self) -> None:
        """Forget the cached choices (an implementation or a backend's availability changed)."""
        self.chosen.clear()
        self.direct = self._resolve_direct
        self.prepare = self._resolve_prepare

    def _direct_impl(self) -> Impl | None:
        """The implementation whose direct form is used: one that unforced dispatch chooses for
        everything it covers (None: none)."""
        load_backends([self.family])  # (registers the family, which resets `direct` and `prepare`)
        found = None
        for impl in self.impls.values():
            if impl.direct is not None and self._chooses(impl):
                found = impl
        return found

    def _resolve_direct(self, *args):
        """The first direct call since a change: find the function (or none) and make it the
        attribute, then call it."""
        impl = self._direct_impl()
        self.direct = fn = _no_direct if impl is None else impl.direct
        return fn(*args)

    def _resolve_prepare(self, *args):
        """The first prepare call since a change, as :meth:`_resolve_direct`."""
        impl = self._direct_impl()
        self.prepare = fn = _no_direct if impl is None or impl.prepare is None else impl.prepare
        return fn(*args)

    def _chooses(self, impl: Impl) -> bool:
        """Whether unforced dispatch picks ``impl`` for every device type and dtype it declares."""
        try:
            return all(self._select(Key(torch.device(d), dt), None) is impl for d in impl.devices for dt in impl.dtypes)
        except BackendError:
            return False

    @property
    def overload(self) -> torch._ops.OpOverload:
        """``torch.ops.linalg_core.<name>.default``."""
        return getattr(getattr(torch.ops, NAMESPACE), self.name).default

    def register(self, backend: str, *, devices, dtypes, check=None, direct=None, prepare=None):
        """Decorator: ``fn`` implements this op for ``backend`` on these device types and dtypes;
        ``direct``: the backend's one-call form of the public function (:attr:`direct`), ``prepare``
        what makes its prepared argument (:attr:`prepare`)."""
        if backend not in BACKEND_ORDER:
            raise ValueError(f"unknown backend {backend!r}")
        module = sys._getframe(1).f_globals.get("__name__", "")

        def deco(fn):
            self.impls[backend] = Impl(backend, fn, frozenset(devices), frozenset(dtypes), check, module, direct,
                                       prepare)
            self.changed()
            return fn

        return deco

    def explain(self, key: Key) -> list[tuple[str, str | None]]:
        """[(backend, reason it would not be used or None)] in priority order."""
        load_backends([self.family])
        out = []
        for name in BACKEND_ORDER:
            impl = self.impls.get(name)
            reason = "has no implementation of this op" if impl is None else availability(name)
            if reason is None:
                reason = impl.declines(key)
            out.append((name, reason))
        return out

    def select(self, key: Key, backend: str | None = None) -> Impl:
        return self._cached(key.device, key.dtype, backend)

    def _cached(self, device, dtype, backend) -> Impl:
        env = _env_backend()
        impl = self.chosen.get((device, dtype, backend, env))
        if impl is None:
            impl = self.chosen[(device, dtype, backend, env)] = self._select(Key(device, dtype), backend or env or None)
        return impl

    def _select(self, key: Key, forced: str | None) -> Impl:
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

    def implementation(self, *args, backend: str | None = None) -> Callable:
        """The implementation a call with these arguments runs."""
        return self._cached(*self.key(*args), backend).fn

    def kernel(self, *args, backend: str | None = None):
        """The device kernel registered with torch: the chosen implementation (counts as 0-d
        int64 tensors)."""
        out = self.implementation(*args, backend=backend)(*args)
        if not self.counts:
            return out
        device = self.key(*args)[0]
        if isinstance(out, tuple):
            return tuple(torch.tensor(v, dtype=torch.int64, device=device) if i in self.counts and
                         not isinstance(v, torch.Tensor) else v for i, v in enumerate(out))
        return out if isinstance(out, torch.Tensor) else torch.tensor(out, dtype=torch.int64, device=device)

    def __call__(self, *args, backend: str | None = None):
        if _plain(args, self.tensors):  # eager: straight to the implementation (a dictionary lookup once chosen)
            device, dtype = self.key(*args)
            impl = self.chosen.get((device, dtype, backend, _env_backend()))
            if impl is None:
                impl = self._cached(device, dtype, backend)
            return impl.fn(*args)
        if self.function is not None and not torch.compiler.is_compiling():
            top = _interpreters()
            if top is not None and top.key() != _VMAP:  # grad / jvp transforms: the Function's formula
                return self.function.apply(*args, backend)
        return self.overload(*args, backend=backend)


def _no_direct(*args) -> None:
    """Op.direct when no backend supplies one: every call takes the public function's full path."""
    return None


OPS: dict[str, Op] = {}
_LIB = torch.library.Library(NAMESPACE, "DEF")


def define(name: str, schema: str, doc: str, *, family: str, key, fake, counts: tuple[int, ...] = ()) -> Op:
    """Define ``torch.ops.linalg_core.<name>(<schema>, str? backend=None)`` with its fake kernel and
    device kernels that dispatch to the registered backends; ``family`` (one of :data:`FAMILIES`)
    names the files that implement it."""
    if family not in FAMILIES:
        raise ValueError(f"family={family!r} is not one of {', '.join(FAMILIES)}")
    if name in OPS:
        return OPS[name]
    args, ret = schema.split(" -> ")
    _LIB.define(f"{name}{args[:-1]}, *, str? backend=None) -> {ret}")
    tensors = tuple(i for i, a in enumerate(args[1:-1].split(", ")) if a.startswith("Tensor"))
    op = OPS[name] = Op(name, schema, doc, key, family=family, counts=counts, tensors=tensors)
    for dispatch_key in ("CPU", "CUDA", "CompositeExplicitAutograd"):
        _LIB.impl(name, op.kernel, dispatch_key)
    torch.library.register_fake(f"{NAMESPACE}::{name}", lib=_LIB)(
        lambda *a, backend=None, _fake=fake: _fake(*a))
    return op


def _tensor_key(i: int, dtype=None):
    """Key from positional argument ``i`` (a tensor): its device and dtype (or ``dtype``)."""
    if dtype is None:
        if i == 0:
            return lambda x, *_: (x.device, x.dtype)
        return lambda *a: (a[i].device, a[i].dtype)
    return lambda *a: (a[i].device, dtype)


def _empty(shape, dtype, device) -> torch.Tensor:
    return torch.empty(shape, dtype=dtype, device=device)


def _compute(*dtypes) -> torch.dtype:
    return torch.float64 if torch.float64 in dtypes else torch.float32


# --- the kernel-level ops. Contracts (tensors contiguous, validated by the public layer) ----------

# The sketching ops also return the NaN/Inf count of their result (computed while it is in cache),
# which the public layer's finiteness check reads instead of making a second pass.
fwht = define(
    "fwht", "(Tensor x, int N, Tensor? row_mult, float scale, ScalarType out_dtype) -> (Tensor, Tensor)",
    "fwht(x (B, n_valid, K), N, row_mult int8 (n_valid,) | None, scale, out_dtype) -> ((B, N, K), count): scale *"
    " H_N (rows of x times row_mult, zero-padded to N) along the middle axis, computed in float64 when x or"
    " out_dtype is float64, else float32; count: its non-finite entries.",
    family="sketch",
    key=_tensor_key(0),
    fake=lambda x, N, row_mult, scale, out_dtype: (_empty((x.shape[0], N, x.shape[2]), out_dtype, x.device),
                                                   _empty((), torch.int64, x.device)),
    counts=(1,),
)
fwht_into = define(
    "fwht_into", "(Tensor x, int N, Tensor? row_mult, float scale, Tensor(a!) out) -> Tensor",
    "fwht_into(x, N, row_mult, scale, out (B, N, K)) -> count: fwht written into ``out`` (contiguous; may be x"
    " itself when n_valid = N).",
    family="sketch",
    key=_tensor_key(0),
    fake=lambda x, N, row_mult, scale, out: _empty((), torch.int64, x.device),
    counts=(0,),
)
fwht_select = define(
    "fwht_select", "(Tensor x, int N, Tensor? row_mult, float scale, Tensor rows, ScalarType out_dtype) -> "
    "(Tensor, Tensor)",
    "fwht_select(x (B, n_valid, K), N, row_mult, scale, rows int64 (m,), out_dtype) -> ((B, m, K), count): rows"
    " of fwht(x, N, row_mult, scale) (the SRHT), in out_dtype.",
    family="sketch",
    key=_tensor_key(0),
    fake=lambda x, N, row_mult, scale, rows, out_dtype: (
        _empty((x.shape[0], rows.shape[0], x.shape[2]), out_dtype, x.device), _empty((), torch.int64, x.device)),
    counts=(1,),
)
sparse_hash = define(
    "sparse_hash", "(int n, int col0, int m, int s, int stream, int seed, Device device) -> (Tensor, Tensor)",
    "sparse_hash(n, col0, m, s, stream, seed, device) -> rows int32 (n, s), signs int8 (n, s) of the sparse"
    " sketch columns col0 .. col0 + n - 1 (seed as a signed 64-bit integer: see ``as_int64``).",
    family="sketch",
    key=lambda n, col0, m, s, stream, seed, device: (torch.device(device), torch.int32),
    fake=lambda n, col0, m, s, stream, seed, device: (_empty((n, s), torch.int32, device),
                                                      _empty((n, s), torch.int8, device)),
)
sparse_apply = define(
    "sparse_apply", "(Tensor A, Tensor rows, Tensor signs, int m, float scale, bool right) -> (Tensor, Tensor)",
    "sparse_apply(A, rows, signs, m, scale, right) -> (left: (B, m, d) = scale S A for A (B, n, d); right:"
    " (B, d, m) = scale A S^T for A (B, d, n); in the compute dtype of A, count).",
    family="sketch",
    key=_tensor_key(0),
    fake=lambda A, rows, signs, m, scale, right: (_empty(
        (A.shape[0], A.shape[1], m) if right else (A.shape[0], m, A.shape[2]), _compute(A.dtype), A.device),
        _empty((), torch.int64, A.device)),
    counts=(1,),
)
random_uint32 = define(
    "random_uint32", "(int count, int offset, int stream, int seed, Device device) -> Tensor",
    "random_uint32(count, offset, stream, seed, device) -> int64 words offset .. offset+count-1.",
    family="random",
    key=lambda count, offset, stream, seed, device: (torch.device(device), torch.int64),
    fake=lambda count, offset, stream, seed, device: _empty((count,), torch.int64, device),
)
random_fill = define(
    "random_fill",
    "(int nrows, int ncols, int ld, int row0, int col0, int stream, int seed, float scale, bool sign,"
    " ScalarType dtype, Device device) -> Tensor",
    "random_fill(nrows, ncols, ld, row0, col0, stream, seed, scale, sign, dtype, device) -> (nrows, ncols):"
    " scale * X[(row0 + i) * ld + col0 + j], X normal or Rademacher.",
    family="random",
    key=lambda nrows, ncols, ld, row0, col0, stream, seed, scale, sign, dtype, device: (torch.device(device), dtype),
    fake=lambda nrows, ncols, ld, row0, col0, stream, seed, scale, sign, dtype, device: _empty((nrows, ncols), dtype,
                                                                                              device),
)
nola_combine = define(
    "nola_combine", "(Tensor coeffs, int rows, int cols, int stream_base, int seed, float scale) -> Tensor",
    "nola_combine(coeffs (k,) float32/float64, rows, cols, stream_base, seed, scale) -> (rows, cols) in coeffs'"
    " dtype: scale * sum_i coeffs[i] * Z_i, Z_i[r, c] = standard normal number r * cols + c of stream"
    " stream_base + i (random_fill's normals; stream_base + k - 1 < 2^64), the bases never stored.",
    family="nola",
    key=_tensor_key(0),
    fake=lambda coeffs, rows, cols, stream_base, seed, scale: _empty((rows, cols), coeffs.dtype, coeffs.device),
)
nola_coeff_grad = define(
    "nola_coeff_grad", "(Tensor grad, int k, int stream_base, int seed, float scale) -> Tensor",
    "nola_coeff_grad(grad (rows, cols) float32/float64, k, stream_base, seed, scale) -> (k,) in grad's dtype:"
    " scale * <Z_i, grad> for i < k, the adjoint of nola_combine (its backward).",
    family="nola",
    key=_tensor_key(0),
    fake=lambda grad, k, stream_base, seed, scale: _empty((k,), grad.dtype, grad.device),
)
convert = define(
    "convert", "(Tensor x, ScalarType dtype) -> (Tensor, Tensor)",
    "convert(x, dtype) -> (x cast to dtype rounding to nearest even, int64 count of non-finite elements"
    " of x (converted, never dropped)).",
    family="convert",
    key=_tensor_key(0),
    fake=lambda x, dtype: (_empty(x.shape, dtype, x.device), _empty((), torch.int64, x.device)),
    counts=(1,),
)
convert_into = define(
    "convert_into", "(Tensor x, Tensor(a!) out) -> Tensor",
    "convert_into(x, out) -> count: ``out`` (contiguous, x's numel) = x cast to out's dtype; the int64 count"
    " of non-finite elements of x.",
    family="convert",
    key=_tensor_key(0),
    fake=lambda x, out: _empty((), torch.int64, x.device),
    counts=(0,),
)
count_nonfinite = define(
    "count_nonfinite", "(Tensor x) -> Tensor",
    "count_nonfinite(x) -> int64 count of the NaN and ±Inf elements of x (one read pass).",
    family="convert",
    key=_tensor_key(0),
    fake=lambda x: _empty((), torch.int64, x.device),
    counts=(0,),
)
lowrank_update = define(
    "lowrank_update", "(Tensor W, Tensor B, Tensor A, float s, Tensor(a!) out) -> ()",
    "lowrank_update(W (m, n) float32 | float16 | bfloat16, B float32 (m, r), A float32 (r, n), s,"
    " out (m, n) of W's dtype): out = W - s·B·A computed in float32 and rounded once to W's dtype; out may be W"
    " itself.",
    family="convert",
    key=_tensor_key(0),
    fake=lambda W, B, A, s, out: None,
)
weighted_gram = define(
    "weighted_gram", "(Tensor A, Tensor v) -> Tensor",
    "weighted_gram(A (n, d), v (n,)) -> G (d, d) = A^T diag(v) A, in A's dtype (float32/64).",
    family="sampling",
    key=_tensor_key(0),
    fake=lambda A, v: _empty((A.shape[1], A.shape[1]), A.dtype, A.device),
)
row_quadratic_forms = define(
    "row_quadratic_forms", "(Tensor A, Tensor M) -> Tensor",
    "row_quadratic_forms(A (n, d), M (d, d) symmetric) -> q (n,) with q_i = a_i^T M a_i.",
    family="sampling",
    key=_tensor_key(0),
    fake=lambda A, M: _empty((A.shape[0],), A.dtype, A.device),
)
block_quantize = define(
    "block_quantize", "(Tensor x, int block, Tensor mid, int bits, Tensor? scales, Tensor? offsets) -> "
    "(Tensor, Tensor, Tensor)",
    "block_quantize(x (n,), block, mid float32 (2^bits - 1,) sorted, bits, scales=None, offsets=None) -> (packed"
    " uint8 (ceil(n·bits/8),), scales float32 (ceil(n/block),), int64 nonfinite count): code_i = #{k : mid[k] <"
    " (x_i - o_b)·(1/max(s_b, 1e-38))} for i in block b (s_b = the block's absmax when scales is None, o_b = 0"
    " when offsets is None), packed MSB-first (8 codes fill `bits` bytes; 4-bit codes are (c0 << 4) | c1). bits"
    " in {1, 2, 3, 4, 8}, or 0: no codes (an empty packed), only the absmaxes and the count; block a multiple"
    " of 8.",
    family="quant",
    key=_tensor_key(0),
    fake=lambda x, block, mid, bits, scales, offsets: (
        _empty((-(-x.numel() * bits // 8),), torch.uint8, x.device),
        _empty((-(-x.numel() // block),), torch.float32, x.device), _empty((), torch.int64, x.device)),
    counts=(2,),
)
block_dequantize = define(
    "block_dequantize", "(Tensor packed, int bits, Tensor levels, Tensor scales, Tensor? offsets, int n, int block,"
    " ScalarType out_dtype) -> Tensor",
    "block_dequantize(packed, bits, levels float32 (2^bits,), scales (nb,), offsets (nb,) | None, n, block,"
    " out_dtype) -> (n,): levels[code_i]·s_b + o_b in float32 (two roundings, no FMA), then cast.",
    family="quant",
    key=lambda packed, bits, levels, scales, offsets, n, block, out_dtype: (packed.device, out_dtype),
    fake=lambda packed, bits, levels, scales, offsets, n, block, out_dtype: _empty((n,), out_dtype, packed.device),
)
block_dequantize_into = define(
    "block_dequantize_into", "(Tensor packed, int bits, Tensor levels, Tensor scales, Tensor? offsets, int n,"
    " int block, Tensor(a!) out) -> ()",
    "block_dequantize_into(..., out): block_dequantize written into ``out`` (contiguous, n elements).",
    family="quant",
    key=lambda packed, bits, levels, scales, offsets, n, block, out: (packed.device, out.dtype),
    fake=lambda packed, bits, levels, scales, offsets, n, block, out: None,
)
gguf_quantize = define(
    "gguf_quantize", "(Tensor x, int bits) -> (Tensor, Tensor, Tensor)",
    "gguf_quantize(x (n,) float32/float16/bfloat16, n a multiple of 32, bits 4 | 8) -> (blocks uint8 (n/32, 18 |"
    " 34), int64 nonfinite count, int64 count of blocks whose fp16 d is zero, subnormal or infinite): llama.cpp's"
    " Q4_0 (bits 4) / Q8_0 (bits 8) blocks of x in float32, byte for byte as gguf.quants.quantize (fp16 d, then"
    " the codes).",
    family="quant",
    key=_tensor_key(0),
    fake=lambda x, bits: (_empty((x.numel() // 32, 18 if bits == 4 else 34), torch.uint8, x.device),
                          _empty((), torch.int64, x.device), _empty((), torch.int64, x.device)),
    counts=(1, 2),
)
gguf_dequantize = define(
    "gguf_dequantize", "(Tensor blocks, int bits, int n, ScalarType out_dtype) -> Tensor",
    "gguf_dequantize(blocks uint8 (>= ceil(n/32), 18 | 34), bits, n, out_dtype) -> (n,): d·q of the first n"
    " weights in float32 (exact), cast to out_dtype.",
    family="quant",
    key=lambda blocks, bits, n, out_dtype: (blocks.device, out_dtype),
    fake=lambda blocks, bits, n, out_dtype: _empty((n,), out_dtype, blocks.device),
)
gguf_dequantize_into = define(
    "gguf_dequantize_into", "(Tensor blocks, int bits, int n, Tensor(a!) out) -> ()",
    "gguf_dequantize_into(blocks, bits, n, out): gguf_dequantize written into ``out`` (contiguous, n elements).",
    family="quant",
    key=lambda blocks, bits, n, out: (blocks.device, out.dtype),
    fake=lambda blocks, bits, n, out: None,
)
dgq_matmul = define(
    "dgq_matmul", "(Tensor x, Tensor qweight, Tensor zeros, Tensor group_scales, Tensor weight_sums, int group,"
    " Tensor? x_scale, Tensor? channel_scales) -> Tensor",
    "dgq_matmul(x int8 (M, K), qweight uint8 (N, K/2), zeros uint8 (N, G), group_scales int8 (N, G), weight_sums"
    " int32 (N,), group, x_scale=None, channel_scales=None) -> int32 (M, N) = x · w8ᵀ exactly, w8[n, k] ="
    " s_int[n, g]·(q[n, k] − z[n, g]) with q the high-then-low nibbles of qweight; x in [−127, 127] (ValueError"
    " for −128); K a multiple of group, group a multiple of 128. With x_scale (M,) and channel_scales (N,)"
    " float32: the float32 (float(acc)·x_scale[m])·channel_scales[n] instead.",
    family="qmatmul",
    key=_tensor_key(0),
    fake=lambda x, qweight, zeros, group_scales, weight_sums, group, x_scale, channel_scales: _empty(
        (x.shape[0], qweight.shape[0]), torch.int32 if x_scale is None else torch.float32, x.device),
)

dgq_linear = define(
    "dgq_linear", "(Tensor x, Tensor qweight, Tensor zeros, Tensor group_scales, Tensor weight_sums,"
    " Tensor channel_scales, Tensor? bias, int group) -> Tensor",
    "dgq_linear(x float (M, K), qweight, zeros, group_scales, weight_sums, channel_scales float32 (N,), bias float32"
    " (N,) | None, group) -> float32 (M, N): DGQLinear's forward in one op: x quantized per row to INT8"
    " (quantize_activations(x, 'token'), bit for bit), the exact integer product with w8, then"
    " (float(acc)·s_m)·channel_scales[n] + bias[n]. ValueError for NaN/Inf in x.",
    family="qmatmul",
    key=lambda x, *rest: (x.device, torch.int8),
    fake=lambda x, qweight, zeros, group_scales, weight_sums, channel_scales, bias, group: _empty(
        (x.shape[0], qweight.shape[0]), torch.float32, x.device),
)


# --- autograd: the linear operators' adjoints; vmap: the batch folded into the op's batch dim -----

def _fwht_adjoint(g, dtype, N, row_mult, scale, n_valid):
    """x̄ = scale · D · (H_N ḡ)[:n_valid] (H symmetric, D = diag(row_mult), padding rows dropped)."""
    y = fwht(g.contiguous(), N, None, scale, dtype)[0][:, :n_valid]
    return y if row_mult is None else y * row_mult.to(y.dtype)[:, None]


def _fwht_setup(ctx, inputs, keyword_only_inputs, output):
    x, N, row_mult, scale = inputs[:4]
    ctx.args = (x.dtype, N, scale, x.shape[1])
    ctx.save_for_backward(row_mult)
    ctx.mark_non_differentiable(output[1])


def _fwht_backward(ctx, g, _count=None):
    dtype, N, scale, n_valid = ctx.args
    (row_mult,) = ctx.saved_tensors
    return _fwht_adjoint(g, dtype, N, row_mult, scale, n_valid), None, None, None, None


def _fwht_select_setup(ctx, inputs, keyword_only_inputs, output):
    x, N, row_mult, scale, rows = inputs[:5]
    ctx.args = (x.dtype, N, scale, x.shape[1])
    ctx.save_for_backward(row_mult, rows)
    ctx.mark_non_differentiable(output[1])


def _fwht_select_backward(ctx, g, _count=None):
    dtype, N, scale, n_valid = ctx.args
    row_mult, rows = ctx.saved_tensors
    full = g.new_zeros(g.shape[0], N, g.shape[2]).index_add(1, rows, g)  # Sᵀ: the selected rows back in place
    return _fwht_adjoint(full, dtype, N, row_mult, scale, n_valid), None, None, None, None, None


def _sparse_setup(ctx, inputs, keyword_only_inputs, output):
    A, rows, signs, m, scale, right = inputs[:6]
    ctx.args = (A.dtype, scale, right)
    ctx.save_for_backward(rows, signs)
    ctx.mark_non_differentiable(output[1])


def _sparse_backward(ctx, g, _count=None):
    """Left: Ā[b, j] = scale Σ_l signs[j, l] ḡ[b, rows[j, l]] (Sᵀḡ); right: the same along the last axis."""
    dtype, scale, right = ctx.args
    rows, signs = ctx.saved_tensors
    idx, sg = rows.long(), signs.to(g.dtype) * scale
    if right:  # ḡ (B, d, m) -> Ā (B, d, n)
        grad = (g[:, :, idx] * sg).sum(-1)
    else:  # ḡ (B, m, d) -> Ā (B, n, d)
        grad = (g[:, idx, :] * sg[:, :, None]).sum(2)
    return grad.to(dtype), None, None, None, None, None


def _differentiable(op: Op, setup, backward) -> None:
    """Register ``backward`` as op's autograd formula, and the same formula as an
    ``autograd.Function`` (with a generated vmap rule) that calls under ``torch.func``
    transforms take: the formula registered on the op is not visible to functorch."""
    torch.library.register_autograd(f"{NAMESPACE}::{op.name}", backward, setup_context=setup, lib=_LIB)

    class Function(torch.autograd.Function):
        generate_vmap_rule = True

        @staticmethod
        def forward(*args):
            return op.overload(*args[:-1], backend=args[-1])

        @staticmethod
        def setup_context(ctx, inputs, output):
            setup(ctx, inputs[:-1], {}, output)

        @staticmethod
        def backward(ctx, *grads):
            return (*backward(ctx, *grads), None)

    Function.__name__ = Function.__qualname__ = f"{op.name}_function"
    op.function = Function


def _nola_combine_setup(ctx, inputs, keyword_only_inputs, output):
    coeffs, rows, cols, stream_base, seed, scale = inputs[:6]
    ctx.args = (coeffs.shape[0], rows, cols, stream_base, seed, scale)


def _nola_combine_backward(ctx, g):
    """coeffs̄ = nola_coeff_grad(ḡ): the adjoint regenerates the bases instead of saving them."""
    k, rows, cols, stream_base, seed, scale = ctx.args
    return nola_coeff_grad(g.contiguous(), k, stream_base, seed, scale), None, None, None, None, None


def _nola_coeff_grad_setup(ctx, inputs, keyword_only_inputs, output):
    grad, k, stream_base, seed, scale = inputs[:5]
    ctx.args = (grad.shape[0], grad.shape[1], stream_base, seed, scale)


def _nola_coeff_grad_backward(ctx, g):
    rows, cols, stream_base, seed, scale = ctx.args
    return nola_combine(g.contiguous(), rows, cols, stream_base, seed, scale), None, None, None, None


_differentiable(fwht, _fwht_setup, _fwht_backward)
_differentiable(fwht_select, _fwht_select_setup, _fwht_select_backward)
_differentiable(sparse_apply, _sparse_setup, _sparse_backward)
_differentiable(nola_combine, _nola_combine_setup, _nola_combine_backward)
_differentiable(nola_coeff_grad, _nola_coeff_grad_setup, _nola_coeff_grad_backward)


def _batched_first(info, in_dims, x, *rest, backend=None, op):
    """vmap over the tensor argument x: its vmapped dimension is folded into the op's batch
    dimension B (the other tensor arguments must not be vmapped)."""
    if any(d is not None for d in in_dims[1:]):
        raise NotImplementedError(f"linalg_core::{op.name}: vmap over arguments other than the first is not "
                                  "supported")
    d = in_dims[0]
    if d is None:
        return op(x, *rest, backend=backend), (None, None)
    xb = x.movedim(d, 0)
    V = xb.shape[0]
    y, count = op(xb.reshape(V * xb.shape[1], *xb.shape[2:]).contiguous(), *rest, backend=backend)
    return (y.reshape(V, -1, *y.shape[1:]), count), (0, None)


for _op in (fwht, fwht_select, sparse_apply):
    torch.library.register_vmap(
        f"{NAMESPACE}::{_op.name}",
        lambda info, in_dims, x, *rest, backend=None, _op=_op: _batched_first(info, in_dims, x, *rest,
                                                                              backend=backend, op=_op),
        lib=_LIB)


def as_int64(v: int) -> int:
    """A 64-bit unsigned value (a seed, a stream id) as the signed int64 a schema's ``int``
    holds (two's complement); backends read it back with ``v & (2**64 - 1)``."""
    return v - (1 << 64) if v >= 1 << 63 else v


def explain(op: str, device="cpu", dtype=torch.float32) -> list[tuple[str, str | None]]:
    """Which backends would serve ``op`` for tensors of this device and dtype, and why not.

    Args:
        op: the name of a registered op (``torch.ops.linalg_core.<op>``), e.g. ``"fwht"``.
        device: the device of the call's tensors.
        dtype: their dtype.

    Returns:
        ``[(backend, reason)]`` in priority order: ``reason`` is None for a backend that takes
        the call, else why it declines; the first with None serves it.

    Raises:
        ValueError: ``op`` is not a registered op.

    Example:
        >>> import linalg_core, torch
        >>> linalg_core.explain("fwht", "cpu", torch.float32)[-1]
        ('reference', None)
    """
    if op not in OPS:
        raise ValueError(f"op={op!r} is not one of {', '.join(sorted(OPS))}")
    return OPS[op].explain(Key(torch.device(device), dtype))
