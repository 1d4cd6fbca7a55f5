"""Whole models: quantize ``nn.Linear`` layers in place (torchao's ``quantize_(model, config)``),
count the bits stored, save and load the result.

* :func:`quantize_` replaces the ``nn.Linear`` layers ``filter_fn`` selects by
  :class:`~linalg_core.quant.QuantLinear` (a block format: ``"nf3"``, ``"bnb-nf4"``, ``"q4_0"``,
  ``"int4"``, any :class:`~linalg_core.quant.formats.Format`), :class:`~linalg_core.quant.LQLinear`
  (an :class:`~linalg_core.quant.LQConfig`) or :class:`~linalg_core.qmatmul.DGQLinear` (a
  :class:`~linalg_core.quant.DGQConfig`).
* :func:`model_bits_per_weight`: everything stored for the replaced weights (codes, scales,
  scales of scales, offsets, low-rank factors) over their number of weights.
* :func:`save_model` / :func:`load_model`: a directory with ``model.safetensors`` (the whole
  ``state_dict``; a quantized layer ``fc`` stores ``fc.weight.codes``, ``fc.weight.__format__``,
  ... as :meth:`QuantizedTensor.state_dict <linalg_core.quant.QuantizedTensor.state_dict>` does),
  ``quantization.json`` (each replaced layer: class, format, shapes, bits, which tools read the
  format) and, for a ``transformers`` model, its ``config.json``. The directory is written under a
  temporary name and renamed into place: a failed save leaves no partial directory.
"""

from __future__ import annotations

import copy
import json
import os
import pathlib
import shutil
import tempfile
from collections.abc import Callable

import torch

from linalg_core.quant.config import DGQConfig, LQConfig, QuantConfig, quantize_weight
from linalg_core.quant.formats import GGUF, BnbNF4, parse
from linalg_core.quant.lq import LQResult
from linalg_core.quant.modules import LQLinear, QuantLinear
from linalg_core.quant.tensor import QuantizedTensor, load_safetensors



def _dgq():
    # imported on use: linalg_core.qmatmul imports linalg_core.quant (its DGQConfig)
    from linalg_core.qmatmul import DGQLinear, DGQWeight

    return DGQLinear, DGQWeight


def _layer_types() -> tuple[type, ...]:
    return (QuantLinear, LQLinear, _dgq()[0])
_META_FILE, _WEIGHTS_FILE, _CONFIG_FILE = "quantization.json", "model.safetensors", "config.json"
_META_VERSION = 1


def _save_file(tensors, path, metadata):  # the one write of the weights (a seam for the atomicity test)
    from safetensors.torch import save_file

    save_file(tensors, str(path), metadata=metadata)


def _default_filter(module: torch.nn.Module, fqn: str) -> bool:
    return isinstance(module, torch.nn.Linear) and not isinstance(
        module, torch.nn.modules.linear.NonDynamicallyQuantizableLinear)


def _resolve(config):
    if isinstance(config, str):
        return parse(config)
    if not isinstance(config, QuantConfig):
        raise TypeError(f"config must be a QuantConfig (a format such as NormalFloat(bits=4) or its name \"nf4\", "
                        f"LQConfig(...), DGQConfig(...)), got {type(config).__name__}")
    return config


def _replacement(linear: torch.nn.Linear, config) -> torch.nn.Module:
    DGQLinear, DGQWeight = _dgq()
    if isinstance(config, DGQConfig):
        return DGQLinear.from_linear(linear, config)
    if isinstance(config, LQConfig):
        return LQLinear.from_linear(linear, config)
    res = quantize_weight(linear.weight.detach(), config)
    if isinstance(res, QuantizedTensor):
        return QuantLinear(res, linear.bias)
    if isinstance(res, LQResult):
        return LQLinear.from_result(res, linear.bias)
    if isinstance(res, DGQWeight):
        return DGQLinear(res, linear.bias)
    raise TypeError(f"the quantizer of {type(config).__name__} returns a {type(res).__name__}; quantize_ builds "
                    "layers from a QuantizedTensor, an LQResult or a DGQWeight")


