// DGQ A8W4 integer product (Zhang et al. 2024, "Dual Grained Quantization"):
//   y[m, n] = Σ_k x[m, k] · w8[n, k],  w8[n, k] = s_int[n, g] · (q[n, k] − z[n, g]),  g = k / group,
// with x int8 in [−127, 127], q 4-bit codes stored two per byte (high nibble = even k), and 32-bit
// accumulation (exact: |y| ≤ 127² K < 2³¹; every path sums modulo 2³², so no signed overflow
// whatever bytes a caller passes).
//
// Paths (csrc/include/linalg_core/qmatmul.h: dgq::kAmx ...):
//   * AVX2: y = Σ_g s_int·(Σ_{k∈g} q_k x_k − z·Σ_{k∈g} x_k). The codes go straight into
//     vpmaddubsw (u8 codes × s8 x, pairs summed to 16 bits: at most 2·15·127, no saturation),
//     vpmaddwd with the broadcast s_int sums pairs to 32 bits, and z·Σx (the group sums of x,
//     computed once per call) is subtracted per channel at the end. No table, no sign fix-ups:
//     one mask and shift split 64 codes, then 2 multiply-adds per 64 weights and row. Tiles of
//     MR rows × NR channels load each x chunk once for NR channels (M = 1: NR = 4).
//   * AVX512-VNNI, AVX-VNNI: each group's 16 possible values s_int·(q − z) form a 16-byte table
//     and one byte shuffle (vpshufb) turns 64 codes into 64 int8 weights in a register, which feed
//     vpdpbusd (u8 × s8 → s32) with x + 128 as the unsigned operand and the precomputed
//     Σ_k w8[n, k] removing the offset; MR rows of x per expanded weight vector.
//   * AMX (M ≥ 16): yᵀ = W8 · xᵀ with tdpbssd on 16 × 64 tiles; the weights of 32 channels are
//     expanded into a per-thread L2-resident panel, x is packed once per call in the VNNI layout.
//   * portable: scalar loops over the same table.
// The table paths agree with the AVX2 form for weights of the format (|s_int·(q − z)| ≤ 127,
// which DGQWeight guarantees); bytes outside it give path-dependent (but in-bounds) results.
// x is permuted once per call so that no shuffle is needed on the weight side: the nibble order
// makes a run of packed bytes unpack as the even k (high nibbles) and the odd k (low nibbles).
//   * AVX2 layout:  x̂ = [32 evens | 32 odds] per 64 k (one 32-byte load of codes per 64 k);
//   * table layout: x̃ = [64 evens | 64 odds] per 128 k.
//
// dgq_linear fuses DGQLinear's forward around the product: per-row activation quantization
// (bit-identical to quantize_activations(x, granularity="token")), the product, and the float32
// epilogue (float(acc)·s_m)·s_c[n] + bias[n], each operation rounded as torch rounds it.
#include <cfloat>
#include <cmath>
#include <cstdlib>
#include <new>

#include "isa.h"
#include "linalg_core/cpu_kernels.h"
#include "linalg_core/memory.h"
#include "linalg_core/qmatmul.h"

#if defined(__linux__) && (defined(__x86_64__) || defined(_M_X64))
#include <sys/syscall.h>
#include <unistd.h>
#endif

namespace linalg_core::cpu::LC_ISA {
namespace {

// Work (M·N·K multiply-adds) below which the product runs on the calling thread: waking the
// OpenMP team costs more than it saves on small GEMVs.
constexpr int64_t kParallelWork = int64_t(1) << 20;

// f(begin, end) on contiguous chunks of [0, n), one per OpenMP thread when `parallel`, else on
// the calling thread without entering OpenMP at all (a parallel region, even an if(0) one, costs
// more than a small GEMV). Returns the sum of f's results.
template <typename F>
int64_t run_chunks(int64_t n, bool parallel, F&& f) {
  if (!parallel || n <= 1 || omp_get_max_threads() == 1) return f(int64_t(0), n);
  int64_t total = 0;
#pragma omp parallel reduction(+ : total)
  {
    const int64_t t = omp_get_thread_num(), nt = omp_get_num_threads();
    const int64_t begin = n * t / nt, end = n * (t + 1) / nt;
    if (begin < end) total += f(begin, end);
  }
  return total;
}

// Scratch memory of one call, carved into 64-byte aligned pieces: a per-thread buffer kept
// between calls serves requests up to kKeep bytes (no allocation per call once warm); larger ones
// (or a nested request on the same thread) get their own allocation, freed with the Workspace.
class Workspace {
 public:
  explicit Workspace(size_t bytes) {
    Kept& k = kept();
    if (bytes <= kKeep && !k.busy) {
      if (k.cap < bytes) {
        std::free(k.p);
        k.p = nullptr;
        k.cap = 0;
        const size_t cap = std::max<size_t>(round64(bytes), 16384);
        k.p = static_cast<char*>(std::aligned_alloc(64, cap));
        if (!k.p) throw std::bad_alloc();
        k.cap = cap;
      }
      k.busy = true;
      kept_ = &k;
      p_ = k.p;
    } else {
      own_ = static_cast<char*>(std::aligned_alloc(64, round64(bytes ? bytes : 1)));
      if (!own_) throw std::bad_alloc();
      p_ = own_;
    }
  }
  ~Workspace() {
    if (kept_) kept_->busy = false;
    std::free(own_);
  }
  Workspace(const Workspace&) = delete;
  Workspace& operator=(const Workspace&) = delete;

  template <typename T>
  T* take(size_t n) {
    T* r = reinterpret_cast<T*>(p_ + used_);
    used_ += round64(n * sizeof(T));
    return r;
  }
  static size_t round64(size_t n) { return (n + 63) / 64 * 64; }

