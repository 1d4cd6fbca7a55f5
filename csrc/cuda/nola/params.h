// Launch parameters of the NOLA kernels (csrc/cuda/nola/kernels.cuh, launched by launch.cu).
#pragma once
#include <cstdint>

namespace linalg_core::cuda::nola {

// combine: one thread per Philox block (4 output elements), summing its k bases in order.
constexpr int kCombineThreads = 256;
// coeff_grad: one CUDA block per basis (grid-stride over the bases), its threads striding over
// the matrix's Philox blocks; the block's sum is reduced in shared memory in a fixed order.
constexpr int kGradThreads = 256;
constexpr int64_t kMaxBlocks = int64_t(1) << 20;  // grid-stride loops beyond this

}  // namespace linalg_core::cuda::nola
