"""Every docstring example in the package runs and shows what it claims."""

import doctest
import importlib
import pkgutil

import pytest

import linalg_core

from tests.test_public_docs import doc_modules

# the family modules' examples run (with the backends preloaded) in tests/test_public_docs.py
SKIP = {"linalg_core.__main__", "linalg_core.demo"} | set(doc_modules())
MODULES = sorted(m.name for m in pkgutil.walk_packages(linalg_core.__path__, "linalg_core.") if m.name not in SKIP)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    try:
        module = importlib.import_module(name)
    except ImportError as e:  # optional dependencies (triton, peft) missing
        pytest.skip(str(e))
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, verbose=False)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed in {name}"
