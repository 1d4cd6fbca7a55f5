"""Exports to other tools: a GGUF file for llama.cpp (:func:`to_gguf`) and bitsandbytes modules
(:func:`to_bitsandbytes`).

Which formats other tools read:

* ``GGUF("q4_0")`` / ``GGUF("q8_0")``: llama.cpp's Q4_0 / Q8_0 blocks, written to GGUF as stored
  (byte for byte what ``gguf.quants.quantize`` gives for the same weights) by :func:`to_gguf`.
* :class:`~linalg_core.quant.formats.BnbNF4`: bitsandbytes' NF4, turned into
  ``bitsandbytes.nn.Linear4bit`` modules by :func:`to_bitsandbytes`.
* ``NormalFloat`` (NF2 / NF3 / NF4 / NF8 with LQ-LoRA's quantized scales) and ``IntGroup``
  (INT-k groups) are read by linalg_core only (``QuantizedTensor.save`` / ``load``): both
  exports refuse them with a ValueError naming the format and the format to quantize with
  instead. So do ``LQLinear`` (Q + L1·L2 has no counterpart in either tool) and ``DGQLinear``.

Tensor names and metadata follow llama.cpp's ``convert_hf_to_gguf.py`` for ``"bert"`` and
``"llama"`` models (see :func:`to_gguf`); the vocabulary is written for BERT models only.

A quantized layer is any module with a ``.quantized`` :class:`QuantizedTensor` of shape
(out_features, in_features) and a ``.bias`` (tensor or None): ``quant.QuantLinear`` and anything
following the same contract.
"""

from __future__ import annotations

import math
import os
import re
import tempfile
import warnings
from collections.abc import Mapping

import numpy as np
import torch

from linalg_core.quant.formats import GGUF, BnbNF4, IntGroup, NormalFloat
from linalg_core.quant.tensor import QuantizedTensor

__all__ = ["to_gguf", "to_bitsandbytes"]

# GGUF's limits (the spec: tensor names of at most 64 bytes, ggml's GGML_MAX_DIMS = 4)
_MAX_NAME_BYTES = 63
_MAX_DIMS = 4
# llama.cpp's convert_hf_to_gguf.py per architecture: the tensors it drops (its loader does not
# load them) by name and by prefix, the model prefixes it strips, the suffixes it renames
_DROPPED = {"bert": {"embeddings.position_ids", "pooler.dense.weight", "pooler.dense.bias"}}
_DROPPED_PREFIXES = {"bert": ("cls.predictions", "cls.seq_relationship")}
_DROPPED_SUFFIXES = (".attention.masked_bias", ".attention.bias", ".rotary_emb.inv_freq")  # every arch
_STRIPPED = {"bert": ("bert.",)}
_RENAMED = {"bert": ((".gamma", ".weight"), (".beta", ".bias"))}
# the architectures whose llama.cpp conversion to_gguf reproduces whole (names, drops, metadata,
# llama's q/k permutation); for the others it keeps the names rather than convert halfway
_CONVERTED = {"bert", "llama"}
# llama.cpp's LlamaModel.permute of the q / k projections (rows reordered for its RoPE layout)
_PERMUTED = {"llama": (("q_proj.weight", "q_proj.bias"), ("k_proj.weight", "k_proj.bias"))}
_FLOAT_TYPES = {"f16": torch.float16, "f32": torch.float32}
_INT_DTYPES = {torch.int8, torch.int16, torch.int32, torch.int64}


def _refusal(fmt, where: str, target: str) -> str:
    """The error text for a format ``target`` (``"gguf"`` or ``"bitsandbytes"``) cannot read."""
    if isinstance(fmt, (NormalFloat, IntGroup)):
        kind = ("LQ-LoRA's NormalFloat (NF-k with quantized scales)" if isinstance(fmt, NormalFloat)
                else "IntGroup (INT-k groups)")
        head = (f"{where} is stored in {fmt}, {kind}, which no other tool reads (only linalg_core: "
                f"QuantizedTensor.save / load)")
    else:
        head = f"{where} is stored in {fmt}, which {'GGUF' if target == 'gguf' else 'bitsandbytes'} cannot hold"
    if target == "gguf":
        return (f"{head}: quantize it with 'q4_0' or 'q8_0' (GGUF's Q4_0 / Q8_0) for to_gguf, or pass its "
                f"dequantize() to write it as F16/F32" + ("; a BnbNF4 model goes to bitsandbytes with "
                                                         "to_bitsandbytes(model)" if isinstance(fmt, BnbNF4) else ""))
    return (f"{head}: quantize it with 'bnb-nf4' (BnbNF4) for to_bitsandbytes"
            + ("; a Q4_0/Q8_0 model goes to llama.cpp with to_gguf(model, path)" if isinstance(fmt, GGUF) else
               ", or with 'q4_0' / 'q8_0' for to_gguf"))


