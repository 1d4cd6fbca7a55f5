"""Model-wide work as one task per layer on any ``concurrent.futures.Executor`` — a
``ProcessPoolExecutor`` on one machine (with the ``spawn`` start method: a forked child of a
process whose OpenMP threads are running can hang), ``distributed.Client.get_executor()`` for a Dask
cluster. Each task reads its own weight lazily from the safetensors shard that holds it (the
file is opened on the worker, only that tensor is read), so no weight travels from the caller.
Results are whatever ``fn`` returns for the weight; with seeded ``fn`` they are identical to the
single-process run when every process uses the same BLAS thread count (pass
``initializer=distributed.pool_initializer`` with ``initargs=(threads,)`` to the executor: it sizes
torch's, the kernels' and the BLAS pools of each worker; GEMM reductions round differently with
different thread counts; ``docs/threads.md``)."""

from __future__ import annotations

import functools
import os
from concurrent.futures import Executor, as_completed


def safetensors_shards(source, name: str = "source") -> list[str]:
    """The ``.safetensors`` files of a model: the file itself, or the sorted shards of a folder.
    FileNotFoundError (naming ``name``) when there is none."""
    source = os.fspath(source)
    if os.path.isdir(source):
        files = sorted(os.path.join(source, f) for f in os.listdir(source) if f.endswith(".safetensors"))
        if not files:
            raise FileNotFoundError(f"{source!r} holds no .safetensors file")
        return files
    if not os.path.isfile(source):
        raise FileNotFoundError(f"{name} {source!r} does not exist")
    return [source]


def layer_index(source) -> dict[str, str]:
    """{tensor name: shard path} of a safetensors file or folder of shards (headers only).

    Args:
        source: a ``.safetensors`` file or a folder of shards.

    Returns:
        A dict from tensor name to the path of the file that holds it.

    Example:
        >>> import os, tempfile, torch
        >>> from safetensors.torch import save_file
        >>> from linalg_core.distributed import layer_index
        >>> with tempfile.TemporaryDirectory() as d:
        ...     save_file({"a.weight": torch.zeros(2, 2)}, os.path.join(d, "model-1.safetensors"))
        ...     save_file({"b.weight": torch.zeros(2, 2)}, os.path.join(d, "model-2.safetensors"))
        ...     {k: os.path.basename(v) for k, v in layer_index(d).items()}
        {'a.weight': 'model-1.safetensors', 'b.weight': 'model-2.safetensors'}
    """
    from safetensors import safe_open

    out = {}
    for path in safetensors_shards(source):
        with safe_open(path, framework="pt") as f:
            for name in f.keys():
                out[name] = path
    return out


def _run(fn, with_name: bool, path: str, name: str):
    from safetensors import safe_open

    with safe_open(path, framework="pt") as f:
        W = f.get_tensor(name)
    return fn(name, W) if with_name else fn(W)


def map_layers(fn, source, names=None, *, executor: Executor | None = None, progress: bool = False,
               with_name: bool = False) -> dict:
    """{name: fn(weight)} for the named tensors of a safetensors model, one task per layer.

    Args:
        fn: a picklable callable of one tensor (a module-level function or a
            ``functools.partial`` of one, e.g. ``partial(lq_decompose, rank=64, format="nf3", seed=0)``).
        source: a ``.safetensors`` file or a folder of shards.
        names: the tensors (default: every 2-D floating tensor).
        executor: where the tasks run (default: in this process, one after the other).
        progress: a tqdm bar over completed layers.
        with_name: call ``fn(name, weight)`` instead of ``fn(weight)``.

    Returns:
        {name: result}, in the order of ``names``.

    Example:
        >>> import tempfile, os, torch
        >>> from safetensors.torch import save_file
        >>> from linalg_core.distributed import map_layers
        >>> path = os.path.join(tempfile.mkdtemp(), "m.safetensors")
        >>> save_file({"a": torch.ones(4, 3), "b": torch.zeros(2, 2)}, path)
        >>> map_layers(torch.Tensor.sum, path)
        {'a': tensor(12.), 'b': tensor(0.)}
    """
    index = layer_index(source)
    if names is None:
        from safetensors import safe_open

        names = []
        for name, path in index.items():
            with safe_open(path, framework="pt") as f:
                sl = f.get_slice(name)
                if len(sl.get_shape()) == 2 and sl.get_dtype() in ("F32", "F16", "BF16", "F64"):
                    names.append(name)
    missing = [n for n in names if n not in index]
    if missing:
        raise ValueError(f"{len(missing)} name(s) are not in the model, e.g. {missing[0]!r}")
    task = functools.partial(_run, fn, with_name)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(names), desc="layers")
    results = {}
    if executor is None:
        for n in names:
            results[n] = task(index[n], n)
            if bar:
                bar.update(1)
    else:
        futures = {executor.submit(task, index[n], n): n for n in names}
        for fut in as_completed(futures):
            results[futures[fut]] = fut.result()
            if bar:
                bar.update(1)
    if bar:
        bar.close()
    return {n: results[n] for n in names}
