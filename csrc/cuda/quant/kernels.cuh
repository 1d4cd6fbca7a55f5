// Blockwise codebook quantization kernels (CUDA). Same contracts as csrc/cpu/quant.cpp:
// code = #{k : mid[k] < (x - o) * (1 / max(s, 1e-38))}, packed MSB-first (8 codes -> `bits`
// bytes), value = level[code] * s + o rounded twice (explicit __fmul_rn / __fadd_rn: no FMA).
// GGUF Q4_0 / Q8_0: one warp per block of 32 weights (lane j holds weight j), the codes of
// linalg_core/quant.h in the CPU kernels' float32 order of operations.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "linalg_core/dtype.h"
#include "linalg_core/quant.h"
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

// One warp per block of 32 weights: the warp's absmax (and for Q4_0 the first lane holding it,
// numpy's argmax), d and id, lane j's code; Q4_0 lanes j < 16 pair their code with lane j + 16's.
template <int BITS, typename T>
__global__ void gguf_quantize_kernel(const T* __restrict__ x, int64_t nb, uint8_t* __restrict__ blocks,
                                     unsigned long long* __restrict__ bad) {
  constexpr int64_t bytes = BITS == 4 ? 18 : 34;
  const int lane = threadIdx.x & 31;
  const int64_t warps = int64_t(gridDim.x) * kWarps;
  unsigned count = 0, odd = 0;
  for (int64_t b = int64_t(blockIdx.x) * kWarps + threadIdx.x / 32; b < nb; b += warps) {
    const float v = load(x + 32 * b + lane);
    count += nonfinite(v);
    float amax = fabsf(v);
    for (int s = 16; s >= 1; s >>= 1) amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, s));
    uint8_t* dst = blocks + bytes * b;
    float d;
    uint8_t q;
    if constexpr (BITS == 4) {
      const unsigned at = __ballot_sync(0xffffffffu, fabsf(v) == amax);
      const float m = __shfl_sync(0xffffffffu, v, at ? __ffs(at) - 1 : 0);
      d = __fdiv_rn(m, -8.0f);
      const float id = d == 0.0f ? 0.0f : __fdiv_rn(1.0f, d);
      q = gguf::q4_code(__fadd_rn(__fmul_rn(v, id), 8.5f));
      const unsigned hi = __shfl_down_sync(0xffffffffu, unsigned(q), 16);
      if (lane < 16) dst[2 + lane] = uint8_t(q | (hi << 4));
    } else {
      d = __fdiv_rn(amax, 127.0f);
      const float id = d == 0.0f ? 0.0f : __fdiv_rn(1.0f, d);
      q = gguf::q8_code(__fmul_rn(v, id));
      dst[2 + lane] = q;
    }
    const uint16_t dh = float_to_half(d);
    if (lane < 2) dst[lane] = uint8_t(dh >> (8 * lane));  // little-endian fp16
    odd += lane == 0 && gguf::special_d(dh);
  }
  for (int s = 16; s >= 1; s >>= 1) count += __shfl_xor_sync(0xffffffffu, count, s);
  if (lane == 0 && count) atomicAdd(bad, static_cast<unsigned long long>(count));
  if (lane == 0 && odd) atomicAdd(bad + 1, static_cast<unsigned long long>(odd));
}

// One thread per weight: d (the block's first two bytes) times its code, in float32.
template <int BITS, typename Out>
__global__ void gguf_dequantize_kernel(const uint8_t* __restrict__ blocks, int64_t n, Out* __restrict__ out) {
  constexpr int64_t bytes = BITS == 4 ? 18 : 34;
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    const uint8_t* src = blocks + bytes * (i / 32);
    const int j = int(i % 32);
    const float d = half_to_float(uint16_t(src[0] | (src[1] << 8)));
    int q;
    if constexpr (BITS == 4) q = ((j < 16 ? src[2 + j] & 15 : src[2 + j - 16] >> 4)) - 8;
    else q = int8_t(src[2 + j]);
    Storage<Out>::store(out + i, __fmul_rn(d, float(q)));
  }
}

}  // namespace linalg_core::cuda::quant