 private:
  static constexpr size_t kKeep = size_t(1) << 21;
  struct Kept {
    char* p = nullptr;
    size_t cap = 0;
    bool busy = false;
    ~Kept() { std::free(p); }
  };
  static Kept& kept() {
    thread_local Kept k;
    return k;
  }
  Kept* kept_ = nullptr;
  char* own_ = nullptr;
  char* p_ = nullptr;
  size_t used_ = 0;
};

// v unchanged, but opaque to the optimiser: a product passed through it is rounded to float
// before a later addition (no fused multiply-add contraction, which -ffp-contract=fast allows).
template <typename T>
inline T rounded(T v) {
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
  __asm__("" : "+x"(v));
#elif defined(__GNUC__) && defined(__aarch64__)
  __asm__("" : "+w"(v));
#else
  volatile T t = v;
  v = t;
#endif
  return v;
}

// acc − offset·wsum modulo 2^32: exact for valid weights, and no signed overflow (undefined
// behaviour) whatever weight_sums a caller passes.
inline int32_t minus_offset(int32_t acc, int32_t offset, int32_t wsum) {
  return static_cast<int32_t>(static_cast<uint32_t>(acc) - static_cast<uint32_t>(offset) * static_cast<uint32_t>(wsum));
}

inline void group_table(int z, int s, int8_t* T) {
  for (int q = 0; q < 16; ++q) T[q] = static_cast<int8_t>(s * (q - z));
}

bool has_minus128(const int8_t* x, int64_t n) {
  bool bad = false;
  for (int64_t i = 0; i < n; ++i) bad |= x[i] == -128;
  return bad;
}

// ---------------------------------------------------------------- activation quantization

inline float load_float(const void* x, DType dt, int64_t i) {
  if (dt == DType::f16) return half_to_float(static_cast<const uint16_t*>(x)[i]);
  if (dt == DType::bf16) return bf16_to_float(static_cast<const uint16_t*>(x)[i]);
  return static_cast<const float*>(x)[i];
}

// max|x[m, :]| and the count of non-finite entries of row m (K a multiple of 32).
#if defined(__AVX2__)
template <DType DT>
__attribute__((target("avx2,f16c"))) inline __m256 load8(const void* x, int64_t i) {
  if constexpr (DT == DType::f32) {
    return _mm256_loadu_ps(static_cast<const float*>(x) + i);
  } else {
    const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(static_cast<const uint16_t*>(x) + i));
    if constexpr (DT == DType::f16) return _mm256_cvtph_ps(h);
    else return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
  }
}

template <DType DT>
__attribute__((target("avx2,f16c"))) float row_amax(const void* x, int64_t K, int64_t* nonfinite) {
  const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
  const __m256i exp_mask = _mm256_set1_epi32(0x7f800000);
  __m256 amax = _mm256_setzero_ps();
  __m256i bad = _mm256_setzero_si256();  // minus the count of non-finite entries per lane
  for (int64_t k = 0; k < K; k += 8) {
    const __m256 v = load8<DT>(x, k);
    bad = _mm256_add_epi32(bad, _mm256_cmpeq_epi32(_mm256_and_si256(_mm256_castps_si256(v), exp_mask), exp_mask));
    amax = _mm256_max_ps(amax, _mm256_and_ps(v, abs_mask));
  }
  __m128 a = _mm_max_ps(_mm256_castps256_ps128(amax), _mm256_extractf128_ps(amax, 1));
  a = _mm_max_ps(a, _mm_movehl_ps(a, a));
  a = _mm_max_ss(a, _mm_shuffle_ps(a, a, 1));
  alignas(32) int32_t b[8];
  _mm256_store_si256(reinterpret_cast<__m256i*>(b), bad);
  int64_t n = 0;
  for (int i = 0; i < 8; ++i) n -= b[i];
  *nonfinite += n;
  return _mm_cvtss_f32(a);
}

// x_q = clamp(rint(x / s), ±127): the float32 division and round-half-to-even of torch.
template <DType DT>
__attribute__((target("avx2,f16c"))) void row_quantize(const void* x, int64_t K, float s, int8_t* q) {
  const __m256 sv = _mm256_set1_ps(s), lo = _mm256_set1_ps(-127.0f), hi = _mm256_set1_ps(127.0f);
  const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
  for (int64_t k = 0; k < K; k += 32) {
    __m256i i32[4];
    for (int u = 0; u < 4; ++u) {
      const __m256 r = _mm256_round_ps(_mm256_div_ps(load8<DT>(x, k + 8 * u), sv), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
      i32[u] = _mm256_cvttps_epi32(_mm256_min_ps(_mm256_max_ps(r, lo), hi));
    }
    const __m256i b = _mm256_packs_epi16(_mm256_packs_epi32(i32[0], i32[1]), _mm256_packs_epi32(i32[2], i32[3]));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(q + k), _mm256_permutevar8x32_epi32(b, order));
  }
}
#endif

float row_amax_portable(const void* x, DType dt, int64_t K, int64_t* nonfinite) {
  float amax = 0.0f;
  int64_t bad = 0;
  for (int64_t k = 0; k < K; ++k) {
    const float v = load_float(x, dt, k);
    bad += !std::isfinite(v);
    amax = std::max(amax, std::fabs(v));
  }
  *nonfinite += bad;
  return amax;
}

void row_quantize_portable(const void* x, DType dt, int64_t K, float s, int8_t* q) {
  for (int64_t k = 0; k < K; ++k) {
    const float r = std::nearbyint(load_float(x, dt, k) / s);
    q[k] = static_cast<int8_t>(std::min(std::max(r, -127.0f), 127.0f));
  }
}

// x (M, K) of dt → x_q (M, K) int8 and xs (M,); returns the count of non-finite x (x_q and xs
// are then incomplete).
int64_t quantize_rows(const void* x, DType dt, int64_t M, int64_t K, int8_t* xq, float* xs) {
  const int64_t esize = dt == DType::f32 ? 4 : 2;
  return run_chunks(M, M * K > (int64_t(1) << 18), [&](int64_t m0, int64_t m1) {
    int64_t bad = 0;
    for (int64_t m = m0; m < m1; ++m) {
      const void* row = static_cast<const char*>(x) + m * K * esize;
      int64_t nonfinite = 0;
      float amax;
#if defined(__AVX2__)
      amax = dt == DType::f32 ? row_amax<DType::f32>(row, K, &nonfinite)
           : dt == DType::f16 ? row_amax<DType::f16>(row, K, &nonfinite)
                              : row_amax<DType::bf16>(row, K, &nonfinite);
#else
      amax = row_amax_portable(row, dt, K, &nonfinite);
#endif
      bad += nonfinite;
      if (nonfinite) continue;
      // torch: amax.clamp_(min=finfo(float32).tiny).div_(127)
      const float s = std::max(amax, FLT_MIN) / 127.0f;
      xs[m] = s;
#if defined(__AVX2__)
      if (dt == DType::f32) row_quantize<DType::f32>(row, K, s, xq + m * K);
      else if (dt == DType::f16) row_quantize<DType::f16>(row, K, s, xq + m * K);
      else row_quantize<DType::bf16>(row, K, s, xq + m * K);
#else
      row_quantize_portable(row, dt, K, s, xq + m * K);
#endif
    }
    return bad;
  });
}

// ---------------------------------------------------------------- portable path

void dgq_generic(const int8_t* x, const uint8_t* qw, const uint8_t* zeros, const int8_t* gs, int32_t* y, int64_t M,
                 int64_t N, int64_t K, int64_t group) {
  const int64_t G = K / group;
  run_chunks(N, M * N * K >= kParallelWork, [&](int64_t n0, int64_t n1) {
    for (int64_t n = n0; n < n1; ++n) {
      for (int64_t m = 0; m < M; ++m) {
        const int8_t* xm = x + m * K;
        uint32_t acc = 0;  // modulo 2^32, as the SIMD paths: |acc| < 2^31 for K <= 133120
        for (int64_t g = 0; g < G; ++g) {
          int8_t T[16];
          group_table(zeros[n * G + g], gs[n * G + g], T);
          const uint8_t* codes = qw + n * (K / 2) + g * (group / 2);
          const int8_t* xg = xm + g * group;
          for (int64_t k = 0; k < group; k += 2) {
            const uint8_t b = codes[k / 2];
            acc += uint32_t(int32_t(xg[k]) * int32_t(T[b >> 4])) + uint32_t(int32_t(xg[k + 1]) * int32_t(T[b & 15]));
          }
        }
        y[m * N + n] = static_cast<int32_t>(acc);
      }
    }
    return int64_t(0);
  });
}

#if defined(__AVX2__)
// ---------------------------------------------------------------- table layout (VNNI, AMX)

// x̃[m, b·128 + j] = x[m, b·128 + 2j], x̃[m, b·128 + 64 + j] = x[m, b·128 + 2j + 1] (j < 64).
// Returns true when an entry is −128 (outside the symmetric INT8 range the kernels assume).
__attribute__((target("avx2"))) bool permute_x(const int8_t* x, int64_t M, int64_t K, int8_t* xp) {
  return run_chunks(M, M * K > (int64_t(1) << 18), [&](int64_t m0, int64_t m1) {
    int found = 0;
    for (int64_t m = m0; m < m1; ++m) {
      const int8_t* src = x + m * K;
      int8_t* dst = xp + m * K;
      // even bytes = low bytes of the 16-bit lanes, odd = high bytes; packus interleaves 128-bit
      // lanes, the 64-bit permute puts them back in order
      const __m256i lo = _mm256_set1_epi16(0xff), m128 = _mm256_set1_epi8(static_cast<char>(-128));
      for (int64_t b = 0; b < K; b += 128) {
        for (int64_t h = 0; h < 2; ++h) {
          const __m256i v0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + b + 64 * h));
          const __m256i v1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + b + 64 * h + 32));
          found |= _mm256_movemask_epi8(_mm256_or_si256(_mm256_cmpeq_epi8(v0, m128), _mm256_cmpeq_epi8(v1, m128)));
          const __m256i ev = _mm256_packus_epi16(_mm256_and_si256(v0, lo), _mm256_and_si256(v1, lo));
          const __m256i od = _mm256_packus_epi16(_mm256_srli_epi16(v0, 8), _mm256_srli_epi16(v1, 8));
          _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + b + 32 * h), _mm256_permute4x64_epi64(ev, 0xd8));
          _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + b + 64 + 32 * h), _mm256_permute4x64_epi64(od, 0xd8));
        }
      }
    }
    return int64_t(found != 0);
  }) != 0;
}