def _quantized_layers(model: torch.nn.Module, target: str) -> dict[str, torch.nn.Module]:
    """{module name: module} of the quantized layers (``.quantized`` QuantizedTensor; the outermost
    such module, so QuantLinear's ``weight`` child is part of its layer); ValueError for layers no
    export can carry (LQLinear's low-rank term, DGQLinear). A module with ``.quantized`` and no
    ``bias`` attribute (a bare QuantizedWeight) is the weight itself."""
    try:
        from linalg_core.qmatmul import DGQLinear
    except ImportError:  # pragma: no cover - qmatmul is part of the package
        DGQLinear = ()
    out = {}
    for name, m in model.named_modules(remove_duplicate=False):
        shown = name or "the model itself"
        if DGQLinear and isinstance(m, DGQLinear):
            raise ValueError(f"module {shown!r} is a DGQLinear (DGQ's A8W4 format), which "
                             f"{'GGUF' if target == 'gguf' else 'bitsandbytes'} cannot hold: quantize that layer "
                             f"with 'q4_0' / 'q8_0' for to_gguf or 'bnb-nf4' for to_bitsandbytes instead")
        if any(name.startswith(n + ".") if n else True for n in out):
            continue  # part of a layer found above (QuantLinear's QuantizedWeight child)
        Q = getattr(m, "quantized", None)
        if not isinstance(Q, QuantizedTensor):
            continue
        if getattr(m, "L1", None) is not None or getattr(m, "L2", None) is not None:
            raise ValueError(f"module {shown!r} ({type(m).__name__}) holds Q + L1·L2; "
                             f"{'a GGUF model file' if target == 'gguf' else 'bitsandbytes.nn.Linear4bit'} has no "
                             f"low-rank term: export its Q as a layer of its own and the factors as a LoRA adapter, "
                             f"or quantize W (or Q + L1·L2) into a single format")
        if len(Q.shape) != 2:
            raise ValueError(f"module {shown!r}: its .quantized has shape {Q.shape}, expected (out_features, "
                             f"in_features)")
        out[name] = m
    return out


# --- GGUF ----------------------------------------------------------------------------------------

def _check_path(path) -> str:
    if isinstance(path, bytes) or not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or os.PathLike, got {type(path).__name__} {path!r}")
    path = os.fspath(path)
    if not path or os.path.isdir(path):
        raise ValueError(f"path must name a file, got {path!r}" + (" (a directory)" if path else ""))
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise ValueError(f"path {path!r}: the folder {folder!r} does not exist")
    return path


def _float_array(name: str, t: torch.Tensor, float_type):
    """(numpy array, raw gguf type or None) of a plain tensor: 1-D float tensors as F32 (llama.cpp
    keeps norms and biases in F32), others in their dtype or ``float_type``."""
    import gguf

    t = t.detach()
    if t.dim() == 0 or t.dim() > _MAX_DIMS:
        raise ValueError(f"tensor {name!r} has shape {tuple(t.shape)}: GGUF holds tensors of 1 to {_MAX_DIMS} "
                         f"dimensions")
    if t.numel() == 0:
        raise ValueError(f"tensor {name!r} is empty (shape {tuple(t.shape)})")
    if t.dtype in _INT_DTYPES:
        return t.cpu().contiguous().numpy(), None
    if t.dtype == torch.bool:
        return t.cpu().to(torch.int8).contiguous().numpy(), None
    if not t.is_floating_point() or t.is_complex():
        raise TypeError(f"tensor {name!r} has dtype {t.dtype}, which GGUF does not hold (floats and int8/16/32/64)")
    bad = int((~torch.isfinite(t)).sum())
    if bad:
        raise ValueError(f"tensor {name!r} has {bad} NaN/Inf values")
    if t.dtype == torch.float64 and float_type is None:
        raise TypeError(f"tensor {name!r} is float64, which llama.cpp does not compute in: pass float_type='f32' "
                        f"(or 'f16') to convert it, or convert it yourself")
    if t.dim() == 1:
        target = torch.float32
    elif float_type is not None:
        target = _FLOAT_TYPES[float_type]
    else:
        target = t.dtype
    src, t = t, t.cpu().to(target).contiguous()
    if t.dtype != src.dtype:
        over = int((~torch.isfinite(t)).sum())  # the source is finite: these overflowed in the conversion
        if over:
            raise ValueError(f"tensor {name!r}: {over} values overflow {str(target).removeprefix('torch.')} (they "
                             f"would be written as Inf)" + (": pass float_type='f32'" if target == torch.float16
                                                           else ""))
    if target == torch.bfloat16:  # numpy has no bfloat16: its bits, typed BF16
        return t.view(torch.int16).numpy(), gguf.GGMLQuantizationType.BF16
    return t.numpy(), None


