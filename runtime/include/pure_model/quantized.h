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
#include <type_traits>

#if defined(__SSE2__)
#include <immintrin.h>
#endif

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
//
// Both passes run on vectors of kDqlLanes floats. The range: lane-wise running minima and maxima
// (NaN never replaces a bound, as in one sequential pass; min and max do not depend on the order
// otherwise), then across the lanes. The quantization: x / scale is clamped to +-1024 first
// (anything beyond saturates either way, and NaN becomes the low end, as Saturate makes it), so
// that adding and subtracting 1.5 * 2^23 rounds it half to even, as std::nearbyint does.
#if defined(__AVX512F__)
constexpr int kDqlLanes = 16;
#elif defined(__AVX__)
constexpr int kDqlLanes = 8;
#else
constexpr int kDqlLanes = 4;  // SSE2, NEON
#endif
typedef float DqlVector __attribute__((vector_size(kDqlLanes * sizeof(float))));
typedef std::int32_t DqlInts __attribute__((vector_size(kDqlLanes * sizeof(std::int32_t))));

// Stores ints (values in [0, 255]) to y as bytes: with AVX-512 one narrowing conversion
// (vpmovdb); narrower, a shuffle of each lane's low byte (the conversion goes lane by lane there).
inline void StoreDqlBytes(DqlInts ints, std::uint8_t* y) {
  typedef std::uint8_t Narrow __attribute__((vector_size(kDqlLanes)));
#if defined(__AVX512F__)
  const Narrow low = __builtin_convertvector(ints, Narrow);
#else
  typedef std::uint8_t Bytes __attribute__((vector_size(sizeof(DqlInts))));
  constexpr int b = __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__ ? 0 : 3;  // the low byte of a lane
  const Bytes bytes = reinterpret_cast<Bytes>(ints);
#if defined(__AVX__)
  const Narrow low = __builtin_shufflevector(bytes, bytes, b, 4 + b, 8 + b, 12 + b, 16 + b, 20 + b, 24 + b, 28 + b);
#else
  const Narrow low = __builtin_shufflevector(bytes, bytes, b, 4 + b, 8 + b, 12 + b);
#endif
#endif
  std::memcpy(y, &low, sizeof(low));
}

template <std::size_t kN>
inline void DynamicQuantizeLinear(const float* x, std::uint8_t* y, float* y_scale, std::uint8_t* y_zero_point) {
  constexpr std::size_t kVectors = kN / kDqlLanes;
  DqlVector lo_v = {}, hi_v = {};
  for (std::size_t v = 0; v < kVectors; ++v) {
    DqlVector xv;
    std::memcpy(&xv, x + v * kDqlLanes, sizeof(xv));
    lo_v = xv < lo_v ? xv : lo_v;
    hi_v = xv > hi_v ? xv : hi_v;
  }
  float lo = 0.f, hi = 0.f;
  for (int l = 0; l < kDqlLanes; ++l) {
    lo = lo_v[l] < lo ? lo_v[l] : lo;
    hi = hi_v[l] > hi ? hi_v[l] : hi;
  }
  for (std::size_t i = kVectors * kDqlLanes; i < kN; ++i) {
    lo = x[i] < lo ? x[i] : lo;
    hi = x[i] > hi ? x[i] : hi;
  }
  const float scale = (hi == lo ? 1.f : hi - lo) / 255.f;
  const float zero = std::nearbyint(Saturate(0.f - lo / scale, 0.f, 255.f));
  constexpr float kBound = 1024.f;
  constexpr float kRound = 12582912.f;  // 1.5 * 2^23
  const DqlVector scale_v = DqlVector{} + scale, zero_v = DqlVector{} + zero;
  const DqlVector bound_lo = DqlVector{} - kBound, bound_hi = DqlVector{} + kBound;
  const DqlVector y_lo = {}, y_hi = DqlVector{} + 255.f;
  for (std::size_t v = 0; v < kVectors; ++v) {
    DqlVector q;
    std::memcpy(&q, x + v * kDqlLanes, sizeof(q));
    q /= scale_v;
    q = q > bound_lo ? q : bound_lo;
    q = q < bound_hi ? q : bound_hi;
    q = (q + kRound) - kRound;
    q += zero_v;
    q = q > y_lo ? q : y_lo;
    q = q < y_hi ? q : y_hi;
    StoreDqlBytes(__builtin_convertvector(q, DqlInts), y + v * kDqlLanes);
  }
  for (std::size_t i = kVectors * kDqlLanes; i < kN; ++i) {
    y[i] = static_cast<std::uint8_t>(Saturate(std::nearbyint(x[i] / scale) + zero, 0.f, 255.f));
  }
  *y_scale = scale;
  *y_zero_point = static_cast<std::uint8_t>(zero);
}

