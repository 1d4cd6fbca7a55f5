// Sketching kernels: the fast Walsh-Hadamard transform and the sparse (CountSketch /
// sparse-sign) scatter-add. Plain loops written so the compiler vectorises them for the ISA
// this file is compiled for; OpenMP across independent rows, blocks or batch items.
#include <cmath>
#include <cstring>
#include <type_traits>
#include <utility>
#include <vector>

#include "isa.h"
#include "linalg_core/cpu_kernels.h"
#include "linalg_core/memory.h"
#include "linalg_core/philox.h"
#include "linalg_core/sketch.h"

namespace linalg_core::cpu::LC_ISA {
namespace {

// Elements a leaf transform may touch; keeps a leaf inside the per-core L2 cache.
constexpr int64_t kCacheElems = int64_t(1) << 16;

// Multiply-adds (or Philox blocks x 8) below which a kernel runs on the calling thread (~100 us
// of one core): a parallel region that small saves little on a quiet machine and can wait a
// scheduler time slice for a descheduled team member on a shared one (docs/threads.md).
constexpr int64_t kParallelWork = int64_t(1) << 17;

// Most pieces the sparse scatter splits its rows into when there is one column block to share
// (a fixed count, not the thread count: the sum order must not depend on the threads).
constexpr int64_t kMaxParts = 8;

// Level h on one block of 2h rows (rows j and j + h, j < h), each `width` elements long.
// Row r starts at x + r * stride; for width == 1 rows are single elements.
template <typename T>
inline void radix2(T* x, int64_t h, int64_t width, int64_t stride) {
  for (int64_t j = 0; j < h; ++j) {
    T* a = x + j * stride;
    T* b = a + h * stride;
#pragma omp simd
    for (int64_t c = 0; c < width; ++c) {
      const T u = a[c], v = b[c];
      a[c] = u + v;
      b[c] = u - v;
    }
  }
}

// Levels h and 2h together on one block of 4h rows: half the memory sweeps of radix 2.
template <typename T>
inline void radix4(T* x, int64_t h, int64_t width, int64_t stride) {
  if (width == 1 && stride == 1) {
    T* a = x;
    T* b = x + h;
    T* c = x + 2 * h;
    T* d = x + 3 * h;
#pragma omp simd
    for (int64_t j = 0; j < h; ++j) {
      const T p = a[j] + b[j], q = a[j] - b[j], r = c[j] + d[j], s = c[j] - d[j];
      a[j] = p + r; c[j] = p - r; b[j] = q + s; d[j] = q - s;
    }
    return;
  }
  for (int64_t j = 0; j < h; ++j) {
    T* a = x + j * stride;
    T* b = a + h * stride;
    T* c = a + 2 * h * stride;
    T* d = a + 3 * h * stride;
#pragma omp simd
    for (int64_t k = 0; k < width; ++k) {
      const T p = a[k] + b[k], q = a[k] - b[k], r = c[k] + d[k], s = c[k] - d[k];
      a[k] = p + r; c[k] = p - r; b[k] = q + s; d[k] = q - s;
    }
  }
}

// One register of the ISA this file is compiled for (GCC/Clang vector extensions): 64 bytes with
// AVX-512, 32 with AVX2, 16 elsewhere. Wider types than the registers would be emulated (the
// lane shuffles below scalarised, an order of magnitude slower).
#if defined(__AVX512F__)
constexpr int kVecBytes = 64;
#elif defined(__AVX__)
constexpr int kVecBytes = 32;
#else
constexpr int kVecBytes = 16;
#endif
template <typename T> struct Vec;
template <> struct Vec<float> { typedef float type __attribute__((vector_size(kVecBytes))); typedef int32_t mask __attribute__((vector_size(kVecBytes))); static constexpr int lanes = kVecBytes / 4; };
template <> struct Vec<double> { typedef double type __attribute__((vector_size(kVecBytes))); typedef int64_t mask __attribute__((vector_size(kVecBytes))); static constexpr int lanes = kVecBytes / 8; };

// Level h on one vector, with compile-time lane masks (a constant shuffle and a blend): lane i
// pairs with lane i ^ h and keeps the sum (bit h of i clear) or the difference (set).
template <typename T, int H, int... I>
inline typename Vec<T>::type vector_level(typename Vec<T>::type v, std::integer_sequence<int, I...>) {
  using M = typename Vec<T>::mask;
  constexpr M partner = {(I ^ H)...};
  constexpr M upper = {((I & H) ? -1 : 0)...};
  const typename Vec<T>::type p = __builtin_shuffle(v, partner);
  return upper ? p - v : v + p;
}

// The levels h = 1 .. lanes/2 on one vector.
template <typename T, int H = 1>
inline typename Vec<T>::type butterflies_in_vector(typename Vec<T>::type v) {
  if constexpr (H >= Vec<T>::lanes) {
    return v;
  } else {
    v = vector_level<T, H>(v, std::make_integer_sequence<int, Vec<T>::lanes>{});
    return butterflies_in_vector<T, 2 * H>(v);
  }
}

template <typename T>
void fwht_vector(T* x, int64_t N) {
  // Levels below one vector's width inside registers, then whole-vector radix-4/2 levels.
  constexpr int L = Vec<T>::lanes;
  int64_t h = 1;
  if (N >= L) {
    for (int64_t i = 0; i < N; i += L) {
      typename Vec<T>::type v;
      std::memcpy(&v, x + i, sizeof(v));
      v = butterflies_in_vector<T>(v);
      std::memcpy(x + i, &v, sizeof(v));
    }
    h = L;
  }
  for (; 4 * h <= N; h <<= 2) {  // two levels per sweep (radix 4)
    for (int64_t i = 0; i < N; i += 4 * h) radix4(x + i, h, 1, 1);
  }
  if (h < N) {
    for (int64_t i = 0; i < N; i += 2 * h) radix2(x + i, h, 1, 1);
  }
}

// Butterflies of all levels over N rows of `width` contiguous elements, `stride` apart.
template <typename T>
void fwht_direct(T* x, int64_t N, int64_t width, int64_t stride) {
  if (width == 1 && stride == 1) { fwht_vector(x, N); return; }
  int64_t h = 1;
  for (; 4 * h <= N; h <<= 2) {
    for (int64_t i = 0; i < N; i += 4 * h) radix4(x + i * stride, h, width, stride);
  }
  if (h < N) {
    for (int64_t i = 0; i < N; i += 2 * h) radix2(x + i * stride, h, width, stride);
  }
}

// Rows [r0, r0 + count) of the transform input, written to x: x[r] = scale * mult[r] * src[r]
// for r < n_valid and 0 beyond (the zero padding of the SRHT).
template <typename S, typename T>
struct Source {
  const S* src;         // (n_valid, width) rows, `src_stride` apart; null: x already holds data
  int64_t src_stride;
  int64_t n_valid;
  const int8_t* mult;   // per-row +-1 or null
  T scale;

