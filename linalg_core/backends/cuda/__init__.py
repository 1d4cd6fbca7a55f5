"""The ``cuda`` backend: the CUDA kernels compiled into ``linalg_core._C`` when nvcc was found at
build time (csrc/cuda/<family>/), one module per op family. Every launch runs on the current torch
stream of the tensor's device (so it is ordered with torch's work and can be captured in a CUDA
graph)."""
