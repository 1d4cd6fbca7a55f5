"""JSON → vector with orthogonal MBAT, decoding by key path, many records at once, search.

Encoding (a record is the normalised sum of its leaf terms, each a unit vector bound along its path):

* object ``{k: v}``: the terms of v bound by the role matrix of k — binding is a matrix product, so
  ``{"a": {"b": x}}`` (M_a M_b x) and ``{"b": {"a": x}}`` (M_b M_a x) differ;
* array ``[v0, v1, …]``: the terms of v_i bound by P^i, P the sequence role, summed by Horner's
  rule (v0 + P(v1 + P(v2 + …))): an array of n elements costs n − 1 products with P, batched over
  the records that hold it;
* string: the exact-string atom plus the normalised bag of its lower-case word tokens (equal
  weights), so strings sharing words are similar;
* number, by default (no range for its key path): a scale-free code, the exact-value atom plus a
  magnitude vector with equal weights. The magnitude vector is random Fourier features of ln|x|
  (independent phases for negative numbers), so cos(x, x') ≈ ½ exp(−ln(x/x')² / (2w²)) with
  w = ``SCALE_FREE_WIDTH`` (0.1: numbers a few percent apart are similar, a factor 1.25 apart
  nearly orthogonal) at every magnitude, and every distinct value keeps an atom of its own
  (1 and 1.0 are the same value; 0 is its atom alone). Integers beyond 2⁵³ keep their exact
  digits in the atom;
* number with a range (``ranges[path]``, or ``ranges["*"]`` for every path; :func:`fit_ranges`
  computes them from data): a level (thermometer) code over [lo, hi] with ``levels`` steps:
  level vectors are a random ±1 vector with a growing share of its coordinates negated, so
  cos(L_i, L_j) = 1 − |i − j|/(levels − 1) and nearby numbers give similar vectors; numbers
  decode to the resolution of the grid. A number outside its range is clamped to it and
  reported: ``out_of_range="warn"`` (default) issues one ``UserWarning`` per key path with the
  count, the range and the first such value's record and path; ``"error"`` raises ValueError;
  ``"clamp"`` clamps silently (asked for);
* ``true``, ``false``, ``null``, ``{}``, ``[]``: atoms.

Limits (keyword arguments of every encoder): ``max_depth`` (default ``MAX_DEPTH`` = 100) levels
of nesting and ``max_leaves`` (default ``MAX_LEAVES`` = 100 000) leaf values per record; beyond
them, and for cyclic containers or integers beyond the float64 range, ValueError naming the key
path and the limit. :func:`query` refuses array indices ≥ ``max_leaves`` (no record the encoder
accepts has them).

Capacity: with D dimensions, a record of K leaf terms decodes a key among N candidates with
≈99 % accuracy while K ≲ D / (√(2 ln N) + 2.3)² (e.g. D = 1024, N = 100: K ≲ 36); deeper
nesting does not cost capacity (orthogonal binding keeps norms), more leaves do. Terms are not
renormalised per nesting level, so an object weighs by its number of leaves.
"""

from __future__ import annotations

import json
import math
import numbers
import re
import warnings

import torch

from linalg_core import _validate
from linalg_core import random as lcrandom
from linalg_core.vsa.mbat import MBAT, _stream

SEQ = "__seq__"
MAX_DEPTH = 100
MAX_LEAVES = 100_000
SCALE_FREE_WIDTH = 0.1
OUT_OF_RANGE = ("warn", "error", "clamp")
_TOKEN = re.compile(r"\w+", re.UNICODE)
_END = object()


def _path_str(path) -> str:
    """Dotted key path without array indices (the key of ``ranges``)."""
    return ".".join(str(p) for p in path if not isinstance(p, int))


def _show(path) -> str:
    steps = [f"[{p}]" if isinstance(p, int) else f".{p}" for p in path]
    if len(steps) > 24:
        steps = steps[:12] + [f"…({len(steps) - 20} more)…"] + steps[-8:]
    return "$" + "".join(steps)


def _limits(max_depth, max_leaves) -> tuple[int, int]:
    return _validate.integer(max_depth, "max_depth", low=1), _validate.integer(max_leaves, "max_leaves", low=1)


