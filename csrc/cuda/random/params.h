// Launch parameters of the Philox stream kernels (csrc/cuda/random/kernels.cuh, launched by
// launch.cu): one thread per Philox block (4 stream elements).
#pragma once
#include <cstdint>

namespace linalg_core::cuda::random {

constexpr int kThreads = 256;                     // threads per block
constexpr int64_t kMaxBlocks = int64_t(1) << 20;  // grid-stride loops beyond this

}  // namespace linalg_core::cuda::random
