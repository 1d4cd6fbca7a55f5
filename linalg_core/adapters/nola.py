"""NOLA: LoRA's factors as linear combinations of seeded random bases that are never stored.

NOLA (Koohpayegani, Navaneet, Nooralinejad, Kolouri and Pirsiavash, "NOLA: Compressing LoRA
using Linear Combination of Random Basis", ICLR 2024) writes a LoRA adapter's factors as

    A = A₀ + Σᵢ αᵢ Aᵢ   (r × n, i < k_a),      B = Σⱼ βⱼ Bⱼ   (m × r, j < k_b),
    y = W x + (lora_alpha / r) · B A x,

with fixed random bases Aᵢ, Bⱼ and trains only the k_a + k_b coefficients α, β. The reference
code (github.com/UCDvision/NOLA, ``gpt/src/model_nola.py``: ``GenerateParams``, ``LoRA``) draws
every basis with ``torch.manual_seed`` as one (k, rows, cols) tensor each step: k·r·n floats
per factor in memory. Here basis i of a factor is the standard normals of one counter-based
Philox stream (:mod:`linalg_core.random`), so any element is regenerated from
(seed, stream, index) and the kernels (:func:`nola_combine`, backward :func:`nola_coeff_grad`;
CPU, CUDA, Triton) form the combination block by block without storing any basis.

Choices, against the reference code:

* Basis entries: ``scale · z`` with z standard normal (our generator) and
  ``scale = 1/√(3k)``, the variance of the reference's ``U(-1, 1)/√k`` entries.
* ``A₀``: the reference keeps a frozen, stored ``kaiming_uniform_(a=√5)`` LoRA A next to the
  combination (and α = β = 0 at the start, so ΔW = 0 but the gradient of β is not): here A₀ is
  one more regenerated basis (stream index 0 of the A factor) with the kaiming variance 1/(3n),
  so a checkpoint holds α, β and the seed only.
* Streams: factor ``f`` (0 = A, 1 = B) of layer ``ℓ`` uses the streams
  ``NOLA_STREAM_TAG | ℓ << 33 | f << 32 | i`` (:func:`stream_base`), distinct from the
  library's own sketches (``random.Stream``) and from each other for ℓ < 2^15, k < 2^32.

Example:
    >>> import torch, linalg_core as lc
    >>> from linalg_core.adapters.nola import NOLALinear
    >>> layer = NOLALinear(torch.nn.Linear(16, 12), rank=4, k_a=32, k_b=32, seed=0)
    >>> [n for n, p in layer.named_parameters() if p.requires_grad]
    ['nola_alpha', 'nola_beta']
    >>> layer(torch.randn(3, 16)).shape
    torch.Size([3, 12])
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import nn

from linalg_core import _ops, _validate
from linalg_core._ops import as_int64

__all__ = ["NOLA_STREAM_TAG", "basis_scale", "stream_base", "nola_combine", "nola_coeff_grad", "NOLALinear",
           "NOLAConfig", "NOLAInit", "init_nola_model", "nola_state_dict", "load_nola_state_dict"]

NOLA_STREAM_TAG = 0x4E4F << 48  # "NO": NOLA's streams, above every stream id the library uses itself
MAX_LAYERS = 1 << 15
MAX_BASES = (1 << 32) - 1
FORMAT = "linalg_core.nola/1"
_DTYPES = (torch.float32, torch.float64)


def basis_scale(k: int) -> float:
    """The entry scale ``1/√(3k)`` of k bases: the variance of NOLA's ``U(-1, 1)/√k`` entries."""
    k = _validate.integer(k, "k", low=1)
    return 1.0 / math.sqrt(3.0 * k)


def stream_base(layer_index: int, factor: int) -> int:
    """The first Philox stream of the bases of ``factor`` (0 = A, 1 = B) of layer ``layer_index``."""
    layer_index = _validate.integer(layer_index, "layer_index", low=0, high=MAX_LAYERS - 1)
    factor = _validate.integer(factor, "factor", low=0, high=1)
    return NOLA_STREAM_TAG | layer_index << 33 | factor << 32


