"""The low-rank drivers' stage objects (range finders, orthonormalizers, small SVD) and the one
operator protocol: every older call form and the equivalent stage-object form give bit-identical
results for the same seed (rsvd's finders and orthonormalizers, adaptive tol, batched, float32 /
float64, sparse input, the bfloat16 paths; nystrom; cur), the deprecated keywords warn and the
shortcuts do not, the stages are frozen and validated, and adapters / quant / distributed use the
public API only."""

import ast
import dataclasses
import pathlib
import warnings

import numpy as np
import pytest
import scipy.sparse as sp
import torch

import linalg_core as lc
from linalg_core.lowrank import (
    LU,
    AdaptiveQB,
    BlockKrylov,
    CholQR,
    CholQR2,
    Householder,
    RangeFinder,
    RowSpace,
    SmallSVD,
    SubspaceIteration,
    as_linear_operator,
)
from linalg_core.testing.matrices import llm_like, with_spectrum


def _A64():
    return with_spectrum(120, 80, torch.logspace(0, -4, 80, dtype=torch.float64), seed=1)


def _A32():
    return llm_like(96, 64, seed=2)


def _sparse():
    return sp.random(200, 90, density=0.05, random_state=3, format="csr")


def _old(*args, **kw):
    """A call in an older form: the deprecated keywords warn, nothing else does."""
    deprecated = {"method", "normalizer", "range_finder"} & kw.keys()
    if deprecated:
        with pytest.warns(DeprecationWarning, match="deprecated"):
            return lc.rsvd(*args, **kw)
    return _quiet(*args, **kw)


