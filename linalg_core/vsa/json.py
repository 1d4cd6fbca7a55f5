"""JSON → vector with orthogonal MBAT, decoding by key path, many records at once, search.

Encoding (a record is the normalised sum of its leaf terms, each a unit vector bound along its path):

* object ``{k: v}``: the terms of v bound by the role matrix of k — binding is a matrix product, so
  ``{"a": {"b": x}}`` (M_a M_b x) and ``{"b": {"a": x}}`` (M_b M_a x) differ;
* array ``[v0, v1, …]``: the terms of v_i bound by P^i, P the sequence role;
* string: the exact-string atom plus the normalised bag of its lower-case word tokens (equal
  weights), so strings sharing words are similar;
* number: a level (thermometer) code over ``ranges[path]`` (default [0, 1]) with ``levels`` steps:
  level vectors are a random ±1 vector with a growing share of its coordinates negated, so
  cos(L_i, L_j) = 1 − |i − j|/(levels − 1) and nearby numbers give similar vectors; numbers
  decode to the resolution of the grid;
* ``true``, ``false``, ``null``, ``{}``, ``[]``: atoms.

Capacity: with D dimensions, a record of K leaf terms decodes a key among N candidates with
≈99 % accuracy while K ≲ D / (√(2 ln N) + 2.3)² (e.g. D = 1024, N = 100: K ≲ 36); deeper
nesting does not cost capacity (orthogonal binding keeps norms), more leaves do. Terms are not
renormalised per nesting level, so an object weighs by its number of leaves.
"""

from __future__ import annotations

import json
import math
import re
from collections import defaultdict

import torch

from linalg_core import random as lcrandom
from linalg_core.vsa.mbat import MBAT, _stream

SEQ = "__seq__"
_TOKEN = re.compile(r"\w+", re.UNICODE)


def _path_str(path) -> str:
    """Dotted key path without array indices (the key of ``ranges``)."""
    return ".".join(str(p) for p in path if not isinstance(p, int))


def _show(path) -> str:
    out = "$"
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else f".{p}"
    return out


def _leaves(obj, path=()):
    """(path, kind, payload) for every leaf; raises TypeError / ValueError for non-JSON values."""
    if isinstance(obj, dict):
        if not obj:
            yield path, "atom", "{}"
        for k, v in obj.items():
            if not isinstance(k, str):
                raise TypeError(f"object key {k!r} at {_show(path)} is a {type(k).__name__}; JSON keys are strings")
            yield from _leaves(v, path + (k,))
    elif isinstance(obj, (list, tuple)):
        if not obj:
            yield path, "atom", "[]"
        for i, v in enumerate(obj):
            yield from _leaves(v, path + (i,))
    elif isinstance(obj, bool):
        yield path, "atom", "true" if obj else "false"
    elif obj is None:
        yield path, "atom", "null"
    elif isinstance(obj, (int, float)):
        if not math.isfinite(obj):
            raise ValueError(f"number {obj!r} at {_show(path)} is not finite; JSON numbers are finite")
        yield path, "number", float(obj)
    elif isinstance(obj, str):
        yield path, "string", obj
    else:
        raise TypeError(f"value at {_show(path)} has type {type(obj).__name__}, which is not a JSON type "
                        f"(object, array, string, number, true, false, null)")


