"""Adapter family: per-matrix initialisers over whole layer sets, against peft's own
initialisation code reproduced line for line (peft 0.21 ``LoraLayer.pissa_init`` /
``olora_init``: full ``torch.linalg.svd``, ``torch.svd_lowrank(q=r, niter=4)``, full
``torch.linalg.qr``), same run. peft itself is not installed here, so its formulas are timed
directly; the whole-model ``peft`` helper is not built yet (issue 4).

Accuracy: the captured energy ‖s·BA‖_F / ‖W_r‖_F of the optimal rank-r part (1 is the best
possible) and the largest principal-angle sine between range(B) and the top-r left singular
subspace.
"""

from __future__ import annotations

import numpy as np
import torch

import linalg_core as lc
from linalg_core.testing import minilm_weights
from linalg_core.testing.bench import Report, measure


def peft_pissa(W, r, niter=None):
    weight = W.float()
    if niter is None:
        V, S, Uh = torch.linalg.svd(weight, full_matrices=False)
        Vr, Sr, Uhr = V[:, :r], S[:r], Uh[:r]
    else:
        Vr, Sr, Ur = torch.svd_lowrank(weight, r, niter=niter)
        Uhr = Ur.t()
    A, B = torch.diag(torch.sqrt(Sr)) @ Uhr, Vr @ torch.diag(torch.sqrt(Sr))
    return A, B, (weight - B @ A).to(W.dtype)


def peft_olora(W, r):
    weight = W.float()
    Q, R = torch.linalg.qr(weight)
    A, B = R[:r], Q[:, :r]
    return A, B, (weight - B @ A).to(W.dtype)


def layer_sets(quick):
    yield "MiniLM-L6 (36 Linear weights)", list(minilm_weights(layers=[0, 1] if quick else None).values())
    g = torch.Generator().manual_seed(0)
    n, wide = (512, 1376) if quick else (4096, 11008)
    mats = []
    for shape in ((n, n), (n, n), (wide, n)):  # q/o-like and up-projection-like; flat spectra
        U = torch.linalg.qr(torch.randn(shape[0], n, generator=g))[0]
        V = torch.linalg.qr(torch.randn(shape[1], n, generator=g))[0]
        mats.append((U * (torch.arange(n) + 1.0) ** -0.3) @ V.T)
    yield f"LLaMA-7B-shaped set ({n}x{n} x2, {wide}x{n})", mats


def quality(mats, inits, r):
    cap, sines = [], []
    for W, (A, B) in zip(mats, inits):
        U, S, _ = torch.linalg.svd(W.double(), full_matrices=False)
        cap.append(float(torch.linalg.matrix_norm((B.double() @ A.double()))) / float(torch.linalg.vector_norm(S[:r])))
        qb = torch.linalg.qr(B.double())[0]
        sines.append(float(torch.linalg.matrix_norm(U[:, :r] - qb @ (qb.T @ U[:, :r]), ord=2)))
    return float(np.mean(cap)), float(np.max(sines))


def run(report: Report, quick: bool = False):
    for label, mats in layer_sets(quick):
        r = 16
        big = mats[0].shape[0] >= 4096
        rows = [
            ("peft pissa_niter_4 (svd_lowrank q=r, niter=4)", lambda: [peft_pissa(W, r, 4) for W in mats]),
            ("linalg_core.adapters.pissa", lambda: [lc.adapters.pissa(W, r, seed=0) for W in mats]),
            ("peft olora (full QR)", lambda: [peft_olora(W, r) for W in mats]),
            ("linalg_core.adapters.olora", lambda: [lc.adapters.olora(W, r) for W in mats]),
        ]
        if not big:
            rows.insert(0, ("peft pissa (full SVD)", lambda: [peft_pissa(W, r) for W in mats]))
        times = {}
        for name, fn in rows:
            t = measure(fn, repeats=3, budget_s=60)
            times[name] = t.median
            out = fn()
            pairs = [(o.A, o.B) if hasattr(o, "A") else (o[0], o[1]) for o in out]
            cap, sine = quality(mats, pairs, r) if "olora" not in name else (float("nan"), float("nan"))
            report.add(set=label, rank=r, impl=name, ms=t.median * 1e3, captured_energy=cap, max_sin_angle=sine)
        report.note(f"{label}: pissa speed-up over peft pissa_niter_4 "
                    f"{times['peft pissa_niter_4 (svd_lowrank q=r, niter=4)'] / times['linalg_core.adapters.pissa']:.2f}x; "
                    f"olora over peft's full-QR olora {times['peft olora (full QR)'] / times['linalg_core.adapters.olora']:.1f}x")
