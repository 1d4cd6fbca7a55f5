"""linalg_core on Dask: row-partitioned ``dask.array`` inputs, sketches generated on the workers
from (seed, offset), and mergeable streaming sketches.

* :func:`sketch_apply` — S A as a sum of per-block products, S never shipped.
* :func:`lstsq` — sketch-and-solve, and sketch-and-precondition with block-wise semi-normal
  refinement (one pass over A per refinement).
* :func:`leverage_scores` — exact, by CholeskyQR2 over the blocks; :func:`sample_rows`.
* :func:`rsvd` — the single-machine driver :func:`linalg_core.rsvd` on a :class:`RowBlocks`
  operator (Ω regenerated in each task, B = QᵀA as a reduction) with the blocked orthonormalizer
  :class:`RowBlockCholQR`: equal to it to rounding.
* :class:`StreamingSketch` — Y += A_j Ω or X_jᵀ(X_j Ω), ``merge()`` across workers, PSD Nyström.
* :func:`map_layers` — model-wide work (adapter init, LQ) as one task per layer on any
  ``concurrent.futures.Executor`` (a Dask cluster through ``Client.get_executor()``), each
  weight read lazily from its safetensors shard on the worker. For a model already in memory,
  ``adapters.init_peft_model(..., executor=)`` and ``quant.compress_model(..., executor=)``
  take the same executors.
* :func:`size_worker_pools`, :func:`pool_initializer` — each worker's torch / OpenMP / BLAS pools
  sized to its share of the cores (``docs/threads.md``).

Works with any dask scheduler (threads, processes, a ``dask.distributed`` cluster).
"""

from linalg_core.distributed.linalg import (RowBlockCholQR, RowBlocks, leverage_scores, lstsq, rows, rsvd,
                                           sample_rows, sketch_apply)
from linalg_core.distributed.layers import layer_index, map_layers
from linalg_core.distributed.streaming import StreamingSketch
from linalg_core.distributed.threads import pool_initializer, size_worker_pools

__all__ = ["sketch_apply", "lstsq", "leverage_scores", "rsvd", "RowBlocks", "RowBlockCholQR", "sample_rows", "rows",
           "StreamingSketch",
           "map_layers", "layer_index", "size_worker_pools", "pool_initializer"]
