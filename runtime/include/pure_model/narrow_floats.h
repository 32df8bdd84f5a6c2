// Storage types for ONNX's 16-bit floats, and their conversions to and from float.
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

// The float16 bits of a finite, non-NaN magnitude given as a normalized binary fraction:
// value = `mantissa` * 2^(`exponent` - `fraction_bits`), with bit `fraction_bits` of `mantissa`
// set (the implicit one).
inline std::uint16_t Float16Magnitude(std::uint64_t mantissa, int exponent, int fraction_bits) {
  constexpr int kMinNormalExponent = -14;
  constexpr int kMantissaBits = 10;
  // A subnormal result counts units of 2^-24: shift further right by how far below 2^-14 it is.
  const int below = exponent < kMinNormalExponent ? kMinNormalExponent - exponent : 0;
  const std::uint64_t rounded = ShiftRoundEven(mantissa, fraction_bits - kMantissaBits + below);
  if (below > 0) return static_cast<std::uint16_t>(rounded);  // may round up to the smallest normal
  // `rounded` has 11 bits, or 12 when rounding carried into a new binade; adding the biased
  // exponent on top of the implicit bit carries that over into the exponent field.
  const std::uint64_t biased = static_cast<std::uint64_t>(exponent + 14);
  const std::uint64_t bits = (biased << kMantissaBits) + rounded;
  return bits >= 0x7c00u ? std::uint16_t{0x7c00u} : static_cast<std::uint16_t>(bits);
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
  const std::uint64_t implicit = std::uint64_t{1} << kFractionBits;
  return {static_cast<std::uint16_t>(
      sign | Float16Magnitude(mantissa | implicit, static_cast<int>(exponent) - kExponentBias, kFractionBits))};
}

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

}  // namespace pure_model

#endif  // PURE_MODEL_NARROW_FLOATS_H_
