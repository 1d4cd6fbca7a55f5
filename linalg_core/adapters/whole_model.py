"""Whole models through Hugging Face ``peft``: fill every LoRA layer of a ``PeftModel`` with a
linalg_core initialiser, and save a PiSSA-style adapter as a plain LoRA.

``peft`` is imported only when these functions run (``pip install peft``).

Conventions are peft's (``peft/tuners/lora/layer.py``, ``peft_model.py``): each targeted layer
holds ``lora_A`` (r × in), ``lora_B`` (out × r) and ``scaling``; methods that move components
into the adapter rewrite the base weight to the residual. peft's LoRA layer has no slot for a
middle factor, so the three-factor methods (NLoRA, LoLDU, LoRA-SB) are loaded with N folded into
B (B ← B·N: the same function at init; train N alone through the per-matrix API instead).
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import os
import sys
import time
from concurrent.futures import as_completed
from dataclasses import dataclass, field

import torch

from linalg_core import _validate
from linalg_core._arrays import Boundary
from linalg_core.adapters import init as _init
from linalg_core.adapters.eva import EVA
from linalg_core.lowrank.operators import _scratch, reuse_buffers

METHODS = ("pissa", "olora", "milora", "nlora", "loldu", "lora_sb", "eva")

# Equal-shape weights up to this many elements are stacked into one batched rsvd (the stack is a
# copy: it pays for small matrices, where per-call overhead dominates, not for large ones).
BATCH_MAX_ELEMS = 1 << 20


@dataclass
class ModelInit:
    """What :func:`init_peft_model` did.

    Attributes:
        method: the initialiser.
        layers: {module name: rank} of the layers filled (EVA: after redistribution).
        seconds: wall time.
        removed: layers EVA gave rank 0 (their LoRA wrapper replaced by the base layer).
    """

    method: str
    layers: dict[str, int]
    seconds: float
    removed: list[str] = field(default_factory=list)


def _peft():
    try:
        import peft
        from peft.tuners.lora import LoraLayer
    except ImportError as e:  # pragma: no cover - exercised only without peft
        raise ImportError("init_peft_model needs Hugging Face peft: pip install peft") from e
    return peft, LoraLayer


def _lora_layers(model, adapter_name):
    _, LoraLayer = _peft()
    if not hasattr(model, "peft_config"):
        raise TypeError(f"model must be a peft model (peft.get_peft_model(...)), got {type(model).__name__}")
    adapter = adapter_name or getattr(model, "active_adapter", "default")
    if adapter not in model.peft_config:
        raise ValueError(f"adapter_name={adapter!r} is not one of {sorted(model.peft_config)}")
    layers = {}
    for name, module in model.named_modules():
        if isinstance(module, LoraLayer) and adapter in module.lora_A:
            weight = module.get_base_layer().weight
            if weight.dim() != 2 or not hasattr(module.lora_A[adapter], "weight"):
                raise TypeError(f"layer {name!r}: only Linear-like LoRA layers are supported, got "
                                f"{type(module.get_base_layer()).__name__}")
            if not weight.is_floating_point():
                raise TypeError(f"layer {name!r} has a {weight.dtype} base weight (quantized?): dequantize the "
                                "model first, initialise, then re-quantize the residual")
            layers[name] = module
    if not layers:
        raise ValueError(f"model has no LoRA layers for adapter {adapter!r}")
    return adapter, layers


def _progress(total, show, desc):
    if not show:
        return None
    try:
        from tqdm.auto import tqdm

        return tqdm(total=total, desc=desc, leave=False)
    except ImportError:
        return None


@torch.no_grad()
def init_peft_model(model, method: str = "pissa", *, adapter_name: str | None = None, seed=None,
                    progress: bool | None = None, niter="auto", batches=None, forward=None, rho: float = 2.0,
                    tau: float = 0.99, whiten: bool = False, max_batches: int | None = None, updates=None,
                    adjust_scaling_factors: bool = True, executor=None) -> ModelInit:
    """Initialise every LoRA layer of a peft model in place with a linalg_core method.

    Args:
        model: a ``peft.PeftModel`` (or tuner model) with LoRA adapters on Linear layers.
        method: ``"pissa"``, ``"olora"``, ``"milora"``, ``"nlora"`` (Nyström), ``"loldu"``,
            ``"lora_sb"`` (needs ``updates``) or ``"eva"`` (needs ``batches``).
        adapter_name: default the active adapter.
        seed: one seed for every layer (a batched group equals the loop over its layers).
        progress: a tqdm bar over layers (default: when stderr is a terminal).
        niter: PiSSA's rsvd iterations.
        batches: EVA: an iterable of model inputs (dicts are passed as ``model(**batch)``; an
            ``attention_mask`` entry selects the tokens whose activations count).
        forward: EVA: ``forward(model, batch)`` instead of the default call.
        rho, tau, whiten, max_batches, adjust_scaling_factors: EVA's options (see :class:`EVA`);
            ``adjust_scaling_factors`` rescales alpha with the new rank, like peft.
        updates: LoRA-SB: {module name: estimated update ΔW (out, in)}.
        executor: a ``concurrent.futures.Executor`` (a process pool, or a Dask cluster's
            ``Client.get_executor()``) for the decompositions, one task per layer (PiSSA: per
            batched group): the weights travel to the workers, the factors (PiSSA: the
            triplets) come back, and the residuals are written here. The model is the serial
            run's when the workers use this process's BLAS thread count. Not for EVA, whose work
            is the model's forward passes.

    Returns:
        :class:`ModelInit`.

    Raises:
        ValueError: a NaN/Inf base weight, naming its layer and the layers already initialised
            before it (that layer and the rest are left untouched); bad method or options.
        TypeError: not a peft model, a non-Linear or integer / quantized base weight.

    Randomness:
        Every layer uses the same ``seed`` (rsvd's normal stream 6, Nyström's stream 8): a
        batched group equals the loop over its layers, and a model initialises the same way on
        every run and machine, to rounding.

    Equal-shape layers of up to 2^20 elements share one batched rsvd; larger ones run one by one
    reusing one bfloat16 scratch buffer; residuals are written into the base weights in one
    fused ``addmm`` pass each, on the device the weights live on.

    Example:
        >>> import torch, peft, linalg_core as lc                      # doctest: +SKIP
        >>> net = torch.nn.Sequential(torch.nn.Linear(64, 64))          # doctest: +SKIP
        >>> m = peft.get_peft_model(net, peft.LoraConfig(r=8, target_modules=["0"]))  # doctest: +SKIP
        >>> lc.adapters.init_peft_model(m, "pissa", seed=0).layers      # doctest: +SKIP
        {'base_model.model.0': 8}
    """
    _validate.choice(method, "method", METHODS)
    start = time.perf_counter()
    adapter, layers = _lora_layers(model, adapter_name)
    seed = _validate.seed(seed)
    show = progress if progress is not None else sys.stderr.isatty()
    if method == "eva":
        if executor is not None:
            raise ValueError("method='eva' runs the model's forward passes here; it takes no executor")
        return _eva(model, adapter, layers, batches, forward, rho, tau, whiten, max_batches, seed, show,
                    adjust_scaling_factors, start)
    if method == "lora_sb":
        if not isinstance(updates, dict):
            raise ValueError("method='lora_sb' needs updates={module name: estimated update ΔW}")
        missing = sorted(set(layers) - set(updates))
        if missing:
            raise ValueError(f"updates has no entry for layers {missing[:5]}")
    bar = _progress(len(layers), show, f"linalg_core {method}")
    units = _pissa_units(layers, adapter) if method == "pissa" else [[name] for name in layers]
    filled: list[str] = []
    with reuse_buffers():
        if executor is None:
            for names in units:
                with _naming_failures(layers, names, filled):
                    _fill(layers, adapter, method, names, None, niter, seed, updates)
                filled.extend(names)
                if bar is not None:
                    bar.update(len(names))
        else:
            futures = {executor.submit(_payload, method, *_unit_args(layers, adapter, names), niter, seed,
                                       _unit_update(updates, names)): names for names in units}
            for fut in as_completed(futures):
                with _naming_failures(layers, futures[fut], filled):
                    _fill(layers, adapter, method, futures[fut], fut.result(), niter, seed, updates)
                filled.extend(futures[fut])
                if bar is not None:
                    bar.update(len(futures[fut]))
    if bar is not None:
        bar.close()
    return ModelInit(method, {name: m.r[adapter] for name, m in layers.items()}, time.perf_counter() - start)


@contextlib.contextmanager
def _naming_failures(layers, names, filled):
    """A NaN/Inf found in a unit's weights (a batched group's stack included) re-raised naming
    the layer that holds it and saying which layers were already initialised."""
    try:
        yield
    except ValueError as err:
        for name in names:
            msg = _validate.nonfinite_message(layers[name].get_base_layer().weight.data, f"layer {name!r}: the weight")
            if msg:
                done = (f"{len(filled)} of {len(layers)} layers were initialised before it ({', '.join(filled[:3])}"
                        f"{', ...' if len(filled) > 3 else ''}), this one and the rest are untouched"
                        if filled else "no layer was changed")
                raise ValueError(f"{msg}; {done}") from err
        raise


def _geometry(module, adapter):
    """(stored weight, W as (out, in) view, fan_in_fan_out, rank, scaling)."""
    weight = module.get_base_layer().weight.data
    fifo = bool(getattr(module, "fan_in_fan_out", False))
    return weight, (weight.T if fifo else weight), fifo, module.r[adapter], module.scaling[adapter]


def _set_factors(module, adapter, A, B):
    a, b = module.lora_A[adapter].weight, module.lora_B[adapter].weight
    a.data.copy_(A.to(a.dtype))
    b.data.copy_(B.to(b.dtype))


def _pissa_units(layers, adapter) -> list[list[str]]:
    """PiSSA's units of work: equal-shape layers of up to BATCH_MAX_ELEMS elements share one
    batched rsvd, larger ones go alone; largest first, so that the scratch buffers are faulted in
    once, at their final size."""
    groups: dict[tuple, list[str]] = {}
    for name, module in layers.items():
        weight, Wt, fifo, r, _ = _geometry(module, adapter)
        key = (tuple(Wt.shape), weight.dtype, weight.device, r, fifo)
        groups.setdefault(key if Wt.numel() <= BATCH_MAX_ELEMS else (name,), []).append(name)
    return sorted(groups.values(), key=lambda ns: -layers[ns[0]].get_base_layer().weight.numel() * len(ns))


def _unit_args(layers, adapter, names, scratch=False):
    """(W as (out, in) — a stack for a PiSSA group —, rank, lora_alpha, fan_in_fan_out).
    ``scratch``: stack into the reused scratch buffer (a unit computed at once, not a task: its
    pages are then faulted in once per model, not once per group — 14 MiB per MiniLM-L6 group,
    ~3 ms of page faults each on this VM)."""
    views = [_geometry(layers[n], adapter) for n in names]
    _, Wt, fifo, r, s = views[0]
    if len(views) == 1:
        return Wt, r, s * r, fifo
    shape = (len(views), *Wt.shape)
    out = _scratch("stack", shape, Wt.dtype, Wt.device) if scratch else None
    return torch.stack([v[1] for v in views], out=out), r, s * r, fifo


def _unit_update(updates, names):
    return updates.get(names[0]) if updates and len(names) == 1 else None


def _payload(method, W, r, alpha, fifo, niter, seed, update, out=None):
    """What a unit computes from its weight alone (an executor task): PiSSA's triplets of W
    (out, in) or of a stack of them; the other methods' full result (factors and residual, into
    ``out`` when given: the stored weight, in place)."""
    if method == "pissa":
        return _init._pissa_triplets(W, r, niter, seed)
    stored = W.T if fifo else W
    if method == "olora":
        return _init.olora(stored, r, lora_alpha=alpha, fan_in_fan_out=fifo, out=out)
    if method == "milora":
        return _init.milora(stored, r, lora_alpha=alpha, fan_in_fan_out=fifo, out=out)
    if method == "nlora":
        return _init.nlora(stored, r, lora_alpha=alpha, fan_in_fan_out=fifo, seed=seed, out=out)
    if method == "loldu":
        return _init.loldu(stored, r, lora_alpha=alpha, fan_in_fan_out=fifo, out=out)
    update = torch.as_tensor(update)  # lora_sb: the base is unchanged
    if tuple(update.shape) != tuple(stored.shape):
        raise ValueError(f"updates entry has shape {tuple(update.shape)}, the weight {tuple(stored.shape)}")
    return _init.lora_sb(update, r, lora_alpha=alpha, fan_in_fan_out=fifo, seed=seed)


def _fill(layers, adapter, method, names, payload, niter, seed, updates):
    """Write one unit into the model: factors into lora_A / lora_B (N folded into B for the
    three-factor methods), residuals into the base weights. ``payload`` None: compute it here,
    the other methods' residuals in place."""
    weight = layers[names[0]].get_base_layer().weight.data
    if payload is None:
        payload = _payload(method, *_unit_args(layers, adapter, names, scratch=True), niter, seed,
                           _unit_update(updates, names),
                           out=None if method == "pissa" else weight)
    elif method != "pissa" and payload.residual is not None:
        weight.copy_(payload.residual)
    if method != "pissa":
        B = payload.B @ payload.N if hasattr(payload, "N") else payload.B
        _set_factors(layers[names[0]], adapter, payload.A, B)
        return
    for name, (U, S, Vh) in zip(names, [payload] if len(names) == 1 else zip(*payload)):
        weight, Wt, fifo, _, s = _geometry(layers[name], adapter)
        done = _init._from_svd(Wt, U, S, Vh, s, Boundary("torch"), fifo, weight)
        _set_factors(layers[name], adapter, done.A, done.B)