  void load(T* x, int64_t r0, int64_t count, int64_t width, int64_t stride, int64_t rstep) const {
    if (width == 1 && stride == 1) {  // one contiguous vector: a vectorisable loop
#pragma omp simd
      for (int64_t i = 0; i < count; ++i) {
        const int64_t r = r0 + i * rstep;
        const T v = r < n_valid ? T(Storage<S>::load(src + r * src_stride)) : T(0);
        x[i] = (mult && r < n_valid && mult[r] < 0) ? -scale * v : scale * v;
      }
      return;
    }
    for (int64_t i = 0; i < count; ++i) {
      const int64_t r = r0 + i * rstep;
      T* dst = x + i * stride;
      if (r >= n_valid) {
        for (int64_t c = 0; c < width; ++c) dst[c] = T(0);
        continue;
      }
      const T f = mult ? (mult[r] < 0 ? -scale : scale) : scale;
      const S* s = src + r * src_stride;
#pragma omp simd
      for (int64_t c = 0; c < width; ++c) dst[c] = f * T(Storage<S>::load(s + c));
    }
  }
};

// H_N = (H_N1 ⊗ I_N2)(I_N1 ⊗ H_N2) with blocks of N2 rows that fit the cache; the N1-point
// transforms across blocks are done g adjacent rows (columns of the block view) at a time.
struct Split {
  int64_t N1, N2, g;
};
inline Split split_rows(int64_t N, int64_t width) {
  int64_t N2 = 2;
  while (N2 * 2 < N && N2 * 2 * width <= kCacheElems) N2 *= 2;
  const int64_t N1 = N / N2;
  int64_t g = 1;
  while (g * 2 <= N2 && N1 * g * 2 * width <= kCacheElems) g *= 2;
  return {N1, N2, g};
}

// Transform N rows of `width` elements `stride` apart. H_N = (H_N1 ⊗ I_N2)(I_N1 ⊗ H_N2):
// cache-sized blocks of N2 rows first (loading them from `source` on the way), then the N1-point
// transforms across blocks, several adjacent columns at a time. Two passes over memory.
template <typename S, typename T>
void fwht_rows(T* x, int64_t N, int64_t width, int64_t stride, const Source<S, T>* source,
               int64_t src_row0, int64_t src_rstep, bool parallel) {
  if (N * width <= kCacheElems || N <= 2) {
    if (source) source->load(x, src_row0, N, width, stride, src_rstep);
    if (stride == width || width == 1) {
      fwht_direct(x, N, width, stride);
      return;
    }
    // Rows far apart (a power-of-two stride) share cache sets: transform a contiguous copy.
    thread_local std::vector<T> buf;
    buf.resize(size_t(N * width));
    for (int64_t r = 0; r < N; ++r) std::memcpy(buf.data() + r * width, x + r * stride, sizeof(T) * width);
    fwht_direct(buf.data(), N, width, width);
    for (int64_t r = 0; r < N; ++r) std::memcpy(x + r * stride, buf.data() + r * width, sizeof(T) * width);
    return;
  }
  const Split sp = split_rows(N, width);
  parallel_for(sp.N1, parallel, [&](int64_t b, int64_t e) {
    for (int64_t i1 = b; i1 < e; ++i1)
      fwht_rows<S, T>(x + i1 * sp.N2 * stride, sp.N2, width, stride, source,
                      src_row0 + i1 * sp.N2 * src_rstep, src_rstep, false);
  });
  if (stride == width) {  // adjacent rows are one contiguous wider row
    parallel_for(sp.N2 / sp.g, parallel, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i)
        fwht_rows<S, T>(x + i * sp.g * width, sp.N1, sp.g * width, sp.N2 * stride, nullptr, 0, 0, false);
    });
  } else {
    parallel_for(sp.N2, parallel, [&](int64_t b, int64_t e) {
      for (int64_t i2 = b; i2 < e; ++i2)
        fwht_rows<S, T>(x + i2 * stride, sp.N1, width, sp.N2 * stride, nullptr, 0, 0, false);
    });
  }
}

