// DGQ A8W4 integer product (CPU and CUDA).
#include "bind_common.h"
#include "linalg_core/qmatmul.h"

#include <cstdlib>
#include <memory>

namespace {
// The int32 accumulator holds K products of |x| <= 127 and |w8| <= 127 exactly up to this K (a
// multiple of 128 below (2^31 - 1) / 127^2); longer products are split by the Python layer.
constexpr int64_t kMaxK = 133120;

// group a multiple of 128, K a multiple of group, both within [.., kMaxK]. (Messages are built only
// on failure: these checks run on every call of a per-token kernel.)
void check_group_k(Checks& c, int64_t K, int64_t group) {
  c.range("group", group, 128, kMaxK);
  if (group % 128 != 0) c.fail("group=" + std::to_string(group) + " is not a multiple of 128");
  c.range("K", K, 0, kMaxK);
  if (K % group != 0) c.fail("K=" + std::to_string(K) + " is not a multiple of group=" + std::to_string(group));
}

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
  check_group_k(c, K, group);
  const int64_t G = K / group, nx = c.count("x", {M, K}), nw = c.count("qweight", {N, K / 2}),
                ng = c.count("zeros", {N, G}), ny = c.count("y", {M, N});
  Dgq p{c.buf<const int8_t>("x", x, nx, 1),         c.buf<const uint8_t>("qweight", qw, nw, 1),
        c.buf<const uint8_t>("zeros", zeros, ng, 1), c.buf<const int8_t>("group_scales", gs, ng, 1),
        c.buf<const int32_t>("weight_sums", wsum, N, 4), c.buf<int32_t>("y", y, ny, 4),
        c.buf<const float>("x_scale", xs, M, 4, true), c.buf<const float>("channel_scales", sc, N, 4, true)};
  if ((p.xs == nullptr) != (p.sc == nullptr)) c.fail("x_scale and channel_scales are given together or not at all");
  for (const auto& [name, b, bytes] : {std::tuple{"x", x, nx}, {"qweight", qw, nw}, {"zeros", zeros, ng},
                                       {"group_scales", gs, ng}, {"weight_sums", wsum, 4 * N},
                                       {"x_scale", xs, p.xs ? 4 * M : 0}, {"channel_scales", sc, p.sc ? 4 * N : 0}})
    c.no_overlap("y", y, 4 * ny, name, b, bytes);
  return p;
}

// The name of a path code (the strings the Python layer records), "empty" for 0.
const char* path_name(int path) {
  namespace dgq = linalg_core::cpu::dgq;
  switch (path) {
    case dgq::kAmx: return "amx";
    case dgq::kAvx512Vnni: return "avx512vnni";
    case dgq::kAvxVnni: return "avxvnni";
    case dgq::kAvx2: return "avx2";
    case dgq::kPortable: return "generic";
    default: return "empty";
  }
}

// A kernel's return code: 0 passes, an error code becomes the ValueError that names it.
void check_status(const Checks& c, int rc) {
  namespace dgq = linalg_core::cpu::dgq;
  switch (rc) {
    case 0: return;
    case dgq::kNonFinite: c.fail("x has non-finite values (NaN or Inf); activations must be finite");
    case dgq::kMinus128: c.fail("x contains -128: symmetric INT8 activations are in [-127, 127] (quantize_activations)");
    case dgq::kBadDtype: c.fail("dt is not float32, float16 or bfloat16");
    default: c.fail("kernel error code " + std::to_string(rc));
  }
}
// DGQLinear's forward in one call: x (M, K) float of dtype code dt (float32, float16, bfloat16)
// quantized per row, the integer product, y (M, N) float32 = (float(acc)·s_m)·s_c[n] + bias[n]. The
// checks (a failure throws), then the kernel without the GIL; its return code (0, or an error code
// for check_status), `path` the path taken.
int cpu_dgq_linear(Checks c, const Buf& x, int dt, const Buf& qw, const Buf& zeros, const Buf& gs,
                   const Buf& wsum, const Buf& sc, const Buf& bias, const Buf& y, int64_t M, int64_t N, int64_t K,
                   int64_t group, int allowed, int& path) {
  using linalg_core::DType;
  const DType t = c.dtype("dt", dt);
  if (t == DType::f64) c.fail("dt=float64 is not supported (float32, float16, bfloat16)");
  check_group_k(c, K, group);
  const int64_t G = K / group, es = dtype_size(t), nx = c.count("x", {M, K}), nw = c.count("qweight", {N, K / 2}),
                ng = c.count("zeros", {N, G}), ny = c.count("y", {M, N});
  const void* px = c.buf<const void>("x", x, nx, es);
  const auto* pqw = c.buf<const uint8_t>("qweight", qw, nw, 1);
  const auto* pz = c.buf<const uint8_t>("zeros", zeros, ng, 1);
  const auto* pgs = c.buf<const int8_t>("group_scales", gs, ng, 1);
  const auto* pws = c.buf<const int32_t>("weight_sums", wsum, N, 4);
  const auto* psc = c.buf<const float>("channel_scales", sc, N, 4);
  const auto* pb = c.buf<const float>("bias", bias, N, 4, true);
  auto* py_ = c.buf<float>("y", y, ny, 4);
  for (const auto& [name, b, bytes] : {std::tuple{"x", x, nx * es}, {"qweight", qw, nw}, {"zeros", zeros, ng},
                                       {"group_scales", gs, ng}, {"weight_sums", wsum, 4 * N},
                                       {"channel_scales", sc, 4 * N}, {"bias", bias, pb ? 4 * N : 0}})
    c.no_overlap("y", y, 4 * ny, name, b, bytes);
  py::gil_scoped_release release;
  return linalg_core::cpu::kernels().dgq_linear(px, t, pqw, pz, pgs, pws, psc, pb, py_, M, N, K, group, allowed,
                                                &path);
}

