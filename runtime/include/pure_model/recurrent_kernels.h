// Kernels for the recurrent ops (RNN, GRU, LSTM). Included by kernels.h; header-only, C++17, no
// allocation.
//
// A recurrent layer spends its time in two matrix products: the input projection X * W^T,
// which does not depend on the state and so runs once for all time steps before the loop, and
// the recurrence h * R^T, a matrix-vector product per step (batch rows at a time). Both use
// weights packed into panels of kRecurrentPanel output rows, [ceil(M / 16)][K][16] (zero rows
// pad the last panel), so that the inner loop streams one panel contiguously and keeps a
// 16-wide accumulator per input row in registers. The generator packs constant weights at
// generation time; weights that are model inputs are packed into scratch at run time.
#ifndef RULES_PURE_MODEL_RUNTIME_RECURRENT_KERNELS_H_
#define RULES_PURE_MODEL_RUNTIME_RECURRENT_KERNELS_H_

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "pure_model/kernels.h"  // GemmVector, LoadVector, Tanh, Sigmoid

namespace pure_model {

// The recurrent ops' activation functions (the ONNX RNN/GRU/LSTM attribute `activations`).
enum class RnnActivation {
  kRelu, kTanh, kSigmoid, kAffine, kLeakyRelu, kThresholdedRelu, kScaledTanh, kHardSigmoid, kElu, kSoftsign,
  kSoftplus,
};

template <RnnActivation A>
inline float RnnActivate(float v, float alpha, float beta) {
  if constexpr (A == RnnActivation::kRelu) {
    return v > 0.f ? v : 0.f;
  } else if constexpr (A == RnnActivation::kTanh) {
    return Tanh(v);  // kernels.h's inline versions, not libm calls per element
  } else if constexpr (A == RnnActivation::kSigmoid) {
    return Sigmoid(v);
  } else if constexpr (A == RnnActivation::kAffine) {
    return alpha * v + beta;
  } else if constexpr (A == RnnActivation::kLeakyRelu) {
    return v >= 0.f ? v : alpha * v;
  } else if constexpr (A == RnnActivation::kThresholdedRelu) {
    return v > alpha ? v : 0.f;
  } else if constexpr (A == RnnActivation::kScaledTanh) {
    return alpha * Tanh(beta * v);
  } else if constexpr (A == RnnActivation::kHardSigmoid) {
    const float y = alpha * v + beta;
    return y < 0.f ? 0.f : (y > 1.f ? 1.f : y);
  } else if constexpr (A == RnnActivation::kElu) {
    return v >= 0.f ? v : alpha * (std::exp(v) - 1.f);
  } else if constexpr (A == RnnActivation::kSoftsign) {
    return v / (1.f + std::fabs(v));
  } else {
    // log(1 + e^v) without overflow for large v.
    return v > 0.f ? v + std::log1p(std::exp(-v)) : std::log1p(std::exp(v));
  }
}

constexpr int kRecurrentPanel = 16;
// A panel row is kRecurrentParts vectors of the target's width (GemmVector of kernels.h):
// four SSE, two AVX or NEON pairs, one AVX-512 register.
constexpr int kRecurrentParts = kRecurrentPanel / kGemmVectorFloats;
static_assert(kRecurrentParts * kGemmVectorFloats == kRecurrentPanel, "a panel is whole vectors");

// Accumulators: a single input row (the recurrence of a batch of one, the common case) keeps
// kRecurrentSplitK partial sums over interleaved k, so that consecutive multiply-adds do not wait
// on each other; several rows keep one sum each and share every load of the weights. Both stay
// within the registers the target has (16 on x86-64 without AVX-512, 32 otherwise).
#if defined(__AVX512F__) || defined(__aarch64__)
constexpr int kRecurrentSplitK = 4;
constexpr int kRecurrentRowBlock = 8;
#elif defined(__AVX__)
constexpr int kRecurrentSplitK = 4;
constexpr int kRecurrentRowBlock = 4;
#else
constexpr int kRecurrentSplitK = 2;
constexpr int kRecurrentRowBlock = 2;
#endif

// W [M][K] (row-major, as ONNX stores one direction's W or R) -> panels [ceil(M / 16)][K][16].
template <int M, int K>
inline void PackRecurrentWeights(const float* w, float* packed) {
  constexpr int kPanels = (M + kRecurrentPanel - 1) / kRecurrentPanel;
  for (int panel = 0; panel < kPanels; ++panel) {
    float* dst = packed + static_cast<std::size_t>(panel) * K * kRecurrentPanel;
    for (int k = 0; k < K; ++k) {
      for (int i = 0; i < kRecurrentPanel; ++i) {
        const int m = panel * kRecurrentPanel + i;
        dst[k * kRecurrentPanel + i] = m < M ? w[static_cast<std::size_t>(m) * K + k] : 0.f;
      }
    }
  }
}

// One panel of 16 outputs for kRows rows of x (row stride K): out[r][i] = sum over k of
// x[r][k] * panel[k][i].
template <int K, int kRows>
inline void RecurrentPanelRows(const float* x, const float* panel, float (*out)[kRecurrentPanel]) {
  if constexpr (kRows == 1) {
    GemmVector sums[kRecurrentSplitK][kRecurrentParts] = {};
    constexpr int kWhole = K - K % kRecurrentSplitK;
    for (int k = 0; k < kWhole; k += kRecurrentSplitK) {
#pragma GCC unroll 4
      for (int s = 0; s < kRecurrentSplitK; ++s) {
#pragma GCC unroll 4
        for (int v = 0; v < kRecurrentParts; ++v) {
          GemmVector w;
          LoadVector(panel + (k + s) * kRecurrentPanel + v * kGemmVectorFloats, &w);
          sums[s][v] += x[k + s] * w;
        }
      }
    }
    if constexpr (kWhole < K) {
      for (int k = kWhole; k < K; ++k) {
#pragma GCC unroll 4
        for (int v = 0; v < kRecurrentParts; ++v) {
          GemmVector w;
          LoadVector(panel + k * kRecurrentPanel + v * kGemmVectorFloats, &w);
          sums[0][v] += x[k] * w;
        }
      }
    }
#pragma GCC unroll 4
    for (int s = 1; s < kRecurrentSplitK; ++s) {
#pragma GCC unroll 4
      for (int v = 0; v < kRecurrentParts; ++v) sums[0][v] += sums[s][v];
    }
#pragma GCC unroll 4
    for (int v = 0; v < kRecurrentParts; ++v) std::memcpy(out[0] + v * kGemmVectorFloats, &sums[0][v], sizeof(GemmVector));
  } else {
    GemmVector sums[kRows][kRecurrentParts] = {};
    for (int k = 0; k < K; ++k) {
#pragma GCC unroll 4
      for (int v = 0; v < kRecurrentParts; ++v) {
        GemmVector w;
        LoadVector(panel + k * kRecurrentPanel + v * kGemmVectorFloats, &w);
#pragma GCC unroll 8
        for (int r = 0; r < kRows; ++r) sums[r][v] += x[static_cast<std::size_t>(r) * K + k] * w;
      }
    }
#pragma GCC unroll 8
    for (int r = 0; r < kRows; ++r) {
#pragma GCC unroll 4
      for (int v = 0; v < kRecurrentParts; ++v) std::memcpy(out[r] + v * kGemmVectorFloats, &sums[r][v], sizeof(GemmVector));
    }
  }
}

template <int M>
inline void StoreRecurrentPanel(const float* acc, const float* bias, int m0, float* row) {
  const int count = M - m0 < kRecurrentPanel ? M - m0 : kRecurrentPanel;
  for (int i = 0; i < count; ++i) row[m0 + i] = acc[i] + (bias != nullptr ? bias[m0 + i] : 0.f);
}

// y[r][m] = bias[m] + sum over k of x[r][k] * W[m][k], for `rows` rows of x ([rows][K]) into y
// ([rows][M]); W packed by PackRecurrentWeights, bias nullptr when absent.
template <int K, int M>
inline void RecurrentMatMul(const float* x, int rows, const float* packed, const float* bias, float* y) {
  constexpr int kPanels = (M + kRecurrentPanel - 1) / kRecurrentPanel;
  for (int panel = 0; panel < kPanels; ++panel) {
    const float* w = packed + static_cast<std::size_t>(panel) * K * kRecurrentPanel;
    const int m0 = panel * kRecurrentPanel;
    int r = 0;
    for (; r + kRecurrentRowBlock <= rows; r += kRecurrentRowBlock) {
      float acc[kRecurrentRowBlock][kRecurrentPanel];
      RecurrentPanelRows<K, kRecurrentRowBlock>(x + static_cast<std::size_t>(r) * K, w, acc);
      for (int i = 0; i < kRecurrentRowBlock; ++i) {
        StoreRecurrentPanel<M>(acc[i], bias, m0, y + static_cast<std::size_t>(r + i) * M);
      }
    }
    for (; r < rows; ++r) {
      float acc[1][kRecurrentPanel];
      RecurrentPanelRows<K, 1>(x + static_cast<std::size_t>(r) * K, w, acc);
      StoreRecurrentPanel<M>(acc[0], bias, m0, y + static_cast<std::size_t>(r) * M);
    }
  }
}

// B [2 * kGH] (Wb then Rb) -> the bias added to the input projection (Wb + Rb), and for GRU with
// linear_before_reset the h gate's Rb apart (bias_rh [kHidden]), which r multiplies.
template <int kGH, int kHidden, bool kLinearBeforeReset>
inline void FoldRecurrentBias(const float* b, float* bias_x, float* bias_rh) {
  constexpr int kFolded = kLinearBeforeReset ? kGH - kHidden : kGH;
  for (int j = 0; j < kGH; ++j) bias_x[j] = b[j] + (j < kFolded ? b[kGH + j] : 0.f);
  if constexpr (kLinearBeforeReset) {
    for (int j = 0; j < kHidden; ++j) bias_rh[j] = b[kGH + kFolded + j];
  }
}

// Each batch row's state from initial_h / initial_c (zeros where absent) into h and c
// ([kBatch][kHidden]), and back out to Y_h / Y_c (nullptr when not wanted).
template <typename P>
inline void LoadRecurrentState(const float* h0, const float* c0, float* h, float* c) {
  constexpr int kH = P::kHidden;
  for (int n = 0; n < P::kBatch; ++n) {
    for (int j = 0; j < kH; ++j) {
      h[n * kH + j] = h0 != nullptr ? h0[n * P::kStateStrideN + j] : 0.f;
      c[n * kH + j] = c0 != nullptr ? c0[n * P::kStateStrideN + j] : 0.f;
    }
  }
}

template <typename P>
inline void StoreRecurrentState(const float* h, const float* c, float* y_h, float* y_c) {
  constexpr int kH = P::kHidden;
  for (int n = 0; n < P::kBatch; ++n) {
    if (y_h != nullptr) std::memcpy(y_h + n * P::kStateStrideN, h + n * kH, sizeof(float) * kH);
    if (y_c != nullptr) std::memcpy(y_c + n * P::kStateStrideN, c + n * kH, sizeof(float) * kH);
  }
}

// Each batch row's sequence length (sequence_lens, or every step when absent), within [0, kSeq].
template <typename P>
inline void SequenceLengths(const std::int32_t* seq_lens, int* lengths) {
  for (int n = 0; n < P::kBatch; ++n) {
    const int length = seq_lens != nullptr ? seq_lens[n] : P::kSeq;
    lengths[n] = length < 0 ? 0 : (length > P::kSeq ? P::kSeq : length);
  }
}

// The three recurrent ops, as the cell update of one step for one batch row.
enum class RecurrentCell { kRnn, kGru, kLstm };

// One direction of an RNN, GRU or LSTM layer over the whole sequence.
//
// P: kCell, kSeq, kBatch, kInput, kHidden, kGates (1, 3 or 4), kReverse; element strides of
//    X rows / gate rows for a step of t and of n (kRowStrideT, kRowStrideN, in rows), of Y
//    (kYStrideT, kYStrideN) and of initial/final states (kStateStrideN); kClip (0 = none);
//    kLinearBeforeReset, kInputForget; activations kF, kG, kH with kFAlpha, kFBeta, ...
//
// x: [kSeq * kBatch][kInput] rows, in the layout's order. w_packed: W packed ([G*H][I]);
// r_packed: R packed, for GRU only its z and r rows ([2H][H]) with r_h_packed the h rows;
// bias_x: [G*H], Wb + Rb (for GRU with linear_before_reset, without Rb of the h gate, which is
// bias_rh [H]); seq_lens [kBatch] or nullptr (steps at or past a row's length leave its state
// alone and write zeros to Y); h0, c0, peepholes ([3H], i o f) nullptr when absent; y, y_h,
// y_c nullptr when the output is not wanted; scratch: RecurrentScratchFloats<P>() floats.
template <typename P>
constexpr std::size_t RecurrentScratchFloats() {
  return static_cast<std::size_t>(P::kSeq) * P::kBatch * P::kGates * P::kHidden +
         static_cast<std::size_t>(P::kBatch) * (P::kGates * P::kHidden + 4 * P::kHidden);
}

template <typename P>
inline void RecurrentLayer(const float* x, const float* w_packed, const float* r_packed, const float* r_h_packed,
                           const float* bias_x, const float* bias_rh, const std::int32_t* seq_lens, const float* h0,
                           const float* c0, const float* peepholes, float* y, float* y_h, float* y_c,
                           float* scratch) {
  constexpr int kH = P::kHidden;
  constexpr int kGH = P::kGates * P::kHidden;
  // GRU multiplies R's rows for z and r by h, and its rows for h by r (.) h (or applies r after
  // them), so the two parts are separate products; RNN and LSTM take all of R at once.
  constexpr int kRecurrentRows = P::kCell == RecurrentCell::kGru ? 2 * kH : kGH;
  float* gates_x = scratch;
  float* gates_h = gates_x + static_cast<std::size_t>(P::kSeq) * P::kBatch * kGH;
  float* h = gates_h + static_cast<std::size_t>(P::kBatch) * kGH;
  float* c = h + P::kBatch * kH;
  float* reset_h = c + P::kBatch * kH;      // GRU: r (.) h
  float* candidate_h = reset_h + P::kBatch * kH;  // GRU: the h gate's recurrent term

  RecurrentMatMul<P::kInput, kGH>(x, P::kSeq * P::kBatch, w_packed, bias_x, gates_x);
  LoadRecurrentState<P>(h0, c0, h, c);
  int lengths[P::kBatch];
  SequenceLengths<P>(seq_lens, lengths);
  const auto clip = [](float v) {
    if constexpr (P::kClip > 0.f) {
      return v < -P::kClip ? -P::kClip : (v > P::kClip ? P::kClip : v);
    } else {
      return v;
    }
  };
  const auto f = [&clip](float v) { return RnnActivate<P::kF>(clip(v), P::kFAlpha, P::kFBeta); };
  const auto g = [&clip](float v) { return RnnActivate<P::kG>(clip(v), P::kGAlpha, P::kGBeta); };
  for (int step = 0; step < P::kSeq; ++step) {
    const int t = P::kReverse ? P::kSeq - 1 - step : step;
    const auto gates_x_row = [&](int n) {
      return gates_x + (static_cast<std::size_t>(t) * P::kRowStrideT + static_cast<std::size_t>(n) * P::kRowStrideN) * kGH;
    };
    // Rows past their sequence's length compute too (their results are dropped): the batch
    // stays one matrix product.
    RecurrentMatMul<kH, kRecurrentRows>(h, P::kBatch, r_packed, nullptr, gates_h);
    if constexpr (P::kCell == RecurrentCell::kGru) {
      if constexpr (P::kLinearBeforeReset) {
        RecurrentMatMul<kH, kH>(h, P::kBatch, r_h_packed, bias_rh, candidate_h);
        for (int n = 0; n < P::kBatch; ++n) {
          const float* gx = gates_x_row(n);
          const float* gh = gates_h + n * 2 * kH;
          for (int j = 0; j < kH; ++j) candidate_h[n * kH + j] *= f(gx[kH + j] + gh[kH + j]);
        }
      } else {
        for (int n = 0; n < P::kBatch; ++n) {
          const float* gx = gates_x_row(n);
          const float* gh = gates_h + n * 2 * kH;
          for (int j = 0; j < kH; ++j) reset_h[n * kH + j] = f(gx[kH + j] + gh[kH + j]) * h[n * kH + j];
        }
        RecurrentMatMul<kH, kH>(reset_h, P::kBatch, r_h_packed, nullptr, candidate_h);
      }
    }
    for (int n = 0; n < P::kBatch; ++n) {
      float* y_row = y != nullptr ? y + static_cast<std::size_t>(t) * P::kYStrideT + n * P::kYStrideN : nullptr;
      if (t >= lengths[n]) {
        if (y_row != nullptr) {
          for (int j = 0; j < kH; ++j) y_row[j] = 0.f;
        }
        continue;
      }
      const float* gx = gates_x_row(n);
      const float* gh = gates_h + n * kRecurrentRows;
      float* hn = h + n * kH;
      float* cn = c + n * kH;
      if constexpr (P::kCell == RecurrentCell::kRnn) {
        for (int j = 0; j < kH; ++j) hn[j] = f(gx[j] + gh[j]);
      } else if constexpr (P::kCell == RecurrentCell::kGru) {
        // Gates in ONNX order z, r, h.
        const float* rec = candidate_h + n * kH;
        for (int j = 0; j < kH; ++j) {
          const float z = f(gx[j] + gh[j]);
          hn[j] = (1.f - z) * g(gx[2 * kH + j] + rec[j]) + z * hn[j];
        }
      } else {
        // Gates in ONNX order i, o, f, c; peepholes i, o, f. Whether there are peepholes is
        // decided once, outside the loop over the elements.
        const auto update = [&](auto with_peepholes) {
          constexpr bool kPeepholes = decltype(with_peepholes)::value;
          for (int j = 0; j < kH; ++j) {
            const float pi = kPeepholes ? peepholes[j] : 0.f;
            const float po = kPeepholes ? peepholes[kH + j] : 0.f;
            const float pf = kPeepholes ? peepholes[2 * kH + j] : 0.f;
            const float c_prev = cn[j];
            const float i = f(gx[j] + gh[j] + pi * c_prev);
            const float forget = P::kInputForget ? 1.f - i : f(gx[2 * kH + j] + gh[2 * kH + j] + pf * c_prev);
            const float c_new = forget * c_prev + i * g(gx[3 * kH + j] + gh[3 * kH + j]);
            cn[j] = c_new;
            hn[j] = f(gx[kH + j] + gh[kH + j] + po * c_new) * RnnActivate<P::kH>(c_new, P::kHAlpha, P::kHBeta);
          }
        };
        if (peepholes != nullptr) {
          update(std::true_type{});
        } else {
          update(std::false_type{});
        }
      }
      if (y_row != nullptr) std::memcpy(y_row, hn, sizeof(float) * kH);
    }
  }
  StoreRecurrentState<P>(h, c, y_h, y_c);
}

// ---- com.microsoft.DynamicQuantizeLSTM ------------------------------------------------------
//
// ONNX Runtime's contrib op, defined by what ONNX Runtime computes: an LSTM whose W and R are
// 8-bit, and whose products quantize their other side to 8 bits on the fly: all of X at once
// before the loop, each batch row's h at every step. The integer products are exact; every
// float operation after them is one ONNX Runtime performs, in its order, none contracted into a
// fused multiply-add, and sigmoid and tanh are its rational approximations (LogisticRational,
// TanhRational). That makes the results ONNX Runtime's bit for bit, which is the only way to
// agree with it at all: h is rounded to 8 bits at every step, so one ulp of difference moves a
// rounding and grows over the sequence (to ~1e-2 of the output's scale on ddddocr's model).

// Keeps GCC from contracting a * b + c into a fused multiply-add (its default outside ISO C),
// which rounds once where ONNX Runtime rounds twice. Clang contracts only within an expression,
// and the functions below never write a product and a sum in one.
#if defined(__GNUC__) && !defined(__clang__)
#define PURE_MODEL_NO_CONTRACTION __attribute__((optimize("fp-contract=off")))
#else
#define PURE_MODEL_NO_CONTRACTION
#endif

// tanh as ONNX Runtime computes it on CPU: x clamped to [-9, 9], an odd polynomial of degree
// 13 over an even one of degree 6 (Eigen's coefficients, as in ONNX Runtime's MLAS kernels), each
// step one fused multiply-add. See LogisticRational (kernels.h).
inline float TanhRational(float x) {
  x = x < -9.f ? -9.f : x;
  x = x > 9.f ? 9.f : x;
  constexpr float kNumerator[] = {-2.76076847742355e-16f, 2.00018790482477e-13f, -8.60467152213735e-11f,
                                  5.12229709037114e-08f,  1.48572235717979e-05f, 6.37261928875436e-04f,
                                  4.89352455891786e-03f};
  constexpr float kDenominator[] = {1.19825839466702e-06f, 1.18534705686654e-04f, 2.26843463243900e-03f,
                                    4.89352518554385e-03f};
  const float x2 = x * x;
  const float p = FusedHorner(x2, kNumerator) * x;
  const float q = FusedHorner(x2, kDenominator);
  return p / q;
}

// ONNX Runtime's LSTM applies its own sigmoid and tanh; the other activations as the float ops.
template <RnnActivation A>
inline float QuantizedLstmActivate(float v, float alpha, float beta) {
  if constexpr (A == RnnActivation::kSigmoid) {
    return LogisticRational(v);
  } else if constexpr (A == RnnActivation::kTanh) {
    return TanhRational(v);
  } else {
    return RnnActivate<A>(v, alpha, beta);
  }
}

// Quantizes n values as ONNX Runtime's quantized recurrent ops do: their range, widened to hold
// 0, over 255 steps (scale 1 when the range is empty), the zero point rounded half to even; each
// value divided by the scale, rounded half to even, plus the zero point, clamped to [0, 255].
// Writes the integers the values stand for (the quantized value minus the zero point, in
// [-255, 255]) and returns the scale. The range is that of the first `ranged` values.
inline float QuantizeForProduct(const float* x, std::size_t ranged, std::size_t n, std::int16_t* q) {
  float lo = 0.f, hi = 0.f;
  for (std::size_t i = 0; i < ranged; ++i) {
    lo = x[i] < lo ? x[i] : lo;
    hi = x[i] > hi ? x[i] : hi;
  }
  const float scale = hi == lo ? 1.f : (hi - lo) / 255.f;
  const float zero_point_real = 0.f - lo / scale;
  // std::nearbyint rounds half to even in the default rounding mode.
  const float zero_point =
      std::nearbyint(zero_point_real < 0.f ? 0.f : (zero_point_real > 255.f ? 255.f : zero_point_real));
  for (std::size_t i = 0; i < n; ++i) {
    float v = std::nearbyint(x[i] / scale) + zero_point;
    v = v < 0.f ? 0.f : (v > 255.f ? 255.f : v);
    q[i] = static_cast<std::int16_t>(v - zero_point);
  }
  return scale;
}

// For `rows` rows of x ([rows][K] integers), out[r][m] = float(sum over k of x[r][k] * W[m][k])
// * multiplier[m]. W: [M][K] integers (zero point already subtracted), each output's weights
// contiguous, so that every sum is a dot product of contiguous rows: compilers vectorise that
// with multiply-add-pairs instructions (pmaddwd, smlal) into exact int32 sums. Four outputs at
// a time share each load of x (M = 4 * hidden is always a multiple of four).
template <int K, int M, typename TW>
inline void QuantizedRecurrentProduct(const std::int16_t* x, int rows, const TW* w, const float* multiplier,
                                      float* out) {
  // |x| and |w| are at most 255: K of these products fit in an int32.
  static_assert(static_cast<long long>(K) * 255 * 255 < (1LL << 31), "the products overflow int32");
  static_assert(M % 4 == 0, "the LSTM's four gates");
  for (int m = 0; m < M; m += 4) {
    const TW* w0 = w + static_cast<std::size_t>(m) * K;
    const TW* w1 = w0 + K;
    const TW* w2 = w1 + K;
    const TW* w3 = w2 + K;
    for (int r = 0; r < rows; ++r) {
      const std::int16_t* xr = x + static_cast<std::size_t>(r) * K;
      std::int32_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
      for (int k = 0; k < K; ++k) {
        const std::int32_t xk = xr[k];
        s0 += xk * static_cast<std::int32_t>(w0[k]);
        s1 += xk * static_cast<std::int32_t>(w1[k]);
        s2 += xk * static_cast<std::int32_t>(w2[k]);
        s3 += xk * static_cast<std::int32_t>(w3[k]);
      }
      float* y = out + static_cast<std::size_t>(r) * M + m;
      y[0] = static_cast<float>(s0) * multiplier[m];
      y[1] = static_cast<float>(s1) * multiplier[m + 1];
      y[2] = static_cast<float>(s2) * multiplier[m + 2];
      y[3] = static_cast<float>(s3) * multiplier[m + 3];
    }
  }
}

// Plus the bias, then the clip.
template <typename P>
inline void AddRecurrentBias(const float* bias, int n, float* gates) {
  for (int j = 0; j < n; ++j) {
    const float v = gates[j] + bias[j];
    if constexpr (P::kClip > 0.f) {
      gates[j] = v < -P::kClip ? -P::kClip : (v > P::kClip ? P::kClip : v);
    } else {
      gates[j] = v;
    }
  }
}

// gates[j] + a[j] * b[j], rounded twice. (Only the functions that multiply and add need
// PURE_MODEL_NO_CONTRACTION; the others stay free to inline the activations.)
PURE_MODEL_NO_CONTRACTION inline void AddProducts(const float* a, const float* b, int n, float* gates) {
  for (int j = 0; j < n; ++j) gates[j] = gates[j] + a[j] * b[j];
}

// c = c * f + i * g, each product rounded before the sum.
PURE_MODEL_NO_CONTRACTION inline void UpdateLstmCell(const float* i, const float* f, const float* g, int n, float* c) {
  for (int j = 0; j < n; ++j) c[j] = c[j] * f[j] + i[j] * g[j];
}

// One step of one batch row, from its gates' two products (recurrent, and projected from x,
// [4H] each, i o f c) to the new c and h: ONNX Runtime's order of operations. Gates i, f, c take
// their peepholes (on c_prev), bias and clip before the cell update; the output gate takes its
// peephole on the new c, then its bias and clip.
template <typename P>
inline void QuantizedLstmCell(float* gates, const float* projected, const float* bias, const float* peepholes,
                              float* c, float* h) {
  constexpr int kH = P::kHidden;
  float* i = gates;
  float* o = gates + kH;
  float* f = gates + 2 * kH;
  float* g = gates + 3 * kH;
  for (int j = 0; j < 4 * kH; ++j) gates[j] = gates[j] + projected[j];
  if (peepholes != nullptr) {
    AddProducts(c, peepholes, kH, i);
    AddProducts(c, peepholes + 2 * kH, kH, f);
  }
  AddRecurrentBias<P>(bias, kH, i);
  AddRecurrentBias<P>(bias + 2 * kH, 2 * kH, f);  // f and c
  for (int j = 0; j < kH; ++j) i[j] = QuantizedLstmActivate<P::kF>(i[j], P::kFAlpha, P::kFBeta);
  if constexpr (P::kInputForget) {
    for (int j = 0; j < kH; ++j) f[j] = 1.f - i[j];
  } else {
    for (int j = 0; j < kH; ++j) f[j] = QuantizedLstmActivate<P::kF>(f[j], P::kFAlpha, P::kFBeta);
  }
  for (int j = 0; j < kH; ++j) g[j] = QuantizedLstmActivate<P::kG>(g[j], P::kGAlpha, P::kGBeta);
  UpdateLstmCell(i, f, g, kH, c);
  if (peepholes != nullptr) AddProducts(c, peepholes + kH, kH, o);
  AddRecurrentBias<P>(bias + kH, kH, o);
  for (int j = 0; j < kH; ++j) o[j] = QuantizedLstmActivate<P::kF>(o[j], P::kFAlpha, P::kFBeta);
  for (int j = 0; j < kH; ++j) h[j] = QuantizedLstmActivate<P::kH>(c[j], P::kHAlpha, P::kHBeta) * o[j];
}

// Floats of scratch QuantizedLstmLayer<P> needs: the projections of all steps, one row's gates,
// h and c, the two rows of multipliers, then the quantized X and h (int16, two to a float).
template <typename P>
constexpr std::size_t QuantizedLstmScratchFloats() {
  constexpr std::size_t kRows = static_cast<std::size_t>(P::kSeq) * P::kBatch;
  constexpr std::size_t kGH = 4 * static_cast<std::size_t>(P::kHidden);
  return kRows * kGH + kGH + 2 * static_cast<std::size_t>(P::kBatch) * P::kHidden + 2 * kGH +
         (kRows * P::kInput + 1) / 2 + (P::kHidden + 1) / 2;
}

// One direction of a DynamicQuantizeLSTM layer. P as for RecurrentLayer (kCell kLstm, kGates 4).
// w [4H][kInput], r [4H][kHidden]: the 8-bit weights minus their zero points, transposed, as TW
// (int8, or int16 when a zero point makes them wider);
// w_scale, r_scale [4H] per column; bias [4H] = Wb + Rb; the rest as RecurrentLayer.
template <typename P, typename TW>
inline void QuantizedLstmLayer(const float* x, const TW* w, const float* w_scale, const TW* r,
                               const float* r_scale, const float* bias, const std::int32_t* seq_lens,
                               const float* h0, const float* c0, const float* peepholes, float* y, float* y_h,
                               float* y_c, float* scratch) {
  constexpr int kH = P::kHidden;
  constexpr int kGH = 4 * kH;
  constexpr std::size_t kRows = static_cast<std::size_t>(P::kSeq) * P::kBatch;
  float* projected = scratch;
  float* gates = projected + kRows * kGH;
  float* h = gates + kGH;
  float* c = h + P::kBatch * kH;
  float* multiplier_x = c + P::kBatch * kH;
  float* multiplier_h = multiplier_x + kGH;
  auto* x_quantized = reinterpret_cast<std::int16_t*>(multiplier_h + kGH);
  std::int16_t* h_quantized = x_quantized + kRows * P::kInput;

  // The input projection of every step at once, from X quantized as a whole: as far as the
  // longest sequence reaches (steps past it are no part of ONNX Runtime's range).
  int lengths[P::kBatch];
  SequenceLengths<P>(seq_lens, lengths);
  int longest = 0;
  for (int n = 0; n < P::kBatch; ++n) longest = lengths[n] > longest ? lengths[n] : longest;
  const float x_scale = QuantizeForProduct(x, static_cast<std::size_t>(longest) * P::kBatch * P::kInput,
                                           kRows * P::kInput, x_quantized);
  for (int m = 0; m < kGH; ++m) multiplier_x[m] = x_scale * w_scale[m];
  QuantizedRecurrentProduct<P::kInput, kGH>(x_quantized, static_cast<int>(kRows), w, multiplier_x, projected);

  LoadRecurrentState<P>(h0, c0, h, c);
  for (int step = 0; step < P::kSeq; ++step) {
    const int t = P::kReverse ? P::kSeq - 1 - step : step;
    for (int n = 0; n < P::kBatch; ++n) {
      float* y_row = y != nullptr ? y + static_cast<std::size_t>(t) * P::kYStrideT + n * P::kYStrideN : nullptr;
      if (t >= lengths[n]) {
        if (y_row != nullptr) std::memset(y_row, 0, sizeof(float) * kH);
        continue;
      }
      float* hn = h + n * kH;
      // Each batch row's h is quantized with its own range, as ONNX Runtime does.
      const float h_scale = QuantizeForProduct(hn, kH, kH, h_quantized);
      for (int m = 0; m < kGH; ++m) multiplier_h[m] = h_scale * r_scale[m];
      QuantizedRecurrentProduct<kH, kGH>(h_quantized, 1, r, multiplier_h, gates);
      const std::size_t row = static_cast<std::size_t>(t) * P::kRowStrideT + static_cast<std::size_t>(n) * P::kRowStrideN;
      QuantizedLstmCell<P>(gates, projected + row * kGH, bias, peepholes, c + n * kH, hn);
      if (y_row != nullptr) std::memcpy(y_row, hn, sizeof(float) * kH);
    }
  }
  StoreRecurrentState<P>(h, c, y_h, y_c);
}

}  // namespace pure_model

#endif  // RULES_PURE_MODEL_RUNTIME_RECURRENT_KERNELS_H_