// out (B, N, K) of storage O from in (B, n_valid, K) of storage S, computing in C.
template <typename S, typename O>
void fwht_typed(const S* in, O* out, int64_t B, int64_t n_valid, int64_t N, int64_t K,
                const int8_t* mult, double scale) {
  // Compute in double when either side is double, else float (every backend's rule).
  using C = std::conditional_t<std::is_same_v<S, double> || std::is_same_v<O, double>, double, float>;
  constexpr bool direct = std::is_same_v<O, C>;  // out holds compute values: transform in place
  advise_huge_pages(out, size_t(B * N * K) * sizeof(O));
  const bool items_parallel = B >= omp_get_max_threads() && B * N * K > kCacheElems;
  // Column strips so that a low-precision item is transformed through a cache-sized scratch.
  const int64_t w = direct ? K : std::max<int64_t>(1, std::min<int64_t>(K, kCacheElems * 16 / N));
  auto item = [&](int64_t b, std::vector<C>& scratch, bool inner_parallel) {
    const S* src = in + b * n_valid * K;
    O* dst = out + b * N * K;
    for (int64_t c0 = 0; c0 < K; c0 += w) {
      const int64_t wc = std::min(w, K - c0);
      Source<S, C> source{src + c0, K, n_valid, mult, C(scale)};
      if constexpr (direct) {
        if (!inner_parallel && N * K <= kCacheElems) {  // small item: in cache, then streamed out
          scratch.resize(size_t(N * K));
          fwht_rows<S, C>(scratch.data(), N, K, K, &source, 0, 1, false);
          copy_streaming(reinterpret_cast<C*>(dst), scratch.data(), N * K);
        } else {
          fwht_rows<S, C>(reinterpret_cast<C*>(dst) + c0, N, wc, K, &source, 0, 1, inner_parallel);
        }
      } else {
        scratch.resize(size_t(N * wc));
        fwht_rows<S, C>(scratch.data(), N, wc, wc, &source, 0, 1, inner_parallel);
        for (int64_t r = 0; r < N; ++r)
          for (int64_t c = 0; c < wc; ++c)
            Storage<O>::store(dst + r * K + c0 + c, scratch[size_t(r * wc + c)]);
      }
    }
  };
  if (items_parallel) {
    parallel_for(B, true, [&](int64_t b0, int64_t b1) {
      std::vector<C> scratch;
      for (int64_t b = b0; b < b1; ++b) item(b, scratch, false);
      store_fence();
    });
  } else {
    std::vector<C> scratch;
    for (int64_t b = 0; b < B; ++b) item(b, scratch, true);
  }
}