// 32 codes of packed bytes 16h .. 16h + 15 of a 128-weight block (h < 4) as [16 even | 16 odd],
// to match x̃'s 16-byte runs at 16h and 64 + 16h of the block.
__attribute__((target("avx2"))) inline __m256i codes32(const uint8_t* packed16) {
  const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(packed16));
  const __m128i m = _mm_set1_epi8(15);
  return _mm256_set_m128i(_mm_and_si128(b, m), _mm_and_si128(_mm_srli_epi16(b, 4), m));
}

__attribute__((target("avx2"))) inline __m256i x32(const int8_t* xc, int h) {
  return _mm256_set_m128i(_mm_loadu_si128(reinterpret_cast<const __m128i*>(xc + 64 + 16 * h)),
                          _mm_loadu_si128(reinterpret_cast<const __m128i*>(xc + 16 * h)));
}

__attribute__((target("avx2"))) inline int32_t hsum256(__m256i v) {
  __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4e));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xb1));
  return _mm_cvtsi128_si32(s);
}

// AVX-VNNI: rows m0 .. m0 + MR − 1 against channel n; the weight vector of each step is expanded
// once. (x + 128) is the unsigned operand; the 128·Σw8 offset is removed at the end.
template <int MR>
__attribute__((target("avx2,avxvnni"))) inline void dot_avxvnni(const int8_t* xp, const uint8_t* qrow,
                                                                const uint8_t* z, const int8_t* s, int32_t wsum,
                                                                int32_t* y, int64_t N, int64_t K, int64_t group) {
  __m256i acc[MR];
  for (int i = 0; i < MR; ++i) acc[i] = _mm256_setzero_si256();
  const __m256i flip = _mm256_set1_epi8(static_cast<char>(0x80));
  for (int64_t g = 0; g < K / group; ++g) {
    alignas(16) int8_t T[16];
    group_table(z[g], s[g], T);
    const __m256i tab = _mm256_broadcastsi128_si256(_mm_load_si128(reinterpret_cast<const __m128i*>(T)));
    for (int64_t c = g * group; c < (g + 1) * group; c += 128)
      for (int h = 0; h < 4; ++h) {
        const __m256i w = _mm256_shuffle_epi8(tab, codes32(qrow + c / 2 + 16 * h));
        for (int i = 0; i < MR; ++i)
          acc[i] = _mm256_dpbusd_avx_epi32(acc[i], _mm256_xor_si256(x32(xp + i * K + c, h), flip), w);
      }
  }
  for (int i = 0; i < MR; ++i) y[i * N] = minus_offset(hsum256(acc[i]), 128, wsum);
}

