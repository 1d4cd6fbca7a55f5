"""Results files of the benchmark suite: JSON (schema 2), CSV and the markdown of RESULTS.md.

Schema 2, one file per family (``<family>.json``)::

    {"schema": 2, "family": "sketch", "quick": false,
     "environment": {cpu, cpu_flags, cpu_kernels, cores, threads, thread_settings, gpu, python,
                     torch, torch_blas, blas, versions, linalg_core, commit, date, ...},
     "tables": [{"name": "fwht", "columns": [...shown...], "dims": [...shape columns...]}],
     "rows": [{"table": "fwht", "op": "fwht", "shape": "65536x256", "rows": 65536, "cols": 256,
               "impl": ..., "ms": ..., "samples_s": {"ms": [...]}}, ...],
     "notes": [...]}

``samples_s`` holds each time column's raw per-repeat times in seconds (per call for
``per_call`` rows). The CSV has the rows' columns without the samples. :func:`load_results` reads
schema 2 and migrates schema 1 (``{"machine", "rows", "notes"}``, written before schema 2): tables
from the family's ``TABLES``, shapes from the labels.

``python -m linalg_core.bench --render`` rewrites the sections of ``benchmarks/RESULTS.md`` from
``benchmarks/results/*.json`` without running anything.
"""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

from linalg_core.bench.harness import SCHEMA, environment_line, family_tables, fmt, table_of, with_dims

HIDDEN = ("table", "samples_s", "quick")  # row keys that are not table columns


def _tables(rows: list[dict], dims: dict | None = None) -> list[dict]:
    """[{"name", "columns", "dims"}] in order of first appearance; columns are those the table's
    rows use, less the shape columns read from labels (``dims``)."""
    out: dict = {}
    for r in rows:
        t = out.setdefault(r.get("table"), {"name": r.get("table"), "columns": [], "dims": []})
        for k in r:
            if k not in HIDDEN and k not in t["columns"]:
                t["columns"].append(k)
    for name, t in out.items():
        hidden = (dims or {}).get(name, [])
        t["dims"] = [c for c in t["columns"] if c in hidden]
        t["columns"] = [c for c in t["columns"] if c not in hidden]
    return list(out.values())


def document(report) -> dict:
    """The schema-2 document of a :class:`~linalg_core.bench.harness.Report`."""
    return {"schema": SCHEMA, "family": report.family, "quick": bool(report.quick),
            "environment": report.environment, "tables": _tables(report.rows, report.dims),
            "rows": report.rows, "notes": report.notes}


