#include "tools/harness/npy.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <limits>
#include <string>
#include <utility>
#include <vector>

// Array data is copied between the file and memory byte for byte, which is only right when the
// host stores numbers little-endian, as every target this project builds for does.
#if defined(__BYTE_ORDER__) && defined(__ORDER_LITTLE_ENDIAN__) && \
    __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "npy.cc assumes a little-endian host"
#endif

namespace pure_model_harness {
namespace {

constexpr char kMagic[] = "\x93NUMPY";
constexpr std::size_t kMagicSize = 6;
// Headers that get longer than this are quoted only in part in error messages.
constexpr std::size_t kMaxQuotedHeader = 200;

struct DTypeInfo {
  DType dtype;
  const char* name;
  const char* descr;  // as numpy writes it; the first character is the byte order
  std::size_t size;
};

constexpr DTypeInfo kDTypes[] = {
    {DType::kFloat32, "float32", "<f4", 4}, {DType::kUint8, "uint8", "|u1", 1},
    {DType::kInt8, "int8", "|i1", 1},       {DType::kUint16, "uint16", "<u2", 2},
    {DType::kInt16, "int16", "<i2", 2},     {DType::kInt32, "int32", "<i4", 4},
    {DType::kInt64, "int64", "<i8", 8},     {DType::kBool, "bool", "|b1", 1},
    {DType::kFloat16, "float16", "<f2", 2}, {DType::kFloat64, "float64", "<f8", 8},
    {DType::kUint32, "uint32", "<u4", 4},   {DType::kUint64, "uint64", "<u8", 8},
    // numpy has no names for ml_dtypes' types: it writes them as opaque bytes.
    {DType::kBFloat16, "bfloat16", "<V2", 2},
    {DType::kFloat8E4M3FN, "float8e4m3fn", "<V1", 1},
    {DType::kFloat8E4M3FNUZ, "float8e4m3fnuz", "<V1", 1},
    {DType::kFloat8E5M2, "float8e5m2", "<V1", 1},
    {DType::kFloat8E5M2FNUZ, "float8e5m2fnuz", "<V1", 1},
    {DType::kUint4, "uint4", "<V1", 1},
    {DType::kInt4, "int4", "<V1", 1},
    {DType::kFloat4E2M1, "float4e2m1", "<V1", 1},
    {DType::kUint2, "uint2", "<V1", 1},
    {DType::kInt2, "int2", "<V1", 1},
};

const DTypeInfo* FindDType(DType dtype) {
  for (const DTypeInfo& info : kDTypes) {
    if (info.dtype == dtype) return &info;
  }
  return nullptr;
}

// The header for an error message: without numpy's padding, and cut short if very long.
std::string Quote(const std::string& header) {
  std::string text = header.substr(0, header.find_last_not_of(" \t\r\n") + 1);
  if (text.size() > kMaxQuotedHeader) text = text.substr(0, kMaxQuotedHeader) + "...";
  return text;
}

// The header is a Python dict literal, e.g.
//   {'descr': '<f4', 'fortran_order': False, 'shape': (1, 3, 224, 224), }
// numpy itself reads it with ast.literal_eval, so writers other than numpy may legally vary
// quoting, spacing, key order and trailing commas. This parser accepts the part of Python
// literal syntax that such a header can reasonably use.
class HeaderParser {
 public:
  explicit HeaderParser(const std::string& text) : text_(text) {}

  bool Parse(std::string* descr, bool* fortran_order, std::vector<std::int64_t>* shape,
             std::string* error) {
    bool have_descr = false, have_fortran = false, have_shape = false;
    SkipSpace();
    if (!Consume('{')) return Fail("expected '{'", error);
    SkipSpace();
    while (!Consume('}')) {
      std::string key;
      if (!ParseString(&key, error)) return false;
      SkipSpace();
      if (!Consume(':')) return Fail("expected ':' after '" + key + "'", error);
      SkipSpace();
      if (key == "descr") {
        if (Peek() == '[') {
          return Fail("structured dtypes (a list as 'descr') are not supported", error);
        }
        if (have_descr) return Fail("duplicate key 'descr'", error);
        if (!ParseString(descr, error)) return false;
        have_descr = true;
      } else if (key == "fortran_order") {
        if (have_fortran) return Fail("duplicate key 'fortran_order'", error);
        if (!ParseBool(fortran_order, error)) return false;
        have_fortran = true;
      } else if (key == "shape") {
        if (have_shape) return Fail("duplicate key 'shape'", error);
        if (!ParseShape(shape, error)) return false;
        have_shape = true;
      } else {
        // numpy refuses unknown keys too; a file that has them was not written for us.
        return Fail("unexpected key '" + key + "'", error);
      }
      SkipSpace();
      if (Consume(',')) {
        SkipSpace();
      } else if (Peek() != '}') {
        return Fail("expected ',' or '}'", error);
      }
    }
    SkipSpace();
    if (pos_ != text_.size()) return Fail("unexpected text after '}'", error);
    const char* missing = !have_descr     ? "descr"
                          : !have_fortran ? "fortran_order"
                          : !have_shape   ? "shape"
                                          : nullptr;
    if (missing != nullptr) {
      *error = std::string("missing key '") + missing + "' in header " + Quote(text_);
      return false;
    }
    return true;
  }