def _check_stream(base, k: int) -> int:
    base = _validate.integer(base, "stream_base", low=0, high=2**64 - 1)
    if base + k - 1 > 2**64 - 1:
        raise ValueError(f"stream_base={base} with k={k} bases passes 2^64 - 1 (streams stream_base .. stream_base + k"
                         " - 1)")
    return base


def _float_tensor(x, name: str, ndim: int) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dtype not in _DTYPES:
        raise TypeError(f"{name} has dtype {x.dtype}; supported: float32, float64")
    if x.dim() != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got shape {tuple(x.shape)}")
    return x


def nola_combine(coeffs: torch.Tensor, shape, *, seed: int, stream_base: int, scale: float = 1.0,
                 backend: str | None = None) -> torch.Tensor:
    """``scale · Σᵢ coeffs[i] · Zᵢ`` for standard normal bases Zᵢ regenerated, never stored.

    ``Zᵢ = random.normal(shape, seed=seed, stream=stream_base + i)`` exactly (the normals of
    :func:`linalg_core.random.normal`, to float rounding on every backend). The kernels run over
    tiles of the output and, per tile, over the k streams, so memory is the output alone. The op
    is differentiable in ``coeffs``: its backward is :func:`nola_coeff_grad` (the adjoint), which
    regenerates the bases again. NOLA (Koohpayegani et al., ICLR 2024), Eq. (2)'s A = Σ αᵢAᵢ.

    Args:
        coeffs: the k coefficients (float32 or float64; the result's dtype and device).
        shape: ``(rows, cols)`` of the result.
        seed: the Philox key, an int in [0, 2^64).
        stream_base: stream of basis 0; basis i uses ``stream_base + i`` (must stay below 2^64).
        scale: a factor applied to the sum (NOLA's basis scale: :func:`basis_scale`).
        backend: force ``"cuda"``, ``"triton"``, ``"cpu"`` or ``"reference"``.

    Shape:
        coeffs: (k,); out: (rows, cols)

    Randomness:
        Deterministic in (seed, stream_base, shape): the same bases on every backend, device and
        thread count.

    Example:
        >>> import torch, linalg_core as lc
        >>> from linalg_core.adapters.nola import nola_combine
        >>> c = torch.tensor([1.0, 0.0])
        >>> torch.allclose(nola_combine(c, (2, 3), seed=1, stream_base=5),
        ...                lc.random.normal((2, 3), seed=1, stream=5))
        True
    """
    coeffs = _float_tensor(coeffs, "coeffs", 1)
    k = coeffs.shape[0]
    if k < 1:
        raise ValueError("coeffs is empty: k must be >= 1")
    if not isinstance(shape, (tuple, list, torch.Size)) or len(shape) != 2:
        raise TypeError(f"shape must be a (rows, cols) pair, got {shape!r}")
    rows = _validate.integer(shape[0], "shape[0]", low=0)
    cols = _validate.integer(shape[1], "shape[1]", low=0)
    seed = _validate.integer(seed, "seed", low=0, high=_validate.SEED_LIMIT - 1)
    base = _check_stream(stream_base, k)
    scale = _validate.real(scale, "scale")
    return _ops.nola_combine(coeffs.contiguous(), rows, cols, as_int64(base), as_int64(seed), scale, backend=backend)


def nola_coeff_grad(grad: torch.Tensor, k: int, *, seed: int, stream_base: int, scale: float = 1.0,
                    backend: str | None = None) -> torch.Tensor:
    """``[scale · ⟨Zᵢ, grad⟩]ᵢ``: the adjoint of :func:`nola_combine` (its coefficients' gradient).

    Each basis is regenerated tile by tile and dotted with ``grad`` (sums in a fixed order: the
    same result for any thread count).

    Args:
        grad: the (rows, cols) gradient of the combination (float32 or float64).
        k: number of bases.
        seed, stream_base, scale: as for :func:`nola_combine`.
        backend: force a backend.

    Shape:
        grad: (rows, cols); out: (k,)

    Randomness:
        Deterministic in (seed, stream_base, shape): the bases are those of :func:`nola_combine`
        (Zᵢ = ``random.normal(grad.shape, seed=seed, stream=stream_base + i)``), the same on every
        backend, device and thread count; nothing is drawn from a global generator.

    Example:
        >>> import torch
        >>> from linalg_core.adapters.nola import nola_coeff_grad
        >>> nola_coeff_grad(torch.ones(2, 3), 4, seed=1, stream_base=5).shape
        torch.Size([4])
    """
    grad = _float_tensor(grad, "grad", 2)
    k = _validate.integer(k, "k", low=1)
    seed = _validate.integer(seed, "seed", low=0, high=_validate.SEED_LIMIT - 1)
    base = _check_stream(stream_base, k)
    scale = _validate.real(scale, "scale")
    return _ops.nola_coeff_grad(grad.contiguous(), k, as_int64(base), as_int64(seed), scale, backend=backend)


