// Storage types for ONNX's 16-bit floats, float8 and 4-/2-bit types, and their conversions.
//
// Generated code keeps float16 and bfloat16 tensors in these structs and computes in float:
// each step widens what it reads with ToFloat() and rounds what it writes with
// RoundToFloat16() / RoundToBFloat16(), which is how numpy (and so onnx's reference evaluator)
// computes on these types. Plain integer bit manipulation, standard C++17: no _Float16, no
// __bf16, no F16C, so the same results on every compiler and target.
//
// Rounding is to nearest, ties to even. NaN payloads follow numpy and ml_dtypes bit for bit:
// float16 keeps the top payload bits as they are (quiet or not), bfloat16 from float gives the
// canonical quiet NaN with the input's sign.
//
// The float8 types (and float4e2m1) are storage only: ONNX converts them with Cast and moves
// them, nothing else, so they have conversions and no arithmetic. As ml_dtypes does, a double
// rounds to them through float. The 4- and 2-bit integers hold one value per byte, in the low
// bits (as ml_dtypes keeps them in numpy arrays), and wrap around like the wider integers.
#ifndef PURE_MODEL_NARROW_FLOATS_H_
#define PURE_MODEL_NARROW_FLOATS_H_

#include <cstdint>
#include <cstring>

namespace pure_model {

// IEEE 754 binary16: 1 sign, 5 exponent and 10 mantissa bits.
struct Float16 {
  std::uint16_t bits;
};

// bfloat16: the upper half of a float32 (1 sign, 8 exponent and 7 mantissa bits).
struct BFloat16 {
  std::uint16_t bits;
};

namespace narrow_floats_internal {

inline std::uint32_t BitsOf(float value) {
  std::uint32_t bits;
  std::memcpy(&bits, &value, sizeof(bits));
  return bits;
}

inline std::uint64_t BitsOf(double value) {
  std::uint64_t bits;
  std::memcpy(&bits, &value, sizeof(bits));
  return bits;
}

inline float FloatOf(std::uint32_t bits) {
  float value;
  std::memcpy(&value, &bits, sizeof(value));
  return value;
}

// Rounds the magnitude `mantissa` * 2^-`shift` to the nearest integer, ties to even (shift >= 1).
inline std::uint64_t ShiftRoundEven(std::uint64_t mantissa, int shift) {
  if (shift >= 64) return 0;
  const std::uint64_t kept = mantissa >> shift;
  const std::uint64_t rest = mantissa & ((std::uint64_t{1} << shift) - 1);
  const std::uint64_t halfway = std::uint64_t{1} << (shift - 1);
  return kept + ((rest > halfway || (rest == halfway && (kept & 1u) != 0)) ? 1u : 0u);
}

// The magnitude bits, in a float format with `kMantissaBits` stored mantissa bits whose normal
// numbers start at 2^`kMinNormalExponent`, of the finite value `mantissa` * 2^(`exponent` -
// `fraction_bits`) (bit `fraction_bits` of `mantissa` set: the implicit one), rounded to nearest
// even. Not clamped: a result beyond the format's largest finite value is for the caller to map.
template <int kMantissaBits, int kMinNormalExponent>
inline std::uint64_t MagnitudeBits(std::uint64_t mantissa, int exponent, int fraction_bits) {
  // A subnormal result counts units of its smallest step: shift further right by how far below
  // the smallest normal the value is.
  const int below = exponent < kMinNormalExponent ? kMinNormalExponent - exponent : 0;
  const std::uint64_t rounded = ShiftRoundEven(mantissa, fraction_bits - kMantissaBits + below);
  if (below > 0) return rounded;  // may round up to the smallest normal, which is right
  // `rounded` has the implicit bit on top of the mantissa (or one bit more when rounding carried
  // into the next binade); adding the exponent above it carries that into the exponent field.
  const std::uint64_t biased = static_cast<std::uint64_t>(exponent - kMinNormalExponent);
  return (biased << kMantissaBits) + rounded;
}

// float16 from the fields of an IEEE binary float or double (`kFractionBits` 23 or 52), rounded
// once. A NaN keeps the top 10 bits of its payload, or becomes payload 1 if they are all zero
// (which would read as infinity), as numpy does.
template <int kFractionBits, int kExponentBias, std::uint64_t kSpecialExponent>
inline Float16 Float16FromFields(std::uint16_t sign, std::uint64_t exponent, std::uint64_t mantissa) {
  if (exponent == kSpecialExponent) {
    const std::uint64_t payload = mantissa >> (kFractionBits - 10);
    const std::uint64_t nan = payload != 0 ? payload : 1u;
    return {static_cast<std::uint16_t>(sign | 0x7c00u | (mantissa == 0 ? 0u : nan))};
  }
  if (exponent == 0) return {sign};  // zero or subnormal: far below float16's smallest
  const std::uint64_t magnitude = MagnitudeBits<10, -14>(
      mantissa | (std::uint64_t{1} << kFractionBits), static_cast<int>(exponent) - kExponentBias, kFractionBits);
  return {static_cast<std::uint16_t>(sign | (magnitude >= 0x7c00u ? 0x7c00u : magnitude))};
}

// What a small float format spends its top patterns on.
enum class Specials {
  kInfinityAndNan,  // IEEE-like (float8e5m2): all-ones exponent is infinity or NaN
  kNanOnly,         // "FN" (float8e4m3fn): no infinity; only S.1111.111 is NaN
  kUnsignedZero,    // "FNUZ": no infinity and no -0; the pattern of -0 (0x80) is the one NaN
  kNone,            // float4e2m1: every pattern a finite number
};

// A small float format: `kMantissaBits` stored mantissa bits, exponent bias `kBias`, sign at bit
// `kSignBit`, largest finite magnitude pattern `kMaxFinite`.
template <int kMantissaBits, int kBias, int kSignBit, std::uint32_t kMaxFinite, Specials kSpecials>
struct SmallFloat {
  static constexpr std::uint32_t kSign = 1u << kSignBit;