def _set_submodule(model: torch.nn.Module, fqn: str, module: torch.nn.Module) -> None:
    parent, _, name = fqn.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, name, module)


def quantize_(model: torch.nn.Module, config, *, filter_fn: Callable[[torch.nn.Module, str], bool] | None = None
              ) -> torch.nn.Module:
    """Replace the ``nn.Linear`` layers of ``model`` in place by quantized layers.

    Every layer is quantized first and then all are swapped, so an error (naming the layer)
    leaves ``model`` unchanged. A layer used at several places is quantized once.

    Args:
        model: an ``nn.Module`` (not itself an ``nn.Linear``: use ``QuantLinear.from_linear``).
        config: a block format or its name (``"nf4"``, ``"nf3"``, ``"bnb-nf4"``, ``"q4_0"``,
            ``"int4"``, ...) → :class:`~linalg_core.quant.QuantLinear`; an
            :class:`~linalg_core.quant.LQConfig` → :class:`~linalg_core.quant.LQLinear`; a
            :class:`~linalg_core.quant.DGQConfig` → :class:`~linalg_core.qmatmul.DGQLinear`; a
            registered config whose quantizer returns one of their weights.
        filter_fn: ``filter_fn(module, fqn) -> bool`` selects the modules to replace (torchao's
            convention; fqn is the name in ``model.named_modules()``). Default: every
            ``nn.Linear`` except ``nn.MultiheadAttention``'s ``out_proj`` (whose weight the
            attention reads directly).

    Returns:
        ``model``.

    Raises:
        ValueError: no module selected, a selected module that is not an ``nn.Linear`` or is a
            ``MultiheadAttention.out_proj``, an unknown format name, a weight the format cannot
            store (named with its layer).
        TypeError: ``model``, ``config`` or ``filter_fn`` of the wrong type.

    Example:
        >>> import torch
        >>> from linalg_core.quant import quantize_, model_bits_per_weight
        >>> model = torch.nn.Sequential(torch.nn.Linear(256, 128), torch.nn.ReLU(), torch.nn.Linear(128, 64))
        >>> _ = quantize_(model, "q4_0", filter_fn=lambda m, fqn: isinstance(m, torch.nn.Linear) and fqn == "0")
        >>> type(model[0]).__name__, type(model[2]).__name__, model_bits_per_weight(model)
        ('QuantLinear', 'Linear', 4.5)
    """
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if isinstance(model, torch.nn.Linear):
        raise ValueError("model is itself an nn.Linear, which cannot be replaced in place: use "
                         "QuantLinear.from_linear(linear, config) (or LQLinear / DGQLinear.from_linear)")
    if filter_fn is not None and not callable(filter_fn):
        raise TypeError(f"filter_fn must be a callable (module, fqn) -> bool or None, got {type(filter_fn).__name__}")
    config = _resolve(config)
    select = filter_fn or _default_filter
    targets = []
    for fqn, module in model.named_modules(remove_duplicate=False):
        if not fqn or not select(module, fqn):
            continue
        if not isinstance(module, torch.nn.Linear):
            raise ValueError(f"filter_fn selected {fqn!r}, a {type(module).__name__}: quantize_ replaces nn.Linear "
                             "layers only")
        if isinstance(module, torch.nn.modules.linear.NonDynamicallyQuantizableLinear):
            raise ValueError(f"filter_fn selected {fqn!r}, the out_proj of an nn.MultiheadAttention, which reads its "
                             "weight directly: it cannot be replaced")
        targets.append((fqn, module))
    if not targets:
        raise ValueError(f"model ({type(model).__name__}) has no nn.Linear layers"
                         + (" that filter_fn selects" if filter_fn is not None else ""))
    built: dict[int, torch.nn.Module] = {}
    for fqn, module in targets:
        if id(module) not in built:
            try:
                new = _replacement(module, config)
            except (ValueError, TypeError) as e:
                raise type(e)(f"layer {fqn!r} ({module.out_features} x {module.in_features}): {e}") from e
            new.train(module.training)
            built[id(module)] = new
    for fqn, module in targets:
        _set_submodule(model, fqn, built[id(module)])
    return model