// --- Integer matrix products --------------------------------------------------------------
//
// Y[r][l] = sum over k of P[r][k] * L[k][l], in exact int32 that wraps as ONNX's accumulator
// does: ConvInteger with r an output channel, l an output position, P the weights and L the
// gathered input; MatMulInteger with r a row of A, l a column of B, P = A and L = B. Both
// operands have their zero points subtracted first, so every value lies in [-255, 255].
//
// K runs in pairs: the products of two 16-bit pairs summed into one 32-bit lane (vpmaddwd on
// x86) are exact for such values (at most 2 * 255 * 255 in magnitude). The byte instructions are
// not: vpmaddubsw saturates its 16-bit pair sums, which 255 * 127 + 255 * 127 overflows.
//
// P, the "pair operand", is int16 pairs (k even, k odd), broadcast to every lane, in groups of
// kQGroupRows rows: [ceil(R / 4)][K2][4][2], K2 = ceil(K / 2). L, the "lane operand", is in
// panels of kQLanes lanes, [ceil(lanes / 16)][K2][16][2], of int16 or of the 8-bit type itself:
// MatMulInteger's B, packed at generation time into the weights blob, widens as it loads (its
// zero point is accounted for after the product, see MatMulInteger). Padding (k past K, rows
// and lanes past the end) is zero; results in padded rows and lanes are never stored.
constexpr int kQGroupRows = 4;
constexpr int kQLanes = 16;
constexpr int kQPanelStep = 2 * kQLanes;  // values of one pair of k in a panel

// The register tile: kQTileRows rows of P x kQTilePanels panels of L, whose int32 accumulators
// stay in registers over the whole of K (measured on Zen 4: larger tiles make GCC spill
// accumulators, as it keeps every broadcast in its own register).
//
// PURE_MODEL_PORTABLE_KERNELS selects the portable tile on every target (to test it on x86).
#if defined(__AVX512BW__) && !defined(PURE_MODEL_PORTABLE_KERNELS)
constexpr int kQTileRows = 4, kQTilePanels = 4;  // 16 of the 32 zmm registers
#else
constexpr int kQTileRows = 4, kQTilePanels = 1;  // AVX2: 8 of the 16 ymm registers (SSE2: 16 xmm)
#endif

