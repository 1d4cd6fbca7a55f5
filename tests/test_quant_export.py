"""quant.to_gguf / quant.to_bitsandbytes: GGUF files that gguf.GGUFReader reads back byte for byte
(Q4_0, Q8_0, F16, F32, BF16; MiniLM-L6 quantized with llama.cpp's BERT names and metadata),
bitsandbytes Linear4bit modules built from the stored NF4 codes, and the formats no other tool
reads refused with an error that says what to use instead."""

from __future__ import annotations

import os
import warnings

import numpy as np
import pytest
import torch

from linalg_core.quant import LQLinear, QuantLinear, quantize, to_bitsandbytes, to_gguf

gguf = pytest.importorskip("gguf")

def _randn(*shape, seed=0, dtype=torch.float32):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)).to(dtype)


def _qtype(kind):
    return getattr(gguf.GGMLQuantizationType, kind.upper())


def _read(path):
    r = gguf.GGUFReader(path)
    tensors = {t.name: t for t in r.tensors}
    fields = {k: f.contents() for k, f in r.fields.items() if not k.startswith("GGUF.")}
    return tensors, fields


def _shape(t):  # ggml lists dimensions innermost first
    return tuple(int(x) for x in reversed(t.shape.tolist()))


# --- to_gguf: round trips -----------------------------------------------------------------------

def test_gguf_round_trip_every_type(tmp_path):
    """q4_0, q8_0 (2-D and 3-D), f16, f32, bf16 and a 1-D tensor: read back with the type, shape
    and bytes written, the quantized blocks equal to gguf.quants.quantize's."""
    W4, W8, W3 = _randn(64, 96, seed=1), _randn(32, 128, seed=2), _randn(2, 8, 64, seed=3)
    W8[3] = 0  # an all-zero row (zero blocks)
    items = {"q4": quantize(W4, "q4_0"), "q8": quantize(W8, "q8_0"), "q4_3d": quantize(W3, "q4_0"),
             "h": _randn(16, 8, seed=4, dtype=torch.float16), "f": _randn(5, 7, seed=5),
             "bf": _randn(4, 6, seed=6, dtype=torch.bfloat16), "b": _randn(96, seed=7, dtype=torch.float16)}
    path = to_gguf(items, tmp_path / "t.gguf")
    assert path == str(tmp_path / "t.gguf") and sorted(os.listdir(tmp_path)) == ["t.gguf"]
    T, fields = _read(path)
    assert list(T) == list(items)  # names kept (no arch)
    assert fields["general.architecture"] == "linalg_core" and fields["general.quantization_version"] == 2
    assert fields["general.file_type"] == int(gguf.LlamaFileType.MOSTLY_Q4_0)
    for name, W, kind in (("q4", W4, "q4_0"), ("q8", W8, "q8_0"), ("q4_3d", W3, "q4_0")):
        t = T[name]
        assert t.tensor_type == _qtype(kind) and _shape(t) == tuple(W.shape)
        assert t.data.tobytes() == items[name].data["blocks"].numpy().tobytes()
        assert t.data.tobytes() == gguf.quants.quantize(W.numpy(), _qtype(kind)).tobytes()
        np.testing.assert_array_equal(gguf.quants.dequantize(t.data, _qtype(kind)), items[name].dequantize().numpy())
    for name, ggml in (("h", "F16"), ("f", "F32")):
        t = T[name]
        assert t.tensor_type.name == ggml and _shape(t) == tuple(items[name].shape)
        assert t.data.tobytes() == items[name].numpy().tobytes()
    assert T["bf"].tensor_type.name == "BF16" and _shape(T["bf"]) == (4, 6)
    assert T["bf"].data.tobytes() == items["bf"].view(torch.int16).numpy().tobytes()
    # 1-D tensors go in F32 (llama.cpp's convention for norms and biases; exact)
    assert T["b"].tensor_type.name == "F32" and T["b"].data.tobytes() == items["b"].float().numpy().tobytes()


