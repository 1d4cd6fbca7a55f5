#include "bind_common.h"

void bind_random(py::module_& m) {
  namespace cpu = linalg_core::cpu;
  namespace cu = linalg_core::cuda;
  m.def("cpu_random_uint32", [](uintptr_t out, int64_t count, uint64_t offset, uint64_t stream, uint64_t seed) {
    py::gil_scoped_release release;
    cpu::kernels().random_uint32(ptr<uint32_t>(out), count, offset, stream, seed);
  });
  m.def("cpu_random_fill", [](uintptr_t out, int dt, bool sign, int64_t nrows, int64_t ncols, int64_t ld,
                              int64_t row0, int64_t col0, uint64_t stream, uint64_t seed, double scale) {
    const auto t = dtype_of(dt);
    py::gil_scoped_release release;
    cpu::kernels().random_fill(ptr(out), t, sign, nrows, ncols, ld, row0, col0, stream, seed, scale);
  });
  m.def("cuda_random_uint32", [](uintptr_t out, int64_t count, uint64_t offset, uint64_t stream, uint64_t seed,
                                 uintptr_t cuda_stream) {
    cuda_call("random_uint32", [&] { return cu::random_uint32(ptr<uint32_t>(out), count, offset, stream, seed, cuda_stream); });
  });
  m.def("cuda_random_fill", [](uintptr_t out, int dt, bool sign, int64_t nrows, int64_t ncols, int64_t ld,
                               int64_t row0, int64_t col0, uint64_t stream, uint64_t seed, double scale,
                               uintptr_t cuda_stream) {
    const auto t = dtype_of(dt);
    cuda_call("random_fill", [&] {
      return cu::random_fill(ptr(out), t, sign, nrows, ncols, ld, row0, col0, stream, seed, scale, cuda_stream);
    });
  });
}
