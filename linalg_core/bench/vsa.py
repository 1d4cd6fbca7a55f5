"""VSA family, same run: binding throughput of the structured orthogonal matrices (Hadamard rounds
through the FWHT kernel, signed permutations) against dense Haar matrices (a GEMM), and JSON
encoding rate and retrieval quality on the vega-datasets ``cars`` records: leave-one-out k-NN
agreement of ``Origin`` from vectors encoded without that field, against the same k-NN on the
standardised raw numeric columns.

Haar matrices above d = 4096 are not generated (the QR of a 16384² Gaussian alone takes
minutes); their binding time is that of a GEMM with any dense d × d matrix, so a Gaussian one
stands in for the timing.
"""

from __future__ import annotations

import math
import time

import torch

from linalg_core.bench.harness import Report, measure
from linalg_core.testing.datasets import cars, cars_path
from linalg_core.vsa import MBAT, encode_jsonl, orthogonal

TABLES = {  # kinds of comparison (Report.add sets each row's "table")
    "binding throughput": {"case": "re:^bind "},
    "encoding and nearest-neighbour search (cars)": {"case": "re:^cars"},
}

NUMERIC = ["Miles_per_Gallon", "Cylinders", "Displacement", "Horsepower", "Weight_in_lbs", "Acceleration"]


def binding(report: Report, quick: bool):
    n = 256
    for d in ([1024, 4096] if quick else [1024, 2048, 4096, 8192, 16384]):
        X = torch.randn(n, d, generator=torch.Generator().manual_seed(d))
        if d <= 4096:
            dense = orthogonal(d, kind="haar", seed=0).MT
            stand_in = False
        else:
            dense = torch.randn(d, d, generator=torch.Generator().manual_seed(1)) / math.sqrt(d)
            stand_in = True
        t_dense = measure(lambda X=X, dense=dense: X @ dense, repeats=5)
        row = dict(case=f"bind {n} vectors, d={d}", haar_ms=t_dense.median * 1e3, haar_stand_in=stand_in)
        for kind in ("hadamard", "signed_permutation"):
            M = orthogonal(d, kind=kind, seed=0)
            t = measure(lambda X=X, M=M: M.apply(X), repeats=9)
            row[f"{kind}_ms"] = t.median * 1e3
            row[f"{kind}_speedup"] = t_dense.median / t.median
        report.add(**row)


def _knn_agreement(V: torch.Tensor, labels: list, k: int, cosine: bool) -> float:
    if cosine:
        Vn = torch.nn.functional.normalize(V, dim=1)
        S = Vn @ Vn.T
    else:
        S = -torch.cdist(V, V)
    S.fill_diagonal_(-math.inf)
    nn = S.topk(k, dim=1).indices
    hits = 0
    for i, row in enumerate(nn.tolist()):
        votes = {}
        for j in row:
            votes[labels[j]] = votes.get(labels[j], 0) + 1
        hits += max(votes, key=votes.get) == labels[i]
    return hits / len(labels)


def retrieval(report: Report, quick: bool):
    recs = cars()
    labels = [r["Origin"] for r in recs]
    without = [{k: v for k, v in r.items() if k != "Origin"} for r in recs]
    numeric_only = [{k: v for k, v in r.items() if k in NUMERIC or k == "Year"} for r in recs]
    for D in ([1024, 4096] if quick else [1024, 4096, 16384]):
        m = MBAT(D, kind="hadamard", seed=0)
        reps = 2 if quick else 10
        t0 = time.perf_counter()
        for _ in range(reps):
            V = encode_jsonl(without, mbat=m)
        rate = reps * len(recs) / (time.perf_counter() - t0)
        Vn = encode_jsonl(numeric_only, mbat=m)
        report.add(case=f"cars, D={D}", records_per_s=rate,
                   knn5_origin_vsa=_knn_agreement(V, labels, 5, True),
                   knn5_origin_vsa_numeric_fields=_knn_agreement(Vn, labels, 5, True))
    cols = []
    for c in NUMERIC + ["Year"]:
        vals = [float(r[c][:4]) if c == "Year" else r[c] for r in recs]
        present = [v for v in vals if v is not None]
        mean = sum(present) / len(present)
        col = torch.tensor([mean if v is None else v for v in vals], dtype=torch.float64)
        cols.append((col - col.mean()) / col.std())
    raw = torch.stack(cols, 1)
    report.add(case="cars, raw numeric columns (standardised, nulls -> mean), Euclidean",
               knn5_origin_raw=_knn_agreement(raw, labels, 5, False))
    majority = max(set(labels), key=labels.count)
    report.note(f"cars: {len(recs)} records, Origin classes {sorted(set(labels))}; always guessing the majority "
                f"({majority}) scores {labels.count(majority) / len(labels):.3f}. knn5_origin_vsa encodes every field but "
                "Origin (the Name tokens carry the maker); ..._numeric_fields only the six measurements and the year.")


def run(report: Report, quick: bool = False):
    binding(report, quick)
    if cars_path() is None:
        report.note("vega-datasets not installed (pip install --no-deps vega-datasets): the cars retrieval rows "
                    "are skipped")
    else:
        retrieval(report, quick)
