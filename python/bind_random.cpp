// Philox streams: raw 32-bit words and normal / Rademacher fills.
#include "bind_common.h"
#include "linalg_core/random.h"

namespace {
using linalg_core::DType;

DType check_fill(Checks& c, int dt, int64_t nrows, int64_t ncols, int64_t ld, int64_t row0, int64_t col0) {
  const DType t = c.dtype("dt", dt);
  c.require(t == DType::f32 || t == DType::f64, "dt must be float32 or float64");
  c.range("ncols", ncols, 0, INT64_MAX);
  c.range("ld", ld, 0, INT64_MAX);
  c.range("row0", row0, 0, INT64_MAX);
  c.range("col0", col0, 0, INT64_MAX);
  c.count("out", {nrows, ncols});
  return t;
}
}  // namespace

void bind_random(py::module_& m) {
  namespace cpu = linalg_core::cpu;
  namespace cu = linalg_core::cuda;
  m.def("cpu_random_uint32", [](Buf out, int64_t count, uint64_t offset, uint64_t stream, uint64_t seed) {
    Checks c("cpu_random_uint32", -1);
    uint32_t* o = c.buf<uint32_t>("out", out, c.range("count", count, 0, INT64_MAX), 4);
    py::gil_scoped_release release;
    cpu::kernels().random_uint32(o, count, offset, stream, seed);
  });
  m.def("cpu_random_fill", [](Buf out, int dt, bool sign, int64_t nrows, int64_t ncols, int64_t ld, int64_t row0,
                              int64_t col0, uint64_t stream, uint64_t seed, double scale) {
    Checks c("cpu_random_fill", -1);
    const DType t = check_fill(c, dt, nrows, ncols, ld, row0, col0);
    void* o = c.buf("out", out, nrows * ncols, dtype_size(t));
    py::gil_scoped_release release;
    cpu::kernels().random_fill(o, t, sign, nrows, ncols, ld, row0, col0, stream, seed, scale);
  });
  m.def("cuda_random_uint32", [](Buf out, int64_t count, uint64_t offset, uint64_t stream, uint64_t seed,
                                 uintptr_t cuda_stream) {
    Checks c("cuda_random_uint32", 0);
    uint32_t* o = c.buf<uint32_t>("out", out, c.range("count", count, 0, INT64_MAX), 4);
    cuda_call("random_uint32", [&] { return cu::random_uint32(o, count, offset, stream, seed, cuda_stream); });
  });
  m.def("cuda_random_fill", [](Buf out, int dt, bool sign, int64_t nrows, int64_t ncols, int64_t ld, int64_t row0,
                               int64_t col0, uint64_t stream, uint64_t seed, double scale, uintptr_t cuda_stream) {
    Checks c("cuda_random_fill", 0);
    const DType t = check_fill(c, dt, nrows, ncols, ld, row0, col0);
    void* o = c.buf("out", out, nrows * ncols, dtype_size(t));
    cuda_call("random_fill", [&] {
      return cu::random_fill(o, t, sign, nrows, ncols, ld, row0, col0, stream, seed, scale, cuda_stream);
    });
  });
}
