// Kernel entry points of the sketch family (ops fwht, fwht_into, fwht_select, sparse_hash,
// sparse_apply in linalg_core/_ops.py): the CPU kernels of csrc/cpu/sketch.cpp and the CUDA
// launchers of csrc/cuda/sketch/launch.cu, bound in python/bind_sketch.cpp. All pointers are to
// contiguous row-major data; the bindings check every size, range and alignment before the call.
#pragma once
#include <cstdint>

#include "linalg_core/dtype.h"

// CPU kernels, declared in each instruction-set namespace by cpu_kernels.h.
#define LC_SKETCH_CPU_KERNELS                                                                     \
  /* out[b, :, k] = scale * H_N * (diag(row_mult) * in[b, :, k], zero rows >= n_valid)   */       \
  /* in: (B, n_valid, K) of dtype dt, out: (B, N, K) of out_dt; row_mult may be null.    */       \
  void fwht(const void* in, void* out, DType dt, DType out_dt, int64_t B, int64_t n_valid,         \
            int64_t N, int64_t K, const int8_t* row_mult, double scale);                           \
  /* out (B, m, K) = rows `select` (m,) of the fwht above; work (B, N, K) is scratch in   */       \
  /* the compute dtype (double if dt or out_dt is f64, else float).                       */       \
  void fwht_select(const void* in, void* work, void* out, DType dt, DType out_dt, int64_t B,       \
                   int64_t n_valid, int64_t N, int64_t K, const int8_t* row_mult, double scale,    \
                   const int64_t* select, int64_t m);                                              \
  /* rows/signs (n, s) of the sparse sketch columns col0 .. col0 + n - 1 (m rows).       */       \
  void sparse_hash(int32_t* rows, int8_t* signs, int64_t n, int64_t col0, int64_t m, int64_t s,    \
                   uint64_t stream, uint64_t seed);                                                \
  /* left:  out (B, m, d) = scale * S (B, n, d)        [S is (m, n), column j = hash j]  */       \
  /* right: out (R, m)    = scale * A (R, n) S^T                                          */       \
  void sparse_apply(const void* A, void* out, DType dt, DType out_dt, bool right, int64_t B,       \
                    int64_t n, int64_t d, int64_t m, int64_t s, const int32_t* rows,               \
                    const int8_t* signs, double scale);
// The family's entries of the kernel table (cpu_kernels.h).
#define LC_SKETCH_CPU_TABLE(X) X(fwht) X(fwht_select) X(sparse_hash) X(sparse_apply)

// CUDA launchers: device pointers, `stream` a cudaStream_t passed as an integer; each returns a
// cudaError_t value (0 = success) that the binding raises (cuda_kernels.h). Same contracts as the
// CPU kernels.
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

}  // namespace linalg_core::cuda
