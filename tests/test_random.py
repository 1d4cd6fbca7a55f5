"""The random family (ops ``random_uint32``, ``random_fill``): Philox streams' known-answer
vectors, bit-identity with the NumPy oracle on every backend (Triton against the reference op by
op, on CPU tensors under the interpreter or on CUDA tensors; CUDA under the ``gpu`` marker), block
independence, distribution checks, seed validation."""

import numpy as np
import pytest
import scipy.stats
import torch

import linalg_core as lc
from linalg_core.backends import availability
from linalg_core.backends.reference import philox as ref_philox
from linalg_core.testing import usable_backends
from linalg_core.testing.backends import against_reference, triton_device
from tests.oracles import random as oracle

DEVICE = triton_device()  # of the Triton parity tests
BIG_SEED = 2**63 + 0x1234_5678_9ABC


def triton(test):
    """The ``triton`` marker, and a skip where the Triton backend cannot run."""
    reason = availability("triton")
    return pytest.mark.triton(pytest.mark.skipif(reason is not None, reason=f"triton backend: {reason}")(test))

# Random123's known-answer vectors for Philox4x32-10 (kat_vectors): (counter, key) -> output.
KAT = [
    ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((0xFFFFFFFF,) * 4, (0xFFFFFFFF,) * 2, (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0),
     (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1)),
]


@pytest.mark.parametrize("ctr,key,expected", KAT)
def test_known_answers_oracle_and_reference(ctr, key, expected):
    block = ctr[0] | (ctr[1] << 32)
    stream = ctr[2] | (ctr[3] << 32)
    seed = key[0] | (key[1] << 32)
    assert tuple(int(v) for v in oracle.philox([block], stream, seed)[0]) == expected
    signed_block = block - (1 << 64) if block >= 1 << 63 else block  # int64 two's complement
    got = ref_philox.philox4x32_10(torch.tensor([signed_block]), stream, seed)[0]
    assert tuple(int(v) for v in got) == expected


@pytest.mark.parametrize("backend", usable_backends("random_uint32", dtype=torch.int64))
@pytest.mark.parametrize("seed,stream,offset", [(0, 0, 0), (2**64 - 1, 7, 3), (12345, 2**63 + 5, 2**40 + 1)])
def test_words_bit_identical_to_oracle(backend, seed, stream, offset):
    got = lc.random.uint32(37, seed=seed, stream=stream, offset=offset, backend=backend)
    want = oracle.words(np.arange(offset, offset + 37, dtype=np.uint64), stream, seed)
    np.testing.assert_array_equal(got.numpy(), want.astype(np.int64))


@pytest.mark.parametrize("backend", usable_backends("random_fill", dtype=torch.float64))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_normals_and_signs_match_oracle(backend, dtype):
    # 3 rows of 1001 starting at an odd offset: partial Philox blocks and vector-chunk edges.
    shape, offset = (3, 1001), 5
    idx = np.arange(offset, offset + 3 * 1001, dtype=np.uint64)
    got = lc.random.normal(shape, seed=99, stream=3, offset=offset, dtype=dtype, backend=backend)
    tol = 1e-5 if dtype == torch.float32 else 1e-13  # float32: a few ulps of values up to ~6
    np.testing.assert_allclose(got.numpy().ravel(), oracle.normals(idx, 3, 99), rtol=tol, atol=tol)
    got = lc.random.rademacher(shape, seed=99, stream=3, offset=offset, dtype=dtype, backend=backend)
    np.testing.assert_array_equal(got.numpy().ravel(), oracle.signs(idx, 3, 99))


@pytest.mark.parametrize("backend", usable_backends("random_fill", dtype=torch.float64))
def test_any_block_is_a_slice_of_the_whole(backend):
    whole = lc.random.normal((1000,), seed=5, dtype=torch.float64, backend=backend)
    part = lc.random.normal((123,), seed=5, offset=501, dtype=torch.float64, backend=backend)
    torch.testing.assert_close(part, whole[501:624], rtol=0, atol=0)


@pytest.mark.parametrize("backend", usable_backends("random_fill", dtype=torch.float64))
@pytest.mark.parametrize("nrows,ncols,ld,row0,col0", [(1024, 26, 26, 0, 0), (40, 3, 3, 7, 5), (5, 7, 13, 3, 2),
                                                      (3, 130, 130, 2**61 + 1, 17)])
def test_fill_of_rows_equals_the_reference(backend, nrows, ncols, ld, row0, col0):
    # Rows that follow each other in the stream (ld == ncols; the CPU kernel fills them as one
    # range) and rows that do not, against the reference op: signs bit for bit, normals to ulps.
    for dtype in (torch.float32, torch.float64):
        args = (nrows, ncols, ld, row0, col0, 3, BIG_SEED, 0.37)
        got, want = against_reference("random_fill", *args, True, dtype, torch.device("cpu"), backend=backend)
        torch.testing.assert_close(got, want, rtol=0, atol=0)
        got, want = against_reference("random_fill", *args, False, dtype, torch.device("cpu"), backend=backend)
        tol = 1e-6 if dtype == torch.float32 else 1e-13
        torch.testing.assert_close(got, want, rtol=tol, atol=tol)


