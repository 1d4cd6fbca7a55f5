"""DGQ A8W4 family, same run: ``qmatmul`` (INT8 activations given, as produced by the previous
layer's epilogue) and ``DGQLinear`` (activation quantization included) against fp32
``torch.matmul`` on the dequantized weight, dequantize-then-matmul per call (the A16W4-style
baseline), ``torch._int_mm`` on the expanded INT8 weight (the W8A8 ideal: 8 bits per weight in
memory, oneDNN/AMX here), and bitsandbytes' 4-bit CPU matmul (NF4) when it installs.

Accuracy: relative error of y against the fp32 product x Wᵀ of the original weight; the integer
part is checked bit for bit against the torch reference in the same run.
Floors: M = 1, the packed weight bytes over the copy bandwidth measured in the run; large M,
the INT8 MACs over the rate torch._int_mm reaches in the same run.
"""

from __future__ import annotations

import logging

import torch

from linalg_core.bench.harness import MINILM_MISSING, Report, measure, minilm_available, per_call, ratio
from linalg_core.qmatmul import DGQLinear, cpu_path, dgq_quantize, qmatmul, quantize_activations
from linalg_core.testing import minilm_weights

TABLES = {  # kinds of comparison (Report.add sets each row's "table")
    "per call: DGQLinear's fixed costs": {"shape": r"re:\(per call\)$"},
    "layer call against nn.Linear": {"shape": r"re:\(layer call\)$"},
    "GPU: fused against unfused": {"shape": "re:^GPU "},
    "GEMM/GEMV against fp32, torch._int_mm and bitsandbytes": {},
}


def _bnb():
    logging.getLogger("bitsandbytes").setLevel(logging.ERROR)  # its optional-kernel notice
    try:
        import bitsandbytes as bnb
        import bitsandbytes.functional as F
    except Exception:  # noqa: BLE001  (bitsandbytes may fail to import in many ways)
        return None
    return bnb, F


def _rel(y, ref):
    return float((y.double() - ref.double()).norm() / ref.double().norm())


def shape_rows(report: Report, label: str, W: torch.Tensor, Ms, quick: bool, bnb):
    N, K = W.shape
    w = dgq_quantize(W, search="rtn" if quick else "two_phase", pad=True)
    lin = torch.nn.Linear(K, N, bias=False)
    lin.weight.data = W
    dlin = DGQLinear(w, None)
    W_deq = w.dequantize()
    w8t = w.int8_weight()[:, :K].T  # (K, N) column-major view: _int_mm's fastest layout here
    nf4 = bnb[1].quantize_4bit(W, quant_type="nf4", blocksize=64, compress_statistics=True) if bnb else None
    buf = torch.empty_like(W)
    copy = measure(lambda: buf.copy_(W), repeats=7)
    copy_gbs = 2 * W.numel() * 4 / copy.median / 1e9
    for M in Ms:
        g = torch.Generator().manual_seed(M)
        x = torch.randn(M, K, generator=g)
        x_q, s = quantize_activations(x)
        ref = x @ W.T
        ours = measure(lambda x_q=x_q, s=s: qmatmul(x_q, s, w), repeats=15)
        path = cpu_path(M)
        layer = measure(lambda x=x: dlin(x), repeats=15)
        fp32 = measure(lambda x=x: x @ W_deq.T, repeats=15)
        deq = measure(lambda x=x: x @ w.dequantize().T, repeats=7)
        xi = x_q if M > 16 else torch.cat([x_q, torch.zeros(17 - M, K, dtype=torch.int8)])  # _int_mm needs M > 16
        imm = measure(lambda xi=xi: torch._int_mm(xi, w8t), repeats=15)
        exact = torch.equal(qmatmul(x_q, s, w, backend="reference"), qmatmul(x_q, s, w))
        row = dict(shape=f"{label} M={M}", path=path, qmatmul_ms=ours.median * 1e3, layer_ms=layer.median * 1e3,
                   fp32_ms=fp32.median * 1e3, x_vs_fp32=fp32.median / ours.median,
                   dequant_matmul_ms=deq.median * 1e3, int_mm_ms=imm.median * 1e3, x_vs_int_mm=imm.median / ours.median,
                   rel_err=_rel(qmatmul(x_q, s, w), ref), bit_exact=exact)
        if bnb is not None:
            q, st = nf4
            theirs = measure(lambda x=x, q=q, st=st: bnb[0].matmul_4bit(x, q.t(), quant_state=st), repeats=5)
            row.update(bnb_4bit_ms=theirs.median * 1e3, x_vs_bnb=theirs.median / ours.median,
                       bnb_rel_err=_rel(bnb[0].matmul_4bit(x, q.t(), quant_state=st), ref))
        if M == 1:
            # the stored weight read once at the read rate of the fp32 GEMV of the same run
            stored = sum(t.numel() * t.element_size() for t in (w.qweight, w.zeros, w.group_scales, w.channel_scales))
            read_gbs = W.numel() * 4 / fp32.median / 1e9
            row.update(read_GB_s=read_gbs, floor_ms=stored / (read_gbs * 1e9) * 1e3)
        else:
            macs = M * N * w.padded_in_features
            row.update(int_mm_TMACs=macs / imm.median / 1e12, ours_TMACs=macs / ours.median / 1e12)
        report.add(**row)
    return copy_gbs


