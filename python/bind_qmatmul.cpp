// DGQ A8W4 integer product (CPU and CUDA).
#include "bind_common.h"

namespace {
// The int32 accumulator holds K products of |x| <= 127 and |w8| <= 127 exactly up to this K (a
// multiple of 128 below (2^31 - 1) / 127^2); longer products are split by the Python layer.
constexpr int64_t kMaxK = 133120;

struct Dgq {
  const int8_t* x;
  const uint8_t *qw, *zeros;
  const int8_t* gs;
  const int32_t* wsum;
  int32_t* y;
  const float *xs, *sc;
};

// x (M, K) int8, qw (N, K/2) uint8, zeros / gs (N, K/group), wsum (N,) int32 -> y (M, N) int32 (or
// float32 with xs (M,) and sc (N,)).
Dgq check_dgq(Checks& c, const Buf& x, const Buf& qw, const Buf& zeros, const Buf& gs, const Buf& wsum,
              const Buf& y, int64_t M, int64_t N, int64_t K, int64_t group, const Buf& xs, const Buf& sc) {
  c.range("group", group, 128, kMaxK);
  c.require(group % 128 == 0, "group=" + std::to_string(group) + " is not a multiple of 128");
  c.range("K", K, 0, kMaxK);
  c.require(K % group == 0, "K=" + std::to_string(K) + " is not a multiple of group=" + std::to_string(group));
  const int64_t G = K / group, nx = c.count("x", {M, K}), nw = c.count("qweight", {N, K / 2}),
                ng = c.count("zeros", {N, G}), ny = c.count("y", {M, N});
  Dgq p{c.buf<const int8_t>("x", x, nx, 1),         c.buf<const uint8_t>("qweight", qw, nw, 1),
        c.buf<const uint8_t>("zeros", zeros, ng, 1), c.buf<const int8_t>("group_scales", gs, ng, 1),
        c.buf<const int32_t>("weight_sums", wsum, N, 4), c.buf<int32_t>("y", y, ny, 4),
        c.buf<const float>("x_scale", xs, M, 4, true), c.buf<const float>("channel_scales", sc, N, 4, true)};
  c.require((p.xs == nullptr) == (p.sc == nullptr), "x_scale and channel_scales are given together or not at all");
  for (const auto& [name, b, bytes] : {std::tuple{"x", x, nx}, {"qweight", qw, nw}, {"zeros", zeros, ng},
                                       {"group_scales", gs, ng}, {"weight_sums", wsum, 4 * N},
                                       {"x_scale", xs, p.xs ? 4 * M : 0}, {"channel_scales", sc, p.sc ? 4 * N : 0}})
    c.no_overlap("y", y, 4 * ny, name, b, bytes);
  return p;
}
}  // namespace

void bind_qmatmul(py::module_& m) {
  m.attr("DGQ_MAX_K") = kMaxK;
  m.def("cpu_dgq_matmul", [](Buf x, Buf qw, Buf zeros, Buf gs, Buf wsum, Buf y, int64_t M, int64_t N, int64_t K,
                             int64_t group, int allowed, Buf xs, Buf sc) {
    Checks c("cpu_dgq_matmul", -1);
    const Dgq p = check_dgq(c, x, qw, zeros, gs, wsum, y, M, N, K, group, xs, sc);
    std::string path;
    {
      py::gil_scoped_release release;
      path = linalg_core::cpu::kernels().dgq_matmul(p.x, p.qw, p.zeros, p.gs, p.wsum, p.y, M, N, K, group, allowed,
                                                    p.xs, p.sc);
    }
    if (path[0] == 'x') c.fail("x contains -128: symmetric INT8 activations are in [-127, 127] (quantize_activations)");
    return path;
  });
  m.def("cuda_dgq_matmul", [](Buf x, Buf qw, Buf zeros, Buf gs, Buf wsum, Buf y, int64_t M, int64_t N, int64_t K,
                              int64_t group, uintptr_t cuda_stream) {
    Checks c("cuda_dgq_matmul", 0);
    const Dgq p = check_dgq(c, x, qw, zeros, gs, wsum, y, M, N, K, group, Buf{}, Buf{});
    cuda_call("dgq_matmul", [&] {
      return linalg_core::cuda::dgq_matmul(p.x, p.qw, p.zeros, p.gs, p.wsum, p.y, M, N, K, group, cuda_stream);
    });
  });
}
