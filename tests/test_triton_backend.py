"""The Triton kernels against the reference backend, op by op, on small sizes.

On machines without a GPU they run under Triton's interpreter (tests/conftest.py sets
TRITON_INTERPRET=1 before triton is imported); on a GPU without it, on CUDA tensors.
"""

import os

import pytest
import torch

from linalg_core import _ops
from linalg_core.backends import availability

pytestmark = [
    pytest.mark.triton,
    pytest.mark.skipif(availability("triton") is not None, reason=f"triton backend: {availability('triton')}"),
]

DEVICE = torch.device("cuda" if torch.cuda.is_available() and os.environ.get("TRITON_INTERPRET") != "1" else "cpu")
BIG_SEED = 2**63 + 0x1234_5678_9ABC


def both(op, *args, dtype, **kwargs):
    """(triton, reference) results of one op call (64-bit seeds as the schemas' int64)."""
    args = tuple(_ops.as_int64(a) if isinstance(a, int) and not isinstance(a, bool) and a >= 2**63 else a
                 for a in args)
    return (getattr(_ops, op)(*args, backend="triton", **kwargs),
            getattr(_ops, op)(*args, backend="reference", **kwargs))


def test_cpu_tensors_need_interpreter_and_forcing():
    key = _ops.Key(torch.device("cpu"), torch.float32)
    assert "TRITON_INTERPRET=1" in _ops.fwht.impls["triton"].declines(key)
    assert _ops.fwht.select(key).backend != "triton"
    if os.environ.get("TRITON_INTERPRET") == "1":
        assert _ops.fwht.select(key, backend="triton").backend == "triton"
    assert _ops.fwht.impls["triton"].declines(_ops.Key(torch.device("cuda"), torch.float32)) is None


# ---------------------------------------------------------------------------- random


@pytest.mark.parametrize("count,offset,stream,seed", [(37, 0, 0, 0), (1000, 2**40 - 3, 7, BIG_SEED),
                                                      (5, 2**62 + 1, 2**64 - 1, 2**64 - 1)])
def test_random_words_bit_identical(count, offset, stream, seed):
    got, want = both("random_uint32", count, offset, stream, seed, DEVICE, dtype=torch.int64)
    assert got.dtype == torch.int64 and got.device.type == DEVICE.type
    torch.testing.assert_close(got.cpu(), want.cpu(), rtol=0, atol=0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("nrows,ncols,ld,row0,col0", [(1, 1, 1, 0, 0), (5, 7, 13, 3, 2), (3, 130, 1000, 2**20 + 1, 17),
                                                      (40, 3, 3, 0, 5)])
def test_random_fill_normals_and_signs(dtype, nrows, ncols, ld, row0, col0):
    args = (nrows, ncols, ld, row0, col0, 3, BIG_SEED, 0.37)
    got, want = both("random_fill", *args, False, dtype, DEVICE, dtype=dtype)
    assert got.dtype == dtype and got.shape == (nrows, ncols)
    tol = 1e-6 if dtype == torch.float32 else 1e-13
    torch.testing.assert_close(got.cpu(), want.cpu(), rtol=tol, atol=tol)
    got, want = both("random_fill", *args, True, dtype, DEVICE, dtype=dtype)
    torch.testing.assert_close(got.cpu(), want.cpu(), rtol=0, atol=0)


# ------------------------------------------------------------------------------ fwht


def _fwht_case(B, n_valid, N, K, dtype, out_dtype, mult):
    g = torch.Generator().manual_seed(N * 31 + K)
    x = torch.randn(B, n_valid, K, generator=g, dtype=torch.float64).to(dtype).to(DEVICE)
    row_mult = None
    if mult:
        row_mult = (torch.randint(0, 2, (n_valid,), generator=g) * 2 - 1).to(torch.int8).to(DEVICE)
    (got, bad), (want, _) = both("fwht", x, N, row_mult, N**-0.5, out_dtype, dtype=dtype)
    assert got.dtype == out_dtype and got.shape == (B, N, K) and int(bad) == 0
    if torch.bfloat16 in (dtype, out_dtype):  # 16-bit: allow one rounding step either way
        torch.testing.assert_close(got.cpu().float(), want.cpu().float(), rtol=1e-2, atol=1e-2)
    elif dtype != out_dtype:  # float32 x -> float64 out: the reference computes in float32
        torch.testing.assert_close(got.cpu(), want.cpu(), rtol=1e-6, atol=1e-6)
    else:
        torch.testing.assert_close(got.cpu(), want.cpu())


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
@pytest.mark.parametrize("N", [1, 2, 8, 64, 1024])
def test_fwht_register_path(N, dtype):
    from linalg_core.backends.triton import sketch

    assert len(sketch._fwht_plan(N, 3, torch.float32)) == 1
    _fwht_case(1, N, N, 1, dtype, dtype, False)
    _fwht_case(2, max(1, N - 3), N, 3, dtype, dtype, True)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
@pytest.mark.parametrize("N", [64, 1024])
def test_fwht_multi_pass_path(N, dtype, monkeypatch):
    from linalg_core.backends.triton import sketch

    monkeypatch.setattr(sketch, "MAX_TILE", {torch.float32: 128, torch.float64: 128})
    assert len(sketch._fwht_plan(N, 3, torch.float32)) == (2 if N == 64 else 3)
    _fwht_case(2, N - 5, N, 3, dtype, dtype, True)
    _fwht_case(1, N // 2, N, 1, dtype, dtype, False)


@pytest.mark.parametrize("dtype,out_dtype", [(torch.float16, torch.float32), (torch.float64, torch.bfloat16),
                                             (torch.float32, torch.float64)])
def test_fwht_mixed_dtypes(dtype, out_dtype):
    _fwht_case(2, 6, 8, 3, dtype, out_dtype, True)
    _fwht_case(1, 0, 4, 2, dtype, out_dtype, False)  # all padding


# ---------------------------------------------------------------------------- sparse


@pytest.mark.parametrize("s", [1, 3, 8])
def test_sparse_hash_bit_identical(s):
    for n, col0, m in [(1, 0, s), (100, 2**33 + 7, 1000)]:
        (rows, signs), (rows_ref, signs_ref) = both("sparse_hash", n, col0, m, s, 11, BIG_SEED, DEVICE,
                                                    dtype=torch.int32)
        assert rows.dtype == torch.int32 and signs.dtype == torch.int8 and rows.shape == (n, s)
        torch.testing.assert_close(rows.cpu(), rows_ref.cpu(), rtol=0, atol=0)
        torch.testing.assert_close(signs.cpu(), signs_ref.cpu(), rtol=0, atol=0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
@pytest.mark.parametrize("right", [False, True])
def test_sparse_apply(dtype, right):
    n, m, s, d, B = 70, 13, 3, 5, 2
    rows, signs = _ops.sparse_hash(n, 0, m, s, 1, 2, DEVICE, backend="reference")
    g = torch.Generator().manual_seed(0)
    A = torch.randn((B, d, n) if right else (B, n, d), generator=g, dtype=torch.float64).to(dtype).to(DEVICE)
    (got, bad), (want, _) = both("sparse_apply", A, rows, signs, m, 0.3, right, dtype=dtype)
    assert int(bad) == 0
    assert got.dtype == (torch.float64 if dtype == torch.float64 else torch.float32)
    assert got.shape == ((B, d, m) if right else (B, m, d))
    torch.testing.assert_close(got.cpu(), want.cpu())  # atomics: sums in any order