def test_gguf_numpy_inputs(tmp_path):
    """NumPy arrays (big-endian, transposed) are written as their values, little-endian C order."""
    A = np.arange(64 * 32, dtype=">f4").reshape(32, 64).T  # (64, 32), non-contiguous, byte-swapped
    T, _ = _read(to_gguf({"a": A}, tmp_path / "n.gguf"))
    assert T["a"].tensor_type.name == "F32" and _shape(T["a"]) == (64, 32)
    assert T["a"].data.tobytes() == np.ascontiguousarray(A, dtype="<f4").tobytes()


def test_gguf_float_type_and_integers(tmp_path):
    W = _randn(8, 32, seed=0)
    path = to_gguf({"w": W, "i": torch.arange(6, dtype=torch.int32).reshape(2, 3)}, tmp_path / "f.gguf",
                   float_type="f16")
    T, fields = _read(path)
    assert T["w"].tensor_type.name == "F16" and T["w"].data.tobytes() == W.half().numpy().tobytes()
    assert T["i"].tensor_type.name == "I32" and T["i"].data.tobytes() == np.arange(6, dtype=np.int32).tobytes()
    assert fields["general.file_type"] == int(gguf.LlamaFileType.MOSTLY_F16)
    assert "general.quantization_version" not in fields


def test_gguf_minilm_weights_q4_0(tmp_path):
    """MiniLM-L6's 36 linear weights quantized with quantize(W, "q4_0"): every block as gguf.quants writes it."""
    from linalg_core.testing.models import minilm_weights

    try:
        weights = minilm_weights()
    except FileNotFoundError as e:
        pytest.skip(str(e))
    items = {k: quantize(W, "q4_0") for k, W in weights.items()}
    T, _ = _read(to_gguf(items, tmp_path / "minilm.gguf"))
    assert list(T) == list(weights)
    for k, W in weights.items():
        assert T[k].tensor_type == gguf.GGMLQuantizationType.Q4_0 and _shape(T[k]) == tuple(W.shape)
        assert T[k].data.tobytes() == gguf.quants.quantize(W.numpy(), gguf.GGMLQuantizationType.Q4_0).tobytes()


def _quantized_minilm(fmt):
    from linalg_core.testing.models import minilm_model

    try:
        model = minilm_model()
    except (FileNotFoundError, ImportError) as e:
        pytest.skip(str(e))
    originals = {}
    for name, mod in list(model.named_modules()):
        if name.startswith("encoder.") and isinstance(mod, torch.nn.Linear):
            parent, _, child = name.rpartition(".")
            originals[name] = mod.weight.detach().clone()
            setattr(model.get_submodule(parent), child, QuantLinear(quantize(mod.weight.detach(), fmt), mod.bias))
    return model, originals


