// Philox stream kernels (see linalg_core/philox.h for the stream definitions). Each thread
// computes one Philox block and writes the (up to) 4 consecutive stream elements it yields.
#pragma once
#include <cstdint>

#include "linalg_core/philox.h"

namespace linalg_core::cuda::random {

// Box-Muller of normal_from_pair<float> (philox.h), except that for u1 = (wa + 1) / 2^32 > 1/2
// the logarithm is taken as log1p of the exact complement -(~wa) / 2^32: float(wa) carries an
// absolute error of up to 2^-25 there, which the naive formula turns into relative errors of
// order 2^-25 / r^2 for small radii (up to 2.4e-4 absolute). Same formula as the CPU kernel's
// float path (csrc/cpu/random.cpp), so float results agree with the double definition to float
// rounding. (theta: 2pi * (wb * 2^-32) == (2pi * 2^-32) * wb exactly, the scalings being exact.)
__device__ __forceinline__ float normal_from_pair_f32(uint32_t wa, uint32_t wb, bool sine) {
  const float two_m32 = 2.3283064365386963e-10f;
  const float u1 = (static_cast<float>(wa) + 1.0f) * two_m32;
  const float lg = u1 > 0.5f ? log1pf(-static_cast<float>(~wa) * two_m32) : logf(u1);
  const float theta = 6.283185307179586f * (static_cast<float>(wb) * two_m32);
  const float r = sqrtf(-2.0f * lg);
  return r * (sine ? sinf(theta) : cosf(theta));
}

__device__ __forceinline__ float mul_rn(float a, float b) { return __fmul_rn(a, b); }
__device__ __forceinline__ double mul_rn(double a, double b) { return __dmul_rn(a, b); }

template <typename T>
__device__ __forceinline__ T normal_of(const Philox4x32& b, uint32_t lane);

template <>
__device__ __forceinline__ float normal_of<float>(const Philox4x32& b, uint32_t lane) {
  const uint32_t pair = lane & 2u;
  return normal_from_pair_f32(b.v[pair], b.v[pair + 1], (lane & 1u) != 0);
}

template <>
__device__ __forceinline__ double normal_of<double>(const Philox4x32& b, uint32_t lane) {
  // Exactly philox_normal<double> given the block.
  const uint32_t pair = lane & 2u;
  return normal_from_pair<double>(b.v[pair], b.v[pair + 1], (lane & 1u) != 0);
}

// out[i] = word offset + i (mod 2^64), i < count. Thread t owns the indices i in
// [4t - phase, 4t - phase + 4), phase = offset & 3: the four words of Philox block
// ((offset >> 2) + t) mod 2^62 (wrap-around mod 2^64 keeps the four in one block).
__global__ void random_uint32_kernel(uint32_t* __restrict__ out, int64_t count, uint64_t offset,
                                     uint64_t stream, uint64_t seed, int64_t ngroups) {
  const int64_t phase = static_cast<int64_t>(offset & 3u);
  const uint64_t block0 = offset >> 2;
  for (int64_t t = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; t < ngroups;
       t += int64_t(gridDim.x) * blockDim.x) {
    // Block of the stream index offset + i (mod 2^64), i.e. (block0 + t) mod 2^62.
    const uint64_t block = (block0 + uint64_t(t)) & ((uint64_t(1) << 62) - 1);
    const Philox4x32 b = philox4x32_10(block, stream, seed);
#pragma unroll
    for (int k = 0; k < 4; ++k) {
      const int64_t i = 4 * t + k - phase;
      if (i >= 0 && i < count) out[i] = b.v[k];
    }
  }
}

// out[i * ncols + j] = T(scale) * X(e), e = (row0 + i) * ld + col0 + j (mod 2^64), X computed
// in T (as the CPU kernel: float normals for float outputs). Thread t owns
// row i = t / groups_per_row and the 4-aligned group g of stream indices e in
// [e_row - phase + 4g, e_row - phase + 4g + 4), e_row = e of (i, 0), phase = e_row & 3: one
// Philox block for normals; for signs one word (bits e % 32 of word e / 32, and the 4 indices
// of a group share the word).
template <typename T, bool kSign>
__global__ void random_fill_kernel(T* __restrict__ out, int64_t nrows, int64_t ncols, int64_t ld,
                                   int64_t row0, int64_t col0, uint64_t stream, uint64_t seed,
                                   double scale, int64_t groups_per_row) {
  const int64_t total = nrows * groups_per_row;
  for (int64_t t = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; t < total;
       t += int64_t(gridDim.x) * blockDim.x) {
    const int64_t i = t / groups_per_row, g = t - i * groups_per_row;
    const uint64_t e_row = (uint64_t(row0) + uint64_t(i)) * uint64_t(ld) + uint64_t(col0);
    const int64_t phase = static_cast<int64_t>(e_row & 3u);
    const uint64_t e0 = e_row - uint64_t(phase) + 4u * uint64_t(g);  // multiple of 4
    const int64_t j0 = 4 * g - phase;                                // column of e0
    T* o = out + i * ncols;
    if constexpr (kSign) {
      // philox_word(e0 >> 5), with the lane selected without a local-memory array.
      const uint64_t word = e0 >> 5;
      const Philox4x32 b = philox4x32_10(word >> 2, stream, seed);
      const uint32_t lane = static_cast<uint32_t>(word & 3u);
      const uint32_t w = lane == 0 ? b.v[0] : lane == 1 ? b.v[1] : lane == 2 ? b.v[2] : b.v[3];
#pragma unroll
      for (int k = 0; k < 4; ++k) {
        const int64_t j = j0 + k;
        if (j >= 0 && j < ncols) {
          const uint64_t e = e0 + uint64_t(k);
          const T sc = static_cast<T>(scale);
          o[j] = ((w >> (e & 31u)) & 1u) ? -sc : sc;  // scale * philox_sign(e)
        }
      }
    } else {
      const Philox4x32 b = philox4x32_10(e0 >> 2, stream, seed);
#pragma unroll
      for (int k = 0; k < 4; ++k) {
        const int64_t j = j0 + k;
        if (j >= 0 && j < ncols) {
          o[j] = mul_rn(static_cast<T>(scale), normal_of<T>(b, uint32_t(k)));  // as the CPU: T(scale) * z
        }
      }
    }
  }
}

}  // namespace linalg_core::cuda::random
