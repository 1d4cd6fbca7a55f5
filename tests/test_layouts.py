"""Layout fuzz of the public API: every op gives the same result for the same values in any
memory layout, and never writes into its inputs.

Layouts: torch contiguous, column-major (F-order), stepped (every other row and third column of a
larger buffer), a storage offset, a stride-0 batch (a broadcast view); numpy C-order, F-order,
negative strides, read-only, big-endian, stepped. The reference is the op on a contiguous copy;
results must agree to rounding (the compiled kernels and BLAS may sum in another order for
another layout) and come back in the caller's array type. Run under AddressSanitizer by
``make test-asan``: a kernel reading a view as if it were contiguous is an out-of-bounds read.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import linalg_core as lc
from linalg_core import qmatmul, quant, sampling, sketch

RNG = np.random.default_rng(20261206)


def _torch_layouts(M: torch.Tensor):
    r, c = M.shape
    big = torch.zeros(2 * r, 3 * c, dtype=M.dtype)
    big[::2, ::3] = M
    flat = torch.zeros(r * c + 5, dtype=M.dtype)
    flat[5:] = M.reshape(-1)
    return {
        "contiguous": M.clone(),
        "f_order": M.T.contiguous().T,
        "stepped": big[::2, ::3],
        "offset": flat[5:].view(r, c),
    }


def _numpy_layouts(M: torch.Tensor):
    a = M.numpy()
    ro = a.copy()
    ro.flags.writeable = False
    big = np.zeros((2 * a.shape[0], 3 * a.shape[1]), dtype=a.dtype)
    big[::2, ::3] = a
    flipped = np.ascontiguousarray(a[::-1])
    return {
        "np_c": a.copy(),
        "np_f": np.asfortranarray(a),
        "np_negative_stride": flipped[::-1],
        "np_read_only": ro,
        "np_big_endian": a.astype(a.dtype.newbyteorder(">")),
        "np_stepped": big[::2, ::3],
    }


def layouts(M: torch.Tensor):
    return {**_torch_layouts(M), **_numpy_layouts(M)}


def _as_np(x):
    if isinstance(x, torch.Tensor):
        return x.detach().numpy()
    return np.asarray(x)


def _leaves(result):
    """The arrays of a result (tuples, named tuples, dataclass-like objects with tensors)."""
    if isinstance(result, (torch.Tensor, np.ndarray)):
        return [result]
    if isinstance(result, (int, float)):
        return [np.asarray(result)]
    if isinstance(result, (tuple, list)):
        return [leaf for r in result for leaf in _leaves(r)]
    fields = getattr(result, "__dataclass_fields__", None)
    if fields:
        return [leaf for name in fields for leaf in _leaves(getattr(result, name))
                if isinstance(getattr(result, name), (torch.Tensor, np.ndarray, tuple, list))]
    return []


def check_op(op, M: torch.Tensor, *, rtol: float, atol: float = 0.0, name: str = "", caller_type: bool = True):
    """op(layout) equals op(contiguous) for every layout, inputs untouched, the caller's array
    type out (``caller_type=False`` for methods of library objects, which hold torch tensors)."""
    want = [_as_np(x).astype(np.float64) if _as_np(x).dtype.kind == "f" else _as_np(x) for x in _leaves(op(M.clone()))]
    for label, X in layouts(M).items():
        before = X.copy() if isinstance(X, np.ndarray) else X.clone()
        got = _leaves(op(X))
        if isinstance(X, np.ndarray):
            np.testing.assert_array_equal(X, before, err_msg=f"{name}: input {label} was modified")
            if caller_type:
                assert all(isinstance(g, np.ndarray) for g in got), f"{name}: {label} did not return numpy"
        else:
            torch.testing.assert_close(X, before, rtol=0, atol=0, msg=f"{name}: input {label} was modified")
        assert len(got) == len(want), (name, label)
        for g, w in zip(got, want):
            g = _as_np(g)
            if w.dtype.kind == "f":
                scale = max(1.0, float(np.abs(w).max())) if w.size else 1.0
                np.testing.assert_allclose(g.astype(np.float64), w, rtol=rtol, atol=atol * scale,
                                           err_msg=f"{name}: layout {label}")
            else:
                np.testing.assert_array_equal(g, w, err_msg=f"{name}: layout {label}")


def tall(n=256, d=8, dtype=torch.float64):
    return torch.from_numpy(RNG.standard_normal((n, d))).to(dtype)


def square(n=64, dtype=torch.float64):
    return torch.from_numpy(RNG.standard_normal((n, n))).to(dtype)


# --- the ops -------------------------------------------------------------------------------------

def test_fwht():
    check_op(lambda X: lc.fwht(X, dim=0), tall(64, 6), rtol=1e-12, atol=1e-12, name="fwht dim 0")
    check_op(lambda X: lc.fwht(X, dim=1), tall(6, 32), rtol=1e-12, atol=1e-12, name="fwht dim 1")


@pytest.mark.parametrize("kind", ["gaussian", "rademacher", "srht", "countsketch", "sparse_sign"])
def test_sketch_apply(kind):
    S = sketch.create(kind, 32, 256, seed=3)
    check_op(S.apply, tall(256, 6), rtol=1e-10, atol=1e-12, name=f"{kind}.apply")
    check_op(S.apply_right, tall(6, 256), rtol=1e-10, atol=1e-12, name=f"{kind}.apply_right")


def test_distortion():
    S = sketch.srht(64, 256, seed=1)
    check_op(lambda X: lc.distortion(S, X), tall(256, 6), rtol=1e-9, atol=1e-12, name="distortion")


def test_rsvd_nystrom_cur_svd_error():
    A = tall(96, 40)
    check_op(lambda X: tuple(lc.rsvd(X, 5, seed=0)), A, rtol=1e-7, atol=1e-9, name="rsvd")
    check_op(lambda X: lc.nystrom(X, 5, seed=0).to_svd(), A, rtol=1e-6, atol=1e-8, name="nystrom")
    check_op(lambda X: lc.cur(X, 5, seed=0).to_svd(), A, rtol=1e-6, atol=1e-8, name="cur")
    U, S, Vh = lc.rsvd(A, 5, seed=0)
    check_op(lambda X: lc.svd_error(X, U, S, Vh), A, rtol=1e-10, atol=1e-12, name="svd_error")
    P = A.T @ A
    check_op(lambda X: lc.nystrom(X, 5, psd=True, seed=0).to_svd(), P, rtol=1e-6, atol=1e-8, name="nystrom psd")


def test_rsvd_float32_and_bfloat16_inputs():
    A = tall(128, 48, torch.float32)
    check_op(lambda X: tuple(lc.rsvd(X, 4, seed=0)), A, rtol=1e-4, atol=1e-5, name="rsvd fp32")


def test_stride0_batches():
    # A broadcast batch (stride 0 in the batch dimension) equals the materialised batch.
    A = tall(64, 8)
    Ab = A.unsqueeze(0).expand(3, 64, 8)
    torch.testing.assert_close(lc.fwht(Ab, dim=1), lc.fwht(Ab.contiguous(), dim=1))
    S = sketch.countsketch(16, 64, seed=0)
    torch.testing.assert_close(S.apply(Ab), S.apply(Ab.contiguous()))
    U1, S1, V1 = lc.rsvd(Ab, 3, seed=0)
    U2, S2, V2 = lc.rsvd(Ab.contiguous(), 3, seed=0)
    torch.testing.assert_close((U1, S1, V1), (U2, S2, V2))


def test_regression():
    A, b = tall(512, 6), tall(512, 1)[:, 0]
    check_op(lambda X: lc.regression.lstsq(X, b.numpy() if isinstance(X, np.ndarray) else b, seed=0).x, A,
             rtol=1e-9, atol=1e-12, name="lstsq A")
    check_op(lambda B: lc.regression.lstsq(A, B, seed=0).x, tall(512, 2), rtol=1e-9, atol=1e-12, name="lstsq B")


def test_sampling():
    A = tall(200, 4)
    check_op(lambda X: sampling.leverage_scores(X), A, rtol=1e-9, atol=1e-12, name="leverage")
    check_op(lambda X: sampling.lewis_weights(X, 1), A, rtol=1e-7, atol=1e-10, name="lewis")
    check_op(lambda X: sampling.lp_sensitivities(X, 1), A, rtol=1e-7, atol=1e-10, name="sensitivities")
    check_op(lambda X: sampling.sample_rows(X, 1, 50, seed=0), A, rtol=1e-7, atol=1e-10, name="sample_rows")


@pytest.mark.parametrize("fmt", ["nf4", "bnb-nf4", "int4", "int4-asym", "q4_0", "q8_0", "nf3"])
def test_quantize(fmt):
    W = square(64, torch.float32)
    check_op(lambda X: quant.quantize(X, fmt).dequantize(), W, rtol=0, atol=0, name=f"quantize {fmt}",
             caller_type=False)


def test_dgq():
    W = tall(32, 256, torch.float32)
    check_op(lambda X: qmatmul.dgq_quantize(X).dequantize(), W, rtol=0, atol=0, name="dgq_quantize", caller_type=False)
    w = qmatmul.dgq_quantize(W)
    x = tall(4, 256, torch.float32)
    check_op(lambda X: qmatmul.quantize_activations(X), x, rtol=0, atol=0, name="quantize_activations")
    xq, xs = qmatmul.quantize_activations(x)
    for label, X in _torch_layouts(xq.float()).items():
        Xq = X.to(torch.int8) if label == "contiguous" else X.to(torch.int8)
        torch.testing.assert_close(qmatmul.qmatmul(Xq, xs, w), qmatmul.qmatmul(xq, xs, w), msg=label)
    xqt = xq.T.contiguous().T  # F-order int8 activations
    torch.testing.assert_close(qmatmul.qmatmul(xqt, xs, w), qmatmul.qmatmul(xq, xs, w))


@pytest.mark.parametrize("method", ["pissa", "olora"])
def test_adapters(method):
    W = tall(64, 48, torch.float32)
    fn = getattr(lc.adapters, method)
    check_op(lambda X: fn(X, 4, seed=0) if method == "pissa" else fn(X, 4), W, rtol=1e-4, atol=1e-5, name=method)


def test_vsa_bind():
    m = lc.vsa.MBAT(64, kind="hadamard", seed=0)
    check_op(lambda X: m.bind("role", X), tall(5, 64), rtol=1e-10, atol=1e-12, name="MBAT.bind")
