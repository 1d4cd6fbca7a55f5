"""The sketching operators: :class:`Sketch` and its kinds, built by :func:`create` or by name.

Each operator is a frozen value ``(distribution, shape, seed)`` (see :mod:`linalg_core.sketch` for
the kinds and their costs); it keeps what its ``apply`` reuses (hashes, signs, row selections) in
a per-instance cache, and the SRHT's transform scratch in the library's scratch pool
(:mod:`linalg_core._scratch`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import ClassVar

import torch

from linalg_core import _ops, _scratch, _validate
from linalg_core._ops import as_int64
from linalg_core._arrays import SparseMatrix, as_sparse, compute_dtype, is_sparse
from linalg_core.random import Stream

__all__ = [
    "Sketch",
    "GaussianSketch",
    "RademacherSketch",
    "SRHT",
    "SparseSignSketch",
    "release_scratch",
    "CountSketch",
    "gaussian",
    "rademacher",
    "srht",
    "countsketch",
    "sparse_sign",
    "create",
    "KINDS",
]

# Elements of a generated block of a dense (Gaussian / Rademacher) sketch: 2^22 floats = 16 MiB.
_BLOCK_ELEMS = 1 << 22


@dataclass(frozen=True)
class Sketch:
    """An (m × n) random sketching matrix, stored as its seed.

    Attributes:
        m: rows (the sketch size).
        n: columns (the dimension of the vectors being sketched).
        seed: 64-bit seed; ``None`` at construction draws one, recorded here.

    Build one with :func:`create` or a kind's function (:func:`gaussian`, :func:`rademacher`,
    :func:`srht`, :func:`countsketch`, :func:`sparse_sign`); every kind is scaled so that
    E[SᵀS] = I (Woodruff 2014, "Sketching as a Tool for Numerical Linear Algebra").

    Randomness: the entries are a function of ``(kind, m, n, seed)`` only, drawn from the
    counter-based streams of :mod:`linalg_core.random`: equal values are the same matrix on
    every backend, and a block of columns can be generated without the rest.

    Shape:
        S: (m, n)

    Example:
        >>> import linalg_core as lc
        >>> S = lc.sketch.create("gaussian", 4, 10, seed=0)
        >>> S.shape, S == lc.sketch.gaussian(4, 10, seed=0)
        ((4, 10), True)
        >>> tuple(S.to_dense().shape)
        (4, 10)
    """

    m: int
    n: int
    seed: int | None = None
    kind: ClassVar[str] = ""
    _cache: dict = field(default_factory=dict, init=False, repr=False, compare=False, hash=False)

    def __post_init__(self):
        # Stored as Python ints (a NumPy integer or 0-d tensor would leak into the arithmetic).
        object.__setattr__(self, "m", _validate.integer(self.m, "m", low=1))
        object.__setattr__(self, "n", _validate.integer(self.n, "n", low=1))
        object.__setattr__(self, "seed", _validate.seed(self.seed))

    @property
    def shape(self) -> tuple[int, int]:
        """``(m, n)``: S maps n-vectors to m-vectors."""
        return (self.m, self.n)

    # ------------------------------------------------------------------ public
    def apply(self, A, *, backend: str | None = None):
        """``S @ A``.

        Args:
            A: (*, n, d) matrix or batch of matrices, or an (n,) vector. float32/64, float16 or
                bfloat16 (accumulated in float32); torch, numpy or DLPack. Or a 2-D sparse
                (n, d) matrix: scipy.sparse (csr/csc/coo, matrix or array) or torch COO / CSR /
                CSC, multiplied on its stored entries without a dense copy (CountSketch and
                sparse sign: a scatter-add of ±A's rows, O(nnz(S)·nnz(A)/n); Gaussian,
                Rademacher and SRHT: blocks of S's columns times the matching rows of A,
                O(m·nnz(A)) plus generating S), equal to the dense result to rounding.
            backend: force a backend (``"cuda"``, ``"triton"``, ``"cpu"``, ``"reference"``) for
                the dense path and the generation of S.

        Returns:
            ``S @ A`` in A's array type and dtype (a dense array; numpy for scipy.sparse input).

        Shape:
            A: (*, n, d) or (n,);  out: (*, m, d) or (m,)

        Raises:
            ValueError: A's sketched dimension is not n, A is empty, or has NaN/Inf entries.
            TypeError: A is not a float array or sparse matrix.
        """
        return self._apply_one(A, "A", backend)

    def _apply_one(self, A, name, backend):
        sparse = as_sparse(A, name)
        if sparse is not None:
            sp, boundary = sparse
            if sp.shape[0] != self.n:
                raise ValueError(f"{name} has {sp.shape[0]} rows (shape {sp.shape}) but the sketch has n={self.n}")
            out = self._apply_sparse(sp, backend).to(sp.input_dtype)
            _validate.check_result_finite(out, {name: sp.csr.values()}, f"{self.kind}.apply")
            return boundary.out(out)
        t, boundary = _validate.float_array(A, name)
        vector = t.dim() == 1
        if vector:
            t = t[:, None]
        if t.shape[-2] != self.n:
            raise ValueError(f"{name} has {t.shape[-2]} rows (shape {tuple(t.shape)}) but the sketch has n={self.n}")
        batch = t.shape[:-2]
        t3 = t.reshape(-1, self.n, t.shape[-1]).contiguous()
        out = self._apply(t3, backend).to(t.dtype)
        _validate.check_result_finite(out, {name: t3}, f"{self.kind}.apply")
        out = out[..., 0].reshape(self.m) if vector else out.reshape(*batch, self.m, t.shape[-1])
        return boundary.out(out)

    def apply_many(self, *arrays, names=None, backend: str | None = None) -> tuple:
        """``(S @ A₁, S @ A₂, …)`` for (n,) or (n, d_i) arrays sharing S's rows (e.g. A and b of
        a regression): the same as separate :meth:`apply` calls, with the transform's passes
        shared where the sketch allows (the SRHT's column panels on the CPU). ``names`` labels
        the arrays in error messages (default ``arrays[i]``).

        Args:
            *arrays: (n,) vectors or (n, d_i) matrices, as for :meth:`apply`.
            names: labels for the arrays in error messages.
            backend: force a backend, as for :meth:`apply`.

        Returns:
            A tuple ``(S @ A₁, S @ A₂, …)``, each in its input's array type and dtype.

        Shape:
            arrays[i]: (n,) or (n, d_i);  out[i]: (m,) or (m, d_i)

        Example:
            >>> import torch, linalg_core as lc
            >>> S = lc.sketch.srht(64, 1000, seed=0)
            >>> A, b = torch.randn(1000, 5), torch.randn(1000)
            >>> SA, Sb = S.apply_many(A, b)
            >>> torch.allclose(Sb, S.apply(b)), SA.shape
            (True, torch.Size([64, 5]))
        """
        if not arrays:
            raise ValueError("apply_many needs at least one array")
        names = [f"arrays[{i}]" for i in range(len(arrays))] if names is None else list(names)
        if len(names) != len(arrays):
            raise ValueError(f"names has {len(names)} entries for {len(arrays)} arrays")
        if any(is_sparse(X) for X in arrays):  # sparse matrices take their own path: no shared transform
            return tuple(self._apply_one(X, name, backend) for name, X in zip(names, arrays))
        prepared = []
        for name, X in zip(names, arrays, strict=True):
            t, boundary = _validate.float_array(X, name)
            if t.dim() > 2:
                raise ValueError(f"{name} must be (n,) or (n, d), got shape {tuple(t.shape)}")
            t2 = t[:, None] if t.dim() == 1 else t
            if t2.shape[0] != self.n:
                raise ValueError(f"{name} has {t2.shape[0]} rows but the sketch has n={self.n}")
            prepared.append((t, t2.contiguous(), boundary))
        dtypes = {t2.dtype for _, t2, _ in prepared}
        if len(dtypes) > 1 or len(prepared) == 1:
            return tuple(self._apply_one(X, name, backend) for name, X in zip(names, arrays))
        outs = self._apply_blocks([t2 for _, t2, _ in prepared], backend)
        result = []
        for name, (t, t2, boundary), out in zip(names, prepared, outs):
            out = out.to(t.dtype)
            _validate.check_result_finite(out, {name: t2}, f"{self.kind}.apply_many")
            result.append(boundary.out(out[:, 0] if t.dim() == 1 else out))
        return tuple(result)

    def _apply_blocks(self, blocks, backend):  # [(n, d_i)] -> [(m, d_i)]
        return [self._apply(b[None], backend)[0] for b in blocks]

    def apply_right(self, A, *, backend: str | None = None):
        """``A @ Sᵀ`` (sketching the columns of A, i.e. its row space).

        A may be a 2-D sparse (d, n) matrix, as in :meth:`apply`: A Sᵀ = (S Aᵀ)ᵀ on its stored
        entries, returned dense (numpy for scipy.sparse input).

        Args:
            A: (*, d, n) matrix or batch of matrices, an (n,) vector, or a 2-D sparse (d, n) matrix.
            backend: force a backend, as for :meth:`apply`.

        Returns:
            ``A @ Sᵀ`` in A's array type and dtype.

        Shape:
            A: (*, d, n) or (n,);  out: (*, d, m) or (m,)

        Example:
            >>> import torch, linalg_core as lc
            >>> S = lc.sketch.countsketch(8, 100, seed=0)
            >>> A = torch.randn(3, 100, generator=torch.Generator().manual_seed(0))
            >>> tuple(S.apply_right(A).shape), torch.allclose(S.apply_right(A), S.apply(A.T).T)
            ((3, 8), True)
        """
        sparse = as_sparse(A, "A")
        if sparse is not None:
            sp, boundary = sparse
            if sp.shape[1] != self.n:
                raise ValueError(f"A has {sp.shape[1]} columns (shape {sp.shape}) but the sketch has n={self.n}")
            out = self._apply_sparse(sp.T, backend).T.to(sp.input_dtype)
            _validate.check_result_finite(out, {"A": sp.csr.values()}, f"{self.kind}.apply_right")
            return boundary.out(out)
        t, boundary = _validate.float_array(A, "A")
        vector = t.dim() == 1
        if vector:
            t = t[None, :]
        if t.shape[-1] != self.n:
            raise ValueError(f"A has {t.shape[-1]} columns (shape {tuple(t.shape)}) but the sketch has n={self.n}")
        batch = t.shape[:-2]
        t3 = t.reshape(-1, t.shape[-2], self.n).contiguous()
        out = self._apply_right(t3, backend).to(t.dtype)
        _validate.check_result_finite(out, {"A": t3}, f"{self.kind}.apply_right")
        out = out.reshape(self.m) if vector else out.reshape(*batch, t.shape[-2], self.m)
        return boundary.out(out)

    def to_dense(self, *, cols: tuple[int, int] | None = None, dtype=torch.float64, device="cpu",
                 backend: str | None = None) -> torch.Tensor:
        """The dense matrix S, or its column block ``S[:, c0:c1]`` for ``cols=(c0, c1)``,
        generated without the other columns.

        Args:
            cols: ``(c0, c1)`` with 0 ≤ c0 ≤ c1 ≤ n, or None for all n columns.
            dtype: ``torch.float32`` or ``torch.float64``.
            device: where to generate it.
            backend: force a backend for the generation.

        Returns:
            The dense block, equal to the same columns of the whole matrix.

        Shape:
            out: (m, n) or (m, c1 - c0)

        Example:
            >>> import torch, linalg_core as lc
            >>> S = lc.sketch.rademacher(4, 10, seed=0)
            >>> torch.equal(S.to_dense(cols=(2, 5)), S.to_dense()[:, 2:5])
            True
        """
        c0, c1 = (0, self.n) if cols is None else cols
        _validate.integer(c0, "cols[0]", low=0, high=self.n)
        _validate.integer(c1, "cols[1]", low=c0, high=self.n)
        if dtype not in (torch.float32, torch.float64):
            raise TypeError(f"dtype={dtype} is not supported; use torch.float32 or torch.float64")
        return self._dense(c0, c1, dtype, torch.device(device), backend)

    # ------------------------------------------------------------------ subclasses
    def _apply(self, A: torch.Tensor, backend) -> torch.Tensor:  # (B, n, d) -> (B, m, d)
        raise NotImplementedError

    def _apply_right(self, A: torch.Tensor, backend) -> torch.Tensor:  # (B, d, n) -> (B, d, m)
        raise NotImplementedError

    def _apply_sparse(self, A: SparseMatrix, backend) -> torch.Tensor:  # sparse (n, d) -> dense (m, d)
        """S A for a sparse A, in A's compute dtype: for each block of S's columns that meets a
        stored entry, S[:, c0:c1] A[c0:c1, :] computed as (A[c0:c1, :]ᵀ S[:, c0:c1]ᵀ)ᵀ, a
        sparse-times-dense product (S's blocks are generated exactly as for a dense A)."""
        out = torch.zeros(self.m, A.shape[1], dtype=A.dtype, device=A.device)
        crow = A.csr.crow_indices()
        step = max(1, _BLOCK_ELEMS // self.m)
        for c0 in range(0, self.n, step):
            c1 = min(self.n, c0 + step)
            if int(crow[c1]) == int(crow[c0]):
                continue  # no stored entry in these rows of A
            S = self._dense(c0, c1, A.dtype, A.device, backend)
            out += A.rows(c0, c1).T.matmul(S.T).T
        return out

    def _dense(self, c0, c1, dtype, device, backend) -> torch.Tensor:
        raise NotImplementedError

    def clear_cache(self) -> None:
        """Release what ``apply`` keeps between calls (hashes, signs, row selections, scratch)."""
        self._cache.clear()

    def _cached(self, name, device, make):
        key = (name, str(device))
        if key not in self._cache:
            self._cache[key] = make()
        return self._cache[key]


@dataclass(frozen=True)
class GaussianSketch(Sketch):
    """S with i.i.d. N(0, 1/m) entries (Gaussian embedding; Woodruff 2014, §2.1).

    ``apply`` is a GEMM with S generated in column blocks (never all at once): O(m·n·d).

    Randomness: ``S[i, j]`` is normal number ``i·n + j`` of stream ``Stream.GAUSSIAN``, scaled by 1/√m.

    Shape:
        S: (m, n)

    Example:
        >>> import torch, linalg_core as lc
        >>> S = lc.sketch.GaussianSketch(64, 1000, seed=0)
        >>> A = torch.randn(1000, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
        >>> tuple(S.apply(A).shape), torch.allclose(S.apply(A), S.to_dense() @ A)
        ((64, 3), True)
    """

    kind: ClassVar[str] = "gaussian"
    _sign: ClassVar[bool] = False
    _stream: ClassVar[int] = Stream.GAUSSIAN

    def _dense(self, c0, c1, dtype, device, backend):
        return _ops.random_fill(self.m, c1 - c0, self.n, 0, c0, self._stream, as_int64(self.seed),
                                1.0 / math.sqrt(self.m), self._sign, dtype, device, backend=backend)

    def _blocks(self, dtype, device, backend):
        step = max(1, _BLOCK_ELEMS // self.m)
        for c0 in range(0, self.n, step):
            c1 = min(self.n, c0 + step)
            yield c0, c1, self._dense(c0, c1, dtype, device, backend)

    def _apply(self, A, backend):
        cdt = compute_dtype(A.dtype)
        out = A.new_zeros(A.shape[0], self.m, A.shape[2], dtype=cdt)
        for c0, c1, S in self._blocks(cdt, A.device, backend):
            out += torch.matmul(S, A[:, c0:c1, :].to(cdt))
        return out

    def _apply_right(self, A, backend):
        cdt = compute_dtype(A.dtype)
        out = A.new_zeros(A.shape[0], A.shape[1], self.m, dtype=cdt)
        for c0, c1, S in self._blocks(cdt, A.device, backend):
            out += torch.matmul(A[:, :, c0:c1].to(cdt), S.T)
        return out


@dataclass(frozen=True)
class RademacherSketch(GaussianSketch):
    """S with i.i.d. ±1/√m entries (Rademacher embedding; Achlioptas 2003).

    Randomness: ``S[i, j]`` is sign number ``i·n + j`` of stream ``Stream.RADEMACHER``.

    Shape:
        S: (m, n)

    Example:
        >>> import linalg_core as lc
        >>> S = lc.sketch.RademacherSketch(4, 16, seed=0)
        >>> sorted(set((S.to_dense().abs() * 2).flatten().tolist()))
        [1.0]
    """

    kind: ClassVar[str] = "rademacher"
    _sign: ClassVar[bool] = True
    _stream: ClassVar[int] = Stream.RADEMACHER


def _parity(x: torch.Tensor) -> torch.Tensor:
    for shift in (32, 16, 8, 4, 2, 1):
        x = x ^ (x >> shift)
    return x & 1


# Scratch bound of the SRHT's column panels on the CPU.
_PANEL_BYTES = 128 << 20


def release_scratch() -> None:
    """Free the transform scratch the SRHT keeps between calls (at most
    :data:`linalg_core._scratch.MAX_BYTES` per device and dtype).

    Example:
        >>> import linalg_core as lc
        >>> lc.sketch.release_scratch()  # the next SRHT apply allocates afresh
    """
    _scratch.release()


@dataclass(frozen=True)
class SRHT(Sketch):
    """Subsampled randomized Hadamard transform S = √(N/m)·P·(H_N/√N)·D·J.

    J zero-pads the n inputs to N = 2^⌈log₂ n⌉, D is a diagonal of random signs, H_N the
    Walsh–Hadamard matrix (applied by the fast transform, O(N log N) per column) and P selects
    m of the N rows uniformly without replacement. Tropp (2011), "Improved analysis of the
    subsampled randomized Hadamard transform"; Ailon and Chazelle (2009).

    Randomness: D is sign stream ``Stream.SRHT_SIGNS``; P keeps the m rows with the smallest
    32-bit keys of stream ``Stream.SRHT_ROWS`` (ties by index): a uniform m-subset, exact on
    every backend.

    Memory: the transform's scratch (batch × N × columns; on the CPU tall inputs go through
    column panels of at most 128 MiB) is one buffer per device and dtype shared by every SRHT
    and kept for the next call, up to 256 MiB (:func:`release_scratch` frees it): a fresh
    buffer costs a page fault per 4 KiB, as much as the transform itself. On the CPU the last
    stage of the transform writes only the m selected rows. The measurements:
    benchmarks/RESULTS.md, "Measurements behind design choices".

    Shape:
        S: (m, n), m ≤ N

    Example:
        >>> import torch, linalg_core as lc
        >>> S = lc.sketch.SRHT(8, 100, seed=0)
        >>> S.N, tuple(S.rows().shape), tuple(S.signs().shape)
        (128, (8,), (100,))
        >>> A = torch.randn(100, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
        >>> torch.allclose(S.apply(A), S.to_dense() @ A)
        True
    """

    kind: ClassVar[str] = "srht"

    def __post_init__(self):
        super().__post_init__()
        if self.m > self.N:
            raise ValueError(f"m={self.m} exceeds N={self.N} (n={self.n} padded to a power of two) for an SRHT")

    @property
    def N(self) -> int:
        """n padded to a power of two: the size of the Walsh–Hadamard transform."""
        return 1 << max(0, (self.n - 1).bit_length())

    def signs(self, device="cpu", backend=None) -> torch.Tensor:
        """The diagonal of D as int8 ±1. Shape: (n,)"""
        device = torch.device(device)

        def make():
            d = _ops.random_fill(1, self.n, self.n, 0, 0, Stream.SRHT_SIGNS, as_int64(self.seed), 1.0, True,
                                 torch.float32, device, backend=backend)
            return d[0].to(torch.int8)

        return self._cached("signs", device, make)

    def rows(self, device="cpu", backend=None) -> torch.Tensor:
        """The m rows of H_N that P keeps, ascending. Shape: (m,)"""
        device = torch.device(device)

        def make():
            keys = _ops.random_uint32(self.N, 0, Stream.SRHT_ROWS, as_int64(self.seed), device, backend=backend)
            order = keys * self.N + torch.arange(self.N, device=device)
            return torch.topk(order, self.m, largest=False, sorted=False).indices.sort().values

        return self._cached("rows", device, make)

    def _panel_width(self, x, batch=1):
        itemsize = torch.empty((), dtype=compute_dtype(x.dtype)).element_size()
        return max(8, _PANEL_BYTES // (self.N * itemsize * batch))

    def _transform(self, x, backend):  # x (B, n, K) -> (B, m, K), in x's dtype
        B, _, K = x.shape
        panel = self._panel_width(x, B)
        if x.device.type != "cpu" or K <= panel:
            return self._transform_panel(x, backend)
        # Columns transform independently: panels of columns through one bounded scratch. A
        # (B, N, K) scratch for a tall A is hundreds of MiB whose fresh pages cost as much as the
        # transform itself, and above the pool's bound it would not be kept between calls.
        out = torch.empty(B, self.m, K, dtype=x.dtype, device=x.device)
        for c0 in range(0, K, panel):
            c1 = min(K, c0 + panel)
            out[:, :, c0:c1] = self._transform_panel(x[:, :, c0:c1].contiguous(), backend)
        return out

    def _apply_blocks(self, blocks, backend):
        # When the panels copy columns anyway, the narrow blocks (a regression's b) ride in them
        # instead of costing a transform of their own (a one-column transform of a tall A is
        # all strided passes).
        K = sum(b.shape[1] for b in blocks)
        if blocks[0].device.type != "cpu" or K <= self._panel_width(blocks[0]):
            return super()._apply_blocks(blocks, backend)
        columns = [(i, j) for i, b in enumerate(blocks) for j in range(b.shape[1])]
        outs = [torch.empty(self.m, b.shape[1], dtype=b.dtype, device=b.device) for b in blocks]
        panel = self._panel_width(blocks[0])
        for c0 in range(0, K, panel):
            part = columns[c0:c0 + panel]
            pieces, spans = [], []
            for i in sorted({i for i, _ in part}):
                js = [j for k, j in part if k == i]
                pieces.append(blocks[i][:, js[0]:js[-1] + 1])
                spans.append((i, js[0], js[-1] + 1))
            res = self._transform_panel(torch.cat(pieces, dim=1)[None], backend)[0]
            at = 0
            for i, j0, j1 in spans:
                outs[i][:, j0:j1] = res[:, at:at + j1 - j0]
                at += j1 - j0
        return outs

    def _transform_panel(self, x, backend):
        return _ops.fwht_select(x, self.N, self.signs(x.device, backend), 1.0 / math.sqrt(self.m),
                                self.rows(x.device, backend), x.dtype, backend=backend)[0]

    def _apply(self, A, backend):
        return self._transform(A, backend)

    def _apply_right(self, A, backend):
        B, d, n = A.shape
        return self._transform(A.reshape(B * d, n, 1), backend).reshape(B, d, self.m)

    def _dense(self, c0, c1, dtype, device, backend):
        j = torch.arange(c0, c1, device=device)
        h = 1 - 2 * _parity(self.rows(device, backend)[:, None] & j[None, :])  # H_N[p, j] = (-1)^popcount(p & j)
        d = self.signs(device, backend)[c0:c1].to(torch.int64)
        return (h * d).to(dtype) / math.sqrt(self.m)


_MAX_SPARSE_ROWS = 2**31 - 1


@dataclass(frozen=True)
class SparseSignSketch(Sketch):
    """Sparse sign embedding (SJLT): each column has ``nnz`` entries ±1/√nnz in distinct rows.

    Column j's l-th non-zero lies in the l-th of ``nnz`` near-equal blocks of rows (the block
    construction of Kane and Nelson 2014, "Sparser Johnson–Lindenstrauss transforms"), so rows
    never collide within a column. Default nnz = 8 (Tropp et al. and RandLAPACK recommend small
    constants; 8 is the RandNLA survey's default). With nnz = 1 it is CountSketch.

    Randomness: entry (j, l) uses Philox block ``j·nnz + l`` of ``Stream.SPARSE``: lane 0 picks
    the row in its block (multiply-shift), bit 0 of lane 1 the sign.

    Shape:
        S: (m, n) with nnz non-zeros per column

    Example:
        >>> import linalg_core as lc
        >>> S = lc.sketch.SparseSignSketch(16, 100, seed=0, nnz=4)
        >>> rows, signs = S.hash()
        >>> tuple(rows.shape), int((S.to_dense() != 0).sum())
        ((100, 4), 400)
    """

    nnz: int = 8
    kind: ClassVar[str] = "sparse_sign"

    def __post_init__(self):
        super().__post_init__()
        object.__setattr__(self, "nnz", _validate.integer(self.nnz, "nnz", low=1))
        if self.m > _MAX_SPARSE_ROWS:  # row ids are int32 in every kernel
            raise ValueError(f"m={self.m} exceeds the {_MAX_SPARSE_ROWS} rows a sparse sketch can index (int32 row "
                             "ids); a sketch that large is never smaller than A")
        if self.nnz > self.m:
            raise ValueError(f"nnz={self.nnz} exceeds the sketch size m={self.m}")

    def hash(self, device="cpu", backend=None, cols: tuple[int, int] | None = None):
        """(rows int32, signs int8) of shape (c1 - c0, nnz): where column j's non-zeros are."""
        device = torch.device(device)
        c0, c1 = (0, self.n) if cols is None else cols

        def make():
            return _ops.sparse_hash(c1 - c0, c0, self.m, self.nnz, Stream.SPARSE, as_int64(self.seed), device,
                                    backend=backend)

        return self._cached("hash", device, make) if cols is None else make()

    def _apply(self, A, backend):
        rows, signs = self.hash(A.device, backend)
        return _ops.sparse_apply(A, rows, signs, self.m, 1.0 / math.sqrt(self.nnz), False, backend=backend)[0]

    def _apply_right(self, A, backend):
        rows, signs = self.hash(A.device, backend)
        return _ops.sparse_apply(A, rows, signs, self.m, 1.0 / math.sqrt(self.nnz), True, backend=backend)[0]

    def _apply_sparse(self, A, backend):
        """S A for a sparse A on its stored entries: entry (i, j, a) of A adds ±a/√nnz to
        (h_l(i), j) for each of column i's nnz rows h_l(i): one scatter-add (index_add_),
        O(nnz(A)·nnz) work, in chunks of entries."""
        rows, signs = self.hash(A.device, backend)
        d = A.shape[1]
        out = torch.zeros(self.m * d, dtype=A.dtype, device=A.device)
        i, j, a = A.coo()
        scale = 1.0 / math.sqrt(self.nnz)
        chunk = max(1, _BLOCK_ELEMS // self.nnz)
        for e0 in range(0, i.numel(), chunk):
            ie, je, ae = i[e0:e0 + chunk], j[e0:e0 + chunk], a[e0:e0 + chunk]
            target = rows[ie].to(torch.int64) * d + je[:, None]
            out.index_add_(0, target.flatten(), (signs[ie].to(A.dtype) * (ae * scale)[:, None]).flatten())
        return out.view(self.m, d)

    def _dense(self, c0, c1, dtype, device, backend):
        rows, signs = self.hash(device, backend, cols=(c0, c1))
        S = torch.zeros(self.m, c1 - c0, dtype=dtype, device=device)
        cols = torch.arange(c1 - c0, device=device)[:, None].expand_as(rows)
        S[rows.to(torch.int64), cols] = signs.to(dtype) / math.sqrt(self.nnz)
        return S


@dataclass(frozen=True)
class CountSketch(SparseSignSketch):
    """CountSketch (Clarkson and Woodruff 2013): one ±1 per column, in a uniform random row.

    ``apply`` is a scatter-add of ±A's rows: O(n·d), or O(nnz(A)) for a sparse A.

    Randomness: as :class:`SparseSignSketch` with nnz = 1.

    Shape:
        S: (m, n) with one non-zero per column

    Example:
        >>> import linalg_core as lc
        >>> S = lc.sketch.CountSketch(16, 100, seed=0)
        >>> D = S.to_dense()
        >>> (D != 0).sum(0).tolist() == [1] * 100, sorted(set(D[D != 0].abs().tolist()))
        (True, [1.0])
    """

    nnz: int = 1
    kind: ClassVar[str] = "countsketch"

    def __post_init__(self):
        super().__post_init__()
        if self.nnz != 1:
            raise ValueError(f"a CountSketch has nnz=1, got nnz={self.nnz}; use sparse_sign for more")


KINDS: dict[str, type[Sketch]] = {
    cls.kind: cls for cls in (GaussianSketch, RademacherSketch, SRHT, CountSketch, SparseSignSketch)
}


def create(kind: str, m: int, n: int, *, seed=None, **options) -> Sketch:
    """Build a sketch by name: ``create("srht", 1024, A.shape[0], seed=0)``.

    Args:
        kind: one of ``gaussian, rademacher, srht, countsketch, sparse_sign``.
        m: sketch size (rows of S).
        n: dimension sketched (columns of S).
        seed: int in [0, 2^64), ``torch.Generator``, or None for fresh entropy (recorded).
        options: ``nnz`` for ``sparse_sign``.

    Returns:
        The :class:`Sketch` of that kind.

    Randomness: the entries depend on ``(kind, m, n, seed)`` only (see :mod:`linalg_core.random`).

    Example:
        >>> import linalg_core as lc
        >>> S = lc.sketch.create("sparse_sign", 32, 1000, seed=0, nnz=4)
        >>> type(S).__name__, S.shape, S.nnz
        ('SparseSignSketch', (32, 1000), 4)
    """
    _validate.choice(kind, "kind", tuple(KINDS))
    return KINDS[kind](m, n, seed, **options)


def gaussian(m: int, n: int, *, seed=None) -> GaussianSketch:
    """Gaussian sketch, entries N(0, 1/m) (see :class:`GaussianSketch`).

    Args:
        m: sketch size (rows of S).
        n: dimension sketched (columns of S).
        seed: int in [0, 2^64), ``torch.Generator``, or None for fresh entropy (recorded on the result).

    Returns:
        A :class:`GaussianSketch`.

    Shape:
        S: (m, n)

    Randomness: ``S[i, j]`` is normal number ``i·n + j`` of the seed's Gaussian stream.

    Example:
        >>> import torch, linalg_core as lc
        >>> S = lc.sketch.gaussian(64, 1000, seed=0)
        >>> S.apply(torch.randn(1000, 5)).shape
        torch.Size([64, 5])
    """
    return GaussianSketch(m, n, seed)


def rademacher(m: int, n: int, *, seed=None) -> RademacherSketch:
    """Rademacher sketch, entries ±1/√m (see :class:`RademacherSketch`).

    Args:
        m: sketch size (rows of S).
        n: dimension sketched (columns of S).
        seed: int in [0, 2^64), ``torch.Generator``, or None for fresh entropy (recorded on the result).

    Returns:
        A :class:`RademacherSketch`.

    Shape:
        S: (m, n)

    Randomness: ``S[i, j]`` is sign number ``i·n + j`` of the seed's Rademacher stream.

    Example:
        >>> import torch, linalg_core as lc
        >>> S = lc.sketch.rademacher(64, 1000, seed=0)
        >>> S.apply(torch.ones(1000, 2)).shape
        torch.Size([64, 2])
    """
    return RademacherSketch(m, n, seed)


def srht(m: int, n: int, *, seed=None) -> SRHT:
    """Subsampled randomized Hadamard transform (Tropp 2011; see :class:`SRHT`).

    Args:
        m: sketch size (rows of S), at most N = 2^⌈log₂ n⌉.
        n: dimension sketched (columns of S).
        seed: int in [0, 2^64), ``torch.Generator``, or None for fresh entropy (recorded on the result).

    Returns:
        An :class:`SRHT`.

    Shape:
        S: (m, n)

    Randomness: the signs D and the row selection P come from two streams of the seed.

    Example:
        >>> import torch, linalg_core as lc
        >>> A = torch.randn(5000, 8, dtype=torch.float64)
        >>> S = lc.sketch.srht(256, 5000, seed=1)
        >>> lc.sketch.distortion(S, A) < 0.5
        True
    """
    return SRHT(m, n, seed)


def countsketch(m: int, n: int, *, seed=None) -> CountSketch:
    """CountSketch: one ±1 per column (Clarkson and Woodruff 2013; see :class:`CountSketch`).

    Args:
        m: sketch size (rows of S).
        n: dimension sketched (columns of S).
        seed: int in [0, 2^64), ``torch.Generator``, or None for fresh entropy (recorded on the result).

    Returns:
        A :class:`CountSketch`.

    Shape:
        S: (m, n)

    Randomness: column j's row and sign come from Philox block j of the seed's sparse stream.

    Example:
        >>> import torch, linalg_core as lc
        >>> S = lc.sketch.countsketch(8, 100, seed=0)
        >>> float(S.apply(torch.ones(100, dtype=torch.float64)).abs().sum()) <= 100
        True
    """
    return CountSketch(m, n, seed)


def sparse_sign(m: int, n: int, *, nnz: int = 8, seed=None) -> SparseSignSketch:
    """Sparse sign embedding with ``nnz`` non-zeros per column (Kane and Nelson 2014; see
    :class:`SparseSignSketch`).

    Args:
        m: sketch size (rows of S).
        n: dimension sketched (columns of S).
        seed: int in [0, 2^64), ``torch.Generator``, or None for fresh entropy (recorded on the result).
        nnz: non-zeros per column, 1 ≤ nnz ≤ m (1 is CountSketch).

    Returns:
        A :class:`SparseSignSketch`.

    Shape:
        S: (m, n)

    Randomness: entry (j, l) comes from Philox block ``j·nnz + l`` of the seed's sparse stream.

    Example:
        >>> import linalg_core as lc
        >>> S = lc.sketch.sparse_sign(32, 100, nnz=4, seed=0)
        >>> (S.to_dense() != 0).sum(0).unique().tolist()
        [4]
    """
    return SparseSignSketch(m, n, seed, nnz)
