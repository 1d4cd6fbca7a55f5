// Kernel entry points of the sampling family (ops weighted_gram, row_quadratic_forms in
// linalg_core/_ops.py): the row-wise CPU kernels of csrc/cpu/sampling.cpp, bound in
// python/bind_sampling.cpp. No CUDA kernel: on CUDA tensors the Gram products run on torch's
// GEMM (the reference backend).
#pragma once
#include <cstdint>

#include "linalg_core/dtype.h"

// CPU kernels, declared in each instruction-set namespace by cpu_kernels.h.
#define LC_SAMPLING_CPU_KERNELS                                                                   \
  /* G (d, d) = sum_i v_i a_i a_i^T for A (n, d), v (n,); float32 or float64.              */     \
  void weighted_gram(const void* A, const void* v, void* G, DType dt, int64_t n, int64_t d);       \
  /* q (n,) = a_i^T M a_i for A (n, d) and a symmetric M (d, d); float32 or float64.       */     \
  void row_quadratic_forms(const void* A, const void* M, void* q, DType dt, int64_t n, int64_t d);
// The family's entries of the kernel table (cpu_kernels.h).
#define LC_SAMPLING_CPU_TABLE(X) X(weighted_gram) X(row_quadratic_forms)
