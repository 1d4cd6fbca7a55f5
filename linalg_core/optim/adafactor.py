"""GaLore Adafactor: Adafactor (Shazeer and Stern 2018, "Adafactor: Adaptive Learning Rates with
Sublinear Memory Cost", as in transformers / fairseq) with GaLore's low-rank projection."""

from __future__ import annotations

import math
from typing import Callable

import torch

from linalg_core import _validate
from linalg_core.optim._base import ProjectedOptimizer, check_grad


class GaLoreAdafactor(ProjectedOptimizer):
    """Adafactor with GaLore projection: a drop-in replacement for
    ``galore_torch.GaLoreAdafactor`` (the same arguments and param-group keys, the same update)
    on :class:`~linalg_core.optim.LowRankProjector`.

    ``from linalg_core.optim import GaLoreAdafactor``  (was: ``from galore_torch import
    GaLoreAdafactor``). GaLore groups and their non-2-D parameters as in :class:`GaLoreAdamW`.
    The factored second moment of a projected parameter is kept for its low-rank gradient
    (rows and columns of the (m, r) / (r, n) matrix).

    Args:
        params: parameters or param groups.
        lr: external learning rate (None with ``relative_step=True``).
        eps: (ε₁, ε₂): regulariser of the squared gradient and of the parameter scale.
        clip_threshold: threshold of the update's RMS.
        decay_rate: exponent of β₂ₜ = 1 − t^decay_rate.
        beta1: first-moment coefficient (None: no first moment).
        weight_decay, scale_parameter, relative_step, warmup_init: as transformers' Adafactor.
        seed: seed of the projectors.

    Shape:
        a projected parameter's row / column statistics: (m,), (r,) (right side) or (r,), (n,)

    Randomness:
        Each projected parameter's :class:`~linalg_core.optim.LowRankProjector` is seeded with
        ``seed + i`` (i: the parameter's position in the optimizer), so its rsvd and warm-start
        draws are reproducible and saved with ``state_dict()``; no global generator is used.

    Example:
        >>> import torch
        >>> from linalg_core.optim import GaLoreAdafactor
        >>> lin = torch.nn.Linear(16, 32)
        >>> opt = GaLoreAdafactor([{"params": [lin.weight], "rank": 4, "update_proj_gap": 50, "scale": 0.25,
        ...                         "proj_type": "std"}, {"params": [lin.bias]}],
        ...                       lr=1e-3, relative_step=False, scale_parameter=False)
        >>> lin(torch.randn(8, 16)).square().mean().backward()
        >>> opt.step()
        >>> opt.state[lin.weight]["exp_avg_sq_row"].shape
        torch.Size([32])
    """

    def __init__(self, params, lr=None, eps=(1e-30, 1e-3), clip_threshold=1.0, decay_rate=-0.8, beta1=None,
                 weight_decay=0.0, scale_parameter=True, relative_step=True, warmup_init=False, *, seed: int = 0):
        if lr is not None and relative_step:
            raise ValueError(f"lr={lr!r} cannot be combined with relative_step=True (pass relative_step=False)")
        if warmup_init and not relative_step:
            raise ValueError("warmup_init=True requires relative_step=True")
        if lr is not None:
            _validate.real(lr, "lr", low=0.0)
        if not isinstance(eps, (tuple, list)) or len(eps) != 2:
            raise ValueError(f"eps must be a pair (eps1, eps2), got {eps!r}")
        _validate.real(clip_threshold, "clip_threshold", low=0.0, low_open=True)
        _validate.real(decay_rate, "decay_rate")
        if beta1 is not None:
            _validate.real(beta1, "beta1", low=0.0, high=1.0, high_open=True)
        _validate.real(weight_decay, "weight_decay", low=0.0)
        defaults = {"lr": lr, "eps": tuple(eps), "clip_threshold": clip_threshold, "decay_rate": decay_rate,
                    "beta1": beta1, "weight_decay": weight_decay, "scale_parameter": scale_parameter,
                    "relative_step": relative_step, "warmup_init": warmup_init}
        super().__init__(params, defaults, seed)

    @staticmethod
    def _get_lr(group, state):
        rel_step_sz = group["lr"]
        if group["relative_step"]:
            min_step = 1e-6 * state["step"] if group["warmup_init"] else 1e-2
            rel_step_sz = min(min_step, 1.0 / math.sqrt(state["step"]))
        param_scale = 1.0
        if group["scale_parameter"]:
            param_scale = max(group["eps"][1], state["RMS"])
        return param_scale * rel_step_sz

    @staticmethod
    def _rms(tensor):
        return tensor.norm(2) / (tensor.numel() ** 0.5)

    @staticmethod
    def _approx_sq_grad(row, col):
        r_factor = (row / row.mean(dim=-1, keepdim=True)).rsqrt_().unsqueeze(-1)
        c_factor = col.unsqueeze(-2).rsqrt()
        return torch.mul(r_factor, c_factor)

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
                if grad.dtype in (torch.float16, torch.bfloat16):
                    grad = grad.float()
                state = self.state[p]
                if "step" not in state:
                    state["step"] = 0
                projected = self.projected(group, p)
                if projected:
                    grad = self.project(group, p, state, grad, state["step"])
                shape = grad.shape
                factored, first = len(shape) >= 2, group["beta1"] is not None
                if "RMS" not in state:
                    state["step"] = 0
                    if first:
                        state["exp_avg"] = torch.zeros_like(grad)
                    if factored:
                        state["exp_avg_sq_row"] = torch.zeros(shape[:-1]).to(grad)
                        state["exp_avg_sq_col"] = torch.zeros(shape[:-2] + shape[-1:]).to(grad)
                    else:
                        state["exp_avg_sq"] = torch.zeros_like(grad)
                    state["RMS"] = 0
                p32 = p.float() if p.dtype in (torch.float16, torch.bfloat16) else p
                state["step"] += 1
                state["RMS"] = self._rms(p32)
                lr = self._get_lr(group, state)
                beta2t = 1.0 - math.pow(state["step"], group["decay_rate"])
                update = grad**2 + group["eps"][0]
                if factored:
                    row, col = state["exp_avg_sq_row"], state["exp_avg_sq_col"]
                    row.mul_(beta2t).add_(update.mean(dim=-1), alpha=1.0 - beta2t)
                    col.mul_(beta2t).add_(update.mean(dim=-2), alpha=1.0 - beta2t)
                    update = self._approx_sq_grad(row, col)
                    update.mul_(grad)
                else:
                    sq = state["exp_avg_sq"]
                    sq.mul_(beta2t).add_(update, alpha=1.0 - beta2t)
                    update = sq.rsqrt().mul_(grad)
                update.div_((self._rms(update) / group["clip_threshold"]).clamp_(min=1.0))
                update.mul_(lr)
                if first:
                    exp_avg = state["exp_avg"]
                    exp_avg.mul_(group["beta1"]).add_(update, alpha=1 - group["beta1"])
                    update = exp_avg
                if projected:
                    update = self.project_back(p, update)
                if group["weight_decay"] != 0:
                    p32.add_(p32, alpha=-group["weight_decay"] * lr)
                p32.add_(-update)
                if p.dtype in (torch.float16, torch.bfloat16):
                    p.copy_(p32)
        return loss


__all__ = ["GaLoreAdafactor"]