class Codec:
    """The leaf vectors of one MBAT codebook: atoms, strings, number levels."""

    def __init__(self, mbat: MBAT, ranges=None, levels: int = 32):
        if not isinstance(mbat, MBAT):
            raise TypeError(f"mbat must be a linalg_core.vsa.MBAT, got {type(mbat).__name__}")
        if isinstance(levels, bool) or not isinstance(levels, int) or levels < 2:
            raise ValueError(f"levels must be an integer >= 2, got {levels!r}")
        self.mbat, self.levels = mbat, levels
        self.ranges = {} if ranges is None else (dict(ranges) if isinstance(ranges, dict) else {"*": tuple(ranges)})
        D = mbat.dim
        base = lcrandom.rademacher(D, seed=mbat.seed, stream=_stream("levels", "base"))
        order = torch.argsort(lcrandom.uint32(D, seed=mbat.seed, stream=_stream("levels", "order")), stable=True)
        flips = torch.zeros(levels, D)
        for j in range(levels):
            flips[j, order[: round(j * D / (2 * (levels - 1)))]] = 1
        self.level_vectors = base * (1 - 2 * flips) / math.sqrt(D)
        self._strings: dict[str, torch.Tensor] = {}  # repeated strings (names, categories) encoded once

    def range_of(self, path) -> tuple[float, float]:
        return self.ranges.get(_path_str(path), self.ranges.get("*", (0.0, 1.0)))

    def leaf(self, path, kind, payload) -> torch.Tensor:
        m = self.mbat
        if kind == "atom":
            return m.atom(payload)
        if kind == "string":
            v = self._strings.get(payload)
            if v is None:
                v = self._string(payload)
                if len(self._strings) < 100_000:
                    self._strings[payload] = v
            return v
        lo, hi = self.range_of(path)
        t = 0.0 if hi == lo else (payload - lo) / (hi - lo)
        j = min(self.levels - 1, max(0, round(t * (self.levels - 1))))
        return self.level_vectors[j]

    def _string(self, payload: str) -> torch.Tensor:
        m = self.mbat
        exact = m.atom("str:" + payload)
        toks = [t.lower() for t in _TOKEN.findall(payload)]
        if not toks:
            return exact
        v = exact + m.bundle([m.atom("tok:" + t) for t in toks])
        return v / v.norm()

    def encode_many(self, records) -> torch.Tensor:
        """(n, D): records grouped by leaf path, each group bound in one batched call per path step."""
        groups = defaultdict(list)  # path -> [(record index, leaf vector)]
        for r, obj in enumerate(records):
            for path, kind, payload in _leaves(obj):
                groups[path].append((r, self.leaf(path, kind, payload)))
        out = torch.zeros(len(records), self.mbat.dim)
        for path, items in groups.items():
            idx = torch.tensor([r for r, _ in items])
            V = torch.stack([v for _, v in items])
            for step in reversed(path):  # innermost binding first: M_k1 (M_k2 (... leaf))
                V = self.mbat.role(SEQ).power(V, step) if isinstance(step, int) else self.mbat.bind("key:" + step, V)
            out.index_add_(0, idx, V)
        n = out.norm(dim=1, keepdim=True)
        return out / torch.where(n > 0, n, torch.ones_like(n))


def encode_json(obj, *, mbat: MBAT, ranges=None, levels: int = 32) -> torch.Tensor:
    """One JSON value (parsed: dict / list / str / int / float / bool / None) as a unit vector (D,).

    Args:
        obj: the value.
        mbat: the codebook (dimension, kind of role matrices, seed).
        ranges: number ranges, ``{"dotted.key.path": (lo, hi)}`` or one ``(lo, hi)`` for all (default
            [0, 1]); :func:`fit_ranges` computes them from data.
        levels: steps of the number code.

    Shape:
        out: (D,)

    Example:
        >>> from linalg_core.vsa import MBAT, encode_json
        >>> m = MBAT(1024, seed=0)
        >>> a, b = encode_json({"a": {"b": 1}}, mbat=m), encode_json({"b": {"a": 1}}, mbat=m)
        >>> float(m.similarity(a, b)) < 0.2
        True
    """
    return Codec(mbat, ranges, levels).encode_many([obj])[0]


def fit_ranges(records) -> dict[str, tuple[float, float]]:
    """{dotted key path: (min, max)} of the numbers in records (the ``ranges`` of the encoders)."""
    lo, hi = {}, {}
    for obj in records:
        for path, kind, payload in _leaves(obj):
            if kind == "number":
                p = _path_str(path)
                lo[p], hi[p] = min(lo.get(p, payload), payload), max(hi.get(p, payload), payload)
    return {p: (lo[p], hi[p]) for p in lo}


def read_records(source) -> list:
    """Records from a JSON Lines file, a JSON file holding an array, or an iterable of values."""
    if isinstance(source, (str, bytes)) or hasattr(source, "__fspath__"):
        import os

        path = os.fspath(source)
        with open(path, encoding="utf-8") as f:
            text = f.read()
        stripped = text.lstrip()
        if stripped.startswith("["):
            return json.loads(text)
        records = []
        for i, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError as e:
                    raise ValueError(f"{path}:{i}: not valid JSON ({e.msg})") from None
        return records
    return list(source)


