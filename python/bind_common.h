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
