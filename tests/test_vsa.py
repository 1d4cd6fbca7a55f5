"""Orthogonal MBAT: orthogonality, norm stability against Gaussian binding, decoding accuracy
within the documented capacity, structured kinds against Haar, JSON encoding and queries,
determinism across processes, the command line, bad input."""

import json
import math
import subprocess
import sys

import numpy as np
import pytest
import torch

from linalg_core.vsa import MBAT, Codec, encode_json, encode_jsonl, fit_ranges, orthogonal, query, search
from linalg_core.vsa.json import SEQ

KINDS = ["haar", "hadamard", "signed_permutation"]


@pytest.mark.parametrize("kind", KINDS)
def test_orthogonal_at_rounding_and_inverse(kind):
    M = orthogonal(128, kind=kind, seed=3)
    D = M.dense()
    assert float((D.T @ D - torch.eye(128, dtype=torch.float64)).abs().max()) < 1e-6
    x = torch.randn(5, 128, dtype=torch.float64)
    torch.testing.assert_close(M.apply(x), x @ D.T, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(M.apply_t(M.apply(x)), x, rtol=1e-6, atol=1e-6)


def test_structured_matrices_match_float64_oracles():
    from tests.oracles import vsa as oracle

    H = orthogonal(64, kind="hadamard", seed=7)
    np.testing.assert_allclose(H.dense().numpy(), oracle.hadamard_rounds(H.signs.double().numpy()), atol=1e-6)
    P = orthogonal(64, kind="signed_permutation", seed=7)
    np.testing.assert_allclose(P.dense().numpy(), oracle.signed_permutation(P.perm.numpy(), P.signs.double().numpy()),
                               atol=0)
    assert sorted(P.perm.tolist()) == list(range(64))


def test_number_levels_are_a_thermometer_code():
    m, levels = MBAT(1024, seed=0), 17
    L = Codec(m, levels=levels).level_vectors.double()
    flips = [round(j * 1024 / (2 * (levels - 1))) for j in range(levels)]
    cos = L @ L.T
    expect = torch.tensor([[1 - 2 * abs(a - b) / 1024 for b in flips] for a in flips], dtype=torch.float64)
    torch.testing.assert_close(cos, expect, rtol=0, atol=1e-6)  # 1 − |i − j|/(levels − 1), to the flip rounding
    assert abs(float(cos[0, -1])) < 1e-6


@pytest.mark.parametrize("kind", KINDS)
def test_norm_preserved_where_gaussian_binding_drifts(kind):
    d = 256
    M = orthogonal(d, kind=kind, seed=1)
    g = torch.Generator().manual_seed(0)
    X = torch.randn(16, d, dtype=torch.float64, generator=g)
    G = torch.randn(d, d, dtype=torch.float64, generator=g) / math.sqrt(d)  # Gaussian MBAT, E‖Gx‖² = ‖x‖²
    Y, Z = X.clone(), X.clone()
    for _ in range(40):
        Y, Z = M.apply(Y), Z @ G.T
        # float32 role matrices (haar) are orthogonal to float32 rounding
        assert float((Y.norm(dim=1) / X.norm(dim=1) - 1).abs().max()) < 1e-4
    assert float((Z.norm(dim=1) / X.norm(dim=1) - 1).abs().max()) > 0.2  # Gaussian binding drifts


def _kv_accuracy(kind, D, K, N, trials, seed=0):
    m = MBAT(D, kind=kind, seed=seed)
    names = [f"v{i}" for i in range(N)]
    A = m.atoms(names)
    g = torch.Generator().manual_seed(seed)
    hits = total = 0
    for _ in range(trials):
        vals = torch.randint(0, N, (K,), generator=g)
        v = m.bundle([m.bind(f"k{i}", A[vals[i]]) for i in range(K)])
        for i in range(K):
            got, _ = m.cleanup(m.unbind(f"k{i}", v), A)
            hits += int(got == int(vals[i]))
            total += 1
    return hits / total


@pytest.mark.parametrize("kind", KINDS)
def test_key_value_decoding_within_capacity(kind):
    D, N = 1024, 100
    K = int(D / (math.sqrt(2 * math.log(N)) + 2.3) ** 2)  # the documented capacity, 36 here
    assert _kv_accuracy(kind, D, K, N, trials=6) >= 0.99


@pytest.mark.parametrize("kind", KINDS)
def test_sequence_decoding_within_capacity(kind):
    D, N = 1024, 100
    K = int(D / (math.sqrt(2 * math.log(N)) + 2.3) ** 2)
    m = MBAT(D, kind=kind, seed=2)
    names = [f"item{i}" for i in range(N)]
    codec = Codec(m)
    C = torch.stack([codec.leaf((), "string", n) for n in names])  # strings: exact atom + token bag
    P = m.role(SEQ)
    g = torch.Generator().manual_seed(1)
    hits = total = 0
    for _ in range(20):
        seq = torch.randint(0, N, (K,), generator=g)
        v = encode_json([names[i] for i in seq.tolist()], mbat=m)
        decoded = torch.stack([P.power(v, -i) for i in range(K)])
        got, _ = m.cleanup(decoded, C)
        hits += int((torch.tensor(got) == seq).sum())
        total += K
    assert hits / total >= 0.99


def test_structured_kinds_decode_like_haar():
    D, N, K = 512, 50, 30  # beyond capacity: errors appear, at the same rate for every kind
    acc = {kind: _kv_accuracy(kind, D, K, N, trials=8, seed=4) for kind in KINDS}
    for kind in ("hadamard", "signed_permutation"):
        assert abs(acc[kind] - acc["haar"]) < 0.05, acc


def test_json_noncommutative_and_similarity():
    m = MBAT(2048, seed=0)
    a, b = encode_json({"a": {"b": "x"}}, mbat=m), encode_json({"b": {"a": "x"}}, mbat=m)
    assert abs(float(m.similarity(a, b))) < 0.15
    base = {"name": "ada lovelace", "born": 1815, "langs": ["en", "fr"], "active": True, "spouse": None}
    ranges = {"born": (1700, 2000)}
    v0 = encode_json(base, mbat=m, ranges=ranges)
    near = encode_json(dict(base, born=1816), mbat=m, ranges=ranges)
    far = encode_json(dict(base, name="alan turing", born=1912, langs=["en"]), mbat=m, ranges=ranges)
    assert float(m.similarity(v0, near)) > 0.95 > float(m.similarity(v0, far))
    assert query(v0, "name", ["ada lovelace", "alan turing"], mbat=m, ranges=ranges)[0] == "ada lovelace"
    assert query(v0, "langs[1]", ["en", "fr", "de"], mbat=m, ranges=ranges)[0] == "fr"
    assert query(v0, "active", [True, False], mbat=m, ranges=ranges)[0] is True
    assert query(v0, "born", [1700, 1815, 1900], mbat=m, ranges=ranges)[0] == 1815
    with pytest.raises(ValueError, match="not in the record"):
        query(v0, "missing.key", ["ada lovelace", "alan turing"], mbat=m, ranges=ranges)


def test_batched_encoding_equals_single_records():
    m = MBAT(512, kind="signed_permutation", seed=5)
    recs = [{"a": 1, "b": [True, "x y"]}, {"a": 0.5, "c": {"d": None}}, [], {}, "s"]
    ranges = {"a": (0, 1)}
    V = encode_jsonl(recs, mbat=m, ranges=ranges, batch=2)
    for r, v in zip(recs, V):
        torch.testing.assert_close(v, encode_json(r, mbat=m, ranges=ranges), rtol=1e-5, atol=1e-6)
    assert fit_ranges([{"a": 3}, {"a": -1, "b": [2, 5]}]) == {"a": (-1.0, 3.0), "b": (2.0, 5.0)}


SCRIPT = ("import json, sys; from linalg_core.vsa import MBAT, encode_json; "
          "v = encode_json({'k': ['a', 1.5, {'z': None}]}, mbat=MBAT(256, seed=9)); "
          "print(json.dumps(v.tolist()))")


def test_deterministic_across_processes_and_hash_seeds():
    outs = []
    for hs in ("0", "12345"):
        env = {**__import__("os").environ, "PYTHONHASHSEED": hs}
        p = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, env=env, timeout=120,
                           check=False)
        assert p.returncode == 0, p.stderr
        outs.append(json.loads(p.stdout))
    assert outs[0] == outs[1]