// The vector operations of the tile, per target. Pairs: one pair step of a panel (32 values);
// Acc: its 16 int32 sums; Broadcast: one pair of P in every lane.
#if defined(__AVX512BW__) && !defined(PURE_MODEL_PORTABLE_KERNELS)
struct QSimd {
  using Pairs = __m512i;
  using Acc = __m512i;
  using Broadcast = __m512i;
  static Acc Zero() { return _mm512_setzero_si512(); }
  static Pairs Load(const std::int16_t* p) { return _mm512_loadu_si512(p); }
  static Pairs Load(const std::uint8_t* p) {
    return _mm512_cvtepu8_epi16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
  }
  static Pairs Load(const std::int8_t* p) {
    return _mm512_cvtepi8_epi16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
  }
  static Broadcast Splat(std::int32_t pair) { return _mm512_set1_epi32(pair); }
  static Acc MulAdd(Acc acc, Broadcast w, Pairs v) { return _mm512_add_epi32(acc, _mm512_madd_epi16(w, v)); }
  static void Store(std::int32_t* dst, Acc acc) { _mm512_storeu_si512(dst, acc); }
};
#elif defined(__AVX2__) && !defined(PURE_MODEL_PORTABLE_KERNELS)
struct QSimd {
  struct Pairs {
    __m256i lo, hi;  // lanes 0-7, 8-15
  };
  using Acc = Pairs;
  using Broadcast = __m256i;
  static Acc Zero() { return {_mm256_setzero_si256(), _mm256_setzero_si256()}; }
  static Pairs Load(const std::int16_t* p) {
    return {_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)),
            _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + 16))};
  }
  static Pairs Load(const std::uint8_t* p) {
    return {_mm256_cvtepu8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))),
            _mm256_cvtepu8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 16)))};
  }
  static Pairs Load(const std::int8_t* p) {
    return {_mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))),
            _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 16)))};
  }
  static Broadcast Splat(std::int32_t pair) { return _mm256_set1_epi32(pair); }
  static Acc MulAdd(Acc acc, Broadcast w, Pairs v) {
    return {_mm256_add_epi32(acc.lo, _mm256_madd_epi16(w, v.lo)), _mm256_add_epi32(acc.hi, _mm256_madd_epi16(w, v.hi))};
  }
  static void Store(std::int32_t* dst, Acc acc) {
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst), acc.lo);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + 8), acc.hi);
  }
};
#elif defined(__SSE2__) && !defined(PURE_MODEL_PORTABLE_KERNELS)
// The x86-64 baseline: pmaddwd is SSE2 already (32-bit multiplies, pmulld, are not), a panel in
// four xmm registers. Bytes widen by interleaving (pmovzxbw is SSE4.1).
struct QSimd {
  struct Pairs {
    __m128i q[4];
  };
  using Acc = Pairs;
  using Broadcast = __m128i;
  static Acc Zero() { return {{_mm_setzero_si128(), _mm_setzero_si128(), _mm_setzero_si128(), _mm_setzero_si128()}}; }
  static Pairs Load(const std::int16_t* p) {
    Pairs v;
    for (int i = 0; i < 4; ++i) v.q[i] = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 8 * i));
    return v;
  }
  static Pairs Load(const std::uint8_t* p) {
    const __m128i zero = _mm_setzero_si128();
    const __m128i a = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
    const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 16));
    return {{_mm_unpacklo_epi8(a, zero), _mm_unpackhi_epi8(a, zero), _mm_unpacklo_epi8(b, zero),
             _mm_unpackhi_epi8(b, zero)}};
  }
  static Pairs Load(const std::int8_t* p) {
    // Each byte into the high half of a 16-bit lane, then shifted down with its sign.
    const __m128i a = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
    const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 16));
    return {{_mm_srai_epi16(_mm_unpacklo_epi8(a, a), 8), _mm_srai_epi16(_mm_unpackhi_epi8(a, a), 8),
             _mm_srai_epi16(_mm_unpacklo_epi8(b, b), 8), _mm_srai_epi16(_mm_unpackhi_epi8(b, b), 8)}};
  }
  static Broadcast Splat(std::int32_t pair) { return _mm_set1_epi32(pair); }
  static Acc MulAdd(Acc acc, Broadcast w, const Pairs& v) {
    for (int i = 0; i < 4; ++i) acc.q[i] = _mm_add_epi32(acc.q[i], _mm_madd_epi16(w, v.q[i]));
    return acc;
  }
  static void Store(std::int32_t* dst, const Acc& acc) {
    for (int i = 0; i < 4; ++i) _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + 4 * i), acc.q[i]);
  }
};
#else
// Portable: GCC's generic vectors of four lanes (NEON registers, or scalars); wider
// ones would change the ABI of these functions where the target lacks them. The pairs are split
// into their even and odd values, widened to 32 bits; the arithmetic runs on unsigned lanes,
// whose wrap-around C++ defines (the products themselves fit in int32).
typedef std::uint32_t QLanes4 __attribute__((vector_size(4 * sizeof(std::uint32_t))));
typedef std::int32_t QInts4 __attribute__((vector_size(4 * sizeof(std::int32_t))));
constexpr int kQQuarters = kQLanes / 4;
struct QSimd {
  struct Lanes {
    QLanes4 q[kQQuarters];
  };
  struct Pairs {
    Lanes even, odd;
  };
  using Acc = Lanes;
  using Broadcast = Pairs;
  static Acc Zero() { return Acc{}; }
  template <typename T>
  static Pairs Load(const T* p) {
    typedef T Eight __attribute__((vector_size(8 * sizeof(T))));
    Pairs out;
    for (int i = 0; i < kQQuarters; ++i) {
      Eight v;
      std::memcpy(&v, p + 8 * i, sizeof(v));
      const QInts4 even = __builtin_convertvector(__builtin_shufflevector(v, v, 0, 2, 4, 6), QInts4);
      const QInts4 odd = __builtin_convertvector(__builtin_shufflevector(v, v, 1, 3, 5, 7), QInts4);
      out.even.q[i] = reinterpret_cast<QLanes4>(even);
      out.odd.q[i] = reinterpret_cast<QLanes4>(odd);
    }
    return out;
  }
  static Broadcast Splat(std::int32_t pair) {
    std::int16_t values[2];  // as they were in memory, whatever the byte order
    std::memcpy(values, &pair, sizeof(values));
    Broadcast w;
    for (int i = 0; i < kQQuarters; ++i) {
      w.even.q[i] = QLanes4{} + static_cast<std::uint32_t>(static_cast<std::int32_t>(values[0]));
      w.odd.q[i] = QLanes4{} + static_cast<std::uint32_t>(static_cast<std::int32_t>(values[1]));
    }
    return w;
  }
  static Acc MulAdd(Acc acc, const Broadcast& w, const Pairs& v) {
    for (int i = 0; i < kQQuarters; ++i) acc.q[i] += w.even.q[i] * v.even.q[i] + w.odd.q[i] * v.odd.q[i];
    return acc;
  }
  static void Store(std::int32_t* dst, const Acc& acc) { std::memcpy(dst, acc.q, sizeof(acc.q)); }
};
#endif

