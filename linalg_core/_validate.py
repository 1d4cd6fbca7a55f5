"""Argument checks shared by every public function.

Each check raises ``TypeError`` or ``ValueError`` naming the argument and its offending value.
"""

from __future__ import annotations

import math
import numbers
import operator
import secrets

import numpy as np
import torch

from linalg_core._arrays import FLOAT_DTYPES, Boundary, as_tensor
from linalg_core._trace import traced, transformed

SEED_LIMIT = 2**64
_FLOATS = frozenset(FLOAT_DTYPES)


def float_array(
    x, name: str, *, ndim: int | None = None, min_ndim: int = 1, allow_empty: bool = False
) -> tuple[torch.Tensor, Boundary]:
    """Convert ``x`` and check it is a floating array of the right rank, non-empty.

    ``ndim`` demands an exact rank; otherwise at least ``min_ndim`` dimensions (batched input).
    """
    if type(x) is torch.Tensor and x.dtype in _FLOATS and ndim is None and x.dim() >= min_ndim and x.numel():
        return as_tensor(x, name)  # the common case: only the alignment check is left
    t, boundary = as_tensor(x, name)
    if t.dtype not in FLOAT_DTYPES:
        raise TypeError(
            f"{name} has dtype {t.dtype}; supported: float32, float64, float16, bfloat16"
        )
    if ndim is not None and t.dim() != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got shape {tuple(t.shape)}")
    if t.dim() < min_ndim:
        raise ValueError(f"{name} must have at least {min_ndim} dimension(s), got shape {tuple(t.shape)}")
    if not allow_empty and t.numel() == 0:
        raise ValueError(f"{name} is empty (shape {tuple(t.shape)})")
    return t, boundary


def nonfinite_message(x: torch.Tensor, name: str) -> str | None:
    """``None`` when ``x`` is all finite, else a message counting its NaN and Inf entries."""
    if all_finite(x):
        return None
    nan = int(torch.isnan(x).sum())
    inf = int(torch.isinf(x).sum())
    return f"{name} has {nan} NaN and {inf} Inf entries (of {x.numel()})"


def check_finite(x: torch.Tensor, name: str) -> None:
    if deferred(x):
        assert_finite(x, f"{name} has NaN or Inf entries")
        return
    msg = nonfinite_message(x, name)
    if msg:
        raise ValueError(msg)


def check_finite_through(results, x: torch.Tensor, name: str, what: str = "its products") -> None:
    """The NaN/Inf check of ``x`` done on small ``results`` computed from it, which are nonfinite
    wherever x is (e.g. products in which every entry of x meets the other operand: NaN·0 and
    Inf·0 are NaN), instead of a pass over x. On failure x is counted (ValueError naming
    ``name``); a finite x whose results overflowed raises too."""
    if deferred(x):
        for r in results:
            assert_finite(r, f"{name} has NaN or Inf entries (or {what} overflow)")
        return
    if all(all_finite(r) for r in results):
        return
    check_finite(x, name)
    raise ValueError(f"{name} is finite but {what} overflow {results[0].dtype}: scale it down")


def deferred(x: torch.Tensor) -> bool:
    """Whether checks of ``x``'s values must run inside the computation rather than in Python: the
    call is traced (:func:`~linalg_core._trace.traced`) or a CUDA graph is being captured on x's
    stream (no host synchronisation allowed)."""
    return traced() or (x.is_cuda and torch.cuda.is_current_stream_capturing())


def not_differentiable(x, name: str, what: str) -> None:
    """Refuse what ``what`` cannot differentiate: an input autograd tracks (grad mode on and
    ``x.requires_grad``) or a call inside a ``torch.func`` transform. The randomized factorizations
    and solvers return values, not differentiable functions of A (their iteration counts, pivots
    and orthonormalizations are not smooth), so a gradient through them would be wrong rather than
    missing."""
    if transformed():
        raise ValueError(f"{what} does not run under torch.func transforms (vmap, grad, jacrev, ...): it is not "
                         "differentiable, and a batch is passed as one (*, m, n) tensor instead of vmap")
    if isinstance(x, torch.Tensor) and x.requires_grad and torch.is_grad_enabled():
        raise ValueError(f"{what} is not differentiable: {name} requires grad; call it under torch.no_grad() or "
                         f"pass {name}.detach()")


