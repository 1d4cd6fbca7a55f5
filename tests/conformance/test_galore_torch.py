"""GaLore's own tests of one GaLore-Adam step, ported to linalg_core.optim, and the installed
galore-torch 1.0 run side by side with the projector forced exact.

Peer: jiaweizzhao/GaLore, files ``tests/test_utils.py`` (``make_data``, the reference step
``_ref_op``: down-projection, Adam moments, up-projection, parameter update; commit
26475421b51f1db885ebea5c10be4823beb0de19), ``tests/test_fused_kernels.py`` (``run_test``: a
kernel's moments and parameters against ``_ref_op``'s; commit
37aecfe88641d06decfb4c72b30f7b8a1364bc38) and ``galore_torch/fused/utils.py``
(``TestGaLoreProjector``, ``get_orthogonal_matrix``; commit
c6d6b7650b3cd1dadf54c8872e98540a2b7a2392).

Mapping. The "kernel under test" is one ``linalg_core.optim.GaLoreAdamW.step`` with the state
``make_data`` builds (random first moment, its square as the second, the projector of the
gradient): ``lr`` = STEP_SIZE, ``eps`` = EPS, ``correct_bias=False`` (``_ref_op`` has no bias
correction), the projector ``LowRankProjector(rank, method="svd")`` (``TestGaLoreProjector``'s
``update_orthogonal_matrix``: the truncated ``torch.linalg.svd``, right side when M ≥ N).
``make_data``'s CUDA tensors are CPU tensors here, and its default 4096 × 4096 (rank 128) is
512 × 256 / 256 × 512 (rank 32 and 64). The peer's ``run_test`` prints the maximum and relative
errors of the three outputs and asserts nothing; the relative error (max |ref − test| /
mean |ref|, the peer's measure) is asserted here to be at rounding level (1e-5 in float32, 2e-2
in bfloat16). The Triton kernels (``hybrid``, ``fused``) and the benchmark mode have no
linalg_core counterpart and are left out.

Beyond the peer's tests: the installed galore-torch's ``GaLoreProjector`` and ``GaLoreAdamW``
(``from galore_torch import GaLoreAdamW``) against ours with ``proj_method="svd"``, the same
values over 10 steps with two basis updates.
"""

from __future__ import annotations

import warnings

import pytest
import torch

from linalg_core.optim import GaLoreAdamW, LowRankProjector

BETA1 = 0.9
BETA2 = 0.999
EPS = 1e-8
STEP_SIZE = 1e-4


def make_data(M, N, rank, dtype, gen):
    grad = torch.randn(M, N, dtype=dtype, generator=gen)
    params = torch.randn(M, N, dtype=dtype, generator=gen)
    proj = LowRankProjector(rank, 10**9, method="svd")
    proj.update(grad)
    if M >= N:
        exp_avg = torch.randn(M, rank, dtype=dtype, generator=gen)
    else:
        exp_avg = torch.randn(rank, N, dtype=dtype, generator=gen)
    exp_avg2 = exp_avg**2
    return exp_avg, exp_avg2, grad, proj, params


def _ref_op(grad, proj_matrix, exp_avg, exp_avg2, params, beta1=BETA1, beta2=BETA2, eps=EPS, step_size=STEP_SIZE):
    # the peer's reference step, as written in tests/test_utils.py
    M, N = grad.shape
    if M >= N:
        a, b = grad, proj_matrix.t()
    else:
        a, b = proj_matrix.t(), grad
    low_rank_grad = a @ b
    exp_avg.mul_(beta1).add_(low_rank_grad, alpha=(1.0 - beta1))
    exp_avg2.mul_(beta2).addcmul_(low_rank_grad, low_rank_grad, value=1.0 - beta2)
    denom = exp_avg2.sqrt().add_(eps)
    low_rank_norm_grad = exp_avg / denom
    if M >= N:
        a, b = low_rank_norm_grad, proj_matrix
    else:
        a, b = proj_matrix, low_rank_norm_grad
    full_grad_norm = a @ b
    params.add_(full_grad_norm, alpha=-step_size)
    return exp_avg, exp_avg2, params


def _ours(grad, proj, exp_avg, exp_avg2, params):
    p = torch.nn.Parameter(params.clone())
    opt = GaLoreAdamW([{"params": [p], "rank": proj.rank, "update_proj_gap": proj.update_gap, "scale": 1.0,
                        "proj_type": "std", "proj_method": "svd"}],
                      lr=STEP_SIZE, betas=(BETA1, BETA2), eps=EPS, correct_bias=False)
    # step 1 is not a multiple of the gap: the given basis is used, as in the peer's kernels
    opt.state[p] = {"step": 1, "exp_avg": exp_avg.clone(), "exp_avg_sq": exp_avg2.clone(),
                    "projector": proj.state_dict()}
    p.grad = grad.clone()
    opt.step()
    st = opt.state[p]
    return st["exp_avg"], st["exp_avg_sq"], p.detach()


@pytest.mark.parametrize("M,N", [(512, 256), (256, 512)])
@pytest.mark.parametrize("rank", [32, 64])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_run_test_accuracy(M, N, rank, dtype):
    gen = torch.Generator().manual_seed(0)
    exp_avg, exp_avg2, grad, proj, params = make_data(M, N, rank, dtype, gen)
    ref_out = _ref_op(grad.clone(), proj.ortho.clone(), exp_avg.clone(), exp_avg2.clone(), params.clone())
    test_out = _ours(grad, proj, exp_avg, exp_avg2, params)
    tol = 1e-5 if dtype == torch.float32 else 2e-2
    for name, ref, tt in zip(["adam state - running grad mean", "adam state - running grad var",
                              "params (after update)"], ref_out, test_out):
        ref, tt = ref.float(), tt.float()
        rel = float((ref - tt).abs().max() / ref.abs().mean())
        assert rel <= tol, f"{name}: relative error {rel:.3g}"


def test_update_orthogonal_matrix_matches_get_orthogonal_matrix():
    galore = pytest.importorskip("galore_torch.galore_projector")
    gen = torch.Generator().manual_seed(1)
    for M, N in ((96, 48), (48, 96)):
        grad = torch.randn(M, N, generator=gen)
        ours = LowRankProjector(8, 1, method="svd")
        ours.update(grad)
        theirs = galore.GaLoreProjector(8, update_proj_gap=1)
        theirs.project(grad, 0)
        assert torch.equal(ours.ortho, theirs.ortho_matrix)


def test_galore_adamw_ten_steps_equal_to_galore_torch():
    galore = pytest.importorskip("galore_torch")
    gen = torch.Generator().manual_seed(2)
    shapes = [(64, 32), (32, 64)]
    init = [torch.randn(*s, generator=gen) for s in shapes]
    grads = [[torch.randn(*s, generator=gen) for s in shapes] for _ in range(10)]
    ours = [torch.nn.Parameter(w.clone()) for w in init]
    theirs = [torch.nn.Parameter(w.clone()) for w in init]
    group = {"rank": 8, "update_proj_gap": 4, "scale": 0.25, "proj_type": "std"}
    opt_a = GaLoreAdamW([{"params": ours, **group, "proj_method": "svd"}], lr=1e-2, weight_decay=0.01)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        opt_b = galore.GaLoreAdamW([{"params": theirs, **group}], lr=1e-2, weight_decay=0.01)
    for gs in grads:
        for p, q, g in zip(ours, theirs, gs):
            p.grad, q.grad = g.clone(), g.clone()
        opt_a.step()
        opt_b.step()
    for p, q in zip(ours, theirs):
        torch.testing.assert_close(p, q, rtol=1e-6, atol=1e-6)
