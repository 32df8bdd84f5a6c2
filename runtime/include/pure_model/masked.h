// Weights stored masked, for `pure_model_library(obfuscate = True)`: the weights blob then holds
// no tensor as it is, and the kernels unmask each value as they load it, inside their loops (no
// unmasked copy of a tensor is ever made).
//
// The mask: the bytes of a tensor, as little-endian 32-bit words, are XORed with a keystream that
// depends on the tensor's 32-bit seed. Word j gets
//
//   Key(j) = Mix(seed ^ (j / 8) * 0x9E3779B9) ^ lane[j % 8],   lane[l] = Mix(seed + (l + 1) * 0x632BE5AB)
//
// so a run of 8 words (32 bytes, one step of a packed Conv panel) unmasks with one scalar hash and
// two vector XORs. Mix is a 32-bit integer hash (xor-shift-multiply, "lowbias32"). The generator
// (tools/codegen/pure_model_codegen/obfuscate.py) applies the same function.
#ifndef RULES_PURE_MODEL_RUNTIME_MASKED_H_
#define RULES_PURE_MODEL_RUNTIME_MASKED_H_

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <type_traits>

namespace pure_model {

constexpr std::uint32_t MaskMix(std::uint32_t x) {
  x ^= x >> 16;
  x *= 0x7feb352dU;
  x ^= x >> 15;
  x *= 0x846ca68bU;
  x ^= x >> 16;
  return x;
}

// Words unmasked per block hash.
constexpr int kMaskBlockWords = 8;

// The keys of the 8 words of a block, before the block's own key.
struct MaskLanes {
  std::uint32_t v[kMaskBlockWords];
};

constexpr MaskLanes LaneKeys(std::uint32_t seed) {
  MaskLanes lanes{};
  for (int l = 0; l < kMaskBlockWords; ++l) lanes.v[l] = MaskMix(seed + static_cast<std::uint32_t>(l + 1) * 0x632BE5ABU);
  return lanes;
}

// A read-only view of a masked tensor of T that reads like a `const T*`: `w[i]` unmasks element
// i, `w + n` moves the view. Kernels take their weights as a template parameter, so the same
// kernel reads a plain pointer or this.
template <typename T>
class Masked {
 public:
  constexpr Masked(const T* data, std::uint32_t seed) : Masked(data, seed, 0, LaneKeys(seed)) {}

  T operator[](std::size_t i) const {
    const std::size_t byte = (offset_ + i) * sizeof(T);
    T value;
    if constexpr (sizeof(T) % 4 == 0) {
      // Whole words: the common case (float, int32, int64, double).
      std::uint32_t words[sizeof(T) / 4];
      std::memcpy(words, bytes() + byte, sizeof(T));
      for (std::size_t k = 0; k < sizeof(T) / 4; ++k) words[k] ^= Key(byte / 4 + k);
      std::memcpy(&value, words, sizeof(T));
    } else {
      unsigned char raw[sizeof(T)];
      for (std::size_t k = 0; k < sizeof(T); ++k) {
        const std::size_t at = byte + k;
        raw[k] = static_cast<unsigned char>(bytes()[at] ^ (Key(at / 4) >> (8 * (at % 4))));
      }
      std::memcpy(&value, raw, sizeof(T));
    }
    return value;
  }

  Masked operator+(std::ptrdiff_t n) const { return Masked(base_, seed_, offset_ + n, lanes_); }
  explicit operator bool() const { return true; }

  // The 8 floats at element i, which must start a block (i + offset a multiple of 8 words),
  // unmasked into out: the packed Conv panels' inner step.
  void LoadBlock(std::size_t i, float* out) const { LoadBlock(i, BlockKeyAt(i), out); }

  // The key of the block that starts at element i.
  std::uint32_t BlockKeyAt(std::size_t i) const { return BlockKey((offset_ + i) / kMaskBlockWords); }

  // The same, with the block's key from BlockKeys.
  void LoadBlock(std::size_t i, std::uint32_t key, float* out) const {
    static_assert(sizeof(T) == 4, "blocks of 32-bit elements");
    typedef std::uint32_t Words __attribute__((vector_size(kMaskBlockWords * 4)));
    Words w, lanes;
    std::memcpy(&w, bytes() + (offset_ + i) * 4, sizeof(w));
    std::memcpy(&lanes, lanes_.v, sizeof(lanes));
    w ^= lanes ^ key;
    std::memcpy(out, &w, sizeof(w));
  }

  // The keys of kBlocks consecutive blocks from element i (which starts a block), computed
  // together so that the compiler hashes them in vector registers.
  template <int kBlocks>
  void BlockKeys(std::size_t i, std::uint32_t* keys) const {
    const std::size_t first = (offset_ + i) / kMaskBlockWords;
    for (int b = 0; b < kBlocks; ++b) keys[b] = BlockKey(first + static_cast<std::size_t>(b));
  }

