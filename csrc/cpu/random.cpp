// Philox4x32-10 streams (see linalg_core/philox.h): raw words, normal and Rademacher blocks.
//
// Philox runs over chunks of blocks (vectorisable integer code); each block gives four normals.
// float32 outputs are computed in float: u1 near 1 goes through log1p of the exact complement
// (~w_a) / 2^32, so r = sqrt(-2 ln u1) stays accurate where ln u1 is tiny.
#include <cmath>

#include "isa.h"
#include "linalg_core/cpu_kernels.h"
#include "linalg_core/philox.h"

namespace linalg_core::cpu::LC_ISA {
namespace {

constexpr int64_t kChunk = 64;  // Philox blocks per vectorised step

template <typename Real>
inline Real box_muller_radius(uint32_t wa) {
  const Real two_m32 = Real(2.3283064365386963e-10);
  if constexpr (sizeof(Real) == 8) {
    return std::sqrt(Real(-2) * std::log((Real(wa) + Real(1)) * two_m32));
  } else {
    const Real u1 = (Real(wa) + Real(1)) * two_m32;
    const Real lg = u1 > Real(0.5) ? std::log1p(-Real(~wa) * two_m32) : std::log(u1);
    return std::sqrt(Real(-2) * lg);
  }
}

// Normals (or signs) e0 .. e1 - 1 of a stream, times scale, into out.
template <typename Real, typename T>
void fill_range(T* out, bool sign, uint64_t e0, uint64_t e1, uint64_t stream, uint64_t seed, Real scale) {
  if (sign) {
    for (uint64_t e = e0; e < e1;) {  // 32 signs per word
      const uint32_t w = philox_word(e >> 5, stream, seed);
      const uint64_t stop = std::min<uint64_t>(e1, ((e >> 5) + 1) << 5);
      for (; e < stop; ++e) *out++ = T(((w >> (e & 31u)) & 1u) ? -scale : scale);
    }
    return;
  }
  const Real two_pi_m32 = Real(6.283185307179586 * 2.3283064365386963e-10);
  Real z[4][kChunk];
  for (uint64_t b = e0 >> 2; 4 * b < e1; b += kChunk) {
    const int64_t nb = std::min<int64_t>(kChunk, int64_t((e1 + 3) / 4 - b));
#pragma omp simd
    for (int64_t k = 0; k < nb; ++k) {
      const Philox4x32 w = philox4x32_10(b + uint64_t(k), stream, seed);
      const Real r0 = box_muller_radius<Real>(w.v[0]), r1 = box_muller_radius<Real>(w.v[2]);
      const Real t0 = two_pi_m32 * Real(w.v[1]), t1 = two_pi_m32 * Real(w.v[3]);
      z[0][k] = r0 * std::cos(t0);
      z[1][k] = r0 * std::sin(t0);
      z[2][k] = r1 * std::cos(t1);
      z[3][k] = r1 * std::sin(t1);
    }
    for (int64_t k = 0; k < nb; ++k) {
      for (uint32_t lane = 0; lane < 4; ++lane) {
        const uint64_t e = 4 * (b + uint64_t(k)) + lane;
        if (e >= e0 && e < e1) out[e - e0] = T(scale * z[lane][k]);
      }
    }
  }
}

template <typename Real, typename T>
void fill_typed(T* out, bool sign, int64_t nrows, int64_t ncols, int64_t ld, int64_t row0, int64_t col0,
                uint64_t stream, uint64_t seed, double scale) {
  // Split rows into pieces of at most 4096 elements so that few, long rows still use all threads.
  const int64_t pieces = (ncols + 4095) / 4096;
  parallel_for(nrows * pieces, nrows * ncols > 8192, [&](int64_t b, int64_t e) {
    for (int64_t t = b; t < e; ++t) {
      const int64_t i = t / pieces, c0 = (t % pieces) * 4096, c1 = std::min(ncols, c0 + 4096);
      const uint64_t base = uint64_t(row0 + i) * uint64_t(ld) + uint64_t(col0);
      fill_range<Real>(out + i * ncols + c0, sign, base + uint64_t(c0), base + uint64_t(c1), stream, seed,
                       Real(scale));
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

void random_fill(void* out, DType dt, bool sign, int64_t nrows, int64_t ncols, int64_t ld, int64_t row0,
                 int64_t col0, uint64_t stream, uint64_t seed, double scale) {
  if (dt == DType::f64)
    fill_typed<double>(static_cast<double*>(out), sign, nrows, ncols, ld, row0, col0, stream, seed, scale);
  else
    fill_typed<float>(static_cast<float*>(out), sign, nrows, ncols, ld, row0, col0, stream, seed, scale);
}

}  // namespace linalg_core::cpu::LC_ISA
