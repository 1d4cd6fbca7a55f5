"""mkdocs hooks (mkdocs.yml ``hooks:``): the results page is generated at build time.

``benchmarks/RESULTS.md`` and the plots ``benchmarks/*.png`` are the files the benchmark harness
writes; the site shows them as they are when it is built, without a second copy in git:

- ``results/index.md`` is RESULTS.md with each plot shown in the section that names it (a section
  ``## sketch`` shows ``sketch.png``; a section whose text names ``benchmarks/quant_quality.png``
  shows that plot), plots no section names under "Plots" at the end;
- ``results/<name>.png`` are the plots themselves;
- links in the hand-written pages to ``../benchmarks/RESULTS.md`` (right on GitHub) point to the
  generated page instead.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from mkdocs.structure.files import File, Files

RESULTS_PAGE = "results/index.md"

_PREFACE = """\
# Results

The benchmark tables as `python -m linalg_core bench` last wrote them (`benchmarks/RESULTS.md`),
with the plots beside their family. Ratios are the peer's time over linalg_core's in the same run;
compare ratios, not times across machines. The page is generated when the site is built, so it
shows the results files of the checkout the site was built from.

"""

_MISSING = """\
# Results

`benchmarks/RESULTS.md` was not found when the site was built: run `python -m linalg_core bench`
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
    target = os.path.relpath(RESULTS_PAGE, os.path.dirname(page.file.src_uri) or ".").replace(os.sep, "/")
    return _RESULTS_LINK.sub(lambda m: f"]({target}{m.group(1) or ''})", markdown)
