"""The adapters benchmark's floor side (``bench.adapters._bare_init``): the bare-torch PiSSA and
OLoRA it times against peft and ours must compute the same function as ours, checked against
float64 oracles."""

import numpy as np
import pytest
import torch

peft = pytest.importorskip("peft")

from linalg_core.bench.adapters import _bare_init, bare_pissa  # noqa: E402


def _model(seed=0):
    g = torch.Generator().manual_seed(seed)
    net = torch.nn.Sequential(torch.nn.Linear(96, 128), torch.nn.Linear(128, 96), torch.nn.Linear(96, 128))
    for lin in net:
        m, n = lin.weight.shape
        U = torch.linalg.qr(torch.randn(m, min(m, n), generator=g))[0]
        V = torch.linalg.qr(torch.randn(n, min(m, n), generator=g))[0]
        lin.weight.data = (U * 0.8 ** torch.arange(min(m, n))) @ V.T
    return net


@pytest.mark.parametrize("method", ["pissa", "olora"])
def test_bare_init_keeps_the_function_and_gives_the_methods_factors(method):
    model = peft.get_peft_model(_model(), peft.LoraConfig(r=4, lora_alpha=8, target_modules=["0", "1", "2"]))
    layers = {n: m for n, m in model.named_modules() if hasattr(m, "lora_A") and "default" in m.lora_A}
    before = {n: m.get_base_layer().weight.detach().double().clone() for n, m in layers.items()}
    spent = {}
    with torch.no_grad():
        _bare_init(model, method, spent)
    assert set(spent) == {"decomposition", "residuals"}
    for name, m in layers.items():
        W0 = before[name].numpy()
        A, B = (x["default"].weight.detach().double().numpy() for x in (m.lora_A, m.lora_B))
        update = m.scaling["default"] * B @ A
        res = m.get_base_layer().weight.detach().double().numpy()
        np.testing.assert_allclose(res + update, W0, atol=1e-5 * np.abs(W0).max())  # the function kept
        if method == "olora":  # B = Q[:, :r] of W = QR (up to column signs), A = R[:r] / s
            Q = np.linalg.qr(W0)[0][:, :4]
            np.testing.assert_allclose(np.abs(Q.T @ B), np.eye(4), atol=1e-5)
        else:  # s·BA is W's best rank-r part to bfloat16 products' accuracy
            U, S, Vt = np.linalg.svd(W0)
            best = (U[:, :4] * S[:4]) @ Vt[:4]
            assert np.linalg.norm(update - best) <= 2e-2 * np.linalg.norm(best)


def test_bare_pissa_groups_equal_shapes_and_returns_per_weight_triplets():
    mats = [lin.weight.data for lin in _model(1)]
    out = bare_pissa(mats, 4, 8, 3)
    assert [tuple(t.shape) for U, S, Vh in out for t in (U, S, Vh)] == [
        (128, 4), (4,), (4, 96), (96, 4), (4,), (4, 128), (128, 4), (4,), (4, 96)]
    for W, (U, S, Vh) in zip(mats, out):
        sv = torch.linalg.svdvals(W.double())[:4]
        torch.testing.assert_close(S.double(), sv, rtol=2e-2, atol=0)
