"""The scratch pool (linalg_core._scratch): borrow's kept, bounded, exclusive buffers and the
buffers of a reuse_buffers block."""

from __future__ import annotations

import contextvars
import gc
import threading
import weakref

import pytest
import torch

from linalg_core import _scratch
from linalg_core._scratch import borrow, buffer, lend, release, reuse_buffers

F32, F64 = torch.float32, torch.float64


@pytest.fixture(autouse=True)
def _empty_pool():
    release()
    yield
    release()


def _storage(t: torch.Tensor) -> int:
    return t.untyped_storage().data_ptr()


# --- reuse_buffers + buffer ---------------------------------------------------------------------

def test_buffer_is_reused_within_a_block_per_tag_dtype_and_device():
    with reuse_buffers():
        a = buffer("x", (4, 4), F32, "cpu")
        b = buffer("x", (2, 3), F32, torch.device("cpu"))  # str or torch.device: one key
        assert a.shape == (4, 4) and b.shape == (2, 3) and b.dtype == F32 and b.is_contiguous()
        assert _storage(a) == _storage(b)
        other_tag = buffer("y", (4, 4), F32, "cpu")
        other_dtype = buffer("x", (4, 4), F64, "cpu")
        assert len({_storage(a), _storage(other_tag), _storage(other_dtype)}) == 3


def test_buffer_grows_to_the_largest_request_and_keeps_it():
    with reuse_buffers():
        small = buffer("g", (8,), F32, "cpu")
        big = buffer("g", (100, 10), F32, "cpu")  # larger than what is kept: a new, larger buffer
        assert big.numel() == 1000
        again = buffer("g", (8,), F32, "cpu")  # smaller again: a view of the grown buffer
        assert _storage(again) == _storage(big) != _storage(small)
        assert _scratch._SCOPE.get().kept[("g", F32, "cpu")].numel() == 1000


def test_buffer_outside_a_block_is_fresh():
    a = buffer("x", (4,), F32, "cpu")
    b = buffer("x", (4,), F32, "cpu")
    assert _storage(a) != _storage(b)
    assert _scratch._SCOPE.get() is None


def test_nested_blocks_share_the_outermost_and_exit_frees_it():
    with reuse_buffers():
        a = buffer("n", (16,), F32, "cpu")
        with reuse_buffers():
            assert _storage(buffer("n", (16,), F32, "cpu")) == _storage(a)
        assert _storage(buffer("n", (16,), F32, "cpu")) == _storage(a)  # the inner exit freed nothing
        kept = weakref.ref(_scratch._SCOPE.get().kept[("n", F32, "cpu")])
        del a
    gc.collect()
    assert kept() is None  # the outermost exit released the buffer
    assert _scratch._SCOPE.get() is None


def test_block_exit_restores_state_after_an_error():
    with pytest.raises(RuntimeError, match="boom"):
        with reuse_buffers():
            buffer("e", (4,), F32, "cpu")
            raise RuntimeError("boom")
    assert _scratch._SCOPE.get() is None


def test_lend_serves_its_tag_from_the_lent_memory_where_it_fits():
    out = torch.empty(6, 8)  # 192 bytes
    with reuse_buffers():
        pooled = buffer("bf16", (16, 8), torch.bfloat16, "cpu")
        with lend("bf16", out):
            fits = buffer("bf16", (12, 8), torch.bfloat16, "cpu")  # 192 bytes: exactly out's
            assert _storage(fits) == _storage(out) and fits.shape == (12, 8) and fits.dtype == torch.bfloat16
            too_big = buffer("bf16", (13, 8), torch.bfloat16, "cpu")
            other_tag = buffer("stack", (2, 2), F32, "cpu")
            assert _storage(out) not in (_storage(too_big), _storage(other_tag))
            assert _storage(too_big) == _storage(pooled)  # the pool's buffer, as without the lend
        after = buffer("bf16", (2, 2), torch.bfloat16, "cpu")
        assert _storage(after) == _storage(pooled)


def test_lend_opens_a_block_nests_and_restores():
    outer, inner = torch.empty(16), torch.empty(32)
    assert _scratch._SCOPE.get() is None
    with lend("t", outer):
        assert _storage(buffer("t", (16,), F32, "cpu")) == _storage(outer)  # a block of its own
        with lend("t", inner):
            assert _storage(buffer("t", (16,), F32, "cpu")) == _storage(inner)
        assert _storage(buffer("t", (16,), F32, "cpu")) == _storage(outer)
    assert _scratch._SCOPE.get() is None
    assert _storage(buffer("t", (16,), F32, "cpu")) != _storage(outer)


def test_lend_refuses_a_non_contiguous_tensor():
    with pytest.raises(ValueError, match="memory must be contiguous.*strides"):
        with lend("t", torch.empty(4, 4).T):
            pass