// The int16 pair of row r (of a tile starting at a group boundary), step p, as one int32.
template <int kPairs>
inline std::int32_t QPairAt(const std::int16_t* pairs, int r, int p) {
  const std::size_t index = (static_cast<std::size_t>(r / kQGroupRows) * kPairs + p) * kQGroupRows + r % kQGroupRows;
  std::int32_t pair;
  std::memcpy(&pair, pairs + 2 * index, sizeof(pair));
  return pair;
}

// One register tile: y[r * row_stride + l] for kRows rows and kPanels panels of L (panel_stride
// values apart), the last panel's first `last_lanes` lanes only.
template <int kRows, int kPanels, int kPairs, typename TL>
inline void QTile(const std::int16_t* pairs, const TL* lanes, std::size_t panel_stride, std::int32_t* y,
                  std::size_t row_stride, int last_lanes) {
  typename QSimd::Acc acc[kRows][kPanels];
#pragma GCC unroll 32
  for (int r = 0; r < kRows; ++r) {
#pragma GCC unroll 4
    for (int j = 0; j < kPanels; ++j) acc[r][j] = QSimd::Zero();
  }
  for (int p = 0; p < kPairs; ++p) {
    typename QSimd::Pairs v[kPanels];
#pragma GCC unroll 4
    for (int j = 0; j < kPanels; ++j) {
      v[j] = QSimd::Load(lanes + j * panel_stride + static_cast<std::size_t>(p) * kQPanelStep);
    }
#pragma GCC unroll 32
    for (int r = 0; r < kRows; ++r) {
      const typename QSimd::Broadcast w = QSimd::Splat(QPairAt<kPairs>(pairs, r, p));
#pragma GCC unroll 4
      for (int j = 0; j < kPanels; ++j) acc[r][j] = QSimd::MulAdd(acc[r][j], w, v[j]);
    }
  }
  // Unrolled, as every loop over the tile: a constant index keeps acc in registers.
#pragma GCC unroll 32
  for (int r = 0; r < kRows; ++r) {
#pragma GCC unroll 4
    for (int j = 0; j < kPanels; ++j) {
      std::int32_t* out = y + static_cast<std::size_t>(r) * row_stride + j * kQLanes;
      if (j < kPanels - 1 || last_lanes == kQLanes) {
        QSimd::Store(out, acc[r][j]);
      } else {
        alignas(64) std::int32_t partial[kQLanes];
        QSimd::Store(partial, acc[r][j]);
        std::memcpy(out, partial, sizeof(std::int32_t) * last_lanes);
      }
    }
  }
}

// QTile with the panel count known only at run time (the last tile of a row of panels).
template <int kRows, int kPanels, int kPairs, typename TL>
inline void QTileOfPanels(int panels, const std::int16_t* pairs, const TL* lanes, std::size_t panel_stride,
                          std::int32_t* y, std::size_t row_stride, int last_lanes) {
  if (panels == kPanels) {
    QTile<kRows, kPanels, kPairs>(pairs, lanes, panel_stride, y, row_stride, last_lanes);
  } else if constexpr (kPanels > 1) {
    QTileOfPanels<kRows, kPanels - 1, kPairs>(panels, pairs, lanes, panel_stride, y, row_stride, last_lanes);
  }
}

