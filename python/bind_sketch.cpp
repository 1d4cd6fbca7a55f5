#include "bind_common.h"

void bind_sketch(py::module_& m) {
  namespace cpu = linalg_core::cpu;
  namespace cu = linalg_core::cuda;
  m.def("cpu_fwht", [](uintptr_t in, uintptr_t out, int dt, int out_dt, int64_t B, int64_t n_valid, int64_t N,
                       int64_t K, uintptr_t row_mult, double scale) {
    const auto a = dtype_of(dt), b = dtype_of(out_dt);
    py::gil_scoped_release release;
    cpu::kernels().fwht(ptr(in), ptr(out), a, b, B, n_valid, N, K, ptr<int8_t>(row_mult), scale);
  });
  m.def("cpu_fwht_select", [](uintptr_t in, uintptr_t work, uintptr_t out, int dt, int out_dt, int64_t B,
                              int64_t n_valid, int64_t N, int64_t K, uintptr_t row_mult, double scale,
                              uintptr_t select, int64_t msel) {
    const auto a = dtype_of(dt), b = dtype_of(out_dt);
    py::gil_scoped_release release;
    cpu::kernels().fwht_select(ptr(in), ptr(work), ptr(out), a, b, B, n_valid, N, K, ptr<int8_t>(row_mult), scale,
                               ptr<int64_t>(select), msel);
  });
  m.def("cpu_sparse_hash", [](uintptr_t rows, uintptr_t signs, int64_t n, int64_t col0, int64_t mrows, int64_t s,
                              uint64_t stream, uint64_t seed) {
    py::gil_scoped_release release;
    cpu::kernels().sparse_hash(ptr<int32_t>(rows), ptr<int8_t>(signs), n, col0, mrows, s, stream, seed);
  });
  m.def("cpu_sparse_apply", [](uintptr_t A, uintptr_t out, int dt, int out_dt, bool right, int64_t B, int64_t n,
                               int64_t d, int64_t mrows, int64_t s, uintptr_t rows, uintptr_t signs, double scale) {
    const auto a = dtype_of(dt), b = dtype_of(out_dt);
    py::gil_scoped_release release;
    cpu::kernels().sparse_apply(ptr(A), ptr(out), a, b, right, B, n, d, mrows, s, ptr<int32_t>(rows),
                                ptr<int8_t>(signs), scale);
  });
  m.def("cuda_fwht_workspace_bytes", [](int out_dt, int64_t B, int64_t N, int64_t K) {
    return cu::fwht_workspace_bytes(dtype_of(out_dt), B, N, K);
  });
  m.def("cuda_fwht", [](uintptr_t in, uintptr_t out, int dt, int out_dt, int64_t B, int64_t n_valid, int64_t N,
                        int64_t K, uintptr_t row_mult, double scale, uintptr_t workspace, uintptr_t stream) {
    const auto a = dtype_of(dt), b = dtype_of(out_dt);
    cuda_call("fwht", [&] {
      return cu::fwht(ptr(in), ptr(out), a, b, B, n_valid, N, K, ptr<int8_t>(row_mult), scale, ptr(workspace), stream);
    });
  });
  m.def("cuda_sparse_hash", [](uintptr_t rows, uintptr_t signs, int64_t n, int64_t col0, int64_t mrows, int64_t s,
                               uint64_t stream_id, uint64_t seed, uintptr_t stream) {
    cuda_call("sparse_hash", [&] {
      return cu::sparse_hash(ptr<int32_t>(rows), ptr<int8_t>(signs), n, col0, mrows, s, stream_id, seed, stream);
    });
  });
  m.def("cuda_sparse_apply", [](uintptr_t A, uintptr_t out, int dt, int out_dt, bool right, int64_t B, int64_t n,
                                int64_t d, int64_t mrows, int64_t s, uintptr_t rows, uintptr_t signs, double scale,
                                uintptr_t stream) {
    const auto a = dtype_of(dt), b = dtype_of(out_dt);
    cuda_call("sparse_apply", [&] {
      return cu::sparse_apply(ptr(A), ptr(out), a, b, right, B, n, d, mrows, s, ptr<int32_t>(rows),
                              ptr<int8_t>(signs), scale, stream);
    });
  });
}
