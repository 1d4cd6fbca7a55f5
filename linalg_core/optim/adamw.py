"""GaLore AdamW (Zhao et al. 2024, Algorithm 2) and GradNormLoRP AdamW (Huang, Shen, Zhu, Rudinac
and Kanoulas, AAAI 2025, "Gradient Weight-normalized Low-rank Projection for Efficient LLM
Training") on :class:`~linalg_core.optim.LowRankProjector`."""

from __future__ import annotations

import math
from typing import Callable

import torch

from linalg_core import _validate
from linalg_core.optim._base import ProjectedOptimizer, check_grad
from linalg_core.optim.state8bit import dequantize_state, quantize_state


def _check_adam(lr, betas, eps, weight_decay):
    _validate.real(lr, "lr", low=0.0)
    if not isinstance(betas, (tuple, list)) or len(betas) != 2:
        raise ValueError(f"betas must be a pair (beta1, beta2), got {betas!r}")
    for i, b in enumerate(betas):
        if isinstance(b, bool) or not isinstance(b, (int, float)) or not 0.0 <= b < 1.0:
            raise ValueError(f"betas[{i}] must be in [0, 1), got {b!r}")
    _validate.real(eps, "eps", low=0.0)
    _validate.real(weight_decay, "weight_decay", low=0.0)