void dgq_avxvnni(const int8_t* xp, const uint8_t* qw, const uint8_t* zeros, const int8_t* gs, const int32_t* wsum,
                 int32_t* y, int64_t M, int64_t N, int64_t K, int64_t group) {
  const int64_t G = K / group;
  run_chunks(N, M * N * K >= kParallelWork, [&](int64_t n0, int64_t n1) {
    for (int64_t n = n0; n < n1; ++n) {
      const uint8_t* qrow = qw + n * (K / 2);
      const uint8_t* z = zeros + n * G;
      const int8_t* s = gs + n * G;
      int64_t m = 0;
      for (; m + 4 <= M; m += 4) dot_avxvnni<4>(xp + m * K, qrow, z, s, wsum[n], y + m * N + n, N, K, group);
      for (; m < M; ++m) dot_avxvnni<1>(xp + m * K, qrow, z, s, wsum[n], y + m * N + n, N, K, group);
    }
    return int64_t(0);
  });
}

// ---------------------------------------------------------------- AVX2 path

// x̂[m, c + j] = x[m, c + 2j], x̂[m, c + 32 + j] = x[m, c + 2j + 1] (every 64 k: c, j < 32), and
// the group sums xsum[m, g] = Σ_{k∈g} x[m, k]. Returns true when an entry is −128.
__attribute__((target("avx2"))) bool prepare_avx2(const int8_t* x, int64_t M, int64_t K, int64_t group, int8_t* xh,
                                                  int32_t* xsum) {
  const int64_t G = K / group;
  return run_chunks(M, M * K > (int64_t(1) << 18), [&](int64_t m0, int64_t m1) {
    int found = 0;
    for (int64_t m = m0; m < m1; ++m) {
      const __m256i lo = _mm256_set1_epi16(0xff), m128 = _mm256_set1_epi8(static_cast<char>(-128));
      const __m256i ones8 = _mm256_set1_epi8(1), ones16 = _mm256_set1_epi16(1);
      for (int64_t g = 0; g < G; ++g) {
        __m256i sum = _mm256_setzero_si256();
        for (int64_t c = g * group; c < (g + 1) * group; c += 64) {
          const __m256i v0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + m * K + c));
          const __m256i v1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + m * K + c + 32));
          found |= _mm256_movemask_epi8(_mm256_or_si256(_mm256_cmpeq_epi8(v0, m128), _mm256_cmpeq_epi8(v1, m128)));
          const __m256i pairs = _mm256_add_epi16(_mm256_maddubs_epi16(ones8, v0), _mm256_maddubs_epi16(ones8, v1));
          sum = _mm256_add_epi32(sum, _mm256_madd_epi16(pairs, ones16));
          const __m256i ev = _mm256_packus_epi16(_mm256_and_si256(v0, lo), _mm256_and_si256(v1, lo));
          const __m256i od = _mm256_packus_epi16(_mm256_srli_epi16(v0, 8), _mm256_srli_epi16(v1, 8));
          _mm256_storeu_si256(reinterpret_cast<__m256i*>(xh + m * K + c), _mm256_permute4x64_epi64(ev, 0xd8));
          _mm256_storeu_si256(reinterpret_cast<__m256i*>(xh + m * K + c + 32), _mm256_permute4x64_epi64(od, 0xd8));
        }
        xsum[m * G + g] = hsum256(sum);
      }
    }
    return int64_t(found != 0);
  }) != 0;
}

// Rows 0 .. MR − 1 (x̂ rows K apart, xsum rows G apart) against channels 0 .. NR − 1 (code rows K/2
// apart, zeros / scales rows G apart); y rows N apart. Per 64 weights and (row, channel): one
// pair of vpmaddubsw, a 16-bit add, vpmaddwd with s_int and a 32-bit add; the 64 codes of a
// channel are split once for all MR rows and each x̂ chunk is loaded once for all NR channels.
template <int MR, int NR>
__attribute__((target("avx2"))) inline void tile_avx2(const int8_t* xh, const int32_t* xsum, const uint8_t* qw,
                                                      const uint8_t* zeros, const int8_t* gs, int32_t* y, int64_t N,
                                                      int64_t K, int64_t group) {
  const int64_t G = K / group, Kh = K / 2;
  __m256i acc[MR][NR];
  uint32_t corr[MR][NR];  // Σ_g s_int·z·Σx, modulo 2^32
  for (int i = 0; i < MR; ++i)
    for (int j = 0; j < NR; ++j) {
      acc[i][j] = _mm256_setzero_si256();
      corr[i][j] = 0;
    }
  const __m256i m4 = _mm256_set1_epi8(15);
  for (int64_t g = 0; g < G; ++g) {
    __m256i sv[NR];
    for (int j = 0; j < NR; ++j) {
      const int8_t s = gs[j * G + g];
      const uint32_t sz = static_cast<uint32_t>(s) * static_cast<uint32_t>(zeros[j * G + g]);
      sv[j] = _mm256_set1_epi16(s);
      for (int i = 0; i < MR; ++i) corr[i][j] += sz * static_cast<uint32_t>(xsum[i * G + g]);
    }
    const uint8_t* qg = qw + g * (group / 2);
    const int8_t* xg = xh + g * group;
    for (int64_t c = 0; c < group; c += 64) {
      __m256i xe[MR], xo[MR];
      for (int i = 0; i < MR; ++i) {
        xe[i] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xg + i * K + c));
        xo[i] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xg + i * K + c + 32));
      }
      for (int j = 0; j < NR; ++j) {
        const __m256i b = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(qg + j * Kh + (c >> 1)));
        const __m256i even = _mm256_and_si256(_mm256_srli_epi16(b, 4), m4), odd = _mm256_and_si256(b, m4);
        for (int i = 0; i < MR; ++i) {
          const __m256i p = _mm256_add_epi16(_mm256_maddubs_epi16(even, xe[i]), _mm256_maddubs_epi16(odd, xo[i]));
          acc[i][j] = _mm256_add_epi32(acc[i][j], _mm256_madd_epi16(p, sv[j]));
        }
      }
    }
  }
  for (int i = 0; i < MR; ++i)
    for (int j = 0; j < NR; ++j)
      y[i * N + j] = static_cast<int32_t>(static_cast<uint32_t>(hsum256(acc[i][j])) - corr[i][j]);
}