def assert_finite(x: torch.Tensor, message: str) -> None:
    """The traced form of the finiteness checks: an assert inside the graph (RuntimeError with
    ``message`` when it fails at run time; asynchronous on CUDA). Skipped under ``torch.func``
    transforms, which have no batching rule for it."""
    if not transformed():
        torch._assert_async(torch.isfinite(x).all(), message)


def all_finite(x: torch.Tensor) -> bool:
    """Whether every entry of ``x`` is finite: one read pass of the compiled counting kernel for
    contiguous CPU tensors (no float32 copy of a 16-bit x), else one sum in the common case (NaN
    and ±Inf always make the sum non-finite, so a finite sum proves the tensor finite; only a
    non-finite sum pays for the elementwise check)."""
    if x.numel() == 0:
        return True
    from linalg_core._arrays import _kernel_input, count_nonfinite

    if _kernel_input(x) and x.is_cpu:
        return count_nonfinite(x) == 0
    acc = torch.float64 if x.dtype == torch.float64 else torch.float32
    if bool(torch.isfinite(x.sum(dtype=acc))):
        return True
    return bool(torch.isfinite(x).all())


def check_count(count, out: torch.Tensor, inputs: dict[str, torch.Tensor], what: str) -> None:
    """:func:`check_result_finite` given the count of ``out``'s non-finite entries that the kernel
    returned with it (an int, or a 0-d tensor when traced / on a GPU). While a CUDA graph is
    captured, the check is an asynchronous assert (no host synchronisation)."""
    if type(count) is int and count == 0:  # an eager CPU kernel's count: the common case, first
        return
    if deferred(out):
        if not transformed():
            torch._assert_async(count == 0, f"{what}: the result has NaN or Inf entries (a non-finite input or an "
                                "overflow)")
        return
    if count:
        check_result_finite(out, inputs, what)


def check_result_finite(out: torch.Tensor, inputs: dict[str, torch.Tensor], what: str) -> None:
    """Raise if a result is not finite, saying whether an input or an overflow caused it.

    Linear sketches and transforms give every input entry a non-zero coefficient, so a NaN or
    Inf in an input always reaches the result: checking the (usually much smaller) result is
    enough, and the inputs are only counted once something is wrong.
    """
    if deferred(out):
        assert_finite(out, f"{what}: the result has NaN or Inf entries (a non-finite input or an overflow)")
        return
    if all_finite(out):
        return
    for name, x in inputs.items():
        msg = nonfinite_message(x, name)
        if msg:
            raise ValueError(msg)
    raise ValueError(
        f"{what} overflowed {out.dtype}: the inputs are finite but the result has "
        f"{int((~torch.isfinite(out)).sum())} non-finite entries; use a wider dtype"
    )


def integer(value, name: str, *, low: int | None = None, high: int | None = None) -> int:
    """Check ``value`` is an integer in [low, high] and return it as ``int``.

    Accepted: Python and NumPy integers and 0-d integer tensors (anything ``operator.index``
    converts), never a bool (``True`` is not a size or a seed). Rejected with ``TypeError``
    naming the argument: floats (also integral ones: ``4.0`` is most likely a bug), strings,
    ``None``, bools and bool tensors, tensors with more than one element.
    """
    if type(value) is int:  # the common case, first
        converted = value
    elif _is_bool(value):
        raise TypeError(f"{name} must be an integer, got bool {value!r}")
    else:
        converted = _index(value, name)
    if (low is not None and converted < low) or (high is not None and converted > high):
        lo = "-inf" if low is None else low
        hi = "inf" if high is None else high
        raise ValueError(f"{name}={converted} is out of range [{lo}, {hi}]")
    return converted


def _index(value, name: str) -> int:
    try:
        return operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an integer, got {_describe(value)}") from None


