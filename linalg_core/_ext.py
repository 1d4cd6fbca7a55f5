"""The one guarded import of the compiled module ``linalg_core._C``.

``import linalg_core`` never fails: a missing or broken ``_C`` is recorded here and reported,
with the reason, by the first call that needs it (and by ``python -m linalg_core info``).

``LINALG_CORE_C_PATH=/path/to/_C.so`` loads another build of the module instead (the sanitizer
build of ``make test-asan``), without reinstalling the package.
"""

from __future__ import annotations

import os


def _load():
    path = os.environ.get("LINALG_CORE_C_PATH")
    if not path:
        from linalg_core import _C

        return _C
    import importlib.util
    import sys

    spec = importlib.util.spec_from_file_location("linalg_core._C", path)
    if spec is None or spec.loader is None:
        raise ImportError(f"LINALG_CORE_C_PATH={path!r} is not a loadable extension module")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    sys.modules["linalg_core._C"] = module
    return module


try:
    _C = _load()
    C_IMPORT_ERROR: str | None = None
except ImportError as exc:  # not built, or built for another platform
    _C = None
    C_IMPORT_ERROR = f"linalg_core._C could not be imported ({type(exc).__name__}: {exc})"

__all__ = ["_C", "C_IMPORT_ERROR"]