// Channel blocks of NR, MR rows at a time within a block. The threads share out the channel
// blocks (each block's codes are then read once), or the rows when there are too few blocks.
template <int MR, int NR>
void avx2_blocks(const int8_t* xh, const int32_t* xsum, const uint8_t* qw, const uint8_t* zeros, const int8_t* gs,
                 int32_t* y, int64_t M, int64_t N, int64_t K, int64_t group) {
  const int64_t G = K / group, Kh = K / 2, nb = (N + NR - 1) / NR;
  // rows m0 .. m1 − 1 of channel block t
  auto block = [&](int64_t m0, int64_t m1, int64_t t) {
    const int64_t n0 = NR * t;
    if (n0 + NR <= N) {
      int64_t m = m0;
      for (; m + MR <= m1; m += MR)
        tile_avx2<MR, NR>(xh + m * K, xsum + m * G, qw + n0 * Kh, zeros + n0 * G, gs + n0 * G, y + m * N + n0, N, K, group);
      for (; m < m1; ++m)
        tile_avx2<1, NR>(xh + m * K, xsum + m * G, qw + n0 * Kh, zeros + n0 * G, gs + n0 * G, y + m * N + n0, N, K, group);
    } else {
      for (int64_t n = n0; n < N; ++n) {
        int64_t m = m0;
        for (; m + MR <= m1; m += MR)
          tile_avx2<MR, 1>(xh + m * K, xsum + m * G, qw + n * Kh, zeros + n * G, gs + n * G, y + m * N + n, N, K, group);
        for (; m < m1; ++m)
          tile_avx2<1, 1>(xh + m * K, xsum + m * G, qw + n * Kh, zeros + n * G, gs + n * G, y + m * N + n, N, K, group);
      }
    }
  };
  const bool parallel = M * N * K >= kParallelWork;
  const int64_t mb = (M + MR - 1) / MR;
  if (parallel && nb < 4 * int64_t(omp_get_max_threads()) && mb > nb) {
    run_chunks(mb, true, [&](int64_t r0, int64_t r1) {
      for (int64_t t = 0; t < nb; ++t) block(r0 * MR, std::min(M, r1 * MR), t);
      return int64_t(0);
    });
  } else {
    run_chunks(nb, parallel, [&](int64_t t0, int64_t t1) {
      for (int64_t t = t0; t < t1; ++t) block(0, M, t);
      return int64_t(0);
    });
  }
}

void dgq_avx2(const int8_t* xh, const int32_t* xsum, const uint8_t* qw, const uint8_t* zeros, const int8_t* gs,
              int32_t* y, int64_t M, int64_t N, int64_t K, int64_t group) {
  if (M == 1) avx2_blocks<1, 4>(xh, xsum, qw, zeros, gs, y, M, N, K, group);
  else avx2_blocks<4, 2>(xh, xsum, qw, zeros, gs, y, M, N, K, group);
}
#endif

#if defined(__AVX512F__)
// The group's table s_int·(q − z), q = 0..15, in every 128-bit lane.
__attribute__((target("avx512f,avx512bw"))) inline __m512i table512(int z, int s) {
  const __m256i q = _mm256_setr_epi16(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  const __m256i v = _mm256_mullo_epi16(_mm256_sub_epi16(q, _mm256_set1_epi16(int16_t(z))), _mm256_set1_epi16(int16_t(s)));
  const __m128i b = _mm256_cvtepi16_epi8(v);  // truncation: entries of stored codes are within ±127
  return _mm512_broadcast_i32x4(b);
}

// The 128 codes of a block's 64 packed bytes: the even k (high nibbles) and the odd k.
__attribute__((target("avx512f,avx512bw"))) inline void codes128(const uint8_t* packed64, __m512i& even,
                                                                 __m512i& odd) {
  const __m512i m4 = _mm512_set1_epi8(15);
  const __m512i b = _mm512_loadu_si512(packed64);
  even = _mm512_and_si512(_mm512_srli_epi16(b, 4), m4);
  odd = _mm512_and_si512(b, m4);
}

// MR rows x NR channels: each x̃ chunk is loaded once per step for NR channels, each weight
// vector expanded once for MR rows.
template <int MR, int NR>
__attribute__((target("avx512f,avx512bw,avx512vnni"))) inline void tile_vnni512(
    const int8_t* xp, const uint8_t* qw, const uint8_t* zeros, const int8_t* gs, const int32_t* wsum, int32_t* y,
    int64_t N, int64_t K, int64_t group) {
  const int64_t G = K / group;
  __m512i acc[MR][NR];
  for (int i = 0; i < MR; ++i)
    for (int j = 0; j < NR; ++j) acc[i][j] = _mm512_setzero_si512();
  const __m512i flip = _mm512_set1_epi8(static_cast<char>(0x80));
  for (int64_t g = 0; g < G; ++g) {
    __m512i tab[NR];
    for (int j = 0; j < NR; ++j) tab[j] = table512(zeros[j * G + g], gs[j * G + g]);
    for (int64_t c = g * group; c < (g + 1) * group; c += 128) {
      __m512i we[NR], wo[NR];
      for (int j = 0; j < NR; ++j) {
        codes128(qw + j * (K / 2) + c / 2, we[j], wo[j]);
        we[j] = _mm512_shuffle_epi8(tab[j], we[j]);
        wo[j] = _mm512_shuffle_epi8(tab[j], wo[j]);
      }
      for (int i = 0; i < MR; ++i) {
        const __m512i xe = _mm512_xor_si512(_mm512_loadu_si512(xp + i * K + c), flip);
        const __m512i xo = _mm512_xor_si512(_mm512_loadu_si512(xp + i * K + c + 64), flip);
        for (int j = 0; j < NR; ++j) acc[i][j] = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(acc[i][j], xe, we[j]), xo, wo[j]);
      }
    }
  }
  for (int i = 0; i < MR; ++i)
    for (int j = 0; j < NR; ++j) {
      // lanes of (x + 128)·w8 may pass int32 before the offset is removed: add them with the vector
      // adds, which wrap (GCC's _mm512_reduce_add_epi32 adds signed scalars: undefined on overflow)
      const __m512i v = acc[i][j];
      y[i * N + j] = minus_offset(hsum256(_mm256_add_epi32(_mm512_castsi512_si256(v), _mm512_extracti64x4_epi64(v, 1))),
                                  128, wsum[j]);
    }
}