const char* const dgq_linear_plan_doc =
    "cpu_dgq_linear_plan(buffers, group) -> plan | None: DGQLinear's weight tensors (buffers: the module's "
    "_buffers dict, keys qweight, zeros, group_scales, weight_sums, channel_scales, bias) checked once for "
    "cpu_dgq_linear_direct: plain contiguous CPU tensors of DGQWeight's dtypes and shapes (K = 2 * "
    "qweight.shape[1] <= DGQ_MAX_K), bias None or float32 (N,); None otherwise. The plan keeps the tensors, "
    "their versions and data pointers, and a detached alias of each (so that their memory stays where it was "
    "checked).";

const char* const dgq_linear_direct_doc =
    "cpu_dgq_linear_direct(x, plan) -> Tensor | None: DGQLinear's per-token forward (x (..., K) -> float32 "
    "(..., N)) in one call, for plain eager CPU tensors (x float32 and contiguous, nothing tracked by autograd, "
    "no tracing, transform or mode active, LINALG_CORE_BACKEND and LINALG_CORE_DGQ_PATHS unset), finite x and "
    "a plan (cpu_dgq_linear_plan); False when the plan is stale (a buffer replaced, modified in place or given "
    "new data since it was checked: DGQLinear.forward then validates its weights again and makes a new plan); "
    "None for anything else (the full path runs).";

constexpr const char* kPlanName = "linalg_core.dgq_linear_plan";

// DGQLinear's weight tensors as cpu_dgq_linear_plan checked them. Every call re-identifies them
// (the dict entry is the same object, at the same version and data pointer): the full checks run
// once per change of the weights, not per call. The aliases (t.detach()) keep the checked
// storages alive, so a data pointer seen again is the memory that was checked, never a new
// allocation that happens to reuse a freed address (`t.data = ...` does not change t's version).
struct DgqPlan {
  static constexpr int kSlots = 6;  // qweight, zeros, group_scales, weight_sums, channel_scales, bias
  static constexpr const char* kNames[kSlots] = {"qweight", "zeros", "group_scales", "weight_sums",
                                                 "channel_scales", "bias"};
  PyObject* buffers = nullptr;  // the module's _buffers dict
  PyObject* names[kSlots] = {};
  PyObject* tensors[kSlots] = {};  // Py_None for no bias
  PyObject* aliases[kSlots] = {};
  int64_t versions[kSlots] = {};
  direct::TensorArg args[kSlots];  // their checked data pointers, sizes and shapes
  int64_t N = 0, K = 0, group = 0;

  ~DgqPlan() {
    Py_XDECREF(buffers);
    for (int i = 0; i < kSlots; ++i) {
      Py_XDECREF(names[i]);
      Py_XDECREF(tensors[i]);
      Py_XDECREF(aliases[i]);
    }
  }
};

void free_plan(PyObject* capsule) {
  delete static_cast<DgqPlan*>(PyCapsule_GetPointer(capsule, kPlanName));
}