def _quantized_array(name: str, Q: QuantizedTensor):
    """(uint8 blocks in gguf's byte shape, Q4_0 / Q8_0) of a GGUF-format QuantizedTensor, as stored."""
    import gguf

    if not isinstance(Q.format, GGUF):
        raise ValueError(_refusal(Q.format, f"tensor {name!r}", "gguf"))
    if len(Q.shape) > _MAX_DIMS:
        raise ValueError(f"tensor {name!r} has shape {Q.shape}: GGUF holds tensors of 1 to {_MAX_DIMS} dimensions")
    qtype = getattr(gguf.GGMLQuantizationType, Q.format.type.upper())
    blocks = Q.data["blocks"].detach().cpu().contiguous().numpy()
    return blocks.reshape(gguf.quant_shape_to_byte_shape(Q.shape, qtype)), qtype


def _gguf_arch(arch: str):
    """gguf's MODEL_ARCH for an architecture name, or None when gguf-py has no tensor-name map for it."""
    import gguf

    for key, value in gguf.MODEL_ARCH_NAMES.items():
        if value == arch:
            return key
    return None


def _n_blocks(names, config) -> int:
    for key in ("num_hidden_layers", "n_layer", "num_layers", "n_layers"):
        v = getattr(config, key, None)
        if isinstance(v, int) and not isinstance(v, bool) and v > 0:
            return v
    ids = [int(x) for n in names for x in re.findall(r"(?:^|\.)(\d+)(?=\.)", n)]
    return min(max(ids, default=0) + 1, 4096)


def _rename(names, arch: str, config, prefix: str | None):
    """({original name: GGUF name}, {original name: the Hugging Face name it was matched as}) through
    gguf's TensorNameMap for ``arch``, leaving out (with a warning) the names llama.cpp's converter
    drops. ValueError for names the map cannot place."""
    import gguf

    tmap = gguf.get_tensor_name_map(_gguf_arch(arch), _n_blocks(names, config))
    dropped, dropped_prefixes = _DROPPED.get(arch, set()), _DROPPED_PREFIXES.get(arch, ())
    out, matched, skipped, unknown = {}, {}, [], []
    for n in names:
        base = n
        for p in _STRIPPED.get(arch, ()):
            if base.startswith(p):
                base = base[len(p):]
                break
        for old, new in _RENAMED.get(arch, ()):
            if base.endswith(old):
                base = base[: -len(old)] + new
        cands = [base]
        if prefix:  # the base model's prefix ("bert.", "model."): tried without it, and with it
            cands.append(base[len(prefix) + 1:] if base.startswith(prefix + ".") else f"{prefix}.{base}")
        if any(c in dropped or c.startswith(dropped_prefixes) or c.endswith(_DROPPED_SUFFIXES) for c in cands):
            skipped.append(n)
            continue
        for c in cands:
            new = tmap.get_name(c, try_suffixes=(".weight", ".bias"))
            if new is not None:
                out[n], matched[n] = new, c
                break
        else:
            unknown.append(n)
    if unknown:
        raise ValueError(f"gguf's tensor-name map for arch {arch!r} has no name for {len(unknown)} tensors: "
                         f"{unknown[:8]}{' ...' if len(unknown) > 8 else ''}; leave them out of the mapping, or pass "
                         f"an arch gguf-py does not map (e.g. arch='linalg_core') to keep the names as they are")
    if skipped:
        warnings.warn(f"to_gguf: not writing {skipped} (llama.cpp's converter drops them for arch {arch!r}; its "
                      f"loader would refuse the file with them)", UserWarning, stacklevel=3)
    return out, matched