template <int NR>
inline void rows_vnni512(const int8_t* xp, const uint8_t* qw, const uint8_t* zeros, const int8_t* gs,
                         const int32_t* wsum, int32_t* y, int64_t M, int64_t N, int64_t K, int64_t group) {
  constexpr int MR = NR >= 8 ? 2 : 4;  // MR·NR accumulators plus 2·NR weight vectors fit in 32 registers
  int64_t m = 0;
  for (; m + MR <= M; m += MR) tile_vnni512<MR, NR>(xp + m * K, qw, zeros, gs, wsum, y + m * N, N, K, group);
  for (; m < M; ++m) tile_vnni512<1, NR>(xp + m * K, qw, zeros, gs, wsum, y + m * N, N, K, group);
}

template <int NR>
void vnni512_blocks(const int8_t* xp, const uint8_t* qw, const uint8_t* zeros, const int8_t* gs, const int32_t* wsum,
                    int32_t* y, int64_t M, int64_t N, int64_t K, int64_t group) {
  const int64_t G = K / group, nq = (N + NR - 1) / NR;
#pragma omp parallel for schedule(static) if (M * N * K >= kParallelWork)
  for (int64_t t = 0; t < nq; ++t) {
    const int64_t n = NR * t;
    if (n + NR <= N) {
      rows_vnni512<NR>(xp, qw + n * (K / 2), zeros + n * G, gs + n * G, wsum + n, y + n, M, N, K, group);
    } else {
      for (int64_t j = n; j < N; ++j)
        rows_vnni512<1>(xp, qw + j * (K / 2), zeros + j * G, gs + j * G, wsum + j, y + j, M, N, K, group);
    }
  }
}

// GEMV-like calls (M <= 2) take 8 channels per step (fewer x loads per weight byte); otherwise
// 4 channels x 4 rows.
void dgq_vnni512(const int8_t* xp, const uint8_t* qw, const uint8_t* zeros, const int8_t* gs, const int32_t* wsum,
                 int32_t* y, int64_t M, int64_t N, int64_t K, int64_t group) {
  if (M <= 2) vnni512_blocks<8>(xp, qw, zeros, gs, wsum, y, M, N, K, group);
  else vnni512_blocks<4>(xp, qw, zeros, gs, wsum, y, M, N, K, group);
}

// ---------------------------------------------------------------- AMX

bool amx_permitted() {
#if defined(__linux__)
  static const bool ok = [] {
    if (!__builtin_cpu_supports("amx-int8") || !__builtin_cpu_supports("amx-tile")) return false;
    constexpr long kReqPerm = 0x1023, kXtileData = 18;  // ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA
    return syscall(SYS_arch_prctl, kReqPerm, kXtileData) == 0;
  }();
  return ok;
#else
  return false;
#endif
}

struct alignas(64) TileConfig {
  uint8_t palette = 1, start_row = 0, reserved[14] = {};
  uint16_t colsb[16] = {};
  uint8_t rows[16] = {};
};

// The 128 expanded weights of block c (k̃ order) of channel row `qrow`: the even half to lo_dst
// (chunk c / 64) and the odd half to hi_dst (chunk c / 64 + 1).
__attribute__((target("avx512f,avx512bw"))) inline void expand128(const uint8_t* qrow, int64_t c, __m512i tab,
                                                                  int8_t* lo_dst, int8_t* hi_dst) {
  __m512i even, odd;
  codes128(qrow + c / 2, even, odd);
  _mm512_storeu_si512(lo_dst, _mm512_shuffle_epi8(tab, even));
  _mm512_storeu_si512(hi_dst, _mm512_shuffle_epi8(tab, odd));
}

// Expansion of one channel block's panel, in units of (one 128-weight block) x (one channel), so
// that it can be spread over the tile products of the previous block.
struct PanelExpander {
  const uint8_t* qw;
  const uint8_t* zeros;
  const int8_t* gs;
  int64_t N, K, G, group, n0 = 0, rows = 0, next = 0, total = 0;
  int8_t* panel = nullptr;

  static constexpr int64_t NB = 32;  // channels per block: two A tiles

  void start(int64_t block, int8_t* dst) {
    n0 = block * NB;
    rows = std::min(NB, N - n0);
    panel = dst;
    next = 0;
    total = (K / 128) * NB;
  }
  bool done() const { return next >= total; }
  // Unit u: 128-weight block c = u / NB, channel r = u % NB (the panel is written in order).
  __attribute__((target("avx512f,avx512bw"))) void step(int64_t units) {
    for (const int64_t end = std::min(total, next + units); next < end; ++next) {
      const int64_t c = (next / NB) * 128, r = next % NB;
      int8_t* even = panel + c * NB + r * 64;
      int8_t* odd = panel + (c + 64) * NB + r * 64;
      if (r >= rows) {
        std::memset(even, 0, 64);
        std::memset(odd, 0, 64);
        continue;
      }
      const int64_t n = n0 + r, g = c / group;
      expand128(qw + n * (K / 2), c, table512(zeros[n * G + g], gs[n * G + g]), even, odd);
    }
  }
};