 private:
  char Peek() const { return pos_ < text_.size() ? text_[pos_] : '\0'; }

  bool Consume(char c) {
    if (Peek() != c) return false;
    ++pos_;
    return true;
  }

  void SkipSpace() {
    while (pos_ < text_.size() && (text_[pos_] == ' ' || text_[pos_] == '\t' ||
                                   text_[pos_] == '\n' || text_[pos_] == '\r')) {
      ++pos_;
    }
  }

  bool Fail(const std::string& what, std::string* error) const {
    *error = what + " at offset " + std::to_string(pos_) + " in header " + Quote(text_);
    return false;
  }

  bool ParseString(std::string* out, std::string* error) {
    const char quote = Peek();
    if (quote != '\'' && quote != '"') return Fail("expected a quoted string", error);
    ++pos_;
    out->clear();
    while (pos_ < text_.size() && text_[pos_] != quote) {
      // No key or dtype string we accept contains a backslash, so escapes need no decoding.
      if (text_[pos_] == '\\') return Fail("unsupported escape in string", error);
      out->push_back(text_[pos_++]);
    }
    if (!Consume(quote)) return Fail("unterminated string", error);
    return true;
  }

  bool ParseBool(bool* out, std::string* error) {
    if (text_.compare(pos_, 4, "True") == 0) {
      pos_ += 4;
      *out = true;
    } else if (text_.compare(pos_, 5, "False") == 0) {
      pos_ += 5;
      *out = false;
    } else {
      return Fail("expected True or False", error);
    }
    return true;
  }

  bool ParseShape(std::vector<std::int64_t>* shape, std::string* error) {
    if (!Consume('(')) return Fail("expected a tuple for 'shape'", error);
    shape->clear();
    SkipSpace();
    while (!Consume(')')) {
      std::int64_t dim = 0;
      if (!ParseDim(&dim, error)) return false;
      shape->push_back(dim);
      SkipSpace();
      if (Consume(',')) {
        SkipSpace();
      } else if (Peek() != ')') {
        return Fail("expected ',' or ')' in 'shape'", error);
      }
    }
    return true;
  }

  bool ParseDim(std::int64_t* dim, std::string* error) {
    if (Peek() == '-') return Fail("negative dimension in 'shape'", error);
    if (Peek() < '0' || Peek() > '9') return Fail("expected a dimension in 'shape'", error);
    std::int64_t value = 0;
    while (Peek() >= '0' && Peek() <= '9') {
      const int digit = Peek() - '0';
      if (value > (std::numeric_limits<std::int64_t>::max() - digit) / 10) {
        return Fail("dimension too large in 'shape'", error);
      }
      value = value * 10 + digit;
      ++pos_;
    }
    // Files written by numpy under Python 2 spell dimensions as long literals: (3L, 4L).
    if (Peek() == 'L' || Peek() == 'l') ++pos_;
    *dim = value;
    return true;
  }