template <typename S>
void fwht_from(const S* in, void* out, DType out_dt, int64_t B, int64_t n_valid, int64_t N,
               int64_t K, const int8_t* mult, double scale) {
  switch (out_dt) {
    case DType::f32: return fwht_typed(in, static_cast<float*>(out), B, n_valid, N, K, mult, scale);
    case DType::f64: return fwht_typed(in, static_cast<double*>(out), B, n_valid, N, K, mult, scale);
    case DType::f16: return fwht_typed(in, static_cast<half_bits*>(out), B, n_valid, N, K, mult, scale);
    case DType::bf16: return fwht_typed(in, static_cast<bf16_bits*>(out), B, n_valid, N, K, mult, scale);
  }
}

// Rows `select` of the transform (the SRHT): out (B, m, K) from in (B, n_valid, K), with the
// compute-precision scratch work (B, N, K). When the transform splits, the last stage (the
// N1-point transforms across blocks) writes only the selected rows, straight to out: one
// read of the input, one write and one read of work, and m rows written.
template <typename S, typename O>
void fwht_select_typed(const S* in, void* work_v, O* out, int64_t B, int64_t n_valid, int64_t N, int64_t K,
                       const int8_t* mult, double scale, const int64_t* select, int64_t m) {
  using C = std::conditional_t<std::is_same_v<S, double> || std::is_same_v<O, double>, double, float>;
  C* work = static_cast<C*>(work_v);
  advise_huge_pages(work, size_t(B * N * K) * sizeof(C));
  const Split sp = split_rows(N, K);
  const bool split = N * K > kCacheElems && N > 2 && sp.N1 * sp.g * K <= kCacheElems;
  // Selected rows grouped by their position i2 = r mod N2 inside a block (CSR): offs, (p, i1).
  std::vector<int64_t> offs(size_t(sp.N2 + 1), 0), entries(size_t(2 * m));
  if (split) {
    for (int64_t p = 0; p < m; ++p) ++offs[size_t(select[p] % sp.N2 + 1)];
    for (int64_t i = 0; i < sp.N2; ++i) offs[size_t(i + 1)] += offs[size_t(i)];
    std::vector<int64_t> fill(offs.begin(), offs.end() - 1);
    for (int64_t p = 0; p < m; ++p) {
      const int64_t e = fill[size_t(select[p] % sp.N2)]++;
      entries[size_t(2 * e)] = p;
      entries[size_t(2 * e + 1)] = select[p] / sp.N2;
    }
  }
  auto store_row = [&](O* dst, const C* src) {
    for (int64_t c = 0; c < K; ++c) Storage<O>::store(dst + c, src[c]);
  };
  auto item = [&](int64_t b, bool inner) {
    C* w = work + b * N * K;
    O* o = out + b * m * K;
    Source<S, C> source{in + b * n_valid * K, K, n_valid, mult, C(scale)};
    if (!split) {
      fwht_rows<S, C>(w, N, K, K, &source, 0, 1, inner);
      for (int64_t p = 0; p < m; ++p) store_row(o + p * K, w + select[p] * K);
      return;
    }
    parallel_for(sp.N1, inner, [&](int64_t lo, int64_t hi) {
      for (int64_t i1 = lo; i1 < hi; ++i1)
        fwht_rows<S, C>(w + i1 * sp.N2 * K, sp.N2, K, K, &source, i1 * sp.N2, 1, false);
    });
    const int64_t gK = sp.g * K;
    parallel_for(sp.N2 / sp.g, inner, [&](int64_t lo, int64_t hi) {
      thread_local std::vector<C> buf;
      buf.resize(size_t(sp.N1 * gK));
      for (int64_t i = lo; i < hi; ++i) {
        if (offs[size_t((i + 1) * sp.g)] == offs[size_t(i * sp.g)]) continue;  // nothing selected here
        for (int64_t i1 = 0; i1 < sp.N1; ++i1)
          std::memcpy(buf.data() + i1 * gK, w + (i1 * sp.N2 + i * sp.g) * K, sizeof(C) * size_t(gK));
        fwht_direct(buf.data(), sp.N1, gK, gK);
        for (int64_t t = 0; t < sp.g; ++t) {
          const int64_t i2 = i * sp.g + t;
          for (int64_t e = offs[size_t(i2)]; e < offs[size_t(i2 + 1)]; ++e)
            store_row(o + entries[size_t(2 * e)] * K, buf.data() + entries[size_t(2 * e + 1)] * gK + t * K);
        }
      }
    });
  };
  if (B >= omp_get_max_threads() && B * N * K > kCacheElems) {
    parallel_for(B, true, [&](int64_t lo, int64_t hi) {
      for (int64_t b = lo; b < hi; ++b) item(b, false);
    });
  } else {
    for (int64_t b = 0; b < B; ++b) item(b, true);
  }
}

