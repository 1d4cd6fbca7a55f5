"""Whole models through Hugging Face ``peft``: fill every LoRA layer of a ``PeftModel`` with a
linalg_core initialiser, and save a PiSSA-style adapter as a plain LoRA.

``peft`` is imported only when these functions run (``pip install peft``).

Conventions are peft's (``peft/tuners/lora/layer.py``, ``peft_model.py``): each targeted layer
holds ``lora_A`` (r × in), ``lora_B`` (out × r) and ``scaling``; methods that move components
into the adapter rewrite the base weight to the residual. peft's LoRA layer has no slot for a
middle factor, so the three-factor methods (NLoRA, LoLDU, LoRA-SB) are loaded with N folded into
B (B ← B·N: the same function at init; train N alone through the per-matrix API instead).
LoftQ and QPiSSA replace each LoRA layer's base layer by a :class:`QuantBase` holding the
quantized residual (the float weight is dropped; gradients still reach the layer's input).
"""

from __future__ import annotations

import bisect
import contextlib
import copy
import dataclasses
import json
import math
import os
import sys
import time
import warnings
from collections.abc import Mapping
from concurrent.futures import as_completed
from dataclasses import dataclass, field

import torch

from linalg_core import _validate
from linalg_core._arrays import Boundary
from linalg_core._scratch import buffer, lend, reuse_buffers
from linalg_core.adapters import init as _init
from linalg_core.adapters.config import (
    EVAConfig,
    InitConfig,
    LayerUnit,
    LoftQConfig,
    LoLDUConfig,
    LoRASBConfig,
    MiLoRAConfig,
    ModelRun,
    NLoRAConfig,
    OLoRAConfig,
    PiSSAConfig,
    QPiSSAConfig,
    config_type,
    initializer_for,
    methods,
    register_initializer,
)
from linalg_core.adapters.eva import EVA
from linalg_core.adapters.factors import LoRAInit, ThreeFactorInit
from linalg_core.quant import QuantizedTensor, QuantLinear


# Equal-shape weights up to this many elements are stacked into one batched rsvd (the stack is a
# copy: it pays for small matrices, where per-call overhead dominates, not for large ones).
BATCH_MAX_ELEMS = 1 << 20

# The string form's options that only EVA takes (deprecated there: pass an EVAConfig).
_EVA_OPTIONS = ("batches", "forward", "rho", "tau", "whiten", "center", "max_batches", "adjust_scaling_factors")
# The options the string form took before the configs: one that does not apply to the method was
# ignored; it now warns.
_LEGACY_OPTIONS = ("seed", "niter", "updates", "batches", "forward", "rho", "tau", "whiten", "max_batches",
                   "adjust_scaling_factors")


@dataclass
class ModelInit:
    """What :func:`init_peft_model` did.

    Attributes:
        method: the initialiser's name (the config's ``method``, else its class name).
        layers: {module name: rank} of the layers filled (EVA: after redistribution).
        seconds: wall time.
        removed: layers EVA gave rank 0 (their LoRA wrapper replaced by the base layer).
        config: the config that ran, with its seed resolved to the int used (``seed=None``
            draws fresh entropy): ``init_peft_model(other, report.config)`` repeats the run.

    Example:
        >>> import torch, peft, linalg_core as lc
        >>> model = peft.get_peft_model(torch.nn.Sequential(torch.nn.Linear(16, 16)),
        ...                             peft.LoraConfig(r=2, target_modules=["0"]))
        >>> report = lc.adapters.init_peft_model(model, "pissa", seed=0)
        >>> report.method, report.layers, report.config
        ('pissa', {'base_model.model.0': 2}, PiSSAConfig(niter='auto', seed=0))
    """

    method: str
    layers: dict[str, int]
    seconds: float
    removed: list[str] = field(default_factory=list)
    config: InitConfig | None = None


def _peft():
    try:
        import peft
        from peft.tuners.lora import LoraLayer
    except ImportError as e:  # pragma: no cover - exercised only without peft
        raise ImportError("init_peft_model needs Hugging Face peft: pip install peft") from e
    return peft, LoraLayer


def _lora_layers(model, adapter_name, quantized: str | None = None):
    """(adapter, {name: LoRA layer}). ``quantized``: what a quantized base layer (QuantBase) is
    refused for (a message), or None to accept it (its factors are read only)."""
    _, LoraLayer = _peft()
    if not hasattr(model, "peft_config"):
        raise TypeError(f"model must be a peft model (peft.get_peft_model(...)), got {type(model).__name__}")
    adapter = adapter_name or getattr(model, "active_adapter", "default")
    if adapter not in model.peft_config:
        raise ValueError(f"adapter_name={adapter!r} is not one of {sorted(model.peft_config)}")
    layers = {}
    for name, module in model.named_modules():
        if isinstance(module, LoraLayer) and adapter in module.lora_A:
            base = module.get_base_layer()
            if hasattr(base, "quantized"):  # QuantBase, QuantLinear, LQLinear
                if quantized is not None:
                    raise TypeError(f"layer {name!r} has a quantized base layer ({type(base).__name__}): {quantized}")
                layers[name] = module
                continue
            weight = base.weight
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