def _permuted_rows(name: str, v, n_head: int):
    """``v`` with llama.cpp's ``LlamaModel.permute`` applied to its rows (n_head groups of two
    halves interleaved): a tensor indexed, a GGUF QuantizedTensor's blocks reordered by whole
    rows (each row is whole blocks, so this equals quantizing the permuted weight)."""
    rows = v.shape[0]
    if rows % (2 * n_head):
        raise ValueError(f"tensor {name!r} has {rows} rows, not a multiple of 2 × {n_head} heads: llama.cpp's q/k "
                         f"permutation does not apply")
    idx = torch.arange(rows).reshape(n_head, 2, rows // n_head // 2).transpose(1, 2).reshape(-1)
    if not isinstance(v, QuantizedTensor):
        return v.detach()[idx.to(v.device)]
    if not isinstance(v.format, GGUF) or len(v.shape) != 2:
        return v  # refused (or checked) where it is written
    blocks = v.data["blocks"]
    per_row = v.shape[1] // 32
    data = {"blocks": blocks.reshape(rows, per_row, -1)[idx.to(blocks.device)].reshape(blocks.shape)}
    return QuantizedTensor(v.format, v.shape, v.orig_dtype, data)


def _config_value(config, *keys):
    for k in keys:
        v = getattr(config, k, None)
        if v is None and isinstance(getattr(config, "rope_parameters", None), dict):
            v = config.rope_parameters.get(k)
        if v is not None and not isinstance(v, bool):
            return v
    return None


def _check_llama(config) -> None:
    """The head counts llama.cpp's llama conversion needs, and what it does that to_gguf does not."""
    rope = getattr(config, "rope_parameters", None) or getattr(config, "rope_scaling", None)
    kind = rope.get("rope_type", rope.get("type")) if isinstance(rope, dict) else None
    if kind not in (None, "default"):
        raise ValueError(f"to_gguf does not reproduce llama.cpp's {kind!r} RoPE scaling for arch 'llama' (its rope "
                         f"metadata / rope_freqs tensor); only models with default RoPE are converted")
    if _config_value(config, "num_local_experts"):
        raise ValueError("to_gguf does not merge llama.cpp's mixture-of-experts tensors for arch 'llama'")


def _llama_heads(config, name: str) -> tuple[int, int]:
    n_head = _config_value(config, "num_attention_heads", "n_heads")
    if not isinstance(n_head, int):
        raise ValueError(f"tensor {name!r}: arch 'llama' permutes the q/k projections by attention heads, which "
                         f"come from a transformers config: pass the model (with .config) rather than a mapping")
    n_kv = _config_value(config, "num_key_value_heads", "n_kv_heads")
    return n_head, (n_kv if isinstance(n_kv, int) else n_head)


def _config_metadata(writer, arch: str, config) -> None:
    """The hyperparameters llama.cpp's converter writes from a transformers config (TextModel's
    set_gguf_parameters), through the writer's helpers."""
    def get(*keys):
        return _config_value(config, *keys)

    for keys, add in ((("num_hidden_layers", "n_layer", "num_layers"), writer.add_block_count),
                      (("max_position_embeddings", "n_ctx", "n_positions"), writer.add_context_length),
                      (("hidden_size", "n_embd", "dim"), writer.add_embedding_length),
                      (("intermediate_size", "n_inner", "hidden_dim"), writer.add_feed_forward_length),
                      (("num_attention_heads", "n_head", "n_heads"), writer.add_head_count),
                      (("num_key_value_heads",), writer.add_head_count_kv),
                      (("vocab_size",), writer.add_vocab_size)):
        v = get(*keys)
        if isinstance(v, int):
            add(v)
    for keys, add in ((("rope_theta",), writer.add_rope_freq_base),
                      (("rms_norm_eps",), writer.add_layer_norm_rms_eps),
                      (("layer_norm_eps", "layer_norm_epsilon", "norm_epsilon"), writer.add_layer_norm_eps)):
        v = get(*keys)
        if isinstance(v, (int, float)):
            add(float(v))
    if arch == "llama":
        n_head = get("num_attention_heads", "n_heads")
        rope_dim = get("head_dim")
        if not isinstance(rope_dim, int) and isinstance(n_head, int) and isinstance(get("hidden_size"), int):
            rope_dim = get("hidden_size") // n_head
        if isinstance(rope_dim, int):
            writer.add_rope_dimension_count(rope_dim)
    if arch == "bert":
        writer.add_causal_attention(False)
        pooling = _pooling_type(config)
        if pooling is not None:
            writer.add_pooling_type(pooling)


def _bert_vocab(writer, config) -> bool:
    """llama.cpp's BERT vocabulary (its converter's ``BertModel.set_vocab``: WordPiece tokens in its
    phantom-space form, token types, special token ids) from the tokenizer in the folder a
    transformers model was loaded from; False (nothing written) when there is none."""
    import gguf

    folder = _model_dir(config)
    if folder is None or not any(os.path.isfile(os.path.join(folder, f)) for f in ("tokenizer.json", "vocab.txt")):
        return False
    try:
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(folder, local_files_only=True)
        vocab = tok.get_vocab()
        added = tok.get_added_vocab()
        decoder = tok.added_tokens_decoder
    except Exception as e:  # noqa: BLE001 - any failure to read it: no vocabulary, said so
        warnings.warn(f"to_gguf: no vocabulary written: the tokenizer in {folder!r} could not be read ({e})",
                      UserWarning, stacklevel=4)
        return False
    size = _config_value(config, "vocab_size")
    size = size if isinstance(size, int) else len(vocab)
    if max(vocab.values(), default=-1) >= size:
        raise ValueError(f"the tokenizer in {folder!r} has ids up to {max(vocab.values())}, beyond the model's "
                         f"vocab_size {size}")
    reverse = {i: t for t, i in vocab.items()}
    T = gguf.TokenType
    tokens, types = [], []
    for i in range(size):
        t = reverse.get(i)
        if t is None:
            tokens.append(f"[PAD{i}]")
            types.append(T.UNUSED)
            continue
        kind = T.NORMAL
        if t in added:
            kind = T.CONTROL if getattr(decoder.get(i), "special", False) else T.USER_DEFINED
        # phantom-space form: word pieces "##x" → "x", word starts get "▁", control tokens as they are
        tokens.append(t if kind == T.CONTROL else t[2:] if t.startswith("##") else "\u2581" + t)
        types.append(kind)
    writer.add_token_type_count(int(_config_value(config, "type_vocab_size") or 1))
    writer.add_tokenizer_model("bert")
    writer.add_tokenizer_pre("default")  # llama.cpp's WordPiece tokenizer has one pre-tokenization
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    gguf.SpecialVocab(folder, n_vocab=len(tokens)).add_to_gguf(writer, quiet=True)
    return True


def _model_dir(config):
    """The local folder a transformers model was loaded from, or None."""
    src = getattr(config, "_name_or_path", None)
    return src if isinstance(src, str) and src and os.path.isdir(src) else None


def _pooling_type(config):
    """A sentence-transformers model's pooling (its modules.json and Pooling config), as llama.cpp's
    converter reads it: MEAN, CLS or LAST; None when there is none (or another kind)."""
    import json

    import gguf

    folder = _model_dir(config)
    if folder is None or not os.path.isfile(os.path.join(folder, "modules.json")):
        return None
    try:
        with open(os.path.join(folder, "modules.json"), encoding="utf-8") as f:
            modules = json.load(f)
        path = next((m["path"] for m in modules if m.get("type") == "sentence_transformers.models.Pooling"), None)
        if path is None:
            return None
        with open(os.path.join(folder, path, "config.json"), encoding="utf-8") as f:
            pooling = json.load(f)
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    for key, kind in (("pooling_mode_mean_tokens", "MEAN"), ("pooling_mode_cls_token", "CLS"),
                      ("pooling_mode_lasttoken", "LAST")):
        if pooling.get(key):
            return getattr(gguf.PoolingType, kind)
    return None


def _file_type(entries) -> int:
    """general.file_type as llama.cpp sets it: the type most of the 2-D+ weights have."""
    import gguf

    T, F = gguf.GGMLQuantizationType, gguf.LlamaFileType
    kinds = {T.Q4_0: F.MOSTLY_Q4_0, T.Q8_0: F.MOSTLY_Q8_0, T.F16: F.MOSTLY_F16, T.BF16: F.MOSTLY_BF16}
    count: dict = {}
    for _, arr, qtype, shape in entries:
        if len(shape) >= 2:
            key = qtype if qtype is not None else {np.dtype(np.float16): T.F16}.get(arr.dtype, T.F32)
            count[key] = count.get(key, 0) + math.prod(shape)
    quantized = {k: v for k, v in count.items() if k in (T.Q4_0, T.Q8_0)}
    pool = quantized or count
    if not pool:
        return int(F.ALL_F32)
    return int(kinds.get(max(pool, key=pool.get), F.ALL_F32))


def to_gguf(model_or_tensors, path, *, arch: str | None = None, name: str | None = None,
            float_type: str | None = None) -> str:
    """Writes a GGUF file (llama.cpp's format) atomically: a temporary file in the target's folder,
    renamed over ``path`` once complete.

    Q4_0 / Q8_0 weights are written as stored: their blocks are the bytes ``gguf.quants.quantize``
    gives for the same weights, and ``gguf.GGUFReader`` reads every tensor back with the type,
    shape and bytes written.

    Tensor names: for ``arch="bert"`` (BERT / MiniLM encoders) and ``arch="llama"`` (Llama /
    Mistral-style decoders with default RoPE, no experts), the Hugging Face names are translated
    with gguf-py's ``TensorNameMap`` as llama.cpp's ``convert_hf_to_gguf.py`` does (e.g.
    ``encoder.layer.0.attention.self.query.weight`` → ``blk.0.attn_q.weight``; the tensors it
    drops, such as BERT's pooler, are left out with a warning), and llama's q/k projections get
    its row permutation (Q4_0 / Q8_0 blocks moved by whole rows: the bytes of quantizing the
    permuted weight); a name the map cannot place is a ValueError, and so is a llama config with
    RoPE scaling or experts. For any other ``arch``, or none, the names are written as given (the file is then
    readable by ``gguf`` but is not a model llama.cpp can load), with a warning for an arch gguf-py
    knows: llama.cpp's converter transforms some tensors for those (gemma's norm offsets, ...),
    and half a conversion would load and compute wrongly.

    Metadata: ``general.architecture`` (``arch``; default: a transformers model's
    ``config.model_type``, else ``"linalg_core"``), ``general.type`` = ``"model"``,
    ``general.name``, ``general.file_type`` and ``general.quantization_version`` as llama.cpp
    sets them, and, for a module with a transformers ``config``, the hyperparameters llama.cpp's
    converter writes with the writer's helpers (``{arch}.block_count``, ``context_length``,
    ``embedding_length``, ``feed_forward_length``, ``attention.head_count``,
    ``attention.layer_norm_epsilon``, ...; for BERT ``attention.causal`` and, for a
    sentence-transformers model loaded from a folder, its ``pooling_type``; for llama
    ``rope.dimension_count``). The vocabulary (``tokenizer.ggml.*``) is written for a BERT model
    loaded from a folder with its tokenizer, as llama.cpp's converter writes it; for other models
    none is written (llama.cpp needs one to load the file).

    Args:
        model_or_tensors: a mapping {name: QuantizedTensor in ``GGUF("q4_0" | "q8_0")`` | tensor},
            or an ``nn.Module``: its quantized layers (``.quantized`` in a GGUF format, ``.bias``)
            give ``<layer>.weight`` (Q4_0 / Q8_0) and ``<layer>.bias``, the rest of its
            ``state_dict`` is written as plain tensors (a tensor tied to one written before, with
            ``config.tie_word_embeddings``, is written once, as llama.cpp's converter does).
            Plain float tensors: 1-D ones as F32 (llama.cpp's convention for norms and biases,
            exact), others in their own dtype
            (float32 → F32, float16 → F16, bfloat16 → BF16) unless ``float_type`` says otherwise;
            int8/16/32/64 as I8/I16/I32/I64, bool as I8.
        path: the file to write (str or os.PathLike); its folder must exist. An existing file is
            replaced.
        arch: the architecture name (see above).
        name: ``general.name`` (default: the model's ``config._name_or_path`` or class name).
        float_type: ``"f16"`` or ``"f32"``: the type of the plain 2-D+ float tensors (llama.cpp's
            converter defaults to f16); needed for float64 ones. float16 values out of range raise.

    Returns:
        the path written (str).

    Raises:
        ValueError: a QuantizedTensor in a format GGUF has no type for (NormalFloat NF2/NF3/...,
            IntGroup, BnbNF4: the message names the format and what to use instead), an
            LQLinear or DGQLinear layer, NaN/Inf, names longer than 63 bytes, duplicate names,
            tensors of 0 or more than 4 dimensions, names the architecture's map cannot place.
        TypeError: inputs of the wrong type (naming the argument or tensor).

    Shape:
        a QuantizedTensor: (*, k) with k a multiple of 32 (any plain tensor: 1 to 4 dimensions).

    Example:
        >>> import os, tempfile, torch, gguf
        >>> from linalg_core.quant import quantize, to_gguf
        >>> W = torch.randn(64, 128, generator=torch.Generator().manual_seed(0))
        >>> path = to_gguf({"w": quantize(W, "q4_0"), "b": torch.zeros(64)},
        ...                os.path.join(tempfile.mkdtemp(), "m.gguf"))
        >>> [(t.name, t.tensor_type.name) for t in gguf.GGUFReader(path).tensors]
        [('w', 'Q4_0'), ('b', 'F32')]
    """
    import gguf

    path = _check_path(path)
    if arch is not None and (not isinstance(arch, str) or not arch or not arch.isprintable()):
        raise ValueError(f"arch must be a non-empty str, got {arch!r}")
    if name is not None and not isinstance(name, str):
        raise TypeError(f"name must be a str or None, got {type(name).__name__}")
    if float_type is not None and float_type not in _FLOAT_TYPES:
        raise ValueError(f"float_type must be None, 'f16' or 'f32', got {float_type!r}")

    config, prefix = None, None
    if isinstance(model_or_tensors, torch.nn.Module):
        model = model_or_tensors
        config = getattr(model, "config", None)
        prefix = getattr(model, "base_model_prefix", None) or None
        layers = _quantized_layers(model, "gguf")
        items: dict = {}
        state = model.state_dict()
        seen_storage = {}
        for k, v in state.items():
            if any(k.startswith(n + ".") if n else True for n in layers):
                continue
            key = (v.untyped_storage().data_ptr(), v.storage_offset(), tuple(v.shape), tuple(v.stride()), v.dtype)
            if getattr(config, "tie_word_embeddings", False) and key in seen_storage and v.numel():
                continue  # a tied copy (lm_head = embeddings): llama.cpp reads the embeddings for it
            seen_storage[key] = k
            items[k] = v
        for n, m in layers.items():
            if not hasattr(m, "bias"):  # a bare quantized weight: the tensor under its own name
                items[n or "weight"] = m.quantized
                continue
            items[f"{n}.weight" if n else "weight"] = m.quantized
            if m.bias is not None:
                items[f"{n}.bias" if n else "bias"] = m.bias
        if arch is None:
            model_type = getattr(config, "model_type", None)
            arch = model_type if isinstance(model_type, str) and model_type else None
        if name is None:
            src = getattr(config, "_name_or_path", None)
            name = os.path.basename(str(src).rstrip("/")) if src else type(model).__name__
    elif isinstance(model_or_tensors, Mapping):
        items = dict(model_or_tensors)
    else:
        raise TypeError(f"model_or_tensors must be an nn.Module or a mapping of names to QuantizedTensor / "
                        f"tensors, got {type(model_or_tensors).__name__}")
    if not items:
        raise ValueError("model_or_tensors has no tensors to write")

    for k, v in items.items():
        if not isinstance(k, str) or not k:
            raise TypeError(f"tensor names must be non-empty str, got {k!r}")
        if isinstance(v, np.ndarray):
            try:  # native byte order, C order (a copy only where needed)
                items[k] = torch.from_numpy(np.ascontiguousarray(v, dtype=v.dtype.newbyteorder("=")))
            except TypeError:
                raise TypeError(f"tensor {k!r} has dtype {v.dtype}, which GGUF does not hold") from None
        elif not isinstance(v, (QuantizedTensor, torch.Tensor)):
            raise TypeError(f"tensor {k!r} must be a QuantizedTensor or a tensor, got {type(v).__name__}")

    arch = arch or "linalg_core"
    if arch in _CONVERTED:
        if arch == "llama":
            _check_llama(config)
        names, matched = _rename(list(items), arch, config, prefix)
        renamed, source = {}, {}
        for k, v in items.items():
            if k not in names:
                continue
            if names[k] in source:
                raise ValueError(f"tensors {source[names[k]]!r} and {k!r} both become {names[k]!r} in llama.cpp's "
                                 f"{arch!r} layout")
            source[names[k]] = k
            for which, suffixes in enumerate(_PERMUTED.get(arch, ())):
                if matched[k].endswith(suffixes):
                    n_head, n_kv = _llama_heads(config, k)
                    v = _permuted_rows(k, v, n_head if which == 0 else n_kv)
            renamed[names[k]] = v
        items = renamed
    elif _gguf_arch(arch) is not None:
        warnings.warn(f"to_gguf: tensor names written as given: for arch {arch!r} llama.cpp's converter does more "
                      f"than rename tensors (e.g. gemma's norm offsets, merged MoE experts), which to_gguf "
                      f"does not reproduce; it follows llama.cpp's conversion for {sorted(_CONVERTED)} only",
                      UserWarning, stacklevel=2)
    elif arch != "linalg_core":
        warnings.warn(f"to_gguf: gguf-py has no tensor-name map for arch {arch!r}: tensor names written as given",
                      UserWarning, stacklevel=2)

    entries = []
    seen = set()
    for k, v in items.items():
        if len(k.encode()) > _MAX_NAME_BYTES:
            raise ValueError(f"tensor name {k!r} is {len(k.encode())} bytes long; GGUF allows {_MAX_NAME_BYTES}")
        if k in seen:
            raise ValueError(f"two tensors are named {k!r}")
        seen.add(k)
        if isinstance(v, QuantizedTensor):
            arr, qtype = _quantized_array(k, v)
            entries.append((k, arr, qtype, v.shape))
        else:
            arr, qtype = _float_array(k, v, float_type)
            entries.append((k, arr, qtype, tuple(v.shape)))

    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=folder)
    os.close(fd)
    writer = None
    try:
        writer = gguf.GGUFWriter(tmp, arch)
        writer.add_type(gguf.GGUFType.MODEL)
        if name:
            writer.add_name(name)
        if config is not None and arch in _CONVERTED:
            _config_metadata(writer, arch, config)
            if arch == "bert":
                _bert_vocab(writer, config)
        writer.add_file_type(_file_type(entries))
        if any(q in (gguf.GGMLQuantizationType.Q4_0, gguf.GGMLQuantizationType.Q8_0) for _, _, q, _ in entries):
            writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
        for k, arr, qtype, _ in entries:
            writer.add_tensor(k, arr, raw_dtype=qtype)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.flush()
        for f in writer.fout:
            os.fsync(f.fileno())
        writer.close()
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        if writer is not None:
            writer.close()
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return path