def real(value, name: str, *, low: float | None = None, high: float | None = None, low_open: bool = False,
         high_open: bool = False, finite: bool = True) -> float:
    """Check ``value`` is a real number in the interval and return it as ``float``.

    Accepted: Python and NumPy integers and floats, 0-d integer or float tensors. Rejected with
    ``TypeError`` naming the argument: bools, strings, ``None``, complex numbers, tensors with
    more than one element. ``ValueError``: NaN, ±Inf (unless ``finite=False``; NaN never), or
    outside [low, high] (``low_open`` / ``high_open`` exclude the end points).
    """
    if _is_bool(value):
        raise TypeError(f"{name} must be a real number, got bool {value!r}")
    if isinstance(value, torch.Tensor):
        if value.numel() != 1 or value.dim() != 0 or value.is_complex() or not (
                value.is_floating_point() or value.dtype in _INT_DTYPES):
            raise TypeError(f"{name} must be a real number, got {_describe(value)}")
        converted = float(value.item())
    elif isinstance(value, numbers.Real):
        converted = float(value)
    else:
        raise TypeError(f"{name} must be a real number, got {_describe(value)}")
    if math.isnan(converted) or (finite and math.isinf(converted)):
        raise ValueError(f"{name}={converted!r} must be a finite number")
    too_low = low is not None and (converted <= low if low_open else converted < low)
    too_high = high is not None and (converted >= high if high_open else converted > high)
    if too_low or too_high:
        lo = "-inf" if low is None else low
        hi = "inf" if high is None else high
        raise ValueError(f"{name}={converted!r} is out of range {'(' if low_open else '['}{lo}, {hi}"
                         f"{')' if high_open else ']'}")
    return converted


_INT_DTYPES = (torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64)


def _is_bool(value) -> bool:
    if isinstance(value, torch.Tensor):
        return value.dtype == torch.bool
    return isinstance(value, (bool, np.bool_))


def _describe(value) -> str:
    """The type and (short) value of a rejected argument, for error messages."""
    if isinstance(value, torch.Tensor):
        return f"a {value.dtype} tensor of shape {tuple(value.shape)}"
    if isinstance(value, np.ndarray):
        return f"a {value.dtype} array of shape {value.shape}"
    text = repr(value)
    return f"{type(value).__name__} {text if len(text) <= 60 else text[:57] + '...'}"


def seed(value, name: str = "seed") -> int:
    """Resolve ``seed`` to a 64-bit integer.

    ``None`` draws fresh entropy (the value is recorded on the object that uses it, so the
    result can be reproduced); a ``torch.Generator`` gives one 63-bit draw from it.
    """
    if value is None:
        return secrets.randbits(64)
    if isinstance(value, torch.Generator):
        return int(torch.randint(0, 2**63 - 1, (1,), generator=value, device=value.device).item())
    return integer(value, name, low=0, high=SEED_LIMIT - 1)


def choice(value, name: str, options) -> str:
    """Check ``value`` is one of the string ``options`` (a non-string is a ``TypeError``)."""
    if not isinstance(value, str):
        raise TypeError(f"{name} must be one of {', '.join(map(repr, options))}, got {_describe(value)}")
    if value not in options:
        raise ValueError(f"{name}={value!r} is not one of {', '.join(map(repr, options))}")
    return str(value)


def flag(value, name: str) -> bool:
    """Check ``value`` is a bool (Python, NumPy or a 0-d bool tensor) and return it."""
    if isinstance(value, torch.Tensor) and value.dtype == torch.bool and value.dim() == 0:
        return bool(value)
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {_describe(value)}")
    return bool(value)


def numerical_rank(R: torch.Tensor, rows: int) -> int:
    """Numerical rank of the triangular factor R of a QR with ``rows`` rows: the diagonal
    entries above 10·rows·eps·max|diag| (0 when the diagonal is not finite)."""
    diag = R.diagonal().abs()
    if not bool(torch.isfinite(diag).all()):
        return 0
    return int((diag > 10 * rows * torch.finfo(R.dtype).eps * float(diag.max())).sum())
