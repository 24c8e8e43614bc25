// Compiled CPU kernel for the two xLSTM recurrences and the linear layers (see
// alm_forecaster/cells.py for the PyTorch reference versions and their equations; the design
// notes follow).
//
//   alm_forecaster::pack_weight(weight (N,K), bf16=False) -> packed (ceil(N/64), K, 64) float32
//                                                   or (ceil(N/64), ceil(K/2), 128) bfloat16
//   alm_forecaster::has_bf16() -> whether this build has the bfloat16 products
//   alm_forecaster::linear(x (..., K), weight (N,K), packed, bias (N)) -> (..., N)
//   alm_forecaster::slstm_sequence(x_gates (B,T,4H), weight_hh (4H,H), packed) -> (B,T,H)
//   alm_forecaster::mlstm_sequence(x_gates (B,T,3H), q, k, v (B,T,H), weight_hh (3H,H), packed) -> (B,T,H)
//
// float32, CPU (the packed weights may be bfloat16: opt-in, panels.h). The recurrences start
// from zero state. Design notes:
// * The recurrent product h @ W_hh.T is a hand-written register-blocked kernel over W_hh
//   packed once into panels of 64 columns of W_hh.T (the caller keeps the packed copy next
//   to the weight): the weights stream front to back, up to 6 samples share each weight
//   load, and every (sample, row) result is one FMA chain over k in the same order whatever
//   the blocking, so a sample's numbers do not depend on its batch mates (bitwise).
// * The mLSTM memory is kept unnormalised (U) together with its scale s: the next step is
//   U <- (f / s_prev) * U + (i * v) k^T, fused in one pass with max|U| and the read-out
//   q^T U; then s = 1 + max|U| / 10 and h = o * (q^T U) / s. Same numbers as normalising
//   the matrix each step, up to rounding.
// * Threads (at::parallel_for, so the library is built with -fopenmp): batch mode splits the
//   samples over the threads, one parallel region per call and no synchronisation; mLSTM
//   samples run in small groups whose memories fit in L2. For sLSTM batches smaller than 2 x
//   threads (batch 1 above all), cooperative mode splits the hidden units (W_hh rows) instead,
//   with one spin barrier per step. Every mode gives the same bits.
// * exp / tanh / sigmoid are vectorised (Cephes-style, ~1-2 ulp); built without -ffast-math.
// The kernels themselves are in kernels.h, panels.h and simd.h (no torch dependency).

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <utility>
#include <vector>

#include "kernels.h"

