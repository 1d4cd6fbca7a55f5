// Dtype conversion with a non-finite count, and the one-pass low-rank update (CPU).
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
  m.def("cpu_lowrank_update", [](Buf W, Buf out, int dt, Buf B, Buf A, double s, int64_t m, int64_t n, int64_t r) {
    Checks c("cpu_lowrank_update", -1);
    const auto t = c.dtype("dt", dt);
    c.require(t == linalg_core::DType::f32 || t == linalg_core::DType::f16 || t == linalg_core::DType::bf16,
              [&] { return "dt=" + std::to_string(dt) + " is not float32 (0), float16 (2) or bfloat16 (3)"; });
    c.range("m", m, 0, INT64_MAX);
    c.range("n", n, 0, INT64_MAX);
    c.range("r", r, 1, INT64_MAX);
    c.require(std::isfinite(s) && std::fabs(s) <= 3.4e38,
              [&] { return "s=" + std::to_string(s) + " is not a finite float32"; });
    const int64_t mn = c.count("W", {m, n}), es = dtype_size(t);
    const void* w = c.buf("W", W, mn, es);
    void* o = c.buf("out", out, mn, es);
    const float* b = c.buf<const float>("B", B, c.count("B", {m, r}), 4);
    const float* a = c.buf<const float>("A", A, c.count("A", {r, n}), 4);
    c.no_overlap("out", out, mn * es, "W", W, mn * es, /*same_ok=*/true);
    c.no_overlap("out", out, mn * es, "B", B, m * r * 4);
    c.no_overlap("out", out, mn * es, "A", A, r * n * 4);
    py::gil_scoped_release release;
    linalg_core::cpu::kernels().lowrank_update(w, o, t, b, a, static_cast<float>(s), m, n, r);
  });
}
