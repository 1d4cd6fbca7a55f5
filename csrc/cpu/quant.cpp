// Blockwise codebook quantization (the NormalFloat, INT-k and bitsandbytes NF4 codecs).
//
// block_quantize: x (n,) in blocks of `block` elements; block b has scale s_b (its absmax when no
// scales are given) and offset o_b (0 when none). Each element becomes
//   v = (x - o_b) * (1 / max(s_b, 1e-38)),   code = #{k : mid[k] < v}
// (torch.bucketize(v, mid, right=False): the nearest of the sorted levels whose midpoints are
// `mid`, ties to the lower level, saturating at the end levels; NaN gives code 0 and is
// counted), packed MSB-first: 8 codes of `bits` bits fill `bits` bytes,
// so 4-bit codes are (c0 << 4) | c1 per byte (bitsandbytes' nibble order). Compare-and-count for
// <= 16 levels (vectorises across elements), branch-free binary search for 256. One read of x;
// the block is re-read from L1 for its codes after the absmax. bits = 0: the absmax only.
//
// block_dequantize: out[i] = level[code_i] * s_b + o_b in float32, rounded to the output dtype.
// Built with -ffp-contract=off (CMakeLists.txt) so no FMA changes a rounding across ISAs.
//
// gguf_quantize / gguf_dequantize: llama.cpp's Q4_0 and Q8_0 blocks of 32 weights, byte for byte
// as gguf.quants (gguf-py's numpy port of ggml-quants.c's quantize_row_q4_0_ref / q8_0_ref), in
// float32 arithmetic with its exact order of operations:
//   Q4_0: m = the first element of largest magnitude, d = m / -8, id = d ? 1/d : 0 (the float32
//         d, not the fp16 one), q = min(15, uint8(trunc(x·id + 8.5))); bytes: fp16 d, then
//         q[j] | q[j + 16] << 4 for j < 16 (18 bytes).
//   Q8_0: d = absmax / 127, id = d ? 1/d : 0, q = int8(x·id rounded half away from zero); bytes:
//         fp16 d, then the 32 codes (34 bytes).
// The float -> integer casts are numpy's on x86-64 (through int32: values outside its range and
// NaN give 0, others keep their low byte); they are reached only for blocks whose d underflows,
// where id is Inf. Dequantization: d·q in float32 (exact: 11-bit d times a small integer).
// One pass over x, one block at a time in registers; the non-finite count comes from the same pass.
#include <type_traits>

#include "isa.h"
#include "linalg_core/cpu_kernels.h"
#include "linalg_core/dtype.h"
#include "linalg_core/quant.h"

