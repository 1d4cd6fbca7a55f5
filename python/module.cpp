// linalg_core._C: thin pybind11 bindings. No libtorch: arguments are data pointers (ints),
// shapes, dtype codes and stream handles. Every binding re-checks sizes, ranges and alignment (the
// trust boundary); the argument checks of the public API happen in Python, except on the eager
// fast paths (cpu_fwht_direct, cpu_dgq_linear_direct), which check plain tensors themselves and
// return None for anything else so that the Python path reports the error.
#include <pybind11/pybind11.h>

namespace py = pybind11;

void bind_info(py::module_& m);
void bind_random(py::module_& m);
void bind_sketch(py::module_& m);
void bind_convert(py::module_& m);
void bind_sampling(py::module_& m);
void bind_quant(py::module_& m);
void bind_qmatmul(py::module_& m);
void bind_nola(py::module_& m);

PYBIND11_MODULE(_C, m) {
  m.doc() = "linalg_core compiled kernels (C++/OpenMP and, when built with nvcc, CUDA)";
  bind_info(m);
  bind_random(m);
  bind_sketch(m);
  bind_convert(m);
  bind_sampling(m);
  bind_quant(m);
  bind_qmatmul(m);
  bind_nola(m);
}
