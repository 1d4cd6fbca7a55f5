// Launcher of the DGQ A8W4 kernel (linalg_core/qmatmul.h).
#include <cuda_runtime.h>

#include <cstdint>

#include "kernels.cuh"
#include "linalg_core/qmatmul.h"
#include "params.h"

namespace linalg_core::cuda {

int dgq_matmul(const int8_t* x, const uint8_t* qw, const uint8_t* zeros, const int8_t* gs, const int32_t* /*wsum*/,
               int32_t* y, int64_t M, int64_t N, int64_t K, int64_t group, uintptr_t stream) {
  if (M < 0 || N < 0 || K % qmatmul::kBlock || group % qmatmul::kBlock || K % group) return cudaErrorInvalidValue;
  if (M == 0 || N == 0) return cudaSuccess;
  const dim3 grid(static_cast<unsigned>((N + qmatmul::kWarps - 1) / qmatmul::kWarps),
                  static_cast<unsigned>((M + qmatmul::kRows - 1) / qmatmul::kRows));
  qmatmul::dgq_matmul_kernel<<<grid, 32 * qmatmul::kWarps, 0, reinterpret_cast<cudaStream_t>(stream)>>>(
      x, qw, zeros, gs, y, M, N, K, group);
  return cudaGetLastError();
}

}  // namespace linalg_core::cuda