def quantized_layers(model: torch.nn.Module) -> dict[str, torch.nn.Module]:
    """The quantized layers of ``model`` (QuantLinear, LQLinear, DGQLinear) by name, each once.

    Args:
        model: any ``nn.Module``.

    Returns:
        ``{name in model.named_modules(): layer}``.

    Example:
        >>> import torch
        >>> from linalg_core.quant import quantize_, quantized_layers
        >>> model = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 8))
        >>> {k: type(v).__name__ for k, v in quantized_layers(quantize_(model, "int4")).items()}
        {'0': 'QuantLinear', '2': 'QuantLinear'}
    """
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    return {fqn: m for fqn, m in model.named_modules() if isinstance(m, _layer_types())}


def _layer_bits(m: torch.nn.Module, factors: bool) -> tuple[int, int]:
    """(bits stored, weights) of one quantized layer."""
    n = m.out_features * m.in_features
    if isinstance(m, _dgq()[0]):
        return round(m.weight.bits_per_weight * n), n
    if isinstance(m, LQLinear) and not factors:
        return m.weight.bits(), n
    return m.stored_bits(), n


def model_bits_per_weight(model: torch.nn.Module, *, factors: bool = True) -> float:
    """Bits stored per weight over the quantized layers of ``model``.

    Counts every stored tensor of the replaced weights: codes, scales, second-level scales and
    offsets (:attr:`QuantizedTensor.bits_per_param <linalg_core.quant.QuantizedTensor.bits_per_param>`),
    DGQ's group and channel scales and sums, and LQLinear's factors L1, L2 in their dtype (without
    them when ``factors`` is False: the quantized part only). Biases, the ``__format__`` headers
    and the layers left in float are not counted.

    Args:
        model: a model quantized by :func:`quantize_` (or holding quantized layers).
        factors: count LQLinear's low-rank factors L1, L2.

    Returns:
        Stored bits over the quantized layers' weights.

    Raises:
        ValueError: ``model`` has no quantized layer.

    Example:
        >>> import torch
        >>> from linalg_core.quant import model_bits_per_weight, quantize_
        >>> model = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 8))
        >>> model_bits_per_weight(quantize_(model, "int4"))
        4.125
    """
    layers = quantized_layers(model)
    if not layers:
        raise ValueError(f"model ({type(model).__name__}) has no quantized layers (QuantLinear, LQLinear, DGQLinear): "
                         "quantize_ it first")
    bits = n = 0
    for m in layers.values():
        b, k = _layer_bits(m, factors)
        bits, n = bits + b, n + k
    return bits / n


# --- files -----------------------------------------------------------------------------------

def _readers(fmt) -> list[str]:
    if isinstance(fmt, BnbNF4):
        return ["linalg_core", "bitsandbytes (linalg_core.quant.to_bitsandbytes)"]
    if isinstance(fmt, GGUF):
        return ["linalg_core", "llama.cpp / gguf (linalg_core.quant.to_gguf)"]
    return ["linalg_core"]


