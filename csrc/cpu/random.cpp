// Philox4x32-10 streams (see linalg_core/philox.h): raw words, normal and Rademacher blocks.
#include <cmath>

#include "isa.h"
#include "linalg_core/cpu_kernels.h"
#include "linalg_core/philox.h"

namespace linalg_core::cpu::LC_ISA {
namespace {

template <typename T>
void fill_typed(T* out, bool sign, int64_t nrows, int64_t ncols, int64_t ld, int64_t row0,
                int64_t col0, uint64_t stream, uint64_t seed, double scale) {
  parallel_for(nrows * ncols, nrows * ncols > 8192, [&](int64_t b, int64_t e) {
    for (int64_t t = b; t < e; ++t) {
      const int64_t i = t / ncols, j = t % ncols;
      const uint64_t idx = uint64_t(row0 + i) * uint64_t(ld) + uint64_t(col0 + j);
      const double v = sign ? double(philox_sign(idx, stream, seed))
                            : philox_normal<double>(idx, stream, seed);
      out[t] = T(scale * v);
    }
  });
}

}  // namespace

void random_uint32(uint32_t* out, int64_t count, uint64_t offset, uint64_t stream, uint64_t seed) {
  parallel_for(count, count > 16384, [&](int64_t b, int64_t e) {
#pragma omp simd
    for (int64_t i = b; i < e; ++i) out[i] = philox_word(offset + uint64_t(i), stream, seed);
  });
}

void random_fill(void* out, DType dt, bool sign, int64_t nrows, int64_t ncols, int64_t ld,
                 int64_t row0, int64_t col0, uint64_t stream, uint64_t seed, double scale) {
  if (dt == DType::f64)
    fill_typed(static_cast<double*>(out), sign, nrows, ncols, ld, row0, col0, stream, seed, scale);
  else
    fill_typed(static_cast<float*>(out), sign, nrows, ncols, ld, row0, col0, stream, seed, scale);
}

}  // namespace linalg_core::cpu::LC_ISA