namespace {

void check_float_cpu(const at::Tensor& t, const char* op, const char* name) {
  TORCH_CHECK(t.device().is_cpu(), op, ": ", name, " must be a CPU tensor, got ", t.device());
  TORCH_CHECK(t.scalar_type() == at::kFloat, op, ": ", name, " must be float32, got ", t.scalar_type());
  TORCH_CHECK(t.layout() == at::kStrided, op, ": ", name, " must be a dense (strided) tensor");
}

// at::parallel_for with grain 1: one chunk per thread, the chunks of a region run concurrently.
struct ParallelFor {
  template <class Fn>
  void operator()(int64_t begin, int64_t end, const Fn& fn) const {
    at::parallel_for(begin, end, 1, fn);
  }
};

// Threads a parallel region started here would get (1 inside another region: no nesting).
int64_t threads() { return at::in_parallel_region() ? 1 : at::get_num_threads(); }

// Unit stride in the last dimension (what the kernels index with); other strides are free.
at::Tensor unit_last_stride(const at::Tensor& t) { return t.stride(-1) == 1 ? t : t.contiguous(); }

// ---------------------------------------------------------------------------------------
// Packed weights (panels.h): float32, or bfloat16 when asked for and the build has AVX512-BF16
// ---------------------------------------------------------------------------------------

bool has_bf16() { return alm_native::kHasBf16; }

// The shape pack_weight gives a weight (N, K): one rule for the packing and for the checks.
std::vector<int64_t> packed_shape(int64_t N, int64_t K, bool bf16) {
  using alm_native::kPanel;
  if (bf16) return {alm_native::panel_count(N), alm_native::Bf16Panels::depth(K), 2 * kPanel};
  return {alm_native::panel_count(N), K, kPanel};
}

at::Tensor pack_weight(const at::Tensor& weight_in, bool bf16) {
  constexpr const char* op = "alm_forecaster::pack_weight";
  check_float_cpu(weight_in, op, "weight");
  TORCH_CHECK(weight_in.dim() == 2, op, ": weight must be 2-D (N, K), got shape ", weight_in.sizes());
  TORCH_CHECK(!bf16 || alm_native::kHasBf16, op, ": this build has no bfloat16 kernel (a CPU with AVX512-BF16 "
              "and the native build are needed)");
  const at::Tensor weight = weight_in.contiguous();
  const int64_t N = weight.size(0), K = weight.size(1);
  if (bf16) {
    at::Tensor packed = at::empty(packed_shape(N, K, true), weight.options().dtype(at::kBFloat16));
    alm_native::Bf16Panels::pack(weight.data_ptr<float>(), N, K,
                                 reinterpret_cast<uint16_t*>(packed.data_ptr<at::BFloat16>()));
    return packed;
  }
  at::Tensor packed = at::empty(packed_shape(N, K, false), weight.options());
  alm_native::F32Panels::pack(weight.data_ptr<float>(), N, K, packed.data_ptr<float>());
  return packed;
}

void check_packed(const at::Tensor& packed, int64_t N, int64_t K, const char* op, const char* of) {
  TORCH_CHECK(packed.device().is_cpu() && packed.layout() == at::kStrided, op,
              ": weight_packed must be a dense CPU tensor");
  const bool bf16 = packed.scalar_type() == at::kBFloat16;
  TORCH_CHECK(bf16 || packed.scalar_type() == at::kFloat, op, ": weight_packed must be float32 or bfloat16, got ",
              packed.scalar_type());
  TORCH_CHECK(packed.sizes() == at::IntArrayRef(packed_shape(N, K, bf16)) && packed.is_contiguous(),
              op, ": weight_packed must be alm_forecaster::pack_weight(", of, "), got shape ", packed.sizes());
  TORCH_CHECK(!bf16 || alm_native::kHasBf16, op, ": this build has no bfloat16 kernel");
}

// Run fn with the packed weight as the panels type its dtype names.
template <class Fn>
void with_panels(const at::Tensor& packed, const Fn& fn) {
  if (packed.scalar_type() == at::kBFloat16) {
    fn(alm_native::Bf16Panels{reinterpret_cast<const uint16_t*>(packed.data_ptr<at::BFloat16>())});
  } else {
    fn(alm_native::F32Panels{packed.data_ptr<float>()});
  }
}

at::Tensor linear(const at::Tensor& x_in, const at::Tensor& weight, const at::Tensor& packed, const at::Tensor& bias_in) {
  constexpr const char* op = "alm_forecaster::linear";
  check_float_cpu(x_in, op, "x");
  check_float_cpu(weight, op, "weight");
  check_float_cpu(bias_in, op, "bias");
  TORCH_CHECK(weight.dim() == 2, op, ": weight must be 2-D (N, K), got shape ", weight.sizes());
  const int64_t N = weight.size(0), K = weight.size(1);
  TORCH_CHECK(x_in.dim() >= 1 && x_in.size(-1) == K, op, ": x must have shape (..., K) with K = ", K, ", got ",
              x_in.sizes());
  TORCH_CHECK(bias_in.dim() == 1 && bias_in.size(0) == N, op, ": bias must have shape (N,) = (", N, ",), got ",
              bias_in.sizes());
  check_packed(packed, N, K, op, "weight");
  const at::Tensor x = x_in.contiguous(), bias = bias_in.contiguous();
  std::vector<int64_t> shape(x.sizes().begin(), x.sizes().end());
  shape.back() = N;
  at::Tensor out = at::empty(shape, x.options().memory_format(at::MemoryFormat::Contiguous));
  const int64_t M = K == 0 ? 0 : x.numel() / K;
  if (M == 0 || N == 0) return out;
  with_panels(packed, [&](const auto& W) {
    alm_native::packed_linear(W, x.data_ptr<float>(), K, M, N, K, bias.data_ptr<float>(), out.data_ptr<float>(),
                              ParallelFor{});
  });
  return out;
}

// H of weight_hh (chunks * H, H), with its packed copy checked against it.
int64_t hidden_size(const at::Tensor& weight_hh, const at::Tensor& packed, int64_t chunks, const char* op) {
  const char* shape = chunks == 4 ? "(4H, H)" : "(3H, H)";
  check_float_cpu(weight_hh, op, "weight_hh");
  TORCH_CHECK(weight_hh.dim() == 2, op, ": weight_hh must be 2-D ", shape, ", got shape ", weight_hh.sizes());
  const int64_t H = weight_hh.size(1);
  TORCH_CHECK(H > 0 && weight_hh.size(0) == chunks * H, op, ": weight_hh must have shape ", shape, ", got ",
              weight_hh.sizes());
  check_packed(packed, chunks * H, H, op, "weight_hh");
  return H;
}

// ---------------------------------------------------------------------------------------
// sLSTM
// ---------------------------------------------------------------------------------------

at::Tensor slstm_sequence(const at::Tensor& x_gates_in, const at::Tensor& weight_hh, const at::Tensor& packed) {
  constexpr const char* op = "alm_forecaster::slstm_sequence";
  check_float_cpu(x_gates_in, op, "x_gates");
  const int64_t H = hidden_size(weight_hh, packed, 4, op);
  TORCH_CHECK(x_gates_in.dim() == 3 && x_gates_in.size(2) == 4 * H, op,
              ": x_gates must have shape (B, T, 4H) with 4H = ", 4 * H, ", got ", x_gates_in.sizes());

  const at::Tensor x_gates = unit_last_stride(x_gates_in);
  const int64_t B = x_gates.size(0), T = x_gates.size(1);
  at::Tensor out = at::empty({B, T, H}, x_gates.options().memory_format(at::MemoryFormat::Contiguous));
  if (B == 0 || T == 0) return out;

  const float* xg = x_gates.data_ptr<float>();
  const int64_t xs_b = x_gates.stride(0), xs_t = x_gates.stride(1);
  float* o = out.data_ptr<float>();
  with_panels(packed, [&](const auto& W) {
    alm_native::slstm_forward(xg, xs_b, xs_t, W, B, H, T, o, threads(), ParallelFor{});
  });
  return out;
}

// ---------------------------------------------------------------------------------------
// mLSTM
// ---------------------------------------------------------------------------------------

at::Tensor mlstm_sequence(const at::Tensor& x_gates_in, const at::Tensor& q_in, const at::Tensor& k_in,
                          const at::Tensor& v_in, const at::Tensor& weight_hh, const at::Tensor& packed) {
  constexpr const char* op = "alm_forecaster::mlstm_sequence";
  check_float_cpu(x_gates_in, op, "x_gates");
  check_float_cpu(q_in, op, "q");
  check_float_cpu(k_in, op, "k");
  check_float_cpu(v_in, op, "v");
  const int64_t H = hidden_size(weight_hh, packed, 3, op);
  TORCH_CHECK(x_gates_in.dim() == 3 && x_gates_in.size(2) == 3 * H, op,
              ": x_gates must have shape (B, T, 3H) with 3H = ", 3 * H, ", got ", x_gates_in.sizes());
  const int64_t B = x_gates_in.size(0), T = x_gates_in.size(1);
  const std::pair<const at::Tensor*, const char*> qkv[] = {{&q_in, "q"}, {&k_in, "k"}, {&v_in, "v"}};
  for (const auto& [t, name] : qkv) {
    TORCH_CHECK(t->dim() == 3 && t->size(0) == B && t->size(1) == T && t->size(2) == H, op, ": ", name,
                " must have shape (B, T, H) = (", B, ", ", T, ", ", H, "), got ", t->sizes());
  }

  const at::Tensor x_gates = unit_last_stride(x_gates_in);
  const at::Tensor q = unit_last_stride(q_in), k = unit_last_stride(k_in), v = unit_last_stride(v_in);
  at::Tensor out = at::empty({B, T, H}, x_gates.options().memory_format(at::MemoryFormat::Contiguous));
  if (B == 0 || T == 0) return out;

  const float* xg = x_gates.data_ptr<float>();
  const float *qp = q.data_ptr<float>(), *kp = k.data_ptr<float>(), *vp = v.data_ptr<float>();
  const int64_t xs_b = x_gates.stride(0), xs_t = x_gates.stride(1);
  const int64_t qs_b = q.stride(0), qs_t = q.stride(1);
  const int64_t ks_b = k.stride(0), ks_t = k.stride(1);
  const int64_t vs_b = v.stride(0), vs_t = v.stride(1);
  float* o = out.data_ptr<float>();
  with_panels(packed, [&](const auto& W) {
    alm_native::mlstm_forward(xg, xs_b, xs_t, qp, qs_b, qs_t, kp, ks_b, ks_t, vp, vs_b, vs_t, W, B, H, T, o,
                              threads(), ParallelFor{});
  });
  return out;
}

}  // namespace

TORCH_LIBRARY(alm_forecaster, m) {
  m.def("pack_weight(Tensor weight, bool bf16=False) -> Tensor");
  m.def("has_bf16() -> bool", &has_bf16);
  m.def("linear(Tensor x, Tensor weight, Tensor weight_packed, Tensor bias) -> Tensor");
  m.def("slstm_sequence(Tensor x_gates, Tensor weight_hh, Tensor weight_packed) -> Tensor");
  m.def("mlstm_sequence(Tensor x_gates, Tensor q, Tensor k, Tensor v, Tensor weight_hh, Tensor weight_packed) -> Tensor");
}

TORCH_LIBRARY_IMPL(alm_forecaster, CPU, m) {
  m.impl("pack_weight", &pack_weight);
  m.impl("linear", &linear);
  m.impl("slstm_sequence", &slstm_sequence);
  m.impl("mlstm_sequence", &mlstm_sequence);
}
