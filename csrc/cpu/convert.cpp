// Dtype conversion that also counts non-finite inputs, in one pass: the scratch copies of the
// low-rank algorithms (a float32 weight to bfloat16 for the range finder, bfloat16 row blocks to
// float32 for B = QᴴA and for residuals). torch's CPU conversion is scalar and single-threaded
// for these pairs; these loops vectorise (bfloat16 rounding is integer arithmetic) and split
// across OpenMP threads (benchmarks/RESULTS.md, "Measurements behind design choices").
// lowrank_update writes a weight minus a rank-r update (the residuals of PiSSA, OLoRA and the
// other adapter initialisers) in one pass: a GEMM with beta = 1 first copies W into the output
// and then reads and writes it again, and a 16-bit W takes two conversions more.
#include <algorithm>
#include <cmath>
#include <type_traits>
#include <vector>

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

// float16 -> bfloat16 through float32 (exact), rounded as f32_to_bf16 rounds (nearest even, NaN
// kept quiet): rsvd's bfloat16 copy of a float16 weight. The portable route converts one value
// at a time (3.6x slower on an 11008 x 4096 weight).
inline __m128i bf16_bits_of(__m256 v) {
  const __m256i u = _mm256_castps_si256(v);
  const __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1));
  const __m256i rounded = _mm256_srli_epi32(_mm256_add_epi32(_mm256_add_epi32(u, _mm256_set1_epi32(0x7fff)), lsb), 16);
  const __m256i nan = _mm256_cmpgt_epi32(_mm256_and_si256(u, _mm256_set1_epi32(0x7fffffff)),
                                         _mm256_set1_epi32(0x7f800000));
  const __m256i quiet = _mm256_or_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(0x40));
  const __m256i h = _mm256_blendv_epi8(rounded, quiet, nan);
  return _mm_packus_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256(h, 1));  // lanes <= 0xffff
}

int64_t f16_to_bf16(const uint16_t* in, uint16_t* out, int64_t n) {
  return f16c_convert(
      n,
      [&](int64_t i) {
        const __m256 v = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(in + i)));
        _mm_storeu_si128(reinterpret_cast<__m128i*>(out + i), bf16_bits_of(v));
        return v;
      },
      [&](int64_t i) {
        const float v = _cvtsh_ss(in[i]);
        out[i] = float_to_bf16(v);
        return v;
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

#if defined(__AVX512F__) || (defined(__AVX2__) && defined(__FMA__) && defined(__F16C__))
// One register of float32 values of a row, loaded from and stored to each storage type, rounding
// to bfloat16 as f32_to_bf16 does (nearest even, NaN kept quiet) and to float16 as f32_to_f16
// does (vcvtps2ph, nearest even). A tile row holds kVecs registers: kRows · kVecs accumulators
// and kVecs A loads per k (AVX2: 14 of 16 ymm; AVX-512: 14 of 32 zmm, since a 6 × 64 tile, 28,
// was slower on Zen 4: 31 against 25 ms into a kept buffer, 11008 × 4096, r = 16, one thread).
#if defined(__AVX512F__)
using Vec = __m512;
constexpr int kLanes = 16;
inline Vec load(const float* p) { return _mm512_loadu_ps(p); }
inline Vec load(const half_bits* p) { return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))); }
inline Vec load(const bf16_bits* p) {
  const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}
inline void store(float* p, Vec v) { _mm512_storeu_ps(p, v); }
inline void store(half_bits* p, Vec v) {
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), _mm512_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT));
}
inline void store(bf16_bits* p, Vec v) {
  const __m512i u = _mm512_castps_si512(v);
  const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
  __m512i h = _mm512_srli_epi32(_mm512_add_epi32(_mm512_add_epi32(u, _mm512_set1_epi32(0x7fff)), lsb), 16);
  const __mmask16 nan = _mm512_cmp_epu32_mask(_mm512_and_si512(u, _mm512_set1_epi32(0x7fffffff)),
                                              _mm512_set1_epi32(0x7f800000), _MM_CMPINT_NLE);
  h = _mm512_mask_or_epi32(h, nan, _mm512_srli_epi32(u, 16), _mm512_set1_epi32(0x40));
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), _mm512_cvtepi32_epi16(h));
}
inline Vec broadcast(float x) { return _mm512_set1_ps(x); }
inline Vec fmadd(Vec a, Vec b, Vec c) { return _mm512_fmadd_ps(a, b, c); }
#else
using Vec = __m256;
constexpr int kLanes = 8;
inline Vec load(const float* p) { return _mm256_loadu_ps(p); }
inline Vec load(const half_bits* p) { return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))); }
inline Vec load(const bf16_bits* p) {
  const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}