class NOLALinear(nn.Module):
    """``base(x) + (lora_alpha / rank) · B (A x)`` with A, B combinations of regenerated random bases.

    A = A₀ + Σᵢ αᵢAᵢ (rank × in_features, k_a bases), B = Σⱼ βⱼBⱼ (out_features × rank, k_b bases);
    only α (``nola_alpha``) and β (``nola_beta``) are parameters, both zero at the start (ΔW = 0).
    A and B are formed by :func:`nola_combine` at every training forward and their gradients go
    back through :func:`nola_coeff_grad`; in eval mode without autograd they are kept until the
    coefficients change. The base layer's parameters are frozen (``requires_grad=False``).

    Args:
        base: the ``nn.Linear`` to adapt.
        rank: r, at most min(in_features, out_features).
        k_a, k_b: number of bases of A and of B.
        seed: the Philox key of every basis (an int in [0, 2^64); None draws one, recorded).
        layer_index: which streams this layer's bases use (:func:`stream_base`), < 2^15; layers of a
            model sharing a seed need distinct indices.
        lora_alpha: the LoRA scaling numerator (scaling = lora_alpha / rank).
        dropout: dropout on the adapter's input, as LoRA's.
        backend: force a backend for the combination kernels.

    Shape:
        x: (*, in_features); out: (*, out_features)

    Randomness:
        The bases are a function of (seed, layer_index) only: a checkpoint (:meth:`state_dict`)
        holds α, β and that metadata, and any backend rebuilds the same adapter from it.
        ``seed=None`` draws a fresh 64-bit key from OS entropy and records it in ``layer.seed``
        (a ``torch.Generator`` gives one draw from it). Dropout, when on, uses torch's global
        generator.

    Example:
        >>> import torch
        >>> from linalg_core.adapters.nola import NOLALinear
        >>> layer = NOLALinear(torch.nn.Linear(16, 12), rank=4, k_a=32, k_b=32, seed=0)
        >>> layer.nola_alpha.shape, layer.nola_beta.shape
        (torch.Size([32]), torch.Size([32]))
        >>> A, B = layer.factors()
        >>> A.shape, B.shape, layer.scaling
        (torch.Size([4, 16]), torch.Size([12, 4]), 2.0)
        >>> float(layer.delta_weight().detach().abs().max())  # β = 0 at the start: ΔW = 0
        0.0
    """

    def __init__(self, base: nn.Linear, rank: int, k_a: int, k_b: int, *, seed: int | None = None,
                 layer_index: int = 0, lora_alpha: float = 8.0, dropout: float = 0.0, backend: str | None = None):
        super().__init__()
        if not isinstance(base, nn.Linear):
            raise TypeError(f"base must be a torch.nn.Linear, got {type(base).__name__}")
        n, m = base.in_features, base.out_features
        self.rank = _validate.integer(rank, "rank", low=1, high=min(n, m))
        self.k_a = _validate.integer(k_a, "k_a", low=1, high=MAX_BASES - 1)  # (+1: A₀)
        self.k_b = _validate.integer(k_b, "k_b", low=1, high=MAX_BASES)
        self.seed = _validate.seed(seed)
        self.layer_index = _validate.integer(layer_index, "layer_index", low=0, high=MAX_LAYERS - 1)
        self.lora_alpha = _validate.real(lora_alpha, "lora_alpha")
        p = _validate.real(dropout, "dropout", low=0.0, high=1.0)
        self.backend = backend
        self.base = base
        base.requires_grad_(False)
        dtype = torch.float64 if base.weight.dtype == torch.float64 else torch.float32
        dev = base.weight.device
        self.nola_alpha = nn.Parameter(torch.zeros(self.k_a, dtype=dtype, device=dev))
        self.nola_beta = nn.Parameter(torch.zeros(self.k_b, dtype=dtype, device=dev))
        self.dropout = nn.Dropout(p) if p > 0 else nn.Identity()
        self._cache = None

    # --- the factors -------------------------------------------------------------------------

    @property
    def scaling(self) -> float:
        """LoRA's scaling ``lora_alpha / rank`` of the adapter's output."""
        return self.lora_alpha / self.rank

    @property
    def a0_coefficient(self) -> float:
        """A₀'s fixed coefficient: A₀ = a0 · basis_scale(k_a) · Z₀ has the kaiming-uniform variance 1/(3n)."""
        return math.sqrt((self.k_a + 1) / self.base.in_features)

    def factors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(A (rank, in_features), B (out_features, rank)) in the coefficients' dtype."""
        alpha = self.nola_alpha
        c = torch.cat([alpha.new_full((1,), self.a0_coefficient), alpha])
        A = nola_combine(c, (self.rank, self.base.in_features), seed=self.seed,
                         stream_base=stream_base(self.layer_index, 0), scale=basis_scale(self.k_a + 1),
                         backend=self.backend)
        B = nola_combine(self.nola_beta, (self.base.out_features, self.rank), seed=self.seed,
                         stream_base=stream_base(self.layer_index, 1), scale=basis_scale(self.k_b),
                         backend=self.backend)
        return A, B

    def _factors(self):
        if self.training or torch.is_grad_enabled() or torch.compiler.is_compiling():
            self._cache = None
            return self.factors()
        key = (self.nola_alpha._version, self.nola_beta._version, self.nola_alpha.data_ptr(),
               self.nola_beta.data_ptr(), self.seed, self.layer_index)
        if self._cache is None or self._cache[0] != key:
            self._cache = (key, self.factors())
        return self._cache[1]

    def delta_weight(self) -> torch.Tensor:
        """ΔW = scaling · B A (out_features, in_features), e.g. to merge into the base weight."""
        A, B = self.factors()
        return self.scaling * (B @ A)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``base(x) + scaling · B (A dropout(x))``, the factors formed (or, in eval mode without
        autograd, reused) as the class docstring describes.

        Args:
            x: the layer's input (the factors are cast to its dtype).

        Shape:
            x: (*, in_features);  out: (*, out_features)
        """
        A, B = self._factors()
        h = nn.functional.linear(nn.functional.linear(self.dropout(x), A.to(x.dtype)), B.to(x.dtype))
        return self.base(x) + self.scaling * h

    # --- checkpoint metadata --------------------------------------------------------------------

    def get_extra_state(self) -> dict:
        """The layer's checkpoint metadata (``_extra_state`` of :meth:`state_dict`): format tag,
        seed, layer index, rank, k_a, k_b, lora_alpha and the base layer's features; no basis."""
        return {"format": FORMAT, "seed": self.seed, "layer_index": self.layer_index, "rank": self.rank,
                "k_a": self.k_a, "k_b": self.k_b, "lora_alpha": self.lora_alpha,
                "in_features": self.base.in_features, "out_features": self.base.out_features}

    def set_extra_state(self, state) -> None:
        """Restore :meth:`get_extra_state`'s metadata (seed, layer index, lora_alpha; called by
        ``load_state_dict``); the bases follow from the restored seed and layer index.

        Args:
            state: the dict :meth:`get_extra_state` returned.

        Raises:
            ValueError: not a NOLA layer state of this format, or rank, k_a, k_b or the layer's
                features differ from this layer's.
        """
        if not isinstance(state, dict) or state.get("format") != FORMAT:
            raise ValueError(f"not a NOLA layer state ({FORMAT}): {state!r}")
        mine = self.get_extra_state()
        for key in ("rank", "k_a", "k_b", "in_features", "out_features"):
            if state.get(key) != mine[key]:
                raise ValueError(f"checkpoint {key}={state.get(key)!r} does not match this layer's {mine[key]!r}")
        self.seed = _validate.seed(state["seed"], "seed")
        self.layer_index = _validate.integer(state["layer_index"], "layer_index", low=0, high=MAX_LAYERS - 1)
        self.lora_alpha = _validate.real(state["lora_alpha"], "lora_alpha")
        self._cache = None

    def extra_repr(self) -> str:
        """The settings shown by ``repr(layer)``: rank, k_a, k_b, seed, layer_index, lora_alpha."""
        return (f"rank={self.rank}, k_a={self.k_a}, k_b={self.k_b}, seed={self.seed}, layer_index={self.layer_index},"
                f" lora_alpha={self.lora_alpha}")


