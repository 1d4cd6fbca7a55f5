"""Orthogonal MBAT: orthogonality, norm stability against Gaussian binding, decoding accuracy
within the documented capacity, structured kinds against Haar, JSON encoding and queries,
determinism across processes, the command line, bad input."""

import json
import math
import re
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


# --- issue 16: dtypes, powers, limits, numbers, command line ----------------------------------

LOW = [torch.float16, torch.bfloat16]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("dtype", LOW + [torch.float32, torch.float64])
def test_bind_unbind_power_keep_the_input_dtype(kind, dtype):
    m = MBAT(128, kind=kind, seed=3)
    x = torch.randn(4, 128, generator=torch.Generator().manual_seed(0)).to(dtype)
    y = m.bind("r", x)
    z = m.unbind("r", y)
    assert y.dtype == z.dtype == dtype
    P = m.role("r")
    for out in (P.apply(x), P.apply_t(x), P.power(x, 3), P.power(x, -2), P.power(x, 0)):
        assert out.dtype == dtype
    err = float((z.double() - x.double()).abs().max())
    tol = {torch.float64: 1e-13, torch.float32: 1e-5, torch.float16: 5e-3, torch.bfloat16: 4e-2}[dtype]
    assert err <= tol, (kind, dtype, err)


@pytest.mark.parametrize("kind", KINDS)
def test_float64_binding_is_orthogonal_to_float64_rounding(kind):
    # the Haar matrices were stored in float32: a float64 round trip was accurate to ~1e-7 only
    M = orthogonal(256, kind=kind, seed=1)
    x = torch.randn(8, 256, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    assert float((M.apply_t(M.apply(x)) - x).abs().max()) < 1e-13
    Dm = M.dense(torch.float64)
    assert float((Dm.T @ Dm - torch.eye(256, dtype=torch.float64)).abs().max()) < 1e-13


def test_bind_returns_the_callers_array_type():
    m = MBAT(64, seed=0)
    x = np.random.default_rng(0).standard_normal((3, 64))
    y = m.bind("r", x)
    assert isinstance(y, np.ndarray) and y.dtype == np.float64
    np.testing.assert_allclose(m.unbind("r", y), x, atol=1e-13)


@pytest.mark.parametrize("kind", KINDS)
def test_power_equals_repeated_application(kind):
    M = orthogonal(64, kind=kind, seed=5)
    X = torch.randn(3, 64, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    for k in (0, 1, 2, 7, 40, -1, -9):
        Y = X
        for _ in range(abs(k)):
            Y = M.apply(Y) if k > 0 else M.apply_t(Y)
        torch.testing.assert_close(M.power(X, k), Y, rtol=0, atol=1e-12)
    # large exponents (repeated squaring): the group law M^a M^b = M^(a+b), M^k M^-k = I
    a, b = 100_003, 7_777  # errors grow like k·eps either way
    torch.testing.assert_close(M.power(M.power(X, a), b), M.power(X, a + b), rtol=0, atol=1e-9)
    torch.testing.assert_close(M.power(M.power(X, a), -a), X, rtol=0, atol=1e-9)


def test_signed_permutation_powers_compose_exactly():
    M = orthogonal(1000, kind="signed_permutation", seed=2)
    X = torch.randn(2, 1000, generator=torch.Generator().manual_seed(0))
    assert torch.equal(M.power(X, 2**40), M.power(M.power(X, 2**39), 2**39))
    Y = X
    for _ in range(13):
        Y = M.apply(Y)
    assert torch.equal(M.power(X, 13), Y)
    assert torch.equal(M.power(M.power(X, 10**15), -10**15), X)


def test_absurd_powers_are_refused_not_run():
    M = orthogonal(4096, kind="hadamard", seed=0)
    with pytest.raises(ValueError, match=r"k=100000000 .*max_flops"):
        M.power(torch.ones(4096), 10**8)
    with pytest.raises(TypeError, match="k must be an integer"):
        M.power(torch.ones(4096), 1.5)


def _count_sequence_rows(m, limit):
    """Make the sequence matrix count the rows it transforms; fail fast past ``limit``."""
    P = m.role(SEQ)
    rows = [0]
    apply, apply_t = P.apply, P.apply_t

    def counted(f):
        def g(X):
            rows[0] += X.numel() // X.shape[-1]
            if rows[0] > limit:
                raise AssertionError(f"more than {limit} rows transformed by the sequence matrix")
            return f(X)
        return g

    P.apply, P.apply_t = counted(apply), counted(apply_t)
    return rows


@pytest.mark.parametrize("kind", KINDS)
def test_arrays_cost_one_transform_per_element(kind):
    m = MBAT(256, kind=kind, seed=0)
    n = 2000
    rows = _count_sequence_rows(m, limit=n)  # the old encoder applied P i times for element i
    v = encode_json(list(range(n)), mbat=m)
    assert rows[0] <= n and v.shape == (256,)
    recs = [{"a": [str(i) for i in range(L)], "b": [[1, 2], [3]]} for L in (0, 5, 300, 17)]
    rows[0] = 0
    encode_jsonl(recs, mbat=m)
    assert rows[0] <= 5 + 300 + 17 + 4 * 3  # one row per element after the first, batched


@pytest.mark.parametrize("kind", KINDS)
def test_encoding_equals_its_definition(kind):
    from tests.oracles import vsa as oracle

    m = MBAT(256, kind=kind, seed=11)
    ranges = {"n": (0, 100), "deep.n": (-5, 5)}
    codec = Codec(m, ranges)
    obj = {"a": ["x y", {"b": [1.5, None, "z"], "c": []}, [True, False, {}]], "n": list(range(0, 100, 3)),
           "deep": {"n": [-4, 0, 4.5], "s": [["p"] * 3, ["q", ["r", ["s"]]]]}, "t": 12345.678, "u": -0.001}
    got = encode_json(obj, mbat=m, ranges=ranges).double().numpy()
    ref = oracle.encode_by_definition(
        obj, lambda p, k, x: codec.leaf(p, k, x).double().numpy(),
        lambda key, V: m.role("key:" + key).apply(torch.from_numpy(V)).numpy(),
        lambda V: m.role(SEQ).apply(torch.from_numpy(V)).numpy())
    np.testing.assert_allclose(got, ref, atol=2e-6)
    recs = [obj, {"n": [5]}, [[1, [2]], "w"], {"a": ["x y"]}]
    V = encode_jsonl(recs, mbat=m, ranges=ranges, batch=3)
    for r, v in zip(recs, V):
        torch.testing.assert_close(v, encode_json(r, mbat=m, ranges=ranges), rtol=0, atol=2e-6)


@pytest.mark.parametrize("kind", KINDS)
def test_query_of_a_huge_index_is_refused_at_once(kind):
    m = MBAT(1024, kind=kind, seed=0)
    v = encode_json(["a", "b"], mbat=m)
    with pytest.raises(ValueError, match=r"index 100000000 .*max_leaves=100000"):
        query(v, "[100000000]", ["a", "b"], mbat=m)
    assert query(v, "[1]", ["a", "b"], mbat=m)[0] == "b"
    far = m.role(SEQ).power(Codec(m).leaf((), "string", "z"), 499)  # the term of element 499
    assert query(far, [499], ["y", "z"], mbat=m)[0] == "z"


def _nested(depth):
    obj = "leaf"
    for i in range(depth):
        obj = {"k": obj} if i % 2 else [obj]
    return obj


def test_nesting_depth_and_size_limits():
    m = MBAT(256, seed=0)
    encode_json(_nested(100), mbat=m)  # the default max_depth
    with pytest.raises(ValueError, match=r"\$\[0\]\.k\[0\].* max_depth=100"):
        encode_json(_nested(101), mbat=m)
    with pytest.raises(ValueError, match="max_depth=100"):
        encode_json(_nested(50_000), mbat=m)  # a RecursionError before
    with pytest.raises(ValueError, match="max_depth=3"):
        encode_json({"a": {"b": {"c": {"d": 1}}}}, mbat=m, max_depth=3)
    with pytest.raises(ValueError, match="max_depth=3"):
        fit_ranges([{"a": {"b": {"c": {"d": 1}}}}], max_depth=3)
    with pytest.raises(ValueError, match=r"more than max_leaves=10 .*\$\.a\[10\]"):
        encode_json({"a": list(range(11))}, mbat=m, max_leaves=10)
    encode_json({"a": list(range(10))}, mbat=m, max_leaves=10)
    with pytest.raises(ValueError, match=r"number at \$\.big\[1\] .*float64"):
        encode_json({"big": [1, 10**400]}, mbat=m)  # an OverflowError before
    with pytest.raises(ValueError, match=r"number at \$\.big .*float64"):
        fit_ranges([{"big": -(10**400)}])
    cyc = {"a": [1]}
    cyc["a"].append(cyc)
    with pytest.raises(ValueError, match=r"cycl.* \$\.a\[1\]"):
        encode_json(cyc, mbat=m)
    shared = [1, 2]
    encode_json({"x": shared, "y": shared}, mbat=m)  # shared, not cyclic: fine
    for bad in (0, -1, 1.5, True):
        with pytest.raises((ValueError, TypeError), match="max_depth"):
            encode_json({}, mbat=m, max_depth=bad)
        with pytest.raises((ValueError, TypeError), match="max_leaves"):
            encode_json({}, mbat=m, max_leaves=bad)


def test_numbers_without_ranges_keep_every_magnitude():
    m = MBAT(2048, seed=0)
    values = [0, 1, 2, 3, 4, 5, 6, 7, 8, 0.5, 100, 1e6, 1e-9, -3, -1e12, 2**53, 2**53 + 1]
    V = torch.stack([encode_json({"x": v}, mbat=m) for v in values])
    S = V @ V.T
    off = S - torch.diag(torch.diag(S))
    assert float(off.max()) < 0.7, "distinct numbers must give distinct vectors"  # they were all clamped to 1
    for rec in ({"x": 3, "y": 7.5}, {"x": 8, "y": 0}):
        v = encode_json(rec, mbat=m)
        for key, val in rec.items():
            assert query(v, key, list(range(9)) + [7.5, 1e6], mbat=m)[0] == val
    enc = lambda x: encode_json(x, mbat=m)  # noqa: E731
    assert float(m.similarity(enc(100), enc(104))) > float(m.similarity(enc(100), enc(150))) + 0.2
    assert float(m.similarity(enc(1e6), enc(1.04e6))) > 0.3  # scale-free: relative differences count
    assert abs(float(m.similarity(enc(5), enc(-5)))) < 0.15
    torch.testing.assert_close(enc(3), enc(3.0))


def test_numbers_outside_an_explicit_range_are_reported():
    m = MBAT(256, seed=0)
    recs = [{"x": 0.5}, {"x": 7, "y": {"z": -2}}]
    with pytest.warns(UserWarning) as caught:
        encode_jsonl(recs, mbat=m, ranges=(0, 1))
    messages = sorted(str(w.message) for w in caught)
    assert len(messages) == 2, messages  # one per key path
    assert re.search(r"^1 number at 'x' .*\[0, 1\].*record 1, \$\.x = 7\)", messages[0]), messages
    assert re.search(r"^1 number at 'y\.z' .*record 1, \$\.y\.z = -2\)", messages[1]), messages
    with pytest.warns(UserWarning, match=r"^2 numbers at 'x' .*first: record 0, \$\.x = 1\.5\)"):
        encode_jsonl([{"x": 1.5}, {"x": 0.5}, {"x": -1}], mbat=m, ranges={"x": (0, 1)}, batch=1)
    with pytest.raises(ValueError, match=r"\$\.y\.z = -2 .*outside .*\[0(\.0)?, 1(\.0)?\]"):
        encode_json(recs[1], mbat=m, ranges={"y.z": (0, 1)}, out_of_range="error")
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        encode_jsonl(recs, mbat=m, ranges=(0, 1), out_of_range="clamp")  # asked for: silent
        encode_jsonl(recs, mbat=m)  # fitted ranges hold every value
        encode_json(recs[1], mbat=m, ranges={"x": (0, 10)})  # y.z has no range: scale-free code
    with pytest.raises(ValueError, match="out_of_range="):
        encode_json(1, mbat=m, out_of_range="ignore")
    with pytest.raises(ValueError, match=r"ranges\['x'\]"):
        encode_json(1, mbat=m, ranges={"x": (2, 1)})
    with pytest.raises(ValueError, match=r"ranges\['\*'\]"):
        encode_json(1, mbat=m, ranges=(0, float("nan")))


def _cli(argv, capsys):
    from linalg_core.__main__ import main

    rc = main(argv)
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_cli_encode_output_is_searchable_by_either_name(tmp_path, capsys):
    f = tmp_path / "r.jsonl"
    f.write_text("".join(json.dumps({"city": c, "n": i}) + "\n" for i, c in enumerate(["paris", "lyon", "nice"])))
    stem = tmp_path / "vecs"
    rc, _, err = _cli(["vsa", "encode", str(f), "-o", str(stem), "--dim", "256"], capsys)
    assert rc == 0, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.jsonl", "vecs.npy", "vecs.npy.json"]
    for name in (str(stem), str(stem) + ".npy"):
        rc, out, err = _cli(["vsa", "search", name, str(f), "--query", '{"city": "lyon"}', "-k", "1"], capsys)
        assert rc == 0, err
        assert "#1" in out
    rc, _, err = _cli(["vsa", "encode", str(f), "-o", str(tmp_path / "w.npy"), "--dim", "256"], capsys)
    assert rc == 0 and (tmp_path / "w.npy.json").exists() and not (tmp_path / "w.npy.npy").exists()


def test_cli_writes_atomically(tmp_path, capsys, monkeypatch):
    import os

    f = tmp_path / "r.jsonl"
    f.write_text('{"a": 1}\n{"a": 2}\n')
    real = os.replace

    def failing(src, dst):
        if str(dst).endswith(".json"):
            raise OSError("disk full")
        return real(src, dst)

    monkeypatch.setattr(os, "replace", failing)
    rc, _, err = _cli(["vsa", "encode", str(f), "-o", str(tmp_path / "v"), "--dim", "64", "--kind",
                       "signed_permutation"], capsys)
    assert rc == 2 and "disk full" in err and len(err.strip().splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.jsonl"]  # no .npy, no temporary files


@pytest.mark.parametrize("content, message", [
    ('{"a": 1}\n{"a": \n', "r.jsonl:2: not valid JSON"),
    ("[" * 100_000 + "]" * 100_000 + "\n", "nest"),
    (json.dumps(_nested(150)) + "\n", "max_depth=100"),
    ('{"a": 1' + "0" * 400 + "}\n", "float64"),
    ('{"a": NaN}\n', "not finite"),
])
def test_cli_errors_are_one_line_with_status_2(tmp_path, capsys, content, message):
    f = tmp_path / "r.jsonl"
    f.write_text(content)
    rc, _, err = _cli(["vsa", "encode", str(f), "-o", str(tmp_path / "v"), "--dim", "64"], capsys)
    assert rc == 2
    assert len(err.strip().splitlines()) == 1 and err.startswith("linalg_core vsa: error:") and message in err, err
    assert not (tmp_path / "v.npy").exists()


def test_cli_search_errors(tmp_path, capsys):
    f = tmp_path / "r.jsonl"
    f.write_text('{"a": 1}\n')
    rc, _, err = _cli(["vsa", "search", str(tmp_path / "none"), str(f), "--query", "1"], capsys)
    assert rc == 2 and "none.npy" in err and len(err.strip().splitlines()) == 1
    assert _cli(["vsa", "encode", str(f), "-o", str(tmp_path / "v"), "--dim", "64"], capsys)[0] == 0
    for q, msg in (("[" * 500 + "]" * 500, "max_depth"), ("1" + "0" * 400, "float64")):
        rc, _, err = _cli(["vsa", "search", str(tmp_path / "v"), str(f), "--query", q], capsys)
        assert rc == 2 and msg in err and len(err.strip().splitlines()) == 1, err
    (tmp_path / "v.npy.json").write_text('{"dim": 64}')
    rc, _, err = _cli(["vsa", "search", str(tmp_path / "v"), str(f), "--query", "1"], capsys)
    assert rc == 2 and "kind" in err and len(err.strip().splitlines()) == 1, err
