// CUDA launchers (csrc/cuda/<family>/launch.cu): host functions callable from plain C++.
// Without nvcc the build compiles csrc/cuda/not_built.cpp instead, whose functions all return
// kNotBuilt (and device_count() 0), so the bindings need no #ifdefs. Pointers are device
// pointers, `stream` is a cudaStream_t passed as an integer, and each returns a cudaError_t
// value (0 = success) that the binding turns into a Python exception. Same contracts as the
// CPU kernels in cpu_kernels.h.
#pragma once
#include <cstdint>

#include "linalg_core/dtype.h"

namespace linalg_core::cuda {

// Bytes of device workspace fwht() needs (0 when none): low-precision outputs of transforms
// too long for one thread block are accumulated in a compute-precision buffer.
int64_t fwht_workspace_bytes(DType out_dt, int64_t B, int64_t N, int64_t K);
int fwht(const void* in, void* out, DType dt, DType out_dt, int64_t B, int64_t n_valid, int64_t N,
         int64_t K, const int8_t* row_mult, double scale, void* workspace, uintptr_t stream);
int sparse_hash(int32_t* rows, int8_t* signs, int64_t n, int64_t col0, int64_t m, int64_t s,
                uint64_t stream_id, uint64_t seed, uintptr_t stream);
// out must be f32 or f64; it is zeroed here and accumulated with atomics.
int sparse_apply(const void* A, void* out, DType dt, DType out_dt, bool right, int64_t B, int64_t n,
                 int64_t d, int64_t m, int64_t s, const int32_t* rows, const int8_t* signs,
                 double scale, uintptr_t stream);
int random_uint32(uint32_t* out, int64_t count, uint64_t offset, uint64_t stream_id, uint64_t seed,
                  uintptr_t stream);
int random_fill(void* out, DType dt, bool sign, int64_t nrows, int64_t ncols, int64_t ld,
                int64_t row0, int64_t col0, uint64_t stream_id, uint64_t seed, double scale,
                uintptr_t stream);
// Blockwise codebook quantization (csrc/cuda/quant/): *bad (a zeroed int64) receives the count of
// non-finite x; bits == 0 computes only the absmax scales.
int block_quantize(const void* x, DType dt, int64_t n, int64_t block, const float* mid, int bits,
                   const float* scales_in, const float* offsets, float* scales_out, uint8_t* packed,
                   int64_t* bad, uintptr_t stream);
int block_dequantize(const uint8_t* packed, int bits, const float* levels, const float* scales,
                     const float* offsets, int64_t n, int64_t block, void* out, DType out_dt,
                     uintptr_t stream);
// DGQ A8W4 (csrc/cuda/qmatmul/): y (M, N) int32 = x · w8ᵀ; same arguments as the CPU kernel.
int dgq_matmul(const int8_t* x, const uint8_t* qw, const uint8_t* zeros, const int8_t* gs, const int32_t* wsum,
               int32_t* y, int64_t M, int64_t N, int64_t K, int64_t group, uintptr_t stream);

constexpr int kNotBuilt = -1;
bool built();
const char* architectures();  // CUDA_ARCHITECTURES of the build, "" without CUDA
const char* error_string(int code);
// Number of visible devices; 0 when there is no driver or device (never throws).
int device_count();
int runtime_version();

}  // namespace linalg_core::cuda
