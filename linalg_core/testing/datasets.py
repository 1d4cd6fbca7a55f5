"""Real JSON records that no one here wrote: the ``cars`` dataset shipped by the PyPI package
``vega-datasets`` (406 cars: name, origin, year and six numeric measurements), read from its
data folder without importing the package (which would pull pandas)."""

from __future__ import annotations

import importlib.util
import json
import os


def cars_path() -> str | None:
    """Path of ``cars.json`` in the installed ``vega_datasets``, or None."""
    spec = importlib.util.find_spec("vega_datasets")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = os.path.join(list(spec.submodule_search_locations)[0], "_data", "cars.json")
    return path if os.path.exists(path) else None


def cars() -> list[dict]:
    """The 406 records (some fields are null)."""
    path = cars_path()
    if path is None:
        raise FileNotFoundError("vega-datasets is not installed: pip install --no-deps vega-datasets (make test does)")
    with open(path, encoding="utf-8") as f:
        return json.load(f)
