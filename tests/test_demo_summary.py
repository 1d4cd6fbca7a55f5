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
