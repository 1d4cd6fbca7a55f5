// Dtype conversion that also counts non-finite inputs, in one pass: the scratch copies of the
// low-rank algorithms (a float32 weight to bfloat16 for the range finder, bfloat16 row blocks to
// float32 for B = QᴴA and for residuals). torch's CPU conversion is scalar and single-threaded
// for these pairs; these loops vectorise (bfloat16 rounding is integer arithmetic) and split
// across OpenMP threads (benchmarks/RESULTS.md, "Measurements behind design choices").
#include <type_traits>

#include "isa.h"
#include "linalg_core/convert.h"
#include "linalg_core/cpu_kernels.h"
#include "linalg_core/dtype.h"

namespace linalg_core::cpu::LC_ISA {
namespace {

constexpr int64_t kGrain = int64_t(1) << 16;  // elements per thread chunk below which one thread runs

inline uint32_t nonfinite(float v) { return (float_to_bits(v) & 0x7f800000u) == 0x7f800000u; }
inline uint32_t nonfinite(double v) {
  uint64_t u;
  std::memcpy(&u, &v, 8);
  return (u & 0x7ff0000000000000ull) == 0x7ff0000000000000ull;
}

// float32 -> bfloat16, round to nearest even, NaN kept quiet; branch-free so it vectorises.
int64_t f32_to_bf16(const float* in, uint16_t* out, int64_t n) {
  int64_t bad = 0;
#pragma omp parallel for reduction(+ : bad) schedule(static) if (n > 2 * kGrain)
  for (int64_t c = 0; c < (n + kGrain - 1) / kGrain; ++c) {
    const int64_t lo = c * kGrain, hi = std::min(n, lo + kGrain);
    uint32_t local = 0;
#pragma omp simd reduction(+ : local)
    for (int64_t i = lo; i < hi; ++i) {
      const uint32_t u = float_to_bits(in[i]);
      const uint32_t rounded = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
      const uint32_t is_nan = (u & 0x7fffffffu) > 0x7f800000u;
      out[i] = static_cast<uint16_t>(is_nan ? ((u >> 16) | 0x40u) : rounded);
      local += (u & 0x7f800000u) == 0x7f800000u;
    }
    bad += local;
  }
  return bad;
}

int64_t bf16_to_f32(const uint16_t* in, float* out, int64_t n) {
  int64_t bad = 0;
#pragma omp parallel for reduction(+ : bad) schedule(static) if (n > 2 * kGrain)
  for (int64_t c = 0; c < (n + kGrain - 1) / kGrain; ++c) {
    const int64_t lo = c * kGrain, hi = std::min(n, lo + kGrain);
    uint32_t local = 0;
#pragma omp simd reduction(+ : local)
    for (int64_t i = lo; i < hi; ++i) {
      const uint32_t u = static_cast<uint32_t>(in[i]) << 16;
      out[i] = bits_to_float(u);
      local += (u & 0x7f800000u) == 0x7f800000u;
    }
    bad += local;
  }
  return bad;
}

#if defined(__F16C__)
// float32 <-> float16 with the F16C conversions (vcvtps2ph / vcvtph2ps: IEEE round to nearest
// even, subnormals and overflow as the portable code; a NaN stays a NaN, its payload as the
// hardware keeps it, as in torch's own conversion), counting non-finite values in the same pass.
inline int64_t sum_lanes(__m256i v) {
  alignas(32) uint32_t lane[8];
  _mm256_store_si256(reinterpret_cast<__m256i*>(lane), v);
  int64_t s = 0;
  for (uint32_t x : lane) s += x;
  return s;
}

// The chunked, threaded loop of both directions: `eight(i)` converts values i..i+7 and returns
// them as float32 (for the count), `one(i)` converts value i and returns it as float32.
template <typename Eight, typename One>
int64_t f16c_convert(int64_t n, Eight&& eight, One&& one) {
  int64_t bad = 0;
#pragma omp parallel for reduction(+ : bad) schedule(static) if (n > 2 * kGrain)
  for (int64_t c = 0; c < (n + kGrain - 1) / kGrain; ++c) {
    const int64_t lo = c * kGrain, hi = std::min(n, lo + kGrain);
    const __m256i exponent = _mm256_set1_epi32(0x7f800000);
    __m256i count = _mm256_setzero_si256();
    int64_t i = lo;
    for (; i + 8 <= hi; i += 8) {
      const __m256i e = _mm256_and_si256(_mm256_castps_si256(eight(i)), exponent);
      count = _mm256_sub_epi32(count, _mm256_cmpeq_epi32(e, exponent));  // -1 per non-finite lane
    }
    int64_t local = sum_lanes(count);
    for (; i < hi; ++i) local += nonfinite(one(i));
    bad += local;
  }
  return bad;
}

int64_t f32_to_f16(const float* in, uint16_t* out, int64_t n) {
  return f16c_convert(
      n,
      [&](int64_t i) {
        const __m256 v = _mm256_loadu_ps(in + i);
        _mm_storeu_si128(reinterpret_cast<__m128i*>(out + i), _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT));
        return v;
      },
      [&](int64_t i) {
        out[i] = _cvtss_sh(in[i], _MM_FROUND_TO_NEAREST_INT);
        return in[i];
      });
}

int64_t f16_to_f32(const uint16_t* in, float* out, int64_t n) {
  return f16c_convert(
      n,
      [&](int64_t i) {
        const __m256 v = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(in + i)));
        _mm256_storeu_ps(out + i, v);
        return v;
      },
      [&](int64_t i) { return out[i] = _cvtsh_ss(in[i]); });
}
#endif

