// Blockwise codebook quantization and GGUF Q4_0 / Q8_0 blocks (CPU and CUDA).
#include "bind_common.h"
#include "linalg_core/quant.h"

namespace {
using linalg_core::DType;

struct Quantize {
  DType t;
  const void* x;
  const float *mid, *scales_in, *offsets;
  float* scales_out;
  uint8_t* packed;
};

int64_t packed_bytes(int64_t n, int bits) { return n / 8 * bits + (n % 8 * bits + 7) / 8; }

int64_t check_block(Checks& c, int64_t n, int64_t block) {
  c.range("n", n, 0, INT64_MAX);
  c.range("block", block, 8, INT32_MAX);
  c.require(block % 8 == 0, [&] { return "block=" + std::to_string(block) + " is not a multiple of 8"; });
  return n / block + (n % block != 0);
}

// x (n,) -> packed codes; bits 0: the block absmaxes only (no codes, no midpoints).
Quantize check_quantize(Checks& c, const Buf& x, int dt, int64_t n, int64_t block, const Buf& mid, int bits,
                        const Buf& scales_in, const Buf& offsets, const Buf& scales_out, const Buf& packed) {
  const DType t = c.dtype("dt", dt);
  c.require(t != DType::f64, "dt=float64 is not supported (float32, float16, bfloat16)");
  c.require(bits == 0 || bits == 1 || bits == 2 || bits == 3 || bits == 4 || bits == 8,
            [&] { return "bits=" + std::to_string(bits) + " is not one of 0, 1, 2, 3, 4, 8"; });
  const int64_t nb = check_block(c, n, block), np = packed_bytes(n, bits);
  Quantize q{t,
             c.buf("x", x, n, dtype_size(t)),
             c.buf<const float>("mid", mid, bits ? (int64_t(1) << bits) - 1 : 0, 4),
             c.buf<const float>("scales_in", scales_in, nb, 4, true),
             c.buf<const float>("offsets", offsets, nb, 4, true),
             c.buf<float>("scales_out", scales_out, nb, 4, true),
             c.buf<uint8_t>("packed", packed, np, 1)};
  c.require(q.scales_in || q.scales_out || nb == 0, "scales_out is needed when scales_in is not given");
  for (const auto& [name, b, bytes] : {std::tuple{"x", x, n * dtype_size(t)}, {"mid", mid, bits ? 4 * ((int64_t(1) << bits) - 1) : 0},
                                       {"scales_in", scales_in, q.scales_in ? 4 * nb : 0},
                                       {"offsets", offsets, q.offsets ? 4 * nb : 0}}) {
    c.no_overlap("packed", packed, np, name, b, bytes);
    c.no_overlap("scales_out", scales_out, q.scales_out ? 4 * nb : 0, name, b, bytes);
  }
  c.no_overlap("scales_out", scales_out, q.scales_out ? 4 * nb : 0, "packed", packed, np);
  return q;
}

struct Dequantize {
  DType t;
  const uint8_t* packed;
  const float *levels, *scales, *offsets;
  void* out;
};

Dequantize check_dequantize(Checks& c, const Buf& packed, int bits, const Buf& levels, const Buf& scales,
                            const Buf& offsets, int64_t n, int64_t block, const Buf& out, int out_dt) {
  const DType t = c.dtype("out_dt", out_dt);
  c.require(t != DType::f64, "out_dt=float64 is not supported (float32, float16, bfloat16)");
  c.require(bits == 1 || bits == 2 || bits == 3 || bits == 4 || bits == 8,
            [&] { return "bits=" + std::to_string(bits) + " is not one of 1, 2, 3, 4, 8"; });
  const int64_t nb = check_block(c, n, block), np = packed_bytes(n, bits), nl = int64_t(1) << bits;
  Dequantize d{t, c.buf<const uint8_t>("packed", packed, np, 1), c.buf<const float>("levels", levels, nl, 4),
               c.buf<const float>("scales", scales, nb, 4), c.buf<const float>("offsets", offsets, nb, 4, true),
               c.buf("out", out, n, dtype_size(t))};
  const int64_t no = n * dtype_size(t);
  c.no_overlap("out", out, no, "packed", packed, np);
  c.no_overlap("out", out, no, "levels", levels, 4 * nl);
  c.no_overlap("out", out, no, "scales", scales, 4 * nb);
  c.no_overlap("out", out, no, "offsets", offsets, d.offsets ? 4 * nb : 0);
  return d;
}
struct Gguf {
  DType t;
  const void* in;
  void* out;
};

int64_t gguf_block_bytes(Checks& c, int bits) {
  c.require(bits == 4 || bits == 8, [&] { return "bits=" + std::to_string(bits) + " is not 4 (Q4_0) or 8 (Q8_0)"; });
  return bits == 4 ? 18 : 34;
}

// x (n,) float32/float16/bfloat16, n a multiple of 32 -> blocks (n / 32 blocks of 18 or 34 bytes).
Gguf check_gguf_quantize(Checks& c, const Buf& x, int dt, int64_t n, int bits, const Buf& blocks) {
  const DType t = c.dtype("dt", dt);
  c.require(t != DType::f64, "dt=float64 is not supported (float32, float16, bfloat16)");
  const int64_t bytes = gguf_block_bytes(c, bits);
  c.range("n", n, 0, INT64_MAX);
  c.require(n % 32 == 0, [&] { return "n=" + std::to_string(n) + " is not a multiple of 32 (GGUF blocks)"; });
  const int64_t nbytes = c.count("blocks", {n / 32, bytes});
  Gguf g{t, c.buf("x", x, n, dtype_size(t)), c.buf("blocks", blocks, nbytes, 1)};
  c.no_overlap("blocks", blocks, nbytes, "x", x, n * dtype_size(t));
  return g;
}

// blocks (ceil(n / 32) blocks) -> out (n,) in out_dt (float32/float16/bfloat16).
Gguf check_gguf_dequantize(Checks& c, const Buf& blocks, int bits, int64_t n, const Buf& out, int out_dt) {
  const DType t = c.dtype("out_dt", out_dt);
  c.require(t != DType::f64, "out_dt=float64 is not supported (float32, float16, bfloat16)");
  const int64_t bytes = gguf_block_bytes(c, bits);
  c.range("n", n, 0, INT64_MAX);
  const int64_t nbytes = c.count("blocks", {n / 32 + (n % 32 != 0), bytes});
  Gguf g{t, c.buf<const uint8_t>("blocks", blocks, nbytes, 1), c.buf("out", out, n, dtype_size(t))};
  c.no_overlap("out", out, n * dtype_size(t), "blocks", blocks, nbytes);
  return g;
}
}  // namespace

