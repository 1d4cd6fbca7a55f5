// Kernel entry points of the convert family (ops convert, convert_into, count_nonfinite,
// lowrank_update in linalg_core/_ops.py): the CPU kernel of csrc/cpu/convert.cpp, bound in
// python/bind_convert.cpp. No CUDA kernel: CUDA tensors take torch's own conversion (the
// reference backend), which this kernel matches bit for bit.
#pragma once
#include <cstdint>

#include "linalg_core/dtype.h"

// CPU kernels, declared in each instruction-set namespace by cpu_kernels.h.
#define LC_CONVERT_CPU_KERNELS                                                                    \
  /* out (n,) of out_dt = in (n,) of dt rounded to nearest even; returns the count of    */       \
  /* non-finite inputs (NaN/Inf are converted, not dropped). out == nullptr: count only. */       \
  int64_t convert(const void* in, void* out, DType dt, DType out_dt, int64_t n);                  \
  /* out (m, n) = W (m, n) − s·B·A with B (m, r), A (r, n) float32, in float32, rounded once   */ \
  /* to dt (f32, f16 or bf16) as convert rounds; out may be W itself (read before written).  */ \
  void lowrank_update(const void* W, void* out, DType dt, const float* B, const float* A, float s, int64_t m,  \
                      int64_t n, int64_t r);
// The family's entries of the kernel table (cpu_kernels.h).
#define LC_CONVERT_CPU_TABLE(X) X(convert) X(lowrank_update)
