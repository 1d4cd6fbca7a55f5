// DGQ A8W4 integer product (CPU and CUDA).
#include "bind_common.h"

void bind_qmatmul(py::module_& m) {
  m.def("cpu_dgq_matmul", [](uintptr_t x, uintptr_t qw, uintptr_t zeros, uintptr_t gs, uintptr_t wsum, uintptr_t y,
                             int64_t M, int64_t N, int64_t K, int64_t group, int allowed, uintptr_t xs, uintptr_t sc) {
    py::gil_scoped_release release;
    return std::string(linalg_core::cpu::kernels().dgq_matmul(ptr<const int8_t>(x), ptr<const uint8_t>(qw),
                                                               ptr<const uint8_t>(zeros), ptr<const int8_t>(gs),
                                                               ptr<const int32_t>(wsum), ptr<int32_t>(y), M, N, K,
                                                               group, allowed, ptr<const float>(xs),
                                                               ptr<const float>(sc)));
  });
  m.def("cuda_dgq_matmul", [](uintptr_t x, uintptr_t qw, uintptr_t zeros, uintptr_t gs, uintptr_t wsum, uintptr_t y,
                              int64_t M, int64_t N, int64_t K, int64_t group, uintptr_t cuda_stream) {
    cuda_call("dgq_matmul", [&] {
      return linalg_core::cuda::dgq_matmul(ptr<const int8_t>(x), ptr<const uint8_t>(qw), ptr<const uint8_t>(zeros),
                                           ptr<const int8_t>(gs), ptr<const int32_t>(wsum), ptr<int32_t>(y), M, N, K,
                                           group, cuda_stream);
    });
  });
}