def test_gguf_minilm_model_bert_names_and_metadata(tmp_path):
    """A transformers BertModel with its encoder linears quantized in place: llama.cpp's BERT tensor
    names (gguf's TensorNameMap), the config's hyperparameters, the pooler left out with a warning."""
    model, originals = _quantized_minilm("q4_0")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.warns(UserWarning, match="pooler.dense.weight"):
        path = to_gguf(model, tmp_path / "minilm.gguf")
    T, fields = _read(path)
    cfg = model.config
    assert fields["general.architecture"] == "bert" and fields["general.type"] == "model"
    assert fields["general.name"]
    assert fields["bert.block_count"] == cfg.num_hidden_layers == 6
    assert fields["bert.embedding_length"] == cfg.hidden_size
    assert fields["bert.feed_forward_length"] == cfg.intermediate_size
    assert fields["bert.attention.head_count"] == cfg.num_attention_heads
    assert fields["bert.context_length"] == cfg.max_position_embeddings
    assert fields["bert.attention.layer_norm_epsilon"] == pytest.approx(cfg.layer_norm_eps)
    assert fields["bert.attention.causal"] is False
    assert fields["bert.pooling_type"] == int(gguf.PoolingType.MEAN)  # all-MiniLM-L6-v2's 1_Pooling: mean tokens
    # the WordPiece vocabulary as llama.cpp's converter writes it (phantom-space tokens, types, special ids)
    assert fields["tokenizer.ggml.model"] == "bert" and fields["tokenizer.ggml.token_type_count"] == 2
    tokens, types = fields["tokenizer.ggml.tokens"], fields["tokenizer.ggml.token_type"]
    assert len(tokens) == len(types) == cfg.vocab_size
    assert tokens[101] == "[CLS]" and types[101] == int(gguf.TokenType.CONTROL)
    assert tokens[1996] == "\u2581the" and types[1996] == int(gguf.TokenType.NORMAL)  # "the"
    assert "s" in tokens and "\u2581s" in tokens  # "##s" and "s"
    assert fields["tokenizer.ggml.unknown_token_id"] == 100 and fields["tokenizer.ggml.seperator_token_id"] == 102
    assert fields["tokenizer.ggml.padding_token_id"] == 0 and fields["tokenizer.ggml.mask_token_id"] == 103
    assert fields["general.file_type"] == int(gguf.LlamaFileType.MOSTLY_Q4_0)
    W = originals["encoder.layer.0.attention.self.query"]
    q = T["blk.0.attn_q.weight"]
    assert q.tensor_type == gguf.GGMLQuantizationType.Q4_0 and _shape(q) == tuple(W.shape)
    assert q.data.tobytes() == gguf.quants.quantize(W.numpy(), gguf.GGMLQuantizationType.Q4_0).tobytes()
    assert T["blk.5.ffn_down.weight"].tensor_type == gguf.GGMLQuantizationType.Q4_0
    assert T["blk.0.attn_q.bias"].data.tobytes() == model.encoder.layer[0].attention.self.query.bias.detach() \
        .numpy().tobytes()
    assert T["token_embd.weight"].tensor_type.name == "F32"
    assert T["token_embd.weight"].data.tobytes() == model.embeddings.word_embeddings.weight.detach().numpy().tobytes()
    assert {"token_embd_norm.weight", "token_types.weight", "position_embd.weight", "blk.5.layer_output_norm.bias",
            "blk.3.attn_output_norm.weight"} <= set(T)
    assert not any("pooler" in k for k in T) and len(T) == 6 * 16 + 5
    after = model.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)