PyObject* dgq_linear_plan(PyObject*, PyObject* const* args, Py_ssize_t nargs) {
  if (!direct::arity("cpu_dgq_linear_plan", nargs, 2)) return nullptr;
  return direct::run([&]() -> PyObject* {
    using direct::bit;
    if (!PyDict_CheckExact(args[0]) || !PyLong_CheckExact(args[1])) return nullptr;
    const direct::Torch* T = direct::torch_refs();
    if (T == nullptr) return nullptr;
    int overflow = 0;
    const long long group = PyLong_AsLongLongAndOverflow(args[1], &overflow);
    if (overflow || group < 128 || group > kMaxK || group % 128) return nullptr;
    auto plan = std::make_unique<DgqPlan>();
    constexpr unsigned kinds[DgqPlan::kSlots] = {bit(direct::kU8), bit(direct::kU8), bit(direct::kI8),
                                                 bit(direct::kI32), bit(direct::kF32), bit(direct::kF32)};
    for (int i = 0; i < DgqPlan::kSlots; ++i) {
      plan->names[i] = PyUnicode_InternFromString(DgqPlan::kNames[i]);
      if (plan->names[i] == nullptr) return nullptr;
      PyObject* t = PyDict_GetItemWithError(args[0], plan->names[i]);  // borrowed
      if (t == nullptr) return nullptr;
      Py_INCREF(t);
      plan->tensors[i] = t;
      if (t == Py_None && i == DgqPlan::kSlots - 1) continue;  // no bias
      direct::TensorArg& a = plan->args[i];
      if (!direct::plain_cpu_tensor(*T, t, false, kinds[i], a)) return nullptr;
      direct::Ref v(PyObject_GetAttr(t, T->s_version));
      if (!v.p || !PyLong_CheckExact(v.p)) return nullptr;
      plan->versions[i] = PyLong_AsLongLong(v.p);
      plan->aliases[i] = PyObject_CallMethodNoArgs(t, T->s_detach);
      if (plan->aliases[i] == nullptr || PyErr_Occurred()) return nullptr;
    }
    const direct::TensorArg &qw = plan->args[0], &z = plan->args[1], &gs = plan->args[2], &ws = plan->args[3],
                            &sc = plan->args[4], &b = plan->args[5];
    if (qw.nd != 2) return nullptr;
    const int64_t N = qw.dims[0], K = 2 * qw.dims[1];
    if (K > kMaxK || K % group) return nullptr;
    const int64_t G = K / group;
    auto vec = [N](const direct::TensorArg& t) { return t.nd == 1 && t.dims[0] == N; };
    auto mat = [N, G](const direct::TensorArg& t) { return t.nd == 2 && t.dims[0] == N && t.dims[1] == G; };
    if (!mat(z) || !mat(gs) || !vec(ws) || !vec(sc) || (plan->tensors[5] != Py_None && !vec(b))) return nullptr;
    plan->N = N;
    plan->K = K;
    plan->group = group;
    Py_INCREF(args[0]);
    plan->buffers = args[0];
    PyObject* capsule = PyCapsule_New(plan.get(), kPlanName, free_plan);
    if (capsule != nullptr) plan.release();
    return capsule;
  });
}

// DGQLinear.forward's plain case through cpu_dgq_linear's checks and kernel call; None for anything
// else, including a failed kernel check (NaN, Inf), which the full path reports.
PyObject* dgq_linear_direct(PyObject*, PyObject* const* args, Py_ssize_t nargs) {
  if (!direct::arity("cpu_dgq_linear_direct", nargs, 2)) return nullptr;
  return direct::run([&]() -> PyObject* {
    using direct::bit;
    if (!PyCapsule_IsValid(args[1], kPlanName)) return nullptr;
    const auto* plan = static_cast<const DgqPlan*>(PyCapsule_GetPointer(args[1], kPlanName));
    const char* forced = std::getenv("LINALG_CORE_BACKEND");
    if ((forced != nullptr && forced[0] != '\0') || std::getenv("LINALG_CORE_DGQ_PATHS") != nullptr) return nullptr;
    const direct::Torch* T = direct::torch_refs();
    bool grad = false;
    if (T == nullptr || !direct::eager(*T, grad)) return nullptr;
    for (int i = 0; i < DgqPlan::kSlots; ++i) {  // the same tensors, unchanged since the plan checked them
      PyObject* t = PyDict_GetItemWithError(plan->buffers, plan->names[i]);
      if (t != plan->tensors[i] || (t != Py_None && !direct::same_data(*T, t, plan->args[i].ptr, plan->versions[i]))) {
        PyErr_Clear();
        Py_RETURN_FALSE;  // a stale plan: the caller checks the weights again and makes a new one
      }
      if (t == Py_None) continue;
      if (grad && i >= 4 && !direct::attr_is(t, T->s_requires_grad, Py_False)) return nullptr;  // the float ones
    }
    direct::TensorArg x;
    if (!direct::plain_cpu_tensor(*T, args[0], grad, bit(direct::kF32), x)) return nullptr;
    const int64_t N = plan->N, K = plan->K;
    if (x.nd < 1 || x.numel == 0 || x.dims[x.nd - 1] != K) return nullptr;
    const int64_t M = x.numel / K;
    PyObject* sizes[direct::kMaxDims];  // y: x.shape[:-1] + (N,)
    for (int i = 0; i < x.nd - 1; ++i) sizes[i] = PyTuple_GET_ITEM(x.shape, i);
    direct::Ref n(PyLong_FromLongLong(N));
    if (n.p == nullptr) return nullptr;
    sizes[x.nd - 1] = n.p;
    uintptr_t yptr = 0;
    direct::Ref y(direct::empty(*T, sizes, x.nd, direct::kF32, yptr));
    if (y.p == nullptr) return nullptr;
    const direct::TensorArg* w = plan->args;
    int path = 0;
    if (cpu_dgq_linear(Checks("cpu_dgq_linear_direct", -1), x.buf(), direct::kF32, w[0].buf(), w[1].buf(),
                       w[2].buf(), w[3].buf(), w[4].buf(), plan->tensors[5] == Py_None ? Buf{} : w[5].buf(),
                       Buf{yptr, M * N * 4, -1}, M, N, K, plan->group, 15, path))
      return nullptr;  // NaN / Inf in x (or -128): the full path raises the binding's error
    return y.release();
  });
}
}  // namespace

