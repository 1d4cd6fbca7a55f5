// Kernel entry points of the qmatmul family (ops dgq_matmul, dgq_linear in linalg_core/_ops.py):
// the DGQ A8W4 integer product, the CPU kernels of csrc/cpu/qmatmul.cpp and the CUDA launcher of
// csrc/cuda/qmatmul/launch.cu, bound in python/bind_qmatmul.cpp.
#pragma once
#include <cstdint>

#include "linalg_core/dtype.h"

namespace linalg_core::cpu::dgq {
// The CPU paths (bits of `allowed`, and the path reported; the portable loop is always allowed)
// and the error codes the kernels return.
constexpr int kAmx = 1, kAvx512Vnni = 2, kAvxVnni = 4, kAvx2 = 8, kPortable = 16;
constexpr int kNonFinite = -1, kMinus128 = -2, kBadDtype = -3;
}  // namespace linalg_core::cpu::dgq

// CPU kernels, declared in each instruction-set namespace by cpu_kernels.h.
#define LC_QMATMUL_CPU_KERNELS                                                                    \
  /* y (M, N) int32 = x (M, K) int8 · w8ᵀ; allowed: bit set of paths (dgq::kAmx ...); the    */   \
  /* best one available runs, *path_used says which (0: M or N is 0). With xs (M,) and sc   */   \
  /* (N,), y is overwritten by the float32 float(y)·xs[m]·sc[n].                            */   \
  /* Returns 0, or dgq::kMinus128 (nothing computed).                                        */   \
  int dgq_matmul(const int8_t* x, const uint8_t* qw, const uint8_t* zeros, const int8_t* gs,       \
                 const int32_t* wsum, int32_t* y, int64_t M, int64_t N, int64_t K, int64_t group,  \
                 int allowed, const float* xs, const float* sc, int* path_used);                   \
  /* DGQLinear's forward: x (M, K) of dt (f32, f16, bf16) quantized per row (s_m =            */   \
  /* max(max|x[m, :]|, FLT_MIN) / 127, x_q = clamp(rint(x / s_m), ±127)), the integer product */   \
  /* as dgq_matmul, y (M, N) float32 = (float(acc)·s_m)·sc[n] + bias[n] (bias may be null).   */   \
  /* Returns 0, dgq::kNonFinite (x has NaN/Inf; nothing computed) or dgq::kBadDtype.          */   \
  int dgq_linear(const void* x, DType dt, const uint8_t* qw, const uint8_t* zeros,                 \
                 const int8_t* gs, const int32_t* wsum, const float* sc, const float* bias,        \
                 float* y, int64_t M, int64_t N, int64_t K, int64_t group, int allowed,            \
                 int* path_used);                                                                  \
  /* The path dgq_matmul / dgq_linear take for M rows within `allowed` (dgq::kAmx, ...).      */   \
  int dgq_path(int allowed, int64_t M);
// The family's entries of the kernel table (cpu_kernels.h).
#define LC_QMATMUL_CPU_TABLE(X) X(dgq_matmul) X(dgq_linear) X(dgq_path)

// CUDA launcher (cuda_kernels.h: device pointers, stream handle, cudaError_t result).
namespace linalg_core::cuda {

// y (M, N) int32 = x · w8ᵀ; same arguments as the CPU kernel.
int dgq_matmul(const int8_t* x, const uint8_t* qw, const uint8_t* zeros, const int8_t* gs,
               const int32_t* wsum, int32_t* y, int64_t M, int64_t N, int64_t K, int64_t group,
               uintptr_t stream);

}  // namespace linalg_core::cuda
