"""The compiled bindings are the trust boundary: fuzzed with honest buffers and inconsistent
scalars, every call either runs inside its buffers or raises ValueError — never a crash.

Each binding of ``linalg_core._C`` takes arrays as (pointer, bytes, device) triples. Here the
buffers are real (their byte counts are true) but every scalar is drawn independently: sizes
that disagree with the buffers, negative and huge values, dtype codes and bit widths out of
range, misaligned pointers, overlapping inputs and outputs, and index arrays with garbage. Run
under AddressSanitizer + UBSan (``make test-asan``) a read or write outside a buffer, or a
signed overflow, aborts the run; ``LINALG_CORE_FUZZ_EXAMPLES`` sets the number of calls per
binding (the sanitizer run uses more).
"""

from __future__ import annotations

import os

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from linalg_core._ext import _C

pytestmark = pytest.mark.skipif(_C is None, reason="linalg_core._C is not built")

EXAMPLES = int(os.environ.get("LINALG_CORE_FUZZ_EXAMPLES", "120"))
fuzz = settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

I64 = 2**63 - 1
# Scalars: mostly small (so that many calls pass the checks and run a kernel), sometimes
# boundary or absurd values.
small = st.integers(0, 9)
wild = st.sampled_from([-(2**63), -(2**31), -1, 0, 1, 2, 3, 7, 8, 16, 31, 32, 64, 127, 128, 255, 256, 2**31 - 1,
                        2**31, 2**32 - 1, 2**32, 2**62, I64])
dim = st.one_of(small, small, small, wild)
pow2 = st.one_of(st.sampled_from([1, 2, 4, 8, 16, 32]), wild)
dtype_code = st.one_of(st.integers(0, 3), st.sampled_from([-1, 4, 99]))
u64 = st.integers(0, 2**64 - 1)


class Buffers:
    """Real host buffers of drawn sizes; keeps them alive for the call."""

    def __init__(self, draw):
        self.draw = draw
        self.keep = []
        self.pool = []

    def __call__(self, hint: int, *, fill: str = "random"):
        """A (ptr, bytes, -1) triple: the exact size ``hint`` most of the time, else a smaller,
        larger or empty buffer; sometimes misaligned, sometimes None, sometimes an earlier
        buffer again (aliasing) or a window into one (partial overlap)."""
        d = self.draw
        kind = d(st.sampled_from(["exact"] * 6 + ["short", "long", "empty", "none", "alias", "window", "odd"]))
        if kind == "none":
            return None
        if kind in ("alias", "window") and self.pool:
            base = d(st.sampled_from(self.pool))
            if kind == "alias":
                return base
            off = d(st.integers(0, max(0, base[1] - 1)))
            return (base[0] + off, base[1] - off, -1)
        hint = max(0, min(int(hint), 1 << 20))
        size = {"exact": hint, "short": max(0, hint - d(st.integers(1, 8))), "long": hint + d(st.integers(1, 64)),
                "empty": 0}.get(kind, hint)
        off = 1 if kind == "odd" else 0
        if fill == "random":
            t = torch.randint(0, 256, (size + off + 8,), dtype=torch.uint8)
        else:
            t = torch.zeros(size + off + 8, dtype=torch.uint8)
        self.keep.append(t)
        b = (t.data_ptr() + off, size, -1)
        self.pool.append(b)
        return b


def call(fn, *args):
    """The binding returns or raises ValueError; anything else fails the test."""
    try:
        return fn(*args)
    except ValueError as e:
        assert "linalg_core._C." in str(e) or "x contains" in str(e), e
        return None


ELEM = {0: 4, 1: 8, 2: 2, 3: 2}


def esize(code):
    return ELEM.get(code, 4)


def prod(*xs):
    out = 1
    for x in xs:
        out *= max(0, min(int(x), 1 << 20))
    return min(out, 1 << 20)


