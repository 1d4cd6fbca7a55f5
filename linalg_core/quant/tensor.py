"""``QuantizedTensor``: a quantized matrix, its exact storage, safetensors round trips, and the
matrix-free products (dequantization fused per block of rows) that let ``rsvd`` and the adapter
initialisers run on quantized weights."""

from __future__ import annotations

import json
import math
import numbers
from collections.abc import Mapping
from types import MappingProxyType

import torch

from linalg_core import _validate
from linalg_core._arrays import FLOAT_DTYPES
from linalg_core.quant.formats import Format, check_dtype, check_out, finite, parse

# Elements dequantized at a time by matmul / rmatmul (4 MiB of float32: stays in L2/L3).
_ROW_BLOCK_ELEMS = 1 << 20
_FORMAT_KEY = "__format__"
_DTYPE_NAMES = {str(dt).removeprefix("torch."): dt for dt in FLOAT_DTYPES}


def _check_shape(shape) -> tuple[int, ...]:
    if isinstance(shape, (str, bytes)) or not isinstance(shape, (tuple, list, torch.Size)):
        raise TypeError(f"shape must be a tuple of positive integers, got {type(shape).__name__} {shape!r}")
    dims = []
    for s in shape:
        if isinstance(s, bool) or not isinstance(s, numbers.Integral):
            raise TypeError(f"shape must be a tuple of positive integers, got {shape!r}")
        if s < 1:
            raise ValueError(f"shape must be a tuple of positive integers, got {tuple(shape)!r}")
        dims.append(int(s))
    if not dims:
        raise ValueError("shape must have at least one dimension, got ()")
    return tuple(dims)


def _checked(fmt, shape, dtype, data, what: str, prefix: str = "", params=None, quantized: bool = False):
    """The one validation of a quantized tensor, for the constructor, :meth:`from_state_dict` and
    :func:`quantize`: (format, shape, dtype, data (contiguous), block params). Raises TypeError /
    ValueError naming the argument or the stored tensor. ``params``: the block params the format's
    quantizer computed (and checked) from this data, else computed and checked here.
    ``quantized``: ``data`` is the format's own quantizer's output, whose values meet
    :meth:`~linalg_core.quant.formats.Format.check_values` by construction (a quantizer raises
    for scales that do not survive storage), so they are not read again (GGUF Q4_0, 2048 × 4096,
    `bench quant` on a Zen 4 EPYC: 3.9 → 2.4 ms)."""
    if not isinstance(fmt, Format):
        raise TypeError(f"format must be a linalg_core.quant Format (NormalFloat, BnbNF4, IntGroup, GGUF), "
                        f"got {type(fmt).__name__}")
    shape = _check_shape(shape)
    fmt.check_shape(shape)
    dtype = check_dtype(dtype, "dtype")
    n = math.prod(shape)
    data = fmt.check_layout(data, n, what=what, prefix=prefix)
    if not quantized:
        fmt.check_values(data, n, what=what, prefix=prefix)
    if params is not None:
        return fmt, shape, dtype, data, params
    params = fmt.block_params(data, n)
    for p in params or ():
        if p is not None and not finite(p):
            names = ", ".join(repr(prefix + k) for k in data if k != "codes")
            raise ValueError(f"{what}: {int((~torch.isfinite(p)).sum())} of the {p.numel()} block scales {fmt} "
                             f"derives from {names} overflow float32")
    return fmt, shape, dtype, data, params