def _describe(fqn: str, m: torch.nn.Module) -> dict:
    info = {"class": type(m).__name__, "in_features": m.in_features, "out_features": m.out_features,
            "bias": m.bias is not None}
    if isinstance(m, _dgq()[0]):
        info.update(group_size=m.group_size, granularity=m.granularity, clip_percentile=m.clip_percentile,
                    bits_per_weight=m.weight.bits_per_weight, readable_by=["linalg_core"])
        return info
    fmt = m.weight.format
    info.update(format=json.loads(fmt.to_json()), format_name=str(fmt), dtype=str(m.weight.orig_dtype)[6:],
                bits_per_weight=m.bits_per_weight, readable_by=_readers(fmt))
    if isinstance(m, LQLinear):
        info.update(rank=m.rank, factor_dtype=str(m.L1.dtype)[6:],
                    bits_per_weight_quantized=m.weight.bits() / (m.in_features * m.out_features))
    return info


def _unique_tensors(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``state`` without the second names of tied tensors; tensors sharing memory otherwise are
    copied (safetensors stores each tensor's own bytes)."""
    out, seen, storages = {}, set(), set()
    for k, t in state.items():
        t = t.detach()
        if t.numel():
            key = (t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape), tuple(t.stride()), t.dtype,
                   t.device)
            if key in seen:
                continue
            seen.add(key)
            sk = (t.untyped_storage().data_ptr(), t.device)
            if sk in storages:
                t = t.clone()
            storages.add(sk)
        out[k] = t.contiguous()
    return out


def _config_of(model):
    config = getattr(model, "config", None)
    return config if config is not None and hasattr(config, "save_pretrained") else None


def _metadata(layers: dict[str, torch.nn.Module], model_class: str | None, transformers_class: str | None) -> dict:
    """The ``quantization.json`` object of the quantized ``layers`` ({fqn: module}) of a model
    (also written by ``compress``)."""
    modules = {fqn: _describe(fqn, m) for fqn, m in layers.items()}
    only = sorted({i.get("format_name", "dgq") for i in modules.values() if i["readable_by"] == ["linalg_core"]})
    bits = {True: [0, 0], False: [0, 0]}
    for m in layers.values():
        for factors, acc in bits.items():
            b, k = _layer_bits(m, factors)
            acc[0], acc[1] = acc[0] + b, acc[1] + k
    return {
        "linalg_core_quantized_model": _META_VERSION,
        "model_class": model_class,
        "transformers_class": transformers_class,
        "bits_per_weight": bits[True][0] / bits[True][1],
        "bits_per_weight_quantized": bits[False][0] / bits[False][1],
        "only_linalg_core_reads": only,
        "note": ("formats listed in only_linalg_core_reads are read by no other tool: load this directory with "
                 "linalg_core.quant.load_model") if only else "",
        "modules": modules,
    }


def save_model(model: torch.nn.Module, directory, *, overwrite: bool = False) -> pathlib.Path:
    """Save a model quantized in place (by :func:`quantize_`) to ``directory``.

    Writes ``model.safetensors`` (the ``state_dict``; tied tensors once), ``quantization.json``
    (``modules``: per replaced layer its class, format, shapes, rank, bits per weight and
    ``readable_by``, the tools that read its format — NF-k with LQ-LoRA's quantized scales, INT-k
    groups and DGQ are read by linalg_core only, which ``only_linalg_core_reads`` lists; the model's
    class; the model's bits per weight with and without low-rank factors) and, when the model has a
    ``transformers`` config (``model.config.save_pretrained``), ``config.json`` with
    ``architectures`` set to the model's class. Everything is written to a temporary directory
    next to ``directory`` and renamed into place, so a failure leaves no partial directory.

    Args:
        model: an ``nn.Module`` with at least one QuantLinear, LQLinear or DGQLinear.
        directory: the path of the directory to create (its parent must exist).
        overwrite: replace an existing non-empty ``directory`` (an empty one is always replaced).

    Returns:
        The directory's path.

    Raises:
        ValueError: ``model`` has no quantized layers; ``directory`` is a file.
        FileExistsError: ``directory`` exists, is not empty, and ``overwrite`` is False.

    Example:
        >>> import os, tempfile, torch
        >>> from linalg_core.quant import quantize_, save_model
        >>> model = quantize_(torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.ReLU()), "nf4")
        >>> with tempfile.TemporaryDirectory() as d:
        ...     sorted(os.listdir(save_model(model, os.path.join(d, "tiny"))))
        ['model.safetensors', 'quantization.json']
    """
    layers = quantized_layers(model)
    if not layers:
        raise ValueError(f"model ({type(model).__name__}) has no quantized layers (QuantLinear, LQLinear, DGQLinear): "
                         "quantize_ it first")
    if not isinstance(directory, (str, os.PathLike)):
        raise TypeError(f"directory must be a path (str or os.PathLike), got {type(directory).__name__}")
    path = pathlib.Path(directory)
    if path.exists() and not path.is_dir():
        raise ValueError(f"directory {str(path)!r} exists and is not a directory")
    if path.is_dir() and any(path.iterdir()) and not overwrite:
        raise FileExistsError(f"directory {str(path)!r} exists and is not empty (pass overwrite=True to replace it)")
    parent = path.parent
    if not parent.is_dir():
        raise FileNotFoundError(f"the parent of directory {str(path)!r} does not exist")
    config = _config_of(model)
    meta = _metadata(layers, f"{type(model).__module__}.{type(model).__qualname__}",
                     type(model).__name__ if config is not None else None)
    tensors = _unique_tensors(model.state_dict())
    tmp = pathlib.Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=parent))
    try:
        _save_file(tensors, tmp / _WEIGHTS_FILE, {"format": "pt", "linalg_core": "quantized model"})
        if config is not None:
            cfg = copy.deepcopy(config)
            cfg.architectures = [type(model).__name__]
            cfg.save_pretrained(str(tmp))
        (tmp / _META_FILE).write_text(json.dumps(meta, indent=2))
        if path.exists():
            old = pathlib.Path(tempfile.mkdtemp(prefix=f".{path.name}.old-", dir=parent))
            os.rename(path, old / "d")
            try:
                os.rename(tmp, path)
            except BaseException:
                os.rename(old / "d", path)
                raise
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def _read_meta(path: pathlib.Path) -> dict:
    file = path / _META_FILE
    if not file.is_file() or not (path / _WEIGHTS_FILE).is_file():
        raise ValueError(f"directory {str(path)!r} is not a model saved by linalg_core.quant.save_model (no "
                         f"{_META_FILE} and {_WEIGHTS_FILE})")
    try:
        meta = json.loads(file.read_text())
    except (ValueError, UnicodeDecodeError) as e:
        raise ValueError(f"{str(file)!r} is not valid JSON: {e}") from None
    if (not isinstance(meta, dict) or meta.get("linalg_core_quantized_model") != _META_VERSION
            or not isinstance(meta.get("modules"), dict) or not meta["modules"]):
        raise ValueError(f"{str(file)!r} does not describe a linalg_core quantized model (version {_META_VERSION} "
                         "with a non-empty 'modules' object)")
    for fqn, info in meta["modules"].items():
        if (not isinstance(info, dict) or info.get("class") not in ("QuantLinear", "LQLinear", "DGQLinear")
                or not all(isinstance(info.get(k), int) and not isinstance(info.get(k), bool) and info[k] > 0
                           for k in ("in_features", "out_features"))):
            raise ValueError(f"{str(file)!r}: module {fqn!r} has no valid description (class QuantLinear, LQLinear "
                             f"or DGQLinear, positive in_features and out_features), got {info!r}")
    return meta


