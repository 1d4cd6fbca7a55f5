// NOLA kernels (linalg_core/nola.h): random-basis combinations and their adjoint, the bases
// regenerated from Philox (philox.h) in registers and never stored. Normals as random_fill's CUDA
// kernel (csrc/cuda/random/kernels.cuh: float normals for float outputs, double for double), so
// the bases equal random.normal's values to rounding. Both kernels are deterministic: each sum
// runs in a fixed order whatever the launch configuration.
#pragma once
#include <cstdint>

#include "linalg_core/philox.h"
#include "params.h"

namespace linalg_core::cuda::nola {

// The normals of random_fill's CUDA kernel (csrc/cuda/random/kernels.cuh, whose kernels cannot be
// included in a second translation unit): float Box-Muller with the exact complement for
// u1 > 1/2 in float, philox.h's definition in double.
__device__ __forceinline__ float normal_from_pair_f32(uint32_t wa, uint32_t wb, bool sine) {
  const float two_m32 = 2.3283064365386963e-10f;
  const float u1 = (static_cast<float>(wa) + 1.0f) * two_m32;
  const float lg = u1 > 0.5f ? log1pf(-static_cast<float>(~wa) * two_m32) : logf(u1);
  const float theta = 6.283185307179586f * (static_cast<float>(wb) * two_m32);
  const float r = sqrtf(-2.0f * lg);
  return r * (sine ? sinf(theta) : cosf(theta));
}

template <typename T>
__device__ __forceinline__ T normal_of(const Philox4x32& b, uint32_t lane) {
  const uint32_t pair = lane & 2u;
  if constexpr (sizeof(T) == 4) return normal_from_pair_f32(b.v[pair], b.v[pair + 1], (lane & 1u) != 0);
  else return normal_from_pair<double>(b.v[pair], b.v[pair + 1], (lane & 1u) != 0);
}

// out[e] = scale * sum_{i < k} coeffs[i] * Z_i(e), e < n. Thread t owns elements 4t .. 4t + 3
// (one Philox block of every stream) and keeps their four sums in registers.
template <typename T>
__global__ void combine_kernel(const T* __restrict__ coeffs, T* __restrict__ out, int64_t k, int64_t n,
                               uint64_t stream_base, uint64_t seed, double scale) {
  const int64_t groups = (n + 3) / 4;
  for (int64_t t = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; t < groups;
       t += int64_t(gridDim.x) * blockDim.x) {
    T acc[4] = {T(0), T(0), T(0), T(0)};
    for (int64_t i = 0; i < k; ++i) {
      const Philox4x32 b = philox4x32_10(uint64_t(t), stream_base + uint64_t(i), seed);
      const T c = coeffs[i];
#pragma unroll
      for (int lane = 0; lane < 4; ++lane) acc[lane] += c * normal_of<T>(b, uint32_t(lane));
    }
#pragma unroll
    for (int lane = 0; lane < 4; ++lane) {
      const int64_t e = 4 * t + lane;
      if (e < n) out[e] = static_cast<T>(scale) * acc[lane];
    }
  }
}

// out[i] = scale * sum_e grad[e] * Z_i(e): CUDA block b takes bases b, b + gridDim.x, ...; its
// threads stride over the Philox blocks, accumulate in double and reduce in shared memory (a
// fixed tree: the same bits for every run).
template <typename T>
__global__ void coeff_grad_kernel(const T* __restrict__ grad, T* __restrict__ out, int64_t k, int64_t n,
                                  uint64_t stream_base, uint64_t seed, double scale) {
  __shared__ double sums[kGradThreads];
  const int64_t groups = (n + 3) / 4;
  for (int64_t i = blockIdx.x; i < k; i += gridDim.x) {
    double s = 0.0;
    for (int64_t t = threadIdx.x; t < groups; t += blockDim.x) {
      const Philox4x32 b = philox4x32_10(uint64_t(t), stream_base + uint64_t(i), seed);
#pragma unroll
      for (int lane = 0; lane < 4; ++lane) {
        const int64_t e = 4 * t + lane;
        if (e < n) s += double(grad[e]) * double(normal_of<T>(b, uint32_t(lane)));
      }
    }
    sums[threadIdx.x] = s;
    __syncthreads();
    for (int half = kGradThreads / 2; half > 0; half >>= 1) {
      if (int(threadIdx.x) < half) sums[threadIdx.x] += sums[threadIdx.x + half];
      __syncthreads();
    }
    if (threadIdx.x == 0) out[i] = static_cast<T>(scale * sums[0]);
    __syncthreads();
  }
}

}  // namespace linalg_core::cuda::nola