def _label(config) -> str:
    return config.method or type(config).__name__


def _as_config(config, options) -> InitConfig:
    """The config of a call: ``config`` itself (then ``options`` must be empty), or the config the
    string form's name and options build (with the deprecation warnings of the old options).
    The warnings' stacklevel 4 points at init_peft_model's caller, through torch.no_grad's wrapper."""
    if "method" in options:  # the argument's name before the configs
        method = options.pop("method")
        if config != "pissa":
            raise TypeError("init_peft_model got both config and method=; pass the config (or its name) alone")
        warnings.warn("init_peft_model(model, method=...) is deprecated: pass the config or its name as the "
                      "second argument", DeprecationWarning, stacklevel=4)
        config = method
    if isinstance(config, InitConfig):
        if options:
            raise TypeError(f"init_peft_model(model, {type(config).__name__}(...)) takes the options in the config, "
                            f"got {', '.join(f'{k}=' for k in options)} as well")
        return config
    if not isinstance(config, str):
        raise TypeError(f"config must be an InitConfig (PiSSAConfig(...), EVAConfig(...), ...) or a method name, got "
                        f"{type(config).__name__}")
    cls = config_type(config)
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(options) - fields - set(_LEGACY_OPTIONS))
    if unknown:
        raise TypeError(f"init_peft_model() got unexpected keyword argument(s) {', '.join(map(repr, unknown))} for "
                        f"method={config!r} (options of {cls.__name__}: {', '.join(sorted(fields)) or 'none'})")
    eva = sorted(k for k in options if k in _EVA_OPTIONS and k in fields) if issubclass(cls, EVAConfig) else []
    if eva:
        warnings.warn(f"init_peft_model(model, {config!r}, {', '.join(f'{k}=...' for k in eva)}) is deprecated: "
                      f"pass init_peft_model(model, {cls.__name__}(batches, ...)) "
                      f"(linalg_core.adapters.{cls.__name__})",
                      DeprecationWarning, stacklevel=4)
    ignored = sorted(k for k in options if k not in fields)
    if "seed" in ignored:  # one seed for any method, as before; the deterministic ones need none
        _validate.seed(options["seed"])
        ignored.remove("seed")
    if ignored:
        warnings.warn(f"method={config!r} takes no {', '.join(f'{k}=' for k in ignored)} (options of {cls.__name__}: "
                      f"{', '.join(sorted(fields)) or 'none'}): ignored, and an error in a later version",
                      DeprecationWarning, stacklevel=4)
    # a required option left out (EVA's batches, LoRA-SB's updates) is None, which the config
    # refuses with its own message, as the string form did before the configs
    required = {f.name: None for f in dataclasses.fields(cls)
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING}
    return cls(**{**required, **{k: v for k, v in options.items() if k in fields}})


def _with_seed(config):
    """``config`` with its seed (None: fresh entropy; a torch.Generator: one draw) resolved to an
    int, so that every layer and every executor task uses the same one, and the report records it."""
    if "seed" not in {f.name for f in dataclasses.fields(config)}:
        return config
    seed = config.seed
    return config if type(seed) is int else dataclasses.replace(config, seed=_validate.seed(seed))