# --- whole models --------------------------------------------------------------------------------

@dataclass(frozen=True, kw_only=True)
class NOLAConfig:
    """Options of :func:`init_nola_model` (validated on construction).

    Args:
        target_modules: names of the ``nn.Linear`` modules to wrap, matched as peft does: the full
            name or its last components (``"query"`` matches ``encoder.layer.0.attention.self.query``);
            a string is a regular expression matched against the full name.
        rank, k_a, k_b, lora_alpha, dropout: per layer, as :class:`NOLALinear`'s.
        seed: one Philox key for the model (None: drawn once, recorded in every layer).
        freeze_base: set ``requires_grad=False`` on every parameter that is not a NOLA coefficient.

    Raises:
        ValueError: an invalid regular expression, empty ``target_modules`` or an out-of-range number.
        TypeError: ``target_modules`` neither a string nor names.

    Randomness:
        ``seed`` is the key of every layer's bases (layer ℓ uses the streams of
        :func:`stream_base` ``(ℓ, ·)``); ``seed=None`` leaves the draw to :func:`init_nola_model`,
        which records the key it drew in :class:`NOLAInit` and in every layer.

    Example:
        >>> from linalg_core.adapters.nola import NOLAConfig
        >>> cfg = NOLAConfig(target_modules=["query", "value"], rank=4, k_a=64, k_b=64, seed=0)
        >>> cfg.target_modules, cfg.matches("encoder.layer.0.attention.self.query"), cfg.matches("key")
        (('query', 'value'), True, False)
        >>> NOLAConfig(target_modules=r".*[.](query|value)").matches("layer.1.value")
        True
    """

    target_modules: tuple[str, ...] | str
    rank: int = 8
    k_a: int = 1024
    k_b: int = 1024
    lora_alpha: float = 8.0
    dropout: float = 0.0
    seed: int | None = None
    freeze_base: bool = True

    def __post_init__(self):
        tm = self.target_modules
        if isinstance(tm, str):
            try:
                re.compile(tm)
            except re.error as e:
                raise ValueError(f"NOLAConfig.target_modules={tm!r} is not a regular expression: {e}") from None
        else:
            if not isinstance(tm, Iterable) or not all(isinstance(t, str) and t for t in tm):
                raise TypeError(f"NOLAConfig.target_modules must be a regex or names, got {tm!r}")
            tm = tuple(tm)
            if not tm:
                raise ValueError("NOLAConfig.target_modules is empty")
            object.__setattr__(self, "target_modules", tm)
        object.__setattr__(self, "rank", _validate.integer(self.rank, "NOLAConfig.rank", low=1))
        object.__setattr__(self, "k_a", _validate.integer(self.k_a, "NOLAConfig.k_a", low=1, high=MAX_BASES - 1))
        object.__setattr__(self, "k_b", _validate.integer(self.k_b, "NOLAConfig.k_b", low=1, high=MAX_BASES))
        object.__setattr__(self, "lora_alpha", _validate.real(self.lora_alpha, "NOLAConfig.lora_alpha"))
        object.__setattr__(self, "dropout", _validate.real(self.dropout, "NOLAConfig.dropout", low=0.0, high=1.0))
        if self.seed is not None:
            object.__setattr__(self, "seed", _validate.integer(self.seed, "NOLAConfig.seed", low=0,
                                                               high=_validate.SEED_LIMIT - 1))
        object.__setattr__(self, "freeze_base", _validate.flag(self.freeze_base, "NOLAConfig.freeze_base"))

    def matches(self, name: str) -> bool:
        """Whether the module called ``name`` (as ``named_modules()`` spells it) is a target:
        for names, ``name`` equal to one or ending in ``"." + one``; for a string, the regular
        expression matching the whole name.

        Args:
            name: a module's full dotted name.
        """
        tm = self.target_modules
        if isinstance(tm, str):
            return re.fullmatch(tm, name) is not None
        return any(name == t or name.endswith("." + t) for t in tm)