def test_another_thread_never_gets_the_blocks_buffer():
    """Even with the block's context copied into it (asyncio, executors that copy contexts), a
    thread other than the one that opened the block gets fresh buffers and opens its own block."""
    got = {}
    with reuse_buffers():
        mine = buffer("t", (64,), F32, "cpu")
        ctx = contextvars.copy_context()

        def other():
            got["plain"] = buffer("t", (64,), F32, "cpu")
            got["copied"] = ctx.run(buffer, "t", (64,), F32, "cpu")

            def own_block():
                with reuse_buffers():
                    x = buffer("t", (64,), F32, "cpu")
                    return x, buffer("t", (64,), F32, "cpu")

            got["own"] = ctx.run(own_block)

        t = threading.Thread(target=other)
        t.start()
        t.join()
        assert _storage(got["plain"]) != _storage(mine)
        assert _storage(got["copied"]) != _storage(mine)
        x, y = got["own"]
        assert _storage(x) == _storage(y) != _storage(mine)  # its own block reuses, apart from ours
        assert _storage(buffer("t", (64,), F32, "cpu")) == _storage(mine)  # ours is untouched


def test_lowrank_names_are_the_pools():
    from linalg_core.lowrank import operators

    assert operators.reuse_buffers is reuse_buffers
    assert operators._scratch is buffer


# --- borrow ----------------------------------------------------------------------------------------

def test_borrow_keeps_one_buffer_between_calls_and_grows_it():
    with borrow("b", 100, F64, "cpu") as first:
        assert first.shape == (100,) and first.dtype == F64
        p = _storage(first)
    with borrow("b", 50, F64, "cpu") as second:
        assert _storage(second) == p and second.numel() == 50
    with borrow("b", 1000, F64, "cpu") as third:
        assert third.numel() == 1000
        grown = _storage(third)
    assert _scratch._KEPT[("b", F64, "cpu")].numel() == 1000
    with borrow("b", 10, F64, "cpu") as fourth:
        assert _storage(fourth) == grown


def test_borrow_does_not_keep_requests_above_the_bound(monkeypatch):
    monkeypatch.setattr(_scratch, "MAX_BYTES", 1024)
    with borrow("big", 1024 // 8 + 1, F64, "cpu") as big:
        assert big.numel() == 129
    assert ("big", F64, "cpu") not in _scratch._KEPT
    with borrow("big", 128, F64, "cpu"):
        pass
    assert _scratch._KEPT[("big", F64, "cpu")].numel() == 128


def test_release_frees_borrowed_buffers():
    with borrow("r", 10, F32, "cpu"):
        pass
    kept = weakref.ref(_scratch._KEPT[("r", F32, "cpu")])
    release()
    gc.collect()
    assert not _scratch._KEPT and kept() is None


def test_nested_borrow_gets_a_different_buffer():
    with borrow("same", 32, F32, "cpu") as outer:
        outer.fill_(1.0)
        with borrow("same", 32, F32, "cpu") as inner:
            assert _storage(inner) != _storage(outer)
            inner.fill_(2.0)
        assert torch.all(outer == 1.0)
    with borrow("same", 32, F32, "cpu") as after:  # the kept one is free again
        assert _storage(after) == _storage(outer)


def test_borrow_is_never_shared_between_threads():
    """Threads inside borrow at the same moment each hold a distinct buffer whose contents no one
    else writes; afterwards the kept buffer is intact and reusable."""
    n, rounds = 8, 20
    barrier = threading.Barrier(n)
    errors, pointers = [], [set() for _ in range(rounds)]

    def work(i):
        try:
            for r in range(rounds):
                with borrow("shared", 4096, F32, "cpu") as buf:
                    buf.fill_(float(i))
                    pointers[r].add(_storage(buf))
                    barrier.wait(timeout=60)  # everyone holds a buffer now
                    if not torch.all(buf == float(i)):
                        errors.append(f"thread {i} round {r}: its buffer was written by another thread")
                    barrier.wait(timeout=60)
        except Exception as e:  # noqa: BLE001  (reported below with the thread)
            errors.append(f"thread {i}: {e!r}")
            barrier.abort()

    threads = [threading.Thread(target=work, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert all(len(p) == n for p in pointers)  # n buffers alive at once, all distinct
    with borrow("shared", 4096, F32, "cpu") as buf:
        assert buf.numel() == 4096
    assert not _scratch._LOCK.locked()


def test_borrow_releases_the_lock_on_error():
    with pytest.raises(RuntimeError, match="inside"):
        with borrow("err", 8, F32, "cpu"):
            raise RuntimeError("inside")
    assert not _scratch._LOCK.locked()
    with borrow("err", 8, F32, "cpu") as again:
        assert _storage(again) == _storage(_scratch._KEPT[("err", F32, "cpu")])


def test_sketch_release_scratch_empties_the_pool():
    import linalg_core as lc

    with borrow("s", 8, F32, "cpu"):
        pass
    lc.sketch.release_scratch()
    assert not _scratch._KEPT
