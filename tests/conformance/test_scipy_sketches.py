"""scipy's Clarkson–Woodruff transform tests, ported to linalg_core's CountSketch and sparse sign
sketches.

Peer: scipy/scipy at commit 3dbf660a919b1479cdf30d533176053b428d08d3, file
``scipy/linalg/tests/test_sketches.py`` (class ``TestClarksonWoodruffTransform``: shapes, seeds
reproducible, the sketch preserves the Frobenius norm of dense and sparse matrices and the norm
of a vector). The installed scipy 1.17.1 ships the same tests (building the sparse matrices
with ``scipy.sparse.rand`` instead of ``random_array``).

Mapping: ``clarkson_woodruff_transform(A, sketch_size, rng=seed)`` →
``countsketch(sketch_size, A.shape[0], seed=seed).apply(A)``, and ``cwt_matrix(m, n, rng=seed)``
→ ``countsketch(m, n, seed=seed).to_dense()``. scipy's CountSketch has one ±1 per column, as
linalg_core's; the same tests also run on ``sparse_sign`` (8 non-zeros ±1/√8 per column), whose
norms the same bounds hold. Inputs, seeds and tolerances are the peer's (2000 × 100 matrices,
density 0.1, 200 sketch rows, ten seeds; 10 % Frobenius error with no failure allowed),
the sparse ones (csc, csr, coo) passed to ``Sketch.apply`` as they are.
"""

from __future__ import annotations

import numpy as np
import pytest
from numpy.testing import assert_equal
from scipy.sparse import issparse, random_array
from scipy.sparse.linalg import norm

import linalg_core as lc

KINDS = {"countsketch": lambda m, n, seed: lc.sketch.countsketch(m, n, seed=seed),
         "sparse_sign": lambda m, n, seed: lc.sketch.sparse_sign(m, n, seed=seed)}

# Test matrix parameters (the peer's)
n_rows = 2000
n_cols = 100
density = 0.1

# Sketch matrix dimensions
n_sketch_rows = 200

# Seeds to test with
seeds = [1755490010, 934377150, 1391612830, 1752708722, 2008891431,
         1302443994, 1521083269, 1501189312, 1126232505, 1533465685]


def _test_matrices():
    # set seed for generating test matrices
    rng = np.random.default_rng(1179103485)
    shape = (n_rows, n_cols)
    A_dense = rng.random(shape)
    A_csc = random_array(shape, density=density, format="csc", rng=rng)
    A_csr = random_array(shape, density=density, format="csr", rng=rng)
    A_coo = random_array(shape, density=density, format="coo", rng=rng)
    # Test vector with norm ~1
    x = rng.random((n_rows, 1)) / np.sqrt(n_rows)
    return {"dense": A_dense, "csc": A_csc, "csr": A_csr, "coo": A_coo}, x


TEST_MATRICES, X_VECTOR = _test_matrices()
FORMATS = list(TEST_MATRICES)


def clarkson_woodruff_transform(kind, A, sketch_size, seed):
    return KINDS[kind](sketch_size, A.shape[0], seed).apply(A)


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("kind", list(KINDS))
def test_sketch_dimensions(kind, fmt):
    A = TEST_MATRICES[fmt]
    for seed in seeds:
        sketch = clarkson_woodruff_transform(kind, A, n_sketch_rows, seed)
        assert sketch.shape == (n_sketch_rows, n_cols)


@pytest.mark.parametrize("kind", list(KINDS))
def test_seed_returns_identical_transform_matrix(kind):
    for seed in seeds:
        S1 = KINDS[kind](n_sketch_rows, n_rows, seed).to_dense().numpy()
        S2 = KINDS[kind](n_sketch_rows, n_rows, seed).to_dense().numpy()
        assert_equal(S1, S2)


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("kind", list(KINDS))
def test_seed_returns_identically(kind, fmt):
    A = TEST_MATRICES[fmt]
    for seed in seeds:
        sketch1 = clarkson_woodruff_transform(kind, A, n_sketch_rows, seed)
        sketch2 = clarkson_woodruff_transform(kind, A, n_sketch_rows, seed)
        if issparse(sketch1):
            sketch1 = sketch1.toarray()
        if issparse(sketch2):
            sketch2 = sketch2.toarray()
        assert_equal(sketch1, sketch2)


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("kind", list(KINDS))
def test_sketch_preserves_frobenius_norm(kind, fmt):
    # Given the probabilistic nature of the sketches
    # we run the test multiple times and check that
    # we pass all/almost all the tries.
    A = TEST_MATRICES[fmt]
    n_errors = 0
    true_norm = norm(A) if issparse(A) else np.linalg.norm(A)
    for seed in seeds:
        sketch = clarkson_woodruff_transform(kind, A, n_sketch_rows, seed)
        sketch_norm = norm(sketch) if issparse(sketch) else np.linalg.norm(sketch)
        if np.abs(true_norm - sketch_norm) > 0.1 * true_norm:
            n_errors += 1
    assert n_errors == 0


@pytest.mark.parametrize("kind", list(KINDS))
def test_sketch_preserves_vector_norm(kind):
    n_errors = 0
    n_sketch_rows = int(np.ceil(2. / (0.01 * 0.5**2)))
    true_norm = np.linalg.norm(X_VECTOR)
    for seed in seeds:
        sketch = clarkson_woodruff_transform(kind, X_VECTOR, n_sketch_rows, seed)
        sketch_norm = np.linalg.norm(sketch)

        if np.abs(true_norm - sketch_norm) > 0.5 * true_norm:
            n_errors += 1
    assert n_errors == 0


def test_countsketch_is_clarkson_woodruff():
    """Not in the peer file: linalg_core's CountSketch has scipy's structure — one ±1 per column
    (scipy's ``cwt_matrix`` likewise), so the same norm guarantees apply."""
    from scipy.linalg._sketches import cwt_matrix

    ours = lc.sketch.countsketch(n_sketch_rows, n_rows, seed=seeds[0]).to_dense().numpy()
    theirs = cwt_matrix(n_sketch_rows, n_rows, rng=seeds[0]).toarray()
    for S in (ours, theirs):
        assert S.shape == (n_sketch_rows, n_rows)
        assert_equal(np.count_nonzero(S, axis=0), np.ones(n_rows))
        assert_equal(np.abs(S).sum(axis=0), np.ones(n_rows))
