// Launchers of the sketching kernels (linalg_core/sketch.h). Same contracts as csrc/cpu/sketch.cpp.
//
// fwht: transforms of N <= 256 points are one pass (one kernel): each thread block loads a tile
// of V vectors (V consecutive columns, or whole (N, K) items when K is small) into shared memory
// in the compute precision, runs all levels and stores the converted result. Longer transforms
// use H_N = (H_N1 (x) I)(I (x) H_N2) recursively: ceil(log2(N) / 8) passes of <= 256 points,
// strides increasing, each a stride-1 pass over a reshaped view (see FwhtPass), the first
// reading the input and the others in place in `out` or, for half / bfloat16 outputs, in the
// float `workspace` (the last pass then converts it into `out`).
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "kernels.cuh"
#include "linalg_core/sketch.h"
#include "params.h"

namespace linalg_core::cuda {
namespace {

using sketch::FwhtPass;
using sketch::kFwhtMaxLog2L;
using sketch::kFwhtThreads;
using sketch::kMaxBlocks;
using sketch::kRightMinChunk;
using sketch::kRightSmemBytes;
using sketch::kRightTargetItems;
using sketch::kSparseThreads;

inline unsigned blocks(int64_t items) { return static_cast<unsigned>(std::min<int64_t>(items, kMaxBlocks)); }
inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
inline cudaStream_t as_stream(uintptr_t s) { return reinterpret_cast<cudaStream_t>(s); }

// Returns a launch or runtime error, clearing it (it is reported once, to our caller).
inline int last_error() { return static_cast<int>(cudaGetLastError()); }

inline bool valid_dtype(DType t) {
  const int c = static_cast<int>(t);
  return c >= 0 && c <= 3;
}

inline int log2_exact(int64_t x) {  // x a power of two
  int k = 0;
  while ((int64_t(1) << k) < x) ++k;
  return k;
}

// (f * magic) >> 32 == f / w for 0 <= f, f * w < 2^32 (Granlund-Montgomery with
// magic * w = 2^32 + e, 0 < e <= w).
inline uint64_t div_magic(int w) { return (uint64_t(1) << 32) / uint64_t(w) + 1; }

// ---------------------------------------------------------------- fwht

// Tiles of one pass computing in A. vmax vector slots: the tile holds about 32 KiB (L * vmax
// elements), at least one bank period of slots (32 floats / 16 doubles, so that the butterflies'
// warps or half-warps read 32 consecutive banks) and at most one slot per thread. The pitch
// makes the load / store phases (runs of tk columns, i.e. rows i at pitch apart) hit distinct
// banks when tk is small (pitch = tk mod bank period); shared memory stays <= 40 KiB, under the
// 48 KiB available without opt-in on every architecture.
template <typename A>
void plan_tiles(FwhtPass& p) {
  constexpr int kPeriod = sizeof(A) == 4 ? 32 : 16;
  constexpr int kTileElems = 32768 / int(sizeof(A));
  const int vmax = std::max(kPeriod, std::min(kFwhtThreads, kTileElems >> p.log2L));
  if (p.Kp >= vmax) {
    p.tk = vmax;
    p.nbt = 1;
  } else {
    p.tk = static_cast<int>(p.Kp);
    p.nbt = static_cast<int>(std::min<int64_t>(vmax / p.tk, p.Bp));
  }
  p.vmax = vmax;
  p.col_tiles = ceil_div(p.Kp, p.tk);
  p.edge_tk = static_cast<int>(p.Kp - (p.col_tiles - 1) * p.tk);
  p.ntiles = ceil_div(p.Bp, p.nbt) * p.col_tiles;
  const int V = p.nbt * p.tk;
  const int rm = p.tk % kPeriod;
  p.pitch = (rm != 0 && rm <= kPeriod / 4) ? int(ceil_div(V, kPeriod)) * kPeriod + rm : V + 1;
  p.magic_tk = div_magic(p.tk);
  p.magic_edge = div_magic(p.edge_tk);
}

template <typename S, typename O, typename A>
int launch_pass(FwhtPass p, cudaStream_t st) {
  plan_tiles<A>(p);
  const size_t smem = (size_t(1) << p.log2L) * size_t(p.pitch) * sizeof(A);
  sketch::fwht_pass_kernel<S, O, A><<<blocks(p.ntiles), kFwhtThreads, smem, st>>>(p);
  return last_error();
}

FwhtPass make_pass(const void* in, void* out, int64_t Bp, int log2L, int64_t Kp, int log2grp, int64_t n_valid,
                   const int8_t* mult, double scale, bool first) {
  FwhtPass p{};
  p.in = in;
  p.out = out;
  p.Bp = Bp;
  p.Kp = Kp;
  p.n_valid = n_valid;
  p.mult = first ? mult : nullptr;
  p.scale = first ? scale : 1.0;
  p.log2L = log2L;
  p.log2grp = log2grp;
  p.first = first;
  return p;
}

template <typename S, typename O>
int fwht_typed(const S* in, O* out, int64_t B, int64_t n_valid, int64_t N, int64_t K, const int8_t* mult,
               double scale, void* workspace, cudaStream_t st) {
  // Arithmetic of the first (or only) pass: double when either side is double. Intermediate
  // results between passes are held in the compute type W of the output (float for half /
  // bfloat16 / float outputs), as the CPU kernel computes.
  using A1 = std::conditional_t<std::is_same_v<S, double> || std::is_same_v<O, double>, double, float>;
  using W = typename Storage<O>::compute;
  const int n = log2_exact(N);
  if (n <= kFwhtMaxLog2L)
    return launch_pass<S, O, A1>(make_pass(in, out, B, n, K, 0, n_valid, mult, scale, true), st);

  W* buf;
  if constexpr (std::is_same_v<O, W>) {
    buf = out;
  } else {
    if (workspace == nullptr || reinterpret_cast<uintptr_t>(workspace) % alignof(W) != 0)
      return cudaErrorInvalidValue;
    buf = static_cast<W*>(workspace);
  }
  const int npass = (n + kFwhtMaxLog2L - 1) / kFwhtMaxLog2L;
  int done = 0;  // log2 of the stride of this pass
  for (int q = 0; q < npass; ++q) {
    const int lq = n / npass + (q < n % npass ? 1 : 0);
    const int64_t Bp = B << (n - done - lq);  // B * N / (L * S)
    const int64_t Kp = K << done;             // S * K
    int err;
    if (q == 0)
      err = launch_pass<S, W, A1>(make_pass(in, buf, Bp, lq, Kp, n - lq, n_valid, mult, scale, true), st);
    else if (q + 1 < npass)
      err = launch_pass<W, W, W>(make_pass(buf, buf, Bp, lq, Kp, 0, int64_t(1) << lq, nullptr, 1.0, false), st);
    else
      err = launch_pass<W, O, W>(make_pass(buf, out, Bp, lq, Kp, 0, int64_t(1) << lq, nullptr, 1.0, false), st);
    if (err != 0) return err;
    done += lq;
  }
  return 0;
}

template <typename S>
int fwht_from(const S* in, void* out, DType out_dt, int64_t B, int64_t n_valid, int64_t N, int64_t K,
              const int8_t* mult, double scale, void* ws, cudaStream_t st) {
  switch (out_dt) {
    case DType::f32: return fwht_typed(in, static_cast<float*>(out), B, n_valid, N, K, mult, scale, ws, st);
    case DType::f64: return fwht_typed(in, static_cast<double*>(out), B, n_valid, N, K, mult, scale, ws, st);
    case DType::f16: return fwht_typed(in, static_cast<half_bits*>(out), B, n_valid, N, K, mult, scale, ws, st);
    case DType::bf16: return fwht_typed(in, static_cast<bf16_bits*>(out), B, n_valid, N, K, mult, scale, ws, st);
  }
  return cudaErrorInvalidValue;
}

// ---------------------------------------------------------------- sparse_apply

template <typename S, typename C>
int sparse_right_typed(const S* A, C* out, int64_t R, int64_t n, int64_t m, int64_t s, const int32_t* rows,
                       const int8_t* signs, double scale, cudaStream_t st) {
  sketch::SparseRight p{};
  p.A = A;
  p.out = out;
  p.R = R;
  p.n = n;
  p.m = m;
  p.s = s;
  p.rows = rows;
  p.signs = signs;
  p.scale = scale;
  if (m * int64_t(sizeof(C)) <= kRightSmemBytes) {
    const int64_t min_chunk = std::max(kRightMinChunk, m);
    int64_t nchunks = std::max<int64_t>(1, std::min(ceil_div(kRightTargetItems, R), ceil_div(n, min_chunk)));
    p.chunk = ceil_div(n, nchunks);
    p.nchunks = ceil_div(n, p.chunk);
    sketch::sparse_right_smem_kernel<S, C>
        <<<blocks(R * p.nchunks), kSparseThreads, size_t(m) * sizeof(C), st>>>(p);
  } else {
    sketch::sparse_right_kernel<S, C><<<blocks(ceil_div(R * n, kSparseThreads)), kSparseThreads, 0, st>>>(p);
  }
  return last_error();
}

template <typename S, typename C, typename I>
int sparse_left_typed(const S* A, C* out, int64_t B, int64_t n, int64_t d, int64_t m, int64_t s,
                      const int32_t* rows, const int8_t* signs, double scale, cudaStream_t st) {
  sketch::SparseLeft<I> p{};
  p.A = A;
  p.out = out;
  p.total = I(B * n * d);
  p.n = I(n);
  p.d = I(d);
  p.m = m;
  p.s = s;
  p.rows = rows;
  p.signs = signs;
  p.scale = scale;
  sketch::sparse_left_kernel<S, C, I><<<blocks(ceil_div(B * n * d, kSparseThreads)), kSparseThreads, 0, st>>>(p);
  return last_error();
}

template <typename S, typename C>
int sparse_apply_typed(const S* A, C* out, bool right, int64_t B, int64_t n, int64_t d, int64_t m, int64_t s,
                       const int32_t* rows, const int8_t* signs, double scale, cudaStream_t st) {
  // A left sketch of d == 1 columns is a right sketch of the B rows of A (B, n).
  if (right || d == 1) return sparse_right_typed(A, out, right ? B * d : B, n, m, s, rows, signs, scale, st);
  if (B * n * d <= (int64_t(1) << 31))  // 32-bit indices; e + grid stride stays below 2^32
    return sparse_left_typed<S, C, uint32_t>(A, out, B, n, d, m, s, rows, signs, scale, st);
  return sparse_left_typed<S, C, uint64_t>(A, out, B, n, d, m, s, rows, signs, scale, st);
}

template <typename S>
int sparse_apply_from(const S* A, void* out, DType out_dt, bool right, int64_t B, int64_t n, int64_t d, int64_t m,
                      int64_t s, const int32_t* rows, const int8_t* signs, double scale, cudaStream_t st) {
  if (out_dt == DType::f64)
    return sparse_apply_typed(A, static_cast<double*>(out), right, B, n, d, m, s, rows, signs, scale, st);
  return sparse_apply_typed(A, static_cast<float*>(out), right, B, n, d, m, s, rows, signs, scale, st);
}

}  // namespace

int64_t fwht_workspace_bytes(DType out_dt, int64_t B, int64_t N, int64_t K) {
  if (B <= 0 || N <= 0 || K <= 0) return 0;
  if (out_dt != DType::f16 && out_dt != DType::bf16) return 0;  // f32 / f64: passes run in `out`
  if (N <= (int64_t(1) << kFwhtMaxLog2L)) return 0;            // one pass: no intermediate
  return B * N * K * int64_t(sizeof(float));
}

int fwht(const void* in, void* out, DType dt, DType out_dt, int64_t B, int64_t n_valid, int64_t N, int64_t K,
         const int8_t* row_mult, double scale, void* workspace, uintptr_t stream) {
  if (!valid_dtype(dt) || !valid_dtype(out_dt)) return cudaErrorInvalidValue;
  if (B < 0 || K < 0 || N < 0 || n_valid < 0 || n_valid > N || (N & (N - 1)) != 0) return cudaErrorInvalidValue;
  if (B == 0 || N == 0 || K == 0) return cudaSuccess;
  const cudaStream_t st = as_stream(stream);
  switch (dt) {
    case DType::f32:
      return fwht_from(static_cast<const float*>(in), out, out_dt, B, n_valid, N, K, row_mult, scale, workspace, st);
    case DType::f64:
      return fwht_from(static_cast<const double*>(in), out, out_dt, B, n_valid, N, K, row_mult, scale, workspace, st);
    case DType::f16:
      return fwht_from(static_cast<const half_bits*>(in), out, out_dt, B, n_valid, N, K, row_mult, scale, workspace,
                       st);
    case DType::bf16:
      return fwht_from(static_cast<const bf16_bits*>(in), out, out_dt, B, n_valid, N, K, row_mult, scale, workspace,
                       st);
  }
  return cudaErrorInvalidValue;
}

int sparse_hash(int32_t* rows, int8_t* signs, int64_t n, int64_t col0, int64_t m, int64_t s, uint64_t stream_id,
                uint64_t seed, uintptr_t stream) {
  if (n < 0 || m < 0 || s < 0) return cudaErrorInvalidValue;
  const int64_t total = n * s;
  if (total == 0) return cudaSuccess;
  sketch::sparse_hash_kernel<<<blocks(ceil_div(total, kSparseThreads)), kSparseThreads, 0, as_stream(stream)>>>(
      rows, signs, total, col0, m, s, stream_id, seed);
  return last_error();
}

int sparse_apply(const void* A, void* out, DType dt, DType out_dt, bool right, int64_t B, int64_t n, int64_t d,
                 int64_t m, int64_t s, const int32_t* rows, const int8_t* signs, double scale, uintptr_t stream) {
  if (!valid_dtype(dt) || (out_dt != DType::f32 && out_dt != DType::f64)) return cudaErrorInvalidValue;
  if (B < 0 || n < 0 || d < 0 || m < 0 || s < 0) return cudaErrorInvalidValue;
  const int64_t out_elems = B * m * d;
  if (out_elems == 0) return cudaSuccess;
  const cudaStream_t st = as_stream(stream);
  const size_t esize = out_dt == DType::f64 ? sizeof(double) : sizeof(float);
  const cudaError_t err = cudaMemsetAsync(out, 0, size_t(out_elems) * esize, st);
  if (err != cudaSuccess) {
    cudaGetLastError();
    return err;
  }
  if (n == 0 || s == 0) return cudaSuccess;
  switch (dt) {
    case DType::f32:
      return sparse_apply_from(static_cast<const float*>(A), out, out_dt, right, B, n, d, m, s, rows, signs, scale, st);
    case DType::f64:
      return sparse_apply_from(static_cast<const double*>(A), out, out_dt, right, B, n, d, m, s, rows, signs, scale,
                               st);
    case DType::f16:
      return sparse_apply_from(static_cast<const half_bits*>(A), out, out_dt, right, B, n, d, m, s, rows, signs,
                               scale, st);
    case DType::bf16:
      return sparse_apply_from(static_cast<const bf16_bits*>(A), out, out_dt, right, B, n, d, m, s, rows, signs,
                               scale, st);
  }
  return cudaErrorInvalidValue;
}

}  // namespace linalg_core::cuda