def _eva(model, adapter, layers, batches, forward, rho, tau, whiten, max_batches, seed, show, adjust, start):
    if batches is None:
        raise ValueError("method='eva' needs batches= (an iterable of model inputs)")
    eva = EVA({n: m.r[adapter] for n, m in layers.items()}, rho=rho, tau=tau, whiten=whiten, seed=seed)
    current = {}

    def hook(name):
        def fn(module, args, output):
            X = args[0].detach()
            mask = current.get("mask")
            if mask is not None and tuple(mask.shape) == tuple(X.shape[:-1]):
                X = X[mask.bool()]
            eva.update(name, X.reshape(-1, X.shape[-1]))
        return fn

    handles = [m.register_forward_hook(hook(n)) for n, m in layers.items()]
    bar = _progress(max_batches, show, "linalg_core eva")
    seen = 0
    modes = {m: m.training for m in model.modules()}
    model.eval()
    try:
        ctx = model.disable_adapter() if hasattr(model, "disable_adapter") else contextlib.nullcontext()
        with ctx:
            for batch in batches:
                current["mask"] = batch.get("attention_mask") if isinstance(batch, dict) else None
                if forward is not None:
                    forward(model, batch)
                elif isinstance(batch, dict):
                    model(**batch)
                else:
                    model(batch)
                seen += 1
                if bar is not None:
                    bar.update(1)
                if eva.done or (max_batches is not None and seen >= max_batches):
                    break
    finally:
        for h in handles:
            h.remove()
        for m, mode in modes.items():
            m.training = mode
        if bar is not None:
            bar.close()
    if seen == 0:
        raise ValueError("batches is empty")
    components = eva.components()
    removed = _load_eva(model, adapter, layers, components, adjust)
    return ModelInit("eva", {n: A.shape[0] for n, A in components.items() if A.shape[0] > 0},
                     time.perf_counter() - start, removed)


