// 16-lane float vectors (GCC/Clang vector extensions: AVX-512 registers with -march=native on
// this machine, four SSE registers each in the portable build) and the vectorised exp / tanh /
// sigmoid of the cells. No torch dependency.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>

namespace alm_native {

constexpr int64_t kLanes = 16;
typedef float vf __attribute__((vector_size(kLanes * sizeof(float))));

inline vf load(const float* p) {
  vf v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}

inline void store(float* p, vf v) { std::memcpy(p, &v, sizeof(v)); }

inline vf splat(float x) { return vf{} + x; }

typedef int32_t vi __attribute__((vector_size(kLanes * sizeof(int32_t))));

inline vf vabs(vf v) { return (vf)((vi)v & 0x7fffffff); }  // same-size vector casts reinterpret the bits

inline vf vmax(vf a, vf b) { return a > b ? a : b; }

inline vf vclamp(vf x, float lo, float hi) {
  x = x < lo ? splat(lo) : x;
  return x > hi ? splat(hi) : x;
}

// exp, 16 lanes at a time (Cephes expf: range reduction by ln 2 in two parts, degree-6
// polynomial; ~1 ulp). Inputs are clamped to [-87, 88], where the result is a normal float;
// every caller's argument is either clamped to [-15, 10] or only enters 1 / (1 + exp).
inline vf vexp(vf x) {
  x = vclamp(x, -87.0f, 88.0f);
  const vf magic = splat(12582912.0f);  // 1.5 * 2^23: adding it rounds to the nearest integer
  const vf shifted = x * 1.44269504088896341f + magic;
  const vf n = shifted - magic;
  const vi ni = (vi)shifted - (vi)magic;
  vf r = x - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  const vf r2 = r * r;
  vf p = splat(1.9875691500e-4f);
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r2 + r + 1.0f;
  return p * (vf)((ni + 127) << 23);
}

// tanh (Cephes tanhf): odd polynomial below |x| = 0.625, 1 - 2 / (exp(2|x|) + 1) above.
inline vf vtanh(vf x) {
  const vf ax = vabs(x);
  const vf s = x * x;
  vf p = splat(-5.70498872745e-3f);
  p = p * s + 2.06390887954e-2f;
  p = p * s - 5.37397155531e-2f;
  p = p * s + 1.33314422036e-1f;
  p = p * s - 3.33332819422e-1f;
  const vf small = p * s * x + x;
  const vf big_abs = 1.0f - 2.0f / (vexp(ax + ax) + 1.0f);
  const vf big = (vf)(((vi)big_abs) | ((vi)x & (int32_t)0x80000000));  // copy the sign of x
  return ax < 0.625f ? small : big;
}

inline vf vsigmoid(vf x) { return 1.0f / (1.0f + vexp(-x)); }


// Apply fn(const vf* in, vf* out) lane-block by lane-block over n elements of NIN input and
// NOUT output arrays. The last partial block goes through zero-padded copies, so every
// element gets exactly the same arithmetic wherever it sits.
template <int NIN, int NOUT, class Fn>
inline void for_lanes(int64_t n, const float* const (&in)[NIN], float* const (&out)[NOUT], Fn fn) {
  vf vin[NIN], vout[NOUT];
  int64_t j = 0;
  for (; j + kLanes <= n; j += kLanes) {
    for (int a = 0; a < NIN; ++a) vin[a] = load(in[a] + j);
    fn(vin, vout);
    for (int a = 0; a < NOUT; ++a) store(out[a] + j, vout[a]);
  }
  if (j < n) {
    const int64_t rest = n - j;
    float buf[kLanes];
    for (int a = 0; a < NIN; ++a) {
      std::fill(buf, buf + kLanes, 0.0f);
      std::memcpy(buf, in[a] + j, rest * sizeof(float));
      vin[a] = load(buf);
    }
    fn(vin, vout);
    for (int a = 0; a < NOUT; ++a) {
      store(buf, vout[a]);
      std::memcpy(out[a] + j, buf, rest * sizeof(float));
    }
  }
}

}  // namespace alm_native
