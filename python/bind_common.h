// Helpers shared by the bind_<family>.cpp files: the argument checks of the trust boundary.
//
// The bindings take no libtorch objects: every array arrives as a `Buf`, the tuple
// (data pointer, capacity in bytes, device) that the Python layer builds from a contiguous tensor
// (`device` is -1 for host memory, the CUDA device index otherwise; None is a null buffer).
// Python validates first; the binding checks again, from the buffers' capacities and the scalar
// arguments alone, everything a kernel relies on to stay inside its buffers: sizes (products
// computed without overflow), ranges of the scalars, alignment, the device, null pointers and
// overlap of inputs with outputs. A violation raises ValueError naming the function, the argument
// and its value; nothing reaches a kernel that could read or write out of bounds.
#pragma once
#include <pybind11/pybind11.h>

#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <tuple>

#include "linalg_core/cpu_kernels.h"
#include "linalg_core/cuda_kernels.h"
#include "linalg_core/dtype.h"

namespace py = pybind11;

struct Buf {
  uintptr_t ptr = 0;
  int64_t nbytes = 0;
  int device = -2;  // -1 host, >= 0 a CUDA device; -2 for a null buffer (None)
};

namespace pybind11::detail {
template <>
struct type_caster<Buf> {
  PYBIND11_TYPE_CASTER(Buf, const_name("tuple[int, int, int] | None"));
  bool load(handle src, bool) {
    if (src.is_none()) {
      value = Buf{};
      return true;
    }
    if (!isinstance<tuple>(src)) return false;
    auto t = reinterpret_borrow<tuple>(src);
    if (t.size() != 3) return false;
    make_caster<uintptr_t> p;
    make_caster<int64_t> n;
    make_caster<int> d;
    if (!p.load(t[0], false) || !n.load(t[1], false) || !d.load(t[2], false)) return false;
    value = Buf{cast_op<uintptr_t>(p), cast_op<int64_t>(n), cast_op<int>(d)};
    return true;
  }
};
}  // namespace pybind11::detail

inline int64_t dtype_size(linalg_core::DType t) {
  return t == linalg_core::DType::f64 ? 8 : t == linalg_core::DType::f32 ? 4 : 2;
}

// Checks of one binding call; every failure is a ValueError "linalg_core._C.<fn>: <what>".
class Checks {
 public:
  // device: -1 for the cpu_* bindings (host buffers), 0 for the cuda_* ones (any CUDA device,
  // the same for every buffer of the call).
  Checks(const char* fn, int device) : fn_(fn), host_(device < 0) {}

