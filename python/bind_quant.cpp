// Blockwise codebook quantization (CPU and CUDA).
#include "bind_common.h"

void bind_quant(py::module_& m) {
  m.def("cpu_block_quantize", [](uintptr_t x, int dt, int64_t n, int64_t block, uintptr_t mid, int bits,
                                 uintptr_t scales_in, uintptr_t offsets, uintptr_t scales_out, uintptr_t packed) {
    const auto t = dtype_of(dt);
    py::gil_scoped_release release;
    return linalg_core::cpu::kernels().block_quantize(ptr(x), t, n, block, ptr<const float>(mid), bits,
                                                      ptr<const float>(scales_in), ptr<const float>(offsets),
                                                      ptr<float>(scales_out), ptr<uint8_t>(packed));
  });
  m.def("cpu_block_dequantize", [](uintptr_t packed, int bits, uintptr_t levels, uintptr_t scales, uintptr_t offsets,
                                   int64_t n, int64_t block, uintptr_t out, int out_dt) {
    const auto t = dtype_of(out_dt);
    py::gil_scoped_release release;
    linalg_core::cpu::kernels().block_dequantize(ptr<const uint8_t>(packed), bits, ptr<const float>(levels),
                                                 ptr<const float>(scales), ptr<const float>(offsets), n, block,
                                                 ptr(out), t);
  });
  namespace cu = linalg_core::cuda;
  m.def("cuda_block_quantize", [](uintptr_t x, int dt, int64_t n, int64_t block, uintptr_t mid, int bits,
                                  uintptr_t scales_in, uintptr_t offsets, uintptr_t scales_out, uintptr_t packed,
                                  uintptr_t bad, uintptr_t cuda_stream) {
    const auto t = dtype_of(dt);
    cuda_call("block_quantize", [&] {
      return cu::block_quantize(ptr(x), t, n, block, ptr<const float>(mid), bits, ptr<const float>(scales_in),
                                ptr<const float>(offsets), ptr<float>(scales_out), ptr<uint8_t>(packed),
                                ptr<int64_t>(bad), cuda_stream);
    });
  });
  m.def("cuda_block_dequantize", [](uintptr_t packed, int bits, uintptr_t levels, uintptr_t scales, uintptr_t offsets,
                                    int64_t n, int64_t block, uintptr_t out, int out_dt, uintptr_t cuda_stream) {
    const auto t = dtype_of(out_dt);
    cuda_call("block_dequantize", [&] {
      return cu::block_dequantize(ptr<const uint8_t>(packed), bits, ptr<const float>(levels), ptr<const float>(scales),
                                  ptr<const float>(offsets), n, block, ptr(out), t, cuda_stream);
    });
  });
}
