// Dtype codes shared by the bindings and the Python layer (linalg_core/_arrays.py: DTYPE_CODES),
// and bit-exact half / bfloat16 conversions usable on the host and in CUDA.
#pragma once
#include <cstdint>
#include <cstring>

#include "linalg_core/philox.h"  // LC_HOST_DEVICE

namespace linalg_core {

enum class DType : int { f32 = 0, f64 = 1, f16 = 2, bf16 = 3 };

struct half_bits { uint16_t x; };
struct bf16_bits { uint16_t x; };

LC_HOST_DEVICE float bits_to_float(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }
LC_HOST_DEVICE uint32_t float_to_bits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }

// IEEE binary16 -> binary32, exact (normals, subnormals, inf, nan). Branch-light so that it
// vectorises.
LC_HOST_DEVICE float half_to_float(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t em = h & 0x7fffu;
  // Normal and subnormal numbers: rescale the exponent with a float multiply (2^112).
  const float mag = bits_to_float(em << 13) * 5.192296858534828e+33f;
  const uint32_t inf_nan = (em >= 0x7c00u) ? (0x7f800000u | (em & 0x3ffu) << 13) : 0u;
  const uint32_t bits = (em >= 0x7c00u) ? inf_nan : float_to_bits(mag);
  return bits_to_float(sign | bits);
}

// binary32 -> binary16 with round-to-nearest-even, overflow to inf, nan kept. All three cases are
// computed and one is selected (no branches), so that conversion loops vectorise; checked equal
// to the branching form on all 2^32 inputs.
LC_HOST_DEVICE uint16_t float_to_half(float f) {
  const uint32_t u = float_to_bits(f);
  const uint32_t sign = (u >> 16) & 0x8000u;
  const uint32_t a = u & 0x7fffffffu;
  // normal result: rebias the exponent (-112 << 23) and round to nearest even
  const uint32_t normal = (a + 0xc8000fffu + ((a >> 13) & 1u)) >> 13;
  // subnormal or zero result (a < 2^-14): the FPU rounds through a magic add (0.5 = 2^-1 puts
  // the half ulp 2^-24 at bit 0)
  const uint32_t subnormal = float_to_bits(bits_to_float(a) + 0.5f) - 0x3f000000u;
  // inf for inputs that round to >= 65520 (and inf), a quiet nan for nan
  const uint32_t special = 0x7c00u | (a > 0x7f800000u ? 0x200u : 0u);
  const uint32_t h = a >= 0x477ff000u ? special : a < 0x38800000u ? subnormal : normal;
  return static_cast<uint16_t>(sign | h);
}

LC_HOST_DEVICE float bf16_to_float(uint16_t b) { return bits_to_float(static_cast<uint32_t>(b) << 16); }

LC_HOST_DEVICE uint16_t float_to_bf16(float f) {
  const uint32_t u = float_to_bits(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40u);  // quiet nan
  const uint32_t rounded = u + 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(rounded >> 16);
}

// Load / store of a storage type through its compute type.
template <typename T> struct Storage;
template <> struct Storage<float> {
  using compute = float;
  LC_HOST_DEVICE static float load(const float* p) { return *p; }
  LC_HOST_DEVICE static void store(float* p, float v) { *p = v; }
};
template <> struct Storage<double> {
  using compute = double;
  LC_HOST_DEVICE static double load(const double* p) { return *p; }
  LC_HOST_DEVICE static void store(double* p, double v) { *p = v; }
};
template <> struct Storage<half_bits> {
  using compute = float;
  LC_HOST_DEVICE static float load(const half_bits* p) { return half_to_float(p->x); }
  LC_HOST_DEVICE static void store(half_bits* p, float v) { p->x = float_to_half(v); }
};
template <> struct Storage<bf16_bits> {
  using compute = float;
  LC_HOST_DEVICE static float load(const bf16_bits* p) { return bf16_to_float(p->x); }
  LC_HOST_DEVICE static void store(bf16_bits* p, float v) { p->x = float_to_bf16(v); }
};

}  // namespace linalg_core
