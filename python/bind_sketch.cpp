// Sketching kernels: FWHT (plain and row-selecting), sparse hashes and sparse applies.
#include "bind_common.h"
#include "linalg_core/sketch.h"

#include <cstdlib>

namespace {
using linalg_core::DType;

DType compute_of(DType a, DType b) { return (a == DType::f64 || b == DType::f64) ? DType::f64 : DType::f32; }

struct Fwht {
  DType a, b;
  const void* in;
  void* out;
  const int8_t* mult;
};

// in (B, n_valid, K) of dt -> out (B, N, K) of out_dt; out may be in itself (same dtype, no padding).
Fwht check_fwht(Checks& c, const Buf& in, const Buf& out, int dt, int out_dt, int64_t B, int64_t n_valid, int64_t N,
                int64_t K, const Buf& row_mult, double scale) {
  const DType a = c.dtype("dt", dt), b = c.dtype("out_dt", out_dt);
  c.require(is_power_of_two(N), [&] { return "N=" + std::to_string(N) + " is not a positive power of two"; });
  c.range("n_valid", n_valid, 0, N);
  c.require(std::isfinite(scale), [&] { return "scale=" + std::to_string(scale) + " is not finite"; });
  const int64_t n_in = c.count("in", {B, n_valid, K}), n_out = c.count("out", {B, N, K});
  Fwht f{a, b, c.buf("in", in, n_in, dtype_size(a)), c.buf("out", out, n_out, dtype_size(b)),
         c.buf<int8_t>("row_mult", row_mult, n_valid, 1, true)};
  const bool same_ok = a == b && n_valid == N;
  c.no_overlap("out", out, n_out * dtype_size(b), "in", in, n_in * dtype_size(a), same_ok);
  c.no_overlap("out", out, n_out * dtype_size(b), "row_mult", row_mult, f.mult ? n_valid : 0);
  return f;
}

struct Sparse {
  DType a, b;
  const void* A;
  void* out;
  const int32_t* rows;
  const int8_t* signs;
};

Sparse check_sparse_apply(Checks& c, const Buf& A, const Buf& out, int dt, int out_dt, bool right, int64_t B,
                          int64_t n, int64_t d, int64_t m, int64_t s, const Buf& rows, const Buf& signs,
                          double scale) {
  const DType a = c.dtype("dt", dt), b = c.dtype("out_dt", out_dt);
  c.require(b == DType::f32 || b == DType::f64, "out_dt must be float32 or float64 (the compute dtype)");
  c.range("m", m, 1, INT32_MAX);
  c.range("s", s, 1, m);
  c.require(std::isfinite(scale), [&] { return "scale=" + std::to_string(scale) + " is not finite"; });
  const int64_t nA = right ? c.count("A", {B, d, n}) : c.count("A", {B, n, d});
  const int64_t nO = right ? c.count("out", {B, d, m}) : c.count("out", {B, m, d});
  const int64_t nh = c.count("rows", {n, s});
  Sparse p{a, b, c.buf("A", A, nA, dtype_size(a)), c.buf("out", out, nO, dtype_size(b)),
           c.buf<int32_t>("rows", rows, nh, 4), c.buf<int8_t>("signs", signs, nh, 1)};
  c.no_overlap("out", out, nO * dtype_size(b), "A", A, nA * dtype_size(a));
  c.no_overlap("out", out, nO * dtype_size(b), "rows", rows, nh * 4);
  c.no_overlap("out", out, nO * dtype_size(b), "signs", signs, nh);
  if (c.host()) {  // device-resident rows are range-checked by the CUDA kernel itself
    for (int64_t i = 0; i < nh; ++i)
      if (p.rows[i] < 0 || p.rows[i] >= m)
        c.fail("rows[" + std::to_string(i) + "]=" + std::to_string(p.rows[i]) + " is out of range [0, " +
               std::to_string(m - 1) + "]");
  }
  return p;
}

// The NaN/Inf count of a kernel's output, read while it is still in cache: the CPU sketch
// bindings return it so the caller's finiteness check needs no second call.
int64_t nonfinite(const void* out, DType t, int64_t n) {
  return linalg_core::cpu::kernels().convert(out, nullptr, t, t, n);
}

// The cpu_fwht binding: checks, then the kernel without the GIL; the count of non-finite outputs.
int64_t cpu_fwht(const char* fn, const Buf& in, const Buf& out, int dt, int out_dt, int64_t B, int64_t n_valid,
                 int64_t N, int64_t K, const Buf& row_mult, double scale) {
  Checks c(fn, -1);
  const Fwht f = check_fwht(c, in, out, dt, out_dt, B, n_valid, N, K, row_mult, scale);
  py::gil_scoped_release release;
  linalg_core::cpu::kernels().fwht(f.in, f.out, f.a, f.b, B, n_valid, N, K, f.mult, scale);
  return nonfinite(f.out, f.b, B * N * K);
}

const char* const fwht_direct_doc =
    "cpu_fwht_direct(x, dim, normalized) -> Tensor | None: linalg_core.fwht(x, dim, normalized) in one call for a "
    "plain eager CPU tensor (contiguous float32/float64/float16/bfloat16, not tracked by autograd, no tracing, "
    "transform or mode active, LINALG_CORE_BACKEND unset), dim an int, normalized a bool, the size along dim a "
    "power of two and the result finite; None otherwise (the public function then runs its full path).";

// linalg_core.fwht's plain case: x (*, N, *) -> H_N x along dim (/ sqrt(N) when normalized), through
// cpu_fwht's checks and kernel call on x viewed as (B, N, K); None for anything else.
PyObject* fwht_direct(PyObject*, PyObject* const* args, Py_ssize_t nargs) {
  if (nargs != 3) {
    PyErr_Format(PyExc_TypeError, "cpu_fwht_direct takes 3 arguments (x, dim, normalized), got %zd", nargs);
    return nullptr;
  }
  return direct::run([&]() -> PyObject* {
    PyObject *x = args[0], *dim_arg = args[1], *normalized = args[2];
    if (!PyLong_CheckExact(dim_arg) || (normalized != Py_True && normalized != Py_False)) return nullptr;
    const char* forced = std::getenv("LINALG_CORE_BACKEND");
    if (forced != nullptr && forced[0] != '\0') return nullptr;
    const direct::Torch* T = direct::torch_refs();
    bool grad = false;
    direct::TensorArg t;
    if (T == nullptr || !direct::eager(*T, grad) || !direct::plain_cpu_tensor(*T, x, grad, direct::kFloats, t)) return nullptr;
    int overflow = 0;
    const long long dim = PyLong_AsLongLongAndOverflow(dim_arg, &overflow);
    if (overflow || dim < -t.nd || dim >= t.nd || t.numel == 0) return nullptr;
    const int d = static_cast<int>(dim < 0 ? dim + t.nd : dim);
    const int64_t N = t.dims[d];
    if (!is_power_of_two(N)) return nullptr;
    int64_t K = 1;
    for (int i = d + 1; i < t.nd; ++i) K *= t.dims[i];
    const int64_t B = t.numel / (N * K);
    const double scale = normalized == Py_True ? 1.0 / std::sqrt(static_cast<double>(N)) : 1.0;
    uintptr_t optr = 0;
    direct::Ref y(direct::empty_like(*T, x, optr));
    if (y.p == nullptr) return nullptr;
    const int code = t.kind;  // a float kind is its dtype code
    if (cpu_fwht("cpu_fwht_direct", t.buf(), Buf{optr, t.numel * t.elem, -1}, code, code, B, N, N, K, Buf{}, scale))
      return nullptr;  // non-finite: the full path counts and names the cause
    return y.release();
  });
}

void check_sparse_hash(Checks& c, int64_t n, int64_t col0, int64_t m, int64_t s) {
  c.range("n", n, 0, INT64_MAX);
  c.range("m", m, 1, INT32_MAX);  // row ids are int32
  c.range("s", s, 1, m);          // s distinct rows per column
  c.range("col0", col0, 0, INT64_MAX - n);
}
}  // namespace

