// DGQ A8W4 integer product (Zhang et al. 2024, "Dual Grained Quantization"):
//   y[m, n] = Σ_k x[m, k] · w8[n, k],  w8[n, k] = s_int[n, g] · (q[n, k] − z[n, g]),  g = k / group,
// with x int8 in [−127, 127], q 4-bit codes stored two per byte (high nibble = even k), and 32-bit
// accumulation (exact: |y| ≤ 127² K < 2³¹).
//
// The INT4 → INT8 expansion never goes to memory as a whole matrix. Each group's 16 possible
// values s_int·(q − z) form a 16-byte table and one byte shuffle (vpshufb) turns 64 codes into 64
// int8 weights in a register, which feed the INT8 dot products:
//   * AVX512-VNNI: vpdpbusd (u8 × s8 → s32) with x + 128 as the unsigned operand and the
//     precomputed Σ_k w8[n, k] removing the offset; MR rows of x per expanded weight vector.
//   * AVX-VNNI: the same on 256-bit registers.
//   * AVX2: vpmaddubsw(|w8|, sign(x, w8)) + vpmaddwd (no saturation since |x|, |w8| ≤ 127).
//   * AMX (M ≥ 16): yᵀ = W8 · xᵀ with tdpbssd on 16 × 64 tiles; the weights of 32 channels are
//     expanded into a per-thread L2-resident panel, x is packed once per call in the VNNI layout.
//   * portable: scalar loops.
// The nibble order makes the 64 bytes of a 128-weight block unpack as 64 even k (high nibbles)
// and 64 odd k (low nibbles); x is permuted the same way once per call (x̃ = [evens | odds] per
// 128), so no shuffle is needed on the weight side.
#include <cstdlib>
#include <vector>

#include "isa.h"
#include "linalg_core/cpu_kernels.h"
#include "linalg_core/memory.h"

#if defined(__linux__) && (defined(__x86_64__) || defined(_M_X64))
#include <sys/syscall.h>
#include <unistd.h>
#endif

namespace linalg_core::cpu::LC_ISA {
namespace {

// x̃[m, b·128 + j] = x[m, b·128 + 2j], x̃[m, b·128 + 64 + j] = x[m, b·128 + 2j + 1] (j < 64).
// Sets *bad when an entry is −128 (outside the symmetric INT8 range the kernels assume).
std::vector<int8_t> permute_x(const int8_t* x, int64_t M, int64_t K, bool* bad) {
  std::vector<int8_t> xp(size_t(M * K));
  int found = 0;
#pragma omp parallel for schedule(static) reduction(| : found) if (M * K > (int64_t(1) << 18))
  for (int64_t m = 0; m < M; ++m) {
    const int8_t* src = x + m * K;
    int8_t* dst = xp.data() + m * K;
    for (int64_t b = 0; b < K; b += 128) {
#if defined(__AVX2__)
      // even bytes = low bytes of the 16-bit lanes, odd = high bytes; packus interleaves 128-bit
      // lanes, the 64-bit permute puts them back in order
      const __m256i lo = _mm256_set1_epi16(0xff), m128 = _mm256_set1_epi8(static_cast<char>(-128));
      for (int64_t h = 0; h < 2; ++h) {
        const __m256i v0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + b + 64 * h));
        const __m256i v1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + b + 64 * h + 32));
        found |= _mm256_movemask_epi8(_mm256_or_si256(_mm256_cmpeq_epi8(v0, m128), _mm256_cmpeq_epi8(v1, m128)));
        const __m256i ev = _mm256_packus_epi16(_mm256_and_si256(v0, lo), _mm256_and_si256(v1, lo));
        const __m256i od = _mm256_packus_epi16(_mm256_srli_epi16(v0, 8), _mm256_srli_epi16(v1, 8));
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + b + 32 * h), _mm256_permute4x64_epi64(ev, 0xd8));
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + b + 64 + 32 * h), _mm256_permute4x64_epi64(od, 0xd8));
      }
#else
      for (int64_t j = 0; j < 64; ++j) {
        dst[b + j] = src[b + 2 * j];
        dst[b + 64 + j] = src[b + 2 * j + 1];
        found |= (src[b + 2 * j] == -128) | (src[b + 2 * j + 1] == -128);
      }
#endif
    }
  }
  *bad = found != 0;
  return xp;
}

// acc − offset·wsum modulo 2^32: exact for valid weights, and no signed overflow (undefined
// behaviour) whatever weight_sums a caller passes.
inline int32_t minus_offset(int32_t acc, int32_t offset, int32_t wsum) {
  return static_cast<int32_t>(static_cast<uint32_t>(acc) - static_cast<uint32_t>(offset) * static_cast<uint32_t>(wsum));
}