def encode_jsonl(source, *, mbat: MBAT, ranges="fit", levels: int = 32, batch: int = 4096) -> torch.Tensor:
    """Many records → (n, D) unit vectors, ``batch`` records at a time through the batched binding
    of :class:`Codec` (one role application per distinct key path and batch).

    ``source``: a ``.jsonl`` path (or a ``.json`` array), or an iterable of parsed values.
    ``ranges="fit"``: number ranges from the records themselves (:func:`fit_ranges`).

    Shape:
        out: (number of records, D)
    """
    records = read_records(source)
    if isinstance(ranges, str) and ranges == "fit":
        ranges = fit_ranges(records)
    codec = Codec(mbat, ranges, levels)
    parts = [codec.encode_many(records[i:i + batch]) for i in range(0, len(records), batch)]
    return torch.cat(parts) if parts else torch.zeros(0, mbat.dim)


def _parse_path(path) -> tuple:
    if isinstance(path, (list, tuple)):
        return tuple(path)
    if not isinstance(path, str):
        raise TypeError(f"path must be a string like 'a.b[2]' or a list of keys and indices, got {type(path).__name__}")
    out = []
    for part in re.finditer(r"([^.\[\]]+)|\[(\d+)\]", path):
        out.append(int(part.group(2)) if part.group(2) is not None else part.group(1))
    return tuple(out)


def query(vec: torch.Tensor, path, candidates, *, mbat: MBAT, ranges=None, levels: int = 32, strict: bool = True):
    """The candidate value stored at ``path`` in an encoded record: unbind along the path, then
    the candidate whose encoding is nearest in cosine.

    Args:
        vec: an encoded record (D,).
        path: ``"a.b[2]"`` or ``["a", "b", 2]``.
        candidates: JSON values to choose from.
        strict: raise ValueError when even the best candidate is at the noise level of unrelated
            vectors ((√(2 ln N) + 1.5)/√D): the path is not in the record, or the value is not
            among the candidates.

    Returns:
        (value, cosine).

    Shape:
        vec: (D,)

    Example:
        >>> from linalg_core.vsa import MBAT, encode_json, query
        >>> m = MBAT(2048, seed=0)
        >>> v = encode_json({"name": "ada", "langs": ["en", "fr"]}, mbat=m)
        >>> query(v, "langs[1]", ["en", "fr", "de"], mbat=m)[0]
        'fr'
    """
    steps = _parse_path(path)
    if not candidates:
        raise ValueError("candidates is empty")
    y = vec
    for step in steps:
        y = mbat.role(SEQ).power(y, -step) if isinstance(step, int) else mbat.unbind("key:" + str(step), y)
    codec = Codec(mbat, ranges, levels)
    C = torch.stack([_value_vector(codec, c, steps) for c in candidates])
    sims = torch.nn.functional.cosine_similarity(y[None], C, dim=-1)
    best = int(sims.argmax())
    level = (math.sqrt(2 * math.log(max(len(candidates), 2))) + 1.5) / math.sqrt(mbat.dim)
    if strict and float(sims[best]) < level:
        raise ValueError(f"path {_show(steps)} is not in the record (or its value is not among the candidates): "
                         f"best cosine {float(sims[best]):.3f} is below the noise level {level:.3f}")
    return candidates[best], float(sims[best])


def _value_vector(codec: Codec, value, base_path) -> torch.Tensor:
    """The encoding of a value as it would sit at base_path (its own sub-structure bound below)."""
    total = torch.zeros(codec.mbat.dim)
    for path, kind, payload in _leaves(value):
        v = codec.leaf(tuple(base_path) + path, kind, payload)[None]
        for step in reversed(path):
            v = codec.mbat.role(SEQ).power(v, step) if isinstance(step, int) else codec.mbat.bind("key:" + step, v)
        total += v[0]
    return total


def search(index: torch.Tensor, query_vec: torch.Tensor, k: int = 5) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k cosine neighbours of ``query_vec`` among the rows of ``index``: (indices, cosines).

    Shape:
        index: (n, D);  query_vec: (D,);  indices, cosines: (min(k, n),)
    """
    from linalg_core import _validate

    k = _validate.integer(k, "k", low=1)
    if index.dim() != 2 or query_vec.shape[-1] != index.shape[1]:
        raise ValueError(f"index must be (n, D) and query_vec (D,); got {tuple(index.shape)} and "
                         f"{tuple(query_vec.shape)}")
    sims = torch.nn.functional.normalize(index.float(), dim=1) @ torch.nn.functional.normalize(query_vec.float(), dim=0)
    top = torch.topk(sims, min(k, index.shape[0]))
    return top.indices, top.values
