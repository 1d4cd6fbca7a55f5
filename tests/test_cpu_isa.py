"""Every CPU kernel set this machine can run (generic, avx2, avx512) computes the same results:
the portable fallback is what runs on CPUs without AVX, and on aarch64."""

import json
import subprocess
import sys

import pytest

from linalg_core._ext import _C

pytestmark = pytest.mark.skipif(_C is None, reason="_C not built")

SCRIPT = r"""
import json, sys, torch, linalg_core as lc
from linalg_core._ext import _C
g = torch.Generator().manual_seed(0)
x = torch.randn(2**15, 3, generator=g, dtype=torch.float64)
h = torch.randn(64, 256, generator=g).to(torch.bfloat16)
A = torch.randn(1000, 7, generator=g, dtype=torch.float64)
out = {
    "isa": _C.cpu_isa(),
    "fwht": lc.fwht(x, dim=0).flatten()[::97].tolist(),
    "fwht_bf16": lc.fwht(h).float().flatten()[::31].tolist(),
    "srht": lc.sketch.srht(64, 1000, seed=3).apply(A).flatten().tolist(),
    "sjlt": lc.sketch.sparse_sign(64, 1000, seed=3).apply_right(A.T).flatten().tolist(),
    "words": lc.random.uint32(100, seed=9, offset=11).tolist(),
    "normals": lc.random.normal((3, 50), seed=9, dtype=torch.float64).flatten().tolist(),
    "gram": lc._ops.weighted_gram(A[:999, :5].contiguous(), A[:999, 6].contiguous(), backend="cpu").flatten().tolist(),
    "forms": lc._ops.row_quadratic_forms(A[:999, :5].contiguous(), torch.eye(5, dtype=torch.float64),
                                         backend="cpu").tolist(),
    "bf16": __import__("linalg_core._arrays", fromlist=["cast"]).cast(
        torch.randn(300001, generator=g), torch.bfloat16)[0].view(torch.int16)[::101].tolist(),
    "f16_bf16": __import__("linalg_core._arrays", fromlist=["cast"]).cast(
        torch.randn(300001, generator=g).half().index_put_((torch.tensor([0, 97, 194]),),
                                                           torch.tensor([float("nan"), float("inf"), 6e-8]).half()),
        torch.bfloat16)[0].view(torch.int16)[::97].tolist(),
    "update": [(lambda W, B, A, o: (lc._ops.lowrank_update(W, B, A, 0.5, o, backend="cpu"), o.float())[1])(
        W, torch.randn(130, 5, generator=g), torch.randn(5, 301, generator=g), torch.empty_like(W)).flatten()[::13]
        .tolist() for W in (torch.randn(130, 301, generator=g), torch.randn(130, 301, generator=g).to(torch.bfloat16),
                            torch.randn(130, 301, generator=g).to(torch.float16))],
    "quant": [q.dequantize(torch.float32).flatten()[::7].tolist() + q.data["codes"][::5].tolist()
              for q in (lc.quant.quantize(torch.randn(97, 160, generator=g).to(dt), fmt)
                        for dt in (torch.float32, torch.bfloat16) for fmt in ("nf3", "bnb-nf4", "nf8", "int4-asym"))],
}
json.dump(out, sys.stdout)
"""


def run_with(isa):
    env = {**__import__("os").environ, "LINALG_CORE_CPU_ISA": isa, "TRITON_INTERPRET": "0"}
    p = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, env=env, timeout=300)
    return p


def test_kernel_sets_agree():
    results = {}
    for isa in ("generic", "avx2", "avx512"):
        p = run_with(isa)
        if p.returncode != 0:
            assert isa != "generic", p.stderr  # the portable fallback always runs
            assert "lacks" in p.stderr or "not one of" in p.stderr, p.stderr
            continue
        results[isa] = json.loads(p.stdout)
        assert results[isa]["isa"] == isa
    base = results.pop("generic")
    for isa, res in results.items():
        assert res["words"] == base["words"], isa
        assert res["quant"] == base["quant"], isa  # codes and dequantized values bit for bit
        for key in ("fwht", "fwht_bf16", "srht", "sjlt", "normals", "update"):
            a, b = (res[key], base[key]) if key != "update" else (sum(res[key], []), sum(base[key], []))
            assert len(a) == len(b)
            tol = {"fwht_bf16": 2e-2, "update": 1e-2}.get(key, 1e-9)  # update: float32 and bfloat16 results
            assert all(abs(u - v) <= tol * max(1.0, abs(v)) for u, v in zip(a, b)), (isa, key)


def test_unknown_kernel_set_is_rejected():
    p = run_with("sse9")
    assert p.returncode != 0 and "LINALG_CORE_CPU_ISA=sse9" in p.stderr