  [[noreturn]] void fail(const std::string& what) const {
    throw std::invalid_argument(std::string("linalg_core._C.") + fn_ + ": " + what);
  }
  // `what`: a message, or a callable that builds one; either costs nothing unless `ok` is false
  // (no string is formatted on the success path of a per-call check).
  template <typename M>
  void require(bool ok, M&& what) const {
    if (ok) return;
    if constexpr (std::is_invocable_v<M>) fail(what());
    else fail(std::string(what));
  }
  // A scalar in [lo, hi].
  int64_t range(const char* name, int64_t v, int64_t lo, int64_t hi) const {
    if (v < lo || v > hi)
      fail(std::string(name) + "=" + std::to_string(v) + " is out of range [" + std::to_string(lo) + ", " +
           std::to_string(hi) + "]");
    return v;
  }
  // The product of non-negative factors, refusing overflow of int64.
  int64_t count(const char* what, std::initializer_list<int64_t> dims) const {
    int64_t n = 1;
    for (int64_t d : dims) {
      if (d < 0) fail(std::string(what) + " has a negative size " + std::to_string(d));
      if (__builtin_mul_overflow(n, d, &n)) fail(std::string(what) + " has more elements than int64 holds");
    }
    return n;
  }
  linalg_core::DType dtype(const char* name, int code) const {
    if (code < 0 || code > 3) fail(std::string(name) + "=" + std::to_string(code) + " is not a dtype code (0..3)");
    return static_cast<linalg_core::DType>(code);
  }
  // `b` must hold `elems` elements of `elem` bytes, aligned, on this call's device. A null buffer
  // is accepted where `optional` (the kernel then does without it) or where nothing is needed.
  template <typename T = void>
  T* buf(const char* name, const Buf& b, int64_t elems, int64_t elem, bool optional = false) {
    int64_t need;
    if (elems < 0 || __builtin_mul_overflow(elems, elem, &need))
      fail(std::string(name) + ": " + std::to_string(elems) + " elements do not fit int64 bytes");
    if (b.ptr == 0) {
      if (optional || need == 0) return nullptr;
      fail(std::string(name) + " is a null buffer but " + std::to_string(need) + " bytes are needed");
    }
    if (b.nbytes < need)
      fail(std::string(name) + " holds " + std::to_string(b.nbytes) + " bytes, the arguments need " +
           std::to_string(need));
    if (host_ ? b.device != -1 : b.device < 0)
      fail(std::string(name) + " is on device " + std::to_string(b.device) + ", expected " +
           (host_ ? "host memory (-1)" : "a CUDA device (>= 0)"));
    if (!host_) {
      if (device_ == -2) device_ = b.device;
      else if (device_ != b.device) fail(std::string(name) + " is on CUDA device " + std::to_string(b.device) +
                                         ", another buffer on " + std::to_string(device_));
    }
    if (b.ptr % uintptr_t(elem > 8 ? 8 : elem))
      fail(std::string(name) + " is not aligned to its " + std::to_string(elem) + "-byte elements");
    return reinterpret_cast<T*>(b.ptr);
  }
  // An output must not partially overlap an input (the same buffer is allowed where `same_ok`).
  void no_overlap(const char* out_name, const Buf& out, int64_t out_bytes, const char* in_name, const Buf& in,
                  int64_t in_bytes, bool same_ok = false) const {
    if (out.ptr == 0 || in.ptr == 0 || out_bytes == 0 || in_bytes == 0) return;
    if (same_ok && out.ptr == in.ptr) return;
    if (out.ptr < in.ptr + uintptr_t(in_bytes) && in.ptr < out.ptr + uintptr_t(out_bytes))
      fail(std::string(out_name) + " overlaps " + in_name);
  }
  bool host() const { return host_; }

 private:
  const char* fn_;
  bool host_;
  int device_ = -2;
};

inline bool is_power_of_two(int64_t v) { return v > 0 && (v & (v - 1)) == 0; }

// Runs a CUDA launcher without the GIL; a non-zero cudaError_t becomes a RuntimeError.
template <typename F>
inline void cuda_call(const char* what, F&& f) {
  int err;
  {
    py::gil_scoped_release release;
    err = f();
  }
  if (err != 0)
    throw std::runtime_error(std::string("linalg_core CUDA ") + what + ": " + linalg_core::cuda::error_string(err));
}