def gpu_rows(report: Report, quick: bool):
    """GPU: the fused kernels (CUDA dp4a, Triton int8 tl.dot) against the unfused path DGQ's release
    uses (expand the whole weight to INT8 in memory, then an INT8 GEMM: torch._int_mm), M <= 128."""
    dev = torch.device("cuda")
    n = 4096
    W = torch.randn(n, n, generator=torch.Generator().manual_seed(0)) * 0.02
    w = dgq_quantize(W, search="rtn")
    wd = type(w)(*(t.to(dev) for t in (w.qweight, w.zeros, w.group_scales, w.channel_scales, w.weight_sums)),
                 w.in_features, w.group_size)
    from linalg_core.backends.reference.qmatmul import expand_int8

    for M in (1, 16, 128):
        x_q, s = quantize_activations(torch.randn(M, n, generator=torch.Generator().manual_seed(M)).to(dev))

        def unfused(x_q=x_q, s=s, M=M):
            w8 = expand_int8(wd.qweight, wd.zeros, wd.group_scales, wd.group_size).to(torch.int8)
            xi = x_q if M > 16 else torch.cat([x_q, torch.zeros(17 - M, n, dtype=torch.int8, device=dev)])
            return torch._int_mm(xi, w8.T)[:M].float() * s * wd.channel_scales

        base = measure(unfused, repeats=20)
        row = dict(shape=f"GPU {torch.cuda.get_device_name()} {n}x{n} M={M}", unfused_ms=base.median * 1e3)
        for backend in ("cuda", "triton"):
            t = measure(lambda x_q=x_q, s=s, b=backend: qmatmul(x_q, s, wd, backend=b), repeats=20)
            row[f"{backend}_ms"] = t.median * 1e3
            row[f"{backend}_vs_unfused"] = base.median / t.median
        report.add(**row)