@torch.no_grad()
def init_peft_model(model, config: InitConfig | str = "pissa", *, adapter_name: str | None = None,
                    progress: bool | None = None, executor=None, **options) -> ModelInit:
    """Initialise every LoRA layer of a peft model in place with a linalg_core method.

    Args:
        model: a ``peft.PeftModel`` (or tuner model) with LoRA adapters on Linear layers.
        config: the method and its options: :class:`~linalg_core.adapters.PiSSAConfig`,
            :class:`~linalg_core.adapters.OLoRAConfig`, :class:`~linalg_core.adapters.MiLoRAConfig`,
            :class:`~linalg_core.adapters.NLoRAConfig`, :class:`~linalg_core.adapters.LoLDUConfig`,
            :class:`~linalg_core.adapters.LoRASBConfig`, :class:`~linalg_core.adapters.EVAConfig`,
            :class:`~linalg_core.adapters.LoftQConfig`, :class:`~linalg_core.adapters.QPiSSAConfig`
            or any config registered with :func:`~linalg_core.adapters.register_initializer`;
            or a method's name (``"pissa"``, ``"olora"``, ``"milora"``, ``"nlora"``, ``"loldu"``,
            ``"lora_sb"``, ``"eva"``, ``"loftq"``, ``"qpissa"``), the shortcut that builds its
            config from ``options``. LoftQ / QPiSSA replace each base layer by a
            :class:`QuantBase` (a :class:`~linalg_core.quant.QuantLinear` that passes gradients
            to its input) holding the quantized residual, on any device, without bitsandbytes.
        adapter_name: default the active adapter.
        progress: a tqdm bar over layers (default: when stderr is a terminal).
        executor: a ``concurrent.futures.Executor`` (a process pool, or a Dask cluster's
            ``Client.get_executor()``) for the decompositions, one task per layer (PiSSA: per
            batched group): the weights travel to the workers, the factors (PiSSA: the
            triplets) come back, and the residuals are written here. The model is the serial
            run's when the workers use this process's BLAS thread count. Not for EVA, whose work
            is the model's forward passes.
        **options: the string form only: the config's fields (``seed``, ``niter``, ``updates``,
            ...). ``seed`` is accepted by every method (the deterministic ones ignore it). EVA's
            options (``batches``, ``forward``, ``rho``, ``tau``, ``whiten``, ``max_batches``,
            ``adjust_scaling_factors``) still work with ``"eva"`` but are deprecated
            (DeprecationWarning): pass an :class:`~linalg_core.adapters.EVAConfig`. An option
            the method does not take is ignored with a DeprecationWarning.

    Returns:
        :class:`ModelInit` (its ``config`` records the seed used).

    Raises:
        ValueError: a NaN/Inf base weight, naming its layer and the layers already initialised
            before it (that layer and the rest are left untouched); bad method or options; a
            config that does not fit the model (LoRA-SB updates missing or mis-shaped; a LoftQ
            rank not below min(out, in), a QPiSSA rank above it), checked before any layer changes.
        TypeError: not a peft model, a non-Linear or integer / quantized base weight (a
            QuantBase left by an earlier LoftQ / QPiSSA run included); options
            passed with a config; a config without a registered handler.

    Randomness:
        Every layer uses the config's one seed (rsvd's normal stream 6, Nyström's stream 8): a
        batched group equals the loop over its layers, and a model initialises the same way on
        every run and machine, to rounding.

    PiSSA: equal-shape layers of up to 2^20 elements share one batched rsvd; larger ones run one
    by one (reusing one bfloat16 scratch buffer where bfloat16 products pay: CUDA, AMX,
    AVX512-BF16; where the residual goes to new memory, that memory holds the bfloat16 copy of
    the weight first, so its pages are faulted in once); residuals are written in one pass each,
    in float32 rounded once to the weight's dtype (the ``lowrank_update`` kernel on AVX-512 and AVX2 CPUs,
    a fused ``addmm`` elsewhere), on the device the weights live on.

    Where residuals go: into the base weights in place where they are this process's private
    memory (a model built or copied in memory); into new memory that the weight's ``Parameter``
    is rebound to where they are a memory-mapped file (``from_pretrained``, ``safetensors``,
    ``torch.load(mmap=True)``: writing in place would pay a copy-on-write page fault per 4 KiB),
    shared or read-only memory. The file is never written; the Parameter objects, their dtype,
    device, ``requires_grad`` and ties are kept (see ``_Residuals``).

    Example:
        >>> import torch, peft, linalg_core as lc
        >>> net = torch.nn.Sequential(torch.nn.Linear(64, 64))
        >>> m = peft.get_peft_model(net, peft.LoraConfig(r=8, target_modules=["0"]))
        >>> lc.adapters.init_peft_model(m, lc.adapters.PiSSAConfig(seed=0)).layers
        {'base_model.model.0': 8}
        >>> lc.adapters.init_peft_model(m, "olora").layers
        {'base_model.model.0': 8}
        >>> m2 = peft.get_peft_model(torch.nn.Sequential(torch.nn.Linear(64, 64)),
        ...                          peft.LoraConfig(r=8, target_modules=["0"]))
        >>> _ = lc.adapters.init_peft_model(m2, lc.adapters.LoftQConfig(format="nf4", iters=2, seed=0))
        >>> type(m2.base_model.model[0].base_layer).__name__
        'QuantBase'
    """
    config = _as_config(config, options)
    entry = initializer_for(config)
    start = time.perf_counter()
    adapter, layers = _lora_layers(model, adapter_name, quantized="initialise a peft model of the float model "
                                   "(LoftQ / QPiSSA quantize the base themselves)")
    config = _with_seed(config)
    show = progress if progress is not None else sys.stderr.isatty()
    if entry.scope == "model":
        if executor is not None:
            raise ValueError(f"method={_label(config)!r} works on the whole model in this process; it takes no "
                             "executor")
        run = ModelRun(model, adapter, layers, show)
        ranks = entry.handler(config, run)
        return ModelInit(_label(config), dict(ranks), time.perf_counter() - start, list(run.removed), config)
    config.check_layers({name: tuple(m.get_base_layer().weight.shape) for name, m in layers.items()})
    config.check_ranks({name: (tuple(_geometry(m, adapter)[1].shape), m.r[adapter]) for name, m in layers.items()})
    bar = _progress(len(layers), show, f"linalg_core {_label(config)}")
    units = _batched_units(layers, adapter) if entry.batch else [[name] for name in layers]
    filled: list[str] = []
    residuals = _Residuals(model)
    with reuse_buffers():
        if executor is None:
            for names in units:
                with _naming_failures(layers, names, filled):
                    unit = _unit(layers, adapter, names, residuals)
                    _fill(layers, adapter, names, entry.handler(config, unit), residuals, unit.out)
                filled.extend(names)
                if bar is not None:
                    bar.update(len(names))
        else:
            futures = {executor.submit(_task, entry.handler, config.for_layers(tuple(names)),
                                       _unit(layers, adapter, names)): names for names in units}
            for fut in as_completed(futures):
                with _naming_failures(layers, futures[fut], filled):
                    _fill(layers, adapter, futures[fut], fut.result(), residuals, owned=True)
                filled.extend(futures[fut])
                if bar is not None:
                    bar.update(len(futures[fut]))
    if bar is not None:
        bar.close()
    return ModelInit(_label(config), {name: m.r[adapter] for name, m in layers.items()}, time.perf_counter() - start,
                     config=config)


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


