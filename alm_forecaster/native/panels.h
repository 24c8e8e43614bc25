// Packed weights and the register-blocked products over them: a cell's recurrent gates
// (h @ W_hh^T each step) and every linear layer (x @ W^T + b). No torch dependency.
//
// A weight W (N, K) is packed once (the caller keeps the copy) into panels of kPanel columns
// of W^T. A product then reads the weights front to back, kPanelVecs vectors per k, and
// broadcasts the input: no horizontal sums, and every (row, column) result is one chain of
// multiply-adds over k in increasing order, then + the addend (xg or the bias): the same
// arithmetic whatever the blocking, and so whatever the batch or the thread split, bit for bit.
//
//   F32Panels    float32, exact: P[p][k][c] = W[p * kPanel + c][k]
//   Bf16Panels   opt-in reduced precision (AVX512-BF16 builds only): weights and inputs
//                rounded to bfloat16, products summed in float32 by pairs of k (vdpbf16ps):
//                P[p][k / 2][c][k % 2]; half the weight bytes, twice the multiply-adds per
//                instruction. Its error against float32 is measured, not bounded here.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#if defined(__AVX512BF16__)
#include <immintrin.h>
#endif

#include "simd.h"

namespace alm_native {

constexpr int64_t kPanel = 64;
constexpr int kPanelVecs = kPanel / kLanes;
constexpr int kMaxSamples = 6;  // 6 x 4 accumulators + 4 weight vectors + 1 broadcast <= 32 registers

inline int64_t panel_count(int64_t N) { return (N + kPanel - 1) / kPanel; }

// gates[s][c] = xg[s][c] + acc[s][c] for the first `cols` columns of a panel (a partial last
// panel goes through a zero-padded copy: the same additions either way).
template <int MS>
inline void store_panel(const vf (&acc)[MS][kPanelVecs], const float* xg, int64_t ldxg, float* gates, int64_t ldg,
                        int64_t cols) {
  for (int s = 0; s < MS; ++s) {
    const float* x = xg + s * ldxg;
    float* g = gates + s * ldg;
    if (cols == kPanel) {
      for (int v = 0; v < kPanelVecs; ++v) store(g + v * kLanes, load(x + v * kLanes) + acc[s][v]);
    } else {
      float buf[kPanel] = {};
      std::memcpy(buf, x, cols * sizeof(float));
      for (int v = 0; v < kPanelVecs; ++v) store(buf + v * kLanes, load(buf + v * kLanes) + acc[s][v]);
      std::memcpy(g, buf, cols * sizeof(float));
    }
  }
}

// ---------------------------------------------------------------------------------------
// float32
// ---------------------------------------------------------------------------------------

struct F32Panels {
  const float* P;

  static int64_t depth(int64_t K) { return K; }  // rows of a panel
  static void pack(const float* W, int64_t N, int64_t K, float* P) {
    for (int64_t p = 0; p < panel_count(N); ++p)
      for (int64_t k = 0; k < K; ++k)
        for (int64_t c = 0; c < kPanel; ++c) {
          const int64_t n = p * kPanel + c;
          P[(p * K + k) * kPanel + c] = n < N ? W[n * K + k] : 0.0f;
        }
  }

  // The input as the products read it (float32: as it is).
  struct Input {
    const float* h;
    int64_t ldh;
  };
  Input prepare(const float* h, int64_t ldh, int64_t, int64_t) const { return {h, ldh}; }

  template <int MS>
  static void block(const Input& in, int64_t s0, const float* P, int64_t K, const float* xg, int64_t ldxg,
                    float* gates, int64_t ldg, int64_t cols) {
    const float* h = in.h + s0 * in.ldh;
    vf acc[MS][kPanelVecs];
    for (int s = 0; s < MS; ++s)
      for (int v = 0; v < kPanelVecs; ++v) acc[s][v] = vf{};
    for (int64_t k = 0; k < K; ++k) {
      vf w[kPanelVecs];
      for (int v = 0; v < kPanelVecs; ++v) w[v] = load(P + k * kPanel + v * kLanes);
      for (int s = 0; s < MS; ++s) {
        const vf hb = splat(h[s * in.ldh + k]);
        for (int v = 0; v < kPanelVecs; ++v) acc[s][v] += hb * w[v];
      }
    }
    store_panel<MS>(acc, xg + s0 * ldxg, ldxg, gates + s0 * ldg, ldg, cols);
  }

  const float* panel(int64_t p, int64_t K) const { return P + p * K * kPanel; }
};

// ---------------------------------------------------------------------------------------
// bfloat16 (opt-in)
// ---------------------------------------------------------------------------------------

// Round to nearest even (NaN stays NaN).
inline uint16_t to_bf16(float x) {
  uint32_t u;
  std::memcpy(&u, &x, sizeof(u));
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40u);
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}

#if defined(__AVX512BF16__)
constexpr bool kHasBf16 = true;
#else
constexpr bool kHasBf16 = false;
#endif

struct Bf16Panels {
  const uint16_t* P;

  static int64_t depth(int64_t K) { return (K + 1) / 2; }  // pairs of k
  static void pack(const float* W, int64_t N, int64_t K, uint16_t* P) {
    const int64_t pairs = depth(K);
    for (int64_t p = 0; p < panel_count(N); ++p)
      for (int64_t kp = 0; kp < pairs; ++kp)
        for (int64_t c = 0; c < kPanel; ++c)
          for (int64_t j = 0; j < 2; ++j) {
            const int64_t n = p * kPanel + c, k = 2 * kp + j;
            P[((p * pairs + kp) * kPanel + c) * 2 + j] = n < N && k < K ? to_bf16(W[n * K + k]) : 0;
          }
  }