template <typename S>
void fwht_select_from(const S* in, void* work, void* out, DType out_dt, int64_t B, int64_t n_valid, int64_t N,
                      int64_t K, const int8_t* mult, double scale, const int64_t* select, int64_t m) {
  switch (out_dt) {
    case DType::f32: return fwht_select_typed(in, work, static_cast<float*>(out), B, n_valid, N, K, mult, scale, select, m);
    case DType::f64: return fwht_select_typed(in, work, static_cast<double*>(out), B, n_valid, N, K, mult, scale, select, m);
    case DType::f16: return fwht_select_typed(in, work, static_cast<half_bits*>(out), B, n_valid, N, K, mult, scale, select, m);
    case DType::bf16: return fwht_select_typed(in, work, static_cast<bf16_bits*>(out), B, n_valid, N, K, mult, scale, select, m);
  }
}

// ---------------------------------------------------------------- sparse sketches

template <typename S, typename C>
void sparse_left(const S* A, C* out, int64_t B, int64_t n, int64_t d, int64_t m, int64_t s,
                 const int32_t* rows, const int8_t* signs, C scale) {
  // out[b, rows[j, l], :] += sign * A[b, j, :]. Threads own disjoint column blocks of out (no
  // races). With one column block (d <= 64, one item) and n >> m, the j range is cut into `parts`
  // pieces scattered into private (m, d) buffers, summed in piece order. Both the path and `parts` follow from
  // the sizes only, never the thread count, so the result is bit-identical for every count.
  advise_huge_pages(out, size_t(B * m * d) * sizeof(C));
  std::fill(out, out + B * m * d, C(0));
  const int64_t col_block = 64;
  const int64_t nblocks = B * ((d + col_block - 1) / col_block);
  const bool parallel = n * s * d * B > kParallelWork;
  // Pieces of j: at most kMaxParts, and few enough that summing the buffers (parts·m·d adds)
  // stays a quarter of the scatter (n·s·d).
  const int64_t parts = std::min<int64_t>(kMaxParts, n * s / (4 * m));
  auto scatter = [&](const S* Ab, C* ob, int64_t j0, int64_t j1, int64_t c0, int64_t c1) {
    for (int64_t j = j0; j < j1; ++j) {
      const S* a = Ab + j * d;
      for (int64_t l = 0; l < s; ++l) {
        const C f = signs[j * s + l] < 0 ? -scale : scale;
        C* o = ob + int64_t(rows[j * s + l]) * d;
#pragma omp simd
        for (int64_t c = c0; c < c1; ++c) o[c] += f * C(Storage<S>::load(a + c));
      }
    }
  };
  if (!parallel || nblocks > 1 || parts < 2) {
    const int64_t per_b = (d + col_block - 1) / col_block;
    parallel_for(nblocks, parallel, [&](int64_t b0, int64_t b1) {
      for (int64_t t = b0; t < b1; ++t) {
        const int64_t b = t / per_b, c0 = (t % per_b) * col_block;
        scatter(A + b * n * d, out + b * m * d, 0, n, c0, std::min(d, c0 + col_block));
      }
    });
    return;
  }
  std::vector<C> partial(size_t(parts) * size_t(m * d));
  for (int64_t b = 0; b < B; ++b) {
    std::fill(partial.begin(), partial.end(), C(0));
    parallel_for(parts, true, [&](int64_t p0, int64_t p1) {
      for (int64_t p = p0; p < p1; ++p)
        scatter(A + b * n * d, partial.data() + size_t(p) * size_t(m * d), n * p / parts, n * (p + 1) / parts, 0, d);
    });
    C* ob = out + b * m * d;
    for (int64_t p = 0; p < parts; ++p) {
      const C* q = partial.data() + size_t(p) * size_t(m * d);
#pragma omp simd
      for (int64_t i = 0; i < m * d; ++i) ob[i] += q[i];
    }
  }
}

