// Kernel entry points of the random family (ops random_uint32, random_fill in
// linalg_core/_ops.py): Philox4x32-10 streams (philox.h), the CPU kernels of csrc/cpu/random.cpp
// and the CUDA launchers of csrc/cuda/random/launch.cu, bound in python/bind_random.cpp.
#pragma once
#include <cstdint>

#include "linalg_core/dtype.h"

// CPU kernels, declared in each instruction-set namespace by cpu_kernels.h.
#define LC_RANDOM_CPU_KERNELS                                                                     \
  /* out[i] = 32-bit word offset + i of the (stream, seed) Philox stream, i < count.     */       \
  void random_uint32(uint32_t* out, int64_t count, uint64_t offset, uint64_t stream,              \
                     uint64_t seed);                                                               \
  /* out[i, j] = scale * X(e) with e = (row0 + i) * ld + col0 + j, X normal or sign.     */       \
  void random_fill(void* out, DType dt, bool sign, int64_t nrows, int64_t ncols, int64_t ld,       \
                   int64_t row0, int64_t col0, uint64_t stream, uint64_t seed, double scale);
// The family's entries of the kernel table (cpu_kernels.h).
#define LC_RANDOM_CPU_TABLE(X) X(random_uint32) X(random_fill)

// CUDA launchers (cuda_kernels.h: device pointers, stream handle, cudaError_t result). Words
// bit-identical to the CPU kernels, floats equal to rounding.
namespace linalg_core::cuda {

int random_uint32(uint32_t* out, int64_t count, uint64_t offset, uint64_t stream_id, uint64_t seed,
                  uintptr_t stream);
int random_fill(void* out, DType dt, bool sign, int64_t nrows, int64_t ncols, int64_t ld,
                int64_t row0, int64_t col0, uint64_t stream_id, uint64_t seed, double scale,
                uintptr_t stream);

}  // namespace linalg_core::cuda
