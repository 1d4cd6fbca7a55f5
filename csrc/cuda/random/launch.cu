// Launchers of the Philox stream kernels (linalg_core/random.h): raw words and normal / Rademacher
// fills. Same streams as csrc/cpu/random.cpp: words bit-identical, floats equal to rounding.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include "kernels.cuh"
#include "linalg_core/random.h"
#include "params.h"

namespace linalg_core::cuda {
namespace {

using random::kMaxBlocks;
using random::kThreads;

inline unsigned grid_for(int64_t work_items) {
  return static_cast<unsigned>(std::min<int64_t>((work_items + kThreads - 1) / kThreads, kMaxBlocks));
}

}  // namespace

int random_uint32(uint32_t* out, int64_t count, uint64_t offset, uint64_t stream_id, uint64_t seed,
                  uintptr_t stream) {
  if (count < 0) return cudaErrorInvalidValue;
  if (count == 0) return cudaSuccess;
  const int64_t ngroups = (int64_t(offset & 3u) + count + 3) / 4;
  random::random_uint32_kernel<<<grid_for(ngroups), kThreads, 0, reinterpret_cast<cudaStream_t>(stream)>>>(
      out, count, offset, stream_id, seed, ngroups);
  return cudaGetLastError();
}

int random_fill(void* out, DType dt, bool sign, int64_t nrows, int64_t ncols, int64_t ld, int64_t row0,
                int64_t col0, uint64_t stream_id, uint64_t seed, double scale, uintptr_t stream) {
  if (dt != DType::f32 && dt != DType::f64) return cudaErrorInvalidValue;
  if (nrows < 0 || ncols < 0) return cudaErrorInvalidValue;
  if (nrows == 0 || ncols == 0) return cudaSuccess;
  const int64_t groups_per_row = (ncols + 3 + 3) / 4;  // phase (<= 3) + ncols indices, 4 a group
  const unsigned grid = grid_for(nrows * groups_per_row);
  const cudaStream_t st = reinterpret_cast<cudaStream_t>(stream);
  if (dt == DType::f64) {
    double* o = static_cast<double*>(out);
    if (sign)
      random::random_fill_kernel<double, true><<<grid, kThreads, 0, st>>>(o, nrows, ncols, ld, row0, col0,
                                                                          stream_id, seed, scale, groups_per_row);
    else
      random::random_fill_kernel<double, false><<<grid, kThreads, 0, st>>>(o, nrows, ncols, ld, row0, col0,
                                                                           stream_id, seed, scale, groups_per_row);
  } else {
    float* o = static_cast<float*>(out);
    if (sign)
      random::random_fill_kernel<float, true><<<grid, kThreads, 0, st>>>(o, nrows, ncols, ld, row0, col0,
                                                                         stream_id, seed, scale, groups_per_row);
    else
      random::random_fill_kernel<float, false><<<grid, kThreads, 0, st>>>(o, nrows, ncols, ld, row0, col0,
                                                                          stream_id, seed, scale, groups_per_row);
  }
  return cudaGetLastError();
}

}  // namespace linalg_core::cuda
