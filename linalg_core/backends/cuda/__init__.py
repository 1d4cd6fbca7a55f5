"""The ``cuda`` backend: the CUDA kernels compiled into ``linalg_core._C`` when nvcc was found
at build time (csrc/cuda/). Same argument marshalling as the ``cpu`` backend, plus the current
torch stream of the tensor's device."""

from linalg_core.backends.cpu import Launch, register

register("cuda", Launch("cuda"), ["cuda"])