def _load_eva(model, adapter, layers, components, adjust):
    """Resize layers to their EVA ranks (peft's update_layer), set A, zero B; rank-0 layers
    return to their base layer. The model's config records rank_pattern / alpha_pattern."""
    config = model.peft_config[adapter]
    removed = []
    for name, module in layers.items():
        A = components[name]
        r, alpha = module.r[adapter], module.scaling[adapter] * module.r[adapter]
        if getattr(config, "use_rslora", False):
            alpha = module.scaling[adapter] * math.sqrt(r)
        key = name.replace("base_model.model.", "")
        if A.shape[0] == 0:
            parent = model.get_submodule(name.rsplit(".", 1)[0]) if "." in name else model
            setattr(parent, name.rsplit(".", 1)[-1], module.get_base_layer())
            removed.append(name)
            continue
        if A.shape[0] != r:
            new_alpha = alpha * A.shape[0] / r if adjust else alpha
            cfg = copy.copy(config)
            cfg.init_lora_weights = True
            module.update_layer(adapter_name=adapter, r=A.shape[0], lora_alpha=new_alpha, config=cfg)
            config.rank_pattern = {**(config.rank_pattern or {}), key: A.shape[0]}
            if new_alpha != config.lora_alpha:
                config.alpha_pattern = {**(config.alpha_pattern or {}), key: new_alpha}
        _set_factors(module, adapter, A, torch.zeros_like(module.lora_B[adapter].weight))
    return removed