def layer_rows(report: Report, quick: bool):
    """DGQLinear against fp32 nn.Linear at M = 1 (one token: decoding), MiniLM-L6's real layers and
    4096 x 4096, eager and torch.compile-d (fullgraph), interleaved rounds (whole-layer calls:
    module overhead, activation quantization, product, epilogue, bias)."""
    cases = []
    if minilm_available():
        mini = minilm_weights()
        cases = [("MiniLM query 384->384", mini["encoder.layer.0.attention.self.query.weight"]),
                 ("MiniLM intermediate 384->1536", mini["encoder.layer.0.intermediate.dense.weight"]),
                 ("MiniLM output 1536->384", mini["encoder.layer.0.output.dense.weight"])]
    n = 1024 if quick else 4096
    cases.append((f"{n}x{n}", torch.randn(n, n, generator=torch.Generator().manual_seed(0)) * 0.02))
    for label, W in cases:
        b = torch.randn(W.shape[0], generator=torch.Generator().manual_seed(2)) * 0.02  # both layers add a bias
        N, K = W.shape
        lin = torch.nn.Linear(K, N)
        lin.weight.data, lin.bias.data = W.clone(), b.clone()
        layer = DGQLinear.from_linear(lin, search="rtn" if quick else "two_phase")
        x = torch.randn(1, K, generator=torch.Generator().manual_seed(1))
        with torch.no_grad():
            lin_c, layer_c = torch.compile(lin, fullgraph=True), torch.compile(layer, fullgraph=True)
            number = (20 if n == K else 500) if not quick else 50
            t = per_call({"nn.Linear": lambda: lin(x), "DGQLinear": lambda: layer(x),
                          "nn.Linear compiled": lambda: lin_c(x), "DGQLinear compiled": lambda: layer_c(x)},
                         number=number, rounds=5 if quick else 11)
            rel = float((layer(x) - lin(x)).norm() / lin(x).norm())
        r = t["rounds"]
        report.add(shape=f"{label} M=1 (layer call)", path=cpu_path(1), layer_us=t["DGQLinear"],
                   fp32_linear_us=t["nn.Linear"], x_vs_fp32_linear=ratio(r, "nn.Linear", "DGQLinear"),
                   layer_compiled_us=t["DGQLinear compiled"], fp32_linear_compiled_us=t["nn.Linear compiled"],
                   x_vs_fp32_compiled=ratio(r, "nn.Linear compiled", "DGQLinear compiled"), rel_err=rel)
    report.note("layer call rows: DGQLinear(x) and nn.Linear(x) at M = 1, eager and torch.compile(fullgraph=True), "
                "interleaved rounds; x_vs_fp32_* is the median same-round ratio (> 1: DGQLinear faster). Issue 17's "
                "targets: >= 1 on the MiniLM layers, >= 4 at 4096 x 4096.")


def per_call_rows(report: Report, quick: bool):
    """DGQLinear's per-call cost on MiniLM-L6's query layer (384 -> 384, M = 1), split in
    same-round differences: the layer call, the same call through the full Python path, and the
    floor every path pays (the output's torch.empty and the kernel itself)."""
    import os
    import statistics

    from linalg_core.backends._c import buf
    from linalg_core._ext import _C

    W = minilm_weights()["encoder.layer.0.attention.self.query.weight"]
    N, K = W.shape
    lin = torch.nn.Linear(K, N)
    lin.weight.data = W.clone()
    layer = DGQLinear.from_linear(lin, search="rtn")
    x = torch.randn(1, K, generator=torch.Generator().manual_seed(1))
    t = layer._plan()[1]
    y = torch.empty(1, N)
    args = [buf(a) for a in (x, *t[:4], t[4], layer.bias)]
    bufs = dict(x=args[0], dt=0, qweight=args[1], zeros=args[2], group_scales=args[3], weight_sums=args[4],
                channel_scales=args[5], bias=args[6], y=buf(y), N=N, K=K, group=layer.group_size, allowed=15)
    identity = torch.nn.Identity()

    def full():  # LINALG_CORE_DGQ_PATHS set (to its default, all paths): the direct binding declines
        os.environ["LINALG_CORE_DGQ_PATHS"] = "15"
        layer(x)
        del os.environ["LINALG_CORE_DGQ_PATHS"]

    def toggle():
        os.environ["LINALG_CORE_DGQ_PATHS"] = "15"
        del os.environ["LINALG_CORE_DGQ_PATHS"]

    with torch.no_grad():
        t = per_call({"nn.Linear": lambda: lin(x), "DGQLinear": lambda: layer(x), "full": full, "toggle": toggle,
                      "empty": lambda: torch.empty(1, N), "kernel M=1": lambda: _C.cpu_dgq_linear(M=1, **bufs),
                      "kernel M=0": lambda: _C.cpu_dgq_linear(M=0, **bufs), "Identity": lambda: identity(x)},
                     number=200 if quick else 2000, rounds=5 if quick else 15)
    r, med = t["rounds"], statistics.median
    full_us = [a - b for a, b in zip(r["full"], r["toggle"])]
    floor = [e + k1 - k0 for e, k1, k0 in zip(r["empty"], r["kernel M=1"], r["kernel M=0"])]
    shape = "MiniLM query 384->384 M=1 (per call)"
    report.add(shape=shape, impl="DGQLinear(x)", layer_us=t["DGQLinear"],
               x_vs_fp32_linear=ratio(r, "nn.Linear", "DGQLinear"),
               x_vs_full_path=med([a / b for a, b in zip(full_us, r["DGQLinear"])]))
    report.add(shape=shape, impl="DGQLinear(x), full Python path", layer_us=med(full_us),
               x_vs_fp32_linear=med([a / b for a, b in zip(r["nn.Linear"], full_us)]))
    report.add(shape=shape, impl="floor: torch.empty of y + the kernel", layer_us=med(floor))
    report.add(shape=shape, impl="dispatch + validation: DGQLinear(x) minus the floor",
               layer_us=med([a - b for a, b in zip(r["DGQLinear"], floor)]))
    report.add(shape=shape, impl="dispatch + validation less nn.Module.__call__ (the Identity row)",
               layer_us=med([a - b - c for a, b, c in zip(r["DGQLinear"], floor, r["Identity"])]))
    report.add(shape=shape, impl="dispatch + validation of the full path: minus the floor",
               layer_us=med([a - b for a, b in zip(full_us, floor)]))
    report.add(shape=shape, impl="nn.Module call of an Identity (paid by nn.Linear too)", layer_us=t["Identity"])
    report.add(shape=shape, impl="fp32 nn.Linear", layer_us=t["nn.Linear"])
    report.note("per call rows: interleaved rounds, medians of same-round differences. The floor is what any "
                "path pays: torch.empty of y plus the kernel (the cpu_dgq_linear binding with M = 1 minus the same "
                "call with M = 0, i.e. without its entry and checks); 'dispatch + validation' is the layer call minus "
                "the floor: nn.Module.__call__, forward's branch to the direct binding, the binding's tracing/mode "
                "probes and x's attributes, and the plan's re-identification of the weights (same tensors, versions "
                "and data pointers; the weights' full checks ran once, when the plan was made). The full Python path "
                "(_plan, _fused, the registry's eager dispatch, the cpu backend's marshalling) is timed with "
                "LINALG_CORE_DGQ_PATHS set to its default, which makes the direct binding decline; the cost of "
                "setting and deleting the variable is measured in the same rounds and subtracted.")


