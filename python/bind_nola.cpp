// NOLA's random-basis combinations and their adjoint (linalg_core/nola.h).
#include "bind_common.h"
#include "linalg_core/nola.h"

namespace {
using linalg_core::DType;

// The checks shared by both ops and both devices: dtype, sizes, the stream range. Returns the dtype.
DType check_nola(Checks& c, int dt, int64_t k, int64_t rows, int64_t cols, uint64_t stream_base) {
  const DType t = c.dtype("dt", dt);
  c.require(t == DType::f32 || t == DType::f64, "dt must be float32 or float64");
  c.range("k", k, 1, INT64_MAX);
  c.range("rows", rows, 0, INT64_MAX);
  c.range("cols", cols, 0, INT64_MAX);
  c.count("out", {rows, cols});
  // The bases' streams stream_base .. stream_base + k - 1 must not wrap around 2^64.
  c.require(uint64_t(k - 1) <= UINT64_MAX - stream_base, [&] {
    return "stream_base=" + std::to_string(stream_base) + " + k=" + std::to_string(k) + " passes 2^64";
  });
  return t;
}

// (coeffs or grad input, out): sizes, alignment, device, no overlap.
std::pair<const void*, void*> check_bufs(Checks& c, const Buf& in, const char* in_name, int64_t in_elems,
                                         const Buf& out, int64_t out_elems, DType t) {
  const int64_t es = dtype_size(t);
  const void* i = c.buf(in_name, in, in_elems, es);
  void* o = c.buf("out", out, out_elems, es);
  c.no_overlap("out", out, out_elems * es, in_name, in, in_elems * es);
  return {i, o};
}
}  // namespace

void bind_nola(py::module_& m) {
  namespace cpu = linalg_core::cpu;
  namespace cu = linalg_core::cuda;
  m.def("cpu_nola_combine", [](Buf coeffs, Buf out, int dt, int64_t k, int64_t rows, int64_t cols,
                               uint64_t stream_base, uint64_t seed, double scale) {
    Checks c("cpu_nola_combine", -1);
    const DType t = check_nola(c, dt, k, rows, cols, stream_base);
    auto [in, o] = check_bufs(c, coeffs, "coeffs", k, out, rows * cols, t);
    py::gil_scoped_release release;
    cpu::kernels().nola_combine(in, o, t, k, rows, cols, stream_base, seed, scale);
  });
  m.def("cpu_nola_coeff_grad", [](Buf grad, Buf out, int dt, int64_t k, int64_t rows, int64_t cols,
                                  uint64_t stream_base, uint64_t seed, double scale) {
    Checks c("cpu_nola_coeff_grad", -1);
    const DType t = check_nola(c, dt, k, rows, cols, stream_base);
    auto [in, o] = check_bufs(c, grad, "grad", rows * cols, out, k, t);
    py::gil_scoped_release release;
    cpu::kernels().nola_coeff_grad(in, o, t, k, rows, cols, stream_base, seed, scale);
  });
  m.def("cuda_nola_combine", [](Buf coeffs, Buf out, int dt, int64_t k, int64_t rows, int64_t cols,
                                uint64_t stream_base, uint64_t seed, double scale, uintptr_t cuda_stream) {
    Checks c("cuda_nola_combine", 0);
    const DType t = check_nola(c, dt, k, rows, cols, stream_base);
    auto [in, o] = check_bufs(c, coeffs, "coeffs", k, out, rows * cols, t);
    cuda_call("nola_combine", [&] {
      return cu::nola_combine(in, o, t, k, rows, cols, stream_base, seed, scale, cuda_stream);
    });
  });
  m.def("cuda_nola_coeff_grad", [](Buf grad, Buf out, int dt, int64_t k, int64_t rows, int64_t cols,
                                   uint64_t stream_base, uint64_t seed, double scale, uintptr_t cuda_stream) {
    Checks c("cuda_nola_coeff_grad", 0);
    const DType t = check_nola(c, dt, k, rows, cols, stream_base);
    auto [in, o] = check_bufs(c, grad, "grad", rows * cols, out, k, t);
    cuda_call("nola_coeff_grad", [&] {
      return cu::nola_coeff_grad(in, o, t, k, rows, cols, stream_base, seed, scale, cuda_stream);
    });
  });
}
