// Launch parameters of the DGQ A8W4 kernel (csrc/cuda/qmatmul/kernels.cuh, launched by launch.cu):
// one warp per output channel, kWarps channels and kRows rows of x per thread block, the
// reduction dimension walked kBlock weights at a time.
#pragma once

namespace linalg_core::cuda::qmatmul {

constexpr int kWarps = 8;    // channels per thread block
constexpr int kRows = 16;    // rows of x per thread block
constexpr int kBlock = 128;  // weights per step (one 128-block of a group)

}  // namespace linalg_core::cuda::qmatmul
