"""Launch context of the CUDA bindings: the tensor's device made current, and its current stream."""

from __future__ import annotations

import torch


def on(device: torch.device):
    """Context making ``device`` current (the bindings launch on the current device)."""
    return torch.cuda.device(device)


def stream(device: torch.device) -> int:
    """The ``cudaStream_t`` of torch's current stream on ``device``, as an integer."""
    return torch.cuda.current_stream(device).cuda_stream
