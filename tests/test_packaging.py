"""Packaging: the LICENSE, ``py.typed``, one version, ``--version``, the sdist's file list, and the
command line's silence about other packages' notices.

The wheel itself is built, installed into a fresh venv and smoke-tested by ``make wheel-check``
(tests/wheel_smoke.py; minutes of compiling, so not part of this suite). Here the sdist is built
(pure file collection, a few seconds): the wheel's package files are the sdist's ``linalg_core/``
minus ``wheel.exclude``, so ``py.typed`` in the sdist and no wheel exclusion of it put it in the wheel.
"""

from __future__ import annotations

import fnmatch
import os
import pathlib
import subprocess
import sys
import tarfile
import textwrap

import pytest

try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib

import linalg_core

ROOT = pathlib.Path(__file__).resolve().parent.parent
PYPROJECT = ROOT / "pyproject.toml"
pytestmark = pytest.mark.skipif(not PYPROJECT.is_file(), reason="needs a source checkout")


def _pyproject() -> dict:
    return tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))


def _run(code: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          cwd=ROOT, env=env, timeout=120)


def test_license_is_apache_2_and_declared():
    text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert text.lstrip().startswith("Apache License\n")
    assert "Version 2.0, January 2004" in text
    # the full text: all nine sections of the terms, their end, and the appendix filled in
    for section in range(1, 10):
        assert f"\n   {section}. " in text, section
    assert "END OF TERMS AND CONDITIONS" in text
    assert "Copyright 2026 linalg_core authors" in text
    assert "[name of copyright owner]" not in text
    project = _pyproject()["project"]
    assert project["license"] == "Apache-2.0"
    assert project["license-files"] == ["LICENSE"]


def test_py_typed_marker_ships_in_the_package():
    assert (ROOT / "linalg_core" / "py.typed").is_file()
    skb = _pyproject()["tool"]["scikit-build"]
    assert "linalg_core" in skb["wheel"]["packages"]
    excluded = skb.get("wheel", {}).get("exclude", []) + skb.get("sdist", {}).get("exclude", [])
    assert not [p for p in excluded if fnmatch.fnmatch("linalg_core/py.typed", p) or fnmatch.fnmatch("py.typed", p)]


def test_one_version():
    """pyproject reads the version from linalg_core/__init__.py; no second copy to drift."""
    project = _pyproject()["project"]
    assert "version" not in project and "version" in project["dynamic"]
    regex = _pyproject()["tool"]["scikit-build"]["metadata"]["version"]
    assert regex["input"] == "linalg_core/__init__.py"


def test_version_flag():
    import torch

    out = subprocess.run([sys.executable, "-m", "linalg_core", "--version"], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout == f"linalg_core {linalg_core.__version__} (torch {torch.__version__})\n"
    assert out.stderr == ""


def test_sdist_has_sources_and_no_ci_files_or_build_outputs(tmp_path):
    pytest.importorskip("scikit_build_core")
    out = _run(f"""
        from scikit_build_core.build import build_sdist
        print(build_sdist({str(tmp_path)!r}))
    """)
    assert out.returncode == 0, out.stderr
    name = out.stdout.strip().splitlines()[-1]
    with tarfile.open(tmp_path / name) as tar:
        top = f"linalg_core-{linalg_core.__version__}/"
        members = {m.name.removeprefix(top) for m in tar.getmembers() if m.isfile()}
        pkg_info = tar.extractfile(top + "PKG-INFO").read().decode()
    for required in ("LICENSE", "CHANGELOG.md", "README.md", "pyproject.toml", "CMakeLists.txt",
                     "linalg_core/__init__.py", "linalg_core/py.typed", "python/module.cpp",
                     "tests/test_packaging.py", "tests/wheel_smoke.py"):
        assert required in members, required
    assert any(m.startswith("csrc/cpu/") for m in members)
    assert "linalg_core/bench/__init__.py" in members and "benchmarks/RESULTS.md" in members
    unwanted = [m for m in members
                if m.split("/")[0] in {".ci", "build", "dist", ".venv", ".git", ".pytest_cache", ".hypothesis"}
                or "__pycache__" in m.split("/") or m.endswith((".so", ".pyc", ".whl"))]
    assert unwanted == []
    assert f"\nVersion: {linalg_core.__version__}\n" in pkg_info
    assert "\nLicense-Expression: Apache-2.0\n" in pkg_info
    assert "\nLicense-File: LICENSE\n" in pkg_info


def test_cli_quiets_third_party_notices_and_import_does_not():
    """quiet_third_party (what main() runs before a subcommand): the hub offline unless the user set
    it, other packages' loggers and warnings silenced, our own warnings kept. Importing the library
    and its CLI module changes no filter, logger or environment variable."""
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_VERBOSITY")}
    code = """
        import logging, os, warnings
        import torch
        before = (list(warnings.filters), logging.getLogger("bitsandbytes").level, dict(os.environ))
        import linalg_core, linalg_core.__main__ as cli
        after = (list(warnings.filters), logging.getLogger("bitsandbytes").level, dict(os.environ))
        assert before == after, "importing linalg_core changed warning filters, loggers or os.environ"
        os.environ["TRANSFORMERS_VERBOSITY"] = "info"   # a user's choice is kept
        cli.quiet_third_party()
        print(*(k + "=" + os.environ[k] for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_VERBOSITY")))
        logging.getLogger("bitsandbytes.backends.cpu.ops").warning("THIRD-PARTY-LOG")
        warnings.warn_explicit("THIRD-PARTY-WARNING", FutureWarning, "x.py", 1, module="transformers.modeling_utils")
        warnings.warn_explicit("THIRD-PARTY-WARNING", UserWarning, "y.py", 1, module="peft")
        warnings.warn_explicit("OUR-WARNING", RuntimeWarning, "z.py", 1, module="linalg_core.lowrank.rsvd")
        logging.getLogger("linalg_core").warning("OUR-LOG")
    """
    out = _run(code, env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["HF_HUB_OFFLINE=1", "TRANSFORMERS_VERBOSITY=info"]
    assert "THIRD-PARTY" not in out.stderr
    assert "OUR-WARNING" in out.stderr and "OUR-LOG" in out.stderr