def _memory_maps() -> tuple[list[int], list[tuple[int, int, str]]] | None:
    """This process's memory mappings from ``/proc/self/maps``: (sorted starts, [(start, end,
    kind)]) with kind ``"anon"`` for private anonymous writable memory (malloc, torch's
    allocator), ``"cow"`` for a private writable mapping of a file (copy-on-write: safetensors',
    transformers' and ``torch.load(mmap=True)``'s memory-mapped weights), ``"other"`` for shared or
    read-only memory. None where the file cannot be read (not Linux)."""
    try:
        with open("/proc/self/maps") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    spans = []
    for line in lines:
        fields = line.split(maxsplit=5)
        if len(fields) < 5:
            continue
        start, end = (int(x, 16) for x in fields[0].split("-"))
        perms, inode = fields[1], fields[4]
        writable = perms[1] == "w" and perms[3] == "p"
        spans.append((start, end, ("anon" if inode == "0" else "cow") if writable else "other"))
    spans.sort()
    return [a for a, _, _ in spans], spans


class _Residuals:
    """Where :func:`init_peft_model` writes each layer's residual, chosen by the memory its base
    weight lives in (the fastest way that is right for that memory):

    * this process's private anonymous memory (a model built, copied or loaded into memory), or
      device memory: in place, one read-modify-write pass that touches no new page;
    * anything else: a fresh tensor of the weight's dtype, device and shape, which the weight's
      ``Parameter`` is then rebound to (``param.data = residual``, as peft's own initialisers
      do). That is a file mapped copy-on-write (``from_pretrained``, ``safetensors``,
      ``torch.load(mmap=True)``), where writing in place pays a copy-on-write fault per 4 KiB
      page (an order of magnitude dearer than a fresh zero-filled page: benchmarks/RESULTS.md,
      adapters), and shared or read-only memory, whose writing would
      reach other processes or the file, or fault. The file is never written. (That fresh
      tensor on transparent huge pages, an anonymous mapping advised ``MADV_HUGEPAGE``, was
      tried: 40 → 26 ms for an 11008 × 4096 bfloat16 residual in a warm process, but in a
      fresh one, the path measured, the kernel compacted memory on the faults: the
      LLaMA-7B-shaped residuals took 318 ms instead of 79, float32 453 instead of 90.)

    The ``Parameter`` object stays (identity, ``requires_grad``, optimizer references, weights
    tied by sharing the Parameter); other Parameters of the model that are the very same view of
    the same memory (ties made by sharing the tensor) are rebound with it. A tensor taken from
    ``weight.data`` before the call keeps the old values where the weight was rebound.
    """

    def __init__(self, model):
        self._model = model
        self._maps = None  # read at the first CPU weight
        self._twins = None  # {view key: [Parameters]}, built at the first rebinding

    def _kind(self, t: torch.Tensor) -> str:
        """"anon", "cow" or "other" (see :func:`_memory_maps`) for t's memory span."""
        if t.device.type != "cpu":
            return "anon"
        if self._maps is None:
            self._maps = _memory_maps() or ([], [])
        starts, spans = self._maps
        pos = t.data_ptr()
        end = pos + (1 + sum((n - 1) * st for n, st in zip(t.shape, t.stride()) if n > 0)) * t.element_size()
        i, kinds = bisect.bisect_right(starts, pos) - 1, set()
        while pos < end:  # the mappings that cover [pos, end), contiguous
            if i < 0 or i >= len(spans) or not spans[i][0] <= pos < spans[i][1]:
                return "other"
            kinds.add(spans[i][2])
            pos, i = spans[i][1], i + 1
        return kinds.pop() if len(kinds) == 1 else "other"

    def destination(self, module) -> torch.Tensor:
        """The tensor (stored layout) the residual of ``module``'s base weight is written into:
        the stored weight itself, or a fresh tensor that :meth:`store` rebinds the weight to."""
        weight = module.get_base_layer().weight.data
        if self._kind(weight) == "anon":
            return weight
        return torch.empty(weight.shape, dtype=weight.dtype, device=weight.device)

    def store(self, module, res: torch.Tensor, dest: torch.Tensor | None = None, owned: bool = False) -> None:
        """Make ``res`` (the stored layout) the base weight of ``module``: nothing to do when it
        was computed in place; rebinding when it is the fresh ``dest`` of :meth:`destination`
        (or, ``owned``, a tensor nobody else holds, and the weight is not to be written in
        place); else a copy into :meth:`destination`'s choice."""
        param = module.get_base_layer().weight
        weight = param.data
        if _same_view(res, weight):
            return
        if dest is not None and _same_view(res, dest):
            self._rebind(param, res)
            return
        if self._kind(weight) == "anon":
            weight.copy_(res)
            return
        if not (owned and res.shape == weight.shape and res.dtype == weight.dtype and res.device == weight.device
                and res.is_contiguous() and _whole_storage(res)):
            res = torch.empty(weight.shape, dtype=weight.dtype, device=weight.device).copy_(res)
        self._rebind(param, res)

    def _rebind(self, param, new: torch.Tensor) -> None:
        if self._twins is None:
            self._twins = {}
            for p in self._model.parameters():
                self._twins.setdefault(_view_key(p.data), []).append(p)
        for p in self._twins.get(_view_key(param.data), [param]):
            p.data = new


