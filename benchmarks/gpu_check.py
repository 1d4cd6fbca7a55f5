"""Everything GPU-side in one call (``make gpu-check``), for a session lent a GPU for minutes.

1. ``pytest -m gpu``: CUDA and Triton parity with the reference, CUDA-graph capture of the custom
   ops, torch.compile on the GPU, CuPy arrays in and out through DLPack (tests/test_cupy.py; CuPy
   is pip-installed first when missing, ``cupy-cuda<torch's CUDA major>x``, and those tests are
   skipped where that fails, e.g. offline);
2. the GPU benchmark rows, eager, ``torch.compile``-d and replayed from a CUDA graph, in the same
   run: fwht and the sketches' apply, the DGQ A8W4 product against the unfused path (INT8 weight
   expanded in memory, then ``torch._int_mm``) and fp16 ``torch.matmul``, NF4 dequantize;
3. one table on stdout (and ``$OUT/gpu_check.json``, results schema 2, when ``OUT`` is set).

Usage: ``python benchmarks/gpu_check.py [--skip-tests] [--quick] [--no-cupy-install]``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

import torch

import linalg_core as lc
from linalg_core.backends.reference.qmatmul import expand_int8
from linalg_core.bench.harness import measure
from linalg_core.qmatmul import DGQLinear, qmatmul, quantize_activations

CUDA = torch.device("cuda")


def _graph(fn, *inputs):
    """fn captured once in a CUDA graph; the returned callable replays it."""
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        fn(*inputs)
        fn(*inputs)
    torch.cuda.current_stream().wait_stream(s)
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        fn(*inputs)
    return g.replay


def _row(rows, what, eager, compiled=None, graph=None, **extra):
    r = dict(what=what, eager_us=eager.median * 1e6)
    if compiled is not None:
        r["compiled_us"] = compiled.median * 1e6
    if graph is not None:
        r["graph_us"] = graph.median * 1e6
    r.update(extra)
    rows.append(r)


def bench(quick: bool) -> list[dict]:
    rows: list[dict] = []
    rep = 20 if quick else 50
    for shape in ((1, 256), (64, 4096), (4096, 4096)):
        x = torch.randn(shape, device=CUDA)
        f = lambda x=x: lc.fwht(x)  # noqa: E731
        c = torch.compile(lambda t: lc.fwht(t), fullgraph=True)
        _row(rows, f"fwht {shape[0]}x{shape[1]}", measure(f, repeats=rep), measure(lambda x=x: c(x), repeats=rep),
             measure(_graph(lambda t: lc.fwht(t), x), repeats=rep), torch_add_us=measure(lambda x=x: x + 1).median * 1e6)
    n, d, m = 1 << 17, 64, 1024
    A = torch.randn(n, d, device=CUDA)
    for kind in ("srht", "countsketch", "gaussian"):
        S = lc.sketch.create(kind, m, n, seed=0)
        S.apply(A)
        _row(rows, f"{kind}.apply {n}x{d} -> {m}", measure(lambda S=S: S.apply(A), repeats=rep),
             graph=measure(_graph(S.apply, A), repeats=rep))
    for N, K in ((384, 384), (1536, 384), (4096, 4096), (11008, 4096)):
        W = torch.randn(N, K, generator=torch.Generator().manual_seed(0)) * 0.02
        lin = torch.nn.Linear(K, N, bias=False)
        lin.weight.data = W
        layer = DGQLinear.from_linear(lin).to(CUDA)
        lin16 = lin.to(CUDA, torch.float16)
        w = layer.weight
        for M in (1, 16, 128):
            x = torch.randn(M, K, device=CUDA)
            x16 = x.half()
            x_q, s = quantize_activations(x)
            w8t = expand_int8(w.qweight, w.zeros, w.group_scales, w.group_size).to(torch.int8).T.contiguous().T
            xi = x_q if M > 16 else torch.cat([x_q, x_q.new_zeros(17 - M, w.padded_in_features)])
            with torch.no_grad():
                comp = torch.compile(layer, fullgraph=True)
                ours = measure(lambda x=x: layer(x), repeats=rep)
                _row(rows, f"DGQLinear {K}->{N} M={M}", ours, measure(lambda x=x: comp(x), repeats=rep),
                     measure(_graph(layer, x), repeats=rep),
                     cuda_qmatmul_us=measure(lambda: qmatmul(x_q, s, w, backend="cuda"), repeats=rep).median * 1e6,
                     triton_qmatmul_us=measure(lambda: qmatmul(x_q, s, w, backend="triton"), repeats=rep).median * 1e6,
                     int_mm_us=measure(lambda: torch._int_mm(xi, w8t), repeats=rep).median * 1e6,
                     fp16_linear_us=measure(lambda: lin16(x16), repeats=rep).median * 1e6)
    src = torch.randn(4096, 4096, device=CUDA)
    Q = lc.quant.quantize(src, "nf4")
    out = torch.empty(4096, 4096, device=CUDA)
    _row(rows, "nf4 dequantize 4096x4096 (out=)", measure(lambda: Q.dequantize(out=out), repeats=rep),
         graph=measure(_graph(lambda o: Q.dequantize(out=o), out), repeats=rep),
         float32_copy_us=measure(lambda: out.copy_(src), repeats=rep).median * 1e6)
    return rows


def ensure_cupy(install: bool) -> str:
    """CuPy's version, installing the wheel for torch's CUDA major version when it is missing (a
    quick failure offline: no retries); a line saying why not otherwise."""
    import importlib

    try:
        return "cupy " + importlib.import_module("cupy").__version__
    except ImportError:
        pass
    major = (torch.version.cuda or "").split(".")[0]
    if not install or major not in ("11", "12", "13"):
        return f"cupy not installed{'' if install else ' (--no-cupy-install)'}: tests/test_cupy.py skipped"
    wheel = f"cupy-cuda{major}x"
    rc = subprocess.call([sys.executable, "-m", "pip", "install", "-q", "--retries", "0", "--timeout", "10", wheel])
    importlib.invalidate_caches()
    try:
        return "cupy " + importlib.import_module("cupy").__version__ + f" (installed {wheel})"
    except ImportError:
        return f"cupy not installed (pip install {wheel} exited {rc}): tests/test_cupy.py skipped"


def table(rows: list[dict]) -> str:
    cols = sorted({k for r in rows for k in r} - {"what"}, key=lambda k: (k not in ("eager_us", "compiled_us",
                                                                                     "graph_us"), k))
    lines = ["| what | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for r in rows:
        lines.append(f"| {r['what']} | " + " | ".join(f"{r[c]:.1f}" if c in r else "" for c in cols) + " |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-tests", action="store_true")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--no-cupy-install", action="store_true", help="do not pip-install CuPy when it is missing")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("gpu-check: no CUDA GPU visible to torch", file=sys.stderr)
        return 2
    t0 = time.time()
    rc = 0
    cupy = "cupy: tests skipped"
    if not args.skip_tests:
        cupy = ensure_cupy(not args.no_cupy_install)
        print(f"gpu-check: {cupy}", flush=True)
        rc = subprocess.call([sys.executable, "-m", "pytest", "-q", "-m", "gpu", "-p", "no:cacheprovider", "-x",
                              "tests/"])
    rows = bench(args.quick)
    name = torch.cuda.get_device_name()
    print(f"\n## GPU check: {name}, torch {torch.__version__}, linalg_core {lc.__version__}; "
          f"tests {'passed' if rc == 0 else 'FAILED' if not args.skip_tests else 'skipped'}; "
          f"{cupy}; {time.time() - t0:.0f} s\n")
    print(table(rows))
    if os.environ.get("OUT"):
        save(rows, os.environ["OUT"], tests_rc=rc, cupy=cupy, quick=args.quick)
    return rc


def save(rows: list[dict], out_dir, *, tests_rc: int, cupy: str, quick: bool) -> str:
    """``gpu_check.json`` (results schema 2: environment, rows with their raw samples) and
    ``gpu_check.csv`` in ``out_dir``; returns the JSON's path."""
    from linalg_core.bench import results
    from linalg_core.bench.harness import Report

    report = Report("gpu_check", quick=quick)
    for r in rows:
        report.add(**r)
    doc = results.document(report)
    doc.update(tests_rc=tests_rc, cupy=cupy)
    return str(results.save(doc, out_dir))


if __name__ == "__main__":
    sys.exit(main())
