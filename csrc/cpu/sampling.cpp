// Row-wise kernels of the ℓp sampling family (Lewis weights, leverage scores):
//  * weighted_gram: G = Σ_i v_i a_i a_iᵀ, the AᵀWA of each Lewis-weight step, in one read of A
//    (torch needs a scaled copy of A and a GEMM);
//  * row_quadratic_forms: q_i = a_iᵀ M a_i for a symmetric d × d M, one read of A (torch needs
//    an n × d product or triangular solve and a second pass to square and sum it).
// Rows are processed in blocks of kRows so that each row of G or M is loaded once per block:
// kRows FMAs per load/store instead of one. OpenMP over row ranges; per-thread partial Grams.
#include <type_traits>
#include <vector>

#include "isa.h"
#include "linalg_core/cpu_kernels.h"
#include "linalg_core/dtype.h"
#include "linalg_core/sampling.h"

namespace linalg_core::cpu::LC_ISA {
namespace {

constexpr int64_t kRows = 8;

template <typename T>
void gram_rows(const T* A, const T* v, T* G, int64_t r0, int64_t r1, int64_t d) {
  T s[kRows];
  const T* a[kRows];
  for (int64_t i = r0; i < r1; i += kRows) {
    const int64_t nb = std::min(kRows, r1 - i);
    for (int64_t r = 0; r < kRows; ++r) a[r] = A + (i + std::min(r, nb - 1)) * d;
    for (int64_t j = 0; j < d; ++j) {
      for (int64_t r = 0; r < kRows; ++r) s[r] = r < nb ? v[i + r] * a[r][j] : T(0);
      T* g = G + j * d;
#pragma omp simd
      for (int64_t k = 0; k < d; ++k) {
        T acc = g[k];
        for (int64_t r = 0; r < kRows; ++r) acc += s[r] * a[r][k];
        g[k] = acc;
      }
    }
  }
}

template <typename T>
void weighted_gram_typed(const T* A, const T* v, T* G, int64_t n, int64_t d) {
  const int nt = (n * d * d > (int64_t(1) << 22)) ? omp_get_max_threads() : 1;
  std::vector<T> parts(size_t(nt) * size_t(d * d), T(0));
#pragma omp parallel num_threads(nt)
  {
    const int64_t t = omp_get_thread_num(), tn = omp_get_num_threads();
    const int64_t r0 = n * t / tn, r1 = n * (t + 1) / tn;
    gram_rows(A, v, parts.data() + t * d * d, r0, r1, d);
  }
  for (int64_t e = 0; e < d * d; ++e) {
    T acc = 0;
    for (int t = 0; t < nt; ++t) acc += parts[size_t(t) * size_t(d * d) + size_t(e)];
    G[e] = acc;
  }
}

template <typename T>
void quad_forms_typed(const T* A, const T* M, T* q, int64_t n, int64_t d) {
#pragma omp parallel for schedule(static) if (n * d * d > (int64_t(1) << 22))
  for (int64_t i = 0; i < n; i += kRows) {
    const int64_t nb = std::min(kRows, n - i);
    T acc[kRows] = {};
    for (int64_t j = 0; j < d; ++j) {
      const T* m = M + j * d;
      for (int64_t r = 0; r < nb; ++r) {
        const T* a = A + (i + r) * d;
        T y = 0;
#pragma omp simd reduction(+ : y)
        for (int64_t k = 0; k < d; ++k) y += m[k] * a[k];
        acc[r] += a[j] * y;
      }
    }
    for (int64_t r = 0; r < nb; ++r) q[i + r] = acc[r];
  }
}

}  // namespace

void weighted_gram(const void* A, const void* v, void* G, DType dt, int64_t n, int64_t d) {
  if (dt == DType::f64)
    weighted_gram_typed(static_cast<const double*>(A), static_cast<const double*>(v), static_cast<double*>(G), n, d);
  else
    weighted_gram_typed(static_cast<const float*>(A), static_cast<const float*>(v), static_cast<float*>(G), n, d);
}

void row_quadratic_forms(const void* A, const void* M, void* q, DType dt, int64_t n, int64_t d) {
  if (dt == DType::f64)
    quad_forms_typed(static_cast<const double*>(A), static_cast<const double*>(M), static_cast<double*>(q), n, d);
  else
    quad_forms_typed(static_cast<const float*>(A), static_cast<const float*>(M), static_cast<float*>(q), n, d);
}

}  // namespace linalg_core::cpu::LC_ISA