def _json_safe(v):
    if isinstance(v, float) and v != v:
        return None  # NaN: null in JSON (json.dumps would write the non-standard NaN)
    if isinstance(v, dict):
        return {k: _json_safe(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_json_safe(x) for x in v]
    return v


def save(doc: dict, directory) -> Path:
    """Write ``<family>.json`` (the document) and ``<family>.csv`` (its rows, without samples)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{doc['family']}.json"
    path.write_text(json.dumps(_json_safe(doc), indent=1, default=str) + "\n")
    cols = list(dict.fromkeys(k for r in doc["rows"] for k in r if k != "samples_s"))
    with open(directory / f"{doc['family']}.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=cols, extrasaction="ignore")
        w.writeheader()
        w.writerows(doc["rows"])
    return path


def migrate(doc: dict, family: str) -> dict:
    """A schema-1 document (``{"machine", "rows", "notes"}``) as schema 2: the machine is the
    environment, each row gets its table (the family's ``TABLES``) and its label's shapes."""
    if doc.get("schema") == SCHEMA:
        return doc
    if "schema" in doc:
        raise ValueError(f"results of family {family!r}: schema {doc['schema']!r} is not one this version reads "
                         f"(1 or {SCHEMA})")
    if not isinstance(doc.get("rows"), list):
        raise ValueError(f"results of family {family!r}: no 'rows' list, not a results file")
    tables = family_tables(family)
    rows, dims = [], {}
    for r in doc["rows"]:
        r, added = with_dims(dict(r))
        name = table_of(r, tables)
        if name is not None:
            r = {"table": name, **r}
        if added:
            known = dims.setdefault(r.get("table"), [])
            known += [a for a in added if a not in known]
        rows.append(r)
    return {"schema": SCHEMA, "family": family, "quick": False, "migrated_from": 1,
            "environment": dict(doc.get("machine", {})), "tables": _tables(rows, dims), "rows": rows,
            "notes": list(doc.get("notes", []))}


def load_results(path) -> dict:
    """Read one family's results JSON (schema 2, or schema 1 migrated to 2).

    Raises:
        ValueError: not a results file, or a schema this version does not read.
    """
    path = Path(path)
    doc = json.loads(path.read_text())
    if not isinstance(doc, dict):
        raise ValueError(f"{path} is not a results file (a JSON object)")
    return migrate(doc, doc.get("family", path.stem))


def load_all(results_dir) -> dict[str, dict]:
    """{family: document} of every ``<family>.json`` in ``results_dir``."""
    return {p.stem: load_results(p) for p in sorted(Path(results_dir).glob("*.json"))}


def _missing(v) -> bool:
    """No value: None, "" or NaN (which the JSON stores as null), so that a run's document and
    the JSON it is saved as render alike."""
    return v is None or v == "" or (isinstance(v, float) and v != v)


def _cell(v) -> str:
    return "" if _missing(v) else fmt(v).replace("|", "\\|")


def markdown(doc: dict, *, image: str | None = None) -> str:
    """A family's section: an image line (when given), the environment line, one table per kind
    of comparison with the columns its rows use, and the notes."""
    lines = []
    if image:
        lines += [f"![{doc['family']}]({image})", ""]
    if doc.get("quick"):
        lines += ["**Quick run** (smaller sizes, fewer repeats: a smoke test, not the regime of the full run).", ""]
    lines.append(environment_line(doc.get("environment", {})))
    tables = doc.get("tables") or _tables(doc["rows"])
    named = len(tables) > 1 or any(t["name"] for t in tables)
    for t in tables:
        rows = [r for r in doc["rows"] if r.get("table") == t["name"]]
        cols = [c for c in t["columns"] if not all(_missing(r.get(c)) for r in rows)]
        lines.append("")
        if named:
            lines += [f"### {t['name'] or 'other'}", ""]
        lines += ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
        lines += ["| " + " | ".join(_cell(r.get(c)) for c in cols) + " |" for r in rows]
    if doc.get("notes"):
        lines += [""] + [f"- {n}" for n in doc["notes"]]
    return "\n".join(lines)


def _markers(family: str) -> tuple[str, str]:
    return f"<!-- bench:{family}:begin -->", f"<!-- bench:{family}:end -->"


def update_results_md(doc: dict, path, *, image_dir=None) -> None:
    """Replace the family's section of RESULTS.md (between its markers; appended under a new
    heading when absent); everything outside the markers is kept. ``<family>.png`` in
    ``image_dir`` (default: RESULTS.md's folder) is shown at the top of the section."""
    path = Path(path)
    family = doc["family"]
    begin, end = _markers(family)
    image = f"{family}.png" if (Path(image_dir or path.parent) / f"{family}.png").is_file() else None
    section = f"{begin}\n{markdown(doc, image=image)}\n{end}"
    text = path.read_text() if path.exists() else "# Benchmark results\n"
    if begin in text:
        text = re.sub(re.escape(begin) + r".*?" + re.escape(end), lambda _: section, text, flags=re.S)
    else:
        text = text.rstrip() + f"\n\n## {family}\n\n{section}\n"
    path.write_text(text)


def render(results_dir, results_md, *, image_dir=None) -> list[str]:
    """Rewrite every family's section of ``results_md`` from ``results_dir`` (no benchmark runs);
    returns the families rendered."""
    docs = load_all(results_dir)
    for doc in docs.values():
        update_results_md(doc, results_md, image_dir=image_dir)
    return list(docs)


def summary(docs: list[dict]) -> str:
    """The markdown summary of a run (every family's section one after another)."""
    return "# Benchmark results\n" + "".join(f"\n## {d['family']}\n\n{markdown(d)}\n" for d in docs)


__all__ = ["document", "save", "migrate", "load_results", "load_all", "markdown", "update_results_md", "render",
           "summary"]
