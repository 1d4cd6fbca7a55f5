// Run-time choice of the per-ISA kernel set.
#include <omp.h>

#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>

#include "linalg_core/cpu_kernels.h"

namespace linalg_core::cpu {
namespace {

// The kernel table of one instruction set: every entry of LC_CPU_TABLE (cpu_kernels.h).
#define LC_TABLE_ENTRY(name) t.name = &isa::name;
#define LC_TABLE(ISA)            \
  [] {                           \
    namespace isa = ISA;         \
    KernelTable t{#ISA};         \
    LC_CPU_TABLE(LC_TABLE_ENTRY) \
    return t;                    \
  }()

#if defined(__x86_64__) || defined(_M_X64)
bool has_avx512() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
         __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
}
bool has_avx2() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}
#endif

KernelTable choose() {
  const char* forced = std::getenv("LINALG_CORE_CPU_ISA");
  const std::string want = forced ? forced : "";
#if defined(__x86_64__) || defined(_M_X64)
  if (want.empty() || want == "avx512") {
    if (has_avx512()) return LC_TABLE(avx512);
    if (want == "avx512") throw std::runtime_error("LINALG_CORE_CPU_ISA=avx512 but this CPU lacks AVX-512 F/BW/VL/DQ");
  }
  if (want.empty() || want == "avx2") {
    if (has_avx2()) return LC_TABLE(avx2);
    if (want == "avx2") throw std::runtime_error("LINALG_CORE_CPU_ISA=avx2 but this CPU lacks AVX2/FMA");
  }
#endif
  if (!want.empty() && want != "generic")
    throw std::runtime_error("LINALG_CORE_CPU_ISA=" + want + " is not one of generic|avx2|avx512 available on this build");
  return LC_TABLE(generic);
}

}  // namespace

const KernelTable& kernels() {
  static const KernelTable table = choose();
  return table;
}

const char* cpu_features() {
  static std::string list = [] {
    std::string s;
#if defined(__x86_64__) || defined(_M_X64)
    __builtin_cpu_init();
    const char* names[] = {"sse4.2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl",
                           "avx512dq", "avx512vnni", "avx512bf16", "avxvnni", "amx-int8"};
    // __builtin_cpu_supports needs literals; test each name through a switch on its index.
    bool have[13] = {
        bool(__builtin_cpu_supports("sse4.2")),   bool(__builtin_cpu_supports("avx")),
        bool(__builtin_cpu_supports("avx2")),     bool(__builtin_cpu_supports("fma")),
        bool(__builtin_cpu_supports("f16c")),     bool(__builtin_cpu_supports("avx512f")),
        bool(__builtin_cpu_supports("avx512bw")), bool(__builtin_cpu_supports("avx512vl")),
        bool(__builtin_cpu_supports("avx512dq")), bool(__builtin_cpu_supports("avx512vnni")),
        bool(__builtin_cpu_supports("avx512bf16")), bool(__builtin_cpu_supports("avxvnni")),
        bool(__builtin_cpu_supports("amx-int8"))};
    for (int i = 0; i < 13; ++i)
      if (have[i]) s += (s.empty() ? "" : ",") + std::string(names[i]);
#elif defined(__aarch64__)
    s = "aarch64,neon";
#endif
    return s;
  }();
  return list.c_str();
}

int max_threads() { return omp_get_max_threads(); }
void set_num_threads(int n) { omp_set_num_threads(n); }

}  // namespace linalg_core::cpu
