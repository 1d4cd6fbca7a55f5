// Build and runtime information of the CUDA part of linalg_core._C (see cuda_kernels.h).
#include <cuda_runtime.h>

#include "linalg_core/cuda_kernels.h"

#ifndef LINALG_CORE_CUDA_ARCHS_STR
#define LINALG_CORE_CUDA_ARCHS_STR ""
#endif

namespace linalg_core::cuda {

bool built() { return true; }

const char* architectures() { return LINALG_CORE_CUDA_ARCHS_STR; }

const char* error_string(int code) {
  if (code == kNotBuilt) return "linalg_core._C was built without CUDA (no nvcc found, or LINALG_CORE_CUDA=OFF)";
  return cudaGetErrorString(static_cast<cudaError_t>(code));
}

int device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();  // no driver / no device: not an error for the caller, clear it
    return 0;
  }
  return n;
}

int runtime_version() {
  int v = 0;
  if (cudaRuntimeGetVersion(&v) != cudaSuccess) {
    cudaGetLastError();
    return 0;
  }
  return v;
}

}  // namespace linalg_core::cuda
