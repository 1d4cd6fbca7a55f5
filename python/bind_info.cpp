#include "bind_common.h"

void bind_info(py::module_& m) {
  namespace cpu = linalg_core::cpu;
  namespace cu = linalg_core::cuda;
  m.def("cpu_isa", [] { return std::string(cpu::kernels().isa); },
        "Kernel set chosen for this CPU: avx512, avx2 or generic.");
  m.def("cpu_features", [] { return std::string(cpu::cpu_features()); });
  m.def("max_threads", &cpu::max_threads);
  m.def("set_num_threads", &cpu::set_num_threads, py::arg("n"));
  m.def("build_info", [] {
    py::dict d;
    d["cuda"] = cu::built();
    d["cuda_architectures"] = cu::architectures();
    d["openmp"] = _OPENMP;
    d["compiler"] = __VERSION__;
    return d;
  });
  m.def("cuda_device_count", &cu::device_count,
        "Visible CUDA devices (initialises the CUDA runtime: call only when needed).");
  m.def("cuda_runtime_version", &cu::runtime_version);
}
