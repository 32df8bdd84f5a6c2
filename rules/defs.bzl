"""Public API of rules_pure_model: the `pure_model_library` macro and the `PureModelInfo` provider.

Load them from this file only. It re-exports: the implementation lives in `rules/private/` and
may move without breaking anyone who loads this file.
"""

load("//rules/private:codegen.bzl", _PureModelInfo = "PureModelInfo")
load("//rules/private:pure_model_library.bzl", _pure_model_library = "pure_model_library")

pure_model_library = _pure_model_library
PureModelInfo = _PureModelInfo
