// Helpers shared by the bind_<family>.cpp files.
#pragma once
#include <pybind11/pybind11.h>

#include <cstdint>
#include <stdexcept>
#include <string>

#include "linalg_core/cpu_kernels.h"
#include "linalg_core/cuda_kernels.h"
#include "linalg_core/dtype.h"

namespace py = pybind11;

template <typename T = void>
inline T* ptr(uintptr_t p) { return reinterpret_cast<T*>(p); }

inline linalg_core::DType dtype_of(int code) {
  if (code < 0 || code > 3) throw std::invalid_argument("unknown dtype code " + std::to_string(code));
  return static_cast<linalg_core::DType>(code);
}

// Runs a CUDA launcher without the GIL; a non-zero cudaError_t becomes a RuntimeError.
template <typename F>
inline void cuda_call(const char* what, F&& f) {
  int err;
  {
    py::gil_scoped_release release;
    err = f();
  }
  if (err != 0)
    throw std::runtime_error(std::string("linalg_core CUDA ") + what + ": " + linalg_core::cuda::error_string(err));
}