def _scalar(value, path):
    """(kind, payload) of a JSON scalar; raises TypeError / ValueError for anything else."""
    if isinstance(value, bool):
        return "atom", "true" if value else "false"
    if value is None:
        return "atom", "null"
    if isinstance(value, str):
        return "string", value
    if isinstance(value, numbers.Integral):
        value = int(value)
        try:
            float(value)
        except OverflowError:
            raise ValueError(f"number at {_show(path)} ({value.bit_length()} bits) does not fit a float64 "
                             f"(magnitude below 1.8e308)") from None
        return "number", value
    if isinstance(value, numbers.Real):
        f = float(value)
        if not math.isfinite(f):
            raise ValueError(f"number {value!r} at {_show(path)} is not finite; JSON numbers are finite")
        return "number", f
    raise TypeError(f"value at {_show(path)} has type {type(value).__name__}, which is not a JSON type "
                    f"(object, array, string, number, true, false, null)")


def _leaves(obj, max_depth: int = MAX_DEPTH, max_leaves: int = MAX_LEAVES):
    """(path, kind, payload) for every leaf, depth first without recursion; raises TypeError /
    ValueError for non-JSON values, cycles, nesting beyond max_depth, more than max_leaves leaves."""
    path: list = []
    frames: list = []  # (iterator over (key, child), id of the container, is a dict) of the open containers
    open_ids: set = set()
    count = 0
    value = obj
    while True:
        is_dict = isinstance(value, dict)
        if is_dict or isinstance(value, (list, tuple)):
            if not value:
                count += 1
                if count > max_leaves:
                    raise ValueError(f"record has more than max_leaves={max_leaves} leaf values (the next at "
                                     f"{_show(path)})")
                yield tuple(path), "atom", "{}" if is_dict else "[]"
            else:
                if id(value) in open_ids:
                    raise ValueError(f"cyclic reference at {_show(path)}: the value contains itself (JSON is a tree)")
                if len(path) >= max_depth:
                    raise ValueError(f"value at {_show(path)} nests deeper than max_depth={max_depth}")
                open_ids.add(id(value))
                frames.append((iter(value.items()) if is_dict else enumerate(value), id(value), is_dict))
                path.append(None)
        else:
            count += 1
            if count > max_leaves:
                raise ValueError(f"record has more than max_leaves={max_leaves} leaf values (the next at "
                                 f"{_show(path)})")
            yield (tuple(path), *_scalar(value, path))
        while frames:
            it, ident, in_dict = frames[-1]
            item = next(it, _END)
            if item is not _END:
                key, value = item
                if in_dict and not isinstance(key, str):
                    raise TypeError(f"object key {key!r} at {_show(path[:-1])} is a {type(key).__name__}; "
                                    f"JSON keys are strings")
                path[-1] = key
                break
            frames.pop()
            open_ids.discard(ident)
            path.pop()
        else:
            return


def _number_key(x) -> str:
    """Canonical text of a number for its exact-value atom: 3 and 3.0 agree; integers that no
    float64 holds keep their digits."""
    if isinstance(x, int):
        f = float(x)
        if int(f) != x:
            return str(x)
        x = f
    if x == 0:
        return "0"
    if x.is_integer() and abs(x) < 2**53:
        return str(int(x))
    return repr(x)


def _check_ranges(ranges) -> dict:
    if ranges is None:
        return {}
    items = ranges.items() if isinstance(ranges, dict) else [("*", ranges)]
    out = {}
    for p, r in items:
        if not isinstance(p, str):
            raise TypeError(f"ranges keys must be dotted key paths (strings), got {p!r}")
        try:
            lo, hi = (float(v) for v in r)
        except (TypeError, ValueError):
            raise TypeError(f"ranges[{p!r}] must be a pair (lo, hi) of numbers, got {r!r}") from None
        if not (math.isfinite(lo) and math.isfinite(hi) and lo <= hi):
            raise ValueError(f"ranges[{p!r}] = {r!r} must be finite with lo <= hi")
        out[p] = (lo, hi)
    return out


def _add_rows(acc: torch.Tensor, idx: torch.Tensor, V: torch.Tensor) -> None:
    """acc[idx[j]] += V[j] (idx may repeat). index_add_ has a large fixed cost per call (its thread
    pool), index_put_ a larger cost per row: the cheaper one for the size."""
    if V.shape[0] <= 256:
        acc.index_put_((idx,), V, accumulate=True)
    else:
        acc.index_add_(0, idx, V)