void bind_qmatmul(py::module_& m) {
  m.attr("DGQ_MAX_K") = kMaxK;
  m.def("cpu_dgq_matmul", [](Buf x, Buf qw, Buf zeros, Buf gs, Buf wsum, Buf y, int64_t M, int64_t N, int64_t K,
                             int64_t group, int allowed, Buf xs, Buf sc) {
    Checks c("cpu_dgq_matmul", -1);
    const Dgq p = check_dgq(c, x, qw, zeros, gs, wsum, y, M, N, K, group, xs, sc);
    int rc, path = 0;
    {
      py::gil_scoped_release release;
      rc = linalg_core::cpu::kernels().dgq_matmul(p.x, p.qw, p.zeros, p.gs, p.wsum, p.y, M, N, K, group, allowed,
                                                  p.xs, p.sc, &path);
    }
    check_status(c, rc);
    return path_name(path);
  });
  // DGQLinear's forward in one call: x (M, K) float of dtype code dt (float32, float16, bfloat16)
  // quantized per row, the integer product, y (M, N) float32 = (float(acc)·s_m)·s_c[n] + bias[n].
  m.def("cpu_dgq_linear", [](Buf x, int dt, Buf qw, Buf zeros, Buf gs, Buf wsum, Buf sc, Buf bias, Buf y, int64_t M,
                             int64_t N, int64_t K, int64_t group, int allowed) {
    Checks c("cpu_dgq_linear", -1);
    int path = 0;
    check_status(c, cpu_dgq_linear(c, x, dt, qw, zeros, gs, wsum, sc, bias, y, M, N, K, group, allowed, path));
    return path_name(path);
  }, py::arg("x"), py::arg("dt"), py::arg("qweight"), py::arg("zeros"), py::arg("group_scales"),
     py::arg("weight_sums"), py::arg("channel_scales"), py::arg("bias"), py::arg("y"), py::arg("M"), py::arg("N"),
     py::arg("K"), py::arg("group"), py::arg("allowed"));
  static PyMethodDef dgq_linear_plan_def{"cpu_dgq_linear_plan", reinterpret_cast<PyCFunction>(
      reinterpret_cast<void (*)()>(&dgq_linear_plan)), METH_FASTCALL, dgq_linear_plan_doc};
  direct::add_fastcall(m, &dgq_linear_plan_def);
  static PyMethodDef dgq_linear_direct_def{"cpu_dgq_linear_direct", reinterpret_cast<PyCFunction>(
      reinterpret_cast<void (*)()>(&dgq_linear_direct)), METH_FASTCALL, dgq_linear_direct_doc};
  direct::add_fastcall(m, &dgq_linear_direct_def);
  m.def("cpu_dgq_path", [](int64_t M, int allowed) {
    return path_name(linalg_core::cpu::kernels().dgq_path(allowed, M));
  }, "The CPU path dgq_matmul / dgq_linear take for M rows within the `allowed` bit set.");
  m.def("cuda_dgq_matmul", [](Buf x, Buf qw, Buf zeros, Buf gs, Buf wsum, Buf y, int64_t M, int64_t N, int64_t K,
                              int64_t group, uintptr_t cuda_stream) {
    Checks c("cuda_dgq_matmul", 0);
    const Dgq p = check_dgq(c, x, qw, zeros, gs, wsum, y, M, N, K, group, Buf{}, Buf{});
    cuda_call("dgq_matmul", [&] {
      return linalg_core::cuda::dgq_matmul(p.x, p.qw, p.zeros, p.gs, p.wsum, p.y, M, N, K, group, cuda_stream);
    });
  });
}