def _view_key(t: torch.Tensor) -> tuple:
    return (t.device, t.data_ptr(), t.dtype, tuple(t.shape), t.stride())


def _same_view(a: torch.Tensor, b: torch.Tensor) -> bool:
    return _view_key(a) == _view_key(b)


def _whole_storage(t: torch.Tensor) -> bool:
    """t spans all of its storage (a view would keep a larger storage alive)."""
    return t.storage_offset() == 0 and t.untyped_storage().nbytes() == t.numel() * t.element_size()


def _geometry(module, adapter):
    """(stored weight, W as (out, in) view, fan_in_fan_out, rank, scaling)."""
    weight = module.get_base_layer().weight.data
    fifo = bool(getattr(module, "fan_in_fan_out", False))
    return weight, (weight.T if fifo else weight), fifo, module.r[adapter], module.scaling[adapter]


def _set_factors(module, adapter, A, B):
    a, b = module.lora_A[adapter].weight, module.lora_B[adapter].weight
    a.data.copy_(A.to(a.dtype))
    b.data.copy_(B.to(b.dtype))


def _batched_units(layers, adapter) -> list[list[str]]:
    """The units of a ``batch=True`` handler (PiSSA): equal-shape layers of up to BATCH_MAX_ELEMS
    elements share one unit, larger ones go alone; largest first, so that the scratch buffers
    are faulted in once, at their final size."""
    groups: dict[tuple, list[str]] = {}
    for name, module in layers.items():
        weight, Wt, fifo, r, _ = _geometry(module, adapter)
        key = (tuple(Wt.shape), weight.dtype, weight.device, r, fifo)
        groups.setdefault(key if Wt.numel() <= BATCH_MAX_ELEMS else (name,), []).append(name)
    return sorted(groups.values(), key=lambda ns: -layers[ns[0]].get_base_layer().weight.numel() * len(ns))


def _unit(layers, adapter, names, residuals: _Residuals | None = None) -> LayerUnit:
    """The :class:`LayerUnit` of ``names``. ``residuals``: a unit computed in this process, not an
    executor task: a single layer's residual goes to :meth:`_Residuals.destination` (``out``),
    and a group is stacked into the reused scratch buffer (its pages are then faulted in once per
    model, not once per group)."""
    views = [_geometry(layers[n], adapter) for n in names]
    weight, Wt, fifo, r, s = views[0]
    if len(views) == 1:
        out = residuals.destination(layers[names[0]]) if residuals is not None else None
        return LayerUnit(tuple(names), Wt, r, s, fifo, out)
    shape = (len(views), *Wt.shape)
    out = buffer("stack", shape, Wt.dtype, Wt.device) if residuals is not None else None
    return LayerUnit(tuple(names), torch.stack([v[1] for v in views], out=out), r, s, fifo)


def _task(handler, config, unit: LayerUnit):
    """An executor task. A single layer's residual goes into a new tensor of the stored layout,
    as the serial run writes it into the stored weight: the same GEMM into the same layout, so
    the same rounding also for (in, out)-stored (``fan_in_fan_out``) weights."""
    if len(unit.names) == 1:
        stored = unit.weight
        unit = dataclasses.replace(unit, out=torch.empty(stored.shape, dtype=stored.dtype, device=stored.device))
    return handler(config, unit)


