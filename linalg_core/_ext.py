"""The one guarded import of the compiled module ``linalg_core._C``.

``import linalg_core`` never fails: a missing or broken ``_C`` is recorded here and reported,
with the reason, by the first call that needs it (and by ``python -m linalg_core info``).
"""

from __future__ import annotations

try:
    from linalg_core import _C
    C_IMPORT_ERROR: str | None = None
except ImportError as exc:  # not built, or built for another platform
    _C = None
    C_IMPORT_ERROR = f"linalg_core._C could not be imported ({type(exc).__name__}: {exc})"

__all__ = ["_C", "C_IMPORT_ERROR"]
