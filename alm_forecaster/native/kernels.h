// Pure C++ kernels of the xLSTM recurrences (no torch dependency, so they can be tested and
// timed standalone); recurrence.cpp wraps them as torch operators. See that file for the
// design notes. Everything is float32 (the weights optionally bf16, panels.h), row-major,
// with explicit strides.
#pragma once

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <new>
#include <thread>

#include "panels.h"
#include "simd.h"

namespace alm_native {

constexpr float kSlstmClamp = 10.0f;
constexpr float kMlstmLow = -15.0f;
constexpr float kMlstmHigh = 8.0f;
constexpr float kMemoryScale = 10.0f;

// Copy rows of x (S rows, strided) into a dense (S, N) buffer: the t = 0 gates (h = 0).
inline void copy_rows(const float* x, int64_t ldx, int64_t S, int64_t N, float* out, int64_t ldo) {
  for (int64_t s = 0; s < S; ++s) std::memcpy(out + s * ldo, x + s * ldx, N * sizeof(float));
}

// Zeroed-or-not float buffer aligned to a cache line (workers of a cooperative run write
// neighbouring slices of the same buffers).
class Buffer {
 public:
  explicit Buffer(int64_t n, bool zero = false) {
    const size_t bytes = (static_cast<size_t>(std::max<int64_t>(n, 1)) * sizeof(float) + 63) / 64 * 64;
    ptr_ = static_cast<float*>(std::aligned_alloc(64, bytes));
    if (ptr_ == nullptr) throw std::bad_alloc();
    if (zero) std::memset(ptr_, 0, bytes);
  }
  ~Buffer() { std::free(ptr_); }
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  float* data() const { return ptr_; }
  float& operator[](int64_t i) const { return ptr_[i]; }

 private:
  float* ptr_;
};

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

// Barrier of the workers of one cooperative run (several threads sharing one batch, each
// owning a slice of the hidden units). A worker owns one or more consecutive "parts" and
// arrives with that count as its weight; the barrier opens when all parts have arrived, so
// it works however the thread pool hands out the parts (one worker with all of them: no wait).
class Team {
 public:
  explicit Team(int64_t parts) : parts_(parts) {}

  void sync(int64_t weight) {
    if (weight >= parts_) return;
    const int64_t gen = gen_.load(std::memory_order_acquire);
    if (count_.fetch_add(weight, std::memory_order_acq_rel) + weight == parts_) {
      count_.store(0, std::memory_order_relaxed);
      gen_.store(gen + 1, std::memory_order_release);
      return;
    }
    for (int spins = 0; gen_.load(std::memory_order_acquire) == gen; ++spins) {
      if (spins < 2000) {
        cpu_relax();
      } else {
        std::this_thread::yield();  // the other worker may be descheduled (busy machine)
      }
    }
  }