@fuzz
@given(st.data())
def test_fwht(data):
    d = data.draw
    buf = Buffers(d)
    dt, odt = d(dtype_code), d(dtype_code)
    B, K, N = d(dim), d(dim), d(pow2)
    n_valid = d(st.one_of(st.just(N), dim))
    x = buf(prod(B, n_valid, K) * esize(dt))
    out = buf(prod(B, N, K) * esize(odt)) if d(st.booleans()) else x
    mult = buf(n_valid) if d(st.booleans()) else None
    scale = d(st.sampled_from([1.0, 0.5, -2.0, float("nan"), float("inf")]))
    call(_C.cpu_fwht, x, out, dt, odt, B, n_valid, N, K, mult, scale)


@fuzz
@given(st.data())
def test_fwht_select(data):
    d = data.draw
    buf = Buffers(d)
    dt, odt = d(dtype_code), d(dtype_code)
    B, K, N, m = d(dim), d(dim), d(pow2), d(dim)
    n_valid = d(st.one_of(st.just(N), dim))
    work_code = 1 if 1 in (dt, odt) else 0
    x = buf(prod(B, n_valid, K) * esize(dt))
    work = buf(prod(B, N, K) * esize(work_code))
    out = buf(prod(B, m, K) * esize(odt))
    sel = buf(8 * prod(m))
    call(_C.cpu_fwht_select, x, work, out, dt, odt, B, n_valid, N, K, None, 1.0, sel, m)


@fuzz
@given(st.data())
def test_sparse_hash_and_apply(data):
    d = data.draw
    buf = Buffers(d)
    n, s, m, col0 = d(dim), d(st.one_of(st.integers(1, 4), wild)), d(st.one_of(st.integers(1, 12), wild)), d(dim)
    rows, signs = buf(4 * prod(n, s)), buf(prod(n, s))
    call(_C.cpu_sparse_hash, rows, signs, n, col0, m, s, d(u64), d(u64))
    dt, odt, right, B, dd = d(dtype_code), d(dtype_code), d(st.booleans()), d(dim), d(dim)
    A = buf(prod(B, n, dd) * esize(dt))
    out = buf(prod(B, m, dd) * esize(odt))
    call(_C.cpu_sparse_apply, A, out, dt, odt, right, B, n, dd, m, s, rows, signs, 1.0)


@fuzz
@given(st.data())
def test_random(data):
    d = data.draw
    buf = Buffers(d)
    count = d(dim)
    call(_C.cpu_random_uint32, buf(4 * prod(count)), count, d(u64), d(u64), d(u64))
    dt, nr, nc = d(dtype_code), d(dim), d(dim)
    ld, r0, c0 = d(dim), d(dim), d(dim)
    call(_C.cpu_random_fill, buf(prod(nr, nc) * esize(dt)), dt, d(st.booleans()), nr, nc, ld, r0, c0, d(u64), d(u64),
         1.0)


@fuzz
@given(st.data())
def test_convert(data):
    d = data.draw
    buf = Buffers(d)
    dt, odt, n = d(dtype_code), d(dtype_code), d(dim)
    x = buf(prod(n) * esize(dt))
    out = buf(prod(n) * esize(odt))
    call(_C.cpu_convert, x, out, dt, odt, n)


@fuzz
@given(st.data())
def test_lowrank_update(data):
    d = data.draw
    buf = Buffers(d)
    dt, m, n, r = d(dtype_code), d(dim), d(dim), d(dim)
    W = buf(prod(m, n) * esize(dt))
    out = buf(prod(m, n) * esize(dt)) if d(st.booleans()) else W
    B, A = buf(prod(m, r) * 4), buf(prod(r, n) * 4)
    s = d(st.one_of(st.floats(-4, 4), st.sampled_from([float("nan"), float("inf"), 1e39, -0.0])))
    call(_C.cpu_lowrank_update, W, out, dt, B, A, s, m, n, r)


