// CPU kernel entry points of every op family. Each csrc/cpu/<family>.cpp is compiled once per
// instruction set (namespaces avx512, avx2, generic; see CMakeLists.txt) and csrc/cpu/dispatch.cpp
// picks one set at run time from CPUID, so one build runs on any x86-64 machine (and builds on
// aarch64, where only `generic` exists). The kernels are declared family by family in
// linalg_core/<family>.h (LC_<FAMILY>_CPU_KERNELS, LC_<FAMILY>_CPU_TABLE); this header declares
// them in each instruction-set namespace and gathers them into one kernel table. All pointers
// are to contiguous row-major data; the bindings (python/bind_<family>.cpp) check every size,
// range and alignment before the call.
#pragma once
#include <cstdint>

#include "linalg_core/convert.h"
#include "linalg_core/dtype.h"
#include "linalg_core/nola.h"
#include "linalg_core/qmatmul.h"
#include "linalg_core/quant.h"
#include "linalg_core/random.h"
#include "linalg_core/sampling.h"
#include "linalg_core/sketch.h"

#define LC_DECLARE_CPU_KERNELS(ISA)                                                            \
  namespace ISA {                                                                              \
  LC_SKETCH_CPU_KERNELS                                                                        \
  LC_RANDOM_CPU_KERNELS                                                                        \
  LC_CONVERT_CPU_KERNELS                                                                       \
  LC_SAMPLING_CPU_KERNELS                                                                      \
  LC_QUANT_CPU_KERNELS                                                                         \
  LC_QMATMUL_CPU_KERNELS                                                                       \
  LC_NOLA_CPU_KERNELS                                                                          \
  }

// X(name) for every kernel of the table.
#define LC_CPU_TABLE(X)                                                                        \
  LC_SKETCH_CPU_TABLE(X)                                                                       \
  LC_RANDOM_CPU_TABLE(X)                                                                       \
  LC_CONVERT_CPU_TABLE(X)                                                                      \
  LC_SAMPLING_CPU_TABLE(X)                                                                     \
  LC_QUANT_CPU_TABLE(X)                                                                        \
  LC_QMATMUL_CPU_TABLE(X)                                                                      \
  LC_NOLA_CPU_TABLE(X)

namespace linalg_core::cpu {

LC_DECLARE_CPU_KERNELS(generic)
#if defined(__x86_64__) || defined(_M_X64)
LC_DECLARE_CPU_KERNELS(avx2)
LC_DECLARE_CPU_KERNELS(avx512)
#endif

// The kernel set chosen for this CPU (or forced by LINALG_CORE_CPU_ISA=generic|avx2|avx512):
// one function pointer per kernel, named as the kernel (kernels().fwht, ...).
struct KernelTable {
  const char* isa;
#define LC_TABLE_FIELD(name) decltype(&generic::name) name;
  LC_CPU_TABLE(LC_TABLE_FIELD)
#undef LC_TABLE_FIELD
};
const KernelTable& kernels();
// Comma-separated CPU features detected at run time (for `python -m linalg_core info`).
const char* cpu_features();
int max_threads();
void set_num_threads(int n);

}  // namespace linalg_core::cpu
