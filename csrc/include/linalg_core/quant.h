// Kernel entry points of the quant family (ops block_quantize, block_dequantize,
// block_dequantize_into in linalg_core/_ops.py): blockwise codebook quantization, the CPU kernels
// of csrc/cpu/quant.cpp and the CUDA launchers of csrc/cuda/quant/launch.cu, bound in
// python/bind_quant.cpp.
#pragma once
#include <cstdint>

#include "linalg_core/dtype.h"

// CPU kernels, declared in each instruction-set namespace by cpu_kernels.h.
#define LC_QUANT_CPU_KERNELS                                                                      \
  /* Packed codes of x (n,) against the 2^bits - 1 sorted midpoints `mid`; scales_in     */       \
  /* null -> absmax per block into scales_out. Returns the count of non-finite x (-1 for  */       \
  /* an unsupported dtype).                                                              */       \
  int64_t block_quantize(const void* x, DType dt, int64_t n, int64_t block, const float* mid,      \
                         int bits, const float* scales_in, const float* offsets,                   \
                         float* scales_out, uint8_t* packed);                                      \
  /* out (n,) = levels[code] * scale[block] + offset[block] (offsets may be null).        */      \
  void block_dequantize(const uint8_t* packed, int bits, const float* levels,                      \
                        const float* scales, const float* offsets, int64_t n, int64_t block,       \
                        void* out, DType out_dt);
// The family's entries of the kernel table (cpu_kernels.h).
#define LC_QUANT_CPU_TABLE(X) X(block_quantize) X(block_dequantize)

// CUDA launchers (cuda_kernels.h: device pointers, stream handle, cudaError_t result).
namespace linalg_core::cuda {

// *bad (a zeroed int64) receives the count of non-finite x; bits == 0 computes only the absmax
// scales.
int block_quantize(const void* x, DType dt, int64_t n, int64_t block, const float* mid, int bits,
                   const float* scales_in, const float* offsets, float* scales_out, uint8_t* packed,
                   int64_t* bad, uintptr_t stream);
int block_dequantize(const uint8_t* packed, int bits, const float* levels, const float* scales,
                     const float* offsets, int64_t n, int64_t block, void* out, DType out_dt,
                     uintptr_t stream);

}  // namespace linalg_core::cuda