  static float ToFloat(std::uint32_t bits) {
    const std::uint32_t sign = (bits & kSign) != 0 ? 0x80000000u : 0u;
    const std::uint32_t magnitude = bits & (kSign - 1);
    if (kSpecials == Specials::kUnsignedZero && bits == kSign) return FloatOf(0xffc00000u);
    if ((kSpecials == Specials::kNanOnly && magnitude == (kSign - 1)) ||
        (kSpecials == Specials::kInfinityAndNan && magnitude > kMaxFinite + 1)) {
      return FloatOf(sign | 0x7fc00000u);
    }
    if (kSpecials == Specials::kInfinityAndNan && magnitude == kMaxFinite + 1) return FloatOf(sign | 0x7f800000u);
    const std::uint32_t exponent = magnitude >> kMantissaBits;
    const std::uint32_t mantissa = magnitude & ((1u << kMantissaBits) - 1);
    // value = significand * 2^scale, exact in float: (implicit one + mantissa) or, for a
    // subnormal, the mantissa alone at the smallest normal exponent.
    const std::uint32_t significand = exponent != 0 ? mantissa | (1u << kMantissaBits) : mantissa;
    const int scale = (exponent != 0 ? static_cast<int>(exponent) : 1) - kBias - kMantissaBits;
    const float power = FloatOf(static_cast<std::uint32_t>(scale + 127) << 23);  // 2^scale
    const float magnitude_value = static_cast<float>(significand) * power;
    return sign != 0 ? -magnitude_value : magnitude_value;
  }

