// Philox4x32-10 streams (see linalg_core/philox.h): raw words, normal and Rademacher blocks.
//
// Philox runs over chunks of blocks; each block gives four normals (Box-Muller on its word
// pairs). float64 outputs use libm in double, float32 outputs the polynomial version of
// philox_normals.h (shared with the nola kernels, so NOLA's bases equal these values).
#include <cmath>

#include "isa.h"
#include "linalg_core/cpu_kernels.h"
#include "linalg_core/dtype.h"
#include "linalg_core/philox.h"
#include "linalg_core/random.h"
#include "philox_normals.h"

namespace linalg_core::cpu::LC_ISA {
namespace {

constexpr int64_t kChunk = 64;  // Philox blocks per vectorised step

using philox_normals::normals4;  // float32 Box-Muller without libm calls (philox_normals.h)

// Normals (or signs) e0 .. e1 - 1 of a stream, times scale, into out.
template <typename Real, typename T>
void fill_range(T* out, bool sign, uint64_t e0, uint64_t e1, uint64_t stream, uint64_t seed, Real scale) {
  if (sign) {
    for (uint64_t e = e0; e < e1;) {  // 32 signs per word
      const uint32_t w = philox_word(e >> 5, stream, seed);
      const uint64_t stop = std::min<uint64_t>(e1, ((e >> 5) + 1) << 5);
      for (; e < stop; ++e) *out++ = T(((w >> (e & 31u)) & 1u) ? -scale : scale);
    }
    return;
  }
  Real z[4][kChunk];
  uint32_t w[4][kChunk];
  for (uint64_t b = e0 >> 2; 4 * b < e1; b += kChunk) {
    const int64_t nb = std::min<int64_t>(kChunk, int64_t((e1 + 3) / 4 - b));
    // Two simple loops (integer Philox, then floating Box-Muller) vectorise where one does not.
#pragma omp simd
    for (int64_t k = 0; k < nb; ++k) {
      const Philox4x32 p = philox4x32_10(b + uint64_t(k), stream, seed);
      w[0][k] = p.v[0]; w[1][k] = p.v[1]; w[2][k] = p.v[2]; w[3][k] = p.v[3];
    }
#pragma omp simd
    for (int64_t k = 0; k < nb; ++k)
      normals4<Real>(w[0][k], w[1][k], w[2][k], w[3][k], &z[0][k], &z[1][k], &z[2][k], &z[3][k]);
    for (int64_t k = 0; k < nb; ++k) {
      for (uint32_t lane = 0; lane < 4; ++lane) {
        const uint64_t e = 4 * (b + uint64_t(k)) + lane;
        if (e >= e0 && e < e1) out[e - e0] = T(scale * z[lane][k]);
      }
    }
  }
}

// Values below which a fill runs on the calling thread (~100 us of one core: 2^16 normals, or 2^15
// words of one Philox block each): a parallel region that small saves little on a quiet machine
// and can wait a scheduler time slice for a descheduled team member on a shared one
// (docs/threads.md). Every value is a function of its index alone, so any split gives the same bits.
constexpr int64_t kParallelValues = int64_t(1) << 16;
constexpr int64_t kParallelWords = int64_t(1) << 15;

template <typename Real, typename T>
void fill_typed(T* out, bool sign, int64_t nrows, int64_t ncols, int64_t ld, int64_t row0, int64_t col0,
                uint64_t stream, uint64_t seed, double scale) {
  if (ld == ncols && nrows > 1) {
    // Rows that follow each other in the stream are one range: filled row by row, each row's
    // set-up (~0.25 us) made a 1024 x 26 sketch of rsvd cost 10 ns per value (244 -> 60 us).
    const int64_t start = int64_t(uint64_t(row0) * uint64_t(ld) + uint64_t(col0));  // mod 2^64, as below
    fill_typed<Real>(out, sign, 1, nrows * ncols, nrows * ncols, 0, start, stream, seed, scale);
    return;
  }
  // Split rows into pieces of at most 4096 elements so that few, long rows still use all threads.
  const int64_t pieces = ncols / 4096 + (ncols % 4096 != 0);  // no overflow for any ncols
  parallel_for(nrows * pieces, nrows * ncols > kParallelValues, [&](int64_t b, int64_t e) {
    for (int64_t t = b; t < e; ++t) {
      const int64_t i = t / pieces, c0 = (t % pieces) * 4096, c1 = std::min(ncols, c0 + 4096);
      const uint64_t base = (uint64_t(row0) + uint64_t(i)) * uint64_t(ld) + uint64_t(col0);  // mod 2^64
      fill_range<Real>(out + i * ncols + c0, sign, base + uint64_t(c0), base + uint64_t(c1), stream, seed,
                       Real(scale));
    }
  });
}

}  // namespace

void random_uint32(uint32_t* out, int64_t count, uint64_t offset, uint64_t stream, uint64_t seed) {
  parallel_for(count, count > kParallelWords, [&](int64_t b, int64_t e) {
#pragma omp simd
    for (int64_t i = b; i < e; ++i) out[i] = philox_word(offset + uint64_t(i), stream, seed);
  });
}

void random_fill(void* out, DType dt, bool sign, int64_t nrows, int64_t ncols, int64_t ld, int64_t row0,
                 int64_t col0, uint64_t stream, uint64_t seed, double scale) {
  if (dt == DType::f64)
    fill_typed<double>(static_cast<double*>(out), sign, nrows, ncols, ld, row0, col0, stream, seed, scale);
  else
    fill_typed<float>(static_cast<float*>(out), sign, nrows, ncols, ld, row0, col0, stream, seed, scale);
}

}  // namespace linalg_core::cpu::LC_ISA
