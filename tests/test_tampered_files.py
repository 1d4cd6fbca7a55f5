"""Tampered files: every reader of quantized weights — ``QuantizedTensor.load`` /
``from_state_dict``, ``DGQWeight.from_state_dict`` (state dicts written through safetensors) and
``quant.load_compressed`` — answers truncated files, lying metadata and inconsistent tensors with
a ValueError or TypeError naming the problem, never with a crash or a wrong result.

No subprocess: a crash (segfault, abort) in a reader or a kernel kills the pytest process, which
fails the run. Where a tampered file is still valid (an ignored extra entry, a change the format
cannot see), the test checks that the result equals the original's.

The safetensors headers are edited by hand here (8-byte length, JSON, data) to make files the
``safetensors`` writer would refuse to write.
"""

from __future__ import annotations

import json
import random
import struct

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from linalg_core.qmatmul import DGQWeight, dgq_quantize, qmatmul
from linalg_core.quant import BnbNF4, IntGroup, NormalFloat, QuantizedTensor, load_compressed, quantize

REFUSED = (ValueError, TypeError)
FORMATS = ["nf4", "nf3", NormalFloat(bits=2, scale_bits=None, scale_dtype="fp16"), "bnb-nf4",
           BnbNF4(double_quant=False), "int4", "int4-asym", IntGroup(bits=8, scale_dtype="bf16"), "q4_0", "q8_0"]


def _w(shape=(64, 128), seed=0):
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed)) * 0.02