def test_search_and_cli(tmp_path, capsys):
    from linalg_core.__main__ import main

    recs = [{"city": "paris", "pop": 2.1}, {"city": "lyon", "pop": 0.5}, {"city": "paris france", "pop": 2.0}]
    f = tmp_path / "r.jsonl"
    f.write_text("".join(json.dumps(r) + "\n" for r in recs))
    out = tmp_path / "v.npy"
    assert main(["vsa", "encode", str(f), "-o", str(out), "--dim", "1024"]) == 0
    assert np.load(out).shape == (3, 1024)
    capsys.readouterr()
    assert main(["vsa", "search", str(out), str(f), "--query", '{"city": "paris"}', "-k", "2"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2 and "#0" in lines[0]
    assert main(["vsa", "search", str(out), str(f), "--query", "{not json"]) == 2
    assert "not valid JSON" in capsys.readouterr().err
    idx, sims = search(torch.from_numpy(np.load(out)), torch.from_numpy(np.load(out))[1], 1)
    assert idx.tolist() == [1] and sims[0] > 0.999


def test_bad_input():
    m = MBAT(256, seed=0)
    with pytest.raises(ValueError, match="power of two"):
        MBAT(300, kind="hadamard")
    assert MBAT(300, kind="signed_permutation").dim == 300
    with pytest.raises(ValueError, match="kind="):
        MBAT(256, kind="gaussian")
    with pytest.raises(TypeError, match=r"value at \$\.a\[1\] has type set"):
        encode_json({"a": [1, {2}]}, mbat=m)
    with pytest.raises(TypeError, match="JSON keys are strings"):
        encode_json({1: "x"}, mbat=m)
    with pytest.raises(ValueError, match="not finite"):
        encode_json({"x": float("nan")}, mbat=m)
    with pytest.raises(TypeError, match="MBAT"):
        encode_json({"x": 1}, mbat="m")
    with pytest.raises(ValueError, match="x has 1 non-finite|NaN"):
        m.bind("r", torch.full((256,), float("nan")))
    with pytest.raises(ValueError, match="last dimension 255"):
        m.bind("r", torch.ones(255))
    with pytest.raises(ValueError, match="candidates is empty"):
        query(encode_json({"x": 1}, mbat=m), "x", [], mbat=m)