namespace linalg_core::cpu::LC_ISA {
namespace {

constexpr int64_t kChunk = 64;           // codes computed, then packed, per step (multiple of 8)
constexpr int64_t kGrain = int64_t(1) << 15;  // elements per thread below which one thread runs

inline bool nonfinite(float v) { return (float_to_bits(v) & 0x7f800000u) == 0x7f800000u; }

template <typename T>
inline float load(const T* p) { return Storage<T>::load(p); }

#if defined(__AVX512F__)
// Branch-free binary search, 16 lanes: the midpoints (padded with +inf to 16) sit in one register
// and each of the log2(NM + 1) steps is a permute, a compare and a masked add.
template <int NM>
inline int64_t codes_avx512(const float* v, int64_t cnt, const float* mid, uint8_t* c) {
  alignas(64) float tab[16];
  for (int k = 0; k < 16; ++k) tab[k] = k < NM ? mid[k] : __builtin_inff();
  const __m512 T = _mm512_load_ps(tab);
  int64_t i = 0;
  for (; i + 16 <= cnt; i += 16) {
    const __m512 x = _mm512_loadu_ps(v + i);
    __m512i idx = _mm512_setzero_si512();
    for (int step = (NM + 1) / 2; step >= 1; step >>= 1) {
      const __m512 t = _mm512_permutexvar_ps(_mm512_add_epi32(idx, _mm512_set1_epi32(step - 1)), T);
      idx = _mm512_mask_add_epi32(idx, _mm512_cmp_ps_mask(x, t, _CMP_GT_OQ), idx, _mm512_set1_epi32(step));
    }
    _mm_storeu_si128(reinterpret_cast<__m128i*>(c + i), _mm512_cvtepi32_epi8(idx));
  }
  return i;
}
#endif

// Codes of v[0 .. cnt) for NM = 2^bits - 1 midpoints.
template <int NM>
inline void codes_of(const float* v, int64_t cnt, const float* mid, uint8_t* c) {
  if constexpr (NM == 0) {
    return;
  } else if constexpr (NM <= 15) {
    int64_t i0 = 0;
#if defined(__AVX512F__)
    i0 = codes_avx512<NM>(v, cnt, mid, c);
#endif
    float m[NM];
    for (int k = 0; k < NM; ++k) m[k] = mid[k];
#pragma omp simd
    for (int64_t i = i0; i < cnt; ++i) {
      int code = 0;
      for (int k = 0; k < NM; ++k) code += v[i] > m[k];
      c[i] = static_cast<uint8_t>(code);
    }
  } else {
    // 255 midpoints + a +inf sentinel: idx advances by step while v exceeds mid[idx + step - 1].
    for (int64_t i = 0; i < cnt; ++i) {
      int idx = 0;
      for (int step = (NM + 1) / 2; step >= 1; step >>= 1) idx += (v[i] > mid[idx + step - 1]) ? step : 0;
      c[i] = static_cast<uint8_t>(idx);
    }
  }
}

// Packs cnt codes (cnt a multiple of 8, or the final tail) MSB-first at byte dst.
inline void pack(const uint8_t* c, int64_t cnt, int bits, uint8_t* dst) {
  if (bits == 8) {
    std::memcpy(dst, c, size_t(cnt));
    return;
  }
  int64_t g0 = 0;
  if (bits == 4) {  // the common case, vectorised: byte j = c[2j] << 4 | c[2j + 1]
    const int64_t pairs = cnt / 2;
#pragma omp simd
    for (int64_t j = 0; j < pairs; ++j) dst[j] = static_cast<uint8_t>((c[2 * j] << 4) | c[2 * j + 1]);
    if (cnt % 2 == 0) return;
    g0 = pairs / 4 * 8;  // the group holding the odd tail element
  }
  for (int64_t g = g0; g < cnt; g += 8) {
    const int64_t k = std::min<int64_t>(8, cnt - g);
    uint64_t acc = 0;
    for (int64_t j = 0; j < 8; ++j) acc = (acc << bits) | (j < k ? c[g + j] : 0u);
    const int64_t nbytes = (k * bits + 7) / 8;
    uint8_t* out = dst + (g / 8) * bits;
    for (int64_t t = 0; t < nbytes; ++t) out[t] = static_cast<uint8_t>(acc >> (8 * (bits - 1 - t)));
  }
}

template <typename T, int NM>
int64_t quantize_blocks(const T* x, int64_t n, int64_t block, const float* mid, int bits, const float* scales_in,
                        const float* offsets, float* scales_out, uint8_t* packed, int64_t b0, int64_t b1) {
  int64_t bad = 0;
  alignas(64) float v[kChunk];
  alignas(64) uint8_t c[kChunk];
  for (int64_t b = b0; b < b1; ++b) {
    const int64_t lo = b * block, hi = std::min(n, lo + block);
    float s;
    if (scales_in) {
      s = scales_in[b];
    } else {
      s = 0.0f;
#pragma omp simd reduction(max : s)
      for (int64_t i = lo; i < hi; ++i) s = std::max(s, std::fabs(load(x + i)));
      scales_out[b] = s;
    }
    if (bits == 0) {  // scales only: count the non-finite inputs of the block here
      int64_t local = 0;
#pragma omp simd reduction(+ : local)
      for (int64_t i = lo; i < hi; ++i) local += nonfinite(load(x + i));
      bad += local;
      continue;
    }
    const float inv = 1.0f / std::max(s, 1e-38f);
    const float o = offsets ? offsets[b] : 0.0f;
    for (int64_t i0 = lo; i0 < hi; i0 += kChunk) {
      const int64_t cnt = std::min(kChunk, hi - i0);
      int64_t local = 0;
#pragma omp simd reduction(+ : local)
      for (int64_t i = 0; i < cnt; ++i) {
        const float xi = load(x + i0 + i);
        local += nonfinite(xi);
        v[i] = (xi - o) * inv;
      }
      bad += local;
      codes_of<NM>(v, cnt, mid, c);
      pack(c, cnt, bits, packed + (i0 / 8) * bits);
    }
  }
  return bad;
}

template <typename T, int NM>
int64_t quantize_typed(const void* x, int64_t n, int64_t block, const float* mid, int bits, const float* scales_in,
                       const float* offsets, float* scales_out, uint8_t* packed) {
  const T* xt = static_cast<const T*>(x);
  const int64_t nb = (n + block - 1) / block;
  int64_t bad = 0;
#pragma omp parallel for reduction(+ : bad) schedule(static) if (n > 2 * kGrain)
  for (int64_t t = 0; t < (n + kGrain - 1) / kGrain; ++t) {
    // Thread chunks are whole blocks: blocks whose first element falls in [t·grain, (t+1)·grain).
    const int64_t blo = (t * kGrain + block - 1) / block, bhi = std::min(nb, ((t + 1) * kGrain + block - 1) / block);
    if (blo < bhi) bad += quantize_blocks<T, NM>(xt, n, block, mid, bits, scales_in, offsets, scales_out, packed, blo, bhi);
  }
  return bad;
}

template <typename T>
int64_t quantize_dtype(const void* x, int64_t n, int64_t block, const float* mid, int bits, const float* s,
                       const float* o, float* so, uint8_t* p) {
  switch (bits) {
    case 0: return quantize_typed<T, 0>(x, n, block, mid, bits, s, o, so, p);
    case 1: return quantize_typed<T, 1>(x, n, block, mid, bits, s, o, so, p);
    case 2: return quantize_typed<T, 3>(x, n, block, mid, bits, s, o, so, p);
    case 3: return quantize_typed<T, 7>(x, n, block, mid, bits, s, o, so, p);
    case 4: return quantize_typed<T, 15>(x, n, block, mid, bits, s, o, so, p);
    default: return quantize_typed<T, 255>(x, n, block, mid, bits, s, o, so, p);
  }
}

// Codes [i0, i0 + cnt) of the packed stream (i0 a multiple of 8) into c.
inline void unpack(const uint8_t* packed, int64_t i0, int64_t cnt, int bits, uint8_t* c) {
  const uint8_t* src = packed + i0 / 8 * bits;
  if (bits == 8) {
    std::memcpy(c, src, size_t(cnt));
  } else if (bits == 4) {
    const int64_t pairs = cnt / 2;
#pragma omp simd
    for (int64_t j = 0; j < pairs; ++j) {
      c[2 * j] = src[j] >> 4;
      c[2 * j + 1] = src[j] & 15;
    }
    if (cnt & 1) c[cnt - 1] = src[pairs] >> 4;
  } else {
    const uint64_t mask = (uint64_t(1) << bits) - 1;
    for (int64_t g = 0; g < cnt; g += 8, src += bits) {
      const int64_t k = std::min<int64_t>(8, cnt - g), nbytes = (k * bits + 7) / 8;
      uint64_t acc = 0;
      for (int64_t t = 0; t < bits; ++t) acc = (acc << 8) | (t < nbytes ? src[t] : 0u);
      for (int64_t j = 0; j < k; ++j) c[g + j] = static_cast<uint8_t>((acc >> ((7 - j) * bits)) & mask);
    }
  }
}

// out[i] = level[c[i]] * s + o, i < cnt (the multiply and the add rounded separately).
template <typename Out>
inline void values(const uint8_t* c, int64_t cnt, const float* lv, int nlevels, float s, float o, Out* out) {
  int64_t i = 0;
#if defined(__AVX512F__)
  if (std::is_same_v<Out, float> && nlevels <= 16) {
    alignas(64) float tab[16] = {};
    for (int k = 0; k < nlevels; ++k) tab[k] = lv[k];
    const __m512 T = _mm512_load_ps(tab), S = _mm512_set1_ps(s), O = _mm512_set1_ps(o);
    for (; i + 16 <= cnt; i += 16) {
      const __m512i idx = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(c + i)));
      const __m512 v = _mm512_add_ps(_mm512_mul_ps(_mm512_permutexvar_ps(idx, T), S), O);
      _mm512_storeu_ps(reinterpret_cast<float*>(out + i), v);
    }
  }
#endif
#pragma omp simd
  for (int64_t j = i; j < cnt; ++j) Storage<Out>::store(out + j, lv[c[j]] * s + o);
}

