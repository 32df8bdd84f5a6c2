// Reading and writing NumPy .npy files, for the harness programs.
//
// Only what the harness needs: little-endian, C-order arrays of the element types in
// model_descriptor.h. Anything else is rejected with an error that says why, rather than
// read as garbage. Format reference: numpy/lib/format.py (NEP 1).
#ifndef RULES_PURE_MODEL_TOOLS_HARNESS_NPY_H_
#define RULES_PURE_MODEL_TOOLS_HARNESS_NPY_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "tools/harness/model_descriptor.h"

namespace pure_model_harness {

// The ONNX-style name of `dtype` ("float32", "int64", "bool", ...), or "unknown".
const char* DTypeName(DType dtype);

// Bytes per element of `dtype`, or 0 for a value that is not a known DType.
std::size_t DTypeSize(DType dtype);

// Whether numpy writes `dtype` as opaque bytes ('<V2', '<V1': bfloat16, float8, ...): ReadNpy
// then reports the first such type of that size, which stands for any of them.
bool IsOpaqueToNumpy(DType dtype);

struct NpyArray {
  DType dtype = DType::kFloat32;
  std::vector<std::int64_t> shape;  // empty for a 0-d array
  std::vector<unsigned char> data;  // C order, little-endian, exactly elements * DTypeSize
};

// Reads `path` into `*out`. Accepts format versions 1.0, 2.0 and 3.0. On failure returns false
// and sets `*error` to a message that starts with `path`.
bool ReadNpy(const std::string& path, NpyArray* out, std::string* error);

// Writes `bytes` bytes at `data` to `path` as an array of `dtype` with the given shape, in
// format 1.0 (or 2.0 when the header does not fit 1.0's 16-bit length). `bytes` must equal the
// element count of the shape times DTypeSize(dtype). On failure returns false and sets `*error`.
bool WriteNpy(const std::string& path, DType dtype, const std::int64_t* dims, int rank,
              const void* data, std::size_t bytes, std::string* error);

}  // namespace pure_model_harness

#endif  // RULES_PURE_MODEL_TOOLS_HARNESS_NPY_H_
