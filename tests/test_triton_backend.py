"""Triton backend infrastructure: CPU tensors need the interpreter and forcing; CUDA tensors are
accepted. The Triton kernels themselves are tested family by family against the reference
(tests/test_<family>.py, ``triton`` marker).
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


def test_cpu_tensors_need_interpreter_and_forcing():
    key = _ops.Key(torch.device("cpu"), torch.float32)
    assert "TRITON_INTERPRET=1" in _ops.fwht.impls["triton"].declines(key)
    assert _ops.fwht.select(key).backend != "triton"
    if os.environ.get("TRITON_INTERPRET") == "1":
        assert _ops.fwht.select(key, backend="triton").backend == "triton"
    assert _ops.fwht.impls["triton"].declines(_ops.Key(torch.device("cuda"), torch.float32)) is None
