// Blockwise codebook quantization kernels (CUDA). Same contracts as csrc/cpu/quant.cpp:
// code = #{k : mid[k] < (x - o) * (1 / max(s, 1e-38))}, packed MSB-first (8 codes -> `bits`
// bytes), value = level[code] * s + o rounded twice (explicit __fmul_rn / __fadd_rn: no FMA).
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "linalg_core/dtype.h"
#include "params.h"

namespace linalg_core::cuda::quant {

template <typename T>
__device__ __forceinline__ float load(const T* p) { return Storage<T>::load(p); }

__device__ __forceinline__ bool nonfinite(float v) { return (float_to_bits(v) & 0x7f800000u) == 0x7f800000u; }

// Number of midpoints below v: compare-and-count for <= 15 midpoints, binary search for 255.
__device__ __forceinline__ int code_of(float v, const float* mid, int nm) {
  if (nm <= 15) {
    int c = 0;
    for (int k = 0; k < nm; ++k) c += v > mid[k];
    return c;
  }
  int idx = 0;
  for (int step = (nm + 1) / 2; step >= 1; step >>= 1) idx += (v > mid[idx + step - 1]) ? step : 0;
  return idx;
}

// One warp per quantization block: the block's absmax (unless scales_in), then each lane codes
// groups of 8 consecutive elements and writes their `bits` bytes.
template <typename T>
__global__ void block_quantize_kernel(const T* __restrict__ x, int64_t n, int64_t block, const float* __restrict__ mid,
                                      int bits, const float* __restrict__ scales_in, const float* __restrict__ offsets,
                                      float* __restrict__ scales_out, uint8_t* __restrict__ packed,
                                      unsigned long long* __restrict__ bad, int64_t nb) {
  __shared__ float smid[kMaxMid];
  const int nm = bits == 0 ? 0 : (1 << bits) - 1;
  for (int k = threadIdx.x; k < nm; k += blockDim.x) smid[k] = mid[k];
  __syncthreads();
  const int lane = threadIdx.x & 31;
  const int64_t warps = int64_t(gridDim.x) * kWarps;
  for (int64_t b = int64_t(blockIdx.x) * kWarps + threadIdx.x / 32; b < nb; b += warps) {
    const int64_t lo = b * block, hi = min(n, lo + block);
    float s;
    unsigned count = 0;
    if (scales_in) {
      s = scales_in[b];
    } else {
      s = 0.0f;
      for (int64_t i = lo + lane; i < hi; i += 32) s = fmaxf(s, fabsf(load(x + i)));
      for (int d = 16; d >= 1; d >>= 1) s = fmaxf(s, __shfl_xor_sync(0xffffffffu, s, d));
      if (lane == 0) scales_out[b] = s;
    }
    if (bits == 0) {
      for (int64_t i = lo + lane; i < hi; i += 32) count += nonfinite(load(x + i));
    } else {
      const float inv = __fdiv_rn(1.0f, fmaxf(s, 1e-38f));
      const float o = offsets ? offsets[b] : 0.0f;
      for (int64_t g = lo + 8 * lane; g < hi; g += 8 * 32) {
        const int k = int(min(int64_t(8), hi - g));
        uint64_t acc = 0;
        for (int j = 0; j < 8; ++j) {
          int c = 0;
          if (j < k) {
            const float xi = load(x + g + j);
            count += nonfinite(xi);
            c = code_of(__fmul_rn(__fsub_rn(xi, o), inv), smid, nm);
          }
          acc = (acc << bits) | uint64_t(c);
        }
        uint8_t* dst = packed + g / 8 * bits;
        const int nbytes = (k * bits + 7) / 8;
        for (int t = 0; t < nbytes; ++t) dst[t] = uint8_t(acc >> (8 * (bits - 1 - t)));
      }
    }
    for (int d = 16; d >= 1; d >>= 1) count += __shfl_xor_sync(0xffffffffu, count, d);
    if (lane == 0 && count) atomicAdd(bad, static_cast<unsigned long long>(count));
  }
}

// One thread per group of 8 codes (a group never straddles two blocks: block % 8 == 0).
template <typename Out>
__global__ void block_dequantize_kernel(const uint8_t* __restrict__ packed, int bits, const float* __restrict__ levels,
                                        const float* __restrict__ scales, const float* __restrict__ offsets, int64_t n,
                                        int64_t block, Out* __restrict__ out) {
  __shared__ float lv[256];
  for (int k = threadIdx.x; k < (1 << bits); k += blockDim.x) lv[k] = levels[k];
  __syncthreads();
  const int64_t groups = (n + 7) / 8, stride = int64_t(gridDim.x) * blockDim.x;
  const uint64_t mask = (uint64_t(1) << bits) - 1;
  for (int64_t g = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; g < groups; g += stride) {
    const int64_t i0 = 8 * g, b = i0 / block;
    const int k = int(min(int64_t(8), n - i0)), nbytes = (k * bits + 7) / 8;
    const uint8_t* src = packed + g * bits;
    uint64_t acc = 0;
    for (int t = 0; t < bits; ++t) acc = (acc << 8) | uint64_t(t < nbytes ? src[t] : 0u);
    // -0.0f is the exact identity of the add (x + -0 == x also for x = -0), as the reference's skipped add.
    const float s = scales[b], o = offsets ? offsets[b] : -0.0f;
    for (int j = 0; j < k; ++j) {
      const int c = int((acc >> ((7 - j) * bits)) & mask);
      Storage<Out>::store(out + i0 + j, __fadd_rn(__fmul_rn(lv[c], s), o));
    }
  }
}

}  // namespace linalg_core::cuda::quant
