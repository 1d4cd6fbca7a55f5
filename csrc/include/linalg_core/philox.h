// Philox4x32-10 counter-based generator (Salmon, Moraes, Dror and Shaw, SC'11).
//
// The one definition of linalg_core's random streams, shared by the C++ and CUDA kernels
// and mirrored bit for bit by the torch reference (linalg_core/backends/reference/random.py)
// and the Triton kernels (linalg_core/backends/triton/random.py):
//
//   key     = (seed mod 2^32, seed >> 32)                       64-bit seed
//   counter = (block mod 2^32, block >> 32, stream mod 2^32, stream >> 32)
//   word e of a stream is lane e % 4 of philox(key, counter with block = e / 4)
//
// Any word can be computed without the ones before it, so any block of a sketch can be
// generated on its own (streaming, distributed use).
#pragma once
#include <cstdint>
#include <cmath>

#if defined(__CUDACC__)
#define LC_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define LC_HOST_DEVICE inline
#endif

namespace linalg_core {

struct Philox4x32 {
  uint32_t v[4];
};

LC_HOST_DEVICE uint32_t mulhilo32(uint32_t a, uint32_t b, uint32_t* hi) {
  const uint64_t p = static_cast<uint64_t>(a) * static_cast<uint64_t>(b);
  *hi = static_cast<uint32_t>(p >> 32);
  return static_cast<uint32_t>(p);
}

LC_HOST_DEVICE Philox4x32 philox4x32_10(uint64_t block, uint64_t stream, uint64_t seed) {
  constexpr uint32_t M0 = 0xD2511F53u, M1 = 0xCD9E8D57u;
  constexpr uint32_t W0 = 0x9E3779B9u, W1 = 0xBB67AE85u;
  uint32_t c0 = static_cast<uint32_t>(block), c1 = static_cast<uint32_t>(block >> 32);
  uint32_t c2 = static_cast<uint32_t>(stream), c3 = static_cast<uint32_t>(stream >> 32);
  uint32_t k0 = static_cast<uint32_t>(seed), k1 = static_cast<uint32_t>(seed >> 32);
#if defined(__CUDA_ARCH__)
#pragma unroll
#elif defined(__GNUC__) && !defined(__CUDACC__)
#pragma GCC unroll 10  // straight-line code lets loops over blocks vectorise
#endif
  for (int round = 0; round < 10; ++round) {
    uint32_t hi0, hi1;
    const uint32_t lo0 = mulhilo32(M0, c0, &hi0);
    const uint32_t lo1 = mulhilo32(M1, c2, &hi1);
    const uint32_t n0 = hi1 ^ c1 ^ k0, n2 = hi0 ^ c3 ^ k1;
    c0 = n0; c1 = lo1; c2 = n2; c3 = lo0;
    k0 += W0; k1 += W1;
  }
  Philox4x32 r;
  r.v[0] = c0; r.v[1] = c1; r.v[2] = c2; r.v[3] = c3;
  return r;
}

// Word e of a stream.
LC_HOST_DEVICE uint32_t philox_word(uint64_t e, uint64_t stream, uint64_t seed) {
  return philox4x32_10(e >> 2, stream, seed).v[e & 3u];
}

// Multiply-shift reduction of a 32-bit word to [0, range) (Lemire 2019): exact integers on
// every backend, no division.
LC_HOST_DEVICE uint32_t reduce_range(uint32_t word, uint32_t range) {
  return static_cast<uint32_t>((static_cast<uint64_t>(word) * range) >> 32);
}

// Standard normal number e of a stream by Box-Muller on the word pairs (0,1) and (2,3) of one
// Philox block: lanes 0 and 2 take the cosine, lanes 1 and 3 the sine.
// u1 = (w_a + 1) / 2^32 lies in (0, 1], so the logarithm is finite.
template <typename Real>
LC_HOST_DEVICE Real normal_from_pair(uint32_t wa, uint32_t wb, bool sine) {
  const Real two_m32 = Real(2.3283064365386963e-10);
  const Real u1 = (Real(wa) + Real(1)) * two_m32;
  const Real theta = Real(6.283185307179586) * (Real(wb) * two_m32);
  const Real r = sqrt(Real(-2) * log(u1));
  return r * (sine ? sin(theta) : cos(theta));
}

template <typename Real>
LC_HOST_DEVICE Real philox_normal(uint64_t e, uint64_t stream, uint64_t seed) {
  const Philox4x32 b = philox4x32_10(e >> 2, stream, seed);
  const uint32_t lane = static_cast<uint32_t>(e & 3u);
  const uint32_t pair = lane & 2u;
  return normal_from_pair<Real>(b.v[pair], b.v[pair + 1], (lane & 1u) != 0);
}

// Rademacher sign number e of a stream: bit e % 32 of word e / 32 (1 -> -1, 0 -> +1).
LC_HOST_DEVICE int philox_sign(uint64_t e, uint64_t stream, uint64_t seed) {
  const uint32_t w = philox_word(e >> 5, stream, seed);
  return ((w >> (e & 31u)) & 1u) ? -1 : 1;
}

}  // namespace linalg_core