template <typename In, typename Out>
int64_t generic_convert(const In* in, Out* out, int64_t n) {
  using C = std::conditional_t<std::is_same_v<In, double> || std::is_same_v<Out, double>, double, float>;
  int64_t bad = 0;
#pragma omp parallel for reduction(+ : bad) schedule(static) if (n > 2 * kGrain)
  for (int64_t c = 0; c < (n + kGrain - 1) / kGrain; ++c) {
    const int64_t lo = c * kGrain, hi = std::min(n, lo + kGrain);
    uint32_t local = 0;  // at most kGrain
#pragma omp simd reduction(+ : local)
    for (int64_t i = lo; i < hi; ++i) {
      const auto v = Storage<In>::load(in + i);
      local += nonfinite(v);
      Storage<Out>::store(out + i, static_cast<C>(v));
    }
    bad += local;
  }
  return bad;
}

// Only the count (out == nullptr): the finiteness check of an input, one read pass.
template <typename In>
int64_t count_nonfinite(const In* in, int64_t n) {
  int64_t bad = 0;
#pragma omp parallel for reduction(+ : bad) schedule(static) if (n > 2 * kGrain)
  for (int64_t c = 0; c < (n + kGrain - 1) / kGrain; ++c) {
    const int64_t lo = c * kGrain, hi = std::min(n, lo + kGrain);
    int64_t local = 0;
    if constexpr (std::is_same_v<In, bf16_bits> || std::is_same_v<In, half_bits>) {
      const uint16_t mask = std::is_same_v<In, bf16_bits> ? 0x7f80u : 0x7c00u;
      const uint16_t* p = reinterpret_cast<const uint16_t*>(in);
      uint32_t l32 = 0;
#pragma omp simd reduction(+ : l32)
      for (int64_t i = lo; i < hi; ++i) l32 += (p[i] & mask) == mask;
      local = l32;
    } else {
      for (int64_t i = lo; i < hi; ++i) local += nonfinite(in[i]);
    }
    bad += local;
  }
  return bad;
}

template <typename In>
int64_t convert_from(const In* in, void* out, DType out_dt, int64_t n) {
  switch (out_dt) {
    case DType::f32: return generic_convert(in, static_cast<float*>(out), n);
    case DType::f64: return generic_convert(in, static_cast<double*>(out), n);
    case DType::f16: return generic_convert(in, static_cast<half_bits*>(out), n);
    case DType::bf16: return generic_convert(in, static_cast<bf16_bits*>(out), n);
  }
  return 0;
}

}  // namespace

int64_t convert(const void* in, void* out, DType dt, DType out_dt, int64_t n) {
  if (out == nullptr) {
    switch (dt) {
      case DType::f32: return count_nonfinite(static_cast<const float*>(in), n);
      case DType::f64: return count_nonfinite(static_cast<const double*>(in), n);
      case DType::f16: return count_nonfinite(static_cast<const half_bits*>(in), n);
      case DType::bf16: return count_nonfinite(static_cast<const bf16_bits*>(in), n);
    }
  }
  if (dt == DType::f32 && out_dt == DType::bf16)
    return f32_to_bf16(static_cast<const float*>(in), static_cast<uint16_t*>(out), n);
  if (dt == DType::bf16 && out_dt == DType::f32)
    return bf16_to_f32(static_cast<const uint16_t*>(in), static_cast<float*>(out), n);
#if defined(__F16C__)
  if (dt == DType::f32 && out_dt == DType::f16)
    return f32_to_f16(static_cast<const float*>(in), static_cast<uint16_t*>(out), n);
  if (dt == DType::f16 && out_dt == DType::f32)
    return f16_to_f32(static_cast<const uint16_t*>(in), static_cast<float*>(out), n);
#endif
  switch (dt) {
    case DType::f32: return convert_from(static_cast<const float*>(in), out, out_dt, n);
    case DType::f64: return convert_from(static_cast<const double*>(in), out, out_dt, n);
    case DType::f16: return convert_from(static_cast<const half_bits*>(in), out, out_dt, n);
    case DType::bf16: return convert_from(static_cast<const bf16_bits*>(in), out, out_dt, n);
  }
  return 0;
}

}  // namespace linalg_core::cpu::LC_ISA
