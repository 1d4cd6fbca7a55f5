"""What the projected optimizers share: galore-torch's param-group keys, one
:class:`~linalg_core.optim.LowRankProjector` per 2-D parameter of a GaLore group, kept in the
optimizer state as its plain ``state_dict`` (so ``optimizer.state_dict()`` saves with
``torch.save`` and loads with ``torch.load(weights_only=True)``)."""

from __future__ import annotations

import math

import torch
from torch.optim import Optimizer

from linalg_core import _validate
from linalg_core.optim.projector import DEFAULT_MAX_PASSES, DEFAULT_TOL, LowRankProjector

GALORE_KEYS = ("rank", "update_proj_gap", "scale", "proj_type")


class ProjectedOptimizer(Optimizer):
    """Base of the GaLore optimizers: validates the GaLore groups and hands out projectors."""

    def __init__(self, params, defaults: dict, seed: int):
        self._seed = _validate.seed(seed)
        defaults = dict(defaults)
        super().__init__(params, defaults)
        self._projectors: dict[torch.Tensor, LowRankProjector] = {}
        index = 0
        self._param_index = {}
        for group in self.param_groups:
            for p in group["params"]:
                self._param_index[p] = index
                index += 1

    def add_param_group(self, param_group: dict) -> None:
        """Add a param group, as ``torch.optim.Optimizer.add_param_group``; a GaLore group (one
        with a ``rank`` key) gets its defaults (``update_proj_gap`` 200, ``scale`` 1.0,
        ``proj_type`` "std", ``proj_method`` "auto", ``proj_tol``, ``proj_warm_start``) and is
        validated now, not at the first step.

        Args:
            param_group: a dict with ``params`` and optional settings.

        Raises:
            ValueError: an invalid GaLore setting, or ``rank`` above min(m, n) of a 2-D parameter.
        """
        if "rank" in param_group:
            g = param_group
            g["rank"] = _validate.integer(g["rank"], "rank", low=1)
            g["update_proj_gap"] = _validate.integer(g.get("update_proj_gap", 200), "update_proj_gap", low=1)
            scale = g.get("scale", 1.0)
            if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not math.isfinite(scale):
                raise ValueError(f"scale must be a finite number, got {scale!r}")
            g["scale"] = float(scale)
            g.setdefault("proj_type", "std")
            g.setdefault("proj_method", "auto")
            g.setdefault("proj_tol", DEFAULT_TOL)
            g.setdefault("proj_warm_start", True)
            # the settings are checked now, not at the first step
            LowRankProjector(g["rank"], g["update_proj_gap"], scale=g["scale"], proj_type=g["proj_type"],
                             method=g["proj_method"], tol=g["proj_tol"], warm_start=g["proj_warm_start"])
            params = [param_group["params"]] if isinstance(param_group["params"], torch.Tensor) else \
                list(param_group["params"])
            for p in params:
                if p.dim() == 2 and g["rank"] > min(p.shape):
                    raise ValueError(f"rank={g['rank']} exceeds min(m, n)={min(p.shape)} of a parameter of shape "
                                     f"{tuple(p.shape)} in a GaLore group")
        super().add_param_group(param_group)
        if hasattr(self, "_param_index"):
            for p in self.param_groups[-1]["params"]:
                self._param_index.setdefault(p, len(self._param_index))

    def load_state_dict(self, state_dict: dict) -> None:
        """Load ``optimizer.state_dict()``'s output, as torch's; the nested states (projector
        bases, 8-bit moment codes and their float32 scales) are restored as saved rather than cast
        to the parameter's dtype, and the projectors are rebuilt from them at the next step.

        Args:
            state_dict: what :meth:`state_dict` returned (e.g. through ``torch.save`` / ``torch.load``).
        """
        # torch casts every floating tensor of the state to its parameter's dtype; the nested
        # states (projector bases, 8-bit codes and their float32 scales) are restored as saved
        nested = {k: {kk: vv for kk, vv in st.items() if isinstance(vv, dict)}
                  for k, st in state_dict.get("state", {}).items()}
        super().load_state_dict(state_dict)
        saved_ids = [i for g in state_dict["param_groups"] for i in g["params"]]
        params = [p for g in self.param_groups for p in g["params"]]
        by_id = dict(zip(saved_ids, params))
        for k, entries in nested.items():
            p = by_id[k]
            for kk, vv in entries.items():
                self.state[p][kk] = _to_device(vv, p.device)
        self._projectors = {}  # rebuilt from the loaded state at the next step

    @staticmethod
    def projected(group: dict, p: torch.Tensor) -> bool:
        """Whether ``p`` goes through a projector: 2-D parameters of a GaLore group (galore-torch's
        own optimizers fail on others; they get the plain update here, as GaLore's recipe gives
        biases and norms).

        Args:
            group: the parameter's param group.
            p: the parameter.
        """
        return "rank" in group and p.dim() == 2

    def projector(self, group: dict, p: torch.Tensor, state: dict) -> LowRankProjector:
        """The :class:`~linalg_core.optim.LowRankProjector` of ``p``: cached, else restored from
        ``state["projector"]``, else a new one from the group's settings with seed
        ``optimizer seed + index of p``.

        Args:
            group: the parameter's (GaLore) param group.
            p: the parameter.
            state: the parameter's optimizer state.
        """
        proj = self._projectors.get(p)
        if proj is None:
            if "projector" in state:
                proj = LowRankProjector.from_state_dict(state["projector"])
            else:
                proj = LowRankProjector(group["rank"], group["update_proj_gap"], scale=group["scale"],
                                        proj_type=group["proj_type"], method=group["proj_method"],
                                        tol=group["proj_tol"], warm_start=group["proj_warm_start"],
                                        max_passes=group.get("proj_max_passes", DEFAULT_MAX_PASSES),
                                        seed=(self._seed + self._param_index.get(p, 0)) % _validate.SEED_LIMIT)
            self._projectors[p] = proj
        return proj

    def project(self, group: dict, p: torch.Tensor, state: dict, grad: torch.Tensor, step: int) -> torch.Tensor:
        """The low-rank gradient of ``p`` (:meth:`LowRankProjector.project`); the projector's
        state is saved into ``state["projector"]``.

        Args:
            group: the parameter's param group.
            p: the parameter.
            state: the parameter's optimizer state.
            grad: the gradient to project.
            step: the parameter's step count (the basis is updated every ``update_proj_gap``).

        Shape:
            grad: (m, n);  out: (m, r), (r, n) or (r, r)
        """
        proj = self.projector(group, p, state)
        low = proj.project(grad, step)
        state["projector"] = proj.state_dict()
        return low

    def project_back(self, p: torch.Tensor, low: torch.Tensor) -> torch.Tensor:
        """scale · the full-size update of ``p`` from a low-rank one (:meth:`LowRankProjector.project_back`).

        Args:
            p: the parameter (its projector must exist: :meth:`project` first).
            low: the low-rank update.

        Shape:
            low: (m, r), (r, n) or (r, r);  out: (m, n)
        """
        return self._projectors[p].project_back(low)


def _to_device(value, device):
    if isinstance(value, torch.Tensor):
        return value.to(device, copy=True)  # never alias the caller's state dict
    if isinstance(value, dict):
        return {k: _to_device(v, device) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_to_device(v, device) for v in value)
    return value


def check_grad(p: torch.Tensor, name: str = "a parameter") -> torch.Tensor:
    grad = p.grad
    if grad.is_sparse:
        raise RuntimeError("the GaLore optimizers do not support sparse gradients")
    return grad
