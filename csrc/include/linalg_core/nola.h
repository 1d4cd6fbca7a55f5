// Kernel entry points of the nola family (ops nola_combine, nola_coeff_grad in
// linalg_core/_ops.py): linear combinations of seeded random bases that are regenerated, never
// stored (NOLA, Koohpayegani et al., ICLR 2024). Basis Z_i (i < k) of a (rows, cols) matrix is
// Z_i[r, c] = standard normal number r * cols + c of the Philox stream stream_base + i
// (philox.h; the normals of random_fill). CPU kernels in csrc/cpu/nola.cpp, CUDA launchers in
// csrc/cuda/nola/launch.cu, bound in python/bind_nola.cpp.
#pragma once
#include <cstdint>

#include "linalg_core/dtype.h"

// CPU kernels, declared in each instruction-set namespace by cpu_kernels.h. dt: f32 or f64
// (coefficients, gradient and result share it); stream_base + k - 1 must not wrap 2^64.
#define LC_NOLA_CPU_KERNELS                                                                       \
  /* out (rows, cols) = scale * sum_{i < k} coeffs[i] * Z_i.                               */     \
  void nola_combine(const void* coeffs, void* out, DType dt, int64_t k, int64_t rows, int64_t cols, \
                    uint64_t stream_base, uint64_t seed, double scale);                           \
  /* out[i] = scale * <Z_i, grad>, i < k (the adjoint of nola_combine).                    */     \
  void nola_coeff_grad(const void* grad, void* out, DType dt, int64_t k, int64_t rows, int64_t cols, \
                       uint64_t stream_base, uint64_t seed, double scale);
// The family's entries of the kernel table (cpu_kernels.h).
#define LC_NOLA_CPU_TABLE(X) X(nola_combine) X(nola_coeff_grad)

// CUDA launchers (cuda_kernels.h: device pointers, stream handle, cudaError_t result).
namespace linalg_core::cuda {

int nola_combine(const void* coeffs, void* out, DType dt, int64_t k, int64_t rows, int64_t cols,
                 uint64_t stream_base, uint64_t seed, double scale, uintptr_t stream);
int nola_coeff_grad(const void* grad, void* out, DType dt, int64_t k, int64_t rows, int64_t cols,
                    uint64_t stream_base, uint64_t seed, double scale, uintptr_t stream);

}  // namespace linalg_core::cuda
