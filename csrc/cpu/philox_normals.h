// Philox normals of four words at a time for the per-ISA CPU kernels of the random family
// (random_fill) and the nola family: float32 Box-Muller without libm calls, so that loops over
// Philox blocks vectorise, and the float64 path of philox.h. One definition, so NOLA's bases
// equal random.normal's values.
#pragma once
#include <cmath>
#include <cstdint>

#include "isa.h"
#include "linalg_core/dtype.h"
#include "linalg_core/philox.h"

namespace linalg_core::cpu::LC_ISA {
namespace philox_normals {

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

}  // namespace philox_normals
}  // namespace linalg_core::cpu::LC_ISA
