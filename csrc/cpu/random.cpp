// Philox4x32-10 streams (see linalg_core/philox.h): raw words, normal and Rademacher blocks.
//
// Philox runs over chunks of blocks; each block gives four normals (Box-Muller on its word
// pairs). float64 outputs use libm in double, float32 outputs the polynomial version below.
#include <cmath>

#include "isa.h"
#include "linalg_core/cpu_kernels.h"
#include "linalg_core/dtype.h"
#include "linalg_core/philox.h"
#include "linalg_core/random.h"

namespace linalg_core::cpu::LC_ISA {
namespace {

constexpr int64_t kChunk = 64;  // Philox blocks per vectorised step

// float32 Box-Muller without libm calls, so the loop over Philox blocks vectorises:
//  * ln u1 by the Cephes logf polynomial; for u1 >= 1/√2 the argument u1 - 1 = -(~w_a)/2^32 is
//    taken exactly from the integer, so r = sqrt(-2 ln u1) stays accurate where ln u1 is tiny;
//  * the angle 2π·w_b/2^32 is reduced exactly in integers to a quadrant and t ∈ [-π/4, π/4),
//    then the Cephes sinf/cosf polynomials. Accuracy: a few float ulps of the float64 reference.
inline float log_unit(uint32_t w) {  // ln((w + 1) / 2^32)
  const float two_m32 = 2.3283064365386963e-10f;
  const float u = (float(w) + 1.0f) * two_m32;
  // Both candidates computed, one selected: branch-free, so the caller's loop vectorises.
  const uint32_t bits = float_to_bits(u);
  const float m0 = bits_to_float((bits & 0x7fffffu) | 0x3f800000u);  // [1, 2)
  const float halve = float(m0 > 1.41421356f);  // 0 or 1
  const float m = m0 * (1.0f - 0.5f * halve);
  const float ex = float(int32_t(bits >> 23) - 127) + halve;
  const float near_one = float(u >= 0.70710678f);  // 0 or 1
  const float f = near_one * (-float(~w) * two_m32) + (1.0f - near_one) * (m - 1.0f);
  const float e = (1.0f - near_one) * ex;
  const float z = f * f;
  float y = 7.0376836292e-2f;
  y = y * f - 1.1514610310e-1f;
  y = y * f + 1.1676998740e-1f;
  y = y * f - 1.2420140846e-1f;
  y = y * f + 1.4249322787e-1f;
  y = y * f - 1.6668057665e-1f;
  y = y * f + 2.0000714765e-1f;
  y = y * f - 2.4999993993e-1f;
  y = y * f + 3.3333331174e-1f;
  y = y * f * z;
  y += e * -2.12194440e-4f;
  y += -0.5f * z;
  return f + y + e * 0.693359375f;
}

inline void sincos_unit(uint32_t w, float* s, float* c) {  // of 2π·w/2^32
  const uint32_t shifted = w + (1u << 29);
  const uint32_t q = shifted >> 30;
  const float t = float(int32_t(shifted & 0x3fffffffu) - (1 << 29)) * 1.4629180792671596e-9f;  // 2π/2^32
  const float z = t * t;
  const float sn = ((-1.9515295891e-4f * z + 8.3321608736e-3f) * z - 1.6666654611e-1f) * z * t + t;
  const float cs = ((2.443315711809948e-5f * z - 1.388731625493765e-3f) * z + 4.166664568298827e-2f) * z * z
                   - 0.5f * z + 1.0f;
  // Rotate by q quarter turns: odd q swaps sine and cosine; the sine is negative for q = 2, 3,
  // the cosine for q = 1, 2 (sign bits set arithmetically, no branches).
  const uint32_t swap = 0u - (q & 1u);
  const uint32_t sb = float_to_bits(sn), cb = float_to_bits(cs);
  const uint32_t s_bits = (sb & ~swap) | (cb & swap), c_bits = (cb & ~swap) | (sb & swap);
  *s = bits_to_float(s_bits ^ ((q & 2u) << 30));
  *c = bits_to_float(c_bits ^ (((q + 1u) & 2u) << 30));
}

template <typename Real>
inline void normals4(uint32_t w0, uint32_t w1, uint32_t w2, uint32_t w3, Real* z0, Real* z1, Real* z2, Real* z3) {
  if constexpr (sizeof(Real) == 8) {
    *z0 = normal_from_pair<double>(w0, w1, false);
    *z1 = normal_from_pair<double>(w0, w1, true);
    *z2 = normal_from_pair<double>(w2, w3, false);
    *z3 = normal_from_pair<double>(w2, w3, true);
  } else {
    const float r0 = std::sqrt(-2.0f * log_unit(w0)), r1 = std::sqrt(-2.0f * log_unit(w2));
    float s0, c0, s1, c1;
    sincos_unit(w1, &s0, &c0);
    sincos_unit(w3, &s1, &c1);
    *z0 = r0 * c0; *z1 = r0 * s0; *z2 = r1 * c1; *z3 = r1 * s1;
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
  Real z[4][kChunk];
  uint32_t w[4][kChunk];
  for (uint64_t b = e0 >> 2; 4 * b < e1; b += kChunk) {
    const int64_t nb = std::min<int64_t>(kChunk, int64_t((e1 + 3) / 4 - b));
    // Two simple loops (integer Philox, then floating Box-Muller) vectorise where one does not.
#pragma omp simd
    for (int64_t k = 0; k < nb; ++k) {
      const Philox4x32 p = philox4x32_10(b + uint64_t(k), stream, seed);
      w[0][k] = p.v[0]; w[1][k] = p.v[1]; w[2][k] = p.v[2]; w[3][k] = p.v[3];
    }
#pragma omp simd
    for (int64_t k = 0; k < nb; ++k)
      normals4<Real>(w[0][k], w[1][k], w[2][k], w[3][k], &z[0][k], &z[1][k], &z[2][k], &z[3][k]);
    for (int64_t k = 0; k < nb; ++k) {
      for (uint32_t lane = 0; lane < 4; ++lane) {
        const uint64_t e = 4 * (b + uint64_t(k)) + lane;
        if (e >= e0 && e < e1) out[e - e0] = T(scale * z[lane][k]);
      }
    }
  }
}

// Values below which a fill runs on the calling thread (~100 us of one core: 2^16 normals, or 2^15
// words of one Philox block each): a parallel region that small saves little on a quiet machine
// and can wait a scheduler time slice for a descheduled team member on a shared one
// (docs/threads.md). Every value is a function of its index alone, so any split gives the same bits.
constexpr int64_t kParallelValues = int64_t(1) << 16;
constexpr int64_t kParallelWords = int64_t(1) << 15;

template <typename Real, typename T>
void fill_typed(T* out, bool sign, int64_t nrows, int64_t ncols, int64_t ld, int64_t row0, int64_t col0,
                uint64_t stream, uint64_t seed, double scale) {
  // Split rows into pieces of at most 4096 elements so that few, long rows still use all threads.
  const int64_t pieces = ncols / 4096 + (ncols % 4096 != 0);  // no overflow for any ncols
  parallel_for(nrows * pieces, nrows * ncols > kParallelValues, [&](int64_t b, int64_t e) {
    for (int64_t t = b; t < e; ++t) {
      const int64_t i = t / pieces, c0 = (t % pieces) * 4096, c1 = std::min(ncols, c0 + 4096);
      const uint64_t base = (uint64_t(row0) + uint64_t(i)) * uint64_t(ld) + uint64_t(col0);  // mod 2^64
      fill_range<Real>(out + i * ncols + c0, sign, base + uint64_t(c0), base + uint64_t(c1), stream, seed,
                       Real(scale));
    }
  });
}

}  // namespace

void random_uint32(uint32_t* out, int64_t count, uint64_t offset, uint64_t stream, uint64_t seed) {
  parallel_for(count, count > kParallelWords, [&](int64_t b, int64_t e) {
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
