"""``QuantizedTensor``: a quantized matrix, its exact storage, safetensors round trips, and the
matrix-free products (dequantization fused per block of rows) that let ``rsvd`` and the adapter
initialisers run on quantized weights."""

from __future__ import annotations

import json
import math

import torch

from linalg_core import _validate
from linalg_core.quant.formats import Format, parse

# Elements dequantized at a time by matmul / rmatmul (4 MiB of float32: stays in L2/L3).
_ROW_BLOCK_ELEMS = 1 << 20
_FORMAT_KEY = "__format__"


class QuantizedTensor:
    """A weight quantized in a :mod:`format <linalg_core.quant.formats>`.

    Attributes:
        format: the :class:`~linalg_core.quant.formats.Format`.
        shape: the original shape; ``dtype``: the original dtype (what :meth:`dequantize` returns).
        data: the stored tensors (packed codes, scales, ...), by name.

    As a linear operator (``matmul(X) = W @ X``, ``rmatmul(Y) = Wᵀ @ Y``) it computes in float32,
    dequantizing blocks of rows into a small buffer, so ``linalg_core.rsvd(Q, r)`` never forms W.

    Example:
        >>> import torch, linalg_core
        >>> from linalg_core.quant import quantize
        >>> W = torch.randn(256, 512, generator=torch.Generator().manual_seed(0))
        >>> Q = quantize(W, "nf4")
        >>> round(Q.bits_per_param, 3), round(float((Q.dequantize() - W).norm() / W.norm()), 3)
        (4.127, 0.092)
    """

    def __init__(self, format: Format, shape, dtype: torch.dtype, data: dict[str, torch.Tensor]):
        self.format = format
        self.shape = tuple(int(s) for s in shape)
        self.orig_dtype = dtype
        self.data = dict(data)
        self._params = None

    # --- the operator protocol -------------------------------------------------------------
    @property
    def dtype(self) -> torch.dtype:
        """Compute dtype of the matrix-free products (float32)."""
        return torch.float32

    @property
    def device(self) -> torch.device:
        return next(iter(self.data.values())).device

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        """Bytes stored (codes, scales, second-level scales, offsets)."""
        return sum(t.numel() * t.element_size() for t in self.data.values())

    @property
    def bits_per_param(self) -> float:
        """Stored bits per weight, counted from the tensors (padding included)."""
        return 8 * self.nbytes / self.numel

    def _block_params(self):
        if self._params is None:
            self._params = self.format.block_params(self.data, self.numel)
        return self._params

    def _range(self, e0: int, e1: int, dtype, out=None) -> torch.Tensor:
        return self.format.dequantize(self.data, self.numel, e0, e1, dtype, params=self._block_params(), out=out)

    def dequantize(self, dtype: torch.dtype | None = None, *, out: torch.Tensor | None = None) -> torch.Tensor:
        """The dequantized tensor, in ``dtype`` (default: the original dtype), written into
        ``out`` (a contiguous tensor of this shape and dtype: no fresh pages) when given."""
        dtype = dtype or (out.dtype if out is not None else self.orig_dtype)
        if out is not None and (tuple(out.shape) != self.shape or not out.is_contiguous() or out.dtype != dtype):
            raise ValueError(f"out must be a contiguous {self.shape} tensor of {dtype}, got shape {tuple(out.shape)}, "
                             f"{out.dtype}{'' if out.is_contiguous() else ', not contiguous'}")
        return self._range(0, self.numel, dtype, out=out).view(self.shape)

    def _row_blocks(self):
        m, n = self.shape
        step = self.format.block // math.gcd(self.format.block, n)  # rows whose start is block-aligned
        rows = max(step, (_ROW_BLOCK_ELEMS // n) // step * step)
        for r0 in range(0, m, rows):
            yield r0, min(m, r0 + rows)

    def rows(self, r0: int, r1: int, dtype=torch.float32, out=None) -> torch.Tensor:
        """Rows r0 .. r1 - 1 dequantized, (r1 - r0, n); r0 must start a block of the format."""
        n = self.shape[1]
        if (r0 * n) % self.format.block:
            raise ValueError(f"row {r0} does not start a {self.format.block}-element block of {self.format}")
        return self._range(r0 * n, r1 * n, dtype, out=out).view(r1 - r0, n)

    def _blocks_of_rows(self):
        """(r0, r1, float32 rows) with one reused buffer: the fused dequantize-multiply loop."""
        blocks = list(self._row_blocks())
        buf = torch.empty(max(r1 - r0 for r0, r1 in blocks) * self.shape[1], dtype=torch.float32, device=self.device)
        for r0, r1 in blocks:
            yield r0, r1, self.rows(r0, r1, out=buf[: (r1 - r0) * self.shape[1]])

    def matmul(self, X: torch.Tensor) -> torch.Tensor:
        """W @ X for X (n, k), float32."""
        X = X.to(torch.float32)
        out = torch.empty(self.shape[0], X.shape[1], dtype=torch.float32, device=X.device)
        for r0, r1, Wb in self._blocks_of_rows():
            torch.matmul(Wb, X, out=out[r0:r1])
        return out

    def rmatmul(self, Y: torch.Tensor) -> torch.Tensor:
        """Wᵀ @ Y for Y (m, k), float32."""
        Y = Y.to(torch.float32)
        out = torch.zeros(self.shape[1], Y.shape[1], dtype=torch.float32, device=Y.device)
        for r0, r1, Wb in self._blocks_of_rows():
            out.addmm_(Wb.T, Y[r0:r1])
        return out

    def fro_norm_sq(self) -> torch.Tensor:
        return sum(Wb.square().sum(dtype=torch.float64) for _, _, Wb in self._blocks_of_rows()).float()

    # --- serialisation -----------------------------------------------------------------------
    def state_dict(self, prefix: str = "") -> dict[str, torch.Tensor]:
        """Plain tensors (safetensors-ready): the stored tensors plus ``__format__``, the format,
        shape and dtype as UTF-8 JSON bytes."""
        meta = json.dumps({"format": self.format.to_json(), "shape": list(self.shape),
                           "dtype": str(self.orig_dtype).removeprefix("torch.")})
        out = {prefix + k: v.contiguous() for k, v in self.data.items()}
        out[prefix + _FORMAT_KEY] = torch.frombuffer(bytearray(meta.encode()), dtype=torch.uint8)
        return out

    @classmethod
    def from_state_dict(cls, state: dict[str, torch.Tensor], prefix: str = "") -> QuantizedTensor:
        """Inverse of :meth:`state_dict`; checks that every stored tensor is present and sized."""
        key = prefix + _FORMAT_KEY
        if key not in state:
            raise ValueError(f"state has no {key!r} entry: not a QuantizedTensor state_dict")
        try:
            meta = json.loads(bytes(state[key].tolist()).decode())
            fmt = Format.from_json(meta["format"])
            shape, dtype = tuple(meta["shape"]), getattr(torch, meta["dtype"])
        except (ValueError, KeyError, TypeError, AttributeError, UnicodeDecodeError) as e:
            raise ValueError(f"corrupt QuantizedTensor state at {key!r}: {e}") from None
        data = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix) and k != key
                and "." not in k[len(prefix):]}
        expected = fmt.layout(math.prod(shape))
        for name, (tshape, tdtype) in expected.items():
            got = data.get(name)
            if got is None or tuple(got.shape) != tshape or got.dtype != tdtype:
                raise ValueError(f"corrupt QuantizedTensor state: {prefix + name!r} is "
                                 f"{None if got is None else (tuple(got.shape), got.dtype)}, expected "
                                 f"{(tshape, tdtype)} for {fmt} of shape {shape}")
        return cls(fmt, shape, dtype, {k: data[k] for k in expected})

    def save(self, path) -> None:
        """Writes :meth:`state_dict` to a safetensors file."""
        from safetensors.torch import save_file

        save_file(self.state_dict(), str(path))

    @classmethod
    def load(cls, path) -> QuantizedTensor:
        from safetensors.torch import load_file

        return cls.from_state_dict(load_file(str(path)))

    def to_bitsandbytes(self):
        """(packed uint8 (n/2, 1), ``bitsandbytes.functional.QuantState``) for a :class:`BnbNF4`
        tensor: what ``bitsandbytes.functional.quantize_4bit`` returns, for its dequantize and
        4-bit matmul."""
        from linalg_core.quant.formats import BnbNF4

        if not isinstance(self.format, BnbNF4):
            raise ValueError(f"to_bitsandbytes needs a BnbNF4 tensor, this one is {self.format}")
        import bitsandbytes.functional as F

        from linalg_core.quant import codebooks

        fmt, d = self.format, self.data
        code = codebooks.normal_float(4).to(self.device)
        if fmt.double_quant:
            state2 = F.QuantState(absmax=d["absmax2"], code=codebooks.dynamic_map().to(self.device), blocksize=256,
                                  dtype=torch.float32)
            state = F.QuantState(absmax=d["absmax"], shape=torch.Size(self.shape), dtype=self.orig_dtype,
                                 blocksize=fmt.blocksize, code=code, quant_type="nf4", offset=d["offset"][0],
                                 state2=state2)
        else:
            state = F.QuantState(absmax=d["absmax"], shape=torch.Size(self.shape), dtype=self.orig_dtype,
                                 blocksize=fmt.blocksize, code=code, quant_type="nf4")
        return d["codes"].view(-1, 1), state

    def __repr__(self):
        return (f"QuantizedTensor({self.format}, shape={self.shape}, dtype={self.orig_dtype}, "
                f"{self.bits_per_param:.3f} bits/param)")


def quantize(W, format="nf4", *, backend: str | None = None) -> QuantizedTensor:
    """Quantize a matrix (or any tensor) ``W`` in ``format``.

    Args:
        W: float tensor (numpy arrays are accepted), finite.
        format: a :class:`~linalg_core.quant.formats.Format` or a name (see
            :func:`~linalg_core.quant.formats.parse`).
        backend: force a kernel backend (``"cpu"``, ``"cuda"``, ``"triton"``, ``"reference"``).

    Returns:
        :class:`QuantizedTensor` on W's device.

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
    return QuantizedTensor(fmt, t.shape, t.dtype, fmt.quantize(t, backend=backend))