def run(report: Report, quick: bool = False):
    if torch.cuda.is_available():
        gpu_rows(report, quick)
    if minilm_available():
        per_call_rows(report, quick)
    else:
        report.note(MINILM_MISSING)
    layer_rows(report, quick)
    bnb = _bnb()
    if bnb is None:
        report.note("bitsandbytes not available (pip install bitsandbytes): its matmul_4bit columns are skipped")
    n = 1024 if quick else 4096
    W = torch.randn(n, n, generator=torch.Generator().manual_seed(0)) * 0.02
    gbs = shape_rows(report, f"{n}x{n}", W, (1, 16, 128), quick, bnb)
    mini = minilm_weights() if minilm_available() else {}
    for name in () if not mini else ("encoder.layer.0.attention.self.query.weight", "encoder.layer.0.intermediate.dense.weight",
                 "encoder.layer.0.output.dense.weight"):
        W = mini[name]
        shape_rows(report, f"MiniLM {name.split('layer.0.')[1].removesuffix('.weight')} {W.shape[0]}x{W.shape[1]}",
                   W, (1, 16, 128) if not quick else (1,), quick, bnb)
    report.note(f"copy bandwidth in this run: {gbs:.1f} GB/s (read + write, float32 copy into a kept buffer). M = 1 "
                "floor_ms: the stored DGQ weight read once at read_GB_s, the rate the fp32 GEMV reaches on the float32 "
                "weight in the same run. M > 1: compare ours_TMACs with int_mm_TMACs (torch._int_mm: oneDNN, AMX where the CPU has it).")
    report.note("path: the CPU kernel used (amx: tdpbssd tiles for M >= 16; avx512vnni: vpdpbusd; avx2: vpmaddubsw; all "
                "expand the INT4 codes with one vpshufb per 32 or 64 weights). qmatmul_ms takes INT8 activations; layer_ms is "
                "DGQLinear.forward with per-token activation quantization.")
