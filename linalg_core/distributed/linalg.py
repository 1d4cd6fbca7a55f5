"""Sketching, least squares and leverage scores of row-partitioned ``dask.array`` matrices.

Every task works on one block of rows A_b (rows r0 .. r1) and returns a small result that the
scheduler sums: S A = Σ_b S[:, r0:r1] A_b, with ``S[:, r0:r1]`` generated on the worker from
(seed, column offset) by the counter-based streams (``Sketch.to_dense(cols=...)``); no sketch
and no tall intermediate travels over the network. For the same seed the result equals the
single-machine ``Sketch.apply`` to rounding (only the order of the block sums differs),
whatever the chunking.

The randomized SVD is not re-implemented here: :class:`RowBlocks` is A as a linear operator of
:mod:`linalg_core.lowrank` and :class:`RowBlockCholQR` the CholeskyQR of its row-partitioned
bases, and :func:`rsvd` hands them to the single-machine driver.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from linalg_core import _ops, _validate
from linalg_core import lowrank as _lowrank
from linalg_core import sketch as lcsketch
from linalg_core._arrays import as_tensor

# Elements of S[:, r0:r1] generated at a time inside one task (32 MiB of float64).
_SUB_ELEMS = 1 << 22


def _register_sizeof() -> None:
    """Tell dask the real size of a torch tensor (its storage, which is what pickling sends):
    without it ``dask.sizeof`` falls back to ``sys.getsizeof`` (~80 bytes), so the scheduler's
    placement decisions and the workers' transfer counters ignore every tensor result."""
    try:
        from dask.sizeof import sizeof
    except ImportError:  # pragma: no cover - exercised only without dask
        return

    @sizeof.register(torch.Tensor)
    def _tensor_size(t):
        return t.untyped_storage().nbytes() + 64


_register_sizeof()


def _dask():
    try:
        import dask
        import dask.array as da
    except ImportError as e:  # pragma: no cover - exercised only without dask
        raise ImportError("linalg_core.distributed needs dask: pip install 'dask[array]' distributed") from e
    return dask, da


def rows(A, name: str = "A"):
    """A as a dask array chunked by rows only: column-chunked input is rechunked to whole rows.

    Args:
        A: a 1-D or 2-D float ``dask.array.Array`` with known chunk sizes.
        name: the argument's name in error messages.

    Returns:
        A, or A rechunked so that every block holds whole rows.

    Shape:
        A: (n,) or (n, d);  out: the same, chunked by rows

    Example:
        >>> import dask.array as da, linalg_core as lc
        >>> lc.distributed.rows(da.ones((10, 4), chunks=(5, 2))).chunks
        ((5, 5), (4,))
    """
    _, da = _dask()
    if not isinstance(A, da.Array):
        raise TypeError(f"{name} must be a dask.array.Array, got {type(A).__name__}; use the single-machine "
                        f"functions for in-memory arrays")
    if A.ndim not in (1, 2) or A.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D or 2-D dask array, got shape {A.shape}")
    if A.dtype.kind != "f":
        raise TypeError(f"{name} has dtype {A.dtype}; a float dtype is needed")
    if any(math.isnan(c) for c in A.chunks[0]):
        raise ValueError(f"{name} has unknown chunk sizes; call {name}.compute_chunk_sizes() first")
    if A.ndim == 2 and A.numblocks[1] > 1:
        A = A.rechunk({1: -1})  # a task needs whole rows
    return A


def _offsets(A) -> list[int]:
    out, r = [], 0
    for c in A.chunks[0]:
        out.append(r)
        r += c
    return out