template <typename S, typename C>
void sparse_right(const S* A, C* out, int64_t R, int64_t n, int64_t m, int64_t s,
                  const int32_t* rows, const int8_t* signs, C scale) {
  // out[r, rows[j, l]] += sign * A[r, j]: rows of A are independent.
  parallel_for(R, R * n * s > kParallelWork, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const S* a = A + r * n;
      C* o = out + r * m;
      std::fill(o, o + m, C(0));
      for (int64_t j = 0; j < n; ++j) {
        const C v = scale * C(Storage<S>::load(a + j));
        for (int64_t l = 0; l < s; ++l)
          o[rows[j * s + l]] += signs[j * s + l] < 0 ? -v : v;
      }
    }
  });
}

template <typename S>
void sparse_apply_from(const S* A, void* out, DType out_dt, bool right, int64_t B, int64_t n,
                       int64_t d, int64_t m, int64_t s, const int32_t* rows, const int8_t* signs,
                       double scale) {
  if (out_dt == DType::f64) {
    double* o = static_cast<double*>(out);
    if (right) sparse_right(A, o, B * d, n, m, s, rows, signs, scale);
    else sparse_left(A, o, B, n, d, m, s, rows, signs, scale);
  } else {
    float* o = static_cast<float*>(out);
    if (right) sparse_right(A, o, B * d, n, m, s, rows, signs, float(scale));
    else sparse_left(A, o, B, n, d, m, s, rows, signs, float(scale));
  }
}

}  // namespace

