"""The ``cpu`` backend: the C++/OpenMP kernels of ``linalg_core._C`` (SIMD set chosen at run time
by CPUID), one module per op family; each registers its implementations when imported."""
