// Launch parameters of the sketching kernels (csrc/cuda/sketch/kernels.cuh): the block sizes and
// limits the kernels and launchers share, and the parameter structs the launchers in launch.cu fill.
#pragma once
#include <cstdint>

namespace linalg_core::cuda::sketch {

constexpr int64_t kMaxBlocks = int64_t(1) << 20;  // grid-stride loops beyond this

// fwht: threads per block of a pass, and the longest transform of one pass (one thread block).
constexpr int kFwhtThreads = 256;
constexpr int kFwhtMaxLog2L = 8;  // 256 points

// sparse_hash / sparse_apply: threads per block; the right sketch accumulates one output row in
// shared memory when it fits (m <= 8192 floats / 4096 doubles), split into enough work items to
// fill the GPU when the rows are few, each at least kRightMinChunk columns of A.
constexpr int kSparseThreads = 256;
constexpr int64_t kRightSmemBytes = 32768;
constexpr int64_t kRightTargetItems = 4096;
constexpr int64_t kRightMinChunk = 2048;

// One pass of the Walsh-Hadamard transform: length-L transforms (L = 2^log2L <= 256) along the
// middle axis of an array viewed as (Bp, L, Kp), in one thread block per tile.
//
// A transform of length N = L1 * L2 * ... is done as passes of increasing stride S (levels
// h < L1 first, then L1 <= h < L1 * L2, ...): pass q, of stride S = L1 * ... * L_{q-1}, is
// exactly a stride-1 pass over the (B * N / (L_q * S), L_q, S * K) view of the (B, N, K) array.
//
// The input is read as rows r of (n_valid, Kp) items b: output row block bp covers item
// b = bp >> log2grp, rows r = (bp & (2^log2grp - 1)) * L + i, i < L; rows r >= n_valid are zero.
// The first pass has grp = N / L; later passes read their own output (grp = 1, n_valid = L).
struct FwhtPass {
  const void* in;
  void* out;
  int64_t Bp;           // transforms batch of this view
  int64_t Kp;           // columns (contiguous) of this view
  int64_t n_valid;      // rows of an input item (first pass), L otherwise
  const int8_t* mult;   // per input row +-1 (first pass only; null = all +1)
  double scale;         // applied while loading (first pass only)
  int log2L;
  int log2grp;
  bool first;           // apply mult and scale

  // Tiling: a tile is nbt consecutive batch items x tk consecutive columns, i.e. V = nbt * tk
  // vectors of L elements, held in shared memory as s[i * pitch + v], v = bi * tk + c.
  int tk;               // columns per tile (tk == Kp when nbt > 1)
  int nbt;              // batch items per tile
  int vmax;             // vector slots per tile: power of two, >= V, <= threads per block
  int pitch;            // shared row pitch in elements
  int64_t col_tiles;    // tiles along Kp
  int64_t ntiles;       // ceil(Bp / nbt) * col_tiles
  uint64_t magic_tk;    // f / w == (f * magic) >> 32 for w = tk and f * w < 2^32
  uint64_t magic_edge;  // the same for the last column tile's width
  int edge_tk;          // width of the last column tile
};

// sparse_apply, left (out (B, m, d) = scale S A for A (B, n, d), d > 1) with global atomics.
template <typename I>
struct SparseLeft {
  const void* A;
  void* out;
  I total;              // B * n * d
  I n, d;
  int64_t m;
  int64_t s;
  const int32_t* rows;  // (n, s)
  const int8_t* signs;  // (n, s)
  double scale;
};

// sparse_apply, right (out (R, m) = scale A S^T for A (R, n)); also the left sketch when d == 1.
struct SparseRight {
  const void* A;
  void* out;
  int64_t R, n, m, s;
  const int32_t* rows;
  const int8_t* signs;
  double scale;
  int64_t chunk;    // shared-memory path: columns j of A per work item
  int64_t nchunks;  // work items per row of A
};

}  // namespace linalg_core::cuda::sketch
