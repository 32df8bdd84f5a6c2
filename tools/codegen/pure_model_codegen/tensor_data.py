"""Reads the data of an ONNX TensorProto (an initializer or a tensor attribute), trusting nothing.

onnx's numpy_helper.to_array believes the tensor: a raw_data shorter than the dims promise gives
an obscure reshape error, and external data is read from wherever `location` points. Here every
claim is checked before a byte is used: the element type is one the generator supports, the dims
are sane, the data holds exactly as many elements as the dims say, integer values fit their type,
and external data comes only from a regular file inside the model's directory (a relative
`location` without `..`), within that file's bounds.
"""

import math
import os
import re
import stat

import numpy as np
import onnx

from pure_model_codegen import ir
from pure_model_codegen.errors import CodegenError

_T = onnx.TensorProto
# Element type -> the typed field that holds its values when raw_data is not used.
_TYPED_FIELD = {
    _T.FLOAT: "float_data",
    _T.UINT8: "int32_data",
    _T.INT8: "int32_data",
    _T.UINT16: "int32_data",
    _T.INT16: "int32_data",
    _T.INT32: "int32_data",
    _T.BOOL: "int32_data",
    _T.INT64: "int64_data",
    _T.DOUBLE: "double_data",
    _T.UINT32: "uint64_data",
    _T.UINT64: "uint64_data",
    # The 16-bit floats and float8 keep their bit patterns, one per int32.
    _T.FLOAT16: "int32_data",
    _T.BFLOAT16: "int32_data",
    _T.FLOAT8E4M3FN: "int32_data",
    _T.FLOAT8E4M3FNUZ: "int32_data",
    _T.FLOAT8E5M2: "int32_data",
    _T.FLOAT8E5M2FNUZ: "int32_data",
}
_ALL_TYPED_FIELDS = ("float_data", "int32_data", "string_data", "int64_data", "double_data", "uint64_data")


def _field_count(tensor, field):
    return len(getattr(tensor, field))


def read(tensor, *, what, model_dir):
    """The numpy value of `tensor`. `what` names it in errors ("initializer 'w'")."""
    dtype = tensor.data_type
    if dtype not in ir.DTYPES:
        raise CodegenError(f"{what} has unsupported element type {type_name(dtype)}")
    if dtype in ir.PACKED:
        raise CodegenError(f"{what} is {ir.dtype_name(dtype)}, packed several to a byte; such constants are not "
                           "supported (inputs and results of this type are)")
    dims = [int(d) for d in tensor.dims]
    ir.check_shape(dims, what)
    if tensor.HasField("segment"):
        raise CodegenError(f"{what} is stored in segments, which are not supported")
    elements = math.prod(dims)
    np_type = np.dtype(ir.numpy_type(dtype))
    expected_bytes = elements * np_type.itemsize
    described = f"its dims {dims} make {elements} {ir.dtype_name(dtype)} elements ({expected_bytes} bytes)"
    typed = [f for f in _ALL_TYPED_FIELDS if _field_count(tensor, f)]

    if tensor.data_location == _T.EXTERNAL:
        if tensor.HasField("raw_data") or typed:
            raise CodegenError(f"{what} is marked as external data but also holds data in the model file")
        raw = _read_external(tensor, what, model_dir, expected_bytes, described)
    elif tensor.data_location != _T.DEFAULT:
        raise CodegenError(f"{what} has unknown data_location {tensor.data_location}")
    elif tensor.external_data:
        raise CodegenError(f"{what} lists external data but its data_location is not EXTERNAL")
    elif tensor.HasField("raw_data"):
        if typed:
            raise CodegenError(f"{what} holds both raw_data and {typed[0]}; a tensor has one value field")
        raw = tensor.raw_data
        if len(raw) != expected_bytes:
            raise CodegenError(f"{what}: {described}, but raw_data holds {len(raw)} bytes")
    else:
        field = _TYPED_FIELD[dtype]
        others = [f for f in typed if f != field]
        if others:
            raise CodegenError(f"{what} is {ir.dtype_name(dtype)} but holds its values in {others[0]}")
        values = getattr(tensor, field)
        if len(values) != elements:
            raise CodegenError(f"{what}: {described}, but {field} holds {len(values)} values")
        return _from_typed(values, dtype, what).reshape(dims)
    return _from_raw(raw, dtype, what).reshape(dims)


def type_name(dtype):
    try:
        return onnx.helper.tensor_dtype_to_string(dtype)
    except Exception:  # not an element type onnx knows
        return f"#{dtype}"


