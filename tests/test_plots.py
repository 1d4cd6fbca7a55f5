"""linalg_core.bench.plots: every committed results file draws; minimal, schema-2 and malformed
files are read tolerantly (a bad row is left out, never an error)."""

import json
import math
from pathlib import Path

import pytest

pytest.importorskip("matplotlib")

from linalg_core.bench import plots  # noqa: E402

RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _is_png(path: Path) -> bool:
    return path.is_file() and path.read_bytes()[:8] == PNG_MAGIC


def _write(tmp_path, name, data) -> Path:
    p = tmp_path / f"{name}.json"
    p.write_text(json.dumps(data))
    return p


def _committed():
    return sorted(RESULTS.glob("*.json")) if RESULTS.is_dir() else []


@pytest.mark.skipif(not _committed(), reason="no committed benchmarks/results/*.json in this tree")
def test_every_committed_results_file_draws(tmp_path):
    written = plots.draw_all(RESULTS, tmp_path)
    assert [p.stem for p in written] == [p.stem for p in _committed()]
    for png in written:
        assert _is_png(png), png
        assert png.stat().st_size < 150_000, (png, png.stat().st_size)


@pytest.mark.skipif(not _committed(), reason="no committed benchmarks/results/*.json in this tree")
def test_committed_files_as_schema_2_draw_the_same(tmp_path):
    """Schema 2 keeps the row keys and adds fields (table, shape integers, samples): same figures."""
    results = pytest.importorskip("linalg_core.bench.results")
    if not hasattr(results, "load_results"):
        pytest.skip("linalg_core.bench.results.load_results not there")
    for path in [p for p in _committed() if p.stem in ("convert", "vsa")]:
        doc = results.load_results(path)
        assert doc.get("schema", 2) >= 2
        s2 = tmp_path / "s2" / path.name
        s2.parent.mkdir(exist_ok=True)
        s2.write_text(json.dumps(doc, default=str))
        assert plots.draw(s2, tmp_path / f"{path.stem}-2.png")
        assert plots.draw(path, tmp_path / f"{path.stem}-1.png")
        assert (tmp_path / f"{path.stem}-1.png").read_bytes() == (tmp_path / f"{path.stem}-2.png").read_bytes()


MACHINE = {"cpu": "Test CPU", "cores": 2, "threads": 2, "gpu": "none", "date": "2026-01-01 00:00 UTC"}
LOWRANK_ROWS = [
    {"matrix": "256x256 beta=1.0", "rank": 8, "impl": "linalg_core.rsvd (defaults)", "ms": 1.0, "sigma_err": 1e-4},
    {"matrix": "256x256 beta=1.0", "rank": 8, "impl": "torch.svd_lowrank q=r niter=4", "ms": 2.0, "sigma_err": 1e-2},
    {"matrix": "256x256 beta=1.0", "rank": 8, "impl": "torch.svd_lowrank q=2r niter=4", "ms": 3.0, "sigma_err": 0.0},
]


def test_minimal_file_current_format(tmp_path):
    out = tmp_path / "lowrank.png"
    assert plots.draw(_write(tmp_path, "lowrank", {"machine": MACHINE, "rows": LOWRANK_ROWS, "notes": []}), out)
    assert _is_png(out)


def test_minimal_file_schema_2(tmp_path):
    rows = [dict(r, table="lowrank", samples_ms=[r["ms"]] * 3) for r in LOWRANK_ROWS]
    data = {"schema": 2, "environment": {"cpu": "Test CPU", "threads": 2}, "tables": [{"name": "lowrank"}],
            "rows": rows}
    assert plots.draw(_write(tmp_path, "lowrank", data), tmp_path / "a.png")
    # rows kept only inside the tables
    data = {"schema": 2, "environment": {}, "tables": [{"name": "lowrank", "rows": rows}]}
    assert plots.draw(_write(tmp_path, "lowrank", data), tmp_path / "b.png")
    assert _is_png(tmp_path / "a.png") and _is_png(tmp_path / "b.png")


@pytest.mark.parametrize("family,row", [
    ("convert", {"case": "f32 -> bf16", "ours_ms": 1.0, "torch_cast_and_check_ms": 10.0, "copy_floor_ms": 0.8}),
    ("random", {"case": "normal", "ours_ms": 2.0, "torch_ms": 1.0, "floor_ms": 0.1}),
    ("regression", {"problem": "n=2^10 d=8", "impl": "linalg_core sketch_and_precondition", "ms": 3.0,
                    "forward_error": 1e-15}),
    ("adapters", {"model": "M", "rank": 4, "impl": "linalg_core pissa", "ms": 5.0, "captured_energy": 0.99}),
    ("quant", {"case": "LLM-like, r=8, nf4", "bits": 4.1, "nf_rel_err": 0.1, "lq_rel_err": 0.08}),
    ("vsa", {"case": "cars, D=1024", "knn5_origin_vsa": 0.8}),
    ("sampling", {"problem": "p=1", "size": 10, "scores": "lewis", "median_cost_gap": 0.01, "ms_per_seed": 1.0}),
    ("threads", {"workload": "w", "setting": "default", "peer/ours quiet": 1.5}),
    ("newfamily", {"case": "a new family", "speedup": 2.0}),  # no figure of its own: generic speedup bars
])
def test_one_row_per_family(tmp_path, family, row):
    out = tmp_path / f"{family}.png"
    assert plots.draw(_write(tmp_path, family, {"machine": MACHINE, "rows": [row]}), out)
    assert _is_png(out)


