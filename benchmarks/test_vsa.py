"""VSA headline (``bench vsa``): MBAT binding of 256 vectors of dimension 4096 (quick: 1024) by
a structured orthogonal matrix (Hadamard rounds, signed permutation) against the dense Haar
matrix product."""

import pytest
import torch

from linalg_core.vsa import orthogonal


@pytest.mark.parametrize("impl", ["hadamard", "signed_permutation", "dense Haar matmul"])
def test_bind(timed, quick, impl):
    n, d = 256, 1024 if quick else 4096
    X = torch.randn(n, d, generator=torch.Generator().manual_seed(d))
    group = f"bind {n} vectors, d={d}"
    if impl == "dense Haar matmul":
        dense = orthogonal(d, kind="haar", seed=0).MT
        Y = timed(lambda: X @ dense, rounds=5, group=group)
    else:
        M = orthogonal(d, kind=impl, seed=0)
        Y = timed(lambda: M.apply(X), rounds=9, group=group)
    torch.testing.assert_close(Y.norm(dim=1), X.norm(dim=1), rtol=1e-4, atol=1e-4)  # orthogonal: norms kept