def test_gguf_atomic_replace_and_cleanup(tmp_path, monkeypatch):
    path = tmp_path / "m.gguf"
    to_gguf({"a": _randn(4, 32)}, path)
    first = path.read_bytes()
    to_gguf({"b": quantize(_randn(4, 32), "q8_0")}, path)  # replaced
    assert list(_read(path)[0]) == ["b"] and sorted(os.listdir(tmp_path)) == ["m.gguf"]
    second = path.read_bytes()
    assert second != first

    def boom(self, *a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(gguf.GGUFWriter, "write_tensors_to_file", boom)
    with pytest.raises(OSError, match="disk full"):
        to_gguf({"c": _randn(4, 32)}, path)
    assert path.read_bytes() == second and sorted(os.listdir(tmp_path)) == ["m.gguf"]  # no temporary left


# --- to_gguf: refusals and bad input ----------------------------------------------------------

@pytest.mark.parametrize("fmt, word", [("nf3", "nf3"), ("nf2", "nf2"), ("int4", "int4"), ("bnb-nf4", "bnb-nf4")])
def test_gguf_refuses_formats_it_cannot_hold(tmp_path, fmt, word):
    Q = quantize(_randn(64, 64), fmt)
    with pytest.raises(ValueError, match=word) as e:
        to_gguf({"w": Q}, tmp_path / "x.gguf")
    assert "'q4_0' or 'q8_0'" in str(e.value) and "'w'" in str(e.value)
    if fmt != "bnb-nf4":
        assert "no other tool reads" in str(e.value)
    else:
        assert "to_bitsandbytes" in str(e.value)
    model = torch.nn.Sequential(QuantLinear(Q, None))
    with pytest.raises(ValueError, match=word):
        to_gguf(model, tmp_path / "x.gguf")
    assert os.listdir(tmp_path) == []


def test_gguf_refuses_lq_layers(tmp_path):
    model = torch.nn.Sequential(LQLinear(quantize(_randn(32, 64), "q4_0"), torch.zeros(32, 4), torch.zeros(4, 64)))
    with pytest.raises(ValueError, match="L1·L2"):
        to_gguf(model, tmp_path / "x.gguf")


def test_gguf_bad_input(tmp_path):
    W = _randn(4, 32)
    with pytest.raises(TypeError, match="path"):
        to_gguf({"w": W}, 3)
    with pytest.raises(ValueError, match="path"):
        to_gguf({"w": W}, tmp_path)
    with pytest.raises(ValueError, match="does not exist"):
        to_gguf({"w": W}, tmp_path / "no" / "x.gguf")
    with pytest.raises(TypeError, match="model_or_tensors"):
        to_gguf([W], tmp_path / "x.gguf")
    with pytest.raises(ValueError, match="no tensors"):
        to_gguf({}, tmp_path / "x.gguf")
    with pytest.raises(TypeError, match="'w'"):
        to_gguf({"w": "text"}, tmp_path / "x.gguf")
    with pytest.raises(ValueError, match="float_type"):
        to_gguf({"w": W}, tmp_path / "x.gguf", float_type="q4")
    with pytest.raises(TypeError, match="float64"):
        to_gguf({"w": W.double()}, tmp_path / "x.gguf")
    with pytest.raises(TypeError, match="float64"):  # 1-D too: never rounded to F32 silently
        to_gguf({"b": W[0].double()}, tmp_path / "x.gguf")
    with pytest.raises(TypeError, match="complex"):
        to_gguf({"w": W.numpy().astype(np.complex64)}, tmp_path / "x.gguf")
    bad = W.clone()
    bad[0, :3] = float("nan")
    with pytest.raises(ValueError, match="3 NaN/Inf"):
        to_gguf({"w": bad}, tmp_path / "x.gguf")
    with pytest.raises(ValueError, match="121 values overflow float16"):
        to_gguf({"w": W * 1e6}, tmp_path / "x.gguf", float_type="f16")
    with pytest.raises(ValueError, match="1 values overflow float32"):
        to_gguf({"w": torch.tensor([[1e39, 1.0]], dtype=torch.float64)}, tmp_path / "x.gguf", float_type="f32")
    edge = torch.tensor([[65519.0, -65519.0]])  # rounds to ±65504: written, not refused
    T, _ = _read(to_gguf({"w": edge}, tmp_path / "x.gguf", float_type="f16"))
    assert T["w"].data.tolist() == [[65504.0, -65504.0]]
    os.remove(tmp_path / "x.gguf")
    with pytest.raises(ValueError, match="63"):
        to_gguf({"w" * 64: W}, tmp_path / "x.gguf")
    with pytest.raises(ValueError, match="dimensions"):
        to_gguf({"w": torch.tensor(1.0)}, tmp_path / "x.gguf")
    with pytest.raises(ValueError, match="has no name for 1 tensors"):
        to_gguf({"encoder.layer.0.attention.self.query.weight": W, "mystery.weight": W}, tmp_path / "x.gguf",
                arch="bert")
    with pytest.warns(UserWarning, match="no tensor-name map for arch 'myarch'"):
        T, fields = _read(to_gguf({"w": W}, tmp_path / "x.gguf", arch="myarch"))
    assert list(T) == ["w"] and fields["general.architecture"] == "myarch"
    # an arch whose llama.cpp conversion transforms tensors (gemma: norm offsets): names kept, said so
    with pytest.warns(UserWarning, match="does more than rename"):
        T, fields = _read(to_gguf({"model.norm.weight": W[0]}, tmp_path / "x.gguf", arch="gemma"))
    assert list(T) == ["model.norm.weight"] and fields["general.architecture"] == "gemma"
    # llama's q/k permutation needs the head counts of a config
    with pytest.raises(ValueError, match="pass the model"):
        to_gguf({"model.layers.0.self_attn.q_proj.weight": W}, tmp_path / "x.gguf", arch="llama")
    assert sorted(os.listdir(tmp_path)) == ["x.gguf"]


def test_gguf_mapping_with_arch_translates_names(tmp_path):
    """llama.cpp's BERT conversion: 'bert.' stripped, LayerNorm .gamma/.beta renamed, the MLM and
    next-sentence heads dropped (with a warning), GGUF names kept."""
    W = _randn(64, 64)
    items = {"encoder.layer.1.attention.self.key.weight": quantize(W, "q8_0"),
             "encoder.layer.1.attention.self.key.bias": torch.zeros(64), "blk.0.attn_v.weight": W,
             "bert.embeddings.LayerNorm.gamma": torch.ones(64), "bert.embeddings.LayerNorm.beta": torch.zeros(64),
             "cls.predictions.bias": torch.zeros(64), "cls.seq_relationship.weight": W}
    with pytest.warns(UserWarning, match="cls.predictions.bias"):
        T, fields = _read(to_gguf(items, tmp_path / "x.gguf", arch="bert", name="tiny"))
    assert list(T) == ["blk.1.attn_k.weight", "blk.1.attn_k.bias", "blk.0.attn_v.weight", "token_embd_norm.weight",
                       "token_embd_norm.bias"]
    assert fields["general.name"] == "tiny" and "bert.block_count" not in fields  # no config: no hyperparameters
    # two names for one GGUF tensor: refused, naming both (never one silently overwritten)
    with pytest.raises(ValueError, match="'embeddings.LayerNorm.weight' and 'bert.embeddings.LayerNorm.gamma'"):
        to_gguf({"embeddings.LayerNorm.weight": torch.ones(64), "bert.embeddings.LayerNorm.gamma": torch.ones(64)},
                tmp_path / "y.gguf", arch="bert")


# --- to_bitsandbytes -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def bnb():
    bnb = pytest.importorskip("bitsandbytes")
    try:  # can its 4-bit kernels run on this CPU?
        qB, qs = bnb.functional.quantize_4bit(torch.ones(64, 64), blocksize=64, quant_type="nf4")
        bnb.matmul_4bit(torch.ones(2, 64), qB, qs)
    except Exception as e:  # noqa: BLE001 - any failure means it cannot run here
        pytest.skip(f"bitsandbytes' 4-bit kernels do not run on this machine: {e}")
    return bnb


class Tiny(torch.nn.Module):
    def __init__(self, fmts=("bnb-nf4", "bnb-nf4")):
        super().__init__()
        self.W1, self.b1, self.W2 = _randn(64, 128, seed=1) / 10, _randn(64, seed=2), _randn(32, 64, seed=3) / 8
        self.fc1 = QuantLinear(quantize(self.W1, fmts[0]), self.b1)
        self.norm = torch.nn.LayerNorm(64)
        self.fc2 = QuantLinear(quantize(self.W2, fmts[1]), None)

    def forward(self, x):
        return self.fc2(self.norm(self.fc1(x)))


def test_to_bitsandbytes_runs_and_matches(bnb):
    from linalg_core.quant import BnbNF4

    # block sizes that divide the rows (as in real models): bitsandbytes' own CPU kernels mishandle others
    model = Tiny(fmts=(BnbNF4(blocksize=128, double_quant=True), BnbNF4(blocksize=64, double_quant=False))).eval()
    Q1, Q2 = model.fc1.quantized, model.fc2.quantized
    codes_before = Q1.data["codes"].clone()
    x = _randn(5, 128, seed=9)
    with torch.no_grad():
        ref = torch.nn.functional.linear(x, Q1.dequantize(), model.b1)
        ref = torch.nn.functional.linear(model.norm(ref), Q2.dequantize())
    out_model = to_bitsandbytes(model)
    assert out_model is model
    assert isinstance(model.fc1, bnb.nn.Linear4bit) and isinstance(model.fc2, bnb.nn.Linear4bit)
    assert isinstance(model.norm, torch.nn.LayerNorm) and model.fc2.bias is None
    assert model.fc1.weight.quant_type == "nf4" and model.fc1.weight.blocksize == 128
    assert model.fc1.weight.compress_statistics and not model.fc2.weight.compress_statistics
    assert model.fc1.weight.data_ptr() == Q1.data["codes"].data_ptr()  # the stored codes, not re-quantized
    with torch.no_grad():
        out = model(x)
    packed = getattr(model.fc1.weight.quant_state, "packing_format_for_cpu", False)  # bnb's bf16 CPU path
    tol = 3e-2 if packed else 1e-5
    torch.testing.assert_close(out, ref, rtol=tol, atol=tol)
    assert torch.equal(Q1.data["codes"], codes_before)

    # the same as Linear4bit modules holding bitsandbytes' own quantization of the weights
    def own(W, bias, blocksize, dq):
        qB, qs = bnb.functional.quantize_4bit(W, blocksize=blocksize, quant_type="nf4", compress_statistics=dq)
        lin = bnb.nn.Linear4bit(W.shape[1], W.shape[0], bias=bias is not None, compute_dtype=torch.float32,
                                compress_statistics=dq, quant_type="nf4", device="meta")
        lin.weight = bnb.nn.Params4bit(qB, requires_grad=False, quant_state=qs, blocksize=blocksize,
                                       compress_statistics=dq, quant_type="nf4", module=lin, bnb_quantized=True)
        if bias is not None:
            lin.bias = torch.nn.Parameter(bias.clone(), requires_grad=False)
        return lin.eval()

    with torch.no_grad():
        theirs = own(model.W2, None, 64, False)(model.norm(own(model.W1, model.b1, 128, True)(x)))
    assert torch.equal(out, theirs)


def test_to_bitsandbytes_warns_on_rows_not_a_multiple_of_the_block(bnb):
    layer = QuantLinear(quantize(_randn(32, 64), "bnb-nf4"), None)  # blocksize 64 divides 64: no warning
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        to_bitsandbytes(layer)
    from linalg_core.quant import BnbNF4

    with pytest.warns(UserWarning, match="not a multiple of the block"):
        to_bitsandbytes(QuantLinear(quantize(_randn(32, 64), BnbNF4(blocksize=128)), None))


def test_to_bitsandbytes_root_and_shared(bnb):
    layer = QuantLinear(quantize(_randn(32, 64), "bnb-nf4"), _randn(32, seed=1))
    new = to_bitsandbytes(layer)
    assert isinstance(new, bnb.nn.Linear4bit)
    torch.testing.assert_close(new(_randn(3, 64, seed=2)), layer(_randn(3, 64, seed=2)), rtol=3e-2, atol=3e-2)
    shared = QuantLinear(quantize(_randn(64, 64), "bnb-nf4"), None)
    model = torch.nn.Sequential(shared, torch.nn.ReLU(), shared)
    to_bitsandbytes(model)
    assert isinstance(model[0], bnb.nn.Linear4bit) and model[0] is model[2]


@pytest.mark.parametrize("fmt, words", [("nf3", ("nf3", "no other tool reads", "'bnb-nf4'")),
                                        ("int4", ("int4", "no other tool reads", "'bnb-nf4'")),
                                        ("q4_0", ("q4_0", "to_gguf", "'bnb-nf4'"))])
def test_to_bitsandbytes_refuses_other_formats_leaving_the_model(fmt, words):
    pytest.importorskip("bitsandbytes")
    model = Tiny(fmts=("bnb-nf4", fmt))
    fc1 = model.fc1
    with pytest.raises(ValueError) as e:
        to_bitsandbytes(model)
    assert all(w in str(e.value) for w in words) and "'fc2'" in str(e.value)
    assert model.fc1 is fc1  # nothing replaced


def test_to_bitsandbytes_bad_input():
    pytest.importorskip("bitsandbytes")
    with pytest.raises(TypeError, match="model"):
        to_bitsandbytes({"w": quantize(_randn(32, 64), "bnb-nf4")})
    with pytest.raises(ValueError, match="no quantized layer"):
        to_bitsandbytes(torch.nn.Linear(4, 4))
    with pytest.raises(ValueError, match="L1·L2"):
        to_bitsandbytes(torch.nn.Sequential(
            LQLinear(quantize(_randn(32, 64), "bnb-nf4"), torch.zeros(32, 4), torch.zeros(4, 64))))


# --- to_gguf: llama -----------------------------------------------------------------------------

def _llama_permute(W, n_head, n_head_kv):
    """llama.cpp's LlamaModel.permute (convert_hf_to_gguf), for the check."""
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    return W.reshape(n_head, 2, W.shape[0] // n_head // 2, *W.shape[1:]).swapaxes(1, 2).reshape(W.shape)


def _tiny_llama(**kw):
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(vocab_size=96, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                   num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                                   attention_bias=True, **kw)
    return transformers.LlamaForCausalLM(cfg).eval()


def test_gguf_llama_names_permutation_and_metadata(tmp_path):
    """A Llama decoder quantized in place: llama.cpp's names, its q/k row permutation applied to the
    stored Q4_0 / Q8_0 blocks (byte-identical to quantizing the permuted weight), its metadata."""
    model = _tiny_llama()
    W = {}
    for name, mod in list(model.named_modules()):
        if name.startswith("model.layers.") and isinstance(mod, torch.nn.Linear):
            parent, _, child = name.rpartition(".")
            W[name] = (mod.weight.detach().clone(), None if mod.bias is None else mod.bias.detach().clone())
            fmt = "q8_0" if child == "k_proj" else "q4_0"
            setattr(model.get_submodule(parent), child, QuantLinear(quantize(mod.weight.detach(), fmt), mod.bias))
    T, fields = _read(to_gguf(model, tmp_path / "llama.gguf", name="tiny-llama"))
    assert fields["general.architecture"] == "llama" and fields["general.name"] == "tiny-llama"
    assert fields["llama.block_count"] == 2 and fields["llama.embedding_length"] == 64
    assert fields["llama.attention.head_count"] == 4 and fields["llama.attention.head_count_kv"] == 2
    assert fields["llama.rope.dimension_count"] == 16 and fields["llama.vocab_size"] == 96
    assert fields["llama.rope.freq_base"] == pytest.approx(model.config.rope_parameters["rope_theta"])
    assert fields["llama.attention.layer_norm_rms_epsilon"] == pytest.approx(model.config.rms_norm_eps)
    assert {"token_embd.weight", "output_norm.weight", "output.weight", "blk.1.attn_norm.weight",
            "blk.1.ffn_norm.weight", "blk.0.ffn_gate.weight", "blk.0.ffn_up.weight", "blk.0.ffn_down.weight",
            "blk.0.attn_v.weight", "blk.0.attn_output.weight"} <= set(T)
    Q40, Q80 = gguf.GGMLQuantizationType.Q4_0, gguf.GGMLQuantizationType.Q8_0
    for i in range(2):
        Wq, bq = W[f"model.layers.{i}.self_attn.q_proj"]
        Wk, bk = W[f"model.layers.{i}.self_attn.k_proj"]
        q, k = T[f"blk.{i}.attn_q.weight"], T[f"blk.{i}.attn_k.weight"]
        assert q.tensor_type == Q40 and _shape(q) == (64, 64) and k.tensor_type == Q80 and _shape(k) == (32, 64)
        assert q.data.tobytes() == gguf.quants.quantize(_llama_permute(Wq, 4, 4).numpy(), Q40).tobytes()
        assert k.data.tobytes() == gguf.quants.quantize(_llama_permute(Wk, 4, 2).numpy(), Q80).tobytes()
        assert q.data.tobytes() != gguf.quants.quantize(Wq.numpy(), Q40).tobytes()  # the permutation did something
        assert T[f"blk.{i}.attn_q.bias"].data.tobytes() == _llama_permute(bq, 4, 4).numpy().tobytes()
        assert T[f"blk.{i}.attn_k.bias"].data.tobytes() == _llama_permute(bk, 4, 2).numpy().tobytes()
        Wv, _ = W[f"model.layers.{i}.self_attn.v_proj"]  # not permuted
        assert T[f"blk.{i}.attn_v.weight"].data.tobytes() == gguf.quants.quantize(Wv.numpy(), Q40).tobytes()
    # float weights get the same permutation
    T2, _ = _read(to_gguf(_tiny_llama(), tmp_path / "f.gguf"))
    ref = _tiny_llama()  # same seed: same weights
    Wq = ref.model.layers[0].self_attn.q_proj.weight.detach()
    assert T2["blk.0.attn_q.weight"].data.tobytes() == _llama_permute(Wq, 4, 4).numpy().tobytes()


def test_gguf_llama_tied_embeddings_written_once(tmp_path):
    model = _tiny_llama(tie_word_embeddings=True)
    assert model.lm_head.weight is model.model.embed_tokens.weight
    T, _ = _read(to_gguf(model, tmp_path / "x.gguf"))
    assert "token_embd.weight" in T and "output.weight" not in T
    untied = _tiny_llama()
    assert "output.weight" in _read(to_gguf(untied, tmp_path / "y.gguf"))[0]


def test_gguf_llama_drops_rotary_buffers(tmp_path):
    """Old checkpoints' inv_freq buffers are dropped as llama.cpp's converter drops them (said so)."""
    items = {"model.layers.0.self_attn.v_proj.weight": _randn(32, 64),
             "model.layers.0.self_attn.rotary_emb.inv_freq": torch.ones(8)}
    with pytest.warns(UserWarning, match="rotary_emb.inv_freq"):
        T, _ = _read(to_gguf(items, tmp_path / "x.gguf", arch="llama"))
    assert list(T) == ["blk.0.attn_v.weight"]


def test_gguf_llama_refuses_rope_scaling(tmp_path):
    model = _tiny_llama(rope_parameters={"rope_type": "linear", "factor": 2.0, "rope_theta": 10000.0})
    with pytest.raises(ValueError, match="'linear' RoPE scaling"):
        to_gguf(model, tmp_path / "x.gguf")
    assert os.listdir(tmp_path) == []


def test_both_exports_refuse_dgq_layers(tmp_path):
    from linalg_core.qmatmul import DGQLinear
    from linalg_core.quant import DGQConfig

    model = torch.nn.Sequential(DGQLinear.from_linear(torch.nn.Linear(256, 64), DGQConfig()))
    with pytest.raises(ValueError, match="'0' is a DGQLinear .* GGUF cannot hold"):
        to_gguf(model, tmp_path / "x.gguf")
    pytest.importorskip("bitsandbytes")
    with pytest.raises(ValueError, match="'0' is a DGQLinear .* bitsandbytes cannot hold"):
        to_bitsandbytes(model)
    assert os.listdir(tmp_path) == [] and isinstance(model[0], DGQLinear)


# --- with quant.quantize_ (the whole-model entry point) ----------------------------------------

def test_quantize_then_export_minilm(tmp_path, bnb):
    """MiniLM-L6 quantized in place by quantize_: "q4_0" goes to GGUF with every quantized block as
    stored, "bnb-nf4" goes to Linear4bit modules whose outputs match the quantized model's."""
    from linalg_core.quant import quantize_
    from linalg_core.testing.models import minilm_inputs, minilm_model

    try:
        model = minilm_model()
    except (FileNotFoundError, ImportError) as e:
        pytest.skip(str(e))
    encoder_only = lambda m, fqn: isinstance(m, torch.nn.Linear) and fqn.startswith("encoder.")  # noqa: E731
    quantize_(model, "q4_0", filter_fn=encoder_only)
    with pytest.warns(UserWarning, match="pooler"):
        T, _ = _read(to_gguf(model, tmp_path / "m.gguf"))
    Q = model.encoder.layer[2].intermediate.dense.quantized
    assert T["blk.2.ffn_up.weight"].data.tobytes() == Q.data["blocks"].numpy().tobytes()

    model = minilm_model()
    quantize_(model, "bnb-nf4", filter_fn=encoder_only)
    x = minilm_inputs(batch=2, length=16)
    with torch.no_grad():
        ref = model(**x).last_hidden_state
        to_bitsandbytes(model)
        out = model(**x).last_hidden_state
    assert isinstance(model.encoder.layer[5].output.dense, bnb.nn.Linear4bit)
    packed = getattr(model.encoder.layer[0].attention.self.query.weight.quant_state, "packing_format_for_cpu", False)
    tol = 5e-2 if packed else 1e-4
    torch.testing.assert_close(out, ref, rtol=tol, atol=tol)