def _sketch_block(block, r0: int, S):
    """S[:, r0:r0 + rows] @ block in float64, S generated on the worker: the sparse kinds as their
    hash of these columns and the compiled scatter-add, the dense kinds in column slices."""
    X = as_tensor(block, "block")[0].to(torch.float64)  # aligned (an unpickled block may not be)
    X = X[:, None] if X.dim() == 1 else X
    if isinstance(S, lcsketch.SparseSignSketch):
        rows_, signs = S.hash(cols=(r0, r0 + X.shape[0]))
        out, _ = _ops.sparse_apply(X.contiguous()[None], rows_, signs, S.m, 1.0 / math.sqrt(S.nnz), False)
        return out[0]
    out = torch.zeros(S.m, X.shape[1], dtype=torch.float64)
    step = max(1, _SUB_ELEMS // S.m)
    for c0 in range(0, X.shape[0], step):
        c1 = min(X.shape[0], c0 + step)
        out += S.to_dense(cols=(r0 + c0, r0 + c1)) @ X[c0:c1]
    return out


def _blockwise_sum(fn, *arrays, extra=()):
    """Σ over row blocks of fn(block_1, ..., block_k, r0, *extra), computed by the dask scheduler."""
    dask, _ = _dask()
    blocks = [a.to_delayed().ravel() for a in arrays]
    parts = [dask.delayed(fn)(*bs, r0, *extra) for *bs, r0 in zip(*blocks, _offsets(arrays[0]))]
    while len(parts) > 1:  # a binary reduction tree
        parts = [dask.delayed(torch.add)(parts[i], parts[i + 1]) if i + 1 < len(parts) else parts[i]
                 for i in range(0, len(parts), 2)]
    return dask.compute(parts[0])[0]


def sketch_apply(S: lcsketch.Sketch, A) -> torch.Tensor:
    """S A for a row-partitioned dask array A (n × d) or vector (n,): the float64 (m, d) or (m,).

    Each task multiplies its row block by the matching columns of S, generated on the worker
    from (seed, column offset); the partial products are summed in a binary tree.

    Args:
        S: any :mod:`linalg_core.sketch` operator with S.n = n.
        A: the row-partitioned dask array.

    Returns:
        S A as a float64 torch tensor, equal to ``S.apply`` on the whole A to rounding.

    Shape:
        A: (n, d) or (n,);  out: (m, d) or (m,)

    Randomness: S's own (its seed); the same S as on a single machine.

    Example:
        >>> import dask.array as da, torch, linalg_core as lc
        >>> A = da.random.default_rng(0).standard_normal((1000, 5), chunks=(300, 5))
        >>> S = lc.sketch.gaussian(40, 1000, seed=1)
        >>> SA = lc.distributed.sketch_apply(S, A)
        >>> bool(torch.allclose(SA, S.apply(torch.from_numpy(A.compute())), atol=1e-10))
        True
    """
    if not isinstance(S, lcsketch.Sketch):
        raise TypeError(f"S must be a linalg_core sketch, got {type(S).__name__}")
    A = rows(A)
    if S.n != A.shape[0]:
        raise ValueError(f"S sketches n={S.n} rows but A has {A.shape[0]}")
    out = _blockwise_sum(_sketch_block, A, extra=(S,))
    return out[:, 0] if A.ndim == 1 else out


def _gram_block(block, r0, Rinv):
    Y = torch.as_tensor(block, dtype=torch.float64) @ Rinv
    return Y.T @ Y


def _cross_block(block, rhs, r0, Rinv, x):
    """(A_b R⁻¹)ᵀ (b_b − A_b x): the preconditioned gradient of one block."""
    Ab = torch.as_tensor(block, dtype=torch.float64)
    r = torch.as_tensor(rhs, dtype=torch.float64).reshape(Ab.shape[0], -1) - Ab @ x
    return (Ab @ Rinv).T @ r


class _Columns:
    """An (n, k) row-partitioned dask array as LSQR's n-side vector (see
    :func:`linalg_core.regression.lsqr`): lazy arithmetic with (k,) coefficients, persisted on
    the workers when its column norms are taken (a reduction), so that no graph grows."""

    dtype = torch.float64

    def __init__(self, a):
        self.a, self.shape = a, a.shape

    def __sub__(self, other):
        return _Columns(self.a - other.a)

    def __rmul__(self, coef):
        return _Columns(self.a * coef.numpy())

    def __truediv__(self, coef):
        return _Columns(self.a / coef.numpy())

    def column_norms(self) -> torch.Tensor:
        self.a = self.a.persist()
        return _blockwise_sum(lambda u, r0: _tensor(u, torch.float64).square().sum(0), self.a).sqrt()


def _lsqr_solve(A, B, R, x, tol, passes):
    """Sketch-and-precondition's LSQR inner solver on Y = A R⁻¹ (κ(Y) ≈ 3): the products
    Y V (one map over the blocks) and Yᵀ U (a reduction) run on the workers, the d-side recurrence
    here; two rounds on the residual correction, like the single-machine solver."""
    from linalg_core.regression.lsqr import lsqr

    d = x.shape[0]
    f64 = torch.float64

    def matvec(V):
        return _Columns(_times(A, torch.linalg.solve_triangular(R, V, upper=True), f64))

    def rmatvec(U):
        G = _blockwise_sum(lambda a, u, r0: _tensor(a, f64).T @ _tensor(u, f64), A, U.a)
        return torch.linalg.solve_triangular(R.T, G, upper=False)

    iters = 100 + 2 * int(math.log2(1 / torch.finfo(f64).eps))
    for _ in range(2):
        r = _Columns(B - _times(A, x, f64))
        res = lsqr(matvec, rmatvec, r, d, tol=max(tol, 10 * torch.finfo(f64).eps), maxiter=iters)
        delta = torch.linalg.solve_triangular(R, res.x, upper=True)
        x = x + delta
        passes += 2 + 2 * res.iterations  # the residual, the first Yᵀu, then Y v and Yᵀ u per iteration
        if float(delta.norm()) <= 10 * torch.finfo(f64).eps * float(x.norm()):
            break
    return x, passes


def lstsq(A, b, *, method: str = "sketch_and_precondition", sketch: str = "sparse_sign", sketch_rows=None, seed=None,
          tol: float = 1e-12, maxiter: int = 5, solver: str = "direct"):
    """min_x ‖A x − b‖₂ for a tall row-partitioned dask array A (n × d) and b (n,) or (n, k), as
    :func:`linalg_core.regression.lstsq` (sketch-and-solve, Sarlós 2006; sketch-and-precondition,
    Rokhlin and Tygert 2008) with the passes over A done by the workers.

    ``method="sketch_and_solve"``: x = argmin ‖S(Ax − b)‖ with m = 16d rows (one pass over A).
    The sketch (default a sparse sign embedding, nnz = 8: one compiled scatter-add per block, far
    cheaper to generate than a dense Gaussian block) is any :func:`linalg_core.sketch.create` kind.
    ``"sketch_and_precondition"``: R from the QR of S A (m = 4d), then the semi-normal equations of
    the well-conditioned Y = A R⁻¹ (YᵀY computed block by block, never AᵀA) with iterative
    refinement r = b − A x until the preconditioned gradient ‖Yᵀr‖ stops shrinking (Björck's
    corrected semi-normal equations; each refinement is one pass over A). This is the ``direct``
    inner solver of :func:`linalg_core.regression.lstsq`; ``solver="lsqr"`` runs LSQR on Y
    instead, its products Y v (a map) and Yᵀu (a reduction) on the workers: two passes over A
    per iteration (many more passes in all than ``direct``'s few refinements), for when the
    semi-normal equations' squared conditioning is not wanted.

    Args:
        A: (n, d) row-partitioned dask array, n ≥ d.
        b: (n,) or (n, k) dask array.
        method: ``"sketch_and_precondition"`` or ``"sketch_and_solve"``.
        sketch: a :func:`linalg_core.sketch.create` kind.
        sketch_rows: m (default 16d for sketch-and-solve, 4d for sketch-and-precondition).
        seed: the sketch's seed.
        tol: the refinement / LSQR tolerance.
        maxiter: refinements (``direct``) or LSQR iterations.
        solver: ``"direct"`` or ``"lsqr"``.

    Returns:
        (x, passes): the float64 solution (d,) or (d, k) and the number of passes over A.

    Shape:
        A: (n, d);  b: (n,) or (n, k);  x: (d,) or (d, k)

    Randomness:
        The sketch's stream (``seed``); the same seed gives the single-machine sketch.

    Example:
        >>> import dask.array as da, torch, linalg_core as lc
        >>> A = da.random.default_rng(0).standard_normal((1000, 5), chunks=(300, 5))
        >>> x, passes = lc.distributed.lstsq(A, A @ da.ones(5, chunks=5), seed=0)
        >>> [round(v, 6) for v in x.tolist()]
        [1.0, 1.0, 1.0, 1.0, 1.0]
    """
    A, b = rows(A), rows(b, "b")
    if A.ndim != 2:
        raise ValueError(f"A must be 2-D, got shape {A.shape}")
    n, d = A.shape
    if b.shape[0] != n:
        raise ValueError(f"b has {b.shape[0]} rows, A has {n}")
    if method not in ("sketch_and_solve", "sketch_and_precondition"):
        raise ValueError(f"method={method!r} must be 'sketch_and_solve' or 'sketch_and_precondition'")
    _validate.choice(solver, "solver", ("direct", "lsqr"))
    b = b.rechunk((A.chunks[0],) + ((b.shape[1],) if b.ndim == 2 else ()))
    m = sketch_rows or (16 * d if method == "sketch_and_solve" else 4 * d)
    m = _validate.integer(m, "sketch_rows", low=d, high=n)
    S = lcsketch.create(sketch, m, n, seed=seed)
    import dask.array as da

    Ab = da.concatenate([A, b[:, None] if b.ndim == 1 else b], axis=1)
    SAb = sketch_apply(S, Ab)
    SA, Sb = SAb[:, :d], SAb[:, d:]
    if method == "sketch_and_solve":
        x = torch.linalg.lstsq(SA, Sb).solution
        return (x[:, 0] if b.ndim == 1 else x), 1
    Q, R = torch.linalg.qr(SA)
    if float(torch.diagonal(R).abs().min()) <= 10 * d * torch.finfo(torch.float64).eps * float(R.abs().max()):
        raise ValueError("A is numerically rank deficient (its sketch has a near-zero pivot); use method="
                         "'sketch_and_solve' or a regularised problem")
    x = torch.zeros(d, Sb.shape[1], dtype=torch.float64)
    if solver == "lsqr":
        B = b[:, None] if b.ndim == 1 else b
        x, passes = _lsqr_solve(A, B, R, x, tol, 1)
        return (x[:, 0] if b.ndim == 1 else x), passes
    Rinv = torch.linalg.solve_triangular(R, torch.eye(d, dtype=torch.float64), upper=True)
    G = _blockwise_sum(_gram_block, A, extra=(Rinv,))
    L = torch.linalg.cholesky(G)
    passes, last = 2, math.inf
    for _ in range(maxiter):
        g = _blockwise_sum(_cross_block, A, b, extra=(Rinv, x))
        passes += 1
        gn = float(g.norm())
        if gn >= last or gn == 0:
            break
        x = x + Rinv @ torch.cholesky_solve(g, L)
        last = gn
        if gn <= tol * max(1.0, float(x.norm())):
            break
    return (x[:, 0] if b.ndim == 1 else x), passes


def _rownorm_block(block, r0, Rinv):
    Y = torch.as_tensor(block, dtype=torch.float64) @ Rinv
    return Y.square().sum(1)


def leverage_scores(A, *, seed=None):
    """Exact leverage scores (n,) of a row-partitioned dask matrix: CholeskyQR2 (Fukaya et al.
    2014) on the blocks
    (R from the Gram of A R₁⁻¹ with R₁ from a 4d-row Gaussian sketch, so the Gram is
    well conditioned), then the squared row norms of A R⁻¹ — a dask array, computed lazily.

    Args:
        A: (n, d) row-partitioned dask array of full column rank.
        seed: the seed of the preconditioning sketch (the scores do not depend on it beyond
            rounding).

    Returns:
        The leverage scores as a lazy float64 dask array (they sum to d).

    Shape:
        A: (n, d);  out: (n,)

    Randomness: the Gaussian sketch of R₁ (``seed``).

    Example:
        >>> import dask.array as da, torch, linalg_core as lc
        >>> A = da.random.default_rng(0).standard_normal((1000, 5), chunks=(300, 5))
        >>> lev = lc.distributed.leverage_scores(A, seed=0)
        >>> lev.shape, round(float(lev.sum().compute()), 6)
        ((1000,), 5.0)
    """
    A = rows(A)
    n, d = A.shape
    S = lcsketch.gaussian(min(n, 4 * d), n, seed=seed)
    _, R1 = torch.linalg.qr(sketch_apply(S, A))
    R1inv = torch.linalg.solve_triangular(R1, torch.eye(d, dtype=torch.float64), upper=True)
    G = _blockwise_sum(_gram_block, A, extra=(R1inv,))
    R2 = torch.linalg.cholesky(G).T
    Rinv = R1inv @ torch.linalg.solve_triangular(R2, torch.eye(d, dtype=torch.float64), upper=True)
    return A.map_blocks(lambda blk: _rownorm_block(blk, 0, Rinv).numpy(), drop_axis=1, dtype="float64")


def _compute_dtype(A) -> torch.dtype:
    return torch.float64 if A.dtype == "float64" else torch.float32


def _tensor(block, dtype):
    return torch.as_tensor(block).to(dtype)


def _numpy_dtype(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def _times(X, M: torch.Tensor, dtype: torch.dtype):
    """X M for a row-partitioned dask X (lazy: one product per row block), in ``dtype``."""
    return X.map_blocks(lambda b, M=M: (_tensor(b, dtype) @ M).numpy(), chunks=(X.chunks[0], (M.shape[1],)),
                        dtype=_numpy_dtype(dtype))


def _gram(Y, dtype) -> torch.Tensor:
    """Σ_b Y_bᵀY_b over the row blocks (k × k)."""
    return _blockwise_sum(lambda b, r0: _tensor(b, dtype).T @ _tensor(b, dtype), Y)


class _Tall:
    """A tall (m, k) matrix held as the row blocks of a dask array: the m-side of
    :class:`RowBlocks` (what its ``matmul`` returns and its ``rmatmul`` takes). It offers what the
    low-rank drivers do with such a matrix: ``@`` a small torch matrix and ``*`` by column signs
    (both lazy; signs are folded into the product that made the matrix, where they are exact),
    and ``column_peaks()`` for the sign rule of :func:`linalg_core.lowrank.flip_signs`.

    Shape:
        a: (m, k) dask array
    """

    def __init__(self, a, dtype: torch.dtype, factors=None):
        self.a, self.dtype, self._factors = a, dtype, factors
        self.shape = tuple(a.shape)

    def __matmul__(self, M: torch.Tensor) -> "_Tall":
        return _Tall(_times(self.a, M, self.dtype), self.dtype, (self, M))

    def __mul__(self, d: torch.Tensor) -> "_Tall":
        if self._factors is not None:  # (Q M) d = Q (M d)
            base, M = self._factors
            return base @ (M * d)
        dtype = self.dtype
        return _Tall(self.a.map_blocks(lambda b: (_tensor(b, dtype) * d).numpy(), dtype=_numpy_dtype(dtype)), dtype)

    def column_peaks(self) -> torch.Tensor:
        """The :func:`~linalg_core.lowrank.svd.column_peaks` of every row block, stacked in row
        order (blocks, k): only 1 × k per block travels."""
        from linalg_core.lowrank.svd import column_peaks

        dask, _ = _dask()
        dtype = self.dtype
        parts = dask.compute(*[dask.delayed(lambda b: column_peaks(_tensor(b, dtype)))(b)
                               for b in self.a.to_delayed().ravel()])
        return torch.cat(parts, dim=-2)


class RowBlocks(_lowrank.Operator):
    """A row-partitioned dask array A (m × n) as a linear operator of
    :mod:`linalg_core.lowrank` (the :class:`~linalg_core.lowrank.LinearOperator` protocol), so
    the single-machine drivers run on it.

    ``matmul(X)`` is one product per row block, persisted on the workers (a :class:`_Tall` m-side
    matrix); ``rmatmul(Y)`` = Σ_b (Y_bᵀA_b)ᵀ a reduction of n × k results; ``matmul_normal`` makes
    the Gaussian Ω inside every task from (seed, stream, offset), so Ω never travels.

    Shape:
        A: (m, n);  matmul: X (n, k) -> (m, k) row blocks;  rmatmul: (m, k) row blocks -> (n, k)

    Example:
        >>> import dask.array as da, torch, linalg_core as lc
        >>> A = da.random.default_rng(0).standard_normal((1000, 5), chunks=(300, 5))
        >>> op = lc.distributed.RowBlocks(A)
        >>> op.shape, op.dtype
        ((1000, 5), torch.float64)
        >>> bool(torch.allclose(op.fro_norm_sq(), torch.from_numpy(A.compute()).square().sum()))
        True
        >>> tuple(op.rmatmul(op.matmul(torch.eye(5, dtype=torch.float64))).shape)  # AᵀA
        (5, 5)
    """

    def __init__(self, A, name: str = "A"):
        A = rows(A, name)
        if A.ndim != 2:
            raise ValueError(f"{name} must be 2-D, got shape {A.shape}")
        self.A = A
        self.shape = tuple(int(s) for s in A.shape)
        self.dtype = _compute_dtype(A)
        self.device = torch.device("cpu")

    def matmul(self, X: torch.Tensor) -> _Tall:
        """A X, one product per row block, persisted on the workers (an m-side row-block matrix).

        Args:
            X: the (n, k) right operand, in memory.

        Returns:
            The row blocks of A X (the operand :meth:`rmatmul` and :class:`RowBlockCholQR` take).

        Shape:
            X: (n, k);  out: (m, k) in row blocks
        """
        return _Tall(_times(self.A, X.to(self.dtype), self.dtype).persist(), self.dtype)  # read twice: Gram, Q

    def matmul_normal(self, k: int, *, seed: int, stream: int, offset: int, backend=None) -> _Tall:
        """A Ω for the Gaussian Ω = ``linalg_core.random.normal((n, k), seed=, stream=, offset=)``,
        generated inside every task (Ω never travels).

        Args:
            k: the columns of Ω.
            seed, stream, offset: Ω's counter-based stream (see :mod:`linalg_core.random`).
            backend: force a backend for the generation.

        Returns:
            The row blocks of A Ω.

        Shape:
            out: (m, k) in row blocks
        """
        from linalg_core.random import normal

        n, dtype = self.shape[1], self.dtype

        def first(b):
            omega = normal((n, k), seed=seed, stream=stream, offset=offset, dtype=dtype, backend=backend)
            return (_tensor(b, dtype) @ omega).numpy()

        return _Tall(self.A.map_blocks(first, chunks=(self.A.chunks[0], (k,)), dtype=_numpy_dtype(dtype)).persist(),
                     dtype)

    def rmatmul(self, Y: _Tall) -> torch.Tensor:
        """Aᵀ Y = Σ_b (Y_bᵀ A_b)ᵀ, a reduction over the row blocks.

        Args:
            Y: row blocks aligned with A's (from :meth:`matmul` or :class:`RowBlockCholQR`).

        Returns:
            Aᵀ Y as an in-memory tensor.

        Shape:
            Y: (m, k) in row blocks;  out: (n, k)
        """
        # (Y_bᵀA_b)ᵀ, as the single machine's dense operator computes Aᵀ Y (A read in its order)
        dtype = self.dtype
        return _blockwise_sum(lambda a, y, r0: (_tensor(y, dtype).T @ _tensor(a, dtype)).T, self.A, Y.a)

    def fro_norm_sq(self) -> torch.Tensor:
        """‖A‖_F², a reduction over the row blocks (0-d tensor of the compute dtype)."""
        dtype = self.dtype
        return _blockwise_sum(lambda a, r0: _tensor(a, dtype).square().sum(), self.A)


@dataclass(frozen=True)
class RowBlockCholQR:
    """CholeskyQR of a row-partitioned tall Y (a :class:`_Tall`), built from the single machine's
    rounds (:func:`linalg_core.lowrank.orthonormalize.cholqr_round` with a Gram reduction over the
    blocks and a product per block): ``rounds=1`` between passes, ``rounds=2`` (CholeskyQR2, then
    checked: ‖QᵀQ − I‖_F ≤ 50·k·u, one more k × k reduction) for a returned basis. Where
    CholeskyQR breaks down or the check fails, dask's TSQR (``dask.array.linalg.tsqr``) stands in
    for the single machine's Householder QR.

    A torch tensor (the n-side Z = AᵀQ, small and in memory) gets the single machine's
    :class:`~linalg_core.lowrank.CholQR` / :class:`~linalg_core.lowrank.CholQR2`, so a
    :class:`~linalg_core.lowrank.SubspaceIteration` with this ``orth`` on :class:`RowBlocks` is the
    single-machine subspace iteration.

    Shape:
        Y: (m, k);  out: (m, k)

    Example:
        >>> import dask.array as da, torch, linalg_core as lc
        >>> A = da.random.default_rng(0).standard_normal((1000, 5), chunks=(300, 5))
        >>> op = lc.distributed.RowBlocks(A)
        >>> svd = lc.rsvd(op, 2, finder=lc.lowrank.SubspaceIteration(niter=2, orth=lc.distributed.RowBlockCholQR()),
        ...               precision="full", seed=0)
        >>> ref = torch.linalg.svdvals(torch.from_numpy(A.compute()))[:2]
        >>> bool(torch.allclose(svd.S, ref, rtol=1e-2)), lc.distributed.RowBlockCholQR().final
        (True, RowBlockCholQR(rounds=2))
    """

    rounds: int = 1

    def __post_init__(self):
        if self.rounds not in (1, 2):
            raise ValueError(f"rounds={self.rounds!r} must be 1 or 2")

    @property
    def orthonormal(self) -> bool:
        """Whether the result is orthonormal to rounding (``rounds=2``)."""
        return self.rounds == 2

    @property
    def final(self) -> "RowBlockCholQR":
        """The orthonormalizer of a returned basis: ``RowBlockCholQR(2)``."""
        return RowBlockCholQR(2)

    def __call__(self, Y):
        if isinstance(Y, torch.Tensor):
            return (_lowrank.CholQR() if self.rounds == 1 else _lowrank.CholQR2())(Y)
        from linalg_core.lowrank.orthonormalize import cholqr2_rounds, cholqr_round

        dtype = Y.dtype

        def gram(T):
            return _gram(T.a, dtype)

        def times(T, M):
            return _Tall(_times(T.a, M, dtype).persist(), dtype)

        if self.rounds == 2:
            Q = cholqr2_rounds(Y, gram=gram, times=times)
        else:
            Q = cholqr_round(Y, gram=gram, times=times)
        if Q is None:
            _, da = _dask()
            Q = _Tall(da.linalg.tsqr(Y.a)[0].persist(), dtype)
        return Q


def rsvd(A, rank: int, *, oversample="auto", niter="auto", seed=None):
    """Randomized SVD of a row-partitioned dask matrix A (m × n): A ≈ U diag(S) Vh, computed by
    the single-machine driver :func:`linalg_core.rsvd` on A's row blocks (:class:`RowBlocks`) with
    ``SubspaceIteration(orth=RowBlockCholQR())`` and ``precision="full"``.

    Halko, Martinsson and Tropp 2011, Algorithm 4.4: Y = AΩ with Ω (n × k) generated inside
    every task from (seed, stream 6), exactly the single-machine Ω; ``niter`` rounds of
    Z = orth(AᵀQ) (a reduction of k × n products, then the in-memory CholeskyQR) and Y = A Z, the
    tall bases by CholeskyQR over the row blocks (k × k Gram reductions; CholeskyQR2 for the
    last, TSQR where it breaks down); B = QᵀA as a reduction; the small SVD of B and the same
    deterministic signs (the largest entry of each column of U positive, the peaks found per
    block). For the same seed the result equals ``lc.rsvd(A.compute(), rank, seed=seed,
    precision="full")`` to rounding, whatever the chunking (only the order of the block sums
    differs), with one exception: ``oversample="auto"`` sketches the auto width from the start
    (the single machine starts narrower and widens unless the spectrum shows a gap, which needs
    column operations on the tall basis the row blocks do not offer), so the default equals
    ``lc.rsvd`` given that width, ``oversample=sketch_size(rank, m, n)[1] - rank``; an
    ill-conditioned basis falls back to TSQR where the single machine uses Householder QR.

    Args:
        A: (m, n) dask array, float32 (computed in float32) or float64.
        rank, oversample, niter, seed: as in :func:`linalg_core.rsvd` (the same defaults).

    Returns:
        (U as a dask array (m, rank), S (rank,), Vh (rank, n)).

    Shape:
        A: (m, n);  U: (m, rank);  S: (rank,);  Vh: (rank, n)

    Randomness:
        Ω is generated in each task: only k × k and k × n results travel.

    Example:
        >>> import dask.array as da, torch, linalg_core as lc
        >>> A = da.random.default_rng(0).standard_normal((2000, 30), chunks=(500, 30))
        >>> U, S, Vh = lc.distributed.rsvd(A, 5, seed=0)
        >>> p = lc.lowrank.sketch_size(5, 2000, 30)[1] - 5  # the auto width, given
        >>> ref = lc.rsvd(torch.from_numpy(A.compute()), 5, seed=0, oversample=p)
        >>> bool(torch.allclose(S, ref.S)) and bool(torch.allclose(Vh, ref.Vh))
        True
    """
    out = _lowrank.rsvd(RowBlocks(A), rank, finder=_lowrank.SubspaceIteration(orth=RowBlockCholQR()), niter=niter,
                        oversample=oversample, seed=seed, precision="full")
    return out.U.a, out.S, out.Vh


def sample_rows(A, size: float, *, seed=None):
    """Leverage-score row sampling of a row-partitioned dask matrix (p = 2): row i kept with
    probability q_i = min(1, β ℓ_i), Σ q_i = size, weight q_i^(-1/2) — the draws u_i are word i
    of Philox stream 11 of ``seed``, generated inside each block at its row offset, so the sample
    is the one :func:`linalg_core.sampling.sample_rows` draws from the same probabilities.

    Args:
        A: (n, d) row-partitioned dask array of full column rank.
        size: the expected number of rows kept.
        seed: the seed of the draws (and of the leverage scores' sketch).

    Returns:
        (indices int64 (s,), weights float64 (s,)).

    Shape:
        A: (n, d);  indices, weights: (s,), s ≈ size

    Randomness: word i of Philox stream 11 of ``seed`` decides row i.

    Example:
        >>> import dask.array as da, torch, linalg_core as lc
        >>> A = da.random.default_rng(0).standard_normal((1000, 5), chunks=(300, 5))
        >>> idx, w = lc.distributed.sample_rows(A, 100, seed=0)
        >>> idx.dtype, w.dtype, 50 < len(idx) < 150
        (torch.int64, torch.float64, True)
    """
    from linalg_core.random import uint32
    from linalg_core.sampling.sample import SAMPLE_STREAM, inclusion_probabilities

    lev = leverage_scores(A, seed=seed).persist()
    q = inclusion_probabilities(torch.from_numpy(lev.compute()), float(size))
    seed = _validate.seed(seed)
    out_idx, out_w = [], []
    for r0, c in zip(_offsets(A), A.chunks[0]):
        u = (uint32(c, seed=seed, stream=SAMPLE_STREAM, offset=r0).to(torch.float64) + 0.5) / 2.0**32
        keep = torch.nonzero(u < q[r0:r0 + c]).flatten()
        out_idx.append(keep + r0)
        out_w.append(q[r0:r0 + c][keep] ** -0.5)
    return torch.cat(out_idx), torch.cat(out_w)