template <typename Out>
void dequantize_typed(const uint8_t* packed, int bits, const float* levels, const float* scales, const float* offsets,
                      int64_t n, int64_t block, Out* out) {
  const int64_t nb = (n + block - 1) / block;
#pragma omp parallel for schedule(static) if (n > 2 * kGrain)
  for (int64_t t = 0; t < (n + kGrain - 1) / kGrain; ++t) {
    const int64_t blo = (t * kGrain + block - 1) / block, bhi = std::min(nb, ((t + 1) * kGrain + block - 1) / block);
    alignas(64) uint8_t c[kChunk];
    for (int64_t b = blo; b < bhi; ++b) {
      const int64_t lo = b * block, hi = std::min(n, lo + block);
      const float s = scales[b], o = offsets ? offsets[b] : -0.0f;  // x + (−0) = x, also for x = −0
      for (int64_t i0 = lo; i0 < hi; i0 += kChunk) {
        const int64_t cnt = std::min(kChunk, hi - i0);
        unpack(packed, i0, cnt, bits, c);
        values(c, cnt, levels, 1 << bits, s, o, out + i0);
      }
    }
  }
}

// --- GGUF Q4_0 / Q8_0 ---------------------------------------------------------------------------

constexpr int64_t kGgufGrain = 1024;  // blocks per thread chunk (32K weights)