  // Elements before the next block boundary (0 when the view starts a block).
  std::size_t ElementsToBlock() const {
    static_assert(sizeof(T) == 4, "blocks of 32-bit elements");
    return (kMaskBlockWords - offset_ % kMaskBlockWords) % kMaskBlockWords;
  }

  // The masked bytes, for prefetching.
  const unsigned char* raw() const { return bytes() + offset_ * sizeof(T); }

  // The same bytes as a view of unsigned chars (for byte copies such as Gather's rows).
  Masked<unsigned char> AsBytes() const { return Masked<unsigned char>(base_, seed_, offset_ * sizeof(T), lanes_); }

 private:
  template <typename U>
  friend class Masked;

  using Lanes = MaskLanes;

  // Held as void*, which a constant expression may convert to but not from: the generated code's
  // views are constexpr.
  constexpr Masked(const void* base, std::uint32_t seed, std::size_t offset, const Lanes& lanes)
      : base_(base), seed_(seed), offset_(offset), lanes_(lanes) {}

  const unsigned char* bytes() const { return static_cast<const unsigned char*>(base_); }

  std::uint32_t BlockKey(std::size_t block) const {
    return MaskMix(seed_ ^ (static_cast<std::uint32_t>(block) * 0x9E3779B9U));
  }
  std::uint32_t Key(std::size_t word) const { return BlockKey(word / kMaskBlockWords) ^ lanes_.v[word % kMaskBlockWords]; }

  const void* base_;
  std::uint32_t seed_;
  std::size_t offset_;  // in elements of T
  Lanes lanes_;
};

// Bytes of a tensor, plain or masked, for copies at byte offsets.
inline const unsigned char* Bytes(const void* p) { return static_cast<const unsigned char*>(p); }
template <typename T>
Masked<unsigned char> Bytes(const Masked<T>& p) {
  return p.AsBytes();
}

// memcpy from a plain or a masked source (unmasking on the way: the destination is an output or
// an activation, never a second copy of the weights).
inline void CopyBytes(void* dst, const void* src, std::size_t n) { std::memcpy(dst, src, n); }
template <typename T>
void CopyBytes(void* dst, const Masked<T>& src, std::size_t n) {
  const Masked<unsigned char> bytes = Bytes(src);
  unsigned char* out = static_cast<unsigned char*>(dst);
  for (std::size_t i = 0; i < n; ++i) out[i] = bytes[i];
}

// The value of an optional input (bias) at i, or 0 where the caller passed nullptr.
template <typename B>
inline float OptionalAt(const B& b, std::size_t i) {
  if constexpr (std::is_same_v<B, std::nullptr_t>) {
    (void)b;
    (void)i;
    return 0.f;
  } else {
    return b ? b[i] : 0.f;
  }
}

// Whether an optional input (Gemm's C) was given: a pointer that is not null, or a masked view.
template <typename C>
constexpr bool Present(const C& c) {
  if constexpr (std::is_pointer_v<C>) {
    return c != nullptr;
  } else {
    (void)c;
    return true;
  }
}

template <typename W>
struct IsMasked : std::false_type {};
template <typename T>
struct IsMasked<Masked<T>> : std::true_type {};
template <typename W>
constexpr bool kIsMasked = IsMasked<W>::value;

// row[n] += s * w[n] for n < count: one row of a matrix product. A masked row unmasks a block
// at a time where its blocks lie whole, hashing the keys of 16 blocks together (in vector
// registers), element by element at the ragged ends.
template <typename W>
inline void AddScaledRow(float s, W w, float* __restrict row, int count) {
  if constexpr (kIsMasked<W>) {
    typedef float Floats __attribute__((vector_size(kMaskBlockWords * 4)));
    const auto add_block = [&](int n, std::uint32_t key) {
      Floats r, v;
      w.LoadBlock(static_cast<std::size_t>(n), key, reinterpret_cast<float*>(&v));
      std::memcpy(&r, row + n, sizeof(r));
      r += s * v;
      std::memcpy(row + n, &r, sizeof(r));
    };
    int n = 0;
    for (const int head = static_cast<int>(w.ElementsToBlock()); n < head && n < count; ++n) row[n] += s * w[n];
    constexpr int kKeys = 16;
    for (; n + kKeys * kMaskBlockWords <= count; n += kKeys * kMaskBlockWords) {
      std::uint32_t keys[kKeys];
      w.template BlockKeys<kKeys>(static_cast<std::size_t>(n), keys);
      for (int k = 0; k < kKeys; ++k) add_block(n + k * kMaskBlockWords, keys[k]);
    }
    for (; n + kMaskBlockWords <= count; n += kMaskBlockWords) add_block(n, w.BlockKeyAt(static_cast<std::size_t>(n)));
    for (; n < count; ++n) row[n] += s * w[n];
  } else {
    for (int n = 0; n < count; ++n) row[n] += s * w[n];
  }
}

}  // namespace pure_model

#endif  // RULES_PURE_MODEL_RUNTIME_MASKED_H_