def _use(Q: QuantizedTensor) -> torch.Tensor:
    """Every reading path of a loaded tensor (a crash here fails the run); its float32 values."""
    D = Q.dequantize(torch.float32)
    m, n = Q.shape
    X = torch.ones(n, 2)
    torch.testing.assert_close(Q.matmul(X), D @ X, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(Q.rmatmul(torch.ones(m, 2)), D.T @ torch.ones(m, 2), rtol=1e-4, atol=1e-5)
    assert torch.equal(Q.rows(0, m), D)
    Q.dequantize(torch.bfloat16)
    return D


def _raw(path):
    """(header dict, data bytes) of a safetensors file."""
    blob = path.read_bytes()
    (n,) = struct.unpack("<Q", blob[:8])
    return json.loads(blob[8:8 + n]), blob[8 + n:]


def _write_raw(path, header, data: bytes, *, header_bytes: bytes | None = None):
    hb = json.dumps(header).encode() if header_bytes is None else header_bytes
    path.write_bytes(struct.pack("<Q", len(hb)) + hb + data)


def _meta(Q, **changes):
    meta = {"format": Q.format.to_json(), "shape": list(Q.shape), "dtype": "float32", **changes}
    return torch.frombuffer(bytearray(json.dumps(meta).encode()), dtype=torch.uint8)


def _save(tmp_path, state, name="q.safetensors"):
    path = tmp_path / name
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    return path


def _refused_or_same(load, reference: torch.Tensor | None):
    """``load()`` raises ValueError / TypeError, or gives a tensor equal to ``reference``."""
    try:
        Q = load()
    except REFUSED:
        return True
    assert reference is not None and torch.equal(_use(Q), reference), "a tampered file loaded as a different weight"
    return False


# --- QuantizedTensor files ---------------------------------------------------------------------

@pytest.mark.parametrize("fmt", FORMATS, ids=str)
def test_truncated_files(tmp_path, fmt):
    Q = quantize(_w(), fmt)
    path = tmp_path / "q.safetensors"
    Q.save(path)
    blob = path.read_bytes()
    (n,) = struct.unpack("<Q", blob[:8])
    for cut in sorted({0, 1, 7, 8, 9, 8 + n // 2, 8 + n, 9 + n, (8 + n + len(blob)) // 2, len(blob) - 1}):
        bad = tmp_path / f"cut{cut}.safetensors"
        bad.write_bytes(blob[:cut])
        with pytest.raises(ValueError, match="cannot read"):
            QuantizedTensor.load(bad)
    with pytest.raises(FileNotFoundError):
        QuantizedTensor.load(tmp_path / "missing.safetensors")
    assert torch.equal(_use(QuantizedTensor.load(path)), Q.dequantize(torch.float32))


@pytest.mark.parametrize("fmt", FORMATS, ids=str)
def test_lying_format_metadata(tmp_path, fmt):
    Q = quantize(_w(), fmt)
    f = json.loads(Q.format.to_json())
    other_kind = {"nf": "bnb_nf4", "bnb_nf4": "gguf", "int": "nf", "gguf": "int"}[f["kind"]]
    lies = {
        "wrong shape": _meta(Q, shape=[64, 64]),
        "more columns": _meta(Q, shape=[64, 160]),
        "huge shape": _meta(Q, shape=[2**62, 2**62]),
        "shape 2**62": _meta(Q, shape=[2**62]),
        "negative size": _meta(Q, shape=[-64, -128]),
        "zero size": _meta(Q, shape=[0, 128]),
        "float size": _meta(Q, shape=[64.5, 128]),
        "no shape": _meta(Q, shape=None),
        "int dtype": _meta(Q, dtype="int8"),
        "not a dtype": _meta(Q, dtype="__class__"),
        "wrong kind": _meta(Q, format=json.dumps({"kind": other_kind})),
        "unknown kind": _meta(Q, format=json.dumps({**f, "kind": "q2_k"})),
        "block_size 0": _meta(Q, format=json.dumps({"kind": "nf", "block_size": 0})),
        "block_size 2**40": _meta(Q, format=json.dumps({"kind": "int", "group_size": 2**40})),
        "bits 31": _meta(Q, format=json.dumps({"kind": "nf", "bits": 31})),
        "bits -4": _meta(Q, format=json.dumps({"kind": "int", "bits": -4})),
        "blocksize 48": _meta(Q, format=json.dumps({"kind": "bnb_nf4", "blocksize": 48})),
        "gguf q5": _meta(Q, format=json.dumps({"kind": "gguf", "type": "q5_0"})),
        "extra field": _meta(Q, format=json.dumps({**f, "rounding": "up"})),
        "format not JSON": _meta(Q, format="{nf4"),
        "format a list": _meta(Q, format="[1, 2]"),
        "meta a list": torch.frombuffer(bytearray(b"[1, 2, 3]"), dtype=torch.uint8),
        "meta empty": torch.zeros(0, dtype=torch.uint8),
        "not UTF-8": torch.tensor([0xC3, 0x28, 0xFF, 0xFE], dtype=torch.uint8),
        "meta as float": torch.ones(4),
        "meta 2-D": torch.ones(2, 2, dtype=torch.uint8),
    }
    for what, meta in lies.items():
        path = _save(tmp_path, {**Q.state_dict(), "__format__": meta})
        with pytest.raises(ValueError, match="corrupt QuantizedTensor state"):
            QuantizedTensor.load(path)
        del what


@pytest.mark.parametrize("fmt", FORMATS, ids=str)
def test_inconsistent_tensors(tmp_path, fmt):
    Q = quantize(_w(), fmt)
    state = Q.state_dict()
    names = [k for k in state if k != "__format__"]
    cases = {"missing __format__": {k: v for k, v in state.items() if k != "__format__"},
             "extra tensor": {**state, "bias": torch.zeros(4)}}
    for name in names:
        t = state[name]
        cases[f"{name} missing"] = {k: v for k, v in state.items() if k != name}
        cases[f"{name} shorter"] = {**state, name: t.reshape(-1)[:-1].contiguous()}
        cases[f"{name} longer"] = {**state, name: torch.cat([t.reshape(-1), t.reshape(-1)[:1]])}
        cases[f"{name} as int16"] = {**state, name: t.to(torch.int16)}
        cases[f"{name} as float64"] = {**state, name: t.to(torch.float64)}
        cases[f"{name} 2-D"] = {**state, name: t.reshape(1, -1)}
        if t.is_floating_point():
            for v in (float("nan"), float("inf"), float("-inf")):
                bad = t.clone()
                bad.view(-1)[0] = v
                cases[f"{name} {v}"] = {**state, name: bad}
    if "zeros" in state:
        bad = state["zeros"].clone()
        bad[0] = 16
        cases["zero point 16"] = {**state, "zeros": bad}
        bad = state["zeros"].clone()
        bad[-1] = 255
        cases["zero point 255"] = {**state, "zeros": bad}
    if "blocks" in state:
        for d in (0x7E00, 0x7C00, 0xFC00):  # NaN, +Inf, -Inf as the fp16 scale d
            bad = state["blocks"].clone()
            bad[3, 0], bad[3, 1] = d & 0xFF, d >> 8
            cases[f"d {d:#x}"] = {**state, "blocks": bad}
    if "absmax2" in state:  # finite stored values whose derived block scales overflow float32
        cases["derived scales overflow"] = {**state, "absmax": torch.full_like(state["absmax"], 255),
                                            "absmax2": torch.full((1,), 3e38), "offset": torch.full((1,), 3e38)}
    for what, tampered in cases.items():
        path = _save(tmp_path, tampered)
        with pytest.raises(REFUSED):
            QuantizedTensor.load(path)
        with pytest.raises(REFUSED):
            QuantizedTensor.from_state_dict(tampered)
        del what


def test_header_level_tampering(tmp_path):
    Q = quantize(_w(), "nf4")
    path = tmp_path / "q.safetensors"
    Q.save(path)
    header, data = _raw(path)
    ref = Q.dequantize(torch.float32)
    codes = header["codes"]
    edits = {
        "codes shape 2**62": {**header, "codes": {**codes, "shape": [2**62]}},
        "codes negative shape": {**header, "codes": {**codes, "shape": [-2048]}},
        "codes offsets past the end": {**header, "codes": {**codes, "data_offsets": [0, len(data) + 64]}},
        "codes offsets reversed": {**header, "codes": {**codes, "data_offsets": codes["data_offsets"][::-1]}},
        "codes unknown dtype": {**header, "codes": {**codes, "dtype": "U3"}},
        "codes as I8": {**header, "codes": {**codes, "dtype": "I8"}},  # same bytes, another dtype
        "codes as F16 (half the count)": {**header, "codes": {**codes, "dtype": "F16", "shape": [1024]}},
        "metadata not strings": {**header, "__metadata__": {"format": 3}},
        "tensor without offsets": {**header, "codes": {"dtype": "U8", "shape": [2048]}},
    }
    for what, h in edits.items():
        bad = tmp_path / "bad.safetensors"
        _write_raw(bad, h, data)
        _refused_or_same(lambda: QuantizedTensor.load(bad), ref)
        del what
    hb = json.dumps(header).encode()
    for raw in (hb.replace(b'"codes"', b'"c\xffdes"'), b"\xff\xfe" + hb[2:], hb[: len(hb) // 2], b" " * 16):
        bad = tmp_path / "bad.safetensors"
        _write_raw(bad, None, data, header_bytes=raw)
        with pytest.raises(ValueError, match="cannot read"):
            QuantizedTensor.load(bad)
    blob = path.read_bytes()
    for n in (2**63, 2**40, len(blob)):  # header length beyond the file
        bad = tmp_path / "bad.safetensors"
        bad.write_bytes(struct.pack("<Q", n) + blob[8:])
        with pytest.raises(ValueError, match="cannot read"):
            QuantizedTensor.load(bad)


@pytest.mark.parametrize("fmt", ["nf4", "bnb-nf4", "int4-asym", "q8_0"])
def test_random_single_byte_mutations_of_the_header(tmp_path, fmt):
    """Seeded single-byte changes anywhere in the header or the ``__format__`` JSON: refused, or
    (a change the format cannot see, e.g. in whitespace) the same weight."""
    Q = quantize(_w(seed=1), fmt)
    path = tmp_path / "q.safetensors"
    Q.save(path)
    blob = bytearray(path.read_bytes())
    (n,) = struct.unpack("<Q", blob[:8])
    header, _ = _raw(path)
    f0, f1 = (8 + n + o for o in header["__format__"]["data_offsets"])
    ref = Q.dequantize(torch.float32)
    rng = random.Random(0)
    refused = 0
    for _ in range(150):
        pos = rng.randrange(8, 8 + n) if rng.random() < 0.5 else rng.randrange(f0, f1)
        bad = bytearray(blob)
        bad[pos] = rng.choice([c for c in b'0123456789-e.,[]{}":azZ \xff\x00' if c != blob[pos]])
        p = tmp_path / "m.safetensors"
        p.write_bytes(bytes(bad))
        refused += _refused_or_same(lambda: QuantizedTensor.load(p), ref)
    assert refused > 100


# --- DGQ state dicts through safetensors -------------------------------------------------------

def _dgq_cases(w: DGQWeight):
    s = w.state_dict()
    N, G = w.zeros.shape
    meta = s["shape"]
    cases = {}
    for K, g in [(256, 2), (256, 0), (256, -128), (256, 96), (256, 256), (2**62, 128), (-256, 128), (0, 128),
                 (1000, 128), (100, 128), (2**63 - 1, 2**63 - 1)]:
        cases[f"shape [{K}, {g}]"] = {**s, "shape": torch.tensor([K, g])}
    cases["shape as float"] = {**s, "shape": meta.double()}
    cases["shape 3 entries"] = {**s, "shape": torch.cat([meta, meta[:1]])}
    for name in ("qweight", "zeros", "group_scales", "channel_scales", "weight_sums", "shape"):
        cases[f"{name} missing"] = {k: v for k, v in s.items() if k != name}
    for name in ("qweight", "zeros", "group_scales", "channel_scales", "weight_sums"):
        t = s[name]
        cases[f"{name} as int16"] = {**s, name: t.to(torch.int16)}
        cases[f"{name} shorter"] = {**s, name: t[:-1].contiguous()}
        cases[f"{name} flat"] = {**s, name: t.reshape(-1).contiguous()} if t.dim() == 2 else \
            {**s, name: t.reshape(1, -1).contiguous()}
    sums = s["weight_sums"].clone()
    sums[0] -= 7
    zeros = s["zeros"].clone()
    zeros[0, 0] = 16
    gs = s["group_scales"].clone()
    gs[1, 0] = 127
    neg = s["group_scales"].clone()
    neg[2, 1] = -3
    cs = s["channel_scales"].clone()
    cs[3] = float("nan")
    cs_inf = s["channel_scales"].clone()
    cs_inf[0] = float("inf")
    cases.update({"weight_sums lie": {**s, "weight_sums": sums}, "zero point 16": {**s, "zeros": zeros},
                  "|w8| > 127": {**s, "group_scales": gs}, "negative s_int": {**s, "group_scales": neg},
                  "NaN channel scale": {**s, "channel_scales": cs},
                  "Inf channel scale": {**s, "channel_scales": cs_inf}})
    return cases


def test_dgq_state_files(tmp_path):
    from linalg_core.quant.tensor import load_safetensors

    w = dgq_quantize(_w((16, 256), seed=2))
    x = torch.randint(-127, 128, (3, 256), dtype=torch.int8, generator=torch.Generator().manual_seed(3))
    ref = qmatmul(x, 0.5, w)
    path = _save(tmp_path, w.state_dict(prefix="l."), "dgq.safetensors")
    back = DGQWeight.from_state_dict(load_safetensors(path), prefix="l.")
    assert torch.equal(qmatmul(x, 0.5, back), ref)
    for what, state in _dgq_cases(w).items():
        p = _save(tmp_path, state, "bad.safetensors")
        with pytest.raises(REFUSED):
            DGQWeight.from_state_dict(load_safetensors(p))
        with pytest.raises(REFUSED):
            DGQWeight.from_state_dict(state)
        del what
    # extra entries (a DGQLinear's bias) are ignored: the weight is the same
    extra = _save(tmp_path, {**w.state_dict(), "bias": torch.zeros(16), "junk": torch.ones(3)}, "extra.safetensors")
    assert torch.equal(qmatmul(x, 0.5, DGQWeight.from_state_dict(load_safetensors(extra))), ref)
    blob = path.read_bytes()
    for cut in (0, 8, len(blob) // 2, len(blob) - 1):
        bad = tmp_path / "cut.safetensors"
        bad.write_bytes(blob[:cut])
        with pytest.raises(ValueError, match="cannot read"):
            load_safetensors(bad)


# --- load_compressed ---------------------------------------------------------------------------

def _compressed_state():
    a, b = _w((64, 128), seed=4), _w((96, 64), seed=5)
    state = {"embed.weight": torch.randn(10, 8), "norm.bias": torch.zeros(8)}
    for name, W, fmt in (("layer.a.weight", a, "nf3"), ("layer.b.weight", b, "int4-asym")):
        state.update(quantize(W, fmt).state_dict(prefix=f"{name}.q."))
        state[f"{name}.L1"] = torch.randn(W.shape[0], 4).to(torch.bfloat16)
        state[f"{name}.L2"] = torch.randn(4, W.shape[1]).to(torch.bfloat16)
    return state


def _write_compressed(folder, state):
    folder.mkdir(exist_ok=True)
    save_file({k: v.contiguous() for k, v in state.items()}, str(folder / "model.safetensors"),
              metadata={"format": "linalg_core.lq"})
    return folder


def test_load_compressed_round_trip_and_truncation(tmp_path):
    state = _compressed_state()
    folder = _write_compressed(tmp_path / "ok", state)
    layers, rest = load_compressed(folder)
    assert sorted(layers) == ["layer.a.weight", "layer.b.weight"] and sorted(rest) == ["embed.weight", "norm.bias"]
    for name, (Q, L1, L2) in layers.items():
        assert torch.equal(L1, state[f"{name}.L1"]) and Q.shape == (L1.shape[0], L2.shape[1])
        _use(Q)
    blob = (folder / "model.safetensors").read_bytes()
    for cut in (0, 5, 8, 100, len(blob) // 2, len(blob) - 1):
        bad = _write_compressed(tmp_path / f"cut{cut}", {})
        (bad / "model.safetensors").write_bytes(blob[:cut])
        with pytest.raises(ValueError, match="cannot read"):
            load_compressed(bad)
    with pytest.raises(FileNotFoundError):
        load_compressed(tmp_path / "nothing")


def test_load_compressed_tampered(tmp_path):
    state = _compressed_state()
    a = "layer.a.weight"
    Qa = quantize(_w((64, 128), seed=4), "nf3")
    nan = state[f"{a}.L2"].clone()
    nan[0, 0] = float("nan")
    scale_nan = state[f"{a}.q.scale_max"].clone()
    scale_nan[0] = float("nan")
    cases = {
        "lying shape": {**state, f"{a}.q.__format__": _meta(Qa, shape=[128, 64 * 2])},
        "lying kind": {**state, f"{a}.q.__format__": _meta(Qa, format=json.dumps({"kind": "gguf"}))},
        "not UTF-8": {**state, f"{a}.q.__format__": torch.tensor([0xFF, 0x00], dtype=torch.uint8)},
        "L1 missing": {k: v for k, v in state.items() if k != f"{a}.L1"},
        "L2 missing": {k: v for k, v in state.items() if k != f"{a}.L2"},
        "L1 wrong rows": {**state, f"{a}.L1": state[f"{a}.L1"][:-1].contiguous()},
        "L2 wrong rank": {**state, f"{a}.L2": state[f"{a}.L2"][:-1].contiguous()},
        "L1 as int": {**state, f"{a}.L1": state[f"{a}.L1"].to(torch.int16)},
        "L1 1-D": {**state, f"{a}.L1": state[f"{a}.L1"].reshape(-1).contiguous()},
        "L2 NaN": {**state, f"{a}.L2": nan},
        "NaN scale_max": {**state, f"{a}.q.scale_max": scale_nan},
        "codes missing": {k: v for k, v in state.items() if k != f"{a}.q.codes"},
        "codes short": {**state, f"{a}.q.codes": state[f"{a}.q.codes"][:-1].contiguous()},
        "extra q tensor": {**state, f"{a}.q.bias": torch.zeros(3)},
        "extra nested q entry": {**state, f"{a}.q.sub.codes": torch.zeros(3)},
    }
    for what, tampered in cases.items():
        folder = _write_compressed(tmp_path / what.replace(" ", "_"), tampered)
        with pytest.raises(ValueError, match="model.safetensors"):
            load_compressed(folder)
    # a header with non-UTF-8 metadata
    folder = _write_compressed(tmp_path / "meta", state)
    header, data = _raw(folder / "model.safetensors")
    hb = json.dumps(header).encode().replace(b"linalg_core.lq", b"linalg\xff\xfeore.lq")
    _write_raw(folder / "model.safetensors", None, data, header_bytes=hb)
    with pytest.raises(ValueError, match="cannot read"):
        load_compressed(folder)


def test_valid_file_with_misaligned_tensors_loads(tmp_path):
    """A hand-written (valid) file that places float32 data at an odd offset: the tensors are
    copied to aligned memory, not refused by the kernels."""
    Q = quantize(_w(), NormalFloat(scale_bits=None))
    state = Q.state_dict()
    header, data, off = {}, b"", 0
    for k in ("__format__", "codes", "scales"):  # uint8 first: the float32 scales land at an odd offset
        blob = state[k].numpy().tobytes()
        header[k] = {"dtype": "U8" if state[k].dtype == torch.uint8 else "F32", "shape": list(state[k].shape),
                     "data_offsets": [off, off + len(blob)]}
        data, off = data + blob, off + len(blob)
    assert header["scales"]["data_offsets"][0] % 4
    path = tmp_path / "odd.safetensors"
    _write_raw(path, header, data)
    assert torch.equal(_use(QuantizedTensor.load(path)), Q.dequantize(torch.float32))