void fwht(const void* in, void* out, DType dt, DType out_dt, int64_t B, int64_t n_valid,
          int64_t N, int64_t K, const int8_t* row_mult, double scale) {
  switch (dt) {
    case DType::f32: return fwht_from(static_cast<const float*>(in), out, out_dt, B, n_valid, N, K, row_mult, scale);
    case DType::f64: return fwht_from(static_cast<const double*>(in), out, out_dt, B, n_valid, N, K, row_mult, scale);
    case DType::f16: return fwht_from(static_cast<const half_bits*>(in), out, out_dt, B, n_valid, N, K, row_mult, scale);
    case DType::bf16: return fwht_from(static_cast<const bf16_bits*>(in), out, out_dt, B, n_valid, N, K, row_mult, scale);
  }
}

void fwht_select(const void* in, void* work, void* out, DType dt, DType out_dt, int64_t B, int64_t n_valid,
                 int64_t N, int64_t K, const int8_t* row_mult, double scale, const int64_t* select, int64_t m) {
  switch (dt) {
    case DType::f32: return fwht_select_from(static_cast<const float*>(in), work, out, out_dt, B, n_valid, N, K, row_mult, scale, select, m);
    case DType::f64: return fwht_select_from(static_cast<const double*>(in), work, out, out_dt, B, n_valid, N, K, row_mult, scale, select, m);
    case DType::f16: return fwht_select_from(static_cast<const half_bits*>(in), work, out, out_dt, B, n_valid, N, K, row_mult, scale, select, m);
    case DType::bf16: return fwht_select_from(static_cast<const bf16_bits*>(in), work, out, out_dt, B, n_valid, N, K, row_mult, scale, select, m);
  }
}

void sparse_hash(int32_t* rows, int8_t* signs, int64_t n, int64_t col0, int64_t m, int64_t s,
                 uint64_t stream, uint64_t seed) {
  // Column j, non-zero l: one Philox block (index j * s + l); lane 0 picks the row inside the
  // l-th of s near-equal row blocks (distinct rows per column), bit 0 of lane 1 the sign.
  parallel_for(n, n * s * 8 > kParallelWork, [&](int64_t j0, int64_t j1) {
    for (int64_t j = j0; j < j1; ++j) {
      for (int64_t l = 0; l < s; ++l) {
        const Philox4x32 w = philox4x32_10(uint64_t(col0 + j) * uint64_t(s) + uint64_t(l), stream, seed);
        const int64_t lo = l * m / s, hi = (l + 1) * m / s;
        rows[j * s + l] = int32_t(lo + reduce_range(w.v[0], uint32_t(hi - lo)));
        signs[j * s + l] = (w.v[1] & 1u) ? int8_t(-1) : int8_t(1);
      }
    }
  });
}

void sparse_apply(const void* A, void* out, DType dt, DType out_dt, bool right, int64_t B,
                  int64_t n, int64_t d, int64_t m, int64_t s, const int32_t* rows,
                  const int8_t* signs, double scale) {
  switch (dt) {
    case DType::f32: return sparse_apply_from(static_cast<const float*>(A), out, out_dt, right, B, n, d, m, s, rows, signs, scale);
    case DType::f64: return sparse_apply_from(static_cast<const double*>(A), out, out_dt, right, B, n, d, m, s, rows, signs, scale);
    case DType::f16: return sparse_apply_from(static_cast<const half_bits*>(A), out, out_dt, right, B, n, d, m, s, rows, signs, scale);
    case DType::bf16: return sparse_apply_from(static_cast<const bf16_bits*>(A), out, out_dt, right, B, n, d, m, s, rows, signs, scale);
  }
}

}  // namespace linalg_core::cpu::LC_ISA
