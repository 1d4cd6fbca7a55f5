"""Int64 NumPy oracle of the DGQ A8W4 integer product, from the format's definition
(w8 = s_int·(q − z), codes two per byte with the high nibble first)."""

from __future__ import annotations

import numpy as np


def int_product(x_q, qweight, zeros, group_scales, group: int) -> np.ndarray:
    packed = np.asarray(qweight)
    q = np.empty((packed.shape[0], packed.shape[1] * 2), np.int64)
    q[:, 0::2], q[:, 1::2] = packed >> 4, packed & 15
    z = np.repeat(np.asarray(zeros).astype(np.int64), group, axis=1)
    s = np.repeat(np.asarray(group_scales).astype(np.int64), group, axis=1)
    w8 = s * (q - z)
    x = np.zeros((np.asarray(x_q).shape[0], q.shape[1]), np.int64)
    x[:, : np.asarray(x_q).shape[1]] = np.asarray(x_q)
    return x @ w8.T