@dataclass(frozen=True)
class NOLAInit:
    """What :func:`init_nola_model` did: the wrapped layers (in layer-index order), the seed,
    the trainable coefficient count and the LoRA parameter count at the same ranks.

    Args:
        layers: names of the wrapped layers; ``layers[ℓ]`` has ``layer_index=ℓ``.
        seed: the Philox key of every layer's bases.
        trainable: the coefficients added, number of layers × (k_a + k_b).
        lora_equivalent: what LoRA of the same rank trains, Σ rank · (in_features + out_features).

    Randomness:
        ``seed`` is recorded, not drawn: the key the layers' bases were generated from (the
        config's, or the one drawn for ``seed=None``); with ``layers`` it rebuilds the adapter.

    Example:
        >>> import torch
        >>> from linalg_core.adapters.nola import NOLAConfig, init_nola_model
        >>> net = torch.nn.Sequential(torch.nn.Linear(32, 32), torch.nn.ReLU(), torch.nn.Linear(32, 4))
        >>> info = init_nola_model(net, NOLAConfig(target_modules=("0", "2"), rank=2, k_a=16, k_b=8, seed=7))
        >>> info.layers, info.seed, info.trainable, info.lora_equivalent
        (('0', '2'), 7, 48, 200)
    """

    layers: tuple[str, ...]
    seed: int
    trainable: int
    lora_equivalent: int


