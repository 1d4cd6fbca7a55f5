// Launchers of the blockwise quantization and GGUF kernels (linalg_core/quant.h).
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include "kernels.cuh"
#include "linalg_core/quant.h"
#include "params.h"

namespace linalg_core::cuda {
namespace {

using quant::kMaxBlocks;
using quant::kThreads;

inline unsigned grid_for(int64_t items, int64_t per_block) {
  return static_cast<unsigned>(std::max<int64_t>(1, std::min<int64_t>((items + per_block - 1) / per_block, kMaxBlocks)));
}

inline bool valid_bits(int bits) { return bits == 0 || bits == 1 || bits == 2 || bits == 3 || bits == 4 || bits == 8; }

}  // namespace

int block_quantize(const void* x, DType dt, int64_t n, int64_t block, const float* mid, int bits, const float* scales_in,
                   const float* offsets, float* scales_out, uint8_t* packed, int64_t* bad, uintptr_t stream) {
  if (n < 0 || block <= 0 || block % 8 || !valid_bits(bits)) return cudaErrorInvalidValue;
  if (n == 0) return cudaSuccess;
  const int64_t nb = (n + block - 1) / block;
  const unsigned grid = grid_for(nb, quant::kWarps);
  const cudaStream_t st = reinterpret_cast<cudaStream_t>(stream);
  auto* count = reinterpret_cast<unsigned long long*>(bad);
  switch (dt) {
    case DType::f32:
      quant::block_quantize_kernel<float><<<grid, 32 * quant::kWarps, 0, st>>>(
          static_cast<const float*>(x), n, block, mid, bits, scales_in, offsets, scales_out, packed, count, nb);
      break;
    case DType::f16:
      quant::block_quantize_kernel<half_bits><<<grid, 32 * quant::kWarps, 0, st>>>(
          static_cast<const half_bits*>(x), n, block, mid, bits, scales_in, offsets, scales_out, packed, count, nb);
      break;
    case DType::bf16:
      quant::block_quantize_kernel<bf16_bits><<<grid, 32 * quant::kWarps, 0, st>>>(
          static_cast<const bf16_bits*>(x), n, block, mid, bits, scales_in, offsets, scales_out, packed, count, nb);
      break;
    default:
      return cudaErrorInvalidValue;
  }
  return cudaGetLastError();
}

int block_dequantize(const uint8_t* packed, int bits, const float* levels, const float* scales, const float* offsets,
                     int64_t n, int64_t block, void* out, DType out_dt, uintptr_t stream) {
  if (n < 0 || block <= 0 || block % 8 || bits < 1 || !valid_bits(bits)) return cudaErrorInvalidValue;
  if (n == 0) return cudaSuccess;
  const unsigned grid = grid_for((n + 7) / 8, kThreads);
  const cudaStream_t st = reinterpret_cast<cudaStream_t>(stream);
  switch (out_dt) {
    case DType::f32:
      quant::block_dequantize_kernel<float><<<grid, kThreads, 0, st>>>(packed, bits, levels, scales, offsets, n, block,
                                                                       static_cast<float*>(out));
      break;
    case DType::f16:
      quant::block_dequantize_kernel<half_bits><<<grid, kThreads, 0, st>>>(packed, bits, levels, scales, offsets, n,
                                                                           block, static_cast<half_bits*>(out));
      break;
    case DType::bf16:
      quant::block_dequantize_kernel<bf16_bits><<<grid, kThreads, 0, st>>>(packed, bits, levels, scales, offsets, n,
                                                                           block, static_cast<bf16_bits*>(out));
      break;
    default:
      return cudaErrorInvalidValue;
  }
  return cudaGetLastError();
}

namespace {

template <int BITS>
void gguf_quantize_launch(const void* x, DType dt, int64_t nb, uint8_t* blocks, unsigned long long* bad,
                          cudaStream_t st) {
  const unsigned grid = grid_for(nb, quant::kWarps), threads = 32 * quant::kWarps;
  if (dt == DType::f32)
    quant::gguf_quantize_kernel<BITS><<<grid, threads, 0, st>>>(static_cast<const float*>(x), nb, blocks, bad);
  else if (dt == DType::f16)
    quant::gguf_quantize_kernel<BITS><<<grid, threads, 0, st>>>(static_cast<const half_bits*>(x), nb, blocks, bad);
  else
    quant::gguf_quantize_kernel<BITS><<<grid, threads, 0, st>>>(static_cast<const bf16_bits*>(x), nb, blocks, bad);
}

template <int BITS>
void gguf_dequantize_launch(const uint8_t* blocks, int64_t n, void* out, DType dt, cudaStream_t st) {
  const unsigned grid = grid_for(n, kThreads);
  if (dt == DType::f32)
    quant::gguf_dequantize_kernel<BITS><<<grid, kThreads, 0, st>>>(blocks, n, static_cast<float*>(out));
  else if (dt == DType::f16)
    quant::gguf_dequantize_kernel<BITS><<<grid, kThreads, 0, st>>>(blocks, n, static_cast<half_bits*>(out));
  else
    quant::gguf_dequantize_kernel<BITS><<<grid, kThreads, 0, st>>>(blocks, n, static_cast<bf16_bits*>(out));
}

inline bool gguf_dtype(DType dt) { return dt == DType::f32 || dt == DType::f16 || dt == DType::bf16; }

}  // namespace

int gguf_quantize(const void* x, DType dt, int64_t n, int bits, uint8_t* blocks, int64_t* bad, uintptr_t stream) {
  if (n < 0 || n % 32 || (bits != 4 && bits != 8) || !gguf_dtype(dt)) return cudaErrorInvalidValue;
  if (n == 0) return cudaSuccess;
  const cudaStream_t st = reinterpret_cast<cudaStream_t>(stream);
  auto* count = reinterpret_cast<unsigned long long*>(bad);
  if (bits == 4) gguf_quantize_launch<4>(x, dt, n / 32, blocks, count, st);
  else gguf_quantize_launch<8>(x, dt, n / 32, blocks, count, st);
  return cudaGetLastError();
}

int gguf_dequantize(const uint8_t* blocks, int bits, int64_t n, void* out, DType out_dt, uintptr_t stream) {
  if (n < 0 || (bits != 4 && bits != 8) || !gguf_dtype(out_dt)) return cudaErrorInvalidValue;
  if (n == 0) return cudaSuccess;
  const cudaStream_t st = reinterpret_cast<cudaStream_t>(stream);
  if (bits == 4) gguf_dequantize_launch<4>(blocks, n, out, out_dt, st);
  else gguf_dequantize_launch<8>(blocks, n, out, out_dt, st);
  return cudaGetLastError();
}

}  // namespace linalg_core::cuda
