"""Loads the package ``linalg_core/sketch/`` for an editable install made while sketch was a module.

scikit-build-core's redirecting editable install maps each module name to the file it found at
install time, so until it is reinstalled ``linalg_core.sketch`` resolves to this path. This file
makes that module the package (its ``__path__`` and ``__init__``); a regular install and a
refreshed editable one load ``linalg_core/sketch/__init__.py`` directly (a package directory
takes precedence over a module file of the same name). Delete it once every editable install
has been refreshed (``pip install --no-build-isolation --no-deps -e .``).
"""

import os as _os

__path__ = [_os.path.join(_os.path.dirname(_os.path.abspath(__file__)), "sketch")]
with open(_os.path.join(__path__[0], "__init__.py"), encoding="utf-8") as _f:
    exec(compile(_f.read(), _f.name, "exec"))  # noqa: S102
del _f, _os