inline void group_table(int z, int s, int8_t* T) {
  for (int q = 0; q < 16; ++q) T[q] = static_cast<int8_t>(s * (q - z));
}

void dgq_generic(const int8_t* x, const uint8_t* qw, const uint8_t* zeros, const int8_t* gs, int32_t* y, int64_t M,
                 int64_t N, int64_t K, int64_t group) {
  const int64_t G = K / group;
#pragma omp parallel for schedule(static)
  for (int64_t n = 0; n < N; ++n) {
    std::vector<int8_t> w(static_cast<size_t>(K));
    for (int64_t g = 0; g < G; ++g) {
      int8_t T[16];
      group_table(zeros[n * G + g], gs[n * G + g], T);
      for (int64_t k = g * group; k < (g + 1) * group; k += 2) {
        const uint8_t b = qw[n * (K / 2) + k / 2];
        w[size_t(k)] = T[b >> 4];
        w[size_t(k + 1)] = T[b & 15];
      }
    }
    for (int64_t m = 0; m < M; ++m) {
      uint32_t acc = 0;  // modulo 2^32, as the SIMD paths: |acc| < 2^31 for K <= 133120
      for (int64_t k = 0; k < K; ++k) acc += uint32_t(int32_t(x[m * K + k]) * int32_t(w[size_t(k)]));
      y[m * N + n] = static_cast<int32_t>(acc);
    }
  }
}

#if defined(__AVX2__)
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

// Rows m0 .. m0 + MR − 1 against channel n; the weight vector of each step is expanded once.
// STEP(acc, x̃ chunk, w8) is the INT8 dot product of the instruction set.
#define LC_DGQ_DOT256(NAME, TARGET, STEP, OFFSET)                                                              \
  template <int MR>                                                                                              \
  __attribute__((target(TARGET))) inline void NAME(const int8_t* xp, const uint8_t* qrow, const uint8_t* z,     \
                                                   const int8_t* s, int32_t wsum, int32_t* y, int64_t N,         \
                                                   int64_t K, int64_t group) {                                   \
    __m256i acc[MR];                                                                                             \
    for (int i = 0; i < MR; ++i) acc[i] = _mm256_setzero_si256();                                                \
    const __m256i flip = _mm256_set1_epi8(static_cast<char>(0x80)), ones = _mm256_set1_epi16(1);                \
    (void)flip; (void)ones;                                                                                      \
    for (int64_t g = 0; g < K / group; ++g) {                                                                    \
      alignas(16) int8_t T[16];                                                                                  \
      group_table(z[g], s[g], T);                                                                                \
      const __m256i tab = _mm256_broadcastsi128_si256(_mm_load_si128(reinterpret_cast<const __m128i*>(T)));     \
      for (int64_t c = g * group; c < (g + 1) * group; c += 128)                                                 \
        for (int h = 0; h < 4; ++h) {                                                                            \
          const __m256i w = _mm256_shuffle_epi8(tab, codes32(qrow + c / 2 + 16 * h));                            \
          for (int i = 0; i < MR; ++i) STEP(acc[i], x32(xp + i * K + c, h), w);                                  \
        }                                                                                                        \
    }                                                                                                            \
    for (int i = 0; i < MR; ++i) y[i * N] = minus_offset(hsum256(acc[i]), OFFSET, wsum);                                   \
  }

// AVX2: |w8| (unsigned) times x with w8's sign, pairs summed to 16 bits (≤ 2·127², no saturation).
#define LC_STEP_AVX2(A, X, W) \
  A = _mm256_add_epi32(A, _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_sign_epi8(W, W), _mm256_sign_epi8(X, W)), ones))
// AVX-VNNI: (x + 128) as the unsigned operand; the 128·Σw8 offset is removed at the end.
#define LC_STEP_VNNI(A, X, W) A = _mm256_dpbusd_avx_epi32(A, _mm256_xor_si256(X, flip), W)

LC_DGQ_DOT256(dot_avx2, "avx2", LC_STEP_AVX2, 0)
LC_DGQ_DOT256(dot_avxvnni, "avx2,avxvnni", LC_STEP_VNNI, 128)

