// DGQ A8W4 integer product on CUDA: y[m, n] = Σ_k x[m, k]·w8[n, k], w8 = s_int·(q − z), the INT4
// codes expanded to INT8 in registers and fed to dp4a (four int8 products summed into an int32
// per instruction). One warp per output channel: each lane expands 4 consecutive weights (two
// packed bytes) of a 128-weight block into one 32-bit word; the block's rows of x are staged in
// shared memory and shared by the 8 warps (channels) of the thread block.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "params.h"

namespace linalg_core::cuda::qmatmul {

__device__ __forceinline__ int pack4(int a, int b, int c, int d) {
  return int((uint32_t(a) & 0xffu) | ((uint32_t(b) & 0xffu) << 8) | ((uint32_t(c) & 0xffu) << 16) |
             ((uint32_t(d) & 0xffu) << 24));
}

__global__ void dgq_matmul_kernel(const int8_t* __restrict__ x, const uint8_t* __restrict__ qw,
                                  const uint8_t* __restrict__ zeros, const int8_t* __restrict__ gs,
                                  int32_t* __restrict__ y, int64_t M, int64_t N, int64_t K, int64_t group) {
  __shared__ int32_t xs[kRows][kBlock / 4];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int64_t n = int64_t(blockIdx.x) * kWarps + warp;
  const int64_t m0 = int64_t(blockIdx.y) * kRows;
  const int64_t G = K / group;
  int32_t acc[kRows];
#pragma unroll
  for (int i = 0; i < kRows; ++i) acc[i] = 0;
  for (int64_t k0 = 0; k0 < K; k0 += kBlock) {
    __syncthreads();
    for (int t = threadIdx.x; t < kRows * kBlock / 4; t += blockDim.x) {
      const int r = t / (kBlock / 4), c = t % (kBlock / 4);
      const int64_t m = m0 + r;
      xs[r][c] = m < M ? *reinterpret_cast<const int32_t*>(x + m * K + k0 + 4 * c) : 0;
    }
    __syncthreads();
    if (n < N) {
      const int64_t g = k0 / group;
      const int z = zeros[n * G + g], s = gs[n * G + g];
      const uint8_t* p = qw + n * (K / 2) + k0 / 2 + 2 * lane;  // k0 + 4 lane .. + 3
      const uint8_t b0 = p[0], b1 = p[1];
      const int w = pack4(s * ((b0 >> 4) - z), s * ((b0 & 15) - z), s * ((b1 >> 4) - z), s * ((b1 & 15) - z));
#pragma unroll
      for (int i = 0; i < kRows; ++i) acc[i] = __dp4a(xs[i][lane], w, acc[i]);
    }
  }
  if (n >= N) return;
#pragma unroll
  for (int i = 0; i < kRows; ++i) {
    int v = acc[i];
    for (int d = 16; d >= 1; d >>= 1) v += __shfl_xor_sync(0xffffffffu, v, d);
    if (lane == 0 && m0 + i < M) y[(m0 + i) * N + n] = v;
  }
}

}  // namespace linalg_core::cuda::qmatmul