def test_lowrank_update_rejects_bad_dtypes_ranks_scales_and_overlaps():
    W, B, A = torch.randn(4, 8), torch.randn(4, 2), torch.randn(2, 8)
    out = torch.empty_like(W)
    with pytest.raises(ValueError, match=r"dt=1 is not float32 \(0\), float16 \(2\) or bfloat16"):
        _C.cpu_lowrank_update(_t(W), _t(out), 1, _t(B), _t(A), 1.0, 4, 8, 2)
    with pytest.raises(ValueError, match=r"r=0 is out of range \[1,"):
        _C.cpu_lowrank_update(_t(W), _t(out), 0, _t(B), _t(A), 1.0, 4, 8, 0)
    with pytest.raises(ValueError, match="s=nan is not a finite float32"):
        _C.cpu_lowrank_update(_t(W), _t(out), 0, _t(B), _t(A), float("nan"), 4, 8, 2)
    with pytest.raises(ValueError, match="B holds 32 bytes, the arguments need 48"):
        _C.cpu_lowrank_update(_t(W), _t(out), 0, _t(B), _t(A), 1.0, 4, 8, 3)
    with pytest.raises(ValueError, match="out overlaps B"):
        _C.cpu_lowrank_update(_t(W), (B.data_ptr(), 128, -1), 0, _t(B), _t(A), 1.0, 4, 8, 2)
    with pytest.raises(ValueError, match="out overlaps W"):
        _C.cpu_lowrank_update(_t(W), (W.data_ptr() + 4, 124, -1), 0, _t(B), _t(A), 1.0, 4, 7, 2)
    _C.cpu_lowrank_update(_t(W), _t(W), 0, _t(B), _t(A), 1.0, 4, 8, 2)  # in place: the same buffer


@fuzz
@given(st.data())
def test_gram_and_forms(data):
    d = data.draw
    buf = Buffers(d)
    dt, n, dd = d(dtype_code), d(dim), d(dim)
    e = esize(dt)
    call(_C.cpu_weighted_gram, buf(prod(n, dd) * e), buf(prod(n) * e), buf(prod(dd, dd) * e), dt, n, dd)
    call(_C.cpu_row_quadratic_forms, buf(prod(n, dd) * e), buf(prod(dd, dd) * e), buf(prod(n) * e), dt, n, dd)


bits_st = st.one_of(st.sampled_from([0, 1, 2, 3, 4, 8]), st.sampled_from([-1, 5, 7, 9, 16, 31, 32, 64]))
block_st = st.one_of(st.sampled_from([8, 16, 32, 64]), wild)