__attribute__((target("avx512f,avx512bw,amx-tile,amx-int8"))) void dgq_amx(
    const int8_t* xp, const uint8_t* qw, const uint8_t* zeros, const int8_t* gs, int32_t* y, int64_t M, int64_t N,
    int64_t K, int64_t group) {
  constexpr int64_t NB = PanelExpander::NB;
  const int64_t Mp = (M + 15) / 16 * 16, nmb = Mp / 16, npairs = (nmb + 1) / 2;
  // x̃ in the VNNI layout of B tiles: xv[mb][k̃/4][16 rows][4], zero rows beyond M.
  AlignedBuffer<int8_t> xv(size_t(Mp * K));
  if (Mp > M) std::memset(xv.data + (Mp / 16 - 1) * 16 * K, 0, size_t(16 * K));  // the padded last row block
#pragma omp parallel for schedule(static) if (M * N * K >= kParallelWork)
  for (int64_t m = 0; m < M; ++m)
    for (int64_t k4 = 0; k4 < K / 4; ++k4)
      std::memcpy(xv.data + ((m / 16) * (K / 4) + k4) * 64 + (m % 16) * 4, xp + m * K + 4 * k4, 4);
  const int64_t nnb = (N + NB - 1) / NB;
#pragma omp parallel if (M * N * K >= kParallelWork)
  {
    TileConfig cfg;
    for (int t = 0; t < 8; ++t) { cfg.colsb[t] = 64; cfg.rows[t] = 16; }
    _tile_loadconfig(&cfg);
    // panels[i][c][r][64]: chunk c (64 k̃) of channel n0 + r, so each A tile is 1 KiB contiguous;
    // two of them: the tile products read one while the next block is expanded into the other,
    // a few units per k-step (the AMX and AVX-512 units then work at the same time).
    AlignedBuffer<int8_t> panels(size_t(2 * NB * K));
    AlignedBuffer<int32_t> cmem(size_t(npairs * 4 * 256));  // the C tiles of every row pair
    const int64_t nt = omp_get_num_threads(), tid = omp_get_thread_num();
    const int64_t lo = nnb * tid / nt, hi = nnb * (tid + 1) / nt;  // this thread's channel blocks
    PanelExpander ex{qw, zeros, gs, N, K, K / group, group};
    if (lo < hi) {
      ex.start(lo, panels.data);
      ex.step(ex.total);
    }
    // (at least one step: M = 0 or K = 0 leave nothing to interleave, and must not divide by zero)
    const int64_t steps = std::max<int64_t>(1, npairs * (K / 64)), per_step = (ex.total + steps - 1) / steps;
    for (int64_t nb = lo; nb < hi; ++nb) {
      const int64_t n0 = nb * NB;
      const int8_t* panel = panels.data + ((nb - lo) % 2) * NB * K;
      const bool more = nb + 1 < hi;
      if (more) ex.start(nb + 1, panels.data + ((nb + 1 - lo) % 2) * NB * K);
      for (int64_t p = 0; p < npairs; ++p) {
        int32_t* cp = cmem.data + p * 4 * 256;
        _tile_zero(0); _tile_zero(1); _tile_zero(2); _tile_zero(3);
        const int8_t* b0 = xv.data + 2 * p * (K / 4) * 64;
        const int8_t* b1 = b0 + (K / 4) * 64;
        if (2 * p + 1 < nmb) {
          for (int64_t c = 0; c < K; c += 64) {  // loads interleaved with the products they allow
            _tile_loadd(4, panel + c * NB, 64);
            _tile_loadd(6, b0 + c * 16, 64);
            _tile_dpbssd(0, 4, 6);
            _tile_loadd(7, b1 + c * 16, 64);
            _tile_dpbssd(2, 4, 7);
            _tile_loadd(5, panel + c * NB + 1024, 64);
            _tile_dpbssd(1, 5, 6);
            _tile_dpbssd(3, 5, 7);
            if (more) ex.step(per_step);
          }
        } else {
          for (int64_t c = 0; c < K; c += 64) {
            _tile_loadd(4, panel + c * NB, 64);
            _tile_loadd(6, b0 + c * 16, 64);
            _tile_dpbssd(0, 4, 6);
            _tile_loadd(5, panel + c * NB + 1024, 64);
            _tile_dpbssd(1, 5, 6);
            if (more) ex.step(per_step);
          }
        }
        _tile_stored(0, cp, 64); _tile_stored(1, cp + 256, 64); _tile_stored(2, cp + 512, 64); _tile_stored(3, cp + 768, 64);
      }
      if (more) ex.step(ex.total);  // whatever the products did not cover
      for (int64_t p = 0; p < npairs; ++p)  // C tile t: channels 16 (t % 2) .., rows 16 (2p + t / 2) ..
        for (int t = 0; t < 4; ++t) {
          const int32_t* cbuf = cmem.data + (p * 4 + t) * 256;
          const int64_t nn0 = n0 + 16 * (t % 2), mm0 = (2 * p + t / 2) * 16;
          const int64_t ni = std::min<int64_t>(16, N - nn0);
          for (int64_t j = 0; j < 16 && mm0 + j < M; ++j)  // row by row: 64-byte runs of y
            for (int64_t i = 0; i < ni; ++i) y[(mm0 + j) * N + nn0 + i] = cbuf[i * 16 + j];
        }
    }
    _tile_release();
  }
}
#endif

// ---------------------------------------------------------------- epilogue

