// CPU kernel entry points. Each csrc/cpu/<family>.cpp is compiled once per instruction set
// (namespaces avx512, avx2, generic; see CMakeLists.txt) and csrc/cpu/dispatch.cpp picks one
// at run time from CPUID, so one build runs on any x86-64 machine (and builds on aarch64, where
// only `generic` exists). All pointers are to contiguous row-major data; the bindings
// (python/bind_*.cpp) check every size, range and alignment before the call.
#pragma once
#include <cstdint>

#include "linalg_core/dtype.h"

namespace linalg_core::cpu {

// DGQ A8W4 kernels: the paths (bits of `allowed`, and the path reported; the portable loop is
// always allowed) and the error codes they return.
namespace dgq {
constexpr int kAmx = 1, kAvx512Vnni = 2, kAvxVnni = 4, kAvx2 = 8, kPortable = 16;
constexpr int kNonFinite = -1, kMinus128 = -2, kBadDtype = -3;
}  // namespace dgq

#define LC_DECLARE_CPU_KERNELS(ISA)                                                          \
  namespace ISA {                                                                            \
  /* out[b, :, k] = scale * H_N * (diag(row_mult) * in[b, :, k], zero rows >= n_valid)   */  \
  /* in: (B, n_valid, K) of dtype dt, out: (B, N, K) of out_dt; row_mult may be null.    */  \
  void fwht(const void* in, void* out, DType dt, DType out_dt, int64_t B, int64_t n_valid,    \
            int64_t N, int64_t K, const int8_t* row_mult, double scale);                      \
  /* out (B, m, K) = rows `select` (m,) of the fwht above; work (B, N, K) is scratch in   */  \
  /* the compute dtype (double if dt or out_dt is f64, else float).                       */  \
  void fwht_select(const void* in, void* work, void* out, DType dt, DType out_dt, int64_t B,  \
                   int64_t n_valid, int64_t N, int64_t K, const int8_t* row_mult, double scale, \
                   const int64_t* select, int64_t m);                                         \
  /* rows/signs (n, s) of the sparse sketch columns col0 .. col0 + n - 1 (m rows).       */  \
  void sparse_hash(int32_t* rows, int8_t* signs, int64_t n, int64_t col0, int64_t m,          \
                   int64_t s, uint64_t stream, uint64_t seed);                                \
  /* left:  out (B, m, d) = scale * S (B, n, d)        [S is (m, n), column j = hash j]  */  \
  /* right: out (R, m)    = scale * A (R, n) S^T                                          */  \
  void sparse_apply(const void* A, void* out, DType dt, DType out_dt, bool right, int64_t B,  \
                    int64_t n, int64_t d, int64_t m, int64_t s, const int32_t* rows,          \
                    const int8_t* signs, double scale);                                       \
  void random_uint32(uint32_t* out, int64_t count, uint64_t offset, uint64_t stream,         \
                     uint64_t seed);                                                          \
  /* out[i, j] = scale * X(e) with e = (row0 + i) * ld + col0 + j, X normal or sign.     */  \
  void random_fill(void* out, DType dt, bool sign, int64_t nrows, int64_t ncols, int64_t ld,  \
                   int64_t row0, int64_t col0, uint64_t stream, uint64_t seed, double scale); \
  /* out (n,) of out_dt = in (n,) of dt rounded to nearest even; returns the count of    */  \
  /* non-finite inputs (NaN/Inf are converted, not dropped). out == nullptr: count only. */  \
  int64_t convert(const void* in, void* out, DType dt, DType out_dt, int64_t n);              \
  /* G (d, d) = sum_i v_i a_i a_i^T for A (n, d), v (n,); float32 or float64.              */  \
  void weighted_gram(const void* A, const void* v, void* G, DType dt, int64_t n, int64_t d);  \
  /* q (n,) = a_i^T M a_i for A (n, d) and a symmetric M (d, d); float32 or float64.       */  \
  void row_quadratic_forms(const void* A, const void* M, void* q, DType dt, int64_t n,        \
                           int64_t d);                                                        \
  /* Blockwise codebook quantization (csrc/cpu/quant.cpp): packed codes of x (n,) against  */  \
  /* the 2^bits - 1 sorted midpoints `mid`; scales_in null -> absmax per block into        */  \
  /* scales_out. Returns the count of non-finite x (-1 for an unsupported dtype).          */  \
  int64_t block_quantize(const void* x, DType dt, int64_t n, int64_t block, const float* mid, \
                         int bits, const float* scales_in, const float* offsets,              \
                         float* scales_out, uint8_t* packed);                                 \
  /* out (n,) = levels[code] * scale[block] + offset[block] (offsets may be null).        */  \
  void block_dequantize(const uint8_t* packed, int bits, const float* levels,                 \
                        const float* scales, const float* offsets, int64_t n, int64_t block,  \
                        void* out, DType out_dt);                                             \
  /* DGQ A8W4: y (M, N) int32 = x (M, K) int8 · w8ᵀ (csrc/cpu/qmatmul.cpp); allowed: bit set   */  \
  /* of paths (dgq::kAmx ...); the best one available runs, *path_used says which (0: M or N  */  \
  /* is 0). With xs (M,) and sc (N,), y is overwritten by the float32 float(y)·xs[m]·sc[n].     */  \
  /* Returns 0, or dgq::kMinus128 (nothing computed).                                           */  \
  int dgq_matmul(const int8_t* x, const uint8_t* qw, const uint8_t* zeros, const int8_t* gs,   \
                 const int32_t* wsum, int32_t* y, int64_t M, int64_t N, int64_t K,             \
                 int64_t group, int allowed, const float* xs, const float* sc, int* path_used); \
  /* DGQLinear's forward: x (M, K) of dt (f32, f16, bf16) quantized per row (s_m =            */  \
  /* max(max|x[m, :]|, FLT_MIN) / 127, x_q = clamp(rint(x / s_m), ±127)), the integer product */  \
  /* as dgq_matmul, y (M, N) float32 = (float(acc)·s_m)·sc[n] + bias[n] (bias may be null).   */  \
  /* Returns 0, dgq::kNonFinite (x has NaN/Inf; nothing computed) or dgq::kBadDtype.          */  \
  int dgq_linear(const void* x, DType dt, const uint8_t* qw, const uint8_t* zeros,            \
                 const int8_t* gs, const int32_t* wsum, const float* sc, const float* bias,     \
                 float* y, int64_t M, int64_t N, int64_t K, int64_t group, int allowed,          \
                 int* path_used);                                                               \
  /* The path dgq_matmul / dgq_linear take for M rows within `allowed` (dgq::kAmx, ...).      */  \
  int dgq_path(int allowed, int64_t M);                                                         \
  }

LC_DECLARE_CPU_KERNELS(generic)
#if defined(__x86_64__) || defined(_M_X64)
LC_DECLARE_CPU_KERNELS(avx2)
LC_DECLARE_CPU_KERNELS(avx512)
#endif

// The kernel set chosen for this CPU (or forced by LINALG_CORE_CPU_ISA=generic|avx2|avx512).
struct KernelTable {
  const char* isa;
  decltype(&generic::fwht) fwht;
  decltype(&generic::fwht_select) fwht_select;
  decltype(&generic::sparse_hash) sparse_hash;
  decltype(&generic::sparse_apply) sparse_apply;
  decltype(&generic::random_uint32) random_uint32;
  decltype(&generic::random_fill) random_fill;
  decltype(&generic::convert) convert;
  decltype(&generic::weighted_gram) weighted_gram;
  decltype(&generic::row_quadratic_forms) row_quadratic_forms;
  decltype(&generic::block_quantize) block_quantize;
  decltype(&generic::block_dequantize) block_dequantize;
  decltype(&generic::dgq_matmul) dgq_matmul;
  decltype(&generic::dgq_linear) dgq_linear;
  decltype(&generic::dgq_path) dgq_path;
};
const KernelTable& kernels();
// Comma-separated CPU features detected at run time (for `python -m linalg_core info`).
const char* cpu_features();
int max_threads();
void set_num_threads(int n);

}  // namespace linalg_core::cpu