# --- bitsandbytes ----------------------------------------------------------------------------------

def _linear4bit(m: torch.nn.Module):
    """A ``bitsandbytes.nn.Linear4bit`` holding the stored NF4 codes and quant state of ``m``."""
    import bitsandbytes as bnb

    Q = m.quantized
    fmt = Q.format
    out_f, in_f = Q.shape
    packed, state = Q.to_bitsandbytes()
    bias = getattr(m, "bias", None)
    lin = bnb.nn.Linear4bit(in_f, out_f, bias=bias is not None, compute_dtype=Q.orig_dtype,
                            compress_statistics=fmt.double_quant, quant_type="nf4", device="meta")
    lin.weight = bnb.nn.Params4bit(packed, requires_grad=False, quant_state=state, blocksize=fmt.blocksize,
                                   compress_statistics=fmt.double_quant, quant_type="nf4",
                                   quant_storage=torch.uint8, module=lin, bnb_quantized=True)
    lin.quant_state = state
    if in_f % fmt.blocksize:
        warnings.warn(f"a {out_f} x {in_f} layer with blocksize {fmt.blocksize}: bitsandbytes' CPU kernels (0.50) "
                      f"mishandle rows that are not a multiple of the block (its bfloat16 path raises, its "
                      f"AVX-512 dequantize reads the wrong block's scale); on the CPU prefer a blocksize that "
                      f"divides {in_f}", UserWarning, stacklevel=3)
    if bias is not None:
        lin.bias = torch.nn.Parameter(bias.detach().clone(), requires_grad=bool(bias.requires_grad))
    lin.train(m.training)
    return lin