// Y[kRows][lane_count] (rows kRowStride apart) = P L over kPairs pairs of k, tile by tile; the
// tiles of a column of panels run one after the other, while those panels are in the cache.
template <int kRows, int kPairs, int kRowStride, typename TL>
inline void QPairGemm(const std::int16_t* pairs, const TL* lanes, int lane_count, std::int32_t* y) {
  constexpr std::size_t kPanelStride = static_cast<std::size_t>(kPairs) * kQPanelStep;
  constexpr std::size_t kTileStride = static_cast<std::size_t>(kQTileRows / kQGroupRows) * kPairs * kQGroupRows * 2;
  constexpr int kFullTiles = kRows / kQTileRows;
  constexpr int kLastRows = kRows % kQTileRows;
  const int panels = (lane_count + kQLanes - 1) / kQLanes;
  for (int j0 = 0; j0 < panels; j0 += kQTilePanels) {
    const int tile_panels = panels - j0 < kQTilePanels ? panels - j0 : kQTilePanels;
    const int tail = lane_count - (j0 + tile_panels - 1) * kQLanes;
    const int last_lanes = tail < kQLanes ? tail : kQLanes;
    const TL* tile_lanes = lanes + j0 * kPanelStride;
    std::int32_t* tile_y = y + j0 * kQLanes;
    for (int t = 0; t < kFullTiles; ++t) {
      QTileOfPanels<kQTileRows, kQTilePanels, kPairs>(tile_panels, pairs + t * kTileStride, tile_lanes, kPanelStride,
                                                      tile_y + static_cast<std::size_t>(t) * kQTileRows * kRowStride,
                                                      kRowStride, last_lanes);
    }
    if constexpr (kLastRows > 0) {
      std::int32_t* last_y = tile_y + static_cast<std::size_t>(kFullTiles) * kQTileRows * kRowStride;
      QTileOfPanels<kLastRows, kQTilePanels, kPairs>(tile_panels, pairs + kFullTiles * kTileStride, tile_lanes,
                                                     kPanelStride, last_y, kRowStride, last_lanes);
    }
  }
}

// Packs an 8-bit matrix that is a model input as the generator packs constant ones, in blocks of
// kBlock rows by pairs of k, [ceil(kRows / kBlock)][K2][kBlock][2] (rows kRowStride apart, k
// kKStride apart; zeros pad): kQGroupRows for a convolution's weights (pair groups),
// kQLanes for MatMulInteger's B with its columns as the rows (lane panels).
template <int kBlock, int kRows, int kK, int kRowStride, int kKStride, typename T>
inline void QPackBlocks(const T* w, T* packed) {
  constexpr int kPairs = (kK + 1) / 2;
  constexpr int kBlocks = (kRows + kBlock - 1) / kBlock;
  for (int b = 0; b < kBlocks; ++b) {
    for (int p = 0; p < kPairs; ++p) {
      for (int i = 0; i < kBlock; ++i) {
        for (int e = 0; e < 2; ++e) {
          const int r = b * kBlock + i, k = 2 * p + e;
          const std::size_t at = static_cast<std::size_t>(r) * kRowStride + static_cast<std::size_t>(k) * kKStride;
          *packed++ = r < kRows && k < kK ? w[at] : T{0};
        }
      }
    }
  }
}

// W' = W - its zero point (per row if kPerRowZero, else one; none when zero_point is nullptr) as
// int16 pairs, from 8-bit pair groups: once per Run, a linear pass the compiler vectorizes.
template <int kRows, int kK, bool kPerRowZero, typename T>
inline void QExpandPairGroups(const T* packed, const T* zero_point, std::int16_t* pairs) {
  constexpr int kPairs = (kK + 1) / 2;
  constexpr int kGroups = (kRows + kQGroupRows - 1) / kQGroupRows;
  constexpr int kStep = 2 * kQGroupRows;
  for (int g = 0; g < kGroups; ++g) {
    std::int16_t zero[kStep];
    for (int i = 0; i < kStep; ++i) {
      const int r = g * kQGroupRows + i / 2;
      zero[i] = zero_point == nullptr ? 0 : zero_point[kPerRowZero ? (r < kRows ? r : kRows - 1) : 0];
    }
    const T* src = packed + static_cast<std::size_t>(g) * kPairs * kStep;
    std::int16_t* dst = pairs + static_cast<std::size_t>(g) * kPairs * kStep;
    for (int p = 0; p < kPairs; ++p) {
#pragma GCC unroll 8
      for (int i = 0; i < kStep; ++i) dst[p * kStep + i] = static_cast<std::int16_t>(src[p * kStep + i] - zero[i]);
    }
  }
}