inline void store(float* p, Vec v) { _mm256_storeu_ps(p, v); }
inline void store(half_bits* p, Vec v) {
  _mm_storeu_si128(reinterpret_cast<__m128i*>(p), _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT));
}
inline void store(bf16_bits* p, Vec v) { _mm_storeu_si128(reinterpret_cast<__m128i*>(p), bf16_bits_of(v)); }
inline Vec broadcast(float x) { return _mm256_set1_ps(x); }
inline Vec fmadd(Vec a, Vec b, Vec c) { return _mm256_fmadd_ps(a, b, c); }
#endif
constexpr int kVecs = 2;                    // registers per tile row
constexpr int64_t kStrip = kLanes * kVecs;  // columns of a tile (and of a packed strip of A)
constexpr int kRows = 6;                    // rows of a tile
// How far ahead (columns) a tile prefetches its rows of W and out: the tile's FMAs do not cover a
// fetch from memory, and six rows n apart are more streams than the hardware prefetcher follows
// well (256 to 1024 columns within noise, 128 slower; see lowrank_update_t for the measurements).
constexpr int64_t kPrefetch = 512;

// R rows (R <= kRows) × kStrip columns of out = W + C·A, C (R, r) the rows' −s·B (or, with
// `scaled` false, B itself, scaled by −s here), W's and out's rows `ld` apart, A's kStrip columns
// packed (r × kStrip, contiguous): R · kVecs float32 accumulators, kVecs A loads per k.
template <int R, bool scaled, typename T>
inline void update_tile(const T* W, T* out, const float* C, float s, const float* P, int64_t ld, int64_t r) {
  for (int i = 0; i < R; ++i)  // the rows' values kPrefetch columns on: the tile's FMAs hide their fetch
    for (int64_t b = 0; b < kStrip * int64_t(sizeof(T)); b += 64) {
      _mm_prefetch(reinterpret_cast<const char*>(W + i * ld + kPrefetch) + b, _MM_HINT_T0);
      if (out != W) _mm_prefetch(reinterpret_cast<const char*>(out + i * ld + kPrefetch) + b, _MM_HINT_T0);
    }
  Vec acc[R][kVecs];
  for (int i = 0; i < R; ++i)
    for (int v = 0; v < kVecs; ++v) acc[i][v] = load(W + i * ld + kLanes * v);
  for (int64_t k = 0; k < r; ++k) {
    Vec a[kVecs];
    for (int v = 0; v < kVecs; ++v) a[v] = load(P + kStrip * k + kLanes * v);
    for (int i = 0; i < R; ++i) {
      const Vec c = broadcast(scaled ? C[i * r + k] : -s * C[i * r + k]);
      for (int v = 0; v < kVecs; ++v) acc[i][v] = fmadd(c, a[v], acc[i][v]);
    }
  }
  for (int i = 0; i < R; ++i)
    for (int v = 0; v < kVecs; ++v) store(out + i * ld + kLanes * v, acc[i][v]);
}

// Columns j0..n − 1 (fewer than kStrip), one value at a time with the same FMAs, from A itself.
template <bool scaled, typename T>
inline void update_tail(const T* W, T* out, const float* C, float s, const float* A, int64_t rows, int64_t n,
                        int64_t r, int64_t j0) {
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t j = j0; j < n; ++j) {
      float acc = Storage<T>::load(W + i * n + j);
      for (int64_t k = 0; k < r; ++k) acc = std::fma(scaled ? C[i * r + k] : -s * C[i * r + k], A[k * n + j], acc);
      Storage<T>::store(out + i * n + j, acc);
    }
}

// Strips t0..t1 − 1 (packed in P) of R rows.
template <int R, bool scaled, typename T>
inline void update_rows(const T* W, T* out, const float* C, float s, const float* P, int64_t n, int64_t r,
                        int64_t t0, int64_t t1) {
  for (int64_t t = t0; t < t1; ++t)
    update_tile<R, scaled>(W + kStrip * t, out + kStrip * t, C, s, P + t * kStrip * r, n, r);
}

template <bool scaled, typename T>
inline void update_block(const T* W, T* out, const float* C, float s, const float* P, int64_t rows, int64_t n,
                         int64_t r, int64_t t0, int64_t t1) {
  static_assert(kRows == 6);
  switch (rows) {
    case 6: update_rows<6, scaled>(W, out, C, s, P, n, r, t0, t1); break;
    case 5: update_rows<5, scaled>(W, out, C, s, P, n, r, t0, t1); break;
    case 4: update_rows<4, scaled>(W, out, C, s, P, n, r, t0, t1); break;
    case 3: update_rows<3, scaled>(W, out, C, s, P, n, r, t0, t1); break;
    case 2: update_rows<2, scaled>(W, out, C, s, P, n, r, t0, t1); break;
    default: update_rows<1, scaled>(W, out, C, s, P, n, r, t0, t1); break;
  }
}