  const std::string& text_;
  std::size_t pos_ = 0;
};

bool ParseDescr(const std::string& descr, DType* dtype, std::string* error) {
  if (descr.empty()) {
    *error = "empty 'descr'";
    return false;
  }
  const char order = descr[0];
  if (order == '>') {
    *error = "big-endian data ('" + descr +
             "') is not supported; convert it with a.astype(a.dtype.newbyteorder('<'))";
    return false;
  }
  // '|' means byte order does not apply, '=' means native, which we require to be little.
  const std::string code = (order == '<' || order == '|' || order == '=') ? descr.substr(1) : descr;
  for (const DTypeInfo& info : kDTypes) {
    if (code == info.descr + 1) {
      *dtype = info.dtype;
      return true;
    }
  }
  *error = "unsupported dtype '" + descr +
           "' (supported: float16/32/64, int8/16/32/64, uint8/16/32/64, bool, and as opaque bytes "
           "V1/V2 the ml_dtypes types)";
  return false;
}

// Multiplies out `shape`, failing rather than wrapping around if the byte count cannot be
// represented.
bool CountBytes(const std::vector<std::int64_t>& shape, std::size_t element_size,
                std::size_t* elements, std::size_t* bytes) {
  std::size_t count = 1;
  for (std::int64_t dim : shape) {
    if (dim < 0) return false;
    const auto udim = static_cast<std::uint64_t>(dim);
    if (udim != 0 && count > std::numeric_limits<std::size_t>::max() / element_size / udim) {
      return false;
    }
    count *= static_cast<std::size_t>(udim);
  }
  *elements = count;
  *bytes = count * element_size;
  return true;
}

std::string ErrnoText() { return std::strerror(errno); }

bool ReadWholeFile(const std::string& path, std::vector<unsigned char>* contents,
                   std::string* error) {
  std::FILE* file = std::fopen(path.c_str(), "rb");
  if (file == nullptr) {
    *error = path + ": cannot open: " + ErrnoText();
    return false;
  }
  // Read in chunks instead of asking for the size up front, so that pipes work too.
  contents->clear();
  unsigned char chunk[1 << 16];
  std::size_t n;
  while ((n = std::fread(chunk, 1, sizeof(chunk), file)) > 0) {
    contents->insert(contents->end(), chunk, chunk + n);
  }
  const bool failed = std::ferror(file) != 0;
  const std::string reason = failed ? ErrnoText() : "";
  std::fclose(file);
  if (failed) {
    *error = path + ": read failed: " + reason;
    return false;
  }
  return true;
}

std::uint32_t ReadLittleEndian(const unsigned char* p, int bytes) {
  std::uint32_t value = 0;
  for (int i = bytes - 1; i >= 0; --i) value = (value << 8) | p[i];
  return value;
}

}  // namespace

const char* DTypeName(DType dtype) {
  const DTypeInfo* info = FindDType(dtype);
  return info != nullptr ? info->name : "unknown";
}

std::size_t DTypeSize(DType dtype) {
  const DTypeInfo* info = FindDType(dtype);
  return info != nullptr ? info->size : 0;
}

bool IsOpaqueToNumpy(DType dtype) {
  const DTypeInfo* info = FindDType(dtype);
  return info != nullptr && info->descr[1] == 'V';
}

bool ReadNpy(const std::string& path, NpyArray* out, std::string* error) {
  std::vector<unsigned char> contents;
  if (!ReadWholeFile(path, &contents, error)) return false;

  if (contents.size() < kMagicSize + 2 || std::memcmp(contents.data(), kMagic, kMagicSize) != 0) {
    *error = path + ": not a .npy file (no \\x93NUMPY magic at the start)";
    return false;
  }
  const int major = contents[kMagicSize];
  const int minor = contents[kMagicSize + 1];
  if ((major != 1 && major != 2 && major != 3) || minor != 0) {
    *error = path + ": unsupported .npy format version " + std::to_string(major) + "." +
             std::to_string(minor) + " (supported: 1.0, 2.0, 3.0)";
    return false;
  }
  // Version 1.0 has a 16-bit header length; 2.0 widened it to 32 bits, and 3.0 only changed the
  // header's encoding from latin-1 to UTF-8, which is irrelevant to the ASCII we accept.
  const std::size_t length_size = major == 1 ? 2 : 4;
  const std::size_t prefix = kMagicSize + 2 + length_size;
  if (contents.size() < prefix) {
    *error = path + ": truncated: file ends inside the header length";
    return false;
  }
  const std::size_t header_length =
      ReadLittleEndian(contents.data() + kMagicSize + 2, static_cast<int>(length_size));
  if (contents.size() - prefix < header_length) {
    *error = path + ": truncated: header length is " + std::to_string(header_length) +
             " bytes but only " + std::to_string(contents.size() - prefix) + " bytes follow";
    return false;
  }
  const std::string header(reinterpret_cast<const char*>(contents.data() + prefix),
                           header_length);

  std::string descr, problem;
  bool fortran_order = false;
  std::vector<std::int64_t> shape;
  if (!HeaderParser(header).Parse(&descr, &fortran_order, &shape, &problem)) {
    *error = path + ": bad header: " + problem;
    return false;
  }
  DType dtype;
  if (!ParseDescr(descr, &dtype, &problem)) {
    *error = path + ": " + problem;
    return false;
  }
  if (fortran_order) {
    *error = path +
             ": Fortran-order arrays are not supported; save np.ascontiguousarray(a) instead";
    return false;
  }
  std::size_t elements = 0, bytes = 0;
  if (!CountBytes(shape, DTypeSize(dtype), &elements, &bytes)) {
    *error = path + ": shape in header is too large: " + Quote(header);
    return false;
  }

  const std::size_t data_offset = prefix + header_length;
  const std::size_t available = contents.size() - data_offset;
  if (available < bytes) {
    *error = path + ": truncated: header says " + std::to_string(elements) + " elements (" +
             std::to_string(bytes) + " bytes) but only " + std::to_string(available) +
             " bytes follow";
    return false;
  }
  if (available > bytes) {
    // numpy would silently ignore these, but they most likely mean a damaged or concatenated file.
    *error = path + ": " + std::to_string(available - bytes) +
             " unexpected bytes after the array data (header says " + std::to_string(elements) +
             " elements, " + std::to_string(bytes) + " bytes)";
    return false;
  }

  // Drop the header in place rather than copying the data out, which matters for big inputs.
  contents.erase(contents.begin(), contents.begin() + static_cast<std::ptrdiff_t>(data_offset));
  out->dtype = dtype;
  out->shape = std::move(shape);
  out->data = std::move(contents);
  return true;
}

bool WriteNpy(const std::string& path, DType dtype, const std::int64_t* dims, int rank,
              const void* data, std::size_t bytes, std::string* error) {
  const DTypeInfo* info = FindDType(dtype);
  if (info == nullptr) {
    *error = path + ": cannot write unknown dtype " + std::to_string(static_cast<int>(dtype));
    return false;
  }
  const std::vector<std::int64_t> shape(dims, dims + rank);
  std::size_t elements = 0, expected_bytes = 0;
  if (!CountBytes(shape, info->size, &elements, &expected_bytes) || expected_bytes != bytes) {
    *error = path + ": internal error: " + std::to_string(bytes) +
             " bytes of data do not match the shape";
    return false;
  }

  // Written the way numpy writes it, so that files round-trip byte for byte.
  std::string header = std::string("{'descr': '") + info->descr +
                       "', 'fortran_order': False, 'shape': (";
  for (int i = 0; i < rank; ++i) {
    if (i > 0) header += ", ";
    header += std::to_string(dims[i]);
  }
  header += rank == 1 ? ",), }" : "), }";

  // Padded with spaces so that the data starts 64-byte aligned, then ended with a newline.
  // Like numpy, always pad with at least one space (so 64 rather than 0).
  constexpr std::size_t kAlignment = 64;
  const auto padded_length = [&](std::size_t prefix) {
    const std::size_t unpadded = prefix + header.size() + 1;
    return header.size() + 1 + kAlignment - unpadded % kAlignment;
  };
  int major = 1;
  std::size_t prefix = kMagicSize + 2 + 2;
  if (padded_length(prefix) > 0xffff) {
    major = 2;
    prefix = kMagicSize + 2 + 4;
  }
  header.resize(padded_length(prefix) - 1, ' ');
  header += '\n';

  std::string preamble(kMagic, kMagicSize);
  preamble += static_cast<char>(major);
  preamble += '\0';
  const std::uint32_t length = static_cast<std::uint32_t>(header.size());
  for (std::size_t i = 0; i < prefix - kMagicSize - 2; ++i) {
    preamble += static_cast<char>((length >> (8 * i)) & 0xff);
  }

  std::FILE* file = std::fopen(path.c_str(), "wb");
  if (file == nullptr) {
    *error = path + ": cannot create: " + ErrnoText();
    return false;
  }
  bool ok = std::fwrite(preamble.data(), 1, preamble.size(), file) == preamble.size() &&
            std::fwrite(header.data(), 1, header.size(), file) == header.size() &&
            (bytes == 0 || std::fwrite(data, 1, bytes, file) == bytes);
  std::string reason = ok ? "" : ErrnoText();
  // Buffered data reaches the disk only at fclose, so a full disk may be reported just there.
  if (std::fclose(file) != 0 && ok) {
    ok = false;
    reason = ErrnoText();
  }
  if (!ok) {
    *error = path + ": write failed: " + reason;
    return false;
  }
  return true;
}

}  // namespace pure_model_harness