def _fill(layers, adapter, names, payload, residuals: _Residuals, out=None, owned=False):
    """Write a handler's result for the layers ``names`` into the model: factors into lora_A /
    lora_B (N folded into B for three factors) and a residual into the base weight through
    ``residuals`` (``out``: the destination the unit was given; ``owned``: the residual came from
    an executor task, a tensor nobody else holds); or singular triplets (a stack of them for a
    batched unit) split PiSSA's way, each residual written to its layer's destination."""
    if isinstance(payload, (LoRAInit, ThreeFactorInit)):
        if len(names) != 1:
            raise TypeError(f"a handler of a batched unit returned {type(payload).__name__}; it must return the "
                            "stacked singular triplets (U, S, Vh)")
        module, res = layers[names[0]], payload.residual
        if _is_quantized(res):
            _replace_base(module, res)
        elif res is not None:
            residuals.store(module, res, out, owned)
        B = payload.B @ payload.N if isinstance(payload, ThreeFactorInit) else payload.B
        _set_factors(module, adapter, payload.A, B)
        return
    if not (isinstance(payload, tuple) and len(payload) == 3):
        raise TypeError(f"an initializer handler returned {type(payload).__name__}; expected a LoRAInit, a "
                        "ThreeFactorInit or singular triplets (U, S, Vh)")
    for name, (U, S, Vh) in zip(names, [payload] if len(names) == 1 else zip(*payload)):
        _, Wt, fifo, _, s = _geometry(layers[name], adapter)
        dest = out if out is not None else residuals.destination(layers[name])
        done = _init._from_svd(Wt, U, S, Vh, s, Boundary("torch"), fifo, dest)
        residuals.store(layers[name], done.residual, dest)
        _set_factors(layers[name], adapter, done.A, done.B)


def _is_quantized(t) -> bool:
    return isinstance(t, QuantizedTensor)


def _replace_base(module, Q) -> None:
    """Swap the LoRA layer's innermost base layer for a :class:`QuantBase` holding Q (the base's
    bias copied); the float weight is dropped."""
    holder = module
    while hasattr(holder.base_layer, "base_layer"):
        holder = holder.base_layer
    old = holder.base_layer
    holder.base_layer = QuantBase(Q, getattr(old, "bias", None))
    holder.base_layer.train(old.training)


class _InputGrad(torch.autograd.Function):
    """y = x Qᵀ + b with the input's gradient g Q (matrix-free: rows of Q dequantized a block at a
    time); Q and b are frozen."""

    @staticmethod
    def forward(ctx, x, layer):
        ctx.layer = layer
        return QuantLinear.forward(layer, x)

    @staticmethod
    def backward(ctx, g):
        layer = ctx.layer
        g2 = g.reshape(-1, layer.out_features).to(torch.float64 if g.dtype == torch.float64 else torch.float32)
        gx = layer.quantized.rmatmul(g2.T).T
        return gx.to(g.dtype).reshape(*g.shape[:-1], layer.in_features), None


class QuantBase(QuantLinear):
    """The frozen quantized base layer :func:`init_peft_model` puts under each LoRA layer (LoftQ,
    QPiSSA): a :class:`~linalg_core.quant.QuantLinear` (same storage, ``state_dict`` and forward)
    through which gradients reach the input, so that the LoRA layers before it train; Q and the
    bias get none.

    Shape:
        x: (…, in_features);  result: (…, out_features)

    Example:
        >>> import torch, peft, linalg_core as lc
        >>> model = peft.get_peft_model(torch.nn.Sequential(torch.nn.Linear(64, 64)),
        ...                             peft.LoraConfig(r=4, target_modules=["0"]))
        >>> _ = lc.adapters.init_peft_model(model, lc.adapters.LoftQConfig(format="nf4", iters=1, seed=0))
        >>> base = model.base_model.model[0].base_layer
        >>> type(base).__name__, str(base.quantized.format)
        ('QuantBase', 'nf4-b64-s8x256-fp32')
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x Wᵀ + b as :class:`~linalg_core.quant.QuantLinear`, with the input's gradient kept.

        Args:
            x: float activations.

        Returns:
            The output in x's dtype.

        Shape:
            x: (…, in_features);  result: (…, out_features)
        """
        if torch.is_grad_enabled() and isinstance(x, torch.Tensor) and x.requires_grad:
            return _InputGrad.apply(x, self)
        return super().forward(x)


# --- the built-in methods: one handler each ------------------------------------------------------


@register_initializer(PiSSAConfig, batch=True)
def _pissa(config: PiSSAConfig, unit: LayerUnit):
    """The top-r triplets of W (a stack for a group); the principal split happens in _fill. A
    single layer's fresh residual destination (a weight mapped from its file, an executor task)
    lends its memory to rsvd's bfloat16 copy of W: the copy is dead before _fill writes the
    residual there, so those pages are faulted in once, not twice."""
    out = unit.out
    fresh = out is not None and out.is_contiguous() and (
        out.untyped_storage().data_ptr() != unit.weight.untyped_storage().data_ptr())
    with lend("bf16", out) if fresh else contextlib.nullcontext():
        return _init._pissa_triplets(unit.W, unit.rank, config.niter, config.seed)


