"""Configuration objects of :func:`~linalg_core.adapters.init_peft_model` and the registry of the
handlers that run them (torchao's ``quantize_(model, Config)`` as the model).

A config is a frozen dataclass holding exactly one initialiser's options, validated on
construction (``TypeError`` / ``ValueError`` naming the field and its value).
``init_peft_model(model, PiSSAConfig(niter=2, seed=0))`` runs the handler registered for the
config's type; the string form ``init_peft_model(model, "pissa", seed=0)`` is a shortcut that
builds the config from the method's name (:attr:`InitConfig.method`).

A new method is one config class and one handler::

    @dataclass(frozen=True, kw_only=True)
    class MyConfig(InitConfig):
        method = "mine"              # the string shortcut's name (optional)
        niter: int = 2

    @register_initializer(MyConfig)
    def _mine(config, unit):         # one LoRA layer (a LayerUnit)
        return lc.adapters.olora(unit.weight, unit.rank, lora_alpha=unit.lora_alpha,
                                 fan_in_fan_out=unit.fan_in_fan_out, out=unit.out)

Handlers come in two scopes:

* ``scope="layer"`` (the default): ``handler(config, unit)`` for each LoRA layer, with a
  :class:`LayerUnit`; it returns a :class:`~linalg_core.adapters.LoRAInit` or
  :class:`~linalg_core.adapters.ThreeFactorInit` (A goes to ``lora_A``, B — B·N for three
  factors, peft's layer having no slot for N — to ``lora_B``, a residual into the base weight
  unless the handler wrote it there through ``unit.out``), or the top-``rank`` singular
  triplets ``(U, S, Vh)`` of ``unit.W``, which PiSSA's principal split turns into A, B and the
  residual. With ``batch=True`` equal-shape layers come as one unit whose ``W`` is their stack
  (the handler returns stacked triplets or factors). Such a handler may run as a task on
  ``init_peft_model``'s ``executor``: it must then be a module-level function and the config
  must pickle (:meth:`InitConfig.for_layers` trims per-layer data first).
* ``scope="model"``: ``handler(config, run)`` once, with a :class:`ModelRun` (EVA, whose work is
  the model's forward passes); it returns ``{layer name: rank}`` of the layers it filled and
  records layers it removed in ``run.removed``. It takes no executor.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping
from dataclasses import KW_ONLY, dataclass, field
from typing import Any, ClassVar

import torch

from linalg_core import _validate
from linalg_core._handlers import Handlers

# --- validation of the fields -------------------------------------------------------------------


def _name(obj, name: str) -> str:
    return f"{type(obj).__name__}.{name}"


def _set(obj, name: str, value) -> None:
    object.__setattr__(obj, name, value)


def _check_seed(obj, name: str = "seed") -> None:
    """None (fresh entropy, drawn once per run and recorded), a torch.Generator (one draw per
    run) or an int in [0, 2^64)."""
    v = getattr(obj, name)
    if v is None or isinstance(v, torch.Generator):
        return
    _set(obj, name, _validate.integer(v, _name(obj, name), low=0, high=_validate.SEED_LIMIT - 1))


def _check_niter(obj, name: str = "niter", *, auto: bool) -> None:
    v = getattr(obj, name)
    if auto and isinstance(v, str):
        if v != "auto":
            raise ValueError(f"{_name(obj, name)}={v!r} must be 'auto' or an integer >= 0")
        return
    _set(obj, name, _validate.integer(v, _name(obj, name), low=0))


def _check_flag(obj, name: str) -> None:
    _set(obj, name, _validate.flag(getattr(obj, name), _name(obj, name)))


def _summary(value) -> str:
    """A short description of a data field (batches, updates) for repr."""
    if isinstance(value, Mapping):
        return f"<{type(value).__name__} of {len(value)} entries>"
    if isinstance(value, (list, tuple)):
        return f"<{type(value).__name__} of {len(value)} items>"
    return f"<{type(value).__name__}>"


def _repr_with_data(self) -> str:
    """The dataclass repr with the data fields (metadata ``data=True``) summarised."""
    parts = []
    for f in dataclasses.fields(self):
        if not f.repr:
            continue
        v = getattr(self, f.name)
        parts.append(f"{f.name}={_summary(v) if f.metadata.get('data') else repr(v)}")
    return f"{type(self).__name__}({', '.join(parts)})"


def _data(**kw):
    """A data field (batches, updates): summarised in repr, ignored by == and hash."""
    return field(compare=False, metadata={"data": True}, **kw)


# --- the configs ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class InitConfig:
    """Base of the whole-model initialiser configs.

    Subclasses are frozen dataclasses validated in ``__post_init__`` and registered with a
    handler through :func:`register_initializer`. ``method`` (a class attribute) is the name of
    the string shortcut (``init_peft_model(model, "pissa")``); empty for configs that have none.

    Example:
        >>> import linalg_core as lc
        >>> cfg = lc.adapters.PiSSAConfig(seed=0)
        >>> isinstance(cfg, lc.adapters.InitConfig), cfg.method, cfg.for_layers(("q", "v")) is cfg
        (True, 'pissa', True)
    """

    method: ClassVar[str] = ""

    def check_layers(self, shapes: Mapping[str, tuple[int, ...]]) -> None:
        """Checks the config against the model before any layer is changed.

        Args:
            shapes: {layer name: stored base weight shape} of the LoRA layers to fill.

        Raises:
            ValueError: the config does not fit these layers (default: never).
        """

    def check_ranks(self, layers: Mapping[str, tuple[tuple[int, int], int]]) -> None:
        """Checks each layer's rank against its weight before any layer is changed.

        Args:
            layers: {layer name: ((out, in), rank)} of the LoRA layers to fill.

        Raises:
            ValueError: a rank the method cannot take for that shape (default: never).
        """

    def for_layers(self, names: tuple[str, ...]) -> InitConfig:
        """The config an executor task for the layers ``names`` needs: ``self``, or for configs
        holding per-layer data (LoRA-SB's updates) a copy with only those layers' entries.

        Args:
            names: the module names of the layers the task fills.

        Returns:
            An :class:`InitConfig` of the same type.
        """
        return self


@dataclass(frozen=True, kw_only=True)
class PiSSAConfig(InitConfig):
    """PiSSA (Meng, Wang and Zhang 2024): the adapter takes each weight's principal singular
    triplets, the base keeps the residual (:func:`linalg_core.adapters.pissa`). Equal-shape
    layers share one batched randomized SVD.

    Args:
        niter: rsvd iterations, ``"auto"`` (PiSSA's default of :func:`~linalg_core.adapters.pissa`)
            or an integer >= 0.
        seed: one seed for every layer: an int in [0, 2^64), a ``torch.Generator`` (one draw per
            run) or None (fresh entropy, recorded in ``ModelInit.config``).

    Randomness:
        Each layer's randomized SVD (batched groups share one call) draws from ``seed``; the
        resolved int is recorded in ``ModelInit.config``, so the run can be repeated.

    Example:
        >>> import linalg_core as lc
        >>> lc.adapters.PiSSAConfig(niter=2, seed=0)
        PiSSAConfig(niter=2, seed=0)
    """

    method = "pissa"
    niter: int | str = "auto"
    seed: int | torch.Generator | None = None

    def __post_init__(self):
        _check_niter(self, auto=True)
        _check_seed(self)


@dataclass(frozen=True, kw_only=True)
class OLoRAConfig(InitConfig):
    """OLoRA (Büyükakyüz 2024): B and A from the QR decomposition of each weight's first r
    columns, the base keeps the residual (:func:`linalg_core.adapters.olora`). Deterministic;
    no options.

    Example:
        >>> import linalg_core as lc
        >>> lc.adapters.OLoRAConfig(), lc.adapters.OLoRAConfig().method
        (OLoRAConfig(), 'olora')
    """

    method = "olora"


@dataclass(frozen=True, kw_only=True)
class MiLoRAConfig(InitConfig):
    """MiLoRA (Wang et al. 2024): the adapter takes each weight's r *smallest* singular triplets
    (:func:`linalg_core.adapters.milora`). Deterministic; no options.

    Example:
        >>> import linalg_core as lc
        >>> lc.adapters.MiLoRAConfig().method
        'milora'
    """

    method = "milora"


@dataclass(frozen=True, kw_only=True)
class NLoRAConfig(InitConfig):
    """NLoRA: a three-factor adapter B·N·A loaded with N folded into B
    (:func:`linalg_core.adapters.nlora`).

    Args:
        mode: ``"nystrom"`` (the randomized generalized Nyström approximation; the base keeps
            the residual, so the function is unchanged at init) or ``"paper"`` (the published
            initialisation from W's first rows and columns; the base is unchanged and the
            function changes at init).
        niter: Nyström power iterations (an integer >= 0).
        seed: one seed for every layer (see :class:`PiSSAConfig`).

    Randomness:
        ``"nystrom"``: the Nyström test matrices of every layer draw from ``seed`` (recorded in
        ``ModelInit.config``); ``"paper"`` uses none.

    Example:
        >>> import linalg_core as lc
        >>> lc.adapters.NLoRAConfig(mode="paper")
        NLoRAConfig(mode='paper', niter=2, seed=None)
    """

    method = "nlora"
    mode: str = "nystrom"
    niter: int = 2
    seed: int | torch.Generator | None = None

    def __post_init__(self):
        _validate.choice(self.mode, _name(self, "mode"), ("nystrom", "paper"))
        _check_niter(self, auto=False)
        _check_seed(self)


@dataclass(frozen=True, kw_only=True)
class LoLDUConfig(InitConfig):
    """LoLDU (Shi et al. 2024): from the LDU decomposition of each weight's first r columns,
    loaded with diag(z) folded into B (:func:`linalg_core.adapters.loldu`). Deterministic; no
    options.

    Example:
        >>> import linalg_core as lc
        >>> lc.adapters.LoLDUConfig().method
        'loldu'
    """

    method = "loldu"


@dataclass(frozen=True)
class LoRASBConfig(InitConfig):
    """LoRA-SB (Ponkshe et al. 2024): the adapter is the truncated SVD of an estimate of each
    layer's first full fine-tuning update; the base is unchanged
    (:func:`linalg_core.adapters.lora_sb`, :func:`~linalg_core.adapters.lora_sb_update`).

    Args:
        updates: {module name: estimated update ΔW} with one 2-D entry of the stored base
            weight's shape per LoRA layer (checked against the model before any layer changes).
            The mapping is copied (not its arrays); == and hash ignore it.
        niter: rsvd iterations, ``"auto"`` or an integer >= 0.
        seed: one seed for every layer (see :class:`PiSSAConfig`).

    Randomness:
        Each layer's randomized SVD of its update draws from ``seed`` (recorded in
        ``ModelInit.config``).

    Example:
        >>> import torch, linalg_core as lc
        >>> cfg = lc.adapters.LoRASBConfig({"0": torch.zeros(8, 4), "2": torch.zeros(4, 8)}, seed=0)
        >>> sorted(cfg.for_layers(("2",)).updates), cfg.method
        (['2'], 'lora_sb')
    """

    method = "lora_sb"
    updates: Mapping[str, Any] = _data()
    _: KW_ONLY
    niter: int | str = "auto"
    seed: int | torch.Generator | None = None

    __repr__ = _repr_with_data

    def __post_init__(self):
        u = self.updates
        if u is None:
            raise ValueError(f"{_name(self, 'updates')}=None: LoRA-SB needs updates={{module name: estimated "
                             "update ΔW}}")
        if not isinstance(u, Mapping):
            raise TypeError(f"{_name(self, 'updates')} must be a mapping {{module name: ΔW}}, got {type(u).__name__}")
        for k, v in u.items():
            if not isinstance(k, str):
                raise TypeError(f"{_name(self, 'updates')} keys must be module names (str), got {k!r}")
            shape = getattr(v, "shape", None)
            if shape is None or len(shape) != 2:
                raise TypeError(f"{_name(self, 'updates')}[{k!r}] must be a 2-D array, got "
                                f"{type(v).__name__}{'' if shape is None else ' of shape ' + str(tuple(shape))}")
        _set(self, "updates", dict(u))
        _check_niter(self, auto=True)
        _check_seed(self)

    def check_layers(self, shapes):
        missing = sorted(set(shapes) - set(self.updates))
        if missing:
            raise ValueError(f"updates has no entry for layers {missing[:5]}")
        for name, shape in shapes.items():
            got = tuple(self.updates[name].shape)
            if got != tuple(shape):
                raise ValueError(f"updates[{name!r}] has shape {got}, the layer's stored weight {tuple(shape)}")

    def for_layers(self, names):
        return dataclasses.replace(self, updates={n: self.updates[n] for n in names})


@dataclass(frozen=True)
class EVAConfig(InitConfig):
    """EVA (Paischer et al. 2024): each layer's A from the top right singular vectors of its
    inputs over activation batches, B = 0, ranks redistributed across layers by explained
    variance (:class:`linalg_core.adapters.EVA`).

    Args:
        batches: an iterable of model inputs (dicts are passed as ``model(**batch)``; an
            ``attention_mask`` entry selects the tokens whose activations count). A generator
            is consumed by the run that uses it. == and hash ignore it.
        forward: ``forward(model, batch)`` instead of the default call, or None.
        rho: each layer may end with up to round(ρ·r) components (a number >= 1).
        tau: cosine threshold of convergence, in [0, 1].
        whiten: divide each component by √(its singular value), as peft's ``whiten``.
        center: PCA of the inputs (True) or SVD of the raw inputs.
        max_batches: stop after this many batches (an integer >= 1) or None (until converged
            or the batches run out).
        adjust_scaling_factors: rescale alpha with each layer's new rank, like peft.
        seed: seed of the randomized SVDs (see :class:`PiSSAConfig`).

    Randomness:
        The randomized SVDs of large activation batches draw from ``seed`` (recorded in
        ``ModelInit.config``); the batches themselves are the caller's.

    Example:
        >>> import linalg_core as lc
        >>> lc.adapters.EVAConfig([{"input_ids": None}] * 4, rho=2, tau=0.9, seed=0)
        EVAConfig(batches=<list of 4 items>, forward=None, rho=2.0, tau=0.9, whiten=False, center=True,
                  max_batches=None, adjust_scaling_factors=True, seed=0)
    """

    method = "eva"
    batches: Iterable = _data()
    _: KW_ONLY
    forward: Callable | None = None
    rho: float = 2.0
    tau: float = 0.99
    whiten: bool = False
    center: bool = True
    max_batches: int | None = None
    adjust_scaling_factors: bool = True
    seed: int | torch.Generator | None = None

    __repr__ = _repr_with_data

    def __post_init__(self):
        if self.batches is None:
            raise ValueError(f"{_name(self, 'batches')}=None: EVA needs batches= (an iterable of model inputs)")
        if not isinstance(self.batches, Iterable) or isinstance(self.batches, (str, bytes)):
            raise TypeError(f"{_name(self, 'batches')} must be an iterable of model inputs, got "
                            f"{type(self.batches).__name__}")
        if self.forward is not None and not callable(self.forward):
            raise TypeError(f"{_name(self, 'forward')} must be a callable forward(model, batch) or None, got "
                            f"{type(self.forward).__name__}")
        _set(self, "rho", _validate.real(self.rho, _name(self, "rho"), low=1))
        _set(self, "tau", _validate.real(self.tau, _name(self, "tau"), low=0, high=1))
        for name in ("whiten", "center", "adjust_scaling_factors"):
            _check_flag(self, name)
        if self.max_batches is not None:
            _set(self, "max_batches", _validate.integer(self.max_batches, _name(self, "max_batches"), low=1))
        _check_seed(self)


def _check_format(obj) -> None:
    """A :class:`~linalg_core.quant.formats.Format` or one of its short names (kept as given)."""
    from linalg_core.quant.formats import Format, parse

    v = obj.format
    if not isinstance(v, (str, Format)):
        raise TypeError(f"{_name(obj, 'format')} must be a quantization Format or its name ('bnb-nf4', 'nf4', "
                        f"'int4', 'q4_0', ...), got {type(v).__name__}")
    try:
        parse(v)
    except ValueError as e:
        raise ValueError(f"{_name(obj, 'format')}={v!r}: {e}") from None


def _check_rank_bound(obj, layers, *, strict: bool) -> None:
    for name, ((m, n), r) in layers.items():
        if r > min(m, n) or (strict and r == min(m, n)):
            bound = "below" if strict else "at most"
            raise ValueError(f"layer {name!r}: rank={r} must be {bound} min(out, in)={min(m, n)} for its weight of "
                             f"shape {(m, n)} ({type(obj).__name__}); no layer was changed")


@dataclass(frozen=True, kw_only=True)
class LoftQConfig(InitConfig):
    """LoftQ (Li et al. 2024) on every LoRA layer: the base layer becomes a quantized layer
    holding Q = quantize(W − s·BA), the adapter the rank-r part of W − Q, alternated ``iters``
    times (:func:`linalg_core.adapters.loftq`, the same A, B and Q per layer for the same seed).

    Args:
        format: the base's quantization format: a :class:`~linalg_core.quant.formats.Format` or
            its name (default ``"bnb-nf4"``, bitsandbytes-exact NF4 as peft's LoftQ).
        iters: LoftQ alternations T (an integer >= 1; peft's ``loftq_iter``).
        niter: rsvd iterations of each alternation's rank-r step (an integer >= 0), or
            ``"exact"``. The residual W − Q of a quantized weight has a flat spectrum, so a few
            iterations give a rank-r term about as accurate as the full SVD's but not the same
            subspace. ``"exact"`` is peft's LoftQ step for step (``loftq_init`` in
            peft/utils/loftq_utils.py): the full SVD of each residual, exactly ``iters``
            alternations, the last kept; with ``format=BnbNF4(double_quant=False)`` (as peft
            quantizes) and ``lora_alpha = r`` the layers get peft's Q, A and B to rounding.
        seed: one seed for every layer (see :class:`PiSSAConfig`).

    Randomness:
        The randomized SVDs of the LoftQ alternation draw from ``seed`` (recorded in
        ``ModelInit.config``); none with ``niter="exact"``.

    Example:
        >>> import linalg_core as lc
        >>> lc.adapters.LoftQConfig(format="nf3", iters=2, seed=0)
        LoftQConfig(format='nf3', iters=2, niter=2, seed=0)
    """

    method = "loftq"
    format: Any = "bnb-nf4"
    iters: int = 1
    niter: int | str = 2
    seed: int | torch.Generator | None = None

    def __post_init__(self):
        _check_format(self)
        _set(self, "iters", _validate.integer(self.iters, _name(self, "iters"), low=1))
        if isinstance(self.niter, str):
            _validate.choice(self.niter, _name(self, "niter"), ("exact",))
        else:
            _check_niter(self, auto=False)
        _check_seed(self)

    def check_ranks(self, layers):
        _check_rank_bound(self, layers, strict=True)


@dataclass(frozen=True, kw_only=True)
class QPiSSAConfig(InitConfig):
    """QPiSSA (PiSSA on a quantized base) on every LoRA layer: W is quantized, the adapter takes
    the principal singular triplets of the quantized Q (matrix-free products) and the base layer
    becomes a quantized layer holding Q − s·BA re-quantized in the same format
    (:func:`linalg_core.adapters.pissa` of a :class:`~linalg_core.quant.QuantizedTensor`).

    Args:
        format: the base's quantization format (see :class:`LoftQConfig`).
        niter: rsvd iterations, ``"auto"`` (PiSSA's default) or an integer >= 0.
        seed: one seed for every layer (see :class:`PiSSAConfig`).

    Randomness:
        Each layer's randomized SVD of the quantized weight draws from ``seed`` (recorded in
        ``ModelInit.config``).

    Example:
        >>> import linalg_core as lc
        >>> lc.adapters.QPiSSAConfig(format="nf4", seed=0)
        QPiSSAConfig(format='nf4', niter='auto', seed=0)
    """

    method = "qpissa"
    format: Any = "bnb-nf4"
    niter: int | str = "auto"
    seed: int | torch.Generator | None = None

    def __post_init__(self):
        _check_format(self)
        _check_niter(self, auto=True)
        _check_seed(self)

    def check_ranks(self, layers):
        _check_rank_bound(self, layers, strict=False)


# --- the registry --------------------------------------------------------------------------------


@dataclass(frozen=True)
class LayerUnit:
    """What a ``scope="layer"`` handler gets: one LoRA layer, or with ``batch=True`` a group of
    equal-shape layers.

    Attributes:
        names: the layers' module names (one unless batched).
        W: the weight as (out, in) — a transposed view of the stored weight with
            ``fan_in_fan_out`` —, or the (g, out, in) stack of a batched group.
        rank: r of every layer of the unit.
        scaling: peft's adapter scaling s of the layers.
        fan_in_fan_out: whether the stored weight is (in, out) (GPT-2's Conv1D).
        out: where the residual goes (the per-matrix initialisers' ``out=``): the stored base
            weight itself (in place, private memory), or a fresh tensor the weight is rebound to
            (memory-mapped, shared or read-only weights), in an executor task a new tensor of the
            stored layout (copied into the model when the task returns it), None for a batched
            group.

    Shape:
        W: (out, in) or (g, out, in)

    Example:
        >>> import torch, linalg_core as lc
        >>> unit = lc.adapters.LayerUnit(("fc",), torch.zeros(8, 4), rank=2, scaling=2.0, fan_in_fan_out=True)
        >>> unit.name, tuple(unit.weight.shape), unit.lora_alpha
        ('fc', (4, 8), 4.0)
    """

    names: tuple[str, ...]
    W: torch.Tensor
    rank: int
    scaling: float
    fan_in_fan_out: bool
    out: torch.Tensor | None = None

    @property
    def name(self) -> str:
        """The layer's name (a single-layer unit)."""
        return self.names[0]

    @property
    def weight(self) -> torch.Tensor:
        """The weight in its stored layout ((in, out) with ``fan_in_fan_out``), as the per-matrix
        initialisers take it with ``fan_in_fan_out=unit.fan_in_fan_out``."""
        return self.W.mT if self.fan_in_fan_out else self.W

    @property
    def lora_alpha(self) -> float:
        """The alpha that gives ``scaling`` with ``use_rslora=False`` (s·r)."""
        return self.scaling * self.rank


@dataclass
class ModelRun:
    """What a ``scope="model"`` handler gets.

    Attributes:
        model: the peft model.
        adapter: the adapter's name.
        layers: {module name: peft LoRA layer} of the layers to fill.
        progress: whether to show a progress bar.
        removed: the handler appends the layers it replaced by their base layer (rank 0).

    Example:
        >>> import torch, linalg_core as lc
        >>> run = lc.adapters.ModelRun(torch.nn.Linear(2, 2), "default", {}, progress=False)
        >>> run.adapter, run.removed
        ('default', [])
    """

    model: Any
    adapter: str
    layers: dict[str, Any]
    progress: bool
    removed: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Initializer:
    """A registered handler: ``handler(config, unit_or_run)`` for configs of ``config_type``.

    Attributes:
        config_type: the :class:`InitConfig` subclass it runs.
        handler: the function.
        scope: ``"layer"`` or ``"model"`` (see :func:`register_initializer`).
        batch: equal-shape layers come stacked as one unit.

    Example:
        >>> import linalg_core as lc
        >>> entry = lc.adapters.config.initializer_for(lc.adapters.PiSSAConfig(seed=0))
        >>> entry.config_type.__name__, entry.scope, entry.batch
        ('PiSSAConfig', 'layer', True)
    """

    config_type: type
    handler: Callable
    scope: str = "layer"
    batch: bool = False


_REGISTRY: Handlers[Initializer] = Handlers(
    InitConfig, "initializer", "an InitConfig (PiSSAConfig(...), EVAConfig(...), ...) or a method name",
    "register_initializer", handler_of=lambda entry: entry.handler)


def register_initializer(config_type: type, *, scope: str = "layer", batch: bool = False,
                         replace: bool = False) -> Callable:
    """A decorator registering ``handler`` as the way to run configs of ``config_type``.

    Args:
        config_type: a subclass of :class:`InitConfig`. Its ``method`` name, if any, becomes a
            string shortcut of :func:`~linalg_core.adapters.init_peft_model`.
        scope: ``"layer"`` (``handler(config, unit)`` per layer or batched group) or ``"model"``
            (``handler(config, run)`` once); see the module docstring.
        batch: ``scope="layer"`` only: equal-shape layers come stacked as one unit.
        replace: allow replacing a handler already registered for ``config_type``.

    Returns:
        The decorator (it returns the handler unchanged).

    Raises:
        TypeError: ``config_type`` is not an InitConfig subclass, or the handler is not callable.
        ValueError: bad ``scope`` / ``batch``; ``config_type`` already has a handler (without
            ``replace``); its ``method`` name belongs to another config type.

    Example:
        >>> @dataclasses.dataclass(frozen=True)                                 # doctest: +SKIP
        ... class ZerosConfig(lc.adapters.InitConfig):  # A = B = 0, base unchanged
        ...     method = "zeros"
        >>> @lc.adapters.register_initializer(ZerosConfig)                     # doctest: +SKIP
        ... def _zeros(config, unit):
        ...     (m, n), r = unit.W.shape, unit.rank
        ...     return lc.adapters.LoRAInit(torch.zeros(r, n), torch.zeros(m, r), None, unit.scaling)
        >>> lc.adapters.init_peft_model(model, "zeros").method                 # doctest: +SKIP
        'zeros'
    """
    _REGISTRY.check_type(config_type)
    _validate.choice(scope, "scope", ("layer", "model"))
    batch = _validate.flag(batch, "batch")
    if batch and scope != "layer":
        raise ValueError(f"batch=True needs scope='layer', got scope={scope!r}")
    name = config_type.method
    if not isinstance(name, str):
        raise TypeError(f"{config_type.__name__}.method must be a str, got {type(name).__name__}")
    other = next((t for t in _REGISTRY if t is not config_type and name and t.method == name), None)
    if other is not None:
        raise ValueError(f"method name {name!r} of {config_type.__name__} is already {other.__name__}'s")
    return _REGISTRY.decorator(config_type, lambda handler: Initializer(config_type, handler, scope, batch),
                               replace=replace)


def initializer_for(config) -> Initializer:
    """The :class:`Initializer` registered for ``config``'s type (or its nearest base).

    Raises:
        TypeError: ``config`` is not an InitConfig, or no handler is registered for it.
    """
    return _REGISTRY.lookup(config)


def methods() -> tuple[str, ...]:
    """The method names of the registered configs (the string shortcuts)."""
    return tuple(t.method for t in _REGISTRY if t.method)


def config_type(method: str) -> type:
    """The config class whose ``method`` name is ``method``.

    Raises:
        TypeError: ``method`` is not a str. ValueError: no registered config has that name.
    """
    names = {t.method: t for t in _REGISTRY if t.method}
    _validate.choice(method, "method", tuple(names))
    return names[method]


__all__ = ["InitConfig", "PiSSAConfig", "OLoRAConfig", "MiLoRAConfig", "NLoRAConfig", "LoLDUConfig", "LoRASBConfig",
           "EVAConfig", "LoftQConfig", "QPiSSAConfig", "LayerUnit", "ModelRun", "Initializer", "register_initializer",
           "initializer_for", "methods", "config_type"]
