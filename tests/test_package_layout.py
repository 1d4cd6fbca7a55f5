"""The package's layering, read from the source with ``ast`` (function-level imports count):

* library code never imports ``linalg_core.testing`` (test helpers are not library API);
* a subpackage uses another subpackage through its public names only: no ``_private`` name (or
  private module) of another subpackage is imported, except the shared private modules every
  layer is built on;
* ``linalg_core.sketch`` (a module until issue 18, now a package) keeps every name it had.
"""

from __future__ import annotations

import ast
import importlib
import pathlib
import subprocess
import sys

import pytest

import linalg_core

PKG = pathlib.Path(linalg_core.__file__).parent
FILES = sorted(p for p in PKG.rglob("*.py") if "__pycache__" not in p.parts)

# The command-line applications may use the test helpers: ``python -m linalg_core demo``/``bench``
# exist to show the library on the same matrices and real weights the tests use.
APPLICATIONS = {"linalg_core.demo", "linalg_core.__main__"}
# The benchmark suite (``linalg_core.bench``, run by ``python -m linalg_core bench``) is an application too.
BENCH = "linalg_core.bench"

# Private modules shared by every layer (validation, array boundary, op registry, tracing, out=
# handling, scratch pool, thread policy, the compiled extension and its loader).
SHARED_PRIVATE = {"_validate", "_arrays", "_ops", "_trace", "_out", "_scratch", "_handlers", "_threads", "_ext", "_C"}

# Private cross-package imports still in the tree, each with who removes it (issue 18). The
# marks are strict: when the import goes, the test passes and the entry must be deleted here.
KNOWN_PRIVATE: dict[str, str] = {
    # "linalg_core.x.y": "helper or person removing it (what is imported)",
}