@register_initializer(OLoRAConfig)
def _olora(config: OLoRAConfig, unit: LayerUnit):
    return _init.olora(unit.weight, unit.rank, lora_alpha=unit.lora_alpha, fan_in_fan_out=unit.fan_in_fan_out,
                       out=unit.out)


@register_initializer(MiLoRAConfig)
def _milora(config: MiLoRAConfig, unit: LayerUnit):
    return _init.milora(unit.weight, unit.rank, lora_alpha=unit.lora_alpha, fan_in_fan_out=unit.fan_in_fan_out,
                        out=unit.out)


@register_initializer(NLoRAConfig)
def _nlora(config: NLoRAConfig, unit: LayerUnit):
    return _init.nlora(unit.weight, unit.rank, mode=config.mode, lora_alpha=unit.lora_alpha,
                       fan_in_fan_out=unit.fan_in_fan_out, niter=config.niter, seed=config.seed, out=unit.out)


@register_initializer(LoLDUConfig)
def _loldu(config: LoLDUConfig, unit: LayerUnit):
    return _init.loldu(unit.weight, unit.rank, lora_alpha=unit.lora_alpha, fan_in_fan_out=unit.fan_in_fan_out,
                       out=unit.out)


@register_initializer(LoRASBConfig)
def _lora_sb(config: LoRASBConfig, unit: LayerUnit):
    """The truncated SVD of the layer's estimated update; the base weight is unchanged."""
    return _init.lora_sb(torch.as_tensor(config.updates[unit.name]), unit.rank, lora_alpha=unit.lora_alpha,
                         fan_in_fan_out=unit.fan_in_fan_out, niter=config.niter, seed=config.seed)


@register_initializer(LoftQConfig)
def _loftq(config: LoftQConfig, unit: LayerUnit):
    """LoftQ of the (out, in) weight; the QuantizedTensor residual replaces the base layer in _fill."""
    from linalg_core.adapters.quantized import loftq

    return loftq(unit.W, unit.rank, format=config.format, iters=config.iters, lora_alpha=unit.lora_alpha,
                 niter=config.niter, seed=config.seed)


@register_initializer(QPiSSAConfig)
def _qpissa(config: QPiSSAConfig, unit: LayerUnit):
    """PiSSA of the quantized (out, in) weight; the re-quantized residual replaces the base layer in _fill."""
    from linalg_core.quant import quantize

    return _init.pissa(quantize(unit.W, config.format), unit.rank, lora_alpha=unit.lora_alpha, niter=config.niter,
                       seed=config.seed)


@register_initializer(EVAConfig, scope="model")
def _eva(config: EVAConfig, run: ModelRun):
    """Feed the batches through the model (adapters disabled) with a hook on every LoRA layer,
    then load each layer's components at its redistributed rank."""
    model, adapter, layers = run.model, run.adapter, run.layers
    eva = EVA({n: m.r[adapter] for n, m in layers.items()}, rho=config.rho, tau=config.tau, whiten=config.whiten,
              center=config.center, seed=config.seed)
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
    bar = _progress(config.max_batches, run.progress, "linalg_core eva")
    seen = 0
    modes = {m: m.training for m in model.modules()}
    model.eval()
    try:
        ctx = model.disable_adapter() if hasattr(model, "disable_adapter") else contextlib.nullcontext()
        with ctx:
            for batch in config.batches:
                current["mask"] = batch.get("attention_mask") if isinstance(batch, Mapping) else None
                if config.forward is not None:
                    config.forward(model, batch)
                elif isinstance(batch, Mapping):  # a dict or a tokenizer's BatchEncoding
                    model(**batch)
                else:
                    model(batch)
                seen += 1
                if bar is not None:
                    bar.update(1)
                if eva.done or (config.max_batches is not None and seen >= config.max_batches):
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
    run.removed.extend(_load_eva(model, adapter, layers, components, config.adjust_scaling_factors))
    return {n: A.shape[0] for n, A in components.items() if A.shape[0] > 0}


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


