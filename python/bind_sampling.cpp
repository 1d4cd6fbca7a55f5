// Row-wise kernels of the sampling family (CPU).
#include "bind_common.h"

void bind_sampling(py::module_& m) {
  m.def("cpu_weighted_gram", [](uintptr_t A, uintptr_t v, uintptr_t G, int dt, int64_t n, int64_t d) {
    const auto t = dtype_of(dt);
    py::gil_scoped_release release;
    linalg_core::cpu::kernels().weighted_gram(ptr(A), ptr(v), ptr(G), t, n, d);
  });
  m.def("cpu_row_quadratic_forms", [](uintptr_t A, uintptr_t M, uintptr_t q, int dt, int64_t n, int64_t d) {
    const auto t = dtype_of(dt);
    py::gil_scoped_release release;
    linalg_core::cpu::kernels().row_quadratic_forms(ptr(A), ptr(M), ptr(q), t, n, d);
  });
}
