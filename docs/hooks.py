"""mkdocs hooks (mkdocs.yml ``hooks:``): the results page is generated at build time.

``benchmarks/RESULTS.md`` and the plots ``benchmarks/*.png`` are the files the benchmark harness
writes; the site shows them as they are when it is built, without a second copy in git:

- ``results/index.md`` is RESULTS.md with each plot shown in the section that names it (a section
  ``## sketch`` shows ``sketch.png``; a section whose text names ``benchmarks/quant_quality.png``
  shows that plot), plots no section names under "Plots" at the end;
- ``results/<name>.png`` are the plots themselves;
- links in the hand-written pages to ``../benchmarks/RESULTS.md`` (right on GitHub) point to the
  generated page instead;
- on the API pages, a ``::: linalg_core.<module>`` block becomes the module's docstring followed by
  one block per name of its ``__all__``, in that order. A name that is also a submodule's name
  (``lowrank.rsvd`` the function and ``lowrank/rsvd.py``) is documented from the module that
  defines it: griffe, which reads the sources without importing them, would otherwise take the
  submodule for the name and leave the function out.
"""

from __future__ import annotations

import ast
import os
import re
from pathlib import Path

from mkdocs.structure.files import File, Files

RESULTS_PAGE = "results/index.md"

_PREFACE = """\
# Results

The benchmark tables as `python -m linalg_core bench --write` last wrote them (`benchmarks/RESULTS.md`),
with the plots beside their family. Ratios are the peer's time over linalg_core's in the same run;
compare ratios, not times across machines. The page is generated when the site is built, so it
shows the results files of the checkout the site was built from.

"""

_MISSING = """\
# Results

`benchmarks/RESULTS.md` was not found when the site was built: run `python -m linalg_core bench --write`
(or `make bench`) and rebuild with `make docs`.
"""


def _root(config) -> Path:
    return Path(config.config_file_path).resolve().parent


def _with_plots(text: str, plots: list[str]) -> str:
    """RESULTS.md with its image links made relative to the page and each plot placed in a section."""
    # an image already linked as benchmarks/x.png (from the repository root) or x.png stays where it is
    text = re.sub(r"(!?\[[^\]]*\]\()(?:\.\./)?benchmarks/([\w.-]+\.png\))", r"\1\2", text)
    # a plain mention of benchmarks/x.png becomes a link to the copy next to the page
    text = re.sub(r"(?<![(/\w])benchmarks/([\w.-]+\.png)\b", r"[\1](\1)", text)
    linked = {p for p in plots if re.search(r"!\[[^\]]*\]\(" + re.escape(p) + r"\)", text)}
    sections = re.split(r"(?m)^(?=## )", text)
    placed = set(linked)
    for i, sec in enumerate(sections):
        heading = sec.splitlines()[0][3:].strip() if sec.startswith("## ") else ""
        here = [p for p in plots if p not in placed and (Path(p).stem == heading or f"({p})" in sec)]
        if here:
            sections[i] = sec.rstrip("\n") + "\n\n" + "\n\n".join(f"![{Path(p).stem}]({p})" for p in here) + "\n\n"
            placed.update(here)
    text = "".join(sections)
    rest = [p for p in plots if p not in placed]
    if rest:
        text = text.rstrip("\n") + "\n\n## Plots\n\n" + "\n\n".join(f"![{Path(p).stem}]({p})" for p in rest) + "\n"
    return text


def on_files(files: Files, config) -> Files:
    bench = _root(config) / "benchmarks"
    results = bench / "RESULTS.md"
    plots = sorted(p.name for p in bench.glob("*.png")) if bench.is_dir() else []
    if results.is_file():
        body = results.read_text(encoding="utf-8")
        body = re.sub(r"\A# [^\n]*\n+", "", body)  # the page has its own title
        content = _PREFACE + _with_plots(body, plots)
    else:
        content = _MISSING
    existing = files.get_file_from_path(RESULTS_PAGE)
    if existing is not None:
        files.remove(existing)
    files.append(File.generated(config, RESULTS_PAGE, content=content))
    for name in plots:
        files.append(File.generated(config, f"results/{name}", abs_src_path=str(bench / name)))
    return files


