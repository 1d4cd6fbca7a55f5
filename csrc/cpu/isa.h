// Names the namespace a per-ISA translation unit compiles into (set by CMakeLists.txt).
#pragma once
#ifndef LC_ISA
#define LC_ISA generic
#endif
#include <omp.h>

#include <algorithm>
#include <cstdint>

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

}  // namespace linalg_core::cpu::LC_ISA