// --- Direct paths: a public function's plain eager CPU call in one binding call ------------------
//
// A direct binding (`cpu_<op>_direct`) takes a public function's own arguments (torch tensors and
// Python scalars), recognises the one common case (plain eager mode, a plain contiguous CPU tensor
// of a supported dtype that autograd does not track, values the public layer accepts), and then
// allocates the result and runs the same kernel call as its `cpu_<op>` binding. For anything else
// it returns None without raising, and the public function runs its full path: its checks, its
// error messages, its dispatch. Tensors are read through the Python C API only (no libtorch):
// the attributes the Python layer reads (type, dtype, layout, is_cpu, requires_grad,
// is_contiguous(), shape, data_ptr()).
namespace direct {

// The dtypes the direct paths take: the float ones in linalg_core::DType's order (their codes),
// then the integer ones of the quantized formats.
enum Kind : int { kF32, kF64, kF16, kBF16, kU8, kI8, kI32 };
constexpr int64_t kKindBytes[7] = {4, 8, 2, 2, 1, 1, 4};
constexpr unsigned kFloats = 0xF;
constexpr unsigned bit(Kind k) { return 1u << k; }

// The torch objects the direct paths compare with or call, looked up once (the GIL is held).
struct Torch {
  PyObject* tensor_type;   // torch.Tensor (exactly: subclasses such as FakeTensor or Parameter decline)
  PyObject* dtypes[7];     // the dtypes of Kind, in its order
  PyObject* strided;       // torch.strided
  PyObject* dispatch_len;  // torch._C._len_torch_dispatch_stack: fake tensors, proxy and other dispatch modes
  PyObject* interpreters;  // torch._C._functorch.peek_interpreter_stack: torch.func transforms
  PyObject* function_mode; // torch._C._is_torch_function_mode_enabled: torch.device(...) and other modes
  PyObject* grad_enabled;  // torch._C.is_grad_enabled
  PyObject* empty;         // torch.empty
  PyObject* empty_like;    // torch.empty_like
  PyObject *s_dtype, *s_layout, *s_is_cpu, *s_requires_grad, *s_shape, *s_is_contiguous, *s_data_ptr, *kw_dtype;
  PyObject *s_version, *s_detach;
};

// The references, or null with a Python error set when torch cannot be read.
inline const Torch* torch_refs() {
  static Torch T{};
  static bool ready = false;
  if (ready) return &T;
  PyObject* torch = PyImport_ImportModule("torch");
  if (!torch) return nullptr;
  auto attr = [](PyObject* o, const char* path) -> PyObject* {  // a new reference to o.<a>.<b>...
    Py_INCREF(o);
    std::string rest(path);
    while (o && !rest.empty()) {
      const size_t dot = rest.find('.');
      PyObject* next = PyObject_GetAttrString(o, rest.substr(0, dot).c_str());
      Py_DECREF(o);
      o = next;
      rest = dot == std::string::npos ? "" : rest.substr(dot + 1);
    }
    return o;
  };
  T.tensor_type = attr(torch, "Tensor");
  const char* names[7] = {"float32", "float64", "float16", "bfloat16", "uint8", "int8", "int32"};
  for (int i = 0; i < 7; ++i) T.dtypes[i] = attr(torch, names[i]);
  T.strided = attr(torch, "strided");
  T.dispatch_len = attr(torch, "_C._len_torch_dispatch_stack");
  T.interpreters = attr(torch, "_C._functorch.peek_interpreter_stack");
  T.function_mode = attr(torch, "_C._is_torch_function_mode_enabled");
  T.grad_enabled = attr(torch, "_C.is_grad_enabled");
  T.empty = attr(torch, "empty");
  T.empty_like = attr(torch, "empty_like");
  Py_DECREF(torch);
  T.s_dtype = PyUnicode_InternFromString("dtype");
  T.s_layout = PyUnicode_InternFromString("layout");
  T.s_is_cpu = PyUnicode_InternFromString("is_cpu");
  T.s_requires_grad = PyUnicode_InternFromString("requires_grad");
  T.s_shape = PyUnicode_InternFromString("shape");
  T.s_is_contiguous = PyUnicode_InternFromString("is_contiguous");
  T.s_data_ptr = PyUnicode_InternFromString("data_ptr");
  T.kw_dtype = Py_BuildValue("(s)", "dtype");
  T.s_version = PyUnicode_InternFromString("_version");
  T.s_detach = PyUnicode_InternFromString("detach");
  if (PyErr_Occurred()) return nullptr;  // the references stay null: the next call tries again
  ready = true;
  return &T;
}

// A new reference owned until the scope ends.
struct Ref {
  PyObject* p;
  explicit Ref(PyObject* o = nullptr) : p(o) {}
  Ref(const Ref&) = delete;
  Ref& operator=(const Ref&) = delete;
  ~Ref() { Py_XDECREF(p); }
  PyObject* release() { PyObject* o = p; p = nullptr; return o; }
};

// Plain eager mode, as linalg_core._trace.traced() and the registry's _plain() define it (the
// Python caller has already checked torch.compiler.is_compiling()): no dispatch mode, no
// torch.func transform, no torch function mode. `grad` receives torch.is_grad_enabled().
inline bool eager(const Torch& T, bool& grad) {
  Ref n(PyObject_CallNoArgs(T.dispatch_len));
  if (!n.p || !PyLong_Check(n.p) || PyLong_AsLongLong(n.p) != 0) return false;
  Ref top(PyObject_CallNoArgs(T.interpreters));
  if (top.p != Py_None) return false;
  Ref mode(PyObject_CallNoArgs(T.function_mode));
  if (mode.p != Py_False) return false;
  Ref g(PyObject_CallNoArgs(T.grad_enabled));
  if (!g.p) return false;
  grad = g.p == Py_True;
  return true;
}

inline bool attr_is(PyObject* x, PyObject* name, PyObject* expected) {
  Ref v(PyObject_GetAttr(x, name));
  return v.p == expected;
}

constexpr int kMaxDims = 64;

// What a direct path reads of a tensor argument.
struct TensorArg {
  Kind kind;
  int64_t elem = 0;  // bytes per element
  uintptr_t ptr = 0;
  int nd = 0;
  int64_t dims[kMaxDims];
  int64_t numel = 1;
  PyObject* shape = nullptr;  // borrowed from `keep`
  Ref keep;

