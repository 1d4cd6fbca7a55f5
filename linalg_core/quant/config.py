"""Quantization configs: one kind of object for every way linalg_core quantizes a weight
(torchao's ``quantize_(model, Config)`` as the model).

* The block formats of :mod:`linalg_core.quant.formats` — :class:`~linalg_core.quant.NormalFloat`
  (NF2/3/4/8 with LQ-LoRA's quantized scales), :class:`~linalg_core.quant.BnbNF4`,
  :class:`~linalg_core.quant.IntGroup` (INT-k groups), :class:`~linalg_core.quant.GGUF`
  (Q4_0 / Q8_0) — are frozen, validated dataclasses already; they are registered here as
  :class:`QuantConfig` objects and give a :class:`~linalg_core.quant.QuantizedTensor`.
* :class:`DGQConfig`: DGQ's dual-grained INT4 → INT8 weights (:func:`linalg_core.qmatmul.dgq_quantize`,
  a :class:`~linalg_core.qmatmul.DGQWeight`) and its INT8 activations.
* :class:`LQConfig`: the low-rank plus quantized decomposition W ≈ Q + L1·L2
  (:func:`linalg_core.quant.lq_decompose`, an :class:`~linalg_core.quant.LQResult`).

A config is enough to quantize one weight: :func:`quantize_weight` (W, config) looks up the
handler registered for the config's type (its nearest registered base class) and calls it.
The handlers are the public entry points themselves, which take a config in place of their
options: ``quantize(W, NormalFloat(bits=4))``, ``lq_decompose(W, LQConfig(rank=16))``,
``dgq_quantize(W, DGQConfig(group_size=256))``. A new kind of quantization is one frozen
config class (a :class:`QuantConfig` subclass validated in ``__post_init__``) and one handler
registered with :func:`register_quantizer`. Whole-model quantization (replacing ``nn.Linear``
layers) dispatches on the same config types.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from dataclasses import KW_ONLY, dataclass

import torch

from linalg_core import _validate
from linalg_core._handlers import Handlers
from linalg_core.quant.formats import Format, parse
from linalg_core.quant.tensor import quantize


@dataclass(frozen=True)
class QuantConfig(abc.ABC):
    """Base of the quantization configs: frozen dataclasses validated on construction.

    The block formats (:class:`~linalg_core.quant.formats.Format` and its subclasses) are
    registered as virtual subclasses, so ``isinstance(NormalFloat(bits=4), QuantConfig)``.
    Whole-model entry points take them (torchao's ``quantize_(model, config)`` convention);
    :func:`register_quantizer` adds a config type of one's own.

    Example:
        >>> from linalg_core.quant import DGQConfig, LQConfig, NormalFloat, QuantConfig
        >>> all(isinstance(c, QuantConfig) for c in (NormalFloat(bits=4), LQConfig(8), DGQConfig()))
        True
    """


QuantConfig.register(Format)

_QUANTIZERS: Handlers[Callable] = Handlers(
    QuantConfig, "quantizer", "a QuantConfig (a format such as NormalFloat(bits=4), DGQConfig(...), LQConfig(...)) or "
    "a format name", "register_quantizer")


def register_quantizer(config_type: type, *, replace: bool = False) -> Callable:
    """A decorator registering ``handler(W, config, **kwargs)`` as the way to quantize one weight
    with configs of ``config_type``.

    Args:
        config_type: a :class:`QuantConfig` subclass (real or registered).
        replace: allow replacing a handler already registered for ``config_type``.

    Returns:
        The decorator (it returns the handler unchanged).

    Raises:
        TypeError: ``config_type`` is not a QuantConfig subclass, or the handler is not callable.
        ValueError: ``config_type`` already has a handler (without ``replace``).

    Example:
        >>> import torch
        >>> from dataclasses import KW_ONLY, dataclass
        >>> from linalg_core.quant import QuantConfig, quantize_weight, register_quantizer
        >>> @dataclass(frozen=True)
        ... class Rounding(QuantConfig):      # round to multiples of step, stored as float
        ...     step: float = 0.5
        >>> @register_quantizer(Rounding)
        ... def _round(W, config):
        ...     return torch.round(W / config.step) * config.step
        >>> quantize_weight(torch.tensor([0.2, 0.8]), Rounding())
        tensor([0., 1.])
    """
    return _QUANTIZERS.decorator(_QUANTIZERS.check_type(config_type), lambda handler: handler, replace=replace)


def quantizer_for(config) -> Callable:
    """The handler registered for ``config``'s type or its nearest registered base class.

    Raises:
        TypeError: ``config`` is not a QuantConfig, or no handler is registered for it.
    """
    return _QUANTIZERS.lookup(config)


def quantize_weight(W, config, **kwargs):
    """Quantize one weight W (out, in) as ``config`` says.

    Args:
        W: (out, in) float weight (an ``nn.Linear.weight``).
        config: a :class:`QuantConfig` — a block format (``NormalFloat(bits=4)``, ``BnbNF4()``,
            ``IntGroup(bits=4, group_size=128)``, ``GGUF("q4_0")``), :class:`DGQConfig`,
            :class:`LQConfig` or a registered one — or a block format's name (``"nf4"``,
            ``"bnb-nf4"``, ``"int4"``, ``"q4_0"``, ...).
        **kwargs: passed to the handler: ``backend=`` (block formats, LQ), ``calib=`` (DGQ),
            ``fisher=`` (LQ) — data and execution choices, not options.

    Returns:
        The handler's result: a :class:`~linalg_core.quant.QuantizedTensor` (block formats),
        :class:`~linalg_core.qmatmul.DGQWeight` (DGQ), :class:`~linalg_core.quant.LQResult` (LQ).

    Shape:
        W: (out, in)

    Example:
        >>> import torch
        >>> from linalg_core.quant import LQConfig, quantize_weight
        >>> W = torch.randn(64, 128, generator=torch.Generator().manual_seed(0))
        >>> quantize_weight(W, "nf4").shape
        (64, 128)
        >>> quantize_weight(W, LQConfig(rank=4, format="nf3", seed=0)).L1.shape
        torch.Size([64, 4])
    """
    if isinstance(config, str):
        config = parse(config)
    return quantizer_for(config)(W, config, **kwargs)


register_quantizer(Format)(quantize)


def _seed(obj) -> None:
    v = obj.seed
    if v is not None and not isinstance(v, torch.Generator):
        object.__setattr__(obj, "seed", _validate.integer(v, f"{type(obj).__name__}.seed", low=0,
                                                          high=_validate.SEED_LIMIT - 1))


@dataclass(frozen=True)
class LQConfig(QuantConfig):
    """LQ-LoRA's low-rank plus quantized decomposition W ≈ Q + L1·L2 (``init="quant"``: LoftQ),
    the options of :func:`linalg_core.quant.lq_decompose`.

    Args:
        rank: r of L1·L2, an integer >= 1 (below min(m, n) of the weights it meets).
        format: the format of Q: a block-format config or its name (``"nf3"``, ``"nf4"``, ...);
            stored as the format object.
        iters: at most this many alternations (>= 1).
        tol: stop when an iteration improves the error by less than this fraction (>= 0); None:
            run all ``iters`` alternations and keep the last iterate (peft's LoftQ).
        init: ``"lowrank"`` (Q = 0 first, LQ-LoRA) or ``"quant"`` (Q = quantize(W) first, LoftQ).
        niter: power iterations of each randomized SVD (>= 0), or ``"exact"`` (full SVD).
        seed: seed of the randomized SVDs: an int in [0, 2^64), a ``torch.Generator`` or None.

    Randomness:
        Only the randomized SVDs of the alternation (``seed``, the same each iteration); none with
        ``niter="exact"``.

    Example:
        >>> from linalg_core.quant import LQConfig
        >>> LQConfig(16, "nf3", iters=5)
        LQConfig(rank=16, format=NormalFloat(bits=3, block_size=64, scale_bits=8, scale_block_size=256,
                 scale_dtype='fp32'), iters=5, tol=0.001, init='lowrank', niter=2, seed=None)
    """

    rank: int
    format: Format | str = "nf3"
    _: KW_ONLY
    iters: int = 10
    tol: float | None = 1e-3
    init: str = "lowrank"
    niter: int | str = 2
    seed: int | torch.Generator | None = None

    def __post_init__(self):
        name = type(self).__name__
        object.__setattr__(self, "rank", _validate.integer(self.rank, f"{name}.rank", low=1))
        if not isinstance(self.format, (str, Format)):
            raise TypeError(f"{name}.format must be a block format (NormalFloat(...), BnbNF4(...), IntGroup(...), "
                            f"GGUF(...)) or its name, got {type(self.format).__name__}")
        try:
            object.__setattr__(self, "format", parse(self.format))
        except ValueError as e:
            raise ValueError(f"{name}.format: {e}") from None
        object.__setattr__(self, "iters", _validate.integer(self.iters, f"{name}.iters", low=1))
        if self.tol is not None:
            object.__setattr__(self, "tol", _validate.real(self.tol, f"{name}.tol", low=0))
        _validate.choice(self.init, f"{name}.init", ("lowrank", "quant"))
        if isinstance(self.niter, str):
            _validate.choice(self.niter, f"{name}.niter", ("exact",))
        else:
            object.__setattr__(self, "niter", _validate.integer(self.niter, f"{name}.niter", low=0))
        _seed(self)


@dataclass(frozen=True, kw_only=True)
class DGQConfig(QuantConfig):
    """DGQ A8W4 (Zhang et al. 2024): INT4 weight groups with integer group scales expanding to a
    per-channel INT8 matrix, and dynamic INT8 activations. The weight options are those of
    :func:`linalg_core.qmatmul.dgq_quantize`; ``granularity`` and ``clip_percentile`` are the
    activation options of :class:`~linalg_core.qmatmul.DGQLinear` (the weight ignores them).

    Args:
        group_size: weights per INT4 group, a positive multiple of 128 (DGQ: 128).
        search: ``"two_phase"`` (DGQ's grid search) or ``"rtn"`` (round to nearest).
        pad: allow K not divisible by ``group_size`` (zero weights pad the last group).
        granularity: activation scales per ``"token"`` or per ``"tensor"``.
        clip_percentile: clip |x| at this percentile in (0, 100] before quantizing activations,
            or None.

    Example:
        >>> from linalg_core.quant import DGQConfig
        >>> DGQConfig(group_size=256)
        DGQConfig(group_size=256, search='two_phase', pad=False, granularity='token', clip_percentile=None)
    """

    group_size: int = 128
    search: str = "two_phase"
    pad: bool = False
    granularity: str = "token"
    clip_percentile: float | None = None

    def __post_init__(self):
        name = type(self).__name__
        g = _validate.integer(self.group_size, f"{name}.group_size", low=1)
        if g % 128:
            raise ValueError(f"{name}.group_size={g} must be a positive multiple of 128 (the kernels work on "
                             "128-weight blocks)")
        object.__setattr__(self, "group_size", g)
        _validate.choice(self.search, f"{name}.search", ("two_phase", "rtn"))
        object.__setattr__(self, "pad", _validate.flag(self.pad, f"{name}.pad"))
        _validate.choice(self.granularity, f"{name}.granularity", ("token", "tensor"))
        if self.clip_percentile is not None:
            object.__setattr__(self, "clip_percentile", _validate.real(self.clip_percentile,
                                                                       f"{name}.clip_percentile", low=0, high=100,
                                                                       low_open=True))


__all__ = ["QuantConfig", "LQConfig", "DGQConfig", "register_quantizer", "quantizer_for", "quantize_weight"]