def to_bitsandbytes(model: torch.nn.Module) -> torch.nn.Module:
    """Replaces, in place, every quantized layer of ``model`` (``.quantized`` a :class:`BnbNF4`
    QuantizedTensor, ``.bias``) by a ``bitsandbytes.nn.Linear4bit`` holding the same codes and
    quant state (:meth:`QuantizedTensor.to_bitsandbytes`: nothing is re-quantized, the codes are
    shared), and returns the model (the new module when ``model`` itself is such a layer).

    Every layer is checked before any is replaced: a quantized layer in another format (NF2/NF3
    and the other NormalFloat formats and IntGroup are read by linalg_core only; Q4_0/Q8_0 go to
    llama.cpp with :func:`to_gguf`), an LQLinear (its L1·L2 term has no place in Linear4bit) or
    a DGQLinear is a ValueError naming the module and the format to use instead, and the model
    is left as it was. The Linear4bit's ``compute_dtype`` is the weights' original dtype; the
    bias is copied; a layer shared under several names becomes one shared Linear4bit.

    Args:
        model: an ``nn.Module`` quantized in place with the ``"bnb-nf4"`` (``BnbNF4``) format.

    Returns:
        ``model``, its NF4 layers now ``bitsandbytes.nn.Linear4bit`` modules.

    Raises:
        ImportError: bitsandbytes is not installed.
        ValueError: no BnbNF4 layer in ``model``, or a layer bitsandbytes cannot hold (see above).
        TypeError: ``model`` is not an ``nn.Module``.

    Shape:
        each layer's ``.quantized``: (out_features, in_features).

    Example:
        >>> import torch
        >>> from linalg_core.quant import quantize_, to_bitsandbytes
        >>> model = quantize_(torch.nn.Sequential(torch.nn.Linear(64, 32)), "bnb-nf4")
        >>> x = torch.randn(2, 64)
        >>> y = model(x)
        >>> type(to_bitsandbytes(model)[0]).__name__, torch.allclose(model(x), y, atol=1e-5)
        ('Linear4bit', True)
    """
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    try:
        import bitsandbytes  # noqa: F401
    except ImportError as e:
        raise ImportError(f"to_bitsandbytes needs bitsandbytes (pip install bitsandbytes): {e}") from None
    layers = _quantized_layers(model, "bitsandbytes")
    for n, m in layers.items():
        if not isinstance(m.quantized.format, BnbNF4):
            raise ValueError(_refusal(m.quantized.format, f"module {n or 'the model itself'!r}", "bitsandbytes"))
        if not hasattr(m, "bias"):
            raise ValueError(f"module {n or 'the model itself'!r} ({type(m).__name__}) holds a quantized weight but "
                             f"is not a linear layer (no .bias): bitsandbytes.nn.Linear4bit replaces layers such as "
                             f"quant.QuantLinear")
    if not layers:
        raise ValueError(f"model ({type(model).__name__}) has no quantized layer (a module with a BnbNF4 .quantized): "
                         f"quantize it with the 'bnb-nf4' format first")
    new: dict[int, torch.nn.Module] = {}
    for m in layers.values():
        if id(m) not in new:
            new[id(m)] = _linear4bit(m)
    if "" in layers:
        return new[id(model)]
    for n, m in layers.items():
        parent_name, _, child = n.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, new[id(m)])
    return model
