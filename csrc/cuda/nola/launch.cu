// Launchers of the NOLA kernels (linalg_core/nola.h). Same bases as csrc/cpu/nola.cpp: results
// equal the CPU kernels' to float rounding.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include "kernels.cuh"
#include "linalg_core/nola.h"
#include "params.h"

namespace linalg_core::cuda {

int nola_combine(const void* coeffs, void* out, DType dt, int64_t k, int64_t rows, int64_t cols,
                 uint64_t stream_base, uint64_t seed, double scale, uintptr_t stream) {
  if (dt != DType::f32 && dt != DType::f64) return cudaErrorInvalidValue;
  if (k < 1 || rows < 0 || cols < 0) return cudaErrorInvalidValue;
  const int64_t n = rows * cols;
  if (n == 0) return cudaSuccess;
  const int64_t groups = (n + 3) / 4;
  const unsigned grid = static_cast<unsigned>(
      std::min<int64_t>((groups + nola::kCombineThreads - 1) / nola::kCombineThreads, nola::kMaxBlocks));
  const cudaStream_t st = reinterpret_cast<cudaStream_t>(stream);
  if (dt == DType::f64)
    nola::combine_kernel<double><<<grid, nola::kCombineThreads, 0, st>>>(
        static_cast<const double*>(coeffs), static_cast<double*>(out), k, n, stream_base, seed, scale);
  else
    nola::combine_kernel<float><<<grid, nola::kCombineThreads, 0, st>>>(
        static_cast<const float*>(coeffs), static_cast<float*>(out), k, n, stream_base, seed, scale);
  return cudaGetLastError();
}

int nola_coeff_grad(const void* grad, void* out, DType dt, int64_t k, int64_t rows, int64_t cols,
                    uint64_t stream_base, uint64_t seed, double scale, uintptr_t stream) {
  if (dt != DType::f32 && dt != DType::f64) return cudaErrorInvalidValue;
  if (k < 1 || rows < 0 || cols < 0) return cudaErrorInvalidValue;
  const int64_t n = rows * cols;
  const unsigned grid = static_cast<unsigned>(std::min<int64_t>(k, nola::kMaxBlocks));
  const cudaStream_t st = reinterpret_cast<cudaStream_t>(stream);
  if (dt == DType::f64)
    nola::coeff_grad_kernel<double><<<grid, nola::kGradThreads, 0, st>>>(
        static_cast<const double*>(grad), static_cast<double*>(out), k, n, stream_base, seed, scale);
  else
    nola::coeff_grad_kernel<float><<<grid, nola::kGradThreads, 0, st>>>(
        static_cast<const float*>(grad), static_cast<float*>(out), k, n, stream_base, seed, scale);
  return cudaGetLastError();
}

}  // namespace linalg_core::cuda