// y (int32) → float32 in place: (float(y)·xs[m])·sc[n] (+ bias[n]), each operation rounded to
// float32 in that order, as torch computes acc.float() * x_scale * channel_scales + bias.
void epilogue(int32_t* y, const float* xs, const float* sc, const float* bias, int64_t M, int64_t N) {
  float* yf = reinterpret_cast<float*>(y);
  run_chunks(M, M * N > (int64_t(1) << 16), [&](int64_t m0, int64_t m1) {
    for (int64_t m = m0; m < m1; ++m) {
      const float a = xs[m];
      int64_t n = 0;
#if defined(__AVX2__)
      const __m256 av = _mm256_set1_ps(a);
      for (; n + 8 <= N; n += 8) {
        const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(y + m * N + n));
        __m256 r = _mm256_mul_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(v), av), _mm256_loadu_ps(sc + n));
        if (bias) r = _mm256_add_ps(rounded(r), _mm256_loadu_ps(bias + n));
        _mm256_storeu_ps(yf + m * N + n, r);
      }
#endif
      for (; n < N; ++n) {
        float r = (static_cast<float>(y[m * N + n]) * a) * sc[n];
        if (bias) r = rounded(r) + bias[n];
        yf[m * N + n] = r;
      }
    }
    return int64_t(0);
  });
}

// ---------------------------------------------------------------- path choice

int choose_path(int allowed, int64_t M) {
#if defined(__AVX2__)
#if defined(__AVX512F__)
  if ((allowed & dgq::kAmx) && M >= 16 && amx_permitted()) return dgq::kAmx;
  if ((allowed & dgq::kAvx512Vnni) && __builtin_cpu_supports("avx512vnni")) return dgq::kAvx512Vnni;
#endif
  if ((allowed & dgq::kAvxVnni) && __builtin_cpu_supports("avxvnni")) return dgq::kAvxVnni;
  if (allowed & dgq::kAvx2) return dgq::kAvx2;
#endif
  (void)allowed;
  (void)M;
  return dgq::kPortable;
}

// Scratch bytes of the path's x layout.
size_t prepared_bytes(int path, int64_t M, int64_t K, int64_t group) {
  if (path == dgq::kPortable) return 0;
  const size_t xb = Workspace::round64(size_t(M * K));
  return path == dgq::kAvx2 ? xb + Workspace::round64(size_t(M * (K / group)) * 4) : xb;
}

// y (M, N) int32 = x · w8ᵀ on `path`; returns 0 or dgq::kMinus128 (nothing computed).
int run_path(int path, const int8_t* x, const uint8_t* qw, const uint8_t* zeros, const int8_t* gs,
             const int32_t* wsum, int32_t* y, int64_t M, int64_t N, int64_t K, int64_t group, Workspace& ws) {
  (void)wsum;
  (void)ws;
#if defined(__AVX2__)
  if (path == dgq::kAvx2) {
    int8_t* xh = ws.take<int8_t>(size_t(M * K));
    int32_t* xsum = ws.take<int32_t>(size_t(M * (K / group)));
    if (prepare_avx2(x, M, K, group, xh, xsum)) return dgq::kMinus128;
    dgq_avx2(xh, xsum, qw, zeros, gs, y, M, N, K, group);
    return 0;
  }
  if (path != dgq::kPortable) {
    int8_t* xp = ws.take<int8_t>(size_t(M * K));
    if (permute_x(x, M, K, xp)) return dgq::kMinus128;
#if defined(__AVX512F__)
    if (path == dgq::kAmx) dgq_amx(xp, qw, zeros, gs, y, M, N, K, group);
    else if (path == dgq::kAvx512Vnni) dgq_vnni512(xp, qw, zeros, gs, wsum, y, M, N, K, group);
    else
#endif
      dgq_avxvnni(xp, qw, zeros, gs, wsum, y, M, N, K, group);
    return 0;
  }
#endif
  if (has_minus128(x, M * K)) return dgq::kMinus128;
  dgq_generic(x, qw, zeros, gs, y, M, N, K, group);
  return 0;
}

}  // namespace

int dgq_matmul(const int8_t* x, const uint8_t* qw, const uint8_t* zeros, const int8_t* gs, const int32_t* wsum,
               int32_t* y, int64_t M, int64_t N, int64_t K, int64_t group, int allowed, const float* xs,
               const float* sc, int* path_used) {
  *path_used = 0;
  if (M == 0 || N == 0) return 0;
  const int path = choose_path(allowed, M);
  Workspace ws(prepared_bytes(path, M, K, group));
  const int rc = run_path(path, x, qw, zeros, gs, wsum, y, M, N, K, group, ws);
  if (rc != 0) return rc;
  if (xs && sc) epilogue(y, xs, sc, nullptr, M, N);
  *path_used = path;
  return 0;
}

int dgq_linear(const void* x, DType dt, const uint8_t* qw, const uint8_t* zeros, const int8_t* gs,
               const int32_t* wsum, const float* sc, const float* bias, float* y, int64_t M, int64_t N, int64_t K,
               int64_t group, int allowed, int* path_used) {
  *path_used = 0;
  if (dt != DType::f32 && dt != DType::f16 && dt != DType::bf16) return dgq::kBadDtype;
  if (M == 0) return 0;
  const int path = choose_path(allowed, M);
  Workspace ws(Workspace::round64(size_t(M * K)) + Workspace::round64(size_t(M) * 4) +
               (N ? prepared_bytes(path, M, K, group) : 0));
  int8_t* xq = ws.take<int8_t>(size_t(M * K));
  float* xs = ws.take<float>(size_t(M));
  if (quantize_rows(x, dt, M, K, xq, xs)) return dgq::kNonFinite;
  if (N == 0) return 0;
  int32_t* acc = reinterpret_cast<int32_t*>(y);
  const int rc = run_path(path, xq, qw, zeros, gs, wsum, acc, M, N, K, group, ws);
  if (rc != 0) return rc;  // not reached: quantized activations are in [-127, 127]
  epilogue(acc, xs, sc, bias, M, N);
  *path_used = path;
  return 0;
}

int dgq_path(int allowed, int64_t M) { return choose_path(allowed, M); }

}  // namespace linalg_core::cpu::LC_ISA