  Buf buf() const { return Buf{ptr, numel * elem, -1}; }
};

// Whether `x` is a plain tensor a direct path takes: exactly torch.Tensor, a dtype in `kinds`
// (bit i for Kind i), strided, on the CPU, not tracked by autograd (grad mode off or
// requires_grad False), contiguous, at most kMaxDims dimensions, its data aligned to its element
// size (the Python layer copies a misaligned tensor).
inline bool plain_cpu_tensor(const Torch& T, PyObject* x, bool grad, unsigned kinds, TensorArg& a) {
  if (reinterpret_cast<PyObject*>(Py_TYPE(x)) != T.tensor_type) return false;
  Ref dt(PyObject_GetAttr(x, T.s_dtype));
  int kind = -1;
  for (int i = 0; i < 7; ++i)
    if (dt.p == T.dtypes[i] && (kinds >> i & 1u)) kind = i;
  if (kind < 0) return false;
  a.kind = static_cast<Kind>(kind);
  a.elem = kKindBytes[kind];
  if (!attr_is(x, T.s_layout, T.strided) || !attr_is(x, T.s_is_cpu, Py_True)) return false;
  if (grad && !attr_is(x, T.s_requires_grad, Py_False)) return false;
  Ref contiguous(PyObject_CallMethodNoArgs(x, T.s_is_contiguous));
  if (contiguous.p != Py_True) return false;
  a.keep.p = PyObject_GetAttr(x, T.s_shape);
  if (!a.keep.p || !PyTuple_Check(a.keep.p)) return false;
  a.shape = a.keep.p;
  const Py_ssize_t nd = PyTuple_GET_SIZE(a.shape);
  if (nd > kMaxDims) return false;
  a.nd = static_cast<int>(nd);
  for (int i = 0; i < a.nd; ++i) {
    const long long d = PyLong_AsLongLong(PyTuple_GET_ITEM(a.shape, i));
    if (d < 0 || __builtin_mul_overflow(a.numel, static_cast<int64_t>(d), &a.numel)) return false;
    a.dims[i] = d;
  }
  Ref p(PyObject_CallMethodNoArgs(x, T.s_data_ptr));
  if (!p.p) return false;
  a.ptr = static_cast<uintptr_t>(PyLong_AsUnsignedLongLong(p.p));
  if (PyErr_Occurred()) return false;
  return a.ptr % static_cast<uintptr_t>(a.elem) == 0;
}

// x.data_ptr() == ptr and x._version == version (false also when either cannot be read; the
// Python error is cleared by run()).
inline bool same_data(const Torch& T, PyObject* x, uintptr_t ptr, int64_t version) {
  Ref v(PyObject_GetAttr(x, T.s_version));
  if (!v.p || !PyLong_CheckExact(v.p) || PyLong_AsLongLong(v.p) != version) return false;
  Ref p(PyObject_CallMethodNoArgs(x, T.s_data_ptr));
  return p.p && PyLong_CheckExact(p.p) && PyLong_AsUnsignedLongLong(p.p) == ptr;
}

// The data pointer of a tensor just allocated (a new reference, or null).
inline PyObject* with_data_ptr(const Torch& T, PyObject* out, uintptr_t& ptr) {
  Ref t(out);
  if (!t.p) return nullptr;
  Ref p(PyObject_CallMethodNoArgs(t.p, T.s_data_ptr));
  if (!p.p) return nullptr;
  ptr = static_cast<uintptr_t>(PyLong_AsUnsignedLongLong(p.p));
  return PyErr_Occurred() ? nullptr : t.release();
}

// torch.empty(*sizes, dtype=kind) (the sizes as separate ints: torch parses them faster than a
// tuple or a torch.Size) and its data pointer, or null.
inline PyObject* empty(const Torch& T, PyObject* const* sizes, int nd, Kind kind, uintptr_t& ptr) {
  PyObject* args[kMaxDims + 1];
  for (int i = 0; i < nd; ++i) args[i] = sizes[i];
  args[nd] = T.dtypes[kind];
  return with_data_ptr(T, PyObject_Vectorcall(T.empty, args, nd, T.kw_dtype), ptr);
}

// torch.empty_like(x) for a contiguous x (the cheapest allocation torch offers a Python caller: a
// contiguous tensor of x's shape and dtype) and its data pointer, or null.
inline PyObject* empty_like(const Torch& T, PyObject* x, uintptr_t& ptr) {
  return with_data_ptr(T, PyObject_CallOneArg(T.empty_like, x), ptr);
}

// The body of a direct binding: `f()` gives the result (a new reference) or null to decline. A
// Python error met on the way (reading an attribute, probing a mode, allocating) is cleared and the
// call declines, so that the public function's full path meets it again and reports it in its own
// words; a failed binding check (std::invalid_argument, as the `cpu_*` bindings raise) is a
// ValueError, as there.
template <typename F>
PyObject* run(F&& f) {
  try {
    if (PyObject* r = f()) return r;
    PyErr_Clear();
    Py_RETURN_NONE;
  } catch (const std::invalid_argument& e) {
    PyErr_SetString(PyExc_ValueError, e.what());
  } catch (const std::exception& e) {
    PyErr_SetString(PyExc_RuntimeError, e.what());
  }
  return nullptr;
}

// Whether a METH_FASTCALL binding got `want` arguments (else a TypeError naming it is set).
inline bool arity(const char* name, Py_ssize_t nargs, Py_ssize_t want) {
  if (nargs == want) return true;
  PyErr_Format(PyExc_TypeError, "%s takes %zd arguments, got %zd", name, want, nargs);
  return false;
}

// A METH_FASTCALL function of the module (no pybind11 argument dispatch: a direct call costs tens
// of nanoseconds to enter).
inline void add_fastcall(py::module_& m, PyMethodDef* def) {
  PyObject* f = PyCFunction_NewEx(def, nullptr, nullptr);
  if (f == nullptr) throw py::error_already_set();
  m.add_object(def->ml_name, py::reinterpret_steal<py::object>(f));
}
}  // namespace direct