def test_malformed_rows_are_skipped(tmp_path):
    bad = [
        "not a row",
        None,
        {"matrix": "256x256 beta=1.0", "rank": 8, "impl": "linalg_core.rsvd"},  # no time, no error
        {"matrix": "256x256 beta=1.0", "rank": 8, "impl": "torch.svd_lowrank on bf16", "ms": "fails"},
        {"matrix": "256x256 beta=1.0", "rank": 8, "impl": "torch.svd_lowrank", "ms": math.nan, "sigma_err": 1.0},
        {"matrix": "256x256 beta=1.0", "rank": 8, "impl": 3, "ms": 1.0, "sigma_err": 1.0},
        {"matrix": None, "ms": True, "sigma_err": [1]},
    ]
    path = tmp_path / "lowrank.json"
    path.write_text(json.dumps({"rows": LOWRANK_ROWS + bad}, allow_nan=True))
    assert plots.draw(path, tmp_path / "ok.png")
    # only malformed rows: nothing to plot, nothing written
    path.write_text(json.dumps({"rows": bad}, allow_nan=True))
    assert plots.draw(path, tmp_path / "none.png") is False
    assert not (tmp_path / "none.png").exists()
    for family in list(plots.FAMILIES) + ["newfamily"]:
        p = _write(tmp_path, family, {"machine": "not a dict", "rows": bad, "notes": "not a list"})
        assert plots.draw(p, tmp_path / f"{family}.png") is False, family


def test_empty_and_odd_files(tmp_path):
    assert plots.draw(_write(tmp_path, "lowrank", {}), tmp_path / "x.png") is False
    assert plots.draw(_write(tmp_path, "lowrank", []), tmp_path / "x.png") is False
    assert plots.draw(_write(tmp_path, "sketch", {"rows": "nope"}), tmp_path / "x.png") is False
    assert not (tmp_path / "x.png").exists()


def test_command_line(tmp_path, capsys):
    res = tmp_path / "results"
    res.mkdir()
    _write(res, "lowrank", {"machine": MACHINE, "rows": LOWRANK_ROWS})
    _write(res, "vsa", {"rows": [{"case": "no numbers"}]})
    assert plots.main([str(res), str(tmp_path / "out")]) == 0
    assert capsys.readouterr().out.split() == [str(tmp_path / "out" / "lowrank.png")]
    assert _is_png(tmp_path / "out" / "lowrank.png")
    assert not (tmp_path / "out" / "vsa.png").exists()


JUNK = [None, "fails", [1], {"a": 1}, -1.0, math.nan, True, 0]


@pytest.mark.skipif(not _committed(), reason="no committed benchmarks/results/*.json in this tree")
def test_junk_values_never_crash(tmp_path):
    """Each key of real rows replaced by odd values (text, NaN, lists, negatives...): no error."""
    for path in _committed():
        rows = [r for r in json.loads(path.read_text())["rows"] if isinstance(r, dict)][:2]
        junk = []
        for i, r in enumerate(rows):
            for j, key in enumerate(r):
                junk.append({**r, key: JUNK[(i + j) % len(JUNK)]})
        p = tmp_path / path.name
        p.write_text(json.dumps({"rows": rows[:1] + junk}, allow_nan=True))
        assert plots.draw(p, tmp_path / f"{path.stem}.png") in (True, False)


def test_argument_validation(tmp_path):
    p = _write(tmp_path, "lowrank", {"rows": LOWRANK_ROWS})
    with pytest.raises(TypeError, match="results_json"):
        plots.draw(3, tmp_path / "a.png")
    with pytest.raises(TypeError, match="out_png"):
        plots.draw(p, None)
    with pytest.raises(ValueError, match="out_png"):
        plots.draw(p, tmp_path / "a.jpg")
    with pytest.raises(FileNotFoundError, match="results_json"):
        plots.draw(tmp_path / "missing.json", tmp_path / "a.png")
    with pytest.raises(ValueError, match="results_dir"):
        plots.draw_all(p, tmp_path)
    with pytest.raises(TypeError, match="out_dir"):
        plots.draw_all(tmp_path, 1.5)


def test_optim_figure_and_loss_curves(tmp_path):
    rows = [
        {"case": "synthetic drifting gradient", "shape": "512x512", "rank": 32, "ours_ms": 2.0,
         "galore_svd_ms": 40.0, "speedup": 20.0, "energy_vs_exact": 0.998},
        {"case": "fine-tune MiniLM-L6 20 steps (linalg_core GaLoreAdamW)", "wall_s": 10.0, "optimizer_s": 1.0,
         "loss_last10": 0.9},
        {"case": "fine-tune MiniLM-L6 20 steps (galore-torch GaLoreAdamW)", "wall_s": 12.0, "optimizer_s": 3.0,
         "loss_last10": 0.91},
    ]
    assert plots.draw(_write(tmp_path, "optim", {"schema": 2, "family": "optim", "rows": rows}), tmp_path / "o.png")
    assert _is_png(tmp_path / "o.png")
    plots.draw_curves({"linalg_core": [3.0, 2.0, 1.0], "peer": [3.0, 2.5, 2.0]}, tmp_path / "c.png", title="t")
    assert _is_png(tmp_path / "c.png")
    with pytest.raises(TypeError, match="curves"):
        plots.draw_curves({"a": ["x"]}, tmp_path / "c.png")
    with pytest.raises(ValueError, match="smooth"):
        plots.draw_curves({"a": [1.0]}, tmp_path / "c.png", smooth=0)
    with pytest.raises(ValueError, match="out_png"):
        plots.draw_curves({"a": [1.0]}, tmp_path / "c.svg")