void bind_quant(py::module_& m) {
  namespace cu = linalg_core::cuda;
  m.def("cpu_block_quantize", [](Buf x, int dt, int64_t n, int64_t block, Buf mid, int bits, Buf scales_in,
                                 Buf offsets, Buf scales_out, Buf packed) {
    Checks c("cpu_block_quantize", -1);
    const Quantize q = check_quantize(c, x, dt, n, block, mid, bits, scales_in, offsets, scales_out, packed);
    py::gil_scoped_release release;
    return linalg_core::cpu::kernels().block_quantize(q.x, q.t, n, block, q.mid, bits, q.scales_in, q.offsets,
                                                      q.scales_out, q.packed);
  });
  m.def("cpu_block_dequantize", [](Buf packed, int bits, Buf levels, Buf scales, Buf offsets, int64_t n,
                                   int64_t block, Buf out, int out_dt) {
    Checks c("cpu_block_dequantize", -1);
    const Dequantize d = check_dequantize(c, packed, bits, levels, scales, offsets, n, block, out, out_dt);
    py::gil_scoped_release release;
    linalg_core::cpu::kernels().block_dequantize(d.packed, bits, d.levels, d.scales, d.offsets, n, block, d.out, d.t);
  });
  m.def("cuda_block_quantize", [](Buf x, int dt, int64_t n, int64_t block, Buf mid, int bits, Buf scales_in,
                                  Buf offsets, Buf scales_out, Buf packed, Buf bad, uintptr_t cuda_stream) {
    Checks c("cuda_block_quantize", 0);
    const Quantize q = check_quantize(c, x, dt, n, block, mid, bits, scales_in, offsets, scales_out, packed);
    int64_t* b = c.buf<int64_t>("bad", bad, 1, 8);
    cuda_call("block_quantize", [&] {
      return cu::block_quantize(q.x, q.t, n, block, q.mid, bits, q.scales_in, q.offsets, q.scales_out, q.packed, b,
                                cuda_stream);
    });
  });
  m.def("cuda_block_dequantize", [](Buf packed, int bits, Buf levels, Buf scales, Buf offsets, int64_t n,
                                    int64_t block, Buf out, int out_dt, uintptr_t cuda_stream) {
    Checks c("cuda_block_dequantize", 0);
    const Dequantize d = check_dequantize(c, packed, bits, levels, scales, offsets, n, block, out, out_dt);
    cuda_call("block_dequantize", [&] {
      return cu::block_dequantize(d.packed, bits, d.levels, d.scales, d.offsets, n, block, d.out, d.t, cuda_stream);
    });
  });
  m.def("cpu_gguf_quantize", [](Buf x, int dt, int64_t n, int bits, Buf blocks) {
    Checks c("cpu_gguf_quantize", -1);
    const Gguf g = check_gguf_quantize(c, x, dt, n, bits, blocks);
    int64_t bad, special;
    {
      py::gil_scoped_release release;
      bad = linalg_core::cpu::kernels().gguf_quantize(g.in, g.t, n, bits, static_cast<uint8_t*>(g.out), &special);
    }
    return py::make_tuple(bad, special);
  });
  m.def("cpu_gguf_dequantize", [](Buf blocks, int bits, int64_t n, Buf out, int out_dt) {
    Checks c("cpu_gguf_dequantize", -1);
    const Gguf g = check_gguf_dequantize(c, blocks, bits, n, out, out_dt);
    py::gil_scoped_release release;
    linalg_core::cpu::kernels().gguf_dequantize(static_cast<const uint8_t*>(g.in), bits, n, g.out, g.t);
  });
  m.def("cuda_gguf_quantize", [](Buf x, int dt, int64_t n, int bits, Buf blocks, Buf bad, uintptr_t cuda_stream) {
    Checks c("cuda_gguf_quantize", 0);
    const Gguf g = check_gguf_quantize(c, x, dt, n, bits, blocks);
    int64_t* b = c.buf<int64_t>("bad", bad, 2, 8);
    c.no_overlap("bad", bad, 16, "x", x, n * dtype_size(g.t));
    c.no_overlap("bad", bad, 16, "blocks", blocks, n / 32 * gguf_block_bytes(c, bits));
    cuda_call("gguf_quantize", [&] {
      return cu::gguf_quantize(g.in, g.t, n, bits, static_cast<uint8_t*>(g.out), b, cuda_stream);
    });
  });
  m.def("cuda_gguf_dequantize", [](Buf blocks, int bits, int64_t n, Buf out, int out_dt, uintptr_t cuda_stream) {
    Checks c("cuda_gguf_dequantize", 0);
    const Gguf g = check_gguf_dequantize(c, blocks, bits, n, out, out_dt);
    cuda_call("gguf_dequantize", [&] {
      return cu::gguf_dequantize(static_cast<const uint8_t*>(g.in), bits, n, g.out, g.t, cuda_stream);
    });
  });
}
