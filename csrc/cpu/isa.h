// Names the namespace a per-ISA translation unit compiles into (set by CMakeLists.txt).
#pragma once
#ifndef LC_ISA
#define LC_ISA generic
#endif
#include <omp.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#if defined(__AVX__)
#include <immintrin.h>
#endif

namespace linalg_core::cpu::LC_ISA {

// Calls f(begin, end) on disjoint chunks of [0, n), in parallel when `parallel` is true.
template <typename F>
inline void parallel_for(int64_t n, bool parallel, F&& f) {
  if (!parallel || n <= 1 || omp_get_max_threads() == 1) { f(int64_t(0), n); return; }
#pragma omp parallel
  {
    const int64_t t = omp_get_thread_num(), nt = omp_get_num_threads();
    const int64_t begin = n * t / nt, end = n * (t + 1) / nt;
    if (begin < end) f(begin, end);
  }
}

// Copies n values to dst with non-temporal stores where the ISA has them: a result written
// once and not read back soon skips the read-for-ownership of its cache lines (a third of the
// memory traffic of a streaming kernel). Call store_fence() before other threads read dst.
template <typename T>
inline void copy_streaming(T* dst, const T* src, int64_t n) {
  int64_t i = 0;
#if defined(__AVX512F__)
  constexpr int64_t V = 64 / sizeof(T);
  if ((reinterpret_cast<uintptr_t>(dst) & 63) == 0) {
    for (; i + V <= n; i += V) {
      if constexpr (sizeof(T) == 4) _mm512_stream_ps(reinterpret_cast<float*>(dst + i), _mm512_loadu_ps(reinterpret_cast<const float*>(src + i)));
      else _mm512_stream_pd(reinterpret_cast<double*>(dst + i), _mm512_loadu_pd(reinterpret_cast<const double*>(src + i)));
    }
  }
#elif defined(__AVX__)
  constexpr int64_t V = 32 / sizeof(T);
  if ((reinterpret_cast<uintptr_t>(dst) & 31) == 0) {
    for (; i + V <= n; i += V) {
      if constexpr (sizeof(T) == 4) _mm256_stream_ps(reinterpret_cast<float*>(dst + i), _mm256_loadu_ps(reinterpret_cast<const float*>(src + i)));
      else _mm256_stream_pd(reinterpret_cast<double*>(dst + i), _mm256_loadu_pd(reinterpret_cast<const double*>(src + i)));
    }
  }
#endif
  if (i < n) std::memcpy(dst + i, src + i, sizeof(T) * size_t(n - i));
}

inline void store_fence() {
#if defined(__AVX__)
  _mm_sfence();
#endif
}

}  // namespace linalg_core::cpu::LC_ISA