class _Node:
    """A key path shared by leaves of one or more records: its own leaves and its children."""

    __slots__ = ("rows", "vecs", "keys", "items")

    def __init__(self):
        self.rows, self.vecs, self.keys, self.items = [], [], {}, {}


class Codec:
    """The leaf vectors of one MBAT codebook (atoms, strings, numbers) and the batched encoder.

    Args:
        mbat: the codebook.
        ranges: number ranges for the level code, ``{"dotted.key.path": (lo, hi)}`` or one
            ``(lo, hi)`` for every path; paths without a range get the scale-free code.
        levels: steps of the level code.
        out_of_range: ``"warn"`` (clamp and warn once per key path), ``"error"`` or ``"clamp"``.
        max_depth, max_leaves: the limits of every record (see the module documentation).

    Randomness: the level and number codes come from streams of ``mbat.seed`` named by
    :func:`stable_hash`: the same codebook gives the same vectors in every process.

    Shape:
        encode_many(records): (len(records), D)

    Example:
        >>> import torch
        >>> from linalg_core.vsa import MBAT, Codec, encode_jsonl, fit_ranges
        >>> records = [{"name": "a", "hp": 100}, {"name": "b", "hp": 150}]
        >>> m = MBAT(256, seed=0)
        >>> codec = Codec(m, fit_ranges(records))
        >>> V = codec.encode_many(records)
        >>> tuple(V.shape), torch.allclose(V, encode_jsonl(records, mbat=m))
        ((2, 256), True)
    """

    def __init__(self, mbat: MBAT, ranges=None, levels: int = 32, *, out_of_range: str = "warn",
                 max_depth: int = MAX_DEPTH, max_leaves: int = MAX_LEAVES):
        if not isinstance(mbat, MBAT):
            raise TypeError(f"mbat must be a linalg_core.vsa.MBAT, got {type(mbat).__name__}")
        if isinstance(levels, bool) or not isinstance(levels, int) or levels < 2:
            raise ValueError(f"levels must be an integer >= 2, got {levels!r}")
        self.mbat, self.levels = mbat, levels
        self.ranges = _check_ranges(ranges)
        self.out_of_range = _validate.choice(out_of_range, "out_of_range", OUT_OF_RANGE)
        self.max_depth, self.max_leaves = _limits(max_depth, max_leaves)
        D = mbat.dim
        base = lcrandom.rademacher(D, seed=mbat.seed, stream=_stream("levels", "base"))
        order = torch.argsort(lcrandom.uint32(D, seed=mbat.seed, stream=_stream("levels", "order")), stable=True)
        flips = torch.zeros(levels, D)
        for j in range(levels):
            flips[j, order[: round(j * D / (2 * (levels - 1)))]] = 1
        self.level_vectors = base * (1 - 2 * flips) / math.sqrt(D)
        self._freq = lcrandom.normal(D, seed=mbat.seed, stream=_stream("numbers", "frequency"),
                                     dtype=torch.float64) / SCALE_FREE_WIDTH
        u = lcrandom.uint32(2 * D, seed=mbat.seed, stream=_stream("numbers", "phase")).to(torch.float64)
        self._phase = (u * (2 * math.pi / 2**32)).view(2, D)  # rows: positive, negative numbers
        self._strings: dict[str, torch.Tensor] = {}  # repeated strings (names, categories) encoded once
        self._clamped: dict[str, list] = {}

    def range_of(self, path) -> tuple[float, float] | None:
        """The level-code range of a key path, or None (the scale-free code)."""
        return self.ranges.get(_path_str(path), self.ranges.get("*"))

    def leaf(self, path, kind, payload, *, record=None) -> torch.Tensor:
        """The unit vector of a leaf at ``path`` (``record``: its index, for reports).

        Args:
            path: the leaf's key path, a tuple of keys and indices.
            kind: ``"atom"`` (payload: an atom name), ``"string"`` or ``"number"``.
            payload: the leaf's value.
            record: the record's index, named in out-of-range reports.

        Returns:
            The leaf vector (numbers: the level code where ``path`` has a range, else the
            scale-free code).

        Shape:
            out: (D,)
        """
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
        p = _path_str(path)
        key = p if p in self.ranges else "*"
        r = self.ranges.get(key)
        if r is None:
            return self._scale_free(payload)
        lo, hi = r
        x = float(payload)
        if x < lo or x > hi:
            self._outside(path, key, payload, lo, hi, record)
        t = 0.0 if hi == lo else (x - lo) / (hi - lo)
        j = min(self.levels - 1, max(0, round(t * (self.levels - 1))))
        return self.level_vectors[j]

    def _outside(self, path, key, x, lo, hi, record):
        if self.out_of_range == "clamp":
            return
        where = ("" if record is None else f"record {record}, ") + f"{_show(path)} = {x!r}"
        if self.out_of_range == "error":
            raise ValueError(f"number at {where} is outside ranges[{key!r}] = [{lo:g}, {hi:g}]; widen the range, "
                             f"leave the path out of ranges for the scale-free code, or pass out_of_range='clamp'")
        entry = self._clamped.setdefault(_path_str(path), [0, where, key, lo, hi])
        entry[0] += 1

    def _flush(self, stacklevel: int) -> None:
        """One UserWarning per key path whose numbers were clamped since the last flush."""
        for p, (n, where, key, lo, hi) in self._clamped.items():
            warnings.warn(f"{n} number{'s' if n > 1 else ''} at {repr(p) if p else 'the top level'} outside "
                          f"ranges[{key!r}] = [{lo:g}, {hi:g}] clamped to it (first: {where}); widen the range, "
                          f"leave the path out of ranges for the scale-free code, or pass out_of_range='clamp' "
                          f"or 'error'", UserWarning, stacklevel=stacklevel + 1)
        self._clamped = {}

    def _scale_free(self, x) -> torch.Tensor:
        exact = self.mbat.atom("num:" + _number_key(x))
        f = float(x)
        if f == 0:
            return exact
        z = torch.cos(self._freq * math.log(abs(f)) + self._phase[0 if f > 0 else 1]).to(torch.float32)
        v = exact + z / z.norm()
        return v / v.norm()

    def _string(self, payload: str) -> torch.Tensor:
        m = self.mbat
        exact = m.atom("str:" + payload)
        toks = [t.lower() for t in _TOKEN.findall(payload)]
        if not toks:
            return exact
        v = exact + m.bundle([m.atom("tok:" + t) for t in toks])
        return v / v.norm()

    def _sum(self, values, base=(), first: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """(row index, term) pairs whose per-row sums are the unnormalised encodings of
        ``values`` as they would sit at key path ``base`` (rows may repeat).

        The leaves are gathered into a tree of key paths shared across the values; each tree edge
        is one batched product (a key's role matrix, or P by Horner's rule for array elements).
        """
        root = _Node()
        for r, obj in enumerate(values):
            for path, kind, payload in _leaves(obj, self.max_depth, self.max_leaves):
                node = root
                for step in path:
                    children = node.items if isinstance(step, int) else node.keys
                    child = children.get(step)
                    if child is None:
                        child = children[step] = _Node()
                    node = child
                node.rows.append(r)
                node.vecs.append(self.leaf(base + path, kind, payload, record=first + r))
        order = [root]
        for node in order:  # breadth first; reversed, every child comes before its parent
            order.extend(node.keys.values())
            order.extend(node.items.values())
        done: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        for node in reversed(order):
            chunks = []
            if node.rows:
                chunks.append((torch.tensor(node.rows), torch.stack(node.vecs)))
            for key, child in node.keys.items():
                idx, V = done.pop(id(child))
                chunks.append((idx, self.mbat.role("key:" + key).apply(V)))
            if node.items:
                chunks.append(self._sequence({i: done.pop(id(c)) for i, c in node.items.items()}, len(values)))
            if not chunks:
                done[id(node)] = (torch.zeros(0, dtype=torch.long), torch.zeros(0, self.mbat.dim))
            elif len(chunks) == 1:
                done[id(node)] = chunks[0]
            else:
                done[id(node)] = (torch.cat([c[0] for c in chunks]), torch.cat([c[1] for c in chunks]))
        return done[id(root)]

    def _sequence(self, items: dict, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Σ_i P^i t_i per row by Horner's rule, for the element terms ``items[i] = (rows, terms)``
        of the arrays at one key path (rows sorted by array length, so P transforms only the rows
        whose arrays are still running: one row-product per element after the first)."""
        n_max = max(items) + 1
        length = torch.zeros(n, dtype=torch.long)
        for i in sorted(items):
            length[items[i][0]] = i + 1
        rows = torch.nonzero(length).flatten()
        L = length[rows]
        order = torch.argsort(L, descending=True, stable=True)
        rows, L = rows[order], L[order]
        pos = torch.empty(n, dtype=torch.long)
        pos[rows] = torch.arange(rows.numel())
        running = torch.searchsorted(-L, -torch.arange(n_max + 1), side="left")  # rows with length > i
        P = self.mbat.role(SEQ)
        acc = torch.zeros(rows.numel(), self.mbat.dim)
        for i in range(n_max - 1, -1, -1):
            if i < n_max - 1:
                c = int(running[i + 1])
                acc[:c] = P.apply(acc[:c])
            idx, V = items[i]
            _add_rows(acc, pos[idx], V)
        return rows, acc

    def _encode(self, records, first: int = 0) -> torch.Tensor:
        idx, V = self._sum(records, first=first)
        out = torch.zeros(len(records), self.mbat.dim)
        _add_rows(out, idx, V)
        n = out.norm(dim=1, keepdim=True)
        return out / torch.where(n > 0, n, torch.ones_like(n))

    def encode_many(self, records) -> torch.Tensor:
        """Unit vectors of parsed JSON records, batched (see :class:`Codec`).

        Args:
            records: a list of parsed JSON values.

        Returns:
            One unit vector per record.

        Shape:
            out: (len(records), D)
        """
        out = self._encode(records)
        self._flush(stacklevel=2)
        return out


def encode_json(obj, *, mbat: MBAT, ranges=None, levels: int = 32, out_of_range: str = "warn",
                max_depth: int = MAX_DEPTH, max_leaves: int = MAX_LEAVES) -> torch.Tensor:
    """One JSON value (parsed: dict / list / str / int / float / bool / None) as a unit vector (D,)
    (the MBAT JSON representation of Gallant 2022: each key binds its value with the key's role
    matrix, siblings are bundled).

    Args:
        obj: the value.
        mbat: the codebook (dimension, kind of role matrices, seed).
        ranges: number ranges of the level code, ``{"dotted.key.path": (lo, hi)}`` or one
            ``(lo, hi)`` for all; numbers at paths without a range get the scale-free code
            (default: every number). :func:`fit_ranges` computes ranges from data.
        levels: steps of the level code.
        out_of_range: a number outside its range is clamped and ``"warn"`` (a UserWarning per key
            path), ``"error"`` (ValueError) or ``"clamp"`` (silently).
        max_depth: levels of nesting allowed (ValueError beyond, naming the key path).
        max_leaves: leaf values allowed in the record (ValueError beyond).

    Shape:
        out: (D,)

    Example:
        >>> from linalg_core.vsa import MBAT, encode_json
        >>> m = MBAT(1024, seed=0)
        >>> a, b = encode_json({"a": {"b": 1}}, mbat=m), encode_json({"b": {"a": 1}}, mbat=m)
        >>> float(m.similarity(a, b)) < 0.2
        True
    """
    codec = Codec(mbat, ranges, levels, out_of_range=out_of_range, max_depth=max_depth, max_leaves=max_leaves)
    out = codec._encode([obj])[0]
    codec._flush(stacklevel=2)
    return out


def fit_ranges(records, *, max_depth: int = MAX_DEPTH, max_leaves: int = MAX_LEAVES) -> dict[str, tuple[float, float]]:
    """{dotted key path: (min, max)} of the numbers in records (the ``ranges`` of the encoders).

    Args:
        records: an iterable of parsed JSON values.
        max_depth, max_leaves: the limits of :func:`encode_json`, checked here too.

    Returns:
        A dict from dotted key path to ``(min, max)`` as floats.

    Example:
        >>> from linalg_core.vsa import fit_ranges
        >>> fit_ranges([{"hp": 100, "w": {"x": 1.5}}, {"hp": 150, "w": {"x": 0.5}}])
        {'hp': (100.0, 150.0), 'w.x': (0.5, 1.5)}
    """
    max_depth, max_leaves = _limits(max_depth, max_leaves)
    lo, hi = {}, {}
    for obj in records:
        for path, kind, payload in _leaves(obj, max_depth, max_leaves):
            if kind == "number":
                p, x = _path_str(path), float(payload)
                lo[p], hi[p] = min(lo.get(p, x), x), max(hi.get(p, x), x)
    return {p: (lo[p], hi[p]) for p in lo}


def read_records(source) -> list:
    """Records from a JSON Lines file, a JSON file holding an array, or an iterable of values.

    Malformed or too deeply nested JSON raises ValueError naming the file (and line).

    Args:
        source: a path (str, bytes or ``os.PathLike``) to a ``.jsonl`` or ``.json`` file, or an
            iterable of parsed values.

    Returns:
        The records as a list.

    Example:
        >>> import os, tempfile
        >>> from linalg_core.vsa import read_records
        >>> with tempfile.TemporaryDirectory() as d:
        ...     path = os.path.join(d, "cars.jsonl")
        ...     with open(path, "w") as f:
        ...         print('{"name": "a", "hp": 100}', file=f)
        ...         print('{"name": "b", "hp": 150}', file=f)
        ...     read_records(path)
        [{'name': 'a', 'hp': 100}, {'name': 'b', 'hp': 150}]
    """
    if isinstance(source, (str, bytes)) or hasattr(source, "__fspath__"):
        import os

        path = os.fspath(source)
        if isinstance(path, bytes):
            path = os.fsdecode(path)
        with open(path, encoding="utf-8") as f:
            text = f.read()
        stripped = text.lstrip()
        if stripped.startswith("["):
            return _loads(text, path)
        return [_loads(line, f"{path}:{i}") for i, line in enumerate(text.splitlines(), 1) if line.strip()]
    return list(source)


def _loads(text: str, where: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"{where}: not valid JSON ({e.msg} at line {e.lineno} column {e.colno})") from None
    except RecursionError:
        raise ValueError(f"{where}: nested too deeply for the JSON parser") from None


def encode_jsonl(source, *, mbat: MBAT, ranges="fit", levels: int = 32, batch: int = 4096,
                 out_of_range: str = "warn", max_depth: int = MAX_DEPTH, max_leaves: int = MAX_LEAVES) -> torch.Tensor:
    """Many records → (n, D) unit vectors, ``batch`` records at a time through the batched
    encoder of :class:`Codec` (one product per key-path edge and batch, one per array element).

    ``source``: a ``.jsonl`` path (or a ``.json`` array), or an iterable of parsed values.
    ``ranges="fit"``: number ranges from the records themselves (:func:`fit_ranges`: level code
    everywhere, nothing out of range); ``None``: the scale-free code; otherwise as in
    :func:`encode_json`, like ``out_of_range``, ``max_depth`` and ``max_leaves``.

    Args:
        source: a path or an iterable of parsed values (see :func:`read_records`).
        mbat: the codebook.
        ranges: ``"fit"``, None, or ranges as for :func:`encode_json`.
        levels: steps of the level code.
        batch: records encoded per batch, ≥ 1.
        out_of_range, max_depth, max_leaves: as for :func:`encode_json`.

    Returns:
        One unit vector per record (float32).

    Shape:
        out: (number of records, D)

    Example:
        >>> from linalg_core.vsa import MBAT, encode_jsonl, search
        >>> records = [{"name": "a", "hp": 100}, {"name": "b", "hp": 150}, {"name": "c", "hp": 90}]
        >>> V = encode_jsonl(records, mbat=MBAT(256, seed=0))
        >>> tuple(V.shape), search(V, V[1], k=1)[0].tolist()
        ((3, 256), [1])
    """
    batch = _validate.integer(batch, "batch", low=1)
    max_depth, max_leaves = _limits(max_depth, max_leaves)
    records = read_records(source)
    if isinstance(ranges, str) and ranges == "fit":
        ranges = fit_ranges(records, max_depth=max_depth, max_leaves=max_leaves)
    codec = Codec(mbat, ranges, levels, out_of_range=out_of_range, max_depth=max_depth, max_leaves=max_leaves)
    parts = [codec._encode(records[i:i + batch], first=i) for i in range(0, len(records), batch)]
    codec._flush(stacklevel=2)
    return torch.cat(parts) if parts else torch.zeros(0, mbat.dim)


def _parse_path(path) -> tuple:
    if isinstance(path, (list, tuple)):
        steps = tuple(path)
    elif isinstance(path, str):
        steps = tuple(int(m.group(2)) if m.group(2) is not None else m.group(1)
                      for m in re.finditer(r"([^.\[\]]+)|\[(\d+)\]", path))
    else:
        raise TypeError(f"path must be a string like 'a.b[2]' or a list of keys and indices, got {type(path).__name__}")
    for s in steps:
        if isinstance(s, bool) or not isinstance(s, (str, int)):
            raise TypeError(f"path {path!r}: steps are keys (str) and array indices (int), got {s!r}")
        if isinstance(s, int) and s < 0:
            raise ValueError(f"path {path!r}: array index {s} is negative")
    return steps


def query(vec, path, candidates, *, mbat: MBAT, ranges=None, levels: int = 32, strict: bool = True,
          out_of_range: str = "warn", max_depth: int = MAX_DEPTH, max_leaves: int = MAX_LEAVES):
    """The candidate value stored at ``path`` in an encoded record: unbind along the path, then
    the candidate whose encoding is nearest in cosine.

    Args:
        vec: an encoded record (D,).
        path: ``"a.b[2]"`` or ``["a", "b", 2]``.
        candidates: JSON values to choose from.
        ranges, levels, out_of_range, max_depth, max_leaves: as the record was encoded (see
            :func:`encode_json`); an array index ≥ ``max_leaves`` or a path deeper than
            ``max_depth`` raises ValueError at once.
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
    codec = Codec(mbat, ranges, levels, out_of_range=out_of_range, max_depth=max_depth, max_leaves=max_leaves)
    steps = _parse_path(path)
    if len(steps) > codec.max_depth:
        raise ValueError(f"path {_show(steps)} is {len(steps)} steps deep, beyond max_depth={codec.max_depth}")
    for s in steps:
        if isinstance(s, int) and s >= codec.max_leaves:
            raise ValueError(f"array index {s} in path {_show(steps)} is beyond every record the encoder accepts "
                             f"(max_leaves={codec.max_leaves} leaf values per record)")
    if not candidates:
        raise ValueError("candidates is empty")
    y, _ = _validate.float_array(vec, "vec", ndim=1)
    if y.shape[0] != mbat.dim:
        raise ValueError(f"vec has {y.shape[0]} entries, expected dim={mbat.dim}")
    _validate.check_finite(y, "vec")
    y = y.to(torch.float32)
    P = mbat.role(SEQ)
    for step in steps:
        y = P.power(y, -step) if isinstance(step, int) else mbat.role("key:" + step).apply_t(y)
    idx, V = codec._sum(list(candidates), base=steps)
    C = torch.zeros(len(candidates), mbat.dim)
    _add_rows(C, idx, V)
    codec._flush(stacklevel=2)
    sims = torch.nn.functional.cosine_similarity(y[None], C, dim=-1)
    best = int(sims.argmax())
    level = (math.sqrt(2 * math.log(max(len(candidates), 2))) + 1.5) / math.sqrt(mbat.dim)
    if strict and float(sims[best]) < level:
        raise ValueError(f"path {_show(steps)} is not in the record (or its value is not among the candidates): "
                         f"best cosine {float(sims[best]):.3f} is below the noise level {level:.3f}")
    return candidates[best], float(sims[best])


def search(index: torch.Tensor, query_vec: torch.Tensor, k: int = 5) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k cosine neighbours of ``query_vec`` among the rows of ``index``: (indices, cosines).

    Exact search (one product with the normalised index, then ``torch.topk``), in float32.

    Args:
        index: the encoded records, one per row.
        query_vec: the query vector.
        k: neighbours wanted, ≥ 1.

    Returns:
        ``(indices, cosines)``, most similar first.

    Shape:
        index: (n, D);  query_vec: (D,);  indices, cosines: (min(k, n),)

    Example:
        >>> import torch
        >>> from linalg_core.vsa import search
        >>> index = torch.eye(4)
        >>> idx, cos = search(index, torch.tensor([0.0, 1.0, 0.1, 0.0]), k=2)
        >>> idx.tolist(), [round(c, 3) for c in cos.tolist()]
        ([1, 2], [0.995, 0.1])
    """
    k = _validate.integer(k, "k", low=1)
    if index.dim() != 2 or query_vec.shape[-1] != index.shape[1]:
        raise ValueError(f"index must be (n, D) and query_vec (D,); got {tuple(index.shape)} and "
                         f"{tuple(query_vec.shape)}")
    sims = torch.nn.functional.normalize(index.float(), dim=1) @ torch.nn.functional.normalize(query_vec.float(), dim=0)
    top = torch.topk(sims, min(k, index.shape[0]))
    return top.indices, top.values
