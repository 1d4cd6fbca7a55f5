// Row-wise kernels of the sampling family (CPU).
#include "bind_common.h"
#include "linalg_core/sampling.h"

namespace {
linalg_core::DType real_dtype(Checks& c, int dt) {
  const auto t = c.dtype("dt", dt);
  c.require(t == linalg_core::DType::f32 || t == linalg_core::DType::f64, "dt must be float32 or float64");
  return t;
}
}  // namespace

void bind_sampling(py::module_& m) {
  m.def("cpu_weighted_gram", [](Buf A, Buf v, Buf G, int dt, int64_t n, int64_t d) {
    Checks c("cpu_weighted_gram", -1);
    const auto t = real_dtype(c, dt);
    const int64_t e = dtype_size(t), nA = c.count("A", {n, d}), nG = c.count("G", {d, d});
    const void* a = c.buf("A", A, nA, e);
    const void* w = c.buf("v", v, n, e);
    void* g = c.buf("G", G, nG, e);
    c.no_overlap("G", G, nG * e, "A", A, nA * e);
    c.no_overlap("G", G, nG * e, "v", v, n * e);
    py::gil_scoped_release release;
    linalg_core::cpu::kernels().weighted_gram(a, w, g, t, n, d);
  });
  m.def("cpu_row_quadratic_forms", [](Buf A, Buf M, Buf q, int dt, int64_t n, int64_t d) {
    Checks c("cpu_row_quadratic_forms", -1);
    const auto t = real_dtype(c, dt);
    const int64_t e = dtype_size(t), nA = c.count("A", {n, d}), nM = c.count("M", {d, d});
    const void* a = c.buf("A", A, nA, e);
    const void* mm = c.buf("M", M, nM, e);
    void* o = c.buf("q", q, n, e);
    c.no_overlap("q", q, n * e, "A", A, nA * e);
    c.no_overlap("q", q, n * e, "M", M, nM * e);
    py::gil_scoped_release release;
    linalg_core::cpu::kernels().row_quadratic_forms(a, mm, o, t, n, d);
  });
}