  // With `saturate`, values beyond the largest finite one (infinities too) become it, as ONNX's
  // Cast does by default; without, they become infinity or NaN, whatever the format has.
  static std::uint8_t Round(float value, bool saturate) {
    const std::uint32_t bits = BitsOf(value);
    const std::uint32_t sign = (bits & 0x80000000u) != 0 ? kSign : 0u;
    const std::uint32_t exponent = (bits >> 23) & 0xffu;
    const std::uint32_t mantissa = bits & 0x7fffffu;
    if (exponent == 0xffu && mantissa != 0) {  // NaN
      switch (kSpecials) {
        case Specials::kInfinityAndNan:  // the quiet NaN: infinity's pattern with the top mantissa bit
          return static_cast<std::uint8_t>(sign | (kMaxFinite + 1) | (1u << (kMantissaBits - 1)));
        case Specials::kNanOnly: return static_cast<std::uint8_t>(sign | (kSign - 1));
        case Specials::kUnsignedZero: return static_cast<std::uint8_t>(kSign);
        case Specials::kNone: return static_cast<std::uint8_t>(sign ^ kSign);  // ml_dtypes: a zero
      }
    }
    std::uint64_t magnitude = kMaxFinite + 1;  // infinity overflows
    if (exponent == 0) {
      magnitude = 0;  // zero, or a float subnormal: far below any small float
    } else if (exponent != 0xffu) {
      magnitude = MagnitudeBits<kMantissaBits, 1 - kBias>(mantissa | 0x800000u, static_cast<int>(exponent) - 127, 23);
    }
    if (magnitude > kMaxFinite) {
      if (saturate || kSpecials == Specials::kNone) return static_cast<std::uint8_t>(sign | kMaxFinite);
      switch (kSpecials) {
        case Specials::kInfinityAndNan: return static_cast<std::uint8_t>(sign | (kMaxFinite + 1));
        case Specials::kNanOnly: return static_cast<std::uint8_t>(sign | (kSign - 1));
        default: return static_cast<std::uint8_t>(kSign);
      }
    }
    if (kSpecials == Specials::kUnsignedZero && magnitude == 0) return 0;
    return static_cast<std::uint8_t>(sign | magnitude);
  }
};

using E4M3FN = SmallFloat<3, 7, 7, 0x7e, Specials::kNanOnly>;
using E4M3FNUZ = SmallFloat<3, 8, 7, 0x7f, Specials::kUnsignedZero>;
using E5M2 = SmallFloat<2, 15, 7, 0x7b, Specials::kInfinityAndNan>;
using E5M2FNUZ = SmallFloat<2, 16, 7, 0x7f, Specials::kUnsignedZero>;
using E2M1 = SmallFloat<1, 1, 3, 0x7, Specials::kNone>;

}  // namespace narrow_floats_internal

inline float ToFloat(Float16 value) {
  const std::uint32_t sign = static_cast<std::uint32_t>(value.bits & 0x8000u) << 16;
  const std::uint32_t exponent = (value.bits >> 10) & 0x1fu;
  const std::uint32_t mantissa = value.bits & 0x3ffu;
  if (exponent == 0x1fu) {  // infinity, or NaN with its payload moved up unchanged
    return narrow_floats_internal::FloatOf(sign | 0x7f800000u | (mantissa << 13));
  }
  if (exponent == 0) {  // zero or subnormal: mantissa units of 2^-24, exact in float
    const float magnitude = static_cast<float>(mantissa) * 0x1p-24f;
    return sign != 0 ? -magnitude : magnitude;
  }
  return narrow_floats_internal::FloatOf(sign | ((exponent + 112u) << 23) | (mantissa << 13));
}

inline float ToFloat(BFloat16 value) {
  return narrow_floats_internal::FloatOf(static_cast<std::uint32_t>(value.bits) << 16);
}

inline Float16 RoundToFloat16(float value) {
  const std::uint32_t bits = narrow_floats_internal::BitsOf(value);
  return narrow_floats_internal::Float16FromFields<23, 127, 0xffu>(
      static_cast<std::uint16_t>((bits >> 16) & 0x8000u), (bits >> 23) & 0xffu, bits & 0x7fffffu);
}

// Rounds once, from the double: going through float first could round twice (numpy does not).
inline Float16 RoundToFloat16(double value) {
  const std::uint64_t bits = narrow_floats_internal::BitsOf(value);
  return narrow_floats_internal::Float16FromFields<52, 1023, 0x7ffu>(
      static_cast<std::uint16_t>((bits >> 48) & 0x8000u), (bits >> 52) & 0x7ffu, bits & 0xfffffffffffffu);
}

inline BFloat16 RoundToBFloat16(float value) {
  const std::uint32_t bits = narrow_floats_internal::BitsOf(value);
  if ((bits & 0x7fffffffu) > 0x7f800000u) {  // NaN
    return {static_cast<std::uint16_t>(((bits >> 16) & 0x8000u) | 0x7fc0u)};
  }
  // Adding just under half a unit of the kept bits, plus the kept lowest bit, rounds to nearest
  // even; a carry runs into the exponent as it should, up to infinity.
  const std::uint32_t rounded = bits + 0x7fffu + ((bits >> 16) & 1u);
  return {static_cast<std::uint16_t>(rounded >> 16)};
}

// As ml_dtypes does: through float (rounding twice where the double is that close to a tie).
inline BFloat16 RoundToBFloat16(double value) { return RoundToBFloat16(static_cast<float>(value)); }

// Rounds a float into T, for code templated on the 16-bit float type.
template <typename T>
T RoundTo(float value);
template <>
inline Float16 RoundTo<Float16>(float value) { return RoundToFloat16(value); }
template <>
inline BFloat16 RoundTo<BFloat16>(float value) { return RoundToBFloat16(value); }

// The float8 formats and float4e2m1 (in the low 4 bits of its byte).
struct Float8E4M3FN {
  std::uint8_t bits;
};
struct Float8E4M3FNUZ {
  std::uint8_t bits;
};
struct Float8E5M2 {
  std::uint8_t bits;
};
struct Float8E5M2FNUZ {
  std::uint8_t bits;
};
struct Float4E2M1 {
  std::uint8_t bits;
};

inline float ToFloat(Float8E4M3FN value) { return narrow_floats_internal::E4M3FN::ToFloat(value.bits); }
inline float ToFloat(Float8E4M3FNUZ value) { return narrow_floats_internal::E4M3FNUZ::ToFloat(value.bits); }
inline float ToFloat(Float8E5M2 value) { return narrow_floats_internal::E5M2::ToFloat(value.bits); }
inline float ToFloat(Float8E5M2FNUZ value) { return narrow_floats_internal::E5M2FNUZ::ToFloat(value.bits); }
inline float ToFloat(Float4E2M1 value) { return narrow_floats_internal::E2M1::ToFloat(value.bits & 0xfu); }

inline Float8E4M3FN RoundToFloat8E4M3FN(float value, bool saturate = true) {
  return {narrow_floats_internal::E4M3FN::Round(value, saturate)};
}
inline Float8E4M3FNUZ RoundToFloat8E4M3FNUZ(float value, bool saturate = true) {
  return {narrow_floats_internal::E4M3FNUZ::Round(value, saturate)};
}
inline Float8E5M2 RoundToFloat8E5M2(float value, bool saturate = true) {
  return {narrow_floats_internal::E5M2::Round(value, saturate)};
}
inline Float8E5M2FNUZ RoundToFloat8E5M2FNUZ(float value, bool saturate = true) {
  return {narrow_floats_internal::E5M2FNUZ::Round(value, saturate)};
}
// float4e2m1 has no infinity or NaN: out-of-range values always saturate (to 6).
inline Float4E2M1 RoundToFloat4E2M1(float value, bool = true) {
  return {narrow_floats_internal::E2M1::Round(value, true)};
}

// The 4- and 2-bit integers: two's complement (or unsigned) in the low bits of a byte.
struct Int4 {
  std::uint8_t bits;
};
struct UInt4 {
  std::uint8_t bits;
};
struct Int2 {
  std::uint8_t bits;
};
struct UInt2 {
  std::uint8_t bits;
};

inline int ToInt(Int4 value) { return static_cast<int>(value.bits & 0xfu) - ((value.bits & 0x8u) != 0 ? 16 : 0); }
inline int ToInt(UInt4 value) { return static_cast<int>(value.bits & 0xfu); }
inline int ToInt(Int2 value) { return static_cast<int>(value.bits & 0x3u) - ((value.bits & 0x2u) != 0 ? 4 : 0); }
inline int ToInt(UInt2 value) { return static_cast<int>(value.bits & 0x3u); }

// The low bits of an integer, as a cast to a narrower integer type keeps them.
inline Int4 WrapToInt4(std::int64_t value) { return {static_cast<std::uint8_t>(value & 0xf)}; }
inline UInt4 WrapToUInt4(std::int64_t value) { return {static_cast<std::uint8_t>(value & 0xf)}; }
inline Int2 WrapToInt2(std::int64_t value) { return {static_cast<std::uint8_t>(value & 0x3)}; }
inline UInt2 WrapToUInt2(std::int64_t value) { return {static_cast<std::uint8_t>(value & 0x3)}; }

// A float truncated toward zero, for the wrapping casts above: NaN, infinities and values beyond
// int64 give 0 (any float that large is a multiple of 16, so its low bits are 0 anyway).
inline std::int64_t TruncateToInt64(double value) {
  constexpr double kLimit = 9223372036854775808.0;  // 2^63
  return value > -kLimit && value < kLimit ? static_cast<std::int64_t>(value) : 0;
}

}  // namespace pure_model

#endif  // PURE_MODEL_NARROW_FLOATS_H_