constexpr int kGgufGroup = 16;  // blocks whose scales are computed together (one SIMD lane each)

// Quantizes g <= 16 consecutive blocks: their max and min (one pass over x, into L1), then d, id
// and the fp16 d of all g blocks at once (vectorised divisions and conversions), then the codes.
// Returns the count of non-finite x; *special counts the blocks whose fp16 d is zero, subnormal
// or infinite.
template <typename T, int BITS>
__attribute__((always_inline)) inline int64_t gguf_group(const T* __restrict x, uint8_t* __restrict dst, int g,
                                                         int64_t* special) {
  constexpr int64_t bytes = BITS == 4 ? 18 : 34;
  alignas(64) float v[kGgufGroup][32];
  alignas(64) float hi[kGgufGroup], lo[kGgufGroup], d[kGgufGroup], id[kGgufGroup];
  alignas(64) int32_t dh[kGgufGroup];
  int64_t bad = 0;
  for (int k = 0; k < kGgufGroup; ++k) {
    float h = 0.0f, l = 0.0f;  // padding blocks (k >= g): zeros
    if (k < g) {
      h = -__builtin_inff();
      l = __builtin_inff();
      int64_t bb = 0;
#pragma omp simd reduction(max : h) reduction(min : l) reduction(+ : bb)
      for (int j = 0; j < 32; ++j) {
        v[k][j] = load(x + 32 * k + j);
        bb += nonfinite(v[k][j]);
        h = std::max(h, v[k][j]);
        l = std::min(l, v[k][j]);
      }
      bad += bb;
    }
    hi[k] = h;
    lo[k] = l;
  }
  // Q4_0: m = numpy's argmax of |x|, the first element of largest magnitude max(hi, −lo): hi or
  // lo, unless both hi and −hi occur (and in all-zero blocks, whose first zero gives d its sign).
  // d = m / −8 is m·(−1/8), the same correctly rounded value. Q8_0: d = absmax / 127 (+0 for −0s).
#pragma omp simd
  for (int k = 0; k < kGgufGroup; ++k)
    d[k] = BITS == 4 ? (hi[k] > -lo[k] ? hi[k] : lo[k]) * -0.125f : std::fabs(std::max(hi[k], -lo[k])) / 127.0f;
  if constexpr (BITS == 4) {
    for (int k = 0; k < g; ++k) {
      if (hi[k] != -lo[k]) continue;
      int j = 0;
      while (j < 31 && !(std::fabs(v[k][j]) == hi[k])) ++j;
      d[k] = v[k][j] * -0.125f;
    }
  }
#pragma omp simd
  for (int k = 0; k < kGgufGroup; ++k) {
    id[k] = d[k] == 0.0f ? 0.0f : 1.0f / d[k];
    dh[k] = float_to_half(d[k]);
  }
  for (int k = 0; k < g; ++k) {
    uint8_t* out = dst + bytes * k;
    const uint16_t h16 = static_cast<uint16_t>(dh[k]);
    *special += gguf::special_d(h16);
    std::memcpy(out, &h16, 2);
    const float s = id[k];
    alignas(64) int32_t q[32];
    if constexpr (BITS == 4) {
#pragma omp simd
      for (int j = 0; j < 32; ++j) q[j] = gguf::q4_code(v[k][j] * s + 8.5f);
#pragma omp simd
      for (int j = 0; j < 16; ++j) out[2 + j] = static_cast<uint8_t>(q[j] | (q[j + 16] << 4));
    } else {
#pragma omp simd
      for (int j = 0; j < 32; ++j) q[j] = gguf::q8_code(v[k][j] * s);
#pragma omp simd
      for (int j = 0; j < 32; ++j) out[2 + j] = static_cast<uint8_t>(q[j]);
    }
  }
  return bad;
}

