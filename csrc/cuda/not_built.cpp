// Compiled instead of the .cu sources when the build has no CUDA (no nvcc, or
// LINALG_CORE_CUDA=OFF): every launcher of every family (linalg_core/<family>.h) reports
// kNotBuilt, which the bindings raise.
#include "linalg_core/cuda_kernels.h"
#include "linalg_core/nola.h"
#include "linalg_core/qmatmul.h"
#include "linalg_core/quant.h"
#include "linalg_core/random.h"
#include "linalg_core/sketch.h"

namespace linalg_core::cuda {

bool built() { return false; }
const char* architectures() { return ""; }
const char* error_string(int) {
  return "linalg_core._C was built without CUDA (no nvcc found, or LINALG_CORE_CUDA=OFF)";
}
int device_count() { return 0; }
int runtime_version() { return 0; }
int64_t fwht_workspace_bytes(DType, int64_t, int64_t, int64_t) { return 0; }
int fwht(const void*, void*, DType, DType, int64_t, int64_t, int64_t, int64_t, const int8_t*, double, void*,
         uintptr_t) { return kNotBuilt; }
int sparse_hash(int32_t*, int8_t*, int64_t, int64_t, int64_t, int64_t, uint64_t, uint64_t, uintptr_t) {
  return kNotBuilt;
}
int sparse_apply(const void*, void*, DType, DType, bool, int64_t, int64_t, int64_t, int64_t, int64_t,
                 const int32_t*, const int8_t*, double, uintptr_t) { return kNotBuilt; }
int random_uint32(uint32_t*, int64_t, uint64_t, uint64_t, uint64_t, uintptr_t) { return kNotBuilt; }
int random_fill(void*, DType, bool, int64_t, int64_t, int64_t, int64_t, int64_t, uint64_t, uint64_t, double,
                uintptr_t) { return kNotBuilt; }
int block_quantize(const void*, DType, int64_t, int64_t, const float*, int, const float*, const float*, float*, uint8_t*,
                   int64_t*, uintptr_t) { return kNotBuilt; }
int block_dequantize(const uint8_t*, int, const float*, const float*, const float*, int64_t, int64_t, void*, DType,
                     uintptr_t) { return kNotBuilt; }
int gguf_quantize(const void*, DType, int64_t, int, uint8_t*, int64_t*, uintptr_t) { return kNotBuilt; }
int gguf_dequantize(const uint8_t*, int, int64_t, void*, DType, uintptr_t) { return kNotBuilt; }
int dgq_matmul(const int8_t*, const uint8_t*, const uint8_t*, const int8_t*, const int32_t*, int32_t*, int64_t, int64_t,
               int64_t, int64_t, uintptr_t) { return kNotBuilt; }
int nola_combine(const void*, void*, DType, int64_t, int64_t, int64_t, uint64_t, uint64_t, double, uintptr_t) {
  return kNotBuilt;
}
int nola_coeff_grad(const void*, void*, DType, int64_t, int64_t, int64_t, uint64_t, uint64_t, double, uintptr_t) {
  return kNotBuilt;
}

}  // namespace linalg_core::cuda