def _skeleton(path: pathlib.Path, meta: dict) -> torch.nn.Module:
    name = meta.get("transformers_class")
    if not (path / _CONFIG_FILE).is_file() or not isinstance(name, str):
        raise ValueError(f"{str(path)!r} holds a model of class {meta.get('model_class')!r} without a transformers "
                         "config.json: pass its unquantized architecture as load_model(directory, model=...)")
    import transformers

    cls = getattr(transformers, name, None)
    if not (isinstance(cls, type) and issubclass(cls, transformers.PreTrainedModel)):
        raise ValueError(f"{str(path)!r}: {name!r} is not a transformers model class")
    config = transformers.AutoConfig.from_pretrained(str(path), local_files_only=True)
    return cls(config)


def _layer_from_state(fqn: str, info: dict, state: dict[str, torch.Tensor]) -> torch.nn.Module:
    DGQLinear, DGQWeight = _dgq()
    p = fqn + "."
    bias = state.get(p + "bias")
    if (bias is not None) != bool(info.get("bias")):
        raise ValueError(f"layer {fqn!r}: the metadata says bias={info.get('bias')!r}, the weights file "
                         f"{'has' if bias is not None else 'has no'} {p + 'bias'!r}")
    shape = (info["out_features"], info["in_features"])
    if info["class"] == "DGQLinear":
        w = DGQWeight.from_state_dict(state, p)
        layer = DGQLinear(w, bias, granularity=info.get("granularity", "token"),
                          clip_percentile=info.get("clip_percentile"))
        got = (w.out_features, w.in_features)
    else:
        Q = QuantizedTensor.from_state_dict(state, p + "weight.")
        if info["class"] == "LQLinear":
            missing = [p + k for k in ("L1", "L2") if p + k not in state]
            if missing:
                raise ValueError(f"layer {fqn!r}: the weights file lacks {', '.join(map(repr, missing))}")
            layer = LQLinear(Q, state[p + "L1"], state[p + "L2"], bias)
        else:
            layer = QuantLinear(Q, bias)
        got = Q.shape
    if tuple(got) != shape:
        raise ValueError(f"layer {fqn!r}: the metadata says {shape}, the weights file holds {tuple(got)}")
    return layer.eval()