def adapter_state(model, adapter_name: str | None = None) -> dict[str, torch.Tensor]:
    """A copy of the adapter's factors right after initialisation: {module name: (A, B)} (keep
    it to convert the trained adapter with :func:`to_lora_state_dict`)."""
    adapter, layers = _lora_layers(model, adapter_name)
    return {name: (m.lora_A[adapter].weight.detach().clone(), m.lora_B[adapter].weight.detach().clone())
            for name, m in layers.items()}


def delta_as_lora(A, B, A0, B0):
    """The rank-2r plain LoRA of a trained PiSSA-style adapter: s·(BA − B₀A₀) = s·B′A′ with
    A′ = [A; A₀] (2r × in) and B′ = [B, −B₀] (out × 2r), peft's conversion convention
    (``LoraModel.subtract_mutated_init``). Applied to the *original* base weight W (not the
    residual), with alpha doubled (×√2 for rsLoRA) so the scaling s is unchanged.

    Example:
        >>> import torch, linalg_core as lc
        >>> A0, B0 = torch.randn(2, 5), torch.randn(4, 2)
        >>> A2, B2 = lc.adapters.delta_as_lora(A0 + 1, B0, A0, B0)
        >>> torch.allclose(B2 @ A2, B0 @ (A0 + 1) - B0 @ A0)
        True
    """
    return torch.cat([A, A0], dim=0), torch.cat([B, -B0], dim=1)