template <typename T, int BITS>
int64_t gguf_quantize_typed(const T* x, int64_t n, uint8_t* blocks, int64_t* special) {
  const int64_t nb = n / 32, chunks = (nb + kGgufGrain - 1) / kGgufGrain;
  constexpr int64_t bytes = BITS == 4 ? 18 : 34;
  int64_t bad = 0, odd = 0;
#pragma omp parallel for reduction(+ : bad, odd) schedule(static) if (chunks > 2)
  for (int64_t c = 0; c < chunks; ++c) {
    const int64_t b1 = std::min(nb, (c + 1) * kGgufGrain);
    int64_t local_bad = 0, local_odd = 0;
    for (int64_t b = c * kGgufGrain; b < b1; b += kGgufGroup) {
      // the next group's input on its way while this one computes (the reads and the compute
      // otherwise add up on one core)
      const int64_t nxt = std::min(b + kGgufGroup, nb), ahead = 32 * std::min<int64_t>(kGgufGroup, nb - nxt);
      const char* next = reinterpret_cast<const char*>(x + 32 * nxt);
      for (int64_t line = 0; line < ahead * int64_t(sizeof(T)); line += 64) __builtin_prefetch(next + line);
      local_bad += gguf_group<T, BITS>(x + 32 * b, blocks + bytes * b,
                                       static_cast<int>(std::min<int64_t>(kGgufGroup, b1 - b)), &local_odd);
    }
    bad += local_bad;
    odd += local_odd;
  }
  *special = odd;
  return bad;
}

// out[j] = d·q_j of one block, j < cnt (a whole block computed straight into out, a partial one
// through a local copy).
template <int BITS, typename Out>
__attribute__((always_inline)) inline void gguf_block_values(const uint8_t* __restrict src, Out* __restrict out,
                                                             int cnt) {
  uint16_t dh;
  std::memcpy(&dh, src, 2);
  const float d = half_to_float(dh);
  Out part[32];
  Out* dst = cnt == 32 ? out : part;
  if constexpr (BITS == 4) {
#pragma omp simd
    for (int j = 0; j < 16; ++j) {
      Storage<Out>::store(dst + j, d * static_cast<float>((src[2 + j] & 15) - 8));
      Storage<Out>::store(dst + j + 16, d * static_cast<float>((src[2 + j] >> 4) - 8));
    }
  } else {
#pragma omp simd
    for (int j = 0; j < 32; ++j) Storage<Out>::store(dst + j, d * static_cast<float>(static_cast<int8_t>(src[2 + j])));
  }
  if (cnt < 32) std::memcpy(out, part, sizeof(Out) * size_t(cnt));
}

