// The CUDA part of linalg_core._C: build and runtime information (csrc/cuda/common.cu). The
// launchers themselves are declared family by family in linalg_core/<family>.h and defined in
// csrc/cuda/<family>/launch.cu: host functions callable from plain C++, pointers are device
// pointers, `stream` is a cudaStream_t passed as an integer, and each returns a cudaError_t value
// (0 = success) that the binding turns into a Python exception. Without nvcc the build compiles
// csrc/cuda/not_built.cpp instead, whose launchers all return kNotBuilt (and device_count() 0),
// so the bindings need no #ifdefs.
#pragma once
#include <cstdint>

namespace linalg_core::cuda {

constexpr int kNotBuilt = -1;
bool built();
const char* architectures();  // CUDA_ARCHITECTURES of the build, "" without CUDA
const char* error_string(int code);
// Number of visible devices; 0 when there is no driver or device (never throws).
int device_count();
int runtime_version();

}  // namespace linalg_core::cuda
