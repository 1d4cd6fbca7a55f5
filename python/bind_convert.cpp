// Dtype conversion with a non-finite count (CPU).
#include "bind_common.h"

void bind_convert(py::module_& m) {
  m.def("cpu_convert", [](uintptr_t in, uintptr_t out, int dt, int out_dt, int64_t n) {
    const auto a = dtype_of(dt), b = dtype_of(out_dt);
    py::gil_scoped_release release;
    return linalg_core::cpu::kernels().convert(ptr(in), ptr(out), a, b, n);
  });
}
