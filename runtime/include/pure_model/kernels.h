// Kernels that generated models call. Header-only, standard C++17, no allocation.
//
// Every kernel takes its shapes as compile-time constants from a parameter struct that the
// generator writes next to the call (one struct per ONNX node), so the compiler sees fixed trip
// counts and can unroll and vectorise for the target it compiles for. Pointers never alias
// unless a kernel says so.
#ifndef RULES_PURE_MODEL_RUNTIME_KERNELS_H_
#define RULES_PURE_MODEL_RUNTIME_KERNELS_H_

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>

#include "pure_model/masked.h"
#include "pure_model/narrow_floats.h"

// Kernels that read weights (W, B, ... template parameters) take them either as plain pointers
// or as masked views (masked.h, obfuscate = True), with the same code: `w[i]` and `w + n`.
namespace pure_model {

// --- Elementary functions that vectorise ---------------------------------------------------
//
// std::exp and std::tanh are library calls, so a loop over them runs one element at a time
// (~15 ns each here: a Tanh over a 512x508 tensor took 4.5 ms). These are branch-free inline
// versions the compiler turns into vector code, within 3 ulp over the whole float range (measured:
// Exp 1.0, Tanh 1.3, Sigmoid 2.1 ulp at worst;
// tools/codegen/tests/test_kernels_math.py checks them against float64 references), with IEEE
// results at the edges: exp overflows to +inf, underflows through the subnormals to 0, and NaN
// stays NaN.

// Always inlined: a generated Run() is one long function, and once it has grown past gcc's
// inlining budget a plain `inline` Exp stays a call, which keeps the loop around it scalar
// (ppocr_rec's swish loops ran at 2.9 ns an element instead of 0.2).
#define PURE_MODEL_ALWAYS_INLINE inline __attribute__((always_inline))

// Float <-> bits, shared with the narrow float conversions.
using narrow_floats_internal::BitsOf;
using narrow_floats_internal::FloatOf;

// e^x: x = k ln2 + r with |r| <= ln2 / 2 (ln2 split in two parts so that r is exact), e^r from a
// degree-6 polynomial (Cephes' expf coefficients), times 2^k built from exponent bits. 2^k is
// applied as two factors so that results in the subnormal range and just below overflow come out
// right without a branch.
PURE_MODEL_ALWAYS_INLINE float Exp(float x) {
  // Beyond these, e^x is 0 or +inf in float; clamping keeps k within the two factors' range.
  // Written as selects so that NaN passes through.
  x = x < -104.f ? -104.f : x;
  x = x > 89.f ? 89.f : x;
  // Adding 1.5 * 2^23 rounds x / ln2 to an integer held in the low mantissa bits.
  constexpr float kRoundingShift = 12582912.f;
  const float shifted = x * 1.44269504088896341f + kRoundingShift;
  const float k = shifted - kRoundingShift;
  const std::int32_t k_int = static_cast<std::int32_t>(BitsOf(shifted) - BitsOf(kRoundingShift));
  float r = x - k * 0.693359375f;
  r = r - k * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  const float e_r = p * r * r + r + 1.f;
  const std::int32_t k_half = k_int >> 1;
  const float scale_a = FloatOf(static_cast<std::uint32_t>(k_half + 127) << 23);
  const float scale_b = FloatOf(static_cast<std::uint32_t>(k_int - k_half + 127) << 23);
  return e_r * scale_a * scale_b;
}

// tanh(x): an odd polynomial near 0 (Cephes' tanhf coefficients), where 1 - 2 / (e^2|x| + 1)
// would lose digits to cancellation, and that formula elsewhere; both are computed and one
// selected, which is what lets the loop vectorise.
PURE_MODEL_ALWAYS_INLINE float Tanh(float x) {
  const float z = x * x;
  float p = -5.70498872745e-3f;
  p = p * z + 2.06390887954e-2f;
  p = p * z - 5.37397155531e-2f;
  p = p * z + 1.33314422036e-1f;
  p = p * z - 3.33332819422e-1f;
  const float near_zero = p * z * x + x;
  const float magnitude = 1.f - 2.f / (Exp(2.f * std::fabs(x)) + 1.f);
  const float far = std::copysign(magnitude, x);
  return std::fabs(x) < 0.625f ? near_zero : far;
}

PURE_MODEL_ALWAYS_INLINE float Sigmoid(float x) { return 1.f / (1.f + Exp(-x)); }

// a * b + c rounded once, as an FMA instruction computes it. Without one (baseline x86-64),
// std::fma would be a slow library call; a * b is exact in double instead, and the sum, rounded
// to double and then to float, differs from one rounding only in rare halfway cases.
inline float FusedMultiplyAdd(float a, float b, float c) {
#if defined(__FMA__) || defined(__ARM_FEATURE_FMA)
  return __builtin_fmaf(a, b, c);
#else
  return static_cast<float>(static_cast<double>(a) * b + c);
#endif
}

// c[0] x^(N-1) + ... + c[N-1] by Horner's rule, each step one fused multiply-add, the order in
// which ONNX Runtime's kernels evaluate their polynomials.
template <int N>
inline float FusedHorner(float x, const float (&c)[N]) {
  float p = FusedMultiplyAdd(x, c[0], c[1]);
#pragma GCC unroll 16
  for (int i = 2; i < N; ++i) p = FusedMultiplyAdd(p, x, c[i]);
  return p;
}

// The logistic function as ONNX Runtime computes it on CPU: x clamped to [-18, 18], an odd
// polynomial of degree 9 over an even one of degree 10 (Eigen's coefficients, which ONNX
// Runtime's MLAS kernels use), each step one fused multiply-add, plus 1/2, at least 0.
// Less accurate than Sigmoid (1.7e-7 absolute at worst, and relatively poor below 1e-3), but
// bit for bit ONNX Runtime's result. Models that quantize activations at run time round them
// to 8 bits, where one ulp of difference can move a value to the next step and on through the
// network; passes/runtime_quantization.py picks this for them, so they give ONNX Runtime's outputs.
inline float LogisticRational(float x) {
  // Selects, so that NaN passes through.
  x = x < -18.f ? -18.f : x;
  x = x > 18.f ? 18.f : x;
  constexpr float kNumerator[] = {4.37031012579801e-11f, 1.15627324459942e-07f, 6.08574864600143e-05f,
                                  8.51377133304701e-03f, 2.48287947061529e-01f};
  constexpr float kDenominator[] = {6.10247389755681e-13f, 5.76102136993427e-09f, 6.29106785017040e-06f,
                                    1.70198817374094e-03f, 1.16817656904453e-01f, 9.93151921023180e-01f};
  const float x2 = x * x;
  const float p = FusedHorner(x2, kNumerator) * x;
  const float q = FusedHorner(x2, kDenominator);
  // Clamped below, as ONNX Runtime's kernel does (the polynomials dip under 0 near -18), but not
  // above: near 17.8 the result is one ulp over 1 there too.
  const float y = p / q + 0.5f;
  return y < 0.f ? 0.f : y;
}

// Activations fused into a producing kernel (Conv, Gemm), applied to each output element.
enum class Activation { kNone, kRelu, kClip, kSigmoid };

template <Activation A>
inline float Activate(float v, float lo, float hi) {
  if constexpr (A == Activation::kRelu) {
    return v > 0.f ? v : 0.f;
  } else if constexpr (A == Activation::kClip) {
    // Two selects rather than nested ones: the same result (NaN passes through), and a form the
    // vectoriser turns into min/max.
    const float at_least_lo = v < lo ? lo : v;
    return at_least_lo > hi ? hi : at_least_lo;
  } else if constexpr (A == Activation::kSigmoid) {
    return Sigmoid(v);
  } else {
    (void)lo;
    (void)hi;
    return v;
  }
}

// 2-D convolution, NCHW, weights [M, C/group, KH, KW], optional bias [M] (nullptr if absent).
// P: kN kC kH kW kM kKH kKW kOH kOW kStrideH kStrideW kPadTop kPadLeft kDilH kDilW kGroups,
//    kActivation, kClipLo, kClipHi.
template <typename P, typename W, typename B>
inline void Conv2D(const float* x, W w, B bias, float* y, const float* residual = nullptr) {
  constexpr int kCPerGroup = P::kC / P::kGroups;
  constexpr int kMPerGroup = P::kM / P::kGroups;
  for (int n = 0; n < P::kN; ++n) {
    for (int g = 0; g < P::kGroups; ++g) {
      for (int mg = 0; mg < kMPerGroup; ++mg) {
        const int m = g * kMPerGroup + mg;
        float* out = y + (static_cast<std::size_t>(n) * P::kM + m) * P::kOH * P::kOW;
        const float b = OptionalAt(bias, m);
        for (int i = 0; i < P::kOH * P::kOW; ++i) out[i] = b;
        for (int cg = 0; cg < kCPerGroup; ++cg) {
          const int c = g * kCPerGroup + cg;
          const float* in = x + (static_cast<std::size_t>(n) * P::kC + c) * P::kH * P::kW;
          const W k = w + (static_cast<std::size_t>(m) * kCPerGroup + cg) * P::kKH * P::kKW;
          // Row by row, so that the output row stays in L1 while every tap adds to it; each
          // tap's range of output columns that read inside the input is computed up front, which
          // leaves the innermost loop without branches for the compiler to vectorise.
          for (int oh = 0; oh < P::kOH; ++oh) {
            float* out_row = out + oh * P::kOW;
            for (int kh = 0; kh < P::kKH; ++kh) {
              const int ih = oh * P::kStrideH - P::kPadTop + kh * P::kDilH;
              if (ih < 0 || ih >= P::kH) continue;
              const float* in_row = in + ih * P::kW;
              for (int kw = 0; kw < P::kKW; ++kw) {
                const float wv = k[kh * P::kKW + kw];
                const int shift = kw * P::kDilW - P::kPadLeft;  // iw = ow * stride + shift
                const int ow_begin = shift >= 0 ? 0 : (-shift + P::kStrideW - 1) / P::kStrideW;
                const int last = P::kW - 1 - shift;  // the largest ow * stride still inside
                const int ow_end = last < 0 ? 0 : (last / P::kStrideW + 1 < P::kOW ? last / P::kStrideW + 1 : P::kOW);
                for (int ow = ow_begin; ow < ow_end; ++ow) {
                  out_row[ow] += wv * in_row[ow * P::kStrideW + shift];
                }
              }
            }
          }
        }
        const float* res = residual ? residual + (out - y) : nullptr;
        for (int i = 0; i < P::kOH * P::kOW; ++i) {
          const float v = res ? out[i] + res[i] : out[i];
          out[i] = Activate<P::kActivation>(v, P::kClipLo, P::kClipHi);
        }
      }
    }
  }
}

// 3-D convolution, NCDHW, weights [M, C/group, KD, KH, KW]: Conv2D's row-wise loops with depth
// around them (volumetric models are rare on devices; this is the plain, correct version).
// P: as Conv2D plus kD kKD kOD kStrideD kPadFront kDilD.
template <typename P, typename W, typename B>
inline void Conv3D(const float* x, W w, B bias, float* y, const float* residual = nullptr) {
  constexpr int kCPerGroup = P::kC / P::kGroups;
  constexpr int kMPerGroup = P::kM / P::kGroups;
  constexpr std::size_t kOutPlane = static_cast<std::size_t>(P::kOH) * P::kOW;
  constexpr std::size_t kInPlane = static_cast<std::size_t>(P::kH) * P::kW;
  constexpr std::size_t kOutVolume = kOutPlane * P::kOD;
  for (int n = 0; n < P::kN; ++n) {
    for (int m = 0; m < P::kM; ++m) {
      const int g = m / kMPerGroup;
      float* out = y + (static_cast<std::size_t>(n) * P::kM + m) * kOutVolume;
      const float b = OptionalAt(bias, m);
      for (std::size_t i = 0; i < kOutVolume; ++i) out[i] = b;
      for (int cg = 0; cg < kCPerGroup; ++cg) {
        const int c = g * kCPerGroup + cg;
        const float* in = x + (static_cast<std::size_t>(n) * P::kC + c) * kInPlane * P::kD;
        const W k = w + (static_cast<std::size_t>(m) * kCPerGroup + cg) * P::kKD * P::kKH * P::kKW;
        for (int od = 0; od < P::kOD; ++od) {
          for (int kd = 0; kd < P::kKD; ++kd) {
            const int id = od * P::kStrideD - P::kPadFront + kd * P::kDilD;
            if (id < 0 || id >= P::kD) continue;
            for (int oh = 0; oh < P::kOH; ++oh) {
              float* out_row = out + od * kOutPlane + oh * P::kOW;
              for (int kh = 0; kh < P::kKH; ++kh) {
                const int ih = oh * P::kStrideH - P::kPadTop + kh * P::kDilH;
                if (ih < 0 || ih >= P::kH) continue;
                const float* in_row = in + id * kInPlane + ih * P::kW;
                for (int kw = 0; kw < P::kKW; ++kw) {
                  const float wv = k[(kd * P::kKH + kh) * P::kKW + kw];
                  for (int ow = 0; ow < P::kOW; ++ow) {
                    const int iw = ow * P::kStrideW - P::kPadLeft + kw * P::kDilW;
                    if (iw >= 0 && iw < P::kW) out_row[ow] += wv * in_row[iw];
                  }
                }
              }
            }
          }
        }
      }
      const float* res = residual ? residual + (out - y) : nullptr;
      for (std::size_t i = 0; i < kOutVolume; ++i) {
        const float v = res ? out[i] + res[i] : out[i];
        out[i] = Activate<P::kActivation>(v, P::kClipLo, P::kClipHi);
      }
    }
  }
}

// The interior columns of one output row of a depthwise convolution: no bounds checks and no
// branches (the residual is decided outside), so the compiler vectorises across columns.
template <typename P, int kBegin, int kEnd, bool kResidual>
inline void DepthwiseInterior(const float* const* rows, const float* k, float b, const float* __restrict res_row,
                              float* __restrict out_row) {
  for (int ow = kBegin; ow < kEnd; ++ow) {
    const int start = ow * P::kStrideW - P::kPadLeft;
    float acc = b;
#pragma GCC unroll 16
    for (int kh = 0; kh < P::kKH; ++kh) {
#pragma GCC unroll 16
      for (int kw = 0; kw < P::kKW; ++kw) acc += k[kh * P::kKW + kw] * rows[kh][start + kw * P::kDilW];
    }
    if constexpr (kResidual) acc += res_row[ow];
    out_row[ow] = Activate<P::kActivation>(acc, P::kClipLo, P::kClipHi);
  }
}

// Depthwise 2-D convolution (groups == input channels == output channels), the bulk of
// MobileNet-style networks: little arithmetic per byte, so the aim is one pass over each
// output row with everything fused. Rows of the kernel that fall into the padding read a row
// of zeros (`zero_row`, kW floats of scratch) instead of being skipped, so every tap is a
// compile-time constant; only the few output columns at the left and right edges check bounds.
// P: as Conv2D.
template <typename P, typename W, typename B>
inline void DepthwiseConv2D(const float* x, W w, B bias, float* y, float* zero_row, const float* residual = nullptr) {
  static_assert(P::kGroups == P::kC && P::kM == P::kC, "one output channel per input channel");
  constexpr int kTaps = P::kKH * P::kKW;
  // Output columns whose every tap reads inside the row.
  constexpr int kBegin = (P::kPadLeft + P::kStrideW - 1) / P::kStrideW;
  constexpr int kLastStart = P::kW - 1 - (P::kKW - 1) * P::kDilW + P::kPadLeft;  // largest ow * stride
  constexpr int kEndRaw = kLastStart < 0 ? 0 : kLastStart / P::kStrideW + 1;
  constexpr int kEnd = kEndRaw > P::kOW ? P::kOW : (kEndRaw < kBegin ? kBegin : kEndRaw);
  for (int i = 0; i < P::kW; ++i) zero_row[i] = 0.f;
  for (int n = 0; n < P::kN; ++n) {
    for (int c = 0; c < P::kC; ++c) {
      const std::size_t plane = static_cast<std::size_t>(n) * P::kC + c;
      const float* in = x + plane * P::kH * P::kW;
      float* out = y + plane * P::kOH * P::kOW;
      const float* res = residual ? residual + plane * P::kOH * P::kOW : nullptr;
      float k[kTaps];
      for (int t = 0; t < kTaps; ++t) k[t] = w[static_cast<std::size_t>(c) * kTaps + t];
      const float b = OptionalAt(bias, c);
      for (int oh = 0; oh < P::kOH; ++oh) {
        const float* rows[P::kKH];
        for (int kh = 0; kh < P::kKH; ++kh) {
          const int ih = oh * P::kStrideH - P::kPadTop + kh * P::kDilH;
          rows[kh] = ih >= 0 && ih < P::kH ? in + ih * P::kW : zero_row;
        }
        float* out_row = out + oh * P::kOW;
        const float* res_row = res ? res + oh * P::kOW : nullptr;
        auto edge = [&](int ow) {
          float acc = b;
          for (int kh = 0; kh < P::kKH; ++kh) {
            for (int kw = 0; kw < P::kKW; ++kw) {
              const int iw = ow * P::kStrideW - P::kPadLeft + kw * P::kDilW;
              if (iw >= 0 && iw < P::kW) acc += k[kh * P::kKW + kw] * rows[kh][iw];
            }
          }
          if (res_row) acc += res_row[ow];
          out_row[ow] = Activate<P::kActivation>(acc, P::kClipLo, P::kClipHi);
        };
        for (int ow = 0; ow < kBegin && ow < P::kOW; ++ow) edge(ow);
        if (res_row) {
          DepthwiseInterior<P, kBegin, kEnd, true>(rows, k, b, res_row, out_row);
        } else {
          DepthwiseInterior<P, kBegin, kEnd, false>(rows, k, b, nullptr, out_row);
        }
        for (int ow = kEnd; ow < P::kOW; ++ow) edge(ow);
      }
    }
  }
}

// --- Register-blocked matrix products ------------------------------------------------------
//
// out[m][p] = sum_k W[m][k] * X[k][p]. For a convolution p runs over output positions and k over
// (input channel, kernel row, kernel column); W is packed at generation time into panels of
// kGemmRows output channels, [M / kGemmRows][K][kGemmRows] (zero rows pad the last panel), and
// X is never materialised: the kernels gather the panels of it they need into `scratch` (zeros
// for padding). A micro-kernel runs a panel of W against a gathered panel of X with its
// accumulators in registers. Bias, an optional residual (a tensor of the output's shape added to
// it) and the activation are applied as the results are stored, in that order. Conv2DGemm below
// and its variants add blocking for the caches; the transposed convolutions use GemmMicroKernel.
//
// The vector type is GCC's generic vector extension: the compiler maps it to AVX/AVX2/AVX-512
// registers, to pairs of SSE or NEON registers, or to scalars, from the same source.
constexpr int kGemmRows = 8;
// Columns per micro-kernel: one vector register's worth where vectors are 128-bit and registers
// few (SSE2, the x86-64 baseline: 8 accumulators + operands fit its 16 registers); 256 bits with
// AVX, or on aarch64 where a pair of NEON registers per accumulator fits its 32; 512 bits with
// AVX-512. The generator reserves scratch for the widest case (16 columns) and packs W by rows
// only, so this choice is free per target.
#if defined(__AVX512F__)
constexpr int kGemmVectorFloats = 16;
constexpr int kGemmRowVectors = 2;  // 16 accumulators of the 32 registers keep both FMA pipes busy
#elif defined(__AVX__) || defined(__aarch64__)
constexpr int kGemmVectorFloats = 8;  // on aarch64, a pair of NEON registers
constexpr int kGemmRowVectors = 1;
#else
constexpr int kGemmVectorFloats = 4;
constexpr int kGemmRowVectors = 1;
#endif
constexpr int kGemmCols = kGemmVectorFloats * kGemmRowVectors;
typedef float GemmVector __attribute__((vector_size(kGemmVectorFloats * sizeof(float))));

// Through a pointer, not by value: returning a wide vector without AVX enabled has an
// unstable ABI, which gcc warns about even for inline functions.
inline void LoadVector(const float* p, GemmVector* v) { std::memcpy(v, p, sizeof(*v)); }

// Prefetches the cache line `bytes` past p, which may lie beyond the end of the array p points
// into (the last panel of W prefetches past it): computed as an address rather than by pointer
// arithmetic, and a prefetch never faults.
inline void PrefetchAhead(const void* p, std::size_t bytes) {
  __builtin_prefetch(reinterpret_cast<const void*>(reinterpret_cast<std::uintptr_t>(p) + bytes));
}

// Steps of K that the micro-kernel prefetches W ahead (kGemmRows floats each).
constexpr int kGemmPrefetchSteps = 128;

// One row of micro-kernel results: kGemmCols floats in kGemmRowVectors registers.
struct GemmRow {
  GemmVector v[kGemmRowVectors];
};

// c[i][v] = sum over k < K of a[k][i] * b[k][v-th vector] for v < kVectors, for the kGemmRows
// rows of a packed panel of W (a, a plain pointer or a masked view) against kVectors vectors of a
// gathered panel of X (b, rows kBStride floats apart; with kBStride 0, row k at b + b_rows[k]). The accumulators are locals so that they
// live in registers for the whole loop over K. Each step also prefetches W kPrefetchFloats ahead
// (none if 0): where W is larger than the caches (the deep layers) and streams from memory, the
// hardware prefetcher alone does not keep up at this rate.
template <int K, int kVectors, int kBStride, int kPrefetchFloats, int kCapacity, typename A>
inline void GemmTileProduct(A a, const float* __restrict b, GemmVector (&c)[kGemmRows][kCapacity],
                            const int* b_rows = nullptr) {
  static_assert(kGemmRows == kMaskBlockWords, "a masked panel step unmasks as one block");
  static_assert(kVectors <= kCapacity, "the accumulators fit");
#pragma GCC unroll 8
  for (int i = 0; i < kGemmRows; ++i) {
#pragma GCC unroll 4
    for (int v = 0; v < kVectors; ++v) c[i][v] = GemmVector{};
  }
  for (int k = 0; k < K; ++k) {
    GemmVector bv[kVectors];
#pragma GCC unroll 4
    for (int v = 0; v < kVectors; ++v) {
      LoadVector((kBStride > 0 ? b + k * kBStride : b + b_rows[k]) + v * kGemmVectorFloats, &bv[v]);
    }
    float unmasked[kGemmRows];
    const float* ak;
    if constexpr (kIsMasked<A>) {
      if constexpr (kPrefetchFloats > 0) PrefetchAhead(a.raw(), (k * kGemmRows + kPrefetchFloats) * sizeof(float));
      a.LoadBlock(static_cast<std::size_t>(k) * kGemmRows, unmasked);
      ak = unmasked;
    } else {
      ak = a + k * kGemmRows;
      if constexpr (kPrefetchFloats > 0) PrefetchAhead(ak, kPrefetchFloats * sizeof(float));
    }
#pragma GCC unroll 8
    for (int i = 0; i < kGemmRows; ++i) {
#pragma GCC unroll 4
      for (int v = 0; v < kVectors; ++v) c[i][v] += ak[i] * bv[v];
    }
  }
}

// acc[i] = sum over k < K of a[k][i] * b[k][:], for the kGemmRows rows of one packed panel of
// W (a) against the gathered panel of X (b), rows of b kBStride floats apart (a gathered panel is
// exactly kGemmCols wide; a packed matrix panel may be wider).
template <int K, int kBStride = kGemmCols, typename A>
inline void GemmMicroKernel(A a, const float* __restrict b, GemmRow* acc) {
  GemmVector c[kGemmRows][kGemmRowVectors];
  // A panel is read whole: 4 KiB ahead.
  GemmTileProduct<K, kGemmRowVectors, kBStride, kGemmPrefetchSteps * kGemmRows>(a, b, c);
#pragma GCC unroll 8
  for (int i = 0; i < kGemmRows; ++i) {
#pragma GCC unroll 4
    for (int v = 0; v < kGemmRowVectors; ++v) acc[i].v[v] = c[i][v];
  }
}

// Relu or Clip on a vector, as Activate does on each element (Sigmoid goes element by element).
template <typename P>
inline void ActivateVector(GemmVector* v) {
  static_assert(P::kActivation != Activation::kSigmoid, "Sigmoid goes element by element");
  if constexpr (P::kActivation == Activation::kRelu) {
    const GemmVector zero = {};
    *v = *v > zero ? *v : zero;
  } else if constexpr (P::kActivation == Activation::kClip) {
    const GemmVector lo = GemmVector{} + P::kClipLo;
    const GemmVector hi = GemmVector{} + P::kClipHi;
    *v = *v < lo ? lo : *v;
    *v = *v > hi ? hi : *v;
  }
}

// A gathered panel's columns fall into runs that share an output row; within a run, each kernel
// tap reads one input row at a fixed stride. Columns [begin, end) of a run are output positions
// (oh, ow0 + j - begin).
struct ConvColumnRun {
  int begin, end, oh, ow0;
};

template <typename P>
inline int ConvColumnRuns(int p0, int cols, ConvColumnRun* runs) {
  int num_runs = 0;
  for (int j = 0; j < cols;) {
    const int p = p0 + j;
    const int ow0 = p % P::kOW;
    const int length = cols - j < P::kOW - ow0 ? cols - j : P::kOW - ow0;
    runs[num_runs++] = {j, j + length, p / P::kOW, ow0};
    j += length;
  }
  return num_runs;
}

// The kernel tap (input channel, kernel row, kernel column) of row k of X, stepped row by row.
template <typename P>
struct ConvTap {
  int c, kh, kw;
  explicit ConvTap(int k) : c(k / (P::kKH * P::kKW)), kh(k % (P::kKH * P::kKW) / P::kKW), kw(k % P::kKW) {}
  void Next() {
    if (++kw == P::kKW) {
      kw = 0;
      if (++kh == P::kKH) {
        kh = 0;
        ++c;
      }
    }
  }
};

// Gathers rows k0 .. k0 + kc - 1 of the matrix X (row k = (input channel, kernel row, kernel
// column)) at output positions p0 .. p0 + cols - 1 into dst, [kc][kWidth] floats, with zeros for
// padding and for columns past cols.
template <typename P, int kWidth>
inline void GatherConvRows(const float* in, int k0, int kc, int p0, int cols, float* dst) {
  constexpr int kPositions = P::kOH * P::kOW;
  constexpr bool kPointwise = P::kKH == 1 && P::kKW == 1 && P::kStrideH == 1 && P::kStrideW == 1 &&
                              P::kPadTop == 0 && P::kPadLeft == 0 && P::kOH == P::kH && P::kOW == P::kW;
  if (kPointwise && cols == kWidth) {
    for (int k = 0; k < kc; ++k) {
      std::memcpy(dst + k * kWidth, in + static_cast<std::size_t>(k0 + k) * kPositions + p0, sizeof(float) * kWidth);
    }
    return;
  }
  ConvColumnRun runs[kWidth] = {};
  const int num_runs = ConvColumnRuns<P>(p0, cols, runs);
  ConvTap<P> tap(k0);
  for (int k = 0; k < kc; ++k, dst += kWidth) {
    const float* channel = in + static_cast<std::size_t>(tap.c) * P::kH * P::kW;
    const int shift = tap.kw * P::kDilW - P::kPadLeft;  // iw = ow * stride + shift
    // Output columns that read inside the row: ow in [ow_lo, ow_hi).
    const int ow_lo = shift >= 0 ? 0 : (-shift + P::kStrideW - 1) / P::kStrideW;
    const int ow_hi = P::kW - 1 - shift < 0 ? 0 : (P::kW - 1 - shift) / P::kStrideW + 1;
    for (int r = 0; r < num_runs; ++r) {
      const ConvColumnRun& run = runs[r];
      const int ih = run.oh * P::kStrideH - P::kPadTop + tap.kh * P::kDilH;
      if (ih < 0 || ih >= P::kH) {
        for (int j = run.begin; j < run.end; ++j) dst[j] = 0.f;
        continue;
      }
      const float* src = channel + ih * P::kW;
      // Columns of this run, as ow = run.ow0 + (j - run.begin).
      int inside_begin = run.begin + (ow_lo - run.ow0 > 0 ? ow_lo - run.ow0 : 0);
      int inside_end = run.begin + (ow_hi - run.ow0);
      if (inside_end > run.end) inside_end = run.end;
      if (inside_begin > inside_end) inside_begin = inside_end;
      for (int j = run.begin; j < inside_begin; ++j) dst[j] = 0.f;
      const float* first = src + (run.ow0 + inside_begin - run.begin) * P::kStrideW + shift;
      for (int j = inside_begin; j < inside_end; ++j) dst[j] = first[(j - inside_begin) * P::kStrideW];
      for (int j = inside_end < run.begin ? run.begin : inside_end; j < run.end; ++j) dst[j] = 0.f;
    }
    for (int j = cols; j < kWidth; ++j) dst[j] = 0.f;
    tap.Next();
  }
}

// Convolutions other than 1 x 1 ones without padding (which copy rows as they are, or a few
// columns of them when strided) gather from a copy of
// the input with its padding written out as zeros and each row split into kStrideW phases: the
// columns j with j % kStrideW == phase, in order, then those of the next phase. A kernel tap then
// reads consecutive columns of one phase for consecutive output columns, whatever the stride, so
// every run of a gathered row is one contiguous copy, done in whole vectors. Such a copy may read
// up to kConvSpareFloats - 1 floats past its run, and write as far past it into columns that a
// later run or row overwrites: the padded copy and the gathered tiles are each followed by that
// many spare floats of scratch.
constexpr int kConvSpareFloats = 16;
static_assert(kGemmVectorFloats <= kConvSpareFloats, "a vector copy stays within the spare floats");

template <typename P>
struct ConvPaddedInput {
  static constexpr bool kUsed = !(P::kKH == 1 && P::kKW == 1 && P::kPadTop == 0 && P::kPadLeft == 0);
  static constexpr int kExtentH = (P::kOH - 1) * P::kStrideH + (P::kKH - 1) * P::kDilH + 1;
  static constexpr int kExtentW = (P::kOW - 1) * P::kStrideW + (P::kKW - 1) * P::kDilW + 1;
  static constexpr int kRows = P::kH + P::kPadTop > kExtentH ? P::kH + P::kPadTop : kExtentH;
  static constexpr int kCols = P::kW + P::kPadLeft > kExtentW ? P::kW + P::kPadLeft : kExtentW;
  static constexpr int kPhaseCols = (kCols + P::kStrideW - 1) / P::kStrideW;
  static constexpr int kRowFloats = kPhaseCols * P::kStrideW;
  // Zeros after the copy: a vector copy's reach, and for Conv2DGemmDirect, a tile's reach past
  // the grid of positions and the last tap's shift.
  static constexpr int kSpare = kConvSpareFloats + 48 + (P::kKW - 1) * P::kDilW;
  // Scratch floats it takes, spare ones included (none when not used).
  static constexpr std::size_t kFloats = kUsed ? static_cast<std::size_t>(P::kC) * kRows * kRowFloats + kSpare : 0;
};

template <typename P>
inline void PadConvInput(const float* in, float* padded) {
  using Pad = ConvPaddedInput<P>;
  for (int c = 0; c < P::kC; ++c) {
    for (int r = 0; r < Pad::kRows; ++r) {
      float* row = padded + (static_cast<std::size_t>(c) * Pad::kRows + r) * Pad::kRowFloats;
      const int ih = r - P::kPadTop;
      if (ih < 0 || ih >= P::kH) {
        for (int j = 0; j < Pad::kRowFloats; ++j) row[j] = 0.f;
        continue;
      }
      const float* src = in + (static_cast<std::size_t>(c) * P::kH + ih) * P::kW;
      if constexpr (P::kStrideW == 1) {
        for (int j = 0; j < P::kPadLeft; ++j) row[j] = 0.f;
        std::memcpy(row + P::kPadLeft, src, sizeof(float) * P::kW);
        for (int j = P::kPadLeft + P::kW; j < Pad::kRowFloats; ++j) row[j] = 0.f;
      } else {
        for (int phase = 0; phase < P::kStrideW; ++phase) {
          float* part = row + phase * Pad::kPhaseCols;
          // Column i of the phase is input column i * stride + phase - kPadLeft.
          const int begin = phase >= P::kPadLeft ? 0 : (P::kPadLeft - phase + P::kStrideW - 1) / P::kStrideW;
          const int last = P::kW - 1 + P::kPadLeft - phase;  // the largest i * stride inside
          const int end = last < 0 ? 0 : (last / P::kStrideW + 1 < Pad::kPhaseCols ? last / P::kStrideW + 1
                                                                                   : Pad::kPhaseCols);
          for (int i = 0; i < begin && i < Pad::kPhaseCols; ++i) part[i] = 0.f;
          int iw = begin * P::kStrideW + phase - P::kPadLeft;
          for (int i = begin; i < end; ++i, iw += P::kStrideW) {
            // Kept scalar: gcc 12 at -O3 with AVX2 or AVX-512 vectorises this strided copy
            // wrongly (it wrote zeros).
            __asm__("" : "+r"(iw));
            part[i] = src[iw];
          }
          for (int i = end > begin ? end : begin; i < Pad::kPhaseCols; ++i) part[i] = 0.f;
        }
      }
    }
  }
  for (int j = 0; j < Pad::kSpare; ++j) padded[Pad::kFloats - Pad::kSpare + j] = 0.f;
}

// GatherConvRows from the padded copy.
template <typename P, int kWidth>
inline void GatherPaddedConvRows(const float* padded, int k0, int kc, int p0, int cols, float* dst) {
  using Pad = ConvPaddedInput<P>;
  static_assert(Pad::kUsed, "the input has a padded copy");
  ConvColumnRun runs[kWidth] = {};
  const int num_runs = ConvColumnRuns<P>(p0, cols, runs);
  int source[kWidth] = {};  // each run's first input element, relative to the tap's
  for (int r = 0; r < num_runs; ++r) source[r] = runs[r].oh * P::kStrideH * Pad::kRowFloats + runs[r].ow0;
  ConvTap<P> tap(k0);
  for (int k = 0; k < kc; ++k, dst += kWidth) {
    // Column ow * stride + kw * dilation of the padded row: in phase (kw * dilation) % stride.
    const int column = tap.kw * P::kDilW;
    const float* first = padded + (static_cast<std::size_t>(tap.c) * Pad::kRows + tap.kh * P::kDilH) * Pad::kRowFloats +
                         column % P::kStrideW * Pad::kPhaseCols + column / P::kStrideW;
    for (int r = 0; r < num_runs; ++r) {
      const float* src = first + source[r] - runs[r].begin;
      for (int j = runs[r].begin; j < runs[r].end; j += kGemmVectorFloats) {
        GemmVector v;
        LoadVector(src + j, &v);
        std::memcpy(dst + j, &v, sizeof(v));
      }
    }
    for (int j = cols; j < kWidth; ++j) dst[j] = 0.f;
    tap.Next();
  }
}

// Rows k0 .. k0 + kc - 1 of X at positions p0 .. p0 + cols - 1, [kc][kWidth], from the padded
// copy in `padded` where the convolution has one, else from the input itself.
template <typename P, int kWidth>
inline void GatherConvTile(const float* in, const float* padded, int k0, int kc, int p0, int cols, float* dst) {
  if constexpr (ConvPaddedInput<P>::kUsed) {
    GatherPaddedConvRows<P, kWidth>(padded, k0, kc, p0, cols, dst);
  } else {
    (void)padded;
    GatherConvRows<P, kWidth>(in, k0, kc, p0, cols, dst);
  }
}

// K cut into kBlocks blocks of kBlockK rows (P::kBlockK at most), the last one kTailK rows.
template <typename P>
struct ConvKBlocks {
  static constexpr int kK = P::kC * P::kKH * P::kKW;
  static constexpr int kBlockK = P::kBlockK < kK ? P::kBlockK : kK;
  static constexpr int kBlocks = (kK + kBlockK - 1) / kBlockK;
  static constexpr int kTailK = kK - (kBlocks - 1) * kBlockK;
};

// --- Convolution as a cache-blocked matrix product ----------------------------------------
//
// Conv2DGemm computes out = W X as a BLAS does, blocked for the caches. K is cut into blocks of
// P::kBlockK rows. For each block, the rows of X it covers are gathered for a chunk of
// P::kChunkCols output positions (sized by the generator to stay in L2) as tiles of
// kConvTileCols columns, [tile][k][kConvTileCols]; then each gathered tile (kBlockK x
// kConvTileCols floats, small enough for L1) meets every panel of W in turn (8 rows x kBlockK, from
// L2), in a micro-kernel of kGemmRows x kConvTileCols accumulators. So the operand read most per
// step comes from L1, and W streams from memory once per chunk. The first block's results are
// stored with the bias, later blocks add theirs to the output, and the last one adds the residual
// and applies the activation.
#if defined(__AVX512F__)
// 8 x 3 accumulators and 3 operands of the 32 zmm registers: 11 loads per 24 FMAs.
constexpr int kConvTileVectors = 3;
#else
constexpr int kConvTileVectors = kGemmRowVectors;
#endif
constexpr int kConvTileCols = kConvTileVectors * kGemmVectorFloats;
static_assert(kConvTileCols <= 48, "ConvPaddedInput::kSpare covers a tile");

// Where a K block's results go: the first of several, a later one, the last, or the only one.
enum class ConvBlockStage { kFirst, kMiddle, kLast, kOnly };

// Stores `rows` x `cols` results of a tile into out (rows kPositions floats apart).
template <typename P, int kVectors, int kPositions, typename B>
inline void StoreConvTile(const GemmVector (&c)[kGemmRows][kConvTileVectors], ConvBlockStage stage, B bias, int m0,
                          int rows, const float* residual, float* out, int cols) {
  const bool first = stage == ConvBlockStage::kFirst || stage == ConvBlockStage::kOnly;
  const bool last = stage == ConvBlockStage::kLast || stage == ConvBlockStage::kOnly;
  for (int i = 0; i < rows; ++i) {
    float* row = out + static_cast<std::size_t>(i) * kPositions;
    const float* res = residual != nullptr ? residual + static_cast<std::size_t>(i) * kPositions : nullptr;
    const float b = first ? OptionalAt(bias, m0 + i) : 0.f;
    if (cols == kVectors * kGemmVectorFloats && (!last || P::kActivation != Activation::kSigmoid)) {
#pragma GCC unroll 4
      for (int v = 0; v < kVectors; ++v) {
        GemmVector sum = c[i][v];
        GemmVector other;
        if (first) {
          sum += b;
        } else {
          LoadVector(row + v * kGemmVectorFloats, &other);
          sum += other;
        }
        if (last) {
          if (res != nullptr) {
            LoadVector(res + v * kGemmVectorFloats, &other);
            sum += other;
          }
          if constexpr (P::kActivation != Activation::kSigmoid) ActivateVector<P>(&sum);
        }
        std::memcpy(row + v * kGemmVectorFloats, &sum, sizeof(sum));
      }
      continue;
    }
    for (int j = 0; j < cols; ++j) {
      float v = c[i][j / kGemmVectorFloats][j % kGemmVectorFloats] + (first ? b : row[j]);
      if (last) v = Activate<P::kActivation>(v + (res != nullptr ? res[j] : 0.f), P::kClipLo, P::kClipHi);
      row[j] = v;
    }
  }
}

// One K block of kBlock rows over a gathered tile of `cols` columns, against every panel of W.
template <typename P, int kBlock, typename W, typename B>
inline void ConvTileAllPanels(W w_block, const float* tile, ConvBlockStage stage, B bias, const float* residual,
                              float* out, int cols) {
  constexpr int kK = P::kC * P::kKH * P::kKW;
  constexpr int kPositions = P::kOH * P::kOW;
  constexpr int kPanels = (P::kM + kGemmRows - 1) / kGemmRows;
  const int vectors = (cols + kGemmVectorFloats - 1) / kGemmVectorFloats;
  for (int panel = 0; panel < kPanels; ++panel) {
    const int m0 = panel * kGemmRows;
    const int rows = P::kM - m0 < kGemmRows ? P::kM - m0 : kGemmRows;
    const W a = w_block + static_cast<std::size_t>(panel) * kK * kGemmRows;
    const std::size_t offset = static_cast<std::size_t>(m0) * kPositions;
    const float* res = residual != nullptr ? residual + offset : nullptr;
    // Inlined, as every kernel here: an out-of-line copy would put a kernel's name in the symbol
    // table of an obfuscated model's object.
    const auto run = [&](auto vectors) __attribute__((always_inline)) {
      constexpr int kVectors = decltype(vectors)::value;
      GemmVector c[kGemmRows][kConvTileVectors];
      // The same block of the next panel of W, which the first tile reads from memory.
      GemmTileProduct<kBlock, kVectors, kConvTileCols, kK * kGemmRows>(a, tile, c);
      StoreConvTile<P, kVectors, kPositions>(c, stage, bias, m0, rows, res, out + offset, cols);
    };
    // Partial tiles (the last positions) skip the vectors that hold only padding.
    if (vectors == kConvTileVectors) {
      run(std::integral_constant<int, kConvTileVectors>{});
    } else if (vectors == 2) {
      run(std::integral_constant<int, (kConvTileVectors > 2 ? 2 : 1)>{});
    } else {
      run(std::integral_constant<int, 1>{});
    }
  }
}

// P: as Conv2D (groups must be 1), plus kBlockK (rows of K per block) and kChunkCols (output
// positions gathered at a time; rounded down to whole tiles, at least one). `scratch` holds
// ConvPaddedInput<P>::kFloats, then kBlockK x max(kChunkCols, 48) + kConvSpareFloats floats.
template <typename P, typename W, typename B>
inline void Conv2DGemm(const float* x, W packed_w, B bias, float* y, float* scratch, const float* residual = nullptr) {
  static_assert(P::kGroups == 1, "grouped convolutions use Conv2D");
  constexpr int kPositions = P::kOH * P::kOW;
  constexpr int kBlockK = ConvKBlocks<P>::kBlockK;
  constexpr int kBlocks = ConvKBlocks<P>::kBlocks;
  constexpr int kTailK = ConvKBlocks<P>::kTailK;
  constexpr int kChunk = P::kChunkCols < kConvTileCols ? kConvTileCols : P::kChunkCols / kConvTileCols * kConvTileCols;
  for (int n = 0; n < P::kN; ++n) {
    const float* in = x + static_cast<std::size_t>(n) * P::kC * P::kH * P::kW;
    float* out = y + static_cast<std::size_t>(n) * P::kM * kPositions;
    const float* res_image = residual ? residual + static_cast<std::size_t>(n) * P::kM * kPositions : nullptr;
    float* tiles_scratch = scratch + ConvPaddedInput<P>::kFloats;
    if constexpr (ConvPaddedInput<P>::kUsed) PadConvInput<P>(in, scratch);
    for (int c0 = 0; c0 < kPositions; c0 += kChunk) {
      const int chunk = kPositions - c0 < kChunk ? kPositions - c0 : kChunk;
      const int tiles = (chunk + kConvTileCols - 1) / kConvTileCols;
      for (int block = 0; block < kBlocks; ++block) {
        const int k0 = block * kBlockK;
        const int kc = block + 1 < kBlocks ? kBlockK : kTailK;
        for (int t = 0; t < tiles; ++t) {
          const int cols = chunk - t * kConvTileCols < kConvTileCols ? chunk - t * kConvTileCols : kConvTileCols;
          GatherConvTile<P, kConvTileCols>(in, scratch, k0, kc, c0 + t * kConvTileCols, cols,
                                           tiles_scratch + static_cast<std::size_t>(t) * kBlockK * kConvTileCols);
        }
        const ConvBlockStage stage = kBlocks == 1           ? ConvBlockStage::kOnly
                                     : block == 0           ? ConvBlockStage::kFirst
                                     : block + 1 < kBlocks ? ConvBlockStage::kMiddle
                                                            : ConvBlockStage::kLast;
        const W w_block = packed_w + static_cast<std::size_t>(k0) * kGemmRows;
        for (int t = 0; t < tiles; ++t) {
          const int p0 = c0 + t * kConvTileCols;
          const int cols = chunk - t * kConvTileCols < kConvTileCols ? chunk - t * kConvTileCols : kConvTileCols;
          const float* tile = tiles_scratch + static_cast<std::size_t>(t) * kBlockK * kConvTileCols;
          const float* res = res_image != nullptr ? res_image + p0 : nullptr;
          if (block + 1 < kBlocks) {
            ConvTileAllPanels<P, kBlockK>(w_block, tile, stage, bias, res, out + p0, cols);
          } else {
            ConvTileAllPanels<P, kTailK>(w_block, tile, stage, bias, res, out + p0, cols);
          }
        }
      }
    }
  }
}

// Convolutions with unit strides read X straight from the padded copy, without gathering. Over
// the grid of positions q = oh * pitch + ow (the padded row's pitch), row k of X at q is
// padded[q + offset(k)], where offset(k) places the tap (c, kh, kw) in the copy: a tile of
// consecutive q is a contiguous run of every row. The grid's columns ow >= kOW are computed and
// dropped (the padding's width: 2 of 58 columns at 56 x 56). Pointwise convolutions (1 x 1, no
// padding) read the input itself, whose channels are X's rows, except in a last partial tile,
// which is gathered so as not to read past the input. The sums of K blocks add up in scratch,
// [rows of W][chunk of the grid]; a last pass over each chunk adds bias and residual, applies the
// activation and writes the output's rows.
template <typename P>
struct ConvDirectSource {
  static constexpr bool kPointwise = P::kKH == 1 && P::kKW == 1 && P::kStrideH == 1 && P::kStrideW == 1 &&
                                     P::kPadTop == 0 && P::kPadLeft == 0 && P::kOH == P::kH && P::kOW == P::kW;
  static constexpr bool kUsed = kPointwise || (ConvPaddedInput<P>::kUsed && P::kStrideH == 1 && P::kStrideW == 1);
  static constexpr int kPitch = kPointwise ? P::kW : ConvPaddedInput<P>::kRowFloats;
  // Where row k of X starts, relative to the source's start.
  static int Offset(const ConvTap<P>& tap) {
    if constexpr (kPointwise) return tap.c * P::kH * P::kW;
    return (tap.c * ConvPaddedInput<P>::kRows + tap.kh * P::kDilH) * kPitch + tap.kw * P::kDilW;
  }
};

// P: as Conv2DGemm, kChunkCols counting grid positions. `scratch` holds ConvPaddedInput<P>::kFloats,
// then (panels x kGemmRows) x max(kChunkCols, 48) sums, then for pointwise convolutions a
// gathered tile, kBlockK x 48 + kConvSpareFloats floats.
template <typename P, typename W, typename B>
inline void Conv2DGemmDirect(const float* x, W packed_w, B bias, float* y, float* scratch,
                             const float* residual = nullptr) {
  static_assert(P::kGroups == 1 && ConvDirectSource<P>::kUsed, "an ungrouped convolution with unit strides");
  using Pad = ConvPaddedInput<P>;
  using Source = ConvDirectSource<P>;
  constexpr int kK = ConvKBlocks<P>::kK;
  constexpr int kPositions = P::kOH * P::kOW;
  constexpr int kBlockK = ConvKBlocks<P>::kBlockK;
  constexpr int kBlocks = ConvKBlocks<P>::kBlocks;
  constexpr int kTailK = ConvKBlocks<P>::kTailK;
  constexpr int kGrid = P::kOH * Source::kPitch;
  constexpr int kChunk = P::kChunkCols < kConvTileCols ? kConvTileCols : P::kChunkCols / kConvTileCols * kConvTileCols;
  constexpr int kPanels = (P::kM + kGemmRows - 1) / kGemmRows;
  float* sums = scratch + Pad::kFloats;
  float* tail_tile = sums + static_cast<std::size_t>(kPanels) * kGemmRows * kChunk;
  for (int n = 0; n < P::kN; ++n) {
    const float* in = x + static_cast<std::size_t>(n) * P::kC * P::kH * P::kW;
    float* out = y + static_cast<std::size_t>(n) * P::kM * kPositions;
    const float* res = residual ? residual + static_cast<std::size_t>(n) * P::kM * kPositions : nullptr;
    if constexpr (Pad::kUsed) PadConvInput<P>(in, scratch);
    const float* source = Source::kPointwise ? in : scratch;
    for (int q0 = 0; q0 < kGrid; q0 += kChunk) {
      const int chunk = kGrid - q0 < kChunk ? kGrid - q0 : kChunk;
      const int tiles = (chunk + kConvTileCols - 1) / kConvTileCols;
      for (int block = 0; block < kBlocks; ++block) {
        const int k0 = block * kBlockK;
        const int kc = block + 1 < kBlocks ? kBlockK : kTailK;
        int offsets[kBlockK] = {};
        ConvTap<P> tap(k0);
        for (int k = 0; k < kc; ++k, tap.Next()) offsets[k] = Source::Offset(tap);
        const W w_block = packed_w + static_cast<std::size_t>(k0) * kGemmRows;
        for (int t = 0; t < tiles; ++t) {
          const int p0 = q0 + t * kConvTileCols;
          const bool gathered = Source::kPointwise && p0 + kConvTileCols > kGrid;
          if (gathered) GatherConvRows<P, kConvTileCols>(in, k0, kc, p0, kGrid - p0, tail_tile);
          for (int panel = 0; panel < kPanels; ++panel) {
            GemmVector c[kGemmRows][kConvTileVectors];
            // The same block of the next panel of W, which the first tile reads from memory.
            const W a = w_block + static_cast<std::size_t>(panel) * kK * kGemmRows;
            constexpr int kAhead = kK * kGemmRows;
            if (gathered) {
              if (block + 1 < kBlocks) {
                GemmTileProduct<kBlockK, kConvTileVectors, kConvTileCols, kAhead>(a, tail_tile, c);
              } else {
                GemmTileProduct<kTailK, kConvTileVectors, kConvTileCols, kAhead>(a, tail_tile, c);
              }
            } else if (block + 1 < kBlocks) {
              GemmTileProduct<kBlockK, kConvTileVectors, 0, kAhead>(a, source + p0, c, offsets);
            } else {
              GemmTileProduct<kTailK, kConvTileVectors, 0, kAhead>(a, source + p0, c, offsets);
            }
#pragma GCC unroll 8
            for (int i = 0; i < kGemmRows; ++i) {
              float* row = sums + static_cast<std::size_t>(panel * kGemmRows + i) * kChunk + t * kConvTileCols;
#pragma GCC unroll 4
              for (int v = 0; v < kConvTileVectors; ++v) {
                if (block > 0) {
                  GemmVector previous;
                  LoadVector(row + v * kGemmVectorFloats, &previous);
                  c[i][v] += previous;
                }
                std::memcpy(row + v * kGemmVectorFloats, &c[i][v], sizeof(GemmVector));
              }
            }
          }
        }
      }
      // The chunk's grid positions that are output positions, an output row's run at a time.
      for (int q = q0; q < q0 + chunk;) {
        const int oh = q / Source::kPitch;
        const int ow = q % Source::kPitch;
        const int row_end = (oh + 1) * Source::kPitch < q0 + chunk ? (oh + 1) * Source::kPitch : q0 + chunk;
        const int count = ow >= P::kOW ? 0 : (P::kOW - ow < row_end - q ? P::kOW - ow : row_end - q);
        for (int m = 0; m < P::kM; ++m) {
          const float b = OptionalAt(bias, m);
          const float* sum = sums + static_cast<std::size_t>(m) * kChunk + (q - q0);
          const std::size_t at = static_cast<std::size_t>(m) * kPositions + oh * P::kOW + ow;
          float* __restrict dst = out + at;
          if (res != nullptr) {
            const float* __restrict r = res + at;
            for (int j = 0; j < count; ++j) dst[j] = Activate<P::kActivation>(sum[j] + b + r[j], P::kClipLo, P::kClipHi);
          } else {
            for (int j = 0; j < count; ++j) dst[j] = Activate<P::kActivation>(sum[j] + b, P::kClipLo, P::kClipHi);
          }
        }
        q = row_end;
      }
    }
  }
}

// --- Convolutions with few output positions: vectors across output channels -----------------
//
// Deep layers have few output positions and many channels (ResNet's last stage: 7 x 7 = 49
// positions, 512 channels), where Conv2DGemm's tiles of positions would be mostly padding in
// their last vector (49 = 48 + 1 with AVX-512). Conv2DGemmChannels puts the vectors across
// output channels instead: W is packed at generation time in panels of kConvChannelRows rows,
// [ceil(M / kConvChannelRows)][K][kConvChannelRows], and the micro-kernel multiplies one panel's
// vectors by a tile of P::kTilePositions positions (at most kConvChannelPositionsMax), each
// broadcast from the gathered tile of X ([k][tile positions]). K is blocked as in Conv2DGemm;
// each block's sums add up in scratch laid out [position][channel], and a last pass adds bias and
// residual, applies the activation and writes the output [channel][position].
constexpr int kConvChannelRows = 32;
constexpr int kConvChannelVectors = kConvChannelRows / kGemmVectorFloats;
#if defined(__AVX512F__)
constexpr int kConvChannelPositionsMax = 14;  // 2 x 14 accumulators + 2 vectors of W: 30 of 32 zmm
#elif defined(__aarch64__)
constexpr int kConvChannelPositionsMax = 2;  // 4 pairs of NEON registers per position, of 32
#elif defined(__AVX__)
constexpr int kConvChannelPositionsMax = 3;  // 4 x 3 accumulators + 4 vectors of W: 16 ymm
#else
constexpr int kConvChannelPositionsMax = 1;
#endif

// c[p][v] = sum over k < kBlock of x[k][p] * a[k][v-th vector], for a panel of W (a, plain or
// masked) and kTile positions of a gathered tile (x, rows kTile floats apart).
template <int kBlock, int kTile, int kPrefetchFloats, typename A>
inline void ConvChannelTileProduct(A a, const float* __restrict x, GemmVector (&c)[kTile][kConvChannelVectors]) {
  static_assert(kConvChannelRows % kMaskBlockWords == 0, "a masked panel step unmasks whole blocks");
#pragma GCC unroll 16
  for (int p = 0; p < kTile; ++p) {
#pragma GCC unroll 8
    for (int v = 0; v < kConvChannelVectors; ++v) c[p][v] = GemmVector{};
  }
  for (int k = 0; k < kBlock; ++k) {
    GemmVector wv[kConvChannelVectors];
    if constexpr (kIsMasked<A>) {
      float unmasked[kConvChannelRows];
      for (int b = 0; b < kConvChannelRows; b += kMaskBlockWords) {
        a.LoadBlock(static_cast<std::size_t>(k) * kConvChannelRows + b, unmasked + b);
      }
#pragma GCC unroll 8
      for (int v = 0; v < kConvChannelVectors; ++v) LoadVector(unmasked + v * kGemmVectorFloats, &wv[v]);
    } else {
      const float* ak = a + k * kConvChannelRows;
      if constexpr (kPrefetchFloats > 0) PrefetchAhead(ak, kPrefetchFloats * sizeof(float));
#pragma GCC unroll 8
      for (int v = 0; v < kConvChannelVectors; ++v) LoadVector(ak + v * kGemmVectorFloats, &wv[v]);
    }
#pragma GCC unroll 16
    for (int p = 0; p < kTile; ++p) {
      const float xv = x[k * kTile + p];
#pragma GCC unroll 8
      for (int v = 0; v < kConvChannelVectors; ++v) c[p][v] += xv * wv[v];
    }
  }
}

// P: as Conv2D (groups must be 1), plus kBlockK and kTilePositions. `scratch` holds
// ConvPaddedInput<P>::kFloats, then (kPositions + 13) x (panels x kConvChannelRows) sums, then
// (kPositions + 13) x kBlockK + kConvSpareFloats gathered floats (13: whole tiles of up to 14).
template <typename P, typename W, typename B>
inline void Conv2DGemmChannels(const float* x, W packed_w, B bias, float* y, float* scratch,
                               const float* residual = nullptr) {
  static_assert(P::kGroups == 1, "grouped convolutions use Conv2D");
  constexpr int kK = ConvKBlocks<P>::kK;
  constexpr int kPositions = P::kOH * P::kOW;
  constexpr int kBlockK = ConvKBlocks<P>::kBlockK;
  constexpr int kBlocks = ConvKBlocks<P>::kBlocks;
  constexpr int kTailK = ConvKBlocks<P>::kTailK;
  constexpr int kTile = P::kTilePositions < kConvChannelPositionsMax ? P::kTilePositions : kConvChannelPositionsMax;
  constexpr int kTiles = (kPositions + kTile - 1) / kTile;
  constexpr int kPanels = (P::kM + kConvChannelRows - 1) / kConvChannelRows;
  constexpr int kSumRow = kPanels * kConvChannelRows;
  float* sums = scratch + ConvPaddedInput<P>::kFloats;
  float* gathered = sums + static_cast<std::size_t>(kTiles) * kTile * kSumRow;
  for (int n = 0; n < P::kN; ++n) {
    const float* in = x + static_cast<std::size_t>(n) * P::kC * P::kH * P::kW;
    if constexpr (ConvPaddedInput<P>::kUsed) PadConvInput<P>(in, scratch);
    for (int block = 0; block < kBlocks; ++block) {
      const int k0 = block * kBlockK;
      const int kc = block + 1 < kBlocks ? kBlockK : kTailK;
      for (int t = 0; t < kTiles; ++t) {
        const int cols = kPositions - t * kTile < kTile ? kPositions - t * kTile : kTile;
        GatherConvTile<P, kTile>(in, scratch, k0, kc, t * kTile, cols,
                                 gathered + static_cast<std::size_t>(t) * kBlockK * kTile);
      }
      for (int panel = 0; panel < kPanels; ++panel) {
        const W a = packed_w + (static_cast<std::size_t>(panel) * kK + k0) * kConvChannelRows;
        for (int t = 0; t < kTiles; ++t) {
          const float* tile = gathered + static_cast<std::size_t>(t) * kBlockK * kTile;
          GemmVector c[kTile][kConvChannelVectors];
          // The same block of the next panel of W, which the first tile reads from memory.
          if (block + 1 < kBlocks) {
            ConvChannelTileProduct<kBlockK, kTile, kK * kConvChannelRows>(a, tile, c);
          } else {
            ConvChannelTileProduct<kTailK, kTile, kK * kConvChannelRows>(a, tile, c);
          }
          float* sum = sums + static_cast<std::size_t>(t) * kTile * kSumRow + panel * kConvChannelRows;
          for (int p = 0; p < kTile; ++p) {
#pragma GCC unroll 8
            for (int v = 0; v < kConvChannelVectors; ++v) {
              float* at = sum + p * kSumRow + v * kGemmVectorFloats;
              if (block > 0) {
                GemmVector previous;
                LoadVector(at, &previous);
                c[p][v] += previous;
              }
              std::memcpy(at, &c[p][v], sizeof(GemmVector));
            }
          }
        }
      }
    }
    float* out = y + static_cast<std::size_t>(n) * P::kM * kPositions;
    const float* res = residual ? residual + static_cast<std::size_t>(n) * P::kM * kPositions : nullptr;
    for (int m = 0; m < P::kM; ++m) {
      const float b = OptionalAt(bias, m);
      for (int p = 0; p < kPositions; ++p) {
        const std::size_t at = static_cast<std::size_t>(m) * kPositions + p;
        const float v = sums[static_cast<std::size_t>(p) * kSumRow + m] + b + (res != nullptr ? res[at] : 0.f);
        out[at] = Activate<P::kActivation>(v, P::kClipLo, P::kClipHi);
      }
    }
  }
}

// Y[M,N] = alpha * op(A) * op(B) + beta * C, op = optional transpose; C broadcast by strides
// (kCStrideM, kCStrideN are 0 along broadcast axes; C is nullptr when absent).
// P: kM kN kK kTransA kTransB kAlpha kBeta kCStrideM kCStrideN kActivation kClipLo kClipHi.
template <typename P, typename A, typename B, typename C>
inline void Gemm(A a, B b, C c, float* y) {
  for (int m = 0; m < P::kM; ++m) {
    float* row = y + static_cast<std::size_t>(m) * P::kN;
    for (int n = 0; n < P::kN; ++n) row[n] = 0.f;
    for (int k = 0; k < P::kK; ++k) {
      const float av = P::kTransA ? a[static_cast<std::size_t>(k) * P::kM + m]
                                  : a[static_cast<std::size_t>(m) * P::kK + k];
      if constexpr (P::kTransB) {
        for (int n = 0; n < P::kN; ++n) row[n] += av * b[static_cast<std::size_t>(n) * P::kK + k];
      } else {
        AddScaledRow(av, b + static_cast<std::size_t>(k) * P::kN, row, P::kN);
      }
    }
    for (int n = 0; n < P::kN; ++n) {
      float v = P::kAlpha * row[n];
      if constexpr (!std::is_same_v<C, std::nullptr_t>) {
        if (Present(c)) v += P::kBeta * c[m * P::kCStrideM + n * P::kCStrideN];
      }
      row[n] = Activate<P::kActivation>(v, P::kClipLo, P::kClipHi);
    }
  }
}

// Y[M,N] = A[M,K] * B[K,N] (+ bias[N]), then the activation, where B is known at generation time
// (a Dense/Linear layer's weights): the generator packs B into panels of kMatMulPanelCols
// columns, [ceil(N / kMatMulPanelCols)][K][kMatMulPanelCols] with zero columns padding the last.
// A is packed at run time into `scratch`, kGemmRows rows at a time ([ceil(M / kGemmRows)][K]
// [kGemmRows], zero rows past M), so that the micro-kernel broadcasts A's values against rows of a
// B panel. Each B panel (K x 32 floats) then stays in L1 while every block of A's rows passes it.
// P: kM kK kN kActivation kClipLo kClipHi; bias is nullptr when absent.
constexpr int kMatMulPanelCols = 32;  // a multiple of every target's kGemmCols
template <typename P>
inline void MatMulPackedB(const float* a, const float* packed_b, const float* bias, float* y, float* scratch) {
  constexpr int kRowBlocks = (P::kM + kGemmRows - 1) / kGemmRows;
  constexpr int kPanels = (P::kN + kMatMulPanelCols - 1) / kMatMulPanelCols;
  for (int rb = 0; rb < kRowBlocks; ++rb) {
    float* dst = scratch + static_cast<std::size_t>(rb) * P::kK * kGemmRows;
    for (int i = 0; i < kGemmRows; ++i) {
      const int m = rb * kGemmRows + i;
      const float* row = a + static_cast<std::size_t>(m) * P::kK;
      for (int k = 0; k < P::kK; ++k) dst[k * kGemmRows + i] = m < P::kM ? row[k] : 0.f;
    }
  }
  for (int panel = 0; panel < kPanels; ++panel) {
    const float* b = packed_b + static_cast<std::size_t>(panel) * P::kK * kMatMulPanelCols;
    for (int rb = 0; rb < kRowBlocks; ++rb) {
      const float* a_block = scratch + static_cast<std::size_t>(rb) * P::kK * kGemmRows;
      const int rows = P::kM - rb * kGemmRows < kGemmRows ? P::kM - rb * kGemmRows : kGemmRows;
      for (int c0 = 0; c0 < kMatMulPanelCols; c0 += kGemmCols) {
        const int col = panel * kMatMulPanelCols + c0;
        if (col >= P::kN) break;
        const int cols = P::kN - col < kGemmCols ? P::kN - col : kGemmCols;
        GemmRow acc[kGemmRows];
        GemmMicroKernel<P::kK, kMatMulPanelCols>(a_block, b + c0, acc);
        for (int i = 0; i < rows; ++i) {
          float* out = y + static_cast<std::size_t>(rb * kGemmRows + i) * P::kN + col;
          for (int j = 0; j < cols; ++j) {
            const float v = acc[i].v[j / kGemmVectorFloats][j % kGemmVectorFloats] + (bias != nullptr ? bias[col + j] : 0.f);
            out[j] = Activate<P::kActivation>(v, P::kClipLo, P::kClipHi);
          }
        }
      }
    }
  }
}

// Y[M,N] = A[M,K] * B[K,N], one matrix of a (possibly batched) MatMul.
template <int M, int K, int N, typename A, typename B>
inline void MatMul(A a, B b, float* y) {
  for (int m = 0; m < M; ++m) {
    float* row = y + static_cast<std::size_t>(m) * N;
    for (int n = 0; n < N; ++n) row[n] = 0.f;
    for (int k = 0; k < K; ++k) {
      const float av = a[static_cast<std::size_t>(m) * K + k];
      AddScaledRow(av, b + static_cast<std::size_t>(k) * N, row, N);
    }
  }
}

// Max or average pooling over 2-D windows, NCHW (a 1-D pool is a 2-D one with H = 1).
// P: kNC kH kW kKH kKW kOH kOW kStrideH kStrideW kPadTop kPadLeft kDilH kDilW kCountIncludePad.
// The output columns of a pooling window row whose tap kw reads inside the input row:
// ow in [*begin, *end), with iw = ow * stride + *shift.
template <typename P>
inline void PoolTapColumns(int kw, int* begin, int* end, int* shift) {
  *shift = kw * P::kDilW - P::kPadLeft;
  *begin = *shift >= 0 ? 0 : (-*shift + P::kStrideW - 1) / P::kStrideW;
  const int last = P::kW - 1 - *shift;  // the largest ow * stride still inside
  *end = last < 0 ? 0 : (last / P::kStrideW + 1 < P::kOW ? last / P::kStrideW + 1 : P::kOW);
  if (*begin > *end) *begin = *end;
}

// Output rows at least this long are pooled row-wise (below); shorter ones window by window.
constexpr int kPoolRowMin = 16;

// Both pools work an output row at a time: every tap of the window updates the whole row over
// the columns where it reads inside the input, so the inner loops have no branches and
// vectorise. The window always holds at least one input element (padding is smaller than the
// kernel, which the generator checks).
template <typename P>
inline void MaxPool2D(const float* x, float* y) {
  // Rows shorter than a few vectors lose more to loop set-up than vectorising gains: there,
  // window by window.
  if constexpr (P::kOW < kPoolRowMin) {
    for (int nc = 0; nc < P::kNC; ++nc) {
      const float* in = x + static_cast<std::size_t>(nc) * P::kH * P::kW;
      float* out = y + static_cast<std::size_t>(nc) * P::kOH * P::kOW;
      for (int oh = 0; oh < P::kOH; ++oh) {
        for (int ow = 0; ow < P::kOW; ++ow) {
          float best = -std::numeric_limits<float>::infinity();
          for (int kh = 0; kh < P::kKH; ++kh) {
            const int ih = oh * P::kStrideH - P::kPadTop + kh * P::kDilH;
            if (ih < 0 || ih >= P::kH) continue;
            for (int kw = 0; kw < P::kKW; ++kw) {
              const int iw = ow * P::kStrideW - P::kPadLeft + kw * P::kDilW;
              if (iw < 0 || iw >= P::kW) continue;
              const float v = in[ih * P::kW + iw];
              // NaN propagates, as ONNX's reference does.
              if (v > best || v != v) best = v;
            }
          }
          out[oh * P::kOW + ow] = best;
        }
      }
    }
  } else {
    for (int nc = 0; nc < P::kNC; ++nc) {
      const float* in = x + static_cast<std::size_t>(nc) * P::kH * P::kW;
      float* out = y + static_cast<std::size_t>(nc) * P::kOH * P::kOW;
      for (int oh = 0; oh < P::kOH; ++oh) {
        float* __restrict out_row = out + oh * P::kOW;
        for (int ow = 0; ow < P::kOW; ++ow) out_row[ow] = -std::numeric_limits<float>::infinity();
        for (int kh = 0; kh < P::kKH; ++kh) {
          const int ih = oh * P::kStrideH - P::kPadTop + kh * P::kDilH;
          if (ih < 0 || ih >= P::kH) continue;
          const float* __restrict in_row = in + ih * P::kW;
          for (int kw = 0; kw < P::kKW; ++kw) {
            int begin, end, shift;
            PoolTapColumns<P>(kw, &begin, &end, &shift);
            for (int ow = begin; ow < end; ++ow) {
              const float v = in_row[ow * P::kStrideW + shift];
              const float best = out_row[ow];
              // NaN propagates, as ONNX's reference does.
              out_row[ow] = (v > best || v != v) ? v : best;
            }
          }
        }
      }
    }
  }
}

// Short rows of a small plane, stride 1 (a 3x3 smoothing of an 8x8 map): the plane is copied
// into a zero-bordered local one, so that every window sums all its taps without a bound check
// and each output row is a vectorisable sum of shifted rows; the divisor of each window, which
// only depends on where it sits, comes from a separable table.
// Along one axis of a stride-1 pool: how many taps of the window at each output position count
// towards its divisor (those inside the input, or with count_include_pad inside the padded input).
template <int kOut, int kK, int kDil, int kIn, int kPadBegin, int kPadEnd, bool kIncludePad>
inline void StrideOneTapCounts(float* counts) {
  for (int o = 0; o < kOut; ++o) {
    int count = 0;
    for (int k = 0; k < kK; ++k) {
      const int i = o - kPadBegin + k * kDil;
      count += kIncludePad ? (i < kIn + kPadEnd) : (i >= 0 && i < kIn);
    }
    counts[o] = static_cast<float>(count);
  }
}

template <typename P>
constexpr bool kAveragePoolViaBorderedPlane =
    P::kOW < kPoolRowMin && P::kStrideH == 1 && P::kStrideW == 1 &&
    (P::kH + P::kPadTop + P::kPadBottom) * (P::kW + P::kPadLeft + P::kPadRight) <= 4096 &&
    (P::kOH - 1) + (P::kKH - 1) * P::kDilH < P::kH + P::kPadTop + P::kPadBottom &&
    (P::kOW - 1) + (P::kKW - 1) * P::kDilW < P::kW + P::kPadLeft + P::kPadRight;

template <typename P>
inline void AveragePool2D(const float* x, float* y) {
  if constexpr (kAveragePoolViaBorderedPlane<P>) {
    constexpr int kPH = P::kH + P::kPadTop + P::kPadBottom;
    constexpr int kPW = P::kW + P::kPadLeft + P::kPadRight;
    float count_h[P::kOH], count_w[P::kOW];
    StrideOneTapCounts<P::kOH, P::kKH, P::kDilH, P::kH, P::kPadTop, P::kPadBottom, P::kCountIncludePad>(count_h);
    StrideOneTapCounts<P::kOW, P::kKW, P::kDilW, P::kW, P::kPadLeft, P::kPadRight, P::kCountIncludePad>(count_w);
    float plane[kPH * kPW] = {};
    for (int nc = 0; nc < P::kNC; ++nc) {
      const float* in = x + static_cast<std::size_t>(nc) * P::kH * P::kW;
      float* out = y + static_cast<std::size_t>(nc) * P::kOH * P::kOW;
      for (int h = 0; h < P::kH; ++h) {
        for (int w = 0; w < P::kW; ++w) plane[(h + P::kPadTop) * kPW + w + P::kPadLeft] = in[h * P::kW + w];
      }
      for (int oh = 0; oh < P::kOH; ++oh) {
        float sum[P::kOW] = {};
        for (int kh = 0; kh < P::kKH; ++kh) {
          for (int kw = 0; kw < P::kKW; ++kw) {
            const float* row = plane + (oh + kh * P::kDilH) * kPW + kw * P::kDilW;
            for (int ow = 0; ow < P::kOW; ++ow) sum[ow] += row[ow];
          }
        }
        for (int ow = 0; ow < P::kOW; ++ow) out[oh * P::kOW + ow] = sum[ow] / (count_h[oh] * count_w[ow]);
      }
    }
  } else if constexpr (P::kOW < kPoolRowMin) {
    for (int nc = 0; nc < P::kNC; ++nc) {
      const float* in = x + static_cast<std::size_t>(nc) * P::kH * P::kW;
      float* out = y + static_cast<std::size_t>(nc) * P::kOH * P::kOW;
      for (int oh = 0; oh < P::kOH; ++oh) {
        for (int ow = 0; ow < P::kOW; ++ow) {
          float sum = 0.f;
          int count = 0;
          // With count_include_pad the divisor counts padded positions inside the padded input,
          // not the part of the window that hangs past the end (ceil_mode).
          int padded_count = 0;
          for (int kh = 0; kh < P::kKH; ++kh) {
            const int ih = oh * P::kStrideH - P::kPadTop + kh * P::kDilH;
            for (int kw = 0; kw < P::kKW; ++kw) {
              const int iw = ow * P::kStrideW - P::kPadLeft + kw * P::kDilW;
              if (ih < P::kH + P::kPadBottom && iw < P::kW + P::kPadRight) ++padded_count;
              if (ih < 0 || ih >= P::kH || iw < 0 || iw >= P::kW) continue;
              sum += in[ih * P::kW + iw];
              ++count;
            }
          }
          const int divisor = P::kCountIncludePad ? padded_count : count;
          out[oh * P::kOW + ow] = divisor > 0 ? sum / static_cast<float>(divisor) : 0.f;
        }
      }
    }
  } else {
    // Divisors are separable: (taps counted along H) x (taps counted along W). Without
    // count_include_pad a tap counts when it reads inside the input; with it, when it reads inside
    // the padded input (a window hanging past the padding, with ceil_mode, still does not count).
    float col_count[P::kOW];
    for (int ow = 0; ow < P::kOW; ++ow) {
      int count = 0;
      for (int kw = 0; kw < P::kKW; ++kw) {
        const int iw = ow * P::kStrideW - P::kPadLeft + kw * P::kDilW;
        count += P::kCountIncludePad ? (iw < P::kW + P::kPadRight) : (iw >= 0 && iw < P::kW);
      }
      col_count[ow] = static_cast<float>(count);
    }
    for (int nc = 0; nc < P::kNC; ++nc) {
      const float* in = x + static_cast<std::size_t>(nc) * P::kH * P::kW;
      float* out = y + static_cast<std::size_t>(nc) * P::kOH * P::kOW;
      for (int oh = 0; oh < P::kOH; ++oh) {
        float* __restrict out_row = out + oh * P::kOW;
        for (int ow = 0; ow < P::kOW; ++ow) out_row[ow] = 0.f;
        int row_count = 0;
        for (int kh = 0; kh < P::kKH; ++kh) {
          const int ih = oh * P::kStrideH - P::kPadTop + kh * P::kDilH;
          if (P::kCountIncludePad ? ih < P::kH + P::kPadBottom : (ih >= 0 && ih < P::kH)) ++row_count;
          if (ih < 0 || ih >= P::kH) continue;
          const float* __restrict in_row = in + ih * P::kW;
          for (int kw = 0; kw < P::kKW; ++kw) {
            int begin, end, shift;
            PoolTapColumns<P>(kw, &begin, &end, &shift);
            for (int ow = begin; ow < end; ++ow) out_row[ow] += in_row[ow * P::kStrideW + shift];
          }
        }
        // Every window holds an input element (padding is smaller than the kernel), so no
        // divisor is zero.
        const float rows = static_cast<float>(row_count);
        for (int ow = 0; ow < P::kOW; ++ow) out_row[ow] /= rows * col_count[ow];
      }
    }
  }
}

// Mean (or max) over the trailing `kSpatial` elements of each of `kNC` rows.
// Partial results kept in this many independent lanes by the reductions below: a whole number of
// vectors on every target, and enough of them that consecutive adds do not wait on each other. A
// single running sum would be one long dependency chain the compiler may not reorder.
constexpr int kReduceLanes = 32;

// The sum of x[0 .. kCount), lane by lane, the lanes added together at the end.
template <int kCount>
inline float LaneSum(const float* x) {
  float lanes[kReduceLanes] = {};
  int i = 0;
  for (; i + kReduceLanes <= kCount; i += kReduceLanes) {
    for (int l = 0; l < kReduceLanes; ++l) lanes[l] += x[i + l];
  }
  for (int l = 0; i < kCount; ++i, ++l) lanes[l] += x[i];
  float sum = 0.f;
  for (int l = 0; l < kReduceLanes; ++l) sum += lanes[l];
  return sum;
}

template <int kNC, int kSpatial>
inline void GlobalAveragePool(const float* x, float* y) {
  for (int nc = 0; nc < kNC; ++nc) {
    y[nc] = LaneSum<kSpatial>(x + static_cast<std::size_t>(nc) * kSpatial) / static_cast<float>(kSpatial);
  }
}

// max(best, v), where NaN wins (as numpy.max): a select the compiler vectorises.
inline float MaxOrNaN(float best, float v) { return v > best || v != v ? v : best; }

template <int kNC, int kSpatial>
inline void GlobalMaxPool(const float* x, float* y) {
  for (int nc = 0; nc < kNC; ++nc) {
    const float* in = x + static_cast<std::size_t>(nc) * kSpatial;
    float lanes[kReduceLanes];
    for (int l = 0; l < kReduceLanes; ++l) lanes[l] = -std::numeric_limits<float>::infinity();
    int i = 0;
    for (; i + kReduceLanes <= kSpatial; i += kReduceLanes) {
      for (int l = 0; l < kReduceLanes; ++l) lanes[l] = MaxOrNaN(lanes[l], in[i + l]);
    }
    for (int l = 0; i < kSpatial; ++i, ++l) lanes[l] = MaxOrNaN(lanes[l], in[i]);
    float best = lanes[0];
    for (int l = 1; l < kReduceLanes; ++l) best = MaxOrNaN(best, lanes[l]);
    y[nc] = best;
  }
}

// y = x * scale[c] + shift[c] over NC(spatial): inference BatchNormalization after the
// generator has folded mean, variance and epsilon into scale and shift.
template <int kN, int kC, int kSpatial, typename S, typename T>
inline void ChannelAffine(const float* x, S scale, T shift, float* y) {
  for (int n = 0; n < kN; ++n) {
    for (int c = 0; c < kC; ++c) {
      const std::size_t base = (static_cast<std::size_t>(n) * kC + c) * kSpatial;
      const float s = scale[c];
      const float t = shift[c];
      for (int i = 0; i < kSpatial; ++i) y[base + i] = x[base + i] * s + t;
    }
  }
}

// Softmax (or log-softmax) along an axis of extent kAxis, with kInner elements between
// consecutive entries of that axis and kOuter independent groups. In place is allowed.
// A contiguous axis (kInner == 1, the usual case) keeps kSoftmaxLanes partial maxima and sums, so
// that the reductions vectorise without reassociating float additions behind the compiler's back.
constexpr int kSoftmaxLanes = 16;
template <int kOuter, int kAxis, int kInner, bool kLog>
inline void Softmax(const float* x, float* y) {
  for (int o = 0; o < kOuter; ++o) {
    for (int i = 0; i < kInner; ++i) {
      const std::size_t base = static_cast<std::size_t>(o) * kAxis * kInner + i;
      const float* in = x + base;
      float* out = y + base;
      float max_v = -std::numeric_limits<float>::infinity();
      float sum = 0.f;
      if constexpr (kInner == 1) {
        constexpr int kWhole = kAxis / kSoftmaxLanes * kSoftmaxLanes;
        float lane_max[kSoftmaxLanes];
        for (int l = 0; l < kSoftmaxLanes; ++l) lane_max[l] = -std::numeric_limits<float>::infinity();
        for (int a = 0; a < kWhole; a += kSoftmaxLanes) {
          for (int l = 0; l < kSoftmaxLanes; ++l) lane_max[l] = in[a + l] > lane_max[l] ? in[a + l] : lane_max[l];
        }
        for (int l = 0; l < kSoftmaxLanes; ++l) max_v = std::fmax(max_v, lane_max[l]);
        for (int a = kWhole; a < kAxis; ++a) max_v = std::fmax(max_v, in[a]);
        float lane_sum[kSoftmaxLanes] = {};
        for (int a = 0; a < kWhole; a += kSoftmaxLanes) {
          for (int l = 0; l < kSoftmaxLanes; ++l) {
            const float e = Exp(in[a + l] - max_v);
            if constexpr (!kLog) out[a + l] = e;
            lane_sum[l] += e;
          }
        }
        for (int l = 0; l < kSoftmaxLanes; ++l) sum += lane_sum[l];
        for (int a = kWhole; a < kAxis; ++a) {
          const float e = Exp(in[a] - max_v);
          if constexpr (!kLog) out[a] = e;
          sum += e;
        }
        if constexpr (kLog) {
          const float log_sum = std::log(sum);
          for (int a = 0; a < kAxis; ++a) out[a] = in[a] - max_v - log_sum;
        } else {
          const float inv = 1.f / sum;
          for (int a = 0; a < kAxis; ++a) out[a] *= inv;
        }
      } else {
        for (int a = 0; a < kAxis; ++a) max_v = std::fmax(max_v, in[a * kInner]);
        for (int a = 0; a < kAxis; ++a) sum += Exp(in[a * kInner] - max_v);
        if constexpr (kLog) {
          const float log_sum = std::log(sum);
          for (int a = 0; a < kAxis; ++a) out[a * kInner] = in[a * kInner] - max_v - log_sum;
        } else {
          const float inv = 1.f / sum;
          for (int a = 0; a < kAxis; ++a) out[a * kInner] = Exp(in[a * kInner] - max_v) * inv;
        }
      }
    }
  }
}

// Softmax (or log-softmax) on float16 or bfloat16, step by step as numpy computes on them (and
// so onnx's reference evaluator): x - max, its exp, the sum, the quotient and the log each round
// into T. numpy sums along the last axis in float, along another one rounding each partial sum.
// In place is allowed.
template <int kOuter, int kAxis, int kInner, bool kLog, typename T>
inline void NarrowSoftmax(const T* x, T* y) {
  const auto rounded = [](float value) { return ToFloat(RoundTo<T>(value)); };
  for (int o = 0; o < kOuter; ++o) {
    for (int i = 0; i < kInner; ++i) {
      const std::size_t base = static_cast<std::size_t>(o) * kAxis * kInner + i;
      float max_v = -std::numeric_limits<float>::infinity();
      for (int a = 0; a < kAxis; ++a) max_v = std::fmax(max_v, ToFloat(x[base + a * kInner]));
      float sum = 0.f;
      for (int a = 0; a < kAxis; ++a) {
        sum += rounded(std::exp(rounded(ToFloat(x[base + a * kInner]) - max_v)));
        if constexpr (kInner > 1) sum = rounded(sum);
      }
      sum = rounded(sum);
      for (int a = 0; a < kAxis; ++a) {
        const float e = rounded(std::exp(rounded(ToFloat(x[base + a * kInner]) - max_v)));
        const float quotient = rounded(e / sum);
        y[base + a * kInner] = RoundTo<T>(kLog ? std::log(quotient) : quotient);
      }
    }
  }
}

}  // namespace pure_model

// Families of kernels in headers of their own, which build on the ones above.
#include "pure_model/spatial.h"
#include "pure_model/recurrent_kernels.h"

#endif  // RULES_PURE_MODEL_RUNTIME_KERNELS_H_
