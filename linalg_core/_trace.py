"""Whether the current call runs or is being traced.

Under ``torch.compile`` / ``torch.export`` (Dynamo, fake tensors, proxy modes) and ``torch.func``
transforms, tensors have no data to look at: no data pointers, no ``.item()``, no Python branches
on values. The public layer asks :func:`traced` and then takes the traceable form of a step
(a graph-level assert instead of a counted NaN check, the dispatcher instead of a direct call).
"""

from __future__ import annotations

import torch

_dispatch_stack = torch._C._len_torch_dispatch_stack
_interpreters = torch._C._functorch.peek_interpreter_stack


def traced() -> bool:
    """True under ``torch.compile``/``torch.export`` tracing, a dispatch mode (fake tensors) or a
    ``torch.func`` transform."""
    return torch.compiler.is_compiling() or _dispatch_stack() > 0 or _interpreters() is not None


def transformed() -> bool:
    """True inside a ``torch.func`` transform (vmap, grad, jacrev, ...) run eagerly (Dynamo traces
    the transforms itself)."""
    return not torch.compiler.is_compiling() and _interpreters() is not None