def _quiet(*args, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        return lc.rsvd(*args, **kw)


def _equal(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        x, y = torch.as_tensor(x), torch.as_tensor(y)
        assert x.dtype == y.dtype and x.shape == y.shape
        assert torch.equal(x, y), float((x.double() - y.double()).abs().max())


def _first_plus_one(op, k, *, niter, normalizer, seed, backend):
    return lc.lowrank.subspace_iteration(op, k, niter=niter + 1, normalizer=normalizer, seed=seed, backend=backend)


@dataclasses.dataclass(frozen=True)
class _OneMore(RangeFinder):
    """The range_finder= callable above as a RangeFinder subclass."""

    niter: int = 4

    def __call__(self, op, k, *, seed=0, backend=None):
        return SubspaceIteration(self.niter + 1, CholQR())(op, k, seed=seed, backend=backend)


# (name, A, rank, older keywords, stage-object keywords)
CASES = [
    ("default", _A64, 10, dict(seed=0), dict(seed=0, finder=SubspaceIteration())),
    ("shortcuts", _A64, 10, dict(seed=1, niter=1, oversample=5),
     dict(seed=1, oversample=5, finder=SubspaceIteration(niter=1, orth=CholQR()))),
    ("subspace", _A64, 10, dict(seed=0, method="subspace"), dict(seed=0, finder=SubspaceIteration())),
    ("rowspace", _A64, 10, dict(seed=0, method="rowspace"), dict(seed=0, finder=RowSpace())),
    ("rowspace niter=0", _A64, 10, dict(seed=7, method="rowspace", niter=0),
     dict(seed=7, finder=RowSpace(niter=0))),
    ("krylov", _A64, 10, dict(seed=0, method="krylov", niter=2), dict(seed=0, finder=BlockKrylov(niter=2))),
    ("tol", _A64, 60, dict(seed=0, tol=1e-2), dict(seed=0, finder=AdaptiveQB(1e-2))),
    ("tol beats method", _A64, 60, dict(seed=0, tol=1e-2, method="krylov", niter=1),
     dict(seed=0, finder=AdaptiveQB(tol=1e-2, niter=1))),
    ("tol block", _A64, 60, dict(seed=2, tol=1e-3, normalizer="qr"),
     dict(seed=2, finder=AdaptiveQB(1e-3, block=15, orth=Householder()))),
    ("batched", lambda: torch.stack([with_spectrum(50, 40, torch.logspace(0, -2, 40, dtype=torch.float64), seed=s)
                                     for s in range(3)]), 6, dict(seed=2), dict(seed=2, finder=SubspaceIteration())),
    ("float32", _A32, 8, dict(seed=3), dict(seed=3, finder=SubspaceIteration(), small_svd=SmallSVD())),
    ("float32 rowspace qr", _A32, 8, dict(seed=3, method="rowspace", normalizer="qr"),
     dict(seed=3, finder=RowSpace(orth=Householder()))),
    ("float32 lu", _A32, 8, dict(seed=3, normalizer="lu"), dict(seed=3, finder=SubspaceIteration(orth=LU()))),
    ("float32 cholqr2 krylov", _A32, 8, dict(seed=3, normalizer="cholqr2", method="krylov"),
     dict(seed=3, finder=BlockKrylov(orth=CholQR2()))),
    ("bf16 auto", _A32, 8, dict(seed=3, precision="bf16", method="auto", niter=2),
     dict(seed=3, precision="bf16", finder=RowSpace(niter=2, bf16_only=True))),
    ("bf16 subspace", _A32, 8, dict(seed=3, precision="bf16"),
     dict(seed=3, precision="bf16", finder=SubspaceIteration())),
    ("bfloat16 input", lambda: _A32().bfloat16(), 8, dict(seed=3), dict(seed=3, finder=SubspaceIteration())),
    ("sparse", _sparse, 7, dict(seed=5), dict(seed=5, finder=SubspaceIteration())),
    ("sparse float32 tol", lambda: _sparse().astype(np.float32), 30, dict(seed=5, tol=0.7),
     dict(seed=5, finder=AdaptiveQB(0.7))),
    ("range_finder", _A64, 10, dict(seed=6, range_finder=_first_plus_one, niter=1),
     dict(seed=6, finder=_OneMore(niter=1))),
]


@pytest.mark.parametrize("name,make,rank,old,new", CASES, ids=[c[0] for c in CASES])
def test_rsvd_old_and_stage_forms_are_bit_identical(name, make, rank, old, new):
    A = make()
    a = _old(A, rank, **old)
    b = _quiet(A, rank, **new)
    _equal(a, b)
    assert a.seed == b.seed
    assert type(a.U) is type(b.U)  # numpy for scipy input, torch otherwise


@pytest.mark.parametrize("method,finder", [
    ("subspace", SubspaceIteration(niter=2)),  # continues from the bfloat16 basis
    ("rowspace", RowSpace(niter=2)),  # starts over, on the row space
    ("auto", RowSpace(niter=2, bf16_only=True)),  # starts over as subspace iteration
    ("krylov", BlockKrylov(niter=2)),
])
def test_the_bf16_fallback_is_the_same_in_both_forms(monkeypatch, method, finder):
    # σ_k/σ_1 below BF16_RANGE: precision="auto" redoes the work in full precision
    import importlib

    rsvd_module = importlib.import_module("linalg_core.lowrank.rsvd")
    monkeypatch.setattr(rsvd_module, "_bf16_pays", lambda op, k, finder: True)
    A = with_spectrum(150, 100, torch.logspace(0, -6, 100, dtype=torch.float64), seed=4).float()
    old = _old(A, 8, method=method, niter=2, seed=0)
    new = _quiet(A, 8, finder=finder, seed=0)
    _equal(old, new)
    bf16_only = _quiet(A, 8, finder=finder, seed=0, precision="bf16")  # no fallback: another result
    assert not torch.equal(bf16_only.S, new.S)


def test_nystrom_and_cur_take_the_stages_with_the_same_results():
    A = _A64()
    X = torch.randn(150, 30, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    G = X @ X.T
    for args, kw in ((G, dict(psd=True)), (G, dict(psd=True, niter=2)), (A, dict(niter=1)), (_sparse(), {})):
        a = lc.nystrom(args, 6, seed=0, **kw)
        b = lc.nystrom(args, 6, seed=0, orth=Householder(), **kw)
        _equal((a.C, a.core, a.R), (b.C, b.core, b.R))
        c = lc.nystrom(args, 6, seed=0, orth=CholQR2(), **kw)  # another orthonormal basis: the same space
        torch.testing.assert_close(torch.as_tensor(c.dense()), torch.as_tensor(a.dense()), rtol=1e-6,
                                   atol=1e-8 * float(torch.as_tensor(a.dense()).abs().max()))
    with pytest.raises(ValueError, match="orthonormal"):
        lc.nystrom(G, 6, psd=True, orth=LU())
    with pytest.raises(ValueError, match="orth='gs'"):
        lc.nystrom(G, 6, psd=True, orth="gs")
    for method in ("pivoted_qr", "leverage"):
        a = lc.cur(A, 8, seed=0, method=method)
        b = lc.cur(A, 8, seed=0, method=method, **({"finder": SubspaceIteration()} if method == "leverage" else {}))
        _equal((a.cols, a.rows, a.C, a.U, a.R), (b.cols, b.rows, b.C, b.U, b.R))
    krylov = lc.cur(A, 8, seed=0, method="leverage", finder=BlockKrylov(niter=1))
    assert krylov.C.shape == (120, 8)
    with pytest.raises(ValueError, match="method='leverage' only"):
        lc.cur(A, 8, finder=SubspaceIteration())


def test_shortcuts_do_not_warn_and_set_the_finder():
    A = _A64()
    a = _quiet(A, 10, seed=0, niter=2, finder=BlockKrylov())  # niter= sets the finder's niter
    _equal(a, _quiet(A, 10, seed=0, finder=BlockKrylov(niter=2)))
    _equal(_quiet(A, 10, seed=0, niter="auto", finder=BlockKrylov(niter=1)),
           _quiet(A, 10, seed=0, finder=BlockKrylov(niter=1)))
    many = lc.rsvd_many([A, 2 * A, A[:50]], 5, seed=0, finder=SubspaceIteration(niter=1))
    for x, y in zip(many, lc.rsvd_many([A, 2 * A, A[:50]], 5, seed=0, niter=1)):
        _equal(x, y)


def test_an_unreached_tol_warns_in_both_forms():
    A = _A64()
    with pytest.warns(UserWarning, match="tol=0.001 not reached"):
        a = lc.rsvd(A, 20, seed=0, tol=1e-3)
    with pytest.warns(UserWarning, match="tol=0.001 not reached") as record:
        b = lc.rsvd(A, 20, seed=0, finder=AdaptiveQB(1e-3))
    assert record[0].filename == __file__  # reported at the caller's line
    _equal(a, b)


def test_conflicting_forms_are_refused():
    A = _A64()
    with pytest.raises(ValueError, match="finder= and the older method="):
        lc.rsvd(A, 5, finder=SubspaceIteration(), method="krylov")
    with pytest.raises(ValueError, match="normalizer="):
        lc.rsvd(A, 5, finder=SubspaceIteration(), normalizer="qr")
    with pytest.raises(ValueError, match="AdaptiveQB"):
        lc.rsvd(A, 5, finder=SubspaceIteration(), tol=0.1)
    with pytest.raises(TypeError, match="range-finder stage"):
        lc.rsvd(A, 5, finder="subspace")
    with pytest.raises(TypeError, match="small_svd"):
        lc.rsvd(A, 5, small_svd="gesdd")
    with pytest.raises(ValueError, match="method='lanczos'"):
        with pytest.warns(DeprecationWarning):
            lc.rsvd(A, 5, method="lanczos")


def test_stage_objects_are_frozen_validated_and_comparable():
    s = SubspaceIteration(niter=2, orth="qr")  # a method name becomes its object
    assert s == SubspaceIteration(2, Householder()) and hash(s) == hash(SubspaceIteration(2, Householder()))
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.niter = 3
    assert SubspaceIteration(np.int64(3)).niter == 3 and type(SubspaceIteration(np.int64(3)).niter) is int
    for bad, exc, msg in [
        (lambda: SubspaceIteration(niter=-1), ValueError, "niter=-1"),
        (lambda: BlockKrylov(niter=1.5), TypeError, "niter must be an integer"),
        (lambda: RowSpace(orth="gs"), ValueError, "orth='gs'"),
        (lambda: RowSpace(orth=3), TypeError, "orth must be an orthonormalizer"),
        (lambda: RowSpace(bf16_only=1), TypeError, "bf16_only must be True or False"),
        (lambda: AdaptiveQB(2.0), ValueError, "tol"),
        (lambda: AdaptiveQB(0.1, block=0), ValueError, "block=0"),
        (lambda: SmallSVD(gram="yes"), TypeError, "gram"),
    ]:
        with pytest.raises(exc, match=msg):
            bad()
    assert CholQR().final == CholQR2() and LU().final == CholQR2() and Householder().final == Householder()
    assert not CholQR().orthonormal and CholQR2().orthonormal
    assert "SubspaceIteration(niter=2" in repr(s)


def test_orthonormalizers_are_the_string_forms():
    Y = torch.randn(60, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    for name, stage in (("qr", Householder()), ("cholqr2", CholQR2()), ("cholqr", CholQR()), ("lu", LU())):
        assert torch.equal(lc.lowrank.orthonormalize(Y, name), stage(Y))
        assert torch.equal(lc.lowrank.orthonormalize(Y, stage), stage(Y))
    Q = CholQR2()(Y)
    torch.testing.assert_close(Q.T @ Q, torch.eye(6, dtype=torch.float64), rtol=0, atol=1e-14)
    with pytest.raises(ValueError, match="method='svd'"):
        lc.lowrank.orthonormalize(Y, "svd")


def test_range_finders_called_on_their_own():
    A = _A64()
    op = as_linear_operator(A)
    for finder, cols in ((SubspaceIteration(niter=1), 12), (RowSpace(niter=1), 12), (BlockKrylov(niter=1), 24),
                         (AdaptiveQB(0.5, block=4), 12)):
        Q = finder(op, 12, seed=0)
        assert Q.shape[0] == 120 and Q.shape[1] <= cols
        torch.testing.assert_close(Q.T @ Q, torch.eye(Q.shape[1], dtype=torch.float64), rtol=0, atol=1e-12)
    assert torch.equal(SubspaceIteration(niter=1)(op, 12, seed=0),
                       lc.lowrank.subspace_iteration(op, 12, niter=1, seed=0))
    assert torch.equal(BlockKrylov(niter=1)(op, 12, seed=0), lc.lowrank.krylov_basis(op, 12, niter=1, seed=0))
    with pytest.raises(NotImplementedError, match="__call__"):
        RangeFinder()(op, 3)


def test_small_svd_stage():
    A = _A32()
    used = []

    def spy(B, rank=None):
        used.append(tuple(B.shape))
        return SmallSVD(gram=False)(B, rank)

    got = _quiet(A, 8, seed=0, small_svd=spy)
    assert used == [(24, 64)]  # k = 3r rows of B = QᴴA
    # the default stage as a callable of its own (not the default object: that would take the
    # small-matrix exact path)
    ref = _quiet(A, 8, seed=0, small_svd=lambda B, rank=None: SmallSVD()(B, rank))
    torch.testing.assert_close(got.S, ref.S, rtol=1e-5, atol=0)
    B = torch.randn(5, 40, dtype=torch.float64)
    _equal(SmallSVD()(B, 3), lc.lowrank.svd_of_wide(B, 3))


def test_one_operator_protocol():
    from linalg_core._arrays import SparseMatrix
    from linalg_core.lowrank import LinearOperator, Operator
    from linalg_core.lowrank.operators import Dense, as_operator
    from linalg_core.quant import quantize

    A = _A32()
    dense = as_linear_operator(A)
    sparse = as_linear_operator(_sparse())
    quantized = quantize(A, "nf4")
    for op in (dense, dense.bf16(), sparse, quantized, as_linear_operator(quantized),
               as_linear_operator(__import__("scipy.sparse.linalg").sparse.linalg.aslinearoperator(_sparse()))):
        assert isinstance(op, LinearOperator), type(op)
        assert all(hasattr(op, a) for a in ("shape", "dtype", "device", "matmul", "rmatmul"))
    assert isinstance(dense, Dense) and isinstance(sparse, SparseMatrix)
    assert as_operator(dense)[0] is dense and as_operator(sparse)[0] is sparse  # taken as they are
    assert isinstance(as_linear_operator(quantized), Operator)  # a user operator: checked and wrapped
    # an operator gives the array's own result, bit for bit
    _equal(_quiet(dense, 8, seed=0), _quiet(A, 8, seed=0))
    _equal(_quiet(A[None].expand(2, -1, -1).contiguous(), 8, seed=0),
           _quiet(as_linear_operator(A[None].expand(2, -1, -1).contiguous()), 8, seed=0))
    W = A.clone()
    W[3, 4] = float("nan")
    with pytest.raises(ValueError, match="W has 1 NaN"):
        lc.rsvd(as_linear_operator(W, name="W"), 4, seed=0)
    # the residual of svd_error is an operator of the same protocol
    from linalg_core.lowrank.error import _Residual

    svd = _quiet(A, 4, seed=0)
    E = _Residual(dense, svd.U, svd.S, svd.Vh)
    assert isinstance(E, Operator) and isinstance(E, LinearOperator)


def test_stage_classes_are_exported():
    for name in ("SubspaceIteration", "RowSpace", "BlockKrylov", "AdaptiveQB", "RangeFinder", "CholQR", "CholQR2",
                 "Householder", "LU", "SmallSVD", "as_linear_operator", "LinearOperator", "Operator"):
        assert name in lc.lowrank.__all__ and hasattr(lc.lowrank, name)


def test_adapters_quant_and_distributed_import_no_private_lowrank_names():
    root = pathlib.Path(lc.__file__).parent
    offenders = []
    for sub in ("adapters", "quant", "distributed"):
        for path in (root / sub).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("linalg_core.lowrank"):
                    offenders += [f"{path.name}: {a.name}" for a in node.names if a.name.startswith("_")]
    assert not offenders, offenders


def test_cholqr_given_gram_and_known_fro_norm():
    # CholQR(Y, gram=YᴴY) is CholQR(Y) without forming the Gram matrix again (the adaptive
    # iteration hands it the Gram matrix its Ritz values came from), and the Householder
    # fallback still applies; ‖A‖_F² from row norms agrees with the float64 sum.
    from linalg_core.lowrank.operators import as_operator, known_fro_norm_sq

    Y = torch.randn(300, 12, generator=torch.Generator().manual_seed(0))
    assert torch.equal(CholQR()(Y, gram=Y.T @ Y), CholQR()(Y))
    Z = torch.cat([Y[:, :6], Y[:, :6]], 1)  # rank 6: the Cholesky breaks down
    Q = CholQR()(Z, gram=Z.T @ Z)
    assert torch.allclose(Q.T @ Q, torch.eye(12), atol=1e-5)
    A = torch.randn(3, 200, 150, generator=torch.Generator().manual_seed(1)) * 1e3
    op = as_operator(A, products_only=True)[0]
    torch.testing.assert_close(known_fro_norm_sq(op), (A.double() ** 2).sum((-2, -1)), rtol=1e-6, atol=0)
    # past float32's range for the Gram matrices and row norms: the float64 fallbacks
    B = torch.randn(200, 100, generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(lc.rsvd(B * 1e19, 5, seed=0).S / 1e19, lc.rsvd(B, 5, seed=0).S, rtol=1e-2, atol=0)
