// Kernels for ONNX's quantized operators: QuantizeLinear, DequantizeLinear, DynamicQuantizeLinear
// and the integer matrix products behind ConvInteger, MatMulInteger, QLinearConv and
// QLinearMatMul. Header-only, standard C++17 (plus GCC's generic vectors, as kernels.h), no
// allocation.
//
// The integer semantics are exact: products and sums in 32-bit integers that wrap as ONNX's
// int32 accumulators do (the arithmetic runs on unsigned lanes, whose wrap-around C++ defines,
// and the bits are those of two's complement), rounding half to even (std::nearbyint in the
// default rounding mode) and saturation to the range of the output type.
#ifndef RULES_PURE_MODEL_RUNTIME_QUANTIZED_H_
#define RULES_PURE_MODEL_RUNTIME_QUANTIZED_H_

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>

#include "pure_model/kernels.h"

namespace pure_model {

// --- Element-wise quantization ------------------------------------------------------------
//
// x is viewed as [kOuter][kAxis][kInner] around the quantization axis. The scale (and zero
// point) of element (o, a, i) is at o * kScaleOuter + (a / kBlock) * kScaleAxis + i * kScaleInner:
// every stride 0 for one scale per tensor, kScaleAxis = 1 for one per axis entry, and the
// layout of a scale tensor with one entry per block of kBlock along the axis otherwise.
// ForEachQuantized calls f(element index, scale index) for every element.
// P: kOuter kAxis kInner kBlock kScaleOuter kScaleAxis kScaleInner kHasZeroPoint.
template <typename P, typename F>
inline void ForEachQuantized(const F& f) {
  for (std::size_t o = 0; o < P::kOuter; ++o) {
    for (std::size_t a = 0; a < P::kAxis; ++a) {
      const std::size_t row = (o * P::kAxis + a) * P::kInner;
      const std::size_t row_param = o * P::kScaleOuter + (a / P::kBlock) * P::kScaleAxis;
      for (std::size_t i = 0; i < P::kInner; ++i) f(row + i, row_param + i * P::kScaleInner);
    }
  }
}

// v clamped to [lo, hi]; NaN becomes lo (ONNX leaves it undefined; this keeps the conversion
// to an integer defined).
template <typename Compute>
inline Compute Saturate(Compute v, Compute lo, Compute hi) {
  const Compute at_least_lo = v > lo ? v : lo;
  return at_least_lo < hi ? at_least_lo : hi;
}

// y = saturate(round(x / scale) + zero_point). The division runs in `Compute`: float when x and
// the scale are float, double when either is an integer (as numpy divides them, and so onnx's
// reference), or the type the `precision` attribute names.
template <typename P, typename Compute, typename TX, typename TS, typename TY>
inline void QuantizeLinear(const TX* x, const TS* scale, const TY* zero_point, TY* y) {
  constexpr Compute kLo = static_cast<Compute>(std::numeric_limits<TY>::min());
  constexpr Compute kHi = static_cast<Compute>(std::numeric_limits<TY>::max());
  ForEachQuantized<P>([=](std::size_t e, std::size_t q) {
    Compute v = std::nearbyint(static_cast<Compute>(x[e]) / static_cast<Compute>(scale[q]));
    if constexpr (P::kHasZeroPoint) v += static_cast<Compute>(zero_point[q]);
    y[e] = static_cast<TY>(Saturate(v, kLo, kHi));
  });
}

// y = (x - zero_point) * scale, in float as onnx's reference computes it, then converted to TY.
template <typename P, typename TX, typename TS, typename TY>
inline void DequantizeLinear(const TX* x, const TS* scale, const TX* zero_point, TY* y) {
  ForEachQuantized<P>([=](std::size_t e, std::size_t q) {
    float v = static_cast<float>(x[e]);
    if constexpr (P::kHasZeroPoint) v -= static_cast<float>(zero_point[q]);
    y[e] = static_cast<TY>(v * static_cast<float>(scale[q]));
  });
}

// Quantizes kN floats to uint8 over the range [min(x, 0), max(x, 0)], all in float as ONNX
// specifies: scale = range / 255, zero point = round(saturate(-min / scale)).
template <std::size_t kN>
inline void DynamicQuantizeLinear(const float* x, std::uint8_t* y, float* y_scale, std::uint8_t* y_zero_point) {
  float lo = 0.f, hi = 0.f;
  for (std::size_t i = 0; i < kN; ++i) {
    lo = x[i] < lo ? x[i] : lo;
    hi = x[i] > hi ? x[i] : hi;
  }
  const float scale = (hi == lo ? 1.f : hi - lo) / 255.f;
  const float zero = std::nearbyint(Saturate(0.f - lo / scale, 0.f, 255.f));
  for (std::size_t i = 0; i < kN; ++i) {
    y[i] = static_cast<std::uint8_t>(Saturate(std::nearbyint(x[i] / scale) + zero, 0.f, 255.f));
  }
  *y_scale = scale;
  *y_zero_point = static_cast<std::uint8_t>(zero);
}

// --- Integer matrix products --------------------------------------------------------------
//
// Y[r][p] = sum_k W'[r][k] * X'[k][p], with W' = W - its zero point and X' = X - its zero point,
// on the float GEMM of kernels.h: W' packed into panels of kGemmRows rows, [ceil(R / kGemmRows)]
// [K][kGemmRows] floats (at generation time when W is constant), X' gathered kGemmCols columns
// at a time into scratch, a chunk of kChunkCols columns before the panels of W run over it.
//
// Float arithmetic is exact here: W' and X' are integers in [-255, 255], so a product's magnitude
// is at most 65025, and a sum of kExactK = 256 of them stays below 2^24, where every integer is a
// float. The micro-kernel therefore runs over K in slices of kExactK, and each slice's sums are
// converted to int32 and added up in wrapping 32-bit integers (unsigned lanes, as ONNX's int32
// accumulator wraps). The FMA units run this faster than 32-bit integer multiplies would.
constexpr int kExactK = 256;

typedef std::int32_t QGemmInts __attribute__((vector_size(kGemmVectorFloats * sizeof(std::int32_t))));
typedef std::uint32_t QGemmVector __attribute__((vector_size(kGemmVectorFloats * sizeof(std::uint32_t))));

struct QGemmRow {
  QGemmVector v[kGemmRowVectors];
};

// acc[i] += the exact sums of one slice of K, for the kGemmRows rows of a panel.
template <int K>
inline void QGemmSlice(const float* a, const float* b, QGemmRow* acc) {
  static_assert(K <= kExactK, "float sums are exact up to kExactK products");
  GemmRow part[kGemmRows];
  GemmMicroKernel<K>(a, b, part);
#pragma GCC unroll 8
  for (int i = 0; i < kGemmRows; ++i) {
#pragma GCC unroll 4
    for (int v = 0; v < kGemmRowVectors; ++v) {
      acc[i].v[v] += __builtin_convertvector(__builtin_convertvector(part[i].v[v], QGemmInts), QGemmVector);
    }
  }
}

template <int K>
inline void QGemmMicroKernel(const float* a, const float* b, QGemmRow* acc) {
  for (int i = 0; i < kGemmRows; ++i) acc[i] = QGemmRow{};
  for (int k0 = 0; k0 + kExactK <= K; k0 += kExactK) {
    QGemmSlice<kExactK>(a + k0 * kGemmRows, b + k0 * kGemmCols, acc);
  }
  constexpr int kTail = K % kExactK;
  if constexpr (kTail > 0) {
    QGemmSlice<kTail>(a + (K - kTail) * kGemmRows, b + (K - kTail) * kGemmCols, acc);
  }
}

// Y (kRows x kCols, element (r, p) at y[r * kRowStride + p * kColStride]) = W' X'. `gather(p0,
// cols, dst)` writes columns p0 .. p0 + cols - 1 of X' as a [kK][kGemmCols] panel with zeros
// past `cols`; `panels` holds kK * kChunkCols floats.
template <int kRows, int kK, int kCols, int kChunkCols, int kRowStride, int kColStride, typename Gather>
inline void QGemm(const float* packed_w, const Gather& gather, std::int32_t* y, float* panels) {
  static_assert(kChunkCols % kGemmCols == 0, "chunks hold whole panels");
  constexpr int kPanels = (kRows + kGemmRows - 1) / kGemmRows;
  for (int c0 = 0; c0 < kCols; c0 += kChunkCols) {
    const int chunk = kCols - c0 < kChunkCols ? kCols - c0 : kChunkCols;
    const int blocks = (chunk + kGemmCols - 1) / kGemmCols;
    for (int q = 0; q < blocks; ++q) {
      const int cols = chunk - q * kGemmCols < kGemmCols ? chunk - q * kGemmCols : kGemmCols;
      gather(c0 + q * kGemmCols, cols, panels + static_cast<std::size_t>(q) * kK * kGemmCols);
    }
    for (int panel = 0; panel < kPanels; ++panel) {
      const int r0 = panel * kGemmRows;
      const int rows = kRows - r0 < kGemmRows ? kRows - r0 : kGemmRows;
      for (int q = 0; q < blocks; ++q) {
        const int p0 = c0 + q * kGemmCols;
        const int cols = chunk - q * kGemmCols < kGemmCols ? chunk - q * kGemmCols : kGemmCols;
        QGemmRow acc[kGemmRows];
        QGemmMicroKernel<kK>(packed_w + static_cast<std::size_t>(panel) * kK * kGemmRows,
                             panels + static_cast<std::size_t>(q) * kK * kGemmCols, acc);
        for (int i = 0; i < rows; ++i) {
          std::int32_t* out = y + static_cast<std::size_t>(r0 + i) * kRowStride + static_cast<std::size_t>(p0) * kColStride;
          if (kColStride == 1 && cols == kGemmCols) {
            std::memcpy(out, acc[i].v, sizeof(acc[i].v));
          } else {
            for (int j = 0; j < cols; ++j) {
              out[static_cast<std::size_t>(j) * kColStride] =
                  static_cast<std::int32_t>(acc[i].v[j / kGemmVectorFloats][j % kGemmVectorFloats]);
            }
          }
        }
      }
    }
  }
}

// Packs W' at run time (weights that are model inputs): packed[r / kGemmRows][k][r % kGemmRows]
// = w[r * kRowStride + k * kKStride] - zero_point[r if kPerRowZero, else 0] (0 without a zero
// point); rows past kRows are zero.
template <int kRows, int kK, int kRowStride, int kKStride, bool kPerRowZero, typename TW>
inline void QPackWeights(const TW* w, const TW* zero_point, float* packed) {
  constexpr int kPanels = (kRows + kGemmRows - 1) / kGemmRows;
  for (int r = 0; r < kPanels * kGemmRows; ++r) {
    float* dst = packed + static_cast<std::size_t>(r / kGemmRows) * kK * kGemmRows + r % kGemmRows;
    if (r >= kRows) {
      for (int k = 0; k < kK; ++k) dst[k * kGemmRows] = 0.f;
      continue;
    }
    const int zero = zero_point == nullptr ? 0 : zero_point[kPerRowZero ? r : 0];
    for (int k = 0; k < kK; ++k) {
      dst[k * kGemmRows] = static_cast<float>(
          w[static_cast<std::size_t>(r) * kRowStride + static_cast<std::size_t>(k) * kKStride] - zero);
    }
  }
}

// ConvInteger: int32 y = conv(x - x_zero_point, W'), NCHW, 1-D as 2-D with H = 1. Padding reads
// as zero after the zero point is subtracted (as onnx's reference pads). Each image is shifted
// into floats once (`shifted`, kGroups * kC * kH * kW), then every group is one QGemm whose
// panels GatherConvPanel cuts from it. packed_w: the groups' packed W', one after the other.
// P: kN kGroups kC kH kW kM (kC and kM per group) kKH kKW kOH kOW kStrideH kStrideW kPadTop
//    kPadLeft kDilH kDilW kChunkCols.
template <typename P, typename TX>
inline void ConvInteger2D(const TX* x, const TX* x_zero_point, const float* packed_w, std::int32_t* y,
                          float* shifted, float* panels) {
  constexpr int kK = P::kC * P::kKH * P::kKW;
  constexpr int kPositions = P::kOH * P::kOW;
  constexpr std::size_t kGroupInput = static_cast<std::size_t>(P::kC) * P::kH * P::kW;
  constexpr std::size_t kImage = kGroupInput * P::kGroups;
  constexpr std::size_t kPackedGroup = static_cast<std::size_t>((P::kM + kGemmRows - 1) / kGemmRows) * kK * kGemmRows;
  const int zero = x_zero_point == nullptr ? 0 : static_cast<int>(*x_zero_point);
  for (int n = 0; n < P::kN; ++n) {
    const TX* image = x + n * kImage;
    for (std::size_t e = 0; e < kImage; ++e) shifted[e] = static_cast<float>(static_cast<int>(image[e]) - zero);
    for (int g = 0; g < P::kGroups; ++g) {
      const float* in = shifted + g * kGroupInput;
      const auto gather = [in](int p0, int cols, float* dst) { GatherConvPanel<P>(in, p0, cols, dst); };
      QGemm<P::kM, kK, kPositions, P::kChunkCols, kPositions, 1>(
          packed_w + g * kPackedGroup, gather,
          y + (static_cast<std::size_t>(n) * P::kGroups + g) * P::kM * kPositions, panels);
    }
  }
}

// MatMulInteger of one matrix: int32 y[M][N] = (a - a_zero_point) B', B' packed by columns (the
// rows of the product's W' are B's columns). The rows of A are the gathered columns, so the
// result is stored transposed (row stride 1, column stride N).
template <int M, int K, int N, int kChunkCols, typename TA>
inline void MatMulInteger(const TA* a, const TA* a_zero_point, const float* packed_b, std::int32_t* y,
                          float* panels) {
  const int zero = a_zero_point == nullptr ? 0 : static_cast<int>(*a_zero_point);
  const auto gather = [a, zero](int p0, int cols, float* dst) {
    for (int j = 0; j < kGemmCols; ++j) {
      const TA* row = a + static_cast<std::size_t>(p0 + j) * K;
      if (j < cols) {
        for (int k = 0; k < K; ++k) dst[k * kGemmCols + j] = static_cast<float>(static_cast<int>(row[k]) - zero);
      } else {
        for (int k = 0; k < K; ++k) dst[k * kGemmCols + j] = 0.f;
      }
    }
  };
  QGemm<N, K, M, kChunkCols, 1, N>(packed_b, gather, y, panels);
}

// y = saturate(round(float64(acc + bias[c]) * multiplier[c] + y_zero_point)) over
// [kOuter][kChannels][kInner], the multiplier a_scale * b_scale[c] / y_scale in float: the
// requantization of QLinearConv (channels = output channels) and QLinearMatMul (channels =
// columns), computed in double as onnx's reference does. bias may be nullptr.
template <int kOuter, int kChannels, int kInner, bool kPerChannelScale, typename TS, typename TY>
inline void Requantize(const std::int32_t* acc, const std::int32_t* bias, const TS* a_scale, const TS* b_scale,
                       const TS* y_scale, const TY* y_zero_point, TY* y) {
  constexpr double kLo = std::numeric_limits<TY>::min();
  constexpr double kHi = std::numeric_limits<TY>::max();
  const double zero = static_cast<double>(*y_zero_point);
  for (int o = 0; o < kOuter; ++o) {
    for (int c = 0; c < kChannels; ++c) {
      const float multiplier = a_scale[0] * b_scale[kPerChannelScale ? c : 0] / y_scale[0];
      const std::uint32_t add = bias == nullptr ? 0u : static_cast<std::uint32_t>(bias[c]);
      const std::size_t base = (static_cast<std::size_t>(o) * kChannels + c) * kInner;
      for (int i = 0; i < kInner; ++i) {
        const std::int32_t sum = static_cast<std::int32_t>(static_cast<std::uint32_t>(acc[base + i]) + add);
        const double v = std::nearbyint(static_cast<double>(sum) * multiplier + zero);
        y[base + i] = static_cast<TY>(Saturate(v, kLo, kHi));
      }
    }
  }
}

}  // namespace pure_model

#endif  // RULES_PURE_MODEL_RUNTIME_QUANTIZED_H_