template <bool VNNI>
void dgq_avx2(const int8_t* xp, const uint8_t* qw, const uint8_t* zeros, const int8_t* gs, const int32_t* wsum,
              int32_t* y, int64_t M, int64_t N, int64_t K, int64_t group) {
  const int64_t G = K / group;
#pragma omp parallel for schedule(static)
  for (int64_t n = 0; n < N; ++n) {
    const uint8_t* qrow = qw + n * (K / 2);
    const uint8_t* z = zeros + n * G;
    const int8_t* s = gs + n * G;
    int64_t m = 0;
    for (; m + 4 <= M; m += 4) {
      if constexpr (VNNI) dot_avxvnni<4>(xp + m * K, qrow, z, s, wsum[n], y + m * N + n, N, K, group);
      else dot_avx2<4>(xp + m * K, qrow, z, s, wsum[n], y + m * N + n, N, K, group);
    }
    for (; m < M; ++m) {
      if constexpr (VNNI) dot_avxvnni<1>(xp + m * K, qrow, z, s, wsum[n], y + m * N + n, N, K, group);
      else dot_avx2<1>(xp + m * K, qrow, z, s, wsum[n], y + m * N + n, N, K, group);
    }
  }
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
    for (int j = 0; j < NR; ++j) y[i * N + j] = minus_offset(_mm512_reduce_add_epi32(acc[i][j]), 128, wsum[j]);
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
#pragma omp parallel for schedule(static)
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
#pragma omp parallel for schedule(static)
  for (int64_t m = 0; m < M; ++m)
    for (int64_t k4 = 0; k4 < K / 4; ++k4)
      std::memcpy(xv.data + ((m / 16) * (K / 4) + k4) * 64 + (m % 16) * 4, xp + m * K + 4 * k4, 4);
  const int64_t nnb = (N + NB - 1) / NB;
#pragma omp parallel
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
    const int64_t steps = npairs * (K / 64), per_step = (ex.total + steps - 1) / steps;
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

// y (int32) -> float32 in place: float(y)·xs[m]·sc[n], the multiplies rounded in that order.
void scale_in_place(int32_t* y, const float* xs, const float* sc, int64_t M, int64_t N) {
  float* yf = reinterpret_cast<float*>(y);
#pragma omp parallel for schedule(static) if (M * N > (int64_t(1) << 16))
  for (int64_t m = 0; m < M; ++m) {
    const float a = xs[m];
#pragma omp simd
    for (int64_t n = 0; n < N; ++n) yf[m * N + n] = (static_cast<float>(y[m * N + n]) * a) * sc[n];
  }
}

const char* run_paths(const int8_t* x, const uint8_t* qw, const uint8_t* zeros, const int8_t* gs, const int32_t* wsum,
                      int32_t* y, int64_t M, int64_t N, int64_t K, int64_t group, int allowed) {
  bool bad = false;
#if defined(__AVX2__)
  const std::vector<int8_t> xp = permute_x(x, M, K, &bad);
  if (bad) return "x contains -128";
#if defined(__AVX512F__)
  if ((allowed & 1) && M >= 16 && amx_permitted()) {
    dgq_amx(xp.data(), qw, zeros, gs, y, M, N, K, group);
    return "amx";
  }
  if ((allowed & 2) && __builtin_cpu_supports("avx512vnni")) {
    dgq_vnni512(xp.data(), qw, zeros, gs, wsum, y, M, N, K, group);
    return "avx512vnni";
  }
#endif
  if ((allowed & 4) && __builtin_cpu_supports("avxvnni")) {
    dgq_avx2<true>(xp.data(), qw, zeros, gs, wsum, y, M, N, K, group);
    return "avxvnni";
  }
  if (allowed & 8) {
    dgq_avx2<false>(xp.data(), qw, zeros, gs, wsum, y, M, N, K, group);
    return "avx2";
  }
#endif
  (void)wsum;
  (void)allowed;
  for (int64_t i = 0; i < M * K; ++i) bad |= x[i] == -128;
  if (bad) return "x contains -128";
  dgq_generic(x, qw, zeros, gs, y, M, N, K, group);
  return "generic";
}

}  // namespace

// Paths: 1 AMX, 2 AVX512-VNNI, 4 AVX-VNNI, 8 AVX2 (allowed set; the best available is used).
// Returns the path's name, or "x contains -128" (nothing computed).
const char* dgq_matmul(const int8_t* x, const uint8_t* qw, const uint8_t* zeros, const int8_t* gs,
                       const int32_t* wsum, int32_t* y, int64_t M, int64_t N, int64_t K, int64_t group,
                       int allowed, const float* xs, const float* sc) {
  if (M == 0 || N == 0) return "empty";
  const char* path = run_paths(x, qw, zeros, gs, wsum, y, M, N, K, group, allowed);
  if (xs && sc && path[0] != 'x') scale_in_place(y, xs, sc, M, N);
  return path;
}

}  // namespace linalg_core::cpu::LC_ISA