@fuzz
@given(st.data())
def test_block_quantize_and_dequantize(data):
    d = data.draw
    buf = Buffers(d)
    dt, n, block, bits = d(dtype_code), d(st.one_of(st.integers(0, 300), wild)), d(block_st), d(bits_st)
    nb = -(-prod(n) // max(1, min(block, 1 << 20))) if block > 0 else 1
    nbits = max(0, min(bits, 8))
    x = buf(prod(n) * esize(dt))
    mid = buf(4 * max(0, (1 << nbits) - 1))
    scales_in = buf(4 * nb) if d(st.booleans()) else None
    offsets = buf(4 * nb) if d(st.booleans()) else None
    scales_out = buf(4 * nb)
    packed = buf(-(-prod(n) * nbits // 8))
    call(_C.cpu_block_quantize, x, dt, n, block, mid, bits, scales_in, offsets, scales_out, packed)
    odt = d(dtype_code)
    levels = buf(4 * (1 << nbits))
    out = buf(prod(n) * esize(odt))
    call(_C.cpu_block_dequantize, packed, bits, levels, buf(4 * nb), offsets, n, block, out, odt)


def _dgq_shape(d):
    """(group, K, M, N, K and G clamped to buffer sizes) of a fuzzed DGQ call: mostly consistent
    (K = G whole groups), sometimes wild."""
    group = d(st.one_of(st.sampled_from([128, 256]), wild))
    G = d(st.one_of(st.integers(0, 3), wild))
    K = d(st.one_of(st.just(max(0, group) * max(0, G) if group < 1024 and 0 <= G < 8 else 0), wild))
    M, N = d(dim), d(dim)
    return group, K, M, N, min(max(K, 0), 1024), min(max(G, 0), 8)


@fuzz
@given(st.data())
def test_dgq_matmul(data):
    d = data.draw
    buf = Buffers(d)
    group, K, M, N, Kc, Gc = _dgq_shape(d)
    x = buf(prod(M, Kc))
    qw = buf(prod(N, Kc // 2))
    zeros, gs = buf(prod(N, Gc)), buf(prod(N, Gc))
    wsum, y = buf(4 * prod(N)), buf(4 * prod(M, N))
    scaled = d(st.booleans())
    xs = buf(4 * prod(M)) if scaled else None
    sc = buf(4 * prod(N)) if scaled else None
    call(_C.cpu_dgq_matmul, x, qw, zeros, gs, wsum, y, M, N, K, group, d(st.integers(0, 15)), xs, sc)


@fuzz
@given(st.data())
def test_dgq_linear(data):
    d = data.draw
    buf = Buffers(d)
    group, K, M, N, Kc, Gc = _dgq_shape(d)
    dt = d(st.sampled_from([0, 0, 2, 2, 3, 3, 1, -1]))
    # random bytes are often NaN/Inf (refused), zeros are finite (the kernel runs)
    x = buf(prod(M, Kc) * esize(dt), fill=d(st.sampled_from(["random", "zeros"])))
    qw = buf(prod(N, Kc // 2))
    zeros, gs = buf(prod(N, Gc)), buf(prod(N, Gc))
    wsum, sc = buf(4 * prod(N)), buf(4 * prod(N))
    bias = buf(4 * prod(N)) if d(st.booleans()) else None
    y = buf(4 * prod(M, N))
    call(_C.cpu_dgq_linear, x, dt, qw, zeros, gs, wsum, sc, bias, y, M, N, K, group, d(st.integers(0, 15)))


# --- targeted regressions (the fuzz found these classes; each named case stays) ------------------

def _t(t):
    return (t.data_ptr(), t.numel() * t.element_size(), -1)


def test_fwht_rejects_n_not_a_power_of_two_and_short_buffers():
    x = torch.randn(3, 6, 2)
    with pytest.raises(ValueError, match="N=6 is not a positive power of two"):
        _C.cpu_fwht(_t(x), _t(torch.empty_like(x)), 0, 0, 3, 6, 6, 2, None, 1.0)
    with pytest.raises(ValueError, match="out holds 48 bytes, the arguments need 192"):
        _C.cpu_fwht(_t(torch.randn(3, 4, 2)), _t(torch.empty(12)), 0, 0, 3, 4, 8, 2, None, 1.0)


def test_fwht_select_rejects_rows_out_of_range():
    x = torch.randn(1, 8, 1)
    sel = torch.tensor([0, 8], dtype=torch.int64)
    with pytest.raises(ValueError, match=r"select\[1\]=8 is out of range \[0, 7\]"):
        _C.cpu_fwht_select(_t(x), _t(torch.empty(8)), _t(torch.empty(2)), 0, 0, 1, 8, 8, 1, None, 1.0, _t(sel), 2)


def test_sparse_apply_rejects_rows_out_of_range_and_huge_m():
    rows = torch.tensor([[0], [5]], dtype=torch.int32)
    signs = torch.ones(2, 1, dtype=torch.int8)
    with pytest.raises(ValueError, match=r"rows\[1\]=5 is out of range \[0, 3\]"):
        _C.cpu_sparse_apply(_t(torch.randn(2, 3)), _t(torch.empty(4, 3)), 0, 0, False, 1, 2, 3, 4, 1, _t(rows),
                            _t(signs), 1.0)
    with pytest.raises(ValueError, match="m=4294967295 is out of range"):
        _C.cpu_sparse_hash(_t(rows), _t(signs), 2, 0, 2**32 - 1, 1, 0, 0)


def test_quant_bindings_reject_unsupported_bits_and_dtypes():
    x = torch.randn(64)
    packed = torch.empty(64, dtype=torch.uint8)
    mid = torch.zeros(255)
    with pytest.raises(ValueError, match="bits=5 is not one of"):
        _C.cpu_block_quantize(_t(x), 0, 64, 64, _t(mid), 5, None, None, _t(torch.empty(1)), _t(packed))
    with pytest.raises(ValueError, match="dt=float64 is not supported"):
        _C.cpu_block_quantize(_t(x.double()), 1, 64, 64, _t(mid), 4, None, None, _t(torch.empty(1)), _t(packed))
    with pytest.raises(ValueError, match="bits=31 is not one of"):
        _C.cpu_block_dequantize(_t(packed), 31, _t(mid), _t(torch.ones(1)), None, 64, 64, _t(x), 0)
    with pytest.raises(ValueError, match="out_dt=float64 is not supported"):
        _C.cpu_block_dequantize(_t(packed), 4, _t(mid), _t(torch.ones(1)), None, 64, 64, _t(x.double()), 1)
    with pytest.raises(ValueError, match="block=0 is out of range"):
        _C.cpu_block_dequantize(_t(packed), 4, _t(mid), _t(torch.ones(1)), None, 64, 0, _t(x), 0)


def test_dgq_matmul_rejects_bad_group_and_k_beyond_the_int32_limit():
    x = torch.zeros(1, 256, dtype=torch.int8)
    qw = torch.zeros(1, 128, dtype=torch.uint8)
    z, gs = torch.zeros(1, 2, dtype=torch.uint8), torch.ones(1, 2, dtype=torch.int8)
    ws, y = torch.zeros(1, dtype=torch.int32), torch.empty(1, 1, dtype=torch.int32)
    args = (_t(x), _t(qw), _t(z), _t(gs), _t(ws), _t(y))
    with pytest.raises(ValueError, match="group=64 is out of range"):
        _C.cpu_dgq_matmul(*args, 1, 1, 256, 64, 15, None, None)
    with pytest.raises(ValueError, match="K=200 is not a multiple"):
        _C.cpu_dgq_matmul(*args, 1, 1, 200, 128, 15, None, None)
    big = _C.DGQ_MAX_K + 128
    with pytest.raises(ValueError, match=f"K={big} is out of range"):
        _C.cpu_dgq_matmul(*args, 1, 1, big, 128, 15, None, None)
    assert _C.DGQ_MAX_K * 127 * 127 < 2**31 and _C.DGQ_MAX_K % 128 == 0


def test_buffers_must_be_aligned_on_the_host_and_not_partially_overlap():
    x = torch.randn(9)
    with pytest.raises(ValueError, match="not aligned"):
        _C.cpu_convert((x.data_ptr() + 2, 32, -1), None, 0, 0, 8)
    with pytest.raises(ValueError, match="out overlaps in"):
        _C.cpu_convert((x.data_ptr(), 32, -1), (x.data_ptr() + 4, 32, -1), 0, 0, 8)
    assert _C.cpu_convert(_t(x), _t(x), 0, 0, 9) == 0  # the same buffer is fine (same dtype)
    with pytest.raises(ValueError, match="expected host memory"):
        _C.cpu_convert((x.data_ptr(), 36, 0), None, 0, 0, 9)


@pytest.mark.skipif(_C is None or not _C.build_info()["cuda"], reason="built without CUDA")
def test_cuda_bindings_refuse_host_buffers_before_touching_cuda():
    x = torch.randn(8)
    with pytest.raises(ValueError, match="expected a CUDA device"):
        _C.cuda_fwht(_t(x), _t(x), 0, 0, 1, 8, 8, 1, None, 1.0, None, 0)
    with pytest.raises(ValueError, match="expected a CUDA device"):
        _C.cuda_random_uint32(_t(x), 8, 0, 0, 0, 0)