// out = W − s·B·A, kRows rows at a time (each A load serves them all). Up to rank 64 the rows'
// −s·B are first gathered into a small C on the stack (scaling B inside the k loop instead made
// r = 32 1.6× slower), above it B is read as it is. A is first packed strip by strip (kStrip
// columns × r, contiguous): its rows are n floats apart, and at a power-of-two n the r lines a
// tile reads per k share one L1 set. The row blocks pass over panels of kPanel strips (A's panel
// stays in L2). 11008 × 4096 float32 in place, r = 16, one thread, Zen 3 (AVX2): 45–48 ms
// unpacked without prefetching, 28–37 ms with prefetching alone, 20.5–21 ms with both (addmm_
// 23–32 ms, a copy pass 12 ms); Zen 4, AVX-512: a 4 × 64 tile unpacked without prefetching
// 22–25 ms, this one 17 ms (addmm_ 17 ms: both at the FMA rate). A tile's W values are read
// before its outputs are written, so out may be W itself.
template <typename T>
void lowrank_update_t(const T* W, T* out, const float* B, const float* A, float s, int64_t m, int64_t n, int64_t r) {
  constexpr int64_t kMaxC = 64, kPanel = 4096 / kStrip;
  const int64_t blocks = (m + kRows - 1) / kRows, strips = n / kStrip;
  std::vector<float> packed(static_cast<size_t>(strips * kStrip * r));
  float* P = packed.data();
  const bool parallel = m * n > 2 * kGrain;
#pragma omp parallel for schedule(static) if (parallel)
  for (int64_t t = 0; t < strips; ++t)
    for (int64_t k = 0; k < r; ++k) std::memcpy(P + (t * r + k) * kStrip, A + k * n + kStrip * t, kStrip * sizeof(float));
  // panels of strips; the last one also takes the n mod kStrip tail columns (n < kStrip: one pass, tail only)
  for (int64_t t0 = 0; t0 < strips || (t0 == 0 && n % kStrip); t0 += kPanel) {
    const int64_t t1 = std::min(strips, t0 + kPanel);
    const bool last = t1 == strips;
#pragma omp parallel for schedule(static) if (parallel)
    for (int64_t b = 0; b < blocks; ++b) {
      const int64_t i0 = kRows * b, rows = std::min<int64_t>(kRows, m - i0);
      const T* w = W + i0 * n;
      T* o = out + i0 * n;
      float Cs[kRows * kMaxC];
      const float* C = B + i0 * r;
      if (r <= kMaxC) {
        for (int64_t i = 0; i < rows * r; ++i) Cs[i] = -s * B[i0 * r + i];
        C = Cs;
        update_block<true>(w, o, C, s, P, rows, n, r, t0, t1);
        if (last) update_tail<true>(w, o, C, s, A, rows, n, r, kStrip * strips);
      } else {
        update_block<false>(w, o, C, s, P, rows, n, r, t0, t1);
        if (last) update_tail<false>(w, o, C, s, A, rows, n, r, kStrip * strips);
      }
    }
  }
}
#else
// out = W − s·B·A, tile by tile: kRows rows × kCols columns accumulate in float32 (8 KiB, L1),
// each A row segment loaded once per tile serves kRows rows; a tile's W values are read before
// its outputs are written, so out may be W itself.
template <typename T>
void lowrank_update_t(const T* W, T* out, const float* B, const float* A, float s, int64_t m, int64_t n, int64_t r) {
  constexpr int64_t kRows = 4, kCols = 512;
  const int64_t blocks = (m + kRows - 1) / kRows;
#pragma omp parallel for schedule(static) if (m * n > 2 * kGrain)
  for (int64_t b = 0; b < blocks; ++b) {
    const int64_t i0 = b * kRows, rows = std::min(kRows, m - i0);
    alignas(64) float acc[kRows][kCols];
    for (int64_t j0 = 0; j0 < n; j0 += kCols) {
      const int64_t w = std::min(kCols, n - j0);
      for (int64_t i = 0; i < rows; ++i) {
        const T* src = W + (i0 + i) * n + j0;
#pragma omp simd
        for (int64_t j = 0; j < w; ++j) acc[i][j] = Storage<T>::load(src + j);
      }
      for (int64_t k = 0; k < r; ++k) {
        const float* a = A + k * n + j0;
        for (int64_t i = 0; i < rows; ++i) {
          const float c = -s * B[(i0 + i) * r + k];
          float* row = acc[i];
#pragma omp simd
          for (int64_t j = 0; j < w; ++j) row[j] += c * a[j];
        }
      }
      for (int64_t i = 0; i < rows; ++i) {
        T* dst = out + (i0 + i) * n + j0;
#pragma omp simd
        for (int64_t j = 0; j < w; ++j) Storage<T>::store(dst + j, acc[i][j]);
      }
    }
  }
}
#endif

}  // namespace

void lowrank_update(const void* W, void* out, DType dt, const float* B, const float* A, float s, int64_t m, int64_t n,
                    int64_t r) {
  switch (dt) {
    case DType::bf16:
      return lowrank_update_t(static_cast<const bf16_bits*>(W), static_cast<bf16_bits*>(out), B, A, s, m, n, r);
    case DType::f16:
      return lowrank_update_t(static_cast<const half_bits*>(W), static_cast<half_bits*>(out), B, A, s, m, n, r);
    default:
      return lowrank_update_t(static_cast<const float*>(W), static_cast<float*>(out), B, A, s, m, n, r);
  }
}

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
  if (dt == DType::f16 && out_dt == DType::bf16)
    return f16_to_bf16(static_cast<const uint16_t*>(in), static_cast<uint16_t*>(out), n);
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