void bind_sketch(py::module_& m) {
  namespace cpu = linalg_core::cpu;
  namespace cu = linalg_core::cuda;
  m.def("cpu_fwht", [](Buf in, Buf out, int dt, int out_dt, int64_t B, int64_t n_valid, int64_t N, int64_t K,
                       Buf row_mult, double scale) {
    return cpu_fwht("cpu_fwht", in, out, dt, out_dt, B, n_valid, N, K, row_mult, scale);
  });
  static PyMethodDef fwht_direct_def{"cpu_fwht_direct", reinterpret_cast<PyCFunction>(
      reinterpret_cast<void (*)()>(&fwht_direct)), METH_FASTCALL, fwht_direct_doc};
  direct::add_fastcall(m, &fwht_direct_def);
  m.def("cpu_fwht_select", [](Buf in, Buf work, Buf out, int dt, int out_dt, int64_t B, int64_t n_valid, int64_t N,
                              int64_t K, Buf row_mult, double scale, Buf select, int64_t msel) {
    Checks c("cpu_fwht_select", -1);
    // The transform lands in `work` (compute dtype), then the selected rows go to `out`.
    const DType a = c.dtype("dt", dt), b = c.dtype("out_dt", out_dt), w = compute_of(a, b);
    const int64_t nw = c.count("work", {B, N, K}), no = c.count("out", {B, msel, K});
    const Fwht f = check_fwht(c, in, work, dt, static_cast<int>(w), B, n_valid, N, K, row_mult, scale);
    void* o = c.buf("out", out, no, dtype_size(b));
    const int64_t* sel = c.buf<int64_t>("select", select, msel, 8);
    c.no_overlap("out", out, no * dtype_size(b), "work", work, nw * dtype_size(w));
    c.no_overlap("out", out, no * dtype_size(b), "in", in, c.count("in", {B, n_valid, K}) * dtype_size(a));
    c.no_overlap("work", work, nw * dtype_size(w), "in", in, c.count("in", {B, n_valid, K}) * dtype_size(a));
    for (int64_t i = 0; i < msel; ++i)
      if (sel[i] < 0 || sel[i] >= N)
        c.fail("select[" + std::to_string(i) + "]=" + std::to_string(sel[i]) + " is out of range [0, " +
               std::to_string(N - 1) + "]");
    py::gil_scoped_release release;
    cpu::kernels().fwht_select(f.in, f.out, o, a, b, B, n_valid, N, K, f.mult, scale, sel, msel);
    return nonfinite(o, b, B * msel * K);
  });
  m.def("cpu_sparse_hash", [](Buf rows, Buf signs, int64_t n, int64_t col0, int64_t mrows, int64_t s,
                              uint64_t stream, uint64_t seed) {
    Checks c("cpu_sparse_hash", -1);
    check_sparse_hash(c, n, col0, mrows, s);
    const int64_t nh = c.count("rows", {n, s});
    int32_t* r = c.buf<int32_t>("rows", rows, nh, 4);
    int8_t* g = c.buf<int8_t>("signs", signs, nh, 1);
    c.no_overlap("signs", signs, nh, "rows", rows, nh * 4);
    py::gil_scoped_release release;
    cpu::kernels().sparse_hash(r, g, n, col0, mrows, s, stream, seed);
  });
  m.def("cpu_sparse_apply", [](Buf A, Buf out, int dt, int out_dt, bool right, int64_t B, int64_t n, int64_t d,
                               int64_t mrows, int64_t s, Buf rows, Buf signs, double scale) {
    Checks c("cpu_sparse_apply", -1);
    const Sparse p = check_sparse_apply(c, A, out, dt, out_dt, right, B, n, d, mrows, s, rows, signs, scale);
    py::gil_scoped_release release;
    cpu::kernels().sparse_apply(p.A, p.out, p.a, p.b, right, B, n, d, mrows, s, p.rows, p.signs, scale);
    return nonfinite(p.out, p.b, right ? B * d * mrows : B * mrows * d);
  });
  m.def("cuda_fwht_workspace_bytes", [](int out_dt, int64_t B, int64_t N, int64_t K) {
    Checks c("cuda_fwht_workspace_bytes", 0);
    c.count("out", {B, N, K});
    return cu::fwht_workspace_bytes(c.dtype("out_dt", out_dt), B, N, K);
  });
  m.def("cuda_fwht", [](Buf in, Buf out, int dt, int out_dt, int64_t B, int64_t n_valid, int64_t N, int64_t K,
                        Buf row_mult, double scale, Buf workspace, uintptr_t stream) {
    Checks c("cuda_fwht", 0);
    const Fwht f = check_fwht(c, in, out, dt, out_dt, B, n_valid, N, K, row_mult, scale);
    void* ws = c.buf("workspace", workspace, cu::fwht_workspace_bytes(f.b, B, N, K), 1);
    cuda_call("fwht", [&] { return cu::fwht(f.in, f.out, f.a, f.b, B, n_valid, N, K, f.mult, scale, ws, stream); });
  });
  m.def("cuda_sparse_hash", [](Buf rows, Buf signs, int64_t n, int64_t col0, int64_t mrows, int64_t s,
                               uint64_t stream_id, uint64_t seed, uintptr_t stream) {
    Checks c("cuda_sparse_hash", 0);
    check_sparse_hash(c, n, col0, mrows, s);
    const int64_t nh = c.count("rows", {n, s});
    int32_t* r = c.buf<int32_t>("rows", rows, nh, 4);
    int8_t* g = c.buf<int8_t>("signs", signs, nh, 1);
    c.no_overlap("signs", signs, nh, "rows", rows, nh * 4);
    cuda_call("sparse_hash", [&] { return cu::sparse_hash(r, g, n, col0, mrows, s, stream_id, seed, stream); });
  });
  m.def("cuda_sparse_apply", [](Buf A, Buf out, int dt, int out_dt, bool right, int64_t B, int64_t n, int64_t d,
                                int64_t mrows, int64_t s, Buf rows, Buf signs, double scale, uintptr_t stream) {
    Checks c("cuda_sparse_apply", 0);
    const Sparse p = check_sparse_apply(c, A, out, dt, out_dt, right, B, n, d, mrows, s, rows, signs, scale);
    cuda_call("sparse_apply", [&] {
      return cu::sparse_apply(p.A, p.out, p.a, p.b, right, B, n, d, mrows, s, p.rows, p.signs, scale, stream);
    });
  });
}