def _from_raw(raw, dtype, what):
    if dtype == _T.BOOL:
        bytes_ = np.frombuffer(raw, dtype=np.uint8)
        if (bytes_ > 1).any():
            raise CodegenError(f"{what} is bool but its raw_data holds a byte other than 0 and 1")
        return bytes_.astype(np.bool_)
    # ONNX stores raw_data little-endian.
    if ir.is_storage(dtype):  # numpy cannot byte-swap ml_dtypes' types: read the bits
        bits = np.dtype(f"<u{np.dtype(ir.numpy_type(dtype)).itemsize}")
        return np.frombuffer(raw, dtype=bits).astype(bits.newbyteorder("=")).view(ir.numpy_type(dtype))
    return np.frombuffer(raw, dtype=np.dtype(ir.numpy_type(dtype)).newbyteorder("<")).astype(ir.numpy_type(dtype))


def _from_typed(values, dtype, what):
    np_type = ir.numpy_type(dtype)
    if dtype in (_T.FLOAT, _T.DOUBLE):
        return np.asarray(values, dtype=np_type)
    array = np.asarray(values, dtype=np.int64 if dtype != _T.UINT64 else np.uint64)
    if dtype == _T.BOOL:
        low, high = 0, 1
    elif ir.is_storage(dtype):
        low, high = 0, (1 << (8 * np.dtype(np_type).itemsize)) - 1
    else:
        info = np.iinfo(np_type)
        low, high = int(info.min), int(info.max)
    if array.size and (int(array.min()) < low or int(array.max()) > high):
        bad = next(int(v) for v in array.reshape(-1) if not low <= int(v) <= high)
        raise CodegenError(f"{what} is {ir.dtype_name(dtype)} but holds the value {bad}, outside {low}..{high}")
    if ir.is_storage(dtype):
        return array.astype(f"u{np.dtype(np_type).itemsize}").view(np_type)
    return array.astype(np_type)


def _read_external(tensor, what, model_dir, expected_bytes, described):
    info = {}
    for entry in tensor.external_data:
        if entry.key in info:
            raise CodegenError(f"{what} lists external data key '{entry.key}' twice")
        info[entry.key] = entry.value
    location = info.get("location", "")
    if not location:
        raise CodegenError(f"{what} is external data without a location")
    if "\0" in location:
        raise CodegenError(f"{what} has an external data location with a NUL character")
    parts = re.split(r"[/\\]", location)
    if os.path.isabs(location) or location[:1] in ("/", "\\") or re.match(r"^[A-Za-z]:", location):
        raise CodegenError(f"{what} has external data at the absolute path '{location}'; "
                           "external data must be a relative path inside the model's directory")
    if ".." in parts:
        raise CodegenError(f"{what} has external data at '{location}', which escapes the model's directory "
                           "('..'); external data must be a relative path inside the model's directory")
    numbers = {}
    for key in ("offset", "length"):
        if key in info:
            try:
                numbers[key] = int(info[key])
            except ValueError:
                raise CodegenError(f"{what} has external data {key} '{info[key]}', not an integer") from None
            if numbers[key] < 0:
                raise CodegenError(f"{what} has a negative external data {key} {numbers[key]}")
    offset = numbers.get("offset", 0)
    path = os.path.join(model_dir, *[p for p in parts if p not in ("", ".")])
    try:
        # O_NONBLOCK: opening a FIFO planted as "external data" must not hang the build.
        with os.fdopen(os.open(path, os.O_RDONLY | os.O_NONBLOCK), "rb") as f:
            mode = os.fstat(f.fileno())
            if not stat.S_ISREG(mode.st_mode):
                raise CodegenError(f"{what} has external data in '{location}', which is not a regular file")
            size = mode.st_size
            length = numbers.get("length", size - offset)
            if offset + length > size or length < 0:
                raise CodegenError(f"{what} reads bytes {offset} to {offset + max(length, 0)} of external data file "
                                   f"'{location}', which has {size} bytes")
            if length != expected_bytes:
                raise CodegenError(f"{what}: {described}, but its external data in '{location}' is {length} bytes")
            f.seek(offset)
            data = f.read(length)
    except FileNotFoundError:
        raise CodegenError(f"{what} has external data in '{location}', which does not exist in the model's "
                           "directory") from None
    except IsADirectoryError:
        raise CodegenError(f"{what} has external data in '{location}', which is not a regular file") from None
    except OSError as e:
        raise CodegenError(f"{what}: cannot read external data file '{location}': {e.strerror or e}") from None
    if len(data) != length:
        raise CodegenError(f"{what}: external data file '{location}' ended early")
    return data