def init_nola_model(model: nn.Module, config: NOLAConfig) -> NOLAInit:
    """Replace the target ``nn.Linear`` layers of ``model`` (in place) by :class:`NOLALinear`.

    Layer ``ℓ`` (the ℓ-th match in ``model.named_modules()`` order) gets ``layer_index=ℓ`` and the
    config's seed, so a checkpoint of the coefficients (:func:`nola_state_dict`) plus the seed
    rebuilds the adapter. With ``freeze_base`` only the coefficients stay trainable. NOLA
    (Koohpayegani et al., ICLR 2024) applied to a whole model, as peft's LoRA targets.

    Args:
        model: the model; its matching ``nn.Linear`` modules are replaced in place (layers that
            are already :class:`NOLALinear` are left alone).
        config: a :class:`NOLAConfig`.

    Returns:
        :class:`NOLAInit`: the wrapped layer names, the seed used, the coefficient count and
        LoRA's parameter count at the same rank.

    Raises:
        TypeError: ``model`` not an ``nn.Module`` or ``config`` not a :class:`NOLAConfig`.
        ValueError: no module matches, more than 2^15 match, or ``config.rank`` exceeds a
            target's min(in_features, out_features).

    Shape:
        each target layer's weight: (out_features, in_features)

    Randomness:
        Every layer's bases come from ``config.seed`` (drawn once when None, recorded in the
        result and in every layer) and its layer index; no global generator is used.

    Example:
        >>> import torch
        >>> from linalg_core.adapters.nola import NOLAConfig, init_nola_model
        >>> net = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
        >>> init_nola_model(net, NOLAConfig(target_modules=("0",), rank=2, k_a=16, k_b=16, seed=3)).layers
        ('0',)
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(config, NOLAConfig):
        raise TypeError(f"config must be a NOLAConfig, got {type(config).__name__}")
    seed = _validate.seed(config.seed)
    names = [n for n, m in model.named_modules() if n and config.matches(n) and isinstance(m, nn.Linear)
             and not isinstance(m, NOLALinear)]
    if not names:
        raise ValueError(f"no nn.Linear module of the model matches target_modules={config.target_modules!r}")
    if len(names) > MAX_LAYERS:
        raise ValueError(f"{len(names)} target layers; at most {MAX_LAYERS} share one seed")
    lora = 0
    for i, name in enumerate(names):
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        base = getattr(parent, child)
        if config.rank > min(base.in_features, base.out_features):
            raise ValueError(f"NOLAConfig.rank={config.rank} exceeds min(in, out) = "
                             f"{min(base.in_features, base.out_features)} of layer {name!r}")
        setattr(parent, child, NOLALinear(base, config.rank, config.k_a, config.k_b, seed=seed, layer_index=i,
                                          lora_alpha=config.lora_alpha, dropout=config.dropout))
        lora += config.rank * (base.in_features + base.out_features)
    if config.freeze_base:
        for n, p in model.named_parameters():
            p.requires_grad_(n.endswith(".nola_alpha") or n.endswith(".nola_beta"))
    return NOLAInit(tuple(names), seed, len(names) * (config.k_a + config.k_b), lora)


def nola_state_dict(model: nn.Module) -> dict:
    """The adapter's checkpoint: every NOLA layer's α, β and metadata (seed, layer index, shapes),
    nothing of the base model and no basis.

    Args:
        model: a model with :class:`NOLALinear` layers (e.g. after :func:`init_nola_model`).

    Returns:
        dict: ``"<layer>.nola_alpha"``, ``"<layer>.nola_beta"`` (detached copies) and
        ``"<layer>._extra_state"`` (:meth:`NOLALinear.get_extra_state`) per NOLA layer; saves with
        ``torch.save``.

    Shape:
        ``<layer>.nola_alpha``: (k_a,);  ``<layer>.nola_beta``: (k_b,)

    Example:
        >>> import torch
        >>> from linalg_core.adapters.nola import NOLAConfig, init_nola_model, nola_state_dict
        >>> net = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
        >>> _ = init_nola_model(net, NOLAConfig(target_modules=("0",), rank=2, k_a=16, k_b=8, seed=3))
        >>> state = nola_state_dict(net)
        >>> sorted(state), state["0.nola_beta"].shape, state["0._extra_state"]["seed"]
        (['0._extra_state', '0.nola_alpha', '0.nola_beta'], torch.Size([8]), 3)
    """
    out = {}
    for name, m in model.named_modules():
        if isinstance(m, NOLALinear):
            prefix = f"{name}." if name else ""
            out[prefix + "nola_alpha"] = m.nola_alpha.detach().clone()
            out[prefix + "nola_beta"] = m.nola_beta.detach().clone()
            out[prefix + "_extra_state"] = m.get_extra_state()
    return out


def load_nola_state_dict(model: nn.Module, state: dict) -> None:
    """Load :func:`nola_state_dict`'s checkpoint into a model with the same NOLA layers (from
    :func:`init_nola_model` with the same targets, any seed: the checkpoint's seed is restored).

    Args:
        model: the model to load into (its NOLA layers are updated in place).
        state: :func:`nola_state_dict`'s output (e.g. after ``torch.save`` / ``torch.load``).

    Raises:
        ValueError: the checkpoint's keys differ from the model's NOLA layers, or a layer's
            metadata (format, rank, k_a, k_b, features) does not match.

    Shape:
        ``<layer>.nola_alpha``: (k_a,);  ``<layer>.nola_beta``: (k_b,)

    Example:
        >>> import torch
        >>> from linalg_core.adapters.nola import (NOLAConfig, init_nola_model, load_nola_state_dict,
        ...                                        nola_state_dict)
        >>> def model(seed):
        ...     torch.manual_seed(0)  # the same base weights
        ...     net = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
        ...     init_nola_model(net, NOLAConfig(target_modules=("0", "2"), rank=2, k_a=16, k_b=8, seed=seed))
        ...     return net
        >>> trained, fresh = model(seed=1), model(seed=2)
        >>> with torch.no_grad():
        ...     _ = trained[0].nola_beta.fill_(0.5)
        >>> load_nola_state_dict(fresh, nola_state_dict(trained))
        >>> x = torch.ones(3, 8)
        >>> fresh[0].seed, torch.allclose(fresh(x), trained(x))
        (1, True)
    """
    mine = nola_state_dict(model)
    missing = sorted(set(mine) - set(state))
    unexpected = sorted(set(state) - set(mine))
    if missing or unexpected:
        raise ValueError(f"NOLA checkpoint does not fit the model: missing {missing[:5]}, unexpected {unexpected[:5]}")
    result = model.load_state_dict(state, strict=False)
    if result.unexpected_keys:
        raise ValueError(f"unexpected keys {result.unexpected_keys[:5]}")
