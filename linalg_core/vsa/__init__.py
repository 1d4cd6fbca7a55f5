"""Vector symbolic architecture: orthogonal MBAT binding and JSON → vector encoding.

* :func:`orthogonal` — Haar-random dense, Hadamard-rounds (O(D log D) through the FWHT kernels)
  and signed-permutation (O(D)) orthogonal matrices, applied without forming them.
* :class:`MBAT` — roles and atoms from stable hashes of names; ``bind``, ``unbind``,
  ``bundle``, ``similarity``, ``cleanup``.
* :func:`encode_json`, :func:`encode_jsonl`, :func:`query`, :func:`search`, :func:`fit_ranges`;
  command line ``python -m linalg_core vsa encode|search``. Numbers get a scale-free code unless
  a range is given (then a level code, out-of-range values reported); records are limited to
  ``max_depth`` levels and ``max_leaves`` leaves (ValueError naming the key path).
"""

from linalg_core.vsa.json import (MAX_DEPTH, MAX_LEAVES, Codec, encode_json, encode_jsonl, fit_ranges, query,
                                  read_records, search)
from linalg_core.vsa.mbat import MBAT, stable_hash
from linalg_core.vsa.orthogonal import Orthogonal, orthogonal

__all__ = ["orthogonal", "Orthogonal", "MBAT", "stable_hash", "Codec", "encode_json", "encode_jsonl", "fit_ranges",
           "query", "read_records", "search", "MAX_DEPTH", "MAX_LEAVES"]