class QuantizedTensor:
    """A weight quantized in a :mod:`format <linalg_core.quant.formats>`.

    Attributes:
        format: the :class:`~linalg_core.quant.formats.Format`.
        shape: the original shape; ``orig_dtype``: the original dtype (what :meth:`dequantize`
            returns).
        data: the stored tensors (packed codes, scales, ...), by name (read-only mapping).

    The constructor validates everything the kernels rely on (the same checks as
    :meth:`from_state_dict`): a :class:`Format`, a shape of positive integers the format can
    store, a float ``dtype``, exactly the tensors of ``format.layout(numel)`` with their exact
    shapes and dtypes on one device (non-contiguous ones are copied, the caller's are never
    modified), finite scales and offsets (also those derived from double-quantized scales),
    zero points within the code range. Unknown extra tensors are rejected (ValueError), since
    they would be counted in :attr:`bits_per_param` and saved without meaning.

    As a linear operator (``matmul(X) = W @ X``, ``rmatmul(Y) = Wᵀ @ Y``) it computes in float32,
    dequantizing blocks of rows into a small buffer, so ``linalg_core.rsvd(Q, r)`` never forms W.

    Shape:
        shape: (m, n) for the matrix-free products and :meth:`rows`; any shape otherwise.

    Example:
        >>> import torch, linalg_core
        >>> from linalg_core.quant import quantize
        >>> W = torch.randn(256, 512, generator=torch.Generator().manual_seed(0))
        >>> Q = quantize(W, "nf4")
        >>> round(Q.bits_per_param, 3), round(float((Q.dequantize() - W).norm() / W.norm()), 3)
        (4.127, 0.092)
    """

    def __init__(self, format: Format, shape, dtype: torch.dtype, data: dict[str, torch.Tensor]):
        self._set(*_checked(format, shape, dtype, data, "QuantizedTensor data"))

    def _set(self, fmt, shape, dtype, data, params):
        self._format, self._shape, self._orig_dtype = fmt, shape, dtype
        self._data = data
        self._params = params
        self._bound = None

    def __reduce__(self):  # unpickling validates like the constructor
        return (QuantizedTensor, (self._format, self._shape, self._orig_dtype, dict(self._data)))

    @property
    def format(self) -> Format:
        """The :class:`~linalg_core.quant.formats.Format` the weights are stored in."""
        return self._format

    @property
    def shape(self) -> tuple[int, ...]:
        """The original tensor's shape."""
        return self._shape

    @property
    def orig_dtype(self) -> torch.dtype:
        """The original tensor's dtype: what :meth:`dequantize` returns by default."""
        return self._orig_dtype

    @property
    def data(self) -> Mapping[str, torch.Tensor]:
        """The stored tensors by name (a read-only mapping; ``format.layout(numel)``)."""
        return MappingProxyType(self._data)

    # --- the operator protocol -------------------------------------------------------------
    @property
    def dtype(self) -> torch.dtype:
        """Compute dtype of the matrix-free products (float32)."""
        return torch.float32

    @property
    def device(self) -> torch.device:
        """Where the stored tensors live."""
        return next(iter(self._data.values())).device

    @property
    def numel(self) -> int:
        """The number of weights (the product of :attr:`shape`)."""
        return math.prod(self._shape)

    @property
    def nbytes(self) -> int:
        """Bytes stored (codes, scales, second-level scales, offsets)."""
        return sum(t.numel() * t.element_size() for t in self._data.values())

    @property
    def bits_per_param(self) -> float:
        """Stored bits per weight, counted from the tensors (padding included)."""
        return 8 * self.nbytes / self.numel

    def _block_params(self):
        return self._params

    def _max_abs(self) -> float:
        if self._bound is None:
            self._bound = self._format._max_abs(self._data, self._params)
        return self._bound

    def _range(self, e0: int, e1: int, dtype, out=None) -> torch.Tensor:
        """Elements [e0, e1) of validated bounds (e0 block-aligned), dtype and out."""
        return self._format.checked_dequantize(self._data, self.numel, e0, e1, dtype, self._params, None, out,
                                               self._max_abs())

    def _matrix(self) -> tuple[int, int]:
        if len(self._shape) != 2:
            raise ValueError(f"this needs a 2-D QuantizedTensor (a matrix), this one has shape {self._shape}")
        return self._shape

    def dequantize(self, dtype: torch.dtype | None = None, *, out=None):
        """The dequantized tensor, in ``dtype`` (default: ``out``'s dtype, else the original dtype).

        Args:
            dtype: float32, float64, float16 or bfloat16. A float16 / bfloat16 result that would
                overflow raises ValueError (never Inf).
            out: a writable contiguous tensor (or NumPy array) of this shape and ``dtype`` on this
                tensor's device, sharing no memory with the stored tensors: the values are
                written into it (no fresh pages) and it is returned.

        Shape:
            result: ``shape``
        """
        if out is None:
            return self._range(0, self.numel, check_dtype(dtype or self._orig_dtype, "dtype")).view(self._shape)
        t, dtype = check_out(out, self._shape, dtype, self.device, self._data)
        self._range(0, self.numel, dtype, out=t)
        return out

    def _row_blocks(self):
        m, n = self._matrix()
        step = self._format.block // math.gcd(self._format.block, n)  # rows whose start is block-aligned
        rows = max(step, (_ROW_BLOCK_ELEMS // n) // step * step)
        for r0 in range(0, m, rows):
            yield r0, min(m, r0 + rows)

    def rows(self, r0: int, r1: int, dtype: torch.dtype | None = None, out=None):
        """Rows r0 .. r1 − 1 dequantized.

        Args:
            r0, r1: integers with 0 ≤ r0 ≤ r1 ≤ m; row r0 must start a block of the format
                (r0·n a multiple of ``format.block``).
            dtype: float dtype of the result (default: ``out``'s dtype, else float32).
            out: a writable contiguous (r1 − r0, n) tensor (or NumPy array) of ``dtype`` on this
                tensor's device, receiving the rows.

        Shape:
            result: (r1 − r0, n)
        """
        m, n = self._matrix()
        r0 = _validate.integer(r0, "r0", low=0, high=m)
        r1 = _validate.integer(r1, "r1", low=r0, high=m)
        if (r0 * n) % self._format.block:
            raise ValueError(f"row r0={r0} does not start a {self._format.block}-element block of {self._format} "
                             f"(rows of {n} weights)")
        if out is None:
            return self._range(r0 * n, r1 * n, check_dtype(dtype or torch.float32, "dtype")).view(r1 - r0, n)
        t, dtype = check_out(out, (r1 - r0, n), dtype, self.device, self._data)
        self._range(r0 * n, r1 * n, dtype, out=t)
        return out

    def _blocks_of_rows(self):
        """(r0, r1, float32 rows) with one reused buffer: the fused dequantize-multiply loop."""
        blocks = list(self._row_blocks())
        n = self._shape[1]
        buf = torch.empty(max(r1 - r0 for r0, r1 in blocks) * n, dtype=torch.float32, device=self.device)
        for r0, r1 in blocks:
            yield r0, r1, self._range(r0 * n, r1 * n, torch.float32, out=buf[: (r1 - r0) * n]).view(r1 - r0, n)

    def _operand(self, X, name: str, rows: int):
        t, boundary = _validate.float_array(X, name, ndim=2, allow_empty=True)
        if t.shape[0] != rows:
            raise ValueError(f"{name} has shape {tuple(t.shape)}; its first dimension must be {rows} for this "
                             f"{self._shape} QuantizedTensor")
        if t.device != self.device:
            raise ValueError(f"{name} is on {t.device}, the QuantizedTensor on {self.device}")
        return t.to(torch.float32), boundary

    def matmul(self, X):
        """W @ X in float32.

        Args:
            X: the right operand (any float dtype; computed in float32), on the tensor's device.

        Returns:
            W @ X, float32, in X's array type.

        Shape:
            X: (n, k);  result: (m, k)
        """
        m, n = self._matrix()
        X, boundary = self._operand(X, "X", n)
        out = torch.empty(m, X.shape[1], dtype=torch.float32, device=X.device)
        for r0, r1, Wb in self._blocks_of_rows():
            torch.matmul(Wb, X, out=out[r0:r1])
        return boundary.out(out)

    def rmatmul(self, Y):
        """Wᵀ @ Y in float32.

        Args:
            Y: the right operand (any float dtype; computed in float32), on the tensor's device.

        Returns:
            Wᵀ @ Y, float32, in Y's array type.

        Shape:
            Y: (m, k);  result: (n, k)
        """
        m, n = self._matrix()
        Y, boundary = self._operand(Y, "Y", m)
        out = torch.zeros(n, Y.shape[1], dtype=torch.float32, device=Y.device)
        for r0, r1, Wb in self._blocks_of_rows():
            out.addmm_(Wb.T, Y[r0:r1])
        return boundary.out(out)

    def fro_norm_sq(self) -> torch.Tensor:
        """‖W‖_F² of the dequantized matrix, summed in float64 block of rows by block of rows and
        returned as a float32 0-d tensor (what rsvd's ``AdaptiveQB`` reads instead of estimating it)."""
        return sum(Wb.square().sum(dtype=torch.float64) for _, _, Wb in self._blocks_of_rows()).float()

    # --- serialisation -----------------------------------------------------------------------
    def state_dict(self, prefix: str = "") -> dict[str, torch.Tensor]:
        """Plain tensors (safetensors-ready): the stored tensors plus ``__format__``, the format,
        shape and dtype as UTF-8 JSON bytes.

        Args:
            prefix: prepended to every name (a module's ``"layer."``).

        Returns:
            ``{prefix + name: tensor}``, contiguous.
        """
        if not isinstance(prefix, str):
            raise TypeError(f"prefix must be a str, got {type(prefix).__name__}")
        meta = json.dumps({"format": self._format.to_json(), "shape": list(self._shape),
                           "dtype": str(self._orig_dtype).removeprefix("torch.")})
        out = {prefix + k: v.contiguous() for k, v in self._data.items()}
        out[prefix + _FORMAT_KEY] = torch.frombuffer(bytearray(meta.encode()), dtype=torch.uint8)
        return out

    @classmethod
    def from_state_dict(cls, state: Mapping[str, torch.Tensor], prefix: str = "") -> QuantizedTensor:
        """Inverse of :meth:`state_dict`, validated like the constructor.

        The entries under ``prefix`` whose remaining name has no ``.`` belong to this tensor: an
        unknown one (not in the format's layout) is rejected, like a missing, mis-shaped or
        mistyped one, NaN/Inf scales (counted) or zero points out of range. A ``__format__``
        entry that is not UTF-8 JSON of a known format, a shape of positive integers and a float
        dtype raises ValueError.

        Args:
            state: a mapping of names to tensors (a loaded safetensors file, a module's state).
            prefix: the prefix the tensor was saved under.

        Returns:
            The validated :class:`QuantizedTensor`.

        Example:
            >>> import torch
            >>> from linalg_core.quant import QuantizedTensor, quantize
            >>> Q = quantize(torch.randn(64, 64, generator=torch.Generator().manual_seed(0)), "int4")
            >>> R = QuantizedTensor.from_state_dict(Q.state_dict(prefix="w."), prefix="w.")
            >>> torch.equal(R.dequantize(), Q.dequantize()), R.shape
            (True, (64, 64))
        """
        if not isinstance(prefix, str):
            raise TypeError(f"prefix must be a str, got {type(prefix).__name__}")
        if not isinstance(state, Mapping):
            raise TypeError(f"state must be a mapping of names to tensors, got {type(state).__name__}")
        key = prefix + _FORMAT_KEY
        if key not in state:
            raise ValueError(f"state has no {key!r} entry: not a QuantizedTensor state_dict")
        fmt, shape, dtype = _read_meta(state[key], key)
        data = {k[len(prefix):]: v for k, v in state.items() if isinstance(k, str) and k.startswith(prefix)
                and k != key and "." not in k[len(prefix):]}
        Q = cls.__new__(cls)
        Q._set(*_checked(fmt, shape, dtype, data, "corrupt QuantizedTensor state", prefix))
        return Q

    def save(self, path) -> None:
        """Writes :meth:`state_dict` to a safetensors file."""
        from safetensors.torch import save_file

        save_file(self.state_dict(), str(path))

    @classmethod
    def load(cls, path) -> QuantizedTensor:
        """Reads a :meth:`save`\\ d file; ValueError for a file that is not a valid safetensors
        file or not a valid QuantizedTensor (see :meth:`from_state_dict`).

        Args:
            path: the safetensors file.

        Returns:
            The validated :class:`QuantizedTensor`.
        """
        return cls.from_state_dict(load_safetensors(path))

    def to_bitsandbytes(self):
        """(packed uint8 (n/2, 1), ``bitsandbytes.functional.QuantState``) for a :class:`BnbNF4`
        tensor: what ``bitsandbytes.functional.quantize_4bit`` returns, for its dequantize and
        4-bit matmul."""
        from linalg_core.quant.formats import BnbNF4

        if not isinstance(self._format, BnbNF4):
            raise ValueError(f"to_bitsandbytes needs a BnbNF4 tensor, this one is {self._format}")
        import bitsandbytes.functional as F

        from linalg_core.quant import codebooks

        fmt, d = self._format, self._data
        code = codebooks.normal_float(4).to(self.device)
        if fmt.double_quant:
            state2 = F.QuantState(absmax=d["absmax2"], code=codebooks.dynamic_map().to(self.device), blocksize=256,
                                  dtype=torch.float32)
            state = F.QuantState(absmax=d["absmax"], shape=torch.Size(self._shape), dtype=self._orig_dtype,
                                 blocksize=fmt.blocksize, code=code, quant_type="nf4", offset=d["offset"][0],
                                 state2=state2)
        else:
            state = F.QuantState(absmax=d["absmax"], shape=torch.Size(self._shape), dtype=self._orig_dtype,
                                 blocksize=fmt.blocksize, code=code, quant_type="nf4")
        return d["codes"].view(-1, 1), state

    def __repr__(self):
        return (f"QuantizedTensor({self._format}, shape={self._shape}, dtype={self._orig_dtype}, "
                f"{self.bits_per_param:.3f} bits/param)")


def _read_meta(entry, key: str):
    """(format, shape, dtype) of a ``__format__`` entry; ValueError naming ``key`` otherwise."""
    if not isinstance(entry, torch.Tensor) or entry.dtype != torch.uint8 or entry.dim() != 1:
        raise ValueError(f"corrupt QuantizedTensor state at {key!r}: expected UTF-8 JSON bytes as a 1-D uint8 tensor, "
                         f"got {getattr(entry, 'dtype', type(entry).__name__)} {tuple(getattr(entry, 'shape', ()))}")
    try:
        meta = json.loads(bytes(entry.cpu().contiguous().numpy()).decode("utf-8"))
        if not isinstance(meta, dict) or not {"format", "shape", "dtype"} <= set(meta):
            raise ValueError("expected a JSON object with 'format', 'shape' and 'dtype'")
        fmt = Format.from_json(meta["format"])
        shape = _check_shape(meta["shape"])
        dtype = _DTYPE_NAMES.get(meta["dtype"]) if isinstance(meta["dtype"], str) else None
        if dtype is None:
            raise ValueError(f"dtype {meta['dtype']!r} is not one of {sorted(_DTYPE_NAMES)}")
    except (ValueError, TypeError) as e:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise ValueError(f"corrupt QuantizedTensor state at {key!r}: {e}") from None
    return fmt, shape, dtype


def load_safetensors(path) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file, read by the ``safetensors`` library; ValueError (naming
    the file) for anything it cannot parse, FileNotFoundError for a missing file."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except FileNotFoundError:
        raise
    except (SafetensorError, OSError, ValueError, TypeError, RuntimeError, OverflowError) as e:
        raise ValueError(f"cannot read {str(path)!r} as safetensors: {e}") from None


def quantize(W, format="nf4", *, backend: str | None = None) -> QuantizedTensor:
    """Quantize a matrix (or any tensor) ``W`` in ``format``.

    Args:
        W: float tensor (numpy arrays are accepted), finite.
        format: a :class:`~linalg_core.quant.formats.Format` or a name (see
            :func:`~linalg_core.quant.formats.parse`).
        backend: force a kernel backend (``"cpu"``, ``"cuda"``, ``"triton"``, ``"reference"``).

    Returns:
        :class:`QuantizedTensor` on W's device.

    Raises:
        ValueError: W has NaN/Inf, or a block scale overflows the format's scale dtype (e.g.
            fp16 scales of ``"int4"`` for |W| above about 4.59e5; ``scale_dtype="fp32"`` holds
            them), or every nonzero block's scale underflows (W would quantize to zeros). Blocks
            whose scales underflow while others do not give a ``UserWarning`` counting them.

    Shape:
        W: (*) (matrix-free products need 2-D).

    Example:
        >>> import torch
        >>> from linalg_core.quant import quantize
        >>> Q = quantize(torch.ones(64, 64), "q8_0")
        >>> Q.bits_per_param, bool(((Q.dequantize() - 1).abs() < 1e-3).all())
        (8.5, True)
    """
    fmt = parse(format)
    t, _ = _validate.float_array(W, "W", min_ndim=1)
    if t.numel() == 0:
        raise ValueError(f"W is empty (shape {tuple(t.shape)})")
    fmt.check_shape(t.shape)
    data, params = fmt._quantize(t, backend=backend)
    Q = QuantizedTensor.__new__(QuantizedTensor)
    Q._set(*_checked(fmt, t.shape, t.dtype, data, "QuantizedTensor data", params=params, quantized=True))
    return Q