def test_normals_are_standard_normal():
    z = lc.random.normal((200_000,), seed=2024, dtype=torch.float64).numpy()
    assert scipy.stats.kstest(z, "norm").pvalue > 1e-3
    assert abs(z.mean()) < 5 / np.sqrt(z.size)
    assert abs(z.var() - 1) < 5 * np.sqrt(2 / z.size)


def test_signs_are_balanced_and_independent_of_words():
    s = lc.random.rademacher((100_000,), seed=1, dtype=torch.float64).numpy()
    assert abs(s.mean()) < 5 / np.sqrt(s.size)
    assert set(np.unique(s)) == {-1.0, 1.0}


def test_different_seeds_and_streams_differ():
    a = lc.random.uint32(64, seed=1)
    assert not torch.equal(a, lc.random.uint32(64, seed=2))
    assert not torch.equal(a, lc.random.uint32(64, seed=1, stream=1))


def test_generator_and_none_seeds():
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    assert torch.equal(lc.random.uint32(8, seed=g1), lc.random.uint32(8, seed=g2))
    assert lc.sketch.srht(4, 8).seed is not None  # fresh entropy, recorded


@pytest.mark.parametrize("bad,exc", [(-1, ValueError), (2**64, ValueError), (1.5, TypeError), (True, TypeError),
                                     ("3", TypeError)])
def test_invalid_seed_is_rejected_with_its_value(bad, exc):
    with pytest.raises(exc, match="seed"):
        lc.random.uint32(4, seed=bad)


def test_invalid_dtype_and_count():
    with pytest.raises(TypeError, match="dtype"):
        lc.random.normal(4, seed=0, dtype=torch.float16)
    with pytest.raises(ValueError, match="count=-1"):
        lc.random.uint32(-1, seed=0)


# ------------------------------------------------------------------- Triton against the reference


@triton
@pytest.mark.parametrize("count,offset,stream,seed", [(37, 0, 0, 0), (1000, 2**40 - 3, 7, BIG_SEED),
                                                      (5, 2**62 + 1, 2**64 - 1, 2**64 - 1)])
def test_triton_words_bit_identical(count, offset, stream, seed):
    got, want = against_reference("random_uint32", count, offset, stream, seed, DEVICE, backend="triton")
    assert got.dtype == torch.int64 and got.device.type == DEVICE.type
    torch.testing.assert_close(got.cpu(), want.cpu(), rtol=0, atol=0)


@triton
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("nrows,ncols,ld,row0,col0", [(1, 1, 1, 0, 0), (5, 7, 13, 3, 2), (3, 130, 1000, 2**20 + 1, 17),
                                                      (40, 3, 3, 0, 5)])
def test_triton_fill_normals_and_signs(dtype, nrows, ncols, ld, row0, col0):
    args = (nrows, ncols, ld, row0, col0, 3, BIG_SEED, 0.37)
    got, want = against_reference("random_fill", *args, False, dtype, DEVICE, backend="triton")
    assert got.dtype == dtype and got.shape == (nrows, ncols)
    tol = 1e-6 if dtype == torch.float32 else 1e-13
    torch.testing.assert_close(got.cpu(), want.cpu(), rtol=tol, atol=tol)
    got, want = against_reference("random_fill", *args, True, dtype, DEVICE, backend="triton")
    torch.testing.assert_close(got.cpu(), want.cpu(), rtol=0, atol=0)


# ---------------------------------------------------------------------------------- CUDA


@pytest.mark.gpu
def test_cuda_streams_bit_identical_to_oracle():
    for seed, stream, offset in [(0, 0, 0), (2**64 - 1, 9, 2**40 + 3)]:
        w = lc.random.uint32(1001, seed=seed, stream=stream, offset=offset, device="cuda", backend="cuda")
        want = oracle.words(np.arange(offset, offset + 1001, dtype=np.uint64), stream, seed)
        np.testing.assert_array_equal(w.cpu().numpy(), want.astype(np.int64))
    idx = np.arange(7, 7 + 5 * 333, dtype=np.uint64)
    for dtype, tol in ((torch.float64, 1e-12), (torch.float32, 1e-5)):
        z = lc.random.normal((5, 333), seed=3, offset=7, dtype=dtype, device="cuda", backend="cuda")
        np.testing.assert_allclose(z.cpu().numpy().ravel(), oracle.normals(idx, 0, 3), rtol=tol, atol=tol)
        s = lc.random.rademacher((5, 333), seed=3, offset=7, dtype=dtype, device="cuda", backend="cuda")
        np.testing.assert_array_equal(s.cpu().numpy().ravel(), oracle.signs(idx, 0, 3))
