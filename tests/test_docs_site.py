"""The documentation site (mkdocs.yml, docs/): it builds with ``mkdocs build --strict``, nothing in
it points outside the site (no web fonts, CDN scripts or external links: it works offline), and
the tutorials' code runs.

Running a tutorial: ``python tests/test_docs_site.py docs/tutorials/regression.md`` executes its
```python blocks in order in one namespace (in a temporary folder) and prints what they print, to
compare with the output blocks shown on the page. The default run executes the quick tutorials;
the others (peft, compression, Dask: minutes on 2 cores) are marked slow and run with
``LINALG_CORE_DOCS_TUTORIALS=1``.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import io
import os
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
TUTORIALS = sorted((DOCS / "tutorials").glob("*.md"))
# tutorial -> the packages its code needs (skipped without them); FAST ones run in the default
# run (seconds), the others are marked slow (a minute or more on 2 cores: peft, compression, Dask)
TUTORIAL_NEEDS = {
    "regression.md": [],
    "vsa.md": ["vega_datasets"],
    "adapters.md": ["peft", "transformers"],
    "compress.md": ["transformers", "safetensors"],
    "distributed.md": ["dask", "distributed"],
}
FAST_TUTORIALS = ["regression.md", "vsa.md"]

_BLOCK = re.compile(r"^```python[^\n]*\n(.*?)^```", re.S | re.M)


def python_blocks(path: Path) -> list[str]:
    """The ```python blocks of a Markdown page, in order."""
    return [m.group(1) for m in _BLOCK.finditer(path.read_text(encoding="utf-8"))]


def run_blocks(path: Path, cwd: Path) -> dict:
    """Executes the page's python blocks in order in one namespace, in ``cwd``; returns it."""
    ns: dict = {"__name__": "__main__"}
    old = os.getcwd()
    os.chdir(cwd)
    try:
        for i, code in enumerate(python_blocks(path)):
            exec(compile(code, f"{path.name}[block {i}]", "exec"), ns)  # noqa: S102
    finally:
        os.chdir(old)
    return ns


class _Links(HTMLParser):
    """Every URL a page would load or link to: href, src, srcset, and url(...) in inline styles."""

    def __init__(self):
        super().__init__()
        self.urls: list[tuple[str, str, str]] = []

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            if not value:
                continue
            if name in ("href", "src", "action", "data", "poster", "xlink:href"):
                self.urls.append((tag, name, value.strip()))
            elif name == "srcset":
                self.urls.extend((tag, name, part.strip().split(" ")[0]) for part in value.split(","))
            elif name == "style":
                self.urls.extend((tag, name, u) for u in re.findall(r"url\(\s*['\"]?([^'\")]+)", value))


def _external(url: str) -> bool:
    # anything with a scheme (http:, https:, ftp:, data: is inline and fine) or protocol-relative
    u = url.lower()
    return u.startswith("//") or bool(re.match(r"^[a-z][a-z0-9+.-]*:", u)) and not u.startswith(
        ("data:", "mailto:", "javascript:", "#"))


def external_references(site: Path) -> list[str]:
    """'file: tag attr url' for every reference in the built site that leaves it."""
    found = []
    for page in sorted(site.rglob("*.html")):
        parser = _Links()
        parser.feed(page.read_text(encoding="utf-8"))
        found += [f"{page.relative_to(site)}: <{t} {a}> {u}" for t, a, u in parser.urls if _external(u)]
    for sheet in sorted(site.rglob("*.css")):
        for u in re.findall(r"url\(\s*['\"]?([^'\")]+)", sheet.read_text(encoding="utf-8", errors="replace")):
            if _external(u.strip()):
                found.append(f"{sheet.relative_to(site)}: url({u.strip()})")
        for u in re.findall(r"@import\s+['\"]([^'\"]+)", sheet.read_text(encoding="utf-8", errors="replace")):
            if _external(u):
                found.append(f"{sheet.relative_to(site)}: @import {u}")
    return found


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    pytest.importorskip("mkdocs")
    pytest.importorskip("material")
    pytest.importorskip("mkdocstrings_handlers.python")
    out = tmp_path_factory.mktemp("site")
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
                          cwd=ROOT, capture_output=True, text=True, env=env, timeout=600)
    warnings = [line for line in proc.stderr.splitlines() if line.startswith(("WARNING", "ERROR"))]
    assert proc.returncode == 0, "mkdocs build --strict failed:\n" + "\n".join(warnings or proc.stderr.splitlines()[-30:])
    return out


def test_site_builds_strict_and_offline(site):
    assert (site / "index.html").is_file()
    found = external_references(site)
    assert not found, "references outside the site:\n" + "\n".join(found[:50])


def test_every_page_and_api_family_is_built(site):
    for md in DOCS.rglob("*.md"):
        html = site / md.relative_to(DOCS).with_suffix(".html")
        assert html.is_file(), f"{md.relative_to(ROOT)} was not built"
    families = ["sketch", "random", "lowrank", "adapters", "regression", "sampling", "quant", "qmatmul", "vsa",
                "distributed"] + (["optim"] if (DOCS / "api" / "optim.md").is_file() else [])
    for family in families:
        text = (site / "api" / f"{family}.html").read_text(encoding="utf-8")
        documented = {i.rsplit(".", 1)[-1] for i in re.findall(r'<h2 id="(linalg_core\.[\w.]+)"', text)}
        exported = importlib.import_module(f"linalg_core.{family}").__all__
        missing = [name for name in exported if name not in documented]
        assert not missing, f"api/{family}.html lacks {missing} of linalg_core.{family}.__all__"


def test_results_page_has_the_results_and_plots(site):
    results = ROOT / "benchmarks" / "RESULTS.md"
    if not results.is_file():
        pytest.skip("no benchmarks/RESULTS.md in this checkout")
    page = (site / "results" / "index.html").read_text(encoding="utf-8")
    for family in re.findall(r"(?m)^## ([\w-]+)\s*$", results.read_text(encoding="utf-8")):
        assert f'<h2 id="{family.lower()}"' in page, f"section {family} of RESULTS.md is not on the results page"
    for png in sorted((ROOT / "benchmarks").glob("*.png")):
        assert (site / "results" / png.name).read_bytes() == png.read_bytes()
        assert f'src="{png.name}"' in page, f"{png.name} is not shown on the results page"


def test_hand_written_links_to_results_point_into_the_site(site):
    threads = (site / "threads.html").read_text(encoding="utf-8")
    assert "../benchmarks/RESULTS.md" not in threads


def test_docstring_renderer_keeps_plain_text():
    sys.path.insert(0, str(DOCS))
    try:
        pytest.importorskip("griffe")
        from griffe_plain import plain_docstring
    finally:
        sys.path.remove(str(DOCS))
    assert plain_docstring("see :func:`~linalg_core.lowrank.rsvd` and :class:`SVD`") == "see ``rsvd`` and ``SVD``"
    assert plain_docstring("Σ_k E[x_k²](w_k − ŵ_k)²") == "Σ_k E\\[x_k²\\](w_k − ŵ_k)²"
    assert plain_docstring("    >>> [a[0] for a in b][1](2)") == "    >>> [a[0] for a in b][1](2)"
    assert plain_docstring("``x[0](1)`` stays") == "``x[0](1)`` stays"
    assert plain_docstring("    Example:\n        >>> 1") == "    Examples:\n        >>> 1"
    assert plain_docstring("A: (*, m, n);  U: (*, m, r)") == "A: (\\*, m, n);  U: (\\*, m, r)"
    assert plain_docstring("    **options: passed on, as *args") == "    **options: passed on, as \\*args"
    assert plain_docstring("* :func:`rsvd` — a driver") == "* ``rsvd`` — a driver"
    assert plain_docstring("Raises:\n    ValueError: bad n.") == "Raises:\n    ValueError: bad n."
    assert plain_docstring("Raises:\n    ValueError (nothing written): bad n.").startswith("Raises:")
    assert plain_docstring("Raises:\n    ValueError / TypeError for a bad n.") == (
        "Errors:\n    ValueError / TypeError for a bad n.")


def _nav_pages(nav) -> set[str]:
    if isinstance(nav, str):
        return {nav}
    if isinstance(nav, list):
        return set().union(*(_nav_pages(x) for x in nav)) if nav else set()
    if isinstance(nav, dict):
        return set().union(*(_nav_pages(x) for x in nav.values()))
    return set()


def test_every_page_is_in_the_nav():
    yaml = pytest.importorskip("yaml")
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"))
    listed = _nav_pages(config["nav"])
    pages = {p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.md")}
    assert not pages - listed, f"docs pages missing from mkdocs.yml's nav: {sorted(pages - listed)}"
    generated = {"results/index.md"}
    assert not listed - pages - generated, f"nav entries without a page: {sorted(listed - pages - generated)}"


def _run_tutorial(name: str, tmp_path: Path) -> None:
    for module in TUTORIAL_NEEDS[name]:
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"{name} needs {module}")
    path = DOCS / "tutorials" / name
    assert python_blocks(path), f"{name} has no python blocks"
    with contextlib.redirect_stdout(io.StringIO()):
        run_blocks(path, tmp_path)


@pytest.mark.parametrize("name", FAST_TUTORIALS)
def test_tutorial_code_runs(name, tmp_path):
    _run_tutorial(name, tmp_path)


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("LINALG_CORE_DOCS_TUTORIALS"),
                    reason="minutes on 2 cores: set LINALG_CORE_DOCS_TUTORIALS=1 to run every tutorial")
@pytest.mark.parametrize("name", sorted(set(TUTORIAL_NEEDS) - set(FAST_TUTORIALS)))
def test_slow_tutorial_code_runs(name, tmp_path):
    _run_tutorial(name, tmp_path)


def test_every_tutorial_is_run_by_a_test():
    assert {p.name for p in TUTORIALS} == set(TUTORIAL_NEEDS)


if __name__ == "__main__":
    import tempfile

    for arg in sys.argv[1:]:
        with tempfile.TemporaryDirectory() as tmp:
            print(f"== {arg}", flush=True)
            run_blocks(Path(arg).resolve(), Path(tmp))
