// Dtype conversion with a non-finite count (CPU).
#include "bind_common.h"
#include "linalg_core/convert.h"

void bind_convert(py::module_& m) {
  m.def("cpu_convert", [](Buf in, Buf out, int dt, int out_dt, int64_t n) {
    Checks c("cpu_convert", -1);
    const auto a = c.dtype("dt", dt), b = c.dtype("out_dt", out_dt);
    c.range("n", n, 0, INT64_MAX);
    const void* i = c.buf("in", in, n, dtype_size(a));
    void* o = c.buf("out", out, n, dtype_size(b), /*optional: count only*/ true);
    c.no_overlap("out", out, n * dtype_size(b), "in", in, n * dtype_size(a), /*same_ok=*/a == b);
    py::gil_scoped_release release;
    return linalg_core::cpu::kernels().convert(i, o, a, b, n);
  });
}