def load_model(directory, *, model: torch.nn.Module | None = None) -> torch.nn.Module:
    """A runnable model from a directory written by :func:`save_model` (or ``compress``).

    The architecture: for a ``transformers`` model (the directory has ``config.json``), the class
    recorded at saving (``BertModel``, ``LlamaForCausalLM``, ...) built from the config; for any
    other model, pass the unquantized architecture as ``model`` (any weights, or a model built on
    the meta device; it is copied, never modified). The layers named in ``quantization.json`` are
    replaced by quantized layers built from the weights file (validated like
    :meth:`QuantizedTensor.from_state_dict <linalg_core.quant.QuantizedTensor.from_state_dict>`),
    every other tensor is taken from the file with its saved dtype (tied tensors stay tied); an
    entry naming a non-persistent buffer of the architecture with its shape (BERT's
    ``embeddings.position_ids``, which ``compress`` copies from the source file) is not read.
    The model is returned in eval mode, on the CPU.

    Args:
        directory: the directory :func:`save_model` wrote.
        model: the unquantized architecture, for a model without a ``transformers`` config.

    Returns:
        The model with its quantized layers, in eval mode.

    Example:
        >>> import os, tempfile, torch
        >>> from linalg_core.quant import load_model, quantize_, save_model
        >>> def tiny():
        ...     return torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 8))
        >>> model = quantize_(tiny(), "int4")
        >>> x = torch.randn(2, 64)
        >>> with tempfile.TemporaryDirectory() as d:
        ...     loaded = load_model(save_model(model, os.path.join(d, "tiny")), model=tiny())
        >>> torch.equal(loaded(x), model(x)), type(loaded[0]).__name__
        (True, 'QuantLinear')

    Raises:
        FileNotFoundError: ``directory`` does not exist.
        ValueError: ``directory`` is not a saved model; its files are corrupt; ``model`` does not
            have the saved architecture (missing or unexpected tensors, a layer of another shape);
            a saved plain ``nn.Module`` without ``model``.
        TypeError: ``model`` is not an ``nn.Module``.
    """
    if not isinstance(directory, (str, os.PathLike)):
        raise TypeError(f"directory must be a path (str or os.PathLike), got {type(directory).__name__}")
    path = pathlib.Path(directory)
    if not path.exists():
        raise FileNotFoundError(f"directory {str(path)!r} does not exist")
    if not path.is_dir():
        raise ValueError(f"directory {str(path)!r} is not a directory")
    if model is not None and not isinstance(model, torch.nn.Module):
        raise TypeError(f"model must be a torch.nn.Module or None, got {type(model).__name__}")
    meta = _read_meta(path)
    state = load_safetensors(path / _WEIGHTS_FILE)
    net = _skeleton(path, meta) if model is None else copy.deepcopy(model)
    for fqn, info in meta["modules"].items():
        try:
            old = net.get_submodule(fqn)
        except AttributeError:
            raise ValueError(f"the architecture ({type(net).__name__}) has no module {fqn!r}, a quantized layer of "
                             "the saved model") from None
        if not isinstance(old, (torch.nn.Linear, *_layer_types())) or (old.out_features, old.in_features) != (
                info["out_features"], info["in_features"]):
            raise ValueError(f"the architecture's {fqn!r} is a {type(old).__name__} "
                             f"{getattr(old, 'out_features', '?')} x {getattr(old, 'in_features', '?')}; the saved "
                             f"layer is a {info['out_features']} x {info['in_features']} linear layer")
        _set_submodule(net, fqn, _layer_from_state(fqn, info, state))
    prefixes = tuple(fqn + "." for fqn in meta["modules"])
    rest = {k: v for k, v in state.items() if not k.startswith(prefixes)}
    groups: dict[int, list[str]] = {}
    for k, v in net.state_dict(keep_vars=True).items():
        groups.setdefault(id(v), []).append(k)
    missing, unexpected = net.load_state_dict(rest, strict=False, assign=True)
    # a non-persistent buffer saved by another writer (BERT's embeddings.position_ids in its own
    # safetensors, which compress copies): the architecture rebuilds it, the file's copy is not read
    transient = _non_persistent_buffers(net)
    unexpected = [k for k in unexpected if not (k in transient and tuple(transient[k].shape) == tuple(rest[k].shape))]
    loaded_alias = {k: next((a for a in g if a in rest), None) for g in groups.values() for k in g}
    missing = [k for k in missing if not k.startswith(prefixes) and loaded_alias.get(k) is None]
    if missing or unexpected:
        raise ValueError(f"the weights file does not match the architecture ({type(net).__name__}): "
                         f"missing {missing[:8]}{'...' if len(missing) > 8 else ''}, "
                         f"unexpected {unexpected[:8]}{'...' if len(unexpected) > 8 else ''}")
    for g in groups.values():  # assign=True replaced the loaded name's tensor: its aliases follow
        src = next((a for a in g if a in rest), None)
        if src is not None and len(g) > 1:
            t = _get_tensor(net, src)
            for a in g:
                if a != src:
                    _set_tensor(net, a, t)
    return net.eval()


def _non_persistent_buffers(net: torch.nn.Module) -> dict[str, torch.Tensor]:
    out = {}
    for name, mod in net.named_modules():
        for b in mod._non_persistent_buffers_set:
            if mod._buffers.get(b) is not None:
                out[f"{name}.{b}" if name else b] = mod._buffers[b]
    return out


def _get_tensor(net, key):
    mod, _, name = key.rpartition(".")
    m = net.get_submodule(mod) if mod else net
    return m._parameters[name] if name in m._parameters else m._buffers[name]


def _set_tensor(net, key, t):
    mod, _, name = key.rpartition(".")
    m = net.get_submodule(mod) if mod else net
    if name in m._parameters:
        m._parameters[name] = t
    else:
        m._buffers[name] = t


__all__ = ["quantize_", "quantized_layers", "model_bits_per_weight", "save_model", "load_model"]
