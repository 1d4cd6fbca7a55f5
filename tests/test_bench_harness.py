"""The benchmark harness (linalg_core.bench): results schema 2 and its round trip, the migration of
schema-1 files, raw samples, shapes as fields, one markdown table per kind of comparison, peers
skipped with a note, and where ``bench`` writes (a results folder; the committed files only with
``--write`` from a checkout). No benchmark is timed for its numbers here."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import pytest

import linalg_core.bench as bench
from linalg_core.bench import harness, results
from linalg_core.bench.harness import Report, Stats, dims, measure, per_call

ROOT = Path(__file__).resolve().parents[1]

TABLES = {"speed": {"kind": "speed"}, "accuracy": {}}


def _env():
    return {"cpu": "test CPU", "cores": 2, "threads": 2, "cpu_kernels": "avx2", "gpu": "none", "torch": "2",
            "commit": "abc", "date": "2026-12-07 00:00 UTC", "cpu_flags": ["avx2", "avx512f"]}


def _report(**kw) -> Report:
    return Report("fam", environment=_env(), tables=TABLES, **kw)


def test_measure_keeps_raw_samples_and_rows_carry_them():
    s = measure(lambda: sum(range(100)), repeats=4, warmup=0)
    assert isinstance(s, Stats) and s.repeats == 4 and len(s.samples) == 4
    assert min(s.samples) == s.best and s.q1 <= s.median <= s.q3
    rep = _report()
    row = rep.add(kind="speed", shape="64x32", impl="ours", ms=s.median * 1e3, other=s)  # value and Stats forms
    assert row["samples_s"]["ms"] == list(s.samples)
    assert row["other"] == s.median and row["samples_s"]["other"] == list(s.samples)


def test_per_call_rounds_are_samples_in_seconds():
    t = per_call({"a": lambda: None, "b": lambda: None}, number=10, rounds=3)
    rep = _report()
    row = rep.add(kind="speed", impl="a", us_per_call=t["a"], peer_ms=t["b"] / 1e3)
    assert row["samples_s"]["us_per_call"] == pytest.approx([x * 1e-6 for x in t["rounds"]["a"]])
    assert row["samples_s"]["peer_ms"] == pytest.approx([x * 1e-6 for x in t["rounds"]["b"]])


def test_dims_read_shapes_from_labels():
    assert dims("gaussian 131072x64 -> m=1024") == {"rows": 131072, "cols": 64, "m": 1024}
    assert dims("n=2^20 d=256") == {"n": 1 << 20, "d": 256}
    assert dims("MiniLM query 384->384 M=1 (per call)") == {"M": 1}
    assert dims("PiSSA MiniLM-L6 r=16") == {"r": 16}
    assert dims("no shape here, fp32") == {}


def test_add_sets_table_dims_and_quick_label():
    rep = _report(quick=True)
    row = rep.add(kind="speed", shape="2048x512", ms=1.0)
    assert row["table"] == "speed" and row["rows"] == 2048 and row["cols"] == 512 and row["quick"] is True
    assert rep.add(kind="acc", err=0.1)["table"] == "accuracy"
    assert rep.add(kind="speed", table="custom", ms=2.0)["table"] == "custom"  # a given table wins


def test_schema2_round_trip_json_and_csv(tmp_path):
    rep = _report()
    s = measure(lambda: None, repeats=3, warmup=0)
    rep.add(kind="speed", shape="8x4", impl="ours", ms=s)
    rep.add(kind="acc", case="n=2^10", err=float("nan"), ok=True)
    rep.note("a note")
    path = results.save(results.document(rep), tmp_path)
    doc = json.loads(path.read_text())  # standard JSON: NaN written as null
    assert doc["schema"] == harness.SCHEMA == 2 and doc["family"] == "fam" and doc["quick"] is False
    assert doc["environment"]["cpu"] == "test CPU" and doc["notes"] == ["a note"]
    assert [t["name"] for t in doc["tables"]] == ["speed", "accuracy"]
    speed = doc["tables"][0]
    assert speed["columns"] == ["kind", "shape", "impl", "ms"] and speed["dims"] == ["rows", "cols"]
    assert doc["rows"][1]["err"] is None
    back = results.load_results(path)
    assert back == doc
    with open(tmp_path / "fam.csv") as f:
        rows = list(csv.DictReader(f))
    assert rows[0]["rows"] == "8" and "samples_s" not in rows[0]


def test_environment_has_what_a_reader_needs():
    env = harness.environment()
    for key in ("cpu", "cpu_flags", "cpu_kernels", "cores", "threads", "thread_settings", "torch", "python",
                "versions", "linalg_core", "commit", "date"):
        assert key in env, key
    assert {"numpy", "scipy"} <= set(env["versions"])
    assert env["thread_settings"]["torch"]["intra_op"] == env["threads"]
    assert "Machine:" in harness.environment_line(env)


def test_schema1_files_are_migrated(tmp_path):
    legacy = {"machine": _env(), "notes": ["old"],
              "rows": [{"op": "fwht", "shape": "65536x256 dim=-1 (N=256)", "impl": "ours", "ms": 1.0},
                       {"op": "per call", "shape": "fwht 1x256", "impl": "ours", "us_per_call": 2.0}]}
    (tmp_path / "sketch.json").write_text(json.dumps(legacy))
    doc = results.load_results(tmp_path / "sketch.json")
    assert doc["schema"] == 2 and doc["family"] == "sketch" and doc["environment"] == _env()
    assert doc["rows"][0]["table"].startswith("fwht") and doc["rows"][1]["table"].startswith("per call")
    assert doc["rows"][0]["rows"] == 65536 and doc["rows"][0]["N"] == 256
    assert [t["name"] for t in doc["tables"]] == [doc["rows"][0]["table"], doc["rows"][1]["table"]]
    (tmp_path / "bad.json").write_text(json.dumps({"schema": 99, "rows": []}))
    with pytest.raises(ValueError, match="schema 99"):
        results.load_results(tmp_path / "bad.json")


def test_committed_results_load():
    docs = results.load_all(ROOT / "benchmarks" / "results")
    assert docs and all(d["schema"] == 2 and d["rows"] and d["environment"] for d in docs.values())


def test_markdown_one_table_per_kind_with_its_columns():
    rep = _report()
    rep.add(kind="speed", impl="ours", ms=1.0)
    rep.add(kind="speed", impl="peer", ms=2.0, speedup=2.0)
    rep.add(kind="acc", impl="ours", err=0.5)
    md = results.markdown(results.document(rep))
    assert "### speed" in md and "### accuracy" in md and "Machine: test CPU" in md
    speed, acc = md.split("### speed")[1].split("### accuracy")
    assert "| kind | impl | ms | speedup |" in speed and "err" not in speed
    assert "| kind | impl | err |" in acc and "ms" not in acc


def test_markdown_of_a_run_equals_markdown_of_its_saved_json(tmp_path):
    # a NaN cell (no value) is blank, and a column of NaN left out, both when --write renders the
    # run and when --render reads the JSON, where NaN is stored as null
    rep = _report()
    rep.add(kind="speed", impl="ours", ms=1.0, err=float("nan"), energy=float("nan"))
    rep.add(kind="speed", impl="peer", ms=2.0, err=0.5, energy=float("nan"))
    doc = results.document(rep)
    saved = results.load_results(results.save(doc, tmp_path))
    assert results.markdown(doc) == results.markdown(saved)
    assert "| ours | 1 |  |" in results.markdown(doc)
    assert "energy" not in results.markdown(doc)  # a column with no value in any row is left out


def test_update_results_md_keeps_hand_written_text_and_shows_the_plot(tmp_path):
    md = tmp_path / "RESULTS.md"
    md.write_text("# Results\n\n## fam\n\nhand-written intro\n\n<!-- bench:fam:begin -->\nold\n<!-- bench:fam:end -->\n"
                  "\nhand-written after\n")
    rep = _report()
    rep.add(kind="speed", ms=1.0)
    (tmp_path / "fam.png").write_bytes(b"png")
    results.update_results_md(results.document(rep), md)
    text = md.read_text()
    assert "hand-written intro" in text and "hand-written after" in text and "old" not in text
    assert "<!-- bench:fam:begin -->\n![fam](fam.png)\n" in text
    rep2 = Report("other", environment=_env())
    rep2.add(case="x", ms=1.0)
    results.update_results_md(results.document(rep2), md)
    assert "## other\n\n<!-- bench:other:begin -->" in md.read_text()


def test_peer_missing_is_skipped_with_a_note():
    rep = _report()
    assert rep.peer("linalg_core_no_such_peer", what="the peer rows") is None
    assert "linalg_core_no_such_peer not available" in rep.notes[0] and "the peer rows skipped" in rep.notes[0]
    assert rep.peer("json") is json


def test_families_are_the_modules():
    names = bench.families()
    assert {"sketch", "lowrank", "quant", "qmatmul"} <= set(names)
    assert not {"harness", "results", "plots"} & set(names)


def test_run_writes_into_the_results_folder_not_the_committed_files(tmp_path, monkeypatch):
    import types

    fake = types.ModuleType("linalg_core.bench.fakefam")
    fake.TABLES = TABLES

    def run(report, quick):
        report.add(kind="speed", impl="ours", ms=measure(lambda: None, repeats=3, warmup=0))

    fake.run = run
    monkeypatch.setitem(sys.modules, "linalg_core.bench.fakefam", fake)
    monkeypatch.setattr(bench, "families", lambda: ["fakefam"])
    monkeypatch.chdir(tmp_path)
    committed = (ROOT / "benchmarks" / "RESULTS.md").read_text()
    bench.run_families(["fakefam"], quick=True)
    out = tmp_path / bench.DEFAULT_OUT
    doc = results.load_results(out / "fakefam.json")
    assert doc["quick"] is True and doc["rows"][0]["quick"] is True
    assert (out / "fakefam.csv").is_file() and "fakefam" in (out / "summary.md").read_text()
    bench.run_families(["fakefam"], out=tmp_path / "elsewhere")
    assert (tmp_path / "elsewhere" / "fakefam.json").is_file()
    assert (ROOT / "benchmarks" / "RESULTS.md").read_text() == committed
    assert not (ROOT / "benchmarks" / "results" / "fakefam.json").exists()
    with pytest.raises(bench.UsageError, match="--quick"):
        bench.run_families(["fakefam"], quick=True, write=True)
    with pytest.raises(bench.UsageError, match="unknown benchmark family"):
        bench.run_families(["nosuch"])


def test_write_updates_the_checkout_files(tmp_path, monkeypatch):
    import types

    root = tmp_path / "checkout"
    (root / "benchmarks" / "results").mkdir(parents=True)
    (root / "benchmarks" / "RESULTS.md").write_text("# Benchmark results\n\nhand-written\n")
    (root / "README.md").write_text("# readme without generated blocks\n")
    fake = types.ModuleType("linalg_core.bench.fakefam")
    fake.run = lambda report, quick: report.add(case="n=2^4", ms=measure(lambda: None, repeats=3, warmup=0))
    monkeypatch.setitem(sys.modules, "linalg_core.bench.fakefam", fake)
    monkeypatch.setattr(bench, "families", lambda: ["fakefam"])
    monkeypatch.setattr(harness, "checkout_root", lambda: root)
    monkeypatch.chdir(tmp_path)
    bench.run_families(["fakefam"], write=True)
    doc = results.load_results(root / "benchmarks" / "results" / "fakefam.json")
    assert doc["quick"] is False and doc["rows"][0]["n"] == 16 and "samples_s" in doc["rows"][0]
    text = (root / "benchmarks" / "RESULTS.md").read_text()
    assert "hand-written" in text and "## fakefam\n\n<!-- bench:fakefam:begin -->" in text
    assert not (tmp_path / bench.DEFAULT_OUT).exists()  # --write writes the checkout only


def test_write_refuses_outside_a_checkout(monkeypatch):
    monkeypatch.setattr(harness, "checkout_root", lambda: None)
    with pytest.raises(bench.UsageError, match="installed package"):
        bench.run_families(["sketch"], write=True)


def test_cli_errors_and_deprecated_no_write(monkeypatch, capsys):
    from linalg_core import __main__ as cli

    monkeypatch.setattr(cli, "quiet_third_party", lambda: None)  # no process-wide filters in the test process
    assert cli.main(["bench", "--quick", "--write", "sketch"]) == 2
    assert "cannot be combined with --quick" in capsys.readouterr().err
    assert cli.main(["bench", "--no-write", "nosuch"]) == 2
    err = capsys.readouterr().err
    assert "--no-write is deprecated" in err and "unknown benchmark family" in err
    assert cli.main(["bench", "--render", "sketch"]) == 2
    assert "--render runs nothing" in capsys.readouterr().err


def test_render_reproduces_the_committed_results_md(tmp_path):
    # RESULTS.md's generated sections are what the renderer makes of the committed JSON
    md = tmp_path / "RESULTS.md"
    md.write_text((ROOT / "benchmarks" / "RESULTS.md").read_text())
    results.render(ROOT / "benchmarks" / "results", md, image_dir=ROOT / "benchmarks")
    assert md.read_text() == (ROOT / "benchmarks" / "RESULTS.md").read_text(), (
        "benchmarks/RESULTS.md differs from its results JSON: python -m linalg_core bench --render")
