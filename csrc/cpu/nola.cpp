// NOLA's random-basis combinations (linalg_core/nola.h) without storing a basis.
//
// The flattened (rows, cols) matrix is cut into tiles of kTile Philox blocks (4 kTile
// elements). combine: a tile keeps its k-term sums in registers / L1 in Philox lane order
// ([lane][block], so the generated normals are added without a shuffle) and runs over the k
// streams, then writes the tile once; every element sums its k terms in the order i = 0..k-1, so
// the result does not depend on the thread count. coeff_grad: the gradient tile is loaded once in
// lane order, each of k streams is generated over it and dotted with it; tiles are grouped into
// fixed spans whose per-basis partial sums (float64) are added in span order at the end, so the
// result is the same for any thread count too.
#include <algorithm>
#include <vector>

#include "isa.h"
#include "linalg_core/cpu_kernels.h"
#include "linalg_core/dtype.h"
#include "linalg_core/nola.h"
#include "linalg_core/philox.h"
#include "philox_normals.h"

namespace linalg_core::cpu::LC_ISA {
namespace {

constexpr int64_t kTile = 64;        // Philox blocks per tile (256 elements)
constexpr int64_t kSpanTiles = 64;   // tiles per span of coeff_grad's partial sums
constexpr int64_t kBasisBlock = 64;  // bases per coeff_grad task
// Below this many generated normals (k * rows * cols) a call runs on the calling thread.
constexpr int64_t kParallelValues = int64_t(1) << 16;

// z[lane][j] = normal 4 (b0 + j) + lane of stream `stream`, j < nb.
template <typename Real>
inline void normals_tile(Real (&z)[4][kTile], uint64_t b0, int64_t nb, uint64_t stream, uint64_t seed) {
  uint32_t w[4][kTile];
#pragma omp simd
  for (int64_t j = 0; j < nb; ++j) {
    const Philox4x32 p = philox4x32_10(b0 + uint64_t(j), stream, seed);
    w[0][j] = p.v[0]; w[1][j] = p.v[1]; w[2][j] = p.v[2]; w[3][j] = p.v[3];
  }
#pragma omp simd
  for (int64_t j = 0; j < nb; ++j)
    philox_normals::normals4<Real>(w[0][j], w[1][j], w[2][j], w[3][j], &z[0][j], &z[1][j], &z[2][j], &z[3][j]);
}

template <typename Real>
void combine_typed(const Real* coeffs, Real* out, int64_t k, int64_t n, uint64_t stream_base, uint64_t seed,
                   double scale) {
  const int64_t blocks = (n + 3) / 4, tiles = (blocks + kTile - 1) / kTile;
  parallel_for(tiles, k * n > kParallelValues, [&](int64_t t0, int64_t t1) {
    alignas(64) Real acc[4][kTile];
    alignas(64) Real z[4][kTile];
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t b0 = t * kTile, nb = std::min(kTile, blocks - b0);
      for (auto& row : acc) std::fill(row, row + kTile, Real(0));
      for (int64_t i = 0; i < k; ++i) {
        normals_tile<Real>(z, uint64_t(b0), nb, stream_base + uint64_t(i), seed);
        const Real c = coeffs[i];
        for (int lane = 0; lane < 4; ++lane) {
#pragma omp simd
          for (int64_t j = 0; j < nb; ++j) acc[lane][j] += c * z[lane][j];
        }
      }
      const Real s = Real(scale);
      for (int64_t j = 0; j < nb; ++j) {
        for (int lane = 0; lane < 4; ++lane) {
          const int64_t e = 4 * (b0 + j) + lane;
          if (e < n) out[e] = s * acc[lane][j];
        }
      }
    }
  });
}

template <typename Real>
void coeff_grad_typed(const Real* grad, Real* out, int64_t k, int64_t n, uint64_t stream_base, uint64_t seed,
                      double scale) {
  const int64_t blocks = (n + 3) / 4, tiles = (blocks + kTile - 1) / kTile;
  const int64_t spans = (tiles + kSpanTiles - 1) / kSpanTiles, kblocks = (k + kBasisBlock - 1) / kBasisBlock;
  std::vector<double> partial(size_t(spans) * size_t(k));  // [i][span]
  parallel_for(spans * kblocks, k * n > kParallelValues, [&](int64_t task0, int64_t task1) {
    alignas(64) Real g[4][kTile];
    alignas(64) Real z[4][kTile];
    for (int64_t task = task0; task < task1; ++task) {
      const int64_t span = task / kblocks, i0 = (task % kblocks) * kBasisBlock, i1 = std::min(k, i0 + kBasisBlock);
      for (int64_t i = i0; i < i1; ++i) partial[size_t(i) * size_t(spans) + size_t(span)] = 0.0;
      const int64_t tt1 = std::min(tiles, (span + 1) * kSpanTiles);
      for (int64_t t = span * kSpanTiles; t < tt1; ++t) {
        const int64_t b0 = t * kTile, nb = std::min(kTile, blocks - b0);
        for (int64_t j = 0; j < nb; ++j) {
          for (int lane = 0; lane < 4; ++lane) {
            const int64_t e = 4 * (b0 + j) + lane;
            g[lane][j] = e < n ? grad[e] : Real(0);
          }
        }
        for (int64_t i = i0; i < i1; ++i) {
          normals_tile<Real>(z, uint64_t(b0), nb, stream_base + uint64_t(i), seed);
          Real dot = 0;
          for (int lane = 0; lane < 4; ++lane) {
#pragma omp simd reduction(+ : dot)
            for (int64_t j = 0; j < nb; ++j) dot += g[lane][j] * z[lane][j];
          }
          partial[size_t(i) * size_t(spans) + size_t(span)] += double(dot);
        }
      }
    }
  });
  for (int64_t i = 0; i < k; ++i) {
    double s = 0.0;
    for (int64_t sp = 0; sp < spans; ++sp) s += partial[size_t(i) * size_t(spans) + size_t(sp)];
    out[i] = Real(scale * s);
  }
}

}  // namespace

void nola_combine(const void* coeffs, void* out, DType dt, int64_t k, int64_t rows, int64_t cols,
                  uint64_t stream_base, uint64_t seed, double scale) {
  const int64_t n = rows * cols;
  if (dt == DType::f64)
    combine_typed<double>(static_cast<const double*>(coeffs), static_cast<double*>(out), k, n, stream_base, seed,
                          scale);
  else
    combine_typed<float>(static_cast<const float*>(coeffs), static_cast<float*>(out), k, n, stream_base, seed,
                         scale);
}

void nola_coeff_grad(const void* grad, void* out, DType dt, int64_t k, int64_t rows, int64_t cols,
                     uint64_t stream_base, uint64_t seed, double scale) {
  const int64_t n = rows * cols;
  if (dt == DType::f64)
    coeff_grad_typed<double>(static_cast<const double*>(grad), static_cast<double*>(out), k, n, stream_base, seed,
                             scale);
  else
    coeff_grad_typed<float>(static_cast<const float*>(grad), static_cast<float*>(out), k, n, stream_base, seed,
                            scale);
}

}  // namespace linalg_core::cpu::LC_ISA
