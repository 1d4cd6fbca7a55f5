"""README's results table is generated from benchmarks/results/*.json and cannot drift from them."""

import json
import math
from pathlib import Path

import pytest

from linalg_core.testing.headlines import HEADLINES, Headline, quality_table, readme_block, readme_table, verdict

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def test_readme_table_matches_the_results_files():
    assert readme_block(ROOT / "README.md") == readme_table(RESULTS), (
        "README's results table differs from benchmarks/results: run `python -m linalg_core bench --render` "
        "(or `bench <family> --write`, which reruns the family and rewrites the table)")


def test_readme_quality_table_matches_the_results_files():
    assert readme_block(ROOT / "README.md", "quality") == quality_table(RESULTS)


def test_every_headline_finds_its_rows():
    readme_table(RESULTS)  # raises LookupError naming the headline whose row is missing or ambiguous
    families = {p.stem for p in RESULTS.glob("*.json")}
    assert {h.family for h in HEADLINES} <= families


@pytest.mark.parametrize("ratio, expected", [(1.25, "faster"), (1.2, "parity"), (0.8, "parity"), (0.79, "slower"),
                                             (math.nan, "n/a")])
def test_verdict_bounds(ratio, expected):
    assert verdict(ratio) == expected


def test_table_reads_ratio_and_flags_a_missing_row(tmp_path):
    (tmp_path / "fam.json").write_text(json.dumps({"machine": {"cpu_kernels": "avx2", "date": "2026-12-07 01:00 UTC"},
                                                   "rows": [{"case": "a", "ours_ms": 2.0, "peer_ms": 1.0}]}))
    h = Headline("fam", "a case", {"case": "a"}, "ours_ms", "peer", "peer_ms")
    table = readme_table(tmp_path, [h])
    assert "| fam | a case | 2 ms | peer 1 ms | 0.50× | slower |" in table
    assert "0 lines faster than the peer, 0 at parity (0.8–1.25×), 1 slower." in table
    with pytest.raises(LookupError, match="a missing case"):
        readme_table(tmp_path, [Headline("fam", "a missing case", {"case": "b"}, "ours_ms", "peer", "peer_ms")])


def test_table_reads_schema_2_files(tmp_path):
    doc = {"schema": 2, "family": "fam", "environment": {"cpu": "Intel(R) Xeon(R) Processor", "cpu_kernels": "avx512",
                                                          "date": "2026-12-07 05:00 UTC"},
           "tables": [{"name": None, "columns": ["case", "ours_ms", "peer_ms"], "dims": []}],
           "rows": [{"case": "a", "ours_ms": 1.0, "peer_ms": 2.0, "samples_s": {"ours_ms": [0.001]}}], "notes": []}
    (tmp_path / "fam.json").write_text(json.dumps(doc))
    table = readme_table(tmp_path, [Headline("fam", "a case", {"case": "a"}, "ours_ms", "peer", "peer_ms")])
    assert "| fam | a case | 1 ms | peer 2 ms | 2.00× | faster |  | Intel Xeon, avx512, 2026-12-07 |" in table