 private:
  const int64_t parts_;
  alignas(64) std::atomic<int64_t> count_{0};
  alignas(64) std::atomic<int64_t> gen_{0};
};

// A run's share of the work: hidden units [u0, u1) (for the mLSTM also memory columns
// [u0, u1)), synchronised through `team` (nullptr when the run owns all units).
struct Slice {
  int64_t u0, u1;
  Team* team;
  int64_t weight;
  void sync() const {
    if (team != nullptr) team->sync(weight);
  }
};

// Rows [u0, u1) of each of the `chunks` gate chunks: gates = xg (+ h_prev @ W^T when t > 0).
// W: the packed weight (chunks * H rows). A run that owns all units does all rows at once
// (panels may then straddle chunks); cooperative slices start at panel boundaries (make_plan).
template <class Panels>
inline void slice_gates(const Slice& sl, int64_t chunks, const float* h_prev, int64_t ldh, int64_t S, const Panels& W,
                        int64_t H, const float* xg_t, int64_t ldxg, float* gates, int64_t ldg) {
  const bool whole = sl.u0 == 0 && sl.u1 == H;
  const int64_t pieces = whole ? 1 : chunks, n = whole ? chunks * H : sl.u1 - sl.u0;
  if (h_prev == nullptr) {
    for (int64_t c = 0; c < pieces; ++c) copy_rows(xg_t + c * H + sl.u0, ldxg, S, n, gates + c * H + sl.u0, ldg);
    return;
  }
  const auto in = W.prepare(h_prev, ldh, S, H);
  for (int64_t c = 0; c < pieces; ++c) {
    const int64_t row = c * H + sl.u0;
    panel_gates(W, in, S, row / kPanel, n, H, xg_t + row, ldxg, gates + row, ldg);
  }
}

// Columns [j0, j0 + NV * 16) of one sample's memory step, over all rows: the column block's
// read-out accumulators, running maxima and k stay in registers, each U element is loaded
// and stored once.
template <int NV>
inline float memory_columns(float* U, int64_t H, int64_t j0, const float* a, const float* b, const float* k,
                            const float* q, float* acc) {
  vf kv[NV], sum[NV], mx[NV];
  for (int v = 0; v < NV; ++v) {
    kv[v] = load(k + j0 + v * kLanes);
    sum[v] = vf{};
    mx[v] = vf{};
  }
  for (int64_t r = 0; r < H; ++r) {
    float* row = U + r * H + j0;
    const vf av = splat(a[r]), bv = splat(b[r]), qv = splat(q[r]);
    for (int v = 0; v < NV; ++v) {
      const vf u = av * load(row + v * kLanes) + bv * kv[v];
      store(row + v * kLanes, u);
      mx[v] = vmax(mx[v], vabs(u));
      sum[v] += qv * u;
    }
  }
  vf m = mx[0];
  for (int v = 0; v < NV; ++v) {
    store(acc + j0 + v * kLanes, sum[v]);
    m = vmax(m, mx[v]);
  }
  float out = 0.0f;
  for (int l = 0; l < kLanes; ++l) out = std::max(out, m[l]);
  return out;
}

// Columns [j_begin, j_end) of one sample's memory step (j_begin a multiple of 16, so a column
// always takes the same code path). U (H, H) row-major is the unnormalised memory, a[r] =
// f[r] / s_prev, b[r] = i[r] * v[r]: U[r, j] <- a[r] U[r, j] + b[r] k[j]. Returns max |U| over
// those columns and sets acc[j] = sum_r q[r] U[r, j] (rows in order, one FMA chain per column).
inline float memory_step(float* U, int64_t H, int64_t j_begin, int64_t j_end, const float* a, const float* b,
                         const float* k, const float* q, float* acc) {
  float m = 0.0f;
  int64_t j = j_begin;
  for (; j + 8 * kLanes <= j_end; j += 8 * kLanes) m = std::max(m, memory_columns<8>(U, H, j, a, b, k, q, acc));
  for (; j + kLanes <= j_end; j += kLanes) m = std::max(m, memory_columns<1>(U, H, j, a, b, k, q, acc));
  for (; j < j_end; ++j) {
    float sum = 0.0f;
    for (int64_t r = 0; r < H; ++r) {
      const float u = a[r] * U[r * H + j] + b[r] * k[j];
      U[r * H + j] = u;
      m = std::max(m, std::fabs(u));
      sum += q[r] * u;
    }
    acc[j] = sum;
  }
  return m;
}

// mLSTM samples per group in batch mode: their memories (group x H x H floats) should stay
// in L2 next to the recurrent weights, and the group shares each weight read.
inline int64_t mlstm_group_size(int64_t H) {
  const int64_t bytes = H * H * static_cast<int64_t>(sizeof(float));
  const int64_t budget = 3 << 18;  // 768 KB: 3 memories at H=256 (measured best of 1-8 with a 1 MB L2)
  return std::max<int64_t>(1, std::min<int64_t>(8, budget / std::max<int64_t>(bytes, 1)));
}

// sLSTM over S consecutive samples (pointers already at the first one), from zero state.
// xg: x_gates, element (s, t, n) at xg[s * xs_b + t * xs_t + n]; W: W_hh (4H, H) packed; o:
// output, element (s, t, j) at o[s * T * H + t * H + j]. gates (S, 4H) and cell (S, H, zeroed)
// are scratch, shared by the workers of a cooperative run; this call does units [u0, u1).
template <class Panels>
inline void slstm_run(const float* xg, int64_t xs_b, int64_t xs_t, const Panels& W, int64_t H, int64_t T, float* o,
                      int64_t S, float* gates, float* cell, const Slice& sl) {
  const int64_t G = 4 * H, os_b = T * H, u0 = sl.u0, n = sl.u1 - sl.u0;
  for (int64_t t = 0; t < T; ++t) {
    const float* h_prev = t == 0 ? nullptr : o + (t - 1) * H;
    slice_gates(sl, 4, h_prev, os_b, S, W, H, xg + t * xs_t, xs_b, gates, G);
    for (int64_t s = 0; s < S; ++s) {
      const float* g = gates + s * G + u0;
      float* c = cell + s * H + u0;
      float* h = o + s * os_b + t * H + u0;
      const float* in[5] = {g, g + H, g + 2 * H, g + 3 * H, c};
      float* const res[2] = {c, h};
      for_lanes<5, 2>(n, in, res, [](const vf* v, vf* r) {
        const vf ig = vexp(vclamp(v[0], -kSlstmClamp, kSlstmClamp));
        const vf fg = vexp(vclamp(v[1], -kSlstmClamp, kSlstmClamp));
        const vf cj = fg * v[4] + ig * vtanh(v[2]);
        r[0] = cj;
        r[1] = vsigmoid(v[3]) * vtanh(cj);
      });
    }
    sl.sync();  // h[:, t] complete before anyone reads it
  }
}

// Scratch of an mLSTM run over S samples (shared by the workers of a cooperative run).
struct MlstmScratch {
  Buffer memory, gates, a, b, acc, part_max;
  MlstmScratch(int64_t S, int64_t H, int64_t parts)
      : memory(S * H * H, true), gates(S * 3 * H), a(S * H), b(S * H), acc(S * H), part_max(parts * S, true) {}
};

// mLSTM over S consecutive samples (pointers already at the first one), from zero state.
// q, k, v: element (s, t, j) at p[s * s_b + t * s_t + j]; W: W_hh (3H, H) packed; o as for the
// sLSTM. This call does gate units and memory columns [u0, u1); `part` is its first part
// (its slot in scratch.part_max), `parts` the number of parts of the run.
template <class Panels>
inline void mlstm_run(const float* xg, int64_t xs_b, int64_t xs_t, const float* qp, int64_t qs_b, int64_t qs_t,
                      const float* kp, int64_t ks_b, int64_t ks_t, const float* vp, int64_t vs_b, int64_t vs_t,
                      const Panels& W, int64_t H, int64_t T, float* o, int64_t S, MlstmScratch& sc, const Slice& sl,
                      int64_t part, int64_t parts) {
  const int64_t G = 3 * H, os_b = T * H, u0 = sl.u0, u1 = sl.u1, n = u1 - u0;
  Buffer scale_buf(S);  // every worker keeps the same copy
  float* scale = scale_buf.data();
  std::fill(scale, scale + S, 1.0f);
  float* gates = sc.gates.data();
  for (int64_t t = 0; t < T; ++t) {
    // Phase 1: own gate rows; a = f / s_prev and b = i * v for own units.
    const float* h_prev = t == 0 ? nullptr : o + (t - 1) * H;
    slice_gates(sl, 3, h_prev, os_b, S, W, H, xg + t * xs_t, xs_b, gates, G);
    for (int64_t s = 0; s < S; ++s) {
      const float* gs = gates + s * G + u0;
      const float s_prev = scale[s];
      const float* in[3] = {gs, gs + H, vp + s * vs_b + t * vs_t + u0};
      float* const res[2] = {sc.a.data() + s * H + u0, sc.b.data() + s * H + u0};
      for_lanes<3, 2>(n, in, res, [s_prev](const vf* x, vf* r) {
        r[0] = vexp(vclamp(x[1], kMlstmLow, kMlstmHigh)) / s_prev;  // f / s_prev
        r[1] = vexp(vclamp(x[0], kMlstmLow, kMlstmHigh)) * x[2];    // i * v
      });
    }
    sl.sync();
    // Phase 2: own memory columns (all rows), their read-out and max |U|.
    for (int64_t s = 0; s < S; ++s) {
      const float m = memory_step(sc.memory.data() + s * H * H, H, u0, u1, sc.a.data() + s * H, sc.b.data() + s * H,
                                  kp + s * ks_b + t * ks_t, qp + s * qs_b + t * qs_t, sc.acc.data() + s * H);
      sc.part_max[part * S + s] = m;
      for (int64_t p = part + 1; p < part + sl.weight && p < parts; ++p) sc.part_max[p * S + s] = 0.0f;
    }
    sl.sync();
    // Phase 3: per-sample scale from all parts' maxima; h for own units.
    for (int64_t s = 0; s < S; ++s) {
      float m = 0.0f;
      for (int64_t p = 0; p < parts; ++p) m = std::max(m, sc.part_max[p * S + s]);
      const float sv = 1.0f + m / kMemoryScale;
      scale[s] = sv;
      const float* in[2] = {gates + s * G + 2 * H + u0, sc.acc.data() + s * H + u0};
      float* const res[1] = {o + s * os_b + t * H + u0};
      for_lanes<2, 1>(n, in, res, [sv](const vf* x, vf* r) { r[0] = vsigmoid(x[0]) * (x[1] / sv); });
    }
    sl.sync();  // h[:, t] complete (and part_max read) before the next step
  }
}

// How a call is spread over threads. parts == 1: batch mode, the samples are split over the
// threads and each runs alone (no synchronisation). parts >= 2: cooperative mode, for batches
// too small to keep the threads busy (batch 1 above all): every worker runs the whole batch
// for its slice of `unit` hidden units (a slice of W_hh rows, so each core streams only its
// share of the weights from its own cache), with barriers between the phases of a step.
struct Plan {
  int64_t parts, unit;
};

inline Plan make_plan(int64_t B, int64_t H, int64_t threads) {
  // Slices start at panel boundaries; the barriers cost more than they save below one panel each.
  if (threads < 2 || B >= 2 * threads || H % kPanel != 0) return {1, H};
  const int64_t parts = std::min(threads, H / kPanel);
  if (parts < 2) return {1, H};
  const int64_t unit = ((H + parts - 1) / parts + kPanel - 1) / kPanel * kPanel;
  const int64_t used = (H + unit - 1) / unit;
  return used < 2 ? Plan{1, H} : Plan{used, unit};
}

// Whole sLSTM call. parallel_for(begin, end, fn) must run fn on disjoint consecutive chunks
// covering [begin, end) (concurrently when it can: cooperative mode needs the chunks of
// different threads to run at the same time, which at::parallel_for guarantees).
template <class Panels, class ParallelFor>
void slstm_forward(const float* xg, int64_t xs_b, int64_t xs_t, const Panels& W, int64_t B, int64_t H, int64_t T,
                   float* o, int64_t threads, const ParallelFor& parallel_for) {
  const int64_t G = 4 * H, os_b = T * H;
  const Plan plan = make_plan(B, H, threads);
  if (plan.parts == 1) {
    parallel_for(0, B, [&](int64_t b0, int64_t b1) {
      const int64_t S = b1 - b0;
      Buffer gates(S * G), cell(S * H, true);
      slstm_run(xg + b0 * xs_b, xs_b, xs_t, W, H, T, o + b0 * os_b, S, gates.data(), cell.data(),
                Slice{0, H, nullptr, 1});
    });
    return;
  }
  Buffer gates(B * G), cell(B * H, true);
  Team team(plan.parts);
  parallel_for(0, plan.parts, [&](int64_t p0, int64_t p1) {
    const Slice sl{p0 * plan.unit, std::min(H, p1 * plan.unit), &team, p1 - p0};
    slstm_run(xg, xs_b, xs_t, W, H, T, o, B, gates.data(), cell.data(), sl);
  });
}

// Whole mLSTM call; see slstm_forward. Always batch mode: mlstm_run can run cooperatively
// (gates by unit, memory by column), but that takes three barriers per step, which cost more
// than the halved weight reads save, even at batch 1; the sLSTM needs one barrier per step,
// and there cooperative mode pays off for small batches.
template <class Panels, class ParallelFor>
void mlstm_forward(const float* xg, int64_t xs_b, int64_t xs_t, const float* qp, int64_t qs_b, int64_t qs_t,
                   const float* kp, int64_t ks_b, int64_t ks_t, const float* vp, int64_t vs_b, int64_t vs_t,
                   const Panels& W, int64_t B, int64_t H, int64_t T, float* o, int64_t threads,
                   const ParallelFor& parallel_for) {
  const int64_t os_b = T * H;
  constexpr bool kCooperative = false;
  const Plan plan = kCooperative ? make_plan(B, H, threads) : Plan{1, H};
  if (plan.parts == 1) {
    const int64_t group = mlstm_group_size(H);
    parallel_for(0, B, [&](int64_t b0, int64_t b1) {
      const int64_t cap = std::min(group, b1 - b0);
      for (int64_t g0 = b0; g0 < b1; g0 += cap) {
        const int64_t S = std::min(cap, b1 - g0);
        MlstmScratch scratch(S, H, 1);
        mlstm_run(xg + g0 * xs_b, xs_b, xs_t, qp + g0 * qs_b, qs_b, qs_t, kp + g0 * ks_b, ks_b, ks_t, vp + g0 * vs_b,
                  vs_b, vs_t, W, H, T, o + g0 * os_b, S, scratch, Slice{0, H, nullptr, 1}, 0, 1);
      }
    });
    return;
  }
  MlstmScratch scratch(B, H, plan.parts);
  Team team(plan.parts);
  parallel_for(0, plan.parts, [&](int64_t p0, int64_t p1) {
    const Slice sl{p0 * plan.unit, std::min(H, p1 * plan.unit), &team, p1 - p0};
    mlstm_run(xg, xs_b, xs_t, qp, qs_b, qs_t, kp, ks_b, ks_t, vp, vs_b, vs_t, W, H, T, o, B, scratch, sl, p0,
              plan.parts);
  });
}

}  // namespace alm_native