template <int BITS, typename Out>
void gguf_dequantize_typed(const uint8_t* blocks, int64_t n, Out* out) {
  const int64_t nb = (n + 31) / 32, chunks = (nb + kGgufGrain - 1) / kGgufGrain;
  constexpr int64_t bytes = BITS == 4 ? 18 : 34;
#pragma omp parallel for schedule(static) if (chunks > 2)
  for (int64_t c = 0; c < chunks; ++c) {
    const int64_t b1 = std::min(nb, (c + 1) * kGgufGrain);
    for (int64_t b = c * kGgufGrain; b < b1; ++b)
      gguf_block_values<BITS>(blocks + bytes * b, out + 32 * b, static_cast<int>(std::min<int64_t>(32, n - 32 * b)));
  }
}

template <typename T>
int64_t gguf_quantize_dtype(const void* x, int64_t n, int bits, uint8_t* blocks, int64_t* special) {
  const T* xt = static_cast<const T*>(x);
  return bits == 4 ? gguf_quantize_typed<T, 4>(xt, n, blocks, special)
                   : gguf_quantize_typed<T, 8>(xt, n, blocks, special);
}

template <typename Out>
void gguf_dequantize_dtype(const uint8_t* blocks, int bits, int64_t n, void* out) {
  Out* o = static_cast<Out*>(out);
  if (bits == 4) gguf_dequantize_typed<4>(blocks, n, o);
  else gguf_dequantize_typed<8>(blocks, n, o);
}

}  // namespace

int64_t block_quantize(const void* x, DType dt, int64_t n, int64_t block, const float* mid, int bits,
                       const float* scales_in, const float* offsets, float* scales_out, uint8_t* packed) {
  switch (dt) {
    case DType::f32: return quantize_dtype<float>(x, n, block, mid, bits, scales_in, offsets, scales_out, packed);
    case DType::f16: return quantize_dtype<half_bits>(x, n, block, mid, bits, scales_in, offsets, scales_out, packed);
    case DType::bf16: return quantize_dtype<bf16_bits>(x, n, block, mid, bits, scales_in, offsets, scales_out, packed);
    default: return -1;
  }
}

void block_dequantize(const uint8_t* packed, int bits, const float* levels, const float* scales,
                      const float* offsets, int64_t n, int64_t block, void* out, DType out_dt) {
  switch (out_dt) {
    case DType::f32: return dequantize_typed(packed, bits, levels, scales, offsets, n, block, static_cast<float*>(out));
    case DType::f16: return dequantize_typed(packed, bits, levels, scales, offsets, n, block, static_cast<half_bits*>(out));
    case DType::bf16: return dequantize_typed(packed, bits, levels, scales, offsets, n, block, static_cast<bf16_bits*>(out));
    default: return;
  }
}

}  // namespace linalg_core::cpu::LC_ISA

namespace linalg_core::cpu::LC_ISA {

int64_t gguf_quantize(const void* x, DType dt, int64_t n, int bits, uint8_t* blocks, int64_t* special) {
  *special = 0;
  if ((bits != 4 && bits != 8) || n < 0 || n % 32) return -1;
  switch (dt) {
    case DType::f32: return gguf_quantize_dtype<float>(x, n, bits, blocks, special);
    case DType::f16: return gguf_quantize_dtype<half_bits>(x, n, bits, blocks, special);
    case DType::bf16: return gguf_quantize_dtype<bf16_bits>(x, n, bits, blocks, special);
    default: return -1;
  }
}

void gguf_dequantize(const uint8_t* blocks, int bits, int64_t n, void* out, DType out_dt) {
  if ((bits != 4 && bits != 8) || n <= 0) return;
  switch (out_dt) {
    case DType::f32: return gguf_dequantize_dtype<float>(blocks, bits, n, out);
    case DType::f16: return gguf_dequantize_dtype<half_bits>(blocks, bits, n, out);
    case DType::bf16: return gguf_dequantize_dtype<bf16_bits>(blocks, bits, n, out);
    default: return;
  }
}

}  // namespace linalg_core::cpu::LC_ISA