class GaLoreAdamW(ProjectedOptimizer):
    """AdamW with GaLore's low-rank gradient projection: a drop-in replacement for
    ``galore_torch.GaLoreAdamW`` (the same arguments, param-group keys and update, including its
    decoupled weight decay p ← p − lr·wd·p after the step), whose projector updates its basis by
    warm-started subspace iteration instead of a full SVD.

    Switching from galore-torch is the import::

        from linalg_core.optim import GaLoreAdamW   # was: from galore_torch import GaLoreAdamW

    Param groups with a ``rank`` key are GaLore groups (keys ``rank``, ``update_proj_gap``
    (default 200), ``scale`` (1.0), ``proj_type`` ("std"), as in galore-torch; optional
    ``proj_method`` ("auto" or "svd": galore-torch's exact SVD), ``proj_tol``,
    ``proj_warm_start``, see :class:`~linalg_core.optim.LowRankProjector`). Their 2-D parameters
    keep Adam's moments in the r-dimensional space: R = project(G), m, v updated with R, the step
    project_back(m̂/(√v̂ + ε)). Other parameters of a GaLore group (biases, norms) get the plain
    AdamW update (galore-torch fails on them). The moments are kept across basis updates, as in
    galore-torch.

    Args:
        params: parameters or param groups.
        lr, betas, eps, weight_decay, correct_bias: as galore-torch's AdamW (eps 1e-6).
        seed: seed of the projectors (parameter i of the optimizer uses seed + i).

    Shape:
        a projected parameter's moments: (m, r) (right side), (r, n) (left) or (r, r) (full)

    Randomness:
        Each projected parameter's :class:`~linalg_core.optim.LowRankProjector` is seeded with
        ``seed + i`` (i: the parameter's position in the optimizer), so its rsvd and warm-start
        draws are reproducible and saved with ``state_dict()``; no global generator is used.

    Example:
        >>> import torch
        >>> from linalg_core.optim import GaLoreAdamW
        >>> lin = torch.nn.Linear(16, 32)
        >>> opt = GaLoreAdamW([{"params": [lin.weight], "rank": 4, "update_proj_gap": 50, "scale": 0.25,
        ...                     "proj_type": "std"}, {"params": [lin.bias]}], lr=1e-3)
        >>> lin(torch.randn(8, 16)).square().mean().backward()
        >>> opt.step()
        >>> opt.state[lin.weight]["exp_avg"].shape
        torch.Size([32, 4])
    """

    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-6, weight_decay: float = 0.0,
                 correct_bias: bool = True, *, seed: int = 0):
        _check_adam(lr, betas, eps, weight_decay)
        defaults = {"lr": lr, "betas": tuple(betas), "eps": eps, "weight_decay": weight_decay,
                    "correct_bias": _validate.flag(correct_bias, "correct_bias")}
        super().__init__(params, defaults, seed)

    @torch.no_grad()
    def step(self, closure: Callable | None = None):
        """One optimization step (``closure`` re-evaluates the loss, as in torch.optim)."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                grad = check_grad(p)
                state = self.state[p]
                if "step" not in state:
                    state["step"] = 0
                projected = self.projected(group, p)
                if projected:
                    grad = self.project(group, p, state, grad, state["step"])
                if "exp_avg" not in state:
                    state["exp_avg"] = torch.zeros_like(grad)
                    state["exp_avg_sq"] = torch.zeros_like(grad)
                exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
                state["step"] += 1
                exp_avg.mul_(beta1).add_(grad, alpha=1.0 - beta1)
                exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1.0 - beta2)
                denom = exp_avg_sq.sqrt().add_(group["eps"])
                step_size = group["lr"]
                if group["correct_bias"]:
                    step_size = step_size * math.sqrt(1.0 - beta2 ** state["step"]) / (1.0 - beta1 ** state["step"])
                norm_grad = exp_avg / denom
                if projected:
                    norm_grad = self.project_back(p, norm_grad)
                p.add_(norm_grad, alpha=-step_size)
                if group["weight_decay"] > 0.0:
                    p.add_(p, alpha=-group["lr"] * group["weight_decay"])
        return loss


class GradNormLoRPAdamW(ProjectedOptimizer):
    """GradNormLoRP (Huang et al., AAAI 2025): AdamW on a weight-normalised reparametrisation of
    each 2-D parameter of a GaLore group, with the direction's gradient projected to low rank.

    Each such weight W (out × in) is written W = diag(g)·V/‖V‖_row (weight normalisation,
    Salimans and Kingma 2016; the paper's W = M·(W₀ + IJ)/‖W₀ + IJ‖_c with its columns being the
    output units, the rows of a torch Linear weight). V starts at W₀ and moves only inside the
    projector's subspaces, so V = W₀ + (a sum of low-rank updates) = W₀ + IJ, the paper's form.
    The gradients follow from the chain rule: with U = V/‖V‖_row,
    ∇g = rowsum(∇W ⊙ U) and ∇V = diag(g/‖V‖)·(∇W − diag(∇g)·U). ∇V goes through GaLore's
    projection (R = project(∇V), Adam moments on R, ΔV = project_back(m̂/(√v̂ + ε))), the
    magnitudes g get a plain Adam step, and W is rebuilt from (g, V). V is never stored: it is
    diag(‖V‖/g)·W, so the state is g, ‖V‖ (two vectors) and the low-rank moments.
    ``eight_bit=True`` keeps the low-rank moments in 8 bits (blockwise absmax with log-spaced
    codebooks, :mod:`linalg_core.optim.state8bit`, after Dettmers et al. 2022), as the paper's
    8-bit variant does. Parameters outside GaLore groups, and non-2-D ones, get plain AdamW.

    Args:
        params: parameters or param groups (GaLore groups: the keys of :class:`GaLoreAdamW`).
        lr, betas, eps, weight_decay, correct_bias: as :class:`GaLoreAdamW`.
        eight_bit: 8-bit low-rank moments.
        seed: seed of the projectors.

    Shape:
        a projected parameter: g, ‖V‖: (out,);  moments as :class:`GaLoreAdamW`'s

    Randomness:
        Each projected parameter's :class:`~linalg_core.optim.LowRankProjector` is seeded with
        ``seed + i`` (i: the parameter's position in the optimizer), so its rsvd and warm-start
        draws are reproducible and saved with ``state_dict()``; no global generator is used.

    Example:
        >>> import torch
        >>> from linalg_core.optim import GradNormLoRPAdamW
        >>> lin = torch.nn.Linear(16, 32, bias=False)
        >>> opt = GradNormLoRPAdamW([{"params": [lin.weight], "rank": 4, "update_proj_gap": 50}],
        ...                         lr=1e-3, eight_bit=True)
        >>> lin(torch.randn(8, 16)).square().mean().backward()
        >>> opt.step()
        >>> sorted(k for k in opt.state[lin.weight] if k != "projector")
        ['exp_avg', 'exp_avg_sq', 'g', 'g_exp_avg', 'g_exp_avg_sq', 'step', 'v_norm']
    """

    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-6, weight_decay: float = 0.0,
                 correct_bias: bool = True, *, eight_bit: bool = False, seed: int = 0):
        _check_adam(lr, betas, eps, weight_decay)
        defaults = {"lr": lr, "betas": tuple(betas), "eps": eps, "weight_decay": weight_decay,
                    "correct_bias": _validate.flag(correct_bias, "correct_bias"),
                    "eight_bit": _validate.flag(eight_bit, "eight_bit")}
        super().__init__(params, defaults, seed)

    @staticmethod
    def _adam(state, prefix, grad, group, step, eight_bit=False):
        """One Adam moment update of ``state[prefix + "exp_avg"]`` / ``"exp_avg_sq"`` with ``grad``;
        returns m̂/(√v̂ + ε) times the bias correction."""
        beta1, beta2 = group["betas"]
        k1, k2 = prefix + "exp_avg", prefix + "exp_avg_sq"
        if k1 not in state:
            z = torch.zeros_like(grad, dtype=torch.float32 if eight_bit else grad.dtype)
            state[k1] = quantize_state(z, signed=True) if eight_bit else z
            state[k2] = quantize_state(z, signed=False) if eight_bit else z.clone()
        if eight_bit:
            m = dequantize_state(state[k1]).to(grad.dtype)
            v = dequantize_state(state[k2]).to(grad.dtype)
        else:
            m, v = state[k1], state[k2]
        m.mul_(beta1).add_(grad, alpha=1.0 - beta1)
        v.mul_(beta2).addcmul_(grad, grad, value=1.0 - beta2)
        if eight_bit:
            state[k1], state[k2] = quantize_state(m, signed=True), quantize_state(v, signed=False)
        step_size = 1.0
        if group["correct_bias"]:
            step_size = math.sqrt(1.0 - beta2**step) / (1.0 - beta1**step)
        return (m / v.sqrt().add_(group["eps"])).mul_(step_size)

    @torch.no_grad()
    def step(self, closure: Callable | None = None):
        """One optimization step (``closure`` re-evaluates the loss, as in torch.optim)."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                grad = check_grad(p)
                state = self.state[p]
                if "step" not in state:
                    state["step"] = 0
                if not self.projected(group, p):
                    state["step"] += 1
                    p.add_(self._adam(state, "", grad, group, state["step"]), alpha=-group["lr"])
                else:
                    self._weight_norm_step(group, p, state, grad)
                if group["weight_decay"] > 0.0:
                    p.add_(p, alpha=-group["lr"] * group["weight_decay"])
        return loss

    def _weight_norm_step(self, group, p, state, grad):
        tiny = torch.finfo(torch.float32).tiny
        W = p.float() if p.dtype not in (torch.float32, torch.float64) else p
        G = grad.to(W.dtype)
        if "g" not in state:
            norms = torch.linalg.vector_norm(W, dim=1)
            state["g"] = norms.clone()  # magnitudes
            state["v_norm"] = norms.clone()  # ‖V‖ per row; V = W at the start
        g, s = state["g"], state["v_norm"]
        g_safe = torch.where(g.abs() < tiny, torch.full_like(g, tiny), g)
        U = W / g_safe[:, None]  # V/‖V‖ (rows of W divided by their magnitudes)
        grad_g = (G * U).sum(1)
        grad_V = (g / s.clamp_min(tiny))[:, None] * (G - grad_g[:, None] * U)
        low = self.project(group, p, state, grad_V, state["step"])
        state["step"] += 1
        t = state["step"]
        dV = self.project_back(p, self._adam(state, "", low, group, t, group["eight_bit"]))
        dg = self._adam(state, "g_", grad_g, group, t)
        V = s[:, None] * U - group["lr"] * dV
        s_new = torch.linalg.vector_norm(V, dim=1)
        g_new = g - group["lr"] * dg
        state["g"], state["v_norm"] = g_new, s_new
        p.copy_((g_new / s_new.clamp_min(tiny))[:, None] * V)


__all__ = ["GaLoreAdamW", "GradNormLoRPAdamW"]
