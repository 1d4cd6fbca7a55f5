// Sketching kernels: the fast Walsh-Hadamard transform (shared-memory tiles, one pass per
// <= 256-point factor), the sparse-sign hash and the sparse scatter-add (atomics).
#pragma once
#include <cstdint>

#include "linalg_core/dtype.h"
#include "linalg_core/philox.h"
#include "params.h"

namespace linalg_core::cuda::sketch {

// Products that are never contracted into an FMA with a later add (the CPU kernels round the
// scaled input before the butterflies, and so do we).
__device__ __forceinline__ float mul_rn(float a, float b) { return __fmul_rn(a, b); }
__device__ __forceinline__ double mul_rn(double a, double b) { return __dmul_rn(a, b); }

template <typename A, typename S>
__device__ __forceinline__ A load_as(const S* p) {
  return static_cast<A>(Storage<S>::load(p));
}

// Stores through the storage's compute type: half / bfloat16 are rounded from float by the
// dtype.h conversions (a double value is first rounded to float).
template <typename O, typename A>
__device__ __forceinline__ void store_from(O* p, A v) {
  Storage<O>::store(p, static_cast<typename Storage<O>::compute>(v));
}

// ---------------------------------------------------------------- Walsh-Hadamard transform

// Levels h, 2h, ..., h * 2^(LOGR-1) (h = 2^log2h) of the length-L transforms of vector slot v
// of the shared tile s[row * pitch + v]. A unit is the 2^LOGR rows base + t * h, t < 2^LOGR, of
// one vector; unit u has base = (u mod h) + (u / h) * h * 2^LOGR. Each level is the butterfly
// (a, b) -> (a + b, a - b), a the lower row, in increasing h order: the same operations as
// the CPU kernel's, so results agree with it bit for bit in the same precision.
template <int LOGR, typename A>
__device__ __forceinline__ void fwht_levels(A* s, int pitch, int log2L, int log2h, int v, int u0,
                                            int ustride) {
  constexpr int R = 1 << LOGR;
  const int units = 1 << (log2L - LOGR);
  const int h = 1 << log2h;
  const int hp = h * pitch;
  for (int u = u0; u < units; u += ustride) {
    const int base = (u & (h - 1)) + ((u >> log2h) << (log2h + LOGR));
    A* q = s + base * pitch + v;
    A x[R];
#pragma unroll
    for (int t = 0; t < R; ++t) x[t] = q[t * hp];
#pragma unroll
    for (int d = 1; d < R; d <<= 1) {
#pragma unroll
      for (int t = 0; t < R; ++t) {
        if ((t & d) == 0) {
          const A a = x[t], b = x[t + d];
          x[t] = a + b;
          x[t + d] = a - b;
        }
      }
    }
#pragma unroll
    for (int t = 0; t < R; ++t) q[t * hp] = x[t];
  }
}

// One pass (see FwhtPass): for each tile, load (converted to A, scaled and signed on the first
// pass, zero rows past n_valid) into shared memory, run the log2(L) levels, store converted to
// O. Reads every element of its tile before writing any, so in == out (in place) is allowed:
// tiles are disjoint. Grid-stride over tiles; the block size must be kFwhtThreads.
template <typename S, typename O, typename A>
__global__ void __launch_bounds__(kFwhtThreads) fwht_pass_kernel(const FwhtPass p) {
  extern __shared__ __align__(16) unsigned char fwht_smem[];
  A* s = reinterpret_cast<A*>(fwht_smem);
  const S* in = static_cast<const S*>(p.in);
  O* out = static_cast<O*>(p.out);
  const int L = 1 << p.log2L;
  const int tid = static_cast<int>(threadIdx.x);
  // Butterfly mapping: vector slot fastest, so that a warp (a half-warp for 8-byte A) reads
  // consecutive words of one shared row: no bank conflicts.
  const int v = tid & (p.vmax - 1);
  const int u0 = tid / p.vmax;
  const int ustride = kFwhtThreads / p.vmax;
  const A sc = static_cast<A>(p.scale);
  const int64_t grp_mask = (int64_t(1) << p.log2grp) - 1;

  for (int64_t tile = blockIdx.x; tile < p.ntiles; tile += gridDim.x) {
    const int64_t bg = tile / p.col_tiles;
    const int64_t ct = tile - bg * p.col_tiles;
    const int64_t bp0 = bg * p.nbt;
    const int64_t c0 = ct * p.tk;
    const int nb = static_cast<int>(p.Bp - bp0 < p.nbt ? p.Bp - bp0 : p.nbt);
    const bool edge = ct == p.col_tiles - 1;
    const int w = edge ? p.edge_tk : p.tk;  // columns of this tile (== tk when nb > 1)
    const uint64_t magic = edge ? p.magic_edge : p.magic_tk;
    const int n_elem = nb * L * w;  // <= vmax * L <= 8192

    // Load, in (bi, i, c) order: contiguous runs of w columns (the whole item when nbt > 1).
#pragma unroll 4
    for (int f = tid; f < n_elem; f += kFwhtThreads) {
      const int q = static_cast<int>((uint64_t(f) * magic) >> 32);  // f / w
      const int c = f - q * w;
      const int i = q & (L - 1);
      const int bi = q >> p.log2L;
      const int64_t bp = bp0 + bi;
      const int64_t r = ((bp & grp_mask) << p.log2L) + i;
      A x = A(0);
      if (r < p.n_valid) {
        const int64_t b = bp >> p.log2grp;
        x = load_as<A>(in + (b * p.n_valid + r) * p.Kp + c0 + c);
        if (p.first) x = mul_rn((p.mult != nullptr && p.mult[r] < 0) ? -sc : sc, x);
      }
      s[i * p.pitch + bi * p.tk + c] = x;
    }
    __syncthreads();

    // Levels in groups of three (radix-8 butterflies in registers), one sync per group.
    const bool active = v < nb * w;
    int lh = 0;
    for (; lh + 3 <= p.log2L; lh += 3) {
      if (active) fwht_levels<3>(s, p.pitch, p.log2L, lh, v, u0, ustride);
      __syncthreads();
    }
    if (p.log2L - lh == 2) {
      if (active) fwht_levels<2>(s, p.pitch, p.log2L, lh, v, u0, ustride);
      __syncthreads();
    } else if (p.log2L - lh == 1) {
      if (active) fwht_levels<1>(s, p.pitch, p.log2L, lh, v, u0, ustride);
      __syncthreads();
    }

    // Store, same order as the load.
#pragma unroll 4
    for (int f = tid; f < n_elem; f += kFwhtThreads) {
      const int q = static_cast<int>((uint64_t(f) * magic) >> 32);
      const int c = f - q * w;
      const int i = q & (L - 1);
      const int bi = q >> p.log2L;
      const int64_t bp = bp0 + bi;
      store_from(out + (bp * L + i) * p.Kp + c0 + c, s[i * p.pitch + bi * p.tk + c]);
    }
    __syncthreads();  // the next tile's load overwrites s
  }
}

// ---------------------------------------------------------------- sparse sketches

// Entry e = j * s + l (column j, non-zero l): Philox block (col0 + j) * s + l; lane 0 picks the
// row inside the l-th of s near-equal row blocks, bit 0 of lane 1 the sign (as the CPU kernel).
__global__ void sparse_hash_kernel(int32_t* __restrict__ rows, int8_t* __restrict__ signs, int64_t total,
                                   int64_t col0, int64_t m, int64_t s, uint64_t stream, uint64_t seed) {
  for (int64_t e = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; e < total;
       e += int64_t(gridDim.x) * blockDim.x) {
    const int64_t j = e / s, l = e - j * s;
    const Philox4x32 w = philox4x32_10(uint64_t(col0 + j) * uint64_t(s) + uint64_t(l), stream, seed);
    const int64_t lo = l * m / s, hi = (l + 1) * m / s;
    rows[e] = int32_t(lo + reduce_range(w.v[0], uint32_t(hi - lo)));
    signs[e] = (w.v[1] & 1u) ? int8_t(-1) : int8_t(1);
  }
}

// Left: out[b, rows[j, l], c] += sign[j, l] * scale * A[b, j, c], one thread per element of A
// (c fastest: coalesced loads and atomics). I = uint32_t when total <= 2^31 (cheap division).
// Rows outside [0, m) are skipped (never produced by sparse_hash).
template <typename S, typename C, typename I>
__global__ void sparse_left_kernel(const SparseLeft<I> p) {
  const S* A = static_cast<const S*>(p.A);
  C* out = static_cast<C*>(p.out);
  const C sc = static_cast<C>(p.scale);
  const I stride = I(gridDim.x) * I(blockDim.x);
  for (I e = I(blockIdx.x) * I(blockDim.x) + I(threadIdx.x); e < p.total; e += stride) {
    const I row = e / p.d;
    const I c = e - row * p.d;
    const I b = row / p.n;
    const I j = row - b * p.n;
    const C a = load_as<C>(A + e);
    const int64_t k0 = int64_t(j) * p.s;
    C* ob = out + int64_t(b) * p.m * int64_t(p.d) + int64_t(c);
    for (int64_t l = 0; l < p.s; ++l) {
      const int32_t ro = p.rows[k0 + l];
      if (ro < 0 || ro >= p.m) continue;
      atomicAdd(ob + int64_t(ro) * int64_t(p.d), mul_rn(p.signs[k0 + l] < 0 ? -sc : sc, a));
    }
  }
}

// Right, m small: a work item is (row r of A, chunk of its columns j); the block accumulates
// out[r, :] in shared memory (shared atomics), then stores it (one chunk per row) or adds it to
// out with global atomics (several chunks per row; zero partial sums are skipped).
template <typename S, typename C>
__global__ void __launch_bounds__(256) sparse_right_smem_kernel(const SparseRight p) {
  extern __shared__ __align__(16) unsigned char sparse_smem[];
  C* acc = reinterpret_cast<C*>(sparse_smem);
  const S* A = static_cast<const S*>(p.A);
  C* out = static_cast<C*>(p.out);
  const C sc = static_cast<C>(p.scale);
  const int m = static_cast<int>(p.m);
  const int64_t items = p.R * p.nchunks;
  for (int64_t it = blockIdx.x; it < items; it += gridDim.x) {
    const int64_t r = it / p.nchunks, ch = it - r * p.nchunks;
    for (int i = threadIdx.x; i < m; i += blockDim.x) acc[i] = C(0);
    __syncthreads();
    const int64_t j0 = ch * p.chunk;
    const int64_t j1 = p.n - j0 < p.chunk ? p.n : j0 + p.chunk;
    const S* a = A + r * p.n;
    for (int64_t j = j0 + threadIdx.x; j < j1; j += blockDim.x) {
      const C x = mul_rn(sc, load_as<C>(a + j));
      const int64_t k0 = j * p.s;
      for (int64_t l = 0; l < p.s; ++l) {
        const int32_t ro = p.rows[k0 + l];
        if (ro < 0 || ro >= m) continue;
        atomicAdd(acc + ro, p.signs[k0 + l] < 0 ? -x : x);
      }
    }
    __syncthreads();
    C* o = out + r * p.m;
    if (p.nchunks == 1) {
      for (int i = threadIdx.x; i < m; i += blockDim.x) o[i] = acc[i];
    } else {
      for (int i = threadIdx.x; i < m; i += blockDim.x) {
        const C y = acc[i];
        if (y != C(0)) atomicAdd(o + i, y);
      }
    }
    __syncthreads();  // the next item zeroes acc
  }
}

// Right, m large: one thread per element of A (j fastest), global atomics into out[r, :].
template <typename S, typename C>
__global__ void sparse_right_kernel(const SparseRight p) {
  const S* A = static_cast<const S*>(p.A);
  C* out = static_cast<C*>(p.out);
  const C sc = static_cast<C>(p.scale);
  const int64_t total = p.R * p.n;
  for (int64_t e = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; e < total;
       e += int64_t(gridDim.x) * blockDim.x) {
    const int64_t r = e / p.n, j = e - r * p.n;
    const C x = mul_rn(sc, load_as<C>(A + e));
    const int64_t k0 = j * p.s;
    C* o = out + r * p.m;
    for (int64_t l = 0; l < p.s; ++l) {
      const int32_t ro = p.rows[k0 + l];
      if (ro < 0 || ro >= p.m) continue;
      atomicAdd(o + ro, p.signs[k0 + l] < 0 ? -x : x);
    }
  }
}

}  // namespace linalg_core::cuda::sketch