  // The input rounded to bfloat16, rows padded to an even length: element pairs (h[2i],
  // h[2i+1]) are the 32-bit values each multiply-add broadcasts. One buffer per thread,
  // reused from call to call.
  struct Input {
    const uint16_t* h;
    int64_t ldh;
  };
  Input prepare(const float* h, int64_t ldh, int64_t S, int64_t K) const {
    thread_local std::vector<uint16_t> buffer;
    const int64_t width = 2 * depth(K);
    if (static_cast<int64_t>(buffer.size()) < S * width) buffer.resize(S * width);
    for (int64_t s = 0; s < S; ++s) {
      uint16_t* row = buffer.data() + s * width;
      for (int64_t k = 0; k < K; ++k) row[k] = to_bf16(h[s * ldh + k]);
      if (width > K) row[K] = 0;
    }
    return {buffer.data(), width};
  }

  template <int MS>
  static void block(const Input& in, int64_t s0, const uint16_t* P, int64_t K, const float* xg, int64_t ldxg,
                    float* gates, int64_t ldg, int64_t cols) {
#if defined(__AVX512BF16__)
    const int64_t pairs = depth(K);
    const uint16_t* h = in.h + s0 * in.ldh;
    vf acc[MS][kPanelVecs];
    for (int s = 0; s < MS; ++s)
      for (int v = 0; v < kPanelVecs; ++v) acc[s][v] = vf{};
    for (int64_t kp = 0; kp < pairs; ++kp) {
      __m512bh w[kPanelVecs];
      for (int v = 0; v < kPanelVecs; ++v)
        w[v] = (__m512bh)_mm512_loadu_si512(P + (kp * kPanel + v * kLanes) * 2);
      for (int s = 0; s < MS; ++s) {
        uint32_t pair;
        std::memcpy(&pair, h + s * in.ldh + 2 * kp, sizeof(pair));
        const __m512bh hb = (__m512bh)_mm512_set1_epi32(static_cast<int>(pair));
        for (int v = 0; v < kPanelVecs; ++v) acc[s][v] = (vf)_mm512_dpbf16_ps((__m512)acc[s][v], hb, w[v]);
      }
    }
    store_panel<MS>(acc, xg + s0 * ldxg, ldxg, gates + s0 * ldg, ldg, cols);
#else
    (void)in, (void)s0, (void)P, (void)K, (void)xg, (void)ldxg, (void)gates, (void)ldg, (void)cols;
    std::abort();  // recurrence.cpp refuses bf16 weights in a build without AVX512-BF16
#endif
  }

  const uint16_t* panel(int64_t p, int64_t K) const { return P + p * depth(K) * kPanel * 2; }
};

// ---------------------------------------------------------------------------------------
// The products
// ---------------------------------------------------------------------------------------

// Rows [s, S) of one panel's product, up to kMaxSamples at a time, then the rest with fewer
// (the same per-row arithmetic).
template <class Panels, int MS, class Weight>
inline void panel_rows(const typename Panels::Input& in, int64_t s, int64_t S, const Weight* P, int64_t K,
                       const float* xg, int64_t ldxg, float* gates, int64_t ldg, int64_t cols) {
  for (; s + MS <= S; s += MS) Panels::template block<MS>(in, s, P, K, xg, ldxg, gates, ldg, cols);
  if constexpr (MS > 1) {
    if (s < S) panel_rows<Panels, MS - 1>(in, s, S, P, K, xg, ldxg, gates, ldg, cols);
  }
}

// gates (S, n) = xg (S, n) + in (S, K) @ W[rows]^T for n consecutive rows of W starting at
// panel `first`. Rows of xg / gates strided.
template <class Panels>
inline void panel_gates(const Panels& W, const typename Panels::Input& in, int64_t S, int64_t first, int64_t n,
                        int64_t K, const float* xg, int64_t ldxg, float* gates, int64_t ldg) {
  for (int64_t c0 = 0; c0 < n; c0 += kPanel) {
    const int64_t cols = std::min(kPanel, n - c0);
    panel_rows<Panels, kMaxSamples>(in, 0, S, W.panel(first + c0 / kPanel, K), K, xg + c0, ldxg, gates + c0, ldg, cols);
  }
}

// out (M, N) = bias + x (M, K) @ W^T, rows of x strided by ldx, out contiguous: the input
// projections of every step of a sequence, one call per cell. Threads split the panels (each
// streams its share of W once; a panel stays in cache over all rows).
template <class Panels, class ParallelFor>
void packed_linear(const Panels& W, const float* x, int64_t ldx, int64_t M, int64_t N, int64_t K, const float* bias,
                   float* out, const ParallelFor& parallel_for) {
  parallel_for(0, panel_count(N), [&](int64_t p0, int64_t p1) {
    const auto in = W.prepare(x, ldx, M, K);
    for (int64_t p = p0; p < p1; ++p) {
      const int64_t c0 = p * kPanel;
      panel_gates(W, in, M, p, std::min(kPanel, N - c0), K, bias + c0, 0, out + c0, N);
    }
  });
}

}  // namespace alm_native