// One row of a panel: kQLanes int16 values of one k.
typedef std::int16_t QPanelRow __attribute__((vector_size(kQLanes * sizeof(std::int16_t))));

// Stores the rows of k = 2p and 2p + 1 as pair step p ([16][2]).
inline void QStorePairStep(const QPanelRow& even, const QPanelRow& odd, std::int16_t* step) {
  const QPanelRow lo = __builtin_shufflevector(even, odd, 0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
  const QPanelRow hi = __builtin_shufflevector(even, odd, 8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
  std::memcpy(step, &lo, sizeof(lo));
  std::memcpy(step + kQLanes, &hi, sizeof(hi));
}

// Interleaves a panel gathered as rows of k ([2 * K2][16] int16) into pair steps ([K2][16][2]),
// in place: pair p occupies the same 64 bytes in both layouts.
inline void QInterleavePanel(std::int16_t* panel, int pairs) {
  for (int p = 0; p < pairs; ++p) {
    QPanelRow even, odd;
    std::int16_t* step = panel + static_cast<std::size_t>(p) * kQPanelStep;
    std::memcpy(&even, step, sizeof(even));
    std::memcpy(&odd, step + kQLanes, sizeof(odd));
    QStorePairStep(even, odd, step);
  }
}

// Gathers the input values (an image already shifted by its zero point and padded, [kC][kPaddedH]
// [kPaddedW] int16) that the weights meet at output positions p0 .. p0 + cols - 1 as one lane
// panel: first as rows of k (zeros past K and past `cols`), then interleaved into pairs.
template <typename P>
inline void QGatherConvPanel(const std::int16_t* image, int p0, int cols, std::int16_t* dst) {
  constexpr int kK = P::kC * P::kKH * P::kKW;
  constexpr int kPairs = (kK + 1) / 2;
  constexpr bool kPointwise = P::kKH == 1 && P::kKW == 1 && P::kStrideH == 1 && P::kStrideW == 1 &&
                              P::kPaddedH == P::kOH && P::kPaddedW == P::kOW;
  std::int16_t* row = dst;
  // With unit horizontal stride, a whole panel in one output row (the common case) reads 16
  // consecutive values per kernel tap: straight into pair steps.
  if (P::kStrideW == 1 && cols == kQLanes && p0 % P::kOW + kQLanes <= P::kOW) {
    const std::int16_t* window = image + (p0 / P::kOW) * P::kStrideH * P::kPaddedW + p0 % P::kOW;
    QPanelRow even = {};
    int k = 0;
    for (int c = 0; c < P::kC; ++c) {
      for (int kh = 0; kh < P::kKH; ++kh) {
        for (int kw = 0; kw < P::kKW; ++kw, ++k) {
          QPanelRow v;
          std::memcpy(&v, window + (static_cast<std::size_t>(c) * P::kPaddedH + kh * P::kDilH) * P::kPaddedW +
                              kw * P::kDilW, sizeof(v));
          if (k % 2 == 0) {
            even = v;
          } else {
            QStorePairStep(even, v, dst + static_cast<std::size_t>(k / 2) * kQPanelStep);
          }
        }
      }
    }
    if (kK % 2 == 1) QStorePairStep(even, QPanelRow{}, dst + static_cast<std::size_t>(kK / 2) * kQPanelStep);
    return;
  }
  if (kPointwise && cols == kQLanes) {
    for (int c = 0; c < P::kC; ++c, row += kQLanes) {
      std::memcpy(row, image + static_cast<std::size_t>(c) * P::kOH * P::kOW + p0, sizeof(std::int16_t) * kQLanes);
    }
  } else {
    // The panel's columns fall into runs that share an output row; within a run each kernel tap
    // reads one row of the padded image at a fixed stride.
    struct Run {
      int begin, end, source;  // source: the run's first value for kernel tap (0, 0), channel 0
    };
    Run runs[kQLanes];
    int num_runs = 0;
    for (int j = 0; j < cols;) {
      const int p = p0 + j, oh = p / P::kOW, ow = p % P::kOW;
      const int length = cols - j < P::kOW - ow ? cols - j : P::kOW - ow;
      runs[num_runs++] = {j, j + length, oh * P::kStrideH * P::kPaddedW + ow * P::kStrideW};
      j += length;
    }
    for (int c = 0; c < P::kC; ++c) {
      for (int kh = 0; kh < P::kKH; ++kh) {
        for (int kw = 0; kw < P::kKW; ++kw, row += kQLanes) {
          const std::int16_t* tap = image + (static_cast<std::size_t>(c) * P::kPaddedH + kh * P::kDilH) * P::kPaddedW +
                                    kw * P::kDilW;
          for (int r = 0; r < num_runs; ++r) {
            const std::int16_t* src = tap + runs[r].source;
            if constexpr (P::kStrideW == 1) {
              // A whole panel in one output row is the common case: a copy of constant size.
              if (runs[r].end - runs[r].begin == kQLanes) {
                std::memcpy(row, src, sizeof(std::int16_t) * kQLanes);
              } else {
                std::memcpy(row + runs[r].begin, src, sizeof(std::int16_t) * (runs[r].end - runs[r].begin));
              }
            } else {
              for (int j = runs[r].begin; j < runs[r].end; ++j) row[j] = src[(j - runs[r].begin) * P::kStrideW];
            }
          }
          for (int j = cols; j < kQLanes; ++j) row[j] = 0;
        }
      }
    }
  }
  for (int k = kK; k < 2 * kPairs; ++k, row += kQLanes) std::memset(row, 0, sizeof(std::int16_t) * kQLanes);
  QInterleavePanel(dst, kPairs);
}

// ConvInteger: int32 y = conv(x - x_zero_point, w - w_zero_point), NCHW, 1-D as 2-D with H = 1.
// w: every group's weights as 8-bit pair groups (packed at generation time when constant).
// Scratch: `weights` (int16 pairs of all groups), `image` (one image's group, shifted and
// padded, kC * kPaddedH * kPaddedW), `panels` (kChunkCols lanes of gathered panels).
// P: kN kGroups kC kH kW kM (kC and kM per group) kKH kKW kOH kOW kStrideH kStrideW kPadTop
//    kPadLeft kDilH kDilW kPaddedH kPaddedW kChunkCols kPerChannelZero.
// Not inlined (nor MatMulInteger): inlined into Run(), these large bodies used up GCC's budget
// for the unit's growth, and small helpers of other steps (Exp in Sigmoid) stopped being
// inlined: ddddocr's layers before the LSTM took 5.0 ms instead of 3.2.
template <typename P, typename TX, typename TW>
__attribute__((noinline)) void ConvInteger2D(const TX* x, const TX* x_zero_point, const TW* w, const TW* w_zero_point,
                                             std::int32_t* y, std::int16_t* weights, std::int16_t* image,
                                             std::int16_t* panels) {
  constexpr int kK = P::kC * P::kKH * P::kKW;
  constexpr int kPairs = (kK + 1) / 2;
  constexpr int kPositions = P::kOH * P::kOW;
  constexpr std::size_t kGroupWeights = static_cast<std::size_t>((P::kM + kQGroupRows - 1) / kQGroupRows) *
                                        kQGroupRows * kPairs * 2;
  constexpr std::size_t kGroupInput = static_cast<std::size_t>(P::kC) * P::kH * P::kW;
  constexpr std::size_t kPanelStride = static_cast<std::size_t>(kPairs) * kQPanelStep;
  // The weights minus their zero point, once per Run.
  for (int g = 0; g < P::kGroups; ++g) {
    QExpandPairGroups<P::kM, kK, P::kPerChannelZero>(
        w + g * kGroupWeights, w_zero_point == nullptr ? nullptr : w_zero_point + (P::kPerChannelZero ? g * P::kM : 0),
        weights + g * kGroupWeights);
  }
  const int x_zero = x_zero_point == nullptr ? 0 : static_cast<int>(*x_zero_point);
  for (int n = 0; n < P::kN; ++n) {
    for (int g = 0; g < P::kGroups; ++g) {
      // The group's input minus its zero point, inside a border of zeros (the padding).
      const TX* in = x + (static_cast<std::size_t>(n) * P::kGroups + g) * kGroupInput;
      std::memset(image, 0, sizeof(std::int16_t) * P::kC * P::kPaddedH * P::kPaddedW);
      for (int c = 0; c < P::kC; ++c) {
        for (int h = 0; h < P::kH; ++h) {
          const TX* src = in + (static_cast<std::size_t>(c) * P::kH + h) * P::kW;
          std::int16_t* dst =
              image + (static_cast<std::size_t>(c) * P::kPaddedH + h + P::kPadTop) * P::kPaddedW + P::kPadLeft;
          for (int i = 0; i < P::kW; ++i) dst[i] = static_cast<std::int16_t>(static_cast<int>(src[i]) - x_zero);
        }
      }
      std::int32_t* out = y + (static_cast<std::size_t>(n) * P::kGroups + g) * P::kM * kPositions;
      for (int c0 = 0; c0 < kPositions; c0 += P::kChunkCols) {
        const int chunk = kPositions - c0 < P::kChunkCols ? kPositions - c0 : P::kChunkCols;
        for (int q = 0; q * kQLanes < chunk; ++q) {
          const int cols = chunk - q * kQLanes < kQLanes ? chunk - q * kQLanes : kQLanes;
          QGatherConvPanel<P>(image, c0 + q * kQLanes, cols, panels + q * kPanelStride);
        }
        QPairGemm<P::kM, kPairs, kPositions>(weights + g * kGroupWeights, static_cast<const std::int16_t*>(panels),
                                             chunk, out + c0);
      }
    }
  }
}

// MatMulInteger of one matrix: int32 y[M][N] = (a - a_zero_point)(B - b_zero_point), B as lane
// panels of its columns (packed at generation time when constant). A' = a - a_zero_point becomes
// pair groups in `a_pairs` ([ceil(M / 4)][K2][4][2] int16) and its row sums `a_sums` (M int32):
// the product runs on B itself, and b_zero_point[c] * (row sum of A') is subtracted from each
// result after, which keeps the subtraction out of the inner loop.
template <int M, int K, int N, bool kPerColumnZero, typename TA, typename TB>
__attribute__((noinline)) void MatMulInteger(const TA* a, const TA* a_zero_point, const TB* packed_b,
                                             const TB* b_zero_point, std::int32_t* y, std::int16_t* a_pairs,
                                             std::int32_t* a_sums) {
  constexpr int kPairs = (K + 1) / 2;
  constexpr int kGroups = (M + kQGroupRows - 1) / kQGroupRows;
  const int a_zero = a_zero_point == nullptr ? 0 : static_cast<int>(*a_zero_point);
  for (int r = 0; r < M; ++r) {
    std::uint32_t sum = 0;  // wrapping, as the products it corrects
    for (int k = 0; k < K; ++k) {
      sum += static_cast<std::uint32_t>(static_cast<int>(a[static_cast<std::size_t>(r) * K + k]) - a_zero);
    }
    a_sums[r] = static_cast<std::int32_t>(sum);
  }
  std::int16_t* dst = a_pairs;
  for (int g = 0; g < kGroups; ++g) {
    for (int p = 0; p < kPairs; ++p) {
      for (int i = 0; i < kQGroupRows; ++i) {
        const int r = g * kQGroupRows + i;
        for (int e = 0; e < 2; ++e) {
          const int k = 2 * p + e;
          const int value = r < M && k < K ? static_cast<int>(a[static_cast<std::size_t>(r) * K + k]) - a_zero : 0;
          *dst++ = static_cast<std::int16_t>(value);
        }
      }
    }
  }
  QPairGemm<M, kPairs, N>(a_pairs, packed_b, N, y);
  if (b_zero_point == nullptr) return;
  for (int r = 0; r < M; ++r) {
    const std::uint32_t sum = static_cast<std::uint32_t>(a_sums[r]);
    std::int32_t* row = y + static_cast<std::size_t>(r) * N;
    for (int c = 0; c < N; ++c) {
      const std::uint32_t zero = static_cast<std::uint32_t>(static_cast<int>(b_zero_point[kPerColumnZero ? c : 0]));
      row[c] = static_cast<std::int32_t>(static_cast<std::uint32_t>(row[c]) - zero * sum);
    }
  }
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