def save_as_lora(model, initial: dict, output_dir: str, *, adapter_name: str | None = None) -> str:
    """Save a trained PiSSA/OLoRA/NLoRA-style adapter as a plain rank-2r LoRA that loads with
    ``peft.PeftModel.from_pretrained`` on the *original* base model, without recomputing any
    decomposition (peft's ``path_initial_model_for_weight_conversion`` convention: r and
    rank_pattern doubled, lora_alpha and alpha_pattern ×2, or ×√2 with rsLoRA so that every
    layer keeps its scaling; peft itself refuses rsLoRA with rank_pattern / alpha_pattern).

    Args:
        model: the peft model after training.
        initial: :func:`adapter_state` taken right after initialisation.
        output_dir: directory for ``adapter_model.safetensors`` and ``adapter_config.json``.

    Returns:
        output_dir.

    Example:
        >>> init = lc.adapters.init_peft_model(model, "pissa", seed=0)   # doctest: +SKIP
        >>> initial = lc.adapters.adapter_state(model)                   # doctest: +SKIP
        >>> ...  # train                                                  # doctest: +SKIP
        >>> lc.adapters.save_as_lora(model, initial, "out/")              # doctest: +SKIP
        >>> peft.PeftModel.from_pretrained(original_base_model, "out/")   # doctest: +SKIP
    """
    peft, _ = _peft()
    from peft.utils import get_peft_model_state_dict

    adapter, layers = _lora_layers(model, adapter_name)
    missing = sorted(set(layers) - set(initial))
    if missing:
        raise ValueError(f"initial has no factors for layers {missing[:5]} (take adapter_state() right after init)")
    state = get_peft_model_state_dict(model, adapter_name=adapter)
    for name, module in layers.items():
        A0, B0 = initial[name]
        A, B = module.lora_A[adapter].weight.detach(), module.lora_B[adapter].weight.detach()
        A2, B2 = delta_as_lora(A, B, A0.to(A), B0.to(B))
        prefix = name
        for key in (f"{prefix}.lora_A.weight", f"{prefix}.lora_B.weight"):
            if key not in state:
                raise KeyError(f"{key} missing from peft's state dict")
        state[f"{prefix}.lora_A.weight"] = A2.contiguous()
        state[f"{prefix}.lora_B.weight"] = B2.contiguous()
    config = model.peft_config[adapter].to_dict()
    config["init_lora_weights"] = True
    # Every layer's rank doubles, so every alpha (the global one and alpha_pattern's) is
    # multiplied by the factor that keeps its scaling: 2 for alpha / r, √2 for rsLoRA's
    # alpha / √r (peft's own conversion refuses rsLoRA with rank_pattern / alpha_pattern).
    factor = 2**0.5 if config.get("use_rslora") else 2
    config["r"] = 2 * config["r"]
    config["lora_alpha"] = config["lora_alpha"] * factor
    config["rank_pattern"] = {k: 2 * v for k, v in (config.get("rank_pattern") or {}).items()}
    config["alpha_pattern"] = {k: factor * v for k, v in (config.get("alpha_pattern") or {}).items()}
    os.makedirs(output_dir, exist_ok=True)
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in state.items()}, os.path.join(output_dir, "adapter_model.safetensors"))
    for k, v in list(config.items()):
        if isinstance(v, set):
            config[k] = sorted(v)
    with open(os.path.join(output_dir, "adapter_config.json"), "w") as f:
        json.dump(config, f, indent=2, default=str)
    return output_dir


__all__ = ["METHODS", "ModelInit", "init_peft_model", "adapter_state", "delta_as_lora", "save_as_lora"]
