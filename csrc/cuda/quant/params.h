// Launch parameters of the blockwise quantization kernels (csrc/cuda/quant/kernels.cuh, launched
// by launch.cu): block_quantize gives each quantization block one warp, block_dequantize each
// group of 8 codes one thread.
#pragma once
#include <cstdint>

namespace linalg_core::cuda::quant {

constexpr int kWarps = 4;                         // block_quantize: quantization blocks per thread block
constexpr int kMaxMid = 255;                      // midpoints of the largest codebook (8 bits)
constexpr int kThreads = 256;                     // block_dequantize: threads per block
constexpr int64_t kMaxBlocks = int64_t(1) << 20;  // grid-stride loops beyond this

}  // namespace linalg_core::cuda::quant