def _module(path: pathlib.Path) -> str:
    parts = list(path.relative_to(PKG.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


MODULES = {_module(p): p for p in FILES}


def _unit(module: str) -> str:
    """The top-level part of the package a module belongs to (``linalg_core.quant.lq`` -> quant)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _imports(path: pathlib.Path):
    """(imported module, imported name or None, line) for every import of a linalg_core module, and
    the local names bound to linalg_core modules."""
    me = _module(path)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    found, aliases = [], {}
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name == "linalg_core" or a.name.startswith("linalg_core."):
                    found.append((a.name, None, node.lineno))
                    aliases[a.asname or a.name.split(".")[0]] = a.name if a.asname else "linalg_core"
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(up + ([base] if base else []))
            if not (base == "linalg_core" or base.startswith("linalg_core.")):
                continue
            for a in node.names:
                found.append((base, a.name, node.lineno))
                if f"{base}.{a.name}" in MODULES:
                    aliases[a.asname or a.name] = f"{base}.{a.name}"
    return found, aliases


def _private_imports(path: pathlib.Path) -> list[str]:
    """This file's uses of another subpackage's private names: ``from linalg_core.x.y import _z``,
    ``import linalg_core.x._y``, and ``y._z`` where ``y`` is a module of another subpackage."""
    me = _module(path)
    bad = []

    def foreign(target: str) -> bool:
        return _unit(target) != _unit(me) and _unit(target) not in SHARED_PRIVATE

    found, aliases = _imports(path)
    for base, name, line in found:
        target = f"{base}.{name}" if name and f"{base}.{name}" in MODULES else base
        if target == "linalg_core" and name in SHARED_PRIVATE:  # from linalg_core import _C
            continue
        names = target.split(".")[1:] + ([name] if name and target == base else [])
        if foreign(target) and any(_private(n) for n in names):
            bad.append(f"line {line}: from {base} import {name}" if name else f"line {line}: import {base}")
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases
                and _private(node.attr) and foreign(aliases[node.value.id])):
            bad.append(f"line {node.lineno}: {node.value.id}.{node.attr} ({aliases[node.value.id]})")
    return bad


def test_library_never_imports_testing():
    offenders = {}
    for module, path in MODULES.items():
        if module == "linalg_core.testing" or module.startswith("linalg_core.testing.") or module in APPLICATIONS \
                or module == BENCH or module.startswith(BENCH + "."):
            continue
        found, _ = _imports(path)
        hits = [line for base, name, line in found
                if base == "linalg_core.testing" or base.startswith("linalg_core.testing.")
                or (base == "linalg_core" and name == "testing")]
        if hits:
            offenders[module] = hits
    assert not offenders, f"library modules importing linalg_core.testing (module: lines): {offenders}"
    assert APPLICATIONS <= set(MODULES), f"stale exceptions: {APPLICATIONS - set(MODULES)}"


def test_the_checks_see_what_they_look_for(tmp_path, monkeypatch):
    """The scanners find each form they claim to (so an empty result means something)."""
    pkg = tmp_path / "linalg_core"
    (pkg / "adapters").mkdir(parents=True)
    (pkg / "lowrank").mkdir()
    for f in ("__init__.py", "adapters/__init__.py", "lowrank/__init__.py", "lowrank/rsvd.py", "_validate.py"):
        (pkg / f).write_text("")
    (pkg / "adapters" / "bad.py").write_text(
        "from linalg_core.lowrank.rsvd import _rsvd, rsvd\n"
        "from linalg_core.lowrank import rsvd as r\n"
        "from linalg_core import _validate\n"
        "def f():\n"
        "    from ..lowrank.rsvd import _x\n"
        "    import linalg_core.testing.models\n"
        "    return r._y\n")
    monkeypatch.setattr(sys.modules[__name__], "PKG", pkg)
    monkeypatch.setattr(sys.modules[__name__], "MODULES", {_module(p): p for p in pkg.rglob("*.py")})
    bad = _private_imports(pkg / "adapters" / "bad.py")
    assert [b.split(":")[0] for b in bad] == ["line 1", "line 5", "line 7"], bad
    found, _ = _imports(pkg / "adapters" / "bad.py")
    assert ("linalg_core.testing.models", None, 6) in found


# The benchmarks time internal paths too (the raw binding under the op), so they are not library code.
LIBRARY = sorted(m for m in MODULES if not m.startswith("linalg_core.testing") and m not in APPLICATIONS
                 and m != BENCH and not m.startswith(BENCH + "."))


@pytest.mark.parametrize("module", [
    pytest.param(m, marks=pytest.mark.xfail(strict=True, reason=f"private import being removed by {KNOWN_PRIVATE[m]}"))
    if m in KNOWN_PRIVATE else m
    for m in LIBRARY
])
def test_no_private_names_across_subpackages(module):
    bad = _private_imports(MODULES[module])
    assert not bad, f"{module} uses another subpackage's private names: {bad}"


def test_known_private_imports_are_real_modules():
    assert set(KNOWN_PRIVATE) <= set(LIBRARY), f"stale entries: {set(KNOWN_PRIVATE) - set(LIBRARY)}"


# --- linalg_core.sketch: every name of the former single module ------------------------------------

# dir(linalg_core.sketch) before it became a package (public names).
SKETCH_API = ["CountSketch", "GaussianSketch", "KINDS", "RademacherSketch", "SRHT", "Sketch", "SparseSignSketch",
              "countsketch", "create", "distortion", "fwht", "gaussian", "rademacher", "release_scratch",
              "sparse_sign", "srht"]
# Names the module had only because it imported them; they still resolve, with a DeprecationWarning.
SKETCH_INCIDENTAL = ["ClassVar", "SparseMatrix", "Stream", "annotations", "as_int64", "as_sparse", "compute_dtype",
                     "dataclass", "field", "is_sparse", "math", "torch"]
SKETCH_MODULES = {"operators": ["CountSketch", "GaussianSketch", "KINDS", "RademacherSketch", "SRHT", "Sketch",
                                "SparseSignSketch", "countsketch", "create", "gaussian", "rademacher",
                                "release_scratch", "sparse_sign", "srht"],
                  "fwht": ["fwht"], "distortion": ["distortion"]}


def test_sketch_package_keeps_the_module_api():
    import linalg_core.sketch as sk

    assert sorted(sk.__all__) == SKETCH_API
    for name in SKETCH_API:
        home = next(m for m, names in SKETCH_MODULES.items() if name in names)
        assert getattr(sk, name) is getattr(importlib.import_module(f"linalg_core.sketch.{home}"), name), name
    ns = {}
    exec(f"from linalg_core.sketch import {', '.join(SKETCH_API)}", ns)  # noqa: S102
    assert all(ns[n] is getattr(sk, n) for n in SKETCH_API)
    assert linalg_core.fwht is sk.fwht and linalg_core.distortion is sk.distortion


@pytest.mark.parametrize("name", SKETCH_INCIDENTAL)
def test_sketch_incidental_names_warn(name):
    import linalg_core.sketch as sk

    with pytest.warns(DeprecationWarning, match=f"linalg_core.sketch.{name} is deprecated"):
        value = getattr(sk, name)
    assert value is not None
    with pytest.raises(AttributeError, match="no attribute 'no_such_name'"):
        sk.no_such_name  # noqa: B018


def test_sketch_package_layout():
    assert {p.name for p in (PKG / "sketch").glob("*.py")} >= {"__init__.py", "operators.py", "fwht.py",
                                                                  "distortion.py"}
    for sub in SKETCH_MODULES:
        assert importlib.import_module(f"linalg_core.sketch.{sub}").__name__ == f"linalg_core.sketch.{sub}"


def test_sketch_imports_in_a_fresh_process():
    code = ("import warnings; warnings.simplefilter('error')\n"
            "import linalg_core.sketch as sk\n"
            "from linalg_core.sketch import SRHT, fwht, distortion, release_scratch\n"
            "import torch\n"
            "S = sk.srht(8, 16, seed=0)\n"
            "assert distortion(S, torch.eye(16, 2, dtype=torch.float64)) < 1\n"
            "print(sk.operators.__file__)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().endswith(str(pathlib.Path("sketch", "operators.py")))


def test_models_module_reads_lazily_with_safetensors(tmp_path):
    """linalg_core.models reads through safe_open: the header alone, or only the named tensors."""
    from safetensors.torch import save_file

    import torch

    from linalg_core.models import read_safetensors, safetensors_header

    path = tmp_path / "m.safetensors"
    save_file({"a": torch.arange(6, dtype=torch.float32).reshape(2, 3), "b": torch.ones(4, dtype=torch.int64)},
              str(path))
    assert safetensors_header(path) == {"a": ("F32", (2, 3)), "b": ("I64", (4,))}
    got = read_safetensors(path, ["b"])
    assert list(got) == ["b"] and torch.equal(got["b"], torch.ones(4, dtype=torch.int64))
    assert torch.equal(read_safetensors(str(path))["a"], torch.arange(6, dtype=torch.float32).reshape(2, 3))
    with pytest.raises(ValueError, match=r"has no tensor 'c'"):
        read_safetensors(path, ["a", "c"])
    with pytest.raises(TypeError, match="names must be an iterable"):
        read_safetensors(path, "a")
    with pytest.raises(TypeError, match="path must be a path"):
        read_safetensors(3)
    with pytest.raises(FileNotFoundError):
        read_safetensors(tmp_path / "missing.safetensors")
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}garbage")
    with pytest.raises(ValueError, match="cannot read .*bad.safetensors.* as safetensors"):
        read_safetensors(bad)
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(path.read_bytes()[:-8])
    with pytest.raises(ValueError, match="truncated.safetensors"):
        read_safetensors(truncated)


def test_testing_models_reuse_the_library_reader():
    import linalg_core.models as models
    from linalg_core.testing import models as tmodels

    assert tmodels.read_safetensors is models.read_safetensors
    assert tmodels.minilm_path is models.minilm_path
    assert tmodels.PACKAGE == models.MINILM_PACKAGE
    source = (PKG / "testing" / "models.py").read_text(encoding="utf-8")
    assert "struct" not in source and "json" not in source, "testing/models.py parses safetensors by hand again"

