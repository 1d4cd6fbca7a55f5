#include <dlfcn.h>
#include <omp.h>

#include "bind_common.h"

void bind_info(py::module_& m) {
  namespace cpu = linalg_core::cpu;
  namespace cu = linalg_core::cuda;
  m.def("cpu_isa", [] { return std::string(cpu::kernels().isa); },
        "Kernel set chosen for this CPU: avx512, avx2 or generic.");
  m.def("cpu_features", [] { return std::string(cpu::cpu_features()); });
  m.def("max_threads", &cpu::max_threads);
  m.def("set_num_threads", &cpu::set_num_threads, py::arg("n"));
  m.def("openmp_info", [] {
    // The OpenMP runtime the kernels run on, as this (calling) thread sees it. `library` is the
    // file the runtime was loaded from: torch's libgomp when torch was imported first (the
    // loader resolves libgomp.so.1 by soname), so both share one pool.
    py::dict d;
    d["max_threads"] = omp_get_max_threads();
    d["num_procs"] = omp_get_num_procs();
    d["dynamic"] = bool(omp_get_dynamic());
    d["thread_limit"] = omp_get_thread_limit();
    d["max_active_levels"] = omp_get_max_active_levels();
    Dl_info where{};
    d["library"] = dladdr(reinterpret_cast<void*>(&omp_get_max_threads), &where) && where.dli_fname
                       ? std::string(where.dli_fname) : std::string("unknown");
    return d;
  }, "OpenMP settings of the calling thread and the runtime library's path.");
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
