// Memory hints for large outputs.
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <new>
#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace linalg_core {

// Ask for transparent huge pages on the 2 MiB-aligned interior of a freshly allocated output
// before its first write. Large torch CPU tensors come straight from mmap, so every call would
// otherwise take one page fault per 4 KiB (measured: a fresh 64 MiB output costs 3x a copy into
// existing memory; with this hint 1.6x). A no-op for small buffers and where THP is off.
inline void advise_huge_pages(void* p, size_t bytes) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  constexpr uintptr_t kHuge = uintptr_t(1) << 21;
  if (bytes < 2 * kHuge) return;
  const uintptr_t begin = (reinterpret_cast<uintptr_t>(p) + kHuge - 1) & ~(kHuge - 1);
  const uintptr_t end = (reinterpret_cast<uintptr_t>(p) + bytes) & ~(kHuge - 1);
  if (end > begin) madvise(reinterpret_cast<void*>(begin), end - begin, MADV_HUGEPAGE);
#else
  (void)p;
  (void)bytes;
#endif
}

// A scratch buffer aligned to a cache line (full-line vector stores and AMX tile loads never
// straddle two lines); zero-filled only when asked.
template <typename T>
struct AlignedBuffer {
  T* data = nullptr;
  explicit AlignedBuffer(size_t n, bool zero = false) {
    const size_t bytes = (n * sizeof(T) + 63) / 64 * 64;
    data = static_cast<T*>(std::aligned_alloc(64, bytes ? bytes : 64));
    if (!data) throw std::bad_alloc();
    if (zero) std::memset(data, 0, bytes);
  }
  ~AlignedBuffer() { std::free(data); }
  AlignedBuffer(const AlignedBuffer&) = delete;
  AlignedBuffer& operator=(const AlignedBuffer&) = delete;
};

}  // namespace linalg_core