def dequantize_bases(model, dtype: torch.dtype = torch.float32) -> list[str]:
    """Replace every :class:`QuantBase` (left by LoftQ / QPiSSA) by an ``nn.Linear`` holding its
    dequantized weight, in place, e.g. before peft's ``merge_and_unload()`` (which needs a float
    base weight). The function of the model is unchanged.

    Args:
        model: a peft model initialised by :func:`init_peft_model` with LoftQ or QPiSSA.
        dtype: the float dtype of the new weights and biases.

    Returns:
        The module names of the layers whose base was replaced.

    Shape:
        each new weight: (out_features, in_features)

    Example:
        >>> import torch, peft, linalg_core as lc
        >>> model = peft.get_peft_model(torch.nn.Sequential(torch.nn.Linear(64, 64)),
        ...                             peft.LoraConfig(r=4, target_modules=["0"]))
        >>> _ = lc.adapters.init_peft_model(model, lc.adapters.LoftQConfig(format="nf4", iters=1, seed=0))
        >>> x = torch.ones(1, 64)
        >>> y = model(x)
        >>> lc.adapters.dequantize_bases(model), type(model.base_model.model[0].base_layer).__name__
        (['base_model.model.0'], 'Linear')
        >>> torch.allclose(model(x), y, atol=1e-5)
        True
    """
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"dtype must be a floating torch.dtype, got {dtype!r}")
    done = []
    for name, module in list(model.named_modules()):
        base = getattr(module, "base_layer", None)
        if not isinstance(base, QuantBase):
            continue
        Q = base.quantized
        lin = torch.nn.Linear(base.in_features, base.out_features, bias=base.bias is not None, dtype=dtype,
                              device=Q.device)
        lin.weight.requires_grad_(False)
        lin.weight.copy_(Q.dequantize(dtype))
        if base.bias is not None:
            lin.bias.requires_grad_(False)
            lin.bias.copy_(base.bias)
        lin.train(base.training)
        module.base_layer = lin
        done.append(name)
    return done


def adapter_state(model, adapter_name: str | None = None) -> dict[str, torch.Tensor]:
    """A copy of the adapter's factors right after initialisation: {module name: (A, B)} (keep
    it to convert the trained adapter with :func:`save_as_lora`).

    Args:
        model: a peft model.
        adapter_name: the adapter (default: the active one).

    Returns:
        ``{module name: (A, B)}``, cloned tensors.

    Shape:
        A: (r, in);  B: (out, r) per layer

    Example:
        >>> import torch, peft, linalg_core as lc
        >>> model = peft.get_peft_model(torch.nn.Sequential(torch.nn.Linear(16, 8)),
        ...                             peft.LoraConfig(r=2, target_modules=["0"]))
        >>> {k: [tuple(t.shape) for t in AB] for k, AB in lc.adapters.adapter_state(model).items()}
        {'base_model.model.0': [(2, 16), (8, 2)]}
    """
    adapter, layers = _lora_layers(model, adapter_name)
    return {name: (m.lora_A[adapter].weight.detach().clone(), m.lora_B[adapter].weight.detach().clone())
            for name, m in layers.items()}


def delta_as_lora(A, B, A0, B0):
    """The rank-2r plain LoRA of a trained PiSSA-style adapter: s·(BA − B₀A₀) = s·B′A′ with
    A′ = [A; A₀] (2r × in) and B′ = [B, −B₀] (out × 2r), peft's conversion convention
    (``LoraModel.subtract_mutated_init``). Applied to the *original* base weight W (not the
    residual), with alpha doubled (×√2 for rsLoRA) so the scaling s is unchanged.

    Args:
        A, B: the trained factors.
        A0, B0: the factors at initialisation (:func:`adapter_state`).

    Returns:
        ``(A′, B′)``.

    Shape:
        A, A0: (r, in);  B, B0: (out, r);  A′: (2r, in);  B′: (out, 2r)

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
        >>> import copy, tempfile, torch, peft, linalg_core as lc
        >>> base = torch.nn.Sequential(torch.nn.Linear(16, 16))
        >>> original = copy.deepcopy(base)
        >>> model = peft.get_peft_model(base, peft.LoraConfig(r=2, target_modules=["0"]))
        >>> _ = lc.adapters.init_peft_model(model, "pissa", seed=0)
        >>> initial = lc.adapters.adapter_state(model)
        >>> with torch.no_grad():  # stands for training
        ...     _ = model.base_model.model[0].lora_B["default"].weight.add_(0.1)
        >>> x = torch.randn(3, 16, generator=torch.Generator().manual_seed(0))
        >>> with tempfile.TemporaryDirectory() as d:
        ...     _ = lc.adapters.save_as_lora(model, initial, d)
        ...     loaded = peft.PeftModel.from_pretrained(original, d)
        >>> torch.allclose(loaded(x), model(x), atol=1e-5)
        True
    """
    peft, _ = _peft()
    from peft.utils import get_peft_model_state_dict

    adapter, layers = _lora_layers(model, adapter_name, quantized="a LoRA on the original weights would not "
                                   "reproduce a model whose base was quantized (LoftQ / QPiSSA); save the adapter "
                                   "with the quantized base (model.save_pretrained) instead")
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


# the built-in methods' names (the string shortcuts), in the order their handlers are registered above
METHODS = methods()

__all__ = ["METHODS", "ModelInit", "QuantBase", "dequantize_bases",
           "init_peft_model", "adapter_state", "delta_as_lora", "save_as_lora"]