_RESULTS_LINK = re.compile(r"\]\((?:\.\./)+benchmarks/RESULTS\.md(#[^)]*)?\)")


def on_page_markdown(markdown: str, page, config, files) -> str:
    if page.file.src_uri == RESULTS_PAGE:
        return markdown
    if page.file.src_uri.startswith("api/"):
        markdown = _expand_api(markdown, _root(config))
    target = os.path.relpath(RESULTS_PAGE, os.path.dirname(page.file.src_uri) or ".").replace(os.sep, "/")
    return _RESULTS_LINK.sub(lambda m: f"]({target}{m.group(1) or ''})", markdown)


_API_BLOCK = re.compile(r"(?m)^::: (linalg_core(?:\.\w+)*)[ \t]*\n((?:[ \t]+\S.*\n?)*)")


def _module_file(root: Path, dotted: str) -> Path | None:
    base = root.joinpath(*dotted.split("."))
    for candidate in (base / "__init__.py", base.with_suffix(".py")):
        if candidate.is_file():
            return candidate
    return None


def _names(path: Path, dotted: str, root: Path, depth: int = 0):
    """(the names of a module's ``__all__``, {name: the module it is imported from}), or None when
    ``__all__`` is missing or not made of string literals and ``*module.__all__`` of modules."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = dotted if path.name == "__init__.py" else dotted.rsplit(".", 1)[0]
    source: dict[str, str] = {}
    names: list[str] = []
    found = False
    for node in tree.body:
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            for alias in node.names:
                source[alias.asname or alias.name] = f"{base}.{alias.name}"
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.asname:
                    source[alias.asname] = alias.name
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AugAssign) else []
        if not any(isinstance(t, ast.Name) and t.id == "__all__" for t in targets):
            continue
        if not isinstance(node.value, (ast.List, ast.Tuple)):
            return None
        found = True
        for e in node.value.elts:
            if isinstance(e, ast.Constant) and isinstance(e.value, str):
                names.append(e.value)
            elif (isinstance(e, ast.Starred) and isinstance(e.value, ast.Attribute) and e.value.attr == "__all__"
                  and isinstance(e.value.value, ast.Name) and e.value.value.id in source and depth < 3):
                other = source[e.value.value.id]
                other_path = _module_file(root, other)
                inner = _names(other_path, other, root, depth + 1) if other_path else None
                if inner is None:
                    return None
                names += inner[0]
                for n in inner[0]:
                    source.setdefault(n, inner[1].get(n, f"{other}.{n}"))
            else:
                return None
    return (list(dict.fromkeys(names)), source) if found else None


def _exports(path: Path, dotted: str, root: Path) -> list[tuple[str, str]] | None:
    """[(name, identifier to document it by)] for a module's ``__all__`` (see :func:`_names`)."""
    found = _names(path, dotted, root)
    if found is None:
        return None
    names, source = found
    out = []
    for name in names:
        shadowed = path.name == "__init__.py" and (
            (path.parent / f"{name}.py").is_file() or (path.parent / name / "__init__.py").is_file())
        ident = f"{dotted}.{name}"
        if shadowed:
            ident = source.get(name, ident)
            if ident == f"{dotted}.{name}":  # not imported by name: the submodule's own member
                ident = f"{dotted}.{name}.{name}"
        out.append((name, ident))
    return out


def _expand_api(markdown: str, root: Path) -> str:
    def block(m: re.Match) -> str:
        dotted, options = m.group(1), m.group(2)
        path = _module_file(root, dotted)
        if path is None or re.search(r"(?m)^\s+members:", options):
            return m.group(0)
        exports = _exports(path, dotted, root)
        if exports is None:
            return m.group(0)
        head = options if options.strip() else "    options:\n"
        head = head.rstrip("\n") + "\n      members: false\n"
        parts = [f"::: {dotted}\n{head}"]
        for _name, ident in exports:
            parts.append(f"::: {ident}\n    options:\n      show_root_heading: true\n"
                         f"      show_root_full_path: false\n      heading_level: 2\n")
        return "\n".join(parts) + "\n"

    return _API_BLOCK.sub(block, markdown)
