// Kernel entry points of the quant family (ops block_quantize, block_dequantize,
// block_dequantize_into, gguf_quantize, gguf_dequantize, gguf_dequantize_into in
// linalg_core/_ops.py): blockwise codebook quantization and llama.cpp's Q4_0 / Q8_0 blocks, the CPU kernels
// of csrc/cpu/quant.cpp and the CUDA launchers of csrc/cuda/quant/launch.cu, bound in
// python/bind_quant.cpp.
#pragma once
#include <math.h>

#include <cstdint>

#include "linalg_core/dtype.h"

// The GGUF codes, shared by the CPU and CUDA kernels (csrc/cpu/quant.cpp describes the format).
namespace linalg_core::gguf {

// numpy's float32 -> uint8 / int8 cast on x86-64 goes through int32 (cvttss2si) and keeps the
// low byte: NaN and |y| >= 2^31 give 0. The codes below are those bytes, as int32 in [0, 255],
// computed with int32 conversions (truncation) and selects only, so CPU loops vectorise
// (csrc/cpu/quant.cpp is built with -fno-trapping-math for that).
//
// Q4_0 code of y = x·id + 8.5 (rounded as computed): min(15, uint8(trunc(y))).
LC_HOST_DEVICE int32_t q4_code(float y) {
  const float yc = fabsf(y) < 2147483648.0f ? y : 0.0f;
  const int32_t b = static_cast<int32_t>(yc) & 0xFF;
  return b < 15 ? b : 15;
}
// Q8_0 code (the int8's bits) of y = x·id: gguf's np_roundf, sign(y)·(floor(a) + floor(2·(a −
// floor(a)))) with a = |y|: round half away from zero (a − floor(a) and its double are exact).
LC_HOST_DEVICE int32_t q8_code(float y) {
  const float yc = fabsf(y) < 2147483648.0f ? y : 0.0f;
  const float a = fabsf(yc);
  const int32_t fl = static_cast<int32_t>(a);
  const int32_t r = fl + static_cast<int32_t>(2.0f * (a - static_cast<float>(fl)));
  return static_cast<int32_t>(copysignf(static_cast<float>(r), yc)) & 0xFF;
}

// Whether an fp16 d (its bits) is zero, subnormal, infinite or NaN: the blocks check_scales
// (linalg_core/quant/formats.py) looks at.
LC_HOST_DEVICE int special_d(uint16_t h) {
  const int e = (h >> 10) & 0x1f;
  return e == 0 || e == 0x1f;
}

}  // namespace linalg_core::gguf

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
                        void* out, DType out_dt);                                                  \
  /* GGUF Q4_0 (bits 4: 18-byte blocks) / Q8_0 (bits 8: 34-byte blocks) of x (n,), n a   */       \
  /* multiple of 32, byte for byte as gguf.quants.quantize of x in float32. Returns the  */       \
  /* count of non-finite x (-1 for an unsupported dtype or bits); *special receives the  */       \
  /* count of blocks whose fp16 d is zero, subnormal or infinite.                        */       \
  int64_t gguf_quantize(const void* x, DType dt, int64_t n, int bits, uint8_t* blocks,            \
                        int64_t* special);                                                         \
  /* out (n,) = d * q of the first n weights of ceil(n / 32) blocks, cast to out_dt.     */       \
  void gguf_dequantize(const uint8_t* blocks, int bits, int64_t n, void* out, DType out_dt);
// The family's entries of the kernel table (cpu_kernels.h).
#define LC_QUANT_CPU_TABLE(X) X(block_quantize) X(block_dequantize) X(gguf_quantize) X(gguf_dequantize)

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
// GGUF Q4_0 / Q8_0 (bits 4 / 8), as the CPU kernels; bad (two zeroed int64) receives the count of
// non-finite x and the count of blocks whose fp16 d is zero, subnormal or infinite.
int gguf_quantize(const void* x, DType dt, int64_t n, int bits, uint8_t* blocks, int64_t* bad, uintptr_t stream);
int gguf_dequantize(const uint8_t* blocks, int bits, int64_t n, void* out, DType out_dt, uintptr_t stream);

}  // namespace linalg_core::cuda
